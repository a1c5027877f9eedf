// A gateway (the real composition root) in front of the in-process Cloudflare API emulator
// over verified TLS with a test CA, both on loopback ports chosen at run time.
#pragma once

#include "config/settings.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/runtime/app.hpp"
#include "tests/emulator/emulator.hpp"
#include "tests/support/http_client.hpp"

#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace imagegate::testing {

inline const std::string test_account = "023e105f4ecef8ad9ca31a8372d0c353";

inline std::shared_ptr<spdlog::logger> quiet_logger() {
    // IMAGEGATE_TEST_LOG=1 shows the gateway's log while debugging a test.
    if (std::getenv("IMAGEGATE_TEST_LOG") != nullptr) {
        auto l = spdlog::stdout_logger_mt("test-" + std::to_string(std::rand()));
        l->set_level(spdlog::level::debug);
        return l;
    }
    return std::make_shared<spdlog::logger>("test",
                                            std::make_shared<spdlog::sinks::null_sink_mt>());
}

/// Runs an emulator on a worker of its own (one io_context, one thread).
class emulator_runner {
public:
    explicit emulator_runner(emulator_options o = {})
        : emu_(io_.executor(0), single_threaded(std::move(o))) {
        emu_.start();
        io_.start();
    }
    ~emulator_runner() {
        emu_.stop();
        io_.release();
        io_.join();
    }
    emulator& operator*() noexcept { return emu_; }
    emulator* operator->() noexcept { return &emu_; }

private:
    static emulator_options single_threaded(emulator_options o) {
        o.single_threaded = true;  // one thread runs it: no strand per connection
        return o;
    }
    workers io_{1};
    emulator emu_;
};

/// A temporary directory removed with the object.
class temp_dir {
public:
    temp_dir() {
        path_ =
            std::filesystem::temp_directory_path() /
            ("imagegate-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    static std::atomic<int>& counter() {
        static std::atomic<int> c{0};
        return c;
    }
    std::filesystem::path path_;
};

/// Settings for a gateway in front of `emu`: loopback, port 0, verified TLS with its CA.
inline config::settings gateway_settings(emulator& emu, const temp_dir& dir) {
    config::settings s;
    s.server.listen = "127.0.0.1:0";
    s.server.admin_listen = "127.0.0.1:0";
    s.server.threads = 2;
    s.server.drain_timeout = std::chrono::seconds(2);
    const auto ca = (dir.path() / "ca.pem").string();
    write_file(ca, emu.ca_pem());
    s.upstream.url = emu.base_url();
    s.upstream.ca_file = ca;
    s.upstream.connect_timeout = std::chrono::seconds(2);
    s.upstream.request_timeout = std::chrono::seconds(3);
    s.secret.upstream_token = emu.token();
    s.log.access_log = false;
    return s;
}

/// The gateway under test plus clients for its two listeners.
class gateway_runner {
public:
    explicit gateway_runner(config::settings s) : app_(std::move(s), quiet_logger()) {
        app_.start();
    }
    gateway::app& app() noexcept { return app_; }

    endpoint data(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
        endpoint e;
        e.port = app_.data_port();
        e.tls = false;
        e.timeout = timeout;
        return e;
    }
    endpoint admin() const {
        endpoint e;
        e.port = app_.admin_port();
        e.tls = false;
        return e;
    }
    response get(const std::string& image_target, header_list headers = {}) const {
        return request(data(), boost::beast::http::verb::get, image_target, std::move(headers));
    }
    static std::string image_path(std::string_view encoded_id,
                                  std::string_view account = test_account) {
        return "/client/v4/accounts/" + std::string(account) + "/images/v1/" +
               std::string(encoded_id);
    }
    /// The value of `name` in /metrics, or -1 when absent.
    double metric(std::string_view name) const {
        const auto r = request(admin(), boost::beast::http::verb::get, "/metrics");
        const std::string needle = std::string(name) + " ";
        std::size_t pos = 0;
        while ((pos = r.body.find(needle, pos)) != std::string::npos) {
            if (pos == 0 || r.body[pos - 1] == '\n') {
                return std::stod(r.body.substr(pos + needle.size()));
            }
            pos += needle.size();
        }
        return -1;
    }

private:
    gateway::app app_;
};

/// Emulator options where every image id exists (records derived from the id).
inline emulator_options any_image() {
    emulator_options o;
    o.any_image_exists = true;
    return o;
}

/// An emulator and the settings of a gateway in front of it; tests adjust `settings`, then
/// construct a gateway_runner.
struct emulated_upstream {
    explicit emulated_upstream(emulator_options o = any_image()) : emu(std::move(o)) {}

    /// The emulator answers requests for `id` after `d`.
    void delay(const std::string& id, std::chrono::milliseconds d) {
        fault_rule f;
        f.kind = fault_kind::delay;
        f.image_id = id;
        f.delay = d;
        emu->add_fault(f);
    }

    emulator_runner emu;
    temp_dir dir;
    config::settings settings = gateway_settings(*emu, dir);
};

/// Polls `pred` until it holds or `limit` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pred();
}

inline bool contains(std::string_view hay, std::string_view needle) {
    return hay.find(needle) != std::string_view::npos;
}

}  // namespace imagegate::testing
