// libFuzzer target: scan_segment (the recovery scan) on arbitrary bytes. Besides never
// crashing, the scan must be consistent: the valid prefix rescans to the same batches with a
// clean end, and the visited batches tile it exactly.
#include <cstdint>
#include <cstdlib>

#include "log/segment_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::log;
  const sluice::Bytes bytes(reinterpret_cast<const std::byte*>(data), size);
  for (int64_t base : {int64_t{-1}, int64_t{0}}) {
    uint64_t next_position = 0;
    const ScanResult r =
        scan_segment(bytes, {.expected_base_offset = base}, [&](const ScannedBatch& b) {
          if (b.position != next_position) std::abort();
          if (b.last_offset < b.base_offset) std::abort();
          next_position += b.size_bytes;
        });
    if (r.valid_bytes != next_position || r.valid_bytes > size) std::abort();
    if (r.stop == ScanStop::kEnd && !r.zero_tail && r.valid_bytes != size) std::abort();
    const ScanResult again =
        scan_segment(bytes.first(r.valid_bytes), {.expected_base_offset = base});
    if (again.stop != ScanStop::kEnd || again.batches != r.batches ||
        again.valid_bytes != r.valid_bytes || again.next_offset != r.next_offset) {
      std::abort();
    }
  }
  return 0;
}
