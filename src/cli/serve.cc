// serve and check: both load the configuration the same way; serve then runs it.
#include "commands.hh"

#include "portcullis/admin/consumer_store.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/memory.hh"
#include "portcullis/cli/args.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/config/summary.hh"
#include "portcullis/io/server.hh"
#include "portcullis/tls/certificate.hh"

#include <cstdio>
#include <ctime>
#include <iostream>
#include <mimalloc.h>

namespace portcullis::cli {

namespace {

const Option config_option{"config", 'c', "PATH",
                           "YAML file, or directory of *.yaml files merged in name order"};

// Loads and compiles the configuration, printing every error and warning to stderr. serve adds
// the registered consumers' sinks (admin/consumer_store.hh); check shows the files alone.
std::unique_ptr<config::Snapshot> load(const std::string& path, bool strict, size_t& warnings,
                                       bool with_consumers = false) {
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
    if (with_consumers) {
        std::vector<admin::Consumer> consumers;
        std::string err = admin::read_consumer_state(loaded.config->spool.dir, consumers);
        if (err.empty()) {
            err = admin::apply_consumers(*loaded.config, consumers);
        }
        if (!err.empty()) {
            std::fprintf(stderr, "error: %s\n", err.c_str());
            return nullptr;
        }
    }
    std::string error;
    auto snap = config::Snapshot::build(std::move(*loaded.config), error);
    if (!snap) {
        std::fprintf(stderr, "error: %s: %s\n", path.c_str(), error.c_str());
        return nullptr;
    }
    return snap;
}

// What check and serve found in the certificates of server.tls.
struct CertificateFindings {
    std::vector<std::string> notes; // one per certificate, for the summary
    size_t errors = 0;
    size_t warnings = 0;
};

// "2027-03-06".
std::string format_day(int64_t unix_s) {
    time_t t = static_cast<time_t>(unix_s);
    tm parts{};
    gmtime_r(&t, &parts);
    char buf[16];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%d", &parts);
    return std::string(buf, n);
}

std::string certificate_note(const tls::CertificateInfo& info, int64_t now) {
    if (info.chain_length == 0) {
        return "unreadable";
    }
    std::string names;
    for (const std::string& n : info.names) {
        names += (names.empty() ? "" : ", ") + n;
    }
    const std::string dot = " \u00b7 ";
    std::string note = names.empty() ? std::string("no names") : names;
    note += dot + info.key_type + dot;
    const int64_t day = 86400;
    if (now > info.not_after) {
        int64_t ago = (now - info.not_after) / day;
        note += "expired " + format_day(info.not_after) + " (" + std::to_string(ago) +
                (ago == 1 ? " day" : " days") + " ago)";
    } else {
        int64_t left = (info.not_after - now) / day;
        note += "expires " + format_day(info.not_after) + " (" + std::to_string(left) +
                (left == 1 ? " day" : " days") + " left)";
    }
    if (info.chain_length > 1) {
        note += dot + "chain of " + std::to_string(info.chain_length);
    }
    return base::escape_text(note);
}

// Reads every certificate of server.tls, as the TLS contexts will, and prints what is wrong in
// them to stderr like the configuration's own findings. load() does not read certificates: they
// may be replaced while serving (SIGHUP), and check should report them as they are now.
CertificateFindings check_certificates(const config::Config& cfg, bool strict, int64_t now) {
    CertificateFindings found;
    if (!cfg.server.tls) {
        return found;
    }
    const auto& certs = cfg.server.tls->certificates;
    for (size_t i = 0; i < certs.size(); ++i) {
        tls::CertificateInfo info = tls::inspect(certs[i], now);
        const std::string where = "server.tls.certificates[" + std::to_string(i) + "]";
        auto print = [&](const char* level, const std::string& message) {
            config::Diagnostic d{certs[i].mark, where,
                                 base::escape_text(info.cert_file + ": " + message)};
            std::fprintf(stderr, "%s: %s\n", level, d.format().c_str());
        };
        for (const std::string& e : info.errors) {
            print("error", e);
        }
        for (const std::string& w : info.warnings) {
            print(strict ? "error" : "warning", w);
        }
        found.errors += info.errors.size();
        found.warnings += info.warnings.size();
        found.notes.push_back(certificate_note(info, now));
    }
    return found;
}

} // namespace

int run_check(int argc, char** argv) {
    Command cmd{"check",
                "-c PATH [--strict]",
                "Validate the configuration like `nginx -t` and print a summary, reading the "
                "certificates of server.tls (names, key type, expiry). Exit status 0 when it is "
                "valid, 2 when it is not (with --strict, warnings count as errors).",
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
    CertificateFindings certs =
        check_certificates(snap->config(), strict, static_cast<int64_t>(std::time(nullptr)));
    warnings += certs.warnings;
    std::fputs(config::summarize(snap->config(), io::usable_cores(), certs.notes).c_str(), stdout);
    if (certs.errors > 0) {
        std::fprintf(stderr, "portcullis: %s: %zu certificate error%s\n", a.get("config")->c_str(),
                     certs.errors, certs.errors == 1 ? "" : "s");
        return 2;
    }
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
    // mimalloc keeps freed memory for reuse; after a large release (a drained backlog) the
    // control plane asks it to give it back. Decommit without delay: mimalloc 2.0 carries out a
    // delayed decommit only when its thread allocates in that segment again, which an idle
    // control plane never does, and mi_collect does not force it. After draining 10M jobs the
    // process held 20.6 MB over an empty one with the default delay, 9.1 MB without it
    // (bench/spool/deep, "per settled job"). The shards allocate nothing per request, and the
    // control plane keeps its large buffers (a lease's answer): a 10M drain ran at 155k jobs/s
    // either way.
    mi_option_set(mi_option_decommit_delay, 0);
    base::set_release_hook(+[] { mi_collect(true); });
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
    auto snap = load(*a.get("config"), false, warnings, true);
    if (!snap) {
        return 2;
    }
    // A certificate that cannot be served is refused here, with the same lines as check, before
    // anything binds or the spool is opened.
    CertificateFindings certs =
        check_certificates(snap->config(), false, static_cast<int64_t>(std::time(nullptr)));
    if (certs.errors > 0) {
        std::fprintf(stderr, "portcullis: %s: %zu certificate error%s: not serving\n",
                     a.get("config")->c_str(), certs.errors, certs.errors == 1 ? "" : "s");
        return 2;
    }
    return io::serve(std::move(snap), *a.get("config"));
}

} // namespace portcullis::cli
