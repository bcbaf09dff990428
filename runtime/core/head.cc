#include "runtime/core/head.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "head.grpc.pb.h"
#include "plan.pb.h"
#include "runtime/core/local_link.h"
#include "runtime/core/object_service.h"
#include "runtime/core/report.h"
#include "runtime/core/resources.h"
#include "runtime/objects/store.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/registry.h"
#include "runtime/sched/scheduler.h"
#include "runtime/state/state_store.h"
#include "worker.grpc.pb.h"

namespace mlp::rt {
namespace fs = std::filesystem;
namespace {

constexpr char kHeadNode[] = "head";
constexpr size_t kWindow = 256;  // queued requests the scheduler looks at per pass

v1::Resources FromPlan(const plan::v1::Resources& r) {
  v1::Resources o;
  o.set_cpu_milli(r.cpu_milli());
  o.set_gpu_milli(r.gpu_milli());
  o.set_memory_bytes(r.memory_bytes());
  for (const auto& [k, v] : r.custom_milli()) (*o.mutable_custom_milli())[k] = v;
  return o;
}

// The host part of a node's address ("host:port", "[v6]:port", "unix:path"),
// which the node's gang ranks bind and advertise for their collectives.
std::string HostOf(const std::string& address) {
  std::string host;
  if (address.rfind("unix:", 0) == 0) return "127.0.0.1";
  if (!address.empty() && address[0] == '[') {
    host = address.substr(1, address.find(']') == std::string::npos ? std::string::npos : address.find(']') - 1);
  } else {
    size_t colon = address.rfind(':');
    host = colon == std::string::npos ? address : address.substr(0, colon);
  }
  if (host.empty() || host == "0.0.0.0" || host == "::") return "127.0.0.1";
  return host;
}

std::string Where(const plan::v1::Node& n) {
  const auto& s = n.source();
  return s.file() + ":" + std::to_string(s.line()) + ":" + std::to_string(s.column());
}

std::string StageLabel(const plan::v1::Node& n) {
  static const char* kinds[] = {"stage", "data", "train", "tune", "serve", "rl"};
  int k = static_cast<int>(n.kind());
  return std::string(k >= 0 && k < 6 ? kinds[k] : "stage") + " " + n.name();
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// State
// ------------------------------------------------------------------------------------------------

struct WorkerConn {
  std::unique_ptr<v1::Worker::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ToWorker, v1::FromWorker>> stream;
  std::shared_ptr<LocalLink> local;  // set: the agent is in this process (no gRPC stream)
  std::thread reader, writer;
  std::mutex mu;
  std::condition_variable cv;
  v1::ToWorker outbox;
  bool has_out = false;
  bool closed = false;
  bool writing = false;  // a thread is writing; others only append to `outbox`

  // Writes batches until the outbox is empty. Called with `mu` held by `l`.
  void Drain(std::unique_lock<std::mutex>& l) {
    writing = true;
    while (has_out && !closed) {
      v1::ToWorker batch;
      batch.Swap(&outbox);
      has_out = false;
      l.unlock();
      bool ok = local ? local->ToWorker(batch) : stream->Write(batch);
      l.lock();
      if (!ok) closed = true;
    }
    writing = false;
  }
  // Writes on the calling thread unless another thread is writing already.
  void TryFlush() {
    std::unique_lock<std::mutex> l(mu);
    if (!writing && has_out && !closed) Drain(l);
  }
};

struct NodeState {
  v1::NodeInfo info;
  sched::ResourceSet total, available;
  bool alive = true;
  int64_t last_hb_us = 0;
  std::shared_ptr<WorkerConn> conn;
  std::unordered_set<std::string> plans;
  uint32_t outstanding = 0;  // tasks assigned and not finished
  uint64_t objects = 0, object_bytes = 0;
  uint32_t running = 0;
};

// kGang: a placeholder in the queue for all the kJob members of one gang
// attempt (a multi-rank stage), which are placed together or not at all.
enum class TaskKind { kJob, kCall, kGroup, kActor, kGang };

struct TaskRec {
  uint64_t handle = 0;
  TaskKind kind = TaskKind::kJob;
  v1::TaskSpec spec;
  sched::Request req;
  std::string node;            // assigned node (count 1)
  std::vector<std::string> group_nodes;
  bool assigned = false;
  int64_t not_before_us = 0;
  // kJob / kGang
  std::string job;
  int stage = -1;
  uint32_t slot = 0;
  std::vector<uint64_t> members;  // kGang: the member tasks, by slot
  // kCall
  Head::TaskDone done;
  uint32_t pending_deps = 0;
  std::vector<uint64_t> dependents;
  std::vector<std::string> dep_values;
  std::vector<uint64_t> deps;
  bool finished = false;
  std::string value;
  // kGroup / kActor
  Head::GroupReady group_ready;
  std::string actor_id;
};

struct ObjInfo {
  uint64_t size = 0;
  std::set<std::string> locations;  // node ids; kHeadNode when persisted in the run directory
  std::string job;
  int stage = -1;
  uint32_t slot = 0;
};

struct Slot {
  bool done = false;
  uint32_t attempt = 0, failures = 0, losses = 0;
  std::string node, task_id;
  int64_t started_ms = 0, finished_ms = 0;
};

struct StageRun {
  const plan::v1::Node* node = nullptr;
  std::string status = "pending";
  std::vector<Slot> slots;
  uint32_t done = 0;
  std::vector<int> consumers, producers;
  bool computed = false;
  bool persisted = false;
  bool persisting = false;
  bool cacheable = true;
  uint32_t attempts = 0, failures = 0, losses = 0;
  std::string error, cached_from, outputs_json;
  std::set<std::string> nodes;
  int64_t started_ms = 0, finished_ms = 0;
  std::vector<std::string> ports;  // output port names
  // A gang stage (train with workers > 1): its slots start, fail and restart together.
  bool gang = false;
  uint32_t gang_gen = 0;           // the current gang attempt
  uint32_t gang_failures = 0, gang_losses = 0;
  std::string progress;            // the latest live progress line
  // The newest checkpoint the head holds (in its store and the run directory).
  std::string ckpt_id;
  int64_t ckpt_epoch = 0;
};

struct Job {
  std::string id, submission_id;
  plan::v1::Plan plan;
  std::string plan_bytes;
  v1::JobOptions options;
  std::vector<StageRun> stages;
  std::map<std::string, int> index;
  std::string status = "running";
  int exit_code = 0;
  std::string error;
  bool cancelled = false;
  std::vector<v1::JobEvent> events;
  std::condition_variable cv;
  int64_t started_ms = 0, finished_ms = 0;
  fs::path dir;
  std::map<std::string, std::string> kv;  // gang rendezvous keys (scoped by the ranks with the gang's key)
  size_t kv_bytes = 0;
};

struct ActorRec {
  std::string id, class_name, args, node;
  v1::Resources resources;
  uint32_t max_restarts = 0, restarts = 0;
  bool ready = false, dead = false;
  Head::ActorReady on_ready;
  std::unordered_map<std::string, Head::CallDone> calls;
  uint64_t task_handle = 0;
};

// ------------------------------------------------------------------------------------------------

class Head::Impl : public v1::Head::Service {
 public:
  explicit Impl(HeadOptions o) : opt_(std::move(o)), objects_(opt_.sec) {}
  ~Impl() override { Shutdown(); }

  bool Start(std::string* error) {
    std::error_code ec;
    fs::create_directories(opt_.state_dir, ec);
    db_ = state::StateStore::Open(fs::path(opt_.state_dir) / "state.db", error);
    if (!db_) return false;
    if (opt_.mark_interrupted_runs) db_->MarkInterruptedRuns("the head stopped while the run was going");
    store_ = std::make_unique<objects::Store>(objects::Store::Options{
        static_cast<size_t>(opt_.object_store_bytes), (fs::path(opt_.state_dir) / "spill").string()});
    fs::create_directories(fs::path(opt_.state_dir) / "spill", ec);
    object_service_ = std::make_unique<ObjectServiceImpl>(store_.get(), &opt_.sec.token);
    server_ = StartServer(opt_.listen, "", opt_.sec, {this, object_service_.get()}, &address_, error);
    if (!server_) return false;
    loop_ = std::thread([this] { Loop(); });
    persister_ = std::thread([this] { PersistLoop(); });
    return true;
  }

  const std::string& address() const { return address_; }

  void Shutdown() {
    std::vector<std::shared_ptr<WorkerConn>> conns;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      for (auto& [id, n] : nodes_)
        if (n.conn) conns.push_back(n.conn);
      for (auto& [id, j] : jobs_) j->cv.notify_all();
    }
    cv_.notify_all();
    persist_cv_.notify_all();
    for (auto& c : conns) {
      {
        std::lock_guard<std::mutex> l(c->mu);
        c->closed = true;
      }
      c->cv.notify_all();
      c->ctx.TryCancel();
      if (c->local) c->local->DetachHead(/*wait=*/true);
    }
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    if (loop_.joinable()) loop_.join();
    if (persister_.joinable()) persister_.join();
    for (auto& c : conns) {
      if (c->writer.joinable()) c->writer.join();
      if (c->reader.joinable()) c->reader.join();
    }
    if (server_) server_->Wait();
  }

  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return stopped_; });
  }

  // ----------------------------------------------------------------------------------------------
  // Head service (gRPC)
  // ----------------------------------------------------------------------------------------------

  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req, v1::RegisterReply* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    const auto& n = req->node();
    const auto& t = n.total();
    if (n.address().empty() || n.address().size() > 512 || t.cpu_milli() < 0 || t.gpu_milli() < 0 ||
        t.memory_bytes() < 0 || n.node_key().size() > 256 || n.labels_size() > 256)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad node description");
    std::string id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [nid, ns] : nodes_)
        if (!n.node_key().empty() && ns.info.node_key() == n.node_key() && ns.alive) id = nid;
      if (id.empty()) {
        id = "n" + std::to_string(++node_seq_);
        NodeState& ns = nodes_[id];
        ns.info = n;
        ns.info.set_node_id(id);
        ns.total = ns.available = ToSched(n.total());
        ns.last_hb_us = MonoUs();
        ns.conn = Connect(id, n.address());
        dirty_ = true;
      } else {
        nodes_[id].last_hb_us = MonoUs();
      }
    }
    cv_.notify_all();
    reply->set_node_id(id);
    reply->set_heartbeat_ms(opt_.heartbeat_ms);
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req, v1::HeartbeatReply* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(req->node_id());
    if (it == nodes_.end() || !it->second.alive) {
      reply->set_known(false);
      return grpc::Status::OK;
    }
    it->second.last_hb_us = MonoUs();
    it->second.objects = req->objects();
    it->second.object_bytes = req->object_bytes();
    it->second.running = req->running_tasks();
    reply->set_known(true);
    return grpc::Status::OK;
  }

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req, v1::SubmitJobReply* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    if (req->submission_id().size() > 256)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "submission id too long");
    std::string id, error;
    if (!SubmitJobImpl(req->plan(), req->options(), req->submission_id(), &id, &error))
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);
    reply->set_job_id(id);
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!jobs_.count(req->job_id())) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no job " + req->job_id());
    }
    WatchJobImpl(req->job_id(), req->after_seq(), [&](const v1::JobEvent& e) {
      return !ctx->IsCancelled() && writer->Write(e);
    }, [&] { return ctx->IsCancelled(); });
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req, v1::JobReport* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    if (!GetJobImpl(req->job_id(), reply)) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no job " + req->job_id());
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req, v1::CancelJobReply* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    reply->set_found(CancelJobImpl(req->job_id()));
    return grpc::Status::OK;
  }

  grpc::Status ClusterStatus(grpc::ServerContext* ctx, const v1::ClusterStatusRequest*,
                             v1::ClusterStatusReply* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    *reply = ClusterStatusImpl();
    return grpc::Status::OK;
  }

  grpc::Status GetLogs(grpc::ServerContext* ctx, const v1::GetLogsRequest* req, v1::GetLogsReply* reply) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    for (const auto& l : db_->Logs(req->job_id(), req->stage())) {
      auto* o = reply->add_lines();
      o->set_job_id(l.run_id);
      o->set_stage(l.stage);
      o->set_index(static_cast<uint32_t>(l.task_index));
      o->set_ts_ms(l.ts_ms);
      o->set_line(l.line);
    }
    return grpc::Status::OK;
  }

  // ----------------------------------------------------------------------------------------------
  // Jobs
  // ----------------------------------------------------------------------------------------------

  bool SubmitJobImpl(const std::string& submitted_plan, const v1::JobOptions& submitted_options,
                     const std::string& submission_id, std::string* job_id, std::string* error) {
    auto job = std::make_unique<Job>();
    std::string plan_bytes = submitted_plan;
    v1::JobOptions options = submitted_options;
    if (!options.resume_run_id().empty()) {
      // Resuming: the plan is the one stored with the run (a client may send none).
      auto r = db_->FindRun(options.resume_run_id());
      if (!r) {
        *error = "no run `" + options.resume_run_id() + "` (or the prefix is ambiguous)";
        return false;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        Job* running = FindJobLocked(r->run_id);
        if (running && running->status == "running") {
          *error = "run " + r->run_id + " is still running";
          return false;
        }
      }
      options.set_resume_run_id(r->run_id);
      if (plan_bytes.empty()) plan_bytes = db_->GetRun(r->run_id, true)->plan;
    }
    if (plan_bytes.size() > static_cast<size_t>(kMaxMessageBytes) || !job->plan.ParseFromString(plan_bytes)) {
      *error = "the plan does not parse as mlp.plan.v1";
      return false;
    }
    if (job->plan.format() != "mlp.plan.v1") {
      *error = "unsupported plan format `" + job->plan.format() + "` (expected mlp.plan.v1)";
      return false;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!submission_id.empty()) {
        auto it = submissions_.find(submission_id);
        if (it != submissions_.end()) {
          *job_id = it->second;
          return true;
        }
      }
    }
    // Every stage must be runnable before anything starts.
    for (const auto& n : job->plan.nodes()) {
      std::string why;
      if (!ops::Global().CanRun(n, &why)) {
        *error = Where(n) + ": " + StageLabel(n) + ": " + why;
        return false;
      }
    }
    job->plan_bytes = plan_bytes;
    job->options = options;
    job->submission_id = submission_id;
    job->started_ms = NowMs();
    std::optional<state::RunRow> resumed;
    std::vector<state::StageRow> resumed_stages;
    if (!options.resume_run_id().empty()) {
      resumed = db_->GetRun(options.resume_run_id());
      if (!resumed) {
        *error = "no run " + options.resume_run_id();
        return false;
      }
      job->id = resumed->run_id;
      resumed_stages = db_->Stages(job->id);
      db_->ReopenRun(job->id);
    } else {
      job->id = db_->NewRunId(job->plan.pipeline());
      state::RunRow row;
      row.run_id = job->id;
      row.pipeline = job->plan.pipeline();
      row.source_file = job->plan.source_file();
      row.status = state::RunStatus::kRunning;
      row.started_ms = job->started_ms;
      row.plan = plan_bytes;
      if (!db_->CreateRun(row, error)) return false;
    }
    job->dir = fs::path(opt_.state_dir) / "runs" / job->id;
    std::error_code ec;
    fs::create_directories(job->dir, ec);

    const int n = job->plan.nodes_size();
    job->stages.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const auto& node = job->plan.nodes(i);
      job->index[node.name()] = i;
      StageRun& s = job->stages[static_cast<size_t>(i)];
      s.node = &job->plan.nodes(i);
      uint32_t count = 1;
      for (const auto& r : node.roles()) count = std::max<uint32_t>(count, r.count());
      s.slots.resize(count);
      for (const auto& p : node.outputs()) s.ports.push_back(p.name());
      s.cacheable = node.cache().mode() == plan::v1::CachePolicy::ON;
      for (const auto& r : node.roles()) s.gang = s.gang || (r.gang() && r.count() > 1);
    }
    for (int i = 0; i < n; ++i) {
      for (const auto& d : job->plan.nodes(i).deps()) {
        auto it = job->index.find(d);
        if (it == job->index.end()) continue;
        job->stages[static_cast<size_t>(i)].producers.push_back(it->second);
        job->stages[static_cast<size_t>(it->second)].consumers.push_back(i);
      }
    }
    // Reuse: stages finished by the run being resumed, then the cache.
    std::map<std::string, state::StageRow> done_before;
    for (auto& r : resumed_stages)
      if (r.status == state::StageStatus::kSucceeded || r.status == state::StageStatus::kCached)
        done_before[r.stage] = r;
    std::vector<std::pair<int, std::string>> reuse;  // stage, outputs_json
    for (int i = 0; i < n; ++i) {
      StageRun& s = job->stages[static_cast<size_t>(i)];
      auto it = done_before.find(s.node->name());
      if (it != done_before.end() && it->second.content_hash == s.node->content_hash()) {
        s.cached_from = it->second.cached_from_run.empty() ? job->id : it->second.cached_from_run;
        reuse.emplace_back(i, it->second.outputs_json);
        continue;
      }
      if (!s.cacheable || options.no_cache()) continue;
      if (auto e = db_->LookupCache(s.node->content_hash())) {
        s.cached_from = e->run_id;
        reuse.emplace_back(i, e->outputs_json);
      }
    }
    std::string id = job->id;
    std::unique_lock<std::mutex> lock(mu_);
    Job* j = job.get();
    jobs_[id] = std::move(job);
    if (!submission_id.empty()) submissions_[submission_id] = id;
    for (auto& [i, outputs_json] : reuse) {
      StageRun& s = j->stages[static_cast<size_t>(i)];
      if (LoadCachedLocked(j, i, outputs_json)) {
        s.status = "cached";
        s.computed = s.persisted = true;
        s.done = static_cast<uint32_t>(s.slots.size());
        for (auto& sl : s.slots) sl.done = true;
        s.outputs_json = outputs_json;
        s.started_ms = s.finished_ms = NowMs();
        StageEventLocked(j, i);
      } else {
        s.cached_from.clear();
      }
    }
    // A resumed run's unfinished stages continue from their last checkpoint.
    if (!resumed_stages.empty())
      for (int i = 0; i < n; ++i)
        if (j->stages[static_cast<size_t>(i)].status == "pending") LoadCheckpointLocked(j, i);
    AdvanceLocked(j);
    lock.unlock();
    cv_.notify_all();
    *job_id = id;
    return true;
  }

  // The checkpoint a stage left in the run directory (latest.json), when it
  // belongs to the same stage definition; into the head's store.
  void LoadCheckpointLocked(Job* j, int i) {
    StageRun& s = j->stages[static_cast<size_t>(i)];
    fs::path dir = j->dir / "checkpoints" / s.node->name();
    std::ifstream meta_in(dir / "latest.json");
    if (!meta_in) return;
    std::stringstream text;
    text << meta_in.rdbuf();
    auto meta = nlohmann::json::parse(text.str(), nullptr, false);
    if (!meta.is_object() || !meta.contains("epoch") || !meta["epoch"].is_number_integer() || !meta.contains("file") ||
        !meta["file"].is_string() || meta.value("content_hash", "") != s.node->content_hash())
      return;
    std::string file = meta["file"].get<std::string>();
    if (file.find('/') != std::string::npos || file.find("..") != std::string::npos) return;
    std::error_code ec;
    uintmax_t size = fs::file_size(dir / file, ec);
    std::ifstream in(dir / file, std::ios::binary);
    std::string error;
    auto buf = ec || !in ? nullptr : objects::Buffer::Create(size, &error);
    if (!buf || (size > 0 && !in.read(reinterpret_cast<char*>(buf->mutable_data()), static_cast<std::streamsize>(size))))
      return;
    int64_t epoch = meta["epoch"].get<int64_t>();
    std::string id = j->id + "/" + s.node->name() + "/__checkpoint/resumed." + std::to_string(epoch);
    if (!store_->Put(id, std::move(buf), &error)) return;
    ObjInfo& o = objs_[id];
    o.size = size;
    o.locations.insert(kHeadNode);
    o.job = j->id;
    o.stage = i;
    s.ckpt_id = id;
    s.ckpt_epoch = epoch;
    Event(j, StageLabel(*s.node) + ": resuming from the checkpoint of epoch " + std::to_string(epoch));
  }

  // Loads a finished stage's persisted outputs into the head's store.
  bool LoadCachedLocked(Job* j, int stage, const std::string& outputs_json) {
    auto doc = nlohmann::json::parse(outputs_json, nullptr, false);
    if (!doc.is_object() || !doc.contains("objects") || !doc["objects"].is_object()) return false;
    StageRun& s = j->stages[static_cast<size_t>(stage)];
    for (const auto& port : s.ports) {
      if (!doc["objects"].contains(port) || !doc["objects"][port].is_array()) return false;
      const auto& files = doc["objects"][port];
      if (files.size() != s.slots.size()) return false;
      for (size_t k = 0; k < files.size(); ++k) {
        if (!files[k].is_string()) return false;
        // Paths are relative to the state directory, so a run store can move.
        fs::path path = files[k].get<std::string>();
        if (path.is_relative()) path = fs::path(opt_.state_dir) / path;
        // Read straight into the object's buffer (a copy, not a mapping: a
        // file truncated behind our back must not be able to crash the head).
        std::error_code ec;
        uintmax_t size = fs::file_size(path, ec);
        std::ifstream in(path, std::ios::binary);
        if (ec || !in) return false;
        std::string id = ObjectId(j, stage, port, static_cast<uint32_t>(k)), error;
        auto buf = objects::Buffer::Create(size, &error);
        if (!buf) return false;
        if (size > 0 && !in.read(reinterpret_cast<char*>(buf->mutable_data()), static_cast<std::streamsize>(size)))
          return false;
        if (!store_->Put(id, std::move(buf), &error)) return false;
        ObjInfo& o = objs_[id];
        o.size = size;
        o.locations.insert(kHeadNode);
        o.job = j->id;
        o.stage = stage;
        o.slot = static_cast<uint32_t>(k);
      }
    }
    return true;
  }

  static std::string ObjectId(const Job* j, int stage, const std::string& port, uint32_t slot) {
    return j->id + "/" + j->plan.nodes(stage).name() + "/" + port + "/" + std::to_string(slot);
  }

  // Starts stages whose producers are computed; finishes the job when all are final.
  void AdvanceLocked(Job* j) {
    if (j->status != "running") return;
    bool all_final = true;
    for (size_t i = 0; i < j->stages.size(); ++i) {
      StageRun& s = j->stages[i];
      if (s.status == "pending" && !j->cancelled) {
        bool ready = true, blocked = false;
        for (int p : s.producers) {
          const auto& ps = j->stages[static_cast<size_t>(p)];
          if (ps.status == "failed" || ps.status == "skipped" || ps.status == "cancelled") blocked = true;
          if (!ps.computed) ready = false;
        }
        if (blocked) {
          s.status = "skipped";
          s.error = "an upstream stage failed";
          StageEventLocked(j, static_cast<int>(i));
        } else if (ready) {
          StartStageLocked(j, static_cast<int>(i));
        }
      }
      bool final = s.status == "failed" || s.status == "skipped" || s.status == "cancelled" ||
                   ((s.status == "succeeded" || s.status == "cached") && (s.persisted || !s.cacheable));
      if (!final) all_final = false;
    }
    if (all_final) FinishJobLocked(j);
  }

  void StartStageLocked(Job* j, int i) {
    StageRun& s = j->stages[static_cast<size_t>(i)];
    s.status = "running";
    s.started_ms = NowMs();
    if (s.gang) QueueGangLocked(j, i, 0);
    else
      for (uint32_t k = 0; k < s.slots.size(); ++k) QueueSlotLocked(j, i, k, 0);
    StageEventLocked(j, i);
  }

  // One attempt of a gang: a task per slot, placed together through one queue
  // entry (kGang), with the attempt's rendezvous key in every member's spec.
  void QueueGangLocked(Job* j, int i, int64_t delay_ms) {
    StageRun& s = j->stages[static_cast<size_t>(i)];
    auto g = std::make_unique<TaskRec>();
    g->handle = ++task_seq_;
    g->kind = TaskKind::kGang;
    g->job = j->id;
    g->stage = i;
    for (uint32_t k = 0; k < s.slots.size(); ++k) {
      s.slots[k].attempt = s.gang_gen;
      g->members.push_back(QueueSlotLocked(j, i, k, 0, /*enqueue=*/false));
    }
    g->req = tasks_[g->members[0]]->req;
    g->req.id = std::to_string(g->handle);
    g->req.count = static_cast<uint32_t>(g->members.size());
    g->not_before_us = delay_ms > 0 ? MonoUs() + delay_ms * 1000 : 0;
    queue_.push_back(g->handle);
    tasks_[g->handle] = std::move(g);
    dirty_ = true;
  }

  // A rank of a gang failed or lost its node. The other ranks cannot go on
  // without it (their collectives would wait for it), so all of them stop and
  // the gang starts again, from the stage's last checkpoint when there is one.
  void RestartGangLocked(Job* j, int i, const std::string& what, bool retryable, bool loss, bool counted = true) {
    StageRun& s = j->stages[static_cast<size_t>(i)];
    const auto& node = *s.node;
    uint32_t& count = loss ? s.gang_losses : s.gang_failures;
    if (counted) count++;
    uint32_t max = loss ? opt_.max_node_losses : node.retry().max_retries();
    if (!retryable || count > max) {
      return FailStageLocked(j, i, what + (count > 1 ? " (" + std::to_string(count) + " gang attempts)" : ""));
    }
    CancelStageTasksLocked(j, i);  // the other ranks; their results come back stale
    for (auto& sl : s.slots) sl.done = false;
    s.done = 0;
    s.gang_gen++;
    int64_t delay = 0;
    if (!loss && node.retry().backoff_ms() > 0)
      delay = std::min<int64_t>(node.retry().backoff_ms() << std::min<uint32_t>(count - 1, 16), 60000);
    Event(j, what + "; restarting all " + std::to_string(s.slots.size()) + " ranks" +
                 (s.ckpt_epoch > 0 ? " from the checkpoint of epoch " + std::to_string(s.ckpt_epoch) : " from the start") +
                 (delay ? " in " + std::to_string(delay) + " ms" : ""));
    QueueGangLocked(j, i, delay);
    StageEventLocked(j, i);
  }

  uint64_t QueueSlotLocked(Job* j, int i, uint32_t k, int64_t delay_ms, bool enqueue = true) {
    StageRun& s = j->stages[static_cast<size_t>(i)];
    Slot& slot = s.slots[k];
    const auto& node = *s.node;
    auto t = std::make_unique<TaskRec>();
    t->handle = ++task_seq_;
    t->kind = TaskKind::kJob;
    t->job = j->id;
    t->stage = i;
    t->slot = k;
    auto& spec = t->spec;
    // Unique across resumes and head restarts: workers drop task ids they have seen.
    spec.set_task_id(j->id + "/" + node.name() + "/" + std::to_string(k) + "." + std::to_string(slot.attempt) + "#" +
                     incarnation_ + std::to_string(t->handle));
    spec.set_job_id(j->id);
    spec.set_stage(node.name());
    spec.set_index(k);
    spec.set_count(static_cast<uint32_t>(s.slots.size()));
    spec.set_attempt(slot.attempt);
    spec.set_plan_id(j->id);
    spec.set_node_index(static_cast<uint32_t>(i));
    spec.set_timeout_ms(node.timeout_ms());
    if (s.gang) spec.set_gang(j->id + "/" + node.name() + "/" + std::to_string(s.gang_gen));
    for (const auto& port : s.ports) spec.add_output_ids(ObjectId(j, i, port, k));
    v1::Resources res;
    const plan::v1::Role* role = node.roles_size() ? &node.roles(0) : nullptr;
    if (role) res = FromPlan(role->resources());
    *spec.mutable_resources() = res;
    t->req.id = std::to_string(t->handle);
    t->req.per_task = ToSched(res);
    t->req.stage = node.name();  // the failure message adds the location in front
    if (role && role->resources().has_placement()) {
      const auto& pl = role->resources().placement();
      t->req.strategy = pl.strategy() == plan::v1::Placement::SPREAD ? sched::Strategy::kSpread : sched::Strategy::kPack;
      for (const auto& l : pl.labels())
        if (l.value().has_string_value()) t->req.labels[l.name()] = l.value().string_value();
    }
    t->not_before_us = delay_ms > 0 ? MonoUs() + delay_ms * 1000 : 0;
    slot.task_id = spec.task_id();
    uint64_t h = t->handle;
    if (enqueue) queue_.push_back(h);
    tasks_[h] = std::move(t);
    dirty_ = true;
    return h;
  }

  // Fills a job task's inputs with the current locations of its upstream
  // objects; false when one of them is on no live node (lineage is rebuilding it).
  bool FillInputsLocked(TaskRec* t) {
    Job* j = FindJobLocked(t->job);
    if (!j) return false;
    const auto& node = j->plan.nodes(t->stage);
    t->spec.clear_inputs();
    for (const auto& in : node.inputs()) {
      auto it = j->index.find(in.from().stage());
      if (it == j->index.end()) continue;
      const StageRun& up = j->stages[static_cast<size_t>(it->second)];
      std::string port = in.from().output();
      if (port.empty() && !up.ports.empty()) port = up.ports[0];
      auto* ref = t->spec.add_inputs();
      ref->set_field(in.name());
      ref->set_stage(in.from().stage());
      ref->set_output(port);
      // A gang's rank gets only its own shards (r, r + N, ...) when there are
      // at least as many as ranks; they are all it reads.
      const StageRun& me = j->stages[static_cast<size_t>(t->stage)];
      uint32_t world = static_cast<uint32_t>(me.slots.size());
      bool own_shards = me.gang && up.slots.size() >= world;
      if (own_shards) ref->set_total_shards(static_cast<uint32_t>(up.slots.size()));
      for (uint32_t k = 0; k < up.slots.size(); ++k) {
        if (own_shards && k % world != t->slot) continue;
        if (own_shards) ref->add_shard_index(k);
        std::string id = ObjectId(j, it->second, port, k);
        auto o = objs_.find(id);
        if (o == objs_.end() || o->second.locations.empty()) return false;
        auto* sh = ref->add_shards();
        sh->set_id(id);
        sh->set_size(o->second.size);
        for (const auto& loc : o->second.locations) {
          auto* l = sh->add_locations();
          l->set_node_id(loc);
          l->set_address(loc == kHeadNode ? address_ : nodes_[loc].info.address());
        }
      }
    }
    // A restarted stage gets its last checkpoint (held by the head, so it outlives any node).
    const StageRun& s = j->stages[static_cast<size_t>(t->stage)];
    auto c = s.ckpt_id.empty() ? objs_.end() : objs_.find(s.ckpt_id);
    if (c != objs_.end() && c->second.locations.count(kHeadNode)) {
      auto* ref = t->spec.add_inputs();
      ref->set_field(ops::kCheckpointField);
      ref->set_stage(s.node->name());
      auto* sh = ref->add_shards();
      sh->set_id(s.ckpt_id);
      sh->set_size(c->second.size);
      auto* l = sh->add_locations();
      l->set_node_id(kHeadNode);
      l->set_address(address_);
    }
    return true;
  }

  // The metadata row of a slot's current attempt.
  static state::TaskRow AttemptRow(const Job* j, const StageRun& s, uint32_t slot, const std::string& node_id) {
    state::TaskRow row;
    row.run_id = j->id;
    row.stage = s.node->name();
    row.task_index = static_cast<int>(slot);
    row.attempt = static_cast<int>(s.slots[slot].attempt);
    row.node_id = node_id;
    return row;
  }

  void OnJobResultLocked(TaskRec* t, const v1::TaskResult& r, const std::string& node_id,
                         std::vector<state::TaskRow>* rows) {
    Job* j = FindJobLocked(t->job);
    if (!j) return;
    StageRun& s = j->stages[static_cast<size_t>(t->stage)];
    Slot& slot = s.slots[t->slot];
    if (slot.task_id != t->spec.task_id()) return;  // a stale attempt
    state::TaskRow row = AttemptRow(j, s, t->slot, node_id);
    row.started_ms = r.started_ms();
    row.finished_ms = r.finished_ms() ? r.finished_ms() : NowMs();
    row.error = r.error();
    s.attempts++;
    if (j->status != "running" || j->cancelled) {
      row.status = "cancelled";
      rows->push_back(row);
      return;
    }
    switch (r.status()) {
      case v1::TaskResult::OK: {
        row.status = "succeeded";
        rows->push_back(row);
        if (static_cast<int>(r.outputs_size()) != t->spec.output_ids_size()) break;
        for (const auto& o : r.outputs()) {
          ObjInfo& info = objs_[o.id()];
          info.size = o.size();
          info.locations.insert(node_id);
          info.job = j->id;
          info.stage = t->stage;
          info.slot = t->slot;
        }
        slot.done = true;
        slot.node = node_id;
        slot.finished_ms = row.finished_ms;
        s.nodes.insert(node_id);
        s.done++;
        if (s.done == s.slots.size()) {
          s.computed = true;
          s.status = "succeeded";
          s.finished_ms = NowMs();
          if (s.cacheable && !s.persisted && !s.persisting) {
            s.persisting = true;
            persist_queue_.push_back({j->id, t->stage});
            persist_cv_.notify_all();
          }
        }
        StageEventLocked(j, t->stage);
        AdvanceLocked(j);
        return;
      }
      case v1::TaskResult::INPUT_LOST: {
        row.status = "lost";
        row.reason = "lineage";
        rows->push_back(row);
        auto o = objs_.find(r.lost_object());
        if (o != objs_.end()) {
          for (auto it = o->second.locations.begin(); it != o->second.locations.end();) {
            auto n = nodes_.find(*it);
            if (*it != kHeadNode && (n == nodes_.end() || !n->second.alive)) it = o->second.locations.erase(it);
            else ++it;
          }
          if (o->second.locations.empty()) RebuildLocked(r.lost_object());
        }
        if (s.gang) {
          // An input to fetch again is no fault of the gang's: not counted.
          RestartGangLocked(j, t->stage, Where(*s.node) + ": " + StageLabel(*s.node) + ": rank " +
                                             std::to_string(t->slot) + " lost an input",
                            true, true, /*counted=*/false);
          return;
        }
        slot.attempt++;
        QueueSlotLocked(j, t->stage, t->slot, 0);
        return;
      }
      case v1::TaskResult::CANCELLED:
        row.status = "cancelled";
        rows->push_back(row);
        return;
      default: break;
    }
    // The task's own failure: FAILED, CRASHED, TIMED_OUT, REJECTED.
    row.status = "failed";
    row.reason = "task_error";
    rows->push_back(row);
    slot.failures++;
    s.failures++;
    const auto& node = *s.node;
    uint32_t max = node.retry().max_retries();
    if (s.gang) {
      return RestartGangLocked(j, t->stage,
                               Where(node) + ": " + StageLabel(node) + ": rank " + std::to_string(t->slot) +
                                   " (gang attempt " + std::to_string(s.gang_gen + 1) + ") failed: " + r.error(),
                               r.retryable(), false);
    }
    std::string what = Where(node) + ": " + StageLabel(node) + ": task " + std::to_string(t->slot) + " attempt " +
                       std::to_string(slot.attempt + 1) + " failed: " + r.error();
    if (r.retryable() && slot.failures <= max) {
      int64_t backoff = node.retry().backoff_ms();
      int64_t delay = backoff > 0 ? std::min<int64_t>(backoff << std::min<uint32_t>(slot.failures - 1, 16), 60000) : 0;
      Event(j, what + "; retrying" + (delay ? " in " + std::to_string(delay) + " ms" : ""));
      slot.attempt++;
      QueueSlotLocked(j, t->stage, t->slot, delay);
      StageEventLocked(j, t->stage);
      return;
    }
    FailStageLocked(j, t->stage,
                    what + (slot.failures > 1 ? " (" + std::to_string(slot.failures) + " attempts)" : ""));
  }

  void FailStageLocked(Job* j, int i, const std::string& error) {
    StageRun& s = j->stages[static_cast<size_t>(i)];
    s.status = "failed";
    s.error = error;
    s.finished_ms = NowMs();
    Event(j, error);
    StageEventLocked(j, i);
    CancelStageTasksLocked(j, i);
    if (s.node->on_failure() == plan::v1::STOP) {
      j->error = error;
      for (size_t k = 0; k < j->stages.size(); ++k) {
        StageRun& o = j->stages[k];
        if (o.status == "pending" || o.status == "running") {
          o.status = "cancelled";
          CancelStageTasksLocked(j, static_cast<int>(k));
          StageEventLocked(j, static_cast<int>(k));
        }
        if (o.persisting) o.persisting = false, o.persisted = true;
      }
    } else if (j->error.empty()) {
      j->error = error;
    }
    AdvanceLocked(j);
  }

  void CancelStageTasksLocked(Job* j, int i) {
    for (auto it = queue_.begin(); it != queue_.end();) {
      TaskRec* t = FindTaskLocked(*it);
      if (t && (t->kind == TaskKind::kJob || t->kind == TaskKind::kGang) && t->job == j->id && t->stage == i) {
        for (uint64_t m : t->members) tasks_.erase(m);
        tasks_.erase(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [h, t] : tasks_) {
      if (t->kind == TaskKind::kJob && t->job == j->id && t->stage == i && t->assigned) {
        auto n = nodes_.find(t->node);
        if (n != nodes_.end() && n->second.conn) SendLocked(n->second, [&](v1::ToWorker* m) {
            m->add_cancel_tasks(t->spec.task_id());
          });
      }
    }
  }

  // An object lives nowhere any more: run its producer again (lineage).
  void RebuildLocked(const std::string& object_id) {
    auto o = objs_.find(object_id);
    if (o == objs_.end()) return;
    Job* j = FindJobLocked(o->second.job);
    if (!j || j->status != "running" || j->cancelled) return;
    StageRun& s = j->stages[static_cast<size_t>(o->second.stage)];
    Slot& slot = s.slots[o->second.slot];
    if (!slot.done) return;  // already being rebuilt
    slot.done = false;
    s.done--;
    if (s.computed && !s.persisted) {
      s.computed = false;
      s.status = "running";
    } else if (s.persisted) {
      return;  // the head holds a copy
    }
    slot.losses++;
    s.losses++;
    if (s.gang) {  // one rank cannot run alone: the whole gang runs again (its outputs are rewritten)
      s.gang_gen++;
      for (auto& sl : s.slots) sl.done = false;
      s.done = 0;
      s.computed = false;
      s.status = "running";
      Event(j, Where(*s.node) + ": " + StageLabel(*s.node) + ": running the gang again for output " +
                   std::to_string(o->second.slot) + " (its node is gone)");
      QueueGangLocked(j, o->second.stage, 0);
      StageEventLocked(j, o->second.stage);
      return;
    }
    slot.attempt++;
    Event(j, Where(*s.node) + ": " + StageLabel(*s.node) + ": rebuilding shard " + std::to_string(o->second.slot) +
                 " from lineage (its node is gone)");
    QueueSlotLocked(j, o->second.stage, o->second.slot, 0);
    StageEventLocked(j, o->second.stage);
  }

  void FinishJobLocked(Job* j) {
    if (j->status != "running") return;
    bool ok = true;
    for (auto& s : j->stages)
      if (s.status != "succeeded" && s.status != "cached") ok = false;
    j->status = j->cancelled ? "cancelled" : ok ? "succeeded" : "failed";
    j->exit_code = j->cancelled ? 130 : ok ? 0 : 1;
    j->finished_ms = NowMs();
    j->kv.clear();  // the gangs' rendezvous keys are of no use once the job is over
    j->kv_bytes = 0;
    v1::JobEvent e;
    auto* d = e.mutable_done();
    d->set_status(j->status);
    d->set_exit_code(j->exit_code);
    d->set_error(j->error);
    PushEventLocked(j, std::move(e));
    db_writes_.push_back([this, id = j->id, st = j->status, code = j->exit_code, err = j->error, fin = j->finished_ms] {
      state::RunStatus rs = st == "succeeded"   ? state::RunStatus::kSucceeded
                            : st == "cancelled" ? state::RunStatus::kCancelled
                                                : state::RunStatus::kFailed;
      db_->FinishRun(id, rs, code, err, fin);
    });
    // Free the job's objects on the workers; the head keeps persisted copies on disk.
    std::map<std::string, std::vector<std::string>> frees;
    for (auto it = objs_.begin(); it != objs_.end();) {
      if (it->second.job == j->id) {
        for (const auto& n : it->second.locations)
          if (n != kHeadNode) frees[n].push_back(it->first);
        store_->Delete(it->first);
        it = objs_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [n, ids] : frees) {
      auto it = nodes_.find(n);
      if (it != nodes_.end() && it->second.alive)
        SendLocked(it->second, [&](v1::ToWorker* m) {
          for (auto& id : ids) m->add_free_objects(id);
        });
    }
    j->cv.notify_all();
  }

  bool CancelJobImpl(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    Job* j = FindJobLocked(id);
    if (!j) return false;
    if (j->status != "running" || j->cancelled) return true;
    j->cancelled = true;
    for (size_t k = 0; k < j->stages.size(); ++k) {
      StageRun& s = j->stages[k];
      CancelStageTasksLocked(j, static_cast<int>(k));
      if (s.status == "pending" || s.status == "running") {
        s.status = "cancelled";
        StageEventLocked(j, static_cast<int>(k));
      }
      if (s.persisting || !s.persisted) s.persisted = true;
    }
    Event(j, "cancelled");
    FinishJobLocked(j);
    FlushDbLocked();
    return true;
  }

  Job* FindJobLocked(const std::string& id) {
    auto it = jobs_.find(id);
    return it == jobs_.end() ? nullptr : it->second.get();
  }
  TaskRec* FindTaskLocked(uint64_t h) {
    auto it = tasks_.find(h);
    return it == tasks_.end() ? nullptr : it->second.get();
  }

  // ----------------------------------------------------------------------------------------------
  // Events
  // ----------------------------------------------------------------------------------------------

  void PushEventLocked(Job* j, v1::JobEvent e) {
    e.set_seq(j->events.size() + 1);
    e.set_ts_ms(NowMs());
    e.set_job_id(j->id);
    j->events.push_back(std::move(e));
    j->cv.notify_all();
  }

  void Event(Job* j, const std::string& message) {
    v1::JobEvent e;
    e.set_message(message);
    PushEventLocked(j, std::move(e));
  }

  void FillStageLocked(const Job* j, int i, v1::StageState* st) {
    const StageRun& s = j->stages[static_cast<size_t>(i)];
    st->set_stage(s.node->name());
    st->set_status(s.status);
    st->set_tasks_total(static_cast<uint32_t>(s.slots.size()));
    st->set_tasks_done(s.done);
    st->set_attempts(s.attempts);
    st->set_failures(s.failures);
    st->set_node_losses(s.losses);
    st->set_error(s.error);
    if (s.status == "running") st->set_progress(s.progress);
    st->set_checkpoint_epoch(s.ckpt_epoch);
    for (const auto& n : s.nodes) st->add_nodes(n);
    st->set_started_ms(s.started_ms);
    st->set_finished_ms(s.finished_ms);
    st->set_outputs_json(s.outputs_json);
    st->set_cached_from_run(s.cached_from);
    st->set_source(Where(*s.node));
  }

  void StageEventLocked(Job* j, int i) {
    v1::JobEvent e;
    FillStageLocked(j, i, e.mutable_stage());
    PushEventLocked(j, std::move(e));
    const StageRun& s = j->stages[static_cast<size_t>(i)];
    state::StageRow row;
    row.run_id = j->id;
    row.stage = s.node->name();
    row.content_hash = s.node->content_hash();
    state::Parse(s.status, &row.status);
    row.started_ms = s.started_ms;
    row.finished_ms = s.finished_ms;
    row.attempts = static_cast<int>(s.attempts);
    row.tasks_total = static_cast<int>(s.slots.size());
    row.tasks_done = static_cast<int>(s.done);
    row.error = s.error;
    row.outputs_json = s.outputs_json;
    row.cached_from_run = s.cached_from;
    // Only what a later `--resume` or `mlpc runs` needs is written: a stage
    // counts as finished once its outputs are on disk.
    if ((s.status == "succeeded" && !s.persisted && s.cacheable)) row.status = state::StageStatus::kRunning;
    db_writes_.push_back([this, row] { db_->UpsertStage(row); });
  }

  void WatchJobImpl(const std::string& id, uint64_t after, const std::function<bool(const v1::JobEvent&)>& fn,
                    const std::function<bool()>& stop = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    Job* j = FindJobLocked(id);
    if (!j) return;
    uint64_t next = after;
    while (true) {
      j->cv.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return stopped_ || j->events.size() > next; });
      if (stop && stop()) return;
      while (j->events.size() > next) {
        v1::JobEvent e = j->events[next++];
        lock.unlock();
        bool more = fn(e);
        lock.lock();
        if (!more || e.has_done()) return;
      }
      if (stopped_) return;
    }
  }

  bool GetJobImpl(const std::string& id, v1::JobReport* r) {
    std::lock_guard<std::mutex> lock(mu_);
    Job* j = FindJobLocked(id);
    if (!j) return false;
    r->set_job_id(j->id);
    r->set_pipeline(j->plan.pipeline());
    r->set_status(j->status);
    r->set_started_ms(j->started_ms);
    r->set_finished_ms(j->finished_ms);
    r->set_error(j->error);
    for (size_t i = 0; i < j->stages.size(); ++i) FillStageLocked(j, static_cast<int>(i), r->add_stages());
    return true;
  }

  v1::ClusterStatusReply ClusterStatusImpl() {
    std::lock_guard<std::mutex> lock(mu_);
    v1::ClusterStatusReply r;
    for (const auto& [id, n] : nodes_) {
      auto* o = r.add_nodes();
      *o->mutable_node() = n.info;
      auto* a = o->mutable_available();
      a->set_cpu_milli(std::max<int64_t>(0, n.available.cpu_milli));
      a->set_gpu_milli(std::max<int64_t>(0, n.available.gpu_milli));
      a->set_memory_bytes(std::max<int64_t>(0, n.available.memory_bytes));
      for (const auto& [k, v] : n.available.custom_milli) (*a->mutable_custom_milli())[k] = std::max<int64_t>(0, v);
      o->set_alive(n.alive);
      o->set_running_tasks(n.outstanding);
      o->set_objects(n.objects);
      o->set_object_bytes(n.object_bytes);
      o->set_last_heartbeat_ms(NowMs() - (MonoUs() - n.last_hb_us) / 1000);
    }
    for (const auto& [id, j] : jobs_) {
      auto* s = r.add_jobs();
      s->set_job_id(id);
      s->set_pipeline(j->plan.pipeline());
      s->set_status(j->status);
      s->set_started_ms(j->started_ms);
    }
    // Runs this head did not start (before a restart) come from the store.
    for (const auto& run : db_->ListRuns(50)) {
      if (jobs_.count(run.run_id)) continue;
      auto* s = r.add_jobs();
      s->set_job_id(run.run_id);
      s->set_pipeline(run.pipeline);
      s->set_status(std::string(state::Name(run.status)));
      s->set_started_ms(run.started_ms);
    }
    return r;
  }

  size_t AliveNodes() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& [id, ns] : nodes_) n += ns.alive;
    return n;
  }

  // ----------------------------------------------------------------------------------------------
  // Persistence of stage outputs (the cache), off the scheduling path
  // ----------------------------------------------------------------------------------------------

  static constexpr uint64_t kTextOutputBytes = 1 << 20;  // outputs up to this size also as CSV/JSON

  // Copies the oldest noted checkpoint into the head's store and the run
  // directory (checkpoints/STAGE/epoch-N.ckpt, latest.json), keeping the
  // newest `checkpoint.keep` files; then restarts of the stage use it.
  void PersistCheckpoint(std::unique_lock<std::mutex>& lock) {
    CkptItem c = ckpt_queue_.front();
    ckpt_queue_.pop_front();
    Job* j = FindJobLocked(c.job);
    auto o = objs_.find(c.id);
    if (!j || o == objs_.end() || o->second.locations.empty()) return;
    StageRun& s = j->stages[static_cast<size_t>(c.stage)];
    std::string address;
    bool at_head = o->second.locations.count(kHeadNode) > 0;
    if (!at_head) address = nodes_[*o->second.locations.begin()].info.address();
    uint64_t size = o->second.size;
    fs::path dir = j->dir / "checkpoints" / s.node->name();
    std::string hash = s.node->content_hash();
    int64_t keep = 2;
    if (const auto* v = ops::Field(*s.node, "checkpoint"); v && v->has_map())
      for (const auto& e : v->map().entries())
        if (e.name() == "keep" && e.value().has_int_value()) keep = std::max<int64_t>(1, e.value().int_value());
    lock.unlock();
    std::string error;
    bool ok = at_head || store_->Contains(c.id) || objects_.Pull(address, c.id, size, store_.get(), &error);
    auto buf = ok ? store_->Get(c.id, &error) : nullptr;
    std::error_code ec;
    fs::create_directories(dir, ec);
    std::string file = "epoch-" + std::to_string(c.epoch) + ".ckpt";
    if (buf) {
      std::ofstream out(dir / file, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(buf->data()), static_cast<std::streamsize>(buf->size()));
      ok = static_cast<bool>(out);
      if (!ok) error = "cannot write " + (dir / file).string();
    } else {
      ok = false;
    }
    if (ok) {
      nlohmann::json meta = {{"epoch", c.epoch}, {"file", file}, {"content_hash", hash}, {"size", size}};
      std::ofstream(dir / "latest.json.tmp", std::ios::trunc) << meta.dump() << "\n";
      fs::rename(dir / "latest.json.tmp", dir / "latest.json", ec);
      // Older files beyond `keep`.
      std::vector<std::pair<int64_t, fs::path>> files;
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string name = e.path().filename().string();
        if (name.rfind("epoch-", 0) == 0 && e.path().extension() == ".ckpt")
          files.emplace_back(std::strtoll(name.c_str() + 6, nullptr, 10), e.path());
      }
      std::sort(files.begin(), files.end());
      for (size_t i = 0; i + static_cast<size_t>(keep) < files.size(); ++i) fs::remove(files[i].second, ec);
    }
    lock.lock();
    j = FindJobLocked(c.job);
    if (!j) return;
    StageRun& st = j->stages[static_cast<size_t>(c.stage)];
    if (!ok) {
      Event(j, StageLabel(*st.node) + ": could not keep the checkpoint of epoch " + std::to_string(c.epoch) + ": " + error);
      return;
    }
    auto oi = objs_.find(c.id);
    if (oi == objs_.end()) return;
    oi->second.locations.insert(kHeadNode);
    if (c.epoch <= st.ckpt_epoch) return;
    if (!st.ckpt_id.empty()) {  // the previous checkpoint is no longer needed anywhere
      auto old = objs_.find(st.ckpt_id);
      if (old != objs_.end()) {
        for (const auto& n : old->second.locations) {
          auto nit = nodes_.find(n);
          if (n != kHeadNode && nit != nodes_.end() && nit->second.alive)
            SendLocked(nit->second, [&](v1::ToWorker* m) { m->add_free_objects(old->first); });
        }
        objs_.erase(old);
      }
      store_->Delete(st.ckpt_id);
    }
    st.ckpt_id = c.id;
    st.ckpt_epoch = c.epoch;
    if (st.status == "running") StageEventLocked(j, c.stage);
  }

  void PersistLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopped_) {
      persist_cv_.wait(lock, [&] { return stopped_ || !persist_queue_.empty() || !ckpt_queue_.empty(); });
      if (stopped_) break;
      if (!ckpt_queue_.empty()) {
        PersistCheckpoint(lock);
        continue;
      }
      auto [job_id, stage] = persist_queue_.front();
      persist_queue_.pop_front();
      Job* j = FindJobLocked(job_id);
      if (!j || !j->stages[static_cast<size_t>(stage)].persisting) continue;
      StageRun& s = j->stages[static_cast<size_t>(stage)];
      // Where each object is now.
      struct Item { std::string id, path, address; uint64_t size; bool at_head; };
      std::vector<Item> items;
      bool missing = false;
      fs::path dir = j->dir / "outputs" / s.node->name();
      for (const auto& port : s.ports) {
        for (uint32_t k = 0; k < s.slots.size(); ++k) {
          std::string id = ObjectId(j, stage, port, k);
          auto o = objs_.find(id);
          if (o == objs_.end() || o->second.locations.empty()) {
            missing = true;
            continue;
          }
          Item it{id, (dir / port / (std::to_string(k) + ".bin")).string(), "", o->second.size, false};
          it.at_head = o->second.locations.count(kHeadNode) > 0;
          if (!it.at_head) it.address = nodes_[*o->second.locations.begin()].info.address();
          items.push_back(std::move(it));
        }
      }
      if (missing) {
        s.persisting = false;  // lineage re-runs the task; persisting starts again when it is done
        continue;
      }
      std::string plan_hash = s.node->content_hash();
      lock.unlock();
      bool ok = true;
      std::string error;
      nlohmann::json objects = nlohmann::json::object();
      std::vector<std::string> ids_ok;
      for (const auto& it : items) {
        std::error_code ec;
        fs::create_directories(fs::path(it.path).parent_path(), ec);
        if (!it.at_head && !store_->Contains(it.id) && !objects_.Pull(it.address, it.id, it.size, store_.get(), &error)) {
          ok = false;
          break;
        }
        auto buf = store_->Get(it.id, &error);
        if (!buf) {
          ok = false;
          break;
        }
        std::ofstream out(it.path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(buf->data()), static_cast<std::streamsize>(buf->size()));
        if (!out) {
          ok = false;
          error = "cannot write " + it.path;
          break;
        }
        ids_ok.push_back(it.id);
      }
      nlohmann::json doc;
      if (ok) {
        // Small scalar tables (a train stage's metrics) also as CSV and JSON beside the objects.
        for (size_t p = 0; p < s.ports.size(); ++p) {
          size_t first = p * s.slots.size(), last = std::min(items.size(), first + s.slots.size());
          uint64_t bytes = 0;
          for (size_t i = first; i < last; ++i) bytes += items[i].size;
          if (bytes > kTextOutputBytes) continue;
          std::vector<std::string> shards;
          for (size_t i = first; i < last; ++i) {
            auto buf = store_->Get(items[i].id);
            shards.push_back(buf ? std::string(buf->view()) : std::string());
          }
          std::string csv, json;
          if (TableAsText(shards, &csv, &json, kTextOutputBytes)) {
            std::ofstream(dir / (s.ports[p] + ".csv"), std::ios::trunc) << csv;
            std::ofstream(dir / (s.ports[p] + ".json"), std::ios::trunc) << json;
          }
        }
        for (const auto& port : s.ports) {
          nlohmann::json files = nlohmann::json::array();
          for (uint32_t k = 0; k < s.slots.size(); ++k)
            files.push_back((fs::path("runs") / job_id / "outputs" / s.node->name() / port /
                             (std::to_string(k) + ".bin")).string());
          objects[port] = files;
        }
        doc["objects"] = objects;
        doc["preview"] = PreviewOutputs(items, s.ports, s.slots.size());
      }
      lock.lock();
      j = FindJobLocked(job_id);
      if (!j) continue;
      StageRun& s2 = j->stages[static_cast<size_t>(stage)];
      s2.persisting = false;
      if (!ok) {
        Event(j, "cannot store the outputs of " + StageLabel(*s2.node) + ": " + error);
        // Objects whose node went away are rebuilt by lineage, which persists again.
        continue;
      }
      for (const auto& id : ids_ok) {
        auto o = objs_.find(id);
        if (o != objs_.end()) o->second.locations.insert(kHeadNode);
      }
      s2.persisted = true;
      s2.outputs_json = doc.dump();
      state::CacheEntry ce;
      ce.content_hash = plan_hash;
      ce.run_id = j->id;
      ce.stage = s2.node->name();
      ce.outputs_json = s2.outputs_json;
      ce.finished_ms = NowMs();
      if (s2.cacheable) db_writes_.push_back([this, ce] { db_->PutCache(ce); });
      StageEventLocked(j, stage);
      AdvanceLocked(j);
      FlushDbLocked();
    }
  }

  template <class ItemT>
  nlohmann::json PreviewOutputs(const std::vector<ItemT>& items, const std::vector<std::string>& ports, size_t slots) {
    nlohmann::json preview = nlohmann::json::object();
    size_t i = 0;
    for (const auto& port : ports) {
      std::vector<std::string> shards;
      for (size_t k = 0; k < slots && i < items.size(); ++k, ++i) {
        auto buf = store_->Get(items[i].id);
        shards.push_back(buf ? std::string(buf->view()) : std::string());
      }
      preview[port] = PreviewTable(shards);
    }
    return preview;
  }

  // Database writes collected under the lock and run after it.
  void FlushDbLocked() {
    if (db_writes_.empty()) return;
    std::vector<std::function<void()>> w;
    w.swap(db_writes_);
    for (auto& f : w) f();
  }

  // ----------------------------------------------------------------------------------------------
  // Client API
  // ----------------------------------------------------------------------------------------------

  uint64_t SubmitTaskImpl(TaskCall call, TaskDone done) {
    std::unique_lock<std::mutex> lock(mu_);
    auto t = std::make_unique<TaskRec>();
    t->handle = ++task_seq_;
    t->kind = TaskKind::kCall;
    t->spec.set_task_id("c" + incarnation_ + std::to_string(t->handle));
    t->spec.set_count(1);
    t->spec.set_function(call.function);
    t->spec.set_args(std::move(call.args));
    *t->spec.mutable_resources() = call.resources;
    t->req.id = std::to_string(t->handle);
    t->req.per_task = ToSched(call.resources);
    t->req.stage = "task " + call.function;
    t->done = std::move(done);
    t->deps = call.deps;
    uint64_t h = t->handle;
    for (uint64_t d : call.deps) {
      TaskRec* dt = FindTaskLocked(d);
      if (dt && !dt->finished) {
        dt->dependents.push_back(h);
        t->pending_deps++;
      }
    }
    bool ready = t->pending_deps == 0;
    if (ready) AppendDepValuesLocked(t.get());
    tasks_[h] = std::move(t);
    if (ready) {
      queue_.push_back(h);
      // Schedule and send on the caller's thread: a synchronous caller saves two thread hops.
      std::vector<std::function<void()>> after;
      inline_flush_ = true;
      ScheduleLocked(&after);
      auto flush = TakeFlushLocked();
      lock.unlock();
      FlushInline(flush);
      for (auto& f : after) f();
    }
    return h;
  }

  void AppendDepValuesLocked(TaskRec* t) {
    for (uint64_t d : t->deps) {
      TaskRec* dt = FindTaskLocked(d);
      if (dt) t->spec.mutable_args()->append(dt->value);
    }
  }

  void OnCallResultLocked(TaskRec* t, const v1::TaskResult& r, std::vector<std::function<void()>>* after) {
    if (r.status() == v1::TaskResult::CRASHED && t->spec.attempt() < 3) {
      // Client-API tasks retry a crash like Ray's default max_retries.
      t->spec.set_attempt(t->spec.attempt() + 1);
      t->spec.set_task_id("c" + incarnation_ + std::to_string(t->handle) + "." + std::to_string(t->spec.attempt()));
      t->assigned = false;
      queue_.push_back(t->handle);
      dirty_ = true;
      return;
    }
    t->finished = true;
    t->value = r.value();
    if (t->done) after->push_back([d = std::move(t->done), r] { d(r); });
    for (uint64_t h : t->dependents) {
      TaskRec* dt = FindTaskLocked(h);
      if (dt && --dt->pending_deps == 0) {
        AppendDepValuesLocked(dt);
        queue_.push_back(h);
        dirty_ = true;
      }
    }
    t->dependents.clear();
    // Keep the record while someone may still name it as a dependency.
    retired_.push_back(t->handle);
    while (retired_.size() > 4096) {
      tasks_.erase(retired_.front());
      retired_.pop_front();
    }
  }

  std::string CreateActorImpl(const std::string& cls, const std::string& args, const v1::Resources& res,
                              uint32_t max_restarts, ActorReady ready) {
    std::unique_lock<std::mutex> lock(mu_);
    std::string id = "a" + std::to_string(++actor_seq_);
    auto& a = actors_[id];
    a = std::make_unique<ActorRec>();
    a->id = id;
    a->class_name = cls;
    a->args = args;
    a->resources = res;
    a->max_restarts = max_restarts;
    a->on_ready = std::move(ready);
    QueueActorLocked(a.get());
    lock.unlock();
    cv_.notify_all();
    return id;
  }

  void QueueActorLocked(ActorRec* a) {
    auto t = std::make_unique<TaskRec>();
    t->handle = ++task_seq_;
    t->kind = TaskKind::kActor;
    t->actor_id = a->id;
    t->req.id = std::to_string(t->handle);
    t->req.per_task = ToSched(a->resources);
    t->req.stage = "actor " + a->class_name;
    a->task_handle = t->handle;
    queue_.push_back(t->handle);
    tasks_[t->handle] = std::move(t);
    dirty_ = true;
  }

  void CallActorImpl(const std::string& actor_id, const std::string& method, const std::string& args, CallDone done) {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = actors_.find(actor_id);
    if (it == actors_.end() || it->second->dead || !it->second->ready) {
      lock.unlock();
      v1::ActorCallResult r;
      r.set_error(it == actors_.end() ? "no actor " + actor_id : "actor " + actor_id + " is not running");
      done(r);
      return;
    }
    ActorRec* a = it->second.get();
    std::string call_id = std::to_string(++call_seq_);
    a->calls[call_id] = std::move(done);
    auto n = nodes_.find(a->node);
    inline_flush_ = true;
    SendLocked(n->second, [&](v1::ToWorker* m) {
      auto* c = m->add_actor_calls();
      c->set_call_id(call_id);
      c->set_actor_id(actor_id);
      c->set_method(method);
      c->set_args(args);
    });
    auto flush = TakeFlushLocked();
    lock.unlock();
    FlushInline(flush);
  }

  void KillActorImpl(const std::string& actor_id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = actors_.find(actor_id);
    if (it == actors_.end()) return;
    ActorRec* a = it->second.get();
    a->dead = true;
    a->max_restarts = 0;
    auto n = nodes_.find(a->node);
    if (n != nodes_.end() && n->second.alive)
      SendLocked(n->second, [&](v1::ToWorker* m) { m->add_kill_actors(actor_id); });
  }

  void OnActorEventLocked(const std::string& node_id, const v1::ActorEvent& ev,
                          std::vector<std::function<void()>>* after) {
    auto it = actors_.find(ev.actor_id());
    if (it == actors_.end()) return;
    ActorRec* a = it->second.get();
    if (a->node != node_id) return;
    if (ev.kind() == v1::ActorEvent::CREATED) {
      a->ready = true;
      if (a->on_ready) after->push_back([f = std::move(a->on_ready)] { f(true, ""); });
      a->on_ready = nullptr;
      return;
    }
    ActorDiedLocked(a, ev.error(), after);
  }

  void ActorDiedLocked(ActorRec* a, const std::string& error, std::vector<std::function<void()>>* after) {
    ReleaseLocked(a->node, ToSched(a->resources));
    for (auto& [cid, cb] : a->calls) {
      v1::ActorCallResult r;
      r.set_call_id(cid);
      r.set_error("actor " + a->id + " died: " + error);
      after->push_back([cb = std::move(cb), r] { cb(r); });
    }
    a->calls.clear();
    a->ready = false;
    a->node.clear();
    if (!a->dead && a->restarts < a->max_restarts) {
      a->restarts++;
      QueueActorLocked(a);
      return;
    }
    a->dead = true;
    if (a->on_ready) after->push_back([f = std::move(a->on_ready), error] { f(false, error); });
    a->on_ready = nullptr;
  }

  std::string CreateGroupImpl(uint32_t count, const v1::Resources& res, bool spread, GroupReady ready) {
    std::unique_lock<std::mutex> lock(mu_);
    auto t = std::make_unique<TaskRec>();
    t->handle = ++task_seq_;
    t->kind = TaskKind::kGroup;
    t->req.id = std::to_string(t->handle);
    t->req.per_task = ToSched(res);
    t->req.count = std::max<uint32_t>(1, count);
    t->req.strategy = spread ? sched::Strategy::kSpread : sched::Strategy::kPack;
    t->req.stage = "placement group";
    t->group_ready = std::move(ready);
    std::string id = "g" + std::to_string(t->handle);
    queue_.push_back(t->handle);
    tasks_[t->handle] = std::move(t);
    dirty_ = true;
    lock.unlock();
    cv_.notify_all();
    return id;
  }

  void RemoveGroupImpl(const std::string& id) {
    std::unique_lock<std::mutex> lock(mu_);
    if (id.size() < 2) return;
    uint64_t h = std::strtoull(id.c_str() + 1, nullptr, 10);
    TaskRec* t = FindTaskLocked(h);
    if (!t || t->kind != TaskKind::kGroup) return;
    if (t->assigned) {
      for (const auto& n : t->group_nodes) {
        ReleaseLocked(n, t->req.per_task);
        auto it = nodes_.find(n);
        if (it != nodes_.end() && it->second.alive)
          SendLocked(it->second, [&](v1::ToWorker* m) { *m->add_unreserve() = ToProto(t->req.per_task); });
      }
    }
    else
      queue_.erase(std::remove(queue_.begin(), queue_.end(), h), queue_.end());
    tasks_.erase(h);
    dirty_ = true;
    lock.unlock();
    cv_.notify_all();
  }

  // ----------------------------------------------------------------------------------------------
  // Scheduling and dispatch
  // ----------------------------------------------------------------------------------------------

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    int64_t last_check = 0;
    while (!stopped_) {
      cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stopped_ || dirty_; });
      if (stopped_) break;
      int64_t now = MonoUs();
      std::vector<std::function<void()>> after;
      if (now - last_check > 50000) {
        last_check = now;
        for (auto& [id, n] : nodes_) {
          if (n.alive && now - n.last_hb_us > int64_t{opt_.heartbeat_timeout_ms} * 1000)
            NodeLostLocked(id, "no heartbeat for " + std::to_string(opt_.heartbeat_timeout_ms) + " ms", &after);
        }
        dirty_ = true;  // delayed retries may be due
      }
      if (dirty_) {
        dirty_ = false;
        ScheduleLocked(&after);
      }
      FlushDbLocked();
      if (!after.empty()) {
        lock.unlock();
        for (auto& f : after) f();
        lock.lock();
      }
    }
  }

  void ScheduleLocked(std::vector<std::function<void()>>* after) {
    if (queue_.empty()) return;
    std::vector<sched::Node> view;
    view.reserve(nodes_.size());
    for (auto& [id, n] : nodes_) {
      if (!n.alive) continue;
      sched::Node v;
      v.id = id;
      v.total = n.total;
      v.available = n.available;
      // Pipelined tasks may take availability below zero; the scheduler sees none left.
      v.available.cpu_milli = std::max<int64_t>(0, v.available.cpu_milli);
      v.available.gpu_milli = std::max<int64_t>(0, v.available.gpu_milli);
      v.available.memory_bytes = std::max<int64_t>(0, v.available.memory_bytes);
      for (auto& [k, x] : v.available.custom_milli) x = std::max<int64_t>(0, x);
      for (const auto& [k, x] : n.info.labels()) v.labels[k] = x;
      view.push_back(std::move(v));
    }
    if (view.empty()) return;
    // Nothing can start or be pipelined anywhere: skip the pass (a result frees room and calls again).
    // `room`: how many tasks could still be pipelined onto the nodes.
    size_t room = 0;
    bool saturated = true;
    for (auto& [id, n] : nodes_) {
      if (!n.alive) continue;
      if (n.outstanding < PipelineCap(n)) room += PipelineCap(n) - n.outstanding;
      if (n.available.cpu_milli > 0 || n.outstanding < PipelineCap(n)) saturated = false;
    }
    if (saturated) return;
    int64_t now = MonoUs();
    // The window: requests taken from the front of the queue, at most as many
    // as could start or be pipelined now. Those not started go back to the
    // front in their order, so a pass costs O(window) however long the queue is.
    size_t limit = std::clamp<size_t>(room, 16, kWindow);
    std::vector<uint64_t> cands;
    while (!queue_.empty() && cands.size() < limit) {
      cands.push_back(queue_.front());
      queue_.pop_front();
    }
    std::vector<sched::Request> window;
    std::vector<uint64_t> handles;
    bool gang_waiting = false;
    for (uint64_t h : cands) {
      TaskRec* t = FindTaskLocked(h);
      if (!t) continue;
      if (t->not_before_us > now || (t->kind == TaskKind::kJob && !FillInputsLocked(t))) continue;
      if (t->kind == TaskKind::kGang) {
        bool ok = true;
        for (uint64_t m : t->members) {
          TaskRec* mt = FindTaskLocked(m);
          ok = ok && mt && FillInputsLocked(mt);
        }
        if (!ok) continue;
      }
      if (t->req.count > 1) gang_waiting = true;
      window.push_back(t->req);
      handles.push_back(h);
    }
    std::unordered_set<uint64_t> taken;
    auto requeue = [&] {
      for (auto it = cands.rbegin(); it != cands.rend(); ++it)
        if (!taken.count(*it) && tasks_.count(*it)) queue_.push_front(*it);
    };
    if (window.empty()) return requeue();
    sched::Decision d = sched::Schedule(view, window);
    std::unordered_map<std::string, uint64_t> by_id;
    for (size_t i = 0; i < window.size(); ++i) by_id[window[i].id] = handles[i];
    for (const auto& p : d.placed) {
      uint64_t h = by_id[p.request_id];
      taken.insert(h);
      AssignLocked(FindTaskLocked(h), p.node_ids, after);
    }
    for (const auto& inf : d.infeasible) {
      uint64_t h = by_id[inf.request_id];
      taken.insert(h);
      InfeasibleLocked(FindTaskLocked(h), inf.message, after);
    }
    // Pipelining: short client-API tasks may queue on a node beyond what it
    // runs now, so the next one starts without a round trip to the head.
    if (!gang_waiting) {
      for (const auto& w : d.waiting) {
        uint64_t h = by_id[w];
        TaskRec* t = FindTaskLocked(h);
        if (!t || t->kind != TaskKind::kCall) continue;
        NodeState* best = nullptr;
        std::string best_id;
        for (auto& [id, n] : nodes_) {
          if (!n.alive || !sched::Fits(t->req.per_task, n.total) || n.outstanding >= PipelineCap(n)) continue;
          if (!best || n.outstanding < best->outstanding) best = &n, best_id = id;
        }
        if (!best) break;
        taken.insert(h);
        AssignLocked(t, {best_id}, after);
      }
    }
    requeue();
  }

  uint32_t PipelineCap(const NodeState& n) const {
    return opt_.pipeline_depth * static_cast<uint32_t>(std::max<int64_t>(1, n.total.cpu_milli / 1000));
  }

  void AssignLocked(TaskRec* t, const std::vector<std::string>& node_ids, std::vector<std::function<void()>>* after) {
    if (!t || node_ids.empty()) return;
    t->assigned = true;
    if (t->kind == TaskKind::kGang) {
      for (size_t k = 0; k < t->members.size() && k < node_ids.size(); ++k) {
        TaskRec* m = FindTaskLocked(t->members[k]);
        if (!m) continue;
        m->spec.set_node_host(HostOf(nodes_[node_ids[k]].info.address()));
        AssignLocked(m, {node_ids[k]}, after);
      }
      tasks_.erase(t->handle);
      return;
    }
    if (t->kind == TaskKind::kGroup) {
      t->group_nodes = node_ids;
      for (const auto& n : node_ids) {
        nodes_[n].available = sched::Subtract(nodes_[n].available, t->req.per_task);
        SendLocked(nodes_[n], [&](v1::ToWorker* m) { *m->add_reserve() = ToProto(t->req.per_task); });
      }
      if (t->group_ready) after->push_back([f = std::move(t->group_ready)] { f(true, ""); });
      t->group_ready = nullptr;
      return;
    }
    NodeState& n = nodes_[node_ids[0]];
    t->node = node_ids[0];
    n.available = sched::Subtract(n.available, t->req.per_task);
    if (t->kind == TaskKind::kActor) {
      auto it = actors_.find(t->actor_id);
      uint64_t h = t->handle;
      if (it == actors_.end() || it->second->dead) {
        ReleaseLocked(t->node, t->req.per_task);
      } else {
        ActorRec* a = it->second.get();
        a->node = t->node;
        SendLocked(n, [&](v1::ToWorker* m) {
          auto* s = m->add_create_actors();
          s->set_actor_id(a->id);
          s->set_class_name(a->class_name);
          s->set_args(a->args);
          *s->mutable_resources() = a->resources;
        });
      }
      tasks_.erase(h);
      return;
    }
    n.outstanding++;
    if (t->kind == TaskKind::kJob) {
      Job* j = FindJobLocked(t->job);
      if (j) {
        Slot& slot = j->stages[static_cast<size_t>(t->stage)].slots[t->slot];
        slot.node = t->node;
        slot.started_ms = NowMs();
      }
    }
    running_[t->spec.task_id()] = t->handle;
    bool send_plan = t->kind == TaskKind::kJob && !n.plans.count(t->spec.plan_id());
    Job* j = send_plan ? FindJobLocked(t->job) : nullptr;
    if (send_plan) n.plans.insert(t->spec.plan_id());
    SendLocked(n, [&](v1::ToWorker* m) {
      if (j) {
        auto* lp = m->add_plans();
        lp->set_plan_id(j->id);
        lp->set_plan(j->plan_bytes);
      }
      *m->add_tasks() = t->spec;
    });
  }

  void InfeasibleLocked(TaskRec* t, const std::string& message, std::vector<std::function<void()>>* after) {
    if (!t) return;
    if (t->kind == TaskKind::kJob || t->kind == TaskKind::kGang) {
      Job* j = FindJobLocked(t->job);
      uint64_t h = t->handle;
      for (uint64_t m : t->members) tasks_.erase(m);
      if (j) FailStageLocked(j, t->stage, Where(*j->stages[static_cast<size_t>(t->stage)].node) + ": " + message);
      tasks_.erase(h);
    } else if (t->kind == TaskKind::kCall) {
      v1::TaskResult r;
      r.set_task_id(t->spec.task_id());
      r.set_status(v1::TaskResult::REJECTED);
      r.set_error(message);
      OnCallResultLocked(t, r, after);
    } else if (t->kind == TaskKind::kGroup) {
      if (t->group_ready) after->push_back([f = std::move(t->group_ready), message] { f(false, message); });
      tasks_.erase(t->handle);
    } else if (t->kind == TaskKind::kActor) {
      auto it = actors_.find(t->actor_id);
      if (it != actors_.end()) {
        it->second->dead = true;
        if (it->second->on_ready)
          after->push_back([f = std::move(it->second->on_ready), message] { f(false, message); });
      }
      tasks_.erase(t->handle);
    }
  }

  void ReleaseLocked(const std::string& node_id, const sched::ResourceSet& r) {
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return;
    it->second.available = sched::Add(it->second.available, r);
    dirty_ = true;
  }

  // Queues a message for a worker. On the hot paths (`inline_flush_`), the
  // caller writes it itself after releasing the head's lock (FlushInline);
  // elsewhere the connection's writer thread does.
  template <class F>
  void SendLocked(NodeState& n, F fill) {
    if (!n.conn) return;
    {
      std::lock_guard<std::mutex> l(n.conn->mu);
      fill(&n.conn->outbox);
      n.conn->has_out = true;
    }
    if (inline_flush_) {
      if (std::find(flush_.begin(), flush_.end(), n.conn) == flush_.end()) flush_.push_back(n.conn);
    } else {
      n.conn->cv.notify_one();
    }
  }

  // Takes the connections to flush; call FlushInline on them after unlocking.
  std::vector<std::shared_ptr<WorkerConn>> TakeFlushLocked() {
    inline_flush_ = false;
    std::vector<std::shared_ptr<WorkerConn>> f;
    f.swap(flush_);
    return f;
  }
  static void FlushInline(const std::vector<std::shared_ptr<WorkerConn>>& conns) {
    for (const auto& c : conns) c->TryFlush();
  }

  // ----------------------------------------------------------------------------------------------
  // Worker connections
  // ----------------------------------------------------------------------------------------------

  std::shared_ptr<WorkerConn> Connect(const std::string& node_id, const std::string& address) {
    auto c = std::make_shared<WorkerConn>();
    c->local = FindLocalAgent(address);
    if (!c->local) {
      auto channel = MakeChannel(address, opt_.sec);
      c->stub = v1::Worker::NewStub(channel);
      AddToken(&c->ctx, opt_.sec.token);
      c->stream = c->stub->Execute(&c->ctx);
    }
    {
      v1::ToWorker hello;
      hello.set_node_id(node_id);
      c->outbox = hello;
      c->has_out = true;
    }
    c->writer = std::thread([c] {
      std::unique_lock<std::mutex> l(c->mu);
      while (true) {
        c->cv.wait(l, [&] { return c->closed || (c->has_out && !c->writing); });
        if (c->closed) return;
        c->Drain(l);
      }
    });
    // The end of the connection: the node is lost (unless the head is stopping).
    auto closed = [this, c, node_id] {
      {
        std::lock_guard<std::mutex> l(c->mu);
        c->closed = true;
      }
      c->cv.notify_all();
      std::unique_lock<std::mutex> lock(mu_);
      if (!stopped_) {
        std::vector<std::function<void()>> after;
        NodeLostLocked(node_id, "its connection closed", &after);
        ScheduleLocked(&after);
        FlushDbLocked();
        lock.unlock();
        for (auto& f : after) f();
      }
    };
    if (c->local) {
      // The agent calls OnWorkerMessage on its own threads, as the reader would.
      c->local->AttachHead([this, node_id](const v1::FromWorker& m) { OnWorkerMessage(node_id, m); }, closed);
      return c;
    }
    c->reader = std::thread([c, node_id, closed, this] {
      v1::FromWorker msg;
      while (c->stream->Read(&msg)) OnWorkerMessage(node_id, msg);
      closed();
    });
    return c;
  }

  void OnWorkerMessage(const std::string& node_id, const v1::FromWorker& msg) {
    std::vector<std::function<void()>> after;
    std::vector<state::TaskRow> rows;
    std::vector<state::LogLine> logs;
    std::vector<std::shared_ptr<WorkerConn>> flush;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto nit = nodes_.find(node_id);
      if (nit == nodes_.end() || !nit->second.alive) return;
      inline_flush_ = true;
      NodeState& n = nit->second;
      for (const auto& r : msg.results()) {
        auto rit = running_.find(r.task_id());
        if (rit == running_.end()) continue;
        uint64_t h = rit->second;
        running_.erase(rit);
        TaskRec* t = FindTaskLocked(h);
        if (!t || t->node != node_id) continue;
        n.outstanding--;
        ReleaseLocked(node_id, t->req.per_task);
        if (t->kind == TaskKind::kJob) {
          OnJobResultLocked(t, r, node_id, &rows);
          tasks_.erase(h);
        } else {
          OnCallResultLocked(t, r, &after);
        }
      }
      for (const auto& ev : msg.actor_events()) OnActorEventLocked(node_id, ev, &after);
      for (const auto& cr : msg.call_results()) {
        // Calls are keyed by id across actors on this node.
        for (auto& [aid, a] : actors_) {
          auto cit = a->calls.find(cr.call_id());
          if (cit == a->calls.end()) continue;
          after.push_back([cb = std::move(cit->second), cr] { cb(cr); });
          a->calls.erase(cit);
          break;
        }
      }
      if (msg.kv_size() > 0) {
        std::vector<v1::KvReply> replies;
        for (const auto& q : msg.kv()) replies.push_back(KvLocked(node_id, q));
        SendLocked(n, [&](v1::ToWorker* m) {
          for (auto& r : replies) *m->add_kv_replies() = std::move(r);
        });
      }
      for (const auto& c : msg.checkpoints()) OnCheckpointLocked(node_id, c);
      for (const auto& l : msg.logs()) {
        if (!jobs_.count(l.job_id())) continue;
        if (l.kind() != v1::LogLine::LOG) {
          Job* j = FindJobLocked(l.job_id());
          auto si = j->index.find(l.stage());
          if (j->status == "running" && si != j->index.end()) {
            StageRun& st = j->stages[static_cast<size_t>(si->second)];
            if (l.kind() == v1::LogLine::PROGRESS) {
              if (st.status == "running") {
                st.progress = l.line().substr(0, 512);
                v1::JobEvent e;
                FillStageLocked(j, si->second, e.mutable_stage());
                PushEventLocked(j, std::move(e));
              }
              continue;  // live state, not a log line
            }
            Event(j, StageLabel(*st.node) + ": " + l.line().substr(0, 1024));
          }
        }
        state::LogLine line;
        line.run_id = l.job_id();
        line.stage = l.stage();
        line.task_index = static_cast<int>(l.index());
        line.ts_ms = l.ts_ms();
        line.line = l.line();
        logs.push_back(std::move(line));
      }
      if (dirty_) ScheduleLocked(&after);
      flush = TakeFlushLocked();
      FlushDbLocked();
    }
    FlushInline(flush);
    for (auto& f : after) f();
    for (auto& r : rows) db_->RecordTask(r);
    if (!logs.empty()) db_->AppendLogs(logs);
  }

  // The running job, when `task_id` is a task of a running job that runs on
  // `node_id` (what a worker may speak for); null otherwise.
  Job* RunningJobTaskLocked(const std::string& node_id, const std::string& task_id, TaskRec** task) {
    auto rit = running_.find(task_id);
    TaskRec* t = rit == running_.end() ? nullptr : FindTaskLocked(rit->second);
    Job* j = t && t->kind == TaskKind::kJob && t->node == node_id ? FindJobLocked(t->job) : nullptr;
    if (!j || j->status != "running") return nullptr;
    *task = t;
    return j;
  }

  // The rendezvous store of gang ranks: only a task running on the asking
  // node may use it, and only its own job's keys; sizes are bounded.
  v1::KvReply KvLocked(const std::string& node_id, const v1::KvRequest& q) {
    v1::KvReply r;
    r.set_id(q.id());
    r.set_task_id(q.task_id());
    TaskRec* t = nullptr;
    Job* j = RunningJobTaskLocked(node_id, q.task_id(), &t);
    if (!j) {
      r.set_error("the store answers only tasks of a running job");
      return r;
    }
    if (q.key().empty() || q.key().size() > 1024 || q.value().size() > (1u << 20)) {
      r.set_error("a store key must have 1-1024 bytes and a value at most 1 MiB");
      return r;
    }
    auto put = [&](std::string v) {
      auto it = j->kv.find(q.key());
      size_t old = it == j->kv.end() ? 0 : q.key().size() + it->second.size();
      if (j->kv_bytes - old + q.key().size() + v.size() > (64u << 20)) {
        r.set_error("the job's store is full (64 MiB)");
        return false;
      }
      j->kv_bytes = j->kv_bytes - old + q.key().size() + v.size();
      j->kv[q.key()] = std::move(v);
      return true;
    };
    switch (q.op()) {
      case v1::KvRequest::SET: put(q.value()); break;
      case v1::KvRequest::GET: {
        auto it = j->kv.find(q.key());
        r.set_found(it != j->kv.end());
        if (it != j->kv.end()) r.set_value(it->second);
        break;
      }
      case v1::KvRequest::ADD: {
        auto it = j->kv.find(q.key());
        int64_t v = it == j->kv.end() ? 0 : std::strtoll(it->second.c_str(), nullptr, 10);
        v += q.delta();
        if (put(std::to_string(v))) r.set_number(v);
        break;
      }
      default: r.set_error("unknown store operation");
    }
    return r;
  }

  // A running task stored a checkpoint on its node: the head copies it to its
  // own store and the run directory (PersistLoop), then hands it to restarts.
  void OnCheckpointLocked(const std::string& node_id, const v1::CheckpointNote& c) {
    TaskRec* t = nullptr;
    Job* j = RunningJobTaskLocked(node_id, c.task_id(), &t);
    if (!j) return;
    StageRun& s = j->stages[static_cast<size_t>(t->stage)];
    std::string prefix = j->id + "/" + s.node->name() + "/__checkpoint/";
    if (c.object().id().rfind(prefix, 0) != 0 || c.object().size() > kMaxObjectBytes || c.epoch() <= s.ckpt_epoch)
      return;
    ObjInfo& o = objs_[c.object().id()];
    o.size = c.object().size();
    o.locations.insert(node_id);
    o.job = j->id;
    o.stage = t->stage;
    o.slot = t->slot;
    ckpt_queue_.push_back({j->id, t->stage, c.object().id(), c.epoch()});
    persist_cv_.notify_all();
  }

  // `after` collects callbacks (of actors and their calls) to run once the lock is released.
  void NodeLostLocked(const std::string& node_id, const std::string& why, std::vector<std::function<void()>>* after) {
    auto nit = nodes_.find(node_id);
    if (nit == nodes_.end() || !nit->second.alive) return;
    NodeState& n = nit->second;
    n.alive = false;
    for (auto& [id, j] : jobs_)
      if (j->status == "running") Event(j.get(), "node " + node_id + " (" + n.info.address() + ") lost: " + why);
    if (n.conn) {
      {
        std::lock_guard<std::mutex> l(n.conn->mu);
        n.conn->closed = true;
      }
      n.conn->cv.notify_all();
      n.conn->ctx.TryCancel();  // its threads end on their own and are joined at shutdown
      if (n.conn->local) n.conn->local->DetachHead(/*wait=*/false);  // under our lock: deliveries may wait for it
    }
    // Tasks that were running there.
    std::vector<uint64_t> lost;
    for (auto it = running_.begin(); it != running_.end();) {
      TaskRec* t = FindTaskLocked(it->second);
      if (t && t->node == node_id) {
        lost.push_back(it->second);
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    for (uint64_t h : lost) {
      TaskRec* t = FindTaskLocked(h);
      if (!t) continue;
      if (t->kind == TaskKind::kJob) {
        Job* j = FindJobLocked(t->job);
        if (j && j->status == "running" && !j->cancelled) {
          StageRun& s = j->stages[static_cast<size_t>(t->stage)];
          Slot& slot = s.slots[t->slot];
          if (slot.task_id == t->spec.task_id()) {
            slot.losses++;
            s.losses++;
            s.attempts++;
            state::TaskRow row = AttemptRow(j, s, t->slot, node_id);
            row.status = "lost";
            row.reason = "node_lost";
            row.error = "node " + node_id + " lost: " + why;
            row.finished_ms = NowMs();
            db_writes_.push_back([this, row] { db_->RecordTask(row); });
            if (s.gang) {
              RestartGangLocked(j, t->stage,
                                Where(*s.node) + ": " + StageLabel(*s.node) + ": rank " + std::to_string(t->slot) +
                                    " lost its node " + node_id,
                                true, true);
            } else if (slot.losses > opt_.max_node_losses) {
              FailStageLocked(j, t->stage,
                              Where(*s.node) + ": " + StageLabel(*s.node) + ": task " + std::to_string(t->slot) +
                                  " lost its node " + std::to_string(slot.losses) + " times");
            } else {
              slot.attempt++;
              QueueSlotLocked(j, t->stage, t->slot, 0);
              StageEventLocked(j, t->stage);
            }
          }
        }
        tasks_.erase(h);
      } else if (t->kind == TaskKind::kCall) {
        t->assigned = false;
        t->spec.set_attempt(t->spec.attempt() + 1);
        t->spec.set_task_id("c" + incarnation_ + std::to_string(t->handle) + "." + std::to_string(t->spec.attempt()));
        queue_.push_back(h);
      }
    }
    // Actors that lived there.
    for (auto& [aid, a] : actors_)
      if (a->node == node_id && !a->dead) ActorDiedLocked(a.get(), "node " + node_id + " lost", after);
    // Placement groups holding resources there are released with the node.
    // Objects that lived only there.
    std::vector<std::string> orphaned;
    for (auto& [id, o] : objs_) {
      if (o.locations.erase(node_id) && o.locations.empty()) orphaned.push_back(id);
    }
    for (const auto& id : orphaned) RebuildLocked(id);
    n.outstanding = 0;
    dirty_ = true;
    cv_.notify_all();
  }

  HeadOptions opt_;
  ObjectClient objects_;
  std::unique_ptr<state::StateStore> db_;
  std::unique_ptr<objects::Store> store_;
  std::unique_ptr<ObjectServiceImpl> object_service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;

  std::mutex mu_;
  std::condition_variable cv_, persist_cv_;
  bool stopped_ = false;
  bool dirty_ = false;
  bool inline_flush_ = false;
  const std::string incarnation_ = RandomToken().substr(0, 8) + "-";  // this head process
  std::vector<std::shared_ptr<WorkerConn>> flush_;
  uint64_t node_seq_ = 0, task_seq_ = 0, actor_seq_ = 0, call_seq_ = 0;
  std::map<std::string, NodeState> nodes_;
  std::unordered_map<uint64_t, std::unique_ptr<TaskRec>> tasks_;
  std::deque<uint64_t> queue_;
  std::deque<uint64_t> retired_;
  std::unordered_map<std::string, uint64_t> running_;
  std::unordered_map<std::string, ObjInfo> objs_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  std::map<std::string, std::string> submissions_;
  std::map<std::string, std::unique_ptr<ActorRec>> actors_;
  std::deque<std::pair<std::string, int>> persist_queue_;
  struct CkptItem {
    std::string job;
    int stage;
    std::string id;
    int64_t epoch;
  };
  std::deque<CkptItem> ckpt_queue_;
  std::vector<std::function<void()>> db_writes_;
  std::thread loop_, persister_;
};

// ------------------------------------------------------------------------------------------------

Head::Head(HeadOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Head::~Head() = default;
bool Head::Start(std::string* error) { return impl_->Start(error); }
const std::string& Head::address() const { return impl_->address(); }
void Head::Shutdown() { impl_->Shutdown(); }
void Head::Wait() { impl_->Wait(); }
bool Head::SubmitJob(const std::string& plan, const v1::JobOptions& options, const std::string& submission_id,
                     std::string* job_id, std::string* error) {
  return impl_->SubmitJobImpl(plan, options, submission_id, job_id, error);
}
void Head::WatchJob(const std::string& job_id, uint64_t after_seq, const std::function<bool(const v1::JobEvent&)>& fn) {
  impl_->WatchJobImpl(job_id, after_seq, fn);
}
bool Head::GetJob(const std::string& job_id, v1::JobReport* report) { return impl_->GetJobImpl(job_id, report); }
bool Head::CancelJob(const std::string& job_id) { return impl_->CancelJobImpl(job_id); }
v1::ClusterStatusReply Head::ClusterStatus() { return impl_->ClusterStatusImpl(); }
size_t Head::AliveNodes() { return impl_->AliveNodes(); }
uint64_t Head::SubmitTask(TaskCall call, TaskDone done) { return impl_->SubmitTaskImpl(std::move(call), std::move(done)); }
std::string Head::CreateActor(const std::string& class_name, const std::string& args, const v1::Resources& resources,
                              uint32_t max_restarts, ActorReady ready) {
  return impl_->CreateActorImpl(class_name, args, resources, max_restarts, std::move(ready));
}
void Head::CallActor(const std::string& actor_id, const std::string& method, const std::string& args, CallDone done) {
  impl_->CallActorImpl(actor_id, method, args, std::move(done));
}
void Head::KillActor(const std::string& actor_id) { impl_->KillActorImpl(actor_id); }
std::string Head::CreatePlacementGroup(uint32_t count, const v1::Resources& resources, bool spread, GroupReady ready) {
  return impl_->CreateGroupImpl(count, resources, spread, std::move(ready));
}
void Head::RemovePlacementGroup(const std::string& group_id) { impl_->RemoveGroupImpl(group_id); }

}  // namespace mlp::rt
