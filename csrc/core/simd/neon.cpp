// AArch64 Advanced SIMD tier (baseline on AArch64, no extra flags). FCVTN /
// FCVTL convert halves, FCVTXN rounds double -> float to odd. The wave-1
// kernels finish with a zero-padded stack vector; the wave-2 kernels with
// their scalar reference body from common.hpp (ref::).
#include <arm_neon.h>

#include <cstring>

#include "core/simd/common.hpp"
#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

inline float32x4_t ld4f(const float* p, Full) {
  return vld1q_f32(p);
}
inline float32x4_t ld4f(const float* p, Part t) {
  return ld_part<float32x4_t>(p, t);
}
inline void st4f(float* p, float32x4_t v, Full) {
  vst1q_f32(p, v);
}
inline void st4f(float* p, float32x4_t v, Part t) {
  st_part(p, v, t);
}

inline float64x2_t ld2d(const double* p, Full) {
  return vld1q_f64(p);
}
inline float64x2_t ld2d(const double* p, Part t) {
  return ld_part<float64x2_t>(p, t);
}
inline void st2d(double* p, float64x2_t v, Full) {
  vst1q_f64(p, v);
}
inline void st2d(double* p, float64x2_t v, Part t) {
  st_part(p, v, t);
}

inline uint16x8_t ld8h(const uint16_t* p, Full) {
  return vld1q_u16(p);
}
inline uint16x8_t ld8h(const uint16_t* p, Part t) {
  return ld_part<uint16x8_t>(p, t);
}
inline void st8h(uint16_t* p, uint16x8_t v, Full) {
  vst1q_u16(p, v);
}
inline void st8h(uint16_t* p, uint16x8_t v, Part t) {
  st_part(p, v, t);
}

template <size_t W, class F>
inline void each(size_t n, F f) {
  PartTail<F> tail{f};
  run<W>(0, n, Full{}, f, tail);
}

inline uint16x8_t f32x8_to_f16(float32x4_t lo, float32x4_t hi) {
  return vreinterpretq_u16_f16(vcvt_high_f16_f32(vcvt_f16_f32(lo), hi));
}
inline float32x4_t f16lo_to_f32(uint16x8_t h) {
  return vcvt_f32_f16(vget_low_f16(vreinterpretq_f16_u16(h)));
}
inline float32x4_t f16hi_to_f32(uint16x8_t h) {
  return vcvt_high_f32_f16(vreinterpretq_f16_u16(h));
}

// Round to odd (FCVTXN) then to nearest: correctly rounded, no double rounding.
inline uint16x8_t f64x8_to_f16(float64x2_t d0, float64x2_t d1, float64x2_t d2, float64x2_t d3) {
  const float32x4_t lo = vcvtx_high_f32_f64(vcvtx_f32_f64(d0), d1);
  const float32x4_t hi = vcvtx_high_f32_f64(vcvtx_f32_f64(d2), d3);
  return f32x8_to_f16(lo, hi);
}

template <class Tag>
inline uint16x8_t ld8d_to_f16(const double* p, Tag t) {
  return f64x8_to_f16(ld2d(p, t), ld2d(p + 2, skip(t, 2)), ld2d(p + 4, skip(t, 4)),
                      ld2d(p + 6, skip(t, 6)));
}

void f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  each<8>(n, [&](size_t i, auto t) {
    st8h(dst + i, f32x8_to_f16(ld4f(src + i, t), ld4f(src + i + 4, skip(t, 4))), t);
  });
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  each<8>(n, [&](size_t i, auto t) {
    const uint16x8_t h = ld8h(src + i, t);
    st4f(dst + i, f16lo_to_f32(h), t);
    st4f(dst + i + 4, f16hi_to_f32(h), skip(t, 4));
  });
}

void f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  each<8>(n, [&](size_t i, auto t) { st8h(dst + i, ld8d_to_f16(src + i, t), t); });
}

void sub_f32(const float* a, const float* b, float* out, size_t n) {
  each<4>(n,
          [&](size_t i, auto t) { st4f(out + i, vsubq_f32(ld4f(a + i, t), ld4f(b + i, t)), t); });
}

void sub_f64(const double* a, const double* b, double* out, size_t n) {
  each<2>(n,
          [&](size_t i, auto t) { st2d(out + i, vsubq_f64(ld2d(a + i, t), ld2d(b + i, t)), t); });
}

void sub_f32_to_f16(const float* a, const float* b, uint16_t* out, size_t n) {
  each<8>(n, [&](size_t i, auto t) {
    const auto t4 = skip(t, 4);
    const float32x4_t lo = vsubq_f32(ld4f(a + i, t), ld4f(b + i, t));
    const float32x4_t hi = vsubq_f32(ld4f(a + i + 4, t4), ld4f(b + i + 4, t4));
    st8h(out + i, f32x8_to_f16(lo, hi), t);
  });
}

void sub_f64_to_f16(const double* a, const double* b, uint16_t* out, size_t n) {
  each<8>(n, [&](size_t i, auto t) {
    float64x2_t d[4];
    for (size_t k = 0; k < 4; ++k) {
      const auto tk = skip(t, 2 * k);
      d[k] = vsubq_f64(ld2d(a + i + 2 * k, tk), ld2d(b + i + 2 * k, tk));
    }
    st8h(out + i, f64x8_to_f16(d[0], d[1], d[2], d[3]), t);
  });
}

void axpy_f32(const float* base, float scale, const float* x, float* out, size_t n) {
  const float32x4_t s = vdupq_n_f32(scale);
  each<4>(n, [&](size_t i, auto t) {
    st4f(out + i, vaddq_f32(ld4f(base + i, t), vmulq_f32(s, ld4f(x + i, t))), t);
  });
}

void axpy_f32_f16(const float* base, float scale, const uint16_t* x, float* out, size_t n) {
  const float32x4_t s = vdupq_n_f32(scale);
  each<8>(n, [&](size_t i, auto t) {
    const auto t4 = skip(t, 4);
    const uint16x8_t h = ld8h(x + i, t);
    st4f(out + i, vaddq_f32(ld4f(base + i, t), vmulq_f32(s, f16lo_to_f32(h))), t);
    st4f(out + i + 4, vaddq_f32(ld4f(base + i + 4, t4), vmulq_f32(s, f16hi_to_f32(h))), t4);
  });
}

void axpy_f64(const double* base, double scale, const double* x, double* out, size_t n) {
  const float64x2_t s = vdupq_n_f64(scale);
  each<2>(n, [&](size_t i, auto t) {
    st2d(out + i, vaddq_f64(ld2d(base + i, t), vmulq_f64(s, ld2d(x + i, t))), t);
  });
}

// acc[0..4) += w * (4 floats)
template <class Tag>
inline void acc_pd4(double* acc, float64x2_t w, float32x4_t xf, Tag t) {
  const auto t2 = skip(t, 2);
  const float64x2_t lo = vcvt_f64_f32(vget_low_f32(xf));
  const float64x2_t hi = vcvt_high_f64_f32(xf);
  st2d(acc, vaddq_f64(ld2d(acc, t), vmulq_f64(w, lo)), t);
  st2d(acc + 2, vaddq_f64(ld2d(acc + 2, t2), vmulq_f64(w, hi)), t2);
}

void acc_f64_f16(double* acc, double w, const uint16_t* x, size_t n) {
  const float64x2_t wv = vdupq_n_f64(w);
  each<8>(n, [&](size_t i, auto t) {
    const uint16x8_t h = ld8h(x + i, t);
    acc_pd4(acc + i, wv, f16lo_to_f32(h), t);
    acc_pd4(acc + i + 4, wv, f16hi_to_f32(h), skip(t, 4));
  });
}

void acc_f64_f32(double* acc, double w, const float* x, size_t n) {
  const float64x2_t wv = vdupq_n_f64(w);
  each<4>(n, [&](size_t i, auto t) { acc_pd4(acc + i, wv, ld4f(x + i, t), t); });
}

void acc_f64_f64(double* acc, double w, const double* x, size_t n) {
  const float64x2_t wv = vdupq_n_f64(w);
  each<2>(n, [&](size_t i, auto t) {
    st2d(acc + i, vaddq_f64(ld2d(acc + i, t), vmulq_f64(wv, ld2d(x + i, t))), t);
  });
}

void acc_f32_f16(float* acc, float w, const uint16_t* x, size_t n) {
  const float32x4_t wv = vdupq_n_f32(w);
  each<8>(n, [&](size_t i, auto t) {
    const auto t4 = skip(t, 4);
    const uint16x8_t h = ld8h(x + i, t);
    st4f(acc + i, vaddq_f32(ld4f(acc + i, t), vmulq_f32(wv, f16lo_to_f32(h))), t);
    st4f(acc + i + 4, vaddq_f32(ld4f(acc + i + 4, t4), vmulq_f32(wv, f16hi_to_f32(h))), t4);
  });
}

void acc_f32_f32(float* acc, float w, const float* x, size_t n) {
  const float32x4_t wv = vdupq_n_f32(w);
  each<4>(n, [&](size_t i, auto t) {
    st4f(acc + i, vaddq_f32(ld4f(acc + i, t), vmulq_f32(wv, ld4f(x + i, t))), t);
  });
}

// bad(i, tag) gives a lane mask of non-finite elements (as bytes); padding
// lanes load as 0, which is finite.
template <size_t W, class F>
inline bool none_bad(size_t n, F bad) {
  size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    const uint8x16_t m = vorrq_u8(vorrq_u8(bad(i, Full{}), bad(i + W, Full{})),
                                  vorrq_u8(bad(i + 2 * W, Full{}), bad(i + 3 * W, Full{})));
    if (vmaxvq_u8(m)) return false;
  }
  for (; i + W <= n; i += W)
    if (vmaxvq_u8(bad(i, Full{}))) return false;
  return i == n || !vmaxvq_u8(bad(i, Part{n - i}));
}

bool all_finite_f16(const uint16_t* x, size_t n) {
  const uint16x8_t e = vdupq_n_u16(0x7c00);
  return none_bad<8>(n, [&](size_t i, auto t) {
    return vreinterpretq_u8_u16(vceqq_u16(vandq_u16(ld8h(x + i, t), e), e));
  });
}

bool all_finite_f32(const float* x, size_t n) {
  const uint32x4_t e = vdupq_n_u32(0x7f800000u);
  return none_bad<4>(n, [&](size_t i, auto t) {
    const uint32x4_t v = vreinterpretq_u32_f32(ld4f(x + i, t));
    return vreinterpretq_u8_u32(vceqq_u32(vandq_u32(v, e), e));
  });
}

bool all_finite_f64(const double* x, size_t n) {
  const uint64x2_t e = vdupq_n_u64(0x7ff0000000000000ull);
  return none_bad<2>(n, [&](size_t i, auto t) {
    const uint64x2_t v = vreinterpretq_u64_f64(ld2d(x + i, t));
    return vreinterpretq_u8_u64(vceqq_u64(vandq_u64(v, e), e));
  });
}

// ---------------------------------------------------------------- wave 2 ---
// Whole vectors (four per iteration), then the scalar reference body for
// the rest. No streaming stores on this tier.

void f64_to_f32(const double* src, float* dst, size_t n) {
  auto body = [&](size_t i, Full t) {
    st4f(dst + i, vcvt_high_f32_f64(vcvt_f32_f64(ld2d(src + i, t)), ld2d(src + i + 2, t)), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f64_to_f32(src, dst, i, e); };
  run<4>(0, n, Full{}, body, tail);
}

void f32_to_f64(const float* src, double* dst, size_t n) {
  auto body = [&](size_t i, Full t) {
    const float32x4_t f = ld4f(src + i, t);
    st2d(dst + i, vcvt_f64_f32(vget_low_f32(f)), t);
    st2d(dst + i + 2, vcvt_high_f64_f32(f), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f32_to_f64(src, dst, i, e); };
  run<4>(0, n, Full{}, body, tail);
}

void f16_to_f64(const uint16_t* src, double* dst, size_t n) {
  auto body = [&](size_t i, Full t) {
    const uint16x8_t h = ld8h(src + i, t);
    const float32x4_t lo = f16lo_to_f32(h), hi = f16hi_to_f32(h);
    st2d(dst + i, vcvt_f64_f32(vget_low_f32(lo)), t);
    st2d(dst + i + 2, vcvt_high_f64_f32(lo), t);
    st2d(dst + i + 4, vcvt_f64_f32(vget_low_f32(hi)), t);
    st2d(dst + i + 6, vcvt_high_f64_f32(hi), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::f16_to_f64(src, dst, i, e); };
  run<8>(0, n, Full{}, body, tail);
}

// Stats: lanes 2k, 2k+1 of the definition live in acc[k]; each block of 16
// elements adds one square to every lane. The largest |x| bit pattern is
// kept per vector position in mx[k] (as u64x2, u32x4 or u16x8 bits),
// reduced at the end.
struct StatsRegs {
  float64x2_t acc[8];
  uint64x2_t mx[4];
};

template <class U>
inline uint64_t hmax(uint64x2_t v) {
  U b[16 / sizeof(U)];
  std::memcpy(b, &v, sizeof v);
  uint64_t m = 0;
  for (U x : b)
    if (x > m) m = x;
  return m;
}

template <class E, class U, class Block, class Tail>
inline void stats_run(size_t n, Stats* out, Block& block, Tail& tail) {
  StatsRegs r;
  for (auto& a : r.acc) a = vdupq_n_f64(0.0);
  for (auto& m : r.mx) m = vdupq_n_u64(0);
  const size_t whole = n / 16 * 16;
  for (size_t i = 0; i < whole; i += 16) block(i, r);
  StatsAcc s;
  for (int k = 0; k < 8; ++k) vst1q_f64(s.lane + 2 * k, r.acc[k]);
  for (int k = 0; k < 4; ++k) {
    const uint64_t m = hmax<U>(r.mx[k]);
    if (m > s.max_abs) s.max_abs = m;
  }
  tail(whole, n, s);
  stats_finish<E>(s, out);
}

inline void add_sq(float64x2_t& acc, float64x2_t v) {
  acc = vaddq_f64(acc, vmulq_f64(v, v));
}

// No unsigned 64-bit max in Advanced SIMD: compare and select.
inline uint64x2_t max_abs64(uint64x2_t m, float64x2_t v) {
  const uint64x2_t a = vandq_u64(vreinterpretq_u64_f64(v), vdupq_n_u64(0x7fffffffffffffffull));
  return vbslq_u64(vcgtq_u64(a, m), a, m);
}

// 4 floats: |bits| into mx, squares (exact in double) into two lane vectors.
inline void stats_f32x4(float32x4_t v, float64x2_t& acc_lo, float64x2_t& acc_hi, uint64x2_t& mx) {
  const uint32x4_t a = vandq_u32(vreinterpretq_u32_f32(v), vdupq_n_u32(0x7fffffffu));
  mx = vreinterpretq_u64_u32(vmaxq_u32(vreinterpretq_u32_u64(mx), a));
  add_sq(acc_lo, vcvt_f64_f32(vget_low_f32(v)));
  add_sq(acc_hi, vcvt_high_f64_f32(v));
}

void stats_f16(const uint16_t* x, size_t n, Stats* out) {
  auto block = [&](size_t i, StatsRegs& r) {
    for (int k = 0; k < 2; ++k) {
      const uint16x8_t h = vld1q_u16(x + i + 8 * k);
      const uint16x8_t a = vandq_u16(h, vdupq_n_u16(0x7fff));
      r.mx[k] = vreinterpretq_u64_u16(vmaxq_u16(vreinterpretq_u16_u64(r.mx[k]), a));
      const float32x4_t lo = f16lo_to_f32(h), hi = f16hi_to_f32(h);
      const float32x4_t sq_lo = vmulq_f32(lo, lo), sq_hi = vmulq_f32(hi, hi);  // exact
      float64x2_t* acc = r.acc + 4 * k;
      acc[0] = vaddq_f64(acc[0], vcvt_f64_f32(vget_low_f32(sq_lo)));
      acc[1] = vaddq_f64(acc[1], vcvt_high_f64_f32(sq_lo));
      acc[2] = vaddq_f64(acc[2], vcvt_f64_f32(vget_low_f32(sq_hi)));
      acc[3] = vaddq_f64(acc[3], vcvt_high_f64_f32(sq_hi));
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<HalfBits>(x, i, e, s); };
  stats_run<HalfBits, uint16_t>(n, out, block, tail);
}

void stats_f32(const float* x, size_t n, Stats* out) {
  auto block = [&](size_t i, StatsRegs& r) {
    for (int k = 0; k < 4; ++k)
      stats_f32x4(vld1q_f32(x + i + 4 * k), r.acc[2 * k], r.acc[2 * k + 1], r.mx[k]);
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<F32Bits>(x, i, e, s); };
  stats_run<F32Bits, uint32_t>(n, out, block, tail);
}

void stats_sub_f32(const float* a, const float* b, size_t n, Stats* out) {
  auto block = [&](size_t i, StatsRegs& r) {
    for (int k = 0; k < 4; ++k) {
      const float32x4_t v = vsubq_f32(vld1q_f32(a + i + 4 * k), vld1q_f32(b + i + 4 * k));
      stats_f32x4(v, r.acc[2 * k], r.acc[2 * k + 1], r.mx[k]);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats_sub<F32Bits>(a, b, i, e, s); };
  stats_run<F32Bits, uint32_t>(n, out, block, tail);
}

void stats_f64(const double* x, size_t n, Stats* out) {
  auto block = [&](size_t i, StatsRegs& r) {
    for (int k = 0; k < 8; ++k) {
      const float64x2_t v = vld1q_f64(x + i + 2 * k);
      r.mx[k % 4] = max_abs64(r.mx[k % 4], v);
      add_sq(r.acc[k], v);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats<F64Bits>(x, i, e, s); };
  stats_run<F64Bits, uint64_t>(n, out, block, tail);
}

void stats_sub_f64(const double* a, const double* b, size_t n, Stats* out) {
  auto block = [&](size_t i, StatsRegs& r) {
    for (int k = 0; k < 8; ++k) {
      const float64x2_t v = vsubq_f64(vld1q_f64(a + i + 2 * k), vld1q_f64(b + i + 2 * k));
      r.mx[k % 4] = max_abs64(r.mx[k % 4], v);
      add_sq(r.acc[k], v);
    }
  };
  auto tail = [&](size_t i, size_t e, StatsAcc& s) { ref::stats_sub<F64Bits>(a, b, i, e, s); };
  stats_run<F64Bits, uint64_t>(n, out, block, tail);
}

void div_f32(const float* acc, float d, float* out, size_t n) {
  const float32x4_t dv = vdupq_n_f32(d);
  auto body = [&](size_t i, Full t) { st4f(out + i, vdivq_f32(ld4f(acc + i, t), dv), t); };
  auto tail = [&](size_t i, size_t e) { ref::div(acc, d, out, i, e); };
  run<4>(0, n, Full{}, body, tail);
}

void div_f64(const double* acc, double d, double* out, size_t n) {
  const float64x2_t dv = vdupq_n_f64(d);
  auto body = [&](size_t i, Full t) { st2d(out + i, vdivq_f64(ld2d(acc + i, t), dv), t); };
  auto tail = [&](size_t i, size_t e) { ref::div(acc, d, out, i, e); };
  run<2>(0, n, Full{}, body, tail);
}

void axpy_div_f32(float* r, float lr, const float* acc, float d, size_t n) {
  const float32x4_t lv = vdupq_n_f32(lr), dv = vdupq_n_f32(d);
  auto body = [&](size_t i, Full t) {
    const float32x4_t p = vmulq_f32(lv, vdivq_f32(ld4f(acc + i, t), dv));
    st4f(r + i, vaddq_f32(ld4f(r + i, t), p), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::axpy_div(r, lr, acc, d, i, e); };
  run<4>(0, n, Full{}, body, tail);
}

void axpy_div_f64(double* r, double lr, const double* acc, double d, size_t n) {
  const float64x2_t lv = vdupq_n_f64(lr), dv = vdupq_n_f64(d);
  auto body = [&](size_t i, Full t) {
    const float64x2_t p = vmulq_f64(lv, vdivq_f64(ld2d(acc + i, t), dv));
    st2d(r + i, vaddq_f64(ld2d(r + i, t), p), t);
  };
  auto tail = [&](size_t i, size_t e) { ref::axpy_div(r, lr, acc, d, i, e); };
  run<2>(0, n, Full{}, body, tail);
}

}  // namespace

extern const Kernels neon_kernels = {
    f32_to_f16,     f16_to_f32,    f64_to_f16,   sub_f32,        sub_f64,        sub_f32_to_f16,
    sub_f64_to_f16, axpy_f32,      axpy_f32_f16, axpy_f64,       acc_f64_f16,    acc_f64_f32,
    acc_f64_f64,    acc_f32_f16,   acc_f32_f32,  all_finite_f16, all_finite_f32, all_finite_f64,
    f64_to_f32,     f32_to_f64,    f16_to_f64,   stats_f16,      stats_f32,      stats_f64,
    stats_sub_f32,  stats_sub_f64, div_f32,      div_f64,        axpy_div_f32,   axpy_div_f64,
};

}  // namespace detail
}  // namespace ptth
