// The physical ceilings a benchmark is compared with, measured on the same machine in the
// same run: sequential writes with fdatasync to a file, and TCP over loopback.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace sluice::bench {

struct BaselineResult {
  int64_t bytes = 0;
  double seconds = 0;
  int64_t syncs = 0;
  double mb_per_s() const { return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0; }
};

struct DiskBaselineOptions {
  std::string dir;  // the file is created here and removed afterwards
  int64_t bytes = 1 << 30;
  int64_t write_bytes = 1 << 20;  // per write() call
  int64_t sync_bytes = 0;         // fdatasync after this many bytes; 0 = once at the end
};
// Sequential write() of random bytes and fdatasync; the time includes the final fdatasync.
Result<BaselineResult> disk_baseline(const DiskBaselineOptions& options);

struct TcpBaselineOptions {
  int64_t bytes = 1 << 30;
  int64_t write_bytes = 1 << 16;  // per send() call
};
// One connection over 127.0.0.1: a sender thread and a receiver thread that discards.
Result<BaselineResult> tcp_baseline(const TcpBaselineOptions& options);

}  // namespace sluice::bench
