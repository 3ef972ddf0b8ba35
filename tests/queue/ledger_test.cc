#include "portcullis/queue/ledger.hh"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace portcullis::queue;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

LedgerOp sample_op(uint8_t n = 1, LedgerOp::Kind kind = LedgerOp::Kind::lease) {
    LedgerOp op;
    op.kind = kind;
    op.attempts = static_cast<uint16_t>(0x0102 + n);
    for (size_t i = 0; i < op.id.bytes.size(); ++i) {
        op.id.bytes[i] = static_cast<uint8_t>(0xa0 + i + n);
    }
    op.at_ns = 1'700'000'000'123'456'789 + n;
    op.due_ns = 1'700'000'030'123'456'789 + n;
    return op;
}

Bytes encode(const LedgerOp& op) {
    Bytes b(ledger_record_size);
    encode_ledger_op(op, std::span<uint8_t, ledger_record_size>(b.data(), b.size()));
    return b;
}

Bytes encode_all(const std::vector<LedgerOp>& ops) {
    Bytes b;
    for (const LedgerOp& op : ops) {
        Bytes r = encode(op);
        b.insert(b.end(), r.begin(), r.end());
    }
    return b;
}

void reseal(Bytes& r) {
    uint64_t sum = XXH3_64bits(r.data(), 40);
    for (int i = 0; i < 8; ++i) {
        r[40 + i] = static_cast<uint8_t>(sum >> (8 * i));
    }
}

std::vector<LedgerOp> sample_ops(size_t n) {
    std::vector<LedgerOp> ops;
    for (size_t i = 0; i < n; ++i) {
        auto kind = static_cast<LedgerOp::Kind>(1 + i % 6);
        ops.push_back(sample_op(static_cast<uint8_t>(i), kind));
    }
    return ops;
}

void write_file(const std::string& path, const Bytes& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

Bytes read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

class LedgerFile : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "portcullis-ledger-XXXXXX").native();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
        _path = _dir + "/ledger";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(_dir, ec);
    }
    std::string _dir;
    std::string _path;
};

} // namespace

TEST(Ledger, WritesTheDocumentedLayout) {
    Bytes r = encode(sample_op(1, LedgerOp::Kind::nack));
    ASSERT_EQ(r.size(), 48u);
    const Bytes head = {'P', 'C', 'L', '1', 3, 0, 0x03, 0x01};
    EXPECT_EQ(Bytes(r.begin(), r.begin() + 8), head);
    uint64_t at = 0;
    uint64_t due = 0;
    uint64_t sum = 0;
    for (int i = 7; i >= 0; --i) {
        at = at << 8 | r[8 + i];
        due = due << 8 | r[16 + i];
        sum = sum << 8 | r[40 + i];
    }
    EXPECT_EQ(at, 1'700'000'000'123'456'790u);
    EXPECT_EQ(due, 1'700'000'030'123'456'790u);
    EXPECT_EQ(r[24], 0xa1);
    EXPECT_EQ(r[39], 0xb0);
    EXPECT_EQ(sum, XXH3_64bits(r.data(), 40));
}

TEST(Ledger, RoundTripsEveryKindAndExtremeValues) {
    std::vector<LedgerOp> ops = sample_ops(6);
    LedgerOp extreme;
    extreme.kind = LedgerOp::Kind::expire;
    extreme.attempts = 65535;
    extreme.id.bytes.fill(0xff);
    extreme.at_ns = INT64_MIN;
    extreme.due_ns = INT64_MAX;
    ops.push_back(extreme);
    for (const LedgerOp& op : ops) {
        auto back = decode_ledger_op(encode(op));
        ASSERT_TRUE(back.has_value()) << kind_name(op.kind);
        EXPECT_EQ(*back, op) << kind_name(op.kind);
    }
    EXPECT_EQ(kind_name(LedgerOp::Kind::lease), "lease");
    EXPECT_EQ(kind_name(LedgerOp::Kind::expire), "expire");
    EXPECT_EQ(kind_name(static_cast<LedgerOp::Kind>(0)), "unknown");
}

TEST(Ledger, EveryFlippedBitIsRefused) {
    const Bytes good = encode(sample_op());
    for (size_t bit = 0; bit < good.size() * 8; ++bit) {
        Bytes r = good;
        r[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
        EXPECT_FALSE(decode_ledger_op(r).has_value()) << "bit " << bit;
    }
}

TEST(Ledger, RefusesWhatItDoesNotKnowEvenWithARightChecksum) {
    struct Row {
        const char* name;
        size_t at;
        uint8_t value;
    };
    const Row rows[] = {
        {"kind 0", 4, 0},
        {"kind 7", 4, 7},
        {"kind 255", 4, 255},
        {"magic", 3, '2'},
    };
    for (const Row& row : rows) {
        Bytes r = encode(sample_op());
        r[row.at] = row.value;
        reseal(r);
        EXPECT_FALSE(decode_ledger_op(r).has_value()) << row.name;
    }
    Bytes r = encode(sample_op());
    EXPECT_FALSE(decode_ledger_op(std::span<const uint8_t>(r.data(), 47)).has_value());
    EXPECT_FALSE(decode_ledger_op({}).has_value());
}

TEST_F(LedgerFile, MissingFileIsAnEmptyLedger) {
    LedgerRecovery r = recover_ledger(_path);
    EXPECT_EQ(r.error, "");
    EXPECT_TRUE(r.ops.empty());
    EXPECT_EQ(r.valid_bytes, 0u);
    EXPECT_EQ(r.cut_bytes, 0u);
    EXPECT_FALSE(fs::exists(_path));
}

TEST_F(LedgerFile, TornTailIsCutAtEveryCutPoint) {
    const std::vector<LedgerOp> ops = sample_ops(5);
    const Bytes whole = encode_all(ops);
    const Bytes next = encode(sample_op(9));
    for (size_t cut = 1; cut < ledger_record_size; ++cut) {
        Bytes bytes = whole;
        bytes.insert(bytes.end(), next.begin(), next.begin() + static_cast<ptrdiff_t>(cut));
        write_file(_path, bytes);
        LedgerRecovery r = recover_ledger(_path);
        ASSERT_EQ(r.error, "") << "cut " << cut;
        EXPECT_EQ(r.ops, ops) << "cut " << cut;
        EXPECT_EQ(r.valid_bytes, 5 * ledger_record_size) << "cut " << cut;
        EXPECT_EQ(r.cut_bytes, cut) << "cut " << cut;
        EXPECT_EQ(read_file(_path), whole) << "cut " << cut;
    }
    LedgerRecovery again = recover_ledger(_path);
    EXPECT_EQ(again.error, "");
    EXPECT_EQ(again.ops.size(), 5u);
    EXPECT_EQ(again.cut_bytes, 0u);
}

TEST_F(LedgerFile, AFlippedBitInTheMiddleCostsOnlyItsRecord) {
    // A torn tail is only at the end: damage in the middle is skipped and the ops after it
    // kept (recovery used to cut the file there, undoing every later ack).
    const std::vector<LedgerOp> ops = sample_ops(6);
    Bytes bytes = encode_all(ops);
    bytes[3 * ledger_record_size + 20] ^= 0x10;
    write_file(_path, bytes);
    LedgerRecovery r = recover_ledger(_path);
    ASSERT_EQ(r.error, "");
    std::vector<LedgerOp> kept = ops;
    kept.erase(kept.begin() + 3);
    EXPECT_EQ(r.ops, kept);
    ASSERT_EQ(r.damaged.size(), 1u);
    EXPECT_EQ(r.damaged[0].offset, 3 * ledger_record_size);
    EXPECT_EQ(r.damaged[0].length, ledger_record_size);
    EXPECT_EQ(r.valid_bytes, 6 * ledger_record_size);
    EXPECT_EQ(r.cut_bytes, 0u);
    EXPECT_EQ(read_file(_path), bytes) << "damage in the middle is left in place";
}

TEST(LedgerScan, EveryFlippedByteCostsOnlyTheRecordItHits) {
    const std::vector<LedgerOp> ops = sample_ops(4);
    const Bytes whole = encode_all(ops);
    for (size_t at = 0; at < whole.size(); ++at) {
        Bytes bytes = whole;
        bytes[at] ^= 0x5a;
        LedgerScan r = scan_ledger(bytes);
        const size_t hit = at / ledger_record_size;
        std::vector<LedgerOp> kept = ops;
        kept.erase(kept.begin() + static_cast<ptrdiff_t>(hit));
        EXPECT_EQ(r.ops, kept) << "byte " << at;
        EXPECT_FALSE(r.unreadable_at.has_value()) << "byte " << at;
        if (hit + 1 < ops.size()) {
            ASSERT_EQ(r.damaged.size(), 1u) << "byte " << at;
            EXPECT_EQ(r.damaged[0].offset, hit * ledger_record_size) << "byte " << at;
            EXPECT_EQ(r.damaged[0].length, ledger_record_size) << "byte " << at;
            EXPECT_EQ(r.tail_bytes, 0u) << "byte " << at;
        } else {
            EXPECT_TRUE(r.damaged.empty()) << "byte " << at;
            EXPECT_EQ(r.tail_bytes, ledger_record_size) << "byte " << at;
            EXPECT_EQ(r.valid_end, 3 * ledger_record_size) << "byte " << at;
        }
    }
}

TEST(LedgerScan, FindsRecordsAgainAfterBytesLostOrInserted) {
    const std::vector<LedgerOp> ops = sample_ops(5);
    const Bytes whole = encode_all(ops);
    struct Row {
        const char* name;
        size_t at;       // where the stretch starts
        size_t removed;  // bytes taken out there
        Bytes inserted;  // bytes put in their place
        size_t lost_ops; // records that cannot be read any more
    };
    const Row rows[] = {
        {"7 bytes lost inside record 1", ledger_record_size + 10, 7, {}, 1},
        {"garbage between records 2 and 3", 3 * ledger_record_size, 0, Bytes(13, 'P'), 0},
        {"a stray magic between records", 2 * ledger_record_size, 0, {'P', 'C', 'L', '1'}, 0},
        {"records 1 and 2 zeroed", ledger_record_size, 2 * ledger_record_size,
         Bytes(2 * ledger_record_size, 0), 2},
    };
    for (const Row& row : rows) {
        Bytes bytes(whole.begin(), whole.begin() + static_cast<ptrdiff_t>(row.at));
        bytes.insert(bytes.end(), row.inserted.begin(), row.inserted.end());
        bytes.insert(bytes.end(), whole.begin() + static_cast<ptrdiff_t>(row.at + row.removed),
                     whole.end());
        LedgerScan r = scan_ledger(bytes);
        EXPECT_EQ(r.ops.size(), ops.size() - row.lost_ops) << row.name;
        EXPECT_EQ(r.ops.back(), ops.back()) << row.name;
        EXPECT_EQ(r.damaged.size(), 1u) << row.name;
        EXPECT_EQ(r.tail_bytes, 0u) << row.name;
        EXPECT_EQ(r.valid_end, bytes.size()) << row.name;
    }
}

TEST_F(LedgerFile, DamageAtAReadChunkBoundaryIsSkipped) {
    // 21,845 records fill one read; damage the last one of the first read and the first one
    // of the second, and shift the rest by 3 bytes.
    std::vector<LedgerOp> ops;
    for (uint32_t i = 0; i < 30'000; ++i) {
        LedgerOp op = sample_op(static_cast<uint8_t>(i), LedgerOp::Kind::ack);
        op.at_ns = i;
        ops.push_back(op);
    }
    Bytes bytes = encode_all(ops);
    const size_t boundary = 21'845 * ledger_record_size;
    bytes[boundary - 5] ^= 1;
    bytes[boundary + 5] ^= 1;
    bytes.insert(bytes.begin() + static_cast<ptrdiff_t>(boundary + ledger_record_size), 3, 'x');
    write_file(_path, bytes);
    LedgerRecovery r = recover_ledger(_path);
    ASSERT_EQ(r.error, "");
    ASSERT_EQ(r.ops.size(), ops.size() - 2);
    EXPECT_EQ(r.ops[21'843], ops[21'843]);
    EXPECT_EQ(r.ops[21'844], ops[21'846]);
    EXPECT_EQ(r.ops.back(), ops.back());
    ASSERT_EQ(r.damaged.size(), 1u);
    EXPECT_EQ(r.damaged[0].offset, boundary - ledger_record_size);
    EXPECT_EQ(r.damaged[0].length, 2 * ledger_record_size + 3);
    EXPECT_EQ(r.cut_bytes, 0u);
}

TEST(Ledger, LanesRoundTripInTheFormerReservedByte) {
    for (unsigned lane : {0U, 1U, 7U, 255U}) {
        LedgerOp op = sample_op(3, LedgerOp::Kind::dead);
        op.lane = static_cast<uint8_t>(lane);
        const Bytes r = encode(op);
        EXPECT_EQ(r[5], lane);
        auto back = decode_ledger_op(r);
        ASSERT_TRUE(back.has_value()) << "lane " << lane;
        EXPECT_EQ(*back, op) << "lane " << lane;
    }
}

TEST(Ledger, ARecordOfAnOlderVersionReadsAsLaneZero) {
    // Laid out by hand as versions before lanes wrote it: reserved byte 0. It reads exactly as
    // it did, in the pull API's lane.
    Bytes r = {'P', 'C', 'L', '1', 2 /* ack */, 0, 4, 0};
    for (int i = 0; i < 8; ++i) {
        r.push_back(static_cast<uint8_t>(0x11 * (i + 1))); // at_ns
    }
    r.resize(24, 0); // due_ns 0
    for (uint8_t i = 0; i < 16; ++i) {
        r.push_back(static_cast<uint8_t>(0xc0 + i));
    }
    r.resize(48, 0);
    reseal(r);
    auto back = decode_ledger_op(r);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->kind, LedgerOp::Kind::ack);
    EXPECT_EQ(back->lane, 0);
    EXPECT_EQ(back->attempts, 4);
    EXPECT_EQ(back->at_ns, static_cast<int64_t>(0x8877665544332211));
    EXPECT_EQ(back->due_ns, 0);
    EXPECT_EQ(back->id.bytes[0], 0xc0);
    EXPECT_EQ(back->id.bytes[15], 0xcf);
    EXPECT_EQ(encode(*back), r);
}

TEST(LedgerScan, ARecordFromANewerVersionStopsTheScanThere) {
    Bytes bytes = encode_all(sample_ops(4));
    bytes[ledger_record_size + 4] = 7; // a kind this version does not know
    Bytes unknown(bytes.begin() + ledger_record_size, bytes.begin() + 2 * ledger_record_size);
    reseal(unknown);
    std::copy(unknown.begin(), unknown.end(), bytes.begin() + ledger_record_size);
    LedgerScan r = scan_ledger(bytes);
    ASSERT_TRUE(r.unreadable_at.has_value());
    EXPECT_EQ(*r.unreadable_at, ledger_record_size);
    EXPECT_EQ(r.ops.size(), 1u);
    EXPECT_EQ(r.tail_bytes, 0u);
}

TEST_F(LedgerFile, ARecordFromANewerVersionIsAnErrorAndTheFileIsKept) {
    Bytes bytes = encode_all(sample_ops(4));
    bytes[2 * ledger_record_size + 4] = 9; // a kind this version does not know
    Bytes unknown(bytes.begin() + 2 * ledger_record_size, bytes.begin() + 3 * ledger_record_size);
    reseal(unknown);
    std::copy(unknown.begin(), unknown.end(), bytes.begin() + 2 * ledger_record_size);
    write_file(_path, bytes);
    LedgerRecovery r = recover_ledger(_path);
    EXPECT_NE(r.error.find("byte 96"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find(_path), std::string::npos) << r.error;
    EXPECT_EQ(read_file(_path), bytes);
}

TEST_F(LedgerFile, RecoveryReadsPastItsReadChunk) {
    // More records than one 1 MiB read holds, then a torn tail.
    std::vector<LedgerOp> ops;
    for (uint32_t i = 0; i < 50'000; ++i) {
        LedgerOp op = sample_op(static_cast<uint8_t>(i), LedgerOp::Kind::ack);
        op.at_ns = i;
        ops.push_back(op);
    }
    ASSERT_EQ(write_ledger_snapshot(_path, ops), "");
    {
        std::ofstream f(_path, std::ios::binary | std::ios::app);
        f.write("PCL1torn", 8);
    }
    LedgerRecovery r = recover_ledger(_path);
    ASSERT_EQ(r.error, "");
    ASSERT_EQ(r.ops.size(), ops.size());
    EXPECT_EQ(r.ops, ops);
    EXPECT_EQ(r.valid_bytes, 50'000 * ledger_record_size);
    EXPECT_EQ(r.cut_bytes, 8u);
    EXPECT_EQ(fs::file_size(_path), 50'000 * ledger_record_size);
}

TEST_F(LedgerFile, SnapshotReplacesTheLedger) {
    write_file(_path, encode_all(sample_ops(10)));
    const std::vector<LedgerOp> compact = sample_ops(3);
    ASSERT_EQ(write_ledger_snapshot(_path, compact), "");
    EXPECT_FALSE(fs::exists(_path + ".tmp"));
    EXPECT_EQ(read_file(_path), encode_all(compact));
    LedgerRecovery r = recover_ledger(_path);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.ops, compact);

    ASSERT_EQ(write_ledger_snapshot(_path, {}), "");
    EXPECT_EQ(fs::file_size(_path), 0u);
}

TEST_F(LedgerFile, SnapshotErrorsNameThePath) {
    std::string missing = _dir + "/no/such/dir/ledger";
    std::string error = write_ledger_snapshot(missing, sample_ops(2));
    EXPECT_NE(error.find(missing + ".tmp"), std::string::npos) << error;
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;
}
