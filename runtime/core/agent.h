// The worker agent (`mlpc worker`): registers with the head and heartbeats,
// serves the Worker and ObjectTransfer services, keeps the node's object
// store, and runs tasks and actors in executor processes it starts and
// restarts, so a crashing task never takes the agent down.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common.pb.h"
#include "runtime/core/rpc.h"

namespace mlp::rt {

struct AgentOptions {
  std::string head;                 // the head's address (host:port or unix:/path)
  std::string listen = "127.0.0.1:0";  // where this agent's server listens; port 0 picks one
  std::string advertise_host;       // the host others reach this node by (default: from `listen`)
  Security sec;
  v1::Resources resources;          // what this node offers
  std::map<std::string, std::string> labels;
  uint64_t object_store_bytes = 2ull << 30;
  std::string spill_dir;            // default: a temporary directory
  std::string executable;           // the mlpc binary that runs executors (default /proc/self/exe)
  uint32_t max_executors = 0;       // 0: 4 x cpus + 4
  std::string node_key;             // stable identity across re-registrations (default: random)
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  // Starts the server and registers with the head (retrying for up to
  // `register_timeout_ms`). False with a message when either fails.
  bool Start(std::string* error, int register_timeout_ms = 10000);
  // Blocks until Shutdown() or the Shutdown RPC.
  void Wait();
  void Shutdown();
  const std::string& address() const;
  const std::string& node_id() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlp::rt
