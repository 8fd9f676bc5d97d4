// PartitionLog::read_async: reads older than the window of recent batches (a consumer catching
// up) without a system call on the calling thread, which is a shard. read_ranges() runs in
// rounds: each takes the read handle, index entries and batch headers from what is open and
// cached only, and notes what is missing; the round then opens and reads that through the
// ring, and the next round tries again. A Fetch's first round finds the handle and the
// segment's index missing, its second the piece of the .log file where the walk to the
// fetch offset starts; the reads after it find them cached.
#include <fcntl.h>

#include <algorithm>
#include <utility>

#include "log/internal/segment.h"
#include "log/log.h"

namespace sluice::log {

using detail::Segment;

namespace {
// Rounds before a read settles for what the cache holds (or, holding nothing, reads the files).
constexpr int kColdRoundsMax = 5;
// A piece of a .log file read for its batch headers: the walk from an index entry to the
// fetch offset crosses at most index.interval.bytes (4 KiB by default) of small batches.
constexpr uint64_t kColdChunkBytes = 64 * 1024;
constexpr size_t kColdChunksMax = 8;
// read_batches_now() wants every batch's header: a piece as large as its read, within this.
constexpr uint64_t kColdPieceBytesMax = 256 * 1024;
// Pieces cached, all told (the newest always stays).
constexpr uint64_t kColdChunksBytesMax = 1 << 20;
// Index entries cached, all told (the slot just loaded always stays).
constexpr uint64_t kColdIndexBytesMax = 4 << 20;
}  // namespace

struct PartitionLog::ColdRead {
  Offset from;
  uint64_t max_bytes = 0;
  std::optional<Offset> max_offset;
  ReadCallback done;  // null for a read-ahead or read_batches_now(): it runs no more rounds
  std::function<void()> more;  // read_batches_now(): its caller's
  bool skip_in_flight = false;  // read_batches_now(): what others bring is not brought again
  std::vector<ColdMiss> sent;   // in cold_loading_ until this read's loads are all in
  std::shared_ptr<FileHandle> handle;  // the .log handle this read opened: open while it runs
  int round = 0;
  size_t loading = 0;  // opens and reads of this round still in flight (+1 while sending)
};

void PartitionLog::read_async(Offset from_offset, uint64_t max_bytes,
                              std::optional<Offset> max_offset, ReadCallback done) {
  auto read = std::make_shared<ColdRead>();
  read->from = from_offset;
  read->max_bytes = max_bytes;
  read->max_offset = max_offset;
  read->done = std::move(done);
  cold_round(std::move(read));
}

void PartitionLog::cold_round(std::shared_ptr<ColdRead> read) {
  ++read->round;
  std::vector<ColdMiss> misses;
  cold_misses_ = &misses;
  cold_touched_ = false;
  auto r = read_ranges(read->from, read->max_bytes, read->max_offset, nullptr);
  cold_misses_ = nullptr;
  if (misses.empty()) {
    // Read-ahead: a consumer's next Fetch starts where this one ends; the piece its run will
    // end in comes now, while this answer is sent (its start's header was read by this one).
    if (cold_touched_ && r && !r->ranges.empty()) {
      // From the range the Fetch answers with (past segments compaction emptied).
      const FileRange& range = r->answer();
      std::vector<ColdMiss> ahead =
          cold_read_ahead(*r->answer_first_offset, range.position + range.length, read->max_bytes);
      if (!ahead.empty()) {
        auto background = std::make_shared<ColdRead>();
        background->loading = 1;
        for (const ColdMiss& miss : ahead) cold_load(miss, background);
        ring_.submit();
        cold_loaded(background);
      }
    }
    read->done(std::move(r));
    return;
  }
  if (read->round >= kColdRoundsMax) {
    // A shorter run is a right answer; none at all is not, nor one of batches compaction
    // emptied only (segments of them, each a round or two, before the first record): the
    // read on this thread goes on to the first record.
    if (!r || r->ranges.empty() || r->empty_ranges == r->ranges.size()) {
      ++cold_stats_.blocking_reads;
      r = read_ranges(read->from, read->max_bytes, read->max_offset, nullptr);
    }
    read->done(std::move(r));
    return;
  }
  // The piece the run will end in, with the one it starts in (the index is known by then).
  for (size_t i = 0, n = misses.size(); i < n; ++i) {
    if (misses[i].kind != ColdMiss::Kind::kChunk) continue;
    const Segment* seg = find_segment(misses[i].segment_base);
    if (seg == nullptr || seg->base_offset != misses[i].segment_base) continue;
    if (auto ahead = cold_ahead(*seg, misses[i].first, read->max_bytes)) misses.push_back(*ahead);
  }
  cold_bring(misses, read);
  cold_loaded(read);
}

void PartitionLog::cold_bring(const std::vector<ColdMiss>& misses,
                              const std::shared_ptr<ColdRead>& read) {
  read->loading = 1;
  for (size_t i = 0; i < misses.size(); ++i) {
    const ColdMiss& miss = misses[i];
    if (std::find(misses.begin(), misses.begin() + static_cast<std::ptrdiff_t>(i), miss) !=
        misses.begin() + static_cast<std::ptrdiff_t>(i)) {
      continue;
    }
    if (read->skip_in_flight &&
        std::find(cold_loading_.begin(), cold_loading_.end(), miss) != cold_loading_.end()) {
      continue;
    }
    const size_t before = read->loading;
    cold_load(miss, read);
    if (read->loading > before) {
      read->sent.push_back(miss);
      cold_loading_.push_back(miss);
    }
  }
  ring_.submit();
}

void PartitionLog::cold_loaded(const std::shared_ptr<ColdRead>& read) {
  SLUICE_ASSERT(read->loading > 0);
  if (--read->loading > 0) return;
  for (const ColdMiss& miss : read->sent) {
    auto it = std::find(cold_loading_.begin(), cold_loading_.end(), miss);
    if (it != cold_loading_.end()) cold_loading_.erase(it);
  }
  read->sent.clear();
  if (read->done) {
    cold_round(read);
  } else if (read->more) {
    auto more = std::move(read->more);
    read->more = nullptr;
    more();
  }
}

LogResult<PartitionLog::BatchesNow> PartitionLog::read_batches_now(
    Offset from_offset, uint64_t max_bytes, std::optional<Offset> max_offset, int short_before,
    std::function<void()> more) {
  BatchesNow out;
  std::vector<ColdMiss> misses;
  cold_misses_ = &misses;
  cold_touched_ = false;
  cold_piece_bytes_ = std::clamp(max_bytes, kColdChunkBytes, kColdPieceBytesMax);
  auto r = read_ranges(from_offset, max_bytes, max_offset, &out.batches);
  cold_misses_ = nullptr;
  cold_piece_bytes_ = kColdChunkBytes;
  if (misses.empty()) {
    if (!r) return unexpected(r.error());
    return out;
  }
  // Short: the batches before what was missing (a lookup that failed for want of the cache
  // is not an error).
  if (out.batches.empty() && short_before + 1 >= kColdRoundsMax) {
    ++cold_stats_.blocking_reads;
    auto batches = read_batches(from_offset, max_bytes, max_offset);
    if (!batches) return unexpected(batches.error());
    out.batches = std::move(*batches);
    return out;
  }
  if (more) {
    // Completions run only from the ring's poll, never in here: `more` is set once the loads
    // are sent, and only if one was (a miss whose segment went meanwhile sends nothing).
    auto read = std::make_shared<ColdRead>();
    read->skip_in_flight = true;  // a pipelined read asking again for what is on its way
    cold_bring(misses, read);
    out.pending = read->loading > 1;
    if (out.pending) read->more = std::move(more);
    cold_loaded(read);
  }
  return out;
}

std::vector<PartitionLog::ColdMiss> PartitionLog::cold_read_ahead(int64_t offset,
                                                                  uint64_t position,
                                                                  uint64_t max_bytes) {
  std::vector<ColdMiss> ahead;
  const Segment* seg = find_segment(offset);
  auto it = std::find_if(segments_.begin(), segments_.end(),
                         [seg](const auto& s) { return s.get() == seg; });
  if (it == segments_.end()) return ahead;
  if (position < readable_bytes(**it)) {
    if (auto miss = cold_ahead(**it, position, max_bytes)) ahead.push_back(*miss);
    return ahead;
  }
  // The run ended its segment: the next one's index and first piece, unless the next Fetch
  // is answered from the window of recent batches.
  if (++it == segments_.end()) return ahead;
  const Segment& next = **it;
  if (!recent_.empty() && next.base_offset >= recent_.front().base_offset) return ahead;
  const uint64_t entries = cold_index_needed(next);
  const uint64_t cached = cold_cached_entries(next);
  if (cached < entries) {
    ahead.push_back({.kind = ColdMiss::Kind::kIndex,
                     .segment_base = next.base_offset,
                     .first = cached,
                     .last = entries});
  }
  const uint64_t readable = readable_bytes(next);
  if (readable >= kBatchHeaderBytes) {
    ahead.push_back({.kind = ColdMiss::Kind::kChunk,
                     .segment_base = next.base_offset,
                     .first = 0,
                     .last = std::min(kColdChunkBytes, readable)});
  }
  return ahead;
}

uint64_t PartitionLog::cold_index_needed(const Segment& seg) const {
  // A cold read is older than the window: its floor is among the entries of batches before
  // the window (in an active segment more keep coming, and need not be brought).
  uint64_t entries = seg.index_on_disk();
  if (!recent_.empty() && recent_.front().segment_base == seg.base_offset) {
    entries = std::min<uint64_t>(entries, recent_.front().index_before);
  }
  return entries;
}

std::optional<PartitionLog::ColdMiss> PartitionLog::cold_ahead(const Segment& seg,
                                                               uint64_t position,
                                                               uint64_t max_bytes) const {
  const uint64_t readable = readable_bytes(seg);
  const uint64_t reach = std::min(readable, position + max_bytes);
  // The last cached index entry at or before `reach`.
  const uint64_t n = cold_count_below(seg, cold_cached_entries(seg), reach + 1, true);
  if (n == 0) return std::nullopt;
  const uint64_t at =
      decode_index_entry(cold_index_data(seg) + (n - 1) * kIndexEntryBytes, seg.base_offset)
          .position;
  if (at <= position || at + kBatchHeaderBytes > readable) return std::nullopt;
  if (cold_header(seg, at) != nullptr) return std::nullopt;  // cached already
  return ColdMiss{.kind = ColdMiss::Kind::kChunk,
                  .segment_base = seg.base_offset,
                  .first = at,
                  .last = at + std::min(kColdChunkBytes, readable - at)};
}

void PartitionLog::cold_open(const std::string& path, const std::shared_ptr<ColdRead>& read,
                             std::function<void(std::shared_ptr<FileHandle>)> then) {
  ++read->loading;
  ++ops_in_flight_;
  ++cold_stats_.loads;
  ring_.open(path, O_RDONLY, 0,
             [this, path, read, epoch = files_epoch_, then = std::move(then)](int32_t res) {
               op_done();
               std::shared_ptr<FileHandle> handle;
               if (res >= 0) handle = std::make_shared<FileHandle>(res);
               // Kept only if no file changed meanwhile (it could be one being replaced).
               if (handle && epoch == files_epoch_) {
                 if (auto cached = fds_.find(path)) {
                   handle = std::move(cached);
                 } else {
                   fds_.adopt(path, handle);
                 }
                 then(std::move(handle));
                 ring_.submit();
               }
               cold_loaded(read);
             });
}

void PartitionLog::cold_load(const ColdMiss& miss, const std::shared_ptr<ColdRead>& read) {
  const Segment* seg = find_segment(miss.segment_base);
  if (seg == nullptr || seg->base_offset != miss.segment_base) return;  // gone meanwhile
  if (miss.kind == ColdMiss::Kind::kLogFile) {
    cold_open(seg->log_path, read,
              [this, read, base = seg->base_offset](std::shared_ptr<FileHandle> handle) {
                cold_.log_handle = handle;
                cold_.log_handle_segment = base;
                read->handle = std::move(handle);
              });
    return;
  }
  const bool index = miss.kind == ColdMiss::Kind::kIndex;
  const bool time = miss.kind == ColdMiss::Kind::kTime;
  const uint64_t unit = index ? kIndexEntryBytes : time ? kTimeIndexEntryBytes : 1;
  auto send = [this, miss, read, index, time, unit,
               epoch = files_epoch_](std::shared_ptr<FileHandle> handle) {
    if (epoch != files_epoch_) return;
    auto bytes = std::make_shared<std::vector<std::byte>>((miss.last - miss.first) * unit);
    ++read->loading;
    ++ops_in_flight_;
    ++cold_stats_.loads;
    ring_.read(
        handle->fd(), MutableBytes(*bytes), miss.first * unit,
        [this, miss, read, index, time, handle, bytes, epoch](int32_t res) {
          op_done();
          if (res > 0 && epoch == files_epoch_) {
            if (time) {
              bytes->resize(static_cast<uint64_t>(res) / kTimeIndexEntryBytes *
                            kTimeIndexEntryBytes);
              if (miss.first == 0) {
                cold_.time_segment = miss.segment_base;
                cold_.time = std::move(*bytes);
              } else if (cold_.time_segment == miss.segment_base &&
                         cold_.time.size() == miss.first * kTimeIndexEntryBytes) {
                cold_.time.insert(cold_.time.end(), bytes->begin(), bytes->end());
              }
            } else if (index) {
              // Whole entries, following those cached (or the first of another segment's).
              bytes->resize(static_cast<uint64_t>(res) / kIndexEntryBytes * kIndexEntryBytes);
              cold_index_loaded(miss.segment_base, miss.first, std::move(*bytes));
            } else {
              bytes->resize(static_cast<uint64_t>(res));
              cold_.chunks.push_back({miss.segment_base, miss.first, std::move(*bytes)});
              uint64_t held = 0;
              for (const auto& chunk : cold_.chunks) held += chunk.bytes.size();
              while (cold_.chunks.size() > 1 &&
                     (cold_.chunks.size() > kColdChunksMax || held > kColdChunksBytesMax)) {
                held -= cold_.chunks.front().bytes.size();
                cold_.chunks.pop_front();
              }
            }
            charge_cold();  // may drop other logs' caches (never this one's)
          }
          cold_loaded(read);
        });
  };
  const std::string& path = index ? seg->index_path : time ? seg->time_path : seg->log_path;
  std::shared_ptr<FileHandle> handle =
      index  ? (seg->index_rw ? seg->index_rw : fds_.find(path))
      : time ? (seg->time_rw ? seg->time_rw : fds_.find(path))
             : open_read_handle(*seg);
  if (handle) {
    send(std::move(handle));
  } else {
    cold_open(path, read, std::move(send));
  }
}

void PartitionLog::drop_cold_cache() {
  cold_ = ColdCache{};
  fds_.cold_budget().charge(this, 0);
}

void PartitionLog::charge_cold() { fds_.cold_budget().charge(this, cold_read_stats().cached_bytes); }

uint64_t PartitionLog::cold_cached_entries(const Segment& seg) const {
  const ColdCache::IndexSlot* slot = cold_index_slot(seg.base_offset);
  return slot != nullptr ? slot->entries.size() / kIndexEntryBytes : 0;
}

const std::byte* PartitionLog::cold_index_data(const Segment& seg) const {
  const ColdCache::IndexSlot* slot = cold_index_slot(seg.base_offset);
  return slot != nullptr ? slot->entries.data() : nullptr;
}

const PartitionLog::ColdCache::IndexSlot* PartitionLog::cold_index_slot(
    int64_t segment_base) const {
  for (const auto& slot : cold_.index) {
    if (slot.segment == segment_base) return &slot;
  }
  return nullptr;
}

PartitionLog::ColdCache::IndexSlot* PartitionLog::cold_index_slot(int64_t segment_base) {
  return const_cast<ColdCache::IndexSlot*>(std::as_const(*this).cold_index_slot(segment_base));
}

void PartitionLog::cold_index_loaded(int64_t segment_base, uint64_t first,
                                     std::vector<std::byte> bytes) {
  ColdCache::IndexSlot* slot = cold_index_slot(segment_base);
  if (slot != nullptr) {
    if (slot->entries.size() != first * kIndexEntryBytes) return;  // not the entries it lacks
    slot->entries.insert(slot->entries.end(), bytes.begin(), bytes.end());
  } else {
    if (first != 0) return;  // the slot they extend went meanwhile
    slot = &*std::min_element(cold_.index.begin(), cold_.index.end(),
                              [](const auto& a, const auto& b) { return a.used < b.used; });
    slot->segment = segment_base;
    slot->entries = std::move(bytes);
  }
  slot->used = ++cold_.clock;
  uint64_t held = 0;
  for (const auto& s : cold_.index) held += s.entries.size();
  while (held > kColdIndexBytesMax) {
    ColdCache::IndexSlot* oldest = nullptr;
    for (auto& s : cold_.index) {
      if (&s != slot && !s.entries.empty() && (oldest == nullptr || s.used < oldest->used)) {
        oldest = &s;
      }
    }
    if (oldest == nullptr) break;
    held -= oldest->entries.size();
    *oldest = ColdCache::IndexSlot{};
  }
}

uint64_t PartitionLog::cold_count_below(const Segment& seg, uint64_t n, uint64_t bound,
                                        bool by_position) const {
  SLUICE_ASSERT(n <= cold_cached_entries(seg));
  // (std::ranges::partition_point over an iota view does not build with clang 14's view of
  // libstdc++ 12: the checked build.)
  uint64_t lo = 0;
  uint64_t hi = n;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    const IndexEntry e =
        decode_index_entry(cold_index_data(seg) + mid * kIndexEntryBytes, seg.base_offset);
    if (by_position ? e.position < bound : static_cast<uint64_t>(e.offset) < bound) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

const std::byte* PartitionLog::cold_header(const Segment& seg, uint64_t position) const {
  return cold_bytes(seg, position, kBatchHeaderBytes);
}

const std::byte* PartitionLog::cold_bytes(const Segment& seg, uint64_t position,
                                          uint64_t size) const {
  for (auto it = cold_.chunks.rbegin(); it != cold_.chunks.rend(); ++it) {
    if (it->segment_base == seg.base_offset && it->position <= position &&
        position - it->position + size <= it->bytes.size()) {
      return it->bytes.data() + (position - it->position);
    }
  }
  return nullptr;
}

std::shared_ptr<FileHandle> PartitionLog::open_read_handle(const Segment& seg) {
  if (seg.log_rw) return seg.log_rw;
  if (auto handle = fds_.find(seg.log_path)) return handle;
  if (cold_.log_handle_segment == seg.base_offset) return cold_.log_handle.lock();
  return nullptr;
}

PartitionLog::ColdReadStats PartitionLog::cold_read_stats() const {
  ColdReadStats stats = cold_stats_;
  for (const auto& slot : cold_.index) stats.cached_bytes += slot.entries.size();
  stats.cached_bytes += cold_.time.size();
  for (const auto& chunk : cold_.chunks) stats.cached_bytes += chunk.bytes.size();
  return stats;
}

LogResult<std::shared_ptr<FileHandle>> PartitionLog::read_handle(const Segment& seg) {
  if (cold_misses_ == nullptr) {
    ++cold_stats_.file_lookups;
    return log_file(seg);
  }
  if (auto handle = open_read_handle(seg)) return handle;
  cold_misses_->push_back({.kind = ColdMiss::Kind::kLogFile, .segment_base = seg.base_offset});
  return log_error(LogErrc::kBusy, "no read handle open for " + seg.log_path);
}

LogResult<uint64_t> PartitionLog::index_entries_below(const Segment& seg, int64_t offset,
                                                      IndexEntry* floor) {
  if (cold_misses_ == nullptr) {
    ++cold_stats_.file_lookups;
    auto index = index_file(seg);
    if (!index) return unexpected(index.error());
    auto below =
        detail::index_count_below((*index)->fd(), seg.index_on_disk(), seg.base_offset, offset);
    if (!below || *below == 0) return below;
    auto entry = detail::read_index_entry((*index)->fd(), seg.base_offset, *below - 1);
    if (!entry) return unexpected(entry.error());
    *floor = *entry;
    return below;
  }
  cold_.used = cold_touched_ = true;
  const uint64_t entries = cold_index_needed(seg);
  const uint64_t cached = cold_cached_entries(seg);
  if (cached < entries) {
    cold_misses_->push_back({.kind = ColdMiss::Kind::kIndex,
                             .segment_base = seg.base_offset,
                             .first = cached,
                             .last = entries});
    return log_error(LogErrc::kBusy, "index of segment " + std::to_string(seg.base_offset) +
                                         " not cached");
  }
  if (ColdCache::IndexSlot* slot = cold_index_slot(seg.base_offset)) slot->used = ++cold_.clock;
  const uint64_t below = cold_count_below(seg, entries, static_cast<uint64_t>(offset), false);
  if (below > 0) {
    *floor = decode_index_entry(cold_index_data(seg) + (below - 1) * kIndexEntryBytes,
                                seg.base_offset);
  }
  return below;
}

LogResult<detail::BatchHeader> PartitionLog::header_at(const Segment& seg, const FileHandle& file,
                                                       uint64_t position, uint64_t readable) {
  if (cold_misses_ == nullptr) {
    ++cold_stats_.file_lookups;
    return detail::read_batch_header(file.fd(), position, readable);
  }
  cold_.used = cold_touched_ = true;
  if (readable - position < kBatchHeaderBytes) {
    return log_error(LogErrc::kCorrupt, "short batch header at " + std::to_string(position));
  }
  if (const std::byte* header = cold_header(seg, position)) {
    return detail::parse_batch_header(header, position, readable);
  }
  cold_misses_->push_back({.kind = ColdMiss::Kind::kChunk,
                           .segment_base = seg.base_offset,
                           .first = position,
                           .last = position + std::min(cold_piece_bytes_, readable - position)});
  return log_error(LogErrc::kBusy, "batch header at " + std::to_string(position) + " not cached");
}

LogResult<std::optional<TimeEntry>> PartitionLog::time_floor_of(const Segment& seg,
                                                                 int64_t timestamp_ms) {
  if (cold_misses_ == nullptr) {
    ++cold_stats_.file_lookups;
    auto time = time_file(seg);
    if (!time) return unexpected(time.error());
    return detail::time_floor((*time)->fd(), seg.time_on_disk(), seg.base_offset, timestamp_ms);
  }
  cold_.used = cold_touched_ = true;
  const uint64_t entries = seg.time_on_disk();
  const uint64_t cached =
      cold_.time_segment == seg.base_offset ? cold_.time.size() / kTimeIndexEntryBytes : 0;
  if (cached < entries) {
    cold_misses_->push_back({.kind = ColdMiss::Kind::kTime,
                             .segment_base = seg.base_offset,
                             .first = cached,
                             .last = entries});
    return log_error(LogErrc::kBusy, "time index of segment " + std::to_string(seg.base_offset) +
                                         " not cached");
  }
  // Entries are sorted by timestamp (each holds the maximum before its batch).
  auto entry = [&](uint64_t i) {
    return decode_time_entry(cold_.time.data() + i * kTimeIndexEntryBytes, seg.base_offset);
  };
  uint64_t lo = 0;
  uint64_t hi = entries;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (entry(mid).timestamp < timestamp_ms) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == 0) return std::optional<TimeEntry>();
  return std::optional<TimeEntry>(entry(lo - 1));
}

LogResult<Bytes> PartitionLog::bytes_at(const Segment& seg, const FileHandle& file,
                                        uint64_t position, uint64_t size,
                                        std::vector<std::byte>& buffer) {
  if (cold_misses_ == nullptr) {
    ++cold_stats_.file_lookups;
    buffer.resize(size);
    if (auto r = detail::pread_full(file.fd(), buffer, position); !r) return unexpected(r.error());
    return Bytes(buffer);
  }
  cold_.used = cold_touched_ = true;
  if (const std::byte* cached = cold_bytes(seg, position, size)) return Bytes(cached, size);
  // Never past what is written: a preallocated active segment reads zeros there (and an append
  // in flight, torn bytes) which the cache would keep as if they were the log.
  const uint64_t readable = readable_bytes(seg);
  if (position > readable || size > readable - position) {
    return log_error(LogErrc::kCorrupt, "batch at " + std::to_string(position) +
                                            " ends past the written bytes");
  }
  cold_misses_->push_back(
      {.kind = ColdMiss::Kind::kChunk,
       .segment_base = seg.base_offset,
       .first = position,
       .last = position + std::max(size, std::min(kColdChunkBytes, readable - position))});
  return log_error(LogErrc::kBusy, "batch at " + std::to_string(position) + " not cached");
}

void PartitionLog::offset_for_timestamp_async(int64_t timestamp_ms, TimestampCallback done) {
  timestamp_round(timestamp_ms, std::make_shared<TimestampCallback>(std::move(done)), 1);
}

void PartitionLog::timestamp_round(int64_t timestamp_ms, std::shared_ptr<TimestampCallback> done,
                                   int round) {
  std::vector<ColdMiss> misses;
  cold_misses_ = &misses;
  cold_touched_ = false;
  auto found = find_timestamp(timestamp_ms);
  cold_misses_ = nullptr;
  if (misses.empty()) {
    (*done)(std::move(found));
    return;
  }
  if (round >= kColdRoundsMax) {
    ++cold_stats_.blocking_reads;
    (*done)(find_timestamp(timestamp_ms));
    return;
  }
  auto read = std::make_shared<ColdRead>();
  cold_bring(misses, read);
  if (read->loading == 1) {  // nothing sent: what was missing went meanwhile
    read->loading = 0;
    timestamp_round(timestamp_ms, std::move(done), round + 1);
    return;
  }
  read->more = [this, timestamp_ms, done, round] {
    timestamp_round(timestamp_ms, done, round + 1);
  };
  cold_loaded(read);
}

}  // namespace sluice::log
