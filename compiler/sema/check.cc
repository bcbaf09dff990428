// The checking phase's driver, scopes, params and top-level declarations.
#include "compiler/sema/check.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "compiler/parse/string_literal.h"
#include "compiler/sema/checker.h"
#include "compiler/sema/units.h"

namespace mlp {

std::string_view KTypeName(KType t) {
  switch (t) {
    case KType::Error: return "<error>";
    case KType::Bool: return "bool";
    case KType::I32: return "i32";
    case KType::I64: return "i64";
    case KType::F32: return "f32";
    case KType::F64: return "f64";
    case KType::LitInt: return "integer literal";
    case KType::LitFloat: return "float literal";
  }
  return "?";
}

Checker::Checker(const Program& program, const CheckOptions& options, Diagnostics& diags)
    : program_(program), options_(options), diags_(diags), sm_(program.sm),
      out_(std::make_unique<CheckedPipeline>()) {}

std::unique_ptr<CheckedPipeline> Checker::Run() {
  if (program_.modules.empty()) return std::move(out_);
  BuildScopes();
  CheckPipelineHeader();
  CheckParams();
  CheckProfiles();
  CheckKernels();
  CheckEnvs();
  std::vector<const ast::StageDecl*> stage_decls;
  for (const auto& d : program_.modules[0].ast->decls) {
    if (d->kind != ast::DeclKind::Stage) continue;
    const auto& sd = static_cast<const ast::StageDecl&>(*d);
    if (stages_by_name_.find(sd.name.name)->second != &sd) continue;  // a duplicate, already reported
    stage_decls.push_back(&sd);
  }
  CheckStages(stage_decls);
  // Roles: a tune stage's trials take the resources of the train stage they run.
  for (auto& st : out_->stages) {
    if (st.kind != schema::StageKind::Tune) ComputeRoles(st);
  }
  for (auto& st : out_->stages) {
    if (st.kind == schema::StageKind::Tune) ComputeRoles(st);
  }
  CheckCycles();
  SortStages();
  CheckUnused();
  CheckCluster();
  return std::move(out_);
}

std::string Checker::KindWord(SymKind k) const {
  switch (k) {
    case SymKind::Param: return "param";
    case SymKind::Stage: return "stage";
    case SymKind::Kernel: return "kernel";
    case SymKind::Env: return "env";
    case SymKind::Resources: return "resources profile";
    case SymKind::Cluster: return "cluster";
  }
  return "?";
}

thread_local Diagnostics* Checker::tls_diags_ = nullptr;
thread_local std::set<const ast::Decl*>* Checker::tls_used_ = nullptr;

// Once params, profiles, kernels and envs are checked, stages only read the
// checker's tables, so a large pipeline's stages are checked on two threads:
// the second half on a helper thread that reports into its own Diagnostics,
// appended after the first half's, so the result is what one thread gives.
void Checker::CheckStages(const std::vector<const ast::StageDecl*>& decls) {
  out_->stages.resize(decls.size());
  auto check_range = [&](size_t begin, size_t end) {
    for (size_t k = begin; k < end; ++k) CheckStage(*decls[k], out_->stages[k]);
  };
  constexpr size_t kParallelFrom = 2048;
  if (!options_.parallel || decls.size() < kParallelFrom || std::thread::hardware_concurrency() < 2) {
    check_range(0, decls.size());
    return;
  }
  size_t half = decls.size() / 2;
  Diagnostics second_diags;
  std::set<const ast::Decl*> second_used;
  std::thread helper([&] {
    tls_diags_ = &second_diags;
    tls_used_ = &second_used;
    check_range(half, decls.size());
    tls_diags_ = nullptr;
    tls_used_ = nullptr;
  });
  check_range(0, half);
  helper.join();
  diags_.Append(std::move(second_diags));
  used_.insert(second_used.begin(), second_used.end());
}

std::string Checker::AKind(SymKind k) const { return (k == SymKind::Env ? "an " : "a ") + KindWord(k); }

// Scopes are built leaves first: a module's scope holds its own declarations,
// the scopes of its unaliased imports, and its aliases.
void Checker::BuildScopes() {
  size_t n = program_.modules.size();
  scopes_.assign(n, Scope{});
  std::vector<int> state(n, 0);
  std::function<void(size_t)> build = [&](size_t m) {
    if (state[m]) return;
    state[m] = 1;
    const Module& mod = program_.modules[m];
    for (const auto& [imp, target] : mod.imports) build(target);
    Scope& scope = scopes_[m];
    auto add = [&](const std::string& name, Symbol sym, Range where) {
      auto [it, inserted] = scope.names.emplace(name, sym);
      if (!inserted && it->second.decl != sym.decl) {
        D().Report(DiagKind::DuplicateName, where,
                      "duplicate name `" + name + "`: it is already " + AKind(it->second.kind));
        D().AddNote(it->second.decl->name.range, "first declared here");
      }
    };
    for (const auto& d : mod.ast->decls) {
      if (m != 0 && d->kind == ast::DeclKind::Pipeline) {
        D().Report(DiagKind::InvalidImport, d->range,
                      "an imported file cannot declare a `pipeline` header; only the main file names the pipeline");
        continue;
      }
      SymKind kind;
      switch (d->kind) {
        case ast::DeclKind::Param: kind = SymKind::Param; break;
        case ast::DeclKind::Stage: kind = SymKind::Stage; break;
        case ast::DeclKind::Kernel: kind = SymKind::Kernel; break;
        case ast::DeclKind::Env: kind = SymKind::Env; break;
        case ast::DeclKind::Resources: kind = SymKind::Resources; break;
        case ast::DeclKind::Cluster: kind = SymKind::Cluster; break;
        default: continue;
      }
      if (d->name.name.empty()) continue;
      if (m != 0 && kind == SymKind::Stage) {
        D().Report(DiagKind::InvalidImport, d->name.range,
                      "stage `" + d->name.name +
                          "` is declared in an imported file; an imported file may declare only "
                          "kernels, envs, params, resources and clusters");
        continue;
      }
      add(d->name.name, Symbol{kind, d.get(), m}, d->name.range);
      if (kind == SymKind::Stage) {
        stages_by_name_.emplace(d->name.name, static_cast<const ast::StageDecl*>(d.get()));
      }
    }
    for (const auto& [imp, target] : mod.imports) {
      if (imp->has_alias) {
        if (!scope.aliases.emplace(imp->name.name, target).second || scope.names.count(imp->name.name)) {
          D().Report(DiagKind::DuplicateName, imp->name.range,
                        "duplicate name `" + imp->name.name + "` for an import alias");
        }
        continue;
      }
      for (const auto& [name, sym] : scopes_[target].names) add(name, sym, imp->path_range);
      for (const auto& [alias, am] : scopes_[target].aliases) scope.aliases.emplace(alias, am);
    }
  };
  for (size_t m = n; m-- > 0;) build(m);
  // Plan names: plain where the main scope sees the declaration, else qualified.
  for (size_t m = 0; m < n; ++m) {
    for (const auto& d : program_.modules[m].ast->decls) {
      if (d->kind != ast::DeclKind::Kernel && d->kind != ast::DeclKind::Env) continue;
      const Symbol* s = Lookup(0, d->name.name);
      std::string name = d->name.name;
      if (!s || s->decl != d.get()) {
        for (const auto& [alias, am] : scopes_[0].aliases) {
          if (am == m) name = alias + "." + name;
        }
        if (name == d->name.name) name = "m" + std::to_string(m) + "." + name;
      }
      plan_names_[d.get()] = name;
    }
  }
}

const Symbol* Checker::Lookup(size_t module, std::string_view name) const {
  const auto& names = scopes_[module].names;
  auto it = names.find(name);
  return it == names.end() ? nullptr : &it->second;
}

std::vector<std::string> Checker::VisibleNames(size_t module) const {
  std::vector<std::string> out;
  for (const auto& [name, sym] : scopes_[module].names) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

schema::Type Checker::ParamType(const ast::TypeRef& t, bool report) {
  using schema::Kind;
  static const std::pair<std::string_view, Kind> kScalars[] = {
      {"int", Kind::Int},   {"float", Kind::Float},       {"bool", Kind::Bool}, {"string", Kind::String},
      {"path", Kind::Path}, {"duration", Kind::Duration}, {"size", Kind::Size}};
  auto scalar = [&](const std::string& n) -> std::optional<Kind> {
    for (const auto& [name, k] : kScalars) {
      if (name == n) return k;
    }
    return std::nullopt;
  };
  if (t.name.name == "list" && t.elem) {
    if (auto k = scalar(t.elem->name.name); k && !t.elem->elem) return {Kind::List, *k};
  } else if (!t.elem) {
    if (auto k = scalar(t.name.name)) return {*k, Kind::Any};
  }
  if (report) {
    std::vector<std::string> names;
    for (const auto& [n, k] : kScalars) names.emplace_back(n);
    D().Report(DiagKind::UnknownName, t.range,
                  "unknown param type `" + t.str() + "`" + DidYouMean(t.name.name, names) +
                      " (param types: int, float, bool, string, path, duration, size, list[T])");
  }
  return {Kind::Any, Kind::Any};
}

// Parses a `--set` text as the param's type.
Value Checker::ApplyOverride(const ast::ParamDecl& decl, schema::Type type, const ParamOverride& o) {
  using schema::Kind;
  auto fail = [&](const std::string& why) {
    D().Report(DiagKind::InvalidParamOverride, Range{},
                  "invalid value for param `" + decl.name.name + "` in " + o.origin + ": " + why);
    D().AddNote(decl.range, "`" + decl.name.name + "` is declared here as `" + decl.type.str() + "`");
    return Value::Error();
  };
  std::function<std::optional<Value>(std::string_view, Kind, std::string&)> parse_scalar =
      [&](std::string_view text, Kind k, std::string& why) -> std::optional<Value> {
    Value v;
    std::string t(text);
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.erase(t.begin());
    std::string digits;
    bool separators_ok = StripDigitSeparators(t, digits);
    switch (k) {
      case Kind::Int: {
        char* end = nullptr;
        errno = 0;
        long long x = std::strtoll(digits.c_str(), &end, 10);
        if (!separators_ok || digits.empty() || *end || errno == ERANGE) {
          why = "`" + t + "` is not an int";
          return std::nullopt;
        }
        v.tag = Value::Tag::Int;
        v.i = x;
        return v;
      }
      case Kind::Float: {
        char* end = nullptr;
        double x = std::strtod(digits.c_str(), &end);
        if (!separators_ok || digits.empty() || *end || !std::isfinite(x)) {
          why = "`" + t + "` is not a float";
          return std::nullopt;
        }
        v.tag = Value::Tag::Float;
        v.f = x;
        return v;
      }
      case Kind::Bool:
        if (t != "true" && t != "false") {
          why = "`" + t + "` is not a bool (write true or false)";
          return std::nullopt;
        }
        v.tag = Value::Tag::Bool;
        v.b = t == "true";
        return v;
      case Kind::String:
      case Kind::Path:
        v.tag = k == Kind::String ? Value::Tag::String : Value::Tag::Path;
        v.s = std::string(text);
        return v;
      case Kind::Duration:
      case Kind::Size: {
        auto q = ParseQuantity(t);
        UnitKind want = k == Kind::Duration ? UnitKind::Duration : UnitKind::Size;
        if (!q || q->kind != want) {
          why = "`" + t + "` is not a " + (k == Kind::Duration ? "duration such as 30s" : "size such as 4GiB");
          return std::nullopt;
        }
        v.tag = k == Kind::Duration ? Value::Tag::Duration : Value::Tag::Size;
        v.i = q->value;
        return v;
      }
      default:
        why = "this param type cannot be set from the command line";
        return std::nullopt;
    }
  };
  std::string why;
  if (o.value) {  // from a params file: the JSON type must fit
    const Value& jv = *o.value;
    Value v = jv;
    auto fits = [&](const Value& x, Kind k) -> std::optional<Value> {
      if (x.tag == Value::Tag::String && (k == Kind::Duration || k == Kind::Size || k == Kind::Path || k == Kind::String)) {
        return parse_scalar(x.s, k, why);
      }
      if (x.tag == Value::Tag::Int && k == Kind::Float) {
        Value f;
        f.tag = Value::Tag::Float;
        f.f = static_cast<double>(x.i);
        return f;
      }
      if ((x.tag == Value::Tag::Int && k == Kind::Int) || (x.tag == Value::Tag::Float && k == Kind::Float) ||
          (x.tag == Value::Tag::Bool && k == Kind::Bool)) {
        return x;
      }
      if (why.empty()) why = "expected " + std::string(schema::KindName(k)) + ", found " + DescribeType(x);
      return std::nullopt;
    };
    if (type.kind == Kind::List) {
      if (jv.tag != Value::Tag::List) return fail("expected a list, found " + DescribeType(jv));
      for (auto& item : v.items) {
        auto r = fits(item, type.elem);
        if (!r) return fail(why);
        item = *r;
      }
      return v;
    }
    auto r = fits(jv, type.kind);
    if (!r) return fail(why);
    return *r;
  }
  if (type.kind == Kind::List) {
    std::string t = o.text;
    if (!t.empty() && t.front() == '[' && t.back() == ']') t = t.substr(1, t.size() - 2);
    Value list;
    list.tag = Value::Tag::List;
    size_t start = 0;
    while (start <= t.size() && !t.empty()) {
      size_t comma = t.find(',', start);
      std::string part = t.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      auto item = parse_scalar(part, type.elem, why);
      if (!item) return fail(why);
      list.items.push_back(*item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return list;
  }
  auto v = parse_scalar(o.text, type.kind, why);
  if (!v) return fail(why);
  return *v;
}

const Value& Checker::ParamValue(const Symbol& sym) {
  const auto* decl = static_cast<const ast::ParamDecl*>(sym.decl);
  auto it = param_values_.find(decl);
  if (it != param_values_.end()) return it->second;
  static const Value kError;
  if (!params_in_progress_.insert(decl).second) {
    D().Report(DiagKind::DependencyCycle, decl->name.range,
                  "param `" + decl->name.name + "` depends on itself through its default value");
    return kError;
  }
  schema::Type type = ParamType(decl->type, /*report=*/false);
  Value v;
  // An override applies to params the main file can name: plainly, or as `alias.name`.
  const ParamOverride* ov = nullptr;
  for (const auto& o : options_.overrides) {
    std::string_view name = o.name;
    size_t dot = name.find('.');
    if (dot == std::string_view::npos) {
      const Symbol* s = Lookup(0, name);
      if (s && s->decl == decl) ov = &o;
    } else {
      auto a = scopes_[0].aliases.find(name.substr(0, dot));
      if (a != scopes_[0].aliases.end()) {
        const Symbol* s = Lookup(a->second, name.substr(dot + 1));
        if (s && s->decl == decl) ov = &o;
      }
    }
  }
  if (type.kind == schema::Kind::Any) {
    v = Value::Error();
  } else if (ov) {
    v = ApplyOverride(*decl, type, *ov);
  } else if (decl->default_value) {
    EvalCtx ctx;
    ctx.module = sym.module;
    ctx.what = "param `" + decl->name.name + "`";
    schema::Param p;
    p.name = decl->name.name;
    p.type = type;
    v = EvalAs(*decl->default_value, p, ctx);
  } else {
    D().Report(DiagKind::MissingField, decl->name.range,
                  "param `" + decl->name.name + "` has no default and was not set; pass `--set " +
                      decl->name.name + "=VALUE` or give it a default");
    v = Value::Error();
  }
  params_in_progress_.erase(decl);
  return param_values_[decl] = std::move(v);
}

void Checker::CheckParams() {
  for (const auto& o : options_.overrides) {
    std::string_view name = o.name;
    const Symbol* s = nullptr;
    size_t dot = name.find('.');
    if (dot == std::string_view::npos) {
      s = Lookup(0, name);
    } else if (auto a = scopes_[0].aliases.find(name.substr(0, dot)); a != scopes_[0].aliases.end()) {
      s = Lookup(a->second, name.substr(dot + 1));
    }
    if (!s || s->kind != SymKind::Param) {
      std::vector<std::string> params;
      for (const auto& [n, sym] : scopes_[0].names) {
        if (sym.kind == SymKind::Param) params.push_back(n);
      }
      std::sort(params.begin(), params.end());
      D().Report(DiagKind::UnknownParamOverride, Range{},
                    "unknown param `" + o.name + "` in " + o.origin + DidYouMean(o.name, params));
    }
  }
  for (size_t m = 0; m < program_.modules.size(); ++m) {
    for (const auto& d : program_.modules[m].ast->decls) {
      if (d->kind != ast::DeclKind::Param) continue;
      ParamType(static_cast<const ast::ParamDecl&>(*d).type, /*report=*/true);
      const Symbol* s = Lookup(m, d->name.name);
      if (!s || s->decl != d.get()) continue;
      const Value& v = ParamValue(*s);
      if (m == 0) out_->params.emplace_back(d->name.name, v);
    }
  }
}

void Checker::CheckPipelineHeader() {
  const ast::PipelineDecl* header = nullptr;
  for (const auto& d : program_.modules[0].ast->decls) {
    if (d->kind != ast::DeclKind::Pipeline) continue;
    if (header) {
      D().Report(DiagKind::MultiplePipelines, d->range,
                    "a file declares one pipeline, but this is a second `pipeline` header");
      D().AddNote(header->range, "the first is here");
      continue;
    }
    header = static_cast<const ast::PipelineDecl*>(d.get());
  }
  if (!header) {
    // The pipeline takes the file's name.
    std::string path = sm_.Path(program_.modules[0].file);
    size_t slash = path.find_last_of('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.size() > 4 && base.ends_with(".mlp")) base.resize(base.size() - 4);
    out_->name = base;
    return;
  }
  out_->name = header->name.name;
  out_->range = header->range;
  std::set<std::string> seen;
  std::vector<std::string> names;
  for (const auto& f : schema::PipelineFields()) names.emplace_back(f.param.name);
  for (const auto& item : header->items) {
    std::string key = item.path.str();
    const schema::Field* field = nullptr;
    for (const auto& f : schema::PipelineFields()) {
      if (f.param.name == key) field = &f;
    }
    if (!field || item.kind != ast::ItemKind::Assign) {
      D().Report(DiagKind::UnknownField, item.path.range.valid() ? item.path.range : item.range,
                    "unknown pipeline setting `" + key + "`" + DidYouMean(key, names));
      continue;
    }
    if (!seen.insert(key).second) {
      D().Report(DiagKind::DuplicateField, item.range, "pipeline setting `" + key + "` is set twice");
      continue;
    }
    EvalCtx ctx;
    ctx.what = "pipeline setting `" + key + "`";
    out_->settings.emplace_back(key, EvalAs(*item.value, field->param, ctx));
  }
}

void Checker::CheckProfiles() {
  for (size_t m = 0; m < program_.modules.size(); ++m) {
    for (const auto& d : program_.modules[m].ast->decls) {
      const Symbol* s = Lookup(m, d->name.name);
      if (!s || s->decl != d.get()) continue;
      EvalCtx ctx;
      ctx.module = m;
      if (d->kind == ast::DeclKind::Resources) {
        ctx.what = "resources profile `" + d->name.name + "`";
        const auto& rd = static_cast<const ast::ResourcesDecl&>(*d);
        ResourceAmounts base;
        base.cpu_milli = 1000;
        profiles_[d->name.name] = ResourcesOf(rd.block, base, ctx);
        if (d->name.name == "default") has_default_profile_ = true;
      } else if (const Symbol* main = Lookup(0, d->name.name);
                 d->kind == ast::DeclKind::Cluster && main && main->decl == d.get()) {
        ctx.what = "cluster `" + d->name.name + "`";
        const auto& cd = static_cast<const ast::ResourcesDecl&>(*d);
        NodeGroup g;
        g.name = d->name.name;
        g.range = d->range;
        const schema::Field& spec = schema::ClusterBlock();
        ResourceAmounts res;
        res.cpu_milli = 1000;
        for (const auto& e : cd.block.entries) {
          std::string key = e.key.str();
          schema::Param custom;
          Value v = EvalAs(*e.value, ResourceEntry(spec, key, custom), ctx);
          if (v.is_error()) continue;
          if (key == "nodes") {
            g.count = static_cast<uint32_t>(v.i);
          } else if (key == "cpu") {
            res.cpu_milli = static_cast<int64_t>(std::llround(v.f * 1000));
          } else if (key == "gpu") {
            res.gpu_milli = static_cast<int64_t>(std::llround(v.f * 1000));
          } else if (key == "memory") {
            res.memory_bytes = v.i;
          } else if (key == "labels") {
            for (const auto& [k, lv] : v.entries) g.labels.emplace_back(k, lv.s.empty() ? ToSource(lv) : lv.s);
          } else {
            res.custom_milli[key] = static_cast<int64_t>(std::llround(v.f * 1000));
          }
        }
        g.resources = res;
        out_->cluster.push_back(std::move(g));
      }
    }
  }
}

std::unique_ptr<CheckedPipeline> Check(const Program& program, const CheckOptions& options,
                                       Diagnostics& diags) {
  Checker checker(program, options, diags);
  return checker.Run();
}

}  // namespace mlp
