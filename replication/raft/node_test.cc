// Unit tests of the Raft core, one behaviour each. Multi-node tests run in the simulator's
// manual mode (messages wait in a queue until delivered) with the safety checker on.
#include "replication/raft/node.h"

#include <gtest/gtest.h>

#include "replication/sim/world.h"

namespace sluice::raft {
namespace {

using sim::World;

constexpr NodeId n1{1}, n2{2}, n3{3}, n4{4};

std::unique_ptr<World> manual_world(int n, Config cfg = {}) {
  auto w =
      std::make_unique<World>(sim::WorldOptions{.seed = 7, .manual = true, .node_config = cfg});
  w->bootstrap(n);
  return w;
}

void elect(World& w, NodeId id) {
  w.node(id)->campaign();
  w.process_ready(w.replica(id));
  w.stabilize();
  ASSERT_EQ(w.node(id)->role(), Role::kLeader);
}

size_t count(const std::vector<Message>& msgs, MessageType type, NodeId to = kNoNode) {
  return std::count_if(msgs.begin(), msgs.end(), [&](const Message& m) {
    return m.type == type && (to == kNoNode || m.to == to);
  });
}

// Drives a lone node by hand: take_ready, "persist", advance.
Ready cycle(Node& node) {
  Ready rd = node.take_ready();
  node.advance(rd.persisted());
  return rd;
}

TEST(RaftNode, SingleNodeCommitsOnlyWhatIsDurable) {
  Node node({.id = n1}, bootstrap({{n1}}));
  node.campaign();
  ASSERT_EQ(node.role(), Role::kLeader);
  (void)cycle(node);
  auto idx = node.propose(Payload::copy_of("a"));
  ASSERT_TRUE(idx.has_value());
  Ready rd = node.take_ready();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_TRUE(rd.must_sync);
  EXPECT_LT(*node.status().commit, **idx);  // not durable yet, so not committed
  node.advance(rd.persisted());
  EXPECT_EQ(*node.status().commit, **idx);
  Ready next = cycle(node);
  ASSERT_EQ(next.committed.size(), 1u);
  EXPECT_EQ(next.committed[0].data.text(), "a");
}

TEST(RaftNode, AsyncWritesOverlapAndCommitOnlyWhatIsReportedDurable) {
  // A leader's driver advances its Readies before their entries are durable (Persisted{}),
  // takes the next Ready meanwhile, and reports them with persisted() in order.
  Node node({.id = n1}, bootstrap({{n1}}));
  node.campaign();
  ASSERT_EQ(node.role(), Role::kLeader);
  (void)cycle(node);
  const LogIndex a = *node.propose(Payload::copy_of("a"));
  Ready first = node.take_ready();
  ASSERT_EQ(first.entries.size(), 1u);
  node.advance(Persisted{});
  const LogIndex b = *node.propose(Payload::copy_of("b"));
  ASSERT_TRUE(node.has_ready());  // the next write need not wait for the first
  Ready second = node.take_ready();
  ASSERT_EQ(second.entries.size(), 1u);
  EXPECT_EQ(*second.entries[0].index, *b);
  node.advance(Persisted{});
  EXPECT_LT(*node.status().commit, *a);  // nothing durable yet
  EXPECT_FALSE(node.has_ready());
  node.persisted(first.persisted());
  EXPECT_EQ(*node.status().commit, *a);
  Ready applied = cycle(node);
  ASSERT_EQ(applied.committed.size(), 1u);  // only what is durable is handed out
  EXPECT_EQ(applied.committed[0].data.text(), "a");
  node.persisted(second.persisted());
  EXPECT_EQ(*node.status().commit, *b);
  applied = cycle(node);
  ASSERT_EQ(applied.committed.size(), 1u);
  EXPECT_EQ(applied.committed[0].data.text(), "b");
  node.persisted(first.persisted());  // a late, repeated report changes nothing
  EXPECT_EQ(*node.status().commit, *b);
}

TEST(RaftNode, AsyncWritesHoldBackTheApplyOfEntriesCommittedByTheFollowers) {
  // Followers may acknowledge a leader's entries (and commit them) before the leader has
  // them on its own disk: they are not handed out to apply until the leader does.
  auto w = manual_world(3);
  elect(*w, n1);
  Node& leader = *w->node(n1);
  ASSERT_TRUE(leader.propose(Payload::copy_of("x")).has_value());
  Ready rd = leader.take_ready();
  ASSERT_EQ(rd.entries.size(), 1u);
  const LogIndex x = rd.entries[0].index;
  leader.advance(Persisted{});
  for (const Message& m : rd.messages) w->replica(m.to).node->step(m);
  for (NodeId f : {n2, n3}) w->process_ready(w->replica(f));
  w->deliver(nullptr, n1);  // their acknowledgements reach the leader
  EXPECT_GE(*leader.status().commit, *x);  // a quorum without the leader
  while (leader.has_ready()) {
    Ready more = leader.take_ready();
    for (const Entry& e : more.committed) EXPECT_LT(*e.index, *x);
    leader.advance(more.persisted());
  }
  leader.persisted(rd.persisted());
  ASSERT_TRUE(leader.has_ready());
  Ready applied = leader.take_ready();
  ASSERT_FALSE(applied.committed.empty());
  EXPECT_EQ(*applied.committed.back().index, *x);
  leader.advance(applied.persisted());
}

TEST(RaftNode, ALoneLeaderWithEverythingDurableAndAppliedIsAlone) {
  Node node({.id = n1}, bootstrap({{n1}}));
  EXPECT_FALSE(node.alone());  // a follower
  node.campaign();
  EXPECT_FALSE(node.alone());  // its no-op is not durable yet
  (void)cycle(node);
  (void)cycle(node);
  EXPECT_TRUE(node.alone());
  ASSERT_TRUE(node.propose(Payload::copy_of("a")).has_value());
  EXPECT_FALSE(node.alone());  // handed out, not durable
  Ready rd = node.take_ready();
  EXPECT_FALSE(node.alone());
  node.advance(rd.persisted());
  EXPECT_FALSE(node.alone());  // committed, not applied
  (void)cycle(node);
  EXPECT_TRUE(node.alone());
  // A learner joining: from the proposal of the change on, ticks matter again.
  ASSERT_TRUE(node.propose_conf(ConfState{.voters = {n1}, .learners = {n2}}).has_value());
  EXPECT_FALSE(node.alone());
  (void)cycle(node);
  (void)cycle(node);
  EXPECT_TRUE(node.status().conf.is_learner(n2));
  EXPECT_FALSE(node.alone());
}

TEST(RaftNode, OnlyALeaderAloneInItsGroupIsAlone) {
  auto w = manual_world(3);
  elect(*w, n1);
  EXPECT_FALSE(w->node(n1)->alone());
  EXPECT_FALSE(w->node(n2)->alone());
}

// ---- quiescence (Config::quiesce) ----

Config quiescing() {
  Config c;
  c.quiesce = true;
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  return c;
}

// Ticks every up node `ticks` times, delivering everything after each round.
void tick_all(World& w, int ticks) {
  for (int t = 0; t < ticks; ++t) {
    for (const auto& [id, r] : w.replicas()) w.tick(id);
    w.stabilize();
  }
}

TEST(RaftNode, AnIdleGroupWhereEveryoneHasEverythingQuiesces) {
  auto w = manual_world(3, quiescing());
  elect(*w, n1);
  const Term term = w->node(n1)->term();
  w->tick(n1);  // a heartbeat: everyone acknowledged the no-op, so it is the last one
  std::vector<std::string> trace;
  w->stabilize(&trace);
  ASSERT_EQ(trace.size(), 4u);
  EXPECT_EQ(trace[0], "1->2 Heartbeat term=2 commit=2 quiesce");
  for (NodeId id : {n1, n2, n3}) EXPECT_TRUE(w->node(id)->quiesced()) << *id;
  // Quiesced: ticks send nothing, and nobody campaigns however long it lasts.
  const uint64_t before = w->delivered();
  for (int t = 0; t < 100; ++t) {
    for (NodeId id : {n1, n2, n3}) w->tick(id);
  }
  EXPECT_EQ(w->in_flight(), 0u);
  EXPECT_EQ(w->delivered(), before);
  EXPECT_EQ(w->node(n1)->role(), Role::kLeader);
  EXPECT_EQ(w->node(n2)->term(), term);
  EXPECT_EQ(w->node(n3)->term(), term);
}

TEST(RaftNode, AProposalEndsTheQuiescenceAndTheGroupQuiescesAgain) {
  auto w = manual_world(3, quiescing());
  elect(*w, n1);
  tick_all(*w, 1);
  ASSERT_TRUE(w->node(n2)->quiesced());
  auto idx = w->propose(n1, Payload::copy_of("x"));
  ASSERT_TRUE(idx.has_value());
  EXPECT_FALSE(w->node(n1)->quiesced());
  w->stabilize();
  EXPECT_FALSE(w->node(n2)->quiesced());  // the append woke the followers
  EXPECT_EQ(*w->node(n2)->status().commit, **idx);
  tick_all(*w, 2);
  for (NodeId id : {n1, n2, n3}) EXPECT_TRUE(w->node(id)->quiesced()) << *id;
  EXPECT_EQ(*w->node(n3)->status().applied, **idx);
}

TEST(RaftNode, ALeaderWithAFollowerBehindKeepsHeartbeating) {
  auto w = manual_world(3, quiescing());
  elect(*w, n1);
  w->cut(n1, n3);
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("x")).has_value());
  w->stabilize();
  tick_all(*w, 5);
  EXPECT_FALSE(w->node(n1)->quiesced());  // n3 lacks the entry
  EXPECT_FALSE(w->node(n3)->quiesced());
  w->heal();
  tick_all(*w, 12);  // n3 is caught up, acknowledges in a new check-quorum period
  for (NodeId id : {n1, n2, n3}) EXPECT_TRUE(w->node(id)->quiesced()) << *id;
}

TEST(RaftNode, QuiescedFollowersOfADeadLeaderCampaignOnlyOnceToldItIsSilent) {
  auto w = manual_world(3, quiescing());
  elect(*w, n1);
  tick_all(*w, 1);
  w->crash(n1);
  tick_all(*w, 100);  // no heartbeats, and no election: the driver watches liveness
  EXPECT_EQ(w->node(n2)->role(), Role::kFollower);
  EXPECT_EQ(w->node(n3)->role(), Role::kFollower);
  w->node(n2)->peers_silent();
  w->node(n3)->peers_silent();
  EXPECT_FALSE(w->node(n2)->quiesced());
  tick_all(*w, 2 * 10 + 2);
  Node* l = w->leader();
  ASSERT_NE(l, nullptr);
  EXPECT_NE(l->id(), n1);
  EXPECT_GT(*l->term(), 1u);
}

TEST(RaftNode, APreVoteThatEndedTheQuiescenceDoesNotDelayTheSilentLeadersSuccessor) {
  auto w = manual_world(3, quiescing());
  elect(*w, n1);
  tick_all(*w, 1);
  w->crash(n1);
  w->node(n2)->peers_silent();  // n2's broker noticed first, and campaigns
  for (int t = 0; t < 30 && w->node(n2)->role() == Role::kFollower; ++t) w->tick(n2);
  w->stabilize();  // n3, still in its lease, refuses and is no longer quiesced
  EXPECT_FALSE(w->node(n3)->quiesced());
  EXPECT_EQ(w->leader(), nullptr);
  w->node(n3)->peers_silent();  // n3's broker noticed too: the lease is over at once
  tick_all(*w, 2 * 10 + 2);
  ASSERT_NE(w->leader(), nullptr);
}

TEST(RaftNode, AQuiescedLeaderToldItsQuorumIsSilentStepsDownUnlessItHearsBack) {
  auto w = manual_world(3, quiescing());
  elect(*w, n1);
  tick_all(*w, 1);
  ASSERT_TRUE(w->node(n1)->quiesced());
  w->isolate(n1);
  w->node(n1)->peers_silent();
  for (int t = 0; t < 10; ++t) w->tick(n1);
  EXPECT_NE(w->node(n1)->role(), Role::kLeader);  // check-quorum
  // With its followers answering, the same wake-up changes nothing.
  auto w2 = manual_world(3, quiescing());
  elect(*w2, n1);
  tick_all(*w2, 1);
  w2->node(n1)->peers_silent();
  tick_all(*w2, 25);
  EXPECT_EQ(w2->node(n1)->role(), Role::kLeader);
  EXPECT_TRUE(w2->node(n1)->quiesced());
}

TEST(RaftNode, ElectionTimeoutComesFromTheSeed) {
  auto ticks_to_campaign = [](uint64_t seed) {
    Node node({.id = n1, .seed = seed}, bootstrap({{n1, n2, n3}}));
    int ticks = 0;
    while (node.role() == Role::kFollower) {
      node.tick();
      ++ticks;
    }
    return ticks;
  };
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const int t = ticks_to_campaign(seed);
    EXPECT_GE(t, 10);
    EXPECT_LT(t, 20);
    EXPECT_EQ(t, ticks_to_campaign(seed));  // deterministic
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 3u);  // and randomized
}

// Ticks until the node campaigns (sends pre-votes); returns how many ticks that took.
int ticks_until_campaign(Node& node) {
  for (int ticks = 1; ticks < 1000; ++ticks) {
    node.tick();
    if (!node.has_ready()) continue;
    const Ready rd = cycle(node);
    if (count(rd.messages, MessageType::kPreVote) > 0) return ticks;
  }
  return 1000;
}

TEST(RaftNode, FollowersOfALostLeaderTakeTurnsThenGoBackToRandom) {
  // Both followers of n1 heard its last heartbeat; n1 then falls silent. Their timeouts lie in
  // disjoint windows after every lease ran out, so one campaigns alone (no split vote), and
  // which one depends on the group (ballot_key), so that a broker's groups spread their new
  // leaders. Default election_ticks = 10: windows of (10 - 1) / 2 = 4 ticks, the last free.
  std::map<NodeId, int> first_count;
  for (uint64_t key = 0; key < 64; ++key) {
    std::map<NodeId, int> at;
    for (NodeId id : {n2, n3}) {
      Node node({.id = id, .seed = key * 31 + static_cast<uint64_t>(*id), .ballot_key = key},
                bootstrap({{n1, n2, n3}}));
      node.step(Message{.type = MessageType::kHeartbeat, .from = n1, .to = id,
                        .term = node.term()});
      ASSERT_EQ(node.status().leader, n1);
      at[id] = ticks_until_campaign(node);
      EXPECT_EQ(node.role(), Role::kPreCandidate);
      EXPECT_GE(at[id], 11) << "key " << key;  // a tick after every follower's lease
      EXPECT_LT(at[id], 20) << "key " << key;
      // It did not win: the next timeout is the plain random one again, [10, 20).
      const int again = ticks_until_campaign(node);
      EXPECT_GE(again, 10);
      EXPECT_LT(again, 20);
    }
    const NodeId first = at[n2] < at[n3] ? n2 : n3;
    const NodeId second = first == n2 ? n3 : n2;
    EXPECT_GE(at[second] - at[first], 2) << "key " << key;  // a free tick between the turns
    EXPECT_LE(at[first], 13) << "key " << key;              // the first turn: ticks 11-13
    ++first_count[first];
  }
  EXPECT_GT(first_count[n2], 16);  // spread by the ballot key
  EXPECT_GT(first_count[n3], 16);
}

TEST(RaftNode, WithNoLeaderHeardTheTimeoutIsRandom) {
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Node node({.id = n2, .seed = seed}, bootstrap({{n1, n2, n3}}));
    const int t = ticks_until_campaign(node);
    EXPECT_GE(t, 10);
    EXPECT_LT(t, 20);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 5u);
}

TEST(RaftNode, VoteIsPersistedBeforeTheGrantIsSent) {
  Node node({.id = n2}, bootstrap({{n1, n2, n3}}));
  Message vote{.type = MessageType::kVote,
               .from = n1,
               .to = n2,
               .term = Term{2},
               .log_term = Term{1},
               .index = LogIndex{1}};
  node.step(vote);
  Ready rd = node.take_ready();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->vote, n1);
  EXPECT_EQ(*rd.hard_state->term, 2u);
  EXPECT_TRUE(rd.must_sync);
  ASSERT_EQ(count(rd.messages, MessageType::kVoteResp), 1u);
  EXPECT_FALSE(rd.messages[0].reject);
  node.advance(rd.persisted());
  // A restart from the persisted hard state does not vote again in that term.
  Node restarted({.id = n2},
                 RestoredState{.hard_state = *rd.hard_state,
                               .entries = bootstrap({{n1, n2, n3}}).entries});
  vote.from = n3;
  restarted.step(vote);
  Ready again = restarted.take_ready();
  ASSERT_EQ(count(again.messages, MessageType::kVoteResp), 1u);
  EXPECT_TRUE(again.messages[0].reject);
}

TEST(RaftNode, StaleLogDoesNotGetVotes) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("x")).has_value());
  w->stabilize();
  w->heal();
  w->crash(n1);
  w->node(n3)->campaign();  // last entry older than 2's
  w->process_ready(w->replica(n3));
  for (int i = 0; i < 50; ++i) w->tick(n2);  // let 2's lease expire
  w->stabilize();
  EXPECT_NE(w->node(n3)->role(), Role::kLeader);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftNode, PreVoteKeepsTermOfPartitionedNode) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  for (int i = 0; i < 100; ++i) w->tick(n3);
  w->stabilize();
  EXPECT_EQ(*w->node(n3)->term(), 2u);
  EXPECT_EQ(w->node(n3)->role(), Role::kPreCandidate);
}

TEST(RaftNode, WithoutPreVoteTheTermRises) {
  auto w = manual_world(3, {.pre_vote = false});
  elect(*w, n1);
  w->isolate(n3);
  for (int i = 0; i < 100; ++i) w->tick(n3);
  EXPECT_GT(*w->node(n3)->term(), 2u);
}

TEST(RaftNode, CheckQuorumStepsDownPartitionedLeader) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n1);
  for (int i = 0; i < 20 && w->node(n1)->role() == Role::kLeader; ++i) w->tick(n1);
  EXPECT_EQ(w->node(n1)->role(), Role::kFollower);
  EXPECT_EQ(w->node(n1)->leader(), kNoNode);
}

TEST(RaftNode, LeaseIgnoresDisruptiveVote) {
  auto w = manual_world(3, {.pre_vote = false});
  elect(*w, n1);
  w->node(n3)->campaign();  // higher term, but 2 heard from 1 just now
  w->process_ready(w->replica(n3));
  w->stabilize();
  EXPECT_EQ(w->node(n1)->role(), Role::kLeader);
  EXPECT_EQ(*w->node(n2)->term(), 2u);
}

TEST(RaftNode, ProposalsBetweenReadiesShareOneAppend) {
  auto w = manual_world(3);
  elect(*w, n1);
  Node& leader = *w->node(n1);
  Payload p = Payload::copy_of("record-batch");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(leader.propose(p).has_value());
  Ready rd = leader.take_ready();
  EXPECT_EQ(rd.entries.size(), 5u);
  ASSERT_EQ(count(rd.messages, MessageType::kAppend, n2), 1u);  // batched
  const Message& app = *std::find_if(rd.messages.begin(), rd.messages.end(),
                                     [](const Message& m) { return m.to == n2; });
  ASSERT_EQ(app.entries.size(), 5u);
  EXPECT_TRUE(app.entries[0].data.shares_buffer_with(p));  // referenced, not copied
  EXPECT_TRUE(rd.entries[0].data.shares_buffer_with(p));
  leader.advance(rd.persisted());
}

TEST(RaftNode, PipelineStopsAtInflightLimit) {
  auto w = manual_world(3, {.max_inflight_msgs = 3, .max_msg_bytes = 1});
  elect(*w, n1);
  Node& leader = *w->node(n1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(leader.propose(Payload::copy_of("xx")).has_value());
  Ready rd = leader.take_ready();
  EXPECT_EQ(count(rd.messages, MessageType::kAppend, n2), 3u);  // one entry each, 3 in flight
  EXPECT_TRUE(leader.progress(n2)->paused());
  leader.advance(rd.persisted());
  for (const Message& m : rd.messages) w->replica(m.to).node->step(m);  // deliver by hand
  for (NodeId f : {n2, n3}) w->process_ready(w->replica(f));
  w->stabilize();
  EXPECT_EQ(*leader.status().commit, 12u);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftNode, FastBackoffSkipsAWholeTermInOneRoundTrip) {
  auto w = manual_world(3, {.check_quorum = false});
  elect(*w, n1);
  w->isolate(n1);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(w->propose(n1, Payload::copy_of("lost")).has_value());
  elect(*w, n2);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(w->propose(n2, Payload::copy_of("kept")).has_value());
  w->stabilize();
  // 3 takes over (term 4) and probes 1 at its last index, where 1 holds a term-2 entry.
  ASSERT_TRUE(w->node(n2)->transfer_leadership(n3).has_value());
  w->process_ready(w->replica(n2));
  w->stabilize();
  ASSERT_EQ(w->node(n3)->role(), Role::kLeader);
  w->heal();
  w->tick(n3);
  std::vector<std::string> trace;
  w->stabilize(&trace);
  const auto rejections = std::count_if(trace.begin(), trace.end(), [](const std::string& t) {
    return t.starts_with("1->3 AppResp") && t.find("rejected") != std::string::npos;
  });
  EXPECT_EQ(rejections, 1);  // not 20: the hint skips all of term 2
  EXPECT_EQ(w->node(n1)->status().last_index, w->node(n3)->status().last_index);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftNode, BackpressureRefusesProposalsPastTheLimit) {
  auto w = manual_world(3, {.max_uncommitted_bytes = 10});
  elect(*w, n1);
  w->isolate(n1);
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("123456")).has_value());
  auto r = w->propose(n1, Payload::copy_of("123456"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Errc::kTooManyUncommitted);
  w->heal();
  w->tick(n1);
  w->stabilize();
  EXPECT_TRUE(w->propose(n1, Payload::copy_of("123456")).has_value());
}

TEST(RaftNode, TransferLeadershipCatchesUpTheTarget) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("a")).has_value());
  w->stabilize();
  w->heal();
  ASSERT_TRUE(w->node(n1)->transfer_leadership(n3).has_value());
  EXPECT_EQ(w->propose(n1, Payload::copy_of("b")).error(), Errc::kTransferring);
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_EQ(w->node(n3)->role(), Role::kLeader);
  EXPECT_EQ(w->node(n1)->leader(), n3);
}

// A transfer's TimeoutNow reaching the target while it pre-votes (it had not heard the
// leader for an election timeout) still makes it campaign: a pre-candidate is in the leader's
// term. It was dropped, and the broker's handoffs to the preferred replica failed over and
// over when they met its pre-vote rounds.
TEST(RaftNode, TransferReachesATargetThatIsPreVoting) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  for (int i = 0; i < 100; ++i) w->tick(n3);
  ASSERT_EQ(w->node(n3)->role(), Role::kPreCandidate);
  const uint64_t term = *w->node(n1)->term();
  ASSERT_EQ(*w->node(n3)->term(), term);
  w->heal();
  ASSERT_TRUE(w->node(n1)->transfer_leadership(n3).has_value());
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_EQ(w->node(n3)->role(), Role::kLeader);
  EXPECT_EQ(*w->node(n3)->term(), term + 1);
  EXPECT_EQ(w->node(n1)->leader(), n3);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftNode, TransferIsAbandonedAfterAnElectionTimeout) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  ASSERT_TRUE(w->node(n1)->transfer_leadership(n3).has_value());
  for (int i = 0; i < 10; ++i) w->tick(n1);
  w->stabilize();
  EXPECT_EQ(w->node(n1)->status().transferee, kNoNode);
  EXPECT_TRUE(w->propose(n1, Payload::copy_of("b")).has_value());
}

ConfState with(ConfState c, NodeId id, bool voter) {
  std::erase(c.voters, id);
  std::erase(c.learners, id);
  (voter ? c.voters : c.learners).push_back(id);
  std::sort(c.voters.begin(), c.voters.end());
  std::sort(c.learners.begin(), c.learners.end());
  return c;
}

TEST(RaftNode, LearnerReplicatesButNeitherVotesNorCounts) {
  auto w = manual_world(3);
  w->add_node(n4, RestoredState{});
  elect(*w, n1);
  Node& leader = *w->node(n1);
  ASSERT_TRUE(leader.propose_conf(with(leader.status().conf, n4, false)).has_value());
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_TRUE(w->node(n4)->status().conf.is_learner(n4));
  // With 2 and 3 cut off, the learner's acknowledgement does not make a quorum.
  w->isolate(n2);
  w->isolate(n3);
  auto idx = w->propose(n1, Payload::copy_of("x"));
  w->stabilize();
  EXPECT_EQ(w->node(n4)->status().last_index, *idx);
  EXPECT_LT(*leader.status().commit, **idx);
  // A learner never campaigns.
  for (int i = 0; i < 100; ++i) w->tick(n4);
  EXPECT_EQ(w->node(n4)->role(), Role::kFollower);
}

TEST(RaftNode, MembershipChangesOneAtATime) {
  auto w = manual_world(3);
  w->add_node(n4, RestoredState{});
  elect(*w, n1);
  Node& leader = *w->node(n1);
  const ConfState base = leader.status().conf;
  EXPECT_EQ(leader.propose_conf(with(base, n4, true)).error(),
            Errc::kInvalidConfig);  // learner first
  ConfState two = with(with(base, n4, false), NodeId{5}, false);
  EXPECT_EQ(leader.propose_conf(two).error(), Errc::kInvalidConfig);  // two members at once
  w->isolate(n4);
  ASSERT_TRUE(leader.propose_conf(with(base, n4, false)).has_value());
  EXPECT_EQ(leader.propose_conf(base).error(), Errc::kConfigPending);
  w->process_ready(w->replica(n1));
  w->stabilize();
  // The learner is cut off and behind: promoting it is refused.
  EXPECT_EQ(leader.propose_conf(with(leader.status().conf, n4, true)).error(),
            Errc::kInvalidConfig);
  w->heal();
  w->tick(n1);
  w->stabilize();
  ASSERT_TRUE(leader.propose_conf(with(leader.status().conf, n4, true)).has_value());
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_TRUE(w->node(n2)->status().conf.is_voter(n4));
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftNode, RemovedLeaderStepsDownAndOthersContinue) {
  auto w = manual_world(3);
  elect(*w, n1);
  ConfState next = w->node(n1)->status().conf;
  std::erase(next.voters, n1);
  ASSERT_TRUE(w->node(n1)->propose_conf(next).has_value());
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_NE(w->node(n1)->role(), Role::kLeader);
  for (int i = 0; i < 40 && !w->leader(); ++i) {
    w->tick(n2);
    w->tick(n3);
    w->stabilize();
  }
  ASSERT_NE(w->leader(), nullptr);
  EXPECT_NE(w->leader()->id(), n1);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftNode, RestartRecoversConfigurationFromTheLog) {
  auto w = manual_world(3);
  w->add_node(n4, RestoredState{});
  elect(*w, n1);
  ASSERT_TRUE(w->node(n1)->propose_conf(with(w->node(n1)->status().conf, n4, false)).has_value());
  w->process_ready(w->replica(n1));
  w->stabilize();
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("x")).has_value());  // syncs the commit index
  w->stabilize();
  w->crash(n2);
  w->restart(n2);
  EXPECT_EQ(w->in_flight(), 0u);
  EXPECT_TRUE(w->node(n2)->status().conf.is_learner(n4));
}

TEST(RaftNode, LaggingFollowerGetsSnapshotThenAppends) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(w->propose(n1, Payload::copy_of("a")).has_value());
  w->stabilize();
  const Snapshot snap = w->compact(n1);
  EXPECT_EQ(*snap.index, 7u);
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("b")).has_value());
  w->heal();
  w->tick(n1);
  std::vector<std::string> trace;
  w->stabilize(&trace);
  EXPECT_EQ(
      std::count_if(trace.begin(), trace.end(),
                    [](const std::string& t) { return t.find("Snapshot") != std::string::npos; }),
      1);
  EXPECT_EQ(*w->node(n3)->status().commit, 8u);
  EXPECT_EQ(w->replica(n3).sm.applied, 8u);
  EXPECT_EQ(w->replica(n3).sm.hash, w->replica(n1).sm.hash);  // same state machine
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

// A follower (n2) whose disk drops the last three entries it had synced and acknowledged:
// the same leader must catch it up, with a new entry proposed after the loss or, `idle`,
// without one (the commit had reached the followers; only heartbeats follow).
void lost_acknowledged_tail_is_caught_up(bool idle) {
  // The checker would (rightly) report the lost acknowledged entries: Raft assumes disks
  // keep what they synced. This test is about liveness after such a loss.
  auto w = std::make_unique<World>(sim::WorldOptions{.seed = 7, .manual = true, .check = false});
  w->bootstrap(3);
  elect(*w, n1);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(w->propose(n1, Payload::copy_of("a")).has_value());
  w->stabilize();
  for (int i = 0; idle && i < 3; ++i) {  // the commit reaches the followers
    w->tick(n1);
    w->stabilize();
  }
  const uint64_t acked = *w->node(n2)->status().last_index;
  ASSERT_EQ(w->node(n1)->progress(n2)->match, acked);
  w->crash(n2);
  auto& disk = w->replica(n2).disk.entries;
  disk.resize(disk.size() - 3);  // the tail of its log, synced and acknowledged, is gone
  w->restart(n2);
  ASSERT_LT(*w->node(n2)->status().last_index, acked);
  if (!idle) {
    ASSERT_TRUE(w->propose(n1, Payload::copy_of("b")).has_value());
  }
  for (int i = 0; i < 10; ++i) {
    w->tick(n1);
    w->stabilize();
  }
  EXPECT_EQ(w->node(n1)->role(), Role::kLeader);  // the same leader caught it up
  EXPECT_EQ(w->node(n2)->status().last_index, w->node(n1)->status().last_index);
  EXPECT_EQ(w->node(n2)->status().commit, w->node(n1)->status().commit);
  EXPECT_EQ(w->replica(n2).sm.hash, w->replica(n1).sm.hash);
  EXPECT_EQ(w->node(n1)->progress(n2)->lost_entries, 1u);
}

// Fault suite bug 2 (`truncate-tail`): under the same leader the follower was never caught
// up: the leader took every rejection at or below what the follower had acknowledged as stale.
TEST(RaftNode, FollowerThatLostAcknowledgedEntriesIsCaughtUpByTheSameLeader) {
  lost_acknowledged_tail_is_caught_up(false);
}

// With no new entry (the partition idle) only heartbeats reached the follower, whose answers
// said nothing of its log, so the leader never resent the lost tail (cluster.replication's
// damaged-segment repair waited on a leadership handoff for that, and failed when those
// failed). The heartbeat's commit, past the follower's log, now makes it reject.
TEST(RaftNode, FollowerThatLostAcknowledgedEntriesIsCaughtUpByAnIdleLeader) {
  lost_acknowledged_tail_is_caught_up(true);
}

TEST(RaftNode, LostSnapshotIsResent) {
  auto w = manual_world(3);
  elect(*w, n1);
  w->isolate(n3);
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("a")).has_value());
  w->stabilize();
  (void)w->compact(n1);
  w->heal();
  w->tick(n1);
  w->deliver();        // heartbeat answers: the leader sends the snapshot
  w->drop_queued(n3);  // and it is lost
  for (int i = 0; i < 30; ++i) {
    w->tick(n1);
    w->stabilize();
  }
  EXPECT_EQ(w->node(n3)->status().commit, w->node(n1)->status().commit);
}

TEST(RaftNode, MalformedPeerMessagesAreDropped) {
  Node node({.id = n2}, bootstrap({{n1, n2, n3}}));
  Message gap{.type = MessageType::kAppend,
              .from = n1,
              .to = n2,
              .term = Term{2},
              .log_term = Term{1},
              .index = LogIndex{1}};
  gap.entries.push_back(Entry{LogIndex{3}, Term{2}, EntryType::kNormal, Payload()});  // not 2
  node.step(gap);
  Message future = gap;
  future.entries[0] = Entry{LogIndex{2}, Term{9}, EntryType::kNormal, Payload()};  // > m.term
  node.step(future);
  Message no_snapshot{.type = MessageType::kSnapshot, .from = n1, .to = n2, .term = Term{2}};
  node.step(no_snapshot);
  Message misrouted{.type = MessageType::kHeartbeat, .from = n1, .to = n3, .term = Term{2}};
  node.step(misrouted);  // for n3: dropped, not an assertion (issue 16)
  EXPECT_EQ(*node.term(), 1u);  // none of them was even looked at
  EXPECT_EQ(*node.status().last_index, 1u);
}

TEST(RaftNode, ApplyingARestoredLogTakesSeveralReadies) {
  RestoredState s = bootstrap({{n1}});
  for (uint64_t i = 2; i <= 10; ++i) {
    s.entries.push_back(Entry{LogIndex{i}, Term{1}, EntryType::kNormal, Payload::copy_of("1234")});
  }
  s.hard_state.commit = LogIndex{10};
  Node node({.id = n1, .max_apply_bytes = 8}, s);
  size_t readies = 0, applied = 0;
  while (node.has_ready()) {
    Ready rd = node.take_ready();
    EXPECT_LE(rd.committed.size(), 3u);
    applied += rd.committed.size();
    ++readies;
    node.advance(rd.persisted());
  }
  EXPECT_EQ(applied, 10u);
  EXPECT_GE(readies, 4u);
}

TEST(RaftChecker, CatchesViolations) {
  sim::Checker c;
  const Entry a{LogIndex{1}, Term{1}, EntryType::kNormal, Payload::copy_of("a")};
  Entry b = a;
  b.data = Payload::copy_of("b");
  c.on_apply(n1, a);
  EXPECT_TRUE(c.ok());
  c.on_apply(n2, a);
  EXPECT_TRUE(c.ok());
  c.on_apply(n3, b);
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.failure().find("state machine safety"), std::string::npos);
}

}  // namespace
}  // namespace sluice::raft
