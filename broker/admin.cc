// The admin HTTP API and /metrics (broker/README.md, "Admin HTTP API and metrics"): routes,
// the JSON documents, and the Prometheus families. Requests arrive on shard 0 (AdminServer);
// whatever partitions hold is gathered by posting to every shard and summed on the last one.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>

#include "broker/broker.h"
#include "broker/version.h"

namespace sluice::broker {

// One partition as this broker's replica of it sees it (on its shard).
struct PartitionState {
  std::string topic;
  int32_t partition = 0;
  int64_t log_start = -1;
  int64_t log_end = -1;
  int64_t high_watermark = -1;
  uint64_t size_bytes = 0;
  uint64_t segments = 0;
  bool failed = false;     // the log or the replica stopped (disk error, full disk)
  bool leader = false;     // serving leader here
  int32_t leader_id = -1;  // the Raft leader this replica knows of (-1: none)
  int32_t term = -1;       // Raft term = leader epoch
  std::vector<int32_t> replicas;  // the Raft voters
  std::vector<int32_t> isr;       // meaningful on the leader only
  std::vector<std::pair<int32_t, int64_t>> follower_lag;  // leader only: Raft indexes behind
};

static PartitionState partition_state(const Partition& p, int64_t lag_ms) {
  PartitionState s;
  s.topic = p.tp.topic;
  s.partition = p.tp.partition;
  s.failed = p.log->failed();
  s.log_start = *p.log->log_start_offset();
  s.log_end = *p.log->log_end_offset();
  s.size_bytes = p.log->size_bytes();
  s.segments = p.log->segment_count();
  if (p.replica) {
    s.failed = s.failed || p.replica->failed();
    s.leader = p.replica->serving();
    s.leader_id = p.replica->leader();
    s.term = p.replica->leader_epoch();
    s.replicas = p.replica->voters();
    if (s.leader) {
      s.isr = p.replica->in_sync_replicas(lag_ms);
      s.follower_lag = p.replica->follower_lag();
    }
    s.high_watermark = p.replica->high_watermark();
  } else {
    s.high_watermark = p.high_watermark();
  }
  return s;
}

// What one shard contributes to a scrape.
struct ShardReport {
  std::array<ApiMetrics, kApiKeysMax> apis;
  uint64_t unknown_requests = 0;
  std::map<PartitionKey, PartitionTraffic> traffic;
  uint64_t raft_terms_seen = 0;
  uint64_t raft_campaigns = 0;
  LatencyHistogram sync_latency;
  bool io_uring = false;
  // Descriptors (log::FdCache): holders keeping them now, the busy cap, partitions waiting
  // for room now, and waits so far.
  uint64_t fd_holders = 0;
  uint64_t fd_busy_max = 0;
  uint64_t fd_waiting = 0;
  uint64_t fd_waits = 0;
  uint64_t cold_cache_bytes = 0;
  uint64_t cold_cache_drops = 0;
  uint64_t paced_persists = 0;  // SyncPacer::waits()
  uint64_t raft_awake = 0;  // Raft groups the shard ticks (the others sleep while idle)
  std::vector<PartitionState> partitions;
  std::vector<GroupCoordinator::GroupView> groups;  // coordinated on this shard
  // gather_reports(): high watermarks of partitions groups here committed and no replica
  // here holds, as their leaders answered (kept in the first report).
  std::map<PartitionKey, int64_t> remote_high_watermarks;
};

// A group's lag on one partition: its committed offset against the high watermark of this
// broker's replica, or else the leader's (-1 when neither is known).
struct GroupLag {
  std::string topic;
  int32_t partition = 0;
  int64_t committed = -1;
  int64_t high_watermark = -1;
  int64_t lag() const {
    return high_watermark < 0 ? -1 : std::max<int64_t>(0, high_watermark - committed);
  }
};

static std::vector<GroupLag> group_lags(const GroupCoordinator::GroupView& g,
                                        const std::map<PartitionKey, int64_t>& hwm) {
  std::vector<GroupLag> out;
  for (const auto& [tp, offset] : g.committed) {
    auto it = hwm.find(tp);
    out.push_back({tp.first, tp.second, offset, it == hwm.end() ? -1 : it->second});
  }
  return out;
}

// Every shard's groups, by name.
static std::vector<const GroupCoordinator::GroupView*> sorted_groups(
    const std::vector<ShardReport>& reports) {
  std::vector<const GroupCoordinator::GroupView*> groups;
  for (const auto& r : reports) {
    for (const auto& g : r.groups) groups.push_back(&g);
  }
  std::sort(groups.begin(), groups.end(),
            [](const auto* a, const auto* b) { return a->group < b->group; });
  return groups;
}

static std::map<PartitionKey, int64_t> high_watermarks(const std::vector<ShardReport>& reports) {
  std::map<PartitionKey, int64_t> out;
  for (const auto& r : reports) {
    for (const auto& p : r.partitions) out[PartitionKey(p.topic, p.partition)] = p.high_watermark;
  }
  for (const auto& r : reports) {
    for (const auto& [key, hwm] : r.remote_high_watermarks) out.emplace(key, hwm);
  }
  return out;
}

static void add_traffic(PartitionTraffic& sum, const PartitionTraffic& t) {
  sum.bytes_in += t.bytes_in;
  sum.records_in += t.records_in;
  sum.bytes_out += t.bytes_out;
  sum.records_out += t.records_out;
}

// Per-shard traffic counters of the same partition summed.
static std::map<PartitionKey, PartitionTraffic> sum_traffic(
    const std::vector<ShardReport>& reports) {
  std::map<PartitionKey, PartitionTraffic> traffic;
  for (const auto& r : reports) {
    for (const auto& [key, t] : r.traffic) add_traffic(traffic[key], t);
  }
  return traffic;
}

namespace {

// "%2F" and friends in a path segment; false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex(in[i + 1]);
    const int lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

// A decimal number from 0 to `max`.
bool parse_count(std::string_view s, int32_t max, int32_t& out) {
  if (s.empty() || s.size() > 10) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > max) return false;
  out = static_cast<int32_t>(v);
  return true;
}

// The value of `name` in the target's query string (not decoded: numbers only).
std::optional<std::string_view> query_param(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
  }
  return std::nullopt;
}

void write_ids(JsonWriter& w, std::string_view name, const std::vector<int32_t>& ids) {
  w.key(name).begin_array();
  for (int32_t id : ids) w.value(id);
  w.end_array();
}

// Kafka's names of the API keys (the public protocol's), for the `api` label.
constexpr std::string_view kApiNames[] = {
    "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica", "UpdateMetadata",
    "ControlledShutdown", "OffsetCommit", "OffsetFetch", "FindCoordinator", "JoinGroup",
    "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake",
    "ApiVersions", "CreateTopics", "DeleteTopics", "DeleteRecords", "InitProducerId",
    "OffsetForLeaderEpoch", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers",
    "TxnOffsetCommit", "DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs",
    "AlterConfigs", "AlterReplicaLogDirs", "DescribeLogDirs", "SaslAuthenticate",
    "CreatePartitions", "CreateDelegationToken", "RenewDelegationToken", "ExpireDelegationToken",
    "DescribeDelegationToken", "DeleteGroups", "ElectLeaders", "IncrementalAlterConfigs",
    "AlterPartitionReassignments", "ListPartitionReassignments", "OffsetDelete",
    "DescribeClientQuotas", "AlterClientQuotas", "DescribeUserScramCredentials",
    "AlterUserScramCredentials", "Vote", "BeginQuorumEpoch", "EndQuorumEpoch", "DescribeQuorum",
    "AlterPartition", "UpdateFeatures", "Envelope", "FetchSnapshot", "DescribeCluster",
    "DescribeProducers", "BrokerRegistration", "BrokerHeartbeat", "UnregisterBroker",
    "DescribeTransactions", "ListTransactions", "AllocateProducerIds", "ConsumerGroupHeartbeat",
};

std::string api_name(size_t key) {
  return key < std::size(kApiNames) ? std::string(kApiNames[key]) : std::to_string(key);
}

}  // namespace

void Broker::count_request(uint32_t conn_shard, int16_t api_key, int16_t version, bool error,
                           std::chrono::steady_clock::time_point start) {
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (ShardMetrics* m = this_shard_metrics()) {
    m->request_done(api_key, version, error, elapsed);
    return;
  }
  // Answered from a thread that is no shard (the cluster thread): counted on the connection's.
  ShardState* ss = shards_[conn_shard % shards_.size()].get();
  ss->shard.post([ss, api_key, version, error, elapsed] {
    ss->metrics.request_done(api_key, version, error, elapsed);
  });
}

Status Broker::start_admin() {
  if (!config_.admin_enabled) {
    spdlog::info("admin HTTP API disabled (--admin.listen off)");
    return {};
  }
  admin_ = std::make_unique<AdminServer>(
      shards_.front()->shard,
      [this](const AdminRequest& req, std::function<void(AdminResponse)> done) {
        handle_admin(req, std::move(done));
      });
  if (auto s = admin_->listen(config_.admin_listen); !s) {
    admin_.reset();
    if (config_.admin_listen_set) return s;
    // The default address is best effort: a second broker on this host goes on without it.
    spdlog::warn("{}; the admin API and /metrics are off", s.error().message);
    return {};
  }
  admin_->start();
  spdlog::info("admin HTTP API and /metrics on {}:{}", config_.admin_listen.host, admin_->port());
  return {};
}

void Broker::stop_admin() {
  if (admin_) admin_->stop();
}

void Broker::handle_admin(const AdminRequest& req, std::function<void(AdminResponse)> done) {
  std::string_view target = req.target;
  if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  if (req.method == "POST") {
    // Only the moves take POST (admin_moves.cc).
    if (cluster_up_.load(std::memory_order_acquire) && handle_admin_moves(req, target, done)) {
      return;
    }
    return done(json_error_response(405, "POST is for decommission, recommission and balance only"));
  }
  if (target == "/metrics") return admin_metrics(std::move(done));
  if (target == "/v1/health" || target == "/health") return done(admin_health());
  if (target == "/v1/version") {
    JsonWriter w;
    w.begin_object().field("version", kVersion).field("node_id", config_.node_id).end_object();
    return done(json_response(200, w.take()));
  }
  if (target == "/v1/config") return done(admin_config());
  if (target == "/v1" || target == "/v1/") {
    JsonWriter w;
    w.begin_object().key("endpoints").begin_array();
    for (const char* e : {"/ (the web console)", "/metrics", "/v1/health", "/v1/version",
                          "/v1/config", "/v1/brokers", "/v1/topics", "/v1/topics/{name}",
                          "/v1/topics/{name}/partitions/{p}/records?limit=N", "/v1/groups",
                          "/v1/stats",
                          "/v1/partitions/reassignments", "/v1/brokers/{id}/decommission",
                          "POST /v1/brokers/{id}/decommission",
                          "POST /v1/brokers/{id}/recommission", "POST /v1/cluster/balance"}) {
      w.value(e);
    }
    w.end_array().end_object();
    return done(json_response(200, w.take()));
  }
  // Anything else outside /v1 is a file of the web console (admin_console.cc).
  if (!target.starts_with("/v1/")) return done(admin_console_file(target));
  if (!cluster_up_.load(std::memory_order_acquire)) {
    return done(json_error_response(503, "the broker is starting: no cluster metadata yet"));
  }
  if (handle_admin_moves(req, target, done)) return;
  if (target == "/v1/brokers") return done(admin_brokers());
  if (target == "/v1/topics") return done(admin_topics());
  if (target == "/v1/groups") return admin_groups(std::move(done));
  if (target == "/v1/stats") return admin_stats(std::move(done));
  constexpr std::string_view kTopicPrefix = "/v1/topics/";
  if (target.starts_with(kTopicPrefix)) {
    // {name} or {name}/partitions/{p}/records (the name percent-encoded).
    std::string_view rest = target.substr(kTopicPrefix.size());
    std::string_view sub;
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
      sub = rest.substr(slash);
      rest = rest.substr(0, slash);
    }
    std::string name;
    if (!percent_decode(rest, name) || name.empty() || name.find('/') != std::string::npos) {
      return done(json_error_response(400, "bad topic name in the path"));
    }
    if (sub.empty()) return admin_topic(name, std::move(done));
    constexpr std::string_view kPartitions = "/partitions/";
    constexpr std::string_view kRecords = "/records";
    int32_t partition = -1;
    if (!sub.starts_with(kPartitions) || !sub.ends_with(kRecords) ||
        !parse_count(sub.substr(kPartitions.size(),
                                sub.size() - kPartitions.size() - kRecords.size()),
                     1'000'000'000, partition)) {
      return done(json_error_response(404, "no such endpoint; GET /v1 lists them"));
    }
    int32_t limit = 20;
    if (auto v = query_param(req.target, "limit"); v && !parse_count(*v, 1000, limit)) {
      return done(json_error_response(400, "limit must be a number from 0 to 1000"));
    }
    return admin_records(name, partition, limit, std::move(done));
  }
  done(json_error_response(404, "no such endpoint; GET / lists them"));
}

AdminResponse Broker::admin_health() {
  std::vector<std::string> reasons;
  const Phase phase = phase_.load(std::memory_order_acquire);
  if (phase == Phase::kStarting) reasons.push_back("starting: partitions are being recovered");
  if (phase == Phase::kStopping) reasons.push_back("shutting down");
  bool registered = false;
  bool fenced = false;
  if (cluster_up_.load(std::memory_order_acquire)) {
    auto snap = registry_->snapshot();
    auto it = snap->brokers.find(config_.node_id);
    registered = it != snap->brokers.end();
    fenced = registered && it->second.fenced;
    if (!registered) reasons.push_back("not registered with the controller");
    if (fenced) reasons.push_back("fenced by the controller");
  } else {
    reasons.push_back("no cluster metadata yet");
  }
  const bool ready = reasons.empty();
  JsonWriter w;
  w.begin_object()
      .field("ready", ready)
      .field("status", ready ? "ready" : "not ready")
      .field("node_id", config_.node_id)
      .field("phase", phase == Phase::kStarting ? "starting"
                      : phase == Phase::kServing ? "serving"
                                                 : "stopping")
      .field("registered", registered)
      .field("fenced", fenced);
  if (cluster_up_.load(std::memory_order_acquire)) {
    w.field("controller_leader", cluster_->controller_leader());
  }
  w.key("reasons").begin_array();
  for (const auto& r : reasons) w.value(r);
  w.end_array().end_object();
  return json_response(ready ? 200 : 503, w.take());
}

AdminResponse Broker::admin_config() {
  const auto live = live_config();  // dynamic broker configs included
  const BrokerConfig& c = *live;
  JsonWriter w;
  // The effective settings by their flag names. None of them is a secret today; a secret
  // setting (SASL, TLS keys) must be left out here when one is added.
  w.begin_object()
      .field("node.id", c.node_id)
      .field("data-dir", c.data_dir)
      .field("listen", c.listen.to_string())
      .field("advertised", c.advertised_address().to_string())
      .field("shards", c.shards)
      .field("num.partitions", c.num_partitions)
      .field("default.replication.factor", static_cast<int32_t>(c.default_replication_factor))
      .field("min.insync.replicas", c.min_insync_replicas)
      .field("replica.lag.time.max.ms", c.replica_lag_time_max_ms)
      .field("raft.tick.ms", c.raft_tick_ms)
      .field("raft.election.timeout.ms", c.raft_election_timeout_ms)
      .field("raft.heartbeat.interval.ms", c.raft_heartbeat_interval_ms)
      .field("auto.create.topics.enable", c.auto_create_topics)
      .field("log.segment.bytes", c.segment_bytes)
      .field("log.roll.ms", c.roll_ms)
      .field("retention.ms", c.retention_ms)
      .field("retention.bytes", c.retention_bytes)
      .field("message.max.bytes", c.message_max_bytes)
      .field("log.flush", c.flush_policy == FlushPolicy::kEveryBatch ? "every-batch"
                          : c.flush_policy == FlushPolicy::kInterval ? "interval"
                                                                     : "never")
      .field("log.flush.interval.ms", c.flush_interval_ms)
      .field("log.sync.max.rate", c.sync_max_rate)
      .field("log.sync.pace.below.bytes", c.sync_pace_below_bytes)
      .field("log.sync.rounds", c.sync_rounds)
      .field("log.zero.ahead", c.zero_ahead)
      .field("raft.async.writes", c.raft_async_writes)
      .field("socket.request.max.bytes", c.request_max_bytes)
      .field("queued.max.request.bytes", c.queued_max_request_bytes)
      .field("max.connections", c.max_connections)
      .field("max.partitions", c.partitions_max)
      .field("connections.max.idle.ms", c.idle_timeout_ms)
      .field("max.inflight.requests", c.max_inflight_per_connection)
      .field("connection.moves", c.connection_moves)
      .field("group.min.session.timeout.ms", c.group_min_session_timeout_ms)
      .field("group.max.session.timeout.ms", c.group_max_session_timeout_ms)
      .field("group.initial.rebalance.delay.ms", c.group_initial_rebalance_delay_ms)
      .field("offsets.topic.num.partitions", c.offsets_topic_partitions)
      .field("offsets.topic.replication.factor", c.offsets_topic_replication_factor)
      .field("log.dir.min.free.bytes", c.min_free_bytes)
      .field("log.scrub.bytes.per.sec", c.scrub_bytes_per_sec)
      .field("log.cold.cache.bytes", c.cold_cache_bytes)
      .field("log.cleaner.dedupe.buffer.size", c.cleaner_dedupe_buffer_bytes)
      .field("log-level", c.log_level)
      .field("controller.voters", c.controller_voters)
      .field("rpc.listen", c.rpc_listen.to_string())
      .field("security.inter.broker.protocol", security_protocol_name(c.inter_broker_protocol))
      .field("rack", c.rack)
      .field("broker.session.timeout.ms", c.broker_session_timeout_ms)
      .field("broker.heartbeat.interval.ms", c.broker_heartbeat_interval_ms)
      .field("controller.wait.ms", c.controller_wait_ms)
      .field("controller.snapshot.records", c.controller_snapshot_records)
      .field("admin.listen", c.admin_enabled ? c.admin_listen.to_string() : std::string("off"))
      .field("metrics.partition.series.max", c.metrics_partition_series_max)
      .end_object();
  return json_response(200, w.take());
}

AdminResponse Broker::admin_brokers() {
  auto snap = registry_->snapshot();
  auto voters = cluster::parse_voters(config_.controller_voters);
  auto is_voter = [&](int32_t id) {
    if (!voters || voters->empty()) return id == config_.node_id;  // a one-node cluster
    return std::any_of(voters->begin(), voters->end(),
                       [id](const cluster::Voter& v) { return v.id == id; });
  };
  JsonWriter w;
  w.begin_object()
      .field("cluster_id", snap->cluster_id)
      .field("controller_leader", cluster_->controller_leader())
      .key("brokers")
      .begin_array();
  for (const auto& [id, b] : snap->brokers) {
    w.begin_object()
        .field("id", id)
        .field("address", b.host + ":" + std::to_string(b.port))
        .field("rack", b.rack)
        .field("fenced", b.fenced)
        .field("voter", is_voter(id))
        .end_object();
  }
  w.end_array().end_object();
  return json_response(200, w.take());
}

AdminResponse Broker::admin_topics() {
  auto snap = registry_->snapshot();
  JsonWriter w;
  w.begin_object().key("topics").begin_array();
  for (const auto& [name, t] : snap->topics) {
    int32_t leaderless = 0;
    for (const auto& p : t.parts) leaderless += p.leader < 0 ? 1 : 0;
    w.begin_object()
        .field("name", name)
        .field("partitions", t.partitions)
        .field("replication_factor", static_cast<int32_t>(t.replication_factor))
        .field("internal", t.internal)
        .field("partitions_without_leader", leaderless)
        .end_object();
  }
  w.end_array().end_object();
  return json_response(200, w.take());
}

template <class Slot>
void Broker::gather(std::function<void(ShardState&, Slot&)> fill,
                    std::function<void(std::vector<Slot>)> done) {
  struct Gather {
    std::vector<Slot> slots;
    std::atomic<size_t> left;
    std::function<void(std::vector<Slot>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->slots.resize(shards_.size());
  g->left = shards_.size();
  g->done = std::move(done);
  for (size_t i = 0; i < shards_.size(); ++i) {
    ShardState* ss = shards_[i].get();
    ss->shard.post([ss, g, i, fill] {
      fill(*ss, g->slots[i]);
      // The last shard to finish sees every slot (acq_rel orders the others' writes first).
      if (g->left.fetch_sub(1, std::memory_order_acq_rel) == 1) g->done(std::move(g->slots));
    });
  }
}

void Broker::admin_topic(const std::string& name, std::function<void(AdminResponse)> done) {
  auto snap = registry_->snapshot();
  const TopicInfo* found = snap->find(name);
  if (!found) return done(json_error_response(404, "no topic '" + name + "'"));
  const int64_t lag_ms = config_.replica_lag_time_max_ms;
  gather<std::vector<PartitionState>>(
      [name, lag_ms](ShardState& ss, std::vector<PartitionState>& out) {
        for (auto it = ss.partitions.lower_bound(TopicPartition{name, 0});
             it != ss.partitions.end() && it->first.topic == name; ++it) {
          if (!it->second->deleting) out.push_back(partition_state(*it->second, lag_ms));
        }
      },
      [snap, name, node = config_.node_id, done](std::vector<std::vector<PartitionState>> shards) {
        const TopicInfo& t = *snap->find(name);
        std::map<int32_t, const PartitionState*> local;
        for (const auto& s : shards) {
          for (const auto& p : s) local[p.partition] = &p;
        }
        JsonWriter w;
        w.begin_object()
            .field("name", t.name)
            .field("partitions", t.partitions)
            .field("replication_factor", static_cast<int32_t>(t.replication_factor))
            .field("internal", t.internal)
            .key("configs")
            .begin_object();
        for (const auto& [k, v] : t.configs) w.field(k, v);
        w.end_object().key("partition_list").begin_array();
        for (int32_t i = 0; i < t.partitions; ++i) {
          const PartitionInfo& pi = t.parts[static_cast<size_t>(i)];
          w.begin_object()
              .field("partition", i)
              .field("leader", pi.leader)
              .field("leader_epoch", pi.leader_epoch);
          write_ids(w, "replicas", pi.replicas);
          // Offsets, sizes and the ISR as this broker's replica sees them; the ISR is known to
          // the leader only.
          auto it = local.find(i);
          if (it == local.end()) {
            w.key("isr").null().key("local").null();
          } else {
            const PartitionState& p = *it->second;
            if (p.leader) {
              write_ids(w, "isr", p.isr);
            } else {
              w.key("isr").null();
            }
            w.key("local")
                .begin_object()
                .field("broker", node)
                .field("role", p.leader ? "leader" : "follower")
                .field("term", p.term)
                .field("log_start_offset", p.log_start)
                .field("log_end_offset", p.log_end)
                .field("high_watermark", p.high_watermark)
                .field("size_bytes", p.size_bytes)
                .field("segments", p.segments)
                .field("failed", p.failed);
            if (p.leader) {
              w.key("replica_lag").begin_object();
              for (const auto& [id, lag] : p.follower_lag) w.field(std::to_string(id), lag);
              w.end_object();
            }
            w.end_object();
          }
          w.end_object();
        }
        w.end_array().end_object();
        done(json_response(200, w.take()));
      });
}

void Broker::admin_groups(std::function<void(AdminResponse)> done) {
  const int64_t lag_ms = config_.replica_lag_time_max_ms;
  gather_reports(
      [this, lag_ms](ShardState& ss, ShardReport& r) { fill_report(ss, r, lag_ms, nullptr); },
      [done](std::vector<ShardReport> reports) {
        const auto hwm = high_watermarks(reports);
        const auto groups = sorted_groups(reports);
        JsonWriter w;
        w.begin_object().key("groups").begin_array();
        for (const auto* g : groups) {
          const auto lags = group_lags(*g, hwm);
          int64_t total = 0;
          for (const auto& l : lags) total += std::max<int64_t>(0, l.lag());
          w.begin_object()
              .field("group", g->group)
              .field("state", g->state)
              .field("generation", g->generation)
              .field("members", g->members)
              .field("lag", total)
              .key("offsets")
              .begin_array();
          for (const auto& l : lags) {
            w.begin_object()
                .field("topic", l.topic)
                .field("partition", l.partition)
                .field("committed", l.committed);
            // Unknown when the partition has no replica here and its leader did not answer.
            if (l.high_watermark < 0) {
              w.key("high_watermark").null().key("lag").null();
            } else {
              w.field("high_watermark", l.high_watermark).field("lag", l.lag());
            }
            w.end_object();
          }
          w.end_array().end_object();
        }
        w.end_array().end_object();
        done(json_response(200, w.take()));
      });
}

void Broker::gather_reports(std::function<void(ShardState&, ShardReport&)> fill,
                            std::function<void(std::vector<ShardReport>)> done) {
  gather<ShardReport>(std::move(fill), [this, done = std::move(done)](
                                           std::vector<ShardReport> reports) mutable {
    // Partitions that groups coordinated here committed and no replica here knows: their
    // leaders are asked, one call per leader, for at most kPeerCallTimeout.
    std::shared_ptr<const TopicsSnapshot> snap;
    if (cluster_up_.load(std::memory_order_acquire)) snap = registry_->snapshot();
    std::set<PartitionKey> local;
    for (const auto& r : reports) {
      for (const auto& p : r.partitions) local.emplace(p.topic, p.partition);
    }
    std::map<int32_t, cluster::pb::OffsetsRequest> asks;
    std::set<PartitionKey> asked;
    for (const auto& r : reports) {
      for (const auto& g : r.groups) {
        for (const auto& [tp, offset] : g.committed) {
          if (!snap || local.count(tp) || !asked.insert(tp).second) continue;
          const TopicInfo* t = snap->find(tp.first);
          if (!t || tp.second < 0 || tp.second >= t->partitions) continue;
          const int32_t leader = t->parts[static_cast<size_t>(tp.second)].leader;
          if (leader < 0 || leader == config_.node_id) continue;
          auto* ref = asks[leader].add_partitions();
          ref->set_topic(tp.first);
          ref->set_partition(tp.second);
        }
      }
    }
    if (asks.empty()) return done(std::move(reports));
    struct Asking {  // the answers all arrive on the cluster thread
      std::vector<ShardReport> reports;
      size_t left = 0;
      std::function<void(std::vector<ShardReport>)> done;
    };
    auto st = std::make_shared<Asking>();
    st->reports = std::move(reports);
    st->left = asks.size();
    st->done = std::move(done);
    for (const auto& [peer, request] : asks) {
      cluster_->call_peer(
          peer, kOffsetsMethod, request.SerializeAsString(), kPeerCallTimeout,
          [st, peer = peer](Result<std::string> r) {
            cluster::pb::OffsetsResponse resp;
            if (!r) {
              spdlog::debug("offsets from broker {}: {}", peer, r.error().message);
            } else if (resp.ParseFromString(*r)) {
              auto& remote = st->reports.front().remote_high_watermarks;
              for (const auto& o : resp.partitions()) {
                remote[PartitionKey(o.topic(), o.partition())] = o.high_watermark();
              }
            }
            if (--st->left == 0) st->done(std::move(st->reports));
          });
    }
  });
}

void Broker::serve_offsets(std::string request, cluster::ClusterNode::PeerReply reply) {
  auto req = std::make_shared<cluster::pb::OffsetsRequest>();
  if (!req->ParseFromString(request) || req->partitions_size() > kOffsetsPartitionsMax) {
    spdlog::warn("a malformed or oversized offsets request from a peer was answered empty");
    reply(cluster::pb::OffsetsResponse{}.SerializeAsString());
    return;
  }
  gather<std::vector<cluster::pb::PartitionOffsets>>(
      [req](ShardState& ss, std::vector<cluster::pb::PartitionOffsets>& out) {
        for (const auto& ref : req->partitions()) {
          auto it = ss.partitions.find(TopicPartition{ref.topic(), ref.partition()});
          if (it == ss.partitions.end() || it->second->deleting) continue;
          const Partition& p = *it->second;
          cluster::pb::PartitionOffsets o;
          o.set_topic(ref.topic());
          o.set_partition(ref.partition());
          o.set_high_watermark(p.replica ? p.replica->high_watermark() : p.high_watermark());
          o.set_log_start(*p.log->log_start_offset());
          o.set_leader(p.replica && p.replica->serving());
          out.push_back(std::move(o));
        }
      },
      [reply](std::vector<std::vector<cluster::pb::PartitionOffsets>> slots) {
        cluster::pb::OffsetsResponse resp;
        for (auto& slot : slots) {
          for (auto& o : slot) *resp.add_partitions() = std::move(o);
        }
        reply(resp.SerializeAsString());
      });
}

void Broker::fill_report(ShardState& ss, ShardReport& r, int64_t lag_ms,
                         const std::shared_ptr<const TopicsSnapshot>& snap) {
  // Traffic of deleted topics goes (a topic created again under the name keeps counting).
  if (snap) {
    std::erase_if(ss.metrics.traffic, [&](const auto& entry) {
      return snap->deleted.count(entry.first.first) > 0;
    });
  }
  r.apis = ss.metrics.apis;
  r.unknown_requests = ss.metrics.unknown_requests;
  r.traffic = ss.metrics.traffic;
  r.raft_terms_seen = ss.metrics.raft_terms_seen;
  r.raft_campaigns = ss.metrics.raft_campaigns;
  if (ss.ring) {
    r.sync_latency = ss.ring->sync_latency();
    r.io_uring = ss.ring->uses_io_uring();
  }
  if (ss.fds) {
    r.fd_holders = ss.fds->holders();
    r.fd_busy_max = ss.fds->busy_max();
    r.fd_waiting = ss.fds->waiting();
    r.fd_waits = ss.fds->room_waits();
    r.cold_cache_bytes = ss.fds->cold_budget().held();
    r.cold_cache_drops = ss.fds->cold_budget().drops();
  }
  r.raft_awake = ss.awake.size();
  if (ss.pacer) r.paced_persists = ss.pacer->waits();
  r.partitions.reserve(ss.partitions.size());
  for (const auto& [tp, p] : ss.partitions) {
    if (!p->deleting) r.partitions.push_back(partition_state(*p, lag_ms));
  }
  if (groups_ready_.load(std::memory_order_acquire)) {
    r.groups = groups_->views(ss.shard.id());
  }
}

void Broker::admin_stats(std::function<void(AdminResponse)> done) {
  const int64_t lag_ms = config_.replica_lag_time_max_ms;
  auto snap = registry_->snapshot();
  gather_reports(
      [this, lag_ms, snap](ShardState& ss, ShardReport& r) { fill_report(ss, r, lag_ms, snap); },
      [this, done](std::vector<ShardReport> reports) {
        // Cumulative counters (the ones /metrics serves) with the time they were read at: a
        // poller's rates are the differences between two answers over their times.
        const auto traffic = sum_traffic(reports);
        std::map<std::string, PartitionTraffic> topics;
        for (const auto& [key, t] : traffic) add_traffic(topics[key.first], t);
        std::map<std::string, std::pair<int64_t, uint64_t>> local;  // partitions, bytes
        for (const auto& r : reports) {
          for (const auto& p : r.partitions) {
            auto& l = local[p.topic];
            ++l.first;
            l.second += p.size_bytes;
            topics.try_emplace(p.topic);
          }
        }
        uint64_t requests = 0;
        for (const auto& r : reports) {
          for (const auto& a : r.apis) requests += a.latency.count();
        }
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        JsonWriter w;
        w.begin_object()
            .field("node_id", config_.node_id)
            .field("time_ms",
                   static_cast<int64_t>(
                       std::chrono::duration_cast<std::chrono::milliseconds>(now).count()))
            .field("requests", requests)
            .key("topics")
            .begin_array();
        for (const auto& [name, t] : topics) {
          w.begin_object()
              .field("name", name)
              .field("bytes_in", t.bytes_in)
              .field("records_in", t.records_in)
              .field("bytes_out", t.bytes_out)
              .field("records_out", t.records_out)
              .field("local_partitions", local[name].first)
              .field("local_size_bytes", local[name].second)
              .end_object();
        }
        w.end_array().key("groups").begin_array();
        const auto hwm = high_watermarks(reports);
        for (const auto* g : sorted_groups(reports)) {
          int64_t total = 0;
          for (const auto& l : group_lags(*g, hwm)) total += std::max<int64_t>(0, l.lag());
          w.begin_object()
              .field("group", g->group)
              .field("state", g->state)
              .field("members", g->members)
              .field("lag", total)
              .end_object();
        }
        w.end_array().end_object();
        done(json_response(200, w.take()));
      });
}

void Broker::admin_metrics(std::function<void(AdminResponse)> done) {
  const int64_t lag_ms = config_.replica_lag_time_max_ms;
  std::shared_ptr<const TopicsSnapshot> snap;
  if (cluster_up_.load(std::memory_order_acquire)) snap = registry_->snapshot();
  gather_reports(
      [this, lag_ms, snap](ShardState& ss, ShardReport& r) { fill_report(ss, r, lag_ms, snap); },
      [this, done](std::vector<ShardReport> reports) {
        // The admin server's own numbers are read on its shard.
        shards_.front()->shard.post([this, done, reports = std::move(reports)] {
          // stop() sets kStopping before it closes the admin server (a post to this shard),
          // so a scrape running after that never reads server_ while stop() resets it.
          if (phase_.load(std::memory_order_acquire) == Phase::kStopping) return;
          done(AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                             write_metrics(reports)});
        });
      });
}

std::string Broker::write_metrics(const std::vector<ShardReport>& reports) {
  PromWriter w;
  const std::string node = std::to_string(config_.node_id);
  w.family("sluice_build_info", "gauge", "The broker's version; always 1");
  w.sample("sluice_build_info", {{"version", kVersion}, {"node_id", node}}, uint64_t{1});
  const Phase phase = phase_.load(std::memory_order_acquire);
  w.family("sluice_ready", "gauge", "1 when /v1/health answers ready, else 0");
  w.sample("sluice_ready", {}, uint64_t{admin_health().status == 200 ? 1u : 0u});
  w.family("sluice_uptime_seconds", "gauge", "Seconds since the broker process started serving");
  w.sample("sluice_uptime_seconds", {},
           phase == Phase::kStarting
               ? 0.0
               : std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_)
                     .count());

  // Kafka requests, per API and version.
  std::array<ApiMetrics, kApiKeysMax> apis;
  uint64_t unknown = 0;
  for (const auto& r : reports) {
    for (size_t k = 0; k < kApiKeysMax; ++k) {
      for (size_t v = 0; v < kApiVersionsMax; ++v) {
        apis[k].requests[v] += r.apis[k].requests[v];
        apis[k].errors[v] += r.apis[k].errors[v];
      }
      apis[k].latency.add(r.apis[k].latency);
    }
    unknown += r.unknown_requests;
  }
  auto per_version = [&](std::string_view name, std::string_view help, bool errors) {
    w.family(name, "counter", help);
    for (size_t k = 0; k < kApiKeysMax; ++k) {
      if (apis[k].latency.count() == 0) continue;
      const std::string api = api_name(k);
      for (size_t v = 0; v < kApiVersionsMax; ++v) {
        if (apis[k].requests[v] == 0) continue;
        const std::string version = std::to_string(v);
        w.sample(name, {{"api", api}, {"version", version}},
                 errors ? apis[k].errors[v] : apis[k].requests[v]);
      }
    }
  };
  per_version("sluice_kafka_requests_total", "Kafka requests answered, by API and version",
              false);
  per_version("sluice_kafka_request_errors_total",
              "Kafka requests that failed: the connection was closed (malformed, unsupported), "
              "or a Produce or Fetch answered an error for some partition",
              true);
  w.family("sluice_kafka_requests_unsupported_total", "counter",
           "Requests for an API key or version this broker does not know (closed)");
  w.sample("sluice_kafka_requests_unsupported_total", {}, unknown);
  w.family("sluice_kafka_request_latency_seconds", "histogram",
           "From a request read off the socket to its response handed to the connection");
  for (size_t k = 0; k < kApiKeysMax; ++k) {
    if (apis[k].latency.count() == 0) continue;
    w.histogram("sluice_kafka_request_latency_seconds", {{"api", api_name(k)}}, apis[k].latency);
  }

  // Connections.
  w.family("sluice_kafka_connections", "gauge", "Kafka client connections open now");
  w.sample("sluice_kafka_connections", {},
           static_cast<int64_t>(server_ ? server_->connection_count() : 0));
  w.family("sluice_kafka_connections_accepted_total", "counter", "Kafka connections accepted");
  w.sample("sluice_kafka_connections_accepted_total", {},
           server_ ? server_->accepted_count() : 0);
  w.family("sluice_kafka_connections_refused_total", "counter",
           "Kafka connections closed at once: max.connections reached");
  w.sample("sluice_kafka_connections_refused_total", {}, server_ ? server_->refused_count() : 0);
  w.family("sluice_kafka_connections_moved_total", "counter",
           "Kafka connections moved to the shard of the partitions their requests name");
  w.sample("sluice_kafka_connections_moved_total", {}, server_ ? server_->moved_count() : 0);
  w.family("sluice_quota_throttled_total", "counter",
           "Responses that throttled a client over its quota (producer_byte_rate: produce, "
           "consumer_byte_rate: fetch; connection_creation_rate: connection, closed unserved; "
           "controller_mutation_rate: mutation)");
  w.family("sluice_quota_throttle_milliseconds_total", "counter",
           "Throttle time given to clients over their quotas");
  for (const auto kind : {QuotaManager::Kind::kProduce, QuotaManager::Kind::kFetch,
                          QuotaManager::Kind::kConnection, QuotaManager::Kind::kMutation}) {
    const auto c = quotas_.counts(kind);
    const char* k = kind == QuotaManager::Kind::kProduce      ? "produce"
                    : kind == QuotaManager::Kind::kFetch      ? "fetch"
                    : kind == QuotaManager::Kind::kConnection ? "connection"
                                                              : "mutation";
    w.sample("sluice_quota_throttled_total", {{"kind", k}}, c.throttled);
    w.sample("sluice_quota_throttle_milliseconds_total", {{"kind", k}}, c.throttle_ms);
  }
  w.family("sluice_request_memory_bytes", "gauge",
           "Request buffer bytes held now (bounded by queued.max.request.bytes)");
  w.sample("sluice_request_memory_bytes", {},
           static_cast<int64_t>(server_ ? server_->request_memory_bytes() : 0));
  if (admin_) {
    const auto st = admin_->stats();
    w.family("sluice_admin_connections", "gauge", "Admin HTTP connections open now");
    w.sample("sluice_admin_connections", {}, static_cast<int64_t>(st.open));
    w.family("sluice_admin_connections_refused_total", "counter",
             "Admin HTTP connections closed at once: too many open");
    w.sample("sluice_admin_connections_refused_total", {}, st.refused);
    w.family("sluice_admin_bad_requests_total", "counter",
             "Admin HTTP requests refused as malformed or too large");
    w.sample("sluice_admin_bad_requests_total", {}, st.bad_requests);
  }

  // Storage.
  LatencyHistogram sync;
  uint64_t terms_seen = 0;
  uint64_t campaigns = 0;
  bool uring = true;
  uint64_t fd_holders = 0, fd_busy_max = 0, fd_waiting = 0, fd_waits = 0, raft_awake = 0;
  uint64_t cold_bytes = 0, cold_drops = 0, paced = 0;
  for (const auto& r : reports) {
    raft_awake += r.raft_awake;
    sync.add(r.sync_latency);
    terms_seen += r.raft_terms_seen;
    campaigns += r.raft_campaigns;
    uring = uring && r.io_uring;
    fd_holders += r.fd_holders;
    fd_busy_max += r.fd_busy_max;
    fd_waiting += r.fd_waiting;
    fd_waits += r.fd_waits;
    cold_bytes += r.cold_cache_bytes;
    cold_drops += r.cold_cache_drops;
    paced += r.paced_persists;
  }
  struct Unlabelled {
    std::string_view name, type, help;
    uint64_t value;
  };
  for (const Unlabelled& m : std::initializer_list<Unlabelled>{
           {"sluice_log_descriptor_holders", "gauge",
            "Partition logs and Raft replicas keeping descriptors open now (idle ones give "
            "theirs back beyond a cap)",
            fd_holders},
           {"sluice_log_descriptor_holders_max", "gauge",
            "Holders that may keep descriptors at once, busy ones included (from the "
            "open-files limit)",
            fd_busy_max},
           {"sluice_log_descriptor_waiting", "gauge",
            "Partitions whose writes wait for descriptors now (every holder busy)", fd_waiting},
           {"sluice_log_descriptor_waits_total", "counter",
            "Times a partition's writes waited for descriptors", fd_waits},
           {"sluice_log_cold_cache_bytes", "gauge",
            "Bytes the partitions' cold-read caches hold now (index entries and pieces of "
            "segments for reads older than the recent batches; within log.cold.cache.bytes)",
            cold_bytes},
           {"sluice_log_cold_cache_drops_total", "counter",
            "Partitions' cold-read caches dropped to stay within log.cold.cache.bytes (read "
            "again when next wanted; many per second: raise it)",
            cold_drops},
           {"sluice_raft_persists_paced_total", "counter",
            "Raft persists of new produce data that waited for their shard's turn "
            "(log.sync.max.rate): what arrived meanwhile shared their fdatasync",
            paced},
       }) {
    w.family(m.name, m.type, m.help);
    w.sample(m.name, {}, m.value);
  }
  w.family("sluice_raft_groups_awake", "gauge",
           "Partition Raft groups ticked now; the others are idle and cost no CPU (a leader "
           "alone in its group with everything durable and applied)");
  w.sample("sluice_raft_groups_awake", {}, raft_awake);
  w.family("sluice_log_io_uring", "gauge",
           "1 when disk I/O goes through io_uring, 0 on the pwrite/fdatasync fallback");
  w.sample("sluice_log_io_uring", {}, uint64_t{uring ? 1u : 0u});
  w.family("sluice_log_fsync_latency_seconds", "histogram",
           "fdatasync and fsync calls of the logs, from queued to done (the count is the number "
           "of calls)");
  w.histogram("sluice_log_fsync_latency_seconds", {}, sync);
  w.family("sluice_log_scrub_damage_total", "counter",
           "Corrupt batches the background scrubber found in closed segments");
  w.sample("sluice_log_scrub_damage_total", {}, scrub_damage_found_.load());
  w.family("sluice_log_low_space", "gauge",
           "1 while the data volume is below log.dir.min.free.bytes (Produce refused)");
  w.sample("sluice_log_low_space", {}, uint64_t{low_space_.load() ? 1u : 0u});

  write_partition_metrics(w, reports);
  write_group_metrics(w, reports);

  // Raft.
  w.family("sluice_raft_terms_seen_total", "counter",
           "New Raft terms this broker's partition replicas moved to (each is an election)");
  w.sample("sluice_raft_terms_seen_total", {}, terms_seen);
  w.family("sluice_raft_campaigns_total", "counter",
           "Elections this broker's partition replicas started (a pre-vote round each; one that "
           "fails for want of votes is tried again after an election timeout)");
  w.sample("sluice_raft_campaigns_total", {}, campaigns);
  if (cluster_up_.load(std::memory_order_acquire)) {
    w.family("sluice_controller_leader", "gauge", "Node id of the controller leader (-1: none)");
    w.sample("sluice_controller_leader", {},
             static_cast<int64_t>(cluster_->controller_leader()));
    w.family("sluice_controller_term", "gauge", "The controller quorum's Raft term");
    w.sample("sluice_controller_term", {}, cluster_->controller_term());
    w.family("sluice_controller_is_leader", "gauge",
             "1 when this broker is the controller quorum's leader");
    w.sample("sluice_controller_is_leader", {},
             uint64_t{cluster_->controller_leader() == config_.node_id ? 1u : 0u});
    const auto t = cluster_->transport_counters();
    w.family("sluice_transport_bytes_in_total", "counter",
             "Bytes read from other brokers' inter-broker connections");
    w.sample("sluice_transport_bytes_in_total", {}, t.bytes_in);
    w.family("sluice_transport_bytes_out_total", "counter",
             "Bytes written to other brokers over the inter-broker transport");
    w.sample("sluice_transport_bytes_out_total", {}, t.bytes_out);
    w.family("sluice_transport_file_bytes_out_total", "counter",
             "The part of sluice_transport_bytes_out_total sent from segment files with sendfile "
             "(a leader's stored batches for a lagging follower), never copied through memory");
    w.sample("sluice_transport_file_bytes_out_total", {}, t.file_bytes_out);
    w.family("sluice_transport_frames_in_total", "counter", "Inter-broker frames read");
    w.sample("sluice_transport_frames_in_total", {}, t.frames_in);
    w.family("sluice_transport_frames_out_total", "counter", "Inter-broker frames written");
    w.sample("sluice_transport_frames_out_total", {}, t.frames_out);
    w.family("sluice_transport_dropped_total", "counter",
             "Raft messages not sent to a peer: its connection was down or over its bytes in "
             "flight (Raft sends them again)");
    w.sample("sluice_transport_dropped_total", {}, t.dropped);
  }
  return w.take();
}

void Broker::write_group_metrics(PromWriter& w, const std::vector<ShardReport>& reports) {
  const auto hwm = high_watermarks(reports);
  const auto groups = sorted_groups(reports);
  w.family("sluice_group_members", "gauge", "Members of each consumer group coordinated here");
  for (const auto* g : groups) {
    w.sample("sluice_group_members", {{"group", g->group}}, static_cast<int64_t>(g->members));
  }
  w.family("sluice_group_lag_records", "gauge",
           "Records of a group's committed partitions past its committed offset (high "
           "watermark of this broker's replica, or else of the partition's leader)");
  std::vector<std::pair<const GroupCoordinator::GroupView*, std::vector<GroupLag>>> lags;
  for (const auto* g : groups) {
    lags.emplace_back(g, group_lags(*g, hwm));
    int64_t total = 0;
    for (const auto& l : lags.back().second) total += std::max<int64_t>(0, l.lag());
    w.sample("sluice_group_lag_records", {{"group", g->group}}, total);
  }
  const auto series_max = static_cast<size_t>(std::max(0, config_.metrics_partition_series_max));
  w.family("sluice_group_partition_lag_records", "gauge",
           "A group's lag on one partition (high watermark here or on the leader minus "
           "committed offset; at most metrics.partition.series.max series)");
  size_t n = 0;
  for (const auto& [g, list] : lags) {
    for (const auto& l : list) {
      if (l.high_watermark < 0) continue;
      if (n++ >= series_max) break;
      const std::string index = std::to_string(l.partition);
      w.sample("sluice_group_partition_lag_records",
               {{"group", g->group}, {"topic", l.topic}, {"partition", index}}, l.lag());
    }
  }
}

void Broker::write_partition_metrics(PromWriter& w, const std::vector<ShardReport>& reports) {
  // Traffic: per-shard counters of the same partition summed, then per topic.
  const auto traffic = sum_traffic(reports);
  std::map<std::string, PartitionTraffic> topics;
  for (const auto& [key, t] : traffic) add_traffic(topics[key.first], t);
  const auto series_max = static_cast<size_t>(std::max(0, config_.metrics_partition_series_max));
  struct Counter {
    std::string_view name;
    std::string_view help;
    uint64_t PartitionTraffic::*field;
  };
  const Counter counters[] = {
      {"sluice_topic_bytes_in_total", "Record batch bytes appended by Produce on this broker",
       &PartitionTraffic::bytes_in},
      {"sluice_topic_records_in_total", "Records appended by Produce on this broker",
       &PartitionTraffic::records_in},
      {"sluice_topic_bytes_out_total", "Record batch bytes sent to Fetch responses",
       &PartitionTraffic::bytes_out},
      {"sluice_topic_records_out_total",
       "Offsets sent to Fetch responses (records, counting gaps compaction left)",
       &PartitionTraffic::records_out},
  };
  for (const auto& c : counters) {
    w.family(c.name, "counter", c.help);
    for (const auto& [topic, t] : topics) w.sample(c.name, {{"topic", topic}}, t.*c.field);
  }
  for (const auto& c : counters) {
    std::string name(c.name);
    name.replace(name.find("topic"), 5, "partition");
    w.family(name, "counter", std::string(c.help) + " (per partition; at most "
                                  "metrics.partition.series.max partitions)");
    size_t n = 0;
    for (const auto& [key, t] : traffic) {
      if (n++ >= series_max) break;
      const std::string index = std::to_string(key.second);
      w.sample(name, {{"topic", key.first}, {"partition", index}}, t.*c.field);
    }
  }

  // Partition state, as this broker's replica sees it.
  std::vector<const PartitionState*> parts;
  for (const auto& r : reports) {
    for (const auto& p : r.partitions) parts.push_back(&p);
  }
  std::sort(parts.begin(), parts.end(), [](const PartitionState* a, const PartitionState* b) {
    return std::tie(a->topic, a->partition) < std::tie(b->topic, b->partition);
  });
  int64_t led = 0, under_replicated = 0, failed = 0;
  for (const PartitionState* p : parts) {
    failed += p->failed ? 1 : 0;
    if (!p->leader) continue;
    ++led;
    under_replicated += p->isr.size() < p->replicas.size() ? 1 : 0;
  }
  w.family("sluice_partitions", "gauge", "Partition replicas open on this broker");
  w.sample("sluice_partitions", {}, static_cast<int64_t>(parts.size()));
  w.family("sluice_partitions_leader", "gauge", "Partitions this broker leads (serving)");
  w.sample("sluice_partitions_leader", {}, led);
  w.family("sluice_partitions_under_replicated", "gauge",
           "Partitions led here whose in-sync replicas are fewer than their replicas");
  w.sample("sluice_partitions_under_replicated", {}, under_replicated);
  w.family("sluice_partitions_failed", "gauge",
           "Partition replicas stopped here (a disk error or a full disk)");
  w.sample("sluice_partitions_failed", {}, failed);

  const size_t shown = std::min(parts.size(), series_max);
  struct Gauge {
    std::string_view name;
    std::string_view help;
    int64_t (*get)(const PartitionState&);
  };
  const Gauge gauges[] = {
      {"sluice_partition_log_start_offset", "First offset of the partition's log here",
       [](const PartitionState& p) { return p.log_start; }},
      {"sluice_partition_log_end_offset", "Next offset the partition's log here will write",
       [](const PartitionState& p) { return p.log_end; }},
      {"sluice_partition_high_watermark", "Offset below which records are committed",
       [](const PartitionState& p) { return p.high_watermark; }},
      {"sluice_partition_size_bytes", "Bytes of the partition's segments here",
       [](const PartitionState& p) { return static_cast<int64_t>(p.size_bytes); }},
      {"sluice_partition_segments", "Segments of the partition's log here",
       [](const PartitionState& p) { return static_cast<int64_t>(p.segments); }},
      {"sluice_raft_partition_leader", "The Raft leader this replica knows of (-1: none)",
       [](const PartitionState& p) { return static_cast<int64_t>(p.leader_id); }},
      {"sluice_raft_partition_term", "The replica's Raft term (the Kafka leader epoch)",
       [](const PartitionState& p) { return static_cast<int64_t>(p.term); }},
      {"sluice_raft_partition_is_leader", "1 when this replica is the serving leader",
       [](const PartitionState& p) { return int64_t{p.leader ? 1 : 0}; }},
  };
  for (const auto& g : gauges) {
    w.family(g.name, "gauge",
             std::string(g.help) + " (at most metrics.partition.series.max partitions)");
    for (size_t i = 0; i < shown; ++i) {
      const std::string index = std::to_string(parts[i]->partition);
      w.sample(g.name, {{"topic", parts[i]->topic}, {"partition", index}}, g.get(*parts[i]));
    }
  }
  w.family("sluice_raft_partition_replica_lag", "gauge",
           "On a partition's leader: how far each other replica's log is behind, in Raft "
           "indexes (about records; at most metrics.partition.series.max partitions)");
  for (size_t i = 0; i < shown; ++i) {
    const std::string index = std::to_string(parts[i]->partition);
    for (const auto& [id, lag] : parts[i]->follower_lag) {
      const std::string replica = std::to_string(id);
      w.sample("sluice_raft_partition_replica_lag",
               {{"topic", parts[i]->topic}, {"partition", index}, {"replica", replica}}, lag);
    }
  }
}

}  // namespace sluice::broker
