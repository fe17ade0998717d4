// Shared by the libFuzzer targets: decode drivers that record everything a
// caller could observe, the invariants every outcome must satisfy, and a cap
// on single allocations (malloc through ASan's hooks, mmap/mremap through
// -Wl,--wrap) so "allocation bounded by the input or max_size" is checked,
// not assumed.
//
// A broken invariant prints what differs and aborts: libFuzzer saves the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/inflate.hpp"
#include "core/reader.hpp"
#include "core/stream_decoder.hpp"

namespace fuzz {

// Prints "file:line: cond: message" and aborts (libFuzzer keeps the input).
[[noreturn]] void fail_at(const char* file, int line, const char* cond, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define FUZZ_CHECK(cond, ...)                                             \
  do {                                                                    \
    if (!(cond)) ::fuzz::fail_at(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)

// Installs the allocation hooks (call from LLVMFuzzerInitialize).
void install_alloc_hooks();

// While alive, any single allocation above `bytes` aborts.
class AllocLimit {
 public:
  explicit AllocLimit(size_t bytes);
  ~AllocLimit();
  AllocLimit(const AllocLimit&) = delete;
  AllocLimit& operator=(const AllocLimit&) = delete;

 private:
  size_t saved_;
};

// One record as a caller sees it, payload in host byte order.
struct Rec {
  ptth::RecordInfo info;
  bool owned = false;
  const uint8_t* data = nullptr;  // where the sink handed it (borrowed or owned)
  std::vector<uint8_t> host;      // payload bytes, host order
};

struct Outcome {
  bool ok = false;
  ptth::Reason reason = ptth::Reason::closed;  // set by the error, if any
  uint64_t offset = 0;
  int64_t record = 0;
  std::string message;
  std::vector<Rec> records;  // on failure: the records completed before it
  bool wrapper_known = false;
  ptth::Wrapper wrapper = ptth::Wrapper::none;
  uint64_t position = 0;       // bytes the reader consumed (decompressed)
  bool order_decided = false;  // byteorder "auto": the reader's decision, as it ended
  ptth::ByteOrder order = ptth::ByteOrder::little;
  bool ambiguous = false;  // an undecided tie that reads differently in the two orders
};

// loads(): one feed of the whole input with borrow, then finish().
Outcome decode_oneshot(const uint8_t* p, size_t n, const ptth::ReadOptions& opts, bool copy);

// The reader alone over bytes that are a PTTH blob whatever they start with
// (what decompress() returned), borrowing like loads().
Outcome decode_plain(const uint8_t* p, size_t n, const ptth::ReadOptions& opts);

// Decoder: feeds chunks of the given sizes (cycled; 0 = an empty feed),
// the rest in one piece if a whole cycle consumes nothing; then finish().
Outcome decode_chunked(const uint8_t* p, size_t n, const ptth::ReadOptions& opts,
                       const std::vector<size_t>& sizes);

// What every outcome satisfies: a reason the reader can give, records that
// obey docs/format.md, payloads inside the input when borrowed, dtypes and byte
// orders as docs/format.md's "How ptth reads the quirks" decides them
// (recomputed here from the payload bytes). `n` is the input size; `plain`
// says the input was not compressed (offsets then lie in it).
void check_outcome(const Outcome& o, const uint8_t* p, size_t n, const ptth::ReadOptions& opts,
                   const char* what);

// docs/format.md's scores over a payload's first min(numel, 1024) words, read
// little-endian: words that are plausible float32 values, read as they are
// and byte-swapped; words that are small integers (|v| < 2**24) in `big` order.
struct Scores {
  size_t le = 0, be = 0, small_int = 0;
};
Scores score_words(const uint8_t* payload, uint64_t nbytes, bool big);

// Same result, same error (reason, offset, record), same records and bytes.
void expect_same(const Outcome& a, const Outcome& b, const char* what);

std::string describe(const Outcome& o);
bool is_stream_reason(ptth::Reason r);

}  // namespace fuzz
