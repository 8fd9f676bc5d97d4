#include "client/client.h"

#include <algorithm>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "broker/sasl.h"
#include "common/assert.h"
#include "common/json.h"
#include "protocol/error_codes.h"

namespace sluice {

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kNotice:
      return "NOTICE";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kDebug:
      return "DEBUG";
  }
  return "LOG";
}

}  // namespace sluice

namespace sluice::client {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// What to say when the first four bytes of an answer are no plausible Kafka frame size: the
// server is probably not a Kafka broker (an HTTP or admin port, TLS, SSH...). Quotes the
// bytes when they are printable ("HTTP", "<!DO").
template <class Buf>
std::string not_kafka_message(const std::string& address, const Buf& first4) {
  std::string text;
  for (auto b : first4) {
    auto c = static_cast<unsigned char>(b);
    if (c < 0x20 || c > 0x7e) return "the server at " + address +
                                      " does not answer in the Kafka protocol (is this the "
                                      "broker's Kafka port? check -b/--brokers)";
    text += static_cast<char>(c);
  }
  return "the server at " + address + " does not answer in the Kafka protocol (it sent \"" +
         text + "...\"; is this the broker's Kafka port? check -b/--brokers)";
}

// A response frame larger than this closes the connection (a Fetch answers at most
// fetch.max.bytes plus some overhead; 256 MiB leaves room for large configurations).
constexpr uint32_t kResponseBytesMax = 256u << 20;
constexpr int16_t kApiVersionsOurMax = 3;

// The TLS context every connection of a client shares: TLS 1.2 or later, the broker's
// certificate verified against ssl.ca.location (or the system's CAs), the client's own
// certificate and key for mutual TLS. Errors name the setting and the file.
Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const SecurityConfig& s) {
  namespace ssl = asio::ssl;
  auto invalid = [](const std::string& setting, const std::string& path, const std::string& why) {
    return unexpected(make_error(Errc::kInvalidArgument, setting + " " + path + ": " + why));
  };
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  std::error_code fs_ec;
  for (const auto& [setting, path] :
       {std::pair{"ssl.ca.location", s.ssl_ca_location},
        std::pair{"ssl.certificate.location", s.ssl_certificate_location},
        std::pair{"ssl.key.location", s.ssl_key_location}}) {
    if (!path.empty() && !std::filesystem::exists(path, fs_ec)) {
      return invalid(setting, path, "no such file");
    }
  }
  if (s.ssl_ca_location.empty()) {
    ctx->set_default_verify_paths(ec);
  } else if (std::filesystem::is_directory(s.ssl_ca_location, fs_ec)) {
    ctx->add_verify_path(s.ssl_ca_location, ec);
  } else {
    ctx->load_verify_file(s.ssl_ca_location, ec);
  }
  if (ec) return invalid("ssl.ca.location", s.ssl_ca_location, "no PEM CA certificates in it (" + ec.message() + ")");
  if (!s.ssl_certificate_location.empty()) {
    ctx->use_certificate_chain_file(s.ssl_certificate_location, ec);
    if (ec) {
      return invalid("ssl.certificate.location", s.ssl_certificate_location,
                     "not a PEM certificate (" + ec.message() + ")");
    }
    ctx->use_private_key_file(s.ssl_key_location, ssl::context::pem, ec);
    if (ec) {
      return invalid("ssl.key.location", s.ssl_key_location,
                     "not an unencrypted PEM private key (" + ec.message() + ")");
    }
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      return invalid("ssl.key.location", s.ssl_key_location,
                     "does not match ssl.certificate.location");
    }
  }
  return ctx;
}

// What to say when a TLS handshake or session fails: the verification failure and the
// setting to change, or a refusal by the broker.
std::string tls_failure(SSL* ssl, const boost::system::error_code& ec, const std::string& host) {
  const long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (verify != X509_V_OK) {
    std::string text = std::string("certificate verify failed: ") +
                       X509_verify_cert_error_string(verify);
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      return text + " (the broker's certificate does not name " + host +
             "; connect by a name it has, or set ssl.endpoint.identification.algorithm=none)";
    }
    return text + " (set ssl.ca.location to the CA that signed the broker's certificate)";
  }
  std::string text = ec.message();
  if (text.find("alert") != std::string::npos) {
    return text + " (the broker refused the TLS session: does it want a client certificate "
                  "it trusts? set ssl.certificate.location and ssl.key.location)";
  }
  return text + " (is this an SSL or SASL_SSL listener? check security.protocol and the port)";
}

}  // namespace

void log_line(const ClientConfig& config, LogLevel level, const std::string& message) {
  if (config.log) {
    if (level <= config.log_level) config.log(level, message);
    return;
  }
  if (level <= LogLevel::kWarning) {
    std::fprintf(stderr, "%s: %s: %s\n", config.log_prefix.c_str(),
                 level == LogLevel::kError ? "error" : "warning", message.c_str());
  }
}

Error kafka_error(int16_t code, const std::string& context) {
  auto ec = static_cast<kafka::ErrorCode>(code);
  return Error{code, context + ": " + std::string(kafka::error_name(ec)) + " (" +
                         std::to_string(code) + ")"};
}

bool retriable(const Error& e) {
  if (e.code == static_cast<int>(Errc::kNetwork) || e.code == static_cast<int>(Errc::kTimeout)) {
    return true;
  }
  if (e.code >= 1000 || e.code == 0) return false;
  return kafka::error_retriable(static_cast<kafka::ErrorCode>(e.code));
}

std::string error_name(int code) {
  switch (static_cast<Errc>(code)) {
    case Errc::kNetwork:
      return "NETWORK";
    case Errc::kTimeout:
      return "TIMEOUT";
    case Errc::kProtocol:
      return "PROTOCOL";
    case Errc::kClosed:
      return "CLOSED";
    case Errc::kBufferFull:
      return "BUFFER_FULL";
    case Errc::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case Errc::kUnsupported:
      return "UNSUPPORTED";
    case Errc::kNoBroker:
      return "NO_BROKER";
    case Errc::kSecurity:
      return "SECURITY";
    case Errc::kInvalidState:
      return "INVALID_STATE";
  }
  return std::string(kafka::error_name(static_cast<kafka::ErrorCode>(code)));
}

std::string error_description(int code) {
  switch (static_cast<Errc>(code)) {
    case Errc::kNetwork:
      return "could not connect to a broker, or the connection broke (is it running? check "
             "bootstrap_servers)";
    case Errc::kTimeout:
      return "no answer in time (request_timeout_ms or the caller's deadline)";
    case Errc::kProtocol:
      return "the server sent bytes that are not a Kafka response (wrong port?)";
    case Errc::kClosed:
      return "the client, producer or consumer was closed";
    case Errc::kBufferFull:
      return "the producer's buffer_memory is full (blocking is off or max_block_ms passed)";
    case Errc::kInvalidArgument:
      return "an argument or setting is invalid (the message names it)";
    case Errc::kUnsupported:
      return "the broker does not serve an API or version the client needs";
    case Errc::kNoBroker:
      return "no broker address is known (empty bootstrap_servers)";
    case Errc::kSecurity:
      return "the TLS handshake or SASL authentication failed (the message says which "
             "setting to check: ssl.ca.location, sasl.username, ...)";
    case Errc::kInvalidState:
      return "a call out of order (e.g. send() in a transactional producer before "
             "begin_transaction(), or any call after the producer was fenced)";
  }
  return error_name(code);
}

std::vector<std::string> parse_broker_list(const std::string& list) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    std::string item = list.substr(at, comma - at);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) {
      if (item.find(':') == std::string::npos) item += ":9092";
      out.push_back(item);
    }
    at = comma + 1;
  }
  return out;
}

const TopicInfo* ClusterMetadata::topic(const std::string& name) const {
  auto it = topics.find(name);
  return it == topics.end() ? nullptr : &it->second;
}

const BrokerInfo* ClusterMetadata::broker(int32_t node_id) const {
  for (const auto& b : brokers) {
    if (b.node_id == node_id) return &b;
  }
  return nullptr;
}

namespace detail {

// What the stats report per broker; I/O thread only. Kept across reconnections.
struct BrokerCounters {
  int32_t node_id = -1;  // -1 for a bootstrap address
  std::string address;
  bool connected = false;
  int64_t connects = 0;     // handshakes completed
  int64_t disconnects = 0;  // connections lost or failed (not closed by us)
  int64_t requests = 0;
  int64_t responses = 0;
  int64_t tx_bytes = 0;
  int64_t rx_bytes = 0;
  int64_t errors = 0;  // requests failed: timed out, connection lost, undecodable answer
  int64_t inflight = 0;
  // Round trips since the last stats, in microseconds.
  int64_t rtt_count = 0;
  int64_t rtt_sum_us = 0;
  int64_t rtt_min_us = 0;
  int64_t rtt_max_us = 0;
  // Throttles the broker asked for (throttle_time_ms > 0) since the last stats, in ms.
  int64_t throttle_count = 0;
  int64_t throttle_sum_ms = 0;
  int64_t throttle_max_ms = 0;
};

// KIP-219: from these versions on, a broker answers at once with throttle_time_ms and the client
// waits that long before its next request to the broker (older versions: the broker delayed
// the answer itself). As Kafka's AbstractResponse.shouldClientThrottle; APIs added after
// KIP-219 (ElectLeaders, 43, on) always.
bool client_waits_out_throttle(kafka::ApiKey key, int16_t version) {
  using K = kafka::ApiKey;
  switch (key) {
    case K::kProduce:
      return version >= 6;
    case K::kFetch:
      return version >= 8;
    case K::kListOffsets:
      return version >= 3;
    case K::kMetadata:
      return version >= 6;
    case K::kOffsetCommit:
    case K::kOffsetFetch:
      return version >= 4;
    case K::kJoinGroup:
    case K::kCreateTopics:
      return version >= 3;
    case K::kFindCoordinator:
    case K::kHeartbeat:
    case K::kLeaveGroup:
    case K::kSyncGroup:
    case K::kDescribeGroups:
    case K::kListGroups:
    case K::kApiVersions:
    case K::kDeleteTopics:
    case K::kDescribeConfigs:
    case K::kOffsetForLeaderEpoch:
      return version >= 2;
    case K::kSaslHandshake:
    case K::kWriteTxnMarkers:
      return false;
    default:
      return static_cast<int16_t>(key) >= 43 || version >= 1;
  }
}

// One TCP connection to one broker. Lives on the I/O thread only.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  struct Outgoing {
    kafka::RequestBody body;
    Client::Callback callback;
    bool expect_response = true;
    int timeout_ms = 0;
  };

  Connection(asio::io_context& io, const ClientConfig& config, asio::ssl::context* tls_context,
             int32_t key, std::string host, std::string port,
             std::function<void(int32_t)> on_closed, BrokerCounters& counters)
      : config_(config),
        counters_(counters),
        tls_context_(tls_context),
        key_(key),
        host_(std::move(host)),
        port_(std::move(port)),
        socket_(io),
        resolver_(io),
        throttle_timer_(io),
        on_closed_(std::move(on_closed)) {
    versions_.fill(-1);
  }

  int32_t key() const { return key_; }
  bool ready() const { return state_ == State::kReady; }
  std::string address() const { return host_ + ":" + port_; }

  void start() {
    state_ = State::kConnecting;
    connect_deadline_ = Clock::now() + std::chrono::milliseconds(config_.connect_timeout_ms);
    auto self = shared_from_this();
    resolver_.async_resolve(
        host_, port_,
        [self](const boost::system::error_code& ec, tcp::resolver::results_type results) {
          if (self->state_ == State::kClosed) return;
          if (ec)
            return self->fail(make_error(
                Errc::kNetwork, "cannot resolve " + self->address() + ": " + ec.message()));
          asio::async_connect(
              self->socket_, results,
              [self](const boost::system::error_code& ec2, const tcp::endpoint&) {
                if (self->state_ == State::kClosed) return;
                if (ec2) {
                  return self->fail(make_error(Errc::kNetwork,
                                               "cannot connect to " + self->address() + ": " +
                                                   ec2.message() +
                                                   " (is the broker running? check -b/--brokers)"));
                }
                boost::system::error_code ignore;
                self->socket_.set_option(tcp::no_delay(true), ignore);
                self->connected();
              });
        });
  }

  void submit(Outgoing out) {
    if (state_ == State::kClosed) {
      out.callback(
          unexpected(make_error(Errc::kNetwork, "connection to " + address() + " closed")));
      return;
    }
    if (state_ != State::kReady || !waiting_.empty() || throttled(Clock::now())) {
      waiting_.push_back(std::move(out));
      if (state_ == State::kReady) release_waiting();
      return;
    }
    write_request(std::move(out));
  }

  int16_t version_of(kafka::ApiKey key) const {
    auto k = static_cast<size_t>(key);
    return k < versions_.size() ? versions_[k] : -1;
  }

  // Called by the client's sweep timer.
  void check_deadlines(Clock::time_point now) {
    if (state_ == State::kConnecting && now > connect_deadline_) {
      return fail(make_error(Errc::kTimeout, "connecting to " + address() + " timed out"));
    }
    if (state_ == State::kReady && reauthenticate_at_ && now >= *reauthenticate_at_) {
      // KIP-368: a new SASL exchange on this connection before the session ends; requests
      // wait meanwhile (those in flight are answered first, in order).
      reauthenticate_at_.reset();
      state_ = State::kAuthenticating;
      start_sasl();
    }
    auto late = std::find_if(inflight_.begin(), inflight_.end(),
                             [&](const Inflight& r) { return now > r.deadline; });
    if (late != inflight_.end()) {
      return fail(make_error(Errc::kTimeout, "request to " + address() + " timed out after " +
                                                 std::to_string(config_.request_timeout_ms) +
                                                 " ms"));
    }
  }

  void close() { fail(make_error(Errc::kClosed, "client closed")); }

 private:
  // kAuthenticating: re-authentication (KIP-368) of a connection that was ready.
  enum class State : uint8_t { kIdle, kConnecting, kReady, kAuthenticating, kClosed };
  struct Inflight {
    int32_t correlation_id;
    kafka::ApiKey api_key;
    int16_t api_version;
    Client::Callback callback;  // null for the handshake
    Clock::time_point deadline;
    Clock::time_point sent;
  };

  // TCP is up: the TLS handshake (with SNI and the broker's name checked against its
  // certificate), then ApiVersions.
  void connected() {
    if (!tls_context_) {
      start_read();
      handshake(kApiVersionsOurMax);
      return;
    }
    tls_.emplace(socket_, *tls_context_);
    SSL* ssl = tls_->native_handle();
    boost::system::error_code not_ip;
    asio::ip::make_address(host_, not_ip);
    if (not_ip) {
      SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host_.c_str()));
    }
    if (config_.security.verify_hostname()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (not_ip) {
        X509_VERIFY_PARAM_set1_host(param, host_.c_str(), host_.size());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str());
      }
    }
    auto self = shared_from_this();
    tls_->async_handshake(asio::ssl::stream_base::client,
                          [self](const boost::system::error_code& ec) {
                            if (self->state_ == State::kClosed) return;
                            if (ec) {
                              return self->fail(make_error(
                                  ec.category() == asio::error::get_ssl_category()
                                      ? Errc::kSecurity
                                      : Errc::kNetwork,
                                  "TLS handshake with " + self->address() + " failed: " +
                                      tls_failure(self->tls_->native_handle(), ec, self->host_)));
                            }
                            self->start_read();
                            self->handshake(kApiVersionsOurMax);
                          });
  }

  void handshake(int16_t version) {
    kafka::ApiVersionsRequest req;
    req.client_software_name = "sluice";
    req.client_software_version = "0.1.0";
    encode_and_write(kafka::RequestBody(req), kafka::ApiKey::kApiVersions, version, nullptr, true);
  }

  void on_handshake(int16_t version, Bytes frame) {
    auto decoded = kafka::decode_response_frame(kafka::ApiKey::kApiVersions, version, frame);
    const kafka::ApiVersionsResponse* resp = nullptr;
    if (decoded) resp = std::get_if<kafka::ApiVersionsResponse>(&decoded->body);
    if (!resp || resp->error_code == static_cast<int16_t>(kafka::ErrorCode::kUnsupportedVersion)) {
      if (version > 0) {  // an older broker: its reply is a v0 body; ask again at v0
        handshake(0);
        return;
      }
      return fail(
          make_error(Errc::kProtocol, "ApiVersions handshake with " + address() + " failed"));
    }
    for (const auto& api : resp->api_keys) {
      const kafka::ApiInfo* ours = kafka::find_api(api.api_key);
      if (!ours) continue;
      int16_t hi = std::min(ours->max_version, api.max_version);
      int16_t lo = std::max(ours->min_version, api.min_version);
      if (hi >= lo && static_cast<size_t>(api.api_key) < versions_.size()) {
        versions_[static_cast<size_t>(api.api_key)] = hi;
      }
    }
    if (config_.security.sasl()) return start_sasl();
    become_ready();
  }

  void become_ready() {
    state_ = State::kReady;
    counters_.connected = true;
    ++counters_.connects;
    release_waiting();
  }

  bool throttled(Clock::time_point now) const { return now < throttled_until_; }

  // Sends the requests that waited (for the handshakes, or out a throttle), in order; while
  // throttled, once the throttle is over.
  void release_waiting() {
    if (state_ != State::kReady || waiting_.empty()) return;
    if (throttled(Clock::now())) {
      if (throttle_timer_armed_) return;
      throttle_timer_armed_ = true;
      throttle_timer_.expires_at(throttled_until_);
      auto self = shared_from_this();
      throttle_timer_.async_wait([self](const boost::system::error_code&) {
        self->throttle_timer_armed_ = false;
        if (self->state_ != State::kClosed) self->release_waiting();
      });
      return;
    }
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& out : waiting) write_request(std::move(out));
  }

  // A response's throttle_time_ms (KIP-219): the broker counted this client over a quota and
  // will not read from the connection for that long; requests meanwhile wait here instead of
  // timing out unread there.
  void note_throttle(const kafka::DecodedResponse& decoded, kafka::ApiKey key, int16_t version) {
    const int32_t ms = std::visit(
        [](const auto& body) -> int32_t {
          if constexpr (requires { body.throttle_time_ms; }) {
            return body.throttle_time_ms;
          } else {
            return 0;
          }
        },
        decoded.body);
    if (ms <= 0 || !client_waits_out_throttle(key, version)) return;
    const auto now = Clock::now();
    throttled_until_ = std::max(throttled_until_, now + std::chrono::milliseconds(ms));
    auto& c = counters_;
    ++c.throttle_count;
    c.throttle_sum_ms += ms;
    c.throttle_max_ms = std::max<int64_t>(c.throttle_max_ms, ms);
    log_line(config_, throttle_logged_ ? LogLevel::kDebug : LogLevel::kInfo,
             "broker " + address() + " throttled this client for " + std::to_string(ms) +
                 " ms (over a client quota): its requests to the broker wait that long");
    throttle_logged_ = true;
  }

  // SASL as Kafka clients do it: SaslHandshake v1 naming the mechanism, then the mechanism's
  // messages in SaslAuthenticate requests (PLAIN: one; SCRAM: client-first and client-final,
  // and the server's signature checked).
  void start_sasl() {
    if (version_of(kafka::ApiKey::kSaslHandshake) < 1 ||
        version_of(kafka::ApiKey::kSaslAuthenticate) < 0) {
      return fail(make_error(Errc::kUnsupported,
                             "broker " + address() +
                                 " does not serve SaslHandshake v1 and SaslAuthenticate"));
    }
    kafka::SaslHandshakeRequest req;
    req.mechanism = config_.security.sasl_mechanism;
    auto self = shared_from_this();
    internal_request(req, [self](Result<Response> r) {
      if (!r) return self->fail(r.error());
      const auto& resp = std::get<kafka::SaslHandshakeResponse>(r->decoded->body);
      if (resp.error_code != 0) return self->sasl_handshake_failed(resp);
      const SecurityConfig& sec = self->config_.security;
      if (auto hash = broker::sasl::scram_hash(sec.sasl_mechanism)) {
        self->scram_ = std::make_unique<broker::sasl::ScramClient>(*hash, sec.sasl_username,
                                                                   sec.sasl_password);
        self->sasl_authenticate(self->scram_->first());
      } else {
        self->sasl_authenticate(std::string(1, '\0') + sec.sasl_username + '\0' +
                                sec.sasl_password);
      }
    });
  }

  void sasl_handshake_failed(const kafka::SaslHandshakeResponse& resp) {
    std::string offered;
    for (const auto& m : resp.mechanisms) offered += (offered.empty() ? "" : ", ") + m;
    if (resp.error_code == static_cast<int16_t>(kafka::ErrorCode::kUnsupportedSaslMechanism)) {
      return fail(Error{resp.error_code, "SASL mechanism " + config_.security.sasl_mechanism +
                                             " is not enabled on " + address() + " (it offers " +
                                             offered + "; set sasl.mechanism)"});
    }
    fail(kafka_error(resp.error_code, "SaslHandshake with " + address() +
                                          " (is this a SASL listener? check security.protocol)"));
  }

  void sasl_authenticate(std::string message) {
    kafka::SaslAuthenticateRequest req;
    const auto* p = reinterpret_cast<const std::byte*>(message.data());
    req.auth_bytes.assign(p, p + message.size());
    OPENSSL_cleanse(message.data(), message.size());
    auto self = shared_from_this();
    internal_request(req, [self](Result<Response> r) {
      if (!r) return self->fail(r.error());
      auto& resp = std::get<kafka::SaslAuthenticateResponse>(r->decoded->body);
      self->on_sasl_authenticate(resp);
      OPENSSL_cleanse(resp.auth_bytes.data(), resp.auth_bytes.size());
    });
    OPENSSL_cleanse(req.auth_bytes.data(), req.auth_bytes.size());
  }

  void on_sasl_authenticate(const kafka::SaslAuthenticateResponse& resp) {
    const SecurityConfig& sec = config_.security;
    if (resp.error_code != 0) {
      return fail(Error{resp.error_code,
                        "SASL " + sec.sasl_mechanism + " authentication of user '" +
                            sec.sasl_username + "' with " + address() + " failed: " +
                            resp.error_message.value_or(std::string(kafka::error_name(
                                static_cast<kafka::ErrorCode>(resp.error_code)))) +
                            " (check sasl.username, sasl.password and sasl.mechanism)"});
    }
    const std::string answer(reinterpret_cast<const char*>(resp.auth_bytes.data()),
                             resp.auth_bytes.size());
    if (scram_ && !scram_sent_final_) {
      auto final_message = scram_->final(answer);
      if (!final_message) return sasl_refused(final_message.error().message);
      scram_sent_final_ = true;
      return sasl_authenticate(std::move(*final_message));
    }
    if (scram_) {
      auto verified = scram_->verify(answer);
      if (!verified) return sasl_refused(verified.error().message);
    }
    scram_.reset();
    scram_sent_final_ = false;
    if (resp.session_lifetime_ms > 0) {
      // At most 2^31 ms (24 days) ahead: a huge lifetime must not overflow the clock.
      const int64_t lifetime_ms = std::min<int64_t>(resp.session_lifetime_ms, int64_t{1} << 31);
      reauthenticate_at_ = Clock::now() + std::chrono::milliseconds(lifetime_ms * 85 / 100);
    }
    become_ready();
  }

  void sasl_refused(const std::string& why) {
    fail(make_error(Errc::kSecurity, "SASL " + config_.security.sasl_mechanism + " with " +
                                         address() + ": " + why));
  }

  void internal_request(const kafka::RequestBody& body, Client::Callback callback) {
    auto key = kafka::api_key_of(body);
    encode_and_write(body, key, version_of(key), std::move(callback), true);
  }

  void write_request(Outgoing out) {
    auto key = kafka::api_key_of(out.body);
    int16_t version = version_of(key);
    if (version < 0) {
      std::string name(kafka::find_api(static_cast<int16_t>(key))
                           ? kafka::find_api(static_cast<int16_t>(key))->name
                           : "?");
      out.callback(
          unexpected(make_error(Errc::kUnsupported, "broker " + address() + " does not serve " +
                                                        name + " at a version we speak")));
      return;
    }
    encode_and_write(out.body, key, version, std::move(out.callback), out.expect_response,
                     out.timeout_ms);
  }

  void encode_and_write(const kafka::RequestBody& body, kafka::ApiKey key, int16_t version,
                        Client::Callback callback, bool expect_response, int timeout_ms = 0) {
    kafka::RequestHeader header{static_cast<int16_t>(key), version, next_correlation_id_++,
                                config_.client_id};
    kafka::EncodedFrame frame = kafka::encode_request(header, body);
    SLUICE_ASSERT(frame.splices.empty());
    write_buffer_.insert(write_buffer_.end(), frame.bytes.begin(), frame.bytes.end());
    ++counters_.requests;
    counters_.tx_bytes += static_cast<int64_t>(frame.bytes.size());
    if (expect_response) {
      const auto now = Clock::now();
      inflight_.push_back(Inflight{
          header.correlation_id, key, version, std::move(callback),
          now + std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : config_.request_timeout_ms),
          now});
      ++counters_.inflight;
    } else if (callback) {
      written_callbacks_.push_back(std::move(callback));
    }
    flush_writes();
  }

  void flush_writes() {
    if (writing_ || write_buffer_.empty() || state_ == State::kClosed) return;
    writing_ = true;
    sending_.swap(write_buffer_);
    write_buffer_.clear();
    auto done = std::move(written_callbacks_);
    written_callbacks_.clear();
    auto self = shared_from_this();
    async_write(
        asio::buffer(sending_),
        [self, done = std::move(done)](const boost::system::error_code& ec, size_t) mutable {
          self->writing_ = false;
          self->sending_.clear();
          if (self->state_ == State::kClosed) {
            for (auto& cb : done) {
              cb(unexpected(make_error(Errc::kNetwork, "connection closed")));
            }
            return;
          }
          if (ec) {
            for (auto& cb : done) {
              cb(unexpected(make_error(Errc::kNetwork, "write failed")));
            }
            return self->fail(self->lost(ec));
          }
          for (auto& cb : done) cb(Response{});
          self->flush_writes();
        });
  }

  template <class Buffers, class Handler>
  void async_read(const Buffers& buffers, Handler&& handler) {
    if (tls_) return asio::async_read(*tls_, buffers, std::forward<Handler>(handler));
    asio::async_read(socket_, buffers, std::forward<Handler>(handler));
  }
  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    if (tls_) return asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
    asio::async_write(socket_, buffers, std::forward<Handler>(handler));
  }

  // The connection broke: with TLS, an alert from the broker says why; closed before the
  // handshakes finished, the listener may want TLS or SASL.
  Error lost(const boost::system::error_code& ec) {
    if (tls_ && ec.category() == asio::error::get_ssl_category()) {
      return make_error(Errc::kSecurity, "TLS session with " + address() + " failed: " +
                                             tls_failure(nullptr, ec, host_));
    }
    std::string text = "connection to " + address() + " lost: " + ec.message();
    if (state_ == State::kConnecting && !config_.security.tls()) {
      text += " (closed before the handshake finished: an SSL or SASL_SSL listener? set "
              "security.protocol)";
    } else if (answered_ == 0 && !config_.security.sasl()) {
      // A SASL listener answers ApiVersions, then closes at the first other request.
      text += " (closed at the first request: a SASL listener? set security.protocol to " +
              std::string(config_.security.tls() ? "SASL_SSL" : "SASL_PLAINTEXT") +
              " and sasl.mechanism, sasl.username, sasl.password)";
    }
    return make_error(Errc::kNetwork, text);
  }

  void start_read() {
    auto self = shared_from_this();
    async_read(
        asio::buffer(size_buf_), [self](const boost::system::error_code& ec, size_t) {
          if (self->state_ == State::kClosed) return;
          if (ec) return self->fail(self->lost(ec));
          uint32_t size = load_be<uint32_t>(self->size_buf_.data());
          if (size < 4 || size > kResponseBytesMax) {
            return self->fail(make_error(Errc::kProtocol, not_kafka_message(self->address(),
                                                                          self->size_buf_)));
          }
          // Not zero-filled: the socket overwrites every byte (a 1 MiB Fetch answer's memset was
          // 6% of a consumer's time).
          std::shared_ptr<std::byte[]> frame = std::make_shared_for_overwrite<std::byte[]>(size);
          self->async_read(
              asio::buffer(frame.get(), size),
              [self, frame, size](const boost::system::error_code& ec2, size_t) {
                if (self->state_ == State::kClosed) return;
                if (ec2) return self->fail(self->lost(ec2));
                self->on_frame(frame, size);
                if (self->state_ != State::kClosed) self->start_read();
              });
        });
  }

  void on_frame(std::shared_ptr<const std::byte[]> owner, size_t size) {
    const Bytes frame(owner.get(), size);
    int32_t correlation_id = load_be<int32_t>(frame.data());
    if (inflight_.empty() || inflight_.front().correlation_id != correlation_id) {
      return fail(make_error(
          Errc::kProtocol,
          "unexpected correlation id " + std::to_string(correlation_id) + " from " + address()));
    }
    Inflight req = std::move(inflight_.front());
    inflight_.pop_front();
    --counters_.inflight;
    ++counters_.responses;
    counters_.rx_bytes += static_cast<int64_t>(frame.size()) + 4;
    if (config_.statistics_interval_ms > 0) {
      const int64_t us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - req.sent).count();
      auto& c = counters_;
      c.rtt_min_us = c.rtt_count == 0 ? us : std::min(c.rtt_min_us, us);
      c.rtt_max_us = c.rtt_count == 0 ? us : std::max(c.rtt_max_us, us);
      c.rtt_sum_us += us;
      ++c.rtt_count;
    }
    if (!req.callback) {
      on_handshake(req.api_version, frame);
      return;
    }
    auto decoded = kafka::decode_response_frame(req.api_key, req.api_version, frame);
    if (!decoded) {
      ++counters_.errors;
      req.callback(
          unexpected(make_error(Errc::kProtocol, "cannot decode response from " + address() + ": " +
                                                     decoded.error().to_string())));
      return;
    }
    ++answered_;
    note_throttle(*decoded, req.api_key, req.api_version);
    Response r;
    r.frame = std::move(owner);
    r.decoded = std::make_shared<kafka::DecodedResponse>(std::move(*decoded));
    r.api_version = req.api_version;
    req.callback(std::move(r));
  }

  void fail(const Error& e) {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    boost::system::error_code ignore;
    socket_.close(ignore);
    resolver_.cancel();
    throttle_timer_.cancel();
    auto inflight = std::move(inflight_);
    auto waiting = std::move(waiting_);
    auto written = std::move(written_callbacks_);
    inflight_.clear();
    waiting_.clear();
    written_callbacks_.clear();
    on_closed_(key_);
    counters_.connected = false;
    counters_.inflight = 0;
    if (e.code != static_cast<int>(Errc::kClosed)) {
      ++counters_.disconnects;
      for (auto& r : inflight) counters_.errors += r.callback ? 1 : 0;
      counters_.errors += static_cast<int64_t>(waiting.size());
      log_line(config_, LogLevel::kNotice, e.message);
    }
    for (auto& r : inflight) {
      if (r.callback) r.callback(unexpected(e));
    }
    for (auto& w : waiting) w.callback(unexpected(e));
    for (auto& cb : written) cb(unexpected(e));
  }

  const ClientConfig& config_;
  BrokerCounters& counters_;
  asio::ssl::context* tls_context_;  // null: plaintext
  int32_t key_;
  std::string host_;
  std::string port_;
  tcp::socket socket_;
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;  // over socket_, once connected
  tcp::resolver resolver_;
  asio::steady_timer throttle_timer_;  // armed while requests wait out a throttle
  bool throttle_timer_armed_ = false;
  Clock::time_point throttled_until_{};  // KIP-219: no request is written before
  bool throttle_logged_ = false;
  std::function<void(int32_t)> on_closed_;
  State state_ = State::kIdle;
  Clock::time_point connect_deadline_;
  std::array<int16_t, 128> versions_{};  // by api key (Kafka's reach the 80s)
  int32_t next_correlation_id_ = 1;
  std::deque<Outgoing> waiting_;
  std::deque<Inflight> inflight_;
  std::vector<std::byte> write_buffer_;
  std::vector<std::byte> sending_;
  std::vector<Client::Callback> written_callbacks_;
  bool writing_ = false;
  std::array<std::byte, 4> size_buf_{};
  std::unique_ptr<broker::sasl::ScramClient> scram_;  // during a SCRAM exchange
  bool scram_sent_final_ = false;
  int64_t answered_ = 0;  // responses after ApiVersions (SASL ones included)
  std::optional<Clock::time_point> reauthenticate_at_;  // KIP-368 session lifetime
};

}  // namespace detail

struct Client::Impl {
  explicit Impl(ClientConfig c)
      : config(std::move(c)), work(asio::make_work_guard(io)), sweep(io), stats_timer(io) {
    if (auto valid = validate(config.security); !valid) {
      config_error = valid.error();
    } else if (config.security.tls()) {
      auto ctx = make_tls_context(config.security);
      if (ctx) {
        tls_context = std::move(*ctx);
      } else {
        config_error = ctx.error();
      }
    }
  }

  ClientConfig config;
  // A security setting that cannot work (unreadable CA file, ...): every request fails with it.
  std::optional<Error> config_error;
  std::shared_ptr<asio::ssl::context> tls_context;
  // I/O thread only; before `io` and `connections`, so it outlives every Connection.
  std::map<int32_t, detail::BrokerCounters> counters;
  Clock::time_point started = Clock::now();
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  asio::steady_timer sweep;
  asio::steady_timer stats_timer;
  Clock::time_point stats_due{};
  std::thread thread;
  // I/O thread only.
  std::map<int32_t, std::shared_ptr<detail::Connection>> connections;
  size_t bootstrap_next = 0;
  bool closing = false;

  mutable std::mutex metadata_mutex;  // read by every producer send, written on refresh
  std::shared_ptr<const ClusterMetadata> metadata;

  static int32_t bootstrap_key(size_t i) { return -2 - static_cast<int32_t>(i); }

  void arm_sweep() {
    sweep.expires_after(std::chrono::milliseconds(100));
    sweep.async_wait([this](const boost::system::error_code& ec) {
      if (ec || closing) return;
      auto now = Clock::now();
      auto copy = connections;
      for (auto& [k, c] : copy) c->check_deadlines(now);
      arm_sweep();
    });
  }

  Result<std::shared_ptr<detail::Connection>> connection_for(int32_t node) {
    if (node == kAnyBroker) {
      for (auto& [k, c] : connections) {
        if (c->ready()) return c;
      }
      for (auto& [k, c] : connections) return c;
      // Prefer a known broker from metadata, else the bootstrap list in rotation.
      auto md = current_metadata();
      if (md && !md->brokers.empty() && bootstrap_next % 2 == 1) {
        const auto& b = md->brokers[(bootstrap_next / 2) % md->brokers.size()];
        ++bootstrap_next;
        return open(b.node_id, b.host, std::to_string(b.port));
      }
      if (config.bootstrap_servers.empty()) {
        return unexpected(make_error(Errc::kNoBroker, "no bootstrap brokers configured"));
      }
      size_t i = (bootstrap_next++ / 2) % config.bootstrap_servers.size();
      const std::string& hp = config.bootstrap_servers[i];
      auto colon = hp.rfind(':');
      return open(bootstrap_key(i), hp.substr(0, colon), hp.substr(colon + 1));
    }
    auto it = connections.find(node);
    if (it != connections.end()) return it->second;
    auto md = current_metadata();
    const BrokerInfo* b = md ? md->broker(node) : nullptr;
    if (!b) {
      return unexpected(make_error(
          Errc::kNoBroker, "broker " + std::to_string(node) + " is not in the cluster metadata"));
    }
    return open(node, b->host, std::to_string(b->port));
  }

  void arm_stats() {
    stats_due += std::chrono::milliseconds(config.statistics_interval_ms);
    stats_timer.expires_at(stats_due);
    stats_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || closing) return;
      std::string json = stats_json();
      arm_stats();
      config.stats(json);
    });
  }

  // The stats document (docs/clients.md lists the fields); resets the round-trip windows.
  std::string stats_json() {
    JsonWriter w;
    const auto now = Clock::now();
    w.begin_object().field("name", config.client_id).field("type", config.type);
    w.field("ts_ms", static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()));
    w.field("age_ms",
            static_cast<int64_t>(
                std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count()));
    w.field("interval_ms", config.statistics_interval_ms);
    detail::BrokerCounters total;
    for (const auto& [key, c] : counters) {
      total.requests += c.requests;
      total.responses += c.responses;
      total.tx_bytes += c.tx_bytes;
      total.rx_bytes += c.rx_bytes;
      total.errors += c.errors;
      total.inflight += c.inflight;
    }
    w.field("requests", total.requests).field("responses", total.responses);
    w.field("tx_bytes", total.tx_bytes).field("rx_bytes", total.rx_bytes);
    w.field("request_errors", total.errors).field("requests_inflight", total.inflight);
    if (config.stats_fields) config.stats_fields(w);
    w.key("brokers").begin_array();
    for (auto& [key, c] : counters) {
      w.begin_object().field("node_id", c.node_id).field("address", c.address);
      w.field("bootstrap", key < 0).field("connected", c.connected);
      w.field("connects", c.connects).field("disconnects", c.disconnects);
      w.field("requests", c.requests).field("responses", c.responses);
      w.field("tx_bytes", c.tx_bytes).field("rx_bytes", c.rx_bytes);
      w.field("errors", c.errors).field("requests_inflight", c.inflight);
      w.key("rtt_us").begin_object().field("count", c.rtt_count);
      w.field("min", c.rtt_min_us).field("max", c.rtt_max_us);
      w.field("avg", c.rtt_count ? c.rtt_sum_us / c.rtt_count : int64_t{0});
      w.end_object();
      w.key("throttle_ms").begin_object().field("count", c.throttle_count);
      w.field("max", c.throttle_max_ms);
      w.field("avg", c.throttle_count ? c.throttle_sum_ms / c.throttle_count : int64_t{0});
      w.end_object().end_object();
      c.rtt_count = c.rtt_sum_us = c.rtt_min_us = c.rtt_max_us = 0;
      c.throttle_count = c.throttle_sum_ms = c.throttle_max_ms = 0;
    }
    w.end_array().end_object();
    return w.take();
  }

  std::shared_ptr<detail::Connection> open(int32_t key, std::string host, std::string port) {
    auto& counted = counters[key];
    counted.node_id = key >= 0 ? key : -1;
    counted.address = host + ":" + port;
    auto c = std::make_shared<detail::Connection>(
        io, config, tls_context.get(), key, std::move(host), std::move(port),
        [this](int32_t k) { connections.erase(k); }, counted);
    connections[key] = c;
    c->start();
    return c;
  }

  std::shared_ptr<const ClusterMetadata> current_metadata() const {
    std::lock_guard lock(metadata_mutex);
    return metadata;
  }

  void merge_metadata(const kafka::MetadataResponse& resp, bool replace_topics) {
    auto md = std::make_shared<ClusterMetadata>();
    {
      std::lock_guard lock(metadata_mutex);
      if (metadata && !replace_topics) md->topics = metadata->topics;
    }
    md->cluster_id = resp.cluster_id.value_or("");
    md->controller_id = resp.controller_id;
    for (const auto& b : resp.brokers) md->brokers.push_back({b.node_id, b.host, b.port, b.rack});
    for (const auto& t : resp.topics) {
      TopicInfo ti{t.name, t.error_code, t.is_internal, {}};
      for (const auto& p : t.partitions) {
        ti.partitions.push_back({p.partition_index, p.leader_id, p.leader_epoch, p.error_code,
                                 p.replica_nodes, p.isr_nodes});
      }
      std::sort(ti.partitions.begin(), ti.partitions.end(),
                [](const auto& a, const auto& b) { return a.partition < b.partition; });
      md->topics[t.name] = std::move(ti);
    }
    md->fetched_at = Clock::now();
    std::lock_guard lock(metadata_mutex);
    metadata = std::move(md);
  }
};

Client::Client(ClientConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {
  impl_->arm_sweep();
  if (impl_->config.statistics_interval_ms > 0 && impl_->config.stats) {
    impl_->stats_due = Clock::now();
    impl_->arm_stats();
  }
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

Client::~Client() {
  std::promise<void> closed;
  asio::post(impl_->io, [this, &closed] {
    impl_->closing = true;
    impl_->sweep.cancel();
    impl_->stats_timer.cancel();
    auto copy = impl_->connections;
    for (auto& [k, c] : copy) c->close();
    closed.set_value();
  });
  closed.get_future().wait();
  impl_->work.reset();
  impl_->io.stop();
  impl_->thread.join();
}

const ClientConfig& Client::config() const { return impl_->config; }

void Client::log(LogLevel level, const std::string& message) const {
  log_line(impl_->config, level, message);
}

void Client::send(int32_t node, kafka::RequestBody request, Callback callback, bool expect_response,
                  int timeout_ms) {
  SLUICE_ASSERT(callback);
  asio::post(impl_->io, [this, node, request = std::move(request), callback = std::move(callback),
                         expect_response, timeout_ms]() mutable {
    if (impl_->closing) {
      callback(unexpected(make_error(Errc::kClosed, "client closed")));
      return;
    }
    if (impl_->config_error) {
      callback(unexpected(*impl_->config_error));
      return;
    }
    auto c = impl_->connection_for(node);
    if (!c) {
      callback(unexpected(c.error()));
      return;
    }
    (*c)->submit({std::move(request), std::move(callback), expect_response, timeout_ms});
  });
}

Result<Response> Client::call(int32_t node, const kafka::RequestBody& request, int timeout_ms) {
  int backoff = impl_->config.retry_backoff_ms;
  for (int attempt = 0;; ++attempt) {
    auto promise = std::make_shared<std::promise<Result<Response>>>();
    auto future = promise->get_future();
    send(
        node, request, [promise](Result<Response> r) { promise->set_value(std::move(r)); }, true,
        timeout_ms);
    Result<Response> r = future.get();
    if (r || attempt >= impl_->config.retries || !retriable(r.error()) ||
        r.error().code == static_cast<int>(Errc::kClosed)) {
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff = std::min(backoff * 2, impl_->config.retry_backoff_max_ms);
  }
}

Result<int16_t> Client::api_version(int32_t node, kafka::ApiKey api_key) {
  // A cheap request makes sure the connection finished its handshake.
  kafka::MetadataRequest probe;
  probe.topics = std::vector<kafka::MetadataRequest::MetadataRequestTopic>{};
  auto r = call(node, probe);
  if (!r) return unexpected(std::move(r).error());
  auto promise = std::make_shared<std::promise<int16_t>>();
  post([this, node, api_key, promise] {
    auto it = impl_->connections.find(node);
    if (node == kAnyBroker) {
      for (auto& [k, c] : impl_->connections) {
        if (c->ready()) {
          promise->set_value(c->version_of(api_key));
          return;
        }
      }
    }
    promise->set_value(it == impl_->connections.end() ? -1 : it->second->version_of(api_key));
  });
  int16_t v = promise->get_future().get();
  if (v < 0) {
    auto* info = kafka::find_api(static_cast<int16_t>(api_key));
    return unexpected(make_error(Errc::kUnsupported,
                                 "the broker does not serve " +
                                     std::string(info ? info->name : "this API") +
                                     " (is it an older broker, or a feature not built yet?)"));
  }
  return v;
}

Result<std::shared_ptr<const ClusterMetadata>> Client::metadata(
    const std::vector<std::string>& topics, bool force_refresh, bool all_topics, bool auto_create) {
  auto md = impl_->current_metadata();
  if (md && !force_refresh && !all_topics &&
      Clock::now() - md->fetched_at <
          std::chrono::milliseconds(impl_->config.metadata_max_age_ms)) {
    bool covered = std::all_of(topics.begin(), topics.end(), [&](const std::string& t) {
      const TopicInfo* ti = md->topic(t);
      return ti && ti->error_code == 0;
    });
    if (covered) return md;
  }
  kafka::MetadataRequest req;
  req.allow_auto_topic_creation = auto_create;
  if (!all_topics) {
    req.topics.emplace();
    for (const auto& t : topics) req.topics->push_back({t});
  }
  auto r = call_as<kafka::MetadataResponse>(kAnyBroker, req);
  if (!r) return unexpected(std::move(r).error());
  impl_->merge_metadata(*r, all_topics);
  return impl_->current_metadata();
}

std::shared_ptr<const ClusterMetadata> Client::cached_metadata() const {
  return impl_->current_metadata();
}

void Client::refresh_metadata_async(std::vector<std::string> topics,
                                    std::function<void(Result<void>)> done) {
  kafka::MetadataRequest req;
  req.allow_auto_topic_creation = false;
  req.topics.emplace();
  for (auto& t : topics) req.topics->push_back({std::move(t)});
  send(kAnyBroker, req, [this, done = std::move(done)](Result<Response> r) {
    if (r) {
      if (auto* m = std::get_if<kafka::MetadataResponse>(&r->decoded->body)) {
        impl_->merge_metadata(*m, false);
      }
    }
    if (done) done(r ? Result<void>() : Result<void>(unexpected(std::move(r).error())));
  });
}

asio::io_context& Client::io() { return impl_->io; }

void Client::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

}  // namespace sluice::client
