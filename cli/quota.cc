// sluice quota set | remove | list: client quotas in the cluster metadata through
// AlterClientQuotas and DescribeClientQuotas (KIP-546; docs/security.md "Client quotas"), as
// `kafka-configs.sh --entity-type users|clients|ips` sets and shows them.
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/json.h"

namespace sluice::cli {

namespace {

using client::kAnyBroker;

struct QuotaOptions {
  std::string user;
  bool user_default = false;
  std::string client_id;
  bool client_id_default = false;
  std::string ip;
  bool ip_default = false;
  std::vector<std::string> values;  // set: key=value; remove: key
  std::string format = "text";
};

using Part = std::pair<std::string, std::optional<std::string>>;  // type, name (null: default)

// The entity the options name; false (a usage error printed) when they name none or clash.
bool entity_of(Context& ctx, const QuotaOptions& o, std::vector<Part>& out, bool required) {
  if (!o.user.empty() && o.user_default) {
    usage_error(ctx, "give --user or --user-default, not both");
    return false;
  }
  if (!o.client_id.empty() && o.client_id_default) {
    usage_error(ctx, "give --client-id or --client-id-default, not both");
    return false;
  }
  if (!o.ip.empty() && o.ip_default) {
    usage_error(ctx, "give --ip or --ip-default, not both");
    return false;
  }
  if (!o.user.empty()) out.push_back({"user", o.user});
  if (o.user_default) out.push_back({"user", std::nullopt});
  if (!o.client_id.empty()) out.push_back({"client-id", o.client_id});
  if (o.client_id_default) out.push_back({"client-id", std::nullopt});
  const bool ip = !o.ip.empty() || o.ip_default;
  if (ip && !out.empty()) {
    usage_error(ctx, "an ip quota stands alone: no --user or --client-id with --ip");
    return false;
  }
  if (!o.ip.empty()) out.push_back({"ip", o.ip});
  if (o.ip_default) out.push_back({"ip", std::nullopt});
  if (required && out.empty()) {
    usage_error(ctx,
                "name the quota's entity: --user NAME or --user-default, and/or --client-id "
                "NAME or --client-id-default; or --ip ADDRESS or --ip-default");
    return false;
  }
  return true;
}

std::string entity_text(const std::vector<Part>& entity) {
  std::string out;
  for (const auto& [type, name] : entity) {
    if (!out.empty()) out += " ";
    out += type + "=" + (name ? *name : std::string("<default>"));
  }
  return out;
}

std::string number_text(double v) {
  std::ostringstream s;
  if (v == std::floor(v) && std::abs(v) < 1e15) {
    s << static_cast<int64_t>(v);
  } else {
    s << v;
  }
  return s.str();
}

void alter(Context& ctx, const QuotaOptions& o, bool remove) {
  const std::string what = remove ? "quota remove" : "quota set";
  std::vector<Part> entity;
  if (!entity_of(ctx, o, entity, true)) return;
  if (o.values.empty()) {
    return usage_error(ctx, remove ? "name the keys to remove (e.g. producer_byte_rate)"
                                   : "give KEY=VALUE (e.g. producer_byte_rate=1048576)");
  }
  kafka::AlterClientQuotasRequest req;
  kafka::AlterClientQuotasRequest::EntryData e;
  for (const auto& [type, name] : entity) e.entity.push_back({type, name});
  for (const auto& v : o.values) {
    kafka::AlterClientQuotasRequest::OpData op;
    if (remove) {
      op.key = v;
      op.remove = true;
    } else {
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) {
        return usage_error(ctx, "'" + v + "' is not KEY=VALUE (e.g. producer_byte_rate=1048576)");
      }
      op.key = v.substr(0, eq);
      const std::string num = v.substr(eq + 1);
      size_t used = 0;
      try {
        op.value = std::stod(num, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != num.size()) {
        return usage_error(ctx, "the value of " + op.key + " is not a number: '" + num + "'");
      }
    }
    e.ops.push_back(std::move(op));
  }
  req.entries.push_back(std::move(e));
  auto r = ctx.admin().call_as<kafka::AlterClientQuotasResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, what, r.error());
  for (const auto& res : r->entries) {
    if (res.error_code == 0) continue;
    std::string w = what + " " + entity_text(entity);
    if (res.error_message) w += " (" + *res.error_message + ")";
    return fail(ctx, w, client::kafka_error(res.error_code, "quota"));
  }
  if (ctx.verbose) std::cerr << what << ": " << entity_text(entity) << " done\n";
}

void list(Context& ctx, const QuotaOptions& o) {
  std::vector<Part> entity;
  if (!entity_of(ctx, o, entity, false)) return;
  kafka::DescribeClientQuotasRequest req;
  for (const auto& [type, name] : entity) {
    kafka::DescribeClientQuotasRequest::ComponentData c;
    c.entity_type = type;
    c.match_type = name ? 0 : 1;
    c.match = name;
    req.components.push_back(std::move(c));
  }
  auto r = ctx.admin().call_as<kafka::DescribeClientQuotasResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "quota list", r.error());
  if (r->error_code != 0) {
    std::string w = "quota list";
    if (r->error_message) w += " (" + *r->error_message + ")";
    return fail(ctx, w, client::kafka_error(r->error_code, "quotas"));
  }
  JsonWriter w;
  w.begin_array();
  for (const auto& e : r->entries ? *r->entries : decltype(r->entries)::value_type{}) {
    if (o.format == "json") {
      w.begin_object().key("entity").begin_object();
      for (const auto& p : e.entity) {
        w.key(p.entity_type);
        if (p.entity_name) {
          w.value(*p.entity_name);
        } else {
          w.null();
        }
      }
      w.end_object().key("values").begin_object();
      for (const auto& v : e.values) {
        w.key(v.key);
        if (v.value == std::floor(v.value) && std::abs(v.value) < 9e15) {
          w.value(static_cast<int64_t>(v.value));
        } else {
          w.value(v.value);
        }
      }
      w.end_object().end_object();
    } else {
      std::vector<Part> parts;
      for (const auto& p : e.entity) parts.push_back({p.entity_type, p.entity_name});
      std::cout << entity_text(parts);
      for (const auto& v : e.values) std::cout << " " << v.key << "=" << number_text(v.value);
      std::cout << "\n";
    }
  }
  if (o.format == "json") std::cout << w.end_array().take() << "\n";
}

void add_entity_options(CLI::App& cmd, QuotaOptions& o) {
  cmd.add_option("--user", o.user, "The user (principal name without 'User:')");
  cmd.add_flag("--user-default", o.user_default, "The default user (every user without its own)");
  cmd.add_option("--client-id", o.client_id, "The client id");
  cmd.add_flag("--client-id-default", o.client_id_default,
               "The default client id (every client id without its own)");
  cmd.add_option("--ip", o.ip, "A client IP address (connection_creation_rate)");
  cmd.add_flag("--ip-default", o.ip_default, "The default ip (every address without its own)");
}

}  // namespace

void register_quota(CLI::App& app, Context& ctx) {
  auto* quota = app.add_subcommand(
      "quota",
      "Set, remove and list client quotas (producer_byte_rate, consumer_byte_rate, "
      "controller_mutation_rate; connection_creation_rate of an ip)");
  quota->require_subcommand(1);

  auto s = std::make_shared<QuotaOptions>();
  auto* set = quota->add_subcommand(
      "set", "Set quotas of a user, a client id or both (per second, per broker)");
  add_entity_options(*set, *s);
  set->add_option("values", s->values,
                  "KEY=VALUE: producer_byte_rate=BYTES, consumer_byte_rate=BYTES, "
                  "controller_mutation_rate=PARTITIONS (per second); connection_creation_rate=N "
                  "for an ip")
      ->required();
  set->callback([&ctx, s] { alter(ctx, *s, false); });

  auto r = std::make_shared<QuotaOptions>();
  auto* remove = quota->add_subcommand("remove", "Remove quotas of an entity");
  add_entity_options(*remove, *r);
  remove
      ->add_option("keys", r->values,
                   "producer_byte_rate, consumer_byte_rate, controller_mutation_rate, "
                   "connection_creation_rate")
      ->required();
  remove->callback([&ctx, r] { alter(ctx, *r, true); });

  auto l = std::make_shared<QuotaOptions>();
  auto* lst = quota->add_subcommand(
      "list",
      "Quotas set, one entity a line (the entity options filter: that entity and the "
      "ones that include it)");
  add_entity_options(*lst, *l);
  add_format_option(*lst, l->format);
  lst->callback([&ctx, l] { list(ctx, *l); });
}

}  // namespace sluice::cli
