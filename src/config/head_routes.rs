//! Deciding on a request's head alone: the proxy's per-route features that
//! act before any body byte is read (the idempotency guard, the inspection
//! switch, trace context propagation) each ask which route a request's
//! method and path select, and what that route says.
//!
//! [`HeadRoutes`] holds one listener's routes in priority order, up to its
//! last route that says anything (a later route can never decide), each
//! with what it says (`Option<T>`). The first route that accepts the method
//! and path decides; content conditions are not asked (validation keeps
//! them off routes where they could change the answer). A listener none of
//! whose routes says anything holds nothing, and its requests match nothing.

use http::Method;

use super::{ListenerId, Params, PathTemplate, Route};

/// One listener's routes that can decide something of type `T` on a
/// request's head (see the module doc).
#[derive(Debug, Clone)]
pub struct HeadRoutes<T> {
    routes: Vec<HeadRoute<T>>,
}

#[derive(Debug, Clone)]
struct HeadRoute<T> {
    method: Option<Method>,
    path: PathTemplate,
    /// What the route says; `None` when it says nothing (yet it decides:
    /// a request it selects gets nothing from a later route).
    value: Option<T>,
}

impl<T> Default for HeadRoutes<T> {
    fn default() -> Self {
        HeadRoutes { routes: Vec::new() }
    }
}

impl<T> HeadRoutes<T> {
    /// The routes serving `listener` among `routes` (in priority order, as
    /// in `Config::routes`), each with what `says` finds in it.
    pub fn new(
        routes: &[Route],
        listener: ListenerId,
        mut says: impl FnMut(&Route) -> Option<T>,
    ) -> Self {
        let mut routes: Vec<HeadRoute<T>> = routes
            .iter()
            .filter(|route| route.serves(listener))
            .map(|route| HeadRoute {
                method: route.method.clone(),
                path: route.path.clone(),
                value: says(route),
            })
            .collect();
        let deciding = routes
            .iter()
            .rposition(|route| route.value.is_some())
            .map_or(0, |last| last + 1);
        routes.truncate(deciding);
        HeadRoutes { routes }
    }

    /// True when no route says anything: nothing to match.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The same routes saying `f` of what they said.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> HeadRoutes<U> {
        HeadRoutes {
            routes: self
                .routes
                .into_iter()
                .map(|route| HeadRoute {
                    method: route.method,
                    path: route.path,
                    value: route.value.map(&mut f),
                })
                .collect(),
        }
    }

    /// What the route that selects `method` and `path` says, with the raw
    /// values of its `{params}`; `None` when no route selects the request
    /// or the one that does says nothing.
    pub fn decide<'p>(&self, method: &Method, path: &'p str) -> Option<(&T, Vec<&'p str>)> {
        let mut params = Vec::new();
        let value = self.select(method, path, &mut params)?;
        Some((value, params))
    }

    /// What the route that selects `method` and `path` says, as
    /// [`HeadRoutes::decide`] finds it, without the values of its
    /// `{params}` (none collected, nothing allocated).
    pub fn says(&self, method: &Method, path: &str) -> Option<&T> {
        self.select(method, path, &mut NoParams)
    }

    /// What the first route that accepts `method` and `path` says, its
    /// `{params}` put into `params`.
    fn select<'p>(
        &self,
        method: &Method,
        path: &'p str,
        params: &mut impl Params<'p>,
    ) -> Option<&T> {
        let route = self.routes.iter().find(|route| {
            route.method.as_ref().is_none_or(|m| m == method) && route.path.match_into(path, params)
        })?;
        route.value.as_ref()
    }
}

/// Params not kept: a match that only decides.
struct NoParams;

impl Params<'_> for NoParams {
    fn clear(&mut self) {}

    fn add(&mut self, _value: &str) {}
}

/// A config with listeners `a` and `b` and the given `routes:` entries,
/// for the tests of what decides on the head.
#[cfg(test)]
pub(crate) fn two_listeners(routes: &str) -> super::Config {
    super::Config::from_yaml(
        &format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }}\n  - {{ name: b, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }}\nroutes:\n{routes}"
        ),
        "t.yaml",
    )
    .expect("valid")
}

#[cfg(test)]
mod tests {
    use super::two_listeners as config;
    use super::*;
    use crate::config::Config;

    /// Routes "say" their name when it starts with `x`.
    fn names(config: &Config, listener: usize) -> HeadRoutes<String> {
        HeadRoutes::new(&config.routes, ListenerId(listener), |route| {
            let name = route.operation.as_str();
            name.starts_with('x').then(|| name.to_owned())
        })
    }

    #[test]
    fn the_first_route_that_selects_the_request_decides_even_when_it_says_nothing() {
        let config = config(
            "  - { name: quiet, system: wms, match: { method: GET, path: \"/o/{id}\" } }\n  - { name: x_any, system: wms, match: { path: \"/o/{id}\" } }\n",
        );
        let routes = names(&config, 0);
        assert_eq!(routes.decide(&Method::GET, "/o/1"), None);
        let (said, params) = routes.decide(&Method::POST, "/o/1").expect("selected");
        assert_eq!((said.as_str(), params), ("x_any", vec!["1"]));
        assert_eq!(routes.decide(&Method::POST, "/p/1"), None);
    }

    #[test]
    fn says_is_what_decide_finds_without_the_params() {
        let config = config(
            "  - { name: quiet, system: wms, match: { method: GET, path: \"/o/{id}\" } }\n  - { name: x_any, system: wms, match: { path: \"/o/{id}/{part}\" } }\n  - { name: x_lit, system: wms, match: { method: PUT, path: /o } }\n",
        );
        let routes = names(&config, 0);
        for method in [Method::GET, Method::POST, Method::PUT] {
            for path in [
                "/o/1", "/o/1/", "/o/1/a", "/o/1/a/b", "/o", "/o/", "/p/1/a", "", "/",
            ] {
                let decided = routes.decide(&method, path).map(|(said, _)| said);
                assert_eq!(routes.says(&method, path), decided, "{method} {path}");
            }
        }
        assert_eq!(routes.says(&Method::GET, "/o/1"), None, "quiet decides");
        assert_eq!(
            routes.says(&Method::POST, "/o/1/a").map(String::as_str),
            Some("x_any")
        );
    }

    #[test]
    fn routes_after_the_last_that_says_something_and_other_listeners_are_left_out() {
        let config = config(
            "  - { name: x_b_only, system: wms, listeners: [b], match: { path: /o } }\n  - { name: quiet, system: wms, match: { path: /q } }\n",
        );
        assert!(names(&config, 0).is_empty(), "listener a: nothing to say");
        let on_b = names(&config, 1).map(|name| name.len());
        assert_eq!(on_b.decide(&Method::GET, "/o").map(|(n, _)| *n), Some(8));
        assert_eq!(on_b.decide(&Method::GET, "/q"), None);
    }
}
