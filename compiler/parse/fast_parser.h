// A hand-written lexer and recursive-descent parser for the same grammar as
// grammar/Mlp.g4, producing the identical AST (ranges included) for every
// well-formed file, about 20x faster than the ANTLR runtime. It gives up at
// the first doubt (a syntax error, an odd literal) and returns null; Parse()
// then runs the ANTLR parser, which recovers and reports the errors. The
// differential test (tests/parser_diff_test.cc) holds the two to one AST.
#pragma once

#include <memory>

#include "compiler/base/source.h"
#include "compiler/parse/ast.h"

namespace mlp {

std::unique_ptr<ast::File> FastParse(const SourceManager& sm, FileId file);

}  // namespace mlp
