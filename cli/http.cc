// A small HTTP client for the broker's admin API (Boost.Beast).
#include "cli/http.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>

namespace sluice::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;

Result<HttpReply> http_request(http::verb verb, const std::string& host, const std::string& port,
                               const std::string& path, std::chrono::milliseconds timeout) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{verb, path, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "sluice-cli");
  http::response_parser<http::string_body> parser;
  parser.body_limit(16 << 20);
  beast::error_code failure;
  std::string stage = "resolve";
  resolver.async_resolve(host, port, [&](beast::error_code ec, auto results) {
    if (ec) return void(failure = ec);
    stage = "connect";
    stream.expires_after(timeout);
    stream.async_connect(results, [&](beast::error_code ec2, auto) {
      if (ec2) return void(failure = ec2);
      stage = "send";
      http::async_write(stream, req, [&](beast::error_code ec3, size_t) {
        if (ec3) return void(failure = ec3);
        stage = "read the answer";
        http::async_read(stream, buffer, parser, [&](beast::error_code ec4, size_t) {
          if (ec4) failure = ec4;
        });
      });
    });
  });
  io.run_for(timeout + std::chrono::milliseconds(100));
  if (!io.stopped()) {
    return error(1, "no answer within " + std::to_string(timeout.count()) + " ms");
  }
  if (failure) return error(1, "cannot " + stage + ": " + failure.message());
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  return HttpReply{parser.get().result_int(), parser.get().body()};
}


Result<std::pair<std::string, std::string>> split_admin_address(const std::string& admin) {
  const auto colon = admin.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == admin.size()) {
    return error(2, "--admin wants host:port, not '" + admin + "'");
  }
  return std::pair{admin.substr(0, colon), admin.substr(colon + 1)};
}

}  // namespace sluice::cli
