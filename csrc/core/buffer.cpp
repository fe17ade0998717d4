#include "core/buffer.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace ptth {

namespace {

// The header sits in the 64 bytes before the data, which keeps the data aligned.
constexpr uint64_t kHeader = 64;
constexpr uint64_t kMapAbove = uint64_t(64) << 10;
constexpr uint64_t kPage = 4096;

struct Header {
  uint64_t capacity;
  uint64_t mapped;  // bytes of the mapping, or 0 when from aligned_alloc
};

Header* header_of(const uint8_t* data) {
  return reinterpret_cast<Header*>(const_cast<uint8_t*>(data) - kHeader);
}

uint64_t round_up(uint64_t n, uint64_t to) {
  uint64_t r = (n + to - 1) / to * to;
  if (r < n) throw std::bad_alloc();
  return r;
}

uint8_t* make(uint64_t n) {
  if (n == 0) n = 1;
  if (n > UINT64_MAX - kHeader - kPage) throw std::bad_alloc();
  uint8_t* base;
  Header h;
  if (n >= kMapAbove) {
    h.mapped = round_up(n + kHeader, kPage);
    void* p = mmap(nullptr, h.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base = static_cast<uint8_t*>(p);
  } else {
    h.mapped = 0;
    base = static_cast<uint8_t*>(std::aligned_alloc(64, round_up(n + kHeader, 64)));
    if (base == nullptr) throw std::bad_alloc();
  }
  h.capacity = (h.mapped ? h.mapped : round_up(n + kHeader, 64)) - kHeader;
  std::memcpy(base, &h, sizeof h);
  return base + kHeader;
}

}  // namespace

uint8_t* buffer_alloc(uint64_t n) { return make(n); }

uint64_t buffer_capacity(const uint8_t* data) noexcept { return header_of(data)->capacity; }

uint8_t* buffer_grow(uint8_t* data, uint64_t n) {
  Header* h = header_of(data);
  if (n <= h->capacity) return data;
#ifdef MREMAP_MAYMOVE
  if (h->mapped) {
    uint64_t bytes = round_up(n + kHeader, kPage);
    void* p = mremap(h, h->mapped, bytes, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) throw std::bad_alloc();
    auto* nh = static_cast<Header*>(p);
    nh->mapped = bytes;
    nh->capacity = bytes - kHeader;
    return static_cast<uint8_t*>(p) + kHeader;
  }
#endif
  uint8_t* fresh = make(n);
  std::memcpy(fresh, data, h->capacity);
  buffer_free(data);
  return fresh;
}

uint8_t* buffer_reserve(uint64_t n) noexcept {
  if (n < kMapAbove) {
    try {
      return make(n);
    } catch (const std::bad_alloc&) {
      return nullptr;
    }
  }
  if (n > UINT64_MAX - kHeader - kPage) return nullptr;
  uint64_t bytes = (n + kHeader + kPage - 1) / kPage * kPage;
  if (bytes > uint64_t(SIZE_MAX)) return nullptr;
  void* p = mmap(nullptr, size_t(bytes), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
  // Whole-buffer inflate writes it front to back: 2 MiB pages fault 512x less.
  if (bytes >= (uint64_t(4) << 20)) madvise(p, size_t(bytes), MADV_HUGEPAGE);
#endif
  Header h{bytes - kHeader, bytes};
  std::memcpy(p, &h, sizeof h);
  return static_cast<uint8_t*>(p) + kHeader;
}

void buffer_trim(uint8_t* data, uint64_t n) noexcept {
  Header* h = header_of(data);
  if (!h->mapped || n >= h->capacity) return;
  uint64_t keep = (n + kHeader + kPage - 1) / kPage * kPage;
  if (keep >= h->mapped) return;
  munmap(reinterpret_cast<uint8_t*>(h) + keep, size_t(h->mapped - keep));
  h->mapped = keep;
  h->capacity = keep - kHeader;
}

void buffer_free(void* data) noexcept {
  if (data == nullptr) return;
  Header* h = header_of(static_cast<uint8_t*>(data));
  if (h->mapped) munmap(h, h->mapped);
  else std::free(h);
}

}  // namespace ptth
