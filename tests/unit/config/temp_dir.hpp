// A scratch directory under the system temp dir, removed with everything in it on scope exit.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

namespace imagegate::config::test {

/// Owned by one test; not thread-safe.
class temp_dir {
public:
    temp_dir() {
        std::random_device rd;
        for (int attempt = 0; attempt < 100; ++attempt) {
            auto candidate = std::filesystem::temp_directory_path() /
                             ("imagegate-config-test-" + std::to_string(rd()));
            if (std::filesystem::create_directory(candidate)) {
                path_ = std::move(candidate);
                return;
            }
        }
        throw std::runtime_error("cannot create a temporary directory");
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }

    const std::filesystem::path& path() const { return path_; }

    /// Writes `content` to `name` inside the directory and sets its permission bits.
    std::string write(std::string_view name, std::string_view content,
                      std::filesystem::perms mode = std::filesystem::perms::owner_read |
                                                    std::filesystem::perms::owner_write) const {
        const auto file = path_ / name;
        {
            std::ofstream out(file, std::ios::binary | std::ios::trunc);
            out.write(content.data(), static_cast<std::streamsize>(content.size()));
        }
        std::filesystem::permissions(file, mode);
        return file.string();
    }

private:
    std::filesystem::path path_;
};

}  // namespace imagegate::config::test
