// Fuzzes warm::parse_page (gateway/warm/page.cpp) with arbitrary listing bodies and checks
// what warming relies on: a refused page yields nothing; every image of a usable page has a
// servable id, its canonical key, and a body that is exactly the detail envelope of a listed
// object and passes validate_image for that id; the token can go back upstream as is; and
// the verdict does not depend on whether the buffer carries simdjson's padding.
#include "fuzz_check.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/page.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace {

using namespace imagegate;

constexpr std::string_view head = R"({"result":)";
constexpr std::string_view tail = R"(,"success":true,"errors":[],"messages":[]})";

void check(const warm::page& p, std::size_t max_items, simdjson::ondemand::parser& parser) {
    if (!p.ok()) {
        FUZZ_CHECK(p.images.empty() && p.invalid == 0 && !p.continuation);
        return;
    }
    FUZZ_CHECK(p.images.size() + p.invalid <= max_items);
    if (p.continuation) {
        FUZZ_CHECK(warm::is_continuation_token(*p.continuation));
    }
    for (const auto& img : p.images) {
        FUZZ_CHECK(gateway::is_servable_image_id(img.id));
        FUZZ_CHECK(img.canonical_id == gateway::percent_encode(img.id));
        const std::string_view body = img.body;
        FUZZ_CHECK(body.starts_with(head) && body.ends_with(tail));
        FUZZ_CHECK(validate::validate_image(body, body.size(), img.id, parser).ok());
    }
}

bool same(const warm::page& a, const warm::page& b) {
    return a.ok() == b.ok() && a.images == b.images && a.invalid == b.invalid &&
           a.continuation == b.continuation;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Pages are bounded by upstream.max_body_bytes; the parser is linear.
    if (size < 1 || size > 256 * 1024) {
        return 0;
    }
    // The first byte picks the page size asked for (1..64), the rest is the body.
    const std::size_t max_items = 1 + data[0] % 64;
    ++data;
    --size;
    static simdjson::ondemand::parser page_parser;
    static simdjson::ondemand::parser item_parser;
    static simdjson::ondemand::parser check_parser;
    // Exactly `size` bytes: the padded-copy path (ASan sees any read past the end).
    auto exact = std::make_unique<char[]>(size == 0 ? 1 : size);
    std::memcpy(exact.get(), data, size);
    const warm::page a = warm::parse_page(std::string_view(exact.get(), size), size, max_items,
                                          page_parser, item_parser);
    check(a, max_items, check_parser);
    // In place, the padding filled with input bytes rather than zeros.
    const std::size_t cap = size + simdjson::SIMDJSON_PADDING;
    auto padded = std::make_unique<char[]>(cap);
    std::memcpy(padded.get(), data, size);
    for (std::size_t i = size; i < cap; ++i) {
        padded[i] = size == 0 ? '{' : static_cast<char>(data[i % size]);
    }
    const warm::page b = warm::parse_page(std::string_view(padded.get(), size), cap, max_items,
                                          page_parser, item_parser);
    FUZZ_CHECK(same(a, b));
    return 0;
}
