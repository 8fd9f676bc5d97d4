#include "common/buffer_pool.h"

#include "common/assert.h"

namespace sluice {

std::shared_ptr<FrameBytes> BufferPool::take(size_t capacity) {
  SLUICE_ASSERT(capacity >= min_bytes_);
  std::unique_ptr<FrameBytes> bytes;
  {
    std::lock_guard lock(mutex_);
    auto it = idle_.lower_bound(capacity);
    if (it != idle_.end()) {
      bytes = std::move(it->second);
      idle_bytes_ -= it->first;
      idle_.erase(it);
    }
  }
  if (!bytes) {
    bytes = std::make_unique<FrameBytes>();
    bytes->reserve((capacity + min_bytes_ - 1) / min_bytes_ * min_bytes_);
  }
  return std::shared_ptr<FrameBytes>(
      bytes.release(), [self = shared_from_this()](FrameBytes* b) { self->give_back(b); });
}

void BufferPool::give_back(FrameBytes* bytes) {
  std::unique_ptr<FrameBytes> owned(bytes);
  const size_t capacity = owned->capacity();
  owned->clear();
  std::lock_guard lock(mutex_);
  if (idle_bytes_ + capacity > max_idle_bytes_) return;  // the pool is full: freed
  idle_bytes_ += capacity;
  idle_.emplace(capacity, std::move(owned));
}

size_t BufferPool::idle_bytes() const {
  std::lock_guard lock(mutex_);
  return idle_bytes_;
}

}  // namespace sluice
