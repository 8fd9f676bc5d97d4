// Produce request codec against a memcpy of the same bytes (the baseline, in the same run):
// 16 partitions, each carrying one 16 KiB batch. Records are zero-copy on decode (a view
// into the frame) and copied once on encode, so decode should run far above memcpy speed
// and encode close to it. A Fetch response with external (spliced) records shows the
// sendfile path, whose cost does not depend on the batch size. Batch validation
// (check_records) runs beside a memcpy of the same batch.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "protocol/message_frame.h"
#include "protocol/messages.h"
#include "protocol/record_batch.h"

namespace sluice::kafka {
namespace {

constexpr int kPartitions = 16;
constexpr size_t kBatchBytes = 16 * 1024;

struct ProduceFixture {
  std::vector<std::vector<std::byte>> batches;
  RequestHeader header{.api_key = 0, .api_version = 9, .correlation_id = 7, .client_id = "bench"};
  ProduceRequest request;
  std::vector<std::byte> frame;  // header + body, no size prefix

  explicit ProduceFixture(int16_t version) {
    header.api_version = version;
    std::mt19937 rng(42);
    request.acks = -1;
    request.timeout_ms = 30000;
    auto& topic = request.topic_data.emplace_back();
    topic.name = "bench-topic";
    for (int p = 0; p < kPartitions; ++p) {
      auto& batch = batches.emplace_back(kBatchBytes);
      for (auto& b : batch) b = static_cast<std::byte>(rng());
      topic.partition_data.push_back({.index = p, .records = Records::borrowed(batch)});
    }
    EncodedFrame encoded = encode_request(header, request);
    frame.assign(encoded.bytes.begin() + 4, encoded.bytes.end());
  }
};

void BM_ProduceDecode(benchmark::State& state) {
  ProduceFixture f(static_cast<int16_t>(state.range(0)));
  for (auto _ : state) {
    auto decoded = decode_request_frame(f.frame);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.frame.size()));
}

void BM_ProduceEncode(benchmark::State& state) {
  ProduceFixture f(static_cast<int16_t>(state.range(0)));
  const RequestBody body = f.request;
  for (auto _ : state) {
    EncodedFrame encoded = encode_request(f.header, body);
    benchmark::DoNotOptimize(encoded.bytes.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.frame.size()));
}

// Baseline: copying the frame's bytes into a fresh buffer, as the encoder must at least do.
void BM_MemcpyBaseline(benchmark::State& state) {
  ProduceFixture f(9);
  for (auto _ : state) {
    std::vector<std::byte> copy(f.frame.size());
    std::memcpy(copy.data(), f.frame.data(), f.frame.size());
    benchmark::DoNotOptimize(copy.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.frame.size()));
}

// Fetch response whose 16 batches are external (sendfile): only the envelope is encoded.
void BM_FetchResponseEncodeSpliced(benchmark::State& state) {
  FetchResponse resp;
  auto& topic = resp.responses.emplace_back();
  topic.topic = "bench-topic";
  for (int p = 0; p < kPartitions; ++p) {
    auto& part = topic.partitions.emplace_back();
    part.partition_index = p;
    part.aborted_transactions.emplace();
    part.records = Records::external(
        {.fd = 3, .offset = static_cast<int64_t>(p * kBatchBytes), .length = kBatchBytes});
  }
  size_t total = 0;
  for (auto _ : state) {
    EncodedFrame frame = encode_response(7, 11, resp);
    total = frame.size();
    benchmark::DoNotOptimize(frame.bytes.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * total));
}

// Batch validation as Produce runs it (check_records: every record's framing, count, offset
// deltas, timestamps) over one uncompressed batch of 1 KiB records, beside a memcpy of the
// same batch in the same run (BM_BatchMemcpyBaseline): validation reads each record once.
std::vector<std::byte> batch_of_records(size_t batch_bytes) {
  RecordBatchBuilder builder(RecordBatchBuilder::Options{});
  std::vector<std::byte> value(1024, std::byte{'v'});
  const std::string key = "key";
  while (builder.size_bytes_uncompressed() + value.size() + 64 <= batch_bytes) {
    builder.append(1'700'000'000'000 + builder.record_count(), as_bytes(key), value);
  }
  auto built = builder.build();
  return built ? std::move(*built) : std::vector<std::byte>{};
}

void BM_CheckRecords(benchmark::State& state) {
  const std::vector<std::byte> batch = batch_of_records(static_cast<size_t>(state.range(0)));
  auto view = RecordBatchView::parse(batch);
  if (!view) return state.SkipWithError("batch did not parse");
  std::vector<std::byte> scratch;
  for (auto _ : state) {
    auto summary = check_records(*view, scratch);
    if (!summary) return state.SkipWithError("batch did not check");
    benchmark::DoNotOptimize(summary);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
  state.counters["records"] = view->record_count();
}

void BM_BatchMemcpyBaseline(benchmark::State& state) {
  const std::vector<std::byte> batch = batch_of_records(static_cast<size_t>(state.range(0)));
  std::vector<std::byte> copy(batch.size());
  for (auto _ : state) {
    std::memcpy(copy.data(), batch.data(), batch.size());
    benchmark::DoNotOptimize(copy.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
}

BENCHMARK(BM_MemcpyBaseline);
BENCHMARK(BM_BatchMemcpyBaseline)->Arg(16 << 10)->Arg(1 << 20);
BENCHMARK(BM_CheckRecords)->Arg(16 << 10)->Arg(1 << 20);
BENCHMARK(BM_ProduceDecode)->Arg(7)->Arg(9);
BENCHMARK(BM_ProduceEncode)->Arg(7)->Arg(9);
BENCHMARK(BM_FetchResponseEncodeSpliced);

}  // namespace
}  // namespace sluice::kafka
