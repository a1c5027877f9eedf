#include "gateway/warm/page.hpp"

#include "gateway/image/route.hpp"

#include <algorithm>

namespace imagegate::warm {
namespace {

namespace ondemand = simdjson::ondemand;

// The tail every detail answer ends with (upstream-api.md "The call").
constexpr std::string_view envelope_head = R"({"result":)";
constexpr std::string_view envelope_tail = R"(,"success":true,"errors":[],"messages":[]})";

// `json` in place when its buffer has simdjson's padding, else copied into `copy`.
simdjson::padded_string_view padded(std::string_view json, std::size_t capacity,
                                    simdjson::padded_string& copy) {
    if (capacity < json.size() || capacity - json.size() < simdjson::SIMDJSON_PADDING) {
        copy = simdjson::padded_string(json);
        return copy;
    }
    return simdjson::padded_string_view(json.data(), json.size(), capacity);
}

validate::violation violation(std::string pointer, std::string reason) {
    return {.pointer = std::move(pointer), .reason = std::move(reason)};
}

validate::violation json_error(std::string pointer, simdjson::error_code e) {
    return violation(std::move(pointer),
                     std::string("not valid JSON: ") + simdjson::error_message(e));
}

// result.id of a detail envelope, unescaped; empty when absent or not a string.
std::string id_of(const std::string& envelope, ondemand::parser& parser) {
    ondemand::document doc;
    std::string_view id;
    if (parser.iterate(envelope.data(), envelope.size(), envelope.capacity()).get(doc) ||
        doc["result"]["id"].get_string().get(id)) {
        return {};
    }
    return std::string(id);
}

// One listed item: counted invalid, or appended as the detail answer it becomes.
void take_item(std::string_view image_json, ondemand::parser& item_parser, page& out) {
    std::string body = detail_envelope(image_json);
    std::string id = id_of(body, item_parser);
    if (id.empty() || !gateway::is_servable_image_id(id)) {
        ++out.invalid;
        return;
    }
    const auto v = validate::validate_image(body, body.capacity(), id, item_parser);
    if (!v.ok()) {
        ++out.invalid;
        return;
    }
    std::string canonical = gateway::percent_encode(id);
    out.images.push_back({.id = std::move(id),
                          .canonical_id = std::move(canonical),
                          .body = std::move(body),
                          .draft = v.draft});
}

// `result`: the images (each checked) and the continuation token.
std::optional<validate::violation> read_result(ondemand::object result, std::size_t max_items,
                                               ondemand::parser& item_parser, page& out) {
    bool images_seen = false;
    bool token_seen = false;
    for (auto field : result) {
        std::string_view key;
        if (const auto e = field.unescaped_key().get(key)) {
            return json_error("/result", e);
        }
        if (key == "images") {
            if (images_seen) {
                return violation("/result/images", "appears twice");
            }
            images_seen = true;
            ondemand::array images;
            if (const auto e = field.value().get_array().get(images)) {
                return json_error("/result/images", e);
            }
            std::size_t n = 0;
            for (auto item : images) {
                ondemand::value v;
                if (const auto e = item.get(v)) {
                    return json_error("/result/images", e);
                }
                if (++n > max_items) {
                    return violation("/result/images",
                                     "more than the " + std::to_string(max_items) + " asked for");
                }
                ondemand::json_type type{};
                if (const auto e = v.type().get(type)) {
                    return json_error("/result/images", e);
                }
                if (type != ondemand::json_type::object) {
                    ++out.invalid;  // skipped by the array's iteration
                    continue;
                }
                std::string_view raw;
                ondemand::object obj;
                if (const auto e = v.get_object().get(obj)) {
                    return json_error("/result/images", e);
                }
                if (const auto e = obj.raw_json().get(raw)) {
                    return json_error("/result/images", e);
                }
                take_item(raw, item_parser, out);
            }
        } else if (key == "continuation_token") {
            if (token_seen) {
                return violation("/result/continuation_token", "appears twice");
            }
            token_seen = true;
            ondemand::value v;
            if (const auto e = field.value().get(v)) {
                return json_error("/result/continuation_token", e);
            }
            bool is_null = false;
            if (const auto e = v.is_null().get(is_null)) {
                return json_error("/result/continuation_token", e);
            }
            if (is_null) {
                continue;
            }
            std::string_view token;
            if (v.get_string().get(token) || !is_continuation_token(token)) {
                return violation(
                    "/result/continuation_token",
                    "not null or 1.." + std::to_string(max_token_bytes) + " unreserved characters");
            }
            out.continuation = std::string(token);
        }
    }
    if (!images_seen) {
        return violation("/result/images", "missing");
    }
    return std::nullopt;
}

std::optional<validate::violation> read_page(std::string_view json, std::size_t capacity,
                                             std::size_t max_items, ondemand::parser& page_parser,
                                             ondemand::parser& item_parser, page& out) {
    simdjson::padded_string copy;
    const auto input = padded(json, capacity, copy);
    ondemand::document doc;
    ondemand::object root;
    if (const auto e = page_parser.iterate(input).get(doc)) {
        return json_error("", e);
    }
    if (const auto e = doc.get_object().get(root)) {
        return json_error("", e);
    }
    bool success = false;
    bool result_seen = false;
    for (auto field : root) {
        std::string_view key;
        if (const auto e = field.unescaped_key().get(key)) {
            return json_error("", e);
        }
        if (key == "success") {
            if (field.value().get_bool().get(success) || !success) {
                return violation("/success", "not true");
            }
        } else if (key == "result") {
            if (result_seen) {
                return violation("/result", "appears twice");
            }
            result_seen = true;
            ondemand::object result;
            if (const auto e = field.value().get_object().get(result)) {
                return json_error("/result", e);
            }
            if (auto failure = read_result(result, max_items, item_parser, out)) {
                return failure;
            }
        }
    }
    if (!success) {
        return violation("/success", "missing");
    }
    if (!result_seen) {
        return violation("/result", "missing");
    }
    // simdjson 3.0.1 has no document::at_end(): current_location() reports OUT_OF_BOUNDS
    // exactly when no token is left.
    const char* rest = nullptr;
    if (doc.current_location().get(rest) != simdjson::OUT_OF_BOUNDS) {
        return violation("", "content after the top-level object");
    }
    return std::nullopt;
}

}  // namespace

bool is_continuation_token(std::string_view t) noexcept {
    return !t.empty() && t.size() <= max_token_bytes && std::all_of(t.begin(), t.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
    });
}

std::string detail_envelope(std::string_view image_json) {
    std::string body;
    // Padded for simdjson, so the checks parse it in place.
    body.reserve(envelope_head.size() + image_json.size() + envelope_tail.size() +
                 simdjson::SIMDJSON_PADDING);
    body += envelope_head;
    body += image_json;
    body += envelope_tail;
    return body;
}

std::optional<std::uint64_t> parse_image_count(std::string_view json, std::size_t capacity,
                                               ondemand::parser& parser) {
    simdjson::padded_string copy;
    const auto input = padded(json, capacity, copy);
    ondemand::document doc;
    std::uint64_t n = 0;
    if (parser.iterate(input).get(doc) || doc["result"]["count"]["current"].get_uint64().get(n) ||
        n > 1'000'000'000'000ULL) {
        return std::nullopt;
    }
    return n;
}

page parse_page(std::string_view json, std::size_t capacity, std::size_t max_items,
                ondemand::parser& page_parser, ondemand::parser& item_parser) {
    page out;
    if (auto failure = read_page(json, capacity, max_items, page_parser, item_parser, out)) {
        // Nothing of a broken page is used, not even the items read before the break.
        page failed;
        failed.failure = std::move(failure);
        return failed;
    }
    return out;
}

}  // namespace imagegate::warm
