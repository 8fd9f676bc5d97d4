// The reading side of a segment: every recovery decision is made here, as pure functions
// over bytes, so they are tested without a disk (segment_reader_test.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/bytes.h"

namespace sluice::log {

// One valid batch found by a scan.
struct ScannedBatch {
  uint64_t position = 0;  // byte position of the batch in the scanned bytes
  uint64_t size_bytes = 0;
  int64_t base_offset = 0;
  int64_t last_offset = 0;
  int64_t max_timestamp = 0;
};
using BatchVisitor = std::function<void(const ScannedBatch&)>;

// Why a scan stopped.
//  kEnd:      no bytes left, or only zero bytes (preallocated, never written space).
//  kTornTail: the last batch is incomplete (runs past the end) or fails its checks with
//             nothing but zeros after it: a write that a crash cut short. Normal after a crash.
//  kCorrupt:  a batch fails its checks and non-zero bytes follow it: damage, not a torn write.
enum class ScanStop : uint8_t { kEnd, kTornTail, kCorrupt };
const char* to_string(ScanStop stop);

struct ScanOptions {
  int64_t expected_base_offset = -1;  // the first batch must start here (the segment's base)
  bool verify_crc = true;
};

struct ScanResult {
  uint64_t valid_bytes = 0;  // the valid batches are exactly bytes[0, valid_bytes)
  ScanStop stop = ScanStop::kEnd;
  uint64_t batches = 0;
  int64_t next_offset = -1;    // last offset of the last valid batch + 1; -1 if there is none
  int64_t max_timestamp = -1;  // over the valid batches; -1 if there is none
  bool zero_tail = false;      // bytes[valid_bytes, end) are all zero and there is at least one
  std::string reason;          // why the batch at valid_bytes was rejected (empty at kEnd)
};

// Walks the batches at the start of `bytes`, checking each header (magic 2, lengths, offsets
// contiguous from batch to batch and from options.expected_base_offset) and CRC-32C; calls
// `visit` for each valid batch in order. Stops at the first invalid batch and says why.
ScanResult scan_segment(Bytes bytes, const ScanOptions& options, const BatchVisitor& visit = {});

// Whether every byte is zero.
bool all_zero(Bytes bytes);

}  // namespace sluice::log
