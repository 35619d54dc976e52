#include "common/tls/context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/tls/certificate.h"
#include "common/tls/error.h"
#include "common/tls/internal.h"
#include "common/tls/session.h"

namespace trellis::tls {

namespace {

// TLS 1.2 is only for peers outside the mesh (kube-apiserver, webhook
// callers): forward secrecy and AEAD only, the same set Go's crypto/tls
// prefers. TLS 1.3 suites are fixed by BoringSSL and all acceptable.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

Error invalid(std::string message) {
  return make_tls_error(ErrorCode::invalid_argument, std::move(message));
}

uint16_t wire_version(TlsVersion version) {
  return version == TlsVersion::tls1_2 ? TLS1_2_VERSION : TLS1_3_VERSION;
}

Status validate(const ContextConfig& config) {
  const bool has_chain = !config.certificate_chain_pem.empty();
  const bool has_key = !config.private_key_pem.empty();
  if (config.role == Role::server && !has_chain) {
    return invalid("certificate_chain_pem: required for a server");
  }
  if (has_chain && !has_key) return invalid("private_key_pem: required with certificate_chain_pem");
  if (has_key && !has_chain) return invalid("certificate_chain_pem: required with private_key_pem");
  if (config.verify_peer && config.trust_bundle_pem.empty()) {
    return invalid("trust_bundle_pem: required when verify_peer is set");
  }
  if (!config.verify_peer && config.peer_check) return invalid("peer_check: requires verify_peer");
  if (config.min_version == TlsVersion::tls1_3 && config.max_version == TlsVersion::tls1_2) {
    return invalid("min_version: TLSv1.3 is above max_version TLSv1.2");
  }
  for (size_t i = 0; i < config.alpn_protocols.size(); ++i) {
    size_t size = config.alpn_protocols[i].size();
    if (size == 0 || size > 255) {
      return invalid("alpn_protocols[" + std::to_string(i) + "]: must be 1 to 255 bytes long");
    }
  }
  return ok_status();
}

Status use_identity(SSL_CTX* ctx, const ContextConfig& config) {
  auto chain = internal::parse_certificates(config.certificate_chain_pem, "certificate_chain_pem");
  if (!chain.ok()) return std::move(chain).error();
  auto key = internal::parse_private_key(config.private_key_pem, "private_key_pem");
  if (!key.ok()) return std::move(key).error();
  X509* leaf = chain->front().get();
  ERR_clear_error();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    return invalid("private_key_pem: does not match the certificate: " +
                   internal::take_error_reason());
  }
  if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key->get()) != 1) {
    return invalid("certificate_chain_pem: cannot use the certificate: " +
                   internal::take_error_reason());
  }
  for (size_t i = 1; i < chain->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, (*chain)[i].get()) != 1) {
      return invalid("certificate_chain_pem: cannot add certificate " + std::to_string(i + 1) +
                     " to the chain: " + internal::take_error_reason());
    }
  }
  return ok_status();
}

Status use_trust_bundle(SSL_CTX* ctx, const std::string& pem) {
  auto roots = internal::parse_certificates(pem, "trust_bundle_pem");
  if (!roots.ok()) return std::move(roots).error();
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (size_t i = 0; i < roots->size(); ++i) {
    if (X509_STORE_add_cert(store, (*roots)[i].get()) != 1) {
      return invalid("trust_bundle_pem: certificate " + std::to_string(i + 1) + ": " +
                     internal::take_error_reason());
    }
  }
  return ok_status();
}

}  // namespace

std::string_view version_name(TlsVersion version) {
  return version == TlsVersion::tls1_2 ? "TLSv1.2" : "TLSv1.3";
}

Result<std::shared_ptr<const Context>> Context::create(ContextConfig config) {
  Status valid = validate(config);
  if (!valid.ok()) return std::move(valid).error();

  std::shared_ptr<Context> context(new Context());
  context->ssl_ctx_ = SSL_CTX_new(TLS_method());
  SSL_CTX* ctx = context->ssl_ctx_;
  if (ctx == nullptr) return invalid("cannot create SSL_CTX: " + internal::take_error_reason());
  context->role_ = config.role;
  context->verify_peer_ = config.verify_peer;
  context->alpn_mismatch_ = config.alpn_mismatch;
  context->peer_check_ = std::move(config.peer_check);

  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(ctx, wire_version(config.min_version)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, wire_version(config.max_version)) != 1 ||
      SSL_CTX_set_strict_cipher_list(ctx, kTls12Ciphers) != 1) {
    return invalid("cannot configure versions and ciphers: " + internal::take_error_reason());
  }
  // Connections are long-lived and every peer is verified in full: no
  // resumption, so no session cache and no tickets to encrypt and send.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);

  if (!config.certificate_chain_pem.empty() || !config.private_key_pem.empty()) {
    Status identity = use_identity(ctx, config);
    if (!identity.ok()) return std::move(identity).error();
  }
  if (!config.trust_bundle_pem.empty()) {
    Status trust = use_trust_bundle(ctx, config.trust_bundle_pem);
    if (!trust.ok()) return std::move(trust).error();
  }

  int mode = SSL_VERIFY_NONE;
  if (config.verify_peer) {
    mode = config.role == Role::server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                       : SSL_VERIFY_PEER;
  }
  SSL_CTX_set_verify(ctx, mode, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, &internal::SessionCallbacks::verify_certificate, nullptr);

  if (!config.alpn_protocols.empty()) {
    if (config.role == Role::client) {
      std::string wire;
      for (const auto& protocol : config.alpn_protocols) {
        wire.push_back(static_cast<char>(protocol.size()));
        wire += protocol;
      }
      // Unlike the rest of the API, this returns 0 on success.
      if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const uint8_t*>(wire.data()),
                                  wire.size()) != 0) {
        return invalid("alpn_protocols: " + internal::take_error_reason());
      }
    } else {
      SSL_CTX_set_alpn_select_cb(ctx, &internal::SessionCallbacks::select_alpn, nullptr);
      // BoringSSL calls the ALPN callback only when the client offers ALPN;
      // a client offering none is caught on its ClientHello.
      if (config.alpn_mismatch == AlpnMismatch::fail) {
        SSL_CTX_set_select_certificate_cb(ctx, &internal::SessionCallbacks::check_client_hello);
      }
    }
  }
  context->alpn_protocols_ = std::move(config.alpn_protocols);
  return std::shared_ptr<const Context>(std::move(context));
}

Context::~Context() { SSL_CTX_free(ssl_ctx_); }

PeerCheck expect_spiffe_id(std::string spiffe_id) {
  return [expected = std::move(spiffe_id)](const Session& session) -> Status {
    auto id = session.peer_spiffe_id();
    if (!id.ok()) {
      return make_tls_error(ErrorCode::peer_identity,
                            "expected " + expected + "; " + id.error().message);
    }
    if (*id != expected) {
      return make_tls_error(ErrorCode::peer_identity, "expected " + expected + ", got " + *id);
    }
    return ok_status();
  };
}

PeerCheck expect_trust_domain(std::string trust_domain) {
  return [expected = std::move(trust_domain)](const Session& session) -> Status {
    auto id = session.peer_spiffe_id();
    if (!id.ok()) {
      return make_tls_error(ErrorCode::peer_identity,
                            "expected trust domain " + expected + "; " + id.error().message);
    }
    if (spiffe_trust_domain(*id) != expected) {
      return make_tls_error(ErrorCode::peer_identity,
                            *id + " is not in trust domain " + expected);
    }
    return ok_status();
  };
}

}  // namespace trellis::tls
