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
  EXPECT_FALSE(pr.maybe_decrease(6, 0));  // at or below match: stale
  EXPECT_TRUE(pr.maybe_decrease(8, 0));
  EXPECT_EQ(pr.next, 7u);
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
