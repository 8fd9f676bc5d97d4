// Client quotas in the cluster metadata (KIP-546; docs/security.md "Client quotas"): the
// entities and their values (Image.client_quotas), Kafka's checks of an AlterClientQuotas entry,
// DescribeClientQuotas' filter, and the lookup a broker makes for each request: which quota
// applies to a client (user and client id) by Kafka's precedence, and which of its clients share
// it. Pure functions: no I/O, no threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluster/cluster.pb.h"
#include "common/result.h"
#include "protocol/error_codes.h"

namespace sluice::cluster::quotas {

// Kafka's entity types and the quota keys Sluice enforces.
inline constexpr const char* kUser = "user";
inline constexpr const char* kClientId = "client-id";
inline constexpr const char* kIp = "ip";
inline constexpr const char* kProducerByteRate = "producer_byte_rate";
inline constexpr const char* kConsumerByteRate = "consumer_byte_rate";
inline constexpr const char* kConnectionCreationRate = "connection_creation_rate";  // ip entity
// KIP-599: partitions created (CreateTopics, CreatePartitions) and deleted (DeleteTopics) per
// second.
inline constexpr const char* kControllerMutationRate = "controller_mutation_rate";

// An IP address in one spelling ("127.0.0.1", "::1"); nullopt when `text` is not an IP
// address (Kafka also takes host names and resolves them; Sluice does not resolve).
std::optional<std::string> canonical_ip(const std::string& text);

// An entity: type -> name (nullopt: the type's default entity), each type once.
using Entity = std::map<std::string, std::optional<std::string>>;

Entity from_parts(const google::protobuf::RepeatedPtrField<pb::QuotaEntityPart>& parts);
void to_parts(const Entity& entity, google::protobuf::RepeatedPtrField<pb::QuotaEntityPart>* out);
// "user=alice, client-id=<default>": for messages and logs.
std::string describe_entity(const Entity& entity);

struct Refusal {
  kafka::ErrorCode code = kafka::ErrorCode::kNone;
  std::string message;
};

// One entry of an AlterClientQuotas request, as the client sent it.
struct EntityPart {
  std::string type;
  std::optional<std::string> name;  // null: the default
};
struct Op {
  std::string key;
  double value = 0;
  bool remove = false;
};

// Kafka's checks of one entry (ClientQuotaControlManager): an empty entity, a type twice, an
// unknown type, an empty name, an ip with a user or client id, an ip that is not an address,
// a key twice, a key the entity's types do not take, a fractional byte or connection rate:
// INVALID_REQUEST. Sluice also refuses what it would not enforce (request_percentage), a byte
// or connection rate below 1 and a mutation rate that is not above 0, instead of storing a
// quota that would do nothing. On success `out` holds the change.
std::optional<Refusal> check_entry(const std::vector<EntityPart>& entity,
                                   const std::vector<Op>& ops, pb::AlterClientQuotas::Change& out);

// Applies accepted changes: values set and removed; an entity left with none is dropped. The
// image's entities end up sorted by entity (deterministic on every node).
void apply(pb::Image& img, const pb::AlterClientQuotas& change);

// Entities an image holds at most (the controller refuses a change that would pass it).
inline constexpr size_t kEntitiesMax = 100'000;
// How many entities the image would hold after `change`.
size_t entities_after(const pb::Image& img, const pb::AlterClientQuotas& change);

// DescribeClientQuotas (Kafka's ClientQuotasImage.describe).
struct Component {
  std::string entity_type;
  int8_t match_type = 0;  // 0 the name in `match`, 1 the default, 2 any (the default too)
  std::optional<std::string> match;
};
struct Described {
  Entity entity;
  std::map<std::string, double> values;
};
Result<std::vector<Described>, Refusal> describe(const pb::Image& img,
                                                 const std::vector<Component>& components,
                                                 bool strict);

// The quota one client is held to for one key, and its bucket: the clients that share it have
// the same tags (Kafka's metric tags: a quota set for a user is shared by the user's clients,
// one set for the default user applies to each user on its own, and so on).
struct Limit {
  double rate = 0;
  std::string user_tag;    // "" when the quota does not name a user
  std::string client_tag;  // "" when it does not name a client id
};

// The image's quotas, indexed for the lookup a request makes.
class Table {
 public:
  Table() = default;
  explicit Table(const pb::Image& img);
  bool empty() const { return by_entity_.empty(); }  // no user or client-id quota
  bool has_ip() const { return !by_ip_.empty(); }
  // Kafka's precedence, first found wins: user and client id; user and default client id;
  // user; default user and client id; default user and default client id; default user;
  // client id; default client id.
  std::optional<Limit> resolve(const std::string& key, const std::string& user,
                               const std::string& client_id) const;
  // connection_creation_rate for connections from `ip` (canonical_ip's spelling): the ip's
  // own, else the default ip's; each ip has its own rate either way (client_tag: the ip).
  std::optional<Limit> resolve_ip(const std::string& ip) const;

 private:
  std::unordered_map<std::string, double> by_ip_;  // canonical ip ("" the default) -> rate
  // Key: "u" + (0 | 1 + user) + "c" + (0 | 1 + client id), see table_key().
  std::unordered_map<std::string, std::map<std::string, double>> by_entity_;
};

}  // namespace sluice::cluster::quotas
