// The broker's listeners and SASL authentication (docs/security.md):
// - one Server per --listeners entry, each stamping its connections' Session with itself;
// - SaslHandshake (17) and SaslAuthenticate (36) with PLAIN and SCRAM-SHA-256/512, answered
//   synchronously on the connection's shard so the next request sees the outcome;
// - on a SASL listener nothing but ApiVersions, SaslHandshake and SaslAuthenticate is served
//   before authentication, and nothing once the session lifetime (KIP-368) has passed;
// - a failed authentication is logged (user and reason, never the password), answered with
//   SASL_AUTHENTICATION_FAILED after connection.failed.authentication.delay.ms, and the
//   connection is closed.
#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>

#include "broker/broker.h"
#include "broker/session.h"
#include "broker/tls.h"

namespace sluice::broker {

using kafka::ErrorCode;

namespace {

std::string to_string(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}
std::vector<std::byte> to_bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return std::vector<std::byte>(p, p + text.size());
}

template <class Body>
Reply frame_reply(const kafka::RequestHeader& header, const Body& body, bool close_after) {
  Reply r{Reply::Kind::kFrame,
          OutFrame{kafka::encode_response(header.correlation_id, header.api_version, body), {}}};
  r.close_after = close_after;
  return r;
}

}  // namespace

const std::string& Broker::listener_name(const ConnectionInfo& conn) {
  static const std::string none;
  return conn.session && conn.session->listener ? conn.session->listener->name : none;
}

kafka::FindCoordinatorResponse Broker::on_listener(const Request& req,
                                                   kafka::FindCoordinatorResponse resp) {
  if (resp.error_code != 0) return resp;
  auto snap = registry_->snapshot();
  if (auto b = snap->brokers.find(resp.node_id); b != snap->brokers.end()) {
    std::tie(resp.host, resp.port) = b->second.address(listener_name(req.conn));
  }
  return resp;
}

void Broker::reload_tls() {
  std::vector<Server*> servers{server_.get()};
  for (auto& s : more_servers_) servers.push_back(s.get());
  for (size_t i = 0; i < servers.size() && servers[i]; ++i) {
    const Listener& l = config_.listeners[i];
    if (!l.tls()) continue;
    if (auto s = servers[i]->reload_tls(); !s) {
      spdlog::error("listener {}: TLS files not reloaded, the previous ones stay in use: {}",
                    l.name, s.error().message);
    } else {
      spdlog::info("listener {}: TLS certificate, key and CAs reloaded", l.name);
    }
  }
  if (config_.inter_broker_protocol == SecurityProtocol::kSsl && cluster_) {
    if (auto tls = make_inter_broker_tls_context(config_); !tls) {
      spdlog::error(
          "inter-broker listener: TLS files not reloaded, the previous ones stay in "
          "use: {}",
          tls.error().message);
    } else {
      cluster_->set_rpc_tls(std::move(*tls));
      spdlog::info("inter-broker listener: TLS certificate, key and CAs reloaded");
    }
  }
}

Status Broker::start_listeners(const std::vector<Shard*>& shards) {
  if (config_.listeners.empty()) {  // a config made in code, not by parse_config()
    Listener l;
    l.name = "PLAINTEXT";
    l.address = config_.listen;
    l.advertised = config_.advertised;
    config_.listeners.push_back(l);
  }
  security_ = std::make_unique<Security>();
  if (!config_.sasl_bootstrap_user.empty() && !security_->has_user(config_.sasl_bootstrap_user)) {
    for (auto hash : {sasl::ScramHash::kSha256, sasl::ScramHash::kSha512}) {
      security_->set_credential(config_.sasl_bootstrap_user, hash,
                                sasl::make_credential(hash, config_.sasl_bootstrap_password,
                                                      sasl::kScramIterationsMin));
    }
    spdlog::info("SASL: bootstrap user '{}' has SCRAM credentials", config_.sasl_bootstrap_user);
  }
  auto handler = [this](const ConnectionInfo& conn, RequestFrame frame,
                        std::function<void(Reply)> done) {
    handle(conn, std::move(frame), std::move(done));
  };
  for (size_t i = 0; i < config_.listeners.size(); ++i) {
    Listener& l = config_.listeners[i];
    auto server = std::make_unique<Server>(config_, limits_, l, shards, handler);
    // connection_creation_rate of the ip entity (client quotas, broker/quota_manager.h).
    server->set_connection_gate([this](const std::string& ip) {
      return quotas_.any_ip() ? quotas_.record_connection(ip) : 0;
    });
    if (auto s = server->listen(); !s) return s;
    if (l.address.port == 0) {
      l.address.port = server->port();  // port 0: advertise the port we got
      if (l.advertised.host.empty()) l.advertised = HostPort{};
    }
    if (i == 0) {
      server_ = std::move(server);
    } else {
      more_servers_.push_back(std::move(server));
    }
  }
  config_.listen = config_.listeners.front().address;
  config_.advertised = config_.listeners.front().advertised;
  return {};
}

// One SASL message of the session's mechanism. On success `reply` is the server's answer
// (empty for PLAIN) and, once `finished`, the session is authenticated; on failure the
// session is reset and `failure` says why (logged here, without the password).
Broker::SaslStep Broker::sasl_step(const ConnectionInfo& conn, Session& s, std::string_view message,
                                   const std::string& client_id) {
  SaslStep out;
  std::string user;
  if (s.mechanism == "PLAIN") {
    auto plain = sasl::parse_plain(message);
    out.finished = true;
    if (!plain) {
      out.failure = plain.error().message;
    } else {
      user = plain->user;
      // Checked against the stored SCRAM credential: no password is kept anywhere.
      auto hash = sasl::ScramHash::kSha512;
      auto cred = security_->credential(user, hash);
      if (!cred) {
        hash = sasl::ScramHash::kSha256;
        cred = security_->credential(user, hash);
      }
      if (!cred || !sasl::verify_password(hash, *cred, plain->password)) {
        out.failure = "unknown user or wrong password";
      }
    }
  } else {
    const auto hash = *sasl::scram_hash(s.mechanism);  // only enabled mechanisms get here
    Result<std::string> answer = std::string();
    if (!s.scram) {
      s.scram = std::make_unique<sasl::ScramServer>(hash);
      answer = s.scram->first(message, [this, hash](const std::string& name) {
        return security_->credential(name, hash);
      });
    } else {
      answer = s.scram->final(message);
      out.finished = true;
    }
    user = s.scram->user();
    if (answer) {
      out.reply = std::move(*answer);
    } else {
      out.failure = answer.error().message;
    }
  }
  const std::string principal = "User:" + user;
  if (out.failure.empty() && out.finished && s.authenticated && principal != s.principal) {
    out.failure = "re-authentication as " + principal + " on a connection of " + s.principal;
  }
  const std::string mechanism = std::move(s.mechanism);
  if (!out.failure.empty()) {
    spdlog::warn("connection {} from {} ({}): {} authentication failed for user '{}': {}; "
                 "closing",
                 conn.id, conn.peer, client_id, mechanism, user, out.failure);
    s.authenticated = false;
    s.scram.reset();
    s.raw_tokens = false;
    return out;
  }
  if (!out.finished) {
    s.mechanism = mechanism;  // more messages to come
    return out;
  }
  const bool again = s.authenticated;
  s.authenticated = true;
  s.principal = principal;
  s.scram.reset();
  s.raw_tokens = false;
  if (config_.reauth_ms > 0) {
    s.expires = Session::Clock::now() + std::chrono::milliseconds(config_.reauth_ms);
  }
  spdlog::log(again ? spdlog::level::debug : spdlog::level::info,
              "connection {} from {} ({}): {}authenticated as {} ({})", conn.id, conn.peer,
              client_id, again ? "re-" : "", principal, mechanism);
  return out;
}

// A failed authentication is answered after connection.failed.authentication.delay.ms (and
// the connection then closed): guessing passwords costs the guesser time, not the broker.
void Broker::reply_after_failure(const ConnectionInfo& conn, Reply reply, Done done) {
  auto timer = std::make_shared<boost::asio::steady_timer>(
      shards_[conn.shard]->shard.context(), std::chrono::milliseconds(config_.failed_auth_delay_ms));
  timer->async_wait([timer, reply = std::move(reply), done = std::move(done)](
                        boost::system::error_code) mutable { done(std::move(reply)); });
}

// After a SaslHandshake v0 the client sends bare SASL tokens (a size and the bytes, no Kafka
// header) and gets bare tokens back; kafka-python 2.0 does so.
bool Broker::handle_raw_sasl(const ConnectionInfo& conn, const RequestFrame& frame, Done& done) {
  if (!conn.session || !conn.session->raw_tokens) return false;
  Bytes bytes = frame.bytes();
  const std::string message(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto step = sasl_step(conn, *conn.session, message, "raw SASL");
  if (!step.failure.empty()) {
    reply_after_failure(conn, Reply::close(), std::move(done));
    return true;
  }
  kafka::EncodedFrame out;
  out.bytes.resize(4);
  store_be<int32_t>(out.bytes.data(), static_cast<int32_t>(step.reply.size()));
  const auto* p = reinterpret_cast<const std::byte*>(step.reply.data());
  out.bytes.insert(out.bytes.end(), p, p + step.reply.size());
  done(Reply{Reply::Kind::kFrame, OutFrame{std::move(out), {}}});
  return true;
}

bool Broker::handle_security(const ConnectionInfo& conn, const kafka::RequestHeader& header,
                             kafka::RequestBody& body, Done& done) {
  Session no_listener;  // a connection made without a Server (none today): plaintext
  Session& s = conn.session ? *conn.session : no_listener;
  const auto now = Session::Clock::now();
  if (auto* hs = std::get_if<kafka::SaslHandshakeRequest>(&body)) {
    kafka::SaslHandshakeResponse resp;
    bool close = false;
    if (!s.needs_sasl()) {
      resp.error_code = static_cast<int16_t>(ErrorCode::kIllegalSaslState);
      close = true;
    } else {
      resp.mechanisms = config_.sasl_mechanisms;
      if (std::find(resp.mechanisms.begin(), resp.mechanisms.end(), hs->mechanism) ==
          resp.mechanisms.end()) {
        spdlog::warn("connection {} from {} ({}): SASL mechanism '{}' is not enabled", conn.id,
                     conn.peer, header.client_id, hs->mechanism);
        resp.error_code = static_cast<int16_t>(ErrorCode::kUnsupportedSaslMechanism);
        close = true;
      } else {
        s.mechanism = hs->mechanism;
        s.scram.reset();
        s.raw_tokens = header.api_version == 0;  // v0: bare SASL tokens follow (kafka-python)
      }
    }
    done(frame_reply(header, resp, close));
    return true;
  }
  if (auto* auth = std::get_if<kafka::SaslAuthenticateRequest>(&body)) {
    kafka::SaslAuthenticateResponse resp;
    if (!s.needs_sasl() || s.mechanism.empty()) {
      resp.error_code = static_cast<int16_t>(ErrorCode::kIllegalSaslState);
      resp.error_message = "SaslAuthenticate without a SaslHandshake first";
      done(frame_reply(header, resp, true));
      return true;
    }
    const std::string mechanism = s.mechanism;
    auto step = sasl_step(conn, s, to_string(auth->auth_bytes), header.client_id);
    if (!step.failure.empty()) {
      resp.error_code = static_cast<int16_t>(ErrorCode::kSaslAuthenticationFailed);
      resp.error_message = "Authentication failed during authentication due to invalid "
                           "credentials with SASL mechanism " + mechanism;
      reply_after_failure(conn, frame_reply(header, resp, true), std::move(done));
      return true;
    }
    resp.auth_bytes = to_bytes(step.reply);
    if (step.finished && config_.reauth_ms > 0) resp.session_lifetime_ms = config_.reauth_ms;
    done(frame_reply(header, resp, false));
    return true;
  }
  if (!s.needs_sasl()) return false;
  if (s.authenticated && now < s.expires) return false;
  if (header.api_key == static_cast<int16_t>(kafka::ApiKey::kApiVersions)) return false;
  if (s.authenticated) {
    spdlog::info("connection {} from {} ({}): closing, the session of {} expired "
                 "(connections.max.reauth.ms={}) without re-authentication",
                 conn.id, conn.peer, header.client_id, s.principal, config_.reauth_ms);
  } else {
    spdlog::warn("connection {} from {} ({}): closing, API key {} before SASL authentication",
                 conn.id, conn.peer, header.client_id, header.api_key);
  }
  done(Reply::close());
  return true;
}

}  // namespace sluice::broker
