// Every fixture under tests/data/image_record: valid/ must pass, invalid/ must fail at the
// JSON pointer listed for it below.
#include "tests/unit/validate/fixtures.hpp"

#include "gateway/core/errc.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

namespace imagegate::validate::test {

std::string read_padded(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    BOOST_TEST_REQUIRE(in.good(), "cannot open " << file);
    std::string body{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    return body;
}

std::string expected_id_for(const std::filesystem::path& json_file) {
    auto id_file = json_file;
    id_file.replace_extension(".id");
    if (!std::filesystem::exists(id_file)) {
        return std::string(default_id);
    }
    std::ifstream in(id_file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

validation validate(const std::string& body, std::string_view id) {
    simdjson::ondemand::parser parser;
    return validate_image(body, body.capacity(), id, parser);
}

error_envelope validate_envelope(const std::string& body) {
    simdjson::ondemand::parser parser;
    return validate_error_envelope(body, body.capacity(), parser);
}

namespace {

std::vector<std::filesystem::path> json_files(std::string_view folder) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(fixture_root / folder)) {
        if (e.path().extension() == ".json") {
            files.push_back(e.path());
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::string repeat(std::string_view s, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += s;
    }
    return out;
}

// Where each invalid fixture's first violation is (RFC 6901; "" = the whole document).
const std::map<std::string, std::string, std::less<>> invalid_pointers = {
    // not one JSON object
    {"not_json", ""},
    {"empty", ""},
    {"whitespace_only", ""},
    {"trailing_garbage", ""},
    {"two_objects", ""},
    {"array_top_level", ""},
    {"string_top_level", ""},
    {"truncated", ""},
    {"invalid_utf8_unknown", ""},  // simdjson checks UTF-8 over the whole input up front
    // envelope
    {"success_false", "/success"},
    {"success_string", "/success"},
    {"success_missing", "/success"},
    {"missing_result", "/result"},
    {"result_null", "/result"},
    {"result_array", "/result"},
    {"errors_not_array", "/errors"},
    {"errors_string_item", "/errors/0"},
    {"messages_missing", "/messages"},
    {"result_info_string", "/result_info"},
    // result.id
    {"wrong_id", "/result/id"},
    {"id_number", "/result/id"},
    {"id_missing", "/result/id"},
    {"id_duplicate", "/result/id"},
    {"id_escape_mismatch", "/result/id"},
    // other result fields
    {"filename_number", "/result/filename"},
    {"filename_256_bytes", "/result/filename"},
    {"creator_1025_bytes", "/result/creator"},
    {"creator_bool", "/result/creator"},
    {"meta_1025_bytes", "/result/meta"},
    {"meta_array", "/result/meta"},
    {"meta_invalid_inside", "/result/meta/a/1"},
    {"variants_number", "/result/variants/2"},
    {"variants_object", "/result/variants"},
    {"require_signed_yes", "/result/requireSignedURLs"},
    {"draft_string", "/result/draft"},
    {"uploaded_number", "/result/uploaded"},
    // broken JSON inside fields nobody reads
    {"bad_escape_unknown", "/result/extra"},
    {"lone_surrogate_unknown", "/result/extra"},
    {"bad_literal_unknown", "/extra/1"},
    {"bad_number_unknown", "/extra/n"},
    {"missing_colon_unknown", "/extra"},
    // 70 nested arrays: the 65th level (index 63 under /extra) is refused
    {"too_deep_unknown", "/extra" + repeat("/0", 63)},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(fixtures)

BOOST_AUTO_TEST_CASE(valid_fixtures_pass) {
    const auto files = json_files("valid");
    BOOST_TEST(files.size() >= 12u);
    for (const auto& file : files) {
        BOOST_TEST_CONTEXT(file.filename()) {
            const std::string stem = file.stem().string();
            const validation v = validate(read_padded(file), expected_id_for(file));
            BOOST_TEST(v.ok(), v);
            BOOST_TEST(!v.error());
            const bool draft = stem.starts_with("draft") && stem != "draft_false";
            BOOST_TEST(v.draft == draft);
        }
    }
}

BOOST_AUTO_TEST_CASE(invalid_fixtures_fail_where_expected) {
    const auto files = json_files("invalid");
    BOOST_TEST(files.size() >= 20u);
    BOOST_TEST(files.size() == invalid_pointers.size());
    for (const auto& file : files) {
        BOOST_TEST_CONTEXT(file.filename()) {
            const validation v = validate(read_padded(file), expected_id_for(file));
            BOOST_TEST_REQUIRE(!v.ok());
            BOOST_TEST(!v.failure->reason.empty());
            BOOST_TEST((v.error() == errc::invalid_upstream_json));
            const auto row = invalid_pointers.find(file.stem().string());
            BOOST_TEST_REQUIRE((row != invalid_pointers.end()), "no expected pointer listed");
            BOOST_TEST(v.failure->pointer == row->second, *v.failure);
        }
    }
}

// The reason names fields and limits only: nothing of a value the upstream sent.
BOOST_AUTO_TEST_CASE(reasons_do_not_quote_values) {
    std::string body = R"({"success":true,"errors":[],"messages":[],)"
                       R"("result":{"id":"secret-id-value","filename":"secret-name"}})";
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    const validation v = validate(body, "another-id");
    BOOST_TEST_REQUIRE(!v.ok());
    BOOST_TEST(v.failure->reason.find("secret") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::validate::test
