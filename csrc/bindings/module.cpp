// ptth._native: the only file that knows Python. It reads pointers and sizes,
// releases the GIL for the core's work, turns results into NumPy arrays whose
// base keeps their memory alive, and translates ptth::Error into PTTHError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/aggregator.hpp"
#include "core/deflate.hpp"
#include "core/format.hpp"
#include "core/inflate.hpp"
#include "core/stream_decoder.hpp"
#include "core/kernels.hpp"
#include "core/reader.hpp"
#include "core/writer.hpp"

namespace py = pybind11;
using namespace ptth;

namespace {

PyObject* g_error_type = nullptr;  // ptth.errors.PTTHError, owned by the module

void set_error(const Error& e) {
  py::object cls = py::reinterpret_borrow<py::object>(g_error_type);
  py::object offset = e.offset() == kNoOffset ? py::none() : py::object(py::int_(e.offset()));
  py::object record = e.record() == kNoRecord ? py::none() : py::object(py::int_(e.record()));
  py::object inst = cls(reason_name(e.reason()), e.message(), py::arg("offset") = offset,
                        py::arg("record") = record);
  PyErr_SetObject(g_error_type, inst.ptr());
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
      throw Error(Reason::bad_argument, std::string("expected a bytes-like object, got ") +
                                            Py_TYPE(obj.ptr())->tp_name);
    }
    view = py::reinterpret_steal<py::object>(mv);
    const Py_buffer* b = PyMemoryView_GET_BUFFER(mv);
    if (!PyBuffer_IsContiguous(b, 'C'))
      throw Error(Reason::bad_argument, "the input buffer must be C-contiguous");
    data = static_cast<const uint8_t*>(b->buf);
    size = size_t(b->len);
    readonly = b->readonly != 0;
  }
};

ByteOrder parse_byteorder(const std::string& s) {
  if (s == "<") return ByteOrder::little;
  if (s == ">") return ByteOrder::big;
  if (s == "auto") return ByteOrder::automatic;
  throw Error(Reason::bad_argument, "byteorder must be '<', '>' or 'auto', not '" + s + "'");
}

uint64_t parse_max_size(py::handle max_size) {
  if (max_size.is_none()) return kDefaultMaxSize;
  if (!py::isinstance<py::int_>(max_size) || py::isinstance<py::bool_>(max_size))
    throw Error(Reason::bad_argument, "max_size must be an int or None");
  py::int_ v = py::reinterpret_borrow<py::int_>(max_size);
  if (v < py::int_(0)) throw Error(Reason::bad_argument, "max_size must not be negative");
  if (v > py::int_(UINT64_MAX)) return UINT64_MAX;
  return v.cast<uint64_t>();
}

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

py::array owned_array(CollectedRecord& c) {
  uint8_t* raw = c.owned.release();
  py::capsule owner(raw, [](void* p) { buffer_free(p); });
  return make_array(c.info, false, raw, owner);
}

py::str record_name(const RecordInfo& r) {
  return py::reinterpret_steal<py::str>(
      PyUnicode_DecodeUTF8(r.name.data(), py::ssize_t(r.name.size()), "strict"));
}

// ---- loads -----------------------------------------------------------------

ReadOptions read_options(py::handle byteorder, bool relabel_float32, py::handle max_size) {
  if (!py::isinstance<py::str>(byteorder))
    throw Error(Reason::bad_argument, "byteorder must be '<', '>' or 'auto'");
  ReadOptions opts;
  opts.byteorder = parse_byteorder(byteorder.cast<std::string>());
  opts.relabel_float32 = relabel_float32;
  opts.max_size = parse_max_size(max_size);
  return opts;
}

// Builds (name, array) results; borrowed payloads become views on `in`.
template <typename Emit>
void emit_records(std::vector<CollectedRecord>& records, const Input* in, Emit emit) {
  py::object base;  // one uint8 array over the whole input; views inherit its flags
  for (CollectedRecord& c : records) {
    py::array arr;
    if (c.owned) {
      arr = owned_array(c);
    } else {
      if (!base) {
        py::array u8(py::dtype("uint8"), {py::ssize_t(in->size)}, {py::ssize_t(1)}, in->data,
                     in->view);
        if (in->readonly) u8.attr("setflags")(py::arg("write") = false);
        base = u8;
      }
      arr = make_array(c.info, c.info.big_endian, in->data + c.info.payload_offset, base);
    }
    emit(record_name(c.info), std::move(arr));
  }
}

py::dict loads(py::handle data, bool copy, py::handle byteorder, bool relabel_float32,
               py::handle max_size) {
  ReadOptions opts = read_options(byteorder, relabel_float32, max_size);
  Input in(data);
  Wrapper w = detect_wrapper(in.data, std::min<size_t>(in.size, 4));
  // Uncompressed input is bounded by itself; views need no limit.
  if (w == Wrapper::none) opts.max_size = UINT64_MAX;
  CollectingSink sink(copy || w != Wrapper::none);
  {
    MaybeNoGil nogil(in.size);
    StreamDecoder dec(opts, &sink);
    dec.feed(in.data, in.size, /*borrow=*/true);
    dec.finish();
  }
  py::dict out;
  emit_records(sink.records(), &in, [&](py::str name, py::array arr) { out[name] = arr; });
  return out;
}

// ---- Decoder ---------------------------------------------------------------

class Decoder {
 public:
  Decoder(py::handle byteorder, bool relabel_float32, py::handle max_size)
      : opts_(read_options(byteorder, relabel_float32, max_size)), sink_(true),
        dec_(std::make_unique<StreamDecoder>(opts_, &sink_)) {}

  py::list feed(py::handle chunk) {
    Input in(chunk);
    std::vector<CollectedRecord> done;
    {
      MaybeNoGil nogil(in.size);
      std::lock_guard<std::mutex> lock(mu_);
      check_open();
      run([&] { dec_->feed(in.data, in.size); });
      done.swap(sink_.records());
    }
    py::list out;
    emit_records(done, nullptr, [&](py::str name, py::array arr) {
      out.append(py::make_tuple(name, arr));
    });
    return out;
  }

  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::closed) return;
    check_open();
    run([&] { dec_->finish(); });
    state_ = State::closed;
  }

  py::object byteorder() {
    std::lock_guard<std::mutex> lock(mu_);
    const Reader& r = dec_->reader();
    if (opts_.byteorder == ByteOrder::automatic && !r.order_decided()) return py::none();
    return py::str(r.decided_order() == ByteOrder::big ? ">" : "<");
  }

  py::object wrapper() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dec_->wrapper_known()) return py::none();
    return py::str(wrapper_name(dec_->wrapper()));
  }

 private:
  enum class State { open, closed, failed };

  void check_open() {
    if (state_ == State::closed) throw Error(Reason::closed, "the decoder is closed");
    if (state_ == State::failed)
      throw Error(Reason::closed, "the decoder stopped at an earlier error");
  }

  template <typename F>
  void run(F f) {
    try {
      f();
    } catch (...) {
      state_ = State::failed;
      sink_.records().clear();
      throw;
    }
  }

  ReadOptions opts_;
  CollectingSink sink_;
  std::unique_ptr<StreamDecoder> dec_;
  State state_ = State::open;
  std::mutex mu_;
};

// ---- compress / decompress --------------------------------------------------

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

py::bytes compress(py::handle data, long level, const std::string& wrapper, unsigned threads) {
  Wrapper w = parse_wrapper(wrapper.c_str());  // deflate_all refuses "none"
  int lvl = check_level(level);
  Input in(data);
  py::bytes out;
  {
    MaybeNoGil nogil(in.size);
    deflate_into(in.data, in.size, lvl, w, threads,
                 [&](size_t total) { return new_bytes(&out, total); });
  }
  return out;
}

py::bytes decompress(py::handle data, const std::string& wrapper, py::handle max_size) {
  uint64_t limit = parse_max_size(max_size);
  Input in(data);
  Wrapper w = wrapper == "auto" ? detect_wrapper(in.data, std::min<size_t>(in.size, 4))
                                : parse_wrapper(wrapper.c_str());
  std::pair<Buffer, uint64_t> out;
  {
    MaybeNoGil nogil(in.size);
    // The fast whole-buffer inflate, or, when it cannot succeed cleanly, the
    // zlib-ng path that reports the exact error.
    if (!inflate_whole(in.data, in.size, w, limit, &out.first, &out.second))
      out = inflate_all(in.data, in.size, w, limit);
  }
  return py::bytes(reinterpret_cast<const char*>(out.first.get()), size_t(out.second));
}

py::str detect(py::handle data) {
  Input in(data);
  return py::str(wrapper_name(detect_wrapper(in.data, std::min<size_t>(in.size, 4))));
}

// ---- dumps -----------------------------------------------------------------

// records: [(name: str, shape: tuple, code: int, data: C-contiguous native array, convert: int)]
py::bytes encode_records(py::list records, py::object level, const std::string& wrapper,
                         unsigned threads) {
  std::vector<WriteRecord> recs;
  std::vector<py::buffer_info> keep;  // buffer exports live until encoding ends
  recs.reserve(records.size());
  keep.reserve(records.size());
  for (py::handle item : records) {
    py::tuple t = py::reinterpret_borrow<py::tuple>(item);
    WriteRecord r;
    r.name = t[0].cast<std::string>();
    for (py::handle d : py::reinterpret_borrow<py::tuple>(t[1])) r.dims.push_back(d.cast<uint64_t>());
    r.dtype = DType(t[2].cast<uint32_t>());
    keep.push_back(py::reinterpret_borrow<py::buffer>(t[3]).request());
    r.data = keep.back().ptr;
    r.numel = uint64_t(keep.back().size);
    r.convert = Convert(t[4].cast<int>());
    recs.push_back(std::move(r));
  }
  uint64_t size = validate(recs);
  if (!level.is_none()) {
    Wrapper w = parse_wrapper(wrapper.c_str());
    int lvl = check_level(level.cast<long>());
    py::bytes out;
    {
      // One call over the whole blob, exactly as compress() does, so that
      // dumps(compress=L) == compress(dumps(...), L) byte for byte.
      MaybeNoGil nogil(size);
      std::vector<uint8_t> blob(size);
      encode_to(recs, blob.data(), size);
      deflate_into(blob.data(), blob.size(), lvl, w, threads,
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
    encode_to(recs, dst, size);
  }
  return out;
}

// ---- element kernels -------------------------------------------------------

// The Python layer hands over C-contiguous, native-order arrays of the right
// dtypes and shapes; this checks sizes and runs the kernel.
struct Buf {
  py::buffer_info info;
  Buf(py::handle obj, bool writable) : info(py::reinterpret_borrow<py::buffer>(obj).request(writable)) {}
  template <typename T>
  T* as() const { return static_cast<T*>(info.ptr); }
  size_t size() const { return size_t(info.size); }
};

void check_sizes(const Buf& a, const Buf& b) {
  if (a.size() != b.size()) throw Error(Reason::shape_mismatch, "the arrays differ in size");
}

enum CastOp { f32_to_f16 = 0, f64_to_f16 = 1, f16_to_f32 = 2 };

void cast(py::handle src, py::handle dst, int op) {
  Buf s(src, false), d(dst, true);
  check_sizes(s, d);
  const Kernels& k = kernels();
  MaybeNoGil nogil(s.size() * size_t(s.info.itemsize));
  switch (op) {
    case f32_to_f16: k.f32_to_f16(s.as<float>(), d.as<uint16_t>(), s.size()); break;
    case f64_to_f16: k.f64_to_f16(s.as<double>(), d.as<uint16_t>(), s.size()); break;
    case f16_to_f32: k.f16_to_f32(s.as<uint16_t>(), d.as<float>(), s.size()); break;
    default: throw Error(Reason::bad_argument, "unknown cast");
  }
}

enum SubOp { sub_f32 = 0, sub_f64 = 1, sub_f32_f16 = 2, sub_f64_f16 = 3 };

void subtract(py::handle a, py::handle b, py::handle out, int op) {
  Buf x(a, false), y(b, false), o(out, true);
  check_sizes(x, y);
  check_sizes(x, o);
  const Kernels& k = kernels();
  MaybeNoGil nogil(x.size() * size_t(x.info.itemsize));
  switch (op) {
    case sub_f32: k.sub_f32(x.as<float>(), y.as<float>(), o.as<float>(), x.size()); break;
    case sub_f64: k.sub_f64(x.as<double>(), y.as<double>(), o.as<double>(), x.size()); break;
    case sub_f32_f16: k.sub_f32_to_f16(x.as<float>(), y.as<float>(), o.as<uint16_t>(), x.size()); break;
    case sub_f64_f16: k.sub_f64_to_f16(x.as<double>(), y.as<double>(), o.as<uint16_t>(), x.size()); break;
    default: throw Error(Reason::bad_argument, "unknown subtraction");
  }
}

enum AxpyOp { axpy_f32 = 0, axpy_f32_f16 = 1, axpy_f64 = 2 };

void axpy(py::handle base, double scale, py::handle x, py::handle out, int op) {
  Buf b(base, false), d(x, false), o(out, true);
  check_sizes(b, d);
  check_sizes(b, o);
  const Kernels& k = kernels();
  MaybeNoGil nogil(b.size() * size_t(b.info.itemsize));
  switch (op) {
    case axpy_f32: k.axpy_f32(b.as<float>(), float(scale), d.as<float>(), o.as<float>(), b.size()); break;
    case axpy_f32_f16: k.axpy_f32_f16(b.as<float>(), float(scale), d.as<uint16_t>(), o.as<float>(), b.size()); break;
    case axpy_f64: k.axpy_f64(b.as<double>(), scale, d.as<double>(), o.as<double>(), b.size()); break;
    default: throw Error(Reason::bad_argument, "unknown axpy");
  }
}

// ---- aggregator ------------------------------------------------------------

// The Python Aggregator keeps the template and accumulator arrays; this object
// holds references to them and the core that adds into them without the GIL.
class AggregatorHandle {
 public:
  // names, templates (C-contiguous native arrays) and accumulators (zeros or a
  // restored state, C-contiguous, of the accumulate dtype), in template order.
  AggregatorHandle(py::list names, py::list templates, py::list accs, const std::string& accum)
      : keep_(py::make_tuple(templates, accs)) {
    Accum a = accum == "float64" ? Accum::f64 : Accum::f32;
    std::vector<Param> params;
    for (size_t i = 0; i < names.size(); ++i) {
      py::array t = templates[i].cast<py::array>(), acc = accs[i].cast<py::array>();
      Param p;
      p.name = names[i].cast<std::string>();
      for (py::ssize_t d = 0; d < t.ndim(); ++d) p.dims.push_back(uint32_t(t.shape(d)));
      p.numel = uint64_t(t.size());
      p.dtype = DType(dtype_code(t));
      p.tmpl = t.data();
      p.acc = acc.mutable_data();
      params.push_back(std::move(p));
    }
    core_ = std::make_unique<Aggregator>(std::move(params), a);
  }

  void add_blob(py::handle data, double weight, bool full, bool allow_nonfinite,
                py::handle byteorder, bool relabel_float32, py::handle max_size) {
    ReadOptions opts = read_options(byteorder, relabel_float32, max_size);
    Input in(data);
    py::gil_scoped_release nogil;
    core_->add_blob(in.data, in.size, opts, weight, full, allow_nonfinite);
  }

  // parts: [(param index, dtype code, C-contiguous native array)]
  void add_parts(py::list parts, double weight, bool full, bool allow_nonfinite) {
    std::vector<UpdatePart> ups;
    std::vector<py::buffer_info> keep;
    keep.reserve(parts.size());
    for (py::handle item : parts) {
      py::tuple t = item.cast<py::tuple>();
      keep.push_back(t[2].cast<py::buffer>().request());
      ups.push_back({t[0].cast<size_t>(), DType(t[1].cast<uint32_t>()), keep.back().ptr,
                     uint64_t(keep.back().size)});
    }
    py::gil_scoped_release nogil;
    core_->add_parts(ups, weight, full, allow_nonfinite);
  }

  void merge(AggregatorHandle& other) {
    py::gil_scoped_release nogil;
    core_->merge(*other.core_);
  }

  // (count, total_weight, weight_sums, accumulator copies), taken while no add is half-way.
  py::tuple snapshot() {
    auto lock = exclusive();
    py::list copies;
    for (py::handle acc : keep_[1].cast<py::list>()) copies.append(acc.attr("copy")());
    return py::make_tuple(core_->count(), core_->total_weight(), core_->weight_sums(), copies);
  }

  void restore(uint64_t count, double total_weight, std::vector<double> weight_sums) {
    if (weight_sums.size() != core_->params().size())
      throw Error(Reason::bad_argument, "the state holds a different number of parameters");
    auto lock = exclusive();
    core_->weight_sums() = std::move(weight_sums);
    core_->set_totals(count, total_weight);
  }

  py::tuple totals() {
    auto lock = exclusive();
    return py::make_tuple(core_->count(), core_->total_weight());
  }

 private:
  // Waits for in-flight adds without holding the GIL (they may need it to return).
  std::unique_lock<std::shared_mutex> exclusive() {
    py::gil_scoped_release nogil;
    return core_->exclusive();
  }

  static uint32_t dtype_code(const py::array& a) {
    char kind = a.dtype().kind();
    py::ssize_t size = a.itemsize();
    if (kind == 'f' && size == 4) return 0;
    if (kind == 'f' && size == 8) return 1;
    if (kind == 'i' && size == 4) return 2;
    if (kind == 'f' && size == 2) return 3;
    throw Error(Reason::unsupported_dtype, "template arrays must be float16/32/64 or int32");
  }

  py::tuple keep_;
  std::unique_ptr<Aggregator> core_;
};

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
  return d;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "ptth's compiled core (use the `ptth` package, not this module)";
  py::object error_type = py::module_::import("ptth.errors").attr("PTTHError");
  g_error_type = error_type.release().ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      set_error(e);
    }
  });

  m.attr("DEFAULT_MAX_SIZE") = kDefaultMaxSize;
  m.def("loads", &loads, py::arg("data"), py::kw_only(), py::arg("copy") = false,
        py::arg("byteorder") = "<", py::arg("relabel_float32") = false,
        py::arg("max_size") = py::none());
  m.def("encode", &encode_records, py::arg("records"), py::arg("level") = py::none(),
        py::arg("wrapper") = "zlib", py::arg("threads") = 1);
  m.def("compress", &compress, py::arg("data"), py::arg("level") = 6, py::arg("wrapper") = "zlib",
        py::arg("threads") = 1);
  m.def("decompress", &decompress, py::arg("data"), py::kw_only(), py::arg("wrapper") = "auto",
        py::arg("max_size") = py::none());
  m.def("detect_wrapper", &detect, py::arg("data"));
  m.def("cast", &cast, py::arg("src"), py::arg("dst"), py::arg("op"));
  m.def("subtract", &subtract, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("op"));
  m.def("axpy", &axpy, py::arg("base"), py::arg("scale"), py::arg("x"), py::arg("out"), py::arg("op"));
  py::class_<Decoder>(m, "Decoder")
      .def(py::init<py::handle, bool, py::handle>(), py::kw_only(), py::arg("byteorder") = "<",
           py::arg("relabel_float32") = false, py::arg("max_size") = py::none())
      .def("feed", &Decoder::feed, py::arg("chunk"))
      .def("close", &Decoder::close)
      .def_property_readonly("byteorder", &Decoder::byteorder)
      .def_property_readonly("wrapper", &Decoder::wrapper);
  py::class_<AggregatorHandle>(m, "AggregatorCore")
      .def(py::init<py::list, py::list, py::list, const std::string&>())
      .def("add_blob", &AggregatorHandle::add_blob)
      .def("add_parts", &AggregatorHandle::add_parts)
      .def("merge", &AggregatorHandle::merge)
      .def("snapshot", &AggregatorHandle::snapshot)
      .def("restore", &AggregatorHandle::restore)
      .def("totals", &AggregatorHandle::totals);
  m.def("build_info", &build_info);
}
