//! Step conditions of approval circuits: owns the condition language (grammar, parsing,
//! evaluation against document metadata) and the exact decimals it compares with.
//!
//! It must not do I/O, touch the clock, or depend on anything but `std`, `serde` and
//! `thiserror`.
//!
//! ```text
//! condition  := or_expr                       (at most 1024 bytes, 32 nested levels)
//! or_expr    := and_expr ("or" and_expr)*     ("and" binds tighter than "or")
//! and_expr   := unary ("and" unary)*
//! unary      := "not" unary | "(" or_expr ")" | comparison
//! comparison := IDENT OP LITERAL              (ordering operators need a number)
//! OP         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
//! IDENT      := [A-Za-z_][A-Za-z0-9_.-]*      (not a keyword; keywords ignore case)
//! LITERAL    := NUMBER | STRING
//! NUMBER     := -?[0-9]{1,18}(.[0-9]{1,9})?
//! STRING     := '...' or "..." with the escapes \\ \' \"
//! ```
//!
//! Evaluation fails closed: every comparison is evaluated (no short-circuit) and, if any of
//! them cannot be evaluated, the error of the leftmost such comparison is returned, whatever
//! the truth of the others.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest accepted condition source, in bytes.
pub const MAX_SOURCE_LEN: usize = 1024;
/// Deepest accepted nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;
const MAX_INT_DIGITS: usize = 18;
const MAX_FRAC_DIGITS: usize = 9;
const SCALE: u128 = 1_000_000_000;

/// Why a condition cannot be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// `position` is a byte offset into the text given to [`Condition::parse`].
    #[error("condition syntax error at byte {position}: {message}")]
    Syntax { position: usize, message: String },
    #[error("condition is too long ({0} bytes, at most 1024)")]
    TooLong(usize),
    #[error("condition nests too deeply (at most 32 levels)")]
    TooDeep,
    /// From [`Decimal::parse`]; the message never echoes the input.
    #[error("invalid number: {0}")]
    InvalidNumber(String),
    #[error("metadata field '{0}' used by the condition is missing")]
    MissingField(String),
    #[error("metadata field '{0}' must be a number for this condition")]
    NotANumber(String),
}

fn syntax(position: usize, message: impl Into<String>) -> ConditionError {
    ConditionError::Syntax {
        position,
        message: message.into(),
    }
}

/// An exact fixed-point number: a count of 10^-9 units. Holds at most 18 integer and 9
/// fractional digits, so every value fits an `i128` without overflow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal {
    units: i128,
}

impl Decimal {
    /// Parses `-?digits(.digits)?` strictly: no `+`, no exponent, no whitespace, at most 18
    /// integer and 9 fractional digits.
    pub fn parse(s: &str) -> Result<Decimal, ConditionError> {
        parse_units(s)
            .map(|units| Decimal { units })
            .map_err(|reason| ConditionError::InvalidNumber(reason.to_string()))
    }
}

fn parse_units(s: &str) -> Result<i128, &'static str> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("empty");
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let int_len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return Err("expected a digit");
    }
    if int_len > MAX_INT_DIGITS {
        return Err("more than 18 integer digits");
    }
    let (int_part, rest) = digits.split_at(int_len);
    let frac_part: &[u8] = match rest.split_first() {
        None => &[],
        Some((b'.', frac)) => {
            if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
                return Err("expected only digits after '.'");
            }
            if frac.len() > MAX_FRAC_DIGITS {
                return Err("more than 9 fractional digits");
            }
            frac
        }
        Some(_) => return Err("only digits, a leading '-' and one '.' are allowed"),
    };
    // At most 27 digits: far below i128::MAX (about 1.7e38), so no overflow is possible.
    let padded = frac_part.iter().chain(std::iter::repeat(&b'0'));
    let digits = int_part.iter().chain(padded.take(MAX_FRAC_DIGITS));
    let units = digits.fold(0i128, |acc, b| acc * 10 + i128::from(b - b'0'));
    Ok(if negative { -units } else { units })
}

impl fmt::Display for Decimal {
    /// Canonical form without trailing zeros: `1200.5`, `-3`, `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let abs = self.units.unsigned_abs();
        let (int, frac) = (abs / SCALE, abs % SCALE);
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let frac = format!("{frac:09}");
            write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        use CmpOp::*;
        match ord {
            Ordering::Less => matches!(self, Ne | Lt | Le),
            Ordering::Equal => matches!(self, Eq | Le | Ge),
            Ordering::Greater => matches!(self, Ne | Gt | Ge),
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Literal {
    Number(Decimal),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Compare {
        field: String,
        op: CmpOp,
        value: Literal,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A parsed step condition. Serializes as its source text; deserializing re-parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl Condition {
    /// Parses a condition. Error positions are byte offsets into `src` as given (untrimmed).
    pub fn parse(src: &str) -> Result<Condition, ConditionError> {
        if src.len() > MAX_SOURCE_LEN {
            return Err(ConditionError::TooLong(src.len()));
        }
        let tokens = lex(src)?;
        if tokens.len() <= 1 {
            return Err(syntax(0, "empty condition"));
        }
        let mut parser = Parser {
            src,
            tokens,
            pos: 0,
            depth: 0,
        };
        let expr = parser.parse_or()?;
        let (next, found) = (parser.peek(), parser.text(parser.peek()));
        match next.tok {
            Tok::End => {}
            Tok::RParen => return Err(syntax(next.start, "unexpected ')'")),
            _ => {
                let message =
                    format!("trailing input: expected 'and', 'or' or the end, found '{found}'");
                return Err(syntax(next.start, message));
            }
        }
        let source = src.trim_matches(|c: char| c.is_ascii_whitespace());
        Ok(Condition {
            source: source.to_string(),
            expr,
        })
    }

    /// The original text, trimmed.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The metadata keys the condition references.
    pub fn fields(&self) -> BTreeSet<String> {
        fn walk(e: &Expr, out: &mut BTreeSet<String>) {
            match e {
                Expr::Compare { field, .. } => {
                    out.insert(field.clone());
                }
                Expr::Not(inner) => walk(inner, out),
                Expr::And(items) | Expr::Or(items) => items.iter().for_each(|i| walk(i, out)),
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.expr, &mut out);
        out
    }

    /// Evaluates every comparison (no short-circuit); returns the leftmost error if any.
    pub fn evaluate(&self, meta: &BTreeMap<String, String>) -> Result<bool, ConditionError> {
        eval(&self.expr, meta)
    }
}

fn eval(expr: &Expr, meta: &BTreeMap<String, String>) -> Result<bool, ConditionError> {
    match expr {
        Expr::Compare { field, op, value } => {
            let raw = meta
                .get(field)
                .ok_or_else(|| ConditionError::MissingField(field.clone()))?;
            let ord = match value {
                Literal::Number(n) => parse_units(raw)
                    .map_err(|_| ConditionError::NotANumber(field.clone()))?
                    .cmp(&n.units),
                Literal::Text(s) => raw.as_bytes().cmp(s.as_bytes()),
            };
            Ok(op.holds(ord))
        }
        Expr::Not(inner) => eval(inner, meta).map(|b| !b),
        Expr::And(items) | Expr::Or(items) => {
            // Evaluate every operand first (no short-circuit), then keep the leftmost error.
            let results: Vec<_> = items.iter().map(|item| eval(item, meta)).collect();
            let values = results.into_iter().collect::<Result<Vec<bool>, _>>()?;
            Ok(match expr {
                Expr::And(_) => values.iter().all(|&b| b),
                _ => values.iter().any(|&b| b),
            })
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let src = String::deserialize(deserializer)?;
        Condition::parse(&src).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Number(Decimal),
    Text(String),
    Op(CmpOp),
    LParen,
    RParen,
    And,
    Or,
    Not,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn char_at(src: &str, i: usize) -> char {
    let c = src.get(i..).and_then(|s| s.chars().next());
    c.unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Splits `src` into tokens; the last one is always `Tok::End`.
fn lex(src: &str) -> Result<Vec<Token>, ConditionError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut start = 0;
    while let Some(&b) = bytes.get(start) {
        let double = bytes.get(start + 1) == Some(&b'=');
        let (tok, end) = match b {
            _ if b.is_ascii_whitespace() => {
                start += 1;
                continue;
            }
            b'(' => (Tok::LParen, start + 1),
            b')' => (Tok::RParen, start + 1),
            b'!' if !double => return Err(syntax(start, "unexpected '!' (use '!=')")),
            b'=' | b'!' | b'<' | b'>' => {
                let op = match (b, double) {
                    (b'=', _) => CmpOp::Eq,
                    (b'!', _) => CmpOp::Ne,
                    (b'<', true) => CmpOp::Le,
                    (b'<', false) => CmpOp::Lt,
                    (_, true) => CmpOp::Ge,
                    (_, false) => CmpOp::Gt,
                };
                (Tok::Op(op), start + 1 + usize::from(double))
            }
            b'\'' | b'"' => lex_string(src, start)?,
            b'-' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let len = bytes[start + 1..].iter().take_while(|&&c| is_word_byte(c));
                let end = start + 1 + len.count();
                let word = &src[start..end];
                let tok = if b == b'-' || b.is_ascii_digit() {
                    let units = parse_units(word).map_err(|reason| {
                        syntax(start, format!("invalid number '{word}': {reason}"))
                    })?;
                    Tok::Number(Decimal { units })
                } else {
                    match word.to_ascii_lowercase().as_str() {
                        "and" => Tok::And,
                        "or" => Tok::Or,
                        "not" => Tok::Not,
                        _ => Tok::Ident(word.to_string()),
                    }
                };
                (tok, end)
            }
            _ => {
                let message = format!("unexpected character '{}'", char_at(src, start));
                return Err(syntax(start, message));
            }
        };
        tokens.push(Token { tok, start, end });
        start = end;
    }
    let end = bytes.len();
    tokens.push(Token {
        tok: Tok::End,
        start: end,
        end,
    });
    Ok(tokens)
}

/// Reads the string literal whose opening quote is at `start`; returns it and the offset
/// just past the closing quote. Quotes and backslashes are ASCII, so every slice below falls
/// on a character boundary.
fn lex_string(src: &str, start: usize) -> Result<(Tok, usize), ConditionError> {
    let bytes = src.as_bytes();
    let quote = bytes[start];
    let mut out = String::new();
    let mut i = start + 1;
    let mut segment = i;
    loop {
        match bytes.get(i) {
            None => return Err(syntax(start, "unterminated string")),
            Some(&q) if q == quote => {
                out.push_str(&src[segment..i]);
                return Ok((Tok::Text(out), i + 1));
            }
            Some(b'\\') => {
                out.push_str(&src[segment..i]);
                match bytes.get(i + 1) {
                    Some(&e @ (b'\\' | b'\'' | b'"')) => out.push(char::from(e)),
                    None => return Err(syntax(start, "unterminated string")),
                    Some(_) => {
                        let c = char_at(src, i + 1);
                        let message = format!("unknown escape '\\{c}' (use \\\\, \\' or \\\")");
                        return Err(syntax(i, message));
                    }
                }
                i += 2;
                segment = i;
            }
            Some(_) => i += 1,
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    /// Never empty and ends with `Tok::End`; `pos` never moves past that last token.
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn text(&self, token: &Token) -> &'a str {
        self.src.get(token.start..token.end).unwrap_or("")
    }

    fn enter(&mut self) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ConditionError::TooDeep);
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.parse_and()?];
        while self.peek().tok == Tok::Or {
            self.advance();
            items.push(self.parse_and()?);
        }
        Ok(group(items, Expr::Or))
    }

    fn parse_and(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.parse_unary()?];
        while self.peek().tok == Tok::And {
            self.advance();
            items.push(self.parse_unary()?);
        }
        Ok(group(items, Expr::And))
    }

    fn parse_unary(&mut self) -> Result<Expr, ConditionError> {
        let token = self.advance();
        let text = self.text(&token);
        let message = match token.tok {
            Tok::Not => {
                self.enter()?;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                return Ok(Expr::Not(Box::new(inner)));
            }
            Tok::LParen => {
                self.enter()?;
                let inner = self.parse_or()?;
                let close = self.advance();
                if close.tok != Tok::RParen {
                    return Err(syntax(
                        close.start,
                        format!("expected ')' to close the '(' at byte {}", token.start),
                    ));
                }
                self.depth -= 1;
                return Ok(inner);
            }
            Tok::Ident(field) => return self.parse_comparison(field),
            Tok::RParen => "unexpected ')'".to_string(),
            Tok::End => "unexpected end of condition, expected a comparison".to_string(),
            Tok::And | Tok::Or => format!("unexpected '{text}', expected a comparison"),
            Tok::Number(_) | Tok::Text(_) | Tok::Op(_) => {
                format!("expected a field name before '{text}'")
            }
        };
        Err(syntax(token.start, message))
    }

    fn parse_comparison(&mut self, field: String) -> Result<Expr, ConditionError> {
        let op_token = self.advance();
        let Tok::Op(op) = op_token.tok else {
            return Err(syntax(
                op_token.start,
                format!("expected an operator after '{field}'"),
            ));
        };
        let value_token = self.advance();
        let at = value_token.start;
        let value = match value_token.tok {
            Tok::Number(n) => Literal::Number(n),
            Tok::Text(_) if op.is_ordering() => {
                return Err(syntax(at, "ordering operator needs a number"));
            }
            Tok::Text(s) => Literal::Text(s),
            _ => {
                let message = format!("expected a value after '{}'", self.text(&op_token));
                return Err(syntax(at, message));
            }
        };
        Ok(Expr::Compare { field, op, value })
    }
}

/// A single operand stands for itself; several are wrapped in `And` / `Or`.
fn group(mut items: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr) -> Expr {
    match items.pop() {
        Some(only) if items.is_empty() => only,
        last => {
            items.extend(last);
            wrap(items)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use CmpOp::*;

    /// A comparison whose literal is a number if `value` parses as one, else a string.
    fn cmp(field: &str, op: CmpOp, value: &str) -> Expr {
        let value = Decimal::parse(value).map_or(Literal::Text(value.into()), Literal::Number);
        let field = field.into();
        Expr::Compare { field, op, value }
    }

    /// `"a=1;b=x"` -> metadata map.
    fn meta(spec: &str) -> BTreeMap<String, String> {
        let pairs = spec.split(';').filter_map(|kv| kv.split_once('='));
        pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parsed(src: &str) -> Expr {
        Condition::parse(src).unwrap().expr
    }

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    fn error_text(src: &str) -> String {
        Condition::parse(src).unwrap_err().to_string()
    }

    /// Splits a `x|y|z` test case.
    fn fields3(case: &str) -> (&str, &str, &str) {
        let mut parts = case.splitn(3, '|');
        let mut next = || parts.next().unwrap_or_default();
        (next(), next(), next())
    }

    #[test]
    fn parses_comparisons_precedence_not_and_parentheses() {
        let c = Condition::parse("  amount >= 10000 and beneficiary != 'X' \n").unwrap();
        assert_eq!(c.source(), "amount >= 10000 and beneficiary != 'X'");
        assert_eq!(c.to_string(), c.source());
        let (ge, ne) = (cmp("amount", Ge, "10000"), cmp("beneficiary", Ne, "X"));
        assert_eq!(c.expr, Expr::And(vec![ge, ne]));
        let (a, b, c) = (cmp("a", Eq, "1"), cmp("b", Eq, "1"), cmp("c", Eq, "1"));
        let b_and_c = Expr::And(vec![b.clone(), c.clone()]);
        let expected = Expr::Or(vec![a.clone(), b_and_c]);
        assert_eq!(parsed("a = 1 or b = 1 and c = 1"), expected);
        let expected = Expr::And(vec![Expr::Or(vec![a.clone(), b.clone()]), c]);
        assert_eq!(parsed("((a = 1 or b = 1)) and c = 1"), expected);
        let not_a = Expr::Not(Box::new(a.clone()));
        let not_not_b = Expr::Not(Box::new(Expr::Not(Box::new(b))));
        let expected = Expr::Or(vec![not_a, not_not_b]);
        assert_eq!(parsed("not a = 1 or NOT not b = 1"), expected);
        let src = "(a = 1 or b < 2.5) and c = \"str\"";
        let or = Expr::Or(vec![a, cmp("b", Lt, "2.5")]);
        assert_eq!(parsed(src), Expr::And(vec![or, cmp("c", Eq, "str")]));
        let fields = Condition::parse(src).unwrap().fields();
        assert_eq!(fields.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        // `==` is `=`, keywords ignore case, identifiers may hold '.', '-' and '_'.
        let and = Expr::And(vec![cmp("_d.t-2", Eq, "-1"), cmp("x", Le, "0")]);
        let expected = Expr::Or(vec![and, cmp("y", Gt, "1")]);
        assert_eq!(parsed("_d.t-2 == -1 AND x<=0 Or y>1"), expected);
        let quoted = Expr::Or(vec![cmp("a", Eq, r#"it's \ "q""#), cmp("b", Eq, "'é")]);
        assert_eq!(parsed(r#"a = 'it\'s \\ "q"' or b = "\'é""#), quoted);
    }

    #[test]
    fn syntax_errors_have_positions_and_useful_messages() {
        // position|source|message
        let cases = [
            "0||empty condition",
            "0| \t\n|empty condition",
            "7|amount 5|expected an operator after 'amount'",
            "4|a = 'x|unterminated string",
            "4|a = \"x\\|unterminated string",
            "5|a = 1)|unexpected ')'",
            "4|a >=|expected a value after '>='",
            "5|a == b|expected a value after '=='",
            "6|a = 1 b = 2|trailing input: expected 'and', 'or' or the end, found 'b'",
            "4|a < 'x'|ordering operator needs a number",
            "5|a >= \"1\"|ordering operator needs a number",
            "6|(a = 1|expected ')' to close the '(' at byte 0",
            "9|a = 1 and|unexpected end of condition, expected a comparison",
            "0|and = 1|unexpected 'and', expected a comparison",
            "9|a = 1 or OR|unexpected 'OR', expected a comparison",
            "0|1 = a|expected a field name before '1'",
            "0|= 1|expected a field name before '='",
            "1|()|unexpected ')'",
            "2|a ! 1|unexpected '!' (use '!=')",
            "6|a = 1 # x|unexpected character '#'",
            "9|a = 'é' é|unexpected character 'é'",
            "6|a = 'x\\n'|unknown escape '\\n' (use \\\\, \\' or \\\")",
            "4|a = -|invalid number '-': expected a digit",
            "4|a = 1.|invalid number '1.': expected only digits after '.'",
            "4|a = 1e5|invalid number '1e5': only digits, a leading '-' and one '.' are allowed",
            "4|a = 1and b|invalid number '1and': only digits, a leading '-' and one '.' are allowed",
            "4|a = 1234567890123456789|invalid number '1234567890123456789': more than 18 integer digits",
            "4|a = 0.1234567891|invalid number '0.1234567891': more than 9 fractional digits",
        ];
        for case in cases {
            let (position, src, message) = fields3(case);
            let expected = syntax(position.parse().unwrap(), message);
            assert_eq!(Condition::parse(src), Err(expected), "{src}");
        }
        let expected = "condition syntax error at byte 3: expected a value after '>'";
        assert_eq!(error_text("a >"), expected);
    }

    #[test]
    fn length_and_depth_limits() {
        let long = format!("a = '{}'", "x".repeat(MAX_SOURCE_LEN - 6));
        assert!(long.len() == MAX_SOURCE_LEN && Condition::parse(&long).is_ok());
        let too_long = format!("{long} ");
        assert_eq!(
            Condition::parse(&too_long),
            Err(ConditionError::TooLong(1025))
        );
        let expected = "condition is too long (1025 bytes, at most 1024)";
        assert_eq!(error_text(&too_long), expected);
        let nest = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
        let nots = |n: usize| format!("{}a = 1", "not ".repeat(n));
        let mixed = |n: usize| format!("{}a = 1{}", "not (".repeat(n), ")".repeat(n));
        for ok in [nest(MAX_DEPTH), nots(MAX_DEPTH), mixed(MAX_DEPTH / 2)] {
            assert!(Condition::parse(&ok).is_ok(), "{ok}");
        }
        for deep in [nest(33), nots(33), format!("not {}", mixed(16))] {
            assert_eq!(
                Condition::parse(&deep),
                Err(ConditionError::TooDeep),
                "{deep}"
            );
            let expected = "condition nests too deeply (at most 32 levels)";
            assert_eq!(error_text(&deep), expected);
        }
        assert!(Condition::parse(&vec!["a = 1"; 100].join(" or ")).is_ok());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(dec("1200.50"), dec("1200.5"));
        let canonical = [("1200.50", "1200.5"), ("-3.000", "-3"), ("-0.0", "0")];
        for (input, canonical) in canonical {
            assert_eq!(dec(input).to_string(), canonical);
        }
        assert_eq!(dec("007.010").to_string(), "7.01");
        assert_eq!(dec("-0.000000001").to_string(), "-0.000000001");
        assert!(dec("10000") > dec("9999.999999999"));
        assert!(dec("-1") < dec("-0.999999999") && dec("-10") < dec("2"));
        let max = "999999999999999999.999999999";
        assert_eq!(dec(max).units, 10i128.pow(27) - 1);
        assert_eq!(dec(&format!("-{max}")).to_string(), format!("-{max}"));
        let only = "only digits, a leading '-' and one '.' are allowed";
        let cases = [
            ("1000000000000000000", "more than 18 integer digits"),
            ("0.0000000001", "more than 9 fractional digits"),
            ("", "empty"),
            ("+1| 1|-|.5|--1|x", "expected a digit"),
            ("1 |1e5|1,5|1-|0x10|12345x", only),
            ("1.|1.x|1.2.3|1.-5", "expected only digits after '.'"),
        ];
        for (inputs, why) in cases {
            for s in inputs.split('|') {
                let expected = Err(ConditionError::InvalidNumber(why.into()));
                assert_eq!(Decimal::parse(s), expected, "{s:?}");
            }
        }
        let msg = Decimal::parse("1e5").unwrap_err().to_string();
        assert_eq!(msg, format!("invalid number: {only}"));
    }

    #[test]
    fn evaluation_is_exact_and_fails_closed_without_short_circuit() {
        let threshold = "amount >= 10000 and beneficiary != 'X'";
        // source|metadata|expected: true, false, "missing FIELD" or "nan FIELD"
        let cases = [
            "T|amount=10000.00;beneficiary=Y|true",
            "T|amount=9999.999999999;beneficiary=Y|false",
            "T|amount=20000;beneficiary=X|false",
            "T|amount=1e9;beneficiary=Y|nan amount",
            "T|amount=10000|missing beneficiary",
            "a = 1 or b = 1 and c = 1|a=1;b=0;c=0|true",
            "a = 1 or b = 1 and c = 1|a=0;b=1;c=0|false",
            "(a = 1 or b = 1) and c = 1|a=1;b=0;c=0|false",
            "not a = 1 and not (b = 1 or c = 1)|a=0;b=0;c=0|true",
            "not a = 1 and not (b = 1 or c = 1)|a=0;b=0;c=1|false",
            "a = 1200.5 and a != 1200.51|a=1200.50|true",
            "a < -1.5 and a >= -2|a=-2|true",
            "a = '1.0'|a=1.0|true",
            "a = '1.0'|a=1|false",
            "a = 'x' or a = ''|a=X|false",
            "a = 'abc' and b = 2|a=abc;b=2.0|true",
            "a = 1||missing a",
            "a = 1 or b = 1|a=1|missing b",
            "a = 1 and b = 1|a=0|missing b",
            "(x = 1 and y = 1) or z = 1|y=1|missing x",
            "a = 'q' or b > 2 or c = 1|a=q;b= 3|nan b",
            "not b > 2|b=|nan b",
        ];
        for case in cases {
            let (src, spec, expected) = fields3(case);
            let src = if src == "T" { threshold } else { src };
            let expected = match expected.split_once(' ') {
                Some(("nan", f)) => Err(ConditionError::NotANumber(f.into())),
                Some((_, f)) => Err(ConditionError::MissingField(f.into())),
                None => Ok(expected == "true"),
            };
            let got = Condition::parse(src).unwrap().evaluate(&meta(spec));
            assert_eq!(got, expected, "{src} on {spec}");
        }
        let err = ConditionError::NotANumber("f".into()).to_string();
        assert_eq!(
            err,
            "metadata field 'f' must be a number for this condition"
        );
        let err = ConditionError::MissingField("b".into()).to_string();
        assert_eq!(err, "metadata field 'b' used by the condition is missing");
    }

    #[test]
    fn serde_round_trip_through_source_text() {
        let c = Condition::parse(" a = 1 or b = 'x' ").unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#""a = 1 or b = 'x'""#);
        assert_eq!(serde_json::from_str::<Condition>(&json).unwrap(), c);
        assert!(serde_json::from_str::<Condition>(r#""a = ""#).is_err());
        assert!(serde_json::from_str::<Condition>("12").is_err());
    }

    /// Renders with parentheses around every compound operand, so parsing gives `e` back.
    fn render(e: &Expr) -> String {
        let operand = |e: &Expr| match e {
            Expr::Compare { .. } | Expr::Not(_) => render(e),
            _ => format!("({})", render(e)),
        };
        let join = |items: &[Expr], sep| items.iter().map(operand).collect::<Vec<_>>().join(sep);
        match e {
            Expr::Compare { field, op, value } => {
                let op = ["=", "!=", "<", "<=", ">", ">="][*op as usize];
                let value = match value {
                    Literal::Number(n) => n.to_string(),
                    Literal::Text(s) => {
                        format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
                    }
                };
                format!("{field} {op} {value}")
            }
            Expr::Not(inner) => format!("not {}", operand(inner)),
            Expr::And(items) => join(items, " and "),
            Expr::Or(items) => join(items, " OR "),
        }
    }

    fn arb_decimal() -> impl Strategy<Value = Decimal> {
        let (small, max) = (
            (-4i128..=4).prop_map(|k| k * 500_000_000),
            10i128.pow(27) - 1,
        );
        prop_oneof![small, -max..=max].prop_map(|units| Decimal { units })
    }

    const FIELDS: [&str; 4] = ["a", "b.c", "d-e", "_f"];

    fn arb_field() -> impl Strategy<Value = String> {
        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string)
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let ops = prop::sample::select(vec![Eq, Ne, Lt, Le, Gt, Ge]);
        let num = (arb_field(), ops, arb_decimal().prop_map(Literal::Number));
        let (eq_ops, chars) = (prop::sample::select(vec![Eq, Ne]), "[ab'\"\\\\ é]{0,3}");
        let text = (arb_field(), eq_ops, chars.prop_map(Literal::Text));
        let leaf = prop_oneof![num, text];
        let leaf = leaf.prop_map(|(field, op, value)| Expr::Compare { field, op, value });
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    fn arb_meta() -> impl Strategy<Value = BTreeMap<String, String>> {
        let fixed9 = |d: Decimal| {
            let (abs, sign) = (d.units.unsigned_abs(), if d.units < 0 { "-" } else { "" });
            format!("{sign}{}.{:09}", abs / SCALE, abs % SCALE)
        };
        let value = prop_oneof![
            3 => arb_decimal().prop_map(|d| d.to_string()),
            3 => arb_decimal().prop_map(fixed9),
            1 => "[ab'\"\\\\ é0-9.]{0,3}",
        ];
        // Mostly present fields, so that evaluations also succeed.
        let values = prop::collection::vec(prop::option::weighted(0.97, value), FIELDS.len());
        let pairs = |vs: Vec<_>| {
            FIELDS
                .iter()
                .zip(vs)
                .filter_map(|(f, v)| Some((f.to_string(), v?)))
        };
        values.prop_map(move |vs| pairs(vs).collect())
    }

    proptest! {
        #[test]
        fn decimal_round_trips_and_orders_like_scaled_integers(
            neg: bool, int in 0u64..10u64.pow(18), frac in 0u32..10u32.pow(9), digits in 0u32..=9,
            a in arb_decimal(), b in arb_decimal(),
        ) {
            let frac = frac % 10u32.pow(digits);
            let sign = if neg { "-" } else { "" };
            let text = match digits {
                0 => format!("{sign}{int}"),
                d => format!("{sign}{int}.{frac:0w$}", w = d as usize),
            };
            let scaled = i128::from(int) * 10i128.pow(9) + i128::from(frac) * 10i128.pow(9 - digits);
            let d = Decimal::parse(&text).unwrap();
            prop_assert_eq!(d.units, if neg { -scaled } else { scaled });
            let canonical = d.to_string();
            prop_assert!(!canonical.contains('.') || !canonical.ends_with('0'));
            prop_assert_eq!(Decimal::parse(&canonical).unwrap(), d);
            let pa = Decimal::parse(&a.to_string()).unwrap();
            let pb = Decimal::parse(&b.to_string()).unwrap();
            prop_assert_eq!(&pa, &a);
            prop_assert_eq!(pa.cmp(&pb), a.units.cmp(&b.units));
        }

        #[test]
        fn rendered_ast_parses_back_and_evaluates_identically(ast in arb_expr(), meta in arb_meta()) {
            let text = render(&ast);
            prop_assume!(text.len() <= MAX_SOURCE_LEN);
            let c = Condition::parse(&text).unwrap();
            prop_assert_eq!(&c.expr, &ast);
            prop_assert_eq!(c.evaluate(&meta), eval(&ast, &meta));
            let json = serde_json::to_string(&c).unwrap();
            prop_assert_eq!(serde_json::from_str::<Condition>(&json).unwrap(), c);
        }

        #[test]
        fn parse_never_panics(
            any in "\\PC{0,200}",
            soup in "[a-c0-9 ()=<>!'\"\\\\.é-]{0,80}",
            words in prop::collection::vec(prop::sample::select(vec![
                "a", "b.c", "=", "!=", "<", ">=", "==", "and", "OR", "not", "(", ")", "1",
                "-2.5", "'x'", "\"y\"", "'", "\\", "1.", "x1",
            ]), 0..40),
        ) {
            let m = meta("a=1;b.c=x");
            for src in [any, soup, words.join(" "), words.concat()] {
                if let Ok(c) = Condition::parse(&src) {
                    let _ = c.evaluate(&m);
                    prop_assert_eq!(Condition::parse(c.source()).unwrap(), c);
                }
            }
        }
    }
}
