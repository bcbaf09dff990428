// Decoding a string literal's source (quotes included) into text and `${name}`
// parts. Shared by both parsers, so that they build the same AST.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "compiler/base/source.h"
#include "compiler/parse/ast.h"

namespace mlp {

struct StringLiteralError {
  Range range;
  std::string message;
};

// `src` is the token's text and `at` where it starts in `file`. Appends the
// decoded parts; returns the problems found (an unknown escape, an
// unterminated `${`, a `${...}` that is not a name), each with its range.
std::vector<StringLiteralError> DecodeStringLiteral(std::string_view src, FileId file, uint32_t at,
                                                    std::vector<ast::StringPart>& parts);

}  // namespace mlp
