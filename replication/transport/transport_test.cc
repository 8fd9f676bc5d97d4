// Transports on loopback, all on one io_context: round trips, calls, coalescing,
// back-pressure, reconnection, and peers that send garbage.
#include "replication/transport/transport.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <map>

#include "replication/transport/frame.h"
#include "replication/transport/test_messages.h"
#include "replication/transport/test_tls.h"
#include "replication/transport/tls.h"
#include "replication/transport/transport.pb.h"

namespace sluice::transport {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using raft::Message;
using raft::MessageType;
using raft::NodeId;

struct Received {
  uint64_t group;
  Message message;
};

class TransportTest : public ::testing::Test {
 protected:
  std::unique_ptr<Transport> make(int32_t id, TransportConfig config = {}, uint16_t port = 0) {
    config.self_id = id;
    if (config.cluster_id.empty()) config.cluster_id = "test-cluster";
    auto t = std::make_unique<Transport>(io_, config);
    const Status s = t->listen("127.0.0.1", port);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    t->on_message([this, id](uint64_t group, Message&& m) {
      received_[id].push_back({group, std::move(m)});
    });
    return t;
  }

  // Brokers 1 and 2, 1 dialling 2 and redialling fast (10-50 ms), connected.
  std::pair<std::unique_ptr<Transport>, std::unique_ptr<Transport>> fast_redial_pair() {
    TransportConfig config;
    config.reconnect_min = 10ms;
    config.reconnect_max = 50ms;
    auto t1 = make(1, config);
    auto t2 = make(2);
    t1->set_peer(2, "127.0.0.1", t2->port());
    EXPECT_TRUE(run_until([&] { return t1->connected(2); }));
    return {std::move(t1), std::move(t2)};
  }

  // Runs the loop until `done` holds or `timeout` passes; returns done().
  template <class Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.run_one_for(10ms);
    }
    return done();
  }
  void run_for(std::chrono::milliseconds d) {
    const auto deadline = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < deadline) io_.run_one_for(5ms);
  }

  // Every message type, with large entries and snapshots, from broker 1 (t1) to broker 2,
  // sent before the connection is up (queued until the hello); each arrives field by field.
  void every_message_type_arrives(Transport& t1) {
    std::vector<Message> sent;
    for (int t = 0; t <= static_cast<int>(MessageType::kTimeoutNow); ++t) {
      sent.push_back(testing::full_message(static_cast<MessageType>(t), 70000, 200000));
      ASSERT_TRUE(t1.send(static_cast<uint64_t>(t) + 10, sent.back()));
    }
    ASSERT_TRUE(run_until([&] { return received_[2].size() == sent.size(); }));
    for (const Message& m : sent) {
      const uint64_t group = static_cast<uint64_t>(m.type) + 10;
      auto it = std::find_if(received_[2].begin(), received_[2].end(),
                             [&](const Received& r) { return r.group == group; });
      ASSERT_NE(it, received_[2].end()) << raft::to_string(m);
      EXPECT_TRUE(same_message(it->message, m)) << raft::to_string(m);
    }
  }

  static Message message(MessageType type, int32_t from, int32_t to) {
    Message m;
    m.type = type;
    m.from = NodeId{from};
    m.to = NodeId{to};
    m.term = Term{3};
    m.commit = LogIndex{5};
    return m;
  }

  // A file of pseudo-random bytes, open while any payload referring to it exists.
  struct DataFile {
    std::shared_ptr<int> fd;
    std::vector<std::byte> bytes;
    raft::Payload part(uint64_t offset, size_t size) const {
      return raft::Payload::in_file(fd, *fd, offset, size);
    }
    Bytes expect(uint64_t offset, size_t size) const { return Bytes(bytes).subspan(offset, size); }
  };
  static DataFile data_file(const std::string& path, size_t size) {
    DataFile f;
    f.bytes.resize(size);
    uint32_t x = 2463534242u;
    for (auto& b : f.bytes) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      b = static_cast<std::byte>(x);
    }
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pwrite(fd, f.bytes.data(), f.bytes.size(), 0), static_cast<ssize_t>(size));
    ::unlink(path.c_str());
    f.fd = std::shared_ptr<int>(new int(fd), [](int* p) {
      ::close(*p);
      delete p;
    });
    return f;
  }

  // Appends whose entries lie in a file, from broker 1 (t1) to broker 2: pieces of the file
  // (adjacent ones, small and large, out of order, 8 MiB at once) between entries in memory
  // (large, and small ones packed). Each arrives holding the file's bytes.
  void file_entries_arrive(Transport& t1, const std::string& path) {
    const DataFile f = data_file(path, 10 << 20);
    struct Piece {
      bool in_file;
      uint64_t offset;
      size_t size;
    };
    const std::vector<std::vector<Piece>> messages = {
        {{true, 0, 100000},
         {true, 100000, 1000},
         {false, 7, 5000},
         {false, 9, 200},
         {true, 300000, 50000},
         {true, 101000, 3000},
         {false, 11, 100}},
        {{true, 1 << 20, 8 << 20}},  // more than the socket takes at once: sendfile waits
        {{false, 3, 64}, {true, 500, 10}, {true, 510, 20}},
    };
    for (const auto& pieces : messages) {
      Message m = message(MessageType::kAppend, 1, 2);
      uint64_t index = 10;
      for (const Piece& p : pieces) {
        raft::Entry e;
        e.index = LogIndex{index++};
        e.term = Term{3};
        e.data = p.in_file ? f.part(p.offset, p.size)
                           : raft::Payload::copy_of(f.expect(p.offset, p.size));
        m.entries.push_back(std::move(e));
      }
      ASSERT_TRUE(t1.send(5, m));
    }
    ASSERT_TRUE(run_until([&] { return received_[2].size() == messages.size(); }, 20000ms));
    for (size_t i = 0; i < messages.size(); ++i) {
      const Message& got = received_[2][i].message;
      ASSERT_EQ(got.entries.size(), messages[i].size());
      for (size_t k = 0; k < got.entries.size(); ++k) {
        const Piece& p = messages[i][k];
        ASSERT_FALSE(got.entries[k].data.in_file());
        const Bytes b = got.entries[k].data.bytes();
        EXPECT_TRUE(std::ranges::equal(b, f.expect(p.offset, p.size)))
            << "message " << i << " entry " << k;
      }
    }
  }

  asio::io_context io_;
  std::map<int32_t, std::vector<Received>> received_;
};

TEST_F(TransportTest, EveryMessageTypeArrivesFieldByField) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_NO_FATAL_FAILURE(every_message_type_arrives(*t1));
  EXPECT_EQ(t1->stats().dropped, 0u);
  EXPECT_EQ(t2->stats().bad_peers, 0u);
}

TEST_F(TransportTest, EntriesInAFileAreSentFromTheFile) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_NO_FATAL_FAILURE(file_entries_arrive(*t1, ::testing::TempDir() + "/transport_file"));
  EXPECT_EQ(t1->stats().file_bytes_out, 100000u + 1000 + 50000 + 3000 + (8u << 20) + 30);
  EXPECT_EQ(t1->stats().dropped, 0u);
  EXPECT_EQ(t2->stats().bad_peers, 0u);
}

TEST_F(TransportTest, AFileEndingBeforeItsEntryEndsTheConnectionNotTheTransport) {
  auto pair = fast_redial_pair();  // no structured bindings: clang 14 cannot capture them
  auto& t1 = pair.first;
  auto& t2 = pair.second;
  const DataFile f = data_file(::testing::TempDir() + "/transport_short", 1 << 20);
  Message m = message(MessageType::kAppend, 1, 2);
  raft::Entry e;
  e.index = LogIndex{4};
  e.term = Term{3};
  e.data = f.part(512 << 10, 1 << 20);  // half of it is past the end (the file was cut)
  m.entries.push_back(e);
  ASSERT_TRUE(t1->send(5, m));
  ASSERT_TRUE(run_until([&] { return !t1->connected(2); }));
  EXPECT_TRUE(received_[2].empty());
  EXPECT_EQ(t2->stats().bad_peers, 0u);  // a frame cut short, as from a crashed peer
  // The connection comes back, and what follows arrives.
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));
  m.entries[0].data = f.part(0, 4096);
  ASSERT_TRUE(t1->send(5, m));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_TRUE(
      std::ranges::equal(received_[2][0].message.entries[0].data.bytes(), f.expect(0, 4096)));
}

TEST_F(TransportTest, AReadysMessagesGoInOneCall) {
  auto t1 = make(1);
  auto t2 = make(2);
  auto t3 = make(3);
  t1->set_peer(2, "127.0.0.1", t2->port());
  t1->set_peer(3, "127.0.0.1", t3->port());
  const std::vector<Message> ready = {message(MessageType::kAppend, 1, 2),
                                      message(MessageType::kAppend, 1, 3),
                                      message(MessageType::kAppend, 1, 4)};  // unknown peer
  EXPECT_EQ(t1->send(8, ready), 2u);
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1 && received_[3].size() == 1; }));
  EXPECT_EQ(received_[3][0].group, 8u);
  EXPECT_EQ(t1->stats().dropped, 1u);
}

TEST_F(TransportTest, ThreeBrokersTalkBothWays) {
  std::vector<std::unique_ptr<Transport>> ts;
  for (int32_t id = 0; id < 3; ++id) ts.push_back(make(id));
  for (int32_t a = 0; a < 3; ++a) {
    for (int32_t b = 0; b < 3; ++b) {
      if (a != b) ts[a]->set_peer(b, "localhost", ts[b]->port());
    }
  }
  for (int32_t a = 0; a < 3; ++a) {
    for (int32_t b = 0; b < 3; ++b) {
      if (a != b) {
        ASSERT_TRUE(ts[a]->send(7, message(MessageType::kVote, a, b)));
      }
    }
  }
  ASSERT_TRUE(run_until([&] {
    return received_[0].size() == 2 && received_[1].size() == 2 && received_[2].size() == 2;
  }));
  for (const auto& [id, msgs] : received_) {
    for (const Received& r : msgs) EXPECT_EQ(*r.message.to, id);
  }
}

TEST_F(TransportTest, HeartbeatsOfAllGroupsInOneFlushTravelAsOneFrame) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));
  run_for(20ms);  // let t2's side of the hello settle
  const auto out_before = t1->stats().frames_out;
  const auto in_before = t2->stats().frames_in;
  constexpr int kGroups = 500;
  for (int g = 0; g < kGroups; ++g) {
    Message m = message(g % 2 ? MessageType::kHeartbeat : MessageType::kHeartbeatResp, 1, 2);
    m.term = Term{static_cast<uint64_t>(g)};
    ASSERT_TRUE(t1->send(static_cast<uint64_t>(g), m));
  }
  ASSERT_TRUE(run_until([&] { return received_[2].size() == kGroups; }));
  EXPECT_EQ(t1->stats().frames_out - out_before, 1u);
  EXPECT_EQ(t2->stats().frames_in - in_before, 1u);
  for (const Received& r : received_[2]) {
    EXPECT_EQ(*r.message.term, r.group);
    EXPECT_EQ(r.message.type,
              r.group % 2 ? MessageType::kHeartbeat : MessageType::kHeartbeatResp);
    EXPECT_EQ(*r.message.from, 1);
    EXPECT_EQ(*r.message.to, 2);
  }
}

TEST_F(TransportTest, LongHeartbeatListsAreCutToTheFrameLimit) {
  TransportConfig config;
  config.max_frame_bytes = 4096;  // the smallest allowed: a few hundred beats per frame
  auto t1 = make(1, config);
  auto t2 = make(2, config);
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));
  run_for(20ms);
  const auto out_before = t1->stats().frames_out;
  constexpr int kGroups = 2000;
  for (int g = 0; g < kGroups; ++g) {
    Message m = message(MessageType::kHeartbeat, 1, 2);
    m.term = Term{~uint64_t{0} - static_cast<uint64_t>(g)};  // the longest varints
    m.commit = LogIndex{~uint64_t{0}};
    ASSERT_TRUE(t1->send(~uint64_t{0} - static_cast<uint64_t>(g), m));
  }
  ASSERT_TRUE(run_until([&] { return received_[2].size() == kGroups; }));
  const auto frames = t1->stats().frames_out - out_before;
  EXPECT_GT(frames, 10u);
  EXPECT_LT(frames, 100u);
  EXPECT_EQ(t2->stats().bad_peers, 0u);
}

TEST_F(TransportTest, AMessageWhoseHeaderWouldBeTooLargeIsDropped) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  Message m = message(MessageType::kAppend, 1, 2);
  for (uint64_t i = 1; i <= 200000; ++i) m.entries.push_back({LogIndex{i}, Term{1}});
  EXPECT_FALSE(t1->send(1, m));
  m.entries.resize(1000);
  EXPECT_TRUE(t1->send(1, m));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_EQ(received_[2][0].message.entries.size(), 1000u);
}

TEST_F(TransportTest, CallsGetRepliesLaterAndInOrder) {
  auto t1 = make(1);
  auto t2 = make(2);
  t2->on_call([this](int32_t from, uint32_t method, std::string request, Transport::Reply reply) {
    std::string response = std::to_string(from) + "/" + std::to_string(method) + "/" + request;
    // Reply on a later turn, as a handler waiting on the controller would.
    asio::post(io_, [reply = std::move(reply), response = std::move(response)] {
      reply(response);
    });
  });
  t1->set_peer(2, "127.0.0.1", t2->port());
  std::vector<std::string> replies;
  for (int i = 0; i < 20; ++i) {
    t1->call(2, 4, "req" + std::to_string(i), 5000ms, [&](Result<std::string> r) {
      ASSERT_TRUE(r) << r.error().message;
      replies.push_back(*r);
    });
  }
  ASSERT_TRUE(run_until([&] { return replies.size() == 20; }));
  EXPECT_EQ(replies.front(), "1/4/req0");
  EXPECT_EQ(replies.back(), "1/4/req19");

  // A large request and response travel as payload.
  std::string big(3 << 20, 'b');
  std::optional<Result<std::string>> big_reply;
  t1->call(2, 9, big, 5000ms, [&](Result<std::string> r) { big_reply = std::move(r); });
  ASSERT_TRUE(run_until([&] { return big_reply.has_value(); }));
  ASSERT_TRUE(*big_reply);
  EXPECT_EQ(big_reply->value(), "1/9/" + big);
}

TEST_F(TransportTest, CallErrors) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  std::map<std::string, Result<std::string>> results;
  auto keep = [&](std::string name) {
    return [&results, name](Result<std::string> r) { results.emplace(name, std::move(r)); };
  };
  bool inline_done = true;
  t1->call(5, 1, "x", 1000ms, [&](Result<std::string>) { inline_done = false; });
  EXPECT_TRUE(inline_done);  // never inside call()
  t1->call(5, 1, "x", 1000ms, keep("unknown"));
  t1->call(2, 1, "x", 1000ms, keep("no handler"));
  ASSERT_TRUE(run_until([&] { return results.size() == 2; }));
  EXPECT_EQ(results.at("unknown").error().code, static_cast<int>(CallErrc::kUnknownPeer));
  EXPECT_EQ(results.at("no handler").error().code, static_cast<int>(CallErrc::kRemote));

  std::vector<Transport::Reply> parked;  // t2 never answers these
  t2->on_call([&](int32_t, uint32_t, std::string, Transport::Reply reply) {
    parked.push_back(std::move(reply));
  });
  const auto start = std::chrono::steady_clock::now();
  t1->call(2, 1, "x", 100ms, keep("timeout"));
  ASSERT_TRUE(run_until([&] { return results.size() == 3; }));
  EXPECT_EQ(results.at("timeout").error().code, static_cast<int>(CallErrc::kTimeout));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  ASSERT_EQ(parked.size(), 1u);
  parked[0]("late");  // the caller gave up: the reply is ignored
  run_for(20ms);

  t1->call(2, 1, "x", 5000ms, keep("peer gone"));
  ASSERT_TRUE(run_until([&] { return parked.size() == 2; }));
  t2.reset();  // the callee goes away with the call pending
  ASSERT_TRUE(run_until([&] { return results.size() == 4; }));
  EXPECT_EQ(results.at("peer gone").error().code, static_cast<int>(CallErrc::kNotConnected));

  t1->set_peer(3, "127.0.0.1", 1);  // nobody listens there
  t1->call(3, 1, "x", 5000ms, keep("closed"));
  t1->close();  // completes it before returning
  EXPECT_EQ(results.at("closed").error().code, static_cast<int>(CallErrc::kClosed));
  t1->call(3, 1, "x", 5000ms, keep("after close"));
  EXPECT_FALSE(t1->send(1, message(MessageType::kVote, 1, 3)));
  ASSERT_TRUE(run_until([&] { return results.size() == 6; }));
  EXPECT_EQ(results.at("after close").error().code, static_cast<int>(CallErrc::kClosed));
}

// A peer that completes the hello and then never reads.
class StuckPeer {
 public:
  StuckPeer(asio::io_context& io, int32_t id) : id_(id), acceptor_(io), socket_(io) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::receive_buffer_size(4096));
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    acceptor_.async_accept(socket_, [this](boost::system::error_code ec) {
      if (ec) return;
      asio::async_read(socket_, asio::buffer(length_),
                       [this](boost::system::error_code rec, size_t) {
                         if (rec) return;
                         hello_.resize(load_be<uint32_t>(length_.data()));
                         asio::async_read(socket_, asio::buffer(hello_),
                                          [this](boost::system::error_code hec, size_t) {
                                            if (hec) return;
                                            answer_hello();
                                          });
                       });
    });
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void answer_hello() {
    const auto bytes = encode_hello({.cluster_id = "test-cluster", .sender_id = id_}).flatten();
    asio::write(socket_, asio::buffer(bytes));
  }
  int32_t id_;
  tcp::acceptor acceptor_;
  tcp::socket socket_;
  std::array<std::byte, 4> length_{};
  std::vector<std::byte> hello_;
};

TEST_F(TransportTest, BackPressureOnAPeerThatDoesNotRead) {
  TransportConfig config;
  config.max_bytes_in_flight = 1 << 20;
  auto t1 = make(1, config);
  StuckPeer stuck(io_, 9);
  t1->set_peer(9, "127.0.0.1", stuck.port());
  ASSERT_TRUE(run_until([&] { return t1->connected(9); }));
  Message m = message(MessageType::kAppend, 1, 9);
  m.entries.push_back({LogIndex{1}, Term{1}, raft::EntryType::kNormal,
                       raft::Payload::copy_of(std::string(64 << 10, 'p'))});
  uint64_t accepted = 0;
  int refusals_in_a_row = 0;
  // Keep offering for a while, letting the loop write in between: once the socket buffers
  // are full, the budget fills and stays full.
  for (int round = 0; round < 200 && refusals_in_a_row < 20; ++round) {
    bool any = false;
    while (t1->send(3, m)) {
      ++accepted;
      any = true;
      ASSERT_LT(accepted, 10000u) << "send() never pushed back";
    }
    refusals_in_a_row = any ? 0 : refusals_in_a_row + 1;
    run_for(5ms);
  }
  EXPECT_EQ(refusals_in_a_row, 20);
  EXPECT_GT(t1->stats().dropped, 0u);
  // Accepted = written into the kernel (small buffers here) + at most the budget.
  EXPECT_LT(accepted * (64 << 10), (1u << 20) + (16u << 20));
  // Messages to other peers are not held up by the stuck one.
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_TRUE(t1->send(3, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
}

TEST_F(TransportTest, ReconnectsAfterThePeerComesBack) {
  TransportConfig config;
  config.reconnect_min = 10ms;
  config.reconnect_max = 100ms;
  auto t1 = make(1, config);
  auto t2 = make(2);
  const uint16_t port = t2->port();
  t1->set_peer(2, "127.0.0.1", port);
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));

  t2.reset();
  ASSERT_TRUE(run_until([&] { return !t1->connected(2); }));
  EXPECT_FALSE(t1->send(1, message(MessageType::kVote, 1, 2)));  // down: dropped, not queued
  run_for(300ms);  // a few failed dials
  EXPECT_GT(t1->stats().reconnects, 0u);

  t2 = make(2, {}, port);
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 2; }));

  // A new address for the same peer: the old connection is dropped, the new one dialled.
  auto t2b = make(2, {}, 0);
  t1->set_peer(2, "127.0.0.1", t2b->port());
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 3; }));
  t1->remove_peer(2);
  EXPECT_FALSE(t1->connected(2));
  EXPECT_FALSE(t1->send(1, message(MessageType::kVote, 1, 2)));
}

// A peer whose established connection fails is reported lost once (its process killed: the
// broker takes it as silent at once); failed dials while it is down are not reported again.
TEST_F(TransportTest, ALostPeerIsReportedOnceWhenItsConnectionFails) {
  auto pair = fast_redial_pair();  // no structured bindings: clang 14 cannot capture them
  auto& t1 = pair.first;
  auto& t2 = pair.second;
  std::vector<int32_t> lost;
  t1->on_peer_lost([&](int32_t peer) { lost.push_back(peer); });
  t2.reset();  // the peer's sockets close, as a killed process's do
  ASSERT_TRUE(run_until([&] { return !lost.empty(); }));
  run_for(200ms);  // dials that fail: not a loss of an established connection
  EXPECT_EQ(lost, std::vector<int32_t>{2});
  EXPECT_GT(t1->stats().reconnects, 0u);
  t1->close();  // closing is no loss either
  EXPECT_EQ(lost, std::vector<int32_t>{2});
}

TEST_F(TransportTest, RefusesAnotherClusterAndAWrongBroker) {
  TransportConfig other;
  other.cluster_id = "other-cluster";
  auto t1 = make(1);
  auto t2 = make(2, other);
  auto t3 = make(3);
  t1->set_peer(2, "127.0.0.1", t2->port());
  t1->set_peer(4, "127.0.0.1", t3->port());  // broker 3 listens where we expect 4
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return t2->stats().bad_peers > 0 && t3->stats().bad_peers > 0; }));
  run_for(50ms);
  EXPECT_FALSE(t1->connected(2));
  EXPECT_FALSE(t1->connected(4));
  EXPECT_TRUE(received_[2].empty());
}

// A raw client speaking to a transport: what it sends and whether it was disconnected.
class RawClient {
 public:
  RawClient(asio::io_context& io, uint16_t port) : socket_(io) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    read_next();
  }
  void write(const std::vector<std::byte>& bytes) {
    boost::system::error_code ec;
    asio::write(socket_, asio::buffer(bytes), ec);
  }
  void hello(int32_t id, std::string cluster = "test-cluster") {
    write(encode_hello({.cluster_id = std::move(cluster), .sender_id = id}).flatten());
  }
  void finish_writing() {
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
  }
  bool disconnected() const { return disconnected_; }
  size_t bytes_read() const { return received_.size(); }
  const std::vector<std::byte>& received() const { return received_; }

 private:
  void read_next() {
    socket_.async_read_some(asio::buffer(buf_), [this](boost::system::error_code ec, size_t n) {
      const auto* p = reinterpret_cast<const std::byte*>(buf_.data());
      received_.insert(received_.end(), p, p + n);
      if (ec) {
        disconnected_ = true;
        return;
      }
      read_next();
    });
  }
  tcp::socket socket_;
  std::array<char, 4096> buf_{};
  bool disconnected_ = false;
  std::vector<std::byte> received_;
};

std::vector<std::byte> garbage(size_t n, uint32_t seed) {
  std::vector<std::byte> out(n);
  for (auto& b : out) {
    seed = seed * 1103515245u + 12345u;
    b = static_cast<std::byte>(seed >> 16);
  }
  return out;
}

TEST_F(TransportTest, GarbageIsDisconnectedAndOthersKeepBeingServed) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));

  std::vector<std::unique_ptr<RawClient>> clients;
  auto client = [&] {
    clients.push_back(std::make_unique<RawClient>(io_, t2->port()));
    return clients.back().get();
  };
  // Each raw client is another broker id: a newer connection from the same id would
  // replace an older one, which is tested on its own below.
  int32_t next_id = 10;
  // Random bytes instead of a hello.
  client()->write(garbage(1000, 1));
  // A hello, then random bytes.
  RawClient* c = client();
  c->hello(next_id++);
  c->write(garbage(5000, 2));
  // An oversize length.
  c = client();
  c->hello(next_id++);
  c->write({std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff}});
  // A hello that is too large to be a hello.
  c = client();
  c->write(encode_hello({.cluster_id = std::string(8000, 'c'), .sender_id = next_id++}).flatten());
  // A reply on an inbound connection (only outbound ones get replies).
  c = client();
  c->hello(next_id++);
  c->write(encode_reply(1, "r", "").flatten());
  // A message claiming to come from another broker.
  c = client();
  c->hello(next_id++);
  c->write(encode_raft(1, message(MessageType::kVote, 1, 2)).flatten());
  // A second hello.
  c = client();
  c->hello(next_id);
  c->hello(next_id++);
  // A header that does not parse.
  c = client();
  c->hello(next_id++);
  std::vector<std::byte> call = encode_call(1, 1, "abcdef").flatten();
  call[kFramePrefixBytes] = std::byte{0xff};
  c->write(call);
  const size_t bad = clients.size();

  ASSERT_TRUE(run_until([&] {
    return std::all_of(clients.begin(), clients.end(), [](const auto& k) {
      return k->disconnected();
    });
  }));
  EXPECT_EQ(t2->stats().bad_peers, bad);
  EXPECT_TRUE(received_[2].empty());

  // A truncated frame, then the end of the stream: closed, but that is what a crash looks
  // like, so it is not counted as garbage.
  c = client();
  c->hello(next_id++);
  call = encode_call(1, 1, "abcdef").flatten();
  call.resize(call.size() - 3);
  c->write(call);
  c->finish_writing();
  ASSERT_TRUE(run_until([&] { return c->disconnected(); }));
  EXPECT_EQ(t2->stats().bad_peers, bad);

  // Well-formed but misaddressed: dropped, connection kept.
  c = client();
  c->hello(5);
  c->write(encode_raft(1, message(MessageType::kVote, 5, 3)).flatten());
  c->write(encode_raft(1, message(MessageType::kVote, 5, 2)).flatten());
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_FALSE(c->disconnected());
  EXPECT_EQ(*received_[2][0].message.from, 5);
  EXPECT_GE(t2->stats().dropped, 1u);

  // Broker 1 is still served.
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 2; }));
  EXPECT_EQ(t2->stats().bad_peers, bad);
}

TEST_F(TransportTest, ANewerBrokerIsAnsweredWithTheCommonVersion) {
  auto t2 = make(2);
  // A newer broker that still speaks version 1: accepted, and answered with our range.
  RawClient newer(io_, t2->port());
  newer.write(encode_hello({.version_min = 1, .version_max = 9, .cluster_id = "test-cluster",
                            .sender_id = 7}).flatten());
  newer.write(encode_raft(4, message(MessageType::kVote, 7, 2)).flatten());
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1 && !newer.received().empty(); }));
  EXPECT_FALSE(newer.disconnected());
  auto answer = decode_frame(newer.received(), {});
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_EQ(answer->hello.version_max, kProtocolVersionMax);
  EXPECT_EQ(answer->hello.sender_id, 2);
  // One that no longer speaks any version we do: refused.
  RawClient too_new(io_, t2->port());
  too_new.write(encode_hello({.version_min = kProtocolVersionMax + 1, .version_max = 9,
                              .cluster_id = "test-cluster", .sender_id = 8}).flatten());
  ASSERT_TRUE(run_until([&] { return too_new.disconnected(); }));
  EXPECT_EQ(t2->stats().bad_peers, 1u);
}

TEST_F(TransportTest, ACallbackMayCallAgainWhenItsConnectionFails) {
  TransportConfig config;
  config.reconnect_min = 10ms;
  auto t1 = make(1, config);
  auto t2 = make(2);
  std::vector<Transport::Reply> parked;
  t2->on_call([&](int32_t, uint32_t, std::string, Transport::Reply reply) {
    parked.push_back(std::move(reply));
  });
  t1->set_peer(2, "127.0.0.1", t2->port());
  std::vector<int> codes;
  std::function<void(Result<std::string>)> retry = [&](Result<std::string> r) {
    codes.push_back(r ? 0 : r.error().code);
    if (codes.size() == 1) t1->call(2, 1, "again", 5000ms, retry);  // from inside the failure
  };
  t1->call(2, 1, "first", 5000ms, retry);
  ASSERT_TRUE(run_until([&] { return parked.size() == 1; }));
  t2.reset();
  ASSERT_TRUE(run_until([&] { return codes.size() == 2; }));
  EXPECT_EQ(codes[0], static_cast<int>(CallErrc::kNotConnected));
  EXPECT_EQ(codes[1], static_cast<int>(CallErrc::kNotConnected));
}

TEST_F(TransportTest, ANewerConnectionFromAPeerReplacesTheOlderOne) {
  auto t2 = make(2);
  RawClient old_conn(io_, t2->port());
  old_conn.hello(7);
  ASSERT_TRUE(run_until([&] { return old_conn.bytes_read() > 0; }));  // t2's hello came back
  RawClient new_conn(io_, t2->port());
  new_conn.hello(7);
  ASSERT_TRUE(run_until([&] { return old_conn.disconnected(); }));
  new_conn.write(encode_raft(4, message(MessageType::kVote, 7, 2)).flatten());
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_FALSE(new_conn.disconnected());
  EXPECT_EQ(t2->stats().bad_peers, 0u);
}

TEST_F(TransportTest, AHandlerMayDestroyTheTransport) {
  auto t1 = make(1);
  auto t2 = make(2);
  int delivered = 0;
  t2->on_message([&](uint64_t, Message&&) {
    ++delivered;
    t2.reset();  // from inside the callback, with more messages of the frame to go
  });
  t1->set_peer(2, "127.0.0.1", t2->port());
  for (int g = 0; g < 10; ++g) ASSERT_TRUE(t1->send(g, message(MessageType::kHeartbeat, 1, 2)));
  ASSERT_TRUE(run_until([&] { return t2 == nullptr; }));
  run_for(50ms);
  EXPECT_EQ(delivered, 1);
}

TEST_F(TransportTest, RandomlyMutatedFramesNeverHurtTheBroker) {
  auto t1 = make(1);
  auto t2 = make(2);
  t1->set_peer(2, "127.0.0.1", t2->port());
  // A valid stream from broker 7, then copies with a few bytes changed.
  std::vector<std::byte> stream = encode_hello({.cluster_id = "test-cluster", .sender_id = 7}).flatten();
  for (int t = 0; t <= static_cast<int>(MessageType::kTimeoutNow); ++t) {
    Message m = testing::full_message(static_cast<MessageType>(t), 100, 100);
    m.from = NodeId{7};
    const auto frame = encode_raft(static_cast<uint64_t>(t), m).flatten();
    stream.insert(stream.end(), frame.begin(), frame.end());
  }
  const auto call = encode_call(3, 4, "request").flatten();
  stream.insert(stream.end(), call.begin(), call.end());
  uint32_t seed = 12345;
  auto random = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return seed >> 8;
  };
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 100; ++i) {
    std::vector<std::byte> mutated = stream;
    for (int k = 0, n = 1 + static_cast<int>(random() % 4); k < n; ++k) {
      mutated[random() % mutated.size()] = static_cast<std::byte>(random());
    }
    clients.push_back(std::make_unique<RawClient>(io_, t2->port()));
    clients.back()->write(mutated);
    clients.back()->finish_writing();
  }
  ASSERT_TRUE(run_until([&] {
    return std::all_of(clients.begin(), clients.end(), [](const auto& k) {
      return k->disconnected();
    });
  }));
  EXPECT_GT(t2->stats().bad_peers, 0u);
  for (const Received& r : received_[2]) {
    EXPECT_EQ(*r.message.from, 7);
    EXPECT_EQ(*r.message.to, 2);
  }
  const size_t before = received_[2].size();
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == before + 1; }));
}

TEST_F(TransportTest, SilentConnectionIsClosedAfterTheHelloTimeout) {
  TransportConfig config;
  config.hello_timeout = 50ms;
  auto t2 = make(2, config);
  RawClient silent(io_, t2->port());
  ASSERT_TRUE(run_until([&] { return silent.disconnected(); }, 2000ms));
  EXPECT_EQ(t2->stats().bad_peers, 1u);
}

// ---- TLS (TransportConfig::tls) ----

class TransportTlsTest : public TransportTest {
 protected:
  TransportTlsTest()
      : dir_(::testing::TempDir() + "/transport_tls_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()) {
    std::filesystem::create_directories(dir_);
  }
  static std::shared_ptr<asio::ssl::context> context(const TlsFiles& files) {
    auto ctx = make_peer_tls_context(files);
    EXPECT_TRUE(ctx) << (ctx ? "" : ctx.error().message);
    return ctx ? *ctx : nullptr;
  }
  static TransportConfig with_tls(const TlsFiles& files) {
    TransportConfig config;
    config.tls = context(files);
    return config;
  }
  std::string dir_;
};

TEST_F(TransportTlsTest, BrokersWithCertificatesOfTheClusterCaExchangeMessagesAndCalls) {
  testing::TestCa ca(dir_, "cluster");
  auto t1 = make(1, with_tls(ca.issue("broker-1")));
  auto t2 = make(2, with_tls(ca.issue("broker-2")));
  t1->set_peer(2, "127.0.0.1", t2->port());
  t2->set_peer(1, "127.0.0.1", t1->port());
  // Large entries and snapshots: the gather writes go through the TLS stream.
  ASSERT_NO_FATAL_FAILURE(every_message_type_arrives(*t1));
  // The other way, and 500 groups' heartbeats in one frame.
  for (int g = 0; g < 500; ++g) {
    ASSERT_TRUE(t2->send(static_cast<uint64_t>(g), message(MessageType::kHeartbeat, 2, 1)));
  }
  ASSERT_TRUE(run_until([&] { return received_[1].size() == 500; }));
  // Calls, with a reply of 3 MiB.
  t2->on_call([](int32_t from, uint32_t method, std::string request, Transport::Reply reply) {
    reply(method == 9 ? std::string(3 << 20, 'r') : std::to_string(from) + "/" + request);
  });
  std::optional<Result<std::string>> small, big;
  t1->call(2, 4, "hello", 5000ms, [&](Result<std::string> r) { small = std::move(r); });
  t1->call(2, 9, std::string(1 << 20, 'q'), 5000ms,
           [&](Result<std::string> r) { big = std::move(r); });
  ASSERT_TRUE(run_until([&] { return small && big; }));
  ASSERT_TRUE(*small) << small->error().message;
  EXPECT_EQ(**small, "1/hello");
  ASSERT_TRUE(*big) << big->error().message;
  EXPECT_EQ(**big, std::string(3 << 20, 'r'));
  EXPECT_EQ(t1->stats().bad_peers, 0u);
  EXPECT_EQ(t2->stats().bad_peers, 0u);
  EXPECT_EQ(t1->stats().dropped, 0u);
}

TEST_F(TransportTlsTest, EntriesInAFileAreReadAndEncrypted) {
  testing::TestCa ca(dir_, "cluster");
  auto t1 = make(1, with_tls(ca.issue("broker-1")));
  auto t2 = make(2, with_tls(ca.issue("broker-2")));
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_NO_FATAL_FAILURE(file_entries_arrive(*t1, dir_ + "/file"));
  EXPECT_EQ(t1->stats().file_bytes_out, 0u);  // TLS: read, then encrypted
  EXPECT_EQ(t1->stats().dropped, 0u);
  EXPECT_EQ(t2->stats().bad_peers, 0u);
}

TEST_F(TransportTlsTest, APeerWithACertificateFromAnotherCaIsRefused) {
  testing::TestCa ca(dir_, "cluster");
  testing::TestCa rogue(dir_, "rogue");
  TlsFiles intruder = rogue.issue("broker-1");
  intruder.ca = ca.ca_path();  // it trusts the cluster; the cluster does not trust it
  auto t1 = make(1, with_tls(intruder));
  auto t2 = make(2, with_tls(ca.issue("broker-2")));
  int calls = 0;
  t2->on_call([&](int32_t, uint32_t, std::string, Transport::Reply reply) {
    ++calls;
    reply("served");
  });
  t1->set_peer(2, "127.0.0.1", t2->port());
  t1->send(1, message(MessageType::kVote, 1, 2));
  std::optional<Result<std::string>> answer;
  t1->call(2, 4, "let me in", 1000ms, [&](Result<std::string> r) { answer = std::move(r); });
  // Broker 2 dials the intruder too: it refuses the intruder's certificate as a client.
  t2->set_peer(1, "127.0.0.1", t1->port());
  t2->send(1, message(MessageType::kVote, 2, 1));
  ASSERT_TRUE(run_until([&] { return t2->stats().bad_peers >= 2 && answer.has_value(); }));
  run_for(200ms);  // redials are refused as well
  EXPECT_FALSE(*answer);
  EXPECT_FALSE(t1->connected(2));
  EXPECT_FALSE(t2->connected(1));
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(received_[2].empty());
  EXPECT_TRUE(received_[1].empty());
}

TEST_F(TransportTlsTest, PlaintextAndTlsDoNotMix) {
  testing::TestCa ca(dir_, "cluster");
  auto t1 = make(1);  // plain TCP
  auto t2 = make(2, with_tls(ca.issue("broker-2")));
  auto t3 = make(3);                         // plain TCP
  t1->set_peer(2, "127.0.0.1", t2->port());  // a plaintext hello at a TLS listener
  t2->set_peer(3, "127.0.0.1", t3->port());  // a TLS ClientHello at a plaintext listener
  t1->send(1, message(MessageType::kVote, 1, 2));
  t2->send(1, message(MessageType::kVote, 2, 3));
  ASSERT_TRUE(run_until([&] { return t2->stats().bad_peers > 0 && t3->stats().bad_peers > 0; }));
  run_for(100ms);
  EXPECT_FALSE(t1->connected(2));
  EXPECT_FALSE(t2->connected(3));
  EXPECT_TRUE(received_[2].empty());
  EXPECT_TRUE(received_[3].empty());
}

TEST_F(TransportTlsTest, NewConnectionsTakeAReloadedContextAndOpenOnesKeepTheirs) {
  testing::TestCa old_ca(dir_, "old");
  testing::TestCa new_ca(dir_, "new");
  auto t2 = make(2, with_tls(old_ca.issue("broker-2")));
  auto t3 = make(3, with_tls(old_ca.issue("broker-3")));
  t3->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_TRUE(run_until([&] { return t3->connected(2); }));
  // Broker 1 has moved to the new CA already: broker 2 refuses it until it reloads.
  auto t1 = make(1, with_tls(new_ca.issue("broker-1")));
  t1->set_peer(2, "127.0.0.1", t2->port());
  ASSERT_TRUE(run_until([&] { return t2->stats().bad_peers > 0; }));
  EXPECT_FALSE(t1->connected(2));
  t2->set_tls(context(new_ca.issue("broker-2")));
  ASSERT_TRUE(run_until([&] { return t1->connected(2); }));
  ASSERT_TRUE(t1->send(1, message(MessageType::kVote, 1, 2)));
  // Broker 3's connection, made with the old context, still carries messages.
  EXPECT_TRUE(t3->connected(2));
  ASSERT_TRUE(t3->send(1, message(MessageType::kVote, 3, 2)));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 2; }));
}

TEST(TransportTls, ContextErrorsNameTheFile) {
  const std::string dir = ::testing::TempDir() + "/transport_tls_errors";
  std::filesystem::create_directories(dir);
  testing::TestCa ca(dir, "cluster");
  TlsFiles files = ca.issue("broker-1");
  ASSERT_TRUE(make_peer_tls_context(files));
  TlsFiles no_ca = files;
  no_ca.ca.clear();
  auto r = make_peer_tls_context(no_ca);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("ssl.ca.location"), std::string::npos);
  TlsFiles missing = files;
  missing.key = dir + "/nothing.key";
  r = make_peer_tls_context(missing);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("nothing.key"), std::string::npos);
  TlsFiles mismatched = files;
  mismatched.key = ca.issue("broker-2").key;
  r = make_peer_tls_context(mismatched);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("does not match"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace sluice::transport
