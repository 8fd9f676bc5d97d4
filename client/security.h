// TLS and SASL settings of the client libraries (installed as <client/security.h>), by the
// names Kafka clients use (librdkafka, Java): security.protocol, ssl.ca.location,
// ssl.certificate.location, ssl.key.location, ssl.endpoint.identification.algorithm,
// sasl.mechanism (librdkafka's sasl.mechanisms too), sasl.username, sasl.password, and the
// Java clients' sasl.jaas.config (its username="..." and password="...").
// docs/security.md "Clients" says what each does.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sluice::client {

struct SecurityConfig {
  // PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
  std::string protocol = "PLAINTEXT";
  // PEM file (or directory) of the CAs trusted for the broker's certificate; empty: the
  // system's trust store.
  std::string ssl_ca_location;
  // Client certificate chain and unencrypted private key, PEM (mutual TLS); both or neither.
  std::string ssl_certificate_location;
  std::string ssl_key_location;
  // "https": the broker's certificate must name the host connected to (the default, as in
  // librdkafka >= 1.9 and the Java client); "none" (or empty): not checked.
  std::string ssl_endpoint_identification_algorithm = "https";
  // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
  std::string sasl_mechanism = "PLAIN";
  std::string sasl_username;
  std::string sasl_password;

  bool tls() const { return protocol == "SSL" || protocol == "SASL_SSL"; }
  bool sasl() const { return protocol == "SASL_PLAINTEXT" || protocol == "SASL_SSL"; }
  bool verify_hostname() const { return ssl_endpoint_identification_algorithm == "https"; }
};

// The names set_security_config knows, comma-separated (for error messages).
inline constexpr std::string_view kSecurityPropertyNames =
    "security.protocol, ssl.ca.location, ssl.certificate.location, ssl.key.location, "
    "ssl.endpoint.identification.algorithm, sasl.mechanism, sasl.username, sasl.password, "
    "sasl.jaas.config";

// Sets one setting by its Kafka name. nullopt: `name` is not a security setting; else the
// outcome (kInvalidArgument for a value it does not take; a password is never quoted).
std::optional<Status> set_security_config(SecurityConfig& config, std::string_view name,
                                          std::string_view value);
// The settings together: a known protocol and mechanism, certificate and key both or
// neither, a user name with SASL. (Files are read when the client connects.)
Status validate(const SecurityConfig& config);

}  // namespace sluice::client
