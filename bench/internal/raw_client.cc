// The codec-based client behind internal/client.h: blocking sockets to one broker, Kafka
// frames from protocol/message_frame.h, batches from protocol/record_batch.h. It exists so
// `sluice bench` works without the client libraries; it does no metadata-driven routing
// (every partition is expected on the bootstrap broker), no retries and no idempotence.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "bench/internal/client.h"
#include "common/assert.h"
#include "common/clock.h"
#include "protocol/error_codes.h"
#include "protocol/message_frame.h"
#include "protocol/record_batch.h"

namespace sluice::bench::detail {
namespace {

constexpr int16_t kProduceVersion = 8;
constexpr int16_t kFetchVersion = 11;
constexpr int16_t kMetadataVersion = 8;
constexpr int16_t kCreateTopicsVersion = 4;
constexpr int16_t kListOffsetsVersion = 4;
constexpr int32_t kFrameBytesMax = 256 << 20;
constexpr int32_t kFetchBytesMax = 32 << 20;
constexpr int32_t kFetchPartitionBytesMax = 4 << 20;
constexpr int32_t kProduceTimeoutMs = 30'000;
constexpr int kTopicReadyWaitMs = 10'000;
constexpr const char* kClientId = "sluice-bench";

std::chrono::steady_clock::time_point steady_at(int64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Unexpected<Error> sys_error(const std::string& what) {
  return error(errno, what + ": " + std::strerror(errno));
}

// One blocking TCP connection. Writes come from one thread, reads from one (maybe another).
class Conn {
 public:
  static Result<std::unique_ptr<Conn>> open(const std::string& bootstrap) {
    const size_t colon = bootstrap.rfind(':');
    if (colon == std::string::npos) return error(EINVAL, "bootstrap must be host:port");
    const std::string host = bootstrap.substr(0, colon);
    const std::string port = bootstrap.substr(colon + 1);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return error(EINVAL, "resolve " + bootstrap + ": " + gai_strerror(rc));
    }
    int fd = -1;
    for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
      fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        ::close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(found);
    if (fd < 0) return sys_error("connect " + bootstrap);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return std::unique_ptr<Conn>(new Conn(fd));
  }
  ~Conn() { ::close(fd_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Result<void> write_all(Bytes bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return sys_error("send");
      bytes = bytes.subspan(static_cast<size_t>(n));
    }
    return {};
  }
  // One response frame without its size prefix, into `frame`.
  Result<void> read_frame(std::vector<std::byte>& frame) {
    std::byte size_bytes[4];
    if (auto r = read_exact(size_bytes); !r) return r;
    const int32_t size = load_be<int32_t>(size_bytes);
    if (size < 4 || size > kFrameBytesMax) return error(EPROTO, "bad response frame size");
    frame.resize(static_cast<size_t>(size));
    return read_exact(frame);
  }
  // Wakes a thread blocked in read_frame (it then fails).
  void shutdown() { ::shutdown(fd_, SHUT_RDWR); }

 private:
  explicit Conn(int fd) : fd_(fd) {}
  Result<void> read_exact(MutableBytes out) {
    while (!out.empty()) {
      const ssize_t n = ::recv(fd_, out.data(), out.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) return error(ECONNRESET, "connection closed by the broker");
      if (n < 0) return sys_error("recv");
      out = out.subspan(static_cast<size_t>(n));
    }
    return {};
  }
  int fd_;
};

std::vector<std::byte> encode(kafka::ApiKey key, int16_t version, int32_t correlation_id,
                              const kafka::RequestBody& body) {
  const kafka::RequestHeader header{static_cast<int16_t>(key), version, correlation_id, kClientId};
  kafka::EncodedFrame frame = kafka::encode_request(header, body);
  SLUICE_ASSERT(frame.splices.empty());  // requests carry their records inline
  return std::move(frame.bytes);
}

template <class Response>
Result<Response> decode(kafka::ApiKey key, int16_t version, int32_t correlation_id, Bytes frame) {
  auto decoded = kafka::decode_response_frame(key, version, frame);
  if (!decoded) return error(EPROTO, "bad response: " + decoded.error().to_string());
  if (decoded->correlation_id != correlation_id) {
    return error(EPROTO, "response out of order: correlation id " +
                             std::to_string(decoded->correlation_id) + ", expected " +
                             std::to_string(correlation_id));
  }
  auto* body = std::get_if<Response>(&decoded->body);
  SLUICE_ASSERT(body != nullptr);
  return std::move(*body);
}

// One request, one response, on a connection nobody else is using.
template <class Response>
Result<Response> call(Conn& conn, int32_t& correlation_id, kafka::ApiKey key, int16_t version,
                      const kafka::RequestBody& body, std::vector<std::byte>& frame) {
  const int32_t id = ++correlation_id;
  if (auto w = conn.write_all(encode(key, version, id, body)); !w) return unexpected(w.error());
  if (auto r = conn.read_frame(frame); !r) return unexpected(r.error());
  return decode<Response>(key, version, id, frame);
}

std::string kafka_error(int16_t code) {
  return std::string(kafka::error_name(static_cast<kafka::ErrorCode>(code))) + " (" +
         std::to_string(code) + ")";
}

// ---- producing ----------------------------------------------------------------------------

class RawSink final : public Sink {
 public:
  RawSink(std::unique_ptr<Conn> conn, const SinkOptions& options, AckFn on_ack)
      : conn_(std::move(conn)), options_(options), on_ack_(std::move(on_ack)) {
    SLUICE_ASSERT(options.partitions > 0);
    SLUICE_ASSERT(options.inflight_max > 0);
    kafka::RecordBatchBuilder::Options batch{.compression = options.compression};
    for (int32_t p = 0; p < options.partitions; ++p)
      open_.push_back(Open{.builder = kafka::RecordBatchBuilder(batch)});
    if (options_.acks != 0) receiver_ = std::thread([this] { receive_loop(); });
  }
  ~RawSink() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    conn_->shutdown();
    if (receiver_.joinable()) receiver_.join();
  }

  Result<void> send(int32_t partition, std::optional<Bytes> key, Bytes value,
                    int64_t intended_ns) override {
    SLUICE_ASSERT(partition >= 0 && partition < options_.partitions);
    const int64_t now = steady_ns();
    Open& o = open_[static_cast<size_t>(partition)];
    if (o.builder.empty()) {
      o.first_ns = now;
      next_due_ns_ = std::min(next_due_ns_, now + linger_ns());
    }
    o.builder.append(wall_ms(), key, value);
    o.intended.push_back(intended_ns);
    o.value_bytes += static_cast<int64_t>(value.size());
    const bool full = o.builder.size_bytes_uncompressed() >= batch_bytes();
    if (full || now >= next_due_ns_) return pump(now, full, false);
    return {};
  }

  Result<void> wait_until(int64_t until_ns) override {
    for (;;) {
      const int64_t now = steady_ns();
      if (auto r = pump(now, false, false); !r) return r;
      if (now >= until_ns) return {};
      if (next_due_ns_ <= now) {  // due batches wait for a free slot in the window
        std::unique_lock lock(mu_);
        cv_.wait_until(lock, steady_at(until_ns), [&] { return window_open_locked(); });
        continue;
      }
      std::this_thread::sleep_until(steady_at(std::min(until_ns, next_due_ns_)));
    }
  }

  Result<void> flush() override {
    while (
        std::any_of(open_.begin(), open_.end(), [](const Open& o) { return !o.builder.empty(); })) {
      if (auto r = pump(steady_ns(), true, true); !r) return r;
    }
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return failed_ || inflight_.empty(); });
    if (failed_) return error(EPROTO, failure_);
    return {};
  }

 private:
  struct Open {
    kafka::RecordBatchBuilder builder;
    std::vector<int64_t> intended;
    int64_t value_bytes = 0;
    int64_t first_ns = 0;
  };
  struct Sent {
    int32_t partition;
    std::vector<int64_t> intended;
    int64_t value_bytes;
  };
  struct InFlight {
    int32_t correlation_id;
    std::vector<Sent> batches;
  };

  int64_t linger_ns() const { return int64_t{options_.linger_ms} * 1'000'000; }
  size_t batch_bytes() const { return static_cast<size_t>(options_.batch_bytes); }
  bool window_open_locked() const {
    return failed_ || inflight_.size() < static_cast<size_t>(options_.inflight_max);
  }

  // Sends one request with every full or due batch (all non-empty ones if `all`). With
  // `must` it waits for a slot in the in-flight window; otherwise it sends only if one is free.
  Result<void> pump(int64_t now, bool must, bool all) {
    {
      std::unique_lock lock(mu_);
      if (must) cv_.wait(lock, [&] { return window_open_locked(); });
      if (failed_) return error(EPROTO, failure_);
      if (!window_open_locked()) return {};
    }
    kafka::ProduceRequest request;
    request.acks = options_.acks;
    request.timeout_ms = kProduceTimeoutMs;
    auto& topic = request.topic_data.emplace_back();
    topic.name = options_.topic;
    InFlight flight{.correlation_id = ++correlation_id_};
    std::vector<std::vector<std::byte>> built;
    built.reserve(open_.size());
    next_due_ns_ = INT64_MAX;
    for (size_t p = 0; p < open_.size(); ++p) {
      Open& o = open_[p];
      if (o.builder.empty()) continue;
      const bool due = all || now >= o.first_ns + linger_ns() ||
                       o.builder.size_bytes_uncompressed() >= batch_bytes();
      if (!due) {
        next_due_ns_ = std::min(next_due_ns_, o.first_ns + linger_ns());
        continue;
      }
      auto bytes = o.builder.build();
      if (!bytes) return error(EPROTO, "building a batch: " + bytes.error().message);
      built.push_back(std::move(*bytes));
      topic.partition_data.push_back(
          {.index = static_cast<int32_t>(p), .records = kafka::Records::borrowed(built.back())});
      flight.batches.push_back(Sent{static_cast<int32_t>(p), std::move(o.intended), o.value_bytes});
      o.intended.clear();
      o.value_bytes = 0;
    }
    if (flight.batches.empty()) return {};
    const auto frame =
        encode(kafka::ApiKey::kProduce, kProduceVersion, flight.correlation_id, request);
    if (options_.acks == 0) {
      if (auto w = conn_->write_all(frame); !w) return w;
      for (const Sent& s : flight.batches) on_ack_(s.intended, s.value_bytes, true);
      return {};
    }
    {
      std::lock_guard lock(mu_);
      inflight_.push_back(std::move(flight));
    }
    if (auto w = conn_->write_all(frame); !w) {
      fail("produce: " + w.error().message);
      return w;
    }
    return {};
  }

  void receive_loop() {
    std::vector<std::byte> frame;
    for (;;) {
      auto r = conn_->read_frame(frame);
      InFlight flight;
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        if (!r) {
          lock_free_fail_locked("produce response: " + r.error().message);
          return;
        }
        if (inflight_.empty()) {
          lock_free_fail_locked("produce response without a request");
          return;
        }
        flight = std::move(inflight_.front());
        inflight_.pop_front();
      }
      auto response = decode<kafka::ProduceResponse>(kafka::ApiKey::kProduce, kProduceVersion,
                                                     flight.correlation_id, frame);
      if (!response) {
        fail(response.error().message);
        return;
      }
      complete(flight, *response);
      cv_.notify_all();
    }
  }

  void complete(const InFlight& flight, const kafka::ProduceResponse& response) {
    for (const Sent& s : flight.batches) {
      int16_t code = -1;  // missing from the response counts as failed
      for (const auto& t : response.responses) {
        for (const auto& p : t.partition_responses) {
          if (p.index == s.partition) code = p.error_code;
        }
      }
      if (code != 0 && !warned_) {
        warned_ = true;
        std::fprintf(stderr, "sluice bench: produce to partition %d failed: %s\n", s.partition,
                     kafka_error(code).c_str());
      }
      on_ack_(s.intended, s.value_bytes, code == 0);
    }
  }

  void fail(const std::string& why) {
    std::lock_guard lock(mu_);
    lock_free_fail_locked(why);
  }
  // Fails every batch in flight; the sink is unusable afterwards.
  void lock_free_fail_locked(const std::string& why) {
    if (!failed_) {
      failed_ = true;
      failure_ = why;
      for (const InFlight& f : inflight_) {
        for (const Sent& s : f.batches) on_ack_(s.intended, s.value_bytes, false);
      }
      inflight_.clear();
    }
    cv_.notify_all();
  }

  std::unique_ptr<Conn> conn_;
  const SinkOptions options_;
  const AckFn on_ack_;
  std::vector<Open> open_;  // sender thread only
  int64_t next_due_ns_ = INT64_MAX;
  int32_t correlation_id_ = 0;
  bool warned_ = false;  // receiver thread only

  std::mutex mu_;  // between the sender and the receiver thread
  std::condition_variable cv_;
  std::deque<InFlight> inflight_;
  bool failed_ = false;
  bool stopping_ = false;
  std::string failure_;
  std::thread receiver_;
};

// ---- consuming ----------------------------------------------------------------------------

class RawSource final : public Source {
 public:
  RawSource(std::unique_ptr<Conn> conn, const SourceOptions& options)
      : conn_(std::move(conn)), options_(options), positions_(options.start_offsets) {
    SLUICE_ASSERT(options.partitions.size() == options.start_offsets.size());
  }

  Result<void> poll(const RecordFn& fn) override {
    kafka::FetchRequest request;
    request.replica_id = -1;
    request.max_wait_ms = options_.max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = kFetchBytesMax;
    auto& topic = request.topics.emplace_back();
    topic.topic = options_.topic;
    for (size_t i = 0; i < options_.partitions.size(); ++i) {
      topic.partitions.push_back({.partition = options_.partitions[i],
                                  .fetch_offset = positions_[i],
                                  .partition_max_bytes = kFetchPartitionBytesMax});
    }
    auto response = call<kafka::FetchResponse>(*conn_, correlation_id_, kafka::ApiKey::kFetch,
                                               kFetchVersion, request, frame_);
    if (!response) return unexpected(response.error());
    if (response->error_code != 0)
      return error(EPROTO, "fetch: " + kafka_error(response->error_code));
    for (const auto& t : response->responses) {
      for (const auto& p : t.partitions) {
        if (auto r = take(p, fn); !r) return r;
      }
    }
    return {};
  }

  std::vector<int64_t> positions() const override { return positions_; }

 private:
  Result<void> take(const kafka::FetchResponse::PartitionData& data, const RecordFn& fn) {
    const auto at =
        std::find(options_.partitions.begin(), options_.partitions.end(), data.partition_index);
    if (at == options_.partitions.end()) return error(EPROTO, "fetch: unasked partition");
    if (data.error_code != 0) {
      return error(EPROTO, "fetch partition " + std::to_string(data.partition_index) + ": " +
                               kafka_error(data.error_code));
    }
    int64_t& position = positions_[static_cast<size_t>(at - options_.partitions.begin())];
    if (data.records.is_null()) return {};
    kafka::BatchIterator batches(data.records.bytes());
    for (;;) {
      auto batch = batches.next();
      if (!batch) return error(EPROTO, "fetch: " + batch.error().message);
      if (!batch->has_value()) break;
      const kafka::RecordBatchView& view = **batch;
      if (view.last_offset() < position) continue;
      if (!view.is_control()) {
        auto records = view.records(scratch_);
        if (!records) return error(EPROTO, "fetch: " + records.error().message);
        for (;;) {
          auto record = records->next();
          if (!record) return error(EPROTO, "fetch: " + record.error().message);
          if (!record->has_value()) break;
          const int64_t offset = view.base_offset() + (*record)->offset_delta;
          if (offset < position) continue;
          fn(FetchedRecord{data.partition_index, offset, (*record)->value.value_or(Bytes{})});
        }
      }
      position = view.last_offset() + 1;
    }
    return {};
  }

  std::unique_ptr<Conn> conn_;
  const SourceOptions options_;
  std::vector<int64_t> positions_;
  int32_t correlation_id_ = 0;
  std::vector<std::byte> frame_;
  std::vector<std::byte> scratch_;
};

// ---- admin --------------------------------------------------------------------------------

class RawClient final : public Client {
 public:
  explicit RawClient(std::string bootstrap) : bootstrap_(std::move(bootstrap)) {}

  Result<int32_t> ensure_topic(const std::string& topic, int32_t partitions) override {
    if (auto c = admin(); !c) return unexpected(c.error());
    bool created = false;
    const int64_t deadline = steady_ns() + int64_t{kTopicReadyWaitMs} * 1'000'000;
    for (;;) {
      kafka::MetadataRequest request;
      request.topics.emplace().push_back({.name = topic});
      request.allow_auto_topic_creation = false;
      auto metadata = call<kafka::MetadataResponse>(
          *admin_, correlation_id_, kafka::ApiKey::kMetadata, kMetadataVersion, request, frame_);
      if (!metadata) return unexpected(metadata.error());
      SLUICE_ASSERT(metadata->topics.size() == 1);
      const auto& t = metadata->topics[0];
      const bool ready = t.error_code == 0 && !t.partitions.empty() &&
                         std::all_of(t.partitions.begin(), t.partitions.end(), [](const auto& p) {
                           return p.error_code == 0 && p.leader_id >= 0;
                         });
      if (ready) return static_cast<int32_t>(t.partitions.size());
      if (t.error_code == static_cast<int16_t>(kafka::ErrorCode::kUnknownTopicOrPartition) &&
          !created) {
        if (auto c = create(topic, partitions); !c) return unexpected(c.error());
        created = true;
        continue;
      }
      if (steady_ns() > deadline) {
        return error(ETIMEDOUT, "topic " + topic + " not ready: " + kafka_error(t.error_code));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  Result<std::vector<int64_t>> offsets(const std::string& topic, int32_t partitions,
                                       bool latest) override {
    if (auto c = admin(); !c) return unexpected(c.error());
    kafka::ListOffsetsRequest request;
    request.replica_id = -1;
    auto& t = request.topics.emplace_back();
    t.name = topic;
    for (int32_t p = 0; p < partitions; ++p) {
      t.partitions.push_back({.partition_index = p, .timestamp = latest ? -1 : -2});
    }
    auto response =
        call<kafka::ListOffsetsResponse>(*admin_, correlation_id_, kafka::ApiKey::kListOffsets,
                                         kListOffsetsVersion, request, frame_);
    if (!response) return unexpected(response.error());
    std::vector<int64_t> out(static_cast<size_t>(partitions), -1);
    for (const auto& rt : response->topics) {
      for (const auto& rp : rt.partitions) {
        if (rp.error_code != 0) return error(EPROTO, "list offsets: " + kafka_error(rp.error_code));
        if (rp.partition_index >= 0 && rp.partition_index < partitions) {
          out[static_cast<size_t>(rp.partition_index)] = rp.offset;
        }
      }
    }
    if (std::find(out.begin(), out.end(), -1) != out.end()) {
      return error(EPROTO, "list offsets: a partition is missing");
    }
    return out;
  }

  Result<std::unique_ptr<Sink>> make_sink(const SinkOptions& options, AckFn on_ack) override {
    auto conn = Conn::open(bootstrap_);
    if (!conn) return unexpected(conn.error());
    return std::unique_ptr<Sink>(new RawSink(std::move(*conn), options, std::move(on_ack)));
  }

  Result<std::unique_ptr<Source>> make_source(const SourceOptions& options) override {
    auto conn = Conn::open(bootstrap_);
    if (!conn) return unexpected(conn.error());
    return std::unique_ptr<Source>(new RawSource(std::move(*conn), options));
  }

 private:
  Result<void> admin() {
    if (admin_) return {};
    auto conn = Conn::open(bootstrap_);
    if (!conn) return unexpected(conn.error());
    admin_ = std::move(*conn);
    return {};
  }

  Result<void> create(const std::string& topic, int32_t partitions) {
    kafka::CreateTopicsRequest request;
    request.topics.push_back(
        {.name = topic, .num_partitions = partitions, .replication_factor = -1});
    request.timeout_ms = kTopicReadyWaitMs;
    auto response =
        call<kafka::CreateTopicsResponse>(*admin_, correlation_id_, kafka::ApiKey::kCreateTopics,
                                          kCreateTopicsVersion, request, frame_);
    if (!response) return unexpected(response.error());
    for (const auto& r : response->topics) {
      if (r.error_code != 0 &&
          r.error_code != static_cast<int16_t>(kafka::ErrorCode::kTopicAlreadyExists)) {
        return error(EPROTO, "create topic " + topic + ": " + kafka_error(r.error_code) + " " +
                                 r.error_message.value_or(""));
      }
    }
    return {};
  }

  std::string bootstrap_;
  std::unique_ptr<Conn> admin_;  // used by the coordinating thread only
  int32_t correlation_id_ = 0;
  std::vector<std::byte> frame_;
};

}  // namespace

std::unique_ptr<Client> make_raw_client(const std::string& bootstrap) {
  return std::make_unique<RawClient>(bootstrap);
}

}  // namespace sluice::bench::detail
