// The reference tier: portable C++, integer bit manipulation for the
// conversions so the result does not depend on the FPU. Every SIMD tier is
// tested against this file.
#include <cstring>

#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

// Element access through memcpy: pointers may be misaligned even for their
// element type, and a plain dereference would be UB (and lets the vectoriser
// assume alignment).
template <class T>
inline T load(const T* p, size_t i) {
  T v;
  std::memcpy(&v, reinterpret_cast<const unsigned char*>(p) + i * sizeof(T), sizeof(T));
  return v;
}
template <class T>
inline void store(T* p, size_t i, T v) {
  std::memcpy(reinterpret_cast<unsigned char*>(p) + i * sizeof(T), &v, sizeof(T));
}

uint16_t half_from_f32(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // quiet the NaN, keep the payload's top 10 bits
    if (x == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
  }
  if (x >= 0x47800000u) return sign | 0x7c00u;  // >= 65536
  if (x >= 0x38800000u) {                        // >= 2^-14: normal half
    // Rebias in place, then round the 13 dropped bits to nearest even; a
    // carry rolls into the exponent and, past 65504, into inf.
    uint32_t m = x - (112u << 23);
    m += 0xfffu + ((m >> 13) & 1u);
    return static_cast<uint16_t>(sign | (m >> 13));
  }
  if (x < 0x33000000u) return sign;  // < 2^-25, ties at 2^-25 go to even (0) too
  // Subnormal half: units of 2^-24; the shift is 14..24.
  const uint32_t e = x >> 23;
  const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;
  uint32_t r = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

float f32_from_half(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  uint32_t x;
  if (e == 0x1f) {
    x = sign | 0x7f800000u | (m ? 0x400000u | (m << 13) : 0u);
  } else if (e != 0) {
    x = sign | ((e + 112u) << 23) | (m << 13);
  } else if (m == 0) {
    x = sign;
  } else {  // subnormal half: normalise
    uint32_t exp = 113;
    while (!(m & 0x400u)) {
      m <<= 1;
      --exp;
    }
    x = sign | (exp << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

uint16_t half_from_f64(double d) {
  uint64_t x;
  std::memcpy(&x, &d, 8);
  const uint16_t sign = static_cast<uint16_t>((x >> 48) & 0x8000u);
  x &= 0x7fffffffffffffffull;
  if (x >= 0x7ff0000000000000ull) {
    if (x == 0x7ff0000000000000ull) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 42) & 0x3ffu));
  }
  if (x >= 0x40f0000000000000ull) return sign | 0x7c00u;  // >= 65536
  const uint64_t e = x >> 52;
  if (e >= 1009) {  // >= 2^-14
    uint64_t m = x - (uint64_t(1008) << 52);
    m += ((uint64_t(1) << 41) - 1) + ((m >> 42) & 1u);
    return static_cast<uint16_t>(sign | (m >> 42));
  }
  if (e < 998) return sign;  // < 2^-25
  const uint64_t mant = (x & 0xfffffffffffffull) | (uint64_t(1) << 52);
  const uint64_t shift = 1051 - e;  // 43..53
  uint64_t r = mant >> shift;
  const uint64_t rem = mant & ((uint64_t(1) << shift) - 1), halfway = uint64_t(1) << (shift - 1);
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

void f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) store(dst, i, half_from_f32(load(src, i)));
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) store(dst, i, f32_from_half(load(src, i)));
}

void f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) store(dst, i, half_from_f64(load(src, i)));
}

template <class T>
void sub(const T* a, const T* b, T* out, size_t n) {
  for (size_t i = 0; i < n; ++i) store(out, i, T(load(a, i) - load(b, i)));
}

void sub_f32_to_f16(const float* a, const float* b, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) store(out, i, half_from_f32(load(a, i) - load(b, i)));
}

void sub_f64_to_f16(const double* a, const double* b, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) store(out, i, half_from_f64(load(a, i) - load(b, i)));
}

template <class T>
void axpy(const T* base, T scale, const T* x, T* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const T p = scale * load(x, i);
    store(out, i, T(load(base, i) + p));
  }
}

void axpy_f32_f16(const float* base, float scale, const uint16_t* x, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float p = scale * f32_from_half(load(x, i));
    store(out, i, load(base, i) + p);
  }
}

template <class A, class X>
void acc(A* acc, A w, const X* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const A p = w * A(load(x, i));
    store(acc, i, A(load(acc, i) + p));
  }
}

template <class A>
void acc_f16(A* acc, A w, const uint16_t* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const A p = w * A(f32_from_half(load(x, i)));
    store(acc, i, A(load(acc, i) + p));
  }
}

// Finiteness by bits: immune to -ffast-math and cheap to vectorise.
template <class T, class U, U kExp>
bool all_finite(const T* x, size_t n) {
  static_assert(sizeof(T) == sizeof(U), "bit width");
  U bad = 0;
  for (size_t i = 0; i < n; ++i) {
    U u;
    std::memcpy(&u, reinterpret_cast<const unsigned char*>(x) + i * sizeof(U), sizeof(U));
    bad |= U((u & kExp) == kExp);
  }
  return bad == 0;
}

}  // namespace

extern const Kernels scalar_kernels = {
    f32_to_f16,
    f16_to_f32,
    f64_to_f16,
    sub<float>,
    sub<double>,
    sub_f32_to_f16,
    sub_f64_to_f16,
    axpy<float>,
    axpy_f32_f16,
    axpy<double>,
    acc_f16<double>,
    acc<double, float>,
    acc<double, double>,
    acc_f16<float>,
    acc<float, float>,
    all_finite<uint16_t, uint16_t, 0x7c00u>,
    all_finite<float, uint32_t, 0x7f800000u>,
    all_finite<double, uint64_t, 0x7ff0000000000000ull>,
};

}  // namespace detail
}  // namespace ptth
