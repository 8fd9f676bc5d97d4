// Durable storage of one Raft group, as the core's persistence contract asks (raft/node.h):
// a snapshot, the entries after it, and the hard state. FileRaftStorage keeps them in three
// files in one directory; it suits groups with small entries and few writes, such as the
// controller (group 0). Data partitions keep their entries in their segment log instead.
//
// Files in `dir`:
//   hardstate   term, vote, commit: written to a temporary file, fsynced, renamed, and the
//               directory fsynced, so it is always one whole generation;
//   snapshot    index, term, configuration and the state machine image, replaced the same way;
//   log         entries after the snapshot, each framed as
//               u32 length | u32 crc32c(rest) | u64 index | u64 term | u8 type | data.
//               A torn or corrupt tail (a crash mid-append) is cut at load; an entry that
//               replaces stored ones truncates the file at the first replaced entry.
// Blocking I/O: call it from a thread that may block (the controller has its own).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "replication/raft/node.h"

namespace sluice::raft {

class RaftStorage {
 public:
  virtual ~RaftStorage() = default;
  // What is durable now, for Node's constructor (applied = snapshot index).
  virtual Result<RestoredState> load() = 0;
  // Makes a Ready's snapshot, entries and hard state durable, in that order (fsync when
  // ready.must_sync).
  virtual Status persist(const Ready& ready) = 0;
  // Replaces the snapshot with one taken locally (Node::compact) and drops the entries it covers.
  virtual Status compact(const Snapshot& snapshot) = 0;
};

class FileRaftStorage final : public RaftStorage {
 public:
  explicit FileRaftStorage(std::string dir) : dir_(std::move(dir)) {}
  ~FileRaftStorage() override;
  FileRaftStorage(const FileRaftStorage&) = delete;
  FileRaftStorage& operator=(const FileRaftStorage&) = delete;

  // True when the directory holds a group's state (a hard state or a snapshot was written).
  static bool exists(const std::string& dir);

  Result<RestoredState> load() override;
  Status persist(const Ready& ready) override;
  Status compact(const Snapshot& snapshot) override;

  uint64_t log_bytes() const { return log_size_; }
  size_t entry_count() const { return positions_.size(); }
  // Set by load(): bytes cut from a torn or corrupt log tail.
  uint64_t truncated_bytes() const { return truncated_; }

 private:
  Status open_log();
  Status write_snapshot(const Snapshot& snapshot);
  Status write_hard_state(const HardState& hs);
  Status append(const std::vector<Entry>& entries);
  Status rewrite_log(uint64_t after_index);
  Status sync_log();

  std::string dir_;
  int log_fd_ = -1;
  uint64_t log_size_ = 0;
  uint64_t first_index_ = 1;  // index of positions_[0]
  std::vector<uint64_t> positions_;  // file offset of each stored entry
  uint64_t truncated_ = 0;
  Snapshot snapshot_;
  HardState hard_state_;
};

}  // namespace sluice::raft
