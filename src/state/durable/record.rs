//! The journal's record format: what the correlator must see again to
//! rebuild its state, framed so a damaged record is detected, never
//! trusted.
//!
//! A record is one [`Entry`]: an accepted observation (exactly the parts
//! of it that [`crate::correlate::Correlator::apply`] reads: keys, route,
//! milestone, status, times, the idempotency key; never bodies) or a
//! deadline tick (its time, since ticks read the clock). Frame:
//!
//! ```text
//! [version: u8 = 1][crc32 of payload: u32 little-endian][payload: JSON]
//! ```
//!
//! Names of config things (systems, key kinds, routes, milestones) are
//! stored as text and resolved against the config at replay, so a record
//! survives a config reload that renumbers them; a record naming something
//! the config no longer declares is skipped and counted. JSON keeps the
//! format readable and lets later versions add fields with defaults; the
//! field names are short because they are written once per exchange.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::config::{Amount, Config, ListenerId, Role, RouteId};
use crate::extract::{ExchangeSummary, Key, MeasureValue, Measures, Observation, Problem};
use crate::proxy::{Headers, UpstreamError};

/// The frame version this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes of the frame before the payload.
const HEADER: usize = 5;

/// One journal record.
// Nearly every record is an observation; boxing it to shrink the rare
// tick would cost an allocation per observation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Entry {
    /// An observation, accepted once its commit is durable.
    #[serde(rename = "o")]
    Observed(ObservedRecord),
    /// The correlator looked at its deadlines at `at`.
    #[serde(rename = "k")]
    Tick { at: SystemTime },
}

/// What `apply` reads of one observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedRecord {
    /// Exchange id.
    #[serde(rename = "x")]
    pub exchange: u64,
    /// Listener index (for the exchange record only).
    #[serde(rename = "l", default)]
    pub listener: usize,
    #[serde(rename = "s")]
    pub system: String,
    #[serde(rename = "a")]
    pub started: SystemTime,
    #[serde(rename = "d")]
    pub duration: Duration,
    #[serde(rename = "m")]
    pub method: String,
    #[serde(rename = "p")]
    pub path: String,
    /// The status the client saw.
    #[serde(rename = "c")]
    pub status: u16,
    /// Why the upstream failed, when it did.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
    /// The value of the route's idempotency header, when it has a repeats rule.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The matched route's name.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(rename = "k", default)]
    pub keys: Vec<(String, String)>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<String>,
    #[serde(rename = "q", default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Measure values read (added after version 1 shipped: absent in older
    /// records, which carried none).
    #[serde(rename = "v", default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<SavedValue>,
}

/// A measure value as stored: measure, role, exact amount, unit, system.
pub type SavedValue = (String, String, Amount, String, String);

/// The stored form of `value`.
pub fn save_value(value: &MeasureValue) -> SavedValue {
    (
        value.measure.as_str().to_owned(),
        value.role.as_str().to_owned(),
        value.amount,
        value.unit.as_str().to_owned(),
        value.system.as_str().to_owned(),
    )
}

/// A stored measure value resolved against `config`.
pub fn load_value(
    config: &Config,
    (measure, role, amount, unit, system): &SavedValue,
) -> Result<MeasureValue, Damaged> {
    let unknown = |what: &str, name: &str| Damaged::Unknown(format!("{what} {name}"));
    Ok(MeasureValue {
        measure: config
            .measures
            .get(measure)
            .ok_or_else(|| unknown("measure", measure))?,
        role: Role::parse(role).ok_or_else(|| unknown("role", role))?,
        amount: *amount,
        unit: config
            .units
            .get(unit)
            .ok_or_else(|| unknown("unit", unit))?,
        system: config
            .systems
            .get(system)
            .ok_or_else(|| unknown("system", system))?,
    })
}

/// Why a stored record cannot be used. Expected after a crash or disk
/// damage: the record is skipped and counted, never trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damaged {
    #[error("record shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("record version {0} is unknown to this build (it reads version {VERSION})")]
    Version(u8),
    #[error("record checksum does not match its content")]
    Checksum,
    #[error("record content cannot be read: {0}")]
    Payload(String),
    #[error("record names `{0}`, which the config no longer declares")]
    Unknown(String),
}

impl Entry {
    /// The framed bytes of this record.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data with string keys into memory cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.push(VERSION);
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    /// Reads a framed record, checking version and checksum.
    pub fn decode(frame: &[u8]) -> Result<Entry, Damaged> {
        if frame.len() < HEADER {
            return Err(Damaged::Short(frame.len()));
        }
        if frame[0] != VERSION {
            return Err(Damaged::Version(frame[0]));
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&frame[1..HEADER]);
        let payload = &frame[HEADER..];
        if crc32fast::hash(payload) != u32::from_le_bytes(crc) {
            return Err(Damaged::Checksum);
        }
        serde_json::from_slice(payload).map_err(|e| Damaged::Payload(e.to_string()))
    }
}

impl ObservedRecord {
    /// The record of `observation`.
    pub fn of(observation: &Observation, config: &Config) -> Self {
        let exchange = &observation.exchange;
        let route = observation.route.map(|r| config.route(r));
        let idempotency_key = route
            .and_then(|r| r.repeats.as_ref())
            .and_then(|rule| exchange.request_headers.get(&rule.idempotency_header))
            .and_then(|v| v.to_str())
            .map(str::to_owned);
        let upstream_error = exchange.upstream_error.map(|e| e.as_str().to_owned());
        ObservedRecord {
            exchange: exchange.id,
            listener: exchange.listener.0,
            system: exchange.system.as_str().to_owned(),
            started: exchange.started.time(),
            duration: exchange.duration,
            method: exchange.method.to_string(),
            path: exchange.uri.path().to_owned(),
            status: exchange.status.as_u16(),
            upstream_error,
            idempotency_key,
            route: route.map(|r| r.operation.as_str().to_owned()),
            keys: observation
                .keys
                .iter()
                .map(|k| (k.kind.as_str().to_owned(), k.value.to_string()))
                .collect(),
            milestone: observation
                .milestone
                .as_ref()
                .map(|m| m.as_str().to_owned()),
            problems: observation
                .problems
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            measures: observation.measures.values.iter().map(save_value).collect(),
        }
    }

    /// The observation this record stands for, resolved against `config`:
    /// everything `apply` reads is as it was; bodies and unread headers are empty.
    pub fn observation(&self, config: &Config) -> Result<Observation, Damaged> {
        let unknown = |what: &str, name: &str| Damaged::Unknown(format!("{what} {name}"));
        let system = config
            .systems
            .get(&self.system)
            .ok_or_else(|| unknown("system", &self.system))?;
        let route = match &self.route {
            Some(name) => Some(
                config
                    .routes
                    .iter()
                    .find(|r| r.operation.as_str() == name)
                    .ok_or_else(|| unknown("route", name))?,
            ),
            None => None,
        };
        let mut keys = Vec::with_capacity(self.keys.len());
        for (kind, value) in &self.keys {
            let kind = config
                .key_kinds
                .get(kind)
                .ok_or_else(|| unknown("key kind", kind))?;
            keys.push(Key::new(kind, value.as_str()));
        }
        let milestone = match &self.milestone {
            Some(name) => Some(
                config
                    .milestones
                    .get(name)
                    .ok_or_else(|| unknown("milestone", name))?,
            ),
            None => None,
        };
        let status = http::StatusCode::from_u16(self.status)
            .map_err(|_| Damaged::Payload(format!("status {}", self.status)))?;
        let upstream_error = match &self.upstream_error {
            Some(error) => {
                Some(upstream_error(error).ok_or_else(|| unknown("upstream error", error))?)
            }
            None => None,
        };
        let mut request_headers = Headers::default();
        if let (Some(rule), Some(value)) = (
            route.and_then(|r| r.repeats.as_ref()),
            &self.idempotency_key,
        ) {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                (request_headers.map_mut()).insert(rule.idempotency_header.clone(), value);
            }
        }
        let method = http::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| Damaged::Payload(format!("method {}", self.method)))?;
        let uri = self
            .path
            .parse::<http::Uri>()
            .map_err(|_| Damaged::Payload(format!("path {}", self.path)))?;
        Ok(Observation {
            exchange: ExchangeSummary {
                id: self.exchange,
                listener: ListenerId(self.listener),
                system,
                method,
                uri: (&uri).into(),
                version: http::Version::HTTP_11,
                request_headers,
                started: Stamp::new(self.started),
                duration: self.duration,
                status,
                upstream_error,
                // Not read by the correlator (an idempotent replay is told
                // by its repeated key), so not journaled.
                replayed: false,
                trace_context: None,
            },
            route: route.map(|r| RouteId(r.id.0)),
            operation: route.map(|r| r.operation.clone()),
            keys,
            milestone,
            problems: self
                .problems
                .iter()
                .filter_map(|p| Problem::ALL.into_iter().find(|k| k.as_str() == p))
                .collect(),
            measures: Measures {
                values: self
                    .measures
                    .iter()
                    .map(|saved| load_value(config, saved))
                    .collect::<Result<_, _>>()?,
                // Counted when first read; not needed to rebuild state.
                unreadable: Vec::new(),
            },
        })
    }
}

pub(super) fn upstream_error(name: &str) -> Option<UpstreamError> {
    UpstreamError::ALL.into_iter().find(|e| e.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(secs: u64) -> Entry {
        Entry::Tick {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn observed() -> Entry {
        Entry::Observed(ObservedRecord {
            exchange: 42,
            listener: 0,
            system: "wms".into(),
            started: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            duration: Duration::from_micros(1500),
            method: "POST".into(),
            path: "/shipments/SH-1/ship".into(),
            status: 200,
            upstream_error: None,
            idempotency_key: Some("idem-1".into()),
            route: Some("wms.ship".into()),
            keys: vec![
                ("shipment".into(), "SH-1".into()),
                ("order".into(), "SO-1".into()),
            ],
            milestone: Some("shipped".into()),
            problems: vec!["truncated".into()],
            measures: vec![(
                "freight_cost".into(),
                "actual".into(),
                crate::config::Amount::parse("1234.5").unwrap_or_default(),
                "USD".into(),
                "carrier".into(),
            )],
        })
    }

    #[test]
    fn a_record_reads_back_exactly_as_written() {
        for entry in [observed(), tick(7)] {
            assert_eq!(Entry::decode(&entry.encode()), Ok(entry));
        }
    }

    #[test]
    fn a_record_cut_off_mid_write_is_detected_not_trusted() {
        let frame = observed().encode();
        for len in 0..frame.len() {
            assert!(
                Entry::decode(&frame[..len]).is_err(),
                "a {len}-byte prefix of a {}-byte record was accepted",
                frame.len()
            );
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut frame = observed().encode();
        let last = frame.len() - 3;
        frame[last] ^= 0x10;
        assert_eq!(Entry::decode(&frame), Err(Damaged::Checksum));
    }

    #[test]
    fn a_record_from_an_unknown_version_is_refused() {
        let mut frame = tick(1).encode();
        frame[0] = VERSION + 1;
        assert_eq!(Entry::decode(&frame), Err(Damaged::Version(VERSION + 1)));
    }

    #[test]
    fn version_one_records_keep_their_meaning() {
        // Frozen bytes of a version-1 tick: a later build must still read them.
        let payload = br#"{"t":"k","at":{"secs_since_epoch":7,"nanos_since_epoch":0}}"#;
        let mut frame = vec![1];
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        assert_eq!(Entry::decode(&frame), Ok(tick(7)));
    }
}
