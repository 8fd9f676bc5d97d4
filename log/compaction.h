// Log compaction (cleanup.policy=compact): closed segments are rewritten keeping only the
// latest record of each key. Offsets never change: a batch keeps its base offset and its last
// offset delta, its surviving records keep their offset deltas (so a batch may hold fewer
// records, or none: an empty batch still spans its offsets, since segments are read as
// contiguous runs of batches). A batch whose records all survive is copied byte for byte.
// Tombstones (null values) that are the latest for their key are removed once their batch
// is older than delete.retention.ms. The records of aborted transactions go
// (CompactionOptions::aborted). With CompactionOptions::producers (the broker's producers'
// table), transaction markers go too, as Kafka's cleaner removes them: see `Producers`.
//
// A pass works as Kafka's log cleaner does, in memory bounded by the caller:
//  1. An OffsetMap (key digest -> latest offset, fixed-size slots, at most `map_bytes`) is
//     filled from the dirty part of the log: the closed segments from the first offset not
//     yet cleaned (`dirty_from`) on, until the map is full or the segments end. Where it
//     stopped is `map_end` (a record's offset: a batch with more keys than the map holds is
//     mapped over several passes).
//  2. Every closed segment that starts before `map_end` is streamed through the map: a record
//     goes when the map holds a later offset for its key. A tombstone that is the latest for its
//     key goes when it is below `map_end` (so an earlier pass or this one removed every older
//     record of its key) and older than delete.retention.ms. A segment that would shrink is
//     written beside itself (`.log.cleaned`, `.index.cleaned`, `.timeindex.cleaned`, each
//     fdatasync'd) with its indexes built from the new bytes.
//  3. The owner of the log installs each rewritten segment (PartitionLog::
//     install_cleaned_segment: the new .log exchanged with the old, which is set aside and
//     removed through the ring; the directory synced by the next flush), refusing one whose
//     segment changed meanwhile or whose log was truncated since the pass began
//     (PartitionLog::history), and then moves the log's first dirty offset to `map_end`. A
//     replica compacts only what is committed (below its high watermark), which Raft never
//     truncates.
// Steps 1 and 2 read only closed segments' files by path and write only side files, so they run
// on any thread (the broker's cleaner thread) while the log's shard goes on serving; memory is
// the map plus two I/O buffers whatever the size of the log or its segments.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "log/errc.h"
#include "log/log.h"

namespace sluice::log {

// Key -> latest offset in memory fixed up front, as Kafka's cleaner keeps it: a key is stored
// as the first 16 bytes of its SHA-256 digest (a collision needs 2^64 keys, and cannot be
// crafted by a producer), with its offset: 24 bytes a slot, open addressing, filled to 3/4.
// The slots grow by doubling up to the bound, so a small log never holds the whole budget.
class OffsetMap {
 public:
  static constexpr uint64_t kSlotBytes = 24;
  explicit OffsetMap(uint64_t max_bytes);
  ~OffsetMap();
  OffsetMap(const OffsetMap&) = delete;
  OffsetMap& operator=(const OffsetMap&) = delete;

  // Stores `offset` for `key` (later calls win). False, storing nothing, when the key is new
  // and the map is full.
  bool put(Bytes key, int64_t offset);
  int64_t get(Bytes key) const;  // -1 when the key is not in the map
  uint64_t size() const { return size_; }
  uint64_t max_entries() const { return max_entries_; }
  uint64_t memory_bytes() const { return slots_.size() * kSlotBytes; }
  void clear();

 private:
  struct Slot {
    uint64_t a = 0, b = 0;
    int64_t offset = -1;  // -1: empty
  };
  void digest(Bytes key, uint64_t& a, uint64_t& b) const;
  Slot* find(uint64_t a, uint64_t b);
  void grow();

  std::vector<Slot> slots_;
  uint64_t size_ = 0;
  uint64_t max_slots_ = 0;
  uint64_t max_entries_ = 0;
  struct Digest;
  std::unique_ptr<Digest> digest_;
};

// An aborted transaction of the log: its producer's transactional batches from first_offset to
// last_offset (its abort marker).
struct AbortedRange {
  int64_t producer_id = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
};

struct CompactionOptions {
  int64_t now_ms = 0;
  int64_t delete_retention_ms = 24 * 3600 * 1000;  // delete.retention.ms
  uint64_t map_bytes = 32u << 20;                  // the OffsetMap's bound for a pass
  uint32_t index_interval_bytes = 4096;            // index.interval.bytes of the rewrites
  uint32_t io_buffer_bytes = 1u << 20;             // read and write buffers (grow for a batch)
  // The log's aborted transactions, sorted by producer id, then first offset: their records
  // go, and are never taken for a key's latest (as Kafka's cleaner does). Markers stay.
  // The caller compacts only below the last stable offset, so no open transaction is in reach.
  std::vector<AbortedRange> aborted;

  // Set: transaction markers go once no batch of their transaction is left, and producers'
  // emptied batches merge, as Kafka's cleaner does; unset: both stay as they are. A pass then
  // cleans the closed segments from the log's start in order with one MarkerScan, and:
  //  - a producer's data batch left without records merges into the run of empty batches
  //    around it (producer id -1), unless it is the producer's last batch (`last_batch`): that
  //    one stays (a restart reads the producer's sequence from it), as an idempotent batch no
  //    longer marked transactional (a transactional batch opens a transaction on replay);
  //  - a marker goes (merges the same way) when no transactional batch of its producer was in
  //    the pass's input since that producer's previous marker (the batches are cleared first,
  //    the marker a pass later: a pass whose earlier segment did not install keeps it), its
  //    batch is older than delete.retention.ms, and it is not in `kept_markers`.
  struct Producers {
    // producer id -> base offset of its last data batch the producers' table knows (-1: it
    // knows the producer but not its last batch: each of its batches is kept as its last);
    // sorted. A producer not listed has no batch that matters: its emptied ones all merge.
    std::vector<std::pair<int64_t, int64_t>> last_batch;
    // Markers that stay whatever (a producer's latest epoch-raising one); sorted offsets.
    std::vector<int64_t> kept_markers;
  };
  std::optional<Producers> producers;
};

// What a pass has seen of transactions so far (CompactionOptions::producers): the producers
// with a transactional data batch since their last marker.
struct MarkerScan {
  std::unordered_set<int64_t> in_transaction;
};

struct CompactionStats {
  uint64_t records_kept = 0;
  uint64_t records_removed = 0;
  uint64_t tombstones_removed = 0;
  uint64_t batches_copied = 0;   // every record survived
  uint64_t batches_rebuilt = 0;  // some records removed
  uint64_t batches_converted = 0;  // rewritten the same size: a producer's batch made plain
  uint64_t markers_removed = 0;
  uint64_t bytes_before = 0;
  uint64_t bytes_after = 0;
  uint64_t segments_rewritten = 0;
  uint64_t keys_mapped = 0;

  void add(const CompactionStats& o);
};

// Records the offset of every keyed record of `batches` (concatenated, in offset order)
// into `latest`, later ones winning (kInvalidArgument when the map fills up); records of
// `aborted` transactions (sorted as CompactionOptions::aborted) are left out.
LogResult<void> index_keys(Bytes batches, OffsetMap& latest,
                           const std::vector<AbortedRange>& aborted = {});

// The compacted form of `batches` (concatenated, one segment's worth) given the latest
// offset of every key in the whole log (with options.producers, `scan` carries what earlier
// segments showed; null: these batches are the whole log).
LogResult<std::vector<std::byte>> compact_batches(Bytes batches, const OffsetMap& latest,
                                                  const CompactionOptions& options,
                                                  CompactionStats& stats,
                                                  MarkerScan* scan = nullptr);

// A closed segment rewritten beside itself, ready for PartitionLog::install_cleaned_segment.
struct CleanedSegment {
  ClosedSegment was;  // the segment it replaces, as it was when read
  uint64_t size_bytes = 0;
  int64_t max_timestamp = 0;
  uint64_t index_entries = 0;
  uint64_t time_entries = 0;
  uint64_t bytes_since_index = 0;
  std::string log_side, index_side, time_side;  // the side files, fdatasync'd
  CompactionStats stats;
};

// Step 1: fills `map` from `segments` (closed, oldest first) starting at `dirty_from`; returns
// map_end (== dirty_from when nothing new was there). `stop` set: gives up (kInvalidArgument).
LogResult<int64_t> build_offset_map(const std::vector<ClosedSegment>& segments,
                                    int64_t dirty_from, OffsetMap& map,
                                    const CompactionOptions& options,
                                    const std::atomic<bool>* stop = nullptr);

// Step 2 for one segment: its cleaned side files, or nullopt when nothing would go (no file
// left behind). Checks every batch it reads (CRC included): a damaged segment is an error.
// With options.producers, `scan` is the pass's (the segments from the log start, in order).
LogResult<std::optional<CleanedSegment>> clean_segment(const ClosedSegment& segment,
                                                       const OffsetMap& map, int64_t map_end,
                                                       const CompactionOptions& options,
                                                       const std::atomic<bool>* stop = nullptr,
                                                       MarkerScan* scan = nullptr);

// Removes a cleaned segment's side files (a rewrite not installed).
void discard(const CleanedSegment& cleaned);

// The whole pass on the calling thread, installing as it goes (tests, tools): returns
// whether a segment was rewritten. Moves the log's first dirty offset on when it completes.
LogResult<bool> compact_log(PartitionLog& log, const CompactionOptions& options,
                            CompactionStats& stats);

}  // namespace sluice::log
