// Command framing, script SHA1, backoff delays, error texts, log escaping, option checks, the
// password file and the executor check: the remaining socket-free parts of the Redis client.
#include "gateway/redis/client.hpp"
#include "gateway/redis/command.hpp"
#include "gateway/redis/detail.hpp"
#include "gateway/redis/error.hpp"
#include "gateway/redis/options.hpp"
#include "gateway/redis/script.hpp"
#include "gateway/redis/supervisor.hpp"
#include "tests/unit/config/temp_dir.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <functional>
#include <set>
#include <string>

namespace redis = imagegate::redis;
namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

BOOST_AUTO_TEST_SUITE(command)

BOOST_AUTO_TEST_CASE(frames_binary_safe_arguments) {
    std::string out;
    const std::string value("a\0\r\nb", 5);
    BOOST_REQUIRE(redis::append_resp(out, redis::make_command("SET", "k", value, "PX", 1500)));
    BOOST_TEST(out == std::string("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\0\r\nb\r\n"
                                  "$2\r\nPX\r\n$4\r\n1500\r\n",
                                  49));
    // Appends: two frames back to back, as the write buffer coalesces them.
    BOOST_REQUIRE(redis::append_resp(out, redis::command("PING")));
    BOOST_TEST(out.substr(49) == "*1\r\n$4\r\nPING\r\n");
}

BOOST_AUTO_TEST_CASE(refuses_empty_commands) {
    std::string out;
    BOOST_TEST(redis::append_resp(out, redis::command()).error() ==
               redis::error::command_too_large);
    BOOST_TEST(out.empty());
}

BOOST_AUTO_TEST_CASE(prints_name_and_count_never_arguments) {
    std::ostringstream os;
    os << redis::make_command("AUTH", "user", "secret-password");
    BOOST_TEST(os.str() == "AUTH (2 args)");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(script)

BOOST_AUTO_TEST_CASE(sha1_matches_known_digests) {
    BOOST_TEST(redis::sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    BOOST_TEST(redis::sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
    // What `redis-cli SCRIPT LOAD "return 1"` answers.
    BOOST_TEST(redis::script("return 1").sha1() == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

BOOST_AUTO_TEST_CASE(copies_share_the_body) {
    const redis::script a("return redis.call('GET', KEYS[1])");
    const redis::script b = a;  // NOLINT(performance-unnecessary-copy-initialization)
    BOOST_TEST(&a.body() == &b.body());
    BOOST_TEST(a.sha1().size() == 40U);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(backoff)

struct backoff_row {
    unsigned attempt;
    double unit;
    milliseconds expected;
};

std::ostream& operator<<(std::ostream& os, const backoff_row& r) {
    return os << "attempt " << r.attempt << " unit " << r.unit << " -> " << r.expected.count();
}

const backoff_row backoff_rows[] = {
    // min 100 ms doubling to max 5 s; each delay in [half, full)
    {0, 0.0, 50ms},
    {0, 0.5, 75ms},
    {0, 0.999, 99ms},
    {1, 0.0, 100ms},
    {2, 0.0, 200ms},
    {5, 0.0, 1600ms},
    {6, 0.0, 2500ms},
    {6, 0.999, 4997ms},
    {7, 0.0, 2500ms},
    {31, 0.5, 3750ms},
    {1000, 0.0, 2500ms},
    // a unit outside [0, 1] is clamped
    {0, -3.0, 50ms},
    {0, 7.0, 100ms},
};

BOOST_DATA_TEST_CASE(delays, bdata::make(backoff_rows), row) {
    BOOST_TEST(redis::backoff_delay(row.attempt, 100ms, 5000ms, row.unit).count() ==
               row.expected.count());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(every_error_has_a_name_and_a_message) {
    std::set<std::string> names;
    for (const auto e : redis::all_errors) {
        const auto ec = redis::make_error_code(e);
        BOOST_TEST(!ec.message().empty());
        BOOST_TEST(ec.message().find("unknown") == std::string::npos);
        BOOST_TEST(std::string(ec.category().name()) == "imagegate.redis");
        BOOST_TEST(ec == e);
        names.insert(std::string(redis::to_string(e)));
    }
    BOOST_TEST(names.size() == std::size(redis::all_errors));
    BOOST_TEST(names.count("unknown") == 0U);
}

BOOST_AUTO_TEST_CASE(printable_escapes_what_a_server_controls) {
    BOOST_TEST(redis::printable("ERR plain") == "ERR plain");
    BOOST_TEST(redis::printable("a\r\nFAKE LOG LINE") == "a\\x0d\\x0aFAKE LOG LINE");
    BOOST_TEST(redis::printable("\x1b[31m\"q\"\\") == "\\x1b[31m\\x22q\\x22\\x5c");
    BOOST_TEST(redis::printable(std::string(300, 'x'), 10) == "xxxxxxxxxx…(300 bytes)");
    BOOST_TEST(redis::printable(std::string("\xff\x00", 2)) == "\\xff\\x00");
}

BOOST_AUTO_TEST_CASE(reply_error_code_is_the_first_word) {
    BOOST_TEST(redis::reply::make_error("NOSCRIPT No matching script").error_code() == "NOSCRIPT");
    BOOST_TEST(redis::reply::make_error("WRONGPASS").error_code() == "WRONGPASS");
    BOOST_TEST(redis::reply::make_status("NOSCRIPT x").error_code().empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(options)

struct check_row {
    const char* name;
    std::function<void(redis::connection_options&)> change;
    bool valid;
};

std::ostream& operator<<(std::ostream& os, const check_row& r) { return os << r.name; }

const check_row check_rows[] = {
    {"defaults", [](auto&) {}, true},
    {"user with password",
     [](auto& o) {
         o.user = "u";
         o.password = "p";
     },
     true},
    {"user without password", [](auto& o) { o.user = "u"; }, false},
    {"password alone (default user)", [](auto& o) { o.password = "p"; }, true},
    {"empty host", [](auto& o) { o.host.clear(); }, false},
    {"zero op_timeout", [](auto& o) { o.op_timeout = 0ms; }, false},
    {"zero connect_timeout", [](auto& o) { o.connect_timeout = 0ms; }, false},
    {"zero health interval", [](auto& o) { o.health_check_interval = 0ms; }, false},
    {"reconnect_min > max", [](auto& o) { o.reconnect_min = 6s; }, false},
    {"zero max_pending", [](auto& o) { o.max_pending = 0; }, false},
    {"depth 0", [](auto& o) { o.limits.max_depth = 0; }, false},
    {"depth 8", [](auto& o) { o.limits.max_depth = 8; }, false},
    {"depth 7", [](auto& o) { o.limits.max_depth = 7; }, true},
    {"zero reply cap", [](auto& o) { o.limits.max_reply_bytes = 0; }, false},
};

BOOST_DATA_TEST_CASE(check, bdata::make(check_rows), row) {
    redis::connection_options o;
    row.change(o);
    BOOST_TEST(redis::check(o).has_value() == row.valid);
}

BOOST_AUTO_TEST_CASE(describe_never_shows_the_password) {
    redis::connection_options o;
    redis::apply_url(redis::parse_url("rediss://fleet@[::1]:6380/2").value(), o);
    o.password = "s3cret-pass";
    o.ca_file = "ca.pem";
    const auto text = redis::describe(o);
    BOOST_TEST(text == "rediss://fleet@[::1]:6380/2 (password set) (CA file ca.pem)");
    BOOST_TEST(text.find("s3cret") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(password_file_must_be_private) {
    using std::filesystem::perms;
    imagegate::config::test::temp_dir dir;
    const auto good = dir.write("good", "  s3cret-pass \nsecond line ignored\n");
    BOOST_TEST(redis::load_password_file(good).value() == "s3cret-pass");

    const auto shared = dir.write("shared", "s3cret-pass\n",
                                  perms::owner_read | perms::owner_write | perms::group_read);
    const auto refused = redis::load_password_file(shared);
    BOOST_REQUIRE(refused.has_error());
    BOOST_TEST(refused.error().reason.find("chmod 600") != std::string::npos);
    BOOST_TEST(refused.error().reason.find("s3cret") == std::string::npos);

    BOOST_TEST(redis::load_password_file(dir.write("empty", "\n")).has_error());
    BOOST_TEST(redis::load_password_file(dir.write("ctl", "pa\x01ss\n")).has_error());
    BOOST_TEST(redis::load_password_file((dir.path() / "missing").string()).has_error());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(executor_check)

BOOST_AUTO_TEST_CASE(knows_io_context_executors_and_strands) {
    namespace asio = boost::asio;
    asio::io_context ioc(1);
    const asio::any_io_executor ex = ioc.get_executor();
    const asio::any_io_executor strand = asio::make_strand(ioc.get_executor());
    // Outside run(): not running in either.
    BOOST_TEST(!redis::detail::running_in(ex));
    BOOST_TEST(!redis::detail::running_in(strand));
    bool in_ex = false;
    bool in_strand = false;
    bool strand_outside = true;
    asio::post(ex, [&] {
        in_ex = redis::detail::running_in(ex);
        strand_outside = redis::detail::running_in(strand);
    });
    asio::post(strand, [&] { in_strand = redis::detail::running_in(strand); });
    ioc.run();
    BOOST_TEST(in_ex);
    BOOST_TEST(in_strand);
    BOOST_TEST(!strand_outside);
    // Another io_context's thread is not this one's.
    asio::io_context other(1);
    bool in_other = true;
    asio::post(other, [&] { in_other = redis::detail::running_in(ex); });
    other.run();
    BOOST_TEST(!in_other);
}

BOOST_AUTO_TEST_SUITE_END()
