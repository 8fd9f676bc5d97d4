// Test support: a Raft message with every field set, for round-trip tests.
#pragma once

#include <string>

#include "replication/raft/types.h"

namespace sluice::transport::testing {

// Every scalar set, three entries (data of `entry_bytes`, a no-op, a configuration), and for
// kSnapshot a snapshot with `snapshot_bytes` of data and voters and learners. From 1 to 2.
inline raft::Message full_message(raft::MessageType type, size_t entry_bytes = 5,
                                  size_t snapshot_bytes = 5) {
  using raft::NodeId;
  raft::Message m;
  m.type = type;
  m.from = NodeId{1};
  m.to = NodeId{2};
  m.term = Term{9};
  m.log_term = Term{8};
  m.index = LogIndex{100};
  m.commit = LogIndex{99};
  m.reject_hint = LogIndex{98};
  m.reject = true;
  m.force = true;
  m.quiesce = true;
  m.entries.push_back({LogIndex{101}, Term{8}, raft::EntryType::kNormal,
                       raft::Payload::copy_of(std::string(entry_bytes, 'a'))});
  m.entries.push_back({LogIndex{102}, Term{9}, raft::EntryType::kNoop, raft::Payload()});
  // Entries may be wider than one index (a batch of n records spans n).
  m.entries.push_back({LogIndex{106}, Term{9}, raft::EntryType::kConfig,
                       raft::encode_conf_state({.voters = {NodeId{1}, NodeId{2}},
                                                .learners = {NodeId{5}}})});
  if (type == raft::MessageType::kSnapshot) {
    m.snapshot = raft::Snapshot{.index = LogIndex{90},
                                .term = Term{7},
                                .conf = {.voters = {NodeId{1}, NodeId{2}, NodeId{3}},
                                         .learners = {NodeId{4}}},
                                .data = raft::Payload::copy_of(std::string(snapshot_bytes, 's'))};
  }
  return m;
}

}  // namespace sluice::transport::testing
