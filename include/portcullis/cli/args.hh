// Command-line parsing for the subcommands: each declares its options, gets them back by name,
// and every command answers --help from the same table.
//
//   Command cmd{"check", "-c PATH [--strict]", "Validate the configuration.",
//               {{"config", 'c', "PATH", "YAML file or directory"}, {"strict", 0, "", "..."}}};
//   ParsedArgs a = cmd.parse(argc, argv);   // argv after the subcommand name
//   if (a.help) { print(cmd.usage()); return 0; }
//   if (!a.error.empty()) { print(a.error); return 2; }
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace portcullis::cli {

struct Option {
    std::string name;    // long name, without dashes
    char short_name = 0; // 0: none
    std::string value;   // placeholder when the option takes a value ("PATH"), else empty
    std::string help;
};

struct ParsedArgs {
    bool help = false;
    std::string error;                         // usage error, for exit status 2
    std::map<std::string, std::string> values; // option name -> value ("" for flags)
    std::vector<std::string> positional;

    bool has(const std::string& name) const { return values.count(name) != 0; }
    std::optional<std::string> get(const std::string& name) const;
};

struct Command {
    std::string name;     // "spool verify"
    std::string synopsis; // "-c PATH [--strict]"
    std::string summary;  // one sentence
    std::vector<Option> options;
    size_t min_positional = 0;
    size_t max_positional = 0;

    ParsedArgs parse(int argc, char** argv) const;
    std::string usage() const;
};

} // namespace portcullis::cli
