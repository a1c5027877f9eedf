// The client against a real redis-server: SET PX / GET / PTTL, 1000 pipelined concurrent
// commands matched in order, ACL AUTH with a password file, wrong or missing passwords,
// SELECT, and EVALSHA falling back to EVAL after SCRIPT FLUSH.
#include "fixture.hpp"

#include "gateway/redis/connection.hpp"
#include "tests/unit/config/temp_dir.hpp"

#include <string>
#include <vector>

using namespace imagegate;
using namespace imagegate::redis;
using namespace imagegate::redis::test;

namespace {

asio::awaitable<bool> set_get_pttl(client& c) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    const std::string value("value\r\n\0\xff", 9);  // binary-safe both ways
    auto set = co_await c.exec(make_command("SET", "img:{a:1}", value, "PX", 60000));
    BOOST_REQUIRE(set);
    BOOST_TEST(set->is_status("OK"));
    auto get = co_await c.exec(make_command("GET", "img:{a:1}"));
    BOOST_REQUIRE(get);
    BOOST_TEST(get->kind == reply_kind::string);
    BOOST_TEST(get->text == value);
    auto ttl = co_await c.exec(make_command("PTTL", "img:{a:1}"));
    BOOST_REQUIRE(ttl);
    BOOST_TEST(ttl->kind == reply_kind::integer);
    BOOST_TEST(ttl->integer > 59000);
    BOOST_TEST(ttl->integer <= 60000);
    auto missing = co_await c.exec(make_command("GET", "img:{a:2}"));
    BOOST_REQUIRE(missing);
    BOOST_TEST(missing->is_nil());
    auto wrong = co_await c.exec(make_command("INCR", "img:{a:1}"));
    BOOST_REQUIRE(wrong);
    BOOST_TEST(wrong->is_error());
    co_return true;
}

/// One of the concurrent callers: ECHOes a payload only it knows, checks it gets it back.
asio::awaitable<bool> echo_one(std::shared_ptr<connection> conn, std::string payload) {
    auto r = co_await conn->exec(make_command("ECHO", payload), clock::now() + 5s);
    co_return r && r->text == payload;
}

struct count_into {
    int* ok;
    int* finished;
    int total;
    event* all_done;
    void operator()(const std::exception_ptr& ep, bool matched) const {
        *ok += (!ep && matched) ? 1 : 0;
        if (++*finished == total) {
            all_done->notify();
        }
    }
};

asio::awaitable<bool> pipelined_fifo(std::shared_ptr<const connection_context> ctx) {
    const auto ex = co_await asio::this_coro::executor;
    auto opened = co_await connection::open(ex, ctx);
    BOOST_REQUIRE(opened);
    auto conn = *opened;
    constexpr int total = 1000;
    int ok = 0;
    int finished = 0;
    event all_done(ex);
    // 1000 callers at once, in varied sizes, interleaved by the scheduler.
    for (int i = 0; i < total; ++i) {
        std::string payload =
            "caller-" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 97), 'p');
        asio::co_spawn(ex, echo_one(conn, std::move(payload)),
                       count_into{&ok, &finished, total, &all_done});
    }
    BOOST_REQUIRE(co_await all_done.wait(clock::now() + 20s));
    BOOST_TEST(ok == total);
    BOOST_TEST(conn->pending() == 0U);
    // Writes were coalesced: far fewer socket writes than commands.
    BOOST_TEST(conn->writes() < static_cast<std::uint64_t>(total) / 2);
    BOOST_TEST_MESSAGE("1000 commands went out in " << conn->writes() << " writes");
    conn->close(error::shutting_down);
    co_return true;
}

asio::awaitable<std::string> whoami(client& c) {
    const bool up = co_await c.wait_up(clock::now() + 5s);
    if (!up) {
        co_return "down";
    }
    auto r = co_await c.exec(make_command("ACL", "WHOAMI"));
    co_return r ? r->text : "error";
}

asio::awaitable<boost::system::error_code> open_error(connection_options o,
                                                      std::shared_ptr<spdlog::logger> log) {
    const auto ex = co_await asio::this_coro::executor;
    auto ctx = make_context(std::move(o), std::move(log)).value();
    auto opened = co_await connection::open(ex, std::move(ctx));
    co_return opened ? boost::system::error_code() : opened.error();
}

asio::awaitable<bool> down_client_fails_fast(client& c) {
    const bool up = co_await c.wait_up(clock::now() + 500ms);
    BOOST_TEST(!up);
    const auto started = clock::now();
    auto r = co_await c.exec(command("PING"));
    BOOST_TEST(ms_since(started) < 20.0);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error() == error::not_connected);
    co_return true;
}

asio::awaitable<bool> selected_db(client& c, redis_server& server) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    auto set = co_await c.exec(make_command("SET", "in-db-3", "x"));
    BOOST_REQUIRE(set);
    auto info = co_await c.exec(make_command("CLIENT", "INFO"));
    BOOST_REQUIRE(info);
    BOOST_TEST(info->text.find(" db=3 ") != std::string::npos, info->text);
    BOOST_TEST(server.command({"GET", "in-db-3"}) == "$-1");  // db 0 has no such key
    BOOST_TEST(server.command({"DBSIZE"}) == ":0");
    co_return true;
}

asio::awaitable<bool> script_fallback(client& c, redis_server& server) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    const script s("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}");
    const std::vector<std::string> keys{"{fleet}:n"};
    const std::vector<std::string> args{"arg"};
    const reply expected_first = reply::make_array(
        {reply::make_string("{fleet}:n"), reply::make_string("arg"), reply::make_integer(1)});

    // Unknown to the server: EVALSHA -> NOSCRIPT -> EVAL, which also loads it.
    auto first = co_await c.eval_script(s, keys, args);
    BOOST_REQUIRE(first);
    BOOST_TEST(*first == expected_first);
    BOOST_TEST(c.stats().noscript_reloads.load() == 1U);
    BOOST_TEST(server.command({"SCRIPT", "EXISTS", s.sha1()}) == "*1");

    // Known now: EVALSHA alone.
    const auto ops_before = c.stats().ops.load();
    auto second = co_await c.eval_script(s, keys, args);
    BOOST_REQUIRE(second);
    BOOST_TEST(second->elements.at(2).integer == 2);
    BOOST_TEST(c.stats().ops.load() == ops_before + 1);
    BOOST_TEST(c.stats().noscript_reloads.load() == 1U);

    // The script cache lost (restart, failover, SCRIPT FLUSH): falls back once more.
    BOOST_TEST(server.command({"SCRIPT", "FLUSH"}) == "+OK");
    auto third = co_await c.eval_script(s, keys, args);
    BOOST_REQUIRE(third);
    BOOST_TEST(third->elements.at(2).integer == 3);
    BOOST_TEST(c.stats().noscript_reloads.load() == 2U);

    // A script error is an error reply, not a client error.
    const std::vector<std::string> none;
    auto broken = co_await c.eval_script(script("return redis.call('NOPE')"), none, none);
    BOOST_REQUIRE(broken);
    BOOST_TEST(broken->is_error());
    co_return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(client_basics)

BOOST_AUTO_TEST_CASE(set_px_get_pttl_round_trip) {
    client_fixture f([](connection_options& o) { o.health_check_interval = 10s; });
    BOOST_TEST(run(f.ioc, set_get_pttl(f.c)));
    BOOST_TEST(f.c.stats().ops.load() == 5U);
    BOOST_TEST(f.c.stats().error_replies.load() == 1U);
    BOOST_TEST(f.c.stats().latency.count() == 5U);
    std::string metrics;
    f.c.stats().render(metrics);
    BOOST_TEST(metrics.find("imagegate_redis_ops_total 5") != std::string::npos, metrics);
}

BOOST_AUTO_TEST_CASE(a_thousand_pipelined_commands_keep_fifo_matching) {
    redis_server server;
    asio::io_context ioc(1);
    auto o = options_for(server.port());
    o.op_timeout = 5s;  // 1000 commands in flight on a loaded 2-core machine
    BOOST_TEST(run(ioc, pipelined_fifo(make_context(o, nullptr).value())));
}

BOOST_AUTO_TEST_CASE(acl_user_and_password_from_a_mode_600_file) {
    redis_server server(
        {.password = "default-pw", .acl_user = "fleet", .acl_password = "fleet-pw-7"});
    config::test::temp_dir dir;
    auto o = options_for(server.port());
    o.user = "fleet";
    o.password = load_password_file(dir.write("redis-password", "fleet-pw-7\n")).value();
    asio::io_context ioc(1);
    client c(ioc.get_executor(), o, nullptr);
    c.start();
    BOOST_TEST(run(ioc, whoami(c)) == "fleet");
}

BOOST_AUTO_TEST_CASE(wrong_password_is_a_clear_error_and_never_logged) {
    redis_server server(
        {.password = "default-pw", .acl_user = "fleet", .acl_password = "fleet-pw-7"});
    asio::io_context ioc(1);
    captured_log log;
    auto o = options_for(server.port());
    o.user = "fleet";
    o.password = "not-the-password";
    BOOST_TEST(run(ioc, open_error(o, log.logger)) == error::auth_failed);
    o.user.clear();
    o.password.clear();  // the server wants one: NOAUTH on PING
    BOOST_TEST(run(ioc, open_error(o, log.logger)) == error::auth_failed);
    const auto text = log.str();
    BOOST_TEST(text.find("refused AUTH for user fleet: WRONGPASS") != std::string::npos, text);
    BOOST_TEST(text.find("not-the-password") == std::string::npos);

    // A client that cannot authenticate stays down and refuses calls at once.
    o.user = "fleet";
    o.password = "not-the-password";
    client c(ioc.get_executor(), o, log.logger);
    c.start();
    BOOST_TEST(run(ioc, down_client_fails_fast(c)));
    BOOST_TEST(!c.is_up());
    BOOST_TEST(log.str().find("not-the-password") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(select_db) {
    client_fixture f([](connection_options& o) { o.db = 3; });
    BOOST_TEST(run(f.ioc, selected_db(f.c, f.server)));
    auto o = options_for(f.server.port());
    o.db = 99;  // Debian's default config has 16 databases
    BOOST_TEST(run(f.ioc, open_error(o, nullptr)) == error::select_failed);
}

BOOST_AUTO_TEST_CASE(evalsha_falls_back_to_eval_on_noscript) {
    client_fixture f([](connection_options& o) { o.health_check_interval = 10s; });
    BOOST_TEST(run(f.ioc, script_fallback(f.c, f.server)));
}

BOOST_AUTO_TEST_CASE(refused_connection_is_connect_failed) {
    std::uint16_t port = 0;
    {
        redis_server server;
        port = server.port();
    }  // killed: nothing listens there now
    asio::io_context ioc(1);
    BOOST_TEST(run(ioc, open_error(options_for(port), nullptr)) == error::connect_failed);
    auto o = options_for(port);
    o.host = "no-such-host.invalid";
    BOOST_TEST(run(ioc, open_error(o, nullptr)) == error::resolve_failed);
}

BOOST_AUTO_TEST_SUITE_END()
