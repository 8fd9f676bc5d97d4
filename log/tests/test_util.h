// Helpers shared by the log tests: temporary directories, test batches, byte damage.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "log/log.h"
#include "protocol/record_batch.h"

namespace sluice::log::testing {

// A fresh directory under $TMPDIR (or /tmp), removed by the destructor.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base ? base : "/tmp") + "/sluice-log-XXXXXX";
    char* made = ::mkdtemp(templ.data());
    if (made == nullptr) std::abort();
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// One batch of `records` records; record i has timestamp `timestamp_ms + i` and a value of
// `value_bytes` bytes made from `seed` and i (so a reader can check it).
inline std::vector<std::byte> make_batch(int records, size_t value_bytes, int64_t timestamp_ms,
                                         uint64_t seed = 0) {
  kafka::RecordBatchBuilder builder({});
  for (int i = 0; i < records; ++i) {
    std::vector<std::byte> value(value_bytes);
    for (size_t j = 0; j < value_bytes; ++j) {
      value[j] = static_cast<std::byte>((seed * 31 + static_cast<uint64_t>(i) * 7 + j) & 0xff);
    }
    builder.append(timestamp_ms + i, std::nullopt, Bytes(value));
  }
  auto built = builder.build();
  if (!built) std::abort();
  return std::move(*built);
}

inline void flip_byte(const std::filesystem::path& path, uint64_t position) {
  const int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) std::abort();
  std::byte b;
  if (::pread(fd, &b, 1, static_cast<off_t>(position)) != 1) std::abort();
  b ^= std::byte{0x5a};
  if (::pwrite(fd, &b, 1, static_cast<off_t>(position)) != 1) std::abort();
  ::close(fd);
}

inline void truncate_to(const std::filesystem::path& path, uint64_t size) {
  std::filesystem::resize_file(path, size);
}

inline std::filesystem::path segment_path(const std::filesystem::path& dir, int64_t base,
                                          std::string_view suffix) {
  return dir / segment_file_name(base, suffix);
}

// Appends `batch` and drives the ring until its callback ran.
inline LogResult<AppendResult> append_and_wait(PartitionLog& log, IoRing& ring,
                                               std::vector<std::byte>& batch,
                                               const AppendOptions& options = {}) {
  bool called = false;
  LogResult<AppendResult> result = log_error(LogErrc::kIo, "callback never ran");
  auto assigned = log.append(batch, options, [&](const LogResult<AppendResult>& r) {
    called = true;
    result = r;
  });
  if (!assigned) return assigned;
  while (!called) ring.wait();
  // The append's index entries and preallocation step may still be in the ring: a test that
  // destroys the log next must find it idle (~PartitionLog asserts it).
  while (!log.idle()) {
    ring.submit();
    ring.wait();
  }
  return result;
}

inline void drain(IoRing& ring) { ring.drain(); }

// read_async() and waits for its answer, driving the ring.
inline LogResult<ReadResult> read_async_wait(PartitionLog& log, IoRing& ring, int64_t from,
                                             uint64_t max_bytes, int64_t max_offset) {
  std::optional<LogResult<ReadResult>> got;
  log.read_async(Offset(from), max_bytes, Offset(max_offset),
                 [&got](LogResult<ReadResult> r) { got.emplace(std::move(r)); });
  while (!got) {
    ring.submit();
    ring.wait();
  }
  return std::move(*got);
}

}  // namespace sluice::log::testing
