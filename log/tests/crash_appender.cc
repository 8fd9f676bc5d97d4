// Crash-test child: appends to a partition log forever with the default flush policy and
// writes each acknowledged end offset (int64, native order) to stdout, which is a pipe to
// the parent. The parent SIGKILLs it at a random moment.
//
//   log_crash_appender <dir> <seed> <segment_bytes>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>

#include "log/log.h"
#include "log/tests/crash_records.h"

int main(int argc, char** argv) {
  using namespace sluice;
  using namespace sluice::log;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s dir seed segment_bytes\n", argv[0]);
    return 2;
  }
  std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));
  IoRing ring;
  FdCache fds(16);
  LogConfig config;
  config.segment_bytes = std::strtoull(argv[3], nullptr, 10);
  auto opened = PartitionLog::open(argv[1], config, ring, fds);
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.error().message.c_str());
    return 1;
  }
  PartitionLog& log = **opened;
  std::deque<std::vector<std::byte>> in_flight;  // buffers stay alive until acknowledged
  constexpr size_t kInFlightMax = 8;
  uint64_t key = static_cast<uint64_t>(*log.log_end_offset()) << 20;  // unique per run
  for (;;) {
    while (in_flight.size() < kInFlightMax) {
      const int records = 1 + static_cast<int>(rng() % 6);
      const size_t value_bytes = 1 + rng() % 3000;
      in_flight.push_back(log::crash::make_batch(key, records, value_bytes));
      key += records;
      auto r = log.append(in_flight.back(), {}, [&](const LogResult<AppendResult>& done) {
        if (!done) {
          std::fprintf(stderr, "append failed: %s\n", done.error().message.c_str());
          std::_Exit(1);
        }
        const int64_t end = *done->end_offset;
        if (::write(1, &end, sizeof(end)) != sizeof(end)) std::_Exit(1);
        in_flight.pop_front();
      });
      if (!r) {
        std::fprintf(stderr, "append: %s\n", r.error().message.c_str());
        return 1;
      }
    }
    ring.wait();
  }
}
