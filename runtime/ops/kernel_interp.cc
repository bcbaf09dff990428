// The kernel interpreter. Build() parses each kernel's source with the
// compiler's parser, then compiles the AST into a flat node array with every
// type resolved: literals take the type of what they meet (as in the checker,
// compiler/sema/kernels.cc) by explicit Convert nodes or by folding constants,
// so evaluation never looks at types it could not know in advance.
#include "runtime/ops/kernel_interp.h"
#include "runtime/ops/kernel_code.h"
#include "runtime/ops/kernel_build.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "compiler/base/diagnostics.h"
#include "compiler/base/source.h"
#include "compiler/parse/ast.h"
#include "compiler/parse/parser.h"
#include "stdlib/schema/schema.h"

namespace mlp::rt::ops {

Scalar Scalar::F32(float v) {
  Scalar s;
  s.type = ScalarType::F32;
  s.f = v;
  return s;
}
Scalar Scalar::F64(double v) {
  Scalar s;
  s.type = ScalarType::F64;
  s.f = v;
  return s;
}
Scalar Scalar::I32(int32_t v) {
  Scalar s;
  s.type = ScalarType::I32;
  s.i = v;
  return s;
}
Scalar Scalar::I64(int64_t v) {
  Scalar s;
  s.type = ScalarType::I64;
  s.i = v;
  return s;
}
Scalar Scalar::Bool(bool v) {
  Scalar s;
  s.type = ScalarType::Bool;
  s.i = v ? 1 : 0;
  return s;
}

std::string_view ScalarTypeName(ScalarType t) {
  switch (t) {
    case ScalarType::Bool: return "bool";
    case ScalarType::I32: return "i32";
    case ScalarType::I64: return "i64";
    case ScalarType::F32: return "f32";
    case ScalarType::F64: return "f64";
  }
  return "?";
}

DType ToDType(ScalarType t) {
  switch (t) {
    case ScalarType::Bool: return DType::Bool;
    case ScalarType::I32: return DType::I32;
    case ScalarType::I64: return DType::I64;
    case ScalarType::F32: return DType::F32;
    case ScalarType::F64: return DType::F64;
  }
  return DType::F64;
}

namespace detail {
// Runs kernels; frames live on one growable stack, addressed by index.
class Evaluator {
 public:
  std::string* error = nullptr;
  bool failed = false;

  bool Run(const CompiledKernel& k, const Slot* args, Slot* out);
  Slot Eval(const KernelCode& k, uint32_t id, size_t fb);

 private:
  std::vector<Slot> stack_;
  void Fail(const KernelCode& k, uint32_t pos, const std::string& what) {
    if (failed) return;
    failed = true;
    const char* in = k.outputs.empty() ? " (in kernel `" : " (in env `";  // an env step has outputs
    if (error) *error = k.Where(pos) + ": " + what + in + k.kernel + "`)";
  }
  Slot Arith(const KernelCode& k, const Node& n, Slot x, Slot y);
  Slot Convert(const KernelCode& k, const Node& n, Slot x);
  Slot Builtin(const Node& n, Slot x, Slot y, Slot z);
};

template <class I>
I WrapAdd(I a, I b) {
  using U = std::make_unsigned_t<I>;
  return static_cast<I>(static_cast<U>(a) + static_cast<U>(b));
}
template <class I>
I WrapSub(I a, I b) {
  using U = std::make_unsigned_t<I>;
  return static_cast<I>(static_cast<U>(a) - static_cast<U>(b));
}
template <class I>
I WrapMul(I a, I b) {
  using U = std::make_unsigned_t<I>;
  return static_cast<I>(static_cast<U>(a) * static_cast<U>(b));
}

Slot Evaluator::Arith(const KernelCode& k, const Node& n, Slot x, Slot y) {
  Slot r{};
  auto int_op = [&](auto a, auto b) -> int64_t {
    using I = decltype(a);
    switch (n.op) {
      case Op::Add: return WrapAdd<I>(a, b);
      case Op::Sub: return WrapSub<I>(a, b);
      case Op::Mul: return WrapMul<I>(a, b);
      case Op::Div:
      case Op::Mod:
        if (b == 0) {
          Fail(k, n.pos, n.op == Op::Div ? "integer division by zero" : "integer remainder by zero");
          return 0;
        }
        if (b == -1) return n.op == Op::Div ? WrapSub<I>(0, a) : 0;  // MIN / -1 wraps instead of trapping
        return n.op == Op::Div ? a / b : a % b;
      default: return 0;
    }
  };
  switch (n.in) {
    case T::F32: {
      float a = static_cast<float>(x.f), b = static_cast<float>(y.f), v = 0;
      switch (n.op) {
        case Op::Add: v = a + b; break;
        case Op::Sub: v = a - b; break;
        case Op::Mul: v = a * b; break;
        case Op::Div: v = a / b; break;
        case Op::Mod: v = std::fmod(a, b); break;
        default: break;
      }
      r.f = v;
      return r;
    }
    case T::F64:
    case T::LitFloat: {
      double a = x.f, b = y.f, v = 0;
      switch (n.op) {
        case Op::Add: v = a + b; break;
        case Op::Sub: v = a - b; break;
        case Op::Mul: v = a * b; break;
        case Op::Div: v = a / b; break;
        case Op::Mod: v = std::fmod(a, b); break;
        default: break;
      }
      r.f = v;
      return r;
    }
    case T::I32: r.i = int_op(static_cast<int32_t>(x.i), static_cast<int32_t>(y.i)); return r;
    case T::I64:
    case T::LitInt: r.i = int_op(x.i, y.i); return r;
    default: return r;
  }
}

Slot Evaluator::Convert(const KernelCode& k, const Node& n, Slot x) {
  Slot r{};
  bool from_float = IsFloatT(n.in);
  switch (n.type) {
    // An integer rounds to f32 once (not through f64), as a literal or a column does.
    case T::F32: r.f = from_float ? static_cast<float>(x.f) : static_cast<float>(x.i); return r;
    case T::F64:
    case T::LitFloat:
      // f64(i64) rounds to nearest, as C does.
      r.f = from_float ? x.f : static_cast<double>(x.i);
      return r;
    case T::I32:
    case T::I64:
    case T::LitInt: {
      if (!from_float) {
        r.i = n.type == T::I32 ? static_cast<int32_t>(static_cast<uint32_t>(x.i)) : x.i;
        return r;
      }
      double v = x.f;
      bool i32 = n.type == T::I32;
      double lo = i32 ? -2147483649.0 : -9223372036854775808.0;
      double hi = i32 ? 2147483648.0 : 9223372036854775808.0;
      if (!(v > lo && v < hi) && !(v == lo && !i32)) {
        Fail(k, n.pos, "cannot convert " + std::to_string(v) + " to " + std::string(TName(n.type)) +
                           " (NaN or out of range)");
        return r;
      }
      r.i = static_cast<int64_t>(v);
      return r;
    }
    default: return r;
  }
}

template <class F>
F Apply(Fn fn, F a, F b, F c) {
  switch (fn) {
    case Fn::Exp: return std::exp(a);
    case Fn::Log: return std::log(a);
    case Fn::Sqrt: return std::sqrt(a);
    case Fn::Sin: return std::sin(a);
    case Fn::Cos: return std::cos(a);
    case Fn::Tanh: return std::tanh(a);
    case Fn::Floor: return std::floor(a);
    case Fn::Pow: return std::pow(a, b);
    case Fn::Abs: return std::fabs(a);
    case Fn::Min: return b < a ? b : a;
    case Fn::Max: return a < b ? b : a;
    case Fn::Clamp: {
      F v = a < b ? b : a;
      return c < v ? c : v;
    }
  }
  return a;
}

template <class I>
I ApplyInt(Fn fn, I a, I b, I c) {
  switch (fn) {
    case Fn::Abs: return a < 0 ? WrapSub<I>(0, a) : a;
    case Fn::Min: return b < a ? b : a;
    case Fn::Max: return a < b ? b : a;
    case Fn::Clamp: {
      I v = a < b ? b : a;
      return c < v ? c : v;
    }
    default: return a;  // float-only builtins never get integers (checked at build)
  }
}

Slot Evaluator::Builtin(const Node& n, Slot x, Slot y, Slot z) {
  Slot r{};
  switch (n.in) {
    case T::F32:
      r.f = Apply<float>(n.fn, static_cast<float>(x.f), static_cast<float>(y.f), static_cast<float>(z.f));
      return r;
    case T::F64:
    case T::LitFloat: r.f = Apply<double>(n.fn, x.f, y.f, z.f); return r;
    case T::I32:
      r.i = ApplyInt<int32_t>(n.fn, static_cast<int32_t>(x.i), static_cast<int32_t>(y.i), static_cast<int32_t>(z.i));
      return r;
    default: r.i = ApplyInt<int64_t>(n.fn, x.i, y.i, z.i); return r;
  }
}

bool Less(T t, Slot a, Slot b) { return IsFloatT(t) ? a.f < b.f : a.i < b.i; }
bool Equal(T t, Slot a, Slot b) { return IsFloatT(t) ? a.f == b.f : a.i == b.i; }

Slot Evaluator::Eval(const KernelCode& k, uint32_t id, size_t fb) {
  const Node& n = k.nodes[id];
  Slot r{};
  switch (n.op) {
    case Op::Const: return n.value;
    case Op::Var: return stack_[fb + n.slot];
    case Op::Let: stack_[fb + n.slot] = Eval(k, n.a, fb); return r;
    case Op::Block:
      for (uint32_t s = 0; s < n.count && !failed; ++s) Eval(k, k.lists[n.list + s], fb);
      return Eval(k, n.a, fb);
    case Op::If: return Eval(k, Eval(k, n.a, fb).i ? n.b : n.c, fb);
    case Op::And: r.i = Eval(k, n.a, fb).i && Eval(k, n.b, fb).i; return r;
    case Op::Or: r.i = Eval(k, n.a, fb).i || Eval(k, n.b, fb).i; return r;
    case Op::Not: r.i = !Eval(k, n.a, fb).i; return r;
    case Op::Neg: {
      Slot x = Eval(k, n.a, fb);
      if (n.type == T::F32) {
        r.f = -static_cast<float>(x.f);
      } else if (IsFloatT(n.type)) {
        r.f = -x.f;
      } else if (n.type == T::I32) {
        r.i = WrapSub<int32_t>(0, static_cast<int32_t>(x.i));
      } else {
        r.i = WrapSub<int64_t>(0, x.i);
      }
      return r;
    }
    case Op::Add:
    case Op::Sub:
    case Op::Mul:
    case Op::Div:
    case Op::Mod: {
      Slot x = Eval(k, n.a, fb);
      Slot y = Eval(k, n.b, fb);
      return Arith(k, n, x, y);
    }
    case Op::Lt:
    case Op::Le:
    case Op::Gt:
    case Op::Ge:
    case Op::Eq:
    case Op::Ne: {
      Slot x = Eval(k, n.a, fb);
      Slot y = Eval(k, n.b, fb);
      bool v = false;
      switch (n.op) {
        case Op::Lt: v = Less(n.in, x, y); break;
        case Op::Le: v = IsFloatT(n.in) ? x.f <= y.f : x.i <= y.i; break;
        case Op::Gt: v = Less(n.in, y, x); break;
        case Op::Ge: v = IsFloatT(n.in) ? x.f >= y.f : x.i >= y.i; break;
        case Op::Eq: v = Equal(n.in, x, y); break;
        default: v = !Equal(n.in, x, y); break;
      }
      r.i = v;
      return r;
    }
    case Op::Convert: return Convert(k, n, Eval(k, n.a, fb));
    case Op::Builtin: {
      Slot x = Eval(k, n.a, fb);
      Slot y = n.count > 1 ? Eval(k, n.b, fb) : Slot{};
      Slot z = n.count > 2 ? Eval(k, n.c, fb) : Slot{};
      return Builtin(n, x, y, z);
    }
    case Op::Call: {
      const CompiledKernel& callee = *n.callee;
      const KernelCode& cc = *callee.code_;
      size_t cb = stack_.size();
      stack_.resize(cb + cc.slots);
      for (uint32_t a = 0; a < n.count; ++a) {
        Slot v = Eval(k, k.lists[n.list + a], fb);
        stack_[cb + a] = v;
      }
      callee.calls_.fetch_add(1, std::memory_order_relaxed);
      if (!failed) r = Eval(cc, cc.root, cb);
      stack_.resize(cb);
      return r;
    }
  }
  return r;
}

bool Evaluator::Run(const CompiledKernel& k, const Slot* args, Slot* out) {
  const KernelCode& c = *k.code_;
  stack_.resize(c.slots);
  std::memcpy(stack_.data(), args, sizeof(Slot) * k.params_.size());
  *out = Eval(c, c.root, 0);
  if (!c.outputs.empty()) {
    for (size_t o = 0; o < c.outputs.size(); ++o) out[o] = stack_[c.outputs[o]];
  }
  return !failed;
}

}  // namespace detail

using detail::IsFloatT;
using detail::Node;
using detail::Op;
using detail::Slot;
using detail::T;

bool ParseJitMode(std::string_view s, JitMode* out) {
  if (s == "auto") {
    *out = JitMode::Auto;
  } else if (s == "on") {
    *out = JitMode::On;
  } else if (s == "off") {
    *out = JitMode::Off;
  } else {
    return false;
  }
  return true;
}

std::string_view JitModeName(JitMode m) {
  switch (m) {
    case JitMode::Auto: return "auto";
    case JitMode::On: return "on";
    case JitMode::Off: return "off";
  }
  return "auto";
}

JitMode DefaultJitMode() {
  JitMode m = JitMode::Auto;
  if (const char* env = std::getenv("MLPC_JIT")) ParseJitMode(env, &m);
  return m;
}

namespace {
std::atomic<NativeBackend*> g_backend{nullptr};
}  // namespace

void SetNativeBackend(NativeBackend* backend) { g_backend.store(backend, std::memory_order_release); }
NativeBackend* GetNativeBackend() { return g_backend.load(std::memory_order_acquire); }

// The native tier of one kernel: the code once compiled, and the background
// compile that produces it in auto mode.
struct CompiledKernel::TierState {
  std::mutex mu;
  bool started = false;  // a compile was started (it runs once per kernel)
  std::string error;     // why it failed, if it did
  std::thread worker;
  std::unique_ptr<NativeCode> code;
};

CompiledKernel::CompiledKernel() : tier_(std::make_unique<TierState>()) {}
CompiledKernel::~CompiledKernel() { WaitForNative(); }

KernelProgram::~KernelProgram() {
  // Background compiles read callees' code: finish them all before any kernel goes.
  for (auto& k : kernels_) k->WaitForNative();
}

void CompiledKernel::WaitForNative() const {
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(tier_->mu);
    t = std::move(tier_->worker);
  }
  if (t.joinable()) t.join();
}

bool CompiledKernel::Tier(std::string* error) const {
  if (options_.jit == JitMode::Off || native()) return true;
  NativeBackend* backend = GetNativeBackend();
  TierState& ts = *tier_;
  if (options_.jit == JitMode::On) {
    std::lock_guard<std::mutex> lock(ts.mu);
    if (native()) return true;
    if (!backend) {
      ts.error = "kernel `" + name_ + "`: --jit=on, but this build has no native tier";
    } else if (!ts.started) {
      ts.started = true;
      std::string why;
      ts.code = backend->Compile(*this, &why);
      if (ts.code) {
        native_.store(ts.code.get(), std::memory_order_release);
        return true;
      }
      ts.error = "kernel `" + name_ + "`: native compile failed: " + why;
    }
    if (error) *error = ts.error;
    return false;
  }
  // auto: a kernel that fails to compile stays interpreted.
  if (!backend || calls() < options_.hot_calls) return true;
  std::lock_guard<std::mutex> lock(ts.mu);
  if (ts.started) return true;
  ts.started = true;
  ts.worker = std::thread([this, backend] {
    std::string why;
    std::unique_ptr<NativeCode> code = backend->Compile(*this, &why);
    std::lock_guard<std::mutex> lock(tier_->mu);
    if (code) {
      tier_->code = std::move(code);
      native_.store(tier_->code.get(), std::memory_order_release);
    } else {
      tier_->error = why;
    }
  });
  if (options_.wait_for_compile) {
    ts.mu.unlock();
    WaitForNative();
    ts.mu.lock();
  }
  return true;
}

namespace {

std::string_view LastPart(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

constexpr int kMaxDepth = 1024;       // AST nesting inside one kernel
constexpr int kMaxTotalDepth = 4096;  // along a chain of calls: bounds the interpreter's recursion
constexpr size_t kMaxParams = 256;

// Compiles one kernel's AST into its KernelCode.
class KernelCompiler {
 public:
  using Resolver = std::function<const CompiledKernel*(const std::string& text, std::string* why)>;
  KernelCompiler(detail::KernelCode& code, Resolver resolve) : code_(code), resolve_(std::move(resolve)) {}

  std::string error;
  int max_depth = 0;
  std::vector<const CompiledKernel*> callees;

  bool Compile(const ast::KernelDecl& decl, const std::vector<ScalarType>& params, ScalarType ret) {
    for (size_t k = 0; k < decl.params.size(); ++k) {
      vars_.push_back({decl.params[k].name.name, detail::FromScalar(params[k]), static_cast<uint32_t>(k)});
    }
    slots_ = static_cast<uint32_t>(params.size());
    uint32_t body = Block(decl.body, decl.range, 1);
    if (!ok_) return false;
    T t = code_.nodes[body].type;
    if (!detail::Assignable(t, detail::FromScalar(ret))) {
      return Err(decl.body.result ? decl.body.result->range : decl.range,
                 "kernel `" + decl.name.name + "` returns `" + std::string(ScalarTypeName(ret)) +
                     "`, but its result is `" + std::string(detail::TName(t)) + "`");
    }
    code_.root = Coerce(body, detail::FromScalar(ret));
    code_.slots = slots_;
    return ok_;
  }

  // An env step: its parameters are the state fields, then the action. An
  // assignment binds the field's name to a new slot, so later statements read
  // the new value; reward and done get slots of their own. The root is a Block
  // of Lets (its value a dummy bool), and `outputs` lists the final slot of
  // every field, then reward's and done's.
  bool CompileStep(const ast::EnvItem& step, const std::vector<std::string>& fields,
                   const std::vector<ScalarType>& params) {
    step_ = true;
    const ast::KBlock& body = *step.step;
    std::vector<uint32_t> current;  // each field's slot now
    for (size_t k = 0; k < fields.size(); ++k) {
      current.push_back(static_cast<uint32_t>(k));
      vars_.push_back({fields[k], detail::FromScalar(params[k]), static_cast<uint32_t>(k)});
    }
    vars_.push_back({step.step_param.name, detail::FromScalar(params.back()), static_cast<uint32_t>(fields.size())});
    slots_ = static_cast<uint32_t>(params.size());
    std::vector<uint32_t> lets;
    std::optional<uint32_t> reward, done;  // their slots
    for (const auto& st : body.stmts) {
      if (!ok_) return false;
      switch (st.kind) {
        case ast::KStmtKind::Let: lets.push_back(LetStmt(st, 1)); break;
        case ast::KStmtKind::Set: {
          auto f = std::find(fields.begin(), fields.end(), st.name.name);
          if (f == fields.end()) {
            return Err(st.name.range, "`" + st.name.name + "` is not a state field; only state fields can be assigned");
          }
          size_t idx = static_cast<size_t>(f - fields.begin());
          T ft = detail::FromScalar(params[idx]);
          uint32_t v = Expr(*st.value, 2);
          if (!ok_) return false;
          if (!detail::Assignable(TypeOf(v), ft)) {
            return Err(st.value->range, "state field `" + st.name.name + "` is `" + std::string(detail::TName(ft)) +
                                            "`, but the value is `" + std::string(detail::TName(TypeOf(v))) + "`");
          }
          lets.push_back(NewLet(Coerce(v, ft), ft, st.range, &current[idx]));
          vars_.push_back({st.name.name, ft, current[idx]});
          break;
        }
        case ast::KStmtKind::Reward:
        case ast::KStmtKind::Done: {
          bool is_reward = st.kind == ast::KStmtKind::Reward;
          const char* word = is_reward ? "reward" : "done";
          std::optional<uint32_t>& which = is_reward ? reward : done;
          if (which) return Err(st.range, std::string("`") + word + "` is set twice; a `step` function sets it once");
          uint32_t v = Expr(*st.value, 2);
          if (!ok_) return false;
          T t = TypeOf(v);
          if (is_reward && !detail::IsNumericT(t)) {
            return Err(st.value->range, "`reward` needs a number, but it is `bool`");
          }
          if (!is_reward && t != T::Bool) {
            return Err(st.value->range, "`done` needs a bool, but it is `" + std::string(detail::TName(t)) + "`");
          }
          T want = is_reward ? T::F64 : T::Bool;
          uint32_t slot = 0;
          lets.push_back(NewLet(Coerce(v, want), want, st.range, &slot));
          which = slot;
          break;
        }
      }
    }
    if (!ok_) return false;
    if (body.result) return Err(body.result->range, "a `step` function has no result; use `reward` and `done`");
    if (!reward || !done) {
      return Err(step.range, std::string("a `step` function sets `reward` and `done` exactly once each, ") +
                                 "but this one has no `" + (reward ? "done" : "reward") + "`");
    }
    Node dummy;
    dummy.op = Op::Const;
    dummy.type = T::Bool;
    uint32_t value = Add(dummy, body.range);
    Node blk;
    blk.op = Op::Block;
    blk.type = T::Bool;
    blk.a = value;
    blk.list = static_cast<uint32_t>(code_.lists.size());
    blk.count = static_cast<uint32_t>(lets.size());
    code_.lists.insert(code_.lists.end(), lets.begin(), lets.end());
    code_.root = Add(blk, body.range);
    code_.outputs = current;
    code_.outputs.push_back(*reward);
    code_.outputs.push_back(*done);
    code_.output_types.clear();
    for (size_t k = 0; k < fields.size(); ++k) code_.output_types.push_back(detail::FromScalar(params[k]));
    code_.output_types.push_back(T::F64);
    code_.output_types.push_back(T::Bool);
    code_.slots = slots_;
    return ok_;
  }

 private:
  struct Var {
    std::string name;
    T type;
    uint32_t slot;
  };
  detail::KernelCode& code_;
  Resolver resolve_;
  std::vector<Var> vars_;
  uint32_t slots_ = 0;
  bool ok_ = true;
  bool step_ = false;  // compiling an env step

  bool Err(Range r, const std::string& msg) {
    if (ok_) {
      ok_ = false;
      error = code_.Where(r.begin) + ": " + msg + (step_ ? " (in env `" : " (in kernel `") + code_.kernel + "`)";
    }
    return false;
  }

  uint32_t Add(Node n, Range r) {
    n.pos = r.begin;
    code_.nodes.push_back(n);
    return static_cast<uint32_t>(code_.nodes.size() - 1);
  }
  uint32_t Bad() {
    ok_ = false;
    Node n;
    n.type = T::Error;
    code_.nodes.push_back(n);
    return static_cast<uint32_t>(code_.nodes.size() - 1);
  }
  T TypeOf(uint32_t id) const { return code_.nodes[id].type; }

  // Gives a literal-typed value the type it meets: folds constants, else converts.
  uint32_t Coerce(uint32_t id, T to) {
    Node& n = code_.nodes[id];
    if (n.type == to || n.type == T::Error) return id;
    if (n.op == Op::Const) {
      if (n.type == T::LitInt) {
        int64_t v = n.value.i;
        if (to == T::I32) n.value.i = static_cast<int32_t>(static_cast<uint32_t>(v));
        if (to == T::F32) n.value.f = static_cast<float>(v);
        if (to == T::F64 || to == T::LitFloat) n.value.f = static_cast<double>(v);
      } else if (n.type == T::LitFloat && to == T::F32) {
        n.value.f = static_cast<float>(n.value.f);
      }
      n.type = to;
      return id;
    }
    Node c;
    c.op = Op::Convert;
    c.type = to;
    c.in = n.type;
    c.a = id;
    c.pos = n.pos;
    code_.nodes.push_back(c);
    return static_cast<uint32_t>(code_.nodes.size() - 1);
  }

  T Unify(T a, T b, Range r, const std::string& what) {
    if (a == T::Error || b == T::Error) return T::Error;
    if (a == b) return a;
    if (a == T::LitInt && detail::IsNumericT(b)) return b;
    if (b == T::LitInt && detail::IsNumericT(a)) return a;
    if (a == T::LitFloat && IsFloatT(b)) return b;
    if (b == T::LitFloat && IsFloatT(a)) return a;
    Err(r, "mismatched types `" + std::string(detail::TName(a)) + "` and `" + std::string(detail::TName(b)) + "` in " +
               what);
    return T::Error;
  }

  // A Let of `v` (of type `t`) into a new slot, returned in *slot.
  uint32_t NewLet(uint32_t v, T t, Range r, uint32_t* slot) {
    Node let;
    let.op = Op::Let;
    let.a = v;
    let.slot = slots_++;
    let.type = t;
    *slot = let.slot;
    return Add(let, r);
  }

  // `let name[: type] = value`: the Let node; the name is visible afterwards.
  uint32_t LetStmt(const ast::KStmt& st, int depth) {
    uint32_t v = Expr(*st.value, depth + 1);
    if (!ok_) return Bad();
    T t = TypeOf(v);
    if (st.type) {
      auto declared = detail::ScalarTypeNamed(st.type->name.name);
      if (!declared || st.type->elem) {
        Err(st.type->range, "unknown kernel type `" + st.type->str() + "` (kernel types: f32, f64, i32, i64, bool)");
        return Bad();
      }
      if (!detail::Assignable(t, *declared)) {
        Err(st.value->range, "`" + st.name.name + "` is declared `" + std::string(detail::TName(*declared)) +
                                 "`, but its value is `" + std::string(detail::TName(t)) + "`");
        return Bad();
      }
      v = Coerce(v, *declared);
      t = *declared;
    }
    for (const auto& var : vars_) {
      if (var.name == st.name.name) {
        Err(st.name.range, "`" + st.name.name + "` is already defined");
        return Bad();
      }
    }
    uint32_t slot = 0;
    uint32_t let = NewLet(v, t, st.range, &slot);
    vars_.push_back({st.name.name, t, slot});
    return let;
  }

  uint32_t Block(const ast::KBlock& b, Range where, int depth) {
    size_t mark = vars_.size();
    std::vector<uint32_t> lets;
    for (const auto& st : b.stmts) {
      if (!ok_) return Bad();
      if (st.kind != ast::KStmtKind::Let) {
        // Step statements run in order at the top level: one inside an `if` would be conditional.
        Err(st.range, step_ ? "assignments, `reward` and `done` must be at the top level of `step`, not in a block"
                            : "only `let` statements are allowed in a kernel body");
        return Bad();
      }
      lets.push_back(LetStmt(st, depth));
      if (!ok_) return Bad();
    }
    if (!b.result) {
      Err(b.range.valid() ? b.range : where, "this block has no result expression");
      return Bad();
    }
    uint32_t result = Expr(*b.result, depth + 1);
    vars_.resize(mark);
    if (!ok_) return Bad();
    if (lets.empty()) return result;
    Node blk;
    blk.op = Op::Block;
    blk.type = TypeOf(result);
    blk.a = result;
    blk.list = static_cast<uint32_t>(code_.lists.size());
    blk.count = static_cast<uint32_t>(lets.size());
    code_.lists.insert(code_.lists.end(), lets.begin(), lets.end());
    return Add(blk, b.range);
  }

  uint32_t Expr(const ast::Expr& e, int depth) {
    if (!ok_) return Bad();
    if (depth > kMaxDepth) {
      Err(e.range, "expression nested deeper than " + std::to_string(kMaxDepth));
      return Bad();
    }
    max_depth = std::max(max_depth, depth);
    Node n;
    switch (e.kind) {
      case ast::ExprKind::Int:
        n.op = Op::Const;
        n.type = T::LitInt;
        n.value.i = e.int_value;
        return Add(n, e.range);
      case ast::ExprKind::Float:
        n.op = Op::Const;
        n.type = T::LitFloat;
        n.value.f = e.float_value;
        return Add(n, e.range);
      case ast::ExprKind::Bool:
        n.op = Op::Const;
        n.type = T::Bool;
        n.value.i = e.bool_value ? 1 : 0;
        return Add(n, e.range);
      case ast::ExprKind::Name: {
        for (auto it = vars_.rbegin(); it != vars_.rend(); ++it) {
          if (it->name == e.text) {
            n.op = Op::Var;
            n.type = it->type;
            n.slot = it->slot;
            return Add(n, e.range);
          }
        }
        Err(e.range, "unknown name `" + e.text + "`");
        return Bad();
      }
      case ast::ExprKind::Unary: {
        uint32_t a = Expr(*e.operands[0], depth + 1);
        if (!ok_) return Bad();
        T t = TypeOf(a);
        if (e.un_op == ast::UnOp::Not) {
          if (t != T::Bool) {
            Err(e.range, "`not` needs a bool, but the operand is `" + std::string(detail::TName(t)) + "`");
            return Bad();
          }
          n.op = Op::Not;
        } else {
          if (!detail::IsNumericT(t)) {
            Err(e.range, "`-` needs a number, but the operand is `bool`");
            return Bad();
          }
          n.op = Op::Neg;
        }
        n.type = t;
        n.a = a;
        return Add(n, e.range);
      }
      case ast::ExprKind::Binary: return Binary(e, depth);
      case ast::ExprKind::If: {
        uint32_t c = Expr(*e.operands[0], depth + 1);
        if (!ok_) return Bad();
        if (TypeOf(c) != T::Bool) {
          Err(e.operands[0]->range,
              "an `if` condition must be `bool`, but it is `" + std::string(detail::TName(TypeOf(c))) + "`");
          return Bad();
        }
        if (!e.then_block || !e.else_block) {
          Err(e.range, "`if` in a kernel needs an `else` branch");
          return Bad();
        }
        uint32_t a = Block(*e.then_block, e.range, depth + 1);
        uint32_t b = ok_ ? Block(*e.else_block, e.range, depth + 1) : Bad();
        if (!ok_) return Bad();
        T t = Unify(TypeOf(a), TypeOf(b), e.range, "the branches of `if`");
        if (!ok_) return Bad();
        n.op = Op::If;
        n.type = t;
        n.a = c;
        n.b = Coerce(a, t);
        n.c = Coerce(b, t);
        return Add(n, e.range);
      }
      case ast::ExprKind::Call: return Call(e, depth);
      case ast::ExprKind::String:
      case ast::ExprKind::Quantity:
      case ast::ExprKind::List:
      case ast::ExprKind::Map:
      case ast::ExprKind::Field:
      case ast::ExprKind::Index: Err(e.range, "this kind of expression is not allowed in kernels"); return Bad();
    }
    return Bad();
  }

  uint32_t Binary(const ast::Expr& e, int depth) {
    uint32_t a = Expr(*e.operands[0], depth + 1);
    uint32_t b = ok_ ? Expr(*e.operands[1], depth + 1) : Bad();
    if (!ok_) return Bad();
    T ta = TypeOf(a), tb = TypeOf(b);
    std::string op = std::string("`") + ast::Spelling(e.bin_op) + "`";
    Node n;
    n.a = a;
    n.b = b;
    switch (e.bin_op) {
      case ast::BinOp::And:
      case ast::BinOp::Or:
        if (ta != T::Bool || tb != T::Bool) {
          Err(e.range, op + " needs bool operands, but they are `" + std::string(detail::TName(ta)) + "` and `" +
                           std::string(detail::TName(tb)) + "`");
          return Bad();
        }
        n.op = e.bin_op == ast::BinOp::And ? Op::And : Op::Or;
        n.type = T::Bool;
        return Add(n, e.range);
      case ast::BinOp::Pipe: Err(e.range, "`|` is not allowed in kernels"); return Bad();
      default: break;
    }
    T t = Unify(ta, tb, e.range, op);
    if (!ok_) return Bad();
    bool compare = true;
    switch (e.bin_op) {
      case ast::BinOp::Eq: n.op = Op::Eq; break;
      case ast::BinOp::Ne: n.op = Op::Ne; break;
      case ast::BinOp::Lt: n.op = Op::Lt; break;
      case ast::BinOp::Le: n.op = Op::Le; break;
      case ast::BinOp::Gt: n.op = Op::Gt; break;
      case ast::BinOp::Ge: n.op = Op::Ge; break;
      case ast::BinOp::Add:
        n.op = Op::Add;
        compare = false;
        break;
      case ast::BinOp::Sub:
        n.op = Op::Sub;
        compare = false;
        break;
      case ast::BinOp::Mul:
        n.op = Op::Mul;
        compare = false;
        break;
      case ast::BinOp::Div:
        n.op = Op::Div;
        compare = false;
        break;
      case ast::BinOp::Mod:
        n.op = Op::Mod;
        compare = false;
        break;
      default: Err(e.range, "unsupported operator " + op); return Bad();
    }
    if (t == T::Bool && n.op != Op::Eq && n.op != Op::Ne) {
      Err(e.range, op + " needs numbers, but the operands are `bool`");
      return Bad();
    }
    n.a = Coerce(a, t);
    n.b = Coerce(b, t);
    n.in = t;
    n.type = compare ? T::Bool : t;
    return Add(n, e.range);
  }

  uint32_t Call(const ast::Expr& e, int depth) {
    std::vector<uint32_t> args;
    for (const auto& a : e.args) {
      if (a.name) {
        Err(a.name->range, "kernel calls take positional arguments; remove `" + a.name->name + ":`");
        return Bad();
      }
      args.push_back(Expr(*a.value, depth + 1));
      if (!ok_) return Bad();
    }
    auto arity = [&](size_t want) {
      if (args.size() == want) return true;
      Err(e.range, "`" + e.text + "` takes " + std::to_string(want) + " argument" + (want == 1 ? "" : "s") + ", but " +
                       std::to_string(args.size()) + " were given");
      return false;
    };
    Node n;
    if (auto conv = detail::ScalarTypeNamed(e.text)) {  // f32(x), i64(x), ...
      if (!arity(1)) return Bad();
      T from = TypeOf(args[0]);
      if (*conv == T::Bool || from == T::Bool) {
        Err(e.range, "`" + e.text + "(...)` converts between number types only");
        return Bad();
      }
      if (from == *conv) return args[0];
      if (code_.nodes[args[0]].op == Op::Const && (from == T::LitInt || (from == T::LitFloat && IsFloatT(*conv)))) {
        return Coerce(args[0], *conv);
      }
      n.op = Op::Convert;
      n.type = *conv;
      n.in = from;
      n.a = args[0];
      return Add(n, e.range);
    }
    for (const auto& b : schema::KernelBuiltins()) {
      if (b.name != e.text) continue;
      if (!arity(static_cast<size_t>(b.arity))) return Bad();
      T t = TypeOf(args[0]);
      for (size_t k = 1; k < args.size() && ok_; ++k) {
        t = Unify(t, TypeOf(args[k]), e.range, "the arguments of `" + e.text + "`");
      }
      if (!ok_) return Bad();
      if (t == T::Bool) {
        Err(e.range, "`" + e.text + "` needs numbers, but its argument is `bool`");
        return Bad();
      }
      static const std::map<std::string_view, detail::Fn> kFns = {
          {"exp", detail::Fn::Exp},     {"log", detail::Fn::Log},     {"sqrt", detail::Fn::Sqrt},
          {"sin", detail::Fn::Sin},     {"cos", detail::Fn::Cos},     {"tanh", detail::Fn::Tanh},
          {"abs", detail::Fn::Abs},     {"min", detail::Fn::Min},     {"max", detail::Fn::Max},
          {"clamp", detail::Fn::Clamp}, {"floor", detail::Fn::Floor}, {"pow", detail::Fn::Pow},
      };
      auto fn = kFns.find(b.name);
      if (fn == kFns.end()) {
        Err(e.range, "builtin `" + e.text + "` has no implementation in the interpreter");
        return Bad();
      }
      bool float_only = b.name != "abs" && b.name != "min" && b.name != "max" && b.name != "clamp";
      if (float_only && !IsFloatT(t)) {
        if (t != T::LitInt) {
          Err(e.range, "`" + e.text + "` needs a float, but its argument is `" + std::string(detail::TName(t)) + "`");
          return Bad();
        }
        t = T::LitFloat;  // a float builtin given only integer literals computes in floats
      }
      n.op = Op::Builtin;
      n.fn = fn->second;
      n.type = t;
      n.in = t;
      n.count = static_cast<uint32_t>(args.size());
      n.a = Coerce(args[0], t);
      if (args.size() > 1) n.b = Coerce(args[1], t);
      if (args.size() > 2) n.c = Coerce(args[2], t);
      return Add(n, e.range);
    }
    std::string why;
    const CompiledKernel* callee = resolve_(e.text, &why);
    if (!callee) {
      Err(e.name_range.valid() ? e.name_range : e.range, why);
      return Bad();
    }
    if (!arity(callee->params().size())) return Bad();
    for (size_t k = 0; k < args.size(); ++k) {
      T want = detail::FromScalar(callee->params()[k]);
      if (!detail::Assignable(TypeOf(args[k]), want)) {
        Err(e.args[k].value->range, "argument " + std::to_string(k + 1) + " of `" + e.text + "` must be `" +
                                        std::string(detail::TName(want)) + "`, but it is `" +
                                        std::string(detail::TName(TypeOf(args[k]))) + "`");
        return Bad();
      }
      args[k] = Coerce(args[k], want);
    }
    n.op = Op::Call;
    n.type = detail::FromScalar(callee->result());
    n.callee = callee;
    n.list = static_cast<uint32_t>(code_.lists.size());
    n.count = static_cast<uint32_t>(args.size());
    code_.lists.insert(code_.lists.end(), args.begin(), args.end());
    callees.push_back(callee);
    return Add(n, e.range);
  }
};

bool ParseType(const std::string& s, ScalarType* out) {
  auto t = detail::ScalarTypeNamed(s);
  if (!t) return false;
  *out = static_cast<ScalarType>(*t);
  return true;
}

}  // namespace

namespace detail {
bool CompileEnvStep(const ast::EnvItem& step, const std::vector<std::string>& fields,
                    const std::vector<ScalarType>& params, KernelCode& code, const KernelResolver& resolve,
                    std::string* error) {
  if (!step.step || params.size() != fields.size() + 1) {
    *error = "env `" + code.kernel + "`: its step function is missing";
    return false;
  }
  KernelCompiler kc(code, resolve);
  if (!kc.CompileStep(step, fields, params)) {
    *error = kc.error;
    return false;
  }
  return true;
}
}  // namespace detail

std::unique_ptr<KernelProgram> KernelProgram::Build(const plan::v1::Plan& plan, std::string* error,
                                                    const KernelOptions& options) {
  auto fail = [&](std::string msg) {
    if (error) *error = std::move(msg);
    return nullptr;
  };
  std::unique_ptr<KernelProgram> prog(new KernelProgram());
  std::map<std::string, CompiledKernel*, std::less<>> by_name;
  // Signatures first, so that calls can be typed in any order.
  for (const auto& pk : plan.kernels()) {
    auto k = std::make_unique<CompiledKernel>();
    k->name_ = pk.name();
    k->options_ = options;
    std::string where = "kernel `" + pk.name() + "`";
    if (pk.name().empty()) return fail("a kernel in the plan has no name");
    if (pk.params_size() > static_cast<int>(kMaxParams)) return fail(where + " has more than 256 parameters");
    for (const auto& p : pk.params()) {
      ScalarType t;
      if (!ParseType(p.type(), &t)) return fail(where + ": parameter `" + p.name() + "` has unknown type `" + p.type() + "`");
      k->params_.push_back(t);
    }
    if (!ParseType(pk.return_type(), &k->result_)) {
      return fail(where + " has unknown return type `" + pk.return_type() + "`");
    }
    auto code = std::make_unique<detail::KernelCode>();
    code->source = pk.source();
    code->file = pk.source_range().file();
    code->line = pk.source_range().line();
    code->column = pk.source_range().column();
    code->kernel = pk.name();
    k->code_ = std::move(code);
    if (!by_name.emplace(pk.name(), k.get()).second) return fail("the plan declares kernel `" + pk.name() + "` twice");
    prog->kernels_.push_back(std::move(k));
  }
  std::map<const CompiledKernel*, std::vector<const CompiledKernel*>> graph;
  std::map<const CompiledKernel*, int> own_depth;
  for (int idx = 0; idx < plan.kernels_size(); ++idx) {
    const auto& pk = plan.kernels(idx);
    CompiledKernel& k = *prog->kernels_[idx];
    detail::KernelCode& code = *k.code_;
    SourceManager sm;
    FileId file = sm.Add(code.file.empty() ? "<kernel>" : code.file, code.source);
    Diagnostics diags;
    std::unique_ptr<ast::File> ast = Parse(sm, file, diags);
    if (diags.has_errors() || !ast) {
      for (const auto& d : diags.all()) {
        if (d.severity == Severity::Error) {
          return fail(code.Where(d.range.valid() ? d.range.begin : 0) + ": " + d.message + " (in kernel `" +
                      pk.name() + "`)");
        }
      }
      return fail("kernel `" + pk.name() + "`: its source does not parse");
    }
    if (ast->decls.size() != 1 || ast->decls[0]->kind != ast::DeclKind::Kernel) {
      return fail("kernel `" + pk.name() + "`: its source must be exactly one kernel declaration");
    }
    const auto& decl = static_cast<const ast::KernelDecl&>(*ast->decls[0]);
    if (decl.name.name != LastPart(pk.name())) {
      return fail("kernel `" + pk.name() + "`: its source declares `" + decl.name.name + "`");
    }
    code.kernel = decl.name.name;
    if (decl.params.size() != k.params_.size()) {
      return fail("kernel `" + pk.name() + "`: the plan lists " + std::to_string(k.params_.size()) +
                  " parameters, but its source has " + std::to_string(decl.params.size()));
    }
    for (size_t p = 0; p < decl.params.size(); ++p) {
      if (decl.params[p].name.name != pk.params(static_cast<int>(p)).name() ||
          decl.params[p].type.str() != pk.params(static_cast<int>(p)).type()) {
        return fail("kernel `" + pk.name() + "`: parameter " + std::to_string(p + 1) +
                    " differs between the plan and the source");
      }
    }
    if (decl.ret.str() != pk.return_type()) {
      return fail("kernel `" + pk.name() + "`: the return type differs between the plan and the source");
    }
    // A call in the source names its callee as the caller's file sees it (`center`, `m.clamp01`);
    // the plan's `calls` hold plan names. Match by the declared name, then by qualifier.
    auto resolve = [&](const std::string& text, std::string* why) -> const CompiledKernel* {
      std::string_view last = LastPart(text);
      std::vector<std::string_view> cands;
      for (const auto& c : pk.calls()) {
        if (LastPart(c) == last) cands.push_back(c);
      }
      std::string_view pick;
      if (cands.size() == 1) {
        pick = cands[0];
      } else {
        for (auto c : cands) {
          if (c == text) pick = c;
        }
        if (pick.empty() && !cands.empty()) {
          *why = "call of `" + text + "` is ambiguous between kernels of the plan";
          return nullptr;
        }
        if (cands.empty()) {
          // No `calls` entry: the same name, or the caller's own qualifier.
          if (by_name.count(text)) {
            pick = text;
          } else if (size_t dot = pk.name().rfind('.'); dot != std::string::npos &&
                                                        by_name.count(pk.name().substr(0, dot + 1) + text)) {
            auto it = by_name.find(pk.name().substr(0, dot + 1) + text);
            return it->second;
          }
        }
      }
      auto it = by_name.find(pick);
      if (pick.empty() || it == by_name.end()) {
        *why = "unknown kernel `" + text + "` (not in the plan)";
        return nullptr;
      }
      return it->second;
    };
    KernelCompiler kc(code, resolve);
    if (!kc.Compile(decl, k.params_, k.result_)) return fail(kc.error);
    graph[&k] = kc.callees;
    own_depth[&k] = kc.max_depth;
  }
  // No recursion, and a bounded depth of interpreter recursion along call chains.
  std::map<const CompiledKernel*, int> state, total;
  std::vector<const CompiledKernel*> stack;
  std::string cycle;
  std::function<bool(const CompiledKernel*)> visit = [&](const CompiledKernel* k) -> bool {
    state[k] = 1;
    stack.push_back(k);
    int deepest = 0;
    for (const auto* c : graph[k]) {
      if (state[c] == 1) {
        for (auto it = std::find(stack.begin(), stack.end(), c); it != stack.end(); ++it) {
          cycle += "`" + (*it)->name() + "` -> ";
        }
        cycle += "`" + c->name() + "`";
        return false;
      }
      if (state[c] == 0 && !visit(c)) return false;
      deepest = std::max(deepest, total[c]);
    }
    total[k] = own_depth[k] + deepest + 1;
    stack.pop_back();
    state[k] = 2;
    return true;
  };
  for (const auto& k : prog->kernels_) {
    if (state[k.get()] == 0 && !visit(k.get())) {
      return fail("kernel `" + stack.back()->name() + "` is recursive: " + cycle + "; kernels cannot recurse");
    }
    if (total[k.get()] > kMaxTotalDepth) {
      return fail("kernel `" + k->name() + "`: its calls nest too deeply to evaluate (depth " +
                  std::to_string(total[k.get()]) + ", at most " + std::to_string(kMaxTotalDepth) + ")");
    }
  }
  return prog;
}

const CompiledKernel* KernelProgram::Find(std::string_view name) const {
  for (const auto& k : kernels_) {
    if (k->name() == name) return k.get();
  }
  return nullptr;
}

namespace {

Slot ToSlot(const Scalar& s) {
  Slot v;
  if (s.type == ScalarType::F32 || s.type == ScalarType::F64) {
    v.f = s.type == ScalarType::F32 ? static_cast<double>(static_cast<float>(s.f)) : s.f;
  } else if (s.type == ScalarType::I32) {
    v.i = static_cast<int32_t>(s.i);
  } else if (s.type == ScalarType::Bool) {
    v.i = s.i != 0;
  } else {
    v.i = s.i;
  }
  return v;
}

Scalar FromSlot(ScalarType t, Slot v) {
  Scalar s;
  s.type = t;
  if (t == ScalarType::F32 || t == ScalarType::F64) {
    s.f = v.f;
  } else {
    s.i = v.i;
  }
  return s;
}

// Reads element `k` of a column as a kernel value of type `to`.
using Reader = Slot (*)(const uint8_t* base, uint64_t k);
template <class Src, bool ToFloat>
Slot Read(const uint8_t* base, uint64_t k) {
  Src v;
  std::memcpy(&v, base + k * sizeof(Src), sizeof(Src));
  Slot s;
  if constexpr (ToFloat) {
    s.f = static_cast<double>(v);
  } else {
    s.i = static_cast<int64_t>(v);
  }
  return s;
}
template <class Src>
Slot ReadF32Of(const uint8_t* base, uint64_t k) {
  Src v;
  std::memcpy(&v, base + k * sizeof(Src), sizeof(Src));
  Slot s;
  s.f = static_cast<float>(v);  // into an f32 parameter: round as the kernel's float would
  return s;
}
template <class Src>
Slot ReadI32Of(const uint8_t* base, uint64_t k) {
  Src v;
  std::memcpy(&v, base + k * sizeof(Src), sizeof(Src));
  Slot s;
  s.i = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v)));
  return s;
}

bool PickReader(const Column& c, ScalarType to, Reader* r) {
  bool int_col = c.dtype == DType::U8 || c.dtype == DType::I32 || c.dtype == DType::I64;
  switch (to) {
    case ScalarType::Bool:
      if (c.dtype != DType::Bool) return false;
      *r = &Read<uint8_t, false>;
      return true;
    case ScalarType::I32:
    case ScalarType::I64:
      if (!int_col) return false;
      if (to == ScalarType::I32) {
        *r = c.dtype == DType::U8 ? &ReadI32Of<uint8_t> : c.dtype == DType::I32 ? &ReadI32Of<int32_t> : &ReadI32Of<int64_t>;
      } else {
        *r = c.dtype == DType::U8 ? &Read<uint8_t, false> : c.dtype == DType::I32 ? &Read<int32_t, false>
                                                                                  : &Read<int64_t, false>;
      }
      return true;
    case ScalarType::F32:
    case ScalarType::F64: {
      bool f32 = to == ScalarType::F32;
      switch (c.dtype) {
        case DType::U8: *r = f32 ? &ReadF32Of<uint8_t> : &Read<uint8_t, true>; return true;
        case DType::I32: *r = f32 ? &ReadF32Of<int32_t> : &Read<int32_t, true>; return true;
        case DType::I64: *r = f32 ? &ReadF32Of<int64_t> : &Read<int64_t, true>; return true;
        case DType::F32: *r = &Read<float, true>; return true;
        case DType::F64: *r = f32 ? &ReadF32Of<double> : &Read<double, true>; return true;
        case DType::Bool: return false;
      }
      return false;
    }
  }
  return false;
}

void Write(uint8_t* base, uint64_t k, ScalarType t, Slot v) {
  switch (t) {
    case ScalarType::Bool: base[k] = v.i ? 1 : 0; break;
    case ScalarType::I32: {
      int32_t x = static_cast<int32_t>(v.i);
      std::memcpy(base + 4 * k, &x, 4);
      break;
    }
    case ScalarType::I64: std::memcpy(base + 8 * k, &v.i, 8); break;
    case ScalarType::F32: {
      float x = static_cast<float>(v.f);
      std::memcpy(base + 4 * k, &x, 4);
      break;
    }
    case ScalarType::F64: std::memcpy(base + 8 * k, &v.f, 8); break;
  }
}

bool ArgReaders(const CompiledKernel& k, std::span<const Column* const> args, std::vector<Reader>* readers,
                std::string* error) {
  if (args.size() != k.params().size()) {
    if (error) {
      *error = "kernel `" + k.name() + "` takes " + std::to_string(k.params().size()) + " argument(s), but " +
               std::to_string(args.size()) + " column(s) were given";
    }
    return false;
  }
  for (size_t a = 0; a < args.size(); ++a) {
    Reader r;
    if (!PickReader(*args[a], k.params()[a], &r)) {
      if (error) {
        *error = "kernel `" + k.name() + "` takes `" + std::string(ScalarTypeName(k.params()[a])) +
                 "` as parameter " + std::to_string(a + 1) + ", but column `" + args[a]->name + "` is " +
                 std::string(DTypeName(args[a]->dtype));
      }
      return false;
    }
    if (args[a]->elems() != args[0]->elems()) {
      if (error) {
        *error = "kernel `" + k.name() + "`: column `" + args[a]->name + "` has " + std::to_string(args[a]->elems()) +
                 " elements, but column `" + args[0]->name + "` has " + std::to_string(args[0]->elems());
      }
      return false;
    }
    readers->push_back(r);
  }
  return true;
}

}  // namespace

namespace {

// Checks the arguments against the parameters and converts them to slots.
bool ArgSlots(const CompiledKernel& k, const std::string& what, std::span<const Scalar> args, std::vector<Slot>* slots,
              std::string* error) {
  if (args.size() != k.params().size()) {
    if (error) {
      *error = what + " takes " + std::to_string(k.params().size()) + " argument(s), but " +
               std::to_string(args.size()) + " were given";
    }
    return false;
  }
  for (size_t a = 0; a < args.size(); ++a) {
    if (args[a].type != k.params()[a]) {
      if (error) {
        *error = what + ": argument " + std::to_string(a + 1) + " must be `" +
                 std::string(ScalarTypeName(k.params()[a])) + "`, but it is `" +
                 std::string(ScalarTypeName(args[a].type)) + "`";
      }
      return false;
    }
    slots->push_back(ToSlot(args[a]));
  }
  return true;
}

}  // namespace

bool CompiledKernel::Call(std::span<const Scalar> args, Scalar* out, std::string* error) const {
  if (!outputs_.empty()) {
    if (error) *error = "`" + name_ + "` is an env step with several results; use CallMulti";
    return false;
  }
  std::vector<Slot> slots;
  if (!ArgSlots(*this, "kernel `" + name_ + "`", args, &slots, error) || !Tier(error)) return false;
  Slot r;
  if (const NativeCode* nc = native(); nc && nc->fns.call) {
    native_calls_.fetch_add(1, std::memory_order_relaxed);
    if (nc->fns.call(slots.data(), &r) == 0) {
      *out = FromSlot(result_, r);
      return true;
    }
    // A check failed: the interpreter below says which, and where.
  }
  detail::Evaluator ev;
  ev.error = error;
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (!ev.Run(*this, slots.data(), &r)) return false;
  *out = FromSlot(result_, r);
  return true;
}

bool CompiledKernel::CallMulti(std::span<const Scalar> args, std::vector<Scalar>* out, std::string* error) const {
  if (outputs_.empty()) {
    if (error) *error = "`" + name_ + "` has one result; use Call";
    return false;
  }
  std::vector<Slot> slots;
  if (!ArgSlots(*this, "`" + name_ + "`", args, &slots, error) || !Tier(error)) return false;
  std::vector<Slot> r(outputs_.size());
  bool done = false;
  if (const NativeCode* nc = native(); nc && nc->fns.call) {
    native_calls_.fetch_add(1, std::memory_order_relaxed);
    done = nc->fns.call(slots.data(), r.data()) == 0;
  }
  if (!done) {
    detail::Evaluator ev;
    ev.error = error;
    calls_.fetch_add(1, std::memory_order_relaxed);
    if (!ev.Run(*this, slots.data(), r.data())) return false;
  }
  out->clear();
  for (size_t o = 0; o < outputs_.size(); ++o) out->push_back(FromSlot(outputs_[o], r[o]));
  return true;
}

namespace {

size_t ElemSize(ScalarType t) {
  return t == ScalarType::Bool ? 1 : (t == ScalarType::I32 || t == ScalarType::F32) ? 4 : 8;
}

// The column's dtype holds exactly the parameter's type: native code can read it in place.
bool SameRepr(DType d, ScalarType t) {
  return (d == DType::Bool && t == ScalarType::Bool) || (d == DType::I32 && t == ScalarType::I32) ||
         (d == DType::I64 && t == ScalarType::I64) || (d == DType::F32 && t == ScalarType::F32) ||
         (d == DType::F64 && t == ScalarType::F64);
}

}  // namespace

bool MapColumns(const CompiledKernel& k, std::span<const Column* const> args, Column* out, std::string* error) {
  if (args.empty()) {
    if (error) *error = "kernel `" + k.name() + "`: map needs at least one column";
    return false;
  }
  if (!k.outputs().empty()) {
    if (error) *error = "`" + k.name() + "` is an env step, not a kernel to map";
    return false;
  }
  std::vector<Reader> readers;
  if (!ArgReaders(k, args, &readers, error)) return false;
  const Column& first = *args[0];
  Column result = Column::Make(first.name, ToDType(k.result()), first.shape, first.rows());
  uint64_t n = first.elems();
  uint8_t* dst = result.mutable_bytes();
  std::vector<const uint8_t*> bases;
  for (const Column* c : args) bases.push_back(c->bytes().data());
  std::vector<Slot> in(args.size());
  detail::Evaluator ev;
  ev.error = error;
  // Interprets elements [b, e); false at the first that fails.
  auto interpret = [&](uint64_t b, uint64_t e) {
    for (uint64_t x = b; x < e; ++x) {
      for (size_t a = 0; a < args.size(); ++a) in[a] = readers[a](bases[a], x);
      Slot r;
      if (!ev.Run(k, in.data(), &r)) {
        k.calls_.fetch_add(x - b + 1, std::memory_order_relaxed);
        return false;
      }
      Write(dst, x, k.result(), r);
    }
    k.calls_.fetch_add(e - b, std::memory_order_relaxed);
    return true;
  };
  // Work goes in chunks, so that a kernel that gets hot switches to native
  // code while the map is still running.
  constexpr uint64_t kChunk = 1 << 16;
  std::vector<std::vector<uint8_t>> scratch(args.size());
  std::vector<const void*> ptrs(args.size());
  const size_t out_size = ElemSize(k.result());
  for (uint64_t b = 0; b < n; b += kChunk) {
    uint64_t e = std::min(n, b + kChunk);
    if (!k.Tier(error)) return false;
    const NativeCode* nc = k.native();
    if (!nc || !nc->fns.map) {
      if (!interpret(b, e)) return false;
      continue;
    }
    for (size_t a = 0; a < args.size(); ++a) {
      ScalarType t = k.params()[a];
      if (SameRepr(args[a]->dtype, t)) {
        ptrs[a] = bases[a] + b * ElemSize(t);
        continue;
      }
      scratch[a].resize((e - b) * ElemSize(t));
      for (uint64_t x = b; x < e; ++x) Write(scratch[a].data(), x - b, t, readers[a](bases[a], x));
      ptrs[a] = scratch[a].data();
    }
    uint32_t site = nc->fns.map(ptrs.data(), dst + b * out_size, static_cast<int64_t>(e - b));
    k.native_calls_.fetch_add(e - b, std::memory_order_relaxed);
    if (site != 0) {
      if (interpret(b, e)) {
        if (error) {
          *error = "kernel `" + k.name() + "`: native code failed check " + std::to_string(site) +
                   " that the interpreter passed (a bug in mlpc; run with --jit=off)";
        }
      }
      return false;
    }
  }
  *out = std::move(result);
  return true;
}

bool FilterMask(const CompiledKernel& k, const Column& arg, std::vector<uint8_t>* mask, std::string* error) {
  if (k.result() != ScalarType::Bool) {
    if (error) *error = "kernel `" + k.name() + "` returns `" + std::string(ScalarTypeName(k.result())) + "`, not `bool`";
    return false;
  }
  const Column* args[] = {&arg};
  Column flags;
  if (!MapColumns(k, args, &flags, error)) return false;
  uint64_t per_row = arg.row_elems();
  auto v = flags.values<uint8_t>();
  mask->assign(arg.rows(), 1);
  for (uint64_t r = 0; r < arg.rows(); ++r) {
    for (uint64_t e = 0; e < per_row; ++e) {
      if (!v[r * per_row + e]) {
        (*mask)[r] = 0;
        break;
      }
    }
  }
  return true;
}

}  // namespace mlp::rt::ops
