#include "core/keyed_hash.hpp"

#include <cstring>
#include <random>

namespace ptth {

namespace {

inline uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

inline void round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1;
  v1 = rotl(v1, 13);
  v1 ^= v0;
  v0 = rotl(v0, 32);
  v2 += v3;
  v3 = rotl(v3, 16);
  v3 ^= v2;
  v0 += v3;
  v3 = rotl(v3, 21);
  v3 ^= v0;
  v2 += v1;
  v1 = rotl(v1, 17);
  v1 ^= v2;
  v2 = rotl(v2, 32);
}

struct Key {
  uint64_t k0, k1;
  Key() {
    std::random_device rd;
    k0 = (uint64_t(rd()) << 32) ^ rd();
    k1 = (uint64_t(rd()) << 32) ^ rd();
  }
};

const Key& key() {
  static const Key k;  // thread-safe initialisation
  return k;
}

}  // namespace

uint64_t siphash13(const void* data, size_t n, uint64_t k0, uint64_t k1) noexcept {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  const size_t whole = n & ~size_t(7);
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m;
    std::memcpy(&m, p + i, 8);  // little-endian hosts; the value only needs to be a hash
    v3 ^= m;
    round(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t b = uint64_t(n) << 56;
  for (size_t i = whole; i < n; ++i) b |= uint64_t(p[i]) << (8 * (i - whole));
  v3 ^= b;
  round(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  round(v0, v1, v2, v3);
  round(v0, v1, v2, v3);
  round(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

size_t KeyedHash::operator()(const std::string& s) const noexcept {
  const Key& k = key();
  return size_t(siphash13(s.data(), s.size(), k.k0, k.k1));
}

}  // namespace ptth
