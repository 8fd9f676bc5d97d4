// A response ready to be written: owned bytes with file ranges spliced in at given positions,
// so Fetch can send record batches from segment files with sendfile() (no copy through user
// space). `bytes` starts with the 4-byte size prefix, which counts the spliced bytes too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace sluice::broker {

struct FileRange {
  std::shared_ptr<const void> keepalive;  // keeps the file descriptor open until written
  int fd = -1;
  int64_t position = 0;
  size_t length = 0;
};

struct OutFrame {
  struct Splice {
    size_t at;  // insert before bytes[at]
    FileRange range;
  };
  std::vector<std::byte> bytes;
  std::vector<Splice> splices;  // ascending `at`

  size_t total_size() const {
    size_t n = bytes.size();
    for (const auto& s : splices) n += s.range.length;
    return n;
  }
};

}  // namespace sluice::broker
