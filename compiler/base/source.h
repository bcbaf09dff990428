// Source files known to one compilation and the ranges that point into them.
// Every AST node and plan node carries a Range; line/column come from here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mlp {

using FileId = uint32_t;
inline constexpr FileId kNoFile = 0xffffffffu;

// A half-open byte range [begin, end) in one file.
struct Range {
  FileId file = kNoFile;
  uint32_t begin = 0;
  uint32_t end = 0;
  bool valid() const { return file != kNoFile; }
};

struct LineCol {
  uint32_t line = 0;  // 1-based
  uint32_t col = 0;   // 1-based, in bytes
};

class SourceManager {
 public:
  // Adds a file's text; `path` is what diagnostics print.
  FileId Add(std::string path, std::string text);
  const std::string& Path(FileId id) const { return files_[id]->path; }
  std::string_view Text(FileId id) const { return files_[id]->text; }
  size_t size() const { return files_.size(); }
  LineCol Position(FileId id, uint32_t offset) const;
  // The text of the line containing `offset`, without its newline.
  std::string_view LineText(FileId id, uint32_t line) const;
  std::string_view Slice(const Range& r) const {
    return Text(r.file).substr(r.begin, r.end - r.begin);
  }

 private:
  struct File {
    std::string path;
    std::string text;
    std::vector<uint32_t> line_starts;
  };
  std::vector<std::unique_ptr<File>> files_;
};

}  // namespace mlp
