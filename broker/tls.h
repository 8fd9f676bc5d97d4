// TLS for the Kafka listeners (SSL and SASL_SSL): an OpenSSL server context built from the
// broker's PEM files, TLS 1.2 or later with forward-secret AEAD ciphers, optional client
// certificates (mTLS). The Server keeps the current context and swaps in a new one on
// SIGHUP (Broker::reload_tls); connections keep the context they started with. The policy
// itself is replication/transport/tls.h's, shared with the inter-broker transport.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "broker/config.h"
#include "common/result.h"

namespace sluice::broker {

Result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(const BrokerConfig& config);
// The inter-broker listener's and dialler's (security.inter.broker.protocol=SSL): the same
// certificate, key and CAs, mutual TLS always.
Result<std::shared_ptr<boost::asio::ssl::context>> make_inter_broker_tls_context(
    const BrokerConfig& config);

// The principal of a verified client certificate: "User:" and its subject in RFC 2253 form
// ("User:CN=alice,O=Example"), as Kafka's default principal builder names it; empty if none.
std::string certificate_principal(SSL* ssl);

}  // namespace sluice::broker
