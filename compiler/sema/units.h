// Duration and size units: `2ms`, `30s`, `512MiB`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mlp {

enum class UnitKind : uint8_t { Duration, Size };
struct Unit {
  UnitKind kind;
  double scale;  // nanoseconds or bytes per unit
};
std::optional<Unit> FindUnit(std::string_view unit);

struct Quantity {
  UnitKind kind;
  int64_t value;  // nanoseconds or bytes
};
// Parses "30s", "4GiB", "1.5h"; nullopt if malformed or out of range.
std::optional<Quantity> ParseQuantity(std::string_view text);
std::string FormatDuration(int64_t ns);
std::string FormatSize(int64_t bytes);

}  // namespace mlp
