// The one declarative table of configuration keys: section, name, value kind, bounds and the
// settings field each fills. TOML, environment, flags, check(), describe() and --help all
// read it, so adding a key is one row in keys.cpp.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/settings.hpp"

namespace imagegate::config {

/// How a key's value is spelled and checked.
enum class value_kind {
    text,        ///< any string, e.g. a file path; empty allowed
    host_port,   ///< HOST:PORT (parse_host_port)
    url,         ///< upstream base URL (parse_upstream_url)
    log_level,   ///< trace, debug, info, warn, error, critical, off
    log_format,  ///< text or json
    count,       ///< non-negative integer
    size,        ///< byte count: "256MiB", "64KB" or a non-negative integer
    interval,    ///< duration: "1500ms", "5s", "1h30m" (always a string in TOML)
    boolean,     ///< TOML true/false; env and flags also 1/0
    methods,     ///< HTTP methods from a fixed list: a TOML array, env and flags "GET,HEAD"
};

/// Read and write access to one settings field of type T.
template <class T>
struct field_access {
    T& (*get)(settings&);
    const T& (*get_const)(const settings&);
};

/// The field a key fills; the alternative says its C++ type.
using field_ref = std::variant<field_access<std::string>, field_access<std::uint64_t>,
                               field_access<std::uint32_t>, field_access<duration>,
                               field_access<bool>, field_access<std::vector<std::string>>>;

/// A key's value as read from a source or a settings object, before bounds are checked.
using key_value =
    std::variant<std::string, std::uint64_t, duration, bool, std::vector<std::string>>;

/// One row of the key table.
struct key_spec {
    /// TOML table, e.g. "cache"; the member of `settings` with the same name.
    std::string_view section;
    /// TOML key, e.g. "max_bytes"; the field with the same name.
    std::string_view name;
    value_kind kind = value_kind::text;
    field_ref field;
    /// Inclusive bounds of count and size keys (bytes) and duration keys (milliseconds); of
    /// list keys, the number of items.
    std::uint64_t min = 0;
    std::uint64_t max = std::numeric_limits<std::uint64_t>::max();

    /// "cache.max_bytes": the key's name in errors and describe().
    std::string path() const;
    /// "IMAGEGATE_CACHE_MAX_BYTES".
    std::string env_name() const;
};

/// Every key, in settings.hpp order.
std::span<const key_spec> keys();

/// The row for "section.name", or nullptr.
const key_spec* find_key(std::string_view path);

/// How a value of this kind is written, for error messages ("a duration like \"5s\"").
std::string_view expected(value_kind kind);

/// Parses the environment/flag spelling of a value of the key's kind.
std::optional<key_value> parse_text(const key_spec& key, std::string_view text);

/// Checks `v` against the key's kind and bounds and stores it. Returns the reason when `v` is
/// rejected; `s` is then unchanged.
std::optional<std::string> assign(const key_spec& key, const key_value& v, settings& s);

/// parse_text() then assign(); the reason names what was expected.
std::optional<std::string> assign_text(const key_spec& key, std::string_view text, settings& s);

/// The key's current value in `s`.
key_value read(const key_spec& key, const settings& s);

/// Checks a value against the key's kind and bounds; returns the reason when it is invalid.
std::optional<std::string> validate(const key_spec& key, const key_value& v);

/// The key's value in `s` in the environment/flag spelling ("5m", "256MiB", "true").
std::string format_text(const key_spec& key, const settings& s);

/// The key's value in `s` as TOML: strings, durations and sizes quoted ("\"5m\"",
/// "\"256MiB\""), counts and booleans bare, lists as arrays ("[\"GET\", \"HEAD\"]").
std::string format_toml(const key_spec& key, const settings& s);

}  // namespace imagegate::config
