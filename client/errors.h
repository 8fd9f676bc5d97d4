// Error codes of the Sluice client libraries (installed as <client/errors.h> with the
// package; compare Error::code with static_cast<int>(sluice::client::Errc::kTimeout) etc.). A client error is a sluice::Error whose `code`
// is either a Kafka error code from the broker (kafka::ErrorCode, -1..127) or one of the
// client-side codes below (1000+). `message` says what happened and, where it can, what to do.
#pragma once

#include <string>

#include "common/result.h"

namespace sluice::client {

enum class Errc : int {
  kNetwork = 1000,     // could not connect, or the connection broke
  kTimeout = 1001,     // no answer within request.timeout.ms / the caller's deadline
  kProtocol = 1002,    // the broker sent bytes we cannot decode
  kClosed = 1003,      // the client/producer/consumer was closed
  kBufferFull = 1004,  // producer buffer.memory exhausted and blocking is off (or timed out)
  kInvalidArgument = 1005,
  kUnsupported = 1006,   // the broker does not serve an API or version we need
  kNoBroker = 1007,      // no broker address known (empty bootstrap list)
  kSecurity = 1008,      // TLS handshake or SASL exchange failed (certificate, credentials)
  kInvalidState = 1009,  // a call out of order (a transaction not begun, a fenced producer)
};

inline Error make_error(Errc code, std::string message) {
  return Error{static_cast<int>(code), std::move(message)};
}
// An Error from a Kafka error code in a response.
Error kafka_error(int16_t code, const std::string& context);
// True for broker errors worth retrying after a metadata refresh / backoff, and for
// network and timeout errors.
bool retriable(const Error& e);
// "NOT_LEADER_OR_FOLLOWER (6)" or the Errc name ("TIMEOUT" for 1001).
std::string error_name(int code);
// One sentence on what a client code (1000-1008) means and what to do; for other codes the
// same as error_name().
std::string error_description(int code);

}  // namespace sluice::client
