// Kernels construct by construct, on kernels compiled from .mlp text into a
// plan exactly as `mlpc compile` makes it. Every `Kernels` test runs in both
// tiers: the interpreter (jit off) and native code (jit on).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "compiler/plan/lower.h"
#include "runtime/jit/jit.h"
#include "runtime/ops/kernel_interp.h"
#include "tests/test_util.h"

namespace mlp::rt::ops {
namespace {

// "file:line:col" of the first occurrence of `needle` in `text`.
std::string Where(const std::string& file, const std::string& text, const std::string& needle) {
  size_t pos = text.find(needle);
  int line = 1, col = 1;
  for (size_t k = 0; k < pos; ++k) {
    if (text[k] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return file + ":" + std::to_string(line) + ":" + std::to_string(col);
}

const char* kUse = "\ndata d {\n  source    = range(n: 4)\n  transform = map(use)\n}\nkernel use(x: i64) -> i64 {\n  x\n}\n";

class Kernels : public ::testing::TestWithParam<JitMode> {
 protected:
  static void SetUpTestSuite() {
    static std::unique_ptr<jit::Jit> native = [] {
      std::string error;
      auto j = jit::Jit::Create({}, &error);
      EXPECT_TRUE(j) << error;
      return j;
    }();
    SetNativeBackend(native.get());
  }
  bool Interpreted() const { return GetParam() == JitMode::Off; }
  void Load(const std::string& kernels) {
    text_ = kernels + kUse;
    plan_ = testing::CompilePlan(text_);
    std::string error;
    KernelOptions options;
    options.jit = GetParam();
    prog_ = KernelProgram::Build(plan_, &error, options);
    ASSERT_TRUE(prog_) << error;
  }
  const CompiledKernel& K(const std::string& name) {
    const CompiledKernel* k = prog_->Find(name);
    EXPECT_TRUE(k) << "no kernel " << name;
    static CompiledKernel none;
    return k ? *k : none;
  }
  Scalar Call(const std::string& name, std::vector<Scalar> args) {
    Scalar out;
    std::string error;
    EXPECT_TRUE(K(name).Call(args, &out, &error)) << error;
    EXPECT_EQ(out.type, K(name).result());
    return out;
  }
  std::string CallError(const std::string& name, std::vector<Scalar> args) {
    Scalar out;
    std::string error;
    EXPECT_FALSE(K(name).Call(args, &out, &error));
    return error;
  }
  std::string text_;
  plan::v1::Plan plan_;
  std::unique_ptr<KernelProgram> prog_;
};

TEST_P(Kernels, F32ArithmeticIsDoneInFloat) {
  Load(R"(
kernel tiny32(x: f32) -> f32 {
  (x + 0.00000001) - x
}
kernel tiny64(x: f64) -> f64 {
  (x + 0.00000001) - x
}
kernel scale(x: f32) -> f32 {
  (x / 255.0 - 0.2860) / 0.3530
}
)");
  EXPECT_EQ(Call("tiny32", {Scalar::F32(1.0f)}).f, 0.0);  // 1e-8 is lost next to 1 in float
  EXPECT_NEAR(Call("tiny64", {Scalar::F64(1.0)}).f, 1e-8, 1e-15);
  for (float x : {0.0f, 1.0f, 17.0f, 128.0f, 254.0f, 255.0f}) {
    float want = (x / 255.0f - 0.2860f) / 0.3530f;
    EXPECT_EQ(static_cast<float>(Call("scale", {Scalar::F32(x)}).f), want) << x;
  }
}

TEST_P(Kernels, IntegersWrapOnOverflow) {
  Load(R"(
kernel inc32(x: i32) -> i32 {
  x + 1
}
kernel dbl64(x: i64) -> i64 {
  x * 2
}
kernel neg32(x: i32) -> i32 {
  -x
}
kernel div32(a: i32, b: i32) -> i32 {
  a / b
}
kernel absi(x: i32) -> i32 {
  abs(x)
}
kernel big(x: i32) -> i32 {
  x + 3000000000
}
)");
  constexpr int32_t kMin32 = std::numeric_limits<int32_t>::min(), kMax32 = std::numeric_limits<int32_t>::max();
  constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(Call("inc32", {Scalar::I32(kMax32)}).i, kMin32);
  EXPECT_EQ(Call("dbl64", {Scalar::I64(kMax64)}).i, -2);
  EXPECT_EQ(Call("neg32", {Scalar::I32(kMin32)}).i, kMin32);
  EXPECT_EQ(Call("div32", {Scalar::I32(kMin32), Scalar::I32(-1)}).i, kMin32);
  EXPECT_EQ(Call("div32", {Scalar::I32(-7), Scalar::I32(2)}).i, -3);  // truncates toward zero
  EXPECT_EQ(Call("absi", {Scalar::I32(kMin32)}).i, kMin32);
  EXPECT_EQ(Call("big", {Scalar::I32(0)}).i, static_cast<int32_t>(3000000000u));  // the literal wraps into i32
}

TEST_P(Kernels, IntegerDivisionByZeroIsAnErrorWithLocation) {
  Load(R"(
kernel div(x: i64) -> i64 {
  100 / x
}
kernel rem(x: i32) -> i32 {
  let seven = 7
  seven % x
}
kernel fdiv(x: f64) -> f64 {
  1.0 / x
}
)");
  std::string error = CallError("div", {Scalar::I64(0)});
  EXPECT_EQ(error, Where("test.mlp", text_, "100 / x") + ": integer division by zero (in kernel `div`)");
  error = CallError("rem", {Scalar::I32(0)});
  EXPECT_EQ(error, Where("test.mlp", text_, "seven % x") + ": integer remainder by zero (in kernel `rem`)");
  EXPECT_EQ(Call("div", {Scalar::I64(7)}).i, 14);
  EXPECT_EQ(Call("rem", {Scalar::I32(-4)}).i, 3);
  EXPECT_TRUE(std::isinf(Call("fdiv", {Scalar::F64(0.0)}).f));  // floats follow IEEE
}

TEST_P(Kernels, IfElseChainsAndLets) {
  Load(R"(
kernel sign(x: f64) -> i32 {
  if x > 0.0 { 1 } else if x < 0.0 { -1 } else { 0 }
}
kernel lets(x: f32) -> f32 {
  let n = 3
  let half: f32 = 0.5
  let y = x * half
  y * n + f32(i32(x) * n)
}
kernel branchy(x: i64) -> i64 {
  if x % 2 == 0 {
    let h = x / 2
    h * 10
  } else {
    let t = x * 3
    t + 1
  }
}
kernel logic(x: i64) -> bool {
  (x > 2 and x < 5) or not (x != 10)
}
kernel safe(x: i64) -> bool {
  x != 0 and 10 / x > 1
}
)");
  EXPECT_EQ(Call("sign", {Scalar::F64(2.5)}).i, 1);
  EXPECT_EQ(Call("sign", {Scalar::F64(-0.1)}).i, -1);
  EXPECT_EQ(Call("sign", {Scalar::F64(0.0)}).i, 0);
  EXPECT_EQ(Call("lets", {Scalar::F32(5.0f)}).f, 2.5 * 3 + 15);
  EXPECT_EQ(Call("branchy", {Scalar::I64(8)}).i, 40);
  EXPECT_EQ(Call("branchy", {Scalar::I64(7)}).i, 22);
  for (int64_t x : {0, 2, 3, 4, 5, 10, 11}) {
    EXPECT_EQ(Call("logic", {Scalar::I64(x)}).i, (x > 2 && x < 5) || x == 10) << x;
  }
  EXPECT_EQ(Call("safe", {Scalar::I64(0)}).i, 0);  // `and` short-circuits: no division by zero
  EXPECT_EQ(Call("safe", {Scalar::I64(3)}).i, 1);
}

TEST_P(Kernels, BuiltinsMatchTheMathLibraryPerType) {
  std::string text;
  for (std::string t : {"f32", "f64"}) {
    for (std::string b : {"exp", "log", "sqrt", "sin", "cos", "tanh", "floor", "abs"}) {
      text += "kernel " + t + "_" + b + "(x: " + t + ") -> " + t + " {\n  " + b + "(x)\n}\n";
    }
    for (std::string b : {"pow", "min", "max"}) {
      text += "kernel " + t + "_" + b + "(x: " + t + ", y: " + t + ") -> " + t + " {\n  " + b + "(x, y)\n}\n";
    }
    text += "kernel " + t + "_clamp(x: " + t + ", lo: " + t + ", hi: " + t + ") -> " + t + " {\n  clamp(x, lo, hi)\n}\n";
  }
  text += "kernel i64_clamp(x: i64) -> i64 {\n  clamp(x, 0, 9)\n}\n";
  text += "kernel i32_minmax(x: i32, y: i32) -> i32 {\n  min(x, y) * 100 + max(x, y)\n}\n";
  text += "kernel lit_sqrt(x: f64) -> f64 {\n  x + sqrt(2)\n}\n";
  Load(text);
  // volatile: the expected values must come from the math library at run time,
  // not from the compiler's constant folding, which may round differently.
  volatile float vxf = 0.7f, vyf = 2.3f;
  volatile double vxd = 0.7, vyd = 2.3;
  const float xf = vxf, yf = vyf;
  const double xd = vxd, yd = vyd;
  auto f32 = [&](const std::string& n, std::vector<Scalar> a) { return static_cast<float>(Call("f32_" + n, a).f); };
  auto f64 = [&](const std::string& n, std::vector<Scalar> a) { return Call("f64_" + n, a).f; };
  EXPECT_EQ(f32("exp", {Scalar::F32(xf)}), std::exp(xf));
  EXPECT_EQ(f32("log", {Scalar::F32(xf)}), std::log(xf));
  EXPECT_EQ(f32("sqrt", {Scalar::F32(xf)}), std::sqrt(xf));
  EXPECT_EQ(f32("sin", {Scalar::F32(xf)}), std::sin(xf));
  EXPECT_EQ(f32("cos", {Scalar::F32(xf)}), std::cos(xf));
  EXPECT_EQ(f32("tanh", {Scalar::F32(xf)}), std::tanh(xf));
  EXPECT_EQ(f32("floor", {Scalar::F32(-xf)}), -1.0f);
  EXPECT_EQ(f32("abs", {Scalar::F32(-xf)}), xf);
  EXPECT_EQ(f32("pow", {Scalar::F32(xf), Scalar::F32(yf)}), std::pow(xf, yf));
  EXPECT_EQ(f32("min", {Scalar::F32(xf), Scalar::F32(yf)}), xf);
  EXPECT_EQ(f32("max", {Scalar::F32(xf), Scalar::F32(yf)}), yf);
  EXPECT_EQ(f32("clamp", {Scalar::F32(5.0f), Scalar::F32(xf), Scalar::F32(yf)}), yf);
  EXPECT_EQ(f64("exp", {Scalar::F64(xd)}), std::exp(xd));
  EXPECT_EQ(f64("log", {Scalar::F64(xd)}), std::log(xd));
  EXPECT_EQ(f64("sqrt", {Scalar::F64(xd)}), std::sqrt(xd));
  EXPECT_EQ(f64("sin", {Scalar::F64(xd)}), std::sin(xd));
  EXPECT_EQ(f64("cos", {Scalar::F64(xd)}), std::cos(xd));
  EXPECT_EQ(f64("tanh", {Scalar::F64(xd)}), std::tanh(xd));
  EXPECT_EQ(f64("floor", {Scalar::F64(2.5)}), 2.0);
  EXPECT_EQ(f64("abs", {Scalar::F64(-xd)}), xd);
  EXPECT_EQ(f64("pow", {Scalar::F64(xd), Scalar::F64(yd)}), std::pow(xd, yd));
  EXPECT_EQ(f64("clamp", {Scalar::F64(-5.0), Scalar::F64(xd), Scalar::F64(yd)}), xd);
  EXPECT_EQ(Call("i64_clamp", {Scalar::I64(42)}).i, 9);
  EXPECT_EQ(Call("i64_clamp", {Scalar::I64(-42)}).i, 0);
  EXPECT_EQ(Call("i32_minmax", {Scalar::I32(7), Scalar::I32(-3)}).i, -300 + 7);
  EXPECT_EQ(Call("lit_sqrt", {Scalar::F64(1.0)}).f, 1.0 + std::sqrt(2.0));
}

TEST_P(Kernels, ConversionsTruncateAndRejectNaN) {
  Load(R"(
kernel toint(x: f64) -> i64 {
  i64(x)
}
kernel narrow(x: i64) -> i32 {
  i32(x)
}
kernel tof32(x: f64) -> f32 {
  f32(x)
}
)");
  EXPECT_EQ(Call("toint", {Scalar::F64(2.9)}).i, 2);
  EXPECT_EQ(Call("toint", {Scalar::F64(-2.9)}).i, -2);
  EXPECT_EQ(Call("narrow", {Scalar::I64(0x1'0000'0005)}).i, 5);
  EXPECT_EQ(Call("tof32", {Scalar::F64(0.1)}).f, static_cast<double>(0.1f));
  std::string error = CallError("toint", {Scalar::F64(std::nan(""))});
  EXPECT_NE(error.find(Where("test.mlp", text_, "i64(x)")), std::string::npos) << error;
  EXPECT_NE(error.find("cannot convert"), std::string::npos) << error;
  EXPECT_NE(CallError("toint", {Scalar::F64(1e19)}).find("out of range"), std::string::npos);
}

TEST_P(Kernels, CallsBetweenKernelsAndCallCounts) {
  Load(R"(
kernel center(x: f32) -> f32 {
  x - 0.5
}
kernel pixel(x: f32) -> f32 {
  center(x / 255.0) * 2.0
}
kernel twice(x: f32) -> f32 {
  center(x) + center(1)
}
)");
  EXPECT_EQ(static_cast<float>(Call("pixel", {Scalar::F32(255.0f)}).f), 1.0f);
  EXPECT_EQ(static_cast<float>(Call("twice", {Scalar::F32(3.0f)}).f), 3.0f);
  if (Interpreted()) {
    EXPECT_EQ(K("pixel").calls(), 1u);
    EXPECT_EQ(K("center").calls(), 3u);
  } else {  // native code inlines `center`; only the entry counts
    EXPECT_EQ(K("pixel").native_calls(), 1u);
    EXPECT_EQ(K("pixel").calls(), 0u);
  }
  Column in = Column::Make("x", DType::U8, {2}, 5);  // u8 pixels feed an f32 kernel
  for (int k = 0; k < 10; ++k) in.mutable_values<uint8_t>()[k] = static_cast<uint8_t>(k * 25);
  const Column* args[] = {&in};
  Column out;
  std::string error;
  ASSERT_TRUE(MapColumns(K("pixel"), args, &out, &error)) << error;
  EXPECT_EQ(out.dtype, DType::F32);
  EXPECT_EQ(out.shape, std::vector<uint64_t>{2});
  EXPECT_EQ(out.rows(), 5u);
  for (int k = 0; k < 10; ++k) {
    EXPECT_EQ(out.values<float>()[k], (static_cast<float>(k * 25) / 255.0f - 0.5f) * 2.0f) << k;
  }
  if (Interpreted()) {
    EXPECT_EQ(K("pixel").calls(), 11u);
    EXPECT_EQ(K("center").calls(), 13u);
  } else {
    EXPECT_EQ(K("pixel").native_calls(), 11u);
    EXPECT_EQ(K("pixel").calls(), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Tiers, Kernels, ::testing::Values(JitMode::Off, JitMode::On),
                         [](const auto& info) { return std::string(JitModeName(info.param)); });

TEST(kernel_interp, ImportedAndAliasedKernelsResolve) {
  std::string path = std::string(MLP_SOURCE_DIR) + "/tests/golden/plan_imported_kernels.mlp";
  plan::v1::Plan plan = testing::CompilePlan(testing::ReadFile(path), path);
  std::string error;
  auto prog = KernelProgram::Build(plan, &error);
  ASSERT_TRUE(prog) << error;
  Scalar out;
  Scalar in = Scalar::F32(255.0f);
  ASSERT_TRUE(prog->Find("normalize_pixel")->Call({&in, 1}, &out, &error)) << error;
  EXPECT_EQ(out.f, 0.5);
  in = Scalar::F32(2.0f);
  ASSERT_TRUE(prog->Find("m.clamp01")->Call({&in, 1}, &out, &error)) << error;
  EXPECT_EQ(out.f, 1.0);
  in = Scalar::F32(-11.0f);
  ASSERT_TRUE(prog->Find("m.is_small")->Call({&in, 1}, &out, &error)) << error;
  EXPECT_EQ(out.i, 0);
}

TEST_P(Kernels, ArgumentTypesMustMatch) {
  Load(R"(
kernel half(x: f32) -> f32 {
  x / 2.0
}
)");
  EXPECT_NE(CallError("half", {Scalar::F64(1.0)}).find("argument 1 must be `f32`, but it is `f64`"), std::string::npos);
  EXPECT_NE(CallError("half", {}).find("takes 1 argument"), std::string::npos);
  Column f = Column::Make("b", DType::Bool, {}, 3);
  const Column* args[] = {&f};
  Column out;
  std::string error;
  EXPECT_FALSE(MapColumns(K("half"), args, &out, &error));
  EXPECT_NE(error.find("column `b` is bool"), std::string::npos) << error;
  std::vector<uint8_t> mask;
  Column x = Column::Make("x", DType::F32, {}, 3);
  EXPECT_FALSE(FilterMask(K("half"), x, &mask, &error));
  EXPECT_NE(error.find("not `bool`"), std::string::npos) << error;
}

TEST_P(Kernels, FilterMaskNeedsEveryElementOfARow) {
  Load(R"(
kernel positive(x: f32) -> bool {
  x > 0.0
}
)");
  Column x = Column::Make("x", DType::F32, {2}, 3);
  float v[] = {1, 2, -1, 2, 3, 0.5};
  std::copy(v, v + 6, x.mutable_values<float>().begin());
  std::vector<uint8_t> mask;
  std::string error;
  ASSERT_TRUE(FilterMask(K("positive"), x, &mask, &error)) << error;
  EXPECT_EQ(mask, (std::vector<uint8_t>{1, 0, 1}));
}

// Plans that no compiler made: each is refused with a reason, never evaluated.
plan::v1::Plan HandPlan(std::vector<std::pair<std::string, std::string>> kernels) {
  plan::v1::Plan p;
  for (const auto& [name, source] : kernels) {
    auto* k = p.add_kernels();
    k->set_name(name);
    auto* prm = k->add_params();
    prm->set_name("x");
    prm->set_type("f64");
    k->set_return_type("f64");
    k->set_source(source);
    k->mutable_source_range()->set_file("lib.mlp");
    k->mutable_source_range()->set_line(10);
    k->mutable_source_range()->set_column(1);
  }
  return p;
}

std::string BuildError(const plan::v1::Plan& p) {
  std::string error;
  EXPECT_FALSE(KernelProgram::Build(p, &error));
  return error;
}

TEST(kernel_interp, InvalidPlansAreRefused) {
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel a(x: f64) -> f64 {\n  b(x)\n}"}, {"b", "kernel b(x: f64) -> f64 {\n  a(x)\n}"}}))
                .find("recursive"),
            std::string::npos);
  EXPECT_EQ(BuildError(HandPlan({{"a", "kernel a(x: f64) -> f64 {\n  nope(x)\n}"}})),
            "lib.mlp:11:3: unknown kernel `nope` (not in the plan) (in kernel `a`)");
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel a(x: f64) -> f64 {\n  x +\n}"}})).find("lib.mlp:1"), std::string::npos);
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel a(x: f64) -> f64 {\n  x > 1.0\n}"}})).find("returns `f64`"),
            std::string::npos);
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel b(x: f64) -> f64 {\n  x\n}"}})).find("declares `b`"), std::string::npos);
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel a(x: f32) -> f64 {\n  1.0\n}"}})).find("differs"), std::string::npos);
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel a(x: f64) -> f64 {\n  x + \"s\"\n}"}})).find("not allowed"),
            std::string::npos);
  EXPECT_NE(BuildError(HandPlan({{"a", ""}})).find("exactly one kernel"), std::string::npos);
  EXPECT_NE(BuildError(HandPlan({{"a", "kernel a(x: f64) -> f64 {\n  x\n}"}, {"a", "kernel a(x: f64) -> f64 {\n  x\n}"}}))
                .find("twice"),
            std::string::npos);
}

TEST_P(Kernels, AKernelMissingFromThePlanIsAnUnknownKernel) {
  Load(R"(
kernel center(x: f32) -> f32 {
  x - 0.5
}
kernel pixel(x: f32) -> f32 {
  center(x / 255.0)
}
)");
  plan::v1::Plan p = plan_;
  auto* ks = p.mutable_kernels();
  for (int k = 0; k < ks->size(); ++k) {
    if (ks->Get(k).name() == "center") ks->DeleteSubrange(k, 1);
  }
  std::string error = BuildError(p);
  EXPECT_EQ(error, Where("test.mlp", text_, "center(x / 255.0)") +
                       ": unknown kernel `center` (not in the plan) (in kernel `pixel`)");
}

}  // namespace
}  // namespace mlp::rt::ops
