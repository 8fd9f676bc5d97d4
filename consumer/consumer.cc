#include "consumer/consumer.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <set>
#include <thread>

#include "client/client.h"
#include "client/properties.h"
#include "common/json.h"
#include "consumer/assignor.h"
#include "protocol/error_codes.h"
#include "protocol/record_batch.h"

namespace sluice {

using client::Errc;
using client::make_error;
using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;
using kafka::ErrorCode;

namespace {

struct PartState {
  int64_t position = -1;  // -1: to be resolved (committed offset or reset policy)
  // The position was out of range: resolve it by the reset policy, not the committed offset
  // (which may be the very offset that was out of range).
  bool reset_pending = false;
  bool paused = false;
  int64_t high_watermark = -1;
};

struct FetchDone {
  int32_t node = -1;
  uint64_t epoch = 0;  // assignment epoch the fetch was sent in
  std::map<TopicPartition, int64_t> offsets;
  Result<client::Response> response;
};

bool is_group_rejoin_error(int16_t code) {
  return code == static_cast<int16_t>(ErrorCode::kRebalanceInProgress) ||
         code == static_cast<int16_t>(ErrorCode::kIllegalGeneration) ||
         code == static_cast<int16_t>(ErrorCode::kUnknownMemberId);
}

bool is_fenced(int16_t code) { return code == static_cast<int16_t>(ErrorCode::kFencedInstanceId); }

bool is_coordinator_error(int16_t code) {
  return code == static_cast<int16_t>(ErrorCode::kNotCoordinator) ||
         code == static_cast<int16_t>(ErrorCode::kCoordinatorNotAvailable) ||
         code == static_cast<int16_t>(ErrorCode::kCoordinatorLoadInProgress);
}

std::string tp_name(const TopicPartition& tp) {
  return tp.topic + "[" + std::to_string(tp.partition) + "]";
}


}  // namespace

struct Consumer::Impl {
  ConsumerConfig config;
  std::unique_ptr<client::Client> client;

  // Shared with the I/O thread (fetch completions, heartbeats).
  std::mutex mu;
  std::condition_variable cv;
  std::deque<FetchDone> completed;
  std::set<int32_t> fetching_nodes;
  bool closed = false;
  int32_t coordinator = -1;
  std::string member_id;
  // A static member fenced by another with its group.instance.id: every poll() fails with it.
  std::optional<Error> fenced;
  int32_t generation = -1;
  bool rejoin_needed = false;
  bool generation_lost = false;  // fenced (unknown member, illegal generation): partitions lost
  bool heartbeat_running = false;
  // For the stats (written on the application thread, read on the I/O thread).
  std::atomic<int64_t> msgs_received{0};  // records decoded from fetches
  std::atomic<int64_t> msg_bytes_received{0};
  std::atomic<int64_t> msgs_polled{0};  // returned by poll()
  std::atomic<int64_t> msgs_queued{0};  // received, not yet returned
  std::atomic<int64_t> fetch_errors{0};

  // Application thread only.
  std::map<TopicPartition, PartState> parts;
  uint64_t assignment_epoch = 0;
  std::deque<ConsumerRecord> buffered;
  std::vector<std::string> subscription;
  bool subscribed = false;
  RebalanceListener listener;  // from subscribe()
  Clock::time_point next_auto_commit = Clock::now();
  std::unique_ptr<asio::steady_timer> heartbeat_timer;  // I/O thread only
  std::vector<std::byte> scratch;

  // After a failed create() (close() already did this otherwise): stop the I/O thread, whose
  // stats timer reads `mu` and the counters, before those members go.
  ~Impl() { client.reset(); }

  bool has_group() const { return !config.group_id.empty(); }

  // ---- offsets ---------------------------------------------------------------------------

  Result<int32_t> leader_of(const TopicPartition& tp, bool refresh) {
    auto md = client->metadata({tp.topic}, refresh);
    if (!md) return unexpected(md.error());
    const client::TopicInfo* t = (*md)->topic(tp.topic);
    if (!t || t->error_code != 0) {
      int16_t code = t ? t->error_code : static_cast<int16_t>(ErrorCode::kUnknownTopicOrPartition);
      return unexpected(
          Error{code, "topic '" + tp.topic +
                          "': " + std::string(kafka::error_name(static_cast<ErrorCode>(code)))});
    }
    if (tp.partition < 0 || tp.partition >= static_cast<int32_t>(t->partitions.size())) {
      return unexpected(Error{static_cast<int>(ErrorCode::kUnknownTopicOrPartition),
                              "partition " + tp_name(tp) + " does not exist (the topic has " +
                                  std::to_string(t->partitions.size()) + ")"});
    }
    int32_t leader = t->partitions[tp.partition].leader;
    if (leader < 0) {
      return unexpected(
          Error{static_cast<int>(ErrorCode::kLeaderNotAvailable), "no leader for " + tp_name(tp)});
    }
    return leader;
  }

  // ListOffsets: timestamp -2 earliest, -1 latest, else the first offset at/after it.
  Result<std::map<TopicPartition, int64_t>> list_offsets(const std::vector<TopicPartition>& tps,
                                                         int64_t timestamp) {
    std::map<int32_t, std::vector<TopicPartition>> by_leader;
    for (const auto& tp : tps) {
      auto leader = leader_of(tp, false);
      if (!leader) return unexpected(leader.error());
      by_leader[*leader].push_back(tp);
    }
    std::map<TopicPartition, int64_t> out;
    for (const auto& [node, list] : by_leader) {
      kafka::ListOffsetsRequest req;
      req.replica_id = -1;
      req.isolation_level = read_committed() ? 1 : 0;  // latest: the last stable offset
      for (const auto& tp : list) {
        auto* t = &client::entry_for(req.topics, &kafka::ListOffsetsRequest::ListOffsetsTopic::name,
                                     tp.topic);
        kafka::ListOffsetsRequest::ListOffsetsPartition p;
        p.partition_index = tp.partition;
        p.timestamp = timestamp;
        t->partitions.push_back(p);
      }
      auto r = client->call_as<kafka::ListOffsetsResponse>(node, req);
      if (!r) return unexpected(r.error());
      for (const auto& t : r->topics) {
        for (const auto& p : t.partitions) {
          TopicPartition tp{t.name, p.partition_index};
          if (p.error_code != 0)
            return unexpected(client::kafka_error(p.error_code, "ListOffsets " + tp_name(tp)));
          int64_t off = p.offset;
          if (off < 0 && !p.old_style_offsets.empty()) off = p.old_style_offsets.front();
          if (off < 0 && timestamp >= 0) {  // no record at/after the timestamp: the end
            auto end = list_offsets({tp}, -1);
            if (!end) return end;
            off = end->at(tp);
          }
          out[tp] = off;
        }
      }
    }
    return out;
  }

  void warn(const std::string& message) {
    if (config.on_warning) {
      config.on_warning(message);
    } else {
      client->log(LogLevel::kWarning, message);
    }
  }

  // The consumer's part of the stats (I/O thread).
  void stats_fields(JsonWriter& w) {
    int64_t fetching = 0;
    {
      std::lock_guard lock(mu);
      fetching = static_cast<int64_t>(fetching_nodes.size());
    }
    w.field("msgs_received", msgs_received.load())
        .field("msg_bytes_received", msg_bytes_received.load());
    w.field("msgs_polled", msgs_polled.load()).field("msgs_queued", msgs_queued.load());
    w.field("fetches_inflight", fetching).field("fetch_errors", fetch_errors.load());
  }

  Status resolve_positions() {
    std::vector<TopicPartition> unknown;
    for (auto& [tp, ps] : parts) {
      if (ps.position < 0) unknown.push_back(tp);
    }
    if (unknown.empty()) return {};
    std::vector<TopicPartition> by_commit;
    for (const auto& tp : unknown) {
      if (!parts[tp].reset_pending) by_commit.push_back(tp);
    }
    if (has_group() && !by_commit.empty()) {
      auto c = committed(by_commit);
      if (c) {
        for (const auto& [tp, off] : *c) {
          if (off >= 0) parts[tp].position = off;
        }
      } else if (!client::retriable(c.error())) {
        // A broker without group APIs: fall back to the reset policy.
        if (c.error().code != static_cast<int>(Errc::kUnsupported)) return unexpected(c.error());
      }
      unknown.erase(std::remove_if(unknown.begin(), unknown.end(),
                                   [&](const auto& tp) { return parts[tp].position >= 0; }),
                    unknown.end());
      if (unknown.empty()) return {};
    }
    if (config.auto_offset_reset == "none") {
      return unexpected(
          make_error(Errc::kInvalidArgument, "no committed offset for " + tp_name(unknown.front()) +
                                                 " and auto_offset_reset=none: seek() first"));
    }
    auto r = list_offsets(unknown, config.auto_offset_reset == "earliest" ? -2 : -1);
    if (!r) return unexpected(r.error());
    for (const auto& [tp, off] : *r) {
      parts[tp].position = off;
      parts[tp].reset_pending = false;
    }
    return {};
  }

  // ---- fetch -------------------------------------------------------------------------------

  void send_fetches(int max_wait_ms) {
    auto md = client->cached_metadata();
    std::map<int32_t, std::vector<std::pair<TopicPartition, int64_t>>> by_node;
    for (const auto& [tp, ps] : parts) {
      if (ps.paused || ps.position < 0) continue;
      const client::TopicInfo* t = md ? md->topic(tp.topic) : nullptr;
      if (!t || tp.partition >= static_cast<int32_t>(t->partitions.size())) continue;
      int32_t leader = t->partitions[tp.partition].leader;
      if (leader >= 0) by_node[leader].push_back({tp, ps.position});
    }
    for (auto& [node, list] : by_node) {
      {
        std::lock_guard lock(mu);
        if (fetching_nodes.count(node)) continue;
        fetching_nodes.insert(node);
      }
      kafka::FetchRequest req;
      req.replica_id = -1;
      req.max_wait_ms = max_wait_ms;
      req.min_bytes = config.fetch_min_bytes;
      req.max_bytes = config.fetch_max_bytes;
      req.isolation_level = read_committed() ? 1 : 0;
      req.session_id = 0;
      req.session_epoch = -1;
      std::map<TopicPartition, int64_t> offsets;
      for (const auto& [tp, pos] : list) {
        auto* t = &client::entry_for(req.topics, &kafka::FetchRequest::FetchTopic::topic, tp.topic);
        kafka::FetchRequest::FetchPartition fp;
        fp.partition = tp.partition;
        fp.fetch_offset = pos;
        fp.partition_max_bytes = config.max_partition_fetch_bytes;
        t->partitions.push_back(fp);
        offsets[tp] = pos;
      }
      const uint64_t epoch = assignment_epoch;
      client->send(
          node, std::move(req),
          [this, node = node, epoch,
           offsets = std::move(offsets)](Result<client::Response> r) mutable {
            {
              std::lock_guard lock(mu);
              fetching_nodes.erase(node);
              completed.push_back(FetchDone{node, epoch, std::move(offsets), std::move(r)});
            }
            cv.notify_all();
          },
          true, config.request_timeout_ms + max_wait_ms);
    }
  }

  // A Fetch failed for a partition (its leader moved, or the broker is gone): the assigned
  // topics' metadata again, to find their leaders now. (An empty list asks for the brokers
  // only: fetches then went on to the old leader, answered NOT_LEADER_OR_FOLLOWER forever.)
  void refresh_leaders() {
    std::vector<std::string> topics;
    for (const auto& [tp, ps] : parts) {
      if (topics.empty() || topics.back() != tp.topic) topics.push_back(tp.topic);
    }
    if (!topics.empty()) (void)client->metadata(topics, true);
  }

  Status process(FetchDone& done) {
    if (done.epoch != assignment_epoch) return {};  // the assignment changed meanwhile
    if (!done.response) {
      ++fetch_errors;
      if (client::retriable(done.response.error())) {
        refresh_leaders();
        return {};
      }
      return unexpected(done.response.error());
    }
    const auto& resp = std::get<kafka::FetchResponse>(done.response->decoded->body);
    bool refresh = false;
    for (const auto& t : resp.responses) {
      for (const auto& p : t.partitions) {
        TopicPartition tp{t.topic, p.partition_index};
        auto it = parts.find(tp);
        auto asked = done.offsets.find(tp);
        if (it == parts.end() || asked == done.offsets.end() ||
            it->second.position != asked->second) {
          continue;  // revoked or seeked since the fetch was sent
        }
        PartState& ps = it->second;
        if (p.error_code == static_cast<int16_t>(ErrorCode::kOffsetOutOfRange)) {
          if (config.auto_offset_reset == "none") {
            return unexpected(client::kafka_error(p.error_code, "fetch " + tp_name(tp)));
          }
          warn("offset " + std::to_string(ps.position) + " of " + tp_name(tp) +
               " is out of range (deleted by retention or DeleteRecords, or past the end); "
               "resetting to the " + config.auto_offset_reset + " offset (auto_offset_reset)");
          ps.position = -1;
          ps.reset_pending = true;
          continue;
        }
        if (p.error_code != 0) {
          refresh = true;
          continue;
        }
        ps.high_watermark =
            read_committed() && p.last_stable_offset >= 0 ? p.last_stable_offset : p.high_watermark;
        if (p.records.is_null()) continue;
        AbortedTxns aborted;
        if (read_committed() && p.aborted_transactions) {
          for (const auto& a : *p.aborted_transactions) {
            aborted.pending.push({a.first_offset, a.producer_id});
          }
        }
        auto s = decode(tp, p.records.bytes(), ps, done.response->frame, aborted);
        if (!s) return s;
      }
    }
    if (refresh) refresh_leaders();
    msgs_queued = static_cast<int64_t>(buffered.size());
    return {};
  }

  bool read_committed() const { return config.isolation_level == "read_committed"; }

  // read_committed: the aborted transactions a Fetch answer listed, as Kafka's consumer walks
  // them (Fetcher's CompletedFetch): a producer's transactional batches are dropped from its
  // aborted transaction's first offset until its abort marker.
  struct AbortedTxns {
    using Entry = std::pair<int64_t, int64_t>;  // first offset, producer id
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> pending;
    std::set<int64_t> producers;  // aborting now

    // Whether `batch` is to be dropped.
    bool drops(const kafka::RecordBatchView& batch) {
      if (batch.producer_id() < 0) return false;
      while (!pending.empty() && pending.top().first <= batch.last_offset()) {
        producers.insert(pending.top().second);
        pending.pop();
      }
      if (batch.is_control()) {
        auto marker = kafka::read_end_txn_marker(batch);
        if (marker && *marker && !(*marker)->commit) producers.erase(batch.producer_id());
        return true;
      }
      return batch.is_transactional() && producers.count(batch.producer_id()) != 0;
    }
  };

  // `frame` holds `bytes`: the records refer to it (or to their batch's decompressed bytes).
  Status decode(const TopicPartition& tp, Bytes bytes, PartState& ps,
                const std::shared_ptr<const void>& frame, AbortedTxns& aborted) {
    kafka::BatchIterator it(bytes);
    for (;;) {
      auto next = it.next();
      if (!next) {
        return unexpected(make_error(
            Errc::kProtocol, "bad record batch from " + tp_name(tp) + ": " + next.error().message));
      }
      if (!*next) break;
      const kafka::RecordBatchView& batch = **next;
      if (batch.last_offset() < ps.position) continue;
      if (auto crc = batch.verify_crc(); !crc) {
        return unexpected(make_error(
            Errc::kProtocol, "corrupt batch at offset " + std::to_string(batch.base_offset()) +
                                 " of " + tp_name(tp) + ": " + crc.error().message));
      }
      const bool dropped = aborted.drops(batch);  // control batches are never records
      if (!batch.is_control() && !dropped) {
        auto reader = batch.records(scratch);
        if (!reader) {
          return unexpected(make_error(Errc::kProtocol, "cannot read batch of " + tp_name(tp) +
                                                            ": " + reader.error().message));
        }
        // A compressed batch's records were inflated into `scratch`: the records keep that
        // buffer (moved, so the reader's view of it stays valid), and the next one gets a new one.
        std::shared_ptr<const void> owner = frame;
        if (batch.compression() != kafka::Compression::kNone) {
          owner = std::make_shared<std::vector<std::byte>>(std::move(scratch));
          scratch = {};
        }
        const bool append_time = batch.timestamp_type() == kafka::TimestampType::kLogAppendTime;
        for (;;) {
          auto rec = reader->next();
          if (!rec) {
            return unexpected(make_error(
                Errc::kProtocol, "bad record in " + tp_name(tp) + ": " + rec.error().message));
          }
          if (!*rec) break;
          const kafka::Record& r = **rec;
          const int64_t offset = batch.base_offset() + r.offset_delta;
          if (offset < ps.position) continue;
          ConsumerRecord out;
          out.topic = tp.topic;
          out.partition = tp.partition;
          out.offset = offset;
          out.log_append_time = append_time;
          out.timestamp_ms =
              append_time ? batch.max_timestamp() : batch.base_timestamp() + r.timestamp_delta;
          if (r.key) out.key = as_string_view(*r.key);
          if (r.value) out.value = as_string_view(*r.value);
          kafka::HeaderReader hr(r.headers, r.header_count);
          for (;;) {
            auto h = hr.next();
            if (!h || !*h) break;
            out.headers.push_back(
                {(*h)->key, (*h)->value ? std::optional<std::string_view>(as_string_view(*(*h)->value))
                                        : std::nullopt});
          }
          out.storage = owner;
          ++msgs_received;
          msg_bytes_received +=
              static_cast<int64_t>((r.key ? r.key->size() : 0) + (r.value ? r.value->size() : 0));
          buffered.push_back(std::move(out));
        }
      }
      ps.position = std::max(ps.position, batch.last_offset() + 1);
    }
    return {};
  }

  // ---- group -------------------------------------------------------------------------------

  Result<int32_t> find_coordinator() {
    {
      std::lock_guard lock(mu);
      if (coordinator >= 0) return coordinator;
    }
    kafka::FindCoordinatorRequest req;
    req.key = config.group_id;
    req.key_type = 0;
    auto r = client->call_as<kafka::FindCoordinatorResponse>(client::kAnyBroker, req);
    if (!r) return unexpected(r.error());
    if (r->error_code != 0)
      return unexpected(client::kafka_error(r->error_code, "FindCoordinator " + config.group_id));
    auto md = client->metadata({}, false);
    if (md && !(*md)->broker(r->node_id)) (void)client->metadata({}, true);
    std::lock_guard lock(mu);
    coordinator = r->node_id;
    return coordinator;
  }

  void forget_coordinator() {
    std::lock_guard lock(mu);
    coordinator = -1;
  }

  void revoke_all() {
    bool lost;
    {
      std::lock_guard lock(mu);
      lost = generation_lost;
      generation_lost = false;
    }
    if (!lost && config.enable_auto_commit && generation_now() >= 0 && !parts.empty())
      (void)commit_positions();
    if (subscribed && !parts.empty()) {
      std::vector<TopicPartition> owned;
      for (const auto& [tp, ps] : parts) owned.push_back(tp);
      // Still owned (and positions still readable) while the callback runs.
      const auto& cb = lost ? listener.on_lost : listener.on_revoked;
      if (cb) cb(owned);
    }
    parts.clear();
    buffered.clear();
    ++assignment_epoch;
  }

  int32_t generation_now() {
    std::lock_guard lock(mu);
    return generation;
  }

  Status join_group(Clock::time_point deadline) {
    revoke_all();
    for (int attempt = 0;; ++attempt) {
      if (Clock::now() > deadline) {
        return unexpected(
            make_error(Errc::kTimeout, "joining group '" + config.group_id + "' timed out"));
      }
      auto coord = find_coordinator();
      if (!coord) {
        if (!client::retriable(coord.error())) return unexpected(coord.error());
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      kafka::JoinGroupRequest req;
      req.group_id = config.group_id;
      req.session_timeout_ms = config.session_timeout_ms;
      req.rebalance_timeout_ms = config.rebalance_timeout_ms;
      {
        std::lock_guard lock(mu);
        req.member_id = member_id;
      }
      req.group_instance_id = instance_id();
      req.protocol_type = "consumer";
      for (const auto& name : config.assignors) {
        req.protocols.push_back({name, consumer::encode_subscription(subscription)});
      }
      auto r = client->call_as<kafka::JoinGroupResponse>(*coord, req,
                                                         config.rebalance_timeout_ms + 5000);
      if (!r) {
        if (!client::retriable(r.error())) return unexpected(r.error());
        forget_coordinator();
        continue;
      }
      if (r->error_code == static_cast<int16_t>(ErrorCode::kMemberIdRequired)) {
        std::lock_guard lock(mu);
        member_id = r->member_id;
        continue;
      }
      if (r->error_code == static_cast<int16_t>(ErrorCode::kUnknownMemberId)) {
        std::lock_guard lock(mu);
        member_id.clear();
        continue;
      }
      if (is_coordinator_error(r->error_code)) {
        forget_coordinator();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (r->error_code == static_cast<int16_t>(ErrorCode::kRebalanceInProgress)) continue;
      if (is_fenced(r->error_code)) return unexpected(fence(r->error_code));
      if (r->error_code != 0)
        return unexpected(client::kafka_error(r->error_code, "JoinGroup " + config.group_id));
      {
        std::lock_guard lock(mu);
        member_id = r->member_id;
        generation = r->generation_id;
        rejoin_needed = false;
      }
      auto s = sync_group(*coord, *r);
      if (s) return s;
      if (is_fenced(static_cast<int16_t>(s.error().code))) return unexpected(fence(s.error().code));
      if (!client::retriable(s.error()) &&
          !is_group_rejoin_error(static_cast<int16_t>(s.error().code))) {
        return s;
      }
    }
  }

  std::optional<std::string> instance_id() const {
    if (config.group_instance_id.empty()) return std::nullopt;
    return config.group_instance_id;
  }

  // FENCED_INSTANCE_ID: another consumer took this group.instance.id; this one stops for good
  // (rejoining would fence the other in turn).
  Error fence(int code) {
    Error e = client::kafka_error(code, "group '" + config.group_id + "': group.instance.id '" +
                                            config.group_instance_id +
                                            "' is used by another consumer, which fenced this one");
    std::lock_guard lock(mu);
    if (!fenced) {
      fenced = e;
      client->log(LogLevel::kError, e.message);
    }
    return e;
  }

  Result<consumer::Assignment> leader_assign(const kafka::JoinGroupResponse& join) {
    consumer::Subscriptions subs;
    std::set<std::string> topics;
    for (const auto& m : join.members) {
      std::vector<std::string> t;
      if (!consumer::decode_subscription(Bytes(m.metadata), t)) {
        return unexpected(make_error(
            Errc::kProtocol, "member " + m.member_id + " sent a subscription we cannot read"));
      }
      topics.insert(t.begin(), t.end());
      subs[m.member_id] = std::move(t);
    }
    auto md = client->metadata(std::vector<std::string>(topics.begin(), topics.end()), true);
    if (!md) return unexpected(md.error());
    std::map<std::string, int32_t> counts;
    for (const auto& t : topics) {
      const client::TopicInfo* ti = (*md)->topic(t);
      if (ti && ti->error_code == 0) counts[t] = static_cast<int32_t>(ti->partitions.size());
    }
    if (join.protocol_name == "roundrobin") return consumer::assign_round_robin(subs, counts);
    if (join.protocol_name == "range") return consumer::assign_range(subs, counts);
    return unexpected(make_error(
        Errc::kUnsupported,
        "the group chose assignor '" + join.protocol_name + "', which Sluice does not implement"));
  }

  Status sync_group(int32_t coord, const kafka::JoinGroupResponse& join) {
    kafka::SyncGroupRequest req;
    req.group_id = config.group_id;
    req.generation_id = join.generation_id;
    req.member_id = join.member_id;
    req.group_instance_id = instance_id();
    if (join.leader == join.member_id) {
      auto a = leader_assign(join);
      if (!a) return unexpected(a.error());
      for (const auto& [member, tps] : *a)
        req.assignments.push_back({member, consumer::encode_assignment(tps)});
    }
    auto r =
        client->call_as<kafka::SyncGroupResponse>(coord, req, config.rebalance_timeout_ms + 5000);
    if (!r) return unexpected(r.error());
    if (r->error_code != 0) {
      if (is_coordinator_error(r->error_code)) forget_coordinator();
      return unexpected(client::kafka_error(r->error_code, "SyncGroup " + config.group_id));
    }
    std::vector<TopicPartition> tps;
    if (!consumer::decode_assignment(Bytes(r->assignment), tps)) {
      return unexpected(
          make_error(Errc::kProtocol, "cannot read the assignment from the group leader"));
    }
    parts.clear();
    for (const auto& tp : tps) parts[tp] = PartState{};
    ++assignment_epoch;
    start_heartbeat();
    client->log(LogLevel::kInfo, "group " + config.group_id + " generation " +
                                     std::to_string(generation) + ": assigned " +
                                     std::to_string(tps.size()) + " partitions");
    if (listener.on_assigned) listener.on_assigned(tps);
    return {};
  }

  void start_heartbeat() {
    {
      std::lock_guard lock(mu);
      if (heartbeat_running) return;
      heartbeat_running = true;
    }
    client->post([this] { arm_heartbeat(); });
  }

  void arm_heartbeat() {  // I/O thread
    if (!heartbeat_timer) heartbeat_timer = std::make_unique<asio::steady_timer>(client->io());
    heartbeat_timer->expires_after(std::chrono::milliseconds(config.heartbeat_interval_ms));
    heartbeat_timer->async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      send_heartbeat();
      arm_heartbeat();
    });
  }

  void send_heartbeat() {  // I/O thread
    kafka::HeartbeatRequest req;
    int32_t coord;
    {
      std::lock_guard lock(mu);
      if (closed || generation < 0 || coordinator < 0 || rejoin_needed) return;
      req.group_id = config.group_id;
      req.generation_id = generation;
      req.member_id = member_id;
      coord = coordinator;
    }
    req.group_instance_id = instance_id();
    client->send(coord, req, [this](Result<client::Response> r) {
      if (!r) return;
      const auto& resp = std::get<kafka::HeartbeatResponse>(r->decoded->body);
      if (is_fenced(resp.error_code)) {
        fence(resp.error_code);
        return;
      }
      std::lock_guard lock(mu);
      if (is_group_rejoin_error(resp.error_code)) {
        rejoin_needed = true;
        generation_lost = resp.error_code != static_cast<int16_t>(ErrorCode::kRebalanceInProgress);
        if (resp.error_code == static_cast<int16_t>(ErrorCode::kUnknownMemberId)) member_id.clear();
      } else if (is_coordinator_error(resp.error_code)) {
        coordinator = -1;
        rejoin_needed = true;
      }
    });
  }

  Status leave_group() {
    std::string id;
    int32_t coord;
    {
      std::lock_guard lock(mu);
      id = member_id;
      coord = coordinator;
      generation = -1;
      member_id.clear();
    }
    // A static member does not leave (KIP-345): its session timeout removes it, and a restart
    // within it takes its assignment back without a rebalance.
    if (id.empty() || coord < 0 || instance_id()) return {};
    kafka::LeaveGroupRequest req;
    req.group_id = config.group_id;
    req.member_id = id;                         // v0-2
    req.members.push_back({id, std::nullopt});  // v3+
    auto r = client->call_as<kafka::LeaveGroupResponse>(coord, req);
    if (!r) return unexpected(r.error());
    if (r->error_code != 0) return unexpected(client::kafka_error(r->error_code, "LeaveGroup"));
    return {};
  }

  // ---- commits -----------------------------------------------------------------------------

  kafka::OffsetCommitRequest commit_request(const std::map<TopicPartition, int64_t>& offsets) {
    kafka::OffsetCommitRequest req;
    req.group_id = config.group_id;
    {
      std::lock_guard lock(mu);
      req.generation_id_or_member_epoch = subscribed ? generation : -1;
      req.member_id = subscribed ? member_id : "";
    }
    if (subscribed) req.group_instance_id = instance_id();
    for (const auto& [tp, off] : offsets) {
      auto* t = &client::entry_for(
          req.topics, &kafka::OffsetCommitRequest::OffsetCommitRequestTopic::name, tp.topic);
      kafka::OffsetCommitRequest::OffsetCommitRequestPartition p;
      p.partition_index = tp.partition;
      p.committed_offset = off;
      t->partitions.push_back(p);
    }
    return req;
  }

  Status check_commit(const kafka::OffsetCommitResponse& resp) {
    for (const auto& t : resp.topics) {
      for (const auto& p : t.partitions) {
        if (p.error_code == 0) continue;
        if (is_fenced(p.error_code)) return unexpected(fence(p.error_code));
        if (is_group_rejoin_error(p.error_code)) {
          std::lock_guard lock(mu);
          rejoin_needed = true;
        }
        if (is_coordinator_error(p.error_code)) {
          std::lock_guard lock(mu);
          coordinator = -1;
        }
        return unexpected(client::kafka_error(
            p.error_code,
            "OffsetCommit " + t.name + "[" + std::to_string(p.partition_index) + "]"));
      }
    }
    return {};
  }

  // The next offset the application will see per partition: records fetched but not yet
  // returned by poll() are not consumed, so a commit must not pass them.
  std::map<TopicPartition, int64_t> positions() const {
    std::map<TopicPartition, int64_t> out;
    for (const auto& [tp, ps] : parts) {
      if (ps.position >= 0) out[tp] = ps.position;
    }
    for (const auto& r : buffered) {
      auto it = out.find({r.topic, r.partition});
      if (it != out.end()) it->second = std::min(it->second, r.offset);
    }
    return out;
  }

  Status commit(const std::map<TopicPartition, int64_t>& offsets) {
    if (!has_group())
      return unexpected(make_error(Errc::kInvalidArgument, "commit needs group_id"));
    if (offsets.empty()) return {};
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto coord = find_coordinator();
      if (!coord) return unexpected(coord.error());
      auto r = client->call_as<kafka::OffsetCommitResponse>(*coord, commit_request(offsets));
      if (!r) return unexpected(r.error());
      auto s = check_commit(*r);
      if (s || !client::retriable(s.error())) return s;
    }
    return unexpected(
        make_error(Errc::kTimeout, "OffsetCommit kept failing; the coordinator may be moving"));
  }

  Status commit_positions() { return commit(positions()); }

  Result<std::map<TopicPartition, int64_t>> committed(const std::vector<TopicPartition>& tps) {
    if (!has_group())
      return unexpected(make_error(Errc::kInvalidArgument, "committed offsets need group_id"));
    auto coord = find_coordinator();
    if (!coord) return unexpected(coord.error());
    kafka::OffsetFetchRequest req;
    req.group_id = config.group_id;
    req.topics.emplace();
    for (const auto& tp : tps) {
      auto* t = &client::entry_for(
          *req.topics, &kafka::OffsetFetchRequest::OffsetFetchRequestTopic::name, tp.topic);
      t->partition_indexes.push_back(tp.partition);
    }
    auto r = client->call_as<kafka::OffsetFetchResponse>(*coord, req);
    if (!r) return unexpected(r.error());
    if (r->error_code != 0) {
      if (is_coordinator_error(r->error_code)) forget_coordinator();
      return unexpected(client::kafka_error(r->error_code, "OffsetFetch " + config.group_id));
    }
    std::map<TopicPartition, int64_t> out;
    for (const auto& t : r->topics) {
      for (const auto& p : t.partitions) {
        if (p.error_code != 0 &&
            p.error_code != static_cast<int16_t>(ErrorCode::kUnknownTopicOrPartition)) {
          return unexpected(client::kafka_error(p.error_code, "OffsetFetch " + t.name));
        }
        out[{t.name, p.partition_index}] = p.committed_offset;
      }
    }
    return out;
  }
};

Consumer::Consumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Consumer>> Consumer::create(const ConsumerConfig& config) {
  if (config.auto_offset_reset != "earliest" && config.auto_offset_reset != "latest" &&
      config.auto_offset_reset != "none") {
    return unexpected(
        make_error(Errc::kInvalidArgument, "auto_offset_reset must be earliest, latest or none"));
  }
  if (config.isolation_level != "read_committed" && config.isolation_level != "read_uncommitted") {
    return unexpected(make_error(Errc::kInvalidArgument,
                                 "isolation_level must be read_committed or read_uncommitted"));
  }
  for (const auto& a : config.assignors) {
    if (a != "range" && a != "roundrobin") {
      return unexpected(
          make_error(Errc::kInvalidArgument, "unknown assignor '" + a + "' (range, roundrobin)"));
    }
  }
  if (config.assignors.empty())
    return unexpected(make_error(Errc::kInvalidArgument, "no assignor configured"));
  if (config.log_level < 0 || config.log_level > 7 || config.statistics_interval_ms < 0) {
    return unexpected(make_error(Errc::kInvalidArgument,
                                 "log_level must be 0 to 7 and statistics_interval_ms >= 0"));
  }
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  client::ClientConfig cc = client::client_config_of(config, "consumer");
  if (config.statistics_interval_ms > 0 && config.stats_cb) {
    cc.stats_fields = [c = impl.get()](JsonWriter& w) { c->stats_fields(w); };
  }
  if (auto valid = client::validate(cc.security); !valid) return unexpected(valid.error());
  impl->client = std::make_unique<client::Client>(cc);
  auto md = impl->client->metadata({}, true);
  if (!md) return unexpected(md.error());
  return std::unique_ptr<Consumer>(new Consumer(std::move(impl)));
}

Result<Consumer> Consumer::open(const ConsumerConfig& config) {
  auto c = create(config);
  if (!c) return unexpected(c.error());
  return Consumer(std::move((*c)->impl_));
}

Consumer::Consumer(Consumer&& other) noexcept : impl_(std::move(other.impl_)) {}

Consumer& Consumer::operator=(Consumer&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Consumer::~Consumer() { close(); }

Status Consumer::assign(const std::vector<TopicPartition>& partitions) {
  if (impl_->subscribed)
    return unexpected(
        make_error(Errc::kInvalidArgument, "assign() after subscribe(): call unsubscribe() first"));
  std::map<TopicPartition, PartState> next;
  for (const auto& tp : partitions) {
    auto leader = impl_->leader_of(tp, false);
    if (!leader) return unexpected(leader.error());
    auto it = impl_->parts.find(tp);
    next[tp] = it != impl_->parts.end() ? it->second : PartState{};
  }
  impl_->parts = std::move(next);
  impl_->buffered.clear();
  ++impl_->assignment_epoch;
  return {};
}

Status Consumer::subscribe(const std::vector<std::string>& topics, RebalanceListener listener) {
  if (!impl_->has_group())
    return unexpected(
        make_error(Errc::kInvalidArgument, "subscribe() needs group_id in the config"));
  if (topics.empty())
    return unexpected(make_error(Errc::kInvalidArgument, "subscribe() needs at least one topic"));
  impl_->subscription = topics;
  impl_->subscribed = true;
  impl_->listener = std::move(listener);
  std::lock_guard lock(impl_->mu);
  impl_->rejoin_needed = true;
  return {};
}

void Consumer::unsubscribe() {
  if (!impl_->subscribed) return;
  impl_->revoke_all();
  (void)impl_->leave_group();
  impl_->subscribed = false;
}

std::vector<TopicPartition> Consumer::assignment() const {
  std::vector<TopicPartition> out;
  for (const auto& [tp, ps] : impl_->parts) out.push_back(tp);
  return out;
}

Result<std::vector<ConsumerRecord>> Consumer::poll(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  const auto deadline = Clock::now() + timeout;
  if (m.subscribed) {
    bool rejoin;
    {
      std::lock_guard lock(m.mu);
      if (m.fenced) return unexpected(*m.fenced);
      rejoin = m.rejoin_needed || m.generation < 0;
    }
    if (rejoin) {
      auto s =
          m.join_group(Clock::now() + std::chrono::milliseconds(m.config.rebalance_timeout_ms));
      if (!s) return unexpected(s.error());
    }
    if (m.config.enable_auto_commit && Clock::now() >= m.next_auto_commit) {
      (void)m.commit_positions();
      m.next_auto_commit =
          Clock::now() + std::chrono::milliseconds(m.config.auto_commit_interval_ms);
    }
  }
  auto s = m.resolve_positions();
  if (!s) return unexpected(s.error());
  for (;;) {
    if (!m.buffered.empty()) break;
    const auto now = Clock::now();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    m.send_fetches(static_cast<int>(std::clamp<int64_t>(left, 0, m.config.fetch_max_wait_ms)));
    std::unique_lock lock(m.mu);
    if (m.completed.empty() && !m.closed) {
      m.cv.wait_until(lock, deadline, [&] { return !m.completed.empty() || m.closed; });
    }
    if (m.closed) return unexpected(make_error(Errc::kClosed, "consumer closed"));
    auto done = std::move(m.completed);
    m.completed.clear();
    lock.unlock();
    for (auto& d : done) {
      auto p = m.process(d);
      if (!p) return unexpected(p.error());
    }
    if (m.buffered.empty() && Clock::now() >= deadline) break;
    auto r = m.resolve_positions();  // after OFFSET_OUT_OF_RANGE
    if (!r) return unexpected(r.error());
  }
  // Prefetch the next round while the application handles this one.
  if (!m.buffered.empty()) m.send_fetches(m.config.fetch_max_wait_ms);
  std::vector<ConsumerRecord> out;
  const size_t n = std::min(m.buffered.size(), static_cast<size_t>(m.config.max_poll_records));
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(std::move(m.buffered.front()));
    m.buffered.pop_front();
  }
  m.msgs_polled += static_cast<int64_t>(n);
  m.msgs_queued = static_cast<int64_t>(m.buffered.size());
  return out;
}

Status Consumer::seek(const TopicPartition& tp, int64_t offset) {
  auto it = impl_->parts.find(tp);
  if (it == impl_->parts.end()) {
    return unexpected(
        make_error(Errc::kInvalidArgument, tp_name(tp) + " is not assigned to this consumer"));
  }
  if (offset < 0) {
    auto r = impl_->list_offsets({tp}, offset == kOffsetBeginning ? -2 : -1);
    if (!r) return unexpected(r.error());
    offset = r->at(tp);
  }
  it->second.position = offset;
  std::erase_if(impl_->buffered, [&](const ConsumerRecord& r) {
    return r.topic == tp.topic && r.partition == tp.partition;
  });
  return {};
}

Status Consumer::seek_to_beginning(const std::vector<TopicPartition>& partitions) {
  for (const auto& tp : partitions) {
    if (auto s = seek(tp, kOffsetBeginning); !s) return s;
  }
  return {};
}

Status Consumer::seek_to_end(const std::vector<TopicPartition>& partitions) {
  for (const auto& tp : partitions) {
    if (auto s = seek(tp, kOffsetEnd); !s) return s;
  }
  return {};
}

Status Consumer::seek_to_timestamp(const std::vector<TopicPartition>& partitions,
                                   int64_t timestamp_ms) {
  auto r = impl_->list_offsets(partitions, timestamp_ms);
  if (!r) return unexpected(r.error());
  for (const auto& [tp, off] : *r) {
    if (auto s = seek(tp, off); !s) return s;
  }
  return {};
}

Result<int64_t> Consumer::position(const TopicPartition& tp) {
  auto it = impl_->parts.find(tp);
  if (it == impl_->parts.end()) {
    return unexpected(
        make_error(Errc::kInvalidArgument, tp_name(tp) + " is not assigned to this consumer"));
  }
  if (it->second.position < 0) {
    auto s = impl_->resolve_positions();
    if (!s) return unexpected(s.error());
  }
  // Records buffered but not yet returned come first.
  for (const auto& r : impl_->buffered) {
    if (r.topic == tp.topic && r.partition == tp.partition) return r.offset;
  }
  return it->second.position;
}

void Consumer::pause(const std::vector<TopicPartition>& partitions) {
  for (const auto& tp : partitions) {
    auto it = impl_->parts.find(tp);
    if (it == impl_->parts.end()) continue;
    it->second.paused = true;
    // Records already fetched for it are returned after resume(): refetch from there.
    auto pos = position(tp);
    if (pos) it->second.position = *pos;
    std::erase_if(impl_->buffered, [&](const ConsumerRecord& r) {
      return r.topic == tp.topic && r.partition == tp.partition;
    });
  }
}

void Consumer::resume(const std::vector<TopicPartition>& partitions) {
  for (const auto& tp : partitions) {
    auto it = impl_->parts.find(tp);
    if (it != impl_->parts.end()) it->second.paused = false;
  }
}

Status Consumer::commit_sync() { return impl_->commit(impl_->positions()); }

Status Consumer::commit_sync(const std::map<TopicPartition, int64_t>& offsets) {
  return impl_->commit(offsets);
}

void Consumer::commit_async(CommitCallback done) {
  auto offsets = impl_->positions();
  if (!impl_->has_group()) {
    if (done) done(unexpected(make_error(Errc::kInvalidArgument, "commit needs group_id")));
    return;
  }
  auto coord = impl_->find_coordinator();
  if (!coord) {
    if (done) done(unexpected(coord.error()));
    return;
  }
  impl_->client->send(
      *coord, impl_->commit_request(offsets), [this, done](Result<client::Response> r) {
        Status s;
        if (!r) {
          s = unexpected(r.error());
        } else {
          s = impl_->check_commit(std::get<kafka::OffsetCommitResponse>(r->decoded->body));
        }
        if (done) done(s);
      });
}

Result<std::map<TopicPartition, int64_t>> Consumer::committed(
    const std::vector<TopicPartition>& partitions) {
  return impl_->committed(partitions);
}

ConsumerGroupMetadata Consumer::group_metadata() {
  Impl& im = *impl_;
  ConsumerGroupMetadata out;
  out.group_id = im.config.group_id;
  std::lock_guard lock(im.mu);
  out.generation_id = im.generation;
  out.member_id = im.member_id;
  out.group_instance_id = im.instance_id();
  return out;
}

Result<std::pair<int64_t, int64_t>> Consumer::watermark_offsets(const TopicPartition& tp) {
  auto lo = impl_->list_offsets({tp}, -2);
  if (!lo) return unexpected(lo.error());
  auto hi = impl_->list_offsets({tp}, -1);
  if (!hi) return unexpected(hi.error());
  return std::make_pair(lo->at(tp), hi->at(tp));
}

Result<int32_t> Consumer::partition_count(const std::string& topic) {
  auto md = impl_->client->metadata({topic}, false);
  if (!md) return unexpected(md.error());
  const client::TopicInfo* t = (*md)->topic(topic);
  if (!t || t->error_code != 0) {
    int16_t code = t ? t->error_code : static_cast<int16_t>(ErrorCode::kUnknownTopicOrPartition);
    return unexpected(client::kafka_error(code, "topic '" + topic + "'"));
  }
  return static_cast<int32_t>(t->partitions.size());
}

void Consumer::close() {
  if (!impl_ || !impl_->client) return;
  if (impl_->subscribed) {
    impl_->revoke_all();  // auto commit, then on_revoked
    (void)impl_->leave_group();
    impl_->subscribed = false;
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->closed = true;
  }
  impl_->cv.notify_all();
  std::promise<void> stopped;
  impl_->client->post([this, &stopped] {
    if (impl_->heartbeat_timer) impl_->heartbeat_timer->cancel();
    impl_->heartbeat_timer.reset();
    stopped.set_value();
  });
  stopped.get_future().wait();
  impl_->client.reset();
}

namespace {

const std::vector<client::Property<ConsumerConfig>>& consumer_properties() {
  using C = ConsumerConfig;
  static const std::vector<client::Property<C>> table = {
      {"bootstrap.servers", &C::bootstrap_servers},
      {"client.id", &C::client_id},
      {"group.id", &C::group_id},
      {"group.instance.id", &C::group_instance_id},
      {"auto.offset.reset", &C::auto_offset_reset},
      {"enable.auto.commit", &C::enable_auto_commit},
      {"auto.commit.interval.ms", &C::auto_commit_interval_ms},
      {"session.timeout.ms", &C::session_timeout_ms},
      {"heartbeat.interval.ms", &C::heartbeat_interval_ms},
      {"max.poll.interval.ms", &C::rebalance_timeout_ms},
      {"fetch.min.bytes", &C::fetch_min_bytes},
      {"fetch.max.bytes", &C::fetch_max_bytes},
      {"max.partition.fetch.bytes", &C::max_partition_fetch_bytes},
      {"fetch.max.wait.ms", &C::fetch_max_wait_ms},
      {"max.poll.records", &C::max_poll_records},
      {"isolation.level", &C::isolation_level},
      {"request.timeout.ms", &C::request_timeout_ms},
      {"statistics.interval.ms", &C::statistics_interval_ms},
      {"log_level", &C::log_level},
  };
  return table;
}

}  // namespace

Status set_config(ConsumerConfig& config, const std::string& name, const std::string& value) {
  if (name == "isolation.level" && value != "read_committed" && value != "read_uncommitted") {
    return unexpected(make_error(Errc::kInvalidArgument,
                                 "config isolation.level: want read_committed or read_uncommitted, "
                                 "got '" +
                                     value + "'"));
  }
  if (name == "auto.offset.reset" && value != "earliest" && value != "latest" && value != "none") {
    return unexpected(make_error(Errc::kInvalidArgument,
                                 "config auto.offset.reset: want earliest, latest or none, got '" +
                                     value + "'"));
  }
  return client::set_property(config, consumer_properties(), name, value);
}

Result<ConsumerConfig> consumer_config(const std::map<std::string, std::string>& properties) {
  return client::config_from<ConsumerConfig>(properties, [](ConsumerConfig& c, const std::string& k,
                                                        const std::string& v) {
    return set_config(c, k, v);
  });
}

}  // namespace sluice
