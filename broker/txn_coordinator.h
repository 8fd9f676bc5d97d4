// The transaction coordinator (KIP-98): InitProducerId with a transactional id,
// AddPartitionsToTxn, AddOffsetsToTxn and EndTxn, the transaction log, the markers it has
// partition leaders write (WriteTxnMarkers), and the expiry of transactions past their timeout.
//
// Threads: as GroupCoordinator. A transactional id lives on the shard owning its
// __transaction_state partition (txn_partition_for(id) -> host.shard_of(partition)); its state,
// its writes to the partition's log and its timers run on that one thread, so nothing is
// locked. Requests post there; the answer may come later, from that shard.
//
// Persistence: each state change is a record of __transaction_state in Kafka's own layout
// (TransactionLogKey v0, TransactionLogValue v0: Kafka's tools read it), appended through the
// partition's Raft group; the state in memory changes, and the client hears, only once it is
// committed. While a write is in flight the id answers CONCURRENT_TRANSACTIONS. The serving
// leader of a partition coordinates its ids: take_over() replays the log (and resumes the
// markers of transactions left in PrepareCommit/PrepareAbort), resign() drops them.
//
// Ending a transaction: EndTxn writes PrepareCommit/PrepareAbort and answers; then the markers
// go to every partition of the transaction (host.send_markers: WriteTxnMarkers at each leader,
// this broker's own or a peer's), retried until each partition has its marker; then
// CompleteCommit/CompleteAbort is written. A transaction open longer than its timeout is
// aborted with the producer's epoch bumped (the producer is fenced), as Kafka does.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "log/log.h"
#include "protocol/error_codes.h"
#include "protocol/messages.h"

namespace sluice::broker {

// Kafka's TransactionState ids, as the transaction log stores them.
enum class TxnStatus : int8_t {
  kEmpty = 0,
  kOngoing = 1,
  kPrepareCommit = 2,
  kPrepareAbort = 3,
  kCompleteCommit = 4,
  kCompleteAbort = 5,
  kDead = 6,
  kPrepareEpochFence = 7,
};
const char* txn_status_name(TxnStatus s);
// The state a name (as txn_status_name gives it) stands for, or nullopt.
std::optional<TxnStatus> txn_status_from_name(std::string_view name);

using TxnPartition = std::pair<std::string, int32_t>;

struct TxnMetadata {
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t timeout_ms = 0;
  TxnStatus status = TxnStatus::kEmpty;
  std::set<TxnPartition> partitions;
  int64_t update_ms = -1;  // wall clock
  int64_t start_ms = -1;   // wall clock: when the transaction began (Ongoing)
};

// The transaction log's records (Kafka's TransactionLogKey v0 / TransactionLogValue v0).
std::vector<std::byte> encode_txn_key(const std::string& transactional_id);
std::vector<std::byte> encode_txn_value(const TxnMetadata& m);
// nullopt: not a record this version knows (skipped on load).
std::optional<std::string> decode_txn_key(Bytes bytes);
std::optional<TxnMetadata> decode_txn_value(Bytes bytes);
// Kafka's partition for a transactional id: abs(String.hashCode) % partitions.
int32_t txn_partition_for(const std::string& transactional_id, int32_t partitions);

struct TxnMarkerResult {
  std::string topic;
  int32_t partition = 0;
  kafka::ErrorCode error = kafka::ErrorCode::kNone;
};

// What the coordinator needs from the broker. "(shard)": call on the partition's shard.
struct TxnHost {
  uint32_t shard_count = 1;
  std::function<uint32_t(int32_t partition)> shard_of;  // owner of __transaction_state-partition
  std::function<void(uint32_t shard, std::function<void()>)> post;
  std::function<void(uint32_t shard, int64_t delay_ms, std::function<void()>)> post_after;
  // (shard) The log of the partition when this broker is its serving leader, else nullptr.
  std::function<log::PartitionLog*(int32_t partition)> log_of;
  // (shard) The partition's leader epoch: the coordinator epoch markers carry.
  std::function<int32_t(int32_t partition)> coordinator_epoch;
  // (shard) Appends through the partition's Raft group; `done` once committed.
  std::function<kafka::ErrorCode(int32_t partition, MutableBytes batch,
                                 std::function<void(kafka::ErrorCode)> done)>
      replicate;
  std::function<void(int32_t partition)> after_append;                  // (shard)
  std::function<Result<int64_t, kafka::ErrorCode>()> next_producer_id;  // any thread
  // Has every named partition's leader write the marker; `done` (any thread) with one result
  // per partition. Any thread.
  std::function<void(kafka::WriteTxnMarkersRequest request,
                     std::function<void(std::vector<TxnMarkerResult>)> done)>
      send_markers;
  std::function<bool(const std::string& topic)> topic_exists;  // any thread
};

struct TxnOptions {
  int32_t partitions = 50;          // of __transaction_state
  int32_t max_timeout_ms = 900000;  // transaction.max.timeout.ms
  int64_t marker_retry_ms = 200;
  // transactional.id.expiration.ms: an id with no transaction open (Empty, CompleteCommit,
  // CompleteAbort) and not updated for this long is forgotten (a tombstone in the log).
  int64_t id_expiration_ms = 604800000;
};

class TxnCoordinator {
 public:
  static constexpr const char* kTopic = "__transaction_state";

  TxnCoordinator(const TxnOptions& options, TxnHost host);
  ~TxnCoordinator();

  int32_t partition_of(const std::string& transactional_id) const;
  int32_t partitions() const { return options_.partitions; }

  // Leadership of __transaction_state partitions (on the partition's shard), as
  // GroupCoordinator's.
  bool coordinating(int32_t partition) const;
  void take_over(int32_t partition);
  void resign(int32_t partition);
  // Expires transactions past their timeout (on `shard`, about once a second).
  void tick(uint32_t shard);
  // No more work starts (blocking; at shutdown, from a non-shard thread).
  void stop();

  // The handlers: `done` runs on the id's shard, perhaps later. Epoch errors are
  // PRODUCER_FENCED (the caller maps it to INVALID_PRODUCER_EPOCH for old versions).
  void init_producer_id(const std::string& id, int32_t timeout_ms, int64_t producer_id,
                        int16_t producer_epoch,
                        std::function<void(kafka::ErrorCode, int64_t, int16_t)> done);
  void add_partitions(const std::string& id, int64_t producer_id, int16_t producer_epoch,
                      std::set<TxnPartition> partitions,
                      std::function<void(kafka::ErrorCode)> done);
  void end_txn(const std::string& id, int64_t producer_id, int16_t producer_epoch, bool commit,
               std::function<void(kafka::ErrorCode)> done);

  // A transactional id as ListTransactions and DescribeTransactions (KIP-664) show it.
  struct View {
    std::string id;
    TxnMetadata meta;
  };
  struct ListFilter {
    std::set<TxnStatus> states;      // empty: any
    std::set<int64_t> producer_ids;  // empty: any
    int64_t min_duration_ms = -1;    // running at least this long (Kafka's DurationFilter)
  };
  // ListTransactions: the ids this broker coordinates that pass `filter`; the error is
  // COORDINATOR_LOAD_IN_PROGRESS while a partition it leads is still loading. `done` runs once,
  // on some shard.
  void list(ListFilter filter, std::function<void(kafka::ErrorCode, std::vector<View>)> done);
  // DescribeTransactions: the id's state, or NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
  // TRANSACTIONAL_ID_NOT_FOUND. `done` on the id's shard.
  void describe(const std::string& id, std::function<void(kafka::ErrorCode, View)> done);

 private:
  struct Txn {
    TxnMetadata meta;
    bool writing = false;  // a state change is in flight
  };
  struct PartitionTxns {
    std::map<std::string, Txn> txns;
    bool loaded = false;
    uint64_t incarnation = 0;  // changes at take_over and resign: late callbacks see it
    int32_t coordinator_epoch = 0;
    int32_t partition = 0;
  };

  void on_shard(const std::string& id, std::function<void(PartitionTxns&)> fn);
  kafka::ErrorCode not_loaded(const PartitionTxns& pt) const;
  // (shard) Writes `next` as the id's state; `done(error)` after it is committed, the state
  // in memory changed (on success). nullopt writes the id's tombstone: it is forgotten.
  void write(PartitionTxns& pt, const std::string& id, std::optional<TxnMetadata> next,
             std::function<void(kafka::ErrorCode)> done);
  // (shard) Aborts the id's ongoing transaction with the epoch bumped (timeout, a new
  // InitProducerId while one is open).
  void abort_fenced(PartitionTxns& pt, const std::string& id);
  // (shard) Markers for a transaction in PrepareCommit/PrepareAbort, then its Complete state.
  void send_markers(PartitionTxns& pt, const std::string& id, std::set<TxnPartition> left,
                    int attempt);
  void complete(PartitionTxns& pt, const std::string& id);
  void load_partition(PartitionTxns& pt);

  TxnOptions options_;
  TxnHost host_;
  std::vector<std::unique_ptr<PartitionTxns>> partitions_;  // by partition; owner shard only
  std::vector<std::vector<int32_t>> shard_partitions_;      // by shard
  std::atomic<bool> stopping_{false};
};

}  // namespace sluice::broker
