// DecodeBody: what it returns at, under and over the limit, how it tells a truncated body from
// a large one, and how much memory it takes on the way (this binary counts every operator new).
#include "httpproxy/decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "common/status.h"

// --- every allocation of this binary counted: live bytes and their peak ---------------------

namespace {

std::atomic<size_t> g_live{0};
std::atomic<size_t> g_peak{0};
constexpr size_t kHeader = alignof(std::max_align_t);

void* CountedAllocate(size_t n) {
  void* p = std::malloc(n + kHeader);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  *static_cast<size_t*>(p) = n;
  const size_t live = g_live.fetch_add(n) + n;
  size_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return static_cast<char*>(p) + kHeader;
}

void CountedRelease(void* p) {
  if (p == nullptr) {
    return;
  }
  char* base = static_cast<char*>(p) - kHeader;
  g_live.fetch_sub(*reinterpret_cast<size_t*>(base));
  std::free(base);
}

}  // namespace

void* operator new(size_t n) { return CountedAllocate(n); }
void* operator new[](size_t n) { return CountedAllocate(n); }
void operator delete(void* p) noexcept { CountedRelease(p); }
void operator delete[](void* p) noexcept { CountedRelease(p); }
void operator delete(void* p, size_t) noexcept { CountedRelease(p); }
void operator delete[](void* p, size_t) noexcept { CountedRelease(p); }

namespace tracegate::httpproxy {
namespace {

using ::testing::HasSubstr;

constexpr int kGzipWindow = 15 + 16;
constexpr int kZlibWindow = 15;

// `plain` compressed; finished (a complete stream) or only flushed (Z_SYNC_FLUSH: every byte of
// `plain` decodes, but the stream has no end: a body cut off right after it).
std::string Compress(const std::string& plain, int window_bits, bool finish = true) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, plain.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  z.avail_in = static_cast<uInt>(plain.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, finish ? Z_FINISH : Z_SYNC_FLUSH), finish ? Z_STREAM_END : Z_OK);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

// `n` bytes of JSON-ish text that compresses well but not to nothing.
std::string Text(size_t n) {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; out.size() < n; ++i) {
    out += "{\"role\":\"user\",\"content\":\"step " + std::to_string(i * 7919 % 100003) + "\"},";
  }
  out.resize(n);
  return out;
}

struct Encoding {
  const char* name;
  int window_bits;
};
void PrintTo(const Encoding& encoding, std::ostream* os) { *os << encoding.name; }
class DecodeTest : public ::testing::TestWithParam<Encoding> {};

TEST_P(DecodeTest, ExactlyTheLimitIsAcceptedAndOneByteMoreIsTooLarge) {
  const std::string plain = Text(10000);
  const std::string body = Compress(plain, GetParam().window_bits);
  absl::StatusOr<std::string> at = DecodeBody(GetParam().name, body, plain.size());
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(*at, plain);
  absl::StatusOr<std::string> under = DecodeBody(GetParam().name, body, plain.size() - 1);
  EXPECT_EQ(under.status().code(), absl::StatusCode::kResourceExhausted) << under.status();
}

// A body cut off exactly where its decoded text reaches the limit is broken, not large: the
// store sent nothing past the limit.
TEST_P(DecodeTest, ABodyTruncatedAtTheLimitIsTruncatedNotTooLarge) {
  const std::string plain = Text(10000);
  const std::string cut = Compress(plain, GetParam().window_bits, /*finish=*/false);
  for (const uint64_t limit : {plain.size(), plain.size() + 1, plain.size() * 2}) {
    absl::StatusOr<std::string> got = DecodeBody(GetParam().name, cut, limit);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
        << "limit " << limit << ": " << got.status();
    EXPECT_THAT(std::string(MessageOf(got.status())), HasSubstr("truncated"));
  }
  // One byte under what it holds it is too large, whatever follows.
  absl::StatusOr<std::string> over = DecodeBody(GetParam().name, cut, plain.size() - 1);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
}

TEST_P(DecodeTest, CorruptAndTrailingBytesAreRefused) {
  const std::string plain = Text(5000);
  std::string body = Compress(plain, GetParam().window_bits);
  absl::StatusOr<std::string> trailing = DecodeBody(GetParam().name, body + "x", 1 << 20);
  EXPECT_EQ(trailing.status().code(), absl::StatusCode::kInvalidArgument);
  body[body.size() / 2] ^= 0x55;
  body[body.size() / 2 + 1] ^= 0x55;
  absl::StatusOr<std::string> corrupt = DecodeBody(GetParam().name, body, 1 << 20);
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument) << corrupt.status();
}

TEST_P(DecodeTest, AnEmptyBodyDecodesToNothing) {
  absl::StatusOr<std::string> got =
      DecodeBody(GetParam().name, Compress("", GetParam().window_bits), 16);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "");
}

// Peak live bytes allocated while decoding (the input is allocated before).
size_t PeakWhileDecoding(const char* encoding, const std::string& body, uint64_t limit,
                         absl::StatusCode* code) {
  std::string input = body;
  const size_t before = g_live.load();
  g_peak.store(before);
  absl::StatusOr<std::string> got = DecodeBody(encoding, std::move(input), limit);
  const size_t peak = g_peak.load() - before;
  *code = got.status().code();
  return peak;
}

// The decoded body is held once, in one buffer no larger than the limit: no doubling growth
// whose old and new buffers are alive together (the old code peaked near 2 × the limit).
TEST_P(DecodeTest, DecodingAllocatesAtMostTheLimitPlusScratch) {
  constexpr uint64_t kLimit = (3u << 19) + 7;  // 1.5 MiB + 7: not a power of two
  constexpr size_t kScratch = 64 * 1024;       // zlib is malloc'd; this is our own slack
  absl::StatusCode code;
  const size_t fits = PeakWhileDecoding(
      GetParam().name, Compress(Text(kLimit), GetParam().window_bits), kLimit, &code);
  EXPECT_EQ(code, absl::StatusCode::kOk);
  EXPECT_LE(fits, kLimit + kScratch);
  // A bomb: 64 MiB of zeros in ~64 KiB.
  const size_t bomb = PeakWhileDecoding(
      GetParam().name, Compress(std::string(64u << 20, '\0'), GetParam().window_bits), kLimit,
      &code);
  EXPECT_EQ(code, absl::StatusCode::kResourceExhausted);
  EXPECT_LE(bomb, kLimit + kScratch);
}

INSTANTIATE_TEST_SUITE_P(Zlib, DecodeTest,
                         ::testing::Values(Encoding{"gzip", kGzipWindow},
                                           Encoding{"deflate", kZlibWindow}),
                         [](const auto& info) { return std::string(info.param.name); });

// gzip's ISIZE trailer only sizes the buffer: zlib checks it, so a lie is a corrupt body, and
// costs no more memory than the limit.
TEST(DecodeBodyTest, AGzipSizeTrailerThatLiesIsCorrupt) {
  const std::string plain = Text(10000);
  const std::string body = Compress(plain, kGzipWindow);
  for (const uint32_t isize : {0u, 9999u, 10001u, 1u << 20, 0xffffffffu}) {
    std::string lying = body;
    for (int i = 0; i < 4; ++i) {
      lying[lying.size() - 4 + i] = static_cast<char>(isize >> (8 * i));
    }
    absl::StatusCode code;
    const size_t peak = PeakWhileDecoding("gzip", lying, 1 << 16, &code);
    EXPECT_EQ(code, absl::StatusCode::kInvalidArgument) << isize;
    EXPECT_LE(peak, (1u << 16) + (64u << 10)) << isize;
  }
}

TEST(DecodeBodyTest, IdentityIsByteForByteWithinTheLimit) {
  absl::StatusOr<std::string> got = DecodeBody("", "{\"id\":1}", 8);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "{\"id\":1}");
  EXPECT_EQ(DecodeBody("identity", "{\"id\":1}", 7).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(DecodeBodyTest, EncodingsZlibCannotReadAreRefused) {
  for (const char* encoding : {"br", "zstd", "compress", "gzip, gzip", "gzip, br"}) {
    EXPECT_EQ(DecodeBody(encoding, "\xff\xfe garbage", 1 << 20).status().code(),
              absl::StatusCode::kFailedPrecondition)
        << encoding;
  }
}

}  // namespace
}  // namespace tracegate::httpproxy
