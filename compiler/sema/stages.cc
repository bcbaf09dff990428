// Stage checks: fields against the stage kind's schema, blocks, the tune
// search space, per-kind rules, resources and the roles a stage runs as.
#include <algorithm>
#include <cmath>

#include "compiler/sema/checker.h"
#include "compiler/sema/defaults.h"

namespace mlp {

using schema::Kind;

static const schema::Field* FindField(const schema::StageSchema& s, std::string_view name) {
  for (const auto& f : s.fields) {
    if (f.param.name == name) return &f;
  }
  return nullptr;
}

static std::string StageWhat(const ast::StageDecl& d) {
  return std::string(ast::Spelling(d.stage_kind)) + " stage `" + d.name.name + "`";
}

std::vector<std::string> Checker::StageOutputs(const ast::StageDecl& sd) const {
  const auto& schema = schema::Stage(static_cast<schema::StageKind>(sd.stage_kind));
  std::vector<std::string> outs;
  for (const auto& o : schema.outputs) outs.emplace_back(o.name);
  if (sd.stage_kind == ast::StageKind::Data) {
    for (const auto& item : sd.items) {
      if (item.kind == ast::ItemKind::Block && item.path.parts.size() == 1 && item.path.parts[0].name == "split") {
        for (const auto& e : item.block.entries) outs.push_back(e.key.str());
      }
    }
  }
  return outs;
}

bool Checker::HasOutput(const ast::StageDecl& sd, std::string_view name) const {
  for (const auto& o : schema::Stage(static_cast<schema::StageKind>(sd.stage_kind)).outputs) {
    if (o.name == name) return true;
  }
  if (sd.stage_kind != ast::StageKind::Data) return false;
  for (const auto& item : sd.items) {
    if (item.kind == ast::ItemKind::Block && item.path.parts.size() == 1 && item.path.parts[0].name == "split") {
      for (const auto& e : item.block.entries) {
        if (e.key.parts.size() == 1 && e.key.parts[0].name == name) return true;
      }
    }
  }
  return false;
}

const schema::Param& ResourceEntry(const schema::Field& spec, const std::string& key, schema::Param& custom) {
  for (const auto& q : spec.entries) {
    if (q.name == key) return q;
  }
  custom.name = key;  // a custom resource: any non-negative amount
  custom.type = spec.open_type;
  custom.min = 0;
  return custom;
}

ResourceAmounts Checker::ResourcesOf(const ast::SettingsBlock& block, ResourceAmounts base, EvalCtx& ctx) {
  const schema::Field& spec = schema::ResourcesBlock();
  std::set<std::string> seen;
  for (const auto& e : block.entries) {
    std::string key = e.key.str();
    if (e.key.parts.size() != 1) {
      D().Report(DiagKind::UnknownField, e.key.range, "resource names are single words; `" + key + "` is not");
      continue;
    }
    if (!seen.insert(key).second) {
      D().Report(DiagKind::DuplicateField, e.key.range, "resource `" + key + "` is given twice");
      continue;
    }
    schema::Param custom;
    Value v = EvalAs(*e.value, ResourceEntry(spec, key, custom), ctx);
    if (v.is_error()) continue;
    if (key == "memory") {
      base.memory_bytes = v.i;
      continue;
    }
    int64_t milli = static_cast<int64_t>(std::llround(v.f * 1000));
    if (milli == 0 && v.f > 0) {
      D().Report(DiagKind::ValueOutOfRange, e.value->range,
                    "resource `" + key + "` is finer than the smallest unit, 0.001");
      continue;
    }
    if (key == "cpu") {
      base.cpu_milli = milli;
    } else if (key == "gpu") {
      base.gpu_milli = milli;
    } else {
      base.custom_milli[key] = milli;
    }
  }
  return base;
}

Value Checker::CheckBlock(const ast::Item& item, const schema::Field& field, EvalCtx& ctx) {
  Value map;
  map.tag = Value::Tag::Map;
  map.range = item.range;
  map.entries.reserve(item.block.entries.size() + field.entries.size());
  std::map<std::string_view, Range> seen;
  for (const auto& e : item.block.entries) {
    std::string key = e.key.str();
    if (e.key.parts.size() != 1) {
      D().Report(DiagKind::UnknownField, e.key.range,
                    "`" + key + "` is not a setting of `" + std::string(field.param.name) +
                        "`; dotted names are only allowed in `search` blocks");
      continue;
    }
    // The AST owns the name, so the map can hold a view of it.
    if (auto [it, inserted] = seen.emplace(e.key.parts[0].name, e.key.range); !inserted) {
      D().Report(DiagKind::DuplicateField, e.key.range,
                    "`" + key + "` is set twice in `" + std::string(field.param.name) + "`");
      D().AddNote(it->second, "first set here");
      continue;
    }
    const schema::Param* p = nullptr;
    for (const auto& q : field.entries) {
      if (q.name == key) p = &q;
    }
    schema::Param open;
    if (!p && field.open_entries) {
      open.name = e.key.parts[0].name;
      open.type = field.open_type;
      p = &open;
    }
    if (!p) {
      std::vector<std::string> names;
      for (const auto& q : field.entries) names.emplace_back(q.name);
      std::string list;
      for (size_t k = 0; k < names.size(); ++k) list += (k ? ", `" : "`") + names[k] + "`";
      D().Report(DiagKind::UnknownField, e.key.range,
                    "unknown setting `" + key + "` in `" + std::string(field.param.name) + "`" + DidYouMean(key, names) +
                        " (settings: " + list + ")");
      continue;
    }
    Value v = EvalAs(*e.value, *p, ctx);
    if (!v.is_error()) map.entries.emplace_back(key, std::move(v));
  }
  // Defaults of the block's settings.
  for (const auto& p : field.entries) {
    if (map.Find(p.name)) continue;
    Value d = DefaultValue(p);
    if (!d.is_error()) map.entries.emplace_back(std::string(p.name), std::move(d));
  }
  return map;
}

void Checker::CheckStage(const ast::StageDecl& decl, CheckedStage& out) {
  out.decl = &decl;
  out.kind = static_cast<schema::StageKind>(decl.stage_kind);
  const auto& schema = schema::Stage(out.kind);
  EvalCtx ctx;
  ctx.module = 0;
  ctx.stage = &out;
  std::vector<std::string> field_names;
  for (const auto& f : schema.fields) field_names.emplace_back(f.param.name);
  // Per schema field: where it was set and its value.
  const size_t nfields = schema.fields.size();
  std::vector<Range> seen(nfields);
  std::vector<Value> values(nfields);
  std::vector<bool> has(nfields, false);
  auto index_of = [&](std::string_view name) -> size_t {
    for (size_t k = 0; k < nfields; ++k) {
      if (schema.fields[k].param.name == name) return k;
    }
    return nfields;
  };
  Range stop_seen;
  ResourceAmounts res;
  res.cpu_milli = 1000;
  if (has_default_profile_) res = profiles_.at("default");

  for (const auto& item : decl.items) {
    if (item.kind == ast::ItemKind::Stop) {
      if (decl.stage_kind != ast::StageKind::Rl) {
        D().Report(DiagKind::UnknownField, item.range, "`stop when` is only allowed in rl stages");
        continue;
      }
      if (stop_seen.valid()) {
        D().Report(DiagKind::DuplicateField, item.range, "`stop when` is given twice");
        D().AddNote(stop_seen, "first given here");
        continue;
      }
      stop_seen = item.range;
      ctx.field = "stop when";
      std::vector<std::string> metrics;
      size_t k = index_of("stop");
      values[k] = EvalPredicate(*item.value, ctx, metrics);
      has[k] = true;
      continue;
    }
    const std::string& key = item.path.parts.size() == 1 ? item.path.parts[0].name : item.path.str();
    size_t index = item.path.parts.size() == 1 ? index_of(key) : nfields;
    const schema::Field* field = index < nfields ? &schema.fields[index] : nullptr;
    if (!field || key == "stop") {
      std::string hint = item.path.parts.size() > 1 ? "; dotted names are only allowed in `search` blocks"
                                                    : DidYouMean(key, field_names);
      D().Report(DiagKind::UnknownField, item.path.range,
                    "unknown field `" + key + "` in " + StageWhat(decl) + hint);
      continue;
    }
    if (seen[index].valid()) {
      D().Report(DiagKind::DuplicateField, item.path.range, "field `" + key + "` is set twice in " + StageWhat(decl));
      D().AddNote(seen[index], "first set here");
      continue;
    }
    seen[index] = item.path.range;
    ctx.field = field->param.name;
    if (key == "resources") {
      if (item.kind == ast::ItemKind::Block) {
        res = ResourcesOf(item.block, res, ctx);
      } else {
        schema::Param p = field->param;
        Value v = EvalAs(*item.value, p, ctx);
        if (!v.is_error()) {
          if (auto it = profiles_.find(v.s); it != profiles_.end()) res = it->second;
        }
      }
      continue;
    }
    if (field->block != (item.kind == ast::ItemKind::Block)) {
      D().Report(DiagKind::TypeMismatch, item.range,
                    field->block ? "`" + key + "` is a block; write `" + key + " { ... }`"
                                 : "`" + key + "` is a single value; write `" + key + " = ...`");
      continue;
    }
    if (key == "search") {
      values[index] = CheckTuneSearch(item, out, ctx);
      has[index] = true;
      continue;
    }
    Value v = field->block ? CheckBlock(item, *field, ctx) : EvalAs(*item.value, field->param, ctx);
    if (!v.is_error() && v.tag == Value::Tag::Ref) out.inputs.emplace_back(key, v);
    values[index] = std::move(v);
    has[index] = true;
  }

  // Required fields; the set fields in schema order (defaults are filled in
  // only for the plan, by FieldsWithDefaults).
  out.fields.reserve(static_cast<size_t>(std::count(has.begin(), has.end(), true)));
  for (size_t index = 0; index < nfields; ++index) {
    const schema::Field& f = schema.fields[index];
    std::string_view name = f.param.name;
    if (name == "resources") continue;
    if (!has[index] && !seen[index].valid() && !(name == "stop" && stop_seen.valid()) && f.param.required) {
      D().Report(DiagKind::MissingField, decl.name.range,
                    StageWhat(decl) + " is missing required field `" + std::string(name) + "` (" +
                        std::string(f.param.doc) + ")");
    }
    if (has[index]) out.fields.emplace_back(std::string(name), std::move(values[index]));
  }
  out.resources = res;
  const Value* pl = nullptr;
  for (const auto& [k, v] : out.fields) {
    if (k == "placement") pl = &v;
  }
  if (pl) {
    if (const Value* s = pl->Find("strategy")) out.placement_strategy = s->s;
    if (const Value* l = pl->Find("labels")) {
      for (const auto& [k, lv] : l->entries) {
        out.placement_labels.emplace_back(k, lv.tag == Value::Tag::String ? lv.s : ToSource(lv));
      }
    }
  }
  // Dependencies: the stage outputs that the checked fields refer to (a name
  // rejected by a type check is no edge of the DAG).
  std::function<void(const Value&)> deps = [&](const Value& v) {
    if (v.tag == Value::Tag::Ref && std::find(out.deps.begin(), out.deps.end(), v.s) == out.deps.end()) {
      out.deps.push_back(v.s);
      out.dep_ranges.push_back(v.range);
    }
    for (const auto& i : v.items) deps(i);
    for (const auto& [k, e] : v.entries) deps(e);
  };
  for (const auto& [k, v] : out.fields) deps(v);
  for (const auto& [k, v] : out.fields) {
    if (v.tag != Value::Tag::Kernel || (k != "preprocess" && k != "postprocess")) continue;
    for (const auto& i : decl.items) {
      if (i.path.str() == k && i.value) CheckKernelUse(v, *i.value, k);
    }
  }
  CheckStageSemantics(out);
}

Value Checker::CheckTuneSearch(const ast::Item& item, CheckedStage& out, EvalCtx& ctx) {
  // The trial is resolved first so that keys can be checked against it.
  const ast::StageDecl& decl = *out.decl;
  const ast::Expr* trial_expr = nullptr;
  for (const auto& i : decl.items) {
    if (i.kind == ast::ItemKind::Assign && i.path.str() == "trial") trial_expr = i.value.get();
  }
  const ast::StageDecl* trial_stage = nullptr;
  const ast::KernelDecl* trial_kernel = nullptr;
  const Symbol* trial_sym = nullptr;
  if (trial_expr && trial_expr->kind == ast::ExprKind::Name) {
    trial_sym = Lookup(0, trial_expr->text);
  } else if (trial_expr && trial_expr->kind == ast::ExprKind::Field &&
             trial_expr->operands[0]->kind == ast::ExprKind::Name) {  // `lib.kernel`
    auto a = scopes_[0].aliases.find(trial_expr->operands[0]->text);
    if (a != scopes_[0].aliases.end()) trial_sym = Lookup(a->second, trial_expr->text);
  }
  if (trial_sym && trial_sym->kind == SymKind::Stage) trial_stage = static_cast<const ast::StageDecl*>(trial_sym->decl);
  if (trial_sym && trial_sym->kind == SymKind::Kernel) trial_kernel = static_cast<const ast::KernelDecl*>(trial_sym->decl);
  Value space;
  space.tag = Value::Tag::Map;
  space.range = item.range;
  std::set<std::string> seen;
  for (const auto& e : item.block.entries) {
    std::string key = e.key.str();
    if (!seen.insert(key).second) {
      D().Report(DiagKind::DuplicateField, e.key.range, "search key `" + key + "` appears twice");
      continue;
    }
    schema::Param p;
    p.name = e.key.parts.back().name;
    p.type = {Kind::Distribution, Kind::Any};
    Value dist = EvalAs(*e.value, p, ctx);
    if (dist.is_error()) continue;
    // The type the searched values must have.
    schema::Type target{Kind::Any, Kind::Any};
    const schema::Param* target_param = nullptr;
    if (trial_kernel) {
      bool found = false;
      std::vector<std::string> names;
      for (const auto& kp : trial_kernel->params) {
        names.push_back(kp.name.name);
        if (e.key.parts.size() == 1 && kp.name.name == key) {
          found = true;
          bool is_int = kp.type.name.name == "i32" || kp.type.name.name == "i64";
          target = {is_int ? Kind::Int : Kind::Float, Kind::Any};
        }
      }
      if (!found) {
        D().Report(DiagKind::InvalidSearchKey, e.key.range,
                      "search key `" + key + "` is not a parameter of kernel `" + trial_kernel->name.name + "`" +
                          DidYouMean(key, names));
        continue;
      }
    } else if (trial_stage && trial_stage->stage_kind == ast::StageKind::Train) {
      const auto& ts = schema::Stage(schema::StageKind::Train);
      const std::string& head = e.key.parts[0].name;
      const schema::Field* f = FindField(ts, head);
      auto searchable = [](std::string_view n) {
        return n != "model" && n != "data" && n != "validate" && n != "resources" && n != "stop";
      };
      std::vector<std::string> names;
      for (const auto& tf : ts.fields) {
        if (!tf.block && searchable(tf.param.name)) names.emplace_back(tf.param.name);
      }
      if (f && !searchable(head)) {
        D().Report(DiagKind::InvalidSearchKey, e.key.parts[0].range,
                      "`" + head + "` cannot be searched; search hyperparameters such as `optimizer.lr`, "
                      "`batch_size` or `epochs`");
        continue;
      }
      if (!f || f->block) {
        D().Report(DiagKind::InvalidSearchKey, e.key.parts[0].range,
                      "search key `" + key + "` does not name a searchable field of train stage `" +
                          trial_stage->name.name + "`" + DidYouMean(head, names));
        continue;
      }
      if (e.key.parts.size() == 1) {
        target = f->param.type;
        target_param = &f->param;
      } else {
        // `optimizer.lr`: a parameter of the operator the trial uses for that field.
        std::string op_name;
        for (const auto& ti : trial_stage->items) {
          if (ti.kind == ast::ItemKind::Assign && ti.path.str() == head && ti.value &&
              (ti.value->kind == ast::ExprKind::Call || ti.value->kind == ast::ExprKind::Name)) {
            op_name = ti.value->text;
          }
        }
        if (op_name.empty() && f->param.def.tag == schema::Default::Call) op_name = std::string(f->param.def.text);
        const schema::Op* op = schema::FindOp(op_name);
        const std::string& sub = e.key.parts[1].name;
        if (op && e.key.parts.size() == 2) {
          for (const auto& q : op->params) {
            if (q.name == sub) target_param = &q;
          }
        }
        if (!target_param) {
          std::vector<std::string> pn;
          if (op) {
            for (const auto& q : op->params) pn.emplace_back(q.name);
          }
          D().Report(DiagKind::InvalidSearchKey, e.key.range,
                        "search key `" + key + "`: " +
                            (op ? "`" + op_name + "` (the trial's `" + head + "`) has no parameter `" + sub + "`" +
                                      DidYouMean(sub, pn)
                                : "the trial's `" + head + "` is not an operator call"));
          continue;
        }
        target = target_param->type;
      }
    } else {
      continue;  // the trial itself is reported by its field check
    }
    // Every value the distribution can produce must fit the target.
    auto bad = [&](const std::string& what) {
      D().Report(DiagKind::TypeMismatch, e.value->range,
                    "type mismatch: search key `" + key + "` is " + schema::TypeName(target) + ", but `" +
                        Src(*e.value) + "` produces " + what);
    };
    if (dist.s == "choice") {
      const Value* vals = dist.Find("values");
      bool ok = true;
      for (size_t k = 0; vals && k < vals->items.size() && ok; ++k) {
        const ast::Expr& item_src = k < e.value->args.size() ? *e.value->args[k].value : *e.value;
        Value c = Coerce(vals->items[k], target, target_param, item_src, ctx);
        ok = !c.is_error();
      }
    } else if (dist.s == "randint") {
      if (target.kind != Kind::Int && target.kind != Kind::Float) bad("integers");
    } else if (target.kind != Kind::Float) {
      bad(target.kind == Kind::Int ? "floats (use randint or choice for an int)" : "floats");
    } else if (target_param) {
      // Ranges: both bounds must be valid values of the target.
      for (const char* bound : {"low", "high"}) {
        if (const Value* b = dist.Find(bound)) {
          Value bv = *b;
          if (!bv.range.valid()) bv.range = e.value->range;
          if (!CheckRange(bv, *target_param, *e.value, ctx)) break;
        }
      }
    }
    if (const Value* lo = dist.Find("low")) {
      const Value* hi = dist.Find("high");
      double l = lo->tag == Value::Tag::Int ? static_cast<double>(lo->i) : lo->f;
      double h = hi->tag == Value::Tag::Int ? static_cast<double>(hi->i) : hi->f;
      if (!(l < h)) {
        D().Report(DiagKind::ValueOutOfRange, e.value->range,
                      "`" + dist.s + "` needs low < high, but it is " + ToSource(*lo) + " and " + ToSource(*hi));
      }
    }
    space.entries.emplace_back(key, std::move(dist));
  }
  // A kernel trial is called with every parameter drawn from the space.
  if (trial_kernel) {
    for (const auto& kp : trial_kernel->params) {
      bool covered = false;
      for (const auto& e : item.block.entries) covered |= e.key.str() == kp.name.name;
      if (!covered) {
        D().Report(DiagKind::InvalidSearchKey, item.block.range,
                      "kernel `" + trial_kernel->name.name + "` takes parameter `" + kp.name.name +
                          "`, but the search space gives it no values; add `" + kp.name.name + ": uniform(...)`");
      }
    }
  }
  return space;
}

void Checker::CheckStageSemantics(CheckedStage& out) {
  const ast::StageDecl& decl = *out.decl;
  auto field = [&](std::string_view name) -> const Value* {
    for (const auto& [k, v] : out.fields) {
      if (k == name && !v.is_error()) return &v;
    }
    return nullptr;
  };
  auto item_range = [&](std::string_view name) {
    for (const auto& i : decl.items) {
      if (i.path.str() == name) return i.kind == ast::ItemKind::Block ? i.block.range : i.value->range;
    }
    return decl.name.range;
  };
  switch (decl.stage_kind) {
    case ast::StageKind::Data: {
      if (const Value* split = field("split")) {
        double sum = 0;
        for (const auto& [name, v] : split->entries) {
          sum += v.f;
          if (!(v.f > 0 && v.f <= 1)) {
            D().Report(DiagKind::ValueOutOfRange, v.range,
                          "split `" + name + "` must be a fraction in (0, 1], but it is " + ToSource(v));
          }
          if (name == "all") {
            D().Report(DiagKind::DuplicateName, v.range, "`all` is the name of the whole dataset; pick another split name");
          }
        }
        if (sum > 1.0 + 1e-9) {
          D().Report(DiagKind::ValueOutOfRange, item_range("split"),
                        "split fractions add up to " + ToSource(Value::Float(sum)) +
                            ", more than 1");
        }
      }
      break;
    }
    case ast::StageKind::Tune: {
      const Value* trial = field("trial");
      const Value* objective = field("objective");
      if (trial && objective) {
        const Value* metric = objective->Find("metric");
        std::vector<std::string> known;
        if (trial->tag == Value::Tag::Kernel) {
          known = {"result"};
        } else {
          for (auto m : schema::TrainMetrics()) known.emplace_back(m);
        }
        if (metric && std::find(known.begin(), known.end(), metric->s) == known.end()) {
          std::string list;
          for (size_t k = 0; k < known.size(); ++k) list += (k ? ", `" : "`") + known[k] + "`";
          D().Report(DiagKind::UnknownOutput, metric->range,
                        "the trial reports no metric `" + metric->s + "`" + DidYouMean(metric->s, known) +
                            " (metrics: " + list + ")");
        } else if (metric && metric->s.starts_with("val.") && trial->tag == Value::Tag::Ref) {
          const ast::StageDecl* ts = stages_by_name_.count(trial->s) ? stages_by_name_.at(trial->s) : nullptr;
          bool has_val = false;
          if (ts) {
            for (const auto& i : ts->items) has_val |= i.path.str() == "validate";
          }
          if (ts && !has_val) {
            D().Report(DiagKind::UnknownOutput, metric->range,
                          "trial `" + trial->s + "` has no `validate` data, so it reports no `" + metric->s +
                              "`; add `validate = ...` to it or use a `train.` metric");
          }
        }
      }
      for (const auto& i : decl.items) {
        if (i.kind == ast::ItemKind::Block && i.path.str() == "search" && i.block.entries.empty()) {
          D().Report(DiagKind::MissingField, i.block.range, "the `search` block is empty; add at least one key");
        }
      }
      break;
    }
    case ast::StageKind::Serve: {
      if (const Value* route = field("route"); route && (route->s.empty() || route->s[0] != '/')) {
        D().Report(DiagKind::ValueOutOfRange, route->range.valid() ? route->range : item_range("route"),
                      "`route` must start with `/`, but it is " + ToSource(*route));
      }
      if (const Value* as = field("autoscale")) {
        const Value* lo = as->Find("min");
        const Value* hi = as->Find("max");
        if (lo && hi && lo->i > hi->i) {
          D().Report(DiagKind::ValueOutOfRange, item_range("autoscale"),
                        "autoscale `min` (" + ToSource(*lo) + ") is larger than `max` (" + ToSource(*hi) + ")");
        } else if (const Value* replicas = field("replicas"); replicas && lo && hi && (replicas->i < lo->i || replicas->i > hi->i)) {
          D().Report(DiagKind::ValueOutOfRange, item_range("replicas"),
                        "`replicas` (" + ToSource(*replicas) + ") is the starting count and must lie within autoscale [" +
                            ToSource(*lo) + ", " + ToSource(*hi) + "]; raise `max` or lower `replicas`");
        }
      }
      break;
    }
    case ast::StageKind::Train:
    case ast::StageKind::Rl:
      break;
  }
  // Kernels and envs the stage needs, with their callees.
  std::set<std::string> kernels, envs;
  std::function<void(const Value&)> collect = [&](const Value& v) {
    if (v.tag == Value::Tag::Kernel) {
      auto it = kernel_closure_.find(v.s);
      if (it != kernel_closure_.end()) kernels.insert(it->second.begin(), it->second.end());
    }
    if (v.tag == Value::Tag::Env) {
      envs.insert(v.s);
      auto it = kernel_closure_.find(v.s);
      if (it != kernel_closure_.end()) kernels.insert(it->second.begin(), it->second.end());
    }
    for (const auto& i : v.items) collect(i);
    for (const auto& [k, e] : v.entries) collect(e);
  };
  for (const auto& [k, v] : out.fields) collect(v);
  out.kernels.assign(kernels.begin(), kernels.end());
  out.envs.assign(envs.begin(), envs.end());
}

void Checker::ComputeRoles(CheckedStage& st) {
  auto int_field = [&](std::string_view name, int64_t def) -> int64_t {
    for (const auto& [k, v] : st.fields) {
      if (k == name && v.tag == Value::Tag::Int) return v.i;
    }
    return def;
  };
  // Tune stages come after the stages they try (see Checker::Run).
  ResourceAmounts small;  // controllers and ingresses
  small.cpu_milli = 100;
  switch (st.kind) {
    case schema::StageKind::Data:
      st.roles.push_back({"task", static_cast<uint32_t>(int_field("shards", 1)), st.resources, false, 1, false, 0});
      break;
    case schema::StageKind::Train: {
      auto n = static_cast<uint32_t>(int_field("workers", 1));
      st.roles.push_back({"rank", n, st.resources, n > 1, n, false, 0});
      break;
    }
    case schema::StageKind::Tune: {
      st.roles.push_back({"controller", 1, small, false, 1, true, 0});
      auto parallel = static_cast<uint32_t>(int_field("parallel", 1));
      ResourceAmounts trial_res = st.resources;
      uint32_t ranks = 1;
      for (const auto& [k, v] : st.fields) {
        if (k != "trial" || v.tag != Value::Tag::Ref) continue;
        // A train trial runs with the train stage's resources and workers.
        for (const auto& other : out_->stages) {
          if (other.decl->name.name != v.s) continue;
          trial_res = other.resources;
          for (const auto& r : other.roles) ranks = r.count;
        }
      }
      // Each trial is its own gang of the train stage's workers.
      st.roles.push_back({"trial", parallel * ranks, trial_res, ranks > 1, ranks, false, 0});
      break;
    }
    case schema::StageKind::Serve: {
      auto replicas = static_cast<uint32_t>(int_field("replicas", 1));
      uint32_t max = replicas;
      for (const auto& [k, v] : st.fields) {
        if (k == "autoscale") {
          if (const Value* hi = v.Find("max"); hi && hi->i > static_cast<int64_t>(max)) max = static_cast<uint32_t>(hi->i);
        }
      }
      st.roles.push_back({"ingress", 1, small, false, 1, true, 0});
      st.roles.push_back({"replica", replicas, st.resources, false, 1, true, max});
      break;
    }
    case schema::StageKind::Rl: {
      st.roles.push_back({"learner", 1, st.resources, false, 1, true, 0});
      auto n = static_cast<uint32_t>(int_field("rollout_workers", 1));
      st.roles.push_back({"rollout", n, st.resources, false, 1, true, 0});
      break;
    }
  }
}

}  // namespace mlp
