// Kafka frames: request header v1/v2, response header v0/v1, which header version applies
// (kafka-protocol.md 2.3), whole-frame encoding with the int32 size prefix, and the
// ApiVersions "unsupported version" reply (2.6). Bodies come from protocol/messages.h.
//
// Broker flow per frame (the bytes after the 4-byte size):
//   Reader r(frame);
//   auto header = decode_request_header(r);         // error -> close the connection
//   if (needs_api_versions_fallback(*header))       // ApiVersions above our max
//     send(api_versions_unsupported_response(header->correlation_id));
//   auto body = decode_request(ApiKey(header->api_key), header->api_version, r.rest());
//   ...                                             // error -> close the connection
//   send(encode_response(header->correlation_id, header->api_version, response_body));
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"
#include "protocol/codec.h"
#include "protocol/messages.h"

namespace sluice::kafka {

struct RequestHeader {
  int16_t api_key = 0;
  int16_t api_version = 0;
  int32_t correlation_id = 0;
  std::string client_id;  // a null ClientId reads as "" (as Kafka does)
  bool operator==(const RequestHeader&) const = default;
};

// Header versions: request v2 if the API's version is flexible (for ApiVersions also above
// our max: its flexible range is open-ended), else v1; unknown APIs read as v1.
// Response v1 if the request version is flexible, else v0; ApiVersions always v0.
int16_t request_header_version(int16_t api_key, int16_t api_version);
int16_t response_header_version(int16_t api_key, int16_t api_version);

// Reads the header from the start of a frame (without its size prefix); `r` is then at the
// body. Only api key/version/correlation id/client id are read; header tags are skipped.
Result<RequestHeader, DecodeError> decode_request_header(Reader& r);

// True for an ApiVersions request above our max version: answer it with
// api_versions_unsupported_response, without parsing the body.
bool needs_api_versions_fallback(const RequestHeader& header);

struct DecodedRequest {
  RequestHeader header;
  RequestBody body;
};
// Header and body of one frame (no size prefix). Records fields point into `frame`.
Result<DecodedRequest, DecodeError> decode_request_frame(Bytes frame);

// A whole response frame: int32 size (counting spliced bytes), header, body.
EncodedFrame encode_response(int32_t correlation_id, int16_t api_version, const ResponseBody& body);
template <class Body>
EncodedFrame encode_response(int32_t correlation_id, int16_t api_version, const Body& body);

// A whole request frame (clients, tests): int32 size, header v1/v2, body.
EncodedFrame encode_request(const RequestHeader& header, const RequestBody& body);

struct DecodedResponse {
  int32_t correlation_id = 0;
  ResponseBody body;
};
// A response frame (no size prefix) to a request of `key` at `api_version`.
Result<DecodedResponse, DecodeError> decode_response_frame(ApiKey key, int16_t api_version,
                                                           Bytes frame);

// ApiVersions error 35 (UNSUPPORTED_VERSION) with a v0 body listing only ApiVersions with
// our range, behind a v0 response header: the reply to an ApiVersions request whose version
// is above our max (kafka-protocol.md 2.6).
EncodedFrame api_versions_unsupported_response(int32_t correlation_id);

namespace detail {
// Writes the size placeholder and the response header; finish_frame patches the size.
void begin_response(Writer& w, int32_t correlation_id, int16_t header_version);
EncodedFrame finish_frame(Writer&& w);
}  // namespace detail

template <class Body>
EncodedFrame encode_response(int32_t correlation_id, int16_t api_version, const Body& body) {
  Writer w;
  detail::begin_response(w, correlation_id,
                         response_header_version(static_cast<int16_t>(Body::kApiKey), api_version));
  body.encode(w, api_version);
  return detail::finish_frame(std::move(w));
}

}  // namespace sluice::kafka
