// Text, JSON and SARIF renderings of diagnostics.
#include "compiler/base/diagnostic_render.h"

#include <nlohmann/json.hpp>

namespace mlp {

namespace {

const char* Color(Severity s) {
  switch (s) {
    case Severity::Error: return "\033[1;31m";
    case Severity::Warning: return "\033[1;35m";
    case Severity::Note: return "\033[1;36m";
  }
  return "";
}

void RenderOne(const SourceManager& sm, Range range, Severity sev, const std::string& message, bool color,
               std::string& out) {
  const char* bold = color ? "\033[1m" : "";
  const char* reset = color ? "\033[0m" : "";
  if (!range.valid()) {
    out += std::string(bold) + "mlpc: " + reset + (color ? Color(sev) : "") + std::string(SeverityName(sev)) + ":" +
           reset + " " + bold + message + reset + "\n";
    return;
  }
  LineCol b = sm.Position(range.file, range.begin);
  out += std::string(bold) + sm.Path(range.file) + ":" + std::to_string(b.line) + ":" + std::to_string(b.col) + ": " +
         reset + (color ? Color(sev) : "") + std::string(SeverityName(sev)) + ":" + reset + " " + bold + message + reset +
         "\n";
  std::string_view line = sm.LineText(range.file, b.line);
  LineCol e = sm.Position(range.file, range.end);
  size_t start = b.col - 1;
  size_t end = e.line == b.line ? std::max<size_t>(e.col - 1, start + 1) : line.size();
  if (end > line.size()) end = std::max(line.size(), start + 1);
  // A very long line is shown as a window around the range.
  constexpr size_t kWindow = 120;
  std::string prefix;
  if (line.size() > kWindow * 2) {
    size_t from = start > kWindow / 2 ? start - kWindow / 2 : 0;
    line = line.substr(from, kWindow);
    if (from > 0) prefix = "...";
    start = start - from + prefix.size();
    end = std::min(end - from, line.size()) + prefix.size();
    if (end <= start) end = start + 1;
  }
  std::string shown = prefix;
  std::string caret;
  for (size_t k = 0; k < line.size(); ++k) {
    // Tabs become one space so that the caret stays under the right column.
    char c = line[k] == '\t' ? ' ' : line[k];
    shown += c;
  }
  caret.assign(start, ' ');
  caret += '^';
  if (end > start + 1) caret.append(end - start - 1, '~');
  out += shown + "\n" + (color ? "\033[1;32m" : "") + caret + reset + "\n";
}

nlohmann::json Location(const SourceManager& sm, Range r) {
  if (!r.valid()) return nullptr;
  LineCol b = sm.Position(r.file, r.begin);
  LineCol e = sm.Position(r.file, r.end);
  return {{"file", sm.Path(r.file)},
          {"line", b.line},
          {"column", b.col},
          {"end_line", e.line},
          {"end_column", e.col}};
}

}  // namespace

std::string RenderText(const SourceManager& sm, const Diagnostics& diags, bool color) {
  std::string out;
  for (const auto& d : diags.all()) {
    RenderOne(sm, d.range, d.severity, d.message, color, out);
    for (const auto& n : d.notes) RenderOne(sm, n.range, Severity::Note, n.message, color, out);
  }
  if (diags.dropped()) {
    out += "mlpc: note: " + std::to_string(diags.dropped()) + " more diagnostics not shown\n";
  }
  return out;
}

std::string RenderJson(const std::vector<DiagSource>& sources) {
  nlohmann::json list = nlohmann::json::array();
  size_t errors = 0, warnings = 0;
  for (const auto& [sm, diags] : sources) {
    errors += diags->error_count();
    warnings += diags->warning_count();
    for (const auto& d : diags->all()) {
      nlohmann::json notes = nlohmann::json::array();
      for (const auto& n : d.notes) notes.push_back({{"message", n.message}, {"location", Location(*sm, n.range)}});
      list.push_back({{"severity", SeverityName(d.severity)},
                      {"code", Info(d.kind).code},
                      {"message", d.message},
                      {"location", Location(*sm, d.range)},
                      {"notes", notes}});
    }
  }
  size_t not_shown = 0;
  for (const auto& src : sources) not_shown += src.diags->dropped();
  nlohmann::json doc = {{"diagnostics", list}, {"errors", errors}, {"warnings", warnings}, {"not_shown", not_shown}};
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string RenderSarif(const std::vector<DiagSource>& sources, const std::string& tool_version) {
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& k : AllDiagKinds()) {
    rules.push_back({{"id", k.code},
                     {"defaultConfiguration", {{"level", k.severity == Severity::Error ? "error" : "warning"}}}});
  }
  nlohmann::json results = nlohmann::json::array();
  for (const auto& src : sources) {
    const SourceManager* sm = src.sm;
    const Diagnostics* diags = src.diags;
    auto physical = [&](Range r) -> nlohmann::json {
      LineCol b = sm->Position(r.file, r.begin);
      LineCol e = sm->Position(r.file, r.end);
      return {{"physicalLocation",
               {{"artifactLocation", {{"uri", sm->Path(r.file)}}},
                {"region", {{"startLine", b.line}, {"startColumn", b.col}, {"endLine", e.line}, {"endColumn", e.col}}}}}};
    };
    for (const auto& d : diags->all()) {
      nlohmann::json r = {{"ruleId", Info(d.kind).code},
                          {"level", d.severity == Severity::Error ? "error" : "warning"},
                          {"message", {{"text", d.message}}}};
      r["locations"] = nlohmann::json::array();
      if (d.range.valid()) r["locations"].push_back(physical(d.range));
      nlohmann::json related = nlohmann::json::array();
      for (const auto& n : d.notes) {
        nlohmann::json loc = n.range.valid() ? physical(n.range) : nlohmann::json::object();
        loc["message"] = {{"text", n.message}};
        related.push_back(loc);
      }
      if (!related.empty()) r["relatedLocations"] = related;
      results.push_back(r);
    }
  }
  nlohmann::json doc = {
      {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
      {"version", "2.1.0"},
      {"runs",
       {{{"tool", {{"driver", {{"name", "mlpc"}, {"version", tool_version}, {"rules", rules}}}}},
         {"results", results}}}}};
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace mlp
