// y = x @ dequant(W)^T straight from GGML's packed blocks, and dequantization of whole or looked-up rows.
//
// W is [N, row_bytes] uint8: each row is K / QK blocks of one GGML type, laid out as ggml's C structs
// (d/dmin are little-endian fp16). For each output row the kernel dequantizes one weight row into a
// float32 buffer of K (a few KB, stays in L1/L2) and dots it with every row of x: decode at batch 1 is
// bound by reading weights, so reading 4.5-8.5 bits per weight instead of 32 is the saving, and the
// buffer is reused by all M rows. Rows of W are split over threads with at::parallel_for.
//
// Built at the level sagellm.core.native picks (-mavx2 -mfma -mf16c here); without __AVX2__ the dot falls
// back to plain C++ and the dequantizers are the same loops (the compiler vectorizes them when it may).
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SAGELLM_GGML_AVX2 1
#endif

namespace {

// ggml's type ids (ggml.h enum ggml_type).
constexpr int64_t kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;

struct BlockType {
  int64_t weights;  // weights per block
  int64_t bytes;    // bytes per block
};

BlockType block_type(int64_t type) {
  switch (type) {
    case kQ4_0: return {32, 18};
    case kQ4_1: return {32, 20};
    case kQ5_0: return {32, 22};
    case kQ8_0: return {32, 34};
    case kQ4_K: return {256, 144};
    case kQ5_K: return {256, 176};
    case kQ6_K: return {256, 210};
    default: TORCH_CHECK(false, "ggml type ", type, " has no packed kernel");
  }
}

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)((qs[j] & 0x0F) - 8);
    y[j + 16] = d * (float)((qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)(qs[j] & 0x0F) + m;
    y[j + 16] = d * (float)(qs[j] >> 4) + m;
  }
}

void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
    const int hi = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
    y[j] = d * (float)(lo - 16);
    y[j + 16] = d * (float)(hi - 16);
  }
}

void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = d * (float)qs[j];
}

// The 6-bit scale and minimum of sub-block j (0..7) of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0; j < 4; ++j) {  // 64 weights: 32 low nibbles, then 32 high nibbles of the same bytes
    int sc, mn;
    scale_min_k4(2 * j, scales, &sc, &mn);
    const float d1 = d * sc, m1 = dmin * mn;
    scale_min_k4(2 * j + 1, scales, &sc, &mn);
    const float d2 = d * sc, m2 = dmin * mn;
    for (int l = 0; l < 32; ++l) y[l] = d1 * (float)(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
    q += 32;
    y += 64;
  }
}

void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  for (int j = 0; j < 4; ++j) {
    int sc, mn;
    scale_min_k4(2 * j, scales, &sc, &mn);
    const float d1 = d * sc, m1 = dmin * mn;
    scale_min_k4(2 * j + 1, scales, &sc, &mn);
    const float d2 = d * sc, m2 = dmin * mn;
    const int u1 = 2 * j, u2 = 2 * j + 1;  // the bit of qh[l] that is the fifth bit
    for (int l = 0; l < 32; ++l) y[l] = d1 * (float)((ql[l] & 0x0F) | (((qh[l] >> u1) & 1) << 4)) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * (float)((ql[l] >> 4) | (((qh[l] >> u2) & 1) << 4)) - m2;
    ql += 32;
    y += 64;
  }
}

void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int half = 0; half < 2; ++half) {  // 128 weights: four runs of 32 from ql[0..64) and qh[0..32)
    for (int part = 0; part < 2; ++part) {  // l in [16 * part, 16 * part + 16): one scale per run
      const float s0 = d * sc[part], s1 = d * sc[part + 2], s2 = d * sc[part + 4], s3 = d * sc[part + 6];
      for (int i = 0; i < 16; ++i) {
        const int l = 16 * part + i;
        y[l] = s0 * (float)((int)((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32);
        y[l + 32] = s1 * (float)((int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
        y[l + 64] = s2 * (float)((int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        y[l + 96] = s3 * (float)((int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

using Dequant = void (*)(const uint8_t*, float*);

Dequant dequantizer(int64_t type) {
  switch (type) {
    case kQ4_0: return dequant_q4_0;
    case kQ4_1: return dequant_q4_1;
    case kQ5_0: return dequant_q5_0;
    case kQ8_0: return dequant_q8_0;
    case kQ4_K: return dequant_q4_k;
    case kQ5_K: return dequant_q5_k;
    case kQ6_K: return dequant_q6_k;
    default: TORCH_CHECK(false, "ggml type ", type, " has no packed kernel");
  }
}

inline void dequant_row(Dequant fn, const uint8_t* row, BlockType bt, int64_t K, float* out) {
  const int64_t blocks = K / bt.weights;
  for (int64_t i = 0; i < blocks; ++i) fn(row + i * bt.bytes, out + i * bt.weights);
}

#ifdef SAGELLM_GGML_AVX2
inline float sum8(__m256 s) {  // the sum of the 8 lanes
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}
#endif

inline float dot(const float* a, const float* b, int64_t K) {
  int64_t k = 0;
  float sum = 0.0f;
#ifdef SAGELLM_GGML_AVX2
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  for (; k + 32 <= K; k += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
  }
  for (; k + 8 <= K; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
  sum = sum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
#else
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (; k + 8 <= K; k += 8)
    for (int i = 0; i < 8; ++i) acc[i] += a[k + i] * b[k + i];
  for (int i = 0; i < 8; ++i) sum += acc[i];
#endif
  for (; k < K; ++k) sum += a[k] * b[k];
  return sum;
}


// One part of a fused weight: rows [first, first + rows) of the output, of one GGML type.
struct Part {
  const uint8_t* w;
  int64_t row_bytes, type, rows, first;
};

// Calls body(part, local_begin, local_end) for every part overlapping output rows [begin, end).
template <class Body>
inline void for_parts(const std::vector<Part>& parts, int64_t begin, int64_t end, const Body& body) {
  for (const Part& p : parts) {
    const int64_t lo = std::max(begin, p.first), hi = std::min(end, p.first + p.rows);
    if (lo < hi) body(p, lo - p.first, hi - p.first);
  }
}

#ifdef SAGELLM_GGML_AVX2
// ---- AVX2 path: decode 32 weights at a time to int8 codes in a register, never through memory ----
//
// Every type is read as units of 32 weights: 32 signed byte codes c, two scales (for weights 0-15 and
// 16-31; Q6_K scales 16-weight runs) and an additive term a, so that w = s * c + a. Then
//     dot(w, x) = s_lo * dot(c[0:16], x[0:16]) + s_hi * dot(c[16:32], x[16:32]) + a * sum(x[0:32])
// with sum(x) per 32 precomputed once per call. A unit's codes are widened to float once and reused by
// the kRows rows of x of a tile; the accumulators are the sink's members, kept in registers because each
// type's whole row loop is one inlined function (a function pointer per block put them in memory, and
// store-forwarding latency then bound the loop: measured 2x slower).

// The rows of x a tile reads: float (x) or int8 codes with their scales (xq, xd), and the sums per 32 that
// the additive terms multiply; ``from(m0)`` is the view of rows m0 onwards.
struct Activations {
  const float* x;
  const int8_t* xq;
  const float* xd;
  const float* xsum;
  int64_t K;

  Activations from(int64_t m0) const {
    const int64_t groups = K / 32;
    return {x ? x + m0 * K : nullptr, xq ? xq + m0 * K : nullptr, xd ? xd + m0 * groups : nullptr,
            xsum + m0 * groups, K};
  }
};

template <int kRows>
struct DotSink {  // y[m] += dot(w, x[m]) for kRows rows of x
  const float* x;     // row 0 of the tile, [kRows, K]
  const float* xsum;  // [kRows, K / 32]
  int64_t K;
  __m256 lo[kRows], hi[kRows];
  float add[kRows];

  explicit DotSink(const Activations& a) : x(a.x), xsum(a.xsum), K(a.K) {
    for (int m = 0; m < kRows; ++m) {
      lo[m] = _mm256_setzero_ps();
      hi[m] = _mm256_setzero_ps();
      add[m] = 0.0f;
    }
  }

  inline void unit(__m256i codes, float s_lo, float s_hi, float a, int64_t k0) {
    const __m128i c_lo = _mm256_castsi256_si128(codes), c_hi = _mm256_extracti128_si256(codes, 1);
    const __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c_lo));
    const __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c_lo, 8)));
    const __m256 c2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c_hi));
    const __m256 c3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c_hi, 8)));
    const __m256 vlo = _mm256_set1_ps(s_lo), vhi = _mm256_set1_ps(s_hi);
#pragma GCC unroll 8
    for (int m = 0; m < kRows; ++m) {
      const float* xm = x + m * K + k0;
      __m256 p0 = _mm256_mul_ps(c0, _mm256_loadu_ps(xm));
      p0 = _mm256_fmadd_ps(c1, _mm256_loadu_ps(xm + 8), p0);
      __m256 p1 = _mm256_mul_ps(c2, _mm256_loadu_ps(xm + 16));
      p1 = _mm256_fmadd_ps(c3, _mm256_loadu_ps(xm + 24), p1);
      lo[m] = _mm256_fmadd_ps(vlo, p0, lo[m]);
      hi[m] = _mm256_fmadd_ps(vhi, p1, hi[m]);
      add[m] += a * xsum[m * (K / 32) + k0 / 32];  // a = 0 for the types without a minimum
    }
  }

  inline float result(int m) const { return sum8(_mm256_add_ps(lo[m], hi[m])) + add[m]; }
};

// The same dot products with x quantized to int8 per 32 (scale xd = max|x| / 127, as llama.cpp's Q8_0
// activations): a unit is 32 byte products summed in integers (maddubs + madd: |c| <= 128 times |x| <= 127,
// two per int16, cannot saturate), one conversion and one FMA per row of x, where the float path widens
// the codes to four float vectors and needs four FMAs. Lanes 0-3 of the int32 sums cover weights 0-15,
// lanes 4-7 weights 16-31, so the two scales are one vector. The additive term reads the quantized x's sums.
template <int kRows>
struct DotSinkI8 {
  const int8_t* xq;   // row 0 of the tile, [kRows, K]
  const float* xd;    // [kRows, K / 32]
  const float* xsum;  // [kRows, K / 32]
  int64_t K;
  __m256 acc[kRows];
  float add[kRows];

  explicit DotSinkI8(const Activations& a) : xq(a.xq), xd(a.xd), xsum(a.xsum), K(a.K) {
    for (int m = 0; m < kRows; ++m) {
      acc[m] = _mm256_setzero_ps();
      add[m] = 0.0f;
    }
  }

  inline void unit(__m256i codes, float s_lo, float s_hi, float a, int64_t k0) {
    const __m256i magnitude = _mm256_sign_epi8(codes, codes);
    const __m256 scales = _mm256_setr_ps(s_lo, s_lo, s_lo, s_lo, s_hi, s_hi, s_hi, s_hi);
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t g = k0 / 32;
#pragma GCC unroll 8
    for (int m = 0; m < kRows; ++m) {
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + k0));
      const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(y, codes));
      const __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(scales, _mm256_set1_ps(xd[m * (K / 32) + g])), sums, acc[m]);
      add[m] += a * xsum[m * (K / 32) + g];
    }
  }

  inline float result(int m) const { return sum8(acc[m]) + add[m]; }
};

struct StoreSink {  // y[k] = w[k]: dequantization
  float* y;
  inline void unit(__m256i codes, float s_lo, float s_hi, float a, int64_t k0) {
    const __m128i c_lo = _mm256_castsi256_si128(codes), c_hi = _mm256_extracti128_si256(codes, 1);
    const __m256 va = _mm256_set1_ps(a), vlo = _mm256_set1_ps(s_lo), vhi = _mm256_set1_ps(s_hi);
    float* out = y + k0;
    _mm256_storeu_ps(out, _mm256_fmadd_ps(vlo, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c_lo)), va));
    _mm256_storeu_ps(out + 8,
                     _mm256_fmadd_ps(vlo, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c_lo, 8))), va));
    _mm256_storeu_ps(out + 16, _mm256_fmadd_ps(vhi, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c_hi)), va));
    _mm256_storeu_ps(out + 24,
                     _mm256_fmadd_ps(vhi, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c_hi, 8))), va));
  }
};

inline __m256i pair128(__m128i lo, __m128i hi) { return _mm256_set_m128i(hi, lo); }

// 32 bits -> 32 bytes, 0xFF where the bit is set (llama.cpp's bytes_from_bits_32).
inline __m256i bytes_from_bits(uint32_t bits) {
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

template <class Sink>
inline void blocks_q4_0(Sink& sink, const uint8_t* b, int64_t nblocks) {
  const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  for (int64_t i = 0; i < nblocks; ++i, b += 18) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
    const float d = half_at(b);
    sink.unit(pair128(lo, hi), d, d, 0.0f, 32 * i);
  }
}

template <class Sink>
inline void blocks_q4_1(Sink& sink, const uint8_t* b, int64_t nblocks) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < nblocks; ++i, b += 20) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
    const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    const float d = half_at(b);
    sink.unit(pair128(lo, hi), d, d, half_at(b + 2), 32 * i);
  }
}

template <class Sink>
inline void blocks_q5_0(Sink& sink, const uint8_t* b, int64_t nblocks) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256i bit4 = _mm256_set1_epi8(0x10), sixteen = _mm256_set1_epi8(16);
  for (int64_t i = 0; i < nblocks; ++i, b += 22) {
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 6));
    const __m256i nib = pair128(_mm_and_si128(q, m4), _mm_and_si128(_mm_srli_epi16(q, 4), m4));
    const __m256i high = _mm256_and_si256(bytes_from_bits(qh), bit4);
    const float d = half_at(b);
    sink.unit(_mm256_sub_epi8(_mm256_or_si256(nib, high), sixteen), d, d, 0.0f, 32 * i);
  }
}

template <class Sink>
inline void blocks_q8_0(Sink& sink, const uint8_t* b, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i, b += 34) {
    const float d = half_at(b);
    sink.unit(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)), d, d, 0.0f, 32 * i);
  }
}

template <bool kFifthBit, class Sink>
inline void blocks_qk(Sink& sink, const uint8_t* b, int64_t nblocks) {  // Q4_K; Q5_K with the fifth bits
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < nblocks; ++i, b += kFifthBit ? 176 : 144) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = kFifthBit ? b + 48 : b + 16;
    const __m256i hb = kFifthBit ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)) : _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
      __m256i lo = _mm256_and_si256(bytes, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4);
      if (kFifthBit) {
        const __m256i b_lo = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * j)), one);
        const __m256i b_hi = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * j + 1)), one);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(b_lo, 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(b_hi, 4));
      }
      int sc, mn;
      scale_min_k4(2 * j, scales, &sc, &mn);
      sink.unit(lo, d * sc, d * sc, -dmin * mn, 256 * i + 64 * j);
      scale_min_k4(2 * j + 1, scales, &sc, &mn);
      sink.unit(hi, d * sc, d * sc, -dmin * mn, 256 * i + 64 * j + 32);
    }
  }
}

template <class Sink>
inline void blocks_q6_k(Sink& sink, const uint8_t* b, int64_t nblocks) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < nblocks; ++i, b += 210) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = half_at(b + 208);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8) {
      const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      const __m256i nibs[4] = {_mm256_and_si256(q0, m4), _mm256_and_si256(q1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(q0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(q1, 4), m4)};
#pragma GCC unroll 4
      for (int run = 0; run < 4; ++run) {
        const __m256i top = _mm256_and_si256(_mm256_srli_epi16(h, 2 * run), m2);
        const __m256i codes = _mm256_sub_epi8(_mm256_or_si256(nibs[run], _mm256_slli_epi16(top, 4)), off);
        sink.unit(codes, d * sc[2 * run], d * sc[2 * run + 1], 0.0f, 256 * i + 128 * half + 32 * run);
      }
    }
  }
}

// One row of blocks through ``sink``, dispatched on the type once per row.
template <class Sink>
inline void row_avx2(Sink& sink, int64_t type, const uint8_t* row, int64_t K) {
  switch (type) {
    case kQ4_0: return blocks_q4_0(sink, row, K / 32);
    case kQ4_1: return blocks_q4_1(sink, row, K / 32);
    case kQ5_0: return blocks_q5_0(sink, row, K / 32);
    case kQ8_0: return blocks_q8_0(sink, row, K / 32);
    case kQ4_K: return blocks_qk<false>(sink, row, K / 256);
    case kQ5_K: return blocks_qk<true>(sink, row, K / 256);
    case kQ6_K: return blocks_q6_k(sink, row, K / 256);
    default: TORCH_CHECK(false, "ggml type ", type, " has no packed kernel");
  }
}

template <template <int> class Sink, int kRows>
void tile_avx2(const Activations& xa, const Part& p, int64_t begin, int64_t end, int64_t rows, float* out,
               int64_t ldo) {
  for (int64_t n = begin; n < end; ++n) {
    Sink<kRows> sink(xa);
    row_avx2(sink, p.type, p.w + n * p.row_bytes, xa.K);
    for (int64_t m = 0; m < rows; ++m) out[m * ldo + n] = sink.result((int)m);
  }
}

constexpr int64_t kTile = 4;

// Output rows [begin, end) of part ``p`` for every row of x: one row alone, else tiles of kTile rows.
template <template <int> class Sink>
void part_avx2(const Activations& xa, int64_t M, const Part& p, int64_t begin, int64_t end, float* out, int64_t ldo) {
  if (M == 1) return tile_avx2<Sink, 1>(xa, p, begin, end, 1, out, ldo);
  for (int64_t m0 = 0; m0 < M; m0 += kTile)
    tile_avx2<Sink, kTile>(xa.from(m0), p, begin, end, std::min<int64_t>(kTile, M - m0), out + m0 * ldo, ldo);
}

// x [rows, K] to int8 codes and one scale per 32 (round to nearest; an all-zero group gets scale 0), and the
// sums of the quantized groups: the additive terms (Q4_K's minimums) must see the same x as the codes do,
// or their large, opposite-signed parts stop cancelling (the float sums doubled Q4_K's error, measured).
void quantize_x(const float* x, int64_t rows, int64_t K, int8_t* q, float* d, float* qsum) {
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t g = 0; g < K / 32; ++g) {
      const float* v = x + m * K + g * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(v[i]));
      const float scale = amax / 127.0f, inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t total = 0;
      for (int i = 0; i < 32; ++i) {
        const int8_t code = (int8_t)std::lrintf(v[i] * inverse);
        q[m * K + g * 32 + i] = code;
        total += code;
      }
      d[m * (K / 32) + g] = scale;
      qsum[m * (K / 32) + g] = scale * (float)total;
    }
}

void matmul_avx2(const float* x, int64_t M, int64_t K, const std::vector<Part>& parts, int64_t N, float* out,
                 int64_t ldo, int64_t grain, bool int8_x) {
  const int64_t groups = K / 32, padded = (M + kTile - 1) / kTile * kTile;
  // x padded with zero rows to whole tiles (float, or int8 codes and scales), and its sums per 32.
  std::vector<float> xp(int8_x ? 0 : padded * K, 0.0f), xsum(padded * groups, 0.0f);
  std::vector<int8_t> xq(int8_x ? padded * K : 0, 0);
  std::vector<float> xd(int8_x ? padded * groups : 0, 0.0f);
  if (int8_x) {
    quantize_x(x, M, K, xq.data(), xd.data(), xsum.data());
  } else {
    std::memcpy(xp.data(), x, sizeof(float) * M * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t g = 0; g < groups; ++g) {
        float s = 0.0f;
        for (int i = 0; i < 32; ++i) s += x[m * K + g * 32 + i];
        xsum[m * groups + g] = s;
      }
  }
  const Activations xa{int8_x ? nullptr : xp.data(), int8_x ? xq.data() : nullptr, int8_x ? xd.data() : nullptr,
                       xsum.data(), K};
  // One parallel region for every part: a fused q/k/v or gate/up costs one wake-up of the pool, not three.
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    for_parts(parts, begin, end, [&](const Part& p, int64_t lo, int64_t hi) {
      if (int8_x) return part_avx2<DotSinkI8>(xa, M, p, lo, hi, out + p.first, ldo);
      part_avx2<DotSink>(xa, M, p, lo, hi, out + p.first, ldo);
    });
  });
}

void dequant_row_avx2(int64_t type, const uint8_t* row, int64_t K, float* y) {
  StoreSink sink{y};
  row_avx2(sink, type, row, K);
}
#endif  // SAGELLM_GGML_AVX2

void check_blocks(const at::Tensor& blocks, int64_t type, int64_t K) {
  const BlockType bt = block_type(type);
  TORCH_CHECK(blocks.dtype() == at::kByte && blocks.dim() == 2 && blocks.is_contiguous(),
              "blocks must be a contiguous 2-D uint8 tensor");
  TORCH_CHECK(K % bt.weights == 0 && blocks.size(1) == K / bt.weights * bt.bytes,
              "blocks hold ", blocks.size(1), " bytes per row, not ", K, " weights of ggml type ", type);
}

// out[:, col:col + N] = x @ [dequant(blocks[0]); dequant(blocks[1]); ...]^T: the parts of a fused weight, each
// of its own type, stacked along N. x float32 [M, K]; out float32 [M, >= col + N] with unit column stride.
void matmul_into(const at::Tensor& x, const std::vector<at::Tensor>& blocks, const std::vector<int64_t>& types,
                 at::Tensor& out, int64_t col, bool portable, bool int8_x) {
  const int64_t K = x.size(1);
  TORCH_CHECK(x.dtype() == at::kFloat && x.is_contiguous() && x.dim() == 2, "x must be contiguous float32 [M, K]");
  TORCH_CHECK(out.dtype() == at::kFloat && out.dim() == 2 && out.stride(1) == 1 && out.size(0) == x.size(0),
              "out must be float32 [M, >= N] with unit column stride");
  TORCH_CHECK(!blocks.empty() && blocks.size() == types.size(), "one type per part, at least one part");
  std::vector<Part> parts;
  int64_t N = 0, bytes = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    check_blocks(blocks[i], types[i], K);
    parts.push_back({blocks[i].data_ptr<uint8_t>(), blocks[i].size(1), types[i], blocks[i].size(0), N});
    N += blocks[i].size(0);
    bytes += blocks[i].numel();
  }
  TORCH_CHECK(col >= 0 && col + N <= out.size(1), "columns [", col, ", ", col + N, ") do not fit out");
  const int64_t M = x.size(0), ldo = out.stride(0);
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>() + col;
  // At least ~256 KB of weights per task: a smaller matrix runs on the calling thread (waking a second one
  // costs more than it saves there, and far more on a loaded machine, where the wake-up waits for a time slice).
  const int64_t grain = std::max<int64_t>(1, (256 * 1024) / std::max<int64_t>(1, bytes / std::max<int64_t>(1, N)));
#ifdef SAGELLM_GGML_AVX2
  if (!portable) {
    matmul_avx2(xp, M, K, parts, N, op, ldo, grain, int8_x);
    return;
  }
#endif
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(K);
    for_parts(parts, begin, end, [&](const Part& p, int64_t lo, int64_t hi) {
      const BlockType bt = block_type(p.type);
      const Dequant fn = dequantizer(p.type);
      for (int64_t n = lo; n < hi; ++n) {
        dequant_row(fn, p.w + n * p.row_bytes, bt, K, buf.data());
        for (int64_t m = 0; m < M; ++m) op[m * ldo + p.first + n] = dot(buf.data(), xp + m * K, K);
      }
    });
  });
}

// dequant(blocks)[ids[r]] (ids null: row r) into out [R, K], float32/bf16/fp16, row-contiguous.
void dequantize_to(const at::Tensor& blocks, int64_t type, const int64_t* ids, at::Tensor& out) {
  const int64_t R = out.size(0), K = out.size(1), row_bytes = blocks.size(1);
  const at::ScalarType dtype = out.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf, "dtype must be float32/bf16/fp16");
  TORCH_CHECK(out.is_contiguous(), "out must be contiguous");
  const BlockType bt = block_type(type);
  const Dequant fn = dequantizer(type);
  const uint8_t* wp = blocks.data_ptr<uint8_t>();
  const int64_t grain = std::max<int64_t>(1, (256 * 1024) / std::max<int64_t>(1, row_bytes));
  at::parallel_for(0, R, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(dtype == at::kFloat ? 0 : K);
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* src = wp + (ids == nullptr ? r : ids[r]) * row_bytes;
      float* dense = dtype == at::kFloat ? out.data_ptr<float>() + r * K : buf.data();
#ifdef SAGELLM_GGML_AVX2
      dequant_row_avx2(type, src, K, dense);
#else
      dequant_row(fn, src, bt, K, dense);
#endif
      if (dtype == at::kBFloat16) {
        c10::BFloat16* dst = out.data_ptr<c10::BFloat16>() + r * K;
        for (int64_t k = 0; k < K; ++k) dst[k] = c10::BFloat16(buf[k]);
      } else if (dtype == at::kHalf) {
        c10::Half* dst = out.data_ptr<c10::Half>() + r * K;
        for (int64_t k = 0; k < K; ++k) dst[k] = c10::Half(buf[k]);
      }
    }
  });
}

// Rows ``rows`` (int64 [R]; all rows when empty) of dequant(blocks), as ``dtype`` [R, K].
at::Tensor dequantize_rows(const at::Tensor& blocks, int64_t type, int64_t K, const at::Tensor& rows,
                           at::ScalarType dtype) {
  check_blocks(blocks, type, K);
  const bool all = rows.numel() == 0;
  at::Tensor ids = all ? rows : rows.to(at::kLong).contiguous();
  const int64_t N = blocks.size(0), R = all ? N : ids.numel();
  const int64_t* idp = all ? nullptr : ids.data_ptr<int64_t>();
  for (int64_t r = 0; r < (all ? 0 : R); ++r) TORCH_CHECK(idp[r] >= 0 && idp[r] < N, "row ", idp[r], " out of range");
  at::Tensor out = at::empty({R, K}, blocks.options().dtype(dtype));
  dequantize_to(blocks, type, idp, out);
  return out;
}

// Every row of dequant(blocks) into out [N, K] (a reused scratch buffer: no page faults per call).
void dequantize_into(const at::Tensor& blocks, int64_t type, at::Tensor& out) {
  TORCH_CHECK(out.dim() == 2 && out.size(0) == blocks.size(0), "out must be [N, K] for N rows of blocks");
  check_blocks(blocks, type, out.size(1));
  dequantize_to(blocks, type, nullptr, out);
}

bool compiled_avx2() {
#ifdef SAGELLM_GGML_AVX2
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("matmul_into", &matmul_into,
        "out[:, col:col+N] = x @ dequant(blocks)^T (float32); portable: the C++ loops; int8_x: x quantized to "
        "int8 per 32 (AVX2 only; the portable loops stay float)",
        py::arg("x"), py::arg("blocks"), py::arg("types"), py::arg("out"), py::arg("col"), py::arg("portable") = false,
        py::arg("int8_x") = false);
  m.def("dequantize_rows", &dequantize_rows, "rows of dequant(blocks) as dtype (all rows when rows is empty)");
  m.def("dequantize_into", &dequantize_into, "every row of dequant(blocks) into out [N, K]");
  m.def("compiled_avx2", &compiled_avx2, "whether the AVX2+FMA dot product was compiled in");
}
