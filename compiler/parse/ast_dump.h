// The AST as JSON, for `mlpc compile --emit ast` and for tests that compare
// two parses (the formatter's round trip) without caring where nodes are.
#pragma once

#include <string>

#include "compiler/base/source.h"
#include "compiler/parse/ast.h"

namespace mlp {

// Every declaration, item, entry, statement and expression with its kind and
// values, pretty-printed with indent 2. With `with_ranges`, nodes carry
// "range": "line:col-line:col" (1-based; the end is the position just past
// the node). Comments are not part of the dump.
std::string DumpAst(const SourceManager& sm, const ast::File& file, bool with_ranges);

}  // namespace mlp
