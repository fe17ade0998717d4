// One-shot parsing as loads() does it: the whole input in one feed with
// borrow; uncompressed payloads handed over in place, compressed ones
// inflated into owned buffers under the default max_size.
//
// Beyond "no crash": every outcome obeys check_outcome() (which recomputes the
// "auto" byte-order and relabel decisions from the bytes); reading the same
// bytes big-endian changes payload bytes only (never the structure or the
// error); copying gives the same records as borrowing, under both relabel modes.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_common.hpp"

using namespace ptth;

namespace {

// Same structure and error; `b`'s payloads are `a`'s with every item swapped.
void expect_swapped(const fuzz::Outcome& a, const fuzz::Outcome& b) {
  bool same = a.ok == b.ok && a.records.size() == b.records.size();
  if (same && !a.ok) same = a.reason == b.reason && a.offset == b.offset && a.record == b.record;
  FUZZ_CHECK(same, "byte order changed the outcome:\n    <: %s\n    >: %s",
             fuzz::describe(a).c_str(), fuzz::describe(b).c_str());
  for (size_t i = 0; i < a.records.size(); ++i) {
    const RecordInfo &x = a.records[i].info, &y = b.records[i].info;
    FUZZ_CHECK(x.name == y.name && x.dims == y.dims && x.dtype == y.dtype &&
                   x.payload_offset == y.payload_offset && !x.big_endian && y.big_endian,
               "record %zu: byte order changed its header", i);
    std::vector<uint8_t> swapped = a.records[i].host;
    byteswap_inplace(swapped.data(), x.numel, itemsize(x.dtype));
    FUZZ_CHECK(swapped == b.records[i].host, "record %zu: '>' payload is not '<' swapped", i);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::install_alloc_hooks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool plain = detect_wrapper(data, std::min<size_t>(size, 4)) == Wrapper::none;
  // Uncompressed input bounds itself (loads ignores max_size for it); DEFLATE
  // expands at most ~1032x, so that bounds what compressed input can justify.
  const size_t justified = plain ? size : 1040 * size;
  fuzz::AllocLimit limit((size_t(1) << 20) + 32 * justified);

  ReadOptions little;
  little.max_size = plain ? UINT64_MAX : kDefaultMaxSize;
  ReadOptions big = little;
  big.byteorder = ByteOrder::big;
  ReadOptions guess = little;
  guess.byteorder = ByteOrder::automatic;
  guess.relabel = Relabel::on;
  ReadOptions decide = guess;  // the Aggregator's defaults
  decide.relabel = Relabel::automatic;

  fuzz::Outcome a = fuzz::decode_oneshot(data, size, little, /*copy=*/false);
  fuzz::check_outcome(a, data, size, little, "loads(<)");
  fuzz::Outcome b = fuzz::decode_oneshot(data, size, big, /*copy=*/false);
  fuzz::check_outcome(b, data, size, big, "loads(>)");
  expect_swapped(a, b);

  fuzz::Outcome c = fuzz::decode_oneshot(data, size, guess, /*copy=*/true);
  fuzz::check_outcome(c, data, size, guess, "loads(auto, relabel, copy)");
  fuzz::Outcome d = fuzz::decode_oneshot(data, size, guess, /*copy=*/false);
  fuzz::check_outcome(d, data, size, guess, "loads(auto, relabel)");
  fuzz::expect_same(c, d, "copy=True vs views");

  fuzz::Outcome e = fuzz::decode_oneshot(data, size, decide, /*copy=*/true);
  fuzz::check_outcome(e, data, size, decide, "loads(auto, relabel auto, copy)");
  fuzz::Outcome f = fuzz::decode_oneshot(data, size, decide, /*copy=*/false);
  fuzz::check_outcome(f, data, size, decide, "loads(auto, relabel auto)");
  fuzz::expect_same(e, f, "relabel auto: copy=True vs views");
  return 0;
}
