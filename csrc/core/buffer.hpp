// Owned payload memory: 64-byte aligned; a buffer of 64 KiB or more is its own
// anonymous mapping, so freeing it returns the memory to the OS at once and
// growing it moves pages instead of bytes (a stream of large records keeps a
// flat footprint instead of a heap that only grows).
#pragma once

#include <cstdint>
#include <memory>

namespace ptth {

uint8_t* buffer_alloc(uint64_t n);                 // capacity >= n (>= 1); throws std::bad_alloc
uint8_t* buffer_grow(uint8_t* data, uint64_t n);   // keeps the contents; may move; throws
uint64_t buffer_capacity(const uint8_t* data) noexcept;
void buffer_free(void* data) noexcept;             // null is fine
// Address space for up to n bytes, not memory: a mapping with MAP_NORESERVE
// whose pages cost only once touched (whole-buffer inflate writes into it).
// Null when the system refuses the reservation.
uint8_t* buffer_reserve(uint64_t n) noexcept;
// Shrinks a buffer to n bytes (<= its capacity), returning the pages past
// them to the OS; keeps the contents and the address.
void buffer_trim(uint8_t* data, uint64_t n) noexcept;

struct BufferFree {
  void operator()(uint8_t* p) const noexcept { buffer_free(p); }
};
using Buffer = std::unique_ptr<uint8_t, BufferFree>;

}  // namespace ptth
