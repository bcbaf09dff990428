// The diagnostic kind table and the "did you mean" helper.
#include "compiler/base/diagnostics.h"

#include <algorithm>
#include <cstdlib>

namespace mlp {

const std::vector<DiagKindInfo>& AllDiagKinds() {
  static const std::vector<DiagKindInfo> kinds = {
#define DIAG(name, sev, code) {DiagKind::name, Severity::sev, code},
#include "compiler/base/diagnostic_kinds.def"
#undef DIAG
  };
  return kinds;
}

const DiagKindInfo& Info(DiagKind kind) { return AllDiagKinds()[static_cast<size_t>(kind)]; }

std::string_view SeverityName(Severity s) {
  switch (s) {
    case Severity::Error: return "error";
    case Severity::Warning: return "warning";
    case Severity::Note: return "note";
  }
  std::abort();
}

Diagnostic& Diagnostics::Report(DiagKind kind, Range range, std::string message) {
  Severity sev = Info(kind).severity;
  if (sev == Severity::Error) ++errors_;
  if (sev == Severity::Warning) ++warnings_;
  if (diags_.size() >= kMaxKept) {
    ++dropped_;
    overflow_ = Diagnostic{kind, sev, range, {}, {}};
    return overflow_;
  }
  diags_.push_back(Diagnostic{kind, sev, range, std::move(message), {}});
  return diags_.back();
}

void Diagnostics::AddNote(Range range, std::string message) {
  if (dropped_ > 0) return;  // the note belongs to a dropped diagnostic
  if (!diags_.empty()) diags_.back().notes.push_back({range, std::move(message)});
}

void Diagnostics::Append(Diagnostics&& other) {
  for (auto& d : other.diags_) {
    std::vector<DiagNote> notes = std::move(d.notes);
    Report(d.kind, d.range, std::move(d.message));
    for (auto& n : notes) AddNote(n.range, std::move(n.message));
  }
  // Those `other` already dropped stay dropped, and are counted.
  dropped_ += other.dropped_;
  errors_ += other.errors_ - static_cast<size_t>(std::count_if(other.diags_.begin(), other.diags_.end(), [](const Diagnostic& d) {
               return d.severity == Severity::Error;
             }));
  warnings_ += other.warnings_ - static_cast<size_t>(std::count_if(other.diags_.begin(), other.diags_.end(), [](const Diagnostic& d) {
                 return d.severity == Severity::Warning;
               }));
}

void Diagnostics::Sort() {
  std::stable_sort(diags_.begin(), diags_.end(), [](const Diagnostic& a, const Diagnostic& b) {
    if (a.range.file != b.range.file) return a.range.file < b.range.file;
    return a.range.begin < b.range.begin;
  });
}

static size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string ClosestMatch(std::string_view name, const std::vector<std::string>& candidates) {
  size_t best = std::max<size_t>(1, (name.size() + 2) / 3) + 1;
  std::string out;
  for (const auto& c : candidates) {
    if (c.size() > name.size() + best || name.size() > c.size() + best) continue;
    size_t d = EditDistance(name, c);
    if (d < best) {
      best = d;
      out = c;
    }
  }
  return out;
}

std::string DidYouMean(std::string_view name, const std::vector<std::string>& candidates) {
  std::string m = ClosestMatch(name, candidates);
  return m.empty() ? std::string() : "; did you mean `" + m + "`?";
}

}  // namespace mlp
