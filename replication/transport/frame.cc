#include "replication/transport/frame.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "replication/transport/transport.pb.h"

namespace sluice::transport {

namespace {

constexpr size_t kReadBufferBytesMin = 64 << 10;
constexpr size_t kReadBufferBytesKeep = 1 << 20;
constexpr uint32_t kMessageTypeMax = static_cast<uint32_t>(raft::MessageType::kTimeoutNow);
constexpr uint32_t kEntryTypeMax = static_cast<uint32_t>(raft::EntryType::kControl);

// Writes prefix and header; payload_bytes follow in the caller's pieces.
OutFrame finish(const pb::Header& header, uint64_t payload_bytes) {
  const size_t header_bytes = header.ByteSizeLong();
  SLUICE_ASSERT(header_bytes <= kHeaderBytesMax);
  const uint64_t length = 4 + header_bytes + payload_bytes;
  // Our own frames must fit the field; the budget checks keep them far below.
  SLUICE_ASSERT(length <= std::numeric_limits<uint32_t>::max());
  OutFrame out;
  out.bytes = kFramePrefixBytes + header_bytes + payload_bytes;
  out.head.resize(kFramePrefixBytes + header_bytes);
  store_be<uint32_t>(out.head.data(), static_cast<uint32_t>(length));
  store_be<uint32_t>(out.head.data() + kLengthBytes, static_cast<uint32_t>(header_bytes));
  header.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(out.head.data() + kFramePrefixBytes));
  return out;
}

void fill_beat(pb::Beat& b, uint64_t group, const raft::Message& m) {
  b.set_group(group);
  b.set_response(m.type == raft::MessageType::kHeartbeatResp);
  b.set_term(*m.term);
  b.set_commit(*m.commit);
  b.set_log_term(*m.log_term);
  b.set_index(*m.index);
  b.set_reject_hint(*m.reject_hint);
  b.set_reject(m.reject);
  b.set_force(m.force);
  b.set_quiesce(m.quiesce);
}

// The payload of a frame being built: large data referenced, runs of small data copied
// into one buffer.
struct Pieces {
  std::vector<raft::Payload> payloads;
  std::vector<std::byte> pack;
  uint64_t bytes = 0;

  void add(const raft::Payload& data) {
    bytes += data.size();
    if (data.empty()) return;
    if (data.size() < kPackBelowBytes && !data.in_file()) {
      pack.insert(pack.end(), data.bytes().begin(), data.bytes().end());
      return;
    }
    end_pack();
    payloads.push_back(data);
  }
  void end_pack() {
    if (pack.empty()) return;
    payloads.push_back(raft::Payload::adopt(std::move(pack)));
    pack = {};
  }
};

bool valid_node(int32_t id) { return id >= 0; }

// ConfState's invariant: both lists sorted, no duplicates, disjoint, real ids.
bool valid_conf(const raft::ConfState& conf) {
  for (const auto* ids : {&conf.voters, &conf.learners}) {
    for (size_t i = 0; i < ids->size(); ++i) {
      if (!valid_node(*(*ids)[i])) return false;
      if (i > 0 && !((*ids)[i - 1] < (*ids)[i])) return false;
    }
  }
  for (raft::NodeId id : conf.learners) {
    if (std::binary_search(conf.voters.begin(), conf.voters.end(), id)) return false;
  }
  return true;
}

// The entries' data of a frame, copied out of the connection's read buffer once, into one
// buffer their Payloads share (from `pool` when it is large enough for one): what arrives
// from a leader is written to the log well after the read buffer has moved on, and a fresh
// allocation per entry was a page fault per 4 KiB received on a follower (docs/benchmarks.md).
class EntryData {
 public:
  EntryData(Bytes data, BufferPool* pool) {
    if (data.empty()) return;
    if (pool != nullptr && data.size() >= pool->min_bytes()) {
      auto buffer = pool->take(data.size());
      buffer->resize(data.size());  // not zeroed
      std::memcpy(buffer->data(), data.data(), data.size());
      view_ = Bytes(*buffer);
      owner_ = std::move(buffer);
    } else {
      auto buffer = std::make_shared<const std::vector<std::byte>>(data.begin(), data.end());
      view_ = Bytes(*buffer);
      owner_ = std::move(buffer);
    }
  }
  // The next `n` bytes, as a Payload sharing the buffer.
  raft::Payload take(uint64_t n) {
    if (n == 0) return {};
    raft::Payload p = raft::Payload::share(owner_, view_.first(n));
    view_ = view_.subspan(n);
    return p;
  }

 private:
  std::shared_ptr<const void> owner_;
  Bytes view_;
};

Result<GroupMessage> decode_raft(const pb::RaftMessage& r, Bytes payload, BufferPool* pool) {
  if (r.type() > kMessageTypeMax) return error(1, "raft message: unknown type");
  if (!valid_node(r.from()) || !valid_node(r.to())) return error(1, "raft message: bad node id");
  // Sizes first, with no arithmetic that can overflow: every piece must fit what is left.
  uint64_t left = payload.size();
  for (const pb::EntryMeta& e : r.entries()) {
    if (e.data_bytes() > left) return error(1, "raft message: entry data beyond payload");
    left -= e.data_bytes();
  }
  if (r.has_snapshot()) {
    if (r.snapshot().data_bytes() > left) return error(1, "raft message: snapshot beyond payload");
    left -= r.snapshot().data_bytes();
  }
  if (left != 0) return error(1, "raft message: payload longer than its entries and snapshot");
  const uint64_t snapshot_bytes = r.has_snapshot() ? r.snapshot().data_bytes() : 0;
  EntryData data(payload.first(payload.size() - snapshot_bytes), pool);

  GroupMessage out;
  out.group = r.group();
  raft::Message& m = out.message;
  m.type = static_cast<raft::MessageType>(r.type());
  m.from = raft::NodeId{r.from()};
  m.to = raft::NodeId{r.to()};
  m.term = Term{r.term()};
  m.log_term = Term{r.log_term()};
  m.index = LogIndex{r.index()};
  m.commit = LogIndex{r.commit()};
  m.reject_hint = LogIndex{r.reject_hint()};
  m.reject = r.reject();
  m.force = r.force();
  m.quiesce = r.quiesce();
  m.entries.reserve(r.entries_size());
  uint64_t last_index = 0;
  for (const pb::EntryMeta& e : r.entries()) {
    if (e.type() > kEntryTypeMax) return error(1, "raft message: unknown entry type");
    if (!m.entries.empty() && e.index() <= last_index) {
      return error(1, "raft message: entry indexes do not increase");
    }
    const uint32_t width = e.width() == 0 ? 1 : e.width();  // 0: a sender that predates widths
    if (e.index() > UINT64_MAX - (width - 1)) return error(1, "raft message: entry width overflows");
    last_index = e.index() + (width - 1);
    raft::Entry entry{.index = LogIndex{e.index()},
                      .term = Term{e.term()},
                      .type = static_cast<raft::EntryType>(e.type()),
                      .data = data.take(e.data_bytes()),
                      .width = width};
    // The core asserts on a configuration entry it cannot decode: refuse it at the door.
    if (entry.type == raft::EntryType::kConfig) {
      auto conf = raft::decode_conf_state(entry.data.bytes());
      if (!conf || !valid_conf(*conf)) return error(1, "raft message: malformed config entry");
    }
    m.entries.push_back(std::move(entry));
  }
  if (r.has_snapshot()) {
    const pb::SnapshotMeta& s = r.snapshot();
    raft::Snapshot snap{.index = LogIndex{s.index()}, .term = Term{s.term()}};
    snap.conf.voters.reserve(s.voters_size());
    for (int32_t id : s.voters()) snap.conf.voters.push_back(raft::NodeId{id});
    snap.conf.learners.reserve(s.learners_size());
    for (int32_t id : s.learners()) snap.conf.learners.push_back(raft::NodeId{id});
    if (!valid_conf(snap.conf)) return error(1, "raft message: malformed snapshot configuration");
    // A copy of its own: a snapshot's few bytes must not keep a frame's entries' buffer.
    if (snapshot_bytes > 0) snap.data = raft::Payload::copy_of(payload.last(snapshot_bytes));
    m.snapshot = std::move(snap);
  }
  return out;
}

Result<std::vector<GroupMessage>> decode_beats(const pb::Header& h, const Ends& ends) {
  if (h.beats_size() == 0) return error(1, "beats: empty list");
  std::vector<GroupMessage> out;
  out.reserve(h.beats_size());
  for (const pb::Beat& b : h.beats()) {
    GroupMessage g;
    g.group = b.group();
    raft::Message& m = g.message;
    m.type = b.response() ? raft::MessageType::kHeartbeatResp : raft::MessageType::kHeartbeat;
    m.from = raft::NodeId{ends.sender_id};
    m.to = raft::NodeId{ends.receiver_id};
    m.term = Term{b.term()};
    m.commit = LogIndex{b.commit()};
    m.log_term = Term{b.log_term()};
    m.index = LogIndex{b.index()};
    m.reject_hint = LogIndex{b.reject_hint()};
    m.reject = b.reject();
    m.force = b.force();
    m.quiesce = b.quiesce();
    out.push_back(std::move(g));
  }
  return out;
}

Result<Frame> decode_header(const pb::Header& h, Bytes payload, const Ends& ends,
                            BufferPool* pool) {
  Frame f;
  switch (h.kind()) {
    case pb::Header::HELLO: {
      if (!payload.empty()) return error(1, "hello: unexpected payload");
      const pb::Hello& hello = h.hello();
      if (hello.version_min() == 0 || hello.version_min() > hello.version_max()) {
        return error(1, "hello: bad version range");
      }
      if (!valid_node(hello.sender_id()) || hello.receiver_id() < -1) {
        return error(1, "hello: bad node id");
      }
      f.kind = FrameKind::kHello;
      f.hello = Hello{.version_min = hello.version_min(),
                      .version_max = hello.version_max(),
                      .cluster_id = hello.cluster_id(),
                      .sender_id = hello.sender_id(),
                      .receiver_id = hello.receiver_id()};
      return f;
    }
    case pb::Header::RAFT: {
      if (!h.has_raft()) return error(1, "raft frame without a message");
      auto m = decode_raft(h.raft(), payload, pool);
      if (!m) return unexpected(std::move(m).error());
      f.kind = FrameKind::kRaft;
      f.messages.push_back(std::move(*m));
      return f;
    }
    case pb::Header::BEATS: {
      if (!payload.empty()) return error(1, "beats: unexpected payload");
      auto beats = decode_beats(h, ends);
      if (!beats) return unexpected(std::move(beats).error());
      f.kind = FrameKind::kBeats;
      f.messages = std::move(*beats);
      return f;
    }
    case pb::Header::CALL:
      f.kind = FrameKind::kCall;
      f.call_id = h.call_id();
      f.method = h.method();
      f.body.assign(as_string_view(payload));
      return f;
    case pb::Header::REPLY:
      if (!h.error().empty() && !payload.empty()) return error(1, "reply: error with payload");
      f.kind = FrameKind::kReply;
      f.call_id = h.call_id();
      f.error = h.error();
      f.body.assign(as_string_view(payload));
      return f;
    default:
      return error(1, "unknown frame kind " + std::to_string(static_cast<int>(h.kind())));
  }
}

}  // namespace

std::vector<std::byte> OutFrame::flatten() const {
  std::vector<std::byte> out(head.begin(), head.end());
  for (const raft::Payload& p : payloads) {
    auto loaded = p.loaded();
    SLUICE_ASSERT(loaded.has_value());
    out.insert(out.end(), loaded->bytes().begin(), loaded->bytes().end());
  }
  const Bytes b = as_bytes(body);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

OutFrame encode_hello(const Hello& hello) {
  pb::Header h;
  h.set_kind(pb::Header::HELLO);
  pb::Hello* out = h.mutable_hello();
  out->set_version_min(hello.version_min);
  out->set_version_max(hello.version_max);
  out->set_cluster_id(hello.cluster_id);
  out->set_sender_id(hello.sender_id);
  out->set_receiver_id(hello.receiver_id);
  return finish(h, 0);
}

OutFrame encode_raft(uint64_t group, const raft::Message& m) {
  pb::Header h;
  h.set_kind(pb::Header::RAFT);
  pb::RaftMessage* r = h.mutable_raft();
  r->set_group(group);
  r->set_type(static_cast<uint32_t>(m.type));
  r->set_from(*m.from);
  r->set_to(*m.to);
  r->set_term(*m.term);
  r->set_log_term(*m.log_term);
  r->set_index(*m.index);
  r->set_commit(*m.commit);
  r->set_reject_hint(*m.reject_hint);
  r->set_reject(m.reject);
  r->set_force(m.force);
  r->set_quiesce(m.quiesce);
  Pieces pieces;
  r->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
  for (const raft::Entry& e : m.entries) {
    pb::EntryMeta* meta = r->add_entries();
    meta->set_index(*e.index);
    meta->set_term(*e.term);
    meta->set_type(static_cast<uint32_t>(e.type));
    meta->set_data_bytes(e.data.size());
    if (e.width != 1) meta->set_width(e.width);  // 1 is the default: nothing on the wire
    pieces.add(e.data);
  }
  if (m.snapshot) {
    pb::SnapshotMeta* s = r->mutable_snapshot();
    s->set_index(*m.snapshot->index);
    s->set_term(*m.snapshot->term);
    for (raft::NodeId id : m.snapshot->conf.voters) s->add_voters(*id);
    for (raft::NodeId id : m.snapshot->conf.learners) s->add_learners(*id);
    s->set_data_bytes(m.snapshot->data.size());
    pieces.add(m.snapshot->data);
  }
  pieces.end_pack();
  OutFrame out = finish(h, pieces.bytes);
  out.payloads = std::move(pieces.payloads);
  return out;
}

uint64_t payload_bytes(const raft::Message& m) {
  uint64_t n = m.snapshot ? m.snapshot->data.size() : 0;
  for (const raft::Entry& e : m.entries) n += e.data.size();
  return n;
}

uint64_t header_bytes_bound(const raft::Message& m) {
  // Each field: a tag byte and at most a 10-byte varint; an entry adds its own tag and length.
  constexpr uint64_t kFixed = 16 * 11;
  constexpr uint64_t kPerEntry = 5 * 11 + 4;
  constexpr uint64_t kPerId = 11;
  const uint64_t ids = m.snapshot ? m.snapshot->conf.voters.size() + m.snapshot->conf.learners.size()
                                  : 0;
  return kFixed + kPerEntry * m.entries.size() + kPerId * ids;
}

bool coalescible(const raft::Message& m) {
  return (m.type == raft::MessageType::kHeartbeat || m.type == raft::MessageType::kHeartbeatResp) &&
         m.entries.empty() && !m.snapshot;
}

uint64_t beat_bytes(uint64_t group, const raft::Message& m) {
  pb::Beat b;
  fill_beat(b, group, m);
  return b.ByteSizeLong() + 3;  // tag and length (under 128 bytes: one byte) of the element
}

OutFrame encode_beats(std::span<const GroupMessage> beats) {
  SLUICE_ASSERT(!beats.empty());
  pb::Header h;
  h.set_kind(pb::Header::BEATS);
  h.mutable_beats()->Reserve(static_cast<int>(beats.size()));
  for (const GroupMessage& g : beats) {
    SLUICE_ASSERT(coalescible(g.message));
    fill_beat(*h.add_beats(), g.group, g.message);
  }
  return finish(h, 0);
}

OutFrame encode_call(uint64_t call_id, uint32_t method, std::string request) {
  pb::Header h;
  h.set_kind(pb::Header::CALL);
  h.set_call_id(call_id);
  h.set_method(method);
  OutFrame out = finish(h, request.size());
  out.body = std::move(request);
  return out;
}

OutFrame encode_reply(uint64_t call_id, std::string response, std::string error) {
  SLUICE_ASSERT(error.empty() || response.empty());
  pb::Header h;
  h.set_kind(pb::Header::REPLY);
  h.set_call_id(call_id);
  h.set_error(std::move(error));
  OutFrame out = finish(h, response.size());
  out.body = std::move(response);
  return out;
}

Result<Frame> decode_frame(Bytes frame, const Ends& ends, BufferPool* pool) {
  if (frame.size() < kFramePrefixBytes) return error(1, "frame shorter than its prefix");
  const uint32_t length = load_be<uint32_t>(frame.data());
  if (length != frame.size() - kLengthBytes) return error(1, "frame length does not match");
  const uint32_t header_bytes = load_be<uint32_t>(frame.data() + kLengthBytes);
  if (header_bytes > kHeaderBytesMax || header_bytes > length - 4) {
    return error(1, "header length beyond the frame");
  }
  pb::Header h;
  if (!h.ParseFromArray(frame.data() + kFramePrefixBytes, static_cast<int>(header_bytes))) {
    return error(1, "header does not parse");
  }
  return decode_header(h, frame.subspan(kFramePrefixBytes + header_bytes), ends, pool);
}

FrameReader::FrameReader(uint32_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

MutableBytes FrameReader::prepare() {
  if (begin_ == end_) {
    begin_ = end_ = 0;
    // A large frame is gone: give its memory back rather than hold it per connection.
    if (buffer_.size() > kReadBufferBytesKeep) std::vector<std::byte>().swap(buffer_);
  }
  if (end_ == buffer_.size()) {
    if (begin_ > 0) {  // drop what was consumed
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == buffer_.size()) {  // full of one partial frame: grow with the bytes received
      // next() said the frame is longer than the buffer and at most the limit, so this grows.
      const size_t frame_bytes_max = size_t{kLengthBytes} + max_frame_bytes_;
      buffer_.resize(std::min(std::max(kReadBufferBytesMin, buffer_.size() * 2),
                              std::max(kReadBufferBytesMin, frame_bytes_max)));
    }
  }
  SLUICE_ASSERT(end_ < buffer_.size());
  return MutableBytes(buffer_).subspan(end_);
}

void FrameReader::commit(size_t n) {
  SLUICE_ASSERT(n <= buffer_.size() - end_);
  end_ += n;
}

FrameReader::Next FrameReader::next(Bytes* frame) {
  const size_t have = end_ - begin_;
  if (have < kLengthBytes) return Next::kNeedMore;
  const uint32_t length = load_be<uint32_t>(buffer_.data() + begin_);
  if (length < kFrameLengthMin || length > max_frame_bytes_) return Next::kBad;
  const size_t total = size_t{kLengthBytes} + length;
  if (have < total) return Next::kNeedMore;
  *frame = Bytes(buffer_).subspan(begin_, total);
  begin_ += total;
  return Next::kFrame;
}

bool same_message(const raft::Message& a, const raft::Message& b) {
  const bool scalars = a.type == b.type && a.from == b.from && a.to == b.to && a.term == b.term &&
                       a.log_term == b.log_term && a.index == b.index && a.commit == b.commit &&
                       a.reject_hint == b.reject_hint && a.reject == b.reject &&
                       a.force == b.force && a.quiesce == b.quiesce && a.entries == b.entries;
  if (!scalars || a.snapshot.has_value() != b.snapshot.has_value()) return false;
  if (!a.snapshot) return true;
  return a.snapshot->index == b.snapshot->index && a.snapshot->term == b.snapshot->term &&
         a.snapshot->conf == b.snapshot->conf && a.snapshot->data == b.snapshot->data;
}

}  // namespace sluice::transport
