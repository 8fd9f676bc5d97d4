// The broker-wide budget for request bytes (Kafka's queued.max.request.bytes): every byte of
// every request buffer, from the moment a connection grows its buffer to read more of a frame
// until the request is gone (answered and released by every handler that held it).
//
// Connections reserve before they allocate and grow buffers as bytes arrive, so a peer that
// declares a 100 MiB frame and sends 14 bytes costs one small read buffer, and all the peers
// together never hold more than the limit. When the budget is spent a connection stops reading
// its socket (TCP pushes back on the client) and waits for a release. A frame that is half
// read when the budget runs out keeps what it holds; connections.max.idle.ms ends a peer that
// never finishes its frame, which also ends any standoff between half-read frames.
//
// Thread-safe: every shard's connections share one budget (a mutex, taken once per buffer
// growth and release, not per byte).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/buffer_pool.h"

namespace sluice::broker {

using sluice::FrameBytes;

class RequestMemory {
 public:
  explicit RequestMemory(int64_t limit_bytes) : limit_(limit_bytes) {}

  // Takes `n` bytes if they fit under the limit.
  bool try_reserve(size_t n);
  void release(size_t n);
  // Calls `resume` once, on the thread of a later release (or at once, on this thread, if `n`
  // bytes fit already). It must only post work: it runs with no lock held but on any shard.
  void wait(size_t n, std::function<void()> resume);
  int64_t used_bytes() const;
  int64_t limit_bytes() const { return limit_; }

  // An empty buffer with room for at least `capacity` (>= kPooledMinBytes) bytes, from a
  // BufferPool of at most kPoolBytes idle (common/buffer_pool.h): for new buffers of produce
  // requests, the first touch of fresh pages was one page fault per 4 KiB received and most of
  // the broker's CPU per byte at many partitions (docs/benchmarks.md). Smaller buffers are
  // plain vectors. Budget-neutral: the budget counts request bytes, not the pool.
  std::shared_ptr<FrameBytes> take_buffer(size_t capacity) { return pool_->take(capacity); }
  size_t pooled_bytes() const { return pool_->idle_bytes(); }
  static constexpr size_t kPooledMinBytes = 64 * 1024;
  static constexpr size_t kPoolBytes = 64 * 1024 * 1024;

 private:
  const int64_t limit_;
  // Taken by every connection's reads and by every request buffer's release.
  mutable std::mutex mutex_;
  int64_t used_ = 0;
  std::vector<std::function<void()>> waiters_;
  std::shared_ptr<BufferPool> pool_ = std::make_shared<BufferPool>(kPooledMinBytes, kPoolBytes);
};

// A request buffer whose bytes are charged to a RequestMemory; grows as a frame arrives and
// gives its bytes back when destroyed (the last shared_ptr to it goes).
class RequestBuffer {
 public:
  RequestBuffer(std::shared_ptr<RequestMemory> memory, size_t frame_bytes)
      : memory_(std::move(memory)), frame_bytes_(frame_bytes) {}
  ~RequestBuffer();
  RequestBuffer(const RequestBuffer&) = delete;
  RequestBuffer& operator=(const RequestBuffer&) = delete;

  // The size the buffer should grow to next: double what it has (at least kFirstReadBytes),
  // at most the frame. Zero once the buffer holds the whole frame.
  size_t next_size() const;
  // Grows to next_size() if the budget allows; false when it is spent. The new bytes are not
  // zeroed, and a frame of at most kWholeFrameBytes gets its whole capacity at the first step
  // (address space only: pages are touched as bytes arrive), so its later steps copy nothing.
  bool try_grow();
  FrameBytes& bytes() { return *bytes_; }
  // The bytes alone, without the budget's charge: what outlives the request (a produced
  // batch a Raft entry refers to instead of copying it) no longer counts against
  // queued.max.request.bytes once the request is gone; it is bounded by Raft's entry cache.
  std::shared_ptr<const FrameBytes> storage() const { return bytes_; }
  size_t frame_bytes() const { return frame_bytes_; }

  static constexpr size_t kFirstReadBytes = 16 * 1024;
  static constexpr size_t kWholeFrameBytes = 8 * 1024 * 1024;

 private:
  std::shared_ptr<RequestMemory> memory_;
  size_t frame_bytes_;
  // Replaced by one from memory_->take_buffer() at the first growth of a large frame.
  std::shared_ptr<FrameBytes> bytes_ = std::make_shared<FrameBytes>();
};

}  // namespace sluice::broker
