// The security state of one Kafka connection: which listener it came in on, whether it has
// authenticated (SASL) and as whom. Created by the Server for each connection and shared by
// every request of that connection (ConnectionInfo::session). Touched only on the
// connection's shard: requests are handed to Broker::handle there, in order, and the SASL
// requests are answered synchronously, so a request read after a SaslAuthenticate already
// sees its outcome (broker/security.cc).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "broker/config.h"
#include "broker/sasl.h"
#include "broker/tls.h"

namespace sluice::broker {

struct Session {
  using Clock = std::chrono::steady_clock;

  const Listener* listener = nullptr;  // owned by the broker's config
  // "User:name" once authenticated (SASL user, or the TLS client certificate's subject);
  // "User:ANONYMOUS" on listeners without authentication.
  std::string principal = "User:ANONYMOUS";
  bool authenticated = false;      // may serve requests beyond the SASL ones
  std::string mechanism;           // chosen by SaslHandshake, for the next SaslAuthenticate
  std::unique_ptr<sasl::ScramServer> scram;  // an exchange in progress
  bool raw_tokens = false;  // after SaslHandshake v0: frames are bare SASL tokens
  Clock::time_point expires = Clock::time_point::max();  // KIP-368: re-authenticate before
  // Client quotas (broker/quota_manager.h): the connection reads no request before
  // `throttled_until`, and one at a time once the client was found held to a quota (until the
  // cluster has none). Set by Produce as it is handed over (before the next request is read)
  // and by Fetch as it answers.
  Clock::time_point throttled_until{};
  bool quota_limited = false;

  bool needs_sasl() const { return listener != nullptr && listener->sasl(); }
  // After the TLS handshake: on an SSL listener a verified client certificate names the
  // principal (on SASL_SSL, SASL does). True when it did.
  bool tls_verified(SSL* ssl) {
    if (needs_sasl()) return false;
    std::string p = certificate_principal(ssl);
    if (p.empty()) return false;
    principal = std::move(p);
    return true;
  }
};

}  // namespace sluice::broker
