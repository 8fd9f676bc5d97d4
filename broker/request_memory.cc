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
