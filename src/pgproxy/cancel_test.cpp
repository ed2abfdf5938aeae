#include "pgproxy/cancel.h"

#include <gtest/gtest.h>

#include <set>

namespace tracegate::pgproxy {
namespace {

CancelTarget Target(int32_t backend_pid) {
  return CancelTarget{.host = "127.0.0.1",
                      .port = 5432,
                      .backend_key = {.process_id = backend_pid, .secret_key = 77},
                      .connection = "traces-pg"};
}

TEST(CancelRegistryTest, FindsTheBackendOnlyWithTheRightSecret) {
  CancelRegistry registry;
  pgwire::BackendKeyData key = registry.Register(Target(4242));
  EXPECT_GT(key.process_id, 0);

  auto found = registry.Find({.process_id = key.process_id, .secret_key = key.secret_key});
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->backend_key.process_id, 4242);

  EXPECT_FALSE(
      registry.Find({.process_id = key.process_id, .secret_key = key.secret_key + 1}).has_value());
  EXPECT_FALSE(registry.Find({.process_id = 4242, .secret_key = 77}).has_value())
      << "the backend's own key must not work through the gateway";
}

TEST(CancelRegistryTest, ASessionOnAReusedBackendGetsANewKey) {
  CancelRegistry registry;
  pgwire::BackendKeyData first = registry.Register(Target(4242));
  registry.Unregister(first);
  pgwire::BackendKeyData second = registry.Register(Target(4242));
  EXPECT_FALSE(
      registry.Find({.process_id = first.process_id, .secret_key = first.secret_key}).has_value() &&
      first.secret_key != second.secret_key);
  EXPECT_FALSE(first.process_id == second.process_id && first.secret_key == second.secret_key);
}

TEST(CancelRegistryTest, KeysAreUniqueAmongLiveSessions) {
  CancelRegistry registry;
  std::set<int32_t> pids;
  for (int i = 0; i < 2000; ++i) {
    pids.insert(registry.Register(Target(i)).process_id);
  }
  EXPECT_EQ(pids.size(), 2000u);
}

TEST(CancelRegistryTest, UnregisteredKeysNoLongerCancel) {
  CancelRegistry registry;
  pgwire::BackendKeyData key = registry.Register(Target(1));
  registry.Unregister(key);
  EXPECT_FALSE(registry.Find({.process_id = key.process_id, .secret_key = key.secret_key}));
}

}  // namespace
}  // namespace tracegate::pgproxy
