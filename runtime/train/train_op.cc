// The `train.supervised` stage: reads the node's fields into a TrainConfig,
// the `data` and `validate` inputs into f32 views, and runs the trainer
// plugin; outputs the model archive and the per-epoch metrics table.
#include "runtime/train/train_op.h"

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

#include "runtime/ops/op_util.h"

namespace mlp::rt::train {
namespace {

namespace pb = plan::v1;

using ops::Arg;
using ops::Field;

// An operator value: a call, or a bare name (`loss = mse`) that takes every default.
bool OpOf(const pb::Value* v, std::string* op, const pb::Call** call) {
  *call = nullptr;
  if (!v) return false;
  if (v->kind_case() == pb::Value::kCall) {
    *op = v->call().op();
    *call = &v->call();
    return true;
  }
  if (v->kind_case() == pb::Value::kSymbol) {
    *op = v->symbol();
    return true;
  }
  return false;
}

// Typed readers of call arguments; a missing argument keeps the default.
bool Num(const pb::Call* c, std::string_view name, double* out, std::string* error) {
  const pb::Value* v = c ? Arg(*c, name) : nullptr;
  if (!v) return true;
  if (v->kind_case() == pb::Value::kFloatValue) *out = v->float_value();
  else if (v->kind_case() == pb::Value::kIntValue) *out = static_cast<double>(v->int_value());
  else return *error = "`" + c->op() + "`: `" + std::string(name) + "` is not a number", false;
  return true;
}
bool Int(const pb::Call* c, std::string_view name, int64_t* out, std::string* error) {
  const pb::Value* v = c ? Arg(*c, name) : nullptr;
  if (!v) return true;
  if (v->kind_case() != pb::Value::kIntValue) return *error = "`" + c->op() + "`: `" + std::string(name) + "` is not an int", false;
  *out = v->int_value();
  return true;
}
bool Bool(const pb::Call* c, std::string_view name, bool* out, std::string* error) {
  const pb::Value* v = c ? Arg(*c, name) : nullptr;
  if (!v) return true;
  if (v->kind_case() != pb::Value::kBoolValue) return *error = "`" + c->op() + "`: `" + std::string(name) + "` is not a bool", false;
  *out = v->bool_value();
  return true;
}
bool Ints(const pb::Call* c, std::string_view name, std::vector<int64_t>* out, std::string* error) {
  const pb::Value* v = c ? Arg(*c, name) : nullptr;
  if (!v) return true;
  if (v->kind_case() != pb::Value::kList) return *error = "`" + c->op() + "`: `" + std::string(name) + "` is not a list", false;
  out->clear();
  for (const auto& i : v->list().items()) {
    if (i.kind_case() != pb::Value::kIntValue || i.int_value() < 1) {
      return *error = "`" + c->op() + "`: `" + std::string(name) + "` must hold ints >= 1", false;
    }
    out->push_back(i.int_value());
  }
  return true;
}
bool NodeInt(const pb::Node& n, std::string_view name, int64_t* out, std::string* error) {
  const pb::Value* v = Field(n, name);
  if (!v) return true;
  if (v->kind_case() != pb::Value::kIntValue) return *error = "`" + std::string(name) + "` is not an int", false;
  *out = v->int_value();
  return true;
}

bool ScheduleFrom(const pb::Value* v, ScheduleSpec* s, std::string* error, int depth = 0) {
  if (!v) return true;
  const pb::Call* c = nullptr;
  if (!OpOf(v, &s->kind, &c)) return *error = "`schedule` is not a schedule", false;
  if (depth > 8) return *error = "`schedule`: warm-ups nest too deep", false;
  if (s->kind == "constant") return true;
  if (s->kind == "step_lr") return Int(c, "every", &s->every, error) && Num(c, "gamma", &s->gamma, error);
  if (s->kind == "cosine") return Num(c, "min_lr", &s->min_lr, error);
  if (s->kind == "warmup") {
    if (!Int(c, "epochs", &s->warmup_epochs, error)) return false;
    s->then.assign(1, ScheduleSpec{});
    return ScheduleFrom(c ? Arg(*c, "then") : nullptr, &s->then[0], error, depth + 1);
  }
  return *error = "schedule `" + s->kind + "` has no runtime implementation yet", false;
}

}  // namespace

bool ConfigFromNode(const pb::Node& node, TrainConfig* cfg, std::string* error) {
  std::string op;
  const pb::Call* c = nullptr;
  if (!OpOf(Field(node, "model"), &op, &c) || !c) return *error = "`model` is not a model operator", false;
  ModelSpec& m = cfg->model;
  m.arch = op;
  if (op == "mlp") {
    m.hidden = {128};
    if (!Ints(c, "hidden", &m.hidden, error)) return false;
  } else if (op == "cnn") {
    m.channels = {32, 64};
    if (!Ints(c, "channels", &m.channels, error)) return false;
  } else if (op == "resnet18") {
    if (!Int(c, "in_channels", &m.in_channels, error)) return false;
  } else {
    return *error = "model `" + op + "` has no runtime implementation yet (mlp, cnn and resnet18 have)", false;
  }
  if (!Int(c, "classes", &m.classes, error) || !Num(c, "dropout", &m.dropout, error)) return false;
  if (m.classes < 1) return *error = "`" + op + "`: `classes` must be >= 1", false;
  if (!(m.dropout >= 0 && m.dropout < 1)) return *error = "`" + op + "`: `dropout` must be in [0, 1)", false;

  OptimizerSpec& o = cfg->optimizer;
  if (const pb::Value* v = Field(node, "optimizer")) {
    if (!OpOf(v, &o.kind, &c)) return *error = "`optimizer` is not an optimizer", false;
    if (o.kind == "adamw") o.weight_decay = 0.01;
    if (o.kind != "sgd" && o.kind != "adam" && o.kind != "adamw") {
      return *error = "optimizer `" + o.kind + "` has no runtime implementation yet", false;
    }
    if (!Num(c, "lr", &o.lr, error) || !Num(c, "momentum", &o.momentum, error) ||
        !Bool(c, "nesterov", &o.nesterov, error) || !Num(c, "beta1", &o.beta1, error) ||
        !Num(c, "beta2", &o.beta2, error) || !Num(c, "weight_decay", &o.weight_decay, error)) {
      return false;
    }
    if (o.kind == "sgd" && !(c && Arg(*c, "lr"))) return *error = "`sgd` needs `lr`", false;
    if (!(o.lr > 0)) return *error = "`" + o.kind + "`: `lr` must be above 0", false;
    if (o.nesterov && !(o.momentum > 0)) return *error = "`sgd`: Nesterov momentum needs `momentum` above 0", false;
  }
  if (!ScheduleFrom(Field(node, "schedule"), &cfg->schedule, error)) return false;
  if (const pb::Value* v = Field(node, "loss")) {
    if (!OpOf(v, &cfg->loss, &c)) return *error = "`loss` is not a loss", false;
    if (cfg->loss != "cross_entropy" && cfg->loss != "mse") {
      return *error = "loss `" + cfg->loss + "` has no runtime implementation yet", false;
    }
    if (!Num(c, "label_smoothing", &cfg->label_smoothing, error)) return false;
  }
  int64_t seed = 0;
  if (!NodeInt(node, "epochs", &cfg->epochs, error) || !NodeInt(node, "batch_size", &cfg->batch_size, error) ||
      !NodeInt(node, "grad_accum", &cfg->grad_accum, error) || !NodeInt(node, "seed", &seed, error)) {
    return false;
  }
  if (cfg->epochs < 1 || cfg->batch_size < 1 || cfg->grad_accum < 1) {
    return *error = "`epochs`, `batch_size` and `grad_accum` must be >= 1", false;
  }
  cfg->seed = static_cast<uint64_t>(seed);
  if (const pb::Value* v = Field(node, "precision")) {
    std::string p = v->kind_case() == pb::Value::kSymbol ? v->symbol() : v->string_value();
    if (p != "fp32" && p != "bf16") return *error = "`precision` must be fp32 or bf16", false;
    cfg->bf16 = p == "bf16";
  }
  // Intra-op threads: the cpus one rank asked for, rounded, at least one.
  int64_t cpu_milli = 1000;
  for (const auto& r : node.roles()) {
    if (r.name() != "rank") continue;
    cpu_milli = r.resources().cpu_milli();
    cfg->gpu = r.resources().gpu_milli() > 0;
  }
  cfg->threads = static_cast<int>(std::clamp<int64_t>((cpu_milli + 500) / 1000, 1, 256));
  if (const pb::Value* v = Field(node, "checkpoint"); v && v->kind_case() == pb::Value::kMap) {
    for (const auto& e : v->map().entries()) {
      if (e.name() != "every") continue;
      if (e.value().kind_case() != pb::Value::kIntValue || e.value().int_value() < 1) {
        return *error = "`checkpoint.every` must be an int >= 1", false;
      }
      cfg->checkpoint_every = e.value().int_value();
    }
  }
  int64_t workers = 1;
  if (!NodeInt(node, "workers", &workers, error)) return false;
  if (workers < 1 || workers > 4096) return *error = "`workers` must be in 1..4096", false;
  cfg->dist.world = static_cast<int>(workers);
  return true;
}

bool CheckNode(const pb::Node& node, std::string* why) {
  TrainConfig cfg;
  return ConfigFromNode(node, &cfg, why);
}

bool ViewTable(const ops::Table& t, DataView* view, DataStorage* st, std::string* error) {
  const ops::Column* x = t.Find("image");
  if (!x) x = t.Find("features");
  if (!x) {
    std::string cols;
    for (const auto& c : t.columns) cols += (cols.empty() ? "`" : ", `") + c.name + "`";
    return *error = "needs an `image` or `features` column, but the data has " + (cols.empty() ? "none" : cols), false;
  }
  *view = DataView{};
  view->rows = t.rows();
  for (uint64_t d : x->shape) view->row_shape.push_back(static_cast<int64_t>(d));
  if (view->row_shape.empty()) view->row_shape = {1};
  auto convert = [](const ops::Column& c, std::vector<float>* out) {
    out->resize(c.elems());
    auto put = [&](auto span) {
      for (size_t i = 0; i < span.size(); ++i) (*out)[i] = static_cast<float>(span[i]);
    };
    switch (c.dtype) {
      case ops::DType::U8:
      case ops::DType::Bool: put(c.values<uint8_t>()); break;
      case ops::DType::I32: put(c.values<int32_t>()); break;
      case ops::DType::I64: put(c.values<int64_t>()); break;
      case ops::DType::F32: put(c.values<float>()); break;
      case ops::DType::F64: put(c.values<double>()); break;
    }
  };
  if (x->dtype == ops::DType::F32) {
    view->x = x->values<float>().data();  // the column views the input shard: no copy
  } else {
    convert(*x, &st->x);
    view->x = st->x.data();
  }
  if (const ops::Column* y = t.Find("label")) {
    if (!y->shape.empty()) return *error = "`label` must be one integer per row", false;
    if (y->dtype == ops::DType::I64) {
      view->labels = y->values<int64_t>().data();
    } else if (y->dtype == ops::DType::I32 || y->dtype == ops::DType::U8) {
      st->labels.resize(y->rows());
      if (y->dtype == ops::DType::I32) {
        auto v = y->values<int32_t>();
        for (size_t i = 0; i < v.size(); ++i) st->labels[i] = v[i];
      } else {
        auto v = y->values<uint8_t>();
        for (size_t i = 0; i < v.size(); ++i) st->labels[i] = v[i];
      }
      view->labels = st->labels.data();
    } else {
      return *error = "`label` is " + std::string(ops::DTypeName(y->dtype)) + ", not integers", false;
    }
  }
  if (const ops::Column* g = t.Find("target")) {
    if (!ops::IsFloat(g->dtype)) return *error = "`target` must hold floats", false;
    if (g->shape.size() > 1) return *error = "`target` must be one float or a vector of floats per row", false;
    convert(*g, &st->targets);
    view->targets = st->targets.data();
    view->target_dim = static_cast<int64_t>(g->row_elems());
  }
  return true;
}

ops::Table MetricsTable(const std::vector<EpochMetrics>& epochs) {
  uint64_t n = epochs.size();
  ops::Table t;
  ops::Column e = ops::Column::Make("epoch", ops::DType::I64, {}, n);
  auto ev = e.mutable_values<int64_t>();
  for (uint64_t i = 0; i < n; ++i) ev[i] = epochs[i].epoch;
  t.columns.push_back(std::move(e));
  auto add = [&](const char* name, double EpochMetrics::*field) {
    ops::Column c = ops::Column::Make(name, ops::DType::F64, {}, n);
    auto v = c.mutable_values<double>();
    for (uint64_t i = 0; i < n; ++i) v[i] = epochs[i].*field;
    t.columns.push_back(std::move(c));
  };
  add("lr", &EpochMetrics::lr);
  add("train.loss", &EpochMetrics::train_loss);
  add("train.accuracy", &EpochMetrics::train_accuracy);
  add("val.loss", &EpochMetrics::val_loss);
  add("val.accuracy", &EpochMetrics::val_accuracy);
  add("samples_per_s", &EpochMetrics::samples_per_s);
  add("seconds", &EpochMetrics::seconds);
  return t;
}

namespace {

ops::TaskResult Error(std::string msg, bool retryable) {
  ops::TaskResult r;
  r.ok = false;
  r.error = "train: " + std::move(msg);
  r.retryable = retryable;
  return r;
}

// Rank `rank` of `world`'s part of input `field`, as one table (the empty
// table when there is no such input): with at least as many shards as ranks,
// shards rank, rank + world, ...; with fewer, an even slice of the rows.
bool ReadInput(ops::TaskContext& ctx, std::string_view field, uint32_t rank, uint32_t world, bool* present,
               ops::Table* out, std::string* error) {
  *present = false;
  for (const auto& in : ctx.inputs) {
    if (in.field != field) continue;
    *present = true;
    // The runtime may have sent only this rank's shards (shard_index says which).
    size_t total = in.total_shards ? in.total_shards : in.shards.size();
    bool given = !in.shard_index.empty() && in.shard_index.size() == in.shards.size();
    bool by_shard = total >= world;
    std::vector<size_t> pick;
    for (size_t k = 0; k < in.shards.size(); ++k) {
      size_t index = given ? in.shard_index[k] : k;
      if (!by_shard || index % world == rank) pick.push_back(k);
    }
    std::vector<ops::Table> parts(pick.size());
    std::string what = "`" + std::string(field) + "` (" + in.stage + (in.output.empty() ? "" : "." + in.output) + ")";
    for (size_t i = 0; i < pick.size(); ++i) {
      const ops::Shard& s = in.shards[pick[i]];
      std::string why;
      if (!ops::Parse(std::string_view(reinterpret_cast<const char*>(s.data), s.size), &parts[i], &why)) {
        return *error = what + ", shard " + std::to_string(given ? in.shard_index[pick[i]] : pick[i]) + ": " + why, false;
      }
    }
    std::string why;
    if (!ops::Concat(parts, out, &why)) return *error = what + ": " + why, false;
    if (!by_shard && world > 1) {
      uint64_t rows = out->rows(), begin = rows * rank / world, end = rows * (rank + 1) / world;
      *out = ops::Slice(*out, begin, end);
    }
    return true;
  }
  return true;
}

// The checkpoint a restarted task was given (input `__checkpoint`), or empty.
std::string_view CheckpointInput(const ops::TaskContext& ctx) {
  for (const auto& in : ctx.inputs)
    if (in.field == ops::kCheckpointField && in.shards.size() == 1)
      return std::string_view(reinterpret_cast<const char*>(in.shards[0].data), in.shards[0].size);
  return {};
}

// MLPC_TEST_KILL_RANK=RANK:EPOCH:BATCH (tests only): that rank's process kills
// itself with SIGKILL at that batch of the gang's first attempt, as a crash would.
bool KillPointReached(const ops::TaskContext& ctx, const BatchProgress& p) {
  static const char* spec = std::getenv("MLPC_TEST_KILL_RANK");
  if (!spec || ctx.attempt != 0) return false;
  long r = -1, e = -1, b = -1;
  if (std::sscanf(spec, "%ld:%ld:%ld", &r, &e, &b) != 3) return false;
  return r == static_cast<long>(ctx.index) && e == p.epoch && b == p.batch;
}

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ops::TaskResult RunTrain(ops::TaskContext& ctx) {
  if (!ctx.node) return Error("no node", false);
  auto log = [&](const std::string& line) {
    if (ctx.log) ctx.log(line);
  };
  TrainConfig cfg;
  std::string error;
  if (!ConfigFromNode(*ctx.node, &cfg, &error)) return Error(error, false);
  if (ctx.count != static_cast<uint32_t>(cfg.dist.world) || ctx.index >= ctx.count) {
    return Error("the stage has " + std::to_string(cfg.dist.world) + " workers, but this task is " +
                     std::to_string(ctx.index) + " of " + std::to_string(ctx.count),
                 false);
  }
  const uint32_t rank = ctx.index, world = ctx.count;
  ops::Table train_t, val_t;
  bool has_train = false, has_val = false;
  if (!ReadInput(ctx, "data", rank, world, &has_train, &train_t, &error)) return Error(error, false);
  if (!has_train) return Error("the runtime gave no `data` input", false);
  if (!ReadInput(ctx, "validate", rank, world, &has_val, &val_t, &error)) return Error(error, false);
  DataView train_v, val_v;
  DataStorage train_s, val_s;
  if (!ViewTable(train_t, &train_v, &train_s, &error)) return Error("`data`: " + error, false);
  if (has_val && !ViewTable(val_t, &val_v, &val_s, &error)) return Error("`validate`: " + error, false);
  cfg.model.input_shape = train_v.row_shape;

  const TrainerApi* api = LoadTrainer(&error);
  if (!api) return Error(error, false);
  std::string blas = ReferenceBlas(ReadFile("/proc/self/maps"));
  if (!blas.empty() && rank == 0) {
    std::string w = "LibTorch uses the reference BLAS (" + blas +
                    "), which trains about 10x slower; install libopenblas0-openmp (or -pthread)";
    if (ctx.warn) ctx.warn("warning: " + w);
    else log("warning: " + w);
  }
  log("train: rank " + std::to_string(rank) + " of " + std::to_string(world) + ": " + cfg.model.arch + " on " +
      std::to_string(train_v.rows) + " rows" + (has_val ? " (" + std::to_string(val_v.rows) + " for validation)" : "") +
      ", " + std::to_string(cfg.epochs) + " epochs, batch " + std::to_string(cfg.batch_size) + ", " +
      std::to_string(cfg.threads) + " threads");
  cfg.dist.rank = static_cast<int>(rank);
  if (!ctx.node_host.empty()) cfg.dist.host = ctx.node_host;
  if (world > 1) {
    if (!ctx.kv_set || ctx.gang.empty()) return Error("data-parallel training needs a cluster run (no gang store)", false);
    std::string prefix = ctx.gang + "/";
    cfg.dist.set = [&ctx, prefix](const std::string& k, const std::string& v, std::string* e) {
      return ctx.kv_set(prefix + k, v, e);
    };
    cfg.dist.get = [&ctx, prefix](const std::string& k, std::string* v, bool* f, std::string* e) {
      return ctx.kv_get(prefix + k, v, f, e);
    };
    cfg.dist.add = [&ctx, prefix](const std::string& k, int64_t d, int64_t* sum, std::string* e) {
      return ctx.kv_add(prefix + k, d, sum, e);
    };
  }
  cfg.resume = CheckpointInput(ctx);
  TrainHooks hooks;
  hooks.log = [&](std::string_view line) { log(std::string(line)); };
  hooks.cancelled = ctx.cancelled;
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  hooks.progress = [&](const BatchProgress& p) {
    if (KillPointReached(ctx, p)) raise(SIGKILL);
    auto now = std::chrono::steady_clock::now();
    if (rank != 0 || !ctx.progress || (now - last < std::chrono::milliseconds(500) && p.batch != p.batches)) return;
    last = now;
    char buf[160];
    std::snprintf(buf, sizeof buf, "epoch %lld/%lld batch %lld/%lld loss %.4f %.0f samples/s",
                  static_cast<long long>(p.epoch), static_cast<long long>(p.epochs), static_cast<long long>(p.batch),
                  static_cast<long long>(p.batches), p.loss, p.samples_per_s);
    ctx.progress(buf);
  };
  if (ctx.checkpoint) {
    hooks.checkpoint = [&](int64_t epoch, const std::string& bytes, std::string* e) {
      return ctx.checkpoint(epoch, bytes, e);
    };
  }
  TrainResult r = api->train(cfg, train_v, has_val ? &val_v : nullptr, hooks);
  if (!r.ok) return Error(r.error, r.retryable);
  ops::TaskResult res;
  for (const auto& port : ctx.node->outputs()) {
    if (port.name() == "model") {
      res.outputs.push_back({port.name(), std::move(r.model)});  // rank 0's; empty on the others
    } else if (port.name() == "metrics") {
      // The metrics are over all ranks; rank 0 reports them, the others an empty table.
      res.outputs.push_back(
          {port.name(), ops::Serialize(MetricsTable(rank == 0 ? r.epochs : std::vector<EpochMetrics>{}))});
    } else {
      return Error("unknown output `" + port.name() + "`", false);
    }
  }
  return res;
}

}  // namespace

void Register(ops::Registry& r) {
  r.RegisterStage(kTrainOp, [](ops::TaskContext& ctx) {
    try {
      return RunTrain(ctx);
    } catch (const std::bad_alloc&) {
      return Error("out of memory", true);
    }
  });
  r.RegisterStageCheck(kTrainOp, [](const pb::Node& n, std::string* why) { return CheckNode(n, why); });
}

const TrainerApi* LoadTrainer(std::string* error) {
  static std::mutex mu;
  static const TrainerApi* api = nullptr;
  static std::string failure;
  std::lock_guard<std::mutex> lock(mu);
  if (api) return api;
  if (!failure.empty()) return *error = failure, nullptr;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("MLPC_TRAINER"); env && *env) candidates.push_back(env);
  char exe[4096];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    std::string dir(exe, static_cast<size_t>(len));
    dir.resize(dir.rfind('/') + 1);
    candidates.push_back(dir + "libmlp_trainer.so");
  }
#ifdef MLP_TRAINER_PATH
  candidates.push_back(MLP_TRAINER_PATH);
#endif
  std::string tried;
  for (const auto& path : candidates) {
    if (access(path.c_str(), R_OK) != 0) {
      tried += "\n  " + path + ": not found";
      continue;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      tried += "\n  " + path + ": " + dlerror();
      continue;
    }
    using Entry = const TrainerApi* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(h, "mlp_trainer_api_v2"));
    const TrainerApi* a = entry ? entry() : nullptr;
    if (!a || a->version != 2 || !a->train) {
      tried += "\n  " + path + ": not a version-2 trainer plugin";
      continue;
    }
    return api = a;
  }
  failure = "cannot load the trainer plugin (libmlp_trainer.so; set MLPC_TRAINER to its path):" + tried;
  return *error = failure, nullptr;
}

namespace {

std::string Num6(double v) {
  if (std::isnan(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

std::string MetricsCsv(const std::vector<EpochMetrics>& epochs) {
  std::string out = "epoch,lr,train.loss,train.accuracy,val.loss,val.accuracy,samples_per_s,seconds\n";
  for (const auto& m : epochs) {
    out += std::to_string(m.epoch) + "," + Num6(m.lr) + "," + Num6(m.train_loss) + "," + Num6(m.train_accuracy) + "," +
           Num6(m.val_loss) + "," + Num6(m.val_accuracy) + "," + Num6(m.samples_per_s) + "," + Num6(m.seconds) + "\n";
  }
  return out;
}

std::string MetricsJson(const std::vector<EpochMetrics>& epochs) {
  auto num = [](double v) { return std::isnan(v) ? std::string("null") : Num6(v); };
  std::string out = "[";
  for (size_t i = 0; i < epochs.size(); ++i) {
    const auto& m = epochs[i];
    out += std::string(i ? ",\n " : "") + "{\"epoch\": " + std::to_string(m.epoch) + ", \"lr\": " + num(m.lr) +
           ", \"train.loss\": " + num(m.train_loss) + ", \"train.accuracy\": " + num(m.train_accuracy) +
           ", \"val.loss\": " + num(m.val_loss) + ", \"val.accuracy\": " + num(m.val_accuracy) +
           ", \"samples_per_s\": " + num(m.samples_per_s) + ", \"seconds\": " + num(m.seconds) + "}";
  }
  return out + "]\n";
}

std::string ReferenceBlas(std::string_view maps) {
  size_t pos = 0;
  while (pos < maps.size()) {
    size_t end = maps.find('\n', pos);
    if (end == std::string_view::npos) end = maps.size();
    std::string_view line = maps.substr(pos, end - pos);
    pos = end + 1;
    size_t slash = line.find('/');
    if (slash == std::string_view::npos) continue;
    std::string_view path = line.substr(slash);
    std::string_view base = path.substr(path.rfind('/') + 1);
    if (base.substr(0, 10) != "libblas.so") continue;
    std::string lower(path);
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    // Optimised implementations install their own libblas.so.3 under an alternative's directory.
    bool optimised = false;
    for (const char* name : {"openblas", "atlas", "blis", "mkl"}) optimised |= lower.find(name) != std::string::npos;
    if (!optimised) return std::string(path);
  }
  return "";
}

}  // namespace mlp::rt::train
