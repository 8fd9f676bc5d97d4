// The metadata view over a real one-node controller (cluster/cluster_node.h) in a temporary
// directory: changes go through the controller's Raft log and come back as images.
#include "broker/topic_registry.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "broker/topic_config.h"

namespace sluice::broker {
namespace {

std::string fresh_dir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) / ("registry-" + name);
  std::filesystem::remove_all(dir);
  return dir.string();
}

// A one-node cluster and the registry that follows its images.
struct Node {
  explicit Node(const std::string& dir, const std::string& cluster_id = "") {
    cluster::ClusterConfig c;
    c.node_id = 0;
    c.data_dir = dir;
    c.kafka_host = "127.0.0.1";
    c.kafka_port = 9092;
    c.rpc_listen_port = 0;  // a one-node cluster needs no inter-broker listener
    c.cluster_id = cluster_id;
    node = std::make_unique<cluster::ClusterNode>(c);
    reg = std::make_unique<TopicRegistry>(*node);
    auto s = node->start();
    EXPECT_TRUE(s) << s.error().message;
    s = node->wait_ready(std::chrono::seconds(20));
    EXPECT_TRUE(s) << s.error().message;
    node->on_image([this](std::shared_ptr<const cluster::pb::Image> img) { reg->publish(*img); });
  }
  ~Node() { node->stop(); }

  template <class F>
  Result<TopicInfo, TopicError> wait(F&& call) {
    std::promise<Result<TopicInfo, TopicError>> p;
    call([&p](Result<TopicInfo, TopicError> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  Result<TopicInfo, TopicError> create(const std::string& name, int32_t partitions,
                                       std::map<std::string, std::string> configs = {}) {
    cluster::TopicChange c;
    c.name = name;
    c.partitions = partitions;
    c.replication_factor = 1;
    c.configs = std::move(configs);
    return wait([&](auto done) { reg->create(c, false, done); });
  }

  std::unique_ptr<cluster::ClusterNode> node;
  std::unique_ptr<TopicRegistry> reg;
};

TEST(TopicRegistry, ARetriedCreateGetsTheTopicItsFirstAttemptCreated) {
  Node n(fresh_dir("retry"));
  auto create = [](const std::string& request_id) {
    cluster::pb::ControllerRequest req;
    auto* t = req.mutable_create_topic();
    t->set_name("once");
    t->set_partitions(2);
    t->set_replication_factor(1);
    t->set_request_id(request_id);
    return req;
  };
  const std::string id(16, 'a');
  // Two attempts of one request in flight at once (the first timed out at the requester):
  // however they interleave (both proposed: metadata_test TwoAttemptsOfOneCreate...; or the
  // second finding the topic made), both answers carry the one topic.
  std::promise<cluster::pb::ControllerResponse> first, second;
  n.node->request(create(id), std::chrono::seconds(10),
                  [&](cluster::pb::ControllerResponse r) { first.set_value(std::move(r)); });
  n.node->request(create(id), std::chrono::seconds(10),
                  [&](cluster::pb::ControllerResponse r) { second.set_value(std::move(r)); });
  const auto a = first.get_future().get();
  const auto b = second.get_future().get();
  ASSERT_EQ(a.error_code(), 0) << a.error_message();
  ASSERT_EQ(b.error_code(), 0) << b.error_message();
  EXPECT_EQ(a.topic().topic_id(), b.topic().topic_id());
  EXPECT_EQ(a.topic().partitions_size(), 2);
  // A retry after the topic exists (answered from the image, no record).
  std::promise<cluster::pb::ControllerResponse> third, other;
  n.node->request(create(id), std::chrono::seconds(10),
                  [&](cluster::pb::ControllerResponse r) { third.set_value(std::move(r)); });
  const auto c = third.get_future().get();
  ASSERT_EQ(c.error_code(), 0) << c.error_message();
  EXPECT_EQ(c.topic().topic_id(), a.topic().topic_id());
  // Another request for the name is refused as before.
  n.node->request(create(std::string(16, 'b')), std::chrono::seconds(10),
                  [&](cluster::pb::ControllerResponse r) { other.set_value(std::move(r)); });
  EXPECT_EQ(other.get_future().get().error_code(),
            static_cast<int32_t>(kafka::ErrorCode::kTopicAlreadyExists));
}

TEST(TopicRegistry, ChangesSurviveARestart) {
  const auto dir = fresh_dir("reopen");
  std::string cluster_id;
  {
    Node n(dir);
    cluster_id = n.reg->cluster_id();
    EXPECT_EQ(cluster_id.size(), 22u);
    auto created = n.create("orders", 3, {{"retention.ms", "1000"}});
    ASSERT_TRUE(created) << created.error().message;
    EXPECT_EQ(created->parts.size(), 3u);
    EXPECT_EQ(created->parts[0].replicas, std::vector<int32_t>{0});
    // The view already holds what the call reported.
    ASSERT_NE(n.reg->snapshot()->find("orders"), nullptr);
    auto dup = n.create("orders", 3);
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code, kafka::ErrorCode::kTopicAlreadyExists);
    ASSERT_TRUE(n.wait([&](auto d) { n.reg->set_partition_count("orders", 5, {}, false, d); }));
    ASSERT_TRUE(n.create("gone", 1));
    ASSERT_TRUE(n.wait([&](auto d) { n.reg->remove("gone", d); }));
  }
  Node n(dir);
  EXPECT_EQ(n.reg->cluster_id(), cluster_id);
  auto snap = n.reg->snapshot();
  ASSERT_NE(snap->find("orders"), nullptr);
  EXPECT_EQ(snap->find("orders")->partitions, 5);
  EXPECT_EQ(snap->find("orders")->configs.at("retention.ms"), "1000");
  EXPECT_EQ(snap->find("gone"), nullptr);
  ASSERT_EQ(snap->brokers.size(), 1u);
  EXPECT_FALSE(snap->brokers.at(0).fenced);
}

TEST(TopicRegistry, RejectsBadNamesCountsAndReplicationFactors) {
  Node n(fresh_dir("bad"), "c1");
  EXPECT_EQ(n.reg->cluster_id(), "c1");
  for (const char* bad : {"", ".", "..", "has space", "slash/x", "ü"}) {
    auto r = n.create(bad, 1);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, kafka::ErrorCode::kInvalidTopicException);
  }
  EXPECT_EQ(n.create(std::string(250, 'a'), 1).error().code,
            kafka::ErrorCode::kInvalidTopicException);
  EXPECT_EQ(n.create("t", 0).error().code, kafka::ErrorCode::kInvalidPartitions);
  ASSERT_TRUE(n.create("t", 2));
  auto shrink = n.wait([&](auto d) { n.reg->set_partition_count("t", 1, {}, false, d); });
  EXPECT_EQ(shrink.error().code, kafka::ErrorCode::kInvalidPartitions);
  cluster::TopicChange three;
  three.name = "rf3";
  three.partitions = 1;
  three.replication_factor = 3;
  auto r = n.wait([&](auto d) { n.reg->create(three, false, d); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, kafka::ErrorCode::kInvalidReplicationFactor);
  EXPECT_EQ(n.reg->snapshot()->find("rf3"), nullptr);
}

TEST(TopicRegistry, ProducerIdsAreNeverReused) {
  const auto dir = fresh_dir("pids");
  int64_t first;
  {
    Node n(dir);
    first = *n.reg->allocate_producer_ids(10);
    EXPECT_EQ(*n.reg->allocate_producer_ids(10), first + 10);
  }
  Node n(dir);
  EXPECT_EQ(*n.reg->allocate_producer_ids(1), first + 20);
}

TEST(TopicConfig, ValidatesNamesAndValues) {
  EXPECT_TRUE(validate_topic_configs({{"cleanup.policy", "compact"}, {"retention.ms", "-1"}}));
  EXPECT_EQ(validate_topic_configs({{"no.such", "1"}}).error().code,
            kafka::ErrorCode::kInvalidConfig);
  EXPECT_FALSE(validate_topic_configs({{"retention.ms", "soon"}}));
  // The log's own limits, so nothing stored can refuse start-up (issue 16).
  EXPECT_FALSE(validate_topic_configs({{"segment.bytes", "100"}}));
  EXPECT_FALSE(validate_topic_configs({{"segment.bytes", "1099511627776"}}));
  EXPECT_TRUE(validate_topic_configs({{"segment.bytes", "1073741824"}}));
  EXPECT_FALSE(validate_topic_configs({{"max.message.bytes", "1073741824"}}));
  EXPECT_FALSE(validate_topic_configs({{"cleanup.policy", "keep"}}));
  BrokerConfig config;
  TopicInfo t{"t", 1, 1, {{"segment.bytes", "2048"}}, {}, false, {}};
  EXPECT_EQ(topic_setting_int(t, config, "segment.bytes"), 2048);
  EXPECT_EQ(topic_setting_int(t, config, "retention.bytes"), -1);
}

TEST(TopicRegistry, InternalTopicsAreNotClientsToChange) {
  Node n(fresh_dir("internal"));
  cluster::TopicChange c;
  c.name = "__consumer_offsets";
  c.partitions = 8;
  c.internal = true;
  c.configs = {{"cleanup.policy", "compact"}};
  ASSERT_TRUE(n.wait([&](auto d) { n.reg->create(c, false, d); }));
  EXPECT_TRUE(n.reg->find("__consumer_offsets")->internal);
  for (auto r :
       {n.wait([&](auto d) { n.reg->remove("__consumer_offsets", d); }),
        n.wait([&](auto d) { n.reg->set_partition_count("__consumer_offsets", 9, {}, false, d); }),
        n.wait([&](auto d) { n.reg->set_configs("__consumer_offsets", {}, d); })}) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, kafka::ErrorCode::kTopicAuthorizationFailed);
  }
  EXPECT_EQ(n.reg->find("__consumer_offsets")->partitions, 8);
}

TEST(TopicRegistry, PartitionsAreBoundedPerBroker) {
  Node n(fresh_dir("bounded"));
  n.reg->set_partitions_max(10);
  ASSERT_TRUE(n.create("a", 6));
  auto over = n.create("b", 5);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, kafka::ErrorCode::kInvalidPartitions);
  EXPECT_FALSE(n.reg->find("b"));  // nothing saved
  ASSERT_TRUE(n.create("b", 4));
  auto grow = n.wait([&](auto d) { n.reg->set_partition_count("a", 7, {}, false, d); });
  ASSERT_FALSE(grow);
  EXPECT_EQ(grow.error().code, kafka::ErrorCode::kInvalidPartitions);
  EXPECT_EQ(n.reg->find("a")->partitions, 6);
}

}  // namespace
}  // namespace sluice::broker
