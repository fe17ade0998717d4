// Aggregator::add_blob with the input as the update blob, over a small fixed
// template (make_corpus.py writes seed updates for the same template):
//
//   w          float32  [2]        fc.weight  float16  [2, 3]
//   fc.bias    float64  []         steps      int32    [0]
//   emb        float16  [64, 80]   (more than one 4096-element conversion chunk)
//   count      int32    [3]
//
// Six configurations cover both accumulator types, delta and full updates,
// the three byte orders, the three relabel modes, allow_nonfinite,
// allow_cast, clip_norm / max_norm / max_abs and count_empty. Checks:
// - a failed add leaves every accumulator, weight sum and total bit for bit
//   as it was (atomicity), with a reason an add can give;
// - an add that failed only as `nonfinite` does not fail so when non-finite
//   values are allowed;
// - add_blob equals add_arrays of the same records decoded on their own
//   (aligned, host order; under byteorder "auto" the blob's decision applied
//   to every record, and a blob that never decides but reads differently in
//   the two orders refused as ambiguous_byteorder): the same outcome, the same
//   result (norm, factor...) and the same state, bit for bit;
// - nothing is allocated beyond what the template justifies for a compressed
//   upload (its cap: every parameter at float64 plus headers);
// - add_many of [input, a valid update, input] equals three sequential adds,
//   outcome by outcome and state bit for bit.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/aggregator.hpp"
#include "core/stream_decoder.hpp"
#include "fuzz/fuzz_common.hpp"

using namespace ptth;

namespace {

struct Spec {
  const char* name;
  std::vector<uint64_t> dims;
  DType dtype;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"w", {2}, DType::float32},        {"fc.weight", {2, 3}, DType::float16},
      {"fc.bias", {}, DType::float64},   {"steps", {0}, DType::int32},
      {"emb", {64, 80}, DType::float16}, {"count", {3}, DType::int32},
  };
  return s;
}

uint64_t numel_of(const Spec& s) {
  uint64_t n = 1;
  for (uint64_t d : s.dims) n *= d;
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

const std::vector<std::vector<uint8_t>>& templates() {
  static const std::vector<std::vector<uint8_t>> t = make_templates();
  return t;
}

// The template itself as a mapping update: the valid upload of add_many's batch.
std::vector<UpdateArray> template_update() {
  std::vector<UpdateArray> u;
  for (size_t i = 0; i < specs().size(); ++i)
    u.push_back({specs()[i].name, specs()[i].dims, specs()[i].dtype, templates()[i].data()});
  return u;
}

struct State {
  std::vector<std::vector<uint8_t>> accs;
  std::vector<double> sums;
  Aggregator::Totals totals;
  bool operator==(const State& o) const {
    return accs == o.accs && sums == o.sums && totals.count == o.totals.count &&
           totals.empty == o.totals.empty &&
           std::memcmp(&totals.total_weight, &o.totals.total_weight, sizeof(double)) == 0;
  }
};

State state_of(Aggregator& agg) {
  Aggregator::Hold hold(agg);
  State s;
  const size_t width = agg.accum() == Accum::f64 ? 8 : 4;
  for (size_t i = 0; i < agg.size(); ++i) {
    const auto* p = static_cast<const uint8_t*>(agg.accumulator(hold, i));
    s.accs.emplace_back(p, p + agg.numel(i) * width);
  }
  s.sums = agg.weight_sums(hold);
  s.totals = agg.totals(hold);
  return s;
}

std::unique_ptr<Aggregator> build_aggregator(Accum accum) {
  std::vector<TemplateParam> params;
  for (size_t i = 0; i < specs().size(); ++i)
    params.push_back({specs()[i].name, specs()[i].dims, specs()[i].dtype, templates()[i].data()});
  auto agg = std::make_unique<Aggregator>(std::move(params), accum);
  // Start from a non-zero state: one add of the template itself.
  AddOptions plain;
  agg->add_arrays(template_update(), 1.0, plain);
  return agg;
}

// Aggregators are built once and put back into their seeded state by
// restore() for each use (building 14 per input made this target slow).
// `slot` tells apart the ones an input needs at the same time.
Aggregator& fresh_aggregator(Accum accum, int slot) {
  struct Kept {
    std::unique_ptr<Aggregator> agg;
    State seeded;
  };
  static Kept kept[2][2];
  Kept& k = kept[accum == Accum::f64 ? 0 : 1][slot];
  if (!k.agg) {
    k.agg = build_aggregator(accum);
    k.seeded = state_of(*k.agg);
  }
  std::vector<const void*> accs;
  for (const std::vector<uint8_t>& a : k.seeded.accs) accs.push_back(a.data());
  k.agg->restore(accs, k.seeded.sums, k.seeded.totals);
  return *k.agg;
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool same_result(const AddResult& a, const AddResult& b) {
  return same_bits(a.norm, b.norm) && same_bits(a.max_abs, b.max_abs) &&
         same_bits(a.factor, b.factor) && a.parameters == b.parameters &&
         a.elements == b.elements && a.counted == b.counted;
}

struct Config {
  Accum accum;
  Kind kind;
  ByteOrder order;
  Relabel relabel;
  bool allow_nonfinite;
  bool allow_cast;
  double clip_norm;
  double max_norm;
  double max_abs;
  bool count_empty;
};

constexpr Config kConfigs[] = {
    // The Aggregator's defaults.
    {Accum::f64, Kind::delta, ByteOrder::automatic, Relabel::automatic, false, false, 0, kNoBound,
     kNoBound, false},
    {Accum::f64, Kind::delta, ByteOrder::little, Relabel::off, false, false, 0, kNoBound, kNoBound,
     false},
    {Accum::f32, Kind::full, ByteOrder::automatic, Relabel::on, false, true, 0, kNoBound, kNoBound,
     true},
    {Accum::f64, Kind::full, ByteOrder::big, Relabel::off, false, false, 0, kNoBound, kNoBound,
     false},
    {Accum::f32, Kind::delta, ByteOrder::little, Relabel::automatic, true, false, 0, kNoBound,
     kNoBound, false},
    // DP-FedAvg style bounds.
    {Accum::f64, Kind::delta, ByteOrder::automatic, Relabel::automatic, false, false, 0.5, 1e4, 1e3,
     true},
};

bool add_reason(Reason r) {
  switch (r) {
    case Reason::unknown_name:
    case Reason::shape_mismatch:
    case Reason::dtype_mismatch:
    case Reason::nonfinite:
    case Reason::norm_exceeded:
    case Reason::overflow:
    case Reason::ambiguous_byteorder: return true;
    default: return false;
  }
}

bool blob_reason(Reason r) {
  switch (r) {
    case Reason::bad_magic:
    case Reason::bad_version:
    case Reason::truncated:
    case Reason::bad_name:
    case Reason::duplicate_name:
    case Reason::too_many_dims:
    case Reason::bad_dtype:
    case Reason::size_overflow:
    case Reason::length_mismatch:
    case Reason::trailing_bytes:
    case Reason::too_large:
    case Reason::not_ptth: return true;
    default: return fuzz::is_stream_reason(r);
  }
}

struct Try {
  bool ok = false;
  Reason reason = Reason::closed;  // set by the error, if any
  AddResult result;
};

template <typename F>
Try attempt(F f) {
  Try t;
  try {
    t.result = f();
    t.ok = true;
  } catch (const Error& e) {
    t.reason = e.reason();
  }
  return t;
}

AddOptions options_of(const Config& c, bool allow_nonfinite) {
  AddOptions o;
  o.kind = c.kind;
  o.read.byteorder = c.order;
  o.read.relabel = c.relabel;
  o.read.max_size = kDefaultMaxSize;
  o.allow_nonfinite = allow_nonfinite;
  o.allow_cast = c.allow_cast;
  o.count_empty = c.count_empty;
  o.clip_norm = c.clip_norm;
  o.max_norm = c.max_norm;
  o.max_abs = c.max_abs;
  return o;
}

// The same upload decoded on its own: records in host order, the "auto"
// decision applied to all of them. `ambiguous` says the blob never decided
// although a payload reads differently in the two orders.
struct Reference {
  bool decoded = false;
  bool ambiguous = false;
  bool big_endian = false;  // some record was read big-endian (AddResult::big_endian)
  uint32_t relabelled = 0;  // records whose dtype is not their code's
  std::vector<CollectedRecord> records;
  std::vector<UpdateArray> arrays;
};

Reference decode_reference(const uint8_t* data, size_t size, const AddOptions& o, uint64_t cap) {
  Reference ref;
  ReadOptions read = o.read;
  const bool plain = detect_wrapper(data, std::min<size_t>(size, 4)) == Wrapper::none;
  read.max_size = plain ? UINT64_MAX : std::min(read.max_size, cap);
  CollectingSink sink(/*copy=*/true);
  try {
    StreamDecoder dec(read, &sink);
    dec.feed(data, size);
    dec.finish();
    const Reader& r = dec.reader();
    if (read.byteorder == ByteOrder::automatic) {
      if (r.order_decided() && r.decided_order() == ByteOrder::big) {
        for (CollectedRecord& c : sink.records())
          if (!c.info.big_endian)
            byteswap_inplace(c.owned.get(), c.info.numel, itemsize(c.info.dtype));
      }
      ref.ambiguous = !r.order_decided() && r.ambiguity().seen;
    }
    ref.decoded = true;
  } catch (const Error&) {
    return ref;
  }
  ref.records = std::move(sink.records());
  const bool decided_big = read.byteorder == ByteOrder::automatic && !ref.records.empty() &&
                           ref.records.back().info.big_endian;
  for (const CollectedRecord& c : ref.records) {
    ref.big_endian = ref.big_endian || c.info.big_endian || decided_big;
    ref.relabelled += uint32_t(c.info.dtype) != c.info.code;
  }
  for (const CollectedRecord& c : ref.records)
    ref.arrays.push_back({c.info.name,
                          std::vector<uint64_t>(c.info.dims.begin(), c.info.dims.end()),
                          c.info.dtype, c.data});
  return ref;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::install_alloc_hooks();
  (void)templates();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool plain = detect_wrapper(data, std::min<size_t>(size, 4)) == Wrapper::none;
  const double weight = 0.75;

  for (const Config& c : kConfigs) {
    Aggregator* a = &fresh_aggregator(c.accum, 0);
    // A compressed upload may decode to no more than the template's cap.
    const uint64_t justified =
        plain ? size : std::min<uint64_t>(1040 * uint64_t(size), a->blob_cap());
    const State before = state_of(*a);
    bool allow = c.allow_nonfinite;
    Try got;
    {
      fuzz::AllocLimit limit((size_t(2) << 20) + 32 * justified);
      got = attempt([&] { return a->add_blob(data, size, weight, options_of(c, allow)); });
      if (!got.ok && got.reason == Reason::nonfinite) {
        FUZZ_CHECK(!allow, "nonfinite although allowed");
        FUZZ_CHECK(state_of(*a) == before, "a failed add (nonfinite) changed the aggregator");
        allow = true;
        got = attempt([&] { return a->add_blob(data, size, weight, options_of(c, allow)); });
        // ...except that a non-finite norm cannot be clipped or bounded.
        const bool bounded = c.clip_norm > 0 || c.max_norm < kNoBound;
        FUZZ_CHECK(got.ok || got.reason != Reason::nonfinite || bounded,
                   "nonfinite with allow_nonfinite");
      }
    }
    const AddOptions opts = options_of(c, allow);
    if (!got.ok) {
      FUZZ_CHECK(state_of(*a) == before, "a failed add (%s) changed the aggregator",
                 reason_name(got.reason));
      FUZZ_CHECK(add_reason(got.reason) || blob_reason(got.reason), "add_blob: reason %s",
                 reason_name(got.reason));
    } else {
      const bool counted = got.result.parameters > 0 || c.count_empty;
      FUZZ_CHECK(got.result.counted == counted, "counted %d for %u parameters",
                 int(got.result.counted), got.result.parameters);
      State after = state_of(*a);
      FUZZ_CHECK(after.totals.count == before.totals.count + (counted ? 1 : 0) &&
                     after.totals.empty == before.totals.empty + (counted ? 0 : 1),
                 "count %llu / empty %llu after one add", (unsigned long long)after.totals.count,
                 (unsigned long long)after.totals.empty);
      const double expect_factor =
          c.clip_norm > 0 && got.result.norm > c.clip_norm ? c.clip_norm / got.result.norm : 1.0;
      // (A NaN norm passes only when nothing bounds it.)
      FUZZ_CHECK(same_bits(got.result.factor, expect_factor) && !(got.result.norm > c.max_norm) &&
                     !(got.result.max_abs > c.max_abs),
                 "norm %g factor %g max_abs %g", got.result.norm, got.result.factor,
                 got.result.max_abs);
    }

    // The reference: decode on its own, then add the arrays.
    Reference ref = decode_reference(data, size, opts, a->blob_cap());
    if (!ref.decoded) {
      FUZZ_CHECK(!got.ok, "add_blob succeeded where the blob does not decode");
    } else if (ref.ambiguous) {
      FUZZ_CHECK(!got.ok && (got.reason == Reason::ambiguous_byteorder || add_reason(got.reason)),
                 "an ambiguous blob gave %s", got.ok ? "success" : reason_name(got.reason));
    } else {
      Aggregator* b = &fresh_aggregator(c.accum, 1);
      Try want = attempt([&] { return b->add_arrays(ref.arrays, weight, opts); });
      FUZZ_CHECK(got.ok == want.ok && (got.ok || got.reason == want.reason),
                 "add_blob %s, add_arrays of its records %s",
                 got.ok ? "ok" : reason_name(got.reason),
                 want.ok ? "ok" : reason_name(want.reason));
      if (got.ok) {
        FUZZ_CHECK(same_result(got.result, want.result), "results differ: norm %g / %g",
                   got.result.norm, want.result.norm);
        FUZZ_CHECK(
            got.result.big_endian == ref.big_endian && got.result.relabelled == ref.relabelled,
            "add_blob says big_endian %d, %u relabelled; the records say %d, %u",
            int(got.result.big_endian), got.result.relabelled, int(ref.big_endian), ref.relabelled);
        FUZZ_CHECK(state_of(*a) == state_of(*b), "add_blob and add_arrays disagree (config %zu)",
                   size_t(&c - kConfigs));
      }
    }
  }

  // add_many == sequential adds, outcome by outcome, bit for bit.
  {
    const Config& c = kConfigs[0];
    const AddOptions opts = options_of(c, false);
    const std::vector<UpdateArray> valid = template_update();
    std::vector<Upload> batch = {
        {data, size, nullptr, 0.75}, {nullptr, 0, &valid, 2.0}, {data, size, nullptr, 1.5}};
    Aggregator* many = &fresh_aggregator(c.accum, 0);
    Aggregator* seq = &fresh_aggregator(c.accum, 1);
    std::vector<Outcome> outs = many->add_many(batch, opts);
    FUZZ_CHECK(outs.size() == batch.size(), "add_many gave %zu outcomes", outs.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const Upload& u = batch[i];
      Try t = attempt([&] {
        return u.arrays ? seq->add_arrays(*u.arrays, u.weight, opts)
                        : seq->add_blob(u.data, u.size, u.weight, opts);
      });
      const bool ok = outs[i].error == nullptr;
      FUZZ_CHECK(ok == t.ok && (ok || outs[i].error->reason() == t.reason),
                 "upload %zu: add_many %s, add %s", i,
                 ok ? "ok" : reason_name(outs[i].error->reason()),
                 t.ok ? "ok" : reason_name(t.reason));
      if (ok) FUZZ_CHECK(same_result(outs[i].result, t.result), "upload %zu: results differ", i);
    }
    FUZZ_CHECK(state_of(*many) == state_of(*seq), "add_many and sequential adds disagree");
  }
  return 0;
}
