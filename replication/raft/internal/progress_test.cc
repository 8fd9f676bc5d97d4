#include "replication/raft/internal/progress.h"

#include <gtest/gtest.h>

namespace sluice::raft::detail {
namespace {

TEST(RaftProgress, ProbeSendsOneAppendAtATime) {
  Progress pr;
  pr.next = 5;
  EXPECT_FALSE(pr.paused());
  pr.sent_entries(7);
  EXPECT_TRUE(pr.paused());
  EXPECT_EQ(pr.next, 5u);  // probing does not move next optimistically
  EXPECT_TRUE(pr.maybe_update(7));
  EXPECT_FALSE(pr.paused());
}

TEST(RaftProgress, ReplicateWindowIsBounded) {
  Progress pr;
  pr.inflight_max = 2;
  pr.match = 4;
  pr.become_replicate();
  pr.sent_entries(6);
  pr.sent_entries(8);
  EXPECT_EQ(pr.next, 9u);
  EXPECT_TRUE(pr.paused());
  EXPECT_TRUE(pr.maybe_update(6));
  pr.free_up_to(6);
  EXPECT_FALSE(pr.paused());
  EXPECT_FALSE(pr.maybe_update(5));  // stale acknowledgement
}

TEST(RaftProgress, RejectionsUseTheHintAndIgnoreStaleOnes) {
  Progress pr;
  pr.next = 11;                           // probing prev index 10
  EXPECT_FALSE(pr.maybe_decrease(7, 3));  // answers an older probe
  EXPECT_TRUE(pr.maybe_decrease(10, 3));
  EXPECT_EQ(pr.next, 4u);
  pr.match = 6;
  pr.become_replicate();
  pr.sent_entries(9);
  EXPECT_FALSE(pr.maybe_decrease(6, 6));  // at or below match, the follower holds match: stale
  EXPECT_TRUE(pr.maybe_decrease(8, 6));
  EXPECT_EQ(pr.next, 7u);
}

// Fault suite bug 2: a follower whose disk lost acknowledged entries was never caught up: a
// rejection at or below `match` was taken as stale, and probes restarted at `match + 1`.
TEST(RaftProgress, FollowerThatLostAcknowledgedEntriesIsProbedFromItsHint) {
  Progress pr;
  pr.match = 10;
  pr.next = 11;
  pr.become_replicate();
  pr.sent_entries(12);
  EXPECT_TRUE(pr.maybe_decrease(10, 5));  // it no longer holds 10: its log ends at 5
  EXPECT_EQ(pr.match, 5u);
  EXPECT_EQ(pr.next, 6u);
  EXPECT_EQ(pr.lost_entries, 1u);
  EXPECT_TRUE(pr.inflight.empty());

  Progress probe;  // the same answer to a probe at `match`
  probe.match = 10;
  probe.next = 11;
  EXPECT_TRUE(probe.maybe_decrease(10, 5));
  EXPECT_EQ(probe.match, 5u);
  EXPECT_EQ(probe.next, 6u);
  EXPECT_FALSE(probe.maybe_decrease(9, 2));  // not an answer to the latest probe: stale
  EXPECT_EQ(probe.match, 5u);
}

TEST(RaftProgress, TheBytesInFlightBoundPausesAfterTheAppendThatReachesIt) {
  Progress pr;
  pr.inflight_max = 10;
  pr.inflight_bytes_max = 1000;
  pr.become_replicate();
  pr.sent_entries(5, 600);
  EXPECT_FALSE(pr.paused());
  pr.sent_entries(9, 600);  // one append may go beyond the bound
  EXPECT_TRUE(pr.paused());
  EXPECT_EQ(pr.inflight_bytes, 1200u);
  pr.free_up_to(5);
  EXPECT_FALSE(pr.paused());
  EXPECT_EQ(pr.inflight_bytes, 600u);
  pr.sent_entries(12, 5000);  // a single append larger than the bound still goes
  EXPECT_TRUE(pr.paused());
  pr.free_first();  // a heartbeat answered while paused frees the oldest
  EXPECT_EQ(pr.inflight_bytes, 5000u);
  pr.become_probe();
  EXPECT_EQ(pr.inflight_bytes, 0u);
  EXPECT_TRUE(pr.inflight_sizes.empty());
}

TEST(RaftProgress, SnapshotStateWaitsThenResumesAfterIt) {
  Progress pr;
  pr.become_snapshot(100);
  EXPECT_TRUE(pr.paused());
  pr.become_probe();
  EXPECT_EQ(pr.next, 101u);
}

}  // namespace
}  // namespace sluice::raft::detail
