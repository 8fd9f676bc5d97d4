#include "broker/topic_registry.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "broker/topic_config.h"

namespace sluice::broker {
namespace {

std::string fresh_dir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) / ("registry-" + name);
  std::filesystem::remove_all(dir);
  return dir.string();
}

TEST(TopicRegistry, CreateSurvivesReopen) {
  const auto dir = fresh_dir("reopen");
  std::string cluster;
  {
    auto reg = TopicRegistry::open(dir, "");
    ASSERT_TRUE(reg) << reg.error().message;
    cluster = (*reg)->cluster_id();
    EXPECT_EQ(cluster.size(), 22u);
    ASSERT_TRUE((*reg)->create("orders", 3, 1, {{"retention.ms", "1000"}}));
    auto dup = (*reg)->create("orders", 3, 1, {});
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code, kafka::ErrorCode::kTopicAlreadyExists);
    ASSERT_TRUE((*reg)->set_partition_count("orders", 5));
    ASSERT_TRUE((*reg)->create("gone", 1, 1, {}));
    ASSERT_TRUE((*reg)->remove("gone"));
  }
  auto reg = TopicRegistry::open(dir, "");
  ASSERT_TRUE(reg);
  EXPECT_EQ((*reg)->cluster_id(), cluster);
  auto snap = (*reg)->snapshot();
  ASSERT_NE(snap->find("orders"), nullptr);
  EXPECT_EQ(snap->find("orders")->partitions, 5);
  EXPECT_EQ(snap->find("orders")->configs.at("retention.ms"), "1000");
  EXPECT_EQ(snap->find("gone"), nullptr);
}

TEST(TopicRegistry, RejectsBadNamesAndCounts) {
  auto reg = TopicRegistry::open(fresh_dir("bad"), "c1");
  ASSERT_TRUE(reg);
  for (const char* bad : {"", ".", "..", "has space", "slash/x", "ü"}) {
    auto r = (*reg)->create(bad, 1, 1, {});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, kafka::ErrorCode::kInvalidTopicException);
  }
  EXPECT_EQ((*reg)->create(std::string(250, 'a'), 1, 1, {}).error().code,
            kafka::ErrorCode::kInvalidTopicException);
  EXPECT_EQ((*reg)->create("t", 0, 1, {}).error().code, kafka::ErrorCode::kInvalidPartitions);
  ASSERT_TRUE((*reg)->create("t", 2, 1, {}));
  EXPECT_EQ((*reg)->set_partition_count("t", 1).error().code, kafka::ErrorCode::kInvalidPartitions);
}

TEST(TopicRegistry, ProducerIdsAreNeverReused) {
  const auto dir = fresh_dir("pids");
  int64_t first;
  {
    auto reg = TopicRegistry::open(dir, "");
    first = *(*reg)->allocate_producer_ids(1);
    EXPECT_EQ(*(*reg)->allocate_producer_ids(1), first + 1);
  }
  auto reg = TopicRegistry::open(dir, "");
  EXPECT_EQ(*(*reg)->allocate_producer_ids(1), first + 2);
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
  TopicInfo t{"t", 1, 1, {{"segment.bytes", "2048"}}, {}, false};
  EXPECT_EQ(topic_setting_int(t, config, "segment.bytes"), 2048);
  EXPECT_EQ(topic_setting_int(t, config, "retention.bytes"), -1);
}

TEST(TopicRegistry, InternalTopicsAreNotClientsToChange) {
  auto reg = TopicRegistry::open(fresh_dir("internal"), "");
  ASSERT_TRUE(reg);
  ASSERT_TRUE((*reg)->create("__consumer_offsets", 8, 1, {{"cleanup.policy", "compact"}}));
  EXPECT_TRUE((*reg)->find("__consumer_offsets")->internal);
  for (auto r : {(*reg)->remove("__consumer_offsets"),
                 (*reg)->set_partition_count("__consumer_offsets", 9),
                 (*reg)->set_configs("__consumer_offsets", {})}) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, kafka::ErrorCode::kTopicAuthorizationFailed);
  }
  EXPECT_EQ((*reg)->find("__consumer_offsets")->partitions, 8);
  ASSERT_TRUE((*reg)->discard("__consumer_offsets"));  // an unfinished creation is undone
  EXPECT_FALSE((*reg)->find("__consumer_offsets"));
}

TEST(TopicRegistry, PartitionsAreBoundedPerBroker) {
  auto reg = TopicRegistry::open(fresh_dir("bounded"), "");
  ASSERT_TRUE(reg);
  (*reg)->set_partitions_max(10);
  ASSERT_TRUE((*reg)->create("a", 6, 1, {}));
  auto over = (*reg)->create("b", 5, 1, {});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, kafka::ErrorCode::kInvalidPartitions);
  EXPECT_FALSE((*reg)->find("b"));  // nothing saved
  ASSERT_TRUE((*reg)->create("b", 4, 1, {}));
  auto grow = (*reg)->set_partition_count("a", 7);
  ASSERT_FALSE(grow);
  EXPECT_EQ(grow.error().code, kafka::ErrorCode::kInvalidPartitions);
  EXPECT_EQ((*reg)->find("a")->partitions, 6);
}

}  // namespace
}  // namespace sluice::broker
