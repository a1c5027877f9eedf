#include "gateway/fleet/l2_codec.hpp"

#include "gateway/validate/image_record.hpp"

#include <simdjson.h>

#include <algorithm>
#include <chrono>

namespace imagegate::fleet {
namespace {

constexpr std::string_view magic = "IGL2";
constexpr std::size_t max_account_bytes = 64;
constexpr std::size_t max_id_bytes = 3 * 1024;  // 1024 decoded bytes, percent-encoded

template <class T>
void put(std::string& out, T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) {
        out.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
    }
}

template <class T>
T get(std::string_view in, std::size_t at) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
        v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
    }
    return static_cast<T>(v);
}

bool status_fits(cache::entry_kind k, std::uint16_t status) {
    return k == cache::entry_kind::negative ? status == 404 : status == 200;
}

}  // namespace

std::string_view to_string(l2_refusal r) noexcept {
    switch (r) {
    case l2_refusal::none: return "none";
    case l2_refusal::truncated: return "truncated";
    case l2_refusal::bad_magic: return "bad_magic";
    case l2_refusal::future_version: return "future_version";
    case l2_refusal::bad_kind: return "bad_kind";
    case l2_refusal::too_large: return "too_large";
    case l2_refusal::key_mismatch: return "key_mismatch";
    case l2_refusal::bad_windows: return "bad_windows";
    case l2_refusal::from_future: return "from_future";
    case l2_refusal::expired: return "expired";
    case l2_refusal::invalid_body: return "invalid_body";
    }
    return "unknown";
}

std::string encode(const l2_record& r) {
    std::string out;
    out.reserve(l2_header_bytes + r.account.size() + r.id.size() + r.body.size());
    out += magic;
    put<std::uint8_t>(out, l2_version);
    put<std::uint8_t>(out, static_cast<std::uint8_t>(r.kind));
    put<std::uint16_t>(out, r.status);
    put<std::uint64_t>(out, static_cast<std::uint64_t>(r.stored_ms));
    put<std::uint32_t>(out, r.fresh_ms);
    put<std::uint32_t>(out, r.swr_ms);
    put<std::uint32_t>(out, r.sie_ms);
    put<std::uint16_t>(out, static_cast<std::uint16_t>(r.account.size()));
    put<std::uint16_t>(out, static_cast<std::uint16_t>(r.id.size()));
    put<std::uint32_t>(out, static_cast<std::uint32_t>(r.body.size()));
    out += r.account;
    out += r.id;
    out += r.body;
    return out;
}

l2_refusal decode(std::string_view in, cache::key_view expected, std::int64_t now_ms,
                  const l2_limits& limits, l2_record& out) {
    if (in.size() < l2_header_bytes) {
        return l2_refusal::truncated;
    }
    if (in.substr(0, magic.size()) != magic) {
        return l2_refusal::bad_magic;
    }
    if (get<std::uint8_t>(in, 4) != l2_version) {
        return l2_refusal::future_version;
    }
    const auto kind = get<std::uint8_t>(in, 5);
    if (kind > static_cast<std::uint8_t>(cache::entry_kind::draft)) {
        return l2_refusal::bad_kind;
    }
    out.kind = static_cast<cache::entry_kind>(kind);
    out.status = get<std::uint16_t>(in, 6);
    if (!status_fits(out.kind, out.status)) {
        return l2_refusal::bad_kind;
    }
    out.stored_ms = static_cast<std::int64_t>(get<std::uint64_t>(in, 8));
    out.fresh_ms = get<std::uint32_t>(in, 16);
    out.swr_ms = get<std::uint32_t>(in, 20);
    out.sie_ms = get<std::uint32_t>(in, 24);
    const std::size_t account_size = get<std::uint16_t>(in, 28);
    const std::size_t id_size = get<std::uint16_t>(in, 30);
    const std::size_t body_size = get<std::uint32_t>(in, 32);
    if (account_size > max_account_bytes || id_size > max_id_bytes ||
        body_size > limits.max_body_bytes) {
        return l2_refusal::too_large;
    }
    if (in.size() != l2_header_bytes + account_size + id_size + body_size) {
        return l2_refusal::truncated;
    }
    const std::string_view account = in.substr(l2_header_bytes, account_size);
    const std::string_view id = in.substr(l2_header_bytes + account_size, id_size);
    if (account != expected.account() || id != expected.image_id()) {
        return l2_refusal::key_mismatch;
    }
    if (out.fresh_ms > out.swr_ms || out.swr_ms > out.sie_ms || out.sie_ms == 0 ||
        out.stored_ms < 0) {
        return l2_refusal::bad_windows;
    }
    if (out.stored_ms > now_ms + limits.max_clock_skew_ms) {
        return l2_refusal::from_future;
    }
    if (remaining_ms(out, now_ms) <= 0) {
        return l2_refusal::expired;
    }
    out.account.assign(account);
    out.id.assign(id);
    out.body.assign(in.substr(l2_header_bytes + account_size + id_size));
    return l2_refusal::none;
}

l2_refusal check_body(const l2_record& r, std::string_view image_id,
                      simdjson::ondemand::parser& parser) {
    if (r.kind == cache::entry_kind::negative) {
        const auto env = validate::validate_error_envelope(r.body, r.body.capacity(), parser);
        return env.ok() && env.code == 5404 ? l2_refusal::none : l2_refusal::invalid_body;
    }
    const auto v = validate::validate_image(r.body, r.body.capacity(), image_id, parser);
    if (!v.ok() || v.draft != (r.kind == cache::entry_kind::draft)) {
        return l2_refusal::invalid_body;
    }
    return l2_refusal::none;
}

std::int64_t remaining_ms(const l2_record& r, std::int64_t now_ms) noexcept {
    return r.stored_ms + static_cast<std::int64_t>(r.sie_ms) - now_ms;
}

}  // namespace imagegate::fleet
