// Wrapper detection, one zlib-ng inflate stream and whole-buffer inflate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/reader.hpp"

struct zng_stream_s;

namespace ptth {

enum class Wrapper : uint8_t { none, zlib, gzip, deflate };

const char* wrapper_name(Wrapper w) noexcept;
// Parses "none", "zlib", "gzip", "deflate"; throws std::invalid_argument.
Wrapper parse_wrapper(const char* name);
// zlib-ng's windowBits for a wrapper: 15, 31, -15; throws std::invalid_argument for none.
int window_bits(Wrapper w);

// the format's table, in its order. Needs 4 bytes, or fewer when the input has
// ended; a proper prefix of "PTTH" (or nothing) counts as none.
Wrapper detect_wrapper(const uint8_t* p, size_t n) noexcept;

// One zng inflate stream. Maps zlib-ng's failures onto ptth reasons.
class Inflater {
 public:
  explicit Inflater(Wrapper w);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  struct Step {
    size_t consumed;
    size_t produced;
    bool failed;  // the data is bad; what was produced before it is valid output
  };
  // Inflates from [in, in+in_n) into [out, out+out_n).
  Step run(const uint8_t* in, size_t in_n, uint8_t* out, size_t out_n);
  // After a failed step: throws stream_corrupt or bad_checksum at `offset`.
  [[noreturn]] void raise(uint64_t offset, int64_t record = kNoRecord) const;
  bool ended() const noexcept { return ended_; }

 private:
  std::unique_ptr<zng_stream_s> strm_;
  bool ended_ = false;
  int32_t rc_ = 0;
};

// Whole-buffer inflate with a limit on the output (decompress()): the output
// and its size. The buffer grows by doubling without being zero-filled first.
std::pair<Buffer, uint64_t> inflate_all(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size);

// Whole-buffer inflate of a stream that is entirely in memory, with the
// fastest inflater built in (libdeflate). On success *out holds the *out_size
// decompressed bytes (64-byte aligned, trimmed to them) and the whole input
// was one valid stream of wrapper w with a matching checksum and nothing
// after it, decompressing to at most max_size bytes. It returns false, with
// *out untouched, whenever it cannot succeed cleanly: corrupt data, checksum,
// truncation, trailing bytes, more than max_size, a header the streaming path
// treats differently (zlib window < 32 KiB, gzip FHCRC), no libdeflate in this
// build, or no address space for the output. The caller then runs the zlib-ng
// streaming path, which reports the exact error in its place in the check
// order. The output is reserved up to min(max_size, the most n bytes of
// DEFLATE can give) as address space only: pages cost once written, and
// never more than max_size of them.
// Never throws Error (std::bad_alloc only).
bool inflate_whole(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, Buffer* out,
                   uint64_t* out_size);

// inflate_whole for a PTTH blob (loads, Aggregator.add of bytes). When the
// output outgrows the room tried so far (8x the input, then 8x more each
// time), the reader checks the prefix first: a bomb whose records claim more
// than max_size returns false at once, and the streaming path then fails it
// with too_large before inflating further. Returns false whenever
// inflate_whole would, or when that prefix breaks a rule.
bool inflate_blob_whole(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, Buffer* out,
                        uint64_t* out_size);

// The whole-buffer inflater in this build: "libdeflate" or "" (none: the
// streaming path does everything), its version and where it came from.
const char* inflate_engine() noexcept;
const char* libdeflate_version() noexcept;
const char* libdeflate_origin() noexcept;

}  // namespace ptth
