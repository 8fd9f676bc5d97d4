// sluice acl create | list | delete: Kafka ACLs through CreateAcls, DescribeAcls and DeleteAcls
// (docs/security.md "ACLs"). The options follow kafka-acls.sh: one resource (--topic, --group,
// --cluster, --transactional-id), --principal, --host, --operation, --deny.
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/json.h"
#include "protocol/acl_types.h"

namespace sluice::cli {

namespace {

namespace acl = kafka::acl;
using client::kAnyBroker;

struct AclOptions {
  std::string topic, group, transactional_id;
  bool cluster = false;
  bool prefixed = false;
  bool match = false;  // list/delete: every binding that applies to the named resource
  std::vector<std::string> principals;
  std::string host;
  std::vector<std::string> operations;
  bool deny = false;
  bool allow = false;  // list/delete: only ALLOW bindings
  bool all = false;    // delete: with no other filter, delete every binding
  std::string format = "text";
};

// The resource the options name: type and name, or nullopt when none is given. A usage error
// (more than one) is reported and sets `bad`.
std::optional<std::pair<acl::ResourceType, std::string>> resource_of(Context& ctx,
                                                                     const AclOptions& o,
                                                                     bool& bad) {
  std::vector<std::pair<acl::ResourceType, std::string>> found;
  if (!o.topic.empty()) found.emplace_back(acl::ResourceType::kTopic, o.topic);
  if (!o.group.empty()) found.emplace_back(acl::ResourceType::kGroup, o.group);
  if (!o.transactional_id.empty()) {
    found.emplace_back(acl::ResourceType::kTransactionalId, o.transactional_id);
  }
  if (o.cluster) found.emplace_back(acl::ResourceType::kCluster, std::string(acl::kClusterName));
  if (found.size() > 1) {
    usage_error(ctx, "name one resource: --topic, --group, --transactional-id or --cluster");
    bad = true;
    return std::nullopt;
  }
  if (found.empty()) return std::nullopt;
  return found.front();
}

// --operation values, parsed; a usage error (and empty) for an unknown one.
std::vector<acl::Operation> operations_of(Context& ctx, const AclOptions& o, bool& bad) {
  std::vector<acl::Operation> ops;
  for (const auto& text : o.operations) {
    auto op = acl::parse_operation(text);
    if (!op || *op == acl::Operation::kAny) {
      usage_error(ctx, "unknown operation '" + text +
                           "' (ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, "
                           "CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE)");
      bad = true;
      return {};
    }
    ops.push_back(*op);
  }
  return ops;
}

bool principal_ok(Context& ctx, const std::string& p) {
  const auto colon = p.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == p.size()) {
    usage_error(ctx, "principal '" + p + "' is not of the form Type:name (User:alice, User:*)");
    return false;
  }
  return true;
}

int8_t i8(auto e) { return static_cast<int8_t>(e); }

void acl_create(Context& ctx, const AclOptions& o) {
  bool bad = false;
  auto res = resource_of(ctx, o, bad);
  if (bad) return;
  if (!res) return usage_error(ctx, "name a resource: --topic, --group, --transactional-id or --cluster");
  auto ops = operations_of(ctx, o, bad);
  if (bad) return;
  for (const auto& p : o.principals) {
    if (!principal_ok(ctx, p)) return;
  }
  if (o.prefixed && res->first == acl::ResourceType::kCluster) {
    return usage_error(ctx, "--prefixed does not apply to --cluster");
  }
  kafka::CreateAclsRequest req;
  for (const auto& p : o.principals) {
    for (auto op : ops) {
      kafka::CreateAclsRequest::AclCreation c;
      c.resource_type = i8(res->first);
      c.resource_name = res->second;
      c.resource_pattern_type = i8(o.prefixed ? acl::PatternType::kPrefixed : acl::PatternType::kLiteral);
      c.principal = p;
      c.host = o.host.empty() ? "*" : o.host;
      c.operation = i8(op);
      c.permission_type = i8(o.deny ? acl::Permission::kDeny : acl::Permission::kAllow);
      req.creations.push_back(std::move(c));
    }
  }
  auto r = ctx.admin().call_as<kafka::CreateAclsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "acl create", r.error());
  size_t created = 0;
  for (size_t i = 0; i < r->results.size(); ++i) {
    const auto& res_i = r->results[i];
    if (res_i.error_code != 0) {
      std::string what = "acl create";
      if (res_i.error_message) what += " (" + *res_i.error_message + ")";
      fail(ctx, what, client::kafka_error(res_i.error_code, "ACL"));
    } else {
      ++created;
    }
  }
  if (ctx.verbose) std::cerr << "created " << created << " ACL(s)\n";
}

// The filter the options describe (list, delete).
struct Filter {
  int8_t type = i8(acl::ResourceType::kAny);
  std::optional<std::string> name;
  int8_t pattern = i8(acl::PatternType::kAny);
  std::optional<std::string> principal;
  std::optional<std::string> host;
  int8_t operation = i8(acl::Operation::kAny);
  int8_t permission = i8(acl::Permission::kAny);
};

std::optional<std::vector<Filter>> filters_of(Context& ctx, const AclOptions& o) {
  bool bad = false;
  auto res = resource_of(ctx, o, bad);
  if (bad) return std::nullopt;
  auto ops = operations_of(ctx, o, bad);
  if (bad) return std::nullopt;
  if (o.allow && o.deny) {
    usage_error(ctx, "--allow and --deny exclude each other");
    return std::nullopt;
  }
  if (o.prefixed && o.match) {
    usage_error(ctx, "--prefixed and --match exclude each other");
    return std::nullopt;
  }
  if ((o.prefixed || o.match) && !res) {
    usage_error(ctx, "--prefixed and --match need a resource (--topic, --group, ...)");
    return std::nullopt;
  }
  Filter base;
  if (res) {
    base.type = i8(res->first);
    base.name = res->second;
  }
  if (o.prefixed) base.pattern = i8(acl::PatternType::kPrefixed);
  if (o.match) base.pattern = i8(acl::PatternType::kMatch);
  if (!o.host.empty()) base.host = o.host;
  if (o.allow) base.permission = i8(acl::Permission::kAllow);
  if (o.deny) base.permission = i8(acl::Permission::kDeny);
  std::vector<Filter> out;
  std::vector<std::optional<std::string>> principals;
  for (const auto& p : o.principals) {
    if (!principal_ok(ctx, p)) return std::nullopt;
    principals.emplace_back(p);
  }
  if (principals.empty()) principals.emplace_back();
  std::vector<int8_t> op_codes;
  for (auto op : ops) op_codes.push_back(i8(op));
  if (op_codes.empty()) op_codes.push_back(i8(acl::Operation::kAny));
  for (const auto& p : principals) {
    for (int8_t op : op_codes) {
      Filter f = base;
      f.principal = p;
      f.operation = op;
      out.push_back(f);
    }
  }
  return out;
}

struct Row {
  int8_t type, pattern, operation, permission;
  std::string name, principal, host;
};

void print_rows(const std::vector<Row>& rows, bool json) {
  if (json) {
    JsonWriter w;
    w.begin_array();
    for (const auto& r : rows) {
      w.begin_object()
          .field("resource_type", acl::name(static_cast<acl::ResourceType>(r.type)))
          .field("resource_name", r.name)
          .field("pattern_type", acl::name(static_cast<acl::PatternType>(r.pattern)))
          .field("principal", r.principal)
          .field("host", r.host)
          .field("operation", acl::name(static_cast<acl::Operation>(r.operation)))
          .field("permission", acl::name(static_cast<acl::Permission>(r.permission)))
          .end_object();
    }
    std::cout << w.end_array().take() << "\n";
    return;
  }
  for (const auto& r : rows) {
    std::cout << acl::name(static_cast<acl::Permission>(r.permission)) << " " << r.principal
              << " " << acl::name(static_cast<acl::Operation>(r.operation)) << " "
              << acl::name(static_cast<acl::ResourceType>(r.type)) << " " << r.name << " "
              << acl::name(static_cast<acl::PatternType>(r.pattern)) << " host=" << r.host
              << "\n";
  }
}

void acl_list(Context& ctx, const AclOptions& o) {
  auto filters = filters_of(ctx, o);
  if (!filters) return;
  std::vector<Row> rows;
  for (const Filter& f : *filters) {
    kafka::DescribeAclsRequest req;
    req.resource_type_filter = f.type;
    req.resource_name_filter = f.name;
    req.pattern_type_filter = f.pattern;
    req.principal_filter = f.principal;
    req.host_filter = f.host;
    req.operation = f.operation;
    req.permission_type = f.permission;
    auto r = ctx.admin().call_as<kafka::DescribeAclsResponse>(kAnyBroker, req);
    if (!r) return fail(ctx, "acl list", r.error());
    if (r->error_code != 0) {
      std::string what = "acl list";
      if (r->error_message) what += " (" + *r->error_message + ")";
      return fail(ctx, what, client::kafka_error(r->error_code, "ACLs"));
    }
    for (const auto& res : r->resources) {
      for (const auto& a : res.acls) {
        rows.push_back({res.resource_type, res.pattern_type, a.operation, a.permission_type,
                        res.resource_name, a.principal, a.host});
      }
    }
  }
  print_rows(rows, o.format == "json");
}

void acl_delete(Context& ctx, const AclOptions& o) {
  const bool narrowed = !o.topic.empty() || !o.group.empty() || !o.transactional_id.empty() ||
                        o.cluster || !o.principals.empty();
  if (!narrowed && !o.all) {
    return usage_error(ctx,
                       "name a resource or --principal to delete, or --all to delete every ACL");
  }
  auto filters = filters_of(ctx, o);
  if (!filters) return;
  kafka::DeleteAclsRequest req;
  for (const Filter& f : *filters) {
    kafka::DeleteAclsRequest::DeleteAclsFilter d;
    d.resource_type_filter = f.type;
    d.resource_name_filter = f.name;
    d.pattern_type_filter = f.pattern;
    d.principal_filter = f.principal;
    d.host_filter = f.host;
    d.operation = f.operation;
    d.permission_type = f.permission;
    req.filters.push_back(std::move(d));
  }
  auto r = ctx.admin().call_as<kafka::DeleteAclsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "acl delete", r.error());
  std::vector<Row> rows;
  for (const auto& fr : r->filter_results) {
    if (fr.error_code != 0) {
      std::string what = "acl delete";
      if (fr.error_message) what += " (" + *fr.error_message + ")";
      fail(ctx, what, client::kafka_error(fr.error_code, "ACLs"));
      continue;
    }
    for (const auto& m : fr.matching_acls) {
      rows.push_back({m.resource_type, m.pattern_type, m.operation, m.permission_type,
                      m.resource_name, m.principal, m.host});
    }
  }
  if (ctx.exit_code == kExitOk) print_rows(rows, o.format == "json");  // what was deleted
}

void add_resource_options(CLI::App& cmd, AclOptions& o) {
  cmd.add_option("--topic", o.topic, "Topic name (or prefix, with --prefixed; '*': every topic)");
  cmd.add_option("--group", o.group, "Consumer group id (or prefix; '*': every group)");
  cmd.add_option("--transactional-id", o.transactional_id, "Transactional id");
  cmd.add_flag("--cluster", o.cluster, "The cluster itself (admin operations)");
  cmd.add_flag("--prefixed", o.prefixed, "The name is a prefix (PREFIXED pattern)");
}

// The filter options of list and delete.
void add_filter_options(CLI::App& cmd, AclOptions& o) {
  add_resource_options(cmd, o);
  cmd.add_flag("--match", o.match,
               "Every ACL that applies to the named resource (its name, '*' and prefixes)");
  cmd.add_option("--principal", o.principals, "Only this principal's (repeatable)");
  cmd.add_option("--operation", o.operations, "Only these operations (repeatable)");
  cmd.add_option("--host", o.host, "Only ACLs for this host");
  cmd.add_flag("--allow", o.allow, "Only ALLOW ACLs");
  cmd.add_flag("--deny", o.deny, "Only DENY ACLs");
  add_format_option(cmd, o.format);
}

}  // namespace

void register_acl(CLI::App& app, Context& ctx) {
  auto* acl_cmd = app.add_subcommand(
      "acl", "Create, list and delete ACLs (enforced by brokers started with --authorizer.enabled)");
  acl_cmd->require_subcommand(1);

  auto c = std::make_shared<AclOptions>();
  auto* create = acl_cmd->add_subcommand("create", "Allow (or with --deny, deny) operations");
  create->add_option("--principal", c->principals, "User:name or User:* (repeatable)")
      ->required();
  create->add_option("--operation", c->operations,
                     "READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, "
                     "ALTER_CONFIGS, IDEMPOTENT_WRITE, CLUSTER_ACTION or ALL (repeatable)")
      ->required();
  add_resource_options(*create, *c);
  create->add_option("--host", c->host, "Client address the ACL applies to (default: *)");
  create->add_flag("--deny", c->deny, "A DENY ACL (DENY wins over ALLOW)");
  create->callback([&ctx, c] { acl_create(ctx, *c); });

  auto l = std::make_shared<AclOptions>();
  auto* list = acl_cmd->add_subcommand(
      "list", "List ACLs: PERMISSION PRINCIPAL OPERATION TYPE NAME PATTERN host=HOST");
  add_filter_options(*list, *l);
  list->callback([&ctx, l] { acl_list(ctx, *l); });

  auto d = std::make_shared<AclOptions>();
  auto* del = acl_cmd->add_subcommand(
      "delete", "Delete the ACLs matching the options and print them (list's filters)");
  add_filter_options(*del, *d);
  del->add_flag("--all", d->all, "Needed to delete with no resource and no principal: every ACL");
  del->callback([&ctx, d] { acl_delete(ctx, *d); });
}

}  // namespace sluice::cli
