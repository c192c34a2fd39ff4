//! The gradual cut-over from the legacy chat API: which clients `/api/chat`
//! serves itself and which it proxies to the old endpoint, and which proxied
//! requests are shadowed (our retrieval run beside them, for comparison).
//! Pure: the Worker reads the setting, proxies and records. When a proxied
//! chat is answered here instead is [`failover`]'s; what the report says,
//! [`report`]'s.
//!
//! - A client's bucket (0–99) is a hash of its id (the `x-client-id` header
//!   when sent, else its IPv4 address or IPv6 /64), so the split is sticky: a
//!   person does not flip between systems mid-conversation, and raising the
//!   percentage only ever moves clients from the old system to this one.
//! - The effective percentage is the D1 setting (`PUT /admin/rollout`),
//!   capped by the `ROLLOUT_PERCENT` var: `ROLLOUT_PERCENT=0` sends everything
//!   back to the old stack whatever the setting says (the kill switch). With
//!   no `LEGACY_CHAT_URL` there is nothing to proxy to: everything is served.

pub mod failover;
pub mod report;

pub use failover::{
    after_first_chunk, after_head, after_no_response, FailoverReason, FirstChunk, NoResponse,
    ServedBy, Step, DEFAULT_FIRST_BYTE_TIMEOUT_MS, FAILOVER_ROUTE_LABEL,
    FIRST_BYTE_TIMEOUT_MS_RANGE, PROXIED_ROUTE_LABEL, SERVED_BY_HEADER,
};
pub use report::{
    daily_report, legacy_outcome, legacy_sources, overlap, report_days, utc_day, FailoverCount,
    LegacyEnding, ReportDay, ShadowRecord, REPORT_DAYS,
};

use serde::{Deserialize, Serialize};

use crate::document::keys::sha256_hex;
use crate::shared::client::rate_limit_key;

/// Header a client may send to be split by (instead of its address).
pub const CLIENT_ID_HEADER: &str = "x-client-id";
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
    /// `LEGACY_FIRST_BYTE_TIMEOUT_MS`: how long the old endpoint has to start
    /// its answer (headers and first body chunk) before the chat is answered
    /// here instead ([`failover`]).
    pub first_byte_timeout_ms: u64,
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

/// An isolate's copy of the setting: re-read from D1 at most every
/// [`SETTING_TTL_MS`]; a failed read keeps the last value known (else none:
/// the ceiling applies). The Worker holds one per isolate and does the reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingCache {
    read: Option<(u64, Option<RolloutSetting>)>,
}

impl SettingCache {
    /// The setting while the last read is fresh at `now_ms`; `None`: read it.
    #[must_use]
    pub fn fresh(&self, now_ms: u64) -> Option<Option<RolloutSetting>> {
        self.read
            .filter(|(read_at, _)| now_ms.saturating_sub(*read_at) < SETTING_TTL_MS)
            .map(|(_, setting)| setting)
    }

    /// What applies after a read at `now_ms`: its value, kept; or, when it
    /// failed, the last value known (the cache stays stale, so the next
    /// request reads again).
    pub fn after_read<E>(
        &mut self,
        now_ms: u64,
        read: Result<Option<RolloutSetting>, E>,
    ) -> Option<RolloutSetting> {
        match read {
            Ok(setting) => {
                self.read = Some((now_ms, setting));
                setting
            }
            Err(_) => self.read.and_then(|(_, setting)| setting),
        }
    }

    /// Forgets the setting (this isolate just changed it).
    pub fn forget(&mut self) {
        self.read = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(percent: u8, shadow_percent: u8) -> RolloutPlan {
        RolloutPlan::new(
            &RolloutConfig {
                ceiling_percent: 100,
                legacy_url: Some("https://old.example/chat".into()),
                first_byte_timeout_ms: DEFAULT_FIRST_BYTE_TIMEOUT_MS,
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
            first_byte_timeout_ms: DEFAULT_FIRST_BYTE_TIMEOUT_MS,
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
                first_byte_timeout_ms: DEFAULT_FIRST_BYTE_TIMEOUT_MS,
            },
            None,
        );
        assert_eq!((unset.percent, unset.shadow_percent), (40, 0));
        let none = RolloutPlan::new(
            &RolloutConfig {
                ceiling_percent: 0,
                legacy_url: None,
                first_byte_timeout_ms: DEFAULT_FIRST_BYTE_TIMEOUT_MS,
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
    fn the_setting_cache_is_fresh_for_its_ttl_and_survives_a_failed_read() {
        let setting = RolloutSetting {
            percent: 30,
            shadow_percent: 10,
        };
        let mut cache = SettingCache::default();
        assert_eq!(cache.fresh(0), None);
        assert_eq!(cache.after_read::<()>(1_000, Err(())), None);
        assert_eq!(cache.fresh(1_000), None);
        assert_eq!(
            cache.after_read::<()>(1_000, Ok(Some(setting))),
            Some(setting)
        );
        assert_eq!(cache.fresh(1_000 + SETTING_TTL_MS - 1), Some(Some(setting)));
        assert_eq!(cache.fresh(1_000 + SETTING_TTL_MS), None);
        // A failed re-read keeps the last value known, and stays stale.
        assert_eq!(
            cache.after_read(1_000 + SETTING_TTL_MS, Err("d1 down")),
            Some(setting)
        );
        assert_eq!(cache.fresh(1_000 + SETTING_TTL_MS), None);
        assert_eq!(cache.after_read::<()>(50_000, Ok(None)), None);
        assert_eq!(cache.fresh(50_001), Some(None));
        cache.forget();
        assert_eq!(cache.fresh(50_001), None);
    }
}
