// validate_error_envelope: the Cloudflare error envelope of non-200 answers.
#include "tests/unit/validate/fixtures.hpp"

#include "gateway/core/errc.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>

namespace imagegate::validate::test {
namespace {

struct envelope_case {
    std::string_view name;
    std::string_view json;
    bool ok;
    std::uint32_t code;        // when ok
    std::string_view pointer;  // when not ok
};

std::ostream& operator<<(std::ostream& os, const envelope_case& c) { return os << c.name; }

// Most rows share one valid error item.
#define ITEM R"({"code":5404,"message":"Image not found"})"

const envelope_case envelope_cases[] = {
    // valid: the answers the gateway acts on
    {"not found", R"({"result":null,"success":false,"errors":[)" ITEM R"(],"messages":[]})", true,
     5404, ""},
    {"result absent", R"({"success":false,"errors":[)" ITEM R"(],"messages":[]})", true, 5404, ""},
    {"auth error with chain",
     R"({"success":false,"errors":[{"code":6003,"message":"Invalid request headers",)"
     R"("error_chain":[{"code":6111,"message":"Invalid format"}]}],"messages":[],"result":null})",
     true, 6003, ""},
    {"first of several",
     R"({"success":false,"errors":[{"code":971,"message":"wait"},)" ITEM R"(],"messages":[]})",
     true, 971, ""},
    {"extra fields",
     R"({"success":false,"errors":[{"code":5404,"message":"m","documentation_url":"https://x",)"
     R"("source":{"pointer":"/a"}}],"messages":["m"],"result":null,"result_info":null})",
     true, 5404, ""},
    {"code at uint32 max",
     R"({"success":false,"errors":[{"code":4294967295,"message":"m"}],"messages":[]})", true,
     4294967295u, ""},
    // invalid: success
    {"success true", R"({"success":true,"errors":[)" ITEM R"(],"messages":[]})", false, 0,
     "/success"},
    {"success missing", R"({"errors":[)" ITEM R"(],"messages":[]})", false, 0, "/success"},
    // invalid: errors
    {"errors empty", R"({"success":false,"errors":[],"messages":[]})", false, 0, "/errors"},
    {"errors object", R"({"success":false,"errors":)" ITEM R"(,"messages":[]})", false, 0,
     "/errors"},
    {"error item not object", R"({"success":false,"errors":[5404],"messages":[]})", false, 0,
     "/errors/0"},
    {"code string", R"({"success":false,"errors":[{"code":"5404","message":"m"}],"messages":[]})",
     false, 0, "/errors/0/code"},
    {"code fraction", R"({"success":false,"errors":[{"code":5404.5,"message":"m"}],"messages":[]})",
     false, 0, "/errors/0/code"},
    {"code negative", R"({"success":false,"errors":[{"code":-1,"message":"m"}],"messages":[]})",
     false, 0, "/errors/0/code"},
    {"code too large",
     R"({"success":false,"errors":[{"code":4294967296,"message":"m"}],"messages":[]})", false, 0,
     "/errors/0/code"},
    {"code missing", R"({"success":false,"errors":[{"message":"m"}],"messages":[]})", false, 0,
     "/errors/0/code"},
    {"message missing", R"({"success":false,"errors":[{"code":5404}],"messages":[]})", false, 0,
     "/errors/0/message"},
    {"second item broken", R"({"success":false,"errors":[)" ITEM R"(,{"code":2}],"messages":[]})",
     false, 0, "/errors/1/message"},
    // invalid: the rest of the envelope
    {"messages missing", R"({"success":false,"errors":[)" ITEM R"(]})", false, 0, "/messages"},
    {"result object", R"({"success":false,"errors":[)" ITEM R"(],"messages":[],"result":{}})",
     false, 0, "/result"},
    {"html", "<html><body>502 Bad Gateway</body></html>", false, 0, ""},
    {"trailing garbage", R"({"success":false,"errors":[)" ITEM R"(],"messages":[]} x)", false, 0,
     ""},
    {"bad escape in unknown", R"({"success":false,"errors":[)" ITEM R"(],"messages":[],"x":"\q"})",
     false, 0, "/x"},
};

#undef ITEM

}  // namespace

BOOST_AUTO_TEST_SUITE(envelope)

BOOST_DATA_TEST_CASE(table, boost::unit_test::data::make(envelope_cases), c) {
    std::string body(c.json);
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    const error_envelope e = validate_envelope(body);
    BOOST_TEST(e.ok() == c.ok, e);
    if (c.ok) {
        BOOST_TEST(e.code == c.code);
        BOOST_TEST(!e.error());
    } else if (e.failure) {
        BOOST_TEST(e.failure->pointer == c.pointer, *e.failure);
        BOOST_TEST(!e.failure->reason.empty());
        BOOST_TEST((e.error() == errc::invalid_upstream_json));
    }
}

// The same parser serves answer after answer, as the gateway reuses one per session.
BOOST_AUTO_TEST_CASE(parser_is_reused) {
    simdjson::ondemand::parser parser;
    for (const auto& c : envelope_cases) {
        std::string body(c.json);
        body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
        BOOST_TEST_CONTEXT(c.name) {
            BOOST_TEST(validate_error_envelope(body, body.capacity(), parser).ok() == c.ok);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::validate::test
