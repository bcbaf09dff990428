// Whole-pipeline checks: dependency cycles, topological order, unused
// declarations and whether the declared cluster can hold every stage.
#include <algorithm>
#include <functional>
#include <queue>

#include "compiler/sema/checker.h"
#include "compiler/sema/units.h"

namespace mlp {

// Stages as indices, their deps as index lists (deps on unknown stages dropped).
static std::vector<std::vector<size_t>> DepGraph(const std::vector<CheckedStage>& stages) {
  StringMap<size_t> index;
  for (size_t k = 0; k < stages.size(); ++k) index.emplace(stages[k].decl->name.name, k);
  std::vector<std::vector<size_t>> deps(stages.size());
  for (size_t k = 0; k < stages.size(); ++k) {
    for (const auto& d : stages[k].deps) {
      if (auto it = index.find(d); it != index.end()) deps[k].push_back(it->second);
    }
  }
  return deps;
}

void Checker::CheckCycles() {
  const auto& stages = out_->stages;
  dep_graph_ = DepGraph(stages);
  const auto& deps = dep_graph_;
  std::vector<int> state(stages.size(), 0);
  std::vector<size_t> stack;
  std::set<std::vector<size_t>> reported;
  // Iterative DFS: a long dependency chain must not exhaust the stack.
  for (size_t root = 0; root < stages.size(); ++root) {
    if (state[root]) continue;
    std::vector<std::pair<size_t, size_t>> frames = {{root, 0}};
    state[root] = 1;
    stack.assign(1, root);
    while (!frames.empty()) {
      auto& [s, next] = frames.back();
      if (next == deps[s].size()) {
        state[s] = 2;
        stack.pop_back();
        frames.pop_back();
        continue;
      }
      size_t d = deps[s][next++];
      if (state[d] == 0) {
        state[d] = 1;
        stack.push_back(d);
        frames.push_back({d, 0});
        continue;
      }
      if (state[d] != 1) continue;
      auto from = std::find(stack.begin(), stack.end(), d);
      std::vector<size_t> cycle(from, stack.end());
      auto key = cycle;
      std::sort(key.begin(), key.end());
      if (!reported.insert(key).second) continue;
      auto name = [&](size_t k) { return "`" + stages[k].decl->name.name + "`"; };
      std::string path;
      for (size_t c : cycle) path += name(c) + " -> ";
      path += name(d);
      D().Report(DiagKind::DependencyCycle, stages[d].decl->name.range,
                    "stages depend on each other in a cycle: " + path + "; a pipeline must be a DAG");
      for (size_t k = 0; k < cycle.size(); ++k) {
        const CheckedStage& from_stage = stages[cycle[k]];
        size_t to = k + 1 < cycle.size() ? cycle[k + 1] : d;
        const std::string& to_name = stages[to].decl->name.name;
        for (size_t j = 0; j < from_stage.deps.size(); ++j) {
          if (from_stage.deps[j] == to_name) {
            D().AddNote(from_stage.dep_ranges[j], name(cycle[k]) + " reads " + name(to) + " here");
          }
        }
      }
    }
  }
}

// Kahn's algorithm; ties keep source order so that plans are stable.
void Checker::SortStages() {
  auto& stages = out_->stages;
  const auto& deps = dep_graph_;  // from CheckCycles, in source order
  std::vector<size_t> indegree(stages.size(), 0);
  std::vector<std::vector<size_t>> users(stages.size());
  for (size_t k = 0; k < stages.size(); ++k) {
    for (size_t d : deps[k]) {
      ++indegree[k];
      users[d].push_back(k);
    }
  }
  // A min-heap of ready stages by source position.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t k = 0; k < stages.size(); ++k) {
    if (indegree[k] == 0) ready.push(k);
  }
  std::vector<size_t> order;
  order.reserve(stages.size());
  while (!ready.empty()) {
    size_t k = ready.top();
    ready.pop();
    order.push_back(k);
    for (size_t u : users[k]) {
      if (--indegree[u] == 0) ready.push(u);
    }
  }
  for (size_t k = 0; k < stages.size(); ++k) {  // stages on a cycle (already reported)
    if (indegree[k] > 0) order.push_back(k);
  }
  std::vector<CheckedStage> sorted;
  sorted.reserve(stages.size());
  for (size_t k : order) sorted.push_back(std::move(stages[k]));
  stages = std::move(sorted);
}

void Checker::CheckUnused() {
  // After an error (a misspelt reference, say) "unused" would mostly be noise;
  // a file without stages is a library, whose declarations its importers use.
  if (D().has_errors() || stages_by_name_.empty()) return;
  for (const auto& d : program_.modules[0].ast->decls) {
    if (Used().count(d.get()) || d->name.name.empty()) continue;
    switch (d->kind) {
      case ast::DeclKind::Param:
        D().Report(DiagKind::UnusedParam, d->name.range,
                      "param `" + d->name.name + "` is never used; remove it or use it in a stage");
        break;
      case ast::DeclKind::Kernel:
        D().Report(DiagKind::UnusedKernel, d->name.range,
                      "kernel `" + d->name.name + "` is never used; remove it or use it, e.g. in `map(" +
                          d->name.name + ")`");
        break;
      case ast::DeclKind::Stage:
        if (static_cast<const ast::StageDecl*>(d.get())->stage_kind == ast::StageKind::Data) {
          D().Report(DiagKind::UnusedStage, d->name.range,
                        "data stage `" + d->name.name + "` is never used; no stage reads its output");
        }
        break;
      default: break;
    }
  }
}

static std::string Amounts(const ResourceAmounts& r) {
  std::string s = "cpu: " + ToSource(Value::Float(r.cpu_milli / 1000.0));
  if (r.gpu_milli) s += ", gpu: " + ToSource(Value::Float(r.gpu_milli / 1000.0));
  if (r.memory_bytes) s += ", memory: " + FormatSize(r.memory_bytes);
  for (const auto& [k, v] : r.custom_milli) {
    s += ", " + k + ": " + ToSource(Value::Float(v / 1000.0));
  }
  return s;
}

// How many processes needing `req` one node of `g` can hold (0 if none).
static int64_t Fits(const NodeGroup& g, const ResourceAmounts& req,
                    const std::vector<std::pair<std::string, std::string>>& labels, std::string* missing) {
  for (const auto& [k, v] : labels) {
    bool ok = false;
    for (const auto& [gk, gv] : g.labels) ok |= gk == k && gv == v;
    if (!ok) {
      *missing = "label " + k + "=" + v;
      return 0;
    }
  }
  int64_t n = INT64_MAX;
  auto dim = [&](int64_t have, int64_t need, const std::string& name) {
    if (need <= 0) return;
    if (have < need && missing->empty()) *missing = name;
    n = std::min(n, have / need);
  };
  dim(g.resources.cpu_milli, req.cpu_milli, "cpu");
  dim(g.resources.gpu_milli, req.gpu_milli, "gpu");
  if (g.resources.memory_bytes > 0) dim(g.resources.memory_bytes, req.memory_bytes, "memory");
  for (const auto& [k, v] : req.custom_milli) {
    auto it = g.resources.custom_milli.find(k);
    dim(it == g.resources.custom_milli.end() ? 0 : it->second, v, k);
  }
  return n == INT64_MAX ? 1'000'000 : n;
}

void Checker::CheckCluster() {
  if (out_->cluster.empty()) return;
  for (const auto& st : out_->stages) {
    for (const auto& role : st.roles) {
      int64_t capacity = 0;
      int64_t largest = 0;
      std::string why;
      for (const auto& g : out_->cluster) {
        std::string missing;
        int64_t per_node = Fits(g, role.resources, st.placement_labels, &missing);
        if (per_node == 0 && why.empty()) why = missing + " (node group `" + g.name + "`: " + Amounts(g.resources) + ")";
        largest = std::max(largest, per_node);
        capacity += per_node * g.count;
      }
      std::string what = std::string(ast::Spelling(st.decl->stage_kind)) + " stage `" + st.decl->name.name + "`";
      if (largest == 0) {
        D().Report(DiagKind::UnsatisfiableResources, st.decl->name.range,
                      what + " needs " + Amounts(role.resources) + " per " + role.name +
                          ", but no node of the declared cluster can hold that; lacking " + why);
        break;
      }
      uint32_t needed = role.gang ? role.gang_size : 1;
      if (capacity < needed) {
        D().Report(DiagKind::UnsatisfiableResources, st.decl->name.range,
                      what + " needs a gang of " + std::to_string(needed) + " " + role.name + "s of " +
                          Amounts(role.resources) + " started together, but the declared cluster holds at most " +
                          std::to_string(capacity) + " at once");
        break;
      }
    }
  }
}

}  // namespace mlp
