// The subcommands of the portcullis binary; each takes the arguments after its name and
// returns the process exit status (0 success, 1 runtime failure, 2 bad usage or configuration).
#pragma once

namespace portcullis::cli {

int run_serve(int argc, char** argv);
int run_check(int argc, char** argv);
int run_sign(int argc, char** argv);
int run_spool(int argc, char** argv);
int run_token(int argc, char** argv);
int run_probe(int argc, char** argv);
int run_version(int argc, char** argv);
int run_top(int argc, char** argv);
int run_config_keys(int argc, char** argv);

} // namespace portcullis::cli
