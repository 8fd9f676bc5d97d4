// The group state machine (group.h) and the __consumer_offsets record codec, without I/O.
#include "broker/group.h"

#include <gtest/gtest.h>

#include "broker/group_records.h"

namespace sluice::broker {
namespace {

using kafka::ErrorCode;

ByteVec bytes(std::string_view s) {
  ByteVec b;
  for (char c : s) b.push_back(static_cast<std::byte>(c));
  return b;
}

JoinArgs args(std::string member, std::vector<std::string> protocols = {"range"},
              std::string type = "consumer") {
  JoinArgs a;
  a.member_id = std::move(member);
  a.client_id = "client";
  a.client_host = "/127.0.0.1";
  a.session_timeout_ms = 10000;
  a.rebalance_timeout_ms = 30000;
  a.protocol_type = std::move(type);
  for (auto& p : protocols) a.protocols.emplace_back(p, bytes("meta-" + p));
  a.member_id_required = true;
  return a;
}

struct Joined {
  std::optional<JoinResult> result;
  JoinCallback cb() {
    return [this](JoinResult r) { result = std::move(r); };
  }
};
struct Synced {
  std::optional<SyncResult> result;
  SyncCallback cb() {
    return [this](SyncResult r) { result = std::move(r); };
  }
};

class GroupTest : public ::testing::Test {
 protected:
  // Two-step join of a new dynamic member; returns its id. Its join stays parked.
  std::string join_new(Joined& j, int64_t now, std::vector<std::string> protocols = {"range"}) {
    Joined first;
    group.join(args("", protocols), now, first.cb());
    EXPECT_TRUE(first.result);
    EXPECT_EQ(first.result->error, ErrorCode::kMemberIdRequired);
    const std::string id = first.result->member_id;
    EXPECT_FALSE(id.empty());
    group.join(args(id, protocols), now, j.cb());
    return id;
  }
  static GroupLimits no_delay() {
    GroupLimits limits;
    limits.initial_rebalance_delay_ms = 0;  // these tests are about other rules
    return limits;
  }
  Group group{"g", no_delay(), 42};
};

// ConsumerProtocolSubscription v0 (kafka-protocol.md 7.6): topics and user data.
ByteVec consumer_meta(const std::vector<std::string>& topics, std::string_view user_data = "") {
  ByteVec b;
  auto i16 = [&](int v) {
    b.push_back(static_cast<std::byte>((v >> 8) & 0xff));
    b.push_back(static_cast<std::byte>(v & 0xff));
  };
  auto i32 = [&](size_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
      b.push_back(static_cast<std::byte>((v >> shift) & 0xff));
  };
  i16(0);
  i32(topics.size());
  for (const auto& t : topics) {
    i16(static_cast<int>(t.size()));
    for (char c : t) b.push_back(static_cast<std::byte>(c));
  }
  i32(user_data.size());
  for (char c : user_data) b.push_back(static_cast<std::byte>(c));
  return b;
}

JoinArgs static_args(std::string instance, const std::vector<std::string>& topics,
                     std::string_view user_data = "") {
  JoinArgs a = args("");
  a.instance_id = std::move(instance);
  a.protocols = {{"range", consumer_meta(topics, user_data)}};
  a.member_id_required = false;  // static members skip MEMBER_ID_REQUIRED
  return a;
}

// A Stable group of two static members, "i-1" (the leader) and "i-2", at generation 1 with
// assignments "A" and "B".
class StaticGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Joined l, o;
    group.join(static_args("i-1", {"t"}), 0, l.cb());
    group.join(static_args("i-2", {"t"}), 1, o.cb());
    group.tick(3001);  // the initial delay has passed
    ASSERT_TRUE(l.result && o.result);
    ASSERT_EQ(l.result->generation, 1);
    leader = l.result->member_id;
    follower = o.result->member_id;
    ASSERT_EQ(l.result->leader, leader);
    Synced s1, s2;
    group.sync(follower, std::string("i-2"), 1, {}, 3002, s2.cb());
    group.sync(leader, std::string("i-1"), 1, {{leader, bytes("A")}, {follower, bytes("B")}}, 3002,
               s1.cb());
    ASSERT_EQ(group.state(), GroupState::kStable);
    ASSERT_TRUE(group.take_metadata_dirty());
  }
  Group group{"s", GroupLimits{}, 7};
  std::string leader, follower;
};

TEST_F(GroupTest, SingleMemberJoinsSyncsAndIsStable) {
  Joined j;
  const std::string id = join_new(j, 0);
  ASSERT_TRUE(j.result);  // the only member: the join completes at once
  EXPECT_EQ(j.result->error, ErrorCode::kNone);
  EXPECT_EQ(j.result->generation, 1);
  EXPECT_EQ(j.result->leader, id);
  EXPECT_EQ(j.result->protocol, "range");
  ASSERT_EQ(j.result->members.size(), 1u);
  EXPECT_EQ(group.state(), GroupState::kCompletingRebalance);
  EXPECT_EQ(group.heartbeat(id, std::nullopt, 1, 1), ErrorCode::kNone);
  Synced s;
  group.sync(id, std::nullopt, 1, {{id, bytes("a")}}, 2, s.cb());
  ASSERT_TRUE(s.result);
  EXPECT_EQ(s.result->assignment, bytes("a"));
  EXPECT_EQ(group.state(), GroupState::kStable);
  EXPECT_TRUE(group.take_metadata_dirty());
  EXPECT_FALSE(group.take_metadata_dirty());
}

TEST_F(GroupTest, SecondMemberTriggersRebalanceAndFollowerWaitsForLeader) {
  Joined j1;
  const std::string a = join_new(j1, 0);
  Synced s1;
  group.sync(a, std::nullopt, 1, {{a, bytes("all")}}, 0, s1.cb());
  ASSERT_EQ(group.state(), GroupState::kStable);

  Joined j2;
  const std::string b = join_new(j2, 10);
  EXPECT_FALSE(j2.result);  // parked until the leader rejoins
  EXPECT_EQ(group.state(), GroupState::kPreparingRebalance);
  EXPECT_EQ(group.heartbeat(a, std::nullopt, 1, 20), ErrorCode::kRebalanceInProgress);
  Synced stale;
  group.sync(a, std::nullopt, 1, {}, 20, stale.cb());
  EXPECT_EQ(stale.result->error, ErrorCode::kRebalanceInProgress);
  Joined j1b;
  group.join(args(a), 30, j1b.cb());
  ASSERT_TRUE(j1b.result && j2.result);
  EXPECT_EQ(j1b.result->generation, 2);
  EXPECT_EQ(j1b.result->leader, a);
  EXPECT_EQ(j1b.result->members.size(), 2u);
  EXPECT_TRUE(j2.result->members.empty());  // followers get no member list

  Synced follower, leader;
  group.sync(b, std::nullopt, 2, {}, 40, follower.cb());
  EXPECT_FALSE(follower.result);
  group.sync(a, std::nullopt, 2, {{a, bytes("p0")}, {b, bytes("p1")}}, 50, leader.cb());
  ASSERT_TRUE(follower.result && leader.result);
  EXPECT_EQ(follower.result->assignment, bytes("p1"));
  EXPECT_EQ(leader.result->assignment, bytes("p0"));
  EXPECT_EQ(group.state(), GroupState::kStable);
}

TEST_F(GroupTest, JoinPhaseCompletesAtRebalanceTimeoutWithoutSilentMembers) {
  Joined j1, j2;
  const std::string a = join_new(j1, 0);
  Synced s;
  group.sync(a, std::nullopt, 1, {}, 0, s.cb());
  const std::string b = join_new(j2, 0);
  // a never rejoins; keep it alive with heartbeats so only the rebalance timeout removes it.
  for (int64_t t = 1000; t < 30000; t += 1000) {
    EXPECT_EQ(group.heartbeat(a, std::nullopt, 1, t), ErrorCode::kRebalanceInProgress);
    group.tick(t);
  }
  EXPECT_FALSE(j2.result);
  group.tick(30001);
  ASSERT_TRUE(j2.result);
  EXPECT_EQ(j2.result->error, ErrorCode::kNone);
  EXPECT_EQ(j2.result->leader, b);  // the old leader is gone
  EXPECT_FALSE(group.has_member(a));
}

TEST_F(GroupTest, SessionExpiryRemovesSilentMemberAndRebalances) {
  Joined j1;
  const std::string a = join_new(j1, 0);
  Synced s;
  group.sync(a, std::nullopt, 1, {}, 0, s.cb());
  group.tick(9999);
  EXPECT_TRUE(group.has_member(a));
  group.tick(10001);
  EXPECT_FALSE(group.has_member(a));
  EXPECT_EQ(group.state(), GroupState::kEmpty);
  EXPECT_EQ(group.heartbeat(a, std::nullopt, 1, 10002), ErrorCode::kUnknownMemberId);
}

TEST_F(GroupTest, BadInputGetsKafkaErrorsAndGroupStaysUsable) {
  Joined j1;
  const std::string a = join_new(j1, 0);
  Joined wrong_type;
  group.join(args("", {"range"}, "connect"), 1, wrong_type.cb());
  EXPECT_EQ(wrong_type.result->error, ErrorCode::kInconsistentGroupProtocol);
  Joined no_common;
  group.join(args("", {"roundrobin"}), 1, no_common.cb());
  EXPECT_EQ(no_common.result->error, ErrorCode::kInconsistentGroupProtocol);
  Joined unknown;
  group.join(args("nobody"), 1, unknown.cb());
  EXPECT_EQ(unknown.result->error, ErrorCode::kUnknownMemberId);
  JoinArgs big = args("");
  big.protocols[0].second.resize(2 << 20);
  Joined oversized;
  group.join(big, 1, oversized.cb());
  EXPECT_EQ(oversized.result->error, ErrorCode::kInvalidRequest);
  JoinArgs short_session = args("");
  short_session.session_timeout_ms = 10;
  Joined bad_session;
  group.join(short_session, 1, bad_session.cb());
  EXPECT_EQ(bad_session.result->error, ErrorCode::kInvalidSessionTimeout);
  EXPECT_EQ(group.heartbeat(a, std::nullopt, 7, 1), ErrorCode::kIllegalGeneration);
  EXPECT_EQ(group.validate_commit(a, std::nullopt, 7, 1), ErrorCode::kIllegalGeneration);
  EXPECT_EQ(group.validate_commit("", std::nullopt, -1, 1), ErrorCode::kUnknownMemberId);
  // Still usable.
  Synced s;
  group.sync(a, std::nullopt, 1, {{a, bytes("x")}}, 2, s.cb());
  EXPECT_EQ(s.result->error, ErrorCode::kNone);
  EXPECT_EQ(group.validate_commit(a, std::nullopt, 1, 3), ErrorCode::kNone);
}

TEST_F(GroupTest, CommitRulesFollowKafka) {
  // Simple commits (generation -1, no member) are allowed while the group is Empty.
  EXPECT_EQ(group.validate_commit("", std::nullopt, -1, 0), ErrorCode::kNone);
  Joined j;
  const std::string a = join_new(j, 0);
  // CompletingRebalance: REBALANCE_IN_PROGRESS.
  EXPECT_EQ(group.validate_commit(a, std::nullopt, 1, 1), ErrorCode::kRebalanceInProgress);
}

TEST_F(GroupTest, ProtocolChosenByVotesAmongCommonProtocols) {
  Joined j1, j2, j3;
  join_new(j1, 0, {"roundrobin", "range"});
  Synced s;
  group.sync(j1.result->member_id, std::nullopt, 1, {}, 0, s.cb());
  const std::string b = join_new(j2, 1, {"range", "roundrobin"});
  const std::string c = join_new(j3, 1, {"range", "sticky", "roundrobin"});
  Joined j1b;
  group.join(args(j1.result->member_id, {"roundrobin", "range"}), 2, j1b.cb());
  ASSERT_TRUE(j1b.result);
  EXPECT_EQ(j1b.result->protocol, "range");  // two votes against one
  (void)b;
  (void)c;
}

TEST_F(GroupTest, LeaveLastMemberEmptiesGroup) {
  Joined j;
  const std::string a = join_new(j, 0);
  EXPECT_EQ(group.leave("ghost", std::nullopt, 1), ErrorCode::kUnknownMemberId);
  EXPECT_EQ(group.leave(a, std::nullopt, 1), ErrorCode::kNone);
  EXPECT_EQ(group.state(), GroupState::kEmpty);
}

TEST_F(GroupTest, StaticMemberRejoinFencesOldIdWithoutRebalance) {
  JoinArgs leader = args("");
  leader.instance_id = "i-1";
  Joined l;
  group.join(leader, 0, l.cb());  // static members skip MEMBER_ID_REQUIRED
  ASSERT_TRUE(l.result);
  const std::string lid = l.result->member_id;
  JoinArgs other = args("");
  other.instance_id = "i-2";
  Joined o;
  group.join(other, 1, o.cb());
  Joined l2;
  group.join(args(lid), 2, l2.cb());
  ASSERT_TRUE(o.result && l2.result);
  const std::string oid = o.result->member_id;
  Synced s1, s2;
  group.sync(oid, std::string("i-2"), 2, {}, 3, s2.cb());
  group.sync(lid, std::string("i-1"), 2, {{lid, bytes("A")}, {oid, bytes("B")}}, 3, s1.cb());
  ASSERT_EQ(group.state(), GroupState::kStable);
  // i-2 restarts: a new id, the same generation and assignment, no rebalance.
  Joined again;
  group.join(other, 4, again.cb());
  ASSERT_TRUE(again.result);
  EXPECT_EQ(again.result->error, ErrorCode::kNone);
  EXPECT_NE(again.result->member_id, oid);
  EXPECT_EQ(again.result->generation, 2);
  EXPECT_EQ(group.state(), GroupState::kStable);
  EXPECT_EQ(group.heartbeat(oid, std::string("i-2"), 2, 5), ErrorCode::kFencedInstanceId);
  Synced s3;
  group.sync(again.result->member_id, std::string("i-2"), 2, {}, 5, s3.cb());
  EXPECT_EQ(s3.result->assignment, bytes("B"));
}

TEST(GroupInitialDelay, DefaultIsKafkasThreeSeconds) {
  EXPECT_EQ(GroupLimits{}.initial_rebalance_delay_ms, 3000);
}

TEST(GroupInitialDelay, ExtendedByEachNewMember) {
  Group g("d", GroupLimits{}, 1);
  JoinArgs a = args("");
  a.member_id_required = false;
  Joined ja, jb;
  g.join(a, 0, ja.cb());
  EXPECT_FALSE(ja.result);
  EXPECT_EQ(g.state(), GroupState::kPreparingRebalance);
  EXPECT_EQ(g.next_deadline_ms(), 3000);
  g.join(a, 1000, jb.cb());
  EXPECT_EQ(g.next_deadline_ms(), 4000);
  g.tick(3500);
  EXPECT_FALSE(ja.result);  // extended by the second member
  g.tick(3999);
  EXPECT_FALSE(ja.result);
  g.tick(4000);
  ASSERT_TRUE(ja.result && jb.result);
  EXPECT_EQ(ja.result->generation, 1);  // one generation, one join answer each
  EXPECT_EQ(jb.result->generation, 1);
  EXPECT_EQ(ja.result->members.size() + jb.result->members.size(), 2u);
}

TEST(GroupInitialDelay, TwoStepJoinTenMillisecondsApartGivesOneGeneration) {
  Group g("d", GroupLimits{}, 1);
  std::vector<Joined> joins(2);
  for (int i = 0; i < 2; ++i) {
    Joined first;
    g.join(args(""), i * 10, first.cb());
    ASSERT_EQ(first.result->error, ErrorCode::kMemberIdRequired);
    g.join(args(first.result->member_id), i * 10 + 1, joins[i].cb());
  }
  g.tick(3010);
  EXPECT_FALSE(joins[0].result);
  g.tick(3011);
  ASSERT_TRUE(joins[0].result && joins[1].result);
  EXPECT_EQ(joins[0].result->generation, 1);
  EXPECT_EQ(joins[1].result->generation, 1);
}

TEST(GroupInitialDelay, CappedByTheRebalanceTimeout) {
  Group g("d", GroupLimits{}, 1);
  JoinArgs a = args("");
  a.member_id_required = false;
  a.rebalance_timeout_ms = 5000;
  Joined j0, j1, j2;
  g.join(a, 0, j0.cb());
  g.join(a, 2000, j1.cb());
  g.join(a, 4000, j2.cb());
  EXPECT_EQ(g.next_deadline_ms(), 5000);  // not 7000
  g.tick(4999);
  EXPECT_FALSE(j0.result);
  g.tick(5000);
  ASSERT_TRUE(j0.result && j1.result && j2.result);
  EXPECT_EQ(j0.result->generation, 1);
}

TEST(GroupInitialDelay, OnlyForAnEmptyGroup) {
  Group g("d", GroupLimits{}, 1);
  JoinArgs a = args("");
  a.member_id_required = false;
  Joined j0;
  g.join(a, 0, j0.cb());
  g.tick(3000);
  ASSERT_TRUE(j0.result);
  const std::string first = j0.result->member_id;
  Synced s;
  g.sync(first, std::nullopt, 1, {}, 3000, s.cb());
  ASSERT_EQ(g.state(), GroupState::kStable);
  // A newcomer to a Stable group: the rebalance ends as soon as everyone has rejoined.
  Joined j1, j0b;
  g.join(a, 4000, j1.cb());
  EXPECT_FALSE(j1.result);
  g.join(args(first), 4001, j0b.cb());
  ASSERT_TRUE(j1.result && j0b.result);
  EXPECT_EQ(j1.result->generation, 2);
  // Once the group is Empty again, the next first join waits again.
  EXPECT_EQ(g.leave(first, std::nullopt, 5000), ErrorCode::kNone);
  EXPECT_EQ(g.leave(j1.result->member_id, std::nullopt, 5000), ErrorCode::kNone);
  ASSERT_EQ(g.state(), GroupState::kEmpty);
  Joined j2;
  g.join(a, 6000, j2.cb());
  EXPECT_FALSE(j2.result);
  g.tick(9000);
  ASSERT_TRUE(j2.result);
}

TEST_F(GroupTest, MemberExpiresExactlyAtItsSessionDeadline) {
  Joined j;
  const std::string a = join_new(j, 0);
  Synced s;
  group.sync(a, std::nullopt, 1, {}, 0, s.cb());
  EXPECT_EQ(group.heartbeat(a, std::nullopt, 1, 1234), ErrorCode::kNone);
  EXPECT_EQ(group.next_deadline_ms(), 1234 + 10000);
  group.tick(11233);
  EXPECT_TRUE(group.has_member(a));
  group.tick(11234);
  EXPECT_FALSE(group.has_member(a));
  EXPECT_EQ(group.state(), GroupState::kEmpty);
  EXPECT_EQ(group.next_deadline_ms(), Group::kNoDeadline);
}

TEST_F(GroupTest, NextDeadlineFollowsThePhases) {
  EXPECT_EQ(group.next_deadline_ms(), Group::kNoDeadline);
  Joined first;
  group.join(args(""), 0, first.cb());
  EXPECT_EQ(group.next_deadline_ms(), 10000);  // the MEMBER_ID_REQUIRED id expires
  Joined j;
  group.join(args(first.result->member_id), 5, j.cb());
  ASSERT_TRUE(j.result);
  // CompletingRebalance: the sync phase ends at the rebalance timeout; the session earlier.
  EXPECT_EQ(group.next_deadline_ms(), 5 + 10000);
  Synced s;
  group.sync(j.result->member_id, std::nullopt, 1, {}, 100, s.cb());
  EXPECT_EQ(group.next_deadline_ms(), 100 + 10000);
  // A second member: the join phase ends at the rebalance timeout (30 s) unless all rejoin.
  Joined j2;
  join_new(j2, 200);
  EXPECT_EQ(group.next_deadline_ms(), 100 + 10000);  // the first member's session comes first
  EXPECT_EQ(group.heartbeat(j.result->member_id, std::nullopt, 1, 9000),
            ErrorCode::kRebalanceInProgress);
  EXPECT_EQ(group.next_deadline_ms(), 9000 + 10000);
}

TEST_F(StaticGroupTest, RestartedLeaderGetsGenerationLeadershipAndAssignmentBack) {
  Joined again;
  group.join(static_args("i-1", {"t"}, "new user data"), 5000, again.cb());
  ASSERT_TRUE(again.result);
  EXPECT_EQ(again.result->error, ErrorCode::kNone);
  const std::string fresh = again.result->member_id;
  EXPECT_NE(fresh, leader);
  EXPECT_EQ(again.result->generation, 1);
  EXPECT_EQ(again.result->leader, fresh);       // the leadership comes back with the new id
  EXPECT_EQ(again.result->members.size(), 2u);  // with the members' current metadata
  EXPECT_EQ(group.state(), GroupState::kStable);
  EXPECT_EQ(group.leader(), fresh);
  EXPECT_TRUE(group.take_metadata_dirty());  // the new id is persisted
  // The other member sees no rebalance.
  EXPECT_EQ(group.heartbeat(follower, std::string("i-2"), 1, 5001), ErrorCode::kNone);
  // The leader's client assigns again; the stored assignment stands.
  Synced s;
  group.sync(fresh, std::string("i-1"), 1, {{fresh, bytes("X")}, {follower, bytes("Y")}}, 5002,
             s.cb());
  ASSERT_TRUE(s.result);
  EXPECT_EQ(s.result->error, ErrorCode::kNone);
  EXPECT_EQ(s.result->assignment, bytes("A"));
  EXPECT_EQ(group.members().at(follower).assignment, bytes("B"));
  EXPECT_EQ(group.state(), GroupState::kStable);
  EXPECT_EQ(group.generation(), 1);
}

TEST_F(StaticGroupTest, RestartedFollowerGetsItsAssignmentBack) {
  Joined again;
  group.join(static_args("i-2", {"t"}), 5000, again.cb());
  ASSERT_TRUE(again.result);
  EXPECT_EQ(again.result->error, ErrorCode::kNone);
  EXPECT_EQ(again.result->generation, 1);
  EXPECT_EQ(again.result->leader, leader);
  EXPECT_TRUE(again.result->members.empty());
  Synced s;
  group.sync(again.result->member_id, std::string("i-2"), 1, {}, 5001, s.cb());
  EXPECT_EQ(s.result->assignment, bytes("B"));
  EXPECT_EQ(group.heartbeat(leader, std::string("i-1"), 1, 5002), ErrorCode::kNone);
}

TEST_F(StaticGroupTest, ChangedSubscriptionRebalances) {
  Joined again;
  group.join(static_args("i-2", {"t", "u"}), 5000, again.cb());
  EXPECT_FALSE(again.result);  // parked: a rebalance
  EXPECT_EQ(group.state(), GroupState::kPreparingRebalance);
  EXPECT_EQ(group.heartbeat(leader, std::string("i-1"), 1, 5001), ErrorCode::kRebalanceInProgress);
  Joined l;
  group.join(static_args("i-1", {"t"}), 5002, l.cb());  // a restarted leader joins this phase
  ASSERT_TRUE(again.result && l.result);
  EXPECT_EQ(again.result->generation, 2);
  EXPECT_EQ(l.result->leader, l.result->member_id);
}

TEST_F(StaticGroupTest, OldInstanceIsFenced) {
  Synced parked;
  Joined again;
  group.join(static_args("i-2", {"t"}), 5000, again.cb());
  const std::string fresh = again.result->member_id;
  EXPECT_EQ(group.heartbeat(follower, std::string("i-2"), 1, 5001), ErrorCode::kFencedInstanceId);
  group.sync(follower, std::string("i-2"), 1, {}, 5001, parked.cb());
  EXPECT_EQ(parked.result->error, ErrorCode::kFencedInstanceId);
  EXPECT_EQ(group.validate_commit(follower, std::string("i-2"), 1, 5001),
            ErrorCode::kFencedInstanceId);
  Joined rejoin;
  group.join(
      [&] {
        JoinArgs a = static_args("i-2", {"t"});
        a.member_id = follower;
        return a;
      }(),
      5001, rejoin.cb());
  EXPECT_EQ(rejoin.result->error, ErrorCode::kFencedInstanceId);
  EXPECT_EQ(group.leave(follower, std::string("i-2"), 5001), ErrorCode::kFencedInstanceId);
  // The new instance is the member now.
  EXPECT_EQ(group.heartbeat(fresh, std::string("i-2"), 1, 5002), ErrorCode::kNone);
  EXPECT_EQ(group.state(), GroupState::kStable);
}

TEST_F(StaticGroupTest, ParkedRequestsOfTheOldInstanceAreFenced) {
  // The leader starts a rebalance by rejoining with its id; then its instance restarts.
  Joined old_join;
  JoinArgs a = static_args("i-1", {"t"});
  a.member_id = leader;
  group.join(a, 5000, old_join.cb());
  EXPECT_FALSE(old_join.result);
  Joined again;
  group.join(static_args("i-1", {"t"}), 5001, again.cb());
  ASSERT_TRUE(old_join.result);
  EXPECT_EQ(old_join.result->error, ErrorCode::kFencedInstanceId);
  EXPECT_FALSE(again.result);  // PreparingRebalance: parked until i-2 rejoins
  Joined other;
  JoinArgs b = static_args("i-2", {"t"});
  b.member_id = follower;
  group.join(b, 5002, other.cb());
  ASSERT_TRUE(again.result && other.result);
  EXPECT_EQ(again.result->generation, 2);
  EXPECT_EQ(again.result->leader, again.result->member_id);
}

TEST_F(StaticGroupTest, RejoinWhileCompletingRebalanceRebalancesAgain) {
  Joined l, o;
  JoinArgs a = static_args("i-1", {"t"});
  a.member_id = leader;
  JoinArgs b = static_args("i-2", {"t"});
  b.member_id = follower;
  group.join(a, 5000, l.cb());
  group.join(b, 5001, o.cb());
  ASSERT_EQ(group.state(), GroupState::kCompletingRebalance);
  Joined again;
  group.join(static_args("i-2", {"t"}), 5002, again.cb());
  EXPECT_FALSE(again.result);
  EXPECT_EQ(group.state(), GroupState::kPreparingRebalance);
}

TEST(GroupRecords, KafkaPartitionOfGroupUsesJavaHash) {
  // "my-group".hashCode() = -1906497762 (Java); abs % 50 = 12.
  EXPECT_EQ(offsets_partition_for("my-group", 50), 12);
  EXPECT_EQ(offsets_partition_for("", 50), 0);
  for (const char* id : {"a", "zzzzzzzzzzzzzzzz", "consumer-group-7"}) {
    const int32_t p = offsets_partition_for(id, 8);
    EXPECT_GE(p, 0);
    EXPECT_LT(p, 8);
  }
}

TEST(GroupRecords, KeysAndValuesRoundTrip) {
  auto k = decode_key(encode_key(OffsetKey{"g", "t", 3}));
  ASSERT_TRUE(k);
  auto* ok = std::get_if<OffsetKey>(&*k);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->group, "g");
  EXPECT_EQ(ok->topic, "t");
  EXPECT_EQ(ok->partition, 3);
  auto v = decode_offset_value(encode_offset_value({42, 5, "meta", 1234}));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->offset, 42);
  EXPECT_EQ(v->leader_epoch, 5);
  EXPECT_EQ(v->metadata, "meta");
  GroupMetadataValue gv;
  gv.protocol_type = "consumer";
  gv.generation = 9;
  gv.protocol = "range";
  gv.leader = "m1";
  Member m;
  m.id = "m1";
  m.instance_id = "i";
  m.session_timeout_ms = 10000;
  m.rebalance_timeout_ms = 20000;
  m.protocols = {{"range", bytes("sub")}};
  m.assignment = bytes("asg");
  gv.members.push_back(m);
  auto back = decode_group_value(encode_group_value(gv));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->generation, 9);
  ASSERT_EQ(back->members.size(), 1u);
  EXPECT_EQ(back->members[0].assignment, bytes("asg"));
  EXPECT_EQ(*back->members[0].metadata_for("range"), bytes("sub"));
  EXPECT_FALSE(decode_key(bytes("\x7f")));
  EXPECT_FALSE(decode_group_value(bytes("\x00\x03\x00")));
}

}  // namespace
}  // namespace sluice::broker
