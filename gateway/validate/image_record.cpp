#include "gateway/validate/image_record.hpp"

#include "gateway/core/errc.hpp"
#include "gateway/core/log_escape.hpp"

#include <cstring>
#include <iterator>
#include <ostream>
#include <span>

namespace imagegate::validate {
namespace {

namespace ondemand = simdjson::ondemand;

// JSON types a rule accepts, as a bit set.
enum type_bits : std::uint8_t {
    t_null = 1 << 0,
    t_bool = 1 << 1,
    t_string = 1 << 2,
    t_object = 1 << 3,
    t_array = 1 << 4,
    t_integer = 1 << 5,  // a number without fraction or exponent that fits in int64
    t_number = 1 << 6,   // any number (includes integers)
    t_any = 0x7f,
};

// What the checker does with a value besides checking it.
enum class role : std::uint8_t {
    none,        ///< checked only
    image_id,    ///< must equal the expected image id
    draft,       ///< reported as validation::draft
    error_code,  ///< the first one is reported as error_envelope::code (must fit 32 bits)
};

// One schema node. Fields of an object that have no rule are walked as any JSON.
struct rule {
    std::string_view name{};         // member name (empty for array elements)
    std::uint8_t types = t_any;      // accepted JSON types (type_bits)
    bool required = false;           // must be present in its object
    std::size_t max_bytes = 0;       // strings: unescaped bytes; objects: raw JSON; 0 = unbounded
    std::span<const rule> fields{};  // objects: known members (at most 64)
    const rule* items = nullptr;     // arrays: rule for every element; nullptr = any JSON
    std::size_t min_items = 0;       // arrays: fewest elements
    std::optional<bool> must_be{};   // booleans: the only accepted value
    role capture = role::none;
};

// --- The image details answer (upstream-api.md "The call"). ---
constexpr rule any_object{.types = t_object};
constexpr rule string_element{.types = t_string};

constexpr rule image_fields[] = {
    {.name = "id", .types = t_string, .required = true, .capture = role::image_id},
    {.name = "creator", .types = t_string | t_null, .max_bytes = 1024},
    {.name = "filename", .types = t_string, .max_bytes = 255},
    {.name = "meta", .types = t_object, .max_bytes = 1024},
    {.name = "requireSignedURLs", .types = t_bool},
    {.name = "uploaded", .types = t_string},
    {.name = "variants", .types = t_array, .items = &string_element},
    {.name = "draft", .types = t_bool, .capture = role::draft},
};

constexpr rule image_answer_fields[] = {
    {.name = "success", .types = t_bool, .required = true, .must_be = true},
    {.name = "errors", .types = t_array, .required = true, .items = &any_object},
    {.name = "messages", .types = t_array, .required = true},
    {.name = "result", .types = t_object, .required = true, .fields = image_fields},
    {.name = "result_info", .types = t_null | t_object},
};
constexpr rule image_answer{.types = t_object, .fields = image_answer_fields};

// --- The error envelope (upstream-api.md "Errors"). ---
constexpr rule error_item_fields[] = {
    {.name = "code", .types = t_integer, .required = true, .capture = role::error_code},
    {.name = "message", .types = t_string, .required = true},
};
constexpr rule error_item{.types = t_object, .fields = error_item_fields};

constexpr rule error_answer_fields[] = {
    {.name = "success", .types = t_bool, .required = true, .must_be = false},
    {.name = "errors", .types = t_array, .required = true, .items = &error_item, .min_items = 1},
    {.name = "messages", .types = t_array, .required = true},
    {.name = "result", .types = t_null},
};
constexpr rule error_answer{.types = t_object, .fields = error_answer_fields};

violation fail(std::string reason) { return {std::string(), std::move(reason)}; }

violation json_error(simdjson::error_code e) {
    return fail(std::string("invalid JSON: ") + simdjson::error_message(e));
}

std::string describe(std::uint8_t types) {
    static constexpr std::pair<std::uint8_t, std::string_view> names[] = {
        {t_string, "a string"}, {t_integer, "an integer"}, {t_number, "a number"},
        {t_bool, "a boolean"},  {t_object, "an object"},   {t_array, "an array"},
        {t_null, "null"},
    };
    std::string out = "must be ";
    bool first = true;
    for (const auto& [bit, name] : names) {
        if ((types & bit) != 0) {
            out.append(first ? "" : " or ").append(name);
            first = false;
        }
    }
    return out;
}

// Prepends one reference token (RFC 6901 §3: '~' as "~0", '/' as "~1").
void prepend(violation& v, std::string_view token) {
    std::string segment = "/";
    for (const char c : token) {
        if (c == '~') {
            segment += "~0";
        } else if (c == '/') {
            segment += "~1";
        } else {
            segment += c;
        }
    }
    v.pointer.insert(0, segment);
}

bool is_json_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Walks one document against a rule tree, reading every value so that On-Demand validates
// every byte. Stops at the first violation; its pointer is built while unwinding, so the
// success path allocates nothing. One checker per document, on the caller's stack.
class checker {
public:
    explicit checker(std::string_view expected_id) : expected_id_(expected_id) {}

    bool draft() const noexcept { return draft_; }
    std::uint32_t code() const noexcept { return code_.value_or(0); }

    // `r` == nullptr: any JSON value.
    std::optional<violation> check(ondemand::value v, const rule* r, int depth) {
        if (depth > max_depth) {
            return fail("nested deeper than " + std::to_string(max_depth) + " levels");
        }
        const std::uint8_t allowed = r != nullptr ? r->types : std::uint8_t{t_any};
        ondemand::json_type type{};
        if (const auto e = v.type().get(type)) {
            return json_error(e);
        }
        switch (type) {
        case ondemand::json_type::null: return check_null(v, r, allowed);
        case ondemand::json_type::boolean: return check_bool(v, r, allowed);
        case ondemand::json_type::string: return check_string(v, r, allowed);
        case ondemand::json_type::number: return check_number(v, r, allowed);
        case ondemand::json_type::object: {
            if ((allowed & t_object) == 0) {
                return fail(describe(allowed));
            }
            // The object's raw extent runs from its '{' to the token after its '}'.
            const char* start = v.raw_json_token().data();
            ondemand::object obj;
            if (const auto e = v.get_object().get(obj)) {
                return json_error(e);
            }
            if (auto failure = check_object(obj, r, depth)) {
                return failure;
            }
            if (r != nullptr && r->max_bytes != 0) {
                return check_extent(v, start, r->max_bytes);
            }
            return std::nullopt;
        }
        case ondemand::json_type::array: {
            if ((allowed & t_array) == 0) {
                return fail(describe(allowed));
            }
            ondemand::array arr;
            if (const auto e = v.get_array().get(arr)) {
                return json_error(e);
            }
            return check_array(arr, r, depth);
        }
        }
        return fail("unknown JSON type");
    }

    std::optional<violation> check_object(ondemand::object& obj, const rule* r, int depth) {
        const std::span<const rule> known = r != nullptr ? r->fields : std::span<const rule>{};
        std::uint64_t seen = 0;  // bit i: known[i] was present
        for (auto member : obj) {
            ondemand::field field;
            if (const auto e = std::move(member).get(field)) {
                return json_error(e);
            }
            std::string_view name;
            if (const auto e = field.unescaped_key().get(name)) {
                return json_error(e);
            }
            const rule* sub = nullptr;
            for (std::size_t i = 0; i < known.size(); ++i) {
                if (known[i].name == name) {
                    if ((seen & (std::uint64_t{1} << i)) != 0) {
                        violation v = fail("duplicate field");
                        prepend(v, name);
                        return v;
                    }
                    seen |= std::uint64_t{1} << i;
                    sub = &known[i];
                    break;
                }
            }
            if (auto failure = check(field.value(), sub, depth + 1)) {
                prepend(*failure, name);
                return failure;
            }
        }
        for (std::size_t i = 0; i < known.size(); ++i) {
            if (known[i].required && (seen & (std::uint64_t{1} << i)) == 0) {
                violation v = fail("required field missing");
                prepend(v, known[i].name);
                return v;
            }
        }
        return std::nullopt;
    }

private:
    std::optional<violation> check_null(ondemand::value& v, const rule*, std::uint8_t allowed) {
        if ((allowed & t_null) == 0) {
            return fail(describe(allowed));
        }
        bool is_null = false;
        if (const auto e = v.is_null().get(is_null)) {
            return json_error(e);
        }
        if (!is_null) {
            return fail("invalid JSON: bad literal");
        }
        return std::nullopt;
    }

    std::optional<violation> check_bool(ondemand::value& v, const rule* r, std::uint8_t allowed) {
        if ((allowed & t_bool) == 0) {
            return fail(describe(allowed));
        }
        bool b = false;
        if (const auto e = v.get_bool().get(b)) {
            return json_error(e);
        }
        if (r == nullptr) {
            return std::nullopt;
        }
        if (r->must_be && b != *r->must_be) {
            return fail(*r->must_be ? "must be true" : "must be false");
        }
        if (r->capture == role::draft) {
            draft_ = b;
        }
        return std::nullopt;
    }

    std::optional<violation> check_string(ondemand::value& v, const rule* r, std::uint8_t allowed) {
        if ((allowed & t_string) == 0) {
            return fail(describe(allowed));
        }
        std::string_view s;
        if (const auto e = v.get_string().get(s)) {
            return json_error(e);
        }
        if (r == nullptr) {
            return std::nullopt;
        }
        if (r->max_bytes != 0 && s.size() > r->max_bytes) {
            return fail("longer than " + std::to_string(r->max_bytes) + " bytes");
        }
        if (r->capture == role::image_id && s != expected_id_) {
            return fail("does not match the requested image id");
        }
        return std::nullopt;
    }

    std::optional<violation> check_number(ondemand::value& v, const rule* r, std::uint8_t allowed) {
        if ((allowed & t_number) != 0) {
            ondemand::number n;
            if (const auto e = v.get_number().get(n)) {
                return json_error(e);
            }
            return std::nullopt;
        }
        if ((allowed & t_integer) == 0) {
            return fail(describe(allowed));
        }
        std::int64_t i = 0;
        if (const auto e = v.get_int64().get(i)) {
            return e == simdjson::INCORRECT_TYPE || e == simdjson::NUMBER_OUT_OF_RANGE
                       ? fail(describe(allowed))
                       : json_error(e);
        }
        if (r != nullptr && r->capture == role::error_code) {
            if (i < 0 || i > std::int64_t{UINT32_MAX}) {
                return fail("out of range 0..4294967295");
            }
            if (!code_) {
                code_ = static_cast<std::uint32_t>(i);
            }
        }
        return std::nullopt;
    }

    std::optional<violation> check_array(ondemand::array& arr, const rule* r, int depth) {
        const rule* items = r != nullptr ? r->items : nullptr;
        std::size_t index = 0;
        for (auto element : arr) {
            ondemand::value v;
            if (const auto e = element.get(v)) {
                return json_error(e);
            }
            if (auto failure = check(v, items, depth + 1)) {
                prepend(*failure, std::to_string(index));
                return failure;
            }
            ++index;
        }
        if (r != nullptr && index < r->min_items) {
            return fail("needs at least " + std::to_string(r->min_items) + " element(s)");
        }
        return std::nullopt;
    }

    // Called after the object starting at `start` was read to its end. Rules with max_bytes
    // never apply to the top-level value, so a token always follows the object.
    static std::optional<violation> check_extent(ondemand::value& v, const char* start,
                                                 std::size_t max_bytes) {
        const char* end = nullptr;
        if (const auto e = v.current_location().get(end)) {
            return json_error(e);
        }
        while (end > start && is_json_space(end[-1])) {
            --end;
        }
        if (static_cast<std::size_t>(end - start) > max_bytes) {
            return fail("raw JSON longer than " + std::to_string(max_bytes) + " bytes");
        }
        return std::nullopt;
    }

    std::string_view expected_id_;
    bool draft_ = false;
    std::optional<std::uint32_t> code_;
};

// Parses `json` (in place when padded, else from a padded copy) and checks it against the
// top-level rule `root`.
std::optional<violation> check_document(std::string_view json, std::size_t capacity,
                                        simdjson::ondemand::parser& parser, const rule& root,
                                        checker& c) {
    simdjson::padded_string copy;  // used only when the caller's buffer lacks the padding
    simdjson::padded_string_view input(json.data(), json.size(), capacity);
    if (capacity < json.size() || capacity - json.size() < simdjson::SIMDJSON_PADDING) {
        copy = simdjson::padded_string(json);
        input = copy;
    }
    ondemand::document doc;
    if (const auto e = parser.iterate(input).get(doc)) {
        return json_error(e);
    }
    ondemand::json_type type{};
    if (const auto e = doc.type().get(type)) {
        return json_error(e);
    }
    if (type != ondemand::json_type::object) {
        return fail("the top level is not an object");
    }
    ondemand::object obj;
    if (const auto e = doc.get_object().get(obj)) {
        return json_error(e);
    }
    if (auto failure = c.check_object(obj, &root, 1)) {
        return failure;
    }
    // simdjson 3.0.1 has no document::at_end(): current_location() reports OUT_OF_BOUNDS
    // exactly when no token is left.
    const char* rest = nullptr;
    if (doc.current_location().get(rest) != simdjson::OUT_OF_BOUNDS) {
        return fail("content after the top-level object");
    }
    return std::nullopt;
}

boost::system::error_code to_error(const std::optional<violation>& failure) noexcept {
    if (!failure) {
        return {};
    }
    return make_error_code(errc::invalid_upstream_json);
}

}  // namespace

validation validate_image(std::string_view json, std::size_t capacity, std::string_view expected_id,
                          simdjson::ondemand::parser& parser) {
    checker c(expected_id);
    if (auto failure = check_document(json, capacity, parser, image_answer, c)) {
        return {.failure = std::move(failure)};
    }
    return {.draft = c.draft()};
}

error_envelope validate_error_envelope(std::string_view json, std::size_t capacity,
                                       simdjson::ondemand::parser& parser) {
    checker c({});
    if (auto failure = check_document(json, capacity, parser, error_answer, c)) {
        return {.failure = std::move(failure)};
    }
    return {.code = c.code()};
}

boost::system::error_code validation::error() const noexcept { return to_error(failure); }
boost::system::error_code error_envelope::error() const noexcept { return to_error(failure); }

std::ostream& operator<<(std::ostream& os, const violation& v) {
    // The pointer holds the document's member names: escaped like every logged value.
    os << "{pointer=\"";
    escape_to(std::ostreambuf_iterator<char>(os), v.pointer, escape_mode::text);
    return os << "\" reason=\"" << v.reason << "\"}";
}

std::ostream& operator<<(std::ostream& os, const validation& v) {
    if (v.failure) {
        return os << "invalid " << *v.failure;
    }
    return os << "valid{draft=" << (v.draft ? "true" : "false") << '}';
}

std::ostream& operator<<(std::ostream& os, const error_envelope& e) {
    if (e.failure) {
        return os << "invalid " << *e.failure;
    }
    return os << "envelope{code=" << e.code << '}';
}

}  // namespace imagegate::validate
