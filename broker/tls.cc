#include "broker/tls.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "replication/transport/tls.h"

namespace sluice::broker {

namespace ssl = boost::asio::ssl;

namespace {
transport::TlsFiles tls_files(const BrokerConfig& config) {
  return {.certificate = config.ssl_certificate, .key = config.ssl_key, .ca = config.ssl_ca};
}
}  // namespace

Result<std::shared_ptr<ssl::context>> make_tls_context(const BrokerConfig& config) {
  const transport::TlsVerify verify =
      config.ssl_client_auth == "required"    ? transport::TlsVerify::kRequired
      : config.ssl_client_auth == "requested" ? transport::TlsVerify::kRequested
                                              : transport::TlsVerify::kNone;
  return transport::make_tls_context(ssl::context::tls_server, tls_files(config), verify);
}

Result<std::shared_ptr<ssl::context>> make_inter_broker_tls_context(const BrokerConfig& config) {
  return transport::make_peer_tls_context(tls_files(config));
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
