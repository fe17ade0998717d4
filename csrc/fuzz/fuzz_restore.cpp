// Aggregator::restore and merge_state (pickle.loads of an Aggregator, merge of
// a PartialAggregate) with a fuzzed saved state, over a small fixed template:
//
//   a  float32 [3]    b  float16 [2, 2]    c  int32 []    d  float64 [0]    e  float32 [5]
//
// Input layout: CONTROL || DATA.
//   CONTROL bit  0     merge_state (else restore)
//           bit  1     accumulate float32 (else float64)
//           bits 2-3   accumulators given: 0 one per parameter, 1 one fewer, 2 one more, 3 none
//           bits 4-5   weight sums given: the same code
//           bit  6     the aggregator has had an add before the restore
//   DATA, cycled: the accumulators' values, then the weight sums (float64),
//   then count (u64), total weight (float64) and empty (u64), all little-endian.
//
// Checks: never a crash; a failure leaves the aggregator bit for bit as it
// was (nothing half-loaded); it is bad_state exactly when the state breaks the
// rules (counts that do not match the template, a weight sum or the total
// weight that is not a finite number >= 0, an accumulator value that is not
// finite), else overflow exactly when merging would make a weight sum or the
// total weight overflow; a success holds exactly the given state (restore) or
// the old one plus it (merge_state); and the aggregator keeps working
// afterwards (an add, every output).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/aggregator.hpp"
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
      {"a", {3}, DType::float32}, {"b", {2, 2}, DType::float16}, {"c", {}, DType::int32},
      {"d", {0}, DType::float64}, {"e", {5}, DType::float32},
  };
  return s;
}

uint64_t numel_of(const Spec& s) {
  uint64_t n = 1;
  for (uint64_t d : s.dims) n *= d;
  return n;
}

// Template values: zeros (float16 zeros too) with room for every dtype.
const std::vector<std::vector<uint8_t>>& templates() {
  static const std::vector<std::vector<uint8_t>> t = [] {
    std::vector<std::vector<uint8_t>> v;
    for (const Spec& s : specs()) v.emplace_back(numel_of(s) * itemsize(s.dtype) + 8, 0);
    return v;
  }();
  return t;
}

std::unique_ptr<Aggregator> make_aggregator(Accum accum) {
  std::vector<TemplateParam> params;
  for (size_t i = 0; i < specs().size(); ++i)
    params.push_back({specs()[i].name, specs()[i].dims, specs()[i].dtype, templates()[i].data()});
  return std::make_unique<Aggregator>(std::move(params), accum);
}

// Reads the fuzz bytes in a cycle (an empty input reads zeros).
class Cycle {
 public:
  Cycle(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  void read(void* dst, size_t k) {
    auto* d = static_cast<uint8_t*>(dst);
    for (size_t i = 0; i < k; ++i) d[i] = n_ ? p_[at_++ % n_] : 0;
  }
  template <typename T>
  T get() {
    T v;
    read(&v, sizeof v);
    return v;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t at_ = 0;
};

size_t given(unsigned code, size_t n) {
  switch (code & 3) {
    case 0: return n;
    case 1: return n - 1;
    case 2: return n + 1;
    default: return 0;
  }
}

struct Snapshot {
  std::vector<std::vector<uint8_t>> accs;
  std::vector<double> sums;
  Aggregator::Totals totals;
};

Snapshot snapshot(Aggregator& agg) {
  Aggregator::Hold hold(agg);
  Snapshot s;
  const size_t width = agg.accum() == Accum::f64 ? 8 : 4;
  for (size_t i = 0; i < agg.size(); ++i) {
    const auto* p = static_cast<const uint8_t*>(agg.accumulator(hold, i));
    s.accs.emplace_back(p, p + agg.numel(i) * width);
  }
  s.sums = agg.weight_sums(hold);
  s.totals = agg.totals(hold);
  return s;
}

bool same_bits(const void* a, const void* b, size_t n) {
  return std::memcmp(a, b, n) == 0;
}

bool same(const Snapshot& x, const Snapshot& y) {
  if (x.accs != y.accs || x.sums.size() != y.sums.size()) return false;
  for (size_t i = 0; i < x.sums.size(); ++i)
    if (!same_bits(&x.sums[i], &y.sums[i], sizeof(double))) return false;
  return x.totals.count == y.totals.count && x.totals.empty == y.totals.empty &&
         same_bits(&x.totals.total_weight, &y.totals.total_weight, sizeof(double));
}

bool valid_number(double v) {
  return std::isfinite(v) && v >= 0;
}

// acc + x in T, element by element: what merging one accumulator gives.
template <typename T>
void add_into(std::vector<uint8_t>& acc, const std::vector<uint8_t>& x) {
  for (size_t i = 0; i + sizeof(T) <= acc.size(); i += sizeof(T)) {
    T a, b;
    std::memcpy(&a, &acc[i], sizeof(T));
    std::memcpy(&b, &x[i], sizeof(T));
    a = a + b;
    std::memcpy(&acc[i], &a, sizeof(T));
  }
}

template <typename T>
bool all_finite(const std::vector<uint8_t>& bytes) {
  for (size_t i = 0; i + sizeof(T) <= bytes.size(); i += sizeof(T)) {
    T v;
    std::memcpy(&v, &bytes[i], sizeof(T));
    if (!std::isfinite(v)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::install_alloc_hooks();
  (void)templates();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = input[0];
  const bool merge = control & 1;
  const Accum accum = (control & 2) ? Accum::f32 : Accum::f64;
  const size_t width = accum == Accum::f64 ? 8 : 4;
  const size_t nparams = specs().size();
  const size_t naccs = given(control >> 2, nparams), nsums = given(control >> 4, nparams);
  Cycle in(input + 1, size - 1);

  std::unique_ptr<Aggregator> agg = make_aggregator(accum);
  if (control & 0x40) {
    // A state that is not all zeros, and a count to keep or replace.
    std::vector<float> a = {1.5f, -2.0f, 0.25f};
    AddOptions plain;
    agg->add_arrays({{"a", {3}, DType::float32, a.data()}}, 2.0, plain);
  }

  // The fuzzed state. Each accumulator has its parameter's size (the core
  // takes pointers; the bindings check sizes, dtypes and shapes); an extra
  // one gets the size of the last.
  std::vector<std::vector<uint8_t>> accs(naccs);
  std::vector<const void*> ptrs;
  for (size_t i = 0; i < naccs; ++i) {
    const uint64_t n = numel_of(specs()[std::min(i, nparams - 1)]);
    accs[i].resize(n * width + 1);  // never empty, so data() is a real pointer
    in.read(accs[i].data(), n * width);
    ptrs.push_back(accs[i].data());
  }
  std::vector<double> sums(nsums);
  for (double& s : sums) s = in.get<double>();
  Aggregator::Totals totals;
  totals.count = in.get<uint64_t>();
  totals.total_weight = in.get<double>();
  totals.empty = in.get<uint64_t>();

  // docs/format.md's rules for a state, independently of the core.
  bool valid = naccs == nparams && nsums == nparams && valid_number(totals.total_weight);
  for (double s : sums) valid = valid && valid_number(s);
  for (size_t i = 0; valid && i < naccs; ++i) {
    std::vector<uint8_t> bytes(accs[i].begin(), accs[i].end() - 1);
    valid = accum == Accum::f64 ? all_finite<double>(bytes) : all_finite<float>(bytes);
  }

  const Snapshot before = snapshot(*agg);
  bool overflows = false;
  if (valid && merge) {
    overflows = !std::isfinite(before.totals.total_weight + totals.total_weight);
    for (size_t i = 0; i < nparams; ++i)
      overflows = overflows || !std::isfinite(before.sums[i] + sums[i]);
  }
  bool ok = false;
  Reason reason = Reason::closed;
  try {
    if (merge)
      agg->merge_state(ptrs, sums, totals);
    else
      agg->restore(ptrs, sums, totals);
    ok = true;
  } catch (const Error& e) {
    reason = e.reason();
  }
  const Snapshot after = snapshot(*agg);
  FUZZ_CHECK(ok == (valid && !overflows), "%s of a state the rules call %s: %s",
             merge ? "merge_state" : "restore",
             !valid      ? "invalid"
             : overflows ? "overflowing"
                         : "valid",
             ok ? "accepted" : reason_name(reason));
  if (!ok) {
    FUZZ_CHECK(reason == (valid ? Reason::overflow : Reason::bad_state), "failed with %s",
               reason_name(reason));
    FUZZ_CHECK(same(before, after), "a refused state changed the aggregator");
    return 0;
  }

  Snapshot want = before;
  for (size_t i = 0; i < nparams; ++i) {
    std::vector<uint8_t> given_bytes(accs[i].begin(), accs[i].end() - 1);
    if (!merge) {
      want.accs[i] = given_bytes;
      want.sums[i] = sums[i];
    } else {
      if (accum == Accum::f64)
        add_into<double>(want.accs[i], given_bytes);
      else
        add_into<float>(want.accs[i], given_bytes);
      want.sums[i] = want.sums[i] + sums[i];
    }
  }
  if (!merge) {
    want.totals = totals;
  } else {
    want.totals.count += totals.count;
    want.totals.total_weight = want.totals.total_weight + totals.total_weight;
    want.totals.empty += totals.empty;
  }
  FUZZ_CHECK(same(want, after), "%s did not hold the given state",
             merge ? "merge_state" : "restore");

  // It keeps working: an add (which may overflow a huge state) and every output.
  std::vector<float> e = {1, 2, 3, 4, 5};
  AddOptions plain;
  try {
    agg->add_arrays({{"e", {5}, DType::float32, e.data()}}, 1.0, plain);
  } catch (const Error& err) {
    FUZZ_CHECK(err.reason() == Reason::overflow, "add after restore: %s",
               reason_name(err.reason()));
  }
  Aggregator::Hold hold(*agg);
  std::vector<uint8_t> out(64 * 8);
  for (size_t i = 0; i < nparams; ++i) {
    for (Output what : {Output::sum, Output::mean, Output::apply}) {
      for (DType d : {DType::float64, DType::float32, DType::float16, DType::int32}) {
        OutputSpec spec;
        spec.what = what;
        try {
          agg->output(hold, i, spec, out.data(), d, nullptr);
        } catch (const Error& err) {
          FUZZ_CHECK(err.reason() == Reason::overflow, "output after restore: %s",
                     reason_name(err.reason()));
        }
      }
    }
  }
  return 0;
}
