// Frames on their own: every message shape round-trips field by field, and every way a peer
// can get a frame wrong is refused with an error (never an assertion).
#include "replication/transport/frame.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "replication/transport/test_messages.h"
#include "replication/transport/transport.pb.h"

namespace sluice::transport {
namespace {

using raft::EntryType;
using raft::Message;
using raft::MessageType;
using raft::NodeId;

using testing::full_message;

constexpr Ends kEnds{.sender_id = 1, .receiver_id = 2};

std::vector<std::byte> frame_of(const pb::Header& h, std::string_view payload = {}) {
  const std::string header = h.SerializeAsString();
  std::vector<std::byte> out(kFramePrefixBytes);
  store_be<uint32_t>(out.data(), static_cast<uint32_t>(4 + header.size() + payload.size()));
  store_be<uint32_t>(out.data() + 4, static_cast<uint32_t>(header.size()));
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (char c : payload) out.push_back(static_cast<std::byte>(c));
  return out;
}

pb::Header raft_header(const Message& m, uint64_t group = 3) {
  const std::vector<std::byte> bytes = encode_raft(group, m).flatten();
  pb::Header h;
  const uint32_t header_bytes = load_be<uint32_t>(bytes.data() + 4);
  EXPECT_TRUE(h.ParseFromArray(bytes.data() + kFramePrefixBytes, static_cast<int>(header_bytes)));
  return h;
}

std::string error_of(const std::vector<std::byte>& bytes) {
  auto f = decode_frame(bytes, kEnds);
  return f ? std::string("accepted") : f.error().message;
}

TEST(Frame, EveryMessageTypeRoundTripsFieldByField) {
  for (int t = 0; t <= static_cast<int>(MessageType::kTimeoutNow); ++t) {
    const Message m = full_message(static_cast<MessageType>(t));
    const std::vector<std::byte> bytes = encode_raft(9, m).flatten();
    auto f = decode_frame(bytes, kEnds);
    ASSERT_TRUE(f) << f.error().message;
    ASSERT_EQ(f->kind, FrameKind::kRaft);
    ASSERT_EQ(f->messages.size(), 1u);
    EXPECT_EQ(f->messages[0].group, 9u);
    EXPECT_TRUE(same_message(f->messages[0].message, m)) << raft::to_string(m);
  }
}

TEST(Frame, LargePayloadsAreReferencedNotCopied) {
  const Message m = full_message(MessageType::kSnapshot, kPackBelowBytes, 1 << 20);
  const OutFrame out = encode_raft(1, m);
  // The large entry; the config entry (small) in a piece of its own; the snapshot.
  ASSERT_EQ(out.payloads.size(), 3u);
  EXPECT_TRUE(out.payloads[0].shares_buffer_with(m.entries[0].data));
  EXPECT_EQ(out.payloads[1], m.entries[2].data);
  EXPECT_FALSE(out.payloads[1].shares_buffer_with(m.entries[2].data));
  EXPECT_TRUE(out.payloads[2].shares_buffer_with(m.snapshot->data));
  EXPECT_EQ(out.size(), out.flatten().size());
}

TEST(Frame, SmallPayloadsArePackedIntoOnePiece) {
  Message m = full_message(MessageType::kAppend, 100);
  for (uint64_t i = 0; i < 500; ++i) {
    m.entries.push_back({LogIndex{200 + i}, Term{9}, EntryType::kNormal,
                         raft::Payload::copy_of(std::string(100, static_cast<char>('a' + i % 26)))});
  }
  const OutFrame out = encode_raft(1, m);
  ASSERT_EQ(out.payloads.size(), 1u);
  EXPECT_EQ(out.size(), out.flatten().size());
  auto f = decode_frame(out.flatten(), kEnds);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_TRUE(same_message(f->messages[0].message, m));
}

TEST(Frame, BeatsCarryEveryFieldAndTakeFromToFromTheConnection) {
  std::vector<GroupMessage> beats;
  for (uint64_t g = 0; g < 50; ++g) {
    Message m;
    m.type = g % 2 ? MessageType::kHeartbeatResp : MessageType::kHeartbeat;
    m.from = NodeId{1};
    m.to = NodeId{2};
    m.term = Term{g + 1};
    m.commit = LogIndex{g * 10};
    m.reject = g % 3 == 0;
    m.quiesce = g % 4 == 0;
    beats.push_back({g, m});
  }
  const std::vector<std::byte> bytes = encode_beats(beats).flatten();
  EXPECT_LT(bytes.size(), 50u * 12);  // compact: a few bytes per group
  auto f = decode_frame(bytes, kEnds);
  ASSERT_TRUE(f) << f.error().message;
  ASSERT_EQ(f->kind, FrameKind::kBeats);
  ASSERT_EQ(f->messages.size(), beats.size());
  for (size_t i = 0; i < beats.size(); ++i) {
    EXPECT_EQ(f->messages[i].group, beats[i].group);
    EXPECT_TRUE(same_message(f->messages[i].message, beats[i].message));
  }
}

TEST(Frame, HelloCallAndReplyRoundTrip) {
  auto hello = decode_frame(
      encode_hello({.cluster_id = "c1", .sender_id = 4, .receiver_id = 2}).flatten(), kEnds);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->kind, FrameKind::kHello);
  EXPECT_EQ(hello->hello.cluster_id, "c1");
  EXPECT_EQ(hello->hello.sender_id, 4);
  EXPECT_EQ(hello->hello.receiver_id, 2);
  EXPECT_EQ(hello->hello.version_max, kProtocolVersionMax);

  auto call = decode_frame(encode_call(77, 5, "request").flatten(), kEnds);
  ASSERT_TRUE(call);
  EXPECT_EQ(call->kind, FrameKind::kCall);
  EXPECT_EQ(call->call_id, 77u);
  EXPECT_EQ(call->method, 5u);
  EXPECT_EQ(call->body, "request");

  auto reply = decode_frame(encode_reply(77, "", "no handler").flatten(), kEnds);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->kind, FrameKind::kReply);
  EXPECT_EQ(reply->error, "no handler");
}

TEST(Frame, NewerHelloWithUnknownFieldsIsUnderstood) {
  // A newer broker adds fields; this one ignores them and negotiates from the version range.
  std::vector<std::byte> bytes =
      encode_hello({.version_min = 1, .version_max = 9, .cluster_id = "c", .sender_id = 3})
          .flatten();
  const std::byte unknown_field[] = {std::byte{0xa0}, std::byte{0x06}, std::byte{0x01}};  // 100: 1
  bytes.insert(bytes.end(), std::begin(unknown_field), std::end(unknown_field));
  store_be<uint32_t>(bytes.data(), static_cast<uint32_t>(bytes.size() - 4));
  store_be<uint32_t>(bytes.data() + 4, load_be<uint32_t>(bytes.data() + 4) + 3);
  auto f = decode_frame(bytes, kEnds);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->hello.version_max, 9u);
}

TEST(Frame, EntrySizesMustSumExactlyToThePayload) {
  const Message m = full_message(MessageType::kAppend);
  const pb::Header h = raft_header(m);
  // The right payload is the first entry's data and the config entry's bytes.
  std::string payload(m.entries[0].data.text());
  payload.append(m.entries[2].data.text());
  EXPECT_EQ(error_of(frame_of(h, payload)), "accepted");
  EXPECT_NE(error_of(frame_of(h, payload + "x")), "accepted");
  EXPECT_NE(error_of(frame_of(h, payload.substr(1))), "accepted");
  pb::Header huge = h;
  huge.mutable_raft()->mutable_entries(0)->set_data_bytes(~uint64_t{0});
  EXPECT_NE(error_of(frame_of(huge, payload)), "accepted");
}

TEST(Frame, OutOfRangeValuesAreRefused) {
  const Message m = full_message(MessageType::kSnapshot);
  std::string payload(m.entries[0].data.text());
  payload.append(m.entries[2].data.text());
  payload.append(m.snapshot->data.text());
  EXPECT_EQ(error_of(frame_of(raft_header(m), payload)), "accepted");

  auto refused = [&](auto&& mutate) {
    pb::Header h = raft_header(m);
    mutate(h);
    return error_of(frame_of(h, payload)) != "accepted";
  };
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->set_type(10); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->mutable_entries(1)->set_type(4); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->set_from(-1); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->set_to(-5); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->mutable_entries(1)->set_index(101); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->mutable_snapshot()->add_voters(2); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.mutable_raft()->mutable_snapshot()->add_learners(1); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.set_kind(static_cast<pb::Header::Kind>(42)); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.set_kind(pb::Header::KIND_UNSPECIFIED); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.clear_raft(); }));
  EXPECT_TRUE(refused([](pb::Header& h) { h.set_kind(pb::Header::BEATS); }));  // payload, no beats
}

TEST(Frame, ReceivedEntriesShareOneBufferThatGoesBackToItsPool) {
  // What a follower receives is written to its log later, on a shard: the entries keep their
  // data in one buffer per frame, from the transport's pool when large enough, and the buffer
  // goes back to the pool (not to malloc) once the last entry lets go of it.
  auto pool = std::make_shared<BufferPool>(64 << 10, 1 << 30);
  Message m = full_message(MessageType::kSnapshot, 100 << 10, 16);
  m.entries.push_back({LogIndex{107}, Term{9}, EntryType::kNormal,
                       raft::Payload::copy_of(std::string(50 << 10, 'b'))});
  const std::vector<std::byte> bytes = encode_raft(1, m).flatten();
  std::vector<raft::Entry> entries;
  raft::Snapshot snapshot;
  {
    auto f = decode_frame(bytes, kEnds, pool.get());
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_TRUE(same_message(f->messages[0].message, m));
    entries = std::move(f->messages[0].message.entries);
    snapshot = std::move(*f->messages[0].message.snapshot);
  }
  // One after the other in one buffer (the no-op entry has no data).
  const std::byte* at = entries[0].data.bytes().data();
  EXPECT_EQ(entries[2].data.bytes().data(), at + entries[0].data.size());
  EXPECT_EQ(entries[3].data.bytes().data(), at + entries[0].data.size() + entries[2].data.size());
  EXPECT_EQ(pool->idle_bytes(), 0u);
  entries.erase(entries.begin(), entries.begin() + 3);
  EXPECT_EQ(pool->idle_bytes(), 0u);  // one entry still refers to it
  entries.clear();  // the snapshot's data, still here, has a copy of its own: no pin
  EXPECT_EQ(snapshot.data.size(), 16u);
  const size_t pooled = pool->idle_bytes();
  EXPECT_GE(pooled, size_t{150} << 10);
  // The next frame as large takes the same buffer.
  {
    auto again = decode_frame(bytes, kEnds, pool.get());
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(pool->idle_bytes(), 0u);
  }
  EXPECT_EQ(pool->idle_bytes(), pooled);
  // Small frames do not take from the pool.
  auto small = decode_frame(encode_raft(1, full_message(MessageType::kAppend)).flatten(), kEnds,
                            pool.get());
  ASSERT_TRUE(small) << small.error().message;
  EXPECT_EQ(pool->idle_bytes(), pooled);
}

TEST(Frame, EntryWidthsRoundTripAndZeroMeansOne) {
  Message m = full_message(MessageType::kAppend);
  m.entries[0].width = 1;  // 101
  m.entries[2].index = LogIndex{103};
  m.entries.push_back({LogIndex{104}, Term{9}, EntryType::kNormal, raft::Payload(), 1'000'000});
  m.entries.push_back({LogIndex{1'000'104}, Term{9}, EntryType::kNormal, raft::Payload(), 7});
  auto f = decode_frame(encode_raft(1, m).flatten(), kEnds);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_TRUE(same_message(f->messages[0].message, m));
  EXPECT_EQ(f->messages[0].message.entries[3].width, 1'000'000u);

  std::string payload(m.entries[0].data.text());
  payload.append(m.entries[2].data.text());
  pb::Header h = raft_header(m);
  h.mutable_raft()->mutable_entries(3)->set_width(0);  // an older sender: one index
  auto old = decode_frame(frame_of(h, payload), kEnds);
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(old->messages[0].message.entries[3].width, 1u);
  // The next entry must start after the whole of this one, and widths never wrap the index.
  h = raft_header(m);
  h.mutable_raft()->mutable_entries(4)->set_index(1'000'103);
  EXPECT_NE(error_of(frame_of(h, payload)), "accepted");
  h = raft_header(m);
  h.mutable_raft()->mutable_entries(4)->set_index(~uint64_t{0} - 2);
  EXPECT_NE(error_of(frame_of(h, payload)), "accepted");
}

TEST(Frame, MalformedConfigEntryIsRefusedAtTheDoor) {
  Message m = full_message(MessageType::kAppend);
  m.entries[2].data = raft::Payload::copy_of("not a configuration");
  EXPECT_NE(error_of(encode_raft(1, m).flatten()), "accepted");
  m.entries[2].data = raft::encode_conf_state({.voters = {NodeId{2}, NodeId{2}}});
  EXPECT_NE(error_of(encode_raft(1, m).flatten()), "accepted");
  m.entries[2].data = raft::encode_conf_state({.voters = {NodeId{-3}}});
  EXPECT_NE(error_of(encode_raft(1, m).flatten()), "accepted");
}

TEST(Frame, BrokenFramingIsRefused) {
  std::vector<std::byte> good = encode_call(1, 1, "abc").flatten();
  EXPECT_EQ(error_of(good), "accepted");
  std::vector<std::byte> bad = good;
  store_be<uint32_t>(bad.data() + 4, 1000);  // header longer than the frame
  EXPECT_NE(error_of(bad), "accepted");
  bad = good;
  bad[kFramePrefixBytes] = std::byte{0xff};  // header does not parse
  EXPECT_NE(error_of(bad), "accepted");
  bad = good;
  bad.pop_back();  // length says one more byte
  EXPECT_NE(error_of(bad), "accepted");
  EXPECT_NE(error_of(std::vector<std::byte>(3)), "accepted");
  pb::Header hello;
  hello.set_kind(pb::Header::HELLO);
  hello.mutable_hello()->set_version_min(2);
  hello.mutable_hello()->set_version_max(1);
  EXPECT_NE(error_of(frame_of(hello)), "accepted");
  hello.mutable_hello()->set_version_min(1);
  EXPECT_EQ(error_of(frame_of(hello)), "accepted");
  EXPECT_NE(error_of(frame_of(hello, "payload")), "accepted");
}

TEST(FrameReader, ReassemblesFramesFedByteByByte) {
  std::vector<std::byte> stream;
  std::vector<Message> sent;
  for (int t = 0; t <= static_cast<int>(MessageType::kTimeoutNow); ++t) {
    sent.push_back(full_message(static_cast<MessageType>(t)));
    const auto bytes = encode_raft(static_cast<uint64_t>(t), sent.back()).flatten();
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  }
  FrameReader reader(1 << 20);
  size_t got = 0;
  for (std::byte b : stream) {
    MutableBytes space = reader.prepare();
    ASSERT_FALSE(space.empty());
    space[0] = b;
    reader.commit(1);
    Bytes frame;
    while (reader.next(&frame) == FrameReader::Next::kFrame) {
      auto f = decode_frame(frame, kEnds);
      ASSERT_TRUE(f) << f.error().message;
      EXPECT_TRUE(same_message(f->messages[0].message, sent[got]));
      ++got;
    }
  }
  EXPECT_EQ(got, sent.size());
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReader, AnnouncedLengthAloneAllocatesNothingBig) {
  FrameReader reader(64 << 20);
  MutableBytes space = reader.prepare();
  store_be<uint32_t>(space.data(), 60 << 20);  // announces 60 MiB, sends 4 bytes
  reader.commit(4);
  Bytes frame;
  EXPECT_EQ(reader.next(&frame), FrameReader::Next::kNeedMore);
  reader.prepare();
  EXPECT_LE(reader.capacity(), 64u << 10);
}

// Feeds `bytes` as fast as the reader takes them; `after_each` sees the bytes fed so far.
template <class AfterEach>
void feed(FrameReader& reader, const std::vector<std::byte>& bytes, AfterEach after_each) {
  size_t fed = 0;
  while (fed < bytes.size()) {
    MutableBytes space = reader.prepare();
    const size_t n = std::min(space.size(), bytes.size() - fed);
    std::copy_n(bytes.begin() + static_cast<ptrdiff_t>(fed), n, space.begin());
    reader.commit(n);
    fed += n;
    after_each(fed);
  }
}

TEST(FrameReader, GrowsAsBytesArriveUpToTheFrame) {
  FrameReader reader(1 << 20);
  const std::vector<std::byte> bytes = encode_call(1, 1, std::string(300 << 10, 'x')).flatten();
  feed(reader, bytes, [&](size_t fed) { EXPECT_LE(reader.capacity(), 2 * fed + (64 << 10)); });
  Bytes frame;
  ASSERT_EQ(reader.next(&frame), FrameReader::Next::kFrame);
  EXPECT_EQ(frame.size(), bytes.size());
}

TEST(FrameReader, GivesBackTheMemoryOfALargeFrame) {
  FrameReader reader(8 << 20);
  const std::vector<std::byte> big = encode_call(1, 1, std::string(2 << 20, 'x')).flatten();
  feed(reader, big, [](size_t) {});
  EXPECT_GE(reader.capacity(), big.size());
  Bytes frame;
  ASSERT_EQ(reader.next(&frame), FrameReader::Next::kFrame);
  reader.prepare();
  EXPECT_LE(reader.capacity(), 64u << 10);
}

TEST(FrameReader, LengthOutOfBoundsIsBad) {
  for (uint32_t length : {0u, 3u, (1u << 20) + 1, 0xffffffffu}) {
    FrameReader reader(1 << 20);
    store_be<uint32_t>(reader.prepare().data(), length);
    reader.commit(4);
    Bytes frame;
    EXPECT_EQ(reader.next(&frame), FrameReader::Next::kBad) << length;
  }
}

}  // namespace
}  // namespace sluice::transport

namespace sluice::transport {
namespace {

// The fuzzer's seeds are real frames (bar the two broken on purpose), so fuzzing starts from
// inputs that reach deep into the decoder.
TEST(FrameCorpus, SeedsDecode) {
  const char* source = std::getenv("SLUICE_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  const std::filesystem::path dir =
      std::filesystem::path(source) / "replication/transport/fuzz/frame_corpus";
  size_t seeds = 0, frames = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(file.path(), std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(chars.empty());
    const std::string name = file.path().filename().string();
    const bool broken = name == "oversize_length" || name == "truncated";
    FrameReader reader(1 << 20);
    MutableBytes space = reader.prepare();
    ASSERT_LE(chars.size() - 1, space.size());
    std::memcpy(space.data(), chars.data() + 1, chars.size() - 1);
    reader.commit(chars.size() - 1);
    Bytes frame;
    FrameReader::Next next;
    while ((next = reader.next(&frame)) == FrameReader::Next::kFrame) {
      auto f = decode_frame(frame, kEnds);
      EXPECT_TRUE(f) << name << ": " << (f ? "" : f.error().message);
      ++frames;
    }
    if (broken) {
      EXPECT_TRUE(next == FrameReader::Next::kBad || reader.buffered() > 0) << name;
    } else {
      EXPECT_EQ(reader.buffered(), 0u) << name;
    }
    ++seeds;
  }
  EXPECT_GE(seeds, 8u);
  EXPECT_GE(frames, 9u);
}

}  // namespace
}  // namespace sluice::transport
