#include "app/http_client.h"

#include <curl/curl.h>

#include <memory>

#include "common/strings.h"

namespace tracegate::app {

namespace {

constexpr size_t kMaxResponseBytes = 1 << 20;

size_t Append(char* data, size_t size, size_t count, void* user) {
  auto* out = static_cast<std::string*>(user);
  if (out->size() + size * count > kMaxResponseBytes) {
    return 0;  // curl reports a write error
  }
  out->append(data, size * count);
  return size * count;
}

}  // namespace

absl::StatusOr<HttpResult> Perform(const HttpCall& call) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    return absl::InternalError("cannot initialise libcurl");
  }
  struct curl_slist* list = nullptr;
  for (const std::string& header : call.headers) {
    list = curl_slist_append(list, header.c_str());
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, curl_slist_free_all);
  HttpResult result;
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &result.body);
  if (!call.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, call.ca_file.c_str());
  }
  if (call.method != "GET" && call.method != "DELETE") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, call.body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(call.body.size()));
  }
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    return absl::UnavailableError(
        Cat(call.method, " ", call.url, ": ", error[0] != '\0' ? error : curl_easy_strerror(code)));
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &result.status);
  return result;
}

}  // namespace tracegate::app
