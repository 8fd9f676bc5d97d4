// The leader's view of one peer's log: how far it matches, what to send next, and how many
// appends are in flight. Probe sends one append at a time until the follower's position is
// found; Replicate streams appends (pipelining) up to a bounded window; Snapshot waits for
// an InstallSnapshot to land.
#pragma once

#include <cstdint>
#include <deque>

namespace sluice::raft::detail {

enum class ProgressState : uint8_t { kProbe, kReplicate, kSnapshot };

struct Progress {
  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  bool probe_sent = false;        // kProbe: an append is out, wait for its answer
  std::deque<uint64_t> inflight;  // kReplicate: last index of each append in flight
  std::deque<uint64_t> inflight_sizes;  // ... and its payload bytes
  uint64_t inflight_bytes = 0;          // their sum
  uint32_t inflight_max = 64;
  uint64_t inflight_bytes_max = 0;  // 0: no bound on bytes (only on appends)
  bool recent_active = false;  // heard from within the last election timeout
  bool learner = false;
  uint64_t pending_snapshot = 0;  // kSnapshot: index of the snapshot sent
  uint32_t snapshot_ticks = 0;    // kSnapshot: ticks since it was sent, to resend if lost
  uint64_t lost_entries = 0;      // times the follower was found to have lost acknowledged entries

  bool paused() const;
  void become_probe();
  void become_replicate();
  void become_snapshot(uint64_t index);
  // An acknowledgement up to `index`; false if it is stale.
  bool maybe_update(uint64_t index);
  // A rejection of the append after `rejected`; false if it is stale. A rejection at or
  // below `match` with a hint below it is not stale but a follower that lost entries it had
  // acknowledged: `match` drops to the hint.
  bool maybe_decrease(uint64_t rejected, uint64_t hint);
  // Bookkeeping after sending an append ending at `last` with `bytes` of payload.
  void sent_entries(uint64_t last, uint64_t bytes = 0);
  void free_up_to(uint64_t index);
  void free_first();  // the oldest append in flight (a heartbeat answered while paused)
  void clear_inflight();
};

}  // namespace sluice::raft::detail
