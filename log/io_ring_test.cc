// The shard's I/O ring, on io_uring and on the fallback threads.
#include "log/io_ring.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

class LogIoRingTest : public ::testing::TestWithParam<bool> {
 protected:
  IoRing::Options options() const { return {.disable_io_uring = GetParam()}; }
  // A descriptor every write through fails on (EBADF).
  int open_read_only(const char* name) const {
    const auto path = dir_.path() / name;
    ::close(::open(path.c_str(), O_RDWR | O_CREAT, 0644));
    return ::open(path.c_str(), O_RDONLY);
  }
  testing::TempDir dir_;
};

TEST_P(LogIoRingTest, UsesTheRequestedBackend) {
  IoRing ring(options());
  EXPECT_EQ(ring.uses_io_uring(), !GetParam());
}

TEST_P(LogIoRingTest, WritesFromTheCallersBufferThenSyncs) {
  IoRing ring(options());
  const auto path = dir_.path() / "f";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  std::vector<std::byte> a(100000, std::byte{'a'});
  std::vector<std::byte> b(5000, std::byte{'b'});
  std::vector<int32_t> results;
  ring.write(fd, a, 0, [&](int32_t r) { results.push_back(r); });
  ring.write(fd, b, a.size(), [&](int32_t r) { results.push_back(r); });
  EXPECT_EQ(ring.in_flight(), 2u);
  ring.submit();
  ring.drain();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0] + results[1], static_cast<int32_t>(a.size() + b.size()));
  ring.fdatasync(fd, [&](int32_t r) { results.push_back(r); });
  ring.submit();
  ring.drain();
  EXPECT_EQ(results.back(), 0);
  EXPECT_EQ(std::filesystem::file_size(path), a.size() + b.size());
  std::byte last;
  ASSERT_EQ(::pread(fd, &last, 1, static_cast<off_t>(a.size() + b.size() - 1)), 1);
  EXPECT_EQ(last, std::byte{'b'});
  ::close(fd);
}

TEST_P(LogIoRingTest, FallocateReservesTheFile) {
  IoRing ring(options());
  const auto path = dir_.path() / "f";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  int32_t result = 1;
  ring.fallocate(fd, 1 << 20, [&](int32_t r) { result = r; });
  ring.submit();
  ring.drain();
  EXPECT_EQ(result, 0);
  EXPECT_EQ(std::filesystem::file_size(path), 1u << 20);
  ::close(fd);
  ring.fallocate(fd, 1 << 20, [&](int32_t r) { result = r; });  // a closed descriptor
  ring.submit();
  ring.drain();
  EXPECT_EQ(result, -EBADF);
}

TEST_P(LogIoRingTest, OpenCreatesAndTruncatesAndFtruncateCuts) {
  IoRing ring(options());
  const auto path = dir_.path() / "opened";
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_EQ(::pwrite(fd, "old bytes", 9, 0), 9);
    ::close(fd);
  }
  int32_t opened = -1;
  ring.open(path.string(), O_RDWR | O_CREAT | O_TRUNC, 0644, [&](int32_t r) { opened = r; });
  ring.submit();
  ring.drain();
  ASSERT_GE(opened, 0) << std::strerror(-opened);
  EXPECT_EQ(std::filesystem::file_size(path), 0u);  // O_TRUNC
  EXPECT_EQ(::fcntl(opened, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(::fallocate(opened, 0, 0, 1 << 20), 0);
  int32_t cut = 1;
  ring.ftruncate(opened, 4096, [&](int32_t r) { cut = r; });
  ring.submit();
  ring.drain();
  EXPECT_EQ(cut, 0);
  EXPECT_EQ(std::filesystem::file_size(path), 4096u);
  ::close(opened);
  int32_t missing = 0;
  ring.open((dir_.path() / "no-such-dir" / "f").string(), O_RDWR | O_CREAT, 0644,
            [&](int32_t r) { missing = r; });
  ring.submit();
  ring.drain();
  EXPECT_EQ(missing, -ENOENT);
}

TEST_P(LogIoRingTest, UnlinkRemovesAFile) {
  IoRing ring(options());
  const auto path = dir_.path() / "doomed";
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_EQ(::fallocate(fd, 0, 0, 1 << 20), 0);
    ::close(fd);
  }
  int32_t removed = 1;
  ring.unlink(path.string(), [&](int32_t r) { removed = r; });
  ring.submit();
  ring.drain();
  EXPECT_EQ(removed, 0) << std::strerror(-removed);
  EXPECT_FALSE(std::filesystem::exists(path));
  ring.unlink(path.string(), [&](int32_t r) { removed = r; });  // already gone
  ring.submit();
  ring.drain();
  EXPECT_EQ(removed, -ENOENT);
}

TEST_P(LogIoRingTest, EventFdSignalsCompletions) {
  IoRing ring(options());
  const int fd = ::open((dir_.path() / "f").c_str(), O_RDWR | O_CREAT, 0644);
  std::vector<std::byte> a(10, std::byte{1});
  bool done = false;
  ring.write(fd, a, 0, [&](int32_t) { done = true; });
  ring.submit();
  pollfd p{.fd = ring.event_fd(), .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  while (!done) ring.poll_completions();
  EXPECT_EQ(ring.poll_completions(), 0u);  // nothing left, and it does not block
  EXPECT_EQ(ring.in_flight(), 0u);
  ::close(fd);
}

// Submissions inside a Batch wait for its end (one io_uring_enter for all); completions run
// inside one, so what they queue goes out together after them. wait() still submits.
TEST_P(LogIoRingTest, ABatchHoldsSubmissionsUntilItEnds) {
  IoRing ring(options());
  const int fd = ::open((dir_.path() / "f").c_str(), O_RDWR | O_CREAT, 0644);
  std::vector<std::byte> a(10, std::byte{1});
  int done = 0;
  {
    const IoRing::Batch outer(ring);
    {
      const IoRing::Batch inner(ring);
      ring.write(fd, a, 0, [&](int32_t r) { done += r == 10; });
      ring.submit();
    }
    ring.write(fd, a, 10, [&](int32_t r) { done += r == 10; });
    ring.submit();
    pollfd p{.fd = ring.event_fd(), .events = POLLIN, .revents = 0};
    EXPECT_EQ(::poll(&p, 1, 100), 0) << "submitted before the outermost Batch ended";
    EXPECT_EQ(ring.poll_completions(), 0u);
  }
  pollfd p{.fd = ring.event_fd(), .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  while (done < 2) ring.poll_completions();
  // A completion that queues more: submitted as poll_completions() returns.
  ring.write(fd, a, 20, [&](int32_t) {
    ring.write(fd, a, 30, [&](int32_t r) { done += r == 10; });
    ring.submit();
  });
  ring.submit();
  while (done < 3) ring.poll_completions();
  {
    const IoRing::Batch batch(ring);
    ring.write(fd, a, 40, [&](int32_t r) { done += r == 10; });
    ring.submit();
    ring.drain();  // does not wait for the Batch to end
  }
  EXPECT_EQ(done, 4);
  EXPECT_EQ(ring.in_flight(), 0u);
  ::close(fd);
}

TEST_P(LogIoRingTest, ErrorsAreNegativeErrno) {
  IoRing ring(options());
  const int fd = open_read_only("ro");
  std::vector<std::byte> a(10, std::byte{1});
  int32_t result = 0;
  ring.write(fd, a, 0, [&](int32_t r) { result = r; });
  ring.drain();
  EXPECT_EQ(result, -EBADF);
  ::close(fd);
}

TEST_P(LogIoRingTest, ManyOperationsBeyondTheQueueSize) {
  IoRing::Options o = options();
  o.entries = 8;
  IoRing ring(o);
  const int fd = ::open((dir_.path() / "f").c_str(), O_RDWR | O_CREAT, 0644);
  std::vector<std::byte> block(512, std::byte{7});
  int done = 0;
  for (int i = 0; i < 200; ++i)
    ring.write(fd, block, i * 512ull, [&](int32_t r) { done += r == 512; });
  ring.drain();
  EXPECT_EQ(done, 200);
  EXPECT_EQ(std::filesystem::file_size(dir_.path() / "f"), 200u * 512);
  ::close(fd);
}

// The sync of a chain runs after every write of it, whether linked in the kernel (io_uring,
// a chain within half the ring) or queued by the last write's completion (the fallback
// threads, or a chain longer than half the ring).
TEST_P(LogIoRingTest, WriteThenFdatasyncSyncsAfterEveryWrite) {
  for (const uint32_t entries : {256u, 8u}) {
    IoRing::Options o = options();
    o.entries = entries;
    IoRing ring(o);
    const auto path = dir_.path() / ("chain" + std::to_string(entries));
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    std::vector<std::vector<std::byte>> blocks;
    std::vector<IoRing::ChainedWrite> writes;
    std::vector<std::string> events;
    for (int i = 0; i < 6; ++i) {
      blocks.emplace_back(4096 + i, static_cast<std::byte>('a' + i));
    }
    uint64_t at = 0;
    for (int i = 0; i < 6; ++i) {
      writes.push_back({blocks[i], at, [&events, i](int32_t r) {
                          events.push_back("w" + std::to_string(i) + ":" + std::to_string(r));
                        }});
      at += blocks[i].size();
    }
    ring.write_then_fdatasync(fd, std::move(writes),
                              [&](int32_t r) { events.push_back("sync:" + std::to_string(r)); });
    EXPECT_EQ(ring.in_flight(), entries == 256u && !GetParam() ? 7u : 6u);
    ring.submit();
    ring.drain();
    ASSERT_EQ(events.size(), 7u) << "entries " << entries;
    EXPECT_EQ(events.back(), "sync:0");
    std::sort(events.begin(), events.end() - 1);
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(events[i], "w" + std::to_string(i) + ":" + std::to_string(4096 + i));
    }
    EXPECT_EQ(std::filesystem::file_size(path), at);
    std::byte last;
    ASSERT_EQ(::pread(fd, &last, 1, static_cast<off_t>(at - 1)), 1);
    EXPECT_EQ(last, std::byte{'f'});
    ::close(fd);
  }
}

TEST_P(LogIoRingTest, AFailedWriteCancelsTheChainedSync) {
  for (const uint32_t entries : {256u, 8u}) {
    IoRing::Options o = options();
    o.entries = entries;
    IoRing ring(o);
    const int fd = open_read_only("ro");
    std::vector<std::byte> a(10, std::byte{1});
    std::vector<IoRing::ChainedWrite> writes;
    std::vector<int32_t> written(4, 1);
    int32_t synced = 1;
    for (int i = 0; i < 4; ++i) {
      writes.push_back({a, 10ull * i, [&written, i](int32_t r) { written[i] = r; }});
    }
    ring.write_then_fdatasync(fd, std::move(writes), [&](int32_t r) { synced = r; });
    ring.drain();
    // The first write fails; linked ones after it, tried again alone, fail alike.
    for (const int32_t r : written) EXPECT_EQ(r, -EBADF);
    EXPECT_EQ(synced, -ECANCELED) << "entries " << entries;
    ::close(fd);
  }
}

// A write cut short (here by the file size limit, as a full disk cuts one) stops the chain
// behind it: the writes linked after it are not failures of their own, and each reports
// what it met when tried alone (the log took a cancelled write for a failed one and stopped
// the partition for "Operation canceled", so a full disk never reopened it).
TEST_P(LogIoRingTest, WritesBehindAShortOneReportTheirOwnResult) {
  const auto path = dir_.path() / "limited";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 6000;  // inside the first write
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  {
    IoRing ring(options());
    std::vector<std::byte> block(4096, std::byte{7});
    std::vector<IoRing::ChainedWrite> writes;
    std::vector<int32_t> written(3, 1);
    int32_t synced = 1;
    for (int i = 0; i < 3; ++i) {
      writes.push_back({block, 4096ull * static_cast<uint64_t>(i + 1),
                        [&written, i](int32_t r) { written[static_cast<size_t>(i)] = r; }});
    }
    ring.write_then_fdatasync(fd, std::move(writes), [&](int32_t r) { synced = r; });
    ring.submit();
    ring.drain();
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(written[static_cast<size_t>(i)], -EFBIG) << "write " << i;
    }
    EXPECT_EQ(synced, -ECANCELED);
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(std::filesystem::file_size(path), 6000u);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(Log, LogIoRingTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Fallback" : "IoUring"; });

TEST(LogIoRing, EnvironmentDisablesIoUring) {
  ::setenv("SLUICE_DISABLE_IO_URING", "1", 1);
  IoRing ring;
  ::unsetenv("SLUICE_DISABLE_IO_URING");
  EXPECT_FALSE(ring.uses_io_uring());
}

}  // namespace
}  // namespace sluice::log
