#include "runtime/state/state_store.h"

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <random>
#include <system_error>
#include <unordered_map>

namespace mlp::rt::state {

namespace {

// Long enough to ride out another process's write transaction (a run flushing logs), short enough that a wedged
// writer surfaces as an error rather than a hang.
constexpr int kBusyTimeoutMs = 10000;

constexpr std::array<std::string_view, 4> kRunNames = {"running", "succeeded", "failed", "cancelled"};
constexpr std::array<std::string_view, 7> kStageNames = {"pending", "running", "succeeded", "failed",
                                                         "cached",  "skipped", "cancelled"};
constexpr std::array<std::string_view, 5> kTaskStatuses = {"running", "succeeded", "failed", "lost", "cancelled"};
constexpr std::array<std::string_view, 5> kTaskReasons = {"", "task_error", "node_lost", "lineage", "cancelled"};

template <size_t N>
bool OneOf(const std::array<std::string_view, N>& names, std::string_view v) {
  for (auto n : names) {
    if (n == v) return true;
  }
  return false;
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  pipeline TEXT NOT NULL DEFAULT '',
  source_file TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  plan BLOB,
  params_json TEXT NOT NULL DEFAULT '',
  exit_code INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs(started_ms);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE TABLE IF NOT EXISTS stages (
  run_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  content_hash TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  tasks_total INTEGER NOT NULL DEFAULT 0,
  tasks_done INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  outputs_json TEXT NOT NULL DEFAULT '',
  cached_from_run TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, stage)
);
CREATE TABLE IF NOT EXISTS tasks (
  run_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  task_index INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  node_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, stage, task_index, attempt)
);
CREATE TABLE IF NOT EXISTS cache (
  content_hash TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  outputs_json TEXT NOT NULL DEFAULT '',
  finished_ms INTEGER NOT NULL DEFAULT 0
);
-- AUTOINCREMENT: ids never reused, so a reader following a log by id cannot miss lines.
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  stage TEXT NOT NULL DEFAULT '',
  task_index INTEGER NOT NULL DEFAULT 0,
  ts_ms INTEGER NOT NULL DEFAULT 0,
  line TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs(run_id, id);
)sql";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view Name(RunStatus s) { return kRunNames[static_cast<size_t>(s)]; }
std::string_view Name(StageStatus s) { return kStageNames[static_cast<size_t>(s)]; }

bool Parse(std::string_view name, RunStatus* out) {
  for (size_t i = 0; i < kRunNames.size(); ++i) {
    if (kRunNames[i] == name) {
      *out = static_cast<RunStatus>(i);
      return true;
    }
  }
  return false;
}

bool Parse(std::string_view name, StageStatus* out) {
  for (size_t i = 0; i < kStageNames.size(); ++i) {
    if (kStageNames[i] == name) {
      *out = static_cast<StageStatus>(i);
      return true;
    }
  }
  return false;
}

namespace detail {
struct StoreImpl {
  sqlite3* db = nullptr;
  std::string file;
  mutable std::mutex mu;
  std::string last_error;
  // Prepared once, keyed by the SQL text (every statement is a string literal in this file).
  std::unordered_map<std::string_view, sqlite3_stmt*> stmts;
  std::mt19937_64 rng{std::random_device{}()};

  ~StoreImpl() {
    for (auto& [sql, st] : stmts) sqlite3_finalize(st);
    sqlite3_close_v2(db);
  }

  bool Fail(std::string_view what) {
    last_error = "state database " + file + ": " + std::string(what) + ": " + sqlite3_errmsg(db);
    return false;
  }

  sqlite3_stmt* Prepare(std::string_view sql) {
    auto it = stmts.find(sql);
    if (it != stmts.end()) return it->second;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &st, nullptr) !=
        SQLITE_OK) {
      Fail("cannot prepare a statement");
      sqlite3_finalize(st);
      return nullptr;
    }
    stmts.emplace(sql, st);
    return st;
  }

  bool Exec(const char* sql, std::string_view what) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return Fail(what);
    return true;
  }
};
}  // namespace detail

namespace {

using Impl = detail::StoreImpl;

// A cached statement in use: binds parameters in order, steps, reads columns, and resets on scope exit so the
// statement releases its read snapshot and can be reused.
class Query {
 public:
  Query(Impl& im, std::string_view sql) : im_(im), st_(im.Prepare(sql)), ok_(st_ != nullptr) {}
  ~Query() {
    if (st_) {
      sqlite3_reset(st_);
      sqlite3_clear_bindings(st_);
    }
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Text(std::string_view v) {
    if (ok_) ok_ = Check(sqlite3_bind_text64(st_, ++idx_, v.data() ? v.data() : "", v.size(), SQLITE_TRANSIENT,
                                             SQLITE_UTF8));
    return *this;
  }
  // A zero-length blob is bound as one, not as NULL (which a null data pointer would give).
  Query& Blob(std::string_view v) {
    if (ok_) ok_ = Check(sqlite3_bind_blob64(st_, ++idx_, v.data() ? v.data() : "", v.size(), SQLITE_TRANSIENT));
    return *this;
  }
  Query& Int(int64_t v) {
    if (ok_) ok_ = Check(sqlite3_bind_int64(st_, ++idx_, v));
    return *this;
  }

  // True when a row is ready; false at the end or on error (then `failed()`).
  bool Next() {
    if (!ok_) return false;
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) ok_ = im_.Fail("query failed");
    return false;
  }
  // Runs a statement that returns no rows.
  bool Run() {
    while (Next()) {
    }
    return ok_;
  }
  bool failed() const { return !ok_; }

  std::string Str(int col) const {
    const void* p = sqlite3_column_blob(st_, col);  // blob access: text is returned as is, zero bytes included
    int n = sqlite3_column_bytes(st_, col);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }
  int64_t I64(int col) const { return sqlite3_column_int64(st_, col); }
  int I32(int col) const { return sqlite3_column_int(st_, col); }

 private:
  bool Check(int rc) { return rc == SQLITE_OK || im_.Fail("cannot bind a value"); }

  Impl& im_;
  sqlite3_stmt* st_;
  bool ok_;
  int idx_ = 0;
};

// BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that later upgrades can fail with BUSY
// without the busy handler waiting, when another connection writes at the same time.
class Tx {
 public:
  explicit Tx(Impl& im) : im_(im), open_(im.Exec("BEGIN IMMEDIATE", "cannot begin a transaction")) {}
  ~Tx() {
    if (open_) sqlite3_exec(im_.db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;
  bool ok() const { return open_; }
  bool Commit() {
    if (!open_) return false;
    if (!im_.Exec("COMMIT", "cannot commit")) return false;  // the destructor rolls back
    open_ = false;
    return true;
  }

 private:
  Impl& im_;
  bool open_;
};

std::optional<int64_t> PragmaInt(Impl& im, const char* sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(im.db, sql, -1, &st, nullptr) != SQLITE_OK) {
    im.Fail("cannot read the database");
    sqlite3_finalize(st);
    return std::nullopt;
  }
  std::optional<int64_t> v;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  } else {
    im.Fail("cannot read the database");
  }
  sqlite3_finalize(st);
  return v;
}

constexpr std::string_view kRunCols =
    "run_id, pipeline, source_file, status, started_ms, finished_ms, params_json, exit_code, error";

RunRow ReadRun(const Query& q) {
  RunRow r;
  r.run_id = q.Str(0);
  r.pipeline = q.Str(1);
  r.source_file = q.Str(2);
  std::string status = q.Str(3);
  if (!Parse(status, &r.status)) r.status = RunStatus::kFailed;  // written by a newer mlpc; show it as not running
  r.started_ms = q.I64(4);
  r.finished_ms = q.I64(5);
  r.params_json = q.Str(6);
  r.exit_code = q.I32(7);
  r.error = q.Str(8);
  return r;
}

// ASCII letters, digits and '_' kept, every other run of bytes becomes one '-': a run id is used as a directory name.
std::string IdSafe(std::string_view s) {
  std::string out;
  for (char c : s) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (keep) {
      out += c;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
    if (out.size() >= 40) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "run" : out;
}

}  // namespace

StateStore::StateStore(std::unique_ptr<detail::StoreImpl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() = default;

std::unique_ptr<StateStore> StateStore::Open(const std::filesystem::path& file, std::string* error) {
  auto im = std::make_unique<Impl>();
  im->file = file.string();
  auto fail = [&](std::string msg) -> std::unique_ptr<StateStore> {
    if (error) *error = std::move(msg);
    return nullptr;
  };
  std::error_code ec;
  if (file.has_parent_path()) {
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) return fail("cannot create directory " + file.parent_path().string() + ": " + ec.message());
  }
  // SQLite takes a file of a few bytes for an empty database and would overwrite it; check the magic ourselves so
  // that any non-empty file that is not SQLite is refused, whatever its size.
  if (auto size = std::filesystem::file_size(file, ec); !ec && size > 0) {
    char magic[16] = {};
    std::ifstream in(file, std::ios::binary);
    in.read(magic, sizeof magic);
    if (in.gcount() != sizeof magic || std::memcmp(magic, "SQLite format 3", sizeof magic) != 0) {
      return fail("cannot open state database " + im->file + ": file is not a database");
    }
  }
  int rc = sqlite3_open_v2(im->file.c_str(), &im->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = im->db ? sqlite3_errmsg(im->db) : sqlite3_errstr(rc);
    return fail("cannot open state database " + im->file + ": " + msg);
  }
  sqlite3_busy_timeout(im->db, kBusyTimeoutMs);

  // The first read parses the header: a file that is not SQLite fails here ("file is not a database").
  auto app_id = PragmaInt(*im, "PRAGMA application_id");
  auto version = app_id ? PragmaInt(*im, "PRAGMA user_version") : std::nullopt;
  auto tables = version ? PragmaInt(*im, "SELECT count(*) FROM sqlite_master") : std::nullopt;
  if (!tables) return fail(im->last_error);
  bool ours = *app_id == kApplicationId || (*app_id == 0 && *version == 0 && *tables == 0);
  if (!ours) return fail("state database " + im->file + ": not an mlpc state database (another SQLite database)");
  if (*version > kSchemaVersion) {
    return fail("state database " + im->file + ": schema version " + std::to_string(*version) +
                " is newer than this mlpc supports (" + std::to_string(kSchemaVersion) + "); use a newer mlpc");
  }
  // WAL lets readers (`mlpc runs`) proceed while a run writes; NORMAL sync is durable enough with WAL.
  if (!im->Exec("PRAGMA journal_mode=WAL", "cannot enable WAL mode") ||
      !im->Exec("PRAGMA synchronous=NORMAL", "cannot set synchronous mode")) {
    return fail(im->last_error);
  }
  if (*version < kSchemaVersion) {
    Tx tx(*im);
    if (!tx.ok()) return fail(im->last_error);
    // Another process may have created the schema while this one waited for the lock.
    version = PragmaInt(*im, "PRAGMA user_version");
    if (!version) return fail(im->last_error);
    if (*version < kSchemaVersion) {
      std::string pragmas = "PRAGMA application_id=" + std::to_string(kApplicationId) +
                            "; PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";";
      if (!im->Exec(kSchema, "cannot create the schema") ||
          !im->Exec(pragmas.c_str(), "cannot set the schema version")) {
        return fail(im->last_error);
      }
    }
    if (!tx.Commit()) return fail(im->last_error);
  }
  im->last_error.clear();
  return std::unique_ptr<StateStore>(new StateStore(std::move(im)));
}

std::string StateStore::LastError() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_error;
}

std::string StateStore::NewRunId(std::string_view pipeline) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  std::string base = std::string(stamp) + "-" + IdSafe(pipeline) + "-";
  for (int attempt = 0;; ++attempt) {
    // Four hex digits keep ids short; after many collisions in one second, widen to eight.
    int digits = attempt < 16 ? 4 : 8;
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%0*llx", digits,
                  static_cast<unsigned long long>(impl_->rng() & (digits == 4 ? 0xffffu : 0xffffffffu)));
    std::string id = base + suffix;
    Query q(*impl_, "SELECT 1 FROM runs WHERE run_id = ?");
    q.Text(id);
    bool taken = q.Next();
    if (!taken || attempt >= 64) return id;  // on a read error the id is still very likely unique
  }
}

bool StateStore::CreateRun(const RunRow& run, std::string* error) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  bool ok = false;
  if (run.run_id.empty()) {
    impl_->last_error = "a run needs a run id";
  } else {
    Query q(*impl_,
            "INSERT INTO runs (run_id, pipeline, source_file, status, started_ms, finished_ms, plan, params_json, "
            "exit_code, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    q.Text(run.run_id).Text(run.pipeline).Text(run.source_file).Text(Name(run.status)).Int(run.started_ms);
    q.Int(run.finished_ms).Blob(run.plan).Text(run.params_json).Int(run.exit_code).Text(run.error);
    ok = q.Run();
    if (!ok && sqlite3_extended_errcode(impl_->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
      impl_->last_error = "run " + run.run_id + " already exists";
    }
  }
  if (!ok && error) *error = impl_->last_error;
  return ok;
}

bool StateStore::FinishRun(const std::string& run_id, RunStatus status, int exit_code, std::string_view error,
                           int64_t finished_ms) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_, "UPDATE runs SET status = ?, exit_code = ?, error = ?, finished_ms = ? WHERE run_id = ?");
  q.Text(Name(status)).Int(exit_code).Text(error).Int(finished_ms).Text(run_id);
  if (!q.Run()) return false;
  if (sqlite3_changes(impl_->db) == 0) {
    impl_->last_error = "no run " + run_id;
    return false;
  }
  return true;
}

bool StateStore::ReopenRun(const std::string& run_id) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_, "UPDATE runs SET status = 'running', exit_code = 0, error = '', finished_ms = 0 WHERE run_id = ?");
  q.Text(run_id);
  if (!q.Run()) return false;
  if (sqlite3_changes(impl_->db) == 0) {
    impl_->last_error = "no run " + run_id;
    return false;
  }
  return true;
}

std::optional<RunRow> StateStore::GetRun(const std::string& run_id, bool with_plan) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_,
          "SELECT run_id, pipeline, source_file, status, started_ms, finished_ms, params_json, exit_code, error, "
          "CASE WHEN ? THEN plan END FROM runs WHERE run_id = ?");
  q.Int(with_plan ? 1 : 0).Text(run_id);
  if (!q.Next()) return std::nullopt;
  RunRow r = ReadRun(q);
  r.plan = q.Str(9);
  return r;
}

std::vector<RunRow> StateStore::ListRuns(int limit) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  static const std::string sql =
      "SELECT " + std::string(kRunCols) + " FROM runs ORDER BY started_ms DESC, run_id DESC LIMIT ?";
  Query q(*impl_, sql);
  q.Int(limit > 0 ? limit : -1);
  std::vector<RunRow> out;
  while (q.Next()) out.push_back(ReadRun(q));
  return out;
}

std::optional<RunRow> StateStore::FindRun(std::string_view prefix) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  if (prefix.empty()) return std::nullopt;
  {
    static const std::string sql = "SELECT " + std::string(kRunCols) + " FROM runs WHERE run_id = ?";
    Query q(*impl_, sql);
    q.Text(prefix);
    if (q.Next()) return ReadRun(q);
    if (q.failed()) return std::nullopt;
  }
  // substr/length count characters on both sides, so any UTF-8 prefix compares whole; no LIKE, whose '_' and '%'
  // would be wildcards.
  static const std::string sql =
      "SELECT " + std::string(kRunCols) + " FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 LIMIT 2";
  Query q(*impl_, sql);
  q.Text(prefix);
  if (!q.Next()) return std::nullopt;
  RunRow r = ReadRun(q);
  if (q.Next()) return std::nullopt;  // ambiguous
  if (q.failed()) return std::nullopt;
  return r;
}

bool StateStore::UpsertStage(const StageRow& s) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  if (s.run_id.empty() || s.stage.empty()) {
    impl_->last_error = "a stage needs a run id and a stage name";
    return false;
  }
  Query q(*impl_,
          "INSERT INTO stages (run_id, stage, content_hash, status, started_ms, finished_ms, attempts, tasks_total, "
          "tasks_done, error, outputs_json, cached_from_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (run_id, stage) DO UPDATE SET content_hash = excluded.content_hash, status = excluded.status, "
          "started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, attempts = excluded.attempts, "
          "tasks_total = excluded.tasks_total, tasks_done = excluded.tasks_done, error = excluded.error, "
          "outputs_json = excluded.outputs_json, cached_from_run = excluded.cached_from_run");
  q.Text(s.run_id).Text(s.stage).Text(s.content_hash).Text(Name(s.status)).Int(s.started_ms).Int(s.finished_ms);
  q.Int(s.attempts).Int(s.tasks_total).Int(s.tasks_done).Text(s.error).Text(s.outputs_json).Text(s.cached_from_run);
  return q.Run();
}

std::vector<StageRow> StateStore::Stages(const std::string& run_id) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_,
          "SELECT run_id, stage, content_hash, status, started_ms, finished_ms, attempts, tasks_total, tasks_done, "
          "error, outputs_json, cached_from_run FROM stages WHERE run_id = ? ORDER BY rowid");
  q.Text(run_id);
  std::vector<StageRow> out;
  while (q.Next()) {
    StageRow s;
    s.run_id = q.Str(0);
    s.stage = q.Str(1);
    s.content_hash = q.Str(2);
    if (!Parse(q.Str(3), &s.status)) s.status = StageStatus::kFailed;  // unknown (newer) status: not done
    s.started_ms = q.I64(4);
    s.finished_ms = q.I64(5);
    s.attempts = q.I32(6);
    s.tasks_total = q.I32(7);
    s.tasks_done = q.I32(8);
    s.error = q.Str(9);
    s.outputs_json = q.Str(10);
    s.cached_from_run = q.Str(11);
    out.push_back(std::move(s));
  }
  return out;
}

bool StateStore::RecordTask(const TaskRow& t) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  if (t.run_id.empty() || t.stage.empty()) {
    impl_->last_error = "a task needs a run id and a stage name";
    return false;
  }
  if (!OneOf(kTaskStatuses, t.status)) {
    impl_->last_error = "unknown task status '" + t.status + "'";
    return false;
  }
  if (!OneOf(kTaskReasons, t.reason)) {
    impl_->last_error = "unknown task failure reason '" + t.reason + "'";
    return false;
  }
  Query q(*impl_,
          "INSERT INTO tasks (run_id, stage, task_index, attempt, node_id, status, reason, error, started_ms, "
          "finished_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, stage, task_index, attempt) "
          "DO UPDATE SET node_id = excluded.node_id, status = excluded.status, reason = excluded.reason, "
          "error = excluded.error, started_ms = excluded.started_ms, finished_ms = excluded.finished_ms");
  q.Text(t.run_id).Text(t.stage).Int(t.task_index).Int(t.attempt).Text(t.node_id).Text(t.status).Text(t.reason);
  q.Text(t.error).Int(t.started_ms).Int(t.finished_ms);
  return q.Run();
}

std::vector<TaskRow> StateStore::Tasks(const std::string& run_id, std::string_view stage) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_,
          "SELECT run_id, stage, task_index, attempt, node_id, status, reason, error, started_ms, finished_ms "
          "FROM tasks WHERE run_id = ?1 AND (?2 = '' OR stage = ?2) ORDER BY rowid");
  q.Text(run_id).Text(stage);
  std::vector<TaskRow> out;
  while (q.Next()) {
    TaskRow t;
    t.run_id = q.Str(0);
    t.stage = q.Str(1);
    t.task_index = q.I32(2);
    t.attempt = q.I32(3);
    t.node_id = q.Str(4);
    t.status = q.Str(5);
    t.reason = q.Str(6);
    t.error = q.Str(7);
    t.started_ms = q.I64(8);
    t.finished_ms = q.I64(9);
    out.push_back(std::move(t));
  }
  return out;
}

bool StateStore::PutCache(const CacheEntry& e) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  if (e.content_hash.empty()) {
    impl_->last_error = "a cache entry needs a content hash";
    return false;
  }
  // An older result arriving late (a slow run finishing after a newer one) does not replace the newer one.
  Query q(*impl_,
          "INSERT INTO cache (content_hash, run_id, stage, outputs_json, finished_ms) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT (content_hash) DO UPDATE SET run_id = excluded.run_id, stage = excluded.stage, "
          "outputs_json = excluded.outputs_json, finished_ms = excluded.finished_ms "
          "WHERE excluded.finished_ms >= cache.finished_ms");
  q.Text(e.content_hash).Text(e.run_id).Text(e.stage).Text(e.outputs_json).Int(e.finished_ms);
  return q.Run();
}

std::optional<CacheEntry> StateStore::LookupCache(const std::string& content_hash) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_,
          "SELECT content_hash, run_id, stage, outputs_json, finished_ms FROM cache WHERE content_hash = ?");
  q.Text(content_hash);
  if (!q.Next()) return std::nullopt;
  return CacheEntry{q.Str(0), q.Str(1), q.Str(2), q.Str(3), q.I64(4)};
}

bool StateStore::AppendLogs(const std::vector<LogLine>& lines) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  if (lines.empty()) return true;
  for (const auto& l : lines) {
    if (l.run_id.empty()) {
      impl_->last_error = "a log line needs a run id";
      return false;
    }
  }
  Tx tx(*impl_);
  if (!tx.ok()) return false;
  for (const auto& l : lines) {
    Query q(*impl_, "INSERT INTO logs (run_id, stage, task_index, ts_ms, line) VALUES (?, ?, ?, ?, ?)");
    q.Text(l.run_id).Text(l.stage).Int(l.task_index).Int(l.ts_ms).Text(l.line);
    if (!q.Run()) return false;
  }
  return tx.Commit();
}

std::vector<LogLine> StateStore::Logs(const std::string& run_id, std::string_view stage, int64_t after_rowid) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  Query q(*impl_,
          "SELECT id, run_id, stage, task_index, ts_ms, line FROM logs "
          "WHERE run_id = ?1 AND id > ?3 AND (?2 = '' OR stage = ?2) ORDER BY id");
  q.Text(run_id).Text(stage).Int(after_rowid);
  std::vector<LogLine> out;
  while (q.Next()) {
    LogLine l;
    l.rowid = q.I64(0);
    l.run_id = q.Str(1);
    l.stage = q.Str(2);
    l.task_index = q.I32(3);
    l.ts_ms = q.I64(4);
    l.line = q.Str(5);
    out.push_back(std::move(l));
  }
  return out;
}

int StateStore::MarkInterruptedRuns(std::string_view error) {
  std::lock_guard lock(impl_->mu);
  impl_->last_error.clear();
  int64_t now = NowMs();
  Tx tx(*impl_);
  if (!tx.ok()) return -1;
  {
    Query q(*impl_,
            "UPDATE stages SET status = 'failed', error = ?1, finished_ms = ?2 WHERE status = 'running' "
            "AND run_id IN (SELECT run_id FROM runs WHERE status = 'running')");
    q.Text(error).Int(now);
    if (!q.Run()) return -1;
  }
  {
    Query q(*impl_,
            "UPDATE tasks SET status = 'lost', error = ?1, finished_ms = ?2 WHERE status = 'running' "
            "AND run_id IN (SELECT run_id FROM runs WHERE status = 'running')");
    q.Text(error).Int(now);
    if (!q.Run()) return -1;
  }
  int runs = 0;
  {
    Query q(*impl_, "UPDATE runs SET status = 'failed', error = ?1, finished_ms = ?2 WHERE status = 'running'");
    q.Text(error).Int(now);
    if (!q.Run()) return -1;
    runs = sqlite3_changes(impl_->db);
  }
  if (!tx.Commit()) return -1;
  return runs;
}

}  // namespace mlp::rt::state
