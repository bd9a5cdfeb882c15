// A CPU allocator that keeps large freed blocks for the next allocation of their size.
//
// libtorch's default CPU allocator hands every tensor straight to malloc and back to free. A
// training step's activations are tens of megabytes each, above glibc's mmap threshold (32 MiB
// at most), so each step maps them fresh and unmaps them again: the kernel faults in and zeroes
// every 4 KiB page of every activation, every step. On a 2-core laptop that was a third of a
// small CNN's epoch (10.9 million page faults in two epochs of 1,088 images). The next step
// allocates the same sizes in the same order, so keeping the freed blocks and handing them out
// again removes that work; TensorFlow's CPU allocator (BFC) and PyTorch's CUDA allocator cache
// the same way.
//
// Blocks under 1 MiB go to libtorch's own allocator (malloc's heap already reuses them). Larger
// sizes are rounded up to a size class (an eighth of their power of two, at least 64 KiB: at most
// 12.5 % more), so near sizes share blocks. A freed block waits for the next allocation of its
// class; the most recently freed one is handed out first (still warm in the CPU's caches).
//
// Memory stays bounded two ways. An allocation that finds no block of its class first frees the
// blocks that have waited through the last kStaleAfter frees unused (a training step reuses its
// blocks within a few hundred; blocks of a phase that is over, such as another run's sizes, go);
// and the cache never holds more than its capacity: a quarter of the memory this process may use
// (the machine's, or its cgroup's limit when lower), or EASEL_CPU_BLOCK_CACHE_MIB, the
// longest-waiting blocks going first.

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include "report.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <utility>

namespace {

constexpr size_t kSmallestCached = size_t{1} << 20;
constexpr size_t kSmallestStep = size_t{64} << 10;
// What c10's own CPU allocator aligns to (c10::gAlignment), so vectorised kernels see the same.
constexpr size_t kAlignment = 64;
// Frees of cached blocks after which one still unused counts as stale.
constexpr uint64_t kStaleAfter = 4096;

// `n` rounded up to its size class, or 0 when that would overflow.
size_t size_class(size_t n) {
  size_t power = size_t{1} << (std::numeric_limits<size_t>::digits - 1 - __builtin_clzll(n));
  size_t step = power / 8 > kSmallestStep ? power / 8 : kSmallestStep;
  if (n > std::numeric_limits<size_t>::max() - step) {
    return 0;
  }
  return (n + step - 1) / step * step;
}

// The memory limit of this process's cgroup (v2, then v1), or 0 when there is none.
size_t cgroup_limit() {
  for (const char *path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream file(path);
    std::string text;
    if (file >> text && !text.empty() && text != "max") {
      char *end = nullptr;
      unsigned long long value = std::strtoull(text.c_str(), &end, 10);
      if (end != text.c_str() && value > 0) {
        return static_cast<size_t>(value);
      }
    }
  }
  return 0;
}

size_t default_capacity() {
  if (const char *mib = std::getenv("EASEL_CPU_BLOCK_CACHE_MIB")) {
    char *end = nullptr;
    unsigned long long value = std::strtoull(mib, &end, 10);
    if (end != mib && *end == '\0') {
      return static_cast<size_t>(value) << 20;
    }
  }
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  size_t memory = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page)
                                        : size_t{16} << 30;
  size_t limit = cgroup_limit();
  if (limit > 0 && limit < memory) {
    memory = limit;
  }
  return memory / 4;
}

struct Counts {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t cached_bytes = 0;
  uint64_t cached_blocks = 0;
  uint64_t capacity_bytes = 0;
};

class CpuBlockCache final : public c10::Allocator {
public:
  explicit CpuBlockCache(c10::Allocator *small)
      : small_(small), small_raw_deleter_(small->raw_deleter()), capacity_(default_capacity()) {}

  c10::DataPtr allocate(size_t n) override {
    if (n < kSmallestCached) {
      return small_->allocate(n);
    }
    size_t size = size_class(n);
    if (size == 0) {
      throw std::bad_alloc();
    }
    void *block = take(size);
    if (block == nullptr) {
      if (posix_memalign(&block, kAlignment, size) != 0) {
        release_cached();
        if (posix_memalign(&block, kAlignment, size) != 0) {
          throw std::bad_alloc();
        }
      }
      try {
        std::lock_guard<std::mutex> lock(mutex_);
        sizes_[block] = size;
      } catch (...) {
        std::free(block);
        throw;
      }
    }
    return {block, block, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  // libtorch's raw interface (`raw_allocate` / `raw_deallocate`, used by its CPU kernels for
  // scratch memory) needs one deleter for every block, small ones included: `give_back`
  // forwards those to the small allocator's.
  c10::DeleterFnPtr raw_deleter() const override {
    return small_raw_deleter_ == nullptr ? nullptr : &give_back;
  }

  void copy_data(void *dest, const void *src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  Counts counts() {
    std::lock_guard<std::mutex> lock(mutex_);
    Counts now = counts_;
    now.cached_bytes = cached_bytes_;
    now.cached_blocks = by_age_.size();
    now.capacity_bytes = capacity_;
    return now;
  }

  // Frees every cached block (the live ones are untouched).
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    evict_oldest(cached_bytes_);
  }

  // Keeps at most `bytes` from now on; the longest-waiting blocks beyond that are freed now.
  void set_capacity(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    capacity_ = bytes;
    if (cached_bytes_ > capacity_) {
      evict_oldest(cached_bytes_ - capacity_);
    }
  }

  static std::atomic<CpuBlockCache *> instance;

private:
  // The most recently freed cached block of exactly `size` bytes, or null (a miss, which first
  // frees the stale blocks).
  void *take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto range = by_size_.equal_range(size);
    if (range.first == range.second) {
      ++counts_.misses;
      while (!by_age_.empty() && by_age_.begin()->first + kStaleAfter < next_age_) {
        evict_oldest(1);
      }
      return nullptr;
    }
    auto newest = std::prev(range.second);
    auto waiting = by_age_.find(newest->second);
    void *block = waiting->second.second;
    by_age_.erase(waiting);
    by_size_.erase(newest);
    cached_bytes_ -= size;
    ++counts_.hits;
    return block;
  }

  // Called by every block's deleter; must not throw.
  void keep(void *block) noexcept {
    std::unique_lock<std::mutex> lock(mutex_);
    auto known = sizes_.find(block);
    if (known == sizes_.end()) {
      // A small block that came back through the raw interface.
      lock.unlock();
      small_raw_deleter_(block);
      return;
    }
    size_t size = known->second;
    if (size > capacity_) {
      sizes_.erase(known);
      lock.unlock();
      std::free(block);
      return;
    }
    try {
      uint64_t age = next_age_++;
      by_age_.emplace(age, std::make_pair(size, block));
      try {
        by_size_.emplace(size, age);
      } catch (...) {
        by_age_.erase(age);
        throw;
      }
    } catch (...) {
      sizes_.erase(known);
      lock.unlock();
      std::free(block);
      return;
    }
    cached_bytes_ += size;
    if (cached_bytes_ > capacity_) {
      evict_oldest(cached_bytes_ - capacity_);
    }
  }

  // Frees the longest-waiting cached blocks until `bytes` are freed or none is left. Holds the
  // lock (the caller's).
  void evict_oldest(size_t bytes) {
    size_t freed = 0;
    while (freed < bytes && !by_age_.empty()) {
      auto oldest = by_age_.begin();
      auto [size, block] = oldest->second;
      auto range = by_size_.equal_range(size);
      for (auto it = range.first; it != range.second; ++it) {
        if (it->second == oldest->first) {
          by_size_.erase(it);
          break;
        }
      }
      by_age_.erase(oldest);
      sizes_.erase(block);
      std::free(block);
      cached_bytes_ -= size;
      freed += size;
    }
  }

  static void give_back(void *block) { instance.load()->keep(block); }

  c10::Allocator *small_;
  c10::DeleterFnPtr small_raw_deleter_;
  size_t capacity_;
  std::mutex mutex_;
  // Every block this allocator made, live or cached, and its size class.
  std::unordered_map<void *, size_t> sizes_;
  // The cached blocks: by when they were freed (age -> size, block), and by size (-> age).
  std::map<uint64_t, std::pair<size_t, void *>> by_age_;
  std::multimap<size_t, uint64_t> by_size_;
  uint64_t next_age_ = 0;
  size_t cached_bytes_ = 0;
  Counts counts_;
};

std::atomic<CpuBlockCache *> CpuBlockCache::instance{nullptr};
std::once_flag installed;

} // namespace

// Makes the block cache libtorch's CPU allocator for every later CPU tensor (idempotent).
// Tensors made before keep their own deleters. The cache is never destroyed: tensors freed
// while the process exits still find it.
extern "C" int easel_install_cpu_block_cache(char *error, size_t error_len) {
  try {
    std::call_once(installed, [] {
      auto *cache = new CpuBlockCache(c10::GetDefaultCPUAllocator());
      CpuBlockCache::instance.store(cache);
      // Above the default allocator's priority (0), so a later default registration loses.
      c10::SetCPUAllocator(cache, 1);
    });
    return 0;
  } catch (const std::exception &e) {
    return easel_aten::report(e.what(), error, error_len);
  } catch (...) {
    return easel_aten::report("an exception that is not a std::exception", error, error_len);
  }
}

// The cache's counters since it was installed; all zero before.
extern "C" void easel_cpu_block_cache_counts(uint64_t *hits, uint64_t *misses,
                                             uint64_t *cached_bytes, uint64_t *cached_blocks,
                                             uint64_t *capacity_bytes) {
  Counts now;
  if (CpuBlockCache *cache = CpuBlockCache::instance.load()) {
    now = cache->counts();
  }
  *hits = now.hits;
  *misses = now.misses;
  *cached_bytes = now.cached_bytes;
  *cached_blocks = now.cached_blocks;
  *capacity_bytes = now.capacity_bytes;
}

// Sets how many bytes the cache may hold (0: none, as libtorch's own allocator). A no-op before
// the install.
extern "C" void easel_set_cpu_block_cache_capacity(uint64_t bytes) {
  if (CpuBlockCache *cache = CpuBlockCache::instance.load()) {
    cache->set_capacity(static_cast<size_t>(bytes));
  }
}

// Frees the cached blocks (after a run, or before one that needs the memory for other sizes).
extern "C" void easel_release_cpu_block_cache() {
  if (CpuBlockCache *cache = CpuBlockCache::instance.load()) {
    cache->release_cached();
  }
}
