#include "runtime/core/report.h"

#include <cmath>

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
    if (!ops::IsSerializedTable(s)) {
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

bool TableAsText(const std::vector<std::string>& shards, std::string* csv, std::string* json, size_t max_bytes) {
  size_t total = 0;
  std::vector<ops::Table> tables;
  for (const auto& s : shards) {
    total += s.size();
    ops::Table t;
    std::string error;
    if (total > max_bytes || !ops::IsSerializedTable(s) || !ops::Parse(s, &t, &error)) return false;
    for (const auto& c : t.columns)
      if (c.row_elems() != 1) return false;
    if (!tables.empty() && t.columns.size() != tables[0].columns.size()) return false;
    tables.push_back(std::move(t));
  }
  if (tables.empty() || tables[0].columns.empty()) return false;
  auto quote = [](const std::string& name) {
    if (name.find_first_of(",\"\n") == std::string::npos) return name;
    std::string q = "\"";
    for (char ch : name) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  csv->clear();
  for (size_t c = 0; c < tables[0].columns.size(); ++c) *csv += (c ? "," : "") + quote(tables[0].columns[c].name);
  *csv += "\n";
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& t : tables) {
    for (uint64_t r = 0; r < t.rows(); ++r) {
      nlohmann::json row = nlohmann::json::object();
      for (size_t c = 0; c < t.columns.size(); ++c) {
        const ops::Column& col = t.columns[c];
        nlohmann::json v;
        switch (col.dtype) {
          case ops::DType::U8: v = col.values<uint8_t>()[r]; break;
          case ops::DType::I32: v = col.values<int32_t>()[r]; break;
          case ops::DType::I64: v = col.values<int64_t>()[r]; break;
          case ops::DType::F32: v = col.values<float>()[r]; break;
          case ops::DType::F64: v = col.values<double>()[r]; break;
          case ops::DType::Bool: v = col.values<uint8_t>()[r] != 0; break;
        }
        // JSON has no NaN: it is null there and empty in the CSV.
        if (v.is_number_float() && !std::isfinite(v.get<double>())) v = nullptr;
        *csv += (c ? "," : "") + (v.is_null() ? std::string() : v.dump());
        row[col.name] = v;
      }
      *csv += "\n";
      rows.push_back(std::move(row));
    }
  }
  *json = rows.dump(2) + "\n";
  return true;
}

}  // namespace mlp::rt
