// Type checking of kernels and env step functions: scalar types, literals
// that adapt to the type around them, builtins, calls between kernels, and
// no recursion.
#include <algorithm>
#include <functional>

#include "compiler/sema/checker.h"

namespace mlp {

namespace {

std::optional<KType> ScalarType(std::string_view name) {
  if (name == "f32") return KType::F32;
  if (name == "f64") return KType::F64;
  if (name == "i32") return KType::I32;
  if (name == "i64") return KType::I64;
  if (name == "bool") return KType::Bool;
  return std::nullopt;
}

bool IsFloat(KType t) { return t == KType::F32 || t == KType::F64 || t == KType::LitFloat; }
bool IsNumeric(KType t) { return t != KType::Bool && t != KType::Error; }
// A value of type `from` can be stored where `to` is expected.
bool Assignable(KType from, KType to) {
  return from == to || from == KType::Error || to == KType::Error || (from == KType::LitInt && IsNumeric(to)) ||
         (from == KType::LitFloat && (to == KType::F32 || to == KType::F64));
}
std::string ConvertHint(KType to) {
  if (to == KType::Bool) return "";
  return "; convert it with `" + std::string(KTypeName(to)) + "(...)`";
}

// Types one kernel or env step body.
class KernelTyper {
 public:
  KernelTyper(Checker& c, size_t module, std::string where) : c_(c), module_(module), where_(std::move(where)) {}

  std::vector<std::pair<std::string, KType>> vars;
  std::map<std::string, KType> state;  // env state fields (step bodies only)
  bool in_step = false;
  int depth = 0;  // nesting of blocks: 1 is a step's (or kernel's) body
  int rewards = 0, dones = 0;
  std::vector<std::string> calls;

  KType Unify(KType a, KType b, Range r, std::string_view op) {
    if (a == KType::Error || b == KType::Error) return KType::Error;
    if (a == b) return a;
    if (a == KType::LitInt && IsNumeric(b)) return b;
    if (b == KType::LitInt && IsNumeric(a)) return a;
    if (a == KType::LitFloat && IsFloat(b)) return b;
    if (b == KType::LitFloat && IsFloat(a)) return a;
    std::string hint;
    if (a == KType::LitFloat || b == KType::LitFloat) {
      hint = "; a float literal cannot be an integer";
    } else if (IsNumeric(a) && IsNumeric(b)) {
      hint = "; convert one side, e.g. `" + std::string(KTypeName(a)) + "(...)`";
    }
    Error(r, "mismatched types `" + std::string(KTypeName(a)) + "` and `" + std::string(KTypeName(b)) + "` in " +
                 std::string(op) + hint);
    return KType::Error;
  }

  void Error(Range r, const std::string& msg) { c_.D().Report(DiagKind::KernelTypeError, r, msg + where_); }

  const KType* FindVar(const std::string& name) const {
    for (auto it = vars.rbegin(); it != vars.rend(); ++it) {
      if (it->first == name) return &it->second;
    }
    auto s = state.find(name);
    return s == state.end() ? nullptr : &s->second;
  }

  KType Expr(const ast::Expr& e) {
    switch (e.kind) {
      case ast::ExprKind::Int: return KType::LitInt;
      case ast::ExprKind::Float: return KType::LitFloat;
      case ast::ExprKind::Bool: return KType::Bool;
      case ast::ExprKind::Name: {
        if (e.text == "<error>") return KType::Error;
        if (const KType* t = FindVar(e.text)) return *t;
        std::vector<std::string> names;
        for (const auto& [n, t] : vars) names.push_back(n);
        for (const auto& [n, t] : state) names.push_back(n);
        const Symbol* s = c_.Lookup(module_, e.text);
        std::string extra = s && s->kind == SymKind::Param
                                ? "; kernels cannot read params, pass the value as an argument"
                                : DidYouMean(e.text, names);
        c_.D().Report(DiagKind::UnknownName, e.range, "unknown name `" + e.text + "`" + extra + where_);
        return KType::Error;
      }
      case ast::ExprKind::Unary: {
        KType t = Expr(*e.operands[0]);
        if (t == KType::Error) return t;
        if (e.un_op == ast::UnOp::Not) {
          if (t != KType::Bool) Error(e.range, "`not` needs a bool, but the operand is `" + std::string(KTypeName(t)) + "`");
          return KType::Bool;
        }
        if (!IsNumeric(t)) {
          Error(e.range, "`-` needs a number, but the operand is `bool`");
          return KType::Error;
        }
        return t;
      }
      case ast::ExprKind::Binary: {
        KType a = Expr(*e.operands[0]);
        KType b = Expr(*e.operands[1]);
        std::string op = std::string("`") + ast::Spelling(e.bin_op) + "`";
        switch (e.bin_op) {
          case ast::BinOp::And:
          case ast::BinOp::Or:
            if (a == KType::Error || b == KType::Error) return KType::Error;
            if (a != KType::Bool || b != KType::Bool) {
              Error(e.range, op + " needs bool operands, but they are `" + std::string(KTypeName(a)) + "` and `" +
                                 std::string(KTypeName(b)) + "`");
              return KType::Error;
            }
            return KType::Bool;
          case ast::BinOp::Eq:
          case ast::BinOp::Ne:
            return Unify(a, b, e.range, op) == KType::Error ? KType::Error : KType::Bool;
          case ast::BinOp::Lt:
          case ast::BinOp::Le:
          case ast::BinOp::Gt:
          case ast::BinOp::Ge: {
            KType t = Unify(a, b, e.range, op);
            if (t == KType::Bool) Error(e.range, op + " needs numbers, but the operands are `bool`");
            return t == KType::Error || t == KType::Bool ? KType::Error : KType::Bool;
          }
          case ast::BinOp::Pipe:
            Error(e.range, "`|` is not allowed in kernels");
            return KType::Error;
          default: {
            KType t = Unify(a, b, e.range, op);
            if (t == KType::Bool) {
              Error(e.range, op + " needs numbers, but the operands are `bool`");
              return KType::Error;
            }
            return t;
          }
        }
      }
      case ast::ExprKind::If: {
        KType cond = Expr(*e.operands[0]);
        if (cond != KType::Bool && cond != KType::Error) {
          Error(e.operands[0]->range, "an `if` condition must be `bool`, but it is `" + std::string(KTypeName(cond)) + "`");
        }
        KType a = Block(*e.then_block, true);
        KType b = Block(*e.else_block, true);
        return Unify(a, b, e.range, "the branches of `if`");
      }
      case ast::ExprKind::Call: return Call(e);
      case ast::ExprKind::String: Error(e.range, "strings are not allowed in kernels"); return KType::Error;
      case ast::ExprKind::Quantity: Error(e.range, "durations and sizes are not allowed in kernels"); return KType::Error;
      case ast::ExprKind::List:
      case ast::ExprKind::Map: Error(e.range, "lists and maps are not allowed in kernels (kernels do not allocate)"); return KType::Error;
      case ast::ExprKind::Field: Error(e.range, "field access is not allowed in kernels"); return KType::Error;
      case ast::ExprKind::Index: Error(e.range, "indexing is not allowed in kernels"); return KType::Error;
    }
    return KType::Error;
  }

  KType Call(const ast::Expr& e) {
    std::vector<KType> args;
    for (const auto& a : e.args) {
      if (a.name) {
        Error(a.name->range, "kernel calls take positional arguments; remove `" + a.name->name + ":`");
        return KType::Error;
      }
      args.push_back(Expr(*a.value));
    }
    for (KType t : args) {
      if (t == KType::Error) return t;
    }
    auto arity = [&](size_t n) {
      if (args.size() == n) return true;
      Error(e.range, "`" + e.text + "` takes " + std::to_string(n) + " argument" + (n == 1 ? "" : "s") + ", but " +
                         std::to_string(args.size()) + (args.size() == 1 ? " was" : " were") + " given");
      return false;
    };
    if (auto conv = ScalarType(e.text)) {  // f32(x), i64(x), ...
      if (!arity(1)) return KType::Error;
      if (*conv == KType::Bool || args[0] == KType::Bool) {
        Error(e.range, "`" + e.text + "(...)` converts between number types only");
        return KType::Error;
      }
      return *conv;
    }
    for (const auto& b : schema::KernelBuiltins()) {
      if (b.name != e.text) continue;
      if (!arity(static_cast<size_t>(b.arity))) return KType::Error;
      KType t = args[0];
      for (size_t k = 1; k < args.size(); ++k) t = Unify(t, args[k], e.range, "the arguments of `" + e.text + "`");
      if (t == KType::Error) return t;
      if (t == KType::Bool) {
        Error(e.range, "`" + e.text + "` needs numbers, but its argument is `bool`");
        return KType::Error;
      }
      bool float_only = b.name != "abs" && b.name != "min" && b.name != "max" && b.name != "clamp";
      if (float_only && !IsFloat(t)) {
        if (t == KType::LitInt) return KType::LitFloat;
        Error(e.range, "`" + e.text + "` needs a float, but its argument is `" + std::string(KTypeName(t)) +
                           "`; convert it, e.g. `" + e.text + "(f64(x))`");
        return KType::Error;
      }
      return t;
    }
    const Symbol* s = nullptr;
    if (size_t dot = e.text.find('.'); dot != std::string::npos) {  // `lib.kernel(...)`
      auto a = c_.scopes_[module_].aliases.find(std::string_view(e.text).substr(0, dot));
      if (a != c_.scopes_[module_].aliases.end()) s = c_.Lookup(a->second, std::string_view(e.text).substr(dot + 1));
    } else {
      s = c_.Lookup(module_, e.text);
    }
    if (!s || s->kind != SymKind::Kernel) {
      std::vector<std::string> names;
      for (const auto& b : schema::KernelBuiltins()) names.emplace_back(b.name);
      for (const auto& [n, sym] : c_.scopes_[module_].names) {
        if (sym.kind == SymKind::Kernel) names.push_back(n);
      }
      std::string why = s ? "; `" + e.text + "` is " + c_.AKind(s->kind) + ", not a kernel" : DidYouMean(e.text, names);
      c_.D().Report(DiagKind::UnknownName, e.name_range, "unknown function `" + e.text + "`" + why + where_);
      return KType::Error;
    }
    const std::string& callee = c_.plan_names_.at(s->decl);
    c_.Used().insert(s->decl);
    if (std::find(calls.begin(), calls.end(), callee) == calls.end()) calls.push_back(callee);
    const auto& sig = c_.kernel_sigs_[callee];
    if (!arity(sig.params.size())) return KType::Error;
    for (size_t k = 0; k < args.size(); ++k) {
      if (!Assignable(args[k], sig.params[k])) {
        Error(e.args[k].value->range, "argument " + std::to_string(k + 1) + " of `" + e.text + "` must be `" +
                                          std::string(KTypeName(sig.params[k])) + "`, but it is `" +
                                          std::string(KTypeName(args[k])) + "`" + ConvertHint(sig.params[k]));
      }
    }
    return sig.ret;
  }

  KType Block(const ast::KBlock& b, bool need_result) {
    size_t mark = vars.size();
    ++depth;
    for (const auto& st : b.stmts) Stmt(st);
    KType t = KType::Error;
    if (b.result) {
      t = Expr(*b.result);
    } else if (need_result) {
      Error(b.range, "this block has no result expression");
    }
    --depth;
    vars.resize(mark);
    return t;
  }

  void Stmt(const ast::KStmt& st) {
    switch (st.kind) {
      case ast::KStmtKind::Let: {
        KType t = Expr(*st.value);
        if (st.type) {
          auto declared = ScalarType(st.type->name.name);
          if (!declared || st.type->elem) {
            c_.D().Report(DiagKind::UnknownName, st.type->range,
                             "unknown kernel type `" + st.type->str() + "` (kernel types: f32, f64, i32, i64, bool)");
            t = KType::Error;
          } else {
            if (!Assignable(t, *declared)) {
              Error(st.value->range, "`" + st.name.name + "` is declared `" + std::string(KTypeName(*declared)) +
                                         "`, but its value is `" + std::string(KTypeName(t)) + "`" +
                                         ConvertHint(*declared));
            }
            t = *declared;
          }
        }
        if (FindVar(st.name.name)) {
          Error(st.name.range, "`" + st.name.name + "` is already defined; pick another name");
        }
        vars.emplace_back(st.name.name, t);
        return;
      }
      case ast::KStmtKind::Set: {
        KType t = Expr(*st.value);
        if (in_step && depth > 1) {
          // The step's statements run in order, each exactly once: a state
          // update under a condition is an `if` expression.
          Error(st.range, "assign state fields at the top level of `step`, not inside an `if`; write `" +
                              st.name.name + " = if COND { VALUE } else { " + st.name.name + " }`");
          return;
        }
        auto it = state.find(st.name.name);
        if (!in_step || it == state.end()) {
          Error(st.name.range, in_step ? "`" + st.name.name + "` is not a state field; only state fields can be assigned"
                                       : "assignment is only allowed to env state fields in a `step` function; use `let`");
          return;
        }
        if (!Assignable(t, it->second)) {
          Error(st.value->range, "state field `" + st.name.name + "` is `" + std::string(KTypeName(it->second)) +
                                     "`, but the value is `" + std::string(KTypeName(t)) + "`" +
                                     ConvertHint(it->second));
        }
        return;
      }
      case ast::KStmtKind::Reward:
      case ast::KStmtKind::Done: {
        bool reward = st.kind == ast::KStmtKind::Reward;
        KType t = Expr(*st.value);
        if (!in_step) {
          Error(st.range, std::string("`") + (reward ? "reward" : "done") + "` is only allowed in an env `step` function");
          return;
        }
        if (depth > 1) {
          Error(st.range, std::string("`") + (reward ? "reward" : "done") +
                              "` belongs at the top level of `step`, not inside an `if`; give it an `if` expression");
          return;
        }
        (reward ? rewards : dones)++;
        if (t == KType::Error) return;
        if (reward && !IsNumeric(t)) Error(st.value->range, "`reward` needs a number, but it is `bool`");
        if (!reward && t != KType::Bool) {
          Error(st.value->range, "`done` needs a bool, but it is `" + std::string(KTypeName(t)) + "`");
        }
        return;
      }
    }
  }

 private:
  Checker& c_;
  size_t module_;
  std::string where_;
};

}  // namespace

void Checker::CheckKernels() {
  // Signatures first, so that kernels can call kernels declared later.
  struct Item {
    size_t module;
    const ast::KernelDecl* decl;
  };
  std::vector<Item> kernels;
  for (size_t m = 0; m < program_.modules.size(); ++m) {
    for (const auto& d : program_.modules[m].ast->decls) {
      if (d->kind != ast::DeclKind::Kernel) continue;
      const auto* kd = static_cast<const ast::KernelDecl*>(d.get());
      const Symbol* s = Lookup(m, kd->name.name);
      if (!s || s->decl != kd) continue;
      kernels.push_back({m, kd});
      KernelSig sig;
      std::set<std::string> seen;
      for (const auto& p : kd->params) {
        auto t = ScalarType(p.type.name.name);
        if (!t || p.type.elem) {
          D().Report(DiagKind::UnknownName, p.type.range,
                        "unknown kernel type `" + p.type.str() + "` (kernel types: f32, f64, i32, i64, bool)");
        }
        if (!seen.insert(p.name.name).second) {
          D().Report(DiagKind::DuplicateName, p.name.range, "parameter `" + p.name.name + "` appears twice");
        }
        sig.params.push_back(t.value_or(KType::Error));
      }
      auto r = ScalarType(kd->ret.name.name);
      if (!r || kd->ret.elem) {
        D().Report(DiagKind::UnknownName, kd->ret.range,
                      "unknown kernel type `" + kd->ret.str() + "` (kernel types: f32, f64, i32, i64, bool)");
      }
      sig.ret = r.value_or(KType::Error);
      kernel_sigs_[plan_names_[kd]] = sig;
    }
  }
  std::map<std::string, std::vector<std::string>> graph;
  std::map<std::string, const ast::KernelDecl*> decls;
  for (const auto& [m, kd] : kernels) {
    const std::string& name = plan_names_[kd];
    KernelTyper typer(*this, m, " (in kernel `" + kd->name.name + "`)");
    const KernelSig& sig = kernel_sigs_[name];
    for (size_t k = 0; k < kd->params.size(); ++k) typer.vars.emplace_back(kd->params[k].name.name, sig.params[k]);
    KType t = typer.Block(kd->body, /*need_result=*/false);
    if (!kd->body.result) {
      typer.Error(kd->body.range.valid() ? kd->body.range : kd->name.range,
                  "kernel `" + kd->name.name + "` has no result expression; end its body with the value it returns");
    } else if (!Assignable(t, sig.ret)) {
      typer.Error(kd->body.result->range, "kernel `" + kd->name.name + "` returns `" + std::string(KTypeName(sig.ret)) +
                                              "`, but its result is `" + std::string(KTypeName(t)) + "`" +
                                              ConvertHint(sig.ret));
    }
    graph[name] = typer.calls;
    decls[name] = kd;
    CheckedKernel ck;
    ck.name = name;
    ck.decl = kd;
    ck.calls = typer.calls;
    out_->kernels.push_back(std::move(ck));
  }
  // Recursion: a cycle in the call graph.
  std::map<std::string, int> state;
  std::vector<std::string> stack;
  std::function<bool(const std::string&)> dfs = [&](const std::string& k) -> bool {
    state[k] = 1;
    stack.push_back(k);
    for (const auto& callee : graph[k]) {
      if (state[callee] == 1) {
        auto from = std::find(stack.begin(), stack.end(), callee);
        std::string path;
        for (auto it = from; it != stack.end(); ++it) path += "`" + *it + "` -> ";
        path += "`" + callee + "`";
        const auto* kd = decls[callee];
        D().Report(DiagKind::KernelRecursion, kd->name.range,
                      "kernel `" + callee + "` is recursive: " + path + "; kernels cannot recurse");
        return true;
      }
      if (state[callee] == 0 && dfs(callee)) return true;
    }
    stack.pop_back();
    state[k] = 2;
    return false;
  };
  for (const auto& [name, _] : graph) {
    if (state[name] == 0) {
      stack.clear();
      dfs(name);
    }
  }
  for (const auto& [name, _] : graph) {
    std::set<std::string> closure;
    std::function<void(const std::string&)> add = [&](const std::string& k) {
      if (!closure.insert(k).second) return;
      for (const auto& c : graph[k]) add(c);
    };
    add(name);
    kernel_closure_[name].assign(closure.begin(), closure.end());
  }
}

void Checker::CheckEnvs() {
  for (size_t m = 0; m < program_.modules.size(); ++m) {
    for (const auto& d : program_.modules[m].ast->decls) {
      if (d->kind != ast::DeclKind::Env) continue;
      const auto& ed = static_cast<const ast::EnvDecl&>(*d);
      const Symbol* sym = Lookup(m, ed.name.name);
      if (!sym || sym->decl != &ed) continue;
      CheckedEnv env;
      env.name = plan_names_[&ed];
      env.decl = &ed;
      std::string where = " (in env `" + ed.name.name + "`)";
      const ast::EnvItem *state = nullptr, *action = nullptr, *observe = nullptr, *step = nullptr;
      EvalCtx ctx;
      ctx.module = m;
      ctx.what = "env `" + ed.name.name + "`";
      for (const auto& item : ed.items) {
        const ast::EnvItem** slot = nullptr;
        const char* word = "";
        switch (item.kind) {
          case ast::EnvItemKind::State: slot = &state; word = "state"; break;
          case ast::EnvItemKind::Action: slot = &action; word = "action"; break;
          case ast::EnvItemKind::Observe: slot = &observe; word = "observe"; break;
          case ast::EnvItemKind::Step: slot = &step; word = "step"; break;
          case ast::EnvItemKind::Setting: {
            std::string key = item.path.str();
            if (key != "max_steps") {
              D().Report(DiagKind::UnknownField, item.path.range,
                            "unknown env setting `" + key + "`" + DidYouMean(key, {"max_steps"}) + " (settings: `max_steps`)");
              continue;
            }
            schema::Param p;
            p.name = "max_steps";
            p.type = {schema::Kind::Int, schema::Kind::Any};
            p.min = 1;
            Value v = EvalAs(*item.value, p, ctx);
            if (!v.is_error()) env.settings.emplace_back(key, v);
            continue;
          }
        }
        if (*slot) {
          D().Report(DiagKind::DuplicateField, item.range, std::string("env `") + ed.name.name + "` has two `" + word + "` parts");
          continue;
        }
        *slot = &item;
      }
      for (auto [part, word] : {std::pair{state, "state"}, {action, "action"}, {observe, "observe"}, {step, "step"}}) {
        if (!part) {
          D().Report(DiagKind::InvalidEnv, ed.name.range,
                        "env `" + ed.name.name + "` has no `" + word + "`; an env declares state, action, observe and step");
        }
      }
      KernelTyper typer(*this, m, where);
      typer.in_step = true;
      if (state) {
        for (const auto& f : state->fields) {
          auto t = ScalarType(f.type.name.name);
          if (!t || f.type.elem) {
            D().Report(DiagKind::UnknownName, f.type.range,
                          "unknown kernel type `" + f.type.str() + "` (state fields are f32, f64, i32, i64 or bool)");
          }
          if (typer.state.count(f.name.name)) {
            D().Report(DiagKind::DuplicateName, f.name.range, "state field `" + f.name.name + "` appears twice");
          }
          typer.state[f.name.name] = t.value_or(KType::Error);
          env.state.emplace_back(f.name.name, f.type.str());
          Value init = Eval(*f.init, {schema::Kind::Distribution, schema::Kind::Any}, ctx);
          bool ok = init.tag == Value::Tag::Int || init.tag == Value::Tag::Float || init.tag == Value::Tag::Bool ||
                    (init.tag == Value::Tag::Call && init.kind == schema::Kind::Distribution);
          if (!init.is_error() && !ok) {
            D().Report(DiagKind::InvalidEnv, f.init->range,
                          "the initial value of state field `" + f.name.name +
                              "` must be a constant or a distribution such as `uniform(-0.05, 0.05)`, but it is " +
                              DescribeType(init));
          }
          env.state_init.push_back(std::move(init));
        }
      }
      if (action) {
        Value a = Eval(*action->value, {schema::Kind::ActionSpace, schema::Kind::Any}, ctx);
        a = Coerce(std::move(a), {schema::Kind::ActionSpace, schema::Kind::Any}, nullptr, *action->value, ctx);
        env.action = a;
      }
      if (observe) {
        const ast::Expr& o = *observe->value;
        if (o.kind != ast::ExprKind::List || o.operands.empty()) {
          D().Report(DiagKind::InvalidEnv, o.range, "`observe` lists state fields, e.g. `observe [x, v]`");
        } else {
          for (const auto& x : o.operands) {
            if (x->kind != ast::ExprKind::Name || !typer.state.count(x->text)) {
              std::vector<std::string> names;
              for (const auto& [n, t] : typer.state) names.push_back(n);
              D().Report(DiagKind::InvalidEnv, x->range,
                            "`observe` lists state fields, but `" + Src(*x) + "` is not one" +
                                (x->kind == ast::ExprKind::Name ? DidYouMean(x->text, names) : ""));
              continue;
            }
            env.observe.push_back(x->text);
          }
        }
      }
      if (step && step->step) {
        KType act = KType::I64;
        if (env.action.tag == Value::Tag::Call && env.action.s == "box") act = KType::F32;
        typer.vars.emplace_back(step->step_param.name, act);
        typer.Block(*step->step, /*need_result=*/false);
        if (step->step->result) {
          typer.Error(step->step->result->range, "a `step` function has no result; use `reward` and `done`");
        }
        if (typer.rewards != 1 || typer.dones != 1) {
          D().Report(DiagKind::InvalidEnv, step->range,
                        "a `step` function sets `reward` and `done` exactly once each, but this one has " +
                            std::to_string(typer.rewards) + " `reward` and " + std::to_string(typer.dones) + " `done`");
        }
      }
      env.calls = typer.calls;
      const std::string& name = plan_names_[&ed];
      std::set<std::string> closure;
      for (const auto& c : typer.calls) {
        auto it = kernel_closure_.find(c);
        if (it != kernel_closure_.end()) closure.insert(it->second.begin(), it->second.end());
      }
      kernel_closure_[name].assign(closure.begin(), closure.end());
      out_->envs.push_back(std::move(env));
    }
  }
}

void Checker::CheckKernelUse(const Value& v, const ast::Expr& src, std::string_view op) {
  auto it = kernel_sigs_.find(v.s);
  if (it == kernel_sigs_.end()) return;
  const KernelSig& sig = it->second;
  if (sig.ret == KType::Error) return;
  bool filter = op == "filter";
  if (sig.params.size() != 1) {
    D().Report(DiagKind::TypeMismatch, src.range,
                  "type mismatch: `" + std::string(op) + "` needs a kernel of one parameter, but `" + v.s + "` takes " +
                      std::to_string(sig.params.size()));
    return;
  }
  if (filter && sig.ret != KType::Bool) {
    D().Report(DiagKind::TypeMismatch, src.range,
                  "type mismatch: `filter` needs a kernel that returns `bool`, but `" + v.s + "` returns `" +
                      std::string(KTypeName(sig.ret)) + "`");
  } else if (!filter && sig.ret == KType::Bool) {
    D().Report(DiagKind::TypeMismatch, src.range,
                  "type mismatch: `" + std::string(op) + "` needs a kernel that returns a number, but `" + v.s +
                      "` returns `bool`; did you mean `filter`?");
  }
}

}  // namespace mlp
