// Tables: the blob round trip, views without copies, and the parser's
// robustness on truncated and corrupted bytes.
#include <gtest/gtest.h>

#include <cstring>

#include "runtime/ops/table.h"

namespace mlp::rt::ops {
namespace {

Table Sample(uint64_t rows) {
  Table t;
  Column a = Column::Make("ids", DType::I64, {}, rows);
  Column b = Column::Make("pixels", DType::U8, {2, 3}, rows);
  Column c = Column::Make("x", DType::F32, {4}, rows);
  Column d = Column::Make("y", DType::F64, {}, rows);
  Column e = Column::Make("n", DType::I32, {}, rows);
  Column f = Column::Make("flag", DType::Bool, {}, rows);
  for (uint64_t r = 0; r < rows; ++r) {
    a.mutable_values<int64_t>()[r] = static_cast<int64_t>(r) * 1000003 - 7;
    for (int k = 0; k < 6; ++k) b.mutable_values<uint8_t>()[r * 6 + k] = static_cast<uint8_t>(r * 6 + k);
    for (int k = 0; k < 4; ++k) c.mutable_values<float>()[r * 4 + k] = static_cast<float>(r) + 0.25f * k;
    d.mutable_values<double>()[r] = 1.0 / (static_cast<double>(r) + 1);
    e.mutable_values<int32_t>()[r] = -static_cast<int32_t>(r);
    f.mutable_values<uint8_t>()[r] = r % 2;
  }
  for (auto* col : {&a, &b, &c, &d, &e, &f}) t.columns.push_back(std::move(*col));
  return t;
}

void ExpectSame(const Table& a, const Table& b) {
  ASSERT_EQ(a.columns.size(), b.columns.size());
  EXPECT_EQ(a.rows(), b.rows());
  for (size_t k = 0; k < a.columns.size(); ++k) {
    const Column &x = a.columns[k], &y = b.columns[k];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.dtype, y.dtype);
    EXPECT_EQ(x.shape, y.shape);
    ASSERT_EQ(x.bytes().size(), y.bytes().size()) << x.name;
    EXPECT_EQ(0, std::memcmp(x.bytes().data(), y.bytes().data(), x.bytes().size())) << x.name;
  }
}

TEST(table, RoundTripKeepsEveryColumn) {
  Table t = Sample(5);
  std::string blob = Serialize(t);
  Table back;
  std::string error;
  ASSERT_TRUE(Parse(blob, &back, &error)) << error;
  ExpectSame(t, back);
  EXPECT_EQ(back.Find("x")->values<float>()[4 * 3 + 2], 3.5f);
  EXPECT_EQ(back.Find("pixels")->row_elems(), 6u);
  EXPECT_EQ(back.Find("nope"), nullptr);
}

TEST(table, EmptyTablesRoundTrip) {
  for (const Table& t : {Table{}, Sample(0)}) {
    Table back;
    std::string error;
    ASSERT_TRUE(Parse(Serialize(t), &back, &error)) << error;
    ExpectSame(t, back);
  }
}

TEST(table, ParseViewsTheBlobWithoutCopying) {
  std::string blob = Serialize(Sample(100));
  Table back;
  std::string error;
  ASSERT_TRUE(Parse(blob, &back, &error)) << error;
  for (const auto& c : back.columns) {
    const auto* p = reinterpret_cast<const char*>(c.bytes().data());
    EXPECT_GE(p, blob.data());
    EXPECT_LE(p + c.bytes().size(), blob.data() + blob.size());
    EXPECT_EQ((p - blob.data()) % 64, 0) << c.name << " is not 64-byte aligned in the blob";
  }
}

TEST(table, MisalignedBlobIsCopiedNotMisread) {
  Table t = Sample(7);
  std::string blob = Serialize(t);
  std::string buf(blob.size() + 1, '\0');
  std::memcpy(buf.data() + 1, blob.data(), blob.size());
  Table back;
  std::string error;
  ASSERT_TRUE(Parse(std::string_view(buf).substr(1), &back, &error)) << error;
  ExpectSame(t, back);
  for (const auto& c : back.columns) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(c.bytes().data()) % DTypeSize(c.dtype), 0u) << c.name;
  }
}

TEST(table, TruncationAtEveryOffsetIsAnError) {
  std::string blob = Serialize(Sample(3));
  for (size_t n = 0; n < blob.size(); ++n) {
    Table back;
    std::string error;
    EXPECT_FALSE(Parse(std::string_view(blob).substr(0, n), &back, &error)) << "prefix of " << n << " bytes";
    EXPECT_NE(error.find("invalid table"), std::string::npos) << error;
  }
}

TEST(table, FlippedBytesNeverCrash) {
  std::string blob = Serialize(Sample(3));
  size_t accepted = 0;
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::string bad = blob;
      bad[pos] = static_cast<char>(bad[pos] ^ mask);
      Table back;
      std::string error;
      if (!Parse(bad, &back, &error)) {
        EXPECT_FALSE(error.empty());
        continue;
      }
      // A flip in column data (or padding) is still a valid table; its views stay inside the blob.
      ++accepted;
      for (const auto& c : back.columns) {
        EXPECT_EQ(c.bytes().size(), c.rows() * c.row_bytes());
        const char* p = reinterpret_cast<const char*>(c.bytes().data());
        EXPECT_TRUE(p >= bad.data() && p + c.bytes().size() <= bad.data() + bad.size());
      }
    }
  }
  EXPECT_GT(accepted, 0u);
}

// Header fields at fixed offsets: magic 0, version 8, columns 12, rows 16, size 24;
// the first descriptor at 40: dtype, ndim, _, _, name_len(4), offset(8), size(8).
void Put64(std::string& b, size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }
void Put32(std::string& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

std::string ParseError(const std::string& blob) {
  Table t;
  std::string error;
  EXPECT_FALSE(Parse(blob, &t, &error));
  return error;
}

TEST(table, CorruptHeadersGiveClearErrors) {
  Table one;
  one.columns.push_back(Column::Make("v", DType::I64, {}, 4));
  const std::string blob = Serialize(one);
  std::string b = blob;
  b[0] = 'X';
  EXPECT_NE(ParseError(b).find("bad magic"), std::string::npos);
  b = blob;
  Put32(b, 8, 99);
  EXPECT_NE(ParseError(b).find("unsupported version 99"), std::string::npos);
  b = blob;
  Put32(b, 12, 1u << 30);
  EXPECT_NE(ParseError(b).find("column count"), std::string::npos);
  b = blob;
  Put64(b, 16, 5);  // rows no longer match the column's bytes
  EXPECT_NE(ParseError(b).find("need"), std::string::npos);
  b = blob;
  Put64(b, 16, uint64_t{1} << 62);  // rows x 8 bytes overflows
  EXPECT_NE(ParseError(b).find("overflows"), std::string::npos);
  b = blob;
  b[40] = 9;
  EXPECT_NE(ParseError(b).find("unknown dtype 9"), std::string::npos);
  b = blob;
  Put64(b, 48, 65);
  EXPECT_NE(ParseError(b).find("not 64-byte aligned"), std::string::npos);
  b = blob;
  Put64(b, 48, 0);
  EXPECT_NE(ParseError(b).find("overlaps"), std::string::npos);
  b = blob;
  Put64(b, 48, 1u << 20);
  EXPECT_NE(ParseError(b).find("past the end"), std::string::npos);
  b = blob + std::string(8, '\0');
  EXPECT_NE(ParseError(b).find("truncated or padded"), std::string::npos);
}

TEST(table, BoolBytesMustBeZeroOrOne) {
  Table t;
  t.columns.push_back(Column::Make("b", DType::Bool, {}, 2));
  std::string blob = Serialize(t);
  blob[blob.size() - 64] = 2;  // the column's data starts at the last 64-byte block
  EXPECT_NE(ParseError(blob).find("bool column `b` holds byte 2"), std::string::npos);
}

TEST(table, DuplicateColumnNamesAreRejected) {
  Table t;
  t.columns.push_back(Column::Make("a", DType::U8, {}, 1));
  t.columns.push_back(Column::Make("a", DType::U8, {}, 1));
  std::string error;
  EXPECT_FALSE(Validate(t, &error));
  EXPECT_NE(ParseError(Serialize(t)).find("appears twice"), std::string::npos);
}

TEST(table, SliceSharesAndWritesCopy) {
  Table t = Sample(10);
  Table s = Slice(t, 2, 5);
  EXPECT_EQ(s.rows(), 3u);
  EXPECT_EQ(s.Find("ids")->values<int64_t>()[0], t.Find("ids")->values<int64_t>()[2]);
  EXPECT_EQ(s.Find("ids")->bytes().data(), t.Find("ids")->bytes().data() + 16);
  s.Find("ids")->mutable_values<int64_t>()[0] = 42;  // copy on write: the original is untouched
  EXPECT_EQ(t.Find("ids")->values<int64_t>()[2], 2 * 1000003 - 7);
  EXPECT_EQ(s.Find("ids")->values<int64_t>()[0], 42);
  EXPECT_EQ(Slice(t, 8, 100).rows(), 2u);
  EXPECT_EQ(Slice(t, 11, 3).rows(), 0u);
}

TEST(table, ConcatAppendsRowsInOrder) {
  Table a = Sample(3), b = Sample(4);
  Table parts[] = {a, Table{}, b};
  Table out;
  std::string error;
  ASSERT_TRUE(Concat(parts, &out, &error)) << error;
  EXPECT_EQ(out.rows(), 7u);
  auto ids = out.Find("ids")->values<int64_t>();
  EXPECT_EQ(ids[2], a.Find("ids")->values<int64_t>()[2]);
  EXPECT_EQ(ids[3], b.Find("ids")->values<int64_t>()[0]);
  EXPECT_EQ(out.Find("x")->values<float>()[4 * 6 + 1], b.Find("x")->values<float>()[4 * 3 + 1]);
  ASSERT_TRUE(Validate(out, &error)) << error;

  Table other;
  other.columns.push_back(Column::Make("ids", DType::I32, {}, 1));
  Table bad[] = {a, other};
  EXPECT_FALSE(Concat(bad, &out, &error));
  EXPECT_NE(error.find("different columns"), std::string::npos);
}

TEST(table, GatherPicksRows) {
  Table t = Sample(5);
  uint64_t idx[] = {4, 0, 4};
  Table g = Gather(t, idx);
  ASSERT_EQ(g.rows(), 3u);
  EXPECT_EQ(g.Find("n")->values<int32_t>()[0], -4);
  EXPECT_EQ(g.Find("n")->values<int32_t>()[1], 0);
  EXPECT_EQ(g.Find("pixels")->values<uint8_t>()[6 + 5], 5);
}

}  // namespace
}  // namespace mlp::rt::ops
