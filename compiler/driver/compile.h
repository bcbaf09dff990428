// One entry for the front end: load, parse, check. The CLI, the language
// server and the tests all go through here, so they never disagree.
#pragma once

#include <memory>
#include <string>

#include "compiler/base/diagnostics.h"
#include "compiler/driver/loader.h"
#include "compiler/sema/check.h"

namespace mlp {

struct Compilation {
  std::unique_ptr<Program> program;
  std::unique_ptr<CheckedPipeline> checked;  // null when parsing failed
  Diagnostics diags;
};

// Checks stop after parsing when any file has syntax errors, so that a typo
// does not cascade into misleading type errors.
Compilation CompileSource(const std::string& path, std::string text, const LoadOptions& load,
                          const CheckOptions& check);

}  // namespace mlp
