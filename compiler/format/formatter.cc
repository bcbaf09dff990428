// The canonical formatter: one layout per construct, comments placed by
// position, and parentheses re-inserted from precedence (the AST keeps none).
//
// Long lines. A line-level node (declaration, item, entry, statement, ...)
// is first printed with every call, list and map on one line. While one of
// its lines is longer than kMaxColumns (comments not counted), a call, list
// or map literal with 2+ items that opens on the first such line is wrapped,
// and the node printed again. Of those not inside another one that opens on
// that line, the one wrapped is the last whose opening delimiter still ends
// within kMaxColumns, else the first: `a | f(x, y) | g(z, w)` wraps `g(` when
// the line up to it fits, else `f(`, leaving the rest on the line of its `)`.
// A wrapped sequence keeps its opening `(`, `[` or `{` in place, puts each
// item on a line of its own, indented one level deeper than the line that
// opened it and followed by a comma, and the closing delimiter on a line of
// its own at the opening line's indentation. Comments between items stay
// there. None of this depends on the source's line breaks, so formatting
// again makes the same choices. Breaking only after `(`, `[`, `{` and `,`,
// and before a closing delimiter, is safe: a line that starts with `(`, `[`
// or `-` begins a new expression, and there that is exactly what an item is.
#include "compiler/format/formatter.h"

#include <algorithm>
#include <functional>
#include <iterator>
#include <numeric>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

namespace mlp {
namespace {

constexpr size_t kMaxColumns = 100;
constexpr int kIndentWidth = 2;

// Binding strength, loosest first: the order of the `expr` alternatives in
// Mlp.g4, read bottom-up.
enum Prec : int { kPipe = 1, kOr, kAnd, kNot, kCompare, kAdd, kMul, kNeg, kPostfix, kAtom };

int Precedence(ast::BinOp op) {
  switch (op) {
    case ast::BinOp::Mul:
    case ast::BinOp::Div:
    case ast::BinOp::Mod: return kMul;
    case ast::BinOp::Add:
    case ast::BinOp::Sub: return kAdd;
    case ast::BinOp::Lt:
    case ast::BinOp::Le:
    case ast::BinOp::Gt:
    case ast::BinOp::Ge:
    case ast::BinOp::Eq:
    case ast::BinOp::Ne: return kCompare;
    case ast::BinOp::And: return kAnd;
    case ast::BinOp::Or: return kOr;
    case ast::BinOp::Pipe: return kPipe;
  }
  return kPipe;
}

int Precedence(const ast::Expr& e) {
  switch (e.kind) {
    case ast::ExprKind::Binary: return Precedence(e.bin_op);
    case ast::ExprKind::Unary: return e.un_op == ast::UnOp::Neg ? kNeg : kNot;
    case ast::ExprKind::Field:
    case ast::ExprKind::Index: return kPostfix;
    default: return kAtom;
  }
}

const char* StageKeyword(ast::StageKind k) {
  switch (k) {
    case ast::StageKind::Data: return "data";
    case ast::StageKind::Train: return "train";
    case ast::StageKind::Tune: return "tune";
    case ast::StageKind::Serve: return "serve";
    case ast::StageKind::Rl: return "rl";
  }
  return "data";
}

std::string Indent(int level) {
  return std::string(static_cast<size_t>(level) * kIndentWidth, ' ');
}

bool HasNewline(std::string_view s) { return s.find('\n') != std::string_view::npos; }

// The column after the last character of `text`, whose first line starts at
// column `start` (0-based).
size_t EndColumn(std::string_view text, size_t start) {
  size_t nl = text.rfind('\n');
  return nl == std::string_view::npos ? start + text.size() : text.size() - nl - 1;
}

// Trailing blanks in a comment are not content, and the output has none.
std::string TrimComment(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (true) {
    size_t nl = text.find('\n', i);
    std::string_view line = text.substr(i, nl == std::string_view::npos ? nl : nl - i);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    out += line;
    if (nl == std::string_view::npos) break;
    out += '\n';
    i = nl + 1;
  }
  return out;
}

std::string PathText(const ast::Path& p) {
  std::string s;
  for (size_t i = 0; i < p.parts.size(); ++i) {
    if (i) s += '.';
    s += p.parts[i].name;
  }
  return s;
}

std::string TypeText(const ast::TypeRef& t) {
  return t.elem ? t.name.name + "[" + TypeText(*t.elem) + "]" : t.name.name;
}

struct CommentInfo {
  uint32_t begin = 0;
  uint32_t first_line = 0;
  uint32_t last_line = 0;
  std::string text;
};

// The comments inside the node being printed. Nested bodies (settings
// blocks, kernel bodies, multi-line `if` blocks) claim those between their
// braces; the rest are hoisted onto their own lines before the node. With
// `nest` false nothing is claimed and layout ignores comments: the fallback
// that keeps comments in source order when a claimed one would precede a
// hoisted one.
struct Scope {
  std::vector<size_t> inside;  // comment indices, in source order
  bool nest = true;
  std::vector<size_t> claimed;
};

enum class NodeTag : uint8_t { kOther, kImport, kParam };

// One line-level node of a body: a declaration, item, entry, statement,
// state field, env item or kernel result.
struct Node {
  Range range;
  // Renders the node as it starts at column `col` on a line indented `ind`
  // levels: the first line without its indentation, later lines with theirs.
  std::function<std::string(int ind, size_t col, Scope& sc)> render;
  size_t align_key = 0;  // `path = value` items: the length of `path`
  NodeTag tag = NodeTag::kOther;
};

// The wrapping state of the node being rendered: which sequences (calls,
// lists, maps) to print one item per line, and what the last rendering put
// where, as offsets into the node's text.
struct WrapState {
  std::set<const ast::Expr*> wrapped;
  struct Seq {
    const ast::Expr* expr;
    size_t begin, end;  // from the opening delimiter to after the closing one
  };
  std::vector<Seq> seqs;        // sequences with 2+ items printed on one line
  std::vector<size_t> comments;  // where comments placed in wrapped sequences start
};

class Formatter {
 public:
  Formatter(const SourceManager& sm, const ast::File& file) : sm_(sm), file_(file) {
    text_ = file.file == kNoFile ? std::string_view() : sm.Text(file.file);
    for (const auto& c : file.comments) {
      CommentInfo info;
      info.begin = c.range.begin;
      info.first_line = Line(c.range.begin);
      info.last_line = Line(c.range.end > c.range.begin ? c.range.end - 1 : c.range.begin);
      info.text = TrimComment(c.text);
      comments_.push_back(std::move(info));
    }
    std::stable_sort(comments_.begin(), comments_.end(),
                     [](const CommentInfo& a, const CommentInfo& b) { return a.begin < b.begin; });
  }

  std::string Run() {
    std::vector<Node> nodes;
    for (const auto& d : file_.decls) {
      if (!d) continue;
      Node n;
      n.range = d->range;
      if (d->kind == ast::DeclKind::Import) n.tag = NodeTag::kImport;
      if (d->kind == ast::DeclKind::Param) n.tag = NodeTag::kParam;
      const ast::Decl* decl = d.get();
      n.render = [this, decl](int ind, size_t col, Scope& sc) {
        return DeclText(*decl, ind, col, sc);
      };
      nodes.push_back(std::move(n));
    }
    std::vector<size_t> all(comments_.size());
    std::iota(all.begin(), all.end(), size_t{0});
    return Body(nodes, all, 0, static_cast<uint32_t>(text_.size()), true);
  }

 private:
  // --- Source positions and comments ---

  uint32_t Line(uint32_t offset) const {
    if (file_.file == kNoFile) return 0;
    if (offset > text_.size()) offset = static_cast<uint32_t>(text_.size());
    return sm_.Position(file_.file, offset).line;
  }
  uint32_t FirstLine(const Range& r) const { return Line(r.begin); }
  uint32_t LastLine(const Range& r) const { return Line(r.end > r.begin ? r.end - 1 : r.begin); }

  bool InComment(uint32_t offset) const {
    for (const auto& c : file_.comments) {
      if (offset >= c.range.begin && offset < c.range.end) return true;
    }
    return false;
  }

  // The first `{` in [from, to) that is not inside a comment; `from` if none.
  uint32_t OpenBrace(uint32_t from, uint32_t to) const {
    to = std::min<uint32_t>(to, static_cast<uint32_t>(text_.size()));
    for (uint32_t i = from; i < to; ++i) {
      if (text_[i] == '{' && !InComment(i)) return i;
    }
    return from;
  }

  // The offsets strictly between the braces of a `{ ... }` range.
  static std::pair<uint32_t, uint32_t> Interior(uint32_t open, uint32_t end) {
    if (end <= open + 1) return {open, open};
    return {open + 1, end - 1};
  }
  static std::pair<uint32_t, uint32_t> Interior(const Range& braces) {
    if (!braces.valid()) return {0, 0};
    return Interior(braces.begin, braces.end);
  }

  bool AnyIn(const Scope& sc, std::pair<uint32_t, uint32_t> span) const {
    if (!sc.nest) return false;
    for (size_t c : sc.inside) {
      if (comments_[c].begin >= span.first && comments_[c].begin < span.second) return true;
    }
    return false;
  }

  std::vector<size_t> Claim(Scope& sc, std::pair<uint32_t, uint32_t> span) const {
    std::vector<size_t> out;
    if (!sc.nest) return out;
    for (size_t c : sc.inside) {
      if (comments_[c].begin >= span.first && comments_[c].begin < span.second) {
        out.push_back(c);
        sc.claimed.push_back(c);
      }
    }
    return out;
  }

  static std::vector<size_t> Unclaimed(const Scope& sc) {
    std::vector<size_t> claimed = sc.claimed;
    std::sort(claimed.begin(), claimed.end());
    std::vector<size_t> out;
    std::set_difference(sc.inside.begin(), sc.inside.end(), claimed.begin(), claimed.end(),
                        std::back_inserter(out));
    return out;
  }

  // --- Bodies: one node per line, with comments and blank lines ---

  // Prints `nodes` one per line at `ind`, each line ending in '\n'. `cs` are
  // the comments between the body's braces (or in the whole file), placed as
  // leading, trailing, hoisted or closing comments; `end` is where the body
  // closes. Blank lines are kept (at most one) where the source had one.
  std::string Body(const std::vector<Node>& nodes, const std::vector<size_t>& cs, int ind,
                   uint32_t end, bool top_level) const {
    struct Elem {
      std::string text;
      bool blank = false;
      std::string trailing;
    };
    // Which comments go before, inside and after each node; this depends on
    // the source positions alone.
    struct Place {
      std::vector<size_t> leading, inside, trailing;
      long last_line = 0;  // of the node or its trailing comments
    };
    std::vector<Place> places(nodes.size());
    size_t j = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const Node& n = nodes[i];
      Place& p = places[i];
      while (j < cs.size() && comments_[cs[j]].begin < n.range.begin) p.leading.push_back(cs[j++]);
      while (j < cs.size() && comments_[cs[j]].begin < n.range.end) p.inside.push_back(cs[j++]);
      p.last_line = LastLine(n.range);
      uint32_t next_begin = i + 1 < nodes.size() ? nodes[i + 1].range.begin : end;
      while (j < cs.size() && comments_[cs[j]].first_line == LastLine(n.range) &&
             comments_[cs[j]].begin < next_begin) {
        p.trailing.push_back(cs[j]);
        p.last_line = std::max<long>(p.last_line, comments_[cs[j]].last_line);
        ++j;
      }
    }

    // Runs of `path = value` items align their `=`. A run is broken by a
    // blank line, by any other node (a `name { k: v }` block item too, even
    // on one line), and by an item with comments before it or inside it
    // (those inside are printed before it, or inside it where it wraps).
    // Items that wrap still take part: their first line holds the `=`. The
    // padding is known before rendering, so it counts toward line length.
    std::vector<size_t> pad(nodes.size(), 0);
    for (size_t a = 0; a < nodes.size();) {
      if (nodes[a].align_key == 0) {
        ++a;
        continue;
      }
      size_t b = a + 1;
      while (b < nodes.size() && nodes[b].align_key > 0 && places[b].leading.empty() &&
             places[b].inside.empty() &&
             static_cast<long>(FirstLine(nodes[b].range)) - places[b - 1].last_line <= 1) {
        ++b;
      }
      size_t width = 0;
      for (size_t k = a; k < b; ++k) width = std::max(width, nodes[k].align_key);
      for (size_t k = a; k < b; ++k) pad[k] = width - nodes[k].align_key;
      a = b;
    }

    std::vector<Elem> elems;
    // The last source line of the previous element; -1 before the first, so
    // that a body never opens with a blank line.
    long prev_end = -1;
    auto gap = [&prev_end](long start) { return prev_end >= 0 && start - prev_end > 1; };
    auto comment = [this, &elems](size_t c, bool blank) {
      Elem e;
      e.text = comments_[c].text;
      e.blank = blank;
      elems.push_back(std::move(e));
    };

    std::string prev_text;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const Node& n = nodes[i];
      const Place& p = places[i];
      size_t col = static_cast<size_t>(ind) * kIndentWidth + pad[i];

      Scope sc{p.inside, true, {}};
      std::string text = RenderNode(n, ind, col, sc);
      std::vector<size_t> hoisted = Unclaimed(sc);
      if (!hoisted.empty() && !sc.claimed.empty() &&
          hoisted.back() > *std::min_element(sc.claimed.begin(), sc.claimed.end())) {
        sc = Scope{p.inside, false, {}};
        text = RenderNode(n, ind, col, sc);
        hoisted = p.inside;
      }

      // Top-level declarations are separated by a blank line, except runs of
      // imports and of one-line params, which keep the source's grouping.
      bool forced = false;
      if (top_level && i > 0) {
        NodeTag a = nodes[i - 1].tag, b = n.tag;
        bool together = (a == NodeTag::kImport && b == NodeTag::kImport) ||
                        (a == NodeTag::kParam && b == NodeTag::kParam && !HasNewline(prev_text) &&
                         !HasNewline(text));
        forced = !together;
      }

      for (size_t k = 0; k < p.leading.size(); ++k) {
        const CommentInfo& c = comments_[p.leading[k]];
        comment(p.leading[k], gap(c.first_line) || (k == 0 && forced));
        prev_end = c.last_line;
      }
      // Hoisted comments sit glued to the node, so the blank line (if any)
      // that preceded the node in the source goes before them.
      bool blank_before_node = gap(FirstLine(n.range)) || (p.leading.empty() && forced);
      for (size_t k = 0; k < hoisted.size(); ++k) comment(hoisted[k], k == 0 && blank_before_node);

      Elem e;
      e.blank = hoisted.empty() && blank_before_node;
      e.text = text;
      if (pad[i] > 0) e.text.insert(n.align_key, pad[i], ' ');
      for (size_t c : p.trailing) {
        e.trailing += e.trailing.empty() ? "  " : " ";
        e.trailing += comments_[c].text;
      }
      prev_end = p.last_line;
      elems.push_back(std::move(e));
      prev_text = std::move(text);
    }
    for (; j < cs.size(); ++j) {
      comment(cs[j], gap(comments_[cs[j]].first_line));
      prev_end = comments_[cs[j]].last_line;
    }

    std::string out;
    for (const Elem& e : elems) {
      if (e.blank) out += '\n';
      out += Indent(ind);
      out += e.text;
      out += e.trailing;
      out += '\n';
    }
    return out;
  }

  // Renders `n` at column `col` of a line indented `ind` levels, wrapping
  // sequences until no line that could be shortened is too long (see the
  // top of this file). `sc` starts with nothing claimed.
  std::string RenderNode(const Node& n, int ind, size_t col, Scope& sc) const {
    WrapState state;
    WrapState* saved = wrap_;
    wrap_ = &state;
    const Scope start = sc;
    std::string text;
    while (true) {
      state.seqs.clear();
      state.comments.clear();
      sc = start;
      text = n.render(ind, col, sc);
      const ast::Expr* next = SequenceToWrap(text, col, state);
      if (!next || !state.wrapped.insert(next).second) break;
    }
    wrap_ = saved;
    return text;
  }

  // The sequence to wrap next in `text`, which starts at column `col`, or
  // null: on the first line longer than kMaxColumns (comments not counted)
  // where one opens, of those not inside another one that opens on that
  // line, the last whose opening delimiter ends within kMaxColumns, else the
  // first.
  static const ast::Expr* SequenceToWrap(const std::string& text, size_t col,
                                         const WrapState& state) {
    size_t from = 0;
    while (true) {
      size_t to = text.find('\n', from);
      if (to == std::string::npos) to = text.size();
      size_t code_end = to;
      for (size_t c : state.comments) {
        if (c >= from && c < code_end) code_end = c;
      }
      if (col + (code_end - from) > kMaxColumns) {
        auto on_line = [&](const WrapState::Seq& s) { return s.begin >= from && s.begin < to; };
        const WrapState::Seq* first = nullptr;
        const WrapState::Seq* last_fitting = nullptr;
        for (const auto& s : state.seqs) {
          if (!on_line(s)) continue;
          bool inner = std::any_of(state.seqs.begin(), state.seqs.end(), [&](const auto& o) {
            return on_line(o) && o.begin < s.begin && s.end <= o.end;
          });
          if (inner) continue;
          if (!first || s.begin < first->begin) first = &s;
          bool fits = col + (s.begin - from) + 1 <= kMaxColumns;
          if (fits && (!last_fitting || s.begin > last_fitting->begin)) last_fitting = &s;
        }
        if (last_fitting) return last_fitting->expr;
        if (first) return first->expr;
      }
      if (to == text.size()) return nullptr;
      from = to + 1;
      col = 0;  // later lines hold their indentation
    }
  }

  // Appends `{`, the nodes one per line, and `}`; `{}` when there is nothing
  // inside. `span` is the body's interior. Comments that follow the `{` on
  // its line stay there, as in `kernel f() -> f32 {  // why`.
  void Lines(std::string& out, int ind, Scope& sc, const std::vector<Node>& nodes,
             std::pair<uint32_t, uint32_t> span) const {
    std::vector<size_t> cs = Claim(sc, span);
    std::string after_brace;
    if (!cs.empty() && span.first > 0) {
      uint32_t brace_line = Line(span.first - 1);
      uint32_t first_node = nodes.empty() ? span.second : nodes.front().range.begin;
      size_t k = 0;
      while (k < cs.size() && comments_[cs[k]].first_line == brace_line &&
             comments_[cs[k]].begin < first_node) {
        after_brace += k ? " " : "  ";
        after_brace += comments_[cs[k]].text;
        ++k;
      }
      cs.erase(cs.begin(), cs.begin() + static_cast<long>(k));
    }
    if (nodes.empty() && cs.empty() && after_brace.empty()) {
      out += "{}";
      return;
    }
    out += '{';
    out += after_brace;
    out += '\n';
    out += Body(nodes, cs, ind + 1, span.second, false);
    out += Indent(ind);
    out += '}';
  }

  // A settings block or state block: `{ a, b }` on one line when that fits and
  // no comment is inside, else one node per line without commas.
  void Braced(std::string& out, size_t col, int ind, Scope& sc, const std::vector<Node>& nodes,
              std::pair<uint32_t, uint32_t> span) const {
    if (!AnyIn(sc, span)) {
      if (nodes.empty()) {
        out += "{}";
        return;
      }
      size_t mark = sc.claimed.size();
      std::string one = out;
      size_t from = one.size();
      one += "{ ";
      // The entries render into texts of their own, unwrapped: nothing of
      // theirs goes into the node's wrapping state.
      WrapState flat;
      WrapState* saved = wrap_;
      wrap_ = &flat;
      bool fits = true;
      for (size_t i = 0; i < nodes.size() && fits; ++i) {
        if (i) one += ", ";
        one += nodes[i].render(ind, EndColumn(one, col), sc);
        // Stop as soon as it cannot fit: a block of thousands of entries
        // must not be rendered (and measured) on one line.
        fits = !HasNewline(std::string_view(one).substr(from)) && EndColumn(one, col) <= kMaxColumns;
      }
      wrap_ = saved;
      one += " }";
      if (fits && EndColumn(one, col) <= kMaxColumns) {
        out = std::move(one);
        return;
      }
      sc.claimed.resize(mark);
    }
    Lines(out, ind, sc, nodes, span);
  }

  void SettingsBlock(const ast::SettingsBlock& b, std::string& out, size_t col, int ind,
                     Scope& sc) const {
    std::vector<Node> nodes;
    for (const auto& entry : b.entries) {
      Node n;
      n.range = entry.range;
      const ast::Entry* en = &entry;
      n.render = [this, en](int ind, size_t col, Scope& sc) {
        std::string s = PathText(en->key) + ": ";
        if (en->value) Expr(*en->value, s, col, ind, sc);
        return s;
      };
      nodes.push_back(std::move(n));
    }
    Braced(out, col, ind, sc, nodes, Interior(b.range));
  }

  void KBlockText(const ast::KBlock& b, std::string& out, int ind, Scope& sc) const {
    std::vector<Node> nodes;
    for (const auto& st : b.stmts) {
      Node n;
      n.range = st.range;
      const ast::KStmt* s = &st;
      n.render = [this, s](int ind, size_t col, Scope& sc) { return StmtText(*s, ind, col, sc); };
      nodes.push_back(std::move(n));
    }
    if (b.result) {
      Node n;
      n.range = b.result->range;
      const ast::Expr* r = b.result.get();
      n.render = [this, r](int ind, size_t col, Scope& sc) {
        std::string s;
        Expr(*r, s, col, ind, sc);
        return s;
      };
      nodes.push_back(std::move(n));
    }
    Lines(out, ind, sc, nodes, Interior(b.range));
  }

  // --- Declarations, items, statements ---

  std::string DeclText(const ast::Decl& d, int ind, size_t col, Scope& sc) const {
    std::string out;
    switch (d.kind) {
      case ast::DeclKind::Import: {
        const auto& im = static_cast<const ast::ImportDecl&>(d);
        out = "import " + Quoted(im.path_range, im.path);
        if (im.has_alias) out += " as " + im.name.name;
        break;
      }
      case ast::DeclKind::Param: {
        const auto& p = static_cast<const ast::ParamDecl&>(d);
        out = "param " + p.name.name + ": " + TypeText(p.type);
        if (p.default_value) {
          out += " = ";
          Expr(*p.default_value, out, col, ind, sc);
        }
        break;
      }
      case ast::DeclKind::Resources:
      case ast::DeclKind::Cluster: {
        const auto& r = static_cast<const ast::ResourcesDecl&>(d);
        out = (d.kind == ast::DeclKind::Resources ? "resources " : "cluster ") + r.name.name + " ";
        SettingsBlock(r.block, out, col, ind, sc);
        break;
      }
      case ast::DeclKind::Pipeline: {
        const auto& p = static_cast<const ast::PipelineDecl&>(d);
        out = "pipeline " + p.name.name + " ";
        ItemLines(p.items, d, out, ind, sc);
        break;
      }
      case ast::DeclKind::Stage: {
        const auto& s = static_cast<const ast::StageDecl&>(d);
        out = std::string(StageKeyword(s.stage_kind)) + " " + s.name.name + " ";
        ItemLines(s.items, d, out, ind, sc);
        break;
      }
      case ast::DeclKind::Kernel: {
        const auto& k = static_cast<const ast::KernelDecl&>(d);
        out = "kernel " + k.name.name + "(";
        for (size_t i = 0; i < k.params.size(); ++i) {
          if (i) out += ", ";
          out += k.params[i].name.name + ": " + TypeText(k.params[i].type);
        }
        out += ") -> " + TypeText(k.ret) + " ";
        KBlockText(k.body, out, ind, sc);
        break;
      }
      case ast::DeclKind::Env: {
        const auto& e = static_cast<const ast::EnvDecl&>(d);
        out = "env " + e.name.name + " ";
        std::vector<Node> nodes;
        for (const auto& item : e.items) {
          Node n;
          n.range = item.range;
          const ast::EnvItem* it = &item;
          n.render = [this, it](int ind, size_t col, Scope& sc) {
            return EnvItemText(*it, ind, col, sc);
          };
          nodes.push_back(std::move(n));
        }
        Lines(out, ind, sc, nodes, Interior(OpenBrace(AfterName(d), d.range.end), d.range.end));
        break;
      }
    }
    return out;
  }

  // Where to look for a declaration's opening brace: after its name, so that
  // nothing in the header is taken for it.
  static uint32_t AfterName(const ast::Decl& d) {
    bool named = d.name.range.valid() && d.name.range.end > d.range.begin;
    return named ? d.name.range.end : d.range.begin;
  }

  void ItemLines(const std::vector<ast::Item>& items, const ast::Decl& d, std::string& out, int ind,
                 Scope& sc) const {
    std::vector<Node> nodes;
    for (const auto& item : items) {
      Node n;
      n.range = item.range;
      if (item.kind == ast::ItemKind::Assign) n.align_key = PathText(item.path).size();
      const ast::Item* it = &item;
      n.render = [this, it](int ind, size_t col, Scope& sc) { return ItemText(*it, ind, col, sc); };
      nodes.push_back(std::move(n));
    }
    Lines(out, ind, sc, nodes, Interior(OpenBrace(AfterName(d), d.range.end), d.range.end));
  }

  std::string ItemText(const ast::Item& item, int ind, size_t col, Scope& sc) const {
    std::string out;
    switch (item.kind) {
      case ast::ItemKind::Assign:
        out = PathText(item.path) + " = ";
        if (item.value) Expr(*item.value, out, col, ind, sc);
        break;
      case ast::ItemKind::Block:
        out = PathText(item.path) + " ";
        SettingsBlock(item.block, out, col, ind, sc);
        break;
      case ast::ItemKind::Stop:
        out = "stop when ";
        if (item.value) Expr(*item.value, out, col, ind, sc);
        break;
    }
    return out;
  }

  std::string EnvItemText(const ast::EnvItem& item, int ind, size_t col, Scope& sc) const {
    std::string out;
    switch (item.kind) {
      case ast::EnvItemKind::State: {
        out = "state ";
        std::vector<Node> nodes;
        for (const auto& field : item.fields) {
          Node n;
          n.range = field.range;
          const ast::StateField* f = &field;
          n.render = [this, f](int ind, size_t col, Scope& sc) {
            std::string s = f->name.name + ": " + TypeText(f->type) + " = ";
            if (f->init) Expr(*f->init, s, col, ind, sc);
            return s;
          };
          nodes.push_back(std::move(n));
        }
        uint32_t open = OpenBrace(item.range.begin, item.range.end);
        Braced(out, col, ind, sc, nodes, Interior(open, item.range.end));
        break;
      }
      case ast::EnvItemKind::Action:
      case ast::EnvItemKind::Observe:
        out = item.kind == ast::EnvItemKind::Action ? "action " : "observe ";
        if (item.value) Expr(*item.value, out, col, ind, sc);
        break;
      case ast::EnvItemKind::Step:
        out = "step(" + item.step_param.name + ") ";
        if (item.step) {
          KBlockText(*item.step, out, ind, sc);
        } else {
          out += "{}";
        }
        break;
      case ast::EnvItemKind::Setting:
        out = PathText(item.path) + " = ";
        if (item.value) Expr(*item.value, out, col, ind, sc);
        break;
    }
    return out;
  }

  std::string StmtText(const ast::KStmt& s, int ind, size_t col, Scope& sc) const {
    std::string out;
    switch (s.kind) {
      case ast::KStmtKind::Let:
        out = "let " + s.name.name;
        if (s.type) out += ": " + TypeText(*s.type);
        out += " = ";
        break;
      case ast::KStmtKind::Set: out = s.name.name + " = "; break;
      case ast::KStmtKind::Reward: out = "reward "; break;
      case ast::KStmtKind::Done: out = "done "; break;
    }
    if (s.value) Expr(*s.value, out, col, ind, sc);
    return out;
  }

  // --- Expressions ---

  // The source text of a token, or `fallback` quoted when there is none.
  std::string Quoted(const Range& r, std::string_view fallback) const {
    if (r.valid() && r.end > r.begin && r.end <= text_.size() && text_[r.begin] == '"') {
      return std::string(text_.substr(r.begin, r.end - r.begin));
    }
    std::string s = "\"";
    for (char c : fallback) {
      if (c == '"' || c == '\\') s += '\\';
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s += c;
    }
    return s + "\"";
  }

  // Literals print as written, so `1e-3`, `200_000`, `2GiB` and escapes survive.
  std::string Literal(const ast::Expr& e) const {
    const Range& r = e.range;
    if (r.valid() && r.end > r.begin && r.end <= text_.size()) {
      return std::string(text_.substr(r.begin, r.end - r.begin));
    }
    switch (e.kind) {
      case ast::ExprKind::Int: return std::to_string(e.int_value);
      case ast::ExprKind::Bool: return e.bool_value ? "true" : "false";
      case ast::ExprKind::String: return e.text.empty() ? "\"\"" : e.text;
      default: {
        std::string s = std::to_string(e.float_value);
        return e.kind == ast::ExprKind::Quantity ? s + e.text : s;
      }
    }
  }

  void Operand(const ast::Expr& e, int min_prec, std::string& out, size_t col, int ind,
               Scope& sc) const {
    if (Precedence(e) >= min_prec) {
      Expr(e, out, col, ind, sc);
      return;
    }
    out += '(';
    Expr(e, out, col, ind, sc);
    out += ')';
  }

  // Appends `e`; `out` began at column `col` of a line indented `ind` levels.
  void Expr(const ast::Expr& e, std::string& out, size_t col, int ind, Scope& sc) const {
    auto operand = [&e](size_t i) -> const ast::Expr* {
      return i < e.operands.size() ? e.operands[i].get() : nullptr;
    };
    switch (e.kind) {
      case ast::ExprKind::Int:
      case ast::ExprKind::Float:
      case ast::ExprKind::Quantity:
      case ast::ExprKind::String:
      case ast::ExprKind::Bool: out += Literal(e); return;
      case ast::ExprKind::Name: out += e.text; return;
      case ast::ExprKind::Call:
        out += e.text;
        Sequence(
            e, '(', ')', e.args.size(),
            [&](size_t i, int item_ind) {
              const ast::Arg& a = e.args[i];
              if (a.name) out += a.name->name + ": ";
              if (a.value) Expr(*a.value, out, col, item_ind, sc);
            },
            [&](size_t i) -> std::optional<std::pair<uint32_t, uint32_t>> {
              const ast::Arg& a = e.args[i];
              if (!a.value || !a.value->range.valid()) return std::nullopt;
              uint32_t begin = a.name && a.name->range.valid() ? a.name->range.begin
                                                               : a.value->range.begin;
              return std::pair{begin, a.value->range.end};
            },
            out, ind, sc);
        return;
      case ast::ExprKind::Field:
        if (auto* base = operand(0)) Operand(*base, kPostfix, out, col, ind, sc);
        out += '.';
        out += e.text;
        return;
      case ast::ExprKind::Index:
        if (auto* base = operand(0)) Operand(*base, kPostfix, out, col, ind, sc);
        out += '[';
        if (auto* index = operand(1)) Expr(*index, out, col, ind, sc);
        out += ']';
        return;
      case ast::ExprKind::List:
        Sequence(
            e, '[', ']', e.operands.size(),
            [&](size_t i, int item_ind) {
              if (e.operands[i]) Expr(*e.operands[i], out, col, item_ind, sc);
            },
            [&](size_t i) -> std::optional<std::pair<uint32_t, uint32_t>> {
              const ast::Expr* x = e.operands[i].get();
              if (!x || !x->range.valid()) return std::nullopt;
              return std::pair{x->range.begin, x->range.end};
            },
            out, ind, sc);
        return;
      case ast::ExprKind::Map:
        Sequence(
            e, '{', '}', e.entries.size(),
            [&](size_t i, int item_ind) {
              const auto& m = e.entries[i];
              out += m.quoted_key ? Quoted(m.key.range, m.key.name) : m.key.name;
              out += ": ";
              if (m.value) Expr(*m.value, out, col, item_ind, sc);
            },
            [&](size_t i) -> std::optional<std::pair<uint32_t, uint32_t>> {
              const auto& m = e.entries[i];
              if (!m.value || !m.value->range.valid() || !m.key.range.valid()) return std::nullopt;
              return std::pair{m.key.range.begin, m.value->range.end};
            },
            out, ind, sc);
        return;
      case ast::ExprKind::Unary:
        out += e.un_op == ast::UnOp::Neg ? "-" : "not ";
        if (auto* x = operand(0)) {
          Operand(*x, e.un_op == ast::UnOp::Neg ? kNeg : kNot, out, col, ind, sc);
        }
        return;
      case ast::ExprKind::Binary: {
        int p = Precedence(e.bin_op);
        // Left-associative: an equal-precedence left operand needs no
        // parentheses, a right one does. Comparisons do not chain, so a
        // nested one is always parenthesized.
        if (auto* lhs = operand(0)) Operand(*lhs, p == kCompare ? p + 1 : p, out, col, ind, sc);
        out += ' ';
        out += ast::Spelling(e.bin_op);
        out += ' ';
        if (auto* rhs = operand(1)) Operand(*rhs, p + 1, out, col, ind, sc);
        return;
      }
      case ast::ExprKind::If: If(e, out, col, ind, sc); return;
    }
  }

  // A call's arguments, a list's elements or a map's entries between `open`
  // and `close`: `(a, b)` on one line, or, where the node's wrapping state
  // says so, one item per line (see the top of this file). `item(i, ind)`
  // appends item `i` on a line indented `ind` levels; `span(i)` is where it
  // is in the source.
  template <typename ItemFn, typename SpanFn>
  void Sequence(const ast::Expr& e, char open, char close, size_t n, const ItemFn& item,
                const SpanFn& span, std::string& out, int ind, Scope& sc) const {
    if (n < 2 || !wrap_ || !wrap_->wrapped.count(&e)) {
      size_t begin = out.size();
      out += open;
      for (size_t i = 0; i < n; ++i) {
        if (i) out += ", ";
        item(i, ind);
      }
      out += close;
      if (n >= 2 && wrap_) wrap_->seqs.push_back({&e, begin, out.size()});
      return;
    }
    // before[i]: comments on their own lines before item i (i == n: before
    // the closing delimiter); after[i]: comments after item i's comma.
    std::vector<std::vector<size_t>> before(n + 1), after(n);
    ClaimBetween(e, open, close, n, span, sc, before, after);
    std::string inner = "\n" + Indent(ind + 1);
    auto own_line = [&](size_t c) {
      out += inner;
      wrap_->comments.push_back(out.size());
      out += comments_[c].text;
    };
    out += open;
    for (size_t i = 0; i < n; ++i) {
      for (size_t c : before[i]) own_line(c);
      out += inner;
      item(i, ind + 1);
      out += ',';
      for (size_t k = 0; k < after[i].size(); ++k) {
        wrap_->comments.push_back(out.size());
        out += k ? " " : "  ";
        out += comments_[after[i][k]].text;
      }
    }
    for (size_t c : before[n]) own_line(c);
    out += '\n';
    out += Indent(ind);
    out += close;
  }

  // Claims the comments of a wrapped sequence that lie between its items
  // (not inside one): those on the line where item i ends go after its
  // comma, the others on their own lines before the next item. Claims none
  // where the source positions are not as expected (a partial AST).
  template <typename SpanFn>
  void ClaimBetween(const ast::Expr& e, char open, char close, size_t n, const SpanFn& span,
                    Scope& sc, std::vector<std::vector<size_t>>& before,
                    std::vector<std::vector<size_t>>& after) const {
    if (!sc.nest || sc.inside.empty()) return;
    const Range& r = e.range;
    if (!r.valid() || r.end <= r.begin || r.end > text_.size() || text_[r.end - 1] != close) return;
    uint32_t lo = e.kind == ast::ExprKind::Call && e.name_range.valid() ? e.name_range.end : r.begin;
    while (lo < r.end && (text_[lo] != open || InComment(lo))) ++lo;
    uint32_t hi = r.end - 1;
    if (lo >= hi) return;
    std::vector<std::pair<uint32_t, uint32_t>> items;
    for (size_t i = 0; i < n; ++i) {
      auto s = span(i);
      if (!s || s->first <= lo || s->second < s->first || s->second > hi ||
          (!items.empty() && s->first < items.back().second)) {
        return;
      }
      items.push_back(*s);
    }
    for (size_t c : sc.inside) {
      uint32_t at = comments_[c].begin;
      if (at <= lo || at >= hi) continue;
      if (std::find(sc.claimed.begin(), sc.claimed.end(), c) != sc.claimed.end()) continue;
      // k: how many items end before the comment.
      size_t k = 0;
      while (k < n && items[k].second <= at) ++k;
      if (k < n && items[k].first <= at) continue;  // inside item k
      if (k > 0 && comments_[c].first_line == Line(items[k - 1].second - 1)) {
        after[k - 1].push_back(c);
      } else {
        before[k].push_back(c);
      }
      sc.claimed.push_back(c);
    }
  }

  static constexpr int kMaxInlineIfDepth = 4;

  // How deeply `if` expressions nest in `e`, counting `e` itself.
  static int IfDepth(const ast::Expr& e) {
    int inner = 0;
    auto block = [&](const ast::KBlock* b) {
      if (!b) return;
      for (const auto& st : b->stmts) {
        if (st.value) inner = std::max(inner, IfDepth(*st.value));
      }
      if (b->result) inner = std::max(inner, IfDepth(*b->result));
    };
    for (const auto& o : e.operands) {
      if (o) inner = std::max(inner, IfDepth(*o));
    }
    for (const auto& a : e.args) {
      if (a.value) inner = std::max(inner, IfDepth(*a.value));
    }
    for (const auto& m : e.entries) {
      if (m.value) inner = std::max(inner, IfDepth(*m.value));
    }
    block(e.then_block.get());
    block(e.else_block.get());
    return inner + (e.kind == ast::ExprKind::If ? 1 : 0);
  }

  // `if c { a } else { b }` on one line when no block has statements or
  // comments and the line fits; else the blocks one statement per line, with
  // `} else if c {` for else-if chains.
  void If(const ast::Expr& e, std::string& out, size_t col, int ind, Scope& sc) const {
    std::vector<const ast::Expr*> chain;
    const ast::KBlock* last_else = nullptr;
    for (const ast::Expr* x = &e;;) {
      chain.push_back(x);
      const ast::KBlock* eb = x->else_block.get();
      if (x->else_is_if && eb && eb->stmts.empty() && eb->result &&
          eb->result->kind == ast::ExprKind::If) {
        x = eb->result.get();
        continue;
      }
      last_else = eb;
      break;
    }
    static const ast::KBlock kEmpty;
    auto block = [](const ast::KBlock* b) -> const ast::KBlock& { return b ? *b : kEmpty; };

    // Trying the inline form renders the branches twice; bounding it by the
    // nesting of `if`s keeps deeply nested input linear (an inline `if` four
    // deep would not fit in a line anyway).
    bool inline_ok = IfDepth(e) <= kMaxInlineIfDepth;
    auto check = [&](const ast::KBlock& b) {
      inline_ok = inline_ok && b.stmts.empty() && !AnyIn(sc, Interior(b.range));
    };
    for (const ast::Expr* x : chain) check(block(x->then_block.get()));
    check(block(last_else));

    auto cond = [&](const ast::Expr* x, std::string& s) {
      if (!x->operands.empty() && x->operands[0]) Expr(*x->operands[0], s, col, ind, sc);
    };
    if (inline_ok) {
      size_t mark = sc.claimed.size();
      size_t seqs_mark = wrap_ ? wrap_->seqs.size() : 0;
      size_t comments_mark = wrap_ ? wrap_->comments.size() : 0;
      std::string one = out;
      size_t from = one.size();
      auto inline_block = [&](const ast::KBlock& b) {
        if (!b.result) {
          one += "{}";
          return;
        }
        one += "{ ";
        Expr(*b.result, one, col, ind, sc);
        one += " }";
      };
      for (size_t i = 0; i < chain.size(); ++i) {
        one += i ? " else if " : "if ";
        cond(chain[i], one);
        one += ' ';
        inline_block(block(chain[i]->then_block.get()));
      }
      one += " else ";
      inline_block(block(last_else));
      if (!HasNewline(std::string_view(one).substr(from)) && EndColumn(one, col) <= kMaxColumns) {
        out = std::move(one);
        return;
      }
      sc.claimed.resize(mark);
      if (wrap_) {
        wrap_->seqs.resize(seqs_mark);
        wrap_->comments.resize(comments_mark);
      }
    }
    for (size_t i = 0; i < chain.size(); ++i) {
      out += i ? " else if " : "if ";
      cond(chain[i], out);
      out += ' ';
      KBlockText(block(chain[i]->then_block.get()), out, ind, sc);
    }
    out += " else ";
    KBlockText(block(last_else), out, ind, sc);
  }

  const SourceManager& sm_;
  const ast::File& file_;
  std::string_view text_;
  std::vector<CommentInfo> comments_;
  // The wrapping state of the node being rendered (RenderNode); null outside.
  mutable WrapState* wrap_ = nullptr;
};

}  // namespace

std::string Format(const SourceManager& sm, const ast::File& file) {
  return Formatter(sm, file).Run();
}

}  // namespace mlp
