// Portable C++ paths: any CPU, and the definition of the layout the SIMD paths must agree with
// (tests compare all of them). Decode a window's indices once, then reuse them for every activation row.
#include <cstring>

#include "kernels.h"
#include "layout.h"

namespace sagellm_sparsity {
namespace {

float bf16_to_float(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

// Where each kept value of a window reads its input: window start + slot base + 2-bit index.
void decode_int8_window(const uint8_t* index_bytes, int64_t first_input, int64_t* source) {
  for (int p = 0; p < kInt8WindowValues; ++p) {
    const int field = int8_slot_field(p);
    const int idx = (index_bytes[field / 4] >> (2 * (field % 4))) & 3;
    source[p] = first_input + int8_slot_input(p) + idx;
  }
}

void decode_bf16_window(const uint8_t* index_bytes, int64_t first_input, int64_t* source) {
  for (int e = 0; e < kBf16WindowValues; ++e) {
    const int field = bf16_slot_field(e);
    const int idx = (index_bytes[field / 4] >> (2 * (field % 4))) & 3;
    source[e] = first_input + bf16_slot_input(e) + idx;
  }
}

}  // namespace

void packed_int8_scalar(const Int8Job& job, int64_t n_begin, int64_t n_end) {
  int64_t source[kInt8WindowValues];
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int8_t* values = job.weights + n * job.windows * kInt8WindowValues;
    const uint8_t* indices = job.indices + n * job.windows * kInt8WindowIndexBytes;
    for (int64_t m = 0; m < job.rows; ++m) job.acc[m * job.acc_stride + n] = 0;
    for (int64_t w = 0; w < job.windows; ++w) {
      decode_int8_window(indices + w * kInt8WindowIndexBytes, w * kInt8WindowInputs, source);
      const int8_t* window_values = values + w * kInt8WindowValues;
      for (int64_t m = 0; m < job.rows; ++m) {
        const int8_t* x = reinterpret_cast<const int8_t*>(job.x + m * job.x_stride);
        int32_t sum = 0;
        for (int p = 0; p < kInt8WindowValues; ++p) sum += int32_t{x[source[p]]} * int32_t{window_values[p]};
        job.acc[m * job.acc_stride + n] += sum;
      }
    }
  }
}

void dense_int8_scalar(const Int8Job& job, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int8_t* weights = job.weights + n * job.k;
    for (int64_t m = 0; m < job.rows; ++m) {
      const int8_t* x = reinterpret_cast<const int8_t*>(job.x + m * job.x_stride);
      int32_t sum = 0;
      for (int64_t k = 0; k < job.k; ++k) sum += int32_t{x[k]} * int32_t{weights[k]};
      job.acc[m * job.acc_stride + n] = sum;
    }
  }
}

void packed_bf16_scalar(const Bf16Job& job, int64_t n_begin, int64_t n_end) {
  int64_t source[kBf16WindowValues];
  float weights[kBf16WindowValues];
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint16_t* values = job.values + n * job.windows * kBf16WindowValues;
    const uint8_t* indices = job.indices + n * job.windows * kBf16WindowIndexBytes;
    for (int64_t m = 0; m < job.rows; ++m) job.acc[m * job.acc_stride + n] = 0.f;
    for (int64_t w = 0; w < job.windows; ++w) {
      decode_bf16_window(indices + w * kBf16WindowIndexBytes, w * kBf16WindowInputs, source);
      for (int e = 0; e < kBf16WindowValues; ++e) weights[e] = bf16_to_float(values[w * kBf16WindowValues + e]);
      for (int64_t m = 0; m < job.rows; ++m) {
        const uint16_t* x = job.x + m * job.x_stride;
        float sum = 0.f;
        for (int e = 0; e < kBf16WindowValues; ++e) sum += bf16_to_float(x[source[e]]) * weights[e];
        job.acc[m * job.acc_stride + n] += sum;
      }
    }
  }
}

}  // namespace sagellm_sparsity
