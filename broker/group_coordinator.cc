#include "broker/group_coordinator.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>

#include "broker/group_records.h"
#include "broker/kafka_errors.h"
#include "common/clock.h"
#include "log/batch_scan.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

using kafka::ErrorCode;

namespace {

constexpr int kExpiryEveryTicks = 50;  // offsets retention / deleted topics every ~5 s
constexpr uint64_t kLoadReadBytes = 1 << 20;
constexpr int32_t kGroupSubscribedToTopic = 86;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Gathers per-item results from several shards; the last one to finish answers.
template <class Resp>
struct Gather {
  Resp resp;
  std::atomic<size_t> left{0};
  GroupCoordinator::Reply<Resp> reply;
  void done() {
    if (left.fetch_sub(1) == 1) reply(resp);
  }
};

// A commit's response laid out as its request, every partition's error 0.
template <class Resp, class Topics>
std::shared_ptr<Resp> commit_response(const Topics& topics) {
  auto resp = std::make_shared<Resp>();
  for (const auto& t : topics) {
    auto& rt = resp->topics.emplace_back();
    rt.name = t.name;
    for (const auto& p : t.partitions) rt.partitions.push_back({p.partition_index, 0});
  }
  return resp;
}

// Sets every partition's error in a commit's response (`unset_only`: those still without one).
template <class RespTopics>
void set_errors(RespTopics& topics, ErrorCode e, bool unset_only) {
  for (auto& t : topics) {
    for (auto& p : t.partitions) {
      if (!unset_only || p.error_code == 0) p.error_code = code(e);
    }
  }
}

// The offsets a commit (OffsetCommit, TxnOffsetCommit) stores: a partition out of its topic's
// range or with too much metadata gets its error in `resp_topics` (laid out as `topics`)
// instead. `commit_ms(partition)`: the commit time kept.
template <class Topics, class RespTopics, class CommitMs>
std::vector<std::pair<TopicPartitionKey, CommittedOffset>> offsets_to_commit(
    const Topics& topics, RespTopics& resp_topics,
    const std::function<int32_t(const std::string&)>& partition_count, CommitMs commit_ms) {
  std::vector<std::pair<TopicPartitionKey, CommittedOffset>> values;
  for (size_t ti = 0; ti < topics.size(); ++ti) {
    const auto& t = topics[ti];
    const int32_t count = partition_count(t.name);
    for (size_t pi = 0; pi < t.partitions.size(); ++pi) {
      const auto& p = t.partitions[pi];
      auto& out = resp_topics[ti].partitions[pi];
      if (p.partition_index < 0 || p.partition_index >= count) {
        out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
      } else if (p.committed_metadata &&
                 p.committed_metadata->size() > GroupCoordinator::kOffsetMetadataBytesMax) {
        out.error_code = code(ErrorCode::kOffsetMetadataTooLarge);
      } else {
        values.emplace_back(TopicPartitionKey{t.name, p.partition_index},
                            CommittedOffset{p.committed_offset, p.committed_leader_epoch,
                                            p.committed_metadata.value_or(""), commit_ms(p)});
      }
    }
  }
  return values;
}

}  // namespace

struct GroupCoordinator::PartitionGroups {
  std::map<std::string, std::unique_ptr<Group>> groups;
  // Offsets of open transactions: producer id -> group -> offsets (TxnOffsetCommit).
  std::map<int64_t, std::map<std::string, std::map<TopicPartitionKey, CommittedOffset>>>
      txn_offsets;
  std::map<std::string, int64_t> wake_ms;  // group -> its entry in Timers::due
  bool loaded = false;
  uint64_t seed = 0;
  int32_t partition = 0;
};

GroupCoordinator::GroupCoordinator(const CoordinatorOptions& options, CoordinatorHost host)
    : options_(options), host_(std::move(host)) {
  SLUICE_ASSERT(options_.partitions > 0);
  SLUICE_ASSERT(host_.shard_count > 0);
  shard_partitions_.resize(host_.shard_count);
  ticks_.resize(host_.shard_count);
  timers_.resize(host_.shard_count);
  std::random_device rd;
  for (int32_t p = 0; p < options_.partitions; ++p) {
    partitions_.push_back(std::make_unique<PartitionGroups>());
    partitions_.back()->partition = p;
    partitions_.back()->seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    const uint32_t shard = host_.shard_of(p);
    SLUICE_ASSERT(shard < host_.shard_count);
    shard_partitions_[shard].push_back(p);
  }
}

GroupCoordinator::~GroupCoordinator() = default;

// What a group request hears from a broker whose groups of that partition are not loaded, as
// Kafka answers: NOT_COORDINATOR when another broker leads the partition (or none does), so
// that the client looks the coordinator up again; COORDINATOR_LOAD_IN_PROGRESS while this
// broker leads it and takes its groups over, so that the client retries here.
ErrorCode GroupCoordinator::not_loaded(const PartitionGroups& pg) const {
  return host_.log_of(pg.partition) != nullptr ? ErrorCode::kCoordinatorLoadInProgress
                                               : ErrorCode::kNotCoordinator;
}

int32_t GroupCoordinator::partition_of(const std::string& group) const {
  return offsets_partition_for(group, options_.partitions);
}

void GroupCoordinator::on_group_shard(const std::string& group,
                                      std::function<void(PartitionGroups&)> fn) {
  const int32_t p = partition_of(group);
  host_.post(host_.shard_of(p), [this, p, fn = std::move(fn)] { fn(*partitions_[p]); });
}

Group* GroupCoordinator::find(PartitionGroups& pg, const std::string& group) {
  auto it = pg.groups.find(group);
  return it == pg.groups.end() ? nullptr : it->second.get();
}

Group* GroupCoordinator::due_now(PartitionGroups& pg, const std::string& group) {
  Group* g = pg.loaded ? find(pg, group) : nullptr;
  if (g) {
    g->tick(steady_ms());
    after(partition_of(group), *g);
  }
  return g;
}

Group& GroupCoordinator::find_or_create(PartitionGroups& pg, const std::string& group) {
  auto& slot = pg.groups[group];
  if (!slot) slot = std::make_unique<Group>(group, options_.limits, pg.seed++);
  return *slot;
}

void GroupCoordinator::append(int32_t partition, std::vector<Write> writes,
                              std::function<void(ErrorCode)> done,
                              const kafka::RecordBatchBuilder::Options& options) {
  log::PartitionLog* log = host_.log_of(partition);
  if (!log || log->failed()) {
    done(ErrorCode::kCoordinatorNotAvailable);
    return;
  }
  kafka::RecordBatchBuilder builder(options);
  const int64_t now = wall_ms();
  for (const Write& w : writes) {
    builder.append(now, Bytes(w.key),
                   w.value ? std::optional<Bytes>(Bytes(*w.value)) : std::nullopt);
  }
  auto built = builder.build();
  SLUICE_ASSERT(built.has_value());  // uncompressed: cannot fail
  auto batch = std::make_shared<ByteVec>(std::move(*built));
  if (host_.replicate) {
    const ErrorCode e = host_.replicate(partition, MutableBytes(*batch),
                                        [done](ErrorCode r) {
                                          done(r == ErrorCode::kNone ? r
                                               : r == ErrorCode::kRequestTimedOut
                                                   ? r
                                                   : ErrorCode::kNotCoordinator);
                                        });
    if (e != ErrorCode::kNone) {
      done(e == ErrorCode::kNotLeaderOrFollower ? ErrorCode::kNotCoordinator
                                                : ErrorCode::kCoordinatorNotAvailable);
    }
    host_.after_append(partition);
    return;
  }
  auto appended = log->append(
      MutableBytes(*batch), {},
      [this, partition, batch, done](const log::LogResult<log::AppendResult>& r) {
        if (!r) {
          spdlog::error("{}-{}: append failed: {}", kTopic, partition, r.error().message);
          done(to_kafka(r.error().code) == ErrorCode::kRequestTimedOut
                   ? ErrorCode::kRequestTimedOut
                   : ErrorCode::kCoordinatorNotAvailable);
          return;
        }
        log::PartitionLog* log = host_.log_of(partition);
        if (!log) {
          done(ErrorCode::kCoordinatorNotAvailable);
          return;
        }
        // Durable whatever the flush policy: a commit is acknowledged only once on disk.
        log->when_durable(r->end_offset, [done](const log::LogResult<Offset>& d) {
          done(d ? ErrorCode::kNone : ErrorCode::kCoordinatorNotAvailable);
        });
        host_.after_append(partition);
      });
  if (!appended) {
    done(appended.error().code == log::LogErrc::kBusy ? ErrorCode::kRequestTimedOut
                                                      : ErrorCode::kCoordinatorNotAvailable);
    return;
  }
  host_.after_append(partition);
}

void GroupCoordinator::after(int32_t partition, Group& group) {
  schedule(partition, group);
  if (group.take_metadata_dirty()) {
    GroupMetadataValue v;
    v.protocol_type = group.protocol_type();
    v.generation = group.generation();
    v.protocol = group.protocol();
    v.leader = group.leader();
    v.state_time_ms = wall_ms();
    for (const auto& [id, m] : group.members()) v.members.push_back(m);
    append(partition, {Write{encode_key(GroupKey{group.id()}), encode_group_value(v)}},
           [id = group.id()](ErrorCode e) {
             if (e != ErrorCode::kNone) {
               spdlog::warn("group '{}': persisting its metadata failed (error {})", id, code(e));
             }
           });
  }
}

// Start-up ------------------------------------------------------------------------------------

void GroupCoordinator::load_partition(int32_t partition, int64_t now_ms) {
  PartitionGroups& pg = *partitions_[partition];
  log::PartitionLog* log = host_.log_of(partition);
  if (log == nullptr) {  // another broker leads this partition: its groups are coordinated there
    pg.loaded = false;
    return;
  }
  std::map<std::string, std::optional<GroupMetadataValue>> metadata;
  std::map<std::string, std::map<TopicPartitionKey, CommittedOffset>> offsets;
  const int64_t from = *log->log_start_offset();
  // Offsets of transactions: held per producer until their marker (txn_offsets).
  pg.txn_offsets.clear();
  auto on_marker = [&](const kafka::RecordBatchView& batch) {
    auto marker = kafka::read_end_txn_marker(batch);
    if (!marker || !*marker) return;
    auto held = pg.txn_offsets.extract(batch.producer_id());
    if (!held || !(*marker)->commit) return;
    for (auto& [group, m] : held.mapped()) {
      for (auto& [tp, v] : m) offsets[group][tp] = std::move(v);
    }
  };
  log::for_each_stored_record(
      *log, from, *log->written_offset(), kLoadReadBytes,
      [&](const kafka::RecordBatchView& batch, const kafka::Record& r) {
        auto key = decode_key(*r.key);
        if (!key) return;
        if (auto* ok = std::get_if<OffsetKey>(&*key); ok && batch.is_transactional()) {
          if (r.value) {
            if (auto val = decode_offset_value(*r.value)) {
              pg.txn_offsets[batch.producer_id()][ok->group][{ok->topic, ok->partition}] = *val;
            }
          }
        } else if (ok) {
          auto& m = offsets[ok->group];
          if (!r.value) {
            m.erase({ok->topic, ok->partition});
          } else if (auto val = decode_offset_value(*r.value)) {
            m[{ok->topic, ok->partition}] = *val;
          }
        } else {
          auto& gk = std::get<GroupKey>(*key);
          if (!r.value) {
            metadata[gk.group] = std::nullopt;
            offsets.erase(gk.group);  // DeleteGroups tombstones the group key last
          } else if (auto val = decode_group_value(*r.value)) {
            metadata[gk.group] = std::move(*val);
          }
        }
      },
      on_marker);
  size_t restored = 0;
  for (auto& [id, meta] : metadata) {
    if (!meta) continue;
    Group& g = find_or_create(pg, id);
    g.restore(meta->protocol_type, meta->generation, meta->protocol, meta->leader,
              std::move(meta->members), now_ms);
    ++restored;
  }
  for (auto& [id, m] : offsets) {
    if (m.empty()) continue;
    Group& g = find_or_create(pg, id);
    g.offsets() = std::move(m);
  }
  pg.loaded = true;
  for (const auto& [id, g] : pg.groups) schedule(partition, *g);
  if (!pg.groups.empty()) {
    spdlog::info("{}-{}: loaded {} group(s) ({} with metadata)", kTopic, partition,
                 pg.groups.size(), restored);
  }
}

Status GroupCoordinator::load() {
  std::vector<std::future<void>> done;
  const int64_t now = steady_ms();
  for (int32_t p = 0; p < options_.partitions; ++p) {
    auto promise = std::make_shared<std::promise<void>>();
    done.push_back(promise->get_future());
    host_.post(host_.shard_of(p), [this, p, now, promise] {
      load_partition(p, now);
      promise->set_value();
    });
  }
  for (auto& f : done) f.wait();
  return {};
}

bool GroupCoordinator::coordinating(int32_t partition) const {
  return partition >= 0 && partition < static_cast<int32_t>(partitions_.size()) &&
         partitions_[partition]->loaded;
}

std::vector<GroupCoordinator::GroupView> GroupCoordinator::views(uint32_t shard) const {
  std::vector<GroupView> out;
  if (shard >= shard_partitions_.size()) return out;
  for (int32_t p : shard_partitions_[shard]) {
    const PartitionGroups& pg = *partitions_[static_cast<size_t>(p)];
    if (!pg.loaded) continue;
    for (const auto& [name, g] : pg.groups) {
      GroupView v;
      v.group = name;
      v.state = group_state_name(g->state());
      v.generation = g->generation();
      v.members = static_cast<int32_t>(g->members().size());
      for (const auto& [tp, c] : g->offsets()) v.committed[tp] = c.offset;
      out.push_back(std::move(v));
    }
  }
  return out;
}

void GroupCoordinator::take_over(int32_t partition) {
  if (partition < 0 || partition >= static_cast<int32_t>(partitions_.size())) return;
  PartitionGroups& pg = *partitions_[partition];
  if (pg.loaded) return;
  pg.groups.clear();
  pg.wake_ms.clear();
  pg.txn_offsets.clear();
  load_partition(partition, steady_ms());
}

void GroupCoordinator::resign(int32_t partition) {
  if (partition < 0 || partition >= static_cast<int32_t>(partitions_.size())) return;
  PartitionGroups& pg = *partitions_[partition];
  if (!pg.loaded) return;
  for (auto& [id, g] : pg.groups) g->shut(ErrorCode::kNotCoordinator);
  pg.groups.clear();
  pg.wake_ms.clear();
  pg.txn_offsets.clear();
  pg.loaded = false;
  spdlog::info("{}-{}: no longer the leader: its groups are coordinated elsewhere", kTopic,
               partition);
}

void GroupCoordinator::stop() {
  std::vector<std::future<void>> done;
  for (uint32_t s = 0; s < host_.shard_count; ++s) {
    auto promise = std::make_shared<std::promise<void>>();
    done.push_back(promise->get_future());
    host_.post(s, [this, s, promise] {
      for (int32_t p : shard_partitions_[s]) {
        for (auto& [id, g] : partitions_[p]->groups) g->shut(ErrorCode::kNotCoordinator);
        partitions_[p]->loaded = false;
      }
      promise->set_value();
    });
  }
  for (auto& f : done) f.wait();
}

// Timers -------------------------------------------------------------------------------------

void GroupCoordinator::tick(uint32_t shard) {
  SLUICE_ASSERT(shard < shard_partitions_.size());
  if (++ticks_[shard] % kExpiryEveryTicks != 0) return;
  for (int32_t p : shard_partitions_[shard]) {
    if (partitions_[p]->loaded) expire(p, wall_ms());
  }
}

void GroupCoordinator::schedule(int32_t partition, const Group& group) {
  PartitionGroups& pg = *partitions_[partition];
  const uint32_t shard = host_.shard_of(partition);
  Timers& timers = timers_[shard];
  int64_t next = group.next_deadline_ms();
  // Never in the past: a deadline the group has not acted on yet is handled 1 ms later, and
  // a state machine that kept reporting one could not spin the shard.
  if (next != Group::kNoDeadline) next = std::max(next, steady_ms() + 1);
  auto it = pg.wake_ms.find(group.id());
  if (it != pg.wake_ms.end()) {
    if (it->second == next) return;
    timers.due.erase({it->second, partition, group.id()});
    pg.wake_ms.erase(it);
  }
  if (next == Group::kNoDeadline) return;
  pg.wake_ms.emplace(group.id(), next);
  timers.due.emplace(next, partition, group.id());
  arm(shard);
}

void GroupCoordinator::arm(uint32_t shard) {
  Timers& timers = timers_[shard];
  if (timers.due.empty() || !host_.wake_at) return;
  const int64_t first = std::get<0>(*timers.due.begin());
  if (first >= timers.armed_ms) return;
  timers.armed_ms = first;
  host_.wake_at(shard, first);
}

void GroupCoordinator::on_timer(uint32_t shard) {
  SLUICE_ASSERT(shard < timers_.size());
  Timers& timers = timers_[shard];
  timers.armed_ms = Group::kNoDeadline;
  const int64_t now = steady_ms();
  while (!timers.due.empty() && std::get<0>(*timers.due.begin()) <= now) {
    const int32_t partition = std::get<1>(*timers.due.begin());
    const std::string id = std::get<2>(*timers.due.begin());
    timers.due.erase(timers.due.begin());
    PartitionGroups& pg = *partitions_[partition];
    pg.wake_ms.erase(id);
    Group* g = pg.loaded ? find(pg, id) : nullptr;
    if (!g) continue;
    g->tick(now);
    after(partition, *g);  // persists what changed and files the next deadline (> now)
  }
  arm(shard);
}

void GroupCoordinator::expire(int32_t partition, int64_t now_wall_ms) {
  PartitionGroups& pg = *partitions_[partition];
  const int64_t now = steady_ms();
  std::vector<std::string> drop;
  for (auto& [id, g] : pg.groups) {
    if (g->state() == GroupState::kDead) continue;
    std::vector<Write> writes;
    std::vector<TopicPartitionKey> gone;
    const bool empty = g->state() == GroupState::kEmpty;
    for (const auto& [tp, off] : g->offsets()) {
      const bool topic_gone = host_.partition_count(tp.first) <= tp.second;
      const bool old = empty && now - g->empty_since_ms() > options_.offsets_retention_ms &&
                       now_wall_ms - off.commit_ms > options_.offsets_retention_ms;
      if (topic_gone || old) {
        writes.push_back({encode_key(OffsetKey{id, tp.first, tp.second}), std::nullopt});
        gone.push_back(tp);
      }
    }
    for (const auto& tp : gone) g->offsets().erase(tp);
    if (empty && g->offsets().empty()) {
      // Nothing left to remember: the group disappears (Kafka marks it Dead).
      writes.push_back({encode_key(GroupKey{id}), std::nullopt});
      drop.push_back(id);
    }
    if (!writes.empty()) {
      append(partition, std::move(writes), [group = id](ErrorCode e) {
        if (e != ErrorCode::kNone) {
          spdlog::warn("group '{}': tombstones failed ({})", group, code(e));
        }
      });
    }
  }
  for (const auto& id : drop) pg.groups.erase(id);
}

// Requests ----------------------------------------------------------------------------------

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::FindCoordinatorRequest& body,
                              Reply<kafka::FindCoordinatorResponse> reply) {
  kafka::FindCoordinatorResponse resp;
  if (body.key_type == 0) {
    if (!host_.address(partition_of(body.key), resp.host, resp.port, resp.node_id)) {
      resp.error_code = code(ErrorCode::kCoordinatorNotAvailable);
      resp.error_message = "the coordinator of this group is not available";
      resp.node_id = -1;
      resp.port = -1;
    }
  } else {
    // Transactional ids (key type 1) are the transaction coordinator's (broker_txn.cc).
    resp.error_code = code(ErrorCode::kInvalidRequest);
    resp.error_message = "unknown coordinator key type";
    resp.node_id = -1;
    resp.port = -1;
  }
  reply(resp);
}

void GroupCoordinator::handle(const GroupRequestContext& ctx, const kafka::JoinGroupRequest& body,
                              Reply<kafka::JoinGroupResponse> reply) {
  auto fail = [&](ErrorCode e) {
    kafka::JoinGroupResponse resp;
    resp.error_code = code(e);
    resp.member_id = body.member_id;
    reply(resp);
  };
  if (body.group_id.empty()) return fail(ErrorCode::kInvalidGroupId);
  JoinArgs args;
  args.member_id = body.member_id;
  args.instance_id = body.group_instance_id;
  args.client_id = ctx.client_id;
  args.client_host = ctx.client_host;
  args.session_timeout_ms = body.session_timeout_ms;
  args.rebalance_timeout_ms =
      ctx.version >= 1 ? body.rebalance_timeout_ms : body.session_timeout_ms;
  args.protocol_type = body.protocol_type;
  for (const auto& p : body.protocols) args.protocols.emplace_back(p.name, p.metadata);
  args.member_id_required = ctx.version >= 4 && !body.group_instance_id;
  const std::string group_id = body.group_id;
  on_group_shard(group_id, [this, args = std::move(args), group_id, reply](PartitionGroups& pg) {
    if (!pg.loaded) {
      kafka::JoinGroupResponse resp;
      resp.error_code = code(not_loaded(pg));
      resp.member_id = args.member_id;
      return reply(resp);
    }
    Group* g = find(pg, group_id);
    if (!g && !args.member_id.empty()) {
      kafka::JoinGroupResponse resp;
      resp.error_code = code(ErrorCode::kUnknownMemberId);
      resp.member_id = args.member_id;
      return reply(resp);
    }
    if (!g) g = &find_or_create(pg, group_id);
    g->join(args, steady_ms(), [reply](JoinResult r) {
      kafka::JoinGroupResponse resp;
      resp.error_code = code(r.error);
      resp.generation_id = r.generation;
      resp.protocol_name = r.protocol;
      resp.leader = r.leader;
      resp.member_id = r.member_id;
      for (auto& m : r.members) {
        resp.members.push_back(
            {std::move(m.member_id), std::move(m.instance_id), std::move(m.metadata)});
      }
      reply(resp);
    });
    after(partition_of(group_id), *g);
  });
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::SyncGroupRequest& body,
                              Reply<kafka::SyncGroupResponse> reply) {
  auto fail = [reply](ErrorCode e) {
    kafka::SyncGroupResponse resp;
    resp.error_code = code(e);
    reply(resp);
  };
  if (body.group_id.empty()) return fail(ErrorCode::kInvalidGroupId);
  on_group_shard(body.group_id, [this, body, reply, fail](PartitionGroups& pg) {
    if (!pg.loaded) return fail(not_loaded(pg));
    Group* g = find(pg, body.group_id);
    if (!g) return fail(ErrorCode::kUnknownMemberId);
    std::vector<std::pair<std::string, ByteVec>> assignments;
    for (const auto& a : body.assignments) assignments.emplace_back(a.member_id, a.assignment);
    g->sync(body.member_id, body.group_instance_id, body.generation_id, std::move(assignments),
            steady_ms(), [reply](SyncResult r) {
              kafka::SyncGroupResponse resp;
              resp.error_code = code(r.error);
              resp.assignment = std::move(r.assignment);
              reply(resp);
            });
    after(partition_of(body.group_id), *g);
  });
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::HeartbeatRequest& body,
                              Reply<kafka::HeartbeatResponse> reply) {
  auto answer = [reply](ErrorCode e) {
    kafka::HeartbeatResponse resp;
    resp.error_code = code(e);
    reply(resp);
  };
  if (body.group_id.empty()) return answer(ErrorCode::kInvalidGroupId);
  on_group_shard(body.group_id, [this, body, answer](PartitionGroups& pg) {
    if (!pg.loaded) return answer(not_loaded(pg));
    Group* g = find(pg, body.group_id);
    if (!g) return answer(ErrorCode::kUnknownMemberId);
    answer(g->heartbeat(body.member_id, body.group_instance_id, body.generation_id, steady_ms()));
    after(partition_of(body.group_id), *g);
  });
}

void GroupCoordinator::handle(const GroupRequestContext& ctx, const kafka::LeaveGroupRequest& body,
                              Reply<kafka::LeaveGroupResponse> reply) {
  if (body.group_id.empty()) {
    kafka::LeaveGroupResponse resp;
    resp.error_code = code(ErrorCode::kInvalidGroupId);
    return reply(resp);
  }
  const int16_t version = ctx.version;
  on_group_shard(body.group_id, [this, body, reply, version](PartitionGroups& pg) {
    kafka::LeaveGroupResponse resp;
    Group* g = pg.loaded ? find(pg, body.group_id) : nullptr;
    if (!pg.loaded) {
      resp.error_code = code(not_loaded(pg));
    } else if (!g) {
      resp.error_code = code(ErrorCode::kUnknownMemberId);
    } else if (version <= 2) {
      resp.error_code = code(g->leave(body.member_id, std::nullopt, steady_ms()));
    } else {
      for (const auto& m : body.members) {
        resp.members.push_back({m.member_id, m.group_instance_id,
                                code(g->leave(m.member_id, m.group_instance_id, steady_ms()))});
      }
    }
    if (g) after(partition_of(body.group_id), *g);
    reply(resp);
  });
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::OffsetCommitRequest& body,
                              Reply<kafka::OffsetCommitResponse> reply) {
  auto resp = commit_response<kafka::OffsetCommitResponse>(body.topics);
  const int32_t partition = partition_of(body.group_id);
  on_group_shard(body.group_id, [this, body, reply, resp, partition](PartitionGroups& pg) {
    auto fail_all = [&](ErrorCode e) {
      set_errors(resp->topics, e, false);
      reply(*resp);
    };
    if (!pg.loaded) return fail_all(not_loaded(pg));
    Group* g = find(pg, body.group_id);
    if (!g) {
      if (body.generation_id_or_member_epoch >= 0) return fail_all(ErrorCode::kIllegalGeneration);
      g = &find_or_create(pg, body.group_id);
    }
    const ErrorCode verdict = g->validate_commit(body.member_id, body.group_instance_id,
                                                 body.generation_id_or_member_epoch, steady_ms());
    if (verdict != ErrorCode::kNone) return fail_all(verdict);
    // OffsetCommit v1 may carry the commit time (Kafka keeps it; -1: now).
    const int64_t now = wall_ms();
    auto values = offsets_to_commit(
        body.topics, resp->topics, host_.partition_count,
        [now](const auto& p) { return p.commit_timestamp >= 0 ? p.commit_timestamp : now; });
    if (values.empty()) return reply(*resp);
    std::vector<Write> writes;
    for (const auto& [tp, v] : values) {
      writes.push_back(
          {encode_key(OffsetKey{body.group_id, tp.first, tp.second}), encode_offset_value(v)});
    }
    const std::string group_id = body.group_id;
    append(partition, std::move(writes),
           [this, &pg, group_id, values = std::move(values), resp, reply](ErrorCode e) {
             if (e == ErrorCode::kNone) {
               if (Group* g = find(pg, group_id)) {
                 for (const auto& [tp, v] : values) g->offsets()[tp] = v;
               }
             } else {
               set_errors(resp->topics, e, true);
             }
             reply(*resp);
           });
  });
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::TxnOffsetCommitRequest& body,
                              Reply<kafka::TxnOffsetCommitResponse> reply) {
  auto resp = commit_response<kafka::TxnOffsetCommitResponse>(body.topics);
  const int32_t partition = partition_of(body.group_id);
  on_group_shard(body.group_id, [this, body, reply, resp, partition](PartitionGroups& pg) {
    auto fail_all = [&](ErrorCode e) {
      set_errors(resp->topics, e, false);
      reply(*resp);
    };
    if (!pg.loaded) return fail_all(not_loaded(pg));
    // v3 names the member (KIP-447): a zombie of an older generation is refused. Without a
    // generation (-1) the commit is taken, as Kafka does.
    if (Group* g = find(pg, body.group_id); g && body.generation_id >= 0) {
      const ErrorCode verdict = g->validate_commit(body.member_id, body.group_instance_id,
                                                   body.generation_id, steady_ms());
      if (verdict != ErrorCode::kNone) return fail_all(verdict);
    }
    const int64_t now = wall_ms();
    auto values = offsets_to_commit(body.topics, resp->topics, host_.partition_count,
                                    [now](const auto&) { return now; });
    if (values.empty()) return reply(*resp);
    std::vector<Write> writes;
    for (const auto& [tp, v] : values) {
      writes.push_back(
          {encode_key(OffsetKey{body.group_id, tp.first, tp.second}), encode_offset_value(v)});
    }
    // The producer's own transactional batch (no sequence, as Kafka's coordinator writes it):
    // the transaction's marker on this partition decides it, here and on every replica.
    kafka::RecordBatchBuilder::Options options;
    options.producer_id = body.producer_id;
    options.producer_epoch = body.producer_epoch;
    options.transactional = true;
    const std::string group_id = body.group_id;
    const int64_t pid = body.producer_id;
    append(
        partition, std::move(writes),
        [&pg, group_id, pid, values = std::move(values), resp, reply](ErrorCode e) {
          if (e == ErrorCode::kNone) {
            auto& held = pg.txn_offsets[pid][group_id];
            for (const auto& [tp, v] : values) held[tp] = v;
          } else {
            set_errors(resp->topics, e, true);
          }
          reply(*resp);
        },
        options);
  });
}

void GroupCoordinator::end_txn(int32_t partition, int64_t producer_id, bool commit) {
  if (partition < 0 || partition >= static_cast<int32_t>(partitions_.size())) return;
  PartitionGroups& pg = *partitions_[partition];
  if (!pg.loaded) return;  // a coordinator taking over reads the marker from the log
  auto held = pg.txn_offsets.extract(producer_id);
  if (!held || !commit) return;
  for (auto& [group, offsets] : held.mapped()) {
    Group& g = find_or_create(pg, group);
    for (auto& [tp, v] : offsets) g.offsets()[tp] = std::move(v);
  }
}

void GroupCoordinator::handle(const GroupRequestContext& ctx, const kafka::OffsetFetchRequest& body,
                              Reply<kafka::OffsetFetchResponse> reply) {
  const int16_t version = ctx.version;
  on_group_shard(body.group_id, [this, body, reply, version](PartitionGroups& pg) {
    kafka::OffsetFetchResponse resp;
    auto none = [](int32_t index) {
      kafka::OffsetFetchResponse::OffsetFetchResponsePartition p;
      p.partition_index = index;
      p.committed_offset = -1;
      p.metadata = "";
      return p;
    };
    Group* g = pg.loaded ? find(pg, body.group_id) : nullptr;
    if (!body.topics) {
      if (g) {
        for (const auto& [tp, v] : g->offsets()) {
          if (resp.topics.empty() || resp.topics.back().name != tp.first) {
            resp.topics.emplace_back().name = tp.first;
          }
          auto p = none(tp.second);
          p.committed_offset = v.offset;
          p.committed_leader_epoch = v.leader_epoch;
          p.metadata = v.metadata;
          resp.topics.back().partitions.push_back(std::move(p));
        }
      }
    } else {
      for (const auto& t : *body.topics) {
        auto& rt = resp.topics.emplace_back();
        rt.name = t.name;
        for (int32_t index : t.partition_indexes) {
          auto p = none(index);
          if (g) {
            auto it = g->offsets().find({t.name, index});
            if (it != g->offsets().end()) {
              p.committed_offset = it->second.offset;
              p.committed_leader_epoch = it->second.leader_epoch;
              p.metadata = it->second.metadata;
            }
          }
          // KIP-447: a consumer asking for stable offsets waits out an open transaction's.
          if (body.require_stable && pg.loaded) {
            for (const auto& [pid, groups] : pg.txn_offsets) {
              auto held = groups.find(body.group_id);
              if (held != groups.end() && held->second.count({t.name, index})) {
                p.error_code = code(ErrorCode::kUnstableOffsetCommit);
              }
            }
          }
          rt.partitions.push_back(std::move(p));
        }
      }
    }
    if (!pg.loaded) {
      resp.error_code = code(not_loaded(pg));
      if (version < 2) {
        for (auto& t : resp.topics) {
          for (auto& p : t.partitions) p.error_code = resp.error_code;
        }
      }
    }
    reply(resp);
  });
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::ListGroupsRequest& body,
                              Reply<kafka::ListGroupsResponse> reply) {
  auto gather = std::make_shared<Gather<kafka::ListGroupsResponse>>();
  gather->reply = std::move(reply);
  gather->left = host_.shard_count;
  auto mutex = std::make_shared<std::mutex>();  // guards gather->resp (written by each shard)
  std::vector<std::string> filter = body.states_filter;
  for (uint32_t s = 0; s < host_.shard_count; ++s) {
    host_.post(s, [this, s, gather, mutex, filter] {
      std::vector<kafka::ListGroupsResponse::ListedGroup> mine;
      for (int32_t p : shard_partitions_[s]) {
        for (const auto& [id, g] : partitions_[p]->groups) {
          const std::string state = group_state_name(g->state());
          if (g->state() == GroupState::kDead) continue;
          bool wanted = filter.empty();
          for (const auto& f : filter) {
            if (strcasecmp(f.c_str(), state.c_str()) == 0) wanted = true;
          }
          if (wanted) mine.push_back({id, g->protocol_type(), state});
        }
      }
      {
        std::lock_guard lock(*mutex);
        for (auto& m : mine) gather->resp.groups.push_back(std::move(m));
      }
      gather->done();
    });
  }
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::DescribeGroupsRequest& body,
                              Reply<kafka::DescribeGroupsResponse> reply) {
  auto gather = std::make_shared<Gather<kafka::DescribeGroupsResponse>>();
  gather->reply = std::move(reply);
  gather->resp.groups.resize(body.groups.size());
  gather->left = body.groups.size() + 1;
  for (size_t i = 0; i < body.groups.size(); ++i) {
    const std::string id = body.groups[i];
    on_group_shard(id, [this, id, i, gather](PartitionGroups& pg) {
      auto& out = gather->resp.groups[i];  // this slot is written by this task only
      out.group_id = id;
      Group* g = due_now(pg, id);
      if (!pg.loaded) {
        out.error_code = code(not_loaded(pg));
      } else if (!g) {
        out.group_state = "Dead";
      } else {
        out.group_state = group_state_name(g->state());
        out.protocol_type = g->protocol_type();
        out.protocol_data = g->protocol();
        const bool stable = g->state() == GroupState::kStable;
        for (const auto& [mid, m] : g->members()) {
          kafka::DescribeGroupsResponse::DescribedGroupMember dm;
          dm.member_id = mid;
          dm.group_instance_id = m.instance_id;
          dm.client_id = m.client_id;
          dm.client_host = m.client_host;
          if (stable) {
            if (const ByteVec* meta = m.metadata_for(g->protocol())) dm.member_metadata = *meta;
            dm.member_assignment = m.assignment;
          }
          out.members.push_back(std::move(dm));
        }
      }
      gather->done();
    });
  }
  gather->done();
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::DeleteGroupsRequest& body,
                              Reply<kafka::DeleteGroupsResponse> reply) {
  auto gather = std::make_shared<Gather<kafka::DeleteGroupsResponse>>();
  gather->reply = std::move(reply);
  gather->resp.results.resize(body.groups_names.size());
  gather->left = body.groups_names.size() + 1;
  for (size_t i = 0; i < body.groups_names.size(); ++i) {
    const std::string id = body.groups_names[i];
    gather->resp.results[i].group_id = id;
    on_group_shard(id, [this, id, i, gather](PartitionGroups& pg) {
      auto& out = gather->resp.results[i];
      Group* g = due_now(pg, id);
      if (!pg.loaded) {
        out.error_code = code(not_loaded(pg));
      } else if (!g || g->state() == GroupState::kDead) {
        out.error_code = code(ErrorCode::kGroupIdNotFound);
      } else if (g->state() != GroupState::kEmpty) {
        out.error_code = code(ErrorCode::kNonEmptyGroup);
      } else {
        std::vector<Write> writes;
        for (const auto& [tp, v] : g->offsets()) {
          writes.push_back({encode_key(OffsetKey{id, tp.first, tp.second}), std::nullopt});
        }
        writes.push_back({encode_key(GroupKey{id}), std::nullopt});
        g->shut(ErrorCode::kCoordinatorNotAvailable);  // Dead until the tombstones are durable
        append(partition_of(id), std::move(writes), [&pg, id, i, gather](ErrorCode e) {
          gather->resp.results[i].error_code = code(e);
          auto it = pg.groups.find(id);
          if (it != pg.groups.end() && it->second->state() == GroupState::kDead)
            pg.groups.erase(it);
          gather->done();
        });
        return;
      }
      gather->done();
    });
  }
  gather->done();
}

void GroupCoordinator::handle(const GroupRequestContext&, const kafka::OffsetDeleteRequest& body,
                              Reply<kafka::OffsetDeleteResponse> reply) {
  on_group_shard(body.group_id, [this, body, reply](PartitionGroups& pg) {
    auto resp = std::make_shared<kafka::OffsetDeleteResponse>();
    Group* g = pg.loaded ? find(pg, body.group_id) : nullptr;
    if (!pg.loaded) {
      resp->error_code = code(not_loaded(pg));
      return reply(*resp);
    }
    if (!g || g->state() == GroupState::kDead) {
      resp->error_code = code(ErrorCode::kGroupIdNotFound);
      return reply(*resp);
    }
    std::set<std::string> subscribed;
    if (g->state() != GroupState::kEmpty && g->protocol_type() == "consumer") {
      for (const auto& [id, m] : g->members()) {
        if (const ByteVec* meta = m.metadata_for(g->protocol())) {
          for (auto& t : subscribed_topics(*meta)) subscribed.insert(std::move(t));
        }
      }
    }
    std::vector<Write> writes;
    for (const auto& t : body.topics) {
      auto& rt = resp->topics.emplace_back();
      rt.name = t.name;
      for (const auto& p : t.partitions) {
        auto& rp = rt.partitions.emplace_back();
        rp.partition_index = p.partition_index;
        if (subscribed.count(t.name) ||
            (g->state() != GroupState::kEmpty && g->protocol_type() != "consumer")) {
          rp.error_code = static_cast<int16_t>(kGroupSubscribedToTopic);
          continue;
        }
        if (g->offsets().erase({t.name, p.partition_index})) {
          writes.push_back(
              {encode_key(OffsetKey{body.group_id, t.name, p.partition_index}), std::nullopt});
        }
      }
    }
    if (writes.empty()) return reply(*resp);
    append(partition_of(body.group_id), std::move(writes), [resp, reply](ErrorCode e) {
      if (e != ErrorCode::kNone) resp->error_code = code(e);
      reply(*resp);
    });
  });
}

}  // namespace sluice::broker
