// The input and output of the checking phase: the loaded modules (main file
// plus imports) and the checked pipeline that the plan is lowered from.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/base/source.h"
#include "compiler/parse/ast.h"
#include "compiler/sema/value.h"
#include "stdlib/schema/schema.h"

namespace mlp {

struct Module {
  FileId file = kNoFile;
  std::unique_ptr<ast::File> ast;
  // The modules this one imports, by import declaration.
  std::vector<std::pair<const ast::ImportDecl*, size_t>> imports;
};

struct Program {
  SourceManager sm;
  std::vector<Module> modules;  // modules[0] is the main file
};

// A param value given on the command line (`--set k=v`) or in a params file.
struct ParamOverride {
  std::string name;
  std::string text;             // --set: the text after `=`
  std::optional<Value> value;   // params file: the JSON value, already typed
  std::string origin;           // what the user wrote, for messages
};

struct ResourceAmounts {
  int64_t cpu_milli = 0;
  int64_t gpu_milli = 0;
  int64_t memory_bytes = 0;
  std::map<std::string, int64_t> custom_milli;
};

struct Role {
  std::string name;
  uint32_t count = 1;
  ResourceAmounts resources;
  bool gang = false;
  uint32_t gang_size = 1;  // a gang is this many processes that start together
  bool long_lived = false;
  uint32_t max_count = 0;
};

struct CheckedStage {
  const ast::StageDecl* decl = nullptr;
  schema::StageKind kind = schema::StageKind::Data;
  std::vector<std::pair<std::string, Value>> fields;  // schema order; defaults filled in
  std::vector<std::string> deps;                      // stages it reads, in first-use order
  std::vector<Range> dep_ranges;                      // where each dep is first read
  std::vector<std::pair<std::string, Value>> inputs;  // field -> Ref
  std::vector<schema::Output> outputs;
  std::vector<std::string> split_names;               // data stages: owns the names in outputs
  ResourceAmounts resources;                          // per task
  std::string placement_strategy = "pack";
  std::vector<std::pair<std::string, std::string>> placement_labels;
  std::vector<Role> roles;
  std::vector<std::string> kernels;  // used directly or through callees, sorted
  std::vector<std::string> envs;
};

struct CheckedKernel {
  std::string name;  // unique in the plan: `lib.k` for a kernel of an aliased import
  const ast::KernelDecl* decl = nullptr;
  std::vector<std::string> calls;  // kernels called directly
};

struct CheckedEnv {
  std::string name;  // unique in the plan, as CheckedKernel::name
  const ast::EnvDecl* decl = nullptr;
  std::vector<std::pair<std::string, std::string>> state;  // name, type
  std::vector<Value> state_init;
  Value action;
  std::vector<std::string> observe;
  std::vector<std::pair<std::string, Value>> settings;
  std::vector<std::string> calls;
};

struct NodeGroup {
  std::string name;
  uint32_t count = 1;
  ResourceAmounts resources;
  std::vector<std::pair<std::string, std::string>> labels;
  Range range;
};

struct CheckedPipeline {
  std::string name;
  Range range;
  std::vector<std::pair<std::string, Value>> settings;
  std::vector<std::pair<std::string, Value>> params;  // resolved
  std::vector<CheckedStage> stages;                   // topological order
  std::vector<CheckedKernel> kernels;                 // declaration order
  std::vector<CheckedEnv> envs;
  std::vector<NodeGroup> cluster;
};

struct CheckOptions {
  std::vector<ParamOverride> overrides;
  bool parallel = true;  // large pipelines: check stages on two threads (same result)
};

}  // namespace mlp
