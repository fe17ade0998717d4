// AVX-512 tier (F/BW/VL/DQ + F16C). The wave-1 kernels finish with masked
// loads and stores, which never touch memory outside the mask; the wave-2
// kernels with their scalar reference body from common.hpp (ref::).
#include <immintrin.h>

#include <cstring>

#include "core/simd/common.hpp"
#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

constexpr int kRne = _MM_FROUND_TO_NEAREST_INT;

// Vector bodies take Full, Stream (common.hpp) or, for the wave-1 tails, a
// lane mask (__mmask8/16/32 by lane count).
inline __m512 ld16f(const float* p, Full) {
  return _mm512_loadu_ps(p);
}
inline __m512 ld16f(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
inline void st16f(float* p, __m512 v, Full) {
  _mm512_storeu_ps(p, v);
}
inline void st16f(float* p, __m512 v, __mmask16 m) {
  _mm512_mask_storeu_ps(p, m, v);
}
inline void st16f(float* p, __m512 v, Stream) {
  _mm512_stream_ps(p, v);
}

inline __m256 ld8f(const float* p, Full) {
  return _mm256_loadu_ps(p);
}
inline __m256 ld8f(const float* p, __mmask8 m) {
  return _mm256_maskz_loadu_ps(m, p);
}

inline __m512d ld8d(const double* p, Full) {
  return _mm512_loadu_pd(p);
}
inline __m512d ld8d(const double* p, __mmask8 m) {
  return _mm512_maskz_loadu_pd(m, p);
}
inline void st8d(double* p, __m512d v, Full) {
  _mm512_storeu_pd(p, v);
}
inline void st8d(double* p, __m512d v, __mmask8 m) {
  _mm512_mask_storeu_pd(p, m, v);
}
inline void st8d(double* p, __m512d v, Stream) {
  _mm512_stream_pd(p, v);
}

inline __m256i ld16h(const uint16_t* p, Full) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m256i ld16h(const uint16_t* p, __mmask16 m) {
  return _mm256_maskz_loadu_epi16(m, p);
}
inline void st16h(uint16_t* p, __m256i v, Full) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}
inline void st16h(uint16_t* p, __m256i v, __mmask16 m) {
  _mm256_mask_storeu_epi16(p, m, v);
}
inline void st16h(uint16_t* p, __m256i v, Stream) {
  _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v);
}

inline __m128i ld8h(const uint16_t* p, Full) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
inline __m128i ld8h(const uint16_t* p, __mmask8 m) {
  return _mm_maskz_loadu_epi16(m, p);
}
inline void st8h(uint16_t* p, __m128i v, Full) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
}
inline void st8h(uint16_t* p, __m128i v, __mmask8 m) {
  _mm_mask_storeu_epi16(p, m, v);
}
inline void st8h(uint16_t* p, __m128i v, Stream) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(p), v);
}

inline __m512i ld512(const void* p, Full) {
  return _mm512_loadu_si512(p);
}
inline __m512i ld512(const uint16_t* p, __mmask32 m) {
  return _mm512_maskz_loadu_epi16(m, p);
}
inline __m512i ld512(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_epi32(m, p);
}
inline __m512i ld512(const double* p, __mmask8 m) {
  return _mm512_maskz_loadu_epi64(m, p);
}

// Conversions (and the max below) through their all-lanes maskz forms: the
// plain forms pass _mm512_undefined_*(), which GCC 12 flags with
// -Wmaybe-uninitialized.
inline __m512d cvt_ps_pd(__m256 v) {
  return _mm512_maskz_cvtps_pd(0xff, v);
}
inline __m512 cvt_ph_ps(__m256i v) {
  return _mm512_maskz_cvtph_ps(0xffff, v);
}
inline __m256i cvt_ps_ph(__m512 v) {
  return _mm512_maskz_cvtps_ph(0xffff, v, kRne);
}

struct Sfence {
  void operator()() const { _mm_sfence(); }
};

// The wave-1 tail: one more call of the vector body with the mask of the
// elements left.
template <class M, class F>
struct MaskTail {
  F& f;
  void operator()(size_t i, size_t end) const {
    f(i, static_cast<M>((uint64_t(1) << (end - i)) - 1));
  }
};

template <size_t W, class M, class F>
inline void each(size_t n, F f) {
  MaskTail<M, F> tail{f};
  run<W>(0, n, Full{}, f, tail);
}

template <size_t W, class M, class T, class F>
inline void each_to(T* dst, size_t n, F f) {
  MaskTail<M, F> tail{f};
  run_to<W>(dst, n, f, tail, Sfence{});
}

// 8 doubles -> 8 halves, correctly rounded: truncate to float, set the last
// bit if inexact (round to odd, 24 >= 11 + 2 bits), then round to nearest.
// Truncation keeps huge values finite (FLT_MAX), which still rounds to inf.
inline __m128i f64x8_to_f16(__m512d d) {
  const __m256 f = _mm512_maskz_cvt_roundpd_ps(0xff, d, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask8 inexact = _mm512_cmp_pd_mask(cvt_ps_pd(f), d, _CMP_NEQ_UQ);
  const __m256i bits = _mm256_castps_si256(f);
  const __m256i odd = _mm256_mask_or_epi32(bits, inexact, bits, _mm256_set1_epi32(1));
  return _mm256_cvtps_ph(_mm256_castsi256_ps(odd), kRne);
}

void f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  each_to<16, __mmask16>(
      dst, n, [&](size_t i, auto m) { st16h(dst + i, cvt_ps_ph(ld16f(src + i, m)), m); });
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  each_to<16, __mmask16>(
      dst, n, [&](size_t i, auto m) { st16f(dst + i, cvt_ph_ps(ld16h(src + i, m)), m); });
}

void f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  each_to<8, __mmask8>(dst, n,
                       [&](size_t i, auto m) { st8h(dst + i, f64x8_to_f16(ld8d(src + i, m)), m); });
}

void sub_f32(const float* a, const float* b, float* out, size_t n) {
  each_to<16, __mmask16>(out, n, [&](size_t i, auto m) {
    st16f(out + i, _mm512_sub_ps(ld16f(a + i, m), ld16f(b + i, m)), m);
  });
}

void sub_f64(const double* a, const double* b, double* out, size_t n) {
  each_to<8, __mmask8>(out, n, [&](size_t i, auto m) {
    st8d(out + i, _mm512_sub_pd(ld8d(a + i, m), ld8d(b + i, m)), m);
  });
}

void sub_f32_to_f16(const float* a, const float* b, uint16_t* out, size_t n) {
  each_to<16, __mmask16>(out, n, [&](size_t i, auto m) {
    st16h(out + i, cvt_ps_ph(_mm512_sub_ps(ld16f(a + i, m), ld16f(b + i, m))), m);
  });
}

void sub_f64_to_f16(const double* a, const double* b, uint16_t* out, size_t n) {
  each_to<8, __mmask8>(out, n, [&](size_t i, auto m) {
    st8h(out + i, f64x8_to_f16(_mm512_sub_pd(ld8d(a + i, m), ld8d(b + i, m))), m);
  });
}

void axpy_f32(const float* base, float scale, const float* x, float* out, size_t n) {
  const __m512 s = _mm512_set1_ps(scale);
  each_to<16, __mmask16>(out, n, [&](size_t i, auto m) {
    st16f(out + i, _mm512_add_ps(ld16f(base + i, m), _mm512_mul_ps(s, ld16f(x + i, m))), m);
  });
}

void axpy_f32_f16(const float* base, float scale, const uint16_t* x, float* out, size_t n) {
  const __m512 s = _mm512_set1_ps(scale);
  each_to<16, __mmask16>(out, n, [&](size_t i, auto m) {
    const __m512 xf = cvt_ph_ps(ld16h(x + i, m));
    st16f(out + i, _mm512_add_ps(ld16f(base + i, m), _mm512_mul_ps(s, xf)), m);
  });
}

void axpy_f64(const double* base, double scale, const double* x, double* out, size_t n) {
  const __m512d s = _mm512_set1_pd(scale);
  each_to<8, __mmask8>(out, n, [&](size_t i, auto m) {
    st8d(out + i, _mm512_add_pd(ld8d(base + i, m), _mm512_mul_pd(s, ld8d(x + i, m))), m);
  });
}

void acc_f64_f16(double* acc, double w, const uint16_t* x, size_t n) {
  const __m512d wv = _mm512_set1_pd(w);
  each<8, __mmask8>(n, [&](size_t i, auto m) {
    const __m512d xd = cvt_ps_pd(_mm256_cvtph_ps(ld8h(x + i, m)));
    st8d(acc + i, _mm512_add_pd(ld8d(acc + i, m), _mm512_mul_pd(wv, xd)), m);
  });
}

void acc_f64_f32(double* acc, double w, const float* x, size_t n) {
  const __m512d wv = _mm512_set1_pd(w);
  each<8, __mmask8>(n, [&](size_t i, auto m) {
    const __m512d xd = cvt_ps_pd(ld8f(x + i, m));
    st8d(acc + i, _mm512_add_pd(ld8d(acc + i, m), _mm512_mul_pd(wv, xd)), m);
  });
}

void acc_f64_f64(double* acc, double w, const double* x, size_t n) {
  const __m512d wv = _mm512_set1_pd(w);
  each<8, __mmask8>(n, [&](size_t i, auto m) {
    st8d(acc + i, _mm512_add_pd(ld8d(acc + i, m), _mm512_mul_pd(wv, ld8d(x + i, m))), m);
  });
}

void acc_f32_f16(float* acc, float w, const uint16_t* x, size_t n) {
  const __m512 wv = _mm512_set1_ps(w);
  each<16, __mmask16>(n, [&](size_t i, auto m) {
    const __m512 xf = cvt_ph_ps(ld16h(x + i, m));
    st16f(acc + i, _mm512_add_ps(ld16f(acc + i, m), _mm512_mul_ps(wv, xf)), m);
  });
}

void acc_f32_f32(float* acc, float w, const float* x, size_t n) {
  const __m512 wv = _mm512_set1_ps(w);
  each<16, __mmask16>(n, [&](size_t i, auto m) {
    st16f(acc + i, _mm512_add_ps(ld16f(acc + i, m), _mm512_mul_ps(wv, ld16f(x + i, m))), m);
  });
}

// exp(i, mask-or-Full) gives each lane's exponent bits, which equal kExp only
// for inf/NaN; masked-off lanes load as 0. Four vectors are merged with an
// unsigned max and tested once.
template <size_t W, class M, class Ops, class F>
inline bool none_bad(size_t n, F exp) {
  size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    const __m512i m = Ops::max(Ops::max(exp(i, Full{}), exp(i + W, Full{})),
                               Ops::max(exp(i + 2 * W, Full{}), exp(i + 3 * W, Full{})));
    if (Ops::hit(m)) return false;
  }
  for (; i + W <= n; i += W)
    if (Ops::hit(exp(i, Full{}))) return false;
  return i == n || !Ops::hit(exp(i, static_cast<M>((uint64_t(1) << (n - i)) - 1)));
}

struct Ops16 {
  static __m512i kexp() { return _mm512_set1_epi16(0x7c00); }
  static __m512i max(__m512i a, __m512i b) { return _mm512_max_epu16(a, b); }
  static bool hit(__m512i v) { return _mm512_cmpeq_epi16_mask(v, kexp()) != 0; }
};
struct Ops32 {
  static __m512i kexp() { return _mm512_set1_epi32(0x7f800000); }
  static __m512i max(__m512i a, __m512i b) { return _mm512_maskz_max_epu32(0xffff, a, b); }
  static bool hit(__m512i v) { return _mm512_cmpeq_epi32_mask(v, kexp()) != 0; }
};
struct Ops64 {
  static __m512i kexp() { return _mm512_set1_epi64(0x7ff0000000000000ll); }
  static __m512i max(__m512i a, __m512i b) { return _mm512_maskz_max_epu64(0xff, a, b); }
  static bool hit(__m512i v) { return _mm512_cmpeq_epi64_mask(v, kexp()) != 0; }
};

bool all_finite_f16(const uint16_t* x, size_t n) {
  return none_bad<32, __mmask32, Ops16>(
      n, [&](size_t i, auto m) { return _mm512_and_si512(ld512(x + i, m), Ops16::kexp()); });
}

bool all_finite_f32(const float* x, size_t n) {
  return none_bad<16, __mmask16, Ops32>(
      n, [&](size_t i, auto m) { return _mm512_and_si512(ld512(x + i, m), Ops32::kexp()); });
}

bool all_finite_f64(const double* x, size_t n) {
  return none_bad<8, __mmask8, Ops64>(
      n, [&](size_t i, auto m) { return _mm512_and_si512(ld512(x + i, m), Ops64::kexp()); });
}

// ---------------------------------------------------------------- wave 2 ---
// Whole vectors (four per iteration), then the scalar reference body for
// the rest.

// Halves of a vector, through the maskz forms (see cvt_ps_pd above).
inline __m256 hi256(__m512 v) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(v), 1));
}
inline __m256 lo256(__m512 v) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(v), 0));
}

void f64_to_f32(const double* src, float* dst, size_t n) {
  auto body = [&](size_t i, auto t) {
    const __m256 lo = _mm512_maskz_cvtpd_ps(0xff, ld8d(src + i, t));
    const __m256 hi = _mm512_maskz_cvtpd_ps(0xff, ld8d(src + i + 8, t));
    const __m512d lo8 = _mm512_maskz_insertf64x4(0xf, _mm512_setzero_pd(), _mm256_castps_pd(lo), 0);
    const __m512d both = _mm512_maskz_insertf64x4(0xff, lo8, _mm256_castps_pd(hi), 1);
    st16f(dst + i, _mm512_castpd_ps(both), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f64_to_f32(src, dst, i, e); };
  run_to<16>(dst, n, body, tail, Sfence{});
}

void f32_to_f64(const float* src, double* dst, size_t n) {
  auto body = [&](size_t i, auto t) {
    const __m512 f = ld16f(src + i, t);
    st8d(dst + i, cvt_ps_pd(lo256(f)), t);
    st8d(dst + i + 8, cvt_ps_pd(hi256(f)), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f32_to_f64(src, dst, i, e); };
  run_to<16>(dst, n, body, tail, Sfence{});
}

void f16_to_f64(const uint16_t* src, double* dst, size_t n) {
  auto body = [&](size_t i, auto t) {
    const __m512 f = cvt_ph_ps(ld16h(src + i, t));
    st8d(dst + i, cvt_ps_pd(lo256(f)), t);
    st8d(dst + i + 8, cvt_ps_pd(hi256(f)), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f16_to_f64(src, dst, i, e); };
  run_to<16>(dst, n, body, tail, Sfence{});
}

// Stats: lanes 0..7 of the definition live in acc[0], 8..15 in acc[1]; each
// block of 16 elements adds one square to every lane. The largest |x| bit
// pattern is kept per vector position in mx[k], reduced at the end.
template <class U>
inline uint64_t hmax(__m512i v) {
  U b[sizeof(__m512i) / sizeof(U)];
  std::memcpy(b, &v, sizeof v);
  uint64_t m = 0;
  for (U x : b)
    if (x > m) m = x;
  return m;
}

template <class E, class U, class Block, class Tail>
inline void stats_run(size_t n, Stats* out, Block& block, Tail& tail) {
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  __m512i mx[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
  const size_t whole = n / 16 * 16;
  for (size_t i = 0; i < whole; i += 16) block(i, acc, mx);
  StatsAcc s;
  for (int k = 0; k < 2; ++k) {
    _mm512_storeu_pd(s.lane + 8 * k, acc[k]);
    const uint64_t m = hmax<U>(mx[k]);
    if (m > s.max_abs) s.max_abs = m;
  }
  tail(whole, n, s);
  stats_finish<E>(s, out);
}

inline void add_sq(__m512d& acc, __m512d v) {
  acc = _mm512_add_pd(acc, _mm512_mul_pd(v, v));
}

inline __m512i max_abs64(__m512i m, __m512d v) {
  const __m512i a =
      _mm512_and_si512(_mm512_castpd_si512(v), _mm512_set1_epi64(0x7fffffffffffffffll));
  return _mm512_maskz_max_epu64(0xff, m, a);
}

// 16 floats: |bits| into mx, squares (exact in double) into the two lane vectors.
inline void stats_f32x16(__m512 v, __m512d* acc, __m512i& mx) {
  mx = _mm512_maskz_max_epu32(
      0xffff, mx, _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
  add_sq(acc[0], cvt_ps_pd(lo256(v)));
  add_sq(acc[1], cvt_ps_pd(hi256(v)));
}

void stats_f16(const uint16_t* x, size_t n, Stats* out) {
  auto block = [&](size_t i, __m512d* acc, __m512i* mx) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m512i a =
        _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_and_si256(h, _mm256_set1_epi16(0x7fff)));
    mx[0] = _mm512_maskz_max_epu32(0xffff, mx[0], a);
    const __m512 f = cvt_ph_ps(h);
    const __m512 sq = _mm512_mul_ps(f, f);  // exact: 22 significant bits, >= 2^-48
    acc[0] = _mm512_add_pd(acc[0], cvt_ps_pd(lo256(sq)));
    acc[1] = _mm512_add_pd(acc[1], cvt_ps_pd(hi256(sq)));
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<HalfBits>(x, i, e, s); };
  stats_run<HalfBits, uint32_t>(n, out, block, tail);
}

void stats_f32(const float* x, size_t n, Stats* out) {
  auto block = [&](size_t i, __m512d* acc, __m512i* mx) {
    stats_f32x16(_mm512_loadu_ps(x + i), acc, mx[0]);
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<F32Bits>(x, i, e, s); };
  stats_run<F32Bits, uint32_t>(n, out, block, tail);
}

void stats_sub_f32(const float* a, const float* b, size_t n, Stats* out) {
  auto block = [&](size_t i, __m512d* acc, __m512i* mx) {
    stats_f32x16(_mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)), acc, mx[0]);
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats_sub<F32Bits>(a, b, i, e, s); };
  stats_run<F32Bits, uint32_t>(n, out, block, tail);
}

void stats_f64(const double* x, size_t n, Stats* out) {
  auto block = [&](size_t i, __m512d* acc, __m512i* mx) {
    for (int k = 0; k < 2; ++k) {
      const __m512d v = _mm512_loadu_pd(x + i + 8 * k);
      mx[k] = max_abs64(mx[k], v);
      add_sq(acc[k], v);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<F64Bits>(x, i, e, s); };
  stats_run<F64Bits, uint64_t>(n, out, block, tail);
}

void stats_sub_f64(const double* a, const double* b, size_t n, Stats* out) {
  auto block = [&](size_t i, __m512d* acc, __m512i* mx) {
    for (int k = 0; k < 2; ++k) {
      const __m512d v =
          _mm512_sub_pd(_mm512_loadu_pd(a + i + 8 * k), _mm512_loadu_pd(b + i + 8 * k));
      mx[k] = max_abs64(mx[k], v);
      add_sq(acc[k], v);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats_sub<F64Bits>(a, b, i, e, s); };
  stats_run<F64Bits, uint64_t>(n, out, block, tail);
}

void div_f32(const float* acc, float d, float* out, size_t n) {
  const __m512 dv = _mm512_set1_ps(d);
  auto body = [&](size_t i, auto t) { st16f(out + i, _mm512_div_ps(ld16f(acc + i, t), dv), t); };
  auto tail = [&](size_t i, size_t e) { ref::div(acc, d, out, i, e); };
  run_to<16>(out, n, body, tail, Sfence{});
}

void div_f64(const double* acc, double d, double* out, size_t n) {
  const __m512d dv = _mm512_set1_pd(d);
  auto body = [&](size_t i, auto t) { st8d(out + i, _mm512_div_pd(ld8d(acc + i, t), dv), t); };
  auto tail = [&](size_t i, size_t e) { ref::div(acc, d, out, i, e); };
  run_to<8>(out, n, body, tail, Sfence{});
}

void axpy_div_f32(float* r, float lr, const float* acc, float d, size_t n) {
  const __m512 lv = _mm512_set1_ps(lr), dv = _mm512_set1_ps(d);
  auto body = [&](size_t i, Full t) {
    const __m512 p = _mm512_mul_ps(lv, _mm512_div_ps(ld16f(acc + i, t), dv));
    st16f(r + i, _mm512_add_ps(ld16f(r + i, t), p), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::axpy_div(r, lr, acc, d, i, e); };
  run<16>(0, n, Full{}, body, tail);
}

void axpy_div_f64(double* r, double lr, const double* acc, double d, size_t n) {
  const __m512d lv = _mm512_set1_pd(lr), dv = _mm512_set1_pd(d);
  auto body = [&](size_t i, Full t) {
    const __m512d p = _mm512_mul_pd(lv, _mm512_div_pd(ld8d(acc + i, t), dv));
    st8d(r + i, _mm512_add_pd(ld8d(r + i, t), p), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::axpy_div(r, lr, acc, d, i, e); };
  run<8>(0, n, Full{}, body, tail);
}

}  // namespace

extern const Kernels avx512_kernels = {
    f32_to_f16,     f16_to_f32,    f64_to_f16,   sub_f32,        sub_f64,        sub_f32_to_f16,
    sub_f64_to_f16, axpy_f32,      axpy_f32_f16, axpy_f64,       acc_f64_f16,    acc_f64_f32,
    acc_f64_f64,    acc_f32_f16,   acc_f32_f32,  all_finite_f16, all_finite_f32, all_finite_f64,
    f64_to_f32,     f32_to_f64,    f16_to_f64,   stats_f16,      stats_f32,      stats_f64,
    stats_sub_f32,  stats_sub_f64, div_f32,      div_f64,        axpy_div_f32,   axpy_div_f64,
};

}  // namespace detail
}  // namespace ptth
