// Weighted FedAvg over PTTH updates: validate a whole update, then fold it in.
//
// The aggregator owns its accumulators (one per template parameter, in the
// accumulate type) and per-parameter weight sums; it borrows the template's
// values, which must outlive it. Every add validates its update completely
// (structure; names, shapes and dtypes against the template as each record
// header arrives; then one pass over the values for finiteness, integrality
// and the norm) before it touches anything, so a failed add changes nothing
// and folding itself cannot fail. Many threads may add at once; snapshots
// (outputs, state export, merge) see no add half-way and are not starved by
// a stream of adds. The arithmetic is the format document's "The aggregator".
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/buffer.hpp"
#include "core/format.hpp"
#include "core/keyed_hash.hpp"
#include "core/reader.hpp"

namespace ptth {

enum class Accum : uint8_t { f64, f32 };
enum class Kind : uint8_t { delta, full };

// One template parameter as the caller describes it.
struct TemplateParam {
  std::string name;            // valid UTF-8
  std::vector<uint64_t> dims;  // any size (a dim past 2**32 simply never matches a blob)
  DType dtype = DType::float32;
  const void* data = nullptr;  // numel values, C order, host byte order
};

// One array of a mapping update (C order, host byte order).
struct UpdateArray {
  std::string name;
  std::vector<uint64_t> dims;
  DType dtype = DType::float32;
  const void* data = nullptr;
};

constexpr double kNoBound = std::numeric_limits<double>::infinity();

struct AddOptions {
  Kind kind = Kind::delta;
  ReadOptions read;              // for blobs; max_size is capped by the template
  bool allow_nonfinite = false;  // fold NaN/inf instead of refusing them
  bool allow_cast = false;       // fold values whatever the template's dtype
  bool count_empty = false;      // count an update with no parameters as a contribution
  double clip_norm = 0;          // > 0: scale the update to at most this L2 norm
  double max_norm = kNoBound;    // refuse an update whose L2 norm exceeds this
  double max_abs = kNoBound;     // refuse an update with an element beyond +-this
};

struct AddResult {
  double norm = 0;     // L2 norm of the update before clipping (delta, or update - template)
  double max_abs = 0;  // largest |element| of the same
  double factor = 1;   // clipping factor applied: min(1, clip_norm / norm)
  uint32_t parameters = 0;
  uint64_t elements = 0;
  bool big_endian = false;  // payloads were read big-endian
  uint32_t relabelled = 0;  // records read as float32 under another dtype code
  bool counted = false;     // it counts as a contribution (count, total weight)
};

// The per-upload outcome of add_many: a result, or the error that refused it.
struct Outcome {
  AddResult result;
  std::unique_ptr<Error> error;
};

// One upload of add_many: a blob (data, size) or a mapping (arrays).
struct Upload {
  const uint8_t* data = nullptr;
  size_t size = 0;
  const std::vector<UpdateArray>* arrays = nullptr;
  double weight = 1;
};

// What an output pass computes per element, in the accumulate type T:
//   s = acc (+ noise);  m = s / d;  sum -> s, mean -> m, apply -> T(t) + T(lr) * m
// where d = `denominator` when it is > 0, else the parameter's weight sum
// (a parameter nobody updated gives m = 0). The value is then converted to
// the output dtype; a non-finite result, or one that does not fit (float16
// overflow, an int32 out of range after rounding half to even), is
// Error(overflow) unless allow_nonfinite.
enum class Output : uint8_t { sum, mean, apply };
struct OutputSpec {
  Output what = Output::mean;
  double lr = 1;
  double denominator = 0;
  bool allow_nonfinite = false;
};

// Many adders share it; a snapshot waits for the adders in flight and lets
// no new one in ahead of it (a plain shared_mutex lets readers starve it).
class SnapshotLock {
 public:
  void lock_shared() {
    std::lock_guard<std::mutex> gate(turnstile_);
    rw_.lock_shared();
  }
  void unlock_shared() { rw_.unlock_shared(); }
  void lock() {
    std::lock_guard<std::mutex> gate(turnstile_);
    rw_.lock();
  }
  void unlock() { rw_.unlock(); }

 private:
  std::mutex turnstile_;
  std::shared_mutex rw_;
};

class Aggregator {
 public:
  Aggregator(std::vector<TemplateParam> params, Accum accum);
  ~Aggregator();

  AddResult add_blob(const uint8_t* data, size_t n, double weight, const AddOptions& opts);
  AddResult add_arrays(const std::vector<UpdateArray>& arrays, double weight,
                       const AddOptions& opts);
  // Validates every upload, then folds the valid ones in one blocked pass over
  // the accumulators: bit-identical to add() of the valid ones in order.
  std::vector<Outcome> add_many(const std::vector<Upload>& uploads, const AddOptions& opts);

  // Adds another aggregator's state over the same parameters and accumulate
  // type (overflow, changing nothing, if the weight sums would overflow).
  void merge(Aggregator& other);

  size_t size() const noexcept { return params_.size(); }
  const TemplateParam& param(size_t i) const { return params_[i].spec; }
  uint64_t numel(size_t i) const { return params_[i].numel; }
  Accum accum() const noexcept { return accum_; }
  // The largest blob a valid update can be: every parameter at float64 plus headers.
  uint64_t blob_cap() const noexcept { return blob_cap_; }

  struct Totals {
    uint64_t count = 0;  // contributions
    double total_weight = 0;
    uint64_t empty = 0;  // updates with no parameters, not counted
  };
  Totals totals() const;  // never waits for a snapshot

  // Everything below sees no add half-way. A Hold keeps adds out across calls.
  class Hold {
   public:
    explicit Hold(Aggregator& a) : agg_(a), lock_(a.state_) {}
    Aggregator& aggregator() const noexcept { return agg_; }

   private:
    Aggregator& agg_;
    std::unique_lock<SnapshotLock> lock_;
  };

  // (Under a Hold.) The live accumulator of parameter i (numel values of T).
  const void* accumulator(const Hold&, size_t i) const { return params_[i].acc.get(); }
  std::vector<double> weight_sums(const Hold&) const { return weight_sums_; }
  Totals totals(const Hold&) const { return totals_; }
  // Writes parameter i's output into out (numel values of out_dtype); noise,
  // when given, is numel values of T added to the sum first.
  void output(const Hold&, size_t i, const OutputSpec& spec, void* out, DType out_dtype,
              const void* noise) const;

  // Replaces the whole state (validated: sizes, finite non-negative weights).
  void restore(const std::vector<const void*>& accs, const std::vector<double>& weight_sums,
               const Totals& totals);
  // Adds a saved partial state (the same checks as restore; overflow if the
  // weight sums would overflow).
  void merge_state(const std::vector<const void*>& accs, const std::vector<double>& weight_sums,
                   const Totals& totals);

 private:
  struct Param {
    TemplateParam spec;
    uint64_t numel = 0;
    Buffer acc;
    std::unique_ptr<std::mutex[]> block_locks;  // accumulators are locked in blocks
  };
  struct Prepared;
  friend class MatchingSink;

  // Match a record or an array to its parameter; throws unknown_name /
  // shape_mismatch / dtype_mismatch. `dtype_final` is false while a code-2
  // record's relabel decision is pending.
  size_t match(const std::string& name, const uint32_t* dims32, const uint64_t* dims64, size_t ndim,
               DType dtype, bool dtype_final, const AddOptions& opts, uint64_t offset,
               int64_t record) const;
  void prepare_blob(const uint8_t* data, size_t n, double weight, const AddOptions& opts,
                    Prepared& out) const;
  void parse_blob(const uint8_t* data, size_t n, const AddOptions& o, Prepared& out) const;
  void prepare_arrays(const std::vector<UpdateArray>& arrays, double weight, const AddOptions& opts,
                      Prepared& out) const;
  void validate(Prepared& p, const AddOptions& opts) const;
  void fold(const std::vector<Prepared*>& batch, Kind kind);
  void check_weight(double weight) const;
  void check_state(const std::vector<const void*>& accs, const std::vector<double>& sums,
                   const Totals& totals) const;
  void check_merged_weights(const std::vector<double>& sums, const Totals& totals) const;

  std::vector<Param> params_;
  Accum accum_;
  uint64_t blob_cap_ = 0;
  std::unordered_map<std::string, size_t, KeyedHash> index_;
  std::vector<double> weight_sums_;
  Totals totals_;
  mutable std::mutex totals_mu_;
  mutable SnapshotLock state_;
};

}  // namespace ptth
