// A small HTTP client for the broker's admin API (Boost.Beast): one request, one answer, the
// whole exchange bounded by a timeout. For `sluice cluster health | decommission | ...`.
#pragma once

#include <boost/beast/http.hpp>
#include <chrono>
#include <string>
#include <utility>

#include "common/result.h"

namespace sluice::cli {

namespace http = boost::beast::http;

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

// `verb` http://<host>:<port><path> with an empty body.
Result<HttpReply> http_request(http::verb verb, const std::string& host, const std::string& port,
                               const std::string& path, std::chrono::milliseconds timeout);

// "host:port" -> {host, port}; an error naming --admin otherwise.
Result<std::pair<std::string, std::string>> split_admin_address(const std::string& admin);

}  // namespace sluice::cli
