// The Raft driver for one group: owns a raft::Node and its durable storage, and runs the
// persistence contract of raft/node.h on every Ready: persist (fsync when asked), then send,
// then advance, then apply. Ticks, peer messages and proposals come in from the owner's thread
// (the io_context that runs the group); nothing here locks or spawns threads.
//
// This driver persists synchronously through RaftStorage, so its thread may block on fsync:
// the controller (group 0) runs on its own thread for that reason.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "replication/driver/raft_storage.h"
#include "replication/raft/node.h"

namespace sluice::raft {

struct GroupCallbacks {
  std::function<void(const Message&)> send;            // after the state behind it is durable
  std::function<void(const Entry&)> apply;             // committed kNormal entries, in order
  std::function<void()> applied;                       // after a Ready's entries were applied
  std::function<Status(const Snapshot&)> restore;      // a snapshot replaced the state machine
  std::function<void()> on_change;                     // role, leader or term changed
};

class RaftGroup {
 public:
  RaftGroup(uint64_t group_id, Config config, RaftStorage& storage, GroupCallbacks callbacks);

  // Loads the durable state (or bootstraps `initial` when there is none and `initial` has
  // voters) and builds the node. Committed entries after the snapshot are applied again.
  Status start(const ConfState& initial);

  void tick();
  void step(const Message& message);
  // Appends a proposal; call process() after recording what waits for it (a single voter
  // commits and applies it within process()).
  Result<LogIndex, Errc> propose(Payload payload);
  // Runs the Ready loop: persist, send, advance, apply.
  void process();
  void campaign();
  Result<void, Errc> transfer_leadership(NodeId to);

  // Takes a snapshot of the state machine at the applied index when more than `threshold`
  // entries are held since the last one; `image` serialises the state machine.
  Status maybe_compact(uint64_t threshold, const std::function<Payload()>& image);

  uint64_t id() const { return id_; }
  bool is_leader() const { return node_ && node_->role() == Role::kLeader; }
  NodeId leader() const { return node_ ? node_->leader() : kNoNode; }
  Term term() const { return node_ ? node_->term() : Term(0); }
  LogIndex applied() const { return applied_; }
  NodeStatus status() const { return node_->status(); }
  Node& node() { return *node_; }
  // A storage failure stops the group: it no longer takes part (it could break promises).
  bool failed() const { return failed_; }

 private:
  uint64_t id_;
  Config config_;
  RaftStorage& storage_;
  GroupCallbacks cb_;
  std::unique_ptr<Node> node_;
  LogIndex applied_;
  bool failed_ = false;
  NodeId last_leader_ = kNoNode;
  Term last_term_;
  Role last_role_ = Role::kFollower;
};

}  // namespace sluice::raft
