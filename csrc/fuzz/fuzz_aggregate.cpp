// Aggregator::add_blob with the input as the update blob, over a small fixed
// template (make_corpus.py writes seed updates for the same template):
//
//   w          float32  [2]        fc.weight  float16  [2, 3]
//   fc.bias    float64  []         steps      int32    [0]
//   emb        float16  [64, 80]   (more than one 4096-element conversion chunk)
//   count      int32    [3]
//
// Four configurations cover both accumulator types, delta and full updates,
// the three byte orders, relabel_float32 and allow_nonfinite. Checks:
// a failed add leaves every accumulator, weight sum and total bit for bit as
// it was (atomicity); an add that failed only as `nonfinite` succeeds when
// non-finite values are allowed; a successful add equals add_parts() of the
// same records decoded separately (aligned, host order), bit for bit.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/aggregator.hpp"
#include "core/stream_decoder.hpp"
#include "fuzz/fuzz_common.hpp"

using namespace ptth;

namespace {

struct Spec {
  const char* name;
  std::vector<uint32_t> dims;
  DType dtype;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"w", {2}, DType::float32},          {"fc.weight", {2, 3}, DType::float16},
      {"fc.bias", {}, DType::float64},     {"steps", {0}, DType::int32},
      {"emb", {64, 80}, DType::float16},   {"count", {3}, DType::int32},
  };
  return s;
}

uint64_t numel_of(const Spec& s) {
  uint64_t n = 1;
  for (uint32_t d : s.dims) n *= d;
  return n;
}

// Template values: small, finite, distinct per element.
std::vector<std::vector<uint8_t>> make_templates() {
  std::vector<std::vector<uint8_t>> t;
  for (const Spec& s : specs()) {
    uint64_t n = numel_of(s);
    std::vector<uint8_t> bytes(n * itemsize(s.dtype) + 1);
    for (uint64_t i = 0; i < n; ++i) {
      double v = double(int64_t(i % 17) - 8) * 0.125;
      switch (s.dtype) {
        case DType::float32: {
          float f = float(v);
          std::memcpy(&bytes[4 * i], &f, 4);
          break;
        }
        case DType::float64: std::memcpy(&bytes[8 * i], &v, 8); break;
        case DType::int32: {
          int32_t k = int32_t(i % 17) - 8;
          std::memcpy(&bytes[4 * i], &k, 4);
          break;
        }
        case DType::float16: {
          uint16_t h = uint16_t(0x3000 + (i % 17) * 0x40);  // 0.125 .. ~0.6, exact
          std::memcpy(&bytes[2 * i], &h, 2);
          break;
        }
      }
    }
    t.push_back(std::move(bytes));
  }
  return t;
}

struct Instance {
  std::vector<std::vector<uint8_t>> accs;
  std::unique_ptr<Aggregator> agg;

  Instance(Accum accum, const std::vector<std::vector<uint8_t>>& tmpl) {
    const size_t width = accum == Accum::f64 ? 8 : 4;
    std::vector<Param> params;
    for (size_t i = 0; i < specs().size(); ++i) {
      const Spec& s = specs()[i];
      Param p;
      p.name = s.name;
      p.dims = s.dims;
      p.numel = numel_of(s);
      p.dtype = s.dtype;
      p.tmpl = tmpl[i].data();
      accs.emplace_back(p.numel * width + 1, 0);
      p.acc = accs.back().data();
      params.push_back(std::move(p));
    }
    agg = std::make_unique<Aggregator>(std::move(params), accum);
    // Start from a non-zero state: one add of the template itself.
    std::vector<UpdatePart> seed;
    for (size_t i = 0; i < specs().size(); ++i)
      seed.push_back({i, specs()[i].dtype, tmpl[i].data(), numel_of(specs()[i])});
    agg->add_parts(seed, 1.0, /*full=*/false, /*allow_nonfinite=*/false);
  }

  struct State {
    std::vector<std::vector<uint8_t>> accs;
    std::vector<double> sums;
    uint64_t count;
    double total;
    bool operator==(const State& o) const {
      return accs == o.accs && sums == o.sums && count == o.count &&
             std::memcmp(&total, &o.total, sizeof total) == 0;
    }
  };
  State state() { return {accs, agg->weight_sums(), agg->count(), agg->total_weight()}; }
};

struct Config {
  Accum accum;
  bool full;
  ByteOrder order;
  bool relabel;
  bool allow_nonfinite;
};

constexpr Config kConfigs[] = {
    {Accum::f64, false, ByteOrder::little, false, false},
    {Accum::f32, true, ByteOrder::automatic, true, false},
    {Accum::f64, true, ByteOrder::big, false, false},
    {Accum::f32, false, ByteOrder::little, false, true},
};

bool add_reason(Reason r) {
  return r == Reason::unknown_name || r == Reason::shape_mismatch || r == Reason::nonfinite;
}

// The same update through add_parts: decoded on its own into aligned host-order copies.
void add_as_parts(Instance& inst, const uint8_t* data, size_t size, ReadOptions opts,
                  double weight, const Config& c, bool allow_nonfinite) {
  if (detect_wrapper(data, std::min<size_t>(size, 4)) == Wrapper::none) opts.max_size = UINT64_MAX;
  CollectingSink sink(/*copy=*/true);
  StreamDecoder dec(opts, &sink);
  dec.feed(data, size);
  dec.finish();
  std::vector<UpdatePart> parts;
  for (const CollectedRecord& r : sink.records()) {
    size_t idx = inst.agg->find(r.info.name);
    FUZZ_CHECK(idx != Aggregator::npos && inst.agg->params()[idx].dims == r.info.dims,
               "add_blob accepted record %u ('%s') that does not fit the template", r.info.index,
               r.info.name.c_str());
    parts.push_back({idx, r.info.dtype, r.data, r.info.numel});
  }
  inst.agg->add_parts(parts, weight, c.full, allow_nonfinite);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::install_alloc_hooks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::vector<uint8_t>> tmpl = make_templates();
  const bool plain = detect_wrapper(data, std::min<size_t>(size, 4)) == Wrapper::none;
  fuzz::AllocLimit limit((size_t(2) << 20) + 32 * (plain ? size : 1040 * size));
  const double weight = 0.75;

  for (const Config& c : kConfigs) {
    ReadOptions opts;
    opts.byteorder = c.order;
    opts.relabel_float32 = c.relabel;
    opts.max_size = kDefaultMaxSize;

    Instance a(c.accum, tmpl);
    const Instance::State before = a.state();
    bool allow = c.allow_nonfinite;
    bool ok = false;
    try {
      a.agg->add_blob(data, size, opts, weight, c.full, allow);
      ok = true;
    } catch (const Error& e) {
      FUZZ_CHECK(a.state() == before, "a failed add (%s at %llu) changed the aggregator",
                 reason_name(e.reason()), (unsigned long long)e.offset());
      FUZZ_CHECK(e.reason() != Reason::bad_argument && e.reason() != Reason::closed &&
                     e.reason() != Reason::unsupported_dtype,
                 "add_blob: reason %s", reason_name(e.reason()));
      if (add_reason(e.reason()))  // blob errors name the record and its payload offset
        FUZZ_CHECK(e.record() >= 0 && e.offset() != kNoOffset && e.offset() <= 1040 * size,
                   "%s at offset %llu, record %lld", reason_name(e.reason()),
                   (unsigned long long)e.offset(), (long long)e.record());
      if (e.reason() == Reason::nonfinite) {
        FUZZ_CHECK(!allow, "nonfinite although allowed");
        allow = true;
        a.agg->add_blob(data, size, opts, weight, c.full, allow);  // must not throw now
        ok = true;
      }
    }
    if (!ok) continue;
    FUZZ_CHECK(a.agg->count() == before.count + 1, "count %llu after one add",
               (unsigned long long)a.agg->count());

    Instance b(c.accum, tmpl);
    add_as_parts(b, data, size, opts, weight, c, allow);
    FUZZ_CHECK(a.state() == b.state(), "add_blob and add_parts disagree (accum %s, %s)",
               c.accum == Accum::f64 ? "float64" : "float32", c.full ? "full" : "delta");
  }
  return 0;
}
