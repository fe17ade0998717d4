// ptth._native: the only file that knows Python. It reads pointers and sizes,
// releases the GIL for the core's work, turns results into NumPy arrays whose
// base keeps their memory alive, and translates ptth::Error into PTTHError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/format.hpp"
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
  py::capsule owner(raw, [](void* p) { std::free(p); });
  return make_array(c.info, false, raw, owner);
}

py::str record_name(const RecordInfo& r) {
  return py::reinterpret_steal<py::str>(
      PyUnicode_DecodeUTF8(r.name.data(), py::ssize_t(r.name.size()), "strict"));
}

// ---- loads -----------------------------------------------------------------

py::dict loads(py::handle data, bool copy, const std::string& byteorder, bool relabel_float32,
               py::handle max_size) {
  ReadOptions opts;
  opts.byteorder = parse_byteorder(byteorder);
  opts.relabel_float32 = relabel_float32;
  parse_max_size(max_size);  // validated; uncompressed input is bounded by itself
  Input in(data);
  CollectingSink sink(copy);
  {
    py::gil_scoped_release nogil;
    Reader reader(opts, &sink);
    reader.feed(in.data, in.size, /*borrow=*/true);
    reader.finish();
  }
  py::dict out;
  py::object base;  // one uint8 array over the whole input; views inherit its flags
  for (CollectedRecord& c : sink.records()) {
    py::array arr;
    if (c.owned) {
      arr = owned_array(c);
    } else {
      if (!base) {
        py::array u8(py::dtype("uint8"), {py::ssize_t(in.size)}, {py::ssize_t(1)}, in.data,
                     in.view);
        if (in.readonly) u8.attr("setflags")(py::arg("write") = false);
        base = u8;
      }
      arr = make_array(c.info, c.info.big_endian, in.data + c.info.payload_offset, base);
    }
    out[record_name(c.info)] = arr;
  }
  return out;
}

// ---- dumps -----------------------------------------------------------------

// records: [(name: str, shape: tuple, code: int, data: C-contiguous little-endian array, convert: int)]
py::bytes encode_records(py::list records) {
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
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, py::ssize_t(size));
  if (raw == nullptr) throw py::error_already_set();
  py::bytes out = py::reinterpret_steal<py::bytes>(raw);
  auto* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(raw));
  {
    py::gil_scoped_release nogil;
    encode_to(recs, dst, size);
  }
  return out;
}

py::dict build_info() {
  py::dict d;
  d["compiler"] = compiler_id();
  d["simd"] = tier_name(active_tier());
  py::list avail;
  for (SimdTier t : {SimdTier::scalar, SimdTier::avx2, SimdTier::avx512, SimdTier::neon})
    if (tier_available(t)) avail.append(tier_name(t));
  d["simd_available"] = avail;
  d["zlib_ng"] = zlib_ng_version();
  d["zlib_ng_origin"] = zlib_ng_origin();
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
  m.def("encode", &encode_records, py::arg("records"));
  m.def("build_info", &build_info);
}
