// Error codes of the core and the exception that carries them.
//
// PTTH_REASONS is the one list of reasons: the bindings export it (a test
// compares it with ptth.REASONS, the pure engine's copy) and translate Error
// into ptth.PTTHError with the reason's name. Bad arguments (not bad data)
// are std::invalid_argument, which the bindings raise as ValueError.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

namespace ptth {

// X(name, description). Order is not significant; names are the public codes.
#define PTTH_REASONS(X)                                                                           \
  /* blob structure (the format document, "What a valid blob satisfies") */                       \
  X(bad_magic, "the blob does not start with the magic 'PTTH'")                                   \
  X(bad_version, "the version field is not 1")                                                    \
  X(truncated, "the blob ended where more bytes were expected")                                   \
  X(bad_name, "a parameter name is not valid UTF-8")                                              \
  X(duplicate_name, "a parameter name occurs twice")                                              \
  X(too_many_dims, "ndim is larger than 64")                                                      \
  X(bad_dtype, "the dtype code is not 0, 1, 2 or 3")                                              \
  X(size_overflow, "numel * itemsize does not fit in 64 bits")                                    \
  X(length_mismatch, "data_len differs from numel * itemsize")                                    \
  X(trailing_bytes, "bytes follow the last record")                                               \
  X(ambiguous_byteorder,                                                                          \
    "byteorder 'auto' found no payload that tells the byte order, but the two readings differ")   \
  X(not_ptth, "the input is neither a PTTH blob nor a zlib, gzip or raw DEFLATE stream of one")   \
  /* compressed input */                                                                          \
  X(too_large, "the decoded size would exceed max_size")                                          \
  X(stream_corrupt, "the compressed stream is not valid DEFLATE/zlib/gzip data")                  \
  X(bad_checksum, "the compressed stream's checksum does not match its data")                     \
  X(stream_truncated, "the compressed stream ended before its end marker")                        \
  X(stream_trailing, "bytes follow the end of the compressed stream")                             \
  /* tensors and updates */                                                                       \
  X(unsupported_dtype, "an array's dtype has no PTTH dtype code")                                 \
  X(not_representable, "a tensor does not fit the format (a dim or its payload exceeds 32 bits)") \
  X(shape_mismatch, "arrays that must have one shape do not")                                     \
  X(unknown_name, "an update names a parameter the aggregator does not hold")                     \
  X(dtype_mismatch, "an update's values cannot belong to the template parameter's dtype")         \
  X(nonfinite, "an update holds NaN or infinity")                                                 \
  X(norm_exceeded, "an update's norm exceeds the aggregator's bound")                             \
  X(overflow, "a value does not fit the result's dtype")                                          \
  X(no_contributions, "the round has no contribution to average")                                 \
  X(bad_state, "a saved aggregator state does not match its template")                            \
  X(closed, "the decoder was already closed or failed")                                           \
  /* foreign model formats (ptth.convert, in Python) */                                           \
  X(bad_safetensors,                                                                              \
    "a safetensors file breaks its format (header length, JSON, dtypes, shapes or offsets)")      \
  X(bad_npz, "an .npz is not a zip of .npy arrays as NumPy writes them")                          \
  X(unsupported_name, "the target format cannot hold this tensor name")

enum class Reason : uint8_t {
#define PTTH_REASON_ENUM(name, text) name,
  PTTH_REASONS(PTTH_REASON_ENUM)
#undef PTTH_REASON_ENUM
};

constexpr size_t kReasonCount = 0
#define PTTH_REASON_COUNT(name, text) +1
    PTTH_REASONS(PTTH_REASON_COUNT)
#undef PTTH_REASON_COUNT
    ;

const char* reason_name(Reason r) noexcept;
const char* reason_text(Reason r) noexcept;

constexpr uint64_t kNoOffset = UINT64_MAX;
constexpr int64_t kNoRecord = -1;

class Error : public std::exception {
 public:
  Error(Reason reason, std::string message, uint64_t offset = kNoOffset, int64_t record = kNoRecord,
        std::string name = std::string(), bool has_name = false)
      : reason_(reason),
        message_(std::move(message)),
        offset_(offset),
        record_(record),
        name_(std::move(name)),
        has_name_(has_name || !name_.empty()) {}
  Reason reason() const noexcept { return reason_; }
  const std::string& message() const noexcept { return message_; }
  uint64_t offset() const noexcept { return offset_; }
  int64_t record() const noexcept { return record_; }
  // The parameter the error is about (valid UTF-8), when there is one.
  bool has_name() const noexcept { return has_name_; }
  const std::string& name() const noexcept { return name_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  Reason reason_;
  std::string message_;
  uint64_t offset_;
  int64_t record_;
  std::string name_;
  bool has_name_;
};

}  // namespace ptth
