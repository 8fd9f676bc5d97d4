#include "cluster/quotas.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace sluice::cluster::quotas {

using kafka::ErrorCode;

namespace {

constexpr const char* kRequestPercentage = "request_percentage";

Refusal invalid(std::string message) {
  return Refusal{ErrorCode::kInvalidRequest, std::move(message)};
}

// One part of a table key: absent, the default, or a name (length-prefixed: names are any
// bytes).
enum class Part : char { kAbsent = '-', kDefault = '*', kNamed = '=' };

std::string part_key(Part p, const std::string& name) {
  std::string k(1, static_cast<char>(p));
  if (p == Part::kNamed) k += std::to_string(name.size()) + ":" + name;
  return k;
}

std::string table_key(Part user, const std::string& user_name, Part client,
                      const std::string& client_name) {
  return part_key(user, user_name) + part_key(client, client_name);
}

Part part_of(const Entity& e, const char* type, std::string& name) {
  auto it = e.find(type);
  if (it == e.end()) return Part::kAbsent;
  if (!it->second) return Part::kDefault;
  name = *it->second;
  return Part::kNamed;
}

}  // namespace

std::optional<std::string> canonical_ip(const std::string& text) {
  if (text.find('\0') != std::string::npos) return std::nullopt;
  unsigned char buf[sizeof(struct in6_addr)];
  char out[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, text.c_str(), buf) == 1 &&
        inet_ntop(family, buf, out, sizeof out) != nullptr) {
      return std::string(out);
    }
  }
  return std::nullopt;
}

Entity from_parts(const google::protobuf::RepeatedPtrField<pb::QuotaEntityPart>& parts) {
  Entity e;
  for (const auto& p : parts) {
    e[p.type()] = p.is_default() ? std::nullopt : std::optional<std::string>(p.name());
  }
  return e;
}

void to_parts(const Entity& entity, google::protobuf::RepeatedPtrField<pb::QuotaEntityPart>* out) {
  out->Clear();
  for (const auto& [type, name] : entity) {  // std::map: sorted by type
    pb::QuotaEntityPart* p = out->Add();
    p->set_type(type);
    if (name) {
      p->set_name(*name);
    } else {
      p->set_is_default(true);
    }
  }
}

std::string describe_entity(const Entity& entity) {
  std::string out;
  for (const auto& [type, name] : entity) {
    if (!out.empty()) out += ", ";
    out += type + "=" + (name ? *name : std::string("<default>"));
  }
  return out.empty() ? "<empty entity>" : out;
}

std::optional<Refusal> check_entry(const std::vector<EntityPart>& entity,
                                   const std::vector<Op>& ops, pb::AlterClientQuotas::Change& out) {
  if (entity.empty()) return invalid("Invalid empty client quota entity");
  Entity e;
  for (const auto& p : entity) {
    if (e.count(p.type)) {
      return invalid("Invalid empty client quota entity, duplicate entity entry " + p.type);
    }
    if (p.type != kUser && p.type != kClientId && p.type != kIp) {
      return invalid("Unhandled client quota entity type: " + p.type);
    }
    if (p.name && p.name->empty()) return invalid("Empty " + p.type + " not supported");
    e[p.type] = p.name;
  }
  const bool ip = e.count(kIp) > 0;
  if (ip && e.size() > 1)
    return invalid("Invalid client quota entity: an ip with a user or client id");
  if (ip && e[kIp] && !canonical_ip(*e[kIp])) {
    return invalid(*e[kIp] + " is not a valid IP (Sluice takes IP addresses, not host names)");
  }
  std::set<std::string> keys;
  out.Clear();
  to_parts(e, out.mutable_entity());
  for (const Op& op : ops) {
    if (!keys.insert(op.key).second) {
      return invalid("Duplicate quota key " + op.key + " not updating quota for this entity " +
                     describe_entity(e));
    }
    if (op.key == kRequestPercentage) {
      return invalid("Sluice does not enforce " + op.key + "; the quotas it enforces are " +
                     kProducerByteRate + ", " + kConsumerByteRate + " and " +
                     kControllerMutationRate);
    }
    const bool known = ip ? op.key == kConnectionCreationRate
                          : op.key == kProducerByteRate || op.key == kConsumerByteRate ||
                                op.key == kControllerMutationRate;
    if (!known) return invalid("Invalid configuration key " + op.key);
    if (op.remove) {
      out.add_remove(op.key);
      continue;
    }
    if (op.key == kControllerMutationRate) {  // Kafka's DOUBLE: any positive rate
      if (!std::isfinite(op.value) || op.value <= 0) {
        return invalid("Configuration " + op.key + " must be above 0 (partitions per second); " +
                       "remove it to lift the quota");
      }
      (*out.mutable_set())[op.key] = op.value;
      continue;
    }
    // Kafka's LONG check: within 1e-6 of a whole number.
    constexpr double kEpsilon = 1e-6;
    if (!std::isfinite(op.value) ||
        std::abs(std::floor(op.value + kEpsilon) - op.value) > kEpsilon) {
      return invalid("Configuration " + op.key + " must be a Long value");
    }
    if (op.value < 1) {
      return invalid("Configuration " + op.key + " must be at least 1 (per second); remove it " +
                     "to lift the quota");
    }
    (*out.mutable_set())[op.key] = std::floor(op.value + kEpsilon);
  }
  return std::nullopt;
}

void apply(pb::Image& img, const pb::AlterClientQuotas& change) {
  // One pass over the image and one lookup per change (O((entities + changes) log entities)).
  std::map<Entity, std::map<std::string, double>> all;
  for (const auto& q : img.client_quotas()) {
    all[from_parts(q.entity())].insert(q.values().begin(), q.values().end());
  }
  for (const auto& c : change.changes()) {
    const Entity e = from_parts(c.entity());
    auto it = all.find(e);
    if (it == all.end()) {
      if (c.set().empty()) continue;  // removing from an entity with no values: nothing
      it = all.emplace(e, std::map<std::string, double>{}).first;
    }
    for (const auto& key : c.remove()) it->second.erase(key);
    for (const auto& [key, value] : c.set()) it->second[key] = value;
    if (it->second.empty()) all.erase(it);
  }
  auto* list = img.mutable_client_quotas();
  list->Clear();
  for (const auto& [e, values] : all) {
    pb::ClientQuota* q = list->Add();
    to_parts(e, q->mutable_entity());
    q->mutable_values()->insert(values.begin(), values.end());
  }
}

size_t entities_after(const pb::Image& img, const pb::AlterClientQuotas& change) {
  std::set<Entity> all;
  for (const auto& q : img.client_quotas()) all.insert(from_parts(q.entity()));
  for (const auto& c : change.changes()) {
    if (!c.set().empty()) all.insert(from_parts(c.entity()));
  }
  return all.size();
}

Result<std::vector<Described>, Refusal> describe(const pb::Image& img,
                                                 const std::vector<Component>& components,
                                                 bool strict) {
  std::map<std::string, std::optional<std::string>> exact;  // nullopt: the default
  std::set<std::string> any;
  for (const auto& c : components) {
    if (c.entity_type.empty()) return unexpected(invalid("Invalid empty entity type."));
    if (exact.count(c.entity_type) || any.count(c.entity_type)) {
      return unexpected(
          invalid("Entity type " + c.entity_type + " cannot appear more than once in the filter."));
    }
    if (c.entity_type != kIp && c.entity_type != kUser && c.entity_type != kClientId) {
      return unexpected(
          Refusal{ErrorCode::kUnsupportedVersion, "Unsupported entity type " + c.entity_type});
    }
    switch (c.match_type) {
      case 0:
        if (!c.match) {
          return unexpected(
              invalid("Request specified MATCH_TYPE_EXACT, but set match string to null."));
        }
        exact[c.entity_type] = c.match;
        break;
      case 1:
        if (c.match) {
          return unexpected(
              invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string."));
        }
        exact[c.entity_type] = std::nullopt;
        break;
      case 2:
        if (c.match) {
          return unexpected(invalid(
              "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."));
        }
        any.insert(c.entity_type);
        break;
      default:
        return unexpected(invalid("Unknown match type " + std::to_string(c.match_type)));
    }
  }
  const bool has_ip = exact.count(kIp) || any.count(kIp);
  const bool has_other =
      exact.count(kUser) || any.count(kUser) || exact.count(kClientId) || any.count(kClientId);
  if (has_ip && has_other) {
    return unexpected(invalid(
        "Invalid entity filter component combination. IP filter component should not be used "
        "with user or clientId filter component."));
  }
  std::vector<Described> out;
  for (const auto& q : img.client_quotas()) {
    Entity e = from_parts(q.entity());
    bool match = true;
    for (const auto& [type, name] : exact) {
      auto it = e.find(type);
      if (it == e.end() || it->second != name) match = false;
    }
    for (const auto& type : any) {
      if (!e.count(type)) match = false;
    }
    // No component at all: every entity, unless strict (then none: it has at least one type).
    if (strict && e.size() != exact.size() + any.size()) match = false;
    if (!match) continue;
    Described d;
    d.entity = std::move(e);
    d.values.insert(q.values().begin(), q.values().end());
    out.push_back(std::move(d));
  }
  return out;
}

Table::Table(const pb::Image& img) {
  for (const auto& q : img.client_quotas()) {
    const Entity e = from_parts(q.entity());
    std::string user;
    std::string client;
    const Part u = part_of(e, kUser, user);
    const Part c = part_of(e, kClientId, client);
    if (u == Part::kAbsent && c == Part::kAbsent) {  // an ip entity
      auto it = e.find(kIp);
      auto v = q.values().find(kConnectionCreationRate);
      if (it == e.end() || v == q.values().end()) continue;
      if (!it->second) {
        by_ip_[""] = v->second;
      } else if (auto ip = canonical_ip(*it->second)) {
        by_ip_[*ip] = v->second;
      }
      continue;
    }
    by_entity_[table_key(u, user, c, client)].insert(q.values().begin(), q.values().end());
  }
}

std::optional<Limit> Table::resolve_ip(const std::string& ip) const {
  if (by_ip_.empty()) return std::nullopt;
  auto it = by_ip_.find(ip);
  if (it == by_ip_.end()) it = by_ip_.find("");
  if (it == by_ip_.end()) return std::nullopt;
  Limit out;
  out.rate = it->second;
  out.client_tag = ip;
  return out;
}

std::optional<Limit> Table::resolve(const std::string& key, const std::string& user,
                                    const std::string& client_id) const {
  if (by_entity_.empty()) return std::nullopt;
  struct Level {
    Part user;
    Part client;
  };
  static constexpr Level kOrder[] = {
      {Part::kNamed, Part::kNamed},     {Part::kNamed, Part::kDefault},
      {Part::kNamed, Part::kAbsent},    {Part::kDefault, Part::kNamed},
      {Part::kDefault, Part::kDefault}, {Part::kDefault, Part::kAbsent},
      {Part::kAbsent, Part::kNamed},    {Part::kAbsent, Part::kDefault},
  };
  for (const Level& l : kOrder) {
    auto it = by_entity_.find(table_key(l.user, user, l.client, client_id));
    if (it == by_entity_.end()) continue;
    auto v = it->second.find(key);
    if (v == it->second.end()) continue;
    Limit out;
    out.rate = v->second;
    if (l.user != Part::kAbsent) out.user_tag = user;
    if (l.client != Part::kAbsent) out.client_tag = client_id;
    return out;
  }
  return std::nullopt;
}

}  // namespace sluice::cluster::quotas
