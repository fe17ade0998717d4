// Weighted FedAvg accumulation: validate a whole update, then fold it in.
//
// The caller owns the accumulator arrays and the template (the Python layer
// keeps them as NumPy arrays, so they pickle and read back without copies);
// this class holds pointers, per-parameter weight sums and the locks. Many
// threads may add at once: an add validates its update completely (structure,
// names, shapes, finiteness) before it touches anything, so a failed add
// changes nothing, and accumulation itself cannot fail.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/format.hpp"
#include "core/reader.hpp"

namespace ptth {

enum class Accum : uint8_t { f64, f32 };

struct Param {
  std::string name;
  std::vector<uint32_t> dims;
  uint64_t numel = 0;
  DType dtype = DType::float32;    // the template's dtype
  const void* tmpl = nullptr;      // template values, C order, native byte order
  void* acc = nullptr;             // numel accumulator values of the Accum type
};

// One parameter of an update, native byte order, C-contiguous, already matched
// to its parameter (name and shape checked) by the caller.
struct UpdatePart {
  size_t param;                    // index into the aggregator's params
  DType dtype;
  const void* data;
  uint64_t numel;
};

class Aggregator {
 public:
  Aggregator(std::vector<Param> params, Accum accum);

  // Decodes a blob (any wrapper) as loads() would and adds it.
  void add_blob(const uint8_t* data, size_t n, const ReadOptions& opts, double weight, bool full,
                bool allow_nonfinite);
  // Adds arrays already matched to parameters by the caller.
  void add_parts(const std::vector<UpdatePart>& parts, double weight, bool full,
                 bool allow_nonfinite);
  // Adds another aggregator's state over the same parameters.
  void merge(Aggregator& other);

  size_t find(const std::string& name) const;  // npos when absent
  const std::vector<Param>& params() const noexcept { return params_; }
  Accum accum() const noexcept { return accum_; }

  // A consistent snapshot: no add is half-way while the lock is held.
  std::unique_lock<std::shared_mutex> exclusive() { return std::unique_lock<std::shared_mutex>(state_); }
  uint64_t count() const noexcept { return count_; }
  double total_weight() const noexcept { return total_weight_; }
  std::vector<double>& weight_sums() noexcept { return weight_sums_; }
  void set_totals(uint64_t count, double total_weight) noexcept {
    count_ = count;
    total_weight_ = total_weight;
  }

  static constexpr size_t npos = SIZE_MAX;

 private:
  void check_weight(double weight) const;
  void validate(const std::vector<UpdatePart>& parts, bool allow_nonfinite,
                const std::vector<uint64_t>* offsets) const;
  void accumulate(const std::vector<UpdatePart>& parts, double weight, bool full);
  void accumulate_part(const UpdatePart& part, double weight, bool full, std::vector<uint8_t>& scratch);

  std::vector<Param> params_;
  Accum accum_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<double> weight_sums_;
  uint64_t count_ = 0;
  double total_weight_ = 0;
  // Adds share state_; snapshots (mean, pickling, merge) take it exclusively.
  std::shared_mutex state_;
  std::mutex totals_;
  // Accumulators are locked in blocks, so two adds of one parameter overlap.
  std::vector<std::unique_ptr<std::mutex[]>> block_locks_;
};

}  // namespace ptth
