// The JSON bodies of the error answers (SPEC section 4), shared by the public plane and the
// control plane, so that one status always reads the same.
#pragma once

#include <string_view>

namespace portcullis::http::error_body {

constexpr std::string_view bad_request = R"({"error":"bad_request"})";
constexpr std::string_view unauthorized = R"({"error":"unauthorized"})";
constexpr std::string_view forbidden = R"({"error":"forbidden"})";
constexpr std::string_view not_found = R"({"error":"not_found"})";
constexpr std::string_view method_not_allowed = R"({"error":"method_not_allowed"})";
constexpr std::string_view timeout = R"({"error":"timeout"})";
constexpr std::string_view conflict = R"({"error":"conflict"})";
constexpr std::string_view stale = R"({"error":"stale"})";
constexpr std::string_view too_large = R"({"error":"body_too_large"})";
constexpr std::string_view rate_limited = R"({"error":"rate_limited"})";
constexpr std::string_view not_implemented = R"({"error":"not_implemented"})";
constexpr std::string_view unavailable = R"({"error":"unavailable"})";
// The first copy of a delivery is still being written: its outcome is not known yet.
constexpr std::string_view in_progress = R"({"error":"in_progress"})";
// Plain HTTP sent to a TLS listener.
constexpr std::string_view tls_required = R"({"error":"tls_required"})";

} // namespace portcullis::http::error_body
