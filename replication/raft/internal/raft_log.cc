#include "replication/raft/internal/raft_log.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::raft::detail {

void RaftLog::restore(const Snapshot& snapshot, std::vector<Entry> entries, uint64_t commit,
                      uint64_t applied) {
  snapshot_ = snapshot;
  entries_ = std::move(entries);
  for (size_t i = 0; i < entries_.size(); ++i) {
    SLUICE_ASSERT(*entries_[i].index == *snapshot_.index + 1 + i);
  }
  committed_ = std::clamp<uint64_t>(commit, *snapshot_.index, last_index());
  applied_ = std::clamp<uint64_t>(applied, *snapshot_.index, committed_);
  stable_ = last_index();
  unsent_from_ = last_index() + 1;
}

uint64_t RaftLog::last_term() const {
  return entries_.empty() ? *snapshot_.term : *entries_.back().term;
}

std::optional<uint64_t> RaftLog::term(uint64_t index) const {
  if (index == *snapshot_.index) return *snapshot_.term;
  if (index < *snapshot_.index || index > last_index()) return std::nullopt;
  return *at(index).term;
}

bool RaftLog::match_term(uint64_t index, uint64_t t) const {
  const auto mine = term(index);
  return mine && *mine == t;
}

bool RaftLog::is_up_to_date(uint64_t index, uint64_t t) const {
  return t > last_term() || (t == last_term() && index >= last_index());
}

const Entry& RaftLog::at(uint64_t index) const {
  SLUICE_ASSERT(index >= first_index() && index <= last_index());
  const Entry& e = entries_[index - first_index()];
  SLUICE_DASSERT(*e.index == index);
  return e;
}

std::vector<Entry> RaftLog::slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  SLUICE_ASSERT(lo >= first_index());
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i <= hi && i <= last_index(); ++i) {
    const Entry& e = at(i);
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  return out;
}

uint64_t RaftLog::find_conflict(std::span<const Entry> entries) const {
  for (const Entry& e : entries) {
    if (!match_term(*e.index, *e.term)) return *e.index;
  }
  return 0;
}

uint64_t RaftLog::find_conflict_by_term(uint64_t index, uint64_t t) const {
  index = std::min(index, last_index());
  while (index > *snapshot_.index) {
    if (*at(index).term <= t) return index;
    --index;
  }
  return index;
}

void RaftLog::append(std::span<const Entry> entries) {
  if (entries.empty()) return;
  const uint64_t from = *entries.front().index;
  SLUICE_ASSERT(from > committed_);  // a committed entry is never replaced
  SLUICE_ASSERT(from >= first_index() && from <= last_index() + 1);
  entries_.resize(from - first_index());
  for (const Entry& e : entries) {
    SLUICE_ASSERT(*e.index == last_index() + 1);
    entries_.push_back(e);
  }
  unsent_from_ = std::min(unsent_from_, from);
  stable_ = std::min(stable_, from - 1);
}

void RaftLog::commit_to(uint64_t index) {
  if (index <= committed_) return;
  SLUICE_ASSERT(index <= last_index());
  committed_ = index;
}

void RaftLog::install(const Snapshot& snapshot) {
  SLUICE_ASSERT(*snapshot.index > committed_);
  snapshot_ = snapshot;
  entries_.clear();
  committed_ = applied_ = *snapshot.index;
  stable_ = *snapshot.index;  // the driver persists it with the Ready that hands it out
  unsent_from_ = *snapshot.index + 1;
}

void RaftLog::compact(const Snapshot& snapshot) {
  const uint64_t index = *snapshot.index;
  SLUICE_ASSERT(index <= applied_);
  if (index <= *snapshot_.index) return;
  SLUICE_ASSERT(*snapshot.term == *at(index).term);
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<ptrdiff_t>(index - first_index() + 1));
  snapshot_ = snapshot;
  unsent_from_ = std::max(unsent_from_, index + 1);
}

std::vector<Entry> RaftLog::take_unsent() {
  std::vector<Entry> out;
  if (has_unsent())
    out.assign(entries_.begin() + static_cast<ptrdiff_t>(unsent_from_ - first_index()),
               entries_.end());
  unsent_from_ = last_index() + 1;
  return out;
}

std::vector<Entry> RaftLog::take_committed(uint64_t max_bytes) {
  std::vector<Entry> out;
  uint64_t bytes = 0;
  uint64_t i = std::max(applied_ + 1, first_index());
  for (; i <= committed_; ++i) {
    const Entry& e = at(i);
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  applied_ = std::max(applied_, i - 1);
  return out;
}

void RaftLog::stable_to(uint64_t index, uint64_t t) {
  if (match_term(index, t) && index > stable_) stable_ = index;
}

}  // namespace sluice::raft::detail
