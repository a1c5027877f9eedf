// write_effects in the running gateway, against the emulator's real PATCH, DELETE and upload
// answers: what each does to the cache (then read through the gateway with 0 upstream
// calls), failed and uncertain writes, and a read whose fill began before the write.
#define BOOST_TEST_MODULE writes_test
#include "gateway/auth/authorizer.hpp"
#include "gateway/image/writes.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <thread>

namespace ig = imagegate;
namespace gw = imagegate::gateway;
namespace ts = imagegate::testing;
namespace http = boost::beast::http;
using ts::test_account;

namespace {

/// A call made directly to the emulator with its token, as the forward handler would make it.
ts::response call_upstream(ts::emulator& emu, http::verb method, const std::string& target,
                           std::string body = {}, ts::header_list headers = {}) {
    ts::endpoint e;
    e.port = emu.port();
    e.ca_pem = emu.ca_pem();
    headers.emplace_back("Authorization", "Bearer " + emu.token());
    return ts::request(e, method, target, std::move(headers), std::move(body));
}

gw::write_ticket begin_on(ts::gateway_runner& g, http::verb method, const std::string& target) {
    const auto t = gw::classify_write(method, target);
    BOOST_TEST_REQUIRE(t.has_value());
    return g.app().writes().begin(*t);
}

/// finish() on an I/O worker of `g`, as the forward handler runs it.
gw::write_effect finish_on(ts::gateway_runner& g, const gw::write_ticket& t, unsigned status,
                           const std::string& body, bool clean = true,
                           std::optional<ig::credential_digest> cred = std::nullopt) {
    gw::write_outcome o;
    o.status = status;
    o.body = body;
    o.facts.fresh_connection = true;
    o.facts.framed = clean;
    o.cred = cred;
    return boost::asio::co_spawn(g.app().executor(0), g.app().writes().finish(t, o),
                                 boost::asio::use_future)
        .get();
}

struct fixture {
    ts::emulator_runner emu;
    ts::temp_dir dir;
    ts::gateway_runner proxy{ts::gateway_settings(*emu, dir)};

    ts::response upstream(http::verb method, const std::string& target, std::string body = {},
                          ts::header_list headers = {}) {
        return call_upstream(*emu, method, target, std::move(body), std::move(headers));
    }
    gw::write_ticket begin(http::verb method, const std::string& target) {
        return begin_on(proxy, method, target);
    }
    gw::write_effect finish(const gw::write_ticket& t, unsigned status, const std::string& body,
                            bool clean = true) {
        return finish_on(proxy, t, status, body, clean);
    }

    std::string first_id() { return emu->image_ids(test_account).front(); }
};

std::string path_of(const std::string& id) { return ts::gateway_runner::image_path(id); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(writes, fixture)

BOOST_AUTO_TEST_CASE(patch_then_get_serves_the_returned_record_without_an_upstream_call) {
    const auto id = first_id();
    const auto before = proxy.get(path_of(id));
    BOOST_TEST_REQUIRE(before.status == 200u);
    BOOST_TEST(emu->requests_for(id) == 1u);

    const auto ticket = begin(http::verb::patch, path_of(id));
    const auto up = upstream(http::verb::patch, path_of(id), R"({"metadata":{"edited":"yes"}})",
                             {{"Content-Type", "application/json"}});
    BOOST_TEST_REQUIRE(up.status == 200u, up.body);
    BOOST_TEST(finish(ticket, up.status, up.body) == gw::write_effect::stored);

    const auto calls = emu->requests_for(id);
    const auto after = proxy.get(path_of(id));
    BOOST_TEST(after.status == 200u);
    BOOST_TEST(after.body == up.body);
    BOOST_TEST(after.body != before.body);
    BOOST_TEST(after.body.find("edited") != std::string::npos);
    BOOST_TEST(emu->requests_for(id) == calls);  // 0 upstream calls for the GET
    BOOST_TEST(proxy.app().writes().stats().stored.load() == 1u);
}

BOOST_AUTO_TEST_CASE(delete_then_get_is_a_cached_404) {
    const auto id = first_id();
    BOOST_TEST_REQUIRE(proxy.get(path_of(id)).status == 200u);
    const auto ticket = begin(http::verb::delete_, path_of(id));
    const auto up = upstream(http::verb::delete_, path_of(id));
    BOOST_TEST_REQUIRE(up.status == 200u, up.body);
    BOOST_TEST(finish(ticket, up.status, up.body) == gw::write_effect::negative);

    const auto calls = emu->requests_for(id);
    const auto after = proxy.get(path_of(id));
    BOOST_TEST(after.status == 404u);
    BOOST_TEST(after.body.find("5404") != std::string::npos, after.body);
    BOOST_TEST(emu->requests_for(id) == calls);
    // It is what the upstream itself answers now.
    BOOST_TEST(upstream(http::verb::get, path_of(id)).status == 404u);
}

BOOST_AUTO_TEST_CASE(an_upload_replaces_the_negative_entry_of_its_custom_id) {
    const std::string id = "folder/new-upload";
    const std::string encoded = "folder%2Fnew-upload";
    BOOST_TEST_REQUIRE(proxy.get(path_of(encoded)).status == 404u);  // cached "not found"

    const auto ticket =
        begin(http::verb::post, "/client/v4/accounts/" + test_account + "/images/v1");
    const std::string b = "----imagegate-writes-test";
    const std::string form = "--" + b +
                             "\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\n"
                             "https://example.com/a.png\r\n--" +
                             b + "\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n" + id +
                             "\r\n--" + b + "--\r\n";
    const auto up = upstream(http::verb::post, "/client/v4/accounts/" + test_account + "/images/v1",
                             form, {{"Content-Type", "multipart/form-data; boundary=" + b}});
    BOOST_TEST_REQUIRE(up.status == 200u, up.body);
    BOOST_TEST(finish(ticket, up.status, up.body) == gw::write_effect::stored);

    const auto calls = emu->snapshot().requests;
    // Both spellings of the id find the one entry.
    for (const auto& spelling : {encoded, id}) {
        const auto r = proxy.get(path_of(spelling));
        BOOST_TEST(r.status == 200u, spelling);
        BOOST_TEST(r.body == up.body);
    }
    BOOST_TEST(emu->snapshot().requests == calls);
}

BOOST_AUTO_TEST_CASE(a_refused_write_changes_nothing_an_uncertain_one_drops_the_entry) {
    const auto id = first_id();
    const auto cached = proxy.get(path_of(id));
    BOOST_TEST_REQUIRE(cached.status == 200u);
    const std::string refused = R"({"success":false,"errors":[{"code":5400,"message":"Bad"}],)"
                                R"("messages":[],"result":null})";
    for (const unsigned status : {400u, 403u, 404u, 429u}) {
        const auto ticket = begin(http::verb::patch, path_of(id));
        BOOST_TEST(finish(ticket, status, refused) == gw::write_effect::unchanged);
    }
    auto calls = emu->requests_for(id);
    BOOST_TEST(proxy.get(path_of(id)).body == cached.body);
    BOOST_TEST(emu->requests_for(id) == calls);

    // No answer, a 5xx, an unframed 200, a 200 that is not this image's record: the write may
    // have happened, so the next read asks the upstream.
    struct uncertain {
        unsigned status;
        std::string body;
        bool clean;
    };
    const uncertain rows[] = {{0, "", true},
                              {502, "", true},
                              {200, cached.body, false},
                              {200,
                               R"({"success":true,"errors":[],"messages":[],)"
                               R"("result":{"id":"someone-else"}})",
                               true}};
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.status << " clean=" << r.clean) {
            const auto ticket = begin(http::verb::patch, path_of(id));
            BOOST_TEST(finish(ticket, r.status, r.body, r.clean) == gw::write_effect::dropped);
            calls = emu->requests_for(id);
            BOOST_TEST(proxy.get(path_of(id)).status == 200u);
            BOOST_TEST(emu->requests_for(id) == calls + 1);
        }
    }
    BOOST_TEST(proxy.app().writes().stats().invalid.load() == 1u);
}

// The read/write race: a read's fill that began before the write (its upstream answer, the
// old record, arrives after the write finished) must not store the old record.
BOOST_AUTO_TEST_CASE(a_fill_that_began_before_the_write_does_not_resurrect_the_old_record) {
    const auto id = first_id();
    ts::fault_rule slow;
    slow.kind = ts::fault_kind::delay;
    slow.image_id = id;
    slow.times = 1;
    slow.delay = std::chrono::milliseconds(500);
    emu->add_fault(slow);
    auto read = std::async(std::launch::async, [&] { return proxy.get(path_of(id)); });
    // The fill has read the key's generation once its request reached the upstream.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (emu->requests_for(id) == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    BOOST_TEST_REQUIRE(emu->requests_for(id) == 1u);

    const auto ticket = begin(http::verb::patch, path_of(id));
    const auto up = upstream(http::verb::patch, path_of(id), R"({"metadata":{"v":"2"}})",
                             {{"Content-Type", "application/json"}});
    BOOST_TEST_REQUIRE(up.status == 200u, up.body);
    BOOST_TEST(finish(ticket, up.status, up.body) == gw::write_effect::stored);

    const auto old = read.get();  // the slow fill's answer: served to its client only
    BOOST_TEST(old.status == 200u);
    BOOST_TEST(old.body != up.body);
    const auto calls = emu->requests_for(id);
    const auto after = proxy.get(path_of(id));
    BOOST_TEST(after.body == up.body);
    BOOST_TEST(emu->requests_for(id) == calls);
}

BOOST_AUTO_TEST_CASE(write_metrics_are_exported) {
    const auto id = first_id();
    const auto ticket = begin(http::verb::delete_, path_of(id));
    BOOST_TEST(finish(ticket, 0, "") == gw::write_effect::dropped);
    BOOST_TEST(proxy.metric(R"(imagegate_image_writes_total{effect="dropped"})") == 1.0);
    BOOST_TEST(proxy.metric(R"(imagegate_image_writes_total{effect="stored"})") == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

/// Two gateways of one fleet (one Redis) in this process, in front of one emulator.
struct fleet_fixture {
    ts::redis_server redis;
    ts::emulator_runner emu;
    ts::temp_dir dir;
    ts::gateway_runner a{fleet_settings()};
    ts::gateway_runner b{fleet_settings()};

    ig::config::settings fleet_settings() {
        auto s = ts::gateway_settings(*emu, dir);
        s.redis.url = "redis://127.0.0.1:" + std::to_string(redis.port());
        s.redis.op_timeout = std::chrono::milliseconds(500);
        s.redis.connect_timeout = std::chrono::milliseconds(500);
        s.fleet.instances = 2;
        return s;
    }

    /// The raw L2 value of `id` (RESP, read with a plain socket), or what Redis answered.
    std::string l2_value(const std::string& id) const {
        const std::string key = "imagegate:v1:{" + test_account + ":" + id + "}";
        ts::endpoint e;
        e.port = redis.port();
        e.tls = false;
        e.timeout = std::chrono::seconds(2);
        return ts::raw_exchange(e, "*2\r\n$3\r\nGET\r\n$" + std::to_string(key.size()) + "\r\n" +
                                       key + "\r\n*1\r\n$4\r\nQUIT\r\n");
    }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(fleet_writes, fleet_fixture)

// A PATCH finished on instance a: b drops its cached record (the purge event) and then reads
// the new one from L2, without an upstream call.
BOOST_AUTO_TEST_CASE(a_write_on_one_instance_reaches_the_others) {
    for (auto* g : {&a, &b}) {
        BOOST_TEST_REQUIRE(ts::eventually(
            [&] {
                return ts::contains(ts::request(g->admin(), http::verb::get, "/readyz").body,
                                    "\"fleet\":\"ok\"");
            },
            std::chrono::seconds(10)));
    }
    const auto id = emu->image_ids(test_account).front();
    const auto old = b.get(path_of(id));
    BOOST_TEST_REQUIRE(old.status == 200u);

    const auto ticket = begin_on(a, http::verb::patch, path_of(id));
    const auto up =
        call_upstream(*emu, http::verb::patch, path_of(id), R"({"metadata":{"fleet":"edited"}})",
                      {{"Content-Type", "application/json"}});
    BOOST_TEST_REQUIRE(up.status == 200u, up.body);
    BOOST_TEST(finish_on(a, ticket, up.status, up.body) == gw::write_effect::stored);

    BOOST_TEST(ts::eventually(
        [&] { return b.metric("imagegate_fleet_purge_events_received_total") >= 1.0; }));
    BOOST_TEST(ts::eventually([&] { return ts::contains(l2_value(id), R"("fleet":"edited")"); }));
    const auto calls = emu->requests_for(id);
    const auto now = b.get(path_of(id));
    BOOST_TEST(now.status == 200u);
    BOOST_TEST(now.body == up.body);
    BOOST_TEST(emu->requests_for(id) == calls);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

/// A gateway in auth.mode = "passthrough": callers' own credentials go upstream.
struct passthrough_fixture {
    ts::emulator_runner emu;
    ts::temp_dir dir;
    ts::gateway_runner proxy{settings()};

    ig::config::settings settings() {
        auto s = ts::gateway_settings(*emu, dir);
        s.auth.mode = "passthrough";
        return s;
    }
    ts::header_list caller() { return {{"Authorization", "Bearer " + emu->token()}}; }
    ig::credential_digest digest() {
        http::fields h;
        h.set(http::field::authorization, "Bearer " + emu->token());
        return gw::read_caller_credential(&h).digest;
    }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(passthrough_writes, passthrough_fixture)

// The write's answer proves the caller's credential for the account, as a read's does: its
// next read is answered from the entry the write stored. A 401 to a write revokes it.
BOOST_AUTO_TEST_CASE(a_certain_2xx_proves_the_credential_a_401_revokes_it) {
    const auto id = emu->image_ids(test_account).front();
    const auto ticket = begin_on(proxy, http::verb::patch, path_of(id));
    const auto up = call_upstream(*emu, http::verb::patch, path_of(id), R"({"metadata":{"p":"1"}})",
                                  {{"Content-Type", "application/json"}});
    BOOST_TEST_REQUIRE(up.status == 200u, up.body);
    const auto finish = [&](const gw::write_ticket& t, unsigned status, const std::string& body) {
        return finish_on(proxy, t, status, body, true, digest());
    };
    BOOST_TEST(finish(ticket, up.status, up.body) == gw::write_effect::stored);

    auto calls = emu->requests_for(id);
    auto r = proxy.get(path_of(id), caller());
    BOOST_TEST(r.body == up.body);
    BOOST_TEST(emu->requests_for(id) == calls);  // proven: answered from the entry

    // Another credential holds no proof: it goes upstream (and is refused there).
    r = proxy.get(path_of(id), {{"Authorization", "Bearer someone-else"}});
    BOOST_TEST(r.status == 403u);
    BOOST_TEST(emu->requests_for(id) == calls + 1);

    const std::string refused =
        R"({"success":false,"errors":[{"code":10000,"message":"Authentication error"}],)"
        R"("messages":[],"result":null})";
    BOOST_TEST(finish(begin_on(proxy, http::verb::patch, path_of(id)), 401, refused) ==
               gw::write_effect::unchanged);
    calls = emu->requests_for(id);
    r = proxy.get(path_of(id), caller());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(emu->requests_for(id) == calls + 1);  // the proof is gone: asked upstream
}

BOOST_AUTO_TEST_SUITE_END()
