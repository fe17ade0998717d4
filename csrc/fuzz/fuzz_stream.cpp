// Streaming parse (Decoder.feed) where the input also chooses the chunk
// splits and the options, checked against the one-shot parse of the same
// bytes: any chunking must give the same records and the same error
// (reason, offset, record), compressed or not.
//
// Input layout: BLOB || SPLITS || CONTROL, where CONTROL is the last byte:
//   bits 0-2  how many SPLITS bytes precede it (0..7; fewer bytes: no splits)
//   bit  3    relabel_float32 "auto" (else bit 6 decides)
//   bits 4-5  byteorder: 0 '<', 1 '>', 2-3 'auto'
//   bit  6    relabel_float32=True
//   bit  7    max_size = 160 bytes (else the default, 512 MiB)
// Each SPLITS byte is a chunk size, used in turn until the blob is fed:
//   0 an empty feed, 1..239 that many bytes, 240..255 (b - 239) KiB.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_common.hpp"

using namespace ptth;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::install_alloc_hooks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[size - 1];
  size_t n = size - 1;
  size_t nsplits = control & 0x07;
  std::vector<size_t> sizes;
  if (nsplits <= n) {
    for (size_t i = n - nsplits; i < n; ++i)
      sizes.push_back(data[i] < 240 ? data[i] : size_t(data[i] - 239) << 10);
    n -= nsplits;
  }
  ReadOptions opts;
  const unsigned order = (control >> 4) & 3;
  opts.byteorder = order == 0   ? ByteOrder::little
                   : order == 1 ? ByteOrder::big
                                : ByteOrder::automatic;
  opts.relabel = (control & 0x08)   ? Relabel::automatic
                 : (control & 0x40) ? Relabel::on
                                    : Relabel::off;
  opts.max_size = (control & 0x80) ? 160 : kDefaultMaxSize;

  const bool plain = detect_wrapper(data, std::min<size_t>(n, 4)) == Wrapper::none;
  fuzz::AllocLimit limit((size_t(1) << 20) + 32 * (plain ? n : 1040 * n));

  fuzz::Outcome streamed = fuzz::decode_chunked(data, n, opts, sizes);
  fuzz::check_outcome(streamed, data, n, opts, "Decoder.feed");
  fuzz::Outcome whole = fuzz::decode_oneshot(data, n, opts, /*copy=*/false);
  fuzz::check_outcome(whole, data, n, opts, "one-shot");
  fuzz::expect_same(whole, streamed, "one-shot vs chunked");
  return 0;
}
