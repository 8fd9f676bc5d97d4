// The data path: Produce, Fetch (with long polling), ListOffsets, InitProducerId (without a
// transactional id) and WriteTxnMarkers.
#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <type_traits>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "broker/legacy.h"
#include "broker/topic_config.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

using cluster::acl::Operation;
using cluster::acl::ResourceType;

namespace asio = boost::asio;
using kafka::ErrorCode;

// Named, not anonymous: FetchOp (declared in broker.h) holds them.
namespace data_detail {

// Counts down tasks; the one that brings it to zero runs `last`.
struct Countdown {
  explicit Countdown(size_t n, std::function<void()> last) : left(n), last(std::move(last)) {}
  void done() {
    if (left.fetch_sub(1) == 1) last();
  }
  std::atomic<size_t> left;
  std::function<void()> last;
};

// One partition's part of a fetch, filled on the partition's shard.
struct FetchSlot {
  ErrorCode error = ErrorCode::kNone;
  int64_t high_watermark = -1;
  int64_t last_stable_offset = -1;
  int64_t log_start_offset = -1;
  std::vector<AbortedTxn> aborted;  // read_committed: what the consumer must drop
  std::optional<log::FileRange> range;
  int64_t records = 0;  // offsets the range brings past the fetch offset (for /metrics)
  // Fetch v0-3: the range down-converted to magic 0/1 messages (legacy.h), sent instead.
  std::optional<std::vector<std::byte>> legacy;
  size_t size() const { return legacy ? legacy->size() : range ? range->length : 0; }
};

}  // namespace data_detail

using data_detail::Countdown;
using data_detail::FetchSlot;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Checks one Produce partition's records before anything is written (kafka-protocol.md 5.5).
// Returns kNone when the batch may be appended; `max_timestamp` is then what the batch's
// maxTimestamp must be (for CreateTime, the largest record timestamp).
ErrorCode validate_batch(const kafka::Records& records, int16_t version, int64_t max_bytes,
                         bool compacted, int64_t& max_timestamp, std::string& why) {
  if (records.is_null() || records.size() == 0) {
    why = "no record batch";
    return ErrorCode::kInvalidRecord;
  }
  auto view = kafka::RecordBatchView::parse(records.bytes());
  if (!view) {
    why = view.error().message;
    return view.error().code == kafka::BatchErrc::kBadMagic ? ErrorCode::kInvalidRecord
                                                            : ErrorCode::kCorruptMessage;
  }
  if (view->size_bytes() != records.size()) {
    why = "more than one record batch";
    return ErrorCode::kInvalidRecord;
  }
  if (view->compression() == kafka::Compression::kZstd && version < 7) {
    why = "zstd needs Produce v7 or later";
    return ErrorCode::kUnsupportedCompressionType;
  }
  if (static_cast<int64_t>(view->size_bytes()) > max_bytes) {
    why = "batch of " + std::to_string(view->size_bytes()) + " bytes exceeds max.message.bytes " +
          std::to_string(max_bytes);
    return ErrorCode::kMessageTooLarge;
  }
  if (auto crc = view->verify_crc(); !crc) {
    why = crc.error().message;
    return ErrorCode::kCorruptMessage;
  }
  if (view->is_control()) {
    why = "clients may not produce control batches";
    return ErrorCode::kInvalidRecord;
  }
  if (view->producer_id() >= 0 && view->base_sequence() < 0) {
    why = "idempotent batch without a base sequence";
    return ErrorCode::kInvalidRecord;
  }
  if (view->is_transactional() && view->producer_id() < 0) {
    why = "transactional batch without a producer id";
    return ErrorCode::kInvalidRecord;
  }
  // Every record, once: what consumers and the log rely on must hold before it is stored.
  std::vector<std::byte> scratch;  // used only by compressed batches
  auto summary = kafka::check_records(*view, scratch);
  if (!summary) {
    why = summary.error().message;
    return summary.error().code == kafka::BatchErrc::kMismatch ? ErrorCode::kInvalidRecord
                                                                : ErrorCode::kCorruptMessage;
  }
  if (compacted && summary->keyless_records > 0) {
    why = "records of a compacted topic need a key";
    return ErrorCode::kInvalidRecord;
  }
  max_timestamp = view->timestamp_type() == kafka::TimestampType::kCreateTime
                      ? summary->max_timestamp
                      : view->max_timestamp();
  return ErrorCode::kNone;
}

}  // namespace

namespace {

// Only a partition's leader serves Produce, Fetch and ListOffsets, and only once its high
// watermark is current; a client's leader epoch (-1: none given) must be the leader's.
ErrorCode leader_check(const Partition& p, int32_t client_epoch) {
  if (!p.replica) return ErrorCode::kNone;
  if (p.replica->failed()) return ErrorCode::kKafkaStorageError;
  if (!p.replica->is_leader()) return ErrorCode::kNotLeaderOrFollower;
  const int32_t epoch = p.replica->leader_epoch();
  if (client_epoch >= 0 && client_epoch < epoch) return ErrorCode::kFencedLeaderEpoch;
  if (client_epoch > epoch) return ErrorCode::kUnknownLeaderEpoch;
  if (!p.replica->serving()) return ErrorCode::kNotLeaderOrFollower;
  return ErrorCode::kNone;
}

}  // namespace

void Broker::handle_produce(std::shared_ptr<Request> req, kafka::ProduceRequest body) {
  using PartitionResponse = kafka::ProduceResponse::PartitionProduceResponse;
  auto resp = std::make_shared<kafka::ProduceResponse>();
  auto failed = std::make_shared<std::atomic<bool>>(false);
  const int16_t acks = body.acks;
  const int64_t timeout_ms = body.timeout_ms;
  const int16_t version = req->header.api_version;
  size_t total = 0;
  for (const auto& t : body.topic_data) total += t.partition_data.size();
  // Up-converted batches of Produce v0-2; deque: their bytes stay put while more are added.
  auto legacy_batches = std::make_shared<std::deque<std::vector<std::byte>>>();
  // Client quotas: the request's bytes, as Kafka counts them, recorded before its work starts
  // (Kafka records them after the append, but reads one request at a time: here the
  // connection's next request is read after this returns, so the session's throttle must be
  // set by then; Session::throttled_until).
  resp->throttle_time_ms = record_produce(*req);
  auto countdown = std::make_shared<Countdown>(total + 1, [req, resp, failed, acks,
                                                           legacy_batches] {
    req->errored = failed->load();
    if (acks == 0) {
      // No response for acks=0; a failure closes the connection so the client notices.
      req->done(failed->load() ? Reply::close() : Reply::none());
    } else {
      respond(*req, *resp);
    }
  });
  auto snap = registry_->snapshot();
  const auto live = live_config();  // topic defaults (dynamic broker configs included)
  int32_t affinity = Reply::kNoShard;
  resp->responses.resize(body.topic_data.size());
  for (size_t ti = 0; ti < body.topic_data.size(); ++ti) {
    const auto& t = body.topic_data[ti];
    auto& rt = resp->responses[ti];
    rt.name = t.name;
    rt.partition_responses.resize(t.partition_data.size());
    const TopicInfo* topic = snap->find(t.name);
    const bool may_write = allowed(*req, Operation::kWrite, ResourceType::kTopic, t.name);
    for (size_t pi = 0; pi < t.partition_data.size(); ++pi) {
      const auto& pd = t.partition_data[pi];
      PartitionResponse* slot = &rt.partition_responses[pi];
      slot->index = pd.index;
      slot->base_offset = -1;
      auto fail = [&](ErrorCode c, std::string why) {
        slot->error_code = code(c);
        if (!why.empty()) slot->error_message = std::move(why);
        failed->store(true);
        countdown->done();
      };
      if (acks != 0 && acks != 1 && acks != -1) {
        fail(ErrorCode::kInvalidRequiredAcks, "acks must be -1, 0 or 1");
        continue;
      }
      if (body.transactional_id && !body.transactional_id->empty() &&
          !allowed(*req, Operation::kWrite, ResourceType::kTransactionalId,
                   *body.transactional_id)) {
        fail(ErrorCode::kTransactionalIdAuthorizationFailed, "");
        continue;
      }
      if (!may_write) {  // before existence, as Kafka: nothing is told of a hidden topic
        fail(ErrorCode::kTopicAuthorizationFailed, "");
        continue;
      }
      if (!topic || pd.index < 0 || pd.index >= topic->partitions) {
        fail(ErrorCode::kUnknownTopicOrPartition, "");
        continue;
      }
      if (TopicRegistry::is_internal(t.name)) {  // as Kafka: only the broker appends there
        fail(ErrorCode::kInvalidTopicException, "cannot append to internal topic " + t.name);
        continue;
      }
      if (low_space_.load(std::memory_order_relaxed) && !topic->internal) {
        // Below log.dir.min.free.bytes: new data waits (retriable) so that the disk never
        // fills up; internal topics (offset commits, group state) still write.
        fail(ErrorCode::kKafkaStorageError, "the broker's data volume is low on free space");
        continue;
      }
      std::string why;
      int64_t max_timestamp = -1;
      const bool compacted =
          topic_setting_value(*topic, *live, "cleanup.policy").find("compact") !=
          std::string::npos;
      // Produce v0-2 carry legacy message sets: up-converted into one v2 batch (legacy.cc),
      // which then meets every check a v2 batch does.
      std::vector<std::byte>* converted = nullptr;
      ErrorCode verdict = ErrorCode::kNone;
      if (version < 3) {
        verdict = up_convert_produce(pd.records, *legacy_batches, converted, why);
      }
      if (verdict == ErrorCode::kNone) {
        verdict = validate_batch(
            converted ? kafka::Records::borrowed(*converted) : pd.records, version,
            topic_setting_int(*topic, *live, "max.message.bytes"), compacted, max_timestamp,
            why);
      }
      if (verdict != ErrorCode::kNone) {
        if (version < 3) {
          legacy_rejected(req->conn, req->header.client_id, t.name, pd.index, why);
        } else {
          spdlog::debug("produce to {}-{} rejected: {}", t.name, pd.index, why);
        }
        fail(verdict, why);
        continue;
      }
      // The batch is stamped in place: the request buffer (or the converted batch, kept by
      // the countdown) is ours and outlives the append.
      MutableBytes batch;
      if (converted) {
        batch = MutableBytes(converted->data(), converted->size());
      } else {
        const Bytes records = pd.records.bytes();
        auto& buffer = *req->frame.buffer;
        const size_t at = static_cast<size_t>(records.data() - buffer.data());
        batch = MutableBytes(buffer.data() + at, records.size());
      }
      if (load_be<int64_t>(batch.data() + kafka::batch_layout::kMaxTimestamp) != max_timestamp) {
        // As Kafka does: maxTimestamp is what the records say (the time index relies on it).
        store_be<int64_t>(batch.data() + kafka::batch_layout::kMaxTimestamp, max_timestamp);
        kafka::update_crc(batch);
      }
      // The Raft entry refers to the batch inside the request's buffer instead of copying it
      // (a copy of every produced byte, and fresh pages to fault in, was a tenth of the shard's
      // time), when the batch is at least half the buffer: an entry kept in Raft's cache then
      // holds at most twice its own size.
      std::shared_ptr<const void> owner;
      if (!converted && req->frame.storage && 2 * batch.size() >= req->frame.storage->size()) {
        owner = req->frame.storage;
      }
      TopicPartition tp{t.name, pd.index};
      ShardState& ss = shard_of(tp);
      const auto shard_id = static_cast<int32_t>(ss.shard.id());
      affinity = affinity == Reply::kNoShard || affinity == shard_id ? shard_id : Reply::kSpread;
      ss.shard.post([this, &ss, tp, batch, owner, slot, req, countdown, failed, acks,
                     timeout_ms] {
        auto finish = [&](ErrorCode c, std::string why = "") {
          if (c != ErrorCode::kNone) {
            slot->error_code = code(c);
            if (!why.empty()) slot->error_message = std::move(why);
            slot->base_offset = -1;
            failed->store(true);
          }
          countdown->done();
        };
        Partition* p = ss.find(tp);
        if (!p) return finish(missing_partition_error(tp));
        if (ErrorCode e = leader_check(*p, -1); e != ErrorCode::kNone) return finish(e);
        if (acks == -1) {
          // acks=all needs min.insync.replicas replicas in sync (the leader counts).
          const auto isr = p->replica->in_sync_replicas(config_.replica_lag_time_max_ms);
          if (static_cast<int64_t>(isr.size()) < p->min_insync_replicas) {
            return finish(ErrorCode::kNotEnoughReplicas,
                          std::to_string(isr.size()) + " in-sync replica(s); " +
                              "min.insync.replicas is " + std::to_string(p->min_insync_replicas));
          }
        }
        auto view = kafka::RecordBatchView::parse(batch);
        SLUICE_ASSERT(view.has_value());  // validated on the connection's shard
        const int64_t pid = view->producer_id();
        const int32_t count = view->record_count();
        if (pid >= 0) {
          // As Kafka: a producer with a transaction open here writes only inside it.
          if (!view->is_transactional() && p->producers.txns().open(pid)) {
            return finish(ErrorCode::kInvalidTxnState,
                          "a non-transactional batch from a producer with an open transaction");
          }
          auto check =
              p->producers.check(pid, view->producer_epoch(), view->base_sequence(), count);
          if (check.verdict == SequenceCheck::Verdict::kReject) return finish(check.error);
          if (check.verdict == SequenceCheck::Verdict::kDuplicate) {
            // A retry of a batch we have: answer with its offset once it is durable.
            slot->base_offset = check.duplicate_base_offset;
            slot->log_start_offset = *p->log->log_start_offset();
            p->replica->when_committed(check.duplicate_base_offset + count,
                                       [slot, countdown, failed](ErrorCode e) {
                                         if (e != ErrorCode::kNone) {
                                           slot->error_code = code(e);
                                           slot->base_offset = -1;
                                           failed->store(true);
                                         }
                                         countdown->done();
                                       });
            ss.ring->submit();
            return;
          }
        }
        if (p->log_append_time) {
          const int64_t now = now_ms();
          auto attrs = static_cast<int16_t>(
              load_be<int16_t>(batch.data() + kafka::batch_layout::kAttributes) | 0x8);
          store_be<int16_t>(batch.data() + kafka::batch_layout::kAttributes, attrs);
          store_be<int64_t>(batch.data() + kafka::batch_layout::kMaxTimestamp, now);
          kafka::update_crc(batch);
          slot->log_append_time_ms = now;
        }
        const int16_t ack_mode = acks == 0 ? int16_t{1} : acks;
        const ErrorCode proposed = p->replica->produce(
            batch, ack_mode,
            [&ss, tp, slot, countdown, failed, count, bytes = batch.size()](ErrorCode e,
                                                                            int64_t base) {
              if (e != ErrorCode::kNone) {
                slot->error_code = code(e);
                slot->base_offset = -1;
                failed->store(true);
              } else {
                slot->base_offset = base;
                // On the partition's shard (the replica's callbacks run there).
                auto& traffic = ss.metrics.partition(tp.topic, tp.partition);
                traffic.bytes_in += bytes;
                traffic.records_in += static_cast<uint64_t>(count);
              }
              if (Partition* p = ss.find(tp)) slot->log_start_offset = *p->log->log_start_offset();
              countdown->done();
            },
            timeout_ms, owner);
        if (proposed != ErrorCode::kNone) return finish(proposed);
        if (pid >= 0) {
          // The leader's producer state includes what it proposed (pipelined batches follow
          // it); the batch's base offset is stamped now.
          p->producers.record_batch(*kafka::RecordBatchView::parse(batch));
        }
        ss.ring->submit();
      });
    }
  }
  req->affinity = affinity;  // before the last count: `done` reads it after that
  countdown->done();
}

// A fetch in progress. Lives on the connection's shard ("home"); reads fan out to the
// partitions' shards and come back here. Kept alive by the tasks and the wait timer that
// refer to it; partition waiters hold it weakly, so an answered fetch leaves nothing behind.
struct FetchOp : std::enable_shared_from_this<FetchOp> {
  Broker* broker = nullptr;
  std::shared_ptr<Broker::Request> req;
  Shard* home = nullptr;
  kafka::FetchRequest body;
  std::vector<TopicPartition> tps;
  std::vector<const kafka::FetchRequest::FetchPartition*> parts;
  std::vector<FetchSlot> slots;
  std::chrono::steady_clock::time_point deadline;
  std::unique_ptr<asio::steady_timer> timer;
  std::vector<char> denied;  // per tps entry: the principal may not READ the topic
  bool answered = false;
  bool reading = false;
  bool parked = false;

  void read(bool final_attempt) {
    if (answered || reading) return;
    reading = true;
    slots.assign(tps.size(), FetchSlot{});
    auto self = shared_from_this();
    auto countdown = std::make_shared<Countdown>(tps.size() + 1, [self, final_attempt] {
      self->home->post([self, final_attempt] { self->evaluate(final_attempt); });
    });
    for (size_t i = 0; i < tps.size(); ++i) {
      ShardState& ss = broker->shard_of(tps[i]);
      ss.shard.post([&ss, self, i, countdown] { self->read_partition(ss, i, countdown); });
    }
    countdown->done();
  }

  // On the partition's shard; counts down once the slot is filled (a read older than the
  // log's window of recent batches may wait for the ring: PartitionLog::read_async).
  void read_partition(ShardState& ss, size_t i, const std::shared_ptr<Countdown>& countdown) {
    if (!start_read(ss, i, countdown)) countdown->done();
  }

  // Fills slot i, or starts the read that will (and returns true).
  bool start_read(ShardState& ss, size_t i, const std::shared_ptr<Countdown>& countdown) {
    FetchSlot& slot = slots[i];
    const auto& fp = *parts[i];
    if (denied[i]) {
      slot.error = ErrorCode::kTopicAuthorizationFailed;
      return false;
    }
    Partition* p = ss.find(tps[i]);
    if (!p) {
      slot.error = broker->missing_partition_error(tps[i]);
      return false;
    }
    if (ErrorCode e = leader_check(*p, fp.current_leader_epoch); e != ErrorCode::kNone) {
      slot.error = e;
      return false;
    }
    const int64_t hwm = p->high_watermark();
    const int64_t start = *p->log->log_start_offset();
    slot.high_watermark = hwm;
    slot.log_start_offset = start;
    // read_committed reads up to the last stable offset: below every open transaction.
    const int64_t lso = p->producers.txns().last_stable_offset(hwm);
    slot.last_stable_offset = lso;
    if (fp.fetch_offset < start || fp.fetch_offset > hwm) {
      slot.error = ErrorCode::kOffsetOutOfRange;
      return false;
    }
    const int64_t upto = body.isolation_level == 1 ? lso : hwm;
    if (fp.fetch_offset >= upto) return false;
    // No partition may bring more than the whole response may hold (beyond its first batch,
    // which the log returns whatever its size); answer() then fits ranges into max_bytes.
    int32_t limit = std::min(fp.partition_max_bytes, body.max_bytes);
    // Fetch v0-3 copies and converts what it reads: the whole request stays within
    // kLegacyFetchBytesMax (shared by its partitions), beyond each partition's first batch.
    if (fetch_magic(req->header.api_version) >= 0) {
      limit = static_cast<int32_t>(
          std::min<int64_t>(limit, legacy_partition_bytes_max(tps.size())));
    }
    p->log->read_async(
        Offset(fp.fetch_offset), static_cast<uint64_t>(std::max(1, limit)), Offset(upto),
        [self = shared_from_this(), &ss, i, limit, countdown](log::LogResult<log::ReadResult> r) {
          self->fill_slot(ss, i, r, limit, countdown);
        });
    return true;
  }

  // On the partition's shard: what the log read for slot i. Counts down once the slot is
  // filled: at once, or for Fetch v0-3 once the range was read through the ring and
  // down-converted.
  void fill_slot(ShardState& ss, size_t i, const log::LogResult<log::ReadResult>& r,
                 int32_t limit, const std::shared_ptr<Countdown>& countdown) {
    FetchSlot& slot = slots[i];
    const auto& fp = *parts[i];
    if (!r) {
      slot.error = to_kafka(r.error().code);
    } else if (!r->ranges.empty()) {
      slot.records = std::max<int64_t>(0, *r->next_offset - fp.fetch_offset);
      if (body.isolation_level == 1) {
        // The aborted transactions the answer's batches may hold records of (the consumer
        // drops those): this shard's table, read now. One range answers (answer()), so its
        // end bounds them; beyond it the list would only be longer.
        if (Partition* p = ss.find(tps[i])) {
          slot.aborted = p->producers.txns().aborted_in(fp.fetch_offset, *r->next_offset);
        }
      }
      // Whole batches, contiguous in one segment file: the first range holding a record. The
      // ranges before it hold only batches compaction emptied (a segment of them each); a
      // client reads on from the batches it gets, as past segments Kafka's cleaner emptied,
      // while an answer of empty batches only stops kafka-python 2.0.2's consumer for good
      // and gives Fetch v0-3 nothing to convert.
      const log::FileRange& range = r->answer();
      const int8_t magic = fetch_magic(req->header.api_version);
      if (magic >= 0) {
        down_convert_range_async(
            *ss.ring, range, magic, fp.fetch_offset, static_cast<size_t>(std::max(1, limit)),
            [self = shared_from_this(), i, countdown](
                ErrorCode e, std::optional<std::vector<std::byte>> out, int64_t messages) {
              FetchSlot& s = self->slots[i];
              s.error = e;
              s.legacy = std::move(out);
              s.records = messages;
              countdown->done();
            });
        return;
      }
      slot.range = range;
    }
    countdown->done();
  }

  // On home, once every partition was read.
  void evaluate(bool final_attempt) {
    reading = false;
    if (answered) return;
    int64_t total = 0;
    bool any_error = false;
    for (const auto& s : slots) {
      total += static_cast<int64_t>(s.size());
      if (s.error != ErrorCode::kNone) any_error = true;
    }
    const bool timed_out = std::chrono::steady_clock::now() >= deadline;
    if (total >= body.min_bytes || any_error || final_attempt || timed_out ||
        body.max_wait_ms <= 0 || broker->stopping_.load()) {
      answer();
    } else {
      park();
    }
  }

  void answer() {
    answered = true;
    timer->cancel();
    kafka::FetchResponse resp;
    std::vector<std::shared_ptr<const void>> keep;
    int64_t budget = body.max_bytes;
    bool first_data = true;
    size_t k = 0;
    // What the answer sends, counted on the home shard's metrics once it goes (a throttled
    // answer sends none of it).
    struct Sent {
      const std::string* topic;
      int32_t partition;
      size_t bytes;
      int64_t records;
    };
    std::vector<Sent> sent;
    for (const auto& t : body.topics) {
      kafka::FetchResponse::FetchableTopicResponse rt;
      rt.topic = t.topic;
      for (const auto& p : t.partitions) {
        const FetchSlot& s = slots[k++];
        kafka::FetchResponse::PartitionData pd;
        pd.partition_index = p.partition;
        pd.error_code = code(s.error);
        pd.high_watermark = s.high_watermark;
        pd.last_stable_offset = s.last_stable_offset;
        pd.log_start_offset = s.log_start_offset;
        pd.aborted_transactions.emplace();
        for (const AbortedTxn& a : s.aborted) {
          pd.aborted_transactions->push_back({a.producer_id, a.first_offset});
        }
        pd.records = kafka::Records::borrowed({});  // never null (librdkafka needs a size)
        // The first batch with data always goes (so a consumer can progress); after that,
        // whole ranges while the response's byte budget holds.
        const size_t size = s.size();
        if (size > 0 && (first_data || static_cast<int64_t>(size) <= budget)) {
          if (s.legacy) {
            pd.records = kafka::Records::borrowed(*s.legacy);  // copied by the encoder
          } else {
            pd.records =
                kafka::Records::external({s.range->fd(), static_cast<int64_t>(s.range->position),
                                          static_cast<uint32_t>(s.range->length), 0});
            keep.push_back(s.range->file);
          }
          budget -= static_cast<int64_t>(size);
          first_data = false;
          sent.push_back({&t.topic, p.partition, size, s.records});
        }
        if (s.error != ErrorCode::kNone) req->errored = true;
        rt.partitions.push_back(std::move(pd));
      }
      resp.responses.push_back(std::move(rt));
    }
    if (!broker->quotas_.any()) {
      Broker::note_throttle(*req, false, -1);
    } else {
      // Client quotas: the answer's bytes count against consumer_byte_rate. Over it, as Kafka
      // does: the bytes are taken back and the answer goes without partitions, with the
      // throttle time (the client fetches again once it is over). An answer larger than the
      // quota allows in a window (one batch bigger than that: the fetch's max bytes were
      // already cut to it) would never go that way: it goes, and the client is throttled.
      const auto bytes = static_cast<double>(body.max_bytes - budget);
      const std::string user = Broker::quota_user(*req);
      // Into the session (answer() runs on the connection's shard: a connection with a request
      // owed does not move), so a request the client sent ahead waits from now on.
      const int32_t throttle = Broker::note_throttle(
          *req, true,
          broker->quotas_.record(QuotaManager::Kind::kFetch, user, req->header.client_id, bytes));
      if (throttle > 0 && bytes <= broker->quotas_.window_bytes(QuotaManager::Kind::kFetch, user,
                                                                req->header.client_id)) {
        broker->quotas_.unrecord(QuotaManager::Kind::kFetch, user, req->header.client_id, bytes);
        kafka::FetchResponse throttled;
        throttled.throttle_time_ms = throttle;
        Broker::respond(*req, throttled);
        return;
      }
      resp.throttle_time_ms = throttle;
    }
    if (ShardMetrics* metrics = this_shard_metrics()) {  // home's: answer() runs there
      for (const Sent& x : sent) {
        auto& traffic = metrics->partition(*x.topic, x.partition);
        traffic.bytes_out += x.bytes;
        traffic.records_out += static_cast<uint64_t>(x.records);
      }
    }
    Broker::respond(*req, resp, std::move(keep));
  }

  // Waits for new data on any partition, or for the deadline.
  void park() {
    if (parked) return;  // the waiters and timer from the first park are still armed
    parked = true;
    auto self = shared_from_this();
    timer->expires_at(deadline);
    timer->async_wait([self](boost::system::error_code ec) {
      if (!ec) self->read(true);
    });
    std::weak_ptr<FetchOp> weak = self;
    for (size_t i = 0; i < tps.size(); ++i) {
      ShardState& ss = broker->shard_of(tps[i]);
      const int64_t seen = slots[i].high_watermark;
      Shard* home_shard = home;
      ss.shard.post([&ss, tp = tps[i], seen, weak, home_shard, b = broker] {
        Partition* p = ss.find(tp);
        if (!p || weak.expired()) return;
        auto wake = [weak, home_shard] {
          home_shard->post([weak] {
            if (auto op = weak.lock()) {
              op->parked = false;
              op->read(false);
            }
          });
        };
        if (p->high_watermark() > seen || b->stopping_.load()) {
          wake();
          return;
        }
        // One waiter per fetch and partition: a re-park replaces the fetch's earlier one (a
        // fetch woken by one partition parks again on all of them).
        std::erase_if(p->waiters, [&weak](const FetchWaiter& w) {
          return w.token.expired() || (!w.token.owner_before(weak) && !weak.owner_before(w.token));
        });
        p->waiters.push_back({weak, seen, wake});
      });
    }
  }
};

void Broker::handle_fetch(std::shared_ptr<Request> req, kafka::FetchRequest body) {
  // Fetch sessions are declined: a request naming a session we never issued gets error 70.
  if (body.session_id != 0) {
    kafka::FetchResponse resp;
    resp.error_code = code(ErrorCode::kFetchSessionIdNotFound);
    respond(*req, resp);
    return;
  }
  auto op = std::make_shared<FetchOp>();
  op->broker = this;
  op->req = req;
  op->home = &shards_[req->conn.shard]->shard;
  op->body = std::move(body);
  if (quotas_.any()) {
    // Client quotas, as Kafka: no answer larger than the consumer's quota allows in a window.
    const double most =
        quotas_.window_bytes(QuotaManager::Kind::kFetch, quota_user(*req), req->header.client_id);
    if (most < static_cast<double>(op->body.max_bytes)) {
      op->body.max_bytes = static_cast<int32_t>(std::max(1.0, most));
    }
  }
  op->timer = std::make_unique<asio::steady_timer>(op->home->context());
  // An empty answer goes 1 ms after max_wait: clients truncate the time left to their own
  // deadline to whole milliseconds when they set max_wait (kafka-go), so an answer right at
  // max_wait can reach them before that deadline, and they take it for one that did not wait
  // (kafka-go's own test of a read deadline on an empty partition fails 3 times in 5).
  const int64_t wait_ms = op->body.max_wait_ms > 0 ? int64_t{op->body.max_wait_ms} + 1 : 0;
  op->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (const auto& t : op->body.topics) {
    const bool may_read = allowed(*req, Operation::kRead, ResourceType::kTopic, t.topic);
    for (const auto& p : t.partitions) {
      op->tps.push_back({t.topic, p.partition});
      op->parts.push_back(&p);
      op->denied.push_back(may_read ? 0 : 1);
      const auto shard_id = static_cast<int32_t>(shard_of(op->tps.back()).shard.id());
      req->affinity =
          req->affinity == Reply::kNoShard || req->affinity == shard_id ? shard_id : Reply::kSpread;
    }
  }
  op->home->post([op] { op->read(false); });
}

// DeleteRecords: moves each partition's log start (Kafka's low watermark) up to the given
// offset (-1: the high watermark); segments wholly below it are deleted. Offsets below the new
// start are then out of range for Fetch, as after retention.
// Fans a per-partition request out: `work(shard, partition, request entry, response slot)`
// runs on each partition's shard, and the response (whose topics mirror the request's) is
// sent once every partition is done.
namespace {

// Per-partition requests name their fields `name`/`partition_index`, except OffsetForLeaderEpoch
// (`topic`/`partition`).
template <class T>
auto& wire_topic(T& t) {
  if constexpr (requires { t.name; }) {
    return t.name;
  } else {
    return t.topic;
  }
}
template <class T>
auto& wire_partition(T& p) {
  if constexpr (requires { p.partition_index; }) {
    return p.partition_index;
  } else {
    return p.partition;
  }
}

}  // namespace

template <class Response, class Topics, class Work>
void Broker::per_partition(std::shared_ptr<Request> req, const Topics& topics, Operation op,
                           Work work) {
  auto resp = std::make_shared<Response>();
  size_t total = 0;
  for (const auto& t : topics) total += t.partitions.size();
  auto countdown = std::make_shared<Countdown>(total + 1, [req, resp] { respond(*req, *resp); });
  resp->topics.resize(topics.size());
  for (size_t ti = 0; ti < topics.size(); ++ti) {
    const auto& t = topics[ti];
    wire_topic(resp->topics[ti]) = wire_topic(t);
    resp->topics[ti].partitions.resize(t.partitions.size());
    const bool may = allowed(*req, op, ResourceType::kTopic, wire_topic(t));
    for (size_t pi = 0; pi < t.partitions.size(); ++pi) {
      const auto& entry = t.partitions[pi];
      auto* slot = &resp->topics[ti].partitions[pi];
      wire_partition(*slot) = wire_partition(entry);
      if (!may) {
        slot->error_code = code(ErrorCode::kTopicAuthorizationFailed);
        countdown->done();
        continue;
      }
      TopicPartition tp{wire_topic(t), wire_partition(entry)};
      ShardState& ss = shard_of(tp);
      ss.shard.post([&ss, tp, entry, slot, countdown, work] {
        // Work may answer later: it then takes a `done` to call once its slot is filled.
        using Done = std::function<void()>;
        if constexpr (std::is_invocable_v<const Work&, ShardState&, const TopicPartition&,
                                          decltype(entry)&, decltype(*slot), Done>) {
          work(ss, tp, entry, *slot, Done([countdown] { countdown->done(); }));
        } else {
          work(ss, tp, entry, *slot);
          countdown->done();
        }
      });
    }
  }
  countdown->done();
}

void Broker::handle_offset_for_leader_epoch(std::shared_ptr<Request> req,
                                            const kafka::OffsetForLeaderEpochRequest& body) {
  per_partition<kafka::OffsetForLeaderEpochResponse>(
      req, body.topics, Operation::kDescribe,
      [this](ShardState& ss, const TopicPartition& tp, const auto& entry, auto& slot) {
        Partition* p = ss.find(tp);
        if (!p) {
          slot.error_code = code(missing_partition_error(tp));
        } else if (ErrorCode e = leader_check(*p, entry.current_leader_epoch);
                   e != ErrorCode::kNone) {
          slot.error_code = code(e);
        } else if (p->replica) {
          // The largest epoch <= the one asked for, and where the next epoch starts (or the
          // log end); a consumer's answer never reaches past the high watermark.
          auto [epoch, end] = p->replica->end_offset_for_epoch(entry.leader_epoch);
          slot.leader_epoch = epoch;
          slot.end_offset = epoch < 0 ? -1 : std::min(end, p->high_watermark());
        }
      });
}

// DescribeProducers (KIP-664): the producers a partition's leader keeps state for, with the
// first offset of each one's open transaction (what `kafka-transactions.sh describe-producers`
// and find-hanging read). READ on the topic, as Kafka.
void Broker::handle_describe_producers(std::shared_ptr<Request> req,
                                       const kafka::DescribeProducersRequest& body) {
  struct Entry {
    int32_t partition_index = 0;
  };
  struct Topic {
    std::string name;
    std::vector<Entry> partitions;
  };
  std::vector<Topic> topics;
  for (const auto& t : body.topics) {
    auto& out = topics.emplace_back();
    out.name = t.name;
    for (int32_t p : t.partition_indexes) out.partitions.push_back({p});
  }
  per_partition<kafka::DescribeProducersResponse>(
      req, topics, Operation::kRead,
      [this](ShardState& ss, const TopicPartition& tp, const Entry&, auto& slot) {
        Partition* p = ss.find(tp);
        if (!p) {
          slot.error_code = code(missing_partition_error(tp));
        } else if (ErrorCode e = leader_check(*p, -1); e != ErrorCode::kNone) {
          slot.error_code = code(e);
        } else {
          const TxnTable& txns = p->producers.txns();
          for (const auto& [pid, entry] : p->producers.producers()) {
            auto& out = slot.active_producers.emplace_back();
            out.producer_id = pid;
            out.producer_epoch = entry.epoch;
            out.last_sequence = entry.last_sequence;
            out.last_timestamp = entry.last_timestamp;
            out.coordinator_epoch = txns.coordinator_epoch(pid);
            out.current_txn_start_offset = txns.open_first_offset(pid);
          }
        }
      });
}

// WriteTxnMarkers, from a transaction coordinator: each named partition's leader appends a
// marker (a control batch) ending the producer's transaction there, committed or aborted,
// and answers once it is committed (acks=all), as Kafka's ReplicaManager does for markers.
void Broker::handle_write_txn_markers(std::shared_ptr<Request> req,
                                      const kafka::WriteTxnMarkersRequest& body) {
  const bool may =
      allowed(*req, Operation::kClusterAction, ResourceType::kCluster, cluster::acl::kClusterName);
  write_txn_markers(std::make_shared<kafka::WriteTxnMarkersRequest>(body), may,
                    [req](const kafka::WriteTxnMarkersResponse& resp) { respond(*req, resp); });
}

void Broker::write_txn_markers(std::shared_ptr<const kafka::WriteTxnMarkersRequest> body, bool may,
                               std::function<void(const kafka::WriteTxnMarkersResponse&)> done) {
  auto resp = std::make_shared<kafka::WriteTxnMarkersResponse>();
  size_t total = 0;
  for (const auto& m : body->markers) {
    for (const auto& t : m.topics) total += t.partition_indexes.size();
  }
  auto countdown =
      std::make_shared<Countdown>(total + 1, [body, resp, done = std::move(done)] { done(*resp); });
  auto snap = registry_->snapshot();
  resp->markers.resize(body->markers.size());
  for (size_t mi = 0; mi < body->markers.size(); ++mi) {
    const auto& m = body->markers[mi];
    auto& rm = resp->markers[mi];
    rm.producer_id = m.producer_id;
    rm.topics.resize(m.topics.size());
    for (size_t ti = 0; ti < m.topics.size(); ++ti) {
      const auto& t = m.topics[ti];
      auto& rt = rm.topics[ti];
      rt.name = t.name;
      rt.partitions.resize(t.partition_indexes.size());
      const TopicInfo* topic = snap->find(t.name);
      for (size_t pi = 0; pi < t.partition_indexes.size(); ++pi) {
        const int32_t index = t.partition_indexes[pi];
        auto* slot = &rt.partitions[pi];
        slot->partition_index = index;
        if (!may) {
          slot->error_code = code(ErrorCode::kClusterAuthorizationFailed);
          countdown->done();
          continue;
        }
        if (!topic || index < 0 || index >= topic->partitions || m.producer_id < 0) {
          slot->error_code = code(ErrorCode::kUnknownTopicOrPartition);
          countdown->done();
          continue;
        }
        TopicPartition tp{t.name, index};
        ShardState& ss = shard_of(tp);
        ss.shard.post([this, &ss, tp, slot, countdown, pid = m.producer_id,
                       epoch = m.producer_epoch,
                       marker = kafka::EndTxnMarker{.commit = m.transaction_result,
                                                    .coordinator_epoch = m.coordinator_epoch}] {
          auto finish = [&](ErrorCode e) {
            slot->error_code = code(e);
            countdown->done();
          };
          Partition* p = ss.find(tp);
          if (!p) return finish(missing_partition_error(tp));
          if (ErrorCode e = leader_check(*p, -1); e != ErrorCode::kNone) return finish(e);
          if (ErrorCode e = p->producers.check_marker(pid, epoch, marker.coordinator_epoch);
              e != ErrorCode::kNone) {
            spdlog::info("{}-{}: transaction marker of producer {} refused: {}", tp.topic,
                         tp.partition, pid, kafka::error_name(e));
            return finish(e);
          }
          auto bytes = std::make_shared<std::vector<std::byte>>(
              kafka::end_txn_marker_batch(pid, epoch, marker, now_ms()));
          MutableBytes batch(bytes->data(), bytes->size());
          // On __consumer_offsets the marker also settles the offsets the transaction
          // committed (TxnOffsetCommit), once it is committed itself.
          const bool offsets = tp.topic == GroupCoordinator::kTopic;
          const ErrorCode proposed = p->replica->produce(
              batch, -1,
              [this, slot, countdown, offsets, partition = tp.partition, pid,
               commit = marker.commit](ErrorCode e, int64_t) {
                if (e == ErrorCode::kNone && offsets &&
                    groups_ready_.load(std::memory_order_acquire)) {
                  groups_->end_txn(partition, pid, commit);
                }
                slot->error_code = code(e);
                countdown->done();
              },
              /*timeout_ms=*/30000, bytes);
          if (proposed != ErrorCode::kNone) return finish(proposed);
          p->producers.record_batch(*kafka::RecordBatchView::parse(batch));
          ss.ring->submit();
        });
      }
    }
  }
  countdown->done();
}

void Broker::handle_delete_records(std::shared_ptr<Request> req,
                                   const kafka::DeleteRecordsRequest& body) {
  per_partition<kafka::DeleteRecordsResponse>(
      req, body.topics, Operation::kDelete,
      [this](ShardState& ss, const TopicPartition& tp, const auto& dp, auto& slot,
             std::function<void()> done) {
        slot.low_watermark = -1;
        Partition* p = ss.find(tp);
        if (!p) {
          slot.error_code = code(missing_partition_error(tp));
          return done();
        }
        if (ErrorCode e = leader_check(*p, -1); e != ErrorCode::kNone) {
          slot.error_code = code(e);
          return done();
        }
        const int64_t hwm = p->high_watermark();
        const int64_t to = dp.offset == -1 ? hwm : dp.offset;
        if (to < 0 || to > hwm) {
          slot.error_code = code(ErrorCode::kOffsetOutOfRange);
          return done();
        }
        if (auto r = p->log->advance_log_start(Offset(to)); !r) {
          slot.error_code = code(to_kafka(r.error().code));
          return done();
        }
        slot.low_watermark = *p->log->log_start_offset();
        spdlog::info("{}-{}: records before offset {} deleted (DeleteRecords)", tp.topic,
                     tp.partition, slot.low_watermark);
        if (!p->replica) return done();
        p->replica->log_start_moved();
        if (p->replica->voters().size() < 2) return done();
        // The other replicas move their log start when the control entry commits; the answer
        // waits for that, so a new leader never serves what was deleted.
        auto* out = &slot;
        ErrorCode e = p->replica->replicate_log_start(to, [out, done](ErrorCode e) {
          if (e != ErrorCode::kNone) out->error_code = code(e);
          done();
        });
        if (e != ErrorCode::kNone) {
          slot.error_code = code(e);
          done();
        }
      });
}

void Broker::handle_list_offsets(std::shared_ptr<Request> req,
                                 const kafka::ListOffsetsRequest& body) {
  const int16_t version = req->header.api_version;
  const int8_t isolation = body.isolation_level;
  per_partition<kafka::ListOffsetsResponse>(
      req, body.topics, Operation::kDescribe,
      [this, version, isolation](ShardState& ss, const TopicPartition& tp, const auto& lp,
                                 auto& slot, std::function<void()> done) {
        Partition* p = ss.find(tp);
        if (!p) {
          slot.error_code = code(missing_partition_error(tp));
          return done();
        }
        if (ErrorCode e = leader_check(*p, lp.current_leader_epoch); e != ErrorCode::kNone) {
          slot.error_code = code(e);
          return done();
        }
        slot.leader_epoch = p->replica ? p->replica->leader_epoch() : 0;
        const int64_t hwm = p->high_watermark();
        auto answer = [out = &slot, version, max = lp.max_num_offsets](int64_t offset,
                                                                      int64_t timestamp) {
          out->offset = offset;
          out->timestamp = timestamp;
          if (version == 0 && max > 0 && offset >= 0) out->old_style_offsets.push_back(offset);
        };
        if (lp.timestamp == -2) {
          answer(*p->log->log_start_offset(), -1);
          return done();
        }
        if (lp.timestamp == -1) {
          // read_committed: the last stable offset (Kafka's ListOffsets v2+).
          answer(isolation == 1 ? p->producers.txns().last_stable_offset(hwm) : hwm, -1);
          return done();
        }
        // By time: the log's indexes and the batch found may have to come through the ring.
        p->log->offset_for_timestamp_async(
            lp.timestamp,
            [out = &slot, answer, hwm,
             done](log::LogResult<std::optional<log::PartitionLog::TimedOffset>> found) {
              if (!found) {
                out->error_code = code(to_kafka(found.error().code));
                answer(-1, -1);
              } else if (*found && *(*found)->offset < hwm) {
                answer(*(*found)->offset, (*found)->timestamp);
              } else {
                answer(-1, -1);
              }
              done();
            });
      });
}

void Broker::handle_init_producer_id(std::shared_ptr<Request> req,
                                     const kafka::InitProducerIdRequest& body) {
  kafka::InitProducerIdResponse resp;
  if (body.transactional_id && !body.transactional_id->empty()) {
    handle_init_txn_producer_id(req, body);  // the transaction coordinator (broker_txn.cc)
    return;
  }
  if ((body.producer_id == -1) != (body.producer_epoch == -1)) {
    // KafkaApis: an id without an epoch, or an epoch without an id.
    resp.error_code = code(ErrorCode::kInvalidRequest);
    respond(*req, resp);
    return;
  }
  // Without a transactional id Kafka always answers with a fresh id at epoch 0, also when an
  // idempotent producer asks to bump its epoch (KIP-360): a claimed id and epoch are never
  // handed back, so no client can take over (or fence) another producer's id this way.
  auto id = next_producer_id();
  if (!id) {
    resp.error_code = code(id.error().code);
  } else {
    resp.producer_id = *id;
    resp.producer_epoch = 0;
  }
  respond(*req, resp);
}

}  // namespace sluice::broker
