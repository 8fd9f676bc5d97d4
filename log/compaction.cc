#include "log/compaction.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/assert.h"
#include "log/internal/segment.h"
#include "log/log.h"
#include "log/segment_reader.h"
#include "protocol/record_batch.h"

namespace sluice::log {

namespace {

LogError corrupt(const kafka::BatchError& e) { return LogError{LogErrc::kCorrupt, e.message}; }

std::string key_string(Bytes key) {
  return std::string(reinterpret_cast<const char*>(key.data()), key.size());
}

// Rebuilds `batch` with only the records `keep` says, preserving its offsets and header.
LogResult<std::vector<std::byte>> rebuild(const kafka::RecordBatchView& batch,
                                          const std::vector<kafka::Record>& kept) {
  kafka::RecordBatchBuilder::Options o;
  o.base_offset = batch.base_offset();
  o.partition_leader_epoch = batch.partition_leader_epoch();
  o.compression = batch.compression();
  o.timestamp_type = batch.timestamp_type();
  o.producer_id = batch.producer_id();
  o.producer_epoch = batch.producer_epoch();
  o.base_sequence = batch.base_sequence();
  o.transactional = batch.is_transactional();
  o.last_offset_delta = batch.last_offset_delta();
  kafka::RecordBatchBuilder builder(o);
  std::vector<kafka::Header> headers;
  for (const kafka::Record& r : kept) {
    headers.clear();
    kafka::HeaderReader hr(r.headers, r.header_count);
    while (true) {
      auto h = hr.next();
      if (!h) return unexpected(corrupt(h.error()));
      if (!*h) break;
      headers.push_back(**h);
    }
    builder.append_with_delta(r.offset_delta, batch.base_timestamp() + r.timestamp_delta, r.key,
                              r.value, headers);
  }
  auto built = builder.build();
  if (!built) return unexpected(corrupt(built.error()));
  // The batch keeps its time span (and, when empty, its base timestamp).
  using namespace kafka::batch_layout;
  if (kept.empty()) store_be<int64_t>(built->data() + kBaseTimestamp, batch.base_timestamp());
  store_be<int64_t>(built->data() + kMaxTimestamp, batch.max_timestamp());
  kafka::update_crc(*built);
  return std::move(*built);
}

}  // namespace

LogResult<void> index_keys(Bytes batches, KeyOffsets& latest) {
  kafka::BatchIterator it(batches);
  std::vector<std::byte> scratch;
  while (true) {
    auto v = it.next();
    if (!v) return unexpected(corrupt(v.error()));
    if (!*v) break;
    const auto& batch = **v;
    if (batch.is_control()) continue;
    auto records = batch.records(scratch);
    if (!records) return unexpected(corrupt(records.error()));
    while (true) {
      auto r = records->next();
      if (!r) return unexpected(corrupt(r.error()));
      if (!*r) break;
      if ((*r)->key) latest[key_string(*(*r)->key)] = batch.base_offset() + (*r)->offset_delta;
    }
  }
  return {};
}

LogResult<std::vector<std::byte>> compact_batches(Bytes batches, const KeyOffsets& latest,
                                                  const CompactionOptions& options,
                                                  CompactionStats& stats) {
  std::vector<std::byte> out;
  out.reserve(batches.size());
  kafka::BatchIterator it(batches);
  std::vector<std::byte> scratch;
  std::vector<kafka::Record> kept;
  // A run of batches left without records becomes one empty batch spanning all their offsets
  // (segments are contiguous runs of batches, so the span must stay covered).
  std::optional<std::vector<std::byte>> empty_run;
  auto flush_empty = [&] {
    if (!empty_run) return;
    out.insert(out.end(), empty_run->begin(), empty_run->end());
    stats.bytes_after += empty_run->size();
    empty_run.reset();
  };
  while (true) {
    auto v = it.next();
    if (!v) return unexpected(corrupt(v.error()));
    if (!*v) break;
    const auto& batch = **v;
    const Bytes whole = batch.bytes();
    stats.bytes_before += whole.size();
    bool all = true;
    if (!batch.is_control()) {
      auto records = batch.records(scratch);
      if (!records) return unexpected(corrupt(records.error()));
      kept.clear();
      const bool tombstones_expire =
          batch.max_timestamp() < options.now_ms - options.delete_retention_ms;
      while (true) {
        auto r = records->next();
        if (!r) return unexpected(corrupt(r.error()));
        if (!*r) break;
        const kafka::Record& rec = **r;
        bool keep = true;
        if (rec.key) {
          auto found = latest.find(key_string(*rec.key));
          const int64_t offset = batch.base_offset() + rec.offset_delta;
          keep = found == latest.end() || found->second <= offset;
          if (keep && !rec.value && tombstones_expire) {
            keep = false;
            ++stats.tombstones_removed;
          }
        }
        if (keep) {
          kept.push_back(rec);
          ++stats.records_kept;
        } else {
          all = false;
          ++stats.records_removed;
        }
      }
      // Idempotent producers' batches stay separate: their sequence numbers matter.
      const bool mergeable = kept.empty() && batch.producer_id() < 0 && !batch.is_transactional();
      if (mergeable && (batch.record_count() > 0 || empty_run)) {
        if (empty_run) {
          // Extend the run to this batch's last offset; the earliest base timestamp stays.
          auto prev = kafka::RecordBatchView::parse(*empty_run);
          SLUICE_ASSERT(prev.has_value());
          const int64_t delta = batch.last_offset() - prev->base_offset();
          if (delta <= INT32_MAX) {
            using namespace kafka::batch_layout;
            store_be<int32_t>(empty_run->data() + kLastOffsetDelta, static_cast<int32_t>(delta));
            store_be<int64_t>(empty_run->data() + kMaxTimestamp,
                              std::max(prev->max_timestamp(), batch.max_timestamp()));
            kafka::update_crc(*empty_run);
            ++stats.batches_rebuilt;
            continue;
          }
          flush_empty();
        }
        auto rebuilt = rebuild(batch, kept);
        if (!rebuilt) return unexpected(rebuilt.error());
        empty_run = std::move(*rebuilt);
        ++stats.batches_rebuilt;
        continue;
      }
      flush_empty();
      if (!all) {
        auto rebuilt = rebuild(batch, kept);  // `kept` points into `scratch` or the batch
        if (!rebuilt) return unexpected(rebuilt.error());
        out.insert(out.end(), rebuilt->begin(), rebuilt->end());
        stats.bytes_after += rebuilt->size();
        ++stats.batches_rebuilt;
        continue;
      }
    }
    flush_empty();
    out.insert(out.end(), whole.begin(), whole.end());
    stats.bytes_after += whole.size();
    ++stats.batches_copied;
  }
  flush_empty();
  SLUICE_ASSERT(it.consumed() <= batches.size());
  return out;
}

LogResult<bool> compact_step(PartitionLog& log, const CompactionOptions& options, int64_t* cursor,
                             CompactionStats& stats) {
  SLUICE_ASSERT(cursor != nullptr);
  const std::vector<ClosedSegment> closed = log.closed_segments();
  if (closed.empty()) return false;
  // The latest offset of every key, over everything durable (the active segment included).
  KeyOffsets latest;
  const int64_t end = *log.durable_offset();
  int64_t from = *log.log_start_offset();
  while (from < end) {
    auto bytes = log.read_copy(Offset(from), 4u << 20, Offset(end));
    if (!bytes) return unexpected(bytes.error());
    if (bytes->empty()) break;
    if (auto r = index_keys(*bytes, latest); !r) return unexpected(r.error());
    int64_t next = from;
    kafka::BatchIterator it(*bytes);
    while (true) {
      auto v = it.next();
      if (!v || !*v) break;
      next = (*v)->last_offset() + 1;
    }
    if (next <= from) break;
    from = next;
  }
  // The next closed segment after the cursor (wrapping around) that shrinks.
  size_t start = 0;
  while (start < closed.size() && closed[start].base_offset <= *cursor) ++start;
  uint32_t rewritten = 0;
  for (size_t n = 0; n < closed.size() && rewritten < options.segments_max; ++n) {
    const ClosedSegment& seg = closed[(start + n) % closed.size()];
    *cursor = seg.base_offset;
    auto bytes = log.read_copy(Offset(seg.base_offset), seg.size_bytes, Offset(seg.end_offset));
    if (!bytes) return unexpected(bytes.error());
    CompactionStats mine;
    auto compacted = compact_batches(*bytes, latest, options, mine);
    if (!compacted) return unexpected(compacted.error());
    if (compacted->size() >= bytes->size()) continue;
    if (auto r = log.replace_closed_segment(seg.base_offset, *compacted); !r) {
      return unexpected(r.error());
    }
    stats.records_kept += mine.records_kept;
    stats.records_removed += mine.records_removed;
    stats.tombstones_removed += mine.tombstones_removed;
    stats.batches_copied += mine.batches_copied;
    stats.batches_rebuilt += mine.batches_rebuilt;
    stats.bytes_before += mine.bytes_before;
    stats.bytes_after += mine.bytes_after;
    ++stats.segments_rewritten;
    ++rewritten;
  }
  return rewritten > 0;
}

// PartitionLog's compaction hooks (declared in log.h) ---------------------------------------

std::vector<ClosedSegment> PartitionLog::closed_segments() const {
  std::vector<ClosedSegment> out;
  for (const auto& seg : segments_) {
    if (seg->active || seg->unsynced || seg->dirty || seg->corrupt_from >= 0) continue;
    if (seg->end_offset > durable_end_ || seg->end_offset <= seg->base_offset) continue;
    out.push_back({seg->base_offset, seg->end_offset, seg->size_bytes});
  }
  return out;
}

LogResult<void> PartitionLog::replace_closed_segment(int64_t base_offset, Bytes batches) {
  if (failure_) return unexpected(*failure_);
  size_t i = 0;
  while (i < segments_.size() && segments_[i]->base_offset != base_offset) ++i;
  if (i + 1 >= segments_.size()) {
    return log_error(LogErrc::kInvalidArgument,
                     "no closed segment at " + std::to_string(base_offset));
  }
  detail::Segment& seg = *segments_[i];
  SLUICE_ASSERT(!seg.active && !seg.unsynced && !seg.dirty);
  const int64_t next_base = segments_[i + 1]->base_offset;
  // The scrubber's position in this segment means nothing in the rewritten one.
  if (scrub_segment_ == base_offset) scrub_position_ = 0;
  // Batches of this segment (and any before it) move: the window of recent batches forgets them.
  while (!recent_.empty() && recent_.front().segment_base <= base_offset) recent_.pop_front();
  // Check before anything is written: whole valid batches spanning exactly the same offsets.
  const ScanResult check =
      scan_segment(batches, {.expected_base_offset = base_offset, .verify_crc = true}, {});
  if (check.stop != ScanStop::kEnd || check.valid_bytes != batches.size() ||
      check.next_offset != next_base) {
    return log_error(LogErrc::kInvalidArgument, "compacted batches for segment " +
                                                    std::to_string(base_offset) +
                                                    " do not span its offsets: " + check.reason);
  }
  const std::string side = seg.log_path + ".compacting";
  {
    auto f = FileHandle::open(side, O_RDWR | O_CREAT | O_TRUNC);
    if (!f) return unexpected(f.error());
    if (auto r = detail::pwrite_full((*f)->fd(), batches, 0); !r) return r;
    if (::fdatasync((*f)->fd()) != 0) {
      return log_error(LogErrc::kIo, "fdatasync " + side + ": " + std::strerror(errno));
    }
  }
  // The indexes go first: after a crash from here on, recovery finds them missing and
  // rebuilds them from whichever .log the rename left (old or new, both complete).
  for (const auto* path : {&seg.log_path, &seg.index_path, &seg.time_path}) fds_.forget(*path);
  ::unlink(seg.index_path.c_str());
  ::unlink(seg.time_path.c_str());
  if (::rename(side.c_str(), seg.log_path.c_str()) != 0) {
    return log_error(LogErrc::kIo, "rename " + side + ": " + std::strerror(errno));
  }
  auto dir = dir_fd();
  if (!dir) return unexpected(dir.error());
  if (::fsync(*dir) != 0) {
    return log_error(LogErrc::kIo, "fsync " + dir_.string() + ": " + std::strerror(errno));
  }
  // Reads in flight keep the old file; new reads open the new one.
  if (auto r = scan_and_rebuild(seg, /*may_cut=*/false, next_base); !r) return unexpected(r.error());
  for (const auto* path : {&seg.index_path, &seg.time_path}) {
    auto f = FileHandle::open(*path, O_RDWR);
    if (!f) return unexpected(f.error());
    if (::fdatasync((*f)->fd()) != 0) {
      return log_error(LogErrc::kIo, "fdatasync " + *path + ": " + std::strerror(errno));
    }
  }
  SLUICE_ASSERT(seg.end_offset == next_base);  // the same span of offsets
  if (seg.corrupt_from >= 0) {
    return log_error(LogErrc::kCorrupt, "compacted segment " + seg.log_path + " does not scan");
  }
  return {};
}

}  // namespace sluice::log
