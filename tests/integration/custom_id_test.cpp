// Custom ids as every SDK sends them: raw segments (`folder/sub/x`: TypeScript <= v6, Python,
// Go) and one %2F-encoded segment (TypeScript v7) are one id and one cache entry; the raw
// form goes upstream as sent; the reserved sibling routes are never read as ids.
#define BOOST_TEST_MODULE custom_id_test
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/scripted_upstream.hpp"

#include <boost/beast/http/verb.hpp>

namespace ts = imagegate::testing;
using ts::contains;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

ts::emulator_options with_custom_ids() {
    ts::emulator_options o;
    o.custom_ids = {"folder/sub/x", "team/logo.png"};
    return o;
}

struct fixture : ts::emulated_upstream {
    fixture() : ts::emulated_upstream(with_custom_ids()) {}

    /// The emulator's own answer for `encoded_id`, asked directly.
    ts::response direct(const std::string& encoded_id) {
        ts::endpoint e;
        e.port = emu->port();
        e.ca_pem = emu->ca_pem();
        return ts::request(e, verb::get, ts::gateway_runner::image_path(encoded_id),
                           {{"Authorization", "Bearer " + emu->token()}});
    }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(raw_segments_and_encoded_slashes_are_one_entry, fixture) {
    // The SDK gets exactly what the upstream answers for the id (asked directly first, so
    // the gateway's calls are counted apart).
    const std::string expected = direct("folder%2Fsub%2Fx").body;
    emu->reset_counters();
    ts::gateway_runner gw(settings);
    const auto raw = gw.get(gw.image_path("folder/sub/x"));
    BOOST_TEST(raw.status == 200u);
    BOOST_TEST(contains(raw.header("Cache-Status"), "fwd=miss; fwd-status=200; stored"));
    BOOST_TEST(raw.body == expected);
    // Every other spelling is the same entry: no second upstream call.
    for (const char* spelling : {"folder%2Fsub%2Fx", "folder%2fsub%2Fx", "folder/sub%2Fx",
                                 "f%6Flder/sub/x", "folder/sub/x"}) {
        BOOST_TEST_CONTEXT(spelling) {
            const auto r = gw.get(gw.image_path(spelling));
            BOOST_TEST(r.status == 200u);
            BOOST_TEST(contains(r.header("Cache-Status"), "imagegate; hit"));
            BOOST_TEST(r.body == raw.body);
        }
    }
    BOOST_TEST(emu->requests_for("folder/sub/x") == 1u);
    // Encoded first, raw second works the same way round.
    BOOST_TEST(gw.get(gw.image_path("team%2Flogo.png")).status == 200u);
    BOOST_TEST(contains(gw.get(gw.image_path("team/logo.png")).header("Cache-Status"), "hit"));
    BOOST_TEST(emu->requests_for("team/logo.png") == 1u);
    // A missing id spelled raw is the cached 404 of the encoded spelling.
    BOOST_TEST(gw.get(gw.image_path("no/such/id")).status == 404u);
    const auto again = gw.get(gw.image_path("no%2Fsuch%2Fid"));
    BOOST_TEST(again.status == 404u);
    BOOST_TEST(contains(again.header("Cache-Status"), "hit"));
    BOOST_TEST(emu->requests_for("no/such/id") == 1u);
}

BOOST_FIXTURE_TEST_CASE(reserved_routes_are_never_read_as_ids, fixture) {
    ts::gateway_runner gw(settings);
    const auto before = emu->snapshot().requests;
    for (const char* path : {"keys", "stats", "variants", "variants/public", "folder/sub/x/blob",
                             "abc/blob", "keys/x", "stats%2Fx", "abc%2Fblob", "a//b", "a/"}) {
        BOOST_TEST_CONTEXT(path) {
            // Not an image-detail read: a forwarded call, which token mode without a forward
            // grant refuses (forward_test covers the forwarding itself).
            const auto r = gw.get(gw.image_path(path));
            BOOST_TEST(r.status == 403u);
            BOOST_TEST(contains(r.header("Cache-Status"), "fwd=bypass"));
        }
    }
    BOOST_TEST(emu->snapshot().requests == before);  // the upstream was asked nothing
}

BOOST_FIXTURE_TEST_CASE(a_record_for_another_id_is_not_stored, fixture) {
    ts::fault_rule f;
    f.kind = ts::fault_kind::wrong_id;
    f.image_id = "folder/sub/x";
    f.times = 1;
    emu->add_fault(f);
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("folder/sub/x")).status == 502u);
    const auto r = gw.get(gw.image_path("folder%2Fsub%2Fx"));
    // Not stored: the next request asks again (after the failure memo's second at most).
    BOOST_TEST(!contains(r.header("Cache-Status"), "imagegate; hit"));
}

// What goes upstream is the raw form the client used (each segment re-encoded only where it
// needs to be), not the %2F spelling.
BOOST_AUTO_TEST_CASE(the_raw_form_goes_upstream) {
    ts::scripted_upstream upstream;
    ts::temp_dir dir;
    imagegate::config::settings s;
    s.server.listen = "127.0.0.1:0";
    s.server.admin_listen = "127.0.0.1:0";
    s.server.threads = 1;
    s.server.drain_timeout = 2s;
    const auto ca = (dir.path() / "ca.pem").string();
    ts::write_file(ca, upstream.ca_pem());
    s.upstream.url = upstream.base_url();
    s.upstream.ca_file = ca;
    s.upstream.request_timeout = 3s;
    s.secret.upstream_token = "scripted-gateway-token";
    s.log.access_log = false;
    ts::gateway_runner gw(s);
    gw.get(gw.image_path("folder/s%20b/x"));
    gw.get(gw.image_path("one%2Fsegment"));
    const auto seen = upstream.requests();
    BOOST_TEST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[0].target ==
               "/client/v4/accounts/" + ts::test_account + "/images/v1/folder/s%20b/x");
    BOOST_TEST(seen[1].target ==
               "/client/v4/accounts/" + ts::test_account + "/images/v1/one%2Fsegment");
}
