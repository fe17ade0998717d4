// Owned memory for payloads, accumulators and outputs: the core's one allocator.
//
// Buffers are 64-byte aligned. From 64 KiB a buffer is its own anonymous
// mapping; from 2 MiB that mapping starts on a 2 MiB boundary and is marked
// MADV_HUGEPAGE where the kernel offers transparent huge pages, so it faults
// in 2 MiB pages. Freed mappings go to a bounded pool (PTTH_POOL_BYTES,
// default 1 GiB) and are handed out again to requests of up to twice their
// size's need, so a steady stream of same-sized buffers touches pages it
// already owns; buffer_release_pool() unmaps what the pool keeps. Growing a
// mapping moves pages (mremap), not bytes.
#pragma once

#include <cstdint>
#include <memory>

namespace ptth {

uint8_t* buffer_alloc(uint64_t n);                // capacity >= n (>= 1); throws std::bad_alloc
uint8_t* buffer_alloc_zeroed(uint64_t n);         // the same, its first n bytes zero
uint8_t* buffer_grow(uint8_t* data, uint64_t n);  // keeps the contents; may move; throws
uint64_t buffer_capacity(const uint8_t* data) noexcept;
void buffer_free(void* data) noexcept;  // null is fine
// Address space for up to n bytes, not memory: a mapping with MAP_NORESERVE
// whose pages cost only once touched (whole-buffer inflate writes into it).
// Null when the system refuses the reservation.
uint8_t* buffer_reserve(uint64_t n) noexcept;
// Shrinks a buffer to n bytes (<= its capacity), returning the pages past
// them to the OS; keeps the contents and the address.
void buffer_trim(uint8_t* data, uint64_t n) noexcept;

// Unmaps every buffer the pool keeps; returns the bytes returned to the OS.
uint64_t buffer_release_pool() noexcept;

struct PoolStats {
  uint64_t idle_bytes;  // mapped bytes the pool keeps
  uint64_t cap_bytes;   // its bound
  uint64_t reused;      // allocations served from it so far
};
PoolStats buffer_pool_stats();

enum class HugePages : uint8_t { always, madvise, never, unavailable };
HugePages huge_pages() noexcept;  // the kernel's transparent huge page mode
const char* huge_pages_name(HugePages h) noexcept;

struct BufferFree {
  void operator()(uint8_t* p) const noexcept { buffer_free(p); }
};
using Buffer = std::unique_ptr<uint8_t, BufferFree>;

}  // namespace ptth
