#include "portcullis/io/fd_budget.hh"

#include <gtest/gtest.h>

#include <limits>

using namespace portcullis;
using io::FdBudget;
using io::FdFit;

namespace {

config::Config two_listeners() {
    config::Config cfg;
    cfg.server.listen.resize(2);
    cfg.server.max_connections = 1000;
    cfg.admin.listen = config::ListenAddress{};
    cfg.admin.max_connections = 64;
    return cfg;
}

} // namespace

TEST(FdBudget, CountsEachPlaneApart) {
    FdBudget b = io::fd_budget(two_listeners(), 4, 10);
    EXPECT_EQ(b.public_connections, 1000u);
    EXPECT_EQ(b.admin_connections, 65u); // the cap, and one being refused
    EXPECT_EQ(b.shards, 4u * (2 + io::fd_per_shard));
    EXPECT_EQ(b.spool, 10 + io::fd_spool_reserve);
    EXPECT_EQ(b.control_plane, io::fd_control_plane);
    EXPECT_EQ(b.total(), io::fd_base_allowance + 4 * (2 + io::fd_per_shard) + 1000 + 65 +
                             io::fd_control_plane + 10 + io::fd_spool_reserve);
    EXPECT_EQ(b.describe(),
              "1000 public connections + 65 control-plane connections + 266 spool files + " +
                  std::to_string(io::fd_base_allowance + 4 * (2 + io::fd_per_shard) +
                                 io::fd_control_plane) +
                  " others");
}

// An http sink holds at most `concurrency` connections; an exec child 8 descriptors at most.
TEST(FdBudget, CountsTheSinks) {
    config::Config cfg = two_listeners();
    config::SinkConfig http;
    http.http.emplace().concurrency = 64;
    config::SinkConfig exec;
    exec.kind = config::SinkConfig::Kind::exec;
    exec.exec.emplace().concurrency = 3;
    cfg.sinks = {http, exec};
    FdBudget b = io::fd_budget(cfg, 4, 10);
    EXPECT_EQ(b.sinks, 64u + 3 * io::fd_per_exec_child);
    EXPECT_EQ(b.total(), io::fd_budget(two_listeners(), 4, 10).total() + b.sinks);
    EXPECT_NE(b.describe().find(" + 88 sink descriptors + "), std::string::npos) << b.describe();
}

TEST(FdBudget, WithoutAControlPlaneThereIsNoAdminShare) {
    config::Config cfg = two_listeners();
    cfg.admin.listen.reset();
    FdBudget b = io::fd_budget(cfg, 1, 10);
    EXPECT_EQ(b.admin_connections, 0u);
    EXPECT_EQ(b.control_plane, 0u);
    EXPECT_EQ(b.spool, 0u);
}

TEST(FdBudget, FitsRaisesOrRefuses) {
    FdBudget b = io::fd_budget(two_listeners(), 1, 0);
    const uint64_t n = b.total();

    FdFit fits = io::fit_fd_limit(b, {n, n});
    EXPECT_FALSE(fits.raise_to);
    EXPECT_EQ(fits.error, "");

    FdFit raise = io::fit_fd_limit(b, {n - 1, 1'048'576});
    ASSERT_TRUE(raise.raise_to);
    EXPECT_EQ(*raise.raise_to, 1'048'576u);
    EXPECT_EQ(raise.error, "");

    FdFit unlimited = io::fit_fd_limit(b, {256, std::numeric_limits<uint64_t>::max()});
    ASSERT_TRUE(unlimited.raise_to);
    EXPECT_EQ(unlimited.error, "");

    FdFit refused = io::fit_fd_limit(b, {256, n - 1});
    EXPECT_FALSE(refused.raise_to);
    EXPECT_EQ(refused.error,
              "file descriptors: the configuration needs " + std::to_string(n) + " (" +
                  b.describe() + ") but RLIMIT_NOFILE allows 256 (hard limit " +
                  std::to_string(n - 1) +
                  "): raise the limit (ulimit -n, systemd LimitNOFILE=) or lower "
                  "server.max_connections, admin.max_connections or a sink's concurrency");
}

TEST(FdBudget, TlsListenersCountLikePlainOnes) {
    config::Config cfg = two_listeners();
    cfg.server.tls = config::TlsConfig{};
    cfg.server.tls->listen.resize(3);
    FdBudget b = io::fd_budget(cfg, 4, 10);
    // Every shard binds its own socket on each address, plain or TLS.
    EXPECT_EQ(b.shards, 4u * (2 + 3 + io::fd_per_shard));

    // TLS only.
    cfg.server.listen.clear();
    EXPECT_EQ(io::fd_budget(cfg, 2, 10).shards, 2u * (3 + io::fd_per_shard));
}
