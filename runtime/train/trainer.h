// The trainer's API: plain structs only (no torch, no protobuf), because the
// trainer lives in a plugin (libmlp_trainer.so) that mlpc loads on the first
// train task. LoadTrainer() gives the function table; the stage op
// (train_op.h) fills a TrainConfig from the plan node and the data views from
// the input tables.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

namespace mlp::rt::train {

// The architecture, as the stdlib declares it (mlp, cnn, resnet18).
struct ModelSpec {
  std::string arch;                  // "mlp", "cnn" or "resnet18"
  std::vector<int64_t> hidden;       // mlp: hidden widths
  std::vector<int64_t> channels;     // cnn: channels of each conv block
  int64_t classes = 0;               // output width
  double dropout = 0;
  int64_t in_channels = 3;           // resnet18
  std::vector<int64_t> input_shape;  // per example, from the data: {k}, {H, W} or {C, H, W}
};

struct OptimizerSpec {
  std::string kind = "adam";  // sgd, adam, adamw
  double lr = 1e-3, momentum = 0, beta1 = 0.9, beta2 = 0.999, weight_decay = 0;
  bool nesterov = false;
};

// A learning-rate schedule, evaluated once per epoch.
struct ScheduleSpec {
  std::string kind = "constant";  // constant, step_lr, cosine, warmup
  int64_t every = 1;              // step_lr
  double gamma = 0.1;             // step_lr
  double min_lr = 0;              // cosine
  int64_t warmup_epochs = 0;      // warmup
  std::vector<ScheduleSpec> then;  // warmup: the schedule after it (one entry)
};

// Data-parallel training: this process is rank `rank` of `world`. Ranks meet
// through a key-value store (the job's store at the head; keys already scoped
// to one gang attempt), then all-reduce gradients over c10d (Gloo on CPU, NCCL
// in CUDA builds with a GPU).
struct DistSpec {
  int rank = 0, world = 1;
  std::string host = "127.0.0.1";  // the address this rank binds and advertises for collectives
  int64_t timeout_ms = 120000;      // the rendezvous, and each collective
  std::function<bool(const std::string& key, const std::string& value, std::string* error)> set;
  // Does not wait: `found` says whether the key is there yet (the trainer polls).
  std::function<bool(const std::string& key, std::string* value, bool* found, std::string* error)> get;
  std::function<bool(const std::string& key, int64_t delta, int64_t* sum, std::string* error)> add;
};

struct TrainConfig {
  ModelSpec model;
  OptimizerSpec optimizer;
  ScheduleSpec schedule;
  std::string loss = "cross_entropy";  // or "mse"
  double label_smoothing = 0;
  int64_t epochs = 1, batch_size = 32, grad_accum = 1;
  uint64_t seed = 0;
  int threads = 1;  // intra-op threads (torch::set_num_threads)
  bool bf16 = false;
  bool gpu = false;                // the ranks asked for gpus: CUDA in MLP_WITH_CUDA builds that find one
  bool shuffle = true;             // a new order of the rank's rows each epoch (seeded by seed, epoch and rank)
  int64_t checkpoint_every = 0;    // epochs between checkpoints (0: none); the last epoch is never checkpointed
  DistSpec dist;
  std::string_view resume;         // a checkpoint to continue from (viewed; empty: start fresh)
};

// The learning rate of epoch `epoch` (0-based) of `epochs`, starting from
// `base`. Inline, because both the plugin and the stage op use it.
inline double LearningRate(const ScheduleSpec& s, double base, int64_t epoch, int64_t epochs) {
  if (s.kind == "step_lr") return base * std::pow(s.gamma, static_cast<double>(epoch / std::max<int64_t>(1, s.every)));
  if (s.kind == "cosine") {
    if (epochs <= 1) return base;
    double t = static_cast<double>(epoch) / static_cast<double>(epochs - 1);
    return s.min_lr + (base - s.min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * t));
  }
  if (s.kind == "warmup") {
    int64_t w = std::max<int64_t>(1, s.warmup_epochs);
    if (epoch < w) return base * static_cast<double>(epoch + 1) / static_cast<double>(w);
    if (s.then.empty()) return base;
    return LearningRate(s.then[0], base, epoch - w, std::max<int64_t>(1, epochs - w));
  }
  return base;  // constant
}

// Examples as f32 rows, viewed, not owned. `labels` (class indices) drive
// cross_entropy and accuracy; `targets` (rows x target_dim) drive mse, which
// uses one-hot labels when there are no targets.
struct DataView {
  const float* x = nullptr;
  uint64_t rows = 0;
  std::vector<int64_t> row_shape;
  const int64_t* labels = nullptr;
  const float* targets = nullptr;
  int64_t target_dim = 0;
};

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double lr = 0;
  double train_loss = 0, train_accuracy = 0;
  double val_loss = 0, val_accuracy = 0;  // NaN without validation data
  double samples_per_s = 0, seconds = 0;
};

// Where training is, after each batch (rank 0's view; samples/s counts every rank).
struct BatchProgress {
  int64_t epoch = 0, epochs = 0, batch = 0, batches = 0;  // 1-based
  double loss = 0;          // mean loss of the epoch's batches so far on this rank
  double samples_per_s = 0;
};

struct TrainHooks {
  std::function<void(std::string_view)> log;  // one line per epoch
  std::function<bool()> cancelled;
  std::function<void(const BatchProgress&)> progress;  // every batch; throttle on the other side
  // Rank 0, every checkpoint_every epochs: the checkpoint's bytes (an archive
  // that `resume` takes). False with `error` when it could not be kept.
  std::function<bool(int64_t epoch, const std::string& bytes, std::string* error)> checkpoint;
};

struct TrainResult {
  bool ok = false;
  std::string error;
  bool retryable = false;   // the failure was the gang's (a rank died, a collective broke), not the input's
  int64_t resumed_from = 0;  // the checkpoint's epoch when training continued from one
  std::string model;  // the archive: parameters, buffers and the model spec (JSON) under "mlp_spec"; rank 0 only
  std::vector<EpochMetrics> epochs;  // over all ranks (the same on every rank)
};

// The plugin's function table (version 2).
struct TrainerApi {
  int version = 2;
  TrainResult (*train)(const TrainConfig& config, const DataView& train, const DataView* validate,
                       const TrainHooks& hooks) = nullptr;
  // Rebuilds the model an archive describes and runs it on `input` (eval
  // mode): rows x out_dim outputs, row-major. False with `error` on a bad archive or input shape.
  bool (*predict)(std::string_view archive, const DataView& input, std::vector<float>* out, int64_t* out_dim,
                  std::string* error) = nullptr;
  // The model spec JSON stored in an archive.
  bool (*spec_of)(std::string_view archive, std::string* spec_json, std::string* error) = nullptr;
};

// Loads the trainer plugin once (MLPC_TRAINER, else libmlp_trainer.so beside
// the executable, else the build's path); null with `error` when it cannot.
const TrainerApi* LoadTrainer(std::string* error);

// Metrics as CSV (a header, one line per epoch) and as a JSON array of objects.
std::string MetricsCsv(const std::vector<EpochMetrics>& epochs);
std::string MetricsJson(const std::vector<EpochMetrics>& epochs);

// The reference BLAS mapped into a process (a libblas.so.3 that is not
// OpenBLAS), given the text of /proc/PID/maps: its path, or "" when none.
std::string ReferenceBlas(std::string_view maps);

}  // namespace mlp::rt::train
