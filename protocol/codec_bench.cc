// Produce request codec against a memcpy of the same bytes (the baseline, in the same run):
// 16 partitions, each carrying one 16 KiB batch. Records are zero-copy on decode (a view
// into the frame) and copied once on encode, so decode should run far above memcpy speed
// and encode close to it. A Fetch response with external (spliced) records shows the
// sendfile path, whose cost does not depend on the batch size.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "protocol/message_frame.h"
#include "protocol/messages.h"

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

BENCHMARK(BM_MemcpyBaseline);
BENCHMARK(BM_ProduceDecode)->Arg(7)->Arg(9);
BENCHMARK(BM_ProduceEncode)->Arg(7)->Arg(9);
BENCHMARK(BM_FetchResponseEncodeSpliced);

}  // namespace
}  // namespace sluice::kafka
