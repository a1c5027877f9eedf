// TLS on the data listener: the real composition root with server.tls_cert/tls_key issued by
// a test CA, in front of the emulator. Verified clients get the same answers as over plain
// HTTP; clients that cannot or will not complete a handshake are cut off and counted.
#define BOOST_TEST_MODULE tls_listener_test
#include "tests/integration/gateway_fixture.hpp"

#include <boost/beast/http/verb.hpp>

#include <filesystem>
#include <thread>

namespace ts = imagegate::testing;
namespace http = boost::beast::http;
using ts::contains;
using namespace std::chrono_literals;

namespace {

/// An emulated upstream and the settings of a gateway whose data listener speaks TLS with a
/// certificate (SAN localhost, 127.0.0.1) from a fresh test CA.
struct tls_upstream : ts::emulated_upstream {
    tls_upstream() {
        const auto cert = (dir.path() / "listener.pem").string();
        const auto key = (dir.path() / "listener.key").string();
        ts::write_file(cert, certs.server_cert_pem);
        ts::write_file(key, certs.server_key_pem);
        std::filesystem::permissions(
            key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        settings.server.tls_cert = cert;
        settings.server.tls_key = key;
    }

    ts::pki certs = ts::make_test_pki();
};

/// A client of the gateway's data listener that trusts the listener's CA and verifies the
/// host name (`name`: SNI and the name checked; an IP literal checks the IP SAN).
ts::endpoint tls_client(const ts::gateway_runner& gw, const tls_upstream& up,
                        std::string name = "localhost",
                        std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    ts::endpoint e = gw.data(timeout);
    e.tls = true;
    e.ca_pem = up.certs.ca_cert_pem;
    e.server_name = std::move(name);
    return e;
}

double handshake_failures(const ts::gateway_runner& gw) {
    return gw.metric("imagegate_tls_handshake_failures_total");
}

/// Serves a verified TLS request, proof that the listener survived what came before.
void expect_serves(const ts::gateway_runner& gw, const tls_upstream& up) {
    const auto r = ts::request(tls_client(gw, up), http::verb::get,
                               ts::gateway_runner::image_path("still-serving"));
    BOOST_TEST(r.status == 200u);
}

/// Sends `bytes` in plain TCP to the TLS listener; returns what came back and how long the
/// server kept the connection open.
std::pair<std::string, std::chrono::milliseconds> raw_plain(const ts::gateway_runner& gw,
                                                            std::string bytes) {
    ts::endpoint e = gw.data(10s);
    const auto started = std::chrono::steady_clock::now();
    std::string out = ts::raw_exchange(e, std::move(bytes));
    return {std::move(out), std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - started)};
}

}  // namespace

BOOST_AUTO_TEST_CASE(verified_get_miss_then_hit) {
    tls_upstream up;
    ts::gateway_runner gw(up.settings);
    const auto path = ts::gateway_runner::image_path("tls-1");
    const auto first = ts::request(tls_client(gw, up), http::verb::get, path);
    BOOST_TEST(first.status == 200u);
    BOOST_TEST(contains(first.header("Cache-Status"), "fwd=miss"));
    BOOST_TEST(contains(first.body, "\"id\":\"tls-1\""));
    // By IP literal too: the certificate's IP SAN is verified instead of a DNS name.
    const auto second = ts::request(tls_client(gw, up, "127.0.0.1"), http::verb::get, path);
    BOOST_TEST(second.status == 200u);
    BOOST_TEST(contains(second.header("Cache-Status"), "hit"));
    BOOST_TEST(second.body == first.body);
    BOOST_TEST(up.emu->snapshot().by_image["tls-1"] == 1u);
    BOOST_TEST(handshake_failures(gw) == 0);
}

BOOST_AUTO_TEST_CASE(keep_alive_and_head_over_one_tls_connection) {
    tls_upstream up;
    ts::gateway_runner gw(up.settings);
    ts::connection c(tls_client(gw, up));
    const auto path = ts::gateway_runner::image_path("tls-keep");
    const auto get = c.request(http::verb::get, path);
    BOOST_TEST(get.status == 200u);
    for (int i = 0; i < 5; ++i) {
        const auto again = c.request(http::verb::get, path);
        BOOST_TEST(again.status == 200u);
        BOOST_TEST(contains(again.header("Cache-Status"), "hit"));
        BOOST_TEST(again.keep_alive);
    }
    const auto head = c.request(http::verb::head, path);
    BOOST_TEST(head.status == 200u);
    BOOST_TEST(head.body.empty());
    BOOST_TEST(head.header("Content-Length") == std::to_string(get.body.size()));
    // Errors keep the connection too, and the connection still works after them.
    const auto missing = c.request(http::verb::get, "/nowhere");
    BOOST_TEST(missing.status == 404u);
    BOOST_TEST(c.request(http::verb::get, path).status == 200u);
    BOOST_TEST(c.is_open());
    BOOST_TEST(gw.app().data_port() != 0);
    BOOST_TEST(up.emu->snapshot().by_image["tls-keep"] == 1u);
}

BOOST_AUTO_TEST_CASE(client_that_does_not_trust_the_ca_fails) {
    tls_upstream up;
    ts::gateway_runner gw(up.settings);
    ts::endpoint other = tls_client(gw, up);
    other.ca_pem = ts::make_test_pki().ca_cert_pem;  // an unrelated CA
    BOOST_CHECK_THROW(ts::request(other, http::verb::get, ts::gateway_runner::image_path("x")),
                      std::exception);
    // Right CA, wrong name: host-name verification refuses it as well.
    BOOST_CHECK_THROW(ts::request(tls_client(gw, up, "imagegate.example"), http::verb::get,
                                  ts::gateway_runner::image_path("x")),
                      std::exception);
    BOOST_TEST(ts::eventually([&] { return handshake_failures(gw) >= 2; }));
    BOOST_TEST(up.emu->snapshot().requests == 0u);
    expect_serves(gw, up);
}

BOOST_AUTO_TEST_CASE(plain_http_to_the_tls_port_is_closed) {
    tls_upstream up;
    ts::gateway_runner gw(up.settings);
    const auto [out, took] = raw_plain(
        gw, "GET " + ts::gateway_runner::image_path("plain") + " HTTP/1.1\r\nHost: x\r\n\r\n");
    BOOST_TEST(!contains(out, "200"));
    BOOST_TEST(!contains(out, "HTTP/1.1"));
    BOOST_TEST(took < 5s);  // refused at once, not left to a deadline
    // Garbage fares no better.
    const auto [junk, junk_took] = raw_plain(gw, std::string(300, '\x01'));
    BOOST_TEST(!contains(junk, "HTTP/1.1"));
    BOOST_TEST(junk_took < 5s);
    BOOST_TEST(ts::eventually([&] { return handshake_failures(gw) >= 2; }));
    BOOST_TEST(up.emu->snapshot().requests == 0u);
    expect_serves(gw, up);
}

BOOST_AUTO_TEST_CASE(stalled_handshakes_are_cut_off_at_header_timeout) {
    tls_upstream up;
    up.settings.server.header_timeout = 400ms;
    ts::gateway_runner gw(up.settings);
    // Connects and says nothing.
    const auto [silent, silent_took] = raw_plain(gw, "");
    BOOST_TEST(silent.empty());
    BOOST_TEST(silent_took >= 300ms);
    BOOST_TEST(silent_took < 3s);
    // The first bytes of a ClientHello: a handshake record announcing 512 bytes, 11 sent.
    const std::string half_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    const auto [half, half_took] = raw_plain(gw, half_hello);
    BOOST_TEST(!contains(half, "HTTP/1.1"));
    BOOST_TEST(half_took >= 300ms);
    BOOST_TEST(half_took < 3s);
    BOOST_TEST(ts::eventually([&] { return handshake_failures(gw) >= 2; }));
    BOOST_TEST(gw.app().data_port() != 0);
    expect_serves(gw, up);
}

BOOST_AUTO_TEST_CASE(graceful_stop_finishes_an_in_flight_tls_request) {
    tls_upstream up;
    ts::fault_rule slow;
    slow.kind = ts::fault_kind::delay;
    slow.image_id = "tls-slow";
    slow.delay = 600ms;
    up.emu->add_fault(slow);
    ts::gateway_runner gw(up.settings);

    ts::connection idle(tls_client(gw, up));
    BOOST_TEST(idle.request(http::verb::get, ts::gateway_runner::image_path("tls-warm")).status ==
               200u);

    ts::response answer;
    std::thread client([&] {
        answer = ts::request(tls_client(gw, up), http::verb::get,
                             ts::gateway_runner::image_path("tls-slow"));
    });
    // Stop once the gateway's fetch is waiting on the delayed upstream.
    BOOST_TEST(ts::eventually([&] { return up.emu->snapshot().by_image["tls-slow"] == 1u; }));
    gw.app().shutdown();
    client.join();
    BOOST_TEST(answer.status == 200u);
    BOOST_TEST(contains(answer.body, "\"id\":\"tls-slow\""));
    BOOST_TEST(!answer.keep_alive);  // told to close: the gateway is draining
    // The idle TLS connection was closed, and nothing new is accepted.
    BOOST_CHECK_THROW(idle.request(http::verb::get, "/after"), std::exception);
    BOOST_CHECK_THROW(ts::request(tls_client(gw, up, "localhost", 500ms), http::verb::get,
                                  ts::gateway_runner::image_path("new")),
                      std::exception);
}
