// The operator registry: what the executor calls to run one task of a stage.
// A stage operator (`data.pipeline`) runs a whole task; the source and
// transform operators it composes (`range`, `map`, ...) are registered
// separately, so that CanRun can tell, before anything starts, whether every
// operator a node names has an implementation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plan.pb.h"
#include "runtime/ops/kernel_interp.h"
#include "runtime/ops/table.h"

namespace mlp::rt::ops {

struct Shard {
  const uint8_t* data = nullptr;
  size_t size = 0;
};  // one serialized table, read-only

struct InputSet {
  std::string field, stage, output;
  std::vector<Shard> shards;
  // When the task got only some of the output's shards (a gang's rank gets
  // its own): the output's shard count and each given shard's index.
  uint32_t total_shards = 0;
  std::vector<uint32_t> shard_index;
};  // one plan Input, the upstream output's shards in shard order

struct TaskContext {
  const plan::v1::Plan* plan = nullptr;
  const plan::v1::Node* node = nullptr;
  uint32_t index = 0, count = 1;  // this task's index in its stage and the number of tasks (data: = shards)
  uint32_t attempt = 0;           // 0 on the first attempt
  std::vector<InputSet> inputs;   // in node->inputs() order
  std::function<bool()> cancelled;                 // poll in long loops / sleeps
  std::function<void(std::string_view)> log;       // one line for `mlpc logs`
  const KernelProgram* kernels = nullptr;          // built once per plan by the executor (may be null)

  // Gangs (multi-rank stages). `gang` scopes this attempt's rendezvous keys
  // (the same for every rank of one attempt, new on each restart); `node_host`
  // is the host this process's node is reached at.
  std::string gang, node_host;
  // The job's key-value store at the head (null outside a cluster). kv_get
  // does not wait: `found` says whether the key is there yet.
  std::function<bool(const std::string& key, const std::string& value, std::string* error)> kv_set;
  std::function<bool(const std::string& key, std::string* value, bool* found, std::string* error)> kv_get;
  std::function<bool(const std::string& key, int64_t delta, int64_t* sum, std::string* error)> kv_add;
  // Stores a checkpoint with the head, which hands it back (input `__checkpoint`)
  // when the stage restarts; false with `error` when it could not be stored.
  std::function<bool(int64_t epoch, const std::string& bytes, std::string* error)> checkpoint;
  std::function<void(std::string_view)> progress;  // the stage's live progress line (latest wins)
  std::function<void(std::string_view)> warn;      // a warning the user sees in `mlpc run`
};

// The input field that carries a restarted stage's last checkpoint.
inline constexpr const char* kCheckpointField = "__checkpoint";

struct Output {
  std::string name;
  std::string bytes;
};  // one per node->outputs() port, in order

struct TaskResult {
  bool ok = true;
  std::string error;
  bool retryable = true;
  std::vector<Output> outputs;
};

// An operator's failure: what went wrong (naming the operator) and whether a
// retry could help (an injected or transient failure) or not (bad input).
struct OpError {
  std::string message;
  bool retryable = false;
};

using StageFn = std::function<TaskResult(TaskContext&)>;
// A stage op's own check of a node's fields before anything starts (e.g. an
// option it does not implement yet); false with `why`.
using StageCheck = std::function<bool(const plan::v1::Node&, std::string* why)>;
// A source produces this task's slice of its rows.
using SourceFn = std::function<bool(TaskContext&, const plan::v1::Call&, Table* out, OpError* err)>;
// A transform rewrites the task's rows in place.
using TransformFn = std::function<bool(TaskContext&, const plan::v1::Call&, Table* table, OpError* err)>;

class Registry {
 public:
  void RegisterStage(std::string_view op, StageFn fn);
  void RegisterStageCheck(std::string_view op, StageCheck check);
  void RegisterSource(std::string_view op, SourceFn fn);
  void RegisterTransform(std::string_view op, TransformFn fn);
  const StageFn* FindStage(std::string_view op) const;
  const SourceFn* FindSource(std::string_view op) const;
  const TransformFn* FindTransform(std::string_view op) const;
  // True when the node's stage op and every source/transform Call in its args
  // has an implementation and the stage op's check (if any) passes; else `why` says what does not.
  bool CanRun(const plan::v1::Node& node, std::string* why) const;

 private:
  std::map<std::string, StageFn, std::less<>> stages_;
  std::map<std::string, StageCheck, std::less<>> checks_;
  std::map<std::string, SourceFn, std::less<>> sources_;
  std::map<std::string, TransformFn, std::less<>> transforms_;
};

// The registry with every builtin registered (initialised once, thread-safe).
Registry& Global();
// Registers the builtin stage, source and transform operators into `r`.
void RegisterBuiltins(Registry& r);

// The plan's kernels, built once per distinct set of kernels and shared
// (for executors that do not build their own); null with `error` when invalid.
std::shared_ptr<const KernelProgram> SharedKernels(const plan::v1::Plan& plan, std::string* error);

}  // namespace mlp::rt::ops
