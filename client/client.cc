#include "client/client.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "common/assert.h"
#include "protocol/error_codes.h"

namespace sluice::client {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// A response frame larger than this closes the connection (a Fetch answers at most
// fetch.max.bytes plus some overhead; 256 MiB leaves room for large configurations).
constexpr uint32_t kResponseBytesMax = 256u << 20;
constexpr int16_t kApiVersionsOurMax = 3;

}  // namespace

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
  }
  return std::string(kafka::error_name(static_cast<kafka::ErrorCode>(code)));
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

// One TCP connection to one broker. Lives on the I/O thread only.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  struct Outgoing {
    kafka::RequestBody body;
    Client::Callback callback;
    bool expect_response = true;
    int timeout_ms = 0;
  };

  Connection(asio::io_context& io, const ClientConfig& config, int32_t key, std::string host,
             std::string port, std::function<void(int32_t)> on_closed)
      : config_(config),
        key_(key),
        host_(std::move(host)),
        port_(std::move(port)),
        socket_(io),
        resolver_(io),
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
                self->start_read();
                self->handshake(kApiVersionsOurMax);
              });
        });
  }

  void submit(Outgoing out) {
    if (state_ == State::kClosed) {
      out.callback(
          unexpected(make_error(Errc::kNetwork, "connection to " + address() + " closed")));
      return;
    }
    if (state_ != State::kReady) {
      waiting_.push_back(std::move(out));
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
  enum class State : uint8_t { kIdle, kConnecting, kReady, kClosed };
  struct Inflight {
    int32_t correlation_id;
    kafka::ApiKey api_key;
    int16_t api_version;
    Client::Callback callback;  // null for the handshake
    Clock::time_point deadline;
  };

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
    state_ = State::kReady;
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& out : waiting) write_request(std::move(out));
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
    if (expect_response) {
      inflight_.push_back(Inflight{
          header.correlation_id, key, version, std::move(callback),
          Clock::now() +
              std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : config_.request_timeout_ms)});
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
    asio::async_write(
        socket_, asio::buffer(sending_),
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
            return self->fail(make_error(
                Errc::kNetwork, "write to " + self->address() + " failed: " + ec.message()));
          }
          for (auto& cb : done) cb(Response{});
          self->flush_writes();
        });
  }

  void start_read() {
    auto self = shared_from_this();
    asio::async_read(
        socket_, asio::buffer(size_buf_), [self](const boost::system::error_code& ec, size_t) {
          if (self->state_ == State::kClosed) return;
          if (ec) {
            return self->fail(make_error(
                Errc::kNetwork, "connection to " + self->address() + " lost: " + ec.message()));
          }
          uint32_t size = load_be<uint32_t>(self->size_buf_.data());
          if (size < 4 || size > kResponseBytesMax) {
            return self->fail(
                make_error(Errc::kProtocol, "bad response size " + std::to_string(size)));
          }
          auto frame = std::make_shared<std::vector<std::byte>>(size);
          asio::async_read(
              self->socket_, asio::buffer(*frame),
              [self, frame](const boost::system::error_code& ec2, size_t) {
                if (self->state_ == State::kClosed) return;
                if (ec2) {
                  return self->fail(make_error(Errc::kNetwork, "connection to " + self->address() +
                                                                   " lost: " + ec2.message()));
                }
                self->on_frame(frame);
                if (self->state_ != State::kClosed) self->start_read();
              });
        });
  }

  void on_frame(std::shared_ptr<std::vector<std::byte>> frame) {
    int32_t correlation_id = load_be<int32_t>(frame->data());
    if (inflight_.empty() || inflight_.front().correlation_id != correlation_id) {
      return fail(make_error(
          Errc::kProtocol,
          "unexpected correlation id " + std::to_string(correlation_id) + " from " + address()));
    }
    Inflight req = std::move(inflight_.front());
    inflight_.pop_front();
    if (!req.callback) {
      on_handshake(req.api_version, Bytes(*frame));
      return;
    }
    auto decoded = kafka::decode_response_frame(req.api_key, req.api_version, Bytes(*frame));
    if (!decoded) {
      req.callback(
          unexpected(make_error(Errc::kProtocol, "cannot decode response from " + address() + ": " +
                                                     decoded.error().to_string())));
      return;
    }
    Response r;
    r.frame = frame;
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
    auto inflight = std::move(inflight_);
    auto waiting = std::move(waiting_);
    auto written = std::move(written_callbacks_);
    inflight_.clear();
    waiting_.clear();
    written_callbacks_.clear();
    on_closed_(key_);
    for (auto& r : inflight) {
      if (r.callback) r.callback(unexpected(e));
    }
    for (auto& w : waiting) w.callback(unexpected(e));
    for (auto& cb : written) cb(unexpected(e));
  }

  const ClientConfig& config_;
  int32_t key_;
  std::string host_;
  std::string port_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  std::function<void(int32_t)> on_closed_;
  State state_ = State::kIdle;
  Clock::time_point connect_deadline_;
  std::array<int16_t, 64> versions_{};
  int32_t next_correlation_id_ = 1;
  std::deque<Outgoing> waiting_;
  std::deque<Inflight> inflight_;
  std::vector<std::byte> write_buffer_;
  std::vector<std::byte> sending_;
  std::vector<Client::Callback> written_callbacks_;
  bool writing_ = false;
  std::array<std::byte, 4> size_buf_{};
};

}  // namespace detail

struct Client::Impl {
  explicit Impl(ClientConfig c)
      : config(std::move(c)), work(asio::make_work_guard(io)), sweep(io) {}

  ClientConfig config;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  asio::steady_timer sweep;
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

  std::shared_ptr<detail::Connection> open(int32_t key, std::string host, std::string port) {
    auto c = std::make_shared<detail::Connection>(io, config, key, std::move(host), std::move(port),
                                                  [this](int32_t k) { connections.erase(k); });
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
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

Client::~Client() {
  std::promise<void> closed;
  asio::post(impl_->io, [this, &closed] {
    impl_->closing = true;
    impl_->sweep.cancel();
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

void Client::send(int32_t node, kafka::RequestBody request, Callback callback, bool expect_response,
                  int timeout_ms) {
  SLUICE_ASSERT(callback);
  asio::post(impl_->io, [this, node, request = std::move(request), callback = std::move(callback),
                         expect_response, timeout_ms]() mutable {
    if (impl_->closing) {
      callback(unexpected(make_error(Errc::kClosed, "client closed")));
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
