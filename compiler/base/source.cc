// Line tables for source files.
#include "compiler/base/source.h"

#include <algorithm>

namespace mlp {

FileId SourceManager::Add(std::string path, std::string text) {
  auto f = std::make_unique<File>();
  f->path = std::move(path);
  f->text = std::move(text);
  f->line_starts.push_back(0);
  for (uint32_t i = 0; i < f->text.size(); ++i) {
    if (f->text[i] == '\n') f->line_starts.push_back(i + 1);
  }
  files_.push_back(std::move(f));
  return static_cast<FileId>(files_.size() - 1);
}

LineCol SourceManager::Position(FileId id, uint32_t offset) const {
  const auto& starts = files_[id]->line_starts;
  auto it = std::upper_bound(starts.begin(), starts.end(), offset);
  uint32_t line = static_cast<uint32_t>(it - starts.begin());
  return {line, offset - starts[line - 1] + 1};
}

std::string_view SourceManager::LineText(FileId id, uint32_t line) const {
  const File& f = *files_[id];
  if (line == 0 || line > f.line_starts.size()) return {};
  uint32_t b = f.line_starts[line - 1];
  uint32_t e = line < f.line_starts.size() ? f.line_starts[line] - 1
                                           : static_cast<uint32_t>(f.text.size());
  std::string_view s(f.text);
  s = s.substr(b, e - b);
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}

}  // namespace mlp
