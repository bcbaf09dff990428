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

// Brackets, prefix operators and operator chains may nest this deep; deeper
// input is a syntax error (it would exhaust the stack of a recursive parser).
inline constexpr int kMaxParseNesting = 256;

// Parses with the fast parser (parse/fast_parser.h) and falls back to the
// ANTLR parser, which recovers from errors and reports them.
std::unique_ptr<ast::File> Parse(const SourceManager& sm, FileId file, Diagnostics& diags);

// The ANTLR path alone; for the differential test of the two parsers.
std::unique_ptr<ast::File> ParseWithAntlr(const SourceManager& sm, FileId file, Diagnostics& diags);

// One token per line: `line:col KIND 'text'`, for `mlpc compile --emit tokens`.
std::string DumpTokens(const SourceManager& sm, FileId file);

}  // namespace mlp
