// A streaming multipart/form-data reader (RFC 7578 over RFC 2046) for the emulator's image
// upload: the `file` part is hashed as it passes, small fields are kept, nothing else is held.
#pragma once

#include "tests/emulator/digest.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::testing {

/// What an upload body held, as far as the emulator keeps it.
struct upload_form {
  /// Set when the body is not well-formed multipart/form-data (the reason, for a 400).
  std::optional<std::string> error;
  bool has_file = false;          ///< a part named `file` was present
  std::uint64_t file_bytes = 0;   ///< its content length
  std::string file_sha256;        ///< hex SHA-256 of its content
  std::string file_name;          ///< its Content-Disposition `filename` (may be empty)
  std::string file_content_type;  ///< its Content-Type (may be empty)
  /// The small parts (`id`, `url`, `metadata`, `requireSignedURLs`, `creator`), by name.
  std::map<std::string, std::string, std::less<>> fields;
  /// Names of other parts; their content was discarded.
  std::vector<std::string> ignored;
};

/// The `boundary` parameter of a `multipart/form-data` Content-Type (1 to 70 printable
/// characters), or nullopt when the type is another one or the boundary is missing/invalid.
std::optional<std::string> multipart_boundary(std::string_view content_type);

/// Reads one multipart/form-data body fed in pieces of any size. Holds at most the last
/// piece plus a delimiter's length, a part's header block (≤ 8 KiB) and the small fields
/// (≤ 8 KiB each, ≤ 32 parts). Owned by the connection reading the body; not thread-safe.
class multipart_reader {
 public:
  static constexpr std::size_t max_header_block = 8 * 1024;
  static constexpr std::size_t max_field_bytes = 8 * 1024;
  static constexpr std::size_t max_parts = 32;

  explicit multipart_reader(std::string_view boundary);

  void feed(std::string_view bytes);
  /// The body ended: without a closing delimiter before it, the form is malformed.
  void finish();
  /// The form read so far (complete after finish()).
  const upload_form& form() const noexcept { return form_; }
  /// Bytes held now (pending input and kept field values).
  std::size_t held() const noexcept;

 private:
  enum class state { preamble, after_delimiter, headers, data, epilogue, failed };
  enum class part_kind { file, field, ignored };

  void fail(std::string why);
  void begin_part(std::string_view header_block);
  void part_data(std::string_view bytes);
  void end_part();

  std::string delimiter_;  // CRLF "--" boundary
  std::string pending_;
  state state_ = state::preamble;
  part_kind kind_ = part_kind::ignored;
  std::string field_name_;
  std::size_t parts_ = 0;
  std::size_t field_bytes_ = 0;
  sha256 file_hash_;
  upload_form form_;
};

}  // namespace imagegate::testing
