// The scheduler: a pure, deterministic policy function (no I/O, clocks or threads).
// The head calls it with its view of the cluster and its queue; it says what to start where.
//
// Cost: O(queue x eligible nodes x resources the request needs), plus O(nodes log nodes) once per call. A request
// that does not fit marks its shape (resources + labels) as not fitting for the rest of the call, since capacity only
// shrinks within a call; a long backlog of identical tasks therefore costs O(1) each once the cluster is full.
// A gang of `count` tasks costs O(count x eligible nodes) at most.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/sched/resources.h"

namespace mlp::rt::sched {

struct Node {
  std::string id;
  ResourceSet total;
  ResourceSet available;
  std::map<std::string, std::string> labels;
  bool alive = true;  // dead nodes are ignored, for placement and for feasibility
};

enum class Strategy {
  kPack,    // best fit: the fitting node with the least room left, keeping other nodes free
  kSpread,  // the node with the fewest tasks placed by this call, then the most room; a gang's members go to
            // distinct nodes whenever enough distinct nodes fit
};

// The most tasks one gang may have; a larger count is rejected as invalid rather than attempted.
inline constexpr uint32_t kMaxGangSize = 65536;

// One task, or one gang of `count` tasks that start together or not at all.
struct Request {
  std::string id;  // task or gang id, opaque here
  ResourceSet per_task;
  uint32_t count = 1;
  Strategy strategy = Strategy::kPack;
  std::map<std::string, std::string> labels;  // a node must have every label, with that value
  // For messages only: the stage name ("train big") and where it is written ("q.mlp:12:1"); either may be empty.
  std::string stage;
  std::string location;
};

struct Placement {
  std::string request_id;
  std::vector<std::string> node_ids;  // one per task, in task order; size() == count
};

// A request that cannot run on this cluster even when it is idle, or that is malformed.
struct Infeasible {
  std::string request_id;
  std::string message;  // e.g. "stage `train big` (q.mlp:12:1) needs gpu 4 per task; the largest node has gpu 1"
};

struct Decision {
  std::vector<Placement> placed;          // in queue order
  std::vector<Infeasible> infeasible;     // in queue order
  std::vector<std::string> waiting;       // request ids, in queue order: feasible but no room now
};

// Places as much of `queue`, in order, as fits in the alive nodes' `available` resources; each placement reduces a
// local copy of availability, so later requests see it. Nothing is held back for a request that waits: smaller
// requests behind a waiting gang may still be placed (backfill); avoiding starvation is the caller's job (ordering).
// Feasibility is judged on the alive nodes' `total`, as if the cluster were idle, including for gangs.
// Ties are broken by node id, so the same input always gives the same output.
Decision Schedule(const std::vector<Node>& nodes, const std::vector<Request>& queue);

}  // namespace mlp::rt::sched
