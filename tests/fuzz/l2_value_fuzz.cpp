// Fuzzes the L2 value decoder (gateway/fleet/l2_codec): whatever bytes a Redis holds under a
// key, decode + check_body either refuse them or yield a record that re-encodes to the same
// bytes, belongs to the key asked for, has ordered windows and a body the validator accepts.
// Input: `ID \0 VALUE`, or VALUE alone for the id "img-1".
#include "fuzz_check.hpp"
#include "gateway/fleet/l2_codec.hpp"
#include "gateway/image/route.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace imagegate;
    if (size > 256 * 1024) {
        return 0;
    }
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string_view id = "img-1";
    if (const auto nul = input.find('\0'); nul != std::string_view::npos && nul < 128) {
        id = input.substr(0, nul);
        input.remove_prefix(nul + 1);
    }
    static const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
    constexpr std::int64_t now_ms = 1'800'000'000'000;
    fleet::l2_record rec;
    const auto why =
        fleet::decode(input, {account, id}, now_ms, {.max_body_bytes = 64 * 1024}, rec);
    if (why != fleet::l2_refusal::none) {
        return 0;
    }
    FUZZ_CHECK(rec.account == account && rec.id == id);
    FUZZ_CHECK(rec.fresh_ms <= rec.swr_ms && rec.swr_ms <= rec.sie_ms);
    FUZZ_CHECK(fleet::remaining_ms(rec, now_ms) > 0);
    FUZZ_CHECK(fleet::encode(rec) == input);
    std::string decoded;
    if (!gateway::percent_decode(id, decoded)) {
        return 0;
    }
    static simdjson::ondemand::parser parser;
    if (fleet::check_body(rec, decoded, parser) == fleet::l2_refusal::none) {
        FUZZ_CHECK(rec.status == (rec.kind == cache::entry_kind::negative ? 404 : 200));
    }
    return 0;
}
