// int8 KV writes: new tokens' K/V go into int8 blocks with one float32 scale
// per block, raising a block's scale (and requantizing the codes already in
// it) when a token needs more range than the block had:
//
//     needed  = max over the block's new tokens of max|x| / 127
//     new     = max(old, needed)          divisor = max(new, FLT_MIN)
//     code    = round(code * (old / divisor))     (skipped where that ratio is 1)
//     new row = round(x / divisor)
//
// The same float32 operations, in the same order, as the PyTorch rule of
// sagellm-kv-pool's write_tokens and sagellm-engines' quantize_into, so
// codes and scales match theirs bit for bit. PyTorch needs ~15 ops per
// layer for it (gathers, a scatter-reduce, a whole-block requantize,
// scatters); here it is one pass over the touched blocks, which a decode
// step has one of per sequence.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <utility>
#include <vector>

namespace {

constexpr float QMAX = 127.f;

// Where one block of one part (K or V) lives.
struct BlockRef {
  int8_t* codes;  // [block_size, H, D], contiguous
  float* scale;
};

// The tokens of one step that land in one block: their rows of ``values`` and their offsets in the block.
struct BlockWrite {
  int64_t block;
  std::vector<std::pair<int64_t, int64_t>> tokens;  // (token index, offset in block)
};

template <typename scalar_t>
void write_block(BlockRef ref, const BlockWrite& write, const scalar_t* values /* [T, row] */, int64_t row,
                 int64_t block_elems) {
  float needed = 0.f;
  for (const auto& [token, offset] : write.tokens) {
    const scalar_t* x = values + token * row;
    float amax = 0.f;
    for (int64_t d = 0; d < row; ++d) amax = std::max(amax, std::fabs(static_cast<float>(x[d])));
    needed = std::max(needed, amax / QMAX);
  }
  const float old = *ref.scale;
  const float updated = std::max(old, needed);
  const float divisor = std::max(updated, FLT_MIN);
  const float ratio = old / divisor;
  if (ratio != 1.f)
    for (int64_t e = 0; e < block_elems; ++e)
      ref.codes[e] = static_cast<int8_t>(std::nearbyint(static_cast<float>(ref.codes[e]) * ratio));
  for (const auto& [token, offset] : write.tokens) {
    const scalar_t* x = values + token * row;
    int8_t* dst = ref.codes + offset * row;
    for (int64_t d = 0; d < row; ++d) dst[d] = static_cast<int8_t>(std::nearbyint(static_cast<float>(x[d]) / divisor));
  }
  *ref.scale = updated;
}

// The step's tokens grouped by the block their slot falls in, in order of first appearance.
std::vector<BlockWrite> group_by_block(const int64_t* slots, int64_t count, int64_t block_size, int64_t num_blocks) {
  std::vector<std::pair<int64_t, int64_t>> order(count);  // (block, token)
  for (int64_t t = 0; t < count; ++t) {
    TORCH_CHECK(slots[t] >= 0 && slots[t] < num_blocks * block_size, "slot outside the cache");
    order[t] = {slots[t] / block_size, t};
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<BlockWrite> writes;
  for (const auto& [block, token] : order) {
    if (writes.empty() || writes.back().block != block) writes.push_back({block, {}});
    writes.back().tokens.emplace_back(token, slots[token] % block_size);
  }
  return writes;
}

}  // namespace

// codes [P, N, block_size, H, D] int8 (each block contiguous; P stacks K and V, any stride between them);
// scales [P, N] float32 (any strides); slots [T] int64; values [P, T, H, D] float32 / bfloat16 / float16.
void quantize_kv(at::Tensor codes, at::Tensor scales, const at::Tensor& slots, const at::Tensor& values) {
  TORCH_CHECK(codes.scalar_type() == at::kChar && codes.dim() == 5 && codes.device().is_cpu(),
              "codes: int8 [P, N, block_size, H, D] on CPU");
  TORCH_CHECK(codes.stride(4) == 1 && codes.stride(3) == codes.size(4) && codes.stride(2) == codes.size(3) * codes.size(4),
              "codes: each block must be contiguous");
  const int64_t parts = codes.size(0), num_blocks = codes.size(1), block_size = codes.size(2);
  const int64_t row = codes.size(3) * codes.size(4), block_elems = block_size * row;
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.dim() == 2 && scales.size(0) == parts &&
                  scales.size(1) == num_blocks,
              "scales: float32 [P, N]");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.dim() == 1 && slots.is_contiguous(), "slots: int64 [T]");
  TORCH_CHECK(values.dim() == 4 && values.size(0) == parts && values.size(1) == slots.size(0) &&
                  values.size(2) * values.size(3) == row && values.is_contiguous(),
              "values: contiguous [P, T, H, D] matching the codes");
  const auto writes = group_by_block(slots.data_ptr<int64_t>(), slots.size(0), block_size, num_blocks);
  int8_t* code_base = codes.data_ptr<int8_t>();
  float* scale_base = scales.data_ptr<float>();
  const int64_t tasks = parts * static_cast<int64_t>(writes.size());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, values.scalar_type(), "quantize_kv", [&] {
    const scalar_t* value_base = values.data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 16, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t p = task / static_cast<int64_t>(writes.size());
        const BlockWrite& write = writes[task % static_cast<int64_t>(writes.size())];
        const BlockRef ref{code_base + p * codes.stride(0) + write.block * codes.stride(1),
                           scale_base + p * scales.stride(0) + write.block * scales.stride(1)};
        write_block<scalar_t>(ref, write, value_base + p * values.stride(0), row, block_elems);
      }
    });
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("quantize_kv", &quantize_kv, "write tokens' K/V into int8 blocks with per-block scales, in place");
}
