#include "broker/cleaner.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

namespace sluice::broker {

LogCleaner::LogCleaner() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sluice-cleaner");
    // Below the shards: on a busy machine the scheduler runs request work first (Linux nice
    // values are per thread). Best effort: a failure leaves the default priority.
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    run();
  });
}

LogCleaner::~LogCleaner() { stop(); }

void LogCleaner::submit(std::shared_ptr<std::atomic<bool>> cancel, Job job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back({std::move(cancel), std::move(job)});
  }
  cv_.notify_one();
}

void LogCleaner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
    if (running_) running_->store(true);
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

size_t LogCleaner::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + (running_ ? 1 : 0);
}

void LogCleaner::run() {
  while (true) {
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      running_ = item.cancel;
    }
    item.job(*item.cancel);
    std::lock_guard lock(mu_);
    running_.reset();
  }
}

}  // namespace sluice::broker
