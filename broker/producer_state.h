// Idempotent-producer state of one partition (kafka-protocol.md section 6): per producer id
// the epoch, the last sequence and the last five batches, so a retried batch is answered
// with its original offset instead of being appended twice. Pure logic, owned by the
// partition's shard; rebuilt at start-up by replaying the batches of the log's tail, and cut
// in memory when the log is cut (a Raft follower dropping an uncommitted suffix): it keeps,
// besides each producer's last five batches, those a cut could still bring back (above the
// floor, the offset below which the log is never cut: the high watermark).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "broker/txn_state.h"
#include "protocol/error_codes.h"
#include "protocol/record_batch.h"

namespace sluice::log {
class PartitionLog;
}

namespace sluice::broker {

inline constexpr size_t kProducerBatchesRetained = 5;  // Kafka's NUM_BATCHES_TO_RETAIN
inline constexpr size_t kProducersPerPartitionMax = 100000;

struct ProducerBatch {
  int32_t first_sequence = 0;
  int32_t last_sequence = 0;
  int64_t base_offset = 0;
  int16_t epoch = 0;
};

struct ProducerEntry {
  int16_t epoch = 0;           // the last batch's
  int32_t last_sequence = -1;  // the last batch's
  int64_t last_timestamp = -1;  // the last batch's max timestamp (DescribeProducers)
  // The last marker that raised the epoch (a coordinator fencing the producer): a cut that
  // keeps it keeps the raised epoch, though no batch of that epoch exists yet.
  int64_t bump_offset = -1;
  int16_t bump_epoch = -1;
  // Oldest first, in offset order. Retries are matched against the last
  // kProducerBatchesRetained of the run of `epoch` at the back (a new epoch starts afresh, as
  // in Kafka); the ones before them are kept only while a cut above the floor could make them
  // that window again.
  std::deque<ProducerBatch> batches;
};

// What to do with an incoming batch.
struct SequenceCheck {
  enum class Verdict : uint8_t { kAppend, kDuplicate, kReject };
  Verdict verdict = Verdict::kAppend;
  kafka::ErrorCode error = kafka::ErrorCode::kNone;  // for kReject
  int64_t duplicate_base_offset = -1;                // for kDuplicate
};

class ProducerStateTable {
 public:
  // Checks a batch of `record_count` records (lastOffsetDelta + 1) before it is appended.
  SequenceCheck check(int64_t producer_id, int16_t epoch, int32_t base_sequence,
                      int32_t record_count) const;
  // Records an appended batch (after check() said kAppend).
  void record(int64_t producer_id, int16_t epoch, int32_t base_sequence, int32_t record_count,
              int64_t base_offset);
  // Records an appended batch of any kind: an idempotent one as record(), and a transactional
  // one or a transaction marker in the transactions' table (txns()). A marker that does not
  // parse is logged and left out (the leader checked the ones it wrote).
  void record_batch(const kafka::RecordBatchView& batch);
  // Before a marker of `producer_id` at `epoch` from a coordinator at `coordinator_epoch` is
  // appended: kNone, or why not (an older producer epoch: the producer was fenced; an older
  // coordinator epoch: TRANSACTION_COORDINATOR_FENCED).
  kafka::ErrorCode check_marker(int64_t producer_id, int16_t epoch,
                                int32_t coordinator_epoch) const;
  // Records an appended marker: the transaction ends, and a newer epoch is the producer's.
  void record_marker(int64_t producer_id, int16_t epoch, int64_t offset, bool commit,
                     int32_t coordinator_epoch);
  const TxnTable& txns() const { return txns_; }
  // The log now starts at `log_start` (retention, DeleteRecords): aborted transactions wholly
  // below it are let go.
  void set_log_start(int64_t log_start) { txns_.trim(log_start); }
  // An aborted transaction saved by an earlier run (txn_file.h), before the log is replayed.
  void restore_aborted(const AbortedTxn& txn) { txns_.restore_aborted(txn); }
  size_t size() const { return producers_.size(); }
  // Every producer the partition knows, by id (DescribeProducers).
  const std::map<int64_t, ProducerEntry>& producers() const { return producers_; }
  const ProducerEntry* find(int64_t producer_id) const;

  // The log is never cut below `offset` (the high watermark, raised as it moves): batches no
  // cut at or above it can make part of a window again are let go. Until it is first set,
  // no cut is expected (the floor is the end: each producer keeps its last five batches); a
  // table rebuilt for a replicated log starts with floor INT64_MIN and is then set.
  void set_floor(int64_t offset);
  // The log was cut: it now holds [log_start, log_end). Batches at or after log_end go, as if
  // the table had been rebuilt from the log (an empty log, e.g. one restarted from a leader's
  // snapshot, leaves an empty table). Exact for cuts at or above the floor.
  void cut(int64_t log_start, int64_t log_end);

 private:
  // Drops the batches of `e` no cut at or above floor_ can bring back into its window.
  void prune(ProducerEntry& e) const;
  std::map<int64_t, ProducerEntry> producers_;
  std::set<int64_t> long_;  // producers holding more than kProducerBatchesRetained batches
  TxnTable txns_;           // fed by record_batch(); its floor and cuts follow this table's
  int64_t floor_ = INT64_MAX;
};

// The state a partition's log holds: its idempotent batches replayed from the tail (the last
// `scan_bytes` or so: five batches per producer is all that matters), into a fresh table.
// What a replica needs at start-up and when its log was reopened (after a full disk, a
// repair); a cut of the log is followed by cut() instead. `floor` as set_floor()'s.
// With `saved` (what txn_file.h kept of the partition's transactions): its aborted
// transactions first, and the replay starts no later than its replay offset.
struct TxnFileContents;
ProducerStateTable producer_state_from_log(log::PartitionLog& log, uint64_t scan_bytes,
                                           int64_t floor = INT64_MAX,
                                           const TxnFileContents* saved = nullptr);

// The sequence after `last_sequence`, wrapping from INT32_MAX to 0 as Kafka does.
int32_t next_sequence(int32_t last_sequence);
int32_t add_sequence(int32_t base, int32_t delta);

}  // namespace sluice::broker
