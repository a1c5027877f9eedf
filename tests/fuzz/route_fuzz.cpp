// Fuzzes gateway::route_image with arbitrary request targets and checks the contract the
// cache key relies on: only served target forms are routed, a routed id is bounded, valid
// UTF-8 without control bytes, its canonical form is its percent-encoding, routing the
// canonical form is idempotent, and the form sent upstream routes to the same id.
#include "fuzz_check.hpp"
#include "gateway/core/request_target.hpp"
#include "gateway/image/route.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using namespace imagegate::gateway;

bool has_control_bytes(std::string_view s) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

void check_route(std::string_view target) {
    const route_result r = route_image(target);
    // Only origin-form and absolute-form with a path are routed at all; every other target
    // form is a 400 (gateway/core/request_target.hpp), the listener's verdict too.
    FUZZ_CHECK((r.error == imagegate::errc::bad_request) ==
               !imagegate::is_supported_target(target));
    if (!imagegate::is_supported_target(target)) {
        FUZZ_CHECK(request_path(target).empty());
        return;
    }
    // A routed path starts with '/' and holds no query or fragment: a proxy in front that
    // reads the target per RFC 3986 sees the same path.
    const std::string_view path = request_path(target);
    FUZZ_CHECK(path.starts_with('/'));
    FUZZ_CHECK(path.find_first_of("?#") == std::string_view::npos);
    FUZZ_CHECK(target.ends_with(path) || target.find(std::string(path) + "?") != std::string::npos);
    if (!r.ok()) {
        FUZZ_CHECK(r.error == imagegate::errc::route_not_found ||
                   r.error == imagegate::errc::invalid_account_id ||
                   r.error == imagegate::errc::invalid_image_id);
        return;
    }
    const image_route& img = r.image;
    FUZZ_CHECK(is_account_id(img.account));
    FUZZ_CHECK(!img.image_id.empty());
    FUZZ_CHECK(img.image_id.size() <= max_image_id_bytes);
    FUZZ_CHECK(img.image_id != "." && img.image_id != "..");
    FUZZ_CHECK(is_valid_utf8(img.image_id));
    FUZZ_CHECK(!has_control_bytes(img.image_id));
    FUZZ_CHECK(percent_encode(img.image_id) == img.canonical_id);
    // The canonical id is one path segment: nothing that could split or end a path.
    FUZZ_CHECK(img.canonical_id.find_first_of("/?#") == std::string::npos);

    // What goes upstream is the canonical id, or the raw segments each canonical: routing it
    // gives the same id, and it holds nothing that could end a path.
    FUZZ_CHECK(img.upstream_id.find_first_of("?#") == std::string::npos);
    FUZZ_CHECK(img.upstream_id == img.canonical_id ||
               img.upstream_id.find('/') != std::string::npos);
    const auto same_id = [&img](const route_result& other) {
        return other.ok() && other.image.account == img.account &&
               other.image.image_id == img.image_id && other.image.canonical_id == img.canonical_id;
    };
    const std::string sent = "/accounts/" + img.account + "/images/v1/" + img.upstream_id;
    FUZZ_CHECK(same_id(route_image(sent)));
    FUZZ_CHECK(route_image(sent).image.upstream_id == img.upstream_id);

    // Idempotent canonical form: routing the canonical spelling gives the same route, with
    // and without the /client/v4 prefix.
    const std::string canonical = "/accounts/" + img.account + "/images/v1/" + img.canonical_id;
    const route_result again = route_image(canonical);
    FUZZ_CHECK(same_id(again));
    FUZZ_CHECK(again.image.upstream_id == img.canonical_id);
    const route_result prefixed = route_image("/client/v4" + canonical);
    FUZZ_CHECK(prefixed.ok());
    FUZZ_CHECK(prefixed.image == again.image);
}

void check_percent_coding(std::string_view bytes) {
    // encode → decode gives back any byte string, and the encoding uses only unreserved
    // characters and upper-case escapes.
    const std::string encoded = percent_encode(bytes);
    for (std::size_t i = 0; i < encoded.size(); ++i) {
        const char c = encoded[i];
        if (c == '%') {
            FUZZ_CHECK(i + 2 < encoded.size());
            const auto is_upper_hex = [](char h) {
                return (h >= '0' && h <= '9') || (h >= 'A' && h <= 'F');
            };
            FUZZ_CHECK(is_upper_hex(encoded[i + 1]) && is_upper_hex(encoded[i + 2]));
            i += 2;
        } else {
            FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~');
        }
    }
    std::string decoded;
    FUZZ_CHECK(percent_decode(encoded, decoded));
    FUZZ_CHECK(decoded == bytes);

    // decode → encode → decode is stable on whatever decodes.
    std::string once;
    if (percent_decode(bytes, once)) {
        FUZZ_CHECK(once.size() <= bytes.size());
        std::string twice;
        FUZZ_CHECK(percent_decode(percent_encode(once), twice));
        FUZZ_CHECK(twice == once);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // A request line target is bounded by max_header_bytes (1 MiB at most); ids by 1024
    // bytes. Longer inputs only slow the fuzzer down.
    if (size > 8192) {
        return 0;
    }
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    check_route(input);
    check_percent_coding(input);
    return 0;
}
