// AVX-512 helpers shared by sageLLM's C++ CPU kernels (sagellm-kernel-fusion, sagellm-quantization):
// loads of 16 lanes as float32 (float32, bf16, int8, int32), stores back (bf16 rounded to nearest even as
// c10::BFloat16 does for finite values; int8 rounded to nearest even and saturated) and a polynomial exp.
//
// Include it unconditionally: it defines SAGELLM_AVX512 (and the helpers) only when the compiler targets
// AVX-512F and AVX-512BW, which sagellm.core.native passes as explicit -m flags on CPUs that have them
// (never -march=native). A kernel keeps a portable path under `#ifndef SAGELLM_AVX512`, which is what a
// build with SAGELLM_CPU_ISA=portable runs. Needs torch's headers (c10::BFloat16): sagellm.core.native
// builds through torch.utils.cpp_extension and puts this directory on the include path.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define SAGELLM_AVX512 1

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>

namespace sagellm_simd {

// 16 values as float32. scalar_t is float or c10::BFloat16: any other type is read as float32 (so a
// kernel instantiated for more dtypes, e.g. by AT_DISPATCH_FLOATING_TYPES, must only call it for these two).
template <typename scalar_t>
inline __m512 load16(const scalar_t* p) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  } else {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
  }
}

// 16 int8 codes as float32.
inline __m512 load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// 16 int32 values (e.g. int8 x int8 accumulators) as float32.
inline __m512 load16(const int32_t* p) { return _mm512_cvtepi32_ps(_mm512_loadu_si512(p)); }

// float32 lanes rounded to the nearest bf16, still as float32 bit patterns (low 16 bits zero).
inline __m512i round_bf16_bits(__m512 v) {
  __m512i bits = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  bits = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  return _mm512_and_si512(bits, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
}

// 16 float32 lanes stored as scalar_t: c10::BFloat16 (rounded to nearest even) or float (as load16).
template <typename scalar_t>
inline void store16(scalar_t* p, __m512 v) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    __m512i upper = _mm512_srli_epi32(round_bf16_bits(v), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(upper));
  } else {
    _mm512_storeu_ps(reinterpret_cast<float*>(p), v);
  }
}

// 16 float32 lanes as int8 codes: rounded to nearest even (the default MXCSR mode, as std::nearbyint),
// saturated to [-128, 127].
inline void store16(int8_t* p, __m512 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
}

// A value rounded to scalar_t and back (where a PyTorch op chain rounds in between).
template <typename scalar_t>
inline __m512 round_to(__m512 v) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    return _mm512_castsi512_ps(round_bf16_bits(v));
  } else {
    return v;
  }
}

// exp on [-87, 88]: 2^n * 2^f, a degree-6 polynomial for 2^f with f in [-0.5, 0.5]; relative error ~2e-7
// near 0, plus ~|x| * 6e-8 from rounding x * log2(e) to float32 (softmax arguments are <= 0 and small).
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.5353362e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3398874e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace sagellm_simd

#endif  // __AVX512F__ && __AVX512BW__
