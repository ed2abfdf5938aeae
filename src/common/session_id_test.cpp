#include "common/session_id.h"

#include <gtest/gtest.h>

#include <set>

namespace tracegate {
namespace {

TEST(NewSessionId, IsTheKindAndSixteenHexDigits) {
  const std::string id = NewSessionId('p');
  ASSERT_EQ(id.size(), 17u) << id;
  EXPECT_EQ(id[0], 'p');
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 1), std::string::npos) << id;
}

TEST(NewSessionId, DoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(seen.insert(NewSessionId('h')).second);
  }
}

}  // namespace
}  // namespace tracegate
