//! Stage one of the JSON scan: classifies the text 64 bytes at a time and
//! hands out the position of every token, lazily, one block ahead of the
//! walk.
//!
//! A token is a structural byte outside strings (`{ } [ ] : ,`), the quote
//! that opens a string (not the one that closes it: the walk finds that one
//! back from the next token, over whitespace, when it needs it), and the
//! first byte of a run of scalar bytes outside strings (a number or
//! `true`/`false`/`null`, or garbage the walk refuses). Between two tokens
//! there is only whitespace, string content with its closing quote, or the
//! rest of a scalar, so the walk never looks at those bytes. A block is
//! compared 16 bytes at a time with `wide`'s portable SIMD vectors (SSE2 or
//! NEON; plain arrays elsewhere) into bit masks, one bit per byte; escapes
//! are found by walking the (rare) backslashes, the in-string mask by a
//! prefix XOR of the unescaped quotes, carried from block to block, so
//! strings are tracked exactly however they straddle blocks.
//!
//! A block is classified for what reads it: a block the walk reads gets
//! the masks of its tokens (quotes, backslashes and control bytes,
//! delimiters, bytes no scalar has); a block a dead-container skip enters
//! gets its strings and its brackets instead, and its tokens only if the
//! skip ends in it. The block the skip starts in has its brackets asked
//! then.
//!
//! UTF-8 is validated here, all of it: the compare that finds control
//! bytes finds the bytes of characters beyond ASCII too (both are below a
//! space as signed bytes), so a block of ASCII costs nothing more; a block
//! with such bytes is checked once, from the first character that starts
//! in it to the end of the last one (which may end in the next block: the
//! next block's check starts after it). A byte that is not UTF-8 is
//! [`Problem::InvalidUtf8`], a fault like those below.
//!
//! String content is validated here, all of it, whether a path looks at it
//! or not: a control byte inside a string, an unknown escape, a `\u` without
//! four hex digits (malformed) or naming a lone surrogate (not Unicode), an
//! unterminated string. Control bytes other than whitespace, and
//! backslashes, are refused outside strings too. The grammar (and scalars)
//! are the walk's part, except inside a container the walk skips by
//! counting brackets ([`Tokens::skip_container`]), where nothing but this
//! stage's checks and the balance of the brackets is looked at.

use wide::{i8x16, u8x16, CmpLt};

use super::super::Problem;

/// Bytes classified together: one bit each in a `u64`.
const BLOCK: usize = 64;

/// Where the walk is in the tokens: the block it reads and the tokens of
/// that block not handed out yet. Small and `Copy`, so the walk keeps it in
/// registers (a local, never behind a reference an out-of-line call sees);
/// [`Tokens`] hands a new one out by value for each block it classifies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    /// Start of the block whose tokens are in `bits`.
    base: usize,
    /// Tokens of that block not handed out yet (bit `i` = byte `base + i`).
    bits: u64,
}

impl Cursor {
    /// Before the first block.
    pub const START: Cursor = Cursor { base: 0, bits: 0 };
}

/// The classification of a text, a block at a time, with what carries from
/// one block to the next.
pub(super) struct Tokens<'t> {
    bytes: &'t [u8],
    /// Start of the next block to classify.
    next_block: usize,
    /// The bytes outside strings of the block last classified (the
    /// cursor's): what [`Tokens::skip_container`] counts brackets in. The
    /// brackets themselves are classified only for the blocks the skip
    /// visits.
    outside: u64,
    /// All ones when the text classified so far ends inside a string.
    in_string: u64,
    /// The text classified so far ends with a backslash that escapes the
    /// next byte.
    escapes_next: bool,
    /// 1 when the text classified so far ends inside a run of scalar bytes.
    in_scalar: u64,
    /// Position of the `u` of a `\u` low surrogate already checked as the
    /// second half of a pair.
    paired_low: usize,
    /// A backslash was seen in the text classified so far.
    escapes_seen: bool,
    /// The text before this position is checked UTF-8 (the end of the
    /// last character checked: it can be past the block last classified).
    utf8_checked: usize,
    /// The fault that stopped the classification: no token is handed out
    /// past the block that has it.
    fault: Option<Problem>,
}

/// The strings of one block, one bit per byte.
#[derive(Debug, Clone, Copy)]
struct Strings {
    /// The quotes that open or close a string (not escaped).
    quotes: u64,
    /// From each opening quote (included) to its closing quote (not).
    inside: u64,
}

/// What the skip needs of a block: its strings, and its brackets outside
/// them.
#[derive(Debug, Clone, Copy)]
struct Skipped {
    opens: u64,
    closes: u64,
    strings: Strings,
}

impl<'t> Tokens<'t> {
    pub fn new(bytes: &'t [u8]) -> Tokens<'t> {
        Tokens {
            bytes,
            next_block: 0,
            outside: 0,
            in_string: 0,
            escapes_next: false,
            in_scalar: 0,
            paired_low: usize::MAX,
            escapes_seen: false,
            utf8_checked: 0,
            fault: None,
        }
    }

    /// Whether the text up to the last token handed out (and a block
    /// beyond) has any backslash: when not, no string so far has escapes.
    #[inline]
    pub fn escapes_seen(&self) -> bool {
        self.escapes_seen
    }

    /// The fault of string content (see the module doc) found so far, if
    /// any: the text is refused whatever the walk made of its tokens.
    #[inline]
    pub fn fault(&self) -> Option<Problem> {
        self.fault
    }

    /// The position of the next token after `cursor`, which moves past
    /// it, or the length of the text when there is none left. A block with
    /// a fault of string content hands out no token, and neither does
    /// anything after it: the walk sees the text end there (and
    /// [`Tokens::fault`] says why). Faults are found a block ahead of the
    /// token that reaches them.
    #[inline(always)]
    pub fn next(&mut self, cursor: &mut Cursor) -> usize {
        while cursor.bits == 0 {
            *cursor = self.refill();
        }
        let at = cursor.base + cursor.bits.trailing_zeros() as usize;
        cursor.bits &= cursor.bits - 1;
        at
    }

    /// Steps over the rest of an array or object whose opening bracket was
    /// the last token handed out, to just past its closing bracket, by
    /// counting brackets outside strings: the whole of a block whose
    /// brackets cannot close the container (fewer closes than containers
    /// open) is taken at once by its popcounts, other blocks bracket by
    /// bracket. Nothing between the brackets is checked but what stage one
    /// checks everywhere (strings and their escapes, control bytes): a
    /// wrong bracket kind, a missing comma or a bad scalar inside goes
    /// unnoticed. At most `room` containers may be open at once (counting
    /// this one), or the text is [`Problem::TooDeep`]; one that never
    /// closes is [`Problem::MalformedJson`]. Returns the cursor just past
    /// the closing bracket.
    pub fn skip_container(&mut self, mut cursor: Cursor, room: usize) -> Result<Cursor, Problem> {
        let mut open = 1usize;
        // The cursor's block was classified for the walk: its brackets are
        // asked now. The blocks after it are classified for the skip.
        let (mut opens, mut closes) = self.brackets(cursor.base);
        let mut strings = None;
        loop {
            let (opens_left, closes_left) = (opens & cursor.bits, closes & cursor.bits);
            let o = opens_left.count_ones() as usize;
            let c = closes_left.count_ones() as usize;
            if c < open && open + o <= room {
                open = open + o - c;
            } else {
                let mut pending = opens_left | closes_left;
                while pending != 0 {
                    let bit = pending & pending.wrapping_neg();
                    pending ^= bit;
                    if closes_left & bit == 0 {
                        open += 1;
                        if open > room {
                            return Err(Problem::TooDeep);
                        }
                        continue;
                    }
                    open -= 1;
                    if open == 0 {
                        // The tokens after the closing bracket remain (a
                        // block classified for the skip gets its tokens now).
                        if let Some(Strings { quotes, inside }) = strings {
                            cursor.bits = self.tokens_after_skip(cursor.base, quotes, inside);
                        }
                        cursor.bits &= bit.wrapping_neg() << 1;
                        return Ok(cursor);
                    }
                }
            }
            let (base, skipped) = self.advance(Self::skipped).ok_or(Problem::MalformedJson)?;
            // Every bracket of a skipped block is left to count.
            cursor = Cursor { base, bits: !0 };
            (opens, closes) = (skipped.opens, skipped.closes);
            strings = Some(skipped.strings);
        }
    }

    /// The opening and closing brackets outside strings of the block at
    /// `base`, the one last classified (none past the end of the text).
    #[inline]
    fn brackets(&self, base: usize) -> (u64, u64) {
        if self.outside == 0 {
            return (0, 0);
        }
        let [open, close] = with_block(self.bytes, base, |block| masks(block, open_close));
        (open & self.outside, close & self.outside)
    }

    /// The cursor on the next block, classified for the walk; at the end
    /// of the text (or past a fault) a cursor whose one token is the end of
    /// the text.
    fn refill(&mut self) -> Cursor {
        match self.advance(Self::tokens) {
            Some((base, bits)) => Cursor { base, bits },
            None => Cursor {
                base: self.bytes.len(),
                bits: 1,
            },
        }
    }

    /// Reads the block at `next_block` with `read` (the walk's tokens or
    /// the skip's brackets) and moves past it: its start and what `read`
    /// found, or `None` at the end of the text or at a fault (kept in
    /// [`Tokens::fault`]; nothing is read past it).
    #[inline(always)]
    fn advance<T>(
        &mut self,
        read: impl FnOnce(&mut Self, &[u8; BLOCK]) -> Result<T, Problem>,
    ) -> Option<(usize, T)> {
        let start = self.next_block;
        if start >= self.bytes.len() {
            self.outside = 0;
            return None;
        }
        let found = with_block(self.bytes, start, |block| read(self, block));
        self.next_block = start + BLOCK;
        let found = match found {
            // A string open at the end of the text never closes.
            Ok(_) if self.next_block >= self.bytes.len() && self.in_string != 0 => {
                Err(Problem::MalformedJson)
            }
            found => found,
        };
        match found {
            Ok(found) => Some((start, found)),
            Err(problem) => {
                self.fault = Some(problem);
                self.outside = 0;
                self.next_block = self.bytes.len();
                None
            }
        }
    }

    /// Inside a long string (a base64 label, a free text), whether nothing
    /// ends it in `block`: then the block has no token, no bracket, and no
    /// carry changes.
    #[inline(always)]
    fn still_in_string(&mut self, block: &[u8; BLOCK]) -> bool {
        let plain = self.in_string != 0 && !self.escapes_next && plain(block);
        if plain {
            self.outside = 0;
        }
        plain
    }

    /// The walk's tokens of the block at `next_block`, updating the
    /// carries.
    #[inline]
    fn tokens(&mut self, block: &[u8; BLOCK]) -> Result<u64, Problem> {
        if self.still_in_string(block) {
            return Ok(0);
        }
        let [quote, rare, delimiter, separator] = masks(block, |v| {
            let quote = quote(v);
            let [delimiter, separator] = delimiters(v);
            [quote, rare(v), delimiter, separator | quote]
        });
        let Strings { quotes, inside } = self.strings(block, quote, rare)?;
        Ok(self.walk_tokens(delimiter, separator, quotes, inside))
    }

    /// The tokens of a block whose strings are known (`quotes`, `inside`):
    /// opening quotes (inside, from their own byte on, and no closing
    /// quote: the walk finds it back from the next token when it needs
    /// it), the delimiters outside strings and the first byte of each run
    /// of scalar bytes.
    #[inline(always)]
    fn walk_tokens(&mut self, delimiter: u64, separator: u64, quotes: u64, inside: u64) -> u64 {
        let scalar = !(separator | inside);
        let scalar_starts = scalar & !(scalar << 1 | self.in_scalar);
        self.in_scalar = scalar >> 63;
        (quotes & inside) | (delimiter & !inside) | scalar_starts
    }

    /// The tokens of the block at `base`, classified for the skip (its
    /// strings `quotes` and `inside`), where the skip ends. Only those
    /// after the closing bracket are handed out, so a scalar that runs
    /// into the block does not matter.
    fn tokens_after_skip(&mut self, base: usize, quotes: u64, inside: u64) -> u64 {
        let [delimiter, separator] = with_block(self.bytes, base, |block| masks(block, delimiters));
        self.walk_tokens(delimiter, separator | quotes, quotes, inside)
    }

    /// The skip's view of the block at `next_block`: its strings and its
    /// brackets outside them, updating the carries.
    #[inline]
    fn skipped(&mut self, block: &[u8; BLOCK]) -> Result<Skipped, Problem> {
        if self.still_in_string(block) {
            return Ok(Skipped {
                opens: 0,
                closes: 0,
                strings: Strings {
                    quotes: 0,
                    inside: !0,
                },
            });
        }
        let [quote, rare, open, close] = masks(block, |v| {
            let [open, close] = open_close(v);
            [quote(v), rare(v), open, close]
        });
        let strings = self.strings(block, quote, rare)?;
        Ok(Skipped {
            opens: open & !strings.inside,
            closes: close & !strings.inside,
            strings,
        })
    }

    /// The strings of the block at `next_block`, from its quotes and its
    /// `rare` bytes (see [`rare`]): escapes checked, string content
    /// validated, the carries updated.
    #[inline(always)]
    fn strings(&mut self, block: &[u8; BLOCK], quote: u64, rare: u64) -> Result<Strings, Problem> {
        let (backslash, control) = if rare != 0 {
            self.split_rare(block, rare)?
        } else {
            (0, 0)
        };
        let escaped = if backslash != 0 || self.escapes_next {
            self.escapes_seen = true;
            self.escaped(self.next_block, backslash)?
        } else {
            0
        };
        let quotes = quote & !escaped;
        // From each opening quote (included) to its closing quote (not).
        let inside = prefix_xor(quotes) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        // A (whitespace) control byte inside a string; a backslash outside
        // strings (the first one is seen outside: the strings before it
        // were read right).
        if control & inside != 0 || backslash & !inside != 0 {
            return Err(Problem::MalformedJson);
        }
        self.outside = !inside;
        Ok(Strings { quotes, inside })
    }

    /// The bytes of this block (at `base`) that a backslash escapes; checks
    /// that each is a valid escape.
    #[cold]
    fn escaped(&mut self, base: usize, backslash: u64) -> Result<u64, Problem> {
        let mut escaped = 0u64;
        let mut pending = backslash;
        if self.escapes_next {
            escaped = 1;
            pending &= !1;
        }
        self.escapes_next = false;
        while pending != 0 {
            let at = pending.trailing_zeros();
            if at == 63 {
                self.escapes_next = true;
                break;
            }
            escaped |= 2 << at;
            // The escaped byte, even a backslash, escapes nothing.
            pending &= !(3 << at);
        }
        let mut check = escaped;
        while check != 0 {
            let at = base + check.trailing_zeros() as usize;
            check &= check - 1;
            self.escape_at(at)?;
        }
        Ok(escaped)
    }

    /// The backslashes and the control bytes among the `rare` bytes of
    /// `block` (at `next_block`), looked at one by one. A control byte
    /// that is not a tab, line feed or carriage return is refused wherever
    /// it is (inside a string or outside), so it ends the block here. At
    /// the first byte beyond ASCII, the block's UTF-8 is checked, and its
    /// bytes beyond ASCII are no longer looked at.
    #[inline(always)]
    fn split_rare(&mut self, block: &[u8; BLOCK], mut rare: u64) -> Result<(u64, u64), Problem> {
        let (mut backslash, mut control) = (0, 0);
        while rare != 0 {
            let at = rare.trailing_zeros() as usize;
            match block.get(at) {
                Some(b'\\') => backslash |= 1 << at,
                Some(b'\t' | b'\n' | b'\r') => control |= 1 << at,
                Some(0x80..) => {
                    rare &= !self.beyond_ascii(block)?;
                    continue;
                }
                _ => return Err(Problem::MalformedJson),
            }
            rare &= rare - 1;
        }
        Ok((backslash, control))
    }

    /// Checks the UTF-8 of the block at `next_block` (`block`, which has
    /// bytes beyond ASCII): from where the text is not checked yet (the
    /// block's start, or past a character that began in the block before)
    /// to the end of the last character that begins in it. Returns the
    /// block's bytes beyond ASCII.
    #[cold]
    fn beyond_ascii(&mut self, block: &[u8; BLOCK]) -> Result<u64, Problem> {
        let start = self.next_block;
        let end = self.bytes.len().min(start + BLOCK);
        let from = self.utf8_checked.max(start);
        // `None`: all checked with a character of the block before.
        if let Some(unchecked) = self.bytes.get(from..end) {
            self.utf8_checked = match std::str::from_utf8(unchecked) {
                Ok(_) => end,
                // A character that the block's end cuts: checked whole, from
                // the bytes after the block (up to 3).
                Err(cut) if cut.error_len().is_none() => {
                    let at = from + cut.valid_up_to();
                    let character = self.bytes.get(at..self.bytes.len().min(at + 4));
                    match character.map(std::str::from_utf8) {
                        Some(Ok(whole)) => at + whole.len(),
                        Some(Err(next)) if next.valid_up_to() > 0 => at + next.valid_up_to(),
                        _ => return Err(Problem::InvalidUtf8),
                    }
                }
                Err(_) => return Err(Problem::InvalidUtf8),
            };
        }
        Ok(masks(block, |v| [v])[0])
    }

    /// Checks the escaped byte at `at` (a position in the whole text).
    fn escape_at(&mut self, at: usize) -> Result<(), Problem> {
        match self.bytes.get(at) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'u') => match hex4(self.bytes, at + 1)? {
                0xD800..=0xDBFF => {
                    if self.bytes.get(at + 5..at + 7) != Some(b"\\u") {
                        return Err(Problem::InvalidUtf8);
                    }
                    if !(0xDC00..=0xDFFF).contains(&hex4(self.bytes, at + 7)?) {
                        return Err(Problem::InvalidUtf8);
                    }
                    self.paired_low = at + 6;
                    Ok(())
                }
                0xDC00..=0xDFFF if at != self.paired_low => Err(Problem::InvalidUtf8),
                _ => Ok(()),
            },
            _ => Err(Problem::MalformedJson),
        }
    }
}

/// The four hex digits at `at`.
pub(super) fn hex4(bytes: &[u8], at: usize) -> Result<u32, Problem> {
    let digits = bytes.get(at..at + 4).ok_or(Problem::MalformedJson)?;
    digits.iter().try_fold(0, |code, &digit| {
        let digit = char::from(digit)
            .to_digit(16)
            .ok_or(Problem::MalformedJson)?;
        Ok(code * 16 + digit)
    })
}

/// The last, partial block of a text, padded with spaces.
fn padded(rest: &[u8]) -> [u8; BLOCK] {
    let mut block = [b' '; BLOCK];
    if let Some(head) = block.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    block
}

/// Bit `i` is the XOR of bits `0..=i` of `bits`.
#[inline]
fn prefix_xor(mut bits: u64) -> u64 {
    bits ^= bits << 1;
    bits ^= bits << 2;
    bits ^= bits << 4;
    bits ^= bits << 8;
    bits ^= bits << 16;
    bits ^= bits << 32;
    bits
}

/// Whether `block` has no quote, no backslash, no control byte and no
/// byte beyond ASCII (whose UTF-8 must be checked). The first 16 bytes
/// are asked alone first: a block that starts inside a short string (most
/// keys and values) has its closing quote there, and is told apart without
/// comparing the rest. Inlined into the block's classification (out of
/// line, its call cost ~10 % of it).
#[inline(always)]
fn plain(block: &[u8; BLOCK]) -> bool {
    let special = |bytes: &[u8]| {
        let Some(bytes) = bytes.first_chunk::<16>() else {
            return u8x16::splat(0);
        };
        let v = u8x16::new(*bytes);
        v.cmp_eq(u8x16::splat(b'"')) | rare(v)
    };
    let (first, rest) = block.split_at(16);
    if special(first).move_mask() != 0 {
        return false;
    }
    let mut found = u8x16::splat(0);
    for bytes in rest.chunks_exact(16) {
        found |= special(bytes);
    }
    found.move_mask() == 0
}

/// One bit mask per test over the 64 bytes of `block`: `tests` sees 16
/// bytes at a time and returns, per mask, a vector with all ones in the
/// lanes of the bytes it marks.
#[inline(always)]
fn masks<const N: usize>(block: &[u8; BLOCK], tests: impl Fn(u8x16) -> [u8x16; N]) -> [u64; N] {
    let mut masks = [0u64; N];
    for (lane, bytes) in block.chunks_exact(16).enumerate() {
        let Some(bytes) = bytes.first_chunk::<16>() else {
            continue;
        };
        for (mask, found) in masks.iter_mut().zip(tests(u8x16::new(*bytes))) {
            *mask |= u64::from(found.move_mask() as u16) << (16 * lane);
        }
    }
    masks
}

/// `{ [` and `} ]`: `[` and `]` are `{` and `}` with bit 5 clear.
#[inline(always)]
fn open_close(v: u8x16) -> [u8x16; 2] {
    let folded = v | u8x16::splat(0x20);
    [
        folded.cmp_eq(u8x16::splat(b'{')),
        folded.cmp_eq(u8x16::splat(b'}')),
    ]
}

/// `{ } [ ] : ,` (not the quote), and the bytes no scalar has but the
/// quote: those and whitespace and control bytes (up to 0x20).
#[inline(always)]
fn delimiters(v: u8x16) -> [u8x16; 2] {
    let [open, close] = open_close(v);
    let delimiter = open | close | v.cmp_eq(u8x16::splat(b':')) | v.cmp_eq(u8x16::splat(b','));
    [delimiter, delimiter | up_to(v, 0x20)]
}

/// Quotes.
#[inline(always)]
fn quote(v: u8x16) -> u8x16 {
    v.cmp_eq(u8x16::splat(b'"'))
}

/// Backslashes, control bytes (below 0x20) and bytes beyond ASCII (0x80
/// and up): looked at one by one (see [`Tokens::split_rare`]). The last
/// two are the bytes below a space read as signed: one compare.
#[inline(always)]
fn rare(v: u8x16) -> u8x16 {
    let signed = i8x16::new(v.to_array().map(|byte| byte as i8));
    let below_space = signed.cmp_lt(i8x16::splat(0x20));
    v.cmp_eq(u8x16::splat(b'\\')) | u8x16::new(below_space.to_array().map(|lane| lane as u8))
}

/// The bytes of `v` that are at most `limit`: the minimum with `limit` is
/// the byte itself.
#[inline(always)]
fn up_to(v: u8x16, limit: u8) -> u8x16 {
    v.min(u8x16::splat(limit)).cmp_eq(v)
}

/// `f` of the block of `bytes` at `base` (the last one padded with
/// spaces).
#[inline(always)]
fn with_block<T>(bytes: &[u8], base: usize, f: impl FnOnce(&[u8; BLOCK]) -> T) -> T {
    let rest = bytes.get(base..).unwrap_or_default();
    match rest.first_chunk::<BLOCK>() {
        Some(block) => f(block),
        None => f(&padded(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the reference reads a text.
    #[derive(Debug)]
    enum Read {
        /// Valid as far as this stage goes: its tokens.
        Tokens(Vec<usize>),
        /// Refused by this stage.
        Refused,
    }

    /// Tokens and the outcome, byte at a time: the obvious way.
    fn reference(bytes: &[u8]) -> Read {
        if std::str::from_utf8(bytes).is_err() {
            return Read::Refused;
        }
        let mut tokens = Vec::new();
        let mut at = 0;
        let mut in_scalar = false;
        let mut checker = Tokens::new(bytes);
        while at < bytes.len() {
            let byte = bytes[at];
            let scalar = !matches!(
                byte,
                b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'{' | b'}' | b'[' | b']' | b':' | b','
            );
            if byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r') {
                return Read::Refused;
            }
            if scalar && !in_scalar {
                tokens.push(at);
            }
            if byte == b'\\' {
                return Read::Refused;
            }
            in_scalar = scalar;
            if !scalar && !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                tokens.push(at);
            }
            at += 1;
            if byte != b'"' {
                continue;
            }
            // A string: to its closing quote.
            loop {
                match bytes.get(at) {
                    None => return Read::Refused,
                    Some(b'"') => {
                        at += 1;
                        break;
                    }
                    Some(b'\\') => {
                        if checker.escape_at(at + 1).is_err() {
                            return Read::Refused;
                        }
                        at += 2;
                    }
                    Some(&b) if b < 0x20 => return Read::Refused,
                    Some(_) => at += 1,
                }
            }
        }
        Read::Tokens(tokens)
    }

    fn tokens(bytes: &[u8]) -> Result<Vec<usize>, Problem> {
        let mut tokens = Tokens::new(bytes);
        let mut cursor = Cursor::START;
        let mut found = Vec::new();
        loop {
            let at = tokens.next(&mut cursor);
            if at == bytes.len() {
                return tokens.fault().map_or(Ok(found), Err);
            }
            found.push(at);
        }
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn tokens_agree_with_a_byte_at_a_time_reference_on_random_text() {
        // Strings of escapes, backslash runs and plain text, long and short,
        // between structural bytes, whitespace and scalars: strings, escapes
        // and scalars straddle block boundaries at every offset, and so do
        // characters beyond ASCII. Rarely a control byte, a bad escape, a
        // stray backslash or quote, bytes that are not UTF-8.
        let inside: [&[u8]; 9] = [
            b"\\\\\\\\\\\\",
            b"\\\\",
            b"\\\"",
            b"\\u00e9",
            b"\\ud83d\\ude9a",
            b"\\/\\b\\f\\n\\r\\t",
            b"plain words of some length",
            b"x",
            "ü ✓ 🚚".as_bytes(),
        ];
        let rare: [&[u8]; 11] = [
            b"\x01",
            b"\n",
            b"\\x",
            b"\\udc00",
            b"\\ud83dx",
            b"\\u12",
            b"\x80",
            b"\xC3",
            b"\xE2\x82",
            b"\xED\xA0\x80",
            b"\xF0\x9F\x9A",
        ];
        let outside: [&[u8]; 10] = [
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b" ",
            b"\n    ",
            b"-12.5e3",
            "é🚚".as_bytes(),
        ];
        let mut rng = Rng(0x0b10_c4ed);
        for round in 0..20_000 {
            let mut text = Vec::new();
            for _ in 0..rng.below(30) {
                if rng.below(3) == 0 {
                    text.push(b'"');
                    for _ in 0..rng.below(8) {
                        text.extend_from_slice(inside[rng.below(inside.len())]);
                    }
                    if rng.below(50) == 0 {
                        text.extend_from_slice(rare[rng.below(rare.len())]);
                    }
                    if rng.below(100) != 0 {
                        text.push(b'"');
                    }
                } else if rng.below(200) == 0 {
                    let stray: [&[u8]; 6] = [b"\\", b"\"", b"\x02", b"\\\"", b"\xA9", b"\xF4\x90"];
                    text.extend_from_slice(stray[rng.below(stray.len())]);
                } else {
                    text.extend_from_slice(outside[rng.below(outside.len())]);
                }
            }
            let got = tokens(&text);
            match reference(&text) {
                Read::Tokens(expected) => assert_eq!(got, Ok(expected), "round {round}: {text:?}"),
                // The kind of problem may differ when a text has two
                // faults, found in another order.
                Read::Refused => assert!(got.is_err(), "round {round}: {text:?}"),
            }
        }
    }

    #[test]
    fn classes_and_plain_blocks_mark_exactly_their_bytes_in_every_lane() {
        for byte in 0..=255u8 {
            for at in [0, 15, 16, 31, 47, 63] {
                let mut block = [b'a'; BLOCK];
                block[at] = byte;
                let [quote, rare, open, close] = masks(&block, |v| {
                    [quote(v), rare(v), open_close(v)[0], open_close(v)[1]]
                });
                let [delimiter, separator] = masks(&block, delimiters);
                let bit = |yes: bool| u64::from(yes) << at;
                let expected = [
                    bit(byte == b'"'),
                    bit(byte == b'\\' || !(0x20..0x80).contains(&byte)),
                    bit(b"{[".contains(&byte)),
                    bit(b"}]".contains(&byte)),
                    bit(b"{}[]:,".contains(&byte)),
                    bit(b"{}[]:,".contains(&byte) || byte <= 0x20),
                ];
                assert_eq!(
                    [quote, rare, open, close, delimiter, separator],
                    expected,
                    "{byte:#x} at {at}"
                );
                let special = byte == b'"' || byte == b'\\' || !(0x20..0x80).contains(&byte);
                assert_eq!(plain(&block), !special, "{byte:#x} at {at}");
            }
        }
    }
}
