#include "pgproxy/stream.h"

#include <openssl/ssl.h>

#include "common/server_tls.h"

namespace tracegate::pgproxy {

awaitable<error_code> ConnectTcp(tcp::socket& socket, const std::string& host, uint16_t port) {
  error_code ec;
  tcp::resolver resolver(socket.get_executor());
  auto endpoints = co_await resolver.async_resolve(host, std::to_string(port), Redirect(ec));
  if (!ec) {
    co_await asio::async_connect(socket, endpoints, Redirect(ec));
  }
  if (!ec) {
    socket.set_option(tcp::no_delay(true), ec);
  }
  co_return ec;
}

awaitable<error_code> Stream::StartTls(asio::ssl::context& ctx,
                                       asio::ssl::stream_base::handshake_type type,
                                       const std::string& sni_host) {
  auto tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, ctx);
  if (type == asio::ssl::stream_base::client && !sni_host.empty()) {
    SSL_set_tlsext_host_name(tls->native_handle(), sni_host.c_str());
    tls->set_verify_callback(asio::ssl::host_name_verification(sni_host));
  }
  error_code ec;
  co_await tls->async_handshake(type, Redirect(ec));
  if (!ec) {
    tls_ = std::move(tls);
  }
  co_return ec;
}

awaitable<size_t> Stream::ReadSome(asio::mutable_buffer buffer, error_code& ec) {
  // Plain async_read_some, speculative recv included. Waiting for readiness first would
  // save a syscall, but Asio's epoll reactor is edge-triggered and its wait operations do
  // not try the socket first: an edge harvested while no operation was queued is gone, and
  // a later wait can sleep forever on bytes already in the socket.
  if (tls_) {
    co_return co_await tls_->async_read_some(buffer, Redirect(ec));
  }
  co_return co_await socket_.async_read_some(buffer, Redirect(ec));
}

awaitable<void> Stream::WriteAll(asio::const_buffer buffer, error_code& ec) {
  if (tls_) {
    co_await asio::async_write(*tls_, buffer, Redirect(ec));
  } else {
    co_await asio::async_write(socket_, buffer, Redirect(ec));
  }
}

void Stream::Close() {
  error_code ignored;  // closing an already-broken socket is not an error worth reporting
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

absl::StatusOr<std::string> Stream::TlsServerEndPoint(bool peer) const {
  if (!tls_) {
    return absl::FailedPreconditionError("no TLS on this connection");
  }
  SSL* ssl = tls_->native_handle();
  if (!peer) {
    return tracegate::TlsServerEndPoint(SSL_get_certificate(ssl));  // owned by the SSL
  }
  X509* cert = SSL_get1_peer_certificate(ssl);
  absl::StatusOr<std::string> hash = tracegate::TlsServerEndPoint(cert);
  X509_free(cert);
  return hash;
}

std::string Stream::TlsVersion() const {
  return tls_ ? std::string(SSL_get_version(tls_->native_handle())) : std::string();
}

std::string Stream::TlsCipher() const {
  return tls_ ? std::string(SSL_get_cipher_name(tls_->native_handle())) : std::string();
}

}  // namespace tracegate::pgproxy
