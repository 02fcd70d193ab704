//! A transaction's exchange timeline: its most recent exchanges, oldest
//! first, delta-encoded back to back in one byte buffer.
//!
//! A store holds up to `max_exchanges_per_transaction` of these per
//! transaction, a million transactions deep, so each exchange is a few
//! variable-length integers (LEB128) relative to the exchange before it,
//! and nothing is lost: every value reads back exactly as it was pushed.
//! A record is, in order:
//!
//! - the method's code (low nibble: one of [`STANDARD_METHODS`], or an
//!   extension method whose text follows at the end) and the upstream
//!   error's (high nibble), one byte;
//! - a byte of flags: which optional parts follow;
//! - the id, as the zigzag difference from the previous exchange's (the
//!   first record's from zero: it is re-encoded when the one before it
//!   falls off);
//! - the start, as the zigzag nanosecond difference from the previous
//!   exchange's start (the first record's from the epoch), and the
//!   duration, both *scaled*: a
//!   2-bit tag says whether the number counts seconds, milliseconds,
//!   microseconds or nanoseconds (the coarsest that is exact), so round
//!   times take a byte or two;
//! - the status when it is not 200; the system, operation and milestone
//!   as [`NameId`]s (an absent one is left out);
//! - the path's text (length, bytes), unless it is the previous record's
//!   path (a flag says so and nothing follows: a transaction's exchanges
//!   often repeat an endpoint); a timeline holds no other copy of its
//!   paths;
//! - the keys: how many, then each one's position in the transaction's
//!   `keys`, in the order carried;
//! - extraction problems (count, one byte each), an extension method's
//!   text (length, bytes), when there are any.
//!
//! The usual exchange takes 12–20 bytes (40 in the earlier fixed-size
//! record). Reading walks the buffer from the start: readers see an
//! [`ExchangeRecord`], a decoded view with the same accessors as before.

use std::time::{Duration, SystemTime};

use smallvec::SmallVec;

use super::transaction::{KeyRefs, NameId, Stamp};
use crate::config::{kind, Milestone, Operation, System};
use crate::extract::Problem;
use crate::proxy::UpstreamError;

/// A transaction's most recent exchanges, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// The records, back to back (see the module doc).
    bytes: Vec<u8>,
    /// How many records `bytes` holds.
    len: u32,
    /// Where the last record's path is written in `bytes` (its length,
    /// then its text): in the last record, or in the latest before it
    /// that has a text of its own (the records since say "the same path").
    last_path: u32,
    /// The last record's id and start (the next record's are differences
    /// from them).
    last_id: u64,
    last_at: Stamp,
}

/// What an exchange's record is made from.
#[derive(Debug, Clone)]
pub struct NewExchange<'a> {
    pub id: u64,
    pub at: Stamp,
    pub system: &'a System,
    pub operation: Option<&'a Operation>,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: u16,
    pub error: Option<UpstreamError>,
    pub duration: Duration,
    pub keys: KeyRefs,
    pub milestone: Option<&'a Milestone>,
    pub problems: &'a [Problem],
}

/// One exchange of a [`Timeline`] as readers see it: the values it was
/// pushed with, decoded.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRecord<'a> {
    pub id: u64,
    /// The status the client saw (502/504 when the upstream failed).
    pub status: u16,
    /// Why the upstream failed, when it did.
    pub error: Option<UpstreamError>,
    pub system: NameId<kind::System>,
    pub operation: Option<NameId<kind::Operation>>,
    pub milestone: Option<NameId<kind::Milestone>>,
    at: Stamp,
    duration: Duration,
    /// A code of [`STANDARD_METHODS`], or [`EXTENSION_METHOD`].
    method: u8,
    /// An extension method's text.
    method_text: &'a str,
    path: &'a str,
    /// How many keys, and their positions, encoded.
    key_count: usize,
    keys: &'a [u8],
    /// One byte per problem ([`Problem::ALL`] index).
    problems: &'a [u8],
}

/// The methods a record keeps as a code (its position here).
const STANDARD_METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::PATCH,
    http::Method::HEAD,
    http::Method::OPTIONS,
    http::Method::CONNECT,
    http::Method::TRACE,
];

/// The code of a method not in [`STANDARD_METHODS`] (its text follows).
const EXTENSION_METHOD: u8 = 0xF;

/// The flags of a record: which optional parts follow.
const HAS_OPERATION: u8 = 1;
const HAS_MILESTONE: u8 = 1 << 1;
const HAS_PROBLEMS: u8 = 1 << 2;
/// The path is the previous record's (no text follows).
const SAME_PATH: u8 = 1 << 3;
/// The status follows (else it is 200).
const HAS_STATUS: u8 = 1 << 4;

/// The usual status, left out of a record.
const OK: u16 = 200;

/// Nanoseconds per unit of a scaled number, by its 2-bit tag.
const SCALES: [u64; 4] = [1, 1_000, 1_000_000, 1_000_000_000];

/// The fields of an exchange, decoded: what [`encode`] writes, with
/// borrowed text (`T` a `&str`, `K` an iterator of key positions, `P` one
/// of problem codes, [`problem_code`]) or owned ([`OwnedFields`]).
struct Fields<T, K, P> {
    id: u64,
    at: Stamp,
    duration: Duration,
    status: u16,
    error: Option<UpstreamError>,
    system: NameId<kind::System>,
    operation: Option<NameId<kind::Operation>>,
    milestone: Option<NameId<kind::Milestone>>,
    /// A code of [`STANDARD_METHODS`], or the extension method's text.
    method: Result<u8, T>,
    path: T,
    keys: K,
    problems: P,
}

/// An exchange's fields with owned text: a timeline re-encoding itself
/// (a merge) reads every record out first.
type OwnedFields = Fields<Box<str>, Vec<u32>, Vec<u8>>;

impl OwnedFields {
    /// The fields of `x`, its key positions mapped by `map` (positions
    /// with no entry are left out), or kept when `map` is `None`.
    fn of(x: &ExchangeRecord<'_>, map: Option<&[u32]>) -> Self {
        Fields {
            id: x.id,
            at: x.at,
            duration: x.duration,
            status: x.status,
            error: x.error,
            system: x.system,
            operation: x.operation,
            milestone: x.milestone,
            method: match x.method {
                EXTENSION_METHOD => Err(x.method_text.into()),
                code => Ok(code),
            },
            path: x.path.into(),
            keys: x
                .keys()
                .filter_map(|p| match map {
                    Some(map) => map.get(p).copied(),
                    None => u32::try_from(p).ok(),
                })
                .collect(),
            problems: x.problems.to_vec(),
        }
    }

    fn fields(&self) -> Fields<&str, impl Iterator<Item = usize> + Clone + '_, Codes<'_>> {
        Fields {
            id: self.id,
            at: self.at,
            duration: self.duration,
            status: self.status,
            error: self.error,
            system: self.system,
            operation: self.operation,
            milestone: self.milestone,
            method: self.method.as_ref().copied().map_err(|t| &**t),
            path: &self.path,
            keys: self.keys.iter().map(|&p| p as usize),
            problems: self.problems.iter().copied(),
        }
    }
}

/// Problem codes, as a record holds them.
type Codes<'a> = std::iter::Copied<std::slice::Iter<'a, u8>>;

#[cfg(test)]
impl<'a> NewExchange<'a> {
    /// A `POST` of `path` that took 2 ms, answered 200, for tests.
    pub(crate) fn example(
        system: &'a System,
        id: u64,
        at: SystemTime,
        path: &'a str,
        keys: KeyRefs,
    ) -> Self {
        NewExchange {
            id,
            at: Stamp::new(at),
            system,
            operation: None,
            method: &http::Method::POST,
            path,
            status: 200,
            error: None,
            duration: Duration::from_millis(2),
            keys,
            milestone: None,
            problems: &[],
        }
    }
}

impl Timeline {
    /// How many exchanges it holds.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The exchanges, oldest first.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            rest: &self.bytes,
            left: self.len as usize,
            id: 0,
            at: Stamp::default(),
            path: "",
        }
    }

    /// The exchange at `index` (0: the oldest).
    pub fn get(&self, index: usize) -> Option<ExchangeRecord<'_>> {
        self.iter().nth(index)
    }

    /// The size of the encoded records in bytes (the buffer may hold more
    /// room).
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends `new` (see [`Timeline::drop_oldest_beyond`] for the bound).
    pub fn push(&mut self, new: NewExchange<'_>) {
        let method = STANDARD_METHODS
            .iter()
            .position(|m| m == new.method)
            .map_or(Err(new.method.as_str()), |p| Ok(p as u8));
        self.push_fields(Fields {
            id: new.id,
            at: new.at,
            duration: new.duration,
            status: new.status,
            error: new.error,
            system: NameId::new(new.system),
            operation: new.operation.map(NameId::new),
            milestone: new.milestone.map(NameId::new),
            method,
            path: new.path,
            keys: new.keys.iter(),
            problems: new.problems.iter().map(|&p| problem_code(p)),
        });
    }

    /// Drops the oldest exchanges beyond `bound`; returns how many.
    pub fn drop_oldest_beyond(&mut self, bound: usize) -> usize {
        let over = self.len().saturating_sub(bound);
        if over == 0 {
            return 0;
        }
        if over == self.len() {
            self.bytes.clear();
            self.len = 0;
            return over;
        }
        let mut records = self.iter();
        for _ in 0..over {
            records.next();
        }
        // The new first record, encoded afresh: its id and start made
        // absolute, its path written out (the record it repeated is gone).
        let Some(first) = records.next() else {
            return 0;
        };
        let first_end = self.bytes.len() - records.rest.len();
        let (head, path_at) = encode(OwnedFields::of(&first, None).fields(), None);
        let last_path = self.last_path as usize;
        self.last_path = if last_path < first_end {
            // Every record after the first repeats its path.
            path_at.unwrap_or(0) as u32
        } else {
            (last_path - first_end + head.len()) as u32
        };
        drop(self.bytes.splice(..first_end, head));
        self.len -= over as u32;
        over
    }

    /// Takes in the exchanges of `other` (a transaction merged into this
    /// one), each key position `p` replaced by `moved[p]` (positions with
    /// no entry are left out), and puts all in time order (ties by id).
    pub fn absorb(&mut self, other: &Timeline, moved: &[u32]) {
        let mut all: Vec<OwnedFields> = self.iter().map(|x| OwnedFields::of(&x, None)).collect();
        all.extend(other.iter().map(|x| OwnedFields::of(&x, Some(moved))));
        all.sort_by_key(|f| (f.at, f.id));
        self.rewrite(&all);
    }

    /// Encodes `records` afresh, in that order.
    fn rewrite(&mut self, records: &[OwnedFields]) {
        self.bytes.clear();
        self.len = 0;
        for record in records {
            self.push_fields(record.fields());
        }
    }

    /// Appends the record of `fields`.
    fn push_fields<K, P>(&mut self, fields: Fields<&str, K, P>)
    where
        K: Iterator<Item = usize> + Clone,
        P: ExactSizeIterator<Item = u8>,
    {
        if self.len == 0 {
            self.bytes.clear();
        }
        let first = self.len == 0;
        let previous = (!first).then(|| Previous {
            id: self.last_id,
            at: self.last_at,
            path: self.last_path_bytes(),
        });
        let (id, at) = (fields.id, fields.at);
        let (record, path_at) = encode(fields, previous);
        if self.bytes.capacity() - self.bytes.len() < record.len() {
            // Room in steps of 32 bytes (jemalloc's size classes are 16
            // and 32 bytes apart up to 256): a reallocation every 2–3
            // exchanges instead of every one, little slack beyond the
            // class's own rounding.
            // The first record makes room for a second like it (a
            // transaction of one exchange is rare): one growth fewer.
            let need = if first {
                2 * record.len()
            } else {
                self.bytes.len() + record.len()
            };
            let want = need.next_multiple_of(GROWTH);
            self.bytes.reserve_exact(want - self.bytes.len());
        }
        if let Some(path_at) = path_at {
            self.last_path = (self.bytes.len() + path_at) as u32;
        }
        self.bytes.extend_from_slice(&record);
        self.len += 1;
        self.last_id = id;
        self.last_at = at;
    }

    /// The last record's path, as written (see [`Timeline::last_path`]).
    fn last_path_bytes(&self) -> &[u8] {
        let mut r = Reader(
            self.bytes
                .get(self.last_path as usize..)
                .unwrap_or_default(),
        );
        r.number()
            .and_then(|len| r.take(usize::try_from(len).ok()?))
            .unwrap_or_default()
    }
}

/// What a record is encoded relative to: the record before it.
struct Previous<'a> {
    id: u64,
    at: Stamp,
    path: &'a [u8],
}

/// The record of `fields` (see the module doc), following `previous` (or
/// the first one), and where its path's length and text start in it when
/// it writes them (`None`: the same path as `previous`). Encoded aside,
/// then added with exact growth (a transaction holds a few records: no
/// doubling slack).
fn encode<K, P>(fields: Fields<&str, K, P>, previous: Option<Previous<'_>>) -> (Out, Option<usize>)
where
    K: Iterator<Item = usize> + Clone,
    P: ExactSizeIterator<Item = u8>,
{
    let (id, at, same_path) = match previous {
        Some(p) => (p.id, p.at, p.path == fields.path.as_bytes()),
        None => (0, Stamp::default(), false),
    };
    let mut record = Out::new();
    let bytes = &mut record;
    let method = match fields.method {
        Ok(code) => code,
        Err(_) => EXTENSION_METHOD,
    };
    let error = fields.error.map_or(0, |e| e.index() as u8 + 1);
    bytes.push(method | (error << 4));
    let mut flags = 0;
    if fields.operation.is_some() {
        flags |= HAS_OPERATION;
    }
    if fields.milestone.is_some() {
        flags |= HAS_MILESTONE;
    }
    if fields.problems.len() > 0 {
        flags |= HAS_PROBLEMS;
    }
    if same_path {
        flags |= SAME_PATH;
    }
    if fields.status != OK {
        flags |= HAS_STATUS;
    }
    bytes.push(flags);
    put(bytes, u128::from(zigzag(fields.id.wrapping_sub(id) as i64)));
    put_scaled(bytes, fields.at.nanos().wrapping_sub(at.nanos()) as i64);
    put_duration(bytes, fields.duration);
    if fields.status != OK {
        put(bytes, u128::from(fields.status));
    }
    put(bytes, u128::from(fields.system.plus_one().get()));
    if let Some(operation) = fields.operation {
        put(bytes, u128::from(operation.plus_one().get()));
    }
    if let Some(milestone) = fields.milestone {
        put(bytes, u128::from(milestone.plus_one().get()));
    }
    let path_at = (!same_path).then(|| {
        let at = bytes.len();
        put_text(bytes, fields.path);
        at
    });
    put(bytes, fields.keys.clone().count() as u128);
    for p in fields.keys {
        put(bytes, p as u128);
    }
    if fields.problems.len() > 0 {
        put(bytes, fields.problems.len() as u128);
        bytes.extend(fields.problems);
    }
    if let Err(text) = fields.method {
        put_text(bytes, text);
    }
    (record, path_at)
}

/// The exchanges of a [`Timeline`], oldest first, decoded one by one.
#[derive(Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
    left: usize,
    /// The previous record's id, start and path.
    id: u64,
    at: Stamp,
    path: &'a str,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ExchangeRecord<'a>;

    fn next(&mut self) -> Option<ExchangeRecord<'a>> {
        if self.left == 0 {
            return None;
        }
        let (record, rest) = self.decode()?;
        self.rest = rest;
        self.left -= 1;
        self.id = record.id;
        self.at = record.at;
        self.path = record.path;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> Iter<'a> {
    /// The next record and what follows it (`None` only for a buffer this
    /// module did not write).
    fn decode(&self) -> Option<(ExchangeRecord<'a>, &'a [u8])> {
        let mut r = Reader(self.rest);
        let method_error = r.byte()?;
        let flags = r.byte()?;
        let id = self
            .id
            .wrapping_add(unzigzag(u64::try_from(r.number()?).ok()?) as u64);
        let at = Stamp::from_nanos(self.at.nanos().wrapping_add(r.scaled()? as u64));
        let duration = r.duration()?;
        let status = if flags & HAS_STATUS != 0 {
            u16::try_from(r.number()?).ok()?
        } else {
            OK
        };
        let system = r.name()?;
        let operation = if flags & HAS_OPERATION != 0 {
            Some(r.name()?)
        } else {
            None
        };
        let milestone = if flags & HAS_MILESTONE != 0 {
            Some(r.name()?)
        } else {
            None
        };
        let path = if flags & SAME_PATH != 0 {
            self.path
        } else {
            r.text()?
        };
        let key_count = usize::try_from(r.number()?).ok()?;
        let keys_start = r.0;
        for _ in 0..key_count {
            r.number()?;
        }
        let keys = &keys_start[..keys_start.len() - r.0.len()];
        let problems: &[u8] = if flags & HAS_PROBLEMS != 0 {
            let count = usize::try_from(r.number()?).ok()?;
            r.take(count)?
        } else {
            &[]
        };
        let method = method_error & 0xF;
        let method_text = if method == EXTENSION_METHOD {
            r.text()?
        } else {
            ""
        };
        let error = match method_error >> 4 {
            0 => None,
            code => UpstreamError::ALL.get(usize::from(code) - 1).copied(),
        };
        let record = ExchangeRecord {
            id,
            status,
            error,
            system,
            operation,
            milestone,
            at,
            duration,
            method,
            method_text,
            path,
            key_count,
            keys,
            problems,
        };
        Some((record, r.0))
    }
}

/// Reads what [`encode`] wrote.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    /// A LEB128 number.
    fn number(&mut self) -> Option<u128> {
        let mut value = 0u128;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value |= u128::from(b & 0x7F).checked_shl(shift)?;
            if b < 0x80 {
                return Some(value);
            }
            shift += 7;
        }
    }

    /// A scaled signed number of nanoseconds ([`put_scaled`]).
    fn scaled(&mut self) -> Option<i64> {
        let n = self.number()?;
        let scale = SCALES[(n & 3) as usize] as i64;
        let q = unzigzag(u64::try_from(n >> 2).ok()?);
        q.checked_mul(scale)
    }

    /// A scaled duration ([`put_duration`]).
    fn duration(&mut self) -> Option<Duration> {
        let n = self.number()?;
        let nanos = (n >> 2).checked_mul(u128::from(SCALES[(n & 3) as usize]))?;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
    }

    fn name<T>(&mut self) -> Option<NameId<T>> {
        let id = std::num::NonZeroU16::new(u16::try_from(self.number()?).ok()?)?;
        Some(NameId::from_plus_one(id))
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.number()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// Where a record is encoded.
type Out = SmallVec<[u8; 64]>;

/// The step in which a timeline's buffer grows.
const GROWTH: usize = 32;

/// Appends `value` as LEB128 (7 bits a byte, low first).
#[inline]
fn put(bytes: &mut Out, value: u128) {
    // Most numbers of a record (ids, positions, flags of a kind) take one.
    if value < 0x80 {
        bytes.push(value as u8);
    } else {
        put_long(bytes, value);
    }
}

/// [`put`] of a value of two bytes or more.
fn put_long(bytes: &mut Out, mut value: u128) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// Appends a length and `text`.
fn put_text(bytes: &mut Out, text: &str) {
    put(bytes, text.len() as u128);
    bytes.extend_from_slice(text.as_bytes());
}

/// The coarsest tag of [`SCALES`] that divides `nanos` (64-bit remainders
/// by constants: a multiplication each, where 128-bit ones called out).
fn scale_of(nanos: u64) -> usize {
    if nanos % 1_000_000_000 == 0 {
        3
    } else if nanos % 1_000_000 == 0 {
        2
    } else if nanos % 1_000 == 0 {
        1
    } else {
        0
    }
}

/// Appends signed nanoseconds as their zigzag quotient by the coarsest
/// exact scale, shifted left by 2 over the scale's tag.
fn put_scaled(bytes: &mut Out, nanos: i64) {
    let tag = scale_of(nanos.unsigned_abs());
    let q = nanos / SCALES[tag] as i64;
    put(bytes, (u128::from(zigzag(q)) << 2) | tag as u128);
}

/// Appends a duration as its nanoseconds' quotient by the coarsest exact
/// scale, shifted left by 2 over the scale's tag.
fn put_duration(bytes: &mut Out, duration: Duration) {
    // The scale that divides the nanoseconds divides the second's part
    // and the whole seconds' (a multiple of every scale): found from the
    // first, without 128-bit division.
    let nanos = u64::from(duration.subsec_nanos());
    let tag = scale_of(nanos);
    let scale = SCALES[tag];
    let quotient =
        u128::from(duration.as_secs()) * u128::from(SCALES[3] / scale) + u128::from(nanos / scale);
    put(bytes, (quotient << 2) | tag as u128);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A problem's code: its position in [`Problem::ALL`].
fn problem_code(problem: Problem) -> u8 {
    Problem::ALL.iter().position(|&p| p == problem).unwrap_or(0) as u8
}

/// The problems of an exchange, in the order found
/// ([`ExchangeRecord::problems`]).
#[derive(Debug, Clone, Copy)]
pub struct Problems<'a>(&'a [u8]);

impl<'a> Problems<'a> {
    /// The problems, in order.
    pub fn iter(self) -> impl Iterator<Item = Problem> + 'a {
        self.0
            .iter()
            .filter_map(|&code| Problem::ALL.get(usize::from(code)).copied())
    }

    /// How many.
    pub fn len(self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> ExchangeRecord<'a> {
    /// When the exchange started.
    pub fn at(&self) -> SystemTime {
        self.at.time()
    }

    /// How long it took, as the client saw it.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The request method (`POST`, or an extension method's text).
    pub fn method(&self) -> &'a str {
        match STANDARD_METHODS.get(usize::from(self.method)) {
            Some(method) => method.as_str(),
            None => self.method_text,
        }
    }

    /// The request path.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The exchange's keys, in the order it carried them, as positions in
    /// the transaction's `keys`.
    pub fn keys(&self) -> impl Iterator<Item = usize> + 'a {
        let mut r = Reader(self.keys);
        (0..self.key_count).map_while(move |_| usize::try_from(r.number()?).ok())
    }

    /// Extraction problems (`malformed_json` …), in the order found.
    pub fn problems(&self) -> Problems<'a> {
        Problems(self.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Symbols;

    fn wms() -> System {
        let mut systems: Symbols<kind::System> = Default::default();
        systems.intern("wms").expect("intern")
    }

    fn exchange<'a>(
        system: &'a System,
        id: u64,
        at: SystemTime,
        path: &'a str,
        keys: &[u32],
    ) -> NewExchange<'a> {
        NewExchange::example(system, id, at, path, KeyRefs::new(keys))
    }

    const T0: Duration = Duration::new(1_800_000_000, 123_456_789);

    #[test]
    fn the_usual_exchange_takes_a_few_bytes() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        // The bench's exchanges: a minute apart, 2 ms, one path, 1–3 keys.
        for step in 0..8u64 {
            let at = at + Duration::from_secs(60 * step);
            timeline.push(exchange(&wms, 1_000_000 + step, at, "/api/step", &[0, 1]));
        }
        assert_eq!(timeline.len(), 8);
        // The first record's id and start are absolute (3 and 10 bytes),
        // its path written out (10); then method and flags 2, id 1, start
        // 2 (60 s), duration 1 (2 ms), system 1, the same path 0, keys 3:
        // 10 bytes.
        assert!(
            timeline.encoded_len() <= 30 + 7 * 10,
            "{}",
            timeline.encoded_len()
        );
        // Times to the nanosecond, a duration of arbitrary nanoseconds.
        let mut exact = Timeline::default();
        let mut new = exchange(&wms, 1, at, "/a", &[0]);
        exact.push(new.clone());
        let first = exact.encoded_len();
        new.at = Stamp::new(at + Duration::new(61, 987_654_321));
        new.duration = Duration::new(0, 12_345_678);
        exact.push(new);
        let x = exact.get(1).expect("pushed");
        assert_eq!(x.at(), at + Duration::new(61, 987_654_321));
        assert_eq!(x.duration(), Duration::new(0, 12_345_678));
        // Method and flags 2, id 1, start 6, duration 4, system, keys 2.
        let second = exact.encoded_len() - first;
        assert!(second <= 16, "{second}");
    }

    #[test]
    fn every_upstream_error_reads_back() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        for error in UpstreamError::ALL {
            let mut new = exchange(&wms, 1, at, "/a", &[]);
            new.error = Some(error);
            timeline.push(new);
        }
        let read: Vec<Option<UpstreamError>> = timeline.iter().map(|x| x.error).collect();
        let expected: Vec<Option<UpstreamError>> = UpstreamError::ALL.map(Some).into();
        assert_eq!(read, expected);
    }

    #[test]
    fn every_value_reads_back_exactly() {
        let mut systems: Symbols<kind::System> = Default::default();
        let wms = systems.intern("wms").expect("intern");
        let mut operations: Symbols<kind::Operation> = Default::default();
        let op = operations.intern("buy").expect("intern");
        let mut milestones: Symbols<kind::Milestone> = Default::default();
        let shipped = milestones.intern("shipped").expect("intern");
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        timeline.push(exchange(&wms, 10, at, "/a", &[]));
        // Far later and far earlier (beyond any 48-bit offset), a long
        // duration, an extension method, problems with a repeat, many and
        // far keys, ids going down.
        let far = at + Duration::new(40 * 3_600 * 24 * 365, 7);
        let early = SystemTime::UNIX_EPOCH + Duration::new(3, 1);
        let propfind = http::Method::from_bytes(b"PROPFIND").expect("token");
        let many: Vec<u32> = vec![16, 0, 3, 3, 1, 2, 5, 6, 70_000];
        let problems = [
            Problem::Truncated,
            Problem::MalformedJson,
            Problem::Truncated,
            Problem::KeyMissing,
        ];
        let mut odd = exchange(&wms, u64::MAX, far, "/b", &many);
        odd.duration = Duration::new(u64::MAX, 999_999_999);
        odd.method = &propfind;
        odd.problems = &problems;
        odd.operation = Some(&op);
        odd.milestone = Some(&shipped);
        odd.status = 504;
        odd.error = Some(UpstreamError::Timeout);
        timeline.push(odd);
        let mut back = exchange(&wms, 3, early, "/c", &[1]);
        back.duration = Duration::ZERO;
        timeline.push(back);

        let x = timeline.get(1).expect("pushed");
        assert_eq!((x.id, x.at(), x.status), (u64::MAX, far, 504));
        assert_eq!(x.duration(), Duration::new(u64::MAX, 999_999_999));
        assert_eq!(x.method(), "PROPFIND");
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            [16, 0, 3, 3, 1, 2, 5, 6, 70_000]
        );
        assert_eq!(x.problems().iter().collect::<Vec<_>>(), problems);
        assert_eq!(x.path(), "/b");
        assert_eq!(x.error, Some(UpstreamError::Timeout));
        assert!(x.operation.is_some_and(|o| o.is(&op)));
        assert!(x.milestone.is_some_and(|m| m.is(&shipped)));
        let y = timeline.get(2).expect("pushed");
        assert_eq!((y.id, y.at(), y.duration()), (3, early, Duration::ZERO));
        assert_eq!((y.method(), y.path(), y.status), ("POST", "/c", 200));
        assert_eq!(y.keys().collect::<Vec<_>>(), [1]);
        assert!(y.problems().is_empty() && y.operation.is_none() && y.milestone.is_none());
    }

    #[test]
    fn dropping_the_oldest_keeps_the_rest_exact() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        let times: Vec<SystemTime> = (0..20u32)
            .map(|n| at + Duration::new(u64::from(n) * 7, n * 1_001))
            .collect();
        for (n, t) in times.iter().enumerate() {
            timeline.push(exchange(&wms, 100 + n as u64, *t, "/a", &[n as u32]));
            timeline.drop_oldest_beyond(5);
        }
        let read: Vec<(u64, SystemTime, Vec<usize>)> = timeline
            .iter()
            .map(|x| (x.id, x.at(), x.keys().collect()))
            .collect();
        let expected: Vec<(u64, SystemTime, Vec<usize>)> = (15..20)
            .map(|n| (100 + n as u64, times[n], vec![n]))
            .collect();
        assert_eq!(read, expected);
        assert_eq!(timeline.drop_oldest_beyond(0), 5);
        assert!(timeline.is_empty());
        assert_eq!(timeline.encoded_len(), 0);
    }

    #[test]
    fn a_repeated_path_is_written_once_and_survives_its_first_record_dropping() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let paths = ["/a", "/a", "/a", "/bb", "/a", "/a", "/ccc", "/ccc", "/ccc"];
        let mut timeline = Timeline::default();
        let mut sizes = Vec::new();
        for (n, path) in paths.iter().enumerate() {
            let before = timeline.encoded_len();
            timeline.push(exchange(&wms, n as u64, at, path, &[]));
            sizes.push(timeline.encoded_len() - before);
        }
        // A repeat of the previous record's path takes no byte; a change
        // writes it out (a length byte and its text).
        assert_eq!(sizes[1], sizes[2]);
        assert_eq!(sizes[3], sizes[2] + 4);
        assert_eq!(sizes[4], sizes[2] + 3);
        assert_eq!(sizes[6], sizes[2] + 5);
        let read = |t: &Timeline| t.iter().map(|x| x.path().to_owned()).collect::<Vec<_>>();
        assert_eq!(read(&timeline), paths);

        // Dropping the records that wrote a path out: the new first one
        // writes it again, and later pushes still compare with the last.
        for bound in (0..paths.len()).rev() {
            let mut kept = timeline.clone();
            kept.drop_oldest_beyond(bound);
            let tail = &paths[paths.len() - bound..];
            assert_eq!(read(&kept), tail, "bound {bound}");
            let last = tail.last().copied().unwrap_or("/new");
            let before = kept.encoded_len();
            kept.push(exchange(&wms, 9, at, last, &[]));
            let added = kept.encoded_len() - before;
            if bound > 0 {
                assert_eq!(added, sizes[2], "a repeat after dropping to {bound}");
            }
            let mut expected = tail.to_vec();
            expected.push(last);
            assert_eq!(read(&kept), expected);
            kept.push(exchange(&wms, 10, at, "/d", &[]));
            assert_eq!(read(&kept).last().map(String::as_str), Some("/d"));
        }
    }

    #[test]
    fn absorbing_rebases_remaps_and_orders_by_time() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut target = Timeline::default();
        target.push(exchange(&wms, 5, at + Duration::from_secs(10), "/t", &[0]));
        let mut other = Timeline::default();
        other.push(exchange(&wms, 3, at, "/o", &[0, 1]));
        other.push(exchange(&wms, 9, at + Duration::from_secs(20), "/t", &[1]));
        target.absorb(&other, &[4, 2]);
        let read: Vec<(u64, SystemTime, &str, Vec<usize>)> = target
            .iter()
            .map(|x| (x.id, x.at(), x.path(), x.keys().collect()))
            .collect();
        assert_eq!(
            read,
            vec![
                (3, at, "/o", vec![4, 2]),
                (5, at + Duration::from_secs(10), "/t", vec![0]),
                (9, at + Duration::from_secs(20), "/t", vec![2]),
            ]
        );
    }
}
