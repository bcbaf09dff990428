// Short, human-checkable previews of stage outputs for `mlpc run --json` and
// the live display: row count, columns, and the first few values.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlp::rt {

// `shards`: the serialized tables of one output, in shard order.
nlohmann::json PreviewTable(const std::vector<std::string>& shards, size_t max_values = 8);

}  // namespace mlp::rt
