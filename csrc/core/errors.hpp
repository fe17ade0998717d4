// Error codes of the core and the exception that carries them.
// The bindings translate Error into ptth.PTTHError with reason_name(reason).
#pragma once

#include <cstdint>
#include <exception>
#include <string>

namespace ptth {

enum class Reason : uint8_t {
  bad_magic,
  bad_version,
  truncated,
  bad_name,
  duplicate_name,
  too_many_dims,
  bad_dtype,
  size_overflow,
  length_mismatch,
  trailing_bytes,
  too_large,
  stream_corrupt,
  bad_checksum,
  stream_truncated,
  stream_trailing,
  bad_argument,
  unsupported_dtype,
  shape_mismatch,
  unknown_name,
  nonfinite,
  closed,
};

const char* reason_name(Reason r) noexcept;

constexpr uint64_t kNoOffset = UINT64_MAX;
constexpr int64_t kNoRecord = -1;

class Error : public std::exception {
 public:
  Error(Reason reason, std::string message, uint64_t offset = kNoOffset,
        int64_t record = kNoRecord)
      : reason_(reason), message_(std::move(message)), offset_(offset), record_(record) {}
  Reason reason() const noexcept { return reason_; }
  const std::string& message() const noexcept { return message_; }
  uint64_t offset() const noexcept { return offset_; }
  int64_t record() const noexcept { return record_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  Reason reason_;
  std::string message_;
  uint64_t offset_;
  int64_t record_;
};

}  // namespace ptth
