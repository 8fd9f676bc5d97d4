#include "log/io_ring.h"

#include <liburing.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/assert.h"
#include "log/logging.h"

namespace sluice::log {

struct IoRing::Uring {
  io_uring ring;
};

namespace {
bool env_disables_uring() {
  const char* v = std::getenv("SLUICE_DISABLE_IO_URING");
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

// IORING_OP_FTRUNCATE (Linux 6.9): after Debian 12's liburing 2.3 headers, so by number.
constexpr int kOpFtruncate = 55;

void log_fallback_once(const std::string& why) {
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) {
    detail::log_line(LogLevel::kWarning,
                     "io_uring unavailable (" + why + "); using pwrite/fdatasync threads");
  }
}
}  // namespace

IoRing::IoRing(const Options& options) : entries_(options.entries) {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  SLUICE_ASSERT(event_fd_ >= 0);
  std::string why;
  if (options.disable_io_uring) {
    why = "disabled by options";
  } else if (env_disables_uring()) {
    why = "SLUICE_DISABLE_IO_URING is set";
  } else {
    auto uring = std::make_unique<Uring>();
    const int rc = io_uring_queue_init(options.entries, &uring->ring, 0);
    if (rc < 0) {
      why = std::string("io_uring_queue_init: ") + std::strerror(-rc);
    } else if (const int erc = io_uring_register_eventfd(&uring->ring, event_fd_); erc < 0) {
      io_uring_queue_exit(&uring->ring);
      why = std::string("io_uring_register_eventfd: ") + std::strerror(-erc);
    } else {
      if (io_uring_probe* probe = io_uring_get_probe_ring(&uring->ring)) {
        can_ftruncate_ = io_uring_opcode_supported(probe, kOpFtruncate) != 0;
        can_unlink_ = io_uring_opcode_supported(probe, IORING_OP_UNLINKAT) != 0;
        io_uring_free_probe(probe);
      }
      uring_ = std::move(uring);
    }
  }
  if (!uring_) {
    log_fallback_once(why);
    SLUICE_ASSERT(options.fallback_threads >= 1);
    for (uint32_t i = 0; i < options.fallback_threads; ++i) {
      workers_.emplace_back([this] { worker_loop(); });
    }
  }
}

IoRing::~IoRing() {
  drain();
  SLUICE_ASSERT(in_flight_ == 0);
  if (uring_) {
    io_uring_queue_exit(&uring_->ring);
  } else {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  ::close(event_fd_);
}

bool IoRing::uses_io_uring() const { return uring_ != nullptr; }

void IoRing::enqueue(std::unique_ptr<Op> op) {
  ++in_flight_;
  queued_.push_back(op.release());
}

std::unique_ptr<IoRing::Op> IoRing::write_op(int fd, Bytes data, uint64_t position,
                                             Completion done) {
  SLUICE_ASSERT(fd >= 0);
  SLUICE_ASSERT(!data.empty());
  return std::make_unique<Op>(
      Op{OpKind::kWrite, fd, data.data(), data.size(), position, 0, 0, std::move(done)});
}

void IoRing::write(int fd, Bytes data, uint64_t position, Completion done) {
  enqueue(write_op(fd, data, position, std::move(done)));
}

IoRing::Completion IoRing::timed(Completion done) {
  // Completions run on the ring's thread (finish()), the only one that touches sync_latency_;
  // the ring outlives its operations (the destructor drains them).
  return [this, start = std::chrono::steady_clock::now(), done = std::move(done)](int32_t result) {
    sync_latency_.record(std::chrono::steady_clock::now() - start);
    if (done) done(result);
  };
}

void IoRing::fdatasync(int fd, Completion done) {
  SLUICE_ASSERT(fd >= 0);
  enqueue(std::make_unique<Op>(
      Op{OpKind::kFdatasync, fd, nullptr, 0, 0, 0, 0, timed(std::move(done))}));
}

void IoRing::fsync(int fd, Completion done) {
  SLUICE_ASSERT(fd >= 0);
  enqueue(std::make_unique<Op>(Op{OpKind::kFsync, fd, nullptr, 0, 0, 0, 0, timed(std::move(done))}));
}

void IoRing::fallocate(int fd, uint64_t length, Completion done) {
  SLUICE_ASSERT(fd >= 0);
  enqueue(std::make_unique<Op>(
      Op{OpKind::kFallocate, fd, nullptr, length, 0, 0, 0, std::move(done)}));
}

void IoRing::read(int fd, MutableBytes data, uint64_t position, Completion done) {
  SLUICE_ASSERT(fd >= 0);
  SLUICE_ASSERT(!data.empty());
  enqueue(std::make_unique<Op>(
      Op{OpKind::kRead, fd, data.data(), data.size(), position, 0, 0, std::move(done)}));
}

void IoRing::open(std::string path, int flags, uint32_t mode, Completion done) {
  auto op = std::make_unique<Op>(Op{OpKind::kOpen, -1, nullptr, 0, mode, 0, 0, std::move(done)});
  op->path = std::move(path);
  op->flags = flags | O_CLOEXEC;
  enqueue(std::move(op));
}

void IoRing::ftruncate(int fd, uint64_t length, Completion done) {
  SLUICE_ASSERT(fd >= 0);
  auto op = std::make_unique<Op>(Op{OpKind::kFtruncate, fd, nullptr, length, 0, 0, 0, std::move(done)});
  if (uring_ && !can_ftruncate_) return run_here(std::move(op));
  enqueue(std::move(op));
}

void IoRing::unlink(std::string path, Completion done) {
  auto op = std::make_unique<Op>(Op{OpKind::kUnlink, -1, nullptr, 0, 0, 0, 0, std::move(done)});
  op->path = std::move(path);
  if (uring_ && !can_unlink_) return run_here(std::move(op));
  enqueue(std::move(op));
}

void IoRing::run_here(std::unique_ptr<Op> op) {
  op->result = run_blocking(*op);
  ++in_flight_;
  ran_here_.push_back(op.release());
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(event_fd_, &one, sizeof(one));
}

void IoRing::write_then_fdatasync(int fd, std::vector<ChainedWrite> writes, Completion synced) {
  SLUICE_ASSERT(fd >= 0);
  SLUICE_ASSERT(!writes.empty());
  if (uring_ && writes.size() + 1 <= entries_ / 2) {
    for (ChainedWrite& w : writes) {
      auto op = write_op(fd, w.data, w.position, std::move(w.done));
      op->link = true;
      enqueue(std::move(op));
    }
    fdatasync(fd, std::move(synced));
    return;
  }
  // The sync goes once the last write completed; a failed write cancels it.
  struct Left {
    size_t writes;
    bool failed = false;
  };
  auto left = std::make_shared<Left>(Left{writes.size()});
  auto shared_synced = std::make_shared<Completion>(std::move(synced));
  for (ChainedWrite& w : writes) {
    write(fd, w.data, w.position,
          [this, fd, left, shared_synced, done = std::move(w.done)](int32_t result) {
            if (done) done(result);
            left->failed |= result < 0;
            if (--left->writes > 0) return;
            if (left->failed) {
              if (*shared_synced) (*shared_synced)(-ECANCELED);
              return;
            }
            fdatasync(fd, std::move(*shared_synced));
            submit();
          });
  }
}

void IoRing::submit() {
  if (queued_.empty()) return;
  if (batch_depth_ > 0) {
    batch_submit_ = true;
    return;
  }
  submit_queued();
}

void IoRing::submit_queued() {
  if (queued_.empty()) return;
  if (uring_) return submit_uring();
  {
    std::lock_guard lock(mutex_);
    work_.insert(work_.end(), queued_.begin(), queued_.end());
  }
  queued_.clear();
  work_cv_.notify_all();
}

void IoRing::submit_uring() {
  io_uring* ring = &uring_->ring;
  while (!queued_.empty()) {
    // A linked chain goes in one submission: a link cut at a submission's end would let the
    // sync run beside the writes it must follow. Chains are at most half the ring.
    size_t chain = 1;
    while (chain <= queued_.size() && queued_[chain - 1]->link) ++chain;
    SLUICE_ASSERT(chain <= entries_);
    if (io_uring_sq_space_left(ring) < chain) {
      io_uring_submit(ring);
      if (io_uring_sq_space_left(ring) < chain) break;  // the rest goes at the next submit()
    }
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    SLUICE_ASSERT(sqe != nullptr);
    Op* op = queued_.front();
    queued_.pop_front();
    switch (op->kind) {
      case OpKind::kWrite:
        io_uring_prep_write(sqe, op->fd, op->data + op->done_bytes,
                            static_cast<unsigned>(op->size - op->done_bytes),
                            op->position + op->done_bytes);
        break;
      case OpKind::kFdatasync:
        io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
        break;
      case OpKind::kFsync:
        io_uring_prep_fsync(sqe, op->fd, 0);
        break;
      case OpKind::kFallocate:
        io_uring_prep_fallocate(sqe, op->fd, 0, 0, static_cast<off_t>(op->size));
        break;
      case OpKind::kRead:
        // The buffer is the caller's, writable (read()); Op keeps it as const like a write's.
        io_uring_prep_read(sqe, op->fd, const_cast<std::byte*>(op->data),
                           static_cast<unsigned>(op->size), op->position);
        break;
      case OpKind::kOpen:
        io_uring_prep_openat(sqe, AT_FDCWD, op->path.c_str(), op->flags,
                             static_cast<mode_t>(op->position));
        break;
      case OpKind::kFtruncate:
        io_uring_prep_rw(kOpFtruncate, sqe, op->fd, nullptr, 0, op->size);
        break;
      case OpKind::kUnlink:
        io_uring_prep_unlinkat(sqe, AT_FDCWD, op->path.c_str(), 0);
        break;
    }
    if (op->link) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data(sqe, op);
  }
  io_uring_submit(ring);
}

void IoRing::drain_event_fd() {
  uint64_t value;
  while (::read(event_fd_, &value, sizeof(value)) > 0) {
  }
}

size_t IoRing::poll_completions(EventFd event_fd) {
  if (event_fd == EventFd::kUnread) drain_event_fd();
  const Batch batch(*this);
  size_t here = 0;
  if (!ran_here_.empty()) {
    std::vector<Op*> ops;
    ops.swap(ran_here_);
    here = finish(ops);
  }
  if (uring_) return here + poll_uring();
  std::deque<Op*> ready;
  {
    std::lock_guard lock(mutex_);
    ready.swap(done_);
  }
  std::vector<Op*> ops(ready.begin(), ready.end());
  return here + finish(ops);
}

size_t IoRing::poll_uring() {
  io_uring* ring = &uring_->ring;
  std::vector<Op*> finished;
  io_uring_cqe* cqe;
  while (io_uring_peek_cqe(ring, &cqe) == 0) {
    Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    const int32_t res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    SLUICE_ASSERT(op != nullptr);
    // Retried on its own: the operation linked after it was cancelled (-ECANCELED).
    if (res == -EINTR || res == -EAGAIN) {
      op->link = false;
      queued_.push_back(op);  // retry as is
      continue;
    }
    // A write linked behind one that failed or was cut short: tried again alone, so that it
    // reports its own result (a full disk's ENOSPC, or success) rather than the cancel.
    if (op->kind == OpKind::kWrite && res == -ECANCELED && op->link_cancelled_retries++ == 0) {
      op->link = false;
      queued_.push_back(op);
      continue;
    }
    if (op->kind == OpKind::kWrite && res > 0 && op->done_bytes + res < op->size) {
      op->done_bytes += res;  // a short write: continue where it stopped
      op->link = false;
      queued_.push_back(op);
      continue;
    }
    if (op->kind == OpKind::kWrite && res == 0) {
      op->result = -EIO;  // no progress: the device refuses
    } else if (op->kind == OpKind::kWrite && res > 0) {
      op->result = static_cast<int32_t>(op->size);
    } else {
      op->result = res;
    }
    finished.push_back(op);
  }
  if (!queued_.empty()) submit_uring();
  return finish(finished);
}

size_t IoRing::finish(std::vector<Op*>& ops) {
  for (Op* raw : ops) {
    std::unique_ptr<Op> op(raw);
    SLUICE_ASSERT(in_flight_ > 0);
    --in_flight_;
    if (op->done) op->done(op->result);
  }
  return ops.size();
}

size_t IoRing::wait() {
  if (in_flight_ == 0) return 0;
  submit_queued();
  for (;;) {
    if (const size_t n = poll_completions(); n > 0) return n;
    if (uring_) {
      io_uring_cqe* cqe;
      const int rc = io_uring_wait_cqe(&uring_->ring, &cqe);
      SLUICE_ASSERT(rc == 0 || rc == -EINTR);
    } else {
      std::unique_lock lock(mutex_);
      done_cv_.wait(lock, [this] { return !done_.empty(); });
    }
  }
}

void IoRing::drain() {
  while (in_flight_ > 0) wait();
}

int32_t IoRing::run_blocking(Op& op) {
  switch (op.kind) {
    case OpKind::kWrite:
      while (op.done_bytes < op.size) {
        const ssize_t n = ::pwrite(op.fd, op.data + op.done_bytes, op.size - op.done_bytes,
                                   static_cast<off_t>(op.position + op.done_bytes));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return -EIO;
        op.done_bytes += static_cast<uint64_t>(n);
      }
      return static_cast<int32_t>(op.size);
    case OpKind::kFdatasync:
      return ::fdatasync(op.fd) == 0 ? 0 : -errno;
    case OpKind::kFsync:
      return ::fsync(op.fd) == 0 ? 0 : -errno;
    case OpKind::kFallocate:
      return ::fallocate(op.fd, 0, 0, static_cast<off_t>(op.size)) == 0 ? 0 : -errno;
    case OpKind::kRead: {
      for (;;) {
        const ssize_t n = ::pread(op.fd, const_cast<std::byte*>(op.data), op.size,
                                  static_cast<off_t>(op.position));
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? -errno : static_cast<int32_t>(n);
      }
    }
    case OpKind::kOpen: {
      const int fd = ::open(op.path.c_str(), op.flags, static_cast<mode_t>(op.position));
      return fd >= 0 ? fd : -errno;
    }
    case OpKind::kFtruncate:
      return ::ftruncate(op.fd, static_cast<off_t>(op.size)) == 0 ? 0 : -errno;
    case OpKind::kUnlink:
      return ::unlink(op.path.c_str()) == 0 ? 0 : -errno;
  }
  SLUICE_UNREACHABLE();
}

void IoRing::worker_loop() {
  for (;;) {
    Op* op;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [this] { return stopping_ || !work_.empty(); });
      if (work_.empty()) return;  // stopping, nothing left
      op = work_.front();
      work_.pop_front();
    }
    op->result = run_blocking(*op);
    {
      std::lock_guard lock(mutex_);
      done_.push_back(op);
    }
    done_cv_.notify_all();
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(event_fd_, &one, sizeof(one));
  }
}

}  // namespace sluice::log
