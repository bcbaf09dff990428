// The runtime end to end, as real processes on 127.0.0.1: a head and three
// workers (`mlpc head`, `mlpc worker`), pipelines submitted with `mlpc submit`,
// a worker SIGKILLed in the middle of a run, a task that segfaults, wrong
// tokens, and the embedded cluster of `mlpc run` (cache, resume, explain,
// exit codes, Ctrl-C).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace mlp::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr long long kSumSquares1000 = 332833500;  // sum of x*x for x in 0..999

json ReadJson(const std::string& path) {
  json j = json::parse(ReadFile(path), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << path << " is not JSON";
  return j;
}

const json* FindStage(const json& report, const std::string& name) {
  if (!report.contains("stages")) return nullptr;
  for (const auto& s : report["stages"])
    if (s.value("name", "") == name) return &s;
  return nullptr;
}

// The first value of column `col` of a stage's output, from the report.
long long FirstValue(const json& report, const std::string& stage, const std::string& port, const std::string& col) {
  const json* s = FindStage(report, stage);
  if (!s || !s->contains("outputs") || !(*s)["outputs"].contains(port)) return -1;
  const auto& head = (*s)["outputs"][port]["columns"][col]["head"];
  if (!head.is_array() || head.empty()) return -1;
  return head[0].get<long long>();
}

// A head and `n` workers as separate processes; `tls`: every node serves
// gRPC over TLS with one self-signed certificate.
class Cluster {
 public:
  explicit Cluster(int workers, const std::string& cpus = "2", bool tls = false) {
    token_ = dir_.File("token");
    if (tls) {
      cert_ = dir_.File("cert.pem");
      std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
                        "subjectAltName=IP:127.0.0.1 -keyout " + dir_.File("key.pem") + " -out " + cert_ +
                        " 2>/dev/null";
      EXPECT_EQ(std::system(cmd.c_str()), 0);
      tls_ = {"--tls-cert", cert_, "--tls-key", dir_.File("key.pem")};
    }
    head_ = std::make_unique<Process>();
    std::vector<std::string> args = {"head", "--port", "0", "--state-dir", dir_.File("head"), "--token-file", token_,
                                     "--heartbeat-timeout", "2000"};
    args.insert(args.end(), tls_.begin(), tls_.end());
    head_->Start(args);
    std::string line = head_->WaitForLine("listening on");
    EXPECT_FALSE(line.empty()) << head_->err();
    size_t at = line.find("listening on ");
    if (at != std::string::npos) {
      address_ = line.substr(at + 13);
      address_ = address_.substr(0, address_.find(' '));
    }
    for (int i = 0; i < workers; ++i) AddWorker(cpus);
  }

  Process* AddWorker(const std::string& cpus, const std::string& token_file = "") {
    auto w = std::make_unique<Process>();
    std::vector<std::string> args = {"worker", "--head", address_, "--cpus", cpus, "--memory", "2GiB", "--token-file",
                                     token_file.empty() ? token_ : token_file, "--object-store", "64MiB"};
    args.insert(args.end(), tls_.begin(), tls_.end());
    w->Start(args);
    std::string line = w->WaitForLine("serving on");
    EXPECT_FALSE(line.empty()) << w->err();
    worker_addr_.push_back(line.substr(line.rfind(' ') + 1));
    workers_.push_back(std::move(w));
    return workers_.back().get();
  }

  json Status() {
    std::vector<std::string> args = {"status", "--cluster", address_, "--token-file", token_, "--json"};
    if (!cert_.empty()) args.insert(args.end(), {"--tls-ca", cert_});
    auto r = RunMlpc(args);
    return json::parse(r.out, nullptr, false);
  }
  const std::string& cert() const { return cert_; }

  const std::string& address() const { return address_; }
  const std::string& token() const { return token_; }
  std::vector<std::unique_ptr<Process>>& workers() { return workers_; }
  const std::vector<std::string>& worker_addresses() const { return worker_addr_; }
  TempDir& dir() { return dir_; }

 private:
  TempDir dir_;
  std::string token_, address_, cert_;
  std::vector<std::string> tls_;
  std::unique_ptr<Process> head_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::vector<std::string> worker_addr_;
};

TEST(RuntimeCluster, ThreeWorkersRunAPipeline) {
  Cluster c(3);
  std::string report = c.dir().File("report.json");
  auto r = RunMlpc({"submit", "--cluster", c.address(), "--token-file", c.token(), "tests/runtime/sum.mlp", "--json",
                    report, "--set", "shards=6"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json j = ReadJson(report);
  EXPECT_EQ(j["status"], "succeeded");
  EXPECT_EQ(FirstValue(j, "total", "all", "value"), kSumSquares1000);
  const json* nums = FindStage(j, "nums");
  ASSERT_NE(nums, nullptr);
  EXPECT_EQ((*nums)["tasks_done"], 6);
  json st = c.Status();
  ASSERT_TRUE(st.contains("nodes"));
  EXPECT_EQ(st["nodes"].size(), 3u);
  for (const auto& n : st["nodes"]) EXPECT_TRUE(n["alive"].get<bool>());
}

TEST(RuntimeCluster, KilledWorkerMidRunStillGivesTheRightResult) {
  Cluster c(3, "1");
  std::string report = c.dir().File("report.json");
  Process submit;
  // 6 shards of 1.5 s each on three 1-cpu workers: two waves, so a worker dies
  // while it runs a task and after it has finished one (lineage).
  submit.Start({"submit", "--cluster", c.address(), "--token-file", c.token(), "tests/runtime/sum.mlp", "--json",
                report, "--set", "shards=6", "--set", "nap=1500ms"});
  // Kill a worker once it has finished one task and started another.
  int victim = -1;
  for (int i = 0; i < 600 && victim < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    json st = c.Status();
    if (!st.contains("nodes")) continue;
    for (const auto& n : st["nodes"]) {
      if (n["running_tasks"].get<int>() > 0 && n["objects"].get<int>() > 0) {
        for (size_t w = 0; w < c.worker_addresses().size(); ++w)
          if (c.worker_addresses()[w] == n["address"]) victim = static_cast<int>(w);
      }
    }
  }
  ASSERT_GE(victim, 0) << "no worker ever held a finished shard while running another";
  c.workers()[static_cast<size_t>(victim)]->Signal(SIGKILL);
  int rc = submit.Wait(180000);
  ASSERT_EQ(rc, 0) << submit.out() << submit.err();
  json j = ReadJson(report);
  EXPECT_EQ(FirstValue(j, "total", "all", "value"), kSumSquares1000);
  const json* nums = FindStage(j, "nums");
  ASSERT_NE(nums, nullptr);
  EXPECT_GE((*nums)["node_losses"].get<int>(), 1) << j.dump(2);
  EXPECT_EQ((*nums)["failures"].get<int>(), 0) << "a lost node must not count as the task's own failure";
  EXPECT_NE(submit.out().find("lost"), std::string::npos) << submit.out();
}

// A 2-rank train stage loses a node that runs a rank: the gang starts again
// on the node that is left (it has room for both ranks), from its last
// checkpoint, and the run finishes.
TEST(RuntimeCluster, KilledNodeRestartsTheGangOnTheRemainingNode) {
  Cluster c(2, "2");
  TempDir d;
  WriteFile(d.File("ddp.mlp"),
            "pipeline ddp { seed = 1 }\n"
            "data points {\n"
            "  source = synthetic(rows: 40000, features: 64, classes: 4, noise: 1.0)\n"
            "  shards = 2\n"
            "}\n"
            "train clf {\n"
            "  model      = mlp(hidden: [64], classes: 4)\n"
            "  data       = points\n"
            "  epochs     = 6\n"
            "  batch_size = 32\n"
            "  workers    = 2\n"
            "  resources { cpu: 1 }\n"
            "  checkpoint { every: 1 }\n"
            "}\n");
  std::string report = c.dir().File("report.json");
  Process submit;
  submit.Start({"submit", "--cluster", c.address(), "--token-file", c.token(), d.File("ddp.mlp"), "--json", report});
  ASSERT_FALSE(submit.WaitForLine("clf: checkpoint of epoch 1", 120000).empty()) << submit.out() << submit.err();
  int victim = -1;
  json st = c.Status();
  for (const auto& n : st.value("nodes", json::array()))
    if (n["running_tasks"].get<int>() > 0)
      for (size_t w = 0; w < c.worker_addresses().size(); ++w)
        if (c.worker_addresses()[w] == n["address"]) victim = static_cast<int>(w);
  ASSERT_GE(victim, 0) << st.dump(2);
  c.workers()[static_cast<size_t>(victim)]->Signal(SIGKILL);
  int rc = submit.Wait(180000);
  ASSERT_EQ(rc, 0) << submit.out() << submit.err();
  EXPECT_NE(submit.out().find("lost its node"), std::string::npos) << submit.out();
  EXPECT_NE(submit.out().find("restarting all 2 ranks from the checkpoint of epoch "), std::string::npos)
      << submit.out();
  json j = ReadJson(report);
  const json* clf = FindStage(j, "clf");
  ASSERT_NE(clf, nullptr);
  EXPECT_EQ((*clf)["status"], "succeeded");
  EXPECT_GE((*clf)["node_losses"].get<int>(), 1) << clf->dump(2);
  ASSERT_EQ((*clf)["outputs"]["metrics"]["columns"]["epoch"]["head"].size(), 6u) << clf->dump(2);
}

TEST(RuntimeCluster, SilentWorkerIsDeclaredDeadByHeartbeatTimeout) {
  Cluster c(2, "1");
  std::string report = c.dir().File("report.json");
  Process submit;
  submit.Start({"submit", "--cluster", c.address(), "--token-file", c.token(), "tests/runtime/sum.mlp", "--json",
                report, "--set", "shards=4", "--set", "nap=1s"});
  // Stop (not kill) a worker that runs a task: its connection stays open, only its heartbeats stop.
  int victim = -1;
  for (int i = 0; i < 600 && victim < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    json st = c.Status();
    if (!st.contains("nodes")) continue;
    for (const auto& n : st["nodes"])
      if (n["running_tasks"].get<int>() > 0)
        for (size_t w = 0; w < c.worker_addresses().size(); ++w)
          if (c.worker_addresses()[w] == n["address"]) victim = static_cast<int>(w);
  }
  ASSERT_GE(victim, 0);
  c.workers()[static_cast<size_t>(victim)]->Signal(SIGSTOP);
  int rc = submit.Wait(180000);
  c.workers()[static_cast<size_t>(victim)]->Signal(SIGCONT);
  ASSERT_EQ(rc, 0) << submit.out() << submit.err();
  EXPECT_NE(submit.out().find("no heartbeat for 2000 ms"), std::string::npos) << submit.out();
  json j = ReadJson(report);
  EXPECT_EQ(FirstValue(j, "total", "all", "value"), kSumSquares1000);
  EXPECT_GE((*FindStage(j, "nums"))["node_losses"].get<int>(), 1);
}

TEST(RuntimeCluster, TlsClusterRunsAPipeline) {
  Cluster c(1, "2", /*tls=*/true);
  std::string report = c.dir().File("report.json");
  auto r = RunMlpc({"submit", "--cluster", c.address(), "--token-file", c.token(), "--tls-ca", c.cert(),
                    "tests/runtime/sum.mlp", "--json", report});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(FirstValue(ReadJson(report), "total", "all", "value"), kSumSquares1000);
  // A client that does not trust the certificate cannot talk to the head.
  auto plain = RunMlpc({"status", "--cluster", c.address(), "--token-file", c.token()});
  EXPECT_EQ(plain.exit_code, 5) << plain.err;
}

TEST(RuntimeCluster, SegfaultingTaskIsRetriedAndTheWorkerSurvives) {
  Cluster c(1);
  std::string report = c.dir().File("report.json");
  auto r = RunMlpc({"submit", "--cluster", c.address(), "--token-file", c.token(), "tests/runtime/crash.mlp",
                    "--json", report});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json j = ReadJson(report);
  const json* nums = FindStage(j, "nums");
  ASSERT_NE(nums, nullptr);
  EXPECT_EQ((*nums)["failures"].get<int>(), 2);  // each of the 2 shards crashed once
  EXPECT_EQ(FirstValue(j, "total", "all", "value"), 4950);
  EXPECT_NE(r.out.find("signal 11"), std::string::npos) << r.out;
  EXPECT_TRUE(c.workers()[0]->Running());
  json st = c.Status();
  ASSERT_EQ(st["nodes"].size(), 1u);
  EXPECT_TRUE(st["nodes"][0]["alive"].get<bool>());
}

TEST(RuntimeCluster, AbortAndOutOfMemoryFailOnlyTheTask) {
  Cluster c(1);
  for (std::string mode : {"abort", "oom"}) {
    auto r = RunMlpc({"submit", "--cluster", c.address(), "--token-file", c.token(), "tests/runtime/crash.mlp",
                      "--set", "mode=" + mode});
    EXPECT_EQ(r.exit_code, 0) << mode << "\n" << r.out << r.err;
    // Both modes end in abort(): an allocation beyond the node's memory fails in the task's own process.
    EXPECT_NE(r.out.find("signal 6 (Aborted)"), std::string::npos) << mode << "\n" << r.out;
    EXPECT_EQ(r.out.find("lost"), std::string::npos) << "the node must stay alive\n" << r.out;
    EXPECT_TRUE(c.workers()[0]->Running()) << mode;
  }
}

TEST(RuntimeCluster, WrongTokenIsRefused) {
  Cluster c(0);
  WriteFile(c.dir().File("bad"), "not-the-cluster-token-0123456789\n");
  auto r = RunMlpc({"submit", "--cluster", c.address(), "--token-file", c.dir().File("bad"), "tests/runtime/sum.mlp"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("wrong cluster token"), std::string::npos) << r.err;
  Process w;
  w.Start({"worker", "--head", c.address(), "--cpus", "1", "--token-file", c.dir().File("bad")});
  EXPECT_EQ(w.Wait(60000), 5);
  EXPECT_NE(w.err().find("wrong cluster token"), std::string::npos) << w.err();
  auto s = RunMlpc({"status", "--cluster", c.address()});
  EXPECT_EQ(s.exit_code, 2);
  EXPECT_NE(s.err.find("--token-file"), std::string::npos) << s.err;
}

TEST(RuntimeCluster, UnreachableClusterExits5) {
  TempDir d;
  WriteFile(d.File("token"), "0123456789abcdef0123\n");
  auto r = RunMlpc({"submit", "--cluster", "127.0.0.1:1", "--token-file", d.File("token"), "tests/runtime/sum.mlp"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("cannot reach the head"), std::string::npos) << r.err;
}

// --- the embedded cluster of `mlpc run` --------------------------------------------------------------

TEST(RuntimeRun, RunsThenCachesThenExplains) {
  TempDir d;
  std::string root = d.File("root");
  auto r1 = RunMlpc({"run", "tests/runtime/sum.mlp", "--run-root", root, "--json", d.File("r1.json"), "--cpus", "2"});
  ASSERT_EQ(r1.exit_code, 0) << r1.out << r1.err;
  json j1 = ReadJson(d.File("r1.json"));
  EXPECT_EQ(FirstValue(j1, "total", "all", "value"), kSumSquares1000);
  EXPECT_EQ((*FindStage(j1, "nums"))["status"], "succeeded");

  auto ex = RunMlpc({"explain", "tests/runtime/sum.mlp", "--run-root", root});
  EXPECT_EQ(ex.exit_code, 0) << ex.err;
  EXPECT_NE(ex.out.find("nums (tests/runtime/sum.mlp:14): cached: run " + j1["run_id"].get<std::string>()),
            std::string::npos)
      << ex.out;

  auto r2 = RunMlpc({"run", "tests/runtime/sum.mlp", "--run-root", root, "--json", d.File("r2.json"), "--cpus", "2"});
  ASSERT_EQ(r2.exit_code, 0) << r2.out << r2.err;
  json j2 = ReadJson(d.File("r2.json"));
  EXPECT_EQ((*FindStage(j2, "nums"))["status"], "cached");
  EXPECT_EQ((*FindStage(j2, "nums"))["cached_from_run"], j1["run_id"]);
  EXPECT_EQ(FirstValue(j2, "total", "all", "value"), kSumSquares1000);

  // A changed param changes the content hash: `nums` runs again, and explain says why.
  auto ex2 = RunMlpc({"explain", "tests/runtime/sum.mlp", "--run-root", root, "--set", "n=999"});
  EXPECT_NE(ex2.out.find("nums (tests/runtime/sum.mlp:14): runs: no finished run"), std::string::npos) << ex2.out;
  EXPECT_NE(ex2.out.find("total (tests/runtime/sum.mlp:21): runs: upstream stage `nums` runs"), std::string::npos)
      << ex2.out;

  auto r3 = RunMlpc({"run", "tests/runtime/sum.mlp", "--run-root", root, "--no-cache", "--json", d.File("r3.json"),
                     "--cpus", "2"});
  ASSERT_EQ(r3.exit_code, 0) << r3.err;
  EXPECT_EQ((*FindStage(ReadJson(d.File("r3.json")), "nums"))["status"], "succeeded");

  auto runs = RunMlpc({"runs", "--run-root", root, "--json"});
  json rl = json::parse(runs.out, nullptr, false);
  ASSERT_TRUE(rl.is_array()) << runs.out;
  EXPECT_EQ(rl.size(), 3u);
}

// Kernels give the same results and the same errors in both tiers, end to end;
// with --jit=on the compiled kernels land in the run root's cache.
TEST(RuntimeRun, KernelTiersAgreeEndToEnd) {
  TempDir d;
  std::string root = d.File("root");
  for (std::string tier : {"off", "on", "auto"}) {
    auto r = RunMlpc({"run", "tests/runtime/sum.mlp", "--run-root", root, "--no-cache", "--jit", tier, "--json",
                      d.File(tier + ".json"), "--cpus", "2"});
    ASSERT_EQ(r.exit_code, 0) << tier << r.out << r.err;
    EXPECT_EQ(FirstValue(ReadJson(d.File(tier + ".json")), "total", "all", "value"), kSumSquares1000) << tier;
    auto e = RunMlpc({"run", "tests/runtime/kernel_error.mlp", "--run-root", root, "--no-cache", "--jit", tier,
                      "--cpus", "2"});
    EXPECT_EQ(e.exit_code, 1) << tier;
    EXPECT_NE(e.err.find("tests/runtime/kernel_error.mlp:6:3: integer division by zero (in kernel `inverse`)"),
              std::string::npos)
        << tier << ": " << e.err;
  }
  bool cached_object = false;
  for (const auto& f : std::filesystem::directory_iterator(root + "/jit-cache")) {
    cached_object |= f.path().extension() == ".o";
  }
  EXPECT_TRUE(cached_object);
  auto bad = RunMlpc({"run", "tests/runtime/sum.mlp", "--run-root", root, "--jit", "fast"});
  EXPECT_EQ(bad.exit_code, 2);
}

// A data file is part of its stage's cache key: a rerun with the file
// unchanged is served from the cache; after the file changes, the stage and
// everything downstream run again. The path is relative to the pipeline file.
TEST(RuntimeRun, ChangedDataFilesInvalidateTheCache) {
  TempDir d;
  std::string root = d.File("root");
  testing::WriteFile(d.File("rows.csv"), "x,label\n1.5,1\n2.5,2\n");
  testing::WriteFile(d.File("p.mlp"), "pipeline p { seed = 1 }\n\ndata rows {\n  source = csv(path: \"rows.csv\", "
                                      "label: \"label\")\n}\n\ndata total {\n  source    = rows\n  transform = sum()\n}\n");
  auto run = [&](const std::string& name) {
    auto r = RunMlpc({"run", d.File("p.mlp"), "--run-root", root, "--json", d.File(name), "--cpus", "2"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ReadJson(d.File(name));
  };
  json r1 = run("r1.json");
  EXPECT_EQ((*FindStage(r1, "rows"))["status"], "succeeded");
  EXPECT_EQ(FirstValue(r1, "total", "all", "label"), 3);
  json r2 = run("r2.json");
  EXPECT_EQ((*FindStage(r2, "rows"))["status"], "cached");
  EXPECT_EQ((*FindStage(r2, "total"))["status"], "cached");
  testing::WriteFile(d.File("rows.csv"), "x,label\n1.5,1\n2.5,2\n3.5,4\n");
  json r3 = run("r3.json");
  EXPECT_EQ((*FindStage(r3, "rows"))["status"], "succeeded");
  EXPECT_EQ((*FindStage(r3, "total"))["status"], "succeeded");
  EXPECT_EQ(FirstValue(r3, "total", "all", "label"), 7);
}

TEST(RuntimeRun, FailedStageExits1WithItsLocationAndResumeReusesFinishedStages) {
  TempDir d;
  std::string root = d.File("root");
  auto r = RunMlpc({"run", "tests/runtime/fail.mlp", "--run-root", root, "--json", d.File("r.json"), "--cpus", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tests/runtime/fail.mlp:10:1: data second: task 0 attempt 2 failed"), std::string::npos)
      << r.err;
  json j = ReadJson(d.File("r.json"));
  EXPECT_EQ((*FindStage(j, "first"))["status"], "succeeded");
  EXPECT_EQ((*FindStage(j, "second"))["status"], "failed");
  EXPECT_EQ((*FindStage(j, "second"))["attempts"], 2);
  std::string id = j["run_id"];

  auto logs = RunMlpc({"logs", id.substr(0, id.size() - 2), "second", "--run-root", root});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("second[0] attempt 1 failed"), std::string::npos) << logs.out;

  auto res = RunMlpc({"run", "--resume", id, "--run-root", root, "--json", d.File("res.json"), "--cpus", "2"});
  EXPECT_EQ(res.exit_code, 1);
  json jr = ReadJson(d.File("res.json"));
  EXPECT_EQ(jr["run_id"], id);
  EXPECT_EQ((*FindStage(jr, "first"))["status"], "cached");
  EXPECT_EQ((*FindStage(jr, "first"))["attempts"], 0);
  EXPECT_EQ((*FindStage(jr, "second"))["status"], "failed");
}

TEST(RuntimeRun, TaskPastItsTimeoutIsKilledAndRetried) {
  TempDir d;
  auto r = RunMlpc({"run", "tests/runtime/timeout.mlp", "--run-root", d.File("root"), "--json", d.File("r.json"),
                    "--cpus", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tests/runtime/timeout.mlp:5:1: data slow: task 0 attempt 2 failed: the task ran past its "
                       "timeout of 300 ms"),
            std::string::npos)
      << r.err;
  json j = ReadJson(d.File("r.json"));
  EXPECT_EQ((*FindStage(j, "slow"))["failures"], 2);
}

TEST(RuntimeCluster, ResumeOnAClusterUsesTheStoredPlan) {
  Cluster c(1);
  auto r = RunMlpc({"submit", "--cluster", c.address(), "--token-file", c.token(), "tests/runtime/fail.mlp", "--json",
                    c.dir().File("r.json")});
  EXPECT_EQ(r.exit_code, 1);
  std::string id = ReadJson(c.dir().File("r.json"))["run_id"];
  auto res = RunMlpc({"run", "--resume", id, "--cluster", c.address(), "--token-file", c.token(), "--json",
                      c.dir().File("res.json")});
  EXPECT_EQ(res.exit_code, 1) << res.err;
  json jr = ReadJson(c.dir().File("res.json"));
  EXPECT_EQ(jr["run_id"], id);
  EXPECT_EQ((*FindStage(jr, "first"))["status"], "cached");
  auto missing = RunMlpc({"run", "--resume", "no-such-run", "--cluster", c.address(), "--token-file", c.token()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no run `no-such-run`"), std::string::npos) << missing.err;
  json st = c.Status();
  ASSERT_TRUE(st.contains("jobs"));
  EXPECT_EQ(st["jobs"].size(), 1u);
}

TEST(RuntimeRun, ResourcesNoNodeCanHoldFailAtOnce) {
  TempDir d;
  auto r = RunMlpc({"run", "tests/runtime/infeasible.mlp", "--run-root", d.File("root"), "--cpus", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tests/runtime/infeasible.mlp:5:1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cpu 64"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("big"), std::string::npos) << r.err;
}

TEST(RuntimeRun, CompileErrorsExit3) {
  TempDir d;
  WriteFile(d.File("bad.mlp"), "pipeline p { seed = 1 }\ndata x { source = nowhere(1) }\n");
  auto r = RunMlpc({"run", d.File("bad.mlp"), "--run-root", d.File("root")});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("bad.mlp:2:"), std::string::npos) << r.err;
}

TEST(RuntimeRun, StagesWithoutARuntimeYetAreRefusedBeforeAnythingRuns) {
  TempDir d;
  auto r = RunMlpc({"run", "pipelines/quickstart.mlp", "--run-root", d.File("root")});
  EXPECT_EQ(r.exit_code, 1);
  // The first stage the runtime cannot run yet: quickstart's tune stage (data and 2-rank train do run).
  EXPECT_NE(r.err.find("pipelines/quickstart.mlp:42:1: tune sweep: `tune.controller` has no runtime implementation yet"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(d.File("root") + "/runs")) << "nothing may run";
}

// --target runs one stage and what it needs, and nothing else; an unknown
// target is a usage error that lists the stages.
TEST(RuntimeRun, TargetRunsOnlyThatStageAndItsInputs) {
  TempDir d;
  auto r = RunMlpc({"run", "tests/runtime/train_synthetic.mlp", "--target", "points", "--run-root", d.File("root"),
                    "--json", d.File("r.json"), "--cpus", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json rep = json::parse(ReadFile(d.File("r.json")));
  ASSERT_EQ(rep["stages"].size(), 1u) << rep.dump(2);
  EXPECT_EQ(rep["stages"][0]["name"], "points");
  EXPECT_EQ(rep["stages"][0]["status"], "succeeded");
  // The same stages, whatever is named last: the train stage brings its data stage.
  auto both = RunMlpc({"explain", "tests/runtime/train_synthetic.mlp", "--target", "clf", "--run-root", d.File("root"),
                       "--json"});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  json ex = json::parse(both.out);
  ASSERT_TRUE(ex.is_array()) << both.out;
  EXPECT_EQ(ex.size(), 2u) << both.out;
  auto bad = RunMlpc({"run", "tests/runtime/train_synthetic.mlp", "--target", "clff", "--run-root", d.File("root")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--target clff: the pipeline has no stage `clff` (its stages: points, clf)"), std::string::npos)
      << bad.err;
}

TEST(RuntimeRun, InterruptCancelsCleanlyWithExit130) {
  TempDir d;
  std::string root = d.File("root");
  Process run;
  run.Start({"run", "tests/runtime/sum.mlp", "--run-root", root, "--set", "nap=30s", "--cpus", "2"});
  ASSERT_FALSE(run.WaitForLine("nums: running").empty()) << run.err();
  run.Signal(SIGINT);
  EXPECT_EQ(run.Wait(60000), 130) << run.out() << run.err();
  auto runs = RunMlpc({"runs", "--run-root", root, "--json"});
  json rl = json::parse(runs.out, nullptr, false);
  ASSERT_TRUE(rl.is_array() && rl.size() == 1) << runs.out;
  EXPECT_EQ(rl[0]["status"], "cancelled");
  EXPECT_EQ(rl[0]["exit_code"], 130);
}

}  // namespace
}  // namespace mlp::testing
