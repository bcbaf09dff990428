// Spellings and small helpers of the AST.
#include "compiler/parse/ast.h"

namespace mlp::ast {

std::string Path::str() const {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) s += '.';
    s += parts[i].name;
  }
  return s;
}

std::string TypeRef::str() const {
  return elem ? name.name + "[" + elem->str() + "]" : name.name;
}

const char* Spelling(BinOp op) {
  switch (op) {
    case BinOp::Mul: return "*";
    case BinOp::Div: return "/";
    case BinOp::Mod: return "%";
    case BinOp::Add: return "+";
    case BinOp::Sub: return "-";
    case BinOp::Lt: return "<";
    case BinOp::Le: return "<=";
    case BinOp::Gt: return ">";
    case BinOp::Ge: return ">=";
    case BinOp::Eq: return "==";
    case BinOp::Ne: return "!=";
    case BinOp::And: return "and";
    case BinOp::Or: return "or";
    case BinOp::Pipe: return "|";
  }
  return "?";
}

const char* Spelling(UnOp op) { return op == UnOp::Neg ? "-" : "not"; }

const char* Spelling(StageKind k) {
  switch (k) {
    case StageKind::Data: return "data";
    case StageKind::Train: return "train";
    case StageKind::Tune: return "tune";
    case StageKind::Serve: return "serve";
    case StageKind::Rl: return "rl";
  }
  return "?";
}

}  // namespace mlp::ast
