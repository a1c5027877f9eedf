// The capacity rule: a buffer without SIMDJSON_PADDING spare bytes is never read past its
// end (ASan checks the exact-size heap buffers here), and the answer does not depend on it.
#include "tests/unit/validate/fixtures.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <memory>
#include <ostream>

namespace imagegate::validate::test {
namespace {

constexpr std::string_view record =
    R"({"success":true,"errors":[],"messages":[],)"
    R"("result":{"id":"2cdc28f0-017a-49c4-9ed7-87056c83901","variants":["a"]}})";

struct capacity_case {
    std::string_view name;
    std::size_t spare;  // bytes allocated after the JSON
};

std::ostream& operator<<(std::ostream& os, const capacity_case& c) { return os << c.name; }

const capacity_case capacity_cases[] = {
    // short: copied into a padded buffer first
    {"no spare bytes", 0},
    {"one spare byte", 1},
    {"one byte short of the padding", simdjson::SIMDJSON_PADDING - 1},
    // enough: parsed in place
    {"exactly the padding", simdjson::SIMDJSON_PADDING},
    {"more than the padding", simdjson::SIMDJSON_PADDING + 100},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(padding)

BOOST_DATA_TEST_CASE(exact_heap_buffers, boost::unit_test::data::make(capacity_cases), c) {
    simdjson::ondemand::parser parser;
    for (const std::string_view json :
         {record, record.substr(0, record.size() - 1), std::string_view(R"({"success":tr)")}) {
        // A heap block of exactly json.size() + c.spare bytes: ASan flags any read past it.
        const std::size_t capacity = json.size() + c.spare;
        const auto buffer = std::make_unique<char[]>(capacity);
        std::memcpy(buffer.get(), json.data(), json.size());
        const validation v =
            validate_image({buffer.get(), json.size()}, capacity, default_id, parser);
        BOOST_TEST(v.ok() == (json == record), v);
    }
}

BOOST_AUTO_TEST_CASE(capacity_below_size_is_treated_as_unpadded) {
    simdjson::ondemand::parser parser;
    const std::string body(record);
    BOOST_TEST(validate_image(body, 0, default_id, parser).ok());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::validate::test
