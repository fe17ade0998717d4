// Element kernels (float16/32/64 conversion, delta, axpy, accumulate,
// finiteness, validation stats, fused mean/apply outputs) behind a function table chosen once from
// the CPU's features, zlib-ng style: one source file per instruction set in simd/ (scalar.cpp is
// the reference), ISA flags set per file, so no vector instruction leaks into code that runs on
// every CPU.
//
// Numerics, identical in every tier:
// - f32->f16, f64->f16: round to nearest, ties to even, from the source value
//   directly (f64 is never rounded through f32 first); overflow gives +-inf
//   (65520 and above round to inf); subnormal halves are exact. Bit-identical
//   to NumPy's astype for every non-NaN input.
// - f16->f32, f16->f64 and f32->f64 are exact.
// - f64->f32 rounds to nearest, ties to even; 2^128 - 2^103 and above (the
//   tie above FLT_MAX) give +-inf; results below FLT_MIN are subnormal or
//   zero, never flushed. Bit-identical to NumPy's astype(float32).
// - Arithmetic is IEEE in the stated type, one rounding per operation, never
//   fused (kernel files build with -ffp-contract=off), so it matches NumPy's
//   separate multiply and add bit for bit. Arithmetic NaN results are NaN;
//   which operand's payload survives is the hardware's business.
// - The MXCSR/FPCR rounding mode is assumed to be the default (nearest),
//   flush-to-zero and denormals-are-zero off, and floating-point exceptions
//   masked, as NumPy assumes. No kernel traps or reports anything: an
//   overflow, a division by zero or a NaN is just its IEEE result (the
//   sticky status flags may be set; nothing in ptth reads them).
// - On x86, outputs of 32 MiB or more (not the accumulators) are written with
//   non-temporal stores: they skip the cache, so convert in smaller pieces if
//   the result is consumed right away.
//
// NaN policy for the conversions (all tiers agree bit for bit; it is what
// F16C, AVX-512, SSE/AVX cvtpd2ps/cvtps2pd and AArch64 FCVT do in hardware):
// a NaN stays NaN with its sign, keeps the top bits of its payload
// (f32->f16: payload >> 13, f64->f16: payload >> 42, f64->f32: payload >>
// 29, f16->f32: payload << 13, f16->f64: payload << 42, f32->f64: payload
// << 29) and is always returned quiet, i.e. signaling NaNs are quieted by
// setting the top mantissa bit. For f64<->f32 that is NumPy's result too
// (its casts are the hardware's). For float16 NumPy converts in software:
// it keeps a signaling NaN signaling and turns a payload that truncates to
// zero into 0x7c01; for quiet NaNs (everything arithmetic produces) the
// results are identical to NumPy's.
//
// Stats (the validation pass: finiteness, L2 norm and largest magnitude in
// one read of the data). For n elements x[0..n) -- the values themselves,
// or for stats_sub_* the differences a[i] - b[i] rounded in their type:
// - finite is false iff some element is NaN or +-inf. Then sumsq and maxabs
//   are unspecified (deterministic, but not part of the contract).
// - maxabs = max |x[i]| as a double, exact; +0.0 when n == 0 or all zeros.
// - sumsq is deterministic and identical in every tier. Each element is
//   widened to double and squared (exact for f16 and f32, one rounding for
//   f64). The squares go to 16 lanes: lane j (0..15) sums the squares of
//   the elements with i % 16 == j in increasing i, starting from +0.0, one
//   rounding per addition. The lanes are then combined as
//     ((((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)))+
//      (((l8+l9)+(l10+l11))+((l12+l13)+(l14+l15))))
//   With NumPy: e = x (or a - b, in their own dtype); sq =
//   e.astype(np.float64) ** 2, padded with zeros to 16*m and reshaped to
//   (m, 16); lanes = np.add.reduce(rows, axis=0), which on a C-contiguous
//   array adds the rows one after the other (checked bit for bit against
//   these kernels with NumPy 2.4, up to 3M elements; that order is NumPy's
//   behaviour, not its documented contract, so a loop `lanes = lanes + row`
//   is the safe form; np.sum of the flat array is pairwise and does not
//   match); then the tree. Padding adds +0.0, which changes no lane.
// - sumsq may be +inf with finite true when the squares of finite f64
//   values overflow (|x| > ~1.3e154): the caller decides.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ptth {

enum class SimdTier { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

const char* tier_name(SimdTier);  // "scalar", "avx2", "avx512", "neon"
bool tier_available(SimdTier);    // compiled in AND supported by this CPU/OS
// Chosen once: the best available tier, or PTTH_SIMD=scalar|avx2|avx512|neon
// (auto or unset: best). A forced tier that is not available falls back to
// the best available tier of no greater vector width (scalar < neon < avx2 <
// avx512) and simd_note() says so.
SimdTier active_tier();
// Empty unless PTTH_SIMD could not be honoured exactly; then a one-line
// explanation (also printed once to stderr when the choice is made).
const char* simd_note();

// The defaults are the stats of no elements, so a running total can start
// from Stats{} (still an aggregate: Stats{finite, sumsq, maxabs} works).
struct Stats {
  bool finite = true;   // no NaN, no +-inf
  double sumsq = 0.0;   // the 16-lane sum of squares defined above
  double maxabs = 0.0;  // max |x|, exact
};

struct Kernels {
  // All pointers may be unaligned (even to their element size); n is an
  // element count; src/dst never overlap, except that `out` may alias an
  // input of the elementwise ops exactly (out == a or out == b).
  // float16 data is passed as uint16_t bit patterns, host (little-endian) order.
  void (*f32_to_f16)(const float* src, uint16_t* dst, size_t n);
  void (*f16_to_f32)(const uint16_t* src, float* dst, size_t n);
  void (*f64_to_f16)(const double* src, uint16_t* dst, size_t n);
  void (*sub_f32)(const float* a, const float* b, float* out, size_t n);  // a - b
  void (*sub_f64)(const double* a, const double* b, double* out, size_t n);
  // f16(a - b): the difference in the source type, rounded once to f16
  void (*sub_f32_to_f16)(const float* a, const float* b, uint16_t* out, size_t n);
  void (*sub_f64_to_f16)(const double* a, const double* b, uint16_t* out, size_t n);
  // out = base + scale*x, two roundings
  void (*axpy_f32)(const float* base, float scale, const float* x, float* out, size_t n);
  void (*axpy_f32_f16)(const float* base, float scale, const uint16_t* x, float* out, size_t n);
  void (*axpy_f64)(const double* base, double scale, const double* x, double* out, size_t n);
  // acc[i] = acc[i] + (w * T(x[i])) in the accumulator's type T; x (exactly
  // widened to T) never overlaps acc
  void (*acc_f64_f16)(double* acc, double w, const uint16_t* x, size_t n);
  void (*acc_f64_f32)(double* acc, double w, const float* x, size_t n);
  void (*acc_f64_f64)(double* acc, double w, const double* x, size_t n);
  void (*acc_f32_f16)(float* acc, float w, const uint16_t* x, size_t n);
  void (*acc_f32_f32)(float* acc, float w, const float* x, size_t n);
  // true iff no element is NaN or inf
  bool (*all_finite_f16)(const uint16_t* x, size_t n);
  bool (*all_finite_f32)(const float* x, size_t n);
  bool (*all_finite_f64)(const double* x, size_t n);

  // ---- wave 2 (members are appended: the tables initialise in this order)
  void (*f64_to_f32)(const double* src, float* dst, size_t n);
  void (*f32_to_f64)(const float* src, double* dst, size_t n);
  void (*f16_to_f64)(const uint16_t* src, double* dst, size_t n);
  // The stats above over x, or over a[i] - b[i] rounded in that type.
  void (*stats_f16)(const uint16_t* x, size_t n, Stats* out);
  void (*stats_f32)(const float* x, size_t n, Stats* out);
  void (*stats_f64)(const double* x, size_t n, Stats* out);
  void (*stats_sub_f32)(const float* a, const float* b, size_t n, Stats* out);
  void (*stats_sub_f64)(const double* a, const double* b, size_t n, Stats* out);
  // out[i] = acc[i] / d, a true IEEE division (NumPy's acc / d, not a
  // multiply by 1/d); out may alias acc exactly.
  void (*div_f32)(const float* acc, float d, float* out, size_t n);
  void (*div_f64)(const double* acc, double d, double* out, size_t n);
  // r[i] = r[i] + (lr * (acc[i] / d)): divide, multiply, add, three
  // roundings, never fused. r is read and written in place (never streamed)
  // and does not overlap acc. For template + lr * acc / wsum in cache-sized
  // chunks: convert the template chunk into r, axpy_div, convert r out.
  void (*axpy_div_f32)(float* r, float lr, const float* acc, float d, size_t n);
  void (*axpy_div_f64)(double* r, double lr, const double* acc, double d, size_t n);
};

const Kernels& kernels();              // the active tier's table
const Kernels& kernels_for(SimdTier);  // throws std::invalid_argument unless tier_available

}  // namespace ptth
