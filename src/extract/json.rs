//! Key source: JSON paths over a body, read by a targeted streaming scan.
//!
//! The scanner walks the text once, left to right, with an explicit stack
//! on the heap (no recursion on input), and materialises only the values
//! that sit at one of the requested paths: no DOM, no allocation per field.
//! Every path of one body is answered by the same walk, so a body is read
//! once however many rules look at it.
//!
//! The whole text is validated as it is walked: a document that is not JSON
//! (including trailing garbage) is [`Problem::MalformedJson`], one nested
//! deeper than [`MAX_DEPTH`] is [`Problem::TooDeep`], and a `\u` escape that
//! names a lone surrogate is [`Problem::InvalidUtf8`] (it is not Unicode
//! text). Callers hand in text that is already valid UTF-8.
//!
//! Strings and numbers at a path become values (a number exactly as written
//! in the JSON text, so `1.50` stays `1.50`); objects, arrays, `null` and
//! booleans at a path are ignored, though the walk still descends into them
//! for paths that go deeper.

use std::ops::Range;

use crate::config::{JsonPath, JsonStep};

use super::Problem;

/// Deepest nesting of arrays and objects the scanner follows. Business
/// documents stay within a few dozen levels; the bound keeps the stack of a
/// hostile body (`[[[[…`) small, and matches `serde_json`'s default.
pub(super) const MAX_DEPTH: usize = 128;

/// Walks `text` once and calls `on_value(path_index, value)` for every
/// string or number found at one of `paths`, in document order.
///
/// Values found before a problem is detected have already been reported;
/// callers that need all-or-nothing collect and discard on `Err`.
pub(super) fn scan(
    text: &str,
    paths: &[&JsonPath],
    mut on_value: impl FnMut(usize, &str),
) -> Result<(), Problem> {
    let count = u32::try_from(paths.len()).unwrap_or(u32::MAX);
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        paths,
        live: (0..count).collect(),
        stack: Vec::new(),
        scratch: String::new(),
    };
    scanner.run(&mut on_value)
}

/// What kind of container a stack frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// One open array or object.
#[derive(Debug)]
struct Frame {
    kind: Container,
    /// Paths whose steps matched all the way down to this container, as a
    /// range of `Scanner::live`.
    live: Range<usize>,
    /// Index of the element being read (arrays only).
    index: usize,
}

/// The state of one walk.
struct Scanner<'t, 'p> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    paths: &'p [&'p JsonPath],
    /// A stack of path indices: each frame's live paths directly follow its
    /// parent's, and the value being read owns the tail after the top frame.
    /// Grows with depth only while paths stay alive, never per field.
    live: Vec<u32>,
    stack: Vec<Frame>,
    /// Reused buffer for strings that contain escapes.
    scratch: String,
}

/// Where a string's content is after it was read.
enum StrText {
    /// A slice of the input (no escapes).
    Raw(Range<usize>),
    /// Unescaped into `Scanner::scratch`.
    Scratch,
    /// Validated but not kept.
    Skipped,
}

/// A step to the next child of a container.
enum Step<'a> {
    Member(&'a str),
    Element(usize),
}

impl Scanner<'_, '_> {
    fn run(&mut self, on_value: &mut impl FnMut(usize, &str)) -> Result<(), Problem> {
        // The value being read lives in `self.live[value_live]`.
        let mut value_live = 0..self.live.len();
        loop {
            self.skip_whitespace();
            let depth = self.stack.len();
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    self.pos += 1;
                    if depth >= MAX_DEPTH {
                        return Err(Problem::TooDeep);
                    }
                    let kind = if open == b'{' {
                        Container::Object
                    } else {
                        Container::Array
                    };
                    self.stack.push(Frame {
                        kind,
                        live: value_live.clone(),
                        index: 0,
                    });
                    self.skip_whitespace();
                    let close = if kind == Container::Object {
                        b'}'
                    } else {
                        b']'
                    };
                    if self.peek()? == close {
                        self.pos += 1;
                        self.stack.pop();
                    } else {
                        value_live = self.enter_child(kind, 0)?;
                        continue;
                    }
                }
                b'"' => {
                    let wanted = self.wanted_here(&value_live, depth);
                    let content = self.string(wanted)?;
                    if wanted {
                        let value = self.content(&content)?;
                        self.report(&value_live, depth, value, on_value);
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let number = self.number()?;
                    if let Some(value) = self.text.get(number) {
                        self.report(&value_live, depth, value, on_value);
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return Err(Problem::MalformedJson),
            }
            // A value is complete: find the next one, closing containers.
            match self.after_value()? {
                Some(next) => value_live = next,
                None => return Ok(()),
            }
        }
    }

    /// After a complete value: consumes `,` (returning the next child's
    /// live paths) or closing brackets; `None` when the document ended.
    fn after_value(&mut self) -> Result<Option<Range<usize>>, Problem> {
        loop {
            self.skip_whitespace();
            let Some(kind) = self.stack.last().map(|top| top.kind) else {
                return if self.pos == self.bytes.len() {
                    Ok(None)
                } else {
                    Err(Problem::MalformedJson)
                };
            };
            match (kind, self.peek()?) {
                (_, b',') => {
                    self.pos += 1;
                    let index = match self.stack.last_mut() {
                        Some(top) => {
                            top.index += 1;
                            top.index
                        }
                        None => return Err(Problem::MalformedJson),
                    };
                    self.skip_whitespace();
                    return self.enter_child(kind, index).map(Some);
                }
                (Container::Object, b'}') | (Container::Array, b']') => {
                    self.pos += 1;
                    self.stack.pop();
                }
                _ => return Err(Problem::MalformedJson),
            }
        }
    }

    /// Positioned at the start of the next child of the top container (a
    /// member's key, or an element): reads the key and its `:` for objects,
    /// and pushes the paths that stay alive into that child.
    fn enter_child(&mut self, kind: Container, index: usize) -> Result<Range<usize>, Problem> {
        let (parent, depth) = match self.stack.last() {
            Some(top) => (top.live.clone(), self.stack.len() - 1),
            None => return Err(Problem::MalformedJson),
        };
        self.live.truncate(parent.end);
        let wanted = !parent.is_empty();
        if kind == Container::Object {
            if self.peek()? != b'"' {
                return Err(Problem::MalformedJson);
            }
            let key = self.string(wanted)?;
            self.skip_whitespace();
            if self.peek()? != b':' {
                return Err(Problem::MalformedJson);
            }
            self.pos += 1;
            if wanted {
                let key = match key {
                    StrText::Raw(range) => self.text.get(range),
                    StrText::Scratch => Some(self.scratch.as_str()),
                    StrText::Skipped => None,
                };
                let key = key.ok_or(Problem::MalformedJson)?;
                keep_alive(
                    self.paths,
                    &mut self.live,
                    parent.clone(),
                    depth,
                    Step::Member(key),
                );
            }
        } else if wanted {
            keep_alive(
                self.paths,
                &mut self.live,
                parent.clone(),
                depth,
                Step::Element(index),
            );
        }
        Ok(parent.end..self.live.len())
    }

    /// True when some live path ends at this value.
    fn wanted_here(&self, value_live: &Range<usize>, depth: usize) -> bool {
        self.live
            .get(value_live.clone())
            .unwrap_or_default()
            .iter()
            .any(|&p| path_len(self.paths, p) == Some(depth))
    }

    /// Reports `value` for every live path that ends at this value.
    fn report(
        &self,
        value_live: &Range<usize>,
        depth: usize,
        value: &str,
        on_value: &mut impl FnMut(usize, &str),
    ) {
        for &p in self.live.get(value_live.clone()).unwrap_or_default() {
            if path_len(self.paths, p) == Some(depth) {
                on_value(p as usize, value);
            }
        }
    }

    /// The text of a string read by [`Self::string`].
    fn content(&self, content: &StrText) -> Result<&str, Problem> {
        match content {
            StrText::Raw(range) => self.text.get(range.clone()).ok_or(Problem::MalformedJson),
            StrText::Scratch => Ok(self.scratch.as_str()),
            StrText::Skipped => Err(Problem::MalformedJson),
        }
    }

    fn peek(&self) -> Result<u8, Problem> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or(Problem::MalformedJson)
    }

    fn next(&mut self) -> Result<u8, Problem> {
        let byte = self.peek()?;
        self.pos += 1;
        Ok(byte)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Problem> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(Problem::MalformedJson)
        }
    }

    /// Reads a number, returning its text range.
    fn number(&mut self) -> Result<Range<usize>, Problem> {
        let start = self.pos;
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return Err(Problem::MalformedJson),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.peek()?.is_ascii_digit() {
                return Err(Problem::MalformedJson);
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let b'+' | b'-' = self.peek()? {
                self.pos += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return Err(Problem::MalformedJson);
            }
            self.digits();
        }
        Ok(start..self.pos)
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    /// Reads a string starting at its opening quote, validating escapes.
    /// With `keep`, its content is returned as a slice of the input, or
    /// unescaped into `scratch` when it has escapes.
    fn string(&mut self, keep: bool) -> Result<StrText, Problem> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        // Fast path: no escapes.
        loop {
            match self.next()? {
                b'"' => {
                    return Ok(if keep {
                        StrText::Raw(start..self.pos - 1)
                    } else {
                        StrText::Skipped
                    });
                }
                b'\\' => {
                    self.pos -= 1;
                    break;
                }
                0x00..=0x1f => return Err(Problem::MalformedJson),
                _ => {}
            }
        }
        // Slow path: unescape into scratch (only when kept).
        self.scratch.clear();
        if keep {
            let before = self
                .text
                .get(start..self.pos)
                .ok_or(Problem::MalformedJson)?;
            self.scratch.push_str(before);
        }
        let mut run = self.pos;
        loop {
            match self.next()? {
                b'"' => {
                    if keep {
                        self.flush(run..self.pos - 1)?;
                        return Ok(StrText::Scratch);
                    }
                    return Ok(StrText::Skipped);
                }
                b'\\' => {
                    if keep {
                        self.flush(run..self.pos - 1)?;
                    }
                    let ch = self.escape()?;
                    if keep {
                        self.scratch.push(ch);
                    }
                    run = self.pos;
                }
                0x00..=0x1f => return Err(Problem::MalformedJson),
                _ => {}
            }
        }
    }

    /// Copies an unescaped run of the input into `scratch`.
    fn flush(&mut self, run: Range<usize>) -> Result<(), Problem> {
        let text = self.text.get(run).ok_or(Problem::MalformedJson)?;
        self.scratch.push_str(text);
        Ok(())
    }

    /// Reads the escape after a backslash.
    fn escape(&mut self) -> Result<char, Problem> {
        Ok(match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(Problem::InvalidUtf8);
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(Problem::InvalidUtf8);
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code).ok_or(Problem::InvalidUtf8)?
                    }
                    0xDC00..=0xDFFF => return Err(Problem::InvalidUtf8),
                    _ => char::from_u32(first).ok_or(Problem::InvalidUtf8)?,
                }
            }
            _ => return Err(Problem::MalformedJson),
        })
    }

    fn hex4(&mut self) -> Result<u32, Problem> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = char::from(self.next()?)
                .to_digit(16)
                .ok_or(Problem::MalformedJson)?;
            code = code * 16 + digit;
        }
        Ok(code)
    }
}

/// Appends to `live` the paths of `live[parent]` whose step at `depth`
/// accepts `step`. In place: the stack only grows to the deepest set of
/// live paths seen and is reused from then on.
fn keep_alive(
    paths: &[&JsonPath],
    live: &mut Vec<u32>,
    parent: Range<usize>,
    depth: usize,
    step: Step<'_>,
) {
    for slot in parent {
        let Some(p) = live.get(slot).copied() else {
            continue;
        };
        let Some(path) = paths.get(p as usize) else {
            continue;
        };
        let accepts = match (path.steps.get(depth), &step) {
            (Some(JsonStep::Wildcard), _) => true,
            (Some(JsonStep::Field(name)), Step::Member(key)) => name == key,
            (Some(JsonStep::Index(i)), Step::Element(index)) => i == index,
            _ => false,
        };
        if accepts {
            live.push(p);
        }
    }
}

/// Number of steps of path `p`.
fn path_len(paths: &[&JsonPath], p: u32) -> Option<usize> {
    paths.get(p as usize).map(|path| path.steps.len())
}
