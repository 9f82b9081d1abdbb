//! A YAML document tree that remembers where every node came from, built from
//! `saphyr-parser` events with hard limits on nesting depth and alias expansion,
//! so hostile input fails fast with a located error instead of eating memory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in a source file, 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

impl Mark {
    pub const START: Mark = Mark { line: 1, col: 1 };

    fn from_span(span: &Span) -> Mark {
        Mark {
            line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            col: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar with its text; `plain` is false for quoted and block scalars,
    /// which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// An alias shares the anchored node instead of copying it; the expansion
    /// budget is charged when the tree is built, so walking it stays bounded.
    Alias(Arc<Node>),
}

/// What a plain scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// Follows aliases to the node that holds the data.
    pub fn target(&self) -> &Node {
        let mut node = self;
        while let Value::Alias(inner) = &node.value {
            node = inner;
        }
        node
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.target().value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.target().value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a scalar that reads as a string (quoted, or plain and not
    /// a number, bool or null).
    pub fn as_str(&self) -> Option<&str> {
        match self.resolve() {
            Some(Resolved::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.resolve(), Some(Resolved::Null))
    }

    pub fn resolve(&self) -> Option<Resolved<'_>> {
        match &self.target().value {
            Value::Scalar { text, plain: false } => Some(Resolved::Str(text)),
            Value::Scalar { text, plain: true } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    /// The value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node of `key` in a mapping node.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }

    /// A short description of the node's type, for error messages.
    pub fn describe(&self) -> String {
        match &self.target().value {
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
            Value::Alias(_) => "an alias".into(),
            Value::Scalar { .. } => match self.resolve() {
                Some(Resolved::Null) => "null".into(),
                Some(Resolved::Bool(b)) => format!("boolean `{b}`"),
                Some(Resolved::Int(i)) => format!("integer `{i}`"),
                Some(Resolved::Float(f)) => format!("number `{f}`"),
                _ => "a string".into(),
            },
        }
    }
}

pub(crate) fn resolve_plain(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Resolved::Str(text);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Resolved::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Resolved::Int(i);
        }
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(i) => Resolved::Int(i),
            // Too large for i64 is still a number, not a string.
            Err(_) => Resolved::Float(text.parse().unwrap_or(f64::NAN)),
        };
    }
    let is_float = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if is_float {
        if let Ok(f) = text.parse::<f64>() {
            return Resolved::Float(f);
        }
    }
    Resolved::Str(text)
}

/// Budgets that keep a hostile document cheap to reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest allowed nesting of lists and mappings.
    pub max_depth: usize,
    /// Most nodes a document may reach through aliases, counted as if expanded.
    pub max_alias_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_alias_nodes: 100_000,
        }
    }
}

/// The core schema's scalar tags, and the values each accepts.
fn scalar_tag<'t>(
    tag: Option<&'t saphyr_parser::Tag>,
    text: &str,
    mark: Mark,
) -> Result<Option<&'t str>, LoadError> {
    let Some(tag) = tag else {
        return Ok(None);
    };
    if !tag.is_yaml_core_schema() {
        return Err(unsupported_tag(tag, mark));
    }
    let fits = match tag.suffix.as_str() {
        "str" => true,
        "null" => matches!(text, "" | "~" | "null" | "Null" | "NULL"),
        "bool" => matches!(text, "true" | "True" | "TRUE" | "false" | "False" | "FALSE"),
        "int" => text.parse::<i64>().is_ok(),
        "float" => {
            text.parse::<f64>().is_ok()
                || matches!(
                    text.trim_start_matches(['+', '-']),
                    ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
                )
        }
        _ => return Err(unsupported_tag(tag, mark)),
    };
    if !fits {
        return Err(LoadError {
            mark,
            message: format!(
                "`{}` is not a value of the tag `!!{}`",
                crate::model::validate::escape_controls(text),
                tag.suffix
            ),
        });
    }
    Ok(Some(tag.suffix.as_str()))
}

fn unsupported_tag(tag: &saphyr_parser::Tag, mark: Mark) -> LoadError {
    let shown = if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    LoadError {
        mark,
        message: format!(
            "the tag `{}` is not supported: accord reads plain YAML, whose only tags are the core schema's (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map)",
            crate::model::validate::escape_controls(&shown)
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub mark: Mark,
    pub message: String,
}

/// One `---`-separated document of a file: its root node (None when empty).
pub struct Document {
    pub mark: Mark,
    pub root: Option<Node>,
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
        size: usize,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        size: usize,
    },
}

/// Parses every document of `text`, stopping at the first syntax error (YAML
/// cannot be resynchronised reliably after one).
pub fn load(text: &str, limits: Limits) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Anchored nodes with the number of nodes each expands to.
    let mut anchors: HashMap<usize, (Arc<Node>, usize)> = HashMap::new();
    let mut alias_budget = limits.max_alias_nodes;
    let mut doc_mark = Mark::START;
    let mut root: Option<Node> = None;

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| LoadError {
            mark: Mark {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                col: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            },
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let mark = Mark::from_span(&span);
        // A finished node with its anchor id and expanded size.
        let finished: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                doc_mark = mark;
                anchors.clear();
                alias_budget = limits.max_alias_nodes;
                None
            }
            Event::DocumentEnd => {
                docs.push(Document {
                    mark: doc_mark,
                    root: root.take(),
                });
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let text = match text {
                    Cow::Borrowed(s) => s.to_owned(),
                    Cow::Owned(s) => s,
                };
                let plain = match scalar_tag(tag.as_deref(), &text, mark)? {
                    // `!!str` makes a string of what would read as another type.
                    Some("str") => false,
                    Some(_) => true,
                    None => matches!(style, ScalarStyle::Plain),
                };
                Some((
                    Node {
                        mark,
                        value: Value::Scalar { text, plain },
                    },
                    anchor,
                    1,
                ))
            }
            Event::Alias(id) => {
                let (node, size) = anchors.get(&id).cloned().ok_or_else(|| LoadError {
                    mark,
                    message: "alias refers to an unknown anchor".into(),
                })?;
                alias_budget = alias_budget.checked_sub(size).ok_or_else(|| LoadError {
                    mark,
                    message: format!(
                        "aliases expand to more than {} nodes; refusing a possible alias bomb",
                        limits.max_alias_nodes
                    ),
                })?;
                Some((
                    Node {
                        mark,
                        value: Value::Alias(node),
                    },
                    0,
                    size,
                ))
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                let expected = if matches!(event, Event::SequenceStart(..)) {
                    "seq"
                } else {
                    "map"
                };
                if let Some(tag) = tag.as_deref() {
                    if !(tag.is_yaml_core_schema() && tag.suffix == expected) {
                        return Err(unsupported_tag(tag, mark));
                    }
                }
                if stack.len() >= limits.max_depth {
                    return Err(LoadError {
                        mark,
                        message: format!("nesting deeper than {} levels", limits.max_depth),
                    });
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        mark,
                        anchor,
                        items: Vec::new(),
                        size: 1,
                    }
                } else {
                    Frame::Map {
                        mark,
                        anchor,
                        entries: Vec::new(),
                        pending_key: None,
                        size: 1,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    mark,
                    anchor,
                    items,
                    size,
                }) => Some((
                    Node {
                        mark,
                        value: Value::Seq(items),
                    },
                    anchor,
                    size,
                )),
                Some(Frame::Map {
                    mark,
                    anchor,
                    entries,
                    size,
                    ..
                }) => Some((
                    Node {
                        mark,
                        value: Value::Map(entries),
                    },
                    anchor,
                    size,
                )),
                None => None,
            },
        };
        let Some((node, anchor, size)) = finished else {
            continue;
        };
        let node = if anchor > 0 {
            let shared = Arc::new(node);
            anchors.insert(anchor, (shared.clone(), size));
            Node {
                mark: shared.mark,
                value: Value::Alias(shared),
            }
        } else {
            node
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq {
                items, size: total, ..
            }) => {
                *total += size;
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                pending_key,
                size: total,
                ..
            }) => {
                *total += size;
                match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => {
                        if let Some(name) = key.as_str() {
                            if entries.iter().any(|(k, _)| k.as_str() == Some(name)) {
                                return Err(LoadError {
                                    mark: key.mark,
                                    message: format!("duplicate key `{name}`"),
                                });
                            }
                        }
                        entries.push((key, node));
                    }
                }
            }
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let docs = load(text, Limits::default()).expect("valid yaml");
        docs.into_iter()
            .next()
            .and_then(|d| d.root)
            .expect("a root")
    }

    #[test]
    fn nodes_carry_one_based_line_and_column() {
        let root = one("a: 1\nlist:\n  - x\n  - y\n");
        let (key, value) = root.entry("list").expect("list");
        assert_eq!(key.mark, Mark { line: 2, col: 1 });
        let items = value.as_seq().expect("seq");
        assert_eq!(items[1].mark, Mark { line: 4, col: 5 });
    }

    #[test]
    fn plain_scalars_resolve_by_the_core_schema() {
        let root = one("a: 12\nb: true\nc: ~\nd: '12'\ne: x12\nf: 1.5\n");
        assert_eq!(
            root.get("a").and_then(Node::resolve),
            Some(Resolved::Int(12))
        );
        assert_eq!(
            root.get("b").and_then(Node::resolve),
            Some(Resolved::Bool(true))
        );
        assert!(root.get("c").is_some_and(Node::is_null));
        assert_eq!(root.get("d").and_then(Node::as_str), Some("12"));
        assert_eq!(root.get("e").and_then(Node::as_str), Some("x12"));
        assert_eq!(
            root.get("f").and_then(Node::resolve),
            Some(Resolved::Float(1.5))
        );
    }

    #[test]
    fn several_documents_are_returned_in_order() {
        let docs = load("a: 1\n---\nb: 2\n---\n", Limits::default()).expect("valid");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].mark.line, 2);
        assert!(docs[2].root.as_ref().is_none_or(Node::is_null));
    }

    #[test]
    fn alias_bomb_is_refused_within_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load(&text, Limits::default()).err().expect("refused");
        assert!(err.message.contains("alias bomb"), "{}", err.message);
    }

    #[test]
    fn small_aliases_are_shared() {
        let root = one("base: &r [a:b, c:d]\nother: *r\n");
        assert_eq!(
            root.get("other").and_then(Node::as_seq).map(<[_]>::len),
            Some(2)
        );
    }

    #[test]
    fn deep_nesting_is_refused_at_the_limit() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = load(&text, Limits::default()).err().expect("refused");
        assert!(
            err.message.contains("nesting deeper than 64"),
            "{}",
            err.message
        );
        assert_eq!(err.mark, Mark { line: 1, col: 65 });
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = load("a: 1\nb: 2\na: 3\n", Limits::default())
            .err()
            .expect("dup");
        assert_eq!(err.mark, Mark { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = load("a: [1, 2\nb: 3\n", Limits::default())
            .err()
            .expect("bad");
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.mark.line >= 1);
    }
}
