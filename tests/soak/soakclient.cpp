// soakclient: the load of the shield soak (tests/soak/run.sh): cached hot keys at a steady
// rate, and "users" that each ask for a new cold id, honour a 429's retry-after-ms (as the
// official SDKs do), come back for the same id, and think a while after each answer.
//
//   soakclient --port P --account A --prefix ID [--hot-keys 8] [--hot-rate 200]
//              [--hot-conns 4] [--users 20] [--think-ms 1000] [--baseline-s 10]
//              [--duration-s 60] [--drain-s 75] [--timeout-ms 30000]
//
// Phases: hot load only (baseline-s); hot load and users (duration-s); the users finish the
// ids they started (come back until answered, at most drain-s); hot load only again
// (baseline-s). The unloaded hit latency pools both quiet phases, so whatever else the
// machine does weighs on both sides of the comparison alike.
// Prints one JSON object: answers by status, refusal latency (429 with Retry-After), the
// returns after Retry-After and how many got 200, hit latency unloaded and under the soak.
// Loopback only; plain POSIX sockets, one thread per connection, keep-alive; no
// dependencies (built with g++ by run.sh).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

struct options {
    unsigned port = 0;
    std::string account;
    std::string prefix;
    unsigned hot_keys = 8;
    double hot_rate = 200;  // requests per second, all hot connections together
    unsigned hot_conns = 4;
    unsigned users = 20;
    long think_ms = 1000;
    long baseline_s = 10;
    long duration_s = 60;
    long drain_s = 75;
    long timeout_ms = 30000;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "soakclient: %s (see the header of tests/soak/soakclient.cpp)\n", why);
    std::exit(2);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (i + 1 >= argc) {
            usage("missing value");
        }
        const char* v = argv[++i];
        if (a == "--port") {
            o.port = static_cast<unsigned>(std::atoi(v));
        } else if (a == "--account") {
            o.account = v;
        } else if (a == "--prefix") {
            o.prefix = v;
        } else if (a == "--hot-keys") {
            o.hot_keys = static_cast<unsigned>(std::atoi(v));
        } else if (a == "--hot-rate") {
            o.hot_rate = std::atof(v);
        } else if (a == "--hot-conns") {
            o.hot_conns = static_cast<unsigned>(std::atoi(v));
        } else if (a == "--users") {
            o.users = static_cast<unsigned>(std::atoi(v));
        } else if (a == "--think-ms") {
            o.think_ms = std::atol(v);
        } else if (a == "--baseline-s") {
            o.baseline_s = std::atol(v);
        } else if (a == "--duration-s") {
            o.duration_s = std::atol(v);
        } else if (a == "--drain-s") {
            o.drain_s = std::atol(v);
        } else if (a == "--timeout-ms") {
            o.timeout_ms = std::atol(v);
        } else {
            usage("unknown flag");
        }
    }
    if (o.port == 0 || o.account.empty() || o.prefix.empty() || o.hot_keys == 0 ||
        o.hot_conns == 0 || o.hot_rate <= 0) {
        usage("--port, --account, --prefix are required; counts must be positive");
    }
    return o;
}

/// One answer: status, the headers the soak looks at, and how long it took.
struct answer {
    unsigned status = 0;  // 0: no answer (connection error or timeout)
    long retry_after_s = -1;
    long retry_after_ms = -1;
    microseconds latency{};
};

/// A keep-alive HTTP/1.1 connection with blocking I/O and a receive timeout.
class connection {
public:
    connection(unsigned port, long timeout_ms) : port_(port), timeout_ms_(timeout_ms) {}
    ~connection() { close_fd(); }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    answer get(const std::string& path) {
        const auto start = steady::now();
        answer a;
        for (int attempt = 0; attempt < 2; ++attempt) {
            // A kept-alive connection the server closed meanwhile fails once: reconnect.
            if ((fd_ < 0 && !open_fd()) || !send_all(request(path))) {
                close_fd();
                continue;
            }
            if (read_answer(a)) {
                a.latency = std::chrono::duration_cast<microseconds>(steady::now() - start);
                return a;
            }
            close_fd();
        }
        a.latency = std::chrono::duration_cast<microseconds>(steady::now() - start);
        return a;
    }

private:
    static std::string request(const std::string& path) {
        return "GET " + path + " HTTP/1.1\r\nHost: soak\r\nUser-Agent: soakclient\r\n\r\n";
    }

    bool open_fd() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd_ < 0) {
            return false;
        }
        timeval tv{};
        tv.tv_sec = timeout_ms_ / 1000;
        tv.tv_usec = static_cast<suseconds_t>((timeout_ms_ % 1000) * 1000);
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
            close_fd();
            return false;
        }
        buffer_.clear();
        return true;
    }

    void close_fd() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

    bool send_all(const std::string& bytes) {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }

    static long header_number(std::string_view head, std::string_view name) {
        // Case-insensitive "\r\n<name>:" search; the head is small.
        std::string lower(head);
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        const auto pos = lower.find("\r\n" + std::string(name) + ":");
        if (pos == std::string::npos) {
            return -1;
        }
        return std::atol(lower.c_str() + pos + 3 + name.size());
    }

    /// Reads one response (Content-Length framing, as the gateway always answers).
    bool read_answer(answer& a) {
        for (;;) {
            const auto end = buffer_.find("\r\n\r\n");
            if (end != std::string::npos) {
                const std::string_view head(buffer_.data(), end + 2);
                const long length = header_number(head, "content-length");
                if (length < 0 || buffer_.size() < end + 4 + static_cast<std::size_t>(length)) {
                    if (!fill()) {
                        return false;
                    }
                    continue;
                }
                a.status = static_cast<unsigned>(std::atoi(buffer_.c_str() + 9));
                a.retry_after_s = header_number(head, "retry-after");
                a.retry_after_ms = header_number(head, "retry-after-ms");
                const bool close = head.find("Connection: close") != std::string_view::npos;
                buffer_.erase(0, end + 4 + static_cast<std::size_t>(length));
                if (close) {
                    close_fd();
                }
                return true;
            }
            if (buffer_.size() > 64 * 1024 || !fill()) {
                return false;
            }
        }
    }

    bool fill() {
        char chunk[8192];
        const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) {
            return false;
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    unsigned port_;
    long timeout_ms_;
    int fd_ = -1;
    std::string buffer_;
};

/// Latencies in microseconds, for percentiles.
struct samples {
    std::mutex mu;
    std::vector<long> us;
    void add(microseconds d) {
        const std::lock_guard lock(mu);
        us.push_back(static_cast<long>(d.count()));
    }
    std::string json() {
        const std::lock_guard lock(mu);
        std::sort(us.begin(), us.end());
        const auto at = [&](double q) {
            return us.empty()
                       ? 0L
                       : us[std::min(us.size() - 1,
                                     static_cast<std::size_t>(q * static_cast<double>(us.size())))];
        };
        char buf[200];
        std::snprintf(buf, sizeof buf, R"({"n":%zu,"p50_us":%ld,"p99_us":%ld,"max_us":%ld})",
                      us.size(), at(0.5), at(0.99), us.empty() ? 0L : us.back());
        return buf;
    }
};

struct results {
    std::mutex mu;
    std::map<unsigned, long> cold_status;  // every answer a user got, by status
    std::map<unsigned, long> hot_status;
    long returns = 0;     // came back after a Retry-After
    long returns_ok = 0;  // ... and got 200
    long ids_started = 0;
    long ids_answered = 0;  // got 200 (or another final answer) in the end
    long refusals_without_retry_after = 0;
    samples refusal_latency;
    samples cold_ok_latency;
    samples hit_baseline;
    samples hit_soak;
};

std::string image_path(const options& o, const std::string& id) {
    return "/client/v4/accounts/" + o.account + "/images/v1/" + id;
}

/// What the hot workers are measuring.
enum class phase : int { baseline, soak, drain, baseline_after, stop };
std::atomic<phase> current{phase::baseline};

void hot_worker(const options& o, results& r, unsigned index) {
    connection c(o.port, o.timeout_ms);
    const auto period = std::chrono::duration_cast<steady::duration>(
        std::chrono::duration<double>(o.hot_conns / o.hot_rate));
    auto next = steady::now();
    for (unsigned i = index;; i += o.hot_conns) {
        next += period;
        std::this_thread::sleep_until(next);
        const phase p = current.load();
        if (p == phase::stop) {
            return;
        }
        const auto a = c.get(image_path(o, o.prefix + "-hot-" + std::to_string(i % o.hot_keys)));
        {
            const std::lock_guard lock(r.mu);
            ++r.hot_status[a.status];
        }
        if (a.status != 200 || p != current.load()) {
            continue;  // measured only when the whole request fell in one phase
        }
        if (p == phase::soak) {
            r.hit_soak.add(a.latency);
        } else if (p != phase::drain) {
            r.hit_baseline.add(a.latency);
        }
    }
}

void user(const options& o, results& r, unsigned index, steady::time_point soak_start,
          steady::time_point soak_end, steady::time_point drain_end) {
    std::mt19937_64 rng(index + 1);
    connection c(o.port, o.timeout_ms);
    // Users start spread over the first think time, as independent clients would.
    std::this_thread::sleep_until(soak_start + milliseconds(static_cast<long>(rng() % 1000)));
    for (unsigned seq = 0; steady::now() < soak_end; ++seq) {
        const std::string path =
            image_path(o, o.prefix + "-u" + std::to_string(index) + "-" + std::to_string(seq));
        {
            const std::lock_guard lock(r.mu);
            ++r.ids_started;
        }
        bool returning = false;
        while (steady::now() < drain_end) {
            const auto a = c.get(path);
            {
                const std::lock_guard lock(r.mu);
                ++r.cold_status[a.status];
                if (returning) {
                    ++r.returns;
                    r.returns_ok += a.status == 200 ? 1 : 0;
                }
            }
            if (a.status != 429) {
                if (a.status == 200) {
                    r.cold_ok_latency.add(a.latency);
                }
                const std::lock_guard lock(r.mu);
                ++r.ids_answered;
                break;
            }
            r.refusal_latency.add(a.latency);
            long wait_ms = a.retry_after_ms >= 0 ? a.retry_after_ms : a.retry_after_s * 1000;
            if (wait_ms < 0) {
                const std::lock_guard lock(r.mu);
                ++r.refusals_without_retry_after;
                wait_ms = 1000;
            }
            // As the SDKs do: wait what retry-after-ms says, then ask again for the same id.
            std::this_thread::sleep_for(milliseconds(wait_ms));
            returning = true;
        }
        const long think =
            o.think_ms / 2 +
            static_cast<long>(rng() % static_cast<unsigned long>(std::max(1L, o.think_ms)));
        std::this_thread::sleep_for(milliseconds(think));
    }
}

std::string status_json(const std::map<unsigned, long>& m) {
    std::string out = "{";
    for (const auto& [status, n] : m) {
        if (out.size() > 1) {
            out += ",";
        }
        out += "\"" + std::to_string(status) + "\":" + std::to_string(n);
    }
    return out + "}";
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    results r;
    // Warm the hot keys (the budget allows a burst of them), so both phases measure hits.
    {
        connection c(o.port, o.timeout_ms);
        for (unsigned k = 0; k < o.hot_keys; ++k) {
            for (int attempt = 0; attempt < 20; ++attempt) {
                const auto a = c.get(image_path(o, o.prefix + "-hot-" + std::to_string(k)));
                if (a.status == 200) {
                    break;
                }
                std::this_thread::sleep_for(milliseconds(std::max(100L, a.retry_after_ms)));
            }
        }
    }
    const auto start = steady::now();
    const auto soak_start = start + std::chrono::seconds(o.baseline_s);
    const auto soak_end = soak_start + std::chrono::seconds(o.duration_s);
    const auto drain_end = soak_end + std::chrono::seconds(o.drain_s);
    std::vector<std::thread> hot;
    for (unsigned i = 0; i < o.hot_conns; ++i) {
        hot.emplace_back([&, i] { hot_worker(o, r, i); });
    }
    std::vector<std::thread> users;
    for (unsigned i = 0; i < o.users; ++i) {
        users.emplace_back([&, i] { user(o, r, i, soak_start, soak_end, drain_end); });
    }
    std::this_thread::sleep_until(soak_start);
    current = phase::soak;
    std::this_thread::sleep_until(soak_end);
    current = phase::drain;
    for (auto& t : users) {
        t.join();
    }
    const auto drained = steady::now();
    current = phase::baseline_after;
    std::this_thread::sleep_for(std::chrono::seconds(o.baseline_s));
    current = phase::stop;
    for (auto& t : hot) {
        t.join();
    }
    const double elapsed = std::chrono::duration<double>(drained - soak_start).count();
    std::printf(
        "{\"soak_s\":%.3f,\"cold_status\":%s,\"hot_status\":%s,\"ids_started\":%ld,"
        "\"ids_answered\":%ld,\"returns\":%ld,\"returns_ok\":%ld,"
        "\"refusals_without_retry_after\":%ld,\"refusal_latency\":%s,\"cold_ok_latency\":%s,"
        "\"hit_baseline\":%s,\"hit_soak\":%s}\n",
        elapsed, status_json(r.cold_status).c_str(), status_json(r.hot_status).c_str(),
        r.ids_started, r.ids_answered, r.returns, r.returns_ok, r.refusals_without_retry_after,
        r.refusal_latency.json().c_str(), r.cold_ok_latency.json().c_str(),
        r.hit_baseline.json().c_str(), r.hit_soak.json().c_str());
    return 0;
}
