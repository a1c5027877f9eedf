// imagegate-emulator: the Cloudflare Images API emulator as a program, for the quickstart,
// benchmarks and manual testing. Exits 0 on SIGINT/SIGTERM.
#include "tests/emulator/emulator.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace {

namespace testing = imagegate::testing;

constexpr const char* usage = R"(usage: imagegate-emulator [options]
  --listen HOST:PORT      address to listen on (default 127.0.0.1:8443; port 0 picks one)
  --plaintext             plain HTTP instead of TLS
  --write-ca FILE         write the generated CA certificate (PEM) to FILE
  --port-file FILE        write the bound port to FILE once listening
  --token T               accepted bearer token (default: $EMULATOR_TOKEN or emulator-token)
  --account ID            known account id (repeatable; default 023e105f4ecef8ad9ca31a8372d0c353)
  --images N              seeded images per account (default 100)
  --custom-id ID          also seed this id in every account (repeatable; may hold '/')
  --seed S                seed of the image set (default 1)
  --any-image             every image id exists
  --rate-limit N          requests per window per token (default 1200)
  --rate-window SECONDS   rate-limit window (default 300)
  --limiter fixed|sliding fixed window (default) or at most N calls in ANY window
  --block SECONDS         how long exceeding the limit blocks (default 300; 0: no block)
  --upload-limit BYTES    body bytes of an upload or echoed request (default 10551296)
  --threads N             I/O threads (default 1)
  --help                  this text
)";

struct usage_error {
  std::string what;
};

template <class T>
T number(std::string_view flag, std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    throw usage_error{std::string(flag) + ": not a number: " + std::string(s)};
  }
  return v;
}

struct cli {
  testing::emulator_options opts;
  std::string write_ca;
  std::string port_file;
  unsigned threads = 1;
  bool help = false;
};

cli parse(int argc, char** argv) {
  cli c;
  c.opts.port = 8443;
  if (const char* t = std::getenv("EMULATOR_TOKEN"); t != nullptr && *t != '\0') {
    c.opts.token = t;
  }
  bool accounts_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        throw usage_error{std::string(flag) + " needs a value"};
      }
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      c.help = true;
    } else if (flag == "--listen") {
      std::string_view hp = value();
      auto colon = hp.rfind(':');
      if (colon == std::string_view::npos) {
        throw usage_error{"--listen wants HOST:PORT"};
      }
      std::string_view host = hp.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
      }
      c.opts.host = std::string(host);
      c.opts.port = number<std::uint16_t>(flag, hp.substr(colon + 1));
    } else if (flag == "--plaintext") {
      c.opts.tls = false;
    } else if (flag == "--write-ca") {
      c.write_ca = value();
    } else if (flag == "--port-file") {
      c.port_file = value();
    } else if (flag == "--token") {
      c.opts.token = value();
    } else if (flag == "--account") {
      if (!accounts_given) {
        c.opts.accounts.clear();
        accounts_given = true;
      }
      c.opts.accounts.emplace_back(value());
    } else if (flag == "--images") {
      c.opts.image_count = number<std::size_t>(flag, value());
    } else if (flag == "--custom-id") {
      c.opts.custom_ids.emplace_back(value());
    } else if (flag == "--limiter") {
      std::string_view mode = value();
      if (mode == "fixed") {
        c.opts.rate_limit_mode = testing::limiter_mode::fixed_window;
      } else if (mode == "sliding") {
        c.opts.rate_limit_mode = testing::limiter_mode::sliding_window;
      } else {
        throw usage_error{"--limiter wants fixed or sliding"};
      }
    } else if (flag == "--upload-limit") {
      c.opts.upload_limit = number<std::size_t>(flag, value());
    } else if (flag == "--seed") {
      c.opts.seed = number<std::uint64_t>(flag, value());
    } else if (flag == "--any-image") {
      c.opts.any_image_exists = true;
    } else if (flag == "--rate-limit") {
      c.opts.rate_limit = number<std::uint64_t>(flag, value());
    } else if (flag == "--rate-window") {
      c.opts.rate_window = std::chrono::seconds(number<std::uint32_t>(flag, value()));
    } else if (flag == "--block") {
      c.opts.block_duration = std::chrono::seconds(number<std::uint32_t>(flag, value()));
    } else if (flag == "--threads") {
      c.threads = number<unsigned>(flag, value());
      if (c.threads == 0) {
        throw usage_error{"--threads must be at least 1"};
      }
    } else {
      throw usage_error{"unknown option " + std::string(flag)};
    }
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  cli c;
  try {
    c = parse(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "imagegate-emulator: " << e.what << "\n" << usage;
    return 2;
  }
  if (c.help) {
    std::cout << usage;
    return 0;
  }
  try {
    if (c.opts.tls) {
      c.opts.certs = testing::make_test_pki();
    }
    imagegate::asio::io_context ioc(static_cast<int>(c.threads));
    c.opts.single_threaded = c.threads == 1;  // only this thread runs ioc
    testing::emulator emu(ioc.get_executor(), c.opts);
    emu.start();
    if (!c.write_ca.empty()) {
      testing::write_file(c.write_ca, emu.ca_pem());
    }
    if (!c.port_file.empty()) {
      testing::write_file(c.port_file, std::to_string(emu.port()) + "\n");
    }

    imagegate::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&emu](const boost::system::error_code& ec, int) {
      if (!ec) {
        emu.stop();
      }
    });
    std::cout << "imagegate-emulator: listening on " << emu.base_url() << std::endl;

    std::vector<std::thread> pool;
    for (unsigned i = 1; i < c.threads; ++i) {
      pool.emplace_back([&ioc] { ioc.run(); });
    }
    ioc.run();
    for (auto& t : pool) {
      t.join();
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "imagegate-emulator: " << e.what() << "\n";
    return 1;
  }
}
