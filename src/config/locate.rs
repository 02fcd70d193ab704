//! Where each field of the routes file is written. serde reports positions
//! only for the mistakes it finds itself; the validator's mistakes (an
//! unknown milestone, two overlapping routes …) are found on the typed raw
//! values, so the same text is read a second time as YAML events and every
//! field path (`routes[2].keys.order`) is mapped to its line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Field path → position of its value (and of its key, for mapping entries).
#[derive(Debug, Default)]
pub struct Locator {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Locator {
    /// Reads `text`; a document the YAML parser rejects yields an empty
    /// locator (serde will have reported the syntax error already).
    pub fn new(text: &str) -> Locator {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Locator::default();
        }
        builder.locator
    }

    /// Where `field` is written: its value, else its key, else the nearest
    /// enclosing field that is written (a missing field points at the
    /// mapping that lacks it).
    pub fn find(&self, field: &str) -> Option<Position> {
        let mut path = field;
        loop {
            if let Some(found) = self.values.get(path).or_else(|| self.keys.get(path)) {
                return Some(*found);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }

    /// Where the key of the mapping entry `field` is written (`order:` in
    /// `keys: { order: … }`), falling back to [`Locator::find`].
    pub fn find_key(&self, field: &str) -> Option<Position> {
        self.keys.get(field).copied().or_else(|| self.find(field))
    }
}

/// `routes[2].keys` → `routes[2]` → `routes` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(cut) => &path[..cut],
        None => "",
    }
}

/// `parent` + `.key`, or `key` at the top level.
fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

// === impl Builder ===

/// An open mapping or sequence while the events stream by.
#[derive(Debug)]
enum Frame {
    Mapping {
        path: String,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<String>,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    locator: Locator,
}

impl Builder {
    /// A node starts at `at`: returns its path, or `None` when it is a
    /// mapping key (recorded as the pending key instead).
    fn begin_node(&mut self, at: Position, scalar: Option<&str>) -> Option<String> {
        // The parser marks a block mapping or sequence where it recognised
        // it (after its first key), so a container is placed no later than
        // its first child.
        if let Some(Frame::Mapping { path, .. } | Frame::Sequence { path, .. }) = self.stack.last()
        {
            if let Some(start) = self.locator.values.get_mut(path.as_str()) {
                if (at.line, at.column) < (start.line, start.column) {
                    *start = at;
                }
            }
        }
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => Some(format!("{path}[{next}]")),
            Some(Frame::Mapping {
                path,
                key: Some(key),
            }) => Some(child(path, key)),
            Some(Frame::Mapping { path, key }) => {
                // A key: complex (non-scalar) keys are not used by the
                // routes file, they get a placeholder name.
                let name = scalar.unwrap_or("?").to_owned();
                self.locator.keys.insert(child(path, &name), at);
                *key = Some(name);
                None
            }
        }
    }

    /// A value node ended: the parent moves on to its next entry.
    fn end_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Sequence { next, .. }) => *next += 1,
            Some(Frame::Mapping { key, .. }) => *key = None,
            None => {}
        }
    }

    fn open(&mut self, at: Position, sequence: bool) {
        let path = match self.begin_node(at, None) {
            Some(path) => {
                self.locator.values.insert(path.clone(), at);
                path
            }
            // A mapping or sequence used as a key: its children are not
            // addressable by a field path.
            None => "?".to_owned(),
        };
        self.stack.push(if sequence {
            Frame::Sequence { path, next: 0 }
        } else {
            Frame::Mapping { path, key: None }
        });
    }

    fn close(&mut self) {
        if let Some(Frame::Mapping { path, .. } | Frame::Sequence { path, .. }) = self.stack.pop() {
            if path != "?" {
                self.end_value();
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match event {
            Event::Scalar(text, ..) => {
                if let Some(path) = self.begin_node(at, Some(&text)) {
                    self.locator.values.insert(path, at);
                    self.end_value();
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.begin_node(at, None) {
                    self.locator.values.insert(path, at);
                    self.end_value();
                }
            }
            Event::SequenceStart(..) => self.open(at, true),
            Event::MappingStart(..) => self.open(at, false),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
systems: [erp, wms]
routes:
  - name: a
    match: { method: POST, path: /a }
    keys:
      order: { header: X-Order }
  - name: b
";

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn block_and_flow_fields_are_found_at_their_values() {
        let locator = Locator::new(TEXT);
        assert_eq!(locator.find("systems[1]"), at(1, 16));
        assert_eq!(locator.find("routes[0].name"), at(3, 11));
        assert_eq!(locator.find("routes[0].match.path"), at(4, 34));
        assert_eq!(locator.find("routes[0].keys.order.header"), at(6, 24));
        assert_eq!(locator.find("routes[1].name"), at(7, 11));
    }

    #[test]
    fn a_mapping_entry_key_is_found_where_the_key_is_written() {
        let locator = Locator::new(TEXT);
        assert_eq!(locator.find_key("routes[0].keys.order"), at(6, 7));
    }

    #[test]
    fn a_missing_field_points_at_the_nearest_written_parent() {
        let locator = Locator::new(TEXT);
        assert_eq!(
            locator.find("routes[1].match.path"),
            locator.find("routes[1]")
        );
        assert_eq!(locator.find("routes[1]"), at(7, 5));
    }

    #[test]
    fn unparsable_text_locates_nothing() {
        assert_eq!(Locator::new("a: [").find("a"), None);
    }
}
