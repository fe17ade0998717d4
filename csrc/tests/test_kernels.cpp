// Every available SIMD tier against an independent oracle (and so against
// the scalar reference, which is one of the tiers):
// - f32->f16 over all 2^32 float bit patterns, f16->f32 over all 65,536 halves;
// - f64->f16 over every half's neighbourhood, including the values where
//   rounding through float32 first would be wrong;
// - the arithmetic kernels on random and special values, every length
//   0..67 (and a few long ones), pointers misaligned by 0..3 bytes, outputs
//   aliasing inputs, and guard bytes around every output;
// - dispatch: tier names, availability, PTTH_SIMD resolution.
//
// The rounding oracle does not share code with the kernels: it decodes every
// half to a double and rounds by searching the sorted half values (ties to
// even), so it only relies on double arithmetic being exact on these values.
//
// Usage: test_kernels [--quick]   (--quick samples the 2^32 sweep and skips
// the 32 MiB outputs)
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/simd/cpu.hpp"
#include "core/kernels.hpp"

using ptth::Kernels;
using ptth::SimdTier;

namespace {

int g_failures = 0;
int g_reported = 0;

void fail(const char* file, int line, const std::string& what) {
  ++g_failures;
  if (++g_reported <= 40) std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  if (g_reported == 40) std::fprintf(stderr, "(further failures not printed)\n");
}

#if defined(__GNUC__)
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
#endif
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

#define CHECK(cond)                                    \
  do {                                                 \
    if (!(cond)) fail(__FILE__, __LINE__, #cond);      \
  } while (0)
#define CHECK_MSG(cond, ...)                                \
  do {                                                      \
    if (!(cond)) fail(__FILE__, __LINE__, fmt(__VA_ARGS__)); \
  } while (0)

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class To, class From>
To bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "size");
  To t;
  std::memcpy(&t, &v, sizeof t);
  return t;
}

const SimdTier kTiers[] = {SimdTier::scalar, SimdTier::avx2, SimdTier::avx512, SimdTier::neon};

std::vector<SimdTier> available_tiers() {
  std::vector<SimdTier> v;
  for (SimdTier t : kTiers)
    if (ptth::tier_available(t)) v.push_back(t);
  return v;
}

// ---------------------------------------------------------------- oracle ---

// Value of a non-NaN half, exactly, as a double.
double half_value(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v;
  if (e == 0x1f)
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0)
    v = std::ldexp(double(m), -24);
  else
    v = std::ldexp(double(1024 + m), e - 25);
  return (h & 0x8000) ? -v : v;
}

struct HalfTable {
  // val[k] for codes 0..0x7bff and a virtual 0x7c00 worth 2^16 (inf),
  // mid[k] = (val[k] + val[k+1]) / 2, exact in double.
  std::vector<double> val, mid;
  HalfTable() {
    for (uint32_t k = 0; k <= 0x7bff; ++k) val.push_back(half_value(uint16_t(k)));
    val.push_back(65536.0);
    for (size_t k = 0; k + 1 < val.size(); ++k) mid.push_back((val[k] + val[k + 1]) / 2);
  }
};
const HalfTable& table() {
  static const HalfTable t;
  return t;
}

// The spec'd NaN results (kernels.hpp): quiet, sign and top payload bits kept.
uint16_t nan_half_from_f32(uint32_t x) { return uint16_t(((x >> 16) & 0x8000) | 0x7e00 | ((x >> 13) & 0x3ff)); }
uint16_t nan_half_from_f64(uint64_t x) { return uint16_t(((x >> 48) & 0x8000) | 0x7e00 | ((x >> 42) & 0x3ff)); }

// Nearest half to a non-NaN double, ties to even, by search.
uint16_t oracle_half(double v) {
  const HalfTable& t = table();
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  size_t k = size_t(std::lower_bound(t.mid.begin(), t.mid.end(), a) - t.mid.begin());
  if (k < t.mid.size() && t.mid[k] == a && (k & 1)) ++k;  // tie: the even code
  return uint16_t(sign | k);
}

uint16_t oracle_half_f64(double v) {
  return std::isnan(v) ? nan_half_from_f64(bits<uint64_t>(v)) : oracle_half(v);
}

bool is_nan_half(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

// Equal bits, or both NaN (arithmetic NaN payloads are the hardware's).
bool same(float a, float b) { return bits<uint32_t>(a) == bits<uint32_t>(b) || (std::isnan(a) && std::isnan(b)); }
bool same(double a, double b) { return bits<uint64_t>(a) == bits<uint64_t>(b) || (std::isnan(a) && std::isnan(b)); }
bool same(uint16_t a, uint16_t b) { return a == b || (is_nan_half(a) && is_nan_half(b)); }
uint64_t show(float v) { return bits<uint32_t>(v); }
uint64_t show(double v) { return bits<uint64_t>(v); }
uint64_t show(uint16_t v) { return v; }

// ------------------------------------------------------------ generators ---

std::mt19937_64 g_rng(0x5eed1234abcdull);

float gen_f32() {
  static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, -65520.0f, 65519.996f,
                                   6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f,
                                   1e-45f, 1.1754942e-38f, 3.4028235e38f,
                                   std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity(),
                                   std::numeric_limits<float>::quiet_NaN(), bits<float>(0x7f800001u),
                                   bits<float>(0xffc12345u)};
  const uint64_t r = g_rng();
  switch (r % 10) {
    case 0:
    case 1: return specials[(r >> 8) % (sizeof specials / sizeof *specials)];
    case 2:
    case 3: return bits<float>(uint32_t(r >> 32));
    default: {  // log-uniform over half's range and a bit beyond
      const int e = int((r >> 8) % 50) - 30;
      const double m = double((r >> 16) & 0xffffff) / double(1 << 24) + 1.0;
      return float(((r >> 60) & 1 ? -m : m) * std::ldexp(1.0, e));
    }
  }
}

double gen_f64() {
  const uint64_t r = g_rng();
  switch (r % 10) {
    case 0: return double(gen_f32());
    case 1:
    case 2: return bits<double>(g_rng());
    default: {
      const int e = int((r >> 8) % 50) - 30;
      const double m = double(g_rng() >> 11) * 0x1p-53 + 1.0;
      return ((r >> 60) & 1 ? -m : m) * std::ldexp(1.0, e);
    }
  }
}

uint16_t gen_f16() {
  const uint64_t r = g_rng();
  static const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff,
                                      0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe01, 0x3c00};
  if (r % 8 == 0) return specials[(r >> 8) % (sizeof specials / sizeof *specials)];
  return uint16_t(r >> 32);
}

// A finite value of each type, for all_finite.
template <class T>
T gen_finite();
template <>
float gen_finite<float>() {
  float v;
  do v = gen_f32(); while (!std::isfinite(v));
  return v;
}
template <>
double gen_finite<double>() {
  double v;
  do v = gen_f64(); while (!std::isfinite(v));
  return v;
}
template <>
uint16_t gen_finite<uint16_t>() {
  uint16_t v;
  do v = gen_f16(); while ((v & 0x7c00) == 0x7c00);
  return v;
}

// --------------------------------------------------------------- buffers ---

// n elements of T at a chosen byte misalignment, with guard bytes around.
template <class T>
struct Buf {
  static constexpr size_t kGuard = 80;
  static constexpr unsigned char kFill = 0xA5;
  std::vector<unsigned char> raw;
  size_t off, n;
  Buf(size_t n_, size_t misalign) : raw(kGuard + n_ * sizeof(T) + kGuard + 64, kFill), n(n_) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(raw.data()) + kGuard;
    off = kGuard + ((64 - base % 64) % 64) + misalign;  // 64-aligned + misalign
  }
  T* ptr() { return reinterpret_cast<T*>(raw.data() + off); }
  void put(const std::vector<T>& v) {
    if (v.size() != n) std::abort();
    if (n) std::memcpy(raw.data() + off, v.data(), n * sizeof(T));
  }
  std::vector<T> get() const {
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), raw.data() + off, n * sizeof(T));
    return v;
  }
  bool guards_intact() const {
    for (size_t i = 0; i < raw.size(); ++i)
      if ((i < off || i >= off + n * sizeof(T)) && raw[i] != kFill) return false;
    return true;
  }
};

// ------------------------------------------------------- f16 <-> f32 ---

void test_f16_to_f32_exhaustive(const std::vector<SimdTier>& tiers) {
  std::vector<uint16_t> src(65536);
  std::vector<uint32_t> want(65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    src[h] = uint16_t(h);
    if (is_nan_half(uint16_t(h)))
      want[h] = ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13);
    else
      want[h] = bits<uint32_t>(float(half_value(uint16_t(h))));  // exact
  }
  for (SimdTier t : tiers) {
    std::vector<float> out(65536);
    ptth::kernels_for(t).f16_to_f32(src.data(), out.data(), src.size());
    for (uint32_t h = 0; h < 65536; ++h)
      CHECK_MSG(bits<uint32_t>(out[h]) == want[h], "%s f16_to_f32(0x%04x) = 0x%08x, want 0x%08x",
                ptth::tier_name(t), h, bits<uint32_t>(out[h]), want[h]);
  }
}

// All 2^32 patterns (or every 257th with --quick), chunked. The oracle walks
// the sorted half midpoints alongside the monotonically increasing
// magnitudes, which keeps it O(1) per pattern.
void test_f32_to_f16_exhaustive(const std::vector<SimdTier>& tiers, bool quick) {
  const HalfTable& tab = table();
  const size_t kChunk = size_t(1) << 24;  // 32 MiB of output: the x86 tiers stream it
  const uint64_t step = quick ? 257 : 1;
  std::vector<float> src(kChunk);
  std::vector<uint16_t> want(kChunk), got(kChunk);
  std::vector<double> tier_time(tiers.size(), 0.0);
  double oracle_time = 0;
  size_t k = 0;          // current half code (positive), oracle state
  uint32_t prev_mag = 0;
  uint64_t x = 0, checked = 0;
  while (x <= 0xffffffffull) {
    const double t0 = now();
    size_t m = 0;
    for (; m < kChunk && x <= 0xffffffffull; ++m, x += step) {
      const uint32_t u = uint32_t(x);
      src[m] = bits<float>(u);
      const uint32_t mag = u & 0x7fffffffu;
      if (mag > 0x7f800000u) {
        want[m] = nan_half_from_f32(u);
        continue;
      }
      if (mag < prev_mag) k = 0;  // crossed into the negative half
      prev_mag = mag;
      const double v = double(bits<float>(mag));
      while (k < tab.mid.size() && (v > tab.mid[k] || (v == tab.mid[k] && (k & 1)))) ++k;
      want[m] = uint16_t(((u >> 16) & 0x8000u) | k);
    }
    oracle_time += now() - t0;
    checked += m;
    for (size_t ti = 0; ti < tiers.size(); ++ti) {
      const double t1 = now();
      ptth::kernels_for(tiers[ti]).f32_to_f16(src.data(), got.data(), m);
      tier_time[ti] += now() - t1;
      if (std::memcmp(got.data(), want.data(), m * 2) != 0) {
        for (size_t j = 0; j < m; ++j)
          CHECK_MSG(got[j] == want[j], "%s f32_to_f16(0x%08x) = 0x%04x, want 0x%04x",
                    ptth::tier_name(tiers[ti]), bits<uint32_t>(src[j]), got[j], want[j]);
      }
    }
  }
  CHECK(checked == (quick ? (0x100000000ull + step - 1) / step : 0x100000000ull));
  std::printf("  f32_to_f16 sweep: %" PRIu64 " patterns, oracle %.1fs", checked, oracle_time);
  for (size_t ti = 0; ti < tiers.size(); ++ti)
    std::printf(", %s %.2fs", ptth::tier_name(tiers[ti]), tier_time[ti]);
  std::printf("\n");
}

// Spot checks whose answers are known from NumPy, independent of the oracle.
void test_known_values(const std::vector<SimdTier>& tiers) {
  struct Case {
    uint32_t f;
    uint16_t h;
  };
  const Case cases[] = {
      {0x477fe000, 0x7bff},  // 65504
      {0x477fefff, 0x7bff},  // just below 65520
      {0x477ff000, 0x7c00},  // 65520: tie, rounds to even = inf
      {0x47800000, 0x7c00},  // 65536
      {0x7f7fffff, 0x7c00},  // FLT_MAX
      {0x33000000, 0x0000},  // 2^-25: tie between 0 and the smallest subnormal -> 0
      {0x33000001, 0x0001},
      {0x33c00000, 0x0002},  // 1.5 * 2^-24: tie -> even (2)
      {0x387fc000, 0x03ff},  // largest subnormal
      {0x387fe000, 0x0400},  // tie between largest subnormal and smallest normal
      {0x3f800000, 0x3c00},
      {0xbf800000, 0xbc00},
      {0x3f801000, 0x3c00},  // 1 + 2^-11: tie -> even
      {0x3f803000, 0x3c02},  // 1 + 3*2^-11: tie -> even
      {0x80000001, 0x8000},  // -denormal -> -0
      {0x7f800000, 0x7c00},
      {0xff800000, 0xfc00},
      {0x7fc00000, 0x7e00},
      {0xffc00000, 0xfe00},
      {0x7f800001, 0x7e00},  // sNaN quieted (NumPy: 0x7c01)
      {0xffa00000, 0xff00},  // sNaN quieted (NumPy: 0xfd00)
  };
  for (SimdTier t : tiers) {
    for (const Case& c : cases) {
      uint16_t h;
      const float f = bits<float>(c.f);
      ptth::kernels_for(t).f32_to_f16(&f, &h, 1);
      CHECK_MSG(h == c.h, "%s f32_to_f16(0x%08x) = 0x%04x, want 0x%04x", ptth::tier_name(t), c.f, h, c.h);
    }
  }
}

// --------------------------------------------------------------- f64 -> f16 ---

std::vector<double> f64_cases() {
  const HalfTable& tab = table();
  std::vector<double> v;
  for (size_t k = 0; k < tab.mid.size(); ++k) {
    const double lo = tab.val[k], mid = tab.mid[k];
    for (double c : {lo, mid}) {
      v.push_back(c);
      v.push_back(std::nextafter(c, 0.0));
      v.push_back(std::nextafter(c, 1e300));
    }
    // Within a float32 ulp of the midpoint: rounding to float32 first would
    // land exactly on the midpoint and then tie to even.
    v.push_back(mid + mid * 0x1p-30);
    v.push_back(mid - mid * 0x1p-30);
    v.push_back(mid + mid * 0x1p-26);
    v.push_back(mid - mid * 0x1p-26);
  }
  for (int i = 0; i < 200000; ++i) v.push_back(gen_f64());
  const double inf = std::numeric_limits<double>::infinity();
  for (double c : {0.0, inf, std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
                   std::numeric_limits<double>::denorm_min(), 0x1p-25, 0x1p-24, 65520.0, 65536.0,
                   std::nextafter(65520.0, 0.0), std::nextafter(65520.0, inf), 3.5e38, 1e300})
    v.push_back(c);
  for (uint64_t nan : {0x7ff0000000000001ull, 0x7ff8000000000000ull, 0x7ff4000000000000ull,
                       0x7ff0040000000000ull, 0x7fffffffffffffffull, 0x7ff123456789abcdull})
    v.push_back(bits<double>(nan));
  const size_t n = v.size();
  for (size_t i = 0; i < n; ++i) v.push_back(-v[i]);
  return v;
}

void test_f64_to_f16(const std::vector<SimdTier>& tiers) {
  const std::vector<double> cases = f64_cases();
  std::vector<uint16_t> want(cases.size());
  size_t traps = 0;  // cases where going through float32 would be wrong
  for (size_t i = 0; i < cases.size(); ++i) {
    want[i] = oracle_half_f64(cases[i]);
    if (!std::isnan(cases[i]) && oracle_half(double(float(cases[i]))) != want[i]) ++traps;
  }
  CHECK_MSG(traps > 1000, "only %zu double-rounding traps in the f64 cases", traps);
  std::vector<double> zeros(cases.size(), 0.0);
  for (SimdTier t : tiers) {
    const Kernels& k = ptth::kernels_for(t);
    std::vector<uint16_t> got(cases.size());
    k.f64_to_f16(cases.data(), got.data(), cases.size());
    for (size_t i = 0; i < cases.size(); ++i)
      CHECK_MSG(got[i] == want[i], "%s f64_to_f16(%a = 0x%016" PRIx64 ") = 0x%04x, want 0x%04x",
                ptth::tier_name(t), cases[i], bits<uint64_t>(cases[i]), got[i], want[i]);
    // x - 0 == x, so the fused kernel must round the same way.
    k.sub_f64_to_f16(cases.data(), zeros.data(), got.data(), cases.size());
    for (size_t i = 0; i < cases.size(); ++i)
      CHECK_MSG(same(got[i], want[i]), "%s sub_f64_to_f16(%a, 0) = 0x%04x, want 0x%04x",
                ptth::tier_name(t), cases[i], got[i], want[i]);
  }
}

// ------------------------------------------------------ elementwise kernels ---

// Runs one kernel over every length 0..67 and a few long ones, at byte
// misalignments 0..3 of each operand, and checks each result element against
// `want`, the guards around the output, and that inputs are left alone.
// `run(a, b, out, n)`; `want(a_i, b_i)`. If inplace, out is a.
template <class A, class B, class O>
void check_op(const char* name, SimdTier tier, const std::function<void(const A*, const B*, O*, size_t)>& run,
              const std::function<O(A, B)>& want, const std::function<A()>& gen_a, const std::function<B()>& gen_b,
              bool inplace = false) {
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 67; ++n) lengths.push_back(n);
  for (size_t n : {255, 256, 257, 1000, 4099, 65537}) lengths.push_back(n);
  for (size_t n : lengths) {
    const bool long_run = n > 67;
    for (size_t oa = 0; oa < 4; ++oa)
      for (size_t ob = 0; ob < 4; ++ob)
        for (size_t oo = 0; oo < 4; ++oo) {
          if (long_run && !(oa == ob && ob == oo) && !(oa == 1 && ob == 2 && oo == 3)) continue;
          if (inplace && oo != 0) continue;
          std::vector<A> va(n);
          std::vector<B> vb(n);
          std::vector<O> expect(n);
          for (size_t i = 0; i < n; ++i) va[i] = gen_a(), vb[i] = gen_b();
          for (size_t i = 0; i < n; ++i) expect[i] = want(va[i], vb[i]);
          Buf<A> ba(n, oa);
          Buf<B> bb(n, ob);
          Buf<O> bo(n, oo);
          ba.put(va);
          bb.put(vb);
          O* out = inplace ? reinterpret_cast<O*>(ba.ptr()) : bo.ptr();
          run(ba.ptr(), bb.ptr(), out, n);
          std::vector<O> got(n);
          if (n) std::memcpy(got.data(), reinterpret_cast<const unsigned char*>(out), n * sizeof(O));
          for (size_t i = 0; i < n; ++i)
            CHECK_MSG(same(got[i], expect[i]), "%s %s n=%zu offsets=%zu,%zu,%zu [%zu]: got 0x%" PRIx64
                      " want 0x%" PRIx64, ptth::tier_name(tier), name, n, oa, ob, oo, i, show(got[i]),
                      show(expect[i]));
          CHECK_MSG(ba.guards_intact() && bb.guards_intact() && bo.guards_intact(),
                    "%s %s n=%zu offsets=%zu,%zu,%zu: wrote outside its output", ptth::tier_name(tier), name, n,
                    oa, ob, oo);
          if (!inplace && n) {
            CHECK_MSG(std::memcmp(ba.get().data(), va.data(), n * sizeof(A)) == 0, "%s %s modified an input",
                      ptth::tier_name(tier), name);
            CHECK_MSG(std::memcmp(bb.get().data(), vb.data(), n * sizeof(B)) == 0, "%s %s modified an input",
                      ptth::tier_name(tier), name);
          }
        }
  }
}

// out == a and out == b for the elementwise ops whose output type matches.
template <class T>
void check_alias(const char* name, SimdTier tier, const std::function<void(const T*, const T*, T*, size_t)>& run,
                 const std::function<T(T, T)>& want, const std::function<T()>& gen) {
  for (size_t n : {0, 1, 7, 31, 33, 67, 1001}) {
    for (int which = 0; which < 2; ++which) {
      std::vector<T> va(n), vb(n), expect(n);
      for (size_t i = 0; i < n; ++i) va[i] = gen(), vb[i] = gen(), expect[i] = want(va[i], vb[i]);
      Buf<T> ba(n, 1), bb(n, 3);
      ba.put(va);
      bb.put(vb);
      T* out = which == 0 ? ba.ptr() : bb.ptr();
      run(ba.ptr(), bb.ptr(), out, n);
      const std::vector<T> got = which == 0 ? ba.get() : bb.get();
      for (size_t i = 0; i < n; ++i)
        CHECK_MSG(same(got[i], expect[i]), "%s %s aliased out==%c n=%zu [%zu]", ptth::tier_name(tier), name,
                  which == 0 ? 'a' : 'b', n, i);
      CHECK(ba.guards_intact() && bb.guards_intact());
    }
  }
}

void test_elementwise(SimdTier tier) {
  const Kernels& k = ptth::kernels_for(tier);
  const std::function<float()> f32 = gen_f32;
  const std::function<double()> f64 = gen_f64;
  const std::function<uint16_t()> f16 = gen_f16;
  auto hf = [](uint16_t h) { return float(half_value(h)); };  // exact; NaN stays NaN

  check_op<float, float, uint16_t>(
      "f32_to_f16", tier, [&](const float* a, const float*, uint16_t* o, size_t n) { k.f32_to_f16(a, o, n); },
      [](float a, float) { return std::isnan(a) ? nan_half_from_f32(bits<uint32_t>(a)) : oracle_half(a); }, f32,
      f32);
  check_op<uint16_t, uint16_t, float>(
      "f16_to_f32", tier, [&](const uint16_t* a, const uint16_t*, float* o, size_t n) { k.f16_to_f32(a, o, n); },
      [&](uint16_t a, uint16_t) { return hf(a); }, f16, f16);
  check_op<double, double, uint16_t>(
      "f64_to_f16", tier, [&](const double* a, const double*, uint16_t* o, size_t n) { k.f64_to_f16(a, o, n); },
      [](double a, double) { return oracle_half_f64(a); }, f64, f64);

  const std::function<void(const float*, const float*, float*, size_t)> sub32 = k.sub_f32;
  const std::function<float(float, float)> want_sub32 = [](float a, float b) { return a - b; };
  check_op("sub_f32", tier, sub32, want_sub32, f32, f32);
  check_alias("sub_f32", tier, sub32, want_sub32, f32);

  const std::function<void(const double*, const double*, double*, size_t)> sub64 = k.sub_f64;
  const std::function<double(double, double)> want_sub64 = [](double a, double b) { return a - b; };
  check_op("sub_f64", tier, sub64, want_sub64, f64, f64);
  check_alias("sub_f64", tier, sub64, want_sub64, f64);

  check_op<float, float, uint16_t>(
      "sub_f32_to_f16", tier, k.sub_f32_to_f16,
      [](float a, float b) {
        const float d = a - b;
        return std::isnan(d) ? uint16_t(0x7e00) : oracle_half(d);
      },
      f32, f32);
  check_op<double, double, uint16_t>(
      "sub_f64_to_f16", tier, k.sub_f64_to_f16,
      [](double a, double b) {
        const double d = a - b;
        return std::isnan(d) ? uint16_t(0x7e00) : oracle_half(d);
      },
      f64, f64);

  const float scales32[] = {1.0f, -1.0f, 0.0f, -0.0f, 0.1f, 3.3e-5f, 1e30f, -2.5f,
                            std::numeric_limits<float>::infinity()};
  for (float s : scales32) {
    const std::function<void(const float*, const float*, float*, size_t)> axpy =
        [&](const float* b, const float* x, float* o, size_t n) { k.axpy_f32(b, s, x, o, n); };
    const std::function<float(float, float)> want = [&](float b, float x) {
      const float p = s * x;
      return b + p;
    };
    check_op("axpy_f32", tier, axpy, want, f32, f32);
    check_alias("axpy_f32", tier, axpy, want, f32);
    check_op<float, uint16_t, float>(
        "axpy_f32_f16", tier,
        [&](const float* b, const uint16_t* x, float* o, size_t n) { k.axpy_f32_f16(b, s, x, o, n); },
        [&](float b, uint16_t x) {
          const float p = s * hf(x);
          return b + p;
        },
        f32, f16);
    check_op<float, uint16_t, float>(
        "acc_f32_f16", tier, [&](const float* a, const uint16_t* x, float*, size_t n) {
          k.acc_f32_f16(const_cast<float*>(a), s, x, n);
        },
        [&](float a, uint16_t x) {
          const float p = s * hf(x);
          return a + p;
        },
        f32, f16, true);
    check_op<float, float, float>(
        "acc_f32_f32", tier,
        [&](const float* a, const float* x, float*, size_t n) { k.acc_f32_f32(const_cast<float*>(a), s, x, n); },
        [&](float a, float x) {
          const float p = s * x;
          return a + p;
        },
        f32, f32, true);
  }

  const double scales64[] = {1.0, -1.0, 0.0, 0.1, 1.0 / 3.0, 1e-300, 1e300, 7.0,
                             std::numeric_limits<double>::quiet_NaN()};
  for (double s : scales64) {
    const std::function<void(const double*, const double*, double*, size_t)> axpy =
        [&](const double* b, const double* x, double* o, size_t n) { k.axpy_f64(b, s, x, o, n); };
    const std::function<double(double, double)> want = [&](double b, double x) {
      const double p = s * x;
      return b + p;
    };
    check_op("axpy_f64", tier, axpy, want, f64, f64);
    check_alias("axpy_f64", tier, axpy, want, f64);
    check_op<double, uint16_t, double>(
        "acc_f64_f16", tier, [&](const double* a, const uint16_t* x, double*, size_t n) {
          k.acc_f64_f16(const_cast<double*>(a), s, x, n);
        },
        [&](double a, uint16_t x) {
          const double p = s * half_value(x);
          return a + p;
        },
        f64, f16, true);
    check_op<double, float, double>(
        "acc_f64_f32", tier,
        [&](const double* a, const float* x, double*, size_t n) { k.acc_f64_f32(const_cast<double*>(a), s, x, n); },
        [&](double a, float x) {
          const double p = s * double(x);
          return a + p;
        },
        f64, f32, true);
    check_op<double, double, double>(
        "acc_f64_f64", tier,
        [&](const double* a, const double* x, double*, size_t n) { k.acc_f64_f64(const_cast<double*>(a), s, x, n); },
        [&](double a, double x) {
          const double p = s * x;
          return a + p;
        },
        f64, f64, true);
  }
}

// ----------------------------------------------------------- large outputs ---

// Outputs of 32 MiB and more take the x86 tiers' non-temporal path (peel to a
// cache line, stream whole vectors, finish normally), but only when the
// output is element-aligned. Checked against the scalar tier.
template <class A, class B, class O>
void check_big(const char* name, SimdTier tier, const std::vector<A>& va, const std::vector<B>& vb,
               const std::function<void(const Kernels&, const A*, const B*, O*, size_t)>& run) {
  const size_t n = va.size();
  Buf<A> ba(n, 0);
  Buf<B> bb(n, 0);
  ba.put(va);
  bb.put(vb);
  std::vector<O> want(n);
  run(ptth::kernels_for(SimdTier::scalar), ba.ptr(), bb.ptr(), want.data(), n);
  for (size_t mis : {size_t(0), sizeof(O), 3 * sizeof(O), size_t(1)}) {
    Buf<O> bo(n, mis);
    run(ptth::kernels_for(tier), ba.ptr(), bb.ptr(), bo.ptr(), n);
    const std::vector<O> got = bo.get();
    if (std::memcmp(got.data(), want.data(), n * sizeof(O)) != 0)
      for (size_t i = 0; i < n; ++i)
        CHECK_MSG(same(got[i], want[i]), "%s %s n=%zu misalign=%zu [%zu]: got 0x%" PRIx64 " want 0x%" PRIx64,
                  ptth::tier_name(tier), name, n, mis, i, show(got[i]), show(want[i]));
    CHECK_MSG(bo.guards_intact(), "%s %s n=%zu misalign=%zu: wrote outside its output", ptth::tier_name(tier), name,
              n, mis);
  }
}

void test_large_outputs(const std::vector<SimdTier>& tiers) {
  const size_t n2 = (size_t(32) << 20) / 2 + 37, n4 = (size_t(32) << 20) / 4 + 37, n8 = (size_t(32) << 20) / 8 + 37;
  std::vector<float> a(n2), b(n2);
  std::vector<uint16_t> h(n4);
  std::vector<double> d(n2), e(n8);
  for (auto& x : a) x = gen_f32();
  for (auto& x : b) x = gen_f32();
  for (auto& x : h) x = gen_f16();
  for (auto& x : d) x = gen_f64();
  for (auto& x : e) x = gen_f64();
  const std::vector<float> a4(a.begin(), a.begin() + n4), b4(b.begin(), b.begin() + n4);
  const std::vector<double> d8(d.begin(), d.begin() + n8);
  for (SimdTier t : tiers) {
    if (t == SimdTier::scalar) continue;
    using K = const Kernels&;
    check_big<float, float, uint16_t>("f32_to_f16", t, a, b, [](K k, const float* x, const float*, uint16_t* o,
                                                                size_t n) { k.f32_to_f16(x, o, n); });
    check_big<uint16_t, uint16_t, float>("f16_to_f32", t, h, h, [](K k, const uint16_t* x, const uint16_t*, float* o,
                                                                   size_t n) { k.f16_to_f32(x, o, n); });
    check_big<double, double, uint16_t>("f64_to_f16", t, d, d, [](K k, const double* x, const double*, uint16_t* o,
                                                                  size_t n) { k.f64_to_f16(x, o, n); });
    check_big<float, float, uint16_t>("sub_f32_to_f16", t, a, b, [](K k, const float* x, const float* y, uint16_t* o,
                                                                    size_t n) { k.sub_f32_to_f16(x, y, o, n); });
    check_big<float, float, float>("sub_f32", t, a4, b4, [](K k, const float* x, const float* y, float* o,
                                                            size_t n) { k.sub_f32(x, y, o, n); });
    check_big<double, double, double>("sub_f64", t, d8, e, [](K k, const double* x, const double* y, double* o,
                                                              size_t n) { k.sub_f64(x, y, o, n); });
    check_big<float, uint16_t, float>("axpy_f32_f16", t, a4, h, [](K k, const float* x, const uint16_t* y, float* o,
                                                                  size_t n) { k.axpy_f32_f16(x, 0.25f, y, o, n); });
  }
}

// --------------------------------------------------------------- all_finite ---

template <class T, class U>
void check_all_finite(const char* name, SimdTier tier, bool (*fn)(const T*, size_t), const std::vector<U>& bad_bits) {
  for (size_t n = 0; n <= 67; ++n) {
    for (size_t mis = 0; mis < 4; ++mis) {
      Buf<T> b(n, mis);
      // Guards become non-finite (0xff.. is NaN for every type): reading past
      // either end would be caught.
      std::fill(b.raw.begin(), b.raw.end(), 0xff);
      std::vector<T> v(n);
      for (auto& x : v) x = gen_finite<T>();
      b.put(v);
      CHECK_MSG(fn(b.ptr(), n), "%s %s n=%zu mis=%zu: finite data reported non-finite", ptth::tier_name(tier), name,
                n, mis);
      for (size_t p = 0; p < n; ++p) {
        std::vector<T> w = v;
        w[p] = bits<T>(bad_bits[(p + n) % bad_bits.size()]);
        b.put(w);
        CHECK_MSG(!fn(b.ptr(), n), "%s %s n=%zu mis=%zu: missed a non-finite value at %zu", ptth::tier_name(tier),
                  name, n, mis, p);
      }
    }
  }
  for (size_t n : {1000, 4099, 65536}) {  // the unrolled main loop, bad value anywhere
    std::vector<T> v(n);
    for (auto& x : v) x = gen_finite<T>();
    CHECK(fn(v.data(), n));
    for (size_t p : {size_t(0), n / 3, n / 2 + 1, n - 1}) {
      std::vector<T> w = v;
      w[p] = bits<T>(bad_bits[p % bad_bits.size()]);
      CHECK_MSG(!fn(w.data(), n), "%s %s n=%zu: missed a non-finite value at %zu", ptth::tier_name(tier), name, n, p);
    }
  }
}

void test_all_finite(SimdTier tier) {
  const Kernels& k = ptth::kernels_for(tier);
  check_all_finite<uint16_t, uint16_t>("all_finite_f16", tier, k.all_finite_f16,
                                       {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff});
  check_all_finite<float, uint32_t>("all_finite_f32", tier, k.all_finite_f32,
                                    {0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffffffffu});
  check_all_finite<double, uint64_t>("all_finite_f64", tier, k.all_finite_f64,
                                     {0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull,
                                      0x7ff0000000000001ull, 0xffffffffffffffffull});
  // Every half pattern, at a position that moves through the vector lanes.
  std::vector<uint16_t> v(37);
  for (auto& x : v) x = gen_finite<uint16_t>();
  for (uint32_t h = 0; h < 65536; ++h) {
    std::vector<uint16_t> w = v;
    w[h % 37] = uint16_t(h);
    const bool finite = (h & 0x7c00) != 0x7c00;
    CHECK_MSG(k.all_finite_f16(w.data(), w.size()) == finite, "%s all_finite_f16 with 0x%04x",
              ptth::tier_name(tier), h);
  }
  for (uint32_t e = 0; e < 256; ++e) {  // every float exponent
    std::vector<float> w(29, 1.0f);
    w[e % 29] = bits<float>((e << 23) | 0x1234u);
    CHECK(k.all_finite_f32(w.data(), w.size()) == (e != 255));
  }
  for (uint64_t e = 0; e < 2048; ++e) {  // every double exponent
    std::vector<double> w(13, 1.0);
    w[e % 13] = bits<double>((e << 52) | 0x1234u);
    CHECK(k.all_finite_f64(w.data(), w.size()) == (e != 2047));
  }
}

// ----------------------------------------------------------------- dispatch ---

bool only_scalar(SimdTier t) { return t == SimdTier::scalar; }
bool x86_avx2(SimdTier t) { return t == SimdTier::scalar || t == SimdTier::avx2; }
bool x86_all(SimdTier t) { return t == SimdTier::scalar || t == SimdTier::avx2 || t == SimdTier::avx512; }
bool arm(SimdTier t) { return t == SimdTier::scalar || t == SimdTier::neon; }

void test_dispatch() {
  CHECK(std::strcmp(ptth::tier_name(SimdTier::scalar), "scalar") == 0);
  CHECK(std::strcmp(ptth::tier_name(SimdTier::avx2), "avx2") == 0);
  CHECK(std::strcmp(ptth::tier_name(SimdTier::avx512), "avx512") == 0);
  CHECK(std::strcmp(ptth::tier_name(SimdTier::neon), "neon") == 0);
  CHECK(ptth::tier_available(SimdTier::scalar));
  CHECK(!(ptth::tier_available(SimdTier::neon) && ptth::tier_available(SimdTier::avx2)));
  CHECK(!ptth::tier_available(SimdTier::avx512) || ptth::tier_available(SimdTier::avx2));
  for (SimdTier t : kTiers) {
    bool threw = false;
    try {
      const Kernels& k = ptth::kernels_for(t);
      CHECK(k.f32_to_f16 && k.all_finite_f64);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK_MSG(threw == !ptth::tier_available(t), "kernels_for(%s) threw=%d", ptth::tier_name(t), int(threw));
  }
  CHECK(ptth::tier_available(ptth::active_tier()));
  CHECK(&ptth::kernels() == &ptth::kernels_for(ptth::active_tier()));

  // The environment this process runs with.
  const char* env = std::getenv("PTTH_SIMD");
  std::string note;
  const SimdTier expect = ptth::cpu::resolve_tier(env, ptth::tier_available, &note);
  CHECK(ptth::active_tier() == expect);
  CHECK(note == ptth::simd_note());
  if (env && *env && std::strcmp(env, "auto") != 0) {
    for (SimdTier t : kTiers)
      if (std::strcmp(env, ptth::tier_name(t)) == 0 && ptth::tier_available(t))
        CHECK_MSG(ptth::active_tier() == t && note.empty(), "PTTH_SIMD=%s not honoured", env);
  }

  // Resolution against pretend machines.
  struct R {
    const char* req;
    bool (*avail)(SimdTier);
    SimdTier want;
    bool noted;
  };
  const R rs[] = {
      {nullptr, x86_all, SimdTier::avx512, false}, {"", x86_all, SimdTier::avx512, false},
      {"auto", x86_avx2, SimdTier::avx2, false},   {"scalar", x86_all, SimdTier::scalar, false},
      {"avx2", x86_all, SimdTier::avx2, false},    {"avx512", x86_all, SimdTier::avx512, false},
      {"avx512", x86_avx2, SimdTier::avx2, true},  {"avx512", only_scalar, SimdTier::scalar, true},
      {"avx2", only_scalar, SimdTier::scalar, true}, {"neon", x86_all, SimdTier::scalar, true},
      {"neon", arm, SimdTier::neon, false},        {"avx2", arm, SimdTier::neon, true},
      {"avx512", arm, SimdTier::neon, true},       {"sse9", x86_avx2, SimdTier::avx2, true},
      {"AVX2", x86_all, SimdTier::avx512, true},
  };
  for (const R& r : rs) {
    const SimdTier got = ptth::cpu::resolve_tier(r.req, r.avail, &note);
    CHECK_MSG(got == r.want && note.empty() == !r.noted, "resolve_tier(%s) = %s, note '%s'",
              r.req ? r.req : "(unset)", ptth::tier_name(got), note.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<SimdTier> tiers = available_tiers();
  std::printf("tiers:");
  for (SimdTier t : tiers) std::printf(" %s", ptth::tier_name(t));
  std::printf("; active %s%s%s\n", ptth::tier_name(ptth::active_tier()), *ptth::simd_note() ? "; " : "",
              ptth::simd_note());

  struct Section {
    const char* name;
    std::function<void()> run;
  };
  const Section sections[] = {
      {"dispatch", test_dispatch},
      {"known values", [&] { test_known_values(tiers); }},
      {"f16_to_f32 all halves", [&] { test_f16_to_f32_exhaustive(tiers); }},
      {"f64_to_f16", [&] { test_f64_to_f16(tiers); }},
      {"elementwise", [&] { for (SimdTier t : tiers) test_elementwise(t); }},
      {"all_finite", [&] { for (SimdTier t : tiers) test_all_finite(t); }},
      {quick ? "large outputs (skipped)" : "large (streamed) outputs", [&] { if (!quick) test_large_outputs(tiers); }},
      {quick ? "f32_to_f16 sampled sweep" : "f32_to_f16 all 2^32", [&] { test_f32_to_f16_exhaustive(tiers, quick); }},
  };
  for (const Section& s : sections) {
    const int before = g_failures;
    const double t0 = now();
    s.run();
    std::printf("%-28s %s (%.2fs)\n", s.name, g_failures == before ? "ok" : "FAILED", now() - t0);
    std::fflush(stdout);
  }
  if (g_failures) {
    std::printf("%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("all passed\n");
  return 0;
}
