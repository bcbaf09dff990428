// The SQLite metadata store: CRUD paths, ordering, prefix lookup, the cache rule, logs, several connections and
// threads on one file, and refusal of files it must not use.
#include "runtime/state/state_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <thread>

namespace mlp::rt::state {
namespace {

namespace fs = std::filesystem;

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("mlp_state_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    file_ = dir_ / "nested" / ".mlpc" / "state.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<StateStore> OpenOk(const fs::path& f) {
    std::string err;
    auto s = StateStore::Open(f, &err);
    EXPECT_NE(s, nullptr) << err;
    EXPECT_EQ(err, "");
    return s;
  }
  std::unique_ptr<StateStore> OpenOk() { return OpenOk(file_); }

  // Raw SQL against the file, as another program would.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(file_.c_str(), &db), SQLITE_OK);
    char* msg = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    EXPECT_EQ(rc, SQLITE_OK) << (msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
  }

  static RunRow Run(const std::string& id, int64_t started, RunStatus status = RunStatus::kRunning) {
    RunRow r;
    r.run_id = id;
    r.pipeline = "quickstart";
    r.source_file = "pipelines/quickstart.mlp";
    r.status = status;
    r.started_ms = started;
    r.params_json = R"({"lr":0.1})";
    return r;
  }

  fs::path dir_, file_;
};

TEST(StateNames, RoundTrip) {
  for (auto s : {RunStatus::kRunning, RunStatus::kSucceeded, RunStatus::kFailed, RunStatus::kCancelled}) {
    RunStatus back{};
    ASSERT_TRUE(Parse(Name(s), &back)) << Name(s);
    EXPECT_EQ(back, s);
  }
  for (auto s : {StageStatus::kPending, StageStatus::kRunning, StageStatus::kSucceeded, StageStatus::kFailed,
                 StageStatus::kCached, StageStatus::kSkipped, StageStatus::kCancelled}) {
    StageStatus back{};
    ASSERT_TRUE(Parse(Name(s), &back)) << Name(s);
    EXPECT_EQ(back, s);
  }
  EXPECT_EQ(Name(RunStatus::kSucceeded), "succeeded");
  EXPECT_EQ(Name(StageStatus::kCached), "cached");
  RunStatus r{};
  StageStatus st{};
  EXPECT_FALSE(Parse("Running", &r));
  EXPECT_FALSE(Parse("", &st));
  EXPECT_FALSE(Parse("pending", &r));  // a stage status, not a run status
}

TEST_F(StateStoreTest, OpenCreatesDirectoryAndReopenKeepsData) {
  {
    auto s = OpenOk();
    ASSERT_TRUE(s);
    EXPECT_TRUE(fs::exists(file_));
    ASSERT_TRUE(s->CreateRun(Run("r1", 1000), nullptr));
    ASSERT_TRUE(s->UpsertStage({.run_id = "r1", .stage = "train", .status = StageStatus::kSucceeded}));
    ASSERT_TRUE(s->PutCache({"h1", "r1", "train", "{}", 5}));
    ASSERT_TRUE(s->AppendLogs({{"r1", "train", 0, 7, "hello", 0}}));
  }
  auto s = OpenOk();
  ASSERT_TRUE(s);
  auto run = s->GetRun("r1");
  ASSERT_TRUE(run);
  EXPECT_EQ(run->pipeline, "quickstart");
  ASSERT_EQ(s->Stages("r1").size(), 1u);
  EXPECT_TRUE(s->LookupCache("h1"));
  ASSERT_EQ(s->Logs("r1").size(), 1u);
  EXPECT_EQ(s->Logs("r1")[0].line, "hello");

  // WAL mode is persistent in the file, so readers in other processes do not block the writer.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(StateStoreTest, RunLifecycle) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  RunRow r = Run("run-a", 1234);
  r.plan = "PLAN";
  std::string err;
  ASSERT_TRUE(s->CreateRun(r, &err)) << err;

  EXPECT_FALSE(s->CreateRun(r, &err));
  EXPECT_NE(err.find("already exists"), std::string::npos) << err;
  RunRow no_id;
  EXPECT_FALSE(s->CreateRun(no_id, &err));
  EXPECT_FALSE(err.empty());

  auto got = s->GetRun("run-a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->run_id, "run-a");
  EXPECT_EQ(got->source_file, "pipelines/quickstart.mlp");
  EXPECT_EQ(got->status, RunStatus::kRunning);
  EXPECT_EQ(got->started_ms, 1234);
  EXPECT_EQ(got->params_json, R"({"lr":0.1})");
  EXPECT_EQ(got->plan, "");  // not asked for
  EXPECT_EQ(s->GetRun("run-a", true)->plan, "PLAN");
  EXPECT_FALSE(s->GetRun("run-b"));
  EXPECT_EQ(s->LastError(), "");  // missing is not an error

  ASSERT_TRUE(s->FinishRun("run-a", RunStatus::kFailed, 3, "stage train failed", 9999));
  got = s->GetRun("run-a");
  EXPECT_EQ(got->status, RunStatus::kFailed);
  EXPECT_EQ(got->exit_code, 3);
  EXPECT_EQ(got->error, "stage train failed");
  EXPECT_EQ(got->finished_ms, 9999);

  ASSERT_TRUE(s->ReopenRun("run-a"));
  got = s->GetRun("run-a", true);
  EXPECT_EQ(got->status, RunStatus::kRunning);
  EXPECT_EQ(got->exit_code, 0);
  EXPECT_EQ(got->error, "");
  EXPECT_EQ(got->finished_ms, 0);
  EXPECT_EQ(got->plan, "PLAN");  // resume needs the plan

  EXPECT_FALSE(s->FinishRun("nope", RunStatus::kSucceeded, 0, "", 1));
  EXPECT_NE(s->LastError().find("nope"), std::string::npos);
  EXPECT_FALSE(s->ReopenRun("nope"));
}

TEST_F(StateStoreTest, PlanBlobWithZeroBytesRoundTrips) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  std::string plan;
  for (int i = 0; i < 1000; ++i) plan += static_cast<char>(i % 256);  // includes '\0' and bytes >= 0x80
  RunRow r = Run("blob", 1);
  r.plan = plan;
  ASSERT_TRUE(s->CreateRun(r, nullptr));
  auto got = s->GetRun("blob", true);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->plan.size(), plan.size());
  EXPECT_EQ(got->plan, plan);

  ASSERT_TRUE(s->CreateRun(Run("empty-plan", 2), nullptr));
  EXPECT_EQ(s->GetRun("empty-plan", true)->plan, "");
}

TEST_F(StateStoreTest, QuotesAndUnicodeRoundTrip) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  const std::string tricky = "it's \"quoted\"; DROP TABLE runs; -- ünïcødé 数据 🚀 \\ \t\n'";
  RunRow r = Run("r'1", 1);
  r.pipeline = tricky;
  r.source_file = tricky;
  r.params_json = tricky;
  r.error = tricky;
  ASSERT_TRUE(s->CreateRun(r, nullptr));
  auto got = s->GetRun("r'1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->pipeline, tricky);
  EXPECT_EQ(got->source_file, tricky);
  EXPECT_EQ(got->params_json, tricky);
  EXPECT_EQ(got->error, tricky);

  ASSERT_TRUE(s->UpsertStage({.run_id = "r'1",
                              .stage = tricky,
                              .content_hash = tricky,
                              .status = StageStatus::kFailed,
                              .error = tricky,
                              .outputs_json = tricky,
                              .cached_from_run = tricky}));
  auto stages = s->Stages("r'1");
  ASSERT_EQ(stages.size(), 1u);
  EXPECT_EQ(stages[0].stage, tricky);
  EXPECT_EQ(stages[0].content_hash, tricky);
  EXPECT_EQ(stages[0].error, tricky);
  EXPECT_EQ(stages[0].outputs_json, tricky);
  EXPECT_EQ(stages[0].cached_from_run, tricky);

  ASSERT_TRUE(s->RecordTask({"r'1", tricky, 0, 0, tricky, "failed", "task_error", tricky, 1, 2}));
  auto tasks = s->Tasks("r'1", tricky);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].node_id, tricky);
  EXPECT_EQ(tasks[0].error, tricky);

  ASSERT_TRUE(s->PutCache({tricky, "r'1", tricky, tricky, 1}));
  EXPECT_EQ(s->LookupCache(tricky)->outputs_json, tricky);

  ASSERT_TRUE(s->AppendLogs({{"r'1", tricky, 0, 1, tricky, 0}}));
  ASSERT_EQ(s->Logs("r'1", tricky).size(), 1u);
  EXPECT_EQ(s->Logs("r'1", tricky)[0].line, tricky);
  EXPECT_TRUE(s->GetRun("r'1"));  // the table survived
}

TEST_F(StateStoreTest, ListRunsNewestFirst) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->ListRuns().empty());
  // Inserted out of order: the listing orders by start time, not insertion.
  for (auto [id, t] : std::vector<std::pair<std::string, int64_t>>{{"b", 200}, {"c", 300}, {"a", 100}, {"d", 250}}) {
    RunRow r = Run(id, t);
    r.plan = "big plan bytes";
    ASSERT_TRUE(s->CreateRun(r, nullptr));
  }
  auto runs = s->ListRuns();
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0].run_id, "c");
  EXPECT_EQ(runs[1].run_id, "d");
  EXPECT_EQ(runs[2].run_id, "b");
  EXPECT_EQ(runs[3].run_id, "a");
  for (const auto& r : runs) EXPECT_EQ(r.plan, "");
  auto two = s->ListRuns(2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].run_id, "c");
  EXPECT_EQ(two[1].run_id, "d");
  EXPECT_EQ(s->ListRuns(0).size(), 4u);
}

TEST_F(StateStoreTest, FindRunByPrefix) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  for (const char* id : {"20261130-120501-quickstart-3f2a", "20261130-120501-quickstart-3f2b",
                         "20261201-090000-train-aaaa", "abc", "abcd", "x_y", "x%z"}) {
    ASSERT_TRUE(s->CreateRun(Run(id, 1), nullptr));
  }
  EXPECT_EQ(s->FindRun("20261201")->run_id, "20261201-090000-train-aaaa");
  EXPECT_EQ(s->FindRun("20261130-120501-quickstart-3f2a")->run_id, "20261130-120501-quickstart-3f2a");
  EXPECT_EQ(s->FindRun("20261130-120501-quickstart-3f2b")->run_id, "20261130-120501-quickstart-3f2b");
  EXPECT_FALSE(s->FindRun("20261130"));  // ambiguous
  EXPECT_FALSE(s->FindRun("2026"));
  EXPECT_FALSE(s->FindRun("zzz"));
  EXPECT_FALSE(s->FindRun(""));
  EXPECT_EQ(s->FindRun("abc")->run_id, "abc");  // an exact id wins over a longer one it prefixes
  EXPECT_EQ(s->FindRun("abcd")->run_id, "abcd");
  // '_' and '%' are plain characters, not LIKE wildcards.
  EXPECT_EQ(s->FindRun("x_")->run_id, "x_y");
  EXPECT_EQ(s->FindRun("x%")->run_id, "x%z");
  EXPECT_FALSE(s->FindRun("x%y"));
}

TEST_F(StateStoreTest, NewRunIdsAreSafeSortableAndUnused) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  std::regex shape(R"(\d{8}-\d{6}-quickstart-[0-9a-f]{4})");
  std::string first = s->NewRunId("quickstart");
  EXPECT_TRUE(std::regex_match(first, shape)) << first;

  std::regex safe(R"(\d{8}-\d{6}-[A-Za-z0-9_-]+-[0-9a-f]{4,8})");
  for (std::string name : {"my pipeline/../../etc", "", "..", "ünï", "a.b:c"}) {
    std::string id = s->NewRunId(name);
    EXPECT_TRUE(std::regex_match(id, safe)) << name << " -> " << id;
    EXPECT_EQ(id.find(".."), std::string::npos);
    EXPECT_EQ(id.find('/'), std::string::npos);
  }
  EXPECT_NE(s->NewRunId("my pipeline").find("-my-pipeline-"), std::string::npos);
  EXPECT_NE(s->NewRunId("").find("-run-"), std::string::npos);
  EXPECT_LE(s->NewRunId(std::string(500, 'p')).size(), 16u + 40u + 9u);

  // Many ids in the same second: with 4 hex digits collisions are likely, and each must be skipped.
  std::set<std::string> seen;
  for (int i = 0; i < 400; ++i) {
    std::string id = s->NewRunId("p");
    ASSERT_TRUE(seen.insert(id).second) << "duplicate id " << id;
    ASSERT_TRUE(s->CreateRun(Run(id, i), nullptr));
  }
  // Ids from a later second sort after earlier ones (the time stamp leads).
  EXPECT_LE(first.substr(0, 15), s->NewRunId("quickstart").substr(0, 15));
}

TEST_F(StateStoreTest, StagesUpsertInFirstRecordedOrder) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->UpsertStage({.run_id = "r", .stage = "load", .status = StageStatus::kRunning, .tasks_total = 4}));
  ASSERT_TRUE(s->UpsertStage({.run_id = "r", .stage = "train", .status = StageStatus::kPending}));
  ASSERT_TRUE(s->UpsertStage({.run_id = "other", .stage = "load", .status = StageStatus::kCached}));
  ASSERT_TRUE(s->UpsertStage({.run_id = "r",
                              .stage = "load",
                              .content_hash = "abc",
                              .status = StageStatus::kSucceeded,
                              .started_ms = 10,
                              .finished_ms = 20,
                              .attempts = 2,
                              .tasks_total = 4,
                              .tasks_done = 4,
                              .outputs_json = R"({"out":"obj://1"})"}));
  auto st = s->Stages("r");
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].stage, "load");  // updating did not move it behind train
  EXPECT_EQ(st[0].status, StageStatus::kSucceeded);
  EXPECT_EQ(st[0].content_hash, "abc");
  EXPECT_EQ(st[0].started_ms, 10);
  EXPECT_EQ(st[0].finished_ms, 20);
  EXPECT_EQ(st[0].attempts, 2);
  EXPECT_EQ(st[0].tasks_total, 4);
  EXPECT_EQ(st[0].tasks_done, 4);
  EXPECT_EQ(st[0].outputs_json, R"({"out":"obj://1"})");
  EXPECT_EQ(st[1].stage, "train");
  EXPECT_EQ(st[1].status, StageStatus::kPending);
  ASSERT_EQ(s->Stages("other").size(), 1u);
  EXPECT_EQ(s->Stages("other")[0].status, StageStatus::kCached);
  EXPECT_TRUE(s->Stages("none").empty());
  EXPECT_FALSE(s->UpsertStage({.run_id = "r", .stage = ""}));
  EXPECT_FALSE(s->LastError().empty());
}

TEST_F(StateStoreTest, TaskAttemptsUpsertAndFilter) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->RecordTask({"r", "train", 0, 0, "node-1", "running", "", "", 100, 0}));
  ASSERT_TRUE(s->RecordTask({"r", "train", 1, 0, "node-2", "running", "", "", 101, 0}));
  ASSERT_TRUE(s->RecordTask({"r", "load", 0, 0, "node-1", "succeeded", "", "", 50, 60}));
  ASSERT_TRUE(s->RecordTask({"r", "train", 0, 0, "node-1", "lost", "node_lost", "node-1 stopped", 100, 150}));
  ASSERT_TRUE(s->RecordTask({"r", "train", 0, 1, "node-3", "succeeded", "", "", 160, 200}));
  ASSERT_TRUE(s->RecordTask({"r2", "train", 0, 0, "node-1", "running", "", "", 1, 0}));

  auto all = s->Tasks("r");
  ASSERT_EQ(all.size(), 4u);
  auto train = s->Tasks("r", "train");
  ASSERT_EQ(train.size(), 3u);
  EXPECT_EQ(train[0].task_index, 0);
  EXPECT_EQ(train[0].attempt, 0);
  EXPECT_EQ(train[0].status, "lost");  // updated in place
  EXPECT_EQ(train[0].reason, "node_lost");
  EXPECT_EQ(train[0].error, "node-1 stopped");
  EXPECT_EQ(train[0].finished_ms, 150);
  EXPECT_EQ(train[1].task_index, 1);
  EXPECT_EQ(train[1].node_id, "node-2");
  EXPECT_EQ(train[2].attempt, 1);
  EXPECT_EQ(train[2].node_id, "node-3");
  EXPECT_EQ(train[2].status, "succeeded");
  ASSERT_EQ(s->Tasks("r", "load").size(), 1u);
  EXPECT_TRUE(s->Tasks("r", "nope").empty());

  EXPECT_FALSE(s->RecordTask({"r", "train", 2, 0, "n", "exploded", "", "", 0, 0}));
  EXPECT_NE(s->LastError().find("exploded"), std::string::npos);
  EXPECT_FALSE(s->RecordTask({"r", "train", 2, 0, "n", "failed", "bad_luck", "", 0, 0}));
  EXPECT_NE(s->LastError().find("bad_luck"), std::string::npos);
  EXPECT_EQ(s->Tasks("r", "train").size(), 3u);
}

TEST_F(StateStoreTest, CacheNewestWins) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->LookupCache("h"));
  ASSERT_TRUE(s->PutCache({"h", "run1", "train", "v1", 100}));
  ASSERT_TRUE(s->PutCache({"h", "run2", "train", "v2", 200}));
  auto e = s->LookupCache("h");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->run_id, "run2");
  EXPECT_EQ(e->outputs_json, "v2");
  EXPECT_EQ(e->finished_ms, 200);
  // An older result recorded late does not replace the newer one.
  ASSERT_TRUE(s->PutCache({"h", "run0", "train", "v0", 50}));
  EXPECT_EQ(s->LookupCache("h")->run_id, "run2");
  ASSERT_TRUE(s->PutCache({"other", "run0", "eval", "v0", 50}));
  EXPECT_EQ(s->LookupCache("other")->stage, "eval");
  EXPECT_EQ(s->LookupCache("h")->run_id, "run2");
  EXPECT_FALSE(s->PutCache({"", "run0", "eval", "v0", 50}));
}

TEST_F(StateStoreTest, LogsOrderAndFilter) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->AppendLogs({}));
  ASSERT_TRUE(s->AppendLogs({{"r", "load", 0, 30, "load 1", 0},
                             {"r", "train", 0, 10, "train 1", 0},
                             {"other", "train", 0, 5, "other 1", 0}}));
  ASSERT_TRUE(s->AppendLogs({{"r", "train", 1, 20, "train 2", 0}, {"r", "load", 0, 40, "load 2", 0}}));

  auto all = s->Logs("r");
  ASSERT_EQ(all.size(), 4u);
  // Append order, not timestamp order.
  EXPECT_EQ(all[0].line, "load 1");
  EXPECT_EQ(all[1].line, "train 1");
  EXPECT_EQ(all[2].line, "train 2");
  EXPECT_EQ(all[3].line, "load 2");
  EXPECT_EQ(all[2].task_index, 1);
  EXPECT_EQ(all[2].ts_ms, 20);
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].rowid, all[i].rowid);

  auto train = s->Logs("r", "train");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(train[0].line, "train 1");
  EXPECT_EQ(train[1].line, "train 2");

  auto after = s->Logs("r", {}, all[1].rowid);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].line, "train 2");
  EXPECT_TRUE(s->Logs("r", {}, all[3].rowid).empty());
  EXPECT_EQ(s->Logs("r", "load", all[0].rowid).size(), 1u);
  EXPECT_EQ(s->Logs("other").size(), 1u);

  // A batch with a bad line writes nothing.
  EXPECT_FALSE(s->AppendLogs({{"r", "load", 0, 1, "ok", 0}, {"", "load", 0, 1, "no run", 0}}));
  EXPECT_EQ(s->Logs("r").size(), 4u);
}

TEST_F(StateStoreTest, MarkInterruptedRuns) {
  auto s = OpenOk();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->CreateRun(Run("live1", 1), nullptr));
  ASSERT_TRUE(s->CreateRun(Run("live2", 2), nullptr));
  ASSERT_TRUE(s->CreateRun(Run("done", 3, RunStatus::kSucceeded), nullptr));
  ASSERT_TRUE(s->UpsertStage({.run_id = "live1", .stage = "a", .status = StageStatus::kSucceeded}));
  ASSERT_TRUE(s->UpsertStage({.run_id = "live1", .stage = "b", .status = StageStatus::kRunning}));
  ASSERT_TRUE(s->RecordTask({"live1", "b", 0, 0, "n1", "running", "", "", 1, 0}));
  ASSERT_TRUE(s->RecordTask({"live1", "a", 0, 0, "n1", "succeeded", "", "", 1, 2}));

  EXPECT_EQ(s->MarkInterruptedRuns("head stopped"), 2);
  for (const char* id : {"live1", "live2"}) {
    auto r = s->GetRun(id);
    EXPECT_EQ(r->status, RunStatus::kFailed);
    EXPECT_EQ(r->error, "head stopped");
    EXPECT_GT(r->finished_ms, 0);
  }
  EXPECT_EQ(s->GetRun("done")->status, RunStatus::kSucceeded);
  EXPECT_EQ(s->GetRun("done")->error, "");
  auto st = s->Stages("live1");
  EXPECT_EQ(st[0].status, StageStatus::kSucceeded);
  EXPECT_EQ(st[1].status, StageStatus::kFailed);
  EXPECT_EQ(st[1].error, "head stopped");
  EXPECT_EQ(s->Tasks("live1", "b")[0].status, "lost");
  EXPECT_EQ(s->Tasks("live1", "a")[0].status, "succeeded");
  EXPECT_EQ(s->MarkInterruptedRuns("head stopped"), 0);
}

TEST_F(StateStoreTest, TwoStoresOnOneFile) {
  auto writer = OpenOk();
  auto reader = OpenOk();
  ASSERT_TRUE(writer && reader);
  EXPECT_FALSE(reader->GetRun("r"));
  ASSERT_TRUE(writer->CreateRun(Run("r", 1), nullptr));
  ASSERT_TRUE(writer->AppendLogs({{"r", "s", 0, 1, "line", 0}}));
  auto r = reader->GetRun("r");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kRunning);
  ASSERT_TRUE(writer->FinishRun("r", RunStatus::kSucceeded, 0, "", 5));
  EXPECT_EQ(reader->GetRun("r")->status, RunStatus::kSucceeded);
  EXPECT_EQ(reader->Logs("r").size(), 1u);
  // And the other way round.
  ASSERT_TRUE(reader->PutCache({"h", "r", "s", "{}", 1}));
  EXPECT_TRUE(writer->LookupCache("h"));
}

TEST_F(StateStoreTest, ConcurrentWriters) {
  auto shared = OpenOk();
  ASSERT_TRUE(shared);
  constexpr int kThreads = 6, kBatches = 30, kLinesPerBatch = 5;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads share one store (the mutex), half have their own connection (SQLite's file locking).
      std::unique_ptr<StateStore> own;
      StateStore* s = shared.get();
      if (t % 2 == 1) {
        std::string err;
        own = StateStore::Open(file_, &err);
        if (!own) {
          ++failures;
          return;
        }
        s = own.get();
      }
      std::string stage = "stage" + std::to_string(t);
      for (int b = 0; b < kBatches; ++b) {
        std::vector<LogLine> lines;
        for (int i = 0; i < kLinesPerBatch; ++i) lines.push_back({"r", stage, b, b, std::to_string(i), 0});
        if (!s->AppendLogs(lines)) ++failures;
        if (!s->RecordTask({"r", stage, b, 0, "n", "succeeded", "", "", b, b})) ++failures;
        if (!s->UpsertStage({.run_id = "r", .stage = stage, .status = StageStatus::kRunning, .tasks_done = b + 1})) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << shared->LastError();
  EXPECT_EQ(shared->Logs("r").size(), static_cast<size_t>(kThreads * kBatches * kLinesPerBatch));
  EXPECT_EQ(shared->Tasks("r").size(), static_cast<size_t>(kThreads * kBatches));
  auto stages = shared->Stages("r");
  ASSERT_EQ(stages.size(), static_cast<size_t>(kThreads));
  for (const auto& st : stages) EXPECT_EQ(st.tasks_done, kBatches);
  // Each batch went in as one transaction: its lines are contiguous in the log.
  auto logs = shared->Logs("r");
  for (size_t i = 0; i < logs.size(); i += kLinesPerBatch) {
    for (int j = 0; j < kLinesPerBatch; ++j) {
      EXPECT_EQ(logs[i + j].stage, logs[i].stage);
      EXPECT_EQ(logs[i + j].task_index, logs[i].task_index);
      EXPECT_EQ(logs[i + j].line, std::to_string(j));
    }
  }
}

TEST_F(StateStoreTest, GarbageFileIsAnErrorNotACrash) {
  std::mt19937 rng(42);
  for (size_t size : {1u, 15u, 16u, 17u, 100u, 512u, 4096u, 100000u}) {
    fs::remove_all(file_.parent_path());  // no -wal file of an earlier database may remain
    fs::create_directories(file_.parent_path());
    {
      std::ofstream out(file_, std::ios::binary | std::ios::trunc);
      for (size_t i = 0; i < size; ++i) out.put(static_cast<char>(rng()));
    }
    std::string err;
    auto s = StateStore::Open(file_, &err);
    EXPECT_EQ(s, nullptr) << size;
    EXPECT_NE(err.find("not a database"), std::string::npos) << size << ": " << err;
    EXPECT_NE(err.find(file_.string()), std::string::npos) << err;
    EXPECT_EQ(fs::file_size(file_), size);  // left as it was
  }
}

TEST_F(StateStoreTest, CorruptedPagesAreAnErrorNotACrash) {
  {
    auto s = OpenOk();
    ASSERT_TRUE(s);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(s->CreateRun(Run("run" + std::to_string(i), i), nullptr));
  }
  // Overwrite everything after the 100-byte header with noise: the file still looks like SQLite.
  auto size = fs::file_size(file_);
  ASSERT_GT(size, 1024u);
  {
    std::fstream f(file_, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(100);
    std::mt19937 rng(7);
    for (size_t i = 100; i < size; ++i) f.put(static_cast<char>(rng()));
  }
  std::string err;
  auto s = StateStore::Open(file_, &err);
  if (s) {
    // Opening may succeed, since only the header is read; reads must then fail cleanly.
    EXPECT_TRUE(s->ListRuns().empty());
    EXPECT_FALSE(s->LastError().empty());
  } else {
    EXPECT_FALSE(err.empty());
  }
}

TEST_F(StateStoreTest, EmptyFileBecomesAStore) {
  fs::create_directories(file_.parent_path());
  std::ofstream(file_).close();
  auto s = OpenOk();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->CreateRun(Run("r", 1), nullptr));
}

TEST_F(StateStoreTest, NewerSchemaIsRefused) {
  ASSERT_TRUE(OpenOk());
  RawExec("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1));
  std::string err;
  EXPECT_EQ(StateStore::Open(file_, &err), nullptr);
  EXPECT_NE(err.find("newer"), std::string::npos) << err;
  EXPECT_NE(err.find(std::to_string(kSchemaVersion + 1)), std::string::npos) << err;
}

TEST_F(StateStoreTest, OtherSqliteDatabaseIsRefused) {
  fs::create_directories(file_.parent_path());
  RawExec("CREATE TABLE runs (x INTEGER)");
  std::string err;
  EXPECT_EQ(StateStore::Open(file_, &err), nullptr);
  EXPECT_NE(err.find("not an mlpc state database"), std::string::npos) << err;
}

TEST_F(StateStoreTest, DirectoryOrUncreatablePathIsAnError) {
  fs::create_directories(file_);
  std::string err;
  EXPECT_EQ(StateStore::Open(file_, &err), nullptr);
  EXPECT_FALSE(err.empty());

  fs::create_directories(dir_);
  std::ofstream(dir_ / "plainfile") << "x";
  err.clear();
  EXPECT_EQ(StateStore::Open(dir_ / "plainfile" / "state.db", &err), nullptr);
  EXPECT_NE(err.find("cannot create directory"), std::string::npos) << err;
}

}  // namespace
}  // namespace mlp::rt::state
