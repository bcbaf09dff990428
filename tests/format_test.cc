// Tests of the canonical formatter (`mlpc fmt`): layout rules on snippets, and
// its promises on every example and golden input: idempotent, same AST, same
// comments in the same order.
#include "compiler/format/formatter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "compiler/base/diagnostics.h"
#include "compiler/parse/ast_dump.h"
#include "compiler/parse/parser.h"
#include "tests/test_util.h"

#ifndef MLP_SOURCE_DIR
#error "tests/CMakeLists.txt defines MLP_SOURCE_DIR, the repository root"
#endif

namespace mlp {
namespace {

struct Parsed {
  SourceManager sm;
  Diagnostics diags;
  std::unique_ptr<ast::File> file;
};

std::unique_ptr<Parsed> ParseText(std::string text, std::string path = "test.mlp") {
  auto p = std::make_unique<Parsed>();
  FileId id = p->sm.Add(std::move(path), std::move(text));
  p->file = Parse(p->sm, id, p->diags);
  return p;
}

std::string Messages(const Parsed& p) {
  std::string out;
  for (const auto& d : p.diags.all()) {
    LineCol at = d.range.valid() ? p.sm.Position(d.range.file, d.range.begin) : LineCol{};
    out += std::to_string(at.line) + ":" + std::to_string(at.col) + ": " + d.message + "\n";
  }
  return out;
}

// The formatter drops trailing blanks inside comments; nothing else changes.
std::vector<std::string> CommentTexts(const ast::File& f) {
  std::vector<std::string> out;
  for (const auto& c : f.comments) {
    std::string text;
    std::istringstream lines(c.text);
    std::string line;
    bool first = true;
    while (std::getline(lines, line)) {
      while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.pop_back();
      if (!first) text += '\n';
      text += line;
      first = false;
    }
    out.push_back(text);
  }
  return out;
}

// Checks the formatter's promises on `src` and returns its output, or
// nothing when `src` does not parse.
std::optional<std::string> CheckRoundTrip(const std::string& src, const std::string& name) {
  auto a = ParseText(src, name);
  if (a->diags.has_errors()) return std::nullopt;
  std::string once = Format(a->sm, *a->file);
  auto b = ParseText(once, name);
  EXPECT_FALSE(b->diags.has_errors()) << name << ": the formatted text does not parse:\n"
                                      << Messages(*b) << once;
  if (b->diags.has_errors()) return once;
  EXPECT_EQ(DumpAst(a->sm, *a->file, false), DumpAst(b->sm, *b->file, false))
      << name << ": formatting changed the AST:\n" << once;
  EXPECT_EQ(CommentTexts(*a->file), CommentTexts(*b->file)) << name << ": comments changed:\n" << once;
  EXPECT_EQ(once, Format(b->sm, *b->file)) << name << ": formatting is not idempotent";

  EXPECT_TRUE(once.empty() || (once.back() == '\n' && (once.size() < 2 || once[once.size() - 2] != '\n')))
      << name << ": must end with exactly one newline";
  std::istringstream lines(once);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_TRUE(line.empty() || (line.back() != ' ' && line.back() != '\t'))
        << name << ":" << n << ": trailing whitespace in `" << line << "`";
  }
  return once;
}

// `src` parses cleanly, formats to `expected`, and round-trips.
void ExpectFormat(const std::string& src, const std::string& expected) {
  auto p = ParseText(src);
  ASSERT_FALSE(p->diags.has_errors()) << Messages(*p);
  EXPECT_EQ(Format(p->sm, *p->file), expected);
  CheckRoundTrip(src, "input");
  CheckRoundTrip(expected, "expected");
  // The expected text is itself canonical: formatting it changes nothing.
  auto q = ParseText(expected);
  ASSERT_FALSE(q->diags.has_errors()) << Messages(*q);
  EXPECT_EQ(Format(q->sm, *q->file), expected) << "the expected text is not a fixed point";
}

// The longest line of `text`, in columns.
size_t LongestLine(const std::string& text) {
  size_t longest = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) longest = std::max(longest, line.size());
  return longest;
}

TEST(FormatTest, EmptyFile) {
  ExpectFormat("", "");
  ExpectFormat("\n\n  \n", "");
}

TEST(FormatTest, EndsWithOneNewline) {
  ExpectFormat("pipeline p {}", "pipeline p {}\n");
  ExpectFormat("pipeline p {\n}\n\n\n", "pipeline p {}\n");
}

TEST(FormatTest, AlignsConsecutiveAssignments) {
  ExpectFormat(
      "data fashion {\n"
      "  source = idx(images: \"a\",\n"
      "               labels: \"b\")\n"
      "  transform = map(scale) | shuffle(seed: 42)\n"
      "  split { train: 0.9, val: 0.1 }\n"
      "  shards = 2\n"
      "  optimizer.lr = 1e-3\n"
      "}\n",
      "data fashion {\n"
      "  source    = idx(images: \"a\", labels: \"b\")\n"
      "  transform = map(scale) | shuffle(seed: 42)\n"
      "  split { train: 0.9, val: 0.1 }\n"
      "  shards       = 2\n"
      "  optimizer.lr = 1e-3\n"
      "}\n");
}

TEST(FormatTest, AlignmentStopsAtBlankLinesAndComments) {
  ExpectFormat(
      "train t {\n"
      "    model=mlp()\n"
      "    batch_size =128\n"
      "\n"
      "    epochs   = 2\n"
      "    // the schedule\n"
      "    lr_schedule = cosine()\n"
      "    workers = 2   // data-parallel\n"
      "    replicas = 3\n"
      "}\n",
      "train t {\n"
      "  model      = mlp()\n"
      "  batch_size = 128\n"
      "\n"
      "  epochs = 2\n"
      "  // the schedule\n"
      "  lr_schedule = cosine()\n"
      "  workers     = 2  // data-parallel\n"
      "  replicas    = 3\n"
      "}\n");
}

TEST(FormatTest, ReinsertsParenthesesFromPrecedence) {
  ExpectFormat(
      "kernel scale(x: f32) -> f32 {\n"
      "  (x / 255.0 - 0.2860) / 0.3530\n"
      "}\n",
      "kernel scale(x: f32) -> f32 {\n"
      "  (x / 255.0 - 0.2860) / 0.3530\n"
      "}\n");
  ExpectFormat(
      "param a: int = a + (b * c)\n"
      "param b: int = (a + b) * c\n"
      "param c: int = (a - b) - c\n"
      "param d: int = a - (b - c)\n"
      "param e: int = -(a + b) * -c\n"
      "param f: int = (-a).b + -a.b\n"
      "param g: bool = not (a and b) or not a == b\n"
      "param h: bool = (not a) == b\n"
      "param i: bool = (a < b) == (c < d)\n"
      "param j: int = a | (b | c)\n"
      "param k: int = ((x))[(i + 1)] . y\n"
      "param l: bool = (a or b) and (c or d)\n"
      "param m: bool = a or (b and c)\n"
      "param n: int = a - -b\n",
      "param a: int = a + b * c\n"
      "param b: int = (a + b) * c\n"
      "param c: int = a - b - c\n"
      "param d: int = a - (b - c)\n"
      "param e: int = -(a + b) * -c\n"
      "param f: int = (-a).b + -a.b\n"
      "param g: bool = not (a and b) or not a == b\n"
      "param h: bool = (not a) == b\n"
      "param i: bool = (a < b) == (c < d)\n"
      "param j: int = a | (b | c)\n"
      "param k: int = x[i + 1].y\n"
      "param l: bool = (a or b) and (c or d)\n"
      "param m: bool = a or b and c\n"
      "param n: int = a - -b\n");
}

TEST(FormatTest, LiteralsKeepTheirSpelling) {
  ExpectFormat(
      "pipeline p {\n"
      "  a = 1e-3\n"
      "  b = 200_000\n"
      "  c = 2GiB\n"
      "  d = \"${data_dir}/x\\n\"\n"
      "  e = [1, 2.50, true]\n"
      "  f = {a: 1, \"b c\": 2}\n"
      "}\n",
      "pipeline p {\n"
      "  a = 1e-3\n"
      "  b = 200_000\n"
      "  c = 2GiB\n"
      "  d = \"${data_dir}/x\\n\"\n"
      "  e = [1, 2.50, true]\n"
      "  f = {a: 1, \"b c\": 2}\n"
      "}\n");
}

TEST(FormatTest, Comments) {
  ExpectFormat(
      "// header\n"
      "\n"
      "import \"a\"   // why\n"
      "pipeline p {   \n"
      "  // lead\n"
      "  seed = 42 // trail   \n"
      "  x = f(1, /* inside */ 2)\n"
      "  y = 1 /* one */ /* two */\n"
      "\n"
      "  // end of body\n"
      "}\n"
      "// eof\n",
      "// header\n"
      "\n"
      "import \"a\"  // why\n"
      "\n"
      "pipeline p {\n"
      "  // lead\n"
      "  seed = 42  // trail\n"
      "  /* inside */\n"
      "  x = f(1, 2)\n"
      "  y = 1  /* one */ /* two */\n"
      "\n"
      "  // end of body\n"
      "}\n"
      "// eof\n");
}

TEST(FormatTest, CommentsInBlocksForceOneEntryPerLine) {
  ExpectFormat(
      "serve s {\n"
      "  retry { max: 2, // twice\n"
      "          backoff: 1s }\n"
      "  autoscale /* scale */ { min: 1, max: 4 }\n"
      "  resources {\n"
      "    /* nothing yet */\n"
      "  }\n"
      "}\n",
      "serve s {\n"
      "  retry {\n"
      "    max: 2  // twice\n"
      "    backoff: 1s\n"
      "  }\n"
      "  /* scale */\n"
      "  autoscale { min: 1, max: 4 }\n"
      "  resources {\n"
      "    /* nothing yet */\n"
      "  }\n"
      "}\n");
}

TEST(FormatTest, BlocksOnOneLineWhenTheyFit) {
  ExpectFormat(
      "serve s {\n"
      "  split {\n"
      "    train: 0.9,\n"
      "    val: 0.1\n"
      "  }\n"
      "  batching { max_size: 32, wait: 2ms, policy: \"a long string that pushes the block past one hundred\" }\n"
      "  empty {\n"
      "  }\n"
      "}\n"
      "resources default {cpu: 1 memory: 2GiB}\n",
      "serve s {\n"
      "  split { train: 0.9, val: 0.1 }\n"
      "  batching {\n"
      "    max_size: 32\n"
      "    wait: 2ms\n"
      "    policy: \"a long string that pushes the block past one hundred\"\n"
      "  }\n"
      "  empty {}\n"
      "}\n"
      "\n"
      "resources default { cpu: 1, memory: 2GiB }\n");
}

TEST(FormatTest, BlankLines) {
  ExpectFormat(
      "pipeline p {\n"
      "\n"
      "\n"
      "  a = 1\n"
      "\n"
      "\n"
      "\n"
      "  b = 2\n"
      "\n"
      "}\n"
      "\n"
      "\n"
      "\n"
      "data d { x = 1 }\n"
      "train t { y = 2 }\n",
      "pipeline p {\n"
      "  a = 1\n"
      "\n"
      "  b = 2\n"
      "}\n"
      "\n"
      "data d {\n"
      "  x = 1\n"
      "}\n"
      "\n"
      "train t {\n"
      "  y = 2\n"
      "}\n");
}

TEST(FormatTest, ImportsAndParamsStayGrouped) {
  ExpectFormat(
      "import \"a.mlp\"\n"
      "import \"b.mlp\" as b\n"
      "param x: int = 1\n"
      "param y: list[int] = [1, 2]\n"
      "\n"
      "\n"
      "param z: path\n"
      "resources default { cpu: 1 }\n"
      "cluster local { nodes: 2 }\n",
      "import \"a.mlp\"\n"
      "import \"b.mlp\" as b\n"
      "\n"
      "param x: int = 1\n"
      "param y: list[int] = [1, 2]\n"
      "\n"
      "param z: path\n"
      "\n"
      "resources default { cpu: 1 }\n"
      "\n"
      "cluster local { nodes: 2 }\n");
}

TEST(FormatTest, KernelsAndIfChains) {
  ExpectFormat(
      "kernel sign(x: f32) -> f32 { if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 } }\n"
      "kernel f(x: f32, y: f32) -> f32 {\n"
      "  let s: f32 = x * y; s = s + 1.0;\n"
      "  if x > 0.0 { let t = x * 2.0; t } else if x < 0.0 { -x } else { 0.0 }\n"
      "}\n",
      "kernel sign(x: f32) -> f32 {\n"
      "  if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 }\n"
      "}\n"
      "\n"
      "kernel f(x: f32, y: f32) -> f32 {\n"
      "  let s: f32 = x * y\n"
      "  s = s + 1.0\n"
      "  if x > 0.0 {\n"
      "    let t = x * 2.0\n"
      "    t\n"
      "  } else if x < 0.0 {\n"
      "    -x\n"
      "  } else {\n"
      "    0.0\n"
      "  }\n"
      "}\n");
}

TEST(FormatTest, LongIfGoesMultiLine) {
  ExpectFormat(
      "kernel g(x: f32) -> f32 {\n"
      "  let v = if x > 100000.0 { clamp(x, 0.0, 1.0) * 2.0 } else { clamp(x * 3.0, 0.0, 100.0) * 0.25 + 1.0 }\n"
      "  v\n"
      "}\n",
      "kernel g(x: f32) -> f32 {\n"
      "  let v = if x > 100000.0 {\n"
      "    clamp(x, 0.0, 1.0) * 2.0\n"
      "  } else {\n"
      "    clamp(x * 3.0, 0.0, 100.0) * 0.25 + 1.0\n"
      "  }\n"
      "  v\n"
      "}\n");
}

TEST(FormatTest, LineStartingWithParenBeginsTheResult) {
  ExpectFormat(
      "kernel norm(x: f32, m: f32, s: f32) -> f32 { let y = m; (x - y) / s }\n"
      "kernel neg(x: f32) -> f32 { let y = x; -y }\n"
      "kernel lst(x: f32) -> f32 { let y = x; [y][0] }\n",
      "kernel norm(x: f32, m: f32, s: f32) -> f32 {\n"
      "  let y = m\n"
      "  (x - y) / s\n"
      "}\n"
      "\n"
      "kernel neg(x: f32) -> f32 {\n"
      "  let y = x\n"
      "  -y\n"
      "}\n"
      "\n"
      "kernel lst(x: f32) -> f32 {\n"
      "  let y = x\n"
      "  [y][0]\n"
      "}\n");
}

TEST(FormatTest, CommentInsideIfBlockKeepsItMultiLine) {
  ExpectFormat(
      "kernel k(a: f32) -> f32 {\n"
      "  if a > 0.0 {\n"
      "    // positive\n"
      "    a\n"
      "  } else { 0.0 }\n"
      "}\n",
      "kernel k(a: f32) -> f32 {\n"
      "  if a > 0.0 {\n"
      "    // positive\n"
      "    a\n"
      "  } else {\n"
      "    0.0\n"
      "  }\n"
      "}\n");
}

TEST(FormatTest, CommentsInsideExpressionsAreHoistedInOrder) {
  // A hoisted comment may not overtake one kept inside a block: then all
  // of the statement's comments go before it.
  ExpectFormat(
      "kernel k(c: bool) -> f32 {\n"
      "  let v = if c {\n"
      "    /* a */ 1.0\n"
      "  } else { 2.0 } + /* b */ 3.0\n"
      "  let w = if /* cond */ c { 1.0 } else { 2.0 }\n"
      "  v + w\n"
      "}\n",
      "kernel k(c: bool) -> f32 {\n"
      "  /* a */\n"
      "  /* b */\n"
      "  let v = if c { 1.0 } else { 2.0 } + 3.0\n"
      "  /* cond */\n"
      "  let w = if c { 1.0 } else { 2.0 }\n"
      "  v + w\n"
      "}\n");
}

TEST(FormatTest, Env) {
  ExpectFormat(
      "env pole {\n"
      "  state  { x: f32 = uniform(-0.05, 0.05), v: f32 = 0.0,\n"
      "           th: f32 = uniform(-0.05, 0.05), w: f32 = 0.0 }\n"
      "  action discrete(2)\n"
      "  observe [x, v, th, w]\n"
      "  max_steps = 500\n"
      "  step(a) {\n"
      "    let f = if a == 1 { 10.0 } else { -10.0 };\n"
      "    // ... physics ...\n"
      "    x = x + 0.02 * v\n"
      "    reward 1.0\n"
      "    done abs(th) > 0.21 or abs(x) > 2.4\n"
      "  }\n"
      "}\n",
      "env pole {\n"
      "  state {\n"
      "    x: f32 = uniform(-0.05, 0.05)\n"
      "    v: f32 = 0.0\n"
      "    th: f32 = uniform(-0.05, 0.05)\n"
      "    w: f32 = 0.0\n"
      "  }\n"
      "  action discrete(2)\n"
      "  observe [x, v, th, w]\n"
      "  max_steps = 500\n"
      "  step(a) {\n"
      "    let f = if a == 1 { 10.0 } else { -10.0 }\n"
      "    // ... physics ...\n"
      "    x = x + 0.02 * v\n"
      "    reward 1.0\n"
      "    done abs(th) > 0.21 or abs(x) > 2.4\n"
      "  }\n"
      "}\n");
  ExpectFormat("env e { state { x: f32 = 0.0 } step(a) { reward 1.0 } }\n",
               "env e {\n"
               "  state { x: f32 = 0.0 }\n"
               "  step(a) {\n"
               "    reward 1.0\n"
               "  }\n"
               "}\n");
}

TEST(FormatTest, StopAndPipes) {
  ExpectFormat(
      "rl balance {\n"
      "  env = cartpole()\n"
      "  algorithm = ppo(lr: 3e-4, gamma: 0.99, clip: 0.2)\n"
      "  transform = map(a) | map(b) | filter(c) | shuffle(seed: 42) | batch(size: 128) | prefetch(n: 4) | cache()\n"
      "  stop when reward_mean >= 475 or env_steps >= 200_000\n"
      "}\n",
      "rl balance {\n"
      "  env       = cartpole()\n"
      "  algorithm = ppo(lr: 3e-4, gamma: 0.99, clip: 0.2)\n"
      "  transform = map(a) | map(b) | filter(c) | shuffle(seed: 42) | batch(size: 128) | prefetch(n: 4) | cache()\n"
      "  stop when reward_mean >= 475 or env_steps >= 200_000\n"
      "}\n");
}

TEST(FormatTest, Sketch) {
  // The language sketch's quickstart as written there (settings blocks take
  // `key: value`): aligned only where the rules say so.
  ExpectFormat(R"(// pipelines/quickstart.mlp  (illustration)
pipeline quickstart {
  seed = 42
}
param epochs: int = 2                     // `mlpc run --set epochs=5`
param data_dir: path = "/usr/share/datasets/fashion-mnist"
resources default { cpu: 1, memory: 2GiB }
kernel scale(x: f32) -> f32 {             // JIT-compiled through LLVM
  (x / 255.0 - 0.2860) / 0.3530
}
data fashion {
  source    = idx(images: "${data_dir}/train-images-idx3-ubyte.gz",
                  labels: "${data_dir}/train-labels-idx1-ubyte.gz")
  transform = map(scale) | shuffle(seed: 42)
  split     { train: 0.9, val: 0.1 }
  shards    = 2
}
tune sweep {
  trial     = classifier                   // any train stage, or a kernel
  search {
    optimizer.lr: loguniform(1e-4, 1e-2)
    batch_size: choice(64, 128, 256)
  }
  objective = maximize(val.accuracy)
}
train classifier {
  model      = mlp(hidden: [256, 128], classes: 10)
  data       = fashion.train
  optimizer  = adam(lr: 1e-3)
  workers    = 2                          // data-parallel, all-reduce over c10d
  resources  { cpu: 1 }
  checkpoint { every: 1 }
  retry      { max: 2, backoff: 1s }
}
serve classify {
  model    = sweep.best                    // or classifier.model, or a file
  route    = "/v1/classify"
  replicas = 2
  batching { max_size: 32, wait: 2ms }
  autoscale { min: 1, max: 4, target_queue: 8 }
}
rl balance {
  env       = cartpole()                   // or an env declared in .mlp (below)
  algorithm = ppo(lr: 3e-4, gamma: 0.99, clip: 0.2)
  rollout_workers = 2
  stop when reward_mean >= 475 or env_steps >= 200_000
}
)",
               R"(// pipelines/quickstart.mlp  (illustration)
pipeline quickstart {
  seed = 42
}

param epochs: int = 2  // `mlpc run --set epochs=5`
param data_dir: path = "/usr/share/datasets/fashion-mnist"

resources default { cpu: 1, memory: 2GiB }

kernel scale(x: f32) -> f32 {  // JIT-compiled through LLVM
  (x / 255.0 - 0.2860) / 0.3530
}

data fashion {
  source    = idx(
    images: "${data_dir}/train-images-idx3-ubyte.gz",
    labels: "${data_dir}/train-labels-idx1-ubyte.gz",
  )
  transform = map(scale) | shuffle(seed: 42)
  split { train: 0.9, val: 0.1 }
  shards = 2
}

tune sweep {
  trial = classifier  // any train stage, or a kernel
  search { optimizer.lr: loguniform(1e-4, 1e-2), batch_size: choice(64, 128, 256) }
  objective = maximize(val.accuracy)
}

train classifier {
  model     = mlp(hidden: [256, 128], classes: 10)
  data      = fashion.train
  optimizer = adam(lr: 1e-3)
  workers   = 2  // data-parallel, all-reduce over c10d
  resources { cpu: 1 }
  checkpoint { every: 1 }
  retry { max: 2, backoff: 1s }
}

serve classify {
  model    = sweep.best  // or classifier.model, or a file
  route    = "/v1/classify"
  replicas = 2
  batching { max_size: 32, wait: 2ms }
  autoscale { min: 1, max: 4, target_queue: 8 }
}

rl balance {
  env             = cartpole()  // or an env declared in .mlp (below)
  algorithm       = ppo(lr: 3e-4, gamma: 0.99, clip: 0.2)
  rollout_workers = 2
  stop when reward_mean >= 475 or env_steps >= 200_000
}
)");
}

TEST(FormatTest, CommentsAfterAnOpeningBraceStayOnItsLine) {
  ExpectFormat(
      "kernel k(x: f32) -> f32 {   // why\n"
      "  if x > 0.0 { // positive\n"
      "    x } else { 0.0 }\n"
      "}\n"
      "resources r { // none yet\n"
      "}\n",
      "kernel k(x: f32) -> f32 {  // why\n"
      "  if x > 0.0 {  // positive\n"
      "    x\n"
      "  } else {\n"
      "    0.0\n"
      "  }\n"
      "}\n"
      "\n"
      "resources r {  // none yet\n"
      "}\n");
}

TEST(FormatTest, LongCallWrapsOneArgumentPerLine) {
  // The wrapped item keeps its place in the `=` run (its first line holds
  // the `=`); the one-line block item still ends the run.
  ExpectFormat(
      "data fashion {\n"
      "  source = idx(images: \"${data_dir}/train-images-idx3-ubyte.gz\", labels: \"${data_dir}/train-labels-idx1-ubyte.gz\")\n"
      "  transform = map(scale) | shuffle(seed: 42)\n"
      "  split { train: 0.9, val: 0.1 }\n"
      "  shards = 2\n"
      "}\n",
      "data fashion {\n"
      "  source    = idx(\n"
      "    images: \"${data_dir}/train-images-idx3-ubyte.gz\",\n"
      "    labels: \"${data_dir}/train-labels-idx1-ubyte.gz\",\n"
      "  )\n"
      "  transform = map(scale) | shuffle(seed: 42)\n"
      "  split { train: 0.9, val: 0.1 }\n"
      "  shards = 2\n"
      "}\n");
  // A wrapped source (trailing comma and all) that fits joins one line again.
  ExpectFormat(
      "data d {\n"
      "  source = idx(\n"
      "    images: \"a\",\n"
      "    labels: \"b\",\n"
      "  )\n"
      "}\n",
      "data d {\n"
      "  source = idx(images: \"a\", labels: \"b\")\n"
      "}\n");
  // Exactly 100 columns stays on one line; 101 wraps.
  std::string fits = "param p: list[string] = f(\"" + std::string(63, 'a') + "\", \"bbbb\")\n";
  ASSERT_EQ(fits.size(), 101u);  // 100 columns and the newline
  ExpectFormat(fits, fits);
  ExpectFormat("param p: list[string] = f(\"" + std::string(63, 'a') + "\", \"bbbbb\")\n",
               "param p: list[string] = f(\n"
               "  \"" + std::string(63, 'a') + "\",\n"
               "  \"bbbbb\",\n"
               ")\n");
}

TEST(FormatTest, LongListAndMapWrap) {
  ExpectFormat(
      "pipeline p {\n"
      "  layers = [1024, 1024, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 16, 16, 8, 8, 4, 4, 2, 2, 1, 1]\n"
      "  labels = {zero: \"t-shirt\", one: \"trouser\", two: \"pullover\", three: \"dress\", \"four\": \"coat\", five: \"sandal\"}\n"
      "  short = [1, 2]\n"
      "}\n",
      "pipeline p {\n"
      "  layers = [\n"
      "    1024,\n"
      "    1024,\n"
      "    512,\n"
      "    512,\n"
      "    256,\n"
      "    256,\n"
      "    128,\n"
      "    128,\n"
      "    64,\n"
      "    64,\n"
      "    32,\n"
      "    32,\n"
      "    16,\n"
      "    16,\n"
      "    8,\n"
      "    8,\n"
      "    4,\n"
      "    4,\n"
      "    2,\n"
      "    2,\n"
      "    1,\n"
      "    1,\n"
      "  ]\n"
      "  labels = {\n"
      "    zero: \"t-shirt\",\n"
      "    one: \"trouser\",\n"
      "    two: \"pullover\",\n"
      "    three: \"dress\",\n"
      "    \"four\": \"coat\",\n"
      "    five: \"sandal\",\n"
      "  }\n"
      "  short  = [1, 2]\n"
      "}\n");
}

TEST(FormatTest, NestedWrapping) {
  // The outermost sequence wraps first; an argument still too long wraps in
  // turn, one level deeper. A sequence with one item never wraps.
  ExpectFormat(
      "train t {\n"
      "  model = mlp(hidden: [4096, 4096, 2048, 2048, 1024, 1024, 512, 512, 256, 256, 128, 128, 64, 64, 32, 16, 16, 8, 8, 4, 4], "
      "classes: 10, dropout: 0.1)\n"
      "  optimizer = adam(lr: 1e-3)\n"
      "}\n",
      "train t {\n"
      "  model     = mlp(\n"
      "    hidden: [\n"
      "      4096,\n"
      "      4096,\n"
      "      2048,\n"
      "      2048,\n"
      "      1024,\n"
      "      1024,\n"
      "      512,\n"
      "      512,\n"
      "      256,\n"
      "      256,\n"
      "      128,\n"
      "      128,\n"
      "      64,\n"
      "      64,\n"
      "      32,\n"
      "      16,\n"
      "      16,\n"
      "      8,\n"
      "      8,\n"
      "      4,\n"
      "      4,\n"
      "    ],\n"
      "    classes: 10,\n"
      "    dropout: 0.1,\n"
      "  )\n"
      "  optimizer = adam(lr: 1e-3)\n"
      "}\n");
  // Of several sequences that open on a long line, the last one whose
  // opening delimiter is within the limit wraps; what follows its `)` stays
  // on that line.
  ExpectFormat(
      "data d {\n"
      "  transform = map(scale) | shuffle(seed: 42, buffer_size: 100000) | batch(size: 128, drop_remainder: true)\n"
      "  augment = map(flip_horizontally) | map(rotate_by_small_angles) | crop(size: 24, padding: 4, mode: \"reflect\") | "
      "jitter(brightness: 0.4, contrast: 0.4)\n"
      "}\n",
      "data d {\n"
      "  transform = map(scale) | shuffle(seed: 42, buffer_size: 100000) | batch(\n"
      "    size: 128,\n"
      "    drop_remainder: true,\n"
      "  )\n"
      "  augment   = map(flip_horizontally) | map(rotate_by_small_angles) | crop(\n"
      "    size: 24,\n"
      "    padding: 4,\n"
      "    mode: \"reflect\",\n"
      "  ) | jitter(brightness: 0.4, contrast: 0.4)\n"
      "}\n");
  // Nothing on the line can wrap: it stays long.
  std::string pipes =
      "param t: string = map(a) | map(b) | filter(c) | shuffle(seed: 42) | batch(size: 128) | prefetch(n: 4)\n";
  ASSERT_GT(pipes.size(), 101u);
  ExpectFormat(pipes, pipes);
}

TEST(FormatTest, AlignmentPaddingCountsTowardLength) {
  // Unpadded, `b = f(...)` is 99 columns; padded to the run's `=`, 109.
  std::string arg(85, 'x');
  ExpectFormat(
      "pipeline p {\n"
      "  b = f(\"" + arg + "\", 1)\n"
      "  longer_name = 2\n"
      "}\n",
      "pipeline p {\n"
      "  b           = f(\n"
      "    \"" + arg + "\",\n"
      "    1,\n"
      "  )\n"
      "  longer_name = 2\n"
      "}\n");
}

TEST(FormatTest, CommentsInAWrappedCallStayNextToTheirArgument) {
  // Comments between arguments stay there: on the line where an argument
  // ends, after its comma; otherwise on their own lines. One inside an
  // argument is hoisted before the item, and one after `)` trails it.
  ExpectFormat(
      "data d {\n"
      "  source = idx(images: /* in */ \"${data_dir}/train-images-idx3-ubyte.gz\", // the pixels\n"
      "               /* next */ labels: \"${data_dir}/train-labels-\" + \"idx1-ubyte.gz\" /* last */\n"
      "               // closing\n"
      "  )  // why\n"
      "  workers = 2\n"
      "}\n",
      "data d {\n"
      "  /* in */\n"
      "  source  = idx(\n"
      "    images: \"${data_dir}/train-images-idx3-ubyte.gz\",  // the pixels\n"
      "    /* next */\n"
      "    labels: \"${data_dir}/train-labels-\" + \"idx1-ubyte.gz\",  /* last */\n"
      "    // closing\n"
      "  )  // why\n"
      "  workers = 2\n"
      "}\n");
  // A comment that fits nowhere in order sends all of the item's comments
  // before it.
  ExpectFormat(
      "data d {\n"
      "  source = idx(images: \"${data_dir}/train-images-idx3-ubyte.gz\", /* a */ labels: \"${data_dir}/labels\") "
      "| /* b */ shuffle(seed: 1)\n"
      "}\n",
      "data d {\n"
      "  /* a */\n"
      "  /* b */\n"
      "  source = idx(\n"
      "    images: \"${data_dir}/train-images-idx3-ubyte.gz\",\n"
      "    labels: \"${data_dir}/labels\",\n"
      "  ) | shuffle(seed: 1)\n"
      "}\n");
  // Comments do not count toward the length of a line.
  std::string line_comment = "// " + std::string(90, 'c');
  ExpectFormat(
      "data d {\n"
      "  source = idx(images: pair(\"" + std::string(60, 'i') + "\", 1), " + line_comment + "\n"
      "               labels: \"" + std::string(60, 'l') + "\")\n"
      "}\n",
      "data d {\n"
      "  source = idx(\n"
      "    images: pair(\"" + std::string(60, 'i') + "\", 1),  " + line_comment + "\n"
      "    labels: \"" + std::string(60, 'l') + "\",\n"
      "  )\n"
      "}\n");
}

TEST(FormatTest, WrappedArgumentsStartingWithParenBracketOrMinus) {
  // Each argument after a line break begins a new expression, so `-x`,
  // `(a + b) * c` and `[x, x][0]` at the start of a line are arguments, not
  // the continuation of the line before.
  const std::string expected =
      "kernel k(x: f32) -> f32 {\n"
      "  let y = clamp_to_range_with_a_long_name(\n"
      "    -x * 2.0,\n"
      "    (x + 1.0) * 3.0,\n"
      "    [x, x][0],\n"
      "    -1000000.0,\n"
      "    1000000.0,\n"
      "  )\n"
      "  -y\n"
      "}\n"
      "\n"
      "param grid: list[list[float]] = [\n"
      "  [-1.0, -0.5, 0.0, 0.5, 1.0],\n"
      "  [-2.0, -1.0, 0.0, 1.0, 2.0],\n"
      "  -[3.0, 1.5, 0.0, -1.5, -3.0],\n"
      "  (a + b) * c,\n"
      "]\n";
  ExpectFormat(
      "kernel k(x: f32) -> f32 {\n"
      "  let y = clamp_to_range_with_a_long_name(-x * 2.0, (x + 1.0) * 3.0, [x, x][0], -1000000.0, 1000000.0)\n"
      "  -y\n"
      "}\n"
      "param grid: list[list[float]] = [[-1.0, -0.5, 0.0, 0.5, 1.0], [-2.0, -1.0, 0.0, 1.0, 2.0], "
      "-[3.0, 1.5, 0.0, -1.5, -3.0], (a + b) * c]\n",
      expected);
  // Parsed back, every line-initial `(`, `[` and `-` began an argument: the
  // call still has five arguments and the list four elements.
  auto p = ParseText(expected);
  ASSERT_FALSE(p->diags.has_errors()) << Messages(*p);
  ASSERT_EQ(p->file->decls.size(), 2u);
  const auto& k = static_cast<const ast::KernelDecl&>(*p->file->decls[0]);
  ASSERT_EQ(k.body.stmts.size(), 1u);
  ASSERT_TRUE(k.body.stmts[0].value);
  EXPECT_EQ(k.body.stmts[0].value->kind, ast::ExprKind::Call);
  EXPECT_EQ(k.body.stmts[0].value->args.size(), 5u);
  ASSERT_TRUE(k.body.result);
  EXPECT_EQ(k.body.result->kind, ast::ExprKind::Unary);
  const auto& g = static_cast<const ast::ParamDecl&>(*p->file->decls[1]);
  ASSERT_TRUE(g.default_value);
  EXPECT_EQ(g.default_value->kind, ast::ExprKind::List);
  EXPECT_EQ(g.default_value->operands.size(), 4u);
  EXPECT_LE(LongestLine(expected), 100u);
}

TEST(FormatTest, WrappingInBlocksKernelsAndEnvs) {
  // Each line-level node wraps on its own: settings entries, state fields,
  // env items and kernel statements; a wrapped call may hold an `if`.
  ExpectFormat(
      "kernel g(x: f32) -> f32 {\n"
      "  let w = combine(if x > 0.0 { 1.0 } else { 2.0 }, some_function_with_a_long_name(x, x, x), other(x, 1.0))\n"
      "  w\n"
      "}\n"
      "serve s {\n"
      "  labels { names: {zero: \"t-shirt\", one: \"trouser\", two: \"pullover\", three: \"dress\", four: \"coat\", five: \"sandal\"} }\n"
      "}\n"
      "env e {\n"
      "  state { x: f32 = 0.0, v: f32 = initialise(-0.05, 0.05, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) }\n"
      "  observe [x, v, something_quite_long_here, another_quite_long_name, yet_another_long_observed_value]\n"
      "}\n",
      "kernel g(x: f32) -> f32 {\n"
      "  let w = combine(\n"
      "    if x > 0.0 { 1.0 } else { 2.0 },\n"
      "    some_function_with_a_long_name(x, x, x),\n"
      "    other(x, 1.0),\n"
      "  )\n"
      "  w\n"
      "}\n"
      "\n"
      "serve s {\n"
      "  labels {\n"
      "    names: {\n"
      "      zero: \"t-shirt\",\n"
      "      one: \"trouser\",\n"
      "      two: \"pullover\",\n"
      "      three: \"dress\",\n"
      "      four: \"coat\",\n"
      "      five: \"sandal\",\n"
      "    }\n"
      "  }\n"
      "}\n"
      "\n"
      "env e {\n"
      "  state {\n"
      "    x: f32 = 0.0\n"
      "    v: f32 = initialise(-0.05, 0.05, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)\n"
      "  }\n"
      "  observe [\n"
      "    x,\n"
      "    v,\n"
      "    something_quite_long_here,\n"
      "    another_quite_long_name,\n"
      "    yet_another_long_observed_value,\n"
      "  ]\n"
      "}\n");
}

TEST(AstDumpTest, RangesOnlyWhenAsked) {
  auto p = ParseText("param p: list[int] = [1, -2]\n");
  ASSERT_FALSE(p->diags.has_errors()) << Messages(*p);
  std::string plain = DumpAst(p->sm, *p->file, false);
  std::string ranged = DumpAst(p->sm, *p->file, true);
  EXPECT_EQ(plain.find("\"range\""), std::string::npos) << plain;
  EXPECT_NE(ranged.find("\"range\": \"1:1-1:29\""), std::string::npos) << ranged;
  EXPECT_NE(plain.find("\"type\": \"list[int]\""), std::string::npos) << plain;
  EXPECT_NE(plain.find("\"op\": \"-\""), std::string::npos) << plain;
}

// Every example pipeline and golden input that parses keeps its meaning and
// comments, and formats to a fixed point.
TEST(FormatTest, CorpusRoundTrips) {
  std::vector<std::string> files = testing::ListFiles("pipelines", ".mlp");
  for (const auto& f : testing::ListFiles("tests/golden", ".mlp")) files.push_back(f);
  int checked = 0;
  for (const auto& rel : files) {
    SCOPED_TRACE(rel);
    if (CheckRoundTrip(testing::ReadFile(std::string(MLP_SOURCE_DIR) + "/" + rel), rel)) ++checked;
  }
  std::cout << "formatted " << checked << " of " << files.size() << " .mlp files\n";
}

}  // namespace
}  // namespace mlp
