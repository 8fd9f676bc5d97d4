// Idempotent-producer state of one partition (kafka-protocol.md section 6): per producer id
// the epoch, the last sequence and the last five batches, so a retried batch is answered
// with its original offset instead of being appended twice. Pure logic, owned by the
// partition's shard; rebuilt at start-up by replaying the batches of the log's tail.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>

#include "protocol/error_codes.h"

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
};

struct ProducerEntry {
  int16_t epoch = 0;
  int32_t last_sequence = -1;
  std::deque<ProducerBatch> batches;  // oldest first, at most kProducerBatchesRetained
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
  size_t size() const { return producers_.size(); }
  const ProducerEntry* find(int64_t producer_id) const;

 private:
  std::map<int64_t, ProducerEntry> producers_;
};

// The state a partition's log holds: its idempotent batches replayed from the tail (the last
// `scan_bytes` or so: five batches per producer is all that matters), into a fresh table.
// What a replica needs at start-up and after its log was cut: a table kept from before a cut
// still names batches the log no longer has and misses none it has.
ProducerStateTable producer_state_from_log(log::PartitionLog& log, uint64_t scan_bytes);

// The sequence after `last_sequence`, wrapping from INT32_MAX to 0 as Kafka does.
int32_t next_sequence(int32_t last_sequence);
int32_t add_sequence(int32_t base, int32_t delta);

}  // namespace sluice::broker
