// The native tier: drivers (map, filter with compaction, reduce), the disk
// cache (hit, miss on changed source, corrupt files rebuilt), unloading, the
// hot-kernel swap while a map is running, and jit=on without a backend.
// Construct-by-construct agreement with the interpreter is in
// kernel_interp_test (every test runs in both tiers) and kernel_diff_test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <cmath>
#include <cstring>

#include "compiler/plan/lower.h"
#include "runtime/jit/jit.h"
#include "runtime/ops/env.h"
#include "runtime/ops/kernel_interp.h"
#include "tests/test_util.h"

namespace mlp::rt::jit {
namespace {

namespace fs = std::filesystem;
using ops::Column;
using ops::CompiledKernel;
using ops::DType;
using ops::JitMode;
using ops::KernelOptions;
using ops::KernelProgram;
using ops::Scalar;

plan::v1::Plan PlanOf(const std::string& kernels) {
  std::string text = kernels +
                     "\ndata d {\n  source    = range(n: 4)\n  transform = map(use)\n}\n"
                     "kernel use(x: i64) -> i64 {\n  x\n}\n";
  return testing::CompilePlan(text, "jit.mlp");
}

std::unique_ptr<KernelProgram> Build(const plan::v1::Plan& p, JitMode mode, uint64_t hot = 20000, bool wait = false) {
  std::string error;
  KernelOptions o;
  o.jit = mode;
  o.drivers = ops::kDriverMap | ops::kDriverCall | ops::kDriverFilter | ops::kDriverReduce;
  o.hot_calls = hot;
  o.wait_for_compile = wait;
  auto prog = KernelProgram::Build(p, &error, o);
  EXPECT_TRUE(prog) << error;
  return prog;
}

class JitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::TempDir>();
    jit_ = Make();
    ops::SetNativeBackend(jit_.get());
  }
  void TearDown() override { ops::SetNativeBackend(nullptr); }
  std::unique_ptr<Jit> Make() {
    JitOptions o;
    o.cache_dir = dir_->File("cache");
    std::string error;
    auto j = Jit::Create(o, &error);
    EXPECT_TRUE(j) << error;
    return j;
  }
  std::vector<fs::path> CacheFiles() {
    std::vector<fs::path> out;
    if (!fs::exists(dir_->File("cache"))) return out;
    for (const auto& e : fs::directory_iterator(dir_->File("cache"))) out.push_back(e.path());
    return out;
  }
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<Jit> jit_;
};

const char* kScale = R"(
kernel scale(x: f32) -> f32 {
  (x / 255.0 - 0.2860) / 0.3530
}
kernel keep(x: i64) -> bool {
  x % 3 != 0
}
kernel square(x: i32) -> i32 {
  x * x
}
)";

TEST_F(JitTest, DriversMatchTheInterpreter) {
  plan::v1::Plan p = PlanOf(kScale);
  auto native = Build(p, JitMode::On);
  auto interp = Build(p, JitMode::Off);
  std::string error;
  const CompiledKernel& nk = *native->Find("keep");
  ASSERT_TRUE(nk.Tier(&error)) << error;
  ASSERT_TRUE(nk.native() && nk.native()->fns.filter);
  // filter: branch-free compaction keeps order.
  std::vector<int64_t> in(1000), out(1000);
  for (int k = 0; k < 1000; ++k) in[k] = k - 500;
  int64_t kept = -1;
  ASSERT_EQ(nk.native()->fns.filter(in.data(), out.data(), 1000, &kept), 0u);
  std::vector<int64_t> want;
  for (int64_t v : in) {
    Scalar r;
    ASSERT_TRUE(interp->Find("keep")->Call(std::vector<Scalar>{Scalar::I64(v)}, &r, &error)) << error;
    if (r.i) want.push_back(v);
  }
  ASSERT_EQ(kept, static_cast<int64_t>(want.size()));
  EXPECT_EQ(std::vector<int64_t>(out.begin(), out.begin() + kept), want);
  // reduce: an in-order sum that wraps like the interpreter's i32.
  const CompiledKernel& sq = *native->Find("square");
  ASSERT_TRUE(sq.Tier(&error)) << error;
  ASSERT_TRUE(sq.native()->fns.reduce);
  std::vector<int32_t> xs(5000);
  for (int k = 0; k < 5000; ++k) xs[k] = k * 7919;
  int32_t acc = 11;
  ASSERT_EQ(sq.native()->fns.reduce(xs.data(), 5000, &acc), 0u);
  uint32_t want_acc = 11;
  for (int32_t x : xs) {
    Scalar r;
    ASSERT_TRUE(interp->Find("square")->Call(std::vector<Scalar>{Scalar::I32(x)}, &r, &error)) << error;
    want_acc += static_cast<uint32_t>(r.i);
  }
  EXPECT_EQ(acc, static_cast<int32_t>(want_acc));
  // map over a u8 column converts to the f32 parameter first, as the interpreter does.
  Column px = Column::Make("px", DType::U8, {4}, 300);
  for (size_t k = 0; k < 1200; ++k) px.mutable_values<uint8_t>()[k] = static_cast<uint8_t>(k * 37);
  const Column* args[] = {&px};
  Column a, b;
  ASSERT_TRUE(ops::MapColumns(*native->Find("scale"), args, &a, &error)) << error;
  ASSERT_TRUE(ops::MapColumns(*interp->Find("scale"), args, &b, &error)) << error;
  ASSERT_EQ(a.bytes().size(), b.bytes().size());
  EXPECT_EQ(0, std::memcmp(a.bytes().data(), b.bytes().data(), a.bytes().size()));
  EXPECT_EQ(native->Find("scale")->native_calls(), 1200u);
  EXPECT_EQ(native->Find("scale")->calls(), 0u);
}

TEST_F(JitTest, DiskCacheHitsMissesOnChangeAndRebuildsCorruptFiles) {
  plan::v1::Plan p = PlanOf(kScale);
  std::string error;
  {
    auto prog = Build(p, JitMode::On);
    ASSERT_TRUE(prog->Find("scale")->Tier(&error)) << error;
  }
  EXPECT_EQ(jit_->stats().compiles, 1u);
  EXPECT_EQ(jit_->stats().cache_hits, 0u);
  ASSERT_EQ(CacheFiles().size(), 1u);

  // A second JIT (a new process, as far as the cache can tell) loads the object instead of compiling.
  auto second = Make();
  ops::SetNativeBackend(second.get());
  {
    auto prog = Build(p, JitMode::On);
    Scalar r;
    ASSERT_TRUE(prog->Find("scale")->Call(std::vector<Scalar>{Scalar::F32(255.0f)}, &r, &error)) << error;
    EXPECT_EQ(static_cast<float>(r.f), (1.0f - 0.2860f) / 0.3530f);
    EXPECT_EQ(prog->Find("scale")->native_calls(), 1u);
  }
  EXPECT_EQ(second->stats().compiles, 0u);
  EXPECT_EQ(second->stats().cache_hits, 1u);

  // Changed source: a different key, compiled again.
  plan::v1::Plan changed = PlanOf(std::string(kScale).replace(std::string(kScale).find("0.3530"), 6, "0.3531"));
  {
    auto prog = Build(changed, JitMode::On);
    ASSERT_TRUE(prog->Find("scale")->Tier(&error)) << error;
  }
  EXPECT_EQ(second->stats().compiles, 1u);
  EXPECT_EQ(CacheFiles().size(), 2u);

  // Corrupt every cache file: flipped bytes and a truncation are both detected, ignored and rebuilt.
  auto files = CacheFiles();
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(files[0]) / 2));
    f.put('\x5a').put('\xa5').put('\x00');
  }
  fs::resize_file(files[1], fs::file_size(files[1]) / 3);
  auto third = Make();
  ops::SetNativeBackend(third.get());
  for (const auto* plan : {&p, &changed}) {
    auto prog = Build(*plan, JitMode::On);
    Scalar r;
    ASSERT_TRUE(prog->Find("scale")->Call(std::vector<Scalar>{Scalar::F32(0.0f)}, &r, &error)) << error;
  }
  EXPECT_EQ(third->stats().cache_rejects, 2u);
  EXPECT_EQ(third->stats().cache_hits, 0u);
  EXPECT_EQ(third->stats().compiles, 2u);
  // ... and the rebuilt files are good again.
  auto fourth = Make();
  ops::SetNativeBackend(fourth.get());
  {
    auto prog = Build(p, JitMode::On);
    ASSERT_TRUE(prog->Find("scale")->Tier(&error)) << error;
  }
  EXPECT_EQ(fourth->stats().cache_hits, 1u);
  EXPECT_EQ(fourth->stats().cache_rejects, 0u);
}

TEST_F(JitTest, KernelsUnloadAndLoadAgain) {
  plan::v1::Plan p = PlanOf(kScale);
  std::string error;
  // Each program's kernels are loaded into their own JITDylib and removed with
  // it; loading the same code many times never clashes.
  for (int round = 0; round < 50; ++round) {
    auto prog = Build(p, JitMode::On);
    Scalar r;
    ASSERT_TRUE(prog->Find("square")->Call(std::vector<Scalar>{Scalar::I32(round)}, &r, &error)) << error;
    ASSERT_EQ(r.i, round * round);
  }
  EXPECT_EQ(jit_->stats().compiles + jit_->stats().cache_hits, 50u);
  EXPECT_EQ(jit_->stats().compiles, 1u);
}

TEST_F(JitTest, AHotKernelIsSwappedInWhileTheMapRuns) {
  plan::v1::Plan p = PlanOf(kScale);
  // Hot after two chunks (of 65,536 elements); the chunk that starts the
  // background compile waits for it, so the swap happens at a known point.
  auto prog = Build(p, JitMode::Auto, 2 * 65536, /*wait=*/true);
  const CompiledKernel& k = *prog->Find("scale");
  const uint64_t n = 10 * 65536;
  Column x = Column::Make("x", DType::F32, {}, n);
  for (uint64_t e = 0; e < n; ++e) x.mutable_values<float>()[e] = static_cast<float>(e % 256);
  const Column* args[] = {&x};
  Column out;
  std::string error;
  ASSERT_TRUE(ops::MapColumns(k, args, &out, &error)) << error;
  EXPECT_EQ(k.calls(), 2u * 65536);  // interpreted until hot
  EXPECT_EQ(k.native_calls(), 8u * 65536);  // then native, in the same map
  for (uint64_t e = 0; e < n; ++e) {
    ASSERT_EQ(out.values<float>()[e], (static_cast<float>(e % 256) / 255.0f - 0.2860f) / 0.3530f) << e;
  }
  EXPECT_EQ(jit_->stats().compiles, 1u);
}

TEST_F(JitTest, AutoCompilesInTheBackgroundAndKeepsRunning) {
  plan::v1::Plan p = PlanOf(kScale);
  auto prog = Build(p, JitMode::Auto, 1000);
  const CompiledKernel& k = *prog->Find("square");
  std::string error;
  // Calls never wait for the compile; whichever tier runs a call, the result is the same.
  for (int i = 0; i < 3000; ++i) {
    Scalar r;
    ASSERT_TRUE(k.Call(std::vector<Scalar>{Scalar::I32(i)}, &r, &error)) << error;
    ASSERT_EQ(r.i, i * i);
  }
  k.WaitForNative();
  ASSERT_NE(k.native(), nullptr);
  uint64_t before = k.native_calls();
  Scalar r;
  ASSERT_TRUE(k.Call(std::vector<Scalar>{Scalar::I32(-7)}, &r, &error)) << error;
  EXPECT_EQ(r.i, 49);
  EXPECT_EQ(k.native_calls(), before + 1);
  EXPECT_EQ(k.calls() + k.native_calls(), 3001u);
}

TEST_F(JitTest, JitOnWithoutANativeTierIsAnError) {
  ops::SetNativeBackend(nullptr);
  plan::v1::Plan p = PlanOf(kScale);
  auto prog = Build(p, JitMode::On);
  Scalar r;
  std::string error;
  EXPECT_FALSE(prog->Find("square")->Call(std::vector<Scalar>{Scalar::I32(3)}, &r, &error));
  EXPECT_NE(error.find("no native tier"), std::string::npos) << error;
  // auto and off just interpret.
  for (JitMode m : {JitMode::Auto, JitMode::Off}) {
    auto other = Build(p, m, 0);
    ASSERT_TRUE(other->Find("square")->Call(std::vector<Scalar>{Scalar::I32(3)}, &r, &error)) << error;
    EXPECT_EQ(r.i, 9);
  }
}

TEST_F(JitTest, EmitsReadableIR) {
  plan::v1::Plan p = PlanOf(kScale);
  std::string ir, error;
  ASSERT_TRUE(EmitPlanIR(p, false, &ir, &error)) << error;
  EXPECT_NE(ir.find("; kernel scale"), std::string::npos);
  EXPECT_NE(ir.find("define internal float @kernel.scale(float"), std::string::npos) << ir;
  EXPECT_NE(ir.find("define i32 @mlp_map("), std::string::npos);
  EXPECT_EQ(ir.find("define i32 @mlp_filter("), std::string::npos);  // generated only when asked for
  std::string opt;
  ASSERT_TRUE(EmitPlanIR(p, true, &opt, &error)) << error;
  // Optimised for the host: the map loop of `scale` is vectorized.
  EXPECT_TRUE(std::regex_search(opt, std::regex("fdiv <[0-9]+ x float>"))) << opt;
}

// The CartPole of pipelines/custom_env_rl.mlp, stepped by native code and by
// the interpreter from the same states with the same actions: the same
// observations bit for bit, the same rewards and ends of episode.
TEST_F(JitTest, EnvStepsAgreeWithTheInterpreter) {
  const std::string path = "pipelines/custom_env_rl.mlp";
  Compilation c = testing::CompileText(testing::ReadFile(std::string(MLP_SOURCE_DIR) + "/" + path), path);
  ASSERT_FALSE(c.diags.has_errors()) << testing::Render(c);
  plan::v1::Plan p = LowerPlan(*c.program, *c.checked);
  auto interp_k = Build(p, JitMode::Off);
  auto native_k = Build(p, JitMode::On);
  std::string error;
  KernelOptions off, on;
  off.jit = JitMode::Off;
  on.jit = JitMode::On;
  auto interp = ops::EnvProgram::Build(p, *interp_k, &error, off);
  ASSERT_TRUE(interp) << error;
  auto native = ops::EnvProgram::Build(p, *native_k, &error, on);
  ASSERT_TRUE(native) << error;
  auto a = interp->NewInstance("pole", 7);
  auto b = native->NewInstance("pole", 7);
  int steps = 0;
  for (int ep = 0; ep < 20; ++ep) {
    a->Reset(100 + static_cast<uint64_t>(ep));
    b->Reset(100 + static_cast<uint64_t>(ep));
    uint64_t lcg = static_cast<uint64_t>(ep) + 1;
    for (bool done = false; !done; ++steps) {
      lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
      Scalar act = Scalar::I64(static_cast<int64_t>((lcg >> 33) & 1));
      std::vector<double> oa, ob;
      double ra = 0, rb = 0;
      bool da = false, db = false;
      ASSERT_TRUE(a->Step(act, &oa, &ra, &da, &error)) << error;
      ASSERT_TRUE(b->Step(act, &ob, &rb, &db, &error)) << error;
      ASSERT_EQ(oa, ob) << "episode " << ep << " step " << b->steps();
      ASSERT_EQ(ra, rb);
      ASSERT_EQ(da, db);
      done = da;
    }
  }
  EXPECT_GT(steps, 100);
  EXPECT_EQ(native->StepKernel("pole")->native_calls(), static_cast<uint64_t>(steps));
  EXPECT_EQ(interp->StepKernel("pole")->native_calls(), 0u);
}

int64_t UlpDistance(double a, double b, bool f32) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (f32) {
    float fa = static_cast<float>(a), fb = static_cast<float>(b);
    int32_t x, y;
    std::memcpy(&x, &fa, 4);
    std::memcpy(&y, &fb, 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    return std::llabs(static_cast<long long>(x) - y);
  }
  int64_t x, y;
  std::memcpy(&x, &a, 8);
  std::memcpy(&y, &b, 8);
  if (x < 0) x = INT64_MIN - x;
  if (y < 0) y = INT64_MIN - y;
  return static_cast<int64_t>(std::llabs(static_cast<long long>(x - y)));
}

// With vector math (the product's default), each math builtin in a map loop
// runs glibc's vector variant, within 4 ulp of the scalar function the
// interpreter calls.
TEST_F(JitTest, VectorMathStaysWithinFourUlp) {
  JitOptions o;
  o.vector_math = true;
  std::string error;
  auto vjit = Jit::Create(o, &error);
  ASSERT_TRUE(vjit) << error;
  ops::SetNativeBackend(vjit.get());
  std::string src;
  for (const char* t : {"f32", "f64"}) {
    for (const char* f : {"exp", "log", "sin", "cos", "tanh"}) {
      src += std::string("kernel ") + f + "_" + t + "(x: " + t + ") -> " + t + " {\n  " + f + "(x)\n}\n";
    }
    src += std::string("kernel pow_") + t + "(x: " + t + ") -> " + t + " {\n  pow(x, 1.7)\n}\n";
  }
  plan::v1::Plan p = PlanOf(src);
  auto native = Build(p, JitMode::On);
  auto interp = Build(p, JitMode::Off);
  const uint64_t n = 100000;
  for (const auto& pk : p.kernels()) {
    if (pk.name() == "use") continue;
    bool f32 = pk.name().ends_with("f32");
    Column x = Column::Make("x", f32 ? DType::F32 : DType::F64, {}, n);
    for (uint64_t e = 0; e < n; ++e) {
      double v = (pk.name().starts_with("log") || pk.name().starts_with("pow")) ? 1e-3 + 50.0 * e / n
                                                                                : -20.0 + 40.0 * e / n;
      if (f32) {
        x.mutable_values<float>()[e] = static_cast<float>(v);
      } else {
        x.mutable_values<double>()[e] = v;
      }
    }
    const Column* args[] = {&x};
    Column a, b;
    ASSERT_TRUE(ops::MapColumns(*native->Find(pk.name()), args, &a, &error)) << error;
    ASSERT_TRUE(ops::MapColumns(*interp->Find(pk.name()), args, &b, &error)) << error;
    int64_t worst = 0;
    for (uint64_t e = 0; e < n; ++e) {
      double va = f32 ? a.values<float>()[e] : a.values<double>()[e];
      double vb = f32 ? b.values<float>()[e] : b.values<double>()[e];
      worst = std::max(worst, UlpDistance(va, vb, f32));
    }
    EXPECT_LE(worst, 4) << pk.name();
  }
  // Lowered, it is a scalar call; optimised by the process's JIT, the map loop calls a vector variant.
  std::string ir, opt;
  ASSERT_TRUE(EmitIR(*native->Find("tanh_f32"), false, &ir, &error)) << error;
  EXPECT_NE(ir.find("@tanhf("), std::string::npos);
  ASSERT_TRUE(EmitIR(*native->Find("tanh_f32"), true, &opt, &error)) << error;
  EXPECT_NE(opt.find("_tanhf(<"), std::string::npos) << opt;
}

}  // namespace
}  // namespace mlp::rt::jit
