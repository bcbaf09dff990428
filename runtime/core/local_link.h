// In-process links between a head and the worker agents of the same process
// (the embedded cluster of `mlpc run`, benchmarks, tests). They carry the same
// ToWorker/FromWorker messages as the Worker.Execute stream and go through the
// same handlers on both sides; only the transport differs: a function call
// instead of serialising into gRPC, a socket and a thread hop each way. An
// agent registers its address; a head that connects to that address finds the
// link and uses it. Agents in other processes keep using gRPC, and so does
// every agent when MLPC_LOCAL_LINK=0.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "worker.pb.h"

namespace mlp::rt {

class LocalLink {
 public:
  using ToWorkerFn = std::function<void(const v1::ToWorker&)>;
  using FromWorkerFn = std::function<void(const v1::FromWorker&)>;

  // `agent` handles the head's messages; `on_attach` runs when a head attaches.
  LocalLink(ToWorkerFn agent, std::function<void()> on_attach)
      : agent_(std::move(agent)), on_attach_(std::move(on_attach)) {}

  // Head side. The head's messages reach the agent's handler on the calling
  // thread; false once the agent is gone.
  bool ToWorker(const v1::ToWorker& m);
  // Attaches the head: `sink` gets the agent's messages, `closed` runs once
  // when the agent shuts down.
  void AttachHead(FromWorkerFn sink, std::function<void()> closed);
  // Detaches the head; with `wait`, also waits for deliveries to it that are
  // in flight (not from inside one, nor while holding a lock they need).
  void DetachHead(bool wait);

  // Agent side: a message for the head; false when no head is attached.
  bool FromWorker(const v1::FromWorker& m);
  // The agent shuts down: tells the head, then waits for deliveries in flight.
  void CloseAgent();

 private:
  // Calls `target` (read under the lock) outside the lock, counted in `in_flight`.
  template <typename Fn, typename Msg>
  bool Deliver(const Fn& target, int* in_flight, const Msg& m);

  std::mutex mu_;
  std::condition_variable cv_;
  ToWorkerFn agent_;
  std::function<void()> on_attach_;
  FromWorkerFn head_;
  std::function<void()> closed_;
  int to_worker_ = 0, from_worker_ = 0;  // deliveries in flight
};

// The process-wide table of agents reachable in process, by address.
std::shared_ptr<LocalLink> RegisterLocalAgent(const std::string& address, LocalLink::ToWorkerFn agent,
                                              std::function<void()> on_attach);
void UnregisterLocalAgent(const std::string& address);
std::shared_ptr<LocalLink> FindLocalAgent(const std::string& address);

}  // namespace mlp::rt
