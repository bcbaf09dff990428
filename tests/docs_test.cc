// Tests of the documentation and the shipped pipelines: every ```mlp example
// in the docs checks (or fails as its `expect-error` comment says), the
// language reference covers the whole schema table and every diagnostic, and
// every pipeline in pipelines/ is in canonical `mlpc fmt` layout. The suite is
// named `docs` so that `ctest -R docs` selects these tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/base/diagnostics.h"
#include "compiler/base/source.h"
#include "compiler/format/formatter.h"
#include "compiler/parse/parser.h"
#include "stdlib/schema/schema.h"
#include "tests/test_util.h"

namespace mlp::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLanguageDoc = "docs/language.md";
// Docs whose ```mlp blocks are checked; those that do not exist are skipped.
constexpr const char* kDocsWithExamples[] = {"docs/language.md", "README.md", "docs/architecture.md",
                                             "docs/benchmarks.md"};
// Examples compile as if they were this file, so imports resolve from docs/.
constexpr const char* kExamplePath = MLP_SOURCE_DIR "/docs/example.mlp";

std::string SourcePath(const std::string& rel) { return std::string(MLP_SOURCE_DIR) + "/" + rel; }

std::string LoadDoc(const std::string& rel) {
  std::string path = SourcePath(rel);
  if (!fs::is_regular_file(path)) return "";
  return ReadFile(path);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      if (start < text.size()) out.push_back(text.substr(start));
      break;
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  for (auto& l : out) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
  }
  return out;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// One ```mlp block: its text, the 1-based line of its opening fence, and the
// diagnostic code it must produce ("" when it must compile without errors).
struct Example {
  std::string text;
  int line = 0;
  std::string expect_error;
};

// The ```mlp blocks of a markdown text. A block that is immediately preceded
// by a line `<!-- expect-error: CODE -->` is an example of a mistake.
// Unterminated blocks are reported through `problems`.
std::vector<Example> MlpBlocks(const std::string& markdown, std::vector<std::string>* problems) {
  std::vector<Example> out;
  std::vector<std::string> lines = Lines(markdown);
  const std::string open = "<!-- expect-error:";
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string fence = Trim(lines[i]);
    if (fence.starts_with(open) && (i + 1 == lines.size() || Trim(lines[i + 1]) != "```mlp")) {
      problems->push_back("line " + std::to_string(i + 1) +
                          ": an expect-error comment must be immediately followed by a ```mlp block");
    }
    if (!fence.starts_with("```")) continue;
    std::string info = Trim(std::string_view(fence).substr(3));
    // Skip over the block, whatever its language.
    size_t end = i + 1;
    while (end < lines.size() && Trim(lines[end]) != "```") ++end;
    if (end == lines.size()) {
      problems->push_back("line " + std::to_string(i + 1) + ": the ``` block is never closed");
      break;
    }
    if (info == "mlp") {
      Example ex;
      ex.line = static_cast<int>(i + 1);
      for (size_t k = i + 1; k < end; ++k) ex.text += lines[k] + "\n";
      if (i > 0) {
        std::string prev = Trim(lines[i - 1]);
        if (prev.starts_with(open) && prev.ends_with("-->")) {
          ex.expect_error = Trim(std::string_view(prev).substr(open.size(), prev.size() - open.size() - 3));
        }
      }
      out.push_back(std::move(ex));
    }
    i = end;
  }
  return out;
}

bool IsDiagCode(const std::string& code) {
  for (const auto& k : AllDiagKinds()) {
    if (k.code == code) return true;
  }
  return false;
}

// (a) Every example in the docs does what the docs say it does.
TEST(docs, ExamplesCheckOrFailAsAnnotated) {
  int total = 0;
  for (const char* doc : kDocsWithExamples) {
    std::string text = LoadDoc(doc);
    if (text.empty()) {
      EXPECT_NE(std::string(doc), kLanguageDoc) << kLanguageDoc << " is missing or empty";
      continue;
    }
    std::vector<std::string> problems;
    std::vector<Example> examples = MlpBlocks(text, &problems);
    for (const auto& p : problems) ADD_FAILURE() << doc << ": " << p;
    for (const auto& ex : examples) {
      ++total;
      std::string where = std::string(doc) + ":" + std::to_string(ex.line);
      Compilation c = CompileText(ex.text, kExamplePath);
      std::vector<std::string> codes = Codes(c);
      if (ex.expect_error.empty()) {
        EXPECT_FALSE(c.diags.has_errors())
            << where << ": this ```mlp example must check without errors (mark an example of a mistake with "
            << "`<!-- expect-error: CODE -->` on the line before the fence, or use ```text for a fragment):\n"
            << Render(c);
        continue;
      }
      if (!IsDiagCode(ex.expect_error)) {
        ADD_FAILURE() << where << ": `expect-error: " << ex.expect_error
                      << "` names no diagnostic code in compiler/base/diagnostic_kinds.def";
        continue;
      }
      bool produced = std::find(codes.begin(), codes.end(), ex.expect_error) != codes.end();
      EXPECT_TRUE(produced)
          << where << ": this example should produce `" << ex.expect_error << "`, but the compiler said:\n"
          << (codes.empty() ? std::string("(nothing)\n") : Render(c));
    }
  }
  // The reference teaches by example; losing them all would be a regression.
  EXPECT_GE(total, 20) << "expected the docs to hold at least 20 ```mlp examples, found " << total;
}

// The parser of ```mlp blocks itself.
TEST(docs, ExampleBlockExtraction) {
  std::vector<std::string> problems;
  auto blocks = MlpBlocks(
      "text\n```mlp\na\n```\n<!-- expect-error: unknown-name -->\n```mlp\nb\nc\n```\n```text\nd\n```\n"
      "<!-- expect-error: syntax-error -->\n\n```mlp\n",
      &problems);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].text, "a\n");
  EXPECT_EQ(blocks[0].line, 2);
  EXPECT_EQ(blocks[0].expect_error, "");
  EXPECT_EQ(blocks[1].text, "b\nc\n");
  EXPECT_EQ(blocks[1].line, 6);
  EXPECT_EQ(blocks[1].expect_error, "unknown-name");
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("line 13: an expect-error comment"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("line 15: the ``` block is never closed"), std::string::npos) << problems[1];
}

// A section of the reference: a heading line and the text up to the next
// heading of any level.
struct Section {
  std::string heading;
  std::string body;
};

std::vector<Section> Sections(const std::string& markdown) {
  std::vector<Section> out;
  bool in_code = false;
  for (const auto& line : Lines(markdown)) {
    if (Trim(line).starts_with("```")) in_code = !in_code;
    if (!in_code && line.starts_with("#")) {
      out.push_back({line, ""});
      continue;
    }
    if (!out.empty()) out.back().body += line + "\n";
  }
  return out;
}

std::string Ticked(std::string_view name) { return "`" + std::string(name) + "`"; }

bool Mentions(const std::string& text, std::string_view name) { return text.find(Ticked(name)) != std::string::npos; }

// (b) The reference covers the schema: each operator has a section (a
// heading naming it in backticks) that names each of its parameters.
TEST(docs, ReferenceDocumentsEveryOperatorAndParameter) {
  std::string doc = LoadDoc(kLanguageDoc);
  ASSERT_FALSE(doc.empty()) << kLanguageDoc << " is missing";
  std::vector<Section> sections = Sections(doc);
  for (const auto& op : schema::Operators()) {
    const Section* section = nullptr;
    for (const auto& s : sections) {
      if (Mentions(s.heading, op.name)) section = &s;
    }
    if (!section) {
      ADD_FAILURE() << kLanguageDoc << " has no section for operator `" << op.name
                    << "`: add a heading that names it in backticks, with its parameters below (see "
                    << "stdlib/schema/schema.cc)";
      continue;
    }
    for (const auto& p : op.params) {
      EXPECT_TRUE(Mentions(section->body, p.name))
          << kLanguageDoc << ": the section of operator `" << op.name << "` does not mention its parameter `"
          << p.name << "` (" << p.doc << ")";
    }
  }
}

TEST(docs, ReferenceDocumentsEveryStageFieldAndOutput) {
  std::string doc = LoadDoc(kLanguageDoc);
  ASSERT_FALSE(doc.empty()) << kLanguageDoc << " is missing";
  for (const auto& stage : schema::Stages()) {
    EXPECT_TRUE(Mentions(doc, stage.keyword)) << kLanguageDoc << " never mentions stage kind `" << stage.keyword << "`";
    for (const auto& f : stage.fields) {
      EXPECT_TRUE(Mentions(doc, f.param.name) || Mentions(doc, std::string(f.param.name) + " { }"))
          << kLanguageDoc << " does not document field `" << f.param.name << "` of `" << stage.keyword << "` stages";
      for (const auto& e : f.entries) {
        std::string dotted = std::string(f.param.name) + "." + std::string(e.name);
        EXPECT_TRUE(Mentions(doc, dotted) || Mentions(doc, e.name))
            << kLanguageDoc << " does not document setting `" << e.name << "` of `" << f.param.name << " { }`";
      }
    }
    for (const auto& o : stage.outputs) {
      EXPECT_TRUE(Mentions(doc, o.name))
          << kLanguageDoc << " does not document output `" << o.name << "` of `" << stage.keyword << "` stages";
    }
  }
  for (const auto& f : schema::PipelineFields()) {
    EXPECT_TRUE(Mentions(doc, f.param.name)) << kLanguageDoc << " does not document pipeline setting `" << f.param.name << "`";
  }
  for (const auto& e : schema::ResourcesBlock().entries) {
    EXPECT_TRUE(Mentions(doc, e.name)) << kLanguageDoc << " does not document resource `" << e.name << "`";
  }
  for (const auto& e : schema::ClusterBlock().entries) {
    EXPECT_TRUE(Mentions(doc, e.name)) << kLanguageDoc << " does not document cluster setting `" << e.name << "`";
  }
}

TEST(docs, ReferenceDocumentsKernelBuiltinsAndMetrics) {
  std::string doc = LoadDoc(kLanguageDoc);
  ASSERT_FALSE(doc.empty()) << kLanguageDoc << " is missing";
  for (const auto& b : schema::KernelBuiltins()) {
    EXPECT_NE(doc.find("`" + std::string(b.name) + "("), std::string::npos)
        << kLanguageDoc << " does not document kernel builtin `" << b.name << "` (" << b.doc << ")";
  }
  for (auto m : schema::TrainMetrics()) {
    EXPECT_TRUE(Mentions(doc, m)) << kLanguageDoc << " does not document train metric `" << m << "`";
  }
  for (auto m : schema::RlMetrics()) {
    EXPECT_TRUE(Mentions(doc, m)) << kLanguageDoc << " does not document rl metric `" << m << "`";
  }
}

TEST(docs, ReferenceDocumentsEveryDiagnosticCode) {
  std::string doc = LoadDoc(kLanguageDoc);
  ASSERT_FALSE(doc.empty()) << kLanguageDoc << " is missing";
  for (const auto& k : AllDiagKinds()) {
    EXPECT_TRUE(Mentions(doc, k.code)) << kLanguageDoc << " does not say when diagnostic `" << k.code
                                       << "` fires (add it to \"What the compiler checks\")";
  }
}

// The first line where two texts differ, for a readable failure.
std::string FirstDifference(const std::string& want, const std::string& got) {
  std::vector<std::string> a = Lines(want), b = Lines(got);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    std::string x = i < a.size() ? a[i] : "<end of file>";
    std::string y = i < b.size() ? b[i] : "<end of file>";
    if (x != y) {
      return "line " + std::to_string(i + 1) + ":\n  file:      " + x + "\n  canonical: " + y + "\n";
    }
  }
  return "(only the final newline differs)\n";
}

// (c) FORMAT CHECK: every shipped pipeline is in canonical `mlpc fmt` layout,
// as the design brief promises of every example. A failure here means either
// the file needs `mlpc fmt --write FILE`, or the formatter changed (or is
// wrong): look at the canonical text before rewriting the file.
TEST(docs, PipelinesAreInCanonicalFormat) {
  std::vector<std::string> files = ListFiles("pipelines", ".mlp");
  ASSERT_FALSE(files.empty()) << "no .mlp files under pipelines/";
  for (const auto& rel : files) {
    std::string text = ReadFile(SourcePath(rel));
    SourceManager sm;
    Diagnostics diags;
    FileId id = sm.Add(rel, text);
    auto ast = Parse(sm, id, diags);
    if (diags.has_errors() || !ast) {
      ADD_FAILURE() << rel << ": does not parse, so it cannot be formatted";
      continue;
    }
    std::string formatted = Format(sm, *ast);
    EXPECT_TRUE(formatted == text) << "FORMAT CHECK: " << rel << " is not in canonical `mlpc fmt` layout; first "
                               << "difference at " << FirstDifference(text, formatted)
                               << "run `mlpc fmt --write " << rel << "` if the canonical text is right";
  }
}

}  // namespace
}  // namespace mlp::testing
