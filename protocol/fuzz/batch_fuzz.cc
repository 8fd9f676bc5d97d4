// libFuzzer target: record batch parsing, CRC check and record/header iteration (including
// decompression) on arbitrary bytes. Must never crash, hang or allocate without bound.
#include <cstdint>
#include <vector>

#include "protocol/record_batch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::kafka;
  sluice::Bytes bytes(reinterpret_cast<const std::byte*>(data), size);
  BatchIterator it(bytes);
  std::vector<std::byte> scratch;
  for (int batches = 0; batches < 64; ++batches) {
    auto v = it.next();
    if (!v || !*v) break;
    const RecordBatchView& view = **v;
    (void)view.verify_crc();
    auto reader = view.records(scratch);
    if (!reader) continue;
    for (int i = 0; i < 100000; ++i) {
      auto rec = reader->next();
      if (!rec || !*rec) break;
      HeaderReader headers((*rec)->headers, (*rec)->header_count);
      while (true) {
        auto h = headers.next();
        if (!h || !*h) break;
      }
    }
  }
  return 0;
}
