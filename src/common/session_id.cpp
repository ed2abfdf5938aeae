#include "common/session_id.h"

#include <openssl/rand.h>

namespace tracegate {

std::string NewSessionId(char kind) {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(1, kind);
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 0xf]);
  }
  return id;
}

}  // namespace tracegate
