// PartitionLog operations and their edge cases, on io_uring and on the fallback threads.
#include "log/log.h"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "log/internal/segment.h"
#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

using testing::append_and_wait;
using testing::make_batch;
using testing::read_async_wait;
using testing::segment_path;

// Bytes of `path` in blocks allocated but never written (fallocate's unwritten extents), or
// nothing where the file system does not say (FIEMAP).
std::optional<uint64_t> unwritten_bytes(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr size_t kExtents = 256;
  std::vector<std::byte> buf(sizeof(fiemap) + kExtents * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buf.data());
  map->fm_start = 0;
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kExtents;
  const int r = ::ioctl(fd, FS_IOC_FIEMAP, map);
  ::close(fd);
  if (r != 0) return std::nullopt;
  uint64_t unwritten = 0;
  for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
    if (map->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) {
      unwritten += map->fm_extents[i].fe_length;
    }
  }
  return unwritten;
}

class LogPartition : public ::testing::TestWithParam<bool> {
 protected:
  LogPartition() : ring_(IoRing::Options{.disable_io_uring = GetParam()}), fds_(64) {
    config_.clock_ms = [this] { return now_ms_; };
  }
  ~LogPartition() override { ring_.drain(); }

  std::unique_ptr<PartitionLog> open_log() {
    auto log = PartitionLog::open(dir_.path(), config_, ring_, fds_);
    EXPECT_TRUE(log) << (log ? "" : log.error().message);
    return log ? std::move(*log) : nullptr;
  }

  // Appends a batch of `records` records and waits; returns its base offset.
  int64_t append(PartitionLog& log, int records, size_t value_bytes = 100, int64_t ts = 1000) {
    batches_.push_back(make_batch(records, value_bytes, ts, batches_.size()));
    auto r = append_and_wait(log, ring_, batches_.back());
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r->base_offset : -1;
  }

  // Appends a one-record batch without waiting; its callback checks that it is acknowledged
  // in append order and only once durable, and counts it.
  void append_checked(PartitionLog& log, int& acknowledged, int64_t& last_acked) {
    batches_.push_back(make_batch(1, 100, 1000));
    ASSERT_TRUE(log.append(batches_.back(), {},
                           [&log, &acknowledged, &last_acked](const LogResult<AppendResult>& r) {
                             ASSERT_TRUE(r);
                             EXPECT_GT(*r->base_offset, last_acked);
                             last_acked = *r->base_offset;
                             EXPECT_GE(*log.durable_offset(), *r->end_offset);
                             ++acknowledged;
                           }));
  }

  // A log whose appends are never synced and may all be in flight at once (append_busy()), with
  // an index entry every `index_interval` bytes.
  std::unique_ptr<PartitionLog> open_busy_log(uint32_t index_interval) {
    config_.flush.mode = FlushMode::kNever;
    config_.index_interval_bytes = index_interval;
    config_.inflight_appends_max = 4096;
    return open_log();
  }

  // Appends `n` one-record batches of `value_bytes` and hands their writes to the ring, then
  // waits a little for it to run them; nobody handles their completions yet: the log is busy.
  void append_busy(PartitionLog& log, int n, size_t value_bytes) {
    for (int i = 0; i < n; ++i) {
      batches_.push_back(make_batch(1, value_bytes, 1000 + static_cast<int64_t>(batches_.size()),
                                    batches_.size()));
      ASSERT_TRUE(log.append(batches_.back(), {}, {}));
    }
    ring_.submit();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  // A log of 2 KiB segments holding 30 batches of two records; `segments`: their bases.
  std::unique_ptr<PartitionLog> open_small_segments(std::vector<int64_t>& segments) {
    config_.segment_bytes = 2048;
    auto log = open_log();
    for (int i = 0; log && i < 30; ++i) append(*log, 2, 200);
    if (log) segments = log->segment_base_offsets();
    return log;
  }

  // A consumer's Fetch of 20,000 bytes from `from` (read_async), which then moves to where it
  // ended; `at_once` counts those answered within the call. The ring is drained after it (the
  // consumer's turn: what was sent ahead arrives). False when it read nothing.
  bool fetch_on(PartitionLog& log, int64_t& from, int& at_once) {
    std::optional<LogResult<ReadResult>> got;
    log.read_async(Offset(from), 20'000, std::nullopt,
                   [&got](LogResult<ReadResult> r) { got.emplace(std::move(r)); });
    at_once += got ? 1 : 0;
    while (!got) {
      ring_.submit();
      ring_.wait();
    }
    ring_.drain();
    if (!*got || *(*got)->next_offset <= from) return false;
    from = *(*got)->next_offset;
    return true;
  }

  // The cold-read tests' log: 64 KiB segments, an index entry per KiB, 1,500 batches of 1-4
  // records and 20-920 byte values (the window holds the last 1,024: the rest is read cold).
  std::unique_ptr<PartitionLog> open_cold_read_log() {
    config_.segment_bytes = 64 * 1024;
    config_.index_interval_bytes = 1024;
    config_.flush.mode = FlushMode::kNever;
    auto log = open_log();
    append_many(*log, 1500, [](int i, uint64_t seed) {
      return make_batch(1 + i % 4, 20 + (i * 37) % 900, 1000 + i, seed);
    });
    EXPECT_GT(log->segment_count(), 4u);
    return log;
  }
  // After a cut there: other batches where the cut ones were.
  void append_after_cut(PartitionLog& log) {
    append_many(log, 1500, [](int i, uint64_t seed) {
      return make_batch(3, 50 + (i * 53) % 700, 5000 + i, seed);
    });
  }
  template <typename Make>
  void append_many(PartitionLog& log, int n, Make make) {
    for (int i = 0; i < n; ++i) {
      batches_.push_back(make(i, batches_.size()));
      ASSERT_TRUE(log.append(batches_.back(), {}, {}));
      if (i % 100 == 99) ring_.drain();
    }
    ring_.drain();
  }

  // Closes `log`, opens it again (into `log`) and expects a clean recovery that reads
  // `expected` from offset 0.
  void expect_reopened(std::unique_ptr<PartitionLog>& log, const std::vector<std::byte>& expected) {
    ASSERT_TRUE(log->close());
    log.reset();
    log = open_log();
    ASSERT_TRUE(log);
    EXPECT_TRUE(log->recovery_report().issues.empty());
    EXPECT_EQ(read_all(*log, 0), expected);
  }

  // Every batch appended so far, one after the other (as the log holds them from offset 0).
  std::vector<std::byte> appended() const {
    std::vector<std::byte> all;
    for (const auto& b : batches_) all.insert(all.end(), b.begin(), b.end());
    return all;
  }

  std::vector<std::byte> read_all(PartitionLog& log, int64_t from) {
    auto bytes = log.read_copy(Offset(from), 1ull << 30);
    EXPECT_TRUE(bytes) << (bytes ? "" : bytes.error().message);
    return bytes ? *bytes : std::vector<std::byte>{};
  }

  // The base offsets of the batches in `bytes`.
  static std::vector<int64_t> bases(Bytes bytes) {
    std::vector<int64_t> out;
    kafka::BatchIterator it(bytes);
    for (auto b = it.next(); b && b->has_value(); b = it.next()) out.push_back((*b)->base_offset());
    return out;
  }

  testing::TempDir dir_;
  IoRing ring_;
  FdCache fds_;
  LogConfig config_;
  int64_t now_ms_ = 1'000'000;
  std::deque<std::vector<std::byte>> batches_;  // kept alive: writes come from them
};

TEST_P(LogPartition, EmptyLog) {
  auto log = open_log();
  ASSERT_TRUE(log);
  EXPECT_EQ(*log->log_start_offset(), 0);
  EXPECT_EQ(*log->log_end_offset(), 0);
  EXPECT_EQ(log->segment_count(), 1u);
  auto r = log->read(Offset(0), 1000);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ranges.empty());
  EXPECT_EQ(*r->next_offset, 0);
  EXPECT_EQ(log->read(Offset(1), 1000).error().code, LogErrc::kOffsetOutOfRange);
  auto t = log->offset_for_timestamp(0);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->has_value());
  EXPECT_TRUE(std::filesystem::exists(segment_path(dir_.path(), 0, ".log")));
  EXPECT_TRUE(std::filesystem::exists(segment_path(dir_.path(), 0, ".index")));
  EXPECT_TRUE(std::filesystem::exists(segment_path(dir_.path(), 0, ".timeindex")));
  EXPECT_EQ(log->recovery_report().issues.size(), 0u);
}

// close() gives back the log's descriptors at once: a broker closes every partition before it
// destroys any, and 5,000 partitions under a limit of 4,696 descriptors failed to close
// ("Too many open files"), each holding its five until the end. Only the read handles the
// shard's FdCache keeps for closed segments stay.
TEST_P(LogPartition, CloseGivesBackItsDescriptors) {
  auto open_fds = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                         std::filesystem::directory_iterator{});
  };
  const auto before = open_fds();
  std::vector<int64_t> segments;
  auto log = open_small_segments(segments);
  ASSERT_TRUE(log);
  ASSERT_GT(segments.size(), 2u);
  ring_.drain();
  ASSERT_GT(open_fds(), before + static_cast<long>(fds_.size()));
  ASSERT_TRUE(log->close());
  EXPECT_EQ(open_fds(), before + static_cast<long>(fds_.size()));
}

TEST_P(LogPartition, AppendAssignsOffsetsAndStampsTheCallersBuffer) {
  auto log = open_log();
  auto batch = make_batch(3, 10, 1000);
  kafka::set_base_offset(batch, 777);  // whatever the client sent
  auto r = append_and_wait(*log, ring_, batch, {.leader_epoch = 5});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->base_offset, 0);
  EXPECT_EQ(*r->last_offset, 2);
  EXPECT_EQ(*r->end_offset, 3);
  auto view = kafka::RecordBatchView::parse(batch);
  EXPECT_EQ(view->base_offset(), 0);
  EXPECT_EQ(view->partition_leader_epoch(), 5);
  EXPECT_TRUE(view->verify_crc());
  EXPECT_EQ(append(*log, 2), 3);
  EXPECT_EQ(*log->log_end_offset(), 5);
  EXPECT_EQ(*log->durable_offset(), 5);  // default policy: durable before the callback
  EXPECT_EQ(bases(read_all(*log, 0)), (std::vector<int64_t>{0, 3}));
}

// Reads and batch lookups of recent batches come from the in-memory window, older ones (and
// everything after a reopen) from the indexes and batch headers on disk: both give the same,
// and read_batches() gives read()'s batches one by one.
TEST_P(LogPartition, RecentBatchWindowAgreesWithTheFiles) {
  config_.segment_bytes = 64 * 1024;
  config_.index_interval_bytes = 1024;
  config_.flush.mode = FlushMode::kNever;
  auto log = open_log();
  // More batches than the window holds, of varied sizes and terms, over several segments.
  const int kBatches = 1300;
  for (int i = 0; i < kBatches; ++i) {
    batches_.push_back(make_batch(1 + i % 4, 20 + (i * 37) % 300, 1000 + i, batches_.size()));
    ASSERT_TRUE(log->append(batches_.back(), {.leader_epoch = 1 + i / 100}, {}));
    if (i % 100 == 99) ring_.drain();  // under inflight_appends_max
  }
  ring_.drain();
  ASSERT_GT(log->segment_count(), 4u);
  const int64_t end = *log->log_end_offset();
  struct Seen {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    int64_t first = 0, next = 0;
    uint64_t bytes = 0;
    // read_batches(): base, last, epoch, position and length of each.
    std::vector<std::tuple<int64_t, int64_t, int32_t, uint64_t, uint64_t>> batches;
    bool operator==(const Seen&) const = default;
  };
  // read_batches() agrees with read() and with the bytes in the file.
  auto check_batches = [](const ReadResult& r, const std::vector<StoredBatch>& batches,
                          Seen& seen) {
    uint64_t bytes = 0;
    size_t range = 0;
    uint64_t in_range = 0;
    for (const StoredBatch& b : batches) {
      seen.batches.emplace_back(*b.base_offset, *b.last_offset, b.leader_epoch, b.range.position,
                                b.range.length);
      ASSERT_LT(range, r.ranges.size());
      EXPECT_EQ(b.range.position, r.ranges[range].position + in_range);
      EXPECT_EQ(b.range.fd(), r.ranges[range].fd());
      in_range += b.range.length;
      if (in_range == r.ranges[range].length) ++range, in_range = 0;
      bytes += b.range.length;
      std::vector<std::byte> stored(b.range.length);
      ASSERT_EQ(
          ::pread(b.range.fd(), stored.data(), stored.size(), static_cast<off_t>(b.range.position)),
          static_cast<ssize_t>(stored.size()));
      auto view = kafka::RecordBatchView::parse(stored);
      ASSERT_TRUE(view);
      EXPECT_EQ(view->base_offset(), *b.base_offset);
      EXPECT_EQ(view->base_offset() + view->last_offset_delta(), *b.last_offset);
      EXPECT_EQ(view->partition_leader_epoch(), b.leader_epoch);
      EXPECT_TRUE(view->verify_crc());
    }
    EXPECT_EQ(range, r.ranges.size());
    EXPECT_EQ(bytes, r.bytes);
  };
  auto look = [&](PartitionLog& l) {
    std::vector<Seen> out;
    for (int64_t from = 0; from < end; from += 7) {
      for (uint64_t max_bytes : {1ull, 700ull, 5000ull, 1ull << 20}) {
        for (int64_t max_offset : {end, from + 3, end - 5}) {
          auto r = l.read(Offset(from), max_bytes, Offset(max_offset));
          EXPECT_TRUE(r) << from;
          if (!r) return out;
          Seen seen{{}, *r->first_offset, *r->next_offset, r->bytes, {}};
          for (const auto& range : r->ranges) seen.ranges.emplace_back(range.position, range.length);
          auto batches = l.read_batches(Offset(from), max_bytes, Offset(max_offset));
          EXPECT_TRUE(batches) << from;
          if (!batches) return out;
          check_batches(*r, *batches, seen);
          out.push_back(seen);
        }
      }
      auto info = l.batch_at(Offset(from));
      EXPECT_TRUE(info) << from;
      if (!info) return out;
      out.push_back({{},
                     *info->base_offset,
                     *info->last_offset,
                     static_cast<uint64_t>(info->leader_epoch) << 32 | info->size_bytes,
                     {}});
    }
    return out;
  };
  const auto warm = look(*log);
  ASSERT_TRUE(log->close());
  log.reset();
  auto reopened = open_log();
  ASSERT_TRUE(reopened);
  const auto cold = look(*reopened);
  ASSERT_EQ(warm.size(), cold.size());
  for (size_t i = 0; i < warm.size(); ++i) EXPECT_TRUE(warm[i] == cold[i]) << "look " << i;
  ring_.drain();
}

// Read system calls this process made so far (/proc/self/io's syscr: read, pread, ...).
uint64_t read_syscalls() {
  std::FILE* f = std::fopen("/proc/self/io", "r");
  if (f == nullptr) return 0;
  char line[128];
  uint64_t n = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "syscr: %lu", &n) == 1) break;
  }
  std::fclose(f);
  return n;
}

// A Fetch outside the recent window reads the index and the headers around the ends of its
// run, not every batch's header: 64 batches of 16 KiB (each indexed) in a handful of preads.
TEST_P(LogPartition, ColdReadsCrossIndexedBatchesWithoutReadingTheirHeaders) {
  config_.flush.mode = FlushMode::kNever;
  auto log = open_log();
  for (int i = 0; i < 200; ++i) {
    batches_.push_back(make_batch(16, 1000, 1000 + i, batches_.size()));
    ASSERT_TRUE(log->append(batches_.back(), {}, {}));
    if (i % 50 == 49) ring_.drain();
  }
  ring_.drain();
  auto warm = log->read(Offset(160), 64 * batches_[0].size(), Offset(3000));
  ASSERT_TRUE(log->close());
  log.reset();
  auto cold_log = open_log();
  ASSERT_TRUE(cold_log);
  const uint64_t before = read_syscalls();
  auto cold = cold_log->read(Offset(160), 64 * batches_[0].size(), Offset(3000));
  const uint64_t calls = read_syscalls() - before;
  ASSERT_TRUE(warm && cold);
  EXPECT_EQ(cold->bytes, 64 * batches_[0].size());
  EXPECT_EQ(cold->bytes, warm->bytes);
  EXPECT_EQ(*cold->first_offset, 160);
  EXPECT_EQ(*cold->next_offset, 160 + 64 * 16);
  EXPECT_EQ(*cold->next_offset, *warm->next_offset);
  EXPECT_LT(calls, 24u) << "read syscalls for one cold read of 64 batches";
  // Bounded by the high watermark inside the run: it stops at the batch that crosses it.
  auto bounded = cold_log->read(Offset(160), 1 << 30, Offset(1000));
  ASSERT_TRUE(bounded);
  EXPECT_EQ(*bounded->next_offset, 992);
  EXPECT_EQ(bounded->bytes, 52 * batches_[0].size());
  ring_.drain();
}

// A Fetch older than the window (read_async) finds what read() finds, up to the end of the
// first segment, with no file opened or read on the calling thread: the read handle, the
// segment's index and the pieces of .log holding the headers it needs come through the ring,
// and the reads after it are answered from that cache. A truncation drops the cache: the
// batches appended after it lie elsewhere. A consumer reading on finds what its next Fetch
// needs read ahead.
TEST_P(LogPartition, ReadAsyncReadsOldBatchesThroughTheRingAndAgreesWithRead) {
  auto log = open_cold_read_log();
  ASSERT_TRUE(log);
  auto compare = [&](PartitionLog& l, int64_t from_end, const char* what) {
    const int64_t end = *l.log_end_offset();
    int checked = 0;
    for (int64_t from = 0; from < from_end; from += 5) {
      for (uint64_t max_bytes : {1ull, 3000ull, 40'000ull, 1ull << 20}) {
        for (int64_t max_offset : {end, from + 2}) {
          // First: read() would open the files it reads on this thread.
          const auto before = l.cold_read_stats();
          auto got = read_async_wait(l, ring_, from, max_bytes, max_offset);
          const auto after = l.cold_read_stats();
          auto want = l.read(Offset(from), max_bytes, Offset(max_offset));
          ASSERT_TRUE(want && got) << what << " from " << from;
          EXPECT_EQ(after.file_lookups, before.file_lookups) << what << " from " << from;
          EXPECT_EQ(*got->first_offset, *want->first_offset) << what << " from " << from;
          if (want->ranges.empty()) {
            EXPECT_TRUE(got->ranges.empty());
            EXPECT_EQ(*got->next_offset, *want->next_offset);
            continue;
          }
          // The first segment's part of read()'s answer.
          ASSERT_EQ(got->ranges.size(), 1u) << what << " from " << from;
          EXPECT_EQ(got->ranges[0].position, want->ranges[0].position) << what << " " << from;
          EXPECT_EQ(got->ranges[0].length, want->ranges[0].length) << what << " " << from;
          EXPECT_EQ(got->bytes, want->ranges[0].length);
          if (want->ranges.size() == 1) {
            EXPECT_EQ(*got->next_offset, *want->next_offset);
          }
          ++checked;
        }
      }
    }
    EXPECT_GT(checked, 100) << what;
  };
  const int64_t window_start = *log->log_end_offset() - 1024 * 5 / 2;  // about: batches of 1-4
  compare(*log, window_start / 2, "open");
  EXPECT_EQ(log->cold_read_stats().blocking_reads, 0u);
  EXPECT_GT(log->cold_read_stats().loads, 0u);
  EXPECT_GT(log->cold_read_stats().cached_bytes, 0u);

  // Cut inside the third segment, append other batches there: the old cache would point at
  // the old batches' places.
  const int64_t cut = log->segment_base_offsets()[2] + 7;
  ASSERT_TRUE(read_async_wait(*log, ring_, cut + 3, 1 << 20, *log->log_end_offset()));
  ASSERT_TRUE(log->truncate_suffix(Offset(cut)));
  EXPECT_EQ(log->cold_read_stats().cached_bytes, 0u);
  append_after_cut(*log);
  compare(*log, cut + 400, "after a cut");

  // Reopened: no window, nothing open; everything is read cold.
  ring_.drain();  // reads sent ahead
  ASSERT_TRUE(log->close());
  log.reset();
  auto reopened = open_log();
  ASSERT_TRUE(reopened);
  compare(*reopened, *reopened->log_end_offset(), "reopened");
  EXPECT_EQ(reopened->cold_read_stats().blocking_reads, 0u);
  ring_.drain();

  // A consumer reading on from where each Fetch ended: the piece of the file its next run
  // ends in was read ahead while it was away, so most Fetches are answered at once.
  ring_.drain();
  ASSERT_TRUE(reopened->close());
  reopened.reset();
  auto scanned = open_log();
  ASSERT_TRUE(scanned);
  int fetches = 0;
  int at_once = 0;
  for (int64_t from = 0; from < *scanned->log_end_offset(); ++fetches) {
    ASSERT_TRUE(fetch_on(*scanned, from, at_once));
  }
  EXPECT_GT(fetches, 40);
  EXPECT_GE(at_once, fetches - 1) << at_once << " of " << fetches << " fetches";
  EXPECT_EQ(scanned->cold_read_stats().blocking_reads, 0u);
  ring_.drain();
}

// Two consumers catching up in different segments of one partition (or a consumer and a
// lagging follower) keep their own segment's index in the cache: each one's reads after its
// first are answered at once, as one reader's are.
TEST_P(LogPartition, ColdReadersInDifferentSegmentsKeepTheirIndexes) {
  {
    auto log = open_cold_read_log();
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->close());
  }
  auto log = open_log();  // reopened: no window, nothing open
  ASSERT_TRUE(log);
  const auto bases = log->segment_base_offsets();
  ASSERT_GT(bases.size(), 5u);
  std::array<int64_t, 2> next{0, bases[3]};
  int fetches = 0;
  int at_once = 0;
  for (; fetches < 60; ++fetches) ASSERT_TRUE(fetch_on(*log, next[fetches % 2], at_once));
  EXPECT_GT(next[0], bases[1]);  // both crossed segments
  EXPECT_GT(next[1], bases[4]);
  EXPECT_GE(at_once, fetches - 2) << at_once << " of " << fetches << " fetches";
  EXPECT_EQ(log->cold_read_stats().blocking_reads, 0u);
}

// The shard's ColdBudget bounds what the cold-read caches of all its logs hold: two logs read
// from old offsets in turn, with a budget smaller than one log's cache, each drop the other's
// when they load (one alone may stay over it); their reads stay right and go through the ring.
// With room for both, both keep theirs.
TEST_P(LogPartition, TheShardsColdBudgetDropsTheLeastRecentlyUsedLogsCache) {
  testing::TempDir other_dir;
  {
    auto a = open_cold_read_log();
    ASSERT_TRUE(a);
    auto b = PartitionLog::open(other_dir.path(), config_, ring_, fds_);
    ASSERT_TRUE(b);
    append_many(**b, 1500, [](int i, uint64_t seed) {
      return make_batch(2, 30 + (i * 41) % 800, 2000 + i, seed);
    });
    ASSERT_TRUE(a->close());
    ASSERT_TRUE((*b)->close());
  }
  auto a = open_log();  // reopened: no window, nothing open
  auto opened = PartitionLog::open(other_dir.path(), config_, ring_, fds_);
  ASSERT_TRUE(a && opened);
  auto b = std::move(*opened);
  ColdBudget& budget = fds_.cold_budget();
  budget.set_limit(1);
  int64_t next_a = 0, next_b = 0;
  int at_once = 0;
  for (int round = 0; round < 4; ++round) {
    const int64_t from_a = next_a;
    ASSERT_TRUE(fetch_on(*a, next_a, at_once));
    EXPECT_GT(a->cold_read_stats().cached_bytes, 0u);
    EXPECT_EQ(b->cold_read_stats().cached_bytes, 0u) << "round " << round;
    EXPECT_EQ(budget.held(), a->cold_read_stats().cached_bytes);
    ASSERT_TRUE(fetch_on(*b, next_b, at_once));
    EXPECT_GT(b->cold_read_stats().cached_bytes, 0u);
    EXPECT_EQ(a->cold_read_stats().cached_bytes, 0u) << "round " << round;
    EXPECT_EQ(budget.held(), b->cold_read_stats().cached_bytes);
    // What a read through the cache gave is what the files hold.
    auto got = read_async_wait(*a, ring_, from_a, 20'000, *a->log_end_offset());
    auto want = a->read(Offset(from_a), 20'000, a->log_end_offset());
    ASSERT_TRUE(got && want);
    ASSERT_FALSE(got->ranges.empty());
    EXPECT_EQ(got->ranges[0].position, want->ranges[0].position);
    EXPECT_EQ(got->ranges[0].length, want->ranges[0].length);
  }
  EXPECT_GE(budget.drops(), 8u);
  EXPECT_EQ(a->cold_read_stats().blocking_reads + b->cold_read_stats().blocking_reads, 0u);

  budget.set_limit(64 << 20);  // room for both
  const uint64_t drops = budget.drops();
  ASSERT_TRUE(fetch_on(*a, next_a, at_once));
  ASSERT_TRUE(fetch_on(*b, next_b, at_once));
  EXPECT_GT(a->cold_read_stats().cached_bytes, 0u);
  EXPECT_GT(b->cold_read_stats().cached_bytes, 0u);
  EXPECT_EQ(budget.held(),
            a->cold_read_stats().cached_bytes + b->cold_read_stats().cached_bytes);
  EXPECT_EQ(budget.drops(), drops);
  b.reset();  // closed without close(): forgotten by the budget
  EXPECT_EQ(budget.held(), a->cold_read_stats().cached_bytes);
  EXPECT_EQ(budget.holders(), 1u);
}

// The cold cache keeps no descriptor of its own: once its reads are done, a .log handle the
// FdCache evicted is closed. It kept the last one it opened, so that every log a read had
// touched held a descriptor outside the shards' caps: a broker restarted with 5,000
// partitions under a low limit reached the process's limit (accept() failed).
TEST_P(LogPartition, TheColdCacheHoldsNoDescriptorOnceItsReadsAreDone) {
  auto log = open_cold_read_log();
  ASSERT_TRUE(log);
  ring_.drain();
  const std::string path = segment_path(dir_.path(), 0, ".log");
  auto open_on_path = [&path] {
    int n = 0;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      n += std::filesystem::read_symlink(fd.path(), ec) == path;
    }
    return n;
  };
  fds_.forget(path);
  ASSERT_EQ(open_on_path(), 0);
  auto got = read_async_wait(*log, ring_, 0, 20'000, *log->log_end_offset());
  ASSERT_TRUE(got);
  ASSERT_FALSE(got->ranges.empty());
  EXPECT_EQ(open_on_path(), 1);  // the answer's range, and the FdCache's copy
  got->ranges.clear();
  ring_.drain();  // the read-ahead
  fds_.forget(path);
  EXPECT_EQ(open_on_path(), 0);
  EXPECT_GT(log->cold_read_stats().cached_bytes, 0u);  // the cache itself stays
  // A read from there again opens the file again, through the ring.
  const uint64_t blocking = log->cold_read_stats().blocking_reads;
  auto again = read_async_wait(*log, ring_, 0, 20'000, *log->log_end_offset());
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->ranges.empty());
  EXPECT_EQ(log->cold_read_stats().blocking_reads, blocking);
}

// A read in the window of recent batches (a tailing consumer) whose segment was sealed and its
// handle evicted from the FdCache: read_async opens it through the ring, not on this thread.
TEST_P(LogPartition, ReadAsyncInTheWindowOpensAnEvictedSegmentThroughTheRing) {
  config_.flush.mode = FlushMode::kEveryBatch;  // sealed segments hand their handles over
  std::vector<int64_t> segments;
  auto log = open_small_segments(segments);
  ASSERT_GT(segments.size(), 3u);
  ring_.drain();
  for (size_t s = 1; s + 1 < segments.size(); ++s) {
    fds_.forget(segment_path(dir_.path(), segments[s], ".log"));
    const uint64_t opens = fds_.opens();
    const uint64_t lookups = log->cold_read_stats().file_lookups;
    auto got = read_async_wait(*log, ring_, segments[s] + 1, 1 << 20, *log->log_end_offset());
    EXPECT_EQ(fds_.opens(), opens) << "segment " << segments[s];
    EXPECT_EQ(log->cold_read_stats().file_lookups, lookups);
    auto want = log->read(Offset(segments[s] + 1), 1 << 20, log->log_end_offset());
    ASSERT_TRUE(got && want);
    ASSERT_FALSE(got->ranges.empty());
    EXPECT_EQ(got->ranges[0].position, want->ranges[0].position);
    EXPECT_EQ(got->ranges[0].length, want->ranges[0].length);
    EXPECT_EQ(*got->first_offset, *want->first_offset);
  }
}

// read_batches_now() as Raft's catch-up on a shard drives it: ask, and when the answer is short
// with loads sent, wait for `more` (never run from within the call) and ask again. Returns the
// first answer with batches (or the last one with none), and how many times it asked.
struct NowAnswer {
  LogResult<std::vector<StoredBatch>> batches;
  int asked = 0;
};
NowAnswer read_batches_now_wait(PartitionLog& log, IoRing& ring, int64_t from,
                                uint64_t max_bytes, std::optional<Offset> max_offset) {
  NowAnswer out{.batches = std::vector<StoredBatch>{}};
  int short_before = 0;
  for (;;) {
    bool more = false;
    auto now = log.read_batches_now(Offset(from), max_bytes, max_offset, short_before,
                                    [&more] { more = true; });
    ++out.asked;
    EXPECT_FALSE(more) << "more ran from within the call";
    if (!now) {
      out.batches = unexpected(now.error());
      return out;
    }
    if (!now->batches.empty() || !now->pending) {
      out.batches = std::move(now->batches);
      return out;
    }
    ++short_before;
    while (!more) {
      ring.submit();
      ring.wait();
    }
  }
}

// Raft's catch-up reads (read_batches_now) give a prefix of what read_batches() gives, never
// nothing when it has something, with no file opened or read on the calling thread; a
// follower reading on from where each answer ended (the broker's Replica) reads the whole log
// so, after a cut and reopened too.
TEST_P(LogPartition, ReadBatchesNowReadsOldBatchesThroughTheRing) {
  auto log = open_cold_read_log();
  ASSERT_TRUE(log);
  auto compare = [&](PartitionLog& l, int64_t from_end, const char* what) {
    const int64_t end = *l.log_end_offset();
    int checked = 0;
    for (int64_t from = *l.log_start_offset(); from < from_end; from += 7) {
      for (uint64_t max_bytes : {1ull, 3000ull, 40'000ull, 1ull << 20}) {
        for (int64_t max_offset : {end, from + 2}) {
          const auto before = l.cold_read_stats();
          auto got = read_batches_now_wait(l, ring_, from, max_bytes, Offset(max_offset));
          const auto after = l.cold_read_stats();
          auto want = l.read_batches(Offset(from), max_bytes, Offset(max_offset));
          ASSERT_TRUE(want && got.batches) << what << " from " << from;
          EXPECT_EQ(after.file_lookups, before.file_lookups) << what << " from " << from;
          EXPECT_LE(got.asked, 4) << what << " from " << from;
          if (want->empty()) {
            EXPECT_TRUE(got.batches->empty()) << what << " from " << from;
            continue;
          }
          ASSERT_FALSE(got.batches->empty()) << what << " from " << from;
          ASSERT_LE(got.batches->size(), want->size()) << what << " from " << from;
          for (size_t i = 0; i < got.batches->size(); ++i) {
            const StoredBatch& g = (*got.batches)[i];
            const StoredBatch& w = (*want)[i];
            EXPECT_EQ(*g.base_offset, *w.base_offset) << what << " from " << from;
            EXPECT_EQ(*g.last_offset, *w.last_offset) << what << " from " << from;
            EXPECT_EQ(g.leader_epoch, w.leader_epoch) << what << " from " << from;
            EXPECT_EQ(g.range.position, w.range.position) << what << " from " << from;
            EXPECT_EQ(g.range.length, w.range.length) << what << " from " << from;
          }
          ++checked;
        }
      }
    }
    EXPECT_GT(checked, 100) << what;
  };
  // A follower catching up from the start, 64 KiB at a time: every batch, in order.
  auto catch_up = [&](PartitionLog& l, const char* what) {
    const auto before = l.cold_read_stats();
    int64_t next = *l.log_start_offset();
    int answers = 0, asked = 0;
    while (next < *l.log_end_offset()) {
      auto got = read_batches_now_wait(l, ring_, next, 64 * 1024, std::nullopt);
      ASSERT_TRUE(got.batches) << what << " at " << next;
      ASSERT_FALSE(got.batches->empty()) << what << " at " << next;
      EXPECT_LE(*got.batches->front().base_offset, next) << what;
      EXPECT_GE(*got.batches->front().last_offset, next) << what;
      next = *got.batches->back().last_offset + 1;
      ++answers;
      asked += got.asked;
    }
    const auto after = l.cold_read_stats();
    EXPECT_EQ(after.file_lookups, before.file_lookups) << what;
    EXPECT_EQ(after.blocking_reads, before.blocking_reads) << what;
    // Each answer costs at most a round of loads (a piece, or an index and a piece).
    EXPECT_LE(asked, answers * 3) << what;
  };
  compare(*log, *log->log_end_offset() - 2000, "open");
  catch_up(*log, "open");
  EXPECT_GT(log->cold_read_stats().loads, 0u);

  // Cut inside the third segment, append other batches there: the answers follow the files.
  const int64_t cut = log->segment_base_offsets()[2] + 7;
  ASSERT_FALSE(read_batches_now_wait(*log, ring_, cut + 3, 1 << 20, std::nullopt)
                   .batches->empty());
  ASSERT_TRUE(log->truncate_suffix(Offset(cut)));
  append_after_cut(*log);
  compare(*log, cut + 400, "after a cut");

  // Reopened: no window, nothing open; everything is read cold.
  ring_.drain();
  ASSERT_TRUE(log->close());
  log.reset();
  auto reopened = open_log();
  ASSERT_TRUE(reopened);
  catch_up(*reopened, "reopened");
  compare(*reopened, *reopened->log_end_offset(), "reopened");
  EXPECT_EQ(reopened->cold_read_stats().blocking_reads, 0u);
  // Pieces held stay within their bound (1 MiB) besides the index.
  EXPECT_LE(reopened->cold_read_stats().cached_bytes, (1u << 20) + (64u << 10));
  ring_.drain();

  // Two followers behind in different segments each get their loads sent; a read of what is
  // already on its way does not send it again, and is not pending.
  ASSERT_TRUE(reopened->close());
  reopened.reset();
  auto two = open_log();
  ASSERT_TRUE(two);
  const int64_t other = two->segment_base_offsets()[3];
  int a = 0, b = 0, c = 0;
  auto first = two->read_batches_now(Offset(0), 64 << 10, std::nullopt, 0, [&a] { ++a; });
  auto again = two->read_batches_now(Offset(0), 64 << 10, std::nullopt, 0, [&b] { ++b; });
  auto elsewhere = two->read_batches_now(Offset(other), 64 << 10, std::nullopt, 0, [&c] { ++c; });
  ASSERT_TRUE(first && again && elsewhere);
  EXPECT_TRUE(first->pending && first->batches.empty());
  EXPECT_FALSE(again->pending);
  EXPECT_TRUE(elsewhere->pending);
  ring_.drain();
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);
  EXPECT_EQ(c, 1);
  EXPECT_EQ(read_batches_now_wait(*two, ring_, 0, 64 << 10, std::nullopt).asked, 2);
  EXPECT_EQ(read_batches_now_wait(*two, ring_, other, 64 << 10, std::nullopt).asked, 2);
  ring_.drain();
}

// Index entries go through the ring: a truncation waits (kBusy) until they are written, and the
// index files then hold every entry the log counted.
TEST_P(LogPartition, IndexEntriesAreWrittenThroughTheRing) {
  config_.index_interval_bytes = 1;
  config_.flush.mode = FlushMode::kNever;
  auto log = open_log();
  for (int i = 0; i < 20; ++i) {
    batches_.push_back(make_batch(2, 50, 1000 + i, batches_.size()));
    ASSERT_TRUE(log->append(batches_.back(), {}, {}));
  }
  if (!log->idle()) {
    EXPECT_EQ(log->truncate_suffix(Offset(10)).error().code, LogErrc::kBusy);
  }
  ring_.drain();
  EXPECT_EQ(std::filesystem::file_size(segment_path(dir_.path(), 0, ".index")),
            20 * kIndexEntryBytes);
  EXPECT_EQ(std::filesystem::file_size(segment_path(dir_.path(), 0, ".timeindex")),
            20 * kTimeIndexEntryBytes);
  auto cut = log->truncate_suffix(Offset(10));
  ASSERT_TRUE(cut);
  EXPECT_EQ(**cut, 10);
  EXPECT_EQ(std::filesystem::file_size(segment_path(dir_.path(), 0, ".index")),
            5 * kIndexEntryBytes);
  ring_.drain();
}

TEST_P(LogPartition, BatchAtGivesTheTermOfAnEntry) {
  config_.segment_bytes = 2048;
  auto log = open_log();
  for (int32_t term = 1; term <= 12; ++term) {
    batches_.push_back(make_batch(3, 200, 1000));
    ASSERT_TRUE(append_and_wait(*log, ring_, batches_.back(), {.leader_epoch = term}));
  }
  ASSERT_GT(log->segment_count(), 2u);
  for (int64_t offset = 0; offset < 36; ++offset) {
    auto info = log->batch_at(Offset(offset));
    ASSERT_TRUE(info) << offset;
    EXPECT_EQ(info->leader_epoch, offset / 3 + 1);
    EXPECT_EQ(*info->base_offset, offset / 3 * 3);
    EXPECT_EQ(*info->last_offset, offset / 3 * 3 + 2);
  }
  EXPECT_EQ(log->batch_at(Offset(36)).error().code, LogErrc::kOffsetOutOfRange);
}

TEST_P(LogPartition, AppendOfManyBatchesInOneCall) {
  auto log = open_log();
  std::vector<std::byte> all;
  for (int records : {1, 4, 2}) {
    auto b = make_batch(records, 50, 1000);
    all.insert(all.end(), b.begin(), b.end());
  }
  auto r = append_and_wait(*log, ring_, all);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->base_offset, 0);
  EXPECT_EQ(*r->last_offset, 6);
  EXPECT_EQ(bases(read_all(*log, 0)), (std::vector<int64_t>{0, 1, 5}));
  EXPECT_EQ(read_all(*log, 0), all);  // exactly the bytes sent, offsets stamped
}

TEST_P(LogPartition, AppendOfBatchesInSeparateBuffers) {
  config_.segment_bytes = 2048;  // the parts straddle a roll
  auto log = open_log();
  std::vector<std::vector<std::byte>> parts;
  for (int i = 0; i < 6; ++i) parts.push_back(make_batch(2, 300, 1000));
  std::vector<MutableBytes> spans(parts.begin(), parts.end());
  bool called = false;
  auto r = log->append(spans, {.leader_epoch = 3}, [&](const LogResult<AppendResult>& done) {
    ASSERT_TRUE(done);
    EXPECT_EQ(*done->base_offset, 0);
    EXPECT_EQ(*done->end_offset, 12);
    called = true;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->last_offset, 11);
  while (!called) ring_.wait();
  EXPECT_GT(log->segment_count(), 1u);
  EXPECT_EQ(bases(read_all(*log, 0)), (std::vector<int64_t>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(log->batch_at(Offset(11))->leader_epoch, 3);
  // One bad part rejects them all before anything is written.
  parts[3].back() ^= std::byte{1};
  EXPECT_EQ(log->append(spans, {}, {}).error().code, LogErrc::kInvalidBatch);
  EXPECT_EQ(*log->log_end_offset(), 12);
  while (!log->idle()) ring_.wait();  // the sealed segments' trims, after the data is durable
}

TEST_P(LogPartition, InvalidBatchesAreRejectedBeforeAnythingIsWritten) {
  auto log = open_log();
  auto good = make_batch(2, 10, 1);
  auto bad_crc = make_batch(2, 10, 1);
  bad_crc.back() ^= std::byte{1};
  std::vector<std::byte> mixed = good;
  mixed.insert(mixed.end(), bad_crc.begin(), bad_crc.end());
  EXPECT_EQ(log->append(mixed, {}, {}).error().code, LogErrc::kInvalidBatch);
  std::vector<std::byte> partial(good.begin(), good.end() - 1);
  EXPECT_EQ(log->append(partial, {}, {}).error().code, LogErrc::kInvalidBatch);
  std::vector<std::byte> empty;
  EXPECT_EQ(log->append(empty, {}, {}).error().code, LogErrc::kInvalidBatch);
  std::vector<std::byte> garbage(100, std::byte{0x33});
  EXPECT_EQ(log->append(garbage, {}, {}).error().code, LogErrc::kInvalidBatch);
  auto huge_delta = make_batch(2, 10, 1);
  store_be<int32_t>(huge_delta.data() + kafka::batch_layout::kLastOffsetDelta, INT32_MAX);
  kafka::update_crc(huge_delta);
  EXPECT_EQ(log->append(huge_delta, {}, {}).error().code, LogErrc::kInvalidBatch);
  EXPECT_EQ(*log->log_end_offset(), 0);
  EXPECT_TRUE(log->idle());
  EXPECT_EQ(append(*log, 1), 0);
}

TEST_P(LogPartition, CrcCheckedSkipsOnlyTheCrc) {
  // The leader's Produce path checked the CRC just before: the log does not read the records
  // again (a second CRC pass cost a tenth of the broker's CPU per byte), but framing and sizes
  // it still checks. Without the flag (a follower's entries) the CRC is checked.
  auto log = open_log();
  auto bad_crc = make_batch(2, 10, 1);
  bad_crc.back() ^= std::byte{1};
  EXPECT_EQ(log->append(bad_crc, {}, {}).error().code, LogErrc::kInvalidBatch);
  const MutableBytes one[] = {MutableBytes(bad_crc)};
  EXPECT_EQ(log->append(std::span<const MutableBytes>(one), {}, {}).error().code,
            LogErrc::kInvalidBatch);
  auto huge_delta = make_batch(2, 10, 1);
  store_be<int32_t>(huge_delta.data() + kafka::batch_layout::kLastOffsetDelta, INT32_MAX);
  kafka::update_crc(huge_delta);
  EXPECT_EQ(log->append(huge_delta, {.crc_checked = true}, {}).error().code,
            LogErrc::kInvalidBatch);
  EXPECT_EQ(*log->log_end_offset(), 0);
  ASSERT_TRUE(log->append(bad_crc, {.crc_checked = true}, {}));  // trusted, as promised
  EXPECT_EQ(*log->log_end_offset(), 2);
  EXPECT_EQ(append(*log, 1), 2);
  EXPECT_EQ(*log->log_end_offset(), 3);
}

TEST_P(LogPartition, ReadStartsAtTheBatchContainingTheOffset) {
  auto log = open_log();
  append(*log, 5);  // 0-4
  append(*log, 5);  // 5-9
  append(*log, 5);  // 10-14
  auto r = log->read(Offset(7), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->first_offset, 5);
  EXPECT_EQ(*r->next_offset, 15);
  EXPECT_EQ(r->bytes, batches_[1].size() + batches_[2].size());
  ASSERT_EQ(r->ranges.size(), 1u);
  EXPECT_EQ(r->ranges[0].position, batches_[0].size());
  EXPECT_EQ(r->ranges[0].length, r->bytes);
}

TEST_P(LogPartition, ReadReturnsAtLeastOneWholeBatchAndRespectsTheByteLimit) {
  auto log = open_log();
  append(*log, 5, 1000);
  append(*log, 5, 1000);
  auto one = log->read(Offset(0), 10);  // smaller than any batch
  ASSERT_TRUE(one);
  EXPECT_EQ(one->bytes, batches_[0].size());
  EXPECT_EQ(*one->next_offset, 5);
  auto exact = log->read(Offset(0), batches_[0].size() + batches_[1].size());
  EXPECT_EQ(*exact->next_offset, 10);
  auto short_by_one = log->read(Offset(0), batches_[0].size() + batches_[1].size() - 1);
  EXPECT_EQ(*short_by_one->next_offset, 5);
}

TEST_P(LogPartition, ReadStopsAtMaxOffset) {
  auto log = open_log();
  append(*log, 5);
  append(*log, 5);
  auto r = log->read(Offset(0), 1 << 20, Offset(5));  // e.g. the high watermark
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->next_offset, 5);
  auto none = log->read(Offset(5), 1 << 20, Offset(5));
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->ranges.empty());
  auto inside = log->read(Offset(0), 1 << 20, Offset(7));  // inside a batch: not served
  EXPECT_EQ(*inside->next_offset, 5);
}

TEST_P(LogPartition, ReadsAcrossSegmentBoundaries) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  std::vector<std::byte> expected;
  for (int i = 0; i < 20; ++i) {
    append(*log, 3, 300);
    expected.insert(expected.end(), batches_.back().begin(), batches_.back().end());
  }
  EXPECT_GT(log->segment_count(), 3u);
  auto r = log->read(Offset(0), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ranges.size(), log->segment_count());
  EXPECT_EQ(*r->next_offset, 60);
  EXPECT_EQ(read_all(*log, 0), expected);
  // From the middle of a later segment.
  auto bases_from_31 = bases(read_all(*log, 31));
  ASSERT_FALSE(bases_from_31.empty());
  EXPECT_EQ(bases_from_31.front(), 30);
  EXPECT_EQ(bases_from_31.size(), 10u);
}

TEST_P(LogPartition, RollExactlyAtTheLimit) {
  const size_t batch_bytes = make_batch(2, 200, 0).size();
  config_.segment_bytes = std::max<uint64_t>(3 * batch_bytes, kSegmentBytesMin);
  ASSERT_EQ(config_.segment_bytes, 3 * batch_bytes) << "batch too small for the test";
  auto log = open_log();
  for (int i = 0; i < 3; ++i) append(*log, 2, 200);
  EXPECT_EQ(log->segment_count(), 1u);  // exactly full, not over
  EXPECT_EQ(log->size_bytes(), config_.segment_bytes);
  append(*log, 2, 200);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 6}));
  EXPECT_EQ(std::filesystem::file_size(segment_path(dir_.path(), 0, ".log")), 3 * batch_bytes);
}

TEST_P(LogPartition, ABatchLargerThanASegmentGetsASegmentOfItsOwn) {
  config_.segment_bytes = kSegmentBytesMin;
  auto log = open_log();
  append(*log, 1, 10);
  append(*log, 4, 1000);  // > segment_bytes
  append(*log, 1, 10);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 1, 5}));
  EXPECT_EQ(bases(read_all(*log, 0)), (std::vector<int64_t>{0, 1, 5}));
}

TEST_P(LogPartition, RollByAge) {
  config_.segment_ms = 1000;
  auto log = open_log();
  append(*log, 1);
  now_ms_ += 999;
  append(*log, 1);
  EXPECT_EQ(log->segment_count(), 1u);
  now_ms_ += 1;
  append(*log, 1);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 2}));
}

TEST_P(LogPartition, ActiveSegmentIsPreallocatedAndTrimmedOnRoll) {
  config_.segment_bytes = 64 * 1024;
  auto log = open_log();
  append(*log, 1, 100);
  EXPECT_EQ(std::filesystem::file_size(segment_path(dir_.path(), 0, ".log")), 64u * 1024);
  for (int i = 0; i < 100; ++i) append(*log, 10, 100);
  ASSERT_GT(log->segment_count(), 1u);
  uint64_t sum = 0;
  for (int64_t base : log->segment_base_offsets()) {
    if (base == log->segment_base_offsets().back()) break;
    sum += std::filesystem::file_size(segment_path(dir_.path(), base, ".log"));
  }
  EXPECT_LT(sum, log->size_bytes());  // closed segments hold only their batches
}

// The active segment's index entries wait while the log is busy and their batches are in the
// window (whose reads touch no index): no index write for every batch. Past 4 KiB (or once their
// batches leave the window, where cold reads search them) they go out while it is still busy,
// and an idle log has all of them on disk.
TEST_P(LogPartition, IndexEntriesWaitWhileTheLogIsBusyAndAreOnDiskOnceIdle) {
  auto log = open_busy_log(1);  // an entry for every batch
  const auto index = segment_path(dir_.path(), 0, ".index");
  const auto time_index = segment_path(dir_.path(), 0, ".timeindex");
  append_busy(*log, 100, 10);
  EXPECT_EQ(std::filesystem::file_size(index), 0u);
  EXPECT_EQ(std::filesystem::file_size(time_index), 0u);
  ring_.drain();
  EXPECT_TRUE(log->idle());
  EXPECT_EQ(std::filesystem::file_size(index), 100u * kIndexEntryBytes);
  EXPECT_EQ(std::filesystem::file_size(time_index), 100u * kTimeIndexEntryBytes);
  append_busy(*log, 700, 10);  // 4 KiB of entries and more
  EXPECT_GE(std::filesystem::file_size(index), 100u * kIndexEntryBytes + 4096);
  EXPECT_LT(std::filesystem::file_size(index), 800u * kIndexEntryBytes);
  ring_.drain();
  EXPECT_EQ(std::filesystem::file_size(index), 800u * kIndexEntryBytes);
  EXPECT_EQ(std::filesystem::file_size(time_index), 800u * kTimeIndexEntryBytes);
  EXPECT_EQ(read_all(*log, 0), appended());
  expect_reopened(log, appended());
}

// Entries few enough to wait past 4 KiB still go out once the window moves past their batches:
// a cold read of those batches searches the entries on disk.
TEST_P(LogPartition, IndexEntriesOfBatchesLeavingTheWindowGoOutWhileBusy) {
  auto log = open_busy_log(1000);  // an entry every few batches
  const auto index = segment_path(dir_.path(), 0, ".index");
  append_busy(*log, 1100, 200);
  const uint64_t entries = std::filesystem::file_size(index) / kIndexEntryBytes;
  EXPECT_GT(entries, 0u);  // those of the batches before the window, at least
  EXPECT_LT(entries * kIndexEntryBytes, 4096u);
  ring_.drain();
  EXPECT_EQ(read_all(*log, 0), appended());
}

// LogConfig::zero_ahead: the active segment's file is written with zeros (and synced) ahead
// of the appends, read back as the end of the log by recovery, and trimmed when it rolls.
TEST_P(LogPartition, ZeroAheadWritesZerosPastTheAppendsAndTrimsThemOnRoll) {
  config_.segment_bytes = 1 << 20;
  config_.preallocate = false;  // the file grows by the zeros only
  config_.zero_ahead = true;
  auto log = open_log();
  const auto path = segment_path(dir_.path(), 0, ".log");
  append(*log, 1, 100);
  ring_.drain();
  // A segment that holds little zeros nothing (a partition written a little costs no more).
  EXPECT_EQ(std::filesystem::file_size(path), log->size_bytes());
  for (int i = 0; i < 3; ++i) append(*log, 100, 1000);
  ring_.drain();
  const uint64_t data = log->size_bytes();
  const uint64_t file = std::filesystem::file_size(path);
  EXPECT_GE(file, data + (64u << 10));  // zeros past the batches
  // Written blocks, not fallocate's unwritten ones (whose first write updates metadata).
  if (auto unwritten = unwritten_bytes(path)) {
    EXPECT_EQ(*unwritten, 0u);
  }
  {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> tail(file - data);
    in.seekg(static_cast<std::streamoff>(data));
    ASSERT_TRUE(in.read(tail.data(), static_cast<std::streamsize>(tail.size())));
    EXPECT_TRUE(std::all_of(tail.begin(), tail.end(), [](char c) { return c == 0; }));
  }
  for (int i = 0; i < 300; ++i) append(*log, 10, 1000);
  ASSERT_GT(log->segment_count(), 2u);
  std::vector<std::byte> expected = appended();
  EXPECT_EQ(read_all(*log, 0), expected);
  uint64_t closed = 0;
  for (int64_t base : log->segment_base_offsets()) {
    if (base == log->segment_base_offsets().back()) break;
    closed += std::filesystem::file_size(segment_path(dir_.path(), base, ".log"));
  }
  EXPECT_LT(closed, log->size_bytes());  // closed segments hold only their batches
  // Not closed (a crash after the appends were durable): recovery stops at the zeros.
  ring_.drain();
  log.reset();
  log = open_log();
  ASSERT_TRUE(log);
  EXPECT_EQ(read_all(*log, 0), expected);
  append(*log, 1, 100);
  expected.insert(expected.end(), batches_.back().begin(), batches_.back().end());
  expect_reopened(log, expected);
}

// Zeros ahead only while the log's syncs are small: a log whose flush rounds each sync a few
// hundred KiB stops writing them (they would cost a write of every byte and save nothing that
// counts), and its file then grows by its batches alone.
TEST_P(LogPartition, ZeroAheadStopsWhenEachSyncCarriesMuch) {
  config_.segment_bytes = 64 << 20;
  config_.preallocate = false;
  config_.zero_ahead = true;
  auto log = open_log();
  const auto path = segment_path(dir_.path(), 0, ".log");
  for (int i = 0; i < 40; ++i) append(*log, 16, 1000);  // ~16 KiB a sync
  ring_.drain();
  EXPECT_GT(std::filesystem::file_size(path), log->size_bytes());
  for (int i = 0; i < 40; ++i) append(*log, 300, 1000);  // ~300 KiB a sync
  ring_.drain();
  EXPECT_EQ(std::filesystem::file_size(path), log->size_bytes());
}

// An append that reaches the range being zeroed waits for the zeros: written before them, it
// could be overwritten by them (the ring may run the two in either order).
TEST_P(LogPartition, ZeroAheadHoldsAWriteUntilTheZerosUnderItAreIn) {
  config_.segment_bytes = 1 << 20;
  config_.preallocate = false;
  config_.zero_ahead = true;
  auto log = open_log();
  append(*log, 200, 1000);  // ~200 KiB, then zeros to ~400 KiB
  ring_.drain();
  int acknowledged = 0;
  auto append_counted = [&](int records) {
    batches_.push_back(make_batch(records, 1000, 1000, batches_.size()));
    ASSERT_TRUE(log->append(batches_.back(), {}, [&](const LogResult<AppendResult>& r) {
      ASSERT_TRUE(r);
      ++acknowledged;
    }));
  };
  append_counted(150);  // to ~350 KiB: written at once, and zeros from ~400 KiB go out with it
  EXPECT_EQ(log->held_writes(), 0u);
  append_counted(100);  // to ~450 KiB: into the zeros in flight
  EXPECT_EQ(log->held_writes(), 1u);
  ring_.drain();
  EXPECT_EQ(log->held_writes(), 0u);
  EXPECT_EQ(acknowledged, 2);
  std::vector<std::byte> expected = appended();
  EXPECT_EQ(read_all(*log, 0), expected);
  expect_reopened(log, expected);
}

// AppendOptions::roll_async (a Raft replica's appends): the append that must roll first has
// the new segment's files opened through the ring and answers kBusy, without touching the log;
// once they are open the same append goes through into the new segment.
TEST_P(LogPartition, RollAsyncOpensTheNextSegmentThroughTheRingFirst) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  const AppendOptions async{.roll_async = true};
  auto append_async = [&](std::vector<std::byte>& batch) -> LogResult<AppendResult> {
    for (int tries = 0; tries < 10; ++tries) {
      auto r = log->append(batch, async, {});
      if (r || r.error().code != LogErrc::kBusy) {
        ring_.drain();
        return r;
      }
      ring_.drain();  // the opens complete
    }
    return log_error(LogErrc::kBusy, "still busy after 10 tries");
  };
  int busy = 0;
  for (int i = 0; i < 20; ++i) {
    batches_.push_back(make_batch(3, 300, 1000, i));
    const int64_t end = *log->log_end_offset();
    const size_t segments = log->segment_count();
    auto first = log->append(batches_.back(), async, {});
    if (!first) {
      ASSERT_EQ(first.error().code, LogErrc::kBusy) << first.error().message;
      ++busy;
      EXPECT_EQ(*log->log_end_offset(), end);  // nothing appended
      EXPECT_EQ(log->segment_count(), segments);
      // The next segment's files exist already (empty), named by the offset it will start at.
      ring_.drain();
      EXPECT_TRUE(std::filesystem::exists(segment_path(dir_.path(), end, ".log")));
      auto again = append_async(batches_.back());
      ASSERT_TRUE(again) << again.error().message;
      EXPECT_EQ(*again->base_offset, end);
      EXPECT_EQ(log->segment_count(), segments + 1);
      EXPECT_EQ(log->segment_base_offsets().back(), end);
    } else {
      ring_.drain();
    }
  }
  EXPECT_GT(busy, 3);
  EXPECT_EQ(busy + 1, static_cast<int>(log->segment_count()));
  // Sealed segments were trimmed (through the ring) to their batches.
  const auto segments = log->segment_base_offsets();
  uint64_t closed = 0;
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    closed += std::filesystem::file_size(segment_path(dir_.path(), segments[i], ".log"));
  }
  std::vector<std::byte> expected = appended();
  EXPECT_EQ(read_all(*log, 0), expected);
  EXPECT_LT(closed, expected.size());
  expect_reopened(log, expected);
}

// An append larger than a segment (a Raft append of several batches, small segments) rolls
// more than once: every roll's files are opened through the ring before it goes in, none at
// once on the calling thread.
TEST_P(LogPartition, RollAsyncOpensEveryRollOfOneAppendThroughTheRing) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  const AppendOptions async{.roll_async = true};
  append(*log, 3, 300);  // the active segment is not empty
  std::vector<std::byte> many;
  for (int i = 0; i < 12; ++i) {
    const auto batch = make_batch(3, 300, 2000 + i, 1 + i);
    many.insert(many.end(), batch.begin(), batch.end());
  }
  const int64_t end = *log->log_end_offset();
  const size_t segments = log->segment_count();
  auto first = log->append(many, async, {});
  ASSERT_FALSE(first);
  ASSERT_EQ(first.error().code, LogErrc::kBusy) << first.error().message;
  EXPECT_EQ(*log->log_end_offset(), end);  // nothing appended
  ring_.drain();
  // Every segment the append will start has its files already (empty), before the retry.
  std::set<std::string> prepared;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".log")) prepared.insert(name);
  }
  auto again = log->append(many, async, {});
  ASSERT_TRUE(again) << again.error().message;
  ring_.drain();
  const auto bases = log->segment_base_offsets();
  ASSERT_GE(bases.size(), segments + 2) << "the append should roll at least twice";
  for (size_t i = segments; i < bases.size(); ++i) {
    EXPECT_TRUE(prepared.contains(
        segment_path(dir_.path(), bases[i], ".log").filename().string()))
        << "the segment at " << bases[i] << " was opened by the append itself";
  }
  std::vector<std::byte> expected = batches_.front();  // offsets as the log stamped them
  expected.insert(expected.end(), many.begin(), many.end());
  EXPECT_EQ(read_all(*log, 0), expected);
  expect_reopened(log, expected);
}

// More rolls in one append than are prepared ahead (16): the rest open their files at once,
// and the log is whole.
TEST_P(LogPartition, RollAsyncWithMoreRollsThanPreparedStillAppendsEverything) {
  config_.segment_bytes = kSegmentBytesMin;
  auto log = open_log();
  append(*log, 1, 100);
  std::vector<std::byte> many;
  for (int i = 0; i < 24; ++i) {
    const auto batch = make_batch(1, 900, 3000 + i, 1 + i);  // one batch a segment
    many.insert(many.end(), batch.begin(), batch.end());
  }
  const AppendOptions async{.roll_async = true};
  LogResult<AppendResult> r = log_error(LogErrc::kBusy, "not tried");
  for (int tries = 0; tries < 5 && !r && r.error().code == LogErrc::kBusy; ++tries) {
    r = log->append(many, async, {});
    ring_.drain();
  }
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(log->segment_count(), 25u);
  std::vector<std::byte> expected = batches_.front();
  expected.insert(expected.end(), many.begin(), many.end());
  EXPECT_EQ(read_all(*log, 0), expected);
  expect_reopened(log, expected);
}

// An append of many parts (a Raft replica's entries) that would roll more often than segments
// are prepared ahead takes only the parts whose rolls are prepared (AppendResult::parts); the
// caller appends the rest next. No segment's files are opened by the append itself.
TEST_P(LogPartition, RollAsyncTakesOnlyThePartsWhoseRollsArePrepared) {
  config_.segment_bytes = kSegmentBytesMin;
  auto log = open_log();
  append(*log, 1, 100);
  constexpr size_t kParts = 40;  // one batch a segment: 40 rolls, more than 16 are prepared
  std::vector<std::vector<std::byte>> batches;
  for (size_t i = 0; i < kParts; ++i) batches.push_back(make_batch(1, 900, 3000 + i, 1 + i));
  std::vector<MutableBytes> parts;
  for (auto& b : batches) parts.emplace_back(b.data(), b.size());
  auto listed = [&] {
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      const std::string name = entry.path().filename().string();
      if (name.ends_with(".log")) names.insert(name);
    }
    return names;
  };
  const AppendOptions async{.roll_async = true};
  size_t from = 0;
  std::vector<size_t> taken;
  for (int tries = 0; tries < 100 && from < kParts; ++tries) {
    const std::set<std::string> before = listed();
    const auto segments = log->segment_base_offsets();
    auto r = log->append(std::span<const MutableBytes>(parts).subspan(from), async, {});
    if (!r) {
      ASSERT_EQ(r.error().code, LogErrc::kBusy) << r.error().message;
      ring_.drain();
      continue;
    }
    ASSERT_GE(r->parts, 1u);
    taken.push_back(r->parts);
    from += r->parts;
    EXPECT_EQ(*r->end_offset, static_cast<int64_t>(1 + from));
    for (const int64_t base : log->segment_base_offsets()) {
      if (std::find(segments.begin(), segments.end(), base) != segments.end()) continue;
      EXPECT_TRUE(before.contains(segment_path(dir_.path(), base, ".log").filename().string()))
          << "the segment at " << base << " was opened by the append itself";
    }
    ring_.drain();
  }
  ASSERT_EQ(from, kParts);
  ASSERT_GE(taken.size(), 3u);
  EXPECT_EQ(taken[0], 16u) << "a roll a part, 16 prepared";
  std::vector<std::byte> expected = batches_.front();
  for (const auto& b : batches) expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(read_all(*log, 0), expected);
  expect_reopened(log, expected);
}

// A log that gave its descriptors back (release_fds) and then rolls: the files the roll needs
// (the new segment's, and partition.meta's and the directory's handles) are opened through the
// ring with the roll's, and the log goes on whole.
TEST_P(LogPartition, RollAsyncAfterAReleaseOpensWhatTheRollNeedsThroughTheRing) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  const AppendOptions async{.roll_async = true};
  int rolls = 0;
  for (int i = 0; i < 30; ++i) {
    ring_.drain();
    if (i % 3 == 0) {
      ASSERT_TRUE(log->release_fds());
      ASSERT_FALSE(log->holds_fds());
      log->reopen_fds_async([](int32_t r) { EXPECT_EQ(r, 0); });
      ring_.drain();
      ASSERT_TRUE(log->holds_fds());
    }
    batches_.push_back(make_batch(3, 300, 1000, i));
    auto r = log->append(batches_.back(), async, {});
    if (!r) {
      ASSERT_EQ(r.error().code, LogErrc::kBusy) << r.error().message;
      ++rolls;
      bool woken = false;
      log->when_appendable([&] { woken = true; });
      ring_.drain();
      EXPECT_TRUE(woken);
      r = log->append(batches_.back(), async, {});
      ASSERT_TRUE(r) << r.error().message;
    }
  }
  ring_.drain();
  EXPECT_GT(rolls, 3);
  std::vector<std::byte> expected = appended();
  EXPECT_EQ(read_all(*log, 0), expected);
  expect_reopened(log, expected);
}

// A roll prepared and then not taken (the log truncated meanwhile, or closed) leaves no files:
// recovery must not find a segment that does not follow the log.
TEST_P(LogPartition, APreparedRollNotTakenLeavesNoFiles) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  const AppendOptions async{.roll_async = true};
  int64_t prepared = -1;
  for (int i = 0; i < 20 && prepared < 0; ++i) {
    batches_.push_back(make_batch(3, 300, 1000, i));
    const int64_t end = *log->log_end_offset();
    auto r = log->append(batches_.back(), async, {});
    ring_.drain();
    if (!r) {
      ASSERT_EQ(r.error().code, LogErrc::kBusy);
      prepared = end;
    }
  }
  ASSERT_GE(prepared, 0);
  ASSERT_TRUE(std::filesystem::exists(segment_path(dir_.path(), prepared, ".log")));
  ASSERT_TRUE(log->truncate_suffix(Offset(3)));
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), prepared, ".log")));
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), prepared, ".index")));
  // Prepared again, then a clean close.
  for (int i = 0; i < 20; ++i) {
    batches_.push_back(make_batch(3, 300, 1000, 100 + i));
    const int64_t end = *log->log_end_offset();
    auto r = log->append(batches_.back(), async, {});
    ring_.drain();
    if (!r) {
      prepared = end;
      break;
    }
  }
  ASSERT_TRUE(std::filesystem::exists(segment_path(dir_.path(), prepared, ".log")));
  const auto expected = read_all(*log, 0);
  ASSERT_TRUE(log->close());
  log.reset();
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), prepared, ".log")));
  log = open_log();
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  EXPECT_TRUE(log->recovery_report().issues.empty());
  EXPECT_EQ(read_all(*log, 0), expected);
}

TEST_P(LogPartition, TimeLookups) {
  config_.segment_bytes = kSegmentBytesMin * 2;
  config_.index_interval_bytes = 100;
  auto log = open_log();
  // Batch k holds records with timestamps 1000k .. 1000k+3 at offsets 4k .. 4k+3.
  for (int k = 1; k <= 12; ++k) append(*log, 4, 100, 1000 * k);
  ASSERT_GT(log->segment_count(), 2u);
  auto at = [&](int64_t t) -> int64_t {
    auto r = log->offset_for_timestamp(t);
    EXPECT_TRUE(r);
    return r && r->has_value() ? ***r : -1;
  };
  EXPECT_EQ(at(-5), 0);  // before all data
  EXPECT_EQ(at(1000), 0);
  EXPECT_EQ(at(1002), 2);   // inside a batch
  EXPECT_EQ(at(1004), 4);   // between batches
  EXPECT_EQ(at(7001), 25);  // a later segment
  EXPECT_EQ(at(12003), 47);
  EXPECT_EQ(at(12004), -1);  // after all data
}

// ListOffsets by time on a shard (offset_for_timestamp_async) finds what the blocking lookup
// finds, with the record's timestamp, and opens or reads no file on the calling thread: in
// the window of recent batches, below it, and reopened (nothing open, no window).
TEST_P(LogPartition, TimeLookupsThroughTheRingAgreeWithTheFiles) {
  auto log = open_cold_read_log();  // batch i: records stamped 1000 + i, 1000 + i + 1, ...
  ASSERT_TRUE(log);
  auto lookup = [&](PartitionLog& l, int64_t t) {
    std::optional<LogResult<std::optional<PartitionLog::TimedOffset>>> got;
    l.offset_for_timestamp_async(t, [&got](auto r) { got.emplace(std::move(r)); });
    while (!got) {
      ring_.submit();
      ring_.wait();
    }
    return std::move(*got);
  };
  auto compare = [&](PartitionLog& l, const char* what) {
    int found = 0;
    for (int64_t t = 990; t <= 2510; t += 3) {
      const auto before = l.cold_read_stats();
      auto got = lookup(l, t);
      EXPECT_EQ(l.cold_read_stats().file_lookups, before.file_lookups) << what << " " << t;
      auto want = l.offset_for_timestamp(t);
      ASSERT_TRUE(got && want) << what << " " << t;
      ASSERT_EQ(got->has_value(), want->has_value()) << what << " " << t;
      if (!*want) continue;
      EXPECT_EQ(*(*got)->offset, ***want) << what << " " << t;
      EXPECT_GE((*got)->timestamp, t) << what;
      // The record there has that timestamp.
      auto bytes = l.read_copy((*got)->offset, 1);
      ASSERT_TRUE(bytes);
      auto view = kafka::RecordBatchView::parse(*bytes);
      ASSERT_TRUE(view);
      const int64_t delta = *(*got)->offset - view->base_offset();
      EXPECT_EQ((*got)->timestamp, view->base_timestamp() + delta) << what << " " << t;
      ++found;
    }
    EXPECT_GT(found, 400) << what;
    EXPECT_EQ(l.cold_read_stats().blocking_reads, 0u) << what;
  };
  compare(*log, "open");
  // Each time the newest batch: what the lookup before brought of the active (preallocated)
  // segment, up to its end then, must not stand for the batch appended since.
  for (int i = 0; i < 20; ++i) {
    const int64_t t = 100'000 + 10 * i;
    const int64_t base = append(*log, 2, 30 + 7 * i, t);
    auto got = lookup(*log, t);
    ASSERT_TRUE(got && *got) << i;
    EXPECT_EQ(*(*got)->offset, base) << i;
    EXPECT_EQ((*got)->timestamp, t) << i;
  }
  ring_.drain();
  ASSERT_TRUE(log->close());
  log.reset();
  auto reopened = open_log();
  ASSERT_TRUE(reopened);
  compare(*reopened, "reopened");
  ring_.drain();
}

TEST_P(LogPartition, TimeLookupWithTimestampsOutOfOrder) {
  auto log = open_log();
  append(*log, 1, 10, 5000);  // offset 0
  append(*log, 1, 10, 1000);  // offset 1
  append(*log, 1, 10, 3000);  // offset 2
  EXPECT_EQ(***log->offset_for_timestamp(2000), 0);
  EXPECT_EQ(***log->offset_for_timestamp(5000), 0);
  EXPECT_FALSE(log->offset_for_timestamp(5001)->has_value());
}

TEST_P(LogPartition, TruncateSuffixIntoTheMiddleOfASegment) {
  auto log = open_log();
  for (int i = 0; i < 10; ++i) append(*log, 3);  // batches at 0, 3, ..., 27
  auto end = log->truncate_suffix(Offset(13));   // inside the batch 12-14
  ASSERT_TRUE(end);
  EXPECT_EQ(**end, 12);
  EXPECT_EQ(*log->log_end_offset(), 12);
  EXPECT_EQ(bases(read_all(*log, 0)), (std::vector<int64_t>{0, 3, 6, 9}));
  EXPECT_EQ(log->read(Offset(13), 100).error().code, LogErrc::kOffsetOutOfRange);
  EXPECT_EQ(append(*log, 2), 12);
  EXPECT_EQ(bases(read_all(*log, 9)), (std::vector<int64_t>{9, 12}));
  ASSERT_TRUE(log->close());
  log.reset();
  log = open_log();
  EXPECT_EQ(*log->log_end_offset(), 14);
  EXPECT_EQ(bases(read_all(*log, 0)), (std::vector<int64_t>{0, 3, 6, 9, 12}));
}

TEST_P(LogPartition, TruncateSuffixIntoAnEarlierSegment) {
  std::vector<int64_t> segments;
  auto log = open_small_segments(segments);
  ASSERT_GT(segments.size(), 3u);
  const int64_t cut = segments[1] + 2;
  ASSERT_TRUE(log->truncate_suffix(Offset(cut)));
  EXPECT_EQ(*log->log_end_offset(), cut);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{segments[0], segments[1]}));
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), segments[2], ".log")));
  EXPECT_EQ(append(*log, 2, 200), cut);
  EXPECT_EQ(***log->offset_for_timestamp(1000), 0);
  // An unclean reopen finds the same log.
  log.reset();
  log = open_log();
  EXPECT_EQ(*log->log_end_offset(), cut + 2);
  EXPECT_EQ(bases(read_all(*log, cut)), (std::vector<int64_t>{cut}));
  EXPECT_TRUE(log->recovery_report().issues.empty());
}

TEST_P(LogPartition, TruncationDuringAFlushLimitsWhatTheFlushVouchesFor) {
  config_.flush.mode = FlushMode::kNever;
  auto log = open_log();
  append(*log, 5);
  append(*log, 5);
  log->flush();  // an fdatasync covering offsets 0-9 is now in flight
  ASSERT_TRUE(log->truncate_suffix(Offset(5)));
  batches_.push_back(make_batch(5, 100, 1000));
  ASSERT_TRUE(log->append(batches_.back(), {}, {}));  // offsets 5-9 again, not yet synced
  ring_.drain();
  EXPECT_EQ(*log->written_offset(), 10);
  // The first fdatasync vouches only for 0-4; the flush() waiter (for offset 10) needs a
  // second one for the new 5-9.
  EXPECT_EQ(log->flush_count(), 2u);
  EXPECT_EQ(*log->durable_offset(), 10);
}

// A cut into an earlier segment (a follower's uncommitted suffix spanning rolls) drops the
// later segments without freeing their blocks on the calling thread: their files are renamed
// aside at once (names no later segment takes) and removed through the ring, so the segments
// the log rolls to after the cut, at the same base offsets, are new files.
TEST_P(LogPartition, ACutIntoAnEarlierSegmentRemovesTheLaterOnesThroughTheRing) {
  config_.segment_bytes = 9 << 20;  // past the removal's step (8 MiB): removed after a delay
  config_.retention_bytes = -1;     // nothing to delete by size or time
  config_.retention_ms = -1;
  auto log = open_log();
  while (log->segment_count() < 3) append(*log, 16, 4000);
  ring_.drain();
  const auto bases = log->segment_base_offsets();
  const std::string big = segment_path(dir_.path(), bases[1], ".log").string();
  const uint64_t big_size = std::filesystem::file_size(big);
  ASSERT_GT(big_size, 8u << 20);
  const int64_t cut = bases[0] + 3 * 16;  // the fourth batch's first offset
  ASSERT_EQ(**log->truncate_suffix(Offset(cut)), cut);
  auto aside = [&] {
    std::set<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      const std::string name = entry.path().filename().string();
      if (name.ends_with(".deleted")) found.insert(name);
    }
    return found;
  };
  // The later segments' files are gone under their names at once.
  for (size_t i = 1; i < bases.size(); ++i) {
    for (const char* suffix : {".log", ".index", ".timeindex"}) {
      EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), bases[i], suffix)))
          << bases[i] << suffix;
    }
  }
  EXPECT_EQ(log->segment_base_offsets(), std::vector<int64_t>{bases[0]});
  // The large .log is set aside whole (its blocks not freed by the cut); the small files go
  // through the ring.
  ring_.drain();
  const auto left = aside();
  ASSERT_EQ(left.size(), 1u) << "the later segments' files were removed at once";
  const auto big_aside = dir_.path() / *left.begin();
  EXPECT_TRUE(left.begin()->starts_with(std::filesystem::path(big).filename().string()));
  EXPECT_EQ(std::filesystem::file_size(big_aside), big_size);
  // Appended again past the cut: it rolls at offsets the removed segments had, into new files.
  std::vector<std::byte> expected = read_all(*log, 0);
  while (log->segment_count() < 2) {
    append(*log, 16, 4000);
    expected.insert(expected.end(), batches_.back().begin(), batches_.back().end());
  }
  ring_.drain();
  EXPECT_EQ(read_all(*log, 0), expected);
  // Removed after the delay (12 retention passes), through the ring.
  for (int pass = 0; pass < 12; ++pass) ASSERT_TRUE(log->apply_retention());
  ring_.drain();
  EXPECT_TRUE(aside().empty());
  // A crash before the removal: the log opens without the aside file.
  while (log->segment_count() < 3) append(*log, 16, 4000);
  ring_.drain();
  ASSERT_TRUE(log->truncate_suffix(Offset(cut)));
  ring_.drain();
  log.reset();
  EXPECT_FALSE(aside().empty());
  log = open_log();
  EXPECT_TRUE(aside().empty());
  for (const auto& issue : log->recovery_report().issues) ADD_FAILURE() << issue.detail;
  EXPECT_EQ(*log->log_end_offset(), cut);
}

// A follower's cut of an uncommitted suffix goes through the ring: the log's state is cut at
// once, appends wait, and the files, indexes, partition.meta and timestamp lookups end up as
// the blocking cut leaves them, before and after a reopen. Batches appended after a reopen
// (whose index counts start from the files) are cut the same way.
TEST_P(LogPartition, TruncateSuffixAsyncCutsLikeTheBlockingCut) {
  config_.index_interval_bytes = 300;  // some batches indexed, some not
  testing::TempDir other;
  auto twin = [&] {
    auto log = PartitionLog::open(other.path(), config_, ring_, fds_);
    EXPECT_TRUE(log) << (log ? "" : log.error().message);
    return log ? std::move(*log) : nullptr;
  };
  auto blocking = open_log();
  auto async = twin();
  ASSERT_TRUE(blocking && async);
  int next_batch = 0;
  // The same batch appended to both; timestamps out of order, so that the segment's maximum
  // after a cut is not the last batch's.
  auto append_both = [&](int count) {
    for (int i = 0; i < count; ++i, ++next_batch) {
      const int64_t ts = 1000 + (next_batch * 7919) % 5000;
      auto batch = make_batch(1 + next_batch % 3, 40 + (next_batch * 53) % 400, ts, next_batch);
      batches_.push_back(batch);
      ASSERT_TRUE(append_and_wait(*blocking, ring_, batches_.back()));
      batches_.push_back(batch);
      ASSERT_TRUE(append_and_wait(*async, ring_, batches_.back()));
    }
  };
  auto file = [](const std::filesystem::path& path, uint64_t max) {
    std::vector<std::byte> bytes(std::min<uint64_t>(std::filesystem::file_size(path), max));
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return bytes;
  };
  auto same = [&](const char* when) {
    SCOPED_TRACE(when);
    ASSERT_EQ(*blocking->log_end_offset(), *async->log_end_offset());
    EXPECT_EQ(read_all(*blocking, 0), read_all(*async, 0));
    const auto size = std::filesystem::file_size(segment_path(dir_.path(), 0, ".log"));
    EXPECT_EQ(file(segment_path(dir_.path(), 0, ".log"), size),
              file(segment_path(other.path(), 0, ".log"), size));
    for (const char* suffix : {".index", ".timeindex"}) {
      EXPECT_EQ(file(segment_path(dir_.path(), 0, suffix), UINT64_MAX),
                file(segment_path(other.path(), 0, suffix), UINT64_MAX))
          << suffix;
    }
    EXPECT_EQ(file(dir_.path() / "partition.meta", UINT64_MAX),
              file(other.path() / "partition.meta", UINT64_MAX));
    for (int64_t t = 900; t <= 6100; t += 37) {
      auto a = blocking->offset_for_timestamp(t);
      auto b = async->offset_for_timestamp(t);
      ASSERT_TRUE(a && b);
      EXPECT_EQ(*a, *b) << "timestamp " << t;
    }
  };
  auto cut_both = [&](int64_t offset) {
    auto a = blocking->truncate_suffix(Offset(offset));
    ASSERT_TRUE(a) << a.error().message;
    std::optional<LogResult<Offset>> done;
    auto b = async->truncate_suffix_async(Offset(offset),
                                          [&](const LogResult<Offset>& r) { done = r; });
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_EQ(*b, *a);
    // Cut in memory at once; the files are the ring's until its completions run.
    EXPECT_FALSE(done.has_value());
    EXPECT_FALSE(async->idle());
    EXPECT_EQ(*async->log_end_offset(), **a);
    EXPECT_EQ(async->read(Offset(**a + 1), 100).error().code, LogErrc::kOffsetOutOfRange);
    auto waiting = make_batch(1, 10, 1000);
    EXPECT_EQ(async->append(waiting, {}, {}).error().code, LogErrc::kBusy);
    EXPECT_EQ(async->truncate_suffix_async(Offset(0), {}).error().code, LogErrc::kBusy);
    ring_.drain();
    ASSERT_TRUE(done.has_value());
    ASSERT_TRUE(*done) << done->error().message;
    EXPECT_EQ(**done, *a);
    EXPECT_TRUE(async->idle());
  };

  append_both(40);
  cut_both(*async->log_end_offset() - 20);  // inside a batch, several batches back
  same("after the first cut");
  append_both(15);
  same("appended after the cut");
  blocking.reset();  // unclean: recovery scans from the lowered recovery point
  async.reset();
  blocking = open_log();
  async = twin();
  ASSERT_TRUE(blocking && async);
  EXPECT_TRUE(async->recovery_report().issues.empty());
  same("reopened");
  append_both(12);
  cut_both(*async->log_end_offset() - 9);  // only batches appended since the reopen
  same("cut after the reopen");
  ASSERT_TRUE(blocking->close());
  ASSERT_TRUE(async->close());
  blocking = open_log();
  async = twin();
  same("closed and reopened");
}

// Cuts outside the active segment's window are the blocking cut's, but for the .log file's
// ftruncate (it frees what it cuts off, up to a segment): that goes through the ring, appends
// answer kBusy until it completed, and then `done` runs.
TEST_P(LogPartition, TruncateSuffixAsyncIntoAnEarlierSegmentCutsTheLogFileThroughTheRing) {
  std::vector<int64_t> segments;
  auto log = open_small_segments(segments);
  ASSERT_GT(segments.size(), 3u);
  const int64_t cut = segments[1] + 2;
  std::vector<std::byte> kept;  // the batches below the cut (two records each)
  for (int64_t i = 0; i < cut / 2; ++i) {
    kept.insert(kept.end(), batches_[i].begin(), batches_[i].end());
  }
  std::optional<LogResult<Offset>> done;
  auto r = log->truncate_suffix_async(Offset(cut), [&](const LogResult<Offset>& d) { done = d; });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(**r, cut);
  // The log's state is cut at once.
  EXPECT_EQ(*log->log_end_offset(), cut);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{segments[0], segments[1]}));
  if (ring_.uses_io_uring()) {
    EXPECT_FALSE(done.has_value()) << "the .log file was cut on the calling thread";
    auto batch = make_batch(2, 200, 1000);
    auto busy = log->append(batch, {}, {});
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, LogErrc::kBusy);
  }
  ring_.drain();
  ASSERT_TRUE(done.has_value() && *done);
  EXPECT_EQ(***done, cut);
  EXPECT_EQ(append(*log, 2, 200), cut);
  ring_.drain();
  auto expected = kept;
  expected.insert(expected.end(), batches_.back().begin(), batches_.back().end());
  EXPECT_EQ(read_all(*log, 0), expected);
  expect_reopened(log, expected);
}

TEST_P(LogPartition, TruncateSuffixToTheStartEmptiesTheLog) {
  auto log = open_log();
  append(*log, 3);
  append(*log, 3);
  ASSERT_TRUE(log->truncate_suffix(Offset(0)));
  EXPECT_EQ(*log->log_end_offset(), 0);
  EXPECT_TRUE(log->read(Offset(0), 100)->ranges.empty());
  EXPECT_EQ(append(*log, 1), 0);
}

TEST_P(LogPartition, AdvanceLogStartDeletesWholeSegmentsAndKeepsTheLogicalStart) {
  config_.segment_bytes = 2048;
  auto log = open_log();
  for (int i = 0; i < 30; ++i) append(*log, 2, 200);
  const auto segments = log->segment_base_offsets();
  const int64_t start = segments[2] + 1;  // inside the third segment
  ASSERT_TRUE(log->advance_log_start(Offset(start)));
  EXPECT_EQ(*log->log_start_offset(), start);
  EXPECT_EQ(log->segment_base_offsets().front(), segments[2]);
  ring_.drain();  // the files go through the ring
  EXPECT_TRUE(log->idle());
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), segments[0], ".log")));
  EXPECT_EQ(log->read(Offset(start - 1), 100).error().code, LogErrc::kOffsetOutOfRange);
  EXPECT_EQ(bases(read_all(*log, start)).front(), start - 1);  // the batch containing it
  ASSERT_TRUE(log->close());
  log.reset();
  log = open_log();
  EXPECT_EQ(*log->log_start_offset(), start);
}

TEST_P(LogPartition, AdvanceLogStartPastTheEndRestartsTheLog) {
  auto log = open_log();
  append(*log, 3);
  ASSERT_TRUE(log->advance_log_start(Offset(1000)));
  EXPECT_EQ(*log->log_start_offset(), 1000);
  EXPECT_EQ(*log->log_end_offset(), 1000);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{1000}));
  EXPECT_EQ(append(*log, 2), 1000);
  log.reset();
  log = open_log();
  EXPECT_EQ(*log->log_start_offset(), 1000);
  EXPECT_EQ(*log->log_end_offset(), 1002);
}

TEST_P(LogPartition, RetentionBySize) {
  config_.segment_bytes = 2048;
  config_.retention_bytes = 5000;
  auto log = open_log();
  for (int i = 0; i < 40; ++i) append(*log, 2, 200);
  const uint64_t before = log->segment_count();
  auto r = log->apply_retention();
  ASSERT_TRUE(r);
  EXPECT_GT(r->segments_deleted, 0u);
  EXPECT_EQ(log->segment_count(), before - r->segments_deleted);
  // The files are removed through the ring (removing a large file blocks in the call).
  ring_.drain();
  EXPECT_TRUE(log->idle());
  size_t files_on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    const auto ext = entry.path().extension();
    files_on_disk += ext == ".log" || ext == ".index" || ext == ".timeindex";
  }
  EXPECT_EQ(files_on_disk, 3 * log->segment_count());
  EXPECT_GE(log->size_bytes(), 5000u);  // never below the limit
  EXPECT_LT(log->size_bytes(), 5000u + 2048u + 1000u);
  EXPECT_EQ(*log->log_start_offset(), log->segment_base_offsets().front());
  EXPECT_EQ(bases(read_all(*log, *log->log_start_offset())).back(), 78);
  EXPECT_EQ(log->apply_retention()->segments_deleted, 0u);  // idempotent
}

// A segment larger than a removal step leaves the log at once, but its .log file is cut (a
// step at a time, then unlinked, all through the ring) only a delay later: a range read before
// stays whole meanwhile. Retention passes start the removals that are due.
TEST_P(LogPartition, RetentionRemovesALargeSegmentInStepsAfterADelay) {
  config_.segment_bytes = 20ull << 20;
  config_.retention_bytes = 1;
  config_.flush.mode = FlushMode::kNever;
  auto log = open_log();
  for (int i = 0; i < 22; ++i) {  // 1 MiB batches: a 20 MiB segment, then the next
    batches_.push_back(make_batch(1, 1 << 20, 1000, batches_.size()));
    ASSERT_TRUE(log->append(batches_.back(), {}, {}));
  }
  std::optional<LogResult<Offset>> durable;
  log->flush([&](const LogResult<Offset>& r) { durable = r; });
  ring_.drain();
  ASSERT_TRUE(durable && *durable);
  const auto segments = log->segment_base_offsets();
  ASSERT_EQ(segments.size(), 2u);
  const auto first = segment_path(dir_.path(), segments[0], ".log");
  const auto size = std::filesystem::file_size(first);
  ASSERT_GT(size, 16u << 20);
  auto range = log->read(Offset(0), 64u << 20);  // e.g. a Fetch being sent
  ASSERT_TRUE(range && !range->ranges.empty());
  auto r = log->apply_retention();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->segments_deleted, 1u);
  ring_.drain();
  EXPECT_EQ(*log->log_start_offset(), segments[1]);
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), segments[0], ".index")));
  EXPECT_EQ(std::filesystem::file_size(first), size);  // waits for the delay
  struct stat st {};
  ASSERT_EQ(::fstat(range->ranges.front().fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
  now_ms_ += 3'600'000;  // the wall clock leaps: no matter, the delay counts passes
  for (int pass = 1; pass < 12; ++pass) {
    ASSERT_TRUE(log->apply_retention());
    EXPECT_TRUE(log->idle()) << "pass " << pass;
  }
  EXPECT_EQ(std::filesystem::file_size(first), size);
  ASSERT_TRUE(log->apply_retention());  // the 12th pass since
  EXPECT_FALSE(log->idle());
  ring_.drain();
  EXPECT_TRUE(log->idle());
  EXPECT_FALSE(std::filesystem::exists(first));
}

// A crash while a removal waits for its delay leaves the segment's .log behind; the log found
// at the next open takes it back (below the log start, never served) and the first retention
// pass removes it, whatever the retention settings.
TEST_P(LogPartition, ASegmentLeftBelowTheLogStartByACrashGoesAtTheNextPass) {
  config_.segment_bytes = 20ull << 20;
  config_.retention_bytes = 1;
  auto log = open_log();
  for (int i = 0; i < 22; ++i) append(*log, 1, 1 << 20);  // a 20 MiB segment, then the next
  const auto segments = log->segment_base_offsets();
  ASSERT_EQ(segments.size(), 2u);
  ASSERT_EQ(log->apply_retention()->segments_deleted, 1u);
  ring_.drain();
  const auto left = segment_path(dir_.path(), segments[0], ".log");
  ASSERT_TRUE(std::filesystem::exists(left));  // its removal waits
  log.reset();  // the crash: no close()
  config_.retention_bytes = -1;  // nothing to delete by size or time
  log = open_log();
  ASSERT_TRUE(log);
  EXPECT_EQ(log->segment_count(), 2u);
  EXPECT_EQ(*log->log_start_offset(), segments[1]);
  EXPECT_EQ(log->read(Offset(0), 100).error().code, LogErrc::kOffsetOutOfRange);
  auto r = log->apply_retention();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->segments_deleted, 1u);
  EXPECT_EQ(log->segment_base_offsets(), std::vector<int64_t>{segments[1]});
  EXPECT_EQ(*log->log_start_offset(), segments[1]);
  ring_.drain();
}

TEST_P(LogPartition, RetentionByTime) {
  config_.segment_bytes = 2048;
  config_.retention_ms = 10'000;
  auto log = open_log();
  for (int i = 0; i < 10; ++i) append(*log, 2, 200, now_ms_ - 60'000);  // old
  const auto old_segments = log->segment_base_offsets().size();
  for (int i = 0; i < 10; ++i) append(*log, 2, 200, now_ms_);  // fresh
  auto r = log->apply_retention();
  ASSERT_TRUE(r);
  EXPECT_GE(r->segments_deleted, old_segments - 1);
  EXPECT_LE(*log->log_start_offset(), 20);  // nothing fresh went
  EXPECT_TRUE(log->read(Offset(20), 100));
  ring_.drain();  // the removals, through the ring, before the log goes
}

TEST_P(LogPartition, FdCacheEvictionKeepsReadsWorking) {
  FdCache small(2);
  config_.segment_bytes = 2048;
  auto opened = PartitionLog::open(dir_.path(), config_, ring_, small);
  ASSERT_TRUE(opened);
  auto& log = **opened;
  std::vector<std::byte> expected;
  for (int i = 0; i < 30; ++i) {
    append(log, 2, 200);
    expected.insert(expected.end(), batches_.back().begin(), batches_.back().end());
  }
  ASSERT_GT(log.segment_count(), 4u);
  auto ranges = log.read(Offset(0), 1 << 20);
  ASSERT_TRUE(ranges);
  EXPECT_GT(small.evictions(), 0u);
  EXPECT_LE(small.size(), 2u);
  // Every range is still readable through its own handle, even after its segment goes.
  ASSERT_TRUE(log.advance_log_start(log.log_end_offset()));
  std::vector<std::byte> got;
  for (const FileRange& range : ranges->ranges) {
    std::vector<std::byte> part(range.length);
    ASSERT_TRUE(detail::pread_full(range.fd(), part, range.position));
    got.insert(got.end(), part.begin(), part.end());
  }
  EXPECT_EQ(got, expected);
  ring_.drain();  // the removals, through the ring, before the log goes
}

TEST_P(LogPartition, FlushPolicyNeverAcknowledgesOnWriteAndFlushesOnRequest) {
  config_.flush.mode = FlushMode::kNever;
  auto log = open_log();
  append(*log, 3);
  EXPECT_EQ(*log->written_offset(), 3);
  EXPECT_EQ(*log->durable_offset(), 0);
  EXPECT_EQ(log->flush_count(), 0u);
  bool durable = false;
  log->when_durable(Offset(3), [&](const LogResult<Offset>& r) {
    ASSERT_TRUE(r);
    EXPECT_GE(**r, 3);
    durable = true;
  });
  while (!durable) ring_.wait();
  EXPECT_EQ(*log->durable_offset(), 3);
}

TEST_P(LogPartition, FlushPolicyIntervalFlushesFromTick) {
  config_.flush = {.mode = FlushMode::kInterval, .interval_ms = 500};
  auto log = open_log();
  append(*log, 3);
  log->tick();
  ring_.drain();
  EXPECT_EQ(*log->durable_offset(), 0);  // too early
  now_ms_ += 500;
  log->tick();
  ring_.drain();
  EXPECT_EQ(*log->durable_offset(), 3);
}

// An append made while the log is durable up to its end sends its writes and their fdatasync
// together (linked): one flush for the whole append however many parts it has, and nothing
// acknowledged before it is on disk. Without the link the first part's completion starts a
// flush that covers only that part, and the others need a second one.
TEST_P(LogPartition, AnAppendOnADurableLogSyncsOnceAfterAllItsParts) {
  auto log = open_log();
  for (int round = 0; round < 3; ++round) {
    std::vector<MutableBytes> parts;
    for (int i = 0; i < 4; ++i) {
      batches_.push_back(make_batch(3, 200, 1000));
      parts.emplace_back(batches_.back());
    }
    const uint64_t flushes = log->flush_count();
    bool acked = false;
    ASSERT_TRUE(log->append(parts, {}, [&](const LogResult<AppendResult>& r) {
      ASSERT_TRUE(r);
      EXPECT_GE(*log->durable_offset(), *r->end_offset);
      acked = true;
    }));
    EXPECT_FALSE(acked);
    ring_.drain();
    EXPECT_TRUE(acked);
    EXPECT_EQ(log->flush_count(), flushes + 1) << "round " << round;
    EXPECT_EQ(*log->durable_offset(), 12 * (round + 1));
  }
  EXPECT_EQ(*log->log_end_offset(), 36);
}

TEST_P(LogPartition, GroupCommitSharesFdatasyncsAcrossAppends) {
  auto log = open_log();
  constexpr int kAppends = 64;
  int acknowledged = 0;
  int64_t last_acked = -1;
  for (int i = 0; i < kAppends; ++i) append_checked(*log, acknowledged, last_acked);
  ring_.drain();
  EXPECT_EQ(acknowledged, kAppends);
  EXPECT_LT(log->flush_count(), static_cast<uint64_t>(kAppends));
  EXPECT_EQ(*log->durable_offset(), kAppends);
}

// LogConfig::flush_rounds_max: appends that complete while a round runs start the next one
// beside it; rounds still count in order, and nothing is acknowledged before it is durable.
TEST_P(LogPartition, FlushRoundsRunSideBySideAndCountInOrder) {
  config_.flush_rounds_max = 4;
  auto log = open_log();
  constexpr int kAppends = 64;
  int acknowledged = 0;
  int64_t last_acked = -1;
  size_t most_in_flight = 0;
  for (int i = 0; i < kAppends; ++i) {
    append_checked(*log, acknowledged, last_acked);
    ring_.submit();
    // Until this append is written: its completion starts a round beside the one running
    // (an fdatasync takes far longer than a write into the page cache).
    for (int spin = 0; spin < 100000 && *log->written_offset() < i + 1; ++spin) {
      ring_.poll_completions();
      most_in_flight = std::max(most_in_flight, log->flushes_in_flight());
    }
    most_in_flight = std::max(most_in_flight, log->flushes_in_flight());
    EXPECT_LE(log->flushes_in_flight(), 4u);
  }
  ring_.drain();
  EXPECT_EQ(acknowledged, kAppends);
  EXPECT_EQ(*log->durable_offset(), kAppends);
  EXPECT_EQ(log->flushes_in_flight(), 0u);
  EXPECT_GE(most_in_flight, 2u);  // one round at a time would never get here
  // Everything is on disk: reopened, the log holds every batch.
  ASSERT_TRUE(log->close());
  log.reset();
  auto again = open_log();
  EXPECT_EQ(*again->log_end_offset(), kAppends);
}

TEST_P(LogPartition, TooManyAppendsInFlightPushBack) {
  config_.inflight_appends_max = 2;
  auto log = open_log();
  for (int i = 0; i < 3; ++i) batches_.push_back(make_batch(1, 10, 1));
  ASSERT_TRUE(log->append(batches_[0], {}, {}));
  ASSERT_TRUE(log->append(batches_[1], {}, {}));
  EXPECT_EQ(log->append(batches_[2], {}, {}).error().code, LogErrc::kBusy);
  ring_.drain();
  EXPECT_TRUE(log->append(batches_[2], {}, {}));
  ring_.drain();
}

// when_appendable(): a caller whose append answered kBusy is told when to try again (a Raft
// replica retried on a 2 ms timer before): not while what it waits for is in flight, once when
// it completed, and at once when nothing is in flight.
TEST_P(LogPartition, WhenAppendableWakesOnceTheAppendsInFlightLeaveRoom) {
  config_.inflight_appends_max = 2;
  auto log = open_log();
  for (int i = 0; i < 3; ++i) batches_.push_back(make_batch(1, 10, 1));
  ASSERT_TRUE(log->append(batches_[0], {}, {}));
  ASSERT_TRUE(log->append(batches_[1], {}, {}));
  ASSERT_EQ(log->append(batches_[2], {}, {}).error().code, LogErrc::kBusy);
  int woken = 0;
  log->when_appendable([&] { ++woken; });
  EXPECT_EQ(woken, 0);
  ring_.drain();
  EXPECT_EQ(woken, 1);
  EXPECT_TRUE(log->append(batches_[2], {}, {}));
  ring_.drain();
  EXPECT_EQ(woken, 1);  // once
  log->when_appendable([&] { ++woken; });
  EXPECT_EQ(woken, 2);  // nothing in flight: at once
}

TEST_P(LogPartition, WhenAppendableWakesOnceARollsFilesAreOpen) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  const AppendOptions async{.roll_async = true};
  int woken = 0;
  int busy = 0;
  for (int i = 0; i < 20; ++i) {
    batches_.push_back(make_batch(3, 300, 1000, i));
    ring_.drain();  // the previous appends are written: only the opens are in flight below
    auto r = log->append(batches_.back(), async, {});
    if (r) continue;
    ASSERT_EQ(r.error().code, LogErrc::kBusy) << r.error().message;
    ++busy;
    const int before = woken;
    log->when_appendable([&] { ++woken; });
    EXPECT_EQ(woken, before) << "woken while the next segment's files were opening";
    ring_.drain();
    EXPECT_EQ(woken, before + 1);
    auto again = log->append(batches_.back(), async, {});
    ASSERT_TRUE(again) << again.error().message;
  }
  ring_.drain();
  EXPECT_GT(busy, 3);
  std::vector<std::byte> expected = appended();
  EXPECT_EQ(read_all(*log, 0), expected);
}

TEST_P(LogPartition, WhenAppendableWakesOnceACutCompleted) {
  std::vector<int64_t> segments;
  auto log = open_small_segments(segments);
  ASSERT_GT(segments.size(), 3u);
  if (!ring_.uses_io_uring()) GTEST_SKIP() << "the fallback cuts before the call returns";
  bool cut = false;
  ASSERT_TRUE(log->truncate_suffix_async(Offset(segments[1] + 2),
                                         [&](const LogResult<Offset>& r) { cut = r.has_value(); }));
  auto batch = make_batch(2, 200, 1000);
  ASSERT_EQ(log->append(batch, {}, {}).error().code, LogErrc::kBusy);
  int woken = 0;
  log->when_appendable([&] {
    ++woken;
    EXPECT_TRUE(cut) << "woken before the cut completed";
  });
  EXPECT_EQ(woken, 0);
  ring_.drain();
  EXPECT_EQ(woken, 1);
  EXPECT_TRUE(log->append(batch, {}, {}));
  ring_.drain();
}

// when_idle(): once the last ring operation of the log completed (a Raft replica's cut waits
// for it), at once when none is in flight.
TEST_P(LogPartition, WhenIdleWakesOnceTheLastOperationCompleted) {
  auto log = open_log();
  int woken = 0;
  log->when_idle([&] { ++woken; });
  EXPECT_EQ(woken, 1);
  for (int i = 0; i < 4; ++i) {
    batches_.push_back(make_batch(2, 100, 1000 + i, i));
    ASSERT_TRUE(log->append(batches_.back(), {}, {}));
  }
  ASSERT_FALSE(log->idle());
  log->when_idle([&] {
    ++woken;
    EXPECT_TRUE(log->idle());
  });
  EXPECT_EQ(woken, 1);
  ring_.drain();
  EXPECT_EQ(woken, 2);
  EXPECT_TRUE(log->idle());
}

TEST_P(LogPartition, CleanCloseAndReopen) {
  config_.segment_bytes = 2048;
  auto log = open_log();
  for (int i = 0; i < 12; ++i) append(*log, 2, 200, 1000 + i);
  const auto expected = read_all(*log, 0);
  const auto segments = log->segment_base_offsets();
  ASSERT_TRUE(log->close());
  EXPECT_FALSE(log->append(batches_.back(), {}, {}));  // closed
  log.reset();
  EXPECT_EQ(
      std::filesystem::file_size(segment_path(dir_.path(), segments.back(), ".log")),
      expected.size() - [&] {
        uint64_t before = 0;
        for (size_t i = 0; i + 1 < segments.size(); ++i) {
          before += std::filesystem::file_size(segment_path(dir_.path(), segments[i], ".log"));
        }
        return before;
      }());
  log = open_log();
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  EXPECT_EQ(log->recovery_report().segments_scanned, 0u);
  EXPECT_TRUE(log->recovery_report().issues.empty());
  EXPECT_EQ(read_all(*log, 0), expected);
  EXPECT_EQ(***log->offset_for_timestamp(1011), 21);  // batch 10: 1010 at 20, 1011 at 21
  EXPECT_EQ(append(*log, 2, 200), 24);
}

// Issue #22 ("Also seen"): an empty log closed cleanly and reopened, then appended to and
// closed cleanly again, must reopen without rebuilding an index (the first batch of the
// reopened empty segment needs its index entry).
TEST_P(LogPartition, EmptySegmentReopenedIndexesItsFirstBatch) {
  auto log = open_log();
  ASSERT_TRUE(log->close());
  log = open_log();
  EXPECT_TRUE(log->recovery_report().issues.empty());
  for (int i = 0; i < 3; ++i) append(*log, 2, 50, 1000 + i);
  const auto expected = read_all(*log, 0);
  ASSERT_TRUE(log->close());
  log = open_log();
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  EXPECT_EQ(log->recovery_report().segments_scanned, 0u);
  for (const auto& issue : log->recovery_report().issues) ADD_FAILURE() << issue.detail;
  EXPECT_EQ(read_all(*log, 0), expected);
  EXPECT_EQ(***log->offset_for_timestamp(1002), 3);  // batch 1: 1001 at 2, 1002 at 3
}

// A batch whose header claims `count` records (offsets), whatever it holds: the log trusts
// the header (the broker validates records before appending).
std::vector<std::byte> claiming(std::vector<std::byte> batch, int32_t count) {
  store_be<int32_t>(batch.data() + kafka::batch_layout::kRecordCount, count);
  store_be<int32_t>(batch.data() + kafka::batch_layout::kLastOffsetDelta, count - 1);
  kafka::update_crc(batch);
  return batch;
}

// Segments span at most kSegmentOffsetSpanMax offsets including their end (issue 16: a batch
// of INT32_MAX offsets, then two more, aborted in seal(), and again after every restart).
TEST_P(LogPartition, BatchesOfHugeOffsetSpansRollAndSurviveReopen) {
  auto log = open_log();
  batches_.push_back(claiming(make_batch(1, 10, 1000), INT32_MAX));
  ASSERT_TRUE(append_and_wait(*log, ring_, batches_.back()));
  EXPECT_EQ(append(*log, 1, 10), int64_t{INT32_MAX});
  EXPECT_EQ(append(*log, 1, 10), int64_t{INT32_MAX} + 1);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, INT32_MAX}));
  ASSERT_TRUE(log->close());
  log = open_log();
  ASSERT_TRUE(log);
  EXPECT_EQ(append(*log, 1, 10), int64_t{INT32_MAX} + 2);
  EXPECT_EQ(bases(read_all(*log, 0)),
            (std::vector<int64_t>{0, INT32_MAX, int64_t{INT32_MAX} + 1, int64_t{INT32_MAX} + 2}));
}

// A segment written before that rule ends one past the span; rolling it must still work.
TEST_P(LogPartition, ASegmentEndingOnePastTheSpanStillRolls) {
  {
    std::vector<std::byte> bytes = claiming(make_batch(1, 10, 1000), INT32_MAX);
    std::vector<std::byte> second = make_batch(1, 10, 1000);
    kafka::set_base_offset(second, INT32_MAX);
    bytes.insert(bytes.end(), second.begin(), second.end());
    const auto path = segment_path(dir_.path(), 0, ".log");
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  auto log = open_log();
  ASSERT_TRUE(log);
  EXPECT_EQ(*log->log_end_offset(), int64_t{INT32_MAX} + 1);
  EXPECT_EQ(append(*log, 1, 10), int64_t{INT32_MAX} + 1);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, int64_t{INT32_MAX} + 1}));
  ASSERT_TRUE(log->close());
  log = open_log();
  ASSERT_TRUE(log);
  EXPECT_EQ(append(*log, 1, 10), int64_t{INT32_MAX} + 2);
}

// A write that fails (here: past RLIMIT_FSIZE, EFBIG) stops the partition: the append's
// callback gets the error, and so does every later call, since what is on disk is unknown.
TEST_P(LogPartition, FailedWriteStopsThePartition) {
  config_.preallocate = false;
  auto log = open_log();
  append(*log, 1, 100);
  rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  batches_.push_back(make_batch(10, 1000, 1000));
  auto r = append_and_wait(*log, ring_, batches_.back());
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(r);
  EXPECT_TRUE(log->failed());
  EXPECT_NE(r.error().message.find("write"), std::string::npos) << r.error().message;
  batches_.push_back(make_batch(1, 10, 1000));
  EXPECT_FALSE(log->append(batches_.back(), {}, {}));
  bool called = false;
  log->when_durable(Offset(1), [&](const LogResult<Offset>& d) {
    called = true;
    EXPECT_TRUE(d);  // offset 1 was durable before the failure
  });
  EXPECT_TRUE(called);
  EXPECT_TRUE(log->read_copy(Offset(0), 1 << 20));  // what was written stays readable
  ring_.drain();  // the failed batch's index entries may still be in the ring (pwrite threads)
}

// A shard: many partitions share one ring and one small descriptor cache, with appends of
// all of them in flight at once.
TEST_P(LogPartition, ManyPartitionsShareOneRingAndCache) {
  constexpr int kPartitions = 40;
  FdCache shared(8);
  config_.segment_bytes = 2048;
  config_.preallocate = false;
  std::vector<std::unique_ptr<PartitionLog>> logs;
  for (int p = 0; p < kPartitions; ++p) {
    auto log = PartitionLog::open(dir_.path() / ("t-" + std::to_string(p)), config_, ring_, shared);
    ASSERT_TRUE(log);
    logs.push_back(std::move(*log));
  }
  std::vector<int> acked(kPartitions, 0);
  for (int round = 0; round < 8; ++round) {
    for (int p = 0; p < kPartitions; ++p) {
      batches_.push_back(make_batch(1 + p % 3, 300, 1000 + round, p));
      ASSERT_TRUE(logs[p]->append(batches_.back(), {}, [&acked, p](const auto& r) {
        ASSERT_TRUE(r);
        ++acked[p];
      }));
    }
  }
  ring_.drain();
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(acked[p], 8);
    EXPECT_EQ(*logs[p]->log_end_offset(), 8 * (1 + p % 3));
    EXPECT_GT(logs[p]->segment_count(), 1u);
    auto all = logs[p]->read_copy(Offset(0), 1 << 20);  // CRCs checked
    ASSERT_TRUE(all);
    EXPECT_EQ(bases(*all).size(), 8u);
  }
  EXPECT_LE(shared.size(), 8u);
  EXPECT_GT(shared.evictions(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Log, LogPartition, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Fallback" : "IoUring"; });

}  // namespace
}  // namespace sluice::log
