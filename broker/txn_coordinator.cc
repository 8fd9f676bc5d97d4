#include "broker/txn_coordinator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>

#include "broker/group_records.h"
#include "log/batch_scan.h"
#include "protocol/codec.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

using kafka::ErrorCode;

namespace {

constexpr uint64_t kLoadReadBytes = 1 << 20;
constexpr int16_t kKeyVersion = 0;
constexpr int16_t kValueVersion = 0;
// Kafka bumps the epoch up to Short.MaxValue - 1; past it a fresh producer id is handed out.
constexpr int16_t kEpochMax = 32766;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool preparing(TxnStatus s) {
  return s == TxnStatus::kPrepareCommit || s == TxnStatus::kPrepareAbort;
}

}  // namespace

const char* txn_status_name(TxnStatus s) {
  switch (s) {
    case TxnStatus::kEmpty:
      return "Empty";
    case TxnStatus::kOngoing:
      return "Ongoing";
    case TxnStatus::kPrepareCommit:
      return "PrepareCommit";
    case TxnStatus::kPrepareAbort:
      return "PrepareAbort";
    case TxnStatus::kCompleteCommit:
      return "CompleteCommit";
    case TxnStatus::kCompleteAbort:
      return "CompleteAbort";
    case TxnStatus::kDead:
      return "Dead";
    case TxnStatus::kPrepareEpochFence:
      return "PrepareEpochFence";
  }
  return "Unknown";
}

std::optional<TxnStatus> txn_status_from_name(std::string_view name) {
  for (int8_t i = 0; i <= static_cast<int8_t>(TxnStatus::kPrepareEpochFence); ++i) {
    const auto s = static_cast<TxnStatus>(i);
    if (name == txn_status_name(s)) return s;
  }
  return std::nullopt;
}

// Records --------------------------------------------------------------------------------------

std::vector<std::byte> encode_txn_key(const std::string& transactional_id) {
  kafka::Writer w;
  w.i16(kKeyVersion);
  w.string(transactional_id);
  return std::move(w.buffer());
}

std::vector<std::byte> encode_txn_value(const TxnMetadata& m) {
  kafka::Writer w;
  w.i16(kValueVersion);
  w.i64(m.producer_id);
  w.i16(m.producer_epoch);
  w.i32(m.timeout_ms);
  w.i8(static_cast<int8_t>(m.status));
  if (m.status == TxnStatus::kEmpty) {
    w.null_array();  // Kafka writes no partitions for an Empty transaction
  } else {
    std::map<std::string, std::vector<int32_t>> by_topic;
    for (const auto& [topic, partition] : m.partitions) by_topic[topic].push_back(partition);
    w.array_count(by_topic.size());
    for (const auto& [topic, parts] : by_topic) {
      w.string(topic);
      w.array_count(parts.size());
      for (int32_t p : parts) w.i32(p);
    }
  }
  w.i64(m.update_ms);
  w.i64(m.start_ms);
  return std::move(w.buffer());
}

std::optional<std::string> decode_txn_key(Bytes bytes) {
  kafka::Reader r(bytes);
  int16_t version = 0;
  std::string id;
  if (!r.i16(version, "key.version") || version != kKeyVersion || !r.string(id, "id")) {
    return std::nullopt;
  }
  return id;
}

std::optional<TxnMetadata> decode_txn_value(Bytes bytes) {
  kafka::Reader r(bytes);
  int16_t version = 0;
  int8_t status = 0;
  TxnMetadata m;
  if (!r.i16(version, "value.version") || version != kValueVersion ||
      !r.i64(m.producer_id, "producer_id") || !r.i16(m.producer_epoch, "producer_epoch") ||
      !r.i32(m.timeout_ms, "timeout") || !r.i8(status, "status") || status < 0 ||
      status > static_cast<int8_t>(TxnStatus::kPrepareEpochFence)) {
    return std::nullopt;
  }
  m.status = static_cast<TxnStatus>(status);
  std::optional<uint32_t> topics;
  if (!r.array_count(topics, 2 + 4, "partitions")) return std::nullopt;
  for (uint32_t t = 0; t < topics.value_or(0); ++t) {
    std::string topic;
    std::optional<uint32_t> n;
    if (!r.string(topic, "topic") || !r.array_count(n, 4, "partition_ids")) return std::nullopt;
    for (uint32_t i = 0; i < n.value_or(0); ++i) {
      int32_t p = 0;
      if (!r.i32(p, "partition")) return std::nullopt;
      m.partitions.emplace(topic, p);
    }
  }
  if (!r.i64(m.update_ms, "update") || !r.i64(m.start_ms, "start")) return std::nullopt;
  return m;
}

int32_t txn_partition_for(const std::string& transactional_id, int32_t partitions) {
  return offsets_partition_for(transactional_id, partitions);  // the same hash in Kafka
}

// Coordinator ----------------------------------------------------------------------------------

TxnCoordinator::TxnCoordinator(const TxnOptions& options, TxnHost host)
    : options_(options), host_(std::move(host)) {
  SLUICE_ASSERT(options_.partitions > 0);
  SLUICE_ASSERT(host_.shard_count > 0);
  shard_partitions_.resize(host_.shard_count);
  for (int32_t p = 0; p < options_.partitions; ++p) {
    partitions_.push_back(std::make_unique<PartitionTxns>());
    partitions_.back()->partition = p;
    const uint32_t shard = host_.shard_of(p);
    SLUICE_ASSERT(shard < host_.shard_count);
    shard_partitions_[shard].push_back(p);
  }
}

TxnCoordinator::~TxnCoordinator() = default;

int32_t TxnCoordinator::partition_of(const std::string& id) const {
  return txn_partition_for(id, options_.partitions);
}

void TxnCoordinator::on_shard(const std::string& id, std::function<void(PartitionTxns&)> fn) {
  const int32_t p = partition_of(id);
  host_.post(host_.shard_of(p), [this, p, fn = std::move(fn)] { fn(*partitions_[p]); });
}

// As GroupCoordinator::not_loaded: NOT_COORDINATOR sends the client to look again;
// COORDINATOR_LOAD_IN_PROGRESS while this broker leads the partition and loads it.
ErrorCode TxnCoordinator::not_loaded(const PartitionTxns& pt) const {
  if (stopping_.load(std::memory_order_acquire)) return ErrorCode::kNotCoordinator;
  return host_.log_of(pt.partition) != nullptr ? ErrorCode::kCoordinatorLoadInProgress
                                               : ErrorCode::kNotCoordinator;
}

bool TxnCoordinator::coordinating(int32_t partition) const {
  return partition >= 0 && partition < static_cast<int32_t>(partitions_.size()) &&
         partitions_[partition]->loaded;
}

void TxnCoordinator::load_partition(PartitionTxns& pt) {
  log::PartitionLog* log = host_.log_of(pt.partition);
  if (log == nullptr) return;
  const int64_t from = *log->log_start_offset();
  std::map<std::string, TxnMetadata> found;
  log::for_each_stored_record(*log, from, *log->written_offset(), kLoadReadBytes,
                              [&](const kafka::RecordBatchView&, const kafka::Record& r) {
                                auto id = decode_txn_key(*r.key);
                                if (!id) return;
                                if (!r.value) {
                                  found.erase(*id);
                                } else if (auto m = decode_txn_value(*r.value)) {
                                  found[*id] = std::move(*m);
                                }
                              });
  pt.txns.clear();
  for (auto& [id, m] : found) pt.txns[id].meta = std::move(m);
  pt.coordinator_epoch = host_.coordinator_epoch(pt.partition);
  pt.loaded = true;
  ++pt.incarnation;
  size_t resumed = 0;
  for (auto& [id, txn] : pt.txns) {
    if (preparing(txn.meta.status)) {
      send_markers(pt, id, txn.meta.partitions, 0);
      ++resumed;
    }
  }
  if (!pt.txns.empty()) {
    spdlog::info("{}-{}: loaded {} transactional id(s), {} transaction(s) to finish", kTopic,
                 pt.partition, pt.txns.size(), resumed);
  }
}

void TxnCoordinator::take_over(int32_t partition) {
  if (partition < 0 || partition >= static_cast<int32_t>(partitions_.size())) return;
  PartitionTxns& pt = *partitions_[partition];
  if (pt.loaded || stopping_.load(std::memory_order_acquire)) return;
  load_partition(pt);
}

void TxnCoordinator::resign(int32_t partition) {
  if (partition < 0 || partition >= static_cast<int32_t>(partitions_.size())) return;
  PartitionTxns& pt = *partitions_[partition];
  if (!pt.loaded) return;
  pt.txns.clear();
  pt.loaded = false;
  ++pt.incarnation;
  spdlog::info("{}-{}: no longer the leader: its transactions are coordinated elsewhere", kTopic,
               partition);
}

void TxnCoordinator::stop() {
  stopping_.store(true, std::memory_order_release);
  std::vector<std::future<void>> done;
  for (uint32_t s = 0; s < host_.shard_count; ++s) {
    auto promise = std::make_shared<std::promise<void>>();
    done.push_back(promise->get_future());
    host_.post(s, [this, s, promise] {
      for (int32_t p : shard_partitions_[s]) {
        partitions_[p]->loaded = false;
        ++partitions_[p]->incarnation;
        partitions_[p]->txns.clear();
      }
      promise->set_value();
    });
  }
  for (auto& f : done) f.wait();
}

void TxnCoordinator::list(ListFilter filter,
                          std::function<void(ErrorCode, std::vector<View>)> done) {
  struct Gather {
    std::mutex mutex;
    ErrorCode error = ErrorCode::kNone;
    std::vector<View> found;
    std::atomic<uint32_t> left{0};
    std::function<void(ErrorCode, std::vector<View>)> done;
  };
  auto gather = std::make_shared<Gather>();
  gather->left = host_.shard_count;
  gather->done = std::move(done);
  auto shared_filter = std::make_shared<const ListFilter>(std::move(filter));
  for (uint32_t s = 0; s < host_.shard_count; ++s) {
    host_.post(s, [this, s, gather, shared_filter] {
      const ListFilter& f = *shared_filter;
      const int64_t now = wall_ms();
      std::vector<View> mine;
      ErrorCode error = ErrorCode::kNone;
      for (int32_t p : shard_partitions_[s]) {
        const PartitionTxns& pt = *partitions_[static_cast<size_t>(p)];
        if (!pt.loaded) {
          if (not_loaded(pt) == ErrorCode::kCoordinatorLoadInProgress) {
            error = ErrorCode::kCoordinatorLoadInProgress;
          }
          continue;
        }
        for (const auto& [id, txn] : pt.txns) {
          const TxnMetadata& m = txn.meta;
          if (!f.states.empty() && !f.states.count(m.status)) continue;
          if (!f.producer_ids.empty() && !f.producer_ids.count(m.producer_id)) continue;
          // As Kafka: an id with no transaction started (start -1) passes any duration.
          if (f.min_duration_ms >= 0 && now - m.start_ms < f.min_duration_ms) continue;
          mine.push_back(View{id, m});
        }
      }
      std::lock_guard lock(gather->mutex);
      if (error != ErrorCode::kNone) gather->error = error;
      for (auto& v : mine) gather->found.push_back(std::move(v));
      if (gather->left.fetch_sub(1) == 1) {
        std::sort(gather->found.begin(), gather->found.end(),
                  [](const View& a, const View& b) { return a.id < b.id; });
        gather->done(gather->error, std::move(gather->found));
      }
    });
  }
}

void TxnCoordinator::describe(const std::string& id, std::function<void(ErrorCode, View)> done) {
  on_shard(id, [this, id, done = std::move(done)](PartitionTxns& pt) {
    View v{id, {}};
    if (!pt.loaded) return done(not_loaded(pt), std::move(v));
    auto it = pt.txns.find(id);
    if (it == pt.txns.end() || it->second.meta.producer_id < 0) {
      return done(ErrorCode::kTransactionalIdNotFound, std::move(v));
    }
    v.meta = it->second.meta;
    done(ErrorCode::kNone, std::move(v));
  });
}

void TxnCoordinator::tick(uint32_t shard) {
  if (shard >= shard_partitions_.size() || stopping_.load(std::memory_order_acquire)) return;
  const int64_t now = wall_ms();
  for (int32_t p : shard_partitions_[shard]) {
    PartitionTxns& pt = *partitions_[p];
    if (!pt.loaded) continue;
    std::vector<std::string> expired;
    std::vector<std::string> forgotten;
    for (const auto& [id, txn] : pt.txns) {
      if (txn.writing) continue;
      const TxnStatus s = txn.meta.status;
      if (s == TxnStatus::kOngoing && now > txn.meta.start_ms + txn.meta.timeout_ms) {
        expired.push_back(id);
      } else if ((s == TxnStatus::kEmpty || s == TxnStatus::kCompleteCommit ||
                  s == TxnStatus::kCompleteAbort) &&
                 txn.meta.update_ms >= 0 && now - txn.meta.update_ms > options_.id_expiration_ms) {
        forgotten.push_back(id);
      }
    }
    for (const auto& id : expired) {
      spdlog::info(
          "transactional id '{}': its transaction passed its timeout ({} ms): aborted, "
          "the producer fenced",
          id, pt.txns[id].meta.timeout_ms);
      abort_fenced(pt, id);
    }
    for (const auto& id : forgotten) {
      // Kafka's transactional.id.expiration.ms: the producer id goes with it; a producer
      // coming back with this id later starts afresh (InitProducerId gives a new id).
      spdlog::info(
          "transactional id '{}': unused for more than {} ms (transactional.id.expiration.ms): "
          "forgotten",
          id, options_.id_expiration_ms);
      write(pt, id, std::nullopt, [](ErrorCode) {});  // a failure: the next tick tries again
    }
  }
}

// State changes ---------------------------------------------------------------------------------

void TxnCoordinator::write(PartitionTxns& pt, const std::string& id,
                           std::optional<TxnMetadata> next, std::function<void(ErrorCode)> done) {
  Txn& txn = pt.txns[id];
  txn.writing = true;
  const int64_t now = wall_ms();
  if (next) next->update_ms = now;
  kafka::RecordBatchBuilder builder({});
  const std::vector<std::byte> key = encode_txn_key(id);
  const std::vector<std::byte> value = next ? encode_txn_value(*next) : std::vector<std::byte>{};
  builder.append(now, Bytes(key), next ? std::optional<Bytes>(Bytes(value)) : std::nullopt);
  auto built = builder.build();
  SLUICE_ASSERT(built.has_value());  // uncompressed: cannot fail
  auto batch = std::make_shared<std::vector<std::byte>>(std::move(*built));
  const uint64_t inc = pt.incarnation;
  auto finish = [&pt, id, inc, next, batch, done](ErrorCode e) {
    if (pt.incarnation != inc || !pt.loaded) {
      done(ErrorCode::kNotCoordinator);
      return;
    }
    auto it = pt.txns.find(id);
    if (it == pt.txns.end()) {
      done(ErrorCode::kNotCoordinator);
      return;
    }
    it->second.writing = false;
    if (e != ErrorCode::kNone) {
      spdlog::warn("transactional id '{}': writing its {} failed: {}", id,
                   next ? txn_status_name(next->status) : "tombstone", kafka::error_name(e));
      if (it->second.meta.producer_id < 0) pt.txns.erase(it);  // a new id never written
      done(e == ErrorCode::kNotLeaderOrFollower ? ErrorCode::kNotCoordinator
                                                : ErrorCode::kCoordinatorNotAvailable);
      return;
    }
    if (next) {
      it->second.meta = *next;
    } else {
      pt.txns.erase(it);
    }
    done(ErrorCode::kNone);
  };
  const ErrorCode e = host_.replicate(pt.partition, MutableBytes(*batch), finish);
  if (e != ErrorCode::kNone) finish(e);
  host_.after_append(pt.partition);
}

void TxnCoordinator::abort_fenced(PartitionTxns& pt, const std::string& id) {
  Txn& txn = pt.txns[id];
  TxnMetadata next = txn.meta;
  if (next.producer_epoch < kEpochMax) ++next.producer_epoch;
  next.status = TxnStatus::kPrepareAbort;
  write(pt, id, next, [this, &pt, id](ErrorCode e) {
    if (e != ErrorCode::kNone) return;  // the next tick (or coordinator) tries again
    auto it = pt.txns.find(id);
    if (it != pt.txns.end()) send_markers(pt, id, it->second.meta.partitions, 0);
  });
}

void TxnCoordinator::send_markers(PartitionTxns& pt, const std::string& id,
                                  std::set<TxnPartition> left, int attempt) {
  auto it = pt.txns.find(id);
  if (it == pt.txns.end() || !preparing(it->second.meta.status)) return;
  const Txn& txn = it->second;
  if (left.empty()) return complete(pt, id);
  kafka::WriteTxnMarkersRequest req;
  auto& m = req.markers.emplace_back();
  m.producer_id = txn.meta.producer_id;
  m.producer_epoch = txn.meta.producer_epoch;
  m.transaction_result = txn.meta.status == TxnStatus::kPrepareCommit;
  m.coordinator_epoch = pt.coordinator_epoch;
  std::map<std::string, std::vector<int32_t>> by_topic;
  for (const auto& [topic, partition] : left) by_topic[topic].push_back(partition);
  for (auto& [topic, parts] : by_topic) {
    auto& t = m.topics.emplace_back();
    t.name = topic;
    t.partition_indexes = std::move(parts);
  }
  const uint64_t inc = pt.incarnation;
  const uint32_t shard = host_.shard_of(pt.partition);
  host_.send_markers(
      std::move(req), [this, &pt, id, inc, shard, attempt](std::vector<TxnMarkerResult> results) {
        host_.post(shard, [this, &pt, id, inc, attempt, results = std::move(results)] {
          if (pt.incarnation != inc || !pt.loaded || stopping_.load(std::memory_order_acquire)) {
            return;  // another coordinator (or this one, reloaded) finishes the transaction
          }
          std::set<TxnPartition> again;
          for (const auto& r : results) {
            switch (r.error) {
              case ErrorCode::kNone:
                break;
              case ErrorCode::kTransactionCoordinatorFenced:
                // A newer coordinator wrote markers for this producer: it finishes this one.
                spdlog::warn(
                    "transactional id '{}': {}-{} says a newer coordinator exists; this "
                    "one stops sending its markers",
                    id, r.topic, r.partition);
                return;
              case ErrorCode::kInvalidProducerEpoch:
                // The partition has seen a newer epoch of the producer: nothing of this one is
                // open there any more.
                spdlog::warn(
                    "transactional id '{}': {}-{} refused the marker (a newer producer "
                    "epoch); taken as written",
                    id, r.topic, r.partition);
                break;
              case ErrorCode::kUnknownTopicOrPartition:
                if (!host_.topic_exists(r.topic)) break;  // deleted: nothing to end there
                again.emplace(r.topic, r.partition);
                break;
              default:
                again.emplace(r.topic, r.partition);
                break;
            }
          }
          if (again.empty()) return complete(pt, id);
          if (attempt % 50 == 49) {  // about every 10 s
            spdlog::warn(
                "transactional id '{}': markers still not written on {} partition(s) "
                "(first {}-{}); retrying",
                id, again.size(), again.begin()->first, again.begin()->second);
          }
          host_.post_after(host_.shard_of(pt.partition), options_.marker_retry_ms,
                           [this, &pt, id, inc, attempt, again = std::move(again)]() mutable {
                             if (pt.incarnation != inc || !pt.loaded) return;
                             send_markers(pt, id, std::move(again), attempt + 1);
                           });
        });
      });
}

void TxnCoordinator::complete(PartitionTxns& pt, const std::string& id) {
  auto it = pt.txns.find(id);
  if (it == pt.txns.end() || !preparing(it->second.meta.status)) return;
  TxnMetadata next = it->second.meta;
  next.status = next.status == TxnStatus::kPrepareCommit ? TxnStatus::kCompleteCommit
                                                         : TxnStatus::kCompleteAbort;
  next.partitions.clear();
  const uint64_t inc = pt.incarnation;
  write(pt, id, next, [this, &pt, id, inc](ErrorCode e) {
    if (e == ErrorCode::kNone || pt.incarnation != inc || !pt.loaded) return;
    // Markers are all written: only the Complete record is missing. Try it again.
    host_.post_after(host_.shard_of(pt.partition), 1000, [this, &pt, id, inc] {
      if (pt.incarnation == inc && pt.loaded) complete(pt, id);
    });
  });
}

// Requests ------------------------------------------------------------------------------------

void TxnCoordinator::init_producer_id(const std::string& id, int32_t timeout_ms,
                                      int64_t producer_id, int16_t producer_epoch,
                                      std::function<void(ErrorCode, int64_t, int16_t)> done) {
  if (timeout_ms <= 0 || timeout_ms > options_.max_timeout_ms) {
    done(ErrorCode::kInvalidTransactionTimeout, -1, -1);
    return;
  }
  on_shard(id, [this, id, timeout_ms, producer_id, producer_epoch,
                done = std::move(done)](PartitionTxns& pt) {
    if (!pt.loaded) return done(not_loaded(pt), -1, -1);
    // Answers the id and epoch of `next` once it is written.
    auto answer_with = [&done](const TxnMetadata& next) {
      return [done, next](ErrorCode e) {
        const bool ok = e == ErrorCode::kNone;
        done(e, ok ? next.producer_id : -1, ok ? next.producer_epoch : int16_t{-1});
      };
    };
    auto it = pt.txns.find(id);
    if (it == pt.txns.end()) {
      auto pid = host_.next_producer_id();
      if (!pid) return done(pid.error(), -1, -1);
      TxnMetadata next;
      next.producer_id = *pid;
      next.producer_epoch = 0;
      next.timeout_ms = timeout_ms;
      next.status = TxnStatus::kEmpty;
      write(pt, id, next, answer_with(next));
      return;
    }
    Txn& txn = it->second;
    if (txn.writing || preparing(txn.meta.status)) {
      return done(ErrorCode::kConcurrentTransactions, -1, -1);
    }
    // KIP-360: a producer naming its id and epoch may bump only its own current one.
    if (producer_id >= 0 &&
        (producer_id != txn.meta.producer_id || producer_epoch != txn.meta.producer_epoch)) {
      return done(ErrorCode::kProducerFenced, -1, -1);
    }
    if (txn.meta.status == TxnStatus::kOngoing) {
      // The previous incarnation of the producer left a transaction open: it is aborted with
      // the epoch bumped (fencing it); the client retries until that has finished.
      abort_fenced(pt, id);
      return done(ErrorCode::kConcurrentTransactions, -1, -1);
    }
    TxnMetadata next = txn.meta;
    if (next.producer_epoch >= kEpochMax) {
      auto pid = host_.next_producer_id();
      if (!pid) return done(pid.error(), -1, -1);
      next.producer_id = *pid;
      next.producer_epoch = 0;
    } else {
      ++next.producer_epoch;
    }
    next.timeout_ms = timeout_ms;
    next.status = TxnStatus::kEmpty;
    next.partitions.clear();
    next.start_ms = -1;
    write(pt, id, next, answer_with(next));
  });
}

void TxnCoordinator::add_partitions(const std::string& id, int64_t producer_id,
                                    int16_t producer_epoch, std::set<TxnPartition> partitions,
                                    std::function<void(ErrorCode)> done) {
  on_shard(id, [this, id, producer_id, producer_epoch, partitions = std::move(partitions),
                done = std::move(done)](PartitionTxns& pt) {
    if (!pt.loaded) return done(not_loaded(pt));
    auto it = pt.txns.find(id);
    if (it == pt.txns.end() || it->second.meta.producer_id != producer_id) {
      return done(ErrorCode::kInvalidProducerIdMapping);
    }
    Txn& txn = it->second;
    if (txn.meta.producer_epoch != producer_epoch) return done(ErrorCode::kProducerFenced);
    if (txn.writing || preparing(txn.meta.status)) return done(ErrorCode::kConcurrentTransactions);
    TxnMetadata next = txn.meta;
    if (next.status == TxnStatus::kOngoing) {
      const size_t before = next.partitions.size();
      next.partitions.insert(partitions.begin(), partitions.end());
      if (next.partitions.size() == before) return done(ErrorCode::kNone);  // all there
    } else {
      next.status = TxnStatus::kOngoing;
      next.partitions = partitions;
      next.start_ms = wall_ms();
    }
    write(pt, id, next, done);
  });
}

void TxnCoordinator::end_txn(const std::string& id, int64_t producer_id, int16_t producer_epoch,
                             bool commit, std::function<void(ErrorCode)> done) {
  on_shard(id, [this, id, producer_id, producer_epoch, commit,
                done = std::move(done)](PartitionTxns& pt) {
    if (!pt.loaded) return done(not_loaded(pt));
    auto it = pt.txns.find(id);
    if (it == pt.txns.end() || it->second.meta.producer_id != producer_id) {
      return done(ErrorCode::kInvalidProducerIdMapping);
    }
    Txn& txn = it->second;
    if (txn.meta.producer_epoch != producer_epoch) return done(ErrorCode::kProducerFenced);
    if (txn.writing) return done(ErrorCode::kConcurrentTransactions);
    switch (txn.meta.status) {
      case TxnStatus::kOngoing: {
        TxnMetadata next = txn.meta;
        next.status = commit ? TxnStatus::kPrepareCommit : TxnStatus::kPrepareAbort;
        write(pt, id, next, [this, &pt, id, done](ErrorCode e) {
          done(e);  // the outcome is decided once the Prepare record is committed
          if (e != ErrorCode::kNone) return;
          auto it = pt.txns.find(id);
          if (it != pt.txns.end()) send_markers(pt, id, it->second.meta.partitions, 0);
        });
        return;
      }
      case TxnStatus::kPrepareCommit:
        return done(commit ? ErrorCode::kConcurrentTransactions : ErrorCode::kInvalidTxnState);
      case TxnStatus::kPrepareAbort:
        return done(commit ? ErrorCode::kInvalidTxnState : ErrorCode::kConcurrentTransactions);
      case TxnStatus::kCompleteCommit:  // a retry of the EndTxn that ended it
        return done(commit ? ErrorCode::kNone : ErrorCode::kInvalidTxnState);
      case TxnStatus::kCompleteAbort:
        return done(commit ? ErrorCode::kInvalidTxnState : ErrorCode::kNone);
      default:
        return done(ErrorCode::kInvalidTxnState);
    }
  });
}

}  // namespace sluice::broker
