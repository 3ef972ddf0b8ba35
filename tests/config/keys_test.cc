// The key table (config/keys.hh) against the loader: every key of the table is accepted with
// its example and read (a bad value there is reported there), every key name the loader looks
// up is in the table, and the table's paths are well formed. The loader's unknown-key check
// takes its lists from the table, so a key missing from it is refused (loader_test.cc).
#include "portcullis/config/config.hh"
#include "portcullis/config/keys.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace portcullis::config;

namespace {

constexpr std::string_view kinds[] = {"http", "exec", "nats", "redis"};

std::vector<std::string> split(std::string_view path) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t dot = path.find('.'); dot != std::string_view::npos; dot = path.find('.', start)) {
        out.emplace_back(path.substr(start, dot - start));
        start = dot + 1;
    }
    out.emplace_back(path.substr(start));
    return out;
}

// The components of a table path made concrete: `*` becomes x (a sink: named after its kind, so
// that the base configuration holds one sink of each kind), `<secret>` the first of the base
// route's secrets. List items keep their "[]" suffix.
std::vector<std::string> concrete(std::string_view path) {
    std::vector<std::string> parts = split(path);
    std::vector<std::string> out;
    for (size_t i = 0; i < parts.size(); ++i) {
        if (parts[i] == "<secret>") {
            for (const char* p : {"routes", "x", "verify", "secrets[]"}) {
                out.emplace_back(p);
            }
        } else if (parts[i] == "*" && i > 0 && parts[i - 1] == "sinks") {
            bool kind = i + 1 < parts.size() && std::find(std::begin(kinds), std::end(kinds),
                                                          parts[i + 1]) != std::end(kinds);
            out.push_back(kind ? parts[i + 1] : "http");
        } else if (parts[i] == "*") {
            out.emplace_back("x");
        } else {
            out.push_back(parts[i]);
        }
    }
    return out;
}

// As the loader's messages name it: "server.tls.certificates[0].cert".
std::string key_path(const std::vector<std::string>& parts) {
    std::string out;
    for (const std::string& p : parts) {
        out +=
            (out.empty() ? "" : ".") + (p.ends_with("[]") ? p.substr(0, p.size() - 2) + "[0]" : p);
    }
    return out;
}

// a is b, or inside it.
bool within(const std::string& a, const std::string& b) {
    return a == b || (a.starts_with(b) && (a[b.size()] == '.' || a[b.size()] == '['));
}

// A YAML document built from (path, value) leaves, printed in block style.
struct Node {
    std::string value; // a leaf's YAML text
    bool list = false; // the value is a list of one mapping: the children
    std::vector<std::pair<std::string, std::unique_ptr<Node>>> children;

    Node& child(const std::string& name) {
        for (auto& [n, c] : children) {
            if (n == name) {
                return *c;
            }
        }
        children.emplace_back(name, std::make_unique<Node>());
        return *children.back().second;
    }
    void set(const std::vector<std::string>& parts, const std::string& v) {
        Node* n = this;
        for (const std::string& p : parts) {
            bool item = p.ends_with("[]");
            n = &n->child(item ? p.substr(0, p.size() - 2) : p);
            n->list = n->list || item;
        }
        n->value = v;
    }
    void print(std::ostream& out, size_t indent) const {
        for (const auto& [name, c] : children) {
            out << std::string(indent, ' ') << name << ":";
            if (c->children.empty()) {
                out << " " << c->value << "\n";
            } else if (c->list) {
                out << "\n" << std::string(indent + 2, ' ') << "-\n";
                c->print(out, indent + 4);
            } else {
                out << "\n";
                c->print(out, indent + 2);
            }
        }
    }
};

struct Leaf {
    std::string path; // concrete
    std::string value;
};

// What the keys need around them: a route with every verify option possible (hmac, with a
// signed timestamp), and one sink of each kind (over TLS, so that ca applies).
const std::vector<Leaf> base = {
    {"routes.x.path", "/x"},
    {"routes.x.verify.scheme", "hmac"},
    {"routes.x.verify.header", "X-Sig"},
    {"routes.x.verify.timestamp_header", "X-Ts"},
    {"routes.x.verify.secrets", "[{env: PORTCULLIS_KEYS_TEST}]"},
    {"sinks.http.http.url", "\"https://127.0.0.1:1/\""},
    {"sinks.exec.exec.command", "[/bin/true]"},
    {"sinks.nats.nats.url", "\"tls://127.0.0.1:4222\""},
    {"sinks.nats.nats.subject", "x"},
    {"sinks.redis.redis.url", "\"rediss://127.0.0.1:6379\""},
    {"sinks.redis.redis.stream", "x"},
};

class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "keys-test-XXXXXX").string();
        EXPECT_NE(mkdtemp(pattern.data()), nullptr);
        _path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::filesystem::path path() const { return _path; }

private:
    std::filesystem::path _path;
};

// Loads the base configuration with the key of row set to value (the base's leaves at, inside
// or around that key left out). The folder also holds an empty file x, for integrity's pin.
LoadResult load_with(const KeyDoc& row, const std::string& value, std::string& yaml) {
    std::vector<std::string> parts = concrete(row.path);
    std::string where = key_path(parts);
    Node doc;
    for (const Leaf& l : base) {
        if (!within(l.path, where) && !within(where, l.path)) {
            doc.set(split(l.path), l.value);
        }
    }
    doc.set(parts, value);
    std::ostringstream out;
    doc.print(out, 0);
    yaml = out.str();
    TempDir dir;
    std::ofstream(dir.path() / "x").close();
    std::ofstream(dir.path() / "c.yaml") << yaml;
    return load((dir.path() / "c.yaml").string());
}

std::string at_or_inside(const std::vector<Diagnostic>& ds, const std::string& where) {
    std::string out;
    for (const Diagnostic& d : ds) {
        if (within(d.key_path, where) || d.message.starts_with("unknown key")) {
            out += d.format() + "\n";
        }
    }
    return out;
}

std::string formatted(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const Diagnostic& d : ds) {
        out += d.format() + "\n";
    }
    return out;
}

} // namespace

TEST(ConfigKeys, PathsAreUniqueAndEachHasItsParent) {
    std::set<std::string_view> paths;
    for (const KeyDoc& k : key_table) {
        EXPECT_TRUE(paths.insert(k.path).second) << "listed twice: " << k.path;
        std::string_view parent = key_parent(k.path);
        if (!parent.empty() && parent != "<secret>") {
            if (parent.ends_with("[]")) {
                parent.remove_suffix(2);
            }
            EXPECT_TRUE(paths.contains(parent)) << k.path << ": its parent comes first";
        }
        EXPECT_FALSE(k.type.empty()) << k.path;
        EXPECT_FALSE(k.example.empty()) << k.path;
        EXPECT_FALSE(k.meaning.empty()) << k.path;
    }
}

// The base configuration itself is valid, so that what the next tests see is the key's doing.
TEST(ConfigKeys, TheBaseConfigurationLoads) {
    Node doc;
    for (const Leaf& l : base) {
        doc.set(split(l.path), l.value);
    }
    std::ostringstream out;
    doc.print(out, 0);
    LoadResult res = load_text("c.yaml", out.str());
    EXPECT_TRUE(res.ok()) << out.str() << "---\n" << formatted(res.errors);
}

// A key of the table, set to its example, is accepted: no error at it or inside it, and no
// unknown key anywhere.
TEST(ConfigKeys, EveryKeyIsAcceptedWithItsExample) {
    for (const KeyDoc& row : key_table) {
        std::string yaml;
        LoadResult res = load_with(row, std::string(row.example), yaml);
        std::string where = key_path(concrete(row.path));
        EXPECT_EQ(at_or_inside(res.errors, where), "")
            << row.path << " = " << row.example << "\n---\n"
            << yaml;
    }
}

// A key of the table is read: a value of the wrong shape there is reported there. (A key the
// loader allowed but never read would pass silently.)
TEST(ConfigKeys, EveryKeyIsRead) {
    for (const KeyDoc& row : key_table) {
        std::string yaml;
        LoadResult res = load_with(row, "[{zz: 1}]", yaml);
        std::string where = key_path(concrete(row.path));
        bool found = false;
        for (const Diagnostic& d : res.errors) {
            found = found || within(d.key_path, where);
        }
        EXPECT_TRUE(found) << row.path << " = [{zz: 1}] was not reported at " << where << "\n---\n"
                           << yaml << "---\n"
                           << formatted(res.errors);
    }
}

// Every key name the loader's code looks up (find("..."), required(..., "..."), key == "...")
// is a key of the table: a lookup outside the table would read a key the check refuses.
TEST(ConfigKeys, EveryNameTheLoaderLooksUpIsInTheTable) {
    const char* root = std::getenv("PORTCULLIS_SOURCE_ROOT");
    if (root == nullptr) {
        GTEST_SKIP() << "PORTCULLIS_SOURCE_ROOT is not set";
    }
    std::set<std::string_view> names;
    for (const KeyDoc& k : key_table) {
        names.insert(key_name(k.path));
    }
    const std::regex lookup(
        R"re((?:find|required)\([^()"]*"([A-Za-z_]+)"|key == "([A-Za-z_]+)")re");
    size_t seen = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::path(root) / "src" / "config")) {
        std::string file = entry.path().filename().string();
        if (!file.starts_with("loader") || !file.ends_with(".cc")) {
            continue;
        }
        std::ifstream in(entry.path());
        std::stringstream text;
        text << in.rdbuf();
        const std::string s = text.str();
        for (auto it = std::sregex_iterator(s.begin(), s.end(), lookup);
             it != std::sregex_iterator(); ++it) {
            std::string name = (*it)[1].matched ? (*it)[1].str() : (*it)[2].str();
            EXPECT_TRUE(names.contains(name))
                << file << " looks up \"" << name << "\", which keys.hh does not list";
            ++seen;
        }
    }
    EXPECT_GT(seen, 50u) << "the pattern no longer matches the loader's lookups";
}
