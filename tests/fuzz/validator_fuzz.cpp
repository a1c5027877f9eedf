// Fuzzes validate::validate_image and validate::validate_error_envelope (see
// validator_input.hpp for the checks). Input: `ID \0 JSON`, or JSON alone for the default id,
// so the fixtures of tests/data/image_record/ are seeds as they are.
#include "validator_input.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Real bodies are bounded by upstream.max_body_bytes; the validator is linear, so large
    // inputs find nothing small ones do not.
    if (size > 256 * 1024) {
        return 0;
    }
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string_view expected_id = imagegate::fuzz::default_image_id;
    if (const auto nul = input.find('\0'); nul != std::string_view::npos) {
        expected_id = input.substr(0, nul);
        input.remove_prefix(nul + 1);
    }
    // One parser for the whole run, as a session reuses its own: buffers sized by earlier,
    // larger documents must not leak state into later ones.
    static simdjson::ondemand::parser parser;
    imagegate::fuzz::validate_both_ways(input, expected_id, parser);
    return 0;
}
