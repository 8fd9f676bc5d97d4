// Real-process crash test: a child appends continuously with the default flush policy and
// reports every acknowledged offset through a pipe; the parent SIGKILLs it at seeded random
// moments, reopens the log and checks that every acknowledged append is there and intact,
// offsets are contiguous and no partial batch is served. Half of the rounds run the child
// on the pwrite/fdatasync fallback. SLUICE_LONG=1 runs many more rounds; SLUICE_SEED=n
// replays a run.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <cstdlib>
#include <random>

#include "log/log.h"
#include "log/tests/crash_records.h"
#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

uint64_t seed_from_env_or_random() {
  if (const char* s = std::getenv("SLUICE_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the child's stdout
};

Child spawn(const std::string& dir, uint64_t seed, bool fallback) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) std::abort();
  const std::string seed_arg = std::to_string(seed);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    if (fallback) ::setenv("SLUICE_DISABLE_IO_URING", "1", 1);
    ::execl(SLUICE_LOG_CRASH_APPENDER, SLUICE_LOG_CRASH_APPENDER, dir.c_str(), seed_arg.c_str(),
            "65536", static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads acknowledged end offsets until `deadline_ms` passes (then kills the child) and the
// pipe is drained. Returns the largest acknowledged end offset, or -1.
int64_t run_and_kill(Child child, int kill_after_ms, int& acks) {
  int64_t acked = -1;
  const auto start = std::chrono::steady_clock::now();
  bool killed = false;
  std::byte buffer[8 * 512];
  size_t have = 0;
  for (;;) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    // The kill clock starts with the first acknowledgement, so that every round kills a
    // child in the middle of appending rather than while it recovers.
    if (!killed && acks > 0 && elapsed >= kill_after_ms) {
      ::kill(child.pid, SIGKILL);
      killed = true;
    }
    if (!killed && elapsed >= 120'000) {  // a stuck child: fail rather than hang
      ADD_FAILURE() << "no acknowledgement from the child in 120 s";
      ::kill(child.pid, SIGKILL);
      killed = true;
    }
    pollfd p{.fd = child.out, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, killed ? 1000 : 5) <= 0) continue;
    const ssize_t n = ::read(child.out, buffer + have, sizeof(buffer) - have);
    if (n == 0) break;  // the child is gone and the pipe is drained
    if (n < 0) continue;
    have += static_cast<size_t>(n);
    size_t at = 0;
    for (; at + 8 <= have; at += 8) {
      int64_t end;
      std::memcpy(&end, buffer + at, 8);
      EXPECT_GT(end, acked) << "acknowledgements out of order";
      acked = end;
      ++acks;
    }
    std::memmove(buffer, buffer + at, have - at);
    have -= at;
  }
  ::close(child.out);
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child died on its own, status " << status;
  return acked;
}

// Reopens the log and checks it against what was acknowledged.
void verify(const std::filesystem::path& dir, int64_t acked_end, uint64_t seed) {
  IoRing ring;
  FdCache fds(16);
  LogConfig config;
  config.segment_bytes = 65536;
  auto opened = PartitionLog::open(dir, config, ring, fds);
  ASSERT_TRUE(opened) << opened.error().message << " SLUICE_SEED=" << seed;
  PartitionLog& log = **opened;
  for (const auto& issue : log.recovery_report().issues) {
    // Only the active segment's tail may be cut; nothing acknowledged is ever lost.
    EXPECT_NE(issue.kind, RecoveryIssue::Kind::kCorruptClosed) << issue.detail;
    EXPECT_GE(issue.offset, acked_end)
        << "an acknowledged batch was cut: " << issue.detail << " SLUICE_SEED=" << seed;
  }
  EXPECT_GE(*log.log_end_offset(), acked_end) << "SLUICE_SEED=" << seed;
  int64_t expected = 0;
  while (expected < *log.log_end_offset()) {
    auto bytes = log.read_copy(Offset(expected), 4 << 20);  // checks every CRC
    ASSERT_TRUE(bytes) << bytes.error().message << " SLUICE_SEED=" << seed;
    ASSERT_FALSE(bytes->empty());
    kafka::BatchIterator it(*bytes);
    for (;;) {
      auto batch = it.next();
      ASSERT_TRUE(batch);
      if (!batch->has_value()) break;
      ASSERT_EQ((*batch)->base_offset(), expected) << "offsets not contiguous";
      ASSERT_TRUE(crash::records_intact(**batch)) << "at offset " << expected;
      expected = (*batch)->last_offset() + 1;
    }
    ASSERT_FALSE(it.partial()) << "a partial batch was served";
  }
  EXPECT_EQ(expected, *log.log_end_offset());
}

TEST(LogCrash, AcknowledgedAppendsSurviveSigkill) {
  const uint64_t seed = seed_from_env_or_random();
  std::printf("SLUICE_SEED=%llu\n", static_cast<unsigned long long>(seed));
  const bool long_run = std::getenv("SLUICE_LONG") != nullptr;
  const int rounds = long_run ? 300 : 30;
  std::mt19937_64 rng(seed);
  testing::TempDir dir;
  int64_t acked_end = -1;
  int total_acks = 0;
  for (int round = 0; round < rounds; ++round) {
    int acks = 0;
    const bool fallback = round % 2 == 1;
    const int kill_after_ms = static_cast<int>(rng() % 120);
    const int64_t acked =
        run_and_kill(spawn(dir.path().string(), rng(), fallback), kill_after_ms, acks);
    ASSERT_GT(acks, 0) << "round " << round << ": the child acknowledged nothing";
    acked_end = std::max(acked_end, acked);
    total_acks += acks;
    verify(dir.path(), acked_end, seed);
    if (::testing::Test::HasFailure()) {
      FAIL() << "round " << round << ", SLUICE_SEED=" << seed;
    }
  }
  std::printf("%d rounds, %d acknowledged appends, log end %lld\n", rounds, total_acks,
              static_cast<long long>(acked_end));
}

}  // namespace
}  // namespace sluice::log
