//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally:
//! fed any slices of a body, at any split points, it reports the ranges
//! of each slice that are data (for the tap; the proxy forwards the coded
//! bytes as they came or re-chunks the data) and of the trailer section
//! (to forward), and where the message ends. Every deviation from the
//! grammar is an error: a chunked body that two parsers could read two
//! ways is how requests are smuggled.

use std::ops::Range;

use thiserror::Error;

/// At most this many bytes of chunk extensions in one body, all chunks
/// together (hyper's limit, 16 KiB): the proxy ignores extensions, a peer
/// must not make it read them forever.
pub const MAX_EXTENSIONS_LEN: u64 = 16 * 1024;

/// At most this many bytes in the trailer section, its final empty line
/// excluded (hyper's limit, 16 KiB).
pub const MAX_TRAILERS_LEN: usize = 16 * 1024;

/// At most this many trailer fields (as many as header lines in a head).
pub const MAX_TRAILERS: usize = super::head::MAX_HEADERS;

/// A fault in a chunked body; the engine answers 400 (request) or ends the
/// response to the client early (response), and closes the connection.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ChunkedError {
    #[error("chunk size is not hexadecimal")]
    BadSize,
    #[error("chunk size larger than 64 bits")]
    SizeOverflow,
    #[error("chunk size line not ended by CRLF")]
    SizeLineEnd,
    #[error("invalid byte in a chunk extension")]
    BadExtension,
    #[error("chunk extensions longer than {MAX_EXTENSIONS_LEN} bytes")]
    ExtensionsTooLong,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("invalid byte in a trailer field")]
    BadTrailer,
    #[error("trailer section longer than {MAX_TRAILERS_LEN} bytes")]
    TrailersTooLong,
    #[error("more than {MAX_TRAILERS} trailer fields")]
    TooManyTrailers,
    #[error("bytes fed after the end of the body")]
    AfterEnd,
}

/// A piece of the slice just fed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Body data.
    Data(Range<usize>),
    /// Bytes of the trailer section: whole field lines with their CRLF
    /// once all pieces are put together (the final empty line excluded).
    Trailers(Range<usize>),
}

/// How far the body got with the slice fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every byte was consumed; the body goes on.
    More,
    /// The body ended this many bytes into the slice: what follows is the
    /// next message.
    Done(usize),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// At the start of a chunk size line (no digit yet).
    #[default]
    SizeStart,
    /// In the hex digits.
    Size,
    /// Spaces or tabs after the digits (hyper accepts them too).
    SizeSpace,
    /// In a chunk extension, up to its CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data, `remaining` bytes to go.
    Data,
    DataCr,
    DataLf,
    /// At the start of a line after the last chunk: a trailer field or the
    /// final CRLF.
    TrailerStart,
    /// In a trailer field name (at least one byte seen).
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    TrailerLf,
    /// After the final CR.
    EndLf,
    Done,
}

/// The decoder of one chunked body. Holds no buffer: feed it the bytes as
/// they arrive.
#[derive(Clone, Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read, then bytes of it still to come.
    remaining: u64,
    extensions: u64,
    trailer_bytes: usize,
    trailers: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte allowed in a field value or chunk extension: visible ASCII,
/// space, tab, and obs-text; no other control byte.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the whole body, trailers and final CRLF included, was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, the next bytes of the body, calling `piece` for
    /// each range of data and of trailers in it, in order.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut piece: impl FnMut(Piece),
    ) -> Result<Progress, ChunkedError> {
        let mut at = 0;
        // The trailer bytes seen in this slice.
        let mut trailers: Option<Range<usize>> = None;
        while let Some(&byte) = input.get(at) {
            if self.state == State::Data {
                let available = input.len() - at;
                let take = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                piece(Piece::Data(at..at + take));
                at += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let before = self.state;
            self.state = self.step(byte)?;
            let in_field = matches!(
                before,
                State::TrailerName | State::TrailerValue | State::TrailerLf
            ) || self.state == State::TrailerName;
            if in_field {
                trailers.get_or_insert(at..at).end = at + 1;
            }
            at += 1;
            if self.state == State::Done {
                break;
            }
        }
        if let Some(range) = trailers {
            piece(Piece::Trailers(range));
        }
        if self.state == State::Done {
            return Ok(Progress::Done(at));
        }
        Ok(Progress::More)
    }

    /// One byte outside chunk data.
    fn step(&mut self, byte: u8) -> Result<State, ChunkedError> {
        use State::*;
        Ok(match self.state {
            SizeStart | Size => match hex(byte) {
                Some(digit) => {
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|size| size.checked_add(digit))
                        .ok_or(ChunkedError::SizeOverflow)?;
                    Size
                }
                None if self.state == SizeStart => return Err(ChunkedError::BadSize),
                None => self.after_size(byte, ChunkedError::BadSize)?,
            },
            SizeSpace => match byte {
                b' ' | b'\t' => SizeSpace,
                _ => self.after_size(byte, ChunkedError::BadSize)?,
            },
            Extension => match byte {
                b'\r' => SizeLf,
                _ if is_text(byte) => {
                    self.extensions += 1;
                    if self.extensions > MAX_EXTENSIONS_LEN {
                        return Err(ChunkedError::ExtensionsTooLong);
                    }
                    Extension
                }
                _ => return Err(ChunkedError::BadExtension),
            },
            SizeLf => match byte {
                b'\n' if self.remaining == 0 => TrailerStart,
                b'\n' => Data,
                _ => return Err(ChunkedError::SizeLineEnd),
            },
            DataCr => match byte {
                b'\r' => DataLf,
                _ => return Err(ChunkedError::DataEnd),
            },
            DataLf => match byte {
                b'\n' => SizeStart,
                _ => return Err(ChunkedError::DataEnd),
            },
            TrailerStart => match byte {
                b'\r' => EndLf,
                _ if is_tchar(byte) => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(ChunkedError::TooManyTrailers);
                    }
                    self.trailer_byte()?;
                    TrailerName
                }
                _ => return Err(ChunkedError::BadTrailer),
            },
            TrailerName => {
                self.trailer_byte()?;
                match byte {
                    b':' => TrailerValue,
                    _ if is_tchar(byte) => TrailerName,
                    _ => return Err(ChunkedError::BadTrailer),
                }
            }
            TrailerValue => {
                self.trailer_byte()?;
                match byte {
                    b'\r' => TrailerLf,
                    _ if is_text(byte) => TrailerValue,
                    _ => return Err(ChunkedError::BadTrailer),
                }
            }
            TrailerLf => {
                self.trailer_byte()?;
                match byte {
                    b'\n' => TrailerStart,
                    _ => return Err(ChunkedError::BadTrailer),
                }
            }
            EndLf => match byte {
                b'\n' => Done,
                _ => return Err(ChunkedError::BadTrailer),
            },
            Data | Done => return Err(ChunkedError::AfterEnd),
        })
    }

    /// The byte after a chunk size's digits (and spaces).
    fn after_size(&self, byte: u8, fault: ChunkedError) -> Result<State, ChunkedError> {
        match byte {
            b' ' | b'\t' => Ok(State::SizeSpace),
            b';' => Ok(State::Extension),
            b'\r' => Ok(State::SizeLf),
            _ => Err(fault),
        }
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS_LEN {
            return Err(ChunkedError::TrailersTooLong);
        }
        Ok(())
    }
}

/// A chunked body's data, its trailer bytes, and where it ended (`None`:
/// not ended).
pub type Decoded = (Vec<u8>, Vec<u8>, Option<usize>);

/// Decodes `body` fed in the pieces that cutting it at `splits` (offsets,
/// in order; out-of-order ones cut nothing) gives, collecting data and
/// trailers; the end is an offset into `body`. For tests and the fuzz
/// target: the engine feeds a [`ChunkedDecoder`] as bytes arrive.
pub fn decode_split(body: &[u8], splits: &[usize]) -> Result<Decoded, ChunkedError> {
    let mut decoder = ChunkedDecoder::new();
    let (mut data, mut trailers) = (Vec::new(), Vec::new());
    let mut from = 0;
    for to in splits.iter().copied().chain([body.len()]) {
        let to = to.clamp(from, body.len());
        let slice = body.get(from..to).unwrap_or_default();
        let progress = decoder.feed(slice, |piece| match piece {
            Piece::Data(range) => data.extend_from_slice(slice.get(range).unwrap_or_default()),
            Piece::Trailers(range) => {
                trailers.extend_from_slice(slice.get(range).unwrap_or_default());
            }
        })?;
        if let Progress::Done(end) = progress {
            return Ok((data, trailers, Some(from + end)));
        }
        from = to;
    }
    Ok((data, trailers, None))
}

fn hex(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::decode_split as decode;
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn data_trailers_and_end_at_every_split_point() {
        let body =
            b"5;name=value\r\nhello\r\n0006\t \r\n world\r\n0\r\nX-Sum: 1\r\nX-B:\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for split in 0..=body.len() {
            let (data, trailers, done) = decode(body, &[split]).expect("valid");
            assert_eq!(data, b"hello world", "split at {split}");
            assert_eq!(trailers, b"X-Sum: 1\r\nX-B:\r\n", "split at {split}");
            assert_eq!(done, Some(end), "split at {split}");
        }
        let bytewise: Vec<usize> = (1..body.len()).collect();
        assert_eq!(decode(body, &bytewise).expect("valid").2, Some(end));
    }

    #[test]
    fn a_body_without_trailers_ends_after_the_last_chunk() {
        let (data, trailers, done) = decode(b"0\r\n\r\n", &[]).expect("valid");
        assert!(data.is_empty() && trailers.is_empty());
        assert_eq!(done, Some(5));
        assert_eq!(
            decode(b"3\r\nabc\r\n0\r\n", &[]),
            Ok((b"abc".to_vec(), vec![], None))
        );
    }

    #[test]
    fn malformed_bodies_name_their_fault() {
        let cases: [(&[u8], ChunkedError); 14] = [
            (b"g\r\n", ChunkedError::BadSize),
            (b"\r\n", ChunkedError::BadSize),
            (b"-1\r\n", ChunkedError::BadSize),
            (b"0x5\r\n", ChunkedError::BadSize),
            (b"5 5\r\n", ChunkedError::BadSize),
            (b"10000000000000000\r\n", ChunkedError::SizeOverflow),
            (b"5\n", ChunkedError::BadSize),
            (b"5\rx", ChunkedError::SizeLineEnd),
            (b"5;a\nb\r\n", ChunkedError::BadExtension),
            (b"5;a\x00\r\n", ChunkedError::BadExtension),
            (b"3\r\nabcd\r\n", ChunkedError::DataEnd),
            (b"3\r\nabc\n", ChunkedError::DataEnd),
            (b"0\r\nX : 1\r\n\r\n", ChunkedError::BadTrailer),
            (b"0\r\n folded\r\n\r\n", ChunkedError::BadTrailer),
        ];
        for (body, fault) in cases {
            assert_eq!(
                decode(body, &[]).map(|_| ()),
                Err(fault),
                "{}",
                body.escape_ascii()
            );
        }
        assert_eq!(
            decode(b"0\r\nX: 1\n\r\n", &[]).map(|_| ()),
            Err(ChunkedError::BadTrailer)
        );
        assert_eq!(
            decode(b"0\r\n\r\r", &[]).map(|_| ()),
            Err(ChunkedError::BadTrailer)
        );
        // Leading zeros do not overflow.
        assert!(decode(b"00000000000000000000001\r\na\r\n0\r\n\r\n", &[]).is_ok());
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut body = b"1;".to_vec();
        body.resize(2 + MAX_EXTENSIONS_LEN as usize, b'e');
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert!(decode(&body, &[]).is_ok());
        let mut longer = b"1;e".to_vec();
        longer.extend_from_slice(&body[2..]);
        assert_eq!(
            decode(&longer, &[]).map(|_| ()),
            Err(ChunkedError::ExtensionsTooLong)
        );

        let mut body = b"0\r\nX: ".to_vec();
        body.resize(3 + MAX_TRAILERS_LEN + 1, b'v');
        assert_eq!(
            decode(&body, &[]).map(|_| ()),
            Err(ChunkedError::TrailersTooLong)
        );

        let mut body = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILERS {
            body.extend_from_slice(b"X: 1\r\n");
        }
        assert_eq!(
            decode(&body, &[]).map(|_| ()),
            Err(ChunkedError::TooManyTrailers)
        );
    }

    #[test]
    fn feeding_after_the_end_is_an_error() {
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(decoder.feed(b"0\r\n\r\n", |_| {}), Ok(Progress::Done(5)));
        assert!(decoder.is_done());
        assert_eq!(decoder.feed(b"x", |_| {}), Err(ChunkedError::AfterEnd));
    }

    /// A random chunked encoding of a random body, with extensions,
    /// upper- and lower-case hex with leading zeros, and trailers.
    fn encode(rng: &mut Rng) -> Vec<u8> {
        let mut coded = Vec::new();
        for _ in 0..rng.below(6) {
            let size = 1 + rng.below(300);
            let digits = format!("{size:x}");
            let digits = if rng.below(2) == 0 {
                digits.to_uppercase()
            } else {
                digits
            };
            coded.extend_from_slice("0".repeat(rng.below(3)).as_bytes());
            coded.extend_from_slice(digits.as_bytes());
            if rng.below(2) == 0 {
                coded.extend_from_slice(
                    format!(";ext{}=\"v {}\"", rng.below(9), rng.next()).as_bytes(),
                );
            }
            coded.extend_from_slice(b"\r\n");
            coded.extend((0..size).map(|_| rng.next() as u8));
            coded.extend_from_slice(b"\r\n");
        }
        coded.extend_from_slice(b"0\r\n");
        for i in 0..rng.below(3) {
            coded.extend_from_slice(format!("X-T{i}: {}\r\n", rng.next()).as_bytes());
        }
        coded.extend_from_slice(b"\r\n");
        coded
    }

    /// The reference: the whole body at once, read the plain way (size
    /// line up to CRLF, extensions skipped, data, CRLF; trailer lines up
    /// to the empty one).
    fn reference(coded: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
        let line_end = |from: usize| {
            from + coded[from..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("CRLF")
        };
        let (mut data, mut at) = (Vec::new(), 0);
        loop {
            let end = line_end(at);
            let line = &coded[at..end];
            let digits = line.split(|&b| b == b';').next().expect("size");
            let size =
                usize::from_str_radix(std::str::from_utf8(digits).expect("hex"), 16).expect("hex");
            at = end + 2;
            if size == 0 {
                break;
            }
            data.extend_from_slice(&coded[at..at + size]);
            at += size + 2;
        }
        let trailers_from = at;
        while line_end(at) != at {
            at = line_end(at) + 2;
        }
        (data, coded[trailers_from..at].to_vec(), at + 2)
    }

    #[test]
    fn random_bodies_fed_at_random_splits_decode_as_the_reference_does() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let mut coded = encode(&mut rng);
            let expected = reference(&coded);
            // The next message's bytes follow the body.
            coded.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let mut splits: Vec<usize> =
                (0..rng.below(8)).map(|_| rng.below(coded.len())).collect();
            splits.sort_unstable();
            let (data, trailers, end) = decode(&coded, &splits).expect("valid");
            assert_eq!(
                (data, trailers, end),
                (expected.0, expected.1, Some(expected.2))
            );
        }
    }
}
