// apply_toml() and apply_toml_file(): the `--config FILE` source.
#include <toml++/toml.h>

#include <algorithm>

#include "config/files.hpp"
#include "config/keys.hpp"
#include "config/load.hpp"

namespace imagegate::config {
namespace {

/// Config files are a few KiB; the cap keeps a wrong path (a log, a disk image) harmless.
constexpr std::uint64_t max_config_file_bytes = 1 * mib;

std::string where(std::string_view origin, const toml::source_region& region) {
    return std::string(origin) + ':' + std::to_string(region.begin.line) + ':' +
           std::to_string(region.begin.column);
}

std::string_view type_name(const toml::node& node) {
    switch (node.type()) {
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        default:
            return "a date or time";
    }
}

bool is_section(std::string_view name) {
    const auto all = keys();
    return std::any_of(all.begin(), all.end(),
                       [&](const key_spec& key) { return key.section == name; });
}

/// Converts a TOML node by the key's kind and assigns it; returns the reason on failure.
std::optional<std::string> assign_node(const key_spec& key, const toml::node& node, settings& s) {
    const auto wrong_type = [&] {
        return "expected " + std::string(expected(key.kind)) + ", got " +
               std::string(type_name(node));
    };
    const auto from_integer = [&]() -> std::optional<std::string> {
        const auto n = node.as_integer()->get();
        if (n < 0) {
            return "must not be negative";
        }
        return assign(key, key_value(static_cast<std::uint64_t>(n)), s);
    };
    const auto from_string = [&]() -> std::optional<std::string> {
        return assign_text(key, node.as_string()->get(), s);
    };
    switch (key.kind) {
        case value_kind::count:
            return node.is_integer() ? from_integer() : wrong_type();
        case value_kind::size:
            // Sizes may be written either way: 1048576 or "1MiB".
            if (node.is_integer()) {
                return from_integer();
            }
            return node.is_string() ? from_string() : wrong_type();
        case value_kind::boolean:
            return node.is_boolean() ? assign(key, key_value(node.as_boolean()->get()), s)
                                     : wrong_type();
        default:
            // Durations too: a bare integer would leave the unit to guesswork.
            return node.is_string() ? from_string() : wrong_type();
    }
}

}  // namespace

std::vector<config_error> apply_toml(std::string_view text, std::string_view origin, settings& s) {
    toml::table root;
    try {
        root = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        return {{"--config", where(origin, e.source()) + ": " + std::string(e.description())}};
    }
    // toml++ iterates tables in key order; report in file order instead.
    std::vector<std::pair<toml::source_position, config_error>> found;
    const auto report = [&](const toml::source_region& at, std::string key, std::string reason) {
        found.push_back(
            {at.begin, {std::move(key), std::move(reason) + " at " + where(origin, at)}});
    };
    for (const auto& [section_name, section_node] : root) {
        const std::string section(section_name.str());
        const auto* table = section_node.as_table();
        if (table == nullptr) {
            report(section_name.source(), section,
                   "unknown top-level key; keys belong in a [section]");
            continue;
        }
        if (!is_section(section)) {
            report(section_name.source(), section, "unknown section [" + section + "]");
            continue;
        }
        for (const auto& [name, node] : *table) {
            auto path = section + '.' + std::string(name.str());
            const auto* key = find_key(path);
            if (key == nullptr) {
                report(name.source(), std::move(path), "unknown key in [" + section + "]");
            } else if (auto reason = assign_node(*key, node, s)) {
                report(node.source(), std::move(path), std::move(*reason));
            }
        }
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<config_error> errors;
    for (auto& f : found) {
        errors.push_back(std::move(f.second));
    }
    return errors;
}

std::vector<config_error> apply_toml_file(const std::filesystem::path& file, settings& s) {
    const auto read = read_regular_file(file.string(), max_config_file_bytes);
    if (!read.error.empty()) {
        return {{"--config", read.error}};
    }
    return apply_toml(read.text, file.string(), s);
}

}  // namespace imagegate::config
