// The registry, CanRun, and the shared kernel-program cache.
#include "runtime/ops/registry.h"

#include <mutex>

#include "stdlib/schema/schema.h"

namespace mlp::rt::ops {

void Registry::RegisterStage(std::string_view op, StageFn fn) { stages_[std::string(op)] = std::move(fn); }
void Registry::RegisterStageCheck(std::string_view op, StageCheck check) {
  checks_[std::string(op)] = std::move(check);
}
void Registry::RegisterSource(std::string_view op, SourceFn fn) { sources_[std::string(op)] = std::move(fn); }
void Registry::RegisterTransform(std::string_view op, TransformFn fn) {
  transforms_[std::string(op)] = std::move(fn);
}

const StageFn* Registry::FindStage(std::string_view op) const {
  auto it = stages_.find(op);
  return it == stages_.end() ? nullptr : &it->second;
}
const SourceFn* Registry::FindSource(std::string_view op) const {
  auto it = sources_.find(op);
  return it == sources_.end() ? nullptr : &it->second;
}
const TransformFn* Registry::FindTransform(std::string_view op) const {
  auto it = transforms_.find(op);
  return it == transforms_.end() ? nullptr : &it->second;
}

namespace {

// The first source or transform call under `v` without an implementation.
bool MissingOp(const Registry& r, const plan::v1::Value& v, std::string* which, std::string* kind) {
  switch (v.kind_case()) {
    case plan::v1::Value::kCall: {
      const auto& c = v.call();
      const schema::Op* op = schema::FindOp(c.op());
      if (op && op->result == schema::Kind::Source && !r.FindSource(c.op())) {
        *which = c.op();
        *kind = "source";
        return true;
      }
      if (op && op->result == schema::Kind::Transform && !r.FindTransform(c.op())) {
        *which = c.op();
        *kind = "transform";
        return true;
      }
      for (const auto& a : c.args()) {
        if (MissingOp(r, a.value(), which, kind)) return true;
      }
      return false;
    }
    case plan::v1::Value::kList:
    case plan::v1::Value::kMap: {
      const auto& l = v.has_list() ? v.list() : v.map();
      for (const auto& i : l.items()) {
        if (MissingOp(r, i, which, kind)) return true;
      }
      for (const auto& e : l.entries()) {
        if (MissingOp(r, e.value(), which, kind)) return true;
      }
      return false;
    }
    default: return false;
  }
}

}  // namespace

bool Registry::CanRun(const plan::v1::Node& node, std::string* why) const {
  if (!FindStage(node.op())) {
    if (why) *why = "`" + node.op() + "` has no runtime implementation yet";
    return false;
  }
  for (const auto& a : node.args()) {
    std::string which, kind;
    if (MissingOp(*this, a.value(), &which, &kind)) {
      if (why) *why = kind + " `" + which + "` has no runtime implementation yet";
      return false;
    }
  }
  if (auto it = checks_.find(node.op()); it != checks_.end()) {
    std::string reason;
    if (!it->second(node, &reason)) {
      if (why) *why = reason;
      return false;
    }
  }
  return true;
}

Registry& Global() {
  static Registry* r = [] {
    auto* g = new Registry();
    RegisterBuiltins(*g);
    return g;
  }();
  return *r;
}

std::shared_ptr<const KernelProgram> SharedKernels(const plan::v1::Plan& plan, std::string* error) {
  // Keyed by the kernels' bytes, not the plan's address, which may be reused.
  std::string key;
  for (const auto& k : plan.kernels()) {
    std::string b = k.SerializeAsString();
    key += std::to_string(b.size()) + ":" + b;
  }
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const KernelProgram>> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::shared_ptr<const KernelProgram> prog = KernelProgram::Build(plan, error);
  if (!prog) return nullptr;
  if (cache.size() >= 16) cache.clear();  // plans of one executor are few; keep memory bounded
  cache.emplace(std::move(key), prog);
  return prog;
}

}  // namespace mlp::rt::ops
