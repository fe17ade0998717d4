#include "core/aggregator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/inflate.hpp"
#include "core/stream_decoder.hpp"
#include "core/kernels.hpp"

namespace ptth {

namespace {

constexpr uint64_t kBlock = uint64_t(1) << 20;  // elements per accumulator lock
constexpr size_t kChunk = 4096;                 // elements per conversion step

uint64_t blocks_of(uint64_t numel) { return std::max<uint64_t>(1, (numel + kBlock - 1) / kBlock); }

// T(x[lo..lo+n)) into out; float16 goes through `wide`, a float scratch.
template <typename T>
void load_as(DType dtype, const void* src, uint64_t lo, size_t n, T* out, float* wide) {
  const Kernels& k = kernels();
  switch (dtype) {
    case DType::float16: {
      k.f16_to_f32(static_cast<const uint16_t*>(src) + lo, wide, n);
      for (size_t i = 0; i < n; ++i) out[i] = T(wide[i]);
      break;
    }
    case DType::float32: {
      const auto* p = static_cast<const uint8_t*>(src) + 4 * lo;
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = T(v);
      }
      break;
    }
    case DType::float64: {
      const auto* p = static_cast<const uint8_t*>(src) + 8 * lo;
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = T(v);
      }
      break;
    }
    case DType::int32: {
      const auto* p = static_cast<const uint8_t*>(src) + 4 * lo;
      for (size_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = T(v);
      }
      break;
    }
  }
}

void acc_same(double* acc, double w, const double* x, size_t n) { kernels().acc_f64_f64(acc, w, x, n); }
void acc_same(float* acc, double w, const float* x, size_t n) { kernels().acc_f32_f32(acc, float(w), x, n); }
void sub_same(const double* a, const double* b, double* out, size_t n) { kernels().sub_f64(a, b, out, n); }
void sub_same(const float* a, const float* b, float* out, size_t n) { kernels().sub_f32(a, b, out, n); }

// acc[lo..lo+n) += w * x, straight from the payload where a kernel takes its type.
bool acc_direct(Accum accum, void* acc, double w, DType dtype, const void* x, uint64_t lo, size_t n) {
  const Kernels& k = kernels();
  if (accum == Accum::f64) {
    double* a = static_cast<double*>(acc) + lo;
    switch (dtype) {
      case DType::float16: k.acc_f64_f16(a, w, static_cast<const uint16_t*>(x) + lo, n); return true;
      case DType::float32: k.acc_f64_f32(a, w, reinterpret_cast<const float*>(static_cast<const uint8_t*>(x) + 4 * lo), n); return true;
      case DType::float64: k.acc_f64_f64(a, w, reinterpret_cast<const double*>(static_cast<const uint8_t*>(x) + 8 * lo), n); return true;
      default: return false;
    }
  }
  float* a = static_cast<float*>(acc) + lo;
  switch (dtype) {
    case DType::float16: k.acc_f32_f16(a, float(w), static_cast<const uint16_t*>(x) + lo, n); return true;
    case DType::float32: k.acc_f32_f32(a, float(w), reinterpret_cast<const float*>(static_cast<const uint8_t*>(x) + 4 * lo), n); return true;
    default: return false;
  }
}

// The general path: T(x) (minus T(t) for full updates) in chunks, then acc += w * that.
template <typename T>
void acc_chunked(T* acc, double w, DType dtype, const void* x, const Param* full, uint64_t lo,
                 size_t n, std::vector<uint8_t>& scratch) {
  T* xs = reinterpret_cast<T*>(scratch.data());
  T* ts = xs + kChunk;
  float* wide = reinterpret_cast<float*>(ts + kChunk);
  for (size_t done = 0; done < n;) {
    size_t m = std::min(kChunk, n - done);
    load_as(dtype, x, lo + done, m, xs, wide);
    if (full) {
      load_as(full->dtype, full->tmpl, lo + done, m, ts, wide);
      sub_same(xs, ts, xs, m);
    }
    acc_same(acc + lo + done, w, xs, m);
    done += m;
  }
}

bool finite(DType dtype, const void* x, uint64_t numel) {
  const Kernels& k = kernels();
  switch (dtype) {
    case DType::float16: return k.all_finite_f16(static_cast<const uint16_t*>(x), numel);
    case DType::float32: return k.all_finite_f32(static_cast<const float*>(x), numel);
    case DType::float64: return k.all_finite_f64(static_cast<const double*>(x), numel);
    case DType::int32: return true;
  }
  return true;
}

}  // namespace

Aggregator::Aggregator(std::vector<Param> params, Accum accum)
    : params_(std::move(params)), accum_(accum), weight_sums_(params_.size(), 0.0) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!index_.emplace(params_[i].name, i).second)
      throw Error(Reason::duplicate_name, "the template names '" + params_[i].name + "' twice");
    block_locks_.emplace_back(new std::mutex[blocks_of(params_[i].numel)]);
  }
}

size_t Aggregator::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? npos : it->second;
}

void Aggregator::check_weight(double weight) const {
  if (!(std::isfinite(weight) && weight > 0))
    throw Error(Reason::bad_argument, "weight must be a positive finite number, not " +
                                          std::to_string(weight));
}

namespace {

// Matches each record to its parameter as it completes and keeps only the
// matched payloads: a hostile upload of many records costs the template's
// size, not one stored record each. The first name or shape error is held
// until parsing ends, because a parse error later in the blob comes first.
class MatchingSink : public RecordSink {
 public:
  MatchingSink(const Aggregator& agg, bool copy) : agg_(agg), copy_(copy) {}

  uint8_t* payload_space(const RecordInfo& r, uint64_t have, size_t* room) override {
    return collect_.payload_space(r, have, room);
  }

  void on_record(const RecordInfo& r, const uint8_t* payload) override {
    if (error_) {
      collect_.payload_space_release();
      return;
    }
    size_t idx = agg_.find(r.name);
    if (idx == Aggregator::npos) {
      error_ = std::make_unique<Error>(Reason::unknown_name,
          "the update names '" + r.name + "', which the template lacks", r.payload_offset, r.index);
    } else if (r.dims != agg_.params()[idx].dims) {
      error_ = std::make_unique<Error>(Reason::shape_mismatch,
          "'" + r.name + "' does not have the template's shape", r.payload_offset, r.index);
    }
    if (error_) {
      collect_.records().clear();  // nothing will be accumulated: free what was kept
      parts_.clear();
      collect_.payload_space_release();
      return;
    }
    collect_.on_record(r, payload);
    const CollectedRecord& c = collect_.records().back();
    parts_.push_back({idx, r.dtype, c.data, r.numel});
    offsets_.push_back(r.payload_offset);
  }

  void check() const {
    if (error_) throw *error_;
  }
  const std::vector<UpdatePart>& parts() const noexcept { return parts_; }
  const std::vector<uint64_t>& offsets() const noexcept { return offsets_; }

 private:
  const Aggregator& agg_;
  bool copy_;
  CollectingSink collect_{copy_};
  std::unique_ptr<Error> error_;
  std::vector<UpdatePart> parts_;
  std::vector<uint64_t> offsets_;
};

}  // namespace

void Aggregator::add_blob(const uint8_t* data, size_t n, const ReadOptions& opts, double weight,
                          bool full, bool allow_nonfinite) {
  check_weight(weight);
  Wrapper w = detect_wrapper(data, std::min<size_t>(n, 4));
  ReadOptions o = opts;
  if (w == Wrapper::none) o.max_size = UINT64_MAX;
  // Compressed and byte-swapped payloads land in owned buffers in host order;
  // plain little-endian ones are read where they lie.
  MatchingSink sink(*this, w != Wrapper::none || opts.byteorder != ByteOrder::little);
  StreamDecoder dec(o, &sink);
  dec.feed(data, n, /*borrow=*/true);
  dec.finish();
  sink.check();
  validate(sink.parts(), allow_nonfinite, &sink.offsets());
  accumulate(sink.parts(), weight, full);
}

void Aggregator::add_parts(const std::vector<UpdatePart>& parts, double weight, bool full,
                           bool allow_nonfinite) {
  check_weight(weight);
  validate(parts, allow_nonfinite, nullptr);
  accumulate(parts, weight, full);
}

void Aggregator::validate(const std::vector<UpdatePart>& parts, bool allow_nonfinite,
                          const std::vector<uint64_t>* offsets) const {
  if (allow_nonfinite) return;
  for (size_t i = 0; i < parts.size(); ++i) {
    const UpdatePart& p = parts[i];
    if (!finite(p.dtype, p.data, p.numel))
      throw Error(Reason::nonfinite,
                  "'" + params_[p.param].name + "' holds NaN or infinity",
                  offsets ? (*offsets)[i] : kNoOffset, offsets ? int64_t(i) : kNoRecord);
  }
}

void Aggregator::accumulate(const std::vector<UpdatePart>& parts, double weight, bool full) {
  std::vector<uint8_t> scratch(kChunk * (2 * sizeof(double) + sizeof(float)));
  std::shared_lock<std::shared_mutex> shared(state_);
  for (const UpdatePart& p : parts) accumulate_part(p, weight, full, scratch);
  std::lock_guard<std::mutex> lock(totals_);
  for (const UpdatePart& p : parts) weight_sums_[p.param] += weight;
  ++count_;
  total_weight_ += weight;
}

void Aggregator::accumulate_part(const UpdatePart& part, double weight, bool full,
                                 std::vector<uint8_t>& scratch) {
  const Param& param = params_[part.param];
  std::mutex* locks = block_locks_[part.param].get();
  for (uint64_t lo = 0, b = 0; lo < part.numel; lo += kBlock, ++b) {
    size_t n = size_t(std::min(kBlock, part.numel - lo));
    std::lock_guard<std::mutex> lock(locks[b]);
    if (!full && acc_direct(accum_, param.acc, weight, part.dtype, part.data, lo, n)) continue;
    const Param* tmpl = full ? &param : nullptr;
    if (accum_ == Accum::f64)
      acc_chunked(static_cast<double*>(param.acc), weight, part.dtype, part.data, tmpl, lo, n, scratch);
    else
      acc_chunked(static_cast<float*>(param.acc), weight, part.dtype, part.data, tmpl, lo, n, scratch);
  }
}

void Aggregator::merge(Aggregator& other) {
  if (&other == this) throw Error(Reason::bad_argument, "an aggregator cannot merge itself");
  if (other.accum_ != accum_)
    throw Error(Reason::bad_argument, "the aggregators accumulate in different dtypes");
  if (other.params_.size() != params_.size())
    throw Error(Reason::shape_mismatch, "the aggregators hold different parameters");
  for (size_t i = 0; i < params_.size(); ++i)
    if (other.params_[i].name != params_[i].name || other.params_[i].dims != params_[i].dims)
      throw Error(Reason::shape_mismatch,
                  "parameter '" + params_[i].name + "' differs between the aggregators");
  std::unique_lock<std::shared_mutex> mine(state_, std::defer_lock), theirs(other.state_, std::defer_lock);
  std::lock(mine, theirs);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    if (accum_ == Accum::f64)
      kernels().acc_f64_f64(static_cast<double*>(p.acc), 1.0, static_cast<const double*>(other.params_[i].acc), p.numel);
    else
      kernels().acc_f32_f32(static_cast<float*>(p.acc), 1.0f, static_cast<const float*>(other.params_[i].acc), p.numel);
    weight_sums_[i] += other.weight_sums_[i];
  }
  count_ += other.count_;
  total_weight_ += other.total_weight_;
}

}  // namespace ptth
