// codec_capture: a one-off fixture recorder. Listens on 127.0.0.1, plays a one-broker
// cluster just far enough for real clients to send their first requests (ApiVersions,
// Metadata with one topic of one partition led by itself, Produce answered with success,
// InitProducerId), and writes every request frame it receives as hex into
// <out>/<prefix>-<NN>-<Api>-v<version>.hex. Driven by protocol/tools/capture.sh; see
// protocol/testdata/captured/README.md. Not part of the broker.
//
// Usage: codec_capture --out DIR --prefix NAME --port-file FILE [--note TEXT]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "protocol/message_frame.h"
#include "protocol/messages.h"

namespace sluice::kafka {
namespace {

constexpr int32_t kNodeId = 1;
constexpr size_t kFrameBytesMax = 64 * 1024 * 1024;

struct Options {
  std::string out;
  std::string prefix;
  std::string port_file;
  std::string note;
};

struct Connection {
  int fd = -1;
  std::vector<std::byte> in;
};

class Capture {
 public:
  Capture(Options options, uint16_t port) : options_(std::move(options)), port_(port) {}

  // Handles every complete frame in `c.in`; false when the connection must close.
  bool drain(Connection& c) {
    while (c.in.size() >= 4) {
      const auto size = static_cast<size_t>(load_be<int32_t>(c.in.data()));
      if (size > kFrameBytesMax) return false;
      if (c.in.size() < 4 + size) return true;
      Bytes frame(c.in.data() + 4, size);
      record(frame);
      if (!answer(c.fd, frame)) return false;
      c.in.erase(c.in.begin(), c.in.begin() + 4 + static_cast<ptrdiff_t>(size));
    }
    return true;
  }

 private:
  void record(Bytes frame) {
    Reader r(frame);
    auto header = decode_request_header(r);
    const ApiInfo* api = header ? find_api(header->api_key) : nullptr;
    char name[256];
    std::snprintf(name, sizeof(name), "%s/%s-%02d-%s-v%d.hex", options_.out.c_str(),
                  options_.prefix.c_str(), ++frames_,
                  api ? std::string(api->name).c_str() : "Unknown",
                  header ? header->api_version : -1);
    std::ofstream out(name);
    out << "# " << options_.note << ": request " << frames_ << " (header + body, no size)";
    if (header) out << ", client_id '" << header->client_id << "'";
    out << "\n";
    static constexpr char kDigits[] = "0123456789abcdef";
    for (size_t i = 0; i < frame.size(); ++i) {
      const auto b = static_cast<uint8_t>(frame[i]);
      out << kDigits[b >> 4] << kDigits[b & 15]
          << ((i % 32 == 31 || i + 1 == frame.size()) ? "\n" : "");
    }
    std::printf("recorded %s\n", name);
  }

  bool answer(int fd, Bytes frame) {
    Reader r(frame);
    auto header = decode_request_header(r);
    if (!header) return false;
    if (needs_api_versions_fallback(*header)) {
      return send_frame(fd, api_versions_unsupported_response(header->correlation_id));
    }
    auto body = decode_request(static_cast<ApiKey>(header->api_key), header->api_version, r.rest());
    if (!body) {
      std::printf("cannot decode: %s\n", body.error().to_string().c_str());
      return false;
    }
    const int32_t corr = header->correlation_id;
    const int16_t v = header->api_version;
    if (std::holds_alternative<ApiVersionsRequest>(*body)) {
      ApiVersionsResponse resp;
      for (const ApiInfo& api : kSupportedApis) {
        // Produce from v0, as Kafka advertises it: librdkafka <= 2.11.0 silently drops gzip,
        // snappy and lz4 when the broker's Produce range does not include v0 (its codec check
        // asks for Produce 0..0), and the fixtures need really compressed batches.
        const int16_t min = api.key == ApiKey::kProduce ? 0 : api.min_version;
        resp.api_keys.push_back({static_cast<int16_t>(api.key), min, api.max_version});
      }
      return send_frame(fd, encode_response(corr, v, resp));
    }
    if (auto* m = std::get_if<MetadataRequest>(&*body)) {
      return send_frame(fd, encode_response(corr, v, metadata(*m)));
    }
    if (auto* p = std::get_if<ProduceRequest>(&*body)) {
      if (p->acks == 0) return true;
      ProduceResponse resp;
      for (const auto& t : p->topic_data) {
        auto& rt = resp.responses.emplace_back();
        rt.name = t.name;
        for (const auto& part : t.partition_data) {
          auto& rp = rt.partition_responses.emplace_back();
          rp.index = part.index;
          rp.base_offset = next_offset_++;
          rp.log_start_offset = 0;
        }
      }
      return send_frame(fd, encode_response(corr, v, resp));
    }
    if (std::holds_alternative<InitProducerIdRequest>(*body)) {
      InitProducerIdResponse resp;
      resp.producer_id = 1000;
      return send_frame(fd, encode_response(corr, v, resp));
    }
    std::printf("no answer for api key %d\n", header->api_key);
    return true;
  }

  MetadataResponse metadata(const MetadataRequest& req) const {
    MetadataResponse resp;
    resp.brokers.push_back({.node_id = kNodeId, .host = "127.0.0.1", .port = port_});
    resp.cluster_id = "sluice-capture";
    resp.controller_id = kNodeId;
    std::vector<std::string> names;
    if (req.topics && !req.topics->empty()) {
      for (const auto& t : *req.topics) names.push_back(t.name);
    } else {
      names.push_back("t");
    }
    for (const auto& name : names) {
      auto& t = resp.topics.emplace_back();
      t.name = name;
      auto& p = t.partitions.emplace_back();
      p.leader_id = kNodeId;
      p.leader_epoch = 0;
      p.replica_nodes = {kNodeId};
      p.isr_nodes = {kNodeId};
    }
    return resp;
  }

  static bool send_frame(int fd, const EncodedFrame& frame) {
    size_t at = 0;
    while (at < frame.bytes.size()) {
      const ssize_t n = ::send(fd, frame.bytes.data() + at, frame.bytes.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return false;
      at += static_cast<size_t>(n);
    }
    return true;
  }

  Options options_;
  int32_t port_;
  int frames_ = 0;
  int64_t next_offset_ = 0;
};

int run(const Options& options) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listener, 16) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("codec_capture: listen");
    return 1;
  }
  const uint16_t port = ntohs(addr.sin_port);
  std::ofstream(options.port_file) << port << "\n";
  std::printf("listening on 127.0.0.1:%u\n", port);
  std::fflush(stdout);
  Capture capture(options, port);
  std::vector<Connection> conns;
  for (;;) {  // runs until the driver script kills it
    std::vector<pollfd> fds{{listener, POLLIN, 0}};
    for (const auto& c : conns) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) return 1;
    if (fds[0].revents & POLLIN) conns.push_back({::accept(listener, nullptr, nullptr), {}});
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Connection& c = conns[i - 1];
      std::byte buf[65536];
      const ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
      if (n > 0) c.in.insert(c.in.end(), buf, buf + n);
      if (n <= 0 || !capture.drain(c)) {
        ::close(c.fd);
        c.fd = -1;
      }
    }
    std::erase_if(conns, [](const Connection& c) { return c.fd < 0; });
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace sluice::kafka

int main(int argc, char** argv) {
  sluice::kafka::Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--out") options.out = argv[i + 1];
    if (flag == "--prefix") options.prefix = argv[i + 1];
    if (flag == "--port-file") options.port_file = argv[i + 1];
    if (flag == "--note") options.note = argv[i + 1];
  }
  if (options.out.empty() || options.prefix.empty() || options.port_file.empty()) {
    std::fprintf(stderr,
                 "usage: codec_capture --out DIR --prefix NAME --port-file FILE "
                 "[--note TEXT]\n");
    return 2;
  }
  return sluice::kafka::run(options);
}
