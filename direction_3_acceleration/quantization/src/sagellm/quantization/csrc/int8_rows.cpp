// Fused CPU passes around an int8 x int8 -> int32 matmul (W8A8).
//
// quantize_rows: one read of the activations gives each row's absmax (after
// the optional per-column SmoothQuant pre-scale) and its int8 codes; in plain
// PyTorch that is ~7 ops, each a full pass plus dispatch overhead.
// scale_rows_cols: int32 accumulators -> row scale x column scale (+ bias) ->
// the model dtype, one pass instead of three.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include <sagellm/avx512.h>  // sagellm-core's helpers; defines SAGELLM_AVX512 when built for AVX-512

namespace {

constexpr int64_t kMinWorkPerTask = 16384;  // elements: below this one thread is faster

int64_t grain_for(int64_t row_len) { return std::max<int64_t>(1, kMinWorkPerTask / std::max<int64_t>(1, row_len)); }

// Row to float32 (times the column pre-scale), returning max |value|.
template <typename scalar_t>
float load_row(const scalar_t* in, const float* col_scale, float* row, int64_t cols) {
  int64_t c = 0;
  float amax = 0.f;
#ifdef SAGELLM_AVX512
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16> || std::is_same_v<scalar_t, float>) {  // others: scalar
    __m512 vmax = _mm512_setzero_ps();
    for (; c + 16 <= cols; c += 16) {
      __m512 v = sagellm_simd::load16(in + c);
      if (col_scale != nullptr) v = _mm512_mul_ps(v, _mm512_loadu_ps(col_scale + c));
      _mm512_storeu_ps(row + c, v);
      vmax = _mm512_max_ps(vmax, _mm512_abs_ps(v));
    }
    amax = _mm512_reduce_max_ps(vmax);
  }
#endif
  for (; c < cols; ++c) {
    const float v = static_cast<float>(in[c]) * (col_scale != nullptr ? col_scale[c] : 1.f);
    row[c] = v;
    amax = std::max(amax, std::fabs(v));
  }
  return amax;
}

// codes = round_half_even(row * inverse), saturated to int8.
void store_codes(const float* row, float inverse, int8_t* out, int64_t cols) {
  int64_t c = 0;
#ifdef SAGELLM_AVX512
  const __m512 vinv = _mm512_set1_ps(inverse);
  for (; c + 16 <= cols; c += 16) sagellm_simd::store16(out + c, _mm512_mul_ps(_mm512_loadu_ps(row + c), vinv));
#endif
  for (; c < cols; ++c) out[c] = static_cast<int8_t>(std::nearbyint(row[c] * inverse));
}

template <typename scalar_t>
void quantize_rows_impl(const scalar_t* x, const float* col_scale, int8_t* codes, float* row_scale, int64_t rows,
                        int64_t cols) {
  at::parallel_for(0, rows, grain_for(cols), [&](int64_t begin, int64_t end) {
    std::vector<float> row(cols);
    for (int64_t r = begin; r < end; ++r) {
      const float amax = load_row(x + r * cols, col_scale, row.data(), cols);
      const float scale = amax > 0.f ? amax / 127.f : 1.f;
      store_codes(row.data(), 1.f / scale, codes + r * cols, cols);
      row_scale[r] = scale;
    }
  });
}

// dst = acc * rs * col_scale (+ bias), vectorized for float32 and bfloat16 outputs.
template <typename scalar_t>
void scale_row(const int32_t* in, float rs, const float* col_scale, const float* bias, scalar_t* dst, int64_t cols) {
  int64_t c = 0;
#ifdef SAGELLM_AVX512
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16> || std::is_same_v<scalar_t, float>) {
    const __m512 vrs = _mm512_set1_ps(rs);
    for (; c + 16 <= cols; c += 16) {
      __m512 v = _mm512_mul_ps(_mm512_mul_ps(sagellm_simd::load16(in + c), vrs), _mm512_loadu_ps(col_scale + c));
      if (bias != nullptr) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + c));
      sagellm_simd::store16(dst + c, v);  // bf16: rounded to nearest even (inputs are finite)
    }
  }
#endif
  for (; c < cols; ++c) {
    const float v = static_cast<float>(in[c]) * rs * col_scale[c] + (bias != nullptr ? bias[c] : 0.f);
    dst[c] = static_cast<scalar_t>(v);
  }
}

template <typename scalar_t>
void scale_rows_cols_impl(const int32_t* acc, const float* row_scale, const float* col_scale, const float* bias,
                          scalar_t* out, int64_t rows, int64_t cols) {
  at::parallel_for(0, rows, grain_for(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scale_row<scalar_t>(acc + r * cols, row_scale[r], col_scale, bias, out + r * cols, cols);
    }
  });
}

}  // namespace

// x: [rows, cols] float32/bfloat16/float16, contiguous; col_scale: [cols] float32 or empty.
// Returns int8 codes [rows, cols] and float32 scales [rows, 1] with x ~= codes * scale / col_scale.
std::vector<at::Tensor> quantize_rows(const at::Tensor& x, const at::Tensor& col_scale) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(), "quantize_rows: contiguous 2-D CPU input");
  const bool scaled = col_scale.numel() > 0;
  TORCH_CHECK(!scaled || (col_scale.scalar_type() == at::kFloat && col_scale.is_contiguous() &&
                          col_scale.numel() == x.size(1)),
              "quantize_rows: col_scale must be float32 [cols]");
  auto codes = at::empty(x.sizes(), x.options().dtype(at::kChar));
  auto scales = at::empty({x.size(0), 1}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "quantize_rows", [&] {
    quantize_rows_impl<scalar_t>(x.data_ptr<scalar_t>(), scaled ? col_scale.data_ptr<float>() : nullptr,
                                 codes.data_ptr<int8_t>(), scales.data_ptr<float>(), x.size(0), x.size(1));
  });
  return {codes, scales};
}

// acc: [rows, cols] int32; row_scale: [rows] or [rows, 1] float32; col_scale: [cols] float32;
// bias: [cols] float32 or empty. Returns acc * row_scale * col_scale + bias as `dtype`.
at::Tensor scale_rows_cols(const at::Tensor& acc, const at::Tensor& row_scale, const at::Tensor& col_scale,
                           const at::Tensor& bias, at::ScalarType dtype) {
  TORCH_CHECK(acc.dim() == 2 && acc.is_contiguous() && acc.scalar_type() == at::kInt, "scale_rows_cols: int32 2-D");
  TORCH_CHECK(row_scale.scalar_type() == at::kFloat && row_scale.numel() == acc.size(0) && row_scale.is_contiguous(),
              "scale_rows_cols: row_scale must be float32 [rows]");
  TORCH_CHECK(col_scale.scalar_type() == at::kFloat && col_scale.numel() == acc.size(1) && col_scale.is_contiguous(),
              "scale_rows_cols: col_scale must be float32 [cols]");
  const bool biased = bias.numel() > 0;
  TORCH_CHECK(!biased || (bias.scalar_type() == at::kFloat && bias.numel() == acc.size(1) && bias.is_contiguous()),
              "scale_rows_cols: bias must be float32 [cols]");
  auto out = at::empty(acc.sizes(), acc.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "scale_rows_cols", [&] {
    scale_rows_cols_impl<scalar_t>(acc.data_ptr<int32_t>(), row_scale.data_ptr<float>(), col_scale.data_ptr<float>(),
                                   biased ? bias.data_ptr<float>() : nullptr, out.data_ptr<scalar_t>(), acc.size(0),
                                   acc.size(1));
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("quantize_rows", &quantize_rows, "per-row symmetric int8 quantization (optional per-column pre-scale)");
  m.def("scale_rows_cols", &scale_rows_cols, "int32 accumulators x row scale x column scale (+ bias) -> dtype");
}
