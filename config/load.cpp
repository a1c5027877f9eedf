// load(), the command line, the environment source and --help.
#include "config/load.hpp"

#include <array>
#include <cstdlib>
#include <exception>
#include <ostream>

#include "config/keys.hpp"

namespace imagegate::config {
namespace {

/// One command-line flag. A flag with a `key` sets that key, parsed like its TOML/env value.
struct flag_spec {
    /// "--listen"
    std::string_view name;
    /// What the value is, for --help ("HOST:PORT"); empty for a switch without a value.
    std::string_view metavar;
    /// Key path the value is assigned to; empty for --config and the switches.
    std::string_view key;
    std::string_view help;
    /// Short spelling, if any ("-h").
    std::string_view alias = {};
};

constexpr std::array<flag_spec, 13> flag_table{{
    {"--config", "FILE", "", "TOML file with any of the keys of imagegate.example.toml"},
    {"--listen", "HOST:PORT", "server.listen",
     "address of the image API; port 0 picks a free port"},
    {"--admin-listen", "HOST:PORT", "server.admin_listen",
     "address of /healthz, /readyz, /metrics and cache purge"},
    {"--upstream", "URL", "upstream.url",
     "Cloudflare API base URL; http:// needs upstream.allow_plaintext"},
    {"--upstream-ca", "FILE", "upstream.ca_file",
     "PEM bundle of CAs trusted upstream; empty means the system store"},
    {"--threads", "N", "server.threads", "I/O threads; 0 means one per core"},
    {"--cache-max-bytes", "SIZE", "cache.max_bytes", "memory for cached records (256MiB, 1GB)"},
    {"--ttl", "DURATION", "cache.ttl", "how long a record is fresh (90s, 5m, 1h30m)"},
    {"--log-level", "LEVEL", "log.level", "trace, debug, info, warn, error, critical or off"},
    {"--check-config", "", "", "validate the configuration, print every error and exit"},
    {"--print-config", "", "",
     "print the effective configuration as TOML (tokens shown as <set>/<unset>) and exit"},
    {"--version", "", "", "print the version and exit"},
    {"--help", "", "", "print this help and exit", "-h"},
}};

const flag_spec* find_flag(std::string_view name) {
    for (const auto& flag : flag_table) {
        if (flag.name == name || (!flag.alias.empty() && flag.alias == name)) {
            return &flag;
        }
    }
    return nullptr;
}

void append(std::vector<config_error>& to, std::vector<config_error> from) {
    to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

/// Runs one source, turning anything it throws into an error attributed to `where`.
template <class Source>
void run_source(std::vector<config_error>& errors, std::string_view where, Source&& source) {
    try {
        append(errors, source());
    } catch (const std::exception& e) {
        errors.push_back({std::string(where), std::string("unexpected failure: ") + e.what()});
    } catch (...) {
        errors.push_back({std::string(where), "unexpected failure"});
    }
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const config_error& e) {
    return os << e.key << ": " << e.reason;
}

env_lookup process_environment() {
    return [](std::string_view name) -> std::optional<std::string> {
        // getenv needs a NUL-terminated name.
        if (const char* v = std::getenv(std::string(name).c_str())) {
            return std::string(v);
        }
        return std::nullopt;
    };
}

command_line parse_command_line(std::span<const std::string> args) {
    command_line cl;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        if (!arg.starts_with('-')) {
            cl.errors.push_back({std::string(arg), "unexpected argument; see --help"});
            continue;
        }
        const auto eq = arg.starts_with("--") ? arg.find('=') : std::string_view::npos;
        const auto name = arg.substr(0, eq);
        const auto* flag = find_flag(name);
        if (flag == nullptr) {
            cl.errors.push_back({std::string(name), "unknown flag; see --help"});
            continue;
        }
        if (flag->metavar.empty()) {
            if (eq != std::string_view::npos) {
                cl.errors.push_back({std::string(name), "takes no value"});
            } else if (flag->name == "--help") {
                cl.show_help = true;
            } else if (flag->name == "--version") {
                cl.show_version = true;
            } else if (flag->name == "--print-config") {
                cl.print_config = true;
            } else {
                cl.check_only = true;
            }
            continue;
        }
        std::string value;
        if (eq != std::string_view::npos) {
            value = std::string(arg.substr(eq + 1));
        } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
            value = args[++i];
        } else {
            cl.errors.push_back({std::string(name), "missing value " + std::string(flag->metavar)});
            continue;
        }
        if (flag->key.empty()) {
            cl.config_file = std::move(value);
        } else {
            cl.assignments.push_back({std::string(name), std::string(flag->key), std::move(value)});
        }
    }
    return cl;
}

std::vector<config_error> apply_env(const env_lookup& env, settings& s) {
    std::vector<config_error> errors;
    for (const auto& key : keys()) {
        const auto name = key.env_name();
        if (const auto text = env(name)) {
            if (auto reason = assign_text(key, *text, s)) {
                errors.push_back({name, std::move(*reason)});
            }
        }
    }
    return errors;
}

std::vector<config_error> apply_flags(const command_line& cl, settings& s) {
    std::vector<config_error> errors;
    for (const auto& a : cl.assignments) {
        const auto* key = find_key(a.key);
        if (key == nullptr) {
            errors.push_back({a.flag, "maps to unknown key " + a.key});
        } else if (auto reason = assign_text(*key, a.value, s)) {
            errors.push_back({a.flag, std::move(*reason)});
        }
    }
    return errors;
}

load_result load(std::span<const std::string> args, const env_lookup& env) {
    load_result out;
    command_line cl;
    run_source(out.errors, "command line", [&] {
        cl = parse_command_line(args);
        return std::move(cl.errors);
    });
    out.show_help = cl.show_help;
    out.show_version = cl.show_version;
    out.check_only = cl.check_only;
    out.print_config = cl.print_config;
    if (out.show_help || out.show_version) {
        return out;
    }
    if (cl.config_file) {
        run_source(out.errors, "--config",
                   [&] { return apply_toml_file(*cl.config_file, out.value); });
    }
    run_source(out.errors, "environment", [&] { return apply_env(env, out.value); });
    run_source(out.errors, "command line", [&] { return apply_flags(cl, out.value); });
    run_source(out.errors, "upstream.token_file", [&] { return load_token(env, out.value); });
    run_source(out.errors, "auth.keys_file", [&] { return load_keys_file(out.value); });
    run_source(out.errors, "admin.token_file", [&] { return load_admin_token(out.value); });
    run_source(out.errors, "check", [&] { return check(out.value); });
    return out;
}

std::string help_text() {
    const settings defaults;
    std::string out =
        "Usage: imagegate [OPTIONS]\n"
        "\n"
        "Caching gateway for the Cloudflare Images API.\n"
        "\n"
        "Options (--flag VALUE or --flag=VALUE):\n";
    constexpr std::size_t column = 30;
    for (const auto& flag : flag_table) {
        std::string left = "  ";
        if (!flag.alias.empty()) {
            left += std::string(flag.alias) + ", ";
        }
        left += flag.name;
        if (!flag.metavar.empty()) {
            left += ' ';
            left += flag.metavar;
        }
        left.resize(std::max(left.size() + 1, column), ' ');
        out += left;
        out += flag.help;
        out += '\n';
        if (const auto* key = find_key(flag.key)) {
            const auto value = format_text(*key, defaults);
            out += std::string(column, ' ') + "(" + std::string(flag.key) +
                   ", default: " + (value.empty() ? std::string("none") : value) + ")\n";
        }
    }
    out +=
        "\n"
        "Precedence: defaults < --config file < environment < flags. Every key of the file\n"
        "can also be set as IMAGEGATE_<SECTION>_<KEY>, e.g. IMAGEGATE_CACHE_MAX_BYTES=64MiB.\n"
        "Sizes: 1024, 64KiB, 256MiB, 1GiB (binary) or 64KB, 1MB (decimal).\n"
        "Durations: 1500ms, 5s, 5m, 24h, 1h30m.\n"
        "\n"
        "The upstream API token is read from CLOUDFLARE_API_TOKEN or else from the first line\n"
        "of upstream.token_file (which must be mode 600 or stricter). It cannot be given as a\n"
        "flag, because flags are visible to every user in `ps`.\n"
        "\n"
        "Exit status: 0 on success, 2 on configuration errors (all are printed).\n";
    return out;
}

}  // namespace imagegate::config
