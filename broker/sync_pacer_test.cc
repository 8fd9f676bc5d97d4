// The shard's pacing of Raft persists, on a real io_context.
#include "broker/sync_pacer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace sluice::broker {
namespace {

using Clock = std::chrono::steady_clock;

TEST(SyncPacer, ABurstGoesAtOnceAndTheRestWaitTheirTurnsInOrder) {
  boost::asio::io_context io;
  SyncPacer pacer(io, /*rate=*/100, /*burst=*/3);  // a turn every 10 ms past the burst
  const Clock::time_point t0 = Clock::now();
  std::vector<int> order;
  std::vector<Clock::time_point> when;
  int at_once = 0;
  for (int i = 0; i < 8; ++i) {
    if (pacer.admit([&, i] {
          order.push_back(i);
          when.push_back(Clock::now());
        })) {
      ++at_once;
    }
  }
  EXPECT_EQ(at_once, 3);
  EXPECT_EQ(pacer.waits(), 5u);
  EXPECT_EQ(pacer.waiting(), 5u);
  io.run();  // returns once every waiter ran (nothing else is queued)
  EXPECT_EQ(order, (std::vector<int>{3, 4, 5, 6, 7}));
  EXPECT_EQ(pacer.waiting(), 0u);
  // The k-th waiter's token accrues k * 10 ms after the start at the earliest (a slow machine
  // only makes it later).
  for (size_t k = 0; k < when.size(); ++k) {
    EXPECT_GE(when[k] - t0, std::chrono::milliseconds(10) * static_cast<int>(k + 1) -
                                std::chrono::microseconds(500))
        << "waiter " << k;
  }
}

TEST(SyncPacer, BelowTheRateNothingWaits) {
  boost::asio::io_context io;
  SyncPacer pacer(io, /*rate=*/1000, /*burst=*/1);
  for (int i = 0; i < 5; ++i) {
    // A turn accrues every 1 ms: asking every 2 ms always finds one.
    const Clock::time_point until = Clock::now() + std::chrono::milliseconds(2);
    while (Clock::now() < until) {
    }
    EXPECT_TRUE(pacer.admit([] { FAIL() << "should have gone at once"; })) << "ask " << i;
  }
  EXPECT_EQ(pacer.waits(), 0u);
  io.run();
}

TEST(SyncPacer, APacerDestroyedWithWaitersLeavesNothingBehind) {
  boost::asio::io_context io;
  bool ran = false;
  {
    SyncPacer pacer(io, /*rate=*/10, /*burst=*/1);
    EXPECT_TRUE(pacer.admit([] {}));
    EXPECT_FALSE(pacer.admit([&] { ran = true; }));
  }
  io.run();  // the cancelled timer's handler must not touch the destroyed pacer (ASan)
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace sluice::broker
