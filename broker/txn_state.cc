#include "broker/txn_state.h"

#include <algorithm>

#include "broker/producer_state.h"

namespace sluice::broker {

kafka::ErrorCode TxnTable::check_marker(int64_t producer_id, int32_t coordinator_epoch) const {
  auto it = coordinator_epoch_.find(producer_id);
  if (it != coordinator_epoch_.end() && coordinator_epoch < it->second) {
    return kafka::ErrorCode::kTransactionCoordinatorFenced;
  }
  return kafka::ErrorCode::kNone;
}

void TxnTable::on_data(int64_t producer_id, int64_t base_offset) {
  seen_any_ = true;
  if (open_.emplace(producer_id, base_offset).second) unstable_first_.insert(base_offset);
}

void TxnTable::on_marker(int64_t producer_id, int64_t offset, bool commit,
                         int32_t coordinator_epoch) {
  seen_any_ = true;
  int64_t first = offset;  // an empty transaction
  if (auto it = open_.find(producer_id); it != open_.end()) {
    first = it->second;
    open_.erase(it);
  } else {
    unstable_first_.insert(first);
  }
  std::optional<int32_t> previous;
  if (auto it = coordinator_epoch_.find(producer_id); it != coordinator_epoch_.end()) {
    previous = it->second;
    it->second = coordinator_epoch;
  } else {
    if (coordinator_epoch_.size() >= kProducersPerPartitionMax) {
      coordinator_epoch_.erase(coordinator_epoch_.begin());  // oldest id first, as producers
    }
    coordinator_epoch_.emplace(producer_id, coordinator_epoch);
  }
  completed_.push_back({producer_id, first, offset, commit, previous});
  if (offset < floor_) set_floor(floor_);  // appended below the floor: stable at once
}

void TxnTable::unstable_erase(int64_t first_offset) {
  auto it = unstable_first_.find(first_offset);
  if (it != unstable_first_.end()) unstable_first_.erase(it);
}

void TxnTable::set_floor(int64_t offset) {
  floor_ = std::max(floor_, offset);
  while (!completed_.empty() && completed_.front().marker_offset < floor_) {
    const Completed& c = completed_.front();
    unstable_erase(c.first_offset);
    if (!c.commit) restore_aborted({c.producer_id, c.first_offset, c.marker_offset});
    completed_.pop_front();
  }
}

void TxnTable::cut(int64_t log_end) {
  for (auto it = open_.begin(); it != open_.end();) {
    if (it->second >= log_end) {
      unstable_erase(it->second);
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
  // Markers at or after the cut are undone, latest first: their transactions are open again
  // (from their first offset) when that is before the cut, else they never happened.
  while (!completed_.empty() && completed_.back().marker_offset >= log_end) {
    const Completed c = completed_.back();
    completed_.pop_back();
    if (c.previous_coordinator_epoch) {
      coordinator_epoch_[c.producer_id] = *c.previous_coordinator_epoch;
    } else {
      coordinator_epoch_.erase(c.producer_id);
    }
    const bool reopens = c.first_offset < log_end && c.first_offset != c.marker_offset &&
                         open_.emplace(c.producer_id, c.first_offset).second;
    if (!reopens) unstable_erase(c.first_offset);  // else it stays unstable, open again
  }
}

void TxnTable::trim(int64_t log_start) {
  while (!aborted_.empty() && aborted_.front().last_offset < log_start) aborted_.pop_front();
}

std::optional<int64_t> TxnTable::first_unstable_offset() const {
  if (unstable_first_.empty()) return std::nullopt;
  return *unstable_first_.begin();
}

int64_t TxnTable::last_stable_offset(int64_t high_watermark) const {
  auto first = first_unstable_offset();
  return first ? std::min(*first, high_watermark) : high_watermark;
}

std::vector<AbortedTxn> TxnTable::aborted_in(int64_t fetch_offset, int64_t upper_bound) const {
  std::vector<AbortedTxn> out;
  auto it = std::lower_bound(aborted_.begin(), aborted_.end(), fetch_offset,
                             [](const AbortedTxn& t, int64_t at) { return t.last_offset < at; });
  // In marker order; past upper_bound + the longest span every first offset is >= upper_bound.
  for (; it != aborted_.end() && it->last_offset - longest_aborted_ < upper_bound; ++it) {
    if (it->first_offset < upper_bound) out.push_back(*it);
  }
  return out;
}

int64_t TxnTable::replay_from() const {
  auto first = first_unstable_offset();
  return first ? std::min(*first, floor_) : floor_;
}

void TxnTable::restore_aborted(const AbortedTxn& txn) {
  seen_any_ = true;
  // Once only: a replay after a restore meets the markers of the restored ones again.
  if (!aborted_.empty() && txn.last_offset <= aborted_.back().last_offset) return;
  aborted_.push_back(txn);
  longest_aborted_ = std::max(longest_aborted_, txn.last_offset - txn.first_offset);
}

}  // namespace sluice::broker
