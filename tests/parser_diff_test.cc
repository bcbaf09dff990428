// The fast parser and the ANTLR parser must agree: wherever the fast parser
// returns an AST, the ANTLR parser accepts the file without a diagnostic and
// builds the same AST, ranges and comments included; on the shipped files the
// fast parser never gives up.
#include <gtest/gtest.h>

#include <random>

#include "compiler/parse/ast_dump.h"
#include "compiler/parse/fast_parser.h"
#include "compiler/parse/parser.h"
#include "tests/test_util.h"

namespace mlp::testing {
namespace {

std::string Comments(const ast::File& f) {
  std::string s;
  for (const auto& c : f.comments) s += std::to_string(c.range.begin) + ":" + c.text + "\n";
  return s;
}

// Returns true when the fast parser accepted the text.
bool Compare(const std::string& name, const std::string& text) {
  SourceManager sm;
  FileId id = sm.Add(name, text);
  Diagnostics diags;
  auto slow = ParseWithAntlr(sm, id, diags);
  auto fast = FastParse(sm, id);
  if (!fast) return false;
  EXPECT_EQ(diags.all().size(), 0u) << name << ": the fast parser accepted a file the ANTLR parser rejects:\n"
                                   << text.substr(0, 2000);
  EXPECT_EQ(DumpAst(sm, *slow, true), DumpAst(sm, *fast, true)) << name << ": the two parsers disagree on\n"
                                                                << text.substr(0, 2000);
  EXPECT_EQ(Comments(*slow), Comments(*fast)) << name;
  return true;
}

std::vector<std::string> Corpus() {
  std::vector<std::string> files;
  for (const char* dir : {"pipelines", "tests/golden", "docs"}) {
    for (const auto& f : ListFiles(dir, ".mlp")) files.push_back(f);
  }
  return files;
}

TEST(ParserDiff, ShippedFilesParseIdenticallyOnTheFastPath) {
  auto files = Corpus();
  ASSERT_FALSE(files.empty());
  for (const auto& rel : files) {
    std::string text = ReadFile(std::string(MLP_SOURCE_DIR) + "/" + rel);
    SourceManager sm;
    Diagnostics diags;
    auto slow = ParseWithAntlr(sm, sm.Add(rel, text), diags);
    bool accepted = Compare(rel, text);
    if (!diags.has_errors()) {
      EXPECT_TRUE(accepted) << rel << ": well-formed, but the fast parser gave up on it";
    }
  }
}

TEST(ParserDiff, ConstructsParseIdentically) {
  const char* snippets[] = {
      "kernel k(x: f32, y: f32,) -> f32 { let a: f32 = -x * -y\n let b = a\n (b - 1.0) / 2.0 }",
      "kernel k(x: f64) -> bool { not x > 1.0 and x < 2.0 or x == 0.0 }",
      "kernel k(x: i64) -> i64 { if x > 0 { x } else if x < -1 { -x } else { 0 } }",
      "kernel k(x: f32) -> f32 { -x.y[0] - - x * 3 % 2 }",
      "kernel k(x: f32) -> f32 { let m = x\n -m }",
      "kernel k(x: f32) -> f32 { let m = x\n [m]\n }",
      "data d { source = synthetic(rows: 1_000, features: 4,) transform = map(k) | shuffle(seed: 1) | take(10) }",
      "data d { split { a: 0.5, b: 0.25 c: 0.25, } }",
      "train t { x = {a: 1, \"b c\": [1, 2.5e-3, 3ms, 4GiB, true, false], d: {}} y = [] }",
      "rl r { stop when reward_mean >= 475 or env_steps >= 200_000 and not iterations < 3 }",
      "env e { state { x: f32 = uniform(-0.05, 0.05), v: f32 = 0.0 } action discrete(2) observe [x, v]\n"
      "  step(a) { let f = if a == 1 { 10.0 } else { -10.0 }; x = x + f; reward 1.0; done abs(x) > 2.4 }\n"
      "  max_steps = 500 state.x = 1 }",
      "import \"lib/x.mlp\" as lib\nparam p: list[int] = [1, 2]\nresources default { cpu: 0.5, memory: 2GiB }",
      "cluster c { nodes: 2, cpu: 8, labels: {zone: \"a\"} }\npipeline p { seed = 1 description = \"a ${b} \\\"c\\\" \\$d\" }",
      "/* block\n comment */ data /* inner */ d { // trailing\n source = x.y.z }",
      "train data { data = data.train resources = big stop = 1 }",
      "tune t { search { optimizer.lr: loguniform(1e-4, 1e-2), batch_size: choice(64, 128) } }",
      "serve s { route = \"/v1/x\" batching { max_size: 32, wait: 2ms } }",
      "kernel k(x: f32) -> f32 { x\n}\nkernel j(x: f32) -> f32 { k(x) + k(-x) }",
      "data d { source = 1.5.x }",
      "kernel k(x: f32) -> f32 { lib.k(x) + a.b.c + lib.j(-x, 2) }",
      "data d { source = 2.m }",
  };
  for (const char* s : snippets) EXPECT_TRUE(Compare("snippet.mlp", s)) << "fast parser gave up on:\n" << s;
}

// Random edits of the shipped files: wherever the fast parser accepts, the
// ANTLR parser must agree exactly.
TEST(ParserDiff, MutatedFilesNeverDisagree) {
  std::mt19937 rng(20261130);
  const std::string pieces[] = {"(", ")", "[", "]", "{", "}", "-", "not ", "=", ":", ",", ".", "|", "\n",
                                "\"", "1e", "2_", "3ms", "4x", "${", "//", "/*", " if ", " else ", "and", "let "};
  auto files = Corpus();
  int accepted = 0, total = 0;
  for (const auto& rel : files) {
    std::string base = ReadFile(std::string(MLP_SOURCE_DIR) + "/" + rel);
    if (base.empty()) continue;
    for (int k = 0; k < 60; ++k) {
      std::string text = base;
      int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        size_t at = rng() % (text.size() + 1);
        switch (rng() % 4) {
          case 0: text.insert(at, pieces[rng() % std::size(pieces)]); break;
          case 1: if (at < text.size()) text.erase(at, 1 + rng() % 8); break;
          case 2: if (at < text.size()) text[at] = static_cast<char>(' ' + rng() % 95); break;
          default: text = text.substr(0, at); break;
        }
      }
      accepted += Compare(rel + " (mutated)", text);
      ++total;
    }
  }
  // Some edits keep the file well-formed; those exercise the agreement above.
  EXPECT_GT(accepted, 0);
  EXPECT_GT(total, 0);
}

}  // namespace
}  // namespace mlp::testing
