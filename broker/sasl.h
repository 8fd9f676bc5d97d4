// SASL mechanisms of the Kafka listener: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802,
// RFC 7677), server side, and the SCRAM client side the client library (client/) uses. Pure functions over strings plus OpenSSL's PBKDF2/HMAC/SHA: no I/O,
// no threads; the broker keeps one ScramServer per connection (broker/security.cc).
// Credentials are kept salted and iterated (ScramCredential), never as passwords; PLAIN is
// checked against the SCRAM credential by deriving the same keys from the password it carries.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sluice::broker::sasl {

enum class ScramHash : uint8_t { kSha256, kSha512 };
std::optional<ScramHash> scram_hash(std::string_view mechanism);  // "SCRAM-SHA-256" -> kSha256
const char* mechanism_name(ScramHash hash);

constexpr int32_t kScramIterationsMin = 4096;   // RFC 7677's minimum, Kafka's too
constexpr int32_t kScramIterationsMax = 16384;  // Kafka's maximum
constexpr size_t kMessageBytesMax = 4096;       // a longer SASL message is refused

struct ScramCredential {
  std::string salt;        // raw bytes
  std::string stored_key;  // H(HMAC(SaltedPassword, "Client Key"))
  std::string server_key;  // HMAC(SaltedPassword, "Server Key")
  int32_t iterations = kScramIterationsMin;
};

// Derives the credential for `password` with `salt` (random bytes when empty).
ScramCredential make_credential(ScramHash hash, std::string_view password, int32_t iterations,
                                std::string salt = {});
// The credential for a salted password (PBKDF2 output; AlterUserScramCredentials carries it).
ScramCredential credential_from_salted(ScramHash hash, std::string_view salted_password,
                                       std::string salt, int32_t iterations);
// True when `password` derives `credential` (constant-time comparison of the stored key).
bool verify_password(ScramHash hash, const ScramCredential& credential, std::string_view password);

std::string random_bytes(size_t n);
std::string base64_encode(std::string_view raw);
std::optional<std::string> base64_decode(std::string_view text);  // nullopt: not base64

// PLAIN: "authzid NUL authcid NUL password". An authzid, if any, must equal the authcid.
struct PlainMessage {
  std::string user;
  std::string password;
};
Result<PlainMessage> parse_plain(std::string_view message);

// SCRAM client messages (RFC 5802 section 7). Errors say what is wrong, for the log and for
// the client's error message; they never contain a password or proof.
struct ClientFirst {
  std::string gs2_header;  // "n,," or "n,a=authzid,"
  std::string user;        // saslname decoded (=2C and =3D)
  std::string nonce;
  std::string bare;  // the message without the gs2 header (part of the AuthMessage)
};
Result<ClientFirst> parse_client_first(std::string_view message);

struct ClientFinal {
  std::string channel_binding;  // decoded c= attribute: must equal the gs2 header
  std::string nonce;
  std::string proof;          // decoded p= attribute
  std::string without_proof;  // "c=...,r=..." (part of the AuthMessage)
};
Result<ClientFinal> parse_client_final(std::string_view message);

// One SCRAM exchange, server side: client-first -> server-first, client-final -> server-final.
// A user with no credential goes through the same steps with a made-up salt and fails at the
// end, so the answer never tells whether the user exists.
class ScramServer {
 public:
  using Lookup = std::function<std::optional<ScramCredential>(const std::string& user)>;
  // `server_nonce`: fixed for tests (RFC 7677's example); empty: 24 random bytes, base64.
  explicit ScramServer(ScramHash hash, std::string server_nonce = {})
      : hash_(hash), server_nonce_(std::move(server_nonce)) {}

  Result<std::string> first(std::string_view client_first, const Lookup& lookup);
  Result<std::string> final(std::string_view client_final);  // error: authentication failed
  const std::string& user() const { return user_; }
  bool done() const { return done_; }

 private:
  ScramHash hash_;
  std::string server_nonce_;
  std::string user_;
  std::string gs2_header_;
  std::string nonce_;  // client nonce + server nonce
  std::string auth_prefix_;  // client-first-bare "," server-first
  std::optional<ScramCredential> credential_;
  bool started_ = false;
  bool done_ = false;
};

// One SCRAM exchange, client side: first() -> client-first; final(server-first) ->
// client-final (PBKDF2 of the password with the server's salt and iterations); verify(server-
// final) checks the server's signature, so a server that does not know the credential is
// refused too. Errors name what is wrong, never the password.
class ScramClient {
 public:
  // `client_nonce`: fixed for tests (RFC 7677's example); empty: 24 random bytes, base64.
  ScramClient(ScramHash hash, std::string user, std::string password, std::string client_nonce = {});
  ~ScramClient();
  ScramClient(const ScramClient&) = delete;
  ScramClient& operator=(const ScramClient&) = delete;

  std::string first();
  Result<std::string> final(std::string_view server_first);
  Result<void> verify(std::string_view server_final);

 private:
  ScramHash hash_;
  std::string user_;
  std::string password_;
  std::string nonce_;
  std::string client_first_bare_;
  std::string auth_message_;
  std::string server_key_;
  enum class Step : uint8_t { kFirst, kFinal, kVerify, kDone } step_ = Step::kFirst;
};

}  // namespace sluice::broker::sasl
