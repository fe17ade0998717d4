// AVX2 + F16C tier (built with -mavx2 -mf16c, no FMA). The wave-1 kernels
// finish with a zero-padded stack vector; the wave-2 kernels with their
// scalar reference body from common.hpp (ref::).
#include <immintrin.h>

#include <cstring>

#include "core/simd/common.hpp"
#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

// vcvtps2ph immediate: round to nearest even, independent of MXCSR.
constexpr int kRne = _MM_FROUND_TO_NEAREST_INT;

inline __m256 ld8f(const float* p, Full) {
  return _mm256_loadu_ps(p);
}
inline __m256 ld8f(const float* p, Part t) {
  return ld_part<__m256>(p, t);
}
inline void st8f(float* p, __m256 v, Full) {
  _mm256_storeu_ps(p, v);
}
inline void st8f(float* p, __m256 v, Part t) {
  st_part(p, v, t);
}
inline void st8f(float* p, __m256 v, Stream) {
  _mm256_stream_ps(p, v);
}

inline __m256d ld4d(const double* p, Full) {
  return _mm256_loadu_pd(p);
}
inline __m256d ld4d(const double* p, Part t) {
  return ld_part<__m256d>(p, t);
}
inline void st4d(double* p, __m256d v, Full) {
  _mm256_storeu_pd(p, v);
}
inline void st4d(double* p, __m256d v, Part t) {
  st_part(p, v, t);
}
inline void st4d(double* p, __m256d v, Stream) {
  _mm256_stream_pd(p, v);
}

inline __m128i ld8h(const uint16_t* p, Full) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
inline __m128i ld8h(const uint16_t* p, Part t) {
  return ld_part<__m128i>(p, t);
}
inline void st8h(uint16_t* p, __m128i v, Full) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
}
inline void st8h(uint16_t* p, __m128i v, Part t) {
  st_part(p, v, t);
}
inline void st8h(uint16_t* p, __m128i v, Stream) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(p), v);
}

template <class T>
inline __m256i ld256i(const T* p, Full) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
template <class T>
inline __m256i ld256i(const T* p, Part t) {
  return ld_part<__m256i>(p, t);
}

struct Sfence {
  void operator()() const { _mm_sfence(); }
};

// The wave-1 kernels: whole vectors, then one zero-padded Part vector, so
// every element takes the same hardware path.
template <size_t W, class F>
inline void each(size_t n, F f) {
  PartTail<F> tail{f};
  run<W>(0, n, Full{}, f, tail);
}
template <size_t W, class T, class F>
inline void each_to(T* dst, size_t n, F f) {
  PartTail<F> tail{f};
  run_to<W>(dst, n, f, tail, Sfence{});
}

// double -> float rounded to odd: truncate (undo a rounding away from zero),
// then set the last bit if inexact. Rounding that to f16 is then correctly
// rounded from the double (24 >= 11 + 2 bits): no double rounding.
inline __m128 f64_to_f32_odd(__m256d d) {
  const __m128 f = _mm256_cvtpd_ps(d);
  const __m256d back = _mm256_cvtps_pd(f);
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll));
  const __m256d away =
      _mm256_cmp_pd(_mm256_and_pd(back, abs_mask), _mm256_and_pd(d, abs_mask), _CMP_GT_OQ);
  const __m256d inexact = _mm256_cmp_pd(back, d, _CMP_NEQ_UQ);
  const __m256i lo_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m128i away32 =
      _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(away), lo_dwords));
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
  each_to<8>(dst, n,
             [&](size_t i, auto t) { st8h(dst + i, _mm256_cvtps_ph(ld8f(src + i, t), kRne), t); });
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  each_to<8>(dst, n,
             [&](size_t i, auto t) { st8f(dst + i, _mm256_cvtph_ps(ld8h(src + i, t)), t); });
}

void f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  each_to<8>(dst, n, [&](size_t i, auto t) {
    st8h(dst + i, f64x8_to_f16(ld4d(src + i, t), ld4d(src + i + 4, skip(t, 4))), t);
  });
}

void sub_f32(const float* a, const float* b, float* out, size_t n) {
  each_to<8>(out, n, [&](size_t i, auto t) {
    st8f(out + i, _mm256_sub_ps(ld8f(a + i, t), ld8f(b + i, t)), t);
  });
}

void sub_f64(const double* a, const double* b, double* out, size_t n) {
  each_to<4>(out, n, [&](size_t i, auto t) {
    st4d(out + i, _mm256_sub_pd(ld4d(a + i, t), ld4d(b + i, t)), t);
  });
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
    const __m256i m =
        _mm256_or_si256(_mm256_or_si256(bad(i, Full{}), bad(i + W, Full{})),
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

// ---------------------------------------------------------------- wave 2 ---
// Whole vectors (four per iteration), then the scalar reference body for
// the rest.

void f64_to_f32(const double* src, float* dst, size_t n) {
  auto body = [&](size_t i, auto t) {
    const __m128 lo = _mm256_cvtpd_ps(ld4d(src + i, t)), hi = _mm256_cvtpd_ps(ld4d(src + i + 4, t));
    st8f(dst + i, _mm256_set_m128(hi, lo), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f64_to_f32(src, dst, i, e); };
  run_to<8>(dst, n, body, tail, Sfence{});
}

void f32_to_f64(const float* src, double* dst, size_t n) {
  auto body = [&](size_t i, auto t) {
    const __m256 f = ld8f(src + i, t);
    st4d(dst + i, _mm256_cvtps_pd(_mm256_castps256_ps128(f)), t);
    st4d(dst + i + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f32_to_f64(src, dst, i, e); };
  run_to<8>(dst, n, body, tail, Sfence{});
}

void f16_to_f64(const uint16_t* src, double* dst, size_t n) {
  auto body = [&](size_t i, auto t) {
    const __m256 f = _mm256_cvtph_ps(ld8h(src + i, t));
    st4d(dst + i, _mm256_cvtps_pd(_mm256_castps256_ps128(f)), t);
    st4d(dst + i + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f16_to_f64(src, dst, i, e); };
  run_to<8>(dst, n, body, tail, Sfence{});
}

// Stats: lanes 4k..4k+3 of the definition live in acc[k]; each block of 16
// elements adds one square to every lane. The largest |x| bit pattern is
// kept per vector position in mx[k] (independent chains), reduced at the end.
template <class U>
inline uint64_t hmax(__m256i v) {
  U b[sizeof(__m256i) / sizeof(U)];
  std::memcpy(b, &v, sizeof v);
  uint64_t m = 0;
  for (U x : b)
    if (x > m) m = x;
  return m;
}

template <class E, class U, class Block, class Tail>
inline void stats_run(size_t n, Stats* out, Block& block, Tail& tail) {
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  __m256i mx[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                   _mm256_setzero_si256()};
  const size_t whole = n / 16 * 16;
  for (size_t i = 0; i < whole; i += 16) block(i, acc, mx);
  StatsAcc s;
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_pd(s.lane + 4 * k, acc[k]);
    const uint64_t m = hmax<U>(mx[k]);
    if (m > s.max_abs) s.max_abs = m;
  }
  tail(whole, n, s);
  stats_finish<E>(s, out);
}

inline void add_sq(__m256d& acc, __m256d v) {
  acc = _mm256_add_pd(acc, _mm256_mul_pd(v, v));
}

// Max of sign-cleared 64-bit patterns: AVX2 has no unsigned 64-bit max, but
// with the sign bit clear the signed compare orders them the same.
inline __m256i max_abs64(__m256i m, __m256d v) {
  const __m256i a =
      _mm256_and_si256(_mm256_castpd_si256(v), _mm256_set1_epi64x(0x7fffffffffffffffll));
  return _mm256_blendv_epi8(m, a, _mm256_cmpgt_epi64(a, m));
}
inline __m256i max_abs32(__m256i m, __m256 v) {
  return _mm256_max_epu32(m,
                          _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff)));
}

// 8 floats: |bits| into mx, squares (exact in double) into two lane vectors.
inline void stats_f32x8(__m256 v, __m256d& acc_lo, __m256d& acc_hi, __m256i& mx) {
  mx = max_abs32(mx, v);
  add_sq(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  add_sq(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

void stats_f16(const uint16_t* x, size_t n, Stats* out) {
  auto block = [&](size_t i, __m256d* acc, __m256i* mx) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    mx[0] = _mm256_max_epu16(mx[0], _mm256_and_si256(h, _mm256_set1_epi16(0x7fff)));
    for (int k = 0; k < 2; ++k) {
      const __m256 f =
          _mm256_cvtph_ps(k == 0 ? _mm256_castsi256_si128(h) : _mm256_extracti128_si256(h, 1));
      const __m256 sq = _mm256_mul_ps(f, f);  // exact: 22 significant bits, >= 2^-48
      acc[2 * k] = _mm256_add_pd(acc[2 * k], _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
      acc[2 * k + 1] = _mm256_add_pd(acc[2 * k + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<HalfBits>(x, i, e, s); };
  stats_run<HalfBits, uint16_t>(n, out, block, tail);
}

void stats_f32(const float* x, size_t n, Stats* out) {
  auto block = [&](size_t i, __m256d* acc, __m256i* mx) {
    for (int k = 0; k < 2; ++k)
      stats_f32x8(_mm256_loadu_ps(x + i + 8 * k), acc[2 * k], acc[2 * k + 1], mx[k]);
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<F32Bits>(x, i, e, s); };
  stats_run<F32Bits, uint32_t>(n, out, block, tail);
}

void stats_sub_f32(const float* a, const float* b, size_t n, Stats* out) {
  auto block = [&](size_t i, __m256d* acc, __m256i* mx) {
    for (int k = 0; k < 2; ++k) {
      const __m256 v =
          _mm256_sub_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(b + i + 8 * k));
      stats_f32x8(v, acc[2 * k], acc[2 * k + 1], mx[k]);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats_sub<F32Bits>(a, b, i, e, s); };
  stats_run<F32Bits, uint32_t>(n, out, block, tail);
}

void stats_f64(const double* x, size_t n, Stats* out) {
  auto block = [&](size_t i, __m256d* acc, __m256i* mx) {
    for (int k = 0; k < 4; ++k) {
      const __m256d v = _mm256_loadu_pd(x + i + 4 * k);
      mx[k] = max_abs64(mx[k], v);
      add_sq(acc[k], v);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<F64Bits>(x, i, e, s); };
  stats_run<F64Bits, uint64_t>(n, out, block, tail);
}

void stats_sub_f64(const double* a, const double* b, size_t n, Stats* out) {
  auto block = [&](size_t i, __m256d* acc, __m256i* mx) {
    for (int k = 0; k < 4; ++k) {
      const __m256d v =
          _mm256_sub_pd(_mm256_loadu_pd(a + i + 4 * k), _mm256_loadu_pd(b + i + 4 * k));
      mx[k] = max_abs64(mx[k], v);
      add_sq(acc[k], v);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats_sub<F64Bits>(a, b, i, e, s); };
  stats_run<F64Bits, uint64_t>(n, out, block, tail);
}

void div_f32(const float* acc, float d, float* out, size_t n) {
  const __m256 dv = _mm256_set1_ps(d);
  auto body = [&](size_t i, auto t) { st8f(out + i, _mm256_div_ps(ld8f(acc + i, t), dv), t); };
  auto tail = [&](size_t i, size_t e) { ref::div(acc, d, out, i, e); };
  run_to<8>(out, n, body, tail, Sfence{});
}

void div_f64(const double* acc, double d, double* out, size_t n) {
  const __m256d dv = _mm256_set1_pd(d);
  auto body = [&](size_t i, auto t) { st4d(out + i, _mm256_div_pd(ld4d(acc + i, t), dv), t); };
  auto tail = [&](size_t i, size_t e) { ref::div(acc, d, out, i, e); };
  run_to<4>(out, n, body, tail, Sfence{});
}

void axpy_div_f32(float* r, float lr, const float* acc, float d, size_t n) {
  const __m256 lv = _mm256_set1_ps(lr), dv = _mm256_set1_ps(d);
  auto body = [&](size_t i, Full t) {
    const __m256 p = _mm256_mul_ps(lv, _mm256_div_ps(ld8f(acc + i, t), dv));
    st8f(r + i, _mm256_add_ps(ld8f(r + i, t), p), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::axpy_div(r, lr, acc, d, i, e); };
  run<8>(0, n, Full{}, body, tail);
}

void axpy_div_f64(double* r, double lr, const double* acc, double d, size_t n) {
  const __m256d lv = _mm256_set1_pd(lr), dv = _mm256_set1_pd(d);
  auto body = [&](size_t i, Full t) {
    const __m256d p = _mm256_mul_pd(lv, _mm256_div_pd(ld4d(acc + i, t), dv));
    st4d(r + i, _mm256_add_pd(ld4d(r + i, t), p), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::axpy_div(r, lr, acc, d, i, e); };
  run<4>(0, n, Full{}, body, tail);
}

}  // namespace

extern const Kernels avx2_kernels = {
    f32_to_f16,     f16_to_f32,    f64_to_f16,   sub_f32,        sub_f64,        sub_f32_to_f16,
    sub_f64_to_f16, axpy_f32,      axpy_f32_f16, axpy_f64,       acc_f64_f16,    acc_f64_f32,
    acc_f64_f64,    acc_f32_f16,   acc_f32_f32,  all_finite_f16, all_finite_f32, all_finite_f64,
    f64_to_f32,     f32_to_f64,    f16_to_f64,   stats_f16,      stats_f32,      stats_f64,
    stats_sub_f32,  stats_sub_f64, div_f32,      div_f64,        axpy_div_f32,   axpy_div_f64,
};

}  // namespace detail
}  // namespace ptth
