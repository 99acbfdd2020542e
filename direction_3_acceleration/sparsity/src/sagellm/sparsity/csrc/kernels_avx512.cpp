// AVX-512 paths: packed 2:4 int8 (VBMI byte permutes + VNNI vpdpbusd), packed 2:4 bf16 (avx512_bf16
// vdpbf16ps) and a dense int8 VNNI kernel of the same structure (the fair baseline for the packed one).
//
// int8, per pair of 64-input windows (128 inputs, 64 kept values, 16 index bytes; layout.h) and row n:
//   decode once:  vpermq routes window 0's index qword to qwords 0-3 and window 1's to 4-7,
//                 vpmultishiftqb pulls each slot's 2-bit field to its byte, vpternlogd keeps 2 bits and
//                 ORs the slot's base -> 64 byte indices into the 128-byte activation window
//   per x row:    2 loads, 1 vpermt2b gathers the 64 activations, 1 vpdpbusd accumulates.
// vpdpbusd multiplies unsigned by signed bytes, so the activations come offset to unsigned (code + 128,
// i.e. code ^ 0x80) and 128 * sum(w) comes off at the end: the int32 result is exact, as on every path.
// An odd window count ends with one 64-input window (zero-extended values, zero upper index qword).
// bf16: 64 inputs per window pair; vpermw routes 16-bit index chunks, vpsrlvw/vpternlogd decode,
// vpermt2w gathers 32 activations, vdpbf16ps multiplies pairs and accumulates in fp32.
// With one x row, two accumulators alternate so vpdpbusd/vdpbf16ps latency does not serialize the loop.
#include <algorithm>
#include <array>
#include <cstring>

#include "kernels.h"
#include "layout.h"
#include "simd_target.h"

namespace sagellm_sparsity {

#ifdef SAGELLM_SPARSITY_X86
namespace {

constexpr int kMaxRows = 8;

constexpr std::array<uint8_t, 64> int8_shift_control() {  // bit offset of slot p's field in its qword
  std::array<uint8_t, 64> control{};
  for (int p = 0; p < 64; ++p) control[p] = static_cast<uint8_t>(2 * int8_slot_field(p % 32));
  return control;
}

constexpr std::array<uint8_t, 64> int8_gather_base() {  // slot p's first input in the 128-input window pair
  std::array<uint8_t, 64> base{};
  for (int p = 0; p < 64; ++p) base[p] = static_cast<uint8_t>(64 * (p / 32) + int8_slot_input(p % 32));
  return base;
}

// bf16: the 8 index bytes of a window pair are 4 16-bit chunks; element e's field lies in chunk
// 2 * (e / 16) + field / 8, at bit 2 * (field % 8).
constexpr std::array<uint16_t, 32> bf16_chunk() {
  std::array<uint16_t, 32> chunk{};
  for (int e = 0; e < 32; ++e) chunk[e] = static_cast<uint16_t>(2 * (e / 16) + bf16_slot_field(e % 16) / 8);
  return chunk;
}

constexpr std::array<uint16_t, 32> bf16_shift() {
  std::array<uint16_t, 32> shift{};
  for (int e = 0; e < 32; ++e) shift[e] = static_cast<uint16_t>(2 * (bf16_slot_field(e % 16) % 8));
  return shift;
}

constexpr std::array<uint16_t, 32> bf16_gather_base() {
  std::array<uint16_t, 32> base{};
  for (int e = 0; e < 32; ++e) base[e] = static_cast<uint16_t>(32 * (e / 16) + bf16_slot_input(e % 16));
  return base;
}

alignas(64) constexpr std::array<uint8_t, 64> kInt8Control = int8_shift_control();
alignas(64) constexpr std::array<uint8_t, 64> kInt8Base = int8_gather_base();
alignas(64) constexpr std::array<uint16_t, 32> kBf16Chunk = bf16_chunk();
alignas(64) constexpr std::array<uint16_t, 32> kBf16Shift = bf16_shift();
alignas(64) constexpr std::array<uint16_t, 32> kBf16Base = bf16_gather_base();

constexpr int kTernaryAndOr = 0xEA;  // vpternlogd truth table of (a & b) | c

template <typename T>
SAGELLM_TARGET_AVX512_INT8 inline __m512i load64(const T* p) {
  return _mm512_loadu_si512(reinterpret_cast<const void*>(p));
}

SAGELLM_TARGET_AVX512_INT8 inline int32_t sum_epi32(__m512i v) {
  const __m256i half = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

SAGELLM_TARGET_AVX512_BF16 inline float sum_ps(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m256 half = _mm256_add_ps(_mm256_castsi256_ps(_mm512_castsi512_si256(bits)),
                                    _mm256_castsi256_ps(_mm512_extracti64x4_epi64(bits, 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 64 byte indices into a 128-byte window pair from its two index qwords (the second may be zero).
SAGELLM_TARGET_AVX512_INT8 inline __m512i int8_select(__m128i index_qwords) {
  const __m512i route = _mm512_set_epi64(1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i words = _mm512_permutexvar_epi64(route, _mm512_broadcast_i32x4(index_qwords));
  const __m512i fields = _mm512_multishift_epi64_epi8(load64(kInt8Control.data()), words);
  return _mm512_ternarylogic_epi32(fields, _mm512_set1_epi8(3), load64(kInt8Base.data()), kTernaryAndOr);
}

// 32 element indices into a 64-element window pair from its 4 index chunks (the upper two may be zero).
SAGELLM_TARGET_AVX512_BF16 inline __m512i bf16_select(__m128i index_chunks) {
  const __m512i chunks = _mm512_permutexvar_epi16(_mm512_loadu_si512(kBf16Chunk.data()),
                                                  _mm512_broadcast_i32x4(index_chunks));
  const __m512i fields = _mm512_srlv_epi16(chunks, _mm512_loadu_si512(kBf16Shift.data()));
  return _mm512_ternarylogic_epi32(fields, _mm512_set1_epi16(3), _mm512_loadu_si512(kBf16Base.data()),
                                   kTernaryAndOr);
}

SAGELLM_TARGET_AVX512_BF16 inline __m512bh as_bf16(__m512i v) {
  __m512bh out;
  std::memcpy(&out, &v, sizeof(out));
  return out;
}

// M x rows, U accumulators per row (U = 2 for a single row); `pairs` full window pairs, then the last
// single window when `odd`.
template <int M>
SAGELLM_TARGET_AVX512_INT8 void packed_int8_rows(const Int8Job& job, int64_t n, int64_t m0) {
  constexpr int U = M == 1 ? 2 : 1;
  const int8_t* values = job.weights + n * job.windows * kInt8WindowValues;
  const uint8_t* indices = job.indices + n * job.windows * kInt8WindowIndexBytes;
  const uint8_t* x0 = job.x + m0 * job.x_stride;
  const int64_t pairs = job.windows / 2;
  __m512i acc[M][U];
  for (int m = 0; m < M; ++m)
    for (int u = 0; u < U; ++u) acc[m][u] = _mm512_setzero_si512();
  int64_t t = 0;
  for (; t + U <= pairs; t += U) {
#pragma GCC unroll 2
    for (int u = 0; u < U; ++u) {
      const __m512i v = load64(values + (t + u) * 64);
      const __m512i select = int8_select(_mm_loadu_si128(reinterpret_cast<const __m128i*>(indices + (t + u) * 16)));
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) {
        const uint8_t* x = x0 + m * job.x_stride + (t + u) * 128;
        acc[m][u] = _mm512_dpbusd_epi32(acc[m][u], _mm512_permutex2var_epi8(load64(x), select, load64(x + 64)), v);
      }
    }
  }
  for (; t < pairs; ++t) {
    const __m512i v = load64(values + t * 64);
    const __m512i select = int8_select(_mm_loadu_si128(reinterpret_cast<const __m128i*>(indices + t * 16)));
    for (int m = 0; m < M; ++m) {
      const uint8_t* x = x0 + m * job.x_stride + t * 128;
      acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], _mm512_permutex2var_epi8(load64(x), select, load64(x + 64)), v);
    }
  }
  if (job.windows % 2 == 1) {  // one 64-input window left: 32 values, 8 index bytes
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + pairs * 64));
    const __m512i v = _mm512_inserti64x4(_mm512_setzero_si512(), half, 0);
    const __m512i select = int8_select(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(indices + pairs * 16)));
    for (int m = 0; m < M; ++m) {
      const uint8_t* x = x0 + m * job.x_stride + pairs * 128;  // padded rows: 128 bytes are there
      acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], _mm512_permutex2var_epi8(load64(x), select, load64(x + 64)), v);
    }
  }
  const int32_t offset = 128 * job.row_sums[n];
  for (int m = 0; m < M; ++m) {
    __m512i total = acc[m][0];
    for (int u = 1; u < U; ++u) total = _mm512_add_epi32(total, acc[m][u]);
    job.acc[(m0 + m) * job.acc_stride + n] = sum_epi32(total) - offset;
  }
}

template <int M>
SAGELLM_TARGET_AVX512_INT8 void dense_int8_rows(const Int8Job& job, int64_t n, int64_t m0) {
  constexpr int U = M == 1 ? 2 : 1;
  const int8_t* weights = job.weights + n * job.k;
  const uint8_t* x0 = job.x + m0 * job.x_stride;
  __m512i acc[M][U];
  for (int m = 0; m < M; ++m)
    for (int u = 0; u < U; ++u) acc[m][u] = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 * U <= job.k; k += 64 * U) {
#pragma GCC unroll 2
    for (int u = 0; u < U; ++u) {
      const __m512i v = load64(weights + k + 64 * u);
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m)
        acc[m][u] = _mm512_dpbusd_epi32(acc[m][u], load64(x0 + m * job.x_stride + k + 64 * u), v);
    }
  }
  for (; k < job.k; k += 64) {  // padded x rows: a full 64 bytes can be read; weights only up to K
    const int64_t left = std::min<int64_t>(64, job.k - k);
    const uint64_t mask = left == 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(mask, weights + k);
    for (int m = 0; m < M; ++m) acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], load64(x0 + m * job.x_stride + k), v);
  }
  const int32_t offset = 128 * job.row_sums[n];
  for (int m = 0; m < M; ++m) {
    __m512i total = acc[m][0];
    for (int u = 1; u < U; ++u) total = _mm512_add_epi32(total, acc[m][u]);
    job.acc[(m0 + m) * job.acc_stride + n] = sum_epi32(total) - offset;
  }
}

template <int M>
SAGELLM_TARGET_AVX512_BF16 void packed_bf16_rows(const Bf16Job& job, int64_t n, int64_t m0) {
  constexpr int U = M == 1 ? 2 : 1;
  const uint16_t* values = job.values + n * job.windows * kBf16WindowValues;
  const uint8_t* indices = job.indices + n * job.windows * kBf16WindowIndexBytes;
  const uint16_t* x0 = job.x + m0 * job.x_stride;
  const int64_t pairs = job.windows / 2;
  __m512 acc[M][U];
  for (int m = 0; m < M; ++m)
    for (int u = 0; u < U; ++u) acc[m][u] = _mm512_setzero_ps();
  int64_t t = 0;
  for (; t + U <= pairs; t += U) {
#pragma GCC unroll 2
    for (int u = 0; u < U; ++u) {
      const __m512bh v = as_bf16(_mm512_loadu_si512(values + (t + u) * 32));
      const __m512i select = bf16_select(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(indices + (t + u) * 8)));
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) {
        const uint16_t* x = x0 + m * job.x_stride + (t + u) * 64;
        const __m512i g = _mm512_permutex2var_epi16(_mm512_loadu_si512(x), select, _mm512_loadu_si512(x + 32));
        acc[m][u] = _mm512_dpbf16_ps(acc[m][u], as_bf16(g), v);
      }
    }
  }
  const int64_t last = pairs + job.windows % 2;  // a single trailing window: index chunks 2, 3 are zero
  for (; t < last; ++t) {
    const bool single = t == pairs;
    __m512i raw;
    __m128i index_chunks;
    if (single) {
      raw = _mm512_inserti64x4(_mm512_setzero_si512(),
                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + t * 32)), 0);
      int32_t word;
      std::memcpy(&word, indices + t * 8, sizeof(word));
      index_chunks = _mm_cvtsi32_si128(word);
    } else {
      raw = _mm512_loadu_si512(values + t * 32);
      index_chunks = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(indices + t * 8));
    }
    const __m512bh v = as_bf16(raw);
    const __m512i select = bf16_select(index_chunks);
    for (int m = 0; m < M; ++m) {
      const uint16_t* x = x0 + m * job.x_stride + t * 64;  // padded rows: 64 elements are there
      const __m512i g = _mm512_permutex2var_epi16(_mm512_loadu_si512(x), select, _mm512_loadu_si512(x + 32));
      acc[m][0] = _mm512_dpbf16_ps(acc[m][0], as_bf16(g), v);
    }
  }
  for (int m = 0; m < M; ++m) {
    __m512 total = acc[m][0];
    for (int u = 1; u < U; ++u) total = _mm512_add_ps(total, acc[m][u]);
    job.acc[(m0 + m) * job.acc_stride + n] = sum_ps(total);
  }
}

template <typename Job, template <int> class Rows>
void for_row_blocks(const Job& job, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t m0 = 0; m0 < job.rows; m0 += kMaxRows) {
      switch (std::min<int64_t>(kMaxRows, job.rows - m0)) {
        case 1: Rows<1>::run(job, n, m0); break;
        case 2: Rows<2>::run(job, n, m0); break;
        case 3: Rows<3>::run(job, n, m0); break;
        case 4: Rows<4>::run(job, n, m0); break;
        case 5: Rows<5>::run(job, n, m0); break;
        case 6: Rows<6>::run(job, n, m0); break;
        case 7: Rows<7>::run(job, n, m0); break;
        default: Rows<8>::run(job, n, m0); break;
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
  static void run(const Bf16Job& job, int64_t n, int64_t m0) { packed_bf16_rows<M>(job, n, m0); }
};

}  // namespace

void packed_int8_avx512(const Int8Job& job, int64_t n_begin, int64_t n_end) {
  for_row_blocks<Int8Job, PackedInt8Rows>(job, n_begin, n_end);
}

void dense_int8_avx512(const Int8Job& job, int64_t n_begin, int64_t n_end) {
  for_row_blocks<Int8Job, DenseInt8Rows>(job, n_begin, n_end);
}

void packed_bf16_avx512(const Bf16Job& job, int64_t n_begin, int64_t n_end) {
  for_row_blocks<Bf16Job, PackedBf16Rows>(job, n_begin, n_end);
}

bool cpu_has_avx512_int8() {
#ifdef SAGELLM_SPARSITY_SIMDE
  return true;  // emulated through SIMDe: runs on any CPU
#endif
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
         __builtin_cpu_supports("avx512vnni");
}

bool cpu_has_avx512_bf16() {
#ifdef SAGELLM_SPARSITY_SIMDE
  return true;  // emulated through SIMDe: runs on any CPU
#endif
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

#else  // not x86: bindings.cpp never selects these (cpu_has_avx512_*() is false)

void packed_int8_avx512(const Int8Job& job, int64_t n_begin, int64_t n_end) { packed_int8_scalar(job, n_begin, n_end); }
void dense_int8_avx512(const Int8Job& job, int64_t n_begin, int64_t n_end) { dense_int8_scalar(job, n_begin, n_end); }
void packed_bf16_avx512(const Bf16Job& job, int64_t n_begin, int64_t n_end) { packed_bf16_scalar(job, n_begin, n_end); }
bool cpu_has_avx512_int8() { return false; }
bool cpu_has_avx512_bf16() { return false; }

#endif

}  // namespace sagellm_sparsity
