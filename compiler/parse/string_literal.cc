// Escapes: \n \t \\ \" \$; interpolation: ${name}.
#include "compiler/parse/string_literal.h"

#include <cctype>

namespace mlp {

bool StripDigitSeparators(std::string_view text, std::string& digits) {
  auto digit = [&](size_t k) { return k < text.size() && std::isdigit(static_cast<unsigned char>(text[k])); };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '_') {
      digits += text[i];
    } else if (i == 0 || !digit(i - 1) || !digit(i + 1)) {
      return false;
    }
  }
  return true;
}

std::vector<StringLiteralError> DecodeStringLiteral(std::string_view src, FileId file, uint32_t at,
                                                    std::vector<ast::StringPart>& parts) {
  std::vector<StringLiteralError> errors;
  if (src.size() < 2) return errors;
  auto range = [&](size_t b, size_t e) {
    return Range{file, at + static_cast<uint32_t>(b), at + static_cast<uint32_t>(e)};
  };
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) parts.push_back({false, std::move(cur), {}});
    cur.clear();
  };
  for (size_t i = 1; i + 1 < src.size(); ++i) {
    char c = src[i];
    if (c == '\\' && i + 2 < src.size()) {
      char n = src[++i];
      switch (n) {
        case 'n': cur += '\n'; break;
        case 't': cur += '\t'; break;
        case '\\': cur += '\\'; break;
        case '"': cur += '"'; break;
        case '$': cur += '$'; break;
        default:
          errors.push_back({range(i - 1, i + 1), std::string("unknown escape `\\") + n +
                                                     "` in string; use \\n, \\t, \\\\, \\\" or \\$"});
      }
    } else if (c == '$' && i + 1 < src.size() - 1 && src[i + 1] == '{') {
      size_t close = src.find('}', i + 2);
      if (close == std::string_view::npos || close >= src.size() - 1) {
        errors.push_back({range(i, src.size() - 1), "unterminated `${` in string; add a closing `}`"});
        break;
      }
      flush();
      std::string name(src.substr(i + 2, close - i - 2));
      bool ok = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0]));
      for (char ch : name) ok &= std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
      if (!ok) {
        errors.push_back({range(i + 2, close), "`${" + name + "}` does not name a param; write `${name}` with a param's name"});
      }
      parts.push_back({true, std::move(name), range(i + 2, close)});
      i = close;
    } else {
      cur += c;
    }
  }
  flush();
  return errors;
}

}  // namespace mlp
