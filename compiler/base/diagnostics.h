// Diagnostics: what the compiler tells the user. Kinds come from
// diagnostic_kinds.def; rendering (text, JSON, SARIF) is in diagnostic_render.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/base/source.h"

namespace mlp {

enum class Severity : uint8_t { Error, Warning, Note };

enum class DiagKind : uint16_t {
#define DIAG(name, sev, code) name,
#include "compiler/base/diagnostic_kinds.def"
#undef DIAG
};

struct DiagKindInfo {
  DiagKind kind;
  Severity severity;
  std::string_view code;
};
// All kinds, in declaration order.
const std::vector<DiagKindInfo>& AllDiagKinds();
const DiagKindInfo& Info(DiagKind kind);
std::string_view SeverityName(Severity s);

struct DiagNote {
  Range range;  // may be invalid: a note with no location
  std::string message;
};

struct Diagnostic {
  DiagKind kind;
  Severity severity;
  Range range;  // may be invalid (e.g. a command-line override)
  std::string message;
  std::vector<DiagNote> notes;
};

class Diagnostics {
 public:
  Diagnostic& Report(DiagKind kind, Range range, std::string message);
  void AddNote(Range range, std::string message);  // to the last diagnostic
  const std::vector<Diagnostic>& all() const { return diags_; }
  // Past kMaxKept, diagnostics are counted but not kept (a file of 100,000
  // stray bytes must not print 100,000 errors).
  static constexpr size_t kMaxKept = 200;
  size_t dropped() const { return dropped_; }
  size_t error_count() const { return errors_; }
  size_t warning_count() const { return warnings_; }
  bool has_errors() const { return errors_ > 0; }
  // Stable order for output: by file, offset, then emission order.
  void Sort();
  // Adds `other`'s diagnostics after these, as if reported here.
  void Append(Diagnostics&& other);

 private:
  std::vector<Diagnostic> diags_;
  Diagnostic overflow_;  // receives what is reported past kMaxKept
  size_t dropped_ = 0;
  size_t errors_ = 0;
  size_t warnings_ = 0;
};

// The closest candidate to `name` by edit distance, or "" if none is close.
std::string ClosestMatch(std::string_view name, const std::vector<std::string>& candidates);
// ", did you mean `x`?" or "".
std::string DidYouMean(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace mlp
