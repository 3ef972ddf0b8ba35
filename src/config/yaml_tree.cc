#include "yaml_tree.hh"

#include "portcullis/base/encoding.hh"

#include "text.hh"

#include <unordered_map>

#include <yaml.h>

namespace portcullis::config::detail {

bool YamlNode::is_null() const {
    return kind == Kind::scalar && !quoted &&
           (value.empty() || value == "~" || value == "null" || value == "Null" || value == "NULL");
}

const YamlNode* YamlNode::find(std::string_view k) const {
    if (kind != Kind::mapping) {
        return nullptr;
    }
    for (const YamlNode& child : children) {
        if (child.key == k) {
            return &child;
        }
    }
    return nullptr;
}

YamlNode* YamlNode::find(std::string_view k) {
    return const_cast<YamlNode*>(static_cast<const YamlNode*>(this)->find(k));
}

std::string join_path(const std::string& path, std::string_view key) {
    if (path.empty()) {
        return std::string(key);
    }
    std::string out = path;
    out += '.';
    out += key;
    return out;
}

std::string index_path(const std::string& path, size_t index) {
    return path + '[' + std::to_string(index) + ']';
}

std::string format_mark(const SourceMark& mark) {
    return base::escape_text(mark.file) + ':' + std::to_string(mark.line) + ':' +
           std::to_string(mark.column);
}

namespace {

// Owns libyaml's parser and the current event, so every exit path frees them.
class EventReader {
public:
    EventReader(std::string_view text) {
        _ready = yaml_parser_initialize(&_parser) != 0;
        if (_ready) {
            yaml_parser_set_input_string(
                &_parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
        }
    }
    ~EventReader() {
        release_event();
        if (_ready) {
            yaml_parser_delete(&_parser);
        }
    }
    EventReader(const EventReader&) = delete;
    EventReader& operator=(const EventReader&) = delete;

    bool ready() const { return _ready; }
    // False on a syntax error; the error is then in parser().
    bool next() {
        release_event();
        if (yaml_parser_parse(&_parser, &_event) == 0) {
            return false;
        }
        _has_event = true;
        return true;
    }
    const yaml_event_t& event() const { return _event; }
    const yaml_parser_t& parser() const { return _parser; }

private:
    void release_event() {
        if (_has_event) {
            yaml_event_delete(&_event);
            _has_event = false;
        }
    }

    yaml_parser_t _parser{};
    yaml_event_t _event{};
    bool _ready = false;
    bool _has_event = false;
};

class TreeBuilder {
public:
    TreeBuilder(const std::string& file, YamlDocument& doc) : _file(file), _doc(doc) {}

    SourceMark mark_of(const yaml_mark_t& m) const {
        return SourceMark{_file, static_cast<int>(m.line) + 1, static_cast<int>(m.column) + 1};
    }

    void error(const yaml_mark_t& m, std::string message) {
        error(mark_of(m), path_here(), std::move(message));
    }
    void error(const SourceMark& mark, std::string path, std::string message) {
        _doc.errors.push_back(Diagnostic{mark, std::move(path), std::move(message)});
    }

    // The key path of the slot the next node fills.
    std::string path_here() const {
        std::string path;
        for (const YamlNode& open : _open) {
            if (open.is_sequence()) {
                path = index_path(path, open.children.size());
            } else if (open.children.size() % 2 == 1 && open.children.back().is_scalar()) {
                path = join_path(path, open.children.back().value);
            } else {
                break; // a key slot: the path is the mapping's own
            }
        }
        return path;
    }

    size_t depth() const { return _open.size(); }

    void open(YamlNode node) { _open.push_back(std::move(node)); }

    void add(YamlNode node) {
        if (_open.empty()) {
            _doc.root = std::move(node);
        } else {
            _open.back().children.push_back(std::move(node));
        }
    }

    void close() {
        YamlNode node = std::move(_open.back());
        _open.pop_back();
        if (node.is_mapping()) {
            pair_members(node);
        }
        add(std::move(node));
    }

private:
    // libyaml reports a mapping as alternating key and value events; turn the pairs into members
    // that carry their key, refusing keys that are not strings and keys given twice.
    void pair_members(YamlNode& mapping) {
        std::string path = path_here();
        std::vector<YamlNode> flat = std::move(mapping.children);
        mapping.children.clear();
        std::unordered_map<std::string, size_t> seen;
        for (size_t i = 0; i + 1 < flat.size(); i += 2) {
            YamlNode& key = flat[i];
            YamlNode& value = flat[i + 1];
            if (!key.is_scalar()) {
                error(key.mark, path,
                      std::string("keys must be strings, found a ") +
                          (key.is_mapping() ? "mapping" : "list"));
                continue;
            }
            if (key.is_null()) {
                error(key.mark, path, "empty key");
                continue;
            }
            auto [it, inserted] = seen.emplace(key.value, mapping.children.size());
            if (!inserted) {
                error(key.mark, join_path(path, key.value),
                      "duplicate key " + quote(key.value) + "; first defined at " +
                          format_mark(mapping.children[it->second].key_mark));
                continue;
            }
            value.key = std::move(key.value);
            value.key_mark = key.mark;
            mapping.children.push_back(std::move(value));
        }
    }

    const std::string& _file;
    YamlDocument& _doc;
    std::vector<YamlNode> _open;
};

std::string syntax_error_message(const yaml_parser_t& p) {
    if (p.error == YAML_MEMORY_ERROR) {
        return "out of memory while parsing";
    }
    std::string message = p.problem != nullptr ? p.problem : "invalid YAML";
    if (p.problem_offset != 0 && p.error == YAML_READER_ERROR) {
        message += " (byte offset " + std::to_string(p.problem_offset) + ")";
    }
    if (p.context != nullptr) {
        message += std::string(" (") + p.context + " at line " +
                   std::to_string(p.context_mark.line + 1) + " column " +
                   std::to_string(p.context_mark.column + 1) + ")";
    }
    return message;
}

// Anchors and tags make a configuration mean something other than what it reads as.
bool refuse_anchor_and_tag(TreeBuilder& b, const yaml_event_t& e, const yaml_char_t* anchor,
                           const yaml_char_t* tag) {
    bool ok = true;
    if (anchor != nullptr) {
        b.error(e.start_mark, "anchors (&name) are not supported: write each value out");
        ok = false;
    }
    if (tag != nullptr) {
        b.error(e.start_mark, "tags (!name) are not supported");
        ok = false;
    }
    return ok;
}

YamlNode make_node(const TreeBuilder& b, const yaml_event_t& e, YamlNode::Kind kind) {
    YamlNode node;
    node.kind = kind;
    node.mark = b.mark_of(e.start_mark);
    return node;
}

} // namespace

YamlDocument parse_yaml(const std::string& file, std::string_view text) {
    YamlDocument doc;
    TreeBuilder builder(file, doc);
    EventReader reader(text);
    if (!reader.ready()) {
        doc.errors.push_back(
            Diagnostic{SourceMark{file, 0, 0}, "", "cannot start the YAML parser"});
        return doc;
    }
    int documents = 0;
    for (;;) {
        if (!reader.next()) {
            const yaml_parser_t& p = reader.parser();
            SourceMark mark = builder.mark_of(p.problem_mark);
            if (p.error == YAML_READER_ERROR) {
                // Reader errors carry only a byte offset.
                mark = SourceMark{file, 0, 0};
            }
            doc.errors.push_back(Diagnostic{mark, builder.path_here(), syntax_error_message(p)});
            doc.root.reset();
            return doc;
        }
        const yaml_event_t& e = reader.event();
        switch (e.type) {
        case YAML_STREAM_END_EVENT:
            if (!doc.errors.empty()) {
                doc.root.reset();
            }
            return doc;
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1) {
                builder.error(e.start_mark,
                              "more than one document (---): put each in its own file of the "
                              "configuration directory");
                doc.root.reset();
                return doc;
            }
            if (e.data.document_start.tag_directives.start !=
                e.data.document_start.tag_directives.end) {
                builder.error(e.start_mark, "tags (%TAG) are not supported");
            }
            break;
        case YAML_ALIAS_EVENT: {
            builder.error(e.start_mark, "aliases (*name) are not supported: write the value out");
            // A null stands in so that the mapping's key/value pairing stays aligned.
            builder.add(make_node(builder, e, YamlNode::Kind::scalar));
            break;
        }
        case YAML_SCALAR_EVENT: {
            refuse_anchor_and_tag(builder, e, e.data.scalar.anchor, e.data.scalar.tag);
            YamlNode node = make_node(builder, e, YamlNode::Kind::scalar);
            node.value.assign(reinterpret_cast<const char*>(e.data.scalar.value),
                              e.data.scalar.length);
            node.quoted = e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
            builder.add(std::move(node));
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            bool mapping = e.type == YAML_MAPPING_START_EVENT;
            refuse_anchor_and_tag(
                builder, e, mapping ? e.data.mapping_start.anchor : e.data.sequence_start.anchor,
                mapping ? e.data.mapping_start.tag : e.data.sequence_start.tag);
            if (builder.depth() >= max_yaml_depth) {
                builder.error(e.start_mark,
                              "nested deeper than " + std::to_string(max_yaml_depth) + " levels");
                doc.root.reset();
                return doc;
            }
            builder.open(make_node(builder, e,
                                   mapping ? YamlNode::Kind::mapping : YamlNode::Kind::sequence));
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            builder.close();
            break;
        default:
            break;
        }
    }
}

} // namespace portcullis::config::detail
