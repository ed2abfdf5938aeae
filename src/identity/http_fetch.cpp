#include "identity/http_fetch.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "common/strings.h"
#include "identity/form.h"

namespace tracegate::identity {
namespace {

constexpr long kConnectTimeoutMs = 3000;
constexpr long kMaxRedirects = 3;

struct Transfer {
  std::string body;
  bool too_large = false;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  size_t len = size * count;
  if (transfer->body.size() + len > kMaxResponseBytes) {
    transfer->too_large = true;
    return 0;  // aborts the transfer
  }
  transfer->body.append(data, len);
  return len;
}

// Runs the transfer on a multi handle, waking every 50 ms to look at the cancel flag (an
// easy-handle progress callback may wait a second between calls).
CURLcode RunCancellable(CURL* easy, const std::atomic<bool>* cancel, bool& cancelled) {
  struct MultiFree {
    void operator()(CURLM* m) const { curl_multi_cleanup(m); }
  };
  std::unique_ptr<CURLM, MultiFree> multi(curl_multi_init());
  if (!multi || curl_multi_add_handle(multi.get(), easy) != CURLM_OK) {
    return CURLE_FAILED_INIT;
  }
  CURLcode result = CURLE_OK;
  int running = 1;
  while (running > 0) {
    if (curl_multi_perform(multi.get(), &running) != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    if (running == 0) {
      break;
    }
    if (cancel != nullptr && cancel->load()) {
      cancelled = true;
      result = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    curl_multi_poll(multi.get(), nullptr, 0, 50, nullptr);
  }
  if (!cancelled && result == CURLE_OK) {
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
        result = msg->data.result;
      }
    }
  }
  curl_multi_remove_handle(multi.get(), easy);
  return result;
}

bool StartsWithNoCase(const std::string& text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(),
                    [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(bytes.data()),
                            static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(std::max(len, 0)));
  return out;
}

struct CurlFree {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

absl::StatusOr<std::string> Perform(const std::string& url, const std::string* form,
                                    const BasicAuth* auth, const FetchOptions& options) {
  const char* method = form != nullptr ? "POST" : "GET";
  bool https = StartsWithNoCase(url, "https://");
  if (!https && !StartsWithNoCase(url, "http://")) {
    return absl::InvalidArgumentError(Cat(method, " ", url, ": only http and https are fetched"));
  }
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) {
    return absl::InternalError("curl_easy_init failed");
  }
  CURL* c = curl.get();
  Transfer transfer;
  char error[CURL_ERROR_SIZE] = {0};
  long total_ms = std::max<long>(1, static_cast<long>(options.timeout.count()));
  curl_slist* raw_headers = curl_slist_append(nullptr, "Accept: application/json");
  std::string authorization;
  if (form != nullptr) {
    raw_headers = curl_slist_append(raw_headers, "Content-Type: application/x-www-form-urlencoded");
    if (auth != nullptr) {
      authorization = "Authorization: Basic " +
                      Base64(FormUrlEncode(auth->user) + ":" + FormUrlEncode(auth->password));
      raw_headers = curl_slist_append(raw_headers, authorization.c_str());
    }
  }
  std::unique_ptr<curl_slist, CurlFree> headers(raw_headers);

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, form != nullptr ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(kConnectTimeoutMs, total_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, total_ms);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str());
  }
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kMaxResponseBytes));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "tracegate");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (form != nullptr) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form->c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(form->size()));
  }

  bool cancelled = false;
  CURLcode code = RunCancellable(c, options.cancel, cancelled);
  if (transfer.too_large || code == CURLE_FILESIZE_EXCEEDED) {
    return absl::UnavailableError(
        Cat(method, " ", url, ": response larger than ", kMaxResponseBytes, " bytes"));
  }
  if (cancelled) {
    return absl::CancelledError(Cat(method, " ", url, ": cancelled"));
  }
  if (code != CURLE_OK) {
    return absl::UnavailableError(
        Cat(method, " ", url, ": ", error[0] != '\0' ? error : curl_easy_strerror(code)));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    return absl::UnavailableError(Cat(method, " ", url, ": HTTP status ", status));
  }
  return std::move(transfer.body);
}

}  // namespace

CurlFetcher::CurlFetcher() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

void CurlFetcher::WarnIfPlainHttp(const std::string& url) {
  if (!StartsWithNoCase(url, "http://")) {
    return;
  }
  absl::MutexLock lock(&mu_);
  if (warned_.size() < 1000 && warned_.insert(url).second) {
    spdlog::warn("identity: fetching {} over plain http; production issuers should use https", url);
  }
}

absl::StatusOr<std::string> CurlFetcher::Get(const std::string& url, const FetchOptions& options) {
  WarnIfPlainHttp(url);
  return Perform(url, nullptr, nullptr, options);
}

absl::StatusOr<std::string> CurlFetcher::Post(const std::string& url, const std::string& form,
                                              const BasicAuth& auth, const FetchOptions& options) {
  WarnIfPlainHttp(url);
  return Perform(url, &form, &auth, options);
}

}  // namespace tracegate::identity
