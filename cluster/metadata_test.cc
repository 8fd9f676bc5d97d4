#include "cluster/metadata.h"
#include "cluster/cluster_node.h"

#include <gtest/gtest.h>

namespace sluice::cluster {
namespace {

using kafka::ErrorCode;

pb::Record register_broker(int32_t id, uint64_t incarnation = 1) {
  pb::Record r;
  pb::Broker* b = r.mutable_register_broker()->mutable_broker();
  b->set_id(id);
  b->set_incarnation(incarnation);
  b->mutable_kafka()->set_host("127.0.0.1");
  b->mutable_kafka()->set_port(static_cast<uint32_t>(9092 + id));
  return r;
}

pb::Record create_topic(const std::string& name, std::vector<std::vector<int32_t>> parts) {
  pb::Record r;
  pb::Topic* t = r.mutable_create_topic()->mutable_topic();
  t->set_name(name);
  for (const auto& replicas : parts) {
    pb::Partition* p = t->add_partitions();
    for (int32_t b : replicas) p->add_replicas(b);
  }
  return r;
}

pb::Record fence(int32_t id, bool fenced, uint64_t incarnation = 0) {
  pb::Record r;
  r.mutable_fence_broker()->set_id(id);
  r.mutable_fence_broker()->set_fenced(fenced);
  r.mutable_fence_broker()->set_incarnation(incarnation);
  return r;
}

TEST(MetadataState, RegisterCreateAndLead) {
  MetadataState s;
  EXPECT_TRUE(s.apply(1, register_broker(0)).ok());
  EXPECT_TRUE(s.apply(2, register_broker(1)).ok());
  EXPECT_TRUE(s.apply(3, create_topic("t", {{0, 1}, {1, 0}})).ok());
  const auto& t = s.image().topics().at("t");
  ASSERT_EQ(t.partitions_size(), 2);
  EXPECT_EQ(t.partitions(0).replicas(0), 0);
  EXPECT_EQ(t.partitions(1).replicas(0), 1);
  EXPECT_EQ(t.partitions(0).leader(), -1);  // until the partition's Raft leader reports
  EXPECT_EQ(s.image().applied_index(), 3u);
  EXPECT_EQ(live_brokers(s.image()).size(), 2u);
}

TEST(MetadataState, DuplicateTopicIsRefusedDeterministically) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0)).ok());
  ASSERT_TRUE(s.apply(2, create_topic("t", {{0}})).ok());
  auto r = s.apply(3, create_topic("t", {{0}, {0}}));
  EXPECT_EQ(r.code, ErrorCode::kTopicAlreadyExists);
  EXPECT_EQ(s.image().topics().at("t").partitions_size(), 1);
}

TEST(MetadataState, TwoAttemptsOfOneCreateBothInTheLogCreateOnce) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0)).ok());
  auto first = create_topic("t", {{0}});
  first.mutable_create_topic()->mutable_topic()->set_created_by("request-1");
  first.mutable_create_topic()->mutable_topic()->set_topic_id("id-1");
  auto retry = first;
  retry.mutable_create_topic()->mutable_topic()->set_topic_id("id-2");  // planned again
  ASSERT_TRUE(s.apply(2, first).ok());
  EXPECT_TRUE(s.apply(3, retry).ok());
  EXPECT_EQ(s.image().topics().at("t").topic_id(), "id-1");  // the first one stands
  auto other = first;
  other.mutable_create_topic()->mutable_topic()->set_created_by("request-2");
  EXPECT_EQ(s.apply(4, other).code, ErrorCode::kTopicAlreadyExists);
  auto anonymous = create_topic("t", {{0}});  // no request id: never taken for a retry
  EXPECT_EQ(s.apply(5, anonymous).code, ErrorCode::kTopicAlreadyExists);
}

TEST(MetadataState, LeadersAreWhatPartitionLeadersReportNewestEpochWins) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0, 7)).ok());
  ASSERT_TRUE(s.apply(2, register_broker(1, 7)).ok());
  ASSERT_TRUE(s.apply(3, create_topic("t", {{0, 1}})).ok());
  EXPECT_EQ(s.image().topics().at("t").partitions(0).leader(), -1);  // none reported yet
  auto report = [](int32_t leader, int32_t epoch, std::vector<int32_t> isr = {}) {
    pb::Record r;
    auto* ch = r.mutable_set_leaders()->add_changes();
    ch->set_topic("t");
    ch->set_partition(0);
    ch->set_leader(leader);
    ch->set_leader_epoch(epoch);
    for (int32_t id : isr) ch->add_isr(id);
    return r;
  };
  ASSERT_TRUE(s.apply(4, report(0, 2)).ok());
  EXPECT_EQ(s.image().topics().at("t").partitions(0).leader(), 0);
  // Fencing a broker does not move leadership: the partition's Raft group does, and reports.
  ASSERT_TRUE(s.apply(5, fence(0, true, 7)).ok());
  EXPECT_EQ(s.image().topics().at("t").partitions(0).leader(), 0);
  ASSERT_TRUE(s.apply(6, report(1, 3)).ok());
  ASSERT_TRUE(s.apply(7, report(0, 2)).ok());  // a late report of an older epoch
  const auto& p = s.image().topics().at("t").partitions(0);
  EXPECT_EQ(p.leader(), 1);
  EXPECT_EQ(p.leader_epoch(), 3);
  EXPECT_FALSE(s.apply(8, fence(0, false, 6)).ok());  // an older start of the broker
  // The ISR is the leader's: it changes within an epoch, and a stale epoch's does not count.
  ASSERT_TRUE(s.apply(9, report(1, 3, {0, 1})).ok());
  const auto& o = s.image().topics().at("t").partitions(0);
  EXPECT_EQ(std::vector<int32_t>(o.isr().begin(), o.isr().end()), (std::vector<int32_t>{0, 1}));
  ASSERT_TRUE(s.apply(10, report(1, 3, {1})).ok());
  ASSERT_TRUE(s.apply(11, report(0, 2, {0, 1})).ok());
  const auto& q = s.image().topics().at("t").partitions(0);
  EXPECT_EQ(std::vector<int32_t>(q.isr().begin(), q.isr().end()), (std::vector<int32_t>{1}));
}

TEST(MetadataState, AControlledShutdownIsOnlyUndoneByANewRegistration) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0, 7)).ok());
  pb::Record down = fence(0, true, 7);
  down.mutable_fence_broker()->set_shutdown(true);
  ASSERT_TRUE(s.apply(2, down).ok());
  EXPECT_FALSE(s.apply(3, fence(0, false, 7)).ok());  // a late heartbeat of the old process
  EXPECT_TRUE(s.image().brokers().at(0).fenced());
  ASSERT_TRUE(s.apply(4, register_broker(0, 8)).ok());
  EXPECT_FALSE(s.image().brokers().at(0).fenced());
  EXPECT_FALSE(s.image().brokers().at(0).shut_down());
}

TEST(MetadataState, ImagesAreImmutableSnapshots) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0)).ok());
  auto before = s.shared();
  ASSERT_TRUE(s.apply(2, create_topic("t", {{0}})).ok());
  EXPECT_EQ(before->topics_size(), 0);
  EXPECT_EQ(s.image().topics_size(), 1);
}

TEST(MetadataState, RecordsAppliedTogetherShareOneCopyAndJudgeAgainstEachOther) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0)).ok());
  auto before = s.shared();
  ASSERT_TRUE(s.apply(2, create_topic("a", {{0}})).ok());
  // Judged against the record before it, though nobody read the image in between.
  EXPECT_EQ(s.apply(3, create_topic("a", {{0}})).code, ErrorCode::kTopicAlreadyExists);
  ASSERT_TRUE(s.apply(4, create_topic("b", {{0}})).ok());
  EXPECT_EQ(before->topics_size(), 0);  // what was handed out never changes
  auto after = s.shared();
  EXPECT_EQ(after->topics_size(), 2);
  EXPECT_EQ(after->applied_index(), 4u);
  EXPECT_EQ(s.shared(), after);  // reading again makes no new copy
  ASSERT_TRUE(s.apply(5, create_topic("c", {{0}})).ok());
  EXPECT_EQ(after->topics_size(), 2);
  EXPECT_EQ(s.image().topics_size(), 3);
}

TEST(MetadataState, SerializeRestoreRoundTrip) {
  MetadataState s;
  ASSERT_TRUE(s.apply(1, register_broker(0)).ok());
  ASSERT_TRUE(s.apply(2, create_topic("t", {{0}})).ok());
  pb::Record ids;
  ids.mutable_allocate_producer_ids()->set_count(1000);
  auto r = s.apply(3, ids);
  EXPECT_EQ(r.value, 1000);
  MetadataState t;
  ASSERT_TRUE(t.restore(s.serialize()));
  EXPECT_EQ(t.image().SerializeAsString(), s.image().SerializeAsString());
  EXPECT_EQ(t.apply(4, ids).value, 2000);
  EXPECT_FALSE(t.restore("\xff\xff\xff garbage"));
}

TEST(MetadataState, ClusterIdIsSetOnce) {
  MetadataState s;
  pb::Record a, b;
  a.mutable_set_cluster_id()->set_cluster_id("first");
  b.mutable_set_cluster_id()->set_cluster_id("second");
  ASSERT_TRUE(s.apply(1, a).ok());
  ASSERT_TRUE(s.apply(2, b).ok());
  EXPECT_EQ(s.image().cluster_id(), "first");
}

TEST(MetadataState, PartitionsAndConfigsOfAMissingTopicAreRefused) {
  MetadataState s;
  pb::Record c;
  c.mutable_create_partitions()->set_name("nope");
  EXPECT_EQ(s.apply(1, c).code, ErrorCode::kUnknownTopicOrPartition);
  pb::Record d;
  d.mutable_set_topic_configs()->set_name("nope");
  EXPECT_EQ(s.apply(2, d).code, ErrorCode::kUnknownTopicOrPartition);
  pb::Record e;
  e.mutable_delete_topic()->set_name("nope");
  EXPECT_EQ(s.apply(3, e).code, ErrorCode::kUnknownTopicOrPartition);
  EXPECT_EQ(s.apply(4, pb::Record{}).code, ErrorCode::kInvalidRequest);
}

TEST(Metadata, BrokerConfigsReplaceTheResourcesSetAndSurviveASnapshot) {
  MetadataState s;
  pb::Record r;
  r.mutable_set_broker_configs()->set_broker("");
  (*r.mutable_set_broker_configs()->mutable_configs())["num.partitions"] = "4";
  ASSERT_TRUE(s.apply(1, r).ok());
  pb::Record b;
  b.mutable_set_broker_configs()->set_broker("2");
  (*b.mutable_set_broker_configs()->mutable_configs())["log.retention.ms"] = "1000";
  (*b.mutable_set_broker_configs()->mutable_configs())["num.partitions"] = "2";
  ASSERT_TRUE(s.apply(2, b).ok());
  pb::Record replace;
  replace.mutable_set_broker_configs()->set_broker("2");
  (*replace.mutable_set_broker_configs()->mutable_configs())["num.partitions"] = "3";
  ASSERT_TRUE(s.apply(3, replace).ok());
  MetadataState restored;
  ASSERT_TRUE(restored.restore(s.serialize()));
  const auto& all = restored.image().broker_configs();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all.at("").configs().at("num.partitions"), "4");
  EXPECT_EQ(all.at("2").configs().size(), 1u);  // the whole set was replaced
  EXPECT_EQ(all.at("2").configs().at("num.partitions"), "3");
  pb::Record clear;
  clear.mutable_set_broker_configs()->set_broker("");
  ASSERT_TRUE(s.apply(4, clear).ok());
  EXPECT_EQ(s.image().broker_configs().count(""), 0u);
  for (const char* bad : {"x", "-1", "01", "99999999999"}) {
    pb::Record w;
    w.mutable_set_broker_configs()->set_broker(bad);
    EXPECT_EQ(s.apply(5, w).code, ErrorCode::kInvalidRequest) << bad;
  }
}

TEST(ParseVoters, AcceptsKraftSyntaxAndRefusesTheRest) {
  auto v = parse_voters("2@host-b:9193,0@127.0.0.1:9093");
  ASSERT_TRUE(v);
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v)[0].id, 0);
  EXPECT_EQ((*v)[0].host, "127.0.0.1");
  EXPECT_EQ((*v)[1].port, 9193);
  for (const char* bad : {"x", "1@h", "1@:9093", "a@h:1", "1@h:0", "1@h:70000", "1@h:1,1@g:2",
                          "-1@h:1"}) {
    EXPECT_FALSE(parse_voters(bad)) << bad;
  }
  EXPECT_TRUE(parse_voters("")->empty());
}

}  // namespace
}  // namespace sluice::cluster
