// Per-function instruction-set targets for the SIMD kernel files.
//
// sagellm.core.native's ISA levels pass -mavx2 or -mavx512f/bw/vl/dq to the whole build; VBMI, VNNI and
// BF16 are in no level, and -march=native would tie a cached build to the building CPU. So the SIMD
// kernels name their instructions per function and every build (even SAGELLM_CPU_ISA=portable) holds
// them all; bindings.cpp calls one only after cpu_has_* (libgcc's cpuid + XCR0 check) said it runs here.
//
// SAGELLM_SPARSITY_SIMDE (tests/test_packed24_emulated.py only) compiles the same kernel source against
// SIMDe's portable implementations of these intrinsics, so the AVX-512 paths are checked on CPUs without
// AVX-512; nothing else defines it.
#pragma once

#if defined(SAGELLM_SPARSITY_SIMDE)
#define SAGELLM_SPARSITY_X86 1
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cstring>

#ifndef _mm512_maskz_loadu_epi8  // missing from older SIMDe releases: a masked load that reads only kept bytes
inline simde__m512i _mm512_maskz_loadu_epi8(uint64_t mask, const void* p) {
  simde__m512i_private out{};
  const auto* bytes = static_cast<const int8_t*>(p);
  for (int i = 0; i < 64; ++i) out.i8[i] = (mask >> i) & 1 ? bytes[i] : 0;
  return simde__m512i_from_private(out);
}
#endif
typedef simde__m512bh __m512bh;

#define SAGELLM_TARGET_AVX2
#define SAGELLM_TARGET_AVX512_INT8
#define SAGELLM_TARGET_AVX512_BF16

#elif (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SAGELLM_SPARSITY_X86 1
#include <immintrin.h>

#define SAGELLM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define SAGELLM_TARGET_AVX512_INT8 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni")))
#define SAGELLM_TARGET_AVX512_BF16 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))
#endif
