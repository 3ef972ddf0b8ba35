// The YAML the loader accepts, as a small tree of mappings, lists and scalars, each with the
// place it was written. Built from libyaml's events, so that everything YAML can do that a
// configuration should not (anchors, aliases, tags, several documents, duplicate or non-string
// keys) is refused here, before the schema walk sees it.
//
//   YamlDocument doc = parse_yaml("portcullis.yaml", text);
//   if (!doc.errors.empty()) { ... }
//   if (doc.root) { if (const YamlNode* s = doc.root->find("server")) { ... } }
#pragma once

#include "portcullis/config/config.hh"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::config::detail {

struct YamlNode {
    enum class Kind : uint8_t { scalar, sequence, mapping };
    Kind kind = Kind::scalar;
    SourceMark mark;     // where the value starts
    std::string value;   // scalars only
    bool quoted = false; // scalars: written quoted or as a block (| >), so never null
    // Members of a mapping carry their key; mapping children are the members in written order.
    std::string key;
    SourceMark key_mark; // line 0 when the node is not a mapping member
    std::vector<YamlNode> children;

    bool is_scalar() const { return kind == Kind::scalar; }
    bool is_mapping() const { return kind == Kind::mapping; }
    bool is_sequence() const { return kind == Kind::sequence; }
    // A plain empty, "~" or "null" scalar: what `key:` with nothing after it gives.
    bool is_null() const;
    // The member called key of a mapping, or nullptr.
    const YamlNode* find(std::string_view key) const;
    YamlNode* find(std::string_view key);
};

struct YamlDocument {
    std::optional<YamlNode> root; // nullopt for an empty file
    std::vector<Diagnostic> errors;
};

// Nesting deeper than this is refused: no configuration needs it, and it bounds the recursion of
// everything that walks the tree.
inline constexpr size_t max_yaml_depth = 64;

YamlDocument parse_yaml(const std::string& file, std::string_view text);

// Joins key paths: join_path("routes", "github") == "routes.github".
std::string join_path(const std::string& path, std::string_view key);
std::string index_path(const std::string& path, size_t index); // "secrets[1]"

std::string format_mark(const SourceMark& mark); // "file:line:column"

} // namespace portcullis::config::detail
