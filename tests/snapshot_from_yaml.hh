// A configuration snapshot from YAML text, for the unit tests that need routes: the loader and
// the snapshot builder as serve runs them, with their errors reported as test failures.
//
//   auto snap = snapshot_from_yaml("routes:\n  a: {path: /a, verify: {scheme: none}}\n");
//   ASSERT_NE(snap, nullptr);
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/config/snapshot.hh"

#include <gtest/gtest.h>

#include <memory>
#include <string>

inline std::unique_ptr<portcullis::config::Snapshot> snapshot_from_yaml(const std::string& yaml) {
    portcullis::config::LoadResult loaded = portcullis::config::load_text("test.yaml", yaml);
    EXPECT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : loaded.errors[0].format());
    if (!loaded.ok()) {
        return nullptr;
    }
    std::string error;
    auto snap = portcullis::config::Snapshot::build(std::move(*loaded.config), error);
    EXPECT_EQ(error, "");
    return snap;
}
