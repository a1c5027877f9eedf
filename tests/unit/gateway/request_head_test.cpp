// The request-head rules (gateway/http/request_head.cpp) on whole heads, table-driven.
#include "gateway/http/request_head.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/test/unit_test.hpp>

#include <optional>
#include <string>

namespace ig = imagegate;
namespace gw = imagegate::gateway;
namespace http = boost::beast::http;

namespace {

struct head_case {
    const char* name;
    std::string head;
    std::optional<ig::errc> verdict;  // check_request's answer; nullopt = served
};

std::string fields(int n) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "X-F" + std::to_string(i) + ": v\r\n";
    }
    return out;
}

const head_case cases[] = {
    {"plain GET", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", std::nullopt},
    {"HTTP/1.0 without Host", "GET /a HTTP/1.0\r\n\r\n", std::nullopt},
    {"1.1 without Host", "GET /a HTTP/1.1\r\nAccept: */*\r\n\r\n", ig::errc::bad_request},
    {"two Hosts", "GET /a HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", ig::errc::bad_request},
    {"Content-Length: 0", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", std::nullopt},
    {"a body", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", ig::errc::bad_request},
    {"chunked", "GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
     ig::errc::bad_request},
    {"repeated Content-Length 0",
     "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
     ig::errc::bad_request},
    {"100 fields", "GET /a HTTP/1.1\r\nHost: x\r\n" + fields(99) + "\r\n", std::nullopt},
    {"101 fields", "GET /a HTTP/1.1\r\nHost: x\r\n" + fields(100) + "\r\n",
     ig::errc::header_too_large},
    {"Host after many fields", "GET /a HTTP/1.1\r\n" + fields(50) + "Host: x\r\n\r\n",
     std::nullopt},
    // Target forms (RFC 9112 §3.2): origin-form, or absolute-form with a path.
    {"absolute-form", "GET http://h/a?b HTTP/1.1\r\nHost: h\r\n\r\n", std::nullopt},
    {"absolute-form, empty path before ?", "GET http://h?/a HTTP/1.1\r\nHost: h\r\n\r\n",
     ig::errc::bad_request},
    {"absolute-form, empty path before #", "GET http://h#/a HTTP/1.1\r\nHost: h\r\n\r\n",
     ig::errc::bad_request},
    {"absolute-form without a path", "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
     ig::errc::bad_request},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", ig::errc::bad_request},
    {"authority-form", "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", ig::errc::bad_request},
    {"a fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", ig::errc::bad_request},
};

}  // namespace

BOOST_AUTO_TEST_CASE(check_request_table) {
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            http::request_parser<http::empty_body> parser;
            parser.header_limit(64 * 1024);
            boost::system::error_code ec;
            const auto used = gw::put_head(parser, boost::asio::buffer(c.head), ec);
            // Beast refuses some heads itself (a list-valued or signed Content-Length, for two);
            // the rows here are all heads it accepts, so the verdict is check_request's.
            BOOST_TEST_REQUIRE(!ec, ec.message());
            BOOST_TEST(used == c.head.size());
            BOOST_TEST_REQUIRE(parser.is_header_done());
            const auto verdict = gw::check_request(parser);
            BOOST_TEST(verdict.has_value() == c.verdict.has_value());
            if (verdict && c.verdict) {
                BOOST_TEST(static_cast<int>(*verdict) == static_cast<int>(*c.verdict));
            }
        }
    }
}

// The listener hands the parser what has arrived and drops what it consumed, also when it
// asks for more (Beast consumes a complete request line and complete fields early). Split
// at every byte, the verdict is the one for the whole head, obs-fold included.
BOOST_AUTO_TEST_CASE(a_head_fed_in_two_parts_gets_the_same_verdict) {
    struct row {
        const char* name;
        std::string head;
        bool accepted;
    };
    const row rows[] = {
        {"plain", "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true},
        {"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", false},
        {"space before the first field", "GET /a HTTP/1.1\r\n Host: x\r\n\r\n", false},
    };
    for (const auto& r : rows) {
        for (std::size_t at = 1; at < r.head.size(); ++at) {
            BOOST_TEST_CONTEXT(r.name << ", split after byte " << at) {
                http::request_parser<http::empty_body> parser;
                parser.header_limit(64 * 1024);
                std::string buffer = r.head.substr(0, at);
                boost::system::error_code ec;
                buffer.erase(0, gw::put_head(parser, boost::asio::buffer(buffer), ec));
                if (ec == http::error::need_more) {
                    buffer += r.head.substr(at);
                    buffer.erase(0, gw::put_head(parser, boost::asio::buffer(buffer), ec));
                }
                BOOST_TEST(!ec == r.accepted, ec.message());
                if (r.accepted) {
                    BOOST_TEST(parser.is_header_done());
                    BOOST_TEST(buffer.empty());
                    BOOST_TEST(!gw::check_request(parser).has_value());
                }
            }
        }
    }
}

// The framing rules alone (a route that takes bodies): a body is allowed, but only framed one
// way (RFC 9112 §6.1, §6.3).
BOOST_AUTO_TEST_CASE(check_framing_allows_bodies_framed_one_way) {
    struct row {
        std::string name;
        std::string head;
        bool refused;
    };
    const row rows[] = {
        {"content-length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", false},
        {"chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", false},
        {"chunked in capitals", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
         false},
        {"another coding first",
         "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true},
        {"two transfer-encoding fields",
         "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         true},
        {"chunked on HTTP/1.0", "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", true},
    };
    for (const auto& c : rows) {
        BOOST_TEST_CONTEXT(c.name) {
            http::request_parser<http::empty_body> parser;
            boost::system::error_code ec;
            gw::put_head(parser, boost::asio::buffer(c.head), ec);
            if (ec) {
                BOOST_TEST(c.refused);  // Beast refused it itself
                continue;
            }
            BOOST_TEST_REQUIRE(parser.is_header_done());
            BOOST_TEST(gw::check_framing(parser).has_value() == c.refused);
            BOOST_TEST(gw::has_body(parser));
        }
    }
}
