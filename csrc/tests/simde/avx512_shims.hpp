// The AVX-512 intrinsics core/simd/avx512.cpp uses that SIMDe 0.7.4 (Debian
// 12's libsimde-dev) does not provide, written lane by lane. Masked loads
// and stores touch only the lanes in the mask, as the hardware does; the
// conversions run each lane through this CPU's own scalar or F16C
// instruction (cvtsd2ss, cvtss2sd, vcvtph2ps, vcvtps2ph), whose results
// are the AVX-512 forms' lane for lane. Non-temporal stores become plain
// stores (same values; only the cache policy differs).
#pragma once

#include <cfenv>
#include <cstdint>
#include <cstring>

namespace ptth_simde {

template <class T, class V>
inline void lanes_of(T* b, const V& v) {
  std::memcpy(b, &v, sizeof v);
}
template <class V, class T>
inline V vector_of(const T* b) {
  V v;
  std::memcpy(&v, b, sizeof v);
  return v;
}

template <class V, class T>
inline V maskz_load(uint64_t m, const void* p) {
  constexpr int kN = sizeof(V) / sizeof(T);
  T b[kN] = {};
  for (int i = 0; i < kN; ++i)
    if ((m >> i) & 1) std::memcpy(&b[i], static_cast<const char*>(p) + i * sizeof(T), sizeof(T));
  return vector_of<V>(b);
}
template <class T, class V>
inline void mask_store(void* p, uint64_t m, V v) {
  constexpr int kN = sizeof(V) / sizeof(T);
  T b[kN];
  lanes_of(b, v);
  for (int i = 0; i < kN; ++i)
    if ((m >> i) & 1) std::memcpy(static_cast<char*>(p) + i * sizeof(T), &b[i], sizeof(T));
}

inline simde__m256i mask_or_epi32(simde__m256i src, uint64_t k, simde__m256i a, simde__m256i b) {
  uint32_t s[8], x[8], y[8];
  lanes_of(s, src), lanes_of(x, a), lanes_of(y, b);
  for (int i = 0; i < 8; ++i)
    if ((k >> i) & 1) s[i] = x[i] | y[i];
  return vector_of<simde__m256i>(s);
}

inline uint32_t cmpeq_epi16_mask(simde__m512i a, simde__m512i b) {
  uint16_t x[32], y[32];
  lanes_of(x, a), lanes_of(y, b);
  uint32_t m = 0;
  for (int i = 0; i < 32; ++i) m |= uint32_t(x[i] == y[i]) << i;
  return m;
}

// vcvtpd2ps under MXCSR's rounding (nearest), or toward zero for the
// embedded-rounding form; this file is built with -frounding-math.
inline simde__m256 cvtpd_ps(uint64_t k, simde__m512d d, bool toward_zero) {
  double x[8];
  float o[8];
  lanes_of(x, d);
  const int old = std::fegetround();
  if (toward_zero) std::fesetround(FE_TOWARDZERO);
  for (int i = 0; i < 8; ++i) {
    volatile double v = x[i];
    volatile float f = static_cast<float>(v);
    o[i] = ((k >> i) & 1) ? static_cast<float>(f) : 0.0f;
  }
  std::fesetround(old);
  return vector_of<simde__m256>(o);
}

inline simde__m512d cvtps_pd(uint64_t k, simde__m256 v) {
  float x[8];
  double o[8];
  lanes_of(x, v);
  for (int i = 0; i < 8; ++i) {
    volatile float f = x[i];
    o[i] = ((k >> i) & 1) ? static_cast<double>(f) : 0.0;
  }
  return vector_of<simde__m512d>(o);
}

inline simde__m512i cvtepu16_epi32(uint64_t k, simde__m256i a) {
  uint16_t x[16];
  uint32_t o[16];
  lanes_of(x, a);
  for (int i = 0; i < 16; ++i) o[i] = ((k >> i) & 1) ? x[i] : 0u;
  return vector_of<simde__m512i>(o);
}

inline simde__m512 cvtph_ps(uint64_t k, simde__m256i h) {
  uint16_t x[16];
  float o[16];
  lanes_of(x, h);
  for (int i = 0; i < 16; ++i)
    o[i] =
        ((k >> i) & 1)
            ? simde_mm_cvtss_f32(simde_mm_cvtph_ps(simde_mm_set1_epi16(static_cast<short>(x[i]))))
            : 0.0f;
  return vector_of<simde__m512>(o);
}

inline simde__m256i cvtps_ph(uint64_t k, simde__m512 v) {
  float x[16];
  uint16_t o[16];
  lanes_of(x, v);
  for (int i = 0; i < 16; ++i) {
    const simde__m128i h =
        simde_mm_cvtps_ph(simde_mm_set1_ps(x[i]), SIMDE_MM_FROUND_TO_NEAREST_INT);
    o[i] = ((k >> i) & 1) ? static_cast<uint16_t>(simde_mm_extract_epi16(h, 0)) : 0;
  }
  return vector_of<simde__m256i>(o);
}

}  // namespace ptth_simde

#define _mm512_maskz_loadu_ps(m, p) ptth_simde::maskz_load<simde__m512, float>(m, p)
#define _mm256_maskz_loadu_ps(m, p) ptth_simde::maskz_load<simde__m256, float>(m, p)
#define _mm512_maskz_loadu_pd(m, p) ptth_simde::maskz_load<simde__m512d, double>(m, p)
#define _mm_maskz_loadu_epi16(m, p) ptth_simde::maskz_load<simde__m128i, uint16_t>(m, p)
#define _mm256_maskz_loadu_epi16(m, p) ptth_simde::maskz_load<simde__m256i, uint16_t>(m, p)
#define _mm512_maskz_loadu_epi16(m, p) ptth_simde::maskz_load<simde__m512i, uint16_t>(m, p)
#define _mm512_maskz_loadu_epi32(m, p) ptth_simde::maskz_load<simde__m512i, uint32_t>(m, p)
#define _mm512_maskz_loadu_epi64(m, p) ptth_simde::maskz_load<simde__m512i, uint64_t>(m, p)
#define _mm512_mask_storeu_ps(p, m, v) ptth_simde::mask_store<float>(p, m, v)
#define _mm512_mask_storeu_pd(p, m, v) ptth_simde::mask_store<double>(p, m, v)
#define _mm256_mask_storeu_epi16(p, m, v) ptth_simde::mask_store<uint16_t>(p, m, v)
#define _mm_mask_storeu_epi16(p, m, v) ptth_simde::mask_store<uint16_t>(p, m, v)
#define _mm512_stream_ps(p, v) simde_mm512_store_ps(p, v)
#define _mm512_stream_pd(p, v) simde_mm512_store_pd(p, v)
#define _mm256_stream_si256(p, v) simde_mm256_store_si256(p, v)
#define _mm256_mask_or_epi32(s, k, a, b) ptth_simde::mask_or_epi32(s, k, a, b)
#define _mm512_cmpeq_epi16_mask(a, b) ptth_simde::cmpeq_epi16_mask(a, b)
#define _mm512_maskz_cvt_roundpd_ps(k, d, r) ptth_simde::cvtpd_ps(k, d, true)
#define _mm512_maskz_cvtpd_ps(k, d) ptth_simde::cvtpd_ps(k, d, false)
#define _mm512_maskz_cvtps_pd(k, v) ptth_simde::cvtps_pd(k, v)
#define _mm512_maskz_cvtepu16_epi32(k, a) ptth_simde::cvtepu16_epi32(k, a)
#define _mm512_maskz_cvtph_ps(k, h) ptth_simde::cvtph_ps(k, h)
#define _mm512_maskz_cvtps_ph(k, v, r) ptth_simde::cvtps_ph(k, v)
