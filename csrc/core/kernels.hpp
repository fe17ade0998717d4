// Element kernels (float16 conversion, delta, axpy, accumulate, finiteness)
// behind a function table chosen once from the CPU's features, zlib-ng style:
// one source file per instruction set in simd/ (scalar.cpp is the reference),
// ISA flags set per file, so no vector instruction leaks into code that runs
// on every CPU.
//
// Numerics, identical in every tier:
// - f32->f16, f64->f16: round to nearest, ties to even, from the source value
//   directly (f64 is never rounded through f32 first); overflow gives +-inf
//   (65520 and above round to inf); subnormal halves are exact. Bit-identical
//   to NumPy's astype for every non-NaN input.
// - f16->f32 is exact.
// - Arithmetic is IEEE in the stated type, one rounding per operation, never
//   fused (kernel files build with -ffp-contract=off), so it matches NumPy's
//   separate multiply and add bit for bit. Arithmetic NaN results are NaN;
//   which operand's payload survives is the hardware's business.
// - The MXCSR/FPCR rounding mode is assumed to be the default (nearest) and
//   flush-to-zero off, as NumPy assumes.
// - On x86, outputs of 32 MiB or more (not the accumulators) are written with
//   non-temporal stores: they skip the cache, so convert in smaller pieces if
//   the result is consumed right away.
//
// NaN policy for the conversions (all tiers agree bit for bit; it is what
// F16C, AVX-512 and AArch64 FCVT do in hardware): a NaN stays NaN with its
// sign, keeps the top bits of its payload (f32->f16: payload >> 13,
// f64->f16: payload >> 42, f16->f32: payload << 13) and is always returned
// quiet, i.e. signaling NaNs are quieted by setting the top mantissa bit.
// NumPy (software conversion) keeps a signaling NaN signaling and turns a
// payload that truncates to zero into 0x7c01; for quiet NaNs (everything
// arithmetic produces) the results are identical to NumPy's.
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
};

const Kernels& kernels();                // the active tier's table
const Kernels& kernels_for(SimdTier);    // throws std::invalid_argument unless tier_available

}  // namespace ptth
