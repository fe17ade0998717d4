// CPU feature detection and the per-tier kernel tables (internal to the core;
// the public face is kernels.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "core/kernels.hpp"

namespace ptth {
namespace cpu {

// What this CPU *and* OS support (xgetbv confirms the OS saves YMM/ZMM state).
struct Features {
  bool avx2_f16c = false;  // AVX + AVX2 + F16C, YMM state enabled
  bool avx512 = false;     // the above + AVX-512 F/BW/VL/DQ, ZMM + opmask state enabled
  bool neon = false;       // AArch64 Advanced SIMD (always there on AArch64)
};
const Features& features();

bool tier_compiled(SimdTier);

// PTTH_SIMD resolution as a pure function, so tests can drive it.
// `request` is the variable's value (nullptr when unset); `available` says
// which tiers may be chosen. `note` receives an explanation when the request
// was not honoured exactly, and is cleared otherwise.
SimdTier resolve_tier(const char* request, bool (*available)(SimdTier), std::string* note);

}  // namespace cpu

namespace detail {

// One table per tier, constant-initialised in its own file; only the tiers
// kernels.cmake compiled in (PTTH_HAVE_<TIER> on cpu.cpp) are referenced.
extern const Kernels scalar_kernels;
extern const Kernels avx2_kernels;
extern const Kernels avx512_kernels;
extern const Kernels neon_kernels;

}  // namespace detail
}  // namespace ptth
