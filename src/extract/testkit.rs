//! Test helpers: a domain [`Config`] built in code (the YAML loader lives
//! elsewhere) and exchanges with chosen heads and bodies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::config::{
    AdminConfig, Config, JsonPath, JsonStep, KeyKind, KeyRule, KeySource, ListenerId, MilestoneDef,
    ObservationConfig, PathTemplate, Route, RouteId, Segment, Side, StateConfig, Symbols,
};
use crate::proxy::{Exchange, Outcome, Tapped};

/// Builds a [`Config`] with system `wms` and whatever routes a test adds.
pub(super) struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    pub fn new() -> Self {
        let mut systems = Symbols::default();
        let mut key_kinds = Symbols::default();
        let root = key_kinds.intern("order").expect("intern");
        systems.intern("wms").expect("intern");
        ConfigBuilder {
            config: Config {
                source: "test".into(),
                listeners: Vec::new(),
                systems,
                key_kinds,
                root,
                operations: Symbols::default(),
                routes: Vec::new(),
                milestones: Symbols::default(),
                milestone_defs: Vec::new(),
                flow_names: Symbols::default(),
                flows: Vec::new(),
                exception_kinds: Symbols::default(),
                expectations: Vec::new(),
                measures: Symbols::default(),
                measure_defs: Vec::new(),
                units: Symbols::default(),
                admin: AdminConfig {
                    bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                },
                state: StateConfig {
                    ttl: Duration::from_secs(60),
                    max_transactions: 10,
                    max_exchanges_per_transaction: 10,
                    store: Default::default(),
                },
                observation: ObservationConfig {
                    queue_capacity: 10,
                    max_decoded_bytes: 64 * 1024,
                },
                telemetry: Default::default(),
            },
        }
    }

    /// Declares (or finds) key kind `name`.
    pub fn kind(&mut self, name: &str) -> KeyKind {
        self.config.key_kinds.intern(name).expect("intern")
    }

    /// Adds a route of system `wms` after the existing ones.
    pub fn route(
        &mut self,
        name: &str,
        method: Option<http::Method>,
        template: &str,
    ) -> &mut Route {
        let id = RouteId(self.config.routes.len());
        let operation = self.config.operations.intern(name).expect("intern");
        let system = self.config.systems.intern("wms").expect("intern");
        self.config.routes.push(Route {
            id,
            operation,
            system,
            listeners: Vec::new(),
            method,
            path: template_of(template),
            conditions: Vec::new(),
            keys: Vec::new(),
            milestone: None,
            repeats: None,
            guard: None,
            measures: Vec::new(),
            propagate: None,
            inspect: true,
        });
        let last = self.config.routes.len() - 1;
        &mut self.config.routes[last]
    }

    /// Adds key rule `kind ← source` to the last route.
    pub fn key(&mut self, kind: &str, source: KeySource) -> &mut Self {
        let kind = self.kind(kind);
        self.config
            .routes
            .last_mut()
            .expect("a route was added")
            .keys
            .push(KeyRule { kind, source });
        self
    }

    /// Makes the last route mark milestone `name`, about its first key kind.
    pub fn milestone(&mut self, name: &str) -> &mut Self {
        let milestone = self.config.milestones.intern(name).expect("intern");
        let object = self.config.root.clone();
        let out_of_order = self
            .config
            .exception_kinds
            .intern(crate::config::OUT_OF_ORDER)
            .expect("intern");
        self.config.milestone_defs.push(MilestoneDef {
            name: milestone.clone(),
            object,
            terminal: false,
            requires: Vec::new(),
            unmet: crate::config::ExceptionRule {
                kind: out_of_order,
                owner: None,
            },
            stuck_after: None,
        });
        self.config
            .routes
            .last_mut()
            .expect("a route was added")
            .milestone = Some(milestone);
        self
    }

    pub fn max_decoded_bytes(&mut self, limit: usize) -> &mut Self {
        self.config.observation.max_decoded_bytes = limit;
        self
    }

    pub fn build(&self) -> Config {
        self.config.clone()
    }
}

/// `/a/{b}/c` as a template.
pub(super) fn template_of(text: &str) -> PathTemplate {
    let segments = text
        .trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => Segment::Param(param.to_owned()),
                None => Segment::Literal(s.to_owned()),
            },
        )
        .collect();
    PathTemplate {
        text: text.to_owned(),
        segments,
    }
}

/// A JSON path of the supported subset: `$.a[*].b`, `$['a b'][0]`.
pub(super) fn json_path(text: &str) -> JsonPath {
    let mut steps = Vec::new();
    let mut rest = text.strip_prefix('$').expect("starts with $");
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[*]") {
            steps.push(JsonStep::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix(".*") {
            steps.push(JsonStep::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']").expect("closing ']");
            steps.push(JsonStep::Field(after[..end].to_owned()));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').expect("closing ]");
            steps.push(JsonStep::Index(after[..end].parse().expect("index")));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            steps.push(JsonStep::Field(after[..end].to_owned()));
            rest = &after[end..];
        } else {
            panic!("unsupported path {text}");
        }
    }
    JsonPath {
        text: text.to_owned(),
        steps,
    }
}

pub(super) fn json(side: Side, path: &str) -> KeySource {
    KeySource::Json {
        side,
        path: json_path(path),
    }
}

pub(super) fn regex(side: Side, pattern: &str) -> KeySource {
    KeySource::Regex {
        side,
        regex: regex::bytes::Regex::new(pattern).expect("valid regex"),
    }
}

/// A complete, untruncated tap of `bytes`.
pub(super) fn tapped(bytes: impl Into<Bytes>) -> Tapped {
    let bytes = bytes.into();
    Tapped {
        total_len: bytes.len() as u64,
        bytes,
        truncated: false,
        complete: true,
    }
}

/// A `method uri` exchange on listener 0 of system `wms` answered `status`.
pub(super) fn exchange(config: &Config, method: http::Method, uri: &str, status: u16) -> Exchange {
    Exchange {
        id: 1,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("wms declared"),
        method,
        uri: uri.parse().expect("valid uri"),
        version: http::Version::HTTP_11,
        request_headers: Default::default(),
        started: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(42),
        upstream_duration: Duration::from_millis(40),
        outcome: Outcome::Response {
            status: http::StatusCode::from_u16(status).expect("valid status"),
            headers: Default::default(),
        },
        request_body: tapped(Bytes::new()),
        response_body: tapped(Bytes::new()),
        replayed: false,
        trace_context: None,
    }
}

/// Response headers of `exchange`, for tests that set them.
pub(super) fn response_headers(exchange: &mut Exchange) -> &mut http::HeaderMap {
    match &mut exchange.outcome {
        Outcome::Response { headers, .. } => headers.map_mut(),
        Outcome::UpstreamFailed { .. } => panic!("no response"),
    }
}

pub(super) fn shared(config: Config) -> Arc<Config> {
    Arc::new(config)
}
