// Regression tests of "no silent wrong results" (docs/hardening.md) at the core's
// level: crafted names whose std::hash is one value, the byte-order decision
// of "auto" applied to a whole upload, the template's cap, the too_large
// message, and merges whose weight sums would overflow.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/aggregator.hpp"
#include "core/deflate.hpp"
#include "core/keyed_hash.hpp"
#include "core/reader.hpp"
#include "core/stream_decoder.hpp"
#include "tests/check.hpp"

using namespace ptth;

namespace {

// ---- names with one libstdc++ hash (tests/collisions.py explains the solve) ----

constexpr uint64_t kMul = (uint64_t(0xc6a4a793) << 32) + 0x5bd1e995;

uint64_t mix(uint64_t v) {
  return v ^ (v >> 47);
}

uint64_t inverse(uint64_t a) {  // of an odd number, mod 2**64 (Newton's iteration)
  uint64_t x = a;
  for (int i = 0; i < 6; ++i) x *= 2 - a * x;
  return x;
}

uint64_t load_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | uint8_t(p[i]);
  return v;
}

std::vector<std::string> colliding_names(size_t count) {
  const uint64_t inv = inverse(kMul);
  const std::string prefix = "layer.w_";
  uint64_t h = 0xc70f6907ull ^ (24 * kMul);
  h = (h ^ (mix(load_le(prefix.data()) * kMul) * kMul)) * kMul;
  const uint64_t target = 0x0123456789abcdefull * inv;
  std::vector<std::string> out;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  while (out.size() < count) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t mid = ((state >> 8) & 0x3f3f3f3f3f3f3f3full) + 0x3030303030303030ull;
    const uint64_t y = ((h ^ (mix(mid * kMul) * kMul)) * kMul) ^ target;
    const uint64_t last = mix(y * inv) * inv;
    bool ascii = true;
    for (int i = 0; i < 8; ++i) {
      const uint8_t b = uint8_t(last >> (8 * i));
      ascii = ascii && b > 0 && b < 0x80;
    }
    if (!ascii) continue;
    std::string name = prefix;
    for (int i = 0; i < 8; ++i) name += char(mid >> (8 * i));
    for (int i = 0; i < 8; ++i) name += char(last >> (8 * i));
    out.push_back(name);
  }
  return out;
}

void put_u32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

void put_record(Bytes& b, const std::string& name, const std::vector<uint32_t>& dims, uint32_t code,
                const Bytes& payload) {
  put_u32(b, uint32_t(name.size()));
  b.insert(b.end(), name.begin(), name.end());
  put_u32(b, uint32_t(dims.size()));
  for (uint32_t d : dims) put_u32(b, d);
  put_u32(b, code);
  put_u32(b, uint32_t(payload.size()));
  b.insert(b.end(), payload.begin(), payload.end());
}

Bytes header(uint32_t count) {
  Bytes b = {'P', 'T', 'T', 'H'};
  put_u32(b, 1);
  put_u32(b, count);
  return b;
}

Bytes f32_payload(const std::vector<float>& v, bool big) {
  Bytes p(4 * v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t w;
    std::memcpy(&w, &v[i], 4);
    for (int k = 0; k < 4; ++k) p[4 * i + k] = uint8_t(w >> (big ? 24 - 8 * k : 8 * k));
  }
  return p;
}

void test_colliding_names() {
  const std::vector<std::string> names = colliding_names(20000);
#ifdef __GLIBCXX__
  // The construction attacks libstdc++'s unkeyed hash: every name, one value.
  std::unordered_set<size_t> plain;
  for (const std::string& n : names) plain.insert(std::hash<std::string>{}(n));
  CHECK(plain.size() == 1);
#endif
  std::unordered_set<size_t> keyed;
  for (const std::string& n : names) keyed.insert(KeyedHash{}(n));
  CHECK(keyed.size() + 2 >= names.size());  // a random 64-bit hash: no collision expected

  // The reader and the aggregator's index take all of them (quadratic time
  // before: a chain of 20000 in one bucket).
  Bytes blob = header(uint32_t(names.size()));
  std::vector<TemplateParam> params;
  static const float zero = 0;
  for (const std::string& n : names) {
    put_record(blob, n, {1}, 0, f32_payload({0.5f}, false));
    params.push_back({n, {1}, DType::float32, &zero});
  }
  CollectingSink sink(false);
  bool ok = true;
  try {
    StreamDecoder dec(ReadOptions{}, &sink);
    dec.feed(blob.data(), blob.size(), true);
    dec.finish();
  } catch (const Error&) {
    ok = false;
  }
  CHECK(ok && sink.records().size() == names.size());
  Aggregator agg(std::move(params), Accum::f64);
  AddOptions opts;
  AddResult r = agg.add_blob(blob.data(), blob.size(), 1.0, opts);
  CHECK(r.parameters == names.size());
}

// ---- byteorder "auto" over a whole upload --------------------------------------

// 0x3e999941: both readings are plausible floats (0.2999 and 19.2), so the
// record ties; 1.5 and -2.25 decide (their low bytes are zero).
const Bytes kTie = {0x3e, 0x99, 0x99, 0x41};

std::unique_ptr<Aggregator> two_params() {
  static const float zeros[3] = {0, 0, 0};
  return std::make_unique<Aggregator>(std::vector<TemplateParam>{{"b", {1}, DType::float32, zeros},
                                                                 {"w", {2}, DType::float32, zeros}},
                                      Accum::f64);
}

double acc(Aggregator& agg, size_t i, size_t k) {
  Aggregator::Hold hold(agg);
  return static_cast<const double*>(agg.accumulator(hold, i))[k];
}

void test_auto_decides_for_the_whole_upload() {
  AddOptions opts;
  opts.read.byteorder = ByteOrder::automatic;
  // Android: the tied record first; the decision from the second holds for both.
  Bytes blob = header(2);
  put_record(blob, "b", {1}, 0, kTie);
  put_record(blob, "w", {2}, 0, f32_payload({1.5f, -2.25f}, true));
  auto agg = two_params();
  AddResult r = agg->add_blob(blob.data(), blob.size(), 1.0, opts);
  CHECK(r.big_endian);
  float be;
  const uint32_t w = 0x3e999941u;
  std::memcpy(&be, &w, 4);
  CHECK(acc(*agg, 0, 0) == double(be));
  CHECK(acc(*agg, 1, 0) == 1.5 && acc(*agg, 1, 1) == -2.25);

  // Only the tied record: neither order is supported by the data.
  Bytes alone = header(1);
  put_record(alone, "b", {1}, 0, kTie);
  auto agg2 = two_params();
  Reason reason = Reason::closed;
  uint64_t offset = 0;
  try {
    agg2->add_blob(alone.data(), alone.size(), 1.0, opts);
  } catch (const Error& e) {
    reason = e.reason();
    offset = e.offset();
  }
  CHECK(reason == Reason::ambiguous_byteorder && offset == 12 + 4 + 1 + 4 + 4 + 8);
  CHECK(agg2->totals().count == 0);
  // An explicit order takes it either way.
  opts.read.byteorder = ByteOrder::little;
  CHECK(agg2->add_blob(alone.data(), alone.size(), 1.0, opts).parameters == 1);

  // Zeros read the same in both orders: no ambiguity.
  Bytes zeros = header(1);
  put_record(zeros, "b", {1}, 0, Bytes(4, 0));
  opts.read.byteorder = ByteOrder::automatic;
  CHECK(agg2->add_blob(zeros.data(), zeros.size(), 1.0, opts).parameters == 1);
}

// ---- limits ----------------------------------------------------------------------

void test_limits_say_what_they_are() {
  Bytes blob = header(1);
  put_record(blob, "w", {64}, 0, Bytes(256, 0));
  std::string message;
  try {
    ReadOptions o;
    o.max_size = 100;
    CollectingSink sink(true);
    Reader reader(o, &sink);
    reader.feed(blob.data(), blob.size());
  } catch (const Error& e) {
    CHECK(e.reason() == Reason::too_large);
    message = e.message();
  }
  CHECK(message.find("max_size (100 bytes)") != std::string::npos);
  CHECK(message.find("UNLIMITED") != std::string::npos);

  // A compressed upload past what the template can justify names that cap.
  static const float zero = 0;
  Aggregator agg({{"w", {1}, DType::float32, &zero}}, Accum::f64);
  const uint64_t cap = agg.blob_cap();
  CHECK(cap == 12 + 4 + 1 + 4 + 4 + 4 + 4 + 8);
  Bytes z = deflate_all(blob.data(), blob.size(), 6, Wrapper::zlib);
  AddOptions opts;
  message.clear();
  try {
    agg.add_blob(z.data(), z.size(), 1.0, opts);
  } catch (const Error& e) {
    CHECK(e.reason() == Reason::too_large && e.offset() <= cap);
    message = e.message();
  }
  CHECK(message.find(std::to_string(cap) + " bytes") != std::string::npos);
}

// ---- merges whose weight sums overflow --------------------------------------------

void test_merge_refuses_overflowing_weights() {
  static const float zero = 0;
  std::vector<TemplateParam> one = {{"w", {1}, DType::float32, &zero}};
  Aggregator a(one, Accum::f64), b(one, Accum::f64);
  const float x = 1;
  AddOptions opts;
  a.add_arrays({{"w", {1}, DType::float32, &x}}, 1e308, opts);
  b.add_arrays({{"w", {1}, DType::float32, &x}}, 1e308, opts);
  Reason reason = Reason::closed;
  try {
    a.merge(b);
  } catch (const Error& e) {
    reason = e.reason();
  }
  CHECK(reason == Reason::overflow);
  CHECK(a.totals().count == 1 && a.totals().total_weight == 1e308);
  {
    Aggregator::Hold hold(a);
    CHECK(static_cast<const double*>(a.accumulator(hold, 0))[0] == 1e308);
  }
  const double state = 1.0;
  reason = Reason::closed;
  try {
    a.merge_state({&state}, {1e308}, {1, 1e308, 0});
  } catch (const Error& e) {
    reason = e.reason();
  }
  CHECK(reason == Reason::overflow && a.totals().count == 1);
}

}  // namespace

int main() {
  test_colliding_names();
  test_auto_decides_for_the_whole_upload();
  test_limits_say_what_they_are();
  test_merge_refuses_overflowing_weights();
  return report("test_trust");
}
