// Large byte buffers that go back to a pool when their last reference goes, instead of back to
// malloc: on this VM the first touch of a fresh page costs about 5 us, and buffers of a megabyte
// allocated and freed per request or per replicated frame (glibc returns blocks that large to
// the host, or trims the arena under them) were one page fault per 4 KiB received and most of
// a broker's CPU per byte (docs/benchmarks.md, "Produce throughput").
//
// Thread-safe: a buffer is often taken on one thread (a connection's) and let go on another
// (the shard that wrote what it held). One mutex, taken once per take and per give-back.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice {

// An allocator whose value-initialisation does nothing: a vector of it grows without zeroing
// the new bytes (a socket or a memcpy writes them before anything reads them).
template <class T>
struct NoInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <class U>
  NoInitAllocator(const NoInitAllocator<U>& /*other*/) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
using FrameBytes = std::vector<std::byte, NoInitAllocator<std::byte>>;

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // Buffers of at least `min_bytes`; at most `max_idle_bytes` of them kept idle.
  BufferPool(size_t min_bytes, size_t max_idle_bytes)
      : min_bytes_(min_bytes), max_idle_bytes_(max_idle_bytes) {}

  // An empty buffer with room for at least `capacity` (>= min_bytes()) bytes: the smallest
  // idle one that fits, or a new one (its capacity rounded up to a multiple of min_bytes(), so
  // that sizes varying a little around a client's batch size fit each other's buffers; address
  // space only, pages are touched as bytes are written). Back to the pool when the last
  // reference goes, while the idle ones stay under max_idle_bytes(); freed otherwise.
  std::shared_ptr<FrameBytes> take(size_t capacity);

  size_t idle_bytes() const;
  size_t min_bytes() const { return min_bytes_; }
  size_t max_idle_bytes() const { return max_idle_bytes_; }

 private:
  void give_back(FrameBytes* bytes);

  const size_t min_bytes_;
  const size_t max_idle_bytes_;
  mutable std::mutex mutex_;
  std::multimap<size_t, std::unique_ptr<FrameBytes>> idle_;  // by capacity
  size_t idle_bytes_ = 0;
};

}  // namespace sluice
