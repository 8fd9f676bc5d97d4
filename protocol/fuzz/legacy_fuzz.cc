// libFuzzer target: the legacy message-set parser (Produce v0-2) on arbitrary bytes, and the
// down-conversion of what it accepts. Must never crash, hang or allocate without bound.
#include <cstdint>
#include <vector>

#include "common/assert.h"
#include "protocol/legacy_messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::kafka;
  sluice::Bytes bytes(reinterpret_cast<const std::byte*>(data), size);
  auto up = up_convert_message_set(bytes);
  if (!up) return 0;
  // What is accepted is a valid v2 batch with as many records as the set, and converts back.
  auto view = RecordBatchView::parse(up->batch);
  SLUICE_ASSERT(view.has_value());
  SLUICE_ASSERT(view->verify_crc().has_value());
  std::vector<std::byte> scratch;
  SLUICE_ASSERT(check_records(*view, scratch).has_value());
  SLUICE_ASSERT(view->record_count() == up->record_count);
  std::vector<std::byte> out;
  auto down = down_convert(up->batch, up->magic, 0, 1 << 20, out, scratch);
  SLUICE_ASSERT(down.has_value());
  return 0;
}
