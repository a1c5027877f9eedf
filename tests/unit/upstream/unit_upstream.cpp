// Pure tests of the upstream client: slot transitions and sizing as tables, request/header
// helpers, failure classification and the Prometheus rendering of stats.
#define BOOST_TEST_MODULE unit_upstream
#include "gateway/upstream/connection.hpp"
#include "gateway/upstream/connection_limit.hpp"
#include "gateway/upstream/framing.hpp"
#include "gateway/upstream/headers.hpp"
#include "gateway/upstream/pool_slot.hpp"
#include "gateway/upstream/response_reader.hpp"
#include "gateway/upstream/stats.hpp"
#include "gateway/upstream/tls.hpp"

#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <boost/asio/buffer.hpp>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace up = imagegate::upstream;
namespace bdata = boost::unit_test::data;
using up::slot_action;
using up::slot_event;
using up::slot_state;

namespace {

struct transition_row {
    slot_state from;
    slot_event event;
    up::slot_facts facts;
    up::slot_transition expected;
};

std::ostream& operator<<(std::ostream& os, const transition_row& r) {
    return os << r.from << " --" << r.event << " (served=" << r.facts.requests_served
              << " waiters=" << r.facts.waiters << " fresh=" << r.facts.first_waiter_wants_fresh
              << ")--> " << r.expected;
}

constexpr up::slot_facts no_waiters{.requests_served = 1, .waiters = 0};
constexpr up::slot_facts waiting{.requests_served = 1, .waiters = 2};
constexpr up::slot_facts waiting_fresh{
    .requests_served = 1, .waiters = 1, .first_waiter_wants_fresh = true};
constexpr up::slot_facts worn_out{.requests_served = 10, .waiters = 2};
constexpr up::slot_limits limits{.max_requests_per_connection = 10};

const transition_row transition_rows[] = {
    // connecting: a finished connect serves the oldest waiter, or parks
    {slot_state::connecting,
     slot_event::connect_succeeded,
     waiting,
     {slot_state::in_use, slot_action::hand_to_waiter}},
    {slot_state::connecting,
     slot_event::connect_succeeded,
     waiting_fresh,
     {slot_state::in_use, slot_action::hand_to_waiter}},
    {slot_state::connecting,
     slot_event::connect_succeeded,
     no_waiters,
     {slot_state::idle, slot_action::park}},
    {slot_state::connecting,
     slot_event::connect_failed,
     waiting,
     {slot_state::closing, slot_action::close}},
    {slot_state::connecting,
     slot_event::shutdown,
     waiting,
     {slot_state::closing, slot_action::abort}},
    {slot_state::connecting,
     slot_event::acquired,
     waiting,
     {slot_state::connecting, slot_action::invalid}},
    {slot_state::connecting,
     slot_event::released_reusable,
     waiting,
     {slot_state::connecting, slot_action::invalid}},
    {slot_state::connecting,
     slot_event::idle_expired,
     waiting,
     {slot_state::connecting, slot_action::invalid}},
    // idle: lent, expired, evicted or shut down
    {slot_state::idle, slot_event::acquired, no_waiters, {slot_state::in_use, slot_action::lend}},
    {slot_state::idle,
     slot_event::idle_expired,
     no_waiters,
     {slot_state::closing, slot_action::close}},
    {slot_state::idle, slot_event::evicted, no_waiters, {slot_state::closing, slot_action::close}},
    {slot_state::idle, slot_event::shutdown, no_waiters, {slot_state::closing, slot_action::close}},
    {slot_state::idle,
     slot_event::connect_succeeded,
     no_waiters,
     {slot_state::idle, slot_action::invalid}},
    {slot_state::idle,
     slot_event::released_broken,
     no_waiters,
     {slot_state::idle, slot_action::invalid}},
    // in_use: the release decides reuse
    {slot_state::in_use,
     slot_event::released_reusable,
     no_waiters,
     {slot_state::idle, slot_action::park}},
    {slot_state::in_use,
     slot_event::released_reusable,
     waiting,
     {slot_state::in_use, slot_action::hand_to_waiter}},
    {slot_state::in_use,
     slot_event::released_reusable,
     waiting_fresh,
     {slot_state::closing, slot_action::close}},
    {slot_state::in_use,
     slot_event::released_reusable,
     worn_out,
     {slot_state::closing, slot_action::close}},
    {slot_state::in_use,
     slot_event::released_broken,
     waiting,
     {slot_state::closing, slot_action::close}},
    {slot_state::in_use,
     slot_event::released_broken,
     no_waiters,
     {slot_state::closing, slot_action::close}},
    {slot_state::in_use, slot_event::shutdown, waiting, {slot_state::closing, slot_action::abort}},
    {slot_state::in_use, slot_event::acquired, waiting, {slot_state::in_use, slot_action::invalid}},
    {slot_state::in_use,
     slot_event::idle_expired,
     waiting,
     {slot_state::in_use, slot_action::invalid}},
    // closing: whoever still owns the stream reports back, then the slot goes
    {slot_state::closing,
     slot_event::released_reusable,
     waiting,
     {slot_state::closing, slot_action::close}},
    {slot_state::closing,
     slot_event::released_broken,
     waiting,
     {slot_state::closing, slot_action::close}},
    {slot_state::closing,
     slot_event::connect_succeeded,
     waiting,
     {slot_state::closing, slot_action::close}},
    {slot_state::closing,
     slot_event::connect_failed,
     waiting,
     {slot_state::closing, slot_action::close}},
    {slot_state::closing, slot_event::shutdown, waiting, {slot_state::closing, slot_action::none}},
    {slot_state::closing,
     slot_event::acquired,
     waiting,
     {slot_state::closing, slot_action::invalid}},
    {slot_state::closing,
     slot_event::idle_expired,
     waiting,
     {slot_state::closing, slot_action::invalid}},
};

struct sizing_row {
    std::size_t max_connections, current, pending, waiters, expected;
};

std::ostream& operator<<(std::ostream& os, const sizing_row& r) {
    return os << "max=" << r.max_connections << " current=" << r.current << " pending=" << r.pending
              << " waiters=" << r.waiters << " -> " << r.expected;
}

const sizing_row sizing_rows[] = {
    // nobody waits: open nothing
    {4, 0, 0, 0, 0},
    {4, 2, 1, 0, 0},
    // one connect per waiter not yet covered by a pending connect
    {4, 0, 0, 1, 1},
    {4, 0, 0, 3, 3},
    {4, 1, 1, 1, 0},
    {4, 2, 1, 3, 2},
    // capped by the room left under max_connections
    {4, 0, 0, 9, 4},
    {4, 3, 0, 2, 1},
    {4, 4, 0, 5, 0},
    {1, 1, 1, 7, 0},
    // over the limit (max lowered at runtime, closing slots): never negative
    {2, 3, 0, 1, 0},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pool_slot)

BOOST_DATA_TEST_CASE(transitions, bdata::make(transition_rows), row) {
    BOOST_TEST(up::transition(row.from, row.event, row.facts, limits) == row.expected);
}

BOOST_AUTO_TEST_CASE(unlimited_requests_never_wear_out) {
    const up::slot_facts many{.requests_served = 1'000'000, .waiters = 0};
    BOOST_TEST(up::transition(slot_state::in_use, slot_event::released_reusable, many, {}) ==
               (up::slot_transition{slot_state::idle, slot_action::park}));
}

BOOST_DATA_TEST_CASE(sizing, bdata::make(sizing_rows), row) {
    BOOST_TEST(up::connections_to_open({row.max_connections}, row.current, row.pending,
                                       row.waiters) == row.expected);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(headers)

BOOST_AUTO_TEST_CASE(host_header) {
    BOOST_TEST(up::host_header_value("api.cloudflare.com", 443, true) == "api.cloudflare.com");
    BOOST_TEST(up::host_header_value("api.cloudflare.com", 80, false) == "api.cloudflare.com");
    BOOST_TEST(up::host_header_value("127.0.0.1", 8443, true) == "127.0.0.1:8443");
    BOOST_TEST(up::host_header_value("127.0.0.1", 443, false) == "127.0.0.1:443");
    BOOST_TEST(up::host_header_value("::1", 8443, true) == "[::1]:8443");
    BOOST_TEST(up::host_header_value("[::1]", 443, true) == "[::1]");
}

BOOST_AUTO_TEST_CASE(target_joining) {
    BOOST_TEST(up::join_target("/client/v4", "/accounts/a/images/v1/x") ==
               "/client/v4/accounts/a/images/v1/x");
    BOOST_TEST(up::join_target("/client/v4/", "/accounts/a") == "/client/v4/accounts/a");
    BOOST_TEST(up::join_target("client/v4", "accounts/a") == "/client/v4/accounts/a");
    BOOST_TEST(up::join_target("", "/accounts/a") == "/accounts/a");
    BOOST_TEST(up::join_target("/", "/accounts/a%2Fb") == "/accounts/a%2Fb");
}

BOOST_AUTO_TEST_CASE(ip_literals) {
    BOOST_TEST(up::is_ip_literal("127.0.0.1"));
    BOOST_TEST(up::is_ip_literal("::1"));
    BOOST_TEST(up::is_ip_literal("[::1]"));
    BOOST_TEST(!up::is_ip_literal("localhost"));
    BOOST_TEST(!up::is_ip_literal("api.cloudflare.com"));
    BOOST_TEST(!up::is_ip_literal(""));
}

BOOST_AUTO_TEST_CASE(status_classes) {
    BOOST_TEST(up::status_class(200) == 2u);
    BOOST_TEST(up::status_class(404) == 4u);
    BOOST_TEST(up::status_class(599) == 5u);
    BOOST_TEST(up::status_class(99) == 0u);
    BOOST_TEST(up::status_class(600) == 0u);
}

BOOST_AUTO_TEST_CASE(kept_header_values) {
    BOOST_TEST(up::keep_header_value("\"default\";r=50;t=30") == "\"default\";r=50;t=30");
    BOOST_TEST(up::keep_header_value("120") == "120");
    BOOST_TEST(up::keep_header_value(std::string(up::max_kept_header_bytes, 'a')).size() ==
               up::max_kept_header_bytes);
    BOOST_TEST(up::keep_header_value(std::string(up::max_kept_header_bytes + 1, 'a')).empty());
    BOOST_TEST(up::keep_header_value("a\r\nb").empty());
    BOOST_TEST(up::keep_header_value(std::string_view("a\0b", 3)).empty());
}

BOOST_AUTO_TEST_CASE(header_and_target_safety) {
    BOOST_TEST(up::is_header_safe("Bearer abc.DEF-123_~+/="));
    BOOST_TEST(up::is_header_safe("a\tb"));
    BOOST_TEST(up::is_header_safe(""));
    BOOST_TEST(!up::is_header_safe("a\r\nX-Injected: 1"));
    BOOST_TEST(!up::is_header_safe("a\nb"));
    BOOST_TEST(!up::is_header_safe(std::string_view("a\0b", 3)));
    BOOST_TEST(!up::is_header_safe("a\x7f"));
    BOOST_TEST(up::is_target_safe("/client/v4/accounts/a/images/v1/x%2Fy"));
    BOOST_TEST(!up::is_target_safe(""));
    BOOST_TEST(!up::is_target_safe("client/v4"));
    BOOST_TEST(!up::is_target_safe("/a b"));
    BOOST_TEST(!up::is_target_safe("/a\r\nHost: evil"));
}

BOOST_AUTO_TEST_CASE(request_head_bytes) {
    BOOST_TEST(up::get_request_head("/x", {}) == "GET /x HTTP/1.1\r\n\r\n");
    BOOST_TEST(up::get_request_head("/client/v4/accounts/a/images/v1/i",
                                    {"Host: h\r\n", "Authorization: Bearer ", "t", "\r\n"}) ==
               "GET /client/v4/accounts/a/images/v1/i HTTP/1.1\r\nHost: h\r\n"
               "Authorization: Bearer t\r\n\r\n");
}

BOOST_AUTO_TEST_SUITE_END()

// The upstream response parser: what it keeps from a head, and what it refuses.
BOOST_AUTO_TEST_SUITE(response_reader)

struct reader_row {
    std::string name;
    std::string wire;
    std::uint64_t body_limit;
    bool ok;
    unsigned status;
    std::string body;
    up::response_head kept;  // status unused
    bool keep_alive;
};

std::ostream& operator<<(std::ostream& os, const reader_row& r) { return os << r.name; }

const std::string json_head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";

const std::vector<reader_row> reader_rows = {
    {"content-length body and kept headers",
     json_head +
         "RateLimit: \"default\";r=50;t=30\r\nratelimit-policy: \"default\";q=1200;w=300\r\n"
         "X-Other: 1\r\nContent-Length: 2\r\n\r\n{}",
     1024,
     true,
     200,
     "{}",
     {0, "application/json", "", "\"default\";r=50;t=30", "\"default\";q=1200;w=300"},
     true},
    {"first occurrence wins, even when it is not kept",
     "HTTP/1.1 429 Too Many Requests\r\nRetry-After: " + std::string(300, '9') +
         "\r\nRetry-After: 5\r\nRATELIMIT: a\r\nRateLimit: b\r\nContent-Length: 0\r\n\r\n",
     1024,
     true,
     429,
     "",
     {0, "", "", "a", ""},
     true},
    {"chunked body",
     json_head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3\r\na\":\r\n2\r\n1}\r\n0\r\n\r\n",
     1024,
     true,
     200,
     "{\"a\":1}",
     {0, "application/json", "", "", ""},
     true},
    {"connection: close",
     json_head + "Connection: close\r\nContent-Length: 1\r\n\r\nx",
     1024,
     true,
     200,
     "x",
     {0, "application/json", "", "", ""},
     false},
    {"content-length over the limit",
     json_head + "Content-Length: 1025\r\n\r\n",
     1024,
     false,
     0,
     "",
     {},
     false},
    {"chunks over the limit",
     json_head + "Transfer-Encoding: chunked\r\n\r\n401\r\n" + std::string(1025, 'a') +
         "\r\n0\r\n\r\n",
     1024,
     false,
     0,
     "",
     {},
     false},
    {"bad status line",
     "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
     1024,
     false,
     0,
     "",
     {},
     false},
    {"control byte in a header value is refused by the parser",
     "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\x01\r\nContent-Length: 0\r\n\r\n",
     1024,
     false,
     0,
     "",
     {},
     false},
};

BOOST_DATA_TEST_CASE(parses, bdata::make(reader_rows), row) {
    up::response_reader r;
    r.header_limit(16 * 1024);
    r.body_limit(row.body_limit);
    r.eager(true);
    boost::system::error_code ec;
    const std::size_t used = r.put(boost::asio::buffer(row.wire), ec);
    const bool ok = !ec && r.is_done();
    BOOST_TEST(ok == row.ok, row.name << ": " << ec.message());
    if (!ok || !row.ok) {
        return;
    }
    BOOST_TEST(used == row.wire.size());
    BOOST_TEST(r.keep_alive() == row.keep_alive);
    const auto head = r.take_head();
    BOOST_TEST(head.status == row.status);
    BOOST_TEST(head.content_type == row.kept.content_type);
    BOOST_TEST(head.retry_after == row.kept.retry_after);
    BOOST_TEST(head.ratelimit == row.kept.ratelimit);
    BOOST_TEST(head.ratelimit_policy == row.kept.ratelimit_policy);
    const std::string body = r.take_body();
    BOOST_TEST(body == row.body);
    BOOST_TEST(body.capacity() >= body.size() + up::body_padding);
}

BOOST_AUTO_TEST_SUITE_END()

// Interim heads, the head budget and the reuse verdict (gateway/upstream/framing.hpp).
BOOST_AUTO_TEST_SUITE(framing)

struct head_step {
    unsigned status;
    std::size_t bytes;
    up::head_kind expected;
};

struct heads_row {
    std::string name;
    std::uint32_t header_limit;
    std::vector<head_step> steps;
    unsigned interim;              // after the last step
    std::uint32_t limit_left;      // header_limit() after the last step
    boost::system::error_code ec;  // error() after the last step
};

std::ostream& operator<<(std::ostream& os, const heads_row& r) { return os << r.name; }

using up::head_kind;
const std::vector<heads_row> heads_rows = {
    {"a final head at once", 1000, {{200, 100, head_kind::final_response}}, 0, 1000, {}},
    {"every non-1xx status is final",
     1000,
     {{204, 10, head_kind::final_response}, {404, 10, head_kind::final_response}},
     0,
     1000,
     {}},
    {"100, 102, 103 and undefined 1xx are skipped, their bytes counted",
     1000,
     {{100, 25, head_kind::interim},
      {102, 27, head_kind::interim},
      {103, 100, head_kind::interim},
      {199, 48, head_kind::interim},
      {200, 300, head_kind::final_response}},
     4,
     800,
     {}},
    {"101 is refused",
     1000,
     {{101, 60, head_kind::refused}},
     0,
     1000,
     up::framing_error::switching_protocols},
    {"101 after an interim head is refused too",
     1000,
     {{103, 50, head_kind::interim}, {101, 60, head_kind::refused}},
     1,
     950,
     up::framing_error::switching_protocols},
    {"eight interim heads are fine",
     1000,
     {{100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {200, 1, head_kind::final_response}},
     8,
     992,
     {}},
    {"the ninth is refused",
     1000,
     {{100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {100, 1, head_kind::interim},
      {103, 1, head_kind::refused}},
     8,
     992,
     up::framing_error::too_many_interim_responses},
    {"interim heads use up the one header limit",
     100,
     {{103, 60, head_kind::interim}, {103, 40, head_kind::interim}},
     2,
     0,
     {}},
    {"a head larger than what is left cannot underflow the limit",
     100,
     {{103, 150, head_kind::interim}},
     1,
     0,
     {}},
};

BOOST_DATA_TEST_CASE(head_sequences, bdata::make(heads_rows), row) {
    up::head_sequence seq(row.header_limit);
    for (std::size_t i = 0; i < row.steps.size(); ++i) {
        const auto& step = row.steps[i];
        BOOST_TEST(seq.on_head(step.status, step.bytes) == step.expected, "step " << i);
    }
    BOOST_TEST(seq.interim_responses() == row.interim);
    BOOST_TEST(seq.header_limit() == row.limit_left);
    BOOST_TEST(seq.error() == row.ec, seq.error().message());
}

BOOST_AUTO_TEST_CASE(framing_errors_have_messages) {
    for (const auto e :
         {up::framing_error::switching_protocols, up::framing_error::too_many_interim_responses,
          up::framing_error::unread_bytes_before_request}) {
        const boost::system::error_code ec = e;
        BOOST_TEST(std::string(ec.category().name()) == "imagegate.upstream");
        BOOST_TEST(!ec.message().empty());
        BOOST_TEST(ec.message() != "unknown upstream framing error");
    }
}

BOOST_AUTO_TEST_CASE(reuse_needs_framing_keep_alive_and_nothing_unread) {
    // keep_alive, need_eof, trailing -> reusable
    BOOST_TEST(up::may_reuse({true, false, false}));
    BOOST_TEST(!up::may_reuse({false, false, false}));  // Connection: close
    BOOST_TEST(!up::may_reuse({true, true, false}));    // close-delimited body
    BOOST_TEST(!up::may_reuse({true, false, true}));    // bytes beyond the response
    BOOST_TEST(!up::may_reuse({false, true, true}));
}

BOOST_AUTO_TEST_CASE(facts_clean_and_certain) {
    const up::exchange_facts fresh_framed{true, true, false, 0};
    BOOST_TEST(fresh_framed.clean());
    BOOST_TEST(fresh_framed.certain());
    const up::exchange_facts reused_framed{false, true, false, 2};
    BOOST_TEST(reused_framed.clean());
    BOOST_TEST(!reused_framed.certain());
    const up::exchange_facts close_delimited{true, false, false, 0};
    BOOST_TEST(!close_delimited.clean());
    BOOST_TEST(!close_delimited.certain());
    const up::exchange_facts trailing{true, true, true, 0};
    BOOST_TEST(!trailing.clean());
    BOOST_TEST(!trailing.certain());
}

// The loop connection::exchange runs, without a socket: one reader per head, each reading on
// from what the previous one left, over bytes that arrived in one piece.
struct read_outcome {
    boost::system::error_code ec;
    unsigned status = 0;
    std::string body;
    unsigned interim = 0;
    std::size_t left_over = 0;
};

read_outcome read_answer(std::string_view wire) {
    read_outcome out;
    up::head_sequence seq(16 * 1024);
    std::optional<up::response_reader> r;
    for (;;) {
        r.emplace();
        r->header_limit(seq.header_limit());
        r->body_limit(1024);
        const std::size_t used = r->put(boost::asio::buffer(wire.data(), wire.size()), out.ec);
        wire.remove_prefix(used);
        if (out.ec) {
            return out;
        }
        const auto kind = seq.on_head(r->head().status, used);
        out.interim = seq.interim_responses();
        if (kind == up::head_kind::refused) {
            out.ec = seq.error();
            return out;
        }
        if (kind == up::head_kind::final_response) {
            break;
        }
    }
    r->eager(true);
    if (!r->is_done()) {
        const std::size_t used = r->put(boost::asio::buffer(wire.data(), wire.size()), out.ec);
        wire.remove_prefix(used);
    }
    out.status = r->head().status;
    out.body = r->take_body();
    out.left_over = wire.size();
    return out;
}

BOOST_AUTO_TEST_CASE(interim_heads_in_the_same_packet_as_the_answer) {
    const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    auto o = read_answer("HTTP/1.1 100 Continue\r\n\r\n" + answer);
    BOOST_TEST(!o.ec, o.ec.message());
    BOOST_TEST(o.status == 200u);
    BOOST_TEST(o.body == "{}");
    BOOST_TEST(o.interim == 1u);
    BOOST_TEST(o.left_over == 0u);
    // A 1xx head's Content-Length announces nothing (RFC 9110 §15.2: no content).
    o = read_answer(
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
        "Content-Length: 0\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" +
        answer + "HTTP/1.1 404 Not Found\r\n");
    BOOST_TEST(!o.ec, o.ec.message());
    BOOST_TEST(o.status == 200u);
    BOOST_TEST(o.interim == 2u);
    BOOST_TEST(o.left_over == std::string("HTTP/1.1 404 Not Found\r\n").size());
    o = read_answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + answer);
    BOOST_TEST(o.ec == make_error_code(up::framing_error::switching_protocols));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

struct classify_row {
    boost::system::error_code ec;
    up::phase where;
    imagegate::errc expected;
};

std::ostream& operator<<(std::ostream& os, const classify_row& r) {
    return os << r.where << " " << r.ec.category().name() << ":" << r.ec.value() << " -> "
              << static_cast<int>(r.expected);
}

BOOST_AUTO_TEST_CASE(classification) {
    namespace beast = boost::beast;
    namespace asio = boost::asio;
    using imagegate::errc;
    const classify_row rows[] = {
        // any deadline is a timeout, whatever the phase
        {beast::error::timeout, up::phase::resolve, errc::upstream_timeout},
        {beast::error::timeout, up::phase::connect, errc::upstream_timeout},
        {beast::error::timeout, up::phase::handshake, errc::upstream_timeout},
        {beast::error::timeout, up::phase::read, errc::upstream_timeout},
        // reaching the host
        {asio::error::host_not_found, up::phase::resolve, errc::upstream_connect_failed},
        {asio::error::connection_refused, up::phase::connect, errc::upstream_connect_failed},
        // TLS
        {asio::ssl::error::stream_truncated, up::phase::handshake, errc::upstream_tls_failed},
        {boost::system::error_code(0x1416F086, asio::error::get_ssl_category()),
         up::phase::handshake, errc::upstream_tls_failed},
        // the exchange
        {beast::http::error::body_limit, up::phase::read, errc::upstream_too_large},
        {beast::http::error::header_limit, up::phase::read, errc::upstream_protocol_error},
        {beast::http::error::partial_message, up::phase::read, errc::upstream_protocol_error},
        {asio::ssl::error::stream_truncated, up::phase::read, errc::upstream_protocol_error},
        {asio::error::connection_reset, up::phase::read, errc::upstream_protocol_error},
        {asio::error::broken_pipe, up::phase::write, errc::upstream_protocol_error},
        // refusals of our own framing rules
        {up::framing_error::switching_protocols, up::phase::read, errc::upstream_protocol_error},
        {up::framing_error::too_many_interim_responses, up::phase::read,
         errc::upstream_protocol_error},
        {up::framing_error::unread_bytes_before_request, up::phase::write,
         errc::upstream_protocol_error},
    };
    for (const auto& row : rows) {
        BOOST_TEST_CONTEXT(row) {
            BOOST_TEST(make_error_code(up::classify(up::failure{row.ec, row.where, false})) ==
                       make_error_code(row.expected));
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stats)

BOOST_AUTO_TEST_CASE(histogram_renders_cumulative_buckets) {
    using namespace std::chrono_literals;
    up::latency_histogram h;
    h.observe(3ms);    // le 0.005
    h.observe(5ms);    // le 0.005 (bounds are inclusive)
    h.observe(7ms);    // le 0.01
    h.observe(300ms);  // le 0.5
    h.observe(20s);    // +Inf
    std::string out;
    h.render(out, "imagegate_upstream_latency_seconds", "help");
    BOOST_TEST(out.find("# TYPE imagegate_upstream_latency_seconds histogram\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_bucket{le=\"0.005\"} 2\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_bucket{le=\"0.01\"} 3\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_bucket{le=\"0.25\"} 3\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_bucket{le=\"0.5\"} 4\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_bucket{le=\"10\"} 4\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_bucket{le=\"+Inf\"} 5\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_sum 20.315000\n") != std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_latency_seconds_count 5\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(status_counting_and_render) {
    up::stats s;
    s.count_status(200);
    s.count_status(404);
    s.count_status(429);
    s.count_status(503);
    s.count_error(imagegate::errc::upstream_tls_failed);
    BOOST_TEST(s.responses_2xx.load() == 1u);
    BOOST_TEST(s.responses_4xx.load() == 2u);
    BOOST_TEST(s.responses_5xx.load() == 1u);
    BOOST_TEST(s.responses_429.load() == 1u);
    BOOST_TEST(s.tls_failures.load() == 1u);
    std::string out;
    s.render(out);
    BOOST_TEST(out.find("imagegate_upstream_responses_total{class=\"4xx\"} 2\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_responses_by_code_total{code=\"429\"} 1\n") !=
               std::string::npos);
    BOOST_TEST(out.find("imagegate_upstream_tls_failures_total 1\n") != std::string::npos);
    BOOST_TEST(out.find("# TYPE imagegate_upstream_connections_idle gauge\n") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(tls)

BOOST_AUTO_TEST_CASE(context_errors_are_values) {
    const auto missing = up::make_tls_context({.ca_file = "does-not-exist.pem", .ca_pem = {}});
    BOOST_REQUIRE(missing.has_error());
    BOOST_TEST(missing.error().reason.find("does-not-exist.pem") != std::string::npos);

    const auto garbage = up::make_tls_context({.ca_file = {}, .ca_pem = "not a certificate"});
    BOOST_TEST(garbage.has_error());

    const auto both = up::make_tls_context({.ca_file = "a.pem", .ca_pem = "x"});
    BOOST_TEST(both.has_error());

    const auto system = up::make_tls_context({});
    BOOST_TEST(system.has_value());
    BOOST_CHECK_THROW(missing.value(), std::runtime_error);
}

BOOST_AUTO_TEST_SUITE_END()

// The per-origin limit the workers' pools share, driven by hand: the hooks only record what
// the pools would be asked to do.
BOOST_AUTO_TEST_SUITE(shared_limit)

struct recorded {
    std::vector<std::size_t> shed;  // members asked to shed, in call order
    std::vector<std::size_t> room;  // members woken
};

up::connection_limit::hooks record(recorded& r, std::size_t m) {
    return {.shed = [&r, m] { r.shed.push_back(m); }, .room = [&r, m] { r.room.push_back(m); }};
}

BOOST_AUTO_TEST_CASE(units_never_exceed_the_maximum) {
    up::connection_limit limit(3, 2);
    BOOST_TEST(limit.try_take(2) == 2u);
    BOOST_TEST(limit.try_take(5) == 1u);  // only what is left
    BOOST_TEST(limit.try_take(1) == 0u);
    BOOST_TEST(limit.taken() == 3u);
    limit.give_back(2);
    BOOST_TEST(limit.taken() == 1u);
    BOOST_TEST(limit.try_take(3) == 2u);
}

BOOST_AUTO_TEST_CASE(a_short_member_asks_the_others_and_gets_the_claimed_units) {
    recorded r;
    up::connection_limit limit(2, 3);
    for (std::size_t m = 0; m < 3; ++m) {
        limit.set_hooks(m, record(r, m));
    }
    BOOST_TEST(limit.try_take(2) == 2u);  // member 0 holds everything
    // Nobody short: keeping an idle connection is free, and the release path costs a load.
    BOOST_TEST(!limit.claim_for_other(0).has_value());

    limit.set_short(1, 2);  // member 1 needs two: the others are asked to shed
    const std::vector<std::size_t> asked{0, 2};
    BOOST_TEST(r.shed == asked, boost::test_tools::per_element());
    // Saying the same shortfall again asks nobody again; a rise does.
    limit.set_short(1, 2);
    BOOST_TEST(r.shed.size() == 2u);

    // Member 0 gives one idle connection up: the claim names member 1, twice, then none.
    for (int i = 0; i < 2; ++i) {
        const auto claimed = limit.claim_for_other(0);
        BOOST_REQUIRE(claimed.has_value());
        BOOST_TEST(*claimed == 1u);
    }
    BOOST_TEST(!limit.claim_for_other(0).has_value());
    // A member never claims for itself.
    limit.set_short(1, 1);
    BOOST_TEST(!limit.claim_for_other(1).has_value());

    // Units coming back wake the members still short, and only those.
    limit.give_back(1);
    const std::vector<std::size_t> woken{1};
    BOOST_TEST(r.room == woken, boost::test_tools::per_element());
    limit.set_short(1, 0);
    limit.give_back(1);
    BOOST_TEST(r.room.size() == 1u);
    limit.wake(2);
    BOOST_TEST(r.room.back() == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
