// The human summary that `portcullis check` prints when a configuration is valid: what will
// listen where, where jobs go, and how each route is verified. Secrets appear by origin only.
//
//   auto loaded = config::load(path);
//   if (loaded.ok()) { std::fputs(summarize(*loaded.config,
//   std::thread::hardware_concurrency()).c_str(), stdout); }
//
//   listen   public 0.0.0.0:8080 · admin 127.0.0.1:9090
//   shards   auto (2 cores)
//   ...
//   routes   2
//     github  POST /webhooks/github  verify github, 1 secret (env:GITHUB_WEBHOOK_SECRET)
#pragma once

#include "portcullis/config/config.hh"

#include <string>
#include <vector>

namespace portcullis::config {

// cores is what `shards: auto` resolves to on this host. certificate_notes, when given, holds
// one line per certificate of server.tls, in order: what check read in the files (names, key
// type, expiry), shown after each file. Ends with a newline.
std::string summarize(const Config& cfg, unsigned cores,
                      const std::vector<std::string>& certificate_notes = {});

} // namespace portcullis::config
