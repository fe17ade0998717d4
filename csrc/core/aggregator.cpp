#include "core/aggregator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/decode.hpp"
#include "core/kernels.hpp"
#include "core/stream_decoder.hpp"

namespace ptth {

namespace {

constexpr uint64_t kBlock = uint64_t(1) << 20;  // elements per accumulator lock
constexpr uint64_t kSubBlock = 32 * 1024;       // elements folded per upload in turn (stays in L2)
constexpr size_t kChunk = 4096;                 // elements per conversion / statistics step

uint64_t blocks_of(uint64_t numel) {
  return std::max<uint64_t>(1, (numel + kBlock - 1) / kBlock);
}
size_t accum_size(Accum a) {
  return a == Accum::f64 ? 8 : 4;
}
bool is_float(DType d) {
  return d != DType::int32;
}

std::string quoted(const std::string& name) {
  return "'" + name + "'";
}

std::string shape_text(const uint64_t* dims, size_t ndim) {
  std::string s = "(";
  for (size_t i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  if (ndim == 1) s += ",";
  return s + ")";
}

// T(x[lo..lo+n)) into out; float16 goes through `wide`, a float scratch.
template <typename T>
void load_as(DType dtype, const void* src, uint64_t lo, size_t n, T* out, float* wide) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (dtype) {
    case DType::float16:
      kernels().f16_to_f32(reinterpret_cast<const uint16_t*>(p) + lo, wide, n);
      for (size_t i = 0; i < n; ++i) out[i] = T(wide[i]);
      break;
    case DType::float32:
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * (lo + i), 4);
        out[i] = T(v);
      }
      break;
    case DType::float64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * (lo + i), 8);
        out[i] = T(v);
      }
      break;
    case DType::int32:
      for (size_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, p + 4 * (lo + i), 4);
        out[i] = T(v);
      }
      break;
  }
}

// ---- statistics: finiteness, sum of squares, max |x| --------------------------

// A parameter's statistics are its 4096-element chunks' (kernels.hpp: 16
// interleaved lanes and a fixed tree within a chunk), the chunks' sums added
// in order; the update's, the parameters' in order. ptth.Stats starts empty.

void merge_stats(Stats& into, const Stats& s) {
  into.finite = into.finite && s.finite;
  into.sumsq = into.sumsq + s.sumsq;
  if (s.maxabs > into.maxabs) into.maxabs = s.maxabs;
}

// Statistics of a delta's values (widened to double: exact for every dtype).
Stats part_stats(DType dtype, const void* data, uint64_t numel, std::vector<double>& scratch,
                 std::vector<float>& wide) {
  const Kernels& k = kernels();
  const auto* p = static_cast<const uint8_t*>(data);
  Stats total;
  for (uint64_t lo = 0; lo < numel; lo += kChunk) {
    size_t n = size_t(std::min<uint64_t>(kChunk, numel - lo));
    Stats s;
    switch (dtype) {
      case DType::float16: k.stats_f16(reinterpret_cast<const uint16_t*>(p) + lo, n, &s); break;
      case DType::float32: k.stats_f32(reinterpret_cast<const float*>(p + 4 * lo), n, &s); break;
      case DType::float64: k.stats_f64(reinterpret_cast<const double*>(p + 8 * lo), n, &s); break;
      case DType::int32:
        load_as(dtype, data, lo, n, scratch.data(), wide.data());
        k.stats_f64(scratch.data(), n, &s);
        break;
    }
    merge_stats(total, s);
  }
  return total;
}

// Statistics of T(x) - T(t) for a full update, and whether x itself was finite.
template <typename T>
Stats full_stats(DType xd, const void* x, DType td, const void* t, uint64_t numel, bool* x_finite,
                 std::vector<double>& scratch, std::vector<float>& wide) {
  Stats total;
  std::vector<T> xs(kChunk), ts(kChunk);
  for (uint64_t lo = 0; lo < numel; lo += kChunk) {
    size_t n = size_t(std::min<uint64_t>(kChunk, numel - lo));
    load_as(xd, x, lo, n, xs.data(), wide.data());
    load_as(td, t, lo, n, ts.data(), wide.data());
    Stats s;
    if constexpr (sizeof(T) == 8)
      kernels().stats_sub_f64(xs.data(), ts.data(), n, &s);
    else
      kernels().stats_sub_f32(xs.data(), ts.data(), n, &s);
    merge_stats(total, s);
  }
  // Only a non-finite difference needs to know whether x was finite (nonfinite vs overflow).
  *x_finite = total.finite || part_stats(xd, x, numel, scratch, wide).finite;
  return total;
}

// Every value integral and within int32's range (an update for an int32 parameter).
bool integral_int32(DType dtype, const void* data, uint64_t numel, std::vector<double>& scratch,
                    std::vector<float>& wide) {
  for (uint64_t lo = 0; lo < numel; lo += kChunk) {
    size_t n = size_t(std::min<uint64_t>(kChunk, numel - lo));
    load_as(dtype, data, lo, n, scratch.data(), wide.data());
    for (size_t i = 0; i < n; ++i) {
      double v = scratch[i];
      if (!(v == std::nearbyint(v) && v >= -2147483648.0 && v <= 2147483647.0)) return false;
    }
  }
  return true;
}

// ---- folding --------------------------------------------------------------------

void acc_same(double* acc, double w, const double* x, size_t n) {
  kernels().acc_f64_f64(acc, w, x, n);
}
void acc_same(float* acc, double w, const float* x, size_t n) {
  kernels().acc_f32_f32(acc, float(w), x, n);
}

// acc[lo..lo+n) += w * x, straight from the payload where a kernel takes its type.
bool acc_direct(Accum accum, void* acc, double w, DType dtype, const void* x, uint64_t lo,
                size_t n) {
  const Kernels& k = kernels();
  const auto* p = static_cast<const uint8_t*>(x);
  if (accum == Accum::f64) {
    double* a = static_cast<double*>(acc) + lo;
    switch (dtype) {
      case DType::float16:
        k.acc_f64_f16(a, w, reinterpret_cast<const uint16_t*>(p) + lo, n);
        return true;
      case DType::float32:
        k.acc_f64_f32(a, w, reinterpret_cast<const float*>(p + 4 * lo), n);
        return true;
      case DType::float64:
        k.acc_f64_f64(a, w, reinterpret_cast<const double*>(p + 8 * lo), n);
        return true;
      default: return false;
    }
  }
  float* a = static_cast<float*>(acc) + lo;
  switch (dtype) {
    case DType::float16:
      k.acc_f32_f16(a, float(w), reinterpret_cast<const uint16_t*>(p) + lo, n);
      return true;
    case DType::float32:
      k.acc_f32_f32(a, float(w), reinterpret_cast<const float*>(p + 4 * lo), n);
      return true;
    default: return false;
  }
}

// ---- outputs --------------------------------------------------------------------

// T values -> the output dtype at dst[lo..lo+n); false if a value does not fit
// (non-finite after conversion when `check`; int32: out of range after rounding).
template <typename T>
bool store(const T* r, size_t n, DType out, void* dst, uint64_t lo, bool check) {
  auto* d = static_cast<uint8_t*>(dst);
  const Kernels& k = kernels();
  switch (out) {
    case DType::float64: {
      auto* o = reinterpret_cast<double*>(d) + lo;
      if constexpr (sizeof(T) == 8)
        std::memcpy(o, r, 8 * n);
      else
        k.f32_to_f64(reinterpret_cast<const float*>(r), o, n);
      return !check || k.all_finite_f64(o, n);
    }
    case DType::float32: {
      auto* o = reinterpret_cast<float*>(d) + lo;
      if constexpr (sizeof(T) == 8)
        k.f64_to_f32(reinterpret_cast<const double*>(r), o, n);
      else
        std::memcpy(o, r, 4 * n);
      return !check || k.all_finite_f32(o, n);
    }
    case DType::float16: {
      auto* o = reinterpret_cast<uint16_t*>(d) + lo;
      if constexpr (sizeof(T) == 8)
        k.f64_to_f16(reinterpret_cast<const double*>(r), o, n);
      else
        k.f32_to_f16(reinterpret_cast<const float*>(r), o, n);
      return !check || k.all_finite_f16(o, n);
    }
    case DType::int32: {
      auto* o = reinterpret_cast<int32_t*>(d) + lo;
      bool ok = true;
      for (size_t i = 0; i < n; ++i) {
        double v = std::nearbyint(double(r[i]));  // half to even (the default rounding mode)
        if (v >= -2147483648.0 && v <= 2147483647.0) {
          o[i] = int32_t(v);
        } else {
          o[i] = 0;
          ok = false;
        }
      }
      return ok;  // an int32 cannot hold a non-finite or out-of-range value, allowed or not
    }
  }
  return true;
}

void div_same(const double* a, double d, double* o, size_t n) {
  kernels().div_f64(a, d, o, n);
}
void div_same(const float* a, float d, float* o, size_t n) {
  kernels().div_f32(a, d, o, n);
}
void axpy_div_same(double* r, double lr, const double* a, double d, size_t n) {
  kernels().axpy_div_f64(r, lr, a, d, n);
}
void axpy_div_same(float* r, float lr, const float* a, float d, size_t n) {
  kernels().axpy_div_f32(r, lr, a, d, n);
}

// T(template chunk) into r: the widenings have kernels; the rest goes through load_as.
template <typename T>
void template_as(const TemplateParam& tp, uint64_t lo, size_t n, T* r, float* wide) {
  const auto* p = static_cast<const uint8_t*>(tp.data);
  if constexpr (sizeof(T) == 8) {
    if (tp.dtype == DType::float32)
      return kernels().f32_to_f64(reinterpret_cast<const float*>(p + 4 * lo), r, n);
    if (tp.dtype == DType::float16)
      return kernels().f16_to_f64(reinterpret_cast<const uint16_t*>(p) + lo, r, n);
  }
  load_as(tp.dtype, tp.data, lo, n, r, wide);
}

// One pass per chunk of 4096 (the chunk stays in L1 between the steps):
// s = acc (+ noise); m = s / d; apply: r = T(t) + T(lr) * m; then stored.
template <typename T>
bool output_pass(const T* acc, const TemplateParam& tp, uint64_t numel, double wsum,
                 const OutputSpec& spec, void* out, DType out_dtype, const T* noise) {
  std::vector<T> r(kChunk), m(kChunk);
  std::vector<float> wide(kChunk);
  const double dd = spec.denominator > 0 ? spec.denominator : wsum;
  const T d = T(dd), lr = T(spec.lr);
  const bool check = !spec.allow_nonfinite || out_dtype == DType::int32;
  bool ok = true;
  for (uint64_t lo = 0; lo < numel; lo += kChunk) {
    size_t n = size_t(std::min<uint64_t>(kChunk, numel - lo));
    const T* s = acc + lo;
    if (noise) {
      std::memcpy(m.data(), s, sizeof(T) * n);
      acc_same(m.data(), 1.0, noise + lo, n);  // acc + 1 * noise: one rounding
      s = m.data();
    }
    const T* res = s;
    if (spec.what == Output::mean) {
      if (dd > 0)
        div_same(s, d, m.data(), n);
      else
        std::fill(m.begin(), m.begin() + n, T(0));
      res = m.data();
    } else if (spec.what == Output::apply) {
      template_as(tp, lo, n, r.data(), wide.data());
      if (dd > 0) axpy_div_same(r.data(), lr, s, d, n);  // r + lr * (s / d), three roundings
      res = r.data();
    }
    if (!store(res, n, out_dtype, out, lo, check)) ok = false;
  }
  return ok;
}

}  // namespace

// ---- the aggregator ---------------------------------------------------------------

struct Aggregator::Prepared {
  struct Part {
    size_t param;
    DType dtype;
    const uint8_t* data;
    uint64_t numel;
    uint64_t offset;  // payload offset in the blob, kNoOffset for arrays
    int64_t record;
  };
  std::vector<Part> parts;
  std::vector<CollectedRecord> keep;  // owned payload buffers
  Buffer whole;                       // a compressed upload inflated at once
  double weight = 1;
  double scale = 1;  // weight * clipping factor
  AddResult result;
};

Aggregator::Aggregator(std::vector<TemplateParam> params, Accum accum) : accum_(accum) {
  params_.reserve(params.size());
  uint64_t cap = kHeaderSize;
  auto add_cap = [&](uint64_t v) { cap = cap > UINT64_MAX - v ? UINT64_MAX : cap + v; };
  for (TemplateParam& tp : params) {
    Param p;
    uint64_t numel = 1;
    bool zero = false, overflow = false;
    for (uint64_t d : tp.dims) {
      if (d == 0)
        zero = true;
      else if (!checked_mul(numel, d, &numel))
        overflow = true;
    }
    if (zero)
      numel = 0;
    else if (overflow)
      throw std::invalid_argument("template parameter '" + tp.name + "' is too large");
    uint64_t bytes;
    if (!checked_mul(numel, 8, &bytes))
      throw std::invalid_argument("template parameter '" + tp.name + "' is too large");
    add_cap(4 + tp.name.size() + 4 + 4 * uint64_t(tp.dims.size()) + 4 + 4);
    add_cap(bytes);
    p.numel = numel;
    p.acc.reset(buffer_alloc_zeroed(numel * accum_size(accum)));
    p.block_locks.reset(new std::mutex[blocks_of(numel)]);
    if (!index_.emplace(tp.name, params_.size()).second)
      throw std::invalid_argument("the template names '" + tp.name + "' twice");
    p.spec = std::move(tp);
    params_.push_back(std::move(p));
  }
  blob_cap_ = cap;
  weight_sums_.assign(params_.size(), 0.0);
}

Aggregator::~Aggregator() = default;

void Aggregator::check_weight(double weight) const {
  if (!(std::isfinite(weight) && weight > 0))
    throw std::invalid_argument("weight must be a positive finite number");
  if (accum_ == Accum::f32 && !(std::isfinite(float(weight)) && float(weight) >= 1.17549435e-38f))
    throw std::invalid_argument("weight is outside float32's normal range (accumulate float32)");
}

Aggregator::Totals Aggregator::totals() const {
  std::lock_guard<std::mutex> lock(totals_mu_);
  return totals_;
}

size_t Aggregator::match(const std::string& name, const uint32_t* dims32, const uint64_t* dims64,
                         size_t ndim, DType dtype, bool dtype_final, const AddOptions& opts,
                         uint64_t offset, int64_t record) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw Error(Reason::unknown_name,
                "the update names " + quoted(name) + ", which the template lacks", offset, record,
                name, true);
  const TemplateParam& tp = params_[it->second].spec;
  std::vector<uint64_t> dims(ndim);
  for (size_t i = 0; i < ndim; ++i) dims[i] = dims32 ? dims32[i] : dims64[i];
  if (dims != tp.dims)
    throw Error(Reason::shape_mismatch,
                quoted(name) + " has shape " + shape_text(dims.data(), ndim) + " in the update, " +
                    shape_text(tp.dims.data(), tp.dims.size()) + " in the template",
                offset, record, name, true);
  if (dtype_final && !opts.allow_cast && is_float(tp.dtype) && !is_float(dtype))
    throw Error(Reason::dtype_mismatch,
                quoted(name) + " is int32 in the update, " + dtype_name(tp.dtype) +
                    " in the template (pass allow_cast=True to fold it anyway)",
                offset, record, name, true);
  return it->second;
}

// Matches each record to its parameter as its header arrives (an unknown name
// or a wrong shape fails before the payload is read or inflated) and keeps
// the payloads: borrowed from the input where they can be, else owned.
class MatchingSink : public RecordSink {
 public:
  MatchingSink(const Aggregator& agg, const AddOptions& opts, bool copy, Aggregator::Prepared& out)
      : agg_(agg), opts_(opts), collect_(copy), out_(out), first_part_(out.parts.size()) {}

  uint8_t* payload_space(const RecordInfo& r, uint64_t have, size_t* room) override {
    return collect_.payload_space(r, have, room);
  }

  void on_header(const RecordInfo& r) override {
    const bool pending = opts_.read.relabel == Relabel::automatic && r.dtype == DType::int32;
    param_ = agg_.match(r.name, r.dims.data(), nullptr, r.dims.size(), r.dtype, !pending, opts_,
                        r.payload_offset, r.index);
  }

  void on_record(const RecordInfo& r, const uint8_t* payload) override {
    if (opts_.read.relabel == Relabel::automatic && r.code == uint32_t(DType::int32))
      agg_.match(r.name, r.dims.data(), nullptr, r.dims.size(), r.dtype, true, opts_,
                 r.payload_offset, r.index);
    collect_.on_record(r, payload);
    CollectedRecord& c = collect_.records().back();
    if (r.big_endian && !c.owned) swapped_copy(c);  // borrowed under "auto"
    out_.parts.push_back({param_, r.dtype, c.data, r.numel, r.payload_offset, int64_t(r.index)});
    if (r.big_endian) out_.result.big_endian = true;
    if (uint32_t(r.dtype) != r.code) ++out_.result.relabelled;
  }

  // After the reader finished. Under byteorder "auto" the blob's decision
  // holds for every payload, also those read before it (little-endian then);
  // a blob that never decided although a payload may read either way is refused.
  void finish(const Reader& reader) {
    if (opts_.read.byteorder == ByteOrder::automatic) {
      if (reader.order_decided() && reader.decided_order() == ByteOrder::big) {
        std::vector<CollectedRecord>& records = collect_.records();
        for (size_t j = 0; j < records.size(); ++j) {
          CollectedRecord& c = records[j];
          if (c.info.big_endian) continue;
          // Read little-endian before the decision (in place when it could be
          // borrowed): swapped now, keeping the effective dtype of relabelling.
          if (c.owned)
            byteswap_inplace(c.owned.get(), c.info.numel, itemsize(c.info.dtype));
          else
            swapped_copy(c);
          out_.parts[first_part_ + j].data = c.data;  // one part per record, in order
          c.info.big_endian = true;
          out_.result.big_endian = true;
        }
      } else if (!reader.order_decided() && reader.ambiguity().seen) {
        const Reader::Ambiguity& a = reader.ambiguity();
        throw Error(Reason::ambiguous_byteorder,
                    "byteorder 'auto' cannot tell the byte order: no float32 payload reads "
                    "plausibly in one order only, and " +
                        quoted(a.name) + " reads differently in the two; pass byteorder='<' or '>'",
                    a.offset, int64_t(a.record), a.name, true);
      }
    }
    for (CollectedRecord& c : collect_.records())
      if (c.owned) out_.keep.push_back(std::move(c));
    collect_.records().clear();
  }

 private:
  const Aggregator& agg_;
  const AddOptions& opts_;
  CollectingSink collect_;
  Aggregator::Prepared& out_;
  const size_t first_part_;  // the part of the first collected record
  size_t param_ = 0;

  // A borrowed payload in host order: copied and swapped.
  static void swapped_copy(CollectedRecord& c) {
    c.owned.reset(buffer_alloc(c.info.nbytes));
    if (c.info.nbytes) std::memcpy(c.owned.get(), c.data, c.info.nbytes);
    byteswap_inplace(c.owned.get(), c.info.numel, itemsize(c.info.dtype));
    c.data = c.owned.get();
  }
};

void Aggregator::prepare_blob(const uint8_t* data, size_t n, double weight, const AddOptions& opts,
                              Prepared& out) const {
  check_weight(weight);
  out.weight = weight;
  Wrapper w = detect_wrapper(data, std::min<size_t>(n, 4));
  AddOptions o = opts;
  // Uncompressed input is bounded by itself; a compressed one by what a valid
  // update of this template can be.
  o.read.max_size = w == Wrapper::none ? UINT64_MAX : std::min(opts.read.max_size, blob_cap_);
  // A compressed upload inflated whole is parsed where it lies, as an
  // uncompressed one is; on any error the streaming path reports it exactly.
  uint64_t size = 0;
  if (Buffer whole = inflate_blob(data, n, w, o.read.max_size, &size)) {
    try {
      parse_blob(whole.get(), size_t(size), o, out);
      out.whole = std::move(whole);
      validate(out, o);
      return;
    } catch (const Error&) {
      out = Prepared();
      out.weight = weight;
    }
  }
  parse_blob(data, n, o, out);
  validate(out, o);
}

void Aggregator::parse_blob(const uint8_t* data, size_t n, const AddOptions& o,
                            Prepared& out) const {
  // Compressed and byte-swapped payloads land in owned buffers in host order;
  // plain little-endian ones are read where they lie.
  const bool plain = detect_wrapper(data, std::min<size_t>(n, 4)) == Wrapper::none;
  // Plain input is borrowed where it lies, also under "auto" (a record read
  // big-endian is copied to be swapped, and so is one read before a big decision).
  MatchingSink sink(*this, o, !plain || o.read.byteorder == ByteOrder::big, out);
  try {
    StreamDecoder dec(o.read, &sink);
    dec.feed(data, n, /*borrow=*/true);
    dec.finish();
    sink.finish(dec.reader());
  } catch (const Error& e) {
    // The template's cap cannot be raised: say what it is rather than how to lift max_size.
    if (e.reason() != Reason::too_large || o.read.max_size != blob_cap_) throw;
    throw Error(Reason::too_large,
                "the upload would decode past " + std::to_string(blob_cap_) +
                    " bytes, the most a valid update of this template can be (every "
                    "parameter as float64, plus headers)",
                e.offset(), e.record(), e.name(), e.has_name());
  }
}

void Aggregator::prepare_arrays(const std::vector<UpdateArray>& arrays, double weight,
                                const AddOptions& opts, Prepared& out) const {
  check_weight(weight);
  out.weight = weight;
  std::unordered_map<std::string, size_t, KeyedHash> seen;
  for (size_t i = 0; i < arrays.size(); ++i) {
    const UpdateArray& a = arrays[i];
    if (!seen.emplace(a.name, i).second)
      throw Error(Reason::duplicate_name, quoted(a.name) + " occurs twice in the update", kNoOffset,
                  kNoRecord, a.name, true);
    size_t p = match(a.name, nullptr, a.dims.data(), a.dims.size(), a.dtype, true, opts, kNoOffset,
                     kNoRecord);
    out.parts.push_back(
        {p, a.dtype, static_cast<const uint8_t*>(a.data), params_[p].numel, kNoOffset, kNoRecord});
  }
  validate(out, opts);
}

void Aggregator::validate(Prepared& p, const AddOptions& opts) const {
  std::vector<double> scratch(kChunk);
  std::vector<float> wide(kChunk);
  Stats total;
  const bool need_finite = !opts.allow_nonfinite;
  auto where = [&](const Prepared::Part& part, Reason r, const std::string& msg) {
    const std::string& name = params_[part.param].spec.name;
    return Error(r, msg, part.offset, part.record, name, true);
  };
  for (const Prepared::Part& part : p.parts) {
    const Param& param = params_[part.param];
    const std::string name = quoted(param.spec.name);
    Stats s;
    if (opts.kind == Kind::full) {
      bool x_finite = true;
      s = accum_ == Accum::f64
              ? full_stats<double>(part.dtype, part.data, param.spec.dtype, param.spec.data,
                                   part.numel, &x_finite, scratch, wide)
              : full_stats<float>(part.dtype, part.data, param.spec.dtype, param.spec.data,
                                  part.numel, &x_finite, scratch, wide);
      if (!s.finite && need_finite) {
        if (!x_finite) throw where(part, Reason::nonfinite, name + " holds NaN or infinity");
        throw where(part, Reason::overflow,
                    name + ": the update minus the template overflows the accumulate dtype");
      }
    } else {
      s = part_stats(part.dtype, part.data, part.numel, scratch, wide);
      if (!s.finite && need_finite)
        throw where(part, Reason::nonfinite, name + " holds NaN or infinity");
    }
    if (!opts.allow_cast && param.spec.dtype == DType::int32 && is_float(part.dtype) &&
        !integral_int32(part.dtype, part.data, part.numel, scratch, wide))
      throw where(part, Reason::dtype_mismatch,
                  name +
                      " is int32 in the template but the update holds values that are not "
                      "int32 integers (pass allow_cast=True to fold them anyway)");
    if (s.maxabs > opts.max_abs)
      throw where(part, Reason::norm_exceeded,
                  name + " holds an element of magnitude " + std::to_string(s.maxabs) +
                      ", beyond max_abs=" + std::to_string(opts.max_abs));
    merge_stats(total, s);
    p.result.elements += part.numel;
  }
  p.result.parameters = uint32_t(p.parts.size());
  p.result.norm = std::sqrt(total.sumsq);
  p.result.max_abs = total.maxabs;
  const bool bounded = opts.clip_norm > 0 || opts.max_norm < kNoBound;
  if (bounded && !std::isfinite(p.result.norm))
    throw Error(Reason::nonfinite,
                "the update's norm is not finite: it cannot be clipped or bounded");
  if (p.result.norm > opts.max_norm)
    throw Error(Reason::norm_exceeded, "the update's L2 norm " + std::to_string(p.result.norm) +
                                           " exceeds max_norm=" + std::to_string(opts.max_norm));
  p.result.factor =
      opts.clip_norm > 0 && p.result.norm > opts.clip_norm ? opts.clip_norm / p.result.norm : 1.0;
  p.scale = p.weight * p.result.factor;
  if (total.finite) {
    const double peak = p.scale * total.maxabs;
    const bool fits = accum_ == Accum::f64 ? std::isfinite(peak) : std::isfinite(float(peak));
    if (!fits)
      throw Error(Reason::overflow,
                  "weight x the update's largest element overflows the "
                  "accumulate dtype");
  }
  p.result.counted = !p.parts.empty() || opts.count_empty;
}

void Aggregator::fold(const std::vector<Prepared*>& batch, Kind kind) {
  std::shared_lock<SnapshotLock> shared(state_);
  {
    // Weight sums and totals first, all or nothing: an add whose weights
    // would overflow them is refused before anything moves.
    std::lock_guard<std::mutex> lock(totals_mu_);
    std::vector<double> sums = weight_sums_;
    Totals t = totals_;
    for (Prepared* p : batch) {
      for (const Prepared::Part& part : p->parts) sums[part.param] += p->weight;
      if (p->result.counted) {
        ++t.count;
        t.total_weight += p->weight;
      } else {
        ++t.empty;
      }
    }
    if (!std::isfinite(t.total_weight))
      throw Error(Reason::overflow, "the round's total weight would overflow float64");
    weight_sums_ = std::move(sums);
    totals_ = t;
  }
  // Parameter by parameter, block by block: every upload of the batch in turn
  // on a block that stays in cache, in batch order (so the sums are the
  // sequential ones, bit for bit).
  std::vector<std::vector<std::pair<const Prepared*, const Prepared::Part*>>> by_param(
      params_.size());
  for (const Prepared* p : batch)
    for (const Prepared::Part& part : p->parts) by_param[part.param].push_back({p, &part});
  const size_t width = accum_size(accum_);
  std::vector<uint8_t> xs(kChunk * width), ts(kChunk * width);
  std::vector<float> wide(kChunk);
  for (size_t pi = 0; pi < params_.size(); ++pi) {
    const auto& ups = by_param[pi];
    if (ups.empty()) continue;
    Param& param = params_[pi];
    uint8_t* acc = param.acc.get();
    for (uint64_t lo = 0, b = 0; lo < param.numel; lo += kBlock, ++b) {
      const uint64_t hi = std::min(param.numel, lo + kBlock);
      std::lock_guard<std::mutex> lock(param.block_locks[b]);
      for (uint64_t s = lo; s < hi; s += kSubBlock) {
        const uint64_t e = std::min(hi, s + kSubBlock);
        if (kind == Kind::delta) {
          for (auto [p, part] : ups) {
            const size_t n = size_t(e - s);
            if (acc_direct(accum_, acc, p->scale, part->dtype, part->data, s, n)) continue;
            for (uint64_t c = s; c < e; c += kChunk) {
              size_t m = size_t(std::min<uint64_t>(kChunk, e - c));
              if (accum_ == Accum::f64) {
                load_as(part->dtype, part->data, c, m, reinterpret_cast<double*>(xs.data()),
                        wide.data());
                acc_same(reinterpret_cast<double*>(acc) + c, p->scale,
                         reinterpret_cast<double*>(xs.data()), m);
              } else {
                load_as(part->dtype, part->data, c, m, reinterpret_cast<float*>(xs.data()),
                        wide.data());
                acc_same(reinterpret_cast<float*>(acc) + c, p->scale,
                         reinterpret_cast<float*>(xs.data()), m);
              }
            }
          }
        } else {
          // The template chunk is converted once for every upload of the batch.
          for (uint64_t c = s; c < e; c += kChunk) {
            size_t m = size_t(std::min<uint64_t>(kChunk, e - c));
            if (accum_ == Accum::f64) {
              auto* x = reinterpret_cast<double*>(xs.data());
              auto* t = reinterpret_cast<double*>(ts.data());
              load_as(param.spec.dtype, param.spec.data, c, m, t, wide.data());
              for (auto [p, part] : ups) {
                load_as(part->dtype, part->data, c, m, x, wide.data());
                kernels().sub_f64(x, t, x, m);
                acc_same(reinterpret_cast<double*>(acc) + c, p->scale, x, m);
              }
            } else {
              auto* x = reinterpret_cast<float*>(xs.data());
              auto* t = reinterpret_cast<float*>(ts.data());
              load_as(param.spec.dtype, param.spec.data, c, m, t, wide.data());
              for (auto [p, part] : ups) {
                load_as(part->dtype, part->data, c, m, x, wide.data());
                kernels().sub_f32(x, t, x, m);
                acc_same(reinterpret_cast<float*>(acc) + c, p->scale, x, m);
              }
            }
          }
        }
      }
    }
  }
}

AddResult Aggregator::add_blob(const uint8_t* data, size_t n, double weight,
                               const AddOptions& opts) {
  Prepared p;
  prepare_blob(data, n, weight, opts, p);
  fold({&p}, opts.kind);
  return p.result;
}

AddResult Aggregator::add_arrays(const std::vector<UpdateArray>& arrays, double weight,
                                 const AddOptions& opts) {
  Prepared p;
  prepare_arrays(arrays, weight, opts, p);
  fold({&p}, opts.kind);
  return p.result;
}

std::vector<Outcome> Aggregator::add_many(const std::vector<Upload>& uploads,
                                          const AddOptions& opts) {
  std::vector<Outcome> out(uploads.size());
  std::vector<Prepared> prepared(uploads.size());
  std::vector<Prepared*> valid;
  for (size_t i = 0; i < uploads.size(); ++i) {
    const Upload& u = uploads[i];
    try {
      if (u.arrays)
        prepare_arrays(*u.arrays, u.weight, opts, prepared[i]);
      else
        prepare_blob(u.data, u.size, u.weight, opts, prepared[i]);
      valid.push_back(&prepared[i]);
    } catch (const Error& e) {
      out[i].error = std::make_unique<Error>(e);
      prepared[i] = Prepared{};  // frees what it held at once
    }
  }
  try {
    fold(valid, opts.kind);
  } catch (const Error& e) {
    // Only the totals can refuse a batch (overflow), before anything moved.
    for (Prepared* p : valid) out[size_t(p - prepared.data())].error = std::make_unique<Error>(e);
    return out;
  }
  for (Prepared* p : valid) out[size_t(p - prepared.data())].result = p->result;
  return out;
}

void Aggregator::merge(Aggregator& other) {
  if (&other == this) throw std::invalid_argument("an aggregator cannot merge itself");
  if (other.accum_ != accum_)
    throw std::invalid_argument("the aggregators accumulate in different dtypes");
  if (other.params_.size() != params_.size())
    throw Error(Reason::shape_mismatch, "the aggregators hold different parameters");
  for (size_t i = 0; i < params_.size(); ++i)
    if (other.params_[i].spec.name != params_[i].spec.name ||
        other.params_[i].spec.dims != params_[i].spec.dims)
      throw Error(Reason::shape_mismatch,
                  "parameter " + quoted(params_[i].spec.name) + " differs between the aggregators",
                  kNoOffset, kNoRecord, params_[i].spec.name, true);
  // A fixed lock order: a.merge(b) and b.merge(a) at once cannot deadlock.
  // With both held exclusively no add is folding into either.
  Aggregator* first = this < &other ? this : &other;
  Aggregator* second = this < &other ? &other : this;
  std::unique_lock<SnapshotLock> l1(first->state_), l2(second->state_);
  check_merged_weights(other.weight_sums_, other.totals_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    if (accum_ == Accum::f64)
      kernels().acc_f64_f64(reinterpret_cast<double*>(p.acc.get()), 1.0,
                            reinterpret_cast<const double*>(other.params_[i].acc.get()), p.numel);
    else
      kernels().acc_f32_f32(reinterpret_cast<float*>(p.acc.get()), 1.0f,
                            reinterpret_cast<const float*>(other.params_[i].acc.get()), p.numel);
  }
  std::lock_guard<std::mutex> lock(totals_mu_);
  for (size_t i = 0; i < params_.size(); ++i) weight_sums_[i] += other.weight_sums_[i];
  totals_.count += other.totals_.count;
  totals_.total_weight += other.totals_.total_weight;
  totals_.empty += other.totals_.empty;
}

void Aggregator::output(const Hold& hold, size_t i, const OutputSpec& spec, void* out,
                        DType out_dtype, const void* noise) const {
  (void)hold;
  const Param& p = params_[i];
  const double wsum = weight_sums_[i];
  bool ok = accum_ == Accum::f64
                ? output_pass(reinterpret_cast<const double*>(p.acc.get()), p.spec, p.numel, wsum,
                              spec, out, out_dtype, static_cast<const double*>(noise))
                : output_pass(reinterpret_cast<const float*>(p.acc.get()), p.spec, p.numel, wsum,
                              spec, out, out_dtype, static_cast<const float*>(noise));
  if (!ok)
    throw Error(
        Reason::overflow,
        "the result for " + quoted(p.spec.name) + " does not fit " + dtype_name(out_dtype) +
            (out_dtype == DType::int32 ? " (out of range after rounding)" : " (not finite)"),
        kNoOffset, kNoRecord, p.spec.name, true);
}

void Aggregator::check_state(const std::vector<const void*>& accs, const std::vector<double>& sums,
                             const Totals& totals) const {
  if (accs.size() != params_.size() || sums.size() != params_.size())
    throw Error(Reason::bad_state, "the state holds " + std::to_string(accs.size()) +
                                       " accumulators for a template of " +
                                       std::to_string(params_.size()) + " parameters");
  for (size_t i = 0; i < sums.size(); ++i)
    if (!(std::isfinite(sums[i]) && sums[i] >= 0))
      throw Error(Reason::bad_state,
                  "the weight sum of " + quoted(params_[i].spec.name) +
                      " is not a finite non-negative number",
                  kNoOffset, kNoRecord, params_[i].spec.name, true);
  if (!(std::isfinite(totals.total_weight) && totals.total_weight >= 0))
    throw Error(Reason::bad_state, "the total weight is not a finite non-negative number");
  for (size_t i = 0; i < accs.size(); ++i) {
    const Param& p = params_[i];
    bool finite = accum_ == Accum::f64
                      ? kernels().all_finite_f64(static_cast<const double*>(accs[i]), p.numel)
                      : kernels().all_finite_f32(static_cast<const float*>(accs[i]), p.numel);
    if (!finite)
      throw Error(Reason::bad_state, "the accumulator of " + quoted(p.spec.name) + " is not finite",
                  kNoOffset, kNoRecord, p.spec.name, true);
  }
}

void Aggregator::restore(const std::vector<const void*>& accs, const std::vector<double>& sums,
                         const Totals& totals) {
  check_state(accs, sums, totals);
  std::unique_lock<SnapshotLock> lock(state_);
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].numel)
      std::memcpy(params_[i].acc.get(), accs[i], params_[i].numel * accum_size(accum_));
  std::lock_guard<std::mutex> t(totals_mu_);
  weight_sums_ = sums;
  totals_ = totals;
}

void Aggregator::check_merged_weights(const std::vector<double>& sums, const Totals& totals) const {
  // (Under the exclusive lock.) Weight sums that overflow would turn every
  // mean into 0 without an error: refused before anything moves.
  std::lock_guard<std::mutex> t(totals_mu_);
  bool finite = std::isfinite(totals_.total_weight + totals.total_weight);
  for (size_t i = 0; i < params_.size(); ++i)
    finite = finite && std::isfinite(weight_sums_[i] + sums[i]);
  if (!finite)
    throw Error(Reason::overflow, "merging would overflow the round's weight sums (float64)");
}

void Aggregator::merge_state(const std::vector<const void*>& accs, const std::vector<double>& sums,
                             const Totals& totals) {
  check_state(accs, sums, totals);
  std::unique_lock<SnapshotLock> lock(state_);
  check_merged_weights(sums, totals);
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    if (accum_ == Accum::f64)
      kernels().acc_f64_f64(reinterpret_cast<double*>(p.acc.get()), 1.0,
                            static_cast<const double*>(accs[i]), p.numel);
    else
      kernels().acc_f32_f32(reinterpret_cast<float*>(p.acc.get()), 1.0f,
                            static_cast<const float*>(accs[i]), p.numel);
  }
  std::lock_guard<std::mutex> t(totals_mu_);
  for (size_t i = 0; i < params_.size(); ++i) weight_sums_[i] += sums[i];
  totals_.count += totals.count;
  totals_.total_weight += totals.total_weight;
  totals_.empty += totals.empty;
}

}  // namespace ptth
