//! What the extractor compiles once per route when it starts, so reading an
//! exchange looks nothing up by string: the JSON paths of each side's key
//! rules as one [`JsonPaths`] set (with the rule each path belongs to), and
//! the path of each JSON condition.

use crate::config::{Condition, JsonPath, KeySource, Route, RouteId, Side};

use super::json::JsonPaths;

/// The JSON key rules of one side of a route, compiled to be answered by
/// one scan.
#[derive(Debug)]
pub(super) struct JsonRules {
    pub paths: JsonPaths,
    /// The index in the route's sources ([`Route::sources`]: key rules,
    /// then measure rules) of each path of `paths`.
    pub rule_of: Vec<usize>,
    /// How many sources the route reads.
    pub rule_count: usize,
}

/// One route, compiled.
#[derive(Debug)]
pub(super) struct RoutePlan {
    /// Request, then response; `None` when that side has no JSON rule.
    json: [Option<JsonRules>; 2],
    /// Per condition of the route (same index): the compiled path of a
    /// JSON condition.
    conditions: Vec<Option<JsonPaths>>,
}

/// Every route, compiled; indexed by [`RouteId`].
#[derive(Debug)]
pub(super) struct Plans(Vec<RoutePlan>);

impl Plans {
    /// Compiles `routes` (`routes[i].id == RouteId(i)`).
    pub fn new(routes: &[Route]) -> Plans {
        Plans(routes.iter().map(RoutePlan::new).collect())
    }

    /// The plan of route `id`; `None` only for a route of another config.
    pub fn route(&self, id: RouteId) -> Option<&RoutePlan> {
        self.0.get(id.0)
    }
}

impl RoutePlan {
    fn new(route: &Route) -> RoutePlan {
        let json = [Side::Request, Side::Response].map(|side| {
            let mut paths: Vec<&JsonPath> = Vec::new();
            let mut rule_of = Vec::new();
            // Keys and measures read through one list (`Route::sources`),
            // so one scan answers both.
            let sources = route.sources();
            for (index, source) in sources.iter().enumerate() {
                if let KeySource::Json { side: s, path } = source {
                    if *s == side {
                        paths.push(path);
                        rule_of.push(index);
                    }
                }
            }
            (!paths.is_empty()).then(|| JsonRules {
                paths: JsonPaths::new(&paths),
                rule_of,
                rule_count: sources.len(),
            })
        });
        let conditions = route
            .conditions
            .iter()
            .map(|condition| match condition {
                Condition::Json { path, .. } => Some(JsonPaths::new(&[path])),
                _ => None,
            })
            .collect();
        RoutePlan { json, conditions }
    }

    /// The JSON key rules of `side`.
    pub fn json(&self, side: Side) -> Option<&JsonRules> {
        self.json.get(usize::from(side == Side::Response))?.as_ref()
    }

    /// The compiled path of condition number `index`, if it is a JSON one.
    pub fn condition(&self, index: usize) -> Option<&JsonPaths> {
        self.conditions.get(index)?.as_ref()
    }
}
