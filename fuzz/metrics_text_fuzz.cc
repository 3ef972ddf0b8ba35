// Drives what `portcullis top` does with a /metrics body from the network: the text reader
// line by line, read_scrape, a view of two scrapes (this one against itself and against an
// empty one) and the screen at a size taken from the input. Checks on every line: views inside
// the input, labels within bounds, label_is agreeing with label; every screen line at most the
// width and printable ASCII; the reader failing exactly when read_scrape does.
#include "portcullis/admin/metrics_text.hh"
#include "portcullis/admin/top_model.hh"
#include "portcullis/admin/top_screen.hh"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace portcullis::admin;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool inside(std::string_view v, std::string_view buf) {
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    MetricsTextReader reader(text);
    MetricLine m;
    size_t last_line = 0;
    while (reader.next(m)) {
        check(reader.line_number() > last_line);
        last_line = reader.line_number();
        check(!m.name.empty() && inside(m.name, text) && inside(m.text, text));
        check(m.label_count <= MetricLine::max_labels);
        for (size_t i = 0; i < m.label_count; ++i) {
            check(!m.labels[i].name.empty() && inside(m.labels[i].name, text));
            check(inside(m.labels[i].raw_value, text));
            std::string value;
            check(m.label(m.labels[i].name, value));
            // The first label of that name is the one label() and label_is() read.
            bool first = true;
            for (size_t j = 0; j < i; ++j) {
                first = first && m.labels[j].name != m.labels[i].name;
            }
            if (first) {
                check(m.label_is(m.labels[i].name, value));
            }
        }
    }
    const bool failed = !reader.error().empty();

    Scrape now;
    now.taken_ns = 2'000'000'000;
    std::string error;
    const bool ok = read_scrape(text, now, error);
    check(ok == !failed);
    check(ok == error.empty());
    if (!ok) {
        return 0;
    }
    Scrape empty;
    empty.taken_ns = 1'000'000'000;
    const TopView views[] = {make_view(nullptr, now, 1'800'000'000),
                             make_view(&empty, now, 1'800'000'000), make_view(&now, now, 0)};
    const size_t width = size % 200;
    const size_t height = size % 7 == 0 ? 0 : size % 60;
    for (const TopView& v : views) {
        ScreenInput in;
        in.view = &v;
        in.url = "http://127.0.0.1:9090";
        const auto lines = render_screen(in, width, height);
        check(height == 0 || lines.size() <= height);
        for (const ScreenLine& l : lines) {
            check(l.text.size() <= width);
            for (char c : l.text) {
                check(c >= 0x20 && c <= 0x7e);
            }
        }
    }
    return 0;
}
