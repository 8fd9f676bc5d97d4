// The broker's data directory as a whole: its lock, the names of what lives in it (partition
// directories, deletion tombstones, set-aside leftovers) and the directory operations that
// must be durable (fsync of the parent after a create or rename).
//
// Layout of <data>:
//   .lock                           flock()ed by the one sluiced using the directory
//   metadata.bin, metadata.bin.prev the metadata image and its previous generation
//   <topic>-<partition>/            a partition (log/ owns what is inside)
//   <topic>-<partition>.<id>-delete a partition being deleted: <id> is the topic id (hex);
//                                   removed in the background, or at the next start
//   <topic>-<partition>.<ms>-orphan a directory no topic owned when a topic of that name was
//                                   created; kept for the operator, removed by --sweep-orphans
//
// Thread: any; these are plain blocking file system calls (start-up, topic create/delete).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sluice::broker {

// Holds an exclusive flock on <data>/.lock for its lifetime (Kafka's .lock). The lock dies
// with the process, so a SIGKILLed broker never leaves a stale lock behind.
class DataDirLock {
 public:
  // Fails at once, saying which process holds it, if another sluiced uses `data_dir`.
  static Result<DataDirLock> acquire(const std::string& data_dir);
  DataDirLock(DataDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  DataDirLock& operator=(DataDirLock&& o) noexcept;
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

struct PartitionDirName {
  std::string topic;
  int32_t partition = 0;
};

// "<topic>-<n>" -> {topic, n}; nullopt for anything else.
std::optional<PartitionDirName> parse_partition_dir(std::string_view name);

enum class DirKind : uint8_t { kPartition, kTombstone, kOrphan };

// One entry of the data directory that matters to the broker.
struct DataDirEntry {
  DirKind kind = DirKind::kPartition;
  std::string name;  // file name inside the data directory
  PartitionDirName partition;
  std::string tag;  // tombstone: the topic id in hex; orphan: the time it was set aside
};

// The partition directories, tombstones and set-aside directories in `data_dir`, by name.
Result<std::vector<DataDirEntry>> scan_data_dir(const std::string& data_dir);

std::string hex_id(const std::array<uint8_t, 16>& id);
std::string tombstone_name(const PartitionDirName& p, const std::array<uint8_t, 16>& topic_id);

// fsync()s a directory, so that entries created, renamed or removed in it are durable.
Status fsync_dir(const std::string& dir);
// rename() within the data directory, then fsync of the data directory.
Status rename_durably(const std::string& data_dir, const std::string& from, const std::string& to);

// Moves directories <topic>-<first..last-1> that exist (left over from an earlier topic of
// the same name) aside as orphans, durably, so a new topic never picks up their data.
// Returns how many were moved.
Result<int> set_aside_leftovers(const std::string& data_dir, const std::string& topic,
                                int32_t first, int32_t last);

// Crash points for tests: when the environment variable SLUICE_CRASH_POINT equals `name`,
// the process kills itself with SIGKILL here (after a log line), as a power cut would.
void crash_point(const char* name);

}  // namespace sluice::broker
