#include "broker/producer_state.h"

#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>

#include "broker/txn_file.h"
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
  // The window: the last kProducerBatchesRetained batches of the epoch's run at the back.
  size_t seen = 0;
  for (auto b = entry->batches.rbegin();
       b != entry->batches.rend() && b->epoch == entry->epoch && seen < kProducerBatchesRetained;
       ++b, ++seen) {
    if (b->first_sequence == base_sequence && b->last_sequence == last) {
      return {Verdict::kDuplicate, kafka::ErrorCode::kNone, b->base_offset};
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
    long_.erase(producers_.begin()->first);
    producers_.erase(producers_.begin());  // oldest id first: ids are handed out in order
  }
  ProducerEntry& e = producers_[producer_id];
  const int32_t last = add_sequence(base_sequence, record_count - 1);
  e.epoch = epoch;
  e.last_sequence = last;
  e.batches.push_back({base_sequence, last, base_offset, epoch});
  prune(e);
  if (e.batches.size() > kProducerBatchesRetained) {
    long_.insert(producer_id);
  } else if (!long_.empty()) {
    long_.erase(producer_id);
  }
}

void ProducerStateTable::record_batch(const kafka::RecordBatchView& batch) {
  const int64_t pid = batch.producer_id();
  if (pid < 0) return;
  if (batch.is_control()) {
    auto marker = kafka::read_end_txn_marker(batch);
    if (!marker) {
      spdlog::warn("a control batch at offset {} does not parse: {}", batch.base_offset(),
                   marker.error().message);
      return;
    }
    if (*marker) {
      record_marker(pid, batch.producer_epoch(), batch.base_offset(), (*marker)->commit,
                    (*marker)->coordinator_epoch);
    }
    return;
  }
  if (batch.base_sequence() >= 0) {
    record(pid, batch.producer_epoch(), batch.base_sequence(), batch.last_offset_delta() + 1,
           batch.base_offset());
    producers_[pid].last_timestamp = batch.max_timestamp();
  }
  if (batch.is_transactional()) txns_.on_data(pid, batch.base_offset());
}

kafka::ErrorCode ProducerStateTable::check_marker(int64_t producer_id, int16_t epoch,
                                                  int32_t coordinator_epoch) const {
  if (const ProducerEntry* e = find(producer_id); e != nullptr && epoch < e->epoch) {
    return kafka::ErrorCode::kInvalidProducerEpoch;
  }
  return txns_.check_marker(producer_id, coordinator_epoch);
}

void ProducerStateTable::record_marker(int64_t producer_id, int16_t epoch, int64_t offset,
                                       bool commit, int32_t coordinator_epoch) {
  if (auto it = producers_.find(producer_id); it != producers_.end() && epoch > it->second.epoch) {
    // A coordinator that bumped the epoch (a timed-out transaction aborted, a producer
    // fenced): the next batch of the new epoch starts at sequence 0, as after InitProducerId.
    it->second.epoch = epoch;
    it->second.last_sequence = -1;
    it->second.bump_offset = offset;
    it->second.bump_epoch = epoch;
  }
  txns_.on_marker(producer_id, offset, commit, coordinator_epoch);
}

// A batch is in its producer's window after a cut at c when every later batch below c has its
// epoch and fewer than kProducerBatchesRetained of them are below c. The front batch can go
// when that fails for every c >= floor_: some later batch below the floor has another epoch,
// or kProducerBatchesRetained later ones are below it. Batches are in offset order, so
// looking at the next kProducerBatchesRetained is enough.
void ProducerStateTable::prune(ProducerEntry& e) const {
  while (e.batches.size() >= 2) {
    const ProducerBatch& front = e.batches.front();
    const size_t n = std::min(kProducerBatchesRetained, e.batches.size() - 1);
    bool gone = false;
    for (size_t j = 1; j <= n && e.batches[j].base_offset < floor_; ++j) {
      if (e.batches[j].epoch != front.epoch || j == kProducerBatchesRetained) {
        gone = true;
        break;
      }
    }
    if (!gone) return;
    e.batches.pop_front();
  }
}

void ProducerStateTable::set_floor(int64_t offset) {
  floor_ = offset;
  txns_.set_floor(offset);
  for (auto id = long_.begin(); id != long_.end();) {
    auto it = producers_.find(*id);
    if (it != producers_.end()) prune(it->second);
    if (it == producers_.end() || it->second.batches.size() <= kProducerBatchesRetained) {
      id = long_.erase(id);
    } else {
      ++id;
    }
  }
}

void ProducerStateTable::cut(int64_t log_start, int64_t log_end) {
  if (log_start >= log_end) {
    producers_.clear();
    long_.clear();
    txns_ = TxnTable{};  // a log restarted empty (from a snapshot): nothing of it is here
    txns_.set_floor(floor_);
    return;
  }
  txns_.cut(log_end);
  txns_.trim(log_start);
  for (auto it = producers_.begin(); it != producers_.end();) {
    ProducerEntry& e = it->second;
    auto& batches = e.batches;
    while (!batches.empty() && batches.back().base_offset >= log_end) batches.pop_back();
    if (e.bump_offset >= log_end) {  // the marker went with the cut
      e.bump_offset = -1;
      e.bump_epoch = -1;
    }
    if (batches.empty() && e.bump_offset < 0) {
      long_.erase(it->first);
      it = producers_.erase(it);
      continue;
    }
    e.epoch = batches.empty() ? e.bump_epoch : batches.back().epoch;
    e.last_sequence = batches.empty() ? -1 : batches.back().last_sequence;
    if (e.bump_offset >= 0 && e.bump_epoch > e.epoch) {
      // A marker after the last batch raised the epoch: the next batch starts at sequence 0.
      e.epoch = e.bump_epoch;
      e.last_sequence = -1;
    }
    if (batches.size() <= kProducerBatchesRetained) long_.erase(it->first);
    ++it;
  }
}

ProducerStateTable producer_state_from_log(log::PartitionLog& log, uint64_t scan_bytes,
                                           int64_t floor, const TxnFileContents* saved) {
  ProducerStateTable table;
  table.set_floor(floor);
  const int64_t end = *log.log_end_offset();
  const int64_t start = *log.log_start_offset();
  int64_t from = start;
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
  if (saved) {
    for (const AbortedTxn& t : saved->aborted) {
      if (t.last_offset >= start) table.restore_aborted(t);
    }
    // Every transaction that may still be open began at or after the saved replay offset.
    if (saved->replay_from) from = std::max(start, std::min(from, *saved->replay_from));
  }
  log::for_each_stored_batch(log, from, end, 1 << 20,
                             [&table](const kafka::RecordBatchView& b) { table.record_batch(b); });
  return table;
}

}  // namespace sluice::broker
