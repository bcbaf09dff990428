// Internal to sema/: the Checker's state, shared by the files that implement
// one group of checks each (check.cc, eval.cc, stages.cc, kernels.cc, graph.cc).
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "compiler/base/diagnostics.h"
#include "compiler/sema/program.h"
#include "stdlib/schema/schema.h"

namespace mlp {

enum class SymKind : uint8_t { Param, Stage, Kernel, Env, Resources, Cluster };

struct Symbol {
  SymKind kind;
  const ast::Decl* decl;
  size_t module;
};

// Hash maps keyed by string that can be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct Scope {
  StringMap<Symbol> names;
  StringMap<size_t> aliases;  // alias -> module
};

// The schema of entry `key` of a resources or cluster block; an undeclared key
// is a custom resource, described in `custom`.
const schema::Param& ResourceEntry(const schema::Field& spec, const std::string& key, schema::Param& custom);

// Scalar types of kernel code. Lit* are literals not yet given a type.
enum class KType : uint8_t { Error, Bool, I32, I64, F32, F64, LitInt, LitFloat };
std::string_view KTypeName(KType t);

class Checker {
 public:
  Checker(const Program& program, const CheckOptions& options, Diagnostics& diags);
  std::unique_ptr<CheckedPipeline> Run();

  // --- check.cc: scopes and params
  void BuildScopes();
  const Symbol* Lookup(size_t module, std::string_view name) const;
  std::vector<std::string> VisibleNames(size_t module) const;
  std::string KindWord(SymKind k) const;
  std::string AKind(SymKind k) const;  // with its article: "a param", "an env"
  const Value& ParamValue(const Symbol& sym);
  void CheckParams();
  Value ApplyOverride(const ast::ParamDecl& decl, schema::Type type, const ParamOverride& o);
  schema::Type ParamType(const ast::TypeRef& t, bool report);
  void CheckPipelineHeader();
  void CheckProfiles();

  // --- eval.cc: configuration expressions
  struct EvalCtx {
    size_t module = 0;
    CheckedStage* stage = nullptr;  // records dependencies
    std::string_view field;         // the stage field being evaluated, if any
    std::string_view op;            // the operator whose arguments are being evaluated, if any
    std::string what;               // otherwise: "param `epochs`", "cluster `c`", ...
  };
  // What is being evaluated, for messages: "field `epochs` of train stage `classifier`".
  std::string What(const EvalCtx& ctx) const;
  Value Eval(const ast::Expr& e, schema::Type hint, EvalCtx& ctx);
  Value Coerce(Value v, schema::Type want, const schema::Param* param, const ast::Expr& src,
               const EvalCtx& ctx);
  Value EvalAs(const ast::Expr& e, const schema::Param& p, EvalCtx& ctx);
  Value EvalCall(const ast::Expr& e, const schema::Op& op, EvalCtx& ctx);
  Value EvalName(const ast::Expr& e, std::string_view name, Range range, size_t module, schema::Type hint,
                 EvalCtx& ctx);
  Value EvalPredicate(const ast::Expr& e, EvalCtx& ctx, std::vector<std::string>& metrics);
  bool CheckRange(const Value& v, const schema::Param& p, const ast::Expr& src, const EvalCtx& ctx);
  std::string Src(const ast::Expr& e) const;
  std::string StageOutputsList(const std::string& stage) const;

  // --- stages.cc
  void CheckStages(const std::vector<const ast::StageDecl*>& decls);  // check.cc
  // A stage's outputs: its kind's, plus a data stage's split names.
  std::vector<std::string> StageOutputs(const ast::StageDecl& sd) const;
  bool HasOutput(const ast::StageDecl& sd, std::string_view name) const;
  void CheckStage(const ast::StageDecl& decl, CheckedStage& out);
  Value CheckBlock(const ast::Item& item, const schema::Field& field, EvalCtx& ctx);
  Value CheckTuneSearch(const ast::Item& item, CheckedStage& out, EvalCtx& ctx);
  void CheckStageSemantics(CheckedStage& out);
  ResourceAmounts ResourcesOf(const ast::SettingsBlock& block, ResourceAmounts base, EvalCtx& ctx);
  void ComputeRoles(CheckedStage& st);

  // --- kernels.cc
  void CheckKernels();
  void CheckEnvs();
  void CheckKernelUse(const Value& v, const ast::Expr& src, std::string_view op);

  // --- graph.cc
  void CheckCycles();
  void SortStages();
  void CheckUnused();
  void CheckCluster();

  // Where diagnostics go and which declarations count as used. Stages may be
  // checked on two threads (see Run); each thread then reports into its own
  // Diagnostics and set, merged in stage order afterwards.
  Diagnostics& D() const { return tls_diags_ ? *tls_diags_ : diags_; }
  std::set<const ast::Decl*>& Used() { return tls_used_ ? *tls_used_ : used_; }
  static thread_local Diagnostics* tls_diags_;
  static thread_local std::set<const ast::Decl*>* tls_used_;

  const Program& program_;
  const CheckOptions& options_;
  Diagnostics& diags_;
  const SourceManager& sm_;
  std::vector<Scope> scopes_;
  std::unique_ptr<CheckedPipeline> out_;

  // Params: resolved values, evaluation state (for cycles between params).
  std::map<const ast::Decl*, std::string> plan_names_;  // kernels/envs: unique name in the plan
  std::map<const ast::Decl*, Value> param_values_;
  std::set<const ast::Decl*> params_in_progress_;
  std::set<const ast::Decl*> used_;  // params, stages, kernels, envs referenced anywhere
  StringMap<const ast::StageDecl*> stages_by_name_;
    std::map<std::string, ResourceAmounts> profiles_;
  std::vector<std::vector<size_t>> dep_graph_;  // per stage (source order): indices of its deps
  bool has_default_profile_ = false;
  StringMap<std::vector<std::string>> kernel_closure_;  // kernel -> itself + callees
  // Kernel signatures, for calls between kernels and map/filter checks.
  struct KernelSig {
    std::vector<KType> params;
    KType ret = KType::Error;
  };
  std::map<std::string, KernelSig> kernel_sigs_;
};

}  // namespace mlp
