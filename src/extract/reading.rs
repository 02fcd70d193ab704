//! What one exchange's bodies give, computed lazily and at most once: the
//! decoded body of each side, its parsed EDI envelope or form fields, and
//! the answers of the one JSON scan and the one XML walk that serve every
//! rule of that side. Route conditions and key rules ask the same
//! [`Reading`], so a body a condition decoded (or an interchange it
//! parsed) is not decoded (or parsed) again for the keys, and a body that
//! nothing asks for is never touched.
//!
//! Problems met on the way (truncation, decoding, a bad envelope …) are
//! kept with what they spoiled. They are reported for what the matched
//! route used (its conditions and its rules), or, when no route matched,
//! for everything that was tried: a body read only to rule out a route
//! (an X12 interchange tested for being EDIFACT) owes no problem.

use std::sync::Arc;

use crate::config::{KeySource, Side, Sources, XmlPath};
use crate::proxy::{Exchange, Headers};

use super::body::Body;
use super::edi::{Delimiters, Document};
use super::form::Field;
use super::json::JsonPaths;
use super::plan::JsonRules;
use super::{edifact, form, x12, xml, Problem, Values};

/// What one rule of a one-pass format (JSON, XML) found.
#[derive(Debug, Default)]
pub(super) struct RuleHits {
    pub values: Values,
    /// Why some value at the rule's path could not be read.
    pub problem: Option<Problem>,
}

/// Per source index (only the sources of one format and side have any).
/// The sources are the matched route's in [`crate::config::Route::sources`]
/// order: its key rules, then its measure rules.
pub(super) type Hits = Vec<RuleHits>;

/// A value computed at most once, with the problems computing it met.
struct Slot<T> {
    /// `None` when it could not be computed.
    value: Option<T>,
    problems: Vec<Problem>,
    /// Used by the matched route: its problems are reported.
    claimed: bool,
}

impl<T> Slot<T> {
    fn compute(f: impl FnOnce(&mut Vec<Problem>) -> Option<T>) -> Self {
        let mut problems = Vec::new();
        let value = f(&mut problems);
        Slot {
            value,
            problems,
            claimed: false,
        }
    }
}

/// The lazily read bodies of one exchange.
pub(super) struct Reading<'e> {
    exchange: &'e Exchange,
    /// `max_decoded_bytes`.
    limit: usize,
    /// Request, then response.
    sides: [SideCache<'e>; 2],
    /// Set once the route is chosen: from then on, whatever is used is
    /// used by the matched route.
    claiming: bool,
    /// Problems of JSON conditions: (claimed, problem).
    conditions: Vec<(bool, Problem)>,
}

/// What has been read of one side.
#[derive(Default)]
struct SideCache<'e> {
    body: Option<Slot<Body<'e>>>,
    x12: Option<Slot<Document>>,
    edifact: Option<Slot<Document>>,
    form: Option<Slot<Vec<Field>>>,
    json: Option<Slot<Hits>>,
    xml: Option<Slot<Hits>>,
}

fn index(side: Side) -> usize {
    usize::from(side == Side::Response)
}

impl<'e> Reading<'e> {
    pub fn new(exchange: &'e Exchange, limit: usize) -> Self {
        Reading {
            exchange,
            limit,
            sides: [SideCache::default(), SideCache::default()],
            claiming: false,
            conditions: Vec::new(),
        }
    }

    /// The route is chosen (or none is): what is read from now on is
    /// read for it.
    pub fn claim(&mut self) {
        self.claiming = true;
    }

    /// The problems to report: those of what the matched route used, or
    /// of everything tried when no route `matched`.
    pub fn into_problems(self, matched: bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut report = |claimed: bool, found: &[Problem]| {
            if claimed || !matched {
                problems.extend_from_slice(found);
            }
        };
        for side in &self.sides {
            if let Some(slot) = &side.body {
                report(slot.claimed, &slot.problems);
            }
            for slot in [&side.x12, &side.edifact].into_iter().flatten() {
                report(slot.claimed, &slot.problems);
            }
            if let Some(slot) = &side.form {
                report(slot.claimed, &slot.problems);
            }
            for slot in [&side.json, &side.xml].into_iter().flatten() {
                report(slot.claimed, &slot.problems);
            }
        }
        for (claimed, problem) in &self.conditions {
            report(*claimed, std::slice::from_ref(problem));
        }
        problems
    }

    /// The headers that describe `side`'s body; `None` for the response of
    /// an upstream that never answered.
    pub fn headers(&self, side: Side) -> Option<&'e Headers> {
        match side {
            Side::Request => Some(&self.exchange.request_headers),
            Side::Response => self.exchange.outcome.response_headers(),
        }
    }

    /// `side`'s body, decoded on first use.
    pub fn body(&mut self, side: Side) -> Option<&Body<'e>> {
        let headers = self.headers(side);
        let (exchange, limit, claiming) = (self.exchange, self.limit, self.claiming);
        let cache = self.sides.get_mut(index(side))?;
        let slot = cache.body.get_or_insert_with(|| {
            Slot::compute(|problems| {
                // The upstream never answered: nothing to read or report.
                let headers = headers?;
                let tapped = match side {
                    Side::Request => &exchange.request_body,
                    Side::Response => &exchange.response_body,
                };
                match Body::decode(tapped, Some(headers), limit, problems) {
                    Ok(body) => Some(body),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                }
            })
        });
        slot.claimed |= claiming;
        slot.value.as_ref()
    }

    /// `side`'s body as an X12 interchange, with its bytes.
    pub fn x12(&mut self, side: Side) -> Option<(&Document, &[u8])> {
        self.body(side)?;
        let claiming = self.claiming;
        let cache = self.sides.get_mut(index(side))?;
        let body = cache.body.as_ref()?.value.as_ref()?;
        let slot = cache
            .x12
            .get_or_insert_with(|| Slot::compute(|problems| edi(x12::parse, body, problems)));
        slot.claimed |= claiming;
        Some((slot.value.as_ref()?, &body.bytes))
    }

    /// `side`'s body as an EDIFACT interchange, with its bytes.
    pub fn edifact(&mut self, side: Side) -> Option<(&Document, &[u8])> {
        self.body(side)?;
        let claiming = self.claiming;
        let cache = self.sides.get_mut(index(side))?;
        let body = cache.body.as_ref()?.value.as_ref()?;
        let slot = cache
            .edifact
            .get_or_insert_with(|| Slot::compute(|problems| edi(edifact::parse, body, problems)));
        slot.claimed |= claiming;
        Some((slot.value.as_ref()?, &body.bytes))
    }

    /// `side`'s body as form fields.
    pub fn form(&mut self, side: Side) -> Option<&[Field]> {
        let headers = self.headers(side)?;
        self.body(side)?;
        let claiming = self.claiming;
        let cache = self.sides.get_mut(index(side))?;
        let body = cache.body.as_ref()?.value.as_ref()?;
        let slot = cache.form.get_or_insert_with(|| {
            Slot::compute(|problems| {
                if body.bytes.is_empty() {
                    return Some(Vec::new());
                }
                match form::fields(&body.bytes, headers, body.partial, problems) {
                    Ok(fields) => Some(fields),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                }
            })
        });
        slot.claimed |= claiming;
        slot.value.as_deref()
    }

    /// The values of every JSON rule of `side` (compiled in `rules`), from
    /// one scan; `None` when they could not run.
    pub fn json_hits(&mut self, side: Side, rules: &JsonRules) -> Option<&mut Hits> {
        self.body(side)?;
        let claiming = self.claiming;
        let cache = self.sides.get_mut(index(side))?;
        let body = cache.body.as_ref()?.value.as_ref()?;
        let slot = cache
            .json
            .get_or_insert_with(|| Slot::compute(|problems| json_values(body, rules, problems)));
        slot.claimed |= claiming;
        slot.value.as_mut()
    }

    /// The values of every XML rule of `side`, from one walk.
    pub fn xml_hits(&mut self, side: Side, sources: Sources<'_>) -> Option<&mut Hits> {
        self.body(side)?;
        let claiming = self.claiming;
        let cache = self.sides.get_mut(index(side))?;
        let body = cache.body.as_ref()?.value.as_ref()?;
        let slot = cache.xml.get_or_insert_with(|| {
            Slot::compute(|problems| xml_values(body, side, sources, problems))
        });
        slot.claimed |= claiming;
        slot.value.as_mut()
    }

    /// Does `side`'s JSON body hold `value` at `path`? (A route condition.)
    pub fn json_equals(&mut self, side: Side, path: &JsonPaths, value: &str) -> bool {
        let claiming = self.claiming;
        let Some(body) = self.body(side) else {
            return false;
        };
        if body.partial {
            return false;
        }
        let mut equal = false;
        let problem = match body.utf8() {
            Ok(text) => path.scan(&text, |_, found| equal |= found == value).err(),
            Err(problem) => Some(problem),
        };
        match problem {
            Some(problem) => {
                self.conditions.push((claiming, problem));
                false
            }
            None => equal,
        }
    }
}

/// Parses an EDI body with `parse`; an empty body holds no segments.
fn edi(
    parse: fn(&[u8], bool) -> Result<Document, Problem>,
    body: &Body<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Document> {
    if body.bytes.trim_ascii().is_empty() {
        return Some(Document::empty());
    }
    match parse(&body.bytes, body.partial) {
        Ok(document) => {
            if document.malformed {
                problems.push(Problem::EdiMalformed);
            }
            Some(document)
        }
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

impl Document {
    /// The document of an empty body: no segments.
    fn empty() -> Document {
        Document {
            delimiters: Delimiters {
                element: b'*',
                component: b'>',
                repetition: None,
                release: None,
                terminator: b'~',
            },
            segments: Vec::new(),
            kinds: Vec::new(),
            malformed: false,
        }
    }
}

/// Runs every JSON rule of one side over `body` in one scan.
fn json_values(body: &Body<'_>, rules: &JsonRules, problems: &mut Vec<Problem>) -> Option<Hits> {
    if body.partial {
        // A prefix of a JSON document is not JSON; the truncation or
        // abort is already reported.
        return None;
    }
    // UTF-8 is validated by the scan, as it reads.
    let text = match body.utf8() {
        Ok(text) => text,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let mut hits: Hits = (0..rules.rule_count).map(|_| RuleHits::default()).collect();
    if text.trim_ascii().is_empty() {
        // No body at all (a 204, a bare error): nothing to find, which the
        // rules report as missing keys rather than as malformed JSON.
        return Some(hits);
    }
    let scanned = rules.paths.scan(&text, |path, value| {
        if let Some(found) = rules.rule_of.get(path).and_then(|&rule| hits.get_mut(rule)) {
            found.values.push(Arc::from(value));
        }
    });
    match scanned {
        Ok(()) => Some(hits),
        Err(problem) => {
            // Values seen before the document went bad are not trusted.
            problems.push(problem);
            None
        }
    }
}

/// Runs every XML rule of `side` over `body` in one walk. Unlike JSON, a
/// prefix is read: the keys of a SOAP header survive a truncated body.
fn xml_values(
    body: &Body<'_>,
    side: Side,
    sources: Sources<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Hits> {
    let mut paths: Vec<&XmlPath> = Vec::new();
    let mut rule_of: Vec<usize> = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        if let KeySource::Xml { side: s, path } = source {
            if *s == side {
                paths.push(path);
                rule_of.push(index);
            }
        }
    }
    if paths.is_empty() {
        return None;
    }
    let text = match body.text(true) {
        Ok(text) => text,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let mut hits: Hits = sources.iter().map(|_| RuleHits::default()).collect();
    let scanned = xml::scan(&text, &paths, body.partial, |path, value| {
        if let Some(found) = rule_of.get(path).and_then(|&rule| hits.get_mut(rule)) {
            match value {
                Ok(value) => found.values.push(Arc::from(value)),
                Err(problem) => found.problem = Some(problem),
            }
        }
    });
    match scanned {
        Ok(()) => Some(hits),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}
