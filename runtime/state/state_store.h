// The head's metadata store: runs, their stages, every task attempt, the stage-output cache and task logs, kept in
// one embedded SQLite file (e.g. `.mlpc/state.db`) so that `mlpc status/runs/logs/explain`, `run --resume` and a
// restarted head can see what happened. Several processes may open the same file at once (WAL mode, busy timeout).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mlp::rt::state {

// Stored in PRAGMA user_version; a file with a newer version is refused rather than misread.
inline constexpr int kSchemaVersion = 1;
// Stored in PRAGMA application_id ("MLPS"), to tell our files from other SQLite databases.
inline constexpr int32_t kApplicationId = 0x4D4C5053;

enum class RunStatus { kRunning, kSucceeded, kFailed, kCancelled };
enum class StageStatus { kPending, kRunning, kSucceeded, kFailed, kCached, kSkipped, kCancelled };

// Lower-case names as stored and shown ("running", "succeeded", ...). Parse returns false on an unknown name.
std::string_view Name(RunStatus s);
std::string_view Name(StageStatus s);
bool Parse(std::string_view name, RunStatus* out);
bool Parse(std::string_view name, StageStatus* out);

// String members have `{}` so that designated initializers may leave them out under -Wextra.
struct RunRow {
  std::string run_id{}, pipeline{}, source_file{};
  RunStatus status = RunStatus::kRunning;
  int64_t started_ms = 0, finished_ms = 0;
  std::string plan{};  // serialized plan (binary protobuf); only filled by GetRun(id, /*with_plan=*/true)
  std::string params_json{};
  int exit_code = 0;
  std::string error{};
};

struct StageRow {
  std::string run_id{}, stage{}, content_hash{};
  StageStatus status = StageStatus::kPending;
  int64_t started_ms = 0, finished_ms = 0;
  int attempts = 0;
  int tasks_total = 0, tasks_done = 0;
  std::string error{};
  std::string outputs_json{};
  std::string cached_from_run{};
};

// One attempt of one task. `status` is running|succeeded|failed|lost|cancelled; `reason` (why it did not succeed)
// is task_error|node_lost|lineage|cancelled or empty. Other values are rejected by RecordTask.
struct TaskRow {
  std::string run_id{}, stage{};
  int task_index = 0, attempt = 0;
  std::string node_id{}, status{}, reason{}, error{};
  int64_t started_ms = 0, finished_ms = 0;
};

struct CacheEntry {
  std::string content_hash{}, run_id{}, stage{}, outputs_json{};
  int64_t finished_ms = 0;
};

struct LogLine {
  std::string run_id{}, stage{};
  int task_index = 0;
  int64_t ts_ms = 0;
  std::string line{};
  int64_t rowid = 0;  // set when read back: increasing, pass the last one as `after_rowid` to follow a log
};

namespace detail {
struct StoreImpl;  // the connection and its prepared statements, in state_store.cc
}  // namespace detail

// Thread-safe: one connection behind a mutex. Methods returning bool/optional/empty report failures through
// LastError() (a missing row is not a failure: LastError() is then empty).
class StateStore {
 public:
  // Creates the parent directory and the schema. A corrupt or non-SQLite file, another application's database or a
  // newer schema version gives nullptr and a clear `*error`.
  static std::unique_ptr<StateStore> Open(const std::filesystem::path& file, std::string* error);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // "YYYYMMDD-HHMMSS-<pipeline>-<4 hex>" in UTC: sortable by time, made only of [A-Za-z0-9_-] (safe as a directory
  // name), and not used by any run in this store.
  std::string NewRunId(std::string_view pipeline);

  bool CreateRun(const RunRow& run, std::string* error);  // fails if the run id exists
  bool FinishRun(const std::string& run_id, RunStatus status, int exit_code, std::string_view error,
                 int64_t finished_ms);
  bool ReopenRun(const std::string& run_id);  // for --resume: back to running, finish fields cleared
  std::optional<RunRow> GetRun(const std::string& run_id, bool with_plan = false);
  std::vector<RunRow> ListRuns(int limit = 50);  // newest started first, without plan bytes; limit <= 0: all
  // The run whose id equals `prefix`, else the only one starting with it; nullopt if none or ambiguous.
  std::optional<RunRow> FindRun(std::string_view prefix);

  bool UpsertStage(const StageRow& stage);               // keyed by (run_id, stage)
  std::vector<StageRow> Stages(const std::string& run_id);  // in the order stages were first recorded

  bool RecordTask(const TaskRow& task);  // upsert keyed by (run_id, stage, task_index, attempt)
  // In the order attempts were first recorded; all stages when `stage` is empty.
  std::vector<TaskRow> Tasks(const std::string& run_id, std::string_view stage = {});

  bool PutCache(const CacheEntry& entry);  // per content_hash the entry with the latest finished_ms wins
  std::optional<CacheEntry> LookupCache(const std::string& content_hash);

  bool AppendLogs(const std::vector<LogLine>& lines);  // one transaction
  // In append order, rowid > after_rowid; all stages when `stage` is empty.
  std::vector<LogLine> Logs(const std::string& run_id, std::string_view stage = {}, int64_t after_rowid = 0);

  // For runs left `running` by a head that died: each becomes failed with `error` (e.g. "head stopped"), and their
  // running stages failed and running task attempts lost, with the same error. Returns the number of runs, -1 on
  // failure.
  int MarkInterruptedRuns(std::string_view error);

  std::string LastError() const;

 private:
  explicit StateStore(std::unique_ptr<detail::StoreImpl> impl);
  std::unique_ptr<detail::StoreImpl> impl_;
};

}  // namespace mlp::rt::state
