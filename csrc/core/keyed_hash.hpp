// A keyed string hash for sets built from untrusted names (SipHash-1-3 with a
// per-process random key): collisions cannot be precomputed, so a blob of
// crafted names costs linear time. std::hash of libstdc++ is unkeyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ptth {

struct KeyedHash {
  size_t operator()(const std::string& s) const noexcept;
};

// SipHash-1-3 of n bytes under the 128-bit key (k0, k1).
uint64_t siphash13(const void* data, size_t n, uint64_t k0, uint64_t k1) noexcept;

}  // namespace ptth
