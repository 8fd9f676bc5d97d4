#include "replication/driver/raft_group.h"

#include <spdlog/spdlog.h>

namespace sluice::raft {

RaftGroup::RaftGroup(uint64_t group_id, Config config, RaftStorage& storage,
                     GroupCallbacks callbacks)
    : id_(group_id), config_(config), storage_(storage), cb_(std::move(callbacks)) {}

Status RaftGroup::start(const ConfState& initial) {
  auto restored = storage_.load();
  if (!restored) return unexpected(std::move(restored).error());
  RestoredState state = std::move(*restored);
  const bool fresh = *state.hard_state.term == 0 && state.snapshot.empty() && state.entries.empty();
  if (fresh && !initial.voters.empty()) {
    state = bootstrap(initial);
    // The bootstrap entry is durable before anything depends on it.
    Ready r;
    r.entries = state.entries;
    r.hard_state = state.hard_state;
    r.must_sync = true;
    if (auto s = storage_.persist(r); !s) return s;
  }
  if (!state.snapshot.empty() && cb_.restore) {
    if (auto s = cb_.restore(state.snapshot); !s) return s;
  }
  applied_ = state.applied;
  node_ = std::make_unique<Node>(config_, state);
  process();
  return {};
}

void RaftGroup::tick() {
  if (failed_) return;
  node_->tick();
  process();
}

void RaftGroup::step(const Message& message) {
  if (failed_) return;
  node_->step(message);
  process();
}

Result<LogIndex, Errc> RaftGroup::propose(Payload payload) {
  if (failed_) return unexpected(Errc::kNotLeader);
  return node_->propose(std::move(payload));
}

void RaftGroup::campaign() {
  if (failed_) return;
  node_->campaign();
  process();
}

Result<void, Errc> RaftGroup::transfer_leadership(NodeId to) {
  if (failed_) return unexpected(Errc::kNotLeader);
  auto r = node_->transfer_leadership(to);
  process();
  return r;
}

void RaftGroup::process() {
  while (!failed_ && node_->has_ready()) {
    Ready ready = node_->take_ready();
    if (auto s = storage_.persist(ready); !s) {
      spdlog::error("raft group {}: storage failed, the replica stops: {}", id_,
                    s.error().message);
      failed_ = true;
      return;
    }
    if (ready.snapshot && cb_.restore) {
      if (auto s = cb_.restore(*ready.snapshot); !s) {
        spdlog::error("raft group {}: cannot install snapshot at {}: {}", id_,
                      *ready.snapshot->index, s.error().message);
        failed_ = true;
        return;
      }
      applied_ = ready.snapshot->index;
    }
    for (const Message& m : ready.messages) cb_.send(m);
    node_->advance(ready.persisted());
    bool applied = false;
    for (const Entry& e : ready.committed) {
      if (*e.index <= *applied_) continue;
      if (e.type == EntryType::kNormal && cb_.apply) {
        cb_.apply(e);
        applied = true;
      }
      applied_ = e.index;
    }
    if (applied && cb_.applied) cb_.applied();
  }
  const Role role = node_->role();
  if (role != last_role_ || node_->leader() != last_leader_ || node_->term() != last_term_) {
    last_role_ = role;
    last_leader_ = node_->leader();
    last_term_ = node_->term();
    if (cb_.on_change) cb_.on_change();
  }
}

Status RaftGroup::maybe_compact(uint64_t threshold, const std::function<Payload()>& image) {
  if (failed_) return {};
  const NodeStatus st = node_->status();
  if (*applied_ < *st.first_index + threshold) return {};
  Snapshot snap = node_->compact(applied_, image());
  if (auto s = storage_.compact(snap); !s) {
    spdlog::error("raft group {}: compaction failed: {}", id_, s.error().message);
    return s;
  }
  process();
  return {};
}

}  // namespace sluice::raft
