// Shared by validator_fuzz and response_fuzz: runs both validators on one body through both
// buffer paths (copy-to-padded and in place) and cross-checks the verdicts with simdjson's
// DOM parser, which validates every byte.
#pragma once

#include "fuzz_check.hpp"
#include "gateway/validate/image_record.hpp"

#include <simdjson.h>

#include <cstring>
#include <memory>
#include <string_view>

namespace imagegate::fuzz {

/// The id the fixtures in tests/data/image_record/ expect when they have no `.id` file.
inline constexpr std::string_view default_image_id = "2cdc28f0-017a-49c4-9ed7-87056c83901";

/// Checks a verdict of "valid" against a full DOM parse: the document must be well-formed
/// JSON and say what the validator reported.
inline void cross_check_image(std::string_view body, std::string_view expected_id,
                              const validate::validation& v) {
    static simdjson::dom::parser dom;
    const simdjson::padded_string copy(body);
    simdjson::dom::element root;
    FUZZ_CHECK(dom.parse(copy).get(root) == simdjson::SUCCESS);
    bool success = false;
    FUZZ_CHECK(root["success"].get(success) == simdjson::SUCCESS && success);
    std::string_view id;
    FUZZ_CHECK(root["result"]["id"].get(id) == simdjson::SUCCESS);
    FUZZ_CHECK(id == expected_id);
    bool draft = false;
    const auto e = root["result"]["draft"].get(draft);
    FUZZ_CHECK(e == simdjson::NO_SUCH_FIELD ? !v.draft
                                            : (e == simdjson::SUCCESS && draft == v.draft));
}

inline void cross_check_envelope(std::string_view body, const validate::error_envelope& env) {
    static simdjson::dom::parser dom;
    const simdjson::padded_string copy(body);
    simdjson::dom::element root;
    FUZZ_CHECK(dom.parse(copy).get(root) == simdjson::SUCCESS);
    bool success = true;
    FUZZ_CHECK(root["success"].get(success) == simdjson::SUCCESS && !success);
    std::int64_t code = -1;
    FUZZ_CHECK(root["errors"].at(0)["code"].get(code) == simdjson::SUCCESS);
    FUZZ_CHECK(code >= 0 && static_cast<std::uint64_t>(code) == env.code);
}

/// Validates `body` as a 200 record for `expected_id` and as an error envelope, each
/// (1) from a heap buffer of exactly body.size() bytes with capacity = size, so the validator
/// must copy into a padded buffer and ASan sees any read past the end, and (2) in place from
/// a buffer of exactly size + SIMDJSON_PADDING bytes whose padding is not zeroed. Both paths
/// must agree.
inline validate::validation validate_both_ways(std::string_view body, std::string_view expected_id,
                                               simdjson::ondemand::parser& parser) {
    const std::size_t size = body.size();
    // new char[0] is a valid, unreadable allocation: an empty body is fuzzed the same way.
    const std::unique_ptr<char[]> exact(new char[size]);
    std::memcpy(exact.get(), body.data(), size);
    const std::string_view exact_view(exact.get(), size);

    const std::size_t padded_capacity = size + simdjson::SIMDJSON_PADDING;
    const std::unique_ptr<char[]> padded(new char[padded_capacity]);
    std::memcpy(padded.get(), body.data(), size);
    // In production the padding is whatever the body string's spare capacity held, possibly
    // bytes of an earlier answer: fill it with the input itself (or a digit) rather than
    // zeros, so the verdict must not depend on it.
    for (std::size_t i = 0; i < simdjson::SIMDJSON_PADDING; ++i) {
        padded[size + i] = size == 0 ? '1' : body[i % size];
    }
    const std::string_view padded_view(padded.get(), size);

    const validate::validation copied =
        validate::validate_image(exact_view, size, expected_id, parser);
    const validate::validation in_place =
        validate::validate_image(padded_view, padded_capacity, expected_id, parser);
    FUZZ_CHECK(copied == in_place);
    FUZZ_CHECK(copied.ok() == !copied.error());

    const validate::error_envelope env_copied =
        validate::validate_error_envelope(exact_view, size, parser);
    const validate::error_envelope env_in_place =
        validate::validate_error_envelope(padded_view, padded_capacity, parser);
    FUZZ_CHECK(env_copied == env_in_place);
    FUZZ_CHECK(env_copied.ok() == !env_copied.error());

    // `success` must be true for one and false for the other.
    FUZZ_CHECK(!(copied.ok() && env_copied.ok()));
    if (copied.ok()) {
        cross_check_image(body, expected_id, copied);
    }
    if (env_copied.ok()) {
        cross_check_envelope(body, env_copied);
    }
    return copied;
}

}  // namespace imagegate::fuzz
