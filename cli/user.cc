// sluice user create | list | delete: SCRAM credentials in the cluster metadata through
// AlterUserScramCredentials and DescribeUserScramCredentials (docs/security.md "Users"). The
// password is salted and iterated here (PBKDF2, OpenSSL) and only the salted password goes to
// the broker, as Kafka's clients do.
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/json.h"

namespace sluice::cli {

namespace {

using client::kAnyBroker;

struct UserOptions {
  std::string name;
  std::string password;
  std::string password_file;
  std::vector<std::string> mechanisms;
  int32_t iterations = 8192;
  std::string format = "text";
};

// Kafka's ScramMechanism: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
int8_t mechanism_code(const std::string& m) {
  if (m == "SCRAM-SHA-256") return 1;
  if (m == "SCRAM-SHA-512") return 2;
  return 0;
}
const char* mechanism_name(int8_t code) {
  return code == 1 ? "SCRAM-SHA-256" : code == 2 ? "SCRAM-SHA-512" : "UNKNOWN";
}

std::vector<std::byte> bytes_of(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

// PBKDF2 of the password (RFC 5802's Hi()).
std::string salted_password(int8_t mechanism, const std::string& password, const std::string& salt,
                            int32_t iterations) {
  const EVP_MD* md = mechanism == 1 ? EVP_sha256() : EVP_sha512();
  std::string out(static_cast<size_t>(EVP_MD_size(md)), '\0');
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), iterations, md, static_cast<int>(out.size()),
                    reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::vector<int8_t> mechanisms_of(Context& ctx, const UserOptions& o, bool& bad) {
  std::vector<int8_t> out;
  for (const auto& m : o.mechanisms) {
    int8_t c = mechanism_code(m);
    if (c == 0) {
      usage_error(ctx, "unknown mechanism '" + m + "' (SCRAM-SHA-256, SCRAM-SHA-512)");
      bad = true;
      return {};
    }
    out.push_back(c);
  }
  if (out.empty()) out = {1, 2};
  return out;
}

void report(Context& ctx, const std::string& what,
            const kafka::AlterUserScramCredentialsResponse& r) {
  for (const auto& res : r.results) {
    if (res.error_code == 0) continue;
    std::string w = what + " " + res.user;
    if (res.error_message) w += " (" + *res.error_message + ")";
    fail(ctx, w, client::kafka_error(res.error_code, "user"));
  }
}

void user_create(Context& ctx, const UserOptions& o) {
  if (o.password.empty() == o.password_file.empty()) {
    return usage_error(ctx, "give the password with --password-file FILE (or --password)");
  }
  std::string password = o.password;
  if (!o.password_file.empty()) {
    std::ifstream in(o.password_file);
    if (!in || !std::getline(in, password)) {
      return usage_error(ctx, "cannot read a password from '" + o.password_file + "'");
    }
  }
  if (password.empty()) return usage_error(ctx, "the password is empty");
  bool bad = false;
  auto mechs = mechanisms_of(ctx, o, bad);
  if (bad) return;
  kafka::AlterUserScramCredentialsRequest req;
  for (int8_t m : mechs) {
    std::string salt(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), static_cast<int>(salt.size())) !=
        1) {
      std::cerr << "sluice: user create: no random bytes for the salt (OpenSSL RAND_bytes)\n";
      ctx.exit_code = kExitFailure;
      return;
    }
    kafka::AlterUserScramCredentialsRequest::ScramCredentialUpsertion u;
    u.name = o.name;
    u.mechanism = m;
    u.iterations = o.iterations;
    u.salt = bytes_of(salt);
    u.salted_password = bytes_of(salted_password(m, password, salt, o.iterations));
    req.upsertions.push_back(std::move(u));
  }
  auto r = ctx.admin().call_as<kafka::AlterUserScramCredentialsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "user create", r.error());
  report(ctx, "user create", *r);
  if (ctx.exit_code == kExitOk && ctx.verbose) std::cerr << "user " << o.name << " set\n";
}

void user_delete(Context& ctx, const UserOptions& o) {
  bool bad = false;
  auto mechs = mechanisms_of(ctx, o, bad);
  if (bad) return;
  if (o.mechanisms.empty()) {  // every mechanism the user has
    kafka::DescribeUserScramCredentialsRequest d;
    d.users = std::vector<kafka::DescribeUserScramCredentialsRequest::UserName>{{o.name}};
    auto r = ctx.admin().call_as<kafka::DescribeUserScramCredentialsResponse>(kAnyBroker, d);
    if (!r) return fail(ctx, "user delete", r.error());
    if (r->error_code != 0) {
      return fail(ctx, "user delete", client::kafka_error(r->error_code, "users"));
    }
    mechs.clear();
    for (const auto& res : r->results) {
      if (res.error_code != 0) {
        return fail(ctx, "user delete " + o.name, client::kafka_error(res.error_code, "user"));
      }
      for (const auto& c : res.credential_infos) mechs.push_back(c.mechanism);
    }
  }
  kafka::AlterUserScramCredentialsRequest req;
  for (int8_t m : mechs) req.deletions.push_back({o.name, m});
  auto r = ctx.admin().call_as<kafka::AlterUserScramCredentialsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "user delete", r.error());
  report(ctx, "user delete", *r);
}

void user_list(Context& ctx, const UserOptions& o) {
  kafka::DescribeUserScramCredentialsRequest req;  // users null: every user
  auto r = ctx.admin().call_as<kafka::DescribeUserScramCredentialsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "user list", r.error());
  if (r->error_code != 0) {
    std::string what = "user list";
    if (r->error_message) what += " (" + *r->error_message + ")";
    return fail(ctx, what, client::kafka_error(r->error_code, "users"));
  }
  JsonWriter w;
  w.begin_array();
  for (const auto& res : r->results) {
    if (o.format == "json") {
      w.begin_object().field("user", res.user).key("credentials").begin_array();
      for (const auto& c : res.credential_infos) {
        w.begin_object()
            .field("mechanism", mechanism_name(c.mechanism))
            .field("iterations", c.iterations)
            .end_object();
      }
      w.end_array().end_object();
    } else {
      std::cout << res.user;
      for (const auto& c : res.credential_infos) {
        std::cout << " " << mechanism_name(c.mechanism) << "(" << c.iterations << ")";
      }
      std::cout << "\n";
    }
  }
  if (o.format == "json") std::cout << w.end_array().take() << "\n";
}

}  // namespace

void register_user(CLI::App& app, Context& ctx) {
  auto* user = app.add_subcommand("user", "Create, list and delete SASL/SCRAM users");
  user->require_subcommand(1);
  auto c = std::make_shared<UserOptions>();
  auto* create = user->add_subcommand(
      "create", "Create a user or change its password (SCRAM credentials, salted here)");
  create->add_option("name", c->name, "User name")->required();
  create->add_option("--password-file", c->password_file, "File whose first line is the password");
  create->add_option("--password", c->password,
                     "The password (visible to local users in the process list: prefer a file)");
  create->add_option("--mechanism", c->mechanisms,
                     "SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable; default both)");
  create->add_option("--iterations", c->iterations, "PBKDF2 iterations")
      ->capture_default_str()
      ->check(CLI::Range(4096, 16384));
  create->callback([&ctx, c] { user_create(ctx, *c); });

  auto l = std::make_shared<UserOptions>();
  auto* list = user->add_subcommand("list", "Users and their mechanisms (iterations)");
  list->add_option("--format", l->format, "text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  list->callback([&ctx, l] { user_list(ctx, *l); });

  auto d = std::make_shared<UserOptions>();
  auto* del = user->add_subcommand("delete", "Delete a user's credentials");
  del->add_option("name", d->name, "User name")->required();
  del->add_option("--mechanism", d->mechanisms, "Only this mechanism (repeatable; default all)");
  del->callback([&ctx, d] { user_delete(ctx, *d); });
}

}  // namespace sluice::cli
