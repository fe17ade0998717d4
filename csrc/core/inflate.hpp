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

// SPEC.md's table, in its order. Needs 4 bytes, or fewer when the input has
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

}  // namespace ptth
