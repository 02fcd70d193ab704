//! `state.backend` and the settings of the chosen store: the embedded
//! store's data directory and commit bounds, or the shared Redis store's
//! URL (never with credentials), namespace and bounds.

use std::path::PathBuf;

use super::super::raw::{RawRedis, RawSpill, RawState};
use super::super::{defaults, EmbeddedConfig, RedisConfig, SpillConfig, StoreConfig};
use super::Validator;

/// Which store the `backend` and its settings ask for.
enum Backend {
    Memory,
    Embedded,
    Redis,
}

impl Validator<'_> {
    /// `state.backend` and the chosen store's settings.
    pub(super) fn store(&mut self, raw: Option<&RawState>) -> StoreConfig {
        let path = raw.and_then(|s| s.path.as_deref());
        let redis = raw.and_then(|s| s.redis.as_ref());
        let backend = match self.backend(raw.and_then(|s| s.backend.as_deref()), path, redis) {
            Some(backend) => backend,
            None => return StoreConfig::Memory,
        };
        let embedded = self.embedded(raw, path);
        match backend {
            Backend::Memory => StoreConfig::Memory,
            Backend::Embedded => embedded.map_or(StoreConfig::Memory, StoreConfig::Embedded),
            Backend::Redis => match redis {
                Some(redis) => self
                    .redis(redis)
                    .map_or(StoreConfig::Memory, StoreConfig::Redis),
                None => {
                    self.error(
                        "state.redis",
                        "`backend: redis` needs the Redis server, e.g. `redis: { url: redis://redis:6379 }`",
                    );
                    StoreConfig::Memory
                }
            },
        }
    }

    /// The backend asked for, or `None` after reporting a contradiction.
    fn backend(
        &mut self,
        backend: Option<&str>,
        path: Option<&str>,
        redis: Option<&RawRedis>,
    ) -> Option<Backend> {
        let chosen = match (backend, path.is_some(), redis.is_some()) {
            (None, false, false) | (Some("memory"), false, false) => Backend::Memory,
            (None, true, false) | (Some("embedded"), true, false) => Backend::Embedded,
            (None, false, true) | (Some("redis"), false, true) => Backend::Redis,
            (Some("redis"), false, false) => Backend::Redis,
            (Some("embedded"), false, false) => {
                self.error(
                    "state.path",
                    "`backend: embedded` needs a data directory, e.g. `path: /var/lib/waybill`",
                );
                return None;
            }
            (Some("memory"), true, _) => {
                self.error(
                    "state.path",
                    "a data directory is set but `state.backend` is `memory`; remove `path` or set `backend: embedded`",
                );
                return None;
            }
            (_, true, true) => {
                self.error(
                    "state.redis",
                    "both a data directory (`path`) and `redis` are set; the Redis store keeps no data directory: remove one",
                );
                return None;
            }
            (Some(known @ ("memory" | "embedded")), false, true) => {
                self.error(
                    "state.redis",
                    format!("`redis` is set but `state.backend` is `{known}`; remove `redis` or set `backend: redis`"),
                );
                return None;
            }
            (Some("redis"), true, false) => {
                self.error(
                    "state.path",
                    "a data directory is set but `state.backend` is `redis`; remove `path` or set `backend: embedded`",
                );
                return None;
            }
            (Some(other), _, _) => {
                self.error(
                    "state.backend",
                    format!(
                        "unknown state backend `{other}`; expected `memory`, `embedded` or `redis`"
                    ),
                );
                return None;
            }
        };
        Some(chosen)
    }

    /// The embedded store's settings (read whichever backend is chosen, so
    /// a mistake in them is reported either way).
    fn embedded(&mut self, raw: Option<&RawState>, path: Option<&str>) -> Option<EmbeddedConfig> {
        let commit_interval = self.duration(
            "state.commit_interval",
            raw.and_then(|s| s.commit_interval.as_ref()),
            defaults::COMMIT_INTERVAL,
        );
        if commit_interval > defaults::MAX_COMMIT_INTERVAL {
            self.error(
                "state.commit_interval",
                format!(
                    "`{}` is too long: observations wait this long before they are accepted; expected at most 1s, e.g. `10ms`",
                    humantime::format_duration(commit_interval)
                ),
            );
        }
        let commit_batch = self.at_least_one(
            "state.commit_batch",
            raw.and_then(|s| s.commit_batch),
            defaults::COMMIT_BATCH,
        );
        let snapshot_interval = self.duration(
            "state.snapshot_interval",
            raw.and_then(|s| s.snapshot_interval.as_ref()),
            defaults::SNAPSHOT_INTERVAL,
        );
        let path = path?;
        if path.trim().is_empty() {
            self.error(
                "state.path",
                "the data directory is empty; expected a directory, e.g. `/var/lib/waybill`",
            );
            return None;
        }
        Some(EmbeddedConfig {
            path: PathBuf::from(path),
            commit_interval,
            commit_batch,
            snapshot_interval,
        })
    }

    /// `state.redis`: a URL the client accepts, without credentials.
    fn redis(&mut self, raw: &RawRedis) -> Option<RedisConfig> {
        let url = raw.url.trim();
        let mut valid = true;
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            self.error(
                "state.redis.url",
                format!("`{url}` is not a Redis URL; expected `redis://host:port` or `rediss://host:port` (TLS)"),
            );
            valid = false;
        } else if url.contains('@') {
            self.error(
                "state.redis.url",
                "credentials do not belong in the URL (it is logged and stored in ConfigMaps); set WAYBILL_REDIS_PASSWORD or `password_file`",
            );
            valid = false;
        } else if let Err(error) = redis::Client::open(url) {
            self.error(
                "state.redis.url",
                format!("`{url}` is not a usable Redis URL ({error}); expected `redis://host:port[/db]`"),
            );
            valid = false;
        }
        let namespace = raw
            .namespace
            .as_deref()
            .unwrap_or(defaults::REDIS_NAMESPACE);
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.error(
                "state.redis.namespace",
                format!("`{namespace}` is not a namespace; expected letters, digits, `-`, `_` or `.`, e.g. `shop-eu`"),
            );
            valid = false;
        }
        let password_file = match raw.password_file.as_deref() {
            Some(path) if path.trim().is_empty() => {
                self.error(
                    "state.redis.password_file",
                    "the file name is empty; expected a path, e.g. `/run/secrets/redis-password`",
                );
                valid = false;
                None
            }
            path => path.map(PathBuf::from),
        };
        let buffer = self.at_least_one("state.redis.buffer", raw.buffer, defaults::REDIS_BUFFER);
        let max_log_entries = self.at_least_one(
            "state.redis.max_log_entries",
            raw.max_log_entries,
            defaults::REDIS_MAX_LOG_ENTRIES,
        );
        let spill = match raw.spill.as_ref().map(|spill| self.spill(spill)) {
            Some(None) => {
                valid = false;
                None
            }
            Some(spill) => spill,
            None => None,
        };
        valid.then(|| RedisConfig {
            url: url.to_owned(),
            namespace: namespace.to_owned(),
            password_file,
            buffer,
            max_log_entries,
            cluster: raw.cluster.unwrap_or(false),
            spill,
        })
    }

    /// `state.redis.spill`: a directory and a bound.
    fn spill(&mut self, raw: &RawSpill) -> Option<SpillConfig> {
        let max_entries = self.at_least_one(
            "state.redis.spill.max_entries",
            raw.max_entries,
            defaults::REDIS_SPILL_MAX_ENTRIES,
        );
        if raw.path.trim().is_empty() {
            self.error(
                "state.redis.spill.path",
                "the directory is empty; expected a directory on a volume, e.g. `/var/lib/waybill/spill`",
            );
            return None;
        }
        Some(SpillConfig {
            path: PathBuf::from(&raw.path),
            max_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_state(state: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: wms }}\nstate: {state}\n"
        );
        crate::config::Config::from_yaml(&text, "t.yaml").map_err(|e| e.to_string())
    }

    fn redis(state: &str) -> RedisConfig {
        match load_state(state).expect("valid").state.store {
            StoreConfig::Redis(redis) => redis,
            other => panic!("expected the Redis store, got {other:?}"),
        }
    }

    #[test]
    fn a_redis_url_selects_the_shared_store_with_its_defaults() {
        let config = redis("{ redis: { url: 'redis://10.0.0.5:6379' } }");
        assert_eq!(config.url, "redis://10.0.0.5:6379");
        assert_eq!(config.namespace, defaults::REDIS_NAMESPACE);
        assert_eq!(config.buffer, defaults::REDIS_BUFFER);
        assert_eq!(config.max_log_entries, defaults::REDIS_MAX_LOG_ENTRIES);
        assert_eq!(config.password_file, None);
        assert!(!config.cluster);
    }

    #[test]
    fn every_redis_setting_is_read_into_a_typed_value() {
        let config = redis(
            "{ backend: redis, redis: { url: 'rediss://redis.example:6380/2', namespace: shop-eu, password_file: /run/secrets/pw, buffer: 50, max_log_entries: 1000, cluster: true } }",
        );
        assert_eq!(config.url, "rediss://redis.example:6380/2");
        assert_eq!(config.namespace, "shop-eu");
        assert_eq!(config.password_file, Some(PathBuf::from("/run/secrets/pw")));
        assert_eq!((config.buffer, config.max_log_entries), (50, 1000));
        assert!(config.cluster);
    }

    #[test]
    fn a_spill_is_off_by_default_and_read_into_a_typed_value() {
        assert_eq!(redis("{ redis: { url: 'redis://r:6379' } }").spill, None);
        let config = redis("{ redis: { url: 'redis://r:6379', spill: { path: /data/spill } } }");
        assert_eq!(
            config.spill,
            Some(SpillConfig {
                path: PathBuf::from("/data/spill"),
                max_entries: defaults::REDIS_SPILL_MAX_ENTRIES,
            })
        );
        let config = redis(
            "{ redis: { url: 'redis://r:6379', spill: { path: /data/spill, max_entries: 500 } } }",
        );
        assert_eq!(config.spill.map(|s| s.max_entries), Some(500));
    }

    #[test]
    fn a_spill_without_a_directory_or_room_is_refused_with_its_field() {
        let error = load_state(
            "{ redis: { url: 'redis://r:6379', spill: { path: ' ', max_entries: 0 } } }",
        )
        .expect_err("invalid");
        assert!(
            error.contains("state.redis.spill.path: the directory is empty"),
            "{error}"
        );
        assert!(
            error.contains("state.redis.spill.max_entries: must be at least 1"),
            "{error}"
        );
        let error = load_state("{ redis: { url: 'redis://r:6379', spill: { max_entries: 5 } } }")
            .expect_err("invalid");
        assert!(error.contains("path"), "{error}");
    }

    #[test]
    fn credentials_in_the_redis_url_are_refused() {
        let error =
            load_state("{ redis: { url: 'redis://:hunter2@redis:6379' } }").expect_err("invalid");
        assert!(
            error.contains("state.redis.url: credentials do not belong in the URL"),
            "{error}"
        );
        assert!(
            !error.contains("hunter2"),
            "the password is echoed: {error}"
        );
    }

    #[test]
    fn a_redis_backend_without_a_server_is_refused() {
        let error = load_state("{ backend: redis }").expect_err("invalid");
        assert!(
            error.contains("state.redis: `backend: redis` needs the Redis server"),
            "{error}"
        );
    }

    #[test]
    fn a_url_that_is_not_redis_is_refused_with_the_expected_shape() {
        let error = load_state("{ redis: { url: 'http://redis:6379' } }").expect_err("invalid");
        assert!(
            error.contains("state.redis.url: `http://redis:6379` is not a Redis URL; expected `redis://host:port`"),
            "{error}"
        );
    }

    #[test]
    fn a_namespace_that_could_break_the_hash_tag_is_refused() {
        let error = load_state("{ redis: { url: 'redis://r:6379', namespace: 'a}b' } }")
            .expect_err("invalid");
        assert!(
            error.contains("state.redis.namespace: `a}b` is not a namespace"),
            "{error}"
        );
    }

    #[test]
    fn a_data_directory_and_redis_together_are_refused() {
        let error =
            load_state("{ path: /data, redis: { url: 'redis://r:6379' } }").expect_err("invalid");
        assert!(
            error.contains("state.redis: both a data directory"),
            "{error}"
        );
    }

    #[test]
    fn unknown_redis_fields_such_as_a_password_are_refused() {
        let error =
            load_state("{ redis: { url: 'redis://r:6379', password: x } }").expect_err("invalid");
        assert!(error.contains("password"), "{error}");
    }
}
