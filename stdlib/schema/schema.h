// The standard library's schema table: every operator (`idx`, `adam`, `asha`,
// ...) and every stage kind's fields, with parameter names, types, defaults,
// ranges and one-line docs. The compiler checks calls against it; the editor
// (completion, hover) and docs/language.md's operator list read the same table.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace mlp::schema {

// Value types of the configuration language.
enum class Kind : uint8_t {
  Any,
  Int, Float, Bool, String, Path, Duration, Size,
  List, Map,
  Enum,            // one of Param::choices, written as a bare name or a string
  Source,          // a data source operator (idx, csv, ...)
  Dataset,         // a data stage's output
  Transform,       // map(k) | shuffle() | ...
  Model,           // a model architecture, or a trained model
  Optimizer, Schedule, Loss,
  Distribution,    // a search space or an env state initialiser
  Objective,       // maximize(metric) / minimize(metric)
  Metric,          // a metric name such as val.accuracy
  SearchAlgorithm, TrialScheduler,
  Env, RlAlgorithm, ActionSpace,
  Kernel,          // a kernel function
  TrainStage,      // a train stage used as a tune trial
  Predicate,       // a run-time condition over metrics (`stop when`)
  Resources,       // a named resources profile
  Cache,           // bool or a version string
};

struct Type {
  Kind kind = Kind::Any;
  Kind elem = Kind::Any;  // for List
};
std::string TypeName(Type t);
std::string_view KindName(Kind k);

inline constexpr double kNoMin = -std::numeric_limits<double>::infinity();
inline constexpr double kNoMax = std::numeric_limits<double>::infinity();

struct Default {
  enum Tag : uint8_t { None, Int, Float, Bool, String, Symbol, IntList, Call } tag = None;
  double number = 0;
  std::string_view text;             // String, Symbol (an enum choice or op name), Call (op name)
  std::vector<long long> ints = {};  // IntList
};

struct Param {
  std::string_view name;
  Type type;
  bool required = false;
  Default def;
  double min = kNoMin;
  double max = kNoMax;
  bool min_exclusive = false;
  std::vector<std::string_view> choices = {};  // Kind::Enum
  std::string_view doc;
};

struct Op {
  std::string_view name;
  Kind result;
  std::vector<Param> params;
  bool variadic = false;  // all arguments positional, each of params[0]'s type
  std::string_view doc;
};

// One field of a stage kind. A block field is written `name { k: v }` and has
// `entries`; `open_entries` allows any entry name (custom resources, splits).
struct Field {
  Param param;
  bool block = false;
  std::vector<Param> entries = {};
  bool open_entries = false;
  Type open_type = {};
};

struct Output {
  std::string_view name;
  Kind kind;
  std::string_view doc;
};

enum class StageKind : uint8_t { Data, Train, Tune, Serve, Rl };

struct StageSchema {
  StageKind kind;
  std::string_view keyword;
  std::string_view op;            // the runtime operator that runs it
  std::vector<Field> fields;      // includes the common fields
  std::vector<Output> outputs;    // data stages also output their split names
  std::string_view default_output;
  std::string_view doc;
};

const std::vector<Op>& Operators();
const Op* FindOp(std::string_view name);
const StageSchema& Stage(StageKind kind);
const std::vector<StageSchema>& Stages();
// Fields of the top-level `pipeline { }` header, `resources NAME { }` and
// `cluster NAME { }` declarations.
const std::vector<Field>& PipelineFields();
const Field& ResourcesBlock();
const Field& ClusterBlock();
// Metrics a train stage reports, usable in tune objectives.
const std::vector<std::string_view>& TrainMetrics();
// Metrics an rl stage reports, usable in `stop when`.
const std::vector<std::string_view>& RlMetrics();
// Kernel math builtins: name and arity.
struct Builtin {
  std::string_view name;
  int arity;
  std::string_view doc;
};
const std::vector<Builtin>& KernelBuiltins();

}  // namespace mlp::schema
