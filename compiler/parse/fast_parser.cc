// The fast path of parsing; see fast_parser.h. Token and rule names follow
// grammar/Mlp.g4 so the two can be read side by side.
#include "compiler/parse/fast_parser.h"

#include <algorithm>
#include <cmath>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "compiler/base/utf8.h"
#include "compiler/parse/parser.h"
#include "compiler/parse/string_literal.h"

namespace mlp {
namespace {

enum class T : uint8_t {
  Eof, Id, Int, Float, Quantity, String,
  // keywords usable as names
  Data, Train, Tune, Serve, Rl, Env, Param, Pipeline, Resources, Cluster, Import, As, Stop, When, Kernel,
  State, Action, Observe, Step,
  // reserved keywords
  Let, If, Else, Reward, Done, True, False, And, Or, Not,
  Arrow, Eq, Ne, Le, Ge, Lt, Gt, Assign, Colon, Semi, Comma, Dot, Pipe, Plus, Minus, Star, Slash, Percent,
  LParen, RParen, LBrack, RBrack, LBrace, RBrace,
  LParenNl, LBrackNl, MinusNl,
};

struct Tok {
  T type;
  uint32_t begin, end;
  uint32_t line;
};

struct Bail {};  // thrown to give up; caught in FastParse

bool IsIdentLike(T t) { return t == T::Id || (t >= T::Data && t <= T::Step); }

T Keyword(std::string_view s) {
  static const std::pair<std::string_view, T> kKeywords[] = {
      {"import", T::Import}, {"as", T::As},         {"pipeline", T::Pipeline}, {"param", T::Param},
      {"resources", T::Resources}, {"cluster", T::Cluster}, {"kernel", T::Kernel}, {"env", T::Env},
      {"data", T::Data},     {"train", T::Train},   {"tune", T::Tune},         {"serve", T::Serve},
      {"rl", T::Rl},         {"stop", T::Stop},     {"when", T::When},         {"state", T::State},
      {"action", T::Action}, {"observe", T::Observe}, {"step", T::Step},       {"let", T::Let},
      {"if", T::If},         {"else", T::Else},     {"reward", T::Reward},     {"done", T::Done},
      {"true", T::True},     {"false", T::False},   {"and", T::And},           {"or", T::Or},
      {"not", T::Not}};
  // Most identifiers are not keywords: reject on length and first letter first.
  if (s.size() < 2 || s.size() > 9 || s[0] < 'a' || s[0] > 'w') return T::Id;
  for (const auto& [k, t] : kKeywords) {
    if (k.size() == s.size() && k[0] == s[0] && k == s) return t;
  }
  return T::Id;
}

bool Digit(char c) { return c >= '0' && c <= '9'; }
bool Alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

class Lexer {
 public:
  Lexer(std::string_view s, FileId file, ast::File& out) : s_(s), file_(file), out_(out) {}

  std::vector<Tok> Run() {
    std::vector<Tok> toks;
    toks.reserve(s_.size() / 4);
    uint32_t line = 1;
    size_t i = 0;
    uint32_t last_line = 0;
    bool have_last = false;
    while (true) {
      // Whitespace and comments.
      while (i < s_.size()) {
        char c = s_[i];
        if (c == '\n') {
          ++line;
          ++i;
        } else if (c == ' ' || c == '\t' || c == '\r') {
          ++i;
        } else if (c == '/' && i + 1 < s_.size() && s_[i + 1] == '/') {
          size_t b = i;
          while (i < s_.size() && s_[i] != '\n' && s_[i] != '\r') ++i;
          out_.comments.push_back({Range{file_, U(b), U(i)}, std::string(s_.substr(b, i - b))});
        } else if (c == '/' && i + 1 < s_.size() && s_[i + 1] == '*') {
          size_t e = s_.find("*/", i + 2);
          if (e == std::string_view::npos) throw Bail{};
          e += 2;
          for (size_t k = i; k < e; ++k) line += s_[k] == '\n';
          out_.comments.push_back({Range{file_, U(i), U(e)}, std::string(s_.substr(i, e - i))});
          i = e;
        } else {
          break;
        }
      }
      if (i >= s_.size()) {
        toks.push_back({T::Eof, U(i), U(i), line});
        return toks;
      }
      size_t b = i;
      T type = Next(i);
      if (have_last && line > last_line) {
        if (type == T::LParen) type = T::LParenNl;
        if (type == T::LBrack) type = T::LBrackNl;
        if (type == T::Minus) type = T::MinusNl;
      }
      toks.push_back({type, U(b), U(i), line});
      last_line = line;
      have_last = true;
    }
  }

 private:
  static uint32_t U(size_t x) { return static_cast<uint32_t>(x); }

  size_t DigitsAt(size_t i) const {  // DIGITS : [0-9] [0-9_]*
    if (i >= s_.size() || !Digit(s_[i])) return 0;
    size_t k = i + 1;
    while (k < s_.size() && (Digit(s_[k]) || s_[k] == '_')) ++k;
    return k - i;
  }
  size_t ExponentAt(size_t i) const {  // [eE] [+-]? DIGITS
    if (i >= s_.size() || (s_[i] != 'e' && s_[i] != 'E')) return 0;
    size_t k = i + 1;
    if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
    size_t d = DigitsAt(k);
    return d ? k + d - i : 0;
  }

  T Next(size_t& i) {
    char c = s_[i];
    if (Alpha(c) || c == '_') {
      size_t b = i;
      while (i < s_.size() && (Alpha(s_[i]) || Digit(s_[i]) || s_[i] == '_')) ++i;
      return Keyword(s_.substr(b, i - b));
    }
    if (Digit(c)) {
      // Longest match among FLOAT, QUANTITY and INT, as the ANTLR lexer does.
      size_t d1 = DigitsAt(i);
      size_t frac = 0;
      if (i + d1 < s_.size() && s_[i + d1] == '.') {
        size_t d2 = DigitsAt(i + d1 + 1);
        if (d2) frac = 1 + d2;
      }
      size_t float_len = 0;
      if (frac) float_len = d1 + frac + ExponentAt(i + d1 + frac);
      if (size_t e = ExponentAt(i + d1); e) float_len = std::max(float_len, d1 + e);
      size_t q = d1 + frac, letters = 0;
      while (i + q + letters < s_.size() && Alpha(s_[i + q + letters])) ++letters;
      size_t quantity_len = letters ? q + letters : 0;
      size_t best = std::max({float_len, quantity_len, d1});
      T t = best == float_len ? T::Float : best == quantity_len ? T::Quantity : T::Int;
      i += best;
      return t;
    }
    if (c == '"') {
      size_t k = i + 1;
      while (k < s_.size() && s_[k] != '"') {
        if (s_[k] == '\n' || s_[k] == '\r') throw Bail{};
        if (s_[k] == '\\') ++k;
        ++k;
      }
      if (k >= s_.size()) throw Bail{};
      i = k + 1;
      return T::String;
    }
    auto two = [&](char a, char b) { return c == a && i + 1 < s_.size() && s_[i + 1] == b; };
    if (two('-', '>')) { i += 2; return T::Arrow; }
    if (two('=', '=')) { i += 2; return T::Eq; }
    if (two('!', '=')) { i += 2; return T::Ne; }
    if (two('<', '=')) { i += 2; return T::Le; }
    if (two('>', '=')) { i += 2; return T::Ge; }
    ++i;
    switch (c) {
      case '<': return T::Lt;
      case '>': return T::Gt;
      case '=': return T::Assign;
      case ':': return T::Colon;
      case ';': return T::Semi;
      case ',': return T::Comma;
      case '.': return T::Dot;
      case '|': return T::Pipe;
      case '+': return T::Plus;
      case '-': return T::Minus;
      case '*': return T::Star;
      case '/': return T::Slash;
      case '%': return T::Percent;
      case '(': return T::LParen;
      case ')': return T::RParen;
      case '[': return T::LBrack;
      case ']': return T::RBrack;
      case '{': return T::LBrace;
      case '}': return T::RBrace;
      default: throw Bail{};  // ERROR_CHAR: the ANTLR path reports it
    }
  }

  std::string_view s_;
  FileId file_;
  ast::File& out_;
};

class Parser {
 public:
  Parser(std::string_view s, FileId file, std::vector<Tok> toks) : s_(s), file_(file), toks_(std::move(toks)) {}

  void File(ast::File& out) {
    while (Peek() != T::Eof) out.decls.push_back(TopDecl());
  }

 private:
  // --- token helpers
  T Peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)].type; }
  const Tok& Cur() const { return toks_[pos_]; }
  const Tok& Expect(T t) {
    if (Peek() != t) throw Bail{};
    return toks_[pos_++];
  }
  bool Accept(T t) {
    if (Peek() != t) return false;
    ++pos_;
    return true;
  }
  uint32_t Begin() const { return Cur().begin; }
  uint32_t PrevEnd() const { return toks_[pos_ - 1].end; }
  Range From(uint32_t begin) const { return Range{file_, begin, PrevEnd()}; }
  std::string Text(const Tok& t) const { return std::string(s_.substr(t.begin, t.end - t.begin)); }

  ast::Ident Ident() {
    if (!IsIdentLike(Peek())) throw Bail{};
    const Tok& t = toks_[pos_++];
    return ast::Ident{Text(t), Range{file_, t.begin, t.end}};
  }

  ast::Path Path() {
    ast::Path p;
    uint32_t b = Begin();
    p.parts.push_back(Ident());
    while (Peek() == T::Dot) {
      ++pos_;
      p.parts.push_back(Ident());
    }
    p.range = From(b);
    return p;
  }

  ast::TypeRef Type() {
    if (++depth_ > kMaxParseNesting) throw Bail{};
    ast::TypeRef t;
    uint32_t b = Begin();
    t.name = Ident();
    if (Accept(T::LBrack)) {
      t.elem = std::make_unique<ast::TypeRef>(Type());
      Expect(T::RBrack);
    }
    t.range = From(b);
    --depth_;
    return t;
  }

  // --- declarations
  std::unique_ptr<ast::Decl> TopDecl() {
    uint32_t b = Begin();
    switch (Peek()) {
      case T::Import: {
        ++pos_;
        auto d = std::make_unique<ast::ImportDecl>();
        auto s = String(Expect(T::String));
        d->path_range = s->range;
        for (auto& p : s->parts) d->path += p.is_interp ? "${" + p.text + "}" : p.text;
        if (Accept(T::As)) {
          d->name = Ident();
          d->has_alias = true;
        }
        d->range = From(b);
        return d;
      }
      case T::Pipeline: {
        ++pos_;
        auto d = std::make_unique<ast::PipelineDecl>();
        d->name = Ident();
        d->items = Body();
        d->range = From(b);
        return d;
      }
      case T::Param: {
        ++pos_;
        auto d = std::make_unique<ast::ParamDecl>();
        d->name = Ident();
        Expect(T::Colon);
        d->type = Type();
        if (Accept(T::Assign)) d->default_value = Expr(0);
        d->range = From(b);
        return d;
      }
      case T::Resources:
      case T::Cluster: {
        auto d = std::make_unique<ast::ResourcesDecl>(Peek() == T::Resources ? ast::DeclKind::Resources
                                                                             : ast::DeclKind::Cluster);
        ++pos_;
        d->name = Ident();
        d->block = Block();
        d->range = From(b);
        return d;
      }
      case T::Kernel: return Kernel();
      case T::Env: return Env();
      case T::Data:
      case T::Train:
      case T::Tune:
      case T::Serve:
      case T::Rl: {
        auto d = std::make_unique<ast::StageDecl>();
        static const ast::StageKind kKinds[] = {ast::StageKind::Data, ast::StageKind::Train, ast::StageKind::Tune,
                                                ast::StageKind::Serve, ast::StageKind::Rl};
        d->stage_kind = kKinds[static_cast<int>(Peek()) - static_cast<int>(T::Data)];
        d->keyword_range = Range{file_, Cur().begin, Cur().end};
        ++pos_;
        d->name = Ident();
        d->items = Body();
        d->range = From(b);
        return d;
      }
      default: throw Bail{};
    }
  }

  std::vector<ast::Item> Body() {
    Expect(T::LBrace);
    std::vector<ast::Item> items;
    while (!Accept(T::RBrace)) {
      ast::Item item;
      uint32_t b = Begin();
      if (Peek() == T::Stop && Peek(1) == T::When) {
        pos_ += 2;
        item.kind = ast::ItemKind::Stop;
        item.value = Expr(0);
      } else if (IsIdentLike(Peek()) && Peek(1) == T::LBrace) {
        item.kind = ast::ItemKind::Block;
        item.path.parts.push_back(Ident());
        item.path.range = item.path.parts[0].range;
        item.block = Block();
      } else {
        item.kind = ast::ItemKind::Assign;
        item.path = Path();
        Expect(T::Assign);
        item.value = Expr(0);
      }
      item.range = From(b);
      items.push_back(std::move(item));
    }
    return items;
  }

  ast::SettingsBlock Block() {
    ast::SettingsBlock blk;
    uint32_t b = Begin();
    Expect(T::LBrace);
    bool first = true;
    while (!Accept(T::RBrace)) {
      if (!first) Accept(T::Comma);
      if (Peek() == T::RBrace) continue;  // trailing comma
      first = false;
      ast::Entry e;
      uint32_t eb = Begin();
      e.key = Path();
      Expect(T::Colon);
      e.value = Expr(0);
      e.range = From(eb);
      blk.entries.push_back(std::move(e));
    }
    blk.range = From(b);
    return blk;
  }

  std::unique_ptr<ast::Decl> Kernel() {
    uint32_t b = Begin();
    ++pos_;
    auto d = std::make_unique<ast::KernelDecl>();
    d->name = Ident();
    Expect(T::LParen);
    while (!Accept(T::RParen)) {
      if (!d->params.empty()) {
        Expect(T::Comma);
        if (Accept(T::RParen)) break;
      }
      ast::KernelParam p;
      p.name = Ident();
      Expect(T::Colon);
      p.type = Type();
      d->params.push_back(std::move(p));
    }
    Expect(T::Arrow);
    d->ret = Type();
    d->body = KBlock();
    d->range = From(b);
    return d;
  }

  std::unique_ptr<ast::Decl> Env() {
    uint32_t b = Begin();
    ++pos_;
    auto d = std::make_unique<ast::EnvDecl>();
    d->name = Ident();
    Expect(T::LBrace);
    while (!Accept(T::RBrace)) {
      ast::EnvItem item;
      uint32_t ib = Begin();
      T t = Peek();
      bool setting = Peek(1) == T::Assign || Peek(1) == T::Dot;
      if (t == T::State && Peek(1) == T::LBrace) {
        item.kind = ast::EnvItemKind::State;
        ++pos_;
        Expect(T::LBrace);
        bool first = true;
        while (!Accept(T::RBrace)) {
          if (!first) Accept(T::Comma);
          if (Peek() == T::RBrace) continue;
          first = false;
          ast::StateField f;
          uint32_t fb = Begin();
          f.name = Ident();
          Expect(T::Colon);
          f.type = Type();
          Expect(T::Assign);
          f.init = Expr(0);
          f.range = From(fb);
          item.fields.push_back(std::move(f));
        }
      } else if (t == T::Action && !setting) {
        item.kind = ast::EnvItemKind::Action;
        ++pos_;
        item.value = Expr(0);
      } else if (t == T::Observe && !setting) {
        item.kind = ast::EnvItemKind::Observe;
        ++pos_;
        item.value = Expr(0);
      } else if (t == T::Step && Peek(1) == T::LParen) {
        item.kind = ast::EnvItemKind::Step;
        pos_ += 2;
        item.step_param = Ident();
        Expect(T::RParen);
        item.step = std::make_unique<ast::KBlock>(KBlock());
      } else {
        item.kind = ast::EnvItemKind::Setting;
        item.path = Path();
        Expect(T::Assign);
        item.value = Expr(0);
      }
      item.range = From(ib);
      d->items.push_back(std::move(item));
    }
    d->range = From(b);
    return d;
  }

  ast::KBlock KBlock() {
    ast::KBlock blk;
    uint32_t b = Begin();
    Expect(T::LBrace);
    while (true) {
      ast::KStmt st;
      uint32_t sb = Begin();
      T t = Peek();
      if (t == T::Let) {
        ++pos_;
        st.kind = ast::KStmtKind::Let;
        st.name = Ident();
        if (Accept(T::Colon)) st.type = std::make_unique<ast::TypeRef>(Type());
        Expect(T::Assign);
        st.value = Expr(0);
      } else if (IsIdentLike(t) && Peek(1) == T::Assign) {
        st.kind = ast::KStmtKind::Set;
        st.name = Ident();
        ++pos_;
        st.value = Expr(0);
      } else if (t == T::Reward || t == T::Done) {
        ++pos_;
        st.kind = t == T::Reward ? ast::KStmtKind::Reward : ast::KStmtKind::Done;
        st.value = Expr(0);
      } else {
        break;
      }
      Accept(T::Semi);
      st.range = From(sb);
      blk.stmts.push_back(std::move(st));
    }
    if (Peek() != T::RBrace) blk.result = Expr(0);
    Expect(T::RBrace);
    blk.range = From(b);
    return blk;
  }

  // --- expressions: precedence climbing with the precedence numbers ANTLR
  // gives the alternatives of Mlp.g4's left-recursive `expr` (higher binds
  // tighter): field 10, index 9, unary minus 8, * / % 7, + - 6, comparisons 5,
  // not 4, and 3, or 2, | 1. Inside expr[p] an operator of precedence q
  // continues the expression when q >= p; a binary operator's right operand is
  // expr[q + 1] (left associative); a prefix operator's operand is expr[q].
  static int BinaryLevel(T t) {
    switch (t) {
      case T::Star: case T::Slash: case T::Percent: return 7;
      case T::Plus: case T::Minus: return 6;
      case T::Lt: case T::Le: case T::Gt: case T::Ge: case T::Eq: case T::Ne: return 5;
      case T::And: return 3;
      case T::Or: return 2;
      case T::Pipe: return 1;
      default: return 0;
    }
  }
  static ast::BinOp BinOpOf(T t) {
    switch (t) {
      case T::Star: return ast::BinOp::Mul;
      case T::Slash: return ast::BinOp::Div;
      case T::Percent: return ast::BinOp::Mod;
      case T::Plus: return ast::BinOp::Add;
      case T::Minus: return ast::BinOp::Sub;
      case T::Lt: return ast::BinOp::Lt;
      case T::Le: return ast::BinOp::Le;
      case T::Gt: return ast::BinOp::Gt;
      case T::Ge: return ast::BinOp::Ge;
      case T::Eq: return ast::BinOp::Eq;
      case T::Ne: return ast::BinOp::Ne;
      case T::And: return ast::BinOp::And;
      case T::Or: return ast::BinOp::Or;
      default: return ast::BinOp::Pipe;
    }
  }

  ast::ExprPtr Expr(int p) {
    if (++depth_ > kMaxParseNesting) throw Bail{};
    uint32_t b = Begin();
    ast::ExprPtr lhs;
    T t = Peek();
    if (t == T::Minus || t == T::MinusNl || t == T::Not) {
      ++pos_;
      lhs = std::make_unique<ast::Expr>(ast::ExprKind::Unary, Range{});
      lhs->un_op = t == T::Not ? ast::UnOp::Not : ast::UnOp::Neg;
      lhs->operands.push_back(Expr(t == T::Not ? 4 : 8));
      lhs->range = From(b);
    } else {
      lhs = Primary();
    }
    int chain = 0;  // a long left-associative chain nests the AST as deeply
    while (true) {
      T op = Peek();
      int q = op == T::Dot ? 10 : op == T::LBrack ? 9 : BinaryLevel(op);
      if (q == 0 || q < p) break;
      if (++chain + depth_ > kMaxParseNesting) throw Bail{};
      ++pos_;
      ast::ExprPtr e;
      if (op == T::Dot) {
        e = std::make_unique<ast::Expr>(ast::ExprKind::Field, Range{});
        auto id = Ident();
        e->text = id.name;
        e->name_range = id.range;
        e->operands.push_back(std::move(lhs));
      } else if (op == T::LBrack) {
        e = std::make_unique<ast::Expr>(ast::ExprKind::Index, Range{});
        e->operands.push_back(std::move(lhs));
        e->operands.push_back(Expr(0));
        Expect(T::RBrack);
      } else {
        e = std::make_unique<ast::Expr>(ast::ExprKind::Binary, Range{});
        e->bin_op = BinOpOf(op);
        e->operands.push_back(std::move(lhs));
        e->operands.push_back(Expr(q + 1));
      }
      e->range = From(b);
      lhs = std::move(e);
    }
    --depth_;
    return lhs;
  }

  ast::ExprPtr Primary() {
    uint32_t b = Begin();
    const Tok& t = Cur();
    switch (t.type) {
      case T::Int: {
        ++pos_;
        auto e = std::make_unique<ast::Expr>(ast::ExprKind::Int, From(b));
        std::string digits;
        if (!StripDigitSeparators(s_.substr(t.begin, t.end - t.begin), digits)) throw Bail{};
        errno = 0;
        unsigned long long v = std::strtoull(digits.c_str(), nullptr, 10);
        if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) throw Bail{};
        e->int_value = static_cast<int64_t>(v);
        return e;
      }
      case T::Float: {
        ++pos_;
        auto e = std::make_unique<ast::Expr>(ast::ExprKind::Float, From(b));
        e->float_value = Number(t, t.end);
        return e;
      }
      case T::Quantity: {
        ++pos_;
        auto e = std::make_unique<ast::Expr>(ast::ExprKind::Quantity, From(b));
        uint32_t k = t.begin;
        while (k < t.end && (Digit(s_[k]) || s_[k] == '_' || s_[k] == '.')) ++k;
        e->float_value = Number(t, k);
        e->text = std::string(s_.substr(k, t.end - k));
        static const char* kUnits[] = {"ns", "us", "ms", "s", "m", "h", "d", "B", "KB", "MB",
                                       "GB", "TB", "KiB", "MiB", "GiB", "TiB"};
        bool known = false;
        for (const char* u : kUnits) known |= e->text == u;
        if (!known) throw Bail{};
        return e;
      }
      case T::String: ++pos_; return String(t);
      case T::True:
      case T::False: {
        ++pos_;
        auto e = std::make_unique<ast::Expr>(ast::ExprKind::Bool, From(b));
        e->bool_value = t.type == T::True;
        return e;
      }
      case T::LParen:
      case T::LParenNl: {
        ++pos_;
        auto e = Expr(0);
        Expect(T::RParen);
        return e;
      }
      case T::LBrack:
      case T::LBrackNl: {
        ++pos_;
        auto e = std::make_unique<ast::Expr>(ast::ExprKind::List, Range{});
        while (!Accept(T::RBrack)) {
          if (!e->operands.empty()) {
            Expect(T::Comma);
            if (Accept(T::RBrack)) break;
          }
          e->operands.push_back(Expr(0));
        }
        e->range = From(b);
        return e;
      }
      case T::LBrace: {
        ++pos_;
        auto e = std::make_unique<ast::Expr>(ast::ExprKind::Map, Range{});
        bool first = true;
        while (!Accept(T::RBrace)) {
          if (!first) Accept(T::Comma);
          if (Peek() == T::RBrace) continue;
          first = false;
          ast::MapEntry entry;
          if (Peek() == T::String) {
            auto s = String(toks_[pos_++]);
            for (auto& p : s->parts) entry.key.name += p.is_interp ? "${" + p.text + "}" : p.text;
            entry.key.range = s->range;
            entry.quoted_key = true;
          } else {
            entry.key = Ident();
          }
          Expect(T::Colon);
          entry.value = Expr(0);
          e->entries.push_back(std::move(entry));
        }
        e->range = From(b);
        return e;
      }
      case T::If: return If();
      default: break;
    }
    if (!IsIdentLike(t.type)) throw Bail{};
    auto id = Ident();
    if (Peek() == T::Dot && IsIdentLike(Peek(1)) && Peek(2) == T::LParen) {  // `lib.kernel(...)`
      ++pos_;
      auto member = Ident();
      id.name += "." + member.name;
      id.range.end = member.range.end;
    }
    if (Peek() == T::LParen) {
      ++pos_;
      auto e = std::make_unique<ast::Expr>(ast::ExprKind::Call, Range{});
      e->text = id.name;
      e->name_range = id.range;
      while (!Accept(T::RParen)) {
        if (!e->args.empty()) {
          Expect(T::Comma);
          if (Accept(T::RParen)) break;
        }
        ast::Arg arg;
        if (IsIdentLike(Peek()) && Peek(1) == T::Colon) {
          arg.name = Ident();
          ++pos_;
        }
        arg.value = Expr(0);
        e->args.push_back(std::move(arg));
      }
      e->range = From(b);
      return e;
    }
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::Name, id.range);
    e->text = id.name;
    e->name_range = id.range;
    return e;
  }

  ast::ExprPtr If() {
    // `else if` chains nest like brackets do.
    if (++depth_ > kMaxParseNesting) throw Bail{};
    uint32_t b = Begin();
    Expect(T::If);
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::If, Range{});
    e->operands.push_back(Expr(0));
    e->then_block = std::make_unique<ast::KBlock>(KBlock());
    Expect(T::Else);
    e->else_block = std::make_unique<ast::KBlock>();
    if (Peek() == T::If) {
      e->else_is_if = true;
      e->else_block->result = If();
      e->else_block->range = e->else_block->result->range;
    } else {
      *e->else_block = KBlock();
    }
    e->range = From(b);
    --depth_;
    return e;
  }

  // Literal checks mirror parser.cc's Builder; any doubt goes to the slow path.
  double Number(const Tok& t, uint32_t end) const {
    std::string digits;
    if (!StripDigitSeparators(s_.substr(t.begin, end - t.begin), digits)) throw Bail{};
    errno = 0;
    double v = std::strtod(digits.c_str(), nullptr);
    if (errno == ERANGE && std::isinf(v)) throw Bail{};
    return v;
  }

  ast::ExprPtr String(const Tok& t) {
    auto e = std::make_unique<ast::Expr>(ast::ExprKind::String, Range{file_, t.begin, t.end});
    std::string_view src = s_.substr(t.begin, t.end - t.begin);
    e->text = std::string(src);
    if (!DecodeStringLiteral(src, file_, t.begin, e->parts).empty()) throw Bail{};
    return e;
  }

  std::string_view s_;
  FileId file_;
  std::vector<Tok> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

std::unique_ptr<ast::File> FastParse(const SourceManager& sm, FileId file) {
  std::string_view text = sm.Text(file);
  // Control bytes are ERROR_CHARs and malformed UTF-8 is reported: both are
  // left to the ANTLR path.
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') return nullptr;
      ++i;
      continue;
    }
    size_t len = Utf8SequenceLength(text, i);
    if (len == 0) return nullptr;
    i += len;
  }
  auto out = std::make_unique<ast::File>();
  out->file = file;
  try {
    Lexer lexer(text, file, *out);
    std::vector<Tok> toks = lexer.Run();
    Parser parser(text, file, std::move(toks));
    parser.File(*out);
  } catch (const Bail&) {
    return nullptr;
  }
  return out;
}

}  // namespace mlp
