// Robustness: untrusted bytes must never crash or hang the front end. From
// every example and golden input, a fixed-seed generator makes thousands of
// broken variants (truncations, byte flips, insertions and deletions, token
// and line edits, splices of two files, invalid UTF-8, NUL and control bytes)
// plus a set of extreme inputs (deep nesting, megabyte strings, lines of 100k
// tokens, and every crash the fuzzer found, from fuzz/crashes/). Each goes through the whole front end (CompileSource), the
// diagnostic renderers, plan lowering when it checks clean, DumpAst, and the
// formatter, whose output must parse again to the same AST. A sample also goes
// through the real `mlpc check`: exit 0 or 1, never a signal, never a hang.
//
// Inputs run in forked children, so one crashing or hanging input fails the
// test with its name and a saved copy instead of taking the runner down. Every
// failing input is written to $TMPDIR/mlp_robustness/<test>/; rerun one with
// `mlpc check FILE`. MLP_ROBUST_SEED=<n> and MLP_ROBUST_SCALE=<k> (k times as
// many inputs) explore beyond the fixed corpus. docs/fuzzing.md has more.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "compiler/base/diagnostic_render.h"
#include "compiler/base/diagnostics.h"
#include "compiler/driver/compile.h"
#include "compiler/format/formatter.h"
#include "compiler/parse/ast_dump.h"
#include "compiler/parse/parser.h"
#include "compiler/plan/lower.h"
#include "tests/test_util.h"

#ifndef MLP_SOURCE_DIR
#error "tests/CMakeLists.txt defines MLP_SOURCE_DIR, the repository root"
#endif
#ifndef MLPC_BINARY
#error "tests/CMakeLists.txt defines MLPC_BINARY, the mlpc executable"
#endif

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kDefaultSeed = 0x6d6c7063;  // "mlpc"
// Mutated inputs in all, spread over the seed files (at least kMinPerSeed each).
constexpr size_t kMutatedTotal = 6000;
constexpr size_t kMinPerSeed = 8;
constexpr size_t kSplices = 400;
// Of those, how many also go through the mlpc binary.
constexpr size_t kBinarySamples = 200;
// The extreme inputs up to this size go through the binary too (the larger
// ones only in-process, to keep the test quick).
constexpr size_t kBinaryMaxBytes = 640 << 10;
// An input that takes longer than this hangs (RelWithDebInfo on a loaded
// 2-core machine takes well under a second for the largest legitimate one).
constexpr double kTimeoutSeconds = 10;

uint32_t RngSeed() {
  const char* s = std::getenv("MLP_ROBUST_SEED");
  return s && *s ? static_cast<uint32_t>(std::strtoul(s, nullptr, 0)) : kDefaultSeed;
}

size_t Scale() {
  const char* s = std::getenv("MLP_ROBUST_SCALE");
  long v = s && *s ? std::strtol(s, nullptr, 10) : 1;
  return v < 1 ? 1 : static_cast<size_t>(v);
}

uint32_t Fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

struct Input {
  std::string name;  // what it is and how it was made
  std::string text;
  std::string path;  // the path it is compiled as (imports resolve from there)
  // An extreme input the parser must refuse with a syntax error (it nests
  // deeper than kMaxParseNesting), rather than accept or crash on.
  bool expect_syntax_error = false;
};

// ---------------------------------------------------------------------------
// Mutations

const std::vector<std::string>& Fragments() {
  static const std::vector<std::string> k = {
      "{", "}", "(", ")", "[", "]", "=", ":", ",", ".", "|", "->", "${", "}", "\"", "/*", "*/", "//",
      "\n", " ", "-", "+", "*", "/", "%", "<", "<=", "==", "!=", ";", "\\", "\\q", "${x}", "\"${",
      "import", "as", "pipeline", "param", "resources", "cluster", "kernel", "env", "data", "train",
      "tune", "serve", "rl", "stop", "when", "state", "action", "observe", "step", "let", "if", "else",
      "reward", "done", "true", "false", "and", "or", "not", "0", "1.5", "1e999", "1e-999",
      "99999999999999999999", "1_", "1__0", "_1", "2GiB", "3xyz", "0.5s", "1e3ms", "_", "x", "\r",
      "\t", "\r\n", "\x01", "\x02", "\x03", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
      "\xef\xbb\xbf", std::string(1, '\0'), "import \"lib/x.mlp\"", "import \"/\"", "import \".\"",
      "import \"\"", "stop when", "if true { 1 } else { 2 }", "f(a: 1, a: 2)", "list[", "int]",
  };
  return k;
}

// Sequences that are not valid UTF-8, including the ones a lenient decoder
// lets through (overlong forms, surrogates, code points past U+10FFFF).
const std::vector<std::string>& InvalidUtf8() {
  static const std::vector<std::string> k = {
      "\xff", "\xfe", "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xc3", "\xe2\x82", "\xe0\x80\x80",
      "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf",
      "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf7\xbf\xbf\xbf", "\xf8\x88\x80\x80\x80",
      "\xfc\x84\x80\x80\x80\x80",
  };
  return k;
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    size_t e = s.find('\n', b);
    if (e == std::string::npos) {
      if (b < s.size()) out.push_back(s.substr(b));
      break;
    }
    out.push_back(s.substr(b, e - b + 1));
    b = e + 1;
  }
  return out;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l;
  return out;
}

struct IdentSpan {
  size_t begin, end;
};

std::vector<IdentSpan> Identifiers(const std::string& s) {
  std::vector<IdentSpan> out;
  size_t i = 0;
  auto alpha = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; };
  while (i < s.size()) {
    if (alpha(s[i])) {
      size_t b = i;
      while (i < s.size() && (alpha(s[i]) || std::isdigit(static_cast<unsigned char>(s[i])))) ++i;
      out.push_back({b, i});
    } else {
      ++i;
    }
  }
  return out;
}

class Mutator {
 public:
  explicit Mutator(uint32_t seed) : rng_(seed) {}

  size_t Below(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  size_t Offset(const std::string& s) { return Below(s.size() + 1); }
  template <class T>
  const T& Pick(const std::vector<T>& v) { return v[Below(v.size())]; }

  // Applies one random mutation to `s`; returns its name.
  std::string Mutate(std::string& s) {
    switch (Below(15)) {
      case 0: {
        s.resize(Offset(s));
        return "truncate";
      }
      case 1: {
        size_t n = 1 + Below(8);
        for (size_t k = 0; k < n && !s.empty(); ++k) s[Below(s.size())] ^= static_cast<char>(1u << Below(8));
        return "flip-bits";
      }
      case 2: {
        size_t n = 1 + Below(8);
        for (size_t k = 0; k < n && !s.empty(); ++k) s[Below(s.size())] = static_cast<char>(Below(256));
        return "random-bytes";
      }
      case 3: {
        size_t n = 1 + Below(16);
        std::string bytes;
        for (size_t k = 0; k < n; ++k) bytes += static_cast<char>(Below(256));
        s.insert(Offset(s), bytes);
        return "insert-bytes";
      }
      case 4: {
        size_t b = Offset(s);
        size_t n = 1 + Below(Chance(0.2) ? 256 : 8);
        s.erase(b, n);
        return "delete-bytes";
      }
      case 5:
      case 6: {
        auto lines = SplitLines(s);
        if (lines.empty()) return "lines-none";
        size_t i = Below(lines.size()), j = Below(lines.size());
        switch (Below(4)) {
          case 0: lines.insert(lines.begin() + static_cast<long>(i), lines[i]); s = JoinLines(lines); return "dup-line";
          case 1: lines.erase(lines.begin() + static_cast<long>(i)); s = JoinLines(lines); return "delete-line";
          case 2: std::swap(lines[i], lines[j]); s = JoinLines(lines); return "swap-lines";
          default: {
            std::string l = lines[i];
            lines.erase(lines.begin() + static_cast<long>(i));
            lines.insert(lines.begin() + static_cast<long>(std::min(j, lines.size())), l);
            s = JoinLines(lines);
            return "move-line";
          }
        }
      }
      case 7:
      case 8: {
        auto ids = Identifiers(s);
        if (ids.size() < 2) return "ident-none";
        IdentSpan to = Pick(ids), from = Pick(ids);
        std::string name = s.substr(from.begin, from.end - from.begin);
        s.replace(to.begin, to.end - to.begin, name);
        return "replace-ident";
      }
      case 9:
      case 10: {
        size_t n = 1 + Below(4);
        for (size_t k = 0; k < n; ++k) s.insert(Offset(s), Pick(Fragments()));
        return "insert-fragment";
      }
      case 11: {
        // Delete a token-ish run: up to the next space or newline.
        size_t b = Offset(s);
        size_t e = s.find_first_of(" \n", b);
        s.erase(b, e == std::string::npos ? std::string::npos : e - b);
        return "delete-word";
      }
      case 12: {
        // Inside a string literal when there is one: the lexer's hardest case.
        size_t q = s.find('"', Offset(s));
        size_t at = q == std::string::npos ? Offset(s) : q + 1;
        s.insert(at, Pick(InvalidUtf8()));
        return "invalid-utf8";
      }
      case 13: {
        size_t n = 1 + Below(4);
        for (size_t k = 0; k < n; ++k) s.insert(Offset(s), std::string(1, static_cast<char>(Below(32))));
        return "control-bytes";
      }
      default: {
        // Repeat a slice: exercises the limits of lists, blocks and nesting.
        size_t b = Offset(s);
        size_t n = std::min<size_t>(s.size() - b, 1 + Below(32));
        std::string slice = s.substr(b, n);
        size_t times = 2 + Below(Chance(0.1) ? 300 : 10);
        std::string rep;
        for (size_t k = 0; k < times; ++k) rep += slice;
        s.insert(b, rep);
        return "repeat";
      }
    }
  }

 private:
  std::mt19937 rng_;
};

struct SeedFile {
  std::string rel;   // relative to MLP_SOURCE_DIR
  std::string path;  // absolute
  std::string text;
};

std::vector<SeedFile> Seeds() {
  std::vector<SeedFile> out;
  for (const char* dir : {"pipelines", "tests/golden"}) {
    for (const auto& rel : mlp::testing::ListFiles(dir, ".mlp")) {
      std::string path = std::string(MLP_SOURCE_DIR) + "/" + rel;
      out.push_back({rel, path, mlp::testing::ReadFile(path)});
    }
  }
  return out;
}

std::vector<Input> MutatedInputs() {
  std::vector<SeedFile> seeds = Seeds();
  std::vector<Input> out;
  if (seeds.empty()) return out;
  const uint32_t seed = RngSeed();
  const size_t per_seed = std::max(kMinPerSeed, kMutatedTotal / seeds.size()) * Scale();
  for (const auto& sd : seeds) {
    // Seeded per file, so that adding a seed file leaves the others' variants as they were.
    Mutator m(seed ^ Fnv1a(sd.rel));
    for (size_t k = 0; k < per_seed; ++k) {
      std::string text = sd.text;
      std::string how = m.Mutate(text);
      while (m.Chance(0.35)) how += "+" + m.Mutate(text);
      out.push_back({sd.rel + "#" + std::to_string(k) + ":" + how, std::move(text), sd.path});
    }
  }
  // Splices: the front of one file and the back of another, by byte or by line.
  Mutator m(seed ^ 0x5b11ce5u);
  for (size_t k = 0; k < kSplices * Scale(); ++k) {
    const SeedFile& a = m.Pick(seeds);
    const SeedFile& b = m.Pick(seeds);
    std::string text, how;
    if (m.Chance(0.5)) {
      text = a.text.substr(0, m.Offset(a.text)) + b.text.substr(m.Offset(b.text));
      how = "splice-bytes";
    } else {
      auto la = SplitLines(a.text), lb = SplitLines(b.text);
      la.resize(m.Below(la.size() + 1));
      lb.erase(lb.begin(), lb.begin() + static_cast<long>(m.Below(lb.size() + 1)));
      text = JoinLines(la) + JoinLines(lb);
      how = "splice-lines";
    }
    if (m.Chance(0.3)) how += "+" + m.Mutate(text);
    out.push_back({"splice#" + std::to_string(k) + ":" + a.rel + "+" + b.rel + ":" + how, std::move(text), a.path});
  }
  return out;
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t k = 0; k < n; ++k) out += s;
  return out;
}

// Extreme inputs: each names the size it has, which is the size that matters
// when it fails.
std::vector<Input> ExtremeInputs() {
  const std::string path = std::string(MLP_SOURCE_DIR) + "/tests/robustness.mlp";
  std::vector<Input> out;
  auto add = [&](std::string name, std::string text, bool expect_syntax_error = false) {
    out.push_back({std::move(name), std::move(text), path, expect_syntax_error});
  };
  const std::string p = "param x: int = ";
  // Nesting past kMaxParseNesting: a clean syntax error, not a stack overflow.
  add("parens-10000", p + Repeat("(", 10000) + "1" + Repeat(")", 10000) + "\n", true);
  add("parens-unclosed-100000", p + Repeat("(", 100000) + "\n", true);
  add("brackets-10000", p + Repeat("[", 10000) + "1" + Repeat("]", 10000) + "\n", true);
  add("brackets-unclosed-100000", p + Repeat("[", 100000) + "\n", true);
  add("map-nesting-10000", p + Repeat("{a: ", 10000) + "1" + Repeat("}", 10000) + "\n", true);
  add("call-nesting-10000", p + Repeat("f(", 10000) + "1" + Repeat(")", 10000) + "\n", true);
  add("neg-100000", p + Repeat("-", 100000) + "1\n", true);
  add("not-100000", "param x: bool = " + Repeat("not ", 100000) + "true\n", true);
  add("neg-paren-10000", p + Repeat("-(", 10000) + "1" + Repeat(")", 10000) + "\n", true);
  add("plus-chain-100000-tokens", p + "1" + Repeat(" + 1", 50000) + "\n", true);
  add("pipe-chain-100000-tokens", p + "a" + Repeat(" | b", 50000) + "\n", true);
  add("field-chain-100000-tokens", p + "a" + Repeat(".b", 50000) + "\n", true);
  add("stop-when-or-chain-10000", "rl r { stop when " + Repeat("x >= 1 or ", 10000) + "x >= 1 }\n", true);
  add("block-nesting-10000", "kernel k(x: f32) -> f32 { " + Repeat("if x > 0.0 { ", 10000) + "x" +
                                 Repeat(" } else { x }", 10000) + " }\n", true);
  add("type-nesting-100000", "param x: " + Repeat("list[", 100000) + "int" + Repeat("]", 100000) + "\n", true);
  add("type-nesting-unclosed-100000", "param x: " + Repeat("list[", 100000) + "\n", true);
  add("else-if-chain-100000", p + "if true {1}" + Repeat(" else if true {1}", 100000) + " else {2}\n", true);
  add("kernel-else-if-chain-20000",
      "kernel k(x: f32) -> f32 { if x > 0.0 {1.0}" + Repeat(" else if x > 0.0 {1.0}", 20000) + " else {2.0} }\n",
      true);
  // Long chains that stay shallow in brackets but not in the AST.
  add("index-chain-20000", p + "a" + Repeat("[0]", 20000) + "\n", true);
  // Big but flat: must simply work, in linear time.
  add("string-1MB", "pipeline p { description = \"" + std::string(1 << 20, 'a') + "\" }\n");
  add("string-1MB-unterminated", "pipeline p { description = \"" + std::string(1 << 20, 'a') + "\n");
  add("string-1MB-escapes", "pipeline p { description = \"" + Repeat("\\n\\q${x}", 1 << 17) + "\" }\n");
  add("string-interpolations-100000", "pipeline p { description = \"" + Repeat("${a}", 100000) + "\" }\n");
  add("ident-1MB", "pipeline " + std::string(1 << 20, 'x') + " { }\n");
  add("int-1MB", p + std::string(1 << 20, '7') + "\n");
  add("float-1MB", p + "1." + std::string(1 << 20, '5') + "\n");
  add("comment-1MB", "// " + std::string(1 << 20, 'c') + "\npipeline p { }\n");
  add("block-comment-1MB-unterminated", "pipeline p { } /* " + std::string(1 << 20, 'c'));
  add("unterminated-block-comments-30000", Repeat("/* ", 30000) + "\n");
  add("list-100000", "param x: list[int] = [" + Repeat("1, ", 100000) + "1]\n");
  add("call-args-100000", p + "f(" + Repeat("1, ", 100000) + "1)\n");
  {
    std::string m = "param x: int = {";
    for (int k = 0; k < 100000; ++k) m += "k" + std::to_string(k) + ": 1, ";
    add("map-100000-entries", m + "}\n");
  }
  {
    std::string b = "resources r { ";
    for (int k = 0; k < 100000; ++k) b += "k" + std::to_string(k) + ": 1, ";
    add("block-100000-entries", b + "}\n");
  }
  {
    std::mt19937 rng(RngSeed());
    std::vector<std::string> toks = {"{", "}", "(", ")", "[", "]", "=", ":", ",", ".", "|", "->", "a", "1",
                                     "1.5", "2GiB", "\"s\"", "data", "train", "if", "else", "let", "not",
                                     "-", "+", "*", "and", "true", "${", "\"", "/", "*/"};
    std::string line = "pipeline p { x = ";
    for (int k = 0; k < 100000; ++k) line += toks[rng() % toks.size()] + " ";
    add("line-of-100000-random-tokens", line + "}\n");
  }
  add("decls-20000-duplicates", Repeat("param a: int = 1\n", 20000));
  add("closing-braces-100000", std::string(100000, '}') + "\n");
  add("nul-bytes-100000", std::string(100000, '\0'));
  add("nul-in-string", "pipeline p { description = \"a" + std::string(1, '\0') + "b\" }\n");
  {
    std::string ctl;
    for (int k = 0; k < 30000; ++k) ctl += static_cast<char>(1 + k % 31);
    add("control-bytes-30000", ctl);
  }
  add("newlines-1M", std::string(1 << 20, '\n'));
  add("empty", "");
  add("bom-only", "\xef\xbb\xbf");
  add("bom-then-pipeline", "\xef\xbb\xbfpipeline p { }\n");
  // Every invalid UTF-8 form, alone, in a valid file, and in a file with a
  // syntax error (which takes the parser's other path).
  for (size_t k = 0; k < InvalidUtf8().size(); ++k) {
    const std::string& bad = InvalidUtf8()[k];
    add("invalid-utf8-" + std::to_string(k) + "-alone", bad);
    add("invalid-utf8-" + std::to_string(k) + "-in-string", "pipeline p { description = \"" + bad + "\" }\n");
    add("invalid-utf8-" + std::to_string(k) + "-in-string-with-syntax-error",
        "pipeline p { description = \"" + bad + "\" ]\n");
    add("invalid-utf8-" + std::to_string(k) + "-in-comment", "// " + bad + "\npipeline p { }\n");
  }
  // Every crash the fuzzer has found stays in the set (fuzz/crashes/).
  for (const auto& rel : mlp::testing::ListFiles("fuzz/crashes", ".mlp")) {
    add("regression:" + rel, mlp::testing::ReadFile(std::string(MLP_SOURCE_DIR) + "/" + rel));
  }
  add("valid-multibyte-everywhere", "// \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\npipeline p\xc3\xa9 { description = \""
                                    "\xe2\x82\xac\" } \xf0\x9f\x98\x80\n");
  return out;
}

// ---------------------------------------------------------------------------
// The checks on one input. They run in a forked child, so they report by
// returning problems, not through gtest.

bool IsSyntaxKind(mlp::DiagKind k) {
  using mlp::DiagKind;
  return k == DiagKind::SyntaxError || k == DiagKind::InvalidCharacter || k == DiagKind::UnterminatedString ||
         k == DiagKind::InvalidLiteral || k == DiagKind::UnknownUnit;
}

std::string Clip(std::string s, size_t n = 600) {
  if (s.size() > n) s = s.substr(0, n) + "...(" + std::to_string(s.size()) + " bytes)";
  return s;
}

void CheckRange(const mlp::SourceManager& sm, const mlp::Range& r, const std::string& what,
                std::vector<std::string>& problems) {
  if (!r.valid()) return;
  if (r.file >= sm.size()) {
    problems.push_back(what + " has a range in unknown file " + std::to_string(r.file));
  } else if (r.begin > r.end || r.end > sm.Text(r.file).size()) {
    problems.push_back(what + " has range [" + std::to_string(r.begin) + ", " + std::to_string(r.end) +
                       ") in a file of " + std::to_string(sm.Text(r.file).size()) + " bytes");
  }
}

std::vector<std::string> CheckFrontEnd(const Input& in) {
  std::vector<std::string> problems;
  mlp::Compilation c = mlp::CompileSource(in.path, in.text, mlp::LoadOptions{}, mlp::CheckOptions{});
  if (!c.program || c.program->modules.empty()) {
    problems.push_back("CompileSource returned no main module");
    return problems;
  }
  const mlp::SourceManager& sm = c.program->sm;
  const mlp::FileId main_file = c.program->modules[0].file;
  bool main_syntax_errors = false;
  for (const auto& d : c.diags.all()) {
    std::string what = "diagnostic `" + Clip(d.message, 200) + "`";
    CheckRange(sm, d.range, what, problems);
    for (const auto& n : d.notes) CheckRange(sm, n.range, "a note of " + what, problems);
    if (IsSyntaxKind(d.kind) && d.range.valid() && d.range.file == main_file) main_syntax_errors = true;
  }
  if (!problems.empty()) return problems;  // rendering would read out of bounds
  (void)mlp::RenderText(sm, c.diags, true);
  (void)mlp::RenderJson({mlp::DiagSource{&sm, &c.diags}});
  (void)mlp::RenderSarif({mlp::DiagSource{&sm, &c.diags}}, "robustness");
  if (c.checked && !c.diags.has_errors()) (void)mlp::LowerPlan(*c.program, *c.checked);

  if (in.expect_syntax_error && !main_syntax_errors) {
    problems.push_back("expected a syntax error (it nests deeper than " + std::to_string(mlp::kMaxParseNesting) +
                       " levels), got " + (c.diags.all().empty() ? std::string("no diagnostics")
                                                                 : "only: " + Clip(c.diags.all()[0].message, 200)));
  }

  const mlp::ast::File* file = c.program->modules[0].ast.get();
  if (!file) {
    problems.push_back("the main module has no AST");
    return problems;
  }
  std::string formatted = mlp::Format(sm, *file);  // a partial AST formats too
  if (main_syntax_errors) return problems;
  (void)mlp::DumpAst(sm, *file, true);
  std::string before = mlp::DumpAst(sm, *file, false);
  mlp::SourceManager sm2;
  mlp::FileId id2 = sm2.Add("formatted.mlp", formatted);
  mlp::Diagnostics diags2;
  auto reparsed = mlp::Parse(sm2, id2, diags2);
  if (diags2.has_errors()) {
    problems.push_back("the formatter's output does not parse: " + Clip(RenderText(sm2, diags2, false)) +
                       "\n--- formatted:\n" + Clip(formatted));
  } else if (!reparsed) {
    problems.push_back("Parse returned null on the formatter's output");
  } else if (mlp::DumpAst(sm2, *reparsed, false) != before) {
    problems.push_back("formatting changed the AST; formatted:\n" + Clip(formatted));
  }
  return problems;
}

// ---------------------------------------------------------------------------
// Running inputs in forked children, with a deadline per input.

struct Outcome {
  enum Kind { Ok, Problems, Crashed, TimedOut, NotRun } kind = NotRun;
  std::vector<std::string> problems;
  std::string how;  // for a crash: the signal or exit status
  double seconds = 0;
};

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);
    off += static_cast<size_t>(n);
  }
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out += s[i + 1] == 'n' ? '\n' : s[i + 1];
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string DescribeStatus(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// Runs `check` on every input, in as few children as crashes and hangs allow:
// a child reports "S i" before input i and "D i us" after it, so the parent
// knows which input was in flight when the child died or went quiet.
std::vector<Outcome> RunIsolated(const std::vector<Input>& inputs,
                                 const std::function<std::vector<std::string>(const Input&)>& check) {
  std::vector<Outcome> out(inputs.size());
  size_t next = 0;
  while (next < inputs.size()) {
    int fds[2];
    if (pipe(fds) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return out;
    }
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      return out;
    }
    if (pid == 0) {
      close(fds[0]);
      for (size_t i = next; i < inputs.size(); ++i) {
        WriteAll(fds[1], "S " + std::to_string(i) + "\n");
        auto t0 = Clock::now();
        std::vector<std::string> problems;
        // An exception escaping the front end terminates mlpc: a crash. It
        // must not unwind into gtest, which would carry on in this child.
        try {
          problems = check(inputs[i]);
        } catch (const std::exception& e) {
          WriteAll(fds[1], "X " + std::to_string(i) + " " + Escape(std::string("uncaught exception: ") + e.what()) + "\n");
          _exit(70);
        } catch (...) {
          WriteAll(fds[1], "X " + std::to_string(i) + " uncaught exception of unknown type\n");
          _exit(70);
        }
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
        for (const auto& p : problems) WriteAll(fds[1], "P " + std::to_string(i) + " " + Escape(p) + "\n");
        WriteAll(fds[1], "D " + std::to_string(i) + " " + std::to_string(us) + "\n");
      }
      _exit(0);
    }
    close(fds[1]);
    long current = -1, last_done = static_cast<long>(next) - 1;
    bool timed_out = false;
    std::string buf;
    auto deadline = Clock::now() + std::chrono::duration<double>(kTimeoutSeconds);
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        timed_out = true;
        break;
      }
      pollfd pfd{fds[0], POLLIN, 0};
      int r = poll(&pfd, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        timed_out = true;
        break;
      }
      char chunk[1 << 16];
      ssize_t n = read(fds[0], chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the child is gone
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (line.size() < 3) continue;
        char tag = line[0];
        size_t sp = line.find(' ', 2);
        long i = std::strtol(line.c_str() + 2, nullptr, 10);
        if (i < 0 || static_cast<size_t>(i) >= inputs.size()) continue;
        if (tag == 'S') {
          current = i;
          deadline = Clock::now() + std::chrono::duration<double>(kTimeoutSeconds);
        } else if (tag == 'X') {
          out[i].how = sp == std::string::npos ? "" : Unescape(line.substr(sp + 1));
        } else if (tag == 'P') {
          out[i].problems.push_back(sp == std::string::npos ? "" : Unescape(line.substr(sp + 1)));
        } else if (tag == 'D') {
          out[i].kind = out[i].problems.empty() ? Outcome::Ok : Outcome::Problems;
          out[i].seconds = sp == std::string::npos ? 0 : std::strtod(line.c_str() + sp + 1, nullptr) / 1e6;
          current = -1;
          last_done = i;
        }
      }
    }
    if (timed_out) kill(pid, SIGKILL);  // our own child, by its id
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(fds[0]);
    if (current >= 0) {
      out[current].kind = timed_out ? Outcome::TimedOut : Outcome::Crashed;
      if (timed_out) {
        out[current].how = "no result after " + std::to_string(static_cast<int>(kTimeoutSeconds)) + " s";
      } else if (out[current].how.empty()) {
        out[current].how = DescribeStatus(status);
      }
      next = static_cast<size_t>(current) + 1;
    } else if (static_cast<size_t>(last_done + 1) < inputs.size()) {
      // Died between inputs: blame the next one, so the loop moves on.
      size_t i = static_cast<size_t>(last_done + 1);
      out[i].kind = timed_out ? Outcome::TimedOut : Outcome::Crashed;
      out[i].how = "the child " + (timed_out ? std::string("hung") : DescribeStatus(status)) + " before input";
      next = i + 1;
    } else {
      next = inputs.size();
    }
  }
  return out;
}

std::string SafeName(const std::string& name) {
  std::string out;
  for (char c : name) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  if (out.size() > 120) out = out.substr(0, 100) + "_" + std::to_string(Fnv1a(name));
  return out;
}

fs::path FailureDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::temp_directory_path() / "mlp_robustness" / (std::string(info->test_suite_name()) + "." + info->name());
  return dir;
}

// A failure message with its numbers and byte values blanked, to count
// failures by kind.
std::string Shape(const std::string& what) {
  std::string out;
  for (size_t i = 0; i < what.size() && out.size() < 100; ++i) {
    if (what.compare(i, 2, "0x") == 0) {
      i += 2;
      while (i < what.size() && std::isxdigit(static_cast<unsigned char>(what[i]))) ++i;
      --i;
      out += '#';
    } else if (std::isdigit(static_cast<unsigned char>(what[i]))) {
      while (i + 1 < what.size() && std::isdigit(static_cast<unsigned char>(what[i + 1]))) ++i;
      out += '#';
    } else {
      out += what[i] == '\n' ? ' ' : what[i];
    }
  }
  return out;
}

// Reports every input that did not come out Ok, saving each to a file: the
// first kDetailed in full, then a count per kind of failure.
void Report(const std::vector<Input>& inputs, const std::vector<Outcome>& outcomes, double wall_seconds) {
  constexpr size_t kDetailed = 40;
  fs::path dir = FailureDir();
  std::error_code ec;
  fs::remove_all(dir, ec);
  size_t failed = 0, crashed = 0, hung = 0;
  std::map<std::string, size_t> kinds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Outcome& o = outcomes[i];
    if (o.kind == Outcome::Ok) continue;
    ++failed;
    crashed += o.kind == Outcome::Crashed;
    hung += o.kind == Outcome::TimedOut;
    fs::create_directories(dir, ec);
    fs::path file = dir / (SafeName(inputs[i].name) + ".mlp");
    mlp::testing::WriteFile(file.string(), inputs[i].text);
    std::string what = o.kind == Outcome::Crashed    ? "CRASHED: " + o.how
                       : o.kind == Outcome::TimedOut ? "HUNG: " + o.how
                       : o.kind == Outcome::NotRun   ? "was not run"
                                                     : "";
    ++kinds[Shape(what.empty() ? o.problems.front() : what)];
    for (const auto& p : o.problems) what += (what.empty() ? "" : "\n") + p;
    if (failed <= kDetailed) {
      ADD_FAILURE() << inputs[i].name << " (" << inputs[i].text.size() << " bytes, saved as " << file.string()
                    << ", compiled as " << inputs[i].path << "):\n" << what;
    }
  }
  if (failed > kDetailed) {
    std::string summary;
    for (const auto& [what, n] : kinds) summary += "\n  " + std::to_string(n) + " x " + what;
    ADD_FAILURE() << failed << " inputs failed in all, " << failed - kDetailed << " more than shown; all are saved in "
                  << dir.string() << "; by kind:" << summary;
  }
  std::vector<size_t> order(inputs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return outcomes[a].seconds > outcomes[b].seconds; });
  std::cout << "[ robustness ] " << inputs.size() << " inputs in " << wall_seconds << " s: " << failed
            << " failed (" << crashed << " crashed, " << hung << " hung); slowest:";
  for (size_t k = 0; k < std::min<size_t>(3, order.size()); ++k) {
    std::cout << " " << inputs[order[k]].name << " " << outcomes[order[k]].seconds << " s;";
  }
  std::cout << std::endl;
}

double SecondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---------------------------------------------------------------------------
// The mlpc binary, with a deadline (RunMlpc has none).

struct BinaryResult {
  int exit_code = -1;  // 128 + signal when killed by one
  bool timed_out = false;
  std::string out, err;
};

BinaryResult RunMlpcCheck(const std::string& file, const std::string& format, const fs::path& scratch) {
  BinaryResult r;
  std::string out_path = (scratch / "stdout").string(), err_path = (scratch / "stderr").string();
  std::cout.flush();
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    r.err = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    if (chdir(MLP_SOURCE_DIR) != 0) _exit(126);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    const char* argv[] = {MLPC_BINARY, "check", "--format", format.c_str(), file.c_str(), nullptr};
    execv(MLPC_BINARY, const_cast<char* const*>(argv));
    _exit(127);
  }
  auto deadline = Clock::now() + std::chrono::duration<double>(kTimeoutSeconds);
  int status = 0;
  useconds_t sleep_us = 200;
  while (true) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);  // our own child, by its id
      waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    usleep(sleep_us);
    sleep_us = std::min<useconds_t>(sleep_us * 2, 20000);
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = mlp::testing::ReadFile(out_path);
  r.err = mlp::testing::ReadFile(err_path);
  return r;
}

std::string ExpectCleanExit(const BinaryResult& r, const std::string& format) {
  if (r.timed_out) {
    return "`mlpc check --format " + format + "` gave no result in " + std::to_string(static_cast<int>(kTimeoutSeconds)) +
           " s";
  }
  if (r.exit_code != 0 && r.exit_code != 1) {
    return "`mlpc check --format " + format + "` exited " + std::to_string(r.exit_code) +
           (r.exit_code > 128 ? " (signal " + std::to_string(r.exit_code - 128) + ")" : "") + "; stderr: " +
           Clip(r.err, 400);
  }
  // Text diagnostics go to stderr; with --format json or sarif they go to stdout.
  if (r.exit_code == 1 && format == "text" && r.err.empty()) return "`mlpc check` exited 1 with nothing on stderr";
  if (r.exit_code == 1 && format != "text" && r.out.empty()) {
    return "`mlpc check --format " + format + "` exited 1 with nothing on stdout";
  }
  return "";
}

// ---------------------------------------------------------------------------

TEST(RobustnessTest, SeedCorpusIsThere) {
  // The generator needs inputs to mutate; an empty corpus would pass vacuously.
  EXPECT_FALSE(Seeds().empty()) << "no .mlp files under pipelines/ or tests/golden/";
}

TEST(RobustnessTest, MutatedInputsThroughTheFrontEnd) {
  std::vector<Input> inputs = MutatedInputs();
  ASSERT_FALSE(inputs.empty());
  auto t0 = Clock::now();
  std::vector<Outcome> outcomes = RunIsolated(inputs, CheckFrontEnd);
  Report(inputs, outcomes, SecondsSince(t0));
}

TEST(RobustnessTest, ExtremeInputsThroughTheFrontEnd) {
  std::vector<Input> inputs = ExtremeInputs();
  auto t0 = Clock::now();
  std::vector<Outcome> outcomes = RunIsolated(inputs, CheckFrontEnd);
  Report(inputs, outcomes, SecondsSince(t0));
}

TEST(RobustnessTest, MlpcCheckExitsZeroOrOne) {
  // A deterministic sample of the mutated inputs, and the extreme ones up to
  // kBinaryMaxBytes, through the real binary.
  std::vector<Input> mutated = MutatedInputs();
  ASSERT_FALSE(mutated.empty());
  std::vector<Input> inputs;
  size_t want = kBinarySamples * Scale();
  size_t stride = std::max<size_t>(1, mutated.size() / want);
  for (size_t i = 0; i < mutated.size() && inputs.size() < want; i += stride) inputs.push_back(mutated[i]);
  for (auto& in : ExtremeInputs()) {
    if (in.text.size() <= kBinaryMaxBytes) inputs.push_back(std::move(in));
  }

  fs::path scratch = fs::temp_directory_path() / ("mlp_robustness_bin_" + std::to_string(getpid()));
  fs::create_directories(scratch);
  std::string file = (scratch / "input.mlp").string();
  auto t0 = Clock::now();
  std::vector<Outcome> outcomes(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    mlp::testing::WriteFile(file, inputs[i].text);
    auto ti = Clock::now();
    // Every diagnostics format: JSON and SARIF have their own ways to fail.
    static const char* const kFormats[] = {"text", "json", "sarif"};
    BinaryResult r = RunMlpcCheck(file, kFormats[i % 3], scratch);
    outcomes[i].seconds = SecondsSince(ti);
    std::string problem = ExpectCleanExit(r, kFormats[i % 3]);
    if (problem.empty()) {
      outcomes[i].kind = Outcome::Ok;
    } else {
      outcomes[i].kind = r.timed_out ? Outcome::TimedOut : r.exit_code > 128 ? Outcome::Crashed : Outcome::Problems;
      outcomes[i].how = problem;
      if (outcomes[i].kind == Outcome::Problems) outcomes[i].problems.push_back(problem);
    }
  }
  std::error_code ec;
  fs::remove_all(scratch, ec);
  Report(inputs, outcomes, SecondsSince(t0));
}

}  // namespace
