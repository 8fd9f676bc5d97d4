// libFuzzer target: the inter-broker frame decoder on arbitrary bytes, as a peer would send
// them. The first byte picks the read chunk size; the rest is the byte stream. Besides never
// crashing or allocating beyond the frame limit, every frame that decodes must re-encode to
// a frame that decodes to the same thing.
#include <cstdint>
#include <cstdlib>

#include "replication/transport/frame.h"

namespace {

using namespace sluice;
using namespace sluice::transport;

constexpr uint32_t kMaxFrameBytes = 1 << 20;
constexpr Ends kEnds{.sender_id = 1, .receiver_id = 2};

void check_round_trip(const Frame& f) {
  OutFrame again;
  switch (f.kind) {
    case FrameKind::kHello:
      again = encode_hello(f.hello);
      break;
    case FrameKind::kRaft:
      if (payload_bytes(f.messages[0].message) > kMaxFrameBytes) std::abort();
      again = encode_raft(f.messages[0].group, f.messages[0].message);
      break;
    case FrameKind::kBeats:
      again = encode_beats(f.messages);
      break;
    case FrameKind::kCall:
      again = encode_call(f.call_id, f.method, f.body);
      break;
    case FrameKind::kReply:
      again = encode_reply(f.call_id, f.body, f.error);
      break;
  }
  auto g = decode_frame(again.flatten(), kEnds);
  if (!g || g->kind != f.kind || g->messages.size() != f.messages.size()) std::abort();
  for (size_t i = 0; i < f.messages.size(); ++i) {
    if (g->messages[i].group != f.messages[i].group) std::abort();
    if (!same_message(g->messages[i].message, f.messages[i].message)) std::abort();
  }
  if (g->body != f.body || g->error != f.error || g->call_id != f.call_id ||
      g->method != f.method || g->hello.cluster_id != f.hello.cluster_id ||
      g->hello.sender_id != f.hello.sender_id || g->hello.version_max != f.hello.version_max) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  const Bytes stream(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  FrameReader reader(kMaxFrameBytes);
  size_t fed = 0;
  while (fed < stream.size()) {
    MutableBytes space = reader.prepare();
    if (space.empty() || reader.capacity() > 2 * size_t{kMaxFrameBytes} + (64 << 10)) std::abort();
    const size_t n = std::min({space.size(), chunk, stream.size() - fed});
    std::copy_n(stream.begin() + static_cast<ptrdiff_t>(fed), n, space.begin());
    reader.commit(n);
    fed += n;
    for (;;) {
      Bytes frame;
      const FrameReader::Next next = reader.next(&frame);
      if (next == FrameReader::Next::kBad) return 0;  // the connection would be closed
      if (next == FrameReader::Next::kNeedMore) break;
      auto f = decode_frame(frame, kEnds);
      if (!f) return 0;  // likewise
      check_round_trip(*f);
    }
  }
  return 0;
}
