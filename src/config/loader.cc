// config::load: files -> YAML trees -> one merged tree -> the schema walk that fills a Config.
//
// The walk (loader_walker.hh) reports every problem it can find in one pass. Nothing in here
// throws on bad input; load() and load_text() catch what the standard library might throw
// (allocation) at the boundary.
#include "portcullis/base/file.hh"
#include "portcullis/config/config.hh"

#include "loader_walker.hh"
#include "yaml_tree.hh"

#include <algorithm>
#include <filesystem>
#include <tuple>

namespace portcullis::config {

namespace {

constexpr size_t max_config_file_bytes = 16u << 20;
// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto top_keys = keys_of<key_count("")>("");

} // namespace

namespace detail {

void Walker::walk(const YamlNode& root) {
    if (!root.is_mapping()) {
        error(root.mark, "",
              "expected a mapping of " + join_names(top_keys) + " at the top level, found " +
                  describe(root));
        return;
    }
    check_keys(root, "", top_keys);
    if (const YamlNode* n = section(root, "server", "")) {
        server(*n, "server");
    }
    if (const YamlNode* n = section(root, "admin", "")) {
        admin(*n, "admin");
    }
    if (const YamlNode* n = section(root, "spool", "")) {
        spool(*n, "spool");
    }
    // Sinks before routes: a route's deliver names sinks.
    if (const YamlNode* n = section(root, "sinks", "")) {
        sinks(*n, "sinks");
    }
    if (const YamlNode* n = section(root, "routes", "")) {
        routes(*n, "routes");
    }
    check_undelivered_sinks();
    if (const YamlNode* n = section(root, "tokens", "")) {
        tokens(*n, "tokens");
    }
    if (const YamlNode* n = section(root, "integrity", "")) {
        integrity(*n, "integrity");
    }
    apply_defaults();
    check_admin_clash();
}

void Walker::apply_defaults() {
    if (!_listen_given && _cfg.server.listen.empty()) {
        _cfg.server.listen.push_back(*parse_listen_address("0.0.0.0:8080"));
    }
    if (!_cfg.admin.listen && _admin_listen_node == nullptr) {
        _cfg.admin.listen = parse_listen_address("127.0.0.1:9090");
    }
}

void Walker::check_admin_clash() {
    if (!_cfg.admin.listen) {
        return;
    }
    const ListenAddress& admin = *_cfg.admin.listen;
    for (size_t i = 0; i < _cfg.server.listen.size(); ++i) {
        const ListenAddress& pub = _cfg.server.listen[i];
        if (!listen_overlaps(admin, pub)) {
            continue;
        }
        const std::string why = ": the control plane never shares a socket with the public plane";
        if (_admin_listen_node != nullptr) {
            error(_admin_listen_node->mark, "admin.listen",
                  admin.text + " overlaps server.listen " + pub.text + why);
        } else if (i < _listen_marks.size()) {
            error(_listen_marks[i], index_path("server.listen", i),
                  pub.text + " overlaps the default admin.listen " + admin.text + why);
        }
    }
    if (!_cfg.server.tls) {
        return;
    }
    for (size_t i = 0; i < _cfg.server.tls->listen.size(); ++i) {
        const ListenAddress& pub = _cfg.server.tls->listen[i];
        if (!listen_overlaps(admin, pub)) {
            continue;
        }
        const std::string why = ": the control plane never shares a socket with the public plane";
        if (_admin_listen_node != nullptr) {
            error(_admin_listen_node->mark, "admin.listen",
                  admin.text + " overlaps server.tls.listen " + pub.text + why);
        } else if (i < _tls_listen_marks.size()) {
            error(_tls_listen_marks[i], index_path("server.tls.listen", i),
                  pub.text + " overlaps the default admin.listen " + admin.text + why);
        }
    }
}

// A sink that no route delivers to does nothing: likely a route's deliver was forgotten.
void Walker::check_undelivered_sinks() {
    for (const SinkConfig& s : _cfg.sinks) {
        bool used = std::any_of(_cfg.routes.begin(), _cfg.routes.end(), [&](const auto& r) {
            return std::find(r.deliver.begin(), r.deliver.end(), s.name) != r.deliver.end();
        });
        if (!used) {
            warn(s.mark, join_path("sinks", s.name),
                 "sink " + s.name + " is not delivered to: no route lists it in deliver");
        }
    }
}

} // namespace detail

namespace {

using detail::describe;
using detail::join_names;
using detail::join_path;
using detail::Walker;
using detail::YamlNode;

// ---- files and merging -----------------------------------------------------------------------

// Deep-merges from into into: mappings merge key by key; anything else defined on both sides is
// an error naming both places. A null (`key:` alone) yields to the other side.
void merge(YamlNode& into, YamlNode&& from, const std::string& path,
           std::vector<Diagnostic>& errors) {
    for (YamlNode& member : from.children) {
        YamlNode* existing = into.find(member.key);
        std::string p = join_path(path, member.key);
        if (existing == nullptr) {
            into.children.push_back(std::move(member));
        } else if (existing->is_mapping() && member.is_mapping()) {
            merge(*existing, std::move(member), p, errors);
        } else if (member.is_null()) {
            continue;
        } else if (existing->is_null()) {
            SourceMark key_mark = existing->key_mark;
            *existing = std::move(member);
            existing->key_mark = key_mark;
        } else {
            errors.push_back(Diagnostic{member.key_mark, p,
                                        "defined again here; first defined at " +
                                            detail::format_mark(existing->key_mark)});
        }
    }
}

struct Source {
    std::string file;
    std::string text;
};

LoadResult load_sources(const std::vector<Source>& sources, std::string directory) {
    LoadResult result;
    Config cfg;
    cfg.directory = std::move(directory);
    std::optional<YamlNode> root;
    for (const Source& src : sources) {
        cfg.files.push_back(src.file);
        detail::YamlDocument doc = detail::parse_yaml(src.file, src.text);
        for (Diagnostic& d : doc.errors) {
            result.errors.push_back(std::move(d));
        }
        if (!doc.root || doc.root->is_null()) {
            continue;
        }
        if (!doc.root->is_mapping()) {
            result.errors.push_back(Diagnostic{doc.root->mark, "",
                                               "expected a mapping of " + join_names(top_keys) +
                                                   " at the top level, found " +
                                                   describe(*doc.root)});
            continue;
        }
        if (!root) {
            root = std::move(doc.root);
        } else {
            merge(*root, std::move(*doc.root), "", result.errors);
        }
    }
    // A file that does not parse would make every later message a guess; stop here.
    if (!result.errors.empty()) {
        return result;
    }
    Walker walker(result.errors, result.warnings, cfg);
    if (root) {
        walker.walk(*root);
    } else {
        walker.walk(YamlNode{YamlNode::Kind::mapping});
    }
    // The walk goes section by section and some checks run after it (shape clashes, the admin
    // socket); report in reading order instead.
    auto reading_order = [&files = cfg.files](const Diagnostic& a, const Diagnostic& b) {
        auto file_index = [&files](const std::string& f) {
            return std::find(files.begin(), files.end(), f) - files.begin();
        };
        return std::tuple(file_index(a.mark.file), a.mark.line, a.mark.column) <
               std::tuple(file_index(b.mark.file), b.mark.line, b.mark.column);
    };
    std::stable_sort(result.errors.begin(), result.errors.end(), reading_order);
    std::stable_sort(result.warnings.begin(), result.warnings.end(), reading_order);
    if (result.errors.empty()) {
        result.config = std::move(cfg);
    }
    return result;
}

LoadResult load_path(const std::string& path) {
    LoadResult result;
    auto fail = [&](std::string message) {
        result.errors.push_back(Diagnostic{SourceMark{path, 0, 0}, "", std::move(message)});
        return result;
    };
    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (ec) {
        return fail("cannot read: " + ec.message());
    }
    std::vector<Source> sources;
    std::string directory;
    if (std::filesystem::is_directory(status)) {
        directory = path;
        std::vector<std::string> names;
        for (auto it = std::filesystem::directory_iterator(path, ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
            std::string name = it->path().filename().string();
            if (name.empty() || name[0] == '.' || !name.ends_with(".yaml")) {
                continue;
            }
            std::error_code type_ec;
            if (!it->is_regular_file(type_ec)) {
                continue;
            }
            names.push_back(std::move(name));
        }
        if (ec) {
            return fail("cannot list the directory: " + ec.message());
        }
        if (names.empty()) {
            return fail("no *.yaml file in this directory");
        }
        std::sort(names.begin(), names.end());
        for (const std::string& name : names) {
            sources.push_back(Source{(std::filesystem::path(path) / name).string(), {}});
        }
    } else {
        std::filesystem::path parent = std::filesystem::path(path).parent_path();
        directory = parent.empty() ? "." : parent.string();
        sources.push_back(Source{path, {}});
    }
    for (Source& src : sources) {
        if (auto failure = base::read_regular_file(src.file, max_config_file_bytes, src.text)) {
            result.errors.push_back(
                Diagnostic{SourceMark{src.file, 0, 0}, "", "cannot read: " + *failure});
        }
    }
    if (!result.errors.empty()) {
        return result;
    }
    return load_sources(sources, std::move(directory));
}

LoadResult internal_error(const std::string& name, const char* what) {
    LoadResult result;
    result.errors.push_back(Diagnostic{SourceMark{name, 0, 0}, "",
                                       std::string("internal error while loading: ") + what});
    return result;
}

} // namespace

LoadResult load(const std::string& path) {
    try {
        return load_path(path);
    } catch (const std::exception& e) {
        return internal_error(path, e.what());
    } catch (...) {
        return internal_error(path, "unknown exception");
    }
}

LoadResult load_text(const std::string& name, const std::string& yaml) {
    try {
        return load_sources({Source{name, yaml}}, "");
    } catch (const std::exception& e) {
        return internal_error(name, e.what());
    } catch (...) {
        return internal_error(name, "unknown exception");
    }
}

} // namespace portcullis::config
