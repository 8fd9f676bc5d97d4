#include "producer/producer.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "client/client.h"
#include "client/properties.h"
#include "common/json.h"
#include "partitioner/key_partitioner.h"
#include "protocol/compression.h"
#include "protocol/error_codes.h"
#include "protocol/record_batch.h"

namespace sluice {

using client::Errc;
using client::make_error;
using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;

namespace {

// Per-record bookkeeping: what the buffer counts for it beyond key, value and headers.
constexpr int64_t kRecordOverheadBytes = 64;

struct Completion {
  DeliveryCallback callback;
  std::shared_ptr<std::promise<RecordMetadata>> promise;
  int64_t timestamp_ms = 0;
};

struct Batch {
  std::string topic;
  int32_t partition = 0;
  std::unique_ptr<kafka::RecordBatchBuilder> builder;  // while open
  std::vector<std::byte> bytes;                        // once built
  std::vector<Completion> completions;
  int32_t base_sequence = -1;
  int64_t memory_bytes = 0;
  int64_t payload_bytes = 0;  // keys, values and headers
  Clock::time_point created;
  int attempts = 0;
};
using BatchPtr = std::shared_ptr<Batch>;

struct PartitionState {
  BatchPtr open;
  std::deque<BatchPtr> ready;     // closed, waiting to be sent (retries at the front)
  std::deque<BatchPtr> inflight;  // sent, ascending sequence
  std::vector<BatchPtr> to_retry;
  bool retrying = false;
  int32_t next_sequence = 0;
  Clock::time_point not_before{};  // retry backoff
};

struct TopicState {
  int32_t partition_count = 0;
  int32_t sticky = -1;
};

int64_t record_bytes(const ProducerRecord& r) {
  int64_t n = kRecordOverheadBytes;
  if (r.key) n += static_cast<int64_t>(r.key->size());
  if (r.value) n += static_cast<int64_t>(r.value->size());
  for (const auto& h : r.headers)
    n += static_cast<int64_t>(h.key.size() + (h.value ? h.value->size() : 0));
  return n;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Producer::Impl {
  ProducerConfig config;
  kafka::Compression compression = kafka::Compression::kNone;
  std::unique_ptr<client::Client> client;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;

  std::mutex mu;               // the accumulator: taken by send() and by the sender
  std::condition_variable cv;  // buffer space freed, records completed
  std::map<std::pair<std::string, int32_t>, PartitionState> partitions;
  std::map<std::string, TopicState> topics;
  int64_t buffer_used = 0;
  int64_t outstanding = 0;  // records queued and not yet completed
  int flushing = 0;
  bool closed = false;
  // For the stats (under `mu`).
  int64_t msgs_sent = 0;  // acknowledged (or written, with acks=0)
  int64_t msg_bytes_sent = 0;
  int64_t msgs_failed = 0;
  int64_t batch_retries = 0;
  std::mt19937 rng{std::random_device{}()};

  std::atomic<bool> sender_scheduled{false};
  std::atomic<bool> stopping{false};          // close() began tearing down the client
  std::unique_ptr<asio::steady_timer> timer;  // I/O thread only
  Clock::time_point timer_at = Clock::time_point::max();
  bool metadata_refresh_pending = false;  // I/O thread only

  // Transactions (transactional_id set). The calls that change the state are serialized by
  // txn_mu (taken before mu); the state and the partitions added are read under mu.
  enum class TxnState { kUninitialized, kReady, kInTransaction, kFatal };
  std::mutex txn_mu;
  TxnState txn_state = TxnState::kUninitialized;
  Error txn_fatal;                                      // why kFatal
  std::set<std::pair<std::string, int32_t>> txn_parts;  // added to the open transaction
  bool txn_record_failed = false;  // a record of the open transaction failed: abort only
  bool txn_offsets_sent = false;   // the open transaction holds a group's offsets
  int32_t txn_coordinator = -1;    // under txn_mu

  // After a failed create() (close() already did this otherwise): stop the I/O thread, whose
  // stats timer reads `mu` and the counters, before those members go.
  ~Impl() {
    timer.reset();
    client.reset();
  }

  bool idempotent() const { return config.enable_idempotence && config.acks == -1; }
  bool transactional() const { return !config.transactional_id.empty(); }

  // ---- transactions ----------------------------------------------------------------------

  static bool fencing(int16_t code) {
    const auto e = static_cast<kafka::ErrorCode>(code);
    return e == kafka::ErrorCode::kProducerFenced || e == kafka::ErrorCode::kInvalidProducerEpoch ||
           e == kafka::ErrorCode::kTransactionalIdAuthorizationFailed ||
           e == kafka::ErrorCode::kInvalidProducerIdMapping;
  }

  // The error of a transaction call that failed with `code`; a fencing one makes the
  // producer fatal (under txn_mu).
  Error txn_error(int16_t code, const std::string& what) {
    Error e = client::kafka_error(code, what);
    if (fencing(code)) {
      std::lock_guard lock(mu);
      txn_state = TxnState::kFatal;
      txn_fatal = e;
      txn_fatal.message += " (another producer with transactional_id '" + config.transactional_id +
                           "' started, or a transaction passed its timeout: close this producer)";
      return txn_fatal;
    }
    return e;
  }

  // kNone if the producer is in `want` (under mu), else why not.
  Status txn_check(TxnState want, const char* call) {
    if (!transactional()) {
      return unexpected(make_error(Errc::kInvalidState,
                                   std::string(call) + ": the producer has no transactional_id"));
    }
    if (txn_state == TxnState::kFatal) return unexpected(txn_fatal);
    if (txn_state == want) return {};
    static const char* const names[] = {"before init_transactions()", "with no transaction open",
                                        "inside a transaction", "fenced"};
    return unexpected(make_error(
        Errc::kInvalidState, std::string(call) + " called " + names[static_cast<int>(txn_state)]));
  }

  // FindCoordinator for `key` (key_type 1: a transactional id; 0: a group), until `deadline`.
  Result<int32_t> find_coordinator(const std::string& key, int8_t key_type,
                                   Clock::time_point deadline) {
    while (true) {
      kafka::FindCoordinatorRequest req;
      req.key = key;
      req.key_type = key_type;
      auto r = client->call_as<kafka::FindCoordinatorResponse>(client::kAnyBroker, req);
      Error e;
      if (!r) {
        e = r.error();
      } else if (r->error_code == 0) {
        auto md = client->metadata({}, false);
        if (md && !(*md)->broker(r->node_id)) (void)client->metadata({}, true);
        return r->node_id;
      } else {
        e = client::kafka_error(r->error_code, "FindCoordinator " + key);
      }
      if (!client::retriable(e) || Clock::now() >= deadline) return unexpected(e);
      std::this_thread::sleep_for(std::chrono::milliseconds(config.retry_backoff_ms));
    }
  }

  // A request to a coordinator (the transaction coordinator, or a group's), retried while it
  // moves or is busy (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
  // CONCURRENT_TRANSACTIONS, network errors) until `deadline`. `error_of(response)`: the
  // code that decides.
  template <class Resp, class Req, class ErrorOf>
  Result<Resp> coordinator_call(const std::string& key, int8_t key_type, const Req& req,
                                ErrorOf error_of, Clock::time_point deadline) {
    int32_t node = key_type == 1 ? txn_coordinator : -1;
    auto backoff = std::chrono::milliseconds(20);
    while (true) {
      if (node < 0) {
        auto found = find_coordinator(key, key_type, deadline);
        if (!found) return unexpected(found.error());
        node = *found;
        if (key_type == 1) txn_coordinator = node;
      }
      auto r = client->call_as<Resp>(node, req);
      int16_t code = 0;
      if (!r) {
        if (!client::retriable(r.error())) return unexpected(r.error());
        node = -1;
      } else {
        code = error_of(*r);
        using E = kafka::ErrorCode;
        switch (static_cast<E>(code)) {
          case E::kNotCoordinator:
          case E::kCoordinatorNotAvailable:
            node = -1;
            break;
          case E::kCoordinatorLoadInProgress:
          case E::kConcurrentTransactions:
            break;
          default:
            return r;
        }
      }
      if (key_type == 1 && node < 0) txn_coordinator = -1;
      if (Clock::now() >= deadline) {
        return unexpected(make_error(
            Errc::kTimeout,
            "the transaction coordinator did not answer in time" +
                (code != 0 ? " (last: " + client::error_name(code) + ")" : std::string())));
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(config.retry_backoff_ms * 5));
    }
  }

  // Adds a partition to the open transaction (AddPartitionsToTxn) before its first batch.
  Status add_to_transaction(const std::string& topic, int32_t partition) {
    std::lock_guard txn(txn_mu);
    int64_t pid;
    int16_t epoch;
    {
      std::lock_guard lock(mu);
      if (auto s = txn_check(TxnState::kInTransaction, "send()"); !s) return s;
      if (txn_parts.count({topic, partition})) return {};
      pid = producer_id;
      epoch = producer_epoch;
    }
    kafka::AddPartitionsToTxnRequest req;
    req.v3_and_below_transactional_id = config.transactional_id;
    req.v3_and_below_producer_id = pid;
    req.v3_and_below_producer_epoch = epoch;
    req.v3_and_below_topics.push_back({topic, {partition}});
    auto r = coordinator_call<kafka::AddPartitionsToTxnResponse>(
        config.transactional_id, 1, req,
        [](const kafka::AddPartitionsToTxnResponse& resp) -> int16_t {
          for (const auto& t : resp.results_by_topic_v3_and_below) {
            for (const auto& p : t.results_by_partition) {
              if (p.partition_error_code != 0) return p.partition_error_code;
            }
          }
          return 0;
        },
        Clock::now() + std::chrono::milliseconds(config.max_block_ms));
    if (!r) return unexpected(r.error());
    for (const auto& t : r->results_by_topic_v3_and_below) {
      for (const auto& p : t.results_by_partition) {
        if (p.partition_error_code != 0) {
          return unexpected(txn_error(p.partition_error_code, "AddPartitionsToTxn " + topic + "[" +
                                                                  std::to_string(partition) + "]"));
        }
      }
    }
    std::lock_guard lock(mu);
    txn_parts.emplace(topic, partition);
    return {};
  }

  // EndTxn (after the transaction's records were flushed).
  Status end_transaction(bool commit, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::lock_guard txn(txn_mu);
    int64_t pid;
    int16_t epoch;
    bool any;
    {
      std::lock_guard lock(mu);
      const char* call = commit ? "commit_transaction()" : "abort_transaction()";
      if (auto s = txn_check(TxnState::kInTransaction, call); !s) return s;
      if (commit && txn_record_failed) {
        return unexpected(make_error(Errc::kInvalidState,
                                     "commit_transaction(): a record of the transaction failed; "
                                     "abort_transaction() instead"));
      }
      pid = producer_id;
      epoch = producer_epoch;
      any = !txn_parts.empty() || txn_offsets_sent;
    }
    if (any) {  // a transaction that added nothing has nothing to end at the broker
      kafka::EndTxnRequest req;
      req.transactional_id = config.transactional_id;
      req.producer_id = pid;
      req.producer_epoch = epoch;
      req.committed = commit;
      auto r = coordinator_call<kafka::EndTxnResponse>(
          config.transactional_id, 1, req,
          [](const kafka::EndTxnResponse& resp) { return resp.error_code; }, deadline);
      if (!r) return unexpected(r.error());
      if (r->error_code != 0) return unexpected(txn_error(r->error_code, "EndTxn"));
    }
    std::lock_guard lock(mu);
    txn_state = TxnState::kReady;
    txn_parts.clear();
    txn_record_failed = false;
    txn_offsets_sent = false;
    return {};
  }

  // The producer's part of the stats (I/O thread).
  void stats_fields(JsonWriter& w) {
    std::lock_guard lock(mu);
    int64_t inflight = 0;
    for (const auto& [tp, ps] : partitions) inflight += static_cast<int64_t>(ps.inflight.size());
    w.field("msgs_queued", outstanding).field("msg_bytes_queued", buffer_used);
    w.field("batches_inflight", inflight);
    w.field("msgs_sent", msgs_sent).field("msg_bytes_sent", msg_bytes_sent);
    w.field("msgs_failed", msgs_failed).field("batch_retries", batch_retries);
  }

  Result<int32_t> partition_count(const std::string& topic, bool refresh) {
    auto md = client->metadata({topic}, refresh, false, /*auto_create=*/true);
    if (!md) return unexpected(md.error());
    const client::TopicInfo* t = (*md)->topic(topic);
    if (!t || t->error_code != 0 || t->partitions.empty()) {
      int16_t code =
          t ? t->error_code : static_cast<int16_t>(kafka::ErrorCode::kUnknownTopicOrPartition);
      return unexpected(Error{
          code, "topic '" + topic +
                    "': " + std::string(kafka::error_name(static_cast<kafka::ErrorCode>(code))) +
                    " (create it first, e.g. `sluice topic create " + topic + "`)"});
    }
    return static_cast<int32_t>(t->partitions.size());
  }

  // Called with `mu` held; may drop it while fetching metadata.
  Result<int32_t> choose_partition(std::unique_lock<std::mutex>& lock, const ProducerRecord& r) {
    auto it = topics.find(r.topic);
    if (it == topics.end()) {
      lock.unlock();
      auto n = partition_count(r.topic, false);
      lock.lock();
      if (!n) return n;
      it = topics.emplace(r.topic, TopicState{*n, -1}).first;
    }
    TopicState& ts = it->second;
    if (r.partition) {
      if (*r.partition < 0 || *r.partition >= ts.partition_count) {
        return unexpected(make_error(Errc::kInvalidArgument,
                                     "partition " + std::to_string(*r.partition) + " of topic '" +
                                         r.topic + "' does not exist (it has " +
                                         std::to_string(ts.partition_count) + ")"));
      }
      return *r.partition;
    }
    if (r.key) return partitioner::partition_for_key(*r.key, ts.partition_count);
    if (ts.sticky < 0) {
      ts.sticky = std::uniform_int_distribution<int32_t>(0, ts.partition_count - 1)(rng);
    }
    return ts.sticky;
  }

  void close_open_batch(PartitionState& ps, const std::string& topic) {
    SLUICE_ASSERT(ps.open);
    ps.next_sequence += ps.open->builder->record_count();
    ps.ready.push_back(std::move(ps.open));
    ps.open.reset();
    auto t = topics.find(topic);
    if (t != topics.end()) t->second.sticky = -1;  // keyless records move on
  }

  Status enqueue(ProducerRecord record, Completion completion) {
    if (record.topic.empty())
      return unexpected(make_error(Errc::kInvalidArgument, "record has no topic"));
    const int64_t bytes = record_bytes(record);
    if (bytes > config.buffer_memory || bytes > config.batch_size + kRecordOverheadBytes * 2) {
      return unexpected(make_error(
          Errc::kInvalidArgument,
          "record of " + std::to_string(bytes) + " bytes is larger than batch_size/buffer_memory"));
    }
    std::unique_lock lock(mu);
    if (closed) return unexpected(make_error(Errc::kClosed, "producer is closed"));
    if (buffer_used + bytes > config.buffer_memory) {
      if (!config.block_on_buffer_full) {
        return unexpected(make_error(
            Errc::kBufferFull, "producer buffer full (" + std::to_string(config.buffer_memory) +
                                   " bytes): the broker is slower than send(); raise "
                                   "buffer_memory or enable block_on_buffer_full"));
      }
      bool ok = cv.wait_for(lock, std::chrono::milliseconds(config.max_block_ms),
                            [&] { return closed || buffer_used + bytes <= config.buffer_memory; });
      if (closed) return unexpected(make_error(Errc::kClosed, "producer is closed"));
      if (!ok) {
        return unexpected(
            make_error(Errc::kBufferFull, "producer buffer still full after max_block_ms=" +
                                              std::to_string(config.max_block_ms)));
      }
    }
    auto p = choose_partition(lock, record);
    if (!p) return unexpected(p.error());
    const int32_t partition = *p;
    if (transactional()) {
      if (auto s = txn_check(TxnState::kInTransaction, "send()"); !s) return s;
      if (!txn_parts.count({record.topic, partition})) {
        lock.unlock();
        if (auto s = add_to_transaction(record.topic, partition); !s) return s;
        lock.lock();
        if (closed) return unexpected(make_error(Errc::kClosed, "producer is closed"));
      }
    }
    PartitionState& ps = partitions[{record.topic, partition}];
    bool wake = false;
    if (ps.open && ps.open->builder->size_bytes_uncompressed() + static_cast<size_t>(bytes) >
                       static_cast<size_t>(config.batch_size)) {
      close_open_batch(ps, record.topic);
      wake = true;
    }
    if (!ps.open) {
      auto b = std::make_shared<Batch>();
      b->topic = record.topic;
      b->partition = partition;
      b->base_sequence = idempotent() ? ps.next_sequence : -1;
      b->created = Clock::now();
      kafka::RecordBatchBuilder::Options o;
      o.compression = compression;
      o.compression_level = config.compression_level;
      if (idempotent()) {
        o.producer_id = producer_id;
        o.producer_epoch = producer_epoch;
        o.base_sequence = b->base_sequence;
        o.transactional = transactional();
      }
      b->builder = std::make_unique<kafka::RecordBatchBuilder>(o);
      ps.open = std::move(b);
      wake = true;
    }
    completion.timestamp_ms = record.timestamp_ms.value_or(now_ms());
    std::vector<kafka::Header> headers;
    headers.reserve(record.headers.size());
    for (const auto& h : record.headers) {
      headers.push_back({h.key, h.value ? std::optional<Bytes>(as_bytes(*h.value)) : std::nullopt});
    }
    ps.open->builder->append(
        completion.timestamp_ms,
        record.key ? std::optional<Bytes>(as_bytes(*record.key)) : std::nullopt,
        record.value ? std::optional<Bytes>(as_bytes(*record.value)) : std::nullopt, headers);
    ps.open->completions.push_back(std::move(completion));
    ps.open->memory_bytes += bytes;
    ps.open->payload_bytes += bytes - kRecordOverheadBytes;
    buffer_used += bytes;
    ++outstanding;
    if (ps.open->builder->size_bytes_uncompressed() >= static_cast<size_t>(config.batch_size)) {
      close_open_batch(ps, record.topic);
      wake = true;
    }
    lock.unlock();
    if (wake) schedule_sender();
    return {};
  }

  void schedule_sender() {
    if (stopping || sender_scheduled.exchange(true)) return;
    client->post([this] {
      sender_scheduled = false;
      run_sender();
    });
  }

  void arm_timer(Clock::time_point at) {
    if (stopping || at >= timer_at) return;
    timer_at = at;
    timer->expires_at(at);
    timer->async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      timer_at = Clock::time_point::max();
      run_sender();
    });
  }

  void request_metadata_refresh(const std::string& topic) {
    if (stopping || metadata_refresh_pending) return;
    metadata_refresh_pending = true;
    client->refresh_metadata_async({topic}, [this](Result<void>) {
      metadata_refresh_pending = false;
      schedule_sender();
    });
  }

  // I/O thread: closes lingered batches and sends what may be sent.
  void run_sender() {
    if (stopping) return;
    auto md = client->cached_metadata();
    const auto now = Clock::now();
    const auto linger = std::chrono::milliseconds(config.linger_ms);
    std::map<int32_t, std::vector<BatchPtr>> by_node;
    Clock::time_point next_wake = Clock::time_point::max();
    std::string missing_topic;
    {
      std::lock_guard lock(mu);
      // Partitions added to a topic (sluice topic alter -p) are used from the next refresh.
      for (auto& [name, ts] : topics) {
        const client::TopicInfo* ti = md ? md->topic(name) : nullptr;
        if (ti && ti->error_code == 0 && !ti->partitions.empty() &&
            static_cast<int32_t>(ti->partitions.size()) != ts.partition_count) {
          ts.partition_count = static_cast<int32_t>(ti->partitions.size());
          ts.sticky = -1;
        }
      }
      for (auto& [tp, ps] : partitions) {
        if (ps.open) {
          // A lingered batch is closed when it can go: while the partition has batches
          // waiting or max_in_flight requests out, it stays open and takes the records that
          // come meanwhile (as Kafka's accumulator drains a batch only when it is sent).
          // Closing it at once made linger 0 under load a queue of one-record batches, one
          // request each: the queue grew without bound at half the peak rate.
          const bool can_go = ps.ready.empty() && !ps.retrying &&
                              static_cast<int>(ps.inflight.size()) < config.max_in_flight;
          if (flushing > 0 || closed || (can_go && now - ps.open->created >= linger)) {
            close_open_batch(ps, tp.first);
          } else if (can_go) {
            next_wake = std::min(next_wake, ps.open->created + linger);
          }
        }
        if (ps.ready.empty() || ps.retrying) continue;
        if (now < ps.not_before) {
          next_wake = std::min(next_wake, ps.not_before);
          continue;
        }
        if (static_cast<int>(ps.inflight.size()) >= config.max_in_flight) continue;
        int32_t leader = -1;
        const client::TopicInfo* ti = md ? md->topic(tp.first) : nullptr;
        if (ti && tp.second < static_cast<int32_t>(ti->partitions.size())) {
          leader = ti->partitions[tp.second].leader;
        }
        if (leader < 0) {
          missing_topic = tp.first;
          next_wake = std::min(next_wake, now + std::chrono::milliseconds(config.retry_backoff_ms));
          continue;
        }
        BatchPtr b = ps.ready.front();
        ps.ready.pop_front();
        ps.inflight.push_back(b);
        by_node[leader].push_back(std::move(b));
      }
    }
    if (!missing_topic.empty()) request_metadata_refresh(missing_topic);
    for (auto& [node, batches] : by_node) send_request(node, std::move(batches));
    if (next_wake != Clock::time_point::max()) arm_timer(next_wake);
  }

  void send_request(int32_t node, std::vector<BatchPtr> batches) {
    kafka::ProduceRequest req;
    req.acks = static_cast<int16_t>(config.acks);
    req.timeout_ms = config.request_timeout_ms;
    std::vector<BatchPtr> failed;
    for (auto& b : batches) {
      if (b->bytes.empty()) {
        auto built = b->builder->build();
        if (!built) {
          failed.push_back(b);
          continue;
        }
        b->bytes = std::move(*built);
        b->builder.reset();
      }
      ++b->attempts;
      auto* t = &client::entry_for(req.topic_data, &kafka::ProduceRequest::TopicProduceData::name,
                                   b->topic);
      t->partition_data.push_back({b->partition, kafka::Records::borrowed(Bytes(b->bytes))});
    }
    for (auto& b : failed) {
      remove_inflight(b);
      complete(b, -1, make_error(Errc::kInvalidArgument, "could not build the record batch"));
    }
    if (req.topic_data.empty()) return;
    const bool expect = config.acks != 0;
    client->send(
        node, std::move(req),
        [this, batches](Result<client::Response> r) { on_response(batches, std::move(r)); },
        expect);
  }

  void remove_inflight(const BatchPtr& b) {
    std::lock_guard lock(mu);
    auto& ps = partitions[{b->topic, b->partition}];
    auto it = std::find(ps.inflight.begin(), ps.inflight.end(), b);
    if (it != ps.inflight.end()) ps.inflight.erase(it);
  }

  void on_response(const std::vector<BatchPtr>& batches, Result<client::Response> r) {
    if (!r) {
      for (const auto& b : batches) on_batch_result(b, r.error(), -1);
      return schedule_sender();
    }
    if (config.acks == 0) {
      for (const auto& b : batches) on_batch_result(b, Error{}, -1);
      return schedule_sender();
    }
    const auto& resp = std::get<kafka::ProduceResponse>(r->decoded->body);
    for (const auto& b : batches) {
      Error e = make_error(Errc::kProtocol, "no answer for the partition in the Produce response");
      int64_t base = -1;
      for (const auto& t : resp.responses) {
        if (t.name != b->topic) continue;
        for (const auto& p : t.partition_responses) {
          if (p.index != b->partition) continue;
          base = p.base_offset;
          e = p.error_code == 0
                  ? Error{}
                  : client::kafka_error(p.error_code, "produce to " + b->topic + "[" +
                                                          std::to_string(b->partition) + "]");
          if (p.error_code != 0 && p.error_message) e.message += ": " + *p.error_message;
        }
      }
      on_batch_result(b, e, base);
    }
    schedule_sender();
  }

  void on_batch_result(const BatchPtr& b, const Error& e, int64_t base_offset) {
    const bool retry =
        e.code != 0 &&
        (client::retriable(e) ||
         e.code == static_cast<int>(kafka::ErrorCode::kOutOfOrderSequenceNumber)) &&
        Clock::now() - b->created < std::chrono::milliseconds(config.delivery_timeout_ms) &&
        config.acks != 0;
    bool refresh = false;
    {
      std::lock_guard lock(mu);
      auto& ps = partitions[{b->topic, b->partition}];
      auto it = std::find(ps.inflight.begin(), ps.inflight.end(), b);
      if (it != ps.inflight.end()) ps.inflight.erase(it);
      if (retry) {
        ++batch_retries;
        // Later in-flight batches of the partition will fail too (a sequence gap); resend them
        // all, in sequence order, once every one of them is back.
        ps.to_retry.push_back(b);
        ps.retrying = true;
        refresh = true;
      }
      if (ps.retrying && ps.inflight.empty()) {
        std::sort(ps.to_retry.begin(), ps.to_retry.end(), [](const BatchPtr& x, const BatchPtr& y) {
          return x->base_sequence > y->base_sequence;
        });
        for (auto& rb : ps.to_retry) ps.ready.push_front(rb);
        ps.to_retry.clear();
        ps.retrying = false;
        ps.not_before = Clock::now() + std::chrono::milliseconds(config.retry_backoff_ms);
      }
    }
    if (refresh) request_metadata_refresh(b->topic);
    if (retry) {
      client->log(LogLevel::kNotice, "produce to " + b->topic + "[" + std::to_string(b->partition) +
                                         "] failed (" + e.message + "): retrying");
    }
    if (!retry) complete(b, base_offset, e);
  }

  void complete(const BatchPtr& b, int64_t base_offset, const Error& e) {
    for (size_t i = 0; i < b->completions.size(); ++i) {
      Completion& c = b->completions[i];
      RecordMetadata md{
          b->topic, b->partition,
          (e.code == 0 && base_offset >= 0) ? base_offset + static_cast<int64_t>(i) : -1,
          c.timestamp_ms, e};
      if (c.callback) c.callback(md);
      if (c.promise) c.promise->set_value(std::move(md));
    }
    {
      std::lock_guard lock(mu);
      buffer_used -= b->memory_bytes;
      outstanding -= static_cast<int64_t>(b->completions.size());
      if (e.code == 0) {
        msgs_sent += static_cast<int64_t>(b->completions.size());
        msg_bytes_sent += b->payload_bytes;
      } else {
        msgs_failed += static_cast<int64_t>(b->completions.size());
        txn_record_failed = true;
      }
    }
    cv.notify_all();
  }
};

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Producer>> Producer::create(const ProducerConfig& config) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  auto codec = kafka::parse_compression(config.compression);
  if (!codec) {
    return unexpected(make_error(
        Errc::kInvalidArgument,
        "unknown compression '" + config.compression + "' (none, gzip, snappy, lz4, zstd)"));
  }
  impl->compression = *codec;
  if (config.acks != 0 && config.acks != 1 && config.acks != -1) {
    return unexpected(make_error(Errc::kInvalidArgument, "acks must be 0, 1 or -1 (all)"));
  }
  if (config.log_level < 0 || config.log_level > 7 || config.statistics_interval_ms < 0) {
    return unexpected(make_error(Errc::kInvalidArgument,
                                 "log_level must be 0 to 7 and statistics_interval_ms >= 0"));
  }
  if (config.batch_size <= 0 || config.buffer_memory <= 0 || config.max_in_flight <= 0) {
    return unexpected(make_error(Errc::kInvalidArgument,
                                 "batch_size, buffer_memory and max_in_flight must be positive"));
  }
  client::ClientConfig cc = client::client_config_of(config, "producer");
  if (config.statistics_interval_ms > 0 && config.stats_cb) {
    cc.stats_fields = [p = impl.get()](JsonWriter& w) { p->stats_fields(w); };
  }
  if (auto valid = client::validate(cc.security); !valid) return unexpected(valid.error());
  impl->client = std::make_unique<client::Client>(cc);
  impl->timer = std::make_unique<asio::steady_timer>(impl->client->io());
  auto md = impl->client->metadata({}, true);
  if (!md) return unexpected(md.error());
  if (impl->transactional()) {
    if (!impl->idempotent()) {
      return unexpected(make_error(Errc::kInvalidArgument,
                                   "a transactional_id needs acks=-1 and enable_idempotence"));
    }
    if (config.transaction_timeout_ms <= 0) {
      return unexpected(
          make_error(Errc::kInvalidArgument, "transaction_timeout_ms must be positive"));
    }
    // The producer id comes from init_transactions().
  } else if (impl->idempotent()) {
    kafka::InitProducerIdRequest req;
    req.transaction_timeout_ms = -1;
    auto r = impl->client->call_as<kafka::InitProducerIdResponse>(client::kAnyBroker, req);
    if (!r) return unexpected(r.error());
    if (r->error_code != 0) return unexpected(client::kafka_error(r->error_code, "InitProducerId"));
    impl->producer_id = r->producer_id;
    impl->producer_epoch = r->producer_epoch;
  }
  return std::unique_ptr<Producer>(new Producer(std::move(impl)));
}

Result<Producer> Producer::open(const ProducerConfig& config) {
  auto p = create(config);
  if (!p) return unexpected(p.error());
  return Producer(std::move((*p)->impl_));
}

Producer::Producer(Producer&& other) noexcept : impl_(std::move(other.impl_)) {}

Producer& Producer::operator=(Producer&& other) noexcept {
  if (this != &other) {
    if (impl_) close(std::chrono::milliseconds(impl_->config.delivery_timeout_ms));
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Producer::~Producer() {
  if (impl_) close(std::chrono::milliseconds(impl_->config.delivery_timeout_ms));
}

std::future<RecordMetadata> Producer::send(ProducerRecord record) {
  auto promise = std::make_shared<std::promise<RecordMetadata>>();
  auto future = promise->get_future();
  std::string topic = record.topic;
  auto partition = record.partition.value_or(-1);
  Status s = impl_->enqueue(std::move(record), Completion{nullptr, promise, 0});
  if (!s) promise->set_value(RecordMetadata{topic, partition, -1, -1, s.error()});
  return future;
}

Status Producer::send(ProducerRecord record, DeliveryCallback callback) {
  return impl_->enqueue(std::move(record), Completion{std::move(callback), nullptr, 0});
}

Status Producer::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  ++impl_->flushing;
  lock.unlock();
  impl_->schedule_sender();
  lock.lock();
  auto done = [&] { return impl_->outstanding == 0; };
  bool ok = timeout == std::chrono::milliseconds::max() ? (impl_->cv.wait(lock, done), true)
                                                        : impl_->cv.wait_for(lock, timeout, done);
  --impl_->flushing;
  if (!ok) {
    return unexpected(make_error(
        Errc::kTimeout,
        std::to_string(impl_->outstanding) + " records still unanswered after flush timeout"));
  }
  return {};
}

void Producer::close(std::chrono::milliseconds timeout) {
  if (!impl_ || !impl_->client) return;
  (void)flush(timeout);
  {
    std::lock_guard lock(impl_->mu);
    impl_->closed = true;
  }
  impl_->cv.notify_all();
  // Cancel the timer on the I/O thread, then stop the client (which fails what is left).
  impl_->stopping = true;
  std::promise<void> cancelled;
  impl_->client->post([this, &cancelled] {
    impl_->timer->cancel();
    cancelled.set_value();
  });
  cancelled.get_future().wait();
  impl_->timer.reset();
  impl_->client.reset();
  // Records never sent (flush timed out before they were) fail now.
  std::vector<BatchPtr> left;
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [tp, ps] : impl_->partitions) {
      if (ps.open) left.push_back(ps.open);
      for (auto& b : ps.ready) left.push_back(b);
      for (auto& b : ps.inflight) left.push_back(b);
      for (auto& b : ps.to_retry) left.push_back(b);
    }
    impl_->partitions.clear();
  }
  for (auto& b : left)
    impl_->complete(b, -1, make_error(Errc::kClosed, "producer closed before delivery"));
}

Result<int32_t> Producer::partition_count(const std::string& topic) {
  return impl_->partition_count(topic, false);
}

Status Producer::init_transactions(std::chrono::milliseconds timeout) {
  Impl& im = *impl_;
  std::lock_guard txn(im.txn_mu);
  {
    std::lock_guard lock(im.mu);
    if (auto s = im.txn_check(Impl::TxnState::kUninitialized, "init_transactions()"); !s) return s;
  }
  kafka::InitProducerIdRequest req;
  req.transactional_id = im.config.transactional_id;
  req.transaction_timeout_ms = im.config.transaction_timeout_ms;
  auto r = im.coordinator_call<kafka::InitProducerIdResponse>(
      im.config.transactional_id, 1, req,
      [](const kafka::InitProducerIdResponse& resp) { return resp.error_code; },
      Clock::now() + timeout);
  if (!r) return unexpected(r.error());
  if (r->error_code != 0) return unexpected(im.txn_error(r->error_code, "InitProducerId"));
  std::lock_guard lock(im.mu);
  im.producer_id = r->producer_id;
  im.producer_epoch = r->producer_epoch;
  for (auto& [tp, ps] : im.partitions) ps.next_sequence = 0;  // a new epoch starts at 0
  im.txn_state = Impl::TxnState::kReady;
  return {};
}

Status Producer::begin_transaction() {
  Impl& im = *impl_;
  std::lock_guard txn(im.txn_mu);
  std::lock_guard lock(im.mu);
  if (auto s = im.txn_check(Impl::TxnState::kReady, "begin_transaction()"); !s) return s;
  im.txn_state = Impl::TxnState::kInTransaction;
  im.txn_parts.clear();
  im.txn_record_failed = false;
  im.txn_offsets_sent = false;
  return {};
}

Status Producer::send_offsets_to_transaction(const std::map<TopicPartition, int64_t>& offsets,
                                             const std::string& group_id,
                                             std::chrono::milliseconds timeout) {
  ConsumerGroupMetadata group;
  group.group_id = group_id;
  return send_offsets_to_transaction(offsets, group, timeout);
}

Status Producer::send_offsets_to_transaction(const std::map<TopicPartition, int64_t>& offsets,
                                             const ConsumerGroupMetadata& group,
                                             std::chrono::milliseconds timeout) {
  const std::string& group_id = group.group_id;
  Impl& im = *impl_;
  const auto deadline = Clock::now() + timeout;
  std::lock_guard txn(im.txn_mu);
  int64_t pid;
  int16_t epoch;
  {
    std::lock_guard lock(im.mu);
    if (auto s = im.txn_check(Impl::TxnState::kInTransaction, "send_offsets_to_transaction()");
        !s) {
      return s;
    }
    pid = im.producer_id;
    epoch = im.producer_epoch;
  }
  if (group_id.empty()) {
    return unexpected(
        make_error(Errc::kInvalidArgument, "send_offsets_to_transaction(): no group"));
  }
  // The group's offsets partition joins the transaction, then the offsets go to the group's
  // coordinator, held there until the transaction ends.
  kafka::AddOffsetsToTxnRequest add;
  add.transactional_id = im.config.transactional_id;
  add.producer_id = pid;
  add.producer_epoch = epoch;
  add.group_id = group_id;
  auto added = im.coordinator_call<kafka::AddOffsetsToTxnResponse>(
      im.config.transactional_id, 1, add,
      [](const kafka::AddOffsetsToTxnResponse& resp) { return resp.error_code; }, deadline);
  if (!added) return unexpected(added.error());
  if (added->error_code != 0) {
    return unexpected(im.txn_error(added->error_code, "AddOffsetsToTxn " + group_id));
  }
  {
    std::lock_guard lock(im.mu);
    im.txn_offsets_sent = true;  // EndTxn is needed even without records
  }
  kafka::TxnOffsetCommitRequest req;
  req.transactional_id = im.config.transactional_id;
  req.group_id = group_id;
  req.producer_id = pid;
  req.producer_epoch = epoch;
  req.generation_id = group.generation_id;  // v3 (KIP-447); older versions leave them out
  req.member_id = group.member_id;
  req.group_instance_id = group.group_instance_id;
  for (const auto& [tp, offset] : offsets) {
    auto* t = &client::entry_for(
        req.topics, &kafka::TxnOffsetCommitRequest::TxnOffsetCommitRequestTopic::name, tp.topic);
    auto& p = t->partitions.emplace_back();
    p.partition_index = tp.partition;
    p.committed_offset = offset;
    p.committed_metadata = "";
  }
  auto first_error = [](const kafka::TxnOffsetCommitResponse& resp) -> int16_t {
    for (const auto& t : resp.topics) {
      for (const auto& p : t.partitions) {
        if (p.error_code != 0) return p.error_code;
      }
    }
    return 0;
  };
  auto r =
      im.coordinator_call<kafka::TxnOffsetCommitResponse>(group_id, 0, req, first_error, deadline);
  if (!r) return unexpected(r.error());
  if (int16_t code = first_error(*r); code != 0) {
    return unexpected(im.txn_error(code, "TxnOffsetCommit " + group_id));
  }
  return {};
}

// Flushes the transaction's records (queued ones go out, and fail or not, before the marker,
// so none can land after it), then ends the transaction.
Status Producer::commit_transaction(std::chrono::milliseconds timeout) {
  return finish_transaction(true, timeout);
}

Status Producer::abort_transaction(std::chrono::milliseconds timeout) {
  return finish_transaction(false, timeout);
}

Status Producer::finish_transaction(bool commit, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  {
    std::lock_guard lock(impl_->mu);
    const char* call = commit ? "commit_transaction()" : "abort_transaction()";
    if (auto s = impl_->txn_check(Impl::TxnState::kInTransaction, call); !s) return s;
  }
  if (auto s = flush(timeout); !s) return s;
  const auto left =
      std::max(deadline - Clock::now(), Clock::duration(std::chrono::milliseconds(1)));
  return impl_->end_transaction(commit,
                                std::chrono::duration_cast<std::chrono::milliseconds>(left));
}

namespace {

const std::vector<client::Property<ProducerConfig>>& producer_properties() {
  using C = ProducerConfig;
  static const std::vector<client::Property<C>> table = {
      {"bootstrap.servers", &C::bootstrap_servers},
      {"client.id", &C::client_id},
      {"compression.type", &C::compression},
      {"compression.level", &C::compression_level},
      {"linger.ms", &C::linger_ms},
      {"batch.size", &C::batch_size},
      {"buffer.memory", &C::buffer_memory},
      {"block.on.buffer.full", &C::block_on_buffer_full},
      {"max.block.ms", &C::max_block_ms},
      {"max.in.flight.requests.per.connection", &C::max_in_flight},
      {"enable.idempotence", &C::enable_idempotence},
      {"request.timeout.ms", &C::request_timeout_ms},
      {"delivery.timeout.ms", &C::delivery_timeout_ms},
      {"retry.backoff.ms", &C::retry_backoff_ms},
      {"acks", &C::acks},
      {"statistics.interval.ms", &C::statistics_interval_ms},
      {"log_level", &C::log_level},
      {"transactional.id", &C::transactional_id},
      {"transaction.timeout.ms", &C::transaction_timeout_ms},
  };
  return table;
}

}  // namespace

Status set_config(ProducerConfig& config, const std::string& name, const std::string& value) {
  if (name == "acks" && value == "all") {
    config.acks = -1;
    return {};
  }
  return client::set_property(config, producer_properties(), name, value);
}

Result<ProducerConfig> producer_config(const std::map<std::string, std::string>& properties) {
  return client::config_from<ProducerConfig>(properties, [](ProducerConfig& c, const std::string& k,
                                                        const std::string& v) {
    return set_config(c, k, v);
  });
}

}  // namespace sluice
