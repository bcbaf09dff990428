// The head (`mlpc head`, or embedded in `mlpc run`): the node table and the
// cluster's resource view, the scheduler loop, one control stream per worker,
// jobs (runs of compiled plans) with retries, node-loss recovery and lineage
// reconstruction, the stage-output cache, and the SQLite metadata store.
// It also serves the client API the benchmarks and tests drive in-process:
// tasks of registered functions, actors and placement groups.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common.pb.h"
#include "head.pb.h"
#include "runtime/core/rpc.h"

namespace mlp::rt {

struct HeadOptions {
  std::string listen = "127.0.0.1:0";   // port 0 picks one; or unix:/path
  Security sec;
  std::string state_dir = ".mlpc";      // state.db, and runs/<run id>/ for outputs and reports
  uint32_t heartbeat_ms = 300;
  uint32_t heartbeat_timeout_ms = 3000; // a node silent this long is declared dead
  uint32_t max_node_losses = 5;         // per task: attempts lost with their node before the task fails
  uint64_t object_store_bytes = 1ull << 30;
  uint32_t pipeline_depth = 32;         // client-API tasks queued on a node beyond those it runs
  // Mark runs a previous head left `running` as failed. Off for the embedded
  // head of `mlpc run`, which shares the run store with other local runs.
  bool mark_interrupted_runs = true;
};

struct TaskCall {
  std::string function;
  std::string args;
  v1::Resources resources;
  std::vector<uint64_t> deps;           // task handles whose results are appended to args, in order
};

class Head {
 public:
  explicit Head(HeadOptions options);
  ~Head();
  bool Start(std::string* error);
  const std::string& address() const;
  void Shutdown();
  void Wait();

  // --- jobs -----------------------------------------------------------------------------------
  // `plan` is a serialized mlp.plan.v1.Plan. Fails (with a located message)
  // when a stage has no runtime implementation.
  bool SubmitJob(const std::string& plan, const v1::JobOptions& options, const std::string& submission_id,
                 std::string* job_id, std::string* error);
  // Calls `fn` for each event after `after_seq`, in order, until the job ends
  // (the JobDone event is the last) or `fn` returns false.
  void WatchJob(const std::string& job_id, uint64_t after_seq, const std::function<bool(const v1::JobEvent&)>& fn);
  bool GetJob(const std::string& job_id, v1::JobReport* report);
  bool CancelJob(const std::string& job_id);
  v1::ClusterStatusReply ClusterStatus();
  size_t AliveNodes();

  // --- client API ---------------------------------------------------------------------------------
  using TaskDone = std::function<void(const v1::TaskResult&)>;
  // Returns a handle usable in later calls' `deps`. `done` runs on a head thread.
  uint64_t SubmitTask(TaskCall call, TaskDone done);
  using ActorReady = std::function<void(bool ok, const std::string& error)>;
  std::string CreateActor(const std::string& class_name, const std::string& args, const v1::Resources& resources,
                          uint32_t max_restarts, ActorReady ready);
  using CallDone = std::function<void(const v1::ActorCallResult&)>;
  void CallActor(const std::string& actor_id, const std::string& method, const std::string& args, CallDone done);
  void KillActor(const std::string& actor_id);
  // Reserves `count` bundles of `resources` (all or none); `ready` runs once placed.
  using GroupReady = std::function<void(bool ok, const std::string& error)>;
  std::string CreatePlacementGroup(uint32_t count, const v1::Resources& resources, bool spread, GroupReady ready);
  void RemovePlacementGroup(const std::string& group_id);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlp::rt
