// Per-block scales of an int8 KV cache (sagellm-kv-pool's format: one float32 per block for K and one for V,
// often strided views of one [N, 2] buffer), shared by the paged attention kernels. Absent for a float cache,
// where every scale reads as 1.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <optional>

namespace sagellm_kv {

struct BlockScales {
  const float* data = nullptr;
  int64_t stride = 0;

  float of(int64_t block) const { return data == nullptr ? 1.f : data[block * stride]; }
};

// Checked view of `scales` (float32 [num_pool_blocks] on CPU, any stride), or absent; `what` names it in errors.
inline BlockScales block_scales(const std::optional<at::Tensor>& scales, int64_t num_pool_blocks, const char* what) {
  if (!scales.has_value()) return {};
  const at::Tensor& s = *scales;
  TORCH_CHECK(s.scalar_type() == at::kFloat && s.dim() == 1 && s.size(0) == num_pool_blocks && s.device().is_cpu(),
              what, " scales: float32 [num_blocks] on CPU");
  return {s.data_ptr<float>(), s.stride(0)};
}

}  // namespace sagellm_kv
