#include "gateway/runtime/logging.hpp"

#include "gateway/http/server.hpp"
#include "gateway/image/route.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace imagegate::gateway {

std::shared_ptr<spdlog::logger> make_logger(const config::log_settings& s) {
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    auto log = std::make_shared<spdlog::logger>("imagegate", std::move(sink));
    const auto level = spdlog::level::from_str(s.level);
    if (level == spdlog::level::off && s.level != "off") {
        throw std::invalid_argument("unknown log level");
    }
    log->set_level(level);
    if (s.format == "json") {
        // Messages are the gateway's own text; request targets are logged without query
        // strings, and Beast refuses control characters in them.
        log->set_pattern(
            R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","thread":%t,"msg":"%v"})");
    } else {
        log->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l [%t] %v");
    }
    log->flush_on(spdlog::level::warn);
    return log;
}

void log_access(spdlog::logger& log, const exchange_record& rec) {
    const double ms = std::chrono::duration<double, std::milli>(rec.duration).count();
    log.info("access {} req={} {} {} status={} cache=\"{}\" dur_ms={:.3f} bytes={}", rec.listener,
             rec.request_id.empty() ? std::string_view{"-"} : rec.request_id, rec.method,
             request_path(rec.target), rec.status, rec.cache_status, ms, rec.bytes_written);
}

}  // namespace imagegate::gateway
