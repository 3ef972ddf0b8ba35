// serve and check: both load the configuration the same way; serve then runs it.
#include "commands.hh"

#include "portcullis/base/log.hh"
#include "portcullis/cli/args.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/config/summary.hh"
#include "portcullis/io/server.hh"

#include <cstdio>
#include <iostream>

namespace portcullis::cli {

namespace {

const Option config_option{"config", 'c', "PATH",
                           "YAML file, or directory of *.yaml files merged in name order"};

// Loads and compiles the configuration, printing every error and warning to stderr.
std::unique_ptr<config::Snapshot> load(const std::string& path, bool strict, size_t& warnings) {
    config::LoadResult loaded = config::load(path);
    for (const config::Diagnostic& d : loaded.errors) {
        std::fprintf(stderr, "error: %s\n", d.format().c_str());
    }
    for (const config::Diagnostic& d : loaded.warnings) {
        std::fprintf(stderr, "%s: %s\n", strict ? "error" : "warning", d.format().c_str());
    }
    warnings = loaded.warnings.size();
    if (!loaded.ok()) {
        std::fprintf(stderr, "portcullis: %s: configuration has %zu error%s\n", path.c_str(),
                     loaded.errors.size(), loaded.errors.size() == 1 ? "" : "s");
        return nullptr;
    }
    std::string error;
    auto snap = config::Snapshot::build(std::move(*loaded.config), error);
    if (!snap) {
        std::fprintf(stderr, "error: %s: %s\n", path.c_str(), error.c_str());
        return nullptr;
    }
    return snap;
}

} // namespace

int run_check(int argc, char** argv) {
    Command cmd{"check",
                "-c PATH [--strict]",
                "Validate the configuration like `nginx -t` and print a summary. Exit status 0 "
                "when it is valid, 2 when it is not (with --strict, warnings count as errors).",
                {config_option, {"strict", 0, "", "fail on warnings too"}}};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty() || !a.has("config")) {
        std::fprintf(stderr, "portcullis check: %s\n",
                     a.error.empty() ? "-c PATH is required" : a.error.c_str());
        return 2;
    }
    bool strict = a.has("strict");
    size_t warnings = 0;
    auto snap = load(*a.get("config"), strict, warnings);
    if (!snap) {
        return 2;
    }
    std::fputs(config::summarize(snap->config(), io::usable_cores()).c_str(), stdout);
    if (strict && warnings > 0) {
        std::fprintf(stderr, "portcullis check: %zu warning%s (--strict)\n", warnings,
                     warnings == 1 ? "" : "s");
        return 2;
    }
    std::printf("configuration ok%s\n",
                warnings > 0 ? (" (" + std::to_string(warnings) + " warnings)").c_str() : "");
    return 0;
}

int run_serve(int argc, char** argv) {
    Command cmd{"serve",
                "-c PATH [--log-level LEVEL]",
                "Run the appliance in the foreground. SIGTERM or SIGINT drains it (stop "
                "accepting, finish in-flight requests up to server.drain_timeout, flush the "
                "spool) and exits 0. Logs are JSON lines on stderr.",
                {config_option, {"log-level", 0, "LEVEL", "debug, info (default), warn or error"}}};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty() || !a.has("config")) {
        std::fprintf(stderr, "portcullis serve: %s\n",
                     a.error.empty() ? "-c PATH is required" : a.error.c_str());
        return 2;
    }
    if (auto level = a.get("log-level")) {
        constexpr base::Level levels[] = {base::Level::debug, base::Level::info, base::Level::warn,
                                          base::Level::error};
        bool known = false;
        for (base::Level l : levels) {
            if (base::level_name(l) == *level) {
                base::set_log_level(l);
                known = true;
            }
        }
        if (!known) {
            std::fprintf(stderr, "portcullis serve: unknown log level '%s'\n", level->c_str());
            return 2;
        }
    }
    size_t warnings = 0;
    auto snap = load(*a.get("config"), false, warnings);
    if (!snap) {
        return 2;
    }
    return io::serve(std::move(snap));
}

} // namespace portcullis::cli
