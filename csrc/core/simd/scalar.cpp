// The reference tier: portable C++, integer bit manipulation for the
// conversions so the result does not depend on the FPU. Every SIMD tier is
// tested against this file. The element conversions and the wave-2 bodies
// (ref::) live in common.hpp, where the vector tiers take their tails from.
#include <cstring>

#include "core/simd/common.hpp"
#include "core/simd/cpu.hpp"

namespace ptth {
namespace detail {
namespace {

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

void f64_to_f32(const double* src, float* dst, size_t n) {
  ref::f64_to_f32(src, dst, 0, n);
}
void f32_to_f64(const float* src, double* dst, size_t n) {
  ref::f32_to_f64(src, dst, 0, n);
}
void f16_to_f64(const uint16_t* src, double* dst, size_t n) {
  ref::f16_to_f64(src, dst, 0, n);
}

template <class E>
void stats(const typename E::T* x, size_t n, Stats* out) {
  StatsAcc s;
  ref::stats<E>(x, 0, n, s);
  stats_finish<E>(s, out);
}

template <class E>
void stats_sub(const typename E::T* a, const typename E::T* b, size_t n, Stats* out) {
  StatsAcc s;
  ref::stats_sub<E>(a, b, 0, n, s);
  stats_finish<E>(s, out);
}

template <class T>
void div(const T* acc, T d, T* out, size_t n) {
  ref::div(acc, d, out, 0, n);
}

template <class T>
void axpy_div(T* r, T lr, const T* acc, T d, size_t n) {
  ref::axpy_div(r, lr, acc, d, 0, n);
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
    f64_to_f32,
    f32_to_f64,
    f16_to_f64,
    stats<HalfBits>,
    stats<F32Bits>,
    stats<F64Bits>,
    stats_sub<F32Bits>,
    stats_sub<F64Bits>,
    div<float>,
    div<double>,
    axpy_div<float>,
    axpy_div<double>,
};

}  // namespace detail
}  // namespace ptth
