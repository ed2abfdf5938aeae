#pragma once
// A byte stream that is either plain TCP or TLS over that TCP socket. Both the client side
// (TLS accepted after SSLRequest) and the backend side (TLS started after our SSLRequest)
// use it, so the relay code does not care which it has.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pgproxy/asio.h"

namespace tracegate::pgproxy {

// Resolves `host` and connects `socket` to the first address that answers, with
// TCP_NODELAY set. Bound the time with a SocketDeadline on the same socket.
awaitable<error_code> ConnectTcp(tcp::socket& socket, const std::string& host, uint16_t port);

class Stream {
 public:
  explicit Stream(tcp::socket socket) : socket_(std::move(socket)) {}

  [[nodiscard]] bool tls() const { return tls_ != nullptr; }
  // The negotiated protocol version and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384"); empty
  // without TLS.
  [[nodiscard]] std::string TlsVersion() const;
  [[nodiscard]] std::string TlsCipher() const;
  tcp::socket& socket() { return socket_; }
  // RFC 5929 tls-server-end-point data for SCRAM-SHA-256-PLUS: the hash of the peer's
  // certificate (`peer`, as a TLS client) or of our own (as a TLS server). Fails without TLS.
  [[nodiscard]] absl::StatusOr<std::string> TlsServerEndPoint(bool peer) const;

  // TLS handshake as `type` (server for clients, client for backends). On success every
  // later read and write goes through TLS.
  awaitable<error_code> StartTls(asio::ssl::context& ctx,
                                 asio::ssl::stream_base::handshake_type type,
                                 const std::string& sni_host);

  awaitable<size_t> ReadSome(asio::mutable_buffer buffer, error_code& ec);
  awaitable<void> WriteAll(asio::const_buffer buffer, error_code& ec);

  // Closes the socket (no TLS close_notify: sessions end on a protocol-level goodbye).
  void Close();

 private:
  tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
};

}  // namespace tracegate::pgproxy
