// The `train.supervised` stage op (no torch here: the trainer is a plugin,
// see trainer.h). Register() adds the op and its submission check to a
// registry; mlpc calls it on ops::Global() at startup.
#pragma once

#include <string>

#include "plan.pb.h"
#include "runtime/ops/registry.h"
#include "runtime/train/trainer.h"

namespace mlp::rt::train {

// The stage op name in the plan.
inline constexpr const char* kTrainOp = "train.supervised";

// Registers `train.supervised` and its check (what this version does not run,
// e.g. workers > 1, fails at submission).
void Register(ops::Registry& r);

// The node's fields as a TrainConfig (the model's input shape stays empty:
// the data gives it). False with `error` naming the field.
bool ConfigFromNode(const plan::v1::Node& node, TrainConfig* config, std::string* error);

// Fields this version cannot run yet (workers > 1); false with `why`.
bool CheckNode(const plan::v1::Node& node, std::string* why);

// The training columns of a table as a DataView: `image` or `features` (any
// numeric dtype, converted to f32), `label` (integers) and `target` (floats,
// for mse). Converted data goes to `storage`, which must outlive the view.
struct DataStorage {
  std::vector<float> x, targets;
  std::vector<int64_t> labels;
};
bool ViewTable(const ops::Table& t, DataView* view, DataStorage* storage, std::string* error);

// The per-epoch metrics as a table (the `metrics` output): epoch, lr,
// train_loss, train_accuracy, val_loss, val_accuracy, samples_per_s, seconds.
ops::Table MetricsTable(const std::vector<EpochMetrics>& epochs);

}  // namespace mlp::rt::train
