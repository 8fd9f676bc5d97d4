#include "replication/transport/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/error.hpp>
#include <filesystem>

namespace sluice::transport {

namespace ssl = boost::asio::ssl;

namespace {
// TLS 1.2 suites: ECDHE key exchange and AEAD only (TLS 1.3's are all of that already).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
}  // namespace

Result<std::shared_ptr<ssl::context>> make_tls_context(ssl::context::method method,
                                                       const TlsFiles& files, TlsVerify verify) {
  auto ctx = std::make_shared<ssl::context>(method);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(ctx->native_handle(), kTls12Ciphers);
  boost::system::error_code ec;
  auto fail = [&](const std::string& what, const std::string& path) {
    std::error_code fs_ec;
    const std::string why = !std::filesystem::exists(path, fs_ec) ? "no such file" : ec.message();
    return error(2, "TLS: cannot " + what + " '" + path + "': " + why);
  };
  if (ctx->use_certificate_chain_file(files.certificate, ec); ec) {
    return fail("read the certificate chain", files.certificate);
  }
  ctx->use_private_key_file(files.key, ssl::context::pem, ec);
  // OpenSSL checks a key against the certificate as it loads it.
  const bool mismatch = ec && ec.category() == boost::asio::error::get_ssl_category() &&
                        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
                            X509_R_KEY_VALUES_MISMATCH;
  if (ec && !mismatch) return fail("read the private key", files.key);
  if (mismatch || SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return error(2, "TLS: the private key '" + files.key + "' does not match the certificate '" +
                        files.certificate + "'");
  }
  if (!files.ca.empty()) {
    if (ctx->load_verify_file(files.ca, ec); ec) {
      return fail("read the CA certificates", files.ca);
    }
  }
  switch (verify) {
    case TlsVerify::kRequired:
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      break;
    case TlsVerify::kRequested:
      ctx->set_verify_mode(ssl::verify_peer);
      break;
    case TlsVerify::kNone:
      ctx->set_verify_mode(ssl::verify_none);
      break;
  }
  return ctx;
}

Result<std::shared_ptr<ssl::context>> make_peer_tls_context(const TlsFiles& files) {
  if (files.ca.empty()) {
    return error(2,
                 "TLS between brokers is mutual: it needs the CA certificates (ssl.ca.location) "
                 "that sign the brokers' certificates");
  }
  return make_tls_context(ssl::context::tls, files, TlsVerify::kRequired);
}

}  // namespace sluice::transport
