// Paged prefill attention on CPU: every query row of a step's prefill chunks
// attends causally to its sequence's context, read from the KV pool's blocks.
//
// PyTorch's CPU flash kernel (SDPA) runs a 128-token bf16 chunk at ~55
// GFLOP/s: its per-head GEMM calls are tiny and it cannot skip the masked
// half of the causal square. Here a task is (chunk, KV head, 32 query rows).
// It copies a tile of up to 128 keys into a float32, transposed buffer
// (dimension-major, so 16 keys' scores are 64 fused multiply-adds with the
// query element broadcast) and the tile's values into a float32 row buffer,
// then, for each query head of the group and each row that sees the tile,
// scores only the keys the row may see and folds them into running softmax
// statistics (max, sum) and a float32 accumulator (online softmax), so the
// context may be of any length. All chunks of a step go in one call.
//
// int8 caches (codes plus one float32 scale per block for K and for V) are
// dequantized into the tile buffers as they are filled.
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

constexpr int64_t ROWS_PER_TASK = 32;
constexpr int64_t KEYS_PER_TILE = 128;  // a multiple of 16
constexpr float NEG_INF = -std::numeric_limits<float>::infinity();

using sagellm_kv::BlockScales;

// One prefill chunk: rows [begin, end) of the step's flat batch, the last (end - begin) positions of a context of
// `length` tokens whose blocks `table` lists.
struct Chunk {
  int64_t begin, end, length;
  const int64_t* table;

  int64_t first_position() const { return length - (end - begin); }
};

template <typename kv_t>
struct Cache {
  const kv_t* key_blocks;  // [N, bs, Hkv, D]
  const kv_t* value_blocks;
  BlockScales key_scales, value_scales;
  int64_t block_size, num_kv_heads, head_dim;

  int64_t row_elems() const { return num_kv_heads * head_dim; }
  // Element offset of KV head `head` at slot `within` of pool block `block`.
  int64_t offset(int64_t block, int64_t within, int64_t head) const {
    return (block * block_size + within) * row_elems() + head * head_dim;
  }
};

// keys[j * D + d] and values[j * D + d], float32, for positions [first, first + count) of KV head `head`.
template <typename kv_t>
void fill_tile(const Cache<kv_t>& cache, const Chunk& c, int64_t head, int64_t first, int64_t count, float* keys,
               float* values) {
  const int64_t dim = cache.head_dim;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t position = first + j;
    const int64_t block = c.table[position / cache.block_size];
    const int64_t at = cache.offset(block, position % cache.block_size, head);
    const float key_scale = cache.key_scales.of(block), value_scale = cache.value_scales.of(block);
    const kv_t* k = cache.key_blocks + at;
    const kv_t* v = cache.value_blocks + at;
    int64_t d = 0;
#ifdef SAGELLM_AVX512
    const __m512 vk = _mm512_set1_ps(key_scale), vv = _mm512_set1_ps(value_scale);
    for (; d + 16 <= dim; d += 16) {
      _mm512_storeu_ps(keys + j * dim + d, _mm512_mul_ps(sagellm_simd::load16(k + d), vk));
      _mm512_storeu_ps(values + j * dim + d, _mm512_mul_ps(sagellm_simd::load16(v + d), vv));
    }
#endif
    for (; d < dim; ++d) {
      keys[j * dim + d] = static_cast<float>(k[d]) * key_scale;
      values[j * dim + d] = static_cast<float>(v[d]) * value_scale;
    }
  }
}

// A task's (row, query head) pairs are its "lanes", 16 to a group: lane = row * G + g. The queries are stored
// dimension-major per group (q_t[(group * D + d) * 16 + lane]), so one key's 16 scores are D multiply-adds with the
// key element broadcast, and the softmax state and accumulators are vectors over lanes too.
constexpr int64_t LANES = 16;

struct LaneGroup {
  float* q_t;    // [D][16] queries, pre-scaled
  float* acc_t;  // [D][16] weighted value sums
  float* peak;   // [16] max score so far
  float* total;  // [16] sum of exp(score - peak)
  const int64_t* position;  // [16] each lane's query position (keys <= it are visible)
  int64_t last_position;    // the largest of them
};

// scores[j * 16 + lane] for keys [0, count) of the tile; -inf where a key lies past the lane's position.
inline void score_keys(const LaneGroup& lg, const float* keys, int64_t dim, int64_t first, int64_t count,
                       float* scores) {
  int64_t j = 0;
#ifdef SAGELLM_AVX512
  for (; j + 4 <= count; j += 4) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    const float* k = keys + j * dim;
    for (int64_t d = 0; d < dim; ++d) {
      const __m512 qd = _mm512_loadu_ps(lg.q_t + d * LANES);
      s0 = _mm512_fmadd_ps(qd, _mm512_set1_ps(k[d]), s0);
      s1 = _mm512_fmadd_ps(qd, _mm512_set1_ps(k[dim + d]), s1);
      s2 = _mm512_fmadd_ps(qd, _mm512_set1_ps(k[2 * dim + d]), s2);
      s3 = _mm512_fmadd_ps(qd, _mm512_set1_ps(k[3 * dim + d]), s3);
    }
    _mm512_storeu_ps(scores + j * LANES, s0);
    _mm512_storeu_ps(scores + (j + 1) * LANES, s1);
    _mm512_storeu_ps(scores + (j + 2) * LANES, s2);
    _mm512_storeu_ps(scores + (j + 3) * LANES, s3);
  }
#endif
  for (; j < count; ++j) {
    float* s = scores + j * LANES;
    for (int64_t l = 0; l < LANES; ++l) s[l] = 0.f;
    for (int64_t d = 0; d < dim; ++d)
      for (int64_t l = 0; l < LANES; ++l) s[l] += lg.q_t[d * LANES + l] * keys[j * dim + d];
  }
  // Causal mask: only keys near the lanes' own positions can lie past some of them.
  for (int64_t jj = std::max<int64_t>(0, lg.position[0] + 1 - first); jj < count; ++jj)
    for (int64_t l = 0; l < LANES; ++l)
      if (first + jj > lg.position[l]) scores[jj * LANES + l] = NEG_INF;
}

// exp of every score minus its lane's new peak (in place); updates peaks and totals, rescales the accumulators.
inline void softmax_update(const LaneGroup& lg, float* scores, int64_t count, int64_t dim) {
  float correction[LANES];
#ifdef SAGELLM_AVX512
  __m512 peak = _mm512_loadu_ps(lg.peak);
  const __m512 old_peak = peak;
  for (int64_t j = 0; j < count; ++j) peak = _mm512_max_ps(peak, _mm512_loadu_ps(scores + j * LANES));
  // exp(-inf - peak) = 0 for a first tile; a lane that saw only masked keys so far keeps peak -inf (no NaN: it
  // always sees key 0 in the first tile).
  const __m512 corr = sagellm_simd::exp16(_mm512_sub_ps(old_peak, peak));
  __m512 total = _mm512_mul_ps(_mm512_loadu_ps(lg.total), corr);
  for (int64_t j = 0; j < count; ++j) {
    const __m512 x = _mm512_loadu_ps(scores + j * LANES);
    // exp16 clamps at -87 (~1e-38); masked keys must weigh exactly 0.
    const __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(NEG_INF), _CMP_NEQ_OQ),
                                         sagellm_simd::exp16(_mm512_sub_ps(x, peak)));
    _mm512_storeu_ps(scores + j * LANES, e);
    total = _mm512_add_ps(total, e);
  }
  _mm512_storeu_ps(lg.peak, peak);
  _mm512_storeu_ps(lg.total, total);
  _mm512_storeu_ps(correction, corr);
#else
  for (int64_t l = 0; l < LANES; ++l) {
    float peak = lg.peak[l];
    for (int64_t j = 0; j < count; ++j) peak = std::max(peak, scores[j * LANES + l]);
    correction[l] = lg.peak[l] == NEG_INF ? 0.f : std::exp(lg.peak[l] - peak);
    float total = lg.total[l] * correction[l];
    for (int64_t j = 0; j < count; ++j) {
      const float e = scores[j * LANES + l] == NEG_INF ? 0.f : std::exp(scores[j * LANES + l] - peak);
      scores[j * LANES + l] = e;
      total += e;
    }
    lg.peak[l] = peak;
    lg.total[l] = total;
  }
#endif
  for (int64_t d = 0; d < dim; ++d)
    for (int64_t l = 0; l < LANES; ++l) lg.acc_t[d * LANES + l] *= correction[l];
}

// acc_t[d][lane] += sum_j weights[j][lane] * values[j][d].
inline void weigh_keys(const LaneGroup& lg, const float* weights, const float* values, int64_t dim, int64_t count) {
  int64_t d0 = 0;
#ifdef SAGELLM_AVX512
  for (; d0 + 8 <= dim; d0 += 8) {
    __m512 a[8];
    for (int i = 0; i < 8; ++i) a[i] = _mm512_loadu_ps(lg.acc_t + (d0 + i) * LANES);
    for (int64_t j = 0; j < count; ++j) {
      const __m512 w = _mm512_loadu_ps(weights + j * LANES);
      const float* v = values + j * dim + d0;
      for (int i = 0; i < 8; ++i) a[i] = _mm512_fmadd_ps(w, _mm512_set1_ps(v[i]), a[i]);
    }
    for (int i = 0; i < 8; ++i) _mm512_storeu_ps(lg.acc_t + (d0 + i) * LANES, a[i]);
  }
#endif
  for (int64_t d = d0; d < dim; ++d)
    for (int64_t j = 0; j < count; ++j)
      for (int64_t l = 0; l < LANES; ++l) lg.acc_t[d * LANES + l] += weights[j * LANES + l] * values[j * dim + d];
}

// Buffers one thread reuses across its tasks.
struct Scratch {
  std::vector<float> keys, values, q_t, acc_t, peak, total, scores;
  std::vector<int64_t> position;

  Scratch(int64_t dim, int64_t groups)
      : keys(KEYS_PER_TILE * dim), values(KEYS_PER_TILE * dim), q_t(groups * dim * LANES),
        acc_t(groups * dim * LANES), peak(groups * LANES), total(groups * LANES), scores(KEYS_PER_TILE * LANES),
        position(groups * LANES) {}

  LaneGroup group(int64_t i, int64_t dim) {
    return {q_t.data() + i * dim * LANES, acc_t.data() + i * dim * LANES, peak.data() + i * LANES,
            total.data() + i * LANES, position.data() + i * LANES, position[i * LANES + LANES - 1]};
  }
};

template <typename scalar_t, typename kv_t>
void attend_task(const scalar_t* query, scalar_t* out, int64_t stride_q, int64_t stride_out, const Cache<kv_t>& cache,
                 const Chunk& c, int64_t head, int64_t row_begin, int64_t row_end, int64_t group, float scale,
                 Scratch& s) {
  const int64_t dim = cache.head_dim, first_pos = c.first_position();
  const int64_t lanes = (row_end - row_begin) * group, groups = (lanes + LANES - 1) / LANES;
  // Lanes past the last (row, head) pair repeat it, so every group is full; their results are not written.
  for (int64_t lane = 0; lane < groups * LANES; ++lane) {
    const int64_t pair = std::min(lane, lanes - 1);
    const int64_t row = row_begin + pair / group, g = pair % group;
    const scalar_t* src = query + (c.begin + row) * stride_q + (head * group + g) * dim;
    float* q_t = s.q_t.data() + (lane / LANES) * dim * LANES + lane % LANES;
    for (int64_t d = 0; d < dim; ++d) q_t[d * LANES] = static_cast<float>(src[d]) * scale;
    s.position[lane] = first_pos + row;
  }
  std::fill(s.acc_t.begin(), s.acc_t.begin() + groups * dim * LANES, 0.f);
  std::fill(s.peak.begin(), s.peak.begin() + groups * LANES, NEG_INF);
  std::fill(s.total.begin(), s.total.begin() + groups * LANES, 0.f);
  const int64_t keys_seen = first_pos + row_end;  // the task's last row sees keys [0, keys_seen)
  for (int64_t tile = 0; tile < keys_seen; tile += KEYS_PER_TILE) {
    const int64_t tile_keys = std::min(KEYS_PER_TILE, keys_seen - tile);
    fill_tile(cache, c, head, tile, tile_keys, s.keys.data(), s.values.data());
    for (int64_t i = 0; i < groups; ++i) {
      const LaneGroup lg = s.group(i, dim);
      const int64_t count = std::min(tile_keys, lg.last_position + 1 - tile);
      if (count <= 0) continue;
      score_keys(lg, s.keys.data(), dim, tile, count, s.scores.data());
      softmax_update(lg, s.scores.data(), count, dim);
      weigh_keys(lg, s.scores.data(), s.values.data(), dim, count);
    }
  }
  for (int64_t pair = 0; pair < lanes; ++pair) {
    const int64_t row = row_begin + pair / group, g = pair % group;
    const float* acc = s.acc_t.data() + (pair / LANES) * dim * LANES + pair % LANES;
    const float inverse = 1.f / s.total[pair];
    scalar_t* dst = out + (c.begin + row) * stride_out + (head * group + g) * dim;
    for (int64_t d = 0; d < dim; ++d) dst[d] = static_cast<scalar_t>(acc[d * LANES] * inverse);
  }
}

template <typename scalar_t, typename kv_t>
void run(const at::Tensor& out, const at::Tensor& query, const at::Tensor& key_blocks, const at::Tensor& value_blocks,
         const std::vector<Chunk>& chunks, double scale, BlockScales key_scales, BlockScales value_scales) {
  const int64_t num_q_heads = query.size(1), dim = query.size(2);
  const Cache<kv_t> cache{key_blocks.data_ptr<kv_t>(), value_blocks.data_ptr<kv_t>(), key_scales, value_scales,
                          key_blocks.size(1), key_blocks.size(2), dim};
  const int64_t group = num_q_heads / cache.num_kv_heads;
  struct Task {
    int64_t chunk, head, row_begin, row_end;
  };
  std::vector<Task> tasks;
  for (int64_t ci = 0; ci < static_cast<int64_t>(chunks.size()); ++ci)
    for (int64_t r = 0; r < chunks[ci].end - chunks[ci].begin; r += ROWS_PER_TASK)
      for (int64_t h = 0; h < cache.num_kv_heads; ++h)
        tasks.push_back({ci, h, r, std::min(r + ROWS_PER_TASK, chunks[ci].end - chunks[ci].begin)});
  const scalar_t* q = query.data_ptr<scalar_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  const int64_t stride_q = query.stride(0), stride_o = out.stride(0);
  at::parallel_for(0, static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(dim, (ROWS_PER_TASK * group + LANES - 1) / LANES);
    for (int64_t t = begin; t < end; ++t) {
      const Task& task = tasks[t];
      attend_task<scalar_t, kv_t>(q, o, stride_q, stride_o, cache, chunks[task.chunk], task.head, task.row_begin,
                                  task.row_end, group, static_cast<float>(scale), scratch);
    }
  });
}

// out[begin:end] for every chunk (rows, context lengths and block tables given per chunk); other rows untouched.
void paged_prefill_attention(at::Tensor out, const at::Tensor& query, const at::Tensor& key_blocks,
                             const at::Tensor& value_blocks, const at::Tensor& chunk_rows,
                             const at::Tensor& context_lens, const at::Tensor& block_tables, double scale,
                             const std::optional<at::Tensor>& key_scales,
                             const std::optional<at::Tensor>& value_scales) {
  TORCH_CHECK(query.dim() == 3 && query.stride(2) == 1 && out.sizes() == query.sizes() && out.stride(2) == 1 &&
                  out.scalar_type() == query.scalar_type(),
              "query and out must be [T, Hq, D] with contiguous heads, of one dtype");
  TORCH_CHECK(query.stride(1) == query.size(2) && out.stride(1) == out.size(2), "heads of a row must be adjacent");
  TORCH_CHECK(key_blocks.dim() == 4 && key_blocks.is_contiguous() && value_blocks.is_contiguous() &&
                  value_blocks.sizes() == key_blocks.sizes() && key_blocks.size(3) == query.size(2),
              "key/value blocks must be contiguous [N, block_size, Hkv, D] matching the query's D");
  TORCH_CHECK(query.size(1) % key_blocks.size(2) == 0, "query heads must be a multiple of KV heads");
  TORCH_CHECK(chunk_rows.scalar_type() == at::kLong && context_lens.scalar_type() == at::kLong &&
                  block_tables.scalar_type() == at::kLong && chunk_rows.is_contiguous() &&
                  context_lens.is_contiguous() && block_tables.is_contiguous(),
              "chunk rows, context lengths and block tables must be int64 (contiguous)");
  const int64_t num_chunks = chunk_rows.size(0), num_blocks = key_blocks.size(0), block_size = key_blocks.size(1);
  TORCH_CHECK(context_lens.size(0) == num_chunks && block_tables.size(0) == num_chunks, "one row per chunk");
  const int64_t* rows = chunk_rows.data_ptr<int64_t>();
  const int64_t* tables = block_tables.data_ptr<int64_t>();
  const int64_t* lengths = context_lens.data_ptr<int64_t>();
  std::vector<Chunk> chunks;
  for (int64_t c = 0; c < num_chunks; ++c) {
    const Chunk chunk{rows[2 * c], rows[2 * c + 1], lengths[c], tables + c * block_tables.size(1)};
    TORCH_CHECK(0 <= chunk.begin && chunk.begin < chunk.end && chunk.end <= query.size(0) &&
                    chunk.end - chunk.begin <= chunk.length,
                "chunk ", c, " has bad rows or a context shorter than its rows");
    const int64_t used = (chunk.length + block_size - 1) / block_size;
    TORCH_CHECK(used <= block_tables.size(1), "chunk ", c, "'s context needs more blocks than its table row holds");
    for (int64_t j = 0; j < used; ++j)
      TORCH_CHECK(0 <= chunk.table[j] && chunk.table[j] < num_blocks, "block id out of range in chunk ", c);
    chunks.push_back(chunk);
  }
  const bool quantized = key_blocks.scalar_type() == at::kChar;
  TORCH_CHECK(quantized == key_scales.has_value() && quantized == value_scales.has_value(),
              "int8 blocks need key and value scales, float blocks take none");
  TORCH_CHECK(quantized || key_blocks.scalar_type() == query.scalar_type(), "float blocks must match the query dtype");
  const BlockScales ks = sagellm_kv::block_scales(key_scales, num_blocks, "key");
  const BlockScales vs = sagellm_kv::block_scales(value_scales, num_blocks, "value");
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, query.scalar_type(), "paged_prefill_attention", [&] {
    if (quantized) {
      run<scalar_t, int8_t>(out, query, key_blocks, value_blocks, chunks, scale, ks, vs);
    } else {
      run<scalar_t, scalar_t>(out, query, key_blocks, value_blocks, chunks, scale, ks, vs);
    }
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_prefill_attention", &paged_prefill_attention, "causal attention of prefill chunks over paged KV",
        py::arg("out"), py::arg("query"), py::arg("key_blocks"), py::arg("value_blocks"), py::arg("chunk_rows"),
        py::arg("context_lens"), py::arg("block_tables"), py::arg("scale"), py::arg("key_scales") = py::none(),
        py::arg("value_scales") = py::none());
}
