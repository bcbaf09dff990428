// A differential test of the two kernel tiers: thousands of random well-typed
// kernels (a fixed seed), each run by the interpreter and by the native tier on
// edge-case inputs, per call and over whole columns. Integers and bools must
// match bit for bit, floats within 1 ulp, and errors word for word.
#include <gtest/gtest.h>

#include <bit>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/jit/jit.h"
#include "runtime/ops/kernel_interp.h"
#include "tests/test_util.h"


namespace mlp::rt::ops {
namespace {

// ---------------------------------------------------------------------------
// Random numbers: splitmix64, so that the kernels are the same on every
// standard library (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return n ? Next() % n : 0; }
  int64_t Range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo + 1))); }
  bool Chance(int percent) { return Below(100) < static_cast<uint64_t>(percent); }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1p-53; }
  template <class T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

 private:
  uint64_t s_;
};

// ---------------------------------------------------------------------------
// The generator's static types: the five scalar types and the two literal
// types (an untyped integer literal becomes any number type, a float literal
// a float type).
enum class Ty : uint8_t { Bool, I32, I64, F32, F64, LitInt, LitFloat };

const char* TyName(Ty t) {
  switch (t) {
    case Ty::Bool: return "bool";
    case Ty::I32: return "i32";
    case Ty::I64: return "i64";
    case Ty::F32: return "f32";
    case Ty::F64: return "f64";
    case Ty::LitInt: return "<int literal>";
    case Ty::LitFloat: return "<float literal>";
  }
  return "?";
}
bool IsFloatTy(Ty t) { return t == Ty::F32 || t == Ty::F64 || t == Ty::LitFloat; }
bool IsIntTy(Ty t) { return t == Ty::I32 || t == Ty::I64 || t == Ty::LitInt; }
bool IsConcrete(Ty t) { return t != Ty::LitInt && t != Ty::LitFloat; }
ScalarType ToScalar(Ty t) {
  switch (t) {
    case Ty::Bool: return ScalarType::Bool;
    case Ty::I32: return ScalarType::I32;
    case Ty::I64: return ScalarType::I64;
    case Ty::F32: return ScalarType::F32;
    default: return ScalarType::F64;
  }
}
// The types an expression may have where `t` is expected (literals adapt).
std::vector<Ty> Weaker(Ty t) {
  switch (t) {
    case Ty::I32:
    case Ty::I64: return {Ty::LitInt};
    case Ty::F32:
    case Ty::F64: return {Ty::LitInt, Ty::LitFloat};
    case Ty::LitFloat: return {Ty::LitInt};
    default: return {};
  }
}

const std::vector<Ty> kScalarTypes = {Ty::Bool, Ty::I32, Ty::I64, Ty::F32, Ty::F64};
const std::vector<Ty> kNumberTypes = {Ty::I32, Ty::I64, Ty::F32, Ty::F64};
const std::vector<Ty> kAnyNumber = {Ty::I32, Ty::I64, Ty::F32, Ty::F64, Ty::LitInt, Ty::LitFloat};

struct GenKernel {
  std::string name;
  std::vector<Ty> params;
  Ty ret = Ty::F64;
  std::string source;
  std::vector<std::string> calls;  // direct callees, each once
  int cost = 0;                    // rough nodes evaluated per call, callees included
};

// Makes one kernel that may call the kernels made before it (a DAG).
class KernelGen {
 public:
  KernelGen(Rng& rng, const std::vector<GenKernel>& earlier) : r_(rng), earlier_(earlier) {}

  GenKernel Make(const std::string& name) {
    GenKernel k;
    k.name = name;
    size_t n = 1 + r_.Below(4);
    for (size_t p = 0; p < n; ++p) k.params.push_back(r_.Pick(kScalarTypes));
    k.ret = r_.Pick(kScalarTypes);
    max_depth_ = static_cast<int>(2 + r_.Below(4));
    budget_ = static_cast<int>(8 + r_.Below(50));
    std::string src = "kernel " + name + "(";
    for (size_t p = 0; p < n; ++p) {
      std::string pn = "p" + std::to_string(p);
      src += (p ? ", " : "") + pn + ": " + TyName(k.params[p]);
      scope_.push_back({pn, k.params[p]});
    }
    src += ") -> " + std::string(TyName(k.ret)) + " {\n";
    int lets = static_cast<int>(r_.Below(5));
    for (int l = 0; l < lets; ++l) src += "  " + Let(1) + "\n";
    src += "  " + Expr(k.ret, false, 1) + "\n}\n";
    k.source = std::move(src);
    k.calls.assign(calls_.begin(), calls_.end());
    k.cost = cost_;
    return k;
  }

 private:
  struct Var {
    std::string name;
    Ty type;
  };
  Rng& r_;
  const std::vector<GenKernel>& earlier_;
  std::vector<Var> scope_;
  std::set<std::string> calls_;
  int next_var_ = 0;
  int max_depth_ = 4;
  int budget_ = 20;
  int cost_ = 0;

  bool Leaf(int depth) const { return depth >= max_depth_ || budget_ <= 0; }

  std::vector<std::string> VarsOf(Ty t) const {
    std::vector<std::string> out;
    for (const auto& v : scope_) {
      if (v.type == t) out.push_back(v.name);
    }
    return out;
  }

  std::string IntLit() {
    static const std::vector<std::string> kSpecial = {
        "0",          "1",          "2",          "3",          "7",          "10",         "255",
        "1_000",      "65536",      "2147483647", "2147483648", "4294967295", "4294967296", "9223372036854775807",
        "1000000007", "9007199254740993",
        "1152921573326323713"};  // 2^60 + 2^36 + 1: rounds differently to f32 directly and through f64
    if (r_.Chance(50)) return std::to_string(r_.Below(11));
    return r_.Pick(kSpecial);
  }
  std::string FloatLit() {
    static const std::vector<std::string> kSpecial = {
        "0.0",   "0.5",          "1.0",   "2.0",   "0.1",   "255.0",  "0.3530",  "1e6",
        "1.5e-7", "3.4028235e38", "3.5e38", "1e300", "1e-45", "1.0e-320", "2147483648.0", "9.3e18",
        "6.283185307179586", "1_000.25"};
    if (r_.Chance(40)) {
      return std::to_string(r_.Below(100)) + "." + std::to_string(r_.Below(1000));
    }
    return r_.Pick(kSpecial);
  }

  // `let` of a random type: typed, untyped, or an untyped literal.
  std::string Let(int depth) {
    std::string name = "v" + std::to_string(next_var_++);
    std::string text;
    Ty t;
    int kind = static_cast<int>(r_.Below(10));
    if (kind < 2) {  // stays a literal until used
      t = r_.Chance(50) ? Ty::LitInt : Ty::LitFloat;
      text = "let " + name + " = " + Expr(t, true, depth + 1);
    } else {
      t = r_.Pick(kScalarTypes);
      if (kind < 6) {
        text = "let " + name + ": " + TyName(t) + " = " + Expr(t, false, depth + 1);
      } else {
        text = "let " + name + " = " + Expr(t, true, depth + 1);
      }
    }
    scope_.push_back({name, t});
    return text;
  }

  // `{ lets; value }`, the lets scoped to the block.
  std::string Block(Ty t, bool exact, int depth) {
    size_t mark = scope_.size();
    std::string s = "{ ";
    int lets = r_.Chance(40) ? static_cast<int>(1 + r_.Below(2)) : 0;
    for (int l = 0; l < lets; ++l) s += Let(depth) + "; ";
    s += Expr(t, exact, depth) + " }";
    scope_.resize(mark);
    return s;
  }

  // An `if` chain of type t: one branch has exactly t when `exact`, the others may be literals.
  std::string If(Ty t, bool exact, int depth) {
    int branches = static_cast<int>(2 + r_.Below(3));
    int exact_at = static_cast<int>(r_.Below(static_cast<uint64_t>(branches)));
    std::string s;
    for (int b = 0; b < branches; ++b) {
      if (b + 1 < branches) s += (b ? " else if " : "if ") + Expr(Ty::Bool, true, depth + 1) + " ";
      if (b + 1 == branches) s += " else ";
      s += Block(t, exact && b == exact_at, depth + 1);
    }
    return "(" + s + ")";
  }

  // A divisor that is often 0 or -1, sometimes safely nonzero; of exactly t when `exact`.
  std::string Divisor(Ty t, bool exact, int depth) {
    auto lit = [&](const std::string& v) {
      return exact && IsConcrete(t) ? std::string(TyName(t)) + "(" + v + ")" : v;
    };
    switch (r_.Below(12)) {
      case 0:
      case 1:
      case 2:
      case 3: return Expr(t, exact, depth + 1);
      case 4:
      case 5: return "((" + Expr(t, true, depth + 1) + " % 3) - 1)";  // in [-3, 1]
      case 6:
      case 7: return "((" + Expr(t, true, depth + 1) + " % 7) + 8)";  // in [2, 14]
      case 8: return "max(" + Expr(t, true, depth + 1) + ", 1)";
      case 9: return lit("(-1)");
      case 10: return lit(r_.Chance(10) ? "0" : "2");
      default: return "(-" + Expr(t, true, depth + 1) + ")";
    }
  }

  std::string Call(Ty t, int depth) {
    std::vector<const GenKernel*> ok;
    for (const auto& k : earlier_) {
      if (k.ret == t && k.cost <= 80 && cost_ + k.cost <= 240) ok.push_back(&k);
    }
    if (ok.empty()) return "";
    const GenKernel& k = *ok[r_.Below(ok.size())];
    cost_ += k.cost;
    calls_.insert(k.name);
    std::string s = k.name + "(";
    for (size_t a = 0; a < k.params.size(); ++a) s += (a ? ", " : "") + Expr(k.params[a], false, depth + 1);
    return s + ")";
  }

  // An expression of static type exactly `t`, or (unless `exact`) of a literal type that becomes `t`.
  std::string Expr(Ty t, bool exact, int depth) {
    ++cost_;
    if (!exact) {
      std::vector<Ty> w = Weaker(t);
      if (!w.empty() && r_.Chance(20)) return Expr(r_.Pick(w), true, depth);
    }
    if (Leaf(depth) || (depth > 1 && r_.Chance(15))) return LeafOf(t);
    --budget_;
    if (t == Ty::Bool) return BoolExpr(depth);
    for (;;) {
      switch (r_.Below(16)) {
        case 0:
        case 1:
        case 2:
        case 3: return Arith(t, depth);
        case 4: return "(-" + Expr(t, true, depth + 1) + ")";
        case 5:
        case 6:
          if (IsConcrete(t)) return Convert(t, depth);
          break;
        case 7:
        case 8:
        case 9: return Builtin(t, depth);
        case 10:
        case 11: return If(t, exact, depth);
        case 12:
        case 13:
          if (IsConcrete(t)) {
            std::string c = Call(t, depth);
            if (!c.empty()) return c;
          }
          break;
        default: return LeafOf(t);
      }
    }
  }

  std::string LeafOf(Ty t) {
    std::vector<std::string> vars = VarsOf(t);
    if (!vars.empty() && r_.Chance(75)) return r_.Pick(vars);
    if (t == Ty::Bool) {
      // Mostly a test of a variable, so that conditions depend on the inputs.
      std::vector<const Var*> nums;
      for (const auto& v : scope_) {
        if (v.type != Ty::Bool) nums.push_back(&v);
      }
      if (nums.empty() || r_.Chance(20)) return r_.Chance(50) ? "true" : "false";
      static const char* kCmp[] = {"<", "<=", ">", ">=", "==", "!="};
      const Var& v = *nums[r_.Below(nums.size())];
      std::string lit = IsFloatTy(v.type) && r_.Chance(50) ? FloatLit() : IntLit();
      return "(" + v.name + " " + kCmp[r_.Below(6)] + " " + lit + ")";
    }
    if (t == Ty::LitInt) return IntLit();
    if (t == Ty::LitFloat) return FloatLit();
    // Exactly t from a variable of another type (float to int rarely: it fails on NaN), or from a literal.
    std::vector<std::string> others;
    for (const auto& v : scope_) {
      if (v.type != Ty::Bool && (!(IsIntTy(t) && IsFloatTy(v.type)) || r_.Chance(15))) others.push_back(v.name);
    }
    if (!others.empty() && r_.Chance(80)) return std::string(TyName(t)) + "(" + r_.Pick(others) + ")";
    return std::string(TyName(t)) + "(" + (IsFloatTy(t) && r_.Chance(60) ? FloatLit() : IntLit()) + ")";
  }

  std::string Arith(Ty t, int depth) {
    static const char* kOps[] = {"+", "-", "*", "/", "%"};
    const char* op = kOps[r_.Below(5)];
    bool left_exact = r_.Chance(50);
    std::string a = Expr(t, left_exact, depth + 1);
    bool divides = op[0] == '/' || op[0] == '%';
    std::string b = IsIntTy(t) && divides ? Divisor(t, !left_exact, depth) : Expr(t, !left_exact, depth + 1);
    return "(" + a + " " + op + " " + b + ")";
  }

  std::string Convert(Ty t, int depth) {
    Ty from = r_.Pick(kAnyNumber);
    std::string x = Expr(from, true, depth + 1);
    if (IsIntTy(t) && IsFloatTy(from) && r_.Chance(40)) {
      // Often in range, so that the conversion does not always fail.
      x = "clamp(" + x + ", -1000000.0, 1000000.0)";
      if (r_.Chance(50)) x = "floor(" + x + ")";
    }
    return std::string(TyName(t)) + "(" + x + ")";
  }

  std::string Builtin(Ty t, int depth) {
    struct B {
      const char* name;
      int arity;
      bool float_only;
    };
    static const B kAll[] = {{"exp", 1, true},   {"log", 1, true},   {"sqrt", 1, true},  {"sin", 1, true},
                             {"cos", 1, true},   {"tanh", 1, true},  {"floor", 1, true}, {"pow", 2, true},
                             {"abs", 1, false},  {"min", 2, false},  {"max", 2, false},  {"clamp", 3, false}};
    std::vector<B> ok;
    for (const B& b : kAll) {
      if (!b.float_only || IsFloatTy(t)) ok.push_back(b);
    }
    B b = ok[r_.Below(ok.size())];
    // A float builtin given only integer literals computes in floats.
    bool all_lit_int = t == Ty::LitFloat && b.float_only && r_.Chance(30);
    int exact_at = static_cast<int>(r_.Below(static_cast<uint64_t>(b.arity)));
    std::string s = std::string(b.name) + "(";
    for (int a = 0; a < b.arity; ++a) {
      s += a ? ", " : "";
      s += all_lit_int ? Expr(Ty::LitInt, true, depth + 1) : Expr(t, a == exact_at, depth + 1);
    }
    return s + ")";
  }

  std::string BoolExpr(int depth) {
    for (;;) {
      switch (r_.Below(12)) {
        case 0:
        case 1:
        case 2:
        case 3: {
          static const char* kCmp[] = {"<", "<=", ">", ">=", "==", "!="};
          Ty u = r_.Chance(10) ? Ty::Bool : r_.Pick(kAnyNumber);
          const char* op = u == Ty::Bool ? (r_.Chance(50) ? "==" : "!=") : kCmp[r_.Below(6)];
          bool left_exact = r_.Chance(50);
          return "(" + Expr(u, left_exact, depth + 1) + " " + op + " " + Expr(u, !left_exact, depth + 1) + ")";
        }
        case 4:
        case 5:
          return "(" + Expr(Ty::Bool, true, depth + 1) + (r_.Chance(50) ? " and " : " or ") +
                 Expr(Ty::Bool, true, depth + 1) + ")";
        case 6: return "(not " + Expr(Ty::Bool, true, depth + 1) + ")";
        case 7: {
          // NaN is the one value not equal to itself.
          Ty f = r_.Chance(50) ? Ty::F32 : Ty::F64;
          std::string x = Expr(f, true, depth + 1);
          return "(" + x + " != " + x + ")";
        }
        case 8: return If(Ty::Bool, true, depth);
        case 9:
        case 10: {
          std::string c = Call(Ty::Bool, depth);
          if (!c.empty()) return c;
          break;
        }
        default: return LeafOf(Ty::Bool);
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Inputs.

Scalar RandomScalar(Rng& r, Ty t, bool special) {
  switch (t) {
    case Ty::Bool: return Scalar::Bool(r.Chance(50));
    case Ty::I32: {
      static const std::vector<int32_t> kS = {0, 1, -1, 2, -2, 3, 7, std::numeric_limits<int32_t>::min(),
                                              std::numeric_limits<int32_t>::max(),
                                              std::numeric_limits<int32_t>::min() + 1, 65536, 46341};
      if (special) return Scalar::I32(r.Pick(kS));
      return Scalar::I32(r.Chance(70) ? static_cast<int32_t>(r.Range(-100, 100)) : static_cast<int32_t>(r.Next()));
    }
    case Ty::I64: {
      static const std::vector<int64_t> kS = {0, 1, -1, 2, 3, std::numeric_limits<int64_t>::min(),
                                              std::numeric_limits<int64_t>::max(), std::numeric_limits<int32_t>::min(),
                                              std::numeric_limits<int32_t>::max(), 4294967296, 9007199254740993,
                                              -9007199254740993, std::numeric_limits<int64_t>::min() + 1,
                                              1152921573326323713, -1152921573326323713};
      if (special) return Scalar::I64(r.Pick(kS));
      return Scalar::I64(r.Chance(70) ? r.Range(-1000, 1000) : static_cast<int64_t>(r.Next()));
    }
    case Ty::F32: {
      constexpr float kInf = std::numeric_limits<float>::infinity();
      static const std::vector<float> kS = {
          0.0f, -0.0f, 1.0f, -1.0f, 0.5f, std::numeric_limits<float>::quiet_NaN(),
          -std::numeric_limits<float>::quiet_NaN(),
          kInf, -kInf, std::numeric_limits<float>::min(), std::numeric_limits<float>::denorm_min(),
          std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(), 1e-30f, 1e30f, 2147483648.0f,
          -2147483648.0f, 2147483520.0f, -2147483904.0f, 9.2233720e18f, -9.2233720e18f, 16777217.0f, 0.1f, 2.5f, -2.5f};
      if (special) return Scalar::F32(r.Pick(kS));
      if (r.Chance(70)) return Scalar::F32(static_cast<float>((r.Unit() - 0.5) * 20.0));
      return Scalar::F32(static_cast<float>(std::ldexp(r.Unit() - 0.5, static_cast<int>(r.Range(-60, 60)))));
    }
    default: {
      constexpr double kInf = std::numeric_limits<double>::infinity();
      static const std::vector<double> kS = {
          0.0, -0.0, 1.0, -1.0, 0.5, std::numeric_limits<double>::quiet_NaN(),
          -std::numeric_limits<double>::quiet_NaN(),
          kInf, -kInf, std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(),
          std::numeric_limits<double>::max(), -std::numeric_limits<double>::max(), 1e-300, 1e300, 9223372036854775808.0,
          -9223372036854775808.0, 9223372036854774784.0, -9223372036854777856.0, 2147483647.5, -2147483648.5,
          2147483648.0, 9007199254740993.0, 0.1, 1e-310, 3.5e38};
      if (special) return Scalar::F64(r.Pick(kS));
      if (r.Chance(70)) return Scalar::F64((r.Unit() - 0.5) * 20.0);
      return Scalar::F64(std::ldexp(r.Unit() - 0.5, static_cast<int>(r.Range(-300, 300))));
    }
  }
}

// A column for a parameter of type t: usually of that dtype, sometimes of
// another that converts to it (u8 and i32 into f32, i64 into i32, ...).
Column RandomColumn(Rng& r, Ty t, const std::string& name, std::vector<uint64_t> shape, uint64_t rows) {
  DType d = ToDType(ToScalar(t));
  if (t != Ty::Bool && r.Chance(35)) {
    std::vector<DType> alt = {DType::U8, DType::I32, DType::I64};
    if (IsFloatTy(t)) {
      alt.push_back(DType::F32);
      alt.push_back(DType::F64);
    }
    d = r.Pick(alt);
  }
  Column c = Column::Make(name, d, std::move(shape), rows);
  uint8_t* p = c.mutable_bytes();
  for (uint64_t e = 0; e < c.elems(); ++e) {
    bool special = r.Chance(4);
    switch (d) {
      case DType::U8: p[e] = static_cast<uint8_t>(special ? r.Pick(std::vector<int>{0, 1, 255}) : r.Below(256)); break;
      case DType::Bool: p[e] = r.Chance(50); break;
      case DType::I32: {
        int32_t v = static_cast<int32_t>(RandomScalar(r, Ty::I32, special).i);
        std::memcpy(p + 4 * e, &v, 4);
        break;
      }
      case DType::I64: {
        int64_t v = RandomScalar(r, Ty::I64, special).i;
        std::memcpy(p + 8 * e, &v, 8);
        break;
      }
      case DType::F32: {
        float v = static_cast<float>(RandomScalar(r, Ty::F32, special).f);
        std::memcpy(p + 4 * e, &v, 4);
        break;
      }
      case DType::F64: {
        double v = RandomScalar(r, Ty::F64, special).f;
        std::memcpy(p + 8 * e, &v, 8);
        break;
      }
    }
  }
  return c;
}

// ---------------------------------------------------------------------------
// Comparison.

// Position of a float on the number line in ulps; +0 and -0 are both 0.
int64_t Ordered(double v, bool f32) {
  if (f32) {
    int32_t b = std::bit_cast<int32_t>(static_cast<float>(v));
    return b < 0 ? -static_cast<int64_t>(b & 0x7fffffff) : b;
  }
  int64_t b = std::bit_cast<int64_t>(v);
  return b < 0 ? -(b & 0x7fffffffffffffff) : b;
}

struct Stats {
  uint64_t kernels = 0, calls = 0, call_errors = 0, elements = 0, map_errors = 0, float_results = 0;
  uint64_t not_bit_identical = 0, signed_zero = 0, nan_bits = 0, disagreements = 0;
  uint64_t native_calls = 0;
  std::string first_inexact;  // an example of a float result within 1 ulp but not bit-identical
};

enum class Verdict { Same, Close, Differ };

// Floats: NaN equals NaN, otherwise within 1 ulp; counts what is not bit-identical.
Verdict CompareValue(ScalarType t, const Scalar& a, const Scalar& b, Stats& st) {
  if (t != ScalarType::F32 && t != ScalarType::F64) return a.i == b.i ? Verdict::Same : Verdict::Differ;
  bool f32 = t == ScalarType::F32;
  ++st.float_results;
  bool same_bits = f32 ? std::bit_cast<uint32_t>(static_cast<float>(a.f)) ==
                             std::bit_cast<uint32_t>(static_cast<float>(b.f))
                       : std::bit_cast<uint64_t>(a.f) == std::bit_cast<uint64_t>(b.f);
  if (same_bits) return Verdict::Same;
  ++st.not_bit_identical;
  if (std::isnan(a.f) || std::isnan(b.f)) {
    if (std::isnan(a.f) && std::isnan(b.f)) {
      ++st.nan_bits;
      return Verdict::Close;
    }
    return Verdict::Differ;
  }
  if (a.f == 0 && b.f == 0) ++st.signed_zero;
  int64_t d = Ordered(a.f, f32) - Ordered(b.f, f32);
  return d >= -1 && d <= 1 ? Verdict::Close : Verdict::Differ;
}

std::string Show(const Scalar& s) {
  char buf[96];
  switch (s.type) {
    case ScalarType::Bool: return s.i == 0 ? "false" : s.i == 1 ? "true" : "bool slot " + std::to_string(s.i);
    case ScalarType::I32: {
      std::string v = "i32 " + std::to_string(static_cast<int32_t>(s.i));
      // A slot must hold the i32 sign-extended.
      if (s.i != static_cast<int32_t>(s.i)) v += " (slot holds " + std::to_string(s.i) + ")";
      return v;
    }
    case ScalarType::I64: return "i64 " + std::to_string(s.i);
    case ScalarType::F32:
      std::snprintf(buf, sizeof buf, "f32 %.9g (bits 0x%08" PRIx32 ")", static_cast<double>(static_cast<float>(s.f)),
                    std::bit_cast<uint32_t>(static_cast<float>(s.f)));
      return buf;
    case ScalarType::F64:
      std::snprintf(buf, sizeof buf, "f64 %.17g (bits 0x%016" PRIx64 ")", s.f, std::bit_cast<uint64_t>(s.f));
      return buf;
  }
  return "?";
}

Scalar ElementOf(const Column& c, uint64_t e) {
  const uint8_t* p = c.bytes().data();
  switch (c.dtype) {
    case DType::Bool: return Scalar::Bool(p[e] != 0);
    case DType::U8: return Scalar::I32(p[e]);
    case DType::I32: {
      int32_t v;
      std::memcpy(&v, p + 4 * e, 4);
      return Scalar::I32(v);
    }
    case DType::I64: {
      int64_t v;
      std::memcpy(&v, p + 8 * e, 8);
      return Scalar::I64(v);
    }
    case DType::F32: {
      float v;
      std::memcpy(&v, p + 4 * e, 4);
      return Scalar::F32(v);
    }
    case DType::F64: {
      double v;
      std::memcpy(&v, p + 8 * e, 8);
      return Scalar::F64(v);
    }
  }
  return {};
}

std::string ColumnDesc(const Column& c) {
  std::string s = std::string(DTypeName(c.dtype)) + "[";
  for (size_t k = 0; k < c.shape.size(); ++k) s += (k ? "," : "") + std::to_string(c.shape[k]);
  return s + "] x " + std::to_string(c.rows());
}

class Differ {
 public:
  Differ(const std::vector<GenKernel>& batch, Stats& st) : batch_(batch), st_(st) {
    for (const auto& k : batch_) by_name_[k.name] = &k;
  }

  // The kernel's source with those of every kernel it reaches, callees first.
  std::string Sources(const std::string& name) {
    std::set<std::string> seen;
    std::string out;
    AddSources(name, seen, out);
    return out;
  }

  bool quiet = false;  // count disagreements without failing (the harness's own test)

  void Report(const std::string& kernel, const std::string& what) {
    ++st_.disagreements;
    if (!quiet && st_.disagreements <= 12) ADD_FAILURE() << what << "\n--- kernel(s):\n" << Sources(kernel);
  }

  void Calls(Rng& r, const GenKernel& g, const CompiledKernel& a, const CompiledKernel& b, int n) {
    for (int c = 0; c < n; ++c) {
      std::vector<Scalar> args;
      for (Ty t : g.params) args.push_back(RandomScalar(r, t, r.Chance(50)));
      Scalar ra, rb;
      std::string ea, eb;
      bool oka = a.Call(args, &ra, &ea), okb = b.Call(args, &rb, &eb);
      ++st_.calls;
      std::string in;
      for (const auto& s : args) in += (in.empty() ? "" : ", ") + Show(s);
      if (oka != okb || (!oka && ea != eb)) {
        Report(g.name, "Call(" + in + "): interpreter " + (oka ? Show(ra) : "error: " + ea) + "; native " +
                           (okb ? Show(rb) : "error: " + eb));
        continue;
      }
      if (!oka) {
        ++st_.call_errors;
        continue;
      }
      Verdict v = CompareValue(a.result(), ra, rb, st_);
      if (v == Verdict::Differ) {
        Report(g.name, "Call(" + in + "): interpreter " + Show(ra) + "; native " + Show(rb));
      } else if (v == Verdict::Close && st_.first_inexact.empty()) {
        st_.first_inexact = g.name + "(" + in + "): interpreter " + Show(ra) + "; native " + Show(rb);
      }
    }
  }

  void Map(Rng& r, const GenKernel& g, const CompiledKernel& a, const CompiledKernel& b, uint64_t elems) {
    std::vector<Column> cols;
    for (size_t p = 0; p < g.params.size(); ++p) {
      bool rowwise = r.Chance(40);
      cols.push_back(RandomColumn(r, g.params[p], "c" + std::to_string(p),
                                  rowwise ? std::vector<uint64_t>{4} : std::vector<uint64_t>{},
                                  rowwise ? elems / 4 : elems));
    }
    std::vector<const Column*> args;
    std::string desc;
    for (const auto& c : cols) {
      args.push_back(&c);
      desc += (desc.empty() ? "" : ", ") + ColumnDesc(c);
    }
    Column oa, ob;
    std::string ea, eb;
    bool oka = MapColumns(a, args, &oa, &ea), okb = MapColumns(b, args, &ob, &eb);
    st_.elements += elems;
    if (oka != okb || (!oka && ea != eb)) {
      Report(g.name, "MapColumns(" + desc + "): interpreter " + (oka ? "ok" : "error: " + ea) + "; native " +
                         (okb ? "ok" : "error: " + eb));
      return;
    }
    if (!oka) {
      ++st_.map_errors;
      return;
    }
    if (oa.dtype != ob.dtype || oa.shape != ob.shape || oa.rows() != ob.rows() || oa.name != ob.name ||
        oa.elems() != elems) {
      Report(g.name, "MapColumns(" + desc + "): outputs differ in form: " + ColumnDesc(oa) + " vs " + ColumnDesc(ob));
      return;
    }
    for (uint64_t e = 0; e < elems; ++e) {
      Scalar va = ElementOf(oa, e), vb = ElementOf(ob, e);
      if (CompareValue(a.result(), va, vb, st_) == Verdict::Differ) {
        std::string in;
        for (const Column* c : args) in += (in.empty() ? "" : ", ") + Show(ElementOf(*c, e));
        Report(g.name, "MapColumns(" + desc + ") element " + std::to_string(e) + " (" + in + "): interpreter " +
                           Show(va) + "; native " + Show(vb));
        return;
      }
    }
    if (a.result() == ScalarType::Bool && g.params.size() == 1) {
      std::vector<uint8_t> ma, mb;
      bool fa = FilterMask(a, *args[0], &ma, &ea), fb = FilterMask(b, *args[0], &mb, &eb);
      if (fa != fb || (fa && ma != mb) || (!fa && ea != eb)) {
        Report(g.name, "FilterMask(" + desc + ") differs: " + (fa ? "ok" : ea) + " vs " + (fb ? "ok" : eb));
      }
    }
  }

 private:
  const std::vector<GenKernel>& batch_;
  Stats& st_;
  std::map<std::string, const GenKernel*> by_name_;

  void AddSources(const std::string& name, std::set<std::string>& seen, std::string& out) {
    if (!seen.insert(name).second) return;
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return;
    for (const auto& c : it->second->calls) AddSources(c, seen, out);
    out += it->second->source;
  }
};

plan::v1::Plan PlanOf(const std::vector<GenKernel>& batch) {
  plan::v1::Plan plan;
  for (const auto& g : batch) {
    auto* k = plan.add_kernels();
    k->set_name(g.name);
    for (size_t p = 0; p < g.params.size(); ++p) {
      auto* kp = k->add_params();
      kp->set_name("p" + std::to_string(p));
      kp->set_type(TyName(g.params[p]));
    }
    k->set_return_type(TyName(g.ret));
    k->set_source(g.source);
    for (const auto& c : g.calls) k->add_calls(c);
  }
  return plan;
}

std::vector<GenKernel> MakeBatch(Rng& rng, int first, int count) {
  std::vector<GenKernel> batch;
  for (int k = 0; k < count; ++k) {
    KernelGen gen(rng, batch);
    batch.push_back(gen.Make("k" + std::to_string(first + k)));
  }
  return batch;
}

// The source of the kernel an error names (Build errors say "kernel `kN`").
std::string SourceNamedIn(const std::vector<GenKernel>& batch, const std::string& error) {
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
    if (error.find("`" + it->name + "`") != std::string::npos) return it->source;
  }
  return "(no kernel named)";
}

constexpr uint64_t kSeed = 0x6b65726e656c6466ull;
constexpr int kKernels = 2000;
constexpr int kBatch = 50;

// The generator covers the language: every operator, builtin, conversion,
// literal form and statement form shows up, and every kernel builds.
TEST(KernelDiff, GeneratorCoversTheLanguage) {
  Rng rng(kSeed);
  std::string all;
  int calls = 0;
  for (int b = 0; b < 4; ++b) {
    std::vector<GenKernel> batch = MakeBatch(rng, b * kBatch, kBatch);
    for (const auto& g : batch) {
      all += g.source;
      calls += !g.calls.empty();
    }
    std::string error;
    auto prog = KernelProgram::Build(PlanOf(batch), &error, KernelOptions{JitMode::Off});
    ASSERT_TRUE(prog) << error << "\n" << SourceNamedIn(batch, error);
  }
  for (const char* needle :
       {" + ", " - ", " * ", " / ", " % ", "(-", " < ", " <= ", " > ", " >= ", " == ", " != ", " and ", " or ", "not ",
        "exp(", "log(", "sqrt(", "sin(", "cos(", "tanh(", "floor(", "pow(", "abs(", "min(", "max(", "clamp(", "f32(",
        "f64(", "i32(", "i64(", "if ", " else if ", "let ", ": f32 = ", ": bool = ", "% 3) - 1)", "2147483648",
        "9223372036854775807", "1_000", "e38", "1e-45", "true", "false"}) {
    EXPECT_NE(all.find(needle), std::string::npos) << "no kernel has `" << needle << "`";
  }
  EXPECT_GT(calls, 20) << "too few kernels call other kernels";
}

// A fake native tier, to show that the harness catches what it should: its
// code runs the interpreter's twin of the kernel and moves float results by
// `ulps` (integers and bools change from 2 on), or fails every check.
struct Fake {
  const CompiledKernel* twin = nullptr;
  int ulps = 0;
  bool fail_checks = false;
} g_fake;

Scalar Perturb(Scalar v) {
  int u = g_fake.ulps;
  if (v.type == ScalarType::F32) {
    float f = static_cast<float>(v.f);
    if (std::isfinite(f) && f != 0) f = std::bit_cast<float>(std::bit_cast<int32_t>(f) + u);
    return Scalar::F32(f);
  }
  if (v.type == ScalarType::F64) {
    if (std::isfinite(v.f) && v.f != 0) v.f = std::bit_cast<double>(std::bit_cast<int64_t>(v.f) + u);
    return v;
  }
  if (u >= 2) v.i = v.type == ScalarType::Bool ? !v.i : v.i + 1;
  return v;
}

// `slot` holds a value of type t: as 8-byte slots (doubles, int64) or in memory (f32, i32, a bool byte).
Scalar Load(ScalarType t, const void* p, bool slot) {
  Scalar s;
  s.type = t;
  if (t == ScalarType::F64 || (slot && t == ScalarType::F32)) {
    std::memcpy(&s.f, p, 8);
  } else if (t == ScalarType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    s.f = f;
  } else if (slot || t == ScalarType::I64) {
    std::memcpy(&s.i, p, 8);
  } else if (t == ScalarType::I32) {
    int32_t i;
    std::memcpy(&i, p, 4);
    s.i = i;
  } else {
    s.i = *static_cast<const uint8_t*>(p) != 0;
  }
  return s;
}

uint32_t FakeCall(const void* args, void* out) {
  if (g_fake.fail_checks) return 1;
  std::vector<Scalar> in;
  for (size_t a = 0; a < g_fake.twin->params().size(); ++a) {
    in.push_back(Load(g_fake.twin->params()[a], static_cast<const uint8_t*>(args) + 8 * a, true));
  }
  Scalar r;
  if (!g_fake.twin->Call(in, &r, nullptr)) return 1;
  r = Perturb(r);
  std::memcpy(out, r.type == ScalarType::F32 || r.type == ScalarType::F64 ? static_cast<void*>(&r.f) : &r.i, 8);
  return 0;
}

uint32_t FakeMap(const void* const* args, void* out, int64_t n) {
  if (g_fake.fail_checks) return 1;
  const CompiledKernel& k = *g_fake.twin;
  auto size = [](ScalarType t) {
    return t == ScalarType::Bool ? 1 : t == ScalarType::I32 || t == ScalarType::F32 ? 4 : 8;
  };
  for (int64_t e = 0; e < n; ++e) {
    std::vector<Scalar> in;
    for (size_t a = 0; a < k.params().size(); ++a) {
      in.push_back(Load(k.params()[a], static_cast<const uint8_t*>(args[a]) + size(k.params()[a]) * e, false));
    }
    Scalar r;
    if (!k.Call(in, &r, nullptr)) return 1;
    r = Perturb(r);
    uint8_t* o = static_cast<uint8_t*>(out) + size(k.result()) * e;
    float f = static_cast<float>(r.f);
    int32_t i = static_cast<int32_t>(r.i);
    uint8_t b = r.i != 0;
    switch (k.result()) {
      case ScalarType::F32: std::memcpy(o, &f, 4); break;
      case ScalarType::F64: std::memcpy(o, &r.f, 8); break;
      case ScalarType::I32: std::memcpy(o, &i, 4); break;
      case ScalarType::I64: std::memcpy(o, &r.i, 8); break;
      case ScalarType::Bool: *o = b; break;
    }
  }
  return 0;
}

class FakeBackend : public NativeBackend {
 public:
  std::unique_ptr<NativeCode> Compile(const CompiledKernel&, std::string*) override {
    auto code = std::make_unique<NativeCode>();
    code->fns.call = &FakeCall;
    code->fns.map = &FakeMap;
    return code;
  }
};

Stats RunFake(int ulps, bool fail_checks) {
  Stats st;
  FakeBackend backend;
  SetNativeBackend(&backend);
  g_fake.ulps = ulps;
  g_fake.fail_checks = fail_checks;
  Rng rng(kSeed), inputs(kSeed ^ 0x1234567);
  std::vector<GenKernel> batch = MakeBatch(rng, 0, kBatch);
  std::string error;
  auto a = KernelProgram::Build(PlanOf(batch), &error, KernelOptions{JitMode::Off});
  auto b = KernelProgram::Build(PlanOf(batch), &error, KernelOptions{JitMode::On});
  EXPECT_TRUE(a && b) << error;
  if (a && b) {
    Differ d(batch, st);
    d.quiet = true;
    for (const auto& g : batch) {
      ++st.kernels;
      g_fake.twin = a->Find(g.name);
      d.Calls(inputs, g, *g_fake.twin, *b->Find(g.name), 24);
      d.Map(inputs, g, *g_fake.twin, *b->Find(g.name), 1000);
      st.native_calls += b->Find(g.name)->native_calls();
    }
  }
  SetNativeBackend(nullptr);
  return st;
}

TEST(KernelDiff, TheHarnessCatchesWhatItShould) {
  Stats same = RunFake(0, false);
  EXPECT_GT(same.native_calls, 0u);
  EXPECT_EQ(same.disagreements, 0u);
  EXPECT_EQ(same.not_bit_identical, 0u);
  // 1 ulp: tolerated, counted.
  Stats one = RunFake(1, false);
  EXPECT_EQ(one.disagreements, 0u);
  EXPECT_GT(one.not_bit_identical, one.float_results / 2);
  // 2 ulps and integers off by one: caught.
  Stats two = RunFake(2, false);
  EXPECT_GT(two.disagreements, 20u);
  // A check that fails natively: calls rerun in the interpreter and agree, but
  // a map whose elements the interpreter passes is an error of its own.
  Stats fails = RunFake(0, true);
  EXPECT_GT(fails.disagreements, 20u);
  EXPECT_EQ(fails.disagreements + fails.map_errors, fails.kernels);
}

// The JIT compiles most batches at -O0 (the lowering as written) and every
// fourth at -O2 (what mlpc runs; 4x slower to compile), which keeps the test
// near 15 s.
TEST(KernelDiff, InterpreterAndNativeTierAgree) {
  Stats st;
  std::string error;
  testing::TempDir cache;
  std::unique_ptr<jit::Jit> jits[2];
  for (int o = 0; o < 2; ++o) {
    jit::JitOptions jo;
    jo.cache_dir = cache.File("jit" + std::to_string(o));
    jo.opt_level = o ? 2 : 0;
    jits[o] = jit::Jit::Create(jo, &error);
    ASSERT_TRUE(jits[o]) << error;
  }
  Rng rng(kSeed);
  Rng inputs(kSeed ^ 0x1234567);
  // $MLP_KERNEL_DIFF_DUMP: a file to write every generated kernel to.
  std::FILE* dump = nullptr;
  if (const char* path = std::getenv("MLP_KERNEL_DIFF_DUMP")) dump = std::fopen(path, "w");
  for (int first = 0, n = 0; first < kKernels && st.disagreements < 50; first += kBatch, ++n) {
    std::vector<GenKernel> batch = MakeBatch(rng, first, kBatch);
    plan::v1::Plan plan = PlanOf(batch);
    auto interp = KernelProgram::Build(plan, &error, KernelOptions{JitMode::Off});
    ASSERT_TRUE(interp) << "generator bug: " << error << "\n" << SourceNamedIn(batch, error);
    auto native = KernelProgram::Build(plan, &error, KernelOptions{JitMode::On});
    ASSERT_TRUE(native) << error << "\n" << SourceNamedIn(batch, error);
    if (dump) {
      for (const auto& g : batch) std::fputs(g.source.c_str(), dump);
    }
    // JitMode::On compiles at a kernel's first call, with the backend installed then.
    SetNativeBackend(jits[n % 4 == 3].get());
    Differ d(batch, st);
    for (const auto& g : batch) {
      const CompiledKernel* a = interp->Find(g.name);
      const CompiledKernel* b = native->Find(g.name);
      ASSERT_TRUE(a && b) << g.name;
      ++st.kernels;
      d.Calls(inputs, g, *a, *b, 24);
      d.Map(inputs, g, *a, *b, 1000);
      st.native_calls += b->native_calls();
      EXPECT_TRUE(b->native()) << g.name << " was not compiled\n" << g.source;
    }
  }
  if (dump) std::fclose(dump);
  SetNativeBackend(nullptr);
  std::printf(
      "kernel diff: %" PRIu64 " kernels (%" PRIu64 " compiled at -O0, %" PRIu64 " at -O2), %" PRIu64 " calls (%" PRIu64
      " errors), %" PRIu64 " elements mapped (%" PRIu64 " maps failed), %" PRIu64 " native calls; %" PRIu64
      " float results, %" PRIu64 " not bit-identical (%" PRIu64 " NaN bits, %" PRIu64 " signed zeros); %" PRIu64
      " disagreements\n",
      st.kernels, jits[0]->stats().compiles, jits[1]->stats().compiles, st.calls, st.call_errors, st.elements,
      st.map_errors, st.native_calls, st.float_results, st.not_bit_identical, st.nan_bits, st.signed_zero,
      st.disagreements);
  if (!st.first_inexact.empty()) std::printf("first result not bit-identical: %s\n", st.first_inexact.c_str());
  EXPECT_EQ(st.disagreements, 0u);
  // The inputs reach both outcomes: most calls succeed, some fail.
  EXPECT_GT(st.call_errors, st.calls / 100);
  EXPECT_LT(st.call_errors, st.calls / 2);
  EXPECT_LT(st.map_errors, st.kernels * 3 / 4);
  // And the native tier ran them.
  EXPECT_GT(st.native_calls, st.calls / 2);
}

}  // namespace
}  // namespace mlp::rt::ops
