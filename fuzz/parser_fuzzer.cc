// libFuzzer target: arbitrary bytes as a .mlp file through the whole front end
// (load, parse, check, diagnostics rendering, plan lowering when it checks
// clean), and the formatter on whatever parsed without syntax errors: its
// output must parse again, to the same AST. Anything else that goes wrong is a
// crash for the sanitizers to catch. Build and run: docs/fuzzing.md.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "compiler/base/diagnostic_render.h"
#include "compiler/base/diagnostics.h"
#include "compiler/driver/compile.h"
#include "compiler/format/formatter.h"
#include "compiler/parse/ast_dump.h"
#include "compiler/parse/parser.h"
#include "compiler/plan/lower.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "mlp_parser_fuzzer: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// The diagnostics the front end treats as syntax errors (compile.cc).
bool IsSyntaxKind(mlp::DiagKind k) {
  using mlp::DiagKind;
  return k == DiagKind::SyntaxError || k == DiagKind::InvalidCharacter || k == DiagKind::UnterminatedString ||
         k == DiagKind::InvalidLiteral || k == DiagKind::UnknownUnit;
}

void CheckRange(const mlp::SourceManager& sm, const mlp::Range& r, const std::string& message) {
  if (!r.valid()) return;
  if (r.file >= sm.size()) Fail("diagnostic range names an unknown file", message);
  if (r.begin > r.end || r.end > sm.Text(r.file).size()) {
    Fail("diagnostic range out of bounds",
         message + " [" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ") in a file of " +
             std::to_string(sm.Text(r.file).size()) + " bytes");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // A relative path: imports resolve against the working directory, so a
  // corpus entry may import real files when run from the repository root.
  mlp::Compilation c = mlp::CompileSource("fuzz.mlp", text, mlp::LoadOptions{}, mlp::CheckOptions{});
  if (!c.program || c.program->modules.empty()) return 0;
  const mlp::SourceManager& sm = c.program->sm;

  bool main_syntax_errors = false;
  for (const auto& d : c.diags.all()) {
    CheckRange(sm, d.range, d.message);
    for (const auto& n : d.notes) CheckRange(sm, n.range, n.message);
    if (IsSyntaxKind(d.kind) && d.range.valid() && d.range.file == c.program->modules[0].file) {
      main_syntax_errors = true;
    }
  }
  (void)mlp::RenderText(sm, c.diags, true);
  (void)mlp::RenderJson({mlp::DiagSource{&sm, &c.diags}});
  (void)mlp::RenderSarif({mlp::DiagSource{&sm, &c.diags}}, "fuzz");
  if (c.checked && !c.diags.has_errors()) (void)mlp::LowerPlan(*c.program, *c.checked);

  const mlp::ast::File* file = c.program->modules[0].ast.get();
  if (!file) return 0;
  // A partial AST must format without crashing, too.
  std::string formatted = mlp::Format(sm, *file);
  if (main_syntax_errors) return 0;

  // (DumpAst dominates the time per input; the ranged dump is left to
  // tests/robustness_test.cc.)
  std::string before = mlp::DumpAst(sm, *file, false);
  mlp::SourceManager sm2;
  mlp::FileId id2 = sm2.Add("formatted.mlp", formatted);
  mlp::Diagnostics diags2;
  auto reparsed = mlp::Parse(sm2, id2, diags2);
  if (diags2.has_errors()) {
    Fail("the formatter's output does not parse", RenderText(sm2, diags2, false) + "--- formatted:\n" + formatted);
  }
  if (!reparsed) Fail("Parse returned null");
  std::string after = mlp::DumpAst(sm2, *reparsed, false);
  if (before != after) Fail("formatting changed the AST", "--- formatted:\n" + formatted);
  return 0;
}
