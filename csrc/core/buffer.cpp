#include "core/buffer.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>

namespace ptth {

namespace {

// The header sits in the 64 bytes before the data, which keeps the data aligned.
constexpr uint64_t kHeader = 64;
constexpr uint64_t kMapAbove = uint64_t(64) << 10;  // smaller buffers come from the heap
constexpr uint64_t kPage = 4096;
constexpr uint64_t kHuge = uint64_t(2) << 20;  // a transparent huge page
constexpr uint64_t kDefaultPoolBytes = uint64_t(1) << 30;

struct Header {
  uint64_t capacity;
  uint64_t mapped;    // bytes of the mapping, or 0 when from aligned_alloc
  uint64_t reserved;  // 1: a buffer_reserve region (address space, never pooled)
};

Header* header_of(const uint8_t* data) {
  return reinterpret_cast<Header*>(const_cast<uint8_t*>(data) - kHeader);
}

uint64_t round_up(uint64_t n, uint64_t to) {
  uint64_t r = (n + to - 1) / to * to;
  if (r < n) throw std::bad_alloc();
  return r;
}

// What /sys/kernel/mm/transparent_hugepage/enabled says, read once.
HugePages read_huge_pages() {
  FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return HugePages::unavailable;
  char line[128] = {};
  const bool ok = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  if (!ok) return HugePages::unavailable;
  if (std::strstr(line, "[always]")) return HugePages::always;
  if (std::strstr(line, "[madvise]")) return HugePages::madvise;
  return HugePages::never;
}

HugePages huge_mode() {
  static const HugePages mode = read_huge_pages();
  return mode;
}

// A mapping of `bytes`; from 2 MiB on it starts on a 2 MiB boundary and is
// marked MADV_HUGEPAGE, so the kernel can back it with huge pages (a 100 MB
// buffer faults 50 times instead of 24,000).
void* map_region(uint64_t bytes) {
  const bool huge =
      bytes >= kHuge && (huge_mode() == HugePages::madvise || huge_mode() == HugePages::always);
  if (!huge) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  const uint64_t span = bytes + kHuge;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + kHuge - 1) & ~uintptr_t(kHuge - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + span, used_end = aligned + bytes;
  if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
  // Only whole 2 MiB spans: a huge page over the tail would make the slack
  // past the last byte resident (about 1 MiB per buffer on average).
  madvise(reinterpret_cast<void*>(aligned), bytes / kHuge * kHuge,
          MADV_HUGEPAGE);  // advice: failure is fine
  return reinterpret_cast<void*>(aligned);
}

// Freed mappings kept for reuse, by capacity: a steady stream of same-sized
// buffers (decoded uploads, kernel outputs, loads(copy=True)) then touches
// pages it already owns instead of faulting and zeroing fresh ones.
class Pool {
 public:
  Pool() {
    const char* env = std::getenv("PTTH_POOL_BYTES");
    cap_ = env ? std::strtoull(env, nullptr, 10) : kDefaultPoolBytes;
  }
  ~Pool() { release(); }

  // A kept mapping with capacity in [n, 2n], or null.
  uint8_t* take(uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.lower_bound(n);
    if (it == idle_.end() || it->first > 2 * n + kHuge) return nullptr;
    uint8_t* data = it->second;
    idle_bytes_ -= header_of(data)->mapped;
    idle_.erase(it);
    ++reused_;
    return data;
  }

  // Keeps a mapped buffer if there is room; false: the caller unmaps it.
  bool give(uint8_t* data) {
    Header* h = header_of(data);
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_bytes_ + h->mapped > cap_) return false;
    idle_.emplace(h->capacity, data);
    idle_bytes_ += h->mapped;
    return true;
  }

  uint64_t release() {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t freed = idle_bytes_;
    for (auto& kv : idle_) {
      Header* h = header_of(kv.second);
      munmap(h, h->mapped);
    }
    idle_.clear();
    idle_bytes_ = 0;
    return freed;
  }

  PoolStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return PoolStats{idle_bytes_, cap_, reused_};
  }

 private:
  std::mutex mu_;
  std::multimap<uint64_t, uint8_t*> idle_;
  uint64_t idle_bytes_ = 0;
  uint64_t cap_ = 0;
  uint64_t reused_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: buffers may be freed during exit
  return *p;
}

uint8_t* make(uint64_t n, bool* fresh) {
  if (n == 0) n = 1;
  if (n > UINT64_MAX - kHeader - 2 * kHuge) throw std::bad_alloc();
  *fresh = true;
  if (n + kHeader >= kMapAbove) {
    if (uint8_t* reused = pool().take(n)) {
      *fresh = false;
      return reused;
    }
    Header h{};
    h.mapped = round_up(n + kHeader, kPage);
    void* p = map_region(h.mapped);
    if (p == nullptr) {
      pool().release();  // memory kept idle may be what this allocation lacks
      p = map_region(h.mapped);
      if (p == nullptr) throw std::bad_alloc();
    }
    h.capacity = h.mapped - kHeader;
    std::memcpy(p, &h, sizeof h);
    return static_cast<uint8_t*>(p) + kHeader;
  }
  Header h{};
  h.mapped = 0;
  auto* base = static_cast<uint8_t*>(std::aligned_alloc(64, round_up(n + kHeader, 64)));
  if (base == nullptr) throw std::bad_alloc();
  h.capacity = round_up(n + kHeader, 64) - kHeader;
  std::memcpy(base, &h, sizeof h);
  return base + kHeader;
}

}  // namespace

uint8_t* buffer_alloc(uint64_t n) {
  bool fresh;
  return make(n, &fresh);
}

uint8_t* buffer_alloc_zeroed(uint64_t n) {
  bool fresh;
  uint8_t* p = make(n, &fresh);
  // a fresh anonymous mapping reads as zero; heap and reused memory do not
  if (!fresh || !header_of(p)->mapped) std::memset(p, 0, n);
  return p;
}

uint64_t buffer_capacity(const uint8_t* data) noexcept {
  return header_of(data)->capacity;
}

uint8_t* buffer_grow(uint8_t* data, uint64_t n) {
  Header* h = header_of(data);
  if (n <= h->capacity) return data;
  // A small buffer growing large takes a kept mapping when the pool has one:
  // copying what it holds costs less than faulting the rest in fresh.
  if (h->capacity <= n / 4 && n + kHeader >= kMapAbove) {
    if (uint8_t* reused = pool().take(n)) {
      std::memcpy(reused, data, h->capacity);
      buffer_free(data);
      return reused;
    }
  }
#ifdef MREMAP_MAYMOVE
  if (h->mapped) {
    const bool advise = huge_mode() == HugePages::madvise;
    // Advised over whole 2 MiB spans only, the mapping may be two VMAs, and
    // mremap moves one: advise it whole first (the two merge), the tail again after.
    if (advise && h->mapped >= kHuge) madvise(h, h->mapped, MADV_HUGEPAGE);
    uint64_t bytes = round_up(n + kHeader, kPage);
    void* p = mremap(h, h->mapped, bytes, MREMAP_MAYMOVE);
    if (p != MAP_FAILED) {
      auto* nh = static_cast<Header*>(p);
      nh->mapped = bytes;
      nh->capacity = bytes - kHeader;
      const uint64_t whole = bytes / kHuge * kHuge;
      if (advise && whole) {
        madvise(p, whole, MADV_HUGEPAGE);  // the moved region is advised anew
        if (whole < bytes)
          madvise(static_cast<uint8_t*>(p) + whole, bytes - whole, MADV_NOHUGEPAGE);
      }
      return static_cast<uint8_t*>(p) + kHeader;
    }
    // else copied below
  }
#endif
  uint8_t* fresh = buffer_alloc(n);
  std::memcpy(fresh, data, h->capacity);
  buffer_free(data);
  return fresh;
}

uint8_t* buffer_reserve(uint64_t n) noexcept {
  if (n < kMapAbove) {
    try {
      bool fresh;
      return make(n, &fresh);
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
  Header h{bytes - kHeader, bytes, 1};
  std::memcpy(p, &h, sizeof h);
  return static_cast<uint8_t*>(p) + kHeader;
}

void buffer_trim(uint8_t* data, uint64_t n) noexcept {
  Header* h = header_of(data);
  if (!h->mapped) return;
  uint64_t keep = (n + kHeader + kPage - 1) / kPage * kPage;
  if (keep < h->mapped) {
    munmap(reinterpret_cast<uint8_t*>(h) + keep, size_t(h->mapped - keep));
    h->mapped = keep;
    h->capacity = keep - kHeader;
  }
  h->reserved = 0;  // trimmed to what it holds: an ordinary buffer the pool may keep
}

void buffer_free(void* data) noexcept {
  if (data == nullptr) return;
  auto* d = static_cast<uint8_t*>(data);
  Header* h = header_of(d);
  if (!h->mapped) {
    std::free(h);
    return;
  }
  bool kept = false;
  try {
    // A reservation may span far more address space than it touched: never keep it.
    kept = !h->reserved && pool().give(d);
  } catch (...) {  // a full pool's bookkeeping cannot grow: unmap instead
    kept = false;
  }
  if (!kept) munmap(h, h->mapped);
}

uint64_t buffer_release_pool() noexcept {
  try {
    return pool().release();
  } catch (...) {
    return 0;
  }
}

PoolStats buffer_pool_stats() {
  return pool().stats();
}

HugePages huge_pages() noexcept {
  return huge_mode();
}

const char* huge_pages_name(HugePages h) noexcept {
  switch (h) {
    case HugePages::always: return "always";
    case HugePages::madvise: return "madvise";
    case HugePages::never: return "never";
    case HugePages::unavailable: return "unavailable";
  }
  return "?";
}

}  // namespace ptth
