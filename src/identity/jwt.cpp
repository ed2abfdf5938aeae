#include "identity/jwt.h"

#include <algorithm>
#include <optional>

#include "common/status.h"
#include "common/strings.h"
#include "identity/base64url.h"
#include "identity/strict_json.h"

namespace tracegate::identity {
namespace {

absl::Status Malformed(std::string_view reason) {
  return absl::UnauthenticatedError(Cat("malformed JWT: ", reason));
}

absl::StatusOr<nlohmann::json> DecodeObject(std::string_view part, std::string_view what) {
  if (part.empty()) {
    return Malformed(Cat(what, " is empty"));
  }
  std::optional<std::string> bytes = Base64UrlDecode(part);
  if (!bytes) {
    return Malformed(Cat(what, " is not unpadded base64url"));
  }
  absl::StatusOr<nlohmann::json> value = ParseStrictJson(*bytes, /*max_depth=*/16);
  if (!value.ok()) {
    return Malformed(Cat(what, ": ", MessageOf(value.status())));
  }
  if (!value->is_object()) {
    return Malformed(Cat(what, " is not a JSON object"));
  }
  return value;
}

// A header member that must be a string when present; "" when absent.
absl::StatusOr<std::string> OptionalString(const nlohmann::json& header, const char* name) {
  auto it = header.find(name);
  if (it == header.end()) {
    return std::string();
  }
  if (!it->is_string()) {
    return Malformed(Cat("header ", name, " is not a string"));
  }
  return it->get<std::string>();
}

}  // namespace

bool LooksLikeJws(std::string_view token) {
  return std::count(token.begin(), token.end(), '.') == 2;
}

absl::StatusOr<Jws> ParseJws(std::string_view token) {
  if (token.size() > kMaxTokenBytes) {
    return Malformed(Cat("longer than ", kMaxTokenBytes, " bytes"));
  }
  size_t first = token.find('.');
  size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return Malformed("not three dot-separated parts");
  }
  std::string_view header_part = token.substr(0, first);
  std::string_view payload_part = token.substr(first + 1, second - first - 1);
  std::string_view signature_part = token.substr(second + 1);

  Jws jws;
  TG_ASSIGN_OR_RETURN(jws.header, DecodeObject(header_part, "header"));
  TG_ASSIGN_OR_RETURN(jws.payload, DecodeObject(payload_part, "payload"));
  std::optional<std::string> signature = Base64UrlDecode(signature_part);
  if (!signature) {
    return Malformed("signature is not unpadded base64url");
  }
  jws.signature = std::move(*signature);

  auto alg = jws.header.find("alg");
  if (alg == jws.header.end() || !alg->is_string() || alg->get_ref<const std::string&>().empty()) {
    return Malformed("header alg is missing or not a string");
  }
  jws.alg = alg->get<std::string>();
  TG_ASSIGN_OR_RETURN(jws.kid, OptionalString(jws.header, "kid"));
  TG_ASSIGN_OR_RETURN(jws.typ, OptionalString(jws.header, "typ"));
  TG_RETURN_IF_ERROR(OptionalString(jws.header, "cty").status());
  if (jws.header.contains("enc")) {
    return Malformed("header has enc (an encrypted JWT is not accepted)");
  }
  jws.signing_input = std::string(token.substr(0, second));
  return jws;
}

}  // namespace tracegate::identity
