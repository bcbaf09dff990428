#include "runtime/core/agent.h"
#include "runtime/core/local_link.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "head.grpc.pb.h"
#include "runtime/core/object_service.h"
#include "runtime/core/resources.h"
#include "runtime/objects/buffer.h"
#include "runtime/objects/channel.h"
#include "runtime/objects/store.h"
#include "worker.grpc.pb.h"

namespace mlp::rt {
namespace {

std::string SignalText(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "the task's process was killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  if (WIFEXITED(status)) return "the task's process exited with status " + std::to_string(WEXITSTATUS(status));
  return "the task's process ended";
}

// Checks a task spec from the head before anything acts on it.
bool ValidTask(const v1::TaskSpec& t, std::string* why) {
  if (t.task_id().empty() || t.task_id().size() > 512) return *why = "bad task id", false;
  if (t.count() == 0 || t.index() >= t.count()) return *why = "task index out of range", false;
  if (t.output_ids_size() > 256 || t.inputs_size() > 256) return *why = "too many inputs or outputs", false;
  size_t shards = 0;
  for (const auto& in : t.inputs()) {
    shards += static_cast<size_t>(in.shards_size());
    for (const auto& s : in.shards())
      if (s.id().empty() || s.size() > kMaxObjectBytes) return *why = "bad input object", false;
  }
  if (shards > 4096) return *why = "too many input shards", false;
  const auto& r = t.resources();
  if (r.cpu_milli() < 0 || r.gpu_milli() < 0 || r.memory_bytes() < 0) return *why = "negative resources", false;
  if (t.function().empty() == t.plan_id().empty()) return *why = "a task names a function or a plan node", false;
  if (t.gang().size() > 1024 || t.node_host().size() > 256) return *why = "bad gang key or node host", false;
  return true;
}

}  // namespace

class Agent::Impl : public v1::Worker::Service {
 public:
  explicit Impl(AgentOptions o) : opt_(std::move(o)), objects_(opt_.sec) {}

  ~Impl() override { Shutdown(); }

  bool Start(std::string* error, int register_timeout_ms) {
    if (opt_.executable.empty()) {
      char buf[4096];
      ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
      if (n <= 0) return *error = "cannot find the mlpc executable", false;
      opt_.executable.assign(buf, static_cast<size_t>(n));
    }
    if (opt_.max_executors == 0)
      opt_.max_executors = static_cast<uint32_t>(4 * std::max<int64_t>(1, opt_.resources.cpu_milli() / 1000) + 4);
    if (opt_.spill_dir.empty()) {
      char tmpl[] = "/tmp/mlpc-spill-XXXXXX";
      if (!mkdtemp(tmpl)) return *error = "cannot create a spill directory", false;
      opt_.spill_dir = tmpl;
      owns_spill_dir_ = true;
    }
    store_ = std::make_unique<objects::Store>(
        objects::Store::Options{static_cast<size_t>(opt_.object_store_bytes), opt_.spill_dir});
    available_ = ToSched(opt_.resources);
    if (opt_.node_key.empty()) opt_.node_key = RandomToken();

    object_service_ = std::make_unique<ObjectServiceImpl>(store_.get(), &opt_.sec.token);
    server_ = StartServer(opt_.listen, opt_.advertise_host, opt_.sec, {this, object_service_.get()}, &address_, error);
    if (!server_) return false;
    // A head in this process reaches this agent by function call (local_link.h).
    link_ = RegisterLocalAgent(
        address_, [this](const v1::ToWorker& m) { Handle(m); }, [this] { OnLocalAttach(); });
    spawner_ = std::thread([this] { SpawnerLoop(); });
    head_ = v1::Head::NewStub(MakeChannel(opt_.head, opt_.sec));
    int64_t deadline = MonoUs() + int64_t{register_timeout_ms} * 1000;
    std::string last;
    while (!Register(&last)) {
      if (last.find("token") != std::string::npos || MonoUs() > deadline) {
        *error = "cannot register with the head at " + opt_.head + ": " + last;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    heartbeat_ = std::thread([this] { HeartbeatLoop(); });
    watchdog_ = std::thread([this] { WatchdogLoop(); });
    return true;
  }

  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return stopping_.load(); });
  }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = stopping_ = true;
      for (auto& e : execs_)
        if (e->pid > 0) kill(e->pid, SIGKILL);
    }
    cv_.notify_all();
    spawn_cv_.notify_all();
    out_cv_.notify_all();
    if (link_) {
      UnregisterLocalAgent(address_);
      link_->CloseAgent();
      {
        std::unique_lock<std::mutex> lock(out_mu_);
        local_on_ = false;
        ++writer_stop_;
        out_cv_.notify_all();
        out_cv_.wait(lock, [&] { return !writing_; });
      }
      if (local_writer_.joinable()) local_writer_.join();
    }
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    if (heartbeat_.joinable()) heartbeat_.join();
    if (watchdog_.joinable()) watchdog_.join();
    if (spawner_.joinable()) spawner_.join();
    std::vector<std::unique_ptr<Exec>> execs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& e : execs_) e->cv.notify_all();
      execs.swap(execs_);
    }
    for (auto& e : execs) {
      e->ch.Close();
      if (e->thread.joinable()) e->thread.join();
      if (e->pid > 0) waitpid(e->pid, nullptr, 0);
    }
    if (server_) server_->Wait();
    store_.reset();
    if (owns_spill_dir_) {
      std::error_code ec;
      std::filesystem::remove_all(opt_.spill_dir, ec);
    }
  }

  const std::string& address() const { return address_; }
  const std::string& node_id() const { return node_id_; }

  // --- Worker service ------------------------------------------------------------------------------

  grpc::Status Execute(grpc::ServerContext* ctx, grpc::ServerReaderWriter<v1::FromWorker, v1::ToWorker>* stream) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      gen = ++stream_gen_;
      stream_ = stream;
      local_on_ = false;
    }
    std::thread writer([this, gen] { WriterLoop(gen); });
    v1::ToWorker msg;
    while (stream->Read(&msg)) Handle(msg);
    {
      std::unique_lock<std::mutex> lock(out_mu_);
      if (stream_gen_ == gen) stream_ = nullptr;
      ++writer_stop_;
      out_cv_.notify_all();
      // The stream dies with this handler: wait for any thread writing to it.
      out_cv_.wait(lock, [&] { return !writing_; });
    }
    writer.join();
    return grpc::Status::OK;
  }

  grpc::Status Shutdown(grpc::ServerContext* ctx, const v1::ShutdownRequest*, v1::ShutdownReply*) override {
    if (auto st = CheckToken(ctx, opt_.sec.token); !st.ok()) return st;
    std::thread([this] { Shutdown(); }).detach();
    return grpc::Status::OK;
  }

 private:
  struct Exec {
    pid_t pid = -1;
    objects::Channel ch;
    std::thread thread;
    std::condition_variable cv;
    bool busy = false;
    bool dead = false;
    std::string actor_id;                 // set: this executor hosts that actor
    std::deque<v1::ActorCall> calls;      // pending calls of its actor
    std::unique_ptr<v1::TaskSpec> task;   // the task it runs
    std::set<std::string> plans;          // plans it has loaded
    int64_t deadline_us = 0;
    bool timed_out = false, cancelled = false;
    bool presend = false;                 // the task was sent by the thread that started it
    bool exited = false;                  // its thread has left ExecLoop (set under the agent's lock)
  };

  // --- outgoing messages: batched into one FromWorker per write --------------------------------------

  // Queues a message for the head. With `here`, the calling thread writes it
  // unless another thread is writing (saves a thread hop on a task's result);
  // otherwise the writer thread does.
  void Emit(const std::function<void(v1::FromWorker*)>& fill, bool here = false) {
    std::unique_lock<std::mutex> lock(out_mu_);
    fill(&outbox_);
    has_out_ = true;
    if (here && !writing_ && Connected()) return DrainLocked(lock);
    lock.unlock();
    out_cv_.notify_all();
  }

  void DrainLocked(std::unique_lock<std::mutex>& lock) {
    writing_ = true;
    while (has_out_ && Connected()) {
      v1::FromWorker batch;
      batch.Swap(&outbox_);
      has_out_ = false;
      auto* s = stream_;
      lock.unlock();
      bool ok = s ? s->Write(batch) : link_->FromWorker(batch);
      lock.lock();
      if (!ok) break;
    }
    writing_ = false;
    out_cv_.notify_all();
  }

  void WriterLoop(uint64_t gen) {
    std::unique_lock<std::mutex> lock(out_mu_);
    uint64_t stop_at = writer_stop_ + 1;
    while (true) {
      out_cv_.wait(lock, [&] { return writer_stop_ >= stop_at || stream_gen_ != gen || (has_out_ && !writing_); });
      if (writer_stop_ >= stop_at || stream_gen_ != gen || !Connected()) return;
      DrainLocked(lock);
    }
  }

  bool Connected() const { return stream_ || local_on_; }  // under out_mu_

  // A head in this process attached through the local link: messages for it
  // go there from now on (a writer thread for the ones not sent inline).
  void OnLocalAttach() {
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      gen = ++stream_gen_;
      stream_ = nullptr;
      local_on_ = true;
    }
    out_cv_.notify_all();
    if (local_writer_.joinable()) local_writer_.join();  // the previous head's (it left with the generation)
    local_writer_ = std::thread([this, gen] { WriterLoop(gen); });
  }

  // --- incoming messages --------------------------------------------------------------------------

  void Handle(const v1::ToWorker& msg) {
    std::vector<v1::TaskResult> rejected;
    std::vector<std::pair<Exec*, std::string>> sends;
    {
      std::lock_guard<std::mutex> lock(mu_);
      presend_ = &sends;
      for (const auto& p : msg.plans())
        if (p.plan_id().size() <= 256 && p.plan().size() <= static_cast<size_t>(kMaxMessageBytes))
          plans_[p.plan_id()] = p.plan();
      for (const auto& t : msg.tasks()) {
        std::string why;
        if (!ValidTask(t, &why) || (!t.plan_id().empty() && !plans_.count(t.plan_id()))) {
          v1::TaskResult r;
          r.set_task_id(t.task_id().substr(0, 512));
          r.set_status(v1::TaskResult::REJECTED);
          r.set_error(why.empty() ? "unknown plan" : why);
          rejected.push_back(std::move(r));
          continue;
        }
        if (!seen_tasks_.insert(t.task_id()).second) continue;  // a resend after a reconnect
        seen_order_.push_back(t.task_id());
        if (seen_order_.size() > 100000) {  // remember recent ids only
          seen_tasks_.erase(seen_order_.front());
          seen_order_.pop_front();
        }
        queue_.push_back(std::make_unique<v1::TaskSpec>(t));
      }
      for (const auto& id : msg.cancel_tasks()) CancelLocked(id);
      for (const auto& a : msg.create_actors()) actor_queue_.push_back(a);
      for (const auto& c : msg.actor_calls()) {
        auto it = actors_.find(c.actor_id());
        if (it == actors_.end()) {
          v1::ActorCallResult r;
          r.set_call_id(c.call_id());
          r.set_error("no actor " + c.actor_id() + " on this node");
          Emit([&](v1::FromWorker* f) { *f->add_call_results() = r; });
          continue;
        }
        it->second->calls.push_back(c);
        it->second->cv.notify_all();
      }
      for (const auto& id : msg.kill_actors()) {
        auto it = actors_.find(id);
        if (it != actors_.end() && it->second->pid > 0) kill(it->second->pid, SIGKILL);
      }
      for (const auto& r : msg.kv_replies()) {
        auto it = running_.find(r.task_id());
        if (it == running_.end() || !it->second || it->second->dead) continue;  // the task ended meanwhile
        v1::ExecRequest req;
        *req.mutable_kv_reply() = r;
        sends.emplace_back(it->second, req.SerializeAsString());
      }
      for (const auto& id : msg.free_objects()) store_->Delete(id);
      for (const auto& r : msg.reserve()) available_ = sched::Subtract(available_, ToSched(r));
      for (const auto& r : msg.unreserve()) available_ = sched::Add(available_, ToSched(r));
      StartLocked();
      presend_ = nullptr;
    }
    // Each executor's thread waits for this send's reply; a failed send shows
    // there as a closed channel (the executor died).
    for (auto& [e, bytes] : sends) e->ch.Send(bytes);
    if (!rejected.empty())
      Emit([&](v1::FromWorker* f) {
        for (auto& r : rejected) *f->add_results() = std::move(r);
      });
  }

  void CancelLocked(const std::string& task_id) {
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if ((*it)->task_id() == task_id) {
        v1::TaskResult r;
        r.set_task_id(task_id);
        r.set_status(v1::TaskResult::CANCELLED);
        queue_.erase(it);
        Emit([&](v1::FromWorker* f) { *f->add_results() = r; });
        return;
      }
    }
    for (auto& e : execs_) {
      if (e->task && e->task->task_id() == task_id && e->pid > 0) {
        e->cancelled = true;
        kill(e->pid, SIGKILL);
      }
    }
  }

  // Starts queued tasks whose resources are free, and pending actors.
  void StartLocked() {
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (!sched::Fits(ToSched((*it)->resources()), available_)) {
        ++it;
        continue;
      }
      Exec* e = IdleExecLocked();
      if (!e) break;
      available_ = sched::Subtract(available_, ToSched((*it)->resources()));
      e->task = std::move(*it);
      e->busy = true;
      e->timed_out = e->cancelled = false;
      e->deadline_us = e->task->timeout_ms() > 0 ? MonoUs() + e->task->timeout_ms() * 1000 : 0;
      it = queue_.erase(it);
      // A task with nothing to fetch or load can be sent by the thread that
      // started it (the stream's reader), saving a wake-up of the executor's thread.
      if (presend_ && e->task->inputs_size() == 0 &&
          (e->task->plan_id().empty() || e->plans.count(e->task->plan_id()))) {
        e->presend = true;
        running_[e->task->task_id()] = e;
        v1::ExecRequest req;
        *req.mutable_task() = *e->task;
        presend_->emplace_back(e, req.SerializeAsString());
      }
      e->cv.notify_all();
    }
    while (!actor_queue_.empty()) {
      v1::ActorSpec spec = actor_queue_.front();
      actor_queue_.pop_front();
      Exec* e = NewExecLocked();
      if (!e) {
        v1::ActorEvent ev;
        ev.set_actor_id(spec.actor_id());
        ev.set_kind(v1::ActorEvent::CREATE_FAILED);
        ev.set_error("cannot start a process for the actor");
        Emit([&](v1::FromWorker* f) { *f->add_actor_events() = ev; });
        continue;
      }
      e->actor_id = spec.actor_id();
      e->busy = true;
      available_ = sched::Subtract(available_, ToSched(spec.resources()));  // held while the actor lives
      actors_[spec.actor_id()] = e;
      actor_specs_[spec.actor_id()] = spec;
      e->cv.notify_all();
    }
  }

  Exec* IdleExecLocked() {
    for (auto& e : execs_)
      if (!e->busy && !e->dead && e->actor_id.empty()) return e.get();
    size_t task_execs = 0;
    for (auto& e : execs_)
      if (e->actor_id.empty() && !e->dead) ++task_execs;
    if (task_execs >= opt_.max_executors) return nullptr;
    return NewExecLocked();
  }

  // --- executor processes ---------------------------------------------------------------------------

  // Executors are forked from one long-lived thread: PR_SET_PDEATHSIG fires
  // when the forking thread ends, and we want it to fire only with the agent.
  pid_t Spawn(int child_fd) {
    std::unique_lock<std::mutex> lock(spawn_mu_);
    uint64_t ticket = ++spawn_requests_;
    spawn_fds_[ticket] = child_fd;
    spawn_cv_.notify_all();
    spawn_cv_.wait(lock, [&] { return spawn_results_.count(ticket) || stopping_; });
    if (!spawn_results_.count(ticket)) return -1;
    pid_t pid = spawn_results_[ticket];
    spawn_results_.erase(ticket);
    return pid;
  }

  void SpawnerLoop() {
    std::unique_lock<std::mutex> lock(spawn_mu_);
    while (!stopping_) {
      spawn_cv_.wait(lock, [&] { return !spawn_fds_.empty() || stopping_; });
      while (!spawn_fds_.empty()) {
        auto [ticket, fd] = *spawn_fds_.begin();
        spawn_fds_.erase(spawn_fds_.begin());
        const char* exe = opt_.executable.c_str();
        pid_t parent = getpid();
        // No executor may use more address space than the node offers (plus
        // room for the runtime's own mappings): a runaway task fails alone.
        rlimit as{RLIM_INFINITY, RLIM_INFINITY};
        if (opt_.resources.memory_bytes() > 0)
          as.rlim_cur = as.rlim_max = static_cast<rlim_t>(opt_.resources.memory_bytes()) + (512ull << 20);
        pid_t pid = fork();
        if (pid == 0) {
          prctl(PR_SET_PDEATHSIG, SIGKILL);
          setrlimit(RLIMIT_AS, &as);
          if (getppid() != parent) _exit(1);
          if (fd == 3) {
            int flags = fcntl(3, F_GETFD);
            fcntl(3, F_SETFD, flags & ~FD_CLOEXEC);
          } else {
            dup2(fd, 3);
          }
          char a0[] = "mlpc", a1[] = "__executor", a2[] = "3";
          char* argv[] = {a0, a1, a2, nullptr};
          execv(exe, argv);
          _exit(127);
        }
        spawn_results_[ticket] = pid;
      }
      spawn_cv_.notify_all();
    }
  }

  Exec* NewExecLocked() {
    objects::Channel mine, theirs;
    std::string error;
    if (!objects::Channel::Pair(&mine, &theirs, &error)) return nullptr;
    pid_t pid = Spawn(theirs.fd());
    theirs.Close();
    if (pid <= 0) return nullptr;
    auto e = std::make_unique<Exec>();
    e->pid = pid;
    e->ch = std::move(mine);
    Exec* raw = e.get();
    execs_.push_back(std::move(e));
    raw->thread = std::thread([this, raw] { ExecLoop(raw); });
    return raw;
  }

  void ExecLoop(Exec* e) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_ && !e->dead) {
      e->cv.wait(lock, [&] { return stopping_ || (e->busy && e->task) || (!e->actor_id.empty()); });
      if (stopping_) break;
      if (!e->actor_id.empty()) {
        ActorLoop(e, lock);
        break;
      }
      auto task = std::move(e->task);
      lock.unlock();
      v1::TaskResult result = RunOne(e, *task);
      lock.lock();
      available_ = sched::Add(available_, ToSched(task->resources()));
      e->busy = false;
      e->deadline_us = 0;
      running_.erase(task->task_id());
      lock.unlock();
      Emit([&](v1::FromWorker* f) { *f->add_results() = std::move(result); }, /*here=*/true);
      lock.lock();
      if (e->dead && e->pid > 0) {  // never waitpid(-1): that would wait for any executor
        waitpid(e->pid, nullptr, 0);
        e->pid = -1;
      }
      StartLocked();
    }
    e->exited = true;  // the watchdog may free `e` only after this
    lock.unlock();
  }

  // Runs one task on executor `e`: fetches missing inputs, sends the plan if
  // needed, and waits for the result (forwarding log lines meanwhile).
  v1::TaskResult RunOne(Exec* e, const v1::TaskSpec& spec) {
    v1::TaskResult result;
    result.set_task_id(spec.task_id());
    result.set_started_ms(NowMs());
    std::vector<std::shared_ptr<objects::Buffer>> inputs;
    std::string error;
    for (const auto& in : spec.inputs()) {
      for (const auto& s : in.shards()) {
        auto buf = store_->Get(s.id(), &error);
        if (!buf) {
          bool ok = false;
          for (const auto& loc : s.locations()) {
            if (loc.node_id() == node_id_) continue;
            if (objects_.Pull(loc.address(), s.id(), s.size(), store_.get(), &error)) {
              ok = true;
              break;
            }
          }
          if (ok) buf = store_->Get(s.id(), &error);
          if (!buf) {
            result.set_status(v1::TaskResult::INPUT_LOST);
            result.set_lost_object(s.id());
            result.set_error("input " + s.id() + " is on no reachable node" + (error.empty() ? "" : ": " + error));
            result.set_retryable(true);
            result.set_finished_ms(NowMs());
            return result;
          }
        }
        inputs.push_back(std::move(buf));
      }
    }
    std::vector<int> fds;
    for (auto& b : inputs) fds.push_back(b->fd());
    if (!spec.plan_id().empty() && !e->plans.count(spec.plan_id())) {
      v1::ExecRequest lp;
      lp.mutable_plan()->set_plan_id(spec.plan_id());
      {
        std::lock_guard<std::mutex> lock(mu_);
        lp.mutable_plan()->set_plan(plans_[spec.plan_id()]);
      }
      std::string bytes;
      lp.SerializeToString(&bytes);
      e->ch.Send(bytes);
      e->plans.insert(spec.plan_id());
    }
    std::string bytes;
    bool sent = e->presend;
    if (!sent) {
      v1::ExecRequest req;
      *req.mutable_task() = spec;
      req.SerializeToString(&bytes);
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_[spec.task_id()] = e;
      }
    }
    e->presend = false;
    if (sent || e->ch.Send(bytes, fds)) {
      while (true) {
        std::string msg;
        std::vector<int> out_fds;
        if (!e->ch.Recv(&msg, &out_fds, &error)) break;
        v1::ExecReply reply;
        if (!reply.ParseFromString(msg)) {
          for (int fd : out_fds) close(fd);
          break;
        }
        if (reply.has_log()) {
          Emit([&](v1::FromWorker* f) { *f->add_logs() = reply.log(); });
          continue;
        }
        if (reply.has_kv()) {
          for (int fd : out_fds) close(fd);
          v1::KvRequest q = reply.kv();
          q.set_task_id(spec.task_id());
          Emit([&](v1::FromWorker* f) { *f->add_kv() = std::move(q); });
          continue;
        }
        if (reply.has_checkpoint()) {
          AdoptCheckpoint(spec, reply.checkpoint(), out_fds);
          continue;
        }
        if (!reply.has_result()) {
          for (int fd : out_fds) close(fd);
          continue;
        }
        result = reply.result();
        result.set_task_id(spec.task_id());
        if (result.status() == v1::TaskResult::OK) AdoptOutputs(spec, &result, out_fds);
        else
          for (int fd : out_fds) close(fd);
        return result;
      }
    }
    // The executor died with the task.
    {
      std::lock_guard<std::mutex> lock(mu_);
      e->dead = true;
    }
    int status = 0;
    if (e->pid > 0 && waitpid(e->pid, &status, 0) == e->pid) e->pid = -1;
    result.set_finished_ms(NowMs());
    result.set_retryable(true);
    if (e->timed_out) {
      result.set_status(v1::TaskResult::TIMED_OUT);
      result.set_error("the task ran past its timeout of " + std::to_string(spec.timeout_ms()) + " ms");
    } else if (e->cancelled) {
      result.set_status(v1::TaskResult::CANCELLED);
      result.set_error("cancelled");
    } else {
      result.set_status(v1::TaskResult::CRASHED);
      result.set_error(SignalText(status));
    }
    return result;
  }

  // A running task's checkpoint: into this node's store, and the head is told
  // where it is (it copies the checkpoint to the run directory).
  void AdoptCheckpoint(const v1::TaskSpec& spec, const v1::Checkpoint& c, std::vector<int>& fds) {
    std::string error;
    if (fds.size() != 1 || spec.job_id().empty() || c.epoch() < 0) {
      for (int fd : fds) close(fd);
      return;
    }
    std::string id = spec.job_id() + "/" + spec.stage() + "/__checkpoint/" + std::to_string(spec.attempt()) + "." +
                     std::to_string(c.epoch());
    auto buf = objects::Buffer::FromFd(fds[0], c.size(), &error);
    if (!buf || !store_->Put(id, std::move(buf), &error)) {
      Log(spec, "warning: cannot store the checkpoint of epoch " + std::to_string(c.epoch()) + ": " + error);
      return;
    }
    v1::CheckpointNote note;
    note.set_task_id(spec.task_id());
    note.set_epoch(c.epoch());
    note.mutable_object()->set_id(id);
    note.mutable_object()->set_size(c.size());
    Emit([&](v1::FromWorker* f) { *f->add_checkpoints() = std::move(note); });
  }

  void Log(const v1::TaskSpec& spec, const std::string& line) {
    v1::LogLine l;
    l.set_job_id(spec.job_id());
    l.set_stage(spec.stage());
    l.set_index(spec.index());
    l.set_ts_ms(NowMs());
    l.set_kind(v1::LogLine::WARNING);
    l.set_line(line);
    Emit([&](v1::FromWorker* f) { *f->add_logs() = std::move(l); });
  }

  void AdoptOutputs(const v1::TaskSpec& spec, v1::TaskResult* result, std::vector<int>& fds) {
    std::string error;
    if (static_cast<int>(fds.size()) != result->outputs_size() || result->outputs_size() != spec.output_ids_size()) {
      for (int fd : fds) close(fd);
      result->set_status(v1::TaskResult::FAILED);
      result->set_error("the executor returned a wrong number of outputs");
      return;
    }
    for (int i = 0; i < result->outputs_size(); ++i) {
      auto* ref = result->mutable_outputs(i);
      ref->set_id(spec.output_ids(i));
      auto buf = objects::Buffer::FromFd(fds[static_cast<size_t>(i)], ref->size(), &error);
      if (!buf || !store_->Put(ref->id(), std::move(buf), &error)) {
        for (size_t j = static_cast<size_t>(i) + 1; j < fds.size(); ++j) close(fds[j]);
        result->set_status(v1::TaskResult::FAILED);
        result->set_error("cannot store an output: " + error);
        return;
      }
      ref->clear_locations();
      auto* loc = ref->add_locations();
      loc->set_node_id(node_id_);
      loc->set_address(address_);
    }
  }

  void ActorLoop(Exec* e, std::unique_lock<std::mutex>& lock) {
    v1::ActorSpec spec = actor_specs_[e->actor_id];
    lock.unlock();
    v1::ExecRequest req;
    *req.mutable_create_actor() = spec;
    std::string bytes, error, msg;
    std::vector<int> fds;
    req.SerializeToString(&bytes);
    bool alive = e->ch.Send(bytes);
    v1::ActorEvent ev;
    ev.set_actor_id(spec.actor_id());
    ev.set_kind(v1::ActorEvent::DIED);
    if (alive && e->ch.Recv(&msg, &fds, &error)) {
      v1::ExecReply reply;
      if (reply.ParseFromString(msg) && reply.has_actor_event()) ev = reply.actor_event();
    }
    Emit([&](v1::FromWorker* f) { *f->add_actor_events() = ev; });
    alive = alive && ev.kind() == v1::ActorEvent::CREATED;
    lock.lock();
    while (alive && !stopping_) {
      e->cv.wait(lock, [&] { return stopping_ || !e->calls.empty(); });
      if (stopping_) break;
      // Pipeline: send every queued call, then read their results in order.
      // At most 64 in flight: the socket buffers then hold every request and
      // reply, so neither side blocks writing while the other is writing too.
      size_t take = std::min<size_t>(e->calls.size(), 64);
      std::vector<v1::ActorCall> batch(e->calls.begin(), e->calls.begin() + static_cast<long>(take));
      e->calls.erase(e->calls.begin(), e->calls.begin() + static_cast<long>(take));
      lock.unlock();
      size_t sent = 0;
      for (auto& c : batch) {
        v1::ExecRequest r;
        *r.mutable_call() = c;
        r.SerializeToString(&bytes);
        if (!e->ch.Send(bytes)) break;
        ++sent;
      }
      v1::FromWorker out;
      size_t got = 0;
      while (got < sent) {
        fds.clear();
        if (!e->ch.Recv(&msg, &fds, &error)) break;
        v1::ExecReply reply;
        if (reply.ParseFromString(msg) && reply.has_call_result()) {
          *out.add_call_results() = reply.call_result();
          ++got;
        }
      }
      for (size_t i = got; i < batch.size(); ++i) {
        auto* r = out.add_call_results();
        r->set_call_id(batch[i].call_id());
        r->set_error("the actor's process died");
      }
      Emit([&](v1::FromWorker* f) { f->MergeFrom(out); });
      lock.lock();
      if (got < batch.size()) alive = false;
    }
    if (!stopping_) {
      int status = 0;
      if (e->pid > 0) {
        kill(e->pid, SIGKILL);
        waitpid(e->pid, &status, 0);
      }
      e->pid = -1;
      v1::ActorEvent died;
      died.set_actor_id(spec.actor_id());
      died.set_kind(v1::ActorEvent::DIED);
      died.set_error(SignalText(status));
      Emit([&](v1::FromWorker* f) { *f->add_actor_events() = died; });
    }
    e->dead = true;
    e->busy = false;
    available_ = sched::Add(available_, ToSched(spec.resources()));
    actors_.erase(e->actor_id);
    StartLocked();
  }

  // Kills executors whose task ran past its timeout; reaps dead executors.
  void WatchdogLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(50));
      int64_t now = MonoUs();
      for (auto& e : execs_) {
        if (e->busy && e->deadline_us && now > e->deadline_us && e->pid > 0 && !e->timed_out) {
          e->timed_out = true;
          kill(e->pid, SIGKILL);
        }
      }
      // Drop executors that died while idle or finished their actor.
      for (auto it = execs_.begin(); it != execs_.end();) {
        Exec* e = it->get();
        if (e->exited && e->pid < 0) {
          e->ch.Close();
          std::thread t = std::move(e->thread);
          it = execs_.erase(it);
          lock.unlock();
          if (t.joinable()) t.join();
          lock.lock();
        } else {
          ++it;
        }
      }
    }
  }

  // --- the head -----------------------------------------------------------------------------------

  bool Register(std::string* error) {
    v1::RegisterRequest req;
    auto* n = req.mutable_node();
    n->set_address(address_);
    *n->mutable_total() = opt_.resources;
    for (const auto& [k, v] : opt_.labels) (*n->mutable_labels())[k] = v;
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    n->set_hostname(host);
    n->set_pid(getpid());
    n->set_node_key(opt_.node_key);
    grpc::ClientContext ctx;
    AddToken(&ctx, opt_.sec.token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::RegisterReply reply;
    grpc::Status st = head_->Register(&ctx, req, &reply);
    if (!st.ok()) {
      *error = st.error_message();
      return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    node_id_ = reply.node_id();
    heartbeat_ms_ = std::max<uint32_t>(50, reply.heartbeat_ms());
    return true;
  }

  void HeartbeatLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(heartbeat_ms_));
      if (stopping_) break;
      v1::HeartbeatRequest req;
      req.set_node_id(node_id_);
      req.set_running_tasks(static_cast<uint32_t>(running_.size()));
      lock.unlock();
      auto stats = store_->Stats();
      req.set_objects(stats.objects);
      req.set_object_bytes(stats.bytes_in_memory + stats.bytes_spilled);
      grpc::ClientContext ctx;
      AddToken(&ctx, opt_.sec.token);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      v1::HeartbeatReply reply;
      grpc::Status st = head_->Heartbeat(&ctx, req, &reply);
      if (st.ok() && !reply.known()) {
        std::string error;
        Register(&error);  // the head restarted or gave up on us: join again
      }
      lock.lock();
    }
  }

  AgentOptions opt_;
  ObjectClient objects_;
  std::unique_ptr<objects::Store> store_;
  std::unique_ptr<ObjectServiceImpl> object_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Head::Stub> head_;
  std::string address_, node_id_;
  uint32_t heartbeat_ms_ = 500;
  bool owns_spill_dir_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  sched::ResourceSet available_;
  std::deque<std::unique_ptr<v1::TaskSpec>> queue_;
  std::vector<std::pair<Exec*, std::string>>* presend_ = nullptr;  // set while Handle() starts tasks
  std::unordered_set<std::string> seen_tasks_;
  std::deque<std::string> seen_order_;
  std::unordered_map<std::string, Exec*> running_;
  std::unordered_map<std::string, std::string> plans_;
  std::vector<std::unique_ptr<Exec>> execs_;
  std::deque<v1::ActorSpec> actor_queue_;
  std::unordered_map<std::string, Exec*> actors_;
  std::unordered_map<std::string, v1::ActorSpec> actor_specs_;

  std::mutex out_mu_;
  std::condition_variable out_cv_;
  v1::FromWorker outbox_;
  bool has_out_ = false, writing_ = false;
  grpc::ServerReaderWriter<v1::FromWorker, v1::ToWorker>* stream_ = nullptr;
  uint64_t stream_gen_ = 0, writer_stop_ = 0;
  std::shared_ptr<LocalLink> link_;  // this agent's in-process link
  bool local_on_ = false;            // a head in this process is attached (under out_mu_)
  std::thread local_writer_;

  std::mutex spawn_mu_;
  std::condition_variable spawn_cv_;
  uint64_t spawn_requests_ = 0;
  std::map<uint64_t, int> spawn_fds_;
  std::map<uint64_t, pid_t> spawn_results_;

  std::thread heartbeat_, watchdog_, spawner_;
};

Agent::Agent(AgentOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Agent::~Agent() = default;
bool Agent::Start(std::string* error, int register_timeout_ms) { return impl_->Start(error, register_timeout_ms); }
void Agent::Wait() { impl_->Wait(); }
void Agent::Shutdown() { impl_->Shutdown(); }
const std::string& Agent::address() const { return impl_->address(); }
const std::string& Agent::node_id() const { return impl_->node_id(); }

}  // namespace mlp::rt
