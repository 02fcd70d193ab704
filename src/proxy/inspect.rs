//! The per-route inspection switch (`inspect: false`): which requests the
//! proxy forwards without tapping their bodies or handing an exchange to
//! extraction. Decided on the request head, before any body byte: the first
//! route, in matching priority, that serves the listener and accepts the
//! request's method and path decides (validation keeps content conditions
//! off uninspected routes, so no later route could have won on content).
//! A listener without such a route does no matching at all.

use http::Method;

use crate::config::{ListenerId, PathTemplate, Route};

/// A listener's routes up to its last uninspected one, computed once at
/// start from the validated config. Empty when every route is inspected.
#[derive(Debug, Clone, Default)]
pub struct UninspectedRoutes {
    /// `(method, path, inspect)` in priority order.
    routes: Vec<(Option<Method>, PathTemplate, bool)>,
}

impl UninspectedRoutes {
    /// The routes of listener `listener` among `routes` (in priority order,
    /// as in `Config::routes`) that decide inspection.
    pub fn new(listener: ListenerId, routes: &[Route]) -> Self {
        let serving: Vec<&Route> = routes.iter().filter(|r| r.serves(listener)).collect();
        let Some(last) = serving.iter().rposition(|r| !r.inspect) else {
            return UninspectedRoutes::default();
        };
        let routes = serving[..=last]
            .iter()
            .map(|route| (route.method.clone(), route.path.clone(), route.inspect))
            .collect();
        UninspectedRoutes { routes }
    }

    /// True when no route of the listener turns inspection off.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether a request with `method` and `path` is tapped and observed.
    pub(crate) fn inspects(&self, method: &Method, path: &str) -> bool {
        self.routes
            .iter()
            .find(|(m, template, _)| {
                m.as_ref().is_none_or(|m| m == method) && template.matches(path).is_some()
            })
            .is_none_or(|(_, _, inspect)| *inspect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(routes: &str) -> Config {
        Config::from_yaml(
            &format!(
                "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }}\n  - {{ name: b, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }}\nroutes:\n{routes}"
            ),
            "t.yaml",
        )
        .expect("valid")
    }

    #[test]
    fn the_first_route_by_method_and_path_decides() {
        let config = config(
            "  - { name: label, system: wms, match: { method: GET, path: \"/labels/{id}\" }, inspect: false }\n  - { name: order, system: wms, match: { path: \"/labels/{id}\" }, keys: { order: { path_param: id } } }\n  - { name: ping, system: wms, listeners: [b], match: { path: /ping }, inspect: false }\n",
        );
        let a = UninspectedRoutes::new(ListenerId(0), &config.routes);
        assert!(!a.inspects(&Method::GET, "/labels/L1"));
        assert!(a.inspects(&Method::POST, "/labels/L1"));
        assert!(
            a.inspects(&Method::GET, "/ping"),
            "route ping serves listener b only"
        );
        assert!(a.inspects(&Method::GET, "/other"));
        let b = UninspectedRoutes::new(ListenerId(1), &config.routes);
        assert!(!b.inspects(&Method::PUT, "/ping"));
    }

    #[test]
    fn a_listener_whose_routes_all_inspect_matches_nothing() {
        let config = config(
            "  - { name: order, system: wms, match: { path: \"/orders/{id}\" }, keys: { order: { path_param: id } } }\n",
        );
        let routes = UninspectedRoutes::new(ListenerId(0), &config.routes);
        assert!(routes.is_empty());
        assert!(routes.inspects(&Method::GET, "/orders/1"));
    }
}
