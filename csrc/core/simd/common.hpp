// What every kernel tier shares, zlib-ng's arch/x86/*_tpl.h idea: the parts
// that do not depend on the instruction set, written once and included by
// scalar.cpp, avx2.cpp, avx512.cpp and neon.cpp, each compiled with its own
// ISA flags:
// - element access and the integer-only conversions of the reference tier;
// - the loop drivers (whole vectors four at a time, then a tail; the split
//   of a large output into a streamed body);
// - `ref::`, the scalar bodies of the wave-2 kernels over a range [i, n):
//   the scalar tier runs them over everything, the vector tiers over what
//   their vector loop leaves, so a tail is the reference by construction;
// - the stats lanes, their combining tree and the final Stats.
//
// Everything here has internal linkage (the anonymous namespace makes the
// functions, templates and their instantiations local to each object): an
// inline function with external linkage would be one symbol for the whole
// program, and the linker could keep the copy compiled with -mavx512f for
// every caller. After a change, `nm -C` on a tier's object must list only
// its table as a global symbol. No intrinsics and no #if on the ISA here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/kernels.hpp"

namespace ptth {
namespace detail {
namespace {

// ------------------------------------------------------- element access ---

// Through memcpy: pointers may be misaligned even for their element type,
// and a plain dereference would be UB (and lets the vectoriser assume
// alignment).
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

template <class To, class From>
inline To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To t;
  std::memcpy(&t, &v, sizeof t);
  return t;
}

// ---------------------------------------------- reference conversions ---
// Integer arithmetic only, so the reference does not depend on the FPU; the
// NaN policy is kernels.hpp's (quiet, sign and top payload bits kept).

inline uint16_t half_from_f32(float f) {
  uint32_t x = bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // quiet the NaN, keep the payload's top 10 bits
    if (x == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
  }
  if (x >= 0x47800000u) return sign | 0x7c00u;  // >= 65536
  if (x >= 0x38800000u) {                       // >= 2^-14: normal half
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

inline float f32_from_half(uint16_t h) {
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
  return bit_cast<float>(x);
}

inline uint16_t half_from_f64(double d) {
  uint64_t x = bit_cast<uint64_t>(d);
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

// Round to nearest even; 2^128 - 2^103 and above round to inf; NaN payload >> 29.
inline float f32_from_f64(double d) {
  uint64_t x = bit_cast<uint64_t>(d);
  const uint32_t sign = static_cast<uint32_t>(x >> 32) & 0x80000000u;
  x &= 0x7fffffffffffffffull;
  if (x >= 0x7ff0000000000000ull) {
    if (x == 0x7ff0000000000000ull) return bit_cast<float>(sign | 0x7f800000u);
    return bit_cast<float>(sign | 0x7fc00000u | static_cast<uint32_t>((x >> 29) & 0x7fffffu));
  }
  const uint64_t e = x >> 52;
  if (e >= 1151) return bit_cast<float>(sign | 0x7f800000u);  // >= 2^128
  if (e >= 897) {                                             // >= 2^-126: normal float
    // As in half_from_f32: rebias, round the 29 dropped bits, let a carry
    // roll into the exponent (and past FLT_MAX into inf).
    uint64_t m = x - (uint64_t(896) << 52);
    m += ((uint64_t(1) << 28) - 1) + ((m >> 29) & 1u);
    return bit_cast<float>(sign | static_cast<uint32_t>(m >> 29));
  }
  if (e < 873) return bit_cast<float>(sign);  // < 2^-150; the tie at 2^-150 goes to 0 too
  // Subnormal float: units of 2^-149; the shift is 30..53.
  const uint64_t mant = (x & 0xfffffffffffffull) | (uint64_t(1) << 52);
  const uint64_t shift = 926 - e;
  uint64_t r = mant >> shift;
  const uint64_t rem = mant & ((uint64_t(1) << shift) - 1), halfway = uint64_t(1) << (shift - 1);
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
  return bit_cast<float>(sign | static_cast<uint32_t>(r));
}

// Exact; a NaN comes back quiet with its payload << 29.
inline double f64_from_f32(float f) {
  const uint32_t x = bit_cast<uint32_t>(f);
  const uint64_t sign = uint64_t(x & 0x80000000u) << 32;
  const uint32_t e = (x >> 23) & 0xffu;
  uint64_t m = x & 0x7fffffu;
  uint64_t r;
  if (e == 0xff) {
    r = sign | 0x7ff0000000000000ull | (m ? (uint64_t(1) << 51) | (m << 29) : 0u);
  } else if (e != 0) {
    r = sign | (uint64_t(e + 896u) << 52) | (m << 29);
  } else if (m == 0) {
    r = sign;
  } else {  // subnormal float: normal as a double
    uint64_t exp = 897;
    while (!(m & 0x800000u)) {
      m <<= 1;
      --exp;
    }
    r = sign | (exp << 52) | ((m & 0x7fffffu) << 29);
  }
  return bit_cast<double>(r);
}

// Exact; a NaN comes back quiet with its payload << 42 (as through f32).
inline double f64_from_half(uint16_t h) {
  return f64_from_f32(f32_from_half(h));
}

// ---------------------------------------------------------- loop drivers ---

// Tags a vector body receives: Full, a whole vector; Stream, a whole vector
// to a cache-line-aligned destination, stored non-temporally (loads treat it
// as Full); Part, the first r elements of a vector, moved through a
// zero-padded stack buffer (the AVX2 and NEON tails of the wave-1 kernels).
struct Full {};
struct Stream : Full {};
struct Part {
  size_t r;  // valid elements from the pointer on
};
inline Full skip(Full, size_t) {
  return {};
}
inline Part skip(Part t, size_t k) {
  return {t.r > k ? t.r - k : 0};
}

template <class V, class T>
inline V ld_part(const T* p, Part t) {
  constexpr size_t kLanes = sizeof(V) / sizeof(T);
  alignas(sizeof(V)) T buf[kLanes] = {};
  if (t.r) std::memcpy(buf, p, (t.r < kLanes ? t.r : kLanes) * sizeof(T));
  V v;
  std::memcpy(&v, buf, sizeof(V));
  return v;
}
template <class T, class V>
inline void st_part(T* p, V v, Part t) {
  constexpr size_t kLanes = sizeof(V) / sizeof(T);
  alignas(sizeof(V)) T buf[kLanes];
  std::memcpy(buf, &v, sizeof(V));
  if (t.r) std::memcpy(p, buf, (t.r < kLanes ? t.r : kLanes) * sizeof(T));
}

// f(i, tag) over whole vectors of W elements in [begin, end), four per
// iteration, then tail(i, end) once if anything is left.
template <size_t W, class Tag, class F, class Tail>
inline void run(size_t begin, size_t end, Tag tag, F& f, Tail& tail) {
  size_t i = begin;
  for (; i + 4 * W <= end; i += 4 * W) {
    f(i, tag);
    f(i + W, tag);
    f(i + 2 * W, tag);
    f(i + 3 * W, tag);
  }
  for (; i + W <= end; i += W) f(i, tag);
  if (i < end) tail(i, end);
}

// The tail as one more call of the vector body with a Part tag.
template <class F>
struct PartTail {
  F& f;
  void operator()(size_t i, size_t end) const { f(i, Part{end - i}); }
};

// Outputs at least this large bypass the cache (x86 tiers): they would not
// stay cached anyway, and non-temporal stores skip reading every line before
// writing it (about a quarter less memory traffic for a conversion).
constexpr size_t kStreamBytes = size_t(32) << 20;

// run() over [0, n) for a kernel writing dst, with the part of dst from its
// first cache-line boundary on streamed in whole vectors when dst is large
// and element-aligned. fence() orders the streamed stores before anything
// that follows (x86: sfence). Not for read-modify-write outputs such as
// accumulators, whose lines are read first anyway.
template <size_t W, class T, class F, class Tail, class Fence>
inline void run_to(T* dst, size_t n, F& f, Tail& tail, Fence fence) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(dst);
  if (n * sizeof(T) < kStreamBytes || a % sizeof(T) != 0) return run<W>(0, n, Full{}, f, tail);
  const size_t head = (64 - a % 64) % 64 / sizeof(T);
  const size_t body_end = head + (n - head) / W * W;
  run<W>(0, head, Full{}, f, tail);
  run<W>(head, body_end, Stream{}, f, tail);  // whole vectors only: no tail
  fence();
  run<W>(body_end, n, Full{}, f, tail);
}

// -------------------------------------------- stats: lanes and the tree ---

// The state of a stats kernel, kernels.hpp's definition made concrete: lane
// j sums the squares of the elements i with i % 16 == j, in increasing i;
// max_abs is the largest |x| bit pattern in x's own type, and since
// non-negative IEEE values order like their bits, every element is finite
// iff max_abs is below that type's infinity. A vector tier keeps the lanes
// in registers (lane j of the definition in a fixed register lane), spills
// them here after its loop over whole blocks of 16, and ref::stats adds the
// rest: an element's lane depends only on its index.
struct StatsAcc {
  double lane[16] = {};  // +0.0
  uint64_t max_abs = 0;
};

// The element types, by what the stats need of them.
struct HalfBits {
  using T = uint16_t;
  static constexpr uint64_t kInf = 0x7c00u;
  static uint64_t abs_bits(uint16_t h) { return h & 0x7fffu; }
  static double wide(uint16_t h) { return f64_from_half(h); }
  static double from_abs_bits(uint64_t b) { return f64_from_half(static_cast<uint16_t>(b)); }
};
struct F32Bits {
  using T = float;
  static constexpr uint64_t kInf = 0x7f800000u;
  static uint64_t abs_bits(float v) { return bit_cast<uint32_t>(v) & 0x7fffffffu; }
  static double wide(float v) { return double(v); }  // exact
  static double from_abs_bits(uint64_t b) {
    return double(bit_cast<float>(static_cast<uint32_t>(b)));
  }
};
struct F64Bits {
  using T = double;
  static constexpr uint64_t kInf = 0x7ff0000000000000ull;
  static uint64_t abs_bits(double v) { return bit_cast<uint64_t>(v) & 0x7fffffffffffffffull; }
  static double wide(double v) { return v; }
  static double from_abs_bits(uint64_t b) { return bit_cast<double>(b); }
};

template <class E>
inline void stats_add(StatsAcc& s, size_t i, typename E::T v) {
  const uint64_t a = E::abs_bits(v);
  if (a > s.max_abs) s.max_abs = a;
  const double w = E::wide(v);
  s.lane[i % 16] += w * w;  // the square: one rounding for f64, exact for f16/f32
}

// ((((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)))+(((l8+l9)+(l10+l11))+((l12+l13)+(l14+l15))))
inline double sum_lanes(const double* l) {
  const double q0 = (l[0] + l[1]) + (l[2] + l[3]), q1 = (l[4] + l[5]) + (l[6] + l[7]);
  const double q2 = (l[8] + l[9]) + (l[10] + l[11]), q3 = (l[12] + l[13]) + (l[14] + l[15]);
  return (q0 + q1) + (q2 + q3);
}

template <class E>
inline void stats_finish(const StatsAcc& s, Stats* out) {
  out->finite = s.max_abs < E::kInf;
  out->sumsq = sum_lanes(s.lane);
  out->maxabs = E::from_abs_bits(s.max_abs);
}

// --------------------------------------- ref: scalar bodies over [i, n) ---

namespace ref {

inline void f64_to_f32(const double* src, float* dst, size_t i, size_t n) {
  for (; i < n; ++i) store(dst, i, f32_from_f64(load(src, i)));
}
inline void f32_to_f64(const float* src, double* dst, size_t i, size_t n) {
  for (; i < n; ++i) store(dst, i, f64_from_f32(load(src, i)));
}
inline void f16_to_f64(const uint16_t* src, double* dst, size_t i, size_t n) {
  for (; i < n; ++i) store(dst, i, f64_from_half(load(src, i)));
}

template <class E>
inline void stats(const typename E::T* x, size_t i, size_t n, StatsAcc& s) {
  for (; i < n; ++i) stats_add<E>(s, i, load(x, i));
}
template <class E>
inline void stats_sub(const typename E::T* a, const typename E::T* b, size_t i, size_t n,
                      StatsAcc& s) {
  using T = typename E::T;
  for (; i < n; ++i) stats_add<E>(s, i, T(load(a, i) - load(b, i)));  // rounded in T
}

// A true division (not a multiply by 1/d), then for axpy_div a multiply and
// an add: three roundings, never fused (-ffp-contract=off on every tier).
template <class T>
inline void div(const T* acc, T d, T* out, size_t i, size_t n) {
  for (; i < n; ++i) store(out, i, T(load(acc, i) / d));
}
template <class T>
inline void axpy_div(T* r, T lr, const T* acc, T d, size_t i, size_t n) {
  for (; i < n; ++i) {
    const T q = load(acc, i) / d;
    const T p = lr * q;
    store(r, i, T(load(r, i) + p));
  }
}

}  // namespace ref

}  // namespace
}  // namespace detail
}  // namespace ptth
