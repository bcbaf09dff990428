// Implementation of the shared test helpers.
#include "tests/test_util.h"

#include "compiler/plan/lower.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "compiler/base/diagnostic_render.h"

namespace mlp::testing {

namespace fs = std::filesystem;

Compilation CompileText(const std::string& text, const std::string& path,
                        const std::vector<ParamOverride>& overrides) {
  CheckOptions check;
  check.overrides = overrides;
  return CompileSource(path, text, LoadOptions{}, check);
}

std::vector<std::string> Codes(const Compilation& c) {
  std::vector<std::string> out;
  for (const auto& d : c.diags.all()) out.emplace_back(Info(d.kind).code);
  return out;
}

std::string Render(const Compilation& c) { return RenderText(c.program->sm, c.diags, false); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> ListFiles(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  fs::path root(MLP_SOURCE_DIR);
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root / dir, ec); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file() && it->path().string().ends_with(ext)) {
      out.push_back(fs::relative(it->path(), root).string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

static std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

RunResult RunMlpc(const std::vector<std::string>& args, const std::string& stdin_text) {
  fs::path tmp = fs::temp_directory_path() / ("mlpc_test_" + std::to_string(getpid()));
  fs::create_directories(tmp);
  std::string in = (tmp / "in").string(), out = (tmp / "out").string(), err = (tmp / "err").string();
  WriteFile(in, stdin_text);
  std::string cmd = "cd " + Quote(MLP_SOURCE_DIR) + " && " + Quote(MLPC_BINARY);
  for (const auto& a : args) cmd += " " + Quote(a);
  cmd += " <" + Quote(in) + " >" + Quote(out) + " 2>" + Quote(err);
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  path_ = (std::filesystem::temp_directory_path() /
           ("mlpc_test_" + std::to_string(getpid()) + "_" + (info ? std::string(info->name()) : "x") + "_" +
            std::to_string(counter++)))
              .string();
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::File(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

plan::v1::Plan CompilePlan(const std::string& text, const std::string& path) {
  Compilation c = CompileText(text, path);
  EXPECT_FALSE(c.diags.has_errors()) << Render(c);
  if (!c.checked || c.diags.has_errors()) return {};
  return LowerPlan(*c.program, *c.checked);
}

const plan::v1::Node& NodeOf(const plan::v1::Plan& p, const std::string& name) {
  for (const auto& n : p.nodes()) {
    if (n.name() == name) return n;
  }
  ADD_FAILURE() << "no stage " << name;
  static plan::v1::Node none;
  return none;
}

}  // namespace mlp::testing
