// Helpers shared by the tests: compiling snippets and files, running the
// mlpc binary, reading and writing files.
#pragma once

#include <string>
#include <vector>

#include "compiler/driver/compile.h"
#include "plan.pb.h"

namespace mlp::testing {

// Compiles `text` as if it were the file `path` (imports resolve from there).
Compilation CompileText(const std::string& text, const std::string& path = "test.mlp",
                        const std::vector<ParamOverride>& overrides = {});
// The diagnostic codes, in order.
std::vector<std::string> Codes(const Compilation& c);
std::string Render(const Compilation& c);

// `text` compiled and lowered to its plan, as `mlpc compile` makes it; a
// compile error fails the test (with the diagnostics) and gives an empty plan.
plan::v1::Plan CompilePlan(const std::string& text, const std::string& path = "test.mlp");
// The plan's stage `name`; a missing one fails the test.
const plan::v1::Node& NodeOf(const plan::v1::Plan& p, const std::string& name);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);
// Every file under MLP_SOURCE_DIR/dir (recursively) ending in `ext`, relative to MLP_SOURCE_DIR, sorted.
std::vector<std::string> ListFiles(const std::string& dir, const std::string& ext);

// A fresh directory for the files one test writes; removed when it goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string File(const std::string& name) const;

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs the mlpc binary with `args` (shell-quoted here) in MLP_SOURCE_DIR.
RunResult RunMlpc(const std::vector<std::string>& args, const std::string& stdin_text = "");

}  // namespace mlp::testing
