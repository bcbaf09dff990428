#include "runtime/core/report.h"

#include "runtime/ops/table.h"

namespace mlp::rt {

nlohmann::json PreviewTable(const std::vector<std::string>& shards, size_t max_values) {
  nlohmann::json out = nlohmann::json::object();
  uint64_t rows = 0, bytes = 0;
  nlohmann::json cols = nlohmann::json::object();
  for (const auto& s : shards) {
    bytes += s.size();
    ops::Table t;
    std::string error;
    if (s.compare(0, 8, "MLPTABLE") != 0) {
      out["format"] = "opaque";  // not a table (a model archive): its size is all there is to show
      continue;
    }
    if (!ops::Parse(s, &t, &error)) {
      out["error"] = error;
      continue;
    }
    rows += t.rows();
    for (const auto& c : t.columns) {
      auto& col = cols[c.name];
      if (!col.contains("dtype")) {
        col["dtype"] = std::string(ops::DTypeName(c.dtype));
        col["head"] = nlohmann::json::array();
      }
      auto& head = col["head"];
      auto add = [&](auto span) {
        for (size_t i = 0; i < span.size() && head.size() < max_values; ++i) head.push_back(span[i]);
      };
      if (c.row_elems() != 1) continue;
      switch (c.dtype) {
        case ops::DType::U8: add(c.values<uint8_t>()); break;
        case ops::DType::I32: add(c.values<int32_t>()); break;
        case ops::DType::I64: add(c.values<int64_t>()); break;
        case ops::DType::F32: add(c.values<float>()); break;
        case ops::DType::F64: add(c.values<double>()); break;
        case ops::DType::Bool: add(c.values<uint8_t>()); break;
      }
    }
  }
  out["rows"] = rows;
  out["bytes"] = bytes;
  out["shards"] = shards.size();
  out["columns"] = cols;
  return out;
}

}  // namespace mlp::rt
