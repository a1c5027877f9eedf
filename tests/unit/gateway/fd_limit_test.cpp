// gateway/runtime/fd_limit.hpp: what the configuration needs, and the plan for a given
// open-files limit (table-driven, no system calls).
#include "gateway/runtime/fd_limit.hpp"

#include <boost/test/unit_test.hpp>

namespace gw = imagegate::gateway;

BOOST_AUTO_TEST_CASE(needs_count_every_pool_per_thread) {
    imagegate::config::settings s;
    s.server.max_connections = 10000;
    s.upstream.max_connections = 64;
    const auto n = gw::fd_needs_of(s, 4);
    BOOST_TEST(n.data == 10000u);
    BOOST_TEST(n.admin == gw::admin_max_connections);
    BOOST_TEST(n.upstream == 256u);
    BOOST_TEST(n.fixed == 9u + 12u + 32u);
    BOOST_TEST(n.total() == 10000u + 64u + 256u + 53u);
}

BOOST_AUTO_TEST_CASE(plan_table) {
    // data 1000, admin 64, upstream 128, fixed 50: 1242 in all; 242 besides data.
    const gw::fd_needs needs{.data = 1000, .admin = 64, .upstream = 128, .fixed = 50};
    struct row {
        std::uint64_t limit;
        gw::fd_plan plan;
    };
    const row rows[] = {
        // Fits: server.max_connections as configured.
        {1'048'576, {.data_connections = 1000}},
        {1242, {.data_connections = 1000}},
        // Does not fit: data connections capped so the others always find descriptors.
        {1241, {.data_connections = 999, .capped = true}},
        {256, {.data_connections = 14, .capped = true, .too_low = true}},
        {258, {.data_connections = 16, .capped = true}},
        // Not even the others fit.
        {200, {.data_connections = 0, .capped = true, .too_low = true}},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT("limit " << r.limit) {
            BOOST_TEST(gw::plan_fds(needs, r.limit) == r.plan);
        }
    }
}
