// Evaluation of configuration expressions: params substituted, operators
// checked against the schema table, values coerced to the type a field or
// argument expects.
#include <algorithm>
#include <cmath>

#include "compiler/sema/checker.h"
#include "compiler/sema/defaults.h"
#include "compiler/sema/units.h"

namespace mlp {

using schema::Kind;

std::string Checker::Src(const ast::Expr& e) const {
  if (!e.range.valid()) return "<error>";
  std::string s(sm_.Slice(e.range));
  for (auto& c : s) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  if (s.size() > 48) s = s.substr(0, 45) + "...";
  return s;
}

std::string Checker::What(const EvalCtx& ctx) const {
  if (ctx.stage && !ctx.field.empty()) {
    const auto& d = *ctx.stage->decl;
    return "field `" + std::string(ctx.field) + "` of " + ast::Spelling(d.stage_kind) + " stage `" + d.name.name + "`";
  }
  return ctx.what;
}

std::string Checker::StageOutputsList(const std::string& stage) const {
  auto it = stages_by_name_.find(stage);
  if (it == stages_by_name_.end()) return "";
  auto outs = StageOutputs(*it->second);
  std::string s;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (k) s += k + 1 == outs.size() ? " and " : ", ";
    s += "`" + outs[k] + "`";
  }
  return s;
}


// The text a param value takes inside `${...}`.
static std::string InterpolationText(const Value& v) {
  if (v.tag == Value::Tag::String || v.tag == Value::Tag::Path) return v.s;
  return ToSource(v);
}

Value Checker::Eval(const ast::Expr& e, schema::Type hint, EvalCtx& ctx) {
  switch (e.kind) {
    case ast::ExprKind::Int: return Value::Int(e.int_value, e.range);
    case ast::ExprKind::Float: return Value::Float(e.float_value, e.range);
    case ast::ExprKind::Bool: {
      Value v;
      v.tag = Value::Tag::Bool;
      v.b = e.bool_value;
      v.range = e.range;
      return v;
    }
    case ast::ExprKind::Quantity: {
      auto unit = FindUnit(e.text);
      if (!unit) return Value::Error();  // reported by the parser
      double scaled = std::round(e.float_value * unit->scale);
      if (scaled > 9.2e18) {
        D().Report(DiagKind::ValueOutOfRange, e.range, "`" + Src(e) + "` is too large");
        return Value::Error();
      }
      Value v;
      v.tag = unit->kind == UnitKind::Duration ? Value::Tag::Duration : Value::Tag::Size;
      v.i = static_cast<int64_t>(scaled);
      v.range = e.range;
      return v;
    }
    case ast::ExprKind::String: {
      Value v;
      v.tag = Value::Tag::String;
      v.range = e.range;
      for (const auto& part : e.parts) {
        if (!part.is_interp) {
          v.s += part.text;
          continue;
        }
        const Symbol* s = Lookup(ctx.module, part.text);
        if (!s || s->kind != SymKind::Param) {
          std::vector<std::string> params;
          for (const auto& [n, sym] : scopes_[ctx.module].names) {
            if (sym.kind == SymKind::Param) params.push_back(n);
          }
          std::sort(params.begin(), params.end());
          D().Report(DiagKind::UnknownName, part.range,
                        s ? "`${" + part.text + "}` names " + AKind(s->kind) + "; only params can be interpolated"
                          : "unknown param `" + part.text + "` in string interpolation" + DidYouMean(part.text, params));
          return Value::Error();
        }
        Used().insert(s->decl);
        const Value& pv = ParamValue(*s);
        if (pv.is_error()) return Value::Error();
        v.s += InterpolationText(pv);
      }
      return v;
    }
    case ast::ExprKind::Name:
      if (e.text == "<error>") return Value::Error();
      return EvalName(e, e.text, e.name_range.valid() ? e.name_range : e.range, ctx.module, hint, ctx);
    case ast::ExprKind::Field: {
      const ast::Expr& base = *e.operands[0];
      if (base.kind == ast::ExprKind::Name) {
        // `alias.name`: a declaration of an imported module.
        auto a = scopes_[ctx.module].aliases.find(base.text);
        if (a != scopes_[ctx.module].aliases.end() && !Lookup(ctx.module, base.text)) {
          return EvalName(e, e.text, e.name_range, a->second, hint, ctx);
        }
        const Symbol* s = Lookup(ctx.module, base.text);
        if (s && s->kind == SymKind::Stage) {
          Value v = EvalName(base, base.text, base.range, ctx.module, {Kind::Any, Kind::Any}, ctx);
          if (v.is_error()) return v;
          if (!HasOutput(*static_cast<const ast::StageDecl*>(s->decl), e.text)) {
            const auto* sd = static_cast<const ast::StageDecl*>(s->decl);
            auto outs = StageOutputs(*sd);
            D().Report(DiagKind::UnknownOutput, e.name_range,
                          std::string(ast::Spelling(sd->stage_kind)) + " stage `" + base.text +
                              "` has no output `" + e.text + "`" + DidYouMean(e.text, outs) + " (its outputs: " +
                              StageOutputsList(base.text) + ")");
            return Value::Error();
          }
          v.field = e.text;
          v.kind = Kind::Any;
          const auto* sd = static_cast<const ast::StageDecl*>(s->decl);
          for (const auto& o : schema::Stage(static_cast<schema::StageKind>(sd->stage_kind)).outputs) {
            if (o.name == e.text) v.kind = o.kind;
          }
          if (v.kind == Kind::Any) v.kind = Kind::Dataset;  // a data stage's split
          v.range = e.range;
          return v;
        }
        if (s) {
          D().Report(DiagKind::UnknownOutput, e.name_range,
                        "`" + base.text + "` is " + AKind(s->kind) + ", which has no outputs; only stages do");
          return Value::Error();
        }
        return EvalName(base, base.text, base.range, ctx.module, hint, ctx);  // reports the unknown name
      }
      D().Report(DiagKind::UnknownOutput, e.name_range,
                    "`" + Src(e) + "` does not name a stage output; write `stage.output`");
      return Value::Error();
    }
    case ast::ExprKind::Call: {
      const Symbol* s = Lookup(ctx.module, e.text);
      if (size_t dot = e.text.find('.'); dot != std::string::npos) {  // `lib.name(...)`
        auto a = scopes_[ctx.module].aliases.find(std::string_view(e.text).substr(0, dot));
        if (a != scopes_[ctx.module].aliases.end()) s = Lookup(a->second, std::string_view(e.text).substr(dot + 1));
      }
      if (s && s->kind == SymKind::Kernel) {
        D().Report(DiagKind::TypeMismatch, e.name_range,
                      "kernel `" + e.text + "` cannot be called in a configuration value; pass it by name, "
                      "e.g. `map(" + e.text + ")`");
        return Value::Error();
      }
      if (s && s->kind != SymKind::Param) {
        D().Report(DiagKind::TypeMismatch, e.range,
                      "`" + e.text + "` is " + AKind(s->kind) + ", not an operator; refer to it without `(...)`: `" +
                          e.text + "`");
        return Value::Error();
      }
      const schema::Op* op = schema::FindOp(e.text);
      if (!op) {
        std::vector<std::string> names;
        for (const auto& o : schema::Operators()) {
          if (hint.kind == Kind::Any || o.result == hint.kind) names.emplace_back(o.name);
        }
        std::string dym = DidYouMean(e.text, names);
        if (dym.empty()) {
          names.clear();
          for (const auto& o : schema::Operators()) names.emplace_back(o.name);
          dym = DidYouMean(e.text, names);
        }
        D().Report(DiagKind::UnknownOperator, e.name_range, "unknown operator `" + e.text + "`" + dym);
        return Value::Error();
      }
      return EvalCall(e, *op, ctx);
    }
    case ast::ExprKind::List: {
      Value v;
      v.tag = Value::Tag::List;
      v.range = e.range;
      for (const auto& item : e.operands) {
        Value iv = Eval(*item, {hint.elem, Kind::Any}, ctx);
        if (iv.is_error()) return iv;
        v.items.push_back(std::move(iv));
      }
      return v;
    }
    case ast::ExprKind::Map: {
      Value v;
      v.tag = Value::Tag::Map;
      v.range = e.range;
      std::map<std::string_view, Range> keys;
      for (const auto& entry : e.entries) {
        if (auto [it, inserted] = keys.emplace(entry.key.name, entry.key.range); !inserted) {
          D().Report(DiagKind::DuplicateField, entry.key.range, "key `" + entry.key.name + "` appears twice");
          D().AddNote(it->second, "first given here");
          return Value::Error();
        }
        Value iv = Eval(*entry.value, {Kind::Any, Kind::Any}, ctx);
        if (iv.is_error()) return iv;
        v.entries.emplace_back(entry.key.name, std::move(iv));
      }
      return v;
    }
    case ast::ExprKind::Unary: {
      if (e.un_op == ast::UnOp::Neg) {
        Value v = Eval(*e.operands[0], hint, ctx);
        if (v.tag == Value::Tag::Int) return Value::Int(-v.i, e.range);
        if (v.tag == Value::Tag::Float) return Value::Float(-v.f, e.range);
        if (v.is_error()) return v;
        D().Report(DiagKind::TypeMismatch, e.range,
                      "`-` needs a number, but `" + Src(*e.operands[0]) + "` is " + DescribeType(v));
        return Value::Error();
      }
      D().Report(DiagKind::TypeMismatch, e.range,
                    "`not` is only allowed in kernels and `stop when` conditions");
      return Value::Error();
    }
    case ast::ExprKind::Binary: {
      if (e.bin_op == ast::BinOp::Pipe) {
        Value out;
        out.tag = Value::Tag::List;
        out.kind = Kind::Transform;
        out.range = e.range;
        for (const auto& side : e.operands) {
          Value v = Eval(*side, {Kind::Transform, Kind::Any}, ctx);
          if (v.is_error()) return v;
          if (v.tag == Value::Tag::List && v.kind == Kind::Transform) {
            for (auto& i : v.items) out.items.push_back(std::move(i));
          } else {
            v = Coerce(std::move(v), {Kind::Transform, Kind::Any}, nullptr, *side, ctx);
            if (v.is_error()) return v;
            out.items.push_back(std::move(v));
          }
        }
        return out;
      }
      bool arith = e.bin_op == ast::BinOp::Add || e.bin_op == ast::BinOp::Sub || e.bin_op == ast::BinOp::Mul ||
                   e.bin_op == ast::BinOp::Div || e.bin_op == ast::BinOp::Mod;
      if (!arith) {
        D().Report(DiagKind::TypeMismatch, e.range,
                      std::string("`") + ast::Spelling(e.bin_op) +
                          "` is only allowed in kernels and `stop when` conditions");
        return Value::Error();
      }
      Value a = Eval(*e.operands[0], hint, ctx);
      Value b = Eval(*e.operands[1], hint, ctx);
      if (a.is_error() || b.is_error()) return Value::Error();
      auto numeric = [](const Value& v) { return v.tag == Value::Tag::Int || v.tag == Value::Tag::Float; };
      if (!numeric(a) || !numeric(b)) {
        const ast::Expr& bad = numeric(a) ? *e.operands[1] : *e.operands[0];
        D().Report(DiagKind::TypeMismatch, bad.range,
                      std::string("`") + ast::Spelling(e.bin_op) + "` needs numbers, but `" + Src(bad) + "` is " +
                          DescribeType(numeric(a) ? b : a));
        return Value::Error();
      }
      if ((e.bin_op == ast::BinOp::Div || e.bin_op == ast::BinOp::Mod) &&
          ((b.tag == Value::Tag::Int && b.i == 0) || (b.tag == Value::Tag::Float && b.f == 0))) {
        D().Report(DiagKind::ValueOutOfRange, e.operands[1]->range, "division by zero");
        return Value::Error();
      }
      if (a.tag == Value::Tag::Int && b.tag == Value::Tag::Int) {
        int64_t r = 0;
        bool overflow = false;
        switch (e.bin_op) {
          case ast::BinOp::Add: overflow = __builtin_add_overflow(a.i, b.i, &r); break;
          case ast::BinOp::Sub: overflow = __builtin_sub_overflow(a.i, b.i, &r); break;
          case ast::BinOp::Mul: overflow = __builtin_mul_overflow(a.i, b.i, &r); break;
          case ast::BinOp::Div: overflow = a.i == INT64_MIN && b.i == -1; if (!overflow) r = a.i / b.i; break;
          default: overflow = a.i == INT64_MIN && b.i == -1; if (!overflow) r = a.i % b.i; break;
        }
        if (overflow) {
          D().Report(DiagKind::ValueOutOfRange, e.range, "integer overflow in `" + Src(e) + "`");
          return Value::Error();
        }
        return Value::Int(r, e.range);
      }
      double x = a.tag == Value::Tag::Int ? static_cast<double>(a.i) : a.f;
      double y = b.tag == Value::Tag::Int ? static_cast<double>(b.i) : b.f;
      double r = 0;
      switch (e.bin_op) {
        case ast::BinOp::Add: r = x + y; break;
        case ast::BinOp::Sub: r = x - y; break;
        case ast::BinOp::Mul: r = x * y; break;
        case ast::BinOp::Div: r = x / y; break;
        default: r = std::fmod(x, y); break;
      }
      return Value::Float(r, e.range);
    }
    case ast::ExprKind::If:
      D().Report(DiagKind::TypeMismatch, e.range, "`if` expressions are only allowed in kernels");
      return Value::Error();
    case ast::ExprKind::Index:
      D().Report(DiagKind::TypeMismatch, e.range, "indexing is only allowed in kernels");
      return Value::Error();
  }
  return Value::Error();
}

Value Checker::EvalName(const ast::Expr& e, std::string_view name, Range range, size_t module,
                        schema::Type hint, EvalCtx& ctx) {
  if (const Symbol* s = Lookup(module, name)) {
    Used().insert(s->decl);
    Value v;
    v.range = e.range;
    switch (s->kind) {
      case SymKind::Param: {
        Value pv = ParamValue(*s);
        pv.range = e.range;
        return pv;
      }
      case SymKind::Stage: {
        const auto* sd = static_cast<const ast::StageDecl*>(s->decl);
        v.tag = Value::Tag::Ref;
        v.s = std::string(name);
        v.kind = sd->stage_kind == ast::StageKind::Train && hint.kind == Kind::TrainStage
                     ? Kind::TrainStage
                     : Kind::Any;  // resolved to the default output by Coerce
        return v;
      }
      case SymKind::Kernel:
        v.tag = Value::Tag::Kernel;
        v.s = plan_names_.at(s->decl);
        return v;
      case SymKind::Env:
        v.tag = Value::Tag::Env;
        v.kind = Kind::Env;
        v.s = plan_names_.at(s->decl);
        return v;
      case SymKind::Resources:
        v.tag = Value::Tag::Symbol;
        v.kind = Kind::Resources;
        v.s = std::string(name);
        return v;
      case SymKind::Cluster:
        D().Report(DiagKind::TypeMismatch, range,
                      "`" + std::string(name) + "` is a cluster; it cannot be used as a value");
        return Value::Error();
    }
  }
  // A bare operator name (`cross_entropy`, `constant`) or an enum choice.
  if (const schema::Op* op = schema::FindOp(name)) {
    Value v;
    v.tag = Value::Tag::Symbol;
    v.kind = op->result;
    v.s = std::string(name);
    v.range = e.range;
    return v;
  }
  if (hint.kind == Kind::Enum) {
    Value v;
    v.tag = Value::Tag::Symbol;
    v.kind = Kind::Enum;
    v.s = std::string(name);
    v.range = e.range;
    return v;
  }
  std::vector<std::string> names = VisibleNames(module);
  for (const auto& o : schema::Operators()) {
    if (hint.kind != Kind::Any && o.result == hint.kind) names.emplace_back(o.name);
  }
  std::string what = module == ctx.module ? "" : " in the imported module";
  D().Report(DiagKind::UnknownName, range,
                "unknown name `" + std::string(name) + "`" + what + DidYouMean(name, names));
  return Value::Error();
}

bool Checker::CheckRange(const Value& v, const schema::Param& p, const ast::Expr& src, const EvalCtx& ctx) {
  if (v.tag == Value::Tag::List) {
    for (const auto& item : v.items) {
      if (!CheckRange(item, p, src, ctx)) return false;
    }
    return true;
  }
  double x;
  if (v.tag == Value::Tag::Int) {
    x = static_cast<double>(v.i);
  } else if (v.tag == Value::Tag::Float) {
    x = v.f;
  } else {
    return true;
  }
  bool below = p.min_exclusive ? !(x > p.min) : !(x >= p.min);
  bool above = !(x <= p.max);
  if (!below && !above) return true;
  auto num = [&](double d) {
    Value t = p.type.kind == Kind::Int || p.type.elem == Kind::Int ? Value::Int(static_cast<int64_t>(d), {})
                                                                    : Value::Float(d, {});
    return ToSource(t);
  };
  std::string range;
  if (std::isinf(p.max)) {
    range = std::string(p.min_exclusive ? "greater than " : "at least ") + num(p.min);
  } else if (std::isinf(p.min)) {
    range = "at most " + num(p.max);
  } else {
    range = std::string(p.min_exclusive ? "in (" : "in [") + num(p.min) + ", " + num(p.max) + "]";
  }
  D().Report(DiagKind::ValueOutOfRange, v.range.valid() ? v.range : src.range,
                "`" + std::string(p.name) + "` must be " + range + ", but it is " + ToSource(v));
  return false;
}

Value Checker::Coerce(Value v, schema::Type want, const schema::Param* param, const ast::Expr& src,
                      const EvalCtx& ctx) {
  if (v.is_error() || want.kind == Kind::Any) return v;
  Range r = v.range.valid() ? v.range : src.range;
  auto mismatch = [&](const std::string& expected) {
    std::string what = !param        ? What(ctx)
                       : ctx.op.empty() ? "`" + std::string(param->name) + "`"
                                        : "argument `" + std::string(param->name) + "` of `" + std::string(ctx.op) + "`";
    std::string got = DescribeType(v);
    if (v.tag == Value::Tag::Ref && v.field.empty()) {
      const auto* sd = stages_by_name_.count(v.s) ? stages_by_name_.at(v.s) : nullptr;
      got = sd ? std::string(ast::Spelling(sd->stage_kind)) + " stage" : "stage";
    }
    std::string article = std::string("aeiou").find(got[0]) != std::string::npos ? "an " : "a ";
    if (v.tag == Value::Tag::Int || v.tag == Value::Tag::Float || v.tag == Value::Tag::Bool ||
        v.tag == Value::Tag::String || v.tag == Value::Tag::Path || v.tag == Value::Tag::List) {
      article = "";
      got = "`" + got + "`";
    }
    D().Report(DiagKind::TypeMismatch, r,
                  "type mismatch: " + what + " expects " + expected + ", but `" + Src(src) + "` is " + article + got);
    if (v.tag == Value::Tag::Ref && v.field.empty() && stages_by_name_.count(v.s)) {
      // Point at an output of the right kind, if the stage has one.
      const auto* sd = stages_by_name_.find(v.s)->second;
      std::string match;
      for (const auto& o : schema::Stage(static_cast<schema::StageKind>(sd->stage_kind)).outputs) {
        if (o.kind == want.kind && match.empty()) match = std::string(o.name);
      }
      if (match.empty() && sd->stage_kind == ast::StageKind::Data && want.kind == Kind::Dataset) {
        auto outs = StageOutputs(*sd);
        if (outs.size() > 1) match = outs[1];
      }
      if (!match.empty()) {
        D().AddNote(sd->name.range, "stage `" + v.s + "` produces " + StageOutputsList(v.s) + "; did you mean `" +
                                           v.s + "." + match + "`?");
      }
    }
    return Value::Error();
  };
  auto want_name = [&]() -> std::string {
    std::string n = schema::TypeName(want);
    if (want.kind == Kind::Int || want.kind == Kind::Float || want.kind == Kind::Bool || want.kind == Kind::String ||
        want.kind == Kind::Path || want.kind == Kind::Duration || want.kind == Kind::Size || want.kind == Kind::List) {
      return "`" + n + "`";
    }
    return (std::string("aeiou").find(n[0]) != std::string::npos ? "an " : "a ") + n;
  };

  // A stage used without `.output` means its default output.
  if (v.tag == Value::Tag::Ref && v.field.empty() && want.kind != Kind::TrainStage) {
    const auto* sd = stages_by_name_.count(v.s) ? stages_by_name_.at(v.s) : nullptr;
    if (sd) {
      const auto& schema = schema::Stage(static_cast<schema::StageKind>(sd->stage_kind));
      for (const auto& o : schema.outputs) {
        if (o.name == schema.default_output) {
          if (o.kind == want.kind || (want.kind == Kind::Source && o.kind == Kind::Dataset)) {
            v.field = std::string(o.name);
            v.kind = o.kind;
          }
        }
      }
    }
  }
  // A bare operator name means the operator with its defaults.
  if (v.tag == Value::Tag::Symbol && v.kind != Kind::Enum && v.kind != Kind::Resources &&
      v.kind == want.kind) {
    const schema::Op* op = schema::FindOp(v.s);
    bool needs_args = false;
    for (const auto& p : op->params) needs_args |= p.required;
    if (needs_args) {
      std::string required;
      for (const auto& p : op->params) {
        if (p.required) required += (required.empty() ? "`" : ", `") + std::string(p.name) + "`";
      }
      D().Report(DiagKind::MissingArgument, r,
                    "`" + v.s + "` needs arguments; write `" + v.s + "(...)` with " + required);
      return Value::Error();
    }
    Value call = CallWithDefaults(*op);
    call.range = v.range;
    return call;
  }

  switch (want.kind) {
    case Kind::Int:
      if (v.tag == Value::Tag::Int) break;
      if (v.tag == Value::Tag::Float && std::nearbyint(v.f) == v.f) {
        return mismatch(want_name() + " (write it without a fraction)");
      }
      return mismatch(want_name());
    case Kind::Float:
      if (v.tag == Value::Tag::Int) {
        v.tag = Value::Tag::Float;
        v.f = static_cast<double>(v.i);
        break;
      }
      if (v.tag != Value::Tag::Float) return mismatch(want_name());
      break;
    case Kind::Bool:
      if (v.tag != Value::Tag::Bool) return mismatch(want_name());
      break;
    case Kind::String:
      if (v.tag == Value::Tag::Path) v.tag = Value::Tag::String;
      if (v.tag != Value::Tag::String) return mismatch(want_name());
      break;
    case Kind::Path:
      if (v.tag == Value::Tag::String) v.tag = Value::Tag::Path;
      if (v.tag != Value::Tag::Path) return mismatch(want_name());
      break;
    case Kind::Duration:
      if (v.tag != Value::Tag::Duration) {
        if (v.tag == Value::Tag::Int || v.tag == Value::Tag::Float) {
          return mismatch(want_name() + " (add a unit, e.g. `" + Src(src) + "s`)");
        }
        return mismatch(want_name());
      }
      break;
    case Kind::Size:
      if (v.tag != Value::Tag::Size) {
        if (v.tag == Value::Tag::Int || v.tag == Value::Tag::Float) {
          return mismatch(want_name() + " (add a unit, e.g. `" + Src(src) + "GiB`)");
        }
        return mismatch(want_name());
      }
      break;
    case Kind::List: {
      if (v.tag != Value::Tag::List || v.kind == Kind::Transform) return mismatch(want_name());
      for (size_t k = 0; k < v.items.size(); ++k) {
        const ast::Expr& item_src = src.kind == ast::ExprKind::List && k < src.operands.size() ? *src.operands[k] : src;
        v.items[k] = Coerce(std::move(v.items[k]), {want.elem, Kind::Any}, param, item_src, ctx);
        if (v.items[k].is_error()) return Value::Error();
      }
      return v;  // each item was range-checked
    }
    case Kind::Map:
      if (v.tag != Value::Tag::Map) return mismatch(want_name());
      break;
    case Kind::Enum: {
      if (v.tag != Value::Tag::Symbol && v.tag != Value::Tag::String) return mismatch(want_name());
      std::vector<std::string> choices;
      bool ok = false;
      if (param) {
        for (auto c : param->choices) {
          choices.emplace_back(c);
          ok |= c == v.s;
        }
      }
      if (!ok) {
        std::string list;
        for (size_t k = 0; k < choices.size(); ++k) {
          list += (k == 0 ? "`" : k + 1 == choices.size() ? " or `" : ", `") + choices[k] + "`";
        }
        D().Report(DiagKind::ValueOutOfRange, r,
                      "`" + std::string(param ? param->name : "value") + "` must be one of " + list + ", but it is `" +
                          v.s + "`" + DidYouMean(v.s, choices));
        return Value::Error();
      }
      v.tag = Value::Tag::Symbol;
      v.kind = Kind::Enum;
      break;
    }
    case Kind::Cache:
      if (v.tag != Value::Tag::Bool && v.tag != Value::Tag::String) {
        return mismatch("`true`, `false` or a version string");
      }
      break;
    case Kind::Kernel:
      if (v.tag != Value::Tag::Kernel) return mismatch("a kernel");
      break;
    case Kind::Env:
      if (!(v.tag == Value::Tag::Env || (v.tag == Value::Tag::Call && v.kind == Kind::Env))) return mismatch("an env");
      break;
    case Kind::TrainStage:
      if (v.tag == Value::Tag::Kernel) break;
      if (!(v.tag == Value::Tag::Ref && v.field.empty() && v.kind == Kind::TrainStage)) {
        return mismatch("a train stage or a kernel");
      }
      break;
    case Kind::Resources:
      if (!(v.tag == Value::Tag::Symbol && v.kind == Kind::Resources)) return mismatch("a resources profile");
      break;
    case Kind::Transform:
      if (v.tag == Value::Tag::List && v.kind == Kind::Transform) break;
      if (!(v.tag == Value::Tag::Call && v.kind == Kind::Transform)) return mismatch("a transform");
      break;
    case Kind::Source:
      if (v.tag == Value::Tag::Ref && v.kind == Kind::Dataset) break;
      if (!(v.tag == Value::Tag::Call && v.kind == Kind::Source)) {
        return mismatch("a source such as `idx(...)` or another data stage's output");
      }
      break;
    case Kind::Dataset:
      if (!(v.tag == Value::Tag::Ref && v.kind == Kind::Dataset)) {
        return mismatch("a dataset, i.e. a data stage's output such as `stage.train`");
      }
      break;
    case Kind::Model:
      if (!((v.tag == Value::Tag::Call || v.tag == Value::Tag::Ref) && v.kind == Kind::Model)) {
        return mismatch("a model");
      }
      break;
    default:  // operator-produced kinds
      if (!(v.tag == Value::Tag::Call && v.kind == want.kind)) return mismatch(want_name());
      break;
  }
  if (param && !CheckRange(v, *param, src, ctx)) return Value::Error();
  return v;
}

Value Checker::EvalAs(const ast::Expr& e, const schema::Param& p, EvalCtx& ctx) {
  if (p.type.kind == Kind::Predicate) {
    std::vector<std::string> metrics;
    return EvalPredicate(e, ctx, metrics);
  }
  Value v = Eval(e, p.type, ctx);
  return Coerce(std::move(v), p.type, &p, e, ctx);
}

Value Checker::EvalCall(const ast::Expr& e, const schema::Op& op, EvalCtx& outer) {
  EvalCtx ctx = outer;  // arguments are described as "argument `x` of `op`"
  ctx.op = op.name;
  Value call;
  call.tag = Value::Tag::Call;
  call.kind = op.result;
  call.s = std::string(op.name);
  call.range = e.range;
  call.entries.reserve(op.params.size());
  bool ok = true;
  if (op.variadic) {
    Value list;
    list.tag = Value::Tag::List;
    list.range = e.range;
    for (const auto& a : e.args) {
      if (a.name) {
        D().Report(DiagKind::UnknownArgument, a.name->range,
                      "`" + std::string(op.name) + "` takes only positional values; remove `" + a.name->name + ":`");
        ok = false;
        continue;
      }
      Value v = Eval(*a.value, {Kind::Any, Kind::Any}, ctx);
      if (v.is_error()) {
        ok = false;
        continue;
      }
      if (!list.items.empty() && DescribeType(list.items[0]) != DescribeType(v) &&
          !((list.items[0].tag == Value::Tag::Int || list.items[0].tag == Value::Tag::Float) &&
            (v.tag == Value::Tag::Int || v.tag == Value::Tag::Float))) {
        D().Report(DiagKind::TypeMismatch, a.value->range,
                      "type mismatch: the values of `" + std::string(op.name) + "` must have one type, but `" +
                          Src(*a.value) + "` is " + DescribeType(v) + " and the first is " +
                          DescribeType(list.items[0]));
        ok = false;
        continue;
      }
      list.items.push_back(std::move(v));
    }
    if (ok && list.items.empty()) {
      D().Report(DiagKind::MissingArgument, e.range, "`" + std::string(op.name) + "` needs at least one value");
      ok = false;
    }
    if (!ok) return Value::Error();
    call.entries.emplace_back(std::string(op.params[0].name), std::move(list));
    return call;
  }
  std::vector<const ast::Expr*> given(op.params.size(), nullptr);
  std::vector<Range> given_at(op.params.size());
  size_t positional = 0;
  bool named_seen = false;
  std::vector<std::string> names;
  for (const auto& p : op.params) names.emplace_back(p.name);
  for (const auto& a : e.args) {
    size_t idx;
    if (a.name) {
      named_seen = true;
      auto it = std::find(names.begin(), names.end(), a.name->name);
      if (it == names.end()) {
        std::string list;
        for (size_t k = 0; k < names.size(); ++k) list += (k ? ", `" : "`") + names[k] + "`";
        D().Report(DiagKind::UnknownArgument, a.name->range,
                      "`" + std::string(op.name) + "` has no parameter `" + a.name->name + "`" +
                          DidYouMean(a.name->name, names) +
                          (names.empty() ? " (it takes none)" : " (parameters: " + list + ")"));
        ok = false;
        continue;
      }
      idx = static_cast<size_t>(it - names.begin());
    } else {
      if (named_seen) {
        D().Report(DiagKind::SyntaxError, a.value->range,
                      "a positional argument cannot follow a named one; name it");
        ok = false;
        continue;
      }
      idx = positional++;
      if (idx >= op.params.size()) {
        D().Report(DiagKind::TooManyArguments, a.value->range,
                      "`" + std::string(op.name) + "` takes " + std::to_string(op.params.size()) + " argument" +
                          (op.params.size() == 1 ? "" : "s") + ", but " + std::to_string(e.args.size()) +
                          (e.args.size() == 1 ? " was" : " were") + " given; remove `" + Src(*a.value) + "`");
        ok = false;
        continue;
      }
    }
    if (given[idx]) {
      D().Report(DiagKind::DuplicateArgument, a.name ? a.name->range : a.value->range,
                    "argument `" + names[idx] + "` of `" + std::string(op.name) + "` is given twice");
      D().AddNote(given_at[idx], "first given here");
      ok = false;
      continue;
    }
    given[idx] = a.value.get();
    given_at[idx] = a.name ? a.name->range : a.value->range;
  }
  for (size_t k = 0; k < op.params.size(); ++k) {
    const schema::Param& p = op.params[k];
    if (!given[k]) {
      if (p.required) {
        D().Report(DiagKind::MissingArgument, e.range,
                      "`" + std::string(op.name) + "` is missing argument `" + std::string(p.name) + "` (" +
                          std::string(p.doc) + ")");
        ok = false;
        continue;
      }
      Value d = DefaultValue(p);
      if (!d.is_error()) call.entries.emplace_back(std::string(p.name), std::move(d));
      continue;
    }
    Value v;
    if (p.type.kind == Kind::Metric) {
      // A metric name such as `val.accuracy`: a dotted name, checked by the stage.
      const ast::Expr* x = given[k];
      std::string text;
      while (x && x->kind == ast::ExprKind::Field) {
        text = "." + x->text + text;
        x = x->operands[0].get();
      }
      if (!x || x->kind != ast::ExprKind::Name) {
        D().Report(DiagKind::TypeMismatch, given[k]->range,
                      "type mismatch: `metric` expects a metric name such as `val.accuracy`, but `" + Src(*given[k]) +
                          "` is not a name");
        ok = false;
        continue;
      }
      v.tag = Value::Tag::Symbol;
      v.kind = Kind::Metric;
      v.s = x->text + text;
      v.range = given[k]->range;
    } else {
      v = EvalAs(*given[k], p, ctx);
    }
    if (v.is_error()) {
      ok = false;
      continue;
    }
    if (v.tag == Value::Tag::Kernel) CheckKernelUse(v, *given[k], op.name);
    call.entries.emplace_back(std::string(p.name), std::move(v));
  }
  if (!ok) return Value::Error();
  return call;
}

// `stop when` conditions: comparisons and arithmetic over run-time metrics.
Value Checker::EvalPredicate(const ast::Expr& e, EvalCtx& ctx, std::vector<std::string>& metrics) {
  std::function<std::optional<std::string>(const ast::Expr&, bool)> walk =
      [&](const ast::Expr& x, bool want_bool) -> std::optional<std::string> {
    switch (x.kind) {
      case ast::ExprKind::Int:
      case ast::ExprKind::Float:
        if (want_bool) break;
        return ToSource(x.kind == ast::ExprKind::Int ? Value::Int(x.int_value, {}) : Value::Float(x.float_value, {}));
      case ast::ExprKind::Name: {
        if (want_bool) break;
        const auto& known = schema::RlMetrics();
        if (std::find(known.begin(), known.end(), x.text) != known.end()) {
          if (std::find(metrics.begin(), metrics.end(), x.text) == metrics.end()) metrics.push_back(x.text);
          return x.text;
        }
        const Symbol* s = Lookup(ctx.module, x.text);
        if (s && s->kind == SymKind::Param) {
          Used().insert(s->decl);
          const Value& pv = ParamValue(*s);
          if (pv.tag == Value::Tag::Int || pv.tag == Value::Tag::Float) return ToSource(pv);
          if (pv.is_error()) return std::nullopt;
          D().Report(DiagKind::TypeMismatch, x.range,
                        "type mismatch: a condition compares numbers, but param `" + x.text + "` is " + DescribeType(pv));
          return std::nullopt;
        }
        std::vector<std::string> names(known.begin(), known.end());
        D().Report(DiagKind::UnknownName, x.range,
                      "unknown metric `" + x.text + "` in condition" + DidYouMean(x.text, names) +
                           " (rl metrics: `reward_mean`, `reward_max`, `episode_len_mean`, `env_steps`, `episodes`, "
                          "`iterations`, `time_s`)");
        return std::nullopt;
      }
      case ast::ExprKind::Unary: {
        bool is_not = x.un_op == ast::UnOp::Not;
        if (is_not != want_bool) break;
        auto inner = walk(*x.operands[0], want_bool);
        if (!inner) return std::nullopt;
        return is_not ? "not " + *inner : "-" + *inner;
      }
      case ast::ExprKind::Binary: {
        bool logical = x.bin_op == ast::BinOp::And || x.bin_op == ast::BinOp::Or;
        bool compare = x.bin_op >= ast::BinOp::Lt && x.bin_op <= ast::BinOp::Ne;
        bool arith = x.bin_op <= ast::BinOp::Sub;
        if ((logical || compare) != want_bool || !(logical || compare || arith)) break;
        auto a = walk(*x.operands[0], logical);
        auto b = walk(*x.operands[1], logical);
        if (!a || !b) return std::nullopt;
        std::string op = ast::Spelling(x.bin_op);
        return logical ? "(" + *a + " " + op + " " + *b + ")" : *a + " " + op + " " + *b;
      }
      default: break;
    }
    D().Report(DiagKind::TypeMismatch, x.range,
                  std::string("type mismatch: expected ") + (want_bool ? "a condition such as `reward_mean >= 475`" : "a number or a metric") +
                      ", but found `" + Src(x) + "`");
    return std::nullopt;
  };
  auto text = walk(e, true);
  if (!text) return Value::Error();
  std::string s = *text;
  if (s.size() > 2 && s.front() == '(' && s.back() == ')') {
    int depth = 0;
    bool outer = true;
    for (size_t k = 0; k + 1 < s.size(); ++k) {
      depth += s[k] == '(' ? 1 : s[k] == ')' ? -1 : 0;
      if (depth == 0) outer = false;
    }
    if (outer) s = s.substr(1, s.size() - 2);
  }
  Value v;
  v.tag = Value::Tag::Predicate;
  v.kind = Kind::Predicate;
  v.s = s;
  v.range = e.range;
  for (const auto& m : metrics) {
    Value mv;
    mv.tag = Value::Tag::String;
    mv.s = m;
    v.items.push_back(mv);
  }
  return v;
}

}  // namespace mlp
