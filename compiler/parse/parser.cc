// Parsing: the ANTLR lexer and parser wrapped so that they never print, never
// throw and never crash on bad input, plus the parse-tree -> AST builder.
#include "compiler/parse/parser.h"

#include "compiler/base/utf8.h"
#include "compiler/parse/fast_parser.h"
#include "compiler/parse/string_literal.h"

#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <set>

#include "MlpLexer.h"
#include "MlpParser.h"
#include "antlr4-runtime.h"

namespace mlp {
namespace {

using mlp_antlr::MlpLexer;
using mlp_antlr::MlpParser;

// Replaces bytes that are not valid UTF-8 with '?', so that byte offsets are
// kept and the ANTLR input stream never sees malformed text. Returns the
// offset of the first invalid byte, or npos.
size_t SanitizeUtf8(std::string& s) {
  size_t first_bad = std::string::npos;
  size_t i = 0;
  while (i < s.size()) {
    size_t len = Utf8SequenceLength(s, i);
    if (len == 0) {
      if (first_bad == std::string::npos) first_bad = i;
      s[i] = '?';
      len = 1;
    }
    i += len;
  }
  return first_bad;
}

// ANTLR indexes characters by code point; diagnostics use byte offsets.
class OffsetMap {
 public:
  explicit OffsetMap(const std::string& s) : size_(static_cast<uint32_t>(s.size())) {
    bool ascii = true;
    for (unsigned char c : s) ascii &= c < 0x80;
    if (ascii) return;
    for (uint32_t i = 0; i < s.size(); ++i) {
      if ((static_cast<unsigned char>(s[i]) >> 6) != 2) map_.push_back(i);
    }
    map_.push_back(static_cast<uint32_t>(s.size()));
  }
  // Tokens conjured by error recovery have no position (index -1): they map
  // to the end of the file, like every index past it.
  uint32_t Byte(size_t cp) const {
    if (map_.empty()) return cp < size_ ? static_cast<uint32_t>(cp) : size_;
    return cp < map_.size() ? map_[cp] : map_.back();
  }

 private:
  uint32_t size_;
  std::vector<uint32_t> map_;
};

// Retypes `(`, `[` and `-` that begin a line: they start a new expression and
// never continue the one on the previous line (so `let m = y` followed by a
// line `(x - m) / s` is two things, not a call of `y`).
class MlpTokenSource : public MlpLexer {
 public:
  using MlpLexer::MlpLexer;
  std::unique_ptr<antlr4::Token> nextToken() override {
    auto t = MlpLexer::nextToken();
    if (t->getChannel() != antlr4::Token::DEFAULT_CHANNEL) return t;
    size_t type = t->getType();
    auto* w = dynamic_cast<antlr4::WritableToken*>(t.get());
    if (w && (type == LPAREN_NL || type == LBRACK_NL || type == MINUS_NL)) {
      w->setType(ERROR_CHAR);  // the raw control characters behind these names
    } else if (w && t->getLine() > last_line_ && have_last_) {
      if (type == LPAREN) w->setType(LPAREN_NL);
      if (type == LBRACK) w->setType(LBRACK_NL);
      if (type == MINUS) w->setType(MINUS_NL);
    }
    if (type != antlr4::Token::EOF) {
      // A token may span lines (strings cannot, comments are hidden).
      last_line_ = t->getLine();
      have_last_ = true;
    }
    return t;
  }

 private:
  size_t last_line_ = 0;
  bool have_last_ = false;
};

// Backticked, with control characters shown as U+XXXX so that messages stay printable.
std::string Quote(std::string_view s) {
  std::string out = "`";
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "U+%04X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "`";
}

std::string TokenDisplay(const antlr4::dfa::Vocabulary& vocab, size_t type) {
  if (type == antlr4::Token::EOF) return "end of file";
  switch (type) {
    case MlpParser::ID: return "a name";
    case MlpParser::INT: return "an integer";
    case MlpParser::FLOAT: return "a number";
    case MlpParser::STRING: return "a string";
    case MlpParser::QUANTITY: return "a quantity";
    case MlpParser::LPAREN_NL: return "`(`";
    case MlpParser::LBRACK_NL: return "`[`";
    case MlpParser::MINUS_NL: return "`-`";
    default: break;
  }
  std::string lit = vocab.getLiteralName(type);
  if (lit.size() >= 2 && lit.front() == '\'') return Quote(lit.substr(1, lit.size() - 2));
  return vocab.getSymbolicName(type);
}

class SyntaxErrorListener : public antlr4::BaseErrorListener {
 public:
  SyntaxErrorListener(FileId file, const OffsetMap& offsets, Diagnostics& diags)
      : file_(file), offsets_(offsets), diags_(diags) {}

  void syntaxError(antlr4::Recognizer* recognizer, antlr4::Token* tok, size_t line, size_t col,
                   const std::string& msg, std::exception_ptr) override {
    if (!tok) return;  // lexer errors cannot happen: ERROR_CHAR matches anything
    Range r{file_, offsets_.Byte(tok->getStartIndex()), 0};
    r.end = tok->getType() == antlr4::Token::EOF ? r.begin
                                                  : offsets_.Byte(tok->getStopIndex() + 1);
    if (!reported_.insert(r.begin).second) return;
    if (++count_ > kMaxErrors) return;
    std::string text = tok->getText();
    // Lexical errors are reported from the token stream (see ReportLexicalErrors).
    if (tok->getType() == MlpParser::ERROR_CHAR || tok->getType() == MlpParser::UNTERMINATED_STRING ||
        tok->getType() == MlpParser::UNTERMINATED_COMMENT) {
      return;
    }
    auto* parser = dynamic_cast<antlr4::Parser*>(recognizer);
    std::string what = tok->getType() == antlr4::Token::EOF ? "end of file"
                                                            : Quote(text);
    std::string m = "unexpected " + what;
    if (parser) {
      std::set<std::string> expected;
      bool any_ident = false, any_literal = false;
      for (size_t t : parser->getExpectedTokens().toList()) {
        if (t == MlpParser::ID) any_ident = true;
        if (t == MlpParser::INT || t == MlpParser::STRING) any_literal = true;
        expected.insert(TokenDisplay(parser->getVocabulary(), t));
      }
      if (any_ident && any_literal) {  // every token that can start an expression
        diags_.Report(DiagKind::SyntaxError, r, m + "; expected an expression");
        return;
      }
      if (any_ident) {  // keywords usable as names would flood the list
        std::erase_if(expected, [](const std::string& s) {
          return s.size() > 2 && s.front() == '`' && std::isalpha(static_cast<unsigned char>(s[1]));
        });
      }
      if (!expected.empty() && expected.size() <= 6) {
        m += "; expected ";
        size_t i = 0;
        for (const auto& e : expected) {
          if (i) m += (i + 1 == expected.size()) ? " or " : ", ";
          m += e;
          ++i;
        }
      }
    }
    diags_.Report(DiagKind::SyntaxError, r, m);
  }

 private:
  static constexpr int kMaxErrors = 50;
  FileId file_;
  const OffsetMap& offsets_;
  Diagnostics& diags_;
  std::set<uint32_t> reported_;
  int count_ = 0;
};

// Builds the AST from a parse tree that may be partial after error recovery:
// every child pointer may be null.
class Builder {
 public:
  Builder(const SourceManager& sm, FileId file, const OffsetMap& offsets, Diagnostics& diags)
      : sm_(sm), file_(file), offsets_(offsets), diags_(diags) {}

  std::unique_ptr<ast::File> Build(MlpParser::FileContext* ctx) {
    auto out = std::make_unique<ast::File>();
    out->file = file_;
    if (!ctx) return out;
    for (auto* d : ctx->topDecl()) {
      if (auto decl = TopDecl(d)) out->decls.push_back(std::move(decl));
    }
    return out;
  }

 private:
  Range R(antlr4::ParserRuleContext* ctx) const {
    if (!ctx || !ctx->getStart()) return Range{file_, 0, 0};
    Range r{file_, offsets_.Byte(ctx->getStart()->getStartIndex()), 0};
    auto* stop = ctx->getStop();
    if (stop && stop->getType() != antlr4::Token::EOF &&
        stop->getStopIndex() + 1 >= ctx->getStart()->getStartIndex()) {
      r.end = offsets_.Byte(stop->getStopIndex() + 1);
    } else {
      r.end = r.begin;
    }
    if (r.end < r.begin) r.end = r.begin;
    return r;
  }
  Range R(antlr4::Token* t) const {
    if (!t || t->getType() == antlr4::Token::EOF) return Range{file_, 0, 0};
    return Range{file_, offsets_.Byte(t->getStartIndex()), offsets_.Byte(t->getStopIndex() + 1)};
  }
  Range R(antlr4::tree::TerminalNode* n) const { return n ? R(n->getSymbol()) : Range{file_, 0, 0}; }

  ast::Ident Ident(MlpParser::IdentContext* ctx) {
    ast::Ident id;
    if (!ctx) return id;
    id.name = ctx->getText();
    id.range = R(ctx);
    return id;
  }

  ast::Path Path(MlpParser::PathContext* ctx) {
    ast::Path p;
    if (!ctx) return p;
    for (auto* i : ctx->ident()) p.parts.push_back(Ident(i));
    p.range = R(ctx);
    return p;
  }

  ast::TypeRef Type(MlpParser::TypeRefContext* ctx) {
    ast::TypeRef t;
    if (!ctx) return t;
    t.name = Ident(ctx->ident());
    t.range = R(ctx);
    if (ctx->typeRef()) t.elem = std::make_unique<ast::TypeRef>(Type(ctx->typeRef()));
    return t;
  }

  std::unique_ptr<ast::Decl> TopDecl(MlpParser::TopDeclContext* ctx) {
    if (auto* c = ctx->importDecl()) {
      auto d = std::make_unique<ast::ImportDecl>();
      d->range = R(c);
      if (c->STRING()) {
        auto s = String(c->STRING()->getSymbol());
        d->path_range = s->range;
        for (auto& p : s->parts) d->path += p.is_interp ? "${" + p.text + "}" : p.text;
      }
      if (c->ident()) {
        d->name = Ident(c->ident());
        d->has_alias = true;
      }
      return d;
    }
    if (auto* c = ctx->pipelineDecl()) {
      auto d = std::make_unique<ast::PipelineDecl>();
      d->range = R(c);
      d->name = Ident(c->ident());
      if (c->body()) d->items = Items(c->body());
      return d;
    }
    if (auto* c = ctx->paramDecl()) {
      auto d = std::make_unique<ast::ParamDecl>();
      d->range = R(c);
      d->name = Ident(c->ident());
      d->type = Type(c->typeRef());
      if (c->expr()) d->default_value = Expr(c->expr());
      return d;
    }
    if (auto* c = ctx->resourcesDecl()) {
      auto d = std::make_unique<ast::ResourcesDecl>(ast::DeclKind::Resources);
      d->range = R(c);
      d->name = Ident(c->ident());
      d->block = Block(c->block());
      return d;
    }
    if (auto* c = ctx->clusterDecl()) {
      auto d = std::make_unique<ast::ResourcesDecl>(ast::DeclKind::Cluster);
      d->range = R(c);
      d->name = Ident(c->ident());
      d->block = Block(c->block());
      return d;
    }
    if (auto* c = ctx->kernelDecl()) return Kernel(c);
    if (auto* c = ctx->envDecl()) return Env(c);
    if (auto* c = ctx->stageDecl()) {
      auto d = std::make_unique<ast::StageDecl>();
      d->range = R(c);
      d->name = Ident(c->ident());
      d->keyword_range = R(c->kind);
      switch (c->kind ? c->kind->getType() : 0) {
        case MlpParser::DATA: d->stage_kind = ast::StageKind::Data; break;
        case MlpParser::TRAIN: d->stage_kind = ast::StageKind::Train; break;
        case MlpParser::TUNE: d->stage_kind = ast::StageKind::Tune; break;
        case MlpParser::SERVE: d->stage_kind = ast::StageKind::Serve; break;
        case MlpParser::RL: d->stage_kind = ast::StageKind::Rl; break;
        default: return nullptr;
      }
      if (c->body()) d->items = Items(c->body());
      return d;
    }
    return nullptr;
  }

  std::vector<ast::Item> Items(MlpParser::BodyContext* ctx) {
    std::vector<ast::Item> items;
    for (auto* i : ctx->item()) {
      ast::Item item;
      item.range = R(i);
      if (auto* a = dynamic_cast<MlpParser::AssignItemContext*>(i)) {
        item.kind = ast::ItemKind::Assign;
        item.path = Path(a->path());
        item.value = Expr(a->expr());
      } else if (auto* b = dynamic_cast<MlpParser::BlockItemContext*>(i)) {
        item.kind = ast::ItemKind::Block;
        if (b->ident()) {
          item.path.parts.push_back(Ident(b->ident()));
          item.path.range = item.path.parts[0].range;
        }
        item.block = Block(b->block());
      } else if (auto* s = dynamic_cast<MlpParser::StopItemContext*>(i)) {
        item.kind = ast::ItemKind::Stop;
        item.value = Expr(s->expr());
      } else {
        continue;
      }
      if (item.kind != ast::ItemKind::Stop && item.path.parts.empty()) continue;
      items.push_back(std::move(item));
    }
    return items;
  }

  ast::SettingsBlock Block(MlpParser::BlockContext* ctx) {
    ast::SettingsBlock b;
    if (!ctx) return b;
    b.range = R(ctx);
    for (auto* e : ctx->entry()) {
      ast::Entry entry;
      entry.range = R(e);
      entry.key = Path(e->path());
      entry.value = Expr(e->expr());
      if (entry.key.parts.empty()) continue;
      b.entries.push_back(std::move(entry));
    }
    return b;
  }

  std::unique_ptr<ast::Decl> Kernel(MlpParser::KernelDeclContext* c) {
    auto d = std::make_unique<ast::KernelDecl>();
    d->range = R(c);
    d->name = Ident(c->ident());
    for (auto* p : c->kparam()) d->params.push_back({Ident(p->ident()), Type(p->typeRef())});
    d->ret = Type(c->typeRef());
    if (c->kblock()) d->body = KBlock(c->kblock());
    return d;
  }

  std::unique_ptr<ast::Decl> Env(MlpParser::EnvDeclContext* c) {
    auto d = std::make_unique<ast::EnvDecl>();
    d->range = R(c);
    d->name = Ident(c->ident());
    for (auto* i : c->envItem()) {
      ast::EnvItem item;
      item.range = R(i);
      if (auto* s = dynamic_cast<MlpParser::EnvStateContext*>(i)) {
        item.kind = ast::EnvItemKind::State;
        for (auto* f : s->stateField()) {
          item.fields.push_back({Ident(f->ident()), Type(f->typeRef()), Expr(f->expr()), R(f)});
        }
      } else if (auto* a = dynamic_cast<MlpParser::EnvActionContext*>(i)) {
        item.kind = ast::EnvItemKind::Action;
        item.value = Expr(a->expr());
      } else if (auto* o = dynamic_cast<MlpParser::EnvObserveContext*>(i)) {
        item.kind = ast::EnvItemKind::Observe;
        item.value = Expr(o->expr());
      } else if (auto* st = dynamic_cast<MlpParser::EnvStepContext*>(i)) {
        item.kind = ast::EnvItemKind::Step;
        item.step_param = Ident(st->ident());
        item.step = std::make_unique<ast::KBlock>();
        if (st->kblock()) *item.step = KBlock(st->kblock());
      } else if (auto* se = dynamic_cast<MlpParser::EnvSettingContext*>(i)) {
        item.kind = ast::EnvItemKind::Setting;
        item.path = Path(se->path());
        item.value = Expr(se->expr());
      } else {
        continue;
      }
      d->items.push_back(std::move(item));
    }
    return d;
  }

  ast::KBlock KBlock(MlpParser::KblockContext* ctx) {
    ast::KBlock b;
    b.range = R(ctx);
    for (auto* s : ctx->kstmt()) {
      ast::KStmt st;
      st.range = R(s);
      if (auto* l = dynamic_cast<MlpParser::LetStmtContext*>(s)) {
        st.kind = ast::KStmtKind::Let;
        st.name = Ident(l->ident());
        if (l->typeRef()) st.type = std::make_unique<ast::TypeRef>(Type(l->typeRef()));
        st.value = Expr(l->expr());
      } else if (auto* a = dynamic_cast<MlpParser::SetStmtContext*>(s)) {
        st.kind = ast::KStmtKind::Set;
        st.name = Ident(a->ident());
        st.value = Expr(a->expr());
      } else if (auto* r = dynamic_cast<MlpParser::RewardStmtContext*>(s)) {
        st.kind = ast::KStmtKind::Reward;
        st.value = Expr(r->expr());
      } else if (auto* dn = dynamic_cast<MlpParser::DoneStmtContext*>(s)) {
        st.kind = ast::KStmtKind::Done;
        st.value = Expr(dn->expr());
      } else {
        continue;
      }
      b.stmts.push_back(std::move(st));
    }
    if (ctx->expr()) b.result = Expr(ctx->expr());
    return b;
  }

  // A placeholder for a missing subexpression, so later phases never see null.
  ast::ExprPtr Missing(Range r) {
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::Name, r);
    e->text = "<error>";
    return e;
  }

  ast::ExprPtr Expr(MlpParser::ExprContext* ctx) {
    if (!ctx) return Missing(Range{file_, 0, 0});
    Range r = R(ctx);
    // A long operator chain nests as deeply as brackets do.
    struct DepthGuard {
      int& d;
      explicit DepthGuard(int& x) : d(++x) {}
      ~DepthGuard() { --d; }
    } guard(depth_);
    if (depth_ > kMaxParseNesting) {
      if (!too_deep_reported_) {
        diags_.Report(DiagKind::SyntaxError, r,
                      "expression nests deeper than " + std::to_string(kMaxParseNesting) +
                          " levels; split it with `let` or params");
        too_deep_reported_ = true;
      }
      return Missing(r);
    }
    if (auto* p = dynamic_cast<MlpParser::PrimaryExprContext*>(ctx)) return Primary(p->primary(), r);
    if (auto* f = dynamic_cast<MlpParser::FieldExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Field, r);
      e->operands.push_back(Expr(f->expr()));
      auto id = Ident(f->ident());
      e->text = id.name;
      e->name_range = id.range;
      return e;
    }
    if (auto* x = dynamic_cast<MlpParser::IndexExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Index, r);
      e->operands.push_back(Expr(x->expr(0)));
      e->operands.push_back(Expr(x->expr(1)));
      return e;
    }
    if (auto* n = dynamic_cast<MlpParser::NegExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Unary, r);
      e->un_op = ast::UnOp::Neg;
      e->operands.push_back(Expr(n->expr()));
      return e;
    }
    if (auto* n = dynamic_cast<MlpParser::NotExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Unary, r);
      e->un_op = ast::UnOp::Not;
      e->operands.push_back(Expr(n->expr()));
      return e;
    }
    if (auto* b = dynamic_cast<MlpParser::BinaryExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Binary, r);
      switch (b->op ? b->op->getType() : 0) {
        case MlpParser::STAR: e->bin_op = ast::BinOp::Mul; break;
        case MlpParser::SLASH: e->bin_op = ast::BinOp::Div; break;
        case MlpParser::PERCENT: e->bin_op = ast::BinOp::Mod; break;
        case MlpParser::PLUS: e->bin_op = ast::BinOp::Add; break;
        case MlpParser::MINUS: e->bin_op = ast::BinOp::Sub; break;
        case MlpParser::LT: e->bin_op = ast::BinOp::Lt; break;
        case MlpParser::LE: e->bin_op = ast::BinOp::Le; break;
        case MlpParser::GT: e->bin_op = ast::BinOp::Gt; break;
        case MlpParser::GE: e->bin_op = ast::BinOp::Ge; break;
        case MlpParser::EQ: e->bin_op = ast::BinOp::Eq; break;
        case MlpParser::NE: e->bin_op = ast::BinOp::Ne; break;
        case MlpParser::AND: e->bin_op = ast::BinOp::And; break;
        case MlpParser::OR: e->bin_op = ast::BinOp::Or; break;
        case MlpParser::PIPE: e->bin_op = ast::BinOp::Pipe; break;
        default: return Missing(r);
      }
      e->operands.push_back(Expr(b->expr(0)));
      e->operands.push_back(Expr(b->expr(1)));
      return e;
    }
    return Missing(r);
  }

  ast::ExprPtr Primary(MlpParser::PrimaryContext* ctx, Range r) {
    if (!ctx) return Missing(r);
    if (auto* c = dynamic_cast<MlpParser::IntLitContext*>(ctx)) return Int(c->INT()->getSymbol(), r);
    if (auto* c = dynamic_cast<MlpParser::FloatLitContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Float, r);
      e->float_value = Number(c->getText(), r);
      return e;
    }
    if (auto* c = dynamic_cast<MlpParser::QuantityLitContext*>(ctx)) return Quantity(c->getText(), r);
    if (auto* c = dynamic_cast<MlpParser::StringLitContext*>(ctx)) return String(c->STRING()->getSymbol());
    if (auto* c = dynamic_cast<MlpParser::BoolLitContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Bool, r);
      e->bool_value = c->TRUE() != nullptr;
      return e;
    }
    if (auto* c = dynamic_cast<MlpParser::CallExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Call, r);
      // The callee, possibly qualified by an import alias: `lib.kernel(...)`.
      auto ids = c->ident();
      for (size_t k = 0; k < ids.size(); ++k) {
        auto id = Ident(ids[k]);
        e->text += (k ? "." : "") + id.name;
        e->name_range = k ? Range{file_, e->name_range.begin, id.range.end} : id.range;
      }
      for (auto* a : c->arg()) {
        ast::Arg arg;
        if (a->ident()) arg.name = Ident(a->ident());
        arg.value = Expr(a->expr());
        e->args.push_back(std::move(arg));
      }
      return e;
    }
    if (auto* c = dynamic_cast<MlpParser::NameExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Name, r);
      auto id = Ident(c->ident());
      e->text = id.name;
      e->name_range = id.range;
      return e;
    }
    if (auto* c = dynamic_cast<MlpParser::ParenExprContext*>(ctx)) return Expr(c->expr());
    if (auto* c = dynamic_cast<MlpParser::ListExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::List, r);
      for (auto* x : c->expr()) e->operands.push_back(Expr(x));
      return e;
    }
    if (auto* c = dynamic_cast<MlpParser::MapExprContext*>(ctx)) {
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Map, r);
      for (auto* m : c->mapEntry()) {
        ast::MapEntry entry;
        if (m->ident()) {
          entry.key = Ident(m->ident());
        } else if (m->STRING()) {
          auto s = String(m->STRING()->getSymbol());
          for (auto& p : s->parts) entry.key.name += p.is_interp ? "${" + p.text + "}" : p.text;
          entry.key.range = s->range;
          entry.quoted_key = true;
        }
        entry.value = Expr(m->expr());
        e->entries.push_back(std::move(entry));
      }
      return e;
    }
    if (auto* c = dynamic_cast<MlpParser::IfPrimaryContext*>(ctx)) return If(c->ifExpr());
    return Missing(r);
  }

  ast::ExprPtr If(MlpParser::IfExprContext* ctx) {
    if (!ctx) return Missing(Range{file_, 0, 0});
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::If, R(ctx));
    e->operands.push_back(Expr(ctx->expr()));
    auto blocks = ctx->kblock();
    e->then_block = std::make_unique<ast::KBlock>();
    if (!blocks.empty()) *e->then_block = KBlock(blocks[0]);
    e->else_block = std::make_unique<ast::KBlock>();
    if (blocks.size() > 1) {
      *e->else_block = KBlock(blocks[1]);
    } else if (ctx->ifExpr()) {
      e->else_is_if = true;
      e->else_block->result = If(ctx->ifExpr());
      e->else_block->range = e->else_block->result->range;
    }
    return e;
  }

  // The digits of `text` without separators, or false after reporting a misplaced `_`.
  bool Digits(std::string_view text, Range r, std::string& digits) {
    if (StripDigitSeparators(text, digits)) return true;
    diags_.Report(DiagKind::InvalidLiteral, r,
                  "misplaced `_` in number " + Quote(text) + "; `_` may only stand between digits");
    return false;
  }

  ast::ExprPtr Int(antlr4::Token* tok, Range r) {
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::Int, r);
    std::string text = tok->getText();
    std::string digits;
    if (!Digits(text, r, digits)) return e;
    errno = 0;
    char* end = nullptr;
    unsigned long long v = std::strtoull(digits.c_str(), &end, 10);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
      diags_.Report(DiagKind::InvalidLiteral, r,
                    "integer " + Quote(text) + " does not fit in 64 bits; the largest is 9223372036854775807");
      return e;
    }
    e->int_value = static_cast<int64_t>(v);
    return e;
  }

  double Number(std::string_view text, Range r) {
    std::string s;
    if (!Digits(text, r, s)) return 0;
    errno = 0;
    double v = std::strtod(s.c_str(), nullptr);
    if (errno == ERANGE && std::isinf(v)) {
      diags_.Report(DiagKind::InvalidLiteral, r, "number " + Quote(text) + " is too large for a 64-bit float");
      return 0;
    }
    return v;
  }

  ast::ExprPtr Quantity(const std::string& text, Range r) {
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::Quantity, r);
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '_' || text[i] == '.')) ++i;
    e->float_value = Number(std::string_view(text).substr(0, i), r);
    e->text = text.substr(i);
    static const std::set<std::string> kUnits = {"ns", "us", "ms", "s", "m", "h", "d",
                                                 "B", "KB", "MB", "GB", "TB",
                                                 "KiB", "MiB", "GiB", "TiB"};
    if (!kUnits.count(e->text)) {
      diags_.Report(DiagKind::UnknownUnit, r,
                    "unknown unit " + Quote(e->text) + " in " + Quote(text) +
                        "; durations take ns, us, ms, s, m, h or d and sizes take B, KB, MB, GB, TB, KiB, MiB, GiB or TiB");
    }
    return e;
  }

  ast::ExprPtr String(antlr4::Token* tok) {
    Range r = R(tok);
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::String, r);
    std::string_view src = sm_.Slice(r);
    if (src.size() < 2) return e;
    e->text = std::string(src);
    for (auto& err : DecodeStringLiteral(src, file_, r.begin, e->parts)) {
      diags_.Report(DiagKind::InvalidLiteral, err.range, std::move(err.message));
    }
    return e;
  }

  const SourceManager& sm_;
  FileId file_;
  const OffsetMap& offsets_;
  Diagnostics& diags_;
  int depth_ = 0;
  bool too_deep_reported_ = false;
};

struct Lexed {
  std::string text;
  std::unique_ptr<antlr4::ANTLRInputStream> input;
  std::unique_ptr<MlpTokenSource> lexer;
  std::unique_ptr<antlr4::CommonTokenStream> tokens;
};

std::unique_ptr<Lexed> Lex(std::string_view source, size_t* first_bad) {
  auto l = std::make_unique<Lexed>();
  l->text = std::string(source);
  *first_bad = SanitizeUtf8(l->text);
  l->input = std::make_unique<antlr4::ANTLRInputStream>(l->text);
  l->lexer = std::make_unique<MlpTokenSource>(l->input.get());
  l->lexer->removeErrorListeners();
  l->tokens = std::make_unique<antlr4::CommonTokenStream>(l->lexer.get());
  l->tokens->fill();
  return l;
}

}  // namespace

std::unique_ptr<ast::File> Parse(const SourceManager& sm, FileId file, Diagnostics& diags) {
  if (auto fast = FastParse(sm, file)) return fast;
  return ParseWithAntlr(sm, file, diags);
}

std::unique_ptr<ast::File> ParseWithAntlr(const SourceManager& sm, FileId file, Diagnostics& diags) {
  size_t first_bad = 0;
  auto lexed = Lex(sm.Text(file), &first_bad);
  if (first_bad != std::string::npos) {
    uint32_t b = static_cast<uint32_t>(first_bad);
    diags.Report(DiagKind::InvalidCharacter, Range{file, b, b + 1},
                 "file is not valid UTF-8 at byte " + std::to_string(first_bad));
  }
  OffsetMap offsets(lexed->text);
  // The ANTLR parser recurses once or more per bracket and prefix operator:
  // refuse input that would exhaust the stack before it starts.
  // Also: an `else if` chain nests one level per link until its final
  // `else {` at the same brace depth, and a long run of operators makes an
  // expression as deep (and ANTLR's left recursion slow), so both count too.
  {
    int depth = 0, prefix_run = 0, operator_run = 0;
    std::vector<int> chains;  // brace depth of each open `else if` link
    size_t prev = antlr4::Token::INVALID_TYPE;
    for (auto* t : lexed->tokens->getTokens()) {
      if (t->getChannel() != antlr4::Token::DEFAULT_CHANNEL) continue;
      size_t type = t->getType();
      bool open = type == MlpParser::LPAREN || type == MlpParser::LPAREN_NL || type == MlpParser::LBRACK ||
                  type == MlpParser::LBRACK_NL || type == MlpParser::LBRACE;
      bool close = type == MlpParser::RPAREN || type == MlpParser::RBRACK || type == MlpParser::RBRACE;
      bool prefix = type == MlpParser::MINUS || type == MlpParser::MINUS_NL || type == MlpParser::NOT;
      bool binary = type == MlpParser::PLUS || type == MlpParser::MINUS || type == MlpParser::STAR ||
                    type == MlpParser::SLASH || type == MlpParser::PERCENT || type == MlpParser::LT ||
                    type == MlpParser::LE || type == MlpParser::GT || type == MlpParser::GE || type == MlpParser::EQ ||
                    type == MlpParser::NE || type == MlpParser::AND || type == MlpParser::OR ||
                    type == MlpParser::PIPE || type == MlpParser::DOT || type == MlpParser::LBRACK;
      bool boundary = type == MlpParser::ASSIGN || type == MlpParser::COLON || type == MlpParser::COMMA ||
                      type == MlpParser::LBRACE || type == MlpParser::RBRACE || type == MlpParser::SEMI;
      if (prev == MlpParser::ELSE && type == MlpParser::IF) chains.push_back(depth);
      if (prev == MlpParser::ELSE && type == MlpParser::LBRACE) {
        while (!chains.empty() && chains.back() == depth) chains.pop_back();
      }
      depth += open ? 1 : close ? -1 : 0;
      prefix_run = prefix ? prefix_run + 1 : 0;
      operator_run = boundary ? 0 : operator_run + (binary ? 1 : 0);
      prev = type;
      int nesting = depth + static_cast<int>(chains.size());
      if (nesting > kMaxParseNesting || prefix_run > kMaxParseNesting || operator_run > kMaxParseNesting) {
        uint32_t b = offsets.Byte(t->getStartIndex());
        diags.Report(DiagKind::SyntaxError, Range{file, b, offsets.Byte(t->getStopIndex() + 1)},
                     "brackets or operators nest deeper than " + std::to_string(kMaxParseNesting) +
                         " levels here; split the expression");
        auto out = std::make_unique<ast::File>();
        out->file = file;
        return out;
      }
    }
  }
  for (auto* t : lexed->tokens->getTokens()) {
    Range r{file, offsets.Byte(t->getStartIndex()), offsets.Byte(t->getStopIndex() + 1)};
    if (t->getType() == MlpParser::ERROR_CHAR) {
      diags.Report(DiagKind::InvalidCharacter, r, "invalid character " + Quote(t->getText()) + " in source");
    } else if (t->getType() == MlpParser::UNTERMINATED_STRING) {
      diags.Report(DiagKind::UnterminatedString, r, "unterminated string literal; add a closing `\"` on the same line");
    } else if (t->getType() == MlpParser::UNTERMINATED_COMMENT) {
      r.end = r.begin + 2;
      diags.Report(DiagKind::SyntaxError, r, "unterminated `/*` comment; close it with `*/`");
    }
  }
  MlpParser parser(lexed->tokens.get());
  parser.removeErrorListeners();

  // Fast path: SLL prediction that bails on the first error. Only a file with
  // an error (or a rare SLL conflict) pays for the full LL parse.
  MlpParser::FileContext* tree = nullptr;
  parser.getInterpreter<antlr4::atn::ParserATNSimulator>()->setPredictionMode(antlr4::atn::PredictionMode::SLL);
  parser.setErrorHandler(std::make_shared<antlr4::BailErrorStrategy>());
  try {
    tree = parser.file();
  } catch (const antlr4::ParseCancellationException&) {
    tree = nullptr;
  }
  SyntaxErrorListener listener(file, offsets, diags);
  if (!tree) {
    lexed->tokens->seek(0);
    parser.reset();
    parser.addErrorListener(&listener);
    parser.setErrorHandler(std::make_shared<antlr4::DefaultErrorStrategy>());
    parser.getInterpreter<antlr4::atn::ParserATNSimulator>()->setPredictionMode(antlr4::atn::PredictionMode::LL);
    tree = parser.file();
  }
  Builder builder(sm, file, offsets, diags);
  auto out = builder.Build(tree);
  for (auto* t : lexed->tokens->getTokens()) {
    if (t->getChannel() == 2) {
      Range r{file, offsets.Byte(t->getStartIndex()), offsets.Byte(t->getStopIndex() + 1)};
      out->comments.push_back({r, t->getText()});
    }
  }
  return out;
}

std::string DumpTokens(const SourceManager& sm, FileId file) {
  size_t first_bad = 0;
  auto lexed = Lex(sm.Text(file), &first_bad);
  const auto& vocab = lexed->lexer->getVocabulary();
  std::string out;
  for (auto* t : lexed->tokens->getTokens()) {
    std::string name = t->getType() == antlr4::Token::EOF ? "EOF" : vocab.getSymbolicName(t->getType());
    out += std::to_string(t->getLine()) + ":" + std::to_string(t->getCharPositionInLine() + 1) + " " + name;
    if (t->getType() != antlr4::Token::EOF) {
      std::string text = t->getText();
      std::string esc;
      for (char c : text) esc += c == '\n' ? std::string("\\n") : std::string(1, c);
      out += " '" + esc + "'";
    }
    out += '\n';
  }
  return out;
}

}  // namespace mlp
