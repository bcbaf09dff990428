// Kernel tiers, side by side in one run: a kernel mapped over 100 million
// float32 by the JIT, by the interpreter and by the same loop hand-written in
// C++ (bench/jit_ref.cc, g++ -O2); compile latency per kernel, cold and from
// the disk cache; CartPole steps written in .mlp (JIT and interpreter) against
// plain C++. Prints `name: value unit` lines, then ratios, then the targets'
// verdicts on stderr (STRICT=1 makes a miss exit 1).
// Usage: jit_bench [--quick]   (--quick: 10 million elements)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "compiler/driver/compile.h"
#include "compiler/plan/lower.h"
#include "runtime/jit/jit.h"
#include "runtime/ops/env.h"
#include "runtime/ops/kernel_interp.h"

namespace mlp::bench {
void RefNormalize(const float* in, float* out, size_t n);
void RefHeavy(const float* in, float* out, size_t n);
struct CartPoleState {
  float x, x_dot, theta, theta_dot;
};
bool RefCartPoleStep(CartPoleState& s, int64_t a, double* reward);
}  // namespace mlp::bench

namespace {

using namespace mlp;
using Clock = std::chrono::steady_clock;

std::map<std::string, double> g_vals;
void Report(const std::string& name, double value, const char* unit) {
  std::printf("%s: %.6g %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
  g_vals[name] = value;
}

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Best of `reps` runs of f(), in seconds.
template <class F>
double Best(int reps, F f) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return best;
}

const char* kKernels = R"(
pipeline jit_bench { seed = 1 }

kernel normalize(x: f32) -> f32 {
  (x / 255.0 - 0.2860) / 0.3530
}

kernel heavy(x: f32) -> f32 {
  let t = x / 255.0
  exp(-t * t) * sin(3.0 * t) + tanh(t - 0.5)
}

data d {
  source    = synthetic(rows: 10, features: 1)
  transform = map(normalize) | map(heavy)
}
)";

plan::v1::Plan Compile(const std::string& path, const std::string& text) {
  Compilation c = CompileSource(path, text, LoadOptions{}, CheckOptions{});
  if (c.diags.has_errors() || !c.checked) {
    std::fprintf(stderr, "%s does not compile\n", path.c_str());
    std::exit(2);
  }
  return LowerPlan(*c.program, *c.checked);
}

std::unique_ptr<rt::ops::KernelProgram> Build(const plan::v1::Plan& p, rt::ops::JitMode mode) {
  std::string error;
  rt::ops::KernelOptions o;
  o.jit = mode;
  auto prog = rt::ops::KernelProgram::Build(p, &error, o);
  if (!prog) {
    std::fprintf(stderr, "kernels: %s\n", error.c_str());
    std::exit(2);
  }
  return prog;
}

void CheckClose(const char* what, const float* a, const float* b, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i] && !(std::isnan(a[i]) && std::isnan(b[i]))) ++off;
  }
  if (off) std::fprintf(stderr, "%s: %zu of %zu results differ from the reference\n", what, off, n);
}

double MaxUlp(const float* a, const float* b, size_t n) {
  int64_t worst = 0;
  for (size_t i = 0; i < n; ++i) {
    int32_t x, y;
    std::memcpy(&x, &a[i], 4);
    std::memcpy(&y, &b[i], 4);
    if (x < 0) x = INT32_MIN - x;  // sign-magnitude to a monotonic integer line
    if (y < 0) y = INT32_MIN - y;
    int64_t d = static_cast<int64_t>(x) - y;
    worst = std::max<int64_t>(worst, d < 0 ? -d : d);
  }
  return static_cast<double>(worst);
}

void MapBench(const plan::v1::Plan& plan, size_t n) {
  std::vector<float> in(n), out(n, 0.0f), ref(n, 0.0f);
  for (size_t i = 0; i < n; ++i) in[i] = static_cast<float>((i * 2654435761u) % 256);
  auto native = Build(plan, rt::ops::JitMode::On);
  auto interp = Build(plan, rt::ops::JitMode::Off);
  // `native`: exact math (bit-identical to the interpreter); `vnative`: the
  // default of `mlpc run`, glibc's vector math in the loops.
  rt::jit::JitOptions vo;
  vo.vector_math = true;
  std::string verr;
  auto vjit = rt::jit::Jit::Create(vo, &verr);
  rt::ops::NativeBackend* plain = rt::ops::GetNativeBackend();
  rt::ops::SetNativeBackend(vjit.get());
  auto vnative = Build(plan, rt::ops::JitMode::On);
  for (const char* name : {"normalize", "heavy"}) {
    std::string e;
    if (!vnative->Find(name)->Tier(&e)) std::fprintf(stderr, "%s\n", e.c_str());  // compiled by vjit
  }
  rt::ops::SetNativeBackend(plain);
  rt::ops::Column col = rt::ops::Column::Make("x", rt::ops::DType::F32, {}, n);
  std::memcpy(col.mutable_bytes(), in.data(), n * sizeof(float));
  const double melems = static_cast<double>(n) / 1e6;
  for (const char* name : {"normalize", "heavy"}) {
    const auto& k = *native->Find(name);
    std::string error;
    if (!k.Tier(&error)) {
      std::fprintf(stderr, "%s\n", error.c_str());
      std::exit(2);
    }
    auto map = k.native()->fns.map;
    auto refn = std::string(name) == "normalize" ? &bench::RefNormalize : &bench::RefHeavy;
    refn(in.data(), ref.data(), n);  // fault every page in before timing
    const void* args[] = {in.data()};
    map(args, out.data(), static_cast<int64_t>(n));
    double t_ref = Best(3, [&] { refn(in.data(), ref.data(), n); });
    double t_exact = Best(3, [&] { map(args, out.data(), static_cast<int64_t>(n)); });
    CheckClose(name, out.data(), ref.data(), n);  // exact: bit for bit the C++ loop's results
    // The default JIT: vector math in the loop.
    const auto& vk = *vnative->Find(name);
    auto vmap = vk.native()->fns.map;
    vmap(args, out.data(), static_cast<int64_t>(n));
    double t_jit = Best(3, [&] { vmap(args, out.data(), static_cast<int64_t>(n)); });
    double max_ulp = MaxUlp(out.data(), ref.data(), n);
    // The runtime's own path: MapColumns, chunked, into a new column.
    const rt::ops::Column* cols[] = {&col};
    rt::ops::Column res;
    double t_runtime = Best(1, [&] { rt::ops::MapColumns(vk, cols, &res, &error); });
    double t_interp = Best(1, [&] { rt::ops::MapColumns(*interp->Find(name), cols, &res, &error); });
    CheckClose(name, res.values<float>().data(), ref.data(), n);
    std::string base = std::string("map_") + name + "_f32";
    Report(base + "_cxx_O2", melems / t_ref, "Melem/s");
    Report(base + "_jit", melems / t_jit, "Melem/s");
    Report(base + "_jit_exact_math", melems / t_exact, "Melem/s");
    Report(base + "_jit_mapcolumns", melems / t_runtime, "Melem/s");
    Report(base + "_interp", melems / t_interp, "Melem/s");
    Report(base + "_jit_max_ulp_vs_cxx", max_ulp, "ulp");
    Report(base + "_jit_vs_cxx", t_ref / t_jit, "x");
    Report(base + "_jit_vs_interp", t_interp / t_jit, "x");
    Report(base + "_jit_exact_math_vs_cxx", t_ref / t_exact, "x");
    Report(base + "_jit_exact_math_vs_interp", t_interp / t_exact, "x");
  }
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

void CompileBench() {
  // 40 distinct kernels (a constant differs), each compiled cold, then loaded
  // from the disk cache by a second JIT.
  std::string dir = std::filesystem::temp_directory_path() / ("mlpc-jit-bench-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::string text = "pipeline jit_compile { seed = 1 }\n";
  const int kernels = 40;
  for (int i = 0; i < kernels; ++i) {
    text += "kernel k" + std::to_string(i) + "(x: f32) -> f32 {\n  let t = x / " + std::to_string(200 + i) +
            ".0\n  if t > 0.5 { exp(-t * t) } else { (t - 0.25) * 4.0 }\n}\n";
  }
  text += "data d {\n  source    = synthetic(rows: 10, features: 1)\n  transform = map(k0)";
  for (int i = 1; i < kernels; ++i) text += " | map(k" + std::to_string(i) + ")";
  text += "\n}\n";
  plan::v1::Plan plan = Compile("jit_compile.mlp", text);
  for (int round = 0; round < 2; ++round) {
    rt::jit::JitOptions o;
    o.cache_dir = dir;
    o.vector_math = true;  // as mlpc's executors compile
    std::string error;
    auto jit = rt::jit::Jit::Create(o, &error);
    if (!jit) {
      std::fprintf(stderr, "jit: %s\n", error.c_str());
      std::exit(2);
    }
    rt::ops::SetNativeBackend(jit.get());
    auto prog = Build(plan, rt::ops::JitMode::On);
    std::vector<double> ms;
    for (int i = 0; i < kernels; ++i) {
      const auto& k = *prog->Find("k" + std::to_string(i));
      auto t0 = Clock::now();
      if (!k.Tier(&error)) std::fprintf(stderr, "%s\n", error.c_str());
      ms.push_back(Seconds(t0, Clock::now()) * 1e3);
    }
    std::string base = round == 0 ? "jit_compile_ms" : "jit_cache_hit_ms";
    Report(base + "_p50", Percentile(ms, 0.5), "ms");
    Report(base + "_p90", Percentile(ms, 0.9), "ms");
    rt::ops::SetNativeBackend(nullptr);
  }
  std::filesystem::remove_all(dir);
}

void EnvBench(const plan::v1::Plan& plan) {
  auto native_k = Build(plan, rt::ops::JitMode::On);
  auto interp_k = Build(plan, rt::ops::JitMode::Off);
  std::string error;
  rt::ops::KernelOptions on, off;
  on.jit = rt::ops::JitMode::On;
  off.jit = rt::ops::JitMode::Off;
  auto native = rt::ops::EnvProgram::Build(plan, *native_k, &error, on);
  auto interp = rt::ops::EnvProgram::Build(plan, *interp_k, &error, off);
  if (!native || !interp) {
    std::fprintf(stderr, "envs: %s\n", error.c_str());
    std::exit(2);
  }
  const int64_t steps = 5'000'000;
  // Raw step functions: the JIT'd entry on 8-byte slots vs the C++ function.
  const auto& step = *native->StepKernel("pole");
  if (!step.Tier(&error)) std::fprintf(stderr, "%s\n", error.c_str());
  auto call = step.native()->fns.call;
  double slots[5] = {0.01, 0.0, 0.02, 0.0, 0.0}, out[6];
  int64_t done_count = 0;
  double t_jit = Best(3, [&] {
    for (int64_t i = 0; i < steps; ++i) {
      int64_t a = i & 1;
      std::memcpy(&slots[4], &a, 8);
      call(slots, out);
      std::memcpy(slots, out, 4 * sizeof(double));
      int64_t done;
      std::memcpy(&done, &out[5], 8);
      if (done) {
        slots[0] = 0.01, slots[1] = 0.0, slots[2] = 0.02, slots[3] = 0.0;
        ++done_count;
      }
    }
  });
  bench::CartPoleState s{0.01f, 0.0f, 0.02f, 0.0f};
  double t_cxx = Best(3, [&] {
    for (int64_t i = 0; i < steps; ++i) {
      double reward;
      if (bench::RefCartPoleStep(s, i & 1, &reward)) s = {0.01f, 0.0f, 0.02f, 0.0f}, ++done_count;
    }
  });
  // Through EnvInstance (action checks, observation vector, episode ends): what an rl stage calls.
  auto run_instance = [&](const rt::ops::EnvProgram& p, int64_t n) {
    auto env = p.NewInstance("pole", 1);
    std::vector<double> obs;
    double reward;
    bool done;
    return Best(1, [&] {
      for (int64_t i = 0; i < n; ++i) {
        if (!env->Step(rt::ops::Scalar::I64(i & 1), &obs, &reward, &done, &error)) std::abort();
        if (done) env->Reset();
      }
    });
  };
  double t_inst_jit = run_instance(*native, steps);
  double t_inst_interp = run_instance(*interp, steps / 10) * 10;
  double m = static_cast<double>(steps) / 1e6;
  Report("env_cartpole_steps_cxx_O2", m / t_cxx, "Msteps/s");
  Report("env_cartpole_steps_jit", m / t_jit, "Msteps/s");
  Report("env_cartpole_steps_jit_instance", m / t_inst_jit, "Msteps/s");
  Report("env_cartpole_steps_interp_instance", m / t_inst_interp, "Msteps/s");
  Report("env_cartpole_jit_vs_cxx", t_cxx / t_jit, "x");
  if (done_count < 0) std::puts("");  // keeps the loops' results live
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  size_t n = quick ? 10'000'000 : 100'000'000;
  std::string error;
  rt::jit::JitOptions o;  // no disk cache: every run compiles
  auto jit = rt::jit::Jit::Create(o, &error);
  if (!jit) {
    std::fprintf(stderr, "jit: %s\n", error.c_str());
    return 2;
  }
  std::fprintf(stderr, "jit_bench: %zu float32 per map; CPU %s\n", n, jit->cpu().c_str());
  rt::ops::SetNativeBackend(jit.get());
  MapBench(Compile("jit_bench.mlp", kKernels), n);
  rt::ops::SetNativeBackend(jit.get());
  std::string src = std::string(MLP_SOURCE_DIR) + "/pipelines/custom_env_rl.mlp";
  std::string text;
  {
    FILE* f = std::fopen(src.c_str(), "rb");
    if (!f) return 2;
    char buf[4096];
    for (size_t r; (r = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, r);
    std::fclose(f);
  }
  EnvBench(Compile(src, text));
  CompileBench();
  int miss = 0;
  auto target = [&](const std::string& desc, bool ok) {
    std::fprintf(stderr, "%s %s\n", ok ? "PASS" : "MISS", desc.c_str());
    miss += !ok;
  };
  for (const char* k : {"normalize", "heavy"}) {
    std::string b = std::string("map_") + k + "_f32";
    target(b + "_jit_vs_cxx >= 0.9", g_vals[b + "_jit_vs_cxx"] >= 0.9);
    target(b + "_jit_vs_interp >= 20", g_vals[b + "_jit_vs_interp"] >= 20);
  }
  target("jit_compile_ms_p50 < 20", g_vals["jit_compile_ms_p50"] < 20);
  target("jit_cache_hit_ms_p50 < 1", g_vals["jit_cache_hit_ms_p50"] < 1);
  const char* strict = std::getenv("STRICT");
  return miss && strict && std::string(strict) == "1" ? 1 : 0;
}
