// PartitionLog::open and recovery (FORMAT.md, "Recovery").
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <system_error>

#include "log/internal/segment.h"
#include "log/log.h"
#include "log/logging.h"
#include "log/segment_reader.h"

namespace sluice::log {

using detail::Segment;

namespace {

int64_t system_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A read-only mapping of a whole file, for scanning it (the kernel pages it in and out, so
// memory stays bounded).
class Mapping {
 public:
  static LogResult<Mapping> map(int fd, uint64_t size) {
    Mapping m;
    m.size_ = size;
    if (size == 0) return m;
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return errno_error(errno, "mmap");
    ::madvise(p, size, MADV_SEQUENTIAL);
    m.data_ = static_cast<std::byte*>(p);
    return m;
  }
  Mapping() = default;
  Mapping(Mapping&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(o.size_) {}
  ~Mapping() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  Bytes bytes() const { return data_ == nullptr ? Bytes() : Bytes(data_, size_); }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

std::string issue_text(const RecoveryIssue& issue) {
  static constexpr const char* kKinds[] = {"torn tail truncated", "corrupt tail truncated",
                                           "corrupt closed segment, not served", "index rebuilt"};
  return std::string(kKinds[static_cast<int>(issue.kind)]) + " in segment " +
         std::to_string(issue.segment_base_offset) + " at offset " + std::to_string(issue.offset) +
         ", position " + std::to_string(issue.position) + " (" +
         std::to_string(issue.bytes_removed) + " bytes): " + issue.detail;
}

}  // namespace

PartitionLog::PartitionLog(std::filesystem::path dir, const LogConfig& config, IoRing& ring,
                           FdCache& fds)
    : dir_(std::move(dir)), config_(config), ring_(ring), fds_(fds) {
  if (!config_.clock_ms) config_.clock_ms = &system_clock_ms;
}

LogResult<std::unique_ptr<PartitionLog>> PartitionLog::open(const std::filesystem::path& dir,
                                                            const LogConfig& config, IoRing& ring,
                                                            FdCache& fds) {
  if (config.segment_bytes < kSegmentBytesMin || config.segment_bytes > kSegmentBytesMax) {
    return log_error(LogErrc::kInvalidArgument, "segment_bytes out of range");
  }
  if (config.index_interval_bytes == 0 || config.inflight_appends_max == 0) {
    return log_error(LogErrc::kInvalidArgument,
                     "index_interval_bytes and inflight_appends_max "
                     "must be positive");
  }
  std::error_code ec;
  const bool created = std::filesystem::create_directories(dir, ec);
  if (ec) return log_error(LogErrc::kIo, "create " + dir.string() + ": " + ec.message());
  if (created) {
    // The new directory's entry must be durable before anything in it is acknowledged.
    auto parent = FileHandle::open(dir.parent_path().empty() ? "." : dir.parent_path().string(),
                                   O_RDONLY | O_DIRECTORY);
    if (!parent) return unexpected(parent.error());
    if (::fsync((*parent)->fd()) != 0) return errno_error(errno, "fsync " + dir.parent_path().string());
  }
  std::unique_ptr<PartitionLog> log(new PartitionLog(dir, config, ring, fds));
  if (auto r = log->recover(); !r) return unexpected(r.error());
  fds.touch(log.get());  // its descriptors count from now on (released once idle)
  return log;
}

LogResult<void> PartitionLog::recover() {
  auto meta_fd = this->meta_fd();
  if (!meta_fd) return unexpected(meta_fd.error());
  std::byte meta_raw[kMetaBytes] = {};
  const ssize_t n = ::pread(*meta_fd, meta_raw, sizeof(meta_raw), 0);
  const std::optional<Meta> meta =
      n == static_cast<ssize_t>(kMetaBytes) ? decode_meta(meta_raw) : std::nullopt;

  // Segments by their .log files; indexes without a .log are leftovers of a deletion.
  std::vector<int64_t> bases;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (auto base = parse_segment_file_name(name, kLogSuffix)) bases.push_back(*base);
  }
  if (ec) return log_error(LogErrc::kIo, "list " + dir_.string() + ": " + ec.message());
  std::sort(bases.begin(), bases.end());
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    // A compaction's side files that were never installed (log/compaction.h), and replaced
    // .log files set aside (install_cleaned_segment) whose removal a crash cut short.
    if (name.ends_with(".cleaned") || name.ends_with(".compacting") ||
        name.ends_with(kAsideSuffix)) {
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    for (auto suffix : {kIndexSuffix, kTimeIndexSuffix}) {
      auto base = parse_segment_file_name(name, suffix);
      if (base && !std::binary_search(bases.begin(), bases.end(), *base)) {
        fds_.forget(entry.path().string());
        std::filesystem::remove(entry.path(), ec);
      }
    }
  }

  const auto clean_path = dir_ / kCleanShutdownFileName;
  report_.clean_shutdown = std::filesystem::exists(clean_path, ec) && meta.has_value();
  recovery_point_ = meta ? meta->recovery_point : 0;
  report_.segments = bases.size();

  if (bases.empty()) {
    const int64_t start = meta ? std::max<int64_t>(meta->log_start_offset, 0) : 0;
    if (auto r = create_segment(start, true); !r) return r;
  } else {
    for (size_t i = 0; i < bases.size(); ++i) {
      auto seg = std::make_unique<Segment>();
      seg->base_offset = bases[i];
      seg->log_path = (dir_ / segment_file_name(bases[i], kLogSuffix)).string();
      seg->index_path = (dir_ / segment_file_name(bases[i], kIndexSuffix)).string();
      seg->time_path = (dir_ / segment_file_name(bases[i], kTimeIndexSuffix)).string();
      const bool last = i + 1 == bases.size();
      const int64_t next_base = last ? -1 : bases[i + 1];
      auto cut = recover_segment(*seg, last, report_.clean_shutdown, next_base);
      if (!cut) return unexpected(cut.error());
      segments_.push_back(std::move(seg));
      if (*cut && !last) {
        // The log ends here: what follows was written after a write that never completed,
        // so none of it was acknowledged (FORMAT.md, "Recovery").
        for (size_t j = i + 1; j < bases.size(); ++j) {
          for (auto suffix : {kLogSuffix, kIndexSuffix, kTimeIndexSuffix}) {
            const auto path = dir_ / segment_file_name(bases[j], suffix);
            fds_.forget(path.string());
            std::filesystem::remove(path, ec);
          }
        }
        report_.issues.back().detail +=
            "; " + std::to_string(bases.size() - i - 1) + " later segment(s) removed";
        break;
      }
    }
    if (auto r = open_active(*segments_.back(), true); !r) return r;
  }

  Segment& active = *segments_.back();
  end_offset_ = written_end_ = durable_end_ = active.end_offset;
  log_start_ = segments_.front()->base_offset;
  if (meta) log_start_ = std::clamp(meta->log_start_offset, log_start_, end_offset_);

  // What recovery kept was possibly only in the page cache (a killed process): make it
  // durable before anything new is acknowledged. Blocking, but only at open. A log with no
  // segment file before (a new partition) has nothing to sync: its fresh empty files exist
  // once the directory is synced below.
  if (!report_.clean_shutdown && !bases.empty()) {
    for (auto& seg : segments_) {
      if (seg->base_offset < recovery_point_ && !seg->active) continue;
      for (const auto& path : {seg->log_path, seg->index_path, seg->time_path}) {
        auto index = FileHandle::open(path, O_RDONLY);
        if (!index) return unexpected(index.error());
        if (::fdatasync((*index)->fd()) != 0) return errno_error(errno, "fdatasync " + path);
      }
    }
  }
  recovery_point_ = active.base_offset;
  // Opening thousands of partitions must not cost thousands of needless fsyncs: the meta and
  // the directory are synced only when they change.
  if (!meta || meta->log_start_offset != log_start_ || meta->recovery_point != recovery_point_) {
    if (auto r = write_meta(true); !r) return r;
  }
  // The marker must be gone for good before the first write, or a crash after it would be
  // taken for a clean shutdown.
  if (std::filesystem::remove(clean_path, ec)) dir_dirty_ = true;
  if (dir_dirty_ || !report_.clean_shutdown) {
    auto dir = dir_fd();
    if (!dir) return unexpected(dir.error());
    if (::fsync(*dir) != 0) return errno_error(errno, "fsync " + dir_.string());
    dir_dirty_ = false;
  }
  last_flush_ms_ = config_.clock_ms();
  for (const auto& issue : report_.issues) {
    detail::log_line(
        issue.kind == RecoveryIssue::Kind::kTornTail ? LogLevel::kInfo : LogLevel::kWarning,
        dir_.string() + ": " + issue_text(issue));
  }
  SLUICE_ASSERT(log_start_ <= end_offset_);
  SLUICE_ASSERT(!segments_.empty() && segments_.back()->active);
  return {};
}

LogResult<bool> PartitionLog::recover_segment(Segment& seg, bool last, bool clean,
                                              int64_t next_base) {
  // Past the recovery point of an unclean shutdown, bytes may be missing because their
  // writes never completed; there the log may be cut. Before it, damage is corruption.
  const bool unsynced = !clean && seg.base_offset >= recovery_point_;
  const bool scan = config_.recovery_scan == RecoveryScan::kAll || unsynced || (!clean && last);
  if (!scan) {
    auto checked = check_segment(seg, next_base);
    if (checked) return false;
    report_.issues.push_back({.kind = RecoveryIssue::Kind::kIndexRebuilt,
                              .segment_base_offset = seg.base_offset,
                              .offset = seg.base_offset,
                              .detail = checked.error().message});
  }
  ++report_.segments_scanned;
  return scan_and_rebuild(seg, last || unsynced, next_base);
}

// Cheap checks of a segment believed good: index sizes and last entries, and a CRC scan of
// the tail after the last index entry, which must end exactly at the end of the file.
LogResult<void> PartitionLog::check_segment(Segment& seg, int64_t next_base) {
  auto log = FileHandle::open(seg.log_path, O_RDONLY);
  if (!log) return unexpected(log.error());
  auto index = FileHandle::open(seg.index_path, O_RDWR);
  auto time = FileHandle::open(seg.time_path, O_RDWR);
  if (!index || !time) return log_error(LogErrc::kCorrupt, "missing index file");
  auto size = detail::file_size((*log)->fd());
  auto index_size = detail::file_size((*index)->fd());
  auto time_size = detail::file_size((*time)->fd());
  if (!size || !index_size || !time_size) return log_error(LogErrc::kIo, "fstat failed");
  if (*index_size % kIndexEntryBytes != 0 || *time_size % kTimeIndexEntryBytes != 0) {
    return log_error(LogErrc::kCorrupt, "index size not a multiple of its entry size");
  }
  seg.index_entries = *index_size / kIndexEntryBytes;
  seg.time_entries = *time_size / kTimeIndexEntryBytes;
  IndexEntry last_entry{.offset = seg.base_offset, .position = 0};
  if (seg.index_entries > 0) {
    auto e = detail::read_index_entry((*index)->fd(), seg.base_offset, seg.index_entries - 1);
    if (!e) return unexpected(e.error());
    last_entry = *e;
  } else if (*size > 0) {
    return log_error(LogErrc::kCorrupt, "empty index for a non-empty segment");
  }
  if (last_entry.position >= std::max<uint64_t>(*size, 1)) {
    return log_error(LogErrc::kCorrupt, "index entry past the end of the segment");
  }
  auto mapping = Mapping::map((*log)->fd(), *size);
  if (!mapping) return unexpected(mapping.error());
  const Bytes tail = mapping->bytes().subspan(last_entry.position);
  int64_t tail_max_ts = detail::kNoTimestamp;
  const ScanResult scanned = scan_segment(tail, {.expected_base_offset = last_entry.offset});
  if (scanned.stop != ScanStop::kEnd || scanned.valid_bytes != tail.size()) {
    return log_error(LogErrc::kCorrupt,
                     std::string("tail scan: ") + to_string(scanned.stop) + " " + scanned.reason);
  }
  if (scanned.batches > 0) tail_max_ts = scanned.max_timestamp;
  seg.end_offset = scanned.batches > 0 ? scanned.next_offset : seg.base_offset;
  if (next_base >= 0 && seg.end_offset != next_base) {
    return log_error(LogErrc::kCorrupt, "segment ends at " + std::to_string(seg.end_offset) +
                                            ", next starts at " + std::to_string(next_base));
  }
  // Time entries sit at the same batches as index entries, plus one sealing entry
  // (segment max, end offset) written when the segment was closed.
  const bool sealed = seg.time_entries == seg.index_entries + 1;
  if (!sealed && seg.time_entries != seg.index_entries) {
    return log_error(LogErrc::kCorrupt, "time index does not match the offset index");
  }
  seg.max_timestamp = tail_max_ts;
  if (seg.time_entries > 0) {
    auto te = detail::read_time_entry((*time)->fd(), seg.base_offset, seg.time_entries - 1);
    if (!te) return unexpected(te.error());
    if (sealed && te->offset != seg.end_offset) {
      return log_error(LogErrc::kCorrupt, "sealing time entry does not match the segment end");
    }
    if (!sealed && te->offset != last_entry.offset) {
      return log_error(LogErrc::kCorrupt, "last time entry does not match the last index entry");
    }
    seg.max_timestamp = std::max(te->timestamp, tail_max_ts);
  }
  seg.size_bytes = seg.written_bytes = *size;
  // An empty segment has no index entry yet: its first batch must get one (issue #22: an
  // empty active segment reopened after a clean shutdown took batches without index entries,
  // and the next restart found "empty index for a non-empty segment").
  seg.bytes_since_index = seg.index_entries == 0 ? config_.index_interval_bytes
                                                 : *size - last_entry.position;
  return {};
}

LogResult<bool> PartitionLog::scan_and_rebuild(Segment& seg, bool may_cut, int64_t next_base) {
  auto log = FileHandle::open(seg.log_path, O_RDWR);
  if (!log) return unexpected(log.error());
  auto size = detail::file_size((*log)->fd());
  if (!size) return unexpected(size.error());
  detail::IndexBuilder built(seg.base_offset, config_.index_interval_bytes);
  auto visit = [&](const ScannedBatch& b) {
    built.add(b.position, b.size_bytes, b.base_offset, b.max_timestamp);
  };
  ScanResult scanned;
  {
    auto mapping = Mapping::map((*log)->fd(), *size);
    if (!mapping) return unexpected(mapping.error());
    scanned = scan_segment(mapping->bytes(), {.expected_base_offset = seg.base_offset}, visit);
  }
  seg.size_bytes = seg.written_bytes = scanned.valid_bytes;
  seg.end_offset = scanned.batches > 0 ? scanned.next_offset : seg.base_offset;
  seg.max_timestamp = built.prefix_max;
  seg.bytes_since_index = built.since_index;
  const uint64_t removed = *size - scanned.valid_bytes;
  RecoveryIssue issue{.segment_base_offset = seg.base_offset,
                      .offset = seg.end_offset,
                      .position = scanned.valid_bytes,
                      .bytes_removed = removed,
                      .detail = scanned.reason};
  const bool damaged = scanned.stop != ScanStop::kEnd;
  const bool short_of_next = next_base >= 0 && seg.end_offset != next_base;
  bool cut = false;
  if (may_cut && (damaged || short_of_next || next_base < 0)) {
    // The tail of the log: cut at the last valid batch (preallocated zeros silently).
    if (damaged || short_of_next) {
      issue.kind = scanned.stop == ScanStop::kCorrupt ? RecoveryIssue::Kind::kCorruptTail
                                                      : RecoveryIssue::Kind::kTornTail;
      if (!damaged) issue.detail = "segment ends before the next segment's base offset";
      report_.issues.push_back(issue);
    }
    if (removed > 0) {
      if (auto r = detail::truncate_file((*log)->fd(), scanned.valid_bytes); !r) {
        return unexpected(r.error());
      }
    }
    cut = next_base >= 0;
  } else if (damaged || short_of_next) {
    // A closed segment is never cut: its damaged part is kept on disk but never served.
    issue.kind = RecoveryIssue::Kind::kCorruptClosed;
    issue.bytes_removed = 0;
    if (!damaged) issue.detail = "segment ends before the next segment's base offset";
    report_.issues.push_back(issue);
    seg.corrupt_from = seg.end_offset;
    seg.corrupt_position = scanned.valid_bytes;
    seg.end_offset = next_base;
  } else if (removed > 0) {
    // Closed, complete, and followed by zeros only: preallocation never trimmed.
    if (auto r = detail::truncate_file((*log)->fd(), scanned.valid_bytes); !r) {
      return unexpected(r.error());
    }
  }
  for (auto [path, bytes] :
       {std::pair{&seg.index_path, &built.index}, std::pair{&seg.time_path, &built.time}}) {
    auto f = FileHandle::open(*path, O_RDWR | O_CREAT | O_TRUNC);
    if (!f) return unexpected(f.error());
    if (auto r = detail::pwrite_full((*f)->fd(), *bytes, 0); !r) return unexpected(r.error());
  }
  seg.index_entries = built.index.size() / kIndexEntryBytes;
  seg.time_entries = built.time.size() / kTimeIndexEntryBytes;
  return cut;
}

}  // namespace sluice::log
