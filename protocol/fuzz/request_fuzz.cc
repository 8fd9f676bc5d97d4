// libFuzzer target: one request frame (header + body, no size prefix) through the codec.
// Beyond "no crash, no sanitizer report, no unbounded allocation", it checks that whatever
// decodes re-encodes to bytes that decode to the same request (for AlterClientQuotas, whose
// doubles may be NaN, to the same bytes), and that this second encoding is stable (canonical). The corpus in request_corpus/ holds captured client
// frames and one round-trip encoding per API and version (protocol/fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <variant>

#include "common/assert.h"
#include "protocol/message_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::kafka;
  const sluice::Bytes frame(reinterpret_cast<const std::byte*>(data), size);
  Reader r(frame);
  auto header = decode_request_header(r);
  if (!header) {
    SLUICE_ASSERT(!header.error().path.empty());
    return 0;
  }
  if (needs_api_versions_fallback(*header)) {
    EncodedFrame reply = api_versions_unsupported_response(header->correlation_id);
    SLUICE_ASSERT(reply.bytes.size() == 20);
    return 0;
  }
  auto body = decode_request(static_cast<ApiKey>(header->api_key), header->api_version, r.rest());
  if (!body) {
    SLUICE_ASSERT(!body.error().path.empty() && !body.error().message.empty());
    return 0;
  }
  EncodedFrame again = encode_request(*header, *body);
  SLUICE_ASSERT(again.splices.empty());
  auto back = decode_request_frame(sluice::Bytes(again.bytes).subspan(4));
  SLUICE_ASSERT(back);
  SLUICE_ASSERT(back->header == *header);
  // A float64 (AlterClientQuotas' values) may be NaN, which equals nothing, itself included:
  // there the bytes say it (the codec copies a double's bits; the third encoding below must
  // equal the second).
  SLUICE_ASSERT(back->body == *body || std::holds_alternative<AlterClientQuotasRequest>(*body));
  EncodedFrame third = encode_request(back->header, back->body);
  SLUICE_ASSERT(third.bytes == again.bytes);
  return 0;
}
