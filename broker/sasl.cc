#include "broker/sasl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <vector>

namespace sluice::broker::sasl {
namespace {

const EVP_MD* digest(ScramHash hash) { return hash == ScramHash::kSha256 ? EVP_sha256() : EVP_sha512(); }

std::string hmac(ScramHash hash, std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  HMAC(digest(hash), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string sha(ScramHash hash, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, digest(hash), nullptr);
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

size_t digest_bytes(ScramHash hash) { return hash == ScramHash::kSha256 ? 32 : 64; }

bool equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Splits "k=v,k=v" into attributes; false on an empty or malformed one. RFC 5802 names are
// one letter; Kafka's extensions ("tokenauth=true") are words, so words are accepted and the
// callers check the names they need.
using Attributes = std::vector<std::pair<std::string_view, std::string_view>>;
bool split_attributes(std::string_view text, Attributes& out) {
  while (true) {
    const size_t comma = text.find(',');
    std::string_view attr = text.substr(0, comma);
    const size_t eq = attr.find('=');
    if (eq == 0 || eq == std::string_view::npos) return false;
    out.emplace_back(attr.substr(0, eq), attr.substr(eq + 1));
    if (comma == std::string_view::npos) return true;
    text.remove_prefix(comma + 1);
  }
}

// RFC 5802 saslname: '=' only as "=2C" (',') or "=3D" ('='); no ',' at all.
std::optional<std::string> decode_saslname(std::string_view name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == ',') return std::nullopt;
    if (name[i] != '=') {
      out.push_back(name[i]);
      continue;
    }
    const std::string_view code = name.substr(i + 1, 2);
    if (code == "2C") {
      out.push_back(',');
    } else if (code == "3D") {
      out.push_back('=');
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

bool printable_nonce(std::string_view nonce) {
  if (nonce.empty()) return false;
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

Unexpected<Error> fail(std::string message) { return error(1, std::move(message)); }

// The made-up salt of a user without a credential: stable for the process, so asking twice
// does not reveal that the user is missing.
std::string fake_salt(std::string_view user) {
  static const std::string secret = random_bytes(32);
  return hmac(ScramHash::kSha256, secret, user).substr(0, 16);
}

constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::optional<ScramHash> scram_hash(std::string_view mechanism) {
  if (mechanism == "SCRAM-SHA-256") return ScramHash::kSha256;
  if (mechanism == "SCRAM-SHA-512") return ScramHash::kSha512;
  return std::nullopt;
}

const char* mechanism_name(ScramHash hash) {
  return hash == ScramHash::kSha256 ? "SCRAM-SHA-256" : "SCRAM-SHA-512";
}

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  SLUICE_ASSERT(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) ==
                1);
  return out;
}

std::string base64_encode(std::string_view raw) {
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  for (size_t i = 0; i < raw.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(raw[i]) << 16;
    if (i + 1 < raw.size()) v |= static_cast<uint8_t>(raw[i + 1]) << 8;
    if (i + 2 < raw.size()) v |= static_cast<uint8_t>(raw[i + 2]);
    out.push_back(kBase64[(v >> 18) & 63]);
    out.push_back(kBase64[(v >> 12) & 63]);
    out.push_back(i + 1 < raw.size() ? kBase64[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < raw.size() ? kBase64[v & 63] : '=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      uint32_t d = 0;
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;  // data after padding
        const size_t at = kBase64.find(c);
        if (at == std::string_view::npos) return std::nullopt;
        d = static_cast<uint32_t>(at);
      }
      v = (v << 6) | d;
    }
    out.push_back(static_cast<char>((v >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

ScramCredential make_credential(ScramHash hash, std::string_view password, int32_t iterations,
                                std::string salt) {
  ScramCredential c;
  c.salt = salt.empty() ? random_bytes(32) : std::move(salt);
  c.iterations = iterations;
  std::string salted(digest_bytes(hash), '\0');
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(c.salt.data()),
                    static_cast<int>(c.salt.size()), iterations, digest(hash),
                    static_cast<int>(salted.size()), reinterpret_cast<unsigned char*>(salted.data()));
  c = credential_from_salted(hash, salted, std::move(c.salt), iterations);
  OPENSSL_cleanse(salted.data(), salted.size());
  return c;
}

ScramCredential credential_from_salted(ScramHash hash, std::string_view salted_password,
                                       std::string salt, int32_t iterations) {
  ScramCredential c;
  c.salt = std::move(salt);
  c.iterations = iterations;
  c.stored_key = sha(hash, hmac(hash, salted_password, "Client Key"));
  c.server_key = hmac(hash, salted_password, "Server Key");
  return c;
}

bool verify_password(ScramHash hash, const ScramCredential& credential,
                     std::string_view password) {
  const ScramCredential derived =
      make_credential(hash, password, credential.iterations, credential.salt);
  return equal(derived.stored_key, credential.stored_key);
}

Result<PlainMessage> parse_plain(std::string_view message) {
  if (message.size() > kMessageBytesMax) return fail("PLAIN message too long");
  const size_t first = message.find('\0');
  if (first == std::string_view::npos) return fail("PLAIN message without a NUL separator");
  const size_t second = message.find('\0', first + 1);
  if (second == std::string_view::npos) return fail("PLAIN message needs two NUL separators");
  const std::string_view authzid = message.substr(0, first);
  PlainMessage m;
  m.user = std::string(message.substr(first + 1, second - first - 1));
  m.password = std::string(message.substr(second + 1));
  if (m.user.empty()) return fail("PLAIN message with an empty user name");
  if (m.password.find('\0') != std::string::npos) return fail("PLAIN message with three NULs");
  if (!authzid.empty() && authzid != m.user) {
    return fail("PLAIN authorization id differs from the user name");
  }
  return m;
}

Result<ClientFirst> parse_client_first(std::string_view message) {
  if (message.size() > kMessageBytesMax) return fail("SCRAM client-first message too long");
  // gs2-header: cbind-flag "," [authzid] ","
  if (message.starts_with("p=")) return fail("SCRAM channel binding is not supported");
  if (!message.starts_with("n,") && !message.starts_with("y,")) {
    return fail("SCRAM client-first message must start with 'n,' or 'y,'");
  }
  const size_t end = message.find(',', 2);
  if (end == std::string_view::npos) return fail("SCRAM client-first message without a gs2 header");
  const std::string_view authz = message.substr(2, end - 2);
  std::optional<std::string> authzid;
  if (!authz.empty()) {
    if (!authz.starts_with("a=")) return fail("SCRAM gs2 header: bad authorization id");
    authzid = decode_saslname(authz.substr(2));
    if (!authzid) return fail("SCRAM gs2 header: bad authorization id");
  }
  ClientFirst m;
  m.gs2_header = std::string(message.substr(0, end + 1));
  m.bare = std::string(message.substr(end + 1));
  Attributes attrs;
  if (!split_attributes(m.bare, attrs) || attrs.size() < 2) {
    return fail("SCRAM client-first message: expected n=<user>,r=<nonce>");
  }
  if (attrs[0].first == "m") return fail("SCRAM mandatory extensions are not supported");
  if (attrs[0].first != "n" || attrs[1].first != "r") {
    return fail("SCRAM client-first message: expected n=<user>,r=<nonce>");
  }
  auto user = decode_saslname(attrs[0].second);
  if (!user || user->empty()) return fail("SCRAM client-first message: bad user name");
  m.user = std::move(*user);
  if (!printable_nonce(attrs[1].second)) return fail("SCRAM client-first message: bad nonce");
  m.nonce = std::string(attrs[1].second);
  if (authzid && *authzid != m.user) {
    return fail("SCRAM authorization id differs from the user name");
  }
  return m;
}

Result<ClientFinal> parse_client_final(std::string_view message) {
  if (message.size() > kMessageBytesMax) return fail("SCRAM client-final message too long");
  Attributes attrs;
  if (!split_attributes(message, attrs) || attrs.size() < 3 || attrs[0].first != "c" ||
      attrs[1].first != "r" || attrs.back().first != "p") {
    return fail("SCRAM client-final message: expected c=<binding>,r=<nonce>,...,p=<proof>");
  }
  ClientFinal m;
  auto binding = base64_decode(attrs[0].second);
  if (!binding) return fail("SCRAM client-final message: channel binding is not base64");
  m.channel_binding = std::move(*binding);
  m.nonce = std::string(attrs[1].second);
  auto proof = base64_decode(attrs.back().second);
  if (!proof) return fail("SCRAM client-final message: proof is not base64");
  m.proof = std::move(*proof);
  m.without_proof = std::string(message.substr(0, message.rfind(",p=")));
  return m;
}

Result<std::string> ScramServer::first(std::string_view client_first, const Lookup& lookup) {
  if (started_) return fail("SCRAM client-first message sent twice");
  started_ = true;
  auto m = parse_client_first(client_first);
  if (!m) return unexpected(std::move(m).error());
  user_ = m->user;
  gs2_header_ = m->gs2_header;
  credential_ = lookup(user_);
  const std::string salt = credential_ ? credential_->salt : fake_salt(user_);
  const int32_t iterations = credential_ ? credential_->iterations : kScramIterationsMin;
  nonce_ = m->nonce + (server_nonce_.empty() ? base64_encode(random_bytes(24)) : server_nonce_);
  std::string server_first =
      "r=" + nonce_ + ",s=" + base64_encode(salt) + ",i=" + std::to_string(iterations);
  auth_prefix_ = m->bare + "," + server_first;
  return server_first;
}

Result<std::string> ScramServer::final(std::string_view client_final) {
  if (!started_ || done_) return fail("SCRAM client-final message out of order");
  done_ = true;
  auto m = parse_client_final(client_final);
  if (!m) return unexpected(std::move(m).error());
  if (m->channel_binding != gs2_header_) return fail("SCRAM channel binding does not match");
  // RFC 5802 wants the nonce repeated exactly; librdkafka before 2.2 sends the client nonce
  // once more in front of it, and Kafka accepts any nonce that ends with its own, as here.
  if (!m->nonce.ends_with(nonce_)) return fail("SCRAM nonce does not match");
  if (!credential_) return fail("unknown user or wrong password");
  if (m->proof.size() != digest_bytes(hash_)) return fail("unknown user or wrong password");
  const std::string auth_message = auth_prefix_ + "," + m->without_proof;
  const std::string signature = hmac(hash_, credential_->stored_key, auth_message);
  std::string client_key = m->proof;
  for (size_t i = 0; i < client_key.size(); ++i) client_key[i] ^= signature[i];
  if (!equal(sha(hash_, client_key), credential_->stored_key)) {
    return fail("unknown user or wrong password");
  }
  return "v=" + base64_encode(hmac(hash_, credential_->server_key, auth_message));
}

namespace {

// RFC 5802 saslname: ',' as "=2C", '=' as "=3D".
std::string encode_saslname(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

ScramClient::ScramClient(ScramHash hash, std::string user, std::string password,
                         std::string client_nonce)
    : hash_(hash),
      user_(std::move(user)),
      password_(std::move(password)),
      nonce_(client_nonce.empty() ? base64_encode(random_bytes(24)) : std::move(client_nonce)) {}

ScramClient::~ScramClient() {
  OPENSSL_cleanse(password_.data(), password_.size());
  OPENSSL_cleanse(server_key_.data(), server_key_.size());
}

std::string ScramClient::first() {
  step_ = Step::kFinal;
  client_first_bare_ = "n=" + encode_saslname(user_) + ",r=" + nonce_;
  return "n,," + client_first_bare_;
}

Result<std::string> ScramClient::final(std::string_view server_first) {
  if (step_ != Step::kFinal) return fail("SCRAM server-first message out of order");
  step_ = Step::kVerify;
  if (server_first.size() > kMessageBytesMax) return fail("SCRAM server-first message too long");
  Attributes attrs;
  if (!split_attributes(server_first, attrs)) {
    return fail("malformed SCRAM server-first message");
  }
  std::string_view nonce, salt64, iterations_text;
  for (const auto& [k, v] : attrs) {
    if (k == "e") return fail("the server refused: " + std::string(v));
    if (k == "r") nonce = v;
    if (k == "s") salt64 = v;
    if (k == "i") iterations_text = v;
  }
  if (!nonce.starts_with(nonce_) || nonce.size() <= nonce_.size() || !printable_nonce(nonce)) {
    return fail("SCRAM server nonce does not extend the client's");
  }
  auto salt = base64_decode(salt64);
  if (!salt || salt->empty()) return fail("SCRAM salt is not base64");
  int32_t iterations = 0;
  auto [end, ec] = std::from_chars(iterations_text.data(),
                                   iterations_text.data() + iterations_text.size(), iterations);
  if (ec != std::errc() || end != iterations_text.data() + iterations_text.size() ||
      iterations < kScramIterationsMin || iterations > kScramIterationsMax) {
    return fail("SCRAM iteration count '" + std::string(iterations_text) + "' not in " +
                std::to_string(kScramIterationsMin) + ".." + std::to_string(kScramIterationsMax));
  }
  std::string salted(digest_bytes(hash_), '\0');
  PKCS5_PBKDF2_HMAC(password_.data(), static_cast<int>(password_.size()),
                    reinterpret_cast<const unsigned char*>(salt->data()),
                    static_cast<int>(salt->size()), iterations, digest(hash_),
                    static_cast<int>(salted.size()), reinterpret_cast<unsigned char*>(salted.data()));
  std::string client_key = hmac(hash_, salted, "Client Key");
  server_key_ = hmac(hash_, salted, "Server Key");
  OPENSSL_cleanse(salted.data(), salted.size());
  const std::string without_proof = "c=biws,r=" + std::string(nonce);
  auth_message_ = client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
  const std::string signature = hmac(hash_, sha(hash_, client_key), auth_message_);
  for (size_t i = 0; i < client_key.size(); ++i) client_key[i] ^= signature[i];
  std::string out = without_proof + ",p=" + base64_encode(client_key);
  OPENSSL_cleanse(client_key.data(), client_key.size());
  return out;
}

Result<void> ScramClient::verify(std::string_view server_final) {
  if (step_ != Step::kVerify) return fail("SCRAM server-final message out of order");
  step_ = Step::kDone;
  if (server_final.starts_with("e=")) {
    return fail("the server refused: " + std::string(server_final.substr(2)));
  }
  if (!server_final.starts_with("v=")) return fail("malformed SCRAM server-final message");
  std::string_view v = server_final.substr(2);
  v = v.substr(0, v.find(','));
  auto signature = base64_decode(v);
  if (!signature || !equal(*signature, hmac(hash_, server_key_, auth_message_))) {
    return fail("the server's SCRAM signature is wrong: it does not know this user's "
                "credential (a server impersonating the broker?)");
  }
  return {};
}

}  // namespace sluice::broker::sasl
