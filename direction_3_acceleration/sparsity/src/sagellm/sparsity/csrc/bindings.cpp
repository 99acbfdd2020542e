// Torch bindings of the packed 2:4 (and dense int8 baseline) kernels: quantize/convert the activations
// into padded rows, split the output rows across torch's threads, run one path, rescale.
//
// int8 (W8A8): x rows are quantized as sagellm-quantization's quantize_activations does (absmax / 127,
// round half to even), the kernel sums exact int32 products, and the result is acc * row scale *
// column scale (+ bias) in x's dtype, the same float operations in the same order as the PyTorch
// reference in packed24.py. bf16: x rounded to bf16, fp32 sums of bf16 x bf16 products, + bias.
//
// `path` names the kernel ("scalar", "avx2", "avx512"); packed24.py picks it, and a path this CPU does
// not run is refused here with an error rather than an illegal instruction.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.h"
#include "layout.h"

namespace sagellm_sparsity {
namespace {

constexpr int64_t kMinInputsPerTask = 1 << 16;  // weight inputs per thread task: less is not worth a thread
constexpr float kQmax = 127.f;

enum class Path { kScalar, kAvx2, kAvx512 };
enum class Family { kInt8, kBf16 };

bool runs_here(Path path, Family family) {
  switch (path) {
    case Path::kScalar: return true;
    case Path::kAvx2: return cpu_has_avx2();
    case Path::kAvx512: return family == Family::kInt8 ? cpu_has_avx512_int8() : cpu_has_avx512_bf16();
  }
  return false;
}

Path parse_path(const std::string& name, Family family) {
  Path path;
  if (name == "scalar") {
    path = Path::kScalar;
  } else if (name == "avx2") {
    path = Path::kAvx2;
  } else if (name == "avx512") {
    path = Path::kAvx512;
  } else {
    TORCH_CHECK(false, "packed24: unknown kernel path '", name, "' (expected scalar, avx2 or avx512)");
  }
  TORCH_CHECK(runs_here(path, family), "packed24: this CPU does not run the '", name, "' ",
              family == Family::kInt8 ? "int8" : "bf16", " kernels");
  return path;
}

int64_t grain_for(int64_t inputs_per_row) {
  return std::max<int64_t>(1, kMinInputsPerTask / std::max<int64_t>(1, inputs_per_row));
}

void check_2d(const at::Tensor& t, at::ScalarType dtype, const char* what) {
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous() && t.device().is_cpu() && t.scalar_type() == dtype, "packed24: ", what,
              " must be a contiguous 2-D CPU tensor of ", c10::toString(dtype));
}

void check_vector(const at::Tensor& t, at::ScalarType dtype, int64_t size, const char* what) {
  TORCH_CHECK(t.dim() == 1 && t.is_contiguous() && t.scalar_type() == dtype && t.numel() == size, "packed24: ", what,
              " must be a contiguous [", size, "] tensor of ", c10::toString(dtype));
}

// Activation codes in padded rows: int8, or int8 ^ 0x80 (code + 128) for the AVX-512 kernels.
struct Codes {
  at::Tensor rows;    // uint8 [M, stride], codes past K are 0
  at::Tensor scales;  // float32 [M]: x ~= code * scale
  int64_t stride;
};

uint8_t code_byte(int32_t code, bool offset) { return static_cast<uint8_t>(offset ? (code + 128) : code); }

template <typename scalar_t>
void quantize_row(const scalar_t* in, int64_t k, int64_t stride, bool offset, uint8_t* out, float* scale) {
  float amax = 0.f;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(static_cast<float>(in[i])));
  const float s = amax > 0.f ? amax / kQmax : 1.f;
  const float inverse = 1.f / s;
  for (int64_t i = 0; i < k; ++i) {
    out[i] = code_byte(static_cast<int32_t>(std::nearbyint(static_cast<float>(in[i]) * inverse)), offset);
  }
  std::memset(out + k, code_byte(0, offset), stride - k);
  *scale = s;
}

Codes quantize(const at::Tensor& x, bool offset) {
  const int64_t rows = x.size(0), k = x.size(1);
  const int64_t stride = round_up(std::max<int64_t>(k, 1), kActivationPadBytes);
  Codes codes{at::empty({rows, stride}, x.options().dtype(at::kByte)), at::empty({rows}, x.options().dtype(at::kFloat)),
              stride};
  uint8_t* out = codes.rows.data_ptr<uint8_t>();
  float* scales = codes.scales.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "packed24_quantize", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_for(k), [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) quantize_row(in + m * k, k, stride, offset, out + m * stride, scales + m);
    });
  });
  return codes;
}

Codes from_int8(const at::Tensor& codes_in, bool offset) {  // given codes (tests): pad, and offset if asked
  const int64_t rows = codes_in.size(0), k = codes_in.size(1);
  const int64_t stride = round_up(std::max<int64_t>(k, 1), kActivationPadBytes);
  Codes codes{at::empty({rows, stride}, codes_in.options().dtype(at::kByte)),
              at::ones({rows}, codes_in.options().dtype(at::kFloat)), stride};
  const int8_t* in = codes_in.data_ptr<int8_t>();
  uint8_t* out = codes.rows.data_ptr<uint8_t>();
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t i = 0; i < k; ++i) out[m * stride + i] = code_byte(in[m * k + i], offset);
    std::memset(out + m * stride + k, code_byte(0, offset), stride - k);
  }
  return codes;
}

using Int8Kernel = void (*)(const Int8Job&, int64_t, int64_t);

Int8Kernel packed_int8_kernel(Path path) {
  switch (path) {
    case Path::kAvx512: return packed_int8_avx512;
    case Path::kAvx2: return packed_int8_avx2;
    default: return packed_int8_scalar;
  }
}

Int8Kernel dense_int8_kernel(Path path) {
  switch (path) {
    case Path::kAvx512: return dense_int8_avx512;
    case Path::kAvx2: return dense_int8_avx2;
    default: return dense_int8_scalar;
  }
}

// out[m, n] = acc * row_scale[m] * col_scale[n] (+ bias[n]): the reference's operations, one at a time.
template <typename scalar_t>
void rescale(const int32_t* acc, const float* row_scale, const float* col_scale, const float* bias, scalar_t* out,
             int64_t rows, int64_t cols, int64_t n_begin, int64_t n_end) {
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t n = n_begin; n < n_end; ++n) {
      float value = static_cast<float>(acc[m * cols + n]) * row_scale[m];
      value = value * col_scale[n];
      if (bias != nullptr) value = value + bias[n];
      out[m * cols + n] = static_cast<scalar_t>(value);
    }
  }
}

// The int8 matmul of padded codes with N weight rows: int32 [M, N], or rescaled into x's dtype.
at::Tensor run_int8(Int8Kernel kernel, Int8Job job, const Codes& codes, int64_t n_rows, int64_t inputs_per_row,
                    const at::Tensor* col_scale, const at::Tensor& bias, at::ScalarType out_dtype) {
  auto acc = at::empty({job.rows, n_rows}, codes.rows.options().dtype(at::kInt));
  job.x = codes.rows.data_ptr<uint8_t>();
  job.x_stride = codes.stride;
  job.acc = acc.data_ptr<int32_t>();
  job.acc_stride = n_rows;
  if (col_scale == nullptr) {
    at::parallel_for(0, n_rows, grain_for(inputs_per_row), [&](int64_t n0, int64_t n1) { kernel(job, n0, n1); });
    return acc;
  }
  auto out = at::empty({job.rows, n_rows}, codes.rows.options().dtype(out_dtype));
  const float* bias_ptr = bias.numel() > 0 ? bias.data_ptr<float>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out_dtype, "packed24_rescale", [&] {
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    at::parallel_for(0, n_rows, grain_for(inputs_per_row), [&](int64_t n0, int64_t n1) {
      kernel(job, n0, n1);
      rescale<scalar_t>(job.acc, codes.scales.data_ptr<float>(), col_scale->data_ptr<float>(), bias_ptr, out_ptr,
                        job.rows, n_rows, n0, n1);
    });
  });
  return out;
}

void check_x(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(), "packed24: x must be contiguous 2-D on CPU");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
              "packed24: x must be float32, bfloat16 or float16");
}

int64_t checked_windows(const at::Tensor& values, const at::Tensor& indices, int64_t k, int64_t window_inputs,
                        int64_t window_values, int64_t window_index_bytes) {
  const int64_t windows = values.size(1) / window_values;
  TORCH_CHECK(values.size(1) == windows * window_values && windows == (k + window_inputs - 1) / window_inputs,
              "packed24: values hold ", values.size(1), " per row, not the padded windows of K=", k);
  TORCH_CHECK(indices.size(0) == values.size(0) && indices.size(1) == windows * window_index_bytes,
              "packed24: indices do not match values");
  return windows;
}

Int8Job packed_job(const at::Tensor& values, const at::Tensor& indices, const at::Tensor& row_sums, int64_t rows,
                   int64_t k) {
  check_2d(values, at::kChar, "values");
  check_2d(indices, at::kByte, "indices");
  check_vector(row_sums, at::kInt, values.size(0), "row_sums");
  Int8Job job{};
  job.rows = rows;
  job.weights = values.data_ptr<int8_t>();
  job.indices = indices.data_ptr<uint8_t>();
  job.row_sums = row_sums.data_ptr<int32_t>();
  job.windows = checked_windows(values, indices, k, kInt8WindowInputs, kInt8WindowValues, kInt8WindowIndexBytes);
  return job;
}

Int8Job dense_job(const at::Tensor& weight, const at::Tensor& row_sums, int64_t rows, int64_t k) {
  check_2d(weight, at::kChar, "weight codes");
  TORCH_CHECK(weight.size(1) == k, "packed24: weight has ", weight.size(1), " inputs, x has ", k);
  check_vector(row_sums, at::kInt, weight.size(0), "row_sums");
  Int8Job job{};
  job.rows = rows;
  job.weights = weight.data_ptr<int8_t>();
  job.row_sums = row_sums.data_ptr<int32_t>();
  job.k = k;
  return job;
}

void check_epilogue(const at::Tensor& scales, const at::Tensor& bias, int64_t n_rows) {
  check_vector(scales, at::kFloat, n_rows, "scales");
  if (bias.numel() > 0) check_vector(bias, at::kFloat, n_rows, "bias");
}

}  // namespace

// x [M, K] float -> x @ dequant(W).T + bias, W packed 2:4 int8 (values [N, W*32], indices [N, W*8]).
at::Tensor packed_int8_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& indices,
                              const at::Tensor& scales, const at::Tensor& row_sums, const at::Tensor& bias,
                              const std::string& path_name) {
  const Path path = parse_path(path_name, Family::kInt8);
  check_x(x);
  Int8Job job = packed_job(values, indices, row_sums, x.size(0), x.size(1));
  check_epilogue(scales, bias, values.size(0));
  const Codes codes = quantize(x, path == Path::kAvx512);
  return run_int8(packed_int8_kernel(path), job, codes, values.size(0), x.size(1), &scales, bias, x.scalar_type());
}

// codes [M, K] int8 -> int32 [M, N] (the exact integer product, for tests).
at::Tensor packed_int8_matmul_codes(const at::Tensor& codes, const at::Tensor& values, const at::Tensor& indices,
                                    const at::Tensor& row_sums, const std::string& path_name) {
  const Path path = parse_path(path_name, Family::kInt8);
  check_2d(codes, at::kChar, "codes");
  Int8Job job = packed_job(values, indices, row_sums, codes.size(0), codes.size(1));
  const Codes padded = from_int8(codes, path == Path::kAvx512);
  return run_int8(packed_int8_kernel(path), job, padded, values.size(0), codes.size(1), nullptr, at::Tensor(),
                  at::kInt);
}

// x [M, K] float -> x @ dequant(W).T + bias, W dense int8 codes [N, K] (the baseline of the packed kernel).
at::Tensor dense_int8_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scales,
                             const at::Tensor& row_sums, const at::Tensor& bias, const std::string& path_name) {
  const Path path = parse_path(path_name, Family::kInt8);
  check_x(x);
  Int8Job job = dense_job(weight, row_sums, x.size(0), x.size(1));
  check_epilogue(scales, bias, weight.size(0));
  const Codes codes = quantize(x, path == Path::kAvx512);
  return run_int8(dense_int8_kernel(path), job, codes, weight.size(0), x.size(1), &scales, bias, x.scalar_type());
}

at::Tensor dense_int8_matmul_codes(const at::Tensor& codes, const at::Tensor& weight, const at::Tensor& row_sums,
                                   const std::string& path_name) {
  const Path path = parse_path(path_name, Family::kInt8);
  check_2d(codes, at::kChar, "codes");
  Int8Job job = dense_job(weight, row_sums, codes.size(0), codes.size(1));
  const Codes padded = from_int8(codes, path == Path::kAvx512);
  return run_int8(dense_int8_kernel(path), job, padded, weight.size(0), codes.size(1), nullptr, at::Tensor(),
                  at::kInt);
}

// x [M, K] float -> bf16(x) @ W.T + bias in fp32 sums, W packed 2:4 bf16 (values [N, W*16], indices [N, W*4]).
at::Tensor packed_bf16_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& indices,
                              const at::Tensor& bias, const std::string& path_name) {
  const Path path = parse_path(path_name, Family::kBf16);
  check_x(x);
  check_2d(values, at::kBFloat16, "values");
  check_2d(indices, at::kByte, "indices");
  const int64_t rows = x.size(0), k = x.size(1), n_rows = values.size(0);
  if (bias.numel() > 0) check_vector(bias, at::kFloat, n_rows, "bias");
  const int64_t windows =
      checked_windows(values, indices, k, kBf16WindowInputs, kBf16WindowValues, kBf16WindowIndexBytes);
  const int64_t stride = round_up(std::max<int64_t>(k, 1), kActivationPadBytes / 2);  // elements
  auto padded = at::zeros({rows, stride}, x.options().dtype(at::kBFloat16));
  padded.narrow(1, 0, k).copy_(x);  // rounds to nearest even, as x.to(torch.bfloat16)
  auto acc = at::empty({rows, n_rows}, x.options().dtype(at::kFloat));
  Bf16Job job{reinterpret_cast<const uint16_t*>(padded.data_ptr<at::BFloat16>()),
              stride,
              rows,
              reinterpret_cast<const uint16_t*>(values.data_ptr<at::BFloat16>()),
              indices.data_ptr<uint8_t>(),
              windows,
              acc.data_ptr<float>(),
              n_rows};
  auto kernel = path == Path::kAvx512 ? packed_bf16_avx512 : path == Path::kAvx2 ? packed_bf16_avx2 : packed_bf16_scalar;
  at::parallel_for(0, n_rows, grain_for(k), [&](int64_t n0, int64_t n1) { kernel(job, n0, n1); });
  if (bias.numel() > 0) acc.add_(bias);
  return acc.scalar_type() == x.scalar_type() ? acc : acc.to(x.scalar_type());
}

// The kernel paths this CPU runs for "int8" or "bf16", fastest first ("scalar" always).
std::vector<std::string> cpu_paths(const std::string& kind) {
  TORCH_CHECK(kind == "int8" || kind == "bf16", "packed24: unknown kind '", kind, "'");
  const Family family = kind == "int8" ? Family::kInt8 : Family::kBf16;
  std::vector<std::string> paths;
  if (runs_here(Path::kAvx512, family)) paths.emplace_back("avx512");
  if (runs_here(Path::kAvx2, family)) paths.emplace_back("avx2");
  paths.emplace_back("scalar");
  return paths;
}

}  // namespace sagellm_sparsity

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace sagellm_sparsity;
  m.def("packed_int8_linear", &packed_int8_linear, "W8A8 linear with a packed 2:4 int8 weight");
  m.def("packed_int8_matmul_codes", &packed_int8_matmul_codes, "int8 codes x packed 2:4 int8 weight -> int32");
  m.def("dense_int8_linear", &dense_int8_linear, "W8A8 linear with a dense int8 weight (the baseline)");
  m.def("dense_int8_matmul_codes", &dense_int8_matmul_codes, "int8 codes x dense int8 weight -> int32");
  m.def("packed_bf16_linear", &packed_bf16_linear, "bf16 linear with a packed 2:4 bf16 weight");
  m.def("cpu_paths", &cpu_paths, "kernel paths this CPU runs for a kind, fastest first");
}
