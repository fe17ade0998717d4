// AVX2 + F16C tier (built with -mavx2 -mf16c, no FMA). Tails go through a
// zero-padded stack vector so every element takes the same hardware path.
#include <immintrin.h>

#include <cstring>

#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

// vcvtps2ph immediate: round to nearest even, independent of MXCSR.
constexpr int kRne = _MM_FROUND_TO_NEAREST_INT;

// Whole vector; Stream: whole vector, 16/32-byte aligned destination, stored
// non-temporally (loads treat it as Full).
struct Full {};
struct Stream : Full {};
struct Part {
  size_t r;  // valid elements from the pointer on
};
inline Full skip(Full, size_t) { return {}; }
inline Part skip(Part t, size_t k) { return {t.r > k ? t.r - k : 0}; }

template <class V, class T>
inline V ld_part(const T* p, Part t) {
  constexpr size_t kLanes = sizeof(V) / sizeof(T);
  alignas(32) T buf[kLanes] = {};
  if (t.r) std::memcpy(buf, p, (t.r < kLanes ? t.r : kLanes) * sizeof(T));
  V v;
  std::memcpy(&v, buf, sizeof(V));
  return v;
}
template <class T, class V>
inline void st_part(T* p, V v, Part t) {
  constexpr size_t kLanes = sizeof(V) / sizeof(T);
  alignas(32) T buf[kLanes];
  std::memcpy(buf, &v, sizeof(V));
  if (t.r) std::memcpy(p, buf, (t.r < kLanes ? t.r : kLanes) * sizeof(T));
}

inline __m256 ld8f(const float* p, Full) { return _mm256_loadu_ps(p); }
inline __m256 ld8f(const float* p, Part t) { return ld_part<__m256>(p, t); }
inline void st8f(float* p, __m256 v, Full) { _mm256_storeu_ps(p, v); }
inline void st8f(float* p, __m256 v, Part t) { st_part(p, v, t); }
inline void st8f(float* p, __m256 v, Stream) { _mm256_stream_ps(p, v); }

inline __m256d ld4d(const double* p, Full) { return _mm256_loadu_pd(p); }
inline __m256d ld4d(const double* p, Part t) { return ld_part<__m256d>(p, t); }
inline void st4d(double* p, __m256d v, Full) { _mm256_storeu_pd(p, v); }
inline void st4d(double* p, __m256d v, Part t) { st_part(p, v, t); }
inline void st4d(double* p, __m256d v, Stream) { _mm256_stream_pd(p, v); }

inline __m128i ld8h(const uint16_t* p, Full) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m128i ld8h(const uint16_t* p, Part t) { return ld_part<__m128i>(p, t); }
inline void st8h(uint16_t* p, __m128i v, Full) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
inline void st8h(uint16_t* p, __m128i v, Part t) { st_part(p, v, t); }
inline void st8h(uint16_t* p, __m128i v, Stream) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), v); }

template <class T>
inline __m256i ld256i(const T* p, Full) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
template <class T>
inline __m256i ld256i(const T* p, Part t) { return ld_part<__m256i>(p, t); }

// Runs f(i, tag) over whole vectors of W elements in [begin, end), four at a
// time, then f(i, Part) once over the rest.
template <size_t W, class Tag, class F>
inline void run(size_t begin, size_t end, Tag tag, F& f) {
  size_t i = begin;
  for (; i + 4 * W <= end; i += 4 * W) {
    f(i, tag);
    f(i + W, tag);
    f(i + 2 * W, tag);
    f(i + 3 * W, tag);
  }
  for (; i + W <= end; i += W) f(i, tag);
  if (i < end) f(i, Part{end - i});
}

template <size_t W, class F>
inline void each(size_t n, F f) {
  run<W>(0, n, Full{}, f);
}

// Outputs at least this large bypass the cache: they would not stay cached
// anyway, and non-temporal stores skip reading every line before writing it
// (about a quarter less memory traffic for a conversion).
constexpr size_t kStreamBytes = size_t(32) << 20;

// each() for kernels writing dst as a stream (not the accumulators, whose
// lines are read first anyway).
template <size_t W, class T, class F>
inline void each_to(T* dst, size_t n, F f) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(dst);
  if (n * sizeof(T) < kStreamBytes || a % sizeof(T) != 0) return run<W>(0, n, Full{}, f);
  const size_t head = (64 - a % 64) % 64 / sizeof(T);  // up to a cache-line boundary
  const size_t body_end = head + (n - head) / W * W;
  run<W>(0, head, Full{}, f);
  run<W>(head, body_end, Stream{}, f);
  _mm_sfence();  // order the streamed stores before anything that follows
  run<W>(body_end, n, Full{}, f);
}

// double -> float rounded to odd: truncate (undo a rounding away from zero),
// then set the last bit if inexact. Rounding that to f16 is then correctly
// rounded from the double (24 >= 11 + 2 bits): no double rounding.
inline __m128 f64_to_f32_odd(__m256d d) {
  const __m128 f = _mm256_cvtpd_ps(d);
  const __m256d back = _mm256_cvtps_pd(f);
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
  const __m256d away = _mm256_cmp_pd(_mm256_and_pd(back, abs_mask), _mm256_and_pd(d, abs_mask), _CMP_GT_OQ);
  const __m256d inexact = _mm256_cmp_pd(back, d, _CMP_NEQ_UQ);
  const __m256i lo_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m128i away32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(away), lo_dwords));
  const __m128i inexact32 =
      _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(inexact), lo_dwords));
  __m128i bits = _mm_add_epi32(_mm_castps_si128(f), away32);  // one step back toward zero
  bits = _mm_or_si128(bits, _mm_srli_epi32(inexact32, 31));
  return _mm_castsi128_ps(bits);
}

inline __m128i f64x8_to_f16(__m256d lo, __m256d hi) {
  const __m256 f = _mm256_set_m128(f64_to_f32_odd(hi), f64_to_f32_odd(lo));
  return _mm256_cvtps_ph(f, kRne);
}

void f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  each_to<8>(dst, n, [&](size_t i, auto t) { st8h(dst + i, _mm256_cvtps_ph(ld8f(src + i, t), kRne), t); });
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  each_to<8>(dst, n, [&](size_t i, auto t) { st8f(dst + i, _mm256_cvtph_ps(ld8h(src + i, t)), t); });
}

void f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  each_to<8>(dst, n, [&](size_t i, auto t) {
    st8h(dst + i, f64x8_to_f16(ld4d(src + i, t), ld4d(src + i + 4, skip(t, 4))), t);
  });
}

void sub_f32(const float* a, const float* b, float* out, size_t n) {
  each_to<8>(out, n, [&](size_t i, auto t) { st8f(out + i, _mm256_sub_ps(ld8f(a + i, t), ld8f(b + i, t)), t); });
}

void sub_f64(const double* a, const double* b, double* out, size_t n) {
  each_to<4>(out, n, [&](size_t i, auto t) { st4d(out + i, _mm256_sub_pd(ld4d(a + i, t), ld4d(b + i, t)), t); });
}

void sub_f32_to_f16(const float* a, const float* b, uint16_t* out, size_t n) {
  each_to<8>(out, n, [&](size_t i, auto t) {
    st8h(out + i, _mm256_cvtps_ph(_mm256_sub_ps(ld8f(a + i, t), ld8f(b + i, t)), kRne), t);
  });
}

void sub_f64_to_f16(const double* a, const double* b, uint16_t* out, size_t n) {
  each_to<8>(out, n, [&](size_t i, auto t) {
    const auto t4 = skip(t, 4);
    const __m256d lo = _mm256_sub_pd(ld4d(a + i, t), ld4d(b + i, t));
    const __m256d hi = _mm256_sub_pd(ld4d(a + i + 4, t4), ld4d(b + i + 4, t4));
    st8h(out + i, f64x8_to_f16(lo, hi), t);
  });
}

void axpy_f32(const float* base, float scale, const float* x, float* out, size_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  each_to<8>(out, n, [&](size_t i, auto t) {
    st8f(out + i, _mm256_add_ps(ld8f(base + i, t), _mm256_mul_ps(s, ld8f(x + i, t))), t);
  });
}

void axpy_f32_f16(const float* base, float scale, const uint16_t* x, float* out, size_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  each_to<8>(out, n, [&](size_t i, auto t) {
    const __m256 xf = _mm256_cvtph_ps(ld8h(x + i, t));
    st8f(out + i, _mm256_add_ps(ld8f(base + i, t), _mm256_mul_ps(s, xf)), t);
  });
}

void axpy_f64(const double* base, double scale, const double* x, double* out, size_t n) {
  const __m256d s = _mm256_set1_pd(scale);
  each_to<4>(out, n, [&](size_t i, auto t) {
    st4d(out + i, _mm256_add_pd(ld4d(base + i, t), _mm256_mul_pd(s, ld4d(x + i, t))), t);
  });
}

// acc[0..8) += w * (8 floats)
template <class Tag>
inline void acc_pd8(double* acc, __m256d w, __m256 xf, Tag t) {
  const auto t4 = skip(t, 4);
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(xf));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(xf, 1));
  st4d(acc, _mm256_add_pd(ld4d(acc, t), _mm256_mul_pd(w, lo)), t);
  st4d(acc + 4, _mm256_add_pd(ld4d(acc + 4, t4), _mm256_mul_pd(w, hi)), t4);
}

void acc_f64_f16(double* acc, double w, const uint16_t* x, size_t n) {
  const __m256d wv = _mm256_set1_pd(w);
  each<8>(n, [&](size_t i, auto t) { acc_pd8(acc + i, wv, _mm256_cvtph_ps(ld8h(x + i, t)), t); });
}

void acc_f64_f32(double* acc, double w, const float* x, size_t n) {
  const __m256d wv = _mm256_set1_pd(w);
  each<8>(n, [&](size_t i, auto t) { acc_pd8(acc + i, wv, ld8f(x + i, t), t); });
}

void acc_f64_f64(double* acc, double w, const double* x, size_t n) {
  const __m256d wv = _mm256_set1_pd(w);
  each<4>(n, [&](size_t i, auto t) {
    st4d(acc + i, _mm256_add_pd(ld4d(acc + i, t), _mm256_mul_pd(wv, ld4d(x + i, t))), t);
  });
}

void acc_f32_f16(float* acc, float w, const uint16_t* x, size_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  each<8>(n, [&](size_t i, auto t) {
    const __m256 xf = _mm256_cvtph_ps(ld8h(x + i, t));
    st8f(acc + i, _mm256_add_ps(ld8f(acc + i, t), _mm256_mul_ps(wv, xf)), t);
  });
}

void acc_f32_f32(float* acc, float w, const float* x, size_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  each<8>(n, [&](size_t i, auto t) {
    st8f(acc + i, _mm256_add_ps(ld8f(acc + i, t), _mm256_mul_ps(wv, ld8f(x + i, t))), t);
  });
}

// bad(i, tag) gives a lane mask of non-finite elements in the vector at i;
// padding lanes load as 0, which is finite.
template <size_t W, class F>
inline bool none_bad(size_t n, F bad) {
  size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    const __m256i m = _mm256_or_si256(_mm256_or_si256(bad(i, Full{}), bad(i + W, Full{})),
                                      _mm256_or_si256(bad(i + 2 * W, Full{}), bad(i + 3 * W, Full{})));
    if (!_mm256_testz_si256(m, m)) return false;
  }
  for (; i + W <= n; i += W) {
    const __m256i m = bad(i, Full{});
    if (!_mm256_testz_si256(m, m)) return false;
  }
  if (i < n) {
    const __m256i m = bad(i, Part{n - i});
    if (!_mm256_testz_si256(m, m)) return false;
  }
  return true;
}

bool all_finite_f16(const uint16_t* x, size_t n) {
  const __m256i e = _mm256_set1_epi16(0x7c00);
  return none_bad<16>(n, [&](size_t i, auto t) {
    return _mm256_cmpeq_epi16(_mm256_and_si256(ld256i(x + i, t), e), e);
  });
}

bool all_finite_f32(const float* x, size_t n) {
  const __m256i e = _mm256_set1_epi32(0x7f800000);
  return none_bad<8>(n, [&](size_t i, auto t) {
    return _mm256_cmpeq_epi32(_mm256_and_si256(ld256i(x + i, t), e), e);
  });
}

bool all_finite_f64(const double* x, size_t n) {
  const __m256i e = _mm256_set1_epi64x(0x7ff0000000000000ll);
  return none_bad<4>(n, [&](size_t i, auto t) {
    return _mm256_cmpeq_epi64(_mm256_and_si256(ld256i(x + i, t), e), e);
  });
}

}  // namespace

extern const Kernels avx2_kernels = {
    f32_to_f16,     f16_to_f32,     f64_to_f16,     sub_f32,        sub_f64,
    sub_f32_to_f16, sub_f64_to_f16, axpy_f32,       axpy_f32_f16,   axpy_f64,
    acc_f64_f16,    acc_f64_f32,    acc_f64_f64,    acc_f32_f16,    acc_f32_f32,
    all_finite_f16, all_finite_f32, all_finite_f64,
};

}  // namespace detail
}  // namespace ptth
