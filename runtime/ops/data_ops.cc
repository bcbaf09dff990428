// The `data.pipeline` stage and the builtin sources and transforms.
//
// A data task `index` of `count` produces shard `index`: a generated source
// makes only its slice of rows, an upstream data stage gives its shard
// `index` (or, when its shard count differs, the slice of all its rows), then
// the transforms run in order and `split` cuts the rows into the outputs.
// Everything is deterministic in the seeds, the task index and the attempt.
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <numbers>
#include <numeric>
#include <thread>

#include "runtime/ops/readers.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/registry.h"

namespace mlp::rt::ops {

namespace {

namespace pb = plan::v1;

bool Fail(OpError* err, std::string msg, bool retryable = false) {
  err->message = std::move(msg);
  err->retryable = retryable;
  return false;
}

// Typed argument readers; a missing or mistyped argument is an error naming the operator.
bool IntArg(const pb::Call& c, std::string_view name, int64_t* out, OpError* err) {
  const pb::Value* v = Arg(c, name);
  if (!v || v->kind_case() != pb::Value::kIntValue) {
    return Fail(err, "`" + c.op() + "`: argument `" + std::string(name) + "` is missing or not an int");
  }
  *out = v->int_value();
  return true;
}
bool FloatArg(const pb::Call& c, std::string_view name, double* out, OpError* err) {
  const pb::Value* v = Arg(c, name);
  if (v && v->kind_case() == pb::Value::kFloatValue) {
    *out = v->float_value();
    return true;
  }
  if (v && v->kind_case() == pb::Value::kIntValue) {
    *out = static_cast<double>(v->int_value());
    return true;
  }
  return Fail(err, "`" + c.op() + "`: argument `" + std::string(name) + "` is missing or not a number");
}
bool NonNegative(const pb::Call& c, std::string_view name, int64_t v, OpError* err) {
  if (v >= 0) return true;
  return Fail(err, "`" + c.op() + "`: argument `" + std::string(name) + "` is " + std::to_string(v) + ", below 0");
}

void Log(TaskContext& ctx, const std::string& line) {
  if (ctx.log) ctx.log(line);
}
bool Cancelled(TaskContext& ctx) { return ctx.cancelled && ctx.cancelled(); }

// Uniform doubles in [0, 1) from a hash (op_util.h).
double Unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

bool CheckSize(const std::string& op, uint64_t rows, uint64_t row_bytes, OpError* err) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(rows, row_bytes, &bytes) || bytes > kMaxTaskBytes) {
    return Fail(err, "`" + op + "`: this task would generate " + std::to_string(rows) + " rows of " +
                         std::to_string(row_bytes) + " bytes, more than the 4 GiB one task may hold; raise `shards`");
  }
  return true;
}

// Columns that map, filter and normalize act on: every column but the label.
bool IsDataColumn(const Column& c) { return c.name != "label"; }

// ---- sources

bool RangeSource(TaskContext& ctx, const pb::Call& c, Table* out, OpError* err) {
  int64_t n = 0;
  if (!IntArg(c, "n", &n, err) || !NonNegative(c, "n", n, err)) return false;
  uint64_t b = SliceBegin(static_cast<uint64_t>(n), ctx.index, ctx.count);
  uint64_t e = SliceBegin(static_cast<uint64_t>(n), ctx.index + 1ull, ctx.count);
  if (!CheckSize(c.op(), e - b, 8, err)) return false;
  Column col = Column::Make("value", DType::I64, {}, e - b);
  auto v = col.mutable_values<int64_t>();
  for (uint64_t k = 0; k < e - b; ++k) v[k] = static_cast<int64_t>(b + k);
  out->columns = {std::move(col)};
  return true;
}

// Rows depend only on (seed, row), so any sharding yields the same data set:
// the label is hashed from the row, the features are the label's centre (a
// +-1 pattern per feature) plus Gaussian noise.
bool SyntheticSource(TaskContext& ctx, const pb::Call& c, Table* out, OpError* err) {
  int64_t rows = 0, features = 0, classes = 0, seed = 0;
  double noise = 0;
  if (!IntArg(c, "rows", &rows, err) || !IntArg(c, "features", &features, err) || !IntArg(c, "classes", &classes, err) ||
      !IntArg(c, "seed", &seed, err) || !FloatArg(c, "noise", &noise, err)) {
    return false;
  }
  if (rows < 0 || features < 1 || classes < 1 || !(noise >= 0)) {
    return Fail(err, "`synthetic`: rows must be >= 0, features and classes >= 1 and noise >= 0");
  }
  uint64_t b = SliceBegin(static_cast<uint64_t>(rows), ctx.index, ctx.count);
  uint64_t e = SliceBegin(static_cast<uint64_t>(rows), ctx.index + 1ull, ctx.count);
  uint64_t n = e - b, f = static_cast<uint64_t>(features);
  if (f > kMaxTaskBytes / 4) return Fail(err, "`synthetic`: " + std::to_string(f) + " features do not fit in a task");
  if (!CheckSize(c.op(), n, f * 4, err)) return false;
  Column x = Column::Make("features", DType::F32, {f}, n);
  Column y = Column::Make("label", DType::I64, {}, n);
  auto xv = x.mutable_values<float>();
  auto yv = y.mutable_values<int64_t>();
  uint64_t s = Mix(static_cast<uint64_t>(seed));
  for (uint64_t r = 0; r < n; ++r) {
    if ((r & 4095) == 0 && Cancelled(ctx)) return Fail(err, "`synthetic`: cancelled");
    uint64_t row = b + r;
    uint64_t label = Mix(s, row) % static_cast<uint64_t>(classes);
    yv[r] = static_cast<int64_t>(label);
    for (uint64_t k = 0; k < f; ++k) {
      double centre = (Mix(Mix(s ^ 0x5eed, label), k) & 1) ? 1.0 : -1.0;
      uint64_t h = Mix(Mix(s, row), k);
      double u1 = (static_cast<double>(h >> 40) + 1.0) / 16777217.0;  // (0, 1): log is finite
      double u2 = static_cast<double>(h & 0xffffff) / 16777216.0;
      double gauss = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
      xv[r * f + k] = static_cast<float>(centre + noise * gauss);
    }
  }
  out->columns.clear();
  out->columns.push_back(std::move(x));
  out->columns.push_back(std::move(y));
  return true;
}

// ---- transforms

// The kernel named by argument `fn`, from the executor's program or the shared cache.
const CompiledKernel* KernelArg(TaskContext& ctx, const pb::Call& c, std::shared_ptr<const KernelProgram>* hold,
                                OpError* err) {
  const pb::Value* v = Arg(c, "fn");
  if (!v || v->kind_case() != pb::Value::kKernel) {
    Fail(err, "`" + c.op() + "`: argument `fn` is missing or not a kernel");
    return nullptr;
  }
  const KernelProgram* prog = ctx.kernels;
  if (!prog) {
    if (!ctx.plan) {
      Fail(err, "`" + c.op() + "`: no plan to take kernel `" + v->kernel() + "` from");
      return nullptr;
    }
    std::string why;
    *hold = SharedKernels(*ctx.plan, &why);
    if (!*hold) {
      Fail(err, "`" + c.op() + "`: the plan's kernels are invalid: " + why);
      return nullptr;
    }
    prog = hold->get();
  }
  const CompiledKernel* k = prog->Find(v->kernel());
  if (!k) Fail(err, "`" + c.op() + "`: unknown kernel `" + v->kernel() + "`");
  return k;
}

bool MapTransform(TaskContext& ctx, const pb::Call& c, Table* t, OpError* err) {
  std::shared_ptr<const KernelProgram> hold;
  const CompiledKernel* k = KernelArg(ctx, c, &hold, err);
  if (!k) return false;
  for (auto& col : t->columns) {
    if (!IsDataColumn(col)) continue;
    const Column* args[] = {&col};
    Column mapped;
    std::string why;
    if (!MapColumns(*k, args, &mapped, &why)) return Fail(err, "`map`: " + why);
    col = std::move(mapped);
  }
  return true;
}

bool FilterTransform(TaskContext& ctx, const pb::Call& c, Table* t, OpError* err) {
  std::shared_ptr<const KernelProgram> hold;
  const CompiledKernel* k = KernelArg(ctx, c, &hold, err);
  if (!k) return false;
  std::vector<uint8_t> keep(t->rows(), 1);
  for (const auto& col : t->columns) {
    if (!IsDataColumn(col)) continue;
    std::vector<uint8_t> mask;
    std::string why;
    if (!FilterMask(*k, col, &mask, &why)) return Fail(err, "`filter`: " + why);
    for (size_t r = 0; r < keep.size(); ++r) keep[r] &= mask[r];
  }
  std::vector<uint64_t> index;
  for (uint64_t r = 0; r < keep.size(); ++r) {
    if (keep[r]) index.push_back(r);
  }
  if (index.size() != keep.size()) *t = Gather(*t, index);
  return true;
}

bool NormalizeTransform(TaskContext&, const pb::Call& c, Table* t, OpError* err) {
  double mean = 0, sd = 1;
  if (!FloatArg(c, "mean", &mean, err) || !FloatArg(c, "std", &sd, err)) return false;
  if (!(sd > 0)) return Fail(err, "`normalize`: `std` must be above 0, but it is " + std::to_string(sd));
  for (auto& col : t->columns) {
    if (!IsDataColumn(col)) continue;
    if (col.dtype == DType::F32) {
      float m = static_cast<float>(mean), s = static_cast<float>(sd);
      for (float& v : col.mutable_values<float>()) v = (v - m) / s;
    } else if (col.dtype == DType::F64) {
      for (double& v : col.mutable_values<double>()) v = (v - mean) / sd;
    }
  }
  return true;
}

bool ShuffleTransform(TaskContext& ctx, const pb::Call& c, Table* t, OpError* err) {
  int64_t seed = 0;
  if (!IntArg(c, "seed", &seed, err)) return false;
  std::vector<uint64_t> perm(t->rows());
  std::iota(perm.begin(), perm.end(), 0);
  // Fisher-Yates driven by a counter hash; each task's shard gets its own permutation.
  uint64_t s = Mix(static_cast<uint64_t>(seed), ctx.index);
  for (uint64_t k = perm.size(); k > 1; --k) {
    uint64_t j = Mix(s, k) % k;
    std::swap(perm[k - 1], perm[j]);
  }
  *t = Gather(*t, perm);
  return true;
}

bool TakeTransform(TaskContext& ctx, const pb::Call& c, Table* t, OpError* err) {
  int64_t n = 0;
  if (!IntArg(c, "n", &n, err) || !NonNegative(c, "n", n, err)) return false;
  // Each task keeps its share of n, so that the stage as a whole keeps n rows.
  uint64_t share = SliceBegin(static_cast<uint64_t>(n), ctx.index + 1ull, ctx.count) -
                   SliceBegin(static_cast<uint64_t>(n), ctx.index, ctx.count);
  if (share < t->rows()) *t = Slice(*t, 0, share);
  return true;
}

// Layout-only operators: rows are not regrouped inside a shard (the consumer
// batches, and the stage's `shards` sets the shard count).
bool NoOpTransform(TaskContext&, const pb::Call&, Table*, OpError*) { return true; }

bool SleepTransform(TaskContext& ctx, const pb::Call& c, Table*, OpError* err) {
  const pb::Value* v = Arg(c, "time");
  if (!v || v->kind_case() != pb::Value::kDurationNs || v->duration_ns() < 0) {
    return Fail(err, "`sleep`: argument `time` is missing or not a non-negative duration");
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(v->duration_ns());
  Log(ctx, "sleep: " + std::to_string(v->duration_ns() / 1'000'000) + " ms");
  while (true) {
    if (Cancelled(ctx)) return Fail(err, "`sleep`: cancelled");
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return true;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(10)));
  }
}

bool FailTransform(TaskContext& ctx, const pb::Call& c, Table*, OpError* err) {
  double p = 0;
  int64_t seed = 0;
  if (!FloatArg(c, "p", &p, err) || !IntArg(c, "seed", &seed, err)) return false;
  if (!(p >= 0 && p <= 1)) return Fail(err, "`fail`: `p` must be in [0, 1], but it is " + std::to_string(p));
  std::string stage = ctx.node ? ctx.node->name() : "";
  uint64_t h = Mix(Mix(Mix(static_cast<uint64_t>(seed), HashStr(stage)), ctx.index), ctx.attempt);
  if (Unit(h) < p) {
    return Fail(err,
                "`fail`: injected failure (p = " + std::to_string(p) + ", task " + std::to_string(ctx.index) +
                    ", attempt " + std::to_string(ctx.attempt) + ")",
                /*retryable=*/true);
  }
  return true;
}

std::string SymbolArg(const pb::Call& c, std::string_view name) {
  const pb::Value* v = Arg(c, name);
  if (!v) return "";
  if (v->kind_case() == pb::Value::kSymbol) return v->symbol();
  if (v->kind_case() == pb::Value::kStringValue) return v->string_value();
  return "";
}

// Really crashes the process (for tests of crash isolation), but only while
// attempt < attempts, so that a retry succeeds.
bool CrashTransform(TaskContext& ctx, const pb::Call& c, Table*, OpError* err) {
  std::string mode = SymbolArg(c, "mode");
  int64_t attempts = 1;
  if (!IntArg(c, "attempts", &attempts, err)) return false;
  if (mode != "segfault" && mode != "abort" && mode != "oom") {
    return Fail(err, "`crash`: `mode` must be segfault, abort or oom, but it is `" + mode + "`");
  }
  if (static_cast<int64_t>(ctx.attempt) >= attempts) return true;
  Log(ctx, "crash: " + mode + " on attempt " + std::to_string(ctx.attempt));
  std::fflush(nullptr);
  if (mode == "segfault") {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
  } else if (mode == "oom") {
    // Allocate and touch memory until the kernel (or a cgroup) kills the process.
    std::vector<void*> blocks;
    while (!Cancelled(ctx)) {
      void* p = std::malloc(64u << 20);
      if (!p) {
        std::fputs("crash(mode: oom): allocation failed\n", stderr);
        break;
      }
      std::memset(p, 0xab, 64u << 20);
      blocks.push_back(p);
    }
    if (Cancelled(ctx)) {
      for (void* p : blocks) std::free(p);
      return Fail(err, "`crash`: cancelled");
    }
  }
  std::abort();
}

// One row: per-column sums over the rows, elementwise for shaped columns.
// Integers and bools sum as i64 (wrapping), floats as f64.
bool SumTransform(TaskContext&, const pb::Call&, Table* t, OpError*) {
  Table out;
  for (const auto& col : t->columns) {
    bool fl = IsFloat(col.dtype);
    Column s = Column::Make(col.name, fl ? DType::F64 : DType::I64, col.shape, 1);
    uint64_t per = col.row_elems(), rows = col.rows();
    if (fl) {
      auto dst = s.mutable_values<double>();
      auto f32 = col.values<float>();
      auto f64 = col.values<double>();
      for (uint64_t r = 0; r < rows; ++r) {
        for (uint64_t e = 0; e < per; ++e) {
          dst[e] += col.dtype == DType::F32 ? static_cast<double>(f32[r * per + e]) : f64[r * per + e];
        }
      }
    } else {
      auto dst = s.mutable_values<int64_t>();
      std::vector<uint64_t> acc(per, 0);
      const uint8_t* base = col.bytes().data();
      size_t sz = DTypeSize(col.dtype);
      for (uint64_t r = 0; r < rows; ++r) {
        for (uint64_t e = 0; e < per; ++e) {
          const uint8_t* p = base + (r * per + e) * sz;
          int64_t v = 0;
          if (col.dtype == DType::I32) {
            int32_t x;
            std::memcpy(&x, p, 4);
            v = x;
          } else if (col.dtype == DType::I64) {
            std::memcpy(&v, p, 8);
          } else {
            v = *p;  // u8, bool
          }
          acc[e] += static_cast<uint64_t>(v);
        }
      }
      for (uint64_t e = 0; e < per; ++e) dst[e] = static_cast<int64_t>(acc[e]);
    }
    out.columns.push_back(std::move(s));
  }
  *t = std::move(out);
  return true;
}

// ---- the stage

TaskResult Error(std::string msg, bool retryable = false) {
  TaskResult r;
  r.ok = false;
  r.error = std::move(msg);
  r.retryable = retryable;
  return r;
}

// The rows this task reads from an upstream data stage.
bool ReadInput(TaskContext& ctx, const pb::StageRef& ref, Table* out, std::string* error) {
  const InputSet* in = nullptr;
  for (const auto& i : ctx.inputs) {
    if (i.field == "source") in = &i;
  }
  for (const auto& i : ctx.inputs) {
    if (!in && i.stage == ref.stage() && i.output == ref.output()) in = &i;
  }
  std::string what = "`" + ref.stage() + (ref.output().empty() ? "" : "." + ref.output()) + "`";
  if (!in) {
    *error = "source: the runtime gave no input for " + what;
    return false;
  }
  auto parse = [&](size_t k, Table* t) {
    const Shard& s = in->shards[k];
    std::string why;
    if (!s.data && s.size) {
      *error = "source: shard " + std::to_string(k) + " of " + what + " has no data";
      return false;
    }
    if (!Parse(std::string_view(reinterpret_cast<const char*>(s.data), s.size), t, &why)) {
      *error = "source: shard " + std::to_string(k) + " of " + what + ": " + why;
      return false;
    }
    return true;
  };
  if (in->shards.size() == ctx.count) return parse(ctx.index, out);
  std::vector<Table> all(in->shards.size());
  for (size_t k = 0; k < all.size(); ++k) {
    if (!parse(k, &all[k])) return false;
  }
  Table joined;
  std::string why;
  if (!Concat(all, &joined, &why)) {
    *error = "source: the shards of " + what + ": " + why;
    return false;
  }
  uint64_t n = joined.rows();
  *out = Slice(joined, SliceBegin(n, ctx.index, ctx.count), SliceBegin(n, ctx.index + 1ull, ctx.count));
  return true;
}

TaskResult RunDataPipeline(const Registry& reg, TaskContext& ctx) {
  if (!ctx.node) return Error("data.pipeline: no node");
  if (ctx.count == 0 || ctx.index >= ctx.count) {
    return Error("data.pipeline: task index " + std::to_string(ctx.index) + " is not below the task count " +
                 std::to_string(ctx.count));
  }
  Table table;
  const pb::Value* source = Field(*ctx.node, "source");
  if (!source) return Error("data.pipeline: the node has no `source`");
  if (source->kind_case() == pb::Value::kCall) {
    const SourceFn* fn = reg.FindSource(source->call().op());
    if (!fn) return Error("source `" + source->call().op() + "` has no runtime implementation yet");
    OpError err;
    if (!(*fn)(ctx, source->call(), &table, &err)) return Error(err.message, err.retryable);
  } else if (source->kind_case() == pb::Value::kRef) {
    std::string why;
    if (!ReadInput(ctx, source->ref(), &table, &why)) return Error(why);
  } else {
    return Error("data.pipeline: `source` is neither an operator call nor a stage output");
  }

  if (const pb::Value* tr = Field(*ctx.node, "transform")) {
    std::vector<const pb::Call*> calls;
    if (tr->kind_case() == pb::Value::kCall) {
      calls.push_back(&tr->call());
    } else if (tr->kind_case() == pb::Value::kList) {
      for (const auto& item : tr->list().items()) {
        if (item.kind_case() != pb::Value::kCall) return Error("data.pipeline: a `transform` item is not an operator");
        calls.push_back(&item.call());
      }
    } else {
      return Error("data.pipeline: `transform` is neither an operator nor a list of them");
    }
    for (const pb::Call* c : calls) {
      if (Cancelled(ctx)) return Error("data.pipeline: cancelled");
      const TransformFn* fn = reg.FindTransform(c->op());
      if (!fn) return Error("transform `" + c->op() + "` has no runtime implementation yet");
      OpError err;
      if (!(*fn)(ctx, *c, &table, &err)) return Error(err.message, err.retryable);
    }
  }

  // Split: contiguous runs of the task's rows, in the order the fractions are written.
  std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>> parts;
  if (const pb::Value* split = Field(*ctx.node, "split"); split && split->kind_case() == pb::Value::kMap) {
    uint64_t n = table.rows();
    double cum = 0;
    uint64_t prev = 0;
    for (const auto& e : split->map().entries()) {
      double f = e.value().kind_case() == pb::Value::kIntValue ? static_cast<double>(e.value().int_value())
                                                               : e.value().float_value();
      if (!(f > 0 && f <= 1)) return Error("split: fraction `" + e.name() + "` is " + std::to_string(f) + ", not in (0, 1]");
      cum += f;
      uint64_t end = std::min<uint64_t>(n, static_cast<uint64_t>(std::llround(std::min(cum, 1.0) * static_cast<double>(n))));
      end = std::max(end, prev);
      parts.push_back({e.name(), {prev, end}});
      prev = end;
    }
  }
  TaskResult res;
  for (const auto& port : ctx.node->outputs()) {
    if (port.name() == "all") {
      res.outputs.push_back({port.name(), Serialize(table)});
      continue;
    }
    bool found = false;
    for (const auto& [name, range] : parts) {
      if (name != port.name()) continue;
      res.outputs.push_back({port.name(), Serialize(Slice(table, range.first, range.second))});
      found = true;
    }
    if (!found) return Error("data.pipeline: output `" + port.name() + "` is neither `all` nor a split name");
  }
  return res;
}

TaskResult DataPipeline(const Registry& reg, TaskContext& ctx) {
  try {
    return RunDataPipeline(reg, ctx);
  } catch (const std::bad_alloc&) {
    return Error("data.pipeline: out of memory", /*retryable=*/true);
  }
}

}  // namespace

void RegisterBuiltins(Registry& r) {
  const Registry* self = &r;  // the stage finds its sources and transforms in the registry it belongs to
  r.RegisterStage("data.pipeline", [self](TaskContext& ctx) { return DataPipeline(*self, ctx); });
  r.RegisterSource("range", RangeSource);
  r.RegisterSource("synthetic", SyntheticSource);
  r.RegisterSource("idx", IdxSource);
  r.RegisterSource("cifar10", Cifar10Source);
  r.RegisterSource("csv", CsvSource);
  r.RegisterTransform("map", MapTransform);
  r.RegisterTransform("filter", FilterTransform);
  r.RegisterTransform("normalize", NormalizeTransform);
  r.RegisterTransform("shuffle", ShuffleTransform);
  r.RegisterTransform("take", TakeTransform);
  r.RegisterTransform("batch", NoOpTransform);
  r.RegisterTransform("repartition", NoOpTransform);
  r.RegisterTransform("random_crop", RandomCropTransform);
  r.RegisterTransform("horizontal_flip", HorizontalFlipTransform);
  r.RegisterTransform("sleep", SleepTransform);
  r.RegisterTransform("fail", FailTransform);
  r.RegisterTransform("crash", CrashTransform);
  r.RegisterTransform("sum", SumTransform);
}

}  // namespace mlp::rt::ops
