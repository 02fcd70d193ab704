//! The per-route inspection switch (`inspect: false`): which requests the
//! proxy forwards without tapping their bodies or handing an exchange to
//! extraction. Decided on the request head, before any body byte (see
//! [`HeadRoutes`]: the first route that selects the request decides;
//! validation keeps content conditions off uninspected routes, so no later
//! route could have won on content). A listener without such a route does
//! no matching at all.

use http::Method;

use crate::config::{HeadRoutes, ListenerId, Route};

/// A listener's routes up to its last uninspected one, computed once at
/// start from the validated config. Empty when every route is inspected.
#[derive(Debug, Clone, Default)]
pub struct UninspectedRoutes {
    /// `Some(())` on the routes that turn inspection off.
    routes: HeadRoutes<()>,
}

impl UninspectedRoutes {
    /// The routes of listener `listener` among `routes` (in priority order,
    /// as in `Config::routes`) that decide inspection.
    pub fn new(listener: ListenerId, routes: &[Route]) -> Self {
        UninspectedRoutes {
            routes: HeadRoutes::new(routes, listener, |route| (!route.inspect).then_some(())),
        }
    }

    /// True when no route of the listener turns inspection off.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether a request with `method` and `path` is tapped and observed.
    pub(crate) fn inspects(&self, method: &Method, path: &str) -> bool {
        self.routes.says(method, path).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::head_routes::two_listeners as config;

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
