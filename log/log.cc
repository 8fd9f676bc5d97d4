// PartitionLog: segments, appends, flushes, truncation and retention. Recovery is in
// log_recovery.cc, reads in log_read.cc.
#include "log/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "log/internal/segment.h"
#include "log/logging.h"
#include "protocol/record_batch.h"

namespace sluice::log {

using detail::Segment;

namespace {
// Preallocation steps of the active segment (preallocate()).
constexpr uint64_t kPreallocateStepMin = 1ull << 20;
constexpr uint64_t kPreallocateStepMax = 64ull << 20;
// Zeroing ahead (LogConfig::zero_ahead): up to as much as the segment holds past its end, at
// most 4 MiB (a larger step's writeback delays the data's fdatasyncs behind it), started when
// less than half of that is left; a step that starts at the appends' end leaves them 64 KiB of
// room, so a segment holding less than that (a partition written a little) zeros nothing.
constexpr uint64_t kZeroStepMin = 64ull << 10;
constexpr uint64_t kZeroStepMax = 4ull << 20;
constexpr uint64_t kZeroMargin = 64ull << 10;
constexpr uint64_t kZeroChunk = 1ull << 20;
// Zeros ahead save each fdatasync a metadata write, a fixed cost, and cost a write of every
// byte: they pay while the syncs are small (one producer's 16 KiB batches: 16-48 KiB a sync),
// not for large ones (1 MiB batches: x1.3 the CPU per GB for nothing). Only while the moving
// average of what a flush round syncs stays below this.
constexpr uint64_t kZeroAheadRoundBytesMax = 128ull << 10;
// A removed segment's .log file is cut this much at a time before its unlink: freeing a large
// file's blocks in one call holds an ext4 journal handle that every fdatasync on the volume
// waits for (a 128 MiB file here: fdatasyncs of other files stalled 31 ms; cut 8 MiB at a
// time, 5 ms, the whole removal as long).
constexpr uint64_t kRemoveStepBytes = 8ull << 20;
// Cutting the file changes it under whoever still has it open (a Fetch's range being sent, the
// cleaner's read), unlike an unlink: the cut waits this many retention passes after the
// segment left the log (60 s at the broker's pass every 5 s, as Kafka's file.delete.delay.ms
// default). Counted in passes, not by the wall clock, which may leap. Nothing new finds the
// segment meanwhile.
constexpr uint64_t kRemoveDelayPasses = 12;

// Whether a batch of `batch_bytes` whose last offset is `end + delta` must start a new segment:
// the active one (base offset `base`, `size` bytes, created at `created_ms`) is not empty and
// would pass segment.bytes, is older than segment.ms, or would span more offsets than its
// sealing time entry can store. append_validated() and rolls() ask the same.
bool must_roll(const LogConfig& config, int64_t now, int64_t created_ms, uint64_t size,
               int64_t base, int64_t end, int64_t delta, uint64_t batch_bytes) {
  const bool full = size + batch_bytes > config.segment_bytes;
  const bool old = config.segment_ms > 0 && now - created_ms >= config.segment_ms;
  const bool wide = end + delta + 1 - base > kSegmentOffsetSpanMax;
  return size > 0 && (full || old || wide);
}
}  // namespace

PartitionLog::~PartitionLog() {
  SLUICE_ASSERT(idle());
  fds_.drop(this);
  fds_.cold_budget().forget(this);
}

bool PartitionLog::idle() const { return ops_in_flight_ == 0; }

uint64_t PartitionLog::segment_count() const { return segments_.size(); }

uint64_t PartitionLog::size_bytes() const {
  uint64_t total = 0;
  for (const auto& seg : segments_) total += seg->size_bytes;
  return total;
}

std::vector<int64_t> PartitionLog::segment_base_offsets() const {
  std::vector<int64_t> bases;
  for (const auto& seg : segments_) bases.push_back(seg->base_offset);
  return bases;
}

Segment* PartitionLog::find_segment(int64_t offset) {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                             [](int64_t o, const auto& seg) { return o < seg->base_offset; });
  if (it == segments_.begin()) return nullptr;
  return std::prev(it)->get();
}

LogResult<void> PartitionLog::write_meta(bool sync) {
  if (meta_writing_) meta_again_ = true;  // that one must not land last with older values
  std::byte raw[kMetaBytes];
  encode_meta(raw, {.log_start_offset = log_start_, .recovery_point = recovery_point_});
  auto fd = meta_fd();
  if (!fd) return unexpected(fd.error());
  if (auto r = detail::pwrite_full(*fd, raw, 0); !r) return r;
  if (sync && ::fdatasync(*fd) != 0) return errno_error(errno, "fdatasync meta");
  return {};
}

void PartitionLog::write_meta_async() {
  // One write at a time (two could land out of order); the last one carries the latest values.
  if (meta_writing_) {
    meta_again_ = true;
    return;
  }
  auto fd = meta_fd();
  if (!fd) return fail(fd.error());
  meta_writing_ = true;
  meta_again_ = false;
  auto raw = std::make_shared<std::array<std::byte, kMetaBytes>>();
  encode_meta(raw->data(), {.log_start_offset = log_start_, .recovery_point = recovery_point_});
  ++ops_in_flight_;
  ring_.write(
      *fd, Bytes(raw->data(), raw->size()), 0, [this, raw, file = meta_handle_](int32_t res) {
        op_done();
        meta_writing_ = false;
        if (res < 0) {
          return fail(errno_error(-res, "write " + dir_.string() + "/" + std::string(kMetaFileName))
                          .error());
        }
        if (meta_again_ && !failure_) write_meta_async();
      });
  ring_.submit();
}

LogResult<int> PartitionLog::meta_fd() {
  if (!meta_handle_) {
    auto f = FileHandle::open((dir_ / kMetaFileName).string(), O_RDWR | O_CREAT);
    if (!f) return unexpected(f.error());
    meta_handle_ = *f;
  }
  fds_.touch(this);
  return meta_handle_->fd();
}

LogResult<int> PartitionLog::dir_fd() {
  if (!dir_handle_) {
    auto f = FileHandle::open(dir_.string(), O_RDONLY | O_DIRECTORY);
    if (!f) return unexpected(f.error());
    dir_handle_ = *f;
  }
  fds_.touch(this);
  return dir_handle_->fd();
}

LogResult<void> PartitionLog::reopen_fds() {
  Segment& active = *segments_.back();
  SLUICE_ASSERT(active.active || failure_);
  for (auto [handle, path] : active.rw_files()) {
    if (*handle) continue;
    auto f = FileHandle::open(*path, O_RDWR);
    if (!f && (errno == EMFILE || errno == ENFILE) && fds_.trim() > 0) {
      f = FileHandle::open(*path, O_RDWR);
    }
    if (!f) return unexpected(f.error());
    *handle = *f;
  }
  fds_.touch(this);
  return {};
}

void PartitionLog::reopen_fds_async(std::function<void(int32_t)> done) {
  Segment& active = *segments_.back();
  SLUICE_ASSERT(active.active || failure_);
  struct Reopen {
    int pending = 0;
    int32_t error = 0;
    std::function<void(int32_t)> done;
  };
  auto st = std::make_shared<Reopen>();
  st->done = std::move(done);
  const int64_t base = active.base_offset;
  for (size_t i = 0; i < 3; ++i) {
    const Segment::RwFile file = active.rw_files()[i];
    if (*file.handle) continue;
    ++st->pending;
    ++ops_in_flight_;  // idle() is false meanwhile: release_fds() waits
    ring_.open(*file.path, O_RDWR, 0, [this, st, base, i](int32_t res) {
      op_done();
      auto opened = res >= 0 ? std::make_shared<FileHandle>(res) : nullptr;  // owns it
      Segment& now = *segments_.back();
      // The replica waits for this before it appends or cuts: the active segment is the one
      // the opens were for (if not, what they opened is closed).
      if (opened && now.base_offset == base && now.active) {
        std::shared_ptr<FileHandle>& handle = *now.rw_files()[i].handle;
        if (!handle) handle = std::move(opened);
      }
      if (res < 0 && st->error == 0) st->error = res;
      if (--st->pending > 0) return;
      if (st->error == 0) fds_.touch(this);
      st->done(st->error);
    });
  }
  if (st->pending == 0) {
    fds_.touch(this);
    st->done(0);
    return;
  }
  ring_.submit();
}

bool PartitionLog::holds_fds() const {
  return !segments_.empty() && segments_.back()->log_rw != nullptr;
}

bool PartitionLog::release_fds() {
  if (keep_fds_ || !idle() || !side_ops_idle() || !flush_rounds_.empty() || dir_dirty_ || !appends_.empty() ||
      !durable_waiters_.empty() || !pending_writes_.empty() || written_end_ != end_offset_ ||
      durable_end_ != written_end_) {
    return false;
  }
  for (const auto& seg : segments_) {
    if (seg->dirty || seg->unsynced || (!seg->active && seg->log_rw)) return false;
  }
  discard_next();  // a roll prepared and then not taken (the caller gave up)
  close_handles();
  return true;
}

void PartitionLog::close_handles() {
  drop_cold_cache();
  for (auto& seg : segments_) {
    seg->log_rw.reset();
    seg->index_rw.reset();
    seg->time_rw.reset();
  }
  meta_handle_.reset();
  dir_handle_.reset();
}

// Makes `seg` the active segment: read-write handles, preallocation, roll clock.
LogResult<void> PartitionLog::open_active(Segment& seg, bool now) {
  for (auto [handle, path] : seg.rw_files()) {
    if (*handle) continue;
    auto f = FileHandle::open(*path, O_RDWR | O_CREAT);
    if (!f) return unexpected(f.error());
    *handle = *f;
  }
  // A sealing time entry (written at close) is dropped: appends continue the segment.
  if (seg.time_entries == seg.index_entries + 1) {
    --seg.time_entries;
    if (auto r = detail::truncate_file(seg.time_rw->fd(), seg.time_entries * kTimeIndexEntryBytes);
        !r) {
      return r;
    }
  }
  seg.active = true;
  seg.unsynced = false;
  seg.created_ms = config_.clock_ms();
  preallocate(seg, seg.size_bytes, now);
  return {};
}

LogResult<void> PartitionLog::create_segment(int64_t base_offset, bool now) {
  auto seg = std::make_unique<Segment>();
  seg->base_offset = seg->end_offset = base_offset;
  seg->log_path = (dir_ / segment_file_name(base_offset, kLogSuffix)).string();
  seg->index_path = (dir_ / segment_file_name(base_offset, kIndexSuffix)).string();
  seg->time_path = (dir_ / segment_file_name(base_offset, kTimeIndexSuffix)).string();
  seg->bytes_since_index = config_.index_interval_bytes;
  if (NextSegment* next = prepared(base_offset);
      next != nullptr && next->opening == 0 && !next->failed) {
    // Opened through the ring ahead of this roll (prepare_next).
    seg->log_rw = std::move(next->files[0]);
    seg->index_rw = std::move(next->files[1]);
    seg->time_rw = std::move(next->files[2]);
    // Taken, not discarded: its files are the segment's now.
    std::erase_if(next_, [next](const auto& n) { return n.get() == next; });
  } else {
    discard_next();
  }
  for (auto [handle, path] : seg->rw_files()) {
    fds_.forget(*path);
    if (*handle) continue;
    auto f = FileHandle::open(*path, O_RDWR | O_CREAT | O_TRUNC);
    if (!f) return unexpected(f.error());
    *handle = *f;
  }
  if (auto r = open_active(*seg, now); !r) return r;
  dir_dirty_ = true;
  segments_.push_back(std::move(seg));
  return {};
}

// Keeps the active segment's .log file allocated ahead of `needed` bytes: by as much again as
// it holds (kPreallocateStepMin to kPreallocateStepMax at a time), never past segment_bytes,
// so that a small volume is not reserved up front and a growing segment stays contiguous.
// A failure (a full disk) is no error here: the write itself reports it.
void PartitionLog::preallocate(Segment& seg, uint64_t needed, bool now) {
  if (config_.zero_ahead && !now && config_.flush.mode == FlushMode::kEveryBatch &&
      round_bytes_avg_ < kZeroAheadRoundBytesMax) {
    return zero_ahead(seg, needed);
  }
  if (!config_.preallocate || seg.fallocate_in_flight ||
      (seg.preallocated && needed <= seg.allocated_bytes)) {
    return;
  }
  const uint64_t step = std::clamp(needed, kPreallocateStepMin, kPreallocateStepMax);
  const uint64_t target = std::max(needed, std::min(needed + step, config_.segment_bytes));
  if (target <= needed && seg.preallocated) return;
  if (now) {
    if (::fallocate(seg.log_rw->fd(), 0, 0, static_cast<off_t>(target)) == 0) {
      seg.preallocated = true;
      seg.allocated_bytes = target;
    }
    return;
  }
  // Through the ring: fallocate blocks while the file system allocates. Writes meanwhile may
  // extend the file themselves; the step only reserves.
  seg.fallocate_in_flight = true;
  ++ops_in_flight_;
  ring_.fallocate(seg.log_rw->fd(), target,
                  [this, base = seg.base_offset, target, file = seg.log_rw](int32_t res) {
                    on_fallocate_done(base, target, res);
                  });
  ring_.submit();
}

void PartitionLog::on_fallocate_done(int64_t segment_base, uint64_t target, int32_t result) {
  op_done();
  Segment* seg = find_segment(segment_base);
  if (seg == nullptr || seg->base_offset != segment_base) return;
  seg->fallocate_in_flight = false;
  if (result == 0) {
    seg->preallocated = true;
    seg->allocated_bytes = std::max(seg->allocated_bytes, target);
  }
  if (seg->active || failure_) return;
  // Sealed while the step ran: trim what it reserved (once per roll at most), then the
  // segment may take its last fdatasync.
  if (seg->preallocated && seg->log_rw) {
    trim(*seg);
    return;
  }
  if (closed_ready(*seg)) start_flush();
}

void PartitionLog::zero_ahead(Segment& seg, uint64_t needed) {
  if (seg.fallocate_in_flight || failure_) return;
  const uint64_t step = std::clamp(needed, kZeroStepMin, kZeroStepMax);
  const uint64_t zeroed = seg.zeroed_bytes;
  if (zeroed >= needed + step / 2) return;
  // Where the last step ended, or past the appends' end (with room before the zeros) when
  // they ran past it; on a page boundary, so that no page holds both.
  uint64_t from = zeroed >= needed ? zeroed : needed + kZeroMargin;
  from = (from + 4095) & ~uint64_t{4095};
  const uint64_t to = std::min(needed + step, config_.segment_bytes);
  if (to <= from) return;
  static const std::vector<std::byte> zeros(kZeroChunk);
  std::vector<IoRing::ChainedWrite> writes;
  for (uint64_t at = from; at < to; at += kZeroChunk) {
    writes.push_back({.data = Bytes(zeros.data(), std::min(kZeroChunk, to - at)),
                      .position = at,
                      .done = [](int32_t) {}});
  }
  seg.fallocate_in_flight = true;
  seg.zeroing_from = from;
  ++ops_in_flight_;
  // Synced on their own, so that the data's fdatasyncs find the blocks written and the size
  // set; they vouch for nothing (a crash leaves zeros past the end, as after fallocate).
  ring_.write_then_fdatasync(seg.log_rw->fd(), std::move(writes),
                             [this, base = seg.base_offset, to, file = seg.log_rw](int32_t res) {
                               on_zeroed(base, to, res);
                             });
  ring_.submit();
}

void PartitionLog::on_zeroed(int64_t segment_base, uint64_t target, int32_t result) {
  // Data writes that waited for these zeros go now, in order (the ring may run them beside
  // each other: they do not overlap).
  bool released = false;
  std::erase_if(held_writes_, [&](HeldWrite& w) {
    if (w.segment_base != segment_base) return false;
    ring_.write(w.file->fd(), w.bytes, w.position,
                [this, seq = w.seq, file = w.file](int32_t res) { on_write_done(seq, res); });
    released = true;
    return true;
  });
  if (released) ring_.submit();
  if (Segment* seg = find_segment(segment_base);
      seg != nullptr && seg->base_offset == segment_base) {
    seg->zeroing_from = UINT64_MAX;
    // A failed step is not retried for this segment (a full disk: its own writes say so).
    seg->zeroed_bytes = result == 0 ? std::max(seg->zeroed_bytes, target) : UINT64_MAX;
  }
  // As a preallocation step that reached `target`, even a failed one: whatever the zeros
  // added past the data is trimmed when the segment closes.
  on_fallocate_done(segment_base, target, 0);
}

void PartitionLog::trim(Segment& seg) {
  SLUICE_ASSERT(!seg.active && seg.preallocated && !seg.trim_in_flight && seg.log_rw);
  seg.trim_in_flight = true;
  ++ops_in_flight_;
  ring_.ftruncate(seg.log_rw->fd(), seg.size_bytes,
                  [this, base = seg.base_offset, file = seg.log_rw](int32_t res) {
                    on_trimmed(base, res);
                  });
  ring_.submit();
}

void PartitionLog::on_trimmed(int64_t segment_base, int32_t result) {
  op_done();
  Segment* seg = find_segment(segment_base);
  if (seg == nullptr || seg->base_offset != segment_base) return;
  seg->trim_in_flight = false;
  if (result < 0) return fail(errno_error(-result, "ftruncate " + seg->log_path).error());
  seg->preallocated = false;
  seg->dirty = true;  // the new size must reach the disk
  if (failure_) return;
  if (closed_ready(*seg)) start_flush();
}

PartitionLog::Rolls PartitionLog::rolls(std::span<const MutableBytes> parts,
                                        std::span<const uint64_t> sizes, int64_t now) const {
  // The checks of append_validated(), batch by batch, on the log as it would grow: a segment
  // it rolls to is empty and as young as `now`.
  Rolls rolls{.bases = {}, .parts_within = 0};
  const Segment& active = *segments_.back();
  int64_t created = active.created_ms;
  int64_t base = active.base_offset;
  uint64_t size = active.size_bytes;
  int64_t end = end_offset_;
  size_t next = 0;
  for (const MutableBytes part : parts) {
    uint64_t at = 0;
    while (at < part.size()) {
      SLUICE_ASSERT(next < sizes.size());
      const uint64_t batch = sizes[next++];
      auto view = kafka::RecordBatchView::parse(part.subspan(at, batch));
      SLUICE_ASSERT(view.has_value());  // validate() accepted it
      const int64_t delta = view->last_offset_delta();
      if (must_roll(config_, now, created, size, base, end, delta, batch)) {
        if (rolls.bases.size() == kPreparedRollsMax) {
          rolls.parts_within = std::max<size_t>(rolls.parts_within, 1);
          return rolls;  // this part needs one more: it and the rest wait for the next append
        }
        rolls.bases.push_back(end);
        created = now;
        base = end;
        size = 0;
      }
      size += batch;
      end += delta + 1;
      at += batch;
    }
    ++rolls.parts_within;
  }
  return rolls;
}

void PartitionLog::prepare_next(int64_t base) {
  SLUICE_ASSERT(prepared(base) == nullptr);
  auto prepared = std::make_shared<NextSegment>(NextSegment{
      .base = base, .files = {}, .paths = {}, .opening = 3, .failed = false, .discarded = false});
  next_.push_back(prepared);
  const std::string_view suffixes[3] = {kLogSuffix, kIndexSuffix, kTimeIndexSuffix};
  for (int i = 0; i < 3; ++i) {
    prepared->paths[i] = (dir_ / segment_file_name(base, suffixes[i])).string();
    fds_.forget(prepared->paths[i]);
    ++ops_in_flight_;
    ring_.open(prepared->paths[i], O_RDWR | O_CREAT | O_TRUNC, 0644,
               [this, next = prepared, i](int32_t res) {
                 SLUICE_ASSERT(ops_in_flight_ > 0 && next->opening > 0);
                 op_done();
                 --next->opening;
                 auto file = res >= 0 ? std::make_shared<FileHandle>(res) : nullptr;  // owns it
                 if (next->discarded) {
                   // Rare (see discard_next()); unless a segment was opened there meanwhile.
                   const Segment* seg = find_segment(next->base);
                   if (file && (seg == nullptr || seg->base_offset != next->base)) {
                     ::unlink(next->paths[i].c_str());
                   }
                   return;
                 }
                 if (file) {
                   next->files[i] = std::move(file);
                 } else {
                   next->failed = true;  // the append opens them itself and reports the error
                 }
                 wake_appenders();  // the roll can go once every prepared roll is open
               });
  }
  // A roll syncs the directory and writes partition.meta (the recovery point moves): their
  // handles too, if a release closed them (more busy partitions than the shard keeps
  // descriptors for), so that the roll opens nothing on the calling thread. A failed open is
  // reported by the blocking open the roll then makes.
  const bool side_opening = side_handles_opening_ > 0;  // for an earlier prepared roll
  struct Side {
    std::shared_ptr<FileHandle>* handle;
    std::string path;
    int flags;
  };
  for (const Side& side : {Side{&meta_handle_, (dir_ / kMetaFileName).string(), O_RDWR | O_CREAT},
                           Side{&dir_handle_, dir_.string(), O_RDONLY | O_DIRECTORY}}) {
    std::shared_ptr<FileHandle>* handle = side.handle;
    if (*handle || side_opening) continue;
    ++prepared->opening;
    ++side_handles_opening_;
    ++ops_in_flight_;
    ring_.open(side.path, side.flags, 0644, [this, next = prepared, handle](int32_t res) {
      SLUICE_ASSERT(ops_in_flight_ > 0 && next->opening > 0 && side_handles_opening_ > 0);
      op_done();
      --next->opening;
      --side_handles_opening_;
      auto file = res >= 0 ? std::make_shared<FileHandle>(res) : nullptr;  // owns it
      if (file && !*handle) *handle = std::move(file);
      if (!next->discarded) wake_appenders();
    });
  }
  ring_.submit();
}

PartitionLog::NextSegment* PartitionLog::prepared(int64_t base) const {
  for (const auto& next : next_) {
    if (next->base == base) return next.get();
  }
  return nullptr;
}

void PartitionLog::discard_next() {
  for (const auto& next : next_) discard_prepared(*next);
  next_.clear();
}

void PartitionLog::discard_prepared(NextSegment& next) {
  // Empty, never part of the log (rare: a truncation, a close, an append without roll_async).
  next.discarded = true;
  for (int i = 0; i < 3; ++i) {
    next.files[i].reset();
    ::unlink(next.paths[i].c_str());
  }
}

bool PartitionLog::closed_ready(const Segment& seg) {
  return seg.unsynced && seg.written_bytes == seg.size_bytes && seg.side_ops_idle();
}

bool PartitionLog::side_ops_idle() const {
  return std::all_of(segments_.begin(), segments_.end(),
                     [](const auto& seg) { return seg->side_ops_idle(); });
}

void PartitionLog::queue_index(Segment& seg, bool time, Bytes entry) {
  detail::IndexQueue& q = time ? seg.time_queue : seg.index_queue;
  q.queued.insert(q.queued.end(), entry.begin(), entry.end());
  ++q.queued_entries;
  pump_index(seg, time);
}

// Entries of the active segment that lookups do not need yet (reads of the window's batches
// touch no index) wait, and go to disk many at a time: one write a batch cost an io_uring
// worker's wake-up per file (ext4 runs buffered writes there) for nothing but recovery, which
// rebuilds the active segment's indexes after a crash anyway.
bool PartitionLog::index_due(const Segment& seg, bool time) const {
  const detail::IndexQueue& q = time ? seg.time_queue : seg.index_queue;
  if (!seg.active || q.queued.size() >= kLateIndexBytesMax) return true;
  // Cold reads (of batches older than the window) search the entries on disk: the entries of
  // this segment's batches before the window's first must be there.
  uint64_t needed = 0;
  if (recent_.empty() || recent_.front().segment_base > seg.base_offset) {
    needed = seg.index_entries;
  } else if (recent_.front().segment_base == seg.base_offset) {
    needed = recent_.front().index_before;
  }
  // The active segment's two files get their entries at the same batches.
  const uint64_t after = seg.index_entries - std::min(needed, seg.index_entries);
  return time ? seg.time_on_disk() + after < seg.time_entries : seg.index_on_disk() < needed;
}

void PartitionLog::pump_late_index() {
  if (segments_.empty() || failure_) return;
  Segment& active = *segments_.back();
  pump_indexes(active, true);
  ring_.submit();
}

void PartitionLog::pump_indexes(Segment& seg, bool now) {
  pump_index(seg, false, now);
  pump_index(seg, true, now);
}

void PartitionLog::pump_index(Segment& seg, bool time, bool now) {
  detail::IndexQueue& q = time ? seg.time_queue : seg.index_queue;
  if (q.writing_entries > 0 || q.queued_entries == 0) return;
  if (!now && !index_due(seg, time)) return;
  const std::shared_ptr<FileHandle>& file = time ? seg.time_rw : seg.index_rw;
  SLUICE_ASSERT(file != nullptr);
  const uint64_t entry_bytes = time ? kTimeIndexEntryBytes : kIndexEntryBytes;
  const uint64_t position = (time ? seg.time_on_disk() : seg.index_on_disk()) * entry_bytes;
  auto bytes = std::make_shared<std::vector<std::byte>>(std::move(q.queued));
  q.queued.clear();
  q.writing_entries = q.queued_entries;
  q.queued_entries = 0;
  ++ops_in_flight_;
  ring_.write(file->fd(), *bytes, position,
              [this, base = seg.base_offset, time, bytes, file](int32_t res) {
                on_index_written(base, time, res);
              });
}

void PartitionLog::on_index_written(int64_t segment_base, bool time, int32_t result) {
  Segment* seg = find_segment(segment_base);
  if (seg == nullptr || seg->base_offset != segment_base) return op_done();
  detail::IndexQueue& q = time ? seg->time_queue : seg->index_queue;
  q.writing_entries = 0;
  if (result < 0) {
    // The entries are lost: what the index files hold is unknown, as after a failed data write.
    q.queued.clear();
    q.queued_entries = 0;
    op_done();
    return fail(errno_error(-result, "write index " + dir_.string()).error());
  }
  op_done();  // after the queue's state is up to date: it may write the entries left
  if (failure_) return;
  pump_index(*seg, time);
  ring_.submit();
  if (!seg->active && closed_ready(*seg)) start_flush();
}

// Closes `seg` for appends: trims preallocated space and writes the sealing time entry.
LogResult<void> PartitionLog::seal(Segment& seg, bool now) {
  SLUICE_ASSERT(seg.active);
  // A preallocation step still in flight is trimmed when it completes (on_fallocate_done).
  const bool trim_now = seg.preallocated && !seg.fallocate_in_flight;
  if (trim_now && now) {
    if (auto r = detail::truncate_file(seg.log_rw->fd(), seg.size_bytes); !r) return r;
    seg.preallocated = false;
  }
  if (seg.end_offset > seg.base_offset) {
    std::byte raw[kTimeIndexEntryBytes];
    encode_time_entry(raw, seg.base_offset,
                      {.timestamp = seg.max_timestamp, .offset = seg.end_offset});
    if (now) {
      SLUICE_ASSERT(seg.time_queue.pending() == 0);
      if (auto r = detail::pwrite_full(seg.time_rw->fd(), raw, seg.time_entries * sizeof(raw));
          !r) {
        return r;
      }
      ++seg.time_entries;
    } else {
      ++seg.time_entries;
      queue_index(seg, true, raw);
    }
  }
  seg.active = false;
  seg.unsynced = true;
  seg.dirty = true;  // the trimmed size must reach the disk too
  pump_indexes(seg);                // entries that waited while it was active
  if (trim_now && !now) trim(seg);  // through the ring: it blocks in the file system
  return {};
}

LogResult<void> PartitionLog::roll() {
  Segment& old = *segments_.back();
  SLUICE_ASSERT(old.end_offset == end_offset_);
  if (auto r = seal(old, false); !r) return r;
  if (auto r = create_segment(end_offset_, false); !r) return r;
  SLUICE_ASSERT(segments_.back()->base_offset == old.end_offset);
  return {};
}

void PartitionLog::prune_recent() {
  while (!recent_.empty() && (recent_.front().segment_base < segments_.front()->base_offset ||
                              recent_.front().last_offset < log_start_)) {
    recent_.pop_front();
  }
}

void PartitionLog::delete_segment_files(Segment& seg, bool through_ring) {
  files_changed();
  for (const auto* path : {&seg.log_path, &seg.index_path, &seg.time_path}) {
    fds_.forget(*path);
    if (!through_ring) {
      ::unlink(path->c_str());
    } else {
      remove_through_ring(*path, path == &seg.log_path ? seg.size_bytes : 0);
    }
  }
  if (through_ring) ring_.submit();
  dir_dirty_ = true;
}

std::string PartitionLog::aside_name(const std::string& path) {
  return path + "." + std::to_string(++aside_files_) + std::string(kAsideSuffix);
}

void PartitionLog::set_aside_segment_files(Segment& seg) {
  files_changed();
  for (const auto* path : {&seg.log_path, &seg.index_path, &seg.time_path}) {
    fds_.forget(*path);
    const std::string aside = aside_name(*path);
    if (::rename(path->c_str(), aside.c_str()) == 0) {
      remove_through_ring(aside, path == &seg.log_path ? seg.size_bytes : 0);
    } else if (errno != ENOENT) {
      ::unlink(path->c_str());  // freed here after all
    }
  }
  ring_.submit();
  dir_dirty_ = true;  // the renames reach the disk with the next flush round's directory sync
}

void PartitionLog::remove_through_ring(const std::string& path, uint64_t size) {
  if (size > kRemoveStepBytes) {
    removals_.push_back({path, size, retention_passes_ + kRemoveDelayPasses});
    return;
  }
  ++ops_in_flight_;
  ring_.unlink(path, [this, path](int32_t res) { on_removed(path, res); });
  ring_.submit();
}

void PartitionLog::on_removed(const std::string& path, int32_t result) {
  op_done();
  if (result < 0 && result != -ENOENT) {
    // Not a reason to stop the partition: the file lies below the log start, where nothing
    // reads, and the next retention pass after a restart finds it again.
    detail::log_line(LogLevel::kWarning, "cannot remove " + path + ": " + std::strerror(-result));
  }
}

void PartitionLog::start_due_removals() {
  bool started = false;
  while (!removals_.empty() && removals_.front().due_pass <= retention_passes_) {
    remove_gradually(removals_.front().path, removals_.front().size);
    removals_.pop_front();
    started = true;
  }
  if (started) ring_.submit();
}

// Opens the file, cuts it kRemoveStepBytes at a time from its end, closes and unlinks it, each
// step through the ring (one operation of the log in flight throughout).
void PartitionLog::remove_gradually(const std::string& path, uint64_t size) {
  struct Removal {
    std::string path;
    uint64_t size;
    int fd = -1;
  };
  auto r = std::make_shared<Removal>(Removal{path, size});
  ++ops_in_flight_;
  auto step = std::make_shared<std::function<void(int32_t)>>();
  // The ring's completions own `step`; it refers to itself weakly (no cycle).
  *step = [this, r, weak = std::weak_ptr<std::function<void(int32_t)>>(step)](int32_t res) {
    auto self = weak.lock();
    if (res < 0 || r->size == 0 || !self) {  // cut to nothing, or a step failed: unlink
      if (r->fd >= 0) ::close(r->fd);
      r->fd = -1;
      ring_.unlink(r->path, [this, path = r->path](int32_t done) { on_removed(path, done); });
      ring_.submit();
      return;
    }
    r->size = r->size > kRemoveStepBytes ? r->size - kRemoveStepBytes : 0;
    ring_.ftruncate(r->fd, r->size, [self](int32_t cut) { (*self)(cut); });
    ring_.submit();
  };
  ring_.open(path, O_WRONLY, 0, [r, step](int32_t fd) {
    if (fd >= 0) r->fd = fd;
    (*step)(fd < 0 ? fd : 0);
  });
}

LogResult<void> PartitionLog::validate(Bytes batches, bool check_crc,
                                       std::vector<uint64_t>& sizes) const {
  kafka::BatchIterator it(batches);
  for (;;) {
    auto next = it.next();
    if (!next) return log_error(LogErrc::kInvalidBatch, next.error().message);
    if (!next->has_value()) break;
    const kafka::RecordBatchView& view = **next;
    if (check_crc) {
      if (auto crc = view.verify_crc(); !crc) {
        return log_error(LogErrc::kInvalidBatch, crc.error().message);
      }
    }
    if (view.size_bytes() > kBatchBytesMax) {
      return log_error(LogErrc::kInvalidBatch, "batch larger than kBatchBytesMax");
    }
    // Also bounds the offsets a batch takes, so the relative offsets of the indexes fit.
    if (view.record_count() <= 0 || view.last_offset_delta() != view.record_count() - 1) {
      return log_error(LogErrc::kInvalidBatch, "lastOffsetDelta must be recordCount - 1");
    }
    sizes.push_back(view.size_bytes());
  }
  if (it.partial() || sizes.empty()) {
    return log_error(LogErrc::kInvalidBatch, "no batch, or a partial batch at the end");
  }
  return {};
}

// Index entries for the batch about to be placed at `position` (FORMAT.md, ".index").
LogResult<void> PartitionLog::add_index_entries(Segment& seg, uint64_t position, int64_t base,
                                                int64_t last, int64_t max_ts, uint64_t size) {
  if (seg.bytes_since_index >= config_.index_interval_bytes) {
    std::byte index_raw[kIndexEntryBytes];
    encode_index_entry(index_raw, seg.base_offset, {.offset = base, .position = position});
    std::byte time_raw[kTimeIndexEntryBytes];
    encode_time_entry(time_raw, seg.base_offset, {.timestamp = seg.max_timestamp, .offset = base});
    ++seg.index_entries;
    ++seg.time_entries;
    queue_index(seg, false, index_raw);
    queue_index(seg, true, time_raw);
    seg.bytes_since_index = 0;
  }
  seg.bytes_since_index += size;
  seg.size_bytes = position + size;
  seg.end_offset = last + 1;
  seg.max_timestamp = std::max(seg.max_timestamp, max_ts);
  return {};
}

LogResult<AppendResult> PartitionLog::append(MutableBytes batches, const AppendOptions& options,
                                             AppendCallback done) {
  return append(std::span<const MutableBytes>(&batches, 1), options, std::move(done));
}

LogResult<AppendResult> PartitionLog::append_validated(MutableBytes batches,
                                                       std::span<const uint64_t> sizes,
                                                       const AppendOptions& options,
                                                       int64_t now, AppendCallback done) {
  if (auto r = reopen_fds(); !r) return unexpected(r.error());
  if (options.stamped) {
    int64_t expect = end_offset_;
    uint64_t pos = 0;
    for (const uint64_t size : sizes) {
      auto view = kafka::RecordBatchView::parse(batches.subspan(pos, size));
      SLUICE_ASSERT(view.has_value());  // validate() accepted it
      if (view->base_offset() != expect) {
        return log_error(LogErrc::kInvalidBatch,
                         "batch stamped with offset " + std::to_string(view->base_offset()) +
                             " where the log ends at " + std::to_string(expect));
      }
      expect += view->last_offset_delta() + 1;
      pos += size;
    }
  }

  AppendResult result{.base_offset = Offset(end_offset_), .bytes = batches.size()};
  uint64_t at = 0;         // position in `batches`
  uint64_t run_start = 0;  // start of the bytes not yet submitted
  for (const uint64_t size : sizes) {
    const MutableBytes batch = batches.subspan(at, size);
    auto view = kafka::RecordBatchView::parse(batch);
    SLUICE_ASSERT(view.has_value());  // validate() accepted it
    const int64_t delta = view->last_offset_delta();
    Segment* active = segments_.back().get();
    if (must_roll(config_, now, active->created_ms, active->size_bytes, active->base_offset,
                  end_offset_, delta, size)) {
      if (at > run_start) {
        submit_write(*active, batches.subspan(run_start, at - run_start),
                     active->size_bytes - (at - run_start), end_offset_);
      }
      run_start = at;
      if (auto r = roll(); !r) {
        fail(r.error());
        return unexpected(r.error());
      }
      active = segments_.back().get();
    }
    if (!options.stamped) {
      kafka::set_base_offset(batch, end_offset_);
      if (options.leader_epoch >= 0) kafka::set_partition_leader_epoch(batch, options.leader_epoch);
    }
    recent_.push_back({.base_offset = end_offset_,
                       .last_offset = end_offset_ + delta,
                       .segment_base = active->base_offset,
                       .position = active->size_bytes,
                       .size = size,
                       .max_timestamp = view->max_timestamp(),
                       .segment_max_before = active->max_timestamp,
                       .leader_epoch = view->partition_leader_epoch(),
                       .index_before = static_cast<uint32_t>(active->index_entries)});
    if (recent_.size() > kRecentBatchesMax) {
      recent_.pop_front();
      // The window moved on: cold reads may now need entries that waited.
      if (recent_.front().segment_base == active->base_offset) {
        pump_indexes(*active);
      }
    }
    if (auto r = add_index_entries(*active, active->size_bytes, end_offset_, end_offset_ + delta,
                                   view->max_timestamp(), size);
        !r) {
      fail(r.error());
      return unexpected(r.error());
    }
    end_offset_ += delta + 1;
    at += size;
  }
  Segment& active = *segments_.back();
  submit_write(active, batches.subspan(run_start, at - run_start),
               active.size_bytes - (at - run_start), end_offset_);
  result.last_offset = Offset(end_offset_ - 1);
  result.end_offset = Offset(end_offset_);
  if (config_.flush.mode == FlushMode::kEveryBatch) {
    durable_waiters_.emplace(end_offset_,
                             [result, done = std::move(done)](const LogResult<Offset>& durable) {
                               if (!done) return;
                               if (durable) {
                                 done(result);
                               } else {
                                 done(unexpected(durable.error()));
                               }
                             });
  } else {
    appends_.push_back({end_offset_, result, std::move(done)});
  }
  ring_.submit();
  SLUICE_ASSERT(result.last_offset >= result.base_offset);
  return result;
}

LogResult<AppendResult> PartitionLog::append(std::span<const MutableBytes> parts,
                                             const AppendOptions& options, AppendCallback done) {
  if (failure_) return unexpected(*failure_);
  if (parts.empty()) return log_error(LogErrc::kInvalidBatch, "no batch");
  if (cutting_) return log_error(LogErrc::kBusy, "truncation in flight");
  if (pending_writes_.size() + parts.size() > config_.inflight_appends_max) {
    appendable_writes_ =
        config_.inflight_appends_max - std::min<size_t>(parts.size(), config_.inflight_appends_max);
    return log_error(LogErrc::kBusy, "too many appends in flight");
  }
  std::vector<uint64_t> sizes;
  std::vector<size_t> part_ends;  // each part's batches end at sizes[part_ends[i]]
  part_ends.reserve(parts.size());
  for (const MutableBytes part : parts) {
    if (auto r = validate(part, !options.crc_checked, sizes); !r) return unexpected(r.error());
    part_ends.push_back(sizes.size());
  }
  const int64_t now = config_.clock_ms();
  if (options.roll_async) {
    const Rolls planned = rolls(parts, sizes, now);
    // More rolls than are prepared ahead: the parts that fit go now, the caller sends the rest.
    parts = parts.first(planned.parts_within);
    if (const auto& bases = planned.bases; !bases.empty()) {
      // Prepared for rolls this append does not make (an append given up, or other batches).
      std::erase_if(next_, [&](const auto& next) {
        if (std::find(bases.begin(), bases.end(), next->base) != bases.end()) return false;
        discard_prepared(*next);
        return true;
      });
      bool opening = false;
      for (const int64_t base : bases) {
        if (const NextSegment* next = prepared(base)) {
          // Opened (or failed to: the roll then opens them itself and reports why).
          opening = opening || next->opening > 0;
          continue;
        }
        if (auto r = reopen_fds(); !r) return unexpected(r.error());
        prepare_next(base);
        opening = true;
      }
      if (opening) return log_error(LogErrc::kBusy, "opening the next segment");
    }
  }
  AppendResult total{.base_offset = Offset(end_offset_), .parts = parts.size()};
  begin_chain();
  struct EndChain {
    PartitionLog* log;
    ~EndChain() { log->end_chain(); }
  } end_chain_at_return{this};
  for (size_t i = 0; i < parts.size(); ++i) {
    const size_t first = i == 0 ? 0 : part_ends[i - 1];
    const std::span<const uint64_t> part_sizes(sizes.data() + first, part_ends[i] - first);
    AppendCallback part_done;
    if (i + 1 == parts.size() && done) {
      // Callbacks run in append order: the last part's means all parts are in.
      part_done = [base = total.base_offset,
                   done = std::move(done)](const LogResult<AppendResult>& r) {
        if (!r) return done(r);
        AppendResult all = *r;
        all.base_offset = base;
        done(all);
      };
    }
    if (failure_) return unexpected(*failure_);
    auto r = append_validated(parts[i], part_sizes, options, now, std::move(part_done));
    if (!r) return r;  // only an I/O failure, which stopped the partition
    total.bytes += r->bytes;
    total.last_offset = r->last_offset;
    total.end_offset = r->end_offset;
  }
  SLUICE_ASSERT(total.end_offset == Offset(end_offset_));
  return total;
}

void PartitionLog::submit_write(Segment& seg, Bytes bytes, uint64_t position, int64_t end_offset) {
  SLUICE_ASSERT(!bytes.empty());
  SLUICE_ASSERT(position + bytes.size() == seg.size_bytes);
  bytes_since_round_ += bytes.size();
  if (seg.active) preallocate(seg, seg.size_bytes, false);
  const uint64_t seq = next_seq_++;
  pending_writes_.push_back({.seq = seq,
                             .segment_base = seg.base_offset,
                             .end_position = position + bytes.size(),
                             .end_offset = end_offset});
  ++ops_in_flight_;
  if (position + bytes.size() > seg.zeroing_from) {
    // Zeros are being written where this goes: it must land after them (on_zeroed).
    unchain();
    held_writes_.push_back({.segment_base = seg.base_offset,
                            .file = seg.log_rw,
                            .bytes = bytes,
                            .position = position,
                            .seq = seq});
    return;
  }
  IoRing::Completion done = [this, seq, file = seg.log_rw](int32_t res) { on_write_done(seq, res); };
  if (chain_ && (chain_->writes.empty() || chain_->segment_base == seg.base_offset)) {
    chain_->segment_base = seg.base_offset;
    chain_->file = seg.log_rw;
    chain_->writes.push_back({bytes, position, std::move(done)});
    chain_->seqs.push_back(seq);
    pending_writes_.back().linked = true;
    return;
  }
  unchain();
  ring_.write(seg.log_rw->fd(), bytes, position, std::move(done));
}

bool PartitionLog::all_covered() const {
  if (!pending_writes_.empty() || dir_dirty_ || written_end_ != end_offset_) return false;
  if (flush_rounds_.empty()) return durable_end_ == end_offset_;
  if (flush_rounds_.back().target != end_offset_) return false;
  return std::none_of(segments_.begin(), segments_.end(),
                      [&](const auto& seg) { return seg->dirty || closed_ready(*seg); });
}

void PartitionLog::begin_chain() {
  if (config_.flush.mode != FlushMode::kEveryBatch || failure_ || flush_rounds_full() ||
      !all_covered()) {
    return;
  }
  chain_.emplace();
}

void PartitionLog::unchain() {
  if (!chain_) return;
  for (uint64_t seq : chain_->seqs) {
    if (!pending_writes_.empty() && seq >= pending_writes_.front().seq) {
      pending_writes_[seq - pending_writes_.front().seq].linked = false;
    }
  }
  for (IoRing::ChainedWrite& w : chain_->writes) {
    ring_.write(chain_->file->fd(), w.data, w.position, std::move(w.done));
  }
  chain_.reset();
}

void PartitionLog::end_chain() {
  if (!chain_) return;
  if (chain_->writes.empty() || failure_) return unchain();
  Chain chain = std::move(*chain_);
  chain_.reset();
  // Everything before these writes is durable or covered by the rounds in flight, which
  // complete before this one counts (begin_chain()), so syncing their file after them makes
  // the log durable up to its end.
  flush_again_ = false;
  const uint64_t round = begin_flush_round(end_offset_, 1, /*linked=*/true, chain.segment_base);
  ring_.write_then_fdatasync(chain.file->fd(), std::move(chain.writes),
                             [this, round, file = chain.file](int32_t res) { on_flush_done(round, res); });
  ring_.submit();
}

uint64_t PartitionLog::begin_flush_round(int64_t target, size_t syncs, bool linked,
                                         int64_t linked_segment) {
  const uint64_t id = next_round_++;
  round_bytes_avg_ = round_bytes_avg_ - round_bytes_avg_ / 8 + bytes_since_round_ / 8;
  bytes_since_round_ = 0;
  flush_rounds_.push_back({.id = id,
                           .target = target,
                           .pending = syncs,
                           .linked = linked,
                           .linked_segment = linked_segment});
  ++flush_count_;
  last_flush_ms_ = config_.clock_ms();
  ops_in_flight_ += syncs;
  return id;
}

void PartitionLog::on_write_done(uint64_t seq, int32_t result) {
  op_done();
  SLUICE_ASSERT(!pending_writes_.empty() && seq >= pending_writes_.front().seq);
  PendingWrite& done = pending_writes_[seq - pending_writes_.front().seq];
  done.done = true;
  done.failed = result < 0;
  if (result < 0) fail(errno_error(-result, "write " + dir_.string()).error());
  bool closed_dirty = false;
  bool uncovered = false;  // written, and not synced by the linked flush in flight
  while (!pending_writes_.empty() && pending_writes_.front().done) {
    const PendingWrite& w = pending_writes_.front();
    if (w.failed || write_failed_) {
      write_failed_ = true;  // nothing at or after a failed write counts as written
      pending_writes_.pop_front();
      continue;
    }
    const bool covered = w.linked;  // its chain's linked flush syncs it
    Segment* seg = find_segment(w.segment_base);
    if (seg != nullptr && seg->base_offset == w.segment_base) {
      seg->written_bytes = std::max(seg->written_bytes, w.end_position);
      if (!covered) {
        seg->dirty = true;
        closed_dirty |= !seg->active;
      }
    }
    uncovered |= !covered;
    written_end_ = std::max(written_end_, w.end_offset);
    pending_writes_.pop_front();
  }
  wake_appenders();  // room for more appends in flight
  if (failure_) return;
  while (!appends_.empty() && appends_.front().end_offset <= written_end_) {
    AppendWaiter waiter = std::move(appends_.front());
    appends_.pop_front();
    if (waiter.done) waiter.done(waiter.result);
  }
  if (uncovered && (config_.flush.mode == FlushMode::kEveryBatch || closed_dirty ||
                    !durable_waiters_.empty())) {
    start_flush();
  }
}

// Group commit: a flush round covers every write completed before it started; appends that
// complete meanwhile start the next one beside it, up to LogConfig::flush_rounds_max rounds in
// flight, or wait for a round to complete (flush_again_).
void PartitionLog::start_flush() {
  if (failure_) return;
  if (flush_rounds_full()) {
    flush_again_ = true;
    return;
  }
  flush_again_ = false;
  std::vector<std::shared_ptr<FileHandle>> files;
  for (auto& seg : segments_) {
    if (seg->dirty) {
      files.push_back(seg->log_rw);
      seg->dirty = false;
    }
    // A closed segment with nothing left in flight: its indexes go to disk once, after
    // which it needs no read-write handles (on_flush_done drops them).
    if (closed_ready(*seg)) {
      files.push_back(seg->index_rw);
      files.push_back(seg->time_rw);
    }
  }
  if (dir_dirty_) {
    if (auto dir = dir_fd(); !dir) return fail(dir.error());
    files.push_back(dir_handle_);
    dir_dirty_ = false;
  }
  if (files.empty()) {
    // Nothing dirty: what is written was synced, or is by the rounds in flight.
    if (flush_rounds_.empty()) {
      durable_end_ = std::max(durable_end_, written_end_);
      complete_durable_waiters();
    }
    return;
  }
  const uint64_t round = begin_flush_round(written_end_, files.size(), /*linked=*/false, -1);
  for (auto& file : files) {
    SLUICE_ASSERT(file != nullptr);
    ring_.fdatasync(file->fd(), [this, round, file](int32_t res) { on_flush_done(round, res); });
  }
  ring_.submit();
}

void PartitionLog::on_flush_done(uint64_t id, int32_t result) {
  SLUICE_ASSERT(ops_in_flight_ > 0 && !flush_rounds_.empty() && id >= flush_rounds_.front().id);
  op_done();
  FlushRound& round = flush_rounds_[id - flush_rounds_.front().id];
  SLUICE_ASSERT(round.id == id && round.pending > 0);
  if (result < 0) round.result = result;
  if (--round.pending > 0) return;
  round.done = true;
  // Rounds count in order: a later one may sync only the files written since an earlier one
  // started, so it vouches for its target only once those before it completed.
  bool advanced = false;
  bool again = false;
  while (!flush_rounds_.empty() && flush_rounds_.front().done) {
    const FlushRound r = flush_rounds_.front();
    flush_rounds_.pop_front();
    if (r.linked && r.result == -ECANCELED) {
      // A write of the chain was cut short and goes again on its own: this sync vouched for
      // nothing, and neither do the rounds in flight, which may have started before that
      // write went again. The writes it covered count as unsynced; the usual flush follows.
      if (Segment* seg = find_segment(r.linked_segment);
          seg != nullptr && seg->base_offset == r.linked_segment) {
        seg->dirty = true;
      }
      // Its writes still in flight (tried again alone) are not covered by it: each marks its
      // segment dirty and starts a flush when it completes. They are the only linked ones: a
      // chain begins only with no write in flight.
      for (PendingWrite& w : pending_writes_) w.linked = false;
      for (FlushRound& later : flush_rounds_) later.vouches = false;
      again = true;
      continue;
    }
    if (r.result < 0) {
      // Never retried: after a failed fdatasync what is on disk is unknown.
      fail(errno_error(-r.result, "fdatasync " + dir_.string()).error());
      return;
    }
    if (!r.vouches) continue;
    // What it vouches for, lowered by a truncation while it ran (truncate_suffix): later
    // writes at the truncated offsets started after it.
    SLUICE_ASSERT(r.target <= written_end_);
    durable_end_ = std::max(durable_end_, r.target);
    advanced = true;
  }
  if (!advanced) {
    if (again) start_flush();
    return;
  }
  // Closed segments whose data and indexes are durable release their read-write handles;
  // the recovery point moves to the first segment that is not durable.
  int64_t recovery_point = segments_.back()->base_offset;
  for (auto& seg : segments_) {
    if (seg->active) break;
    if (closed_ready(*seg) && !seg->dirty && seg->end_offset <= durable_end_) {
      seg->unsynced = false;
      // Consumers close behind the log read it next: no open on the shard for them.
      if (seg->log_rw) fds_.adopt(seg->log_path, std::move(seg->log_rw));
      seg->log_rw.reset();
      seg->index_rw.reset();
      seg->time_rw.reset();
    }
    if (seg->unsynced || seg->dirty) {
      recovery_point = std::min(recovery_point, seg->base_offset);
    }
  }
  if (recovery_point != recovery_point_) {
    recovery_point_ = recovery_point;
    write_meta_async();
  }
  complete_durable_waiters();
  if (failure_) return;
  // More to wait for than the rounds in flight cover, or closed segments still to sync.
  const int64_t covered = flush_rounds_.empty() ? durable_end_ : flush_rounds_.back().target;
  const bool more = !durable_waiters_.empty() && written_end_ > covered;
  bool closed_pending = false;
  for (auto& seg : segments_)
    closed_pending |= closed_ready(*seg);
  if (again || flush_again_ || more || (closed_pending && flush_rounds_.empty())) start_flush();
}

void PartitionLog::complete_durable_waiters() {
  while (!durable_waiters_.empty() && durable_waiters_.begin()->first <= durable_end_) {
    auto node = durable_waiters_.extract(durable_waiters_.begin());
    if (node.mapped()) node.mapped()(Offset(durable_end_));
  }
}

namespace {
std::atomic<uint64_t> g_log_stops{0};
}  // namespace

uint64_t PartitionLog::stops_so_far() { return g_log_stops.load(std::memory_order_acquire); }

void PartitionLog::fail(const LogError& error) {
  if (failure_) return;
  failure_ = error;
  g_log_stops.fetch_add(1, std::memory_order_acq_rel);
  detail::log_line(LogLevel::kError, dir_.string() + ": partition stopped: " + error.message);
  auto appends = std::move(appends_);
  appends_.clear();
  auto waiters = std::move(durable_waiters_);
  durable_waiters_.clear();
  for (auto& waiter : appends) {
    if (waiter.done) waiter.done(unexpected(error));
  }
  for (auto& [offset, done] : waiters) {
    if (done) done(unexpected(error));
  }
}

void PartitionLog::when_appendable(std::function<void()> wake) {
  if (!busy_for_appends()) return wake();
  appendable_waiters_.push_back(std::move(wake));
}

void PartitionLog::when_idle(std::function<void()> wake) {
  if (idle()) return wake();
  idle_waiters_.push_back(std::move(wake));
}

void PartitionLog::op_done() {
  SLUICE_ASSERT(ops_in_flight_ > 0);
  if (--ops_in_flight_ > 0) return;
  // Index entries never wait on an idle log: idle() means they are on disk.
  pump_late_index();
  if (ops_in_flight_ > 0 || idle_waiters_.empty()) return;
  auto waiters = std::move(idle_waiters_);
  idle_waiters_.clear();
  for (auto& wake : waiters) wake();
}

bool PartitionLog::busy_for_appends() const {
  return cutting_ || pending_writes_.size() > appendable_writes_ || rolls_opening();
}

bool PartitionLog::rolls_opening() const {
  return std::any_of(next_.begin(), next_.end(),
                     [](const auto& next) { return next->opening > 0; });
}

void PartitionLog::wake_appenders() {
  if (appendable_waiters_.empty() || busy_for_appends()) return;
  appendable_writes_ = SIZE_MAX;
  auto waiters = std::move(appendable_waiters_);
  appendable_waiters_.clear();
  for (auto& wake : waiters) wake();
}

void PartitionLog::when_durable(Offset offset, DurableCallback done) {
  if (*offset <= durable_end_) {  // true even after a failure
    if (done) done(Offset(durable_end_));
    return;
  }
  if (failure_) {
    if (done) done(unexpected(*failure_));
    return;
  }
  durable_waiters_.emplace(*offset, std::move(done));
  if (written_end_ > durable_end_) start_flush();
}

void PartitionLog::flush(DurableCallback done) {
  when_durable(
      Offset(end_offset_), done ? std::move(done) : [](const LogResult<Offset>&) {});
}

void PartitionLog::tick() {
  if (config_.flush.mode != FlushMode::kInterval || failure_) return;
  if (written_end_ > durable_end_ &&
      config_.clock_ms() - last_flush_ms_ >= config_.flush.interval_ms) {
    start_flush();
  }
}

LogResult<Offset> PartitionLog::truncate_suffix(Offset offset) {
  return truncate_suffix_at(offset, nullptr);
}

LogResult<Offset> PartitionLog::truncate_suffix_at(Offset offset, DurableCallback* log_cut_done) {
  if (failure_) return unexpected(*failure_);
  if (!pending_writes_.empty() || !side_ops_idle() || cutting_) {
    return log_error(LogErrc::kBusy, "appends in flight");
  }
  if (*offset < log_start_ || *offset > end_offset_) {
    return log_error(LogErrc::kOffsetOutOfRange, "truncate to " + std::to_string(*offset));
  }
  if (*offset == end_offset_) return Offset(end_offset_);
  if (rolls_opening()) {
    return log_error(LogErrc::kBusy, "opening the next segment");
  }
  discard_next();  // prepared for a roll at or past the old end
  files_changed();  // it may have read bytes that are cut now
  if (auto r = reopen_fds(); !r) return unexpected(r.error());
  Segment* seg = find_segment(*offset);
  SLUICE_ASSERT(seg != nullptr);
  while (segments_.back().get() != seg) {
    set_aside_segment_files(*segments_.back());
    segments_.pop_back();
  }
  // The batch containing `offset`: the log is cut at its start.
  auto cut = find_batch(*seg, *offset);
  if (!cut) return unexpected(cut.error());
  return cut_last_segment(*seg, cut->position, cut->base_offset, log_cut_done);
}

LogResult<Offset> PartitionLog::truncate_suffix_async(Offset offset, DurableCallback done) {
  if (failure_) return unexpected(*failure_);
  if (!idle()) return log_error(LogErrc::kBusy, "operations in flight");
  if (*offset < log_start_ || *offset > end_offset_) {
    return log_error(LogErrc::kOffsetOutOfRange, "truncate to " + std::to_string(*offset));
  }
  Segment& active = *segments_.back();
  const RecentBatch* cut = nullptr;
  if (*offset < end_offset_ && !recent_.empty() && *offset >= recent_.front().base_offset) {
    auto it = std::lower_bound(recent_.begin(), recent_.end(), *offset,
                               [](const RecentBatch& b, int64_t o) { return b.last_offset < o; });
    SLUICE_ASSERT(it != recent_.end() && it->base_offset <= *offset);
    if (it->segment_base == active.base_offset) cut = &*it;
  }
  if (cut == nullptr || !active.active || active.corrupt_from >= 0 || active.index_rw == nullptr ||
      !holds_fds()) {
    // Nothing to cut, or the rare cuts: into an earlier segment, older than the window, or a
    // log whose descriptors were given back (opening them blocks anyway). Blocking, but for
    // the .log file's cut, which frees what it cuts off (up to a segment).
    auto r = truncate_suffix_at(offset, &done);
    if (r && done) done(*r);  // nothing was cut: `done` is still ours
    return r;
  }
  const uint64_t pos = cut->position;
  const int64_t new_end = cut->base_offset;
  const uint64_t kept_index = cut->index_before;
  SLUICE_ASSERT(kept_index <= active.index_entries &&
                active.index_entries - kept_index <= active.time_entries);
  // Both counts grew together for every batch appended to the active segment since.
  const uint64_t kept_time = active.time_entries - (active.index_entries - kept_index);
  const int64_t max_before = cut->segment_max_before;
  auto meta = meta_fd();
  if (!meta) return unexpected(meta.error());
  discard_next();         // prepared for a roll past the old end
  files_changed();  // the cold-read cache may hold bytes of the part cut

  // The state, as cut_last_segment leaves it.
  active.index_entries = kept_index;
  active.time_entries = kept_time;
  active.max_timestamp = max_before;
  active.size_bytes = active.written_bytes = pos;
  active.end_offset = new_end;
  active.bytes_since_index = config_.index_interval_bytes;
  active.dirty = true;
  active.preallocated = false;
  active.zeroed_bytes = 0;
  end_offset_ = written_end_ = new_end;
  while (!recent_.empty() && recent_.back().base_offset >= new_end) recent_.pop_back();
  durable_end_ = std::min(durable_end_, new_end);
  log_start_ = std::min(log_start_, new_end);
  first_dirty_ = std::min(first_dirty_, new_end);
  ++history_;
  recovery_point_ = std::min(recovery_point_, active.base_offset);

  cut_files_through_ring(active, pos, kept_index, kept_time, new_end, std::move(done));
  return Offset(new_end);
}

// The files, through the ring: the three cuts, and partition.meta written then synced (the
// lowered recovery point durable before anything is appended to the rewritten segment).
void PartitionLog::cut_files_through_ring(Segment& seg, uint64_t pos, uint64_t kept_index,
                                          uint64_t kept_time, int64_t new_end,
                                          DurableCallback done) {
  SLUICE_ASSERT(meta_handle_ != nullptr && !meta_writing_ && !cutting_);
  struct Cut {
    int pending = 0;
    int32_t error = 0;
    std::string what;
    int64_t segment_base = 0;
    uint64_t position = 0;
    int64_t new_end = 0;
    DurableCallback done;
    std::array<std::byte, kMetaBytes> meta{};
  };
  auto st = std::make_shared<Cut>();
  st->segment_base = seg.base_offset;
  st->position = pos;
  st->new_end = new_end;
  st->done = std::move(done);
  encode_meta(st->meta.data(), {.log_start_offset = log_start_, .recovery_point = recovery_point_});
  cutting_ = true;
  meta_writing_ = true;  // a write_meta_async meanwhile waits for this one (meta_again_)
  meta_again_ = false;
  auto completed = [this, st](int32_t res, const std::string& what) {
    SLUICE_ASSERT(ops_in_flight_ > 0 && st->pending > 0);
    op_done();
    if (res < 0 && st->error == 0) {
      st->error = res;
      st->what = what;
    }
    if (--st->pending > 0) return;
    cutting_ = false;
    if (st->error < 0) {
      fail(errno_error(-st->error, st->what).error());
    } else if (Segment* cut = find_segment(st->segment_base);
               cut != nullptr && cut->base_offset == st->segment_base && cut->active &&
               !failure_) {
      preallocate(*cut, st->position, false);
    }
    if (auto callback = std::move(st->done); callback && failure_) {
      callback(unexpected(*failure_));
    } else if (callback) {
      callback(Offset(st->new_end));
    }
    wake_appenders();  // after `done`: whoever waits to append finds the cut reported
  };
  struct FileCut {
    std::shared_ptr<FileHandle> file;
    uint64_t length;
    const std::string* path;
  };
  const FileCut cuts[] = {{seg.log_rw, pos, &seg.log_path},
                          {seg.index_rw, kept_index * kIndexEntryBytes, &seg.index_path},
                          {seg.time_rw, kept_time * kTimeIndexEntryBytes, &seg.time_path}};
  st->pending = 4;
  ops_in_flight_ += 4;
  for (const FileCut& c : cuts) {
    ring_.ftruncate(c.file->fd(), c.length,
                    [completed, file = c.file, path = *c.path](int32_t res) {
                      completed(res, "ftruncate " + path);  // 0 or -errno
                    });
  }
  // The meta write, then its fdatasync (a 16-byte write is never short; if it were, the sync
  // would still follow its completion).
  const std::string meta_path = (dir_ / kMetaFileName).string();
  auto meta_done = [this, completed, meta_path](int32_t res) {
    meta_writing_ = false;
    completed(res, "write " + meta_path);
    if (meta_again_ && !failure_) write_meta_async();
  };
  ring_.write(meta_handle_->fd(), Bytes(st->meta.data(), st->meta.size()), 0,
              [this, st, meta_done, file = meta_handle_](int32_t res) {
                if (res < 0) return meta_done(res);
                ring_.fdatasync(file->fd(), [meta_done, file](int32_t synced) {
                  meta_done(synced < 0 ? synced : 0);
                });
                ring_.submit();
              });
  ring_.submit();
}

LogResult<Offset> PartitionLog::truncate_damage() {
  if (failure_) return unexpected(*failure_);
  if (!pending_writes_.empty() || !side_ops_idle() || cutting_) {
    return log_error(LogErrc::kBusy, "appends in flight");
  }
  auto damaged = std::find_if(segments_.begin(), segments_.end(),
                              [](const auto& seg) { return seg->corrupt_from >= 0; });
  if (damaged == segments_.end()) return Offset(end_offset_);
  files_changed();  // it may have read bytes that are cut now
  Segment* seg = damaged->get();
  while (segments_.back().get() != seg) {
    set_aside_segment_files(*segments_.back());
    segments_.pop_back();
  }
  return cut_last_segment(*seg, seg->corrupt_position, seg->corrupt_from);
}

LogResult<Offset> PartitionLog::cut_last_segment(Segment& segment, uint64_t pos, int64_t new_end,
                                                 DurableCallback* log_cut_done) {
  Segment* seg = &segment;
  SLUICE_ASSERT(segments_.back().get() == seg);
  if (!seg->active) {
    if (auto r = open_active(*seg, true); !r) return unexpected(r.error());
  } else if (auto r = reopen_fds(); !r) {  // an idle log may have given its handles back
    return unexpected(r.error());
  }
  const bool through_ring = log_cut_done != nullptr;
  if (!through_ring) {
    if (auto r = detail::truncate_file(seg->log_rw->fd(), pos); !r) return unexpected(r.error());
  }
  auto kept_index =
      detail::index_count_below(seg->index_rw->fd(), seg->index_entries, seg->base_offset, new_end);
  auto kept_time =
      detail::time_count_below(seg->time_rw->fd(), seg->time_entries, seg->base_offset, new_end);
  if (!kept_index || !kept_time) return log_error(LogErrc::kIo, "reading an index failed");
  seg->index_entries = *kept_index;
  seg->time_entries = *kept_time;
  if (!through_ring) {
    if (auto r = detail::truncate_file(seg->index_rw->fd(), *kept_index * kIndexEntryBytes); !r) {
      return unexpected(r.error());
    }
    if (auto r = detail::truncate_file(seg->time_rw->fd(), *kept_time * kTimeIndexEntryBytes);
        !r) {
      return unexpected(r.error());
    }
  }
  // The running maximum timestamp: the last time entry covers the batches before its
  // offset, the walk from there covers the rest.
  seg->max_timestamp = detail::kNoTimestamp;
  uint64_t walk_from = 0;
  if (seg->index_entries > 0) {
    auto te = detail::read_time_entry(seg->time_rw->fd(), seg->base_offset, seg->time_entries - 1);
    auto ie =
        detail::read_index_entry(seg->index_rw->fd(), seg->base_offset, seg->index_entries - 1);
    if (!te || !ie) return log_error(LogErrc::kIo, "reading an index failed");
    seg->max_timestamp = te->timestamp;
    walk_from = ie->position;
  }
  for (uint64_t p = walk_from; p < pos;) {
    auto header = detail::read_batch_header(seg->log_rw->fd(), p, pos);
    if (!header) return unexpected(header.error());
    seg->max_timestamp = std::max(seg->max_timestamp, header->max_timestamp);
    p += header->size_bytes;
  }
  seg->size_bytes = seg->written_bytes = pos;
  seg->end_offset = new_end;
  seg->bytes_since_index = config_.index_interval_bytes;
  if (seg->corrupt_from >= new_end) seg->corrupt_from = -1;
  seg->dirty = true;
  seg->preallocated = false;
  seg->zeroed_bytes = 0;
  if (!through_ring) preallocate(*seg, pos, true);
  end_offset_ = written_end_ = new_end;
  while (!recent_.empty() && recent_.back().base_offset >= new_end) recent_.pop_back();
  durable_end_ = std::min(durable_end_, new_end);
  for (FlushRound& r : flush_rounds_) r.target = std::min(r.target, new_end);  // on_flush_done()
  log_start_ = std::min(log_start_, new_end);
  first_dirty_ = std::min(first_dirty_, new_end);  // what compaction mapped may be gone
  ++history_;
  // Recovery must scan the rewritten segment after a crash: say so durably before anything
  // is appended to it.
  recovery_point_ = std::min(recovery_point_, seg->base_offset);
  SLUICE_ASSERT(segments_.back()->active);
  if (through_ring) {
    // The files' cuts and the meta's write and sync, as the common cut's: appends wait
    // (kBusy) until they completed (a write at `pos` must not precede the .log's cut).
    if (auto meta = meta_fd(); !meta) return unexpected(meta.error());
    cut_files_through_ring(*seg, pos, seg->index_entries, seg->time_entries, new_end,
                           std::move(*log_cut_done));
    *log_cut_done = nullptr;  // taken
  } else if (auto r = write_meta(true); !r) {
    return unexpected(r.error());
  }
  return Offset(end_offset_);
}

LogResult<void> PartitionLog::advance_log_start(Offset offset) {
  if (failure_) return unexpected(*failure_);
  if (*offset <= log_start_) return {};
  if (*offset > end_offset_) {
    // A snapshot past the end: the log restarts empty at `offset`.
    if (!idle()) return log_error(LogErrc::kBusy, "operations in flight");
    while (!segments_.empty()) {  // each removal tells the scrubber (delete_segment_files)
      delete_segment_files(*segments_.back());
      segments_.pop_back();
    }
    if (auto r = create_segment(*offset, true); !r) return r;
    end_offset_ = written_end_ = durable_end_ = log_start_ = recovery_point_ = *offset;
    first_dirty_ = 0;  // a new log: nothing of it has been mapped
    ++history_;
    recent_.clear();
    if (auto r = write_meta(true); !r) return r;
    auto dir = dir_fd();
    if (!dir) return unexpected(dir.error());
    if (::fsync(*dir) != 0) return errno_error(errno, "fsync " + dir_.string());
    dir_dirty_ = false;
    return {};
  }
  log_start_ = *offset;
  while (segments_.size() > 1) {
    Segment& front = *segments_.front();
    if (front.active || front.unsynced || front.dirty || front.end_offset > log_start_) break;
    delete_segment_files(front, /*through_ring=*/true);  // below the log start, as retention's
    segments_.pop_front();
  }
  SLUICE_ASSERT(segments_.front()->base_offset <= log_start_);
  prune_recent();
  write_meta_async();
  if (failure_) return unexpected(*failure_);
  return {};
}

void PartitionLog::set_limits(const LogConfig& config) {
  config_.segment_bytes = config.segment_bytes;
  config_.segment_ms = config.segment_ms;
  config_.retention_bytes = config.retention_bytes;
  config_.retention_ms = config.retention_ms;
}

LogResult<RetentionResult> PartitionLog::apply_retention() {
  if (failure_) return unexpected(*failure_);
  ++retention_passes_;
  start_due_removals();
  // A cold read cache no read used since the last pass goes (it may hold a segment's index).
  if (!cold_.used) drop_cold_cache();
  cold_.used = false;
  RetentionResult result;
  const int64_t now = config_.clock_ms();
  uint64_t total = size_bytes();
  while (segments_.size() > 1) {
    Segment& front = *segments_.front();
    if (front.active || front.unsynced || front.dirty || front.end_offset > durable_end_) break;
    const bool by_size = config_.retention_bytes >= 0 &&
                         total - front.size_bytes >= static_cast<uint64_t>(config_.retention_bytes);
    const bool by_time = config_.retention_ms >= 0 && front.max_timestamp != detail::kNoTimestamp &&
                         now - front.max_timestamp > config_.retention_ms;
    // Wholly below the log start: a segment whose delayed removal a crash (or a stopped log
    // reopened) left behind, found again at open. Nothing reads it.
    const bool below_start = front.end_offset <= log_start_;
    if (!by_size && !by_time && !below_start) break;
    total -= front.size_bytes;
    result.bytes_deleted += front.size_bytes;
    ++result.segments_deleted;
    // Through the ring: removing a segment frees its blocks in the call (a third of a second
    // for 1 GiB here). Its name is below the log start: no later segment can take it.
    delete_segment_files(front, /*through_ring=*/true);
    segments_.pop_front();
    log_start_ = std::max(log_start_, segments_.front()->base_offset);
  }
  if (result.segments_deleted > 0) {
    prune_recent();
    write_meta_async();
    if (failure_) return unexpected(*failure_);
  }
  return result;
}

LogResult<void> PartitionLog::close() {
  if (!idle()) return log_error(LogErrc::kBusy, "operations in flight");
  // Removed segments still waiting for their delay: at once (blocking, as all of close()).
  for (const auto& removal : removals_) ::unlink(removal.path.c_str());
  removals_.clear();
  discard_next();  // before the clean-shutdown marker: recovery must not find its files
  if (failure_) return unexpected(*failure_);
  if (auto r = reopen_fds(); !r) return r;
  Segment& active = *segments_.back();
  if (auto r = seal(active, true); !r) return r;
  for (auto& seg : segments_) {
    for (const auto* handle : {&seg->log_rw, &seg->index_rw, &seg->time_rw}) {
      if (*handle && ::fdatasync((*handle)->fd()) != 0) return errno_error(errno, "fdatasync");
    }
    seg->dirty = seg->unsynced = false;
  }
  recovery_point_ = active.base_offset;
  if (auto r = write_meta(true); !r) return r;
  auto marker = FileHandle::open((dir_ / kCleanShutdownFileName).string(), O_WRONLY | O_CREAT);
  if (!marker) return unexpected(marker.error());
  auto dir = dir_fd();
  if (!dir) return unexpected(dir.error());
  if (::fsync(*dir) != 0) return errno_error(errno, "fsync " + dir_.string());
  durable_end_ = written_end_;
  // Further appends would need the segment reopened: refuse them.
  failure_ = LogError{LogErrc::kIo, "log closed"};
  // Its descriptors go now, not when the log is destroyed: a broker closes all its partitions
  // before it destroys any, and thousands of them each holding five ran out of descriptors.
  close_handles();
  return {};
}

}  // namespace sluice::log
