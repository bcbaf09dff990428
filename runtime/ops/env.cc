// Envs: the plan's description of each env (state fields and how they start,
// the action space, what is observed, max_steps) checked again, since a plan
// may come from anywhere, and the step function parsed from the env's source
// and compiled by the kernel compiler (kernel_build.h).
#include "runtime/ops/env.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "compiler/base/diagnostics.h"
#include "compiler/base/source.h"
#include "compiler/parse/ast.h"
#include "compiler/parse/parser.h"
#include "runtime/ops/kernel_build.h"
#include "runtime/ops/kernel_code.h"

namespace mlp::rt::ops {
namespace {

namespace pb = plan::v1;

constexpr size_t kMaxFields = 255;  // plus the action: the kernels' limit of 256 parameters

std::string_view LastPart(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

bool ParseType(const std::string& s, ScalarType* out) {
  auto t = detail::ScalarTypeNamed(s);
  if (!t) return false;
  *out = static_cast<ScalarType>(*t);
  return true;
}

// Argument `name` of a call (plan calls name every argument; a nameless one counts by position).
const pb::Value* Arg(const pb::Call& c, std::string_view name, int pos) {
  for (const auto& a : c.args()) {
    if (a.name() == name) return &a.value();
  }
  if (pos < c.args_size() && c.args(pos).name().empty()) return &c.args(pos).value();
  return nullptr;
}

bool Number(const pb::Value* v, double* out) {
  if (!v) return false;
  if (v->kind_case() == pb::Value::kIntValue) {
    *out = static_cast<double>(v->int_value());
    return true;
  }
  if (v->kind_case() == pb::Value::kFloatValue) {
    *out = v->float_value();
    return std::isfinite(*out);
  }
  return false;
}

bool Integer(const pb::Value* v, int64_t* out) {
  if (!v || v->kind_case() != pb::Value::kIntValue) return false;
  *out = v->int_value();
  return true;
}

std::string Describe(const pb::Value& v) {
  switch (v.kind_case()) {
    case pb::Value::kIntValue: return std::to_string(v.int_value());
    case pb::Value::kFloatValue: return std::to_string(v.float_value());
    case pb::Value::kBoolValue: return v.bool_value() ? "true" : "false";
    case pb::Value::kCall: return "a call of `" + v.call().op() + "`";
    case pb::Value::KIND_NOT_SET: return "nothing";
    default: return "a value of another kind";
  }
}

// A constant of the plan as a value of type `t`; false when it does not fit.
bool ToField(const pb::Value& v, ScalarType t, Scalar* out) {
  switch (t) {
    case ScalarType::Bool:
      if (v.kind_case() != pb::Value::kBoolValue) return false;
      *out = Scalar::Bool(v.bool_value());
      return true;
    case ScalarType::I32:
    case ScalarType::I64: {
      int64_t i = 0;
      if (!Integer(&v, &i)) return false;
      if (t == ScalarType::I64) {
        *out = Scalar::I64(i);
        return true;
      }
      if (i < std::numeric_limits<int32_t>::min() || i > std::numeric_limits<int32_t>::max()) return false;
      *out = Scalar::I32(static_cast<int32_t>(i));
      return true;
    }
    case ScalarType::F32:
    case ScalarType::F64: {
      double d = 0;
      if (!Number(&v, &d)) return false;
      *out = t == ScalarType::F32 ? Scalar::F32(static_cast<float>(d)) : Scalar::F64(d);
      return true;
    }
  }
  return false;
}

bool ParseInit(const pb::Value& v, EnvField* f, std::string* why) {
  EnvInit& init = f->init;
  std::string type(ScalarTypeName(f->type));
  if (v.kind_case() != pb::Value::kCall) {
    Scalar s;
    if (!ToField(v, f->type, &s)) {
      *why = "state field `" + f->name + "` is `" + type + "`, but its initial value is " + Describe(v);
      return false;
    }
    init.kind = EnvInit::Kind::Constant;
    init.values = {s};
    return true;
  }
  const pb::Call& c = v.call();
  bool is_float = f->type == ScalarType::F32 || f->type == ScalarType::F64;
  if (c.op() == "uniform" || c.op() == "loguniform") {
    bool log = c.op() == "loguniform";
    if (!is_float) {
      *why = "state field `" + f->name + "` is `" + type + "`, but `" + c.op() + "` draws floats";
      return false;
    }
    if (!Number(Arg(c, "low", 0), &init.low) || !Number(Arg(c, "high", 1), &init.high) || init.low > init.high ||
        (log && init.low <= 0)) {
      *why = "state field `" + f->name + "`: `" + c.op() + "` needs finite bounds with low <= high" +
             (log ? " and low > 0" : "");
      return false;
    }
    init.kind = log ? EnvInit::Kind::LogUniform : EnvInit::Kind::Uniform;
    return true;
  }
  if (c.op() == "randint") {
    if (f->type == ScalarType::Bool) {
      *why = "state field `" + f->name + "` is `bool`, but `randint` draws integers";
      return false;
    }
    if (!Integer(Arg(c, "low", 0), &init.ilow) || !Integer(Arg(c, "high", 1), &init.ihigh) || init.ilow >= init.ihigh) {
      *why = "state field `" + f->name + "`: `randint` needs integer bounds with low < high";
      return false;
    }
    if (f->type == ScalarType::I32 &&
        (init.ilow < std::numeric_limits<int32_t>::min() || init.ihigh - 1 > std::numeric_limits<int32_t>::max())) {
      *why = "state field `" + f->name + "` is `i32`, but `randint` can draw values outside it";
      return false;
    }
    init.kind = EnvInit::Kind::RandInt;
    return true;
  }
  if (c.op() == "choice") {
    const pb::Value* list = Arg(c, "values", 0);
    if (!list || list->kind_case() != pb::Value::kList || list->list().items_size() == 0) {
      *why = "state field `" + f->name + "`: `choice` needs at least one value";
      return false;
    }
    for (const auto& item : list->list().items()) {
      Scalar s;
      if (!ToField(item, f->type, &s)) {
        *why = "state field `" + f->name + "` is `" + type + "`, but `choice` lists " + Describe(item);
        return false;
      }
      init.values.push_back(s);
    }
    init.kind = EnvInit::Kind::Choice;
    return true;
  }
  *why = "state field `" + f->name + "` starts at " + Describe(v) +
         "; initial values are constants, uniform, loguniform, randint or choice";
  return false;
}

bool ParseSpec(const pb::Env& pe, EnvSpec* spec, std::string* why) {
  spec->name = pe.name();
  if (pe.state_size() == 0) {
    *why = "it has no state fields";
    return false;
  }
  if (static_cast<size_t>(pe.state_size()) > kMaxFields) {
    *why = "it has more than " + std::to_string(kMaxFields) + " state fields";
    return false;
  }
  std::set<std::string> names;
  for (const auto& sf : pe.state()) {
    EnvField f;
    f.name = sf.name();
    if (f.name.empty() || !names.insert(f.name).second) {
      *why = f.name.empty() ? "a state field has no name" : "state field `" + f.name + "` appears twice";
      return false;
    }
    if (!ParseType(sf.type(), &f.type)) {
      *why = "state field `" + f.name + "` has unknown type `" + sf.type() + "`";
      return false;
    }
    if (!ParseInit(sf.init(), &f, why)) return false;
    spec->state.push_back(std::move(f));
  }
  if (pe.observe_size() == 0) {
    *why = "it observes no state field";
    return false;
  }
  for (const auto& o : pe.observe()) {
    auto it = std::find_if(spec->state.begin(), spec->state.end(), [&](const EnvField& f) { return f.name == o; });
    if (it == spec->state.end()) {
      *why = "`observe` lists `" + o + "`, which is not a state field";
      return false;
    }
    spec->observe.push_back(static_cast<uint32_t>(it - spec->state.begin()));
  }
  const pb::Value& a = pe.action();
  if (a.kind_case() != pb::Value::kCall || (a.call().op() != "discrete" && a.call().op() != "box")) {
    *why = "its action is " + Describe(a) + "; actions are discrete(n) or box(low, high, dims)";
    return false;
  }
  if (a.call().op() == "discrete") {
    spec->action = EnvSpec::Action::Discrete;
    if (!Integer(Arg(a.call(), "n", 0), &spec->actions) || spec->actions < 1) {
      *why = "`discrete` needs a number of actions n >= 1";
      return false;
    }
  } else {
    spec->action = EnvSpec::Action::Box;
    const pb::Value* dims = Arg(a.call(), "dims", 2);
    if (!Number(Arg(a.call(), "low", 0), &spec->low) || !Number(Arg(a.call(), "high", 1), &spec->high) ||
        spec->low > spec->high || (dims && !Integer(dims, &spec->dims))) {
      *why = "`box` needs finite bounds with low <= high and an integer dims";
      return false;
    }
    if (spec->dims != 1) {
      // The step function takes one f32: it cannot see a vector action.
      *why = "its action is a box of " + std::to_string(spec->dims) + " dimensions, but a step function takes one f32";
      return false;
    }
  }
  for (const auto& s : pe.settings()) {
    if (s.name() != "max_steps") {
      *why = "unknown setting `" + s.name() + "` (settings: `max_steps`)";
      return false;
    }
    if (!Integer(&s.value(), &spec->max_steps) || spec->max_steps < 1) {
      *why = "`max_steps` must be an integer >= 1, but it is " + Describe(s.value());
      return false;
    }
  }
  return true;
}

// Unbiased uniform integer in [0, n), n > 0.
uint64_t Below(std::mt19937_64& g, uint64_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t r;
  do {
    r = g();
  } while (r >= limit);
  return r % n;
}

// Uniform in [0, 1), from the top 53 bits (the same on every standard library,
// unlike std::uniform_real_distribution).
double Unit(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }

Scalar FloatOf(ScalarType t, double v) {
  return t == ScalarType::F32 ? Scalar::F32(static_cast<float>(v)) : Scalar::F64(v);
}

}  // namespace

EnvProgram::~EnvProgram() {
  // Background compiles of step kernels read their code: finish them first.
  for (auto& e : envs_) e.step->WaitForNative();
}

std::unique_ptr<EnvProgram> EnvProgram::Build(const plan::v1::Plan& plan, const KernelProgram& kernels,
                                              std::string* error, const KernelOptions& options) {
  auto fail = [&](std::string msg) {
    if (error) *error = std::move(msg);
    return nullptr;
  };
  std::unique_ptr<EnvProgram> prog(new EnvProgram());
  std::set<std::string> seen;
  for (const auto& pe : plan.envs()) {
    if (pe.name().empty()) return fail("an env in the plan has no name");
    std::string where = "env `" + pe.name() + "`";
    if (!seen.insert(pe.name()).second) return fail("the plan declares " + where + " twice");
    Entry entry;
    std::string why;
    if (!ParseSpec(pe, &entry.spec, &why)) return fail(where + ": " + why);
    const EnvSpec& spec = entry.spec;

    auto k = std::make_unique<CompiledKernel>();
    k->name_ = pe.name() + ".step";
    k->options_ = options;
    for (const auto& f : spec.state) {
      k->params_.push_back(f.type);
      k->outputs_.push_back(f.type);
    }
    k->params_.push_back(spec.action_type());
    k->outputs_.push_back(ScalarType::F64);
    k->outputs_.push_back(ScalarType::Bool);
    k->result_ = ScalarType::Bool;  // unused: a step's results are its outputs
    auto code = std::make_unique<detail::KernelCode>();
    code->source = pe.source();
    code->file = pe.source_range().file();
    code->line = pe.source_range().line();
    code->column = pe.source_range().column();
    code->kernel = std::string(LastPart(pe.name()));
    detail::KernelCode& c = *code;
    k->code_ = std::move(code);

    SourceManager sm;
    FileId file = sm.Add(c.file.empty() ? "<env>" : c.file, c.source);
    Diagnostics diags;
    std::unique_ptr<ast::File> ast = Parse(sm, file, diags);
    if (diags.has_errors() || !ast) {
      for (const auto& d : diags.all()) {
        if (d.severity == Severity::Error) {
          return fail(c.Where(d.range.valid() ? d.range.begin : 0) + ": " + d.message + " (in " + where + ")");
        }
      }
      return fail(where + ": its source does not parse");
    }
    if (ast->decls.size() != 1 || ast->decls[0]->kind != ast::DeclKind::Env) {
      return fail(where + ": its source must be exactly one env declaration");
    }
    const auto& decl = static_cast<const ast::EnvDecl&>(*ast->decls[0]);
    if (decl.name.name != LastPart(pe.name())) return fail(where + ": its source declares `" + decl.name.name + "`");
    const ast::EnvItem *state = nullptr, *step = nullptr;
    for (const auto& item : decl.items) {
      const ast::EnvItem** slot = item.kind == ast::EnvItemKind::State ? &state
                                  : item.kind == ast::EnvItemKind::Step ? &step
                                                                        : nullptr;
      if (!slot) continue;
      if (*slot) return fail(where + ": its source has two `" + (slot == &state ? "state" : "step") + "` parts");
      *slot = &item;
    }
    if (!step || !step->step) return fail(where + ": its source has no `step` function");
    bool same = state && state->fields.size() == spec.state.size();
    for (size_t f = 0; same && f < spec.state.size(); ++f) {
      same = state->fields[f].name.name == spec.state[f].name &&
             state->fields[f].type.str() == ScalarTypeName(spec.state[f].type);
    }
    if (!same) return fail(where + ": the state fields differ between the plan and the source");
    std::vector<std::string> fields;
    for (const auto& f : spec.state) fields.push_back(f.name);
    if (std::find(fields.begin(), fields.end(), step->step_param.name) != fields.end()) {
      return fail(c.Where(step->step_param.range.begin) + ": the step parameter `" + step->step_param.name +
                  "` has the name of a state field (in " + where + ")");
    }

    // A call names its callee as the env's file sees it; the plan's `calls` hold plan names.
    auto resolve = [&](const std::string& text, std::string* why_not) -> const CompiledKernel* {
      std::string_view last = LastPart(text);
      std::vector<std::string> cands;
      for (const auto& cl : pe.calls()) {
        if (LastPart(cl) == last) cands.push_back(cl);
      }
      std::string pick;
      if (cands.size() == 1) {
        pick = cands[0];
      } else if (!cands.empty()) {
        if (std::find(cands.begin(), cands.end(), text) == cands.end()) {
          *why_not = "call of `" + text + "` is ambiguous between kernels of the plan";
          return nullptr;
        }
        pick = text;
      } else if (kernels.Find(text)) {
        pick = text;
      } else if (size_t dot = pe.name().rfind('.'); dot != std::string::npos) {
        pick = pe.name().substr(0, dot + 1) + text;  // the env's own module
      }
      const CompiledKernel* callee = pick.empty() ? nullptr : kernels.Find(pick);
      if (!callee) *why_not = "unknown kernel `" + text + "` (not in the plan)";
      return callee;
    };
    if (!detail::CompileEnvStep(*step, fields, k->params_, c, resolve, &why)) return fail(why);
    entry.step = std::move(k);
    prog->envs_.push_back(std::move(entry));
  }
  return prog;
}

const EnvSpec* EnvProgram::Find(std::string_view name) const {
  for (const auto& e : envs_) {
    if (e.spec.name == name) return &e.spec;
  }
  return nullptr;
}

const CompiledKernel* EnvProgram::StepKernel(std::string_view name) const {
  for (const auto& e : envs_) {
    if (e.spec.name == name) return e.step.get();
  }
  return nullptr;
}

std::unique_ptr<EnvInstance> EnvProgram::NewInstance(std::string_view name, uint64_t seed) const {
  for (const auto& e : envs_) {
    if (e.spec.name == name) return std::make_unique<EnvInstance>(e.spec, *e.step, seed);
  }
  return nullptr;
}

EnvInstance::EnvInstance(const EnvSpec& spec, const CompiledKernel& step, uint64_t seed)
    : spec_(&spec), step_(&step), rng_(seed) {
  Reset();
}

Scalar EnvInstance::Draw(const EnvField& f) {
  const EnvInit& in = f.init;
  switch (in.kind) {
    case EnvInit::Kind::Constant: return in.values[0];
    case EnvInit::Kind::Choice: return in.values[Below(rng_, in.values.size())];
    case EnvInit::Kind::Uniform: return FloatOf(f.type, std::min(in.high, in.low + (in.high - in.low) * Unit(rng_)));
    case EnvInit::Kind::LogUniform: {
      double v = std::exp(std::log(in.low) + (std::log(in.high) - std::log(in.low)) * Unit(rng_));
      return FloatOf(f.type, std::clamp(v, in.low, in.high));
    }
    case EnvInit::Kind::RandInt: {
      uint64_t span = static_cast<uint64_t>(in.ihigh) - static_cast<uint64_t>(in.ilow);
      int64_t v = static_cast<int64_t>(static_cast<uint64_t>(in.ilow) + Below(rng_, span));
      switch (f.type) {
        case ScalarType::I32: return Scalar::I32(static_cast<int32_t>(v));
        case ScalarType::I64: return Scalar::I64(v);
        default: return FloatOf(f.type, static_cast<double>(v));
      }
    }
  }
  return in.values.empty() ? Scalar() : in.values[0];
}

void EnvInstance::Reset() {
  state_.clear();
  for (const auto& f : spec_->state) state_.push_back(Draw(f));
  steps_ = 0;
  done_ = false;
  truncated_ = false;
}

void EnvInstance::Reset(uint64_t seed) {
  rng_.seed(seed);
  Reset();
}

bool EnvInstance::SetState(std::span<const Scalar> values, std::string* error) {
  if (values.size() != spec_->state.size()) {
    if (error) {
      *error = "env `" + spec_->name + "` has " + std::to_string(spec_->state.size()) + " state fields, but " +
               std::to_string(values.size()) + " values were given";
    }
    return false;
  }
  for (size_t f = 0; f < values.size(); ++f) {
    if (values[f].type != spec_->state[f].type) {
      if (error) {
        *error = "env `" + spec_->name + "`: state field `" + spec_->state[f].name + "` is `" +
                 std::string(ScalarTypeName(spec_->state[f].type)) + "`, but the value is `" +
                 std::string(ScalarTypeName(values[f].type)) + "`";
      }
      return false;
    }
  }
  state_.assign(values.begin(), values.end());
  steps_ = 0;
  done_ = false;
  truncated_ = false;
  return true;
}

std::vector<double> EnvInstance::Observe() const {
  std::vector<double> obs;
  obs.reserve(spec_->observe.size());
  for (uint32_t idx : spec_->observe) {
    const Scalar& s = state_[idx];
    obs.push_back(s.type == ScalarType::F32 || s.type == ScalarType::F64 ? s.f : static_cast<double>(s.i));
  }
  return obs;
}

bool EnvInstance::Step(const Scalar& action, std::vector<double>* obs, double* reward, bool* done,
                       std::string* error) {
  auto fail = [&](std::string msg) {
    if (error) *error = std::move(msg);
    return false;
  };
  const EnvSpec& spec = *spec_;
  if (done_) return fail("env `" + spec.name + "`: the episode is over; reset it before the next step");
  Scalar act;
  if (spec.action == EnvSpec::Action::Discrete) {
    if (action.type != ScalarType::I64 && action.type != ScalarType::I32) {
      return fail("env `" + spec.name + "` takes an integer action, but it is `" +
                  std::string(ScalarTypeName(action.type)) + "`");
    }
    if (action.i < 0 || action.i >= spec.actions) {
      return fail("env `" + spec.name + "`: action " + std::to_string(action.i) + " is out of range (discrete(" +
                  std::to_string(spec.actions) + ") takes 0.." + std::to_string(spec.actions - 1) + ")");
    }
    act = Scalar::I64(action.i);
  } else {
    if (action.type != ScalarType::F32 && action.type != ScalarType::F64) {
      return fail("env `" + spec.name + "` takes a float action, but it is `" +
                  std::string(ScalarTypeName(action.type)) + "`");
    }
    if (std::isnan(action.f)) return fail("env `" + spec.name + "`: the action is NaN");
    // Policies sample actions from unbounded distributions; the env sees them clipped.
    act = Scalar::F32(static_cast<float>(std::clamp(action.f, spec.low, spec.high)));
  }
  args_.assign(state_.begin(), state_.end());
  args_.push_back(act);
  if (!step_->CallMulti(args_, &out_, error)) return false;
  size_t n = state_.size();
  std::copy(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(n), state_.begin());
  ++steps_;
  done_ = out_[n + 1].i != 0;
  if (!done_ && spec.max_steps > 0 && steps_ >= spec.max_steps) {
    done_ = true;
    truncated_ = true;
  }
  if (reward) *reward = out_[n].f;
  if (done) *done = done_;
  if (obs) *obs = Observe();
  return true;
}

}  // namespace mlp::rt::ops
