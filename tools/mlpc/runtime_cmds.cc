#include "runtime_cmds.h"

#include <signal.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "compiler/sema/units.h"
#include "head.grpc.pb.h"
#include "plan.pb.h"
#include "runtime/core/agent.h"
#include "runtime/core/head.h"
#include "runtime/core/rpc.h"
#include "runtime/state/state_store.h"

namespace mlpc {
namespace fs = std::filesystem;
namespace v1 = mlp::rt::v1;
using mlp::rt::NowMs;

namespace {

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }

void InstallSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

[[noreturn]] void Fail(int code, const std::string& msg) {
  std::fprintf(stderr, "mlpc: error: %s\n", msg.c_str());
  std::exit(code);
}

int64_t ParseSizeFlag(const std::string& flag, const std::string& text) {
  auto q = mlp::ParseQuantity(text);
  if (!q || q->kind != mlp::UnitKind::Size || q->value <= 0) Fail(2, flag + " `" + text + "` is not a size such as 4GiB");
  return q->value;
}

std::map<std::string, std::string> ParsePairs(const std::string& flag, const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const auto& s : items) {
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) Fail(2, flag + " `" + s + "` must have the form KEY=VALUE");
    out[s.substr(0, eq)] = s.substr(eq + 1);
  }
  return out;
}

mlp::rt::Security MakeSecurity(const RuntimeFlags& f, bool server, bool create_token) {
  mlp::rt::Security sec;
  std::string error;
  std::string path = f.token_file;
  if (path.empty()) {
    const char* env = std::getenv("MLPC_TOKEN_FILE");
    if (env) path = env;
  }
  if (path.empty()) Fail(2, "a cluster token is required: pass --token-file FILE (or set MLPC_TOKEN_FILE)");
  bool ok = create_token ? mlp::rt::EnsureTokenFile(path, &sec.token, &error)
                         : mlp::rt::ReadTokenFile(path, &sec.token, &error);
  if (!ok) Fail(2, error);
  sec.tls.cert_file = f.tls_cert;
  sec.tls.key_file = server ? f.tls_key : "";
  sec.tls.ca_file = f.tls_ca;
  if (server && f.tls_cert.empty() != f.tls_key.empty()) Fail(2, "--tls-cert and --tls-key go together");
  return sec;
}

int64_t MachineMemory() {
  struct sysinfo si {};
  if (sysinfo(&si) != 0) return 4ll << 30;
  return static_cast<int64_t>(si.totalram) * si.mem_unit;
}

v1::Resources NodeResources(const RuntimeFlags& f) {
  v1::Resources r;
  double cpus = f.cpus >= 0 ? f.cpus : static_cast<double>(std::thread::hardware_concurrency());
  if (cpus <= 0) cpus = 1;
  if (f.gpus < 0) Fail(2, "--gpus must not be negative");
  r.set_cpu_milli(static_cast<int64_t>(cpus * 1000 + 0.5));
  r.set_gpu_milli(static_cast<int64_t>(f.gpus * 1000 + 0.5));
  r.set_memory_bytes(f.memory.empty() ? MachineMemory() : ParseSizeFlag("--memory", f.memory));
  for (const auto& [k, v] : ParsePairs("--resources", f.resources)) {
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end || x < 0) Fail(2, "--resources " + k + "=" + v + ": the amount must be a number");
    (*r.mutable_custom_milli())[k] = static_cast<int64_t>(x * 1000 + 0.5);
  }
  return r;
}

// --- a job, either on the embedded head or on a remote one --------------------------------------

class JobClient {
 public:
  virtual ~JobClient() = default;
  virtual bool Submit(const std::string& plan, const v1::JobOptions& o, std::string* id, std::string* error) = 0;
  // Follows events until the job ends; false if the connection broke.
  virtual bool Watch(const std::string& id, const std::function<void(const v1::JobEvent&)>& fn) = 0;
  virtual bool Report(const std::string& id, v1::JobReport* r) = 0;
  virtual void Cancel(const std::string& id) = 0;
};

class EmbeddedClient : public JobClient {
 public:
  explicit EmbeddedClient(mlp::rt::Head* h) : head_(h) {}
  bool Submit(const std::string& plan, const v1::JobOptions& o, std::string* id, std::string* error) override {
    return head_->SubmitJob(plan, o, "", id, error);
  }
  bool Watch(const std::string& id, const std::function<void(const v1::JobEvent&)>& fn) override {
    head_->WatchJob(id, 0, [&](const v1::JobEvent& e) {
      fn(e);
      return true;
    });
    return true;
  }
  bool Report(const std::string& id, v1::JobReport* r) override { return head_->GetJob(id, r); }
  void Cancel(const std::string& id) override { head_->CancelJob(id); }

 private:
  mlp::rt::Head* head_;
};

class RemoteClient : public JobClient {
 public:
  RemoteClient(const std::string& address, mlp::rt::Security sec)
      : sec_(std::move(sec)), stub_(v1::Head::NewStub(mlp::rt::MakeChannel(address, sec_))), address_(address) {}

  void Prepare(grpc::ClientContext* ctx, int seconds = 10) {
    mlp::rt::AddToken(ctx, sec_.token);
    if (seconds > 0) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }

  [[noreturn]] void Unreachable(const grpc::Status& st) {
    if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      Fail(mlpc::kExitUnreachable, "the head at " + address_ + " refused us: " + st.error_message());
    Fail(mlpc::kExitUnreachable, "cannot reach the head at " + address_ + ": " + st.error_message());
  }

  bool Submit(const std::string& plan, const v1::JobOptions& o, std::string* id, std::string* error) override {
    v1::SubmitJobRequest req;
    req.set_submission_id(mlp::rt::RandomToken());
    req.set_plan(plan);
    *req.mutable_options() = o;
    v1::SubmitJobReply reply;
    for (int attempt = 0;; ++attempt) {
      grpc::ClientContext ctx;
      Prepare(&ctx);
      grpc::Status st = stub_->SubmitJob(&ctx, req, &reply);
      if (st.ok()) break;
      if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        *error = st.error_message();
        return false;
      }
      if (st.error_code() != grpc::StatusCode::UNAVAILABLE || attempt >= 2) Unreachable(st);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // safe: same submission id
    }
    *id = reply.job_id();
    return true;
  }

  bool Watch(const std::string& id, const std::function<void(const v1::JobEvent&)>& fn) override {
    uint64_t after = 0;
    for (int broken = 0; broken < 20;) {
      grpc::ClientContext ctx;
      Prepare(&ctx, 0);
      v1::WatchJobRequest req;
      req.set_job_id(id);
      req.set_after_seq(after);
      auto reader = stub_->WatchJob(&ctx, req);
      v1::JobEvent e;
      bool done = false;
      while (reader->Read(&e)) {
        after = e.seq();
        fn(e);
        broken = 0;
        if (e.has_done()) done = true;
      }
      grpc::Status st = reader->Finish();
      if (done) return true;
      if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED || st.error_code() == grpc::StatusCode::NOT_FOUND)
        Unreachable(st);
      ++broken;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));  // safe: resume after the last seq
    }
    return false;
  }

  bool Report(const std::string& id, v1::JobReport* r) override {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::GetJobRequest req;
    req.set_job_id(id);
    return stub_->GetJob(&ctx, req, r).ok();
  }

  void Cancel(const std::string& id) override {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::CancelJobRequest req;
    req.set_job_id(id);
    v1::CancelJobReply reply;
    stub_->CancelJob(&ctx, req, &reply);
  }

  v1::Head::Stub* stub() { return stub_.get(); }

 private:
  mlp::rt::Security sec_;
  std::unique_ptr<v1::Head::Stub> stub_;
  std::string address_;
};

// --- progress display ---------------------------------------------------------------------------

std::string Clock(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

class Progress {
 public:
  explicit Progress(bool tty) : tty_(tty) {}

  void On(const v1::JobEvent& e) {
    std::lock_guard<std::mutex> l(mu_);
    if (e.has_stage()) {
      const auto& s = e.stage();
      bool changed = !stages_.count(s.stage()) || stages_[s.stage()].status() != s.status();
      bool new_ckpt = stages_.count(s.stage()) && s.checkpoint_epoch() > stages_[s.stage()].checkpoint_epoch();
      if (!stages_.count(s.stage())) order_.push_back(s.stage());
      stages_[s.stage()] = s;
      if (tty_) return Redraw();
      if (new_ckpt && !changed) {
        std::cout << "[" << Clock(e.ts_ms()) << "] " << s.stage() << ": checkpoint of epoch " << s.checkpoint_epoch()
                  << std::endl;
      }
      // Live progress as plain lines: at most one per stage every 5 s.
      if (!changed && !s.progress().empty() && s.progress() != shown_[s.stage()] &&
          e.ts_ms() - last_ms_[s.stage()] >= 5000) {
        shown_[s.stage()] = s.progress();
        last_ms_[s.stage()] = e.ts_ms();
        std::cout << "[" << Clock(e.ts_ms()) << "] " << s.stage() << ": " << s.progress() << std::endl;
      }
      if (changed) {
        std::string line = "[" + Clock(e.ts_ms()) + "] " + s.stage() + ": " + s.status();
        if (s.status() == "running" || s.status() == "succeeded")
          line += " (" + std::to_string(s.tasks_done()) + "/" + std::to_string(s.tasks_total()) + " tasks)";
        if (s.status() == "cached") line += " (from run " + s.cached_from_run() + ")";
        if (!s.error().empty() && s.status() != "skipped") line += ": " + s.error();
        std::cout << line << std::endl;
      }
    } else if (e.has_message()) {
      if (tty_) {
        Clear();
        std::cout << "[" << Clock(e.ts_ms()) << "] " << e.message() << "\n";
        drawn_ = 0;
        Redraw();
      } else {
        std::cout << "[" << Clock(e.ts_ms()) << "] " << e.message() << std::endl;
      }
    }
  }

 private:
  void Clear() {
    for (int i = 0; i < drawn_; ++i) std::cout << "\x1b[1A\x1b[2K";
  }
  void Redraw() {
    Clear();
    for (const auto& name : order_) {
      const auto& s = stages_[name];
      std::string mark = s.status() == "succeeded" ? "\x1b[32mok\x1b[0m  "
                         : s.status() == "cached"  ? "\x1b[36mcache\x1b[0m"
                         : s.status() == "failed"  ? "\x1b[31mFAIL\x1b[0m "
                         : s.status() == "running" ? "\x1b[33mrun\x1b[0m  "
                                                   : s.status();
      std::cout << "  " << mark << " " << name << "  " << s.tasks_done() << "/" << s.tasks_total() << " tasks";
      if (s.failures()) std::cout << ", " << s.failures() << " failed attempts";
      if (s.node_losses()) std::cout << ", " << s.node_losses() << " lost with a node";
      if (s.status() == "running" && !s.progress().empty()) std::cout << "  " << s.progress();
      std::cout << "\n";
    }
    std::cout.flush();
    drawn_ = static_cast<int>(order_.size());
  }

  bool tty_;
  std::mutex mu_;
  int drawn_ = 0;
  std::vector<std::string> order_;
  std::map<std::string, v1::StageState> stages_;
  std::map<std::string, std::string> shown_;  // the progress line last printed (plain mode)
  std::map<std::string, int64_t> last_ms_;
};

nlohmann::json ReportJson(const v1::JobReport& r, int exit_code) {
  nlohmann::json j;
  j["run_id"] = r.job_id();
  j["pipeline"] = r.pipeline();
  j["status"] = r.status();
  j["exit_code"] = exit_code;
  j["started_ms"] = r.started_ms();
  j["finished_ms"] = r.finished_ms();
  j["error"] = r.error();
  j["stages"] = nlohmann::json::array();
  for (const auto& s : r.stages()) {
    nlohmann::json o;
    o["name"] = s.stage();
    o["status"] = s.status();
    o["source"] = s.source();
    o["tasks_total"] = s.tasks_total();
    o["tasks_done"] = s.tasks_done();
    o["attempts"] = s.attempts();
    o["failures"] = s.failures();
    o["node_losses"] = s.node_losses();
    o["nodes"] = s.nodes();
    o["started_ms"] = s.started_ms();
    o["finished_ms"] = s.finished_ms();
    o["duration_ms"] = s.finished_ms() > 0 ? s.finished_ms() - s.started_ms() : 0;
    if (!s.cached_from_run().empty()) o["cached_from_run"] = s.cached_from_run();
    if (s.checkpoint_epoch() > 0) o["checkpoint_epoch"] = s.checkpoint_epoch();
    if (!s.error().empty()) o["error"] = s.error();
    auto outputs = nlohmann::json::parse(s.outputs_json().empty() ? "{}" : s.outputs_json(), nullptr, false);
    o["outputs"] = outputs.is_object() && outputs.contains("preview") ? outputs["preview"] : nlohmann::json::object();
    if (outputs.is_object() && outputs.contains("objects")) o["files"] = outputs["objects"];
    j["stages"].push_back(o);
  }
  return j;
}

// Submits a plan, follows it with a progress display, writes the report.
int Follow(JobClient& client, const std::string& plan, const v1::JobOptions& options, const RuntimeFlags& f,
           const fs::path& run_root) {
  std::string job, error;
  if (!client.Submit(plan, options, &job, &error)) Fail(kExitStageFailed, error);
  bool tty = isatty(STDOUT_FILENO) && !f.json && std::getenv("TERM") && std::string(std::getenv("TERM")) != "dumb";
  std::cout << "run " << job << std::endl;
  Progress progress(tty);
  std::atomic<bool> finished{false};
  int exit_code = 1;
  std::string final_error;
  std::thread interrupter([&] {
    bool sent = false;
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (g_signal.load() && !sent) {
        sent = true;
        std::cerr << "\nmlpc: interrupted; cancelling run " << job << std::endl;
        client.Cancel(job);
      }
    }
  });
  bool ok = client.Watch(job, [&](const v1::JobEvent& e) {
    progress.On(e);
    if (e.has_done()) {
      exit_code = e.done().exit_code();
      final_error = e.done().error();
    }
  });
  finished = true;
  interrupter.join();
  if (!ok) Fail(kExitUnreachable, "lost the connection to the head while following run " + job);
  if (g_signal.load() && exit_code != 0) exit_code = kExitInterrupted;
  v1::JobReport report;
  if (client.Report(job, &report)) {
    nlohmann::json j = ReportJson(report, exit_code);
    if (f.cluster.empty()) {  // the embedded head's run store is local: keep the report beside the outputs
      std::error_code ec;
      fs::create_directories(run_root / "runs" / job, ec);
      std::ofstream(run_root / "runs" / job / "report.json") << j.dump(2) << "\n";
    }
    if (!f.json_out.empty()) {
      if (f.json_out == "-") {
        std::cout << j.dump(2) << "\n";
      } else {
        std::ofstream out(f.json_out);
        out << j.dump(2) << "\n";
        if (!out) Fail(2, "cannot write " + f.json_out);
      }
    }
  }
  if (exit_code == 0) std::cout << "run " << job << " succeeded" << std::endl;
  else if (exit_code == kExitInterrupted) std::cout << "run " << job << " cancelled" << std::endl;
  else std::cerr << "run " << job << " failed: " << final_error << std::endl;
  return exit_code;
}

std::string PlanFromRun(const fs::path& run_root, const std::string& run_id, std::string* full_id) {
  std::string error;
  if (!fs::exists(run_root / "state.db")) Fail(2, "no run store in " + run_root.string() + " (see --run-root)");
  auto db = mlp::rt::state::StateStore::Open(run_root / "state.db", &error);
  if (!db) Fail(2, error);
  auto r = db->FindRun(run_id);
  if (!r) Fail(2, "no run `" + run_id + "` in " + (run_root / "state.db").string() + " (or the prefix is ambiguous)");
  auto full = db->GetRun(r->run_id, true);
  *full_id = r->run_id;
  return full->plan;
}

// --- commands -------------------------------------------------------------------------------------

// The environment of the executors this process spawns: MLPC_JIT from --jit,
// and MLPC_JIT_CACHE (when unset) from `cache` ("": the user's cache dir).
void ConfigureJit(const RuntimeFlags& f, const fs::path& cache) {
  if (!f.jit.empty()) setenv("MLPC_JIT", f.jit.c_str(), 1);
  if (!cache.empty()) setenv("MLPC_JIT_CACHE", cache.c_str(), 0);
}

// --target: keeps the named stages and every stage they need (transitively),
// in the plan's order; exits 2 naming the stages when a target is unknown.
void SelectTargets(const std::vector<std::string>& targets, std::string* plan_bytes) {
  if (targets.empty()) return;
  mlp::plan::v1::Plan plan;
  if (!plan.ParseFromString(*plan_bytes)) Fail(2, "the plan does not parse");
  std::map<std::string, int> index;
  for (int i = 0; i < plan.nodes_size(); ++i) index[plan.nodes(i).name()] = i;
  std::set<std::string> keep;
  std::vector<std::string> todo;
  for (const auto& t : targets) {
    if (!index.count(t)) {
      std::string names;
      for (const auto& n : plan.nodes()) names += (names.empty() ? "" : ", ") + n.name();
      Fail(2, "--target " + t + ": the pipeline has no stage `" + t + "` (its stages: " + names + ")");
    }
    todo.push_back(t);
  }
  while (!todo.empty()) {
    std::string name = todo.back();
    todo.pop_back();
    if (!keep.insert(name).second) continue;
    for (const auto& d : plan.nodes(index[name]).deps())
      if (index.count(d)) todo.push_back(d);
  }
  google::protobuf::RepeatedPtrField<mlp::plan::v1::Node> kept;
  for (auto& n : *plan.mutable_nodes())
    if (keep.count(n.name())) *kept.Add() = std::move(n);
  plan.mutable_nodes()->Swap(&kept);
  plan.SerializeToString(plan_bytes);
}

int CmdRun(RuntimeFlags& f, const CompileFn& compile) {
  InstallSignals();
  std::string plan;
  v1::JobOptions options;
  options.set_no_cache(f.no_cache);
  fs::path root = f.run_root;
  if (!f.resume.empty() && !f.cluster.empty()) {
    options.set_resume_run_id(f.resume);  // the head has the run's plan
  } else if (!f.resume.empty()) {
    std::string full;
    plan = PlanFromRun(root, f.resume, &full);
    options.set_resume_run_id(full);
  } else {
    if (f.file.empty()) Fail(2, "`mlpc run` needs a pipeline file (or --resume RUN_ID)");
    std::string text;
    if (int rc = compile(f.file, &plan, &text); rc != 0) return rc;
    SelectTargets(f.targets, &plan);
  }
  if (!f.resume.empty() && !f.targets.empty()) Fail(2, "--target cannot be combined with --resume (the run has its stages)");
  if (!f.cluster.empty()) {
    if (!f.jit.empty()) Fail(2, "--jit applies to this machine's workers; start the cluster's workers with `mlpc worker --jit`");
    RemoteClient client(f.cluster, MakeSecurity(f, false, false));
    return Follow(client, plan, options, f, root);
  }
  // Executors inherit the kernel tier and keep compiled kernels with the runs.
  ConfigureJit(f, fs::absolute(root) / "jit-cache");
  // The embedded cluster: a head and one local worker sized to the machine,
  // talking gRPC over unix sockets in a private directory.
  char tmpl[] = "/tmp/mlpc-run-XXXXXX";
  if (!mkdtemp(tmpl)) Fail(2, "cannot create a temporary directory");
  std::string dir = tmpl;
  mlp::rt::HeadOptions ho;
  ho.listen = "unix:" + dir + "/head.sock";
  ho.sec.token = mlp::rt::RandomToken();
  ho.state_dir = f.run_root;
  ho.heartbeat_timeout_ms = static_cast<uint32_t>(f.heartbeat_timeout_ms);
  ho.mark_interrupted_runs = false;
  mlp::rt::Head head(ho);
  std::string error;
  if (!head.Start(&error)) Fail(2, "cannot start the embedded head: " + error);
  std::vector<std::unique_ptr<mlp::rt::Agent>> agents;
  for (int i = 0; i < std::max(1, f.workers); ++i) {
    mlp::rt::AgentOptions ao;
    ao.head = head.address();
    ao.listen = "unix:" + dir + "/worker" + std::to_string(i) + ".sock";
    ao.sec = ho.sec;
    ao.resources = NodeResources(f);
    ao.labels = ParsePairs("--labels", f.labels);
    ao.spill_dir = dir + "/spill" + std::to_string(i);
    if (!f.object_store.empty()) ao.object_store_bytes = static_cast<uint64_t>(ParseSizeFlag("--object-store", f.object_store));
    fs::create_directories(ao.spill_dir);
    auto a = std::make_unique<mlp::rt::Agent>(ao);
    if (!a->Start(&error)) Fail(2, "cannot start the embedded worker: " + error);
    agents.push_back(std::move(a));
  }
  EmbeddedClient client(&head);
  int rc = Follow(client, plan, options, f, root);
  for (auto& a : agents) a->Shutdown();
  head.Shutdown();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return rc;
}

int CmdHead(RuntimeFlags& f) {
  InstallSignals();
  mlp::rt::HeadOptions ho;
  ho.listen = f.listen.empty() ? mlp::rt::HostPort(f.host, f.port) : f.listen;
  if (f.token_file.empty()) f.token_file = (fs::path(f.run_root) / "token").string();
  std::error_code ec;
  fs::create_directories(f.run_root, ec);
  ho.sec = MakeSecurity(f, true, true);
  ho.state_dir = f.run_root;
  ho.heartbeat_timeout_ms = static_cast<uint32_t>(f.heartbeat_timeout_ms);
  mlp::rt::Head head(ho);
  std::string error;
  if (!head.Start(&error)) Fail(2, "cannot start the head: " + error);
  std::cout << "mlpc head listening on " << head.address() << " (token file " << f.token_file << ")" << std::endl;
  while (!g_signal.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  head.Shutdown();
  return 0;
}

int CmdWorker(RuntimeFlags& f) {
  InstallSignals();
  if (f.cluster.empty()) Fail(2, "`mlpc worker` needs --head HOST:PORT");
  ConfigureJit(f, {});
  mlp::rt::AgentOptions ao;
  ao.head = f.cluster;
  ao.listen = f.listen.empty() ? mlp::rt::HostPort(f.host, f.port) : f.listen;
  ao.sec = MakeSecurity(f, true, false);
  ao.sec.tls.ca_file = f.tls_ca;
  ao.resources = NodeResources(f);
  ao.labels = ParsePairs("--labels", f.labels);
  if (!f.object_store.empty()) ao.object_store_bytes = static_cast<uint64_t>(ParseSizeFlag("--object-store", f.object_store));
  mlp::rt::Agent agent(ao);
  std::string error;
  if (!agent.Start(&error)) Fail(kExitUnreachable, error);
  std::cout << "mlpc worker " << agent.node_id() << " serving on " << agent.address() << std::endl;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    agent.Wait();
    done = true;
  });
  while (!g_signal.load() && !done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  agent.Shutdown();
  waiter.join();
  return 0;
}

int CmdSubmit(RuntimeFlags& f, const CompileFn& compile) {
  InstallSignals();
  if (f.cluster.empty()) Fail(2, "`mlpc submit` needs --cluster HOST:PORT");
  std::string plan, text;
  if (int rc = compile(f.file, &plan, &text); rc != 0) return rc;
  SelectTargets(f.targets, &plan);
  RemoteClient client(f.cluster, MakeSecurity(f, false, false));
  v1::JobOptions options;
  options.set_no_cache(f.no_cache);
  if (f.detach) {
    std::string id, error;
    if (!client.Submit(plan, options, &id, &error)) Fail(kExitStageFailed, error);
    std::cout << id << std::endl;
    return 0;
  }
  return Follow(client, plan, options, f, f.run_root);
}

std::string Resources(const v1::Resources& r) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "cpu %.3g, gpu %.3g, memory %s", r.cpu_milli() / 1000.0, r.gpu_milli() / 1000.0,
                mlp::FormatSize(r.memory_bytes()).c_str());
  std::string s = buf;
  for (const auto& [k, v] : r.custom_milli()) s += ", " + k + " " + std::to_string(v / 1000.0).substr(0, 6);
  return s;
}

int CmdStatus(RuntimeFlags& f) {
  if (f.cluster.empty()) Fail(2, "`mlpc status` needs --cluster HOST:PORT (local runs: `mlpc runs`)");
  RemoteClient client(f.cluster, MakeSecurity(f, false, false));
  grpc::ClientContext ctx;
  client.Prepare(&ctx);
  v1::ClusterStatusReply reply;
  grpc::Status st = client.stub()->ClusterStatus(&ctx, v1::ClusterStatusRequest(), &reply);
  if (!st.ok()) client.Unreachable(st);
  if (f.json) {
    nlohmann::json j;
    j["nodes"] = nlohmann::json::array();
    for (const auto& n : reply.nodes()) {
      j["nodes"].push_back({{"node_id", n.node().node_id()},
                            {"address", n.node().address()},
                            {"alive", n.alive()},
                            {"cpu_milli", n.node().total().cpu_milli()},
                            {"available_cpu_milli", n.available().cpu_milli()},
                            {"memory_bytes", n.node().total().memory_bytes()},
                            {"running_tasks", n.running_tasks()},
                            {"objects", n.objects()}});
    }
    j["jobs"] = nlohmann::json::array();
    for (const auto& jb : reply.jobs())
      j["jobs"].push_back({{"run_id", jb.job_id()}, {"pipeline", jb.pipeline()}, {"status", jb.status()}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "nodes:\n";
  for (const auto& n : reply.nodes()) {
    std::cout << "  " << n.node().node_id() << "  " << (n.alive() ? "alive" : "dead ") << "  " << n.node().address()
              << "\n      total:     " << Resources(n.node().total())
              << "\n      available: " << Resources(n.available()) << "\n      tasks " << n.running_tasks()
              << ", objects " << n.objects() << "\n";
  }
  std::cout << "jobs:\n";
  for (const auto& j : reply.jobs()) std::cout << "  " << j.job_id() << "  " << j.status() << "\n";
  return 0;
}

int CmdRuns(RuntimeFlags& f) {
  std::string error;
  fs::path db_path = fs::path(f.run_root) / "state.db";
  if (!fs::exists(db_path)) {
    if (f.json) std::cout << "[]\n";
    else std::cout << "no runs yet in " << f.run_root << "\n";
    return 0;
  }
  auto db = mlp::rt::state::StateStore::Open(db_path, &error);
  if (!db) Fail(2, error);
  auto runs = db->ListRuns(100);
  if (f.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : runs)
      j.push_back({{"run_id", r.run_id},
                   {"pipeline", r.pipeline},
                   {"status", mlp::rt::state::Name(r.status)},
                   {"exit_code", r.exit_code},
                   {"started_ms", r.started_ms},
                   {"finished_ms", r.finished_ms},
                   {"error", r.error}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  for (const auto& r : runs) {
    std::cout << r.run_id << "  " << mlp::rt::state::Name(r.status);
    if (r.finished_ms) std::cout << "  " << (r.finished_ms - r.started_ms) / 1000.0 << " s";
    if (!r.error.empty()) std::cout << "  " << r.error;
    std::cout << "\n";
  }
  return 0;
}

int CmdLogs(RuntimeFlags& f) {
  std::string error;
  if (!f.cluster.empty()) {
    RemoteClient client(f.cluster, MakeSecurity(f, false, false));
    grpc::ClientContext ctx;
    client.Prepare(&ctx);
    v1::GetLogsRequest req;
    req.set_job_id(f.run_id);
    req.set_stage(f.stage);
    v1::GetLogsReply reply;
    grpc::Status st = client.stub()->GetLogs(&ctx, req, &reply);
    if (!st.ok()) client.Unreachable(st);
    for (const auto& l : reply.lines()) std::cout << l.stage() << "[" << l.index() << "] " << l.line() << "\n";
    return 0;
  }
  if (!fs::exists(fs::path(f.run_root) / "state.db")) Fail(2, "no run store in " + f.run_root + " (see --run-root)");
  auto db = mlp::rt::state::StateStore::Open(fs::path(f.run_root) / "state.db", &error);
  if (!db) Fail(2, error);
  auto run = db->FindRun(f.run_id);
  if (!run) Fail(2, "no run `" + f.run_id + "` (or the prefix is ambiguous)");
  for (const auto& t : db->Tasks(run->run_id, f.stage)) {
    if (t.status == "succeeded") continue;
    std::cout << t.stage << "[" << t.task_index << "] attempt " << t.attempt + 1 << " " << t.status;
    if (!t.node_id.empty()) std::cout << " on " << t.node_id;
    if (!t.error.empty()) std::cout << ": " << t.error;
    std::cout << "\n";
  }
  for (const auto& l : db->Logs(run->run_id, f.stage)) std::cout << l.stage << "[" << l.task_index << "] " << l.line << "\n";
  return 0;
}

int CmdExplain(RuntimeFlags& f, const CompileFn& compile) {
  std::string bytes, text, error;
  if (int rc = compile(f.file, &bytes, &text); rc != 0) return rc;
  SelectTargets(f.targets, &bytes);
  mlp::plan::v1::Plan plan;
  plan.ParseFromString(bytes);
  std::unique_ptr<mlp::rt::state::StateStore> db;
  fs::path db_path = fs::path(f.run_root) / "state.db";
  if (fs::exists(db_path)) db = mlp::rt::state::StateStore::Open(db_path, &error);
  std::map<std::string, bool> reruns;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& n : plan.nodes()) {
    std::string why;
    bool rerun = true;
    std::string upstream;
    for (const auto& d : n.deps())
      if (reruns[d]) upstream = d;
    if (n.cache().mode() == mlp::plan::v1::CachePolicy::OFF) {
      why = "runs: its cache is off";
    } else if (f.no_cache) {
      why = "runs: --no-cache";
    } else if (auto e = db ? db->LookupCache(n.content_hash()) : std::nullopt) {
      bool files = true;
      auto doc = nlohmann::json::parse(e->outputs_json, nullptr, false);
      if (doc.is_object() && doc.contains("objects") && doc["objects"].is_object()) {
        for (const auto& [port, list] : doc["objects"].items())
          for (const auto& p : list)
            if (!p.is_string() || !fs::exists(fs::path(f.run_root) / p.get<std::string>())) files = false;
      } else {
        files = false;
      }
      if (files) {
        rerun = false;
        why = "cached: run " + e->run_id + " produced it with the same content hash " + n.content_hash().substr(0, 12);
      } else {
        why = "runs: run " + e->run_id + " produced it, but its output files are gone";
      }
    } else if (!upstream.empty()) {
      why = "runs: upstream stage `" + upstream + "` runs, which changes its inputs";
    } else {
      why = "runs: no finished run has its content hash " + n.content_hash().substr(0, 12) +
            " (first run, or its definition, params or inputs changed)";
    }
    reruns[n.name()] = rerun;
    const auto& s = n.source();
    std::string where = s.file() + ":" + std::to_string(s.line());
    if (f.json) out.push_back({{"stage", n.name()}, {"rerun", rerun}, {"reason", why}, {"source", where},
                               {"content_hash", n.content_hash()}});
    else std::cout << n.name() << " (" << where << "): " << why << "\n";
  }
  if (f.json) std::cout << out.dump(2) << "\n";
  return 0;
}

void AddCluster(CLI::App* c, RuntimeFlags& f, bool required_cluster, const char* name = "--cluster") {
  auto* o = c->add_option(name, f.cluster, "the head's address, HOST:PORT")->type_name("ADDR");
  if (required_cluster) o->required();
  c->add_option("--token-file", f.token_file, "file holding the cluster token (or MLPC_TOKEN_FILE)")->type_name("FILE");
  c->add_option("--tls-ca", f.tls_ca, "PEM certificate to trust for the head's TLS")->type_name("FILE");
}

}  // namespace

RuntimeCommands AddRuntimeCommands(CLI::App& app, RuntimeFlags& f, const std::function<void(CLI::App*)>& add_common) {
  RuntimeCommands c;
  c.run = app.add_subcommand("run", "run a pipeline; exit 0 ok, 1 a stage failed, 2 usage, 3 compile errors, "
                                    "5 cluster unreachable, 130 interrupted");
  c.run->add_option("file", f.file, "pipeline file")->type_name("FILE");
  c.run->add_option("--json", f.json_out, "write the run report as JSON to FILE (`-`: stdout)")->type_name("FILE");
  c.run->add_flag("--no-cache", f.no_cache, "run every stage even if a finished run has its outputs");
  c.run->add_option("--target", f.targets, "run only this stage and the stages it needs (repeatable)")
      ->type_name("STAGE");
  c.run->add_option("--resume", f.resume, "continue a failed run from its finished stages")->type_name("RUN_ID");
  c.run->add_option("--run-root", f.run_root, "directory of the run store (default .mlpc)")->type_name("DIR");
  c.run->add_option("--cpus", f.cpus, "cpus of the embedded worker (default: the machine's)");
  c.run->add_option("--gpus", f.gpus, "gpus of the embedded worker");
  c.run->add_option("--memory", f.memory, "memory of the embedded worker (default: the machine's)")->type_name("SIZE");
  c.run->add_option("--workers", f.workers, "embedded worker nodes (default 1)");
  c.run->add_option("--object-store", f.object_store, "object store memory per worker before spilling")->type_name("SIZE");
  c.run->add_option("--jit", f.jit, "kernel tier: auto (interpret, compile hot kernels), on (compile first), off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  AddCluster(c.run, f, false);
  add_common(c.run);

  c.head = app.add_subcommand("head", "start a cluster head");
  c.head->add_option("--port", f.port, "port to listen on (0: any free port)");
  c.head->add_option("--host", f.host, "address to listen on (default 127.0.0.1)");
  c.head->add_option("--listen", f.listen, "listen address, e.g. unix:/path (overrides --host/--port)");
  c.head->add_option("--token-file", f.token_file, "cluster token file, created if missing (default RUN_ROOT/token)")
      ->type_name("FILE");
  c.head->add_option("--state-dir,--run-root", f.run_root, "where the head keeps state.db and run outputs")
      ->type_name("DIR");
  c.head->add_option("--tls-cert", f.tls_cert, "PEM certificate: serve gRPC over TLS")->type_name("FILE");
  c.head->add_option("--tls-key", f.tls_key, "PEM private key for --tls-cert")->type_name("FILE");
  c.head->add_option("--heartbeat-timeout", f.heartbeat_timeout_ms, "ms without heartbeats before a node is dead");

  c.worker = app.add_subcommand("worker", "start a worker node and join a cluster");
  AddCluster(c.worker, f, true, "--head");
  c.worker->add_option("--cpus", f.cpus, "cpus this node offers (default: the machine's)");
  c.worker->add_option("--gpus", f.gpus, "gpus this node offers");
  c.worker->add_option("--memory", f.memory, "memory this node offers (default: the machine's)")->type_name("SIZE");
  c.worker->add_option("--resources", f.resources, "custom resources, e.g. --resources tpu=4")->type_name("K=V");
  c.worker->add_option("--labels", f.labels, "node labels, e.g. --labels zone=a")->type_name("K=V");
  c.worker->add_option("--port", f.port, "port of this node's server (0: any)");
  c.worker->add_option("--host", f.host, "address this node listens on and is reached by");
  c.worker->add_option("--object-store", f.object_store, "object store memory before spilling")->type_name("SIZE");
  c.worker->add_option("--jit", f.jit, "kernel tier of this node's executors: auto, on or off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  c.worker->add_option("--tls-cert", f.tls_cert, "PEM certificate: serve gRPC over TLS")->type_name("FILE");
  c.worker->add_option("--tls-key", f.tls_key, "PEM private key for --tls-cert")->type_name("FILE");

  c.submit = app.add_subcommand("submit", "run a pipeline on a cluster");
  c.submit->add_option("file", f.file, "pipeline file")->required()->type_name("FILE");
  AddCluster(c.submit, f, true);
  c.submit->add_flag("--detach", f.detach, "print the run id and return");
  c.submit->add_flag("--no-cache", f.no_cache, "run every stage");
  c.submit->add_option("--target", f.targets, "run only this stage and the stages it needs (repeatable)")
      ->type_name("STAGE");
  c.submit->add_option("--json", f.json_out, "write the run report as JSON to FILE (`-`: stdout)")->type_name("FILE");
  add_common(c.submit);

  c.status = app.add_subcommand("status", "a cluster's nodes, resources and jobs");
  AddCluster(c.status, f, false);
  c.status->add_flag("--json", f.json, "print JSON");

  c.runs = app.add_subcommand("runs", "list the runs in the run store");
  c.runs->add_option("--run-root", f.run_root, "directory of the run store (default .mlpc)")->type_name("DIR");
  c.runs->add_flag("--json", f.json, "print JSON");

  c.logs = app.add_subcommand("logs", "a run's task failures and log lines");
  c.logs->add_option("run", f.run_id, "run id (a unique prefix is enough)")->required()->type_name("RUN_ID");
  c.logs->add_option("stage", f.stage, "only this stage")->type_name("STAGE");
  c.logs->add_option("--run-root", f.run_root, "directory of the run store (default .mlpc)")->type_name("DIR");
  AddCluster(c.logs, f, false);

  c.explain = app.add_subcommand("explain", "say for each stage whether `mlpc run` would run it, and why");
  c.explain->add_option("file", f.file, "pipeline file")->required()->type_name("FILE");
  c.explain->add_option("--run-root", f.run_root, "directory of the run store (default .mlpc)")->type_name("DIR");
  c.explain->add_flag("--no-cache", f.no_cache, "as `mlpc run --no-cache` would");
  c.explain->add_option("--target", f.targets, "as `mlpc run --target` would (repeatable)")->type_name("STAGE");
  c.explain->add_flag("--json", f.json, "print JSON");
  add_common(c.explain);
  return c;
}

int RunRuntimeCommand(const RuntimeCommands& c, RuntimeFlags& f, const CompileFn& compile) {
  if (*c.run) return CmdRun(f, compile);
  if (*c.head) return CmdHead(f);
  if (*c.worker) return CmdWorker(f);
  if (*c.submit) return CmdSubmit(f, compile);
  if (*c.status) return CmdStatus(f);
  if (*c.runs) return CmdRuns(f);
  if (*c.logs) return CmdLogs(f);
  if (*c.explain) return CmdExplain(f, compile);
  return -1;
}

}  // namespace mlpc
