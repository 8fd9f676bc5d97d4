// The in-memory Raft log of one node: a snapshot base followed by contiguous entries, and
// the cursors that track what was handed to the driver (unsent), made durable (stable),
// committed and applied. Entries share their payload buffers, so slicing is cheap.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "replication/raft/types.h"

namespace sluice::raft::detail {

class RaftLog {
 public:
  // `entries` must start at snapshot.index + 1. Recovered entries count as durable.
  void restore(const Snapshot& snapshot, std::vector<Entry> entries, uint64_t commit,
               uint64_t applied);

  uint64_t first_index() const { return *snapshot_.index + 1; }
  uint64_t last_index() const { return *snapshot_.index + entries_.size(); }
  uint64_t last_term() const;
  // The term at `index`, known for snapshot.index..last_index.
  std::optional<uint64_t> term(uint64_t index) const;
  bool match_term(uint64_t index, uint64_t term) const;
  // Raft's election restriction: is a log ending at (index, term) at least as new as ours?
  bool is_up_to_date(uint64_t index, uint64_t term) const;
  const Entry& at(uint64_t index) const;
  // Entries lo..hi (inclusive), stopping once max_bytes of payload is reached (at least one).
  std::vector<Entry> slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  // The index of the first entry in `entries` that is new or conflicts with ours; 0 if none.
  uint64_t find_conflict(std::span<const Entry> entries) const;
  // The largest index <= `index` whose term is <= `term` (fast back-off).
  uint64_t find_conflict_by_term(uint64_t index, uint64_t term) const;

  // Appends entries, truncating our log from entries[0].index first. Never truncates a
  // committed entry.
  void append(std::span<const Entry> entries);
  void commit_to(uint64_t index);
  // Replaces the whole log by `snapshot` (a follower installing the leader's image).
  void install(const Snapshot& snapshot);
  // Drops entries up to `snapshot.index` (<= applied), keeping the rest.
  void compact(const Snapshot& snapshot);

  // Driver hand-off.
  bool has_unsent() const { return unsent_from_ <= last_index(); }
  std::vector<Entry> take_unsent();
  bool has_unapplied() const { return applied_ < committed_; }
  // Committed entries not yet handed out, up to max_bytes of payload (at least one).
  std::vector<Entry> take_committed(uint64_t max_bytes = UINT64_MAX);
  void stable_to(uint64_t index, uint64_t term);

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  uint64_t stable() const { return stable_; }
  const Snapshot& snapshot() const { return snapshot_; }
  std::span<const Entry> entries() const { return entries_; }

 private:
  Snapshot snapshot_;  // the base: entries_[0] is at snapshot_.index + 1
  std::vector<Entry> entries_;
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;      // handed out in Ready::committed
  uint64_t stable_ = 0;       // reported durable by the driver
  uint64_t unsent_from_ = 1;  // first index not yet handed out in Ready::entries
};

}  // namespace sluice::raft::detail
