// Data-parallel training: ranks meeting through a store and all-reducing
// gradients over c10d Gloo (trainer API, ranks as threads), checkpoints that
// resume bit for bit, and `mlpc run` of a 2-rank stage on two worker nodes:
// a rank killed mid-epoch restarts the gang from its checkpoint, and
// `--resume` continues a failed run from it.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "runtime/train/train_op.h"
#include "tests/test_util.h"
#include "tests/trainer_api.h"

namespace mlp::rt::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The job's store, in process: what the head gives a gang's ranks.
struct MemStore {
  std::mutex mu;
  std::map<std::string, std::string> kv;

  void Attach(DistSpec* d) {
    d->set = [this](const std::string& k, const std::string& v, std::string*) {
      std::lock_guard<std::mutex> l(mu);
      kv[k] = v;
      return true;
    };
    d->get = [this](const std::string& k, std::string* v, bool* found, std::string*) {
      std::lock_guard<std::mutex> l(mu);
      auto it = kv.find(k);
      *found = it != kv.end();
      if (*found) *v = it->second;
      return true;
    };
    d->add = [this](const std::string& k, int64_t delta, int64_t* sum, std::string*) {
      std::lock_guard<std::mutex> l(mu);
      *sum = (kv.count(k) ? std::stoll(kv[k]) : 0) + delta;
      kv[k] = std::to_string(*sum);
      return true;
    };
  }
};

// Rows of `dim` features in 3 classes, deterministic.
struct Rows {
  std::vector<float> x;
  std::vector<int64_t> y;
  int64_t dim = 0;
  DataView View(uint64_t first, uint64_t count) const {
    DataView v;
    v.x = x.data() + first * static_cast<uint64_t>(dim);
    v.rows = count;
    v.row_shape = {dim};
    v.labels = y.data() + first;
    return v;
  }
};
Rows MakeRows(uint64_t n, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0, 1);
  Rows r;
  r.dim = dim;
  for (uint64_t i = 0; i < n; ++i) {
    int64_t label = static_cast<int64_t>(rng() % 3);
    r.y.push_back(label);
    for (int64_t k = 0; k < dim; ++k) r.x.push_back(static_cast<float>(label) * (k % 2 ? 1.f : -1.f) + noise(rng));
  }
  return r;
}

TrainConfig SgdConfig(int64_t dim) {
  TrainConfig c;
  c.model.arch = "mlp";
  c.model.hidden = {32};
  c.model.classes = 3;
  c.model.input_shape = {dim};
  c.optimizer.kind = "sgd";
  c.optimizer.lr = 0.05;
  c.epochs = 3;
  c.batch_size = 16;
  c.seed = 5;
  c.shuffle = false;
  return c;
}

std::vector<float> Predict(const std::string& archive, const Rows& rows) {
  std::vector<float> out;
  int64_t dim = 0;
  std::string error;
  EXPECT_TRUE(Api().predict(archive, rows.View(0, rows.y.size()), &out, &dim, &error)) << error;
  return out;
}

// Runs `world` ranks as threads of this process; rank r trains on `views[r]`.
std::vector<TrainResult> RunRanks(TrainConfig c, const std::vector<DataView>& views, const DataView* val = nullptr,
                                  int64_t timeout_ms = 60000) {
  MemStore store;
  std::vector<TrainResult> results(views.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < views.size(); ++r) {
    threads.emplace_back([&, r] {
      TrainConfig rc = c;
      rc.dist.rank = static_cast<int>(r);
      rc.dist.world = static_cast<int>(views.size());
      rc.dist.timeout_ms = timeout_ms;
      store.Attach(&rc.dist);
      results[r] = Api().train(rc, views[r], val, TrainHooks{});
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

// The defining property of data parallelism: two ranks on batch B each (their
// gradients averaged) take the same steps as one rank on batch 2B holding both
// ranks' rows of each step.
TEST(ddp, TwoRanksMatchOneRankOnTheDoubledBatch) {
  const int64_t dim = 6, per_rank = 96, batch = 16;
  Rows rows = MakeRows(2 * per_rank, dim, 3);
  // Rank 0 has rows [0, 96), rank 1 [96, 192). For one rank, interleave them
  // batch by batch: rank 0's batch k, then rank 1's batch k.
  Rows one;
  one.dim = dim;
  for (int64_t b = 0; b < per_rank; b += batch) {
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t i = 0; i < batch; ++i) {
        int64_t src = r * per_rank + b + i;
        one.y.push_back(rows.y[static_cast<size_t>(src)]);
        one.x.insert(one.x.end(), rows.x.begin() + src * dim, rows.x.begin() + (src + 1) * dim);
      }
    }
  }
  TrainConfig c = SgdConfig(dim);
  c.batch_size = batch;
  auto ranks = RunRanks(c, {rows.View(0, per_rank), rows.View(per_rank, per_rank)});
  ASSERT_TRUE(ranks[0].ok) << ranks[0].error;
  ASSERT_TRUE(ranks[1].ok) << ranks[1].error;
  EXPECT_FALSE(ranks[0].model.empty());
  EXPECT_TRUE(ranks[1].model.empty());  // rank 0 reports the model

  TrainConfig c1 = c;
  c1.batch_size = 2 * batch;
  TrainResult single = Api().train(c1, one.View(0, one.y.size()), nullptr, TrainHooks{});
  ASSERT_TRUE(single.ok) << single.error;

  std::vector<float> a = Predict(ranks[0].model, rows), b = Predict(single.model, rows);
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  EXPECT_LT(worst, 1e-4) << "largest output difference";
  // The metrics cover both ranks' rows, and match the single rank's.
  ASSERT_EQ(ranks[0].epochs.size(), 3u);
  EXPECT_NEAR(ranks[0].epochs[2].train_loss, single.epochs[2].train_loss, 1e-5);
  EXPECT_EQ(ranks[0].epochs[2].train_accuracy, ranks[1].epochs[2].train_accuracy);
  // And the training moved: the model is not its initialisation.
  TrainConfig c0 = c1;
  c0.optimizer.lr = 1e-9;
  c0.epochs = 1;
  TrainResult untrained = Api().train(c0, one.View(0, one.y.size()), nullptr, TrainHooks{});
  ASSERT_TRUE(untrained.ok) << untrained.error;
  std::vector<float> u = Predict(untrained.model, rows);
  double moved = 0;
  for (size_t i = 0; i < a.size(); ++i) moved = std::max(moved, std::abs(static_cast<double>(a[i]) - u[i]));
  EXPECT_GT(moved, 0.1);
}

TEST(ddp, UnevenRanksTakeTheSameNumberOfSteps) {
  Rows rows = MakeRows(150, 4, 9);
  TrainConfig c = SgdConfig(4);
  c.shuffle = true;
  // 100 rows and 50 rows: both train on 50 a epoch (a new subset of rank 0's each epoch).
  auto ranks = RunRanks(c, {rows.View(0, 100), rows.View(100, 50)});
  ASSERT_TRUE(ranks[0].ok) << ranks[0].error;
  ASSERT_TRUE(ranks[1].ok) << ranks[1].error;
  EXPECT_EQ(ranks[0].epochs.back().train_loss, ranks[1].epochs.back().train_loss);
}

TEST(ddp, AMissingRankTimesOutAsARetryableError) {
  Rows rows = MakeRows(64, 4, 1);
  TrainConfig c = SgdConfig(4);
  c.dist.world = 2;  // rank 1 never comes
  c.dist.timeout_ms = 300;
  MemStore store;
  store.Attach(&c.dist);
  TrainResult r = Api().train(c, rows.View(0, 64), nullptr, TrainHooks{});
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable) << r.error;
  EXPECT_NE(r.error.find("no answer from the other ranks within 300 ms"), std::string::npos) << r.error;
}

// A run resumed from the checkpoint of epoch 2 ends exactly where the
// uninterrupted run does: same weights, same metrics for every epoch.
TEST(ddp, ResumedTrainingRepeatsTheUninterruptedRun) {
  Rows rows = MakeRows(200, 5, 4), val = MakeRows(60, 5, 8);
  TrainConfig c = SgdConfig(5);
  c.optimizer.kind = "adam";
  c.optimizer.lr = 0.01;
  c.model.dropout = 0.2;  // dropout's stream must also resume
  c.shuffle = true;
  c.epochs = 4;
  c.checkpoint_every = 1;
  std::map<int64_t, std::string> saved;
  TrainHooks hooks;
  hooks.checkpoint = [&](int64_t epoch, const std::string& bytes, std::string*) {
    saved[epoch] = bytes;
    return true;
  };
  DataView vv = val.View(0, 60);
  TrainResult full = Api().train(c, rows.View(0, 200), &vv, hooks);
  ASSERT_TRUE(full.ok) << full.error;
  ASSERT_EQ(saved.size(), 3u);  // epochs 1, 2 and 3; never the last
  ASSERT_TRUE(saved.count(2));

  TrainConfig r = c;
  r.resume = saved[2];
  TrainResult resumed = Api().train(r, rows.View(0, 200), &vv, TrainHooks{});
  ASSERT_TRUE(resumed.ok) << resumed.error;
  EXPECT_EQ(resumed.resumed_from, 2);
  ASSERT_EQ(resumed.epochs.size(), 4u);
  for (size_t e = 0; e < 4; ++e) {
    EXPECT_EQ(resumed.epochs[e].epoch, full.epochs[e].epoch);
    EXPECT_EQ(resumed.epochs[e].train_loss, full.epochs[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(resumed.epochs[e].val_accuracy, full.epochs[e].val_accuracy) << "epoch " << e + 1;
  }
  EXPECT_EQ(Predict(resumed.model, val), Predict(full.model, val));

  // A checkpoint of another model, or bytes that are none, are refused with a reason.
  TrainConfig other = r;
  other.model.hidden = {8};
  TrainResult bad = Api().train(other, rows.View(0, 200), nullptr, TrainHooks{});
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.error.find("the checkpoint cannot be resumed: it was written for another model"), std::string::npos)
      << bad.error;
  std::string junk = "not an archive";
  other = c;
  other.resume = junk;
  bad = Api().train(other, rows.View(0, 200), nullptr, TrainHooks{});
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.error.find("the checkpoint cannot be resumed"), std::string::npos) << bad.error;
  EXPECT_FALSE(bad.retryable);
}

// A stage that asks for gpus trains on the CPU, and says so, where this build
// or machine has no CUDA (Debian's LibTorch has none).
TEST(ddp, GpuRequestWithoutCudaTrainsOnTheCpuWithAWarning) {
  Rows rows = MakeRows(64, 4, 2);
  TrainConfig c = SgdConfig(4);
  c.gpu = true;
  c.epochs = 1;
  std::vector<std::string> lines;
  TrainHooks hooks;
  hooks.log = [&](std::string_view l) { lines.emplace_back(l); };
  TrainResult r = Api().train(c, rows.View(0, 64), nullptr, hooks);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("warning: the stage asks for gpus, but "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("; training on the CPU"), std::string::npos) << lines[0];
}

// ---- mlpc run: a 2-rank stage on two worker nodes

std::string Pipeline(int epochs, bool retry) {
  return "pipeline ddp { seed = 3 }\n"
         "data points {\n"
         "  source = synthetic(rows: 1600, features: 8, classes: 3, noise: 0.5)\n"
         "  split { train: 0.8, val: 0.2 }\n"
         "  shards = 2\n"
         "}\n"
         "train clf {\n"
         "  model      = mlp(hidden: [16], classes: 3)\n"
         "  data       = points.train\n"
         "  validate   = points.val\n"
         "  optimizer  = adam(lr: 0.01)\n"
         "  epochs     = " +
         std::to_string(epochs) +
         "\n"
         "  batch_size = 32\n"
         "  workers    = 2\n"
         "  resources { cpu: 1 }\n"
         "  checkpoint { every: 1 }\n" +
         (retry ? "  retry { max: 2 }\n" : "") + "}\n";
}

struct PipelineRun {
  testing::RunResult r;
  json report;
  std::string metrics_csv;
};

PipelineRun RunPipeline(const testing::TempDir& d, const std::string& file, const std::vector<std::string>& extra,
                const char* kill = nullptr) {
  std::vector<std::string> args = {"run", file, "--run-root", d.File("root"), "--json", d.File("r.json"),
                                   "--workers", "2", "--cpus", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  if (kill) setenv("MLPC_TEST_KILL_RANK", kill, 1);
  PipelineRun run;
  run.r = testing::RunMlpc(args);
  unsetenv("MLPC_TEST_KILL_RANK");
  if (!fs::exists(d.File("r.json"))) return run;
  run.report = json::parse(testing::ReadFile(d.File("r.json")), nullptr, false);
  fs::path csv = fs::path(d.File("root")) / "runs" / run.report.value("run_id", "") / "outputs" / "clf" / "metrics.csv";
  if (fs::exists(csv)) run.metrics_csv = testing::ReadFile(csv.string());
  fs::remove(d.File("r.json"));
  return run;
}

const json* Stage(const json& report, const std::string& name) {
  if (!report.contains("stages")) return nullptr;
  for (const auto& s : report["stages"])
    if (s.value("name", "") == name) return &s;
  return nullptr;
}

// The metrics without the timing columns (samples/s and seconds vary).
std::string WithoutTimes(const std::string& csv) {
  std::string out;
  size_t pos = 0;
  while (pos < csv.size()) {
    size_t end = csv.find('\n', pos);
    if (end == std::string::npos) end = csv.size();
    std::string line = csv.substr(pos, end - pos);
    size_t cut = line.size();
    for (int k = 0; k < 2 && cut != std::string::npos; ++k) cut = line.rfind(',', cut - 1);
    out += line.substr(0, cut) + "\n";
    pos = end + 1;
  }
  return out;
}

TEST(ddp, MlpcRunTrainsTwoRanksOnTwoNodes) {
  testing::TempDir d;
  testing::WriteFile(d.File("p.mlp"), Pipeline(3, false));
  PipelineRun run = RunPipeline(d, d.File("p.mlp"), {});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.out << run.r.err;
  const json* clf = Stage(run.report, "clf");
  ASSERT_NE(clf, nullptr) << run.report.dump(2);
  EXPECT_EQ((*clf)["tasks_total"], 2);
  EXPECT_EQ((*clf)["nodes"].size(), 2u) << "one rank per node: " << clf->dump(2);
  EXPECT_EQ((*clf)["checkpoint_epoch"], 2) << clf->dump(2);  // the last one kept (none after the last epoch)
  // Metrics cover both ranks: one row per epoch, accuracy high on this easy data.
  ASSERT_EQ(std::count(run.metrics_csv.begin(), run.metrics_csv.end(), '\n'), 4) << run.metrics_csv;
  const json& acc = (*clf)["outputs"]["metrics"]["columns"]["val.accuracy"]["head"];
  ASSERT_EQ(acc.size(), 3u) << clf->dump(2);
  EXPECT_GT(acc[2].get<double>(), 0.9);
  // Rank 0's model reloads on its own.
  std::string archive = testing::ReadFile((fs::path(d.File("root")) / (*clf)["files"]["model"][0].get<std::string>()).string());
  std::string spec, error;
  ASSERT_TRUE(Api().spec_of(archive, &spec, &error)) << error;
  // Each rank trained on its own shard of the 1,280 training rows (and of the 320 validation rows).
  auto logs = testing::RunMlpc({"logs", run.report["run_id"].get<std::string>(), "clf", "--run-root", d.File("root")});
  EXPECT_NE(logs.out.find("rank 0 of 2: mlp on 640 rows (160 for validation)"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("rank 1 of 2: mlp on 640 rows (160 for validation)"), std::string::npos) << logs.out;
  // Plain (not a terminal) output shows the live progress and the checkpoints.
  EXPECT_NE(run.r.out.find("clf: epoch 1/3 batch "), std::string::npos) << run.r.out;
  EXPECT_NE(run.r.out.find("clf: checkpoint of epoch 2"), std::string::npos) << run.r.out;
  fs::path ckpt = fs::path(d.File("root")) / "runs" / run.report["run_id"].get<std::string>() / "checkpoints" / "clf";
  EXPECT_TRUE(fs::exists(ckpt / "epoch-2.ckpt"));
  EXPECT_TRUE(fs::exists(ckpt / "latest.json"));
  EXPECT_FALSE(fs::exists(ckpt / "epoch-3.ckpt"));  // the last epoch ends in the model, not a checkpoint
}

// SIGKILL one rank's process in the middle of epoch 3: the other rank's
// collective breaks, the head restarts both from the checkpoint of epoch 2,
// and the result equals the uninterrupted run's.
TEST(ddp, AKilledRankRestartsTheGangFromTheCheckpoint) {
  testing::TempDir d;
  testing::WriteFile(d.File("p.mlp"), Pipeline(4, true));
  PipelineRun clean = RunPipeline(d, d.File("p.mlp"), {"--no-cache"});
  ASSERT_EQ(clean.r.exit_code, 0) << clean.r.out << clean.r.err;
  PipelineRun killed = RunPipeline(d, d.File("p.mlp"), {"--no-cache"}, "1:3:5");
  ASSERT_EQ(killed.r.exit_code, 0) << killed.r.out << killed.r.err;
  // Whichever rank reports first (the killed one, or its peer whose all-reduce broke) restarts the gang, once.
  EXPECT_NE(killed.r.out.find("(gang attempt 1) failed: "), std::string::npos) << killed.r.out;
  EXPECT_NE(killed.r.out.find("restarting all 2 ranks from the checkpoint of epoch 2"), std::string::npos)
      << killed.r.out;
  EXPECT_EQ(killed.r.out.find("(gang attempt 2) failed"), std::string::npos) << killed.r.out;
  const json* clf = Stage(killed.report, "clf");
  ASSERT_NE(clf, nullptr);
  EXPECT_EQ((*clf)["failures"], 1) << clf->dump(2);
  ASSERT_FALSE(clean.metrics_csv.empty());
  EXPECT_EQ(WithoutTimes(killed.metrics_csv), WithoutTimes(clean.metrics_csv));
}

// Without retries the run fails; `mlpc run --resume` continues it from the
// checkpoint (not from epoch 1) and ends with the uninterrupted run's result.
TEST(ddp, ResumeContinuesAFailedRunFromItsCheckpoint) {
  testing::TempDir d;
  testing::WriteFile(d.File("p.mlp"), Pipeline(4, false));
  PipelineRun clean = RunPipeline(d, d.File("p.mlp"), {"--no-cache"});
  ASSERT_EQ(clean.r.exit_code, 0) << clean.r.out << clean.r.err;
  PipelineRun failed = RunPipeline(d, d.File("p.mlp"), {"--no-cache"}, "0:3:2");
  ASSERT_EQ(failed.r.exit_code, 1) << failed.r.out << failed.r.err;
  std::string id = failed.report.value("run_id", "");
  ASSERT_FALSE(id.empty());
  PipelineRun resumed = RunPipeline(d, d.File("p.mlp"), {"--resume", id, "--no-cache"});
  ASSERT_EQ(resumed.r.exit_code, 0) << resumed.r.out << resumed.r.err;
  EXPECT_NE(resumed.r.out.find("resuming from the checkpoint of epoch 2"), std::string::npos) << resumed.r.out;
  EXPECT_EQ(resumed.r.out.find("clf: epoch 1/4"), std::string::npos) << "epochs 1-2 are not trained again\n"
                                                                       << resumed.r.out;
  EXPECT_EQ(WithoutTimes(resumed.metrics_csv), WithoutTimes(clean.metrics_csv));
}

}  // namespace
}  // namespace mlp::rt::train
