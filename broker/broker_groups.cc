// The broker's side of consumer groups: __consumer_offsets at start-up and the coordinator's
// view of shards and partitions (group_coordinator.h); and log compaction of the topics with
// cleanup.policy compact (__consumer_offsets among them), in bounded steps on each shard.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <thread>

#include "broker/broker.h"
#include "broker/topic_config.h"
#include "log/compaction.h"

namespace sluice::broker {

namespace {

// Kafka's offsets.topic.segment.bytes default (small enough for compaction to keep up); a
// smaller --log.segment.bytes applies to it too.
constexpr int64_t kOffsetsSegmentBytes = 104857600;
// Segments rewritten per partition per compaction step (each step reads the whole log once).
constexpr uint32_t kCompactionSegmentsPerStep = 16;

}  // namespace

Status Broker::start_groups() {
  const std::string topic = GroupCoordinator::kTopic;
  if (!registry_->find(topic)) {
    cluster::TopicChange change;
    change.name = topic;
    change.partitions = std::max(1, config_.offsets_topic_partitions);
    // Replicated like any topic: min(3, controller voters) replicas (offsets.topic.replication
    // .factor), once that many brokers are up.
    const auto voters = cluster::parse_voters(config_.controller_voters);
    const int32_t rf = config_.offsets_topic_replication_factor > 0
                           ? config_.offsets_topic_replication_factor
                           : std::clamp(static_cast<int32_t>(voters ? voters->size() : 1), 1, 3);
    change.replication_factor = rf;
    change.internal = true;
    change.configs = {
        {"cleanup.policy", "compact"},
        {"segment.bytes", std::to_string(std::min(kOffsetsSegmentBytes, config_.segment_bytes))}};
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.controller_wait_ms);
    bool logged = false;
    while (true) {
      std::promise<Result<TopicInfo, TopicError>> created;
      create_topic(change, [&created](Result<TopicInfo, TopicError> r) {
        created.set_value(std::move(r));
      });
      auto r = created.get_future().get();
      if (r || r.error().code == kafka::ErrorCode::kTopicAlreadyExists) break;
      if (r.error().code != kafka::ErrorCode::kInvalidReplicationFactor ||
          std::chrono::steady_clock::now() > deadline) {
        return error(2, "cannot create " + topic + ": " + r.error().message);
      }
      if (!logged) {
        spdlog::info("waiting for {} brokers to create {} ({})", rf, topic, r.error().message);
        logged = true;
      }
      if (registry_->find(topic)) break;  // another broker created it meanwhile
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  auto snap = registry_->snapshot();
  const TopicInfo* info = snap->find(topic);
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
  // Only the partition's serving leader coordinates its groups (tick_raft moves them).
  host.log_of = [this, topic](int32_t p) -> log::PartitionLog* {
    Partition* part = shard_of({topic, p}).find({topic, p});
    return part && part->serving() ? part->log.get() : nullptr;
  };
  host.replicate = [this, topic](int32_t p, MutableBytes batch,
                                 std::function<void(kafka::ErrorCode)> done) {
    Partition* part = shard_of({topic, p}).find({topic, p});
    if (!part || !part->replica) return kafka::ErrorCode::kCoordinatorNotAvailable;
    if (!part->replica->serving()) return kafka::ErrorCode::kNotLeaderOrFollower;
    return part->replica->produce(batch, -1, [done](kafka::ErrorCode e, int64_t) { done(e); });
  };
  host.after_append = [this, topic](int32_t p) {
    ShardState& ss = shard_of({topic, p});
    if (Partition* part = ss.find({topic, p})) notify_waiters(*part);
    ss.ring->submit();
  };
  host.partition_count = [this](const std::string& name) {
    const std::optional<TopicInfo> t = registry_->find(name);
    return t ? t->partitions : -1;
  };
  // The coordinator of a group is the broker leading its __consumer_offsets partition.
  host.address = [this, topic](int32_t partition, std::string& h, int32_t& port,
                               int32_t& node) {
    auto snap = registry_->snapshot();
    const PartitionInfo* p = snap->partition(topic, partition);
    auto b = p ? snap->brokers.find(p->leader) : snap->brokers.end();
    if (b == snap->brokers.end() || b->second.fenced) return false;
    h = b->second.host;
    port = b->second.port;
    node = b->second.id;
    return true;
  };
  host.wake_at = [this](uint32_t shard, int64_t at_ms) {
    ShardState& ss = *shards_[shard];
    if (!ss.group_timer) {
      ss.group_timer = std::make_unique<boost::asio::steady_timer>(ss.shard.context());
    }
    // Replaces the pending wait, whose handler then sees operation_aborted.
    ss.group_timer->expires_at(
        std::chrono::steady_clock::time_point(std::chrono::milliseconds(at_ms)));
    ss.group_timer->async_wait([this, shard](boost::system::error_code ec) {
      if (!ec) groups_->on_timer(shard);
    });
  };
  groups_ = std::make_unique<GroupCoordinator>(options, std::move(host));
  if (auto s = groups_->load(); !s) return s;
  groups_ready_.store(true, std::memory_order_release);
  return {};
}

void Broker::compact_partitions(ShardState& ss) {
  // Every fifth step looks again at logs that did not change: tombstones may have expired.
  static thread_local uint64_t steps = 0;
  const bool recheck = ++steps % 5 == 0;
  auto snap = registry_->snapshot();
  const auto live = live_config();
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (auto& [tp, p] : ss.partitions) {
    if (p->deleting || p->log->failed() || !p->log->idle()) continue;
    const TopicInfo* topic = snap->find(tp.topic);
    if (!topic || topic_setting_value(*topic, *live, "cleanup.policy").find("compact") ==
                      std::string::npos) {
      continue;
    }
    const int64_t end = *p->log->log_end_offset();
    if (end == p->compaction_checked_end && !recheck) continue;  // nothing new since then
    log::CompactionStats stats;
    log::CompactionOptions options;
    options.now_ms = now;
    options.delete_retention_ms = topic_setting_int(*topic, *live, "delete.retention.ms");
    options.segments_max = kCompactionSegmentsPerStep;
    auto r = log::compact_step(*p->log, options, &p->compaction_cursor, stats);
    if (!r) {
      spdlog::warn("{}-{}: compaction failed: {}", tp.topic, tp.partition, r.error().message);
      p->compaction_checked_end = end;
      continue;
    }
    if (!*r) {
      p->compaction_checked_end = end;
      continue;
    }
    spdlog::info(
        "{}-{}: compacted {} segment(s), {} -> {} bytes, {} record(s) removed ({} "
        "tombstones)",
        tp.topic, tp.partition, stats.segments_rewritten, stats.bytes_before, stats.bytes_after,
        stats.records_removed, stats.tombstones_removed);
  }
}

}  // namespace sluice::broker
