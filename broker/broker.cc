#include "broker/broker.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>
#include <tuple>

#include "broker/kafka_errors.h"
#include "broker/metadata.pb.h"
#include "broker/tls.h"
#include "broker/topic_config.h"
#include "broker/version.h"
#include "common/clock.h"
#include "log/logging.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

namespace asio = boost::asio;

namespace {

constexpr auto kTickPeriod = std::chrono::milliseconds(100);
constexpr size_t kOffsetsTopicChars = std::char_traits<char>::length(GroupCoordinator::kTopic);
constexpr size_t kTxnTopicChars = std::char_traits<char>::length(TxnCoordinator::kTopic);
// CreateTopics answers once the new partitions have leaders, or after this long.
constexpr auto kCreateLeadersWait = std::chrono::milliseconds(3000);
// A controlled shutdown waits this long for its partitions' leadership to move.
constexpr auto kHandOffWait = std::chrono::milliseconds(3000);
constexpr int kRetentionEveryTicks = 50;   // retention check every ~5 s
constexpr uint64_t kMoveCheckTicks = 4;     // moves and leader balance: every 4th Raft tick
constexpr int kCompactionEveryTicks = 10;  // a compaction step every ~1 s (broker_groups.cc)
// Producer state is rebuilt from at most this many bytes at the end of each log.
constexpr uint64_t kProducerStateScanBytes = 64ull << 20;
constexpr int64_t kProducerIdBlock = 1000;

void route_log_line(log::LogLevel level, std::string_view message) {
  switch (level) {
    case log::LogLevel::kInfo:
      spdlog::info("{}", message);
      break;
    case log::LogLevel::kWarning:
      spdlog::warn("{}", message);
      break;
    case log::LogLevel::kError:
      spdlog::error("{}", message);
      break;
  }
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string partition_dir(const std::string& data_dir, const TopicPartition& tp) {
  return data_dir + "/" + tp.topic + "-" + std::to_string(tp.partition);
}

}  // namespace

Result<std::unique_ptr<Broker>> Broker::create(const BrokerConfig& config) {
  log::set_log_sink(route_log_line);
  auto broker = std::unique_ptr<Broker>(new Broker(config));
  if (broker->config_.shards == 0) {
    broker->config_.shards = std::max(1u, std::thread::hardware_concurrency());
  }
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return error(2, "cannot create data directory '" + config.data_dir + "': " + ec.message());
  // The lock comes first: nothing in the directory is read or written without it.
  auto lock = DataDirLock::acquire(config.data_dir);
  if (!lock) return unexpected(std::move(lock).error());
  broker->lock_ = std::make_unique<DataDirLock>(std::move(*lock));
  auto voters = cluster::parse_voters(config.controller_voters);
  if (!voters) return unexpected(std::move(voters).error());
  const bool legacy = std::filesystem::exists(config.data_dir + "/metadata.bin");
  if (legacy && !voters->empty()) {
    return error(2, "data directory '" + config.data_dir +
                        "' holds a single-node broker's metadata (metadata.bin); start it once "
                        "without --controller.voters to migrate it, or use an empty directory");
  }
  if (auto s = check_metadata_present(config); !s) return unexpected(std::move(s).error());
  if (config.rebuild_metadata && raft::FileRaftStorage::exists(config.data_dir + "/controller")) {
    // Damaged controller state is set aside (kept for the operator); the topics come back
    // from the partition directories.
    raft::FileRaftStorage probe(config.data_dir + "/controller");
    if (auto loaded = probe.load(); !loaded) {
      const std::string aside = config.data_dir + "/controller.damaged-" +
                                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                   std::chrono::system_clock::now().time_since_epoch())
                                                   .count());
      spdlog::warn("--rebuild-metadata: controller state unreadable ({}); moved to {}",
                   loaded.error().message, aside);
      std::filesystem::rename(config.data_dir + "/controller", aside, ec);
      if (ec) return error(2, "cannot move the damaged controller state aside: " + ec.message());
    }
  }
  for (uint32_t i = 0; i < broker->config_.shards; ++i) {
    broker->shards_.push_back(std::make_unique<ShardState>(i));
  }
  return broker;
}

Broker::~Broker() { stop(); }

Broker::DescriptorPlan Broker::plan_descriptors(size_t shards) {
  DescriptorPlan plan;
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return plan;
  if (lim.rlim_cur < lim.rlim_max) {
    struct rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max == RLIM_INFINITY ? std::max<rlim_t>(lim.rlim_cur, 1 << 20)
                                                    : lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  plan.open_files = static_cast<int64_t>(std::min<rlim_t>(lim.rlim_cur, 1 << 24));
  // Half of a shard's share for closed segments' handles, half for holders, within the
  // defaults (1024 handles, 256 holders); at least 16 of each however low the limit.
  const int64_t share =
      std::max<int64_t>(0, plan.open_files - kDescriptorsReserved) /
      static_cast<int64_t>(std::max<size_t>(1, shards));
  plan.cache_per_shard = static_cast<size_t>(std::clamp<int64_t>(share / 2, 16, 1024));
  plan.holders_per_shard =
      static_cast<size_t>(std::clamp<int64_t>(share / 2 / kDescriptorsPerHolder, 16, 256));
  // Busy holders: the share less the closed segments' handles, two holders per 7 descriptors;
  // at least the idle cap and room for a few partitions however low the limit.
  const int64_t for_holders = share - static_cast<int64_t>(plan.cache_per_shard);
  plan.busy_per_shard = static_cast<size_t>(
      std::max<int64_t>(static_cast<int64_t>(plan.holders_per_shard) + 16,
                        for_holders * 2 / kDescriptorsPerPartitionBusy));
  return plan;
}

ShardState& Broker::shard_of(const TopicPartition& tp) {
  const uint64_t h = fnv1a(tp.topic) + static_cast<uint64_t>(tp.partition);
  return *shards_[h % shards_.size()];
}

void Broker::start_shard(ShardState& ss) {
  // The ring and its event descriptor are created on the shard's own thread.
  std::promise<void> ready;
  ss.shard.start();
  ss.shard.post([this, &ss, &ready] {
    this_shard_metrics() = &ss.metrics;
    ss.ring = std::make_unique<log::IoRing>();
    const DescriptorPlan plan = plan_descriptors(shards_.size());
    ss.fds = std::make_unique<log::FdCache>(plan.cache_per_shard, plan.holders_per_shard);
    ss.fds->set_busy_max(plan.busy_per_shard);
    ss.fds->cold_budget().set_limit(static_cast<uint64_t>(config_.cold_cache_bytes) /
                                    shards_.size());
    ss.ring_events = std::make_unique<asio::posix::stream_descriptor>(ss.shard.context(),
                                                                      ::dup(ss.ring->event_fd()));
    ss.ticker = std::make_unique<asio::steady_timer>(ss.shard.context());
    ss.raft_ticker = std::make_unique<asio::steady_timer>(ss.shard.context());
    if (config_.flush_policy == FlushPolicy::kEveryBatch && config_.sync_max_rate > 0) {
      const auto rate = static_cast<double>(config_.sync_max_rate);
      ss.pacer = std::make_shared<SyncPacer>(ss.shard.context(), rate, sync_pacer_burst(rate));
    }
    watch_ring(ss);
    tick_shard(ss);
    tick_raft(ss);
    ready.set_value();
  });
  ready.get_future().wait();
}

// Reads the event descriptor's counter itself (asio's read, then poll_completions() without
// its own): unlike async_wait, which re-armed the descriptor with an epoll_ctl every time, a
// read needs none. asio tries a read first when it re-arms (EAGAIN unless a completion came
// meanwhile, which it then takes without waiting): two calls a wake-up instead of three.
void Broker::watch_ring(ShardState& ss) {
  ss.ring_events->async_read_some(asio::buffer(ss.ring_counter),
                                  [this, &ss](boost::system::error_code ec, size_t) {
                                    if (ec) return;
                                    ss.ring->poll_completions(log::IoRing::EventFd::kRead);
                                    ss.ring->submit();
                                    watch_ring(ss);
                                  });
}

void Broker::tick_shard(ShardState& ss) {
  static thread_local int ticks = 0;
  ss.ticker->expires_after(kTickPeriod);
  ss.ticker->async_wait([this, &ss](boost::system::error_code ec) {
    if (ec) return;
    const bool retention = ++ticks % kRetentionEveryTicks == 0;
    // Logs need a tick only to flush on an interval (otherwise PartitionLog::tick does
    // nothing): an idle shard with 5,000 partitions does not go over them ten times a second.
    const bool flush_ticks = config_.flush_policy == FlushPolicy::kInterval;
    for (auto& [tp, p] : ss.partitions) {
      if (!retention && !flush_ticks) break;
      if (p->deleting || p->log->failed()) continue;
      p->log->tick();
      if (retention) {
        auto r = p->log->apply_retention();
        if (r && r->segments_deleted > 0 && p->replica) p->replica->log_start_moved();
        if (r && r->segments_deleted > 0) {
          spdlog::info("{}-{}: retention deleted {} segment(s), {} bytes", tp.topic, tp.partition,
                       r->segments_deleted, r->bytes_deleted);
        }
      }
    }
    if (groups_ready_.load(std::memory_order_acquire)) groups_->tick(ss.shard.id());
    if (ticks % 10 == 0 && txns_ready_.load(std::memory_order_acquire)) {
      txns_->tick(ss.shard.id());  // transactions past their timeout, about once a second
    }
    if (const int64_t budget = limits_.move_throttle_bytes.load();
        ss.shard.id() == 0 && budget > 0) {
      // A tenth of the budget per 100 ms tick, at most a second's worth saved up.
      const int64_t now = move_tokens_.load();
      move_tokens_.store(std::min(budget, now + std::max<int64_t>(1, budget / 10)));
    }
    if (ticks % kCompactionEveryTicks == 0) compact_partitions(ss);
    ss.fds->trim();  // holders that went idle since they were asked give their descriptors back
    if (ss.fds->waiting() > 0 && ticks % 100 == 0) {  // every 10 s while it lasts
      spdlog::info("shard {}: {} partition(s) wait for descriptors ({} holders busy, at most {}: "
                   "raise the open-files limit for more at once)",
                   ss.shard.id(), ss.fds->waiting(), ss.fds->holders(), ss.fds->busy_max());
    }
    storage_tick(ss, ticks);
    ss.ring->submit();
    tick_shard(ss);
  });
}

void Broker::tick_raft(ShardState& ss) {
  ss.raft_ticker->expires_after(std::chrono::milliseconds(config_.raft_tick_ms));
  ss.raft_ticker->async_wait([this, &ss](boost::system::error_code ec) {
    if (ec) return;
    const bool groups = groups_ready_.load(std::memory_order_acquire);
    const bool txns = txns_ready_.load(std::memory_order_acquire);
    cluster::pb::SetLeaders report;  // serving leaders whose epoch the controller lacks
    // Only awake groups are visited (a tick may wake others: they join the end of the list).
    std::vector<uint64_t>& awake = ss.awake;
    for (size_t i = 0; i < awake.size();) {
      auto found = ss.by_group.find(awake[i]);
      Partition* p = found == ss.by_group.end() ? nullptr : found->second;
      const bool gone = p == nullptr || !p->replica || p->deleting;
      // An idle partition alone in its group (RF=1), or quiesced, sleeps until something
      // reaches its replica, once its leadership and ISR are reported: 10,000 of them on a
      // broker cost nothing per tick. A quiesced follower has nothing to report.
      bool quiet = !gone && p->replica->tick_idle();
      // The replica's ISR, sorted, computed at most once per visit.
      std::optional<std::vector<int32_t>> isr_now;
      auto current_isr = [&]() -> const std::vector<int32_t>& {
        if (!isr_now) {
          isr_now = p->replica->in_sync_replicas(config_.replica_lag_time_max_ms);
          std::sort(isr_now->begin(), isr_now->end());
        }
        return *isr_now;
      };
      if (quiet && p->replica->is_leader()) {
        quiet = p->reported_leader == config_.node_id &&
                p->reported_epoch == p->replica->leader_epoch() &&
                (p->reported_isr.size() <= 1 || p->replica->quiesced());
        if (quiet && p->replica->quiesced()) quiet = current_isr() == p->reported_isr;
      }
      const bool offsets = !gone && p->tp.topic.size() == kOffsetsTopicChars &&
                           p->tp.topic == GroupCoordinator::kTopic;
      const bool txn_log =
          !gone && p->tp.topic.size() == kTxnTopicChars && p->tp.topic == TxnCoordinator::kTopic;
      // A partition of __consumer_offsets (__transaction_state) sleeps once its groups
      // (transactions) are coordinated here (or, as a follower, once the group quiesced).
      const bool sleep = quiet && ((!offsets && !txn_log) || !p->replica->is_leader() ||
                                   (offsets && groups && groups_->coordinating(p->tp.partition)) ||
                                   (txn_log && txns && txns_->coordinating(p->tp.partition)));
      if (gone || sleep) {
        if (p != nullptr) {
          p->awake = false;
          if (p->replica) p->replica->sleep();
        }
        awake[i] = awake.back();
        awake.pop_back();
        continue;
      }
      ++i;
      const TopicPartition& tp = p->tp;
      if (!quiet) p->replica->tick();
      const bool serving = p->replica->serving();
      const int32_t epoch = p->replica->leader_epoch();
      // The ISR is reported as it changes (Kafka's AlterPartition), so that Metadata shows
      // a follower that fell behind or went silent, not only a broker that is down.
      std::vector<int32_t> isr;
      if (serving && !quiet) isr = current_isr();
      if (serving && !quiet &&
          (p->reported_leader != config_.node_id || p->reported_epoch != epoch ||
           p->reported_isr != isr)) {
        p->reported_leader = config_.node_id;
        p->reported_epoch = epoch;
        p->reported_isr = isr;
        auto* ch = report.add_changes();
        ch->set_topic(tp.topic);
        ch->set_partition(tp.partition);
        ch->set_leader(config_.node_id);
        ch->set_leader_epoch(epoch);
        for (int32_t r : isr) ch->add_isr(r);
      }
      if (groups && offsets) {
        // The coordinator of a group is the serving leader of its partition.
        if (serving && !groups_->coordinating(tp.partition)) groups_->take_over(tp.partition);
        if (!serving && groups_->coordinating(tp.partition)) groups_->resign(tp.partition);
      }
      if (txns && txn_log) {
        if (serving && !txns_->coordinating(tp.partition)) txns_->take_over(tp.partition);
        if (!serving && txns_->coordinating(tp.partition)) txns_->resign(tp.partition);
      }
    }
    if (report.changes_size() > 0 && cluster_) cluster_->report_leaders(report);
    // Also with --raft.quiesce=false here: followers honour a quiesce heartbeat from a broker
    // that has it on, and peers take a broker that never pings for silent.
    if (cluster_) {
      wake_silenced(ss);
      const uint64_t beat = static_cast<uint64_t>(std::max<int64_t>(
          1, config_.raft_heartbeat_interval_ms / std::max<int64_t>(1, config_.raft_tick_ms)));
      if (ss.shard.id() == 0 && ss.raft_ticks % beat == 0 && registry_) {
        ping_peers(*registry_->snapshot());
      }
    }
    if (++ss.raft_ticks % kMoveCheckTicks == 0 && registry_) drive_moves(ss, *registry_->snapshot());
    ss.ring->submit();
    tick_raft(ss);
  });
}

// Every broker pings every other one each heartbeat interval (a bodiless heartbeat of a group
// nobody hosts, coalesced with the groups' own beats): with idle groups quiesced, these are
// what tells a broker that its peers are alive (wake_silenced).
constexpr uint64_t kPingGroup = UINT64_MAX;

void Broker::ping_peers(const TopicsSnapshot& snap) {
  for (const auto& [id, b] : snap.brokers) {
    if (id == config_.node_id) continue;
    raft::Message m;
    m.type = raft::MessageType::kHeartbeat;
    m.from = raft::NodeId(config_.node_id);
    m.to = raft::NodeId(id);
    cluster_->send_raft(kPingGroup, {std::move(m)});
  }
}

// Quiesced groups send nothing, so a dead or cut-off leader would never be replaced: a
// follower whose leader's broker has been silent for an election timeout is told so (it
// campaigns at its turn), and so is a quiesced leader with a silent voter (it heartbeats and
// checks its quorum again, and its ISR drops the silent one). Done when a peer falls silent
// and every half second while one stays silent (sleeping groups are not ticked).
void Broker::wake_silenced(ShardState& ss) {
  const int64_t now = steady_ms();
  // Every tick: only which peers are silent, read under the lock (no copy of the map).
  std::vector<int32_t> silent_now;
  {
    std::lock_guard lock(groups_mutex_);
    for (const auto& [id, at] : peer_heard_ms_) {
      if (id != config_.node_id && now - at > config_.raft_election_timeout_ms) {
        silent_now.push_back(id);
      }
    }
  }
  std::sort(silent_now.begin(), silent_now.end());
  constexpr uint64_t kPassEveryTicks = 10;
  const bool newly = std::any_of(silent_now.begin(), silent_now.end(), [&](int32_t id) {
    return !std::binary_search(ss.silent_peers.begin(), ss.silent_peers.end(), id);
  });
  ss.silent_peers = silent_now;
  if (silent_now.empty()) return;
  if (!newly && ss.raft_ticks - ss.silent_pass_tick < kPassEveryTicks) return;
  ss.silent_pass_tick = ss.raft_ticks;
  // A pass (a peer newly silent, then every half second while one stays so): the map itself,
  // for peers never heard from at all.
  std::unordered_map<int32_t, int64_t> heard;
  {
    std::lock_guard lock(groups_mutex_);
    heard = peer_heard_ms_;
  }
  auto silent = [&](int32_t id) {
    if (id == config_.node_id) return false;
    auto it = heard.find(id);
    return it == heard.end() || now - it->second > config_.raft_election_timeout_ms;
  };
  for (auto& [tp, p] : ss.partitions) {
    if (!p->replica || p->deleting) continue;
    Replica& r = *p->replica;
    if (!r.is_leader()) {
      if (r.leader() >= 0 && silent(r.leader())) r.peers_silent();
      continue;
    }
    // A quiesced leader reports every voter in sync: one whose broker fell silent ends it
    // (the ISR shrinks as usual, and check-quorum steps it down if a quorum is gone).
    if (!r.quiesced()) continue;
    const std::vector<int32_t> voters = r.voters();
    if (std::any_of(voters.begin(), voters.end(), silent)) r.peers_silent();
  }
}

namespace {
constexpr int64_t kParkedVoteMs = 2000;  // older parked votes are dropped
constexpr size_t kParkedVotesMax = 4096;
}  // namespace

void Broker::park_vote(uint64_t group, raft::Message&& message) {
  const int64_t now = steady_ms();
  if (now - parked_swept_ms_ >= kParkedVoteMs / 2) {
    parked_swept_ms_ = now;
    for (auto it = parked_votes_.begin(); it != parked_votes_.end();) {
      auto& votes = it->second;
      const size_t before = votes.size();
      std::erase_if(votes, [&](const ParkedVote& v) { return now - v.at_ms > kParkedVoteMs; });
      parked_count_ -= before - votes.size();
      it = votes.empty() ? parked_votes_.erase(it) : std::next(it);
    }
  }
  if (parked_count_ >= kParkedVotesMax) return;
  parked_votes_[group].push_back({now, std::move(message)});
  ++parked_count_;
}

void Broker::deliver_parked_votes(ShardState& ss, uint64_t group) {
  std::vector<ParkedVote> votes;
  {
    std::lock_guard lock(groups_mutex_);
    auto it = parked_votes_.find(group);
    if (it == parked_votes_.end()) return;
    votes = std::move(it->second);
    parked_count_ -= votes.size();
    parked_votes_.erase(it);
  }
  // After the caller has installed the replica (open_replica returns it).
  ss.shard.post([&ss, group, votes = std::move(votes)]() mutable {
    auto it = ss.by_group.find(group);
    if (it == ss.by_group.end() || it->second->deleting || !it->second->replica) return;
    const int64_t now = steady_ms();
    for (ParkedVote& v : votes) {
      if (now - v.at_ms <= kParkedVoteMs) it->second->replica->step(std::move(v.message));
    }
    ss.ring->submit();
  });
}

void Broker::route_raft(uint64_t group, raft::Message&& message) {
  TopicPartition tp;
  {
    std::lock_guard lock(groups_mutex_);
    peer_heard_ms_[static_cast<int32_t>(*message.from)] = steady_ms();
    auto it = group_index_.find(group);
    if (it == group_index_.end()) {
      // Not hosted here (yet, or any more): dropped, but for a vote request, which may be
      // for a group this broker is about to open (parked_votes_).
      const bool vote =
          message.type == raft::MessageType::kPreVote || message.type == raft::MessageType::kVote;
      if (vote && group != kPingGroup) park_vote(group, std::move(message));
      return;
    }
    tp = it->second;
  }
  ShardState& ss = shard_of(tp);
  ss.shard.post([&ss, group, m = std::move(message)]() mutable {
    auto it = ss.by_group.find(group);
    if (it == ss.by_group.end() || it->second->deleting || !it->second->replica) return;
    it->second->replica->step(std::move(m));
    ss.ring->submit();
  });
}

std::unique_ptr<Replica> Broker::open_replica(ShardState& ss, Partition& p, uint64_t group,
                                              std::vector<int32_t> voters, Status& status) {
  ReplicaOptions o;
  o.self = config_.node_id;
  o.group = group;
  o.name = p.tp.topic + "-" + std::to_string(p.tp.partition);
  o.initial_voters = std::move(voters);
  const int64_t tick = std::max<int64_t>(1, config_.raft_tick_ms);
  o.raft.heartbeat_ticks =
      static_cast<uint32_t>(std::max<int64_t>(1, config_.raft_heartbeat_interval_ms / tick));
  o.raft.election_ticks = static_cast<uint32_t>(
      std::max<int64_t>(o.raft.heartbeat_ticks + 1, config_.raft_election_timeout_ms / tick));
  o.raft.max_cached_bytes = 256 << 10;
  // A catching-up follower gets at most 8 appends of 1 MiB ahead of its answers, under the
  // transport's 32 MiB buffered per peer for a few groups at once: beyond that the transport
  // drops appends, the follower finds a gap, and everything after it is sent again.
  o.raft.max_inflight_bytes = 8 << 20;
  o.raft.quiesce = config_.raft_quiesce;
  o.tick_ms = tick;
  o.pacer = ss.pacer;
  o.pace_below_bytes = static_cast<uint64_t>(config_.sync_pace_below_bytes);
  o.async_writes = config_.raft_async_writes && config_.flush_policy == FlushPolicy::kEveryBatch;
  ReplicaEvents ev;
  cluster::ClusterNode* cluster = cluster_.get();
  Partition* part = &p;
  ev.send = [this, cluster, part](uint64_t group, std::vector<raft::Message> msgs) {
    if (!part->learners.empty() && limits_.move_throttle_bytes.load() > 0) {
      throttle_moves(*part, msgs);
    }
    if (!msgs.empty()) cluster->send_raft(group, std::move(msgs));
  };
  ShardMetrics* metrics = &ss.metrics;
  // Each new term a replica moves to is an election it saw (/metrics); the first term seen is
  // where it starts, not an election.
  auto count_term = [part, metrics] {
    if (!part->replica) return;
    const int32_t term = part->replica->leader_epoch();
    if (part->seen_term >= 0 && term > part->seen_term) {
      metrics->raft_terms_seen += static_cast<uint64_t>(term - part->seen_term);
    }
    part->seen_term = std::max(part->seen_term, term);
  };
  ev.on_campaigns = [metrics](uint64_t n) { metrics->raft_campaigns += n; };
  ev.on_role_change = [part, count_term] {
    count_term();
    notify_waiters(*part);
  };
  ev.on_commit = [this, &ss, part, count_term] {
    count_term();
    // Below the high watermark the log is never cut: the producers' table lets go of what
    // only a cut there could have needed.
    part->producers.set_floor(part->high_watermark());
    part->producers.set_log_start(*part->log->log_start_offset());
    save_transactions(ss, *part);
    notify_waiters(*part);
  };
  ev.on_data = [part](Bytes batch) {
    auto view = kafka::RecordBatchView::parse(batch);
    if (view) part->producers.record_batch(*view);
  };
  // Cut in memory, not rebuilt from the files: a rebuild read up to 64 MiB of the log's tail on
  // the shard at every cut (a leader that lost its term dropping its uncommitted suffix).
  ev.on_truncated = [part] {
    part->producers.cut(*part->log->log_start_offset(), *part->log->log_end_offset());
  };
  ev.on_wake = [&ss, part, group = o.group] {
    if (part->awake) return;
    part->awake = true;
    ss.awake.push_back(group);
  };
  ev.on_failed = [&ss, part](const std::string& why) {
    spdlog::error("{}-{}: replica stopped: {}", part->tp.topic, part->tp.partition, why);
    // A full disk stopped it: reopen_full_partitions looks for it once there is room.
    if (part->replica && part->replica->failed_for_space()) ss.full_logs_left = true;
  };
  const std::string dir = partition_dir(config_.data_dir, p.tp);
  auto r = Replica::open(dir, *p.log, *ss.ring, ss.shard.context(), o, std::move(ev));
  if (!r) {
    status = error(2, "cannot open the Raft state of " + dir + ": " + r.error().message);
    spdlog::error("{}", status.error().message);
    return nullptr;
  }
  p.group = o.group;
  {
    std::lock_guard lock(groups_mutex_);
    group_index_[o.group] = p.tp;
  }
  ss.by_group[o.group] = &p;
  deliver_parked_votes(ss, o.group);
  if (!p.awake) {
    p.awake = true;
    ss.awake.push_back(o.group);
  }
  return std::move(*r);
}

log::LogConfig Broker::log_config_for(const TopicInfo& topic) const {
  log::LogConfig c;
  const auto live = live_config();
  c.segment_bytes = static_cast<uint64_t>(topic_setting_int(topic, *live, "segment.bytes"));
  c.segment_ms = topic_setting_int(topic, *live, "segment.ms");
  c.retention_bytes = topic_setting_int(topic, *live, "retention.bytes");
  c.retention_ms = topic_setting_int(topic, *live, "retention.ms");
  c.flush.interval_ms = config_.flush_interval_ms;
  c.flush.mode = config_.flush_policy == FlushPolicy::kEveryBatch ? log::FlushMode::kEveryBatch
                 : config_.flush_policy == FlushPolicy::kInterval ? log::FlushMode::kInterval
                                                                  : log::FlushMode::kNever;
  c.flush_rounds_max = static_cast<uint32_t>(config_.sync_rounds);
  // Small segments (tests, compaction) are not worth preallocating in full.
  c.preallocate = c.segment_bytes <= (256ull << 20);
  c.zero_ahead = config_.zero_ahead;
  return c;
}

void Broker::open_partitions(const TopicInfo& topic, int32_t first, int32_t last,
                             std::function<void(Status)> done) {
  if (first >= last) {
    done({});
    return;
  }
  struct Gather {
    std::atomic<int32_t> left;
    std::mutex mutex;  // guards first_error (written by several shards)
    Status first_error;
    std::function<void(Status)> done;
  };
  std::vector<int32_t> local;
  for (int32_t i = first; i < last; ++i) {
    if (hosts(topic, i)) local.push_back(i);
  }
  if (local.empty()) {
    done({});
    return;
  }
  auto g = std::make_shared<Gather>();
  g->left = static_cast<int32_t>(local.size());
  g->done = std::move(done);
  const log::LogConfig lc = log_config_for(topic);
  const auto live = live_config();
  const bool append_time =
      topic_setting_value(topic, *live, "message.timestamp.type") == "LogAppendTime";
  const int64_t min_isr = topic_setting_int(topic, *live, "min.insync.replicas");
  // One copy of the topic for all its partitions: a copy each was quadratic in memory (a
  // 1,000-partition topic queued 1,000 copies of its 1,000 partitions: +86 MiB of heap).
  auto shared_topic = std::make_shared<const TopicInfo>(topic);
  for (int32_t i : local) {
    TopicPartition tp{topic.name, i};
    ShardState& ss = shard_of(tp);
    ss.shard.post([this, &ss, tp, lc, g, append_time, min_isr, shared_topic] {
      const TopicInfo& topic = *shared_topic;
      Status status;
      if (!ss.partitions.count(tp)) {
        const std::string dir = partition_dir(config_.data_dir, tp);
        auto opened = log::PartitionLog::open(dir, lc, *ss.ring, *ss.fds);
        if (!opened) {
          status = error(2, "cannot open " + dir + ": " + opened.error().message);
          spdlog::error("{}", status.error().message);
        } else {
          auto p = std::make_unique<Partition>();
          p->tp = tp;
          p->log = std::move(*opened);
          p->log_append_time = append_time;
          p->min_insync_replicas = min_isr;
          p->flush_every_batch = lc.flush.mode == log::FlushMode::kEveryBatch;
          p->log_config = lc;
          for (const auto& issue : p->log->recovery_report().issues) {
            spdlog::warn("{}-{}: recovery: {} (segment {}, offset {}, byte {}, {} bytes removed)",
                         tp.topic, tp.partition, issue.detail, issue.segment_base_offset,
                         issue.offset, issue.position, issue.bytes_removed);
            note_damage(ss, *p, issue);
          }
          rebuild_producer_state(*p);
          // A new partition's replicas all start from the same configuration (its replicas);
          // a replica added by a move, or one rebuilt after its files were lost while the
          // group ran on (the metadata has a leader epoch), starts empty and learns the log
          // and the configuration from the leader.
          std::vector<int32_t> voters;
          if (tp.partition < static_cast<int32_t>(topic.parts.size())) {
            const PartitionInfo& info = topic.parts[static_cast<size_t>(tp.partition)];
            const bool joins = info.leader_epoch > 0 ||
                               std::find(info.adding.begin(), info.adding.end(),
                                         config_.node_id) != info.adding.end();
            if (!joins) voters = info.replicas;
          }
          p->replica = open_replica(ss, *p, partition_group_id(topic.id, tp.partition),
                                    std::move(voters), status);
          if (p->replica) {
            p->producers.set_floor(p->high_watermark());  // rebuilt before it was known
            ss.partitions[tp] = std::move(p);
          }
        }
      }
      ss.ring->submit();
      if (!status) {
        std::lock_guard lock(g->mutex);
        if (g->first_error) g->first_error = status;
      }
      if (g->left.fetch_sub(1) == 1) g->done(g->first_error);
    });
  }
}

void Broker::rebuild_producer_state(Partition& p) {
  // A cut may come down to the high watermark: until the replica knows it, keep every batch.
  const int64_t floor = p.replica ? p.high_watermark() : INT64_MIN;
  // What earlier runs kept of the partition's transactions (none: the tail is enough).
  const TxnFileContents saved = load_txn_file(p.log->dir());
  p.producers = producer_state_from_log(*p.log, kProducerStateScanBytes, floor,
                                        saved.replay_from ? &saved : nullptr);
  if (!p.txn_file) p.txn_file_entries = saved;  // until the writer is made from it
}

void Broker::save_transactions(ShardState& ss, Partition& p) {
  if (!p.producers.txns().seen_any()) return;  // the usual case: one check per commit
  if (!p.txn_file) {
    p.txn_file = std::make_shared<TxnFile>(p.log->dir(), *ss.ring,
                                           p.txn_file_entries.value_or(TxnFileContents{}));
    p.txn_file_entries.reset();
  }
  p.txn_file->save(p.producers.txns(), steady_ms());
}

void Broker::notify_waiters(Partition& p) {
  if (p.waiters.empty()) return;
  const int64_t hwm = p.high_watermark();
  std::vector<FetchWaiter> keep;
  std::vector<std::function<void()>> fire;
  for (auto& w : p.waiters) {
    if (w.token.expired()) continue;
    if (hwm > w.wake_above) {
      fire.push_back(std::move(w.wake));
    } else {
      keep.push_back(std::move(w));
    }
  }
  p.waiters = std::move(keep);
  for (auto& f : fire) f();
}

void Broker::apply_topic_settings(const TopicInfo& topic) {
  const auto live = live_config();
  const bool append_time =
      topic_setting_value(topic, *live, "message.timestamp.type") == "LogAppendTime";
  const int64_t min_isr = topic_setting_int(topic, *live, "min.insync.replicas");
  const log::LogConfig lc = log_config_for(topic);
  for (int32_t i = 0; i < topic.partitions; ++i) {
    TopicPartition tp{topic.name, i};
    ShardState& ss = shard_of(tp);
    ss.shard.post([&ss, tp, append_time, min_isr, lc] {
      if (Partition* p = ss.find(tp)) {
        p->log_append_time = append_time;
        p->min_insync_replicas = min_isr;
        p->log->set_limits(lc);
        p->log_config.segment_bytes = lc.segment_bytes;
        p->log_config.segment_ms = lc.segment_ms;
        p->log_config.retention_bytes = lc.retention_bytes;
        p->log_config.retention_ms = lc.retention_ms;
      }
    });
  }
}

std::shared_ptr<const BrokerConfig> Broker::live_config() const {
  std::lock_guard lock(live_mutex_);
  if (!live_) return std::make_shared<const BrokerConfig>(config_);  // before start()
  return live_;
}

ConfigMap Broker::dynamic_configs(const cluster::pb::Image& image,
                                  const std::string& resource) const {
  auto it = image.broker_configs().find(resource);
  if (it == image.broker_configs().end()) return {};
  return ConfigMap(it->second.configs().begin(), it->second.configs().end());
}

void Broker::apply_dynamic_config(const cluster::pb::Image& image) {
  auto next = std::make_shared<const BrokerConfig>(effective_broker_config(
      config_, dynamic_configs(image, ""), dynamic_configs(image, std::to_string(config_.node_id))));
  std::shared_ptr<const BrokerConfig> before;
  {
    std::lock_guard lock(live_mutex_);
    if (live_ && image.applied_index() < live_index_) return;  // an older image
    before = live_;
    live_ = next;
    live_index_ = image.applied_index();
  }
  limits_.store(*next);
  if (!before) return;  // start-up: partitions open with these settings
  bool topic_defaults = false;
  for (const BrokerSetting& s : broker_settings()) {
    if (!s.dynamic() || s.get(*before) == s.get(*next)) continue;
    spdlog::info("broker setting {} is now {} (dynamic broker config)", s.name, s.get(*next));
    topic_defaults = true;
  }
  if (!topic_defaults || !registry_) return;
  // Topic defaults changed: every open partition gets the settings now in force.
  auto snap = registry_->snapshot();
  for (const auto& [name, topic] : snap->topics) apply_topic_settings(topic);
}

void Broker::create_topic(cluster::TopicChange change,
                          std::function<void(Result<TopicInfo, TopicError>)> done) {
  if (auto v = validate_topic_configs(change.configs); !v) {
    done(unexpected(v.error()));
    return;
  }
  const std::string name = change.name;
  registry_->create(change, false, [this, name, done](Result<TopicInfo, TopicError> r) {
    if (!r) {
      done(std::move(r));
      return;
    }
    spdlog::info("created topic '{}' with {} partition(s)", name, r->partitions);
    crash_point("create.after_commit");
    // As Redpanda does: answer once every partition has a leader that serves (bounded), so a
    // client's first Produce does not meet NOT_LEADER_OR_FOLLOWER.
    auto info = std::make_shared<TopicInfo>(std::move(*r));
    when_leaders(name, std::chrono::steady_clock::now() + kCreateLeadersWait,
                 [this, name, info, done] {
                   if (auto t = registry_->find(name)) *info = *t;
                   done(*info);
                 });
  });
}

void Broker::hand_off_leadership(std::chrono::steady_clock::time_point deadline) {
  bool logged = false;
  while (std::chrono::steady_clock::now() < deadline) {
    std::atomic<size_t> leading{0};
    std::vector<std::future<void>> done;
    for (auto& ss : shards_) {
      if (!ss->ring) continue;
      auto promise = std::make_shared<std::promise<void>>();
      done.push_back(promise->get_future());
      ShardState* shard = ss.get();
      ss->shard.post([shard, promise, &leading] {
        for (auto& [tp, p] : shard->partitions) {
          if (p->replica && !p->deleting && p->replica->hand_off()) leading.fetch_add(1);
        }
        shard->ring->submit();
        promise->set_value();
      });
    }
    for (auto& f : done) f.wait();
    if (leading.load() == 0) return;
    if (!logged) {
      spdlog::info("handing leadership of {} partition(s) to their followers", leading.load());
      logged = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  spdlog::warn("some partitions were still led by this broker when it stopped");
}

void Broker::wait_for_own_leaders(std::chrono::steady_clock::time_point deadline) {
  while (std::chrono::steady_clock::now() < deadline) {
    // (topic, partition, epoch) of every partition whose only voter is this broker, or -1
    // while it does not serve yet.
    std::mutex mutex;
    std::vector<std::tuple<std::string, int32_t, int32_t>> own;
    std::vector<std::future<void>> done;
    for (auto& ss : shards_) {
      auto promise = std::make_shared<std::promise<void>>();
      done.push_back(promise->get_future());
      ShardState* shard = ss.get();
      ss->shard.post([this, shard, promise, &mutex, &own] {
        for (auto& [tp, p] : shard->partitions) {
          if (!p->replica || p->replica->failed()) continue;
          const auto voters = p->replica->voters();
          if (voters.size() != 1 || voters.front() != config_.node_id) continue;
          std::lock_guard lock(mutex);
          own.emplace_back(tp.topic, tp.partition,
                           p->replica->serving() ? p->replica->leader_epoch() : -1);
        }
        promise->set_value();
      });
    }
    for (auto& f : done) f.wait();
    auto snap = registry_->snapshot();
    bool ready = true;
    for (const auto& [topic, partition, epoch] : own) {
      const PartitionInfo* pi = snap->partition(topic, partition);
      if (epoch < 0 || !pi || pi->leader != config_.node_id || pi->leader_epoch != epoch) {
        ready = false;
        break;
      }
    }
    if (ready) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  spdlog::warn("some partitions this broker alone replicates have no reported leader yet");
}

void Broker::when_leaders(const std::string& name, std::chrono::steady_clock::time_point deadline,
                          std::function<void()> done) {
  auto snap = registry_->snapshot();
  const TopicInfo* t = snap->find(name);
  bool ready = t != nullptr;
  if (t) {
    for (const auto& p : t->parts) ready = ready && p.leader >= 0;
  }
  if (ready || std::chrono::steady_clock::now() >= deadline || stopping_.load() ||
      shards_.empty()) {
    done();
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(shards_[0]->shard.context(),
                                                    std::chrono::milliseconds(5));
  timer->async_wait([this, timer, name, deadline, done](boost::system::error_code) {
    when_leaders(name, deadline, done);
  });
}

bool Broker::hosts(const TopicInfo& topic, int32_t partition) const {
  if (partition < 0 || partition >= static_cast<int32_t>(topic.parts.size())) return false;
  const auto& replicas = topic.parts[static_cast<size_t>(partition)].replicas;
  return std::find(replicas.begin(), replicas.end(), config_.node_id) != replicas.end();
}

kafka::ErrorCode Broker::missing_partition_error(const TopicPartition& tp) const {
  auto snap = registry_->snapshot();
  const TopicInfo* t = snap->find(tp.topic);
  if (!t || !snap->partition(tp.topic, tp.partition)) {
    return kafka::ErrorCode::kUnknownTopicOrPartition;
  }
  // Ours but not open: offline here (it could not be opened), as Kafka answers for a failed
  // log directory; otherwise another broker has it.
  return hosts(*t, tp.partition) ? kafka::ErrorCode::kKafkaStorageError
                                 : kafka::ErrorCode::kNotLeaderOrFollower;
}

void Broker::reconcile(std::shared_ptr<const TopicsSnapshot> snap,
                       std::function<void(Status)> done) {
  std::lock_guard lock(reconcile_mutex_);
  struct Gather {
    std::mutex mutex;
    Status first_error;
    std::function<void(Status)> done;
  };
  auto g = std::make_shared<Gather>();
  g->done = std::move(done);
  auto countdown = std::make_shared<std::atomic<size_t>>(1);
  auto finish = [g, countdown](Status s) {
    if (!s) {
      std::lock_guard lock(g->mutex);
      if (g->first_error) g->first_error = s;
    }
    if (countdown->fetch_sub(1) == 1 && g->done) g->done(g->first_error);
  };
  // Topics gone (or deleted and created again under the same name): close and remove.
  for (auto it = hosted_.begin(); it != hosted_.end();) {
    const TopicInfo* t = snap->find(it->first);
    if (!t || t->id != it->second.id) {
      TopicInfo gone;
      gone.name = it->first;
      gone.partitions = it->second.partitions;
      spdlog::info("topic '{}' deleted: removing its local partitions", it->first);
      delete_local_partitions(gone);
      it = hosted_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, topic] : snap->topics) {
    auto it = hosted_.find(name);
    int32_t from = 0;
    if (it != hosted_.end()) {
      from = it->second.partitions;
      if (it->second.configs != topic.configs) apply_topic_settings(topic);
    }
    Hosted& h = hosted_[name];
    h.id = topic.id;
    h.partitions = topic.partitions;
    h.configs = topic.configs;
    // Moves: partitions that came here (a new replica joins its group) or left (the move
    // that took them away is complete).
    for (int32_t i = 0; i < from; ++i) {
      const bool now = hosts(topic, i);
      const bool was = h.local.count(i) > 0;
      if (now && !was) {
        spdlog::info("{}-{}: a replica moves here: joining the partition's group", name, i);
        h.local.insert(i);
        countdown->fetch_add(1);
        open_partitions(topic, i, i + 1, finish);
      } else if (!now && was) {
        spdlog::info("{}-{}: the replica moved away: removing its files", name, i);
        h.local.erase(i);
        delete_local_partition({name, i}, topic.id);
      }
    }
    for (int32_t i = from; i < topic.partitions; ++i) {
      if (hosts(topic, i)) h.local.insert(i);
    }
    if (topic.partitions > from) {
      // Directories left by an earlier topic of this name that no metadata owns (a crash, an
      // operator's copy) must not become the new partitions' data: moved aside first. At
      // start-up the directories are the topic's own.
      if (reconciling_.load()) {
        if (auto r = set_aside_leftovers(config_.data_dir, name, from, topic.partitions); !r) {
          spdlog::error("topic '{}': {}", name, r.error().message);
        }
      }
      countdown->fetch_add(1);
      open_partitions(topic, from, topic.partitions, finish);
    }
  }
  finish({});
}

Status Broker::migrate_legacy_metadata() {
  const std::string path = config_.data_dir + "/metadata.bin";
  pb::MetadataImage image;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in || !image.ParseFromIstream(&in)) {
      return error(2, "metadata image '" + path + "' is unreadable or corrupt");
    }
  }
  spdlog::info("migrating {} topic(s) from the single-node metadata file {} to the controller",
               image.topics_size(), path);
  auto snap = registry_->snapshot();
  for (const auto& t : image.topics()) {
    if (snap->find(t.name())) continue;  // a migration interrupted after this topic
    cluster::TopicChange change;
    change.name = t.name();
    change.configs.insert(t.configs().begin(), t.configs().end());
    change.internal = t.internal();
    change.assignments.assign(static_cast<size_t>(std::max(0, t.partitions())),
                              std::vector<int32_t>{config_.node_id});
    auto r = registry_->create_and_wait(change);
    if (!r && r.error().code != kafka::ErrorCode::kTopicAlreadyExists) {
      return error(2, "cannot migrate topic '" + t.name() + "': " + r.error().message);
    }
  }
  // Producer ids handed out before stay unique.
  const int64_t missing = image.next_producer_id() - cluster_->image()->next_producer_id();
  if (missing > 0) {
    auto ids = registry_->allocate_producer_ids(std::min<int64_t>(missing, 1'000'000));
    if (!ids) return error(2, "cannot migrate producer ids: " + ids.error().message);
  }
  std::error_code ec;
  std::filesystem::rename(path, path + ".migrated", ec);
  if (ec) return error(2, "cannot rename " + path + ": " + ec.message());
  spdlog::info("migration done; the old file is kept as {}.migrated", path);
  return {};
}

Status Broker::start() {
  limits_.store(config_);  // until the metadata's dynamic configs are read
  for (auto& ss : shards_) start_shard(*ss);
  // The admin API answers from here on (/v1/health says "starting" until recovery is done).
  if (auto s = start_admin(); !s) return s;
  std::vector<Shard*> shard_ptrs;
  for (auto& ss : shards_) shard_ptrs.push_back(&ss->shard);
  set_acls(cluster::pb::Image{});  // until the metadata is read: only super users
  if (auto s = start_listeners(shard_ptrs); !s) return s;
  // The cluster: controller quorum, registration, metadata.
  // A single-node data directory from before the controller (finished migrations rename it).
  const bool legacy = std::filesystem::exists(config_.data_dir + "/metadata.bin");
  cluster::ClusterConfig cc;
  cc.node_id = config_.node_id;
  cc.data_dir = config_.data_dir;
  cc.rack = config_.rack;
  cc.kafka_host = config_.advertised_address().host;
  cc.kafka_port = config_.advertised_address().port;
  for (const Listener& l : config_.listeners) {
    cc.kafka_listeners.push_back({l.name, {0, l.advertised_address().host, l.advertised_address().port}});
  }
  cc.rpc_listen_host = config_.rpc_listen.host;
  cc.rpc_listen_port = config_.rpc_listen_set || !config_.controller_voters.empty()
                           ? config_.rpc_listen.port
                           : 0;
  cc.rpc_advertised_host = config_.rpc_advertised.host;
  cc.rpc_advertised_port = config_.rpc_advertised.port;
  if (config_.inter_broker_protocol == SecurityProtocol::kSsl) {
    auto tls = make_inter_broker_tls_context(config_);
    if (!tls) return error(2, "inter-broker listener: " + tls.error().message);
    cc.rpc_tls = std::move(*tls);
  }
  cc.voters = *cluster::parse_voters(config_.controller_voters);
  cc.cluster_id = config_.cluster_id;
  if (legacy && cc.cluster_id.empty()) {
    pb::MetadataImage image;
    std::ifstream in(config_.data_dir + "/metadata.bin", std::ios::binary);
    if (in && image.ParseFromIstream(&in)) cc.cluster_id = image.cluster_id();
  }
  cc.session_timeout_ms = config_.broker_session_timeout_ms;
  cc.heartbeat_interval_ms = config_.broker_heartbeat_interval_ms;
  cc.default_replication_factor = config_.default_replication_factor;
  cc.snapshot_every = static_cast<uint64_t>(config_.controller_snapshot_records);
  cc.auto_balance = config_.auto_balance;
  cc.max_concurrent_moves = static_cast<size_t>(config_.move_max_concurrent);
  cluster_ = std::make_unique<cluster::ClusterNode>(cc);
  registry_ = std::make_unique<TopicRegistry>(*cluster_);
  {
    const DescriptorPlan plan = plan_descriptors(config_.shards);
    spdlog::info("open-files limit {}: per shard {} closed-segment handles, {} idle and {} busy "
                 "partition holders keep descriptors; at most {} partitions (max.partitions)",
                 plan.open_files, plan.cache_per_shard, plan.holders_per_shard,
                 plan.busy_per_shard, config_.partitions_max);
  }
  registry_->set_partitions_max(config_.partitions_max);
  cluster_->on_peer_call(kOffsetsMethod, [this](int32_t, std::string request,
                                                cluster::ClusterNode::PeerReply reply) {
    serve_offsets(std::move(request), std::move(reply));
  });
  cluster_->on_peer_call(kTxnMarkersMethod, [this](int32_t, std::string request,
                                                   cluster::ClusterNode::PeerReply reply) {
    serve_txn_markers(std::move(request), std::move(reply));
  });
  if (auto s = cluster_->start(); !s) return s;
  if (auto s = cluster_->wait_ready(std::chrono::milliseconds(config_.controller_wait_ms)); !s) {
    return s;
  }
  cluster_up_.store(true, std::memory_order_release);
  cluster_->on_partition_message(
      [this](uint64_t group, raft::Message&& m) { route_raft(group, std::move(m)); });
  // A lost connection to a peer (its process killed: its sockets close at once) counts as that
  // peer's silence now rather than after an election timeout without a word from it: the
  // shards' next Raft tick wakes the groups it led (wake_silenced). Its next message, on the
  // connection it dials to us, makes it heard again.
  cluster_->on_peer_lost([this](int32_t peer) {
    std::lock_guard lock(groups_mutex_);
    const int64_t silent_since = steady_ms() - config_.raft_election_timeout_ms - 1;
    auto [it, added] = peer_heard_ms_.emplace(peer, silent_since);
    if (!added) it->second = std::min(it->second, silent_since);
  });
  cluster_->on_image([this](std::shared_ptr<const cluster::pb::Image> image) {
    set_acls(*image);
    security_->set_image(image);
    apply_dynamic_config(*image);
    quotas_.update(*image);
    auto snap = registry_->publish(*image);
    if (reconciling_.load()) reconcile(snap, nullptr);
  });
  security_->set_image(cluster_->image());  // all three keep the newer of this and a published one
  set_acls(*cluster_->image());
  apply_dynamic_config(*cluster_->image());
  quotas_.update(*cluster_->image());
  if (legacy) {
    if (auto s = migrate_legacy_metadata(); !s) return s;
  }
  // Tombstones of deletes, directories no topic owns, --rebuild-metadata (broker_storage.cc).
  if (auto s = reconcile_data_dir(); !s) return s;
  // Open (and recover) every partition this broker hosts before serving anything.
  auto snap = registry_->snapshot();
  size_t partitions = 0;
  for (const auto& [name, topic] : snap->topics) {
    for (int32_t i = 0; i < topic.partitions; ++i) partitions += hosts(topic, i) ? 1 : 0;
  }
  {
    std::promise<Status> opened;
    reconcile(snap, [&opened](Status s) { opened.set_value(s); });
    // A partition that cannot be opened stays offline (open_partitions logged why); the
    // broker serves the rest rather than refusing to start.
    if (auto s = opened.get_future().get(); !s) {
      spdlog::warn("some partitions could not be opened and are offline: {}", s.error().message);
    }
  }
  reconciling_ = true;
  reconcile(registry_->snapshot(), nullptr);  // anything that changed meanwhile
  // Partitions this broker alone replicates lead at once: serve clients once they do and the
  // metadata names them (bounded), so a client's first request after a restart finds them.
  wait_for_own_leaders(std::chrono::steady_clock::now() + kCreateLeadersWait);
  cleaner_ = std::make_unique<LogCleaner>();  // before the groups: __consumer_offsets compacts
  if (auto s = start_groups(); !s) return s;
  if (auto s = start_transactions(); !s) return s;
  if (config_.listen.host == "0.0.0.0" && config_.advertised.host.empty()) {
    spdlog::warn(
        "listening on 0.0.0.0 without --advertised: clients will be told to connect to "
        "0.0.0.0, which only works on this host; set --advertised host:port");
  }
  server_->start();
  for (auto& extra : more_servers_) extra->start();
  started_at_ = std::chrono::steady_clock::now();
  phase_.store(Phase::kServing, std::memory_order_release);
  const bool uring = shards_.front()->ring->uses_io_uring();
  spdlog::info(
      "sluiced {} node {} cluster {}: data in {}, {} topic(s) and {} partition(s) "
      "recovered, {} shard(s), disk I/O through {}",
      kVersion, config_.node_id, registry_->cluster_id(),
      std::filesystem::absolute(config_.data_dir).lexically_normal().string(), snap->topics.size(),
      partitions, shards_.size(), uring ? "io_uring" : "pwrite/fdatasync (io_uring unavailable)");
  if (cluster_->rpc_port() != 0) {
    spdlog::info("inter-broker listener on {}:{}; controller quorum of {} voter(s), leader {}",
                 config_.rpc_listen.host, cluster_->rpc_port(),
                 std::max<size_t>(1, cc.voters.size()), cluster_->controller_leader());
  }
  for (const Listener& l : config_.listeners) {
    spdlog::info("serving Kafka clients on {}:{} ({}, {}; advertised as {})", l.address.host,
                 l.address.port, l.name, security_protocol_name(l.protocol),
                 l.advertised_address().to_string());
  }
  return {};
}

void Broker::stop() {
  if (stopped_) return;
  stopped_ = true;
  phase_.store(Phase::kStopping, std::memory_order_release);
  // Controlled shutdown: partition leadership goes to caught-up followers (clients move
  // without waiting for an election timeout), then this broker is fenced at the controller
  // (and controller leadership handed on).
  hand_off_leadership(std::chrono::steady_clock::now() + kHandOffWait);
  if (cluster_) cluster_->stop();
  // In-flight long polls are answered now with what they have (Server::stop drains each
  // connection only once its pending responses are written, so a parked fetch would hold
  // shutdown up to its max_wait). A fetch parking after this sees stopping_ and answers too.
  stopping_ = true;
  for (auto& ss : shards_) {
    if (!ss->ring) continue;
    ss->shard.post([&ss] {
      for (auto& [tp, p] : ss->partitions) {
        auto waiters = std::move(p->waiters);
        p->waiters.clear();
        for (auto& w : waiters) {
          if (!w.token.expired()) w.wake();
        }
      }
    });
  }
  if (groups_) groups_->stop();
  if (txns_) txns_->stop();
  stop_admin();
  if (server_) server_->stop();
  for (auto& extra : more_servers_) extra->stop();
  // No compaction pass after this: what the cleaner posted to the shards runs before the logs
  // close (posted after it), and a pass cut short leaves side files that the next open removes.
  if (cleaner_) cleaner_->stop();
  // Close every log on its own shard once its writes are done.
  for (auto& ss : shards_) {
    if (!ss->ring) continue;
    std::promise<void> closed;
    ss->shard.post([&ss, &closed] {
      ss->ticker->cancel();
      if (ss->raft_ticker) ss->raft_ticker->cancel();
      if (ss->group_timer) ss->group_timer->cancel();
      for (auto& [tp, p] : ss->partitions) {
        while (!p->log->idle()) {
          ss->ring->submit();
          ss->ring->wait();
        }
        p->replica.reset();
        if (auto r = p->log->close(); !r) {
          spdlog::error("{}-{}: close failed: {}", tp.topic, tp.partition, r.error().message);
        }
      }
      ss->partitions.clear();
      ss->ring->drain();
      boost::system::error_code ec;
      ss->ring_events->close(ec);
      closed.set_value();
    });
    closed.get_future().wait();
  }
  server_.reset();
  more_servers_.clear();
  for (auto& ss : shards_) ss->shard.stop_now();
  spdlog::info("sluiced stopped cleanly");
  spdlog::default_logger()->flush();
}

Result<int64_t, TopicError> Broker::next_producer_id() {
  std::lock_guard lock(producer_ids_mutex_);
  if (producer_id_next_ >= producer_id_end_) {
    auto first = registry_->allocate_producer_ids(kProducerIdBlock);
    if (!first) return unexpected(first.error());
    producer_id_next_ = *first;
    producer_id_end_ = *first + kProducerIdBlock;
  }
  return producer_id_next_++;
}

}  // namespace sluice::broker
