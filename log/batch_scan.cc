#include "log/batch_scan.h"

#include "log/log.h"

namespace sluice::log {

void for_each_stored_batch(PartitionLog& log, int64_t from, int64_t end, uint64_t chunk_bytes,
                           const std::function<void(const kafka::RecordBatchView&)>& visit) {
  while (from < end) {
    auto bytes = log.read_copy(Offset(from), chunk_bytes, Offset(end));
    if (!bytes || bytes->empty()) return;
    kafka::BatchIterator it(*bytes);
    int64_t next = from;
    while (true) {
      auto v = it.next();
      if (!v || !*v) break;
      visit(**v);
      next = (**v).last_offset() + 1;
    }
    if (next <= from) return;
    from = next;
  }
}

void for_each_stored_record(
    PartitionLog& log, int64_t from, int64_t end, uint64_t chunk_bytes,
    const std::function<void(const kafka::RecordBatchView&, const kafka::Record&)>& record,
    const std::function<void(const kafka::RecordBatchView&)>& control) {
  std::vector<std::byte> scratch;
  for_each_stored_batch(log, from, end, chunk_bytes, [&](const kafka::RecordBatchView& batch) {
    if (batch.is_control()) {
      if (control) control(batch);
      return;
    }
    auto records = batch.records(scratch);
    if (!records) return;
    while (true) {
      auto rec = records->next();
      if (!rec || !*rec) break;
      const kafka::Record& r = **rec;
      if (batch.base_offset() + r.offset_delta < from || !r.key) continue;
      record(batch, r);
    }
  });
}

}  // namespace sluice::log
