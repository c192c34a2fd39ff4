//! The gradual cut-over from the legacy chat API: which clients `/api/chat`
//! serves itself and which it proxies to the old endpoint, which proxied
//! requests are shadowed (our retrieval run beside them, for comparison), and
//! how shadow comparisons are summarised. Pure: the Worker reads the setting,
//! proxies and records.
//!
//! - A client's bucket (0–99) is a hash of its id (the `x-client-id` header
//!   when sent, else its IPv4 address or IPv6 /64), so the split is sticky: a
//!   person does not flip between systems mid-conversation, and raising the
//!   percentage only ever moves clients from the old system to this one.
//! - The effective percentage is the D1 setting (`PUT /admin/rollout`),
//!   capped by the `ROLLOUT_PERCENT` var: `ROLLOUT_PERCENT=0` sends everything
//!   back to the old stack whatever the setting says (the kill switch). With
//!   no `LEGACY_CHAT_URL` there is nothing to proxy to: everything is served.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::rate_limit_key;
use crate::keys::sha256_hex;

/// Header a client may send to be split by (instead of its address).
pub const CLIENT_ID_HEADER: &str = "x-client-id";
/// Response header naming who answered a proxied request (`legacy`).
pub const SERVED_BY_HEADER: &str = "x-served-by";
/// Route label of the requests proxied to the old API, kept apart from
/// `POST /api/chat` so the old stack's latency and errors do not count as ours.
pub const PROXIED_ROUTE_LABEL: &str = "POST /api/chat (legacy)";
/// How long an isolate keeps the D1 setting before reading it again.
pub const SETTING_TTL_MS: u64 = 10_000;

/// Longest client id taken from the header; longer ones are cut.
pub const MAX_CLIENT_ID_CHARS: usize = 128;

/// The rollout as the vars configure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutConfig {
    /// `ROLLOUT_PERCENT` (0–100, default 100): the most the setting may serve here.
    pub ceiling_percent: u8,
    /// `LEGACY_CHAT_URL`: the old chat endpoint (absent: no rollout).
    pub legacy_url: Option<String>,
}

/// The setting behind `PUT /admin/rollout` (a D1 row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSetting {
    /// Share of clients served here, 0–100.
    pub percent: u8,
    /// Share of proxied requests also answered here in the background, 0–100.
    pub shadow_percent: u8,
}

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutSettingError {
    #[error("`{field}` must be a whole number from 0 to 100")]
    OutOfRange { field: &'static str },
    #[error("the body must be JSON {{\"percent\": 0-100, \"shadow_percent\": 0-100}}: {0}")]
    Malformed(String),
}

/// The body of `PUT /admin/rollout`: `percent` required, `shadow_percent`
/// optional (absent: the current one, else 0); nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingBody {
    percent: serde_json::Value,
    #[serde(default)]
    shadow_percent: Option<serde_json::Value>,
}

fn share(value: &serde_json::Value, field: &'static str) -> Result<u8, RolloutSettingError> {
    value
        .as_u64()
        .filter(|n| *n <= 100)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(RolloutSettingError::OutOfRange { field })
}

/// The setting a `PUT /admin/rollout` body asks for.
///
/// # Errors
/// `Malformed` for anything but a JSON object of the two fields,
/// `OutOfRange` for a share that is not a whole number from 0 to 100.
pub fn parse_setting(
    body: &[u8],
    current: Option<RolloutSetting>,
) -> Result<RolloutSetting, RolloutSettingError> {
    let body: SettingBody =
        serde_json::from_slice(body).map_err(|e| RolloutSettingError::Malformed(e.to_string()))?;
    let percent = share(&body.percent, "percent")?;
    let shadow_percent = match &body.shadow_percent {
        Some(value) => share(value, "shadow_percent")?,
        None => current.map_or(0, |c| c.shadow_percent),
    };
    Ok(RolloutSetting {
        percent,
        shadow_percent,
    })
}

/// Days `GET /admin/rollout/report` covers by default, and at most.
pub const REPORT_DAYS: (u32, u32) = (7, 30);

/// The `days` parameter of the report: 1–30, default 7.
///
/// # Errors
/// The message to answer with (400 `bad_days`).
pub fn report_days(value: Option<&str>) -> Result<u32, String> {
    let Some(value) = value else {
        return Ok(REPORT_DAYS.0);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=REPORT_DAYS.1).contains(d))
        .ok_or_else(|| format!("`days` must be a whole number from 1 to {}", REPORT_DAYS.1))
}

impl RolloutSetting {
    /// Checks both shares.
    ///
    /// # Errors
    /// `OutOfRange` naming the field over 100.
    pub fn validate(self) -> Result<Self, RolloutSettingError> {
        if self.percent > 100 {
            return Err(RolloutSettingError::OutOfRange { field: "percent" });
        }
        if self.shadow_percent > 100 {
            return Err(RolloutSettingError::OutOfRange {
                field: "shadow_percent",
            });
        }
        Ok(self)
    }
}

/// What applies to requests now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutPlan {
    /// Share of clients served here.
    pub percent: u8,
    /// Share of proxied requests shadowed.
    pub shadow_percent: u8,
    /// Where the others go (absent: everyone is served here).
    pub legacy_url: Option<String>,
}

impl RolloutPlan {
    /// The setting (or, without one, the ceiling) capped by the ceiling.
    #[must_use]
    pub fn new(config: &RolloutConfig, setting: Option<RolloutSetting>) -> Self {
        let Some(legacy_url) = config.legacy_url.clone() else {
            return Self {
                percent: 100,
                shadow_percent: 0,
                legacy_url: None,
            };
        };
        let wanted = setting.map_or(config.ceiling_percent, |s| s.percent);
        Self {
            percent: wanted.min(config.ceiling_percent).min(100),
            shadow_percent: setting.map_or(0, |s| s.shadow_percent.min(100)),
            legacy_url: Some(legacy_url),
        }
    }
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Answered here.
    Here,
    /// Proxied to the old endpoint; `shadow`: also answered here in the background.
    Legacy { shadow: bool },
}

/// The id a client is split by: its `x-client-id` header (trimmed, cut to
/// [`MAX_CLIENT_ID_CHARS`]) when non-blank, else its address (IPv4, or the
/// IPv6 /64, as the rate limits key clients).
#[must_use]
pub fn client_key(client_id: Option<&str>, ip: Option<&str>) -> String {
    match client_id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => format!(
            "id:{}",
            id.chars().take(MAX_CLIENT_ID_CHARS).collect::<String>()
        ),
        None => format!("ip:{}", rate_limit_key(ip)),
    }
}

/// A stable bucket 0–99 of `key` under `salt` (SHA-256, so uniform and the
/// same in every isolate and every release).
#[must_use]
pub fn bucket(salt: &str, key: &str) -> u8 {
    let digest = sha256_hex(format!("{salt}:{key}").as_bytes());
    let value = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
    u8::try_from(value % 100).unwrap_or(0)
}

/// Where the request of the client `key` goes under `plan`.
#[must_use]
pub fn route(plan: &RolloutPlan, key: &str) -> Route {
    if plan.legacy_url.is_none() || bucket("rollout", key) < plan.percent {
        return Route::Here;
    }
    Route::Legacy {
        shadow: bucket("shadow", key) < plan.shadow_percent,
    }
}

/// Document ids an answer of the old API cites: the `sources` array of its
/// JSON body, or of the first SSE `data:` event that has one. An entry is a
/// string or an object with `key`, `path`, `document` or `id`.
#[must_use]
pub fn legacy_sources(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let from_value = |value: &serde_json::Value| -> Option<Vec<String>> {
        let sources = value.get("sources")?.as_array()?;
        Some(
            sources
                .iter()
                .filter_map(|s| match s {
                    serde_json::Value::String(id) => Some(id.clone()),
                    serde_json::Value::Object(o) => ["key", "path", "document", "id"]
                        .iter()
                        .find_map(|f| o.get(*f).and_then(|v| v.as_str()).map(str::to_owned)),
                    _ => None,
                })
                .collect(),
        )
    };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        return from_value(&value).unwrap_or_default();
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
        .find_map(|value| from_value(&value))
        .unwrap_or_default()
}

/// Share of the documents either side cited that both cited: |L ∩ O| /
/// max(|L|, |O|) over distinct ids (1 when neither cited anything).
#[must_use]
pub fn overlap(legacy: &[String], ours: &[String]) -> f64 {
    let l: std::collections::BTreeSet<&String> = legacy.iter().collect();
    let o: std::collections::BTreeSet<&String> = ours.iter().collect();
    let larger = l.len().max(o.len());
    if larger == 0 {
        return 1.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let share = l.intersection(&o).count() as f64 / larger as f64;
    share
}

/// One shadowed request, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRecord {
    /// When the request arrived (ms since the epoch).
    pub at_ms: u64,
    /// Overlap of cited documents (absent when either side failed).
    pub overlap: Option<f64>,
    /// Until the old API's answer had ended.
    pub legacy_ms: u64,
    /// Our retrieval and answer, in the background.
    pub ours_ms: u64,
    pub legacy_error: Option<String>,
    pub ours_error: Option<String>,
}

/// One day of `GET /admin/rollout/report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub shadowed: u64,
    /// Mean overlap over the requests both sides answered.
    pub mean_overlap: Option<f64>,
    pub legacy_p50_ms: Option<u64>,
    pub legacy_p95_ms: Option<u64>,
    pub ours_p50_ms: Option<u64>,
    pub ours_p95_ms: Option<u64>,
    pub legacy_errors: u64,
    pub ours_errors: u64,
}

/// The UTC calendar day of epoch milliseconds.
#[must_use]
pub fn utc_day(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

/// Summarises records per UTC day, newest day first.
#[must_use]
pub fn daily_report(records: &[ShadowRecord]) -> Vec<ShadowDay> {
    let mut days: BTreeMap<String, Vec<&ShadowRecord>> = BTreeMap::new();
    for r in records {
        days.entry(utc_day(r.at_ms)).or_default().push(r);
    }
    days.into_iter()
        .rev()
        .map(|(day, rows)| {
            let overlaps: Vec<f64> = rows.iter().filter_map(|r| r.overlap).collect();
            let mut legacy: Vec<u64> = rows
                .iter()
                .filter(|r| r.legacy_error.is_none())
                .map(|r| r.legacy_ms)
                .collect();
            let mut ours: Vec<u64> = rows
                .iter()
                .filter(|r| r.ours_error.is_none())
                .map(|r| r.ours_ms)
                .collect();
            legacy.sort_unstable();
            ours.sort_unstable();
            #[allow(clippy::cast_precision_loss)]
            let mean_overlap = (!overlaps.is_empty())
                .then(|| overlaps.iter().sum::<f64>() / overlaps.len() as f64);
            ShadowDay {
                day,
                shadowed: rows.len() as u64,
                mean_overlap,
                legacy_p50_ms: percentile(&legacy, 50.0),
                legacy_p95_ms: percentile(&legacy, 95.0),
                ours_p50_ms: percentile(&ours, 50.0),
                ours_p95_ms: percentile(&ours, 95.0),
                legacy_errors: rows.iter().filter(|r| r.legacy_error.is_some()).count() as u64,
                ours_errors: rows.iter().filter(|r| r.ours_error.is_some()).count() as u64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(percent: u8, shadow_percent: u8) -> RolloutPlan {
        RolloutPlan::new(
            &RolloutConfig {
                ceiling_percent: 100,
                legacy_url: Some("https://old.example/chat".into()),
            },
            Some(RolloutSetting {
                percent,
                shadow_percent,
            }),
        )
    }

    #[test]
    fn put_bodies_are_checked_field_by_field() {
        let current = Some(RolloutSetting {
            percent: 10,
            shadow_percent: 25,
        });
        assert_eq!(
            parse_setting(br#"{"percent": 50}"#, current),
            Ok(RolloutSetting {
                percent: 50,
                shadow_percent: 25
            })
        );
        assert_eq!(
            parse_setting(br#"{"percent": 0, "shadow_percent": 100}"#, None),
            Ok(RolloutSetting {
                percent: 0,
                shadow_percent: 100
            })
        );
        assert_eq!(
            parse_setting(br#"{"percent": 100}"#, None).map(|s| s.shadow_percent),
            Ok(0)
        );
        for (body, field) in [
            (&br#"{"percent": 101}"#[..], "percent"),
            (br#"{"percent": -1}"#, "percent"),
            (br#"{"percent": 12.5}"#, "percent"),
            (br#"{"percent": "50"}"#, "percent"),
            (
                br#"{"percent": 5, "shadow_percent": 300}"#,
                "shadow_percent",
            ),
        ] {
            assert_eq!(
                parse_setting(body, None),
                Err(RolloutSettingError::OutOfRange { field })
            );
        }
        for body in [
            &b"{}"[..],
            b"[]",
            b"percent=5",
            br#"{"percent": 5, "extra": 1}"#,
        ] {
            assert!(matches!(
                parse_setting(body, None),
                Err(RolloutSettingError::Malformed(_))
            ));
        }
    }

    #[test]
    fn report_days_default_to_a_week_and_stop_at_thirty() {
        assert_eq!(report_days(None), Ok(7));
        assert_eq!(report_days(Some("1")), Ok(1));
        assert_eq!(report_days(Some("30")), Ok(30));
        for bad in ["0", "31", "-1", "7d", ""] {
            assert!(report_days(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_split_is_close_to_the_percentage_over_1000_clients_and_sticky() {
        for percent in [0_u8, 10, 50, 90, 100] {
            let p = plan(percent, 0);
            let here = (0..1000)
                .filter(|i| {
                    route(&p, &client_key(Some(&format!("client-{i}")), None)) == Route::Here
                })
                .count();
            let expected = usize::from(percent) * 10;
            assert!(
                here.abs_diff(expected) <= 40,
                "{percent} %: {here} of 1000 served here"
            );
        }
        // Raising the share only moves clients from the old system here.
        for i in 0..1000 {
            let key = client_key(Some(&format!("client-{i}")), None);
            let was_here = route(&plan(10, 0), &key) == Route::Here;
            assert_eq!(route(&plan(10, 0), &key) == Route::Here, was_here, "sticky");
            if was_here {
                assert_eq!(route(&plan(50, 0), &key), Route::Here, "monotonic");
            }
        }
    }

    #[test]
    fn shadowing_samples_proxied_requests_only() {
        let p = plan(20, 25);
        let (mut proxied, mut shadowed) = (0_usize, 0_usize);
        for i in 0..1000 {
            match route(&p, &client_key(Some(&format!("c{i}")), None)) {
                Route::Here => {}
                Route::Legacy { shadow } => {
                    proxied += 1;
                    shadowed += usize::from(shadow);
                }
            }
        }
        assert!(proxied.abs_diff(800) <= 40, "{proxied}");
        assert!(
            shadowed.abs_diff(proxied / 4) <= 40,
            "{shadowed} of {proxied}"
        );
    }

    #[test]
    fn the_var_caps_the_setting_and_no_legacy_url_means_no_rollout() {
        let config = RolloutConfig {
            ceiling_percent: 0,
            legacy_url: Some("https://old.example/chat".into()),
        };
        let killed = RolloutPlan::new(
            &config,
            Some(RolloutSetting {
                percent: 100,
                shadow_percent: 50,
            }),
        );
        assert_eq!(killed.percent, 0, "ROLLOUT_PERCENT=0 is the kill switch");
        assert!(matches!(route(&killed, "ip:1.2.3.4"), Route::Legacy { .. }));
        let unset = RolloutPlan::new(
            &RolloutConfig {
                ceiling_percent: 40,
                legacy_url: Some("u".into()),
            },
            None,
        );
        assert_eq!((unset.percent, unset.shadow_percent), (40, 0));
        let none = RolloutPlan::new(
            &RolloutConfig {
                ceiling_percent: 0,
                legacy_url: None,
            },
            None,
        );
        assert_eq!(route(&none, "anyone"), Route::Here);
        assert!(RolloutSetting {
            percent: 101,
            shadow_percent: 0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn client_keys_prefer_the_header_then_the_network() {
        assert_eq!(client_key(Some("  abc "), Some("1.2.3.4")), "id:abc");
        assert_eq!(client_key(Some(" "), Some("1.2.3.4")), "ip:1.2.3.4");
        assert_eq!(
            client_key(None, Some("2001:db8:1:2::7")),
            client_key(None, Some("2001:db8:1:2::9")),
            "one /64, one client"
        );
        assert_eq!(
            client_key(Some(&"x".repeat(500)), None).len(),
            3 + MAX_CLIENT_ID_CHARS
        );
    }

    #[test]
    fn legacy_sources_are_read_from_json_and_sse() {
        let json = br#"{"answer":"A [1]","sources":[{"path":"a.md"},"b.md",{"id":"c"},7]}"#;
        assert_eq!(legacy_sources(json), ["a.md", "b.md", "c"]);
        let sse = b"event: token\ndata: {\"text\":\"A\"}\n\nevent: sources\ndata: {\"sources\":[{\"key\":\"x.md\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(legacy_sources(sse), ["x.md"]);
        assert!(legacy_sources(b"<html>").is_empty());
        let l = vec!["a".to_owned(), "b".to_owned()];
        let o = vec!["b".to_owned(), "c".to_owned(), "d".to_owned()];
        assert!((overlap(&l, &o) - 1.0 / 3.0).abs() < 1e-12);
        assert!((overlap(&[], &[]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reports_summarise_each_day() {
        let day = 1_796_256_000_000; // 2026-12-03T00:00:00Z
        let record = |at_ms, overlap, legacy_ms, ours_ms, ours_error: Option<&str>| ShadowRecord {
            at_ms,
            overlap,
            legacy_ms,
            ours_ms,
            legacy_error: None,
            ours_error: ours_error.map(str::to_owned),
        };
        let rows = vec![
            record(day + 10, Some(1.0), 100, 40, None),
            record(day + 20, Some(0.5), 300, 60, None),
            record(day + 30, None, 200, 900, Some("timeout")),
            record(day - 1, Some(0.0), 50, 50, None),
        ];
        let report = daily_report(&rows);
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].day, "2026-12-03");
        assert_eq!(report[1].day, "2026-12-02");
        assert_eq!(report[0].shadowed, 3);
        assert_eq!(report[0].mean_overlap, Some(0.75));
        assert_eq!(report[0].legacy_p50_ms, Some(200));
        assert_eq!(report[0].ours_p95_ms, Some(60));
        assert_eq!(report[0].ours_errors, 1);
    }
}
