#include "core/simd/cpu.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define PTTH_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace ptth {
namespace cpu {
namespace {

#if defined(PTTH_X86)
struct Regs {
  uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(uint32_t leaf, uint32_t sub) {
  Regs r;
#if defined(_MSC_VER)
  int v[4];
  __cpuidex(v, static_cast<int>(leaf), static_cast<int>(sub));
  r.a = v[0], r.b = v[1], r.c = v[2], r.d = v[3];
#else
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
#endif
  return r;
}

// Only valid once CPUID reports OSXSAVE.
uint64_t xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  uint32_t lo, hi;
  // Inline asm so this file needs no -mxsave.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
#endif
}

Features detect() {
  Features f;
  const uint32_t max_leaf = cpuid(0, 0).a;
  if (max_leaf < 7) return f;
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = l1.c & (1u << 27), avx = l1.c & (1u << 28), f16c = l1.c & (1u << 29);
  if (!(osxsave && avx && f16c)) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;    // XMM | YMM
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  const Regs l7 = cpuid(7, 0);
  const bool avx2 = l7.b & (1u << 5);
  const bool avx512f = l7.b & (1u << 16), avx512dq = l7.b & (1u << 17);
  const bool avx512bw = l7.b & (1u << 30), avx512vl = l7.b & (1u << 31);
  f.avx2_f16c = ymm_state && avx2;
#if defined(PTTH_AVX512_EMULATED)
  // Only in the test build whose AVX-512 tier is SIMDe code (csrc/tests/simde).
  (void)zmm_state, (void)avx512f, (void)avx512dq, (void)avx512bw, (void)avx512vl;
  f.avx512 = f.avx2_f16c;
#else
  f.avx512 = f.avx2_f16c && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
#endif
  return f;
}
#else
Features detect() {
  Features f;
#if defined(__aarch64__) || defined(_M_ARM64)
  f.neon = true;  // Advanced SIMD and half<->single conversion are baseline on AArch64
#endif
  return f;
}
#endif

// Vector width order for PTTH_SIMD fallback.
int width_rank(SimdTier t) {
  switch (t) {
    case SimdTier::scalar: return 0;
    case SimdTier::neon: return 1;
    case SimdTier::avx2: return 2;
    case SimdTier::avx512: return 3;
  }
  return 0;
}

constexpr SimdTier kAllTiers[] = {SimdTier::scalar, SimdTier::avx2, SimdTier::avx512,
                                  SimdTier::neon};

bool parse_tier(const char* s, SimdTier* out) {
  for (SimdTier t : kAllTiers) {
    if (std::strcmp(s, tier_name(t)) == 0) {
      *out = t;
      return true;
    }
  }
  return false;
}

struct Selection {
  SimdTier tier;
  std::string note;
};

const Selection& selection() {
  static const Selection sel = [] {
    Selection s;
    s.tier = resolve_tier(std::getenv("PTTH_SIMD"), tier_available, &s.note);
    if (!s.note.empty()) std::fprintf(stderr, "ptth: %s\n", s.note.c_str());
    return s;
  }();
  return sel;
}

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

bool tier_compiled(SimdTier t) {
  switch (t) {
    case SimdTier::scalar: return true;
    case SimdTier::avx2:
#if defined(PTTH_HAVE_AVX2)
      return true;
#else
      return false;
#endif
    case SimdTier::avx512:
#if defined(PTTH_HAVE_AVX512)
      return true;
#else
      return false;
#endif
    case SimdTier::neon:
#if defined(PTTH_HAVE_NEON)
      return true;
#else
      return false;
#endif
  }
  return false;
}

SimdTier resolve_tier(const char* request, bool (*available)(SimdTier), std::string* note) {
  note->clear();
  SimdTier best = SimdTier::scalar;
  for (SimdTier t : kAllTiers)
    if (available(t) && width_rank(t) > width_rank(best)) best = t;
  if (request == nullptr || *request == '\0' || std::strcmp(request, "auto") == 0) return best;

  SimdTier want;
  if (!parse_tier(request, &want)) {
    *note = std::string("PTTH_SIMD=") + request +
            " is not one of auto|scalar|avx2|avx512|neon; using " + tier_name(best);
    return best;
  }
  if (available(want)) return want;
  SimdTier got = SimdTier::scalar;
  for (SimdTier t : kAllTiers)
    if (available(t) && width_rank(t) <= width_rank(want) && width_rank(t) > width_rank(got))
      got = t;
  *note = std::string("PTTH_SIMD=") + request + " is not available on this " +
          (tier_compiled(want) ? "CPU" : "build") + "; using " + tier_name(got);
  return got;
}

}  // namespace cpu

const char* tier_name(SimdTier t) {
  switch (t) {
    case SimdTier::scalar: return "scalar";
    case SimdTier::avx2: return "avx2";
    case SimdTier::avx512: return "avx512";
    case SimdTier::neon: return "neon";
  }
  return "unknown";
}

bool tier_available(SimdTier t) {
  if (!cpu::tier_compiled(t)) return false;
  const cpu::Features& f = cpu::features();
  switch (t) {
    case SimdTier::scalar: return true;
    case SimdTier::avx2: return f.avx2_f16c;
    case SimdTier::avx512: return f.avx512;
    case SimdTier::neon: return f.neon;
  }
  return false;
}

SimdTier active_tier() {
  return cpu::selection().tier;
}

const char* simd_note() {
  return cpu::selection().note.c_str();
}

const Kernels& kernels_for(SimdTier t) {
  if (!tier_available(t))
    throw std::invalid_argument(std::string("SIMD tier not available: ") + tier_name(t));
  switch (t) {
#if defined(PTTH_HAVE_AVX2)
    case SimdTier::avx2: return detail::avx2_kernels;
#endif
#if defined(PTTH_HAVE_AVX512)
    case SimdTier::avx512: return detail::avx512_kernels;
#endif
#if defined(PTTH_HAVE_NEON)
    case SimdTier::neon: return detail::neon_kernels;
#endif
    default: return detail::scalar_kernels;
  }
}

const Kernels& kernels() {
  static const Kernels& k = kernels_for(active_tier());
  return k;
}

}  // namespace ptth
