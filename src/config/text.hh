// Text helpers shared by the loader's files: quoting user text in messages, ASCII case, and the
// edit distance behind "did you mean".
#pragma once

#include <string>
#include <string_view>

namespace portcullis::config::detail {

// Quotes text for a message: at most max_shown bytes (npos: all of it), escaped by
// base::escape_text (control bytes, quotes and backslashes as \xNN), so that whatever a
// configuration holds cannot garble a terminal. Never pass secret material. Key paths and file
// names are escaped the same way (Diagnostic::format, format_mark), without the quotes.
std::string quote(std::string_view text, size_t max_shown = 40);

std::string ascii_lowercase(std::string_view s);

// Edit distance (insertions, deletions, substitutions, swaps of neighbours), for suggesting the
// closest allowed key.
size_t edit_distance(std::string_view a, std::string_view b);

} // namespace portcullis::config::detail
