#include "replication/raft/node.h"

#include <gtest/gtest.h>

#include "replication/sim/world.h"

namespace sluice::raft {
namespace {

using sim::World;

World manual_world(int n) {
  World w({.seed = 7, .manual = true});
  w.bootstrap(n);
  return w;
}

TEST(RaftNode, SingleNodeElectsItselfAndCommits) {
  World w = manual_world(1);
  w.node(NodeId{1})->campaign();
  w.process_ready(w.replica(NodeId{1}));
  ASSERT_EQ(w.node(NodeId{1})->role(), Role::kLeader);
  auto idx = w.propose(NodeId{1}, Payload::copy_of("a"));
  ASSERT_TRUE(idx.has_value());
  EXPECT_EQ(*w.node(NodeId{1})->status().commit, **idx);
  EXPECT_TRUE(w.checker().ok()) << w.checker().failure();
}

}  // namespace
}  // namespace sluice::raft
