// Reading a partition's stored batches back in order, for state rebuilt from the log at
// start-up or after a cut (idempotent producers, consumer groups, transactions).
#pragma once

#include <cstdint>
#include <functional>

#include "protocol/record_batch.h"

namespace sluice::log {

class PartitionLog;

// Calls `visit` with each batch from the one holding offset `from` up to offset `end`
// (exclusive), reading `chunk_bytes` at a time (copies: blocking reads, not for a hot path).
// Stops early at a read that fails or returns nothing.
void for_each_stored_batch(PartitionLog& log, int64_t from, int64_t end, uint64_t chunk_bytes,
                           const std::function<void(const kafka::RecordBatchView&)>& visit);

// The same over records: `record` with each record that has a key, of the data batches, at or
// after `from` (a first batch may begin below it); `control` (when given) with each control
// batch. The state logs of the coordinators (__consumer_offsets, __transaction_state).
void for_each_stored_record(
    PartitionLog& log, int64_t from, int64_t end, uint64_t chunk_bytes,
    const std::function<void(const kafka::RecordBatchView&, const kafka::Record&)>& record,
    const std::function<void(const kafka::RecordBatchView&)>& control = {});

}  // namespace sluice::log
