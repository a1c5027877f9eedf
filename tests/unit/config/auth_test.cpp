// [auth] and [admin]: client keys from the config and from a keys file, the admin token,
// and the refusal to serve anonymously on a non-loopback address.
#include <boost/test/unit_test.hpp>

#include "config/load.hpp"
#include "tests/unit/config/temp_dir.hpp"
#include "tests/unit/config/test_support.hpp"

namespace fs = std::filesystem;
using namespace imagegate::config;
using namespace imagegate::config::test;

namespace {

const std::string hash_a(64, 'a');
const std::string hash_b = std::string(63, 'b') + "B";  // upper case is accepted, lowered
const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";

}  // namespace

BOOST_AUTO_TEST_SUITE(auth)

BOOST_AUTO_TEST_CASE(client_keys_from_the_config_file) {
    const temp_dir dir;
    const auto file =
        dir.write("c.toml", "[[auth.client_keys]]\nsha256 = \"" + hash_a + "\"\naccounts = [\"" +
                                account + "\"]\n[[auth.client_keys]]\nsha256 = \"" + hash_b +
                                "\"\naccounts = [\"*\"]\n");
    const auto r = run({"--config", file});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST_REQUIRE(r.value.auth.client_keys.size() == 2u);
    BOOST_TEST(r.value.auth.client_keys[0].sha256 == hash_a);
    BOOST_TEST(r.value.auth.client_keys[0].accounts == std::vector<std::string>{account});
    BOOST_TEST(r.value.auth.client_keys[1].sha256 == std::string(64, 'b'));
}

BOOST_AUTO_TEST_CASE(bad_client_keys_are_reported_each) {
    const temp_dir dir;
    const auto file =
        dir.write("c.toml",
                  "[[auth.client_keys]]\nsha256 = \"xyz\"\naccounts = [\"nope\"]\nextra = 1\n"
                  "[[auth.client_keys]]\nsha256 = \"" +
                      hash_a + "\"\n");
    const auto r = run({"--config", file});
    BOOST_TEST(find_error(r.errors, "auth.client_keys.sha256") != nullptr, dump(r.errors));
    BOOST_TEST(find_error(r.errors, "auth.client_keys.accounts") != nullptr, dump(r.errors));
    BOOST_TEST(find_error(r.errors, "auth.client_keys.extra") != nullptr, dump(r.errors));
    BOOST_TEST(find_error(r.errors, "auth.client_keys") != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_CASE(keys_file_is_read_and_must_be_private) {
    const temp_dir dir;
    const std::string body = "[[client_keys]]\nsha256 = \"" + hash_a + "\"\naccounts = [\"*\"]\n";
    const auto good = dir.write("keys.toml", body);
    auto r = run({}, {{"IMAGEGATE_AUTH_KEYS_FILE", good}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.auth.client_keys.size() == 1u);

    const auto open = dir.write(
        "open.toml", body, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
    r = run({}, {{"IMAGEGATE_AUTH_KEYS_FILE", open}});
    const auto* e = find_error(r.errors, "auth.keys_file");
    BOOST_TEST_REQUIRE(e != nullptr);
    BOOST_TEST(e->reason.find("chmod 600") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(admin_token_is_read_never_shown) {
    const temp_dir dir;
    const std::string token = "admin-token-0123456789abcdef";
    const auto file = dir.write("admin", token + "\n");
    auto r = run({}, {{"IMAGEGATE_ADMIN_TOKEN_FILE", file}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.secret.admin_token == token);
    BOOST_TEST(describe(r.value).find(token) == std::string::npos);
    BOOST_TEST(describe(r.value).find("admin.token = <set>") != std::string::npos);

    const auto short_one = dir.write("short", "tiny\n");
    r = run({}, {{"IMAGEGATE_ADMIN_TOKEN_FILE", short_one}});
    BOOST_TEST(find_error(r.errors, "admin.token_file") != nullptr);
    BOOST_TEST(dump(r.errors).find("tiny") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(anonymous_on_a_public_address_needs_consent) {
    auto r = run({"--listen", "0.0.0.0:8080"});
    BOOST_TEST(find_error(r.errors, "auth.allow_anonymous") != nullptr, dump(r.errors));
    r = run({"--listen", "0.0.0.0:8080"}, {{"IMAGEGATE_AUTH_ALLOW_ANONYMOUS", "true"}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    r = run({"--listen", "[::1]:8080"});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    r = run({"--listen", "127.9.9.9:8080"});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    r = run({"--listen", "127.example.com:8080"});
    BOOST_TEST(find_error(r.errors, "auth.allow_anonymous") != nullptr, dump(r.errors));
    const temp_dir dir;
    const auto file = dir.write(
        "c.toml", "[[auth.client_keys]]\nsha256 = \"" + hash_a + "\"\naccounts = [\"*\"]\n");
    r = run({"--config", file, "--listen", "0.0.0.0:8080"});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
}

BOOST_AUTO_TEST_CASE(modes) {
    auto r = run({}, {{"IMAGEGATE_AUTH_MODE", "passthrough"}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    r = run({}, {{"IMAGEGATE_AUTH_MODE", "bearer"}});
    BOOST_TEST(find_error(r.errors, "auth.mode") != nullptr);
    r = run({}, {{"IMAGEGATE_AUTH_MODE", "Token"}});
    BOOST_TEST(find_error(r.errors, "auth.mode") != nullptr);
}

BOOST_AUTO_TEST_CASE(passthrough_needs_no_client_keys_and_may_listen_anywhere) {
    // Every caller brings a credential the upstream checks: no anonymous reads to guard.
    auto r = run({"--listen", "0.0.0.0:8080"}, {{"IMAGEGATE_AUTH_MODE", "passthrough"}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    const temp_dir dir;
    const auto file = dir.write("c.toml",
                                "[auth]\nmode = \"passthrough\"\n"
                                "[[auth.client_keys]]\nsha256 = \"" +
                                    hash_a + "\"\naccounts = [\"*\"]\n");
    r = run({"--config", file});
    BOOST_TEST(find_error(r.errors, "auth.client_keys") != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_CASE(proof_ttl_range) {
    auto r = run({}, {{"IMAGEGATE_AUTH_PROOF_TTL", "30s"}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.auth.proof_ttl.count() == 30000);
    r = run({}, {{"IMAGEGATE_AUTH_PROOF_TTL", "2h"}});
    BOOST_TEST(find_error(r.errors, "IMAGEGATE_AUTH_PROOF_TTL") != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_CASE(listener_tls_files) {
    const temp_dir dir;
    const auto cert = dir.write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    const auto key = dir.write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    const auto open_key =
        dir.write("open-key.pem", "-----BEGIN PRIVATE KEY-----\n",
                  std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                      std::filesystem::perms::group_read | std::filesystem::perms::others_read);
    auto r = run({}, {{"IMAGEGATE_SERVER_TLS_CERT", cert}, {"IMAGEGATE_SERVER_TLS_KEY", key}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    r = run({}, {{"IMAGEGATE_SERVER_TLS_CERT", cert}});
    BOOST_TEST(find_error(r.errors, "server.tls_key") != nullptr, dump(r.errors));
    r = run({}, {{"IMAGEGATE_SERVER_TLS_KEY", key}});
    BOOST_TEST(find_error(r.errors, "server.tls_cert") != nullptr, dump(r.errors));
    r = run({}, {{"IMAGEGATE_SERVER_TLS_CERT", cert}, {"IMAGEGATE_SERVER_TLS_KEY", open_key}});
    BOOST_TEST(find_error(r.errors, "server.tls_key") != nullptr, dump(r.errors));
    r = run({}, {{"IMAGEGATE_SERVER_TLS_CERT", (dir.path() / "missing.pem").string()},
                 {"IMAGEGATE_SERVER_TLS_KEY", key}});
    BOOST_TEST(find_error(r.errors, "server.tls_cert") != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_SUITE_END()
