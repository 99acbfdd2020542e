// Paged decode attention on CPU: one query token per sequence attends to its
// context read straight out of the KV pool's blocks.
//
// The PyTorch path gathers every sequence's blocks into a padded copy
// (index_select), then runs block-diagonal batched matmuls over it: the
// context crosses memory three times and the matmuls do Hkv times the
// needed multiply-adds. Here each sequence is one task that walks its block
// table twice (scores q.k for all query heads, then sum p.v), reading each
// block's rows of all KV heads contiguously, in place, with the next block
// prefetched while the current one is used: at 64 sequences x 200 tokens the
// context is hundreds of MB per step, so the kernel is bound by how well it
// keeps DRAM busy, and one sequence's blocks sit at scattered addresses the
// hardware prefetcher cannot guess.
//
// An int8 cache (codes with one float32 scale per block for K and one for V,
// sagellm-kv-pool's format) is read as it is: a block's key scale multiplies
// the block's q.k sums and its value scale the weights p, so the codes are
// never dequantized into a copy and half the bytes cross memory.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "block_scales.h"

#include <sagellm/avx512.h>  // sagellm-core's helpers; defines SAGELLM_AVX512 when built for AVX-512

namespace {

using sagellm_kv::BlockScales;

// Where one sequence's context lives and what shape its rows have; kv_t is the cache's element type.
template <typename kv_t>
struct Context {
  const kv_t* key_blocks;    // [N, bs, Hkv, D]
  const kv_t* value_blocks;  // [N, bs, Hkv, D]
  BlockScales key_scales, value_scales;
  const int64_t* table;      // this sequence's block ids
  int64_t length, block_size, num_kv_heads, group, head_dim;

  int64_t row_elems() const { return num_kv_heads * head_dim; }
  int64_t num_blocks() const { return (length + block_size - 1) / block_size; }
  int64_t tokens_in(int64_t j) const { return std::min(block_size, length - j * block_size); }
  const kv_t* block(const kv_t* blocks, int64_t j) const { return blocks + table[j] * block_size * row_elems(); }
};

// Asks for ``tokens`` rows to be pulled into cache ahead of use (one row per token of the block being
// used keeps the requests spread out: a whole block at once overflows the core's miss queue).
template <typename scalar_t>
inline void prefetch_rows(const scalar_t* rows, int64_t tokens, int64_t row_elems) {
  const char* p = reinterpret_cast<const char*>(rows);
  const int64_t bytes = tokens * row_elems * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
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

#ifdef SAGELLM_AVX512
// scores[hq, t] = q_hq . k_t for every query head; CHUNKS = D / 16 (a compile-time count keeps K in registers).
template <typename kv_t, int CHUNKS>
void score_block(const Context<kv_t>& c, const float* q, const kv_t* rows, int64_t tokens, int64_t first,
                 float block_scale, float* scores, const kv_t* next) {
  for (int64_t t = 0; t < tokens; ++t) {
    const kv_t* row = rows + t * c.row_elems();
    if (next) prefetch_rows(next + t * c.row_elems(), 1, c.row_elems());
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      __m512 k[CHUNKS];
      for (int ch = 0; ch < CHUNKS; ++ch) k[ch] = sagellm_simd::load16(row + h * c.head_dim + ch * 16);
      for (int64_t g = 0; g < c.group; ++g) {
        const float* qh = q + (h * c.group + g) * c.head_dim;
        __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(qh), k[0]);
        for (int ch = 1; ch < CHUNKS; ++ch) sum = _mm512_fmadd_ps(_mm512_loadu_ps(qh + ch * 16), k[ch], sum);
        scores[(h * c.group + g) * c.length + first + t] = _mm512_reduce_add_ps(sum) * block_scale;
      }
    }
  }
}

// acc[hq] += sum_t p[hq, t] v_t over one block, the accumulators held in registers across its tokens.
template <typename kv_t, int CHUNKS>
void weigh_block(const Context<kv_t>& c, const float* scores, const kv_t* rows, int64_t tokens, int64_t first,
                 float block_scale, float* acc, const kv_t* next) {
  for (int64_t h = 0; h < c.num_kv_heads; ++h) {
    for (int64_t g = 0; g < c.group; ++g) {
      const int64_t hq = h * c.group + g;
      const float* p = scores + hq * c.length + first;
      float* a = acc + hq * c.head_dim;
      __m512 sum[CHUNKS];
      for (int ch = 0; ch < CHUNKS; ++ch) sum[ch] = _mm512_loadu_ps(a + ch * 16);
      const bool prefetching = next != nullptr && h == 0 && g == 0;
      for (int64_t t = 0; t < tokens; ++t) {
        if (prefetching) prefetch_rows(next + t * c.row_elems(), 1, c.row_elems());
        const kv_t* v = rows + t * c.row_elems() + h * c.head_dim;
        const __m512 weight = _mm512_set1_ps(p[t] * block_scale);
        for (int ch = 0; ch < CHUNKS; ++ch) sum[ch] = _mm512_fmadd_ps(weight, sagellm_simd::load16(v + ch * 16), sum[ch]);
      }
      for (int ch = 0; ch < CHUNKS; ++ch) _mm512_storeu_ps(a + ch * 16, sum[ch]);
    }
  }
}
#endif

// Portable versions of the two block passes (any head_dim; no AVX-512 needed).
template <typename kv_t>
void score_block_scalar(const Context<kv_t>& c, const float* q, const kv_t* rows, int64_t tokens, int64_t first,
                        float block_scale, float* scores) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t hq = 0; hq < c.num_kv_heads * c.group; ++hq) {
      const kv_t* k = rows + t * c.row_elems() + (hq / c.group) * c.head_dim;
      float sum = 0.f;
      for (int64_t d = 0; d < c.head_dim; ++d) sum += q[hq * c.head_dim + d] * static_cast<float>(k[d]);
      scores[hq * c.length + first + t] = sum * block_scale;
    }
}

template <typename kv_t>
void weigh_block_scalar(const Context<kv_t>& c, const float* scores, const kv_t* rows, int64_t tokens,
                        int64_t first, float block_scale, float* acc) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t hq = 0; hq < c.num_kv_heads * c.group; ++hq) {
      const kv_t* v = rows + t * c.row_elems() + (hq / c.group) * c.head_dim;
      const float p = scores[hq * c.length + first + t] * block_scale;
      for (int64_t d = 0; d < c.head_dim; ++d) acc[hq * c.head_dim + d] += p * static_cast<float>(v[d]);
    }
}

// One pass over the sequence's blocks; ``visit`` gets block j, its scale, and block j + 1 to prefetch as it goes
// (for the last block, ``after``: the first block of the pass that follows, if any).
template <typename kv_t, typename Visit>
void walk_blocks(const Context<kv_t>& c, const kv_t* blocks, const BlockScales& scales, const kv_t* after,
                 Visit visit) {
  const int64_t count = c.num_blocks();
  for (int64_t j = 0; j < count; ++j)
    visit(c.block(blocks, j), c.tokens_in(j), j * c.block_size, scales.of(c.table[j]),
          j + 1 < count ? c.block(blocks, j + 1) : after);
}

template <typename scalar_t, typename kv_t, int CHUNKS>
void attend_sequence(const Context<kv_t>& c, const scalar_t* query /* [Hq, D] */, float scale, float* scratch,
                     scalar_t* out /* [Hq, D] */) {
  const int64_t heads = c.num_kv_heads * c.group, width = heads * c.head_dim;
  float* q = scratch;            // [Hq, D] scaled query, float32
  float* acc = q + width;        // [Hq, D]
  float* scores = acc + width;   // [Hq, length]
  for (int64_t i = 0; i < width; ++i) q[i] = static_cast<float>(query[i]) * scale;
  prefetch_rows(c.block(c.key_blocks, 0), c.tokens_in(0), c.row_elems());
  const kv_t* first_values = c.block(c.value_blocks, 0);
  walk_blocks(c, c.key_blocks, c.key_scales, first_values,
              [&](const kv_t* rows, int64_t tokens, int64_t first, float block_scale, const kv_t* next) {
#ifdef SAGELLM_AVX512
                if constexpr (CHUNKS > 0)
                  return score_block<kv_t, CHUNKS>(c, q, rows, tokens, first, block_scale, scores, next);
#endif
                score_block_scalar(c, q, rows, tokens, first, block_scale, scores);
              });
  std::vector<float> inverse(heads);
  for (int64_t hq = 0; hq < heads; ++hq) inverse[hq] = softmax_numerators(scores + hq * c.length, c.length);
  std::fill(acc, acc + width, 0.f);
  walk_blocks(c, c.value_blocks, c.value_scales, static_cast<const kv_t*>(nullptr),
              [&](const kv_t* rows, int64_t tokens, int64_t first, float block_scale, const kv_t* next) {
#ifdef SAGELLM_AVX512
                if constexpr (CHUNKS > 0)
                  return weigh_block<kv_t, CHUNKS>(c, scores, rows, tokens, first, block_scale, acc, next);
#endif
                weigh_block_scalar(c, scores, rows, tokens, first, block_scale, acc);
              });
  for (int64_t hq = 0; hq < heads; ++hq)
    for (int64_t d = 0; d < c.head_dim; ++d)
      out[hq * c.head_dim + d] = static_cast<scalar_t>(acc[hq * c.head_dim + d] * inverse[hq]);
}

// The attend_sequence instance for this head_dim: register-held K/V chunks for the common sizes, else portable.
template <typename scalar_t, typename kv_t>
auto pick_attend(int64_t head_dim) {
#ifdef SAGELLM_AVX512
  switch (head_dim) {
    case 32: return &attend_sequence<scalar_t, kv_t, 2>;
    case 48: return &attend_sequence<scalar_t, kv_t, 3>;
    case 64: return &attend_sequence<scalar_t, kv_t, 4>;
    case 80: return &attend_sequence<scalar_t, kv_t, 5>;
    case 96: return &attend_sequence<scalar_t, kv_t, 6>;
    case 128: return &attend_sequence<scalar_t, kv_t, 8>;
    default: break;
  }
#endif
  (void)head_dim;
  return &attend_sequence<scalar_t, kv_t, 0>;
}

// Runs every sequence on torch's thread pool, one task per sequence.
template <typename scalar_t, typename kv_t>
void attend_all(const at::Tensor& query, const kv_t* keys, const kv_t* values, BlockScales key_scales,
                BlockScales value_scales, const int64_t* table, const int64_t* lens, int64_t max_blocks,
                int64_t block_size, int64_t num_kv_heads, int64_t longest, double scale, at::Tensor& out) {
  const int64_t batch = query.size(0), num_q_heads = query.size(1), head_dim = query.size(2);
  const int64_t group = num_q_heads / num_kv_heads;
  const scalar_t* q = query.data_ptr<scalar_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  const auto attend = pick_attend<scalar_t, kv_t>(head_dim);
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(2 * num_q_heads * head_dim + num_q_heads * longest);
    for (int64_t b = begin; b < end; ++b) {
      const Context<kv_t> c{keys,       values,       key_scales, value_scales, table + b * max_blocks,
                            lens[b],    block_size,   num_kv_heads, group,      head_dim};
      const int64_t offset = b * num_q_heads * head_dim;
      attend(c, q + offset, static_cast<float>(scale), scratch.data(), o + offset);
    }
  });
}

}  // namespace

// query [B, Hq, D]; key_blocks / value_blocks [N, block_size, Hkv, D] (query's dtype: float32 or bfloat16, or
// int8 codes with key_scales / value_scales, float32 [N] per-block scales); block_table [B, max_blocks] int64;
// context_lens [B] int64 (tokens each query attends to, itself included).
at::Tensor paged_decode_attention(const at::Tensor& query, const at::Tensor& key_blocks, const at::Tensor& value_blocks,
                                  const at::Tensor& block_table, const at::Tensor& context_lens, double scale,
                                  const std::optional<at::Tensor>& key_scales,
                                  const std::optional<at::Tensor>& value_scales) {
  TORCH_CHECK(query.dim() == 3 && query.is_contiguous() && query.device().is_cpu(), "query: contiguous [B, Hq, D] on CPU");
  TORCH_CHECK(key_blocks.dim() == 4 && key_blocks.is_contiguous() && value_blocks.is_contiguous() &&
                  key_blocks.sizes() == value_blocks.sizes(),
              "key/value blocks: contiguous [N, block_size, Hkv, D] of one shape");
  const bool int8_cache = key_blocks.scalar_type() == at::kChar;
  TORCH_CHECK(value_blocks.scalar_type() == key_blocks.scalar_type() &&
                  (int8_cache || key_blocks.scalar_type() == query.scalar_type()),
              "key/value blocks must have the query's dtype, or be int8 codes");
  TORCH_CHECK(int8_cache == (key_scales.has_value() && value_scales.has_value()) &&
                  (int8_cache || (!key_scales.has_value() && !value_scales.has_value())),
              "key_scales and value_scales go with int8 blocks, and int8 blocks need both");
  TORCH_CHECK(block_table.scalar_type() == at::kLong && block_table.dim() == 2 && block_table.is_contiguous() &&
                  block_table.size(0) == query.size(0),
              "block_table: contiguous int64 [B, max_blocks]");
  TORCH_CHECK(context_lens.scalar_type() == at::kLong && context_lens.numel() == query.size(0) &&
                  context_lens.is_contiguous(),
              "context_lens: int64 [B]");
  const int64_t batch = query.size(0), num_q_heads = query.size(1), head_dim = query.size(2);
  const int64_t block_size = key_blocks.size(1), num_kv_heads = key_blocks.size(2), num_pool_blocks = key_blocks.size(0);
  TORCH_CHECK(key_blocks.size(3) == head_dim && num_q_heads % num_kv_heads == 0, "head shapes do not match");
  const int64_t max_blocks = block_table.size(1);
  const int64_t* lens = context_lens.data_ptr<int64_t>();
  const int64_t* table = block_table.data_ptr<int64_t>();
  int64_t longest = 1;
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(lens[b] >= 1 && lens[b] <= max_blocks * block_size, "context length outside the block table");
    for (int64_t j = 0; j < (lens[b] + block_size - 1) / block_size; ++j)
      TORCH_CHECK(table[b * max_blocks + j] >= 0 && table[b * max_blocks + j] < num_pool_blocks,
                  "block id outside the pool");
    longest = std::max(longest, lens[b]);
  }
  const BlockScales ks = sagellm_kv::block_scales(key_scales, num_pool_blocks, "key");
  const BlockScales vs = sagellm_kv::block_scales(value_scales, num_pool_blocks, "value");
  auto out = at::empty_like(query);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, query.scalar_type(), "paged_decode_attention", [&] {
    if (int8_cache) {
      attend_all<scalar_t, int8_t>(query, key_blocks.data_ptr<int8_t>(), value_blocks.data_ptr<int8_t>(), ks, vs, table,
                                   lens, max_blocks, block_size, num_kv_heads, longest, scale, out);
    } else {
      attend_all<scalar_t, scalar_t>(query, key_blocks.data_ptr<scalar_t>(), value_blocks.data_ptr<scalar_t>(), ks, vs,
                                     table, lens, max_blocks, block_size, num_kv_heads, longest, scale, out);
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode_attention", &paged_decode_attention,
        "decode attention of one query per sequence over paged K/V blocks (float, or int8 with per-block scales), "
        "read in place",
        py::arg("query"), py::arg("key_blocks"), py::arg("value_blocks"), py::arg("block_table"),
        py::arg("context_lens"), py::arg("scale"), py::arg("key_scales") = py::none(),
        py::arg("value_scales") = py::none());
}
