#include "text.hh"

#include "portcullis/base/encoding.hh"

#include <algorithm>
#include <utility>
#include <vector>

namespace portcullis::config::detail {

std::string quote(std::string_view text, size_t max_shown) {
    size_t shown = std::min(text.size(), max_shown);
    // Cut between characters, not inside one (a UTF-8 sequence is at most 4 bytes): a split
    // sequence would show as \xNN bytes.
    for (size_t back = 0; back < 3 && shown < text.size() && shown > 0 &&
                          (static_cast<uint8_t>(text[shown]) & 0xc0) == 0x80;
         ++back) {
        --shown;
    }
    std::string out = "\"" + base::escape_text(text.substr(0, shown));
    if (shown < text.size()) {
        out += "...";
    }
    return out + "\"";
}

std::string ascii_lowercase(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c + ('a' - 'A'));
        }
    }
    return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
    // Optimal string alignment: Levenshtein plus swapping two neighbours, the commonest typo
    // ("dri" for "dir"). Three rows: the previous two and the one being filled.
    std::vector<size_t> before(b.size() + 1);
    std::vector<size_t> previous(b.size() + 1);
    std::vector<size_t> current(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) {
        previous[j] = j;
    }
    for (size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t substitution = previous[j - 1] + (a[i - 1] != b[j - 1] ? 1 : 0);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                current[j] = std::min(current[j], before[j - 2] + 1);
            }
        }
        std::swap(before, previous);
        std::swap(previous, current);
    }
    return previous[b.size()];
}

} // namespace portcullis::config::detail
