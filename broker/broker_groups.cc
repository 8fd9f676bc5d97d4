// The broker's side of consumer groups: __consumer_offsets at start-up and the coordinator's
// view of shards and partitions (group_coordinator.h).
#include <spdlog/spdlog.h>

#include <future>

#include "broker/broker.h"

namespace sluice::broker {

namespace {

// Kafka's offsets.topic.segment.bytes default: small enough for compaction to keep up.
constexpr const char* kOffsetsSegmentBytes = "104857600";

}  // namespace

Status Broker::start_groups() {
  const std::string topic = GroupCoordinator::kTopic;
  if (!registry_->snapshot()->find(topic)) {
    std::promise<Result<TopicInfo, TopicError>> created;
    create_topic(topic, std::max(1, config_.offsets_topic_partitions), 1,
                 {{"cleanup.policy", "compact"}, {"segment.bytes", kOffsetsSegmentBytes}},
                 [&created](Result<TopicInfo, TopicError> r) { created.set_value(std::move(r)); });
    auto r = created.get_future().get();
    if (!r && r.error().code != kafka::ErrorCode::kTopicAlreadyExists) {
      return error(2, "cannot create " + topic + ": " + r.error().message);
    }
  }
  const TopicInfo* info = registry_->snapshot()->find(topic);
  if (!info) return error(2, topic + " is missing after creating it");
  if (info->partitions != config_.offsets_topic_partitions) {
    spdlog::warn("{} has {} partitions (--offsets.topic.num.partitions is {}); keeping {}", topic,
                 info->partitions, config_.offsets_topic_partitions, info->partitions);
  }
  CoordinatorOptions options;
  options.partitions = info->partitions;
  options.limits.min_session_timeout_ms = config_.group_min_session_timeout_ms;
  options.limits.max_session_timeout_ms = config_.group_max_session_timeout_ms;
  options.limits.initial_rebalance_delay_ms = config_.group_initial_rebalance_delay_ms;
  CoordinatorHost host;
  host.shard_count = static_cast<uint32_t>(shards_.size());
  host.shard_of = [this, topic](int32_t p) { return shard_of({topic, p}).shard.id(); };
  host.post = [this](uint32_t shard, std::function<void()> fn) {
    shards_[shard]->shard.post(std::move(fn));
  };
  host.log_of = [this, topic](int32_t p) -> log::PartitionLog* {
    Partition* part = shard_of({topic, p}).find({topic, p});
    return part ? part->log.get() : nullptr;
  };
  host.after_append = [this, topic](int32_t p) {
    ShardState& ss = shard_of({topic, p});
    if (Partition* part = ss.find({topic, p})) notify_waiters(*part);
    ss.ring->submit();
  };
  host.partition_count = [this](const std::string& name) {
    const TopicInfo* t = registry_->snapshot()->find(name);
    return t ? t->partitions : -1;
  };
  host.address = [this](std::string& h, int32_t& port, int32_t& node) {
    const HostPort& adv = config_.advertised_address();
    h = adv.host;
    port = adv.port;
    node = config_.node_id;
  };
  groups_ = std::make_unique<GroupCoordinator>(options, std::move(host));
  if (auto s = groups_->load(); !s) return s;
  groups_ready_.store(true, std::memory_order_release);
  return {};
}

}  // namespace sluice::broker
