#include "broker/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace sluice::broker {

namespace ssl = boost::asio::ssl;

namespace {
// TLS 1.2 suites: ECDHE key exchange and AEAD only (TLS 1.3's are all of that already).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
}  // namespace

Result<std::shared_ptr<ssl::context>> make_tls_context(const BrokerConfig& config) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(ctx->native_handle(), kTls12Ciphers);
  boost::system::error_code ec;
  auto fail = [&](const std::string& what, const std::string& path) {
    return error(2, "TLS: cannot " + what + " '" + path + "': " + ec.message());
  };
  if (ctx->use_certificate_chain_file(config.ssl_certificate, ec); ec) {
    return fail("read the certificate chain", config.ssl_certificate);
  }
  if (ctx->use_private_key_file(config.ssl_key, ssl::context::pem, ec); ec) {
    return fail("read the private key", config.ssl_key);
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return error(2, "TLS: the private key '" + config.ssl_key + "' does not match the certificate '" +
                        config.ssl_certificate + "'");
  }
  if (!config.ssl_ca.empty()) {
    if (ctx->load_verify_file(config.ssl_ca, ec); ec) {
      return fail("read the CA certificates", config.ssl_ca);
    }
  }
  if (config.ssl_client_auth == "required") {
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } else if (config.ssl_client_auth == "requested") {
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  return ctx;
}

std::string certificate_principal(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  std::string out;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    BIO* bio = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    out = "User:" + std::string(data, static_cast<size_t>(n));
    BIO_free(bio);
  }
  X509_free(cert);
  return out;
}

}  // namespace sluice::broker
