// The broker's storage housekeeping: the data directory at start (tombstones, orphans, lost
// metadata), crash-safe topic deletion, the free-space threshold, reopening partitions a full
// disk stopped, and the background scrubber of closed segments.
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <filesystem>
#include <cstring>
#include <thread>

#include "broker/broker.h"
#include "cluster/cluster_node.h"
#include "replication/driver/raft_storage.h"

#include <future>

namespace sluice::broker {

namespace asio = boost::asio;

namespace {

// Free space is checked this often (in shard ticks of 100 ms); writes resume once the free
// space is this much above the threshold, so that a volume near it does not flap.
constexpr int kFreeSpaceEveryTicks = 5;
constexpr int64_t kFreeSpaceHysteresisBytes = 1 << 20;
constexpr int64_t kMinFreeBytesCap = 1LL << 30;
// The scrubber takes a small step on every shard tick (100 ms), so that the rate is spread
// thin: a step's blocking preads hold up that shard's requests for as short as possible.
constexpr uint64_t kScrubStepsPerSecond = 10;
constexpr size_t kScrubVisitsPerStep = 256;  // partitions looked at per step, at most

void remove_in_background(std::vector<std::string> paths) {
  if (paths.empty()) return;
  std::thread([paths = std::move(paths)] {
    for (const auto& path : paths) {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
      if (ec) spdlog::warn("could not remove {}: {}", path, ec.message());
    }
  }).detach();
}

}  // namespace

void Broker::storage_tick(ShardState& ss, int ticks) {
  // Repairs first: a cut needs the log idle, which the scrubber's next read (through the
  // ring) would not leave it.
  repair_damaged_partitions(ss);
  scrub_partitions(ss);
  if (ticks % kFreeSpaceEveryTicks != 0) return;
  if (ss.shard.id() == 0) check_free_space();
  reopen_full_partitions(ss);
}

Status check_metadata_present(const BrokerConfig& config) {
  const std::string& dir = config.data_dir;
  if (config.rebuild_metadata) return {};
  // Observers keep no metadata of their own: they learn it from the controller quorum.
  auto voters = cluster::parse_voters(config.controller_voters);
  const bool voter = !voters || voters->empty() ||
                     std::any_of(voters->begin(), voters->end(),
                                 [&](const cluster::Voter& v) { return v.id == config.node_id; });
  if (!voter) return {};
  if (raft::FileRaftStorage::exists(dir + "/controller")) return {};
  std::error_code ec;
  if (std::filesystem::exists(dir + "/metadata.bin", ec)) return {};  // migrated at start
  auto entries = scan_data_dir(dir);
  if (!entries) return unexpected(entries.error());
  size_t partition_dirs = 0;
  for (const auto& e : *entries) partition_dirs += e.kind != DirKind::kOrphan;
  if (partition_dirs == 0) return {};  // a new broker
  return error(2, "'" + dir + "' holds " + std::to_string(partition_dirs) +
                      " partition director" + (partition_dirs == 1 ? "y" : "ies") + " (e.g. " +
                      entries->front().name +
                      ") but the controller state (controller/) is missing, so every topic "
                      "would be forgotten. Restore " + dir + "/controller from a backup, or "
                      "restart with --rebuild-metadata to rebuild the topics from the "
                      "directories");
}

Status Broker::rebuild_topics_from_dirs() {
  auto entries = scan_data_dir(config_.data_dir);
  if (!entries) return unexpected(entries.error());
  std::map<std::string, int32_t> found;
  for (const auto& e : *entries) {
    if (e.kind != DirKind::kPartition) continue;
    if (!TopicRegistry::validate_name(e.partition.topic)) continue;
    int32_t& n = found[e.partition.topic];
    n = std::max(n, e.partition.partition + 1);
  }
  size_t rebuilt = 0;
  for (const auto& [name, partitions] : found) {
    if (registry_->snapshot()->find(name)) continue;
    cluster::TopicChange change;
    change.name = name;
    change.internal = name.rfind("__", 0) == 0;
    change.assignments.assign(static_cast<size_t>(partitions),
                              std::vector<int32_t>{config_.node_id});
    if (name == "__consumer_offsets") change.configs = {{"cleanup.policy", "compact"}};
    auto r = registry_->create_and_wait(change);
    if (!r && r.error().code != kafka::ErrorCode::kTopicAlreadyExists) {
      return error(2, "--rebuild-metadata: cannot create topic '" + name + "': " +
                          r.error().message);
    }
    ++rebuilt;
  }
  spdlog::warn("--rebuild-metadata: metadata rebuilt from the partition directories: {} topic(s)",
               rebuilt);
  return {};
}

Status Broker::reconcile_data_dir() {
  const std::string& dir = config_.data_dir;
  auto entries = scan_data_dir(dir);
  if (!entries) return unexpected(entries.error());
  auto snap = registry_->snapshot();
  // Tombstones: a delete that committed is finished; one that did not is undone.
  std::vector<std::string> to_remove;
  for (const auto& e : *entries) {
    if (e.kind != DirKind::kTombstone) continue;
    const TopicInfo* t = snap->find(e.partition.topic);
    const std::string live = e.partition.topic + "-" + std::to_string(e.partition.partition);
    std::error_code ec;
    if (t && hex_id(t->id) == e.tag && e.partition.partition < t->partitions &&
        !std::filesystem::exists(dir + "/" + live, ec)) {
      spdlog::warn("{}: the deletion of topic '{}' did not commit before the broker stopped; "
                   "partition restored",
                   e.name, t->name);
      if (auto r = rename_durably(dir, e.name, live); !r) return r;
    } else {
      to_remove.push_back(dir + "/" + e.name);
    }
  }
  if (config_.rebuild_metadata) {
    if (auto r = rebuild_topics_from_dirs(); !r) return r;
    entries = scan_data_dir(dir);
    if (!entries) return unexpected(entries.error());
    snap = registry_->snapshot();
  }
  // Orphans: directories no topic owns are reported, and removed only on request.
  for (const auto& e : *entries) {
    if (e.kind == DirKind::kTombstone) continue;
    const TopicInfo* t = snap->find(e.partition.topic);
    if (e.kind == DirKind::kPartition && t && hosts(*t, e.partition.partition)) continue;
    if (e.kind == DirKind::kPartition && !t && snap->deleted.count(e.partition.topic)) {
      // Its topic's deletion committed while this broker could not remove it (a crash).
      spdlog::info("{}: its topic was deleted; removed", e.name);
      const std::string gone = e.name + ".0-delete";
      if (auto r = rename_durably(dir, e.name, gone); !r) return r;
      to_remove.push_back(dir + "/" + gone);
      continue;
    }
    if (!config_.sweep_orphans) {
      spdlog::warn("{}: no topic owns it; kept and not served (--sweep-orphans removes it)",
                   e.name);
      continue;
    }
    spdlog::warn("{}: no topic owns it; removed (--sweep-orphans)", e.name);
    std::string name = e.name;
    if (e.kind == DirKind::kPartition) {
      // Out of sight first (one durable rename), so a crash cannot bring it back.
      const std::string gone = name + ".0-delete";
      if (auto r = rename_durably(dir, name, gone); !r) return r;
      name = gone;
    }
    to_remove.push_back(dir + "/" + name);
  }
  remove_in_background(std::move(to_remove));
  return {};
}

int Broker::verify() {
  log::IoRing ring;
  log::FdCache fds(64);
  auto entries = scan_data_dir(config_.data_dir);
  if (!entries) {
    spdlog::error("verify: {}", entries.error().message);
    return 1;
  }
  size_t partitions = 0;
  size_t damaged = 0;
  for (const auto& e : *entries) {
    if (e.kind != DirKind::kPartition) continue;
    // Every partition directory, whatever the metadata says: its bytes are what is checked.
    TopicInfo topic;
    topic.name = e.partition.topic;
    log::LogConfig lc = log_config_for(topic);
    lc.recovery_scan = log::RecoveryScan::kAll;
    const std::string& name = e.partition.topic;
    const int32_t i = e.partition.partition;
    ++partitions;
    const std::string dir = config_.data_dir + "/" + e.name;
    auto opened = log::PartitionLog::open(dir, lc, ring, fds);
    if (!opened) {
      spdlog::error("verify {}-{}: cannot open: {}", name, i, opened.error().message);
      ++damaged;
      continue;
    }
    bool bad = false;
    for (const auto& issue : (*opened)->recovery_report().issues) {
      const bool damage = issue.kind == log::RecoveryIssue::Kind::kCorruptClosed ||
                          issue.kind == log::RecoveryIssue::Kind::kCorruptTail;
      bad |= damage;
      spdlog::log(damage ? spdlog::level::err : spdlog::level::info,
                  "verify {}-{}: {} (segment {}, offset {}, byte {})", name, i, issue.detail,
                  issue.segment_base_offset, issue.offset, issue.position);
    }
    damaged += bad;
    (void)(*opened)->close();
  }
  spdlog::log(damaged > 0 ? spdlog::level::err : spdlog::level::info,
              "verify: {} partition(s) checked batch by batch, {} with damage", partitions,
              damaged);
  return damaged > 0 ? 1 : 0;
}

void Broker::when_idle(ShardState& ss, Partition* p, std::function<void()> then) {
  // The log wakes its waiters from inside a ring completion, and `then` may close the log and
  // drop the partition: it runs from the shard's queue, if the log is still idle there (the
  // replica may have started a write in between). The log is not replaced meanwhile: this
  // serves partitions being deleted, which reopen_full_partitions leaves alone.
  SLUICE_ASSERT(p->deleting);
  p->log->when_idle([&ss, p, then = std::move(then)]() mutable {
    ss.shard.post([&ss, p, then = std::move(then)]() mutable {
      if (!p->log->idle()) return when_idle(ss, p, std::move(then));
      then();
    });
  });
}

void Broker::close_and_tombstone(const TopicPartition& tp, const std::array<uint8_t, 16>& id,
                                 std::function<void()> then) {
  ShardState& ss = shard_of(tp);
  ss.shard.post([this, &ss, tp, id, then = std::move(then)] {
    // Renames the directory to its tombstone (once the log, if open, is closed).
    auto tombstone = [this, tp, id, then] {
      const std::string live = tp.topic + "-" + std::to_string(tp.partition);
      const std::string dead = tombstone_name({tp.topic, tp.partition}, id);
      const std::string from = config_.data_dir + "/" + live;
      const std::string to = config_.data_dir + "/" + dead;
      if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        spdlog::error("{}: cannot rename to {}: {}", live, dead, std::strerror(errno));
      }
      then();
    };
    auto it = ss.partitions.find(tp);
    if (it == ss.partitions.end()) {
      tombstone();
      return;
    }
    Partition* p = it->second.get();
    p->deleting = true;
    if (p->cleaning_cancel) p->cleaning_cancel->store(true);  // a compaction pass gives up
    for (auto& w : p->waiters) {
      if (!w.token.expired()) w.wake();
    }
    p->waiters.clear();
    when_idle(ss, p, [this, &ss, tp, p, tombstone] {
      auto at = ss.partitions.find(tp);
      SLUICE_ASSERT(at != ss.partitions.end() && at->second.get() == p);
      if (p->replica) {
        // Produces still waiting for a commit learn the partition is gone.
        p->replica->abandon_waiters(kafka::ErrorCode::kUnknownTopicOrPartition);
        ss.by_group.erase(p->group);
        {
          std::lock_guard lock(groups_mutex_);
          group_index_.erase(p->group);
        }
        p->replica.reset();
      }
      (void)p->log->close();
      ss.partitions.erase(at);
      tombstone();
    });
  });
}

void Broker::delete_local_partitions(const TopicInfo& topic) {
  crash_point("delete.after_commit");
  struct Gather {
    std::atomic<int32_t> left;
    std::atomic<bool> first_rename{true};
  };
  auto g = std::make_shared<Gather>();
  g->left = topic.partitions;
  auto one_done = [this, g, topic] {
    if (g->first_rename.exchange(false)) crash_point("delete.first_tombstone");
    if (g->left.fetch_sub(1) != 1) return;
    if (auto r = fsync_dir(config_.data_dir); !r) spdlog::error("{}", r.error().message);
    std::vector<std::string> paths;
    for (int32_t i = 0; i < topic.partitions; ++i) {
      paths.push_back(config_.data_dir + "/" + tombstone_name({topic.name, i}, topic.id));
    }
    remove_in_background(std::move(paths));
  };
  for (int32_t i = 0; i < topic.partitions; ++i) {
    close_and_tombstone({topic.name, i}, topic.id, one_done);
  }
}

void Broker::delete_local_partition(const TopicPartition& tp, const std::array<uint8_t, 16>& id) {
  close_and_tombstone(tp, id, [this, tp, id] {
    if (auto r = fsync_dir(config_.data_dir); !r) spdlog::error("{}", r.error().message);
    remove_in_background({config_.data_dir + "/" + tombstone_name({tp.topic, tp.partition}, id)});
  });
}

void Broker::check_free_space() {
  struct statvfs st {};
  if (::statvfs(config_.data_dir.c_str(), &st) != 0) return;
  const int64_t total = static_cast<int64_t>(st.f_blocks) * static_cast<int64_t>(st.f_frsize);
  const int64_t free = static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
  const int64_t threshold =
      config_.min_free_bytes >= 0 ? config_.min_free_bytes : std::min(total / 50, kMinFreeBytesCap);
  room_again_.store(free >= threshold + kFreeSpaceHysteresisBytes, std::memory_order_relaxed);
  const bool was_low = low_space_.load(std::memory_order_relaxed);
  const bool low = was_low ? free < threshold + kFreeSpaceHysteresisBytes : free < threshold;
  if (low == was_low) return;
  low_space_.store(low, std::memory_order_relaxed);
  if (low) {
    spdlog::error(
        "data volume of {} has {} bytes free, below log.dir.min.free.bytes {}: produce is "
        "refused (KAFKA_STORAGE_ERROR) until space is freed; deletes and retention still run",
        config_.data_dir, free, threshold);
  } else {
    spdlog::info("data volume of {} has {} bytes free again: produce resumes", config_.data_dir,
                 free);
  }
}

void Broker::reopen_full_partitions(ShardState& ss) {
  if (!room_again_.load(std::memory_order_relaxed)) return;
  // Gone over only while some log may have stopped on a full disk since the last look.
  const uint64_t stops = log::PartitionLog::stops_so_far();
  if (stops == ss.log_stops_seen && !ss.full_logs_left) return;
  ss.log_stops_seen = stops;
  bool left = false;
  for (auto& [tp, p] : ss.partitions) {
    if (p->deleting) continue;
    if (p->log->failed()) {
      if (p->log->failure_code() != log::LogErrc::kNoSpace) continue;  // durability unknown
    } else if (!p->replica || !p->replica->failed_for_space()) {
      continue;
    }
    if (!p->log->idle()) {
      left = true;
      // Said once if it lasts (~10 s of looks): what keeps the partition stopped.
      if (++p->reopen_waits == 20) {
        spdlog::warn(
            "{}-{}: stopped on a full disk; the disk has room again, but the log still "
            "has {} operation(s) in flight, so it is not reopened yet",
            tp.topic, tp.partition, p->log->ops_in_flight());
      }
      continue;
    }
    p->reopen_waits = 0;
    // The stopped log is inert (idle, refuses everything); a new one recovers the directory,
    // cutting whatever the full disk did not take. Only then is the old one dropped.
    auto reopened = log::PartitionLog::open(p->log->dir(), p->log_config, *ss.ring, *ss.fds);
    if (!reopened) {
      spdlog::error("{}-{}: cannot reopen after the disk was full (retried): {}", tp.topic,
                    tp.partition, reopened.error().message);
      left = true;
      continue;
    }
    spdlog::info("{}-{}: disk has room again; partition reopened at offset {}", tp.topic,
                 tp.partition, *(*reopened)->log_end_offset());
    p->replica.reset();  // it refers to the old log
    p->log = std::move(*reopened);
    Status status;
    p->replica = open_replica(ss, *p, p->group, {}, status);
    rebuild_producer_state(*p);  // the table may hold batches the full disk never took
  }
  ss.full_logs_left = left;
}

void Broker::scrub_partitions(ShardState& ss) {
  if (config_.scrub_bytes_per_sec <= 0 || ss.partitions.empty()) return;
  // This shard's share of the rate for one tick, spent on one partition after another.
  uint64_t budget = std::max<uint64_t>(
      1, static_cast<uint64_t>(config_.scrub_bytes_per_sec) / shards_.size() / kScrubStepsPerSecond);
  auto it = ss.partitions.upper_bound(ss.scrub_cursor);
  // A bounded walk per step: most idle partitions have nothing to scrub, and 10,000 of them
  // walked ten times a second were most of an idle broker's CPU.
  const size_t walk = std::min<size_t>(ss.partitions.size(), kScrubVisitsPerStep);
  for (size_t visited = 0; visited < walk && budget > 0; ++visited) {
    if (it == ss.partitions.end()) it = ss.partitions.begin();
    Partition& p = *it->second;
    ss.scrub_cursor = it->first;
    ++it;
    // Only closed segments are scrubbed: most idle partitions have none.
    if (p.deleting || p.log->failed() || p.log->segment_count() < 2) continue;
    if (p.damaged_from >= 0) continue;  // to be cut (repair_damaged_partitions): left idle
    auto step = p.log->scrub(budget);
    if (!step) continue;
    // What it asked of the disk (its read goes through the ring; the check comes a step later).
    budget -= std::min(budget, step->bytes_read);
    // Damage found (step->issues) is logged by the log itself, with the partition's path.
    scrub_damage_found_ += step->issues.size();
    for (const auto& issue : step->issues) note_damage(ss, p, issue);
  }
}

void Broker::note_damage(ShardState& ss, Partition& p, const log::RecoveryIssue& issue) {
  if (issue.kind != log::RecoveryIssue::Kind::kCorruptClosed) return;
  ss.damage_noted = true;
  if (p.damaged_from < 0 || issue.offset < p.damaged_from) p.damaged_from = issue.offset;
}

// A replica with a damaged closed segment serves nothing past the damage (CORRUPT_MESSAGE),
// so as the leader it would make the partition unreadable from there while the other
// replicas hold good copies (docs/fault-testing.md, bug 3). It repairs itself from them: a
// leader first hands leadership to its most caught-up voter; then, as a follower, it cuts its
// log where the damage starts and reopens its Raft state, like a follower whose disk lost its
// tail: the leader finds the shorter log and sends the rest again (Progress::maybe_decrease).
// A partition without another voter has nothing to repair from: its reads stop at the damage.
void Broker::repair_damaged_partitions(ShardState& ss) {
  constexpr uint32_t kHandOffEveryTicks = 10;  // a transfer takes an election timeout or so
  if (!ss.damage_noted) return;  // nothing to go over every partition for
  bool damaged = false;
  for (auto& [tp, pp] : ss.partitions) {
    Partition& p = *pp;
    if (p.damaged_from < 0 || p.deleting) continue;
    damaged = true;  // looked at again next tick
    if (!p.replica || p.replica->failed() || p.log->failed()) continue;
    const uint32_t tick = p.repair_ticks++;
    if (p.replica->voters().size() < 2) {
      if (tick == 0) {
        spdlog::error("{}-{}: log damaged from offset {} and no other replica to repair it "
                      "from: reads stop there (CORRUPT_MESSAGE); restore the partition from "
                      "a backup or delete the records before it",
                      tp.topic, tp.partition, p.damaged_from);
      }
      continue;
    }
    if (p.replica->is_leader()) {
      if (tick % kHandOffEveryTicks == 0) {
        spdlog::warn("{}-{}: log damaged from offset {}: handing leadership to a healthy "
                     "replica before repairing it from them",
                     tp.topic, tp.partition, p.damaged_from);
        (void)p.replica->hand_off();
      }
      continue;
    }
    if (!p.log->idle() || !p.replica->quiet()) continue;
    auto cut = p.log->truncate_damage();
    if (!cut) {
      if (cut.error().code == log::LogErrc::kBusy) continue;
      spdlog::error("{}-{}: cannot cut the damaged log at offset {}: {}", tp.topic, tp.partition,
                    p.damaged_from, cut.error().message);
      p.damaged_from = -1;  // the log stopped, or will say why on the next read
      continue;
    }
    spdlog::warn("{}-{}: log damaged from offset {}: cut at offset {}; the rest is copied "
                 "again from the leader",
                 tp.topic, tp.partition, p.damaged_from, **cut);
    p.damaged_from = -1;
    p.repair_ticks = 0;
    // The Raft state is reopened over the shorter log, as at a restart.
    p.replica.reset();
    Status status;
    p.replica = open_replica(ss, p, p.group, {}, status);
    rebuild_producer_state(p);  // open_replica logged why if it failed (partition offline)
  }
  ss.damage_noted = damaged;
}

}  // namespace sluice::broker
