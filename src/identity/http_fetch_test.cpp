// The libcurl fetcher against a loopback HTTP server: status, size cap, schemes, redirects,
// timeouts, cancellation, and what a POST carries.
#include "identity/http_fetch.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"

namespace tracegate::identity {
namespace {

using ::testing::HasSubstr;

// A self-signed certificate for 127.0.0.1 (SAN IP), made in-process.
struct SelfSigned {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  X509* cert = X509_new();
  SelfSigned() {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(cert, key, EVP_sha256());
  }
  ~SelfSigned() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  std::string WritePem(const std::string& name) const {
    std::string path = (std::filesystem::path(::testing::TempDir()) / name).string();
    FILE* f = std::fopen(path.c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
    return path;
  }
};

// One thread per connection; every response closes the connection. With `tls`, speaks HTTPS.
class LoopbackServer {
 public:
  explicit LoopbackServer(const SelfSigned* tls = nullptr) {
    // OpenSSL's socket BIO writes with write(): a client that hangs up mid-handshake (as curl
    // does on an untrusted certificate) must not kill the test with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    if (tls != nullptr) {
      ssl_ctx_ = SSL_CTX_new(TLS_server_method());
      SSL_CTX_use_certificate(ssl_ctx_, tls->cert);
      SSL_CTX_use_PrivateKey(ssl_ctx_, tls->key);
    }
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    acceptor_.join();
    for (std::thread& t : workers_) t.join();
    ::close(fd_);
    SSL_CTX_free(ssl_ctx_);
  }
  std::string Url(const std::string& path) const {
    return std::string(ssl_ctx_ != nullptr ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string LastRequest() {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int client = ::accept(fd_, nullptr, nullptr);
      if (client >= 0) workers_.emplace_back([this, client] { Serve(client); });
    }
  }
  struct Conn {
    int fd;
    SSL* ssl = nullptr;
    ssize_t Recv(char* buf, size_t len) {
      return ssl != nullptr ? SSL_read(ssl, buf, static_cast<int>(len)) : ::recv(fd, buf, len, 0);
    }
    void Send(const std::string& data) {
      size_t done = 0;
      while (done < data.size()) {
        ssize_t n = ssl != nullptr
                        ? SSL_write(ssl, data.data() + done, static_cast<int>(data.size() - done))
                        : ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n <= 0) return;
        done += static_cast<size_t>(n);
      }
    }
    ~Conn() {
      SSL_free(ssl);
      ::close(fd);
    }
  };
  void Serve(int fd) {
    Conn conn{fd};
    if (ssl_ctx_ != nullptr) {
      conn.ssl = SSL_new(ssl_ctx_);
      SSL_set_fd(conn.ssl, fd);
      if (SSL_accept(conn.ssl) != 1) return;
    }
    std::string request;
    char buf[4096];
    size_t header_end;
    while ((header_end = request.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = conn.Recv(buf, sizeof(buf));
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    size_t length = 0;
    if (size_t cl = request.find("Content-Length: "); cl != std::string::npos) {
      length = std::stoul(request.substr(cl + 16));
    }
    while (request.size() < header_end + 4 + length) {
      ssize_t n = conn.Recv(buf, sizeof(buf));
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      last_request_ = request;
    }
    std::string path = request.substr(request.find(' ') + 1);
    path = path.substr(0, path.find(' '));
    auto reply = [&](const std::string& status, const std::string& body,
                     const std::string& extra = "") {
      conn.Send("HTTP/1.1 " + status + "\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n" + extra + "\r\n" + body);
    };
    if (path == "/ok" || path == "/post") {
      reply("200 OK", R"({"ok":true})");
    } else if (path == "/big") {
      reply("200 OK", std::string(kMaxResponseBytes + 1, 'x'));
    } else if (path == "/big-unsized") {
      conn.Send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
      conn.Send(std::string(kMaxResponseBytes + 4096, 'x'));
    } else if (path == "/to-ok") {
      reply("302 Found", "", "Location: /ok\r\n");
    } else if (path == "/to-file") {
      reply("302 Found", "", "Location: file:///etc/passwd\r\n");
    } else if (path == "/slow") {
      for (int i = 0; i < 300 && !stop_; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      reply("200 OK", "late");
    } else {
      reply("404 Not Found", "nope");
    }
  }

  int fd_ = -1;
  SSL_CTX* ssl_ctx_ = nullptr;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::string last_request_;
};

std::string Message(const absl::Status& s) { return std::string(MessageOf(s)); }

class HttpFetchTest : public ::testing::Test {
 protected:
  LoopbackServer server_;
  CurlFetcher fetcher_;
  FetchOptions options_;
};

TEST_F(HttpFetchTest, GetsA200Body) {
  absl::StatusOr<std::string> body = fetcher_.Get(server_.Url("/ok"), options_);
  ASSERT_TRUE(body.ok()) << Message(body.status());
  EXPECT_EQ(*body, R"({"ok":true})");
}

TEST_F(HttpFetchTest, AnyOtherStatusIsAnError) {
  absl::StatusOr<std::string> body = fetcher_.Get(server_.Url("/missing"), options_);
  ASSERT_FALSE(body.ok());
  EXPECT_THAT(Message(body.status()), HasSubstr("HTTP status 404"));
}

TEST_F(HttpFetchTest, CapsTheResponseSize) {
  for (const char* path : {"/big", "/big-unsized"}) {
    absl::StatusOr<std::string> body = fetcher_.Get(server_.Url(path), options_);
    ASSERT_FALSE(body.ok()) << path;
    EXPECT_THAT(Message(body.status()), HasSubstr("response larger than 1048576 bytes"));
  }
}

TEST_F(HttpFetchTest, OnlyHttpAndHttps) {
  for (const char* url : {"ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://x", "/relative"}) {
    absl::StatusOr<std::string> body = fetcher_.Get(url, options_);
    ASSERT_FALSE(body.ok());
    EXPECT_THAT(Message(body.status()), HasSubstr("only http and https"));
  }
}

TEST_F(HttpFetchTest, FollowsHttpRedirectsButNotToOtherSchemes) {
  absl::StatusOr<std::string> body = fetcher_.Get(server_.Url("/to-ok"), options_);
  ASSERT_TRUE(body.ok()) << Message(body.status());
  EXPECT_EQ(*body, R"({"ok":true})");
  body = fetcher_.Get(server_.Url("/to-file"), options_);
  ASSERT_FALSE(body.ok());
  EXPECT_THAT(Message(body.status()), ::testing::Not(HasSubstr("root:")));
}

TEST_F(HttpFetchTest, PostDoesNotFollowRedirects) {
  absl::StatusOr<std::string> body =
      fetcher_.Post(server_.Url("/to-ok"), "token=x", BasicAuth{"id", "pw"}, options_);
  ASSERT_FALSE(body.ok());
  EXPECT_THAT(Message(body.status()), HasSubstr("HTTP status 302"));
}

TEST_F(HttpFetchTest, TimesOut) {
  options_.timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> body = fetcher_.Get(server_.Url("/slow"), options_);
  ASSERT_FALSE(body.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(HttpFetchTest, CancelEndsAFetchPromptly) {
  std::atomic<bool> cancel{false};
  options_.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> body = fetcher_.Get(server_.Url("/slow"), options_);
  canceller.join();
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(HttpFetchTest, PostSendsFormAndEncodedBasicAuth) {
  absl::StatusOr<std::string> body =
      fetcher_.Post(server_.Url("/post"), "token=abc&token_type_hint=access_token",
                    BasicAuth{"client:1", "p@ss word"}, options_);
  ASSERT_TRUE(body.ok()) << Message(body.status());
  std::string request = server_.LastRequest();
  EXPECT_THAT(request, HasSubstr("POST /post HTTP/1.1"));
  EXPECT_THAT(request, HasSubstr("Content-Type: application/x-www-form-urlencoded"));
  // RFC 6749 §2.3.1: form-encode id and secret, then base64("client%3A1:p%40ss+word").
  EXPECT_THAT(request, HasSubstr("Authorization: Basic Y2xpZW50JTNBMTpwJTQwc3Mrd29yZA=="));
  EXPECT_THAT(request, ::testing::EndsWith("token=abc&token_type_hint=access_token"));
}

TEST_F(HttpFetchTest, HttpsNeverFallsBackToPlainText) {
  options_.timeout = std::chrono::milliseconds(500);
  std::string url = server_.Url("/ok");
  url.replace(0, 4, "https");
  absl::StatusOr<std::string> body = fetcher_.Get(url, options_);
  EXPECT_FALSE(body.ok());
}

TEST(HttpsFetch, VerifiesThePeerAgainstTheIssuerCaFile) {
  SelfSigned tls;
  LoopbackServer server(&tls);
  CurlFetcher fetcher;
  FetchOptions options;
  options.timeout = std::chrono::milliseconds(3000);
  absl::StatusOr<std::string> untrusted = fetcher.Get(server.Url("/ok"), options);
  ASSERT_FALSE(untrusted.ok());  // self-signed, not in the system store
  EXPECT_THAT(Message(untrusted.status()), HasSubstr("certificate"));

  options.ca_file = tls.WritePem("http_fetch_test_ca.pem");
  absl::StatusOr<std::string> trusted = fetcher.Get(server.Url("/ok"), options);
  ASSERT_TRUE(trusted.ok()) << Message(trusted.status());
  EXPECT_EQ(*trusted, R"({"ok":true})");

  // The same certificate under another name: host name verification refuses it.
  std::string by_name = server.Url("/ok");
  by_name.replace(by_name.find("127.0.0.1"), 9, "localhost");
  EXPECT_FALSE(fetcher.Get(by_name, options).ok());
  std::filesystem::remove(options.ca_file);
}

}  // namespace
}  // namespace tracegate::identity
