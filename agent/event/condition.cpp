#include "weir/condition.hpp"

#include <re2/re2.h>

#include <charconv>
#include <cmath>
#include <vector>

#include <fmt/format.h>

namespace weir {

namespace {

enum class Op { Or, And, Not, Eq, Ne, Lt, Le, Gt, Ge, In, Exists, StartsWith, EndsWith, Contains, Matches, Field, Literal };

struct Node {
  Op op;
  std::vector<int> children;
  std::string path;          // Field, Exists
  Value literal;             // Literal (strings in the program's arena)
  std::vector<Value> list;   // In
  std::unique_ptr<RE2> regex;
};

struct Token {
  enum Kind { End, Field, String, Number, Word, Symbol } kind;
  std::string text;
  std::size_t offset;
};

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '@'; }

Result<std::vector<Token>> tokenize(std::string_view s) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    std::size_t start = i;
    if (c == '"' || c == '\'') {
      std::string text;
      ++i;
      while (i < s.size() && s[i] != c) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          char e = s[++i];
          text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e == c || e == '\\' ? e : (text.push_back('\\'), e));
        } else {
          text.push_back(s[i]);
        }
        ++i;
      }
      if (i >= s.size()) return Error(fmt::format("offset {}: unterminated string", start));
      ++i;
      tokens.push_back({Token::String, std::move(text), start});
    } else if (c == '.' || std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      bool field = c == '.';
      if (field) ++i;
      while (i < s.size() && (is_ident(s[i]) || s[i] == '.')) ++i;
      std::string text(s.substr(field ? start + 1 : start, i - (field ? start + 1 : start)));
      if (field && text.empty()) return Error(fmt::format("offset {}: '.' must be followed by a field name", start));
      tokens.push_back({field ? Token::Field : Token::Word, std::move(text), start});
    } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      ++i;
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.' || s[i] == 'e' || s[i] == 'E' ||
                              ((s[i] == '-' || s[i] == '+') && (s[i - 1] == 'e' || s[i - 1] == 'E')))) {
        ++i;
      }
      tokens.push_back({Token::Number, std::string(s.substr(start, i - start)), start});
    } else {
      static constexpr std::string_view two[] = {"==", "!=", "<=", ">="};
      std::string_view pair = s.substr(i, 2);
      bool matched = false;
      for (auto t : two) {
        if (pair == t) {
          tokens.push_back({Token::Symbol, std::string(t), start});
          i += 2;
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (std::string_view("<>()[],").find(c) == std::string_view::npos) {
        return Error(fmt::format("offset {}: unexpected character '{}'", start, c));
      }
      tokens.push_back({Token::Symbol, std::string(1, c), start});
      ++i;
    }
  }
  tokens.push_back({Token::End, "", s.size()});
  return tokens;
}

}  // namespace

struct Condition::Program {
  std::string text;
  Arena arena{512};
  std::vector<Node> nodes;
  int root = -1;

  int add(Node node) {
    nodes.push_back(std::move(node));
    return static_cast<int>(nodes.size()) - 1;
  }

  // ---- parsing (recursive descent) ----
  std::vector<Token> tokens;
  std::size_t at = 0;
  // Bounds on what a condition may hold, so that neither the parser's nor the evaluator's
  // recursion can run out of stack on hostile text (found by fuzzing: 1,254 '(').
  static constexpr int kMaxNesting = 64;       // parentheses and `not`s, one in another
  static constexpr std::size_t kMaxNodes = 1024;  // terms in all (an `and` chain is that deep)
  int nesting = 0;
  const Token& peek() const { return tokens[at]; }
  bool accept(std::string_view symbol) {
    if ((peek().kind == Token::Symbol || peek().kind == Token::Word) && peek().text == symbol) {
      ++at;
      return true;
    }
    return false;
  }
  Error error(std::string what) const {
    const Token& t = peek();
    return Error(fmt::format("offset {}: {}, got {}", t.offset, what, t.kind == Token::End ? "the end" : "'" + t.text + "'"));
  }

  static bool keyword(const std::string& w) {
    return w == "and" || w == "or" || w == "not" || w == "in" || w == "true" || w == "false" || w == "null";
  }

  Result<int> parse_or() { return parse_chain("or", Op::Or, &Program::parse_and); }
  Result<int> parse_and() { return parse_chain("and", Op::And, &Program::parse_not); }
  // left (word right)*, folded to the left.
  Result<int> parse_chain(std::string_view word, Op op, Result<int> (Program::*next)()) {
    auto first = (this->*next)();
    if (!first.ok()) return first;
    int left = first.value();
    while (accept(word)) {
      if (nodes.size() >= kMaxNodes) return error(fmt::format("a condition of more than {} terms", kMaxNodes));
      auto right = (this->*next)();
      if (!right.ok()) return right;
      left = add(Node{op, {left, right.value()}, {}, {}, {}, nullptr});
    }
    return left;
  }
  Result<int> parse_not() {
    if (accept("not") || accept("!")) {
      if (++nesting > kMaxNesting) return error(fmt::format("more than {} levels of nesting", kMaxNesting));
      auto inner = parse_not();
      --nesting;
      if (!inner.ok()) return inner;
      return add(Node{Op::Not, {inner.value()}, {}, {}, {}, nullptr});
    }
    return parse_comparison();
  }

  Result<Value> literal() {
    const Token& t = peek();
    if (t.kind == Token::String) {
      ++at;
      return Value::string(arena, t.text);
    }
    if (t.kind == Token::Number) {
      ++at;
      std::int64_t i;
      auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), i);
      if (ec == std::errc() && end == t.text.data() + t.text.size()) return Value::integer(i);
      double d;
      auto [dend, dec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), d);
      if (dec == std::errc() && dend == t.text.data() + t.text.size()) return Value::floating(d);
      return Error(fmt::format("offset {}: '{}' is not a number", t.offset, t.text));
    }
    if (t.kind == Token::Word && (t.text == "true" || t.text == "false")) {
      ++at;
      return Value::boolean(t.text == "true");
    }
    if (t.kind == Token::Word && t.text == "null") {
      ++at;
      return Value::null();
    }
    return error("expected a literal (string, number, true, false, null)");
  }

  Result<int> operand() {
    const Token& t = peek();
    if (t.kind == Token::Field || (t.kind == Token::Word && !keyword(t.text) && tokens[at + 1].text != "(")) {
      ++at;
      return add(Node{Op::Field, {}, t.text, {}, {}, nullptr});
    }
    auto lit = literal();
    if (!lit.ok()) return lit.error();
    return add(Node{Op::Literal, {}, {}, lit.value(), {}, nullptr});
  }

  Result<int> function(const Token& name) {
    static const std::pair<std::string_view, Op> functions[] = {{"exists", Op::Exists},
                                                                 {"starts_with", Op::StartsWith},
                                                                 {"ends_with", Op::EndsWith},
                                                                 {"contains", Op::Contains},
                                                                 {"matches", Op::Matches}};
    Op op = Op::Literal;
    for (auto [n, o] : functions) {
      if (n == name.text) op = o;
    }
    if (op == Op::Literal) {
      return Error(fmt::format("offset {}: unknown function '{}' (exists, starts_with, ends_with, contains, matches)",
                               name.offset, name.text));
    }
    ++at;  // name
    accept("(");
    if (peek().kind != Token::Field && peek().kind != Token::Word) return error(fmt::format("{}() takes a field first", name.text));
    std::string path = peek().text;
    ++at;
    if (op == Op::Exists) {
      if (!accept(")")) return error("expected ')'");
      return add(Node{Op::Exists, {}, path, {}, {}, nullptr});
    }
    if (!accept(",")) return error(fmt::format("{}() takes a field and a string", name.text));
    if (peek().kind != Token::String) return error(fmt::format("{}() takes a string literal second", name.text));
    Token arg = peek();
    ++at;
    if (!accept(")")) return error("expected ')'");
    Node node{op, {}, path, Value::string(arena, arg.text), {}, nullptr};
    if (op == Op::Matches) {
      node.regex = std::make_unique<RE2>(arg.text, RE2::Quiet);
      if (!node.regex->ok()) {
        return Error(fmt::format("offset {}: invalid regular expression: {}", arg.offset, node.regex->error()));
      }
    }
    return add(std::move(node));
  }

  Result<int> parse_comparison() {
    if (accept("(")) {
      if (++nesting > kMaxNesting) return error(fmt::format("more than {} levels of nesting", kMaxNesting));
      auto inner = parse_or();
      --nesting;
      if (!inner.ok()) return inner;
      if (!accept(")")) return error("expected ')'");
      return inner;
    }
    if (peek().kind == Token::Word && tokens[at + 1].text == "(") return function(peek());
    if (peek().kind == Token::End) return error("expected a condition");
    auto left = operand();
    if (!left.ok()) return left;
    if (accept("in")) {
      if (!accept("[")) return error("'in' needs a [list]");
      Node node{Op::In, {left.value()}, {}, {}, {}, nullptr};
      if (!accept("]")) {
        do {
          auto item = literal();
          if (!item.ok()) return item.error();
          node.list.push_back(item.value());
        } while (accept(","));
        if (!accept("]")) return error("expected ',' or ']'");
      }
      return add(std::move(node));
    }
    static const std::pair<std::string_view, Op> ops[] = {{"==", Op::Eq}, {"!=", Op::Ne}, {"<=", Op::Le},
                                                           {">=", Op::Ge}, {"<", Op::Lt},  {">", Op::Gt}};
    for (auto [symbol, op] : ops) {
      std::size_t op_offset = peek().offset;
      if (accept(symbol)) {
        auto right = operand();
        if (!right.ok()) return right;
        const Node& l = nodes[left.value()];
        const Node& r = nodes[right.value()];
        if (l.op == Op::Literal && r.op == Op::Literal) {
          return Error(fmt::format("offset {}: comparing two literals is always the same; compare a field", op_offset));
        }
        if (op != Op::Eq && op != Op::Ne) {
          for (const Node* side : {&l, &r}) {
            if (side->op == Op::Literal && !side->literal.is_number() && !side->literal.is_string()) {
              return Error(fmt::format("offset {}: '{}' orders numbers or strings, not {}", op_offset, symbol,
                                       kind_name(side->literal.kind())));
            }
          }
        }
        return add(Node{op, {left.value(), right.value()}, {}, {}, {}, nullptr});
      }
    }
    const Node& alone = nodes[left.value()];
    if (alone.op == Op::Field) return left;  // truthiness of a field: true when it is true
    return error("expected an operator (==, !=, <, <=, >, >=, in)");
  }

  // ---- evaluation ----
  Value operand_value(int index, const Event& event) const {
    const Node& n = nodes[index];
    if (n.op == Op::Literal) return n.literal;
    const Value* v = event.fields.find_path(n.path);
    return v ? *v : Value::null();
  }

  static bool equal(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
      if (a.is_double() || b.is_double()) return a.to_double() == b.to_double();
      if (a.kind() == b.kind()) return a == b;
      return false;  // int64 vs uint64 above int64's range
    }
    return a == b;
  }

  static int order(const Value& a, const Value& b, bool& comparable) {
    comparable = true;
    if (a.is_number() && b.is_number()) {
      if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
      double x = a.to_double(), y = b.to_double();
      return x < y ? -1 : x > y;
    }
    if (a.is_string() && b.is_string()) return a.as_string().compare(b.as_string()) < 0 ? -1 : a.as_string() != b.as_string();
    comparable = false;
    return 0;
  }

  bool eval(int index, const Event& event) const {
    const Node& n = nodes[index];
    switch (n.op) {
      case Op::Or: return eval(n.children[0], event) || eval(n.children[1], event);
      case Op::And: return eval(n.children[0], event) && eval(n.children[1], event);
      case Op::Not: return !eval(n.children[0], event);
      case Op::Field: {
        const Value* v = event.fields.find_path(n.path);
        return v != nullptr && v->is_bool() && v->as_bool();
      }
      case Op::Literal: return n.literal.is_bool() && n.literal.as_bool();
      case Op::Exists: return event.fields.find_path(n.path) != nullptr;
      case Op::Eq: return equal(operand_value(n.children[0], event), operand_value(n.children[1], event));
      case Op::Ne: return !equal(operand_value(n.children[0], event), operand_value(n.children[1], event));
      case Op::Lt:
      case Op::Le:
      case Op::Gt:
      case Op::Ge: {
        bool comparable;
        int c = order(operand_value(n.children[0], event), operand_value(n.children[1], event), comparable);
        if (!comparable) return false;
        return n.op == Op::Lt ? c < 0 : n.op == Op::Le ? c <= 0 : n.op == Op::Gt ? c > 0 : c >= 0;
      }
      case Op::In: {
        Value v = operand_value(n.children[0], event);
        for (const Value& item : n.list) {
          if (equal(v, item)) return true;
        }
        return false;
      }
      case Op::StartsWith:
      case Op::EndsWith:
      case Op::Contains:
      case Op::Matches: {
        const Value* v = event.fields.find_path(n.path);
        if (v == nullptr || !v->is_string()) return false;
        std::string_view s = v->as_string(), arg = n.literal.as_string();
        if (n.op == Op::StartsWith) return s.substr(0, arg.size()) == arg;
        if (n.op == Op::EndsWith) return s.size() >= arg.size() && s.substr(s.size() - arg.size()) == arg;
        if (n.op == Op::Contains) return s.find(arg) != std::string_view::npos;
        return RE2::PartialMatch(re2::StringPiece(s.data(), s.size()), *n.regex);
      }
    }
    return false;
  }
};

Condition::Condition(std::unique_ptr<Program> program) : program_(std::move(program)) {}
Condition::Condition(Condition&&) noexcept = default;
Condition& Condition::operator=(Condition&&) noexcept = default;
Condition::~Condition() = default;

Result<Condition> Condition::compile(std::string_view text) {
  auto program = std::make_unique<Program>();
  program->text = std::string(text);
  auto tokens = tokenize(text);
  if (!tokens.ok()) return tokens.error();
  program->tokens = std::move(tokens.value());
  auto root = program->parse_or();
  if (!root.ok()) return root.error();
  if (program->peek().kind != Token::End) return program->error("expected 'and', 'or' or the end");
  program->root = root.value();
  program->tokens.clear();
  return Condition(std::move(program));
}

bool Condition::matches(const Event& event) const { return program_->eval(program_->root, event); }
const std::string& Condition::text() const { return program_->text; }

}  // namespace weir
