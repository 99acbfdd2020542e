// AVX2 paths (avx2 + fma, e.g. Zen 2/3, Haswell and later): the packed 2:4 int8 and bf16 kernels and a
// dense int8 kernel of the same structure (the fair baseline for the packed one).
//
// int8, per 64-input window and output row n (see layout.h):
//   decode once:  broadcast the 8 index bytes, shift qword q right by 2q, keep 2 bits, OR the slot base
//                 -> 32 vpshufb indices;  |w| once (vpmaddubsw wants one unsigned operand)
//   per x row:    2 loads, 2 vpshufb + 1 blend gather the 32 activations the kept weights meet,
//                 vpsignb moves w's sign onto x, vpmaddubsw + vpmaddwd + add accumulate into int32.
// |x|,|w| <= 127, so a vpmaddubsw pair sum stays <= 2 * 127 * 127 < 2^15: no saturation, exact sums.
// bf16: the same gather on 16-bit elements (32 inputs per window); even/odd elements widen to fp32 by a
// shift / a mask and meet the weights in two FMAs.
#include <algorithm>
#include <array>
#include <cstring>

#include "kernels.h"
#include "layout.h"
#include "simd_target.h"

namespace sagellm_sparsity {

#ifdef SAGELLM_SPARSITY_X86
namespace {

constexpr int kMaxInt8Rows = 8;  // 8 accumulators + operands fit AVX2's 16 registers
constexpr int kMaxBf16Rows = 4;  // two accumulators per row (even and odd elements)

constexpr std::array<uint8_t, 32> int8_shuffle_base() {
  std::array<uint8_t, 32> base{};
  for (int p = 0; p < 32; ++p) base[p] = static_cast<uint8_t>(int8_slot_input(p) % 16);  // byte within the lane
  return base;
}

constexpr std::array<uint16_t, 16> bf16_shuffle_base() {
  std::array<uint16_t, 16> base{};
  for (int e = 0; e < 16; ++e) {
    const int low = 2 * (bf16_slot_input(e) % 8);  // the element's first byte within the lane
    base[e] = static_cast<uint16_t>(low | ((low + 1) << 8));
  }
  return base;
}

alignas(32) constexpr std::array<uint8_t, 32> kInt8Base = int8_shuffle_base();
alignas(32) constexpr std::array<uint16_t, 16> kBf16Base = bf16_shuffle_base();

SAGELLM_TARGET_AVX2 inline int32_t sum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

SAGELLM_TARGET_AVX2 inline float sum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// x . w for 32 int8 pairs, added to acc as 8 int32: |w| and w are the weight's magnitude and sign source.
SAGELLM_TARGET_AVX2 inline __m256i dot_int8(__m256i acc, __m256i x, __m256i magnitude, __m256i w) {
  const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(x, w));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

template <int M>
SAGELLM_TARGET_AVX2 void packed_int8_rows(const Int8Job& job, int64_t n, int64_t m0) {
  const __m256i shifts = _mm256_setr_epi64x(0, 2, 4, 6);
  const __m256i three = _mm256_set1_epi8(3);
  const __m256i base = _mm256_load_si256(reinterpret_cast<const __m256i*>(kInt8Base.data()));
  const int8_t* values = job.weights + n * job.windows * kInt8WindowValues;
  const uint8_t* indices = job.indices + n * job.windows * kInt8WindowIndexBytes;
  const uint8_t* x0 = job.x + m0 * job.x_stride;
  __m256i acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_si256();
  for (int64_t w = 0; w < job.windows; ++w) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + w * kInt8WindowValues));
    const __m256i magnitude = _mm256_abs_epi8(v);
    int64_t word;
    std::memcpy(&word, indices + w * kInt8WindowIndexBytes, sizeof(word));
    const __m256i fields = _mm256_srlv_epi64(_mm256_set1_epi64x(word), shifts);
    const __m256i select = _mm256_or_si256(_mm256_and_si256(fields, three), base);
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      const uint8_t* x = x0 + m * job.x_stride + w * kInt8WindowInputs;
      const __m256i lo = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), select);
      const __m256i hi = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)), select);
      acc[m] = dot_int8(acc[m], _mm256_blend_epi32(lo, hi, 0xCC), magnitude, v);
    }
  }
  for (int m = 0; m < M; ++m) job.acc[(m0 + m) * job.acc_stride + n] = sum_epi32(acc[m]);
}

template <int M>
SAGELLM_TARGET_AVX2 void dense_int8_rows(const Int8Job& job, int64_t n, int64_t m0) {
  const int8_t* weights = job.weights + n * job.k;
  const uint8_t* x0 = job.x + m0 * job.x_stride;
  __m256i acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 32 <= job.k; k += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weights + k));
    const __m256i magnitude = _mm256_abs_epi8(v);
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + m * job.x_stride + k));
      acc[m] = dot_int8(acc[m], x, magnitude, v);
    }
  }
  for (int m = 0; m < M; ++m) {
    const int8_t* x = reinterpret_cast<const int8_t*>(x0 + m * job.x_stride);
    int32_t sum = sum_epi32(acc[m]);
    for (int64_t t = k; t < job.k; ++t) sum += int32_t{x[t]} * int32_t{weights[t]};
    job.acc[(m0 + m) * job.acc_stride + n] = sum;
  }
}

template <int M>
SAGELLM_TARGET_AVX2 void packed_bf16_rows(const Bf16Job& job, int64_t n, int64_t m0) {
  const __m256i shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i two_bits = _mm256_set1_epi32(0x00030003);
  const __m256i to_bytes = _mm256_set1_epi16(0x0202);  // index i -> byte offsets (2i, 2i) of its element
  const __m256i base = _mm256_load_si256(reinterpret_cast<const __m256i*>(kBf16Base.data()));
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  const uint16_t* values = job.values + n * job.windows * kBf16WindowValues;
  const uint8_t* indices = job.indices + n * job.windows * kBf16WindowIndexBytes;
  const uint16_t* x0 = job.x + m0 * job.x_stride;
  __m256 even[M], odd[M];
  for (int m = 0; m < M; ++m) even[m] = odd[m] = _mm256_setzero_ps();
  for (int64_t w = 0; w < job.windows; ++w) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + w * kBf16WindowValues));
    const __m256 w_even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    const __m256 w_odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
    int32_t word;
    std::memcpy(&word, indices + w * kBf16WindowIndexBytes, sizeof(word));
    const __m256i fields = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), shifts), two_bits);
    const __m256i select = _mm256_add_epi16(_mm256_mullo_epi16(fields, to_bytes), base);
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m) {
      const uint16_t* x = x0 + m * job.x_stride + w * kBf16WindowInputs;
      const __m256i lo = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), select);
      const __m256i hi = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16)), select);
      const __m256i g = _mm256_blend_epi32(lo, hi, 0xCC);
      even[m] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(g, 16)), w_even, even[m]);
      odd[m] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(g, high)), w_odd, odd[m]);
    }
  }
  for (int m = 0; m < M; ++m) job.acc[(m0 + m) * job.acc_stride + n] = sum_ps(_mm256_add_ps(even[m], odd[m]));
}

// Runs Rows<M> over every block of at most kMax rows, for each output row in [n_begin, n_end).
template <int kMax, typename Job, template <int> class Rows>
void for_row_blocks(const Job& job, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t m0 = 0; m0 < job.rows; m0 += kMax) {
      switch (std::min<int64_t>(kMax, job.rows - m0)) {
        case 1: Rows<1>::run(job, n, m0); break;
        case 2: Rows<2>::run(job, n, m0); break;
        case 3: Rows<3>::run(job, n, m0); break;
        case 4: Rows<4>::run(job, n, m0); break;
        case 5: if constexpr (kMax >= 5) Rows<5>::run(job, n, m0); break;
        case 6: if constexpr (kMax >= 6) Rows<6>::run(job, n, m0); break;
        case 7: if constexpr (kMax >= 7) Rows<7>::run(job, n, m0); break;
        default: if constexpr (kMax >= 8) Rows<8>::run(job, n, m0); break;
      }
    }
  }
}

template <int M>
struct PackedInt8Rows {
  static void run(const Int8Job& job, int64_t n, int64_t m0) { packed_int8_rows<M>(job, n, m0); }
};
template <int M>
struct DenseInt8Rows {
  static void run(const Int8Job& job, int64_t n, int64_t m0) { dense_int8_rows<M>(job, n, m0); }
};
template <int M>
struct PackedBf16Rows {
  static void run(const Bf16Job& job, int64_t n, int64_t m0) {
    if constexpr (M <= kMaxBf16Rows) packed_bf16_rows<M>(job, n, m0);
  }
};

}  // namespace

void packed_int8_avx2(const Int8Job& job, int64_t n_begin, int64_t n_end) {
  for_row_blocks<kMaxInt8Rows, Int8Job, PackedInt8Rows>(job, n_begin, n_end);
}

void dense_int8_avx2(const Int8Job& job, int64_t n_begin, int64_t n_end) {
  for_row_blocks<kMaxInt8Rows, Int8Job, DenseInt8Rows>(job, n_begin, n_end);
}

void packed_bf16_avx2(const Bf16Job& job, int64_t n_begin, int64_t n_end) {
  for_row_blocks<kMaxBf16Rows, Bf16Job, PackedBf16Rows>(job, n_begin, n_end);
}

bool cpu_has_avx2() {
#ifdef SAGELLM_SPARSITY_SIMDE
  return true;  // emulated through SIMDe: runs on any CPU
#endif
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#else  // not x86: bindings.cpp never selects these (cpu_has_avx2() is false)

void packed_int8_avx2(const Int8Job& job, int64_t n_begin, int64_t n_end) { packed_int8_scalar(job, n_begin, n_end); }
void dense_int8_avx2(const Int8Job& job, int64_t n_begin, int64_t n_end) { dense_int8_scalar(job, n_begin, n_end); }
void packed_bf16_avx2(const Bf16Job& job, int64_t n_begin, int64_t n_end) { packed_bf16_scalar(job, n_begin, n_end); }
bool cpu_has_avx2() { return false; }

#endif

}  // namespace sagellm_sparsity
