// Shared helpers of unit_validate: reading fixture files and calling the validators with
// a correctly padded buffer.
#pragma once

#include "gateway/validate/image_record.hpp"

#include <filesystem>
#include <string>
#include <string_view>

namespace imagegate::validate::test {

inline const std::filesystem::path fixture_root =
    std::filesystem::path(IMAGEGATE_SOURCE_DIR) / "tests" / "data" / "image_record";

/// The id every fixture is checked against unless it has a companion `.id` file.
inline constexpr std::string_view default_id = "2cdc28f0-017a-49c4-9ed7-87056c83901";

/// The whole file, reserved with SIMDJSON_PADDING spare bytes as the gateway does.
std::string read_padded(const std::filesystem::path& file);

/// The expected id for `json_file`: its `.id` companion if present, else default_id.
std::string expected_id_for(const std::filesystem::path& json_file);

/// Validates `body` in place (its capacity is passed as is).
validation validate(const std::string& body, std::string_view id);
error_envelope validate_envelope(const std::string& body);

}  // namespace imagegate::validate::test
