// TLS to redis-server's tls-port: the chain is verified against the configured CA and the
// certificate against the host name (IP SAN or DNS SAN + SNI); a wrong CA, a wrong name and
// plain text on the TLS port are refused.
#include "fixture.hpp"

#include "gateway/redis/connection.hpp"
#include "tests/emulator/pki.hpp"
#include "tests/unit/config/temp_dir.hpp"

using namespace imagegate;
using namespace imagegate::redis;
using namespace imagegate::redis::test;

namespace {

connection_options tls_options(const redis_server& server, std::string host) {
    auto o = options_for(server.tls_port());
    o.tls = true;
    o.host = std::move(host);
    o.ca_file = server.ca_file();
    return o;
}

asio::awaitable<bool> round_trip(client& c) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    const std::string value(20000, 'v');  // several TLS records
    auto set = co_await c.exec(make_command("SET", "tls-key", value, "PX", 1000));
    BOOST_REQUIRE(set);
    BOOST_TEST(set->is_status("OK"));
    auto get = co_await c.exec(make_command("GET", "tls-key"));
    BOOST_REQUIRE(get);
    BOOST_TEST(get->text == value);
    auto info = co_await c.exec(make_command("CLIENT", "INFO"));
    BOOST_REQUIRE(info);
    // Redis reports the server port the client connected to: the TLS one.
    co_return true;
}

asio::awaitable<boost::system::error_code> open_error(connection_options o) {
    const auto ex = co_await asio::this_coro::executor;
    auto ctx = make_context(std::move(o), nullptr).value();
    auto opened = co_await connection::open(ex, std::move(ctx));
    co_return opened ? boost::system::error_code() : opened.error();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tls)

BOOST_AUTO_TEST_CASE(verified_tls_by_ip_and_by_name) {
    redis_server server({.tls = true});
    asio::io_context ioc(1);
    {
        client by_ip(ioc.get_executor(), tls_options(server, "127.0.0.1"), nullptr);
        by_ip.start();
        BOOST_TEST(run(ioc, round_trip(by_ip)));
    }
    {
        client by_name(ioc.get_executor(), tls_options(server, "localhost"), nullptr);
        by_name.start();
        BOOST_TEST(run(ioc, round_trip(by_name)));
    }
}

BOOST_AUTO_TEST_CASE(wrong_ca_wrong_name_and_plain_text_are_refused) {
    redis_server server({.tls = true});
    asio::io_context ioc(1);
    BOOST_TEST(run(ioc, open_error(tls_options(server, "127.0.0.1"))) ==
               boost::system::error_code());

    config::test::temp_dir dir;
    auto wrong_ca = tls_options(server, "127.0.0.1");
    wrong_ca.ca_file = dir.write("other-ca.pem", testing::make_test_pki().ca_cert_pem);
    BOOST_TEST(run(ioc, open_error(wrong_ca)) == error::tls_failed);

    auto wrong_name = tls_options(server, "127.0.0.1");
    wrong_name.server_name = "redis.example.com";  // not in the certificate
    BOOST_TEST(run(ioc, open_error(wrong_name)) == error::tls_failed);

    // No trust configured at all: the system store does not know the test CA.
    auto system_store = tls_options(server, "127.0.0.1");
    system_store.ca_file.clear();
    BOOST_TEST(run(ioc, open_error(system_store)) == error::tls_failed);

    // Plain RESP to the TLS port gets no PONG.
    auto plain = options_for(server.tls_port());
    const auto e = run(ioc, open_error(plain));
    BOOST_TEST(e != boost::system::error_code());
    BOOST_TEST_MESSAGE("plain text on the TLS port: " << e.message());

    // A CA file that does not exist is a start-up error.
    auto missing = tls_options(server, "127.0.0.1");
    missing.ca_file = (dir.path() / "missing.pem").string();
    BOOST_TEST(make_context(missing, nullptr).has_error());
}

BOOST_AUTO_TEST_SUITE_END()
