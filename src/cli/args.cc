#include "portcullis/cli/args.hh"

#include <string_view>

namespace portcullis::cli {

std::optional<std::string> ParsedArgs::get(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) {
        return std::nullopt;
    }
    return it->second;
}

ParsedArgs Command::parse(int argc, char** argv) const {
    ParsedArgs out;
    auto find_long = [&](std::string_view n) -> const Option* {
        for (const Option& o : options) {
            if (o.name == n) {
                return &o;
            }
        }
        return nullptr;
    };
    auto find_short = [&](char c) -> const Option* {
        for (const Option& o : options) {
            if (o.short_name != 0 && o.short_name == c) {
                return &o;
            }
        }
        return nullptr;
    };
    for (int i = 0; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            out.help = true;
            return out;
        }
        const Option* opt = nullptr;
        std::optional<std::string> inline_value;
        if (arg.starts_with("--") && arg.size() > 2) {
            std::string_view name = arg.substr(2);
            if (size_t eq = name.find('='); eq != std::string_view::npos) {
                inline_value = std::string(name.substr(eq + 1));
                name = name.substr(0, eq);
            }
            opt = find_long(name);
        } else if (arg.size() == 2 && arg[0] == '-' && arg[1] != '-') {
            opt = find_short(arg[1]);
        } else if (arg == "--") {
            for (++i; i < argc; ++i) {
                out.positional.emplace_back(argv[i]);
            }
            break;
        } else if (!arg.starts_with("-") || arg == "-") {
            out.positional.emplace_back(arg);
            continue;
        }
        if (opt == nullptr) {
            out.error = "unknown option " + std::string(arg);
            return out;
        }
        if (opt->value.empty()) {
            if (inline_value) {
                out.error = "--" + opt->name + " takes no value";
                return out;
            }
            out.values[opt->name] = "";
            continue;
        }
        if (!inline_value) {
            if (i + 1 >= argc) {
                out.error = "--" + opt->name + " needs a value (" + opt->value + ")";
                return out;
            }
            inline_value = argv[++i];
        }
        out.values[opt->name] = *inline_value;
    }
    if (out.positional.size() < min_positional) {
        out.error = "missing arguments: usage: portcullis " + name + " " + synopsis;
    } else if (out.positional.size() > max_positional) {
        out.error = "unexpected argument " + out.positional[max_positional];
    }
    return out;
}

std::string Command::usage() const {
    std::string u = "usage: portcullis " + name + " " + synopsis + "\n\n" + summary + "\n";
    if (!options.empty()) {
        u += "\noptions:\n";
    }
    for (const Option& o : options) {
        std::string left = "  ";
        left += o.short_name != 0 ? std::string("-") + o.short_name + ", " : "    ";
        left += "--" + o.name;
        if (!o.value.empty()) {
            left += " " + o.value;
        }
        if (left.size() < 26) {
            left.append(26 - left.size(), ' ');
        } else {
            left += "  ";
        }
        u += left + o.help + "\n";
    }
    u += "  -h, --help                show this help\n";
    return u;
}

} // namespace portcullis::cli
