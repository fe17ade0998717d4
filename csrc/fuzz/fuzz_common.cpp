#include "fuzz/fuzz_common.hpp"

#include <sanitizer/allocator_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

using namespace ptth;

namespace fuzz {

void fail_at(const char* file, int line, const char* cond, const char* fmt, ...) {
  std::fprintf(stderr, "\n==ptth-fuzz== INVARIANT BROKEN at %s:%d: %s\n  ", file, line, cond);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::abort();
}

// ---- allocation limit ---------------------------------------------------------

namespace {

std::atomic<size_t> g_limit{SIZE_MAX};

// Called inside the allocator: no stdio (it may allocate), just write().
[[noreturn]] void over_limit(const char* what, size_t n) {
  char buf[160];
  int k = std::snprintf(buf, sizeof buf,
                        "\n==ptth-fuzz== ALLOCATION LIMIT: %s of %zu bytes (limit %zu)\n", what, n,
                        g_limit.load());
  if (k > 0) (void)!write(2, buf, size_t(std::min<int>(k, int(sizeof buf) - 1)));
  __sanitizer_print_stack_trace();
  std::abort();
}

void malloc_hook(const volatile void*, size_t size) {
  if (size > g_limit.load(std::memory_order_relaxed)) over_limit("malloc", size);
}
void free_hook(const volatile void*) {}

}  // namespace

void install_alloc_hooks() {
  __sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook);
}

AllocLimit::AllocLimit(size_t bytes) : saved_(g_limit.exchange(bytes)) {}
AllocLimit::~AllocLimit() {
  g_limit.store(saved_);
}

}  // namespace fuzz

// ptth's buffers of 64 KiB and more are anonymous mappings, which the malloc
// hooks never see: the fuzz targets link with -Wl,--wrap=mmap,--wrap=mremap.
extern "C" {
void* __real_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off);
void* __real_mremap(void* old, size_t old_len, size_t new_len, int flags, ...);

void* __wrap_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (len > fuzz::g_limit.load(std::memory_order_relaxed)) fuzz::over_limit("mmap", len);
  return __real_mmap(addr, len, prot, flags, fd, off);
}

void* __wrap_mremap(void* old, size_t old_len, size_t new_len, int flags, ...) {
  if (new_len > fuzz::g_limit.load(std::memory_order_relaxed)) fuzz::over_limit("mremap", new_len);
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    void* target = va_arg(ap, void*);
    va_end(ap);
    return __real_mremap(old, old_len, new_len, flags, target);
  }
  return __real_mremap(old, old_len, new_len, flags);
}
}

namespace fuzz {

// ---- decode drivers -----------------------------------------------------------

namespace {

void record_error(Outcome& o, const Error& e) {
  o.ok = false;
  o.reason = e.reason();
  o.offset = e.offset();
  o.record = e.record();
  o.message = e.message();
}

void collect(std::vector<CollectedRecord>& in, std::vector<Rec>& out) {
  for (CollectedRecord& c : in) {
    Rec r;
    r.info = c.info;
    r.owned = bool(c.owned);
    r.data = c.data;
    if (c.info.nbytes) {
      FUZZ_CHECK(c.data != nullptr, "record %u: %llu payload bytes but no data", c.info.index,
                 (unsigned long long)c.info.nbytes);
      r.host.assign(c.data, c.data + c.info.nbytes);
      // Owned payloads are converted to host order by the sink; borrowed ones
      // stay as they lie and carry the flag.
      if (!r.owned && c.info.big_endian)
        byteswap_inplace(r.host.data(), c.info.numel, itemsize(c.info.dtype));
    }
    out.push_back(std::move(r));
  }
}

void record_order(Outcome& o, const Reader& r) {
  o.position = r.position();
  o.order_decided = r.order_decided();
  o.order = r.decided_order();
  o.ambiguous = r.ambiguity().seen;
}

template <typename Run>
Outcome drive(const ReadOptions& opts, bool copy, Run run) {
  Outcome o;
  CollectingSink sink(copy);
  try {
    // The constructor checks max_size against the magic, so it can throw too.
    StreamDecoder dec(opts, &sink);
    try {
      run(dec);
      o.ok = true;
    } catch (const Error& e) {
      record_error(o, e);
    }
    o.wrapper_known = dec.wrapper_known();
    o.wrapper = dec.wrapper();
    record_order(o, dec.reader());
  } catch (const Error& e) {
    record_error(o, e);
  }
  collect(sink.records(), o.records);
  return o;
}

}  // namespace

Outcome decode_oneshot(const uint8_t* p, size_t n, const ReadOptions& opts, bool copy) {
  return drive(opts, copy, [&](StreamDecoder& dec) {
    dec.feed(p, n, /*borrow=*/true);
    dec.finish();
  });
}

Outcome decode_plain(const uint8_t* p, size_t n, const ReadOptions& opts) {
  Outcome o;
  CollectingSink sink(/*copy=*/false);
  o.wrapper_known = true;
  try {
    Reader reader(opts, &sink);  // checks max_size against the magic: may throw
    try {
      reader.feed(p, n, /*borrow=*/true);
      reader.finish();
      o.ok = true;
    } catch (const Error& e) {
      record_error(o, e);
    }
    record_order(o, reader);
  } catch (const Error& e) {
    record_error(o, e);
  }
  collect(sink.records(), o.records);
  return o;
}

Outcome decode_chunked(const uint8_t* p, size_t n, const ReadOptions& opts,
                       const std::vector<size_t>& sizes) {
  return drive(opts, /*copy=*/true, [&](StreamDecoder& dec) {
    size_t at = 0, k = 0, since_progress = 0;
    while (at < n) {
      size_t want = sizes.empty() ? n - at : sizes[k++ % sizes.size()];
      if (want == 0 && ++since_progress > sizes.size()) want = n - at;  // all-empty cycle
      if (want) since_progress = 0;
      size_t m = std::min(want, n - at);
      dec.feed(p + at, m);
      at += m;
    }
    dec.finish();
  });
}

// ---- invariants ------------------------------------------------------------------

bool is_stream_reason(Reason r) {
  return r == Reason::stream_corrupt || r == Reason::bad_checksum ||
         r == Reason::stream_truncated || r == Reason::stream_trailing;
}

static bool is_reader_reason(Reason r) {
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
    default: return is_stream_reason(r);
  }
}

namespace {

// docs/format.md: a word is plausible if it is +-0 or its exponent is in 64..190.
bool plausible_word(uint32_t w) {
  const uint32_t e = (w >> 23) & 0xFF;
  return (w & 0x7FFFFFFFu) == 0 || (e >= 64 && e <= 190);
}

uint32_t word_at(const uint8_t* p, bool big) {
  return big ? uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]
             : uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0];
}

// The payload as it lay in the input (the reader's flag says how it was turned).
std::vector<uint8_t> wire_bytes(const Rec& r) {
  std::vector<uint8_t> w = r.host;
  if (r.info.big_endian && !w.empty())
    byteswap_inplace(w.data(), r.info.numel, itemsize(r.info.dtype));
  return w;
}

// The effective dtype docs/format.md gives a record, from its code, its length
// and (code 2 under "auto") its words read in the order in force.
DType expected_dtype(const RecordInfo& r, const std::vector<uint8_t>& wire, Relabel relabel,
                     bool big) {
  const bool four = r.nbytes == 4 * r.numel;
  const DType coded = DType(r.code);
  if (relabel == Relabel::on) return four ? DType::float32 : coded;
  if (relabel == Relabel::automatic && coded == DType::float64 && four) return DType::float32;
  if (relabel == Relabel::automatic && coded == DType::int32) {
    Scores s = score_words(wire.data(), wire.size(), big);
    return (big ? s.be : s.le) > s.small_int ? DType::float32 : DType::int32;
  }
  return coded;
}

}  // namespace

Scores score_words(const uint8_t* payload, uint64_t nbytes, bool big) {
  Scores s;
  const uint64_t words = std::min<uint64_t>(nbytes / 4, 1024);
  for (uint64_t i = 0; i < words; ++i) {
    const uint32_t le = word_at(payload + 4 * i, false), be = word_at(payload + 4 * i, true);
    s.le += plausible_word(le);
    s.be += plausible_word(be);
    const int32_t v = int32_t(big ? be : le);
    s.small_int += v > -(1 << 24) && v < (1 << 24);
  }
  return s;
}

void check_outcome(const Outcome& o, const uint8_t* p, size_t n, const ReadOptions& opts,
                   const char* what) {
  const bool plain = o.wrapper_known && o.wrapper == Wrapper::none;
  if (!o.ok) {
    FUZZ_CHECK(is_reader_reason(o.reason), "%s: %s", what, describe(o).c_str());
    FUZZ_CHECK(o.record >= kNoRecord && o.record < (int64_t(1) << 32), "%s: %s", what,
               describe(o).c_str());
    if (o.reason == Reason::too_large) {
      FUZZ_CHECK(o.offset <= opts.max_size, "%s: too_large past max_size: %s", what,
                 describe(o).c_str());
    } else {
      FUZZ_CHECK(o.offset <= o.position, "%s: error offset past the bytes read: %s", what,
                 describe(o).c_str());
    }
    if (plain) {
      FUZZ_CHECK(o.position <= n, "%s: read %llu of %zu bytes", what,
                 (unsigned long long)o.position, n);
      if (o.reason == Reason::truncated)
        FUZZ_CHECK(o.offset == n, "%s: truncated must point at the input's end (%zu): %s", what, n,
                   describe(o).c_str());
    }
  } else {
    FUZZ_CHECK(o.wrapper_known, "%s: success without a wrapper decision", what);
    if (plain)
      FUZZ_CHECK(o.position == n, "%s: success after %llu of %zu bytes", what,
                 (unsigned long long)o.position, n);
  }
  std::unordered_set<std::string> names;
  uint64_t end = 12;
  for (size_t i = 0; i < o.records.size(); ++i) {
    const RecordInfo& r = o.records[i].info;
    FUZZ_CHECK(r.index == i, "%s: record %zu has index %u", what, i, r.index);
    FUZZ_CHECK(valid_utf8(reinterpret_cast<const uint8_t*>(r.name.data()), r.name.size()),
               "%s: record %zu: name is not UTF-8", what, i);
    FUZZ_CHECK(names.insert(r.name).second, "%s: record %zu: duplicate name", what, i);
    FUZZ_CHECK(r.dims.size() <= kMaxDims, "%s: record %zu: %zu dims", what, i, r.dims.size());
    FUZZ_CHECK(valid_code(r.code), "%s: record %zu: code %u", what, i, r.code);
    FUZZ_CHECK(opts.relabel != Relabel::off || uint32_t(r.dtype) == r.code,
               "%s: record %zu: dtype %u for code %u without relabel", what, i, unsigned(r.dtype),
               r.code);
    uint64_t numel = 0, nbytes = 0;
    FUZZ_CHECK(checked_numel(r.dims.data(), r.dims.size(), &numel) && numel == r.numel,
               "%s: record %zu: numel %llu", what, i, (unsigned long long)r.numel);
    FUZZ_CHECK(checked_mul(numel, itemsize(r.dtype), &nbytes) && nbytes == r.nbytes,
               "%s: record %zu: %llu bytes for numel %llu of %s", what, i,
               (unsigned long long)r.nbytes, (unsigned long long)numel, dtype_name(r.dtype));
    FUZZ_CHECK(numpy_can_shape(r.dims.data(), r.dims.size(), itemsize(r.dtype)),
               "%s: record %zu: shape NumPy cannot represent", what, i);
    uint64_t header = 4 + r.name.size() + 4 + 4 * uint64_t(r.dims.size()) + 8;
    FUZZ_CHECK(r.payload_offset == end + header, "%s: record %zu: payload at %llu, expected %llu",
               what, i, (unsigned long long)r.payload_offset, (unsigned long long)(end + header));
    end = r.payload_offset + r.nbytes;
    FUZZ_CHECK(end <= o.position, "%s: record %zu ends at %llu past the %llu bytes read", what, i,
               (unsigned long long)end, (unsigned long long)o.position);
    FUZZ_CHECK(end <= opts.max_size, "%s: record %zu ends past max_size", what, i);
    if (r.nbytes && !o.records[i].owned) {
      FUZZ_CHECK(plain && o.records[i].data == p + r.payload_offset,
                 "%s: record %zu: a borrowed payload that is not the input's bytes", what, i);
    }
    if (o.records[i].owned)
      FUZZ_CHECK(reinterpret_cast<uintptr_t>(o.records[i].data) % 64 == 0,
                 "%s: record %zu: owned payload not 64-byte aligned", what, i);
  }
  if (o.ok)
    FUZZ_CHECK(end == o.position, "%s: success, but the records end at %llu of %llu", what,
               (unsigned long long)end, (unsigned long long)o.position);

  // The quirk decisions, recomputed from the wire bytes in record order.
  bool decided = opts.byteorder != ByteOrder::automatic;
  bool big = opts.byteorder == ByteOrder::big;
  bool ambiguous = false;
  for (size_t i = 0; i < o.records.size(); ++i) {
    const RecordInfo& r = o.records[i].info;
    const std::vector<uint8_t> wire = wire_bytes(o.records[i]);
    const DType want = expected_dtype(r, wire, opts.relabel, big);
    FUZZ_CHECK(r.dtype == want, "%s: record %zu (code %u, %llu bytes): dtype %s, expected %s", what,
               i, r.code, (unsigned long long)r.nbytes, dtype_name(r.dtype), dtype_name(want));
    if (!decided && r.dtype == DType::float32) {
      const Scores s = score_words(wire.data(), wire.size(), false);
      if (s.le != s.be) {
        decided = true;
        big = s.be > s.le;
      } else if (!ambiguous) {
        for (size_t k = 0; k + 4 <= wire.size() && !ambiguous; k += 4) {
          const uint32_t le = word_at(&wire[k], false), be = word_at(&wire[k], true);
          ambiguous = le != be && (plausible_word(le) || plausible_word(be));
        }
      }
    }
    FUZZ_CHECK(r.big_endian == big, "%s: record %zu read %s-endian, expected %s", what, i,
               r.big_endian ? "big" : "little", big ? "big" : "little");
  }
  if (opts.byteorder == ByteOrder::automatic && o.wrapper_known) {
    // Decisions happen as records complete, so they hold for failed decodes too.
    FUZZ_CHECK(o.order_decided == decided && (!decided || (o.order == ByteOrder::big) == big),
               "%s: the reader %s, the records say %s", what,
               o.order_decided ? (o.order == ByteOrder::big ? "decided big" : "decided little")
                               : "did not decide",
               decided ? (big ? "big" : "little") : "undecided");
    FUZZ_CHECK(o.ambiguous == ambiguous, "%s: ambiguity %d, expected %d", what, int(o.ambiguous),
               int(ambiguous));
  }
}

std::string describe(const Outcome& o) {
  std::string s;
  if (o.ok) {
    s = "ok";
  } else {
    s = std::string("error ") + reason_name(o.reason) +
        " offset=" + (o.offset == kNoOffset ? std::string("none") : std::to_string(o.offset)) +
        " record=" + std::to_string(o.record) + " (" + o.message + ")";
  }
  s += ", " + std::to_string(o.records.size()) +
       " records, wrapper=" + (o.wrapper_known ? wrapper_name(o.wrapper) : "?") +
       ", position=" + std::to_string(o.position) +
       ", order=" + (o.order_decided ? (o.order == ByteOrder::big ? ">" : "<") : "?") +
       (o.ambiguous ? " (ambiguous)" : "");
  return s;
}

void expect_same(const Outcome& a, const Outcome& b, const char* what) {
  bool same = a.ok == b.ok && a.records.size() == b.records.size() &&
              a.order_decided == b.order_decided && a.order == b.order &&
              a.ambiguous == b.ambiguous;
  if (same && !a.ok) same = a.reason == b.reason && a.offset == b.offset && a.record == b.record;
  FUZZ_CHECK(same, "%s:\n    %s\n    %s", what, describe(a).c_str(), describe(b).c_str());
  for (size_t i = 0; i < a.records.size(); ++i) {
    const RecordInfo &x = a.records[i].info, &y = b.records[i].info;
    FUZZ_CHECK(x.name == y.name && x.dims == y.dims && x.dtype == y.dtype && x.code == y.code &&
                   x.numel == y.numel && x.nbytes == y.nbytes &&
                   x.payload_offset == y.payload_offset && x.big_endian == y.big_endian,
               "%s: record %zu differs", what, i);
    FUZZ_CHECK(a.records[i].host == b.records[i].host, "%s: record %zu: payload bytes differ", what,
               i);
  }
}

}  // namespace fuzz
