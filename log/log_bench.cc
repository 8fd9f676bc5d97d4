// Append and read throughput of the partition log, each beside its physical baseline in the
// same run:
//   BM_LogAppend/<batch bytes>/<fdatasync per append>   PartitionLog::append, 32 in flight
//   BM_WriteBaseline/<batch bytes>/<fdatasync per write> write() of the same bytes (+fdatasync)
//   BM_LogReadSendfile/<max bytes>                       read() ranges sent to /dev/null
//   BM_CatBaseline                                       read() of the segment file, 1 MiB
//   BM_IndexFloorPread                                   index lookup by pread binary search
//   BM_IndexFloorMemoryBaseline                          the same search in memory
// Batches hold 1 KiB records. Files go to $TMPDIR (default /tmp): the disk measured.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <deque>

#include "log/internal/segment.h"
#include "log/log.h"
#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

constexpr size_t kRecordBytes = 1024;
constexpr size_t kInFlight = 32;

std::vector<std::byte> batch_of(size_t batch_bytes) {
  const int records = static_cast<int>(std::max<size_t>(1, batch_bytes / (kRecordBytes + 16)));
  return testing::make_batch(records, kRecordBytes, 1'700'000'000'000);
}

void BM_LogAppend(benchmark::State& state) {
  const size_t batch_bytes = static_cast<size_t>(state.range(0));
  const bool sync = state.range(1) != 0;
  testing::TempDir dir;
  IoRing ring;
  FdCache fds(64);
  LogConfig config;
  config.segment_bytes = 256ull << 20;
  config.flush.mode = sync ? FlushMode::kEveryBatch : FlushMode::kNever;
  auto opened = PartitionLog::open(dir.path(), config, ring, fds);
  if (!opened) return state.SkipWithError(opened.error().message.c_str());
  PartitionLog& log = **opened;
  std::vector<std::vector<std::byte>> buffers(kInFlight, batch_of(batch_bytes));
  std::vector<size_t> free_buffers;
  for (size_t i = 0; i < kInFlight; ++i) free_buffers.push_back(i);
  uint64_t bytes = 0;
  for (auto _ : state) {
    while (free_buffers.empty()) ring.wait();
    const size_t i = free_buffers.back();
    free_buffers.pop_back();
    auto r = log.append(buffers[i], {}, [&free_buffers, i](const LogResult<AppendResult>& done) {
      if (!done) std::abort();
      free_buffers.push_back(i);
    });
    if (!r) return state.SkipWithError(r.error().message.c_str());
    bytes += buffers[i].size();
  }
  ring.drain();
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["fdatasyncs"] = static_cast<double>(log.flush_count());
  state.SetLabel(ring.uses_io_uring() ? "io_uring" : "fallback");
}

void BM_WriteBaseline(benchmark::State& state) {
  const size_t batch_bytes = static_cast<size_t>(state.range(0));
  const bool sync = state.range(1) != 0;
  testing::TempDir dir;
  const int fd = ::open((dir.path() / "baseline").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const auto batch = batch_of(batch_bytes);
  uint64_t bytes = 0;
  for (auto _ : state) {
    if (::write(fd, batch.data(), batch.size()) != static_cast<ssize_t>(batch.size())) {
      return state.SkipWithError("write failed");
    }
    if (sync && ::fdatasync(fd) != 0) return state.SkipWithError("fdatasync failed");
    bytes += batch.size();
  }
  ::close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

// A log of 64 MiB in 16 KiB batches, shared by the read benchmarks.
struct ReadFixture {
  testing::TempDir dir;
  IoRing ring;
  FdCache fds{64};
  std::unique_ptr<PartitionLog> log;
  ReadFixture() {
    LogConfig config;
    config.flush.mode = FlushMode::kNever;
    log = std::move(*PartitionLog::open(dir.path(), config, ring, fds));
    std::deque<std::vector<std::byte>> batches;
    for (int i = 0; i < 64 * 64; ++i) {
      batches.push_back(batch_of(16 << 10));
      if (!log->append(batches.back(), {}, {})) std::abort();
      if (batches.size() > 64) {
        ring.drain();
        batches.clear();
      }
    }
    ring.drain();
  }
  ~ReadFixture() { ring.drain(); }
};

ReadFixture& read_fixture() {
  static ReadFixture fixture;
  return fixture;
}

void BM_LogReadSendfile(benchmark::State& state) {
  ReadFixture& f = read_fixture();
  const int null_fd = ::open("/dev/null", O_WRONLY);
  const uint64_t max_bytes = static_cast<uint64_t>(state.range(0));
  int64_t offset = 0;
  uint64_t bytes = 0;
  for (auto _ : state) {
    if (offset >= *f.log->log_end_offset()) offset = 0;
    auto r = f.log->read(Offset(offset), max_bytes);
    if (!r) return state.SkipWithError(r.error().message.c_str());
    for (const FileRange& range : r->ranges) {
      off_t pos = static_cast<off_t>(range.position);
      uint64_t left = range.length;
      while (left > 0) {
        const ssize_t n = ::sendfile(null_fd, range.fd(), &pos, left);
        if (n <= 0) return state.SkipWithError("sendfile failed");
        left -= static_cast<uint64_t>(n);
      }
    }
    bytes += r->bytes;
    offset = *r->next_offset;
  }
  ::close(null_fd);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_CatBaseline(benchmark::State& state) {
  ReadFixture& f = read_fixture();
  const int fd = ::open((f.dir.path() / segment_file_name(0, kLogSuffix)).c_str(), O_RDONLY);
  std::vector<char> buffer(1 << 20);
  uint64_t bytes = 0;
  const uint64_t size = f.log->size_bytes();
  off_t pos = 0;
  for (auto _ : state) {
    if (static_cast<uint64_t>(pos) >= size) pos = 0;
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), pos);
    if (n <= 0) return state.SkipWithError("read failed");
    benchmark::DoNotOptimize(buffer.data());
    pos += n;
    bytes += static_cast<uint64_t>(n);
  }
  ::close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

// Index lookup as a cold Fetch does it: the last .index entry at or below an offset, by binary
// search over the file with pread (detail::index_floor), beside the same search over the
// entries in memory (std::upper_bound) in the same run: the price of keeping the index on disk.
struct IndexFixture {
  static constexpr int64_t kBase = 1'000'000;
  static constexpr uint64_t kEntries = 1 << 18;  // a 1 GiB segment indexed every 4 KiB
  testing::TempDir dir;
  int fd = -1;
  std::vector<IndexEntry> entries;
  IndexFixture() {
    std::vector<std::byte> file(kEntries * kIndexEntryBytes);
    for (uint64_t i = 0; i < kEntries; ++i) {
      const IndexEntry e{.offset = kBase + static_cast<int64_t>(i) * 4, .position = i * 4096};
      entries.push_back(e);
      encode_index_entry(file.data() + i * kIndexEntryBytes, kBase, e);
    }
    fd = ::open((dir.path() / "bench.index").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::pwrite(fd, file.data(), file.size(), 0) != static_cast<ssize_t>(file.size())) {
      std::abort();
    }
  }
  ~IndexFixture() { ::close(fd); }
  // Offsets to look up: spread over the segment, the same sequence for both.
  int64_t target(uint64_t i) const {
    return kBase + static_cast<int64_t>((i * 2654435761u) % (kEntries * 4));
  }
};

void BM_IndexFloorPread(benchmark::State& state) {
  static IndexFixture f;
  uint64_t i = 0;
  for (auto _ : state) {
    auto e = detail::index_floor(f.fd, IndexFixture::kEntries, IndexFixture::kBase, f.target(i++));
    if (!e) return state.SkipWithError(e.error().message.c_str());
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_IndexFloorMemoryBaseline(benchmark::State& state) {
  static IndexFixture f;
  uint64_t i = 0;
  for (auto _ : state) {
    const int64_t offset = f.target(i++);
    auto it = std::upper_bound(f.entries.begin(), f.entries.end(), offset,
                               [](int64_t o, const IndexEntry& e) { return o < e.offset; });
    IndexEntry e = it == f.entries.begin() ? IndexEntry{IndexFixture::kBase, 0} : *(it - 1);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

BENCHMARK(BM_IndexFloorMemoryBaseline);
BENCHMARK(BM_IndexFloorPread);
BENCHMARK(BM_LogAppend)->ArgsProduct({{16 << 10, 1 << 20}, {0, 1}})->UseRealTime();
BENCHMARK(BM_WriteBaseline)->ArgsProduct({{16 << 10, 1 << 20}, {0, 1}})->UseRealTime();
BENCHMARK(BM_LogReadSendfile)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_CatBaseline)->UseRealTime();

}  // namespace
}  // namespace sluice::log
