//! What one exchange's bodies give, computed lazily and at most once: the
//! decoded body of each side, its parsed EDI envelope or form fields, and
//! the answers of the one JSON scan and the one XML walk that serve every
//! rule of that side. Route conditions and key rules ask the same
//! [`Reading`], so a body a condition decoded (or an interchange it
//! parsed) is not decoded (or parsed) again for the keys, and a body that
//! nothing asks for is never touched.
//!
//! Problems met on the way (truncation, decoding, a bad envelope …) are
//! collected here once each and reported with the observation.

use std::sync::Arc;

use http::HeaderMap;

use crate::config::{JsonPath, KeyRule, KeySource, Side, XmlPath};
use crate::proxy::Exchange;

use super::body::Body;
use super::edi::{Delimiters, Document};
use super::{edifact, form, json, x12, xml, Problem};

/// Values per rule index (only the rules of one format and side have any).
pub(super) type Hits = Vec<Vec<Arc<str>>>;

/// A value computed at most once: `None` until tried, then `Some(None)`
/// when it could not be computed (its problem is recorded).
type Once<T> = Option<Option<T>>;

/// The lazily read bodies of one exchange.
pub(super) struct Reading<'e> {
    exchange: &'e Exchange,
    /// `max_decoded_bytes`.
    limit: usize,
    /// Request, then response.
    sides: [SideCache<'e>; 2],
    problems: Vec<Problem>,
}

/// What has been read of one side.
#[derive(Default)]
struct SideCache<'e> {
    body: Once<Body<'e>>,
    x12: Once<Document>,
    edifact: Once<Document>,
    form: Once<Vec<(String, String)>>,
    json: Once<Hits>,
    xml: Once<Hits>,
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
            problems: Vec::new(),
        }
    }

    /// The problems met so far.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// The headers that describe `side`'s body; `None` for the response of
    /// an upstream that never answered.
    pub fn headers(&self, side: Side) -> Option<&'e HeaderMap> {
        match side {
            Side::Request => Some(&self.exchange.request_headers),
            Side::Response => self.exchange.outcome.response_headers(),
        }
    }

    /// `side`'s body, decoded on first use.
    pub fn body(&mut self, side: Side) -> Option<&Body<'e>> {
        let headers = self.headers(side);
        let exchange = self.exchange;
        let cache = self.sides.get_mut(index(side))?;
        if cache.body.is_none() {
            let tapped = match side {
                Side::Request => &exchange.request_body,
                Side::Response => &exchange.response_body,
            };
            cache.body = Some(match headers {
                // The upstream never answered: nothing to read or report.
                None => None,
                Some(headers) => {
                    match Body::decode(tapped, Some(headers), self.limit, &mut self.problems) {
                        Ok(body) => Some(body),
                        Err(problem) => {
                            self.problems.push(problem);
                            None
                        }
                    }
                }
            });
        }
        cache.body.as_ref()?.as_ref()
    }

    /// `side`'s body as an X12 interchange, with its bytes.
    pub fn x12(&mut self, side: Side) -> Option<(&Document, &[u8])> {
        self.edi(side, x12::parse, |cache| &mut cache.x12, |cache| &cache.x12)
    }

    /// `side`'s body as an EDIFACT interchange, with its bytes.
    pub fn edifact(&mut self, side: Side) -> Option<(&Document, &[u8])> {
        self.edi(
            side,
            edifact::parse,
            |cache| &mut cache.edifact,
            |cache| &cache.edifact,
        )
    }

    fn edi(
        &mut self,
        side: Side,
        parse: fn(&[u8], bool) -> Result<Document, Problem>,
        slot_mut: for<'c> fn(&'c mut SideCache<'e>) -> &'c mut Once<Document>,
        slot: for<'c> fn(&'c SideCache<'e>) -> &'c Once<Document>,
    ) -> Option<(&Document, &[u8])> {
        self.body(side)?;
        let cache = self.sides.get_mut(index(side))?;
        if slot_mut(cache).is_none() {
            let parsed = match cache.body.as_ref().and_then(Option::as_ref) {
                // No body (a 204, an empty POST) holds no segments.
                Some(body) if body.bytes.trim_ascii().is_empty() => Some(Document::empty()),
                Some(body) => match parse(&body.bytes, body.partial) {
                    Ok(document) => {
                        if document.malformed {
                            self.problems.push(Problem::EdiMalformed);
                        }
                        Some(document)
                    }
                    Err(problem) => {
                        self.problems.push(problem);
                        None
                    }
                },
                None => None,
            };
            *slot_mut(cache) = Some(parsed);
        }
        let cache = self.sides.get(index(side))?;
        let document = slot(cache).as_ref()?.as_ref()?;
        let body = cache.body.as_ref()?.as_ref()?;
        Some((document, &body.bytes))
    }

    /// `side`'s body as form fields.
    pub fn form(&mut self, side: Side) -> Option<&[(String, String)]> {
        let headers = self.headers(side)?;
        self.body(side)?;
        let cache = self.sides.get_mut(index(side))?;
        if cache.form.is_none() {
            let fields = match cache.body.as_ref().and_then(Option::as_ref) {
                Some(body) if body.bytes.is_empty() => Some(Vec::new()),
                Some(body) => {
                    match form::fields(&body.bytes, headers, body.partial, &mut self.problems) {
                        Ok(fields) => Some(fields),
                        Err(problem) => {
                            self.problems.push(problem);
                            None
                        }
                    }
                }
                None => None,
            };
            cache.form = Some(fields);
        }
        cache.form.as_ref()?.as_deref()
    }

    /// The values of every JSON rule of `side`, from one scan; `None` when
    /// they could not run.
    pub fn json_hits(&mut self, side: Side, rules: &[KeyRule]) -> Option<&mut Hits> {
        self.body(side)?;
        let cache = self.sides.get_mut(index(side))?;
        if cache.json.is_none() {
            let hits = match cache.body.as_ref().and_then(Option::as_ref) {
                Some(body) => json_values(body, side, rules, &mut self.problems),
                None => None,
            };
            cache.json = Some(hits);
        }
        cache.json.as_mut()?.as_mut()
    }

    /// The values of every XML rule of `side`, from one walk.
    pub fn xml_hits(&mut self, side: Side, rules: &[KeyRule]) -> Option<&mut Hits> {
        self.body(side)?;
        let cache = self.sides.get_mut(index(side))?;
        if cache.xml.is_none() {
            let hits = match cache.body.as_ref().and_then(Option::as_ref) {
                Some(body) => xml_values(body, side, rules, &mut self.problems),
                None => None,
            };
            cache.xml = Some(hits);
        }
        cache.xml.as_mut()?.as_mut()
    }

    /// Does `side`'s JSON body hold `value` at `path`? (A route condition.)
    pub fn json_equals(&mut self, side: Side, path: &JsonPath, value: &str) -> bool {
        let Some(body) = self.body(side) else {
            return false;
        };
        if body.partial {
            return false;
        }
        let text = match body.text(false) {
            Ok(text) => text,
            Err(problem) => {
                self.problems.push(problem);
                return false;
            }
        };
        let mut equal = false;
        match json::scan(&text, &[path], |_, found| equal |= found == value) {
            Ok(()) => equal,
            Err(problem) => {
                self.problems.push(problem);
                false
            }
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

/// Runs every JSON rule of `side` over `body` in one scan.
fn json_values(
    body: &Body<'_>,
    side: Side,
    rules: &[KeyRule],
    problems: &mut Vec<Problem>,
) -> Option<Hits> {
    let mut paths: Vec<&JsonPath> = Vec::new();
    let mut rule_of: Vec<usize> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if let KeySource::Json { side: s, path } = &rule.source {
            if *s == side {
                paths.push(path);
                rule_of.push(index);
            }
        }
    }
    if paths.is_empty() || body.partial {
        // A prefix of a JSON document is not JSON; the truncation or
        // abort is already reported.
        return None;
    }
    let text = match body.text(false) {
        Ok(text) => text,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let mut hits: Hits = vec![Vec::new(); rules.len()];
    if text.trim_ascii().is_empty() {
        // No body at all (a 204, a bare error): nothing to find, which the
        // rules report as missing keys rather than as malformed JSON.
        return Some(hits);
    }
    let scanned = json::scan(&text, &paths, |path, value| {
        if let Some(found) = rule_of.get(path).and_then(|&rule| hits.get_mut(rule)) {
            found.push(Arc::from(value));
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
    rules: &[KeyRule],
    problems: &mut Vec<Problem>,
) -> Option<Hits> {
    let mut paths: Vec<&XmlPath> = Vec::new();
    let mut rule_of: Vec<usize> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if let KeySource::Xml { side: s, path } = &rule.source {
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
    let mut hits: Hits = vec![Vec::new(); rules.len()];
    let scanned = xml::scan(&text, &paths, body.partial, problems, |path, value| {
        if let Some(found) = rule_of.get(path).and_then(|&rule| hits.get_mut(rule)) {
            found.push(Arc::from(value));
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
