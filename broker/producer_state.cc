#include "broker/producer_state.h"

#include <algorithm>
#include <limits>

#include "log/batch_scan.h"
#include "log/log.h"

namespace sluice::broker {

int32_t add_sequence(int32_t base, int32_t delta) {
  const int64_t sum = static_cast<int64_t>(base) + delta;
  constexpr int64_t kRange = static_cast<int64_t>(std::numeric_limits<int32_t>::max()) + 1;
  return static_cast<int32_t>(sum % kRange);
}

int32_t next_sequence(int32_t last_sequence) { return add_sequence(last_sequence, 1); }

const ProducerEntry* ProducerStateTable::find(int64_t producer_id) const {
  auto it = producers_.find(producer_id);
  return it == producers_.end() ? nullptr : &it->second;
}

SequenceCheck ProducerStateTable::check(int64_t producer_id, int16_t epoch, int32_t base_sequence,
                                        int32_t record_count) const {
  using Verdict = SequenceCheck::Verdict;
  if (base_sequence < 0 || record_count <= 0) {
    return {Verdict::kReject, kafka::ErrorCode::kInvalidRecord, -1};
  }
  const ProducerEntry* entry = find(producer_id);
  if (!entry) return {};  // unknown producer: accept any sequence (Kafka 3.8)
  if (epoch < entry->epoch) return {Verdict::kReject, kafka::ErrorCode::kInvalidProducerEpoch, -1};
  if (epoch > entry->epoch) {
    if (base_sequence != 0) {
      return {Verdict::kReject, kafka::ErrorCode::kOutOfOrderSequenceNumber, -1};
    }
    return {};
  }
  const int32_t last = add_sequence(base_sequence, record_count - 1);
  for (const ProducerBatch& b : entry->batches) {
    if (b.first_sequence == base_sequence && b.last_sequence == last) {
      return {Verdict::kDuplicate, kafka::ErrorCode::kNone, b.base_offset};
    }
  }
  if (entry->last_sequence >= 0 && base_sequence != next_sequence(entry->last_sequence)) {
    return {Verdict::kReject, kafka::ErrorCode::kOutOfOrderSequenceNumber, -1};
  }
  return {};
}

void ProducerStateTable::record(int64_t producer_id, int16_t epoch, int32_t base_sequence,
                                int32_t record_count, int64_t base_offset) {
  if (producers_.size() >= kProducersPerPartitionMax && !producers_.count(producer_id)) {
    producers_.erase(producers_.begin());  // oldest id first: ids are handed out in order
  }
  ProducerEntry& e = producers_[producer_id];
  if (epoch != e.epoch) {
    e = ProducerEntry{};
    e.epoch = epoch;
  }
  const int32_t last = add_sequence(base_sequence, record_count - 1);
  e.last_sequence = last;
  e.batches.push_back({base_sequence, last, base_offset});
  while (e.batches.size() > kProducerBatchesRetained) e.batches.pop_front();
}

ProducerStateTable producer_state_from_log(log::PartitionLog& log, uint64_t scan_bytes) {
  ProducerStateTable table;
  const int64_t end = *log.log_end_offset();
  int64_t from = *log.log_start_offset();
  // Only the tail matters (five batches per producer); skip ahead for big logs.
  if (log.size_bytes() > scan_bytes) {
    auto bases = log.segment_base_offsets();
    uint64_t seen = 0;
    for (auto it = bases.rbegin(); it != bases.rend(); ++it) {
      from = *it;
      seen += log.size_bytes() / std::max<size_t>(1, bases.size());
      if (seen >= scan_bytes) break;
    }
  }
  log::for_each_stored_batch(log, from, end, 1 << 20, [&table](const kafka::RecordBatchView& b) {
    if (b.producer_id() >= 0 && b.base_sequence() >= 0) {
      table.record(b.producer_id(), b.producer_epoch(), b.base_sequence(),
                   b.last_offset_delta() + 1, b.base_offset());
    }
  });
  return table;
}

}  // namespace sluice::broker
