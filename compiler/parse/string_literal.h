// Decoding literals: a string literal's source (quotes included) into text and
// `${name}` parts, and digit separators. Shared by both parsers (and by
// `--set` parsing), so that they agree.
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
// The digits of a number literal without its `_` separators; false when an
// `_` does not stand between two digits (`1_000` is fine, `1_` and `1__0` not).
bool StripDigitSeparators(std::string_view text, std::string& digits);

std::vector<StringLiteralError> DecodeStringLiteral(std::string_view src, FileId file, uint32_t at,
                                                    std::vector<ast::StringPart>& parts);

}  // namespace mlp
