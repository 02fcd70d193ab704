//! Listeners, the admin address and the state/observation bounds: socket
//! addresses, upstream URLs, timeouts and sizes, and no two sockets on the
//! same address.

use std::net::SocketAddr;

use super::super::raw::{
    RawAdmin, RawDirection, RawEngine, RawForwarded, RawHeaderCase, RawHostHeader, RawListener,
    RawObservation, RawState, RawUpstreamProtocol, Scalar,
};
use super::super::units::parse_size;
use super::super::{
    defaults, kind, AdminConfig, Direction, Engine, Forwarded, HeaderCase, HostHeader, Listener,
    ListenerId, ObservationConfig, StateConfig, Symbols, Upstream, UpstreamProtocol,
};
use super::Validator;

impl Validator<'_> {
    pub(super) fn admin(&mut self, raw: Option<&RawAdmin>) -> Option<AdminConfig> {
        let bind = match raw.and_then(|a| a.bind.as_deref()) {
            Some(text) => self.socket_addr("admin.bind", text),
            None => match defaults::ADMIN_BIND.parse() {
                Ok(bind) => Some(bind),
                Err(_) => {
                    self.error(
                        "admin.bind",
                        "the built-in default admin address is invalid",
                    );
                    None
                }
            },
        };
        bind.map(|bind| AdminConfig { bind })
    }

    pub(super) fn state(&mut self, raw: Option<&RawState>) -> StateConfig {
        let ttl = self.duration(
            "state.ttl",
            raw.and_then(|s| s.ttl.as_ref()),
            defaults::STATE_TTL,
        );
        let max_transactions = self.at_least_one(
            "state.max_transactions",
            raw.and_then(|s| s.max_transactions),
            defaults::MAX_TRANSACTIONS,
        );
        let max_exchanges_per_transaction = self.at_least_one(
            "state.max_exchanges_per_transaction",
            raw.and_then(|s| s.max_exchanges_per_transaction),
            defaults::MAX_EXCHANGES_PER_TRANSACTION,
        );
        let store = self.store(raw);
        StateConfig {
            ttl,
            max_transactions,
            max_exchanges_per_transaction,
            store,
        }
    }

    pub(super) fn observation(&mut self, raw: Option<&RawObservation>) -> ObservationConfig {
        let queue_capacity = self.at_least_one(
            "observation.queue_capacity",
            raw.and_then(|o| o.queue_capacity),
            defaults::QUEUE_CAPACITY,
        );
        let field = "observation.max_decoded_bytes";
        let max_decoded_bytes = self.size(
            field,
            raw.and_then(|o| o.max_decoded_bytes.as_ref()),
            defaults::MAX_DECODED_BYTES,
        );
        if max_decoded_bytes == 0 {
            self.error(field, "must be at least 1 byte, e.g. `1MiB`");
        }
        ObservationConfig {
            queue_capacity,
            max_decoded_bytes,
        }
    }

    /// Validates every listener; also refuses two sockets on one address
    /// (including the admin surface's).
    pub(super) fn listeners(
        &mut self,
        raw: &[RawListener],
        systems: &Symbols<kind::System>,
        admin: Option<&AdminConfig>,
    ) -> Vec<Listener> {
        let names: Vec<&str> = raw.iter().map(|l| l.name.as_str()).collect();
        self.check_unique("listeners", "listener", &names);
        if raw.is_empty() {
            self.error("listeners", "no listeners are declared; expected at least one, e.g. `- { name: wms-inbound, bind: 0.0.0.0:8080, upstream: http://127.0.0.1:9000, system: wms }`");
        }
        let mut bound: Vec<(SocketAddr, String)> = Vec::new();
        if let Some(admin) = admin {
            bound.push((admin.bind, "the admin surface (admin.bind)".to_owned()));
        }
        let mut listeners = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let at = |leaf: &str| format!("listeners[{i}].{leaf}");
            let bind = self.socket_addr(&at("bind"), &l.bind);
            if let Some(bind) = bind {
                if let Some((_, owner)) = bound.iter().find(|(other, _)| clashes(bind, *other)) {
                    let message = format!("address `{bind}` is already bound by {owner}; each listener needs its own port");
                    self.error(&at("bind"), message);
                }
                let line = self.line_of(&at("bind"));
                bound.push((bind, format!("listener `{}`{line}", l.name)));
            }
            let upstream = self.upstream(&at("upstream"), &l.upstream);
            let system = self.lookup(systems, "system", &at("system"), &l.system);
            let timeout = self.duration(
                &at("timeout"),
                l.timeout.as_ref(),
                defaults::UPSTREAM_TIMEOUT,
            );
            let connect_timeout = self.duration(
                &at("connect_timeout"),
                l.connect_timeout.as_ref(),
                defaults::CONNECT_TIMEOUT,
            );
            let tap_limit = self.size(&at("tap_limit"), l.tap_limit.as_ref(), defaults::TAP_LIMIT);
            let (Some(bind), Some(uri), Some(system)) = (bind, upstream, system) else {
                continue;
            };
            listeners.push(Listener {
                id: ListenerId(i),
                name: l.name.clone(),
                bind,
                upstream: Upstream {
                    uri,
                    protocol: match l.upstream_protocol {
                        None | Some(RawUpstreamProtocol::Auto) => UpstreamProtocol::Auto,
                        Some(RawUpstreamProtocol::Http1) => UpstreamProtocol::Http1,
                        Some(RawUpstreamProtocol::Http2) => UpstreamProtocol::Http2,
                    },
                },
                system,
                direction: match l.direction {
                    None | Some(RawDirection::Inbound) => Direction::Inbound,
                    Some(RawDirection::Outbound) => Direction::Outbound,
                },
                host_header: match l.host_header {
                    None | Some(RawHostHeader::Preserve) => HostHeader::Preserve,
                    Some(RawHostHeader::Upstream) => HostHeader::Upstream,
                },
                header_case: match l.header_case {
                    None | Some(RawHeaderCase::Preserve) => HeaderCase::Preserve,
                    Some(RawHeaderCase::Lowercase) => HeaderCase::Lowercase,
                },
                forwarded: match l.forwarded {
                    None | Some(RawForwarded::Off) => Forwarded::Off,
                    Some(RawForwarded::Append) => Forwarded::Append,
                },
                engine: match l.engine {
                    None | Some(RawEngine::Auto) => Engine::Auto,
                    Some(RawEngine::Hyper) => Engine::Hyper,
                    Some(RawEngine::Native) => Engine::Native,
                },
                timeout,
                connect_timeout,
                tap_limit,
            });
        }
        listeners
    }

    fn socket_addr(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    field,
                    format!("invalid socket address `{text}`; expected an IP address and port, e.g. `0.0.0.0:8080` or `[::1]:8080` (host names are not resolved)"),
                );
                None
            }
        }
    }

    /// An `http://` or `https://` URL with a host and no query.
    fn upstream(&mut self, field: &str, text: &str) -> Option<http::Uri> {
        let example = "expected e.g. `http://127.0.0.1:9000` or `https://api.carrier.example/v2`";
        let uri: http::Uri = match text.trim().parse() {
            Ok(uri) => uri,
            Err(error) => {
                self.error(
                    field,
                    format!("invalid upstream URL `{text}` ({error}); {example}"),
                );
                return None;
            }
        };
        let problem = match (uri.scheme_str(), uri.host()) {
            (None, _) => Some(format!("upstream URL `{text}` has no scheme; {example}")),
            (Some(scheme), _) if scheme != "http" && scheme != "https" => Some(format!(
                "upstream URL scheme `{scheme}` is not supported; expected `http` or `https`"
            )),
            (_, None | Some("")) => Some(format!("upstream URL `{text}` has no host; {example}")),
            _ if uri.query().is_some() => Some(format!(
                "upstream URL `{text}` has a query; expected only scheme, host, port and an optional base path"
            )),
            _ => None,
        };
        match problem {
            Some(message) => {
                self.error(field, message);
                None
            }
            None => Some(uri),
        }
    }

    pub(super) fn size(&mut self, field: &str, raw: Option<&Scalar>, default: usize) -> usize {
        let Some(text) = raw else { return default };
        parse_size(&text.0).unwrap_or_else(|message| {
            self.error(field, message);
            default
        })
    }

    pub(super) fn at_least_one(
        &mut self,
        field: &str,
        raw: Option<usize>,
        default: usize,
    ) -> usize {
        match raw {
            None => default,
            Some(0) => {
                self.error(field, format!("must be at least 1 (default {default})"));
                default
            }
            Some(n) => n,
        }
    }
}

/// Two sockets cannot both bind these addresses: the same address, or the
/// same port where one is the unspecified address of the same family.
/// Port 0 asks the system for a free port, so it never clashes.
fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() == 0 {
        return false;
    }
    a == b
        || (a.port() == b.port()
            && a.is_ipv4() == b.is_ipv4()
            && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{NativeRefusal, Serving, StoreConfig};

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    fn load_state(state: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: wms }}\nstate: {state}\n"
        );
        crate::config::Config::from_yaml(&text, "t.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn state_is_kept_in_memory_unless_a_data_directory_is_given() {
        let config = load_state("{ ttl: 1h }").expect("valid");
        assert!(matches!(config.state.store, StoreConfig::Memory));
    }

    #[test]
    fn a_data_directory_selects_the_embedded_store_with_its_defaults() {
        let config = load_state("{ path: /var/lib/waybill }").expect("valid");
        let StoreConfig::Embedded(embedded) = config.state.store else {
            panic!("expected the embedded store");
        };
        assert_eq!(embedded.path, PathBuf::from("/var/lib/waybill"));
        assert_eq!(embedded.commit_interval, defaults::COMMIT_INTERVAL);
        assert_eq!(embedded.commit_batch, defaults::COMMIT_BATCH);
        assert_eq!(embedded.snapshot_interval, defaults::SNAPSHOT_INTERVAL);
    }

    #[test]
    fn every_embedded_store_setting_is_read_into_a_typed_value() {
        let config = load_state(
            "{ backend: embedded, path: /data, commit_interval: 25ms, commit_batch: 64, snapshot_interval: 1m }",
        )
        .expect("valid");
        let StoreConfig::Embedded(embedded) = config.state.store else {
            panic!("expected the embedded store");
        };
        assert_eq!(
            embedded.commit_interval,
            std::time::Duration::from_millis(25)
        );
        assert_eq!(embedded.commit_batch, 64);
        assert_eq!(
            embedded.snapshot_interval,
            std::time::Duration::from_secs(60)
        );
    }

    #[test]
    fn an_embedded_store_without_a_data_directory_is_refused() {
        let error = load_state("{ backend: embedded }").expect_err("invalid");
        assert!(
            error.contains("state.path: `backend: embedded` needs a data directory, e.g. `path: /var/lib/waybill`"),
            "{error}"
        );
    }

    #[test]
    fn a_data_directory_with_the_memory_backend_is_refused() {
        let error = load_state("{ backend: memory, path: /data }").expect_err("invalid");
        assert!(
            error.contains("state.path: a data directory is set but `state.backend` is `memory`; remove `path` or set `backend: embedded`"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_backend_is_refused_with_the_known_ones() {
        let error = load_state("{ backend: sqlite }").expect_err("invalid");
        assert!(
            error.contains(
                "state.backend: unknown state backend `sqlite`; expected `memory`, `embedded` or `redis`"
            ),
            "{error}"
        );
    }

    #[test]
    fn an_empty_data_directory_is_refused() {
        let error = load_state("{ path: ' ' }").expect_err("invalid");
        assert!(
            error.contains("state.path: the data directory is empty; expected a directory, e.g. `/var/lib/waybill`"),
            "{error}"
        );
    }

    #[test]
    fn a_commit_interval_over_a_second_is_refused() {
        let error = load_state("{ path: /data, commit_interval: 2s }").expect_err("invalid");
        assert!(
            error.contains("state.commit_interval: `2s` is too long: observations wait this long before they are accepted; expected at most 1s, e.g. `10ms`"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_commit_batch_is_refused() {
        let error = load_state("{ path: /data, commit_batch: 0 }").expect_err("invalid");
        assert!(
            error.contains("state.commit_batch: must be at least 1 (default 1024)"),
            "{error}"
        );
    }

    fn load_listener(listener: &str, routes: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, system: wms, {listener} }}\nroutes:\n{routes}"
        );
        crate::config::Config::from_yaml(&text, "t.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn the_engine_is_auto_unless_one_is_asked_for() {
        let plain = "upstream: http://127.0.0.1:9000";
        let config = load_listener(plain, "  []\n").expect("valid");
        assert_eq!(config.listeners[0].engine, Engine::Auto);
        for (name, engine) in [
            ("auto", Engine::Auto),
            ("hyper", Engine::Hyper),
            ("native", Engine::Native),
        ] {
            let config =
                load_listener(&format!("{plain}, engine: {name}"), "  []\n").expect("valid");
            assert_eq!(config.listeners[0].engine, engine);
        }
        let error = load_listener(&format!("{plain}, engine: h3"), "  []\n").expect_err("invalid");
        assert!(
            error.contains("t.yaml:4:") && error.contains("h3"),
            "{error}"
        );
    }

    const GUARDED: &str = "  - { name: g, system: wms, match: { path: /a }, idempotency_guard: { header: Idempotency-Key } }\n";

    /// The listeners the native engine cannot serve, with the reason.
    fn refused() -> [(&'static str, &'static str, NativeRefusal); 3] {
        [
            (
                "upstream: http://127.0.0.1:9000, upstream_protocol: http2",
                "  []\n",
                NativeRefusal::Http2Upstream,
            ),
            (
                "upstream: https://erp.example",
                "  []\n",
                NativeRefusal::Http2Upstream,
            ),
            (
                "upstream: http://127.0.0.1:9000",
                GUARDED,
                NativeRefusal::Guard,
            ),
        ]
    }

    #[test]
    fn the_native_engine_is_refused_where_it_cannot_serve_saying_why() {
        for (listener, routes, reason) in refused() {
            let error =
                load_listener(&format!("{listener}, engine: native"), routes).expect_err("refused");
            assert!(
                error.contains("listeners[0].engine: `engine: native` cannot serve")
                    && error.contains(&reason.to_string()),
                "{listener}: {error}"
            );
        }
        let https_http1 = "upstream: https://erp.example, upstream_protocol: http1, engine: native";
        assert!(load_listener(https_http1, "  []\n").is_ok());
        let propagating =
            "  - { name: on, system: wms, match: { path: /a }, propagate: trace_context }\n";
        let native = "upstream: http://127.0.0.1:9000, engine: native";
        assert!(load_listener(native, propagating).is_ok());
        let lowercase = "upstream: http://127.0.0.1:9000, header_case: lowercase, engine: native";
        assert!(load_listener(lowercase, "  []\n").is_ok());
    }

    #[test]
    fn auto_serves_with_the_native_engine_where_it_can_and_hyper_where_not() {
        for (listener, routes, reason) in refused() {
            let config = load_listener(listener, routes).expect("auto is never refused");
            let listener_config = &config.listeners[0];
            let guarded = listener_config.has_guarded_route(&config.routes);
            assert_eq!(
                listener_config.serving(guarded),
                Ok(Serving::Hyper(Some(reason))),
                "{listener}"
            );
        }
        let served = [
            "upstream: http://127.0.0.1:9000",
            "upstream: http://127.0.0.1:9000, upstream_protocol: http1",
            "upstream: https://erp.example, upstream_protocol: http1",
        ];
        for listener in served {
            let config = load_listener(listener, "  []\n").expect("valid");
            assert_eq!(
                config.listeners[0].serving(false),
                Ok(Serving::Native),
                "{listener}"
            );
        }
        let hyper = load_listener("upstream: http://127.0.0.1:9000, engine: hyper", "  []\n")
            .expect("valid");
        assert_eq!(hyper.listeners[0].serving(false), Ok(Serving::Hyper(None)));
    }

    #[test]
    fn the_same_port_clashes_when_one_side_is_the_unspecified_address() {
        assert!(clashes(addr("0.0.0.0:8080"), addr("127.0.0.1:8080")));
        assert!(clashes(addr("127.0.0.1:8080"), addr("127.0.0.1:8080")));
        assert!(!clashes(addr("127.0.0.1:8080"), addr("127.0.0.2:8080")));
        assert!(!clashes(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
        assert!(!clashes(addr("0.0.0.0:8080"), addr("0.0.0.0:8081")));
        assert!(!clashes(addr("0.0.0.0:8080"), addr("[::1]:8080")));
    }
}
