// A shard: one thread running one Boost.Asio io_context. Per-partition state belongs to exactly
// one shard and is touched only by its thread; other shards reach it by posting a value.
#pragma once

#include <pthread.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

namespace sluice::broker {

class Shard {
 public:
  explicit Shard(uint32_t id) : id_(id), work_(boost::asio::make_work_guard(ctx_)) {}
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard() { stop(); }

  uint32_t id() const { return id_; }
  boost::asio::io_context& context() { return ctx_; }
  bool on_this_thread() const { return std::this_thread::get_id() == thread_id_; }
  // From start() until its thread leaves the context (stop() drained it, or stop_now()).
  bool running() const { return running_.load(); }

  void start() {
    running_ = true;
    thread_ = std::thread([this] {
      thread_id_ = std::this_thread::get_id();
      // Named for tools (top -H, perf, the syscall test in tests/test_hot_path.py).
      const std::string name = "sluice-shard-" + std::to_string(id_);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      ctx_.run();
      running_ = false;
    });
  }
  // Lets the queued work finish, then joins the thread.
  void stop() {
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }
  void stop_now() {
    ctx_.stop();
    if (thread_.joinable()) thread_.join();
  }

  template <class F>
  void post(F&& f) {
    boost::asio::post(ctx_, std::forward<F>(f));
  }

 private:
  uint32_t id_;
  boost::asio::io_context ctx_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::thread::id thread_id_;
  std::atomic<bool> running_{false};
};

}  // namespace sluice::broker
