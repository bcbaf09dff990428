// The schema table itself. Add an operator here and the compiler checks it,
// the editor completes it and the language reference lists it.
#include "stdlib/schema/schema.h"

#include <cstdlib>
#include <unordered_map>

namespace mlp::schema {
namespace {

Type T(Kind k) { return {k, Kind::Any}; }
Type ListOf(Kind e) { return {Kind::List, e}; }
Default DI(long long v) { return {Default::Int, static_cast<double>(v), {}}; }
Default DF(double v) { return {Default::Float, v, {}}; }
Default DB(bool v) { return {Default::Bool, v ? 1.0 : 0.0, {}}; }
Default DS(std::string_view s) { return {Default::String, 0, s}; }
Default DSym(std::string_view s) { return {Default::Symbol, 0, s}; }
Default DCall(std::string_view s) { return {Default::Call, 0, s}; }
Default DInts(std::vector<long long> v) { return {Default::IntList, 0, {}, std::move(v)}; }

Param Req(std::string_view n, Type t, std::string_view doc, double lo = kNoMin, double hi = kNoMax) {
  Param p;
  p.name = n;
  p.type = t;
  p.required = true;
  p.min = lo;
  p.max = hi;
  p.doc = doc;
  return p;
}
Param Opt(std::string_view n, Type t, Default d, std::string_view doc, double lo = kNoMin,
          double hi = kNoMax) {
  Param p = Req(n, t, doc, lo, hi);
  p.required = false;
  p.def = std::move(d);
  return p;
}
Param Positive(Param p) {
  p.min = 0;
  p.min_exclusive = true;
  return p;
}
Param Choice(std::string_view n, std::vector<std::string_view> choices, std::string_view def,
             std::string_view doc) {
  Param p = Opt(n, T(Kind::Enum), DSym(def), doc);
  p.choices = std::move(choices);
  return p;
}

// crash(mode): a required enum.
Param CrashMode() {
  Param p = Req("mode", T(Kind::Enum), "how to crash: `segfault`, `abort` or `oom`");
  p.choices = {"segfault", "abort", "oom"};
  return p;
}

Field F(Param p) { return Field{std::move(p)}; }
Field BlockField(Param p, std::vector<Param> entries) {
  Field f{std::move(p)};
  f.block = true;
  f.entries = std::move(entries);
  return f;
}

constexpr double kMaxInt = 9.2e18;

std::vector<Op> MakeOps() {
  const Type kInt = T(Kind::Int), kFloat = T(Kind::Float), kBool = T(Kind::Bool);
  const Type kStr = T(Kind::String), kPath = T(Kind::Path);
  std::vector<Op> ops = {
      // Data sources.
      {"idx", Kind::Source,
       {Req("images", kPath, "IDX image file (MNIST layout), raw or .gz"),
        Req("labels", kPath, "IDX label file, raw or .gz"),
        Opt("limit", kInt, DI(0), "read at most this many examples; 0 reads all", 0, kMaxInt)},
       false, "MNIST / Fashion-MNIST images and labels in IDX format"},
      {"cifar10", Kind::Source,
       {Req("dir", kPath, "directory holding the CIFAR-10 binary batches"),
        Opt("train", kBool, DB(true), "read data_batch_1..5 (true) or test_batch (false)"),
        Opt("limit", kInt, DI(0), "read at most this many examples; 0 reads all", 0, kMaxInt)},
       false, "CIFAR-10 binary batches (32x32x3 images, 10 classes)"},
      {"csv", Kind::Source,
       {Req("path", kPath, "CSV file with a header row"),
        Req("label", kStr, "name of the label column"),
        Opt("delimiter", kStr, DS(","), "field separator")},
       false, "a CSV table with typed columns; every column but the label is a feature"},
      {"synthetic", Kind::Source,
       {Req("rows", kInt, "number of examples", 1, 1e9),
        Req("features", kInt, "features per example", 1, 1e6),
        Opt("classes", kInt, DI(2), "number of classes", 2, 1e5),
        Opt("seed", kInt, DI(0), "random seed", 0, kMaxInt),
        Opt("noise", kFloat, DF(0.1), "label noise: standard deviation around the class centres", 0, 100)},
       false, "a seeded, separable classification data set for tests"},
      {"range", Kind::Source, {Req("n", kInt, "number of rows", 0, kMaxInt)}, false,
       "the integers 0..n-1, one row each, in an i64 column `value`"},
      // Transforms.
      {"map", Kind::Transform, {Req("fn", T(Kind::Kernel), "kernel applied to every element")}, false,
       "apply a kernel to every element (JIT-compiled)"},
      {"filter", Kind::Transform,
       {Req("fn", T(Kind::Kernel), "kernel returning bool; rows where it is false are dropped")}, false,
       "keep the rows for which a kernel returns true"},
      {"normalize", Kind::Transform,
       {Req("mean", kFloat, "subtracted from every element"),
        Positive(Req("std", kFloat, "every element is divided by it"))},
       false, "(x - mean) / std on every element"},
      {"shuffle", Kind::Transform,
       {Opt("seed", kInt, DI(0), "random seed; the same seed gives the same order", 0, kMaxInt)}, false,
       "seeded random permutation of the rows"},
      {"batch", Kind::Transform, {Req("size", kInt, "rows per batch", 1, 1e7)}, false,
       "group rows into batches"},
      {"random_crop", Kind::Transform,
       {Req("size", kInt, "output height and width", 1, 65536),
        Opt("padding", kInt, DI(0), "zero padding added on each side before cropping", 0, 65536)},
       false, "random crop of images, for augmentation"},
      {"horizontal_flip", Kind::Transform,
       {Opt("p", kFloat, DF(0.5), "probability of flipping an image", 0, 1)}, false,
       "random left-right flip of images"},
      {"repartition", Kind::Transform, {Req("shards", kInt, "number of shards", 1, 65536)}, false,
       "redistribute rows into a number of shards"},
      {"take", Kind::Transform, {Req("n", kInt, "rows to keep", 1, kMaxInt)}, false,
       "keep the first n rows"},
      {"sum", Kind::Transform, {}, false,
       "reduce the rows to one: per-column sums, integers and bools as i64 (wrapping), floats as f64"},
      // Fault injection, for tests of the runtime.
      {"sleep", Kind::Transform, {Req("time", T(Kind::Duration), "how long each task sleeps")}, false,
       "sleep once per task, stopping early when the run is cancelled"},
      {"fail", Kind::Transform,
       {Req("p", kFloat, "probability that a task attempt fails", 0, 1),
        Opt("seed", kInt, DI(0), "random seed; with the stage name, task index and attempt it decides each failure", 0,
            kMaxInt)},
       false, "fail a task attempt (retryably) with probability p, decided deterministically"},
      {"crash", Kind::Transform,
       {CrashMode(),
        Opt("attempts", kInt, DI(1), "attempts that crash: attempt numbers below this, so that a retry succeeds", 0,
            1e6)},
       false, "crash the executor process: SIGSEGV, abort() or allocating memory until it is killed"},
      // Models.
      {"mlp", Kind::Model,
       {Opt("hidden", ListOf(Kind::Int), DInts({128}), "hidden layer widths", 1, 1e6),
        Req("classes", kInt, "output classes", 1, 1e6),
        Opt("dropout", kFloat, DF(0), "dropout probability after each hidden layer", 0, 0.99)},
       false, "multi-layer perceptron with ReLU activations"},
      {"cnn", Kind::Model,
       {Opt("channels", ListOf(Kind::Int), DInts({32, 64}), "channels of each conv block", 1, 65536),
        Req("classes", kInt, "output classes", 1, 1e6),
        Opt("dropout", kFloat, DF(0), "dropout probability before the classifier", 0, 0.99)},
       false, "small conv net: conv-relu-maxpool blocks and a linear classifier"},
      {"resnet18", Kind::Model,
       {Req("classes", kInt, "output classes", 1, 1e6),
        Opt("in_channels", kInt, DI(3), "input image channels", 1, 64)},
       false, "ResNet-18 (CIFAR variant: 3x3 stem, no max-pool)"},
      {"load", Kind::Model, {Req("path", kPath, "a model archive written by a train stage")}, false,
       "a trained model from a file"},
      // Optimizers.
      {"sgd", Kind::Optimizer,
       {Positive(Req("lr", kFloat, "learning rate", 0, 10)),
        Opt("momentum", kFloat, DF(0), "momentum factor", 0, 0.999),
        Opt("nesterov", kBool, DB(false), "use Nesterov momentum"),
        Opt("weight_decay", kFloat, DF(0), "L2 penalty", 0, 1)},
       false, "stochastic gradient descent"},
      {"adam", Kind::Optimizer,
       {Positive(Opt("lr", kFloat, DF(1e-3), "learning rate", 0, 10)),
        Opt("beta1", kFloat, DF(0.9), "first-moment decay", 0, 0.9999),
        Opt("beta2", kFloat, DF(0.999), "second-moment decay", 0, 0.99999),
        Opt("weight_decay", kFloat, DF(0), "L2 penalty", 0, 1)},
       false, "Adam"},
      {"adamw", Kind::Optimizer,
       {Positive(Opt("lr", kFloat, DF(1e-3), "learning rate", 0, 10)),
        Opt("beta1", kFloat, DF(0.9), "first-moment decay", 0, 0.9999),
        Opt("beta2", kFloat, DF(0.999), "second-moment decay", 0, 0.99999),
        Opt("weight_decay", kFloat, DF(0.01), "decoupled weight decay", 0, 1)},
       false, "Adam with decoupled weight decay"},
      // Learning-rate schedules.
      {"step_lr", Kind::Schedule,
       {Req("every", kInt, "epochs between decays", 1, 1e6),
        Opt("gamma", kFloat, DF(0.1), "multiplicative decay", 0, 1)},
       false, "multiply the learning rate by gamma every few epochs"},
      {"cosine", Kind::Schedule,
       {Opt("min_lr", kFloat, DF(0), "final learning rate", 0, 10)}, false,
       "cosine annealing over the stage's epochs"},
      {"warmup", Kind::Schedule,
       {Req("epochs", kInt, "linear warm-up length in epochs", 1, 1e6),
        Opt("then", T(Kind::Schedule), DSym("constant"), "schedule after the warm-up")},
       false, "linear warm-up, then another schedule"},
      {"constant", Kind::Schedule, {}, false, "keep the learning rate constant"},
      // Losses.
      {"cross_entropy", Kind::Loss,
       {Opt("label_smoothing", kFloat, DF(0), "label smoothing", 0, 0.99)}, false,
       "softmax cross-entropy for classification"},
      {"mse", Kind::Loss, {}, false, "mean squared error"},
      // Search spaces and initialisers.
      {"uniform", Kind::Distribution,
       {Req("low", kFloat, "lower bound"), Req("high", kFloat, "upper bound")}, false,
       "uniform over [low, high]"},
      {"loguniform", Kind::Distribution,
       {Positive(Req("low", kFloat, "lower bound")), Positive(Req("high", kFloat, "upper bound"))}, false,
       "log-uniform over [low, high]"},
      {"randint", Kind::Distribution,
       {Req("low", kInt, "lower bound, inclusive"), Req("high", kInt, "upper bound, exclusive")}, false,
       "uniform integer in [low, high)"},
      {"choice", Kind::Distribution, {Req("values", T(Kind::Any), "the candidate values")}, true,
       "one of the listed values"},
      // Tune objectives, algorithms, schedulers.
      {"maximize", Kind::Objective, {Req("metric", T(Kind::Metric), "metric to maximize, e.g. val.accuracy")},
       false, "maximize a reported metric"},
      {"minimize", Kind::Objective, {Req("metric", T(Kind::Metric), "metric to minimize, e.g. val.loss")},
       false, "minimize a reported metric"},
      {"random", Kind::SearchAlgorithm, {}, false, "random search"},
      {"grid", Kind::SearchAlgorithm, {}, false,
       "every combination of `choice` values; continuous spaces are sampled"},
      {"tpe", Kind::SearchAlgorithm,
       {Opt("startup", kInt, DI(5), "random trials before the model is used", 1, 1e6)}, false,
       "tree-structured Parzen estimator"},
      {"bayes", Kind::SearchAlgorithm,
       {Opt("startup", kInt, DI(5), "random trials before the model is used", 1, 1e6)}, false,
       "Gaussian-process Bayesian optimisation"},
      {"fifo", Kind::TrialScheduler, {}, false, "run every trial to the end"},
      {"asha", Kind::TrialScheduler,
       {Opt("grace", kInt, DI(1), "epochs before a trial can be stopped", 1, 1e6),
        Opt("reduction", kInt, DI(3), "reduction factor between rungs", 2, 100),
        Opt("max_t", kInt, DI(0), "epochs of the last rung; 0 uses the trial's epochs", 0, 1e6)},
       false, "asynchronous successive halving"},
      {"hyperband", Kind::TrialScheduler,
       {Opt("reduction", kInt, DI(3), "reduction factor", 2, 100),
        Opt("max_t", kInt, DI(0), "maximum epochs; 0 uses the trial's epochs", 0, 1e6)},
       false, "Hyperband"},
      {"median", Kind::TrialScheduler,
       {Opt("grace", kInt, DI(1), "epochs before a trial can be stopped", 1, 1e6)}, false,
       "stop trials below the median of the others at the same epoch"},
      {"pbt", Kind::TrialScheduler,
       {Opt("interval", kInt, DI(1), "epochs between exploit/explore steps", 1, 1e6),
        Opt("quantile", kFloat, DF(0.25), "fraction of trials replaced each step", 0.01, 0.5),
        Opt("perturb", kFloat, DF(0.2), "relative change of continuous hyperparameters", 0, 1)},
       false, "population-based training"},
      // Reinforcement learning.
      {"cartpole", Kind::Env,
       {Opt("max_steps", kInt, DI(500), "episode length limit", 1, 1e9)}, false,
       "the classic pole-balancing environment (built in)"},
      {"discrete", Kind::ActionSpace, {Req("n", kInt, "number of actions", 1, 1e6)}, false,
       "actions 0..n-1"},
      {"box", Kind::ActionSpace,
       {Req("low", kFloat, "lower bound"), Req("high", kFloat, "upper bound"),
        Opt("dims", kInt, DI(1), "action dimensions", 1, 4096)},
       false, "continuous actions in [low, high]^dims"},
      {"ppo", Kind::RlAlgorithm,
       {Positive(Opt("lr", kFloat, DF(3e-4), "learning rate", 0, 10)),
        Opt("gamma", kFloat, DF(0.99), "discount factor", 0, 1),
        Positive(Opt("clip", kFloat, DF(0.2), "clipping range", 0, 1)),
        Opt("lambda", kFloat, DF(0.95), "GAE lambda", 0, 1),
        Opt("epochs", kInt, DI(4), "optimisation epochs per batch of rollouts", 1, 1000),
        Opt("minibatch", kInt, DI(64), "minibatch size", 1, 1e7),
        Opt("entropy", kFloat, DF(0), "entropy bonus coefficient", 0, 10),
        Opt("hidden", ListOf(Kind::Int), DInts({64, 64}), "policy and value network widths", 1, 1e6),
        Opt("rollout_steps", kInt, DI(512), "steps per worker between updates", 1, 1e8)},
       false, "proximal policy optimisation"},
      {"dqn", Kind::RlAlgorithm,
       {Positive(Opt("lr", kFloat, DF(1e-3), "learning rate", 0, 10)),
        Opt("gamma", kFloat, DF(0.99), "discount factor", 0, 1),
        Opt("epsilon", kFloat, DF(0.05), "final exploration rate", 0, 1),
        Opt("buffer", kInt, DI(100000), "replay buffer size", 1, 1e9),
        Opt("hidden", ListOf(Kind::Int), DInts({64, 64}), "Q network widths", 1, 1e6)},
       false, "deep Q-learning"},
  };
  return ops;
}

std::vector<Field> CommonFields() {
  const Type kInt = T(Kind::Int), kDur = T(Kind::Duration);
  return {
      BlockField(Opt("retry", T(Kind::Map), {}, "retries after a failure of the stage's own code"),
                 {Opt("max", kInt, DI(0), "retries after the first attempt", 0, 100),
                  Opt("backoff", kDur, {}, "wait before the first retry; doubles each time")}),
      F(Opt("timeout", kDur, {}, "fail an attempt that runs longer than this")),
      F(Opt("cache", T(Kind::Cache), DB(true),
            "reuse a finished run's output when the content hash matches: true, false, or a version string")),
      F(Choice("on_failure", {"stop", "continue"}, "stop",
               "`stop` cancels the run; `continue` finishes independent stages and skips dependents")),
      BlockField(Opt("placement", T(Kind::Map), {}, "where the stage's tasks go"),
                 {Choice("strategy", {"pack", "spread"}, "pack", "pack onto few nodes or spread over many"),
                  Opt("labels", T(Kind::Map), {}, "node labels that must match, e.g. {zone: \"a\"}")}),
  };
}

Field ResourcesField() {
  Field f = BlockField(Opt("resources", T(Kind::Resources), {},
                           "per-task resources; a block or the name of a `resources` profile"),
                       {Opt("cpu", T(Kind::Float), DF(1), "cpus, fractional allowed", 0, 1e6),
                        Opt("gpu", T(Kind::Float), DF(0), "gpus, fractional allowed", 0, 1e4),
                        Opt("memory", T(Kind::Size), {}, "memory, e.g. 2GiB")});
  f.open_entries = true;  // custom resources: `tpu: 2`
  f.open_type = T(Kind::Float);
  return f;
}

std::vector<StageSchema> MakeStages() {
  const Type kInt = T(Kind::Int), kDur = T(Kind::Duration);
  auto with_common = [](std::vector<Field> fields) {
    fields.push_back(ResourcesField());
    for (auto& f : CommonFields()) fields.push_back(f);
    return fields;
  };
  Field split = BlockField(Opt("split", T(Kind::Map), {}, "named fractions; each name becomes an output"), {});
  split.open_entries = true;
  split.open_type = T(Kind::Float);

  Field search = BlockField(Req("search", T(Kind::Map), "search space: trial field paths to distributions"), {});
  search.open_entries = true;
  search.open_type = T(Kind::Distribution);

  std::vector<StageSchema> stages;
  stages.push_back(
      {StageKind::Data, "data", "data.pipeline",
       with_common({
           F(Req("source", T(Kind::Source), "where rows come from: a source operator or another data stage")),
           F(Opt("transform", T(Kind::Transform), {}, "transforms applied in order, joined with `|`")),
           split,
           F(Opt("shards", kInt, DI(1), "number of shards the output is cut into", 1, 65536)),
       }),
       {{"all", Kind::Dataset, "every row, after the transforms"}},
       "all",
       "reads a source, applies transforms, splits and shards the result"});
  stages.push_back(
      {StageKind::Train, "train", "train.supervised",
       with_common({
           F(Req("model", T(Kind::Model), "the architecture to train")),
           F(Req("data", T(Kind::Dataset), "training data")),
           F(Opt("validate", T(Kind::Dataset), {}, "validation data, evaluated every epoch")),
           F(Opt("optimizer", T(Kind::Optimizer), DCall("adam"), "the optimizer")),
           F(Opt("schedule", T(Kind::Schedule), DCall("constant"), "learning-rate schedule")),
           F(Opt("loss", T(Kind::Loss), DCall("cross_entropy"), "the loss")),
           F(Opt("epochs", kInt, DI(1), "passes over the training data", 1, 1e6)),
           F(Opt("batch_size", kInt, DI(32), "examples per step on each worker", 1, 1e7)),
           F(Opt("workers", kInt, DI(1), "data-parallel ranks, started together as a gang", 1, 4096)),
           F(Opt("grad_accum", kInt, DI(1), "steps whose gradients are summed before an update", 1, 1024)),
           F(Choice("precision", {"fp32", "bf16"}, "fp32", "`bf16` runs forward passes under autocast")),
           F(Opt("seed", kInt, DI(0), "random seed of initialisation and shuffling", 0, 9.2e18)),
           BlockField(Opt("checkpoint", T(Kind::Map), {}, "checkpointing into the run's artifact store"),
                      {Opt("every", kInt, DI(1), "epochs between checkpoints", 1, 1e6),
                       Opt("keep", kInt, DI(2), "checkpoints kept", 1, 1e6)}),
       }),
       {{"model", Kind::Model, "the trained model (LibTorch archive + model spec)"},
        {"metrics", Kind::Map, "per-epoch loss and accuracy, train and validation"}},
       "model",
       "supervised training, data-parallel over `workers` ranks"});
  stages.push_back(
      {StageKind::Tune, "tune", "tune.controller",
       with_common({
           F(Req("trial", T(Kind::TrainStage), "a train stage, or a kernel whose result is the objective")),
           search,
           F(Req("objective", T(Kind::Objective), "maximize(metric) or minimize(metric)")),
           F(Opt("algorithm", T(Kind::SearchAlgorithm), DCall("random"), "how configurations are proposed")),
           F(Opt("scheduler", T(Kind::TrialScheduler), DCall("fifo"), "when trials are stopped early")),
           F(Opt("trials", kInt, DI(10), "number of trials", 1, 1e6)),
           F(Opt("parallel", kInt, DI(1), "trials run at once", 1, 4096)),
           F(Opt("seed", kInt, DI(0), "random seed of the search", 0, 9.2e18)),
       }),
       {{"best", Kind::Model, "the best trial's model"},
        {"best_params", Kind::Map, "the best trial's configuration"},
        {"results", Kind::Map, "every trial's configuration and metrics"}},
       "best",
       "hyperparameter search: a controller that adds trials while it runs"});
  stages.push_back(
      {StageKind::Serve, "serve", "serve.http",
       with_common({
           F(Req("model", T(Kind::Model), "the model to serve")),
           F(Opt("route", T(Kind::String), DS("/v1/predict"), "HTTP path of the endpoint")),
           F(Opt("port", kInt, DI(8080), "HTTP port of the ingress", 1, 65535)),
           F(Opt("replicas", kInt, DI(1), "model replicas", 1, 1024)),
           F(Opt("preprocess", T(Kind::Kernel), {}, "kernel applied to every input element")),
           F(Opt("postprocess", T(Kind::Kernel), {}, "kernel applied to every output element")),
           BlockField(Opt("batching", T(Kind::Map), {}, "request batching"),
                      {Opt("max_size", kInt, DI(1), "requests per batch", 1, 65536),
                       Opt("wait", kDur, {}, "longest wait for a batch to fill")}),
           BlockField(Opt("autoscale", T(Kind::Map), {}, "replica autoscaling"),
                      {Opt("min", kInt, DI(1), "fewest replicas", 0, 1024),
                       Opt("max", kInt, DI(1), "most replicas", 1, 1024),
                       Opt("target_queue", kInt, DI(8), "queued requests per replica to aim for", 1, 1e6)}),
       }),
       {{"endpoint", Kind::String, "the URL of the endpoint"}},
       "endpoint",
       "an HTTP endpoint: long-lived replicas behind an ingress"});
  stages.push_back(
      {StageKind::Rl, "rl", "rl.learner",
       with_common({
           F(Req("env", T(Kind::Env), "an environment: a builtin such as cartpole() or an `env` declaration")),
           F(Req("algorithm", T(Kind::RlAlgorithm), "the learning algorithm")),
           F(Opt("rollout_workers", kInt, DI(1), "processes collecting experience", 1, 4096)),
           F(Opt("envs_per_worker", kInt, DI(1), "environment copies stepped together per worker", 1, 65536)),
           F(Opt("seed", kInt, DI(0), "random seed", 0, 9.2e18)),
           F(Opt("stop", T(Kind::Predicate), {}, "`stop when` condition over rl metrics")),
       }),
       {{"policy", Kind::Model, "the trained policy"},
        {"metrics", Kind::Map, "per-iteration reward and episode statistics"}},
       "policy",
       "reinforcement learning: a learner plus rollout workers"});
  return stages;
}

}  // namespace

std::string_view KindName(Kind k) {
  switch (k) {
    case Kind::Any: return "any";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Bool: return "bool";
    case Kind::String: return "string";
    case Kind::Path: return "path";
    case Kind::Duration: return "duration";
    case Kind::Size: return "size";
    case Kind::List: return "list";
    case Kind::Map: return "map";
    case Kind::Enum: return "name";
    case Kind::Source: return "source";
    case Kind::Dataset: return "dataset";
    case Kind::Transform: return "transform";
    case Kind::Model: return "model";
    case Kind::Optimizer: return "optimizer";
    case Kind::Schedule: return "schedule";
    case Kind::Loss: return "loss";
    case Kind::Distribution: return "distribution";
    case Kind::Objective: return "objective";
    case Kind::Metric: return "metric";
    case Kind::SearchAlgorithm: return "search algorithm";
    case Kind::TrialScheduler: return "trial scheduler";
    case Kind::Env: return "env";
    case Kind::RlAlgorithm: return "rl algorithm";
    case Kind::ActionSpace: return "action space";
    case Kind::Kernel: return "kernel";
    case Kind::TrainStage: return "train stage";
    case Kind::Predicate: return "condition";
    case Kind::Resources: return "resources";
    case Kind::Cache: return "cache setting";
  }
  std::abort();
}

std::string TypeName(Type t) {
  if (t.kind == Kind::List) return "list[" + std::string(KindName(t.elem)) + "]";
  return std::string(KindName(t.kind));
}

const std::vector<Op>& Operators() {
  static const std::vector<Op> ops = MakeOps();
  return ops;
}

const Op* FindOp(std::string_view name) {
  // Called for every operator call and bare name the checker sees.
  static const std::unordered_map<std::string_view, const Op*> index = [] {
    std::unordered_map<std::string_view, const Op*> m;
    for (const auto& op : Operators()) m.emplace(op.name, &op);
    return m;
  }();
  auto it = index.find(name);
  return it == index.end() ? nullptr : it->second;
}

const std::vector<StageSchema>& Stages() {
  static const std::vector<StageSchema> stages = MakeStages();
  return stages;
}

const StageSchema& Stage(StageKind kind) { return Stages()[static_cast<size_t>(kind)]; }

const std::vector<Field>& PipelineFields() {
  static const std::vector<Field> fields = {
      F(Opt("seed", T(Kind::Int), DI(0), "default seed of every stage that takes one", 0, 9.2e18)),
      F(Opt("description", T(Kind::String), DS(""), "what the pipeline is for")),
  };
  return fields;
}

const Field& ResourcesBlock() {
  static const Field f = ResourcesField();
  return f;
}

const Field& ClusterBlock() {
  static const Field f = [] {
    Field c = BlockField(Opt("cluster", T(Kind::Map), {}, "a group of identical nodes"),
                         {Opt("nodes", T(Kind::Int), DI(1), "number of nodes in the group", 1, 1e6),
                          Opt("cpu", T(Kind::Float), DF(1), "cpus per node", 0, 1e6),
                          Opt("gpu", T(Kind::Float), DF(0), "gpus per node", 0, 1e4),
                          Opt("memory", T(Kind::Size), {}, "memory per node"),
                          Opt("labels", T(Kind::Map), {}, "node labels, e.g. {zone: \"a\"}")});
    c.open_entries = true;
    c.open_type = T(Kind::Float);
    return c;
  }();
  return f;
}

const std::vector<std::string_view>& TrainMetrics() {
  static const std::vector<std::string_view> m = {"train.loss", "train.accuracy", "val.loss", "val.accuracy"};
  return m;
}

const std::vector<std::string_view>& RlMetrics() {
  static const std::vector<std::string_view> m = {"reward_mean", "reward_max", "episode_len_mean",
                                                  "env_steps", "episodes", "iterations", "time_s"};
  return m;
}

const std::vector<Builtin>& KernelBuiltins() {
  static const std::vector<Builtin> b = {
      {"exp", 1, "e raised to x"},        {"log", 1, "natural logarithm"},
      {"sqrt", 1, "square root"},         {"sin", 1, "sine"},
      {"cos", 1, "cosine"},               {"tanh", 1, "hyperbolic tangent"},
      {"abs", 1, "absolute value"},       {"min", 2, "smaller of two values"},
      {"max", 2, "larger of two values"}, {"clamp", 3, "clamp(x, lo, hi)"},
      {"floor", 1, "round down"},         {"pow", 2, "x raised to y"},
  };
  return b;
}

}  // namespace mlp::schema
