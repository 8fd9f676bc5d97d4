// The TLS policy of every broker socket, the Kafka listeners' (broker/tls.h) and the
// inter-broker transport's: OpenSSL contexts built from PEM files, TLS 1.2 or later, TLS 1.2
// limited to forward-secret AEAD suites, no renegotiation. One place, so the two cannot drift.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "common/result.h"

namespace sluice::transport {

struct TlsFiles {
  std::string certificate;  // PEM certificate chain
  std::string key;          // PEM private key (unencrypted)
  std::string ca;           // PEM CAs trusted for peer certificates (may be empty: none)
};

enum class TlsVerify : uint8_t {
  kNone,       // no peer certificate asked for
  kRequested,  // asked for; one that does not verify fails the handshake
  kRequired,   // asked for and needed
};

// A context for one role (server: the Kafka listeners; tls: either side of a connection)
// with the policy above, the certificate and key loaded and checked against each other, and
// the CAs. Errors name the file and what is wrong with it.
Result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(
    boost::asio::ssl::context::method method, const TlsFiles& files, TlsVerify verify);

// The inter-broker context: one context for both ends of a connection (the dialer's client
// handshake and the acceptor's server handshake), always mutual: each end presents the
// broker's certificate and requires the other's to verify against files.ca (needed).
Result<std::shared_ptr<boost::asio::ssl::context>> make_peer_tls_context(const TlsFiles& files);

}  // namespace sluice::transport
