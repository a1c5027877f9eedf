#define BOOST_TEST_MODULE unit_warm
#include "gateway/warm/page.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>

namespace warm = imagegate::warm;
namespace bdata = boost::unit_test::data;

namespace {

std::string img(std::string_view id, std::string_view extra = {}) {
    return R"({"id":")" + std::string(id) + R"(","filename":"a.png","requireSignedURLs":false,)" +
           R"("uploaded":"2024-01-02T03:04:05.000Z","variants":["https://x/y/public"])" +
           std::string(extra) + "}";
}

std::string listing(const std::string& images, std::string_view token = "null",
                    std::string_view tail = R"(,"success":true,"errors":[],"messages":[])") {
    return R"({"result":{"images":[)" + images + R"(],"continuation_token":)" + std::string(token) +
           "}" + std::string(tail) + "}";
}

struct page_case {
    std::string name;
    std::string json;
    bool ok;
    std::size_t valid = 0;
    std::size_t invalid = 0;
    std::string token{};  // expected continuation; empty: none
    std::size_t max_items = 5;
};
std::ostream& operator<<(std::ostream& os, const page_case& c) { return os << c.name; }

const page_case cases[] = {
    {"one image, last page", listing(img("a")), true, 1, 0},
    {"two images and a token", listing(img("a") + "," + img("b"), R"("0123abcd")"), true, 2, 0,
     "0123abcd"},
    {"empty last page", listing(""), true, 0, 0},
    {"token absent", R"({"result":{"images":[]},"success":true})", true, 0, 0},
    {"result before success, extra fields skipped",
     R"({"result":{"x":[1,{"y":2}],"images":[)" + img("a") +
         R"(],"continuation_token":"t"},"result_info":null,"success":true})",
     true, 1, 0, "t"},
    {"a custom id with slashes", listing(img(R"(folder\/sub\/x)")), true, 1, 0},
    {"a draft", listing(img("d", R"(,"draft":true)")), true, 1, 0},
    // Items refused one by one, the page still used.
    {"not an object", listing("1," + img("a") + R"(,"x",null,[])"), true, 1, 4},
    {"no id", listing(R"({"filename":"a.png"})"), true, 0, 1},
    {"id not a string", listing(R"({"id":7})"), true, 0, 1},
    {"reserved id", listing(img("keys") + "," + img("a/blob") + "," + img("..")), true, 0, 3},
    {"control byte in id", listing(img(R"(a\u0001b)")), true, 0, 1},
    {"id over 1024 bytes", listing(img(std::string(1025, 'x'))), true, 0, 1},
    {"mistyped field", listing(img("a", R"(,"draft":"yes")")), true, 0, 1},
    {"meta over 1024 bytes",
     listing(img("a", R"(,"meta":{"k":")" + std::string(1100, 'm') + R"("})")), true, 0, 1},
    {"a field twice", listing(img("a", R"(,"filename":"b.png")")), true, 0, 1},
    // Pages refused whole.
    {"success false", listing(img("a"), "null", R"(,"success":false)"), false},
    {"success missing", listing(img("a"), "null", ""), false},
    {"result missing", R"({"success":true})", false},
    {"images missing", R"({"result":{"continuation_token":null},"success":true})", false},
    {"images not an array", R"({"result":{"images":{}},"success":true})", false},
    {"result twice", R"({"result":{"images":[]},"result":{"images":[]},"success":true})", false},
    {"token not a string", listing(img("a"), "7"), false},
    {"token with a space", listing(img("a"), R"("a b")"), false},
    {"token with an ampersand", listing(img("a"), R"("a&per_page=1")"), false},
    {"token too long", listing(img("a"), "\"" + std::string(257, 't') + "\""), false},
    {"empty token", listing(img("a"), R"("")"), false},
    {"content after the page", listing(img("a")) + "{}", false},
    {"not JSON", "{\"result\":", false},
    {"top level an array", "[]", false},
    {"more items than asked for", listing(img("a") + "," + img("b") + "," + img("c")), false, 0, 0,
     "", 2},
    {"as many items as asked for", listing(img("a") + "," + img("b") + ",7"), true, 2, 1, "", 3},
};

}  // namespace

BOOST_DATA_TEST_CASE(parses_listing_pages, bdata::make(cases), c) {
    simdjson::ondemand::parser a;
    simdjson::ondemand::parser b;
    const auto p = warm::parse_page(c.json, c.json.size(), c.max_items, a, b);
    BOOST_TEST(p.ok() == c.ok);
    if (!c.ok) {
        BOOST_TEST(p.images.empty());  // nothing of a refused page is used
        return;
    }
    BOOST_TEST(p.images.size() == c.valid);
    BOOST_TEST(p.invalid == c.invalid);
    BOOST_TEST(p.continuation.value_or("") == c.token);
}

// What is stored is exactly the detail answer the upstream gives for the id: the listed
// object byte for byte inside the detail envelope.
BOOST_AUTO_TEST_CASE(a_listed_image_becomes_its_detail_answer) {
    simdjson::ondemand::parser a;
    simdjson::ondemand::parser b;
    const std::string object = img(R"(folder\/sub\/x)", R"(,"draft":true)");
    const std::string json = listing(object);
    const auto p = warm::parse_page(json, json.size(), 10, a, b);
    BOOST_TEST_REQUIRE(p.images.size() == 1u);
    const auto& i = p.images.front();
    BOOST_TEST(i.id == "folder/sub/x");
    BOOST_TEST(i.canonical_id == "folder%2Fsub%2Fx");
    BOOST_TEST(i.draft);
    BOOST_TEST(i.body ==
               R"({"result":)" + object + R"(,"success":true,"errors":[],"messages":[]})");
    BOOST_TEST(imagegate::validate::validate_image(i.body, i.body.size(), i.id, a).ok());
}

BOOST_AUTO_TEST_CASE(reads_the_image_count) {
    simdjson::ondemand::parser p;
    const std::string ok = R"({"result":{"count":{"allowed":100000,"current":42}},"success":true})";
    BOOST_TEST(warm::parse_image_count(ok, ok.size(), p).value_or(0) == 42u);
    for (const std::string bad :
         {R"({"result":{"count":{"current":-1}}})", R"({"result":{"count":{"current":"42"}}})",
          R"({"result":{}})", R"({"result":{"count":{"current":10000000000000}}})", "nope"}) {
        BOOST_TEST_CONTEXT(bad) { BOOST_TEST(!warm::parse_image_count(bad, bad.size(), p)); }
    }
}

BOOST_AUTO_TEST_CASE(continuation_tokens_are_unreserved_characters) {
    BOOST_TEST(warm::is_continuation_token("0123456789abcdef0123456789abcdef"));
    BOOST_TEST(warm::is_continuation_token("A-z_0.9~"));
    BOOST_TEST(!warm::is_continuation_token(""));
    BOOST_TEST(!warm::is_continuation_token("a%20b"));
    BOOST_TEST(!warm::is_continuation_token("a/b"));
    BOOST_TEST(!warm::is_continuation_token(std::string(257, 'a')));
    BOOST_TEST(warm::is_continuation_token(std::string(256, 'a')));
}
