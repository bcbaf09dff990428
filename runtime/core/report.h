// Short, human-checkable previews of stage outputs for `mlpc run --json` and
// the live display: row count, columns, and the first few values.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlp::rt {

// `shards`: the serialized tables of one output, in shard order.
nlohmann::json PreviewTable(const std::vector<std::string>& shards, size_t max_values = 8);

// A small output whose shards are tables of scalar columns (a train stage's
// per-epoch metrics, a sum) as CSV (a header row, then one line per row) and
// as JSON (an array of row objects), for people and scripts to read; false
// when the output is not such a table or is larger than `max_bytes`.
bool TableAsText(const std::vector<std::string>& shards, std::string* csv, std::string* json,
                 size_t max_bytes = 1 << 20);

}  // namespace mlp::rt
