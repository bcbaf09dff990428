// Runs the front-end phases in order.
#include "compiler/driver/compile.h"

namespace mlp {

Compilation CompileSource(const std::string& path, std::string text, const LoadOptions& load,
                          const CheckOptions& check) {
  Compilation c;
  c.program = LoadProgram(path, std::move(text), load, c.diags);
  bool syntax_errors = false;
  for (const auto& d : c.diags.all()) {
    syntax_errors |= d.severity == Severity::Error &&
                     (d.kind == DiagKind::SyntaxError || d.kind == DiagKind::InvalidCharacter ||
                      d.kind == DiagKind::UnterminatedString || d.kind == DiagKind::InvalidLiteral ||
                      d.kind == DiagKind::UnknownUnit);
  }
  if (!syntax_errors) c.checked = Check(*c.program, check, c.diags);
  c.diags.Sort();
  return c;
}

}  // namespace mlp
