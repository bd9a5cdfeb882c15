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
// sizes are rounded up to whole 1 MiB steps so that near sizes share blocks. Freed blocks wait
// in the cache until one of their size is asked for; the cache holds at most a quarter of the
// machine's memory (or EASEL_CPU_BLOCK_CACHE_MIB), and a block freed beyond that is released.

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include "report.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unistd.h>

namespace {

constexpr size_t kSmallestCached = size_t{1} << 20;
constexpr size_t kSizeStep = size_t{1} << 20;
// What c10's own CPU allocator aligns to (c10::gAlignment), so vectorised kernels see the same.
constexpr size_t kAlignment = 64;

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
  if (pages <= 0 || page <= 0) {
    return size_t{4} << 30;
  }
  return static_cast<size_t>(pages) * static_cast<size_t>(page) / 4;
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
    size_t size = (n + kSizeStep - 1) / kSizeStep * kSizeStep;
    void *block = take(size);
    if (block == nullptr) {
      block = std::aligned_alloc(kAlignment, size);
      if (block == nullptr) {
        release_cached();
        block = std::aligned_alloc(kAlignment, size);
      }
      if (block == nullptr) {
        throw std::bad_alloc();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[block] = size;
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
    now.cached_blocks = free_.size();
    now.capacity_bytes = capacity_;
    return now;
  }

  // Frees every cached block (the live ones are untouched).
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto &[size, block] : free_) {
      sizes_.erase(block);
      std::free(block);
    }
    free_.clear();
    cached_bytes_ = 0;
  }

  // Keeps at most `bytes` from now on; what is cached beyond that is freed now.
  void set_capacity(size_t bytes) {
    bool over;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      capacity_ = bytes;
      over = cached_bytes_ > capacity_;
    }
    if (over) {
      release_cached();
    }
  }

  static CpuBlockCache *instance;

private:
  // A cached block of exactly `size` bytes, or null (a miss).
  void *take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = free_.find(size);
    if (found == free_.end()) {
      ++counts_.misses;
      return nullptr;
    }
    void *block = found->second;
    free_.erase(found);
    cached_bytes_ -= size;
    ++counts_.hits;
    return block;
  }

  void keep(void *block) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto known = sizes_.find(block);
    if (known == sizes_.end()) {
      // A small block that came back through the raw interface.
      lock.unlock();
      small_raw_deleter_(block);
      return;
    }
    auto size = known->second;
    if (cached_bytes_ + size > capacity_) {
      sizes_.erase(block);
      lock.unlock();
      std::free(block);
      return;
    }
    free_.emplace(size, block);
    cached_bytes_ += size;
  }

  static void give_back(void *block) { instance->keep(block); }

  c10::Allocator *small_;
  c10::DeleterFnPtr small_raw_deleter_;
  size_t capacity_;
  std::mutex mutex_;
  // Every block this allocator made, live or cached, and its (rounded) size.
  std::unordered_map<void *, size_t> sizes_;
  std::multimap<size_t, void *> free_;
  size_t cached_bytes_ = 0;
  Counts counts_;
};

CpuBlockCache *CpuBlockCache::instance = nullptr;
std::once_flag installed;

} // namespace

// Makes the block cache libtorch's CPU allocator for every later CPU tensor (idempotent).
// Tensors made before keep their own deleters. The cache is never destroyed: tensors freed
// while the process exits still find it.
extern "C" int easel_install_cpu_block_cache(char *error, size_t error_len) {
  try {
    std::call_once(installed, [] {
      CpuBlockCache::instance = new CpuBlockCache(c10::GetDefaultCPUAllocator());
      // Above the default allocator's priority (0), so a later default registration loses.
      c10::SetCPUAllocator(CpuBlockCache::instance, 1);
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
  if (CpuBlockCache::instance != nullptr) {
    now = CpuBlockCache::instance->counts();
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
  if (CpuBlockCache::instance != nullptr) {
    CpuBlockCache::instance->set_capacity(static_cast<size_t>(bytes));
  }
}

// Frees the cached blocks (after a run, or before one that needs the memory for other sizes).
extern "C" void easel_release_cpu_block_cache() {
  if (CpuBlockCache::instance != nullptr) {
    CpuBlockCache::instance->release_cached();
  }
}
