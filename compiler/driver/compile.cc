// Runs the front-end phases in order.
#include "compiler/driver/compile.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace mlp {

Compilation CompileSource(const std::string& path, std::string text, const LoadOptions& load,
                          const CheckOptions& check) {
  Compilation c;
  // MLP_TIMING=1 prints how long each phase took, for benchmarks.
  static const bool timing = std::getenv("MLP_TIMING") != nullptr;
  auto t0 = std::chrono::steady_clock::now();
  auto lap = [&](const char* phase) {
    if (!timing) return;
    auto t1 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "mlpc: %s: %.3f ms\n", phase, std::chrono::duration<double, std::milli>(t1 - t0).count());
    t0 = t1;
  };
  c.program = LoadProgram(path, std::move(text), load, c.diags);
  lap("load+parse");
  bool syntax_errors = false;
  for (const auto& d : c.diags.all()) {
    syntax_errors |= d.severity == Severity::Error &&
                     (d.kind == DiagKind::SyntaxError || d.kind == DiagKind::InvalidCharacter ||
                      d.kind == DiagKind::UnterminatedString || d.kind == DiagKind::InvalidLiteral ||
                      d.kind == DiagKind::UnknownUnit);
  }
  if (!syntax_errors) c.checked = Check(*c.program, check, c.diags);
  lap("check");
  c.diags.Sort();
  return c;
}

}  // namespace mlp
