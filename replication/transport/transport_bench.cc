// Raft appends and heartbeats through two Transports on loopback, both on one thread (so the
// numbers include both ends' work): bytes per second for entry sizes from 100 B to 1 MiB,
// and the cost per heartbeat when many groups' heartbeats share one flush. BM_AppendTls is
// BM_Append over mutual TLS (certificates of a throw-away CA in the temporary directory).
#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>

#include "replication/transport/test_tls.h"
#include "replication/transport/tls.h"
#include "replication/transport/transport.h"

namespace sluice::transport {
namespace {

using namespace std::chrono_literals;

// Both ends' TLS context: one certificate of a throw-away CA, made once.
std::shared_ptr<boost::asio::ssl::context> bench_tls_context() {
  static const std::shared_ptr<boost::asio::ssl::context> ctx = [] {
    const auto dir = std::filesystem::temp_directory_path() / "sluice_transport_bench_tls";
    std::filesystem::create_directories(dir);
    testing::TestCa ca(dir.string(), "bench");
    auto made = make_peer_tls_context(ca.issue("broker"));
    if (!made) std::abort();
    return *made;
  }();
  return ctx;
}

struct Pair {
  explicit Pair(bool tls = false) {
    auto ctx = tls ? bench_tls_context() : nullptr;
    a = std::make_unique<Transport>(
        io, TransportConfig{.self_id = 1, .cluster_id = "bench", .tls = ctx});
    b = std::make_unique<Transport>(
        io, TransportConfig{.self_id = 2, .cluster_id = "bench", .tls = ctx});
    if (!b->listen("127.0.0.1", 0)) std::abort();
    b->on_message([this](uint64_t, raft::Message&&) { ++received; });
    a->set_peer(2, "127.0.0.1", b->port());
    while (!a->connected(2)) io.run_one_for(10ms);
  }
  // Runs the loop until `count` messages arrived in total.
  void wait_for(uint64_t count) {
    while (received < count) io.run_one();
  }
  boost::asio::io_context io;
  std::unique_ptr<Transport> a, b;
  uint64_t received = 0;
};

raft::Message from_1_to_2(raft::MessageType type) {
  raft::Message m;
  m.type = type;
  m.from = raft::NodeId{1};
  m.to = raft::NodeId{2};
  m.term = Term{5};
  return m;
}

// Appends of 256 KiB in entries of range(0) bytes each, 8 appends per flush.
void append(benchmark::State& state, bool tls) {
  const size_t entry_bytes = static_cast<size_t>(state.range(0));
  Pair pair(tls);
  raft::Message m = from_1_to_2(raft::MessageType::kAppend);
  const size_t entries = std::max<size_t>(1, (256 << 10) / entry_bytes);
  for (size_t i = 0; i < entries; ++i) {
    m.entries.push_back({LogIndex{i + 1}, Term{1}, raft::EntryType::kNormal,
                         raft::Payload::copy_of(std::string(entry_bytes, 'e'))});
  }
  uint64_t sent = 0;
  for (auto _ : state) {
    for (int i = 0; i < 8; ++i) {
      if (!pair.a->send(1, m)) std::abort();
      ++sent;
    }
    pair.wait_for(sent);
  }
  state.SetBytesProcessed(static_cast<int64_t>(sent * entries * entry_bytes));
  state.counters["entries_per_append"] = static_cast<double>(entries);
}
void BM_Append(benchmark::State& state) { append(state, false); }
void BM_AppendTls(benchmark::State& state) { append(state, true); }
BENCHMARK(BM_Append)->Arg(100)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_AppendTls)->Arg(100)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();

// range(0) groups' heartbeats per flush: one BEATS frame.
void BM_Heartbeats(benchmark::State& state) {
  const int groups = static_cast<int>(state.range(0));
  Pair pair;
  raft::Message m = from_1_to_2(raft::MessageType::kHeartbeat);
  m.commit = LogIndex{1000};
  uint64_t sent = 0;
  for (auto _ : state) {
    for (int g = 0; g < groups; ++g) {
      if (!pair.a->send(static_cast<uint64_t>(g), m)) std::abort();
    }
    sent += static_cast<uint64_t>(groups);
    pair.wait_for(sent);
  }
  state.SetItemsProcessed(static_cast<int64_t>(sent));
}
BENCHMARK(BM_Heartbeats)->Arg(1)->Arg(100)->Arg(10000)->UseRealTime();

}  // namespace
}  // namespace sluice::transport
