#include "runtime/core/executor.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>

#include "plan.pb.h"
#include "runtime/core/functions.h"
#include "runtime/core/rpc.h"
#include "runtime/objects/buffer.h"
#include "runtime/objects/channel.h"
#include "runtime/ops/registry.h"
#include "worker.pb.h"

namespace mlp::rt {
namespace {

std::atomic<bool> g_cancelled{false};

void OnCancel(int) { g_cancelled.store(true); }

struct LoadedPlan {
  plan::v1::Plan plan;
  std::unique_ptr<ops::KernelProgram> kernels;
  std::string kernel_error;
};

class Executor {
 public:
  explicit Executor(int fd) : ch_(fd) {}

  int Run() {
    std::string msg, error;
    std::vector<int> fds;
    while (true) {
      fds.clear();
      if (!pending_.empty()) {
        msg = std::move(pending_.front().first);
        fds = std::move(pending_.front().second);
        pending_.pop_front();
      } else if (!ch_.Recv(&msg, &fds, &error)) {
        return 0;  // the agent is gone: nothing left to do
      }
      v1::ExecRequest req;
      if (!req.ParseFromString(msg)) {
        for (int fd : fds) close(fd);
        return 2;
      }
      switch (req.kind_case()) {
        case v1::ExecRequest::kPlan: LoadPlanMsg(req.plan()); break;
        case v1::ExecRequest::kTask: RunTask(req.task(), fds); break;
        case v1::ExecRequest::kCreateActor: CreateActor(req.create_actor()); break;
        case v1::ExecRequest::kCall: CallActor(req.call()); break;
        default: break;
      }
    }
  }

 private:
  void LoadPlanMsg(const v1::LoadPlan& lp) {
    if (plans_.count(lp.plan_id())) return;
    auto p = std::make_unique<LoadedPlan>();
    if (!p->plan.ParseFromString(lp.plan())) p->kernel_error = "the plan does not parse";
    plans_[lp.plan_id()] = std::move(p);
  }

  void Reply(const v1::ExecReply& r, const std::vector<int>& fds = {}) {
    std::string out;
    r.SerializeToString(&out);
    ch_.Send(out, fds);
  }

  void RunTask(const v1::TaskSpec& spec, std::vector<int>& fds) {
    g_cancelled.store(false);
    v1::ExecReply reply;
    v1::TaskResult* res = reply.mutable_result();
    res->set_task_id(spec.task_id());
    res->set_started_ms(NowMs());
    // Take ownership of every received fd first, so none leaks on an error path.
    std::vector<std::shared_ptr<objects::Buffer>> inputs;
    std::string error;
    size_t fi = 0;
    bool inputs_ok = true;
    for (const auto& in : spec.inputs()) {
      for (const auto& shard : in.shards()) {
        if (fi >= fds.size()) {
          inputs_ok = false;
          break;
        }
        auto buf = objects::Buffer::FromFd(fds[fi++], shard.size(), &error);
        if (!buf) inputs_ok = false;
        inputs.push_back(std::move(buf));
      }
    }
    for (; fi < fds.size(); ++fi) close(fds[fi]);
    auto fail = [&](v1::TaskResult::Status st, const std::string& msg, bool retryable) {
      res->set_status(st);
      res->set_error(msg);
      res->set_retryable(retryable);
      res->set_finished_ms(NowMs());
      Reply(reply);
    };
    if (!inputs_ok) return fail(v1::TaskResult::REJECTED, "the executor did not receive its inputs: " + error, true);
    SetMemoryLimit(spec);

    if (!spec.function().empty()) {
      const TaskFunction* fn = FindFunction(spec.function());
      if (!fn) return fail(v1::TaskResult::FAILED, "no task function `" + spec.function() + "`", false);
      std::string value;
      if (!(*fn)(spec.args(), &value, &error)) return fail(v1::TaskResult::FAILED, error, true);
      res->set_status(v1::TaskResult::OK);
      res->set_value(std::move(value));
      res->set_finished_ms(NowMs());
      return Reply(reply);
    }

    auto it = plans_.find(spec.plan_id());
    if (it == plans_.end()) return fail(v1::TaskResult::REJECTED, "unknown plan " + spec.plan_id(), true);
    LoadedPlan& lp = *it->second;
    if (!lp.kernel_error.empty()) return fail(v1::TaskResult::FAILED, lp.kernel_error, false);
    if (static_cast<int>(spec.node_index()) >= lp.plan.nodes_size())
      return fail(v1::TaskResult::REJECTED, "node index out of range", false);
    const plan::v1::Node& node = lp.plan.nodes(static_cast<int>(spec.node_index()));
    const ops::StageFn* stage = ops::Global().FindStage(node.op());
    if (!stage) return fail(v1::TaskResult::FAILED, "`" + node.op() + "` has no runtime implementation", false);
    if (!lp.kernels && !lp.plan.kernels().empty()) {
      lp.kernels = ops::KernelProgram::Build(lp.plan, &lp.kernel_error);
      if (!lp.kernels) return fail(v1::TaskResult::FAILED, lp.kernel_error, false);
    }

    ops::TaskContext ctx;
    ctx.plan = &lp.plan;
    ctx.node = &node;
    ctx.index = spec.index();
    ctx.count = spec.count();
    ctx.attempt = spec.attempt();
    ctx.kernels = lp.kernels.get();
    size_t bi = 0;
    for (const auto& in : spec.inputs()) {
      ops::InputSet set;
      set.field = in.field();
      set.stage = in.stage();
      set.output = in.output();
      set.total_shards = in.total_shards();
      set.shard_index.assign(in.shard_index().begin(), in.shard_index().end());
      for (int s = 0; s < in.shards_size(); ++s, ++bi) {
        set.shards.push_back(ops::Shard{inputs[bi]->data(), inputs[bi]->size()});
      }
      ctx.inputs.push_back(std::move(set));
    }
    ctx.cancelled = [] { return g_cancelled.load(std::memory_order_relaxed); };
    std::string job = spec.job_id(), stage_name = spec.stage();
    uint32_t index = spec.index();
    // Log, progress and warning lines for the agent, which passes them to the head.
    auto line_sink = [this, job, stage_name, index](v1::LogLine::Kind kind, size_t max) {
      return [this, job, stage_name, index, kind, max](std::string_view line) {
        v1::ExecReply r;
        auto* l = r.mutable_log();
        l->set_job_id(job);
        l->set_stage(stage_name);
        l->set_index(index);
        l->set_ts_ms(NowMs());
        l->set_kind(kind);
        l->set_line(std::string(line.substr(0, max)));
        Reply(r);
      };
    };
    ctx.log = line_sink(v1::LogLine::LOG, 4096);
    ctx.progress = line_sink(v1::LogLine::PROGRESS, 512);
    ctx.warn = line_sink(v1::LogLine::WARNING, 4096);
    ctx.gang = spec.gang();
    ctx.node_host = spec.node_host();
    if (!spec.job_id().empty()) {
      ctx.kv_set = [this](const std::string& key, const std::string& value, std::string* err) {
        v1::KvReply rep;
        return Kv(v1::KvRequest::SET, key, value, 0, &rep, err);
      };
      ctx.kv_get = [this](const std::string& key, std::string* value, bool* found, std::string* err) {
        v1::KvReply rep;
        if (!Kv(v1::KvRequest::GET, key, "", 0, &rep, err)) return false;
        *found = rep.found();
        *value = rep.value();
        return true;
      };
      ctx.kv_add = [this](const std::string& key, int64_t delta, int64_t* sum, std::string* err) {
        v1::KvReply rep;
        if (!Kv(v1::KvRequest::ADD, key, "", delta, &rep, err)) return false;
        *sum = rep.number();
        return true;
      };
      ctx.checkpoint = [this](int64_t epoch, const std::string& bytes, std::string* err) {
        auto buf = objects::Buffer::Create(bytes.size(), err);
        if (!buf) return false;
        if (!bytes.empty()) std::memcpy(buf->mutable_data(), bytes.data(), bytes.size());
        v1::ExecReply r;
        r.mutable_checkpoint()->set_epoch(epoch);
        r.mutable_checkpoint()->set_size(bytes.size());
        Reply(r, {buf->fd()});
        return true;
      };
    }

    ops::TaskResult out = (*stage)(ctx);
    if (g_cancelled.load()) return fail(v1::TaskResult::CANCELLED, "cancelled", false);
    if (!out.ok) return fail(v1::TaskResult::FAILED, out.error, out.retryable);
    if (out.outputs.size() != static_cast<size_t>(spec.output_ids_size()))
      return fail(v1::TaskResult::FAILED,
                  "`" + node.op() + "` produced " + std::to_string(out.outputs.size()) + " outputs, expected " +
                      std::to_string(spec.output_ids_size()),
                  false);
    std::vector<std::shared_ptr<objects::Buffer>> bufs;
    std::vector<int> out_fds;
    for (size_t i = 0; i < out.outputs.size(); ++i) {
      auto buf = objects::Buffer::Create(out.outputs[i].bytes.size(), &error);
      if (!buf) return fail(v1::TaskResult::FAILED, "cannot allocate an output: " + error, true);
      if (!out.outputs[i].bytes.empty())
        std::memcpy(buf->mutable_data(), out.outputs[i].bytes.data(), out.outputs[i].bytes.size());
      auto* ref = res->add_outputs();
      ref->set_id(spec.output_ids(static_cast<int>(i)));
      ref->set_size(buf->size());
      out_fds.push_back(buf->fd());
      bufs.push_back(std::move(buf));
    }
    res->set_status(v1::TaskResult::OK);
    res->set_finished_ms(NowMs());
    Reply(reply, out_fds);
  }

  // One request to the job's store at the head, through the agent; waits for
  // its reply. Other messages that arrive meanwhile are kept for Run().
  bool Kv(v1::KvRequest::Op op, const std::string& key, const std::string& value, int64_t delta, v1::KvReply* rep,
          std::string* error) {
    v1::ExecReply r;
    auto* q = r.mutable_kv();
    q->set_id(++kv_seq_);
    q->set_op(op);
    q->set_key(key);
    q->set_value(value);
    q->set_delta(delta);
    Reply(r);
    while (true) {
      std::string msg;
      std::vector<int> fds;
      if (!ch_.Recv(&msg, &fds, error)) return *error = "the worker agent is gone", false;
      v1::ExecRequest req;
      if (!req.ParseFromString(msg)) {
        for (int fd : fds) close(fd);
        return *error = "a malformed message from the agent", false;
      }
      if (req.has_kv_reply() && req.kv_reply().id() == kv_seq_) {
        *rep = req.kv_reply();
        if (!rep->error().empty()) return *error = rep->error(), false;
        return true;
      }
      if (req.has_kv_reply()) continue;  // a reply to an earlier request that gave up
      pending_.push_back({std::move(msg), std::move(fds)});
    }
  }

  // A task's memory request becomes this process's address-space limit (with
  // room for the runtime itself and the mapped inputs), so a task that runs
  // away fails with an allocation error instead of exhausting the node.
  void SetMemoryLimit(const v1::TaskSpec& spec) {
    rlimit cur{};
    if (getrlimit(RLIMIT_AS, &cur) != 0) return;
    rlim_t want = RLIM_INFINITY;
    if (spec.resources().memory_bytes() > 0) {
      uint64_t inputs = 0;
      for (const auto& in : spec.inputs())
        for (const auto& s : in.shards()) inputs += s.size();
      want = static_cast<rlim_t>(spec.resources().memory_bytes()) + inputs + (2ull << 30);
    }
    if (want > cur.rlim_max) want = cur.rlim_max;
    rlimit lim{want, cur.rlim_max};
    setrlimit(RLIMIT_AS, &lim);
  }

  void CreateActor(const v1::ActorSpec& spec) {
    v1::ExecReply reply;
    auto* ev = reply.mutable_actor_event();
    ev->set_actor_id(spec.actor_id());
    const ActorFactory* f = FindActorClass(spec.class_name());
    std::string error;
    if (!f) {
      error = "no actor class `" + spec.class_name() + "`";
    } else {
      actor_ = (*f)(spec.args(), &error);
    }
    ev->set_kind(actor_ ? v1::ActorEvent::CREATED : v1::ActorEvent::CREATE_FAILED);
    ev->set_error(error);
    Reply(reply);
  }

  void CallActor(const v1::ActorCall& call) {
    v1::ExecReply reply;
    auto* r = reply.mutable_call_result();
    r->set_call_id(call.call_id());
    std::string value, error;
    bool ok = actor_ && actor_->Call(call.method(), call.args(), &value, &error);
    if (!actor_) error = "no actor in this process";
    r->set_ok(ok);
    r->set_error(error);
    r->set_value(std::move(value));
    Reply(reply);
  }

  objects::Channel ch_;
  uint64_t kv_seq_ = 0;
  std::deque<std::pair<std::string, std::vector<int>>> pending_;  // received during a task's Kv()
  std::map<std::string, std::unique_ptr<LoadedPlan>> plans_;
  std::unique_ptr<Actor> actor_;
};

}  // namespace

int RunExecutor(int fd) {
  struct sigaction sa {};
  sa.sa_handler = OnCancel;
  sigaction(SIGUSR1, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole process group; the agent decides
  // A crashing task is reported with its signal; a core file per crash would
  // fill the working directory and slow the retry down.
  rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  return Executor(fd).Run();
}

}  // namespace mlp::rt
