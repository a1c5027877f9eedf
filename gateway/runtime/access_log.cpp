#include "gateway/runtime/access_log.hpp"

#include "gateway/core/log_escape.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/http/server.hpp"
#include "gateway/metrics/registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace imagegate::gateway {

/// One queued line: the exchange's strings copied into fixed fields (cut to fit, never
/// allocated), its numbers as they were.
struct access_log::line {
    struct field {
        std::uint16_t offset = 0;
        std::uint16_t size = 0;
    };
    // listener + method + target + request id + cache status, each bounded below.
    std::array<char, 16 + 24 + max_target_bytes + 128 + 64> bytes{};
    field listener, method, target, id, cache;
    unsigned status = 0;
    std::int64_t duration_ns = 0;
    std::uint64_t bytes_written = 0;

    std::string_view view(field f) const { return {bytes.data() + f.offset, f.size}; }
};

namespace {

constexpr std::string_view hit_status = "hit";

// Appends `s` cut to `limit` bytes at `used` in `bytes`.
template <std::size_t N>
auto put(std::array<char, N>& bytes, std::size_t& used, std::string_view s, std::size_t limit) {
    const std::size_t n = std::min({s.size(), limit, N - used});
    if (n != 0) {
        // An empty view may hold a null pointer (a request without an id or a target), and
        // memcpy from null is undefined even for 0 bytes.
        std::memcpy(bytes.data() + used, s.data(), n);
    }
    const auto f = std::pair{static_cast<std::uint16_t>(used), static_cast<std::uint16_t>(n)};
    used += n;
    return f;
}

}  // namespace

access_log::access_log(const std::shared_ptr<spdlog::logger>& log, const config::log_settings& s,
                       std::size_t worker_count, std::size_t capacity)
    : log_(log->clone(std::string(access_logger_name))),
      enabled_(s.access_log),
      hit_sample_(std::max<std::uint64_t>(1, s.access_log_hit_sample)),
      json_(s.format == "json"),
      slots_(worker_count + 1),
      ring_(std::max<std::size_t>(1, capacity)) {
    writer_ = std::thread([this] { run(); });
}

access_log::~access_log() {
    {
        const std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    writer_.join();
    log_->flush();
}

void access_log::configure(const config::log_settings& s) noexcept {
    hit_sample_.store(std::max<std::uint64_t>(1, s.access_log_hit_sample),
                      std::memory_order_relaxed);
    json_.store(s.format == "json", std::memory_order_relaxed);
    enabled_.store(s.access_log, std::memory_order_relaxed);
    // The clone has a level of its own; config::check admitted the name.
    log_->set_level(spdlog::level::from_str(s.level));
}

// Only the slot's own worker writes it, so plain loads and stores (no locked instruction)
// suffice; the atomics are for counters() reading from another thread.
bool access_log::take_hit(hit_slot& slot) noexcept {
    const auto left = slot.countdown.load(std::memory_order_relaxed);
    if (left > 1) {
        slot.countdown.store(left - 1, std::memory_order_relaxed);
        slot.sampled_out.store(slot.sampled_out.load(std::memory_order_relaxed) + 1,
                               std::memory_order_relaxed);
        return false;
    }
    slot.countdown.store(hit_sample_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return true;
}

void access_log::observe(const exchange_record& rec) noexcept {
    if (!enabled_.load(std::memory_order_relaxed) || !log_->should_log(spdlog::level::info)) {
        return;
    }
    if (rec.cache_status == hit_status) {
        const std::size_t w = workers::current_index();
        if (w < slots_.size() - 1) {
            if (!take_hit(slots_[w])) {
                return;
            }
        } else {
            // Not an I/O worker (tests): the shared slot, whose read-modify-write may race
            // harmlessly (a sampling decision, not an invariant).
            auto& shared = slots_.back();
            const auto n = shared.countdown.fetch_add(1, std::memory_order_relaxed);
            if (n % hit_sample_.load(std::memory_order_relaxed) != 0) {
                shared.sampled_out.fetch_add(1, std::memory_order_relaxed);
                return;
            }
        }
    }
    enqueue(rec);
}

void access_log::enqueue(const exchange_record& rec) noexcept {
    bool wake = false;
    {
        const std::lock_guard lock(mu_);
        if (size_ == ring_.size()) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        line& l = ring_[(head_ + size_) % ring_.size()];
        std::size_t used = 0;
        const auto set = [&](line::field& f, std::string_view s, std::size_t limit) {
            const auto [offset, size] = put(l.bytes, used, s, limit);
            f.offset = offset;
            f.size = size;
        };
        set(l.listener, rec.listener, 16);
        set(l.method, rec.method, 24);
        // The target as sent, without its query string (it may carry anything).
        set(l.target, rec.target.substr(0, rec.target.find('?')), max_target_bytes);
        set(l.id, rec.request_id, 128);
        set(l.cache, rec.cache_status, 64);
        l.status = rec.status;
        l.duration_ns = rec.duration.count();
        l.bytes_written = rec.bytes_written;
        wake = size_++ == 0;
    }
    if (wake) {
        wake_.notify_one();
    }
}

void access_log::run() {
    std::vector<line> batch;
    batch.reserve(64);
    std::unique_lock lock(mu_);
    for (;;) {
        wake_.wait(lock, [this] { return size_ > 0 || stop_; });
        if (size_ == 0) {
            return;  // stopping, everything written
        }
        batch.clear();
        while (size_ > 0 && batch.size() < 64) {
            batch.push_back(ring_[head_]);
            head_ = (head_ + 1) % ring_.size();
            --size_;
        }
        in_flight_ = batch.size();
        lock.unlock();
        for (const auto& l : batch) {
            write(l);
        }
        written_.fetch_add(batch.size(), std::memory_order_relaxed);
        lock.lock();
        in_flight_ = 0;
        if (size_ == 0) {
            drained_.notify_all();
        }
    }
}

void access_log::flush() {
    {
        std::unique_lock lock(mu_);
        drained_.wait(lock, [this] { return (size_ == 0 && in_flight_ == 0) || stop_; });
    }
    log_->flush();
}

void access_log::write(const line& l) const {
    const double ms = static_cast<double>(l.duration_ns) / 1e6;
    const std::string_view id = l.id.size == 0 ? std::string_view{"-"} : l.view(l.id);
    // Every string is escaped: the target and the request id come from the client (the id is
    // checked by request_id.cpp, escaped all the same), the rest are the gateway's words.
    if (json_.load(std::memory_order_relaxed)) {
        log_->info(R"("listener":{},"req":{},"method":{},"target":{},"status":{},"cache":{},)"
                   R"("dur_ms":{:.3f},"bytes":{})",
                   json_string(l.view(l.listener)), json_string(id), json_string(l.view(l.method)),
                   json_string(l.view(l.target)), l.status, json_string(l.view(l.cache)), ms,
                   l.bytes_written);
        return;
    }
    log_->info("access {} req={} {} {} status={} cache={} dur_ms={:.3f} bytes={}",
               log_escaped(l.view(l.listener)), log_escaped(id), log_escaped(l.view(l.method)),
               log_quoted(l.view(l.target)), l.status, log_quoted(l.view(l.cache)), ms,
               l.bytes_written);
}

access_log_counters access_log::counters() const noexcept {
    access_log_counters c;
    c.written = written_.load(std::memory_order_relaxed);
    c.dropped = dropped_.load(std::memory_order_relaxed);
    for (const auto& slot : slots_) {
        c.sampled_out += slot.sampled_out.load(std::memory_order_relaxed);
    }
    return c;
}

void access_log::render_metrics(std::string& out) const {
    const auto c = counters();
    metrics::append_sample(out, "imagegate_access_log_lines_total", "counter",
                           "Access-log lines written.", c.written);
    metrics::append_sample(out, "imagegate_access_log_dropped_total", "counter",
                           "Access-log lines dropped because the writer fell behind (queue "
                           "full); requests never wait for the log.",
                           c.dropped);
    metrics::append_sample(out, "imagegate_access_log_hits_sampled_out_total", "counter",
                           "Fresh cache hits not logged (log.access_log_hit_sample logs 1 in N).",
                           c.sampled_out);
}

}  // namespace imagegate::gateway
