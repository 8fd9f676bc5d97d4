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
  Group group{"g", GroupLimits{}, 42};
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

TEST_F(GroupTest, InitialRebalanceDelayGathersMembers) {
  GroupLimits limits;
  limits.initial_rebalance_delay_ms = 3000;
  Group g("d", limits, 1);
  JoinArgs a = args("");
  a.member_id_required = false;
  Joined ja, jb;
  g.join(a, 0, ja.cb());
  EXPECT_FALSE(ja.result);
  g.join(a, 1000, jb.cb());
  g.tick(3500);
  EXPECT_FALSE(ja.result);  // extended by the second member
  g.tick(4001);
  ASSERT_TRUE(ja.result && jb.result);
  EXPECT_EQ(ja.result->generation, 1);
  EXPECT_EQ(jb.result->generation, 1);
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
