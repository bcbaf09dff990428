// Dataset readers (IDX, CIFAR-10, CSV) and image transforms, on small files
// written here (well-formed and corrupt), on the installed Fashion-MNIST test
// set, and end to end through `mlpc run`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "compiler/plan/lower.h"
#include "runtime/ops/readers.h"
#include "runtime/ops/registry.h"
#include "tests/test_util.h"

namespace mlp::rt::ops {
namespace {

using mlp::testing::TempDir;
using ::testing::HasSubstr;

void Put32(std::string* s, uint32_t v) {
  for (int k = 3; k >= 0; --k) s->push_back(static_cast<char>((v >> (8 * k)) & 0xff));
}

// An IDX image file of n images of r x c pixels, pixel k of image i = (7 i + k) mod 256.
std::string IdxImages(uint32_t n, uint32_t r, uint32_t c, uint32_t magic = 0x803) {
  std::string s;
  Put32(&s, magic);
  Put32(&s, n);
  Put32(&s, r);
  Put32(&s, c);
  for (uint32_t i = 0; i < n; ++i) {
    for (uint32_t k = 0; k < r * c; ++k) s.push_back(static_cast<char>((7 * i + k) & 0xff));
  }
  return s;
}
// Labels (3 i + 1) mod 10.
std::string IdxLabels(uint32_t n, uint32_t magic = 0x801) {
  std::string s;
  Put32(&s, magic);
  Put32(&s, n);
  for (uint32_t i = 0; i < n; ++i) s.push_back(static_cast<char>((3 * i + 1) % 10));
  return s;
}

void WriteBinary(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile g = gzopen(path.c_str(), "wb");
  ASSERT_NE(g, nullptr) << path;
  ASSERT_EQ(gzwrite(g, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(g), Z_OK);
}

std::string ReadBinary(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<int64_t> Labels(const Table& t) {
  const Column* c = t.Find("label");
  if (!c) return {};
  auto v = c->values<int64_t>();
  return {v.begin(), v.end()};
}

std::string ColumnBytes(const Table& t, const std::string& name) {
  const Column* c = t.Find(name);
  if (!c) return "<no column " + name + ">";
  return std::string(reinterpret_cast<const char*>(c->bytes().data()), c->bytes().size());
}

// Parts 0..count-1 concatenated must equal the whole, column by column.
template <class ReadFn>
void ExpectPartsMakeTheWhole(const Table& whole, uint32_t count, ReadFn read) {
  std::vector<Table> parts;
  uint64_t rows = 0;
  for (uint32_t i = 0; i < count; ++i) {
    Table t;
    std::string error;
    ASSERT_TRUE(read(ReadPart{i, count, {}}, &t, &error)) << error;
    rows += t.rows();
    parts.push_back(std::move(t));
  }
  EXPECT_EQ(rows, whole.rows());
  Table joined;
  std::string error;
  ASSERT_TRUE(Concat(parts, &joined, &error)) << error;
  ASSERT_EQ(joined.columns.size(), whole.columns.size());
  for (const auto& c : whole.columns) {
    EXPECT_EQ(ColumnBytes(joined, c.name), ColumnBytes(whole, c.name)) << c.name << " over " << count << " parts";
  }
}

// ---- IDX

class Idx : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteBinary(dir.File("img"), IdxImages(10, 3, 2));
    WriteBinary(dir.File("lbl"), IdxLabels(10));
    WriteGzip(dir.File("img.gz"), IdxImages(10, 3, 2));
    WriteGzip(dir.File("lbl.gz"), IdxLabels(10));
  }
  std::string Error(const std::string& images, const std::string& labels, ReadPart part = {}) {
    Table t;
    std::string error;
    EXPECT_FALSE(ReadIdx(dir.File(images), dir.File(labels), 0, part, &t, &error));
    return error;
  }
  TempDir dir;
};

TEST_F(Idx, RawAndGzipGiveTheSameRows) {
  for (const auto& [img, lbl] : {std::pair{"img", "lbl"}, {"img.gz", "lbl.gz"}, {"img.gz", "lbl"}}) {
    Table t;
    std::string error;
    ASSERT_TRUE(ReadIdx(dir.File(img), dir.File(lbl), 0, {}, &t, &error)) << error;
    ASSERT_EQ(t.rows(), 10u);
    const Column* im = t.Find("image");
    ASSERT_NE(im, nullptr);
    EXPECT_EQ(im->dtype, DType::U8);
    EXPECT_EQ(im->shape, (std::vector<uint64_t>{3, 2}));
    auto px = im->values<uint8_t>();
    for (uint32_t i = 0; i < 10; ++i) {
      for (uint32_t k = 0; k < 6; ++k) ASSERT_EQ(px[i * 6 + k], (7 * i + k) & 0xff) << img << " image " << i;
    }
    std::vector<int64_t> want;
    for (int i = 0; i < 10; ++i) want.push_back((3 * i + 1) % 10);
    EXPECT_EQ(Labels(t), want) << img;
    EXPECT_EQ(t.Find("label")->dtype, DType::I64);
  }
}

TEST_F(Idx, GzipIsToldByItsBytesNotItsName) {
  WriteGzip(dir.File("plain-name"), IdxImages(10, 3, 2));
  WriteBinary(dir.File("raw.gz"), IdxLabels(10));
  Table t;
  std::string error;
  ASSERT_TRUE(ReadIdx(dir.File("plain-name"), dir.File("raw.gz"), 0, {}, &t, &error)) << error;
  EXPECT_EQ(t.rows(), 10u);
  EXPECT_EQ(Labels(t)[3], 0);
}

TEST_F(Idx, PartsConcatenateToTheWholeAndLimitCapsFirst) {
  for (const char* suffix : {"", ".gz"}) {
    std::string img = dir.File(std::string("img") + suffix), lbl = dir.File(std::string("lbl") + suffix);
    for (uint64_t limit : {0, 7}) {
      Table whole;
      std::string error;
      ASSERT_TRUE(ReadIdx(img, lbl, limit, {}, &whole, &error)) << error;
      EXPECT_EQ(whole.rows(), limit ? limit : 10u);
      for (uint32_t count : {2u, 3u, 4u, 12u}) {
        ExpectPartsMakeTheWhole(whole, count, [&](const ReadPart& p, Table* t, std::string* e) {
          return ReadIdx(img, lbl, limit, p, t, e);
        });
      }
    }
  }
  // A limit above the file's count reads everything.
  Table t;
  std::string error;
  ASSERT_TRUE(ReadIdx(dir.File("img"), dir.File("lbl"), 1000, {}, &t, &error)) << error;
  EXPECT_EQ(t.rows(), 10u);
}

TEST_F(Idx, BadMagicNamesFileOffsetAndExpectation) {
  std::string e = Error("lbl", "lbl");
  EXPECT_THAT(e, HasSubstr(dir.File("lbl")));
  EXPECT_THAT(e, HasSubstr("bad magic number 0x00000801 at byte 0"));
  EXPECT_THAT(e, HasSubstr("expected 0x00000803"));
  EXPECT_THAT(e, HasSubstr("this is a label file"));
  WriteGzip(dir.File("junk.gz"), "JUNKJUNKJUNKJUNK");
  e = Error("img", "junk.gz");
  EXPECT_THAT(e, HasSubstr(dir.File("junk.gz")));
  EXPECT_THAT(e, HasSubstr("bad magic number 0x4a554e4b at byte 0 of the decompressed data, expected 0x00000801"));
}

TEST_F(Idx, TruncatedFilesNameTheOffsetWhereTheDataEnds) {
  std::string full = IdxImages(10, 3, 2);  // 16 + 60 bytes
  WriteBinary(dir.File("short"), full.substr(0, full.size() - 5));
  std::string e = Error("short", "lbl");
  EXPECT_THAT(e, HasSubstr(dir.File("short")));
  EXPECT_THAT(e, HasSubstr("truncated"));
  EXPECT_THAT(e, HasSubstr("promises 10 images (76 bytes), but the data ends at byte 71"));
  // Every part notices, not only the one whose rows are missing.
  EXPECT_THAT(Error("short", "lbl", {0, 4, {}}), HasSubstr("truncated"));

  WriteGzip(dir.File("short.gz"), full.substr(0, full.size() - 5));
  e = Error("short.gz", "lbl");
  EXPECT_THAT(e, HasSubstr(dir.File("short.gz")));
  EXPECT_THAT(e, HasSubstr("but the data ends at byte 71 of the decompressed data"));
  EXPECT_THAT(Error("short.gz", "lbl", {0, 4, {}}), HasSubstr("truncated"));

  // The header itself cut short.
  WriteBinary(dir.File("stub"), full.substr(0, 10));
  e = Error("stub", "lbl");
  EXPECT_THAT(e, HasSubstr(dir.File("stub")));
  EXPECT_THAT(e, HasSubstr("truncated: the data ends at byte 10, expected the header's 3 big-endian 32-bit sizes"));

  // A gzip stream cut mid-way (the compressed bytes, not the data).
  std::string gz = ReadBinary(dir.File("img.gz"));
  WriteBinary(dir.File("cut.gz"), gz.substr(0, gz.size() - 12));
  e = Error("cut.gz", "lbl");
  EXPECT_THAT(e, HasSubstr(dir.File("cut.gz")));
  EXPECT_THAT(e, HasSubstr("cut short"));

  // More bytes than the header promises is also a mismatch.
  WriteBinary(dir.File("long"), full + "xyz");
  e = Error("long", "lbl");
  EXPECT_THAT(e, HasSubstr("3 unexpected bytes after byte 76"));
}

TEST_F(Idx, CorruptGzipIsAnError) {
  // A wrong checksum (zlib checks it when it reaches the member's end: at the latest, when the last part reads it).
  std::string gz = ReadBinary(dir.File("img.gz"));
  gz[gz.size() - 8] ^= 0x55;
  WriteBinary(dir.File("bad.gz"), gz);
  std::string e = Error("bad.gz", "lbl", {1, 2, {}});
  EXPECT_THAT(e, HasSubstr(dir.File("bad.gz")));
  EXPECT_THAT(e, HasSubstr("corrupt gzip data after byte "));
  EXPECT_THAT(e, HasSubstr("of the decompressed data (zlib: incorrect data check)"));
  // Damaged compressed data fails too, whatever zlib makes of it.
  gz = ReadBinary(dir.File("img.gz"));
  for (size_t k = 12; k < gz.size() - 8; k += 3) gz[k] = static_cast<char>(gz[k] ^ 0xa7);
  WriteBinary(dir.File("bad2.gz"), gz);
  e = Error("bad2.gz", "lbl");
  EXPECT_THAT(e, HasSubstr(dir.File("bad2.gz")));
}

TEST_F(Idx, LabelCountMustMatchImageCount) {
  WriteBinary(dir.File("lbl9"), IdxLabels(9));
  std::string e = Error("img", "lbl9");
  EXPECT_THAT(e, HasSubstr(dir.File("lbl9") + "` holds 9 labels"));
  EXPECT_THAT(e, HasSubstr(dir.File("img") + "` holds 10 images; expected one label per image"));
}

TEST_F(Idx, MissingFileNamesThePathAsGiven) {
  Table t;
  std::string error;
  EXPECT_FALSE(ReadIdx("no/such/images.gz", dir.File("lbl"), 0, {}, &t, &error));
  EXPECT_THAT(error, HasSubstr("cannot open `no/such/images.gz`: No such file or directory"));
  EXPECT_FALSE(ReadIdx(dir.File("img"), dir.File("nope"), 0, {}, &t, &error));
  EXPECT_THAT(error, HasSubstr("cannot open `" + dir.File("nope") + "`"));
}

// ---- CIFAR-10

constexpr size_t kRecord = 3073;

// n records; record i of `batch` has label (i + batch) mod 10 and pixel k = (i + 3 k + batch) mod 256.
std::string CifarBatch(int batch, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s.push_back(static_cast<char>((i + batch) % 10));
    for (int k = 0; k < 3072; ++k) s.push_back(static_cast<char>((i + 3 * k + batch) & 0xff));
  }
  return s;
}

class Cifar : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int b = 1; b <= 5; ++b)
      WriteBinary(dir.File("data_batch_" + std::to_string(b) + ".bin"), CifarBatch(b, b + 1));
    WriteBinary(dir.File("test_batch.bin"), CifarBatch(0, 4));
  }
  std::string Error() {
    Table t;
    std::string error;
    EXPECT_FALSE(ReadCifar10(dir.File(""), true, 0, {}, &t, &error));
    return error;
  }
  TempDir dir;
};

TEST_F(Cifar, ReadsTrainBatchesInOrderAndTheTestBatch) {
  Table t;
  std::string error;
  ASSERT_TRUE(ReadCifar10(dir.File(""), true, 0, {}, &t, &error)) << error;
  ASSERT_EQ(t.rows(), 2u + 3 + 4 + 5 + 6);
  const Column* im = t.Find("image");
  ASSERT_NE(im, nullptr);
  EXPECT_EQ(im->dtype, DType::U8);
  EXPECT_EQ(im->shape, (std::vector<uint64_t>{3, 32, 32}));
  auto px = im->values<uint8_t>();
  auto labels = Labels(t);
  uint64_t row = 0;
  for (int b = 1; b <= 5; ++b) {
    for (int i = 0; i <= b; ++i, ++row) {
      ASSERT_EQ(labels[row], (i + b) % 10) << "batch " << b << " record " << i;
      for (int k : {0, 1, 1024, 3071}) ASSERT_EQ(px[row * 3072 + k], (i + 3 * k + b) & 0xff) << row << " " << k;
    }
  }
  ASSERT_TRUE(ReadCifar10(dir.File(""), false, 0, {}, &t, &error)) << error;
  EXPECT_EQ(Labels(t), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST_F(Cifar, PartsCrossBatchFilesAndConcatenateToTheWhole) {
  for (uint64_t limit : {0, 11}) {
    Table whole;
    std::string error;
    ASSERT_TRUE(ReadCifar10(dir.File(""), true, limit, {}, &whole, &error)) << error;
    EXPECT_EQ(whole.rows(), limit ? limit : 20u);
    for (uint32_t count : {2u, 3u, 7u, 25u}) {
      ExpectPartsMakeTheWhole(whole, count, [&](const ReadPart& p, Table* t, std::string* e) {
        return ReadCifar10(dir.File(""), true, limit, p, t, e);
      });
    }
  }
}

TEST_F(Cifar, AcceptsTheArchivesSubdirectory) {
  TempDir top;
  std::filesystem::create_directories(top.File("cifar-10-batches-bin"));
  WriteBinary(top.File("cifar-10-batches-bin/test_batch.bin"), CifarBatch(0, 2));
  Table t;
  std::string error;
  ASSERT_TRUE(ReadCifar10(top.File(""), false, 0, {}, &t, &error)) << error;
  EXPECT_EQ(t.rows(), 2u);
}

TEST_F(Cifar, CorruptBatchesNameFileAndOffset) {
  std::string b3 = CifarBatch(3, 4);
  b3[2 * kRecord] = 10;  // record 2's label
  WriteBinary(dir.File("data_batch_3.bin"), b3);
  std::string e = Error();
  EXPECT_THAT(e, HasSubstr(dir.File("data_batch_3.bin")));
  EXPECT_THAT(e, HasSubstr("label 10 at byte 6146 (record 2), expected a class in 0..9"));
  // Only the part that reads the record sees its label.
  Table t;
  std::string error;
  EXPECT_TRUE(ReadCifar10(dir.File(""), true, 0, {0, 4, {}}, &t, &error)) << error;

  WriteBinary(dir.File("data_batch_3.bin"), CifarBatch(3, 4).substr(0, 3 * kRecord + 100));
  e = Error();
  EXPECT_THAT(e, HasSubstr(dir.File("data_batch_3.bin")));
  EXPECT_THAT(e, HasSubstr("truncated: the record at byte 9219 has 100 bytes, expected 3073"));

  WriteBinary(dir.File("data_batch_3.bin"), CifarBatch(3, 4));
  std::filesystem::remove(dir.File("data_batch_5.bin"));
  e = Error();
  EXPECT_THAT(e, HasSubstr("cannot open `" + dir.File("data_batch_5.bin") + "`: No such file or directory"));
}

// ---- CSV

class Csv : public ::testing::Test {
 protected:
  bool Read(const std::string& text, Table* t, std::string* error, CsvOptions opt = {"y", ','}, ReadPart part = {},
            std::vector<std::string>* classes = nullptr) {
    testing::WriteFile(dir.File("t.csv"), text);
    return ReadCsv(dir.File("t.csv"), opt, part, t, error, classes);
  }
  std::string Error(const std::string& text, CsvOptions opt = {"y", ','}) {
    Table t;
    std::string error;
    EXPECT_FALSE(Read(text, &t, &error, opt)) << text;
    return error;
  }
  std::vector<float> Features(const Table& t) {
    const Column* c = t.Find("features");
    if (!c) return {};
    auto v = c->values<float>();
    return {v.begin(), v.end()};
  }
  std::string At(int line) { return dir.File("t.csv") + ":" + std::to_string(line) + ": "; }
  TempDir dir;
};

TEST_F(Csv, FeaturesInHeaderOrderAndIntegerLabels) {
  Table t;
  std::string error;
  ASSERT_TRUE(Read("a,y,b\n1,0,2.5\n-3e2, 4 ,+7\n\n0.125,2,nan\n", &t, &error)) << error;
  ASSERT_EQ(t.rows(), 3u);
  const Column* f = t.Find("features");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->dtype, DType::F32);
  EXPECT_EQ(f->shape, (std::vector<uint64_t>{2}));
  auto v = Features(t);
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 2.5f);
  EXPECT_EQ(v[2], -300.0f);
  EXPECT_EQ(v[3], 7.0f);
  EXPECT_EQ(v[4], 0.125f);
  EXPECT_TRUE(std::isnan(v[5]));
  EXPECT_EQ(Labels(t), (std::vector<int64_t>{0, 4, 2}));
  EXPECT_EQ(t.Find("label")->dtype, DType::I64);
}

TEST_F(Csv, QuotingDelimitersAndLineEnds) {
  Table t;
  std::string error;
  // Quoted header names and values, a quoted label holding the delimiter, `""`, and a line break; CRLF ends.
  ASSERT_TRUE(Read("\"x;1\";\"y\"\r\n\"1.5\";\"cat; \"\"big\"\"\r\nline\"\r\n2;dog\r\n3;\"cat; \"\"big\"\"\r\nline\"",
                   &t, &error, {"y", ';'}))
      << error;
  EXPECT_EQ(t.rows(), 3u);
  EXPECT_EQ(Features(t), (std::vector<float>{1.5f, 2.0f, 3.0f}));
  EXPECT_EQ(Labels(t), (std::vector<int64_t>{0, 1, 0}));
  // A byte order mark and a tab delimiter.
  ASSERT_TRUE(Read("\xEF\xBB\xBFy\tq\n1\t2\n", &t, &error, {"y", '\t'})) << error;
  EXPECT_EQ(Labels(t), (std::vector<int64_t>{1}));
  EXPECT_EQ(Features(t), (std::vector<float>{2.0f}));
}

TEST_F(Csv, ClassNamesGetIdsInFirstSeenOrder) {
  Table t;
  std::string error;
  std::vector<std::string> classes;
  ASSERT_TRUE(Read("f,y\n1,dog\n2,cat\n3,dog\n4,emu\n5,cat\n", &t, &error, {"y", ','}, {}, &classes)) << error;
  EXPECT_EQ(Labels(t), (std::vector<int64_t>{0, 1, 0, 2, 1}));
  EXPECT_EQ(classes, (std::vector<std::string>{"dog", "cat", "emu"}));
  // Every part maps with the whole file's ids.
  ASSERT_TRUE(Read("f,y\n1,dog\n2,cat\n3,dog\n4,emu\n5,cat\n", &t, &error, {"y", ','}, {1, 2, {}})) << error;
  EXPECT_EQ(Labels(t), (std::vector<int64_t>{0, 2, 1}));
}

TEST_F(Csv, PartsConcatenateToTheWhole) {
  std::string text = "a,b,y\n";
  for (int i = 0; i < 23; ++i)
    text += std::to_string(i) + "," + std::to_string(i * 0.5) + "," + std::to_string(i % 3) + "\n";
  Table whole;
  std::string error;
  ASSERT_TRUE(Read(text, &whole, &error)) << error;
  EXPECT_EQ(whole.rows(), 23u);
  for (uint32_t count : {2u, 5u, 30u}) {
    ExpectPartsMakeTheWhole(whole, count, [&](const ReadPart& p, Table* t, std::string* e) {
      return ReadCsv(dir.File("t.csv"), {"y", ','}, p, t, e);
    });
  }
}

TEST_F(Csv, MalformedFilesNameFileLineAndExpectation) {
  EXPECT_EQ(Error("a,y\n1,2\n3,4,5\n"), At(3) + "expected 2 fields (as in the header), found 3");
  EXPECT_EQ(Error("a,y\n1,2\n\n3\n"), At(4) + "expected 2 fields (as in the header), found 1");
  EXPECT_EQ(Error("a,b,y\n1,2,0\n1,x1,0\n"),
            At(3) + "column `b`: `x1` is not a number; every column but the label must be numeric");
  EXPECT_EQ(Error("a,y\n1,0\n,1\n"),
            At(3) + "column `a`: an empty value is not a number; every column but the label must be numeric");
  EXPECT_EQ(Error("a,y\n1,0\n2,-1\n"), At(3) + "label `-1` is not a class id: expected an integer >= 0");
  EXPECT_EQ(Error("a,y\n1,0\n2,1.5\n"), At(3) + "label `1.5` is not a class id: expected an integer >= 0");
  EXPECT_EQ(Error("a,y\n1,\n"), At(2) + "the label `y` is empty");
  EXPECT_EQ(Error("a,y\n1,0\n2,cat\n"), "the label column `y` mixes class ids and class names (" + At(2) +
                                            "`0` is a number, " + At(3) + "`cat` is not); expected one kind");
  EXPECT_EQ(Error("a,z\n1,0\n"), dir.File("t.csv") + ":1: no column `y` for the label in the header (`a`, `z`)");
  EXPECT_EQ(Error("y\n1\n"),
            dir.File("t.csv") + ":1: the header has only the label column, expected feature columns too");
  EXPECT_EQ(Error("a,y\n1,0\n\"2,1\n3,1\n"), At(3) + "field 1: the quote opened here is never closed");
  EXPECT_EQ(Error("a,y\n\"1\"x,0\n"),
            At(2) + "field 1: `x` after a closing quote, expected the delimiter or the end of the line");
  EXPECT_EQ(Error("a,y\n1e300,0\n"), At(2) + "column `a`: `1e300` is out of the f32 range");
  EXPECT_EQ(Error(""), "`" + dir.File("t.csv") + "`: the file is empty, expected a header row");
  Table t;
  std::string error;
  EXPECT_FALSE(ReadCsv("missing/rows.csv", {"y", ','}, {}, &t, &error));
  EXPECT_EQ(error, "cannot open `missing/rows.csv`: No such file or directory");
}

// ---- image transforms

// n images, C x H x W (C = 0: {H, W}), element k of image i = i * 1000 + k (mod 256 for u8).
Table Images(DType dt, uint64_t n, uint64_t c, uint64_t h, uint64_t w) {
  std::vector<uint64_t> shape = c ? std::vector<uint64_t>{c, h, w} : std::vector<uint64_t>{h, w};
  Column col = Column::Make("image", dt, shape, n);
  uint64_t per = col.row_elems();
  for (uint64_t i = 0; i < n; ++i) {
    for (uint64_t k = 0; k < per; ++k) {
      if (dt == DType::U8) {
        col.mutable_values<uint8_t>()[i * per + k] = static_cast<uint8_t>((i * 1000 + k) & 0xff);
      } else {
        col.mutable_values<float>()[i * per + k] = static_cast<float>(i * 1000 + k);
      }
    }
  }
  Table t;
  t.columns.push_back(std::move(col));
  Column label = Column::Make("label", DType::I64, {}, n);
  t.columns.push_back(std::move(label));
  return t;
}

double At(const Column& c, uint64_t i) { return c.dtype == DType::U8 ? c.values<uint8_t>()[i] : c.values<float>()[i]; }

// Every output image is some size x size window of the zero-padded input.
void ExpectWindows(const Table& in, const Table& out, uint64_t size, uint64_t pad,
                   std::set<std::pair<int, int>>* seen) {
  const Column& a = *in.Find("image");
  const Column& b = *out.Find("image");
  int64_t c = a.shape.size() == 3 ? static_cast<int64_t>(a.shape[0]) : 1;
  int64_t h = static_cast<int64_t>(a.shape[a.shape.size() - 2]), w = static_cast<int64_t>(a.shape.back());
  int64_t n = static_cast<int64_t>(size), p = static_cast<int64_t>(pad);
  ASSERT_EQ(b.rows(), a.rows());
  for (int64_t r = 0; r < static_cast<int64_t>(a.rows()); ++r) {
    bool found = false;
    for (int64_t oy = -p; oy + n <= h + p && !found; ++oy) {
      for (int64_t ox = -p; ox + n <= w + p && !found; ++ox) {
        bool same = true;
        for (int64_t ch = 0; ch < c && same; ++ch) {
          for (int64_t y = 0; y < n && same; ++y) {
            for (int64_t x = 0; x < n && same; ++x) {
              int64_t sy = oy + y, sx = ox + x;
              double want = (sy < 0 || sx < 0 || sy >= h || sx >= w)
                                ? 0.0
                                : At(a, static_cast<uint64_t>(((r * c + ch) * h + sy) * w + sx));
              same = At(b, static_cast<uint64_t>(((r * c + ch) * n + y) * n + x)) == want;
            }
          }
        }
        if (same) {
          found = true;
          seen->insert({static_cast<int>(oy), static_cast<int>(ox)});
        }
      }
    }
    EXPECT_TRUE(found) << "row " << r << " is no window of the padded image";
  }
}

TEST(Transforms, RandomCropCutsWindowsOfThePaddedImage) {
  for (DType dt : {DType::U8, DType::F32}) {
    for (uint64_t c : {0, 3}) {
      Table in = Images(dt, 40, c, 5, 6);
      Table out = in;
      std::string error;
      ASSERT_TRUE(RandomCrop(&out, 4, 2, 99, &error)) << error;
      const Column& im = *out.Find("image");
      EXPECT_EQ(im.shape, c ? std::vector<uint64_t>({3, 4, 4}) : std::vector<uint64_t>({4, 4}));
      EXPECT_EQ(im.dtype, dt);
      std::set<std::pair<int, int>> seen;
      ExpectWindows(in, out, 4, 2, &seen);
      EXPECT_GT(seen.size(), 5u) << "40 crops should land in more than 5 places";
      EXPECT_EQ(ColumnBytes(in, "image"), ColumnBytes(Images(dt, 40, c, 5, 6), "image")) << "the input is untouched";
    }
  }
  // Without padding, a crop of the full size is the image itself.
  Table in = Images(DType::U8, 3, 0, 4, 4), out = in;
  std::string error;
  ASSERT_TRUE(RandomCrop(&out, 4, 0, 1, &error)) << error;
  EXPECT_EQ(ColumnBytes(out, "image"), ColumnBytes(in, "image"));
}

TEST(Transforms, HorizontalFlipReversesColumnsWithProbabilityP) {
  Table in = Images(DType::F32, 200, 2, 3, 4);
  Table all = in, none = in, some = in;
  std::string error;
  ASSERT_TRUE(HorizontalFlip(&all, 1.0, 7, &error)) << error;
  ASSERT_TRUE(HorizontalFlip(&none, 0.0, 7, &error)) << error;
  ASSERT_TRUE(HorizontalFlip(&some, 0.5, 7, &error)) << error;
  EXPECT_EQ(ColumnBytes(none, "image"), ColumnBytes(in, "image"));
  auto a = in.Find("image")->values<float>(), f = all.Find("image")->values<float>(),
       s = some.Find("image")->values<float>();
  int flipped = 0;
  for (uint64_t r = 0; r < 200; ++r) {
    bool row_flipped = true, row_same = true;
    for (uint64_t line = 0; line < 6; ++line) {
      for (uint64_t x = 0; x < 4; ++x) {
        uint64_t base = (r * 6 + line) * 4;
        ASSERT_EQ(f[base + x], a[base + 3 - x]);
        row_flipped &= s[base + x] == a[base + 3 - x];
        row_same &= s[base + x] == a[base + x];
      }
    }
    ASSERT_TRUE(row_flipped != row_same) << "row " << r << " is neither flipped nor left alone";
    flipped += row_flipped;
  }
  EXPECT_GT(flipped, 60);
  EXPECT_LT(flipped, 140);
}

TEST(Transforms, WrongImagesAreErrors) {
  Table t = Images(DType::U8, 2, 0, 4, 4);
  std::string error;
  EXPECT_FALSE(RandomCrop(&t, 9, 2, 0, &error));
  EXPECT_EQ(error, "a 9x9 crop of 4x4 images padded by 2 does not fit");
  Table f;
  f.columns.push_back(Column::Make("features", DType::F32, {4}, 2));
  EXPECT_FALSE(HorizontalFlip(&f, 0.5, 0, &error));
  EXPECT_EQ(error, "expected an `image` column, but the rows have `features`");
  Table v;
  v.columns.push_back(Column::Make("image", DType::F32, {16}, 2));
  EXPECT_FALSE(RandomCrop(&v, 2, 0, 0, &error));
  EXPECT_EQ(error, "`image` rows have 1 dimensions, expected {H, W} or {C, H, W}");
  Table i;
  i.columns.push_back(Column::Make("image", DType::I64, {2, 2}, 2));
  EXPECT_FALSE(HorizontalFlip(&i, 0.5, 0, &error));
  EXPECT_EQ(error, "the `image` column is i64, expected u8 or f32");
}

// ---- the operators in a data stage

TaskResult RunTask(const plan::v1::Plan& p, const std::string& stage, uint32_t index = 0, uint32_t count = 1) {
  TaskContext ctx;
  ctx.plan = &p;
  for (const auto& n : p.nodes()) {
    if (n.name() == stage) ctx.node = &n;
  }
  EXPECT_NE(ctx.node, nullptr) << stage;
  if (!ctx.node) return {};
  ctx.index = index;
  ctx.count = count;
  const StageFn* fn = Global().FindStage(ctx.node->op());
  if (!fn) return {};
  return (*fn)(ctx);
}

std::string OutBytes(const TaskResult& r) {
  EXPECT_TRUE(r.ok) << r.error;
  return r.outputs.empty() ? "" : r.outputs[0].bytes;
}

Table OutTable(const TaskResult& r) {
  EXPECT_TRUE(r.ok) << r.error;
  Table t;
  std::string error;
  if (r.outputs.empty()) return t;
  auto owner = std::make_shared<std::string>(r.outputs[0].bytes);
  EXPECT_TRUE(Parse(*owner, &t, &error, owner)) << error;
  return t;
}

TEST(Stage, RelativePathsResolveAgainstThePipelineFile) {
  TempDir dir;
  std::filesystem::create_directories(dir.File("data"));
  WriteBinary(dir.File("data/img"), IdxImages(6, 4, 4));
  WriteGzip(dir.File("data/lbl.gz"), IdxLabels(6));
  testing::WriteFile(dir.File("data/t.csv"), "a,y\n1,0\n2,1\n");
  auto p = testing::CompilePlan(R"(
data d {
  source = idx(images: "data/img", labels: "data/lbl.gz")
}
data c {
  source = csv(path: "data/t.csv", label: "y")
}
data missing {
  source = cifar10(dir: "data/nope", train: false)
}
)",
                  dir.File("sub/../p.mlp"));
  EXPECT_EQ(OutTable(RunTask(p, "d")).rows(), 6u);
  EXPECT_EQ(OutTable(RunTask(p, "c")).rows(), 2u);
  TaskResult r = RunTask(p, "missing");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.error,
            "`cifar10`: cannot open `" + dir.File("data/nope/test_batch.bin") + "`: No such file or directory");
  EXPECT_EQ(ResolveDataPath(&p, "/abs/x"), "/abs/x");
  plan::v1::Plan bare;
  EXPECT_EQ(ResolveDataPath(&bare, "rel/x"), "rel/x");
}

TEST(Stage, AugmentationIsDeterministicPerSeedStageTaskAndRow) {
  TempDir dir;
  WriteBinary(dir.File("img"), IdxImages(64, 8, 8));
  WriteBinary(dir.File("lbl"), IdxLabels(64));
  auto text = [&](int seed) {
    return "pipeline aug { seed = " + std::to_string(seed) + " }\n" + R"(
data a {
  source    = idx(images: "img", labels: "lbl")
  transform = random_crop(size: 6, padding: 2) | horizontal_flip(p: 0.5)
  shards    = 2
}
data b {
  source    = idx(images: "img", labels: "lbl")
  transform = random_crop(size: 6, padding: 2) | horizontal_flip(p: 0.5)
  shards    = 2
}
)";
  };
  auto p1 = testing::CompilePlan(text(1), dir.File("p.mlp"));
  auto p2 = testing::CompilePlan(text(2), dir.File("p.mlp"));
  std::string a0 = OutBytes(RunTask(p1, "a", 0, 2));
  EXPECT_EQ(a0, OutBytes(RunTask(p1, "a", 0, 2))) << "a rerun gives the same rows";
  EXPECT_EQ(a0, OutBytes(RunTask(testing::CompilePlan(text(1), dir.File("p.mlp")), "a", 0, 2))) << "so does a recompiled plan";
  EXPECT_NE(a0, OutBytes(RunTask(p2, "a", 0, 2))) << "the pipeline seed changes the crops";
  EXPECT_NE(a0, OutBytes(RunTask(p1, "b", 0, 2))) << "another stage draws other crops";
  Table t = OutTable(RunTask(p1, "a", 1, 2));
  EXPECT_EQ(t.rows(), 32u);
  EXPECT_EQ(t.Find("image")->shape, (std::vector<uint64_t>{6, 6}));
  EXPECT_EQ(Labels(t)[0], (3 * 32 + 1) % 10) << "task 1 holds rows 32..63";
}

TEST(Stage, ReaderErrorsFailTheStageNamingTheOperator) {
  TempDir dir;
  WriteBinary(dir.File("img"), IdxImages(4, 2, 2));
  WriteBinary(dir.File("lbl"), IdxImages(4, 2, 2));
  auto p = testing::CompilePlan(R"(
data d {
  source = idx(images: "img", labels: "lbl")
}
data crop {
  source    = range(n: 3)
  transform = random_crop(size: 2)
}
)",
                  dir.File("p.mlp"));
  TaskResult r = RunTask(p, "d");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.error,
            "`idx`: `" + dir.File("lbl") +
                "`: bad magic number 0x00000803 at byte 0 (this is an image file), expected 0x00000801 (an IDX "
                "label file: unsigned bytes, 1 dimension)");
  r = RunTask(p, "crop");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "`random_crop`: expected an `image` column, but the rows have `value`");
}

// ---- the real Fashion-MNIST test set

constexpr const char* kFashion = "/usr/share/datasets/fashion-mnist";

bool HaveFashion() {
  bool ok = std::filesystem::exists(std::string(kFashion) + "/t10k-images-idx3-ubyte.gz") &&
            std::filesystem::exists(std::string(kFashion) + "/t10k-labels-idx1-ubyte.gz");
  if (!ok) {
    ADD_FAILURE() << "the Fashion-MNIST test set is missing from " << kFashion
                  << "; install the Debian package `dataset-fashion-mnist` (scripts/setup.sh does)";
  }
  return ok;
}

TEST(FashionMnist, TestSetHasTenThousandImagesAndKnownLabels) {
  if (!HaveFashion()) return;
  std::string img = std::string(kFashion) + "/t10k-images-idx3-ubyte.gz";
  std::string lbl = std::string(kFashion) + "/t10k-labels-idx1-ubyte.gz";
  Table t;
  std::string error;
  ASSERT_TRUE(ReadIdx(img, lbl, 0, {}, &t, &error)) << error;
  ASSERT_EQ(t.rows(), 10000u);
  EXPECT_EQ(t.Find("image")->shape, (std::vector<uint64_t>{28, 28}));
  auto labels = Labels(t);
  EXPECT_EQ(labels[0], 9) << "the first test image is an ankle boot";
  EXPECT_EQ(labels[1], 2) << "the second is a pullover";
  std::vector<int> per_class(10, 0);
  for (int64_t l : labels) {
    ASSERT_TRUE(l >= 0 && l < 10);
    ++per_class[static_cast<size_t>(l)];
  }
  EXPECT_EQ(per_class, std::vector<int>(10, 1000));
  auto px = t.Find("image")->values<uint8_t>();
  EXPECT_GT(std::count_if(px.begin(), px.begin() + 784, [](uint8_t v) { return v > 0; }), 100)
      << "the first image is not blank";
  // The last of four parts is rows 7500..9999 of the whole.
  Table last;
  ASSERT_TRUE(ReadIdx(img, lbl, 0, {3, 4, {}}, &last, &error)) << error;
  ASSERT_EQ(last.rows(), 2500u);
  EXPECT_EQ(ColumnBytes(last, "image"), ColumnBytes(Slice(t, 7500, 10000), "image"));
  EXPECT_EQ(Labels(last), std::vector<int64_t>(labels.begin() + 7500, labels.end()));
}

TEST(FashionMnist, MlpcRunsASmallPipelineEndToEnd) {
  if (!HaveFashion()) return;
  Table t;
  std::string error;
  ASSERT_TRUE(ReadIdx(std::string(kFashion) + "/t10k-images-idx3-ubyte.gz",
                      std::string(kFashion) + "/t10k-labels-idx1-ubyte.gz", 1000, {}, &t, &error))
      << error;
  int64_t label_sum = 0;
  for (int64_t l : Labels(t)) label_sum += l;

  TempDir dir;
  auto r = testing::RunMlpc({"run", "tests/runtime/fashion_sum.mlp", "--run-root", dir.File("root"), "--json",
                             dir.File("r.json"), "--cpus", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(testing::ReadFile(dir.File("r.json")), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["status"], "succeeded");
  const nlohmann::json* fashion = nullptr;
  const nlohmann::json* total = nullptr;
  for (const auto& s : j["stages"]) {
    if (s.value("name", "") == "fashion") fashion = &s;
    if (s.value("name", "") == "total") total = &s;
  }
  ASSERT_NE(fashion, nullptr) << j.dump(1);
  ASSERT_NE(total, nullptr) << j.dump(1);
  const auto& out = (*fashion)["outputs"]["all"];
  EXPECT_EQ(out["rows"], 1000);
  EXPECT_EQ(out["shards"], 2);
  EXPECT_EQ(out["columns"]["image"]["dtype"], "f32") << "map(scale) made the pixels f32";
  EXPECT_EQ(out["columns"]["label"]["head"][0], 9);
  EXPECT_EQ((*total)["outputs"]["all"]["columns"]["label"]["head"][0], label_sum);
}

}  // namespace
}  // namespace mlp::rt::ops
