#include "replication/raft/internal/raft_log.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::raft::detail {

void RaftLog::reset_to(const Snapshot& snapshot) {
  snapshot_ = snapshot;
  entries_.clear();
  head_ = 0;
  term_starts_.clear();
  confs_.clear();
  clean_ = 0;
  clean_bytes_ = 0;
  apply_blocked_ = false;
  last_ = *snapshot.index;
  mem_first_ = last_ + 1;
}

void RaftLog::restore(const RestoredState& r, LogSource* source, uint64_t commit,
                      uint64_t applied) {
  reset_to(r.snapshot);
  source_ = source;
  const uint64_t snap = *snapshot_.index;
  uint64_t next = snap + 1;
  if (*r.source_last > 0) {
    SLUICE_ASSERT(source != nullptr);
    const uint64_t source_last = *r.source_last;
    SLUICE_ASSERT(source_last >= snap);
    if (source_last > snap) {
      // Runs starting at or before the first index give its term; the rest follow.
      std::optional<uint64_t> first_term;
      uint64_t prev = 0;
      for (const auto& [at, t] : r.term_starts) {
        SLUICE_ASSERT(*at > prev || prev == 0);
        prev = *at;
        if (*at <= snap + 1) {
          first_term = *t;
        } else if (*at <= source_last) {
          if (term_starts_.empty()) {
            SLUICE_ASSERT(first_term.has_value());
            term_starts_.emplace_back(snap + 1, *first_term);
          }
          SLUICE_ASSERT(*t >= term_starts_.back().second);
          if (*t != term_starts_.back().second) term_starts_.emplace_back(*at, *t);
        }
      }
      if (term_starts_.empty()) {
        SLUICE_ASSERT(first_term.has_value());
        term_starts_.emplace_back(snap + 1, *first_term);
      }
      last_ = source_last;
      for (const auto& [at, conf] : r.source_confs) {
        if (*at <= snap || *at > source_last) continue;
        confs_.push_back(Entry{at, Term{*term(*at)}, EntryType::kConfig, encode_conf_state(conf)});
      }
    }
    next = source_last + 1;
  }
  mem_first_ = next;
  last_ = next - 1;
  push_back(r.entries);
  committed_ = std::clamp<uint64_t>(commit, snap, last_);
  applied_ = std::clamp<uint64_t>(applied, snap, committed_);
  stable_ = last_;
  unsent_from_ = last_ + 1;
}

void RaftLog::restore(const Snapshot& snapshot, std::vector<Entry> entries, uint64_t commit,
                      uint64_t applied) {
  RestoredState r;
  r.snapshot = snapshot;
  r.entries = std::move(entries);
  restore(r, nullptr, commit, applied);
}

uint64_t RaftLog::last_term() const {
  return term_starts_.empty() ? *snapshot_.term : term_starts_.back().second;
}

std::optional<uint64_t> RaftLog::term(uint64_t index) const {
  if (index == *snapshot_.index) return *snapshot_.term;
  if (index < *snapshot_.index || index > last_) return std::nullopt;
  auto it = std::upper_bound(term_starts_.begin(), term_starts_.end(), index,
                             [](uint64_t i, const auto& run) { return i < run.first; });
  SLUICE_ASSERT(it != term_starts_.begin());
  return std::prev(it)->second;
}

bool RaftLog::match_term(uint64_t index, uint64_t t) const {
  const auto mine = term(index);
  return mine && *mine == t;
}

bool RaftLog::is_up_to_date(uint64_t index, uint64_t t) const {
  return t > last_term() || (t == last_term() && index >= last_index());
}

size_t RaftLog::mem_pos(uint64_t index) const {
  SLUICE_ASSERT(index >= mem_first_ && index <= last_ && mem_size() > 0);
  auto begin = entries_.begin() + static_cast<ptrdiff_t>(head_);
  auto it = std::upper_bound(begin, entries_.end(), index,
                             [](uint64_t i, const Entry& e) { return i < *e.index; });
  return static_cast<size_t>(std::prev(it) - begin);
}

const Entry* RaftLog::find(uint64_t index) const {
  if (index < mem_first_ || index > last_) return nullptr;
  return &mem(mem_pos(index));
}

const Entry& RaftLog::at(uint64_t index) const {
  const Entry* e = find(index);
  SLUICE_ASSERT(e != nullptr);
  return *e;
}

std::optional<bool> RaftLog::is_entry_end(uint64_t index) const {
  if (index == *snapshot_.index || index == last_ || index + 1 == mem_first_) return true;
  if (index > last_) return false;
  if (index < *snapshot_.index) return std::nullopt;  // compacted: no longer known
  if (const Entry* e = find(index)) return e->last() == index;
  auto it = std::lower_bound(term_starts_.begin(), term_starts_.end(), index + 1,
                             [](const auto& run, uint64_t i) { return run.first < i; });
  if (it != term_starts_.end() && it->first == index + 1) return true;
  return std::nullopt;
}

uint64_t RaftLog::entry_start_at_or_before(uint64_t index) const {
  SLUICE_ASSERT(index >= first_index() && index <= last_);
  if (const Entry* e = find(index)) return *e->index;
  if (is_entry_end(index - 1) == true) return index;
  auto it = std::upper_bound(term_starts_.begin(), term_starts_.end(), index,
                             [](uint64_t i, const auto& run) { return i < run.first; });
  SLUICE_ASSERT(it != term_starts_.begin());
  return std::prev(it)->first;
}

// What the source returns is checked like peer input: whole entries from `lo`, contiguous,
// inside the part only the source holds, with the terms the table says.
std::vector<Entry> RaftLog::read_source(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  SLUICE_ASSERT(source_ != nullptr && lo <= hi && hi < mem_first_);
  std::vector<Entry> got = source_->entries(LogIndex{lo}, LogIndex{hi}, max_bytes);
  uint64_t next = lo, bytes = 0;
  size_t keep = 0;
  for (const Entry& e : got) {
    if (*e.index != next || e.width == 0 || e.last() >= mem_first_ || !match_term(next, *e.term)) {
      return {};
    }
    if (keep > 0 && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    ++keep;
    next = e.last() + 1;
    if (e.last() >= hi) break;
  }
  got.resize(keep);
  return got;
}

std::vector<Entry> RaftLog::slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  SLUICE_ASSERT(lo >= first_index());
  hi = std::min(hi, last_);
  std::vector<Entry> out;
  if (lo > hi) return out;
  uint64_t bytes = 0;
  if (lo < mem_first_) {
    const uint64_t src_hi = std::min(hi, mem_first_ - 1);
    out = read_source(lo, src_hi, max_bytes);
    if (out.empty() || out.back().last() < src_hi || src_hi == hi) return out;
    for (const Entry& e : out) bytes += e.data.size();
    lo = mem_first_;
  }
  for (size_t pos = mem_pos(lo); pos < mem_size() && *mem(pos).index <= hi; ++pos) {
    const Entry& e = mem(pos);
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  return out;
}

RaftLog::Conflict RaftLog::find_conflict(std::span<const Entry> entries) const {
  for (const Entry& e : entries) {
    const uint64_t i = *e.index;
    if (i > last_) return {i, false};
    const Entry* mine = find(i);
    if (!match_term(i, *e.term)) {
      // Our log is cut here: it must be one of our entry boundaries.
      return {i, mine != nullptr && *mine->index != i};
    }
    // One leader wrote every entry of a term: the same term means the same entry.
    if (mine != nullptr && (*mine->index != i || mine->width != e.width)) return {0, true};
  }
  return {0, false};
}

uint64_t RaftLog::find_conflict_by_term(uint64_t index, uint64_t t) const {
  index = std::min(index, last_);
  if (index <= *snapshot_.index) return index;
  auto it = std::upper_bound(term_starts_.begin(), term_starts_.end(), index,
                             [](uint64_t i, const auto& run) { return i < run.first; });
  SLUICE_ASSERT(it != term_starts_.begin());
  for (--it; it->second > t; --it) {  // skip whole runs of newer terms
    index = it->first - 1;
    if (it == term_starts_.begin()) return index;
  }
  if (const Entry* e = find(index); e != nullptr && e->last() != index) index = *e->index - 1;
  return index;
}

void RaftLog::push_back(std::span<const Entry> entries) {
  for (const Entry& e : entries) {
    SLUICE_ASSERT(*e.index == last_ + 1 && e.width >= 1);
    entries_.push_back(e);
    if (term_starts_.empty() || term_starts_.back().second != *e.term) {
      term_starts_.emplace_back(*e.index, *e.term);
    }
    if (e.type == EntryType::kConfig) confs_.push_back(e);
    last_ = e.last();
  }
}

void RaftLog::truncate_from(uint64_t from) {
  if (from > last_) return;
  if (from >= mem_first_) {
    const size_t pos = mem_pos(from);
    SLUICE_ASSERT(*mem(pos).index == from);
    entries_.resize(head_ + pos);
  } else {  // the whole in-memory part goes, and the source's part from `from` on
    entries_.clear();
    head_ = 0;
    mem_first_ = from;
  }
  if (clean_ > mem_size()) {
    clean_ = 0;
    clean_bytes_ = 0;
  }
  std::erase_if(term_starts_, [&](const auto& run) { return run.first >= from; });
  std::erase_if(confs_, [&](const Entry& e) { return *e.index >= from; });
  last_ = from - 1;
}

void RaftLog::append(std::span<const Entry> entries) {
  if (entries.empty()) return;
  const uint64_t from = *entries.front().index;
  SLUICE_ASSERT(from > committed_);  // a committed entry is never replaced
  SLUICE_ASSERT(from >= first_index() && from <= last_ + 1);
  truncate_from(from);
  push_back(entries);
  unsent_from_ = std::min(unsent_from_, from);
  stable_ = std::min(stable_, from - 1);
}

void RaftLog::commit_to(uint64_t index) {
  if (index <= committed_) return;
  SLUICE_ASSERT(index <= last_);
  if (const Entry* e = find(index); e != nullptr && e->last() != index) {
    index = *e->index - 1;  // never inside an entry
    if (index <= committed_) return;
  }
  committed_ = index;
}

void RaftLog::install(const Snapshot& snapshot) {
  SLUICE_ASSERT(*snapshot.index > committed_);
  reset_to(snapshot);
  committed_ = applied_ = *snapshot.index;
  stable_ = *snapshot.index;  // the driver persists it with the Ready that hands it out
  unsent_from_ = *snapshot.index + 1;
}

void RaftLog::compact(const Snapshot& snapshot) {
  const uint64_t index = *snapshot.index;
  SLUICE_ASSERT(index <= applied_);
  if (index <= *snapshot_.index) return;
  SLUICE_ASSERT(term(index) == *snapshot.term);
  SLUICE_ASSERT(is_entry_end(index) != false);  // never inside an entry
  if (index < last_) {
    const uint64_t next_term = *term(index + 1);
    std::erase_if(term_starts_, [&](const auto& run) { return run.first <= index + 1; });
    term_starts_.insert(term_starts_.begin(), {index + 1, next_term});
  } else {
    term_starts_.clear();
  }
  std::erase_if(confs_, [&](const Entry& e) { return *e.index <= index; });
  if (index >= mem_first_) drop_front(mem_pos(index) + 1);
  snapshot_ = snapshot;
  unsent_from_ = std::max(unsent_from_, index + 1);
}

void RaftLog::drop_front(size_t n) {
  SLUICE_ASSERT(n <= mem_size());
  if (n >= clean_) {
    clean_ = 0;
    clean_bytes_ = 0;
  } else {
    for (size_t i = 0; i < n; ++i) clean_bytes_ -= mem(i).data.size();
    clean_ -= n;
  }
  // The slots are erased in batches (below), but their payloads go now: a payload may keep a
  // whole buffer alive (a produced batch shares its request's), and up to 64 dropped slots per
  // group held on to them (12 busy partitions with 1 MB requests: 521 MB of RSS).
  for (size_t i = 0; i < n; ++i) entries_[head_ + i].data = Payload{};
  head_ += n;
  mem_first_ = mem_size() > 0 ? *mem(0).index : last_ + 1;
  if (head_ >= 64 && head_ * 2 >= entries_.size()) {  // erase in batches: O(1) amortized
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
}

void RaftLog::release(uint64_t max_cached_bytes) {
  if (source_ == nullptr) return;
  const uint64_t limit = std::min(stable_, applied_);
  while (clean_ < mem_size() && mem(clean_).last() <= limit) {
    clean_bytes_ += mem(clean_).data.size();
    ++clean_;
  }
  size_t n = 0;
  uint64_t bytes = clean_bytes_;
  while (n < clean_ && (max_cached_bytes == 0 || bytes > max_cached_bytes)) {
    bytes -= mem(n).data.size();
    ++n;
  }
  if (n > 0) drop_front(n);
}

std::vector<Entry> RaftLog::take_unsent() {
  std::vector<Entry> out;
  if (has_unsent()) {
    SLUICE_ASSERT(unsent_from_ >= mem_first_);  // only durable entries leave memory
    const size_t pos = mem_pos(unsent_from_);
    out.assign(entries_.begin() + static_cast<ptrdiff_t>(head_ + pos), entries_.end());
  }
  unsent_from_ = last_ + 1;
  return out;
}

std::vector<Entry> RaftLog::take_committed(uint64_t max_bytes, uint64_t up_to) {
  std::vector<Entry> out;
  uint64_t lo = std::max(applied_ + 1, first_index());
  const uint64_t limit = std::min(committed_, up_to);
  if (lo > limit) return out;
  uint64_t bytes = 0;
  if (lo < mem_first_) {
    const uint64_t hi = std::min(limit, mem_first_ - 1);
    out = read_source(lo, hi, max_bytes);
    while (!out.empty() && out.back().last() > limit) out.pop_back();
    if (out.empty()) {
      apply_blocked_ = true;  // until retry(): has_unapplied() must not spin on a failing read
      return out;
    }
    applied_ = out.back().last();
    if (applied_ < hi || hi == limit) return out;
    for (const Entry& e : out) bytes += e.data.size();
    lo = mem_first_;
  }
  for (size_t pos = mem_pos(lo); pos < mem_size() && mem(pos).last() <= limit; ++pos) {
    const Entry& e = mem(pos);
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  if (!out.empty()) applied_ = std::max(applied_, out.back().last());
  return out;
}

void RaftLog::stable_to(uint64_t index, uint64_t t) {
  if (match_term(index, t) && index > stable_) stable_ = index;
}

}  // namespace sluice::raft::detail
