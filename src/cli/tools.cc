// The small subcommands: spool, token, probe, version, config-keys.
#include "commands.hh"

#include "build_info.hh"
#include "portcullis/admin/token_store.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/cli/args.hh"
#include "portcullis/config/keys.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/spool_tool.hh"

#include <cstdio>
#include <iostream>
#include <mimalloc.h>
#include <openssl/base.h>
#include <xxhash.h>
#include <yaml.h>

namespace portcullis::cli {

int run_spool(int argc, char** argv) {
    Command verify{"spool verify",
                   "--dir DIR",
                   "Check every segment of a spool offline: records, corrupt regions, torn "
                   "tails. Exit status 0 when intact, 1 when damage was found, 2 when DIR "
                   "cannot be read.",
                   {{"dir", 0, "DIR", "the spool directory (spool.dir)"}}};
    Command dump{"spool dump",
                 "--dir DIR [--route R]",
                 "Print the jobs of a spool as JSON lines: id, route, received_at, source_ip, "
                 "headers, body, body_encoding (utf8 or base64).",
                 {{"dir", 0, "DIR", "the spool directory (spool.dir)"},
                  {"route", 0, "R", "only jobs of route R"}}};
    std::string_view sub = argc > 0 ? argv[0] : "";
    if (sub != "verify" && sub != "dump") {
        bool help = sub == "--help" || sub == "-h";
        std::fprintf(help ? stdout : stderr, "%s\n%s", verify.usage().c_str(),
                     dump.usage().c_str());
        return help ? 0 : 2;
    }
    const Command& cmd = sub == "verify" ? verify : dump;
    ParsedArgs a = cmd.parse(argc - 1, argv + 1);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty() || !a.has("dir")) {
        std::fprintf(stderr, "portcullis %s: %s\n", cmd.name.c_str(),
                     a.error.empty() ? "--dir DIR is required" : a.error.c_str());
        return 2;
    }
    if (sub == "verify") {
        return queue::spool_verify(*a.get("dir"), std::cout, std::cerr);
    }
    return queue::spool_dump(*a.get("dir"), a.get("route"), std::cout, std::cerr);
}

int run_token(int argc, char** argv) {
    Command cmd{"token new", "",
                "Print a fresh random control-plane token and the SHA-256 to paste into the "
                "tokens section of the configuration. Only the hash goes into the "
                "configuration; keep the token itself with the consumer that uses it."};
    if (argc < 1 || std::string_view(argv[0]) != "new") {
        bool help = argc > 0 &&
                    (std::string_view(argv[0]) == "--help" || std::string_view(argv[0]) == "-h");
        std::fputs(cmd.usage().c_str(), help ? stdout : stderr);
        return help ? 0 : 2;
    }
    ParsedArgs a = cmd.parse(argc - 1, argv + 1);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty()) {
        std::fprintf(stderr, "portcullis token new: %s\n", a.error.c_str());
        return 2;
    }
    const admin::NewToken t = admin::generate_token();
    std::printf("token:  %s\nsha256: %s\n\n", t.token.c_str(), base::hex(t.sha256).c_str());
    std::printf("tokens:\n  NAME:\n    sha256: \"%s\"\n    scopes: [\"jobs:consume:*\"]\n",
                base::hex(t.sha256).c_str());
    return 0;
}

int run_probe(int argc, char** argv) {
    Command cmd{"probe", "",
                "Print which io_uring features this kernel offers and which the appliance "
                "uses. Exit status 1 when the appliance could not run here."};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty()) {
        std::fprintf(stderr, "portcullis probe: %s\n", a.error.c_str());
        return 2;
    }
    io::Features f = io::probe_features();
    std::fputs(f.describe().c_str(), stdout);
    if (!f.available || !f.missing.empty()) {
        std::printf("\nportcullis cannot serve here: %s\n",
                    !f.available ? f.unavailable.c_str() : f.missing.c_str());
        return 1;
    }
    std::printf("\nportcullis can serve here.\n");
    return 0;
}

int run_version(int argc, char** argv) {
    Command cmd{"version", "", "Print the version, build options and library versions."};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    std::printf("portcullis %s\n", PORTCULLIS_VERSION);
    std::printf("build:     %s, %s%s%s\n", PORTCULLIS_BUILD_TYPE, PORTCULLIS_COMPILER,
                std::string_view(PORTCULLIS_SANITIZE) == "none" ? "" : ", sanitize=",
                std::string_view(PORTCULLIS_SANITIZE) == "none" ? "" : PORTCULLIS_SANITIZE);
    std::printf("liburing:  %s\n", PORTCULLIS_LIBURING_VERSION);
    std::printf("boringssl: API %d\n", BORINGSSL_API_VERSION);
    unsigned xx = XXH_versionNumber();
    std::printf("xxhash:    %u.%u.%u\n", xx / 10000, xx / 100 % 100, xx % 100);
    std::printf("libyaml:   %s\n", yaml_get_version_string());
    int mi = mi_version();
    std::printf("mimalloc:  %d.%d.%d\n", mi / 100, mi / 10 % 10, mi % 10);
    return 0;
}

int run_config_keys(int argc, char** argv) {
    Command cmd{"config-keys",
                "[--roff]",
                "Print every key the configuration may hold, with its type, default and "
                "meaning: the table the loader checks keys against, and the reference of "
                "portcullis.yaml(5).",
                {{"roff", 0, "", "print it as the roff of portcullis.yaml(5)'s KEYS section"}}};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty()) {
        std::fprintf(stderr, "portcullis config-keys: %s\n", a.error.c_str());
        return 2;
    }
    const std::string out =
        a.has("roff") ? config::key_reference_roff() : config::key_reference_text();
    std::fputs(out.c_str(), stdout);
    return 0;
}

} // namespace portcullis::cli
