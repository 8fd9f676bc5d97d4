// In-memory state of one segment and the file helpers PartitionLog uses. Indexes stay on
// disk and are searched with pread (bounded memory whatever the number of segments).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "log/errc.h"
#include "log/fd_cache.h"
#include "log/format.h"

namespace sluice::log::detail {

inline constexpr int64_t kNoTimestamp = std::numeric_limits<int64_t>::min();

// Encoded index entries of one file waiting for the ring (PartitionLog::queue_index()).
struct IndexQueue {
  std::vector<std::byte> queued;  // after the write in flight, not yet submitted
  uint64_t queued_entries = 0;
  uint64_t writing_entries = 0;  // in the write in flight (0: none)
  uint64_t pending() const { return queued_entries + writing_entries; }
};

struct Segment {
  int64_t base_offset = 0;
  int64_t end_offset = 0;      // one past the last offset of the last batch
  uint64_t size_bytes = 0;     // bytes of batches assigned to this segment
  uint64_t written_bytes = 0;  // of which written (contiguously from 0)
  uint64_t index_entries = 0;  // entries in the .index file
  uint64_t time_entries = 0;   // entries in the .timeindex file
  uint64_t bytes_since_index = 0;
  int64_t max_timestamp = kNoTimestamp;  // of the batches in the segment
  int64_t corrupt_from = -1;             // offsets >= this are damaged and never served
  uint64_t corrupt_position = 0;         // with corrupt_from: the byte the damage starts at
  int64_t created_ms = 0;
  bool active = false;
  bool preallocated = false;  // the .log file extends past size_bytes with zeros
  uint64_t allocated_bytes = 0;  // the .log file's length while preallocated
  bool fallocate_in_flight = false;  // a preallocation step is in the ring
  // LogConfig::zero_ahead: while a step's zeros are in the ring, where they start (else
  // UINT64_MAX); data writes that reach past it wait for them (held_writes_).
  uint64_t zeroing_from = UINT64_MAX;
  uint64_t zeroed_bytes = 0;  // zero_ahead: the .log file is written (zeros or data) up to here
  bool trim_in_flight = false;       // sealed: the ftruncate of the preallocated tail is in the ring
  bool dirty = false;         // written since its last fdatasync
  bool unsynced = false;      // closed, but the .log and indexes are not yet fdatasync'd
  // Index entries go to disk through the ring, one write per file at a time, so that the
  // entries on disk are always a prefix: [0, entries - pending()) of each file.
  IndexQueue index_queue;
  IndexQueue time_queue;
  // Read-write handles, held while the segment is active or unsynced; otherwise reads go
  // through the shard's FdCache.
  std::shared_ptr<FileHandle> log_rw;
  std::shared_ptr<FileHandle> index_rw;
  std::shared_ptr<FileHandle> time_rw;
  std::string log_path;
  std::string index_path;
  std::string time_path;

  // The three read-write handles beside their files' paths, in the order .log, .index,
  // .timeindex.
  struct RwFile {
    std::shared_ptr<FileHandle>* handle;
    const std::string* path;
  };
  std::array<RwFile, 3> rw_files() {
    return {RwFile{&log_rw, &log_path}, RwFile{&index_rw, &index_path},
            RwFile{&time_rw, &time_path}};
  }

  uint64_t index_on_disk() const { return index_entries - index_queue.pending(); }
  uint64_t time_on_disk() const { return time_entries - time_queue.pending(); }
  // Nothing of this segment's own in the ring but its data writes (which pending_writes_ tracks).
  bool side_ops_idle() const {
    return index_queue.pending() == 0 && time_queue.pending() == 0 && !fallocate_in_flight &&
           !trim_in_flight;
  }
};

// A segment's .index and .timeindex, built from its batches visited in order (recovery's
// rebuild and compaction's rewrite): an entry every `interval` bytes, the first batch always.
struct IndexBuilder {
  IndexBuilder(int64_t base_offset, uint64_t interval)
      : base(base_offset), interval(interval), since_index(interval) {}
  void add(uint64_t position, uint64_t size_bytes, int64_t batch_base_offset,
           int64_t batch_max_timestamp);

  int64_t base;
  uint64_t interval;
  std::vector<std::byte> index, time;  // the files' bytes
  uint64_t since_index;                // bytes since the last index entry
  int64_t prefix_max = kNoTimestamp;   // max timestamp of the batches added
};

// The header fields recovery and reads need, from a batch header read off disk.
struct BatchHeader {
  uint64_t position = 0;
  uint64_t size_bytes = 0;
  int64_t base_offset = 0;
  int64_t last_offset = 0;
  int64_t max_timestamp = 0;
  int32_t leader_epoch = -1;
  int32_t record_count = 0;  // 0: a batch compaction emptied
};

LogResult<void> pread_full(int fd, MutableBytes out, uint64_t position);
LogResult<void> pwrite_full(int fd, Bytes in, uint64_t position);
LogResult<uint64_t> file_size(int fd);
LogResult<void> truncate_file(int fd, uint64_t size);

// Reads and checks (not the CRC) the header of the batch at `position`, which must end at or
// before `limit`. kCorrupt when it does not.
LogResult<BatchHeader> read_batch_header(int fd, uint64_t position, uint64_t limit);
// The same checks on a header already read: the kBatchHeaderBytes at `header`, found at
// `position` of a file whose readable bytes end at `limit`.
LogResult<BatchHeader> parse_batch_header(const std::byte* header, uint64_t position,
                                          uint64_t limit);

// The last .index entry with offset <= `offset`, or {base, 0} when there is none.
LogResult<IndexEntry> index_floor(int fd, uint64_t entries, int64_t base, int64_t offset);
// How many .index entries have offset < `offset`.
LogResult<uint64_t> index_count_below(int fd, uint64_t entries, int64_t base, int64_t offset);
// The last .timeindex entry with timestamp < `timestamp`, if any.
LogResult<std::optional<TimeEntry>> time_floor(int fd, uint64_t entries, int64_t base,
                                               int64_t timestamp);
// How many .timeindex entries have offset < `offset`.
LogResult<uint64_t> time_count_below(int fd, uint64_t entries, int64_t base, int64_t offset);
LogResult<TimeEntry> read_time_entry(int fd, int64_t base, uint64_t i);
LogResult<IndexEntry> read_index_entry(int fd, int64_t base, uint64_t i);

}  // namespace sluice::log::detail
