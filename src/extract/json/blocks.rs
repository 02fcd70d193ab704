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
//! String content is validated here, all of it, whether a path looks at it
//! or not: a control byte inside a string, an unknown escape, a `\u` without
//! four hex digits (malformed) or naming a lone surrogate (not Unicode), an
//! unterminated string. Control bytes other than whitespace, and
//! backslashes, are refused outside strings too. The grammar (and scalars)
//! are the walk's part, except inside a container the walk skips by
//! counting brackets ([`Tokens::skip_container`]), where nothing but this
//! stage's checks and the balance of the brackets is looked at.

use wide::u8x16;

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
    /// Opening and closing brackets of the block last classified (the
    /// cursor's), outside strings.
    opens: u64,
    closes: u64,
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
    /// The fault that stopped the classification: no token is handed out
    /// past the block that has it.
    fault: Option<Problem>,
}

/// Bit masks of one block, one bit per byte: the few a block needs in the
/// common case (no escape, no control byte), each one SIMD compare and
/// mask per 16 bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Classes {
    quote: u64,
    /// Quotes and `{ } [ ] : ,`.
    delimiter: u64,
    /// `{ [` and `} ]`.
    open: u64,
    close: u64,
    /// Whitespace and control bytes (up to 0x20).
    low: u64,
    /// Backslashes and control bytes (below 0x20): looked at one by one.
    rare: u64,
}

impl<'t> Tokens<'t> {
    pub fn new(bytes: &'t [u8]) -> Tokens<'t> {
        Tokens {
            bytes,
            next_block: 0,
            opens: 0,
            closes: 0,
            in_string: 0,
            escapes_next: false,
            in_scalar: 0,
            paired_low: usize::MAX,
            escapes_seen: false,
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
        loop {
            let (opens, closes) = (self.opens & cursor.bits, self.closes & cursor.bits);
            let (o, c) = (opens.count_ones() as usize, closes.count_ones() as usize);
            if c < open && open + o <= room {
                open = open + o - c;
            } else {
                let mut pending = opens | closes;
                while pending != 0 {
                    let bit = pending & pending.wrapping_neg();
                    pending ^= bit;
                    if closes & bit == 0 {
                        open += 1;
                        if open > room {
                            return Err(Problem::TooDeep);
                        }
                        continue;
                    }
                    open -= 1;
                    if open == 0 {
                        // The tokens after the closing bracket remain.
                        cursor.bits &= bit.wrapping_neg() << 1;
                        return Ok(cursor);
                    }
                }
            }
            cursor = self.refill();
            if cursor.base >= self.bytes.len() {
                return Err(Problem::MalformedJson);
            }
        }
    }

    /// The cursor on the next block, classified; at the end of the text (or
    /// past a fault) a cursor whose one token is the end of the text.
    fn refill(&mut self) -> Cursor {
        let end = Cursor {
            base: self.bytes.len(),
            bits: 1,
        };
        if self.next_block >= self.bytes.len() {
            self.opens = 0;
            self.closes = 0;
            return end;
        }
        match self.classify_next() {
            Ok(cursor) => cursor,
            Err(problem) => {
                self.fault = Some(problem);
                self.opens = 0;
                self.closes = 0;
                self.next_block = self.bytes.len();
                end
            }
        }
    }

    /// Classifies the block at `next_block`.
    fn classify_next(&mut self) -> Result<Cursor, Problem> {
        let start = self.next_block;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let bits = match rest.first_chunk::<BLOCK>() {
            Some(block) => self.tokens(block)?,
            None => self.tokens(&padded(rest))?,
        };
        self.next_block = start + BLOCK;
        if self.next_block >= self.bytes.len() && self.in_string != 0 {
            return Err(Problem::MalformedJson);
        }
        Ok(Cursor { base: start, bits })
    }

    /// The tokens of the block at `next_block`, updating the carries.
    #[inline]
    fn tokens(&mut self, block: &[u8; BLOCK]) -> Result<u64, Problem> {
        // Inside a long string (a base64 label, a free text): nothing ends
        // it in this block, so there is no token and no carry changes.
        if self.in_string != 0 && !self.escapes_next && plain(block) {
            self.opens = 0;
            self.closes = 0;
            return Ok(0);
        }
        let c = classify(block);
        let (backslash, control) = if c.rare != 0 {
            split_rare(block, c.rare)
        } else {
            (0, 0)
        };
        let escaped = if backslash != 0 || self.escapes_next {
            self.escapes_seen = true;
            self.escaped(self.next_block, backslash)?
        } else {
            0
        };
        let quotes = c.quote & !escaped;
        // From each opening quote (included) to its closing quote (not).
        let inside = prefix_xor(quotes) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        // A control byte inside a string, or one that is not whitespace
        // outside; a backslash outside strings (the first one is seen
        // outside: the strings before it were read right).
        if control & inside != 0 || backslash & !inside != 0 || !only_line_breaks(block, control) {
            return Err(Problem::MalformedJson);
        }
        let scalar = !(c.low | c.delimiter | inside);
        let scalar_starts = scalar & !(scalar << 1 | self.in_scalar);
        self.in_scalar = scalar >> 63;
        self.opens = c.open & !inside;
        self.closes = c.close & !inside;
        // Opening quotes (inside, from their own byte on), no closing
        // quote: the walk finds it back from the next token when it needs
        // it.
        Ok((quotes & inside) | (c.delimiter & !c.quote & !inside) | scalar_starts)
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

/// The backslashes and the control bytes among the `rare` bytes of
/// `block`, looked at one by one.
fn split_rare(block: &[u8; BLOCK], mut rare: u64) -> (u64, u64) {
    let (mut backslash, mut control) = (0, 0);
    while rare != 0 {
        let at = rare.trailing_zeros() as usize;
        if block.get(at) == Some(&b'\\') {
            backslash |= 1 << at;
        } else {
            control |= 1 << at;
        }
        rare &= rare - 1;
    }
    (backslash, control)
}

/// Whether every control byte of `block` marked in `control` is a tab,
/// line feed or carriage return.
fn only_line_breaks(block: &[u8; BLOCK], mut control: u64) -> bool {
    while control != 0 {
        let at = control.trailing_zeros() as usize;
        if !matches!(block.get(at), Some(b'\t' | b'\n' | b'\r')) {
            return false;
        }
        control &= control - 1;
    }
    true
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

/// Whether `block` has no quote, no backslash and no control byte. The
/// first 16 bytes are asked alone first: a block that starts inside a
/// short string (most keys and values) has its closing quote there, and
/// is told apart without comparing the rest.
#[inline]
fn plain(block: &[u8; BLOCK]) -> bool {
    let special = |bytes: &[u8]| {
        let Some(bytes) = bytes.first_chunk::<16>() else {
            return u8x16::splat(0);
        };
        let v = u8x16::new(*bytes);
        v.cmp_eq(u8x16::splat(b'"'))
            | v.cmp_eq(u8x16::splat(b'\\'))
            | v.min(u8x16::splat(0x1f)).cmp_eq(v)
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

/// The classes of one block.
#[inline]
fn classify(block: &[u8; BLOCK]) -> Classes {
    let mut classes = Classes::default();
    for (lane, bytes) in block.chunks_exact(16).enumerate() {
        let Some(bytes) = bytes.first_chunk::<16>() else {
            continue;
        };
        let v = u8x16::new(*bytes);
        let eq = |byte: u8| v.cmp_eq(u8x16::splat(byte));
        // At most `limit`: the minimum with `limit` is the byte itself.
        let up_to = |limit: u8| v.min(u8x16::splat(limit)).cmp_eq(v);
        // `[` and `]` are `{` and `}` with bit 5 clear.
        let folded = v | u8x16::splat(0x20);
        let quote = eq(b'"');
        let open = folded.cmp_eq(u8x16::splat(b'{'));
        let close = folded.cmp_eq(u8x16::splat(b'}'));
        let delimiter = open | close | eq(b':') | eq(b',') | quote;
        let shift = 16 * lane;
        let bits = |mask: u8x16| u64::from(mask.move_mask() as u16) << shift;
        classes.quote |= bits(quote);
        classes.delimiter |= bits(delimiter);
        classes.open |= bits(open);
        classes.close |= bits(close);
        classes.low |= bits(up_to(0x20));
        classes.rare |= bits(eq(b'\\') | up_to(0x1f));
    }
    classes
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
        // and scalars straddle block boundaries at every offset. Rarely a
        // control byte, a bad escape, a stray backslash or quote.
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
        let rare: [&[u8]; 6] = [b"\x01", b"\n", b"\\x", b"\\udc00", b"\\ud83dx", b"\\u12"];
        let outside: [&[u8]; 9] = [
            b"{", b"}", b"[", b"]", b":", b",", b" ", b"\n    ", b"-12.5e3",
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
                    text.extend_from_slice([&b"\\"[..], b"\"", b"\x02", b"\\\""][rng.below(4)]);
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
                let c = classify(&block);
                let bit = |yes: bool| u64::from(yes) << at;
                let expected = Classes {
                    quote: bit(byte == b'"'),
                    delimiter: bit(b"\"{}[]:,".contains(&byte)),
                    open: bit(b"{[".contains(&byte)),
                    close: bit(b"}]".contains(&byte)),
                    low: bit(byte <= 0x20),
                    rare: bit(byte == b'\\' || byte < 0x20),
                };
                assert_eq!(c, expected, "{byte:#x} at {at}");
                let special = byte == b'"' || byte == b'\\' || byte < 0x20;
                assert_eq!(plain(&block), !special, "{byte:#x} at {at}");
            }
        }
    }
}
