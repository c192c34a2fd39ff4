//! Queue consumer: turns each message into a command for the document's
//! processor (or a reconciliation page for the reconciler), acking or
//! retrying message by message.
//!
//! A message that can never succeed (malformed) is dead-lettered and acked, a
//! hand-off that failed is retried with a delay growing with its attempts, and
//! nothing is acked before it is safely handed on or recorded.

use crate::bindings;
use crate::config::ServiceConfig;
use crate::ingest::PROCESSOR_ORIGIN;
use crate::reconcile;
use crate::store::queue::QueueProducer;
use portfolio_core::ingest_message::{
    parse_ingest_message, parse_queue_message, retry_delay_seconds, IngestCommand, QueueMessage,
};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::worker_sys::{
    Context as ContextSys, Message as MessageSys, MessageBatch as MessageBatchSys,
};
use worker::{console_error, console_log, console_warn, Env, Method, Request, RequestInit};

/// One delivered message with what workers-rs does not expose (`attempts`).
struct Delivery {
    raw: MessageSys,
    id: String,
    attempts: u32,
    body: Result<Value, String>,
}

impl Delivery {
    fn from_js(raw: MessageSys) -> Self {
        let id = raw.id().map(String::from).unwrap_or_default();
        // `attempts` starts at 1 on the first delivery.
        let attempts = js_sys::Reflect::get(&raw, &JsValue::from_str("attempts"))
            .ok()
            .and_then(|v| v.as_f64())
            .map_or(1, |a| a.max(1.0) as u32);
        let body = raw
            .body()
            .map_err(|e| format!("{e:?}"))
            .and_then(|b| serde_wasm_bindgen::from_value::<Value>(b).map_err(|e| e.to_string()));
        Self {
            raw,
            id,
            attempts,
            body,
        }
    }

    fn ack(&self) {
        if let Err(e) = self.raw.ack() {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "queue_ack_failed", "message_id": self.id, "error": format!("{e:?}") })
            );
        }
    }

    fn retry(&self, delay_seconds: u32) {
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(
            &options,
            &JsValue::from_str("delaySeconds"),
            &JsValue::from_f64(f64::from(delay_seconds)),
        );
        if let Err(e) = self.raw.retry(options.into()) {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "queue_retry_failed", "message_id": self.id, "error": format!("{e:?}") })
            );
        }
    }
}

/// Queue entry point (exported under the name workers-rs' shim dispatches to).
#[wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures)]
pub async fn queue(batch: MessageBatchSys, env: Env, _ctx: ContextSys) -> Result<JsValue, JsValue> {
    let config = ServiceConfig::from_env(&env);
    let queue_name = batch.queue().map(String::from).unwrap_or_default();
    let messages = batch.messages()?;
    for raw in messages.iter() {
        let delivery = Delivery::from_js(raw.unchecked_into());
        if queue_name == config.dlq_name {
            handle_dead_letter(&env, &queue_name, &delivery).await;
        } else {
            handle_ingest(&env, &config, &queue_name, &delivery).await;
        }
    }
    Ok(JsValue::UNDEFINED)
}

async fn handle_ingest(env: &Env, config: &ServiceConfig, queue_name: &str, delivery: &Delivery) {
    let parsed = delivery
        .body
        .clone()
        .and_then(|body| parse_queue_message(&body).map_err(|e| e.to_string()));
    let command = match parsed {
        Ok(QueueMessage::Document(command)) => command,
        Ok(QueueMessage::Reconcile(continuation)) => {
            return match reconcile::continue_run(env, &continuation, delivery.attempts).await {
                Ok(()) => delivery.ack(),
                Err(_) => delivery.retry(retry_delay_seconds(delivery.attempts)),
            };
        }
        Err(error) => {
            return dead_letter_malformed(env, config, queue_name, delivery, &error).await
        }
    };
    match hand_off(env, &command).await {
        Ok(()) => {
            console_log!(
                "{}",
                json!({ "level": "info", "event": "ingest_handed_off", "message_id": delivery.id, "key": command.key(), "reason": command.reason(), "attempts": delivery.attempts })
            );
            delivery.ack();
        }
        Err(error) => {
            let delay = retry_delay_seconds(delivery.attempts);
            console_warn!(
                "{}",
                json!({ "level": "warn", "event": "ingest_hand_off_failed", "message_id": delivery.id, "key": command.key(), "attempts": delivery.attempts, "retry_in_s": delay, "error": error })
            );
            delivery.retry(delay);
        }
    }
}

/// Sends the command to the document's processor (one Durable Object per key).
async fn hand_off(env: &Env, command: &IngestCommand) -> Result<(), String> {
    let namespace = env
        .durable_object(bindings::DOCUMENT_PROCESSOR)
        .map_err(|e| e.to_string())?;
    let stub = namespace
        .id_from_name(command.key())
        .and_then(|id| id.get_stub())
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_string(command).map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(&format!("{PROCESSOR_ORIGIN}/commands"), &init)
        .map_err(|e| e.to_string())?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&response.status_code()) {
        Ok(())
    } else {
        let text = response.text().await.unwrap_or_default();
        Err(format!(
            "processor answered {}: {text}",
            response.status_code()
        ))
    }
}

/// A malformed message can never succeed: record it in the dead-letter queue
/// with the reason, then ack. If even that fails, retry (never drop it).
async fn dead_letter_malformed(
    env: &Env,
    config: &ServiceConfig,
    queue_name: &str,
    delivery: &Delivery,
    error: &str,
) {
    let body = delivery.body.clone().unwrap_or(Value::Null);
    console_error!(
        "{}",
        json!({ "level": "error", "event": "ingest_message_malformed", "message_id": delivery.id, "queue": queue_name, "error": error, "body": body })
    );
    let letter = json!({
        "dead_letter": { "queue": queue_name, "message_id": delivery.id, "error": error, "attempts": delivery.attempts },
        "body": body,
    });
    let sent = match QueueProducer::from_env(env, bindings::INGEST_DLQ) {
        Ok(dlq) => dlq.send(&letter).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match sent {
        Ok(()) => delivery.ack(),
        Err(send_error) => {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "dead_letter_send_failed", "message_id": delivery.id, "dlq": config.dlq_name, "error": send_error })
            );
            delivery.retry(retry_delay_seconds(delivery.attempts));
        }
    }
}

/// Dead-letter consumer: records every letter in D1 (and on its document, when
/// there is one) so it shows up in status and reconciliation, then acks.
async fn handle_dead_letter(env: &Env, queue_name: &str, delivery: &Delivery) {
    let body = delivery.body.clone().unwrap_or(Value::Null);
    // Letters we forwarded ourselves carry their reason; others ran out of retries.
    let (original, error, origin_id, attempts) = match body.get("dead_letter") {
        Some(meta) => (
            body.get("body").cloned().unwrap_or(Value::Null),
            meta.get("error")
                .and_then(Value::as_str)
                .unwrap_or("malformed")
                .to_owned(),
            meta.get("message_id")
                .and_then(Value::as_str)
                .unwrap_or(&delivery.id)
                .to_owned(),
            meta.get("attempts").and_then(Value::as_u64).unwrap_or(0),
        ),
        None => (
            body.clone(),
            "out of retries".to_owned(),
            delivery.id.clone(),
            0,
        ),
    };
    let key = parse_ingest_message(&original)
        .ok()
        .map(|c| c.key().to_owned());
    // A reconciliation page out of retries: its run can never finish.
    if let Ok(QueueMessage::Reconcile(continuation)) = parse_queue_message(&original) {
        if let Err(e) = reconcile::dead_lettered(env, &continuation, &error).await {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "reconcile_dead_letter_not_recorded", "run_id": continuation.run_id, "error": e.to_string() })
            );
        }
    }
    match record_dead_letter(
        env,
        queue_name,
        &origin_id,
        key.as_deref(),
        &original,
        &error,
        attempts,
    )
    .await
    {
        Ok(()) => {
            console_warn!(
                "{}",
                json!({ "level": "warn", "event": "dead_letter_recorded", "message_id": origin_id, "key": key, "error": error })
            );
            delivery.ack();
        }
        Err(e) => {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "dead_letter_record_failed", "message_id": origin_id, "error": e.to_string() })
            );
            delivery.retry(retry_delay_seconds(delivery.attempts));
        }
    }
}

async fn record_dead_letter(
    env: &Env,
    queue_name: &str,
    message_id: &str,
    key: Option<&str>,
    body: &Value,
    error: &str,
    attempts: u64,
) -> worker::Result<()> {
    let db = env.d1(bindings::DB)?;
    let now = worker::Date::now().as_millis() as f64;
    let key_value = key.map_or(JsValue::NULL, JsValue::from_str);
    let insert = db
        .prepare(
            "INSERT INTO dead_letters (queue, message_id, document_key, body, error, attempts, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&[
            queue_name.into(),
            message_id.into(),
            key_value.clone(),
            body.to_string().into(),
            error.into(),
            JsValue::from_f64(attempts as f64),
            JsValue::from_f64(now),
        ])?;
    let mark_document = db
        .prepare(
            "UPDATE documents SET status = 'failed', last_error = ?2, updated_at = ?3 \
             WHERE key = ?1 AND status != 'deleted'",
        )
        .bind(&[
            key_value,
            format!("dead-lettered: {error}").into(),
            JsValue::from_f64(now),
        ])?;
    db.batch(vec![insert, mark_document]).await?;
    Ok(())
}
