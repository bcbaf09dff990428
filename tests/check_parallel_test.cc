// Checking the stages of a large pipeline on two threads gives exactly what
// one thread gives: the same diagnostics in the same order, the same plan.
#include <gtest/gtest.h>

#include "compiler/plan/lower.h"
#include "tests/test_util.h"

namespace mlp::testing {
namespace {

// A chain of data stages with a train stage every 50, and mistakes scattered
// through both halves (so both threads report).
std::string LargePipeline(int n) {
  std::string s = "param rows: int = 100\nkernel k(x: f32) -> f32 { x * 0.5 }\n";
  s += "data d0 {\n  source = synthetic(rows: rows, features: 4)\n  transform = map(k)\n  split { train: 0.8, val: 0.2 }\n}\n";
  for (int i = 1; i < n; ++i) {
    std::string prev = "d" + std::to_string(i - 1);
    if (i % 50 == 0) {
      s += "train t" + std::to_string(i) + " {\n  model = mlp(classes: 2)\n  data = " + prev +
           ".train\n  validate = " + prev + ".val\n  epochs = " + (i % 700 == 0 ? "\"many\"" : "2") + "\n}\n";
    }
    s += "data d" + std::to_string(i) + " {\n  source = " + (i % 997 == 0 ? prev + ".trian" : prev + ".train") +
         "\n  split { train: 0.8, val: 0.2 }\n  shards = " + (i % 1311 == 0 ? "0" : "2") + "\n}\n";
  }
  s += "train last {\n  model = mlp(classes: 2)\n  data = d" + std::to_string(n - 1) + ".train\n}\n";
  return s;
}

TEST(CheckParallel, SameDiagnosticsAndPlanAsOneThread) {
  std::string text = LargePipeline(5000);
  CheckOptions one, two;
  one.parallel = false;
  two.parallel = true;
  Compilation a = CompileSource("large.mlp", text, LoadOptions{}, one);
  Compilation b = CompileSource("large.mlp", text, LoadOptions{}, two);
  ASSERT_GT(a.diags.error_count(), 5u);  // both halves have mistakes
  EXPECT_EQ(Render(a), Render(b));
  EXPECT_EQ(a.diags.error_count(), b.diags.error_count());

  // A clean pipeline: the plans are identical too.
  std::string ok;
  {
    ok = "param rows: int = 100\nkernel k(x: f32) -> f32 { x * 0.5 }\n"
         "data d0 {\n  source = synthetic(rows: rows, features: 4)\n  transform = map(k)\n"
         "  split { train: 0.8, val: 0.2 }\n}\n";
    for (int i = 1; i < 3000; ++i) {
      ok += "data d" + std::to_string(i) + " {\n  source = d" + std::to_string(i - 1) +
            ".train\n  split { train: 0.8, val: 0.2 }\n}\n";
    }
    ok += "train last {\n  model = mlp(classes: 2)\n  data = d2999.train\n}\n";
  }
  Compilation c = CompileSource("ok.mlp", ok, LoadOptions{}, one);
  Compilation d = CompileSource("ok.mlp", ok, LoadOptions{}, two);
  ASSERT_FALSE(c.diags.has_errors()) << Render(c);
  EXPECT_EQ(Render(c), Render(d));
  EXPECT_EQ(PlanToJson(LowerPlan(*c.program, *c.checked)), PlanToJson(LowerPlan(*d.program, *d.checked)));
}

}  // namespace
}  // namespace mlp::testing
