// Conversions between the RPC form of resources (mlp.rt.v1.Resources) and the
// scheduler's (sched::ResourceSet), so the head and the workers account with
// the same arithmetic (runtime/sched/resources.h).
#pragma once

#include "common.pb.h"
#include "runtime/sched/resources.h"

namespace mlp::rt {

inline sched::ResourceSet ToSched(const v1::Resources& r) {
  sched::ResourceSet s;
  s.cpu_milli = r.cpu_milli();
  s.gpu_milli = r.gpu_milli();
  s.memory_bytes = r.memory_bytes();
  for (const auto& [k, v] : r.custom_milli()) s.custom_milli[k] = v;
  return s;
}

inline v1::Resources ToProto(const sched::ResourceSet& s) {
  v1::Resources r;
  r.set_cpu_milli(s.cpu_milli);
  r.set_gpu_milli(s.gpu_milli);
  r.set_memory_bytes(s.memory_bytes);
  for (const auto& [k, v] : s.custom_milli) (*r.mutable_custom_milli())[k] = v;
  return r;
}

}  // namespace mlp::rt
