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

use smallvec::SmallVec;

use crate::config::{ListenerId, Route};

/// The raw values of a route's `{params}`: a path has a few, held without
/// an allocation.
pub(super) type Params<'p> = SmallVec<[&'p str; 4]>;

/// The route an exchange matched and the raw values of its `{params}`.
#[derive(Debug)]
pub(super) struct Matched<'c, 'p> {
    pub route: &'c Route,
    /// Raw (still percent-encoded) values in template order.
    pub params: Params<'p>,
}

/// The first route in `routes` that matches, if any. `content_holds` is
/// asked about a route's conditions once everything else matched.
pub(super) fn find<'c, 'p>(
    routes: &'c [Route],
    listener: ListenerId,
    method: &http::Method,
    path: &'p str,
    mut content_holds: impl FnMut(&Route) -> bool,
) -> Option<Matched<'c, 'p>> {
    // One buffer for every template tried: no allocation per route (nor
    // at all for up to 4 params).
    let mut params = Params::new();
    let route = routes.iter().find(|route| {
        route.serves(listener)
            && route.method.as_ref().is_none_or(|m| m == method)
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
        assert_eq!(found.params[..], ["SO-1"]);
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
        assert_eq!(found.params[..], ["SO-1"]);
        let line = find(
            &config.routes,
            ListenerId(0),
            &Method::GET,
            "/orders/SO-2/lines/7/",
            |_| false,
        )
        .expect("matches");
        assert_eq!(line.route.operation.as_str(), "wms.line");
        assert_eq!(line.params[..], ["SO-2", "7"]);
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
