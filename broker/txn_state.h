// Transactions on one partition, the partition leader's side of Kafka's transactions (KIP-98;
// kafka-protocol.md 5.3 control batches): which producers have a transaction open here and
// from which offset, which completed ones are not stable yet, the aborted ones a read_committed
// consumer must be told about, and the last stable offset (LSO) such a consumer reads up to.
//
// Pure logic over offsets, owned by the partition's shard and fed in log order by whoever
// appends (the leader at proposal, a follower at append), like ProducerStateTable, and with
// the same floor: the offset below which the log is never cut (the high watermark). A
// transaction completes when its producer's marker (a control batch, commit or abort) is
// appended; it is stable once the marker is below the floor. Until then a cut can take the
// marker away and reopen it, so cuts above the floor are exact: completed transactions above
// it are kept until the floor passes them. An aborted transaction enters the aborted list when
// it becomes stable, so the list only grows at its end (in marker order) and never changes
// under a cut; it shrinks from its front when the log's start moves past a whole transaction.
//
// Kafka's rules kept: a transaction's first offset is its producer's first transactional batch
// after its previous marker (a marker with no batch before it completes an empty transaction,
// first offset = the marker's); the first unstable offset is the least first offset of the open
// and the not yet stable transactions, and LSO = min(that, high watermark); a read_committed
// Fetch of [fetch offset, upper bound) lists every aborted transaction with last offset (its
// marker's) >= the fetch offset and first offset < the upper bound (TransactionIndex
// .collectAbortedTxns); a marker whose coordinator epoch is older than the last one seen for its
// producer is refused (TRANSACTION_COORDINATOR_FENCED).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "protocol/error_codes.h"

namespace sluice::broker {

struct AbortedTxn {
  int64_t producer_id = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;  // the abort marker's offset
  bool operator==(const AbortedTxn&) const = default;
};

class TxnTable {
 public:
  // Before a marker of `producer_id` from a coordinator at `coordinator_epoch` is appended:
  // kNone, or kTransactionCoordinatorFenced when an earlier marker of this producer came from
  // a newer coordinator epoch.
  kafka::ErrorCode check_marker(int64_t producer_id, int32_t coordinator_epoch) const;

  // A transactional data batch of `producer_id` was appended at `base_offset`: it opens the
  // producer's transaction here unless one is open.
  void on_data(int64_t producer_id, int64_t base_offset);
  // A marker of `producer_id` was appended at `offset`: the producer's transaction completes
  // (committed or aborted); without an open one an empty transaction completes at `offset`.
  void on_marker(int64_t producer_id, int64_t offset, bool commit, int32_t coordinator_epoch);

  // The log is never cut below `offset` again (raised as the high watermark moves): completed
  // transactions whose marker is below it are stable; aborted ones join the aborted list.
  void set_floor(int64_t offset);
  int64_t floor() const { return floor_; }
  // The log was cut and now ends at `log_end` (exact for cuts at or above the floor): what was
  // appended at or after it is undone.
  void cut(int64_t log_end);
  // The log now starts at `log_start`: aborted transactions wholly below it go.
  void trim(int64_t log_start);

  // The least first offset of the open and the not yet stable transactions.
  std::optional<int64_t> first_unstable_offset() const;
  // What a read_committed consumer may read up to: min(first unstable offset, high watermark).
  int64_t last_stable_offset(int64_t high_watermark) const;
  bool open(int64_t producer_id) const { return open_.count(producer_id) != 0; }
  size_t open_count() const { return open_.size(); }
  // The first offset of the producer's open transaction, or -1 (DescribeProducers).
  int64_t open_first_offset(int64_t producer_id) const {
    auto it = open_.find(producer_id);
    return it == open_.end() ? -1 : it->second;
  }
  // The coordinator epoch of the producer's last marker here, or -1.
  int32_t coordinator_epoch(int64_t producer_id) const {
    auto it = coordinator_epoch_.find(producer_id);
    return it == coordinator_epoch_.end() ? -1 : it->second;
  }

  // The aborted transactions a read_committed Fetch of [fetch_offset, upper_bound) must list,
  // in marker order.
  std::vector<AbortedTxn> aborted_in(int64_t fetch_offset, int64_t upper_bound) const;
  const std::deque<AbortedTxn>& aborted() const { return aborted_; }
  // Whether any transactional batch or marker reached this table (or an aborted transaction
  // was restored): partitions without transactions keep no file.
  bool seen_any() const { return seen_any_; }
  // Where a replay of the log must start to find every transaction that may be open or
  // unstable now and later: the first unstable offset, else the floor.
  int64_t replay_from() const;
  // Appends an aborted transaction read back from storage (in marker order, below the floor).
  void restore_aborted(const AbortedTxn& txn);

 private:
  struct Completed {
    int64_t producer_id;
    int64_t first_offset;
    int64_t marker_offset;
    bool commit;
    std::optional<int32_t> previous_coordinator_epoch;  // restored by a cut
  };
  void unstable_erase(int64_t first_offset);

  std::map<int64_t, int64_t> open_;        // producer id -> first offset of its open transaction
  std::deque<Completed> completed_;        // markers at or above the floor, in offset order
  std::multiset<int64_t> unstable_first_;  // first offsets of open_ and completed_
  std::map<int64_t, int32_t> coordinator_epoch_;  // producer id -> its last marker's
  std::deque<AbortedTxn> aborted_;                // stable aborted transactions, marker order
  int64_t longest_aborted_ = 0;  // max(last - first) over aborted_: bounds aborted_in's scan
  int64_t floor_ = INT64_MIN;
  bool seen_any_ = false;
};

}  // namespace sluice::broker
