//! The idempotency guard: on a route that opts in, a request whose
//! idempotency key (a request header, `Idempotency-Key` by default) was
//! answered with a 2xx within the route's `window` gets that first response
//! again, byte for byte, and is **not forwarded**; so a client's
//! timeout-retry cannot create a second shipment or posting.
//!
//! # Phases
//! 1. [`GuardedRoutes::new`], at start: the routes of one listener in
//!    priority order, up to its last guarded one. A listener without
//!    guarded routes gets none, and its requests pay nothing at all.
//! 2. [`Guards::key_of`], per request: if the request carries one of the
//!    guard headers, the route it matches — the same route extraction will
//!    match: the first in priority order that accepts its method and path —
//!    and, if that route is guarded, the key (route, first header value).
//!    An empty value or one longer than [`MAX_KEY_LEN`] is no key.
//! 3. [`RouteGuard::admit`]: the stored response for the key (replay), or a
//!    [`Claim`] on the key (forward, and capture the response), or, while
//!    another request with the same key is in flight, **wait** for it —
//!    at most until the listener's `timeout` after this request arrived —
//!    and look again: its stored response is replayed; if it stored
//!    nothing (failed, not 2xx, too large, client gone) the waiter claims
//!    the key and is forwarded; if the wait ran out it is forwarded
//!    without a claim.
//! 4. The [`Capture`] follows the first response to its client and stores
//!    it when its body ends complete, 2xx and at most `max_response` bytes.
//!    Dropping the claim any other way releases the key and wakes waiters.
//!
//! # Beyond memory
//! With a [`GuardKeeping`] ([`GuardedRoutes::kept_in`]; the app gives one
//! when the state is embedded or in Redis) every stored response is also
//! saved as a [`record`] (never waiting: the backend writes it on its own
//! task), expiry and eviction forget it, and at start each route restores
//! what a previous run kept (within the window, newest `max_entries`). A
//! shared backend is also asked, when a key is not in memory and before the
//! request is forwarded, whether another replica stored a response for it
//! or is forwarding the key right now ([`GuardState::fetch`], bounded in
//! time; a failure forwards). The answer is replayed; a request in flight
//! elsewhere is waited for like a local one (asking again every
//! [`REMOTE_POLL`], until the deadline); otherwise the key is claimed in
//! the shared store too, and released there if nothing is stored. The
//! local claim is held meanwhile, so local repeats wait for that answer.
//!
//! # Bounds
//! Per route at most `max_entries` responses (storing one more evicts the
//! oldest), each with a body of at most `max_response` bytes, kept for
//! `window` on the listener's [`Clock`]. The memory is about
//! `max_entries × (max_response + response head + key)` per guarded route;
//! the head is bounded by the HTTP server's header limits and the key by
//! [`MAX_KEY_LEN`]. With the defaults (10 000 × 64 KiB) that is at most
//! ~640 MiB per route: size `max_entries` to the retry traffic you expect.

mod record;
mod replay;
mod state;
mod store;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use http::{request, HeaderName};
use tokio::sync::watch;
use tokio::time::Instant;

use self::store::{Evicted, Lookup, Store};
use super::metrics::{GuardMetrics, ProxyMetrics};
use crate::clock::Clock;
use crate::config::{Guard, HeadRoutes, ListenerId, Route};

pub(crate) use self::replay::{Capture, ReplayBody, StoredResponse};
pub use self::state::{
    Fetch, Fetched, GuardKeeping, GuardState, GuardStateMetrics, Handoff, StateResult,
};

/// Longest idempotency key the guard accepts, in bytes; a longer value is
/// forwarded unguarded. Generous for UUIDs and the 255-character keys
/// payment and carrier APIs allow, and it bounds what each entry costs.
pub const MAX_KEY_LEN: usize = 1024;

/// The routes one listener matches requests against for the guard,
/// computed once at start from the validated config.
#[derive(Debug, Clone, Default)]
pub struct GuardedRoutes {
    /// Routes serving the listener up to its last guarded one, each with
    /// `(operation name, guard)` when guarded. Empty when none is.
    routes: HeadRoutes<(String, Guard)>,
    /// Where stored responses are kept beyond memory, if anywhere.
    keeping: Option<GuardKeeping>,
}

impl GuardedRoutes {
    /// The guarded routes of listener `listener` among `routes` (which are
    /// in priority order, as in `Config::routes`).
    pub fn new(listener: ListenerId, routes: &[Route]) -> Self {
        GuardedRoutes {
            routes: HeadRoutes::new(routes, listener, |route| {
                let guard = route.guard.clone()?;
                Some((route.operation.as_str().to_owned(), guard))
            }),
            keeping: None,
        }
    }

    /// No guard at all: every request is forwarded.
    pub fn none() -> Self {
        GuardedRoutes::default()
    }

    /// These guards keep their stored responses in `keeping` too, and
    /// restore what it holds when they start.
    pub fn kept_in(self, keeping: GuardKeeping) -> Self {
        GuardedRoutes {
            keeping: Some(keeping),
            ..self
        }
    }

    /// True when no route of the listener is guarded.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// A listener's guards at run time; exists only if one of its routes is
/// guarded.
pub(crate) struct Guards {
    routes: HeadRoutes<Arc<RouteGuard>>,
    /// The distinct guard headers: a request with none of them is
    /// forwarded without matching any route.
    headers: Vec<HeaderName>,
}

impl Guards {
    /// The run-time guards of `listener`, or `None` when it has no guarded
    /// route.
    pub(crate) fn new(
        guarded: GuardedRoutes,
        listener: &str,
        metrics: &ProxyMetrics,
        clock: &Clock,
    ) -> Option<Guards> {
        if guarded.is_empty() {
            return None;
        }
        let mut headers: Vec<HeaderName> = Vec::new();
        let keeping = guarded.keeping;
        let routes = guarded.routes.map(|(operation, guard)| {
            if !headers.contains(&guard.header) {
                headers.push(guard.header.clone());
            }
            let metrics = metrics.for_guard(listener, &operation);
            let keeping = keeping.clone().map(|keeping| Keeping {
                route: operation,
                keeping,
            });
            Arc::new(RouteGuard::new(guard, metrics, keeping, clock.clone()))
        });
        Some(Guards { routes, headers })
    }

    /// The guarded route and idempotency key of a request, if it has both.
    pub(crate) fn key_of(&self, parts: &request::Parts) -> Option<(Arc<RouteGuard>, Bytes)> {
        if !self.headers.iter().any(|h| parts.headers.contains_key(h)) {
            return None;
        }
        let (guard, _) = self.routes.decide(&parts.method, parts.uri.path())?;
        let value = parts.headers.get(&guard.header)?.as_bytes();
        if value.is_empty() || value.len() > MAX_KEY_LEN {
            return None;
        }
        Some((Arc::clone(guard), Bytes::copy_from_slice(value)))
    }
}

/// What [`RouteGuard::admit`] decided for one request.
pub(crate) enum Admission {
    /// Answer with this stored response; do not forward.
    Replay(Arc<StoredResponse>),
    /// Forward; this request holds the key and its response may be stored.
    First(Claim),
    /// Forward without storing (the wait for the first request ran out).
    Forward,
}

/// A route's place in a [`GuardKeeping`].
struct Keeping {
    /// The route's name: records are keyed by (route, key).
    route: String,
    keeping: GuardKeeping,
}

/// The guard of one route: its settings, its store and its metrics.
pub(crate) struct RouteGuard {
    header: HeaderName,
    window: std::time::Duration,
    max_response: usize,
    /// One lock per route, held only for a map operation, never across an
    /// await; requests on other routes never contend for it.
    store: Mutex<Store<Arc<StoredResponse>>>,
    clock: Clock,
    metrics: GuardMetrics,
    keeping: Option<Keeping>,
}

impl RouteGuard {
    fn new(guard: Guard, metrics: GuardMetrics, keeping: Option<Keeping>, clock: Clock) -> Self {
        let route = RouteGuard {
            store: Mutex::new(Store::new(guard.window, guard.max_entries)),
            header: guard.header,
            window: guard.window,
            max_response: guard.max_response,
            clock,
            metrics,
            keeping,
        };
        route.restore();
        route
    }

    /// Puts back the responses a previous run kept, oldest first; forgets
    /// those that expired, cannot be read or do not fit.
    fn restore(&self) {
        let Some(Keeping { route, keeping }) = &self.keeping else {
            return;
        };
        let mut readable = Vec::new();
        for (key, bytes) in keeping.state.load(route) {
            match record::decode(&bytes) {
                Ok((at, response)) => readable.push((at, key, Arc::new(response))),
                Err(damage) => {
                    tracing::warn!(route = %route, %damage, "idempotency guard: skipping a kept response");
                    keeping.metrics.count(StateResult::Damaged, 1);
                    keeping.state.forget(route, &key);
                }
            }
        }
        readable.sort_by_key(|(at, _, _)| *at);
        let now = self.clock.now();
        let mut loaded = 0;
        for (at, key, response) in readable {
            let restored = self.with_store(|store| store.restore(&key, response, at, now));
            if restored {
                loaded += 1;
            } else {
                keeping.state.forget(route, &key);
            }
        }
        keeping.metrics.count(StateResult::Loaded, loaded);
    }

    fn store(&self) -> MutexGuard<'_, Store<Arc<StoredResponse>>> {
        // Every store operation leaves it consistent before anything that
        // could panic, so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store and brings the metrics up to date with what
    /// it did.
    fn with_store<R>(&self, f: impl FnOnce(&mut Store<Arc<StoredResponse>>) -> (R, Evicted)) -> R {
        let (result, evicted, before, after) = {
            let mut store = self.store();
            let before = store.stored();
            let (result, evicted) = f(&mut store);
            (result, evicted, before, store.stored())
        };
        self.metrics.evicted(evicted.expired, evicted.capacity);
        self.metrics.stored_changed(before, after);
        if let Some(Keeping { route, keeping }) = &self.keeping {
            for key in &evicted.keys {
                keeping.state.forget(route, key);
            }
        }
        result
    }

    /// Asks a shared store, while `claim` holds `key` here, for the
    /// response another replica stored for it; while another replica's
    /// request with the key is in flight, asks again every
    /// [`REMOTE_POLL`] until `deadline`.
    async fn fetch(&self, claim: &mut Claim, deadline: Instant) -> Remote {
        let Some(Keeping { route, keeping }) = self.keeping.as_ref() else {
            return Remote::Forward;
        };
        let mut waited = false;
        loop {
            let hold = deadline.saturating_duration_since(Instant::now());
            let Some(fetch) = keeping.state.fetch(route, &claim.key, hold) else {
                return Remote::Forward;
            };
            let fetched = tokio::time::timeout_at(deadline, fetch)
                .await
                .unwrap_or(Fetched::Failed);
            let bytes = match fetched {
                Fetched::Found(bytes) => bytes,
                Fetched::Claimed => {
                    claim.shared = true;
                    keeping.metrics.count(StateResult::Missing, 1);
                    return Remote::Forward;
                }
                Fetched::Failed => {
                    keeping.metrics.count(StateResult::LookupFailed, 1);
                    return Remote::Forward;
                }
                Fetched::InFlight => {
                    if !waited {
                        waited = true;
                        keeping.metrics.count(StateResult::InFlight, 1);
                    }
                    let next = Instant::now() + REMOTE_POLL;
                    if next >= deadline {
                        tracing::debug!(header = %self.header, "idempotency guard: first request still in flight at another replica; forwarding");
                        return Remote::GaveUp;
                    }
                    tokio::time::sleep_until(next).await;
                    continue;
                }
            };
            return match self.found(claim, &bytes) {
                Some(found) => {
                    keeping.metrics.count(StateResult::Found, 1);
                    Remote::Found(found)
                }
                None => Remote::Forward,
            };
        }
    }

    /// Stores the `record` another replica stored for the key `claim`
    /// holds, if it can be read and is within the window (clocks of
    /// replicas may disagree).
    fn found(&self, claim: &Claim, record: &[u8]) -> Option<Arc<StoredResponse>> {
        let Keeping { route, keeping } = self.keeping.as_ref()?;
        let (at, response) = match record::decode(record) {
            Ok(found) => found,
            Err(damage) => {
                tracing::warn!(route = %route, %damage, "idempotency guard: a shared response cannot be read; forwarding");
                keeping.metrics.count(StateResult::Damaged, 1);
                return None;
            }
        };
        let now = self.clock.now();
        if now.duration_since(at).unwrap_or_default() >= self.window {
            keeping.metrics.count(StateResult::Missing, 1);
            return None;
        }
        let response = Arc::new(response);
        let stored = self.with_store(|store| {
            store.commit(&claim.key, claim.token, Arc::clone(&response), at, now)
        });
        stored.then_some(response)
    }

    /// Hands the record of `response`, stored at `at` for `key`, to the
    /// store beyond memory, if any.
    fn keep(&self, key: &Bytes, response: &StoredResponse, at: SystemTime) {
        if let Some(Keeping { route, keeping }) = &self.keeping {
            let record = record::encode(response, at);
            keeping.state.save(route, key, record, self.window);
        }
    }

    /// Decides what to do with a request carrying `key`: see the module
    /// doc. Waits for an in-flight first request until `deadline` at most.
    pub(crate) async fn admit(self: &Arc<Self>, key: Bytes, deadline: Instant) -> Admission {
        loop {
            let now = self.clock.now();
            match self.with_store(|store| store.lookup(&key, now)) {
                Lookup::Stored(stored) => return Admission::Replay(stored),
                Lookup::Claimed { token, done } => {
                    let mut claim = Claim {
                        guard: Arc::clone(self),
                        key,
                        token,
                        shared: false,
                        _done: done,
                    };
                    return match self.fetch(&mut claim, deadline).await {
                        Remote::Found(found) => Admission::Replay(found),
                        Remote::Forward => Admission::First(claim),
                        Remote::GaveUp => Admission::Forward,
                    };
                }
                Lookup::InFlight(mut done) => {
                    // Never sent on: `changed` returns when the claim's
                    // sender is dropped, i.e. its request is over.
                    if tokio::time::timeout_at(deadline, done.changed())
                        .await
                        .is_err()
                    {
                        tracing::debug!(header = %self.header, "idempotency guard: first request still in flight; forwarding");
                        return Admission::Forward;
                    }
                }
            }
        }
    }

    /// A stored response was sent for a repeat.
    pub(crate) fn replayed(&self) {
        self.metrics.replayed();
    }
}

/// What asking a shared store decided.
enum Remote {
    /// Another replica stored this response for the key: replay it.
    Found(Arc<StoredResponse>),
    /// Forward, holding the key (nothing shared, claimed, or the store
    /// failed).
    Forward,
    /// Another replica's request with the key was still in flight at the
    /// deadline: forward without storing.
    GaveUp,
}

/// How often a request asks a shared store again while another replica's
/// request with its key is in flight: a fraction of a typical carrier
/// call, and few enough Redis round trips per waiting request.
const REMOTE_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// Holding an idempotency key while its first request is forwarded. It
/// ends in [`Claim::commit`] or, when dropped, releases the key; either way
/// dropping it wakes the requests waiting for the key.
pub(crate) struct Claim {
    guard: Arc<RouteGuard>,
    key: Bytes,
    token: u64,
    /// The key is also claimed in a shared store, to release there too if
    /// nothing is stored.
    shared: bool,
    /// Dropped with the claim, after the store is updated: that wakes the
    /// waiters, which then find the stored response or a free key.
    _done: watch::Sender<()>,
}

impl Claim {
    pub(crate) fn max_response(&self) -> usize {
        self.guard.max_response
    }

    /// Stores `response` as the answer for the key.
    pub(crate) fn commit(mut self, response: StoredResponse) {
        let now = self.guard.clock.now();
        let response = Arc::new(response);
        let stored = self.guard.with_store(|store| {
            store.commit(&self.key, self.token, Arc::clone(&response), now, now)
        });
        if stored {
            // The saved record replaces the shared claim.
            self.shared = false;
            self.guard.keep(&self.key, &response, now);
        } else {
            tracing::debug!("idempotency guard: key no longer held; response not stored");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A no-op after `commit`: the key then maps to the stored response.
        let (key, token) = (&self.key, self.token);
        self.guard.with_store(|store| {
            store.release(key, token);
            ((), Evicted::default())
        });
        if self.shared {
            if let Some(Keeping { route, keeping }) = &self.guard.keeping {
                keeping.state.release(route, key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http::Method;

    /// Two listeners; `extra` is appended to the routes.
    fn config(extra: &str) -> Config {
        let yaml = format!(
            r#"
systems: [wms, carrier]
keys: [order]
listeners:
  - {{ name: wms-in, bind: "127.0.0.1:0", upstream: "http://127.0.0.1:9", system: wms }}
  - {{ name: carrier-out, bind: "127.0.0.1:0", upstream: "http://127.0.0.1:9", system: carrier }}
routes:
  - name: wms.release
    system: wms
    match: {{ method: POST, path: /orders }}
{extra}
"#
        );
        match Config::from_yaml(&yaml, "<guard>") {
            Ok(config) => config,
            Err(errors) => panic!("{errors:?}"),
        }
    }

    fn request(method: Method, path: &str, key: Option<&str>) -> request::Parts {
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        builder
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_listener_without_guarded_routes_gets_no_guards_at_all() {
        let config = config("");
        let guarded = GuardedRoutes::new(ListenerId(0), &config.routes);
        assert!(guarded.is_empty());
        let metrics = ProxyMetrics::new(&mut prometheus_client::registry::Registry::default());
        assert!(Guards::new(guarded, "wms-in", &metrics, &Clock::system()).is_none());
    }

    #[test]
    fn a_guard_applies_only_on_the_listeners_its_route_serves() {
        let config = config(
            r#"
  - name: carrier.buy
    system: carrier
    listeners: [carrier-out]
    match: { method: POST, path: "/shipments/{id}/buy" }
    idempotency_guard: {}
"#,
        );
        assert!(GuardedRoutes::new(ListenerId(0), &config.routes).is_empty());
        let guarded = GuardedRoutes::new(ListenerId(1), &config.routes);
        let (said, _) = guarded
            .routes
            .decide(&Method::POST, "/shipments/S1/buy")
            .expect("guarded on carrier-out");
        assert_eq!(said.0, "carrier.buy");
    }

    #[test]
    fn the_key_is_taken_on_the_route_extraction_would_match() {
        let config = config(
            r#"
  - name: carrier.buy
    system: carrier
    match: { method: POST, path: "/shipments/{id}/buy" }
    idempotency_guard: {}
  - name: carrier.buy_test
    system: carrier
    match: { method: POST, path: "/shipments/test/buy" }
"#,
        );
        let metrics = ProxyMetrics::new(&mut prometheus_client::registry::Registry::default());
        let guarded = GuardedRoutes::new(ListenerId(0), &config.routes);
        let Some(guards) = Guards::new(guarded, "wms-in", &metrics, &Clock::system()) else {
            panic!("the listener has a guarded route");
        };
        let key = |method, path, key| {
            guards
                .key_of(&request(method, path, key))
                .map(|(_, key)| key)
        };
        assert_eq!(
            key(Method::POST, "/shipments/S1/buy?x=1", Some("k1")),
            Some(Bytes::from_static(b"k1"))
        );
        assert_eq!(key(Method::POST, "/shipments/S1/buy", None), None);
        assert_eq!(key(Method::POST, "/shipments/S1/buy", Some("")), None);
        assert_eq!(key(Method::GET, "/shipments/S1/buy", Some("k1")), None);
        assert_eq!(key(Method::POST, "/shipments/test/buy", Some("k1")), None);
        assert_eq!(key(Method::POST, "/orders", Some("k1")), None);
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(key(Method::POST, "/shipments/S1/buy", Some(&long)), None);
    }

    /// A [`GuardState`] in memory that notes what the guard asked of it.
    #[derive(Default)]
    struct Kept {
        records: Mutex<Vec<(Bytes, Bytes)>>,
        /// What `fetch` answers; `None`: not shared.
        shared: Option<Fetched>,
        saved: Mutex<Vec<Bytes>>,
        forgotten: Mutex<Vec<Bytes>>,
        released: Mutex<Vec<Bytes>>,
    }

    fn note(list: &Mutex<Vec<Bytes>>, key: &Bytes) {
        list.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key.clone());
    }

    fn noted(list: &Mutex<Vec<Bytes>>) -> Vec<Bytes> {
        let mut keys = list.lock().unwrap_or_else(PoisonError::into_inner).clone();
        keys.sort();
        keys
    }

    impl GuardState for Kept {
        fn load(&self, _route: &str) -> Vec<(Bytes, Bytes)> {
            std::mem::take(&mut *self.records.lock().unwrap_or_else(PoisonError::into_inner))
        }
        fn fetch(&self, _route: &str, _key: &Bytes, _hold: std::time::Duration) -> Option<Fetch> {
            let answer = self.shared.clone()?;
            Some(Box::pin(async move { answer }))
        }
        fn save(&self, _route: &str, key: &Bytes, _record: Bytes, _ttl: std::time::Duration) {
            note(&self.saved, key);
        }
        fn forget(&self, _route: &str, key: &Bytes) {
            note(&self.forgotten, key);
        }
        fn release(&self, _route: &str, key: &Bytes) {
            note(&self.released, key);
        }
    }

    const NOW: u64 = 1_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    fn response(label: &'static str) -> StoredResponse {
        StoredResponse {
            status: http::StatusCode::CREATED,
            headers: http::HeaderMap::new(),
            extensions: http::Extensions::new(),
            body: Bytes::from_static(label.as_bytes()),
            trailers: None,
            sized: true,
        }
    }

    /// The guard of one route (window 60 s, 2 entries) at [`NOW`], kept in `kept`.
    fn guard(kept: &Arc<Kept>) -> Arc<RouteGuard> {
        let metrics = ProxyMetrics::new(&mut prometheus_client::registry::Registry::default());
        let state: Arc<dyn GuardState> = kept.clone();
        let keeping = Keeping {
            route: "carrier.buy".into(),
            keeping: GuardKeeping {
                state,
                metrics: GuardStateMetrics::new(
                    &mut prometheus_client::registry::Registry::default(),
                ),
            },
        };
        let settings = Guard {
            header: HeaderName::from_static("idempotency-key"),
            window: std::time::Duration::from_secs(60),
            max_entries: 2,
            max_response: 1024,
        };
        Arc::new(RouteGuard::new(
            settings,
            metrics.for_guard("edge", "carrier.buy"),
            Some(keeping),
            Clock::from_fn(|| at(NOW)),
        ))
    }

    fn deadline() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    async fn replayed(guard: &Arc<RouteGuard>, key: &'static str) -> Option<Bytes> {
        match guard
            .admit(Bytes::from_static(key.as_bytes()), deadline())
            .await
        {
            Admission::Replay(stored) => Some(stored.body.clone()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn restoring_puts_back_what_is_within_the_window_and_forgets_the_rest() {
        let k = |s: &'static str| Bytes::from_static(s.as_bytes());
        let records = vec![
            (k("fresh"), record::encode(&response("F"), at(NOW - 10))),
            (k("expired"), record::encode(&response("X"), at(NOW - 100))),
            (k("damaged"), Bytes::from_static(b"\x01not a record")),
            (k("newest"), record::encode(&response("N"), at(NOW - 5))),
            (k("oldest"), record::encode(&response("O"), at(NOW - 20))),
        ];
        let kept = Arc::new(Kept {
            records: Mutex::new(records),
            ..Kept::default()
        });
        let guard = guard(&kept);
        assert_eq!(
            noted(&kept.forgotten),
            vec![k("damaged"), k("expired"), k("oldest")],
            "expired, unreadable and over capacity (2) are forgotten"
        );
        assert_eq!(replayed(&guard, "fresh").await, Some(k("F")));
        assert_eq!(replayed(&guard, "newest").await, Some(k("N")));
        assert_eq!(replayed(&guard, "oldest").await, None);
    }

    #[tokio::test]
    async fn a_shared_claim_is_released_when_nothing_is_stored_and_replaced_when_something_is() {
        let kept = Arc::new(Kept {
            shared: Some(Fetched::Claimed),
            ..Kept::default()
        });
        let guard = guard(&kept);
        let key = Bytes::from_static(b"fails");
        let Admission::First(claim) = guard.admit(key.clone(), deadline()).await else {
            panic!("the key was free");
        };
        drop(claim);
        assert_eq!(noted(&kept.released), vec![key]);

        let key = Bytes::from_static(b"stores");
        let Admission::First(claim) = guard.admit(key.clone(), deadline()).await else {
            panic!("the key was free");
        };
        claim.commit(response("S"));
        assert_eq!(noted(&kept.saved), vec![key]);
        assert_eq!(noted(&kept.released).len(), 1, "no release after a save");
    }

    #[tokio::test]
    async fn a_response_another_replica_stored_is_replayed_without_forwarding() {
        let record = record::encode(&response("R"), at(NOW - 1));
        let kept = Arc::new(Kept {
            shared: Some(Fetched::Found(record)),
            ..Kept::default()
        });
        let guard = guard(&kept);
        assert_eq!(
            replayed(&guard, "elsewhere").await,
            Some(Bytes::from_static(b"R"))
        );
        assert!(noted(&kept.saved).is_empty(), "not saved again");
    }
}
