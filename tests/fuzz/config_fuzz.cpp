// Fuzzes the TOML configuration source: config::apply_toml() then config::check() must never
// throw or crash, and what they accept must survive the round trips the rest of the program
// relies on: every stored value passes its key's validation, the env/flag spelling
// (format_text) reads back to the same value, and the TOML spelling (format_toml, used by
// the startup log and the example file) parses back to the same settings.
#include "config/keys.hpp"
#include "config/load.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace {

using namespace imagegate::config;

bool same_keys(const settings& a, const settings& b) {
    for (const auto& key : keys()) {
        if (read(key, a) != read(key, b)) {
            std::fprintf(stderr, "key %s differs\n", key.path().c_str());
            return false;
        }
    }
    return true;
}

void check_errors(const std::vector<config_error>& errors) {
    for (const auto& e : errors) {
        FUZZ_CHECK(!e.key.empty());
        FUZZ_CHECK(!e.reason.empty());
    }
}

void run(std::string_view text) {
    settings s;
    const auto errors = apply_toml(text, "fuzz", s);
    check_errors(errors);

    std::string rendered;
    for (const auto& key : keys()) {
        // Sources store only values that pass validation; defaults pass it too.
        FUZZ_CHECK(!validate(key, read(key, s)));
        // Environment/flag spelling round trip.
        settings t = s;
        FUZZ_CHECK(!assign_text(key, format_text(key, s), t));
        FUZZ_CHECK(t == s);
        rendered += key.path() + " = " + format_toml(key, s) + '\n';
    }
    // TOML spelling round trip, from the defaults.
    settings u;
    const auto reparse_errors = apply_toml(rendered, "rendered", u);
    if (!reparse_errors.empty()) {
        std::fprintf(stderr, "rendered TOML rejected: %s: %s\n---\n%s---\n",
                     reparse_errors.front().key.c_str(), reparse_errors.front().reason.c_str(),
                     rendered.c_str());
    }
    FUZZ_CHECK(reparse_errors.empty());
    FUZZ_CHECK(same_keys(s, u));

    // check() reads upstream.ca_file from disk and looks at warm.state_file's directory. A
    // fuzzer-chosen path would make runs depend on the machine (and could name a FIFO that
    // blocks open()), so those rules are left out.
    s.upstream.ca_file.clear();
    s.warm.state_file.clear();
    check_errors(check(s));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Config files are capped at 1 MiB; real ones are a few KiB.
    if (size > 64 * 1024) {
        return 0;
    }
    try {
        run(std::string_view(reinterpret_cast<const char*>(data), size));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "exception escaped: %s\n", e.what());
        std::abort();
    } catch (...) {
        std::fprintf(stderr, "non-standard exception escaped\n");
        std::abort();
    }
    return 0;
}
