// Frames of the inter-broker transport: encoding, incremental reading and validated decoding.
// Pure code over bytes (no sockets), shared by the Transport, the tests and the fuzzer.
//
// A frame is   u32 length (big-endian, of everything after it)
//            | u32 header length (big-endian)
//            | protobuf header (transport.proto: pb::Header)
//            | raw payload (entry and snapshot data, or a call's request / reply bytes)
// README.md has the full grammar and the limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/buffer_pool.h"
#include "common/bytes.h"
#include "common/result.h"
#include "replication/raft/types.h"

namespace sluice::transport {

// Versions this build speaks. A connection uses the lower of the two maxima, provided it is
// not below either side's minimum.
inline constexpr uint32_t kProtocolVersionMin = 1;
inline constexpr uint32_t kProtocolVersionMax = 1;

inline constexpr uint32_t kLengthBytes = 4;
inline constexpr uint32_t kFramePrefixBytes = 8;  // length + header length
// A frame's length field counts at least the header length field.
inline constexpr uint32_t kFrameLengthMin = 4;
// Headers are small (a few hundred bytes, a few KiB for a long heartbeat list); data is payload.
inline constexpr uint32_t kHeaderBytesMax = 4 << 20;
// The largest max_frame_bytes a Transport accepts: header and payload bounds then add up
// without overflowing the 32-bit length.
inline constexpr uint32_t kFrameBytesMaxLimit = 1u << 30;
static_assert(uint64_t{kFrameBytesMaxLimit} + kHeaderBytesMax + 8 < (uint64_t{1} << 32));
// Until the hello is checked, a connection may only send a frame this small.
inline constexpr uint32_t kHelloFrameBytesMax = 4096;
static_assert(kFramePrefixBytes == kLengthBytes + 4);

// A group's Raft message, as handed to and received from the transport.
struct GroupMessage {
  uint64_t group = 0;
  raft::Message message;
};

struct Hello {
  uint32_t version_min = kProtocolVersionMin;
  uint32_t version_max = kProtocolVersionMax;
  std::string cluster_id;
  int32_t sender_id = -1;
  int32_t receiver_id = -1;  // dialer: whom it meant to reach; -1 when not said
};

// An encoded frame: prefix and header in `head`, then the payload pieces, written in that
// order with one gather write. Entry and snapshot data of kPackBelowBytes or more are
// referenced (Payload shares its buffer), never copied; smaller entries next to each other
// are copied into one piece, as one iovec per 100-byte entry costs far more than the copy.
// Data in a file (raft::Payload::in_file: a leader's stored batches for a lagging follower) is
// never read here: the connection sends it from the file (sendfile), or reads it when TLS
// must encrypt it.
struct OutFrame {
  std::vector<std::byte> head;
  std::vector<raft::Payload> payloads;
  std::string body;  // a call's request or a reply's response, after the payloads
  uint64_t bytes = 0;  // the whole frame
  uint64_t size() const { return bytes; }
  std::vector<std::byte> flatten() const;  // tests and the fuzzer: the frame as one buffer
};

inline constexpr size_t kPackBelowBytes = 4096;

OutFrame encode_hello(const Hello& hello);
// The message's group, and every field of the message; entries' and snapshot's data as payload.
// Requires header_bytes_bound(message) <= kHeaderBytesMax.
OutFrame encode_raft(uint64_t group, const raft::Message& message);
// kHeartbeat / kHeartbeatResp messages without entries or snapshot (see coalescible()), in
// one compact list. from and to are not sent: they are the two ends of the connection.
// Requires the sum of their beat_bytes() to be at most kHeaderBytesMax - kBeatsHeaderBytes.
OutFrame encode_beats(std::span<const GroupMessage> beats);
inline constexpr uint32_t kBeatsHeaderBytes = 16;  // the kind field, with room to spare
OutFrame encode_call(uint64_t call_id, uint32_t method, std::string request);
OutFrame encode_reply(uint64_t call_id, std::string response, std::string error);
// Bytes of a message's entry and snapshot data (the payload encode_raft() would write).
uint64_t payload_bytes(const raft::Message& message);
// An upper bound of the header encode_raft() would write; it must be at most
// kHeaderBytesMax (a message of very many tiny entries may not be).
uint64_t header_bytes_bound(const raft::Message& message);
// Whether a message may travel in encode_beats().
bool coalescible(const raft::Message& message);
// Wire bytes a message adds to a beats frame (an upper bound), for the in-flight budget and
// for cutting long lists into frames.
uint64_t beat_bytes(uint64_t group, const raft::Message& message);

enum class FrameKind : uint8_t { kHello, kRaft, kBeats, kCall, kReply };

struct Frame {
  FrameKind kind = FrameKind::kHello;
  Hello hello;                          // kHello
  std::vector<GroupMessage> messages;   // kRaft: one; kBeats: one or more
  uint64_t call_id = 0;                 // kCall, kReply
  uint32_t method = 0;                  // kCall
  std::string body;                     // kCall: request; kReply: response
  std::string error;                    // kReply: set when the call failed at the callee
};

// Who is at each end, for decoding beats (their from/to are implied) and checking from.
struct Ends {
  int32_t sender_id = -1;
  int32_t receiver_id = -1;
};

// Decodes one whole frame (prefix included), checking everything a peer could get wrong:
// lengths, header parse, known kind, enum ranges, node ids, that the entries' and snapshot's
// data sizes sum exactly to the payload, that configuration entries and snapshot
// configurations are well formed, that entry indexes increase. Never asserts on the bytes.
// The error message says what was wrong (for the one log line about a bad peer). The entries
// of a Raft frame share one copy of their data, from `pool` when given and large enough.
Result<Frame> decode_frame(Bytes frame, const Ends& ends, BufferPool* pool = nullptr);

// Reassembles frames from a byte stream. The buffer starts small and grows with the bytes
// that arrive (never to a frame's announced length before its bytes are there), up to the
// largest frame allowed. Frames returned by next() stay valid until the next prepare().
class FrameReader {
 public:
  explicit FrameReader(uint32_t max_frame_bytes);
  void set_max_frame_bytes(uint32_t max_frame_bytes) { max_frame_bytes_ = max_frame_bytes; }

  // Space to read into (never empty), then commit(n) for the n bytes read into it.
  MutableBytes prepare();
  void commit(size_t n);

  enum class Next : uint8_t { kNeedMore, kFrame, kBad };
  // kFrame: *frame is the next whole frame. kBad: its length is out of bounds (the
  // connection is beyond repair: close it).
  Next next(Bytes* frame);
  size_t buffered() const { return end_ - begin_; }
  size_t capacity() const { return buffer_.size(); }

 private:
  uint32_t max_frame_bytes_;
  std::vector<std::byte> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

// Field-by-field equality of two messages (Payload compares bytes), for tests and the fuzzer.
bool same_message(const raft::Message& a, const raft::Message& b);

}  // namespace sluice::transport
