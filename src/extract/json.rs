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

// === impl Scanner ===

impl Scanner<'_, '_> {
    fn run(&mut self, on_value: &mut impl FnMut(usize, &str)) -> Result<(), Problem> {
        // The paths alive at the value being read: `self.live[value_live]`.
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

// === path matching ===

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

#[cfg(test)]
mod tests {
    use super::super::testkit::json_path;
    use super::*;

    /// Values at each path, as `(path index, value)`, or the problem.
    fn scan_all(text: &str, paths: &[&str]) -> Result<Vec<(usize, String)>, Problem> {
        let parsed: Vec<JsonPath> = paths.iter().map(|p| json_path(p)).collect();
        let refs: Vec<&JsonPath> = parsed.iter().collect();
        let mut found = Vec::new();
        scan(text, &refs, |p, v| found.push((p, v.to_owned())))?;
        Ok(found)
    }

    /// Values at one path, or the problem.
    fn values(text: &str, path: &str) -> Result<Vec<String>, Problem> {
        scan_all(text, &[path]).map(|found| found.into_iter().map(|(_, v)| v).collect())
    }

    #[test]
    fn field_path_finds_a_nested_string() {
        let doc = r#"{"a":1,"order":{"id":"SO-1","lines":[{"sku":"X"}]},"z":null}"#;
        assert_eq!(values(doc, "$.order.id"), Ok(vec!["SO-1".to_owned()]));
        assert_eq!(
            values(doc, "$.order.lines[0].sku"),
            Ok(vec!["X".to_owned()])
        );
        assert_eq!(values(doc, "$.order.missing"), Ok(vec![]));
        assert_eq!(values(doc, "$.a.b"), Ok(vec![]));
    }

    #[test]
    fn wildcard_over_a_batch_array_gives_every_element() {
        let doc = r#"{"orders":[{"id":"SO-1"},{"id":"SO-2"},{"no_id":true},{"id":"SO-3"}]}"#;
        assert_eq!(
            values(doc, "$.orders[*].id"),
            Ok(vec!["SO-1".into(), "SO-2".into(), "SO-3".into()])
        );
    }

    #[test]
    fn wildcard_over_an_object_gives_every_member_value() {
        let doc = r#"{"refs":{"a":"R1","b":"R2","c":{"x":"deeper"}}}"#;
        assert_eq!(values(doc, "$.refs[*]"), Ok(vec!["R1".into(), "R2".into()]));
        assert_eq!(values(doc, "$.refs.*.x"), Ok(vec!["deeper".into()]));
    }

    #[test]
    fn index_path_picks_one_element_of_nested_arrays() {
        let doc = r#"[[1,2],[3,[4,"five"]],[]]"#;
        assert_eq!(values(doc, "$[1][1][1]"), Ok(vec!["five".into()]));
        assert_eq!(values(doc, "$[1][0]"), Ok(vec!["3".into()]));
        assert_eq!(values(doc, "$[*][0]"), Ok(vec!["1".into(), "3".into()]));
        assert_eq!(values(doc, "$[3]"), Ok(vec![]));
    }

    #[test]
    fn numbers_are_keys_exactly_as_written() {
        let doc = r#"{"n":[0,-7,12345678901234567890123,1.50,-0.0e+10,6E-3,2e5]}"#;
        assert_eq!(
            values(doc, "$.n[*]"),
            Ok([
                "0",
                "-7",
                "12345678901234567890123",
                "1.50",
                "-0.0e+10",
                "6E-3",
                "2e5"
            ]
            .map(String::from)
            .to_vec())
        );
    }

    #[test]
    fn objects_arrays_nulls_and_booleans_are_not_values() {
        let doc = r#"{"v":[{"a":1},[1],null,true,false,"s",2]}"#;
        assert_eq!(values(doc, "$.v[*]"), Ok(vec!["s".into(), "2".into()]));
    }

    #[test]
    fn root_path_reads_a_scalar_document() {
        assert_eq!(values(r#" "SO-1" "#, "$"), Ok(vec!["SO-1".into()]));
        assert_eq!(values("42", "$"), Ok(vec!["42".into()]));
        assert_eq!(values("{}", "$"), Ok(vec![]));
    }

    #[test]
    fn escapes_are_decoded_in_values() {
        let doc = r#"{"v":"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00 end"}"#;
        assert_eq!(
            values(doc, "$.v"),
            Ok(vec!["a\"b\\c/d\u{8}\u{c}\n\r\tAé€😀 end".into()])
        );
    }

    #[test]
    fn escaped_member_names_match_their_decoded_field() {
        let doc = r#"{"order\u0020id":"SO-1","\u006frder":"SO-2","a\"b":"SO-3"}"#;
        assert_eq!(values(doc, "$['order id']"), Ok(vec!["SO-1".into()]));
        assert_eq!(values(doc, "$.order"), Ok(vec!["SO-2".into()]));
        assert_eq!(values(doc, "$['a\"b']"), Ok(vec!["SO-3".into()]));
    }

    #[test]
    fn raw_unicode_passes_through_values_and_names() {
        let doc = "{\"kündenr\":\"Müller-✓\"}";
        assert_eq!(values(doc, "$.kündenr"), Ok(vec!["Müller-✓".into()]));
    }

    #[test]
    fn whitespace_between_every_token_is_allowed() {
        let doc = " \n\t{ \r\n\"a\" \t: [ 1 , { \"b\" : \"x\" } ] , \"c\" : true } \n";
        assert_eq!(values(doc, "$.a[1].b"), Ok(vec!["x".into()]));
        assert_eq!(values(doc, "$.a[0]"), Ok(vec!["1".into()]));
    }

    #[test]
    fn several_paths_are_answered_by_one_scan_in_document_order() {
        let doc = r#"{"ref":"SO-1","shipments":[{"id":"SH-1","tracking":"1Z1"},{"id":"SH-2"}]}"#;
        let found = scan_all(
            doc,
            &["$.shipments[*].id", "$.ref", "$.shipments[*].tracking"],
        );
        assert_eq!(
            found,
            Ok(vec![
                (1, "SO-1".into()),
                (0, "SH-1".into()),
                (2, "1Z1".into()),
                (0, "SH-2".into()),
            ])
        );
    }

    #[test]
    fn the_same_path_twice_reports_each_match_for_both() {
        let found = scan_all(r#"{"a":"x"}"#, &["$.a", "$.a"]);
        assert_eq!(found, Ok(vec![(0, "x".into()), (1, "x".into())]));
    }

    #[test]
    fn malformed_documents_are_refused() {
        let bad = [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "[1 2]",
            "[1}",
            "{\"a\":1]",
            "\"unterminated",
            "\"tab\tinside\"",
            "\"bad escape \\x\"",
            "\"short \\u12\"",
            "\"hex \\u12G4\"",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "NaN",
            "tru",
            "nul",
            "falsey",
            "{} {}",
            "{}x",
            "[1]]",
            "'single'",
        ];
        for doc in bad {
            assert_eq!(
                scan_all(doc, &["$.a"]).err(),
                Some(Problem::MalformedJson),
                "{doc:?}"
            );
        }
    }

    #[test]
    fn malformed_document_is_refused_even_when_no_path_looks_at_the_bad_part() {
        assert_eq!(
            values(r#"{"a":"x","b":[1,2,}"#, "$.a"),
            Err(Problem::MalformedJson)
        );
        assert_eq!(
            values(r#"{"a":"x","b":"\q"}"#, "$.a"),
            Err(Problem::MalformedJson)
        );
    }

    #[test]
    fn lone_surrogates_are_not_unicode_text() {
        for doc in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800x""#,
        ] {
            assert_eq!(values(doc, "$"), Err(Problem::InvalidUtf8), "{doc}");
        }
        // Also when the string is not at a requested path.
        assert_eq!(
            values(r#"{"a":"\ud800"}"#, "$.b"),
            Err(Problem::InvalidUtf8)
        );
    }

    #[test]
    fn ten_thousand_nested_arrays_are_too_deep_without_overflowing_the_stack() {
        let doc = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(values(&doc, "$[0]"), Err(Problem::TooDeep));
    }

    #[test]
    fn ten_thousand_nested_objects_are_too_deep_without_overflowing_the_stack() {
        let doc = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert_eq!(values(&doc, "$.a.a"), Err(Problem::TooDeep));
        // Unclosed, as a hostile body would be: still too deep, not malformed.
        let open = r#"{"a":"#.repeat(10_000);
        assert_eq!(values(&open, "$.a"), Err(Problem::TooDeep));
    }

    #[test]
    fn nesting_up_to_the_bound_is_read() {
        let path = format!("${}", ".a".repeat(MAX_DEPTH));
        let doc = format!(
            "{}\"deep\"{}",
            r#"{"a":"#.repeat(MAX_DEPTH),
            "}".repeat(MAX_DEPTH)
        );
        assert_eq!(values(&doc, &path), Ok(vec!["deep".into()]));
        let deeper = format!("[{doc}]");
        assert_eq!(values(&deeper, "$"), Err(Problem::TooDeep));
    }

    #[test]
    fn empty_containers_and_empty_strings_are_handled() {
        let doc = r#"{"":"empty name","a":[],"b":{},"c":""}"#;
        assert_eq!(values(doc, "$['']"), Ok(vec!["empty name".into()]));
        assert_eq!(values(doc, "$.a[*]"), Ok(vec![]));
        assert_eq!(values(doc, "$.c"), Ok(vec!["".into()]));
    }

    // === differential tests against serde_json ===

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const NAMES: [&str; 4] = ["a", "b", "id", "k\\u0065y"];

    /// A random document of bounded depth, with integers only (their text
    /// round-trips through serde_json) and distinct member names.
    fn document(rng: &mut Rng, depth: u32, out: &mut String) {
        let pick = if depth == 0 {
            rng.below(4)
        } else {
            rng.below(6)
        };
        match pick {
            0 => out.push_str(
                ["\"x\"", "\"\\u00e9\\n\"", "\"\"", "\"\\ud83d\\ude00\""][rng.below(4) as usize],
            ),
            1 => out.push_str(&(rng.below(2000) as i64 - 1000).to_string()),
            2 => out.push_str(["true", "false"][rng.below(2) as usize]),
            3 => out.push_str("null"),
            4 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(" ,");
                    }
                    document(rng, depth - 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push_str("{ ");
                let count = rng.below(5) as usize;
                for (i, name) in NAMES.iter().take(count).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"{name}\" :"));
                    document(rng, depth - 1, out);
                }
                out.push('}');
            }
        }
    }

    /// Values at `path` in `value`, the slow obvious way.
    fn reference(value: &serde_json::Value, steps: &[JsonStep], out: &mut Vec<String>) {
        use serde_json::Value;
        let Some((step, rest)) = steps.split_first() else {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                _ => {}
            }
            return;
        };
        match (step, value) {
            (JsonStep::Field(name), Value::Object(map)) => {
                if let Some(v) = map.get(name) {
                    reference(v, rest, out);
                }
            }
            (JsonStep::Index(i), Value::Array(items)) => {
                if let Some(v) = items.get(*i) {
                    reference(v, rest, out);
                }
            }
            (JsonStep::Wildcard, Value::Array(items)) => {
                items.iter().for_each(|v| reference(v, rest, out));
            }
            (JsonStep::Wildcard, Value::Object(map)) => {
                map.values().for_each(|v| reference(v, rest, out));
            }
            _ => {}
        }
    }

    #[test]
    fn values_agree_with_serde_json_on_random_documents() {
        let paths = [
            "$",
            "$.a",
            "$[*]",
            "$[*].id",
            "$.b[0]",
            "$[*][*]",
            "$.key[1].a",
            "$[*][*][*]",
        ];
        let mut rng = Rng(0x5eed_cafe);
        for round in 0..2000 {
            let mut doc = String::new();
            document(&mut rng, 4, &mut doc);
            let value: serde_json::Value =
                serde_json::from_str(&doc).expect("generator makes JSON");
            for path in paths {
                let parsed = json_path(path);
                let mut expected = Vec::new();
                reference(&value, &parsed.steps, &mut expected);
                let mut got = values(&doc, path).expect("scanner accepts JSON");
                // serde_json sorts object members; compare as multisets.
                expected.sort();
                got.sort();
                assert_eq!(got, expected, "round {round}, path {path}, doc {doc}");
            }
        }
    }

    #[test]
    fn validity_agrees_with_serde_json_on_mutated_documents() {
        let mut rng = Rng(0xdec0_de01);
        let alphabet = b"{}[],:\"\\ 0-1.eEtrufalsn\x01u";
        for round in 0..5000 {
            let mut doc = String::new();
            document(&mut rng, 3, &mut doc);
            let mut bytes = doc.into_bytes();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bytes.len() as u64 + 1) as usize;
                match rng.below(3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => {
                        bytes[at] = alphabet[rng.below(alphabet.len() as u64) as usize];
                    }
                    _ => bytes.insert(at, alphabet[rng.below(alphabet.len() as u64) as usize]),
                }
            }
            let text = String::from_utf8(bytes).expect("ASCII mutations keep UTF-8");
            let theirs = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            let ours = values(&text, "$.a").is_ok();
            assert_eq!(ours, theirs, "round {round}: {text:?}");
        }
    }
}
