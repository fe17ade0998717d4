// Every available SIMD tier against an independent oracle (and so against
// the scalar reference, which is one of the tiers):
// - f32->f16 over all 2^32 float bit patterns, f16->f32 over all 65,536 halves;
// - f64->f16 over every half's neighbourhood, including the values where
//   rounding through float32 first would be wrong;
// - the arithmetic kernels on random and special values, every length
//   0..67 (and a few long ones), pointers misaligned by 0..3 bytes, outputs
//   aliasing inputs, and guard bytes around every output;
// - dispatch: tier names, availability, PTTH_SIMD resolution;
// - wave 2: f64->f32 against the float grid (exact double arithmetic) and
//   the C cast, over every kind of halfway point; f32->f64 over every
//   subnormal and exponent, f16->f64 over all halves; div and axpy_div on
//   data that tells them from a reciprocal multiply or a fused multiply-add;
//   the stats against the 16-lane definition written out (bit for bit), the
//   scalar tier and a long-double sum, with NaN bytes around every input.
//
// The rounding oracle does not share code with the kernels: it decodes every
// half to a double and rounds by searching the sorted half values (ties to
// even), so it only relies on double arithmetic being exact on these values.
//
// Usage: test_kernels [--quick | --bench]   (--quick samples the 2^32 sweep
// and skips the 32 MiB outputs; --bench times the wave-2 kernels instead)
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
#include <type_traits>
#include <utility>
#include <vector>

#include "core/kernels.hpp"
#include "core/simd/cpu.hpp"

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

#define CHECK(cond)                               \
  do {                                            \
    if (!(cond)) fail(__FILE__, __LINE__, #cond); \
  } while (0)
#define CHECK_MSG(cond, ...)                                 \
  do {                                                       \
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
uint16_t nan_half_from_f32(uint32_t x) {
  return uint16_t(((x >> 16) & 0x8000) | 0x7e00 | ((x >> 13) & 0x3ff));
}
uint16_t nan_half_from_f64(uint64_t x) {
  return uint16_t(((x >> 48) & 0x8000) | 0x7e00 | ((x >> 42) & 0x3ff));
}

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

bool is_nan_half(uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

// Equal bits, or both NaN (arithmetic NaN payloads are the hardware's).
bool same(float a, float b) {
  return bits<uint32_t>(a) == bits<uint32_t>(b) || (std::isnan(a) && std::isnan(b));
}
bool same(double a, double b) {
  return bits<uint64_t>(a) == bits<uint64_t>(b) || (std::isnan(a) && std::isnan(b));
}
bool same(uint16_t a, uint16_t b) {
  return a == b || (is_nan_half(a) && is_nan_half(b));
}
uint64_t show(float v) {
  return bits<uint32_t>(v);
}
uint64_t show(double v) {
  return bits<uint64_t>(v);
}
uint64_t show(uint16_t v) {
  return v;
}

// ------------------------------------------------------------ generators ---

std::mt19937_64 g_rng(0x5eed1234abcdull);

float gen_f32() {
  static const float specials[] = {0.0f,
                                   -0.0f,
                                   1.0f,
                                   -1.0f,
                                   65504.0f,
                                   65520.0f,
                                   -65520.0f,
                                   65519.996f,
                                   6.1035156e-05f,
                                   5.9604645e-08f,
                                   2.9802322e-08f,
                                   2.9802326e-08f,
                                   1e-45f,
                                   1.1754942e-38f,
                                   3.4028235e38f,
                                   std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity(),
                                   std::numeric_limits<float>::quiet_NaN(),
                                   bits<float>(0x7f800001u),
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
  do v = gen_f32();
  while (!std::isfinite(v));
  return v;
}
template <>
double gen_finite<double>() {
  double v;
  do v = gen_f64();
  while (!std::isfinite(v));
  return v;
}
template <>
uint16_t gen_finite<uint16_t>() {
  uint16_t v;
  do v = gen_f16();
  while ((v & 0x7c00) == 0x7c00);
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
  size_t k = 0;  // current half code (positive), oracle state
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
      {0x33000001, 0x0001}, {0x33c00000, 0x0002},  // 1.5 * 2^-24: tie -> even (2)
      {0x387fc000, 0x03ff},                        // largest subnormal
      {0x387fe000, 0x0400},  // tie between largest subnormal and smallest normal
      {0x3f800000, 0x3c00}, {0xbf800000, 0xbc00}, {0x3f801000, 0x3c00},  // 1 + 2^-11: tie -> even
      {0x3f803000, 0x3c02},                                              // 1 + 3*2^-11: tie -> even
      {0x80000001, 0x8000},                                              // -denormal -> -0
      {0x7f800000, 0x7c00}, {0xff800000, 0xfc00}, {0x7fc00000, 0x7e00},
      {0xffc00000, 0xfe00}, {0x7f800001, 0x7e00},  // sNaN quieted (NumPy: 0x7c01)
      {0xffa00000, 0xff00},                        // sNaN quieted (NumPy: 0xfd00)
  };
  for (SimdTier t : tiers) {
    for (const Case& c : cases) {
      uint16_t h;
      const float f = bits<float>(c.f);
      ptth::kernels_for(t).f32_to_f16(&f, &h, 1);
      CHECK_MSG(h == c.h, "%s f32_to_f16(0x%08x) = 0x%04x, want 0x%04x", ptth::tier_name(t), c.f, h,
                c.h);
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
void check_op(const char* name, SimdTier tier,
              const std::function<void(const A*, const B*, O*, size_t)>& run,
              const std::function<O(A, B)>& want, const std::function<A()>& gen_a,
              const std::function<B()>& gen_b, bool inplace = false) {
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
          if (n)
            std::memcpy(got.data(), reinterpret_cast<const unsigned char*>(out), n * sizeof(O));
          for (size_t i = 0; i < n; ++i)
            CHECK_MSG(same(got[i], expect[i]),
                      "%s %s n=%zu offsets=%zu,%zu,%zu [%zu]: got 0x%" PRIx64 " want 0x%" PRIx64,
                      ptth::tier_name(tier), name, n, oa, ob, oo, i, show(got[i]), show(expect[i]));
          CHECK_MSG(ba.guards_intact() && bb.guards_intact() && bo.guards_intact(),
                    "%s %s n=%zu offsets=%zu,%zu,%zu: wrote outside its output",
                    ptth::tier_name(tier), name, n, oa, ob, oo);
          if (!inplace && n) {
            CHECK_MSG(std::memcmp(ba.get().data(), va.data(), n * sizeof(A)) == 0,
                      "%s %s modified an input", ptth::tier_name(tier), name);
            CHECK_MSG(std::memcmp(bb.get().data(), vb.data(), n * sizeof(B)) == 0,
                      "%s %s modified an input", ptth::tier_name(tier), name);
          }
        }
  }
}

// out == a and out == b for the elementwise ops whose output type matches.
template <class T>
void check_alias(const char* name, SimdTier tier,
                 const std::function<void(const T*, const T*, T*, size_t)>& run,
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
        CHECK_MSG(same(got[i], expect[i]), "%s %s aliased out==%c n=%zu [%zu]",
                  ptth::tier_name(tier), name, which == 0 ? 'a' : 'b', n, i);
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
      "f32_to_f16", tier,
      [&](const float* a, const float*, uint16_t* o, size_t n) { k.f32_to_f16(a, o, n); },
      [](float a, float) {
        return std::isnan(a) ? nan_half_from_f32(bits<uint32_t>(a)) : oracle_half(a);
      },
      f32, f32);
  check_op<uint16_t, uint16_t, float>(
      "f16_to_f32", tier,
      [&](const uint16_t* a, const uint16_t*, float* o, size_t n) { k.f16_to_f32(a, o, n); },
      [&](uint16_t a, uint16_t) { return hf(a); }, f16, f16);
  check_op<double, double, uint16_t>(
      "f64_to_f16", tier,
      [&](const double* a, const double*, uint16_t* o, size_t n) { k.f64_to_f16(a, o, n); },
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

  const float scales32[] = {1.0f,  -1.0f, 0.0f,
                            -0.0f, 0.1f,  3.3e-5f,
                            1e30f, -2.5f, std::numeric_limits<float>::infinity()};
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
        [&](const float* b, const uint16_t* x, float* o, size_t n) {
          k.axpy_f32_f16(b, s, x, o, n);
        },
        [&](float b, uint16_t x) {
          const float p = s * hf(x);
          return b + p;
        },
        f32, f16);
    check_op<float, uint16_t, float>(
        "acc_f32_f16", tier,
        [&](const float* a, const uint16_t* x, float*, size_t n) {
          k.acc_f32_f16(const_cast<float*>(a), s, x, n);
        },
        [&](float a, uint16_t x) {
          const float p = s * hf(x);
          return a + p;
        },
        f32, f16, true);
    check_op<float, float, float>(
        "acc_f32_f32", tier,
        [&](const float* a, const float* x, float*, size_t n) {
          k.acc_f32_f32(const_cast<float*>(a), s, x, n);
        },
        [&](float a, float x) {
          const float p = s * x;
          return a + p;
        },
        f32, f32, true);
  }

  const double scales64[] = {
      1.0, -1.0, 0.0, 0.1, 1.0 / 3.0, 1e-300, 1e300, 7.0, std::numeric_limits<double>::quiet_NaN()};
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
        "acc_f64_f16", tier,
        [&](const double* a, const uint16_t* x, double*, size_t n) {
          k.acc_f64_f16(const_cast<double*>(a), s, x, n);
        },
        [&](double a, uint16_t x) {
          const double p = s * half_value(x);
          return a + p;
        },
        f64, f16, true);
    check_op<double, float, double>(
        "acc_f64_f32", tier,
        [&](const double* a, const float* x, double*, size_t n) {
          k.acc_f64_f32(const_cast<double*>(a), s, x, n);
        },
        [&](double a, float x) {
          const double p = s * double(x);
          return a + p;
        },
        f64, f32, true);
    check_op<double, double, double>(
        "acc_f64_f64", tier,
        [&](const double* a, const double* x, double*, size_t n) {
          k.acc_f64_f64(const_cast<double*>(a), s, x, n);
        },
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
        CHECK_MSG(same(got[i], want[i]),
                  "%s %s n=%zu misalign=%zu [%zu]: got 0x%" PRIx64 " want 0x%" PRIx64,
                  ptth::tier_name(tier), name, n, mis, i, show(got[i]), show(want[i]));
    CHECK_MSG(bo.guards_intact(), "%s %s n=%zu misalign=%zu: wrote outside its output",
              ptth::tier_name(tier), name, n, mis);
  }
}

void test_large_outputs(const std::vector<SimdTier>& tiers) {
  const size_t n2 = (size_t(32) << 20) / 2 + 37, n4 = (size_t(32) << 20) / 4 + 37,
               n8 = (size_t(32) << 20) / 8 + 37;
  std::vector<float> a(n2), b(n2);
  std::vector<uint16_t> h(n4);
  std::vector<double> d(n2), e(n8);
  for (auto& x : a) x = gen_f32();
  for (auto& x : b) x = gen_f32();
  for (auto& x : h) x = gen_f16();
  for (auto& x : d) x = gen_f64();
  for (auto& x : e) x = gen_f64();
  const std::vector<float> a4(a.begin(), a.begin() + n4), b4(b.begin(), b.begin() + n4);
  const std::vector<double> d8(d.begin(), d.begin() + n8), d4(d.begin(), d.begin() + n4);
  const std::vector<float> a8(a.begin(), a.begin() + n8);
  const std::vector<uint16_t> h8(h.begin(), h.begin() + n8);
  for (SimdTier t : tiers) {
    if (t == SimdTier::scalar) continue;
    using K = const Kernels&;
    check_big<float, float, uint16_t>(
        "f32_to_f16", t, a, b,
        [](K k, const float* x, const float*, uint16_t* o, size_t n) { k.f32_to_f16(x, o, n); });
    check_big<uint16_t, uint16_t, float>(
        "f16_to_f32", t, h, h,
        [](K k, const uint16_t* x, const uint16_t*, float* o, size_t n) { k.f16_to_f32(x, o, n); });
    check_big<double, double, uint16_t>(
        "f64_to_f16", t, d, d,
        [](K k, const double* x, const double*, uint16_t* o, size_t n) { k.f64_to_f16(x, o, n); });
    check_big<float, float, uint16_t>(
        "sub_f32_to_f16", t, a, b, [](K k, const float* x, const float* y, uint16_t* o, size_t n) {
          k.sub_f32_to_f16(x, y, o, n);
        });
    check_big<float, float, float>(
        "sub_f32", t, a4, b4,
        [](K k, const float* x, const float* y, float* o, size_t n) { k.sub_f32(x, y, o, n); });
    check_big<double, double, double>(
        "sub_f64", t, d8, e,
        [](K k, const double* x, const double* y, double* o, size_t n) { k.sub_f64(x, y, o, n); });
    check_big<float, uint16_t, float>(
        "axpy_f32_f16", t, a4, h, [](K k, const float* x, const uint16_t* y, float* o, size_t n) {
          k.axpy_f32_f16(x, 0.25f, y, o, n);
        });
    check_big<double, double, float>(
        "f64_to_f32", t, d4, d4,
        [](K k, const double* x, const double*, float* o, size_t n) { k.f64_to_f32(x, o, n); });
    check_big<float, float, double>(
        "f32_to_f64", t, a8, a8,
        [](K k, const float* x, const float*, double* o, size_t n) { k.f32_to_f64(x, o, n); });
    check_big<uint16_t, uint16_t, double>(
        "f16_to_f64", t, h8, h8, [](K k, const uint16_t* x, const uint16_t*, double* o, size_t n) {
          k.f16_to_f64(x, o, n);
        });
    check_big<float, float, float>(
        "div_f32", t, a4, a4,
        [](K k, const float* x, const float*, float* o, size_t n) { k.div_f32(x, 3.0f, o, n); });
    check_big<double, double, double>(
        "div_f64", t, d8, d8,
        [](K k, const double* x, const double*, double* o, size_t n) { k.div_f64(x, 3.0, o, n); });
  }
}

// --------------------------------------------------------------- all_finite ---

template <class T, class U>
void check_all_finite(const char* name, SimdTier tier, bool (*fn)(const T*, size_t),
                      const std::vector<U>& bad_bits) {
  for (size_t n = 0; n <= 67; ++n) {
    for (size_t mis = 0; mis < 4; ++mis) {
      Buf<T> b(n, mis);
      // Guards become non-finite (0xff.. is NaN for every type): reading past
      // either end would be caught.
      std::fill(b.raw.begin(), b.raw.end(), 0xff);
      std::vector<T> v(n);
      for (auto& x : v) x = gen_finite<T>();
      b.put(v);
      CHECK_MSG(fn(b.ptr(), n), "%s %s n=%zu mis=%zu: finite data reported non-finite",
                ptth::tier_name(tier), name, n, mis);
      for (size_t p = 0; p < n; ++p) {
        std::vector<T> w = v;
        w[p] = bits<T>(bad_bits[(p + n) % bad_bits.size()]);
        b.put(w);
        CHECK_MSG(!fn(b.ptr(), n), "%s %s n=%zu mis=%zu: missed a non-finite value at %zu",
                  ptth::tier_name(tier), name, n, mis, p);
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
      CHECK_MSG(!fn(w.data(), n), "%s %s n=%zu: missed a non-finite value at %zu",
                ptth::tier_name(tier), name, n, p);
    }
  }
}

void test_all_finite(SimdTier tier) {
  const Kernels& k = ptth::kernels_for(tier);
  check_all_finite<uint16_t, uint16_t>("all_finite_f16", tier, k.all_finite_f16,
                                       {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff});
  check_all_finite<float, uint32_t>(
      "all_finite_f32", tier, k.all_finite_f32,
      {0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffffffffu});
  check_all_finite<double, uint64_t>(
      "all_finite_f64", tier, k.all_finite_f64,
      {0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull, 0x7ff0000000000001ull,
       0xffffffffffffffffull});
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

// ================================================================ wave 2 ===

// ------------------------------------------------------ conversion oracles ---

uint32_t nan_f32_from_f64(uint64_t x) {
  return uint32_t((x >> 32) & 0x80000000u) | 0x7fc00000u | uint32_t((x >> 29) & 0x7fffffu);
}

// Nearest float to a non-NaN double, ties to even, found on the float grid
// around it with exact double arithmetic (the ulp of its binade, 2^-149 below
// 2^-126; distances to the two grid neighbours are exact, or far from a tie);
// 2^128 stands for inf. Shares no code with the kernels.
uint32_t oracle_f32_bits(double v, bool* tie = nullptr) {
  const uint32_t sign = std::signbit(v) ? 0x80000000u : 0u;
  const double a = std::fabs(v);
  if (a >= 0x1p128) return sign | 0x7f800000u;
  if (a == 0) return sign;
  const int e = std::max(std::ilogb(a), -126);
  const double ulp = std::ldexp(1.0, e - 23);
  const double k = std::floor(a / ulp);  // scaling by a power of two: exact
  const double lo = k * ulp, hi = lo + ulp;
  const double dlo = a - lo, dhi = hi - a;
  if (tie) *tie = dlo == dhi;
  const double kk = (dlo < dhi || (dlo == dhi && std::fmod(k, 2.0) == 0.0)) ? k : k + 1;
  // (e + 127) << 23 plus the significand minus the hidden bit; a subnormal
  // (e == -126, kk < 2^23) and a carry into the next binade (kk == 2^24,
  // up to inf) come out right from the same sum.
  return sign | ((uint32_t(e + 127) << 23) + uint32_t(kk) - 0x800000u);
}

uint32_t oracle_f32_from_f64(double v, bool* tie = nullptr) {
  if (tie) *tie = false;
  return std::isnan(v) ? nan_f32_from_f64(bits<uint64_t>(v)) : oracle_f32_bits(v, tie);
}

// Exact f32 -> f64 from the fields.
uint64_t oracle_f64_from_f32(uint32_t x) {
  const uint32_t e = (x >> 23) & 0xff, m = x & 0x7fffff;
  const uint64_t sign = uint64_t(x & 0x80000000u) << 32;
  if (e == 0xff)
    return sign | 0x7ff0000000000000ull | (m ? (uint64_t(1) << 51) | (uint64_t(m) << 29) : 0);
  const double v =
      e ? std::ldexp(double(m | 0x800000u), int(e) - 150) : std::ldexp(double(m), -149);
  return bits<uint64_t>(std::copysign(v, sign ? -1.0 : 1.0));
}

uint64_t oracle_f64_from_half(uint16_t h) {
  if (is_nan_half(h))
    return (uint64_t(h & 0x8000u) << 48) | 0x7ff8000000000000ull | (uint64_t(h & 0x3ffu) << 42);
  return bits<uint64_t>(half_value(h));
}

// Doubles around every kind of float32 rounding decision: the float values,
// the halfway points between neighbours and the doubles next to those, the
// overflow and underflow edges, random doubles, NaNs.
std::vector<double> f64_to_f32_cases(size_t random_floats, size_t random_doubles) {
  std::vector<double> v;
  auto around = [&](double c) {
    v.push_back(c);
    v.push_back(std::nextafter(c, 0.0));
    v.push_back(std::nextafter(c, 1e300));
  };
  auto halfway_of = [&](uint32_t f) {  // f: a finite non-negative float pattern below FLT_MAX
    const double lo = double(bits<float>(f)), hi = double(bits<float>(f + 1));
    around(lo);
    around((lo + hi) / 2);  // exact: 29 spare bits
  };
  for (size_t i = 0; i < random_floats; ++i) halfway_of(uint32_t(g_rng() % 0x7f7fffffu));
  for (uint32_t e = 0; e < 255; ++e)  // both parities at the bottom and top of every binade
    for (uint32_t m : {0u, 1u, 2u, 3u, 0x7ffffdu, 0x7ffffeu}) halfway_of((e << 23) | m);
  const double fmax = double(std::numeric_limits<float>::max());
  for (double c :
       {fmax, 0x1p128 - 0x1p103, 0x1p128, 0x1p-126, 0x1p-149, 0x1p-150, 0x1.8p-149, 0x1.8p-150,
        0x1p-126 - 0x1p-150, std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
        std::numeric_limits<double>::denorm_min(), 1e-320, 1.0, 3.0, 0.1, 1e38, 4e38, 1e300})
    around(c);
  v.push_back(std::numeric_limits<double>::infinity());
  v.push_back(0.0);
  for (size_t i = 0; i < random_doubles; ++i) v.push_back(gen_f64());
  for (uint64_t nan :
       {0x7ff0000000000001ull, 0x7ff8000000000000ull, 0x7ff4000000000000ull, 0x7ff0000020000000ull,
        0x7ff000001fffffffull, 0x7fffffffffffffffull, 0x7ff123456789abcdull})
    v.push_back(bits<double>(nan));
  const size_t n = v.size();
  for (size_t i = 0; i < n; ++i) v.push_back(-v[i]);
  return v;
}

void test_f64_to_f32(const std::vector<SimdTier>& tiers) {
  const std::vector<double> cases = f64_to_f32_cases(1 << 20, 1 << 20);
  std::vector<uint32_t> want(cases.size());
  size_t ties = 0, hw_mismatch = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    bool tie;
    want[i] = oracle_f32_from_f64(cases[i], &tie);
    ties += tie;
    // NumPy's astype(float32) is the C cast, i.e. the hardware's conversion.
    if (bits<uint32_t>(float(cases[i])) != want[i] && hw_mismatch++ < 5)
      CHECK_MSG(false, "oracle f64_to_f32(%a) = 0x%08x, the C cast gives 0x%08x", cases[i], want[i],
                bits<uint32_t>(float(cases[i])));
  }
  CHECK(hw_mismatch == 0);
  CHECK_MSG(ties > 100000, "only %zu ties among the f64_to_f32 cases", ties);
  for (SimdTier t : tiers) {
    std::vector<float> got(cases.size());
    ptth::kernels_for(t).f64_to_f32(cases.data(), got.data(), cases.size());
    size_t bad = 0;
    for (size_t i = 0; i < cases.size(); ++i)
      if (bits<uint32_t>(got[i]) != want[i] && bad++ < 20)
        CHECK_MSG(false, "%s f64_to_f32(%a = 0x%016" PRIx64 ") = 0x%08x, want 0x%08x",
                  ptth::tier_name(t), cases[i], bits<uint64_t>(cases[i]), bits<uint32_t>(got[i]),
                  want[i]);
  }
}

// f32 -> f64 over every exponent with random significands, every subnormal
// float, and the NaNs; f16 -> f64 over all 65,536 halves. Bit for bit,
// NaN payloads included.
void test_widening(const std::vector<SimdTier>& tiers) {
  std::vector<uint32_t> pats;
  for (uint32_t m = 0; m < 0x800000u; ++m) pats.push_back(m);  // +0 and every positive subnormal
  for (uint32_t e = 1; e < 256; ++e)
    for (int k = 0; k < 4096; ++k) pats.push_back((e << 23) | uint32_t(g_rng() & 0x7fffffu));
  for (uint32_t m : {0u, 1u, 0x200000u, 0x3fffffu, 0x400000u, 0x7fffffu})
    pats.push_back(0x7f800000u | m);
  const size_t np = pats.size();
  for (size_t i = 0; i < np; ++i) pats.push_back(pats[i] | 0x80000000u);
  std::vector<float> src(pats.size());
  std::vector<uint64_t> want(pats.size());
  for (size_t i = 0; i < pats.size(); ++i) {
    src[i] = bits<float>(pats[i]);
    want[i] = oracle_f64_from_f32(pats[i]);
    CHECK(std::isnan(src[i]) ||
          bits<uint64_t>(double(src[i])) == want[i]);  // NumPy's astype: the C cast
  }
  std::vector<uint16_t> halves(65536);
  for (uint32_t h = 0; h < 65536; ++h) halves[h] = uint16_t(h);
  for (SimdTier t : tiers) {
    const Kernels& k = ptth::kernels_for(t);
    std::vector<double> got(src.size());
    k.f32_to_f64(src.data(), got.data(), src.size());
    size_t bad = 0;
    for (size_t i = 0; i < src.size(); ++i)
      if (bits<uint64_t>(got[i]) != want[i] && bad++ < 20)
        CHECK_MSG(false, "%s f32_to_f64(0x%08x) = 0x%016" PRIx64 ", want 0x%016" PRIx64,
                  ptth::tier_name(t), pats[i], bits<uint64_t>(got[i]), want[i]);
    std::vector<double> hgot(65536);
    k.f16_to_f64(halves.data(), hgot.data(), halves.size());
    for (uint32_t h = 0; h < 65536; ++h)
      CHECK_MSG(bits<uint64_t>(hgot[h]) == oracle_f64_from_half(uint16_t(h)),
                "%s f16_to_f64(0x%04x) = 0x%016" PRIx64 ", want 0x%016" PRIx64, ptth::tier_name(t),
                h, bits<uint64_t>(hgot[h]), oracle_f64_from_half(uint16_t(h)));
  }
}

// Lengths, misalignments, guards for the three conversions, and the fused
// outputs: division by d (a true division: the cases include many where
// multiplying by 1/d differs) and r + lr * (acc / d) (many where a fused
// multiply-add, or 1/d, would differ).
void test_wave2_elementwise(SimdTier tier) {
  const Kernels& k = ptth::kernels_for(tier);
  const std::function<float()> f32 = gen_f32;
  const std::function<double()> f64 = gen_f64;
  const std::function<uint16_t()> f16 = gen_f16;

  check_op<double, double, float>(
      "f64_to_f32", tier,
      [&](const double* a, const double*, float* o, size_t n) { k.f64_to_f32(a, o, n); },
      [](double a, double) { return bits<float>(oracle_f32_from_f64(a)); }, f64, f64);
  check_op<float, float, double>(
      "f32_to_f64", tier,
      [&](const float* a, const float*, double* o, size_t n) { k.f32_to_f64(a, o, n); },
      [](float a, float) { return bits<double>(oracle_f64_from_f32(bits<uint32_t>(a))); }, f32,
      f32);
  check_op<uint16_t, uint16_t, double>(
      "f16_to_f64", tier,
      [&](const uint16_t* a, const uint16_t*, double* o, size_t n) { k.f16_to_f64(a, o, n); },
      [](uint16_t a, uint16_t) { return bits<double>(oracle_f64_from_half(a)); }, f16, f16);

  const float inf32 = std::numeric_limits<float>::infinity();
  const double inf64 = std::numeric_limits<double>::infinity();
  for (float d : {3.0f, 10.0f, 0.1f, -7.0f, 1e30f, 1e-30f, 1e-45f, 0.0f, -0.0f, inf32,
                  std::numeric_limits<float>::quiet_NaN()}) {
    const std::function<void(const float*, const float*, float*, size_t)> div =
        [&](const float* a, const float*, float* o, size_t n) { k.div_f32(a, d, o, n); };
    const std::function<float(float, float)> want = [&](float a, float) { return a / d; };
    check_op("div_f32", tier, div, want, f32, f32);
    check_op("div_f32 (out == acc)", tier, div, want, f32, f32, true);
  }
  for (double d : {3.0, 10.0, 0.1, -7.0, 1e300, 1e-300, 5e-324, 0.0, -0.0, inf64,
                   std::numeric_limits<double>::quiet_NaN()}) {
    const std::function<void(const double*, const double*, double*, size_t)> div =
        [&](const double* a, const double*, double* o, size_t n) { k.div_f64(a, d, o, n); };
    const std::function<double(double, double)> want = [&](double a, double) { return a / d; };
    check_op("div_f64", tier, div, want, f64, f64);
    check_op("div_f64 (out == acc)", tier, div, want, f64, f64, true);
  }
  const std::pair<float, float> lr_d32[] = {{1.0f, 3.0f},    {0.1f, 7.0f}, {-2.5f, 0.3f},
                                            {1e30f, 1e-30f}, {0.7f, 0.0f}, {inf32, 2.0f}};
  for (auto [lr, d] : lr_d32)
    check_op<float, float, float>(
        "axpy_div_f32", tier,
        [&](const float* r, const float* acc, float*, size_t n) {
          k.axpy_div_f32(const_cast<float*>(r), lr, acc, d, n);
        },
        [&](float r, float acc) {
          const float q = acc / d;
          const float p = lr * q;
          return r + p;
        },
        f32, f32, true);
  const std::pair<double, double> lr_d64[] = {{1.0, 3.0},      {0.1, 7.0}, {-2.5, 0.3},
                                              {1e300, 1e-300}, {0.7, 0.0}, {inf64, 2.0}};
  for (auto [lr, d] : lr_d64)
    check_op<double, double, double>(
        "axpy_div_f64", tier,
        [&](const double* r, const double* acc, double*, size_t n) {
          k.axpy_div_f64(const_cast<double*>(r), lr, acc, d, n);
        },
        [&](double r, double acc) {
          const double q = acc / d;
          const double p = lr * q;
          return r + p;
        },
        f64, f64, true);
}

// The cases above can tell a true division from a multiply by 1/d, and
// three roundings from a fused multiply-add; results below the smallest
// normal come out subnormal (no flush to zero).
void test_wave2_traps(SimdTier tier) {
  const Kernels& k = ptth::kernels_for(tier);
  const size_t n = 4099;
  std::vector<double> acc(n), r(n), out(n);
  for (size_t i = 0; i < n; ++i) acc[i] = gen_finite<double>(), r[i] = gen_finite<double>();
  size_t recip = 0, fused = 0, subnormal = 0;
  for (double d : {3.0, 10.0, 0.1}) {
    k.div_f64(acc.data(), d, out.data(), n);
    for (size_t i = 0; i < n; ++i) {
      recip += out[i] != acc[i] * (1.0 / d);
      CHECK(same(out[i], acc[i] / d));
    }
    std::vector<double> rr = r;
    k.axpy_div_f64(rr.data(), 0.1, acc.data(), d, n);
    for (size_t i = 0; i < n; ++i) {
      const double q = acc[i] / d;
      fused += rr[i] != std::fma(0.1, q, r[i]);
      CHECK(same(rr[i], r[i] + 0.1 * q));
    }
  }
  k.div_f64(acc.data(), 1e300, out.data(), n);
  for (size_t i = 0; i < n; ++i) subnormal += std::fpclassify(out[i]) == FP_SUBNORMAL;
  std::vector<float> acc32(n), out32(n);
  for (size_t i = 0; i < n; ++i) acc32[i] = gen_finite<float>();
  k.div_f32(acc32.data(), 1e30f, out32.data(), n);
  size_t subnormal32 = 0;
  for (size_t i = 0; i < n; ++i) subnormal32 += std::fpclassify(out32[i]) == FP_SUBNORMAL;
  CHECK_MSG(recip > 100 && fused > 10 && subnormal > 10 && subnormal32 > 10,
            "%s: weak cases (recip %zu, fused %zu, subnormal %zu/%zu)", ptth::tier_name(tier),
            recip, fused, subnormal, subnormal32);
}

// ------------------------------------------------------------------ stats ---

// Values for the stats: mostly moderate (sums that stay finite), with zeros,
// subnormals, near-overflow and exact ties thrown in.
double gen_stats_f64() {
  const uint64_t r = g_rng();
  switch (r % 16) {
    case 0: return bits<double>((g_rng() & 0x800fffffffffffffull));  // subnormal or zero
    case 1: return (r >> 8) & 1 ? -0.0 : 0.0;
    case 2: return double(gen_finite<float>());
    case 3:
      return ((r >> 8) & 1 ? -1.0 : 1.0) *
             std::ldexp(double(g_rng() >> 11) * 0x1p-53 + 1.0, 400 + int(r >> 60));
    default: {
      const double m = double(g_rng() >> 11) * 0x1p-53 + 1.0;
      return ((r >> 8) & 1 ? -m : m) * std::ldexp(1.0, int((r >> 16) % 80) - 40);
    }
  }
}

// The 16-lane definition of kernels.hpp, literally: squares padded with
// zeros to (m, 16), rows added in order, then the tree.
struct OracleStats {
  bool finite = true;
  double sumsq = 0, maxabs = 0, sequential = 0;
  long double exact = 0;
};
OracleStats oracle_stats(const std::vector<double>& w, bool square_exact) {
  OracleStats o;
  const size_t m = (w.size() + 15) / 16;
  std::vector<double> sq(16 * m, 0.0);
  for (size_t i = 0; i < w.size(); ++i) {
    o.finite = o.finite && std::isfinite(w[i]);
    sq[i] = w[i] * w[i];
    if (std::fabs(w[i]) > o.maxabs) o.maxabs = std::fabs(w[i]);
    o.exact += (long double)w[i] * (long double)w[i];
    o.sequential += sq[i];
    if (square_exact && std::isfinite(w[i]))
      CHECK_MSG((long double)sq[i] == (long double)w[i] * (long double)w[i],
                "square of %a not exact", w[i]);
  }
  double l[16];
  for (double& x : l) x = 0.0;
  for (size_t row = 0; row < m; ++row)
    for (size_t j = 0; j < 16; ++j) l[j] = l[j] + sq[16 * row + j];
  o.sumsq = ((((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) +
             (((l[8] + l[9]) + (l[10] + l[11])) + ((l[12] + l[13]) + (l[14] + l[15]))));
  return o;
}

size_t g_order_sensitive = 0;  // cases where summing in plain order would differ

template <class T>
struct StatsCase {
  std::vector<T> a, b;
};

// One case against the oracle, the scalar tier, and a long-double sum
// within the error bound of 16-lane summation.
template <class T>
void run_stats_case(
    const char* name, SimdTier tier,
    const std::function<void(const Kernels&, const T*, const T*, size_t, ptth::Stats*)>& run,
    const std::function<double(T, T)>& elem, bool square_exact, const StatsCase<T>& c, size_t oa,
    size_t ob) {
  const size_t n = c.a.size();
  Buf<T> ba(n, oa), bb(n, ob);
  std::fill(ba.raw.begin(), ba.raw.end(), 0xff);
  std::fill(bb.raw.begin(), bb.raw.end(), 0xff);
  ba.put(c.a);
  bb.put(c.b);
  std::vector<double> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = elem(c.a[i], c.b[i]);
  const OracleStats o = oracle_stats(w, square_exact);
  ptth::Stats got{}, ref{};
  run(ptth::kernels_for(tier), ba.ptr(), bb.ptr(), n, &got);
  run(ptth::kernels_for(SimdTier::scalar), ba.ptr(), bb.ptr(), n, &ref);
  const char* tn = ptth::tier_name(tier);
  CHECK_MSG(got.finite == o.finite, "%s %s n=%zu offsets=%zu,%zu: finite=%d, want %d", tn, name, n,
            oa, ob, int(got.finite), int(o.finite));
  if (!o.finite || !got.finite) return;
  CHECK_MSG(bits<uint64_t>(got.sumsq) == bits<uint64_t>(o.sumsq) &&
                bits<uint64_t>(got.maxabs) == bits<uint64_t>(o.maxabs),
            "%s %s n=%zu offsets=%zu,%zu: sumsq %a maxabs %a, want %a %a", tn, name, n, oa, ob,
            got.sumsq, got.maxabs, o.sumsq, o.maxabs);
  CHECK_MSG(ref.finite && bits<uint64_t>(got.sumsq) == bits<uint64_t>(ref.sumsq) &&
                bits<uint64_t>(got.maxabs) == bits<uint64_t>(ref.maxabs),
            "%s %s n=%zu: differs from the scalar tier", tn, name, n);
  if (bits<uint64_t>(o.sequential) != bits<uint64_t>(o.sumsq)) ++g_order_sensitive;
  if (std::isfinite(o.sumsq)) {
    // Each lane adds at most ceil(n/16) terms, the tree 4 levels, and an
    // f64 square rounds once: all terms are >= 0, so the error is relative.
    const long double eps = 0x1p-53L, terms = (long double)(n / 16 + 6);
    const long double tol = terms * eps * o.exact * 1.01L + (long double)n * 0x1p-1074L;
    CHECK_MSG(std::fabs((long double)got.sumsq - o.exact) <= tol,
              "%s %s n=%zu: sumsq %a is %Lg from the exact sum", tn, name, n, got.sumsq,
              std::fabs((long double)got.sumsq - o.exact));
  }
}

template <class T>
T signed_zero(bool negative);
template <>
uint16_t signed_zero<uint16_t>(bool negative) {
  return negative ? 0x8000 : 0;
}
template <>
float signed_zero<float>(bool negative) {
  return negative ? -0.0f : 0.0f;
}
template <>
double signed_zero<double>(bool negative) {
  return negative ? -0.0 : 0.0;
}

// One stats kernel over lengths 0..67 and long ones, misaligned inputs whose
// surroundings are NaN (an over-read would flip finite), data that is
// finite, holds one non-finite value (in a, or in b for the differences),
// or is all signed zeros.
template <class T>
void check_stats(
    const char* name, SimdTier tier,
    const std::function<void(const Kernels&, const T*, const T*, size_t, ptth::Stats*)>& run,
    const std::function<T()>& gen, const std::function<double(T, T)>& elem,
    const std::vector<T>& bad, bool square_exact) {
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 67; ++n) lengths.push_back(n);
  for (size_t n : {255, 256, 257, 1000, 4099, 65537}) lengths.push_back(n);
  for (size_t n : lengths) {
    for (int mode = 0; mode < 4; ++mode) {
      StatsCase<T> c;
      c.a.resize(n);
      c.b.resize(n);
      for (size_t i = 0; i < n; ++i) {
        c.a[i] = mode == 3 ? signed_zero<T>(g_rng() & 1) : gen();
        c.b[i] = mode == 3 ? c.a[i] : gen();
      }
      if (mode == 1 && n) c.a[g_rng() % n] = bad[g_rng() % bad.size()];
      if (mode == 2 && n) c.b[g_rng() % n] = bad[g_rng() % bad.size()];
      const bool long_run = n > 67;
      for (size_t oa = 0; oa < 4; ++oa)
        for (size_t ob = 0; ob < 4; ++ob) {
          if (long_run && !(oa == ob) && !(oa == 1 && ob == 3)) continue;
          run_stats_case<T>(name, tier, run, elem, square_exact, c, oa, ob);
        }
    }
  }
}

void test_stats(SimdTier tier) {
  using K = const Kernels&;
  using S = ptth::Stats;
  const float inf32 = std::numeric_limits<float>::infinity();
  const double inf64 = std::numeric_limits<double>::infinity();
  const std::vector<float> bad32 = {inf32, -inf32, std::numeric_limits<float>::quiet_NaN(),
                                    bits<float>(0x7f800001u), bits<float>(0xffffffffu)};
  const std::vector<double> bad64 = {inf64, -inf64, std::numeric_limits<double>::quiet_NaN(),
                                     bits<double>(0x7ff0000000000001ull),
                                     bits<double>(0xffffffffffffffffull)};
  const std::function<uint16_t()> g16 = [] { return gen_finite<uint16_t>(); };
  const std::function<float()> g32 = [] { return gen_finite<float>(); };
  const std::function<double()> g64 = gen_stats_f64;
  check_stats<uint16_t>(
      "stats_f16", tier,
      [](K k, const uint16_t* a, const uint16_t*, size_t n, S* s) { k.stats_f16(a, n, s); }, g16,
      [](uint16_t a, uint16_t) { return half_value(a); }, {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff},
      true);
  check_stats<float>(
      "stats_f32", tier,
      [](K k, const float* a, const float*, size_t n, S* s) { k.stats_f32(a, n, s); }, g32,
      [](float a, float) { return double(a); }, bad32, true);
  check_stats<double>(
      "stats_f64", tier,
      [](K k, const double* a, const double*, size_t n, S* s) { k.stats_f64(a, n, s); }, g64,
      [](double a, double) { return a; }, bad64, false);
  check_stats<float>(
      "stats_sub_f32", tier,
      [](K k, const float* a, const float* b, size_t n, S* s) { k.stats_sub_f32(a, b, n, s); }, g32,
      [](float a, float b) {
        const float d = a - b;  // rounded in float
        return double(d);
      },
      bad32, true);
  check_stats<double>(
      "stats_sub_f64", tier,
      [](K k, const double* a, const double* b, size_t n, S* s) { k.stats_sub_f64(a, b, n, s); },
      g64, [](double a, double b) { return a - b; }, bad64, false);

  // Finite data whose f64 squares overflow: finite stays true, sumsq is inf.
  std::vector<double> huge(37, 1e200);
  S s{};
  ptth::kernels_for(tier).stats_f64(huge.data(), huge.size(), &s);
  CHECK_MSG(s.finite && std::isinf(s.sumsq) && s.maxabs == 1e200,
            "%s stats_f64 of 1e200s: finite %d sumsq %a", ptth::tier_name(tier), int(s.finite),
            s.sumsq);
  // Millions of elements: the lanes carry long sums.
  const size_t n = 3000017;
  std::vector<uint16_t> h(n);
  std::vector<double> d(n), w(n);
  for (size_t i = 0; i < n; ++i) h[i] = gen_finite<uint16_t>(), d[i] = gen_stats_f64();
  for (size_t i = 0; i < n; ++i) w[i] = half_value(h[i]);
  OracleStats o = oracle_stats(w, true);
  ptth::kernels_for(tier).stats_f16(h.data(), n, &s);
  CHECK_MSG(s.finite && bits<uint64_t>(s.sumsq) == bits<uint64_t>(o.sumsq) && s.maxabs == o.maxabs,
            "%s stats_f16 n=%zu: %a, want %a", ptth::tier_name(tier), n, s.sumsq, o.sumsq);
  o = oracle_stats(d, false);
  ptth::kernels_for(tier).stats_f64(d.data(), n, &s);
  CHECK_MSG(s.finite == o.finite && bits<uint64_t>(s.sumsq) == bits<uint64_t>(o.sumsq) &&
                s.maxabs == o.maxabs,
            "%s stats_f64 n=%zu: %a, want %a", ptth::tier_name(tier), n, s.sumsq, o.sumsq);
}

// ------------------------------------------------------------------ bench ---

// --bench: ns per element over 25M elements, and in cache, for each wave-2
// kernel in every available tier, beside a plain loop doing what NumPy's
// does (compiled here for the baseline ISA at the build's -O level; the
// stats loop is one pass, where NumPy needs isfinite, abs().max() and a
// dot). Best of 5 after a warm-up; the machine's other load shows up in
// every column alike.
volatile double g_sink = 0;

template <class F>
double best_ns(size_t n, F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best * 1e9 / double(n);
}

#if defined(__GNUC__)
#define PTTH_NOINLINE __attribute__((noinline))
#else
#define PTTH_NOINLINE
#endif

PTTH_NOINLINE void plain_f64_to_f32(const double* s, float* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = float(s[i]);
}
PTTH_NOINLINE void plain_f32_to_f64(const float* s, double* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = double(s[i]);
}
PTTH_NOINLINE void plain_f16_to_f64(const uint16_t* s, double* d, size_t n, const double* table) {
  for (size_t i = 0; i < n; ++i) d[i] = table[s[i]];
}
template <class T, class E>
PTTH_NOINLINE void plain_stats(const T* a, const T* b, size_t n, ptth::Stats* out, E elem) {
  bool finite = true;
  double sumsq = 0, maxabs = 0;
  for (size_t i = 0; i < n; ++i) {
    const double v = elem(a, b, i);
    finite = finite && std::isfinite(v);
    sumsq += v * v;
    maxabs = std::max(maxabs, std::fabs(v));
  }
  *out = {finite, sumsq, maxabs};
}
template <class T>
PTTH_NOINLINE void plain_div(const T* acc, T d, T* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = acc[i] / d;
}
template <class T>
PTTH_NOINLINE void plain_axpy_div(T* r, T lr, const T* acc, T d, size_t n) {
  for (size_t i = 0; i < n; ++i) r[i] = r[i] + lr * (acc[i] / d);
}

void run_bench(const std::vector<SimdTier>& tiers) {
  const size_t n = 25000000;
  std::vector<double> a64(n), b64(n), o64(n), r64(n), table(65536);
  std::vector<float> a32(n), b32(n), o32(n), r32(n);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) {
    a64[i] = gen_stats_f64(), b64[i] = gen_stats_f64(), r64[i] = gen_stats_f64();
    a32[i] = float(a64[i] * 1e-3), b32[i] = float(b64[i] * 1e-3), r32[i] = float(r64[i] * 1e-3);
    h[i] = gen_finite<uint16_t>();
  }
  for (uint32_t k = 0; k < 65536; ++k) table[k] = half_value(uint16_t(k));
  ptth::Stats st{};
  using K = const Kernels&;
  struct Row {
    const char* name;
    std::function<void(size_t)> plain;
    std::function<void(K, size_t)> kernel;
  };
  const Row rows[] = {
      {"f64_to_f32", [&](size_t n) { plain_f64_to_f32(a64.data(), o32.data(), n); },
       [&](K k, size_t n) { k.f64_to_f32(a64.data(), o32.data(), n); }},
      {"f32_to_f64", [&](size_t n) { plain_f32_to_f64(a32.data(), o64.data(), n); },
       [&](K k, size_t n) { k.f32_to_f64(a32.data(), o64.data(), n); }},
      {"f16_to_f64", [&](size_t n) { plain_f16_to_f64(h.data(), o64.data(), n, table.data()); },
       [&](K k, size_t n) { k.f16_to_f64(h.data(), o64.data(), n); }},
      {"stats_f16",
       [&](size_t n) {
         plain_stats(h.data(), h.data(), n, &st,
                     [&](const uint16_t* x, const uint16_t*, size_t i) { return table[x[i]]; });
       },
       [&](K k, size_t n) { k.stats_f16(h.data(), n, &st); }},
      {"stats_f32",
       [&](size_t n) {
         plain_stats(a32.data(), a32.data(), n, &st,
                     [](const float* x, const float*, size_t i) { return double(x[i]); });
       },
       [&](K k, size_t n) { k.stats_f32(a32.data(), n, &st); }},
      {"stats_f64",
       [&](size_t n) {
         plain_stats(a64.data(), a64.data(), n, &st,
                     [](const double* x, const double*, size_t i) { return x[i]; });
       },
       [&](K k, size_t n) { k.stats_f64(a64.data(), n, &st); }},
      {"stats_sub_f32",
       [&](size_t n) {
         plain_stats(a32.data(), b32.data(), n, &st, [](const float* x, const float* y, size_t i) {
           return double(float(x[i] - y[i]));
         });
       },
       [&](K k, size_t n) { k.stats_sub_f32(a32.data(), b32.data(), n, &st); }},
      {"stats_sub_f64",
       [&](size_t n) {
         plain_stats(a64.data(), b64.data(), n, &st,
                     [](const double* x, const double* y, size_t i) { return x[i] - y[i]; });
       },
       [&](K k, size_t n) { k.stats_sub_f64(a64.data(), b64.data(), n, &st); }},
      {"div_f32", [&](size_t n) { plain_div(a32.data(), 3.0f, o32.data(), n); },
       [&](K k, size_t n) { k.div_f32(a32.data(), 3.0f, o32.data(), n); }},
      {"div_f64", [&](size_t n) { plain_div(a64.data(), 3.0, o64.data(), n); },
       [&](K k, size_t n) { k.div_f64(a64.data(), 3.0, o64.data(), n); }},
      {"axpy_div_f32", [&](size_t n) { plain_axpy_div(r32.data(), 0.5f, a32.data(), 3.0f, n); },
       [&](K k, size_t n) { k.axpy_div_f32(r32.data(), 0.5f, a32.data(), 3.0f, n); }},
      {"axpy_div_f64", [&](size_t n) { plain_axpy_div(r64.data(), 0.5, a64.data(), 3.0, n); },
       [&](K k, size_t n) { k.axpy_div_f64(r64.data(), 0.5, a64.data(), 3.0, n); }},
  };
  // The same rows over 25M elements (memory-bound) and over the first 8192
  // elements repeated (in cache, as in the aggregator's chunked passes).
  const size_t kSmall = 8192, kReps = 1000;
  for (const bool small : {false, true}) {
    if (small)
      std::printf(
          "\nns/element in cache: %zu elements x %zu calls (best of 5; x = plain loop / tier)\n",
          kSmall, kReps);
    else
      std::printf("ns/element over %zu elements (best of 5; x = plain loop / tier)\n", n);
    std::printf("%-14s %8s", "kernel", "plain");
    for (SimdTier t : tiers) std::printf(" %15s", ptth::tier_name(t));
    std::printf("\n");
    const size_t len = small ? kSmall : n, reps = small ? kReps : 1;
    for (const Row& r : rows) {
      const double base = best_ns(len * reps, [&] {
        for (size_t k = 0; k < reps; ++k) r.plain(len);
      });
      std::printf("%-14s %8.3f", r.name, base);
      for (SimdTier t : tiers) {
        const Kernels& kt = ptth::kernels_for(t);
        const double ns = best_ns(len * reps, [&] {
          for (size_t k = 0; k < reps; ++k) r.kernel(kt, len);
        });
        std::printf(" %8.3f %5.2fx", ns, base / ns);
      }
      std::printf("\n");
      std::fflush(stdout);
      g_sink = g_sink + st.sumsq + o64[len / 2] + o32[len / 3] + r64[len / 5] + r32[len / 7];
    }
  }
}

// ----------------------------------------------------------------- dispatch ---

bool only_scalar(SimdTier t) {
  return t == SimdTier::scalar;
}
bool x86_avx2(SimdTier t) {
  return t == SimdTier::scalar || t == SimdTier::avx2;
}
bool x86_all(SimdTier t) {
  return t == SimdTier::scalar || t == SimdTier::avx2 || t == SimdTier::avx512;
}
bool arm(SimdTier t) {
  return t == SimdTier::scalar || t == SimdTier::neon;
}

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
    CHECK_MSG(threw == !ptth::tier_available(t), "kernels_for(%s) threw=%d", ptth::tier_name(t),
              int(threw));
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
      {nullptr, x86_all, SimdTier::avx512, false},
      {"", x86_all, SimdTier::avx512, false},
      {"auto", x86_avx2, SimdTier::avx2, false},
      {"scalar", x86_all, SimdTier::scalar, false},
      {"avx2", x86_all, SimdTier::avx2, false},
      {"avx512", x86_all, SimdTier::avx512, false},
      {"avx512", x86_avx2, SimdTier::avx2, true},
      {"avx512", only_scalar, SimdTier::scalar, true},
      {"avx2", only_scalar, SimdTier::scalar, true},
      {"neon", x86_all, SimdTier::scalar, true},
      {"neon", arm, SimdTier::neon, false},
      {"avx2", arm, SimdTier::neon, true},
      {"avx512", arm, SimdTier::neon, true},
      {"sse9", x86_avx2, SimdTier::avx2, true},
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
  bool quick = false, bench = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--bench") == 0) {
      bench = true;
    } else {
      std::fprintf(stderr, "usage: %s [--quick | --bench]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<SimdTier> tiers = available_tiers();
  std::printf("tiers:");
  for (SimdTier t : tiers) std::printf(" %s", ptth::tier_name(t));
  std::printf("; active %s%s%s\n", ptth::tier_name(ptth::active_tier()),
              *ptth::simd_note() ? "; " : "", ptth::simd_note());
  if (bench) {
    run_bench(tiers);
    return 0;
  }

  struct Section {
    const char* name;
    std::function<void()> run;
  };
  const Section sections[] = {
      {"dispatch", test_dispatch},
      {"known values", [&] { test_known_values(tiers); }},
      {"f16_to_f32 all halves", [&] { test_f16_to_f32_exhaustive(tiers); }},
      {"f64_to_f16", [&] { test_f64_to_f16(tiers); }},
      {"elementwise",
       [&] {
         for (SimdTier t : tiers) test_elementwise(t);
       }},
      {"all_finite",
       [&] {
         for (SimdTier t : tiers) test_all_finite(t);
       }},
      {"f64_to_f32", [&] { test_f64_to_f32(tiers); }},
      {"f32/f16_to_f64", [&] { test_widening(tiers); }},
      {"wave-2 elementwise",
       [&] {
         for (SimdTier t : tiers) test_wave2_elementwise(t);
       }},
      {"div/axpy_div cases",
       [&] {
         for (SimdTier t : tiers) test_wave2_traps(t);
       }},
      {"stats",
       [&] {
         for (SimdTier t : tiers) test_stats(t);
         CHECK_MSG(g_order_sensitive > 100, "only %zu stats cases tell 16 lanes from one",
                   g_order_sensitive);
       }},
      {quick ? "large outputs (skipped)" : "large (streamed) outputs",
       [&] {
         if (!quick) test_large_outputs(tiers);
       }},
      {quick ? "f32_to_f16 sampled sweep" : "f32_to_f16 all 2^32",
       [&] { test_f32_to_f16_exhaustive(tiers, quick); }},
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
