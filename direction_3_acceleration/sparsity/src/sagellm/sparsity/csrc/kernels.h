// The matmul kernels behind packed24.py, one set per instruction-set path. Plain C++ on raw pointers (no
// torch headers, so these files compile in seconds); bindings.cpp quantizes, pads, splits the output rows
// across threads and calls one path.
//
// Every path computes the same numbers: int8 kernels return exact int32 sums (the AVX-512 kernels take
// activations offset to unsigned and subtract 128 * row_sum themselves), bf16 kernels fp32 sums of exact
// bf16 x bf16 products (only the summation order differs between paths).
//
// The AVX2 and AVX-512 kernels are compiled with per-function target attributes, not -m flags: one build
// holds every path, and bindings.cpp runs a path only where the CPU reports its instructions
// (cpu_has_*), so no build can raise "Illegal instruction" on an older CPU.
#pragma once

#include <cstdint>

namespace sagellm_sparsity {

// acc[m * acc_stride + n] = sum_k x[m, k] * w[n, k] for m < rows and n in [n_begin, n_end).
struct Int8Job {
  const uint8_t* x;  // [rows, x_stride]: int8 codes, or codes ^ 0x80 (code + 128) for the AVX-512 paths
  int64_t x_stride;  // >= the padded row: a multiple of kActivationPadBytes, zero codes past K
  int64_t rows;
  const int8_t* weights;   // packed: values [N, windows * 32]; dense: codes [N, k]
  const uint8_t* indices;  // packed: [N, windows * 8]; dense: unused
  const int32_t* row_sums;  // [N]: sum of each weight row's codes (the unsigned-activation correction)
  int64_t windows;          // packed: 64-input windows per row
  int64_t k;                // dense: inputs per row
  int32_t* acc;
  int64_t acc_stride;
};

// acc[m * acc_stride + n] = sum_k x[m, k] * w[n, k] in fp32, x and w bf16 (uint16 bit patterns).
struct Bf16Job {
  const uint16_t* x;  // [rows, x_stride]: bf16 activations, zero past K
  int64_t x_stride;   // elements; >= windows * 32, a multiple of 64
  int64_t rows;
  const uint16_t* values;  // [N, windows * 16]
  const uint8_t* indices;  // [N, windows * 4]
  int64_t windows;         // 32-input windows per row
  float* acc;
  int64_t acc_stride;
};

void packed_int8_scalar(const Int8Job& job, int64_t n_begin, int64_t n_end);
void packed_int8_avx2(const Int8Job& job, int64_t n_begin, int64_t n_end);
void packed_int8_avx512(const Int8Job& job, int64_t n_begin, int64_t n_end);
void dense_int8_scalar(const Int8Job& job, int64_t n_begin, int64_t n_end);
void dense_int8_avx2(const Int8Job& job, int64_t n_begin, int64_t n_end);
void dense_int8_avx512(const Int8Job& job, int64_t n_begin, int64_t n_end);
void packed_bf16_scalar(const Bf16Job& job, int64_t n_begin, int64_t n_end);
void packed_bf16_avx2(const Bf16Job& job, int64_t n_begin, int64_t n_end);
void packed_bf16_avx512(const Bf16Job& job, int64_t n_begin, int64_t n_end);

// Whether this CPU (and OS) runs a path's instructions: AVX2 kernels need avx2 + fma; AVX-512 int8 needs
// avx512f/bw + vbmi (byte permutes) + vnni (vpdpbusd); AVX-512 bf16 needs avx512f/bw + avx512_bf16.
bool cpu_has_avx2();
bool cpu_has_avx512_int8();
bool cpu_has_avx512_bf16();

}  // namespace sagellm_sparsity
