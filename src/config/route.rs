//! Routes: which exchanges carry which keys and mark which milestone.
//! A route is matched by method and path template, and optionally by
//! content conditions on the request; its key rules say where each key is
//! read from.

use super::{ExceptionRule, KeyKind, ListenerId, MeasureRule, Milestone, Operation, System};

/// Index of a route in `Config::routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub usize);

/// One route of the routes file, validated.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: RouteId,
    /// The route's name (`carrier.buy_label`): the bounded `operation` label.
    pub operation: Operation,
    /// The system that serves this operation.
    pub system: System,
    /// Listeners this route applies to; empty means every listener.
    pub listeners: Vec<ListenerId>,
    /// `None` matches any method.
    pub method: Option<http::Method>,
    pub path: PathTemplate,
    /// Content conditions on the request, all of which must hold; empty
    /// means method and path decide alone. Evaluated only once method and
    /// path matched, so a body is never read for a route it cannot match.
    pub conditions: Vec<Condition>,
    pub keys: Vec<KeyRule>,
    /// Recorded when the exchange succeeds (2xx response).
    pub milestone: Option<Milestone>,
    /// How repeats of this operation for one object are told apart.
    pub repeats: Option<Repeats>,
    /// Opt-in: answer a repeated idempotency key from the stored response.
    pub guard: Option<Guard>,
    /// Numbers read beside the keys, attached to the milestone's objects.
    pub measures: Vec<MeasureRule>,
    /// Opt-in: what the proxy adds to this route's requests so the
    /// upstream can join the trace.
    pub propagate: Option<Propagate>,
    /// `false` (`inspect: false`): the proxy forwards the route's requests
    /// without tapping them or handing them to extraction.
    pub inspect: bool,
}

/// Trace context a route sends to its upstream (changes traffic, so opt-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagate {
    /// W3C Trace Context: `traceparent` (and the caller's `tracestate`).
    TraceContext,
}

/// Repeats of one operation for the same object: after a failure a retry,
/// after a success a duplicate (unless the idempotency key is the same).
#[derive(Debug, Clone)]
pub struct Repeats {
    /// The key kind the operation is about (`order` for create_shipment).
    pub by: KeyKind,
    pub idempotency_header: http::HeaderName,
    pub duplicate: Option<ExceptionRule>,
    pub retry: Option<RetryRule>,
}

/// When failed attempts of an operation are given up on.
#[derive(Debug, Clone)]
pub struct RetryRule {
    /// Failed attempts after which the operation is exhausted.
    pub limit: u32,
    /// Time after the first failure within which a success must come.
    pub within: std::time::Duration,
    pub exception: ExceptionRule,
}

/// The idempotency guard of a route (changes traffic, so opt-in).
#[derive(Debug, Clone)]
pub struct Guard {
    pub header: http::HeaderName,
    /// How long a stored first response answers repeats.
    pub window: std::time::Duration,
    /// Stored responses kept; the oldest is dropped first.
    pub max_entries: usize,
    /// Largest response body stored; larger responses are not stored.
    pub max_response: usize,
}

/// The header clients put their idempotency key in, by convention.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl Route {
    /// Every source the route reads, in the order extraction indexes them:
    /// each key rule's, then each measure rule's value and, when read from
    /// the document, its unit. One list, so one JSON scan and one XML walk
    /// serve keys and measures alike. A view over the rules (nothing is
    /// allocated), asked for on every matched exchange.
    pub fn sources(&self) -> Sources<'_> {
        Sources(self)
    }

    /// Does this route apply to `listener`?
    pub fn serves(&self, listener: ListenerId) -> bool {
        self.listeners.is_empty() || self.listeners.contains(&listener)
    }
}

/// The sources of a route in extraction order (see [`Route::sources`]).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'r>(&'r Route);

impl<'r> Sources<'r> {
    /// Every source in order.
    pub fn iter(self) -> impl Iterator<Item = &'r KeySource> {
        let keys = self.0.keys.iter().map(|k| &k.source);
        keys.chain(self.0.measures.iter().flat_map(measure_sources))
    }

    /// Source number `index`: a key rule's directly, a measure rule's by
    /// walking the (few) measure rules.
    pub fn get(self, index: usize) -> Option<&'r KeySource> {
        match self.0.keys.get(index) {
            Some(rule) => Some(&rule.source),
            None => {
                let rest = index.checked_sub(self.0.keys.len())?;
                self.0.measures.iter().flat_map(measure_sources).nth(rest)
            }
        }
    }

    /// How many sources the route reads.
    pub fn len(self) -> usize {
        self.iter().count()
    }

    /// True when the route reads nothing.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// A measure rule's value source, then its unit's when read.
fn measure_sources(rule: &MeasureRule) -> impl Iterator<Item = &KeySource> {
    let unit = match &rule.unit {
        super::UnitRule::Read(source) => Some(source),
        super::UnitRule::Fixed { .. } => None,
    };
    std::iter::once(&rule.value).chain(unit)
}

/// Where one key kind is read from.
#[derive(Debug, Clone)]
pub struct KeyRule {
    pub kind: KeyKind,
    pub source: KeySource,
}

/// The sources a key can be read from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A request header (`X-Order-Id`).
    Header(http::HeaderName),
    /// A query parameter of the request URL.
    Query(String),
    /// A `{param}` of the route's path template, by its index in the template.
    PathParam { name: String, index: usize },
    /// A JSON path over the request or response body; every match is a key
    /// (a batch message with many orders gives many keys).
    Json { side: Side, path: JsonPath },
    /// A regex over the raw body bytes; capture group `value` (or group 1,
    /// or the whole match) is the key.
    Regex {
        side: Side,
        regex: regex::bytes::Regex,
    },
    /// An XML path over the body; the text (or attribute) of every element
    /// at the path is a key.
    Xml { side: Side, path: XmlPath },
    /// An element of every X12 segment matching the address, in every
    /// transaction set of the interchange.
    X12 { side: Side, address: EdiAddress },
    /// An element or component of every EDIFACT segment matching the address.
    Edifact { side: Side, address: EdiAddress },
    /// A field of an `application/x-www-form-urlencoded` or
    /// `multipart/form-data` body; every field of that name is a key.
    Form { side: Side, field: String },
}

impl KeySource {
    /// The body this source reads, if it reads one.
    pub fn body_side(&self) -> Option<Side> {
        match self {
            KeySource::Header(_) | KeySource::Query(_) | KeySource::PathParam { .. } => None,
            KeySource::Json { side, .. }
            | KeySource::Regex { side, .. }
            | KeySource::Xml { side, .. }
            | KeySource::X12 { side, .. }
            | KeySource::Edifact { side, .. }
            | KeySource::Form { side, .. } => Some(*side),
        }
    }
}

/// A condition on the request's content that a route can require besides
/// method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The media type of `Content-Type` (lower-case `type/subtype`, without
    /// parameters), e.g. `application/edi-x12`.
    ContentType(String),
    /// The SOAP action: the `SOAPAction` header (SOAP 1.1, quotes removed)
    /// or the `action` parameter of `Content-Type` (SOAP 1.2).
    SoapAction(String),
    /// An X12 interchange carrying a transaction set with this id (ST01),
    /// e.g. `214`.
    X12Set(String),
    /// An X12 interchange with a segment matching this address (no value),
    /// e.g. `AT7*D1`.
    X12Segment(EdiAddress),
    /// An EDIFACT interchange carrying a message of this type (UNH 0065),
    /// e.g. `IFTSTA`.
    EdifactMessage(String),
    /// An EDIFACT interchange with a segment matching this address.
    EdifactSegment(EdiAddress),
    /// A JSON body with this string or number at `path`, e.g. `$.event`
    /// equal to `tracker.updated`.
    Json { path: JsonPath, value: String },
}

/// An XML path: element steps from the document element down, matched by
/// local name, and optionally a final attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    /// The path as written, for messages.
    pub text: String,
    pub steps: Vec<XmlStep>,
    /// Local name of the attribute read from the last element; `None`
    /// reads the element's text.
    pub attribute: Option<String>,
}

/// One step of an [`XmlPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlStep {
    /// An element with this local name.
    Name(String),
    /// Any element.
    Any,
}

/// Which EDI standard an [`EdiAddress`] is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdiSyntax {
    X12,
    Edifact,
}

/// A segment of an EDI document, addressed by tag and by what its elements
/// hold: `L11*{value}*BM`, `RFF+CN:{value}`, `AT7*D1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdiAddress {
    /// The address as written, for messages.
    pub text: String,
    pub syntax: EdiSyntax,
    /// The segment tag, e.g. `L11`.
    pub tag: String,
    /// Element 1, 2 … (after the tag): the components each must hold.
    pub elements: Vec<Vec<EdiPart>>,
}

/// What one component of an [`EdiAddress`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdiPart {
    /// Anything (an empty position).
    Any,
    /// Exactly this value, e.g. a qualifier such as `BM`.
    Literal(String),
    /// The key.
    Value,
}

/// Which body of the exchange a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Request,
    Response,
}

/// A path template such as `/v2/shipments/{shipment_id}/buy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The template as written, for the `http.route` attribute and messages.
    pub text: String,
    pub segments: Vec<Segment>,
}

/// One `/`-separated piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
}

impl PathTemplate {
    /// Matches `path` (without query) against the template, returning the
    /// value of each `{param}` in template order, or `None`.
    pub fn matches<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let mut params = Vec::new();
        self.match_into(path, &mut params).then_some(params)
    }

    /// [`Self::matches`] into a caller's buffer, so that trying many
    /// templates allocates at most once: `params` is cleared, then holds
    /// the value of each `{param}` in template order when the result is
    /// true (and whatever was read before the mismatch when it is false).
    ///
    /// A literal segment is compared where it starts in the path (its
    /// bytes, then a `/` or the end), without finding the end of the
    /// path's segment first: most templates tried differ from the path in
    /// their first literal, and are told apart by that one compare.
    pub fn match_into<'p>(&self, path: &'p str, params: &mut impl Params<'p>) -> bool {
        params.clear();
        // What is left of the path after the segments matched so far and
        // their `/`; `None` past the last segment (no `/` after it).
        let mut rest = Some(path.strip_prefix('/').unwrap_or(path));
        for segment in &self.segments {
            let Some(text) = rest else {
                return false;
            };
            match segment {
                Segment::Literal(lit) => {
                    let Some(after) = after_literal(text, lit) else {
                        return false;
                    };
                    rest = match after.as_bytes().first() {
                        None => None,
                        Some(b'/') => after.get(1..),
                        Some(_) => return false,
                    };
                }
                Segment::Param(_) => match next_piece(&mut rest) {
                    Some(piece) if !piece.is_empty() => params.add(piece),
                    _ => return false,
                },
            }
        }
        match rest {
            None => true,
            // A trailing slash is the same resource.
            Some(text) => text.is_empty(),
        }
    }

    /// Names of the `{params}` in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }
}

/// A buffer for the raw values of a template's `{params}`, in template
/// order, that [`PathTemplate::match_into`] fills: a `Vec`, or a
/// `SmallVec` that holds the few params of a path without allocating.
pub trait Params<'p> {
    /// Empties the buffer (keeping what it allocated).
    fn clear(&mut self);
    /// Appends the value of the next param.
    fn add(&mut self, value: &'p str);
}

impl<'p> Params<'p> for Vec<&'p str> {
    fn clear(&mut self) {
        Vec::clear(self);
    }

    fn add(&mut self, value: &'p str) {
        self.push(value);
    }
}

impl<'p, A: smallvec::Array<Item = &'p str>> Params<'p> for smallvec::SmallVec<A> {
    fn clear(&mut self) {
        smallvec::SmallVec::clear(self);
    }

    fn add(&mut self, value: &'p str) {
        self.push(value);
    }
}

/// What follows `literal` at the start of `text`, if it is there. A byte
/// loop: literals are short, and those of the templates that do not match
/// mostly differ from the path in their first byte, so a `memcmp` call
/// costs more than it compares.
fn after_literal<'p>(text: &'p str, literal: &str) -> Option<&'p str> {
    let head = text.as_bytes().get(..literal.len())?;
    if head.iter().zip(literal.as_bytes()).any(|(a, b)| a != b) {
        return None;
    }
    text.get(literal.len()..)
}

/// One step of `rest.split('/')`: the piece before the next `/` (all of
/// `rest` when there is none, after which `rest` is `None`). A byte loop:
/// path segments are short, too short for `str::split`'s searcher to pay.
fn next_piece<'p>(rest: &mut Option<&'p str>) -> Option<&'p str> {
    let text = rest.take()?;
    match text.bytes().position(|b| b == b'/') {
        Some(at) => {
            let (piece, tail) = text.split_at(at);
            *rest = tail.get(1..);
            Some(piece)
        }
        None => Some(text),
    }
}

/// A JSON path of the supported subset: `$`, `.field`, `['field']`,
/// `[index]` and `[*]` (every element of an array or every member value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The path as written, for messages.
    pub text: String,
    pub steps: Vec<JsonStep>,
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStep {
    Field(String),
    Index(usize),
    Wildcard,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(segments: &[Segment]) -> PathTemplate {
        PathTemplate {
            text: String::new(),
            segments: segments.to_vec(),
        }
    }

    #[test]
    fn template_captures_params_in_order() {
        let t = template(&[
            Segment::Literal("v2".into()),
            Segment::Literal("shipments".into()),
            Segment::Param("shipment_id".into()),
            Segment::Literal("buy".into()),
        ]);
        assert_eq!(t.matches("/v2/shipments/SH-1/buy"), Some(vec!["SH-1"]));
        assert_eq!(t.matches("/v2/shipments/SH-1/buy/"), Some(vec!["SH-1"]));
        assert_eq!(t.matches("/v2/shipments//buy"), None);
        assert_eq!(t.matches("/v2/shipments/SH-1"), None);
        assert_eq!(t.matches("/v2/shipments/SH-1/buy/extra"), None);
        assert_eq!(t.params().collect::<Vec<_>>(), vec!["shipment_id"]);
    }

    #[test]
    fn a_literal_matches_a_whole_segment_never_a_prefix_of_one() {
        let t = PathTemplate::parse("/api/orders/{id}").expect("valid");
        assert_eq!(t.matches("/api/orders/SO-1"), Some(vec!["SO-1"]));
        assert_eq!(t.matches("api/orders/SO-1"), Some(vec!["SO-1"]));
        for refused in [
            "/api/ordersX/SO-1",
            "/apix/orders/SO-1",
            "/ap/orders/SO-1",
            "/api/orders",
            "/api/orders/",
            "/api/order/SO-1",
            "/api//orders/SO-1",
            "",
            "/",
        ] {
            assert_eq!(t.matches(refused), None, "{refused}");
        }
        let t = PathTemplate::parse("/api/orders").expect("valid");
        for (path, matched) in [
            ("/api/orders", true),
            ("/api/orders/", true),
            ("/api/orders//", false),
            ("/api/orders/x", false),
            ("/api/ordersx", false),
            ("/api/order", false),
            ("/api", false),
        ] {
            assert_eq!(t.matches(path).is_some(), matched, "{path}");
        }
        let root = PathTemplate::parse("/").expect("valid");
        assert_eq!(root.matches(""), Some(vec![]));
        assert_eq!(root.matches("//"), None);
    }

    #[test]
    fn several_params_fill_a_reused_buffer_raw_and_in_order() {
        let t = PathTemplate::parse("/v1/{tenant}/orders/{order}/lines/{line}").expect("valid");
        let mut params = vec!["stale"];
        assert!(t.match_into("/v1/acme/orders/SO-1/lines/3", &mut params));
        assert_eq!(params, ["acme", "SO-1", "3"]);
        // A trailing slash is the same resource; two are not.
        assert!(t.match_into("/v1/acme/orders/SO-1/lines/3/", &mut params));
        assert_eq!(params, ["acme", "SO-1", "3"]);
        assert!(!t.match_into("/v1/acme/orders/SO-1/lines/3//", &mut params));
        // Values stay percent-encoded: an encoded `/` does not split a segment.
        assert!(t.match_into("/v1/b%20c/orders/SO%2F2/lines/4", &mut params));
        assert_eq!(params, ["b%20c", "SO%2F2", "4"]);
        assert_eq!(
            t.matches("/v1/b%20c/orders/SO%2F2/lines/4"),
            Some(params.clone())
        );
        for refused in [
            "/v1/acme/orders/SO-1/items/3",
            "/v1//orders/SO-1/lines/3",
            "/v1/acme/orders/SO-1/lines",
            "/v1/acme/orders/SO-1/lines/3/4",
            "/v1/acme/orders/SO/1/lines/3",
        ] {
            assert!(!t.match_into(refused, &mut params), "{refused}");
            assert_eq!(t.matches(refused), None, "{refused}");
        }
    }
}
