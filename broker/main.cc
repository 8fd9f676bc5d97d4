// sluiced: the Sluice broker process.
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include <malloc.h>

#include "broker/broker.h"
#include "broker/log_format.h"

namespace {

// glibc's allocator with fixed thresholds instead of its dynamic ones: blocks up to 32 MiB come
// from the arenas, and an arena keeps up to 64 MiB free at its top instead of handing it back
// to the kernel. A follower copies every entry it receives on the cluster thread, and a shard
// frees it once written: with the dynamic thresholds the arenas were trimmed and grown again
// all the time, each page faulted in anew, which on this VM costs microseconds. Three brokers,
// RF=3, 12 partitions, 128 KiB batches, seven alternating runs: 7,000-24,000 page faults per
// broker per run, 4,300-5,800 with these; medians 12.0 -> 11.0 CPU-s per GB over the three
// brokers, 118 -> 125 MB/s (docs/benchmarks.md "W2"). An operator's GLIBC_TUNABLES wins.
void tune_malloc() {
  if (std::getenv("GLIBC_TUNABLES") != nullptr) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice::broker;
  tune_malloc();  // before any thread starts
  auto config = parse_config(argc, argv);
  if (!config) {
    const bool ok = config.error().code == 0;  // --help, --version
    std::fputs(config.error().message.c_str(), ok ? stdout : stderr);
    if (!ok) std::fputc('\n', stderr);
    return ok ? 0 : 2;
  }
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  install_log_format(config->log_format == "json");
  spdlog::flush_on(spdlog::level::info);

  auto broker = Broker::create(*config);
  if (!broker) {
    spdlog::error("cannot start: {}", broker.error().message);
    return 1;
  }
  if (config->verify) return (*broker)->verify();
  // Signals are taken by a small io_context on the main thread; shards never see them.
  boost::asio::io_context signals_ctx;
  boost::asio::signal_set signals(signals_ctx, SIGTERM, SIGINT);
  signal(SIGPIPE, SIG_IGN);
  if (auto s = (*broker)->start(); !s) {
    spdlog::error("cannot start: {}", s.error().message);
    (*broker)->stop();
    return 1;
  }
  // SIGHUP: TLS listeners reload their certificate files (docs/security.md).
  boost::asio::signal_set hup(signals_ctx, SIGHUP);
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::info("received SIGHUP, reloading TLS files");
      (*broker)->reload_tls();
      wait_hup();
    });
  };
  wait_hup();
  signals.async_wait([&hup](const boost::system::error_code&, int signo) {
    spdlog::info("received {}, shutting down", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    boost::system::error_code ignored;
    hup.cancel(ignored);
  });
  signals_ctx.run();
  (*broker)->stop();
  return 0;
}
