// The train stage: the trainer plugin on in-process data (accuracy bounds,
// bitwise repeatability, mse, archive reload, cnn and resnet18), the stage op
// on compiled plans (outputs, checks at submission, bad data), and `mlpc run`
// of a data -> train pipeline end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "compiler/plan/lower.h"
#include "runtime/train/train_op.h"
#include "tests/test_util.h"
#include "tests/trainer_api.h"

namespace mlp::rt::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Two Gaussian blobs in `dim` dimensions, centred at -1 and +1 on every axis.
struct Blobs {
  std::vector<float> x;
  std::vector<int64_t> y;
  DataView view(int64_t dim) const {
    DataView v;
    v.x = x.data();
    v.rows = y.size();
    v.row_shape = {dim};
    v.labels = y.data();
    return v;
  }
};
Blobs MakeBlobs(uint64_t rows, int64_t dim, uint32_t seed, float sd = 0.7f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0, sd);
  Blobs b;
  for (uint64_t r = 0; r < rows; ++r) {
    int64_t label = static_cast<int64_t>(rng() & 1);
    b.y.push_back(label);
    for (int64_t k = 0; k < dim; ++k) b.x.push_back((label ? 1.f : -1.f) + noise(rng));
  }
  return b;
}

TrainConfig MlpConfig(int64_t in, int64_t classes) {
  TrainConfig c;
  c.model.arch = "mlp";
  c.model.hidden = {16};
  c.model.classes = classes;
  c.model.input_shape = {in};
  c.optimizer.kind = "adam";
  c.optimizer.lr = 0.01;
  c.epochs = 4;
  c.batch_size = 32;
  c.seed = 11;
  return c;
}

ScheduleSpec Step(int64_t every, double gamma) {
  ScheduleSpec s;
  s.kind = "step_lr";
  s.every = every;
  s.gamma = gamma;
  return s;
}

TEST(train, MlpLearnsSeparableBlobs) {
  Blobs tr = MakeBlobs(1000, 4, 1), va = MakeBlobs(300, 4, 2);
  DataView tv = tr.view(4), vv = va.view(4);
  std::vector<std::string> lines;
  TrainHooks hooks;
  hooks.log = [&](std::string_view l) { lines.emplace_back(l); };
  TrainResult r = Api().train(MlpConfig(4, 2), tv, &vv, hooks);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.epochs.size(), 4u);
  // Blobs 2 sd apart on each of 4 axes: the Bayes error is far below 1%.
  EXPECT_GT(r.epochs.back().train_accuracy, 0.97);
  EXPECT_GT(r.epochs.back().val_accuracy, 0.97);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  EXPECT_GT(r.epochs.back().samples_per_s, 0);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].rfind("epoch 1/4: loss ", 0), 0u) << lines[0];
  EXPECT_NE(lines[3].find("val_accuracy "), std::string::npos) << lines[3];
  EXPECT_NE(lines[3].find("samples/s "), std::string::npos) << lines[3];
}

TEST(train, SameSeedRepeatsBitwiseAndAnotherSeedDiffers) {
  Blobs tr = MakeBlobs(500, 6, 3, 1.5f);
  DataView tv = tr.view(6);
  TrainConfig c = MlpConfig(6, 2);
  c.model.dropout = 0.2;  // dropout draws from the seeded generator too
  c.optimizer.kind = "sgd";
  c.optimizer.lr = 0.05;
  c.optimizer.momentum = 0.9;
  c.optimizer.nesterov = true;
  c.optimizer.weight_decay = 1e-4;
  TrainResult a = Api().train(c, tv, nullptr, {}), b = Api().train(c, tv, nullptr, {});
  ASSERT_TRUE(a.ok && b.ok) << a.error << b.error;
  for (size_t e = 0; e < a.epochs.size(); ++e) {
    EXPECT_EQ(std::bit_cast<uint64_t>(a.epochs[e].train_loss), std::bit_cast<uint64_t>(b.epochs[e].train_loss)) << e;
  }
  EXPECT_TRUE(std::isnan(a.epochs[0].val_loss));  // no validation data
  c.seed = 12;
  TrainResult d = Api().train(c, tv, nullptr, {});
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_NE(d.epochs.back().train_loss, a.epochs.back().train_loss);
}

TEST(train, MseFitsALinearTarget) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x, t;
  for (int r = 0; r < 800; ++r) {
    float a = u(rng), b = u(rng);
    x.push_back(a);
    x.push_back(b);
    t.push_back(2 * a - b + 0.5f);
  }
  DataView v;
  v.x = x.data();
  v.rows = 800;
  v.row_shape = {2};
  v.targets = t.data();
  v.target_dim = 1;
  TrainConfig c = MlpConfig(2, 1);
  c.loss = "mse";
  c.epochs = 20;
  c.schedule = Step(10, 0.5);
  TrainResult r = Api().train(c, v, nullptr, {});
  ASSERT_TRUE(r.ok) << r.error;
  // The target's variance is about 1.7; a fitted model leaves a small fraction of it.
  EXPECT_LT(r.epochs.back().train_loss, 0.01);
  EXPECT_TRUE(std::isnan(r.epochs.back().train_accuracy));  // no labels, no accuracy
  EXPECT_DOUBLE_EQ(r.epochs[9].lr, 0.01);
  EXPECT_DOUBLE_EQ(r.epochs[10].lr, 0.005);
}

TEST(train, ArchiveReloadsIntoTheSameModel) {
  Blobs tr = MakeBlobs(600, 5, 6, 1.2f), va = MakeBlobs(200, 5, 7, 1.2f);
  DataView tv = tr.view(5), vv = va.view(5);
  TrainConfig c = MlpConfig(5, 2);
  c.model.hidden = {8, 8};
  TrainResult r = Api().train(c, tv, &vv, {});
  ASSERT_TRUE(r.ok) << r.error;
  std::string spec, error;
  ASSERT_TRUE(Api().spec_of(r.model, &spec, &error)) << error;
  json j = json::parse(spec);
  EXPECT_EQ(j["arch"], "mlp");
  EXPECT_EQ(j["hidden"], json({8, 8}));
  EXPECT_EQ(j["input_shape"], json({5}));
  std::vector<float> out;
  int64_t dim = 0;
  ASSERT_TRUE(Api().predict(r.model, vv, &out, &dim, &error)) << error;
  ASSERT_EQ(dim, 2);
  ASSERT_EQ(out.size(), va.y.size() * 2);
  // A fresh model from the archive reproduces the trained model's validation loss and accuracy.
  double loss = 0, correct = 0;
  for (size_t i = 0; i < va.y.size(); ++i) {
    double a = out[2 * i], b = out[2 * i + 1], m = std::max(a, b);
    double lse = m + std::log(std::exp(a - m) + std::exp(b - m));
    loss += lse - (va.y[i] ? b : a);
    correct += ((b > a) == (va.y[i] == 1));
  }
  EXPECT_NEAR(loss / static_cast<double>(va.y.size()), r.epochs.back().val_loss, 1e-5);
  EXPECT_DOUBLE_EQ(correct / static_cast<double>(va.y.size()), r.epochs.back().val_accuracy);

  DataView wrong = vv;
  wrong.row_shape = {4};
  EXPECT_FALSE(Api().predict(r.model, wrong, &out, &dim, &error));
  EXPECT_NE(error.find("shape {4}, but the model takes {5}"), std::string::npos) << error;
  EXPECT_FALSE(Api().predict("PK\x03\x04 not an archive", vv, &out, &dim, &error));
  EXPECT_FALSE(Api().spec_of("", &spec, &error));
}

// 8x8 one-channel images: class 1 is bright in the top half, class 0 in the bottom half.
TEST(train, CnnLearnsImagesAndResnetRuns) {
  std::mt19937 rng(9);
  std::normal_distribution<float> noise(0, 0.3f);
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int r = 0; r < 400; ++r) {
    int64_t label = r % 2;
    y.push_back(label);
    for (int i = 0; i < 64; ++i) x.push_back(((i < 32) == (label == 1) ? 1.f : 0.f) + noise(rng));
  }
  DataView v;
  v.x = x.data();
  v.rows = y.size();
  v.row_shape = {8, 8};
  v.labels = y.data();
  TrainConfig c;
  c.model.arch = "cnn";
  c.model.channels = {4, 8};
  c.model.classes = 2;
  c.model.input_shape = {8, 8};
  c.epochs = 3;
  c.optimizer.lr = 0.01;
  TrainResult r = Api().train(c, v, nullptr, {});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_GT(r.epochs.back().train_accuracy, 0.95);

  c.model.channels = {4, 4, 4, 4};  // 8 -> 4 -> 2 -> 1 -> nothing
  r = Api().train(c, v, nullptr, {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("below 1 pixel"), std::string::npos) << r.error;

  // ResNet-18 on 3-channel images (the first 24 rows seen as 3x4x4... here 1x8x8 with in_channels 1).
  DataView small = v;
  small.rows = 16;
  TrainConfig rc;
  rc.model.arch = "resnet18";
  rc.model.classes = 2;
  rc.model.in_channels = 1;
  rc.model.input_shape = {8, 8};
  rc.batch_size = 8;
  rc.optimizer.kind = "sgd";
  rc.optimizer.lr = 0.01;
  rc.optimizer.momentum = 0.9;
  rc.bf16 = true;  // autocast on CPU
  r = Api().train(rc, small, &small, {});
  ASSERT_TRUE(r.ok) << r.error;
  std::vector<float> out;
  int64_t dim = 0;
  std::string error;
  ASSERT_TRUE(Api().predict(r.model, small, &out, &dim, &error)) << error;
  EXPECT_EQ(dim, 2);
  EXPECT_EQ(out.size(), 32u);
  rc.model.in_channels = 3;
  r = Api().train(rc, small, nullptr, {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("in_channels is 3, but the images have 1 channels"), std::string::npos) << r.error;
}

TEST(train, BadLabelsAndShapesFailWithWhatIsWrong) {
  Blobs tr = MakeBlobs(50, 3, 4);
  tr.y[17] = 5;
  DataView tv = tr.view(3);
  TrainResult r = Api().train(MlpConfig(3, 2), tv, nullptr, {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("the label of row 17 is 5, outside [0, 2)"), std::string::npos) << r.error;
  tr.y[17] = 0;
  r = Api().train(MlpConfig(4, 2), tv, nullptr, {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("shape {3}, but the model takes {4}"), std::string::npos) << r.error;
  TrainHooks stop;
  stop.cancelled = [] { return true; };
  r = Api().train(MlpConfig(3, 2), tv, nullptr, stop);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "cancelled");
}

TEST(train, Schedules) {
  ScheduleSpec cos;
  cos.kind = "cosine";
  cos.min_lr = 0.1;
  EXPECT_DOUBLE_EQ(LearningRate(cos, 1.0, 0, 5), 1.0);
  EXPECT_NEAR(LearningRate(cos, 1.0, 2, 5), 0.55, 1e-12);
  EXPECT_DOUBLE_EQ(LearningRate(cos, 1.0, 4, 5), 0.1);
  ScheduleSpec warm;
  warm.kind = "warmup";
  warm.warmup_epochs = 2;
  warm.then = {cos};
  EXPECT_DOUBLE_EQ(LearningRate(warm, 1.0, 0, 7), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 1.0, 1, 7), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 1.0, 2, 7), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 1.0, 6, 7), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(Step(3, 0.5), 1.0, 6, 10), 0.25);
}

TEST(train, ReferenceBlasIsNamedAndOpenBlasIsNot) {
  std::string openblas =
      "7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3\n"
      "7f20-7f30 r-xp 00000000 08:01 43 /usr/lib/x86_64-linux-gnu/libopenblas.so.0\n";
  EXPECT_EQ(ReferenceBlas(openblas), "");
  std::string reference = "7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0\n";
  EXPECT_EQ(ReferenceBlas(openblas + reference), "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0");
  EXPECT_EQ(ReferenceBlas("7f00-7f10 rw-p 00000000 00:00 0 [heap]\n"), "");
}

// ---- the stage op on compiled plans

using testing::NodeOf;

std::string Pipeline(const std::string& train_fields) {
  return "pipeline p { seed = 5 }\n"
         "data d {\n  source = synthetic(rows: 400, features: 6, classes: 3, noise: 0.3)\n"
         "  split { train: 0.75, val: 0.25 }\n}\n"
         "train t {\n  data = d.train\n  validate = d.val\n" + train_fields + "}\n";
}

// The data stage's outputs, as the executor would hand them to the train task.
std::vector<ops::InputSet> DataInputs(const plan::v1::Plan& p, std::vector<std::string>* keep) {
  ops::Registry reg;
  ops::RegisterBuiltins(reg);
  ops::TaskContext ctx;
  ctx.plan = &p;
  ctx.node = &NodeOf(p, "d");
  ops::TaskResult dr = (*reg.FindStage("data.pipeline"))(ctx);
  EXPECT_TRUE(dr.ok) << dr.error;
  keep->clear();
  for (auto& o : dr.outputs) keep->push_back(o.bytes);
  std::vector<ops::InputSet> in;
  const auto& t = NodeOf(p, "t");
  for (const auto& i : t.inputs()) {
    ops::InputSet set{i.name(), i.from().stage(), i.from().output(), {}, 0, {}};
    for (size_t k = 0; k < dr.outputs.size(); ++k) {
      if (dr.outputs[k].name != i.from().output()) continue;
      set.shards.push_back({reinterpret_cast<const uint8_t*>((*keep)[k].data()), (*keep)[k].size()});
    }
    in.push_back(set);
  }
  return in;
}

TEST(train, StageOpTrainsFromThePlanAndOutputsModelAndMetrics) {
  plan::v1::Plan p = testing::CompilePlan(Pipeline(
      "  model = mlp(hidden: [32], classes: 3)\n  optimizer = adamw(lr: 0.01)\n  schedule = cosine\n"
      "  loss = cross_entropy(label_smoothing: 0.05)\n  epochs = 3\n  batch_size = 16\n"
      "  resources { cpu: 2 }\n"));
  ops::Registry reg;
  Register(reg);
  const auto& node = NodeOf(p, "t");
  EXPECT_EQ(node.op(), kTrainOp);
  std::string why;
  ASSERT_TRUE(reg.CanRun(node, &why)) << why;
  TrainConfig cfg;
  ASSERT_TRUE(ConfigFromNode(node, &cfg, &why)) << why;
  EXPECT_EQ(cfg.optimizer.kind, "adamw");
  EXPECT_DOUBLE_EQ(cfg.optimizer.weight_decay, 0.01);
  EXPECT_EQ(cfg.schedule.kind, "cosine");
  EXPECT_DOUBLE_EQ(cfg.label_smoothing, 0.05);
  EXPECT_EQ(cfg.seed, 5u);  // the pipeline's seed
  EXPECT_EQ(cfg.threads, 2);

  std::vector<std::string> keep;
  ops::TaskContext ctx;
  ctx.plan = &p;
  ctx.node = &node;
  ctx.inputs = DataInputs(p, &keep);
  std::vector<std::string> lines;
  ctx.log = [&](std::string_view l) { lines.emplace_back(l); };
  ops::TaskResult r = (*reg.FindStage(kTrainOp))(ctx);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_EQ(r.outputs[0].name, "model");
  EXPECT_EQ(r.outputs[1].name, "metrics");
  std::string spec, error;
  ASSERT_TRUE(Api().spec_of(r.outputs[0].bytes, &spec, &error)) << error;
  EXPECT_EQ(json::parse(spec)["input_shape"], json({6}));
  ops::Table m;
  ASSERT_TRUE(ops::Parse(r.outputs[1].bytes, &m, &error)) << error;
  ASSERT_EQ(m.rows(), 3u);
  ASSERT_NE(m.Find("val.accuracy"), nullptr);
  EXPECT_GT(m.Find("val.accuracy")->values<double>()[2], 0.9);
  EXPECT_EQ(m.Find("epoch")->values<int64_t>()[2], 3);
  bool epoch_line = false;
  for (const auto& l : lines) epoch_line |= l.rfind("epoch 3/3: loss ", 0) == 0;
  EXPECT_TRUE(epoch_line);

  std::vector<EpochMetrics> ms = {{.epoch = 1, .lr = 0.5, .train_loss = 0.25, .train_accuracy = 0.75,
                                   .val_loss = std::nan(""), .val_accuracy = std::nan(""), .samples_per_s = 100,
                                   .seconds = 2}};
  EXPECT_EQ(MetricsCsv(ms), "epoch,lr,train.loss,train.accuracy,val.loss,val.accuracy,samples_per_s,seconds\n"
                            "1,0.5,0.25,0.75,,,100,2\n");
  json mj = json::parse(MetricsJson(ms));
  EXPECT_EQ(mj[0]["train.loss"], 0.25);
  EXPECT_TRUE(mj[0]["val.loss"].is_null());
}

TEST(train, SubmissionRejectsWhatThisVersionDoesNotRun) {
  ops::Registry reg;
  Register(reg);
  std::string why;
  plan::v1::Plan p = testing::CompilePlan(Pipeline("  model = mlp(classes: 3)\n  workers = 2\n"));
  EXPECT_TRUE(reg.CanRun(NodeOf(p, "t"), &why)) << why;  // data-parallel: tests/ddp_test.cc
  p = testing::CompilePlan(Pipeline("  model = load(path: \"m.pt\")\n"));
  EXPECT_FALSE(reg.CanRun(NodeOf(p, "t"), &why));
  EXPECT_NE(why.find("model `load` has no runtime implementation yet"), std::string::npos) << why;
}

TEST(train, StageOpNamesMissingColumns) {
  plan::v1::Plan p = testing::CompilePlan(Pipeline("  model = mlp(classes: 3)\n"));
  ops::Registry reg;
  Register(reg);
  ops::Table t;
  t.columns.push_back(ops::Column::Make("value", ops::DType::I64, {}, 3));
  std::string bytes = ops::Serialize(t);
  ops::TaskContext ctx;
  ctx.plan = &p;
  ctx.node = &NodeOf(p, "t");
  ctx.inputs.push_back({"data", "d", "train", {{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}}, 0, {}});
  ops::TaskResult r = (*reg.FindStage(kTrainOp))(ctx);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "train: `data`: needs an `image` or `features` column, but the data has `value`");
  std::string junk = "not a table";
  ctx.inputs[0].shards[0] = {reinterpret_cast<const uint8_t*>(junk.data()), junk.size()};
  r = (*reg.FindStage(kTrainOp))(ctx);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("train: `data` (d.train), shard 0: "), std::string::npos) << r.error;
}

// ---- end to end

// Real data: 12,000 Fashion-MNIST images (Debian's dataset-fashion-mnist),
// data -> train end to end; the final validation accuracy (85% here) must
// reach 82%.
TEST(train, FashionMnistSubsetReachesTheStatedAccuracy) {
  ASSERT_TRUE(fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
      << "install `dataset-fashion-mnist` (scripts/setup.sh does)";
  testing::TempDir d;
  auto r = testing::RunMlpc({"run", "tests/runtime/train_fashion.mlp", "--run-root", d.File("root"), "--json",
                             d.File("r.json"), "--cpus", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json rep = json::parse(testing::ReadFile(d.File("r.json")));
  const json* clf = nullptr;
  for (const auto& s : rep["stages"]) {
    if (s.value("name", "") == "classifier") clf = &s;
  }
  ASSERT_NE(clf, nullptr) << rep.dump(2);
  const json& acc = (*clf)["outputs"]["metrics"]["columns"]["val.accuracy"]["head"];
  ASSERT_EQ(acc.size(), 4u) << clf->dump(2);
  EXPECT_GE(acc[3].get<double>(), 0.82) << acc.dump();
}

// The reference BLAS mapped into a training process is named in `mlpc run`'s
// output, not only in the task log. LD_PRELOAD maps it, as a machine without
// OpenBLAS would.
TEST(train, MlpcRunWarnsAboutTheReferenceBlas) {
  const char* reference = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3";
  if (!fs::exists(reference)) GTEST_SKIP() << "no reference BLAS (libblas3) installed";
  testing::TempDir d;
  setenv("LD_PRELOAD", reference, 1);
  auto r = testing::RunMlpc({"run", "tests/runtime/train_synthetic.mlp", "--run-root", d.File("root"), "--cpus", "2"});
  unsetenv("LD_PRELOAD");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("train clf: warning: LibTorch uses the reference BLAS (" + std::string(reference)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("install libopenblas0-openmp"), std::string::npos) << r.out;
}

TEST(train, MlpcRunTrainsAndStoresModelAndMetrics) {
  testing::TempDir d;
  std::string root = d.File("root");
  auto r = testing::RunMlpc({"run", "tests/runtime/train_synthetic.mlp", "--run-root", root, "--json",
                             d.File("r.json"), "--cpus", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json rep = json::parse(testing::ReadFile(d.File("r.json")));
  const json* clf = nullptr;
  for (const auto& s : rep["stages"]) {
    if (s.value("name", "") == "clf") clf = &s;
  }
  ASSERT_NE(clf, nullptr) << rep.dump(2);
  EXPECT_EQ((*clf)["status"], "succeeded");
  // The model archive is not a table: the report shows its size, not a parse error.
  EXPECT_EQ((*clf)["outputs"]["model"]["format"], "opaque") << clf->dump(2);
  EXPECT_FALSE((*clf)["outputs"]["model"].contains("error")) << clf->dump(2);
  EXPECT_GT((*clf)["outputs"]["model"]["bytes"].get<uint64_t>(), 1000u);
  // The metrics are also in the run directory as CSV and JSON: one row per epoch.
  fs::path stage_dir = fs::path(root) / "runs" / rep["run_id"].get<std::string>() / "outputs" / "clf";
  std::string csv = testing::ReadFile((stage_dir / "metrics.csv").string());
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "epoch,lr,train.loss,train.accuracy,val.loss,val.accuracy,samples_per_s,seconds");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3) << csv;
  json mj = json::parse(testing::ReadFile((stage_dir / "metrics.json").string()));
  ASSERT_EQ(mj.size(), 2u);
  EXPECT_EQ(mj[1]["epoch"], 2);
  EXPECT_GT(mj[1]["val.accuracy"].get<double>(), 0.9);
  EXPECT_FALSE(fs::exists(stage_dir / "model.csv"));  // an archive is not a table
  const json& metrics = (*clf)["outputs"]["metrics"]["columns"];
  ASSERT_EQ(metrics["val.accuracy"]["head"].size(), 2u) << clf->dump(2);
  EXPECT_GT(metrics["val.accuracy"]["head"][1].get<double>(), 0.9);
  ASSERT_TRUE(clf->contains("files")) << clf->dump(2);
  std::string model_file = (*clf)["files"]["model"][0];
  std::string archive = testing::ReadFile((fs::path(root) / model_file).string());
  std::string spec, error;
  ASSERT_TRUE(Api().spec_of(archive, &spec, &error)) << error;
  EXPECT_EQ(json::parse(spec)["arch"], "mlp");

  // The stage's log lines reach `mlpc logs`.
  auto logs = testing::RunMlpc({"logs", rep["run_id"], "--run-root", root});
  EXPECT_NE(logs.out.find("epoch 2/2: loss "), std::string::npos) << logs.out << logs.err;

}

}  // namespace
}  // namespace mlp::rt::train
