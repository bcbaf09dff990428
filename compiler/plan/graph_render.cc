// Each node shows its kind and how it runs (gang, controller, replicas,
// learner + rollouts); each edge the output it carries.
#include "compiler/plan/graph_render.h"

#include <nlohmann/json.hpp>

namespace mlp {

namespace pb = plan::v1;

namespace {

std::string KindName(pb::StageKind k) {
  switch (k) {
    case pb::DATA: return "data";
    case pb::TRAIN: return "train";
    case pb::TUNE: return "tune";
    case pb::SERVE: return "serve";
    case pb::RL: return "rl";
    default: return "stage";
  }
}

std::string Shape(const pb::Node& n) {
  std::string s;
  for (const auto& r : n.roles()) {
    if (!s.empty()) s += " + ";
    s += std::to_string(r.count()) + " " + r.name() + (r.count() == 1 ? "" : "s");
    if (r.gang() && r.gang_size() == r.count()) s += " (gang)";
    if (r.gang() && r.gang_size() != r.count()) s += " (gangs of " + std::to_string(r.gang_size()) + ")";
    if (r.max_count() > r.count()) s += " (up to " + std::to_string(r.max_count()) + ")";
  }
  return s;
}

std::string Escape(const std::string& s, bool dot) {
  std::string out;
  for (char c : s) {
    if (c == '"') out += dot ? "\\\"" : "#quot;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string GraphDot(const pb::Plan& plan) {
  std::string out = "digraph \"" + Escape(plan.pipeline(), true) + "\" {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n";
  for (const auto& n : plan.nodes()) {
    out += "  \"" + n.name() + "\" [label=\"" + KindName(n.kind()) + " " + n.name() + "\\n" + Shape(n) + "\"];\n";
  }
  for (const auto& n : plan.nodes()) {
    for (const auto& in : n.inputs()) {
      std::string label = in.from().output().empty() ? in.name() : in.from().output();
      out += "  \"" + in.from().stage() + "\" -> \"" + n.name() + "\" [label=\"" + label + "\"];\n";
    }
  }
  return out + "}\n";
}

std::string GraphMermaid(const pb::Plan& plan) {
  std::string out = "flowchart LR\n";
  for (const auto& n : plan.nodes()) {
    out += "  " + n.name() + "[\"" + KindName(n.kind()) + " " + n.name() + "<br/>" + Escape(Shape(n), false) + "\"]\n";
  }
  for (const auto& n : plan.nodes()) {
    for (const auto& in : n.inputs()) {
      std::string label = in.from().output().empty() ? in.name() : in.from().output();
      out += "  " + in.from().stage() + " -->|" + label + "| " + n.name() + "\n";
    }
  }
  return out;
}

std::string GraphJson(const pb::Plan& plan) {
  nlohmann::json nodes = nlohmann::json::array();
  nlohmann::json edges = nlohmann::json::array();
  for (const auto& n : plan.nodes()) {
    nlohmann::json roles = nlohmann::json::array();
    for (const auto& r : n.roles()) {
      roles.push_back({{"name", r.name()}, {"count", r.count()}, {"gang", r.gang()}, {"gang_size", r.gang_size()}, {"long_lived", r.long_lived()}});
    }
    nodes.push_back({{"name", n.name()},
                     {"kind", KindName(n.kind())},
                     {"line", n.source().line()},
                     {"roles", roles},
                     {"content_hash", n.content_hash()}});
    for (const auto& in : n.inputs()) {
      edges.push_back({{"from", in.from().stage()}, {"to", n.name()}, {"output", in.from().output()}, {"field", in.name()}});
    }
  }
  nlohmann::json doc = {{"pipeline", plan.pipeline()}, {"nodes", nodes}, {"edges", edges}};
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace mlp
