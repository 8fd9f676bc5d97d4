// Reading one request frame into a fresh RequestBuffer: growth steps as the bytes arrive (a
// memcpy stands for the socket's copy), against the same-binary baselines of the buffer as it
// was before issue 18 (each step a zero-filled new vector and a copy of what arrived) and of a
// bare memcpy into a buffer allocated once (the floor).
#include <benchmark/benchmark.h>

#include <cstring>

#include "broker/request_memory.h"

namespace sluice::broker {
namespace {

constexpr int64_t kBudget = int64_t{1} << 40;

std::vector<std::byte> source(size_t n) { return std::vector<std::byte>(n, std::byte{0x5a}); }

void BM_RequestBuffer(benchmark::State& state) {
  const auto frame = static_cast<size_t>(state.range(0));
  const auto in = source(frame);
  auto memory = std::make_shared<RequestMemory>(kBudget);
  for (auto _ : state) {
    RequestBuffer buffer(memory, frame);
    size_t got = 0;
    while (buffer.next_size() > 0) {
      buffer.try_grow();
      const size_t n = buffer.bytes().size() - got;
      std::memcpy(buffer.bytes().data() + got, in.data() + got, n);
      got += n;
    }
    benchmark::DoNotOptimize(buffer.bytes().data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * frame));
}

// The growth before: a new vector per step, zero-filled, the old bytes copied over.
void BM_BaselineZeroFillAndCopy(benchmark::State& state) {
  const auto frame = static_cast<size_t>(state.range(0));
  const auto in = source(frame);
  for (auto _ : state) {
    std::vector<std::byte> bytes;
    size_t got = 0;
    while (bytes.size() < frame) {
      const size_t size = std::min(frame, std::max(RequestBuffer::kFirstReadBytes, 2 * bytes.size()));
      std::vector<std::byte> grown;
      grown.reserve(size);
      grown.assign(bytes.begin(), bytes.end());
      grown.resize(size);
      bytes.swap(grown);
      const size_t n = bytes.size() - got;
      std::memcpy(bytes.data() + got, in.data() + got, n);
      got += n;
    }
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * frame));
}

// The floor: one allocation at the frame's size, filled once.
void BM_BaselineMemcpy(benchmark::State& state) {
  const auto frame = static_cast<size_t>(state.range(0));
  const auto in = source(frame);
  for (auto _ : state) {
    FrameBytes bytes(frame);
    std::memcpy(bytes.data(), in.data(), frame);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * frame));
}

BENCHMARK(BM_RequestBuffer)->Arg(16 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(8 << 20);
BENCHMARK(BM_BaselineZeroFillAndCopy)->Arg(16 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(8 << 20);
BENCHMARK(BM_BaselineMemcpy)->Arg(16 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(8 << 20);

}  // namespace
}  // namespace sluice::broker
