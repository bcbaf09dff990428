#include "runtime/sched/scheduler.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <unordered_map>

namespace mlp::rt::sched {
namespace {

// Capacities (how many tasks of one shape fit) saturate here: it is enough to decide any valid count, and it keeps
// zero-resource requests (which fit without limit) finite.
constexpr uint64_t kCapacityCap = uint64_t{kMaxGangSize} + 1;
constexpr uint32_t kNever = std::numeric_limits<uint32_t>::max();

struct Need {
  uint32_t dim;
  int64_t amount;  // > 0
};

// What is known about one shape (per-task resources + labels) during a call.
struct Shape {
  std::vector<uint32_t> eligible;  // alive nodes (positions in id order) that have the labels
  uint64_t total_capacity = 0;     // tasks of this shape that fit the idle cluster, saturating
  uint32_t fails_at = kNever;      // smallest count that did not fit now; capacity only shrinks within a call
  std::optional<std::string> per_task_reason;  // why one task can never run, once computed ("" when it can)
};

std::string LabelsText(const std::map<std::string, std::string>& labels) {
  std::string s;
  for (const auto& [k, v] : labels) s += (s.empty() ? "" : ", ") + k + "=" + v;
  return s;
}

std::string Subject(const Request& r) {
  std::string s = r.stage.empty() ? "request `" + r.id + "`" : "stage `" + r.stage + "`";
  if (!r.location.empty()) s += " (" + r.location + ")";
  return s;
}

class Scheduler {
 public:
  Scheduler(const std::vector<Node>& nodes, const std::vector<Request>& queue) : nodes_(nodes) {
    // Resource dimensions: cpu, gpu, memory, then every custom name seen, in name order (deterministic).
    dim_names_ = {"cpu", "gpu", "memory"};
    std::map<std::string, uint32_t> custom;
    auto collect = [&custom](const ResourceSet& r) {
      for (const auto& kv : r.custom_milli) custom.emplace(kv.first, 0);
    };
    for (const Node& n : nodes) {
      if (!n.alive) continue;
      collect(n.total);
      collect(n.available);
    }
    for (const Request& r : queue) collect(r.per_task);
    for (auto& [name, index] : custom) {
      index = static_cast<uint32_t>(dim_names_.size());
      dim_names_.push_back(name);
    }
    custom_dims_ = std::move(custom);
    dims_ = dim_names_.size();

    for (uint32_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i].alive) alive_.push_back(i);
    }
    std::stable_sort(alive_.begin(), alive_.end(), [&](uint32_t a, uint32_t b) { return nodes[a].id < nodes[b].id; });

    const size_t n = alive_.size();
    avail_.resize(n * dims_);
    total_.resize(n * dims_);
    for (size_t p = 0; p < n; ++p) {
      Flatten(nodes[alive_[p]].available, &avail_[p * dims_]);
      Flatten(nodes[alive_[p]].total, &total_[p * dims_]);
    }
    // Room is measured relative to the largest node in each dimension, so that nodes compare on one scale.
    inv_max_.assign(dims_, 0.0);
    for (size_t d = 0; d < dims_; ++d) {
      int64_t max = 0;
      for (size_t p = 0; p < n; ++p) max = std::max(max, total_[p * dims_ + d]);
      if (max > 0) inv_max_[d] = 1.0 / static_cast<double>(max);
    }
    score_.resize(n);
    for (size_t p = 0; p < n; ++p) score_[p] = Room(p);
    placed_.assign(n, 0);
    members_.assign(n, 0);
  }

  Decision Run(const std::vector<Request>& queue) {
    Decision out;
    for (const Request& r : queue) {
      if (std::string error = Validate(r); !error.empty()) {
        out.infeasible.push_back({r.id, error});
        continue;
      }
      std::vector<Need> needs = NeedsOf(r.per_task);
      Shape& shape = ShapeOf(needs, r.labels);
      if (r.count > shape.total_capacity) {
        out.infeasible.push_back({r.id, InfeasibleMessage(r, needs, shape)});
        continue;
      }
      if (r.count >= shape.fails_at) {
        out.waiting.push_back(r.id);
        continue;
      }
      Placement placement{r.id, {}};
      if (TryPlace(r, needs, shape, &placement.node_ids)) {
        out.placed.push_back(std::move(placement));
      } else {
        shape.fails_at = r.count;
        out.waiting.push_back(r.id);
      }
    }
    return out;
  }

 private:
  void Flatten(const ResourceSet& r, int64_t* out) const {
    out[0] = r.cpu_milli;
    out[1] = r.gpu_milli;
    out[2] = r.memory_bytes;
    for (const auto& [name, v] : r.custom_milli) out[custom_dims_.at(name)] = v;
  }

  double Room(size_t p) const {
    double room = 0;
    for (size_t d = 0; d < dims_; ++d) room += static_cast<double>(avail_[p * dims_ + d]) * inv_max_[d];
    return room;
  }

  std::string FormatDim(uint32_t dim, int64_t amount) const {
    return dim_names_[dim] + " " + (dim == 2 ? FormatBytes(amount) : FormatMilli(amount));
  }

  std::string Validate(const Request& r) const {
    if (r.count == 0) return Subject(r) + " has an invalid request: a task count of 0";
    if (r.count > kMaxGangSize) {
      return Subject(r) + " asks for a gang of " + std::to_string(r.count) + " tasks; at most " +
             std::to_string(kMaxGangSize) + " are allowed";
    }
    if (HasNegative(r.per_task)) {
      std::vector<int64_t> flat(dims_, 0);
      Flatten(r.per_task, flat.data());
      for (uint32_t d = 0; d < dims_; ++d) {
        if (flat[d] < 0) return Subject(r) + " has an invalid request: a negative amount, " + FormatDim(d, flat[d]);
      }
    }
    return "";
  }

  std::vector<Need> NeedsOf(const ResourceSet& r) const {
    std::vector<Need> needs;
    auto add = [&needs](uint32_t dim, int64_t v) {
      if (v > 0) needs.push_back({dim, v});
    };
    add(0, r.cpu_milli);
    add(1, r.gpu_milli);
    add(2, r.memory_bytes);
    for (const auto& [name, v] : r.custom_milli) add(custom_dims_.at(name), v);
    return needs;
  }

  // How many tasks needing `needs` fit in the amounts at `row`, saturating at kCapacityCap.
  static uint64_t Capacity(const int64_t* row, const std::vector<Need>& needs) {
    uint64_t k = kCapacityCap;
    for (const Need& n : needs) {
      int64_t have = row[n.dim];
      if (have < n.amount) return 0;
      k = std::min(k, static_cast<uint64_t>(have / n.amount));
    }
    return k;
  }

  bool FitsOne(size_t p, const std::vector<Need>& needs) const {
    const int64_t* row = &avail_[p * dims_];
    for (const Need& n : needs) {
      if (row[n.dim] < n.amount) return false;
    }
    return true;
  }

  Shape& ShapeOf(const std::vector<Need>& needs, const std::map<std::string, std::string>& labels) {
    // A byte key: the needs, then length-prefixed labels, so that distinct shapes never collide.
    std::string key;
    auto put = [&key](const void* data, size_t size) { key.append(static_cast<const char*>(data), size); };
    uint32_t count = static_cast<uint32_t>(needs.size());
    put(&count, sizeof count);
    for (const Need& n : needs) {
      put(&n.dim, sizeof n.dim);
      put(&n.amount, sizeof n.amount);
    }
    for (const auto& [k, v] : labels) {
      for (const std::string* s : {&k, &v}) {
        uint64_t size = s->size();
        put(&size, sizeof size);
        key += *s;
      }
    }
    auto [it, inserted] = shapes_.try_emplace(std::move(key));
    Shape& shape = it->second;
    if (!inserted) return shape;
    for (uint32_t p = 0; p < alive_.size(); ++p) {
      const auto& node_labels = nodes_[alive_[p]].labels;
      bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
        auto found = node_labels.find(kv.first);
        return found != node_labels.end() && found->second == kv.second;
      });
      if (!match) continue;
      shape.eligible.push_back(p);
      shape.total_capacity = std::min(kCapacityCap, shape.total_capacity + Capacity(&total_[p * dims_], needs));
    }
    return shape;
  }

  void Apply(size_t p, const std::vector<Need>& needs, uint64_t tasks) {
    int64_t* row = &avail_[p * dims_];
    // tasks <= Capacity(row), so the product stays within the amount available.
    for (const Need& n : needs) row[n.dim] -= n.amount * static_cast<int64_t>(tasks);
    score_[p] = Room(p);
    placed_[p] += static_cast<uint32_t>(tasks);
  }

  void Release(size_t p, const std::vector<Need>& needs) {
    int64_t* row = &avail_[p * dims_];
    for (const Need& n : needs) row[n.dim] += n.amount;
    score_[p] = Room(p);
    --placed_[p];
  }

  // Best fit: the fitting node with the least room; ties go to the lower id (eligible is in id order).
  std::optional<uint32_t> PickPack(const Shape& shape, const std::vector<Need>& needs) const {
    std::optional<uint32_t> best;
    for (uint32_t p : shape.eligible) {
      if (FitsOne(p, needs) && (!best || score_[p] < score_[*best])) best = p;
    }
    return best;
  }

  // Fewest members of this gang, then fewest tasks placed by this call, then the most room, then the lower id.
  std::optional<uint32_t> PickSpread(const Shape& shape, const std::vector<Need>& needs) const {
    std::optional<uint32_t> best;
    for (uint32_t p : shape.eligible) {
      if (!FitsOne(p, needs)) continue;
      if (!best) {
        best = p;
        continue;
      }
      uint32_t b = *best;
      if (members_[p] != members_[b] ? members_[p] < members_[b]
          : placed_[p] != placed_[b] ? placed_[p] < placed_[b]
                                     : score_[p] > score_[b]) {
        best = p;
      }
    }
    return best;
  }

  bool TryPlace(const Request& r, const std::vector<Need>& needs, const Shape& shape, std::vector<std::string>* out) {
    if (r.count > 1) {
      // Tasks of a gang are identical and placing one only lowers its own node's capacity by one, so the gang fits
      // (with either strategy) exactly when the capacities sum to its count.
      uint64_t sum = 0;
      for (uint32_t p : shape.eligible) {
        sum += Capacity(&avail_[p * dims_], needs);
        if (sum >= r.count) break;
      }
      if (sum < r.count) return false;
    }
    std::vector<uint32_t> chosen;
    chosen.reserve(r.count);
    bool ok = true;
    if (r.strategy == Strategy::kPack) {
      // The chosen node keeps the least room after each task, so fill it as far as it goes in one step.
      while (chosen.size() < r.count) {
        std::optional<uint32_t> p = PickPack(shape, needs);
        if (!p) {
          ok = false;
          break;
        }
        uint64_t tasks = std::min<uint64_t>(Capacity(&avail_[*p * dims_], needs), r.count - chosen.size());
        Apply(*p, needs, tasks);
        chosen.insert(chosen.end(), tasks, *p);
      }
    } else {
      while (chosen.size() < r.count) {
        std::optional<uint32_t> p = PickSpread(shape, needs);
        if (!p) {
          ok = false;
          break;
        }
        Apply(*p, needs, 1);
        ++members_[*p];
        chosen.push_back(*p);
      }
      for (uint32_t p : chosen) members_[p] = 0;
    }
    if (!ok) {  // not reached given the capacity check above; undo rather than leave a partial gang
      for (uint32_t p : chosen) Release(p, needs);
      return false;
    }
    out->reserve(chosen.size());
    for (uint32_t p : chosen) out->push_back(nodes_[alive_[p]].id);
    return true;
  }

  // Why one task of this shape can never run; "" when some node could hold it.
  std::string PerTaskReason(const Request& r, const std::vector<Need>& needs, const Shape& shape) const {
    const std::string with = r.labels.empty() ? "" : " with labels " + LabelsText(r.labels);
    if (alive_.empty()) return "cannot run: no node is alive";
    if (shape.eligible.empty()) return "needs a node with labels " + LabelsText(r.labels) + "; no alive node has them";
    std::string over, clauses;
    for (const Need& n : needs) {
      int64_t max = 0;
      for (uint32_t p : shape.eligible) max = std::max(max, total_[p * dims_ + n.dim]);
      if (n.amount <= max) continue;
      over += (over.empty() ? "" : ", ") + FormatDim(n.dim, n.amount);
      clauses += clauses.empty() ? "; " : "; and ";
      clauses += max > 0 ? "the largest node" + with + " has " + FormatDim(n.dim, max)
                         : "no node" + with + " has " + dim_names_[n.dim];
    }
    if (!over.empty()) return "needs " + over + " per task" + clauses;
    if (shape.total_capacity == 0) {
      return "needs " + ToStringNonZero(r.per_task) + " per task; no single node" + with + " has all of that";
    }
    return "";
  }

  std::string InfeasibleMessage(const Request& r, const std::vector<Need>& needs, Shape& shape) const {
    if (!shape.per_task_reason) shape.per_task_reason = PerTaskReason(r, needs, shape);
    if (!shape.per_task_reason->empty()) return Subject(r) + " " + *shape.per_task_reason;
    std::string with = r.labels.empty() ? "" : " with labels " + LabelsText(r.labels);
    return Subject(r) + " needs " + std::to_string(r.count) + " tasks of " + ToStringNonZero(r.per_task) + with +
           "; the cluster can hold at most " + std::to_string(shape.total_capacity);
  }

  const std::vector<Node>& nodes_;
  std::vector<std::string> dim_names_;
  std::map<std::string, uint32_t> custom_dims_;
  size_t dims_ = 0;
  std::vector<uint32_t> alive_;  // indices into nodes_, in id order
  std::vector<int64_t> avail_;   // alive_.size() x dims_, shrinks as tasks are placed
  std::vector<int64_t> total_;
  std::vector<double> inv_max_;
  std::vector<double> score_;     // room left on each node, on one scale across nodes
  std::vector<uint32_t> placed_;  // tasks placed on each node by this call
  std::vector<uint32_t> members_; // members of the gang being placed, on each node
  std::unordered_map<std::string, Shape> shapes_;
};

}  // namespace

Decision Schedule(const std::vector<Node>& nodes, const std::vector<Request>& queue) {
  return Scheduler(nodes, queue).Run(queue);
}

}  // namespace mlp::rt::sched
