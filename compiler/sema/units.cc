// Unit table and canonical spelling of durations and sizes.
#include "compiler/sema/units.h"

#include "compiler/parse/string_literal.h"

#include <cmath>
#include <cstdlib>

namespace mlp {

std::optional<Unit> FindUnit(std::string_view u) {
  struct Row {
    std::string_view name;
    Unit unit;
  };
  static const Row kRows[] = {
      {"ns", {UnitKind::Duration, 1}},
      {"us", {UnitKind::Duration, 1e3}},
      {"ms", {UnitKind::Duration, 1e6}},
      {"s", {UnitKind::Duration, 1e9}},
      {"m", {UnitKind::Duration, 60e9}},
      {"h", {UnitKind::Duration, 3600e9}},
      {"d", {UnitKind::Duration, 86400e9}},
      {"B", {UnitKind::Size, 1}},
      {"KB", {UnitKind::Size, 1e3}},
      {"MB", {UnitKind::Size, 1e6}},
      {"GB", {UnitKind::Size, 1e9}},
      {"TB", {UnitKind::Size, 1e12}},
      {"KiB", {UnitKind::Size, 1024.0}},
      {"MiB", {UnitKind::Size, 1024.0 * 1024}},
      {"GiB", {UnitKind::Size, 1024.0 * 1024 * 1024}},
      {"TiB", {UnitKind::Size, 1024.0 * 1024 * 1024 * 1024}},
  };
  for (const auto& r : kRows) {
    if (r.name == u) return r.unit;
  }
  return std::nullopt;
}

std::optional<Quantity> ParseQuantity(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.' || text[i] == '_')) ++i;
  std::string num;
  if (!StripDigitSeparators(text.substr(0, i), num)) return std::nullopt;
  if (num.empty() || num.front() == '.' || num.back() == '.') return std::nullopt;
  auto unit = FindUnit(text.substr(i));
  if (!unit) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(num.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  double scaled = std::round(v * unit->scale);
  if (!(scaled >= 0) || scaled > 9.2e18) return std::nullopt;
  return Quantity{unit->kind, static_cast<int64_t>(scaled)};
}

namespace {
std::string Pick(int64_t v, const std::pair<int64_t, const char*>* units, size_t n) {
  for (size_t k = 0; k < n; ++k) {
    if (v != 0 && v % units[k].first == 0) return std::to_string(v / units[k].first) + units[k].second;
  }
  return std::to_string(v) + units[n - 1].second;
}
}  // namespace

std::string FormatDuration(int64_t ns) {
  static const std::pair<int64_t, const char*> kUnits[] = {
      {86400'000'000'000, "d"}, {3600'000'000'000, "h"}, {60'000'000'000, "m"}, {1'000'000'000, "s"},
      {1'000'000, "ms"},        {1'000, "us"},            {1, "ns"}};
  return Pick(ns, kUnits, std::size(kUnits));
}

std::string FormatSize(int64_t bytes) {
  static const std::pair<int64_t, const char*> kUnits[] = {
      {1LL << 40, "TiB"}, {1LL << 30, "GiB"}, {1LL << 20, "MiB"}, {1LL << 10, "KiB"}, {1, "B"}};
  return Pick(bytes, kUnits, std::size(kUnits));
}

}  // namespace mlp
