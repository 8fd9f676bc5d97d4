// The shard's asynchronous file I/O: one io_uring ring per shard, shared by the partitions
// the shard owns. When io_uring cannot be set up (SLUICE_DISABLE_IO_URING=1 in the
// environment, an old kernel, a sandbox that forbids it) the same interface runs the
// operations with pwrite/fdatasync on a small thread pool, and says so once in the log.
//
// Thread: owned and driven by one thread (the shard's). Completions run inside
// poll_completions() or wait(), on that thread, in no particular order between operations.
// Buffers and file descriptors passed in must stay valid until the operation completes
// (capture the owner in the completion). Writes are never copied.
//
// Integration with an event loop: watch event_fd() for readability and call
// poll_completions() when it fires; it never blocks. Tools and tests may call wait().
// A loop that reads the event descriptor itself (one read(2) of its 8-byte counter before
// calling) says so with EventFd::kRead and saves the read that would find it empty.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "common/histogram.h"

namespace sluice::log {

class IoRing {
 public:
  struct Options {
    uint32_t entries = 256;         // submission queue size
    bool disable_io_uring = false;  // also when SLUICE_DISABLE_IO_URING=1
    uint32_t fallback_threads = 2;
  };
  // Result: bytes written (always the full length: short writes are continued) or -errno.
  using Completion = std::function<void(int32_t result)>;

  explicit IoRing(const Options& options);
  IoRing() : IoRing(Options{}) {}
  // Waits for every operation in flight (running their completions), then tears down.
  ~IoRing();
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  bool uses_io_uring() const;

  // Queue operations; they start at the next submit().
  void write(int fd, Bytes data, uint64_t position, Completion done);
  void fdatasync(int fd, Completion done);
  void fsync(int fd, Completion done);  // for directories (new or removed entries)
  // fallocate(fd, 0, 0, length): reserves the file's blocks up to `length` (result 0 or -errno).
  void fallocate(int fd, uint64_t length, Completion done);
  // pread into `data` (one read: the result is the bytes read, fewer at the end of the file,
  // or -errno).
  void read(int fd, MutableBytes data, uint64_t position, Completion done);
  // open(path, flags | O_CLOEXEC, mode): the result is the new descriptor (the completion owns
  // it) or -errno. Opening, creating and truncating files block in the file system: a segment
  // roll opens its new files here instead of on the shard.
  void open(std::string path, int flags, uint32_t mode, Completion done);
  // ftruncate(fd, length): 0 or -errno. io_uring runs it from Linux 6.9
  // (IORING_OP_FTRUNCATE); on older kernels it runs at once on the calling thread and completes
  // at the next poll_completions().
  void ftruncate(int fd, uint64_t length, Completion done);
  // unlink(path): 0 or -errno. Removing a large file frees its blocks in the call (a 1 GiB
  // segment took 300-375 ms on this VM's ext4): retention deletes through here. io_uring runs
  // it from Linux 5.11 (IORING_OP_UNLINKAT); on older kernels it runs at once on the calling
  // thread, like ftruncate.
  void unlink(std::string path, Completion done);

  // Writes `writes` to `fd`, then fdatasyncs it once every one of them completed, all in one
  // submission: no round trip through the caller between the data and its sync. On io_uring
  // the operations are linked (IOSQE_IO_LINK); on the fallback threads, or for a chain longer
  // than half the ring, the sync is queued by the last write's completion. Each write's `done`
  // runs as for write(), with its own result: a write the kernel cancelled because one linked
  // before it failed or was cut short is tried again on its own; `synced` gets 0 or -errno,
  // and -ECANCELED when a write failed or was cut short (a short write is then continued on
  // its own: sync again once everything completed).
  struct ChainedWrite {
    Bytes data;
    uint64_t position;
    Completion done;
  };
  void write_then_fdatasync(int fd, std::vector<ChainedWrite> writes, Completion synced);

  // Hands queued operations to the kernel (or the fallback threads). Never blocks. Inside a
  // Batch, waits for the outermost Batch to end.
  void submit();

  // Every submit() on `ring` while one lives goes at the end of the outermost one: what a
  // piece of work queues (an append's data and index writes, the next writes started by
  // completions) reaches the kernel in one io_uring_enter. Completions run inside a Batch
  // (poll_completions() holds one).
  class Batch {
   public:
    explicit Batch(IoRing& ring) : ring_(ring) { ++ring_.batch_depth_; }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    ~Batch() {
      if (--ring_.batch_depth_ == 0 && ring_.batch_submit_) {
        ring_.batch_submit_ = false;
        ring_.submit_queued();
      }
    }

   private:
    IoRing& ring_;
  };

  // Runs the completions that are ready; returns how many. Never blocks.
  enum class EventFd : uint8_t { kUnread, kRead };
  size_t poll_completions(EventFd event_fd = EventFd::kUnread);
  // Blocks until at least one completion has run (returns 0 at once when nothing is in
  // flight); for tests and tools, never on a shard.
  size_t wait();
  // wait() until nothing is in flight.
  void drain();

  // Readable when completions may be ready; poll_completions() clears it.
  int event_fd() const { return event_fd_; }
  size_t in_flight() const { return in_flight_; }
  // fdatasync and fsync calls, from queued to completed (for /metrics); read on the ring's
  // thread, like everything else here.
  const LatencyHistogram& sync_latency() const { return sync_latency_; }

 private:
  enum class OpKind : uint8_t {
    kWrite, kFdatasync, kFsync, kFallocate, kOpen, kFtruncate, kRead, kUnlink
  };
  struct Op {
    OpKind kind;
    int fd;
    const std::byte* data;
    uint64_t size;
    uint64_t position;
    uint64_t done_bytes;
    int32_t result;
    Completion done;
    bool link = false;  // io_uring: the next queued operation starts once this one succeeded
    uint8_t link_cancelled_retries = 0;  // kWrite: cancelled behind a failed link, tried alone
    std::string path;   // kOpen, kUnlink
    int flags = 0;      // kOpen (mode in `position`)
  };
  struct Uring;

  void enqueue(std::unique_ptr<Op> op);
  void submit_queued();  // submit() without the Batch
  static std::unique_ptr<Op> write_op(int fd, Bytes data, uint64_t position, Completion done);
  size_t finish(std::vector<Op*>& ops);
  void submit_uring();
  size_t poll_uring();
  void worker_loop();
  static int32_t run_blocking(Op& op);
  void drain_event_fd();

  // Wraps a sync's completion to time it into sync_latency_.
  Completion timed(Completion done);

  std::unique_ptr<Uring> uring_;
  uint32_t entries_ = 0;
  LatencyHistogram sync_latency_;
  int event_fd_ = -1;
  size_t in_flight_ = 0;
  int batch_depth_ = 0;        // Batches alive
  bool batch_submit_ = false;  // submit() was called inside them
  std::deque<Op*> queued_;  // not yet submitted (owned; released to the kernel or workers)
  bool can_ftruncate_ = false;  // the kernel's io_uring has IORING_OP_FTRUNCATE
  bool can_unlink_ = false;     // ... and IORING_OP_UNLINKAT
  // Runs `op` at once on this thread (an operation the kernel's io_uring lacks); it completes
  // at the next poll_completions().
  void run_here(std::unique_ptr<Op> op);
  std::vector<Op*> ran_here_;   // ran on this thread (ftruncate on older kernels): to finish

  // Fallback: workers take from work_, put results in done_.
  std::mutex mutex_;  // guards work_, done_, stopping_: shared by the shard and the workers
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<Op*> work_;
  std::deque<Op*> done_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace sluice::log
