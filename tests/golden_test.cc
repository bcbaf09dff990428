// Golden tests of the compiler: every tests/golden/*.mlp is compiled and its
// diagnostics (and, for files that pass, its plan) are compared with the
// `.expected` file beside it. `fail_*.mlp` files must have errors; the rest
// must not. MLP_UPDATE_GOLDEN=1 rewrites the expectations.
//
// A test file may start with lines that set options:
//   // SET: name=value      a param override, as `--set name=value`
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "compiler/plan/lower.h"
#include "tests/test_util.h"

namespace mlp::testing {
namespace {

namespace fs = std::filesystem;

bool UpdateMode() {
  const char* u = std::getenv("MLP_UPDATE_GOLDEN");
  return u && std::string(u) == "1";
}

std::vector<ParamOverride> OptionsFrom(const std::string& text) {
  std::vector<ParamOverride> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    if (!line.starts_with("//")) break;
    if (line.starts_with("// SET: ")) {
      std::string kv = line.substr(8);
      size_t eq = kv.find('=');
      ParamOverride o;
      o.name = kv.substr(0, eq);
      o.text = eq == std::string::npos ? "" : kv.substr(eq + 1);
      o.origin = "`--set " + kv + "`";
      out.push_back(o);
    }
    if (eol == std::string::npos) break;
    pos = eol + 1;
  }
  return out;
}

Compilation CompileGolden(const std::string& rel) {
  fs::current_path(MLP_SOURCE_DIR);
  std::string text = ReadFile(rel);
  return CompileText(text, rel, OptionsFrom(text));
}

std::string Actual(const std::string& rel, const Compilation& c) {
  std::string out = Render(c);
  bool fail = fs::path(rel).filename().string().starts_with("fail_");
  if (!fail && c.checked && !c.diags.has_errors()) {
    out += "---- plan ----\n" + PlanToJson(LowerPlan(*c.program, *c.checked)) + "\n";
  }
  return out;
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, MatchesExpected) {
  const std::string& rel = GetParam();
  Compilation c = CompileGolden(rel);
  bool fail = fs::path(rel).filename().string().starts_with("fail_");
  if (fail) {
    EXPECT_TRUE(c.diags.has_errors()) << rel << " is named fail_ but compiles without errors";
  } else {
    EXPECT_FALSE(c.diags.has_errors()) << rel << " has errors but is not named fail_:\n" << Render(c);
  }
  std::string actual = Actual(rel, c);
  std::string expected_path = std::string(MLP_SOURCE_DIR) + "/" + rel + ".expected";
  if (UpdateMode()) {
    WriteFile(expected_path, actual);
    return;
  }
  ASSERT_TRUE(fs::exists(expected_path)) << "missing " << rel << ".expected; run with MLP_UPDATE_GOLDEN=1";
  EXPECT_EQ(ReadFile(expected_path), actual) << "golden mismatch for " << rel
                                             << "; if the change is intended, run with MLP_UPDATE_GOLDEN=1";
}

std::vector<std::string> GoldenFiles() {
  auto files = ListFiles("tests/golden", ".mlp");
  // Files imported by other tests live in lib/ subdirectories and are not tests themselves.
  std::erase_if(files, [](const std::string& f) { return f.find("/lib/") != std::string::npos; });
  return files;
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = fs::path(info.param).stem().string();
  for (auto& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Files, Golden, ::testing::ValuesIn(GoldenFiles()), TestName);

// Every error kind has a failing example (a fail_*.mlp) that produces it, and
// every warning kind a golden file that shows it (a file whose only
// diagnostics are warnings passes `mlpc check`, so it is not named fail_).
TEST(GoldenCoverage, EveryDiagnosticKindHasAGoldenExample) {
  std::set<std::string> errors, warnings;
  for (const auto& rel : GoldenFiles()) {
    bool fail = fs::path(rel).filename().string().starts_with("fail_");
    Compilation c = CompileGolden(rel);
    for (const auto& d : c.diags.all()) {
      if (d.severity == Severity::Error && fail) errors.insert(std::string(Info(d.kind).code));
      if (d.severity == Severity::Warning) warnings.insert(std::string(Info(d.kind).code));
    }
  }
  for (const auto& k : AllDiagKinds()) {
    if (k.severity == Severity::Error) {
      EXPECT_TRUE(errors.count(std::string(k.code))) << "no tests/golden/fail_*.mlp produces `" << k.code << "`";
    } else {
      EXPECT_TRUE(warnings.count(std::string(k.code))) << "no tests/golden/*.mlp produces warning `" << k.code << "`";
    }
  }
}

// Every pipeline shipped in pipelines/ checks cleanly.
TEST(Pipelines, AllCheckWithoutErrorsOrWarnings) {
  auto files = ListFiles("pipelines", ".mlp");
  ASSERT_GE(files.size(), 4u);  // quickstart and at least three more
  for (const auto& rel : files) {
    Compilation c = CompileGolden(rel);
    EXPECT_EQ(c.diags.all().size(), 0u) << rel << ":\n" << Render(c);
  }
}

}  // namespace
}  // namespace mlp::testing
