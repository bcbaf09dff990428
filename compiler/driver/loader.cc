// Import resolution: files are loaded once each, by canonical path.
#include "compiler/driver/loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "compiler/parse/parser.h"

namespace mlp {

namespace fs = std::filesystem;

std::optional<std::string> ReadSourceFile(const std::string& path, size_t max_bytes, std::string* error) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    *error = "no such file";
    return std::nullopt;
  }
  if (fs::is_directory(status)) {
    *error = "is a directory";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot be read";
    return std::nullopt;
  }
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      *error = "is larger than " + std::to_string(max_bytes >> 20) + " MiB";
      return std::nullopt;
    }
  }
  return text;
}

namespace {

class Loader {
 public:
  Loader(Program& program, const LoadOptions& options, Diagnostics& diags)
      : program_(program), options_(options), diags_(diags) {}

  size_t Load(const std::string& display_path, const std::string& canonical, std::string text) {
    size_t index = program_.modules.size();
    by_path_[canonical] = index;
    FileId file = program_.sm.Add(display_path, std::move(text));
    program_.modules.push_back(Module{file, Parse(program_.sm, file, diags_), {}});
    chain_.push_back(canonical);
    // Copy the import list: loading may grow `modules` and move its elements.
    std::vector<const ast::ImportDecl*> imports;
    for (const auto& d : program_.modules[index].ast->decls) {
      if (d->kind == ast::DeclKind::Import) imports.push_back(static_cast<const ast::ImportDecl*>(d.get()));
    }
    for (const auto* imp : imports) Import(index, display_path, *imp);
    chain_.pop_back();
    return index;
  }

 private:
  void Import(size_t from, const std::string& from_path, const ast::ImportDecl& imp) {
    if (imp.path.empty()) return;  // a syntax error, already reported
    std::vector<fs::path> candidates;
    fs::path rel(imp.path);
    if (rel.is_absolute()) {
      candidates.push_back(rel);
    } else {
      candidates.push_back(fs::path(from_path).parent_path() / rel);
      for (const auto& dir : options_.import_paths) candidates.push_back(fs::path(dir) / rel);
    }
    for (const auto& c : candidates) {
      std::error_code ec;
      if (!fs::is_regular_file(c, ec)) continue;
      std::string canonical = fs::weakly_canonical(c, ec).string();
      if (auto on_chain = std::find(chain_.begin(), chain_.end(), canonical); on_chain != chain_.end()) {
        std::string path;
        for (auto it = on_chain; it != chain_.end(); ++it) path += "`" + fs::path(*it).filename().string() + "` -> ";
        path += "`" + fs::path(canonical).filename().string() + "`";
        diags_.Report(DiagKind::ImportCycle, imp.path_range, "circular import: " + path);
        return;
      }
      if (auto it = by_path_.find(canonical); it != by_path_.end()) {
        program_.modules[from].imports.emplace_back(&imp, it->second);
        return;
      }
      std::string error;
      auto text = ReadSourceFile(c.string(), options_.max_file_bytes, &error);
      if (!text) {
        diags_.Report(DiagKind::ImportNotFound, imp.path_range, "cannot read imported file `" + c.string() + "`: " + error);
        return;
      }
      std::string display = c.lexically_normal().string();
      size_t target = Load(display, canonical, std::move(*text));
      program_.modules[from].imports.emplace_back(&imp, target);
      return;
    }
    std::string looked;
    for (size_t k = 0; k < candidates.size(); ++k) {
      looked += (k ? ", " : "") + candidates[k].parent_path().lexically_normal().string();
    }
    diags_.Report(DiagKind::ImportNotFound, imp.path_range,
                  "cannot find imported file `" + imp.path + "` (looked in " + (looked.empty() ? "." : looked) +
                      "); add its directory with `-I DIR`");
  }

  Program& program_;
  const LoadOptions& options_;
  Diagnostics& diags_;
  std::map<std::string, size_t> by_path_;
  std::vector<std::string> chain_;
};

}  // namespace

std::unique_ptr<Program> LoadProgram(const std::string& path, std::string text, const LoadOptions& options,
                                     Diagnostics& diags) {
  auto program = std::make_unique<Program>();
  Loader loader(*program, options, diags);
  std::error_code ec;
  std::string canonical = fs::weakly_canonical(fs::path(path), ec).string();
  if (ec) canonical = path;
  loader.Load(path, canonical, std::move(text));
  return program;
}

}  // namespace mlp
