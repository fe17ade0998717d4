// Inflate plus parse under a small size limit, every wrapper.
//
// Input layout: CONTROL || DATA, CONTROL being the first byte:
//   bits 0-1  the wrapper decompress() is forced to: auto (detected), zlib, gzip, deflate
//   bit  2    relabel_float32;  bit 3  byteorder 'auto'
//   bits 4-7  max_size, from kMaxSizes
// Checks: nothing is allocated beyond what max_size justifies; decompress()
// (inflate_all) never returns more than max_size; and the inflate-while-parsing
// decoder agrees with inflate_all followed by a parse of its output: the same
// records and error when the stream is sound, the same stream error (reason
// and offset) when it is not, unless a PTTH rule broke earlier in the output.
// The whole-buffer path (inflate_whole, inflate_blob_whole: libdeflate) must
// agree with it: when it succeeds, inflate_all succeeds with the same bytes
// (or, for the encodings libdeflate alone accepts, fails with stream_corrupt:
// docs/compression.md "A known difference"), never past max_size; when it declines,
// the caller's streaming path is the answer by construction.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_common.hpp"

using namespace ptth;

namespace {

constexpr uint64_t kMaxSizes[16] = {0,  1,   3,   4,    11,   12,    13,    40,
                                    41, 113, 160, 1000, 4096, 65535, 65536, uint64_t(1) << 20};

struct Inflated {
  bool ok = false;
  Reason reason = Reason::closed;  // overwritten by the error, if any
  uint64_t offset = 0;
  std::vector<uint8_t> out;
};

Inflated run_inflate_all(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size) {
  Inflated r;
  try {
    auto [buf, size] = inflate_all(p, n, w, max_size);
    r.out.assign(buf.get(), buf.get() + size);
    r.ok = true;
  } catch (const Error& e) {
    r.reason = e.reason();
    r.offset = e.offset();
  }
  return r;
}

void check_inflated(const Inflated& r, uint64_t max_size, const char* what) {
  if (r.ok) {
    FUZZ_CHECK(r.out.size() <= max_size, "%s: %zu bytes out, max_size %llu", what, r.out.size(),
               (unsigned long long)max_size);
    return;
  }
  FUZZ_CHECK(r.reason == Reason::too_large || fuzz::is_stream_reason(r.reason), "%s: reason %s",
             what, reason_name(r.reason));
  if (r.reason == Reason::too_large)
    FUZZ_CHECK(r.offset == max_size, "%s: too_large at %llu, max_size %llu", what,
               (unsigned long long)r.offset, (unsigned long long)max_size);
  else
    FUZZ_CHECK(r.offset <= max_size, "%s: %s at %llu past max_size %llu", what,
               reason_name(r.reason), (unsigned long long)r.offset, (unsigned long long)max_size);
}

void check_whole(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, const Inflated& all) {
  for (bool blob : {false, true}) {
    const char* what = blob ? "inflate_blob_whole" : "inflate_whole";
    Buffer out;
    uint64_t size = 0;
    bool ok = blob ? inflate_blob_whole(p, n, w, max_size, &out, &size)
                   : inflate_whole(p, n, w, max_size, &out, &size);
    if (!ok) {
      FUZZ_CHECK(!out, "%s declined but left a buffer", what);
      continue;
    }
    FUZZ_CHECK(size <= max_size, "%s: %llu bytes out, max_size %llu", what,
               (unsigned long long)size, (unsigned long long)max_size);
    // The patched libdeflate is as strict as zlib-ng: no stream it accepts is refused by
    // the streaming path, and both give the same bytes.
    FUZZ_CHECK(all.ok, "%s succeeded where inflate_all fails with %s at %llu", what,
               reason_name(all.reason), (unsigned long long)all.offset);
    FUZZ_CHECK(size == all.out.size() &&
                   (size == 0 || std::memcmp(out.get(), all.out.data(), size_t(size)) == 0),
               "%s: %llu bytes differ from inflate_all's %zu", what, (unsigned long long)size,
               all.out.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::install_alloc_hooks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = input[0];
  const uint8_t* data = input + 1;
  const size_t n = size - 1;
  const uint64_t max_size = kMaxSizes[control >> 4];
  ReadOptions opts;
  opts.max_size = max_size;
  opts.relabel = (control & 4) ? Relabel::on : Relabel::off;
  opts.byteorder = (control & 8) ? ByteOrder::automatic : ByteOrder::little;

  // Everything the core allocates must follow from max_size, not from the
  // lengths the data claims (the 4 GiB payload, the 4e9 records).
  fuzz::AllocLimit limit((size_t(1) << 20) + 32 * max_size);

  const Wrapper detected = detect_wrapper(data, std::min<size_t>(n, 4));
  static constexpr Wrapper kForced[4] = {Wrapper::none, Wrapper::zlib, Wrapper::gzip,
                                         Wrapper::deflate};
  const Wrapper forced = (control & 3) ? kForced[control & 3] : detected;
  check_inflated(run_inflate_all(data, n, forced, max_size), max_size, "decompress(forced)");

  fuzz::Outcome dec = fuzz::decode_oneshot(data, n, opts, /*copy=*/true);
  fuzz::check_outcome(dec, data, n, opts, "Decoder(max_size)");
  if (!dec.wrapper_known) return 0;  // the limit stopped it before the first byte
  FUZZ_CHECK(dec.wrapper == detected, "decoder chose %s, detect_wrapper %s",
             wrapper_name(dec.wrapper), wrapper_name(detected));

  Inflated all = run_inflate_all(data, n, detected, max_size);
  check_inflated(all, max_size, "decompress(auto)");
  check_whole(data, n, detected, max_size, all);
  if (detected == Wrapper::none) {
    if (dec.ok) FUZZ_CHECK(all.ok && all.out.size() == n, "decompress of a plain blob");
    return 0;
  }
  if (all.ok) {
    // A sound stream: the decoder must see exactly what parsing its output sees.
    fuzz::Outcome parsed = fuzz::decode_plain(all.out.data(), all.out.size(), opts);
    fuzz::check_outcome(parsed, all.out.data(), all.out.size(), opts, "parse(decompress())");
    // Raw DEFLATE whose output breaks a rule before the magic is complete is not_ptth.
    if (!dec.ok && dec.reason == Reason::not_ptth)
      FUZZ_CHECK(detected == Wrapper::deflate && !parsed.ok && parsed.position < 4,
                 "not_ptth, but the inflated bytes parse as: %s", fuzz::describe(parsed).c_str());
    else
      fuzz::expect_same(parsed, dec, "parse(decompress()) vs inflate-while-parsing");
  } else if (all.reason == Reason::too_large) {
    FUZZ_CHECK(!dec.ok, "decompress() exceeds max_size %llu but the decoder succeeded: %s",
               (unsigned long long)max_size, fuzz::describe(dec).c_str());
  } else {
    FUZZ_CHECK(!dec.ok, "decompress() fails with %s at %llu, the decoder succeeds",
               reason_name(all.reason), (unsigned long long)all.offset);
    if (fuzz::is_stream_reason(dec.reason))
      FUZZ_CHECK(dec.reason == all.reason && dec.offset == all.offset,
                 "stream errors differ: decompress() %s at %llu, decoder %s",
                 reason_name(all.reason), (unsigned long long)all.offset,
                 fuzz::describe(dec).c_str());
    else if (dec.reason != Reason::too_large)
      FUZZ_CHECK(dec.offset <= all.offset, "decoder error after the stream error at %llu: %s",
                 (unsigned long long)all.offset, fuzz::describe(dec).c_str());
  }
  return 0;
}
