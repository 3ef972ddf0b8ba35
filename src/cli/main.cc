// portcullis: one binary, one subcommand per job (SPEC section 1).
#include "commands.hh"

#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

constexpr const char* usage = R"(usage: portcullis COMMAND [ARGS]

commands:
  serve -c PATH                       run the appliance in the foreground
  check -c PATH [--strict]            validate the configuration and print a summary
  sign -c PATH ROUTE [--body FILE] [--curl URL]
                                      print a correctly signed request for ROUTE
  spool verify --dir DIR              check a spool's integrity offline
  spool dump --dir DIR [--route R]    list a spool's jobs as JSON lines
  token new                           print a fresh admin token and its SHA-256
  probe                               show the io_uring features of this kernel
  version                             version, build options, library versions
  top (-c PATH | --url URL) [--once]  a live view of traffic, refusals, queues and sinks
  config-keys [--roff]                every configuration key: type, default, meaning

Run 'portcullis COMMAND --help' for a command's options.
Exit status: 0 success, 1 runtime failure, 2 bad usage or invalid configuration.
See portcullis(8) and portcullis.yaml(5).
)";

} // namespace

int main(int argc, char** argv) {
    using namespace portcullis::cli;
    if (argc < 2) {
        std::fputs(usage, stderr);
        return 2;
    }
    std::string_view cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        std::fputs(usage, stdout);
        return 0;
    }
    if (cmd == "--version") {
        return run_version(0, nullptr);
    }
    struct Entry {
        std::string_view name;
        int (*run)(int, char**);
    };
    constexpr Entry commands[] = {
        {"serve", run_serve},     {"check", run_check}, {"sign", run_sign},
        {"spool", run_spool},     {"token", run_token}, {"probe", run_probe},
        {"version", run_version}, {"top", run_top},     {"config-keys", run_config_keys},
    };
    for (const Entry& e : commands) {
        if (e.name == cmd) {
            return e.run(argc - 2, argv + 2);
        }
    }
    std::fprintf(stderr, "portcullis: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
