// Describing and printing compile-time values.
#include "compiler/sema/value.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "compiler/sema/units.h"

namespace mlp {

std::string DescribeType(const Value& v) {
  switch (v.tag) {
    case Value::Tag::Error: return "an invalid value";
    case Value::Tag::Int: return "int";
    case Value::Tag::Float: return "float";
    case Value::Tag::Bool: return "bool";
    case Value::Tag::String: return "string";
    case Value::Tag::Path: return "path";
    case Value::Tag::Duration: return "duration";
    case Value::Tag::Size: return "size";
    case Value::Tag::List: return "list";
    case Value::Tag::Map: return "map";
    case Value::Tag::Call:
    case Value::Tag::Ref:
      return std::string(schema::KindName(v.kind));
    case Value::Tag::Kernel: return "kernel";
    case Value::Tag::Env: return "env";
    case Value::Tag::Symbol: return "name";
    case Value::Tag::Predicate: return "condition";
  }
  return "?";
}

static std::string FormatFloat(double d) {
  char buf[64];
  // Whole numbers of ordinary size read best without an exponent: 10.0, not 1e+01.
  if (std::isfinite(d) && d == std::nearbyint(d) && std::fabs(d) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.1f", d);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.17g", d);
  // Shortest text that round-trips.
  for (int prec = 1; prec <= 17; ++prec) {
    char b2[64];
    std::snprintf(b2, sizeof b2, "%.*g", prec, d);
    if (std::strtod(b2, nullptr) == d) {
      std::string s = b2;
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
  }
  return buf;
}

static std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '$': out += "\\$"; break;
      default: out += c;
    }
  }
  return out + "\"";
}

std::string ToSource(const Value& v) {
  switch (v.tag) {
    case Value::Tag::Error: return "<error>";
    case Value::Tag::Int: return std::to_string(v.i);
    case Value::Tag::Float: return FormatFloat(v.f);
    case Value::Tag::Bool: return v.b ? "true" : "false";
    case Value::Tag::String:
    case Value::Tag::Path: return Quoted(v.s);
    case Value::Tag::Duration: return FormatDuration(v.i);
    case Value::Tag::Size: return FormatSize(v.i);
    case Value::Tag::List: {
      std::string s = "[";
      for (size_t k = 0; k < v.items.size(); ++k) s += (k ? ", " : "") + ToSource(v.items[k]);
      return s + "]";
    }
    case Value::Tag::Map:
    case Value::Tag::Call: {
      std::string s = v.tag == Value::Tag::Map ? "{" : v.s + "(";
      for (size_t k = 0; k < v.entries.size(); ++k) {
        s += (k ? ", " : "") + v.entries[k].first + ": " + ToSource(v.entries[k].second);
      }
      return s + (v.tag == Value::Tag::Map ? "}" : ")");
    }
    case Value::Tag::Ref: return v.field.empty() ? v.s : v.s + "." + v.field;
    case Value::Tag::Kernel:
    case Value::Tag::Env:
    case Value::Tag::Symbol:
    case Value::Tag::Predicate: return v.s;
  }
  return "?";
}

}  // namespace mlp
