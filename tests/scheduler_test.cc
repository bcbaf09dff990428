// The scheduler: placement policy, gangs, feasibility messages, and invariants on random clusters.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <utility>

#include "runtime/sched/scheduler.h"

namespace mlp::rt::sched {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

ResourceSet R(int64_t cpu_milli, int64_t gpu_milli = 0, int64_t memory_bytes = 0,
              std::map<std::string, int64_t> custom = {}) {
  ResourceSet r;
  r.cpu_milli = cpu_milli;
  r.gpu_milli = gpu_milli;
  r.memory_bytes = memory_bytes;
  r.custom_milli = std::move(custom);
  return r;
}

Node N(std::string id, ResourceSet total, std::map<std::string, std::string> labels = {}) {
  Node n;
  n.id = std::move(id);
  n.total = total;
  n.available = std::move(total);
  n.labels = std::move(labels);
  return n;
}

Request Q(std::string id, ResourceSet per_task, uint32_t count = 1, Strategy strategy = Strategy::kPack,
          std::map<std::string, std::string> labels = {}) {
  Request r;
  r.id = std::move(id);
  r.per_task = std::move(per_task);
  r.count = count;
  r.strategy = strategy;
  r.labels = std::move(labels);
  return r;
}

std::vector<std::string> PlacedOn(const Decision& d, const std::string& id) {
  for (const Placement& p : d.placed) {
    if (p.request_id == id) return p.node_ids;
  }
  return {};
}

std::string MessageOf(const Decision& d, const std::string& id) {
  for (const Infeasible& i : d.infeasible) {
    if (i.request_id == id) return i.message;
  }
  return "";
}

using Ids = std::vector<std::string>;

// --- An independent oracle, on ResourceSet rather than the scheduler's flat arrays. ---

bool LabelsMatch(const Node& n, const Request& r) {
  for (const auto& [k, v] : r.labels) {
    auto it = n.labels.find(k);
    if (it == n.labels.end() || it->second != v) return false;
  }
  return true;
}

// Tasks of `need` that fit in `have`, capped at `cap`.
uint64_t Capacity(const ResourceSet& need, const ResourceSet& have, uint64_t cap) {
  uint64_t k = cap;
  auto dim = [&k](int64_t n, int64_t h) {
    if (n > 0) k = std::min<uint64_t>(k, h < n ? 0 : static_cast<uint64_t>(h / n));
  };
  dim(need.cpu_milli, have.cpu_milli);
  dim(need.gpu_milli, have.gpu_milli);
  dim(need.memory_bytes, have.memory_bytes);
  for (const auto& [name, v] : need.custom_milli) {
    auto it = have.custom_milli.find(name);
    dim(v, it == have.custom_milli.end() ? 0 : it->second);
  }
  return k;
}

uint64_t ClusterCapacity(const std::vector<Node>& nodes, const std::vector<ResourceSet>& amounts, const Request& r) {
  uint64_t sum = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].alive && LabelsMatch(nodes[i], r)) sum += Capacity(r.per_task, amounts[i], r.count);
  }
  return sum;
}

// Checks every invariant of a decision; the queue's ids must be unique.
void CheckDecision(const std::vector<Node>& nodes, const std::vector<Request>& queue, const Decision& d) {
  std::map<std::string, size_t> node_index;
  for (size_t i = 0; i < nodes.size(); ++i) node_index[nodes[i].id] = i;
  std::map<std::string, const Request*> by_id;
  for (const Request& r : queue) by_id[r.id] = &r;

  // Each request lands in exactly one list, and each list keeps queue order.
  std::map<std::string, int> seen;
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < queue.size(); ++i) position[queue[i].id] = i;
  auto in_order = [&position](const Ids& ids) {
    for (size_t i = 1; i < ids.size(); ++i) {
      if (position.at(ids[i - 1]) >= position.at(ids[i])) return false;
    }
    return true;
  };
  Ids placed_ids, infeasible_ids;
  for (const Placement& p : d.placed) placed_ids.push_back(p.request_id);
  for (const Infeasible& i : d.infeasible) infeasible_ids.push_back(i.request_id);
  EXPECT_TRUE(in_order(placed_ids));
  EXPECT_TRUE(in_order(infeasible_ids));
  EXPECT_TRUE(in_order(d.waiting));
  for (const Ids* list : {&std::as_const(placed_ids), &std::as_const(infeasible_ids), &d.waiting}) {
    for (const std::string& id : *list) ++seen[id];
  }
  ASSERT_EQ(seen.size(), queue.size());
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;

  // Placements: exactly `count` members, on alive nodes with the labels, never over-committing a node.
  std::vector<ResourceSet> used(nodes.size());
  for (const Placement& p : d.placed) {
    const Request& r = *by_id.at(p.request_id);
    ASSERT_EQ(p.node_ids.size(), r.count) << r.id;
    for (const std::string& id : p.node_ids) {
      ASSERT_TRUE(node_index.contains(id)) << id;
      const Node& n = nodes[node_index[id]];
      EXPECT_TRUE(n.alive) << id;
      EXPECT_TRUE(LabelsMatch(n, r)) << r.id << " on " << id;
      used[node_index[id]] = Add(used[node_index[id]], r.per_task);
    }
  }
  // Every amount in use was available (an amount nobody uses may be negative: the caller's bookkeeping).
  std::vector<ResourceSet> left(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    left[i] = Subtract(nodes[i].available, used[i]);
    bool ok = true;
    auto check = [&ok](int64_t u, int64_t l) { ok = ok && (u == 0 || l >= 0); };
    check(used[i].cpu_milli, left[i].cpu_milli);
    check(used[i].gpu_milli, left[i].gpu_milli);
    check(used[i].memory_bytes, left[i].memory_bytes);
    for (const auto& [name, u] : used[i].custom_milli) {  // Add drops zeros: these are the ones in use
      auto l = left[i].custom_milli.find(name);
      check(u, l == left[i].custom_milli.end() ? 0 : l->second);
    }
    EXPECT_TRUE(ok) << nodes[i].id << " uses " << ToString(used[i]) << " of " << ToString(nodes[i].available);
  }
  std::vector<ResourceSet> totals;
  for (const Node& n : nodes) totals.push_back(n.total);

  // Infeasible requests cannot fit the idle cluster; waiting ones could, but do not fit what is left at the end
  // (capacity only shrinks during a call, so they did not fit when their turn came either).
  for (const Infeasible& i : d.infeasible) {
    const Request& r = *by_id.at(i.request_id);
    EXPECT_FALSE(i.message.empty());
    EXPECT_LT(ClusterCapacity(nodes, totals, r), r.count) << i.message;
  }
  for (const std::string& id : d.waiting) {
    const Request& r = *by_id.at(id);
    EXPECT_GE(ClusterCapacity(nodes, totals, r), r.count) << id;
    EXPECT_LT(ClusterCapacity(nodes, left, r), r.count) << id;
  }
}

bool SameDecision(const Decision& a, const Decision& b) {
  if (a.placed.size() != b.placed.size() || a.infeasible.size() != b.infeasible.size() || a.waiting != b.waiting) {
    return false;
  }
  for (size_t i = 0; i < a.placed.size(); ++i) {
    if (a.placed[i].request_id != b.placed[i].request_id || a.placed[i].node_ids != b.placed[i].node_ids) return false;
  }
  for (size_t i = 0; i < a.infeasible.size(); ++i) {
    const Infeasible &x = a.infeasible[i], &y = b.infeasible[i];
    if (x.request_id != y.request_id || x.message != y.message) return false;
  }
  return true;
}

// --- Resources ---

TEST(Resources, FitsComparesEveryAmountAndAbsentCustomIsZero) {
  EXPECT_TRUE(Fits(R(1000, 500, kGiB), R(1000, 500, kGiB)));
  EXPECT_FALSE(Fits(R(1001), R(1000)));
  EXPECT_FALSE(Fits(R(0, 1), R(8000)));
  EXPECT_FALSE(Fits(R(0, 0, kGiB + 1), R(0, 0, kGiB)));
  EXPECT_FALSE(Fits(R(0, 0, 0, {{"tpu", 1}}), R(8000)));
  EXPECT_TRUE(Fits(R(0, 0, 0, {{"tpu", 0}}), R(8000)));
  EXPECT_TRUE(Fits(R(0, 0, 0, {{"tpu", 500}}), R(0, 0, 0, {{"tpu", 1000}})));
}

TEST(Resources, AddSubtractAndIsZero) {
  ResourceSet a = R(1500, 1000, 2 * kGiB, {{"tpu", 1000}});
  ResourceSet b = R(500, 0, kGiB, {{"tpu", 1000}, {"fpga", 2000}});
  EXPECT_EQ(Add(a, b), R(2000, 1000, 3 * kGiB, {{"tpu", 2000}, {"fpga", 2000}}));
  EXPECT_EQ(Subtract(a, b), R(1000, 1000, kGiB, {{"fpga", -2000}}));  // tpu reached 0 and is dropped
  EXPECT_TRUE(IsZero(Subtract(a, a)));
  EXPECT_TRUE(IsZero(R(0, 0, 0, {{"tpu", 0}})));
  EXPECT_FALSE(IsZero(R(0, 0, 0, {{"tpu", 1}})));
  // Saturates instead of overflowing.
  EXPECT_EQ(Add(R(INT64_MAX), R(1)).cpu_milli, INT64_MAX);
  EXPECT_EQ(Subtract(R(INT64_MIN), R(1)).cpu_milli, INT64_MIN);
}

TEST(Resources, ToStringIsReadable) {
  EXPECT_EQ(ToString(R(1500, 0, 2 * kGiB, {{"tpu", 1000}})), "cpu 1.5, gpu 0, memory 2 GiB, tpu 1");
  EXPECT_EQ(ToStringNonZero(R(2000, 0, 512 << 20)), "cpu 2, memory 512 MiB");
  EXPECT_EQ(ToStringNonZero(R(0)), "no resources");
  EXPECT_EQ(FormatMilli(1), "0.001");
  EXPECT_EQ(FormatMilli(250), "0.25");
  EXPECT_EQ(FormatMilli(-500), "-0.5");
  EXPECT_EQ(FormatMilli(INT64_MIN), "-9223372036854775.808");
  EXPECT_EQ(FormatBytes(100), "100 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(3 * kGiB / 4 * 5), "3.75 GiB");
  EXPECT_EQ(FormatBytes(2 * kGiB - 1), "1.99 GiB (2147483647 B)");
  EXPECT_EQ(FormatBytes(INT64_MAX), "7.99 EiB (9223372036854775807 B)");
}

// --- Single tasks ---

TEST(Scheduler, PlacesWhatFitsAndLaterRequestsSeeTheReducedCapacity) {
  std::vector<Node> nodes = {N("a", R(4000))};
  Decision d = Schedule(nodes, {Q("t1", R(2000)), Q("t2", R(2000)), Q("t3", R(2000))});
  EXPECT_EQ(PlacedOn(d, "t1"), Ids{"a"});
  EXPECT_EQ(PlacedOn(d, "t2"), Ids{"a"});
  EXPECT_EQ(d.waiting, Ids{"t3"});
  EXPECT_TRUE(d.infeasible.empty());
}

TEST(Scheduler, StartsFromAvailableNotTotal) {
  Node a = N("a", R(4000));
  a.available = R(1000);
  Decision d = Schedule({a}, {Q("t1", R(2000)), Q("t2", R(1000))});
  EXPECT_EQ(d.waiting, Ids{"t1"});
  EXPECT_EQ(PlacedOn(d, "t2"), Ids{"a"});
}

TEST(Scheduler, FractionalCpuAndGpu) {
  std::vector<Node> nodes = {N("a", R(1000, 1000))};
  std::vector<Request> q = {Q("g1", R(250, 500)), Q("g2", R(250, 500)), Q("g3", R(250, 500)), Q("c1", R(500))};
  Decision d = Schedule(nodes, q);
  EXPECT_EQ(PlacedOn(d, "g1"), Ids{"a"});
  EXPECT_EQ(PlacedOn(d, "g2"), Ids{"a"});
  EXPECT_EQ(PlacedOn(d, "c1"), Ids{"a"});  // the last half cpu
  EXPECT_EQ(d.waiting, Ids{"g3"});
  CheckDecision(nodes, q, d);
}

TEST(Scheduler, Memory) {
  std::vector<Node> nodes = {N("a", R(8000, 0, 4 * kGiB)), N("b", R(8000, 0, 16 * kGiB))};
  std::vector<Request> q = {Q("m12", R(1000, 0, 12 * kGiB)), Q("m8", R(1000, 0, 8 * kGiB)),
                            Q("m4", R(1000, 0, 4 * kGiB)), Q("m32", R(1000, 0, 32 * kGiB))};
  q[3].stage = "load";
  Decision d = Schedule(nodes, q);
  EXPECT_EQ(PlacedOn(d, "m12"), Ids{"b"});
  EXPECT_EQ(PlacedOn(d, "m4"), Ids{"b"});  // both have 4 GiB free; b has a cpu less
  EXPECT_EQ(d.waiting, Ids{"m8"});  // 4 GiB left on each node
  EXPECT_EQ(MessageOf(d, "m32"), "stage `load` needs memory 32 GiB per task; the largest node has memory 16 GiB");
}

TEST(Scheduler, CustomResources) {
  std::vector<Node> nodes = {N("a", R(8000)), N("b", R(8000, 0, 0, {{"tpu", 2000}}))};
  std::vector<Request> q = {Q("t1", R(1000, 0, 0, {{"tpu", 1500}})), Q("t2", R(1000, 0, 0, {{"tpu", 1000}})),
                            Q("t3", R(1000, 0, 0, {{"tpu", 500}})), Q("lic", R(0, 0, 0, {{"license", 1000}}))};
  Decision d = Schedule(nodes, q);
  EXPECT_EQ(PlacedOn(d, "t1"), Ids{"b"});
  EXPECT_EQ(d.waiting, Ids{"t2"});
  EXPECT_EQ(PlacedOn(d, "t3"), Ids{"b"});
  EXPECT_EQ(MessageOf(d, "lic"), "request `lic` needs license 1 per task; no node has license");
  CheckDecision(nodes, q, d);
}

TEST(Scheduler, Labels) {
  std::vector<Node> nodes = {N("a", R(8000), {{"zone", "a"}}), N("b", R(8000), {{"zone", "b"}, {"disk", "ssd"}})};
  std::vector<Request> q = {Q("za", R(1000), 1, Strategy::kPack, {{"zone", "a"}}),
                            Q("zb", R(1000), 1, Strategy::kSpread, {{"zone", "b"}}),
                            Q("ssd", R(1000), 1, Strategy::kPack, {{"disk", "ssd"}}),
                            Q("zc", R(1000), 1, Strategy::kPack, {{"zone", "c"}}),
                            Q("hdd", R(1000), 1, Strategy::kPack, {{"disk", "hdd"}, {"zone", "b"}})};
  q[3].stage = "etl";
  q[3].location = "q.mlp:3:1";
  Decision d = Schedule(nodes, q);
  EXPECT_EQ(PlacedOn(d, "za"), Ids{"a"});
  EXPECT_EQ(PlacedOn(d, "zb"), Ids{"b"});
  EXPECT_EQ(PlacedOn(d, "ssd"), Ids{"b"});
  EXPECT_EQ(MessageOf(d, "zc"), "stage `etl` (q.mlp:3:1) needs a node with labels zone=c; no alive node has them");
  EXPECT_EQ(MessageOf(d, "hdd"), "request `hdd` needs a node with labels disk=hdd, zone=b; no alive node has them");
  CheckDecision(nodes, q, d);
}

TEST(Scheduler, LabelsLimitTheLargestNodeInMessages) {
  std::vector<Node> nodes = {N("a", R(2000), {{"zone", "a"}}), N("b", R(64000), {{"zone", "b"}})};
  Request r = Q("big", R(4000), 1, Strategy::kPack, {{"zone", "a"}});
  r.stage = "train";
  Decision d = Schedule(nodes, {r});
  EXPECT_EQ(MessageOf(d, "big"), "stage `train` needs cpu 4 per task; the largest node with labels zone=a has cpu 2");
}

TEST(Scheduler, PackUsesTheTightestFittingNode) {
  std::vector<Node> nodes = {N("a", R(8000)), N("b", R(8000)), N("c", R(8000))};
  nodes[1].available = R(3000);
  // b has the least room that still fits, then once b is full, the tie between a and c goes to a.
  Decision d = Schedule(nodes, {Q("t1", R(2000)), Q("t2", R(2000)), Q("t3", R(2000))});
  EXPECT_EQ(PlacedOn(d, "t1"), Ids{"b"});
  EXPECT_EQ(PlacedOn(d, "t2"), Ids{"a"});
  EXPECT_EQ(PlacedOn(d, "t3"), Ids{"a"});
}

TEST(Scheduler, PackKeepsGpuNodesFreeForGpuWork) {
  // The gpu node sorts first, but it has more room in all, so cpu work goes to the cpu node.
  std::vector<Node> nodes = {N("a-gpu", R(8000, 4000, 32 * kGiB)), N("b-cpu", R(8000, 0, 32 * kGiB))};
  Decision d = Schedule(nodes, {Q("cpu", R(1000, 0, kGiB)), Q("gpu", R(1000, 1000, kGiB))});
  EXPECT_EQ(PlacedOn(d, "cpu"), Ids{"b-cpu"});
  EXPECT_EQ(PlacedOn(d, "gpu"), Ids{"a-gpu"});
}

TEST(Scheduler, SpreadUsesDistinctNodesThenTheMostRoom) {
  std::vector<Node> nodes = {N("a", R(8000)), N("b", R(8000)), N("c", R(8000))};
  nodes[0].available = R(4000);
  std::vector<Request> q;
  for (int i = 0; i < 4; ++i) q.push_back(Q("s" + std::to_string(i), R(1000), 1, Strategy::kSpread));
  Decision d = Schedule(nodes, q);
  // b and c have the most room (tie -> b), then a has no task yet, then c has the most room.
  EXPECT_EQ(PlacedOn(d, "s0"), Ids{"b"});
  EXPECT_EQ(PlacedOn(d, "s1"), Ids{"c"});
  EXPECT_EQ(PlacedOn(d, "s2"), Ids{"a"});
  EXPECT_EQ(PlacedOn(d, "s3"), Ids{"b"});

  // Pack on the same cluster puts them all on the tightest node.
  for (Request& r : q) r.strategy = Strategy::kPack;
  Decision p = Schedule(nodes, q);
  for (const Placement& pl : p.placed) EXPECT_EQ(pl.node_ids, Ids{"a"});
}

// --- Gangs ---

TEST(Scheduler, PackGangFillsNodesInTurn) {
  std::vector<Node> nodes = {N("a", R(8000, 2000)), N("b", R(8000, 2000)), N("c", R(8000, 2000))};
  Decision d = Schedule(nodes, {Q("g", R(1000, 1000), 3)});
  EXPECT_EQ(PlacedOn(d, "g"), (Ids{"a", "a", "b"}));
}

TEST(Scheduler, SpreadGangUsesDistinctNodesWhenPossible) {
  std::vector<Node> nodes = {N("a", R(8000, 2000)), N("b", R(8000, 2000)), N("c", R(8000, 2000))};
  Decision d = Schedule(nodes, {Q("g", R(1000, 1000), 3, Strategy::kSpread)});
  std::vector<std::string> on = PlacedOn(d, "g");
  EXPECT_EQ(std::set<std::string>(on.begin(), on.end()).size(), 3u);
  // More members than nodes: distinct first, then doubled up.
  d = Schedule(nodes, {Q("g", R(1000, 1000), 5, Strategy::kSpread)});
  EXPECT_EQ(PlacedOn(d, "g"), (Ids{"a", "b", "c", "a", "b"}));
}

TEST(Scheduler, GangIsAllOrNothingAndOthersBackfill) {
  std::vector<Node> nodes = {N("a", R(8000, 2000)), N("b", R(8000, 2000))};
  nodes[1].available = R(8000, 1000);
  std::vector<Request> q = {Q("g4", R(1000, 1000), 4), Q("g3", R(1000, 1000), 3, Strategy::kSpread),
                            Q("t", R(1000, 1000)), Q("g2", R(1000, 1000), 2)};
  Decision d = Schedule(nodes, q);
  // 3 gpus free: the gang of 4 waits and takes nothing, the gang of 3 takes all of them.
  EXPECT_EQ(PlacedOn(d, "g3").size(), 3u);
  EXPECT_EQ(d.waiting, (Ids{"g4", "t", "g2"}));
  CheckDecision(nodes, q, d);

  // A smaller request behind a waiting gang is still placed.
  q = {Q("g4", R(1000, 1000), 4), Q("t", R(1000, 1000)), Q("g2", R(1000, 1000), 2)};
  d = Schedule(nodes, q);
  EXPECT_EQ(d.waiting, Ids{"g4"});
  EXPECT_EQ(PlacedOn(d, "t"), Ids{"b"});       // tightest: b has one gpu free
  EXPECT_EQ(PlacedOn(d, "g2"), (Ids{"a", "a"}));
  CheckDecision(nodes, q, d);
}

TEST(Scheduler, SameShapeSmallerGangStillPlacedAfterLargerOneWaits) {
  std::vector<Node> nodes = {N("a", R(4000))};
  nodes[0].available = R(2000);
  Decision d = Schedule(nodes, {Q("g3", R(1000), 3), Q("g2", R(1000), 2), Q("g2b", R(1000), 2)});
  EXPECT_EQ(d.waiting, (Ids{"g3", "g2b"}));
  EXPECT_EQ(PlacedOn(d, "g2"), (Ids{"a", "a"}));
}

TEST(Scheduler, GangInfeasibleMessageNamesStageAndResources) {
  std::vector<Node> nodes = {N("a", R(4000), {{"zone", "a"}}), N("b", R(2000), {{"zone", "a"}}),
                             N("c", R(64000), {{"zone", "b"}})};
  Request r = Q("gang", R(2000), 8, Strategy::kSpread, {{"zone", "a"}});
  r.stage = "train big";
  r.location = "q.mlp:12:1";
  Decision d = Schedule(nodes, {r});
  EXPECT_EQ(MessageOf(d, "gang"),
            "stage `train big` (q.mlp:12:1) needs 8 tasks of cpu 2 with labels zone=a; the cluster can hold at most 3");
  // Feasible on totals even though nothing is free now: it waits.
  for (Node& n : nodes) n.available = R(0);
  r.count = 3;
  d = Schedule(nodes, {r});
  EXPECT_EQ(d.waiting, Ids{"gang"});
}

TEST(Scheduler, PerTaskInfeasibleMessages) {
  std::vector<Node> nodes = {N("a", R(8000, 1000, 64 * kGiB)), N("b", R(16000, 0, 8 * kGiB))};
  Request gpu = Q("gpu", R(1000, 4000), 2);
  gpu.stage = "train big";
  gpu.location = "q.mlp:12:1";
  Request two = Q("two", R(1000, 2000, 128 * kGiB));
  Request both = Q("both", R(12000, 1000));  // each amount fits some node, not both on one
  Decision d = Schedule(nodes, {gpu, two, both});
  EXPECT_EQ(MessageOf(d, "gpu"), "stage `train big` (q.mlp:12:1) needs gpu 4 per task; the largest node has gpu 1");
  EXPECT_EQ(MessageOf(d, "two"),
            "request `two` needs gpu 2, memory 128 GiB per task; the largest node has gpu 1; and the largest node has "
            "memory 64 GiB");
  EXPECT_EQ(MessageOf(d, "both"), "request `both` needs cpu 12, gpu 1 per task; no single node has all of that");
  nodes = {N("cpu-only", R(8000))};
  d = Schedule(nodes, {Q("g", R(0, 500))});
  EXPECT_EQ(MessageOf(d, "g"), "request `g` needs gpu 0.5 per task; no node has gpu");
}

// --- Dead nodes, bad input, determinism ---

TEST(Scheduler, DeadNodesAreIgnored) {
  std::vector<Node> nodes = {N("a", R(2000)), N("big", R(64000))};
  nodes[1].alive = false;
  std::vector<Request> q = {Q("t", R(1000), 1, Strategy::kSpread), Q("huge", R(32000))};
  Decision d = Schedule(nodes, q);
  EXPECT_EQ(PlacedOn(d, "t"), Ids{"a"});
  EXPECT_EQ(MessageOf(d, "huge"), "request `huge` needs cpu 32 per task; the largest node has cpu 2");
  nodes[0].alive = false;
  d = Schedule(nodes, {Q("t", R(1000))});
  EXPECT_EQ(MessageOf(d, "t"), "request `t` cannot run: no node is alive");
  d = Schedule({}, {Q("t", R(0))});
  EXPECT_EQ(MessageOf(d, "t"), "request `t` cannot run: no node is alive");
}

TEST(Scheduler, InvalidRequestsAreRejectedWithAMessage) {
  std::vector<Node> nodes = {N("a", R(8000))};
  Request neg = Q("neg", R(-1000));
  neg.stage = "s";
  Request neg_custom = Q("negc", R(0, 0, 0, {{"tpu", -1}}));
  Decision d = Schedule(nodes, {Q("zero", R(1000), 0), neg, Q("huge", R(0), kMaxGangSize + 1), neg_custom,
                                Q("ok", R(1000))});
  EXPECT_EQ(MessageOf(d, "zero"), "request `zero` has an invalid request: a task count of 0");
  EXPECT_EQ(MessageOf(d, "neg"), "stage `s` has an invalid request: a negative amount, cpu -1");
  EXPECT_EQ(MessageOf(d, "huge"), "request `huge` asks for a gang of 65537 tasks; at most 65536 are allowed");
  EXPECT_EQ(MessageOf(d, "negc"), "request `negc` has an invalid request: a negative amount, tpu -0.001");
  EXPECT_EQ(PlacedOn(d, "ok"), Ids{"a"});
}

TEST(Scheduler, ZeroResourceRequestsAlwaysFit) {
  std::vector<Node> nodes = {N("a", R(0)), N("b", R(0))};
  Decision d = Schedule(nodes, {Q("g", R(0), kMaxGangSize, Strategy::kPack), Q("s", R(0), 3, Strategy::kSpread)});
  EXPECT_EQ(PlacedOn(d, "g").size(), kMaxGangSize);
  // Spread steers away from a, which holds the whole first gang, but keeps its members on distinct nodes.
  EXPECT_EQ(PlacedOn(d, "s"), (Ids{"b", "a", "b"}));
}

TEST(Scheduler, NegativeAvailabilityFitsNothingThatNeedsIt) {
  Node a = N("a", R(4000, 1000));
  a.available = R(-1000, 1000);  // over-committed by the caller's bookkeeping
  Decision d = Schedule({a}, {Q("cpu", R(1000)), Q("gpu", R(0, 1000))});
  EXPECT_EQ(d.waiting, Ids{"cpu"});
  EXPECT_EQ(PlacedOn(d, "gpu"), Ids{"a"});
}

struct Random {
  std::mt19937_64 gen;
  explicit Random(uint64_t seed) : gen(seed) {}
  int64_t In(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen); }
  bool Chance(int percent) { return In(0, 99) < percent; }
};

std::vector<Node> RandomNodes(Random& rnd, int count) {
  std::vector<Node> nodes;
  for (int i = 0; i < count; ++i) {
    ResourceSet total = R(rnd.In(1, 64) * 500, rnd.Chance(30) ? rnd.In(1, 8) * 1000 : 0, rnd.In(1, 64) * kGiB);
    if (rnd.Chance(20)) total.custom_milli["tpu"] = rnd.In(1, 4) * 1000;
    std::map<std::string, std::string> labels;
    if (rnd.Chance(70)) labels["zone"] = std::string(1, static_cast<char>('a' + rnd.In(0, 2)));
    Node n = N("n" + std::to_string(rnd.In(0, 999999)) + "-" + std::to_string(i), total, labels);
    // Some capacity already in use; sometimes (wrongly) more than is left.
    n.available = R(rnd.In(-1, 64) * 500 % (total.cpu_milli + 1), total.gpu_milli ? rnd.In(0, total.gpu_milli) : 0,
                    rnd.In(0, total.memory_bytes));
    if (total.custom_milli.contains("tpu")) n.available.custom_milli["tpu"] = rnd.In(0, total.custom_milli["tpu"]);
    n.alive = !rnd.Chance(10);
    nodes.push_back(std::move(n));
  }
  return nodes;
}

std::vector<Request> RandomQueue(Random& rnd, int count, int max_gang) {
  std::vector<Request> q;
  for (int i = 0; i < count; ++i) {
    // Few distinct shapes, like real batches, plus some odd ones.
    int64_t shape = rnd.In(0, 9);
    ResourceSet r = R(shape * 500, shape >= 8 ? (shape - 7) * 500 : 0, (shape % 4) * kGiB);
    if (rnd.Chance(10)) r = R(rnd.In(0, 40) * 250, rnd.Chance(20) ? rnd.In(0, 9) * 500 : 0, rnd.In(0, 80) * kGiB);
    if (rnd.Chance(5)) r.custom_milli["tpu"] = rnd.In(0, 5) * 500;
    uint32_t n = rnd.Chance(15) ? static_cast<uint32_t>(rnd.In(1, max_gang)) : 1;
    Strategy s = rnd.Chance(50) ? Strategy::kPack : Strategy::kSpread;
    std::map<std::string, std::string> labels;
    if (rnd.Chance(20)) labels["zone"] = std::string(1, static_cast<char>('a' + rnd.In(0, 3)));
    Request req = Q("r" + std::to_string(i), r, n, s, labels);
    req.stage = "stage " + std::to_string(shape);
    q.push_back(std::move(req));
  }
  return q;
}

TEST(Scheduler, DeterministicAndIndependentOfNodeOrder) {
  Random rnd(7);
  std::vector<Node> nodes = RandomNodes(rnd, 40);
  std::vector<Request> q = RandomQueue(rnd, 300, 12);
  Decision a = Schedule(nodes, q);
  Decision b = Schedule(nodes, q);
  EXPECT_TRUE(SameDecision(a, b));
  EXPECT_FALSE(a.placed.empty());
  EXPECT_FALSE(a.waiting.empty());
  std::reverse(nodes.begin(), nodes.end());
  EXPECT_TRUE(SameDecision(a, Schedule(nodes, q)));
}

TEST(Scheduler, RandomClustersNeverOvercommit) {
  Random rnd(20240611);
  size_t placed = 0, waiting = 0, infeasible = 0, gangs = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<Node> nodes = RandomNodes(rnd, static_cast<int>(rnd.In(0, 12)));
    std::vector<Request> q = RandomQueue(rnd, static_cast<int>(rnd.In(0, 60)), 10);
    Decision d = Schedule(nodes, q);
    CheckDecision(nodes, q, d);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "round " << round;
      return;
    }
    placed += d.placed.size();
    waiting += d.waiting.size();
    infeasible += d.infeasible.size();
    for (const Placement& p : d.placed) gangs += p.node_ids.size() > 1;
  }
  // The random inputs exercise every outcome.
  EXPECT_GT(placed, 100u);
  EXPECT_GT(waiting, 100u);
  EXPECT_GT(infeasible, 10u);
  EXPECT_GT(gangs, 10u);
}

TEST(Scheduler, ThousandNodesTenThousandRequests) {
  Random rnd(99);
  std::vector<Node> nodes = RandomNodes(rnd, 1000);
  std::vector<Request> q = RandomQueue(rnd, 10000, 16);
  Decision d = Schedule(nodes, q);
  CheckDecision(nodes, q, d);
  EXPECT_GT(d.placed.size(), 1000u);
  EXPECT_FALSE(d.waiting.empty());
}

}  // namespace
}  // namespace mlp::rt::sched
