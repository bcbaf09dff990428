// The front end's first phase: .mlp text -> tokens -> ANTLR parse tree -> AST.
// Syntax errors are reported (several per file; the parser recovers) and the
// AST holds whatever parsed.
#pragma once

#include <memory>
#include <string>

#include "compiler/base/diagnostics.h"
#include "compiler/base/source.h"
#include "compiler/parse/ast.h"

namespace mlp {

std::unique_ptr<ast::File> Parse(const SourceManager& sm, FileId file, Diagnostics& diags);

// One token per line: `line:col KIND 'text'`, for `mlpc compile --emit tokens`.
std::string DumpTokens(const SourceManager& sm, FileId file);

}  // namespace mlp
