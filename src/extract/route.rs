//! Route matching: which route of the routes file an exchange belongs to.
//!
//! `Config::routes` is already in priority order (most specific first, and
//! of routes with the same shape, the one with more content conditions
//! first), so the first route that serves the exchange's listener, accepts
//! its method (`None` accepts any), whose path template matches the path
//! and whose content conditions hold wins. Conditions are asked last, only
//! of routes that matched on everything else, so no body is read for a
//! route that could not match anyway.
//! The path is matched raw, without the query and before percent-decoding:
//! parameter values are decoded afterwards (see [`super::request`]), so an
//! encoded `/` (`%2F`) stays inside one parameter.
//!
//! Only routes that can match are tried: a [`RouteIndex`], built once at
//! start, lists per listener and per first path segment the routes whose
//! template starts with that literal or with a parameter, in priority
//! order. A file of a hundred routes over a dozen prefixes then tries a
//! handful per exchange instead of all of them.

use std::collections::HashMap;

use crate::config::{ListenerId, PathTemplate, Route};

/// The route an exchange matched and the raw values of its `{params}`.
#[derive(Debug)]
pub(super) struct Matched<'c, 'p> {
    pub route: &'c Route,
    /// Raw (still percent-encoded) values in template order.
    pub params: Vec<&'p str>,
}

/// The routes worth trying, by listener and first path segment.
#[derive(Debug)]
pub(super) struct RouteIndex {
    /// Indexed by [`ListenerId`], for every listener some route names.
    named: Vec<Candidates>,
    /// For a listener no route names: the routes that serve every listener.
    unnamed: Candidates,
}

/// The routes one listener serves, by the first segment of the path.
#[derive(Debug, Default)]
struct Candidates {
    /// For each literal some template starts with: the routes starting with
    /// it or with a parameter (positions in `Config::routes`, in order).
    by_literal: HashMap<Box<str>, Box<[usize]>>,
    /// The routes starting with a parameter: all that can match a path
    /// whose first segment no template starts with.
    by_param: Box<[usize]>,
}

impl RouteIndex {
    /// Indexes `routes` (in priority order).
    pub(super) fn new(routes: &[Route]) -> Self {
        let named = routes
            .iter()
            .flat_map(|route| route.listeners.iter().map(|l| l.0 + 1))
            .max()
            .unwrap_or(0);
        RouteIndex {
            named: (0..named)
                .map(|l| Candidates::new(routes, |route| route.serves(ListenerId(l))))
                .collect(),
            unnamed: Candidates::new(routes, |route| route.listeners.is_empty()),
        }
    }

    /// The routes to try for `path` on `listener`, in priority order.
    fn candidates(&self, listener: ListenerId, path: &str) -> &[usize] {
        let candidates = self.named.get(listener.0).unwrap_or(&self.unnamed);
        candidates
            .by_literal
            .get(PathTemplate::first_segment(path))
            .unwrap_or(&candidates.by_param)
    }
}

impl Candidates {
    /// The index of the routes `serves` accepts.
    fn new(routes: &[Route], serves: impl Fn(&Route) -> bool) -> Self {
        let served: Vec<(usize, Option<&str>)> = routes
            .iter()
            .enumerate()
            .filter(|(_, route)| serves(route))
            .map(|(at, route)| (at, route.path.first_literal()))
            .collect();
        let starting_with = |literal: Option<&str>| -> Box<[usize]> {
            served
                .iter()
                .filter(|(_, first)| first.is_none() || *first == literal)
                .map(|(at, _)| *at)
                .collect()
        };
        let mut by_literal = HashMap::new();
        for literal in served.iter().filter_map(|(_, first)| *first) {
            if !by_literal.contains_key(literal) {
                by_literal.insert(literal.into(), starting_with(Some(literal)));
            }
        }
        Candidates {
            by_literal,
            by_param: starting_with(None),
        }
    }
}

/// The first route in `routes` that matches, if any, trying those `index`
/// (built from the same `routes`) lists. `content_holds` is asked about a
/// route's conditions once everything else matched.
pub(super) fn find<'c, 'p>(
    routes: &'c [Route],
    index: &RouteIndex,
    listener: ListenerId,
    method: &http::Method,
    path: &'p str,
    mut content_holds: impl FnMut(&Route) -> bool,
) -> Option<Matched<'c, 'p>> {
    // One buffer for every template tried: no allocation per route.
    let mut params = Vec::new();
    let mut tried = index
        .candidates(listener, path)
        .iter()
        .filter_map(|&at| routes.get(at));
    let route = tried.find(|route| {
        route.method.as_ref().is_none_or(|m| m == method)
            && route.path.match_into(path, &mut params)
            && (route.conditions.is_empty() || content_holds(route))
    })?;
    Some(Matched { route, params })
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::super::testkit::ConfigBuilder;
    use super::*;

    /// [`super::find`] through an index of `routes`, as the extractor does.
    fn find<'c, 'p>(
        routes: &'c [Route],
        listener: ListenerId,
        method: &Method,
        path: &'p str,
        content_holds: impl FnMut(&Route) -> bool,
    ) -> Option<Matched<'c, 'p>> {
        let index = RouteIndex::new(routes);
        super::find(routes, &index, listener, method, path, content_holds)
    }

    fn operation<'c>(found: Option<Matched<'c, '_>>) -> Option<&'c str> {
        found.map(|m| m.route.operation.as_str())
    }

    #[test]
    fn routes_starting_with_a_parameter_keep_their_place_among_literal_ones() {
        let mut b = ConfigBuilder::new();
        b.route("tenant.orders", None, "/{tenant}/orders");
        b.route("orders.one", None, "/orders/{id}");
        b.route("root", None, "/");
        b.route("tenant.any", None, "/{tenant}/{rest}");
        let config = b.build();
        let get = |path| find(&config.routes, ListenerId(0), &Method::GET, path, |_| true);
        assert_eq!(operation(get("/orders/orders")), Some("tenant.orders"));
        assert_eq!(operation(get("/orders/SO-1")), Some("orders.one"));
        assert_eq!(operation(get("/acme/orders")), Some("tenant.orders"));
        assert_eq!(operation(get("/acme/SO-1")), Some("tenant.any"));
        assert_eq!(operation(get("/")), Some("root"));
        assert_eq!(operation(get("")), Some("root"));
        assert_eq!(
            operation(get("//orders")),
            None,
            "empty segment is no tenant"
        );
        assert_eq!(operation(get("/orders")), None);
    }

    #[test]
    fn a_listener_no_route_names_is_served_by_the_routes_for_every_listener() {
        let mut b = ConfigBuilder::new();
        b.route("erp.only", None, "/x").listeners = vec![ListenerId(1)];
        b.route("wms.only", None, "/x/{id}").listeners = vec![ListenerId(0)];
        b.route("all", None, "/x");
        let config = b.build();
        let on = |listener, path| find(&config.routes, listener, &Method::GET, path, |_| true);
        assert_eq!(operation(on(ListenerId(7), "/x")), Some("all"));
        assert_eq!(operation(on(ListenerId(7), "/x/1")), None);
        assert_eq!(operation(on(ListenerId(0), "/x/1")), Some("wms.only"));
        assert_eq!(operation(on(ListenerId(1), "/x")), Some("erp.only"));
        assert_eq!(operation(on(ListenerId(1), "/x/1")), None);
    }

    #[test]
    fn first_matching_route_in_priority_order_wins() {
        let mut b = ConfigBuilder::new();
        b.route("wms.order_special", Some(Method::GET), "/orders/special");
        b.route("wms.order", Some(Method::GET), "/orders/{id}");
        b.route("wms.any", None, "/orders/{id}");
        let config = b.build();
        let found = find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/orders/special",
            |_| true,
        );
        assert_eq!(
            found.map(|m| m.route.operation.to_string()).as_deref(),
            Some("wms.order_special")
        );
        let found = find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/orders/SO-1",
            |_| true,
        );
        let found = found.expect("matches");
        assert_eq!(found.route.operation.as_str(), "wms.order");
        assert_eq!(found.params, vec!["SO-1"]);
    }

    #[test]
    fn method_must_match_unless_the_route_accepts_any() {
        let mut b = ConfigBuilder::new();
        b.route("wms.get", Some(Method::GET), "/orders/{id}");
        b.route("wms.any", None, "/orders/{id}");
        let config = b.build();
        let post = find(
            &config.routes,
            ListenerId(0),
            &Method::POST,
            "/orders/1",
            |_| true,
        );
        assert_eq!(post.map(|m| m.route.operation.as_str()), Some("wms.any"));
        let get = find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/orders/1",
            |_| true,
        );
        assert_eq!(get.map(|m| m.route.operation.as_str()), Some("wms.get"));
    }

    #[test]
    fn route_bound_to_another_listener_is_skipped() {
        let mut b = ConfigBuilder::new();
        b.route("erp.only", None, "/x").listeners = vec![ListenerId(1)];
        b.route("all", None, "/x");
        let config = b.build();
        let on_0 = find(&config.routes, ListenerId(0), &Method::GET, "/x", |_| true);
        assert_eq!(on_0.map(|m| m.route.operation.as_str()), Some("all"));
        let on_1 = find(&config.routes, ListenerId(1), &Method::GET, "/x", |_| true);
        assert_eq!(on_1.map(|m| m.route.operation.as_str()), Some("erp.only"));
    }

    #[test]
    fn content_conditions_are_asked_only_after_method_and_path_matched() {
        let mut b = ConfigBuilder::new();
        b.route("edi.214", Some(Method::POST), "/edi")
            .conditions
            .push(crate::config::Condition::X12Set("214".into()));
        b.route("edi.any", Some(Method::POST), "/edi");
        let config = b.build();
        let mut asked = 0;
        let found = find(&config.routes, ListenerId(0), &Method::GET, "/edi", |_| {
            asked += 1;
            true
        });
        assert!(found.is_none());
        assert_eq!(asked, 0, "a GET cannot match; no body is read");
        let refused = find(&config.routes, ListenerId(0), &Method::POST, "/edi", |_| {
            false
        });
        assert_eq!(refused.map(|m| m.route.operation.as_str()), Some("edi.any"));
        let held = find(&config.routes, ListenerId(0), &Method::POST, "/edi", |_| {
            true
        });
        assert_eq!(held.map(|m| m.route.operation.as_str()), Some("edi.214"));
    }

    #[test]
    fn params_of_routes_tried_before_do_not_leak_into_the_winner() {
        let mut b = ConfigBuilder::new();
        b.route("wms.line", Some(Method::GET), "/orders/{id}/lines/{line}");
        b.route("edi.214", Some(Method::GET), "/orders/{box}")
            .conditions
            .push(crate::config::Condition::X12Set("214".into()));
        b.route("wms.order", Some(Method::GET), "/orders/{id}");
        let config = b.build();
        // `wms.line` reads `SO-1` before running out of segments,
        // `edi.214` matches the path but its condition is refused.
        let found = find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/orders/SO-1",
            |_| false,
        )
        .expect("matches");
        assert_eq!(found.route.operation.as_str(), "wms.order");
        assert_eq!(found.params, vec!["SO-1"]);
        let line = find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/orders/SO-2/lines/7/",
            |_| false,
        )
        .expect("matches");
        assert_eq!(line.route.operation.as_str(), "wms.line");
        assert_eq!(line.params, vec!["SO-2", "7"]);
    }

    #[test]
    fn no_route_matches_an_unknown_path() {
        let mut b = ConfigBuilder::new();
        b.route("wms.order", None, "/orders/{id}");
        let config = b.build();
        assert!(find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/shipments/1",
            |_| true
        )
        .is_none());
    }
}
