// sluiced: the Sluice broker process.
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <functional>

#include "broker/broker.h"
#include "broker/log_format.h"

int main(int argc, char** argv) {
  using namespace sluice::broker;
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
