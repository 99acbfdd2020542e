// Paged decode attention on CPU: one query token per sequence attends to its
// context read straight out of the KV pool's blocks.
//
// The PyTorch path gathers every sequence's blocks into a padded copy
// (index_select), then runs block-diagonal batched matmuls over it: the
// context crosses memory three times and the matmuls do Hkv times the
// needed multiply-adds. Here each (sequence, KV head) task walks its block
// table once: scores q.k for the G query heads sharing that KV head, a
// float32 softmax, then sum p.v — K and V are read once, in place.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define SAGELLM_AVX512 1
#include "avx512_math.h"
#endif

namespace {

template <typename scalar_t>
inline float to_float(scalar_t v) {
  return static_cast<float>(v);
}


// In-place softmax numerators of scores[0..n); returns 1 / their sum.
inline float softmax_numerators(float* scores, int64_t n) {
  float peak = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < n; ++t) peak = std::max(peak, scores[t]);
  float total = 0.f;
  int64_t t = 0;
#ifdef SAGELLM_AVX512
  const __m512 vpeak = _mm512_set1_ps(peak);
  __m512 vtotal = _mm512_setzero_ps();
  for (; t + 16 <= n; t += 16) {
    __m512 e = sagellm_simd::exp16(_mm512_sub_ps(_mm512_loadu_ps(scores + t), vpeak));
    _mm512_storeu_ps(scores + t, e);
    vtotal = _mm512_add_ps(vtotal, e);
  }
  total = _mm512_reduce_add_ps(vtotal);
#endif
  for (; t < n; ++t) {
    scores[t] = std::exp(scores[t] - peak);
    total += scores[t];
  }
  return 1.f / total;
}

template <typename scalar_t>
void attend_one(const scalar_t* query,        // [G, D] of this (sequence, KV head)
                const scalar_t* key_blocks,   // [N, bs, Hkv, D]
                const scalar_t* value_blocks,
                const int64_t* table,         // this sequence's block ids
                int64_t context, int64_t block_size, int64_t num_kv_heads, int64_t kv_head, int64_t group,
                int64_t head_dim, float scale, float* scratch, scalar_t* out /* [G, D] */) {
  float* q = scratch;                        // [G, D] scaled query, float32
  float* acc = q + group * head_dim;         // [G, D]
  float* scores = acc + group * head_dim;    // [G, context]
  for (int64_t i = 0; i < group * head_dim; ++i) q[i] = to_float(query[i]) * scale;
  const int64_t row_stride = num_kv_heads * head_dim;
  auto row_of = [&](const scalar_t* blocks, int64_t t) {
    return blocks + (table[t / block_size] * block_size + t % block_size) * row_stride + kv_head * head_dim;
  };
  const bool vector_path =
#ifdef SAGELLM_AVX512
      head_dim % 16 == 0 && head_dim <= 256;
#else
      false;
#endif
  // scores[g, t] = q_g . k_t
  for (int64_t t = 0; t < context; ++t) {
    const scalar_t* k = row_of(key_blocks, t);
    if (vector_path) {
#ifdef SAGELLM_AVX512
      __m512 kv[16];
      const int64_t chunks = head_dim / 16;
      for (int64_t c = 0; c < chunks; ++c) kv[c] = sagellm_simd::load16(k + c * 16);
      for (int64_t g = 0; g < group; ++g) {
        __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(q + g * head_dim), kv[0]);
        for (int64_t c = 1; c < chunks; ++c) sum = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * head_dim + c * 16), kv[c], sum);
        scores[g * context + t] = _mm512_reduce_add_ps(sum);
      }
#endif
    } else {
      for (int64_t g = 0; g < group; ++g) {
        float sum = 0.f;
        for (int64_t d = 0; d < head_dim; ++d) sum += q[g * head_dim + d] * to_float(k[d]);
        scores[g * context + t] = sum;
      }
    }
  }
  std::vector<float> inverse(group);
  for (int64_t g = 0; g < group; ++g) inverse[g] = softmax_numerators(scores + g * context, context);
  // acc[g] = sum_t p[g, t] v_t
  std::fill(acc, acc + group * head_dim, 0.f);
  for (int64_t t = 0; t < context; ++t) {
    const scalar_t* v = row_of(value_blocks, t);
    if (vector_path) {
#ifdef SAGELLM_AVX512
      const int64_t chunks = head_dim / 16;
      for (int64_t c = 0; c < chunks; ++c) {
        const __m512 vv = sagellm_simd::load16(v + c * 16);
        for (int64_t g = 0; g < group; ++g) {
          float* a = acc + g * head_dim + c * 16;
          _mm512_storeu_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(scores[g * context + t]), vv, _mm512_loadu_ps(a)));
        }
      }
#endif
    } else {
      for (int64_t g = 0; g < group; ++g) {
        const float p = scores[g * context + t];
        for (int64_t d = 0; d < head_dim; ++d) acc[g * head_dim + d] += p * to_float(v[d]);
      }
    }
  }
  for (int64_t g = 0; g < group; ++g)
    for (int64_t d = 0; d < head_dim; ++d) out[g * head_dim + d] = static_cast<scalar_t>(acc[g * head_dim + d] * inverse[g]);
}

}  // namespace

// query [B, Hq, D]; key_blocks / value_blocks [N, block_size, Hkv, D] (query's dtype: float32 or bfloat16);
// block_table [B, max_blocks] int64; context_lens [B] int64 (tokens each query attends to, itself included).
at::Tensor paged_decode_attention(const at::Tensor& query, const at::Tensor& key_blocks, const at::Tensor& value_blocks,
                                  const at::Tensor& block_table, const at::Tensor& context_lens, double scale) {
  TORCH_CHECK(query.dim() == 3 && query.is_contiguous() && query.device().is_cpu(), "query: contiguous [B, Hq, D] on CPU");
  TORCH_CHECK(key_blocks.dim() == 4 && key_blocks.is_contiguous() && value_blocks.is_contiguous() &&
                  key_blocks.sizes() == value_blocks.sizes(),
              "key/value blocks: contiguous [N, block_size, Hkv, D] of one shape");
  TORCH_CHECK(key_blocks.scalar_type() == query.scalar_type() && value_blocks.scalar_type() == query.scalar_type(),
              "key/value blocks must have the query's dtype");
  TORCH_CHECK(block_table.scalar_type() == at::kLong && block_table.dim() == 2 && block_table.is_contiguous() &&
                  block_table.size(0) == query.size(0),
              "block_table: contiguous int64 [B, max_blocks]");
  TORCH_CHECK(context_lens.scalar_type() == at::kLong && context_lens.numel() == query.size(0) &&
                  context_lens.is_contiguous(),
              "context_lens: int64 [B]");
  const int64_t batch = query.size(0), num_q_heads = query.size(1), head_dim = query.size(2);
  const int64_t block_size = key_blocks.size(1), num_kv_heads = key_blocks.size(2);
  TORCH_CHECK(key_blocks.size(3) == head_dim && num_q_heads % num_kv_heads == 0, "head shapes do not match");
  const int64_t group = num_q_heads / num_kv_heads, max_blocks = block_table.size(1);
  const int64_t* lens = context_lens.data_ptr<int64_t>();
  int64_t longest = 1;
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(lens[b] >= 1 && lens[b] <= max_blocks * block_size, "context length outside the block table");
    longest = std::max(longest, lens[b]);
  }
  auto out = at::empty_like(query);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, query.scalar_type(), "paged_decode_attention", [&] {
    const scalar_t* q = query.data_ptr<scalar_t>();
    const scalar_t* k = key_blocks.data_ptr<scalar_t>();
    const scalar_t* v = value_blocks.data_ptr<scalar_t>();
    const int64_t* table = block_table.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch * num_kv_heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(2 * group * head_dim + group * longest);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / num_kv_heads, h = task % num_kv_heads;
        const int64_t offset = (b * num_q_heads + h * group) * head_dim;
        attend_one<scalar_t>(q + offset, k, v, table + b * max_blocks, lens[b], block_size, num_kv_heads, h, group,
                             head_dim, static_cast<float>(scale), scratch.data(), o + offset);
      }
    });
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode_attention", &paged_decode_attention,
        "decode attention of one query per sequence over paged K/V blocks, read in place");
}
