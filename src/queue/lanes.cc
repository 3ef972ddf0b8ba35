#include "portcullis/queue/lanes.hh"

#include "portcullis/base/file.hh"
#include "portcullis/config/config.hh"
#include "portcullis/queue/segment.hh"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::queue {

namespace {

// The configuration's rule for sink names ([a-z0-9_-]{1,64}), or a registered consumer's sink
// (consumer:<name>): a name that breaks both was not written by portcullis.
bool sink_name_ok(std::string_view name) {
    return config::is_name(name) || config::is_consumer_name(name);
}

// 1..255 in decimal without sign or leading zero; 0 otherwise.
unsigned parse_lane(std::string_view s) {
    if (s.empty() || s.size() > 3 || s[0] == '0') {
        return 0;
    }
    unsigned n = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return 0;
        }
        n = n * 10 + static_cast<unsigned>(c - '0');
    }
    return n <= max_lane ? n : 0;
}

} // namespace

std::string parse_lanes(std::string_view text, const std::string& path,
                        std::vector<LaneName>& out) {
    out.clear();
    std::array<size_t, max_lane + 1> line_of_lane{}; // 0: not listed yet
    size_t line = 0;
    while (!text.empty()) {
        ++line;
        const size_t end = text.find('\n');
        const std::string where = path + ":" + std::to_string(line) + ": ";
        if (end == std::string_view::npos) {
            // portcullis ends every line: a last line without one was cut short or hand-made.
            return where + "no newline at the end of the line (cut short?)";
        }
        const std::string_view l = text.substr(0, end);
        text.remove_prefix(end + 1);
        if (l.empty() || l[0] == '#') {
            continue;
        }
        const size_t space = l.find(' ');
        const unsigned lane = space == std::string_view::npos ? 0 : parse_lane(l.substr(0, space));
        const std::string_view name =
            space == std::string_view::npos ? std::string_view() : l.substr(space + 1);
        if (lane == 0 || !sink_name_ok(name)) {
            return where + "expected \"<lane 1-255> <sink name>\"";
        }
        if (line_of_lane[lane] != 0) {
            return where + "lane " + std::to_string(lane) + " listed twice (first on line " +
                   std::to_string(line_of_lane[lane]) + ")";
        }
        for (const LaneName& seen : out) {
            if (seen.sink == name) {
                return where + "sink " + std::string(name) + " listed twice (first with lane " +
                       std::to_string(seen.lane) + ")";
            }
        }
        line_of_lane[lane] = line;
        out.push_back({static_cast<uint8_t>(lane), std::string(name)});
    }
    return {};
}

std::string format_lanes(const std::vector<LaneName>& lanes) {
    std::vector<LaneName> sorted = lanes;
    std::sort(sorted.begin(), sorted.end(),
              [](const LaneName& a, const LaneName& b) { return a.lane < b.lane; });
    std::string text = "# Delivery lanes: the number each sink's settlements carry in ledger.log.\n"
                       "# Written by portcullis; never renumber a sink while the ledger has ops.\n";
    for (const LaneName& l : sorted) {
        text += std::to_string(l.lane) + " " + l.sink + "\n";
    }
    return text;
}

std::string read_lanes(const std::string& dir, std::vector<LaneName>& out) {
    out.clear();
    const std::string path = dir + "/" + std::string(lanes_file_name);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
        return {};
    }
    std::string text;
    if (auto why = base::read_regular_file(path, 64 * 1024, text)) {
        return "cannot read " + path + ": " + *why;
    }
    return parse_lanes(text, path, out);
}

std::string write_lanes(const std::string& dir, const std::vector<LaneName>& lanes) {
    const std::string text = format_lanes(lanes);
    return base::replace_file(dir + "/" + std::string(lanes_file_name), [&](int fd) {
        return base::write_all(fd, text.data(), text.size());
    });
}

LaneAssignment assign_lanes(std::vector<LaneName> listed, std::span<const std::string> sinks,
                            const std::string& path) {
    LaneAssignment a;
    a.listed = std::move(listed);
    a.lanes = a.listed;
    auto configured = [&](const std::string& name) {
        return std::find(sinks.begin(), sinks.end(), name) != sinks.end();
    };
    for (const std::string& sink : sinks) {
        auto it = std::find_if(a.lanes.begin(), a.lanes.end(),
                               [&](const LaneName& l) { return l.sink == sink; });
        if (it != a.lanes.end()) {
            a.sink_lanes.push_back(it->lane);
            continue;
        }
        std::array<bool, max_lane + 1> taken{};
        for (const LaneName& l : a.lanes) {
            taken[l.lane] = true;
        }
        unsigned lane = 1;
        while (lane <= max_lane && taken[lane]) {
            ++lane;
        }
        if (lane > max_lane) {
            // Every number is listed: take back one of a sink that is no longer configured.
            auto old = std::find_if(a.lanes.begin(), a.lanes.end(),
                                    [&](const LaneName& l) { return !configured(l.sink); });
            if (old == a.lanes.end()) {
                a.error = path + ": more than " + std::to_string(max_lane) +
                          " sinks configured; each needs a delivery lane of its own";
                return a;
            }
            lane = old->lane;
            a.lanes.erase(old);
            a.reclaimed = true;
        }
        a.lanes.push_back({static_cast<uint8_t>(lane), sink});
        a.sink_lanes.push_back(static_cast<uint8_t>(lane));
        a.changed = true;
    }
    return a;
}

} // namespace portcullis::queue
