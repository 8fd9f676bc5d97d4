// The log cleaner: one thread that runs the compaction passes (log/compaction.h) of every
// shard's compacted partitions, as Kafka's log.cleaner.threads=1 does. A shard hands it a pass
// (what it read of the partition's closed segments); the thread maps keys and writes the
// cleaned segments beside the originals, and posts each one back to the shard, which installs
// it (renames only). So neither the reading, the decompression, the digests nor the writing
// of a compaction happen on a shard thread, and a pass holds at most
// --log.cleaner.dedupe.buffer.size of map plus two I/O buffers. The thread runs at nice 10, so
// that on a busy machine the shards' request work goes first.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace sluice::broker {

class LogCleaner {
 public:
  LogCleaner();
  ~LogCleaner();  // stop()
  LogCleaner(const LogCleaner&) = delete;
  LogCleaner& operator=(const LogCleaner&) = delete;

  // Runs `job(cancel)` on the cleaner thread, after the jobs submitted before it. `cancel` is
  // set when the job should give up (its partition goes, or the cleaner stops): the job checks
  // it between bounded steps.
  using Job = std::function<void(const std::atomic<bool>& cancel)>;
  void submit(std::shared_ptr<std::atomic<bool>> cancel, Job job);
  // Jobs not started are dropped, the running one is cancelled and waited for. Idempotent.
  void stop();
  size_t pending() const;  // submitted and not finished

 private:
  void run();

  struct Item {
    std::shared_ptr<std::atomic<bool>> cancel;
    Job job;
  };
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::shared_ptr<std::atomic<bool>> running_;  // the running job's cancel flag
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sluice::broker
