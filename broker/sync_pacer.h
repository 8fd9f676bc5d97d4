// Paces a shard's Raft persists that carry new entries: each ends in an fdatasync, and group
// commit only shares one among the proposals that arrived while the last one ran. With small
// requests at a steady rate (linger 0, a few records per request) that is one fdatasync per
// one or two requests, thousands per second, each costing the machine far more than its
// latency says (on the VMs measured, a sync costs the host enough that the guest's vCPUs
// stall for 5-10 ms at a time: docs/benchmarks.md "Pacing fdatasyncs"). Past `rate` persists a
// second (bursts of `burst` go at once) a persist waits for its turn, and takes everything
// proposed meanwhile with it: fewer, larger syncs, each proposal waiting at most about
// 1/rate more. Below the rate nothing waits. Touched only on its shard's thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace sluice::broker {

// A shard's bucket: 50 ms worth of persists (at least 4) go at once after a quieter spell, so
// that a rate near the limit with the jitter of real arrivals does not wait; only a rate above
// it for longer does.
inline double sync_pacer_burst(double rate) { return std::max(4.0, rate * 0.05); }

class SyncPacer {
 public:
  using Clock = std::chrono::steady_clock;

  SyncPacer(boost::asio::io_context& io, double rate, double burst)
      : io_(io), rate_(rate), burst_(std::max(1.0, burst)), tokens_(burst_), timer_(io) {}

  // True: go now. False: `go` runs on this shard when it is the caller's turn (in the order
  // asked), from a handler of its own.
  bool admit(std::function<void()> go) {
    refill();
    if (waiting_.empty() && tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return true;
    }
    waiting_.push_back(std::move(go));
    ++waits_;
    arm();
    return false;
  }

  uint64_t waits() const { return waits_; }  // persists that waited for their turn
  size_t waiting() const { return waiting_.size(); }

 private:
  void refill() {
    const Clock::time_point now = Clock::now();
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
  }
  // The timer fires when the first waiter's token has accrued.
  void arm() {
    if (armed_ || waiting_.empty()) return;
    armed_ = true;
    const double need_s = std::max(0.0, (1.0 - tokens_) / rate_);
    timer_.expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(need_s)));
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;  // cancelled: this pacer may be gone
      armed_ = false;
      refill();
      while (!waiting_.empty() && tokens_ >= 1.0) {
        tokens_ -= 1.0;
        boost::asio::post(io_, std::move(waiting_.front()));
        waiting_.pop_front();
      }
      arm();
    });
  }

  boost::asio::io_context& io_;
  const double rate_;
  const double burst_;
  double tokens_;
  Clock::time_point last_ = Clock::now();
  std::deque<std::function<void()>> waiting_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  uint64_t waits_ = 0;
};

}  // namespace sluice::broker
