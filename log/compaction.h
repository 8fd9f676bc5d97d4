// Log compaction (cleanup.policy=compact): closed segments are rewritten keeping only the
// latest record of each key. Offsets never change: a batch keeps its base offset and its last
// offset delta, its surviving records keep their offset deltas (so a batch may hold fewer
// records, or none: an empty batch still spans its offsets, since segments are read as
// contiguous runs of batches). A batch whose records all survive is copied byte for byte.
// Tombstones (null values) that are the latest for their key are removed once their batch
// is older than delete.retention.ms. Control batches are kept whole.
//
// compact_step() runs on the partition's shard between other work, one closed segment per
// call (a bounded step): the segment's new bytes are computed in memory, written to a side
// file and renamed over the old one (PartitionLog::replace_closed_segment). Reads in flight
// keep the old file open; appends go to the active segment, which is never compacted.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/bytes.h"
#include "log/errc.h"

namespace sluice::log {

class PartitionLog;

// Key bytes -> offset of its latest record.
using KeyOffsets = std::unordered_map<std::string, int64_t>;

struct CompactionOptions {
  int64_t now_ms = 0;
  int64_t delete_retention_ms = 24 * 3600 * 1000;  // delete.retention.ms
  uint32_t segments_max = 4;  // rewritten per compact_step() at most (the bound of a step)
};

struct CompactionStats {
  uint64_t records_kept = 0;
  uint64_t records_removed = 0;
  uint64_t tombstones_removed = 0;
  uint64_t batches_copied = 0;   // every record survived
  uint64_t batches_rebuilt = 0;  // some records removed
  uint64_t bytes_before = 0;
  uint64_t bytes_after = 0;
  uint64_t segments_rewritten = 0;
};

// Records the offset of every keyed record of `batches` (concatenated, in offset order)
// into `latest`, later ones winning.
LogResult<void> index_keys(Bytes batches, KeyOffsets& latest);

// The compacted form of `batches` (concatenated, one segment's worth) given the latest
// offset of every key in the whole log.
LogResult<std::vector<std::byte>> compact_batches(Bytes batches, const KeyOffsets& latest,
                                                  const CompactionOptions& options,
                                                  CompactionStats& stats);

// One bounded step on `log`: indexes the keys of the whole log and rewrites up to
// options.segments_max closed, durable segments that would shrink, starting after `*cursor`
// (a segment base offset; updated). Returns whether a segment was rewritten.
LogResult<bool> compact_step(PartitionLog& log, const CompactionOptions& options, int64_t* cursor,
                             CompactionStats& stats);

}  // namespace sluice::log
