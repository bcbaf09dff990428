// Loads a .mlp file and, transitively, the files it imports; reports missing
// and circular imports. The result is the checker's input.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/base/diagnostics.h"
#include "compiler/sema/program.h"

namespace mlp {

struct LoadOptions {
  std::vector<std::string> import_paths;  // searched after the importing file's directory
  size_t max_file_bytes = 64 << 20;
};

// Reads a whole file; nullopt with `error` set when it cannot.
std::optional<std::string> ReadSourceFile(const std::string& path, size_t max_bytes, std::string* error);

// `text` is the main file's contents, `path` its name (imports resolve
// relative to it). Returns the program; syntax and import errors go to diags.
std::unique_ptr<Program> LoadProgram(const std::string& path, std::string text, const LoadOptions& options,
                                     Diagnostics& diags);

}  // namespace mlp
