// The broker's side of consumer groups: __consumer_offsets at start-up and the coordinator's
// view of shards and partitions (group_coordinator.h); and log compaction of the topics with
// cleanup.policy compact (__consumer_offsets among them): passes picked on each shard and run
// on the cleaner thread (broker/cleaner.h), whose rewritten segments the shards install.
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

}  // namespace

Broker::InternalTopicOps Broker::internal_topic_ops(const std::string& topic) {
  InternalTopicOps ops;
  ops.shard_of = [this, topic](int32_t p) { return shard_of({topic, p}).shard.id(); };
  ops.post = [this](uint32_t shard, std::function<void()> fn) {
    shards_[shard]->shard.post(std::move(fn));
  };
  // Only the partition's serving leader coordinates (tick_raft moves it with leadership).
  ops.log_of = [this, topic](int32_t p) -> log::PartitionLog* {
    Partition* part = shard_of({topic, p}).find({topic, p});
    return part && part->serving() ? part->log.get() : nullptr;
  };
  ops.replicate = [this, topic](int32_t p, MutableBytes batch,
                                std::function<void(kafka::ErrorCode)> done) {
    Partition* part = shard_of({topic, p}).find({topic, p});
    if (!part || !part->replica) return kafka::ErrorCode::kCoordinatorNotAvailable;
    if (!part->replica->serving()) return kafka::ErrorCode::kNotLeaderOrFollower;
    const kafka::ErrorCode e =
        part->replica->produce(batch, -1, [done](kafka::ErrorCode e, int64_t) { done(e); });
    // TxnOffsetCommit's transactional batches open the producer's transaction here, as
    // followers record it on append (the marker's checks and the LSO follow it).
    if (e == kafka::ErrorCode::kNone) {
      part->producers.record_batch(*kafka::RecordBatchView::parse(batch));
    }
    return e;
  };
  ops.after_append = [this, topic](int32_t p) {
    ShardState& ss = shard_of({topic, p});
    if (Partition* part = ss.find({topic, p})) notify_waiters(*part);
    ss.ring->submit();
  };
  return ops;
}

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
  InternalTopicOps ops = internal_topic_ops(topic);
  host.shard_of = std::move(ops.shard_of);
  host.post = std::move(ops.post);
  host.log_of = std::move(ops.log_of);
  host.replicate = std::move(ops.replicate);
  host.after_append = std::move(ops.after_append);
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
  if (!cleaner_ || stopping_) return;
  // Every tenth look (~10 s) goes over logs with nothing new: tombstones may have expired.
  static thread_local uint64_t looks = 0;
  const bool recheck = ++looks % 10 == 0;
  auto snap = registry_->snapshot();
  const auto live = live_config();
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  // Partitions come in topic order: the topic and its policy are looked up once per topic.
  const std::string* last_topic = nullptr;
  const TopicInfo* topic = nullptr;
  bool compacted = false;
  for (auto& [tp, p] : ss.partitions) {
    if (p->deleting || p->log->failed() || p->cleaning_pass != 0) continue;
    if (last_topic == nullptr || *last_topic != tp.topic) {
      last_topic = &tp.topic;
      topic = snap->find(tp.topic);
      compacted = topic != nullptr &&
                  topic_setting_value(*topic, *live, "cleanup.policy").find("compact") !=
                      std::string::npos;
    }
    if (!compacted) continue;
    // Only what is committed (Raft never truncates below the high watermark) and stable: a
    // transaction still open, or whose end is not committed, may yet be aborted, and its
    // records must not replace a key's committed value (Kafka's cleaner stops at the LSO).
    const TxnTable& txns = p->producers.txns();
    const int64_t hw = txns.last_stable_offset(p->high_watermark());
    if (hw == p->compaction_checked_end && !recheck) continue;  // nothing new since then
    std::vector<log::ClosedSegment> closed = p->log->closed_segments(hw);
    const int64_t dirty_from = p->log->first_dirty_offset();
    if (closed.empty() || (closed.back().end_offset <= dirty_from && !recheck)) {
      p->compaction_checked_end = hw;
      continue;
    }
    log::CompactionOptions options;
    options.now_ms = now;
    options.delete_retention_ms = topic_setting_int(*topic, *live, "delete.retention.ms");
    options.map_bytes = static_cast<uint64_t>(config_.cleaner_dedupe_buffer_bytes);
    options.index_interval_bytes = p->log_config.index_interval_bytes;
    // Aborted transactions' records go, and are never a key's latest value.
    for (const AbortedTxn& a : txns.aborted()) {
      options.aborted.push_back({a.producer_id, a.first_offset, a.last_offset});
    }
    std::sort(options.aborted.begin(), options.aborted.end(),
              [](const log::AbortedRange& x, const log::AbortedRange& y) {
                return std::pair{x.producer_id, x.first_offset} <
                       std::pair{y.producer_id, y.first_offset};
              });
    // Markers go and producers' emptied batches merge, as Kafka's cleaner does; each
    // producer's last batch and latest epoch-raising marker stay (a restart reads them).
    log::CompactionOptions::Producers producers;
    for (const auto& [pid, e] : p->producers.producers()) {  // std::map: sorted by id
      producers.last_batch.emplace_back(pid, e.batches.empty() ? -1 : e.batches.back().base_offset);
      if (e.bump_offset >= 0) producers.kept_markers.push_back(e.bump_offset);
    }
    std::sort(producers.kept_markers.begin(), producers.kept_markers.end());
    options.producers = std::move(producers);
    const uint64_t pass = ++cleaning_passes_;
    p->cleaning_pass = pass;
    p->cleaning_cancel = std::make_shared<std::atomic<bool>>(false);
    ShardState* shard = &ss;
    cleaner_->submit(p->cleaning_cancel, [this, shard, tp = tp, pass, hw, options, dirty_from,
                                          history = p->log->history(),
                                          closed = std::move(closed)](
                                             const std::atomic<bool>& cancel) {
      run_cleaning_pass(*shard, tp, pass, hw, history, closed, dirty_from, options, cancel);
    });
  }
}

// On the cleaner thread: maps, cleans each segment, posts each to the shard to install, then
// posts the end of the pass. The shard's callbacks find the partition again by name and pass.
void Broker::run_cleaning_pass(ShardState& ss, const TopicPartition& tp, uint64_t pass,
                               int64_t hw, uint64_t history,
                               const std::vector<log::ClosedSegment>& closed, int64_t dirty_from,
                               const log::CompactionOptions& options,
                               const std::atomic<bool>& cancel) {
  // Touched only on the shard (the posts below); the cleaner's own findings travel by value.
  struct Outcome {
    log::CompactionStats stats;
    bool complete = true;  // every segment that needed it was rewritten
    std::string error;
  };
  auto outcome = std::make_shared<Outcome>();
  auto find = [&ss, tp, pass]() -> Partition* {
    auto it = ss.partitions.find(tp);
    return it == ss.partitions.end() || it->second->cleaning_pass != pass ? nullptr
                                                                          : it->second.get();
  };
  std::string error;  // the cleaner's
  log::OffsetMap map(options.map_bytes);
  auto map_end = log::build_offset_map(closed, dirty_from, map, options, &cancel);
  const uint64_t keys_mapped = map.size();
  if (!map_end) {
    error = map_end.error().message;
  } else {
    log::MarkerScan scan;  // the segments from the log start, in order
    for (const log::ClosedSegment& seg : closed) {
      if (seg.base_offset >= *map_end || cancel.load()) break;
      auto cleaned = log::clean_segment(seg, map, *map_end, options, &cancel, &scan);
      if (!cleaned) {
        error = cleaned.error().message;
        break;
      }
      if (!*cleaned) continue;
      ss.shard.post([find, outcome, history, c = std::move(**cleaned)] {
        Partition* p = find();
        if (!p) {
          log::discard(c);
          outcome->complete = false;
          return;
        }
        auto installed = p->log->install_cleaned_segment(c, history);
        if (!installed) {
          outcome->error = installed.error().message;
          outcome->complete = false;
        } else if (*installed == log::Installed::kInstalled) {
          outcome->stats.add(c.stats);
        } else if (*installed == log::Installed::kChanged) {
          outcome->complete = false;
        }
      });
    }
  }
  const bool cancelled = cancel.load();
  const int64_t end = map_end ? *map_end : dirty_from;
  ss.shard.post([find, outcome, tp, hw, end, cancelled, history, dirty_from, keys_mapped,
                 error = std::move(error)] {
    Partition* p = find();
    if (!p) return;
    p->cleaning_pass = 0;
    p->cleaning_cancel.reset();
    outcome->stats.keys_mapped = keys_mapped;
    if (outcome->error.empty()) outcome->error = error;
    if (!outcome->error.empty() && !cancelled) {
      spdlog::warn("{}-{}: compaction failed: {}", tp.topic, tp.partition, outcome->error);
      p->compaction_checked_end = hw;  // not again before new data or the next recheck
    }
    const bool done = outcome->error.empty() && !cancelled && outcome->complete &&
                      p->log->history() == history;
    if (done) {
      p->log->set_first_dirty_offset(end);
      if (end == dirty_from && outcome->stats.segments_rewritten == 0) {
        p->compaction_checked_end = hw;  // nothing new and nothing to remove
      }
    }
    if (outcome->stats.segments_rewritten > 0) {
      const auto& s = outcome->stats;
      spdlog::info(
          "{}-{}: compacted {} segment(s), {} -> {} bytes, {} record(s) removed ({} "
          "tombstones), {} transaction marker(s) removed, {} key(s) mapped up to offset {}",
          tp.topic, tp.partition, s.segments_rewritten, s.bytes_before, s.bytes_after,
          s.records_removed, s.tombstones_removed, s.markers_removed, s.keys_mapped, end);
    }
  });
}

}  // namespace sluice::broker
