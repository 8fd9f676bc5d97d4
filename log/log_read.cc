// PartitionLog reads: file ranges for sendfile, copies for tools, time lookups.
#include <fcntl.h>

#include <algorithm>

#include "log/internal/segment.h"
#include "log/log.h"
#include "protocol/record_batch.h"

namespace sluice::log {

using detail::Segment;

LogResult<std::shared_ptr<FileHandle>> PartitionLog::log_file(const Segment& seg) {
  if (seg.log_rw) return seg.log_rw;
  return fds_.open(seg.log_path);
}

LogResult<std::shared_ptr<FileHandle>> PartitionLog::index_file(const Segment& seg) {
  if (seg.index_rw) return seg.index_rw;
  return fds_.open(seg.index_path);
}

LogResult<std::shared_ptr<FileHandle>> PartitionLog::time_file(const Segment& seg) {
  if (seg.time_rw) return seg.time_rw;
  return fds_.open(seg.time_path);
}

LogResult<IndexEntry> PartitionLog::index_floor(const Segment& seg, int64_t offset) {
  auto index = index_file(seg);
  if (!index) return unexpected(index.error());
  return detail::index_floor((*index)->fd(), seg.index_on_disk(), seg.base_offset, offset);
}

uint64_t PartitionLog::readable_bytes(const Segment& seg) const {
  return std::min(seg.written_bytes, seg.size_bytes);
}

LogResult<detail::BatchHeader> PartitionLog::find_batch(const Segment& seg, int64_t offset) {
  auto file = log_file(seg);
  if (!file) return unexpected(file.error());
  auto entry = index_floor(seg, offset);
  if (!entry) return unexpected(entry.error());
  const uint64_t readable = readable_bytes(seg);
  for (uint64_t pos = entry->position; pos < readable;) {
    auto header = detail::read_batch_header((*file)->fd(), pos, readable);
    if (!header) return unexpected(header.error());
    if (header->last_offset >= offset) {
      if (header->base_offset > offset) break;  // the index pointed past it: damage
      return header;
    }
    pos += header->size_bytes;
  }
  return log_error(LogErrc::kOffsetOutOfRange, "no batch holds offset " + std::to_string(offset));
}

LogResult<BatchInfo> PartitionLog::batch_at(Offset offset) {
  if (*offset < log_start_ || *offset >= written_end_) {
    return log_error(LogErrc::kOffsetOutOfRange, "offset " + std::to_string(*offset));
  }
  const Segment* seg = find_segment(*offset);
  SLUICE_ASSERT(seg != nullptr);
  if (seg->corrupt_from >= 0 && *offset >= seg->corrupt_from) {
    return log_error(LogErrc::kCorrupt, "offset " + std::to_string(*offset) + " is damaged");
  }
  if (!recent_.empty() && *offset >= recent_.front().base_offset) {
    auto it = std::lower_bound(recent_.begin(), recent_.end(), *offset,
                               [](const RecentBatch& b, int64_t o) { return b.last_offset < o; });
    SLUICE_ASSERT(it != recent_.end() && it->base_offset <= *offset);
    return BatchInfo{.base_offset = Offset(it->base_offset),
                     .last_offset = Offset(it->last_offset),
                     .leader_epoch = it->leader_epoch,
                     .max_timestamp = it->max_timestamp,
                     .size_bytes = it->size};
  }
  ++cold_stats_.file_lookups;  // the index and headers, read on this thread
  auto header = find_batch(*seg, *offset);
  if (!header) return unexpected(header.error());
  SLUICE_ASSERT(header->base_offset <= *offset && *offset <= header->last_offset);
  return BatchInfo{.base_offset = Offset(header->base_offset),
                   .last_offset = Offset(header->last_offset),
                   .leader_epoch = header->leader_epoch,
                   .max_timestamp = header->max_timestamp,
                   .size_bytes = header->size_bytes};
}

LogResult<ReadResult> PartitionLog::read(Offset from_offset, uint64_t max_bytes,
                                         std::optional<Offset> max_offset) {
  return read_ranges(from_offset, max_bytes, max_offset, nullptr);
}

LogResult<std::vector<StoredBatch>> PartitionLog::read_batches(Offset from_offset,
                                                               uint64_t max_bytes,
                                                               std::optional<Offset> max_offset) {
  std::vector<StoredBatch> batches;
  auto r = read_ranges(from_offset, max_bytes, max_offset, &batches);
  if (!r) return unexpected(r.error());
  return batches;
}

LogResult<ReadResult> PartitionLog::read_ranges(Offset from_offset, uint64_t max_bytes,
                                                std::optional<Offset> max_offset,
                                                std::vector<StoredBatch>* batches) {
  const int64_t from = *from_offset;
  if (from < log_start_ || from > end_offset_) {
    return log_error(LogErrc::kOffsetOutOfRange, "offset " + std::to_string(from) + " outside [" +
                                                     std::to_string(log_start_) + ", " +
                                                     std::to_string(end_offset_) + "]");
  }
  const int64_t limit = std::min(written_end_, max_offset ? **max_offset : written_end_);
  ReadResult result;
  result.next_offset = from_offset;
  if (from >= limit) return result;
  if (!recent_.empty() && from >= recent_.front().base_offset) {
    return read_recent(from, max_bytes, limit, batches);
  }
  Segment* seg = find_segment(from);
  SLUICE_ASSERT(seg != nullptr);
  auto it = std::find_if(segments_.begin(), segments_.end(),
                         [seg](const auto& s) { return s.get() == seg; });
  bool first_segment = true;
  bool stop = false;
  bool records = false;  // the run holds a record (or index-jumped bytes, which likely do)
  for (; it != segments_.end() && !stop; ++it, first_segment = false) {
    Segment& s = **it;
    if (s.corrupt_from >= 0 && std::max(from, s.base_offset) >= s.corrupt_from) {
      if (result.ranges.empty()) {
        return log_error(LogErrc::kCorrupt, "offset " + std::to_string(from) +
                                                " is in a damaged part of segment " +
                                                std::to_string(s.base_offset));
      }
      break;
    }
    // read_async() stops at the end of the first segment that gave records, as Kafka's reads
    // do (the next segment's index is read ahead meanwhile). One whose batches all lie below
    // `from`, or that gave only batches compaction emptied, gave none: Kafka's cleaner leaves
    // no empty batch (but an idempotent producer's last), and a Fetch answered with nothing
    // else crashes kafka-python 2.0.2's consumer (IndexError in _parse_fetched_data).
    if (cold_misses_ != nullptr && records) break;
    auto file = read_handle(s);
    const uint64_t readable = readable_bytes(s);
    uint64_t pos = 0;
    uint64_t entry = 0;  // an index entry at or before pos: where index_jump looks from
    if (first_segment) {
      IndexEntry floor;
      auto below = index_entries_below(s, from + 1, &floor);
      if (!below) return unexpected(below.error());
      if (*below > 0) {
        entry = *below - 1;
        pos = floor.position;
      }
    }
    if (!file) return unexpected(file.error());
    // Fetch needs only where the run of whole batches ends: once its first batch is found,
    // the index (one pread of its entries) carries it past every indexed batch start that
    // fits, and headers are read only around the ends (batches that are not indexed). The
    // Raft catch-up (`batches`) needs every batch's header.
    bool jumped = batches != nullptr || s.corrupt_from >= 0;
    uint64_t range_start = pos;
    Offset range_first{-1};  // base offset of this segment's first batch in the run
    while (pos < readable) {
      auto header = header_at(s, **file, pos, readable);
      if (!header) {
        if (result.ranges.empty() && pos == range_start && result.bytes == 0) {
          return unexpected(header.error());
        }
        stop = true;
        break;
      }
      if (header->last_offset < from) {  // before the batch containing `from`
        pos += header->size_bytes;
        range_start = pos;
        continue;
      }
      const bool damaged = s.corrupt_from >= 0 && header->last_offset >= s.corrupt_from;
      // The first batch that holds a record goes in whatever its size (as Kafka's first
      // batch does): batches compaction emptied before it do not count.
      const bool too_big = records && result.bytes + header->size_bytes > max_bytes;
      if (header->last_offset >= limit || damaged || too_big) {
        stop = true;
        break;
      }
      if (result.first_offset == Offset(-1)) result.first_offset = Offset(header->base_offset);
      if (range_first == Offset(-1)) range_first = Offset(header->base_offset);
      if (batches != nullptr) {
        batches->push_back(
            {.base_offset = Offset(header->base_offset),
             .last_offset = Offset(header->last_offset),
             .leader_epoch = header->leader_epoch,
             .range = {.file = *file, .position = pos, .length = header->size_bytes}});
      }
      result.bytes += header->size_bytes;
      result.next_offset = Offset(header->last_offset + 1);
      pos += header->size_bytes;
      records |= header->record_count > 0;
      if (!jumped) {
        jumped = true;
        const uint64_t room = max_bytes > result.bytes ? max_bytes - result.bytes : 0;
        auto jump = index_jump(s, entry, pos, room, limit, readable);
        if (jump && jump->position > pos) {
          records = true;
          result.bytes += jump->position - pos;
          result.next_offset = Offset(jump->offset);
          pos = jump->position;
        }
      }
    }
    if (pos > range_start) {
      result.ranges.push_back(
          {.file = *file, .position = range_start, .length = pos - range_start});
      if (!records) result.empty_ranges = result.ranges.size();
      if (result.answer_index() == result.ranges.size() - 1)
        result.answer_first_offset = range_first;
    }
    if (s.corrupt_from >= 0) break;  // nothing past damage is served, not even later segments
    if (*result.next_offset >= limit) break;
  }
  SLUICE_ASSERT(result.ranges.empty() == (result.bytes == 0));
  return result;
}

std::optional<IndexEntry> PartitionLog::index_jump(const Segment& seg, uint64_t first_entry,
                                                   uint64_t pos, uint64_t room, int64_t limit,
                                                   uint64_t readable) {
  constexpr uint64_t kEntriesMax = 8192;  // 64 KiB of index: a run of 32 MiB at 4 KiB apart
  const uint64_t on_disk = seg.index_on_disk();
  if (first_entry + 1 >= on_disk || room == 0) return std::nullopt;
  const uint64_t interval = std::max<uint64_t>(1, config_.index_interval_bytes);
  uint64_t count = std::min({on_disk - first_entry, room / interval + 2, kEntriesMax});
  std::vector<std::byte> raw;
  const std::byte* entries = nullptr;
  if (cold_misses_ != nullptr) {
    // A cold round: the entries index_entries_below() brought (the header walk goes on past
    // them, or stops where the cache has no header).
    const uint64_t cached = cold_cached_entries(seg);
    if (first_entry + 1 >= cached) return std::nullopt;
    count = std::min(count, cached - first_entry);
    entries = cold_index_data(seg) + first_entry * kIndexEntryBytes;
  } else {
    ++cold_stats_.file_lookups;
    auto index = index_file(seg);
    if (!index) return std::nullopt;  // the header walk goes on (and reports what fails)
    raw.resize(count * kIndexEntryBytes);
    if (!detail::pread_full((*index)->fd(), raw, first_entry * kIndexEntryBytes)) {
      return std::nullopt;
    }
    entries = raw.data();
  }
  std::optional<IndexEntry> best;
  for (uint64_t i = 0; i < count; ++i) {
    const IndexEntry e = decode_index_entry(entries + i * kIndexEntryBytes, seg.base_offset);
    if (e.position <= pos) continue;
    // Every batch before an indexed batch start ends below its offset.
    if (e.position - pos > room || e.position > readable || e.offset > limit) break;
    best = e;
  }
  return best;
}

// read() of batches in the window of recent ones: the same ranges, found in memory.
LogResult<ReadResult> PartitionLog::read_recent(int64_t from, uint64_t max_bytes, int64_t limit,
                                                std::vector<StoredBatch>* batches) {
  ReadResult result;
  result.next_offset = Offset(from);
  auto it = std::lower_bound(recent_.begin(), recent_.end(), from,
                             [](const RecentBatch& b, int64_t o) { return b.last_offset < o; });
  Segment* seg = nullptr;
  uint64_t readable = 0;
  for (; it != recent_.end(); ++it) {
    if (seg == nullptr || seg->base_offset != it->segment_base) {
      if (seg != nullptr && seg->corrupt_from >= 0) break;  // nothing past damage is served
      seg = find_segment(it->segment_base);
      SLUICE_ASSERT(seg != nullptr && seg->base_offset == it->segment_base);
      if (seg->corrupt_from >= 0 && std::max(from, seg->base_offset) >= seg->corrupt_from) {
        if (result.ranges.empty()) {
          return log_error(LogErrc::kCorrupt, "offset " + std::to_string(from) +
                                                  " is in a damaged part of segment " +
                                                  std::to_string(seg->base_offset));
        }
        break;
      }
      // In a round of read_async/read_batches_now, a sealed segment whose handle the FdCache
      // evicted is opened through the ring, not here.
      auto file = cold_misses_ != nullptr ? read_handle(*seg) : log_file(*seg);
      if (!file) {
        if (result.ranges.empty()) return unexpected(file.error());
        break;
      }
      readable = readable_bytes(*seg);
      result.ranges.push_back({.file = *file, .position = it->position, .length = 0});
    }
    const bool damaged = seg->corrupt_from >= 0 && it->last_offset >= seg->corrupt_from;
    const bool too_big = result.bytes > 0 && result.bytes + it->size > max_bytes;
    if (it->last_offset >= limit || damaged || too_big || it->position + it->size > readable) {
      break;
    }
    SLUICE_ASSERT(result.ranges.back().position + result.ranges.back().length == it->position);
    if (result.first_offset == Offset(-1)) {
      result.first_offset = Offset(it->base_offset);
      result.answer_first_offset = result.first_offset;
    }
    if (batches != nullptr) {
      batches->push_back(
          {.base_offset = Offset(it->base_offset),
           .last_offset = Offset(it->last_offset),
           .leader_epoch = it->leader_epoch,
           .range = {
               .file = result.ranges.back().file, .position = it->position, .length = it->size}});
    }
    result.ranges.back().length += it->size;
    result.bytes += it->size;
    result.next_offset = Offset(it->last_offset + 1);
  }
  if (!result.ranges.empty() && result.ranges.back().length == 0) result.ranges.pop_back();
  SLUICE_ASSERT(result.ranges.empty() == (result.bytes == 0));
  return result;
}

LogResult<std::vector<std::byte>> PartitionLog::read_copy(Offset from_offset, uint64_t max_bytes,
                                                          std::optional<Offset> max_offset) {
  auto ranges = read(from_offset, max_bytes, max_offset);
  if (!ranges) return unexpected(ranges.error());
  std::vector<std::byte> bytes(ranges->bytes);
  uint64_t at = 0;
  for (const FileRange& range : ranges->ranges) {
    auto r = detail::pread_full(range.fd(), MutableBytes(bytes).subspan(at, range.length),
                                range.position);
    if (!r) return unexpected(r.error());
    at += range.length;
  }
  // Check in pairs: batches were checked before they were written, and again here.
  kafka::BatchIterator batches(bytes);
  for (;;) {
    auto next = batches.next();
    if (!next) return log_error(LogErrc::kCorrupt, next.error().message);
    if (!next->has_value()) break;
    if (auto crc = (*next)->verify_crc(); !crc) {
      return log_error(
          LogErrc::kCorrupt,
          "batch at offset " + std::to_string((*next)->base_offset()) + ": " + crc.error().message);
    }
  }
  if (batches.partial()) return log_error(LogErrc::kCorrupt, "partial batch read");
  return bytes;
}

LogResult<std::optional<Offset>> PartitionLog::offset_for_timestamp(int64_t timestamp_ms) {
  auto found = find_timestamp(timestamp_ms);
  if (!found) return unexpected(found.error());
  if (!*found) return std::optional<Offset>();
  return std::optional<Offset>((*found)->offset);
}

LogResult<std::optional<PartitionLog::TimedOffset>> PartitionLog::find_timestamp(
    int64_t timestamp_ms) {
  std::vector<std::byte> batch_bytes;
  std::vector<std::byte> scratch;
  // The first record of the batch at `position` with a timestamp >= timestamp_ms at or above
  // the log start, if any.
  auto first_in = [&](const Segment& seg, const FileHandle& file, uint64_t position,
                      uint64_t size) -> LogResult<std::optional<TimedOffset>> {
    auto bytes = bytes_at(seg, file, position, size, batch_bytes);
    if (!bytes) return unexpected(bytes.error());
    auto view = kafka::RecordBatchView::parse(*bytes);
    if (!view) return log_error(LogErrc::kCorrupt, view.error().message);
    if (view->timestamp_type() == kafka::TimestampType::kLogAppendTime) {
      return std::optional<TimedOffset>(
          TimedOffset{.offset = Offset(std::max(view->base_offset(), log_start_)),
                      .timestamp = view->max_timestamp()});
    }
    auto records = view->records(scratch);
    if (!records) return log_error(LogErrc::kCorrupt, records.error().message);
    for (;;) {
      auto record = records->next();
      if (!record) return log_error(LogErrc::kCorrupt, record.error().message);
      if (!record->has_value()) return std::optional<TimedOffset>();
      const int64_t offset = view->base_offset() + (*record)->offset_delta;
      const int64_t timestamp = view->base_timestamp() + (*record)->timestamp_delta;
      if (timestamp >= timestamp_ms && offset >= log_start_) {
        return std::optional<TimedOffset>(
            TimedOffset{.offset = Offset(offset), .timestamp = timestamp});
      }
    }
  };
  for (auto& seg_ptr : segments_) {
    Segment& seg = *seg_ptr;
    if (seg.end_offset <= log_start_ || seg.max_timestamp < timestamp_ms) continue;
    // In a cold round the handle, time index and index are looked up together, so that one
    // round brings all that is missing of them.
    auto file = read_handle(seg);
    auto floor = time_floor_of(seg, timestamp_ms);
    if (!floor || !file) {
      const bool in_window = !recent_.empty() && recent_.front().base_offset <= seg.base_offset;
      if (cold_misses_ != nullptr && !in_window) {
        IndexEntry unused;
        (void)index_entries_below(seg, seg.base_offset + 1, &unused);
      }
      return unexpected(!floor ? floor.error() : file.error());
    }
    // Every batch before the floor's offset has max timestamp < timestamp_ms.
    const int64_t target = *floor ? (*floor)->offset : seg.base_offset;
    const uint64_t readable = readable_bytes(seg);
    if (!recent_.empty() && target >= recent_.front().base_offset) {
      // In the window of recent batches: their places and timestamps are in memory.
      auto it = std::lower_bound(recent_.begin(), recent_.end(), target,
                                 [](const RecentBatch& b, int64_t o) { return b.last_offset < o; });
      for (; it != recent_.end() && it->segment_base == seg.base_offset; ++it) {
        if (seg.corrupt_from >= 0 && it->last_offset >= seg.corrupt_from) break;
        if (it->position + it->size > readable) break;
        if (it->max_timestamp < timestamp_ms || it->last_offset < log_start_) continue;
        auto found = first_in(seg, **file, it->position, it->size);
        if (!found || *found) return found;
      }
      continue;
    }
    // The walk starts at the index entry at or before the floor's offset.
    IndexEntry entry{.offset = seg.base_offset, .position = 0};
    auto below = index_entries_below(seg, target + 1, &entry);
    if (!below) return unexpected(below.error());
    if (*below == 0) entry = IndexEntry{.offset = seg.base_offset, .position = 0};
    for (uint64_t pos = entry.position; pos < readable;) {
      auto header = header_at(seg, **file, pos, readable);
      if (!header) return unexpected(header.error());
      if (seg.corrupt_from >= 0 && header->last_offset >= seg.corrupt_from) break;
      pos += header->size_bytes;
      if (header->max_timestamp < timestamp_ms || header->last_offset < log_start_) continue;
      auto found = first_in(seg, **file, header->position, header->size_bytes);
      if (!found || *found) return found;
    }
  }
  return std::optional<TimedOffset>();
}

}  // namespace sluice::log
