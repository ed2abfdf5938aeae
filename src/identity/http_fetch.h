#pragma once
// The production Fetcher, over libcurl.
//
// Only http:// and https:// URLs; HTTPS verifies the peer and host name (against the issuer's
// ca_file when set, else the system store). 3 s to connect, FetchOptions::timeout (5 s by
// default) in all; responses over kMaxResponseBytes are cut off as an error; any status but
// 200 is an error. GET follows at most 3 redirects and never from https to another scheme;
// POST (introspection, which carries client credentials) follows none.
//
// Plain http is accepted because tests run a local IdP over http; production issuers should
// use https (a warning is logged once per URL fetched over http).

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "identity/fetcher.h"

namespace tracegate::identity {

inline constexpr size_t kMaxResponseBytes = 1 << 20;

class CurlFetcher final : public Fetcher {
 public:
  CurlFetcher();

  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& url,
                                                const FetchOptions& options) override;
  [[nodiscard]] absl::StatusOr<std::string> Post(const std::string& url, const std::string& form,
                                                 const BasicAuth& auth,
                                                 const FetchOptions& options) override;

 private:
  void WarnIfPlainHttp(const std::string& url);

  absl::Mutex mu_;
  absl::flat_hash_set<std::string> warned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tracegate::identity
