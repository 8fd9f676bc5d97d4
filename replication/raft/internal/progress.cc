#include "replication/raft/internal/progress.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::raft::detail {

bool Progress::paused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      // The bytes bound lets one append out beyond it (at least one is always in flight).
      return inflight.size() >= inflight_max ||
             (inflight_bytes_max > 0 && inflight_bytes >= inflight_bytes_max);
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

void Progress::become_probe() {
  // After a snapshot, resume right after it (it may have landed even if unacknowledged).
  if (state == ProgressState::kSnapshot) {
    next = std::max(match + 1, pending_snapshot + 1);
  } else {
    next = match + 1;
  }
  state = ProgressState::kProbe;
  probe_sent = false;
  clear_inflight();
  pending_snapshot = 0;
}

void Progress::become_replicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  probe_sent = false;
  clear_inflight();
  pending_snapshot = 0;
}

void Progress::become_snapshot(uint64_t index) {
  state = ProgressState::kSnapshot;
  probe_sent = false;
  clear_inflight();
  pending_snapshot = index;
  snapshot_ticks = 0;
}

bool Progress::maybe_update(uint64_t index) {
  bool updated = false;
  if (match < index) {
    match = index;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, index + 1);
  SLUICE_ASSERT(next > match);
  return updated;
}

bool Progress::maybe_decrease(uint64_t rejected, uint64_t hint) {
  if (rejected <= match && hint < match &&
      (state == ProgressState::kReplicate || next - 1 == rejected)) {
    // The follower refuses an index it acknowledged and says its log ends below it: its disk
    // lost entries (Raft assumes it never does). Everything up to the hint still matches
    // ours (it matched up to `match` in this term, and only this leader writes to it in this
    // term), so start over from there; waiting for `match + 1` would wait forever.
    match = hint;
    next = hint + 1;
    lost_entries += 1;
    if (state == ProgressState::kReplicate) clear_inflight();
    probe_sent = false;
    return true;
  }
  if (state == ProgressState::kReplicate) {
    if (rejected <= match) return false;  // stale: an older append was rejected
    next = match + 1;
    return true;
  }
  if (next - 1 != rejected) return false;  // stale: not an answer to our latest probe
  next = std::max(std::min(rejected, hint + 1), match + 1);
  probe_sent = false;
  SLUICE_ASSERT(next >= 1);
  return true;
}

void Progress::sent_entries(uint64_t last, uint64_t bytes) {
  if (state == ProgressState::kReplicate) {
    SLUICE_ASSERT(!paused());
    next = last + 1;
    inflight.push_back(last);
    inflight_sizes.push_back(bytes);
    inflight_bytes += bytes;
  } else if (state == ProgressState::kProbe) {
    probe_sent = true;
  }
}

void Progress::free_up_to(uint64_t index) {
  while (!inflight.empty() && inflight.front() <= index) free_first();
}

void Progress::free_first() {
  SLUICE_ASSERT(!inflight.empty());
  inflight.pop_front();
  inflight_bytes -= inflight_sizes.front();
  inflight_sizes.pop_front();
}

void Progress::clear_inflight() {
  inflight.clear();
  inflight_sizes.clear();
  inflight_bytes = 0;
}

}  // namespace sluice::raft::detail
