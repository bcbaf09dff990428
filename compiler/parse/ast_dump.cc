// The AST as JSON: one object per node, keys in a fixed order so that two
// dumps compare as text.
#include "compiler/parse/ast_dump.h"

#include <nlohmann/json.hpp>

namespace mlp {
namespace {

using Json = nlohmann::ordered_json;

const char* DeclKindName(ast::DeclKind k) {
  switch (k) {
    case ast::DeclKind::Import: return "import";
    case ast::DeclKind::Pipeline: return "pipeline";
    case ast::DeclKind::Param: return "param";
    case ast::DeclKind::Resources: return "resources";
    case ast::DeclKind::Cluster: return "cluster";
    case ast::DeclKind::Kernel: return "kernel";
    case ast::DeclKind::Env: return "env";
    case ast::DeclKind::Stage: return "stage";
  }
  return "?";
}

const char* ExprKindName(ast::ExprKind k) {
  switch (k) {
    case ast::ExprKind::Int: return "int";
    case ast::ExprKind::Float: return "float";
    case ast::ExprKind::Quantity: return "quantity";
    case ast::ExprKind::String: return "string";
    case ast::ExprKind::Bool: return "bool";
    case ast::ExprKind::Name: return "name";
    case ast::ExprKind::Call: return "call";
    case ast::ExprKind::Field: return "field";
    case ast::ExprKind::Index: return "index";
    case ast::ExprKind::List: return "list";
    case ast::ExprKind::Map: return "map";
    case ast::ExprKind::Unary: return "unary";
    case ast::ExprKind::Binary: return "binary";
    case ast::ExprKind::If: return "if";
  }
  return "?";
}

const char* ItemKindName(ast::ItemKind k) {
  switch (k) {
    case ast::ItemKind::Assign: return "assign";
    case ast::ItemKind::Block: return "block";
    case ast::ItemKind::Stop: return "stop";
  }
  return "?";
}

const char* StmtKindName(ast::KStmtKind k) {
  switch (k) {
    case ast::KStmtKind::Let: return "let";
    case ast::KStmtKind::Set: return "set";
    case ast::KStmtKind::Reward: return "reward";
    case ast::KStmtKind::Done: return "done";
  }
  return "?";
}

const char* EnvItemKindName(ast::EnvItemKind k) {
  switch (k) {
    case ast::EnvItemKind::State: return "state";
    case ast::EnvItemKind::Action: return "action";
    case ast::EnvItemKind::Observe: return "observe";
    case ast::EnvItemKind::Step: return "step";
    case ast::EnvItemKind::Setting: return "setting";
  }
  return "?";
}

class Dumper {
 public:
  Dumper(const SourceManager& sm, bool with_ranges) : sm_(sm), with_ranges_(with_ranges) {}

  Json File(const ast::File& f) const {
    Json j = Json::object();
    if (with_ranges_ && f.file != kNoFile && f.file < sm_.size()) j["path"] = sm_.Path(f.file);
    Json decls = Json::array();
    for (const auto& d : f.decls) {
      if (d) decls.push_back(Decl(*d));
    }
    j["decls"] = std::move(decls);
    return j;
  }

 private:
  void At(Json& j, const char* key, const Range& r) const {
    if (!with_ranges_) return;
    if (!r.valid() || r.file >= sm_.size()) {
      j[key] = nullptr;
      return;
    }
    LineCol b = sm_.Position(r.file, r.begin);
    LineCol e = sm_.Position(r.file, r.end);
    j[key] = std::to_string(b.line) + ":" + std::to_string(b.col) + "-" +
             std::to_string(e.line) + ":" + std::to_string(e.col);
  }

  std::string Source(const Range& r) const {
    if (!r.valid() || r.file >= sm_.size() || r.end < r.begin) return "";
    if (r.end > sm_.Text(r.file).size()) return "";
    return std::string(sm_.Slice(r));
  }

  Json Decl(const ast::Decl& d) const {
    Json j = Json::object();
    j["kind"] = DeclKindName(d.kind);
    At(j, "range", d.range);
    switch (d.kind) {
      case ast::DeclKind::Import: {
        const auto& im = static_cast<const ast::ImportDecl&>(d);
        j["path"] = im.path;
        if (im.has_alias) j["alias"] = im.name.name;
        break;
      }
      case ast::DeclKind::Pipeline: {
        const auto& p = static_cast<const ast::PipelineDecl&>(d);
        j["name"] = p.name.name;
        j["items"] = Items(p.items);
        break;
      }
      case ast::DeclKind::Param: {
        const auto& p = static_cast<const ast::ParamDecl&>(d);
        j["name"] = p.name.name;
        j["type"] = p.type.str();
        j["default"] = Expr(p.default_value.get());
        break;
      }
      case ast::DeclKind::Resources:
      case ast::DeclKind::Cluster: {
        const auto& r = static_cast<const ast::ResourcesDecl&>(d);
        j["name"] = r.name.name;
        j["block"] = Block(r.block);
        break;
      }
      case ast::DeclKind::Kernel: {
        const auto& k = static_cast<const ast::KernelDecl&>(d);
        j["name"] = k.name.name;
        Json params = Json::array();
        for (const auto& p : k.params) {
          Json pj = Json::object();
          pj["name"] = p.name.name;
          pj["type"] = p.type.str();
          params.push_back(std::move(pj));
        }
        j["params"] = std::move(params);
        j["returns"] = k.ret.str();
        j["body"] = KBlock(&k.body);
        break;
      }
      case ast::DeclKind::Env: {
        const auto& e = static_cast<const ast::EnvDecl&>(d);
        j["name"] = e.name.name;
        Json items = Json::array();
        for (const auto& item : e.items) items.push_back(EnvItem(item));
        j["items"] = std::move(items);
        break;
      }
      case ast::DeclKind::Stage: {
        const auto& s = static_cast<const ast::StageDecl&>(d);
        j["stage"] = ast::Spelling(s.stage_kind);
        j["name"] = s.name.name;
        j["items"] = Items(s.items);
        break;
      }
    }
    return j;
  }

  Json Items(const std::vector<ast::Item>& items) const {
    Json out = Json::array();
    for (const auto& item : items) {
      Json j = Json::object();
      j["kind"] = ItemKindName(item.kind);
      At(j, "range", item.range);
      switch (item.kind) {
        case ast::ItemKind::Assign:
          j["path"] = item.path.str();
          j["value"] = Expr(item.value.get());
          break;
        case ast::ItemKind::Block:
          j["path"] = item.path.str();
          j["block"] = Block(item.block);
          break;
        case ast::ItemKind::Stop: j["value"] = Expr(item.value.get()); break;
      }
      out.push_back(std::move(j));
    }
    return out;
  }

  Json Block(const ast::SettingsBlock& b) const {
    Json j = Json::object();
    At(j, "range", b.range);
    Json entries = Json::array();
    for (const auto& e : b.entries) {
      Json ej = Json::object();
      At(ej, "range", e.range);
      ej["key"] = e.key.str();
      ej["value"] = Expr(e.value.get());
      entries.push_back(std::move(ej));
    }
    j["entries"] = std::move(entries);
    return j;
  }

  Json EnvItem(const ast::EnvItem& item) const {
    Json j = Json::object();
    j["kind"] = EnvItemKindName(item.kind);
    At(j, "range", item.range);
    switch (item.kind) {
      case ast::EnvItemKind::State: {
        Json fields = Json::array();
        for (const auto& f : item.fields) {
          Json fj = Json::object();
          At(fj, "range", f.range);
          fj["name"] = f.name.name;
          fj["type"] = f.type.str();
          fj["init"] = Expr(f.init.get());
          fields.push_back(std::move(fj));
        }
        j["fields"] = std::move(fields);
        break;
      }
      case ast::EnvItemKind::Action:
      case ast::EnvItemKind::Observe: j["value"] = Expr(item.value.get()); break;
      case ast::EnvItemKind::Step:
        j["param"] = item.step_param.name;
        j["body"] = KBlock(item.step.get());
        break;
      case ast::EnvItemKind::Setting:
        j["path"] = item.path.str();
        j["value"] = Expr(item.value.get());
        break;
    }
    return j;
  }

  Json KBlock(const ast::KBlock* b) const {
    if (!b) return nullptr;
    Json j = Json::object();
    At(j, "range", b->range);
    Json stmts = Json::array();
    for (const auto& s : b->stmts) {
      Json sj = Json::object();
      sj["kind"] = StmtKindName(s.kind);
      At(sj, "range", s.range);
      if (s.kind == ast::KStmtKind::Let || s.kind == ast::KStmtKind::Set) sj["name"] = s.name.name;
      if (s.type) sj["type"] = s.type->str();
      sj["value"] = Expr(s.value.get());
      stmts.push_back(std::move(sj));
    }
    j["stmts"] = std::move(stmts);
    j["result"] = Expr(b->result.get());
    return j;
  }

  Json Expr(const ast::Expr* e) const {
    if (!e) return nullptr;
    Json j = Json::object();
    j["kind"] = ExprKindName(e->kind);
    At(j, "range", e->range);
    auto operand = [e, this](size_t i) {
      return Expr(i < e->operands.size() ? e->operands[i].get() : nullptr);
    };
    switch (e->kind) {
      case ast::ExprKind::Int:
        j["value"] = e->int_value;
        j["text"] = Source(e->range);
        break;
      case ast::ExprKind::Float:
        j["value"] = e->float_value;
        j["text"] = Source(e->range);
        break;
      case ast::ExprKind::Quantity:
        j["value"] = e->float_value;
        j["unit"] = e->text;
        j["text"] = Source(e->range);
        break;
      case ast::ExprKind::String: {
        j["text"] = e->text;
        Json parts = Json::array();
        for (const auto& p : e->parts) {
          Json pj = Json::object();
          pj[p.is_interp ? "interp" : "text"] = p.text;
          if (p.is_interp) At(pj, "range", p.range);
          parts.push_back(std::move(pj));
        }
        j["parts"] = std::move(parts);
        break;
      }
      case ast::ExprKind::Bool: j["value"] = e->bool_value; break;
      case ast::ExprKind::Name: j["name"] = e->text; break;
      case ast::ExprKind::Call: {
        j["callee"] = e->text;
        Json args = Json::array();
        for (const auto& a : e->args) {
          Json aj = Json::object();
          if (a.name) aj["name"] = a.name->name;
          aj["value"] = Expr(a.value.get());
          args.push_back(std::move(aj));
        }
        j["args"] = std::move(args);
        break;
      }
      case ast::ExprKind::Field:
        j["base"] = operand(0);
        j["member"] = e->text;
        break;
      case ast::ExprKind::Index:
        j["base"] = operand(0);
        j["index"] = operand(1);
        break;
      case ast::ExprKind::List: {
        Json elems = Json::array();
        for (const auto& x : e->operands) elems.push_back(Expr(x.get()));
        j["elements"] = std::move(elems);
        break;
      }
      case ast::ExprKind::Map: {
        Json entries = Json::array();
        for (const auto& m : e->entries) {
          Json mj = Json::object();
          mj["key"] = m.key.name;
          if (m.quoted_key) mj["quoted"] = true;
          mj["value"] = Expr(m.value.get());
          entries.push_back(std::move(mj));
        }
        j["entries"] = std::move(entries);
        break;
      }
      case ast::ExprKind::Unary:
        j["op"] = ast::Spelling(e->un_op);
        j["operand"] = operand(0);
        break;
      case ast::ExprKind::Binary:
        j["op"] = ast::Spelling(e->bin_op);
        j["lhs"] = operand(0);
        j["rhs"] = operand(1);
        break;
      case ast::ExprKind::If:
        j["cond"] = operand(0);
        j["then"] = KBlock(e->then_block.get());
        if (e->else_is_if) j["else_is_if"] = true;
        j["else"] = KBlock(e->else_block.get());
        break;
    }
    return j;
  }

  const SourceManager& sm_;
  bool with_ranges_;
};

}  // namespace

std::string DumpAst(const SourceManager& sm, const ast::File& file, bool with_ranges) {
  // `replace`: string literals are source bytes, which need not be UTF-8.
  Json j = Dumper(sm, with_ranges).File(file);
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace mlp
