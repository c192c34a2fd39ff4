//! Alert evaluation's entry point, run by every cron trigger and after the
//! dead-letter consumer records letters: reads the snapshot from D1 and the
//! metrics reader (D1 or Analytics Engine), lets
//! `portfolio_core::operations::alerts` decide, and posts notices to the webhook.
//!
//! Never panics and never fails its caller: problems are logged, and a
//! notice that could not be delivered stays owed for the next evaluation.

use crate::bindings;
use crate::config::ServiceConfig;
use crate::providers::FetchTransport;
use crate::store::d1_alerts::D1Alerts;
use crate::store::point_reader::PointReader;
use crate::store::{ConsoleLog, WorkerClock};
use portfolio_core::operations::alerts::{self, observe, AlertNotifier};
use portfolio_core::providers::{HttpMethod, HttpRequest, HttpTransport, TransportError};
use portfolio_core::shared::storage::{Clock, EventLog, Level};
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::Env;

/// The secret (or var) holding the webhook URL; unset: notices go to the log only.
pub const ALERT_WEBHOOK_URL: &str = "ALERT_WEBHOOK_URL";

/// Time limit of one webhook post.
const WEBHOOK_TIMEOUT_MS: u64 = 5_000;

/// Where notices go.
enum Notifier {
    /// A Slack-compatible incoming webhook: `POST { "text": … }`.
    Webhook(String),
    /// The URL is set but is not an http(s) URL: every notice stays owed.
    Invalid,
    /// No URL: notices are logged (`alert_notice`) and count as delivered.
    LogOnly,
}

impl Notifier {
    /// Read from the raw environment: a secret and a var are both plain strings there.
    fn from_env(env: &Env) -> Self {
        let url = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(ALERT_WEBHOOK_URL))
            .ok()
            .and_then(|v| v.as_string())
            .filter(|v| !v.trim().is_empty());
        match url {
            None => Self::LogOnly,
            Some(url) => match worker::Url::parse(url.trim()) {
                Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => {
                    Self::Webhook(url.trim().to_owned())
                }
                _ => Self::Invalid,
            },
        }
    }
}

impl AlertNotifier for Notifier {
    async fn send(&self, text: &str) -> Result<(), String> {
        match self {
            Self::LogOnly => {
                ConsoleLog.log(
                    Level::Warn,
                    json!({ "event": "alert_notice", "text": text, "delivered_to": "log" }),
                );
                Ok(())
            }
            Self::Invalid => Err(format!("{ALERT_WEBHOOK_URL} is not an http(s) URL")),
            Self::Webhook(url) => {
                let request = HttpRequest {
                    method: HttpMethod::Post,
                    url: url.clone(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: json!({ "text": text }).to_string().into_bytes(),
                };
                // The URL is a credential: errors name the status, never the URL.
                match FetchTransport::new(WEBHOOK_TIMEOUT_MS).send(request).await {
                    Ok(response) if (200..300).contains(&response.status) => Ok(()),
                    Ok(response) => Err(format!("the webhook answered HTTP {}", response.status)),
                    Err(e) => Err(format!(
                        "the webhook could not be reached ({})",
                        match e {
                            TransportError::Timeout(_) => "timed out",
                            TransportError::Connection(_) => "connection failed",
                            TransportError::InvalidRequest(_) => "invalid request",
                        }
                    )),
                }
            }
        }
    }
}

/// Evaluates every alert condition now (`trigger`: the cron or `dead_letter`).
pub async fn evaluate(env: &Env, config: &ServiceConfig, trigger: &str) {
    let Ok(db) = env.d1(bindings::DB) else {
        ConsoleLog.log(
            Level::Error,
            json!({ "event": "alerts_failed", "trigger": trigger, "error": "no D1 binding" }),
        );
        return;
    };
    let store = D1Alerts::new(db);
    let now = WorkerClock.now_ms();
    let points = match PointReader::from_env(env, config) {
        Ok(points) => points,
        Err(e) => {
            // The document, letter and reconciliation conditions still run.
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "alerts_points_unreadable", "trigger": trigger, "error": e.to_string() }),
            );
            PointReader::Unavailable(e)
        }
    };
    let snapshot = store.snapshot(now, &config.alerts, &points).await;
    let observed = observe(&snapshot, &config.alerts);
    let notifier = Notifier::from_env(env);
    match alerts::evaluate(&store, &notifier, &observed, now, &config.environment).await {
        Ok(report) => {
            let quiet = report.fired.is_empty()
                && report.resolved.is_empty()
                && report.sent.is_empty()
                && report.failed.is_empty()
                && report.lost_races == 0;
            if !quiet {
                ConsoleLog.log(
                    if report.failed.is_empty() {
                        Level::Info
                    } else {
                        Level::Warn
                    },
                    json!({ "event": "alerts_evaluated", "trigger": trigger, "report": report }),
                );
            }
        }
        Err(e) => ConsoleLog.log(
            Level::Error,
            json!({ "event": "alerts_failed", "trigger": trigger, "error": e.to_string() }),
        ),
    }
}
