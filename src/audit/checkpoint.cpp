// Ed25519 checkpoint keys (OpenSSL 3 EVP) and the checkpoint's signed message and JSON.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/escaping.h"
#include "audit/log.h"
#include "audit/segment.h"
#include "common/strings.h"

namespace tracegate::audit {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

constexpr size_t kSignatureSize = 64;

// The text of OpenSSL's newest queued error, and the queue cleared (it is per thread).
std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) {
    return "unknown error";
  }
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

const std::string& EmptyString() {
  static const std::string kEmpty;
  return kEmpty;
}

}  // namespace

struct CheckpointKey::Impl {
  PkeyPtr pkey;
  bool private_key = false;
  std::string key_id;
};

CheckpointKey::CheckpointKey() : impl_(std::make_unique<Impl>()) {}
CheckpointKey::CheckpointKey(CheckpointKey&&) noexcept = default;
CheckpointKey& CheckpointKey::operator=(CheckpointKey&&) noexcept = default;
CheckpointKey::~CheckpointKey() = default;

namespace {

absl::StatusOr<std::string> KeyId(EVP_PKEY* pkey) {
  unsigned char raw[32];
  size_t len = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof(raw)) {
    return absl::InvalidArgumentError(
        Cat("checkpoint key: cannot read the public key: ", OpenSslError()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(raw, len, digest, &digest_len, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError(Cat("checkpoint key: SHA-256 failed: ", OpenSslError()));
  }
  return internal::HexOf(std::string_view(reinterpret_cast<const char*>(digest), 8));
}

}  // namespace

absl::StatusOr<CheckpointKey> CheckpointKey::FromPrivatePem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pkey(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!pkey) {
    return absl::InvalidArgumentError(
        Cat("checkpoint key: not a PEM private key: ", OpenSslError()));
  }
  if (EVP_PKEY_is_a(pkey.get(), "ED25519") != 1) {
    return absl::InvalidArgumentError("checkpoint key: not an Ed25519 key");
  }
  CheckpointKey key;
  auto id = KeyId(pkey.get());
  if (!id.ok()) {
    return id.status();
  }
  key.impl_->key_id = *std::move(id);
  key.impl_->pkey = std::move(pkey);
  key.impl_->private_key = true;
  return key;
}

absl::StatusOr<CheckpointKey> CheckpointKey::FromPublicPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pkey(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!pkey) {
    return absl::InvalidArgumentError(
        Cat("checkpoint key: not a PEM public key: ", OpenSslError()));
  }
  if (EVP_PKEY_is_a(pkey.get(), "ED25519") != 1) {
    return absl::InvalidArgumentError("checkpoint key: not an Ed25519 key");
  }
  CheckpointKey key;
  auto id = KeyId(pkey.get());
  if (!id.ok()) {
    return id.status();
  }
  key.impl_->key_id = *std::move(id);
  key.impl_->pkey = std::move(pkey);
  return key;
}

absl::StatusOr<std::string> CheckpointKey::GeneratePrivatePem() {
  PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!pkey) {
    return absl::InternalError(Cat("checkpoint key: keygen failed: ", OpenSslError()));
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError(Cat("checkpoint key: PEM encoding failed: ", OpenSslError()));
  }
  return BioText(bio.get());
}

bool CheckpointKey::can_sign() const { return impl_ && impl_->private_key; }

const std::string& CheckpointKey::key_id() const { return impl_ ? impl_->key_id : EmptyString(); }

std::string CheckpointKey::PublicPem() const {
  if (!impl_ || !impl_->pkey) {
    return "";
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), impl_->pkey.get()) != 1) {
    ERR_clear_error();
    return "";
  }
  return BioText(bio.get());
}

absl::StatusOr<std::string> CheckpointKey::Sign(std::string_view message) const {
  if (!can_sign()) {
    return absl::FailedPreconditionError("checkpoint key: no private key to sign with");
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::string sig(kSignatureSize, '\0');
  size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      len != kSignatureSize) {
    return absl::InternalError(Cat("checkpoint key: signing failed: ", OpenSslError()));
  }
  return sig;
}

bool CheckpointKey::Verify(std::string_view message, std::string_view signature) const {
  if (!impl_ || !impl_->pkey || signature.size() != kSignatureSize) {
    return false;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, impl_->pkey.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::string CheckpointMessage(const Checkpoint& checkpoint) {
  return Cat("tracegate-checkpoint-v1\n", checkpoint.seq, "\n", internal::HexOf(checkpoint.head),
             "\n", checkpoint.time_us, "\n");
}

std::string CheckpointToJson(const Checkpoint& checkpoint) {
  nlohmann::json j = {
      {"seq", checkpoint.seq},
      {"head", internal::HexOf(checkpoint.head)},
      {"time_us", checkpoint.time_us},
      {"key_id", checkpoint.key_id},
      {"signature", absl::Base64Escape(absl::string_view(checkpoint.signature.data(),
                                                         checkpoint.signature.size()))},
  };
  // key_id is hex, so dump() cannot meet invalid UTF-8.
  return j.dump();
}

absl::StatusOr<Checkpoint> CheckpointFromJson(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("checkpoint: not a JSON object");
  }
  Checkpoint c;
  auto seq = j.find("seq");
  if (seq == j.end() || !seq->is_number_unsigned()) {
    return absl::InvalidArgumentError("checkpoint: \"seq\" is missing or not a number");
  }
  c.seq = seq->get<uint64_t>();
  auto head = j.find("head");
  if (head == j.end() || !head->is_string() ||
      !internal::HashFromHex(head->get_ref<const std::string&>(), c.head)) {
    return absl::InvalidArgumentError("checkpoint: \"head\" is missing or not 64 hex digits");
  }
  auto time = j.find("time_us");
  if (time == j.end() || !time->is_number_integer()) {
    return absl::InvalidArgumentError("checkpoint: \"time_us\" is missing or not a number");
  }
  c.time_us = time->get<int64_t>();
  auto key_id = j.find("key_id");
  if (key_id == j.end() || !key_id->is_string()) {
    return absl::InvalidArgumentError("checkpoint: \"key_id\" is missing");
  }
  c.key_id = key_id->get<std::string>();
  auto sig = j.find("signature");
  std::string raw;
  if (sig == j.end() || !sig->is_string() ||
      !absl::Base64Unescape(absl::string_view(sig->get_ref<const std::string&>()), &raw) ||
      raw.size() != kSignatureSize) {
    return absl::InvalidArgumentError(
        "checkpoint: \"signature\" is missing or not 64 bytes of base64");
  }
  c.signature = std::move(raw);
  return c;
}

}  // namespace tracegate::audit
