// The Raft log of one node: a snapshot base followed by contiguous entries, and the cursors
// that track what was handed to the driver (unsent), made durable (stable), committed and
// applied. Entries share their payload buffers, so slicing is cheap.
//
// An entry spans `width` indexes; every cursor (stable, committed, applied, a peer's match)
// is the last index of some entry. A table of term starts covers the whole log from the
// snapshot on, so term(i) never needs the entries themselves.
//
// Without a LogSource every entry since the snapshot is in memory. With one, memory holds the
// entries from mem_first() on; (snapshot.index, mem_first()) is durable and read back through
// the source when needed (slice, take_committed). release() drops durable, applied entries
// beyond Config::max_cached_bytes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "replication/raft/types.h"

namespace sluice::raft::detail {

class RaftLog {
 public:
  // Restored entries count as durable. With restored.source_last > 0, `source` must be set.
  void restore(const RestoredState& restored, LogSource* source, uint64_t commit,
               uint64_t applied);
  // Without a source: `entries` must start at snapshot.index + 1.
  void restore(const Snapshot& snapshot, std::vector<Entry> entries, uint64_t commit,
               uint64_t applied);

  uint64_t first_index() const { return *snapshot_.index + 1; }
  uint64_t last_index() const { return last_; }
  uint64_t last_term() const;
  // The first index held in memory (first_index() without a source).
  uint64_t mem_first() const { return mem_first_; }
  // The term at `index`, known for snapshot.index..last_index (from the term table).
  std::optional<uint64_t> term(uint64_t index) const;
  bool match_term(uint64_t index, uint64_t term) const;
  // Raft's election restriction: is a log ending at (index, term) at least as new as ours?
  bool is_up_to_date(uint64_t index, uint64_t term) const;
  // The in-memory entry containing `index`, or null (not in memory).
  const Entry* find(uint64_t index) const;
  // The entry containing `index`, which must be in memory.
  const Entry& at(uint64_t index) const;
  // Whether `index` ends an entry (or is the snapshot index); false past the last index.
  // Outside memory only the boundaries the term table and the memory edge prove are known
  // (nullopt elsewhere, and below the snapshot).
  std::optional<bool> is_entry_end(uint64_t index) const;
  // An entry start at or before `index` (first_index() <= index <= last_index()): the start
  // of the entry containing it when in memory, `index` when known to start one, else the
  // start of its term run.
  uint64_t entry_start_at_or_before(uint64_t index) const;
  // Whole entries from the one starting at `lo` through the one containing `hi`, stopping
  // once max_bytes of payload is reached (at least one). `lo` inside an in-memory entry backs
  // up to its start. Empty if the source could not supply them.
  std::vector<Entry> slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  // How incoming entries (contiguous, from a peer) compare with ours.
  struct Conflict {
    uint64_t index = 0;      // the first entry that is new or conflicts with ours; 0 if none
    bool malformed = false;  // an entry matches our term but not our entry boundaries
  };
  Conflict find_conflict(std::span<const Entry> entries) const;
  // The largest entry end <= `index` whose term is <= `term` (fast back-off). In the part
  // only the source holds, `index` itself may be returned without knowing it ends an entry.
  uint64_t find_conflict_by_term(uint64_t index, uint64_t term) const;

  // Appends entries, truncating our log from entries[0].index first (an entry boundary).
  // Never truncates a committed entry.
  void append(std::span<const Entry> entries);
  // Commits up to `index`, rounded down to an entry end when that is known.
  void commit_to(uint64_t index);
  // Replaces the whole log by `snapshot` (a follower installing the leader's image).
  void install(const Snapshot& snapshot);
  // Drops entries up to `snapshot.index` (<= applied, an entry end), keeping the rest.
  void compact(const Snapshot& snapshot);

  // Driver hand-off.
  bool has_unsent() const { return unsent_from_ <= last_index(); }
  std::vector<Entry> take_unsent();
  bool has_unapplied() const { return applied_ < apply_limit() && !apply_blocked_; }
  // Committed entries not yet handed out, up to max_bytes of payload (at least one), and not
  // past `limit` (apply_limit() taken before this Ready's take_unsent()). Empty, and
  // has_unapplied() false until retry(), when the source fails.
  std::vector<Entry> take_committed(uint64_t max_bytes = UINT64_MAX, uint64_t limit = UINT64_MAX);
  // How far committed entries may be handed out: the commit index, but only up to the stable
  // log while entries handed out in earlier Readies are not yet reported durable (a driver
  // persisting them asynchronously, Node::persisted()): as etcd's asynchronous storage
  // writes, nothing is applied ahead of this node's own durable log.
  uint64_t apply_limit() const {
    return stable_ + 1 < unsent_from_ ? std::min(committed_, stable_) : committed_;
  }
  void stable_to(uint64_t index, uint64_t term);
  // With a source: drops durable, applied entries from memory beyond `max_cached_bytes` of
  // payload (the newest are kept).
  void release(uint64_t max_cached_bytes);
  void retry() { apply_blocked_ = false; }  // a failed source read may be tried again

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  uint64_t stable() const { return stable_; }
  const Snapshot& snapshot() const { return snapshot_; }
  // The entries held in memory (from mem_first()).
  std::span<const Entry> entries() const {
    return std::span<const Entry>(entries_).subspan(head_);
  }
  // kConfig entries in the log after the snapshot (in or out of memory), in order.
  std::span<const Entry> conf_entries() const { return confs_; }
  // (first index, term) of every term run after the snapshot.
  std::span<const std::pair<uint64_t, uint64_t>> term_starts() const { return term_starts_; }

 private:
  size_t mem_size() const { return entries_.size() - head_; }
  const Entry& mem(size_t i) const { return entries_[head_ + i]; }
  size_t mem_pos(uint64_t index) const;  // position of the in-memory entry containing index
  void reset_to(const Snapshot& snapshot);  // no entries after `snapshot`
  void truncate_from(uint64_t from);
  void push_back(std::span<const Entry> entries);  // after last_index(), keeping the tables
  void drop_front(size_t n);
  std::vector<Entry> read_source(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;

  Snapshot snapshot_;
  LogSource* source_ = nullptr;
  uint64_t last_ = 0;
  uint64_t mem_first_ = 1;
  std::vector<Entry> entries_;  // from entries_[head_] (at mem_first_) to the last entry
  size_t head_ = 0;             // dropped entries not yet erased from the vector
  std::vector<std::pair<uint64_t, uint64_t>> term_starts_;  // (first index, term) per run
  std::vector<Entry> confs_;
  size_t clean_ = 0;            // leading in-memory entries that are durable and applied
  uint64_t clean_bytes_ = 0;    // their payload
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;      // handed out in Ready::committed
  uint64_t stable_ = 0;       // reported durable by the driver
  uint64_t unsent_from_ = 1;  // first index not yet handed out in Ready::entries
  bool apply_blocked_ = false;
};

}  // namespace sluice::raft::detail
