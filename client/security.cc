#include "client/security.h"

#include <algorithm>
#include <cctype>

#include "client/errors.h"

namespace sluice::client {

namespace {

std::string upper(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

Unexpected<Error> invalid(std::string message) {
  return unexpected(make_error(Errc::kInvalidArgument, std::move(message)));
}

// The value of `key="..."` in a JAAS line (no escapes inside the quotes); nullopt if absent.
std::optional<std::string> jaas_option(std::string_view jaas, std::string_view key) {
  for (size_t at = jaas.find(key); at != std::string_view::npos; at = jaas.find(key, at + 1)) {
    const bool word_start = at == 0 || jaas[at - 1] == ' ' || jaas[at - 1] == '\t';
    std::string_view rest = jaas.substr(at + key.size());
    if (!word_start || !rest.starts_with("=\"")) continue;
    rest.remove_prefix(2);
    const size_t end = rest.find('"');
    if (end == std::string_view::npos) return std::nullopt;
    return std::string(rest.substr(0, end));
  }
  return std::nullopt;
}

}  // namespace

std::optional<Status> set_security_config(SecurityConfig& config, std::string_view name,
                                          std::string_view value) {
  if (name == "security.protocol") {
    std::string p = upper(value);
    if (p != "PLAINTEXT" && p != "SSL" && p != "SASL_PLAINTEXT" && p != "SASL_SSL") {
      return invalid("config security.protocol: want PLAINTEXT, SSL, SASL_PLAINTEXT or "
                     "SASL_SSL, got '" + std::string(value) + "'");
    }
    config.protocol = std::move(p);
  } else if (name == "ssl.ca.location") {
    config.ssl_ca_location = value;
  } else if (name == "ssl.certificate.location") {
    config.ssl_certificate_location = value;
  } else if (name == "ssl.key.location") {
    config.ssl_key_location = value;
  } else if (name == "ssl.endpoint.identification.algorithm") {
    if (value != "https" && value != "none" && !value.empty()) {
      return invalid("config ssl.endpoint.identification.algorithm: want https or none, got '" +
                     std::string(value) + "'");
    }
    config.ssl_endpoint_identification_algorithm = value;
  } else if (name == "sasl.mechanism" || name == "sasl.mechanisms") {
    std::string m = upper(value);
    if (m != "PLAIN" && m != "SCRAM-SHA-256" && m != "SCRAM-SHA-512") {
      return invalid("config " + std::string(name) +
                     ": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got '" + std::string(value) +
                     "'");
    }
    config.sasl_mechanism = std::move(m);
  } else if (name == "sasl.username") {
    config.sasl_username = value;
  } else if (name == "sasl.password") {
    config.sasl_password = value;
  } else if (name == "sasl.jaas.config") {
    // The Java clients' form (in Kafka tools' --command-config files):
    // org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";
    auto user = jaas_option(value, "username");
    auto password = jaas_option(value, "password");
    if (!user || !password) {
      return invalid("config sasl.jaas.config: want a PlainLoginModule or ScramLoginModule line "
                     "with username=\"...\" and password=\"...\"");
    }
    config.sasl_username = std::move(*user);
    config.sasl_password = std::move(*password);
  } else {
    return std::nullopt;
  }
  return Status{};
}

Status validate(const SecurityConfig& config) {
  for (const auto& [name, value] : {std::pair{"security.protocol", config.protocol},
                                    std::pair{"sasl.mechanism", config.sasl_mechanism},
                                    std::pair{"ssl.endpoint.identification.algorithm",
                                              config.ssl_endpoint_identification_algorithm}}) {
    SecurityConfig scratch;
    if (auto s = set_security_config(scratch, name, value); s && !*s) return *s;
  }
  if (config.protocol != upper(config.protocol) ||
      config.sasl_mechanism != upper(config.sasl_mechanism)) {
    return invalid("security.protocol and sasl.mechanism are upper case (PLAINTEXT, SASL_SSL, "
                   "SCRAM-SHA-512, ...)");
  }
  if (config.ssl_certificate_location.empty() != config.ssl_key_location.empty()) {
    return invalid("ssl.certificate.location and ssl.key.location go together (mutual TLS): "
                   "set both or neither");
  }
  if (config.sasl() && config.sasl_username.empty()) {
    return invalid("security.protocol " + config.protocol +
                   " needs sasl.username and sasl.password");
  }
  return {};
}

}  // namespace sluice::client
