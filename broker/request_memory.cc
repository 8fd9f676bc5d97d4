#include "broker/request_memory.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::broker {

bool RequestMemory::try_reserve(size_t n) {
  std::lock_guard lock(mutex_);
  if (used_ + static_cast<int64_t>(n) > limit_) return false;
  used_ += static_cast<int64_t>(n);
  return true;
}

void RequestMemory::release(size_t n) {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mutex_);
    SLUICE_ASSERT(used_ >= static_cast<int64_t>(n));
    used_ -= static_cast<int64_t>(n);
    wake.swap(waiters_);
  }
  for (auto& resume : wake) resume();
}

void RequestMemory::wait(size_t n, std::function<void()> resume) {
  {
    std::lock_guard lock(mutex_);
    if (used_ + static_cast<int64_t>(n) > limit_) {
      waiters_.push_back(std::move(resume));
      return;
    }
  }
  resume();  // released between the failed reservation and now
}

int64_t RequestMemory::used_bytes() const {
  std::lock_guard lock(mutex_);
  return used_;
}

std::shared_ptr<FrameBytes> RequestMemory::take_buffer(size_t capacity) {
  SLUICE_ASSERT(capacity >= kPooledMinBytes);
  std::unique_ptr<FrameBytes> bytes;
  {
    std::lock_guard lock(pool_mutex_);
    auto it = pool_.lower_bound(capacity);
    if (it != pool_.end()) {
      bytes = std::move(it->second);
      pooled_bytes_ -= it->first;
      pool_.erase(it);
    }
  }
  if (!bytes) {
    // Rounded up so that the frames of a client, whose sizes vary a little around its batch
    // size, fit each other's buffers (address space: pages are touched as bytes arrive).
    bytes = std::make_unique<FrameBytes>();
    bytes->reserve((capacity + kPooledMinBytes - 1) / kPooledMinBytes * kPooledMinBytes);
  }
  return std::shared_ptr<FrameBytes>(
      bytes.release(), [self = shared_from_this()](FrameBytes* b) { self->give_back(b); });
}

void RequestMemory::give_back(FrameBytes* bytes) {
  std::unique_ptr<FrameBytes> owned(bytes);
  const size_t capacity = owned->capacity();
  owned->clear();
  std::lock_guard lock(pool_mutex_);
  if (pooled_bytes_ + capacity > kPoolBytes) return;  // the pool is full: freed
  pooled_bytes_ += capacity;
  pool_.emplace(capacity, std::move(owned));
}

size_t RequestMemory::pooled_bytes() const {
  std::lock_guard lock(pool_mutex_);
  return pooled_bytes_;
}

RequestBuffer::~RequestBuffer() {
  if (!bytes_->empty()) memory_->release(bytes_->size());
}

size_t RequestBuffer::next_size() const {
  if (bytes_->size() >= frame_bytes_) return 0;
  return std::min(frame_bytes_, std::max(kFirstReadBytes, 2 * bytes_->size()));
}

bool RequestBuffer::try_grow() {
  const size_t size = next_size();
  SLUICE_ASSERT(size > bytes_->size());
  if (!memory_->try_reserve(size - bytes_->size())) return false;
  if (bytes_->capacity() < size) {
    const size_t capacity = frame_bytes_ <= kWholeFrameBytes ? frame_bytes_ : size;
    if (bytes_->empty() && capacity >= RequestMemory::kPooledMinBytes) {
      bytes_ = memory_->take_buffer(capacity);
    } else {
      bytes_->reserve(capacity);  // a small frame's, or a growth step past kWholeFrameBytes
    }
  }
  bytes_->resize(size);  // not zeroed: the socket fills it
  SLUICE_ASSERT(bytes_->size() == size && size <= frame_bytes_);
  return true;
}

}  // namespace sluice::broker
