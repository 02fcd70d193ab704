//! Key source: JSON paths over a body, read by a targeted streaming scan.
//!
//! The paths of one body are compiled once, at start-up, into a
//! [`JsonPaths`]: per depth, each distinct field name (as bytes) and array
//! index with the bit mask of the paths that step by it, and bit masks of
//! the paths that end there, go deeper, or step by field, index or
//! wildcard; a member name is compared once per depth whatever the number
//! of paths naming it.
//! The scan has two stages, interleaved a block at a time: [`blocks`]
//! classifies 64 bytes at a time into bit masks and hands out the position
//! of each token (structural bytes, opening quotes, the first byte of a
//! number or literal), validating string content as it goes; the walk goes from token
//! to token, never looking at whitespace or string content, and keeps per
//! open container only a bit mask of the paths still alive in it (an
//! explicit stack on the heap, never recursion on input). A scalar or
//! string no path is alive in is stepped over right where its key (or
//! index) was read; a container no path is alive in is skipped by counting
//! its brackets over stage one's masks ([`blocks`]), a block at a time, as
//! simdjson's On-Demand API does. A fault of string content stops stage
//! one: the walk sees the text end there and the fault is the answer.
//! Object keys are compared as raw bytes with the compiled field names
//! where they start, without finding their closing quote: each name with
//! its closing quote is kept as one 8-byte word, so a key that differs is
//! told apart by one masked compare per name (only when the text so far
//! has a backslash is the key's end found, and the key unescaped when it
//! contains `\`); the walk keeps its place in the tokens in a local
//! cursor that stage one hands out by value per block; and only the
//! values that sit at a path are materialised (unescaped only when they
//! contain `\`): no DOM, no allocation per field. Every path of one body is answered by the
//! same walk (64 paths per walk), so a body is read once however many rules
//! look at it.
//!
//! # What is validated
//!
//! The scan validates what it reads, not the whole document (issue 9's
//! product decision):
//! - **Everywhere**: every string is tracked exactly across blocks (quotes,
//!   escapes), so a bracket inside a string never counts; string content
//!   is checked (a control byte, an unknown escape, a `\u` without four
//!   hex digits: [`Problem::MalformedJson`]; a `\u` naming a lone
//!   surrogate: [`Problem::InvalidUtf8`], it is not Unicode text); an
//!   unterminated string, a backslash or a control byte (but whitespace)
//!   outside strings, brackets that do not balance (a close with nothing
//!   open, a container never closed: a truncated document) are
//!   [`Problem::MalformedJson`]; nesting deeper than [`MAX_DEPTH`] is
//!   [`Problem::TooDeep`] (counted in skipped containers too).
//! - **On the read path** (every container some path is alive in, the
//!   document itself when any path is, with all their members and
//!   elements, and what follows the document): the grammar
//!   (`:` and `,` where they belong, matching bracket kinds, nothing after
//!   the document) and every scalar, whether a path ends at it or not
//!   (numbers as JSON numbers, `true`/`false`/`null` exactly), are checked:
//!   a fault is [`Problem::MalformedJson`].
//! - **Inside a skipped container** (one no path is alive in), nothing but
//!   the above is checked: a wrong bracket kind (`[1}`), a missing or extra
//!   comma or colon, a bad scalar (`tru`, `01`) there is not detected, and
//!   the values found elsewhere are kept.
//!
//! The text is read as bytes, and UTF-8 is validated with the rest, by
//! stage one, everywhere (skipped containers included): a block of ASCII
//! costs nothing more, a block with other bytes is checked with its
//! characters whole, those that straddle blocks included. A text that is
//! not UTF-8 anywhere is [`Problem::InvalidUtf8`], whatever other fault it
//! has (as if it had been decoded before the scan). The extractor refuses
//! a document with a fault as a whole (no keys, whatever was found before
//! the fault).
//!
//! Strings and numbers at a path become values (a number exactly as written
//! in the JSON text, so `1.50` stays `1.50`); objects, arrays, `null` and
//! booleans at a path are ignored, though the walk still descends into them
//! for paths that go deeper.

mod blocks;

use std::ops::Range;

use smallvec::SmallVec;

use crate::config::{JsonPath, JsonStep};

use self::blocks::{hex4, Cursor, Tokens};
use super::Problem;

/// Deepest nesting of arrays and objects the scanner follows. Business
/// documents stay within a few dozen levels; the bound keeps the stack of a
/// hostile body (`[[[[…`) small, and matches `serde_json`'s default. The
/// skip loop keeps its nesting in a `u128` bit stack, so this is at most 128.
pub(super) const MAX_DEPTH: usize = 128;

/// Paths answered by one walk: one bit each in a `u64` mask. A set with
/// more paths is walked once per group of this many.
const GROUP: usize = 64;

/// A set of JSON paths compiled for the scanner, built once per route and
/// side when the extractor starts. Paths are numbered in the order given.
#[derive(Debug, Clone)]
pub struct JsonPaths {
    /// At least one (an empty set still validates the document).
    groups: Vec<Group>,
}

/// Up to [`GROUP`] paths walked together; bit `i` of every mask is path
/// `first + i`.
#[derive(Debug, Clone, Default)]
struct Group {
    first: usize,
    /// Every path of the group.
    all: u64,
    /// Per depth, what the paths do there (one look-up per value read).
    levels: Vec<Level>,
}

/// What the paths of a group do at one depth.
#[derive(Debug, Clone, Default)]
struct Level {
    /// The paths that end at a value of this depth.
    ends: u64,
    /// The paths with a step into the children of a container at this
    /// depth.
    goes_on: u64,
    /// The paths whose step at this depth is a field name …
    fields: u64,
    /// … an array index …
    indices: u64,
    /// … or `*`.
    wildcards: u64,
    /// Each field name some path steps by here, with the paths that do
    /// (one entry per distinct name).
    names: Vec<(Name, u64)>,
    /// Each array index some path steps by here, with the paths that do.
    positions: Vec<(usize, u64)>,
}

/// Deeper than every path: no path does anything there.
static NO_LEVEL: Level = Level {
    ends: 0,
    goes_on: 0,
    fields: 0,
    indices: 0,
    wildcards: 0,
    names: Vec::new(),
    positions: Vec::new(),
};

impl Group {
    /// What the paths do at `depth`.
    #[inline(always)]
    fn level(&self, depth: usize) -> &Level {
        self.levels.get(depth).unwrap_or(&NO_LEVEL)
    }
}

/// A field name some path steps by, ready to be compared with a key's raw
/// bytes where they start: the name followed by the key's closing quote,
/// its first (up to) 8 bytes as one word, so most keys that differ are told
/// apart by one masked compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    /// The name, unescaped.
    bytes: Box<[u8]>,
    /// The first bytes of the name and its closing quote (`name"`), as a
    /// little-endian word, zero past the quote …
    head: u64,
    /// … and which of its bytes count (all ones over `head`'s bytes; 0
    /// for a name no raw key can spell, with a quote, a backslash or a
    /// control byte: such a key has an escape).
    mask: u64,
}

impl Name {
    fn new(bytes: Box<[u8]>) -> Name {
        let raw = !bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mut head = [0u8; 8];
        let len = (bytes.len() + 1).min(8);
        for (slot, byte) in head.iter_mut().zip(bytes.iter().chain([&b'"'])) {
            *slot = *byte;
        }
        let mask = if !raw {
            0
        } else if len == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * len)) - 1
        };
        Name {
            bytes,
            head: u64::from_le_bytes(head),
            mask,
        }
    }

    /// Whether the key whose raw bytes start at `start` of `text` (with no
    /// backslash before its closing quote), and whose first 8 bytes are
    /// `word` (see [`word_at`]), is this name: its bytes, then the closing
    /// quote. A key with no backslash ends at the first quote, so a name
    /// without quotes matches exactly the keys it spells.
    #[inline(always)]
    fn starts(&self, text: &[u8], start: usize, word: u64) -> bool {
        // (`head` is never 0, so a mask of 0 matches nothing.)
        if word & self.mask != self.head {
            return false;
        }
        let len = self.bytes.len();
        len < 8
            || (text.get(start..start + len) == Some(&self.bytes[..])
                && text.get(start + len) == Some(&b'"'))
    }
}

/// The 8 bytes of `text` from `at` as a little-endian word, zero past the
/// end of the text.
#[inline(always)]
fn word_at(text: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    match text.get(at..).map(|rest| (rest.first_chunk::<8>(), rest)) {
        Some((Some(chunk), _)) => word = *chunk,
        Some((None, rest)) => {
            for (slot, byte) in word.iter_mut().zip(rest) {
                *slot = *byte;
            }
        }
        None => {}
    }
    u64::from_le_bytes(word)
}

/// Calls `f` with the index of every set bit of `mask`, lowest first.
fn each_bit(mut mask: u64, mut f: impl FnMut(usize)) {
    while mask != 0 {
        f(mask.trailing_zeros() as usize);
        mask &= mask - 1;
    }
}

// === impl JsonPaths ===

impl JsonPaths {
    /// Compiles `paths`; value callbacks name a path by its index here.
    pub fn new(paths: &[&JsonPath]) -> JsonPaths {
        let mut groups: Vec<Group> = paths
            .chunks(GROUP)
            .enumerate()
            .map(|(n, chunk)| Group::new(n * GROUP, chunk))
            .collect();
        if groups.is_empty() {
            groups.push(Group::default());
        }
        JsonPaths { groups }
    }

    /// Walks `text` and calls `on_value(path_index, value)` for every
    /// string or number found at one of the paths: in document order for
    /// each path (and for all paths of a set of at most 64).
    ///
    /// `text` is meant to be UTF-8, and checked: when it is not,
    /// anywhere, the answer is [`Problem::InvalidUtf8`] (whatever other
    /// fault it has).
    ///
    /// Values found before a problem is detected have already been
    /// reported; callers that need all-or-nothing collect and discard on
    /// `Err`.
    pub fn scan(&self, text: &[u8], mut on_value: impl FnMut(usize, &str)) -> Result<(), Problem> {
        match self.scan_groups(text, &mut on_value) {
            // Stage one stops at its first fault: another one may come
            // before bytes that are not UTF-8 (rare, so asked only then).
            Err(problem)
                if problem != Problem::InvalidUtf8 && std::str::from_utf8(text).is_err() =>
            {
                Err(Problem::InvalidUtf8)
            }
            scanned => scanned,
        }
    }

    /// [`JsonPaths::scan`] but for the precedence of invalid UTF-8.
    fn scan_groups(
        &self,
        text: &[u8],
        on_value: &mut impl FnMut(usize, &str),
    ) -> Result<(), Problem> {
        for group in &self.groups {
            let mut scanner = Scanner::new(text);
            let walked = scanner.walk(group, on_value);
            // A fault of string content ends the tokens early: it is the
            // reason whatever the walk made of the tokens before it.
            if let Some(fault) = scanner.tokens.fault() {
                return Err(fault);
            }
            walked?;
        }
        Ok(())
    }
}

impl Group {
    fn new(first: usize, paths: &[&JsonPath]) -> Group {
        let longest = paths.iter().map(|p| p.steps.len()).max().unwrap_or(0);
        let mut group = Group {
            first,
            all: 0,
            levels: vec![Level::default(); longest + 1],
        };
        for (bit, path) in paths.iter().enumerate() {
            let mask = 1u64 << bit;
            group.all |= mask;
            if let Some(level) = group.levels.get_mut(path.steps.len()) {
                level.ends |= mask;
            }
            for (level, step) in group.levels.iter_mut().zip(&path.steps) {
                level.goes_on |= mask;
                match step {
                    JsonStep::Field(name) => {
                        add_to(&mut level.names, Name::new(name.as_bytes().into()), mask);
                        level.fields |= mask;
                    }
                    JsonStep::Index(index) => {
                        add_to(&mut level.positions, *index, mask);
                        level.indices |= mask;
                    }
                    JsonStep::Wildcard => level.wildcards |= mask,
                }
            }
        }
        group
    }
}

/// Adds path bits `mask` to the entry of `step` in `table` (a new entry
/// for a step not seen yet).
fn add_to<S: PartialEq>(table: &mut Vec<(S, u64)>, step: S, mask: u64) {
    match table.iter_mut().find(|(known, _)| *known == step) {
        Some((_, paths)) => *paths |= mask,
        None => table.push((step, mask)),
    }
}

/// One open array or object that some path is alive in.
#[derive(Debug)]
struct Frame {
    object: bool,
    /// Paths whose steps matched all the way down to this container.
    live: u64,
    /// Index of the element being read (arrays only).
    index: usize,
}

/// A token: its position and its first byte (0 past the end of the text;
/// a NUL byte in the text is refused before it could be a token).
#[derive(Debug, Clone, Copy)]
struct Token {
    at: usize,
    byte: u8,
}

/// The state of one walk.
struct Scanner<'t> {
    bytes: &'t [u8],
    tokens: Tokens<'t>,
    /// Reused buffer for strings that contain escapes.
    scratch: String,
}

// === impl Scanner ===

impl<'t> Scanner<'t> {
    fn new(bytes: &'t [u8]) -> Scanner<'t> {
        Scanner {
            bytes,
            tokens: Tokens::new(bytes),
            scratch: String::new(),
        }
    }

    /// The next token after `cursor` (a token with byte 0 at the end of
    /// the text, or where a fault of string content stopped stage one).
    #[inline(always)]
    fn token(&mut self, cursor: &mut Cursor) -> Token {
        let at = self.tokens.next(cursor);
        let byte = self.bytes.get(at).copied().unwrap_or(0);
        Token { at, byte }
    }

    /// The closing quote of the string that opens at `open`, found back
    /// from `next`, the token after the string: stage one hands out no
    /// token inside a string nor its closing quote, and between that quote
    /// and the next token there is only whitespace. (If the string never
    /// closes, `next` is the end of the text and the fault is stage one's.)
    #[inline(always)]
    fn closing_quote(&self, open: usize, next: usize) -> Result<usize, Problem> {
        let mut close = next;
        while close > open + 1 {
            close -= 1;
            match self.bytes.get(close) {
                Some(b'"') => return Ok(close),
                Some(b' ' | b'\t' | b'\n' | b'\r') => {}
                _ => break,
            }
        }
        Err(Problem::MalformedJson)
    }

    /// One walk of the whole text for the paths of `group`.
    fn walk(
        &mut self,
        group: &Group,
        on_value: &mut impl FnMut(usize, &str),
    ) -> Result<(), Problem> {
        // Only containers some path is alive in are open here, so there
        // are no more than the longest path has steps. The innermost one is
        // `top`, a local (its fields stay in registers from member to
        // member); those around it wait on `parents`: on the machine stack
        // for the usual few levels, no allocation per walk.
        let mut parents: SmallVec<[Frame; 8]> = SmallVec::new();
        let mut top = Frame {
            object: false,
            live: 0,
            index: 0,
        };
        // How many are open (`top` is one of them unless none is).
        let mut open = 0usize;
        // Where the walk is in the tokens: a local, so it stays in
        // registers (only inlined code takes it by reference).
        let mut cursor = Cursor::START;
        let c = &mut cursor;
        // The paths alive at the value being read, and its first token.
        let mut live = group.all;
        let mut value = self.token(c);
        loop {
            let depth = open;
            let level = group.level(depth);
            let goes_on = live & level.goes_on;
            let ends = live & level.ends;
            // The value, and then the token after it.
            let mut next = match value.byte {
                bracket @ (b'{' | b'[') if goes_on != 0 => {
                    if depth >= MAX_DEPTH {
                        return Err(Problem::TooDeep);
                    }
                    let object = bracket == b'{';
                    let first = self.token(c);
                    if first.byte != close_of(object) {
                        let inner = Frame {
                            object,
                            live: goes_on,
                            index: 0,
                        };
                        if open > 0 {
                            parents.push(std::mem::replace(&mut top, inner));
                        } else {
                            top = inner;
                        }
                        open += 1;
                        (live, value) = self.child(group, goes_on, object, 0, depth, first, c)?;
                        if live != 0 {
                            continue;
                        }
                        // A child no path is alive in: stepped over here,
                        // without the per-value bookkeeping.
                        self.skip_value(value, depth + 1, c)?;
                    }
                    self.token(c)
                }
                b'"' => {
                    let next = self.token(c);
                    if ends != 0 {
                        let close = self.closing_quote(value.at, next.at)?;
                        let text = self.kept(value.at + 1..close)?;
                        each_bit(ends, |bit| on_value(group.first + bit, text));
                    }
                    next
                }
                b'-' | b'0'..=b'9' if ends != 0 => {
                    let number = self.number(value.at)?;
                    let text = self.text(number)?;
                    each_bit(ends, |bit| on_value(group.first + bit, text));
                    self.token(c)
                }
                _ => {
                    self.skip_value(value, depth, c)?;
                    self.token(c)
                }
            };
            // A value is complete: find the next one, closing containers.
            loop {
                if open == 0 {
                    return if next.byte == 0 {
                        Ok(())
                    } else {
                        Err(Problem::MalformedJson)
                    };
                }
                let depth = open - 1;
                match next.byte {
                    b',' => {
                        top.index += 1;
                        let first = self.token(c);
                        (live, value) =
                            self.child(group, top.live, top.object, top.index, depth, first, c)?;
                        if live != 0 {
                            break;
                        }
                        self.skip_value(value, depth + 1, c)?;
                    }
                    b'}' | b']' if (next.byte == b'}') == top.object => {
                        // The one around it, if any, is innermost again.
                        open -= 1;
                        if let Some(parent) = parents.pop() {
                            top = parent;
                        }
                    }
                    _ => return Err(Problem::MalformedJson),
                }
                next = self.token(c);
            }
        }
    }

    /// At `first`, the first token of the next child of a container at
    /// `depth` (a member's key, or element number `index`): reads the key
    /// and its `:` for objects, and returns the paths of `parent` alive in
    /// that child and the first token of its value.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn child(
        &mut self,
        group: &Group,
        parent: u64,
        object: bool,
        index: usize,
        depth: usize,
        first: Token,
        cursor: &mut Cursor,
    ) -> Result<(u64, Token), Problem> {
        let level = group.level(depth);
        let mut live = parent & level.wildcards;
        if !object {
            if parent & level.indices != 0 {
                for (wanted, paths) in &level.positions {
                    if *wanted == index {
                        live |= parent & paths;
                    }
                }
            }
            return Ok((live, first));
        }
        let colon = self.key(first, cursor)?;
        let fields = parent & level.fields;
        if fields == 0 {
            return Ok((live, self.token(cursor)));
        }
        let names = &level.names;
        if !self.tokens.escapes_seen() {
            // No backslash in the text so far, the key included: its raw
            // bytes are its name, compared where they start, without
            // finding the closing quote first.
            let start = first.at + 1;
            let head = word_at(self.bytes, start);
            for (name, paths) in names {
                if name.starts(self.bytes, start, head) && fields & paths != 0 {
                    live |= fields & paths;
                }
            }
        } else {
            let key = first.at + 1..self.closing_quote(first.at, colon)?;
            let raw = self.bytes.get(key.clone()).ok_or(Problem::MalformedJson)?;
            let escaped = self.tokens.escapes_seen() && raw.contains(&b'\\');
            let key = if escaped {
                self.unescape(key)?;
                self.scratch.as_bytes()
            } else {
                raw
            };
            for (name, paths) in names {
                if fields & paths != 0 && *name.bytes == *key {
                    live |= fields & paths;
                }
            }
        }
        Ok((live, self.token(cursor)))
    }

    /// At `first`, the opening quote of a member's key: reads the key and
    /// the `:` after it, and returns the position of the `:`.
    #[inline(always)]
    fn key(&mut self, first: Token, cursor: &mut Cursor) -> Result<usize, Problem> {
        if first.byte != b'"' {
            return Err(Problem::MalformedJson);
        }
        let colon = self.token(cursor);
        if colon.byte != b':' {
            return Err(Problem::MalformedJson);
        }
        Ok(colon.at)
    }

    /// Steps over the value starting at `value`, at `depth`, without
    /// keeping anything: a scalar is validated, a string was validated by
    /// stage one, and a container is skipped by counting its brackets
    /// ([`Tokens::skip_container`]: its inside is not validated).
    #[inline(always)]
    fn skip_value(
        &mut self,
        value: Token,
        depth: usize,
        cursor: &mut Cursor,
    ) -> Result<(), Problem> {
        match value.byte {
            // Stage one validated it; its closing quote is no token.
            b'"' => Ok(()),
            b'{' | b'[' => {
                // The container itself counts against the bound.
                if depth >= MAX_DEPTH {
                    return Err(Problem::TooDeep);
                }
                *cursor = self.tokens.skip_container(*cursor, MAX_DEPTH - depth)?;
                Ok(())
            }
            _ => self.scalar(value),
        }
    }

    /// Validates the number or literal whose first byte is at `value`.
    #[inline]
    fn scalar(&mut self, value: Token) -> Result<(), Problem> {
        match value.byte {
            b'-' | b'0'..=b'9' => self.number(value.at).map(drop),
            b't' => self.literal(value.at, b"true"),
            b'f' => self.literal(value.at, b"false"),
            b'n' => self.literal(value.at, b"null"),
            _ => Err(Problem::MalformedJson),
        }
    }

    /// A string's content, from the input or unescaped into `scratch`.
    fn kept(&mut self, content: Range<usize>) -> Result<&str, Problem> {
        let raw = self.text(content.clone())?;
        if !self.tokens.escapes_seen() || !raw.contains('\\') {
            return Ok(raw);
        }
        self.unescape(content)?;
        Ok(self.scratch.as_str())
    }

    /// The text of `range`, which starts and ends at ASCII bytes. Checked
    /// as UTF-8 here (safe code cannot take stage one's word for it);
    /// whether the whole text is UTF-8 is stage one's answer.
    #[inline]
    fn text(&self, range: Range<usize>) -> Result<&'t str, Problem> {
        let bytes = self.bytes.get(range).ok_or(Problem::MalformedJson)?;
        std::str::from_utf8(bytes).map_err(|_| Problem::InvalidUtf8)
    }

    /// Whether the scalar that started before `end` ends there: at
    /// whitespace, a structural byte, a quote or the end of the text.
    fn ends_scalar(&self, end: usize) -> bool {
        matches!(
            self.bytes.get(end),
            None | Some(
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"'
            )
        )
    }

    /// Checks that `word` (`true`, `false` or `null`) is written at `at`
    /// and ends there: one fixed-size compare, no loop.
    #[inline]
    fn literal<const N: usize>(&self, at: usize, word: &[u8; N]) -> Result<(), Problem> {
        let written = self.bytes.get(at..).and_then(<[u8]>::first_chunk::<N>);
        if written == Some(word) && self.ends_scalar(at + N) {
            Ok(())
        } else {
            Err(Problem::MalformedJson)
        }
    }

    /// Reads the number at `at`, returning its text range.
    fn number(&self, at: usize) -> Result<Range<usize>, Problem> {
        let bytes = self.bytes;
        let byte = |at: usize| bytes.get(at).copied().unwrap_or(0);
        let digits = |mut at: usize| {
            while byte(at).is_ascii_digit() {
                at += 1;
            }
            at
        };
        let mut pos = at;
        if byte(pos) == b'-' {
            pos += 1;
        }
        pos = match byte(pos) {
            b'0' => pos + 1,
            b'1'..=b'9' => digits(pos + 1),
            _ => return Err(Problem::MalformedJson),
        };
        if byte(pos) == b'.' {
            if !byte(pos + 1).is_ascii_digit() {
                return Err(Problem::MalformedJson);
            }
            pos = digits(pos + 1);
        }
        if let b'e' | b'E' = byte(pos) {
            pos += 1;
            if let b'+' | b'-' = byte(pos) {
                pos += 1;
            }
            if !byte(pos).is_ascii_digit() {
                return Err(Problem::MalformedJson);
            }
            pos = digits(pos);
        }
        if !self.ends_scalar(pos) {
            return Err(Problem::MalformedJson);
        }
        Ok(at..pos)
    }

    /// Unescapes the `content` of a string (validated when it was
    /// classified) into `scratch`.
    #[cold]
    fn unescape(&mut self, content: Range<usize>) -> Result<(), Problem> {
        self.scratch.clear();
        let mut run = content.start;
        let mut pos = content.start;
        while let Some(offset) = self
            .bytes
            .get(pos..content.end)
            .and_then(|rest| memchr::memchr(b'\\', rest))
        {
            let slash = pos + offset;
            let text = self.text(run..slash)?;
            self.scratch.push_str(text);
            let (ch, after) = self.escape(slash + 1)?;
            self.scratch.push(ch);
            pos = after;
            run = after;
        }
        let text = self.text(run..content.end)?;
        self.scratch.push_str(text);
        Ok(())
    }

    /// Decodes the escape whose letter is at `at`; returns the character
    /// and the position after the escape.
    fn escape(&self, at: usize) -> Result<(char, usize), Problem> {
        let simple = |ch: char| Ok((ch, at + 1));
        match self.bytes.get(at) {
            Some(b'"') => simple('"'),
            Some(b'\\') => simple('\\'),
            Some(b'/') => simple('/'),
            Some(b'b') => simple('\u{8}'),
            Some(b'f') => simple('\u{c}'),
            Some(b'n') => simple('\n'),
            Some(b'r') => simple('\r'),
            Some(b't') => simple('\t'),
            Some(b'u') => {
                let first = hex4(self.bytes, at + 1)?;
                let (code, after) = match first {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(at + 5..at + 7) != Some(b"\\u") {
                            return Err(Problem::InvalidUtf8);
                        }
                        let second = hex4(self.bytes, at + 7)?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(Problem::InvalidUtf8);
                        }
                        (
                            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00),
                            at + 11,
                        )
                    }
                    _ => (first, at + 5),
                };
                let ch = char::from_u32(code).ok_or(Problem::InvalidUtf8)?;
                Ok((ch, after))
            }
            _ => Err(Problem::MalformedJson),
        }
    }
}

/// The byte that closes an object (or an array).
fn close_of(object: bool) -> u8 {
    if object {
        b'}'
    } else {
        b']'
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::json_path;
    use super::*;

    /// Values at each path, as `(path index, value)`, or the problem.
    fn scan_all(text: &str, paths: &[&str]) -> Result<Vec<(usize, String)>, Problem> {
        scan_bytes(text.as_bytes(), paths)
    }

    /// [`scan_all`] of bytes that may not be UTF-8.
    fn scan_bytes(text: &[u8], paths: &[&str]) -> Result<Vec<(usize, String)>, Problem> {
        let parsed: Vec<JsonPath> = paths.iter().map(|p| json_path(p)).collect();
        let refs: Vec<&JsonPath> = parsed.iter().collect();
        let mut found = Vec::new();
        JsonPaths::new(&refs).scan(text, |p, v| found.push((p, v.to_owned())))?;
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
    fn indentation_of_any_width_is_whitespace() {
        for width in [0, 1, 7, 8, 9, 15, 16, 17, 33] {
            let pad = format!("\n{}", " ".repeat(width));
            let doc = format!("{{{pad}\"a\":{pad}[{pad}\"x\"{pad},{pad}1{pad}]{pad}}}{pad}");
            assert_eq!(
                values(&doc, "$.a[*]"),
                Ok(vec!["x".into(), "1".into()]),
                "{width}"
            );
            let bad = format!("{{{pad}\"a\":{pad}[{pad}\"x\"{pad},{pad}]{pad}}}");
            assert_eq!(
                values(&bad, "$.a[*]"),
                Err(Problem::MalformedJson),
                "{width}"
            );
        }
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
    fn unbalanced_or_unterminated_documents_are_refused_even_where_no_path_looks() {
        for doc in [
            r#"{"a":"x","b":[1,2,}"#,
            r#"{"a":"x","b":[1,[2]}"#,
            r#"{"a":"x","b":[1]]}"#,
            r#"{"a":"x","b":{"c":[1,{"d":2}"#,
            r#"{"a":"x","b":["]"]"#,
            r#"{"a":"x","b":["unterminated]}"#,
            r#"{"a":"x","b":{"c":"\"}}"#,
        ] {
            assert_eq!(values(doc, "$.a"), Err(Problem::MalformedJson), "{doc}");
        }
        // Brackets inside strings never count, in any block.
        for pad in 0..70 {
            let doc = format!(r#"{{"b":["{}]}}\"]{{\\",{{}}],"a":"x"}}"#, " ".repeat(pad));
            assert_eq!(values(&doc, "$.a"), Ok(vec!["x".into()]), "{doc}");
        }
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

    #[test]
    fn keys_are_matched_whole_as_raw_bytes_or_decoded_when_escaped() {
        let doc = r#"{"order_idx":"no","order":"no","sh\u0069pment_id":"SH-1","order_id":"SO-1","\u006frder_i":"no"}"#;
        let found = scan_all(doc, &["$.order_id", "$.shipment_id", "$['order_i']"]);
        assert_eq!(
            found,
            Ok(vec![
                (1, "SH-1".into()),
                (0, "SO-1".into()),
                (2, "no".into())
            ])
        );
    }

    #[test]
    fn keys_without_escapes_match_whole_names_compared_where_they_start() {
        // No backslash in the text: keys are compared raw from their first
        // byte. Prefixes and extensions of a name, names of 7, 8 and more
        // bytes, a key at the very end of the text, and names with a quote
        // or backslash (no raw key spells them) next to text that would.
        let doc = r#"{"ab":1,"a":"A","abc":2,"seven_7":"S7","seven_":3,"eight_88":"E8","eight_888":4,"a_longer_name":"L","a_longer_nam":5,"q":"x\"y","z":{"a":"b"},"end":"E"}"#
            .replace("x\\\"y", "xy");
        let paths = [
            "$.a",
            "$.seven_7",
            "$.eight_88",
            "$.a_longer_name",
            "$.end",
            "$['q\":']",
            "$['a\":\"']",
            "$.z['a\":\"b']",
            "$['ab\\\\']",
        ];
        let expected = vec![
            (0, "A".to_owned()),
            (1, "S7".into()),
            (2, "E8".into()),
            (3, "L".into()),
            (4, "E".into()),
        ];
        assert_eq!(scan_all(&doc, &paths), Ok(expected));
        // Cut right after a key's first bytes: no name matches past the end.
        for cut in [r#"{"a"#, r#"{"a_longer_na"#, r#"{"end""#] {
            assert!(scan_all(cut, &paths).is_err(), "{cut}");
        }
    }

    #[test]
    fn escapes_anywhere_in_long_values_are_decoded() {
        // Escapes before, inside and after the first 8-byte word, raw
        // multi-byte text around them.
        let doc = r#"{"v":["\"starts","ends\"","in the \\middle of a long run ü ✓","\u00fcber\t\ud83d\ude9a Lkw","plain and long enough for several words"]}"#;
        assert_eq!(
            values(doc, "$.v[*]"),
            Ok(vec![
                "\"starts".into(),
                "ends\"".into(),
                "in the \\middle of a long run ü ✓".into(),
                "über\t🚚 Lkw".into(),
                "plain and long enough for several words".into(),
            ])
        );
    }

    #[test]
    fn string_content_is_validated_everywhere_even_in_skipped_containers() {
        // Stage one reads every string, so a bad one is refused wherever
        // it is: inside a container no path is alive in too.
        let cases = [
            (r#"{"a":"x","b":{"c":["\x"]}}"#, Problem::MalformedJson),
            (
                r#"{"a":"x","b":{"c":["tab\tin a long skipped string"]}}"#,
                Problem::MalformedJson,
            ),
            (r#"{"a":"x","b":{"c\q":1}}"#, Problem::MalformedJson),
            (r#"{"a":"x","b":{"\udc00":1}}"#, Problem::InvalidUtf8),
        ];
        for (doc, problem) in cases {
            let doc = doc.replace("\\t", "\t");
            assert_eq!(values(&doc, "$.a"), Err(problem), "{doc}");
        }
    }

    /// Grammar and scalar faults inside the container at `$.b` (balanced,
    /// no bad string), each with a path that makes the walk read the fault
    /// (the containers it passes through are alive, and a scalar of a live
    /// container is validated whether a path ends at it or not).
    const FAULTS_INSIDE_B: [(&str, &str); 7] = [
        (r#"{"a":"x","b":[1,{"c":2,}]}"#, "$.b[1].c"),
        (r#"{"a":"x","b":[1,{"c" 2}]}"#, "$.b[*].c"),
        (r#"{"a":"x","b":{"c":[1}}}"#, "$.b.c[*]"),
        (r#"{"a":"x","b":[tru]}"#, "$.b[5]"),
        (r#"{"a":"x","b":[01]}"#, "$.b[0]"),
        (r#"{"a":"x","b":{"c":1 2, 3:}}"#, "$.b.z"),
        (r#"{"a":"x","b":[1,,{]}}"#, "$.b[9]"),
    ];

    #[test]
    fn a_fault_inside_a_container_no_path_is_alive_in_is_not_detected() {
        // The container is skipped by counting its brackets (the product
        // decision of issue 9): the keys in the valid part still come out.
        for (doc, _) in FAULTS_INSIDE_B {
            assert_eq!(values(doc, "$.a"), Ok(vec!["x".into()]), "{doc}");
            assert_eq!(values(doc, "$.z[*].y"), Ok(vec![]), "{doc}");
            assert!(serde_json::from_str::<serde_json::Value>(doc).is_err());
        }
    }

    #[test]
    fn the_same_faults_on_the_read_path_are_refused() {
        for (doc, path) in FAULTS_INSIDE_B {
            assert_eq!(
                scan_all(doc, &["$.a", path]),
                Err(Problem::MalformedJson),
                "{doc} {path}"
            );
            // A wildcard at every depth reads everything.
            assert_eq!(
                values(doc, "$[*][*][*][*]"),
                Err(Problem::MalformedJson),
                "{doc}"
            );
        }
    }

    #[test]
    fn the_depth_bound_is_the_same_in_followed_and_skipped_parts() {
        let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        // The member's value sits at depth 1: it may hold MAX_DEPTH - 1 levels.
        let fits = format!(r#"{{"a":"x","b":{}}}"#, nested(MAX_DEPTH - 1));
        let deeper = format!(r#"{{"a":"x","b":{}}}"#, nested(MAX_DEPTH));
        for path in ["$.a", "$.b[0][0]", "$.b[*][*][*]", "$.c"] {
            assert!(values(&fits, path).is_ok(), "{path}");
            assert_eq!(values(&deeper, path), Err(Problem::TooDeep), "{path}");
        }
        let path = format!("$.b{}", "[0]".repeat(MAX_DEPTH - 1));
        assert_eq!(values(&fits, &path), Ok(vec!["1".into()]));
    }

    #[test]
    fn booleans_and_null_at_a_path_give_nothing_and_containers_are_only_descended() {
        let doc = r#"{"id":null,"ok":true,"no":false,"obj":{"id":"in"},"arr":["e0",{"id":7}]}"#;
        for path in ["$.id", "$.ok", "$.no", "$.obj", "$.arr"] {
            assert_eq!(values(doc, path), Ok(vec![]), "{path}");
        }
        assert_eq!(values(doc, "$.obj.id"), Ok(vec!["in".into()]));
        assert_eq!(values(doc, "$.arr[1].id"), Ok(vec!["7".into()]));
        assert_eq!(values(doc, "$.arr[0]"), Ok(vec!["e0".into()]));
        assert_eq!(values(doc, "$[*].id"), Ok(vec!["in".into()]));
    }

    #[test]
    fn more_paths_than_one_walk_holds_are_all_answered() {
        let count = GROUP + 6;
        let members: Vec<String> = (0..count).map(|i| format!(r#""f{i}":"v{i}""#)).collect();
        let doc = format!("{{{}}}", members.join(","));
        let paths: Vec<String> = (0..count).rev().map(|i| format!("$.f{i}")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let mut found = scan_all(&doc, &paths).expect("valid");
        found.sort();
        let expected: Vec<(usize, String)> = (0..count)
            .map(|p| (p, format!("v{}", count - 1 - p)))
            .collect();
        assert_eq!(found, expected);
        // Each walk validates: a bad tail fails whatever group looks.
        let bad = format!("{{{},}}", members.join(","));
        assert_eq!(scan_all(&bad, &paths), Err(Problem::MalformedJson));
    }

    #[test]
    fn an_empty_path_set_still_validates() {
        let none = JsonPaths::new(&[]);
        assert_eq!(none.scan(br#"{"a":[1,2,{"b":"c"}]}"#, |_, _| {}), Ok(()));
        assert_eq!(
            none.scan(br#"{"a":[1,2,{"b":"c"]}"#, |_, _| {}),
            Err(Problem::MalformedJson)
        );
    }

    #[test]
    fn values_right_after_a_skipped_container_of_many_blocks_are_read_at_every_offset() {
        // A dead container spanning several blocks (brackets inside strings
        // and escapes among them), its closing bracket shifted across a
        // block one byte at a time, a number and a string right after it.
        for pad in 0..200 {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let doc = format!(
                    r#"{{"d":{open}[{{"s":"{}","t":"]}}\"["}},[1,{{}}],"{}"]{close},"v":-7,"w":"x"}}"#,
                    "y".repeat(pad),
                    "z".repeat(130 - pad % 70)
                );
                let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
                for path in ["$.v", "$.w", "$.*"] {
                    let mut expected = Vec::new();
                    reference(&value, &json_path(path).steps, &mut expected);
                    assert!(!expected.is_empty(), "{path}");
                    assert_eq!(
                        values(&doc, path),
                        Ok(expected),
                        "{path} after {pad}: {doc}"
                    );
                }
            }
        }
    }

    #[test]
    fn values_and_escapes_at_every_offset_of_a_block_agree_with_serde_json() {
        // The kept string, its escapes, a number and the structure around
        // them shifted across two block boundaries, one byte at a time.
        let kept = r#""a\\\"b \u00fc\ud83d\ude9a \\\\ \/\n tail long enough to cross""#;
        for pad in 0..140 {
            let doc = format!(
                r#"{{"pad":"{}","v":{kept},"skip":[{{"k\"":"\\"}},-15,true,2.5E-3],"n":[ 12 ,null]}}"#,
                "x".repeat(pad)
            );
            let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
            for path in ["$.v", "$.n[0]", "$.skip[1]", "$.skip[0]['k\"']"] {
                let mut expected = Vec::new();
                reference(&value, &json_path(path).steps, &mut expected);
                assert_eq!(values(&doc, path), Ok(expected), "{path} after {pad}");
            }
            // Cut anywhere: refused, never read.
            for end in (0..doc.len()).step_by(7) {
                assert!(values(&doc[..end], "$.v").is_err(), "{pad} cut at {end}");
            }
        }
    }

    /// A character of each width of UTF-8 (2, 3 and 4 bytes), and a run of
    /// them.
    const BEYOND_ASCII: [&str; 4] = ["é", "€", "🚚", "ü✓🚚é"];

    #[test]
    fn characters_beyond_ascii_are_read_whole_at_every_offset_of_a_block() {
        // Each character with its first byte at every offset across two
        // block boundaries, so that every split of it between two blocks
        // comes: in a member name a path steps by, in values at a path, in
        // a string of a skipped container, in long strings (blocks with no
        // token), right before a block that has no byte beyond ASCII.
        for ch in BEYOND_ASCII {
            for pad in 0..140 {
                let x = "x".repeat(pad);
                let doc = format!(
                    r#"{{"p{x}":"{ch}","{ch}":"{x}{ch}{ch}","s":[{{"t":"{x}{ch}"}},"{ch}"],"l":"{long}","m":"{ch}{x}{y}","v":"{ch}"}}"#,
                    long = format!("{x}{ch}").repeat(3),
                    y = "y".repeat(70),
                );
                let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
                let named = format!("$['{ch}']");
                for path in ["$.*", &named, "$.v", "$.s[1]", "$.s[0].t"] {
                    // (`serde_json` keeps members sorted by name.)
                    let expected = sorted_reference(&value, path);
                    assert!(!expected.is_empty(), "{path}");
                    let mut found = values(&doc, path).expect("valid JSON");
                    found.sort();
                    assert_eq!(found, expected, "{path} after {pad}: {doc}");
                }
            }
        }
    }

    /// Byte sequences that are not UTF-8: a lone continuation byte, a
    /// first byte without (all) its continuation bytes (before ASCII,
    /// before another first byte), one continuation byte too many,
    /// overlong forms, UTF-16 surrogates, code points past U+10FFFF, bytes
    /// UTF-8 never has.
    const NOT_UTF8: [&[u8]; 21] = [
        b"\x80",
        b"\xBF",
        b"\xC3",
        b"\xC3(",
        b"\xC3\xC3\xA9",
        b"\xE2\x82",
        b"\xE2\x82(",
        b"\xF0\x9F\x9A",
        b"\xF0\x9F\x9A(",
        b"\xC3\xA9\xA9",
        b"\xC0\xAF",
        b"\xC1\xBF",
        b"\xE0\x80\xAF",
        b"\xE0\x9F\xBF",
        b"\xF0\x8F\xBF\xBF",
        b"\xED\xA0\x80",
        b"\xED\xBF\xBF",
        b"\xF4\x90\x80\x80",
        b"\xF5\x80\x80\x80",
        b"\xFE",
        b"\xFF",
    ];

    #[test]
    fn bytes_that_are_not_utf8_are_refused_wherever_they_are() {
        // Each sequence at every offset across two block boundaries: in a
        // value at a path, in a member name, in a string of a container no
        // path is alive in, in a long string, outside strings, after the
        // document, at the very end of the text; whatever the paths.
        let long = [b'y'; 150];
        let places: [(&[u8], &[u8], &[u8]); 8] = [
            (br#"{"v":""#, br#"","w":1}"#, b""),
            (br#"{""#, br#"":1,"v":"x"}"#, b""),
            (br#"{"s":[{"t":""#, br#""}],"v":"x"}"#, b""),
            (br#"{"v":"x","l":""#, &long, br#""}"#),
            (br#"{"v":-1"#, br#","w":2}"#, b""),
            (br#"{"v":"x"} "#, b"  ", b""),
            (br#"{"v":"x"} "#, b"", b""),
            (br#"{"v":""#, br#"""#, b""),
        ];
        for bad in NOT_UTF8 {
            for (before, after, end) in places {
                for pad in 0..140 {
                    let mut doc = before.to_vec();
                    doc.extend(std::iter::repeat_n(b' ', pad));
                    doc.extend_from_slice(bad);
                    doc.extend_from_slice(after);
                    doc.extend_from_slice(end);
                    assert!(std::str::from_utf8(&doc).is_err());
                    refused_as_not_utf8(&doc, &[&["$.v"], &["$.*", "$.s[*].t"], &["$.none"]]);
                }
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_outrank_every_other_fault() {
        // As when the text was decoded before the scan: a fault of the
        // grammar, of string content, of balance or of depth that comes
        // first does not hide bytes that are not UTF-8 further on.
        let deep = "[".repeat(MAX_DEPTH + 1);
        let faults = [
            r#"{"v":tru,"#,
            r#"{"v":"\x","#,
            r#"{"v":"\ud800","#,
            r#"{"v":1}},"#,
            "{\"v\":\"a\u{1}b\",",
            deep.as_str(),
        ];
        for fault in faults {
            for pad in [0, 60, 200] {
                let mut doc = fault.as_bytes().to_vec();
                doc.extend(std::iter::repeat_n(b' ', pad));
                doc.extend_from_slice(b"\"w\":\"\xC3(\"}");
                refused_as_not_utf8(&doc, &[&["$.v"], &["$.none"]]);
            }
        }
    }

    /// Checks that `doc` is refused as not UTF-8 by a scan for each set of
    /// paths.
    fn refused_as_not_utf8(doc: &[u8], path_sets: &[&[&str]]) {
        for paths in path_sets {
            assert_eq!(
                scan_bytes(doc, paths),
                Err(Problem::InvalidUtf8),
                "{paths:?}: {}",
                doc.escape_ascii()
            );
        }
    }

    #[test]
    fn a_scan_refuses_exactly_the_texts_that_are_not_utf8_among_random_mutations() {
        // Valid documents rich in characters beyond ASCII, with bytes
        // removed, replaced or inserted (high bytes mostly): whenever the
        // result is not UTF-8 the scan says so, and when it is, the answer
        // is never `InvalidUtf8` (no `\u` escape names a lone surrogate).
        let edits = b"\x80\xBF\xC3\xA9\xE2\x82\xAC\xF0\x9F\x9A\xED\xA0\xF4\x90\xFF\"{}[],: a";
        on_mutated_documents(&UNICODE, 0x0757_f008, edits, 2, |round, bytes| {
            let utf8 = std::str::from_utf8(&bytes).is_ok();
            for paths in [&["$.*"][..], &["$.none"], &["$[*][*][*][*][*][*]"]] {
                let scanned = scan_bytes(&bytes, paths);
                assert_eq!(
                    scanned == Err(Problem::InvalidUtf8),
                    !utf8,
                    "round {round} {paths:?}: {}",
                    bytes.escape_ascii()
                );
            }
        });
    }

    /// The documents the benchmarks read, with the paths their routes use.
    const REAL: [(&str, &[&str]); 5] = [
        (
            include_str!("../../bench/docs/sap_delivery.json"),
            &[
                "$.d.DeliveryDocument",
                "$.d.to_DeliveryDocumentItem.results[*].ReferenceSDDocument",
            ],
        ),
        (
            include_str!("../../bench/docs/carrier_label.json"),
            &[
                "$.shipment_id",
                "$.reference",
                "$.tracking_code",
                "$.parcels[*].tracking_code",
            ],
        ),
        (
            include_str!("../../bench/docs/wms_pack.json"),
            &[
                "$.order_id",
                "$.shipments[*].shipment_id",
                "$.shipments[*].cartons[*].lines[*].sku",
            ],
        ),
        (
            include_str!("../../bench/docs/wms_pick.json"),
            &["$.order_id", "$.lines[*].qty_picked"],
        ),
        (
            include_str!("../../bench/docs/carrier_tracking.json"),
            &["$.tracking_code", "$.*", "$.events[*].*"],
        ),
    ];

    #[test]
    fn real_documents_and_every_prefix_of_them_agree_with_serde_json() {
        // A truncated tap is never scanned (a prefix of JSON is not JSON),
        // but a body that ends early must still be refused, never read.
        for (doc, paths) in REAL {
            for end in (0..=doc.len()).filter(|&end| doc.is_char_boundary(end)) {
                let prefix = &doc[..end];
                let Ok(value) = serde_json::from_str::<serde_json::Value>(prefix) else {
                    assert!(scan_all(prefix, paths).is_err(), "prefix of {end} bytes");
                    continue;
                };
                for (index, path) in paths.iter().enumerate() {
                    let mut expected = Vec::new();
                    reference(&value, &json_path(path).steps, &mut expected);
                    let got: Vec<String> = scan_all(prefix, paths)
                        .expect("serde_json accepts it")
                        .into_iter()
                        .filter(|(p, _)| *p == index)
                        .map(|(_, v)| v)
                        .collect();
                    expected.sort();
                    let mut got = got;
                    got.sort();
                    assert!(end < doc.len() || !got.is_empty(), "{path} finds something");
                    assert_eq!(got, expected, "{path} at {end} bytes");
                }
            }
        }
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

    const NAMES: [&str; 5] = ["a", "b", "id", "k\\u0065y", "a_longer_name_\\\"quoted\\\""];

    /// Member names and strings of the random documents: with escapes, or
    /// (`PLAIN`) without a backslash anywhere, so keys are compared raw;
    /// names that are prefixes of one another, shorter and longer than a
    /// word.
    struct Alphabet {
        names: [&'static str; 5],
        strings: [&'static str; 5],
    }

    const ESCAPED: Alphabet = Alphabet {
        names: NAMES,
        strings: [
            "\"x\"",
            "\"\\u00e9\\n\"",
            "\"\"",
            "\"\\ud83d\\ude00\"",
            "\"a value longer than a word, with \\u00fc, \\\" and \\\\ inside\"",
        ],
    };

    const PLAIN: Alphabet = Alphabet {
        names: ["a", "ab", "id", "a_longer_name", "a_longer_name_"],
        strings: [
            "\"x\"",
            "\"ab\"",
            "\"\"",
            "\"ü ✓\"",
            "\"a value longer than a word\"",
        ],
    };

    /// Characters beyond ASCII of every width, in names and strings.
    const UNICODE: Alphabet = Alphabet {
        names: ["a", "é", "€uro", "🚚", "kündenr_long"],
        strings: [
            "\"ü\"",
            "\"Müller-✓ 🚚 a longer value\"",
            "\"\"",
            "\"€\\u00e9\"",
            "\"a value of some length, ascii only\"",
        ],
    };

    /// A random document made of `alphabet`, of bounded depth, with
    /// integers only (their text round-trips through serde_json) and
    /// distinct member names.
    fn document_of(alphabet: &Alphabet, rng: &mut Rng, depth: u32, out: &mut String) {
        let pick = if depth == 0 {
            rng.below(4)
        } else {
            rng.below(6)
        };
        match pick {
            0 => out.push_str(alphabet.strings[rng.below(5) as usize]),
            1 => out.push_str(&(rng.below(2000) as i64 - 1000).to_string()),
            2 => out.push_str(["true", "false"][rng.below(2) as usize]),
            3 => out.push_str("null"),
            4 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(" ,");
                    }
                    document_of(alphabet, rng, depth - 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push_str("{ ");
                let count = rng.below(6) as usize;
                for (i, name) in alphabet.names.iter().take(count).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"{name}\" :"));
                    document_of(alphabet, rng, depth - 1, out);
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
            "$['a_longer_name_\"quoted\"'][*]",
        ];
        on_random_documents(0x5eed_cafe, |round, doc, value| {
            for path in paths {
                let mut got = values(doc, path).expect("scanner accepts JSON");
                got.sort();
                let expected = sorted_reference(value, path);
                assert_eq!(got, expected, "round {round}, path {path}, doc {doc}");
            }
        });
    }

    /// Calls `check(round, document, serde_json's reading of it)` on 2 000
    /// random documents made from `seed`.
    fn on_random_documents(seed: u64, check: impl FnMut(usize, &str, &serde_json::Value)) {
        on_random_documents_of(&ESCAPED, seed, check);
    }

    /// The same, the documents made of `alphabet`.
    fn on_random_documents_of(
        alphabet: &Alphabet,
        seed: u64,
        mut check: impl FnMut(usize, &str, &serde_json::Value),
    ) {
        let mut rng = Rng(seed);
        for round in 0..2000 {
            let mut doc = String::new();
            document_of(alphabet, &mut rng, 4, &mut doc);
            let value = serde_json::from_str(&doc).expect("generator makes JSON");
            check(round, &doc, &value);
        }
    }

    /// The reference's values at `path`, sorted: serde_json sorts object
    /// members, so values are compared as multisets.
    fn sorted_reference(value: &serde_json::Value, path: &str) -> Vec<String> {
        let mut expected = Vec::new();
        reference(value, &json_path(path).steps, &mut expected);
        expected.sort();
        expected
    }

    #[test]
    fn many_paths_in_one_walk_agree_with_serde_json_on_random_documents() {
        // Paths that share field names and indices at the same depth under
        // different parents, and prefixes of one another: one walk answers
        // them all, each path only with its own values.
        let paths = [
            "$.a",
            "$.b",
            "$.a.a",
            "$.b.a",
            "$[*].a",
            "$.a[0]",
            "$.b[0]",
            "$.a[1]",
            "$[*][0]",
            "$.id[*].id",
            "$.a.id.b",
            "$[*][*].a",
        ];
        many_paths_agree(&ESCAPED, 0x0a11_9a75, &paths);
    }

    /// One walk of `paths` over 2 000 random documents made of `alphabet`
    /// agrees with serde_json, path by path.
    fn many_paths_agree(alphabet: &Alphabet, seed: u64, paths: &[&str]) {
        on_random_documents_of(alphabet, seed, |round, doc, value| {
            if alphabet.names == PLAIN.names {
                assert!(!doc.contains('\\'), "{doc}");
            }
            let found = scan_all(doc, paths).expect("scanner accepts JSON");
            for (index, path) in paths.iter().enumerate() {
                let expected = sorted_reference(value, path);
                let mut got: Vec<String> = found
                    .iter()
                    .filter(|(p, _)| *p == index)
                    .map(|(_, v)| v.clone())
                    .collect();
                got.sort();
                assert_eq!(got, expected, "round {round}, path {path}, doc {doc}");
            }
        });
    }

    #[test]
    fn many_paths_agree_with_serde_json_on_random_documents_without_escapes() {
        // No backslash anywhere: every key is compared raw where it starts,
        // against names that are prefixes of one another.
        let paths = [
            "$.a",
            "$.ab",
            "$.a.a_longer_name",
            "$[*].a_longer_name_",
            "$.id[*].ab",
            "$.a_longer_name[0]",
            "$[*][*].a",
            "$.ab.id.a_longer_name_",
        ];
        many_paths_agree(&PLAIN, 0x9a1e_0f0e, &paths);
    }

    #[test]
    fn validity_agrees_with_serde_json_on_mutated_documents() {
        let edits = b"{}[],:\"\\ 0-1.eEtrufalsn\x01u";
        on_mutated_documents(&ESCAPED, 0xdec0_de01, edits, 3, |round, bytes| {
            let text = String::from_utf8(bytes).expect("ASCII mutations keep UTF-8");
            // A `Value` also refuses numbers beyond f64 (`8e581`), which
            // are JSON text all the same.
            let theirs = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(_) => true,
                Err(e) => e.to_string().starts_with("number out of range"),
            };
            // A wildcard at every depth the mutations can reach: the walk
            // reads every container, and agrees with serde_json exactly.
            let everything = values(&text, "$[*][*][*][*][*][*][*][*]").is_ok();
            assert_eq!(everything, theirs, "round {round}: {text:?}");
            // One path: what serde_json accepts is read; a container no
            // path is alive in is only counted, but a text that is not
            // lexically sound (see `lexically_sound`) is refused wherever
            // its fault is.
            let ours = values(&text, "$.a").is_ok();
            assert!(ours || !theirs, "round {round}: {text:?}");
            assert!(
                ours <= lexically_sound(text.as_bytes()),
                "round {round}: {text:?}"
            );
        });
    }

    /// Calls `check` with 5000 random documents made of `alphabet` (and
    /// the round), each with 1 to `most + 1` bytes removed, replaced or
    /// inserted (taken from `edits`) at random places.
    fn on_mutated_documents(
        alphabet: &Alphabet,
        seed: u64,
        edits: &[u8],
        most: u64,
        mut check: impl FnMut(usize, Vec<u8>),
    ) {
        let mut rng = Rng(seed);
        for round in 0..5000 {
            let mut doc = String::new();
            document_of(alphabet, &mut rng, 3, &mut doc);
            check(round, mutated(&mut rng, doc, edits, most));
        }
    }

    /// `doc` with 1 to `most + 1` bytes removed, replaced or inserted
    /// (taken from `alphabet`) at random places.
    fn mutated(rng: &mut Rng, doc: String, alphabet: &[u8], most: u64) -> Vec<u8> {
        let mut bytes = doc.into_bytes();
        for _ in 0..=rng.below(most) {
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
        bytes
    }

    /// Byte at a time: every string closed, with valid escapes and no
    /// control byte; no backslash and no control byte but whitespace
    /// outside strings; brackets outside strings balanced (never more
    /// closed than opened, all closed at the end). Kinds of brackets,
    /// commas, colons and scalars are not looked at.
    fn lexically_sound(bytes: &[u8]) -> bool {
        let mut open = 0usize;
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            at += 1;
            match byte {
                b'{' | b'[' => open += 1,
                b'}' | b']' => match open.checked_sub(1) {
                    Some(fewer) => open = fewer,
                    None => return false,
                },
                b'\\' => return false,
                b'"' => loop {
                    let Some(&byte) = bytes.get(at) else {
                        return false;
                    };
                    at += 1;
                    match byte {
                        b'"' => break,
                        b'\\' => {
                            let escape = bytes.get(at).copied().unwrap_or(0);
                            at += 1;
                            if escape == b'u' {
                                let hex = bytes.get(at..at + 4).unwrap_or_default();
                                if hex.len() < 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
                                    return false;
                                }
                                at += 4;
                            } else if !b"\"\\/bfnrt".contains(&escape) {
                                return false;
                            }
                        }
                        0..=0x1f => return false,
                        _ => {}
                    }
                },
                b' ' | b'\t' | b'\n' | b'\r' => {}
                0..=0x1f => return false,
                _ => {}
            }
        }
        open == 0
    }
}
