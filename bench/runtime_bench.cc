// Runtime microbenchmarks, named after Ray's (ray/_private/ray_perf.py) so the
// figures compare: tasks sync/async, actor calls 1:1 sync/async and n:n async,
// put/get gigabytes per second, placement group create/remove per second;
// plus a 10,000-task no-op DAG and a 1,000-task dependent chain, which
// bench/runtime_bench.sh also runs on Dask distributed in the same run.
//
// Usage: runtime_bench MLPC_BINARY [--quick]
// A head and one worker agent run in this process (as `mlpc run` embeds
// them); the worker's executors are real processes of MLPC_BINARY.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/agent.h"
#include "runtime/core/head.h"
#include "runtime/core/object_service.h"
#include "runtime/objects/store.h"

namespace fs = std::filesystem;
using namespace mlp::rt;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void Print(const std::string& name, double value, const char* unit) {
  std::printf("%s: %.6g %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}

class Waiter {
 public:
  void Add(int n = 1) {
    std::lock_guard<std::mutex> l(mu_);
    pending_ += n;
  }
  void Done() {
    std::lock_guard<std::mutex> l(mu_);
    if (--pending_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return pending_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int pending_ = 0;
};

v1::Resources Cpu(double c) {
  v1::Resources r;
  r.set_cpu_milli(static_cast<int64_t>(c * 1000));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: runtime_bench MLPC_BINARY [--quick]\n");
    return 2;
  }
  bool quick = argc > 2 && std::string(argv[2]) == "--quick";
  int scale = quick ? 10 : 1;
  fs::path dir = fs::temp_directory_path() / ("mlpc_bench_" + std::to_string(getpid()));
  fs::create_directories(dir / "spill");
  HeadOptions ho;
  ho.listen = "unix:" + (dir / "head.sock").string();
  ho.sec.token = RandomToken();
  ho.state_dir = (dir / "state").string();
  Head head(ho);
  std::string error;
  if (!head.Start(&error)) {
    std::fprintf(stderr, "head: %s\n", error.c_str());
    return 1;
  }
  AgentOptions ao;
  ao.head = head.address();
  ao.listen = "unix:" + (dir / "worker.sock").string();
  ao.sec = ho.sec;
  unsigned cpus = std::max(2u, std::thread::hardware_concurrency());
  ao.resources.set_cpu_milli(cpus * 1000);
  ao.resources.set_memory_bytes(8ll << 30);
  ao.executable = argv[1];
  ao.spill_dir = (dir / "spill").string();
  ao.object_store_bytes = 2ull << 30;
  Agent agent(ao);
  if (!agent.Start(&error)) {
    std::fprintf(stderr, "worker: %s\n", error.c_str());
    return 1;
  }
  std::fprintf(stderr, "runtime_bench: head + 1 worker (%u cpus), executors from %s\n", cpus, argv[1]);

  auto noop = [&](std::vector<uint64_t> deps = {}) {
    TaskCall c;
    c.function = "noop";
    c.resources = Cpu(1);
    c.deps = std::move(deps);
    return c;
  };

  // Warm up: start the executors.
  {
    Waiter w;
    w.Add(200);
    for (int i = 0; i < 200; ++i) head.SubmitTask(noop(), [&](const v1::TaskResult&) { w.Done(); });
    w.Wait();
  }

  // single_client_tasks_sync: one task at a time, each waited for.
  {
    int n = 5000 / scale;
    std::vector<double> lat;
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      std::promise<void> p;
      auto s = Clock::now();
      head.SubmitTask(noop(), [&](const v1::TaskResult&) { p.set_value(); });
      p.get_future().wait();
      lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
    }
    double secs = Seconds(t0, Clock::now());
    std::sort(lat.begin(), lat.end());
    Print("single_client_tasks_sync", n / secs, "tasks/s");
    Print("single_client_tasks_sync_p50", lat[lat.size() / 2], "us");
    Print("single_client_tasks_sync_p99", lat[lat.size() * 99 / 100], "us");
  }

  // single_client_tasks_async: submit them all, then wait.
  {
    int n = 50000 / scale;
    Waiter w;
    w.Add(n);
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) head.SubmitTask(noop(), [&](const v1::TaskResult&) { w.Done(); });
    w.Wait();
    Print("single_client_tasks_async", n / Seconds(t0, Clock::now()), "tasks/s");
  }

  // Actors.
  std::vector<std::string> actors;
  for (int i = 0; i < 2; ++i) {
    std::promise<bool> ready;
    actors.push_back(head.CreateActor("counter", "0", Cpu(0.5), 0, [&](bool ok, const std::string&) { ready.set_value(ok); }));
    if (!ready.get_future().get()) {
      std::fprintf(stderr, "actor failed to start\n");
      return 1;
    }
  }
  {
    int n = 5000 / scale;
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      std::promise<void> p;
      head.CallActor(actors[0], "noop", "", [&](const v1::ActorCallResult&) { p.set_value(); });
      p.get_future().wait();
    }
    Print("1_1_actor_calls_sync", n / Seconds(t0, Clock::now()), "calls/s");
  }
  {
    int n = 50000 / scale;
    Waiter w;
    w.Add(n);
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) head.CallActor(actors[0], "noop", "", [&](const v1::ActorCallResult&) { w.Done(); });
    w.Wait();
    Print("1_1_actor_calls_async", n / Seconds(t0, Clock::now()), "calls/s");
  }
  {
    int per = 25000 / scale;
    Waiter w;
    w.Add(per * 2);
    auto t0 = Clock::now();
    std::vector<std::thread> clients;
    for (int a = 0; a < 2; ++a)
      clients.emplace_back([&, a] {
        for (int i = 0; i < per; ++i)
          head.CallActor(actors[static_cast<size_t>(a)], "noop", "", [&](const v1::ActorCallResult&) { w.Done(); });
      });
    for (auto& t : clients) t.join();
    w.Wait();
    Print("n_n_actor_calls_async", per * 2 / Seconds(t0, Clock::now()), "calls/s");
  }
  for (auto& a : actors) head.KillActor(a);

  // Put / get: objects into the worker's store and back, through the chunked transfer.
  {
    ObjectClient client(ho.sec);
    objects::Store local({4ull << 30, (dir / "spill").string()});
    size_t size = quick ? (64u << 20) : (256u << 20);
    int reps = quick ? 2 : 4;
    std::string data(size, '\x5a');
    double put_s = 0, get_s = 0;
    for (int i = 0; i < reps; ++i) {
      std::string id = "bench-" + std::to_string(i);
      auto t0 = Clock::now();
      if (!client.Push(agent.address(), id, data, &error)) std::fprintf(stderr, "push: %s\n", error.c_str());
      auto t1 = Clock::now();
      if (!client.Pull(agent.address(), id, size, &local, &error)) std::fprintf(stderr, "pull: %s\n", error.c_str());
      auto t2 = Clock::now();
      local.Delete(id);
      put_s += Seconds(t0, t1);
      get_s += Seconds(t1, t2);
    }
    double gb = static_cast<double>(size) * reps / 1e9;
    Print("single_client_put_gigabytes", gb / put_s, "GB/s");
    Print("single_client_get_gigabytes", gb / get_s, "GB/s");
  }

  // Placement groups: create (wait until placed) and remove.
  {
    int n = 2000 / scale;
    double create_s = 0, remove_s = 0;
    for (int i = 0; i < n; ++i) {
      std::promise<bool> ok;
      auto t0 = Clock::now();
      std::string g = head.CreatePlacementGroup(1, Cpu(1), false, [&](bool o, const std::string&) { ok.set_value(o); });
      ok.get_future().wait();
      auto t1 = Clock::now();
      head.RemovePlacementGroup(g);
      remove_s += Seconds(t1, Clock::now());
      create_s += Seconds(t0, t1);
    }
    Print("placement_group_create_per_second", n / create_s, "groups/s");
    Print("placement_group_remove_per_second", n / remove_s, "groups/s");
  }

  // A 10,000-task no-op DAG: 100 layers of 100 tasks, each task waiting for
  // two of the layer before.
  {
    const int width = 100, depth = 100;
    Waiter w;
    w.Add(width * depth);
    auto t0 = Clock::now();
    std::vector<uint64_t> prev(width), cur(width);
    for (int l = 0; l < depth; ++l) {
      for (int i = 0; i < width; ++i) {
        std::vector<uint64_t> deps;
        if (l > 0) deps = {prev[static_cast<size_t>(i)], prev[static_cast<size_t>((i + 1) % width)]};
        cur[static_cast<size_t>(i)] = head.SubmitTask(noop(deps), [&](const v1::TaskResult&) { w.Done(); });
      }
      std::swap(prev, cur);
    }
    w.Wait();
    Print("dag_10000_noop_tasks", Seconds(t0, Clock::now()), "s");
  }

  // A chain of 1,000 dependent tasks, each adding one to its predecessor's result.
  {
    const int n = 1000;
    std::promise<v1::TaskResult> last;
    auto t0 = Clock::now();
    uint64_t prev = 0;
    for (int i = 0; i < n; ++i) {
      TaskCall c;
      c.function = "inc";
      c.resources = Cpu(1);
      if (i == 0) c.args = "0";
      else c.deps = {prev};
      prev = head.SubmitTask(c, i == n - 1 ? Head::TaskDone([&](const v1::TaskResult& r) { last.set_value(r); })
                                            : Head::TaskDone());
    }
    auto r = last.get_future().get();
    double secs = Seconds(t0, Clock::now());
    if (r.value() != std::to_string(n)) std::fprintf(stderr, "chain: wrong result %s\n", r.value().c_str());
    Print("chain_1000_tasks", secs, "s");
  }

  agent.Shutdown();
  head.Shutdown();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
