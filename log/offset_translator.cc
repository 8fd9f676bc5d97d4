#include "log/offset_translator.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::log {

OffsetTranslator::OffsetTranslator(int64_t start_log_offset, int64_t internal_before_start)
    : start_log_offset_(start_log_offset), internal_before_start_(internal_before_start) {
  SLUICE_ASSERT(start_log_offset >= 0);
  SLUICE_ASSERT(internal_before_start >= 0 && internal_before_start <= start_log_offset);
}

int64_t OffsetTranslator::internal_before(size_t batch_count) const {
  if (batch_count == 0) return internal_before_start_;
  const Internal& last = batches_[batch_count - 1];
  return last.records_before + last.records;
}

void OffsetTranslator::add_internal(int64_t log_offset, int64_t records) {
  SLUICE_ASSERT(records > 0);
  SLUICE_ASSERT(log_offset >= start_log_offset_);
  SLUICE_ASSERT(batches_.empty() ||
                log_offset >= batches_.back().log_offset + batches_.back().records);
  batches_.push_back({log_offset, records, internal_before(batches_.size())});
}

bool OffsetTranslator::is_internal(int64_t log_offset) const {
  auto it = std::upper_bound(batches_.begin(), batches_.end(), log_offset,
                             [](int64_t o, const Internal& b) { return o < b.log_offset; });
  if (it == batches_.begin()) return false;
  --it;
  return log_offset < it->log_offset + it->records;
}

int64_t OffsetTranslator::to_kafka(int64_t log_offset) const {
  // Internal records strictly before `log_offset`.
  auto it = std::upper_bound(batches_.begin(), batches_.end(), log_offset,
                             [](int64_t o, const Internal& b) { return o < b.log_offset; });
  int64_t before = internal_before(static_cast<size_t>(it - batches_.begin()));
  if (it != batches_.begin()) {
    const Internal& b = *std::prev(it);
    before -= std::max<int64_t>(0, b.log_offset + b.records - log_offset);  // inside b
  }
  const int64_t kafka = log_offset - before;
  SLUICE_ASSERT(kafka >= 0);
  return kafka;
}

int64_t OffsetTranslator::to_log(int64_t kafka_offset) const {
  // Batch i sits at Kafka offset log_offset - records_before: data with a Kafka offset at or
  // above it comes after the batch. Count such batches.
  auto it = std::upper_bound(
      batches_.begin(), batches_.end(), kafka_offset,
      [](int64_t k, const Internal& b) { return k < b.log_offset - b.records_before; });
  const int64_t log_offset =
      kafka_offset + internal_before(static_cast<size_t>(it - batches_.begin()));
  SLUICE_DASSERT(!is_internal(log_offset));
  return log_offset;
}

void OffsetTranslator::truncate_suffix(int64_t log_offset) {
  while (!batches_.empty() && batches_.back().log_offset >= log_offset) batches_.pop_back();
  SLUICE_ASSERT(batches_.empty() ||
                batches_.back().log_offset + batches_.back().records <= log_offset);
}

void OffsetTranslator::advance_start(int64_t log_offset) {
  if (log_offset <= start_log_offset_) return;
  size_t folded = 0;
  while (folded < batches_.size() &&
         batches_[folded].log_offset + batches_[folded].records <= log_offset) {
    ++folded;
  }
  internal_before_start_ = internal_before(folded);
  batches_.erase(batches_.begin(), batches_.begin() + static_cast<ptrdiff_t>(folded));
  start_log_offset_ = log_offset;
}

}  // namespace sluice::log
