// Building default values from schema::Default.
#include "compiler/sema/defaults.h"

namespace mlp {

Value DefaultValue(const schema::Param& p) {
  const schema::Default& d = p.def;
  Value v;
  switch (d.tag) {
    case schema::Default::None: return Value::Error();
    case schema::Default::Int: return Value::Int(static_cast<int64_t>(d.number));
    case schema::Default::Float: return Value::Float(d.number);
    case schema::Default::Bool:
      v.tag = Value::Tag::Bool;
      v.b = d.number != 0;
      return v;
    case schema::Default::String:
      v.tag = p.type.kind == schema::Kind::Path ? Value::Tag::Path : Value::Tag::String;
      v.s = std::string(d.text);
      return v;
    case schema::Default::IntList:
      v.tag = Value::Tag::List;
      for (long long x : d.ints) v.items.push_back(Value::Int(x));
      return v;
    case schema::Default::Symbol:
    case schema::Default::Call:
      if (p.type.kind == schema::Kind::Enum) {
        v.tag = Value::Tag::Symbol;
        v.kind = schema::Kind::Enum;
        v.s = std::string(d.text);
        return v;
      }
      if (const schema::Op* op = schema::FindOp(d.text)) return CallWithDefaults(*op);
      return Value::Error();
  }
  return Value::Error();
}

Value CallWithDefaults(const schema::Op& op) {
  Value call;
  call.tag = Value::Tag::Call;
  call.kind = op.result;
  call.s = std::string(op.name);
  for (const auto& p : op.params) {
    Value d = DefaultValue(p);
    if (!d.is_error()) call.entries.emplace_back(std::string(p.name), std::move(d));
  }
  return call;
}

Value FieldDefault(const schema::Field& f) {
  if (!f.block) return DefaultValue(f.param);
  if (f.entries.empty()) return Value::Error();  // e.g. `split`: nothing unless written
  Value map;
  map.tag = Value::Tag::Map;
  for (const auto& p : f.entries) {
    Value d = DefaultValue(p);
    if (!d.is_error()) map.entries.emplace_back(std::string(p.name), std::move(d));
  }
  return map;
}

std::vector<std::pair<std::string, Value>> FieldsWithDefaults(const CheckedStage& stage,
                                                              const CheckedPipeline& pipeline) {
  std::vector<std::pair<std::string, Value>> out;
  const auto& schema = schema::Stage(stage.kind);
  size_t next = 0;  // stage.fields is in schema order
  for (const auto& f : schema.fields) {
    if (f.param.name == "resources") continue;
    if (next < stage.fields.size() && stage.fields[next].first == f.param.name) {
      out.push_back(stage.fields[next++]);
      continue;
    }
    Value d = FieldDefault(f);
    if (f.param.name == "seed") {
      for (const auto& [k, sv] : pipeline.settings) {
        if (k == "seed" && !sv.is_error()) d = sv;
      }
    }
    if (!d.is_error()) out.emplace_back(std::string(f.param.name), std::move(d));
  }
  return out;
}

}  // namespace mlp
