// The PTTH encoder. Records are described by pointers to their (C-order,
// little-endian) source data; a payload may be narrowed on the way out
// (float32/float64 -> float16, float64 -> float32) without an intermediate copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/format.hpp"

namespace ptth {

enum class Convert : uint8_t { none, f32_to_f16, f64_to_f16, f64_to_f32 };

struct WriteRecord {
  std::string name;              // UTF-8
  std::vector<uint64_t> dims;    // checked to fit in u32 by validate()
  DType dtype = DType::float32;  // dtype as written
  const void* data = nullptr;    // numel elements of the source type
  uint64_t numel = 0;
  Convert convert = Convert::none;
};

// Checks every record (ndim <= 64, dims and data_len fit in 32 bits, names
// UTF-8) and returns the encoded size. Throws Error(not_representable or bad_name).
uint64_t validate(const std::vector<WriteRecord>& records);

// Encodes validated records into exactly blob_size bytes at `dst`. A narrowing
// conversion that turns a finite value into an infinity (float16 beyond
// 65504, float32 beyond FLT_MAX) is Error(overflow) naming the record, or
// with `saturate` writes the largest finite value of that sign instead.
void encode_to(const std::vector<WriteRecord>& records, uint8_t* dst, uint64_t blob_size,
               bool saturate = false);

}  // namespace ptth
