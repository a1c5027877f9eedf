// gateway/core/log_escape.hpp: what a hostile value becomes in each escaping mode, and that
// the JSON mode always yields a string a JSON parser reads back (the bytes themselves, when
// they were valid UTF-8).
#define BOOST_TEST_MODULE unit_core
#include "gateway/core/log_escape.hpp"

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>
#include <simdjson.h>

#include <iterator>
#include <random>
#include <string>

namespace ig = imagegate;

namespace {

std::string escape(std::string_view in, ig::escape_mode mode) {
    std::string out;
    ig::escape_to(std::back_inserter(out), in, mode);
    return out;
}

struct escape_case {
    const char* name;
    std::string in;
    std::string text;  // escape_mode::text
    std::string json;  // escape_mode::json
    std::string line;  // escape_mode::line
};

const escape_case cases[] = {
    {"plain", "/accounts/a/images/v1/x", "/accounts/a/images/v1/x", "/accounts/a/images/v1/x",
     "/accounts/a/images/v1/x"},
    {"quotes and backslashes", R"(a"b\c)", R"(a\"b\\c)", R"(a\"b\\c)", R"(a"b\c)"},
    {"a forged JSON member", R"(/x"},"level":"critical")", R"(/x\"},\"level\":\"critical\")",
     R"(/x\"},\"level\":\"critical\")", R"(/x"},"level":"critical")"},
    {"a forged text line", "x\n2026-12-03T00:00:00.000+00:00 critical [1] FORGED",
     R"(x\n2026-12-03T00:00:00.000+00:00 critical [1] FORGED)",
     R"(x\n2026-12-03T00:00:00.000+00:00 critical [1] FORGED)",
     R"(x\n2026-12-03T00:00:00.000+00:00 critical [1] FORGED)"},
    {"CR, tab, NUL, ESC, DEL", std::string("a\rb\tc\0d\x1b[2Je\x7f", 13),
     R"(a\rb\tc\u0000d\u001b[2Je\u007f)", R"(a\rb\tc\u0000d\u001b[2Je\u007f)",
     R"(a\rb\tc\u0000d\u001b[2Je\u007f)"},
    {"valid UTF-8 passes", "caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80",
     "caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80"},
    {"invalid UTF-8",
     "a\xFF\xFE"
     "b\xC3",
     R"(a\xff\xfeb\xc3)", R"(a\ufffd\ufffdb\ufffd)", R"(a\xff\xfeb\xc3)"},
    {"overlong and surrogate", "\xC0\xAF\xED\xA0\x80", R"(\xc0\xaf\xed\xa0\x80)",
     R"(\ufffd\ufffd\ufffd\ufffd\ufffd)", R"(\xc0\xaf\xed\xa0\x80)"},
    {"NEL, line separator, bidi override",
     "a\xC2\x85"
     "b\xE2\x80\xA8"
     "c\xE2\x80\xAE"
     "d",
     R"(a\u0085b\u2028c\u202ed)", R"(a\u0085b\u2028c\u202ed)", R"(a\u0085b\u2028c\u202ed)"},
};

// The JSON string `escaped` stands for, or nothing when simdjson refuses it.
std::optional<std::string> parse_json_string(const std::string& escaped) {
    simdjson::padded_string doc("[\"" + escaped + "\"]");
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document d;
    simdjson::ondemand::array a;
    if (parser.iterate(doc).get(d) || d.get_array().get(a)) {
        return std::nullopt;
    }
    for (auto v : a) {
        std::string_view s;
        if (v.get_string().get(s)) {
            return std::nullopt;
        }
        return std::string(s);
    }
    return std::nullopt;
}

}  // namespace

BOOST_AUTO_TEST_CASE(escape_modes_table) {
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            BOOST_TEST(escape(c.in, ig::escape_mode::text) == c.text);
            BOOST_TEST(escape(c.in, ig::escape_mode::json) == c.json);
            BOOST_TEST(escape(c.in, ig::escape_mode::line) == c.line);
        }
    }
}

BOOST_AUTO_TEST_CASE(fmt_wrappers_quote_and_escape) {
    BOOST_TEST(fmt::format("at {}", ig::log_quoted("/a\"\n")) == R"(at "/a\"\n")");
    BOOST_TEST(fmt::format("{}", ig::log_escaped("x y\"")) == R"(x y\")");
    BOOST_TEST(fmt::format("{{\"t\":{}}}", ig::json_string("\xFF\"")) == R"({"t":"\ufffd\""})");
}

// Any bytes at all: the JSON form parses, and gives the input back when it was valid UTF-8;
// the text forms hold no byte that could end or disguise a line.
BOOST_AUTO_TEST_CASE(escaped_output_is_always_safe) {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> length(0, 40);
    const std::string alphabet = "a\"\\\n\r\x01\x7f\xC2\x85\xE2\x80\xA8\xF0\x9F\x98\x80\xFF{}";
    for (int round = 0; round < 5000; ++round) {
        std::string in;
        const int n = length(rng);
        for (int i = 0; i < n; ++i) {
            // Half random bytes, half pieces of the interesting alphabet.
            in.push_back(round % 2
                             ? static_cast<char>(byte(rng))
                             : alphabet[static_cast<std::size_t>(byte(rng)) % alphabet.size()]);
        }
        BOOST_TEST_CONTEXT("round " << round) {
            const auto json = escape(in, ig::escape_mode::json);
            const auto back = parse_json_string(json);
            BOOST_TEST_REQUIRE(back.has_value(), json);
            if (ig::is_valid_utf8(in)) {
                BOOST_TEST(*back == in);
            }
            for (const auto mode : {ig::escape_mode::text, ig::escape_mode::line}) {
                const auto out = escape(in, mode);
                BOOST_TEST(ig::is_valid_utf8(out));
                for (const char ch : out) {
                    const auto u = static_cast<unsigned char>(ch);
                    BOOST_TEST_REQUIRE((u >= 0x20 && u != 0x7f), out);
                }
                BOOST_TEST(out.find("\xC2\x85") == std::string::npos);
                BOOST_TEST(out.find("\xE2\x80\xA8") == std::string::npos);
            }
        }
    }
}
