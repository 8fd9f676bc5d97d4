// Log offsets and Kafka offsets. Every batch in a partition log takes log offsets, Raft's own
// (internal) batches included; clients must see only data records, numbered without gaps.
// OffsetTranslator is the one place that converts between the two (DESIGN.md, Storage).
//
// Pure and in memory: the replication layer tells it where internal batches are as it appends
// them (and, at open, as it finds them in the log), and truncates it with the log. Memory is
// one entry per internal batch (configuration changes are rare). Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::log {

class OffsetTranslator {
 public:
  // A log whose first offset is `start_log_offset`, before which `internal_before_start`
  // internal records were folded away (0 for a new partition).
  explicit OffsetTranslator(int64_t start_log_offset = 0, int64_t internal_before_start = 0);

  // An internal batch of `records` records at log offsets [log_offset, log_offset + records),
  // after every batch added before.
  void add_internal(int64_t log_offset, int64_t records);

  bool is_internal(int64_t log_offset) const;
  // The Kafka offset of the data record at `log_offset`; for an internal one, the Kafka
  // offset the next data record will have.
  int64_t to_kafka(int64_t log_offset) const;
  // The log offset of the data record with Kafka offset `kafka_offset` (or, past the end, the
  // log offset such a record would have if only data followed).
  int64_t to_log(int64_t kafka_offset) const;

  // Forgets internal batches at or after `log_offset` (PartitionLog::truncate_suffix).
  void truncate_suffix(int64_t log_offset);
  // Folds internal batches below `log_offset` into a count (PartitionLog::advance_log_start).
  void advance_start(int64_t log_offset);

  size_t internal_batches() const { return batches_.size(); }

 private:
  struct Internal {
    int64_t log_offset;
    int64_t records;
    int64_t records_before;  // internal records before this batch, from the log's beginning
  };
  int64_t internal_before(size_t batch_count) const;

  int64_t start_log_offset_;
  int64_t internal_before_start_;
  std::vector<Internal> batches_;  // by log offset
};

}  // namespace sluice::log
