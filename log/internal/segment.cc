#include "log/internal/segment.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "protocol/record_batch.h"

namespace sluice::log::detail {

namespace {
// Repeats pread or pwrite until all `size` bytes are done (they may return short counts).
template <class Call>
LogResult<void> io_full(Call call, size_t size, const char* what, LogErrc at_zero) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = call(done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(errno, what);
    if (n == 0) return log_error(at_zero, std::string(what) + ": no progress (end of file)");
    done += static_cast<size_t>(n);
  }
  return {};
}
}  // namespace

LogResult<void> pread_full(int fd, MutableBytes out, uint64_t position) {
  return io_full(
      [&](size_t done) {
        return ::pread(fd, out.data() + done, out.size() - done,
                       static_cast<off_t>(position + done));
      },
      out.size(), "pread", LogErrc::kCorrupt);
}

LogResult<void> pwrite_full(int fd, Bytes in, uint64_t position) {
  return io_full(
      [&](size_t done) {
        return ::pwrite(fd, in.data() + done, in.size() - done,
                        static_cast<off_t>(position + done));
      },
      in.size(), "pwrite", LogErrc::kIo);
}

LogResult<uint64_t> file_size(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno_error(errno, "fstat");
  return static_cast<uint64_t>(st.st_size);
}

LogResult<void> truncate_file(int fd, uint64_t size) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return errno_error(errno, "ftruncate");
  return {};
}

LogResult<BatchHeader> read_batch_header(int fd, uint64_t position, uint64_t limit) {
  SLUICE_ASSERT(position < limit);
  std::byte header[kBatchHeaderBytes];
  if (limit - position < kBatchHeaderBytes) {
    return log_error(LogErrc::kCorrupt, "short batch header at " + std::to_string(position));
  }
  if (auto r = pread_full(fd, header, position); !r) return unexpected(r.error());
  return parse_batch_header(header, position, limit);
}

LogResult<BatchHeader> parse_batch_header(const std::byte* header, uint64_t position,
                                          uint64_t limit) {
  if (position >= limit || limit - position < kBatchHeaderBytes) {
    return log_error(LogErrc::kCorrupt, "short batch header at " + std::to_string(position));
  }
  namespace layout = kafka::batch_layout;
  const int32_t length = load_be<int32_t>(header + layout::kBatchLength);
  const uint64_t size = kBatchLogOverheadBytes + static_cast<uint64_t>(std::max(length, 0));
  const int32_t delta = load_be<int32_t>(header + layout::kLastOffsetDelta);
  if (length < 0 || size < kBatchHeaderBytes || size > kBatchBytesMax || position + size > limit ||
      static_cast<int8_t>(header[layout::kMagic]) != kafka::kMagicV2 || delta < 0) {
    return log_error(LogErrc::kCorrupt, "bad batch header at position " + std::to_string(position));
  }
  const int64_t base = load_be<int64_t>(header + layout::kBaseOffset);
  return BatchHeader{.position = position,
                     .size_bytes = size,
                     .base_offset = base,
                     .last_offset = base + delta,
                     .max_timestamp = load_be<int64_t>(header + layout::kMaxTimestamp),
                     .leader_epoch = load_be<int32_t>(header + layout::kPartitionLeaderEpoch),
                     .record_count = load_be<int32_t>(header + layout::kRecordCount)};
}

LogResult<IndexEntry> read_index_entry(int fd, int64_t base, uint64_t i) {
  std::byte raw[kIndexEntryBytes];
  if (auto r = pread_full(fd, raw, i * kIndexEntryBytes); !r) return unexpected(r.error());
  return decode_index_entry(raw, base);
}

LogResult<TimeEntry> read_time_entry(int fd, int64_t base, uint64_t i) {
  std::byte raw[kTimeIndexEntryBytes];
  if (auto r = pread_full(fd, raw, i * kTimeIndexEntryBytes); !r) return unexpected(r.error());
  return decode_time_entry(raw, base);
}

namespace {
// The number of entries i in [0, entries) for which below(entry i) holds, for a predicate
// that holds for a prefix of the entries.
template <class Read, class Below>
LogResult<uint64_t> count_prefix(uint64_t entries, Read read, Below below) {
  uint64_t lo = 0;
  uint64_t hi = entries;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    auto entry = read(mid);
    if (!entry) return unexpected(std::move(entry).error());
    if (below(*entry)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}
}  // namespace

LogResult<uint64_t> index_count_below(int fd, uint64_t entries, int64_t base, int64_t offset) {
  return count_prefix(
      entries, [&](uint64_t i) { return read_index_entry(fd, base, i); },
      [&](const IndexEntry& e) { return e.offset < offset; });
}

LogResult<IndexEntry> index_floor(int fd, uint64_t entries, int64_t base, int64_t offset) {
  auto n = index_count_below(fd, entries, base, offset + 1);
  if (!n) return unexpected(std::move(n).error());
  if (*n == 0) return IndexEntry{.offset = base, .position = 0};
  return read_index_entry(fd, base, *n - 1);
}

LogResult<uint64_t> time_count_below(int fd, uint64_t entries, int64_t base, int64_t offset) {
  return count_prefix(
      entries, [&](uint64_t i) { return read_time_entry(fd, base, i); },
      [&](const TimeEntry& e) { return e.offset < offset; });
}

LogResult<std::optional<TimeEntry>> time_floor(int fd, uint64_t entries, int64_t base,
                                               int64_t timestamp) {
  auto n = count_prefix(
      entries, [&](uint64_t i) { return read_time_entry(fd, base, i); },
      [&](const TimeEntry& e) { return e.timestamp < timestamp; });
  if (!n) return unexpected(std::move(n).error());
  if (*n == 0) return std::optional<TimeEntry>();
  auto entry = read_time_entry(fd, base, *n - 1);
  if (!entry) return unexpected(std::move(entry).error());
  return std::optional<TimeEntry>(*entry);
}

void IndexBuilder::add(uint64_t position, uint64_t size_bytes, int64_t batch_base_offset,
                       int64_t batch_max_timestamp) {
  if (since_index >= interval) {
    since_index = 0;
    index.resize(index.size() + kIndexEntryBytes);
    encode_index_entry(index.data() + index.size() - kIndexEntryBytes, base,
                       {.offset = batch_base_offset, .position = position});
    time.resize(time.size() + kTimeIndexEntryBytes);
    encode_time_entry(time.data() + time.size() - kTimeIndexEntryBytes, base,
                      {.timestamp = prefix_max, .offset = batch_base_offset});
  }
  since_index += size_bytes;
  prefix_max = std::max(prefix_max, batch_max_timestamp);
}

}  // namespace sluice::log::detail
