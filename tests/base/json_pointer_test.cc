#include "portcullis/base/json_pointer.hh"

#include "../guard_page.hh"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace portcullis::base;
using namespace std::string_literals;

namespace {

struct Row {
    std::string doc;
    std::string pointer;
    JsonStatus status;
    std::string raw; // the found value's bytes; empty unless found
};

// "found \"bar\"", "malformed" ...: one string per answer, so that a failing row prints both.
std::string describe(JsonStatus status, std::string_view raw) {
    std::string s(json_status_name(status));
    if (status == JsonStatus::found) {
        s += " ";
        s += raw;
    }
    return s;
}

void check_rows(const std::vector<Row>& rows) {
    for (const Row& r : rows) {
        const JsonLookup got = json_find(r.doc, r.pointer);
        EXPECT_EQ(describe(got.status, got.value.raw), describe(r.status, r.raw))
            << "doc: " << r.doc << "\npointer: " << r.pointer;
    }
}

// Lookups of malformed documents must say so whatever the pointer.
const char* const any_pointers[] = {"", "/a", "/0", "/a/b", "/x"};

std::string repeat(std::string_view s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        out += s;
    }
    return out;
}

// RFC 6901 section 5, written the way the RFC prints it (as a JSON text).
const std::string rfc6901_doc = R"({
      "foo": ["bar", "baz"],
      "": 0,
      "a/b": 1,
      "c%d": 2,
      "e^f": 3,
      "g|h": 4,
      "i\\j": 5,
      "k\"l": 6,
      " ": 7,
      "m~n": 8
   })";

} // namespace

TEST(JsonFind, ResolvesEveryPointerOfRfc6901Section5) {
    check_rows({
        {rfc6901_doc, "", JsonStatus::found, rfc6901_doc},
        {rfc6901_doc, "/foo", JsonStatus::found, R"(["bar", "baz"])"},
        {rfc6901_doc, "/foo/0", JsonStatus::found, R"("bar")"},
        {rfc6901_doc, "/", JsonStatus::found, "0"},
        {rfc6901_doc, "/a~1b", JsonStatus::found, "1"},
        {rfc6901_doc, "/c%d", JsonStatus::found, "2"},
        {rfc6901_doc, "/e^f", JsonStatus::found, "3"},
        {rfc6901_doc, "/g|h", JsonStatus::found, "4"},
        {rfc6901_doc, R"(/i\j)", JsonStatus::found, "5"},
        {rfc6901_doc, R"(/k"l)", JsonStatus::found, "6"},
        {rfc6901_doc, "/ ", JsonStatus::found, "7"},
        {rfc6901_doc, "/m~0n", JsonStatus::found, "8"},
        // And what it does not hold.
        {rfc6901_doc, "/foo/1", JsonStatus::found, R"("baz")"},
        {rfc6901_doc, "/foo/2", JsonStatus::not_found, ""},
        {rfc6901_doc, "/foo/-", JsonStatus::not_found, ""},
        {rfc6901_doc, "/a/b", JsonStatus::not_found, ""},
        {rfc6901_doc, "/m~1n", JsonStatus::not_found, ""},
        {rfc6901_doc, "/i\\\\j", JsonStatus::not_found, ""},
        {rfc6901_doc, "//", JsonStatus::not_found, ""},
    });
}

TEST(JsonFind, ReturnsTheValueAsWrittenWithItsType) {
    struct TypeRow {
        std::string doc, pointer;
        JsonType type;
        std::string raw;
    };
    const TypeRow rows[] = {
        {R"({"a":"x\"y\u0041"})", "/a", JsonType::string, R"("x\"y\u0041")"},
        {R"({"a":-0.5e+10})", "/a", JsonType::number, "-0.5e+10"},
        {R"({"a":0})", "/a", JsonType::number, "0"},
        {R"({"a":-0})", "/a", JsonType::number, "-0"},
        {R"({"a":1E-2})", "/a", JsonType::number, "1E-2"},
        {R"({"a":true})", "/a", JsonType::boolean, "true"},
        {R"({"a":false})", "/a", JsonType::boolean, "false"},
        {R"({"a":null})", "/a", JsonType::null, "null"},
        {R"({"a": { "b" : [ 1 , {} ] } })", "/a", JsonType::object, R"({ "b" : [ 1 , {} ] })"},
        {R"({"a": { "b" : [ 1 , {} ] } })", "/a/b", JsonType::array, "[ 1 , {} ]"},
        {R"({"a": { "b" : [ 1 , {} ] } })", "/a/b/1", JsonType::object, "{}"},
        {" \t\r\n[]\n", "", JsonType::array, "[]"},
        {"  42  ", "", JsonType::number, "42"},
        {R"("\u0000")", "", JsonType::string, R"("\u0000")"},
    };
    for (const TypeRow& r : rows) {
        const JsonLookup got = json_find(r.doc, r.pointer);
        ASSERT_EQ(got.status, JsonStatus::found) << r.doc << " " << r.pointer;
        EXPECT_EQ(got.value.raw, r.raw) << r.doc << " " << r.pointer;
        EXPECT_EQ(static_cast<int>(got.value.type), static_cast<int>(r.type)) << r.doc;
        // raw is a view into doc, not a copy.
        EXPECT_GE(got.value.raw.data(), r.doc.data());
        EXPECT_LE(got.value.raw.data() + got.value.raw.size(), r.doc.data() + r.doc.size());
    }
}

TEST(JsonFind, ComparesNamesWithPointerTokensAfterUnescapingBoth) {
    check_rows({
        {R"({"a\u0062":1})", "/ab", JsonStatus::found, "1"},
        {R"({"\u0061\u0062":1})", "/ab", JsonStatus::found, "1"},
        {R"({"a\/b":2})", "/a~1b", JsonStatus::found, "2"},
        {R"({"a\u002fb":2})", "/a~1b", JsonStatus::found, "2"},
        {R"({"\u007e":3})", "/~0", JsonStatus::found, "3"},
        {R"({"~1":4})", "/~01", JsonStatus::found, "4"},
        {R"({"\u00e9t\u00E9":5})", "/\xc3\xa9t\xc3\xa9", JsonStatus::found, "5"},
        {"{\"\xc3\xa9t\xc3\xa9\":5}", "/\xc3\xa9t\xc3\xa9", JsonStatus::found, "5"},
        {R"({"\u20ac":6})", "/\xe2\x82\xac", JsonStatus::found, "6"},
        {R"({"\ud834\udd1e":7})", "/\xf0\x9d\x84\x9e", JsonStatus::found, "7"},
        {R"({"\"\\\b\f\n\r\t":8})", "/\"\\\b\f\n\r\t", JsonStatus::found, "8"},
        {R"({"a\u0000":9})", "/a\0"s, JsonStatus::found, "9"},
        // Near misses.
        {R"({"a\u0000":9})", "/a", JsonStatus::not_found, ""},
        {R"({"ab":1})", "/a", JsonStatus::not_found, ""},
        {R"({"a":1})", "/ab", JsonStatus::not_found, ""},
        {R"({"a\u0062c":1})", "/ab", JsonStatus::not_found, ""},
        {R"({"a\u0062":1})", "/abc", JsonStatus::not_found, ""},
        {R"({"\u00e9":1})", "/e", JsonStatus::not_found, ""},
        {R"({"\u00e9x":1})", "/\xc3\xa9", JsonStatus::not_found, ""},
        {R"({"\u00e9":1})", "/\xc3\xa9x", JsonStatus::not_found, ""},
        {R"({"~":1})", "/~1", JsonStatus::not_found, ""},
        {R"({"/":1})", "/~0", JsonStatus::not_found, ""},
        // The pointer is not JSON: its backslashes are plain bytes.
        {R"({"ab":1})", R"(/a\u0062)", JsonStatus::not_found, ""},
        {R"({"a\\u0062":1})", R"(/a\u0062)", JsonStatus::found, "1"},
        // Members before and after the named one are skipped whole.
        {R"({"b":{"a":1},"a":[{"a":3}],"c":"a"})", "/a/0/a", JsonStatus::found, "3"},
    });
}

TEST(JsonFind, IndexesArraysByDecimalWithoutLeadingZeros) {
    const std::string doc = R"([10, "x", [20, [30, 31]], {"0": "zero", "00": "two zeros"}])";
    check_rows({
        {doc, "/0", JsonStatus::found, "10"},
        {doc, "/1", JsonStatus::found, R"("x")"},
        {doc, "/2/1/1", JsonStatus::found, "31"},
        {doc, "/3/0", JsonStatus::found, R"("zero")"},
        {doc, "/3/00", JsonStatus::found, R"("two zeros")"},
        {doc, "/4", JsonStatus::not_found, ""},
        {doc, "/-", JsonStatus::not_found, ""},
        {doc, "/00", JsonStatus::not_found, ""},
        {doc, "/01", JsonStatus::not_found, ""},
        {doc, "/+1", JsonStatus::not_found, ""},
        {doc, "/-1", JsonStatus::not_found, ""},
        {doc, "/1e0", JsonStatus::not_found, ""},
        {doc, "/ 1", JsonStatus::not_found, ""},
        {doc, "/", JsonStatus::not_found, ""},
        {doc, "/18446744073709551615", JsonStatus::not_found, ""},
        {doc, "/18446744073709551616", JsonStatus::not_found, ""},
        {doc, "/99999999999999999999999999", JsonStatus::not_found, ""},
        {"[]", "/0", JsonStatus::not_found, ""},
        {"[[]]", "/0/0", JsonStatus::not_found, ""},
        {"[[], 1]", "/1", JsonStatus::found, "1"},
        {"[{}, 1]", "/1", JsonStatus::found, "1"},
    });
}

TEST(JsonFind, PointerThroughAScalarFindsNothing) {
    check_rows({
        {R"({"a":1})", "/a/b", JsonStatus::not_found, ""},
        {R"({"a":"xy"})", "/a/0", JsonStatus::not_found, ""},
        {R"({"a":null})", "/a/0", JsonStatus::not_found, ""},
        {R"({"a":{"b":[]}})", "/a/b/c/d", JsonStatus::not_found, ""},
        {"1", "/0", JsonStatus::not_found, ""},
        {R"("a")", "/a", JsonStatus::not_found, ""},
    });
}

TEST(JsonFind, RefusesDuplicatesOfTheMembersOnThePointersPath) {
    check_rows({
        {R"({"a":1,"a":2})", "/a", JsonStatus::malformed, ""},
        {R"({"a":1,"b":0,"a":1})", "/a", JsonStatus::malformed, ""},
        {R"({"a":1,"\u0061":2})", "/a", JsonStatus::malformed, ""},
        {R"({"a/b":1,"a\/b":2})", "/a~1b", JsonStatus::malformed, ""},
        {R"({"a":{"b":1},"a":{"c":2}})", "/a/b", JsonStatus::malformed, ""},
        {R"({"a":{"b":1},"a":0})", "/a/b", JsonStatus::malformed, ""},
        {R"({"a":{"b":1,"b":1}})", "/a/b", JsonStatus::malformed, ""},
        {R"([{"id":1,"id":2}])", "/0/id", JsonStatus::malformed, ""},
        // Also when the pointer then finds nothing: which copy it went through is unclear.
        {R"({"a":1,"a":{"b":2}})", "/a/b", JsonStatus::malformed, ""},
        // Duplicates off the path, and inside the found value, do not change the answer.
        {R"({"x":1,"x":2,"a":3})", "/a", JsonStatus::found, "3"},
        {R"({"a":{"b":1,"b":2}})", "/a", JsonStatus::found, R"({"b":1,"b":2})"},
        {R"({"a":1,"a":2})", "", JsonStatus::found, R"({"a":1,"a":2})"},
        {R"({"a":{"x":1,"x":2},"b":1})", "/b", JsonStatus::found, "1"},
        {R"([{"id":1,"id":2},{"id":3}])", "/1/id", JsonStatus::found, "3"},
        {R"({"a":[{"a":1},{"a":2}]})", "/a/1/a", JsonStatus::found, "2"},
        {R"({"a":{"a":{"a":1}}})", "/a/a/a", JsonStatus::found, "1"},
    });
}

TEST(JsonFind, BoundsNestingAt64) {
    static_assert(json_max_depth == 64);
    const std::string arrays64 = repeat("[", 64) + "1" + repeat("]", 64);
    const std::string objects64 = repeat(R"({"a":)", 64) + "1" + repeat("}", 64);
    const std::string zeros64 = repeat("/0", 64);
    const std::string as64 = repeat("/a", 64);
    check_rows({
        {arrays64, "", JsonStatus::found, arrays64},
        {arrays64, zeros64, JsonStatus::found, "1"},
        {arrays64, zeros64.substr(0, 126), JsonStatus::found, "[1]"},
        {objects64, as64, JsonStatus::found, "1"},
        {repeat("[", 65) + repeat("]", 65), "", JsonStatus::too_deep, ""},
        {repeat("[", 65) + repeat("]", 65), "/0", JsonStatus::too_deep, ""},
        {repeat(R"({"a":)", 65) + "1" + repeat("}", 65), "/a", JsonStatus::too_deep, ""},
        {"[" + objects64 + "]", "/0", JsonStatus::too_deep, ""},
        // A pointer deeper than any document can be is refused as a pointer.
        {arrays64, zeros64 + "/0", JsonStatus::bad_pointer, ""},
    });
    // An attacker's megabyte of brackets stops at the 65th, without recursion.
    const std::string flood(1 << 20, '[');
    const JsonLookup got = json_find(flood, "/0");
    EXPECT_EQ(got.status, JsonStatus::too_deep);
    EXPECT_EQ(got.error_offset, 64u);
}

TEST(JsonFind, RefusesEveryClassOfMalformedDocument) {
    const std::string bad[] = {
        // Nothing, or more than one value.
        "",
        " \n\t ",
        "{} x",
        "{}{}",
        "1 2",
        "{},",
        "[1]]",
        "\"a\"\"b\"",
        // Whitespace RFC 8259 does not have, and a byte order mark.
        "\v{}",
        "{}\f",
        "\xc2\xa0{}",
        "\xef\xbb\xbf{}",
        "{\"a\":\v1}",
        // Objects.
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\"::1}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":1,}",
        "{,}",
        "{,\"a\":1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1;\"b\":2}",
        "{1:2}",
        "{null:2}",
        "{\"a\":1]",
        // Arrays.
        "[",
        "]",
        "[1,]",
        "[,1]",
        "[,]",
        "[1 2]",
        "[1,,2]",
        "[1}",
        "[\"a\":1]",
        // Numbers.
        "01",
        "00",
        "-01",
        "+1",
        ".5",
        "-.5",
        "5.",
        "1.e5",
        "1e",
        "1e+",
        "1E-",
        "1.5e",
        "-",
        "--1",
        "- 1",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "1_000",
        "1,5",
        "\xd9\xa1",
        // Literals.
        "tru",
        "True",
        "TRUE",
        "nul",
        "nulll",
        "falsey",
        "undefined",
        "[true false]",
        // Strings.
        "\"abc",
        "\"",
        "'a'",
        "\"a\x01"
        "b\"",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"\x1f\"",
        "\"\0\""s,
        "\"a\\qb\"",
        "\"a\\'b\"",
        "\"a\\\"",
        "\"\\x41\"",
        "\"\\U0041\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\u\"",
        "\"\\\"",
        // Surrogate escapes that are not a pair.
        "\"\\uD800\"",
        "\"\\udbff\"",
        "\"\\uDC00\"",
        "\"\\uDFFF\\uD800\"",
        "\"\\uD800\\u0041\"",
        "\"\\uD800\\uD800\"",
        "\"\\uD800x\\uDC00\"",
        "\"\\uD800\\n\"",
        // Bytes that are not UTF-8 (RFC 3629).
        "\"\x80\"",
        "\"\xbf\"",
        "\"\xc0\xaf\"",
        "\"\xc1\xbf\"",
        "\"\xe0\x80\xaf\"",
        "\"\xf0\x80\x80\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xed\xbf\xbf\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xf5\x80\x80\x80\"",
        "\"\xff\"",
        "\"\xfe\"",
        "\"\xe2\x82\"",
        "\"\xc3\"",
        "\"\xc3\x28\"",
        "\"\xf0\x9d\x84\"",
        // The same faults inside member names, and after the value the pointer names: the
        // whole document is checked.
        "{\"a\x01\":1}",
        "{\"\xff\":1}",
        "{\"\\uD800\":1}",
        "{\"a\":1,\"b\":tru}",
        "{\"a\":1,\"b\":[1,]}",
        "{\"a\":1}x",
        "{\"a\":1,\"b\":\"\xc3\"}",
        "{\"a\":1,\"b\":01}",
        "{\"a\":1",
        "[{\"a\":1}",
    };
    for (const std::string& doc : bad) {
        for (const char* pointer : any_pointers) {
            const JsonLookup got = json_find(doc, pointer);
            EXPECT_EQ(describe(got.status, got.value.raw), "malformed")
                << "doc: " << doc << "\npointer: " << pointer;
            EXPECT_LE(got.error_offset, doc.size()) << doc;
        }
    }
}

TEST(JsonFind, AcceptsTheValidEdgeCases) {
    const std::string good[] = {
        "{}",
        "[]",
        "0",
        "-0",
        "0.0",
        "0e0",
        "0E+0",
        "-1.25e-7",
        "123456789012345678901234567890",
        "1e999999",
        "true",
        "false",
        "null",
        "\"\"",
        "\"\\u0000\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
        "\"\\uD800\\uDC00\\uDBFF\\uDFFF\\ud834\\udd1e\"",
        "\"\\uFFFF\\uFFFE\\uE000\\u00ff\\u00FF\"",
        "\"\x7f\"",
        "\"\xc2\x80\xdf\xbf\"",
        "\"\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\"",
        "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"",
        " \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n} \t\r\n",
        "{\"\":{\"\":[[],{},\"\",0]}}",
    };
    for (const std::string& doc : good) {
        const JsonLookup got = json_find(doc, "");
        EXPECT_EQ(got.status, JsonStatus::found) << doc;
        // The value without the space around it.
        ASSERT_FALSE(got.value.raw.empty()) << doc;
        EXPECT_EQ(std::string_view(" \t\r\n").find(got.value.raw.front()), std::string_view::npos);
        EXPECT_EQ(std::string_view(" \t\r\n").find(got.value.raw.back()), std::string_view::npos);
        EXPECT_EQ(json_find(doc, "/zzz").status, JsonStatus::not_found) << doc;
    }
}

TEST(JsonFind, ChecksEveryByteOfLongStrings) {
    // Plain text is skipped 8 bytes at a time; whatever breaks the run must be seen at every
    // position of a word and in the tail after the last whole word.
    struct ByteRow {
        std::string inserted;
        JsonStatus status;
    };
    const ByteRow rows[] = {
        {" ", JsonStatus::found},
        {"!", JsonStatus::found},
        {"\x7f", JsonStatus::found},
        {"\\n", JsonStatus::found},
        {"\\\"", JsonStatus::found},
        {"\xc3\xa9", JsonStatus::found},
        {"\xf0\x9d\x84\x9e", JsonStatus::found},
        {"\x1f", JsonStatus::malformed},
        {"\x01", JsonStatus::malformed},
        {"\0"s, JsonStatus::malformed},
        {"\"", JsonStatus::malformed},
        {"\\", JsonStatus::malformed},
        {"\x80", JsonStatus::malformed},
        {"\xff", JsonStatus::malformed},
        {"\xc3", JsonStatus::malformed},
        {"\xed\xa0\x80", JsonStatus::malformed},
    };
    for (const ByteRow& r : rows) {
        for (size_t at = 0; at <= 24; ++at) {
            const std::string text = std::string(at, 'a') + r.inserted + std::string(24 - at, 'z');
            const std::string doc = R"({"k":")" + text + R"("})";
            const JsonLookup got = json_find(doc, "/k");
            EXPECT_EQ(describe(got.status, got.value.raw), describe(r.status, "\"" + text + "\""))
                << "inserted at " << at << ": " << doc;
        }
    }
}

TEST(JsonFind, EveryTruncationOfADocumentIsMalformed) {
    // Objects and arrays, so that no proper prefix is a document of its own.
    const std::string samples[] = {
        rfc6901_doc,
        R"({"type":"url_verification","token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":)"
        R"("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})",
        R"({"data":{"object":{"id":"evt_1N\u00e9\ud834\udd1e","n":-12.5e+3,"ok":true,)"
        R"("x":null,"no":false,"items":[{"id":0},{"id":"\"\\\/\b\f\n\r\t"}]}}})",
        "[\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\", 1, [[]], {}]",
    };
    const char* const pointers[] = {"",
                                    "/type",
                                    "/challenge",
                                    "/data/object/id",
                                    "/data/object/items/1/id",
                                    "/data/object/n",
                                    "/0",
                                    "/foo/1",
                                    "/m~0n"};
    for (const std::string& doc : samples) {
        for (const char* pointer : pointers) {
            EXPECT_NE(json_find(doc, pointer).status, JsonStatus::malformed) << doc << pointer;
            for (size_t n = 0; n < doc.size(); ++n) {
                const std::string cut = doc.substr(0, n);
                const JsonLookup got = json_find(cut, pointer);
                EXPECT_EQ(describe(got.status, got.value.raw), "malformed")
                    << "doc: " << cut << "\npointer: " << pointer;
                EXPECT_LE(got.error_offset, n);
            }
        }
    }
}

TEST(JsonFind, HandshakesOfSlackAndDiscord) {
    const std::string slack =
        R"({"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gm)"
        R"(dALWMmHkvFXO7tYXAYM8P\u002f","type":"url_verification"})";
    const JsonLookup type = json_find(slack, "/type");
    ASSERT_EQ(type.status, JsonStatus::found);
    EXPECT_EQ(type.value.type, JsonType::string);
    EXPECT_TRUE(json_string_equals(type.value.raw, "url_verification"));
    const JsonLookup challenge = json_find(slack, "/challenge");
    ASSERT_EQ(challenge.status, JsonStatus::found);
    EXPECT_EQ(challenge.value.raw,
              R"("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P\u002f")");

    const std::string discord =
        R"({"application_id":"1172583862153150585","id":"1234567890123456789","token":"aW50Z)"
        R"(XJhY3Rpb24","type":1,"user":{"id":"53908232506183680","username":"mason"},)"
        R"("version":1})";
    const JsonLookup ping = json_find(discord, "/type");
    ASSERT_EQ(ping.status, JsonStatus::found);
    EXPECT_EQ(ping.value.type, JsonType::number);
    EXPECT_EQ(ping.value.raw, "1");
    EXPECT_EQ(json_find(discord, "/user/id").value.raw, R"("53908232506183680")");
}

TEST(JsonPointer, ChecksSyntaxEscapesEncodingAndDepth) {
    const std::string valid[] = {
        "",         "/",  "//",        "/a",   "/a/b",           "/~0",    "/~1", "/~01",
        "/a~0b~1c", "/ ", "/\xc3\xa9", "/0/-", repeat("/0", 64), "/a\0b"s,
    };
    for (const std::string& p : valid) {
        EXPECT_TRUE(json_pointer_valid(p)) << p;
        EXPECT_NE(json_find("{}", p).status, JsonStatus::bad_pointer) << p;
    }
    const std::string invalid[] = {
        "a",
        "#",
        "#/a",
        " /a",
        "/~",
        "/~2",
        "/a~",
        "/~~0",
        "/~/",
        "~0",
        "/\xff",
        "/\xc3",
        "/\xed\xa0\x80",
        repeat("/0", 65),
        repeat("/", 65),
    };
    for (const std::string& p : invalid) {
        EXPECT_FALSE(json_pointer_valid(p)) << p;
        const JsonLookup got = json_find("{}", p);
        EXPECT_EQ(got.status, JsonStatus::bad_pointer) << p;
        // The pointer is checked before the document is read.
        EXPECT_EQ(json_find("{", p).status, JsonStatus::bad_pointer) << p;
    }
}

TEST(JsonUnescape, DecodesEscapesAndSurrogatePairsToUtf8) {
    struct UnescapeRow {
        std::string raw, decoded;
    };
    const UnescapeRow rows[] = {
        {R"("")", ""},
        {R"("abc")", "abc"},
        {R"("\"\\\/\b\f\n\r\t")", "\"\\/\b\f\n\r\t"},
        {R"("\u0041\u00e9\u00C9")", "A\xc3\xa9\xc3\x89"},
        {R"("\u20ac")", "\xe2\x82\xac"},
        {R"("\uffff")", "\xef\xbf\xbf"},
        {R"("\ud834\udd1e")", "\xf0\x9d\x84\x9e"},
        {R"("\uD800\uDC00")", "\xf0\x90\x80\x80"},
        {R"("\uDBFF\uDFFF")", "\xf4\x8f\xbf\xbf"},
        {R"("\u0000")", "\0"s},
        {R"("a\u0000b")", "a\0b"s},
        {"\"\xc3\xa9\\n\xf0\x9d\x84\x9e\"", "\xc3\xa9\n\xf0\x9d\x84\x9e"},
        {R"("\u0061\/\u0062")", "a/b"},
    };
    for (const UnescapeRow& r : rows) {
        std::array<char, 64> out{};
        const std::optional<size_t> n = json_unescape(r.raw, out);
        ASSERT_TRUE(n.has_value()) << r.raw;
        EXPECT_EQ(std::string(out.data(), *n), r.decoded) << r.raw;
        EXPECT_TRUE(json_string_equals(r.raw, r.decoded)) << r.raw;
        // raw.size() - 2 is always enough, and one byte less than needed is never enough.
        std::vector<char> tight(r.raw.size() - 2);
        EXPECT_EQ(json_unescape(r.raw, tight), n) << r.raw;
        if (*n > 0) {
            std::vector<char> short_by_one(*n - 1);
            EXPECT_FALSE(json_unescape(r.raw, short_by_one)) << r.raw;
            EXPECT_FALSE(json_string_equals(r.raw, r.decoded.substr(0, *n - 1))) << r.raw;
        }
        EXPECT_FALSE(json_string_equals(r.raw, r.decoded + "x")) << r.raw;
    }
}

TEST(JsonUnescape, RefusesInvalidTokensAndLoneSurrogates) {
    const std::string bad[] = {
        "",
        "\"",
        "abc",
        "\"abc",
        "abc\"",
        "'abc'",
        "\"a\"b\"",
        "\"a\" ",
        " \"a\"",
        "\"a\x01\"",
        "\"\xff\"",
        "\"\\q\"",
        "\"\\u12\"",
        "\"\\uD800\"",
        "\"\\uDC00\"",
        "\"\\uDC00\\uD800\"",
        "\"\\uD800\\uD800\"",
        "\"\\uD800x\"",
        "\"\\uD800\\u0041\"",
        "\"\\uD800\\\"",
    };
    for (const std::string& raw : bad) {
        std::array<char, 64> out{};
        EXPECT_FALSE(json_unescape(raw, out)) << raw;
        EXPECT_FALSE(json_string_equals(raw, "")) << raw;
        EXPECT_FALSE(json_string_equals(raw, "abc")) << raw;
    }
    // Nothing is written to a buffer that is too small, escaped or not, for a multi-byte
    // character that would only partly fit.
    std::array<char, 3> small{'x', 'x', 'x'};
    EXPECT_FALSE(json_unescape(R"("\ud834\udd1e")", small));
    EXPECT_FALSE(json_unescape(R"("abcd")", small));
    EXPECT_EQ(json_unescape(R"("")", std::span<char>()), 0u);
}

using portcullis::testing_support::GuardedBuffer;

TEST(JsonFind, NeverReadsPastTheEndOfTheDocumentOrThePointer) {
    GuardedBuffer doc_guard(4096);
    GuardedBuffer pointer_guard(4096);
    // Documents whose every prefix stops inside a different kind of token.
    const std::string docs[] = {
        rfc6901_doc,
        "{\"a\":\"0123456789abcdefghijklmnopqrstuvwxyz\",\"b\":{\"c\":\"\xc3\xa9 is two bytes\"}}",
        R"({"a":[1,-2.5e+10,true,false,null,"x\"\u00e9\ud834\udd1e\/"],"b":{"c":{}}})",
        "[\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\", 1e5, -0, 0.25, \"\\u12\"]",
        "\"\\ud834\\udd1e\"",
        "-1.5E+3",
        "true",
        "false",
        "null",
    };
    const char* const pointers[] = {"", "/a", "/a/5", "/b/c", "/0", "/1", "/foo/1", "/m~0n"};
    for (const std::string& doc : docs) {
        for (const char* pointer : pointers) {
            const std::string_view p = pointer_guard.place(pointer);
            for (size_t n = 0; n <= doc.size(); ++n) {
                const std::string_view d = doc_guard.place(std::string_view(doc).substr(0, n));
                const JsonLookup got = json_find(d, p);
                if (got.status == JsonStatus::found) {
                    EXPECT_GE(got.value.raw.data(), d.data());
                    EXPECT_LE(got.value.raw.data() + got.value.raw.size(), d.data() + d.size());
                }
                EXPECT_LE(got.error_offset, n);
            }
        }
    }
    // Pointers that end in the middle of an escape, and string tokens cut anywhere.
    for (const char* pointer : {"/~", "/a~", "/\xc3", "/a/\xf0\x9d\x84"}) {
        EXPECT_EQ(json_find("{}", pointer_guard.place(pointer)).status, JsonStatus::bad_pointer);
    }
    const std::string token = "\"a\\\"\\u00e9\\ud834\\udd1e\xc3\xa9\\n\"";
    for (size_t n = 0; n <= token.size(); ++n) {
        const std::string_view raw = doc_guard.place(std::string_view(token).substr(0, n));
        std::array<char, 64> out{};
        EXPECT_EQ(json_unescape(raw, out).has_value(), n == token.size()) << n;
        json_string_equals(raw, "a\"");
    }
}
