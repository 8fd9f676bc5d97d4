#include "protocol/message_frame.h"

#include <limits>

namespace sluice::kafka {
namespace {

constexpr int16_t kUnsupportedVersionError = 35;  // UNSUPPORTED_VERSION

bool is_flexible(int16_t api_key, int16_t api_version) {
  const ApiInfo* api = find_api(api_key);
  return api != nullptr && api_version >= api->flexible_from;
}

}  // namespace

int16_t request_header_version(int16_t api_key, int16_t api_version) {
  return is_flexible(api_key, api_version) ? 2 : 1;
}

int16_t response_header_version(int16_t api_key, int16_t api_version) {
  if (api_key == static_cast<int16_t>(ApiKey::kApiVersions)) return 0;
  return is_flexible(api_key, api_version) ? 1 : 0;
}

Result<RequestHeader, DecodeError> decode_request_header(Reader& r) {
  RequestHeader h;
  std::optional<std::string> client_id;
  bool ok = r.i16(h.api_key, "api_key") && r.i16(h.api_version, "api_version") &&
            r.i32(h.correlation_id, "correlation_id") &&
            r.legacy_nullable_string(client_id, "client_id");
  if (ok && request_header_version(h.api_key, h.api_version) == 2) {
    const bool was_flexible = r.flexible();
    r.set_flexible(true);
    ok = r.skip_tags("tagged_fields");
    r.set_flexible(was_flexible);
  }
  if (!ok) {
    r.prefix_path("RequestHeader");
    return unexpected(r.take_error());
  }
  h.client_id = client_id ? std::move(*client_id) : std::string();
  return h;
}

bool needs_api_versions_fallback(const RequestHeader& header) {
  return header.api_key == static_cast<int16_t>(ApiKey::kApiVersions) &&
         header.api_version > ApiVersionsRequest::kMaxVersion;
}

Result<DecodedRequest, DecodeError> decode_request_frame(Bytes frame) {
  Reader r(frame);
  auto header = decode_request_header(r);
  if (!header) return unexpected(std::move(header).error());
  auto body = decode_request(static_cast<ApiKey>(header->api_key), header->api_version, r.rest());
  if (!body) return unexpected(std::move(body).error());
  return DecodedRequest{std::move(*header), std::move(*body)};
}

namespace detail {

void begin_response(Writer& w, int32_t correlation_id, int16_t header_version) {
  SLUICE_ASSERT(w.position() == 0);
  w.i32(0);  // size, patched by finish_frame
  w.i32(correlation_id);
  if (header_version >= 1) w.empty_tags();
}

EncodedFrame finish_frame(Writer&& w) {
  const size_t size = w.position() - 4 + w.spliced_bytes();
  SLUICE_ASSERT(size <= static_cast<size_t>(std::numeric_limits<int32_t>::max()));
  w.patch_i32(0, static_cast<int32_t>(size));
  return std::move(w).finish();
}

}  // namespace detail

EncodedFrame encode_response(int32_t correlation_id, int16_t api_version,
                             const ResponseBody& body) {
  return std::visit([&](const auto& b) { return encode_response(correlation_id, api_version, b); },
                    body);
}

EncodedFrame encode_request(const RequestHeader& header, const RequestBody& body) {
  SLUICE_ASSERT(header.api_key == static_cast<int16_t>(api_key_of(body)));
  Writer w;
  w.i32(0);  // size, patched by finish_frame
  w.i16(header.api_key);
  w.i16(header.api_version);
  w.i32(header.correlation_id);
  w.legacy_nullable_string(header.client_id);
  if (request_header_version(header.api_key, header.api_version) == 2) {
    w.set_flexible(true);
    w.empty_tags();
  }
  encode_body(w, body, header.api_version);
  return detail::finish_frame(std::move(w));
}

Result<DecodedResponse, DecodeError> decode_response_frame(ApiKey key, int16_t api_version,
                                                           Bytes frame) {
  Reader r(frame, true);
  DecodedResponse out;
  bool ok = r.i32(out.correlation_id, "correlation_id");
  if (ok && response_header_version(static_cast<int16_t>(key), api_version) == 1) {
    ok = r.skip_tags("tagged_fields");
  }
  if (!ok) {
    r.prefix_path("ResponseHeader");
    return unexpected(r.take_error());
  }
  auto body = decode_response(key, api_version, r.rest());
  if (!body) return unexpected(std::move(body).error());
  out.body = std::move(*body);
  return out;
}

EncodedFrame api_versions_unsupported_response(int32_t correlation_id) {
  ApiVersionsResponse body;
  body.error_code = kUnsupportedVersionError;
  body.api_keys.push_back({.api_key = static_cast<int16_t>(ApiKey::kApiVersions),
                           .min_version = ApiVersionsResponse::kMinVersion,
                           .max_version = ApiVersionsResponse::kMaxVersion});
  return encode_response(correlation_id, 0, body);
}

}  // namespace sluice::kafka
