// deploy/imagegate.example.toml must name every key with its default, so it cannot drift
// from settings.hpp.
#include <toml++/toml.h>

#include <boost/test/unit_test.hpp>

#include "config/keys.hpp"
#include "config/load.hpp"
#include "test_support.hpp"

using namespace imagegate::config;
using namespace imagegate::config::test;

namespace {

const std::string example_path = IMAGEGATE_SOURCE_DIR "/deploy/imagegate.example.toml";

}  // namespace

BOOST_AUTO_TEST_SUITE(example_config)

BOOST_AUTO_TEST_CASE(loads_to_the_defaults) {
    const auto r = run({"--config", example_path});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    const settings defaults;
    for (const auto& key : keys()) {
        BOOST_TEST_CONTEXT(key.path()) {
            BOOST_TEST(format_text(key, r.value) == format_text(key, defaults));
        }
    }
    BOOST_TEST((r.value == defaults));
}

BOOST_AUTO_TEST_CASE(names_every_key) {
    const auto root = toml::parse_file(example_path);
    std::size_t count = 0;
    for (const auto& key : keys()) {
        BOOST_TEST(root[key.section][key.name].node() != nullptr, key.path());
    }
    for (const auto& [section, table] : root) {
        count += table.as_table() != nullptr ? table.as_table()->size() : 1;
    }
    BOOST_TEST(count == keys().size());
}

BOOST_AUTO_TEST_CASE(check_config_passes) {
    const auto r = run({"--config", example_path, "--check-config"});
    BOOST_TEST(r.check_only);
    BOOST_TEST(r.errors.empty(), dump(r.errors));
}

BOOST_AUTO_TEST_SUITE_END()
