// Builds the settings from defaults < TOML file (--config) < environment (IMAGEGATE_*) <
// command-line flags, reads the upstream token, validates, and reports every error at once.
#pragma once

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/settings.hpp"

namespace imagegate::config {

/// One problem with the configuration.
struct config_error {
    /// Where: a key path ("cache.max_bytes"), a flag ("--threads"), an environment variable
    /// ("IMAGEGATE_CACHE_TTL", "CLOUDFLARE_API_TOKEN") or "--config" for the file as a whole.
    std::string key;
    /// What is wrong and, where it helps, how to fix it. Never contains the token.
    std::string reason;

    friend bool operator==(const config_error&, const config_error&) = default;
};

std::ostream& operator<<(std::ostream& os, const config_error& e);

/// Looks up an environment variable; nothing when it is unset. Injected so tests need no
/// setenv().
using env_lookup = std::function<std::optional<std::string>(std::string_view name)>;

/// The process environment through std::getenv (call it before starting threads).
env_lookup process_environment();

/// The command line split into what each later step needs. Values are not parsed yet.
struct command_line {
    /// Set by a flag that maps to a key: (flag as written without "=value", key path, value).
    struct assignment {
        std::string flag;
        std::string key;
        std::string value;
    };

    /// --config FILE
    std::optional<std::string> config_file;
    /// In command-line order; a later assignment of the same key wins.
    std::vector<assignment> assignments;
    /// --help or -h
    bool show_help = false;
    /// --check-config
    bool check_only = false;
    /// --version
    bool show_version = false;
    /// --print-config
    bool print_config = false;
    /// Unknown flags, missing values, stray arguments.
    std::vector<config_error> errors;
};

/// Splits `args` (without argv[0]); accepts `--flag value` and `--flag=value`.
command_line parse_command_line(std::span<const std::string> args);

// The sources, applied in this order by load(). Each sets what it names, leaves the rest of
// `s` alone and reports every problem; a rejected value leaves its field unchanged.

/// TOML text; `origin` names it in messages (a file name). Keys are `[section] key` exactly as
/// in settings.hpp; unknown sections or keys and wrong types are errors, with line:column.
std::vector<config_error> apply_toml(std::string_view text, std::string_view origin, settings& s);

/// Reads `file` (at most 1 MiB) and applies it with apply_toml().
std::vector<config_error> apply_toml_file(const std::filesystem::path& file, settings& s);

/// IMAGEGATE_<SECTION>_<KEY> for every key; values use the flag spelling (booleans
/// true/false/1/0, sizes "64MiB", durations "5s").
std::vector<config_error> apply_env(const env_lookup& env, settings& s);

/// The flag assignments of `cl` (not its config file, help or errors).
std::vector<config_error> apply_flags(const command_line& cl, settings& s);

/// Fills `s.secret.upstream_token`: CLOUDFLARE_API_TOKEN when set and not empty, else the first
/// line (trimmed) of `s.upstream.token_file` when set. The file must be a regular file of at
/// most 64 KiB that neither group nor others may read or write (mode & 077 == 0). An empty
/// token is not an error here. Messages never include the token.
std::vector<config_error> load_token(const env_lookup& env, settings& s);

/// Fills `s.secret.admin_token` from `admin.token_file` (first line, at least 16 visible ASCII
/// characters; the file must be mode 600 or stricter).
std::vector<config_error> load_admin_token(settings& s);

/// Appends the `[[client_keys]]` entries of `auth.keys_file` (a TOML file, mode 600 or
/// stricter) to `s.auth.client_keys`.
std::vector<config_error> load_keys_file(settings& s);

/// Ranges of every key plus the cross-field rules: shards a power of two, max_entry_bytes <=
/// max_bytes, burst <= budget, http:// only with allow_plaintext, distinct listeners,
/// ca_file readable. Keys in errors are key paths.
std::vector<config_error> check(const settings& s);

struct load_result {
    /// Defaults overlaid by every source; meaningful only when `errors` is empty.
    settings value;
    /// Every problem found, in source order (flags' syntax, file, env, flags, token, check).
    std::vector<config_error> errors;
    /// --help was given: print help_text() and exit 0. Nothing else was loaded, and `errors`
    /// holds only command-line mistakes.
    bool show_help = false;
    /// --check-config was given: exit after reporting (0 if `errors` is empty, else 2).
    bool check_only = false;
    /// --version was given: print the version and exit 0; nothing else was loaded.
    bool show_version = false;
    /// --print-config was given: print to_toml(value) and exit 0 (2 with errors).
    bool print_config = false;
};

/// Runs parse_command_line, apply_toml_file, apply_env, apply_flags, load_token,
/// load_keys_file, load_admin_token and check.
/// Never throws: anything thrown inside becomes a config_error.
load_result load(std::span<const std::string> args, const env_lookup& env);

/// Usage: every flag with its meaning and default, and where else settings come from.
std::string help_text();

}  // namespace imagegate::config
