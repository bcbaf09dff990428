// Lowering to the plan: values to protobuf, roles, policies, and each node's
// content hash (SHA-256 over what determines its output, upstream hashes
// included; resources and retry policy excluded).
#include "compiler/plan/lower.h"

#include "compiler/sema/defaults.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>

#include <map>

namespace mlp {

namespace pb = plan::v1;

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int k = 0; k < len; ++k) {
    out += kHex[md[k] >> 4];
    out += kHex[md[k] & 15];
  }
  return out;
}

namespace {

pb::SourceRange ToProto(const SourceManager& sm, Range r) {
  pb::SourceRange out;
  if (!r.valid()) return out;
  out.set_file(sm.Path(r.file));
  LineCol b = sm.Position(r.file, r.begin);
  LineCol e = sm.Position(r.file, r.end);
  out.set_line(b.line);
  out.set_column(b.col);
  out.set_end_line(e.line);
  out.set_end_column(e.col);
  return out;
}

void ToProto(const Value& v, pb::Value* out) {
  switch (v.tag) {
    case Value::Tag::Error: break;
    case Value::Tag::Int: out->set_int_value(v.i); break;
    case Value::Tag::Float: out->set_float_value(v.f); break;
    case Value::Tag::Bool: out->set_bool_value(v.b); break;
    case Value::Tag::String: out->set_string_value(v.s); break;
    case Value::Tag::Path: out->set_path_value(v.s); break;
    case Value::Tag::Duration: out->set_duration_ns(v.i); break;
    case Value::Tag::Size: out->set_size_bytes(v.i); break;
    case Value::Tag::List:
      for (const auto& i : v.items) ToProto(i, out->mutable_list()->add_items());
      if (v.items.empty()) out->mutable_list();
      break;
    case Value::Tag::Map:
      out->mutable_map();
      for (const auto& [k, e] : v.entries) {
        auto* nv = out->mutable_map()->add_entries();
        nv->set_name(k);
        ToProto(e, nv->mutable_value());
      }
      break;
    case Value::Tag::Call: {
      auto* c = out->mutable_call();
      c->set_op(v.s);
      for (const auto& [k, e] : v.entries) {
        auto* nv = c->add_args();
        nv->set_name(k);
        ToProto(e, nv->mutable_value());
      }
      break;
    }
    case Value::Tag::Ref:
      out->mutable_ref()->set_stage(v.s);
      out->mutable_ref()->set_output(v.field);
      break;
    case Value::Tag::Kernel: out->set_kernel(v.s); break;
    case Value::Tag::Env: out->set_env(v.s); break;
    case Value::Tag::Symbol: out->set_symbol(v.s); break;
    case Value::Tag::Predicate: {
      auto* e = out->mutable_expr();
      e->set_source(v.s);
      for (const auto& m : v.items) e->add_metrics(m.s);
      break;
    }
  }
}

void ToProto(const ResourceAmounts& r, pb::Resources* out) {
  out->set_cpu_milli(r.cpu_milli);
  out->set_gpu_milli(r.gpu_milli);
  out->set_memory_bytes(r.memory_bytes);
  for (const auto& [k, v] : r.custom_milli) (*out->mutable_custom_milli())[k] = v;
}

pb::StageKind KindOf(schema::StageKind k) {
  switch (k) {
    case schema::StageKind::Data: return pb::DATA;
    case schema::StageKind::Train: return pb::TRAIN;
    case schema::StageKind::Tune: return pb::TUNE;
    case schema::StageKind::Serve: return pb::SERVE;
    case schema::StageKind::Rl: return pb::RL;
  }
  return pb::STAGE_KIND_UNSPECIFIED;
}

}  // namespace

pb::Plan LowerPlan(const Program& program, const CheckedPipeline& p) {
  const SourceManager& sm = program.sm;
  pb::Plan plan;
  plan.set_format("mlp.plan.v1");
  plan.set_pipeline(p.name);
  if (!program.modules.empty()) plan.set_source_file(sm.Path(program.modules[0].file));
  for (const auto& [k, v] : p.settings) {
    auto* nv = plan.add_settings();
    nv->set_name(k);
    ToProto(v, nv->mutable_value());
  }
  for (const auto& [k, v] : p.params) {
    auto* nv = plan.add_params();
    nv->set_name(k);
    ToProto(v, nv->mutable_value());
  }

  std::map<std::string, std::string> kernel_hash;
  std::map<std::string, const CheckedKernel*> kernels;
  for (const auto& k : p.kernels) kernels[k.name] = &k;
  // Kernel hashes cover their callees: a change anywhere below re-runs users.
  std::function<std::string(const std::string&, int)> khash = [&](const std::string& name, int depth) -> std::string {
    if (auto it = kernel_hash.find(name); it != kernel_hash.end()) return it->second;
    auto it = kernels.find(name);
    if (it == kernels.end() || depth > 64) return "";
    std::string data(sm.Slice(it->second->decl->range));
    for (const auto& c : it->second->calls) data += "\ncall:" + c + "=" + khash(c, depth + 1);
    return kernel_hash[name] = Sha256Hex(data);
  };
  for (const auto& k : p.kernels) {
    auto* pk = plan.add_kernels();
    const auto& d = *k.decl;
    pk->set_name(k.name);
    for (const auto& prm : d.params) {
      auto* kp = pk->add_params();
      kp->set_name(prm.name.name);
      kp->set_type(prm.type.str());
    }
    pk->set_return_type(d.ret.str());
    pk->set_source(std::string(sm.Slice(d.range)));
    for (const auto& c : k.calls) pk->add_calls(c);
    pk->set_hash(khash(k.name, 0));
    *pk->mutable_source_range() = ToProto(sm, d.range);
  }
  std::map<std::string, std::string> env_hash;
  for (const auto& e : p.envs) {
    auto* pe = plan.add_envs();
    const auto& d = *e.decl;
    pe->set_name(e.name);
    for (size_t k = 0; k < e.state.size(); ++k) {
      auto* sf = pe->add_state();
      sf->set_name(e.state[k].first);
      sf->set_type(e.state[k].second);
      if (k < e.state_init.size()) ToProto(e.state_init[k], sf->mutable_init());
    }
    ToProto(e.action, pe->mutable_action());
    for (const auto& o : e.observe) pe->add_observe(o);
    for (const auto& [k, v] : e.settings) {
      auto* nv = pe->add_settings();
      nv->set_name(k);
      ToProto(v, nv->mutable_value());
    }
    pe->set_source(std::string(sm.Slice(d.range)));
    std::string data = pe->source();
    for (const auto& c : e.calls) {
      pe->add_calls(c);
      data += "\ncall:" + c + "=" + khash(c, 0);
    }
    pe->set_hash(env_hash[e.name] = Sha256Hex(data));
    *pe->mutable_source_range() = ToProto(sm, d.range);
  }
  for (const auto& g : p.cluster) {
    auto* ng = plan.add_cluster();
    ng->set_name(g.name);
    ng->set_count(g.count);
    ToProto(g.resources, ng->mutable_resources());
    for (const auto& [k, v] : g.labels) {
      auto* l = ng->mutable_resources()->mutable_placement()->add_labels();
      l->set_name(k);
      l->mutable_value()->set_string_value(v);
    }
  }

  std::map<std::string, std::string> node_hash;
  for (const auto& st : p.stages) {
    auto* n = plan.add_nodes();
    const auto& schema = schema::Stage(st.kind);
    n->set_name(st.decl->name.name);
    n->set_kind(KindOf(st.kind));
    n->set_op(std::string(schema.op));
    *n->mutable_source() = ToProto(sm, st.decl->range);
    pb::Node hashed;  // the part of the node that determines its output
    hashed.set_kind(n->kind());
    hashed.set_op(n->op());
    for (const auto& [k, v] : FieldsWithDefaults(st, p)) {
      if (k == "retry") {
        if (const Value* m = v.Find("max")) n->mutable_retry()->set_max_retries(static_cast<uint32_t>(m->i));
        if (const Value* b = v.Find("backoff")) n->mutable_retry()->set_backoff_ms(b->i / 1'000'000);
        continue;
      }
      if (k == "timeout") {
        n->set_timeout_ms(v.i / 1'000'000);
        continue;
      }
      if (k == "cache") {
        if (v.tag == Value::Tag::Bool) {
          n->mutable_cache()->set_mode(v.b ? pb::CachePolicy::ON : pb::CachePolicy::OFF);
        } else {
          n->mutable_cache()->set_version(v.s);
        }
        continue;
      }
      if (k == "on_failure") {
        n->set_on_failure(v.s == "continue" ? pb::CONTINUE : pb::STOP);
        continue;
      }
      if (k == "placement") continue;
      auto* nv = n->add_args();
      nv->set_name(k);
      ToProto(v, nv->mutable_value());
      *hashed.add_args() = *nv;  // how a stage runs (retry ... placement) was taken out above
    }
    for (const auto& [field, ref] : st.inputs) {
      auto* in = n->add_inputs();
      in->set_name(field);
      in->set_type(std::string(schema::KindName(ref.kind)));
      in->mutable_from()->set_stage(ref.s);
      in->mutable_from()->set_output(ref.field);
    }
    if (st.kind == schema::StageKind::Data) {
      auto* out = n->add_outputs();
      out->set_name("all");
      out->set_type("dataset");
      for (const auto& [k, v] : st.fields) {
        if (k != "split") continue;
        for (const auto& [name, frac] : v.entries) {
          auto* o = n->add_outputs();
          o->set_name(name);
          o->set_type("dataset");
        }
      }
    } else {
      for (const auto& o : schema.outputs) {
        auto* out = n->add_outputs();
        out->set_name(std::string(o.name));
        out->set_type(std::string(schema::KindName(o.kind)));
      }
    }
    for (const auto& r : st.roles) {
      auto* role = n->add_roles();
      role->set_name(r.name);
      role->set_count(r.count);
      ToProto(r.resources, role->mutable_resources());
      if (r.name != "controller" && r.name != "ingress") {
        auto* pl = role->mutable_resources()->mutable_placement();
        pl->set_strategy(st.placement_strategy == "spread" ? pb::Placement::SPREAD : pb::Placement::PACK);
        for (const auto& [k, v] : st.placement_labels) {
          auto* l = pl->add_labels();
          l->set_name(k);
          l->mutable_value()->set_string_value(v);
        }
      }
      role->set_gang(r.gang);
      role->set_gang_size(r.gang ? r.gang_size : 1);
      role->set_long_lived(r.long_lived);
      role->set_max_count(r.max_count);
    }
    for (const auto& k : st.kernels) {
      n->add_kernels(k);
      hashed.add_kernels(k + "=" + khash(k, 0));
    }
    for (const auto& e : st.envs) {
      n->add_envs(e);
      hashed.add_envs(e + "=" + env_hash[e]);
    }
    for (const auto& d : st.deps) {
      n->add_deps(d);
      hashed.add_deps(d + "=" + node_hash[d]);
    }
    if (n->cache().mode() == pb::CachePolicy::ON) hashed.mutable_cache()->set_version(n->cache().version());
    std::string bytes;
    google::protobuf::io::StringOutputStream stream(&bytes);
    {
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      hashed.SerializeToCodedStream(&coded);
    }
    n->set_content_hash(node_hash[n->name()] = Sha256Hex("mlp.plan.v1\n" + bytes));
  }
  return plan;
}

std::string PlanToJson(const pb::Plan& plan) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(plan, &out, opts);
  if (!status.ok()) return "{}\n";
  return out;
}

}  // namespace mlp
