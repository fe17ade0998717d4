// ptth._native._core: the only file that knows Python. It checks that the
// arrays and buffers it is handed are what the core needs (dtype, C order,
// size, writability: a wrong call is a TypeError or ValueError, never a
// crash or a silent copy), releases the GIL for the core's work, turns
// results into NumPy arrays whose base keeps their memory alive, and
// translates ptth::Error into ptth.PTTHError. Argument rules (types, ranges,
// names) live in the Python front, which calls these primitives.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/aggregator.hpp"
#include "core/decode.hpp"
#include "core/deflate.hpp"
#include "core/format.hpp"
#include "core/inflate.hpp"
#include "core/kernels.hpp"
#include "core/writer.hpp"

namespace py = pybind11;
using namespace ptth;

namespace {

PyObject* g_error_type = nullptr;  // ptth.errors.PTTHError, owned by the module

py::object make_error(const Error& e) {
  py::object cls = py::reinterpret_borrow<py::object>(g_error_type);
  py::object offset = e.offset() == kNoOffset ? py::none() : py::object(py::int_(e.offset()));
  py::object record = e.record() == kNoRecord ? py::none() : py::object(py::int_(e.record()));
  py::object name = py::none();
  if (e.has_name())
    name = py::reinterpret_steal<py::object>(
        PyUnicode_DecodeUTF8(e.name().data(), py::ssize_t(e.name().size()), "replace"));
  return cls(reason_name(e.reason()), e.message(), py::arg("offset") = offset,
             py::arg("record") = record, py::arg("name") = name);
}

// Small calls keep the GIL: releasing it costs more than the work.
constexpr size_t kReleaseGilAbove = 16 * 1024;

class MaybeNoGil {
 public:
  explicit MaybeNoGil(size_t work) {
    if (work > kReleaseGilAbove) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

// ---- input buffers ---------------------------------------------------------

// A memoryview of the caller's object: it holds the buffer export for as long
// as any array built on it lives (a bytearray cannot be resized, an mmap not
// closed, under a live view).
struct Input {
  py::object view;
  const uint8_t* data = nullptr;
  size_t size = 0;
  bool readonly = true;

  explicit Input(py::handle obj) {
    PyObject* mv = PyMemoryView_FromObject(obj.ptr());
    if (mv == nullptr) {
      PyErr_Clear();
      throw py::type_error(std::string("expected a bytes-like object, not ") +
                           Py_TYPE(obj.ptr())->tp_name);
    }
    view = py::reinterpret_steal<py::object>(mv);
    const Py_buffer* b = PyMemoryView_GET_BUFFER(mv);
    if (b->format != nullptr && std::strchr(b->format, 'O') != nullptr)
      throw py::type_error("expected a bytes-like object, not a buffer of Python objects");
    if (!PyBuffer_IsContiguous(b, 'C')) throw py::value_error("the buffer must be C-contiguous");
    data = static_cast<const uint8_t*>(b->buf);
    size = size_t(b->len);
    readonly = b->readonly != 0;
  }
};

// ---- arrays ----------------------------------------------------------------

const py::dtype& numpy_dtype(DType d, bool big_endian) {
  // Spelled out with their byte order; leaked on purpose (live until exit).
  static const py::dtype* table[4][2] = {
      {new py::dtype("<f4"), new py::dtype(">f4")},
      {new py::dtype("<f8"), new py::dtype(">f8")},
      {new py::dtype("<i4"), new py::dtype(">i4")},
      {new py::dtype("<f2"), new py::dtype(">f2")},
  };
  return *table[size_t(d)][big_endian ? 1 : 0];
}

// The PTTH dtype of a native-order array, if it has one.
std::optional<DType> dtype_of(const py::array& a) {
  if (!a.dtype().attr("isnative").cast<bool>()) return std::nullopt;
  const char kind = a.dtype().kind();
  const py::ssize_t size = a.itemsize();
  if (kind == 'f' && size == 4) return DType::float32;
  if (kind == 'f' && size == 8) return DType::float64;
  if (kind == 'i' && size == 4) return DType::int32;
  if (kind == 'f' && size == 2) return DType::float16;
  return std::nullopt;
}

bool c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

// An array the core reads: exactly this dtype, C-contiguous.
const void* in_data(const py::array& a, DType want, const char* what) {
  auto d = dtype_of(a);
  if (!d || *d != want)
    throw py::type_error(std::string(what) + " must be a native-order " + dtype_name(want) +
                         " array");
  if (!c_contiguous(a)) throw py::value_error(std::string(what) + " must be C-contiguous");
  return a.data();
}

void* out_data(py::array& a, DType want, const char* what) {
  const void* p = in_data(a, want, what);
  if (!a.writeable()) throw py::value_error(std::string(what) + " must be writable");
  return const_cast<void*>(p);
}

void same_size(const py::array& a, const py::array& b) {
  if (a.size() != b.size()) throw py::value_error("the arrays differ in size");
}

std::vector<uint64_t> dims_of(const py::array& a) {
  std::vector<uint64_t> dims(size_t(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) dims[size_t(i)] = uint64_t(a.shape(i));
  return dims;
}

py::array make_array(const RecordInfo& r, bool big_endian, const void* ptr, py::handle base) {
  std::vector<py::ssize_t> shape(r.dims.begin(), r.dims.end());
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = py::ssize_t(itemsize(r.dtype));
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i] > 0 ? shape[i] : 1;
  }
  return py::array(numpy_dtype(r.dtype, big_endian), shape, strides, ptr, base);
}

py::str utf8(const std::string& s) {
  return py::reinterpret_steal<py::str>(
      PyUnicode_DecodeUTF8(s.data(), py::ssize_t(s.size()), "strict"));
}

// (name, array) results; borrowed payloads become views on `in`.
py::list records_to_list(std::vector<CollectedRecord>& records, const Input* in) {
  py::list out;
  py::object base;  // one uint8 array over the whole input; views inherit its flags
  for (CollectedRecord& c : records) {
    py::array arr;
    if (c.owned) {
      uint8_t* raw = c.owned.release();
      py::capsule owner(raw, [](void* p) { buffer_free(p); });
      arr = make_array(c.info, false, raw, owner);
    } else {
      if (!base) {
        py::array u8(py::dtype("uint8"), {py::ssize_t(in->size)}, {py::ssize_t(1)}, in->data,
                     in->view);
        if (in->readonly) u8.attr("setflags")(py::arg("write") = false);
        base = u8;
      }
      arr = make_array(c.info, c.info.big_endian, in->data + c.info.payload_offset, base);
    }
    out.append(py::make_tuple(utf8(c.info.name), arr));
  }
  return out;
}

ReadOptions read_options(ByteOrder byteorder, Relabel relabel, uint64_t max_size) {
  ReadOptions o;
  o.byteorder = byteorder;
  o.relabel = relabel;
  o.max_size = max_size;
  return o;
}

// ---- decode ----------------------------------------------------------------

py::list decode_blob(py::handle data, bool copy, ByteOrder byteorder, Relabel relabel,
                     uint64_t max_size) {
  Input in(data);
  Decoded d;
  {
    MaybeNoGil nogil(in.size);
    d = decode(in.data, in.size, read_options(byteorder, relabel, max_size), copy);
  }
  return records_to_list(d.records, &in);
}

ReadOptions stream_options(ByteOrder byteorder, Relabel relabel, uint64_t max_size,
                           uint64_t size_hint) {
  ReadOptions o = read_options(byteorder, relabel, max_size);
  o.prealloc = size_hint;
  return o;
}

class PyDecoder {
 public:
  PyDecoder(ByteOrder byteorder, Relabel relabel, uint64_t max_size, uint64_t size_hint)
      : dec_(stream_options(byteorder, relabel, max_size, size_hint)) {}

  py::list feed(py::handle chunk) {
    Input in(chunk);
    std::vector<CollectedRecord> done;
    {
      MaybeNoGil nogil(in.size);
      done = dec_.feed(in.data, in.size);
    }
    return records_to_list(done, nullptr);
  }

  void close() { dec_.close(); }

  std::optional<ByteOrder> byteorder() const {
    if (!dec_.order_known()) return std::nullopt;
    return dec_.order();
  }

  std::optional<Wrapper> wrapper() const {
    if (!dec_.wrapper_known()) return std::nullopt;
    return dec_.wrapper();
  }

  std::string state() const {
    switch (dec_.state()) {
      case Decoder::State::open: return "open";
      case Decoder::State::closed: return "closed";
      case Decoder::State::failed: return "failed";
    }
    return "?";
  }

 private:
  Decoder dec_;
};

// ---- compress / decompress / encode ------------------------------------------

// deflate_into's allocator: the stream goes straight into the bytes returned
// (called once, possibly without the GIL held).
uint8_t* new_bytes(py::bytes* out, size_t total) {
  py::gil_scoped_acquire gil;
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, py::ssize_t(total));
  if (raw == nullptr) {
    PyErr_Clear();
    throw std::bad_alloc();
  }
  *out = py::reinterpret_steal<py::bytes>(raw);
  return reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(raw));
}

py::bytes compress(py::handle data, int level, Wrapper wrapper, unsigned threads) {
  Input in(data);
  py::bytes out;
  {
    MaybeNoGil nogil(in.size);
    deflate_into(in.data, in.size, level, wrapper, threads,
                 [&](size_t total) { return new_bytes(&out, total); });
  }
  return out;
}

py::bytes decompress(py::handle data, std::optional<Wrapper> wrapper, uint64_t max_size) {
  Input in(data);
  Wrapper w = wrapper ? *wrapper : detect_wrapper(in.data, std::min<size_t>(in.size, 4));
  std::pair<Buffer, uint64_t> out;
  {
    MaybeNoGil nogil(in.size);
    // The fast whole-buffer inflate, or, when it cannot succeed cleanly, the
    // zlib-ng path that reports the exact error.
    if (!inflate_whole(in.data, in.size, w, max_size, &out.first, &out.second))
      out = inflate_all(in.data, in.size, w, max_size);
  }
  return py::bytes(reinterpret_cast<const char*>(out.first.get()), size_t(out.second));
}

Wrapper detect(py::handle data) {
  Input in(data);
  return detect_wrapper(in.data, std::min<size_t>(in.size, 4));
}

DType source_dtype(Convert c, DType written) {
  switch (c) {
    case Convert::none: return written;
    case Convert::f32_to_f16: return DType::float32;
    case Convert::f64_to_f16: return DType::float64;
    case Convert::f64_to_f32: return DType::float64;
  }
  return written;
}

// records: [(name, C-contiguous native array, dtype as written, conversion)];
// level < 0: uncompressed.
py::bytes encode(py::list records, int level, Wrapper wrapper, bool saturate, unsigned threads) {
  std::vector<WriteRecord> recs;
  recs.reserve(records.size());
  std::vector<py::array> keep;
  keep.reserve(records.size());
  for (py::handle item : records) {
    py::tuple t = py::reinterpret_borrow<py::tuple>(item);
    if (t.size() != 4) throw py::value_error("a record is (name, array, dtype, convert)");
    WriteRecord r;
    r.name = t[0].cast<std::string>();
    keep.push_back(t[1].cast<py::array>());
    const py::array& a = keep.back();
    r.dtype = t[2].cast<DType>();
    r.convert = t[3].cast<Convert>();
    r.data = in_data(a, source_dtype(r.convert, r.dtype), "a record's array");
    r.dims = dims_of(a);
    r.numel = uint64_t(a.size());
    recs.push_back(std::move(r));
  }
  uint64_t size = validate(recs);
  if (level >= 0) {
    py::bytes out;
    {
      // The blob is encoded whole, then deflated in one call, so that
      // dumps(compress=L) == compress(dumps(...), L) byte for byte.
      MaybeNoGil nogil(size);
      Buffer blob(buffer_alloc(size));
      encode_to(recs, blob.get(), size, saturate);
      deflate_into(blob.get(), size, level, wrapper, threads,
                   [&](size_t total) { return new_bytes(&out, total); });
    }
    return out;
  }
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, py::ssize_t(size));
  if (raw == nullptr) throw py::error_already_set();
  py::bytes out = py::reinterpret_steal<py::bytes>(raw);
  auto* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(raw));
  {
    MaybeNoGil nogil(size);
    encode_to(recs, dst, size, saturate);
  }
  return out;
}

// ---- element kernels: one function each ----------------------------------------

template <typename S, typename D>
void unary(py::array src, py::array dst, DType sd, DType dd,
           void (*Kernels::*fn)(const S*, D*, size_t)) {
  same_size(src, dst);
  const auto* s = static_cast<const S*>(in_data(src, sd, "x"));
  auto* d = static_cast<D*>(out_data(dst, dd, "out"));
  const size_t n = size_t(src.size());
  MaybeNoGil nogil(n * sizeof(S));
  (kernels().*fn)(s, d, n);
}

template <typename S, typename D>
void binary(py::array a, py::array b, py::array out, DType sd, DType dd,
            void (*Kernels::*fn)(const S*, const S*, D*, size_t)) {
  same_size(a, b);
  same_size(a, out);
  const auto* x = static_cast<const S*>(in_data(a, sd, "updated"));
  const auto* y = static_cast<const S*>(in_data(b, sd, "base"));
  auto* o = static_cast<D*>(out_data(out, dd, "out"));
  const size_t n = size_t(a.size());
  MaybeNoGil nogil(n * sizeof(S));
  (kernels().*fn)(x, y, o, n);
}

template <typename B, typename X>
void axpy(py::array base, B scale, py::array x, py::array out, DType bd, DType xd,
          void (*Kernels::*fn)(const B*, B, const X*, B*, size_t)) {
  same_size(base, x);
  same_size(base, out);
  const auto* b = static_cast<const B*>(in_data(base, bd, "base"));
  const auto* d = static_cast<const X*>(in_data(x, xd, "delta"));
  auto* o = static_cast<B*>(out_data(out, bd, "out"));
  const size_t n = size_t(base.size());
  MaybeNoGil nogil(n * sizeof(B));
  (kernels().*fn)(b, scale, d, o, n);
}

// ---- aggregator ------------------------------------------------------------------

py::tuple result_tuple(const AddResult& r) {
  return py::make_tuple(r.norm, r.max_abs, r.factor, r.parameters, r.elements,
                        r.big_endian ? ">" : "<", r.relabelled, r.counted);
}

// A mapping update as the core sees it: [(name, C-contiguous native array)].
struct Arrays {
  std::vector<UpdateArray> arrays;
  std::vector<py::array> keep;

  explicit Arrays(py::list items) {
    arrays.reserve(items.size());
    keep.reserve(items.size());
    for (py::handle item : items) {
      py::tuple t = py::reinterpret_borrow<py::tuple>(item);
      UpdateArray u;
      u.name = t[0].cast<std::string>();
      keep.push_back(t[1].cast<py::array>());
      const py::array& a = keep.back();
      auto d = dtype_of(a);
      if (!d) throw py::type_error("update arrays must be native-order float16/32/64 or int32");
      if (!c_contiguous(a)) throw py::value_error("update arrays must be C-contiguous");
      u.dtype = *d;
      u.dims = dims_of(a);
      u.data = a.data();
      arrays.push_back(std::move(u));
    }
  }
};

class PyAggregator;

// Keeps adds out while the front reads the state or writes outputs.
class PyHold {
 public:
  explicit PyHold(std::shared_ptr<Aggregator> agg) : agg_(std::move(agg)) {
    py::gil_scoped_release nogil;  // adders in flight may need the GIL to return
    hold_ = std::make_unique<Aggregator::Hold>(*agg_);
  }

  void release() { hold_.reset(); }

  const Aggregator::Hold& hold() const {
    if (!hold_) throw py::value_error("the hold was released");
    return *hold_;
  }

  // Read-only views of the live accumulators: valid to read while held.
  py::list accumulators(py::object self) const {
    const Aggregator::Hold& h = hold();
    py::list out;
    const py::dtype dt(agg_->accum() == Accum::f64 ? "float64" : "float32");
    for (size_t i = 0; i < agg_->size(); ++i) {
      const TemplateParam& tp = agg_->param(i);
      std::vector<py::ssize_t> shape(tp.dims.begin(), tp.dims.end());
      py::array a(dt, shape, agg_->accumulator(h, i), self);
      a.attr("setflags")(py::arg("write") = false);
      out.append(a);
    }
    return out;
  }

  std::vector<double> weight_sums() const { return agg_->weight_sums(hold()); }

  py::tuple totals() const {
    Aggregator::Totals t = agg_->totals(hold());
    return py::make_tuple(t.count, t.total_weight, t.empty);
  }

  void output(size_t i, Output what, double lr, double denominator, bool allow_nonfinite,
              py::array out, std::optional<py::array> noise) const {
    const Aggregator::Hold& h = hold();
    if (i >= agg_->size()) throw py::index_error("no such parameter");
    OutputSpec spec{what, lr, denominator, allow_nonfinite};
    auto d = dtype_of(out);
    if (!d) throw py::type_error("out must be a native-order float16/32/64 or int32 array");
    void* dst = out_data(out, *d, "out");
    if (uint64_t(out.size()) != agg_->numel(i)) throw py::value_error("out has the wrong size");
    const void* nz = nullptr;
    if (noise) {
      nz = in_data(*noise, agg_->accum() == Accum::f64 ? DType::float64 : DType::float32, "noise");
      if (uint64_t(noise->size()) != agg_->numel(i))
        throw py::value_error("noise has the wrong size");
    }
    MaybeNoGil nogil(agg_->numel(i) * 8);
    agg_->output(h, i, spec, dst, *d, nz);
  }

 private:
  std::shared_ptr<Aggregator> agg_;
  std::unique_ptr<Aggregator::Hold> hold_;
};

class PyAggregator {
 public:
  // templates: C-contiguous native arrays in template order; the Python
  // object keeps them (the core borrows their values).
  PyAggregator(std::vector<std::string> names, py::list templates, Accum accum) : keep_(templates) {
    if (names.size() != templates.size()) throw py::value_error("one name per template array");
    std::vector<TemplateParam> params;
    for (size_t i = 0; i < names.size(); ++i) {
      py::array t = templates[i].cast<py::array>();
      auto d = dtype_of(t);
      if (!d) throw py::type_error("template arrays must be native-order float16/32/64 or int32");
      if (!c_contiguous(t)) throw py::value_error("template arrays must be C-contiguous");
      TemplateParam p;
      p.name = names[i];
      p.dims = dims_of(t);
      p.dtype = *d;
      p.data = t.data();
      params.push_back(std::move(p));
    }
    core_ = std::make_shared<Aggregator>(std::move(params), accum);
  }

  py::tuple add_blob(py::handle data, double weight, const AddOptions& opts) {
    Input in(data);
    AddResult r;
    {
      py::gil_scoped_release nogil;
      r = core_->add_blob(in.data, in.size, weight, opts);
    }
    return result_tuple(r);
  }

  py::tuple add_arrays(py::list items, double weight, const AddOptions& opts) {
    Arrays a(items);
    AddResult r;
    {
      py::gil_scoped_release nogil;
      r = core_->add_arrays(a.arrays, weight, opts);
    }
    return result_tuple(r);
  }

  // uploads: bytes-like objects or lists of (name, array); one weight each.
  py::list add_many(py::list uploads, std::vector<double> weights, const AddOptions& opts) {
    if (weights.size() != uploads.size()) throw py::value_error("one weight per upload");
    std::vector<Upload> ups(uploads.size());
    std::vector<std::unique_ptr<Input>> inputs;
    std::vector<std::unique_ptr<Arrays>> arrays;
    for (size_t i = 0; i < ups.size(); ++i) {
      py::handle u = uploads[i];
      ups[i].weight = weights[i];
      if (py::isinstance<py::list>(u)) {
        arrays.push_back(std::make_unique<Arrays>(py::reinterpret_borrow<py::list>(u)));
        ups[i].arrays = &arrays.back()->arrays;
      } else {
        inputs.push_back(std::make_unique<Input>(u));
        ups[i].data = inputs.back()->data;
        ups[i].size = inputs.back()->size;
      }
    }
    std::vector<Outcome> outcomes;
    {
      py::gil_scoped_release nogil;
      outcomes = core_->add_many(ups, opts);
    }
    py::list out;
    for (const Outcome& o : outcomes)
      out.append(o.error ? make_error(*o.error) : py::object(result_tuple(o.result)));
    return out;
  }

  void merge(PyAggregator& other) {
    py::gil_scoped_release nogil;
    core_->merge(*other.core_);
  }

  py::tuple totals() const {
    Aggregator::Totals t = core_->totals();
    return py::make_tuple(t.count, t.total_weight, t.empty);
  }

  std::unique_ptr<PyHold> hold() { return std::make_unique<PyHold>(core_); }

  void restore(py::list accs, std::vector<double> sums, uint64_t count, double total,
               uint64_t empty, bool merge) {
    std::vector<const void*> ptrs;
    std::vector<py::array> keep;
    if (accs.size() != core_->size())
      throw Error(Reason::bad_state, "the state holds " + std::to_string(accs.size()) +
                                         " accumulators for a template of " +
                                         std::to_string(core_->size()) + " parameters");
    const DType want = core_->accum() == Accum::f64 ? DType::float64 : DType::float32;
    for (size_t i = 0; i < accs.size(); ++i) {
      keep.push_back(accs[i].cast<py::array>());
      const py::array& a = keep.back();
      auto d = dtype_of(a);
      if (!d || *d != want || !c_contiguous(a) || uint64_t(a.size()) != core_->numel(i) ||
          dims_of(a) != core_->param(i).dims)
        throw Error(Reason::bad_state,
                    "the accumulator of '" + core_->param(i).name + "' is not a C-contiguous " +
                        dtype_name(want) + " array of the template's shape",
                    kNoOffset, kNoRecord, core_->param(i).name, true);
      ptrs.push_back(a.data());
    }
    Aggregator::Totals t{count, total, empty};
    py::gil_scoped_release nogil;
    if (merge)
      core_->merge_state(ptrs, sums, t);
    else
      core_->restore(ptrs, sums, t);
  }

  uint64_t blob_cap() const { return core_->blob_cap(); }

 private:
  py::list keep_;
  std::shared_ptr<Aggregator> core_;
};

// An uninitialised C-contiguous array from the core's allocator (huge pages,
// pooled): kernel outputs and aggregator results. Its base owns the memory.
py::array empty(std::vector<py::ssize_t> shape, DType dtype) {
  uint64_t n = itemsize(dtype);
  for (py::ssize_t d : shape) {
    if (d < 0) throw py::value_error("negative dimensions are not allowed");
    if (!checked_mul(n, uint64_t(d), &n) || n > uint64_t(INT64_MAX))
      throw py::value_error("array is too big");
  }
  uint8_t* raw = buffer_alloc(n);
  py::capsule owner(raw, [](void* p) { buffer_free(p); });
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = py::ssize_t(itemsize(dtype));
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i] > 0 ? shape[i] : 1;
  }
  return py::array(numpy_dtype(dtype, false), shape, strides, raw, owner);
}

py::dict build_info() {
  py::dict d;
  d["compiler"] = compiler_id();
  d["simd"] = tier_name(active_tier());
  py::list avail;
  for (SimdTier t : {SimdTier::scalar, SimdTier::avx2, SimdTier::avx512, SimdTier::neon})
    if (tier_available(t)) avail.append(tier_name(t));
  d["simd_available"] = avail;
  d["simd_note"] = simd_note();
  d["zlib_ng"] = zlib_ng_version();
  d["zlib_ng_origin"] = zlib_ng_origin();
  d["deflate_engine"] = deflate_engine(6);
  d["isal"] = isal_version();
  d["isal_origin"] = isal_origin();
  d["inflate_engine"] = *inflate_engine() ? inflate_engine() : "zlib-ng";
  d["libdeflate"] = libdeflate_version();
  d["libdeflate_origin"] = libdeflate_origin();
  d["deflate_block"] = kDeflateBlock;
  d["huge_pages"] = huge_pages_name(huge_pages());
  PoolStats pool = buffer_pool_stats();
  d["pool_idle_bytes"] = pool.idle_bytes;
  d["pool_cap_bytes"] = pool.cap_bytes;
  return d;
}

py::list reasons() {
  py::list out;
#define PTTH_REASON_ITEM(name, text) out.append(py::make_tuple(#name, text));
  PTTH_REASONS(PTTH_REASON_ITEM)
#undef PTTH_REASON_ITEM
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ptth's compiled engine (use the `ptth` package, not this module)";
  py::object error_type = py::module_::import("ptth.errors").attr("PTTHError");
  g_error_type = error_type.release().ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object inst = make_error(e);
      PyErr_SetObject(g_error_type, inst.ptr());
    }
  });

  py::enum_<ByteOrder>(m, "ByteOrder")
      .value("little", ByteOrder::little)
      .value("big", ByteOrder::big)
      .value("auto", ByteOrder::automatic);
  py::enum_<Relabel>(m, "Relabel")
      .value("off", Relabel::off)
      .value("on", Relabel::on)
      .value("auto", Relabel::automatic);
  py::enum_<Wrapper>(m, "Wrapper")
      .value("none", Wrapper::none)
      .value("zlib", Wrapper::zlib)
      .value("gzip", Wrapper::gzip)
      .value("deflate", Wrapper::deflate);
  py::enum_<DType>(m, "DType")
      .value("float32", DType::float32)
      .value("float64", DType::float64)
      .value("int32", DType::int32)
      .value("float16", DType::float16);
  py::enum_<Convert>(m, "Convert")
      .value("none", Convert::none)
      .value("f32_to_f16", Convert::f32_to_f16)
      .value("f64_to_f16", Convert::f64_to_f16)
      .value("f64_to_f32", Convert::f64_to_f32);
  py::enum_<Accum>(m, "Accum").value("f64", Accum::f64).value("f32", Accum::f32);
  py::enum_<Kind>(m, "Kind").value("delta", Kind::delta).value("full", Kind::full);
  py::enum_<Output>(m, "Output")
      .value("sum", Output::sum)
      .value("mean", Output::mean)
      .value("apply", Output::apply);

  m.attr("NAME") = "native";
  m.attr("DEFAULT_MAX_SIZE") = kDefaultMaxSize;
  m.def("reasons", &reasons);
  m.def("build_info", &build_info);
  m.def("empty", &empty, py::arg("shape"), py::arg("dtype"));
  m.def("release_memory", [] { return buffer_release_pool(); });

  m.def("detect_wrapper", &detect, py::arg("data"));
  m.def("decode", &decode_blob, py::arg("data"), py::arg("copy"), py::arg("byteorder"),
        py::arg("relabel"), py::arg("max_size"));
  py::class_<PyDecoder>(m, "Decoder")
      .def(py::init<ByteOrder, Relabel, uint64_t, uint64_t>(), py::arg("byteorder"),
           py::arg("relabel"), py::arg("max_size"), py::arg("size_hint") = 0)
      .def("feed", &PyDecoder::feed, py::arg("chunk"))
      .def("close", &PyDecoder::close)
      .def_property_readonly("byteorder", &PyDecoder::byteorder)
      .def_property_readonly("wrapper", &PyDecoder::wrapper)
      .def_property_readonly("state", &PyDecoder::state);
  m.def("encode", &encode, py::arg("records"), py::arg("level"), py::arg("wrapper"),
        py::arg("saturate"), py::arg("threads") = 1);
  m.def("compress", &compress, py::arg("data"), py::arg("level"), py::arg("wrapper"),
        py::arg("threads") = 1);
  m.def("decompress", &decompress, py::arg("data"), py::arg("wrapper"), py::arg("max_size"));

  using K = Kernels;
  m.def(
      "f32_to_f16",
      [](py::array x, py::array out) {
        unary<float, uint16_t>(x, out, DType::float32, DType::float16, &K::f32_to_f16);
      },
      py::arg("x"), py::arg("out"));
  m.def(
      "f64_to_f16",
      [](py::array x, py::array out) {
        unary<double, uint16_t>(x, out, DType::float64, DType::float16, &K::f64_to_f16);
      },
      py::arg("x"), py::arg("out"));
  m.def(
      "f16_to_f32",
      [](py::array x, py::array out) {
        unary<uint16_t, float>(x, out, DType::float16, DType::float32, &K::f16_to_f32);
      },
      py::arg("x"), py::arg("out"));
  m.def(
      "sub_f32",
      [](py::array a, py::array b, py::array out) {
        binary<float, float>(a, b, out, DType::float32, DType::float32, &K::sub_f32);
      },
      py::arg("updated"), py::arg("base"), py::arg("out"));
  m.def(
      "sub_f64",
      [](py::array a, py::array b, py::array out) {
        binary<double, double>(a, b, out, DType::float64, DType::float64, &K::sub_f64);
      },
      py::arg("updated"), py::arg("base"), py::arg("out"));
  m.def(
      "sub_f32_to_f16",
      [](py::array a, py::array b, py::array out) {
        binary<float, uint16_t>(a, b, out, DType::float32, DType::float16, &K::sub_f32_to_f16);
      },
      py::arg("updated"), py::arg("base"), py::arg("out"));
  m.def(
      "sub_f64_to_f16",
      [](py::array a, py::array b, py::array out) {
        binary<double, uint16_t>(a, b, out, DType::float64, DType::float16, &K::sub_f64_to_f16);
      },
      py::arg("updated"), py::arg("base"), py::arg("out"));
  m.def(
      "axpy_f32",
      [](py::array base, float scale, py::array x, py::array out) {
        axpy<float, float>(base, scale, x, out, DType::float32, DType::float32, &K::axpy_f32);
      },
      py::arg("base"), py::arg("scale"), py::arg("delta"), py::arg("out"));
  m.def(
      "axpy_f32_f16",
      [](py::array base, float scale, py::array x, py::array out) {
        axpy<float, uint16_t>(base, scale, x, out, DType::float32, DType::float16,
                              &K::axpy_f32_f16);
      },
      py::arg("base"), py::arg("scale"), py::arg("delta"), py::arg("out"));
  m.def(
      "axpy_f64",
      [](py::array base, double scale, py::array x, py::array out) {
        axpy<double, double>(base, scale, x, out, DType::float64, DType::float64, &K::axpy_f64);
      },
      py::arg("base"), py::arg("scale"), py::arg("delta"), py::arg("out"));

  py::class_<AddOptions>(m, "AddOptions")
      .def(py::init([](Kind kind, ByteOrder byteorder, Relabel relabel, uint64_t max_size,
                       bool allow_nonfinite, bool allow_cast, bool count_empty, double clip_norm,
                       double max_norm, double max_abs) {
             AddOptions o;
             o.kind = kind;
             o.read = read_options(byteorder, relabel, max_size);
             o.allow_nonfinite = allow_nonfinite;
             o.allow_cast = allow_cast;
             o.count_empty = count_empty;
             o.clip_norm = clip_norm;
             o.max_norm = max_norm;
             o.max_abs = max_abs;
             return o;
           }),
           py::kw_only(), py::arg("kind"), py::arg("byteorder"), py::arg("relabel"),
           py::arg("max_size"), py::arg("allow_nonfinite"), py::arg("allow_cast"),
           py::arg("count_empty"), py::arg("clip_norm"), py::arg("max_norm"), py::arg("max_abs"));

  py::class_<PyHold>(m, "Hold")
      .def("release", &PyHold::release)
      .def("accumulators", [](py::object self) { return self.cast<PyHold&>().accumulators(self); })
      .def("weight_sums", &PyHold::weight_sums)
      .def("totals", &PyHold::totals)
      .def("output", &PyHold::output, py::arg("index"), py::arg("what"), py::arg("lr"),
           py::arg("denominator"), py::arg("allow_nonfinite"), py::arg("out"),
           py::arg("noise") = py::none());

  py::class_<PyAggregator>(m, "AggregatorCore")
      .def(py::init<std::vector<std::string>, py::list, Accum>(), py::arg("names"),
           py::arg("templates"), py::arg("accum"))
      .def("add_blob", &PyAggregator::add_blob, py::arg("data"), py::arg("weight"),
           py::arg("options"))
      .def("add_arrays", &PyAggregator::add_arrays, py::arg("items"), py::arg("weight"),
           py::arg("options"))
      .def("add_many", &PyAggregator::add_many, py::arg("uploads"), py::arg("weights"),
           py::arg("options"))
      .def("merge", &PyAggregator::merge, py::arg("other"))
      .def("totals", &PyAggregator::totals)
      .def("hold", &PyAggregator::hold)
      .def("restore", &PyAggregator::restore, py::arg("accumulators"), py::arg("weight_sums"),
           py::arg("count"), py::arg("total_weight"), py::arg("empty"), py::arg("merge"))
      .def_property_readonly("blob_cap", &PyAggregator::blob_cap);
}
