// The operator registry and the data stage, on plans compiled from .mlp text:
// the numbers each task produces are computed independently here.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <set>

#include "compiler/plan/lower.h"
#include "runtime/ops/registry.h"
#include "tests/test_util.h"

namespace mlp::rt::ops {
namespace {

using testing::NodeOf;

struct Task {
  uint32_t index = 0, count = 1, attempt = 0;
  std::vector<InputSet> inputs = {};
  std::function<bool()> cancelled = {};
  const KernelProgram* kernels = nullptr;
};

TaskResult RunTask(const plan::v1::Plan& p, const std::string& stage, Task t) {
  TaskContext ctx;
  ctx.plan = &p;
  ctx.node = &NodeOf(p, stage);
  ctx.index = t.index;
  ctx.count = t.count;
  ctx.attempt = t.attempt;
  ctx.inputs = std::move(t.inputs);
  ctx.cancelled = t.cancelled;
  ctx.kernels = t.kernels;
  const StageFn* fn = Global().FindStage(ctx.node->op());
  if (!fn) {
    ADD_FAILURE() << "no stage op " << ctx.node->op();
    return {};
  }
  return (*fn)(ctx);
}

Table Out(const TaskResult& r, const std::string& port) {
  EXPECT_TRUE(r.ok) << r.error;
  for (const auto& o : r.outputs) {
    if (o.name != port) continue;
    Table t;
    std::string error;
    // Copy the bytes into the table so that it outlives the result.
    auto owner = std::make_shared<std::string>(o.bytes);
    EXPECT_TRUE(Parse(*owner, &t, &error, owner)) << error;
    return t;
  }
  ADD_FAILURE() << "no output " << port;
  return {};
}

std::vector<int64_t> Ints(const Table& t, const std::string& col = "value") {
  const Column* c = t.Find(col);
  if (!c) {
    ADD_FAILURE() << "no column " << col;
    return {};
  }
  auto v = c->values<int64_t>();
  return {v.begin(), v.end()};
}

std::vector<int64_t> Iota(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t k = from; k < to; ++k) v.push_back(k);
  return v;
}

TEST(ops, RangeFilterMapSumPerShard) {
  plan::v1::Plan p = testing::CompilePlan(R"(
kernel even(x: i64) -> bool {
  x % 2 == 0
}
kernel square(x: i64) -> i64 {
  x * x
}
data squares {
  source    = range(n: 1000)
  transform = filter(even) | map(square) | sum()
  shards    = 4
}
)");
  std::string error;
  auto prog = KernelProgram::Build(p, &error);
  ASSERT_TRUE(prog) << error;
  int64_t total = 0, want_total = 0;
  for (int64_t v = 0; v < 1000; v += 2) want_total += v * v;
  for (uint32_t i = 0; i < 4; ++i) {
    // The executor's program and the shared cache must agree.
    for (const KernelProgram* k : {static_cast<const KernelProgram*>(prog.get()), static_cast<const KernelProgram*>(nullptr)}) {
      TaskResult r = RunTask(p, "squares", {.index = i, .count = 4, .kernels = k});
      ASSERT_TRUE(r.ok) << r.error;
      ASSERT_EQ(r.outputs.size(), 1u);
      EXPECT_EQ(r.outputs[0].name, "all");
      int64_t want = 0;
      for (int64_t v = 250 * i; v < 250 * (i + 1); ++v) {
        if (v % 2 == 0) want += v * v;
      }
      EXPECT_EQ(Ints(Out(r, "all")), std::vector<int64_t>{want}) << "task " << i;
      if (k) total += want;
    }
  }
  EXPECT_EQ(total, want_total);
  EXPECT_GE(prog->Find("even")->calls(), 1000u);  // the filter ran every row through the kernel
}

TEST(ops, ShardsPartitionTheRowsExactly) {
  plan::v1::Plan p = testing::CompilePlan("data r {\n  source = range(n: 10)\n  shards = 3\n}\n");
  std::vector<int64_t> all;
  std::vector<size_t> sizes;
  for (uint32_t i = 0; i < 3; ++i) {
    auto v = Ints(Out(RunTask(p, "r", {.index = i, .count = 3}), "all"));
    sizes.push_back(v.size());
    all.insert(all.end(), v.begin(), v.end());
  }
  EXPECT_EQ(all, Iota(0, 10));
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 4}));
}

TEST(ops, SplitCutsRowsIntoTheNamedOutputs) {
  plan::v1::Plan p = testing::CompilePlan(R"(
data two {
  source = range(n: 100)
  split { train: 0.9, val: 0.1 }
}
data three {
  source = range(n: 10)
  split { a: 0.7, b: 0.2, c: 0.1 }
}
data part {
  source = range(n: 10)
  split { head: 0.25 }
}
)");
  TaskResult r = RunTask(p, "two", {});
  ASSERT_EQ(r.outputs.size(), 3u);
  EXPECT_EQ(r.outputs[0].name, "all");
  EXPECT_EQ(Ints(Out(r, "all")), Iota(0, 100));
  EXPECT_EQ(Ints(Out(r, "train")), Iota(0, 90));
  EXPECT_EQ(Ints(Out(r, "val")), Iota(90, 100));
  r = RunTask(p, "three", {});
  EXPECT_EQ(Ints(Out(r, "a")).size(), 7u);
  EXPECT_EQ(Ints(Out(r, "b")), Iota(7, 9));
  EXPECT_EQ(Ints(Out(r, "c")), Iota(9, 10));  // 0.7 + 0.2 + 0.1 rounds to every row
  r = RunTask(p, "part", {});
  EXPECT_EQ(Ints(Out(r, "head")), Iota(0, 3));  // 2.5 rounds up
}

TEST(ops, AnUpstreamStageIsReadByShardOrResliced) {
  plan::v1::Plan p = testing::CompilePlan(R"(
kernel square(x: i64) -> i64 {
  x * x
}
data a {
  source = range(n: 12)
  shards = 3
}
data same {
  source    = a.all
  transform = map(square)
  shards    = 3
}
data fewer {
  source = a
  shards = 2
}
)");
  std::vector<std::string> blobs;
  for (uint32_t i = 0; i < 3; ++i) blobs.push_back(RunTask(p, "a", {.index = i, .count = 3}).outputs.at(0).bytes);
  InputSet in{"source", "a", "all", {}, 0, {}};
  for (const auto& b : blobs) in.shards.push_back({reinterpret_cast<const uint8_t*>(b.data()), b.size()});
  EXPECT_EQ(Ints(Out(RunTask(p, "same", {.index = 1, .count = 3, .inputs = {in}}), "all")),
            (std::vector<int64_t>{16, 25, 36, 49}));
  EXPECT_EQ(Ints(Out(RunTask(p, "fewer", {.index = 1, .count = 2, .inputs = {in}}), "all")), Iota(6, 12));

  InputSet bad = in;
  std::string broken = blobs[0].substr(0, 20);
  bad.shards[0] = {reinterpret_cast<const uint8_t*>(broken.data()), broken.size()};
  TaskResult r = RunTask(p, "fewer", {.index = 0, .count = 2, .inputs = {bad}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("shard 0 of `a.all`"), std::string::npos) << r.error;
  r = RunTask(p, "fewer", {.index = 0, .count = 2});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("no input"), std::string::npos) << r.error;
}

TEST(ops, FailIsDeterministicAndRespectsTheAttempt) {
  plan::v1::Plan p = testing::CompilePlan(R"(
data flaky {
  source    = range(n: 8)
  transform = fail(p: 0.5, seed: 3)
  shards    = 8
}
data other_seed {
  source    = range(n: 8)
  transform = fail(p: 0.5, seed: 4)
  shards    = 8
}
data always {
  source    = range(n: 1)
  transform = fail(p: 1.0)
}
data never {
  source    = range(n: 1)
  transform = fail(p: 0.0)
}
)");
  int failures = 0, attempt_matters = 0, seed_matters = 0;
  for (uint32_t i = 0; i < 8; ++i) {
    bool first = false;
    for (uint32_t a = 0; a < 4; ++a) {
      TaskResult r = RunTask(p, "flaky", {.index = i, .count = 8, .attempt = a});
      TaskResult again = RunTask(p, "flaky", {.index = i, .count = 8, .attempt = a});
      EXPECT_EQ(r.ok, again.ok) << "task " << i << " attempt " << a;
      if (!r.ok) {
        ++failures;
        EXPECT_TRUE(r.retryable);
        EXPECT_NE(r.error.find("`fail`: injected failure"), std::string::npos) << r.error;
      }
      if (a == 0) first = r.ok;
      if (r.ok != first) ++attempt_matters;
      if (r.ok != RunTask(p, "other_seed", {.index = i, .count = 8, .attempt = a}).ok) ++seed_matters;
    }
  }
  EXPECT_GT(failures, 0);
  EXPECT_LT(failures, 32);
  EXPECT_GT(attempt_matters, 0);
  EXPECT_GT(seed_matters, 0);
  for (uint32_t a = 0; a < 5; ++a) {
    EXPECT_FALSE(RunTask(p, "always", {.attempt = a}).ok);
    EXPECT_TRUE(RunTask(p, "never", {.attempt = a}).ok);
  }
}

TEST(ops, CanRunNamesWhatIsMissing) {
  plan::v1::Plan p = testing::CompilePlan(R"(
kernel scale(x: f32) -> f32 {
  x / 255.0
}
data ok {
  source    = synthetic(rows: 10, features: 2)
  transform = map(scale) | shuffle(seed: 1) | sum
}
data images {
  source = idx(images: "a", labels: "b")
}
data cropped {
  source    = range(n: 4)
  transform = take(n: 2) | random_crop(size: 2)
}
train t {
  model = mlp(classes: 2)
  data  = ok
}
)");
  // Every data source and transform of the schema has an implementation now.
  std::string why;
  for (const char* stage : {"ok", "images", "cropped"}) EXPECT_TRUE(Global().CanRun(NodeOf(p, stage), &why)) << why;
  // A registry that lacks some names each missing piece.
  Registry reg;
  reg.RegisterStage("data.pipeline", [](TaskContext&) { return TaskResult{}; });
  reg.RegisterSource("range", [](TaskContext&, const plan::v1::Call&, Table*, OpError*) { return true; });
  reg.RegisterSource("synthetic", [](TaskContext&, const plan::v1::Call&, Table*, OpError*) { return true; });
  for (const char* t : {"map", "shuffle", "sum", "take"}) {
    reg.RegisterTransform(t, [](TaskContext&, const plan::v1::Call&, Table*, OpError*) { return true; });
  }
  EXPECT_TRUE(reg.CanRun(NodeOf(p, "ok"), &why)) << why;
  EXPECT_FALSE(reg.CanRun(NodeOf(p, "t"), &why));
  EXPECT_EQ(why, "`train.supervised` has no runtime implementation yet");
  EXPECT_FALSE(reg.CanRun(NodeOf(p, "images"), &why));
  EXPECT_EQ(why, "source `idx` has no runtime implementation yet");
  EXPECT_FALSE(reg.CanRun(NodeOf(p, "cropped"), &why));
  EXPECT_EQ(why, "transform `random_crop` has no runtime implementation yet");
}

TEST(ops, SyntheticIsTheSameDataHoweverSharded) {
  plan::v1::Plan p = testing::CompilePlan(R"(
data s {
  source = synthetic(rows: 30, features: 3, classes: 3, seed: 5)
}
data n {
  source    = synthetic(rows: 30, features: 3, classes: 3, seed: 5)
  transform = normalize(mean: 1.0, std: 2.0)
}
)");
  Table whole = Out(RunTask(p, "s", {}), "all");
  ASSERT_EQ(whole.rows(), 30u);
  std::vector<Table> parts;
  for (uint32_t i = 0; i < 3; ++i) parts.push_back(Out(RunTask(p, "s", {.index = i, .count = 3}), "all"));
  Table joined;
  std::string error;
  ASSERT_TRUE(Concat(parts, &joined, &error)) << error;
  ASSERT_EQ(joined.rows(), 30u);
  for (const char* col : {"features", "label"}) {
    auto a = whole.Find(col)->bytes(), b = joined.Find(col)->bytes();
    ASSERT_EQ(a.size(), b.size());
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << col;
  }
  // Separable: rows of one class share the sign pattern of their features.
  std::map<int64_t, std::vector<bool>> pattern;
  auto x = whole.Find("features")->values<float>();
  auto y = Ints(whole, "label");
  for (size_t r = 0; r < 30; ++r) {
    EXPECT_GE(y[r], 0);
    EXPECT_LT(y[r], 3);
    std::vector<bool> signs = {x[3 * r] > 0, x[3 * r + 1] > 0, x[3 * r + 2] > 0};
    auto [it, fresh] = pattern.emplace(y[r], signs);
    EXPECT_EQ(it->second, signs) << "row " << r;
  }
  Table norm = Out(RunTask(p, "n", {}), "all");
  auto nx = norm.Find("features")->values<float>();
  for (size_t k = 0; k < x.size(); ++k) EXPECT_EQ(nx[k], (x[k] - 1.0f) / 2.0f);
  EXPECT_EQ(Ints(norm, "label"), y);
}

TEST(ops, ShuffleAndTake) {
  plan::v1::Plan p = testing::CompilePlan(R"(
data a {
  source    = range(n: 50)
  transform = shuffle(seed: 7) | batch(size: 4) | repartition(shards: 2)
}
data b {
  source    = range(n: 50)
  transform = shuffle(seed: 8)
}
data t {
  source    = range(n: 100)
  transform = take(n: 10)
  shards    = 4
}
)");
  auto first = Ints(Out(RunTask(p, "a", {}), "all"));
  EXPECT_EQ(first, Ints(Out(RunTask(p, "a", {}), "all")));
  EXPECT_NE(first, Iota(0, 50));
  EXPECT_NE(first, Ints(Out(RunTask(p, "b", {}), "all")));
  std::vector<int64_t> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, Iota(0, 50));
  std::vector<int64_t> taken;
  for (uint32_t i = 0; i < 4; ++i) {
    auto v = Ints(Out(RunTask(p, "t", {.index = i, .count = 4}), "all"));
    EXPECT_EQ(v.front(), 25 * static_cast<int64_t>(i));
    taken.insert(taken.end(), v.begin(), v.end());
  }
  EXPECT_EQ(taken.size(), 10u);
}

TEST(ops, KernelErrorsFailTheTaskWithTheLocation) {
  std::string text = "kernel inv(x: i64) -> i64 {\n  10 / x\n}\ndata d {\n  source    = range(n: 3)\n  transform = map(inv)\n}\n";
  plan::v1::Plan p = testing::CompilePlan(text);
  TaskResult r = RunTask(p, "d", {});
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.error, "`map`: test.mlp:2:3: integer division by zero (in kernel `inv`)");
}

TEST(ops, SumWidensAndWraps) {
  Table t;
  t.columns.push_back(Column::Make("i", DType::I64, {}, 2));
  t.columns.push_back(Column::Make("f", DType::F32, {2}, 2));
  t.columns.push_back(Column::Make("b", DType::Bool, {}, 3 - 1));
  t.Find("i")->mutable_values<int64_t>()[0] = std::numeric_limits<int64_t>::max();
  t.Find("i")->mutable_values<int64_t>()[1] = 2;
  float f[] = {0.5f, 1.0f, 0.25f, 2.0f};
  std::copy(f, f + 4, t.Find("f")->mutable_values<float>().begin());
  t.Find("b")->mutable_values<uint8_t>()[0] = 1;
  plan::v1::Call call;
  call.set_op("sum");
  TaskContext ctx;
  OpError err;
  ASSERT_TRUE((*Global().FindTransform("sum"))(ctx, call, &t, &err)) << err.message;
  ASSERT_EQ(t.rows(), 1u);
  EXPECT_EQ(t.Find("i")->values<int64_t>()[0], std::numeric_limits<int64_t>::min() + 1);
  EXPECT_EQ(t.Find("f")->dtype, DType::F64);
  EXPECT_EQ(t.Find("f")->values<double>()[0], 0.75);
  EXPECT_EQ(t.Find("f")->values<double>()[1], 3.0);
  EXPECT_EQ(t.Find("b")->values<int64_t>()[0], 1);
}

TEST(ops, SleepStopsWhenCancelled) {
  plan::v1::Plan p = testing::CompilePlan(R"(
data slow {
  source    = range(n: 2)
  transform = sleep(time: 1h)
}
data quick {
  source    = range(n: 2)
  transform = sleep(time: 1ms)
}
)");
  int polls = 0;
  TaskResult r = RunTask(p, "slow", {.cancelled = [&] { return ++polls > 2; }});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "`sleep`: cancelled");
  EXPECT_TRUE(RunTask(p, "quick", {}).ok);
}

const char* kCrashes = R"(
data segv_stage {
  source    = range(n: 1)
  transform = crash(mode: segfault)
}
data abort_stage {
  source    = range(n: 1)
  transform = crash(mode: abort, attempts: 2)
}
data oom_stage {
  source    = range(n: 1)
  transform = crash(mode: oom)
}
)";

TEST(ops_death, CrashReallyCrashesOnlyWhileAttemptIsBelowAttempts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  plan::v1::Plan p = testing::CompilePlan(kCrashes);
  EXPECT_EXIT(RunTask(p, "segv_stage", {}), ::testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EXIT(RunTask(p, "abort_stage", {.attempt = 1}), ::testing::KilledBySignal(SIGABRT), "");
  EXPECT_TRUE(RunTask(p, "segv_stage", {.attempt = 1}).ok);
  EXPECT_TRUE(RunTask(p, "abort_stage", {.attempt = 2}).ok);
}

TEST(ops_death, CrashOomAllocatesUntilItCannot) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  plan::v1::Plan p = testing::CompilePlan(kCrashes);
  // In the child only: cap the address space so that the allocation fails
  // instead of pressing on the machine.
  auto capped = [&] {
    std::ifstream statm("/proc/self/statm");
    unsigned long pages = 0;
    statm >> pages;
    rlim_t cap = static_cast<rlim_t>(pages) * 4096 + (256u << 20);
    rlimit lim{cap, cap};
    setrlimit(RLIMIT_AS, &lim);
    RunTask(p, "oom_stage", {});
  };
  EXPECT_EXIT(capped(), ::testing::KilledBySignal(SIGABRT), "allocation failed");
  EXPECT_TRUE(RunTask(p, "oom_stage", {.attempt = 1}).ok);
}

}  // namespace
}  // namespace mlp::rt::ops
