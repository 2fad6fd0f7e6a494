//! YAML text to a tree of nodes that remember where they came from.
//!
//! We read yaml-rust2's event stream rather than deserializing with serde
//! because the loader must name the line and column of every bad key and
//! value, reject duplicate keys (serde-style loaders keep the last one
//! silently), and tell `30` (an integer) from `"30"` (a string). The tree is
//! deliberately small: scalars keep their raw text, mappings keep key order.
//!
//! Anchors, aliases and tags are refused: a plan is short enough not to need
//! them, and half-supporting them would misread plans.
//!
//! The way back, [`Plan::to_yaml`], is in `emit.rs`; [`quote`] is shared.

use std::fmt::Write as _;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::error::PlanError;

/// Deeper nesting than this is never a plan. The limit also bounds the work
/// done on hostile input.
const MAX_DEPTH: usize = 64;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 lines are 1-based but columns 0-based.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// One YAML node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeKind {
    /// `plain` is false for quoted and block scalars: those are always
    /// strings, whatever their text looks like.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    /// The text of a non-null scalar.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// The value of `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// Whether this is a plain scalar YAML reads as null (`~`, `null`, or
    /// nothing at all, as in `key:`).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What this node is, for "expected X, got Y" messages: `string "four"`,
    /// `integer -3`, `a list`, ...
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Seq(_) => "a list".to_string(),
            NodeKind::Map(_) => "a mapping".to_string(),
            NodeKind::Scalar { text, plain } => {
                if !plain {
                    return format!("string {text:?}");
                }
                if self.is_null() {
                    return "null".to_string();
                }
                if matches!(
                    text.as_str(),
                    "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
                ) {
                    return format!("boolean {text}");
                }
                let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    return format!("integer {text}");
                }
                if text.parse::<f64>().is_ok() {
                    return format!("number {text}");
                }
                format!("string {text:?}")
            }
        }
    }
}

/// A collection being built, with the path used to name its keys in errors.
enum Frame {
    Seq {
        pos: Pos,
        path: String,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        path: String,
        entries: Vec<Entry>,
        /// The key read and waiting for its value.
        key: Option<(String, Pos)>,
    },
}

/// Builds the tree from events; stops at the first error.
struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    error: Option<PlanError>,
}

impl Builder<'_> {
    fn fail(&mut self, pos: Pos, key: String, message: String) {
        if self.error.is_none() {
            self.error = Some(PlanError::at(self.source, pos, &key, message));
        }
    }

    /// The path of the node about to be added to the open collection.
    fn child_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { path, items, .. }) => format!("{path}[{}]", items.len()),
            Some(Frame::Map { path, key, .. }) => match key {
                Some((k, _)) if path.is_empty() => k.clone(),
                Some((k, _)) => format!("{path}.{k}"),
                None => path.clone(),
            },
        }
    }

    /// Whether the next node would be a mapping key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Adds a finished node to the open collection (or makes it the root).
    fn add(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { key, entries, .. }) => {
                if let Some((key, key_pos)) = key.take() {
                    entries.push(Entry {
                        key,
                        key_pos,
                        value: node,
                    });
                }
            }
        }
    }

    fn scalar(&mut self, text: String, style: TScalarStyle, mut pos: Pos) {
        let plain = style == TScalarStyle::Plain;
        if !self.expects_key() {
            // An empty value (`key:` and nothing) is marked at whatever token
            // comes next, often on a later line; its key is the better place
            // to point at.
            if let (
                true,
                Some(Frame::Map {
                    key: Some((_, key_pos)),
                    ..
                }),
            ) = (plain && text.is_empty(), self.stack.last())
            {
                pos = *key_pos;
            }
            return self.add(Node {
                pos,
                kind: NodeKind::Scalar { text, plain },
            });
        }
        let Some(Frame::Map {
            path, entries, key, ..
        }) = self.stack.last_mut()
        else {
            return;
        };
        let dup = entries.iter().find(|e| e.key == text).map(|e| e.key_pos);
        let full = if path.is_empty() {
            text.clone()
        } else {
            format!("{path}.{text}")
        };
        *key = Some((text.clone(), pos));
        if let Some(first) = dup {
            self.fail(
                pos,
                full,
                format!(
                    "duplicate key `{text}` (first set at line {}, column {})",
                    first.line, first.column
                ),
            );
        }
    }

    fn open(&mut self, is_map: bool, pos: Pos) {
        if self.expects_key() {
            let path = self.child_path();
            return self.fail(pos, path, "mapping keys must be plain strings".to_string());
        }
        let path = self.child_path();
        if self.stack.len() >= MAX_DEPTH {
            return self.fail(
                pos,
                path,
                format!("nesting is too deep (more than {MAX_DEPTH} levels)"),
            );
        }
        self.stack.push(if is_map {
            Frame::Map {
                pos,
                path,
                entries: Vec::new(),
                key: None,
            }
        } else {
            Frame::Seq {
                pos,
                path,
                items: Vec::new(),
            }
        });
    }

    fn close(&mut self) {
        // The parser marks a block collection a little late (a block
        // mapping at the `:` after its first key), so a collection starts at
        // its first child when that comes earlier. Flow collections keep the
        // position of their `{` or `[`.
        let earliest = |pos: Pos, first: Option<Pos>| match first {
            Some(f) if (f.line, f.column) < (pos.line, pos.column) => f,
            _ => pos,
        };
        let node = match self.stack.pop() {
            Some(Frame::Seq { pos, items, .. }) => Node {
                pos: earliest(pos, items.first().map(|n| n.pos)),
                kind: NodeKind::Seq(items),
            },
            Some(Frame::Map { pos, entries, .. }) => Node {
                pos: earliest(pos, entries.first().map(|e| e.key_pos)),
                kind: NodeKind::Map(entries),
            },
            None => return,
        };
        self.add(node);
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        let unsupported = |what: &str| {
            format!("YAML {what} are not supported in plan files; write the value out in full")
        };
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        pos,
                        String::new(),
                        "a plan file holds one YAML document, found a second one".to_string(),
                    );
                }
            }
            Event::Alias(_) => {
                let path = self.child_path();
                self.fail(pos, path, unsupported("aliases (`*name`)"));
            }
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _)
                if anchor != 0 =>
            {
                let path = self.child_path();
                self.fail(pos, path, unsupported("anchors (`&name`)"));
            }
            Event::Scalar(_, _, _, Some(tag))
            | Event::SequenceStart(_, Some(tag))
            | Event::MappingStart(_, Some(tag)) => {
                let path = self.child_path();
                // The parser expands `!!` to the core schema prefix; show
                // the tag as the user wrote it.
                let handle = match tag.handle.as_str() {
                    "tag:yaml.org,2002:" => "!!",
                    h => h,
                };
                let what = format!("tags (`{handle}{}`)", tag.suffix);
                self.fail(pos, path, unsupported(&what));
            }
            Event::Scalar(text, style, _, None) => self.scalar(text, style, pos),
            Event::SequenceStart(..) => self.open(false, pos),
            Event::MappingStart(..) => self.open(true, pos),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Parses `text` into a tree. `Ok(None)` means the text holds no document
/// at all (empty, or only comments). `source` names the file in errors.
pub(crate) fn parse(text: &str, source: &str) -> Result<Option<Node>, PlanError> {
    let mut builder = Builder {
        source,
        stack: Vec::new(),
        root: None,
        documents: 0,
        error: None,
    };
    // Pull events one at a time instead of `Parser::load`, which recurses
    // once per nesting level: with our own loop, deep nesting is an error
    // rather than a stack overflow, and we stop at the first problem.
    let mut parser = Parser::new_from_str(text);
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            PlanError::at(
                source,
                Pos::from_marker(*e.marker()),
                "",
                format!("YAML syntax error: {}", e.info()),
            )
        })?;
        let end = ev == Event::StreamEnd;
        builder.on_event(ev, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
        if end {
            return Ok(builder.root);
        }
    }
}

// ---- Writing: the canonical form of a loaded plan. ----

/// A YAML double-quoted string: always quoted, so a name like `null`, `1.5`
/// or `yes` stays a string, and every character survives the round trip.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Other controls, YAML's extra line breaks (NEL, LS, PS) and the
            // BOM would be folded or dropped if written raw.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> PlanError {
        parse(text, "p.yaml").unwrap_err()
    }

    fn scalar(node: &Node) -> (&str, bool) {
        match &node.kind {
            NodeKind::Scalar { text, plain } => (text, *plain),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn keeps_positions_order_and_quoting() {
        let root = parse("b: 30\na: \"30\"\nlist:\n  - x\n  - {k: 'v'}\n", "p.yaml")
            .unwrap()
            .unwrap();
        let NodeKind::Map(entries) = &root.kind else {
            panic!("not a map")
        };
        let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "list"]);
        assert_eq!(entries[0].key_pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[0].value.pos, Pos { line: 1, column: 4 });
        assert_eq!(scalar(&entries[0].value), ("30", true));
        assert_eq!(scalar(&entries[1].value), ("30", false));
        assert_eq!(entries[0].value.describe(), "integer 30");
        assert_eq!(entries[1].value.describe(), "string \"30\"");
        let NodeKind::Seq(items) = &entries[2].value.kind else {
            panic!("not a list")
        };
        assert_eq!(items[0].pos, Pos { line: 4, column: 5 });
        assert_eq!(items[1].pos, Pos { line: 5, column: 5 });
    }

    #[test]
    fn duplicate_key_is_located_at_second() {
        let e = err("name: a\nstages:\n  - name: x\n    type: prepare\n    name: y\n");
        assert_eq!(
            e.message,
            "duplicate key `name` (first set at line 3, column 5)"
        );
        assert_eq!(e.key, "stages[0].name");
        assert_eq!((e.line, e.column), (5, 5));
    }

    #[test]
    fn syntax_error_has_scanner_position() {
        let e = err("name: a\nstages: [x\n");
        assert!(
            e.message.starts_with("YAML syntax error: "),
            "{}",
            e.message
        );
        assert_eq!(e.line, 3);
        let e = err("a: b\nc:\td\n");
        assert_eq!(
            e.message,
            "YAML syntax error: ':' must be followed by a valid YAML whitespace"
        );
        assert_eq!((e.line, e.column), (2, 4));
    }

    #[test]
    fn anchors_aliases_tags_are_refused() {
        let e = err("a: &x 1\nb: *x\n");
        assert!(e.message.contains("anchors"), "{}", e.message);
        assert_eq!((e.line, e.column, e.key.as_str()), (1, 7, "a"));
        // An alias needs an anchor, refused above; alone it is unknown.
        let e = err("a: 1\nb: *x\n");
        assert_eq!(
            e.message,
            "YAML syntax error: while parsing node, found unknown anchor"
        );
        assert_eq!((e.line, e.column), (2, 4));
        let e = err("a: !!str 1\n");
        assert!(e.message.contains("tags (`!!str`)"), "{}", e.message);
        assert_eq!((e.line, e.column, e.key.as_str()), (1, 10, "a"));
    }

    #[test]
    fn odd_structures() {
        assert_eq!(parse("", "p").unwrap(), None);
        assert_eq!(parse("# only a comment\n", "p").unwrap(), None);
        let e = err("a: 1\n---\nb: 2\n");
        assert!(e.message.contains("second one"));
        assert_eq!(e.line, 2);
        let e = err("? [a]\n: 1\n");
        assert_eq!(e.message, "mapping keys must be plain strings");
        assert_eq!((e.line, e.column), (1, 3));
        let deep = "[".repeat(200) + &"]".repeat(200);
        let e = err(&deep);
        assert_eq!(e.message, "nesting is too deep (more than 64 levels)");
        assert_eq!((e.line, e.column), (1, 65));
        let deep_block: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(err(&deep_block).message.contains("too deep"));
    }
}
