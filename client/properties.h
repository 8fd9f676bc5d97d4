// Configuration by name, librdkafka / Java style ("linger.ms" = "5"), for the producer and
// consumer configs: users who keep their settings in files, and `sluice -X key=value`.
// A table maps each dotted name to a config field; values are parsed by the field's type.
#pragma once

#include <charconv>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "client/errors.h"
#include "client/security.h"
#include "common/result.h"

namespace sluice::client {

template <class Config>
struct Property {
  const char* name;
  std::variant<int Config::*, int64_t Config::*, bool Config::*, std::string Config::*> field;
};

template <class Config>
std::string property_names(const std::vector<Property<Config>>& table) {
  std::string out;
  for (const auto& p : table) out += (out.empty() ? "" : ", ") + std::string(p.name);
  return out;
}

// A config with a `security` member (client::SecurityConfig) also takes the security
// settings by name (security.protocol, sasl.username, ...).
template <class Config>
Status set_property(Config& config, const std::vector<Property<Config>>& table,
                    std::string_view name, std::string_view value) {
  if constexpr (requires { config.security; }) {
    if (auto s = set_security_config(config.security, name, value)) return *s;
  }
  for (const auto& p : table) {
    if (name != p.name) continue;
    auto bad = [&](const char* want) {
      return unexpected(make_error(Errc::kInvalidArgument, "config " + std::string(name) +
                                                               ": want " + want + ", got '" +
                                                               std::string(value) + "'"));
    };
    if (auto* s = std::get_if<std::string Config::*>(&p.field)) {
      config.*(*s) = std::string(value);
      return {};
    }
    if (auto* b = std::get_if<bool Config::*>(&p.field)) {
      if (value == "true" || value == "1") {
        config.*(*b) = true;
      } else if (value == "false" || value == "0") {
        config.*(*b) = false;
      } else {
        return bad("true or false");
      }
      return {};
    }
    int64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size()) return bad("an integer");
    if (auto* i = std::get_if<int Config::*>(&p.field)) {
      if (n < INT32_MIN || n > INT32_MAX) return bad("a 32-bit integer");
      config.*(*i) = static_cast<int>(n);
    } else {
      config.*(std::get<int64_t Config::*>(p.field)) = n;
    }
    return {};
  }
  std::string known = property_names(table);
  if constexpr (requires { config.security; }) known += ", " + std::string(kSecurityPropertyNames);
  return unexpected(make_error(Errc::kInvalidArgument,
                               "unknown config '" + std::string(name) + "' (known: " + known + ")"));
}

// Defaults, then every property through `set` (a set_config overload), stopping at the first
// error.
template <class Config, class Set>
Result<Config> config_from(const std::map<std::string, std::string>& properties, Set set) {
  Config config;
  for (const auto& [k, v] : properties) {
    if (auto s = set(config, k, v); !s) return unexpected(s.error());
  }
  return config;
}

}  // namespace sluice::client
