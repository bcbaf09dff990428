// The AST of one .mlp file, built from the ANTLR parse tree by parse/parser.cc.
// Every node carries the source Range it came from. The AST is syntax only:
// names are unresolved and nothing is typed; sema/ does that.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/base/source.h"

namespace mlp::ast {

struct Ident {
  std::string name;
  Range range;
};

// A dotted name: `optimizer.lr`, `resources`.
struct Path {
  std::vector<Ident> parts;
  Range range;
  std::string str() const;
};

struct TypeRef {
  Ident name;                     // int, float, f32, list, ...
  std::unique_ptr<TypeRef> elem;  // list[elem]
  Range range;
  std::string str() const;
};

enum class ExprKind : uint8_t {
  Int, Float, Quantity, String, Bool,   // literals
  Name, Call, Field, Index,             // references
  List, Map,                            // aggregates
  Unary, Binary, If,                    // operators
};

enum class BinOp : uint8_t { Mul, Div, Mod, Add, Sub, Lt, Le, Gt, Ge, Eq, Ne, And, Or, Pipe };
enum class UnOp : uint8_t { Neg, Not };
const char* Spelling(BinOp op);
const char* Spelling(UnOp op);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct KBlock;

// One piece of a string literal: text, or a `${name}` interpolation.
struct StringPart {
  bool is_interp = false;
  std::string text;  // decoded text, or the interpolated name
  Range range;       // for an interpolation: the name inside `${...}`
};

struct Arg {
  std::optional<Ident> name;  // named argument `lr: 1e-3`
  ExprPtr value;
};

struct MapEntry {
  Ident key;
  bool quoted_key = false;
  ExprPtr value;
};

struct Expr {
  ExprKind kind;
  Range range;
  // Int: int_value. Float: float_value. Bool: bool_value.
  // Quantity (`2ms`, `4GiB`): float_value is the number, text the unit.
  int64_t int_value = 0;
  double float_value = 0;
  bool bool_value = false;
  std::string text;    // Quantity unit; Name / Call callee / Field member; String raw source
  Range name_range;    // Call callee / Field member
  std::vector<StringPart> parts;  // String
  BinOp bin_op = BinOp::Add;
  UnOp un_op = UnOp::Neg;
  // Unary: [operand]. Binary: [lhs, rhs]. Field: [base]. Index: [base, index].
  // List: elements. If: [condition].
  std::vector<ExprPtr> operands;
  std::vector<Arg> args;          // Call
  std::vector<MapEntry> entries;  // Map
  std::unique_ptr<KBlock> then_block, else_block;  // If
  bool else_is_if = false;  // `else if`: else_block holds only an If result

  explicit Expr(ExprKind k, Range r) : kind(k), range(r) {}
};

// Statements of kernel bodies and env step functions.
enum class KStmtKind : uint8_t { Let, Set, Reward, Done };
struct KStmt {
  KStmtKind kind;
  Range range;
  Ident name;                     // Let, Set
  std::unique_ptr<TypeRef> type;  // Let with `: type`
  ExprPtr value;
};

struct KBlock {
  std::vector<KStmt> stmts;
  ExprPtr result;  // may be null (env step bodies)
  Range range;
};

// `key: value` inside a settings block.
struct Entry {
  Path key;
  ExprPtr value;
  Range range;
};

struct SettingsBlock {
  std::vector<Entry> entries;
  Range range;
};

// One line of a stage or pipeline body.
enum class ItemKind : uint8_t { Assign, Block, Stop };
struct Item {
  ItemKind kind;
  Range range;
  Path path;             // Assign: the field (may be dotted); Block: its name
  ExprPtr value;         // Assign, Stop
  SettingsBlock block;   // Block
};

enum class DeclKind : uint8_t { Import, Pipeline, Param, Resources, Cluster, Kernel, Env, Stage };
enum class StageKind : uint8_t { Data, Train, Tune, Serve, Rl };
const char* Spelling(StageKind k);

struct Decl {
  DeclKind kind;
  Range range;
  Ident name;  // Import: the alias, if any
  explicit Decl(DeclKind k) : kind(k) {}
  virtual ~Decl() = default;
};

struct ImportDecl : Decl {
  std::string path;
  Range path_range;
  bool has_alias = false;
  ImportDecl() : Decl(DeclKind::Import) {}
};

struct PipelineDecl : Decl {
  std::vector<Item> items;
  PipelineDecl() : Decl(DeclKind::Pipeline) {}
};

struct ParamDecl : Decl {
  TypeRef type;
  ExprPtr default_value;  // may be null: then the param is required
  ParamDecl() : Decl(DeclKind::Param) {}
};

struct ResourcesDecl : Decl {  // `resources NAME { ... }`, also `cluster NAME { ... }`
  SettingsBlock block;
  explicit ResourcesDecl(DeclKind k) : Decl(k) {}
};

struct KernelParam {
  Ident name;
  TypeRef type;
};

struct KernelDecl : Decl {
  std::vector<KernelParam> params;
  TypeRef ret;
  KBlock body;
  KernelDecl() : Decl(DeclKind::Kernel) {}
};

struct StateField {
  Ident name;
  TypeRef type;
  ExprPtr init;
  Range range;
};

enum class EnvItemKind : uint8_t { State, Action, Observe, Step, Setting };
struct EnvItem {
  EnvItemKind kind;
  Range range;
  std::vector<StateField> fields;  // State
  ExprPtr value;                   // Action, Observe, Setting
  Path path;                       // Setting
  Ident step_param;                // Step
  std::unique_ptr<KBlock> step;    // Step
};

struct EnvDecl : Decl {
  std::vector<EnvItem> items;
  EnvDecl() : Decl(DeclKind::Env) {}
};

struct StageDecl : Decl {
  StageKind stage_kind;
  Range keyword_range;
  std::vector<Item> items;
  StageDecl() : Decl(DeclKind::Stage) {}
};

struct Comment {
  Range range;
  std::string text;  // with its `//` or `/* */`
};

struct File {
  FileId file = kNoFile;
  std::vector<std::unique_ptr<Decl>> decls;
  std::vector<Comment> comments;  // in source order
};

}  // namespace mlp::ast
