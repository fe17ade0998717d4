// AVX-512 tier (F/BW/VL/DQ + F16C). Tails use masked loads and stores, which
// never touch memory outside the mask.
#include <immintrin.h>

#include <cstring>

#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

constexpr int kRne = _MM_FROUND_TO_NEAREST_INT;

// A whole vector, or a lane mask (__mmask8/16/32 by lane count) for the tail.
// Stream: a whole vector to an aligned destination, stored non-temporally
// (loads treat it as Full).
struct Full {};
struct Stream : Full {};

inline __m512 ld16f(const float* p, Full) { return _mm512_loadu_ps(p); }
inline __m512 ld16f(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline void st16f(float* p, __m512 v, Full) { _mm512_storeu_ps(p, v); }
inline void st16f(float* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
inline void st16f(float* p, __m512 v, Stream) { _mm512_stream_ps(p, v); }

inline __m256 ld8f(const float* p, Full) { return _mm256_loadu_ps(p); }
inline __m256 ld8f(const float* p, __mmask8 m) { return _mm256_maskz_loadu_ps(m, p); }

inline __m512d ld8d(const double* p, Full) { return _mm512_loadu_pd(p); }
inline __m512d ld8d(const double* p, __mmask8 m) { return _mm512_maskz_loadu_pd(m, p); }
inline void st8d(double* p, __m512d v, Full) { _mm512_storeu_pd(p, v); }
inline void st8d(double* p, __m512d v, __mmask8 m) { _mm512_mask_storeu_pd(p, m, v); }
inline void st8d(double* p, __m512d v, Stream) { _mm512_stream_pd(p, v); }

inline __m256i ld16h(const uint16_t* p, Full) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256i ld16h(const uint16_t* p, __mmask16 m) { return _mm256_maskz_loadu_epi16(m, p); }
inline void st16h(uint16_t* p, __m256i v, Full) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
inline void st16h(uint16_t* p, __m256i v, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, v); }
inline void st16h(uint16_t* p, __m256i v, Stream) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v); }

inline __m128i ld8h(const uint16_t* p, Full) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m128i ld8h(const uint16_t* p, __mmask8 m) { return _mm_maskz_loadu_epi16(m, p); }
inline void st8h(uint16_t* p, __m128i v, Full) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
inline void st8h(uint16_t* p, __m128i v, __mmask8 m) { _mm_mask_storeu_epi16(p, m, v); }
inline void st8h(uint16_t* p, __m128i v, Stream) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), v); }

inline __m512i ld512(const void* p, Full) { return _mm512_loadu_si512(p); }
inline __m512i ld512(const uint16_t* p, __mmask32 m) { return _mm512_maskz_loadu_epi16(m, p); }
inline __m512i ld512(const float* p, __mmask16 m) { return _mm512_maskz_loadu_epi32(m, p); }
inline __m512i ld512(const double* p, __mmask8 m) { return _mm512_maskz_loadu_epi64(m, p); }

// Conversions (and the max below) through their all-lanes maskz forms: the
// plain forms pass _mm512_undefined_*(), which GCC 12 flags with
// -Wmaybe-uninitialized.
inline __m512d cvt_ps_pd(__m256 v) { return _mm512_maskz_cvtps_pd(0xff, v); }
inline __m512 cvt_ph_ps(__m256i v) { return _mm512_maskz_cvtph_ps(0xffff, v); }
inline __m256i cvt_ps_ph(__m512 v) { return _mm512_maskz_cvtps_ph(0xffff, v, kRne); }

// f(i, tag) over whole vectors of W lanes in [begin, end), four at a time,
// then f(i, mask) once over the rest; M is the mask type for W lanes.
template <size_t W, class M, class Tag, class F>
inline void run(size_t begin, size_t end, Tag tag, F& f) {
  size_t i = begin;
  for (; i + 4 * W <= end; i += 4 * W) {
    f(i, tag);
    f(i + W, tag);
    f(i + 2 * W, tag);
    f(i + 3 * W, tag);
  }
  for (; i + W <= end; i += W) f(i, tag);
  if (i < end) f(i, static_cast<M>((uint64_t(1) << (end - i)) - 1));
}

template <size_t W, class M, class F>
inline void each(size_t n, F f) {
  run<W, M>(0, n, Full{}, f);
}

// Outputs at least this large bypass the cache: they would not stay cached
// anyway, and non-temporal stores skip reading every line before writing it
// (about a quarter less memory traffic for a conversion).
constexpr size_t kStreamBytes = size_t(32) << 20;

// each() for kernels writing dst as a stream (not the accumulators, whose
// lines are read first anyway).
template <size_t W, class M, class T, class F>
inline void each_to(T* dst, size_t n, F f) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(dst);
  if (n * sizeof(T) < kStreamBytes || a % sizeof(T) != 0) return run<W, M>(0, n, Full{}, f);
  const size_t head = (64 - a % 64) % 64 / sizeof(T);  // up to a cache-line boundary
  const size_t body_end = head + (n - head) / W * W;
  run<W, M>(0, head, Full{}, f);
  run<W, M>(head, body_end, Stream{}, f);
  _mm_sfence();  // order the streamed stores before anything that follows
  run<W, M>(body_end, n, Full{}, f);
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
  each_to<16, __mmask16>(dst, n, [&](size_t i, auto m) { st16h(dst + i, cvt_ps_ph(ld16f(src + i, m)), m); });
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  each_to<16, __mmask16>(dst, n, [&](size_t i, auto m) { st16f(dst + i, cvt_ph_ps(ld16h(src + i, m)), m); });
}

void f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  each_to<8, __mmask8>(dst, n, [&](size_t i, auto m) { st8h(dst + i, f64x8_to_f16(ld8d(src + i, m)), m); });
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
  return none_bad<32, __mmask32, Ops16>(n, [&](size_t i, auto m) {
    return _mm512_and_si512(ld512(x + i, m), Ops16::kexp());
  });
}

bool all_finite_f32(const float* x, size_t n) {
  return none_bad<16, __mmask16, Ops32>(n, [&](size_t i, auto m) {
    return _mm512_and_si512(ld512(x + i, m), Ops32::kexp());
  });
}

bool all_finite_f64(const double* x, size_t n) {
  return none_bad<8, __mmask8, Ops64>(n, [&](size_t i, auto m) {
    return _mm512_and_si512(ld512(x + i, m), Ops64::kexp());
  });
}

}  // namespace

extern const Kernels avx512_kernels = {
    f32_to_f16,     f16_to_f32,     f64_to_f16,     sub_f32,        sub_f64,
    sub_f32_to_f16, sub_f64_to_f16, axpy_f32,       axpy_f32_f16,   axpy_f64,
    acc_f64_f16,    acc_f64_f32,    acc_f64_f64,    acc_f32_f16,    acc_f32_f32,
    all_finite_f16, all_finite_f32, all_finite_f64,
};

}  // namespace detail
}  // namespace ptth
