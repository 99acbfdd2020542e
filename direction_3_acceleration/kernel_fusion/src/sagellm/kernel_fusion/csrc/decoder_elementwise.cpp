// Fused elementwise passes of a Llama decoder layer (CPU).
//
// In PyTorch each of these is a chain of small ops (RMSNorm: 7, SiLU-gate: 3,
// RoPE on q and k: ~12 plus two table gathers), each a full pass over the
// rows plus ~5 us of dispatch; at decode sizes the dispatch dominates. Each
// function here is one pass, computing in float32 and rounding once to the
// tensor's dtype.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <sagellm/avx512.h>  // sagellm-core's helpers; defines SAGELLM_AVX512 when built for AVX-512

namespace {

constexpr int64_t kMinWorkPerTask = 16384;

int64_t grain_for(int64_t row_len) { return std::max<int64_t>(1, kMinWorkPerTask / std::max<int64_t>(1, row_len)); }

#ifdef SAGELLM_AVX512
using sagellm_simd::exp16;
using sagellm_simd::load16;
using sagellm_simd::round_to;
using sagellm_simd::store16;
#endif

template <typename scalar_t>
inline float round_scalar(float v) {
  return static_cast<float>(static_cast<scalar_t>(v));
}

template <typename scalar_t>
void rms_norm_rows(const scalar_t* x, const scalar_t* weight, scalar_t* out, int64_t rows, int64_t cols, float eps) {
  at::parallel_for(0, rows, grain_for(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* in = x + r * cols;
      scalar_t* dst = out + r * cols;
      int64_t c = 0;
      float squares = 0.f;
#ifdef SAGELLM_AVX512
      __m512 acc = _mm512_setzero_ps();
      for (; c + 16 <= cols; c += 16) {
        __m512 v = load16(in + c);
        acc = _mm512_fmadd_ps(v, v, acc);
      }
      squares = _mm512_reduce_add_ps(acc);
#endif
      for (; c < cols; ++c) squares += static_cast<float>(in[c]) * static_cast<float>(in[c]);
      const float inverse = 1.f / std::sqrt(squares / static_cast<float>(cols) + eps);
      c = 0;
#ifdef SAGELLM_AVX512
      const __m512 vinv = _mm512_set1_ps(inverse);
      for (; c + 16 <= cols; c += 16) {
        __m512 normed = round_to<scalar_t>(_mm512_mul_ps(load16(in + c), vinv));  // .to(x.dtype)
        store16(dst + c, _mm512_mul_ps(load16(weight + c), normed));            // weight * normed
      }
#endif
      for (; c < cols; ++c) {
        const float normed = round_scalar<scalar_t>(static_cast<float>(in[c]) * inverse);
        dst[c] = static_cast<scalar_t>(static_cast<float>(weight[c]) * normed);
      }
    }
  });
}

template <typename scalar_t>
void silu_mul_rows(const scalar_t* gate_up, scalar_t* out, int64_t rows, int64_t half) {
  at::parallel_for(0, rows, grain_for(half), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* gate = gate_up + r * 2 * half;
      const scalar_t* up = gate + half;
      scalar_t* dst = out + r * half;
      int64_t c = 0;
#ifdef SAGELLM_AVX512
      const __m512 one = _mm512_set1_ps(1.f);
      for (; c + 16 <= half; c += 16) {
        __m512 g = load16(gate + c);
        __m512 silu = round_to<scalar_t>(_mm512_div_ps(g, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g)))));
        store16(dst + c, _mm512_mul_ps(silu, load16(up + c)));
      }
#endif
      for (; c < half; ++c) {
        const float g = static_cast<float>(gate[c]);
        const float silu = round_scalar<scalar_t>(g / (1.f + std::exp(-g)));
        dst[c] = static_cast<scalar_t>(silu * static_cast<float>(up[c]));
      }
    }
  });
}

// out[h] = x[h] * cos + rotate_half(x[h]) * sin for each head of one row ("rotate half" RoPE).
template <typename scalar_t>
void rope_row(const scalar_t* x, const float* cos, const float* sin, scalar_t* out, int64_t heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    const scalar_t* in = x + h * head_dim;
    scalar_t* dst = out + h * head_dim;
    for (int64_t d = 0; d < half; ++d) {
      const float a = static_cast<float>(in[d]), b = static_cast<float>(in[d + half]);
      dst[d] = static_cast<scalar_t>(a * cos[d] - b * sin[d]);
      dst[d + half] = static_cast<scalar_t>(b * cos[d + half] + a * sin[d + half]);
    }
  }
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(), "rms_norm: contiguous [rows, hidden] on CPU");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.is_contiguous() && weight.numel() == x.size(1),
              "rms_norm: weight must be [hidden] of x's dtype");
  auto out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "rms_norm", [&] {
    rms_norm_rows<scalar_t>(x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.size(0),
                            x.size(1), static_cast<float>(eps));
  });
  return out;
}

at::Tensor silu_mul(const at::Tensor& gate_up) {
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.is_contiguous() && gate_up.size(1) % 2 == 0 && gate_up.device().is_cpu(),
              "silu_mul: contiguous [rows, 2 * intermediate] on CPU");
  const int64_t half = gate_up.size(1) / 2;
  auto out = at::empty({gate_up.size(0), half}, gate_up.options());
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, gate_up.scalar_type(), "silu_mul", [&] {
    silu_mul_rows<scalar_t>(gate_up.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), gate_up.size(0), half);
  });
  return out;
}

// qkv [T, (Hq + 2 Hkv) * D]; cos/sin tables [max_positions, D] float32; positions [T] int64.
// Returns rotated q [T, Hq, D] and k [T, Hkv, D] (v is a view the caller takes itself).
std::vector<at::Tensor> rope_qk(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                                const at::Tensor& positions, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim) {
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous() && qkv.device().is_cpu(), "rope_qk: contiguous [T, qkv] on CPU");
  TORCH_CHECK(qkv.size(1) == (num_q_heads + 2 * num_kv_heads) * head_dim && head_dim % 2 == 0, "rope_qk: qkv width");
  TORCH_CHECK(cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat && cos.is_contiguous() &&
                  sin.is_contiguous() && cos.size(1) == head_dim,
              "rope_qk: float32 [positions, head_dim] tables");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.numel() == qkv.size(0), "rope_qk: int64 [T] positions");
  const int64_t tokens = qkv.size(0), width = qkv.size(1), max_positions = cos.size(0);
  auto q = at::empty({tokens, num_q_heads, head_dim}, qkv.options());
  auto k = at::empty({tokens, num_kv_heads, head_dim}, qkv.options());
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t t = 0; t < tokens; ++t) TORCH_CHECK(pos[t] >= 0 && pos[t] < max_positions, "rope_qk: position out of range");
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, qkv.scalar_type(), "rope_qk", [&] {
    const scalar_t* in = qkv.data_ptr<scalar_t>();
    scalar_t* qo = q.data_ptr<scalar_t>();
    scalar_t* ko = k.data_ptr<scalar_t>();
    const float* c = cos.data_ptr<float>();
    const float* s = sin.data_ptr<float>();
    at::parallel_for(0, tokens, grain_for(width), [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const float* ct = c + pos[t] * head_dim;
        const float* st = s + pos[t] * head_dim;
        rope_row<scalar_t>(in + t * width, ct, st, qo + t * num_q_heads * head_dim, num_q_heads, head_dim);
        rope_row<scalar_t>(in + t * width + num_q_heads * head_dim, ct, st, ko + t * num_kv_heads * head_dim,
                           num_kv_heads, head_dim);
      }
    });
  });
  return {q, k};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, "RMSNorm (float32 statistics, transformers' rounding) in one pass");
  m.def("silu_mul", &silu_mul, "silu(gate) * up of a fused [gate | up] projection in one pass");
  m.def("rope_qk", &rope_qk, "rotate-half RoPE of q and k out of a fused qkv projection in one pass");
}
