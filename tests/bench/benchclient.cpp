// benchclient: the two small HTTP/1.1 clients tests/bench/run.sh needs besides wrk.
//
//   benchclient herd --port P[,P2,...] --target PATH [--n 1000] [--timeout-ms 10000]
//       Opens N keep-alive connections to 127.0.0.1:P (with several ports, connection i goes
//       to the (i mod k)-th: a herd spread over a fleet), and once all are connected sends one
//       GET PATH on each, back to back. Prints one JSON object: per-request latency (from the
//       moment that request was written to its complete response) as median/p99/max, the
//       status and Cache-Status counts, the median per Cache-Status, and the failures.
//
//   benchclient load --port P --prefix PATH [--first 1] [--n N] [--conns 32] [--width 8]
//                    [--timeout-ms 60000]
//       Closed loop over CONNS keep-alive connections: requests PATH + i zero-padded to WIDTH
//       digits for i = FIRST .. FIRST+N-1, each exactly once. Prints one JSON object with the
//       status counts, the body bytes received, the elapsed time and the per-request latency
//       (request written to complete response) as median/p99/max.
//
// Loopback only (the host is fixed to 127.0.0.1); every loop is bounded by a count and a
// deadline. Plain POSIX sockets and epoll, no dependencies: built by run.sh with g++.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
    std::string mode;
    unsigned port = 0;
    std::vector<unsigned> ports;  // herd: every port of --port, in order
    std::string target;
    std::string prefix;
    unsigned long first = 1;
    unsigned long n = 1000;
    unsigned conns = 32;
    int width = 8;
    long timeout_ms = 0;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "benchclient: %s\n"
                 "usage: benchclient herd --port P[,P...] --target PATH [--n N] "
                 "[--timeout-ms MS]\n"
                 "       benchclient load --port P --prefix PATH [--first I] [--n N] "
                 "[--conns C] [--width W] [--timeout-ms MS]\n",
                 why);
    std::exit(2);
}

options parse(int argc, char** argv) {
    if (argc < 2) {
        usage("missing mode");
    }
    options o;
    o.mode = argv[1];
    if (o.mode != "herd" && o.mode != "load") {
        usage("mode must be herd or load");
    }
    for (int i = 2; i < argc; ++i) {
        const std::string_view f = argv[i];
        if (i + 1 >= argc) {
            usage("flag without value");
        }
        const char* v = argv[++i];
        if (f == "--port") {
            // A comma list: herd connections go round robin over the ports.
            for (const char* p = v; *p != '\0';) {
                char* end = nullptr;
                o.ports.push_back(static_cast<unsigned>(std::strtoul(p, &end, 10)));
                if (end == p || (*end != ',' && *end != '\0')) {
                    usage("bad --port");
                }
                p = *end == ',' ? end + 1 : end;
            }
            o.port = o.ports.empty() ? 0 : o.ports.front();
        } else if (f == "--target") {
            o.target = v;
        } else if (f == "--prefix") {
            o.prefix = v;
        } else if (f == "--first") {
            o.first = std::strtoul(v, nullptr, 10);
        } else if (f == "--n") {
            o.n = std::strtoul(v, nullptr, 10);
        } else if (f == "--conns") {
            o.conns = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
        } else if (f == "--width") {
            o.width = static_cast<int>(std::strtol(v, nullptr, 10));
        } else if (f == "--timeout-ms") {
            o.timeout_ms = std::strtol(v, nullptr, 10);
        } else {
            usage("unknown flag");
        }
    }
    if (o.ports.empty() || o.n == 0 || o.conns == 0) {
        usage("bad --port, --n or --conns");
    }
    for (const unsigned p : o.ports) {
        if (p == 0 || p > 65535) {
            usage("bad --port");
        }
    }
    if (o.mode == "load" && o.ports.size() != 1) {
        usage("load takes one --port");
    }
    if (o.mode == "herd" && o.target.empty()) {
        usage("herd needs --target");
    }
    if (o.mode == "load" && o.prefix.empty()) {
        usage("load needs --prefix");
    }
    if (o.timeout_ms <= 0) {
        o.timeout_ms = o.mode == "herd" ? 10000 : 600000;
    }
    return o;
}

// One connection with at most one request in flight.
struct conn {
    int fd = -1;
    std::string in;
    clock_type::time_point sent{};
    bool busy = false;
    bool dead = false;
};

int connect_loopback(unsigned port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Blocking connect: on loopback it completes at once (or fails at once).
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

bool write_all(int fd, std::string_view s) {
    // Requests are small: they fit in an empty socket buffer. Bounded retries anyway.
    for (int tries = 0; !s.empty() && tries < 1000; ++tries) {
        const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n > 0) {
            s.remove_prefix(static_cast<std::size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
    }
    return s.empty();
}

std::string lower(std::string_view s) {
    std::string r(s);
    for (auto& c : r) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return r;
}

struct parsed {
    bool complete = false;
    bool bad = false;
    unsigned status = 0;
    std::string cache_status;
    std::size_t length = 0;  // bytes of the whole response
    std::size_t body = 0;    // bytes of the body
};

// Parses one response at the front of `in` (Content-Length framing only).
parsed parse_response(const std::string& in) {
    parsed p;
    const auto end = in.find("\r\n\r\n");
    if (end == std::string::npos) {
        p.bad = in.size() > 65536;
        return p;
    }
    if (in.size() < 12 || in.compare(0, 5, "HTTP/") != 0) {
        p.bad = true;
        return p;
    }
    p.status = static_cast<unsigned>(std::strtoul(in.c_str() + 9, nullptr, 10));
    std::size_t content_length = 0;
    bool have_length = false;
    std::size_t pos = in.find("\r\n") + 2;
    while (pos < end) {
        const auto eol = in.find("\r\n", pos);
        const std::string_view line(in.data() + pos, eol - pos);
        const auto colon = line.find(':');
        if (colon != std::string_view::npos) {
            const std::string name = lower(line.substr(0, colon));
            std::string_view value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') {
                value.remove_prefix(1);
            }
            if (name == "content-length") {
                content_length = std::strtoul(std::string(value).c_str(), nullptr, 10);
                have_length = true;
            } else if (name == "cache-status" || name == "x-cache-status") {
                p.cache_status = std::string(value);
            } else if (name == "transfer-encoding") {
                p.bad = true;  // not needed by the benchmark
                return p;
            }
        }
        pos = eol + 2;
    }
    if (!have_length) {
        p.bad = true;
        return p;
    }
    const std::size_t total = end + 4 + content_length;
    if (in.size() >= total) {
        p.complete = true;
        p.length = total;
        p.body = content_length;
    }
    return p;
}

// Short label of a Cache-Status value: "imagegate; hit; ttl=3" -> "hit",
// "imagegate; fwd=miss; fwd-status=200; stored; ttl=300" -> "fwd=miss stored",
// "imagegate; fwd=miss; detail=l2-hit; ttl=299" -> "fwd=miss detail=l2-hit".
std::string cache_label(const std::string& v) {
    if (v.empty()) {
        return "none";
    }
    if (v.find(';') == std::string::npos) {
        return v;  // nginx: $upstream_cache_status (HIT, MISS, ...)
    }
    std::string out;
    std::size_t pos = v.find(';');
    while (pos != std::string::npos) {
        auto next = v.find(';', pos + 1);
        std::string part =
            v.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
        while (!part.empty() && part.front() == ' ') {
            part.erase(0, 1);
        }
        if (!part.starts_with("ttl=") && !part.starts_with("fwd-status=")) {
            out += out.empty() ? "" : " ";
            out += part;
        }
        pos = next;
    }
    return out;
}

std::string request_for(std::string_view target) {
    std::string r = "GET ";
    r += target;
    r += " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: imagegate-benchclient\r\n\r\n";
    return r;
}

void print_counts(const char* name, const std::map<std::string, unsigned long>& m) {
    std::printf("\"%s\":{", name);
    bool first = true;
    for (const auto& [k, v] : m) {
        std::printf("%s\"%s\":%lu", first ? "" : ",", k.c_str(), v);
        first = false;
    }
    std::printf("}");
}

double ms(clock_type::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double percentile(std::vector<double>& v, double p) {
    if (v.empty()) {
        return -1;
    }
    std::sort(v.begin(), v.end());
    // Nearest rank.
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
    rank = std::clamp<std::size_t>(rank, 1, v.size());
    return v[rank - 1];
}

// Reads what is available on c; returns false when the peer closed or failed.
bool drain(conn& c) {
    char buf[16384];
    for (int i = 0; i < 64; ++i) {
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
            c.in.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) {
            return false;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    return true;
}

int run_herd(const options& o) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(o.timeout_ms);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::vector<conn> conns(o.n);
    unsigned long connect_failures = 0;
    for (std::size_t i = 0; i < conns.size(); ++i) {
        conns[i].fd = connect_loopback(o.ports[i % o.ports.size()]);
        if (conns[i].fd < 0) {
            conns[i].dead = true;
            ++connect_failures;
            continue;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    // Let the server accept every connection before the burst.
    ::usleep(200000);
    const std::string req = request_for(o.target);
    const auto burst_start = clock_type::now();
    unsigned long write_failures = 0;
    for (auto& c : conns) {
        if (c.dead) {
            continue;
        }
        c.sent = clock_type::now();
        if (!write_all(c.fd, req)) {
            c.dead = true;
            ++write_failures;
            continue;
        }
        c.busy = true;
    }
    const double burst_ms = ms(clock_type::now() - burst_start);
    std::vector<double> lat;
    std::vector<double> since_burst;
    std::map<std::string, std::vector<double>> lat_by_cache;  // which path was slow
    std::map<std::string, unsigned long> statuses;
    std::map<std::string, unsigned long> cache;
    unsigned long closed = 0;
    unsigned long bad = 0;
    std::size_t pending = 0;
    for (const auto& c : conns) {
        pending += c.busy ? 1 : 0;
    }
    std::vector<epoll_event> events(1024);
    while (pending > 0 && clock_type::now() < deadline) {
        const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
        const auto now = clock_type::now();
        for (int e = 0; e < n; ++e) {
            conn& c = conns[events[static_cast<std::size_t>(e)].data.u64];
            if (!c.busy) {
                continue;
            }
            const bool open = drain(c);
            const parsed p = parse_response(c.in);
            if (p.complete) {
                lat.push_back(ms(now - c.sent));
                since_burst.push_back(ms(now - burst_start));
                ++statuses[std::to_string(p.status)];
                const std::string label = cache_label(p.cache_status);
                ++cache[label];
                lat_by_cache[label].push_back(lat.back());
                c.busy = false;
                --pending;
            } else if (p.bad || !open) {
                (p.bad ? bad : closed) += 1;
                c.busy = false;
                --pending;
            }
        }
    }
    const auto timed_out = pending;
    for (auto& c : conns) {
        if (c.fd >= 0) {
            ::close(c.fd);
        }
    }
    ::close(ep);
    // Percentiles sort in place: take them (and the max) before the printf, whose arguments
    // are evaluated in no fixed order.
    const double p50 = percentile(lat, 50);
    const double p99 = percentile(lat, 99);
    const double max = lat.empty() ? -1.0 : lat.back();
    const double burst_p50 = percentile(since_burst, 50);
    std::printf(
        "{\"mode\":\"herd\",\"n\":%lu,\"answered\":%zu,\"connect_failures\":%lu,"
        "\"write_failures\":%lu,\"closed\":%lu,\"bad\":%lu,\"timed_out\":%zu,"
        "\"burst_write_ms\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
        "\"p50_since_burst_ms\":%.3f,",
        o.n, lat.size(), connect_failures, write_failures, closed, bad, timed_out, burst_ms, p50,
        p99, max, burst_p50);
    print_counts("status", statuses);
    std::printf(",");
    print_counts("cache", cache);
    std::printf(",\"p50_ms_by_cache\":{");
    bool first = true;
    for (auto& [label, v] : lat_by_cache) {
        std::printf("%s\"%s\":%.3f", first ? "" : ",", label.c_str(), percentile(v, 50));
        first = false;
    }
    std::printf("}}\n");
    return 0;
}

int run_load(const options& o) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(o.timeout_ms);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    const unsigned nconns = static_cast<unsigned>(std::min<unsigned long>(o.conns, o.n));
    std::vector<conn> conns(nconns);
    unsigned long next = o.first;
    const unsigned long last = o.first + o.n;  // exclusive
    std::map<std::string, unsigned long> statuses;
    std::map<std::string, unsigned long> cache;
    unsigned long failures = 0;
    unsigned long done = 0;
    unsigned long long body_bytes = 0;
    std::vector<double> lat;
    lat.reserve(o.n);
    char idbuf[64];
    auto send_next = [&](std::size_t i) -> bool {
        conn& c = conns[i];
        for (int attempt = 0; attempt < 3; ++attempt) {
            if (c.fd < 0) {
                c.fd = connect_loopback(o.port);
                if (c.fd < 0) {
                    continue;
                }
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.u64 = i;
                ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
                c.in.clear();
            }
            std::snprintf(idbuf, sizeof idbuf, "%0*lu", o.width, next);
            c.sent = clock_type::now();
            if (write_all(c.fd, request_for(o.prefix + idbuf))) {
                c.busy = true;
                ++next;
                return true;
            }
            ::close(c.fd);
            c.fd = -1;
        }
        return false;
    };
    for (std::size_t i = 0; i < conns.size() && next < last; ++i) {
        if (!send_next(i)) {
            ++failures;
            ++next;
        }
    }
    const auto start = clock_type::now();
    std::vector<epoll_event> events(1024);
    std::size_t busy = 0;
    for (const auto& c : conns) {
        busy += c.busy ? 1 : 0;
    }
    while (busy > 0 && clock_type::now() < deadline) {
        const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
        for (int e = 0; e < n; ++e) {
            const std::size_t i = events[static_cast<std::size_t>(e)].data.u64;
            conn& c = conns[i];
            if (!c.busy) {
                continue;
            }
            const bool open = drain(c);
            const parsed p = parse_response(c.in);
            bool reopen = false;
            if (p.complete) {
                lat.push_back(ms(clock_type::now() - c.sent));
                ++statuses[std::to_string(p.status)];
                ++cache[cache_label(p.cache_status)];
                ++done;
                body_bytes += p.body;
                c.in.erase(0, p.length);
                reopen = !open;
            } else if (p.bad || !open) {
                ++failures;
                reopen = true;
            } else {
                continue;
            }
            c.busy = false;
            --busy;
            if (reopen) {
                ::close(c.fd);  // also leaves the epoll set
                c.fd = -1;
            }
            while (next < last && !c.busy) {
                if (!send_next(i)) {
                    ++failures;
                    ++next;
                }
            }
            busy += c.busy ? 1 : 0;
        }
    }
    const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    const double p50 = percentile(lat, 50);  // sorts: before the max, outside the printf
    const double p99 = percentile(lat, 99);
    const double max = lat.empty() ? -1.0 : lat.back();
    for (auto& c : conns) {
        if (c.fd >= 0) {
            ::close(c.fd);
        }
    }
    ::close(ep);
    std::printf(
        "{\"mode\":\"load\",\"n\":%lu,\"done\":%lu,\"failures\":%lu,\"unfinished\":%lu,"
        "\"body_bytes\":%llu,\"elapsed_s\":%.3f,\"rate\":%.1f,"
        "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,",
        o.n, done, failures, last - next + busy, body_bytes, elapsed,
        elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0, p50, p99, max);
    print_counts("status", statuses);
    std::printf(",");
    print_counts("cache", cache);
    std::printf("}\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    return o.mode == "herd" ? run_herd(o) : run_load(o);
}
