//! `DocumentProcessor`: one Durable Object per R2 key, so updates to one
//! document serialise. It records the commands it is handed in its own
//! storage and reports them; the pipeline steps are driven from its alarm.
//!
//! It must never read or write another document's state.

use crate::error::json_response;
use portfolio_core::ingest_message::IngestCommand;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, State};

/// Storage key of the processor's state document.
const STATE_KEY: &str = "state";

/// What the processor has been asked to do so far (persisted as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProcessorRecord {
    /// R2 key this object serves (set by the first command).
    key: Option<String>,
    /// Number of commands handed to this object.
    commands_received: u64,
    /// The most recent command.
    last_command: Option<IngestCommand>,
    /// When it arrived (ms since epoch).
    last_received_at: Option<u64>,
}

// `State` has no `Debug`; the object is never printed.
#[allow(missing_debug_implementations)]
#[durable_object]
pub struct DocumentProcessor {
    state: State,
}

impl DurableObject for DocumentProcessor {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/commands") => {
                let command: IngestCommand = match req.json().await {
                    Ok(command) => command,
                    Err(e) => {
                        return json_response(
                            &portfolio_core::api::ErrorBody::new("bad_command", e.to_string()),
                            400,
                        )
                    }
                };
                let record = self.accept(command).await?;
                json_response(&record, 202)
            }
            (Method::Get, "/state") => json_response(&self.load().await?, 200),
            _ => json_response(
                &portfolio_core::api::ErrorBody::new("not_found", "unknown processor route"),
                404,
            ),
        }
    }
}

impl DocumentProcessor {
    async fn load(&self) -> worker::Result<ProcessorRecord> {
        Ok(self
            .state
            .storage()
            .get::<ProcessorRecord>(STATE_KEY)
            .await?
            .unwrap_or_default())
    }

    async fn accept(&self, command: IngestCommand) -> worker::Result<ProcessorRecord> {
        let mut record = self.load().await?;
        record.key.get_or_insert_with(|| command.key().to_owned());
        record.commands_received += 1;
        record.last_received_at = Some(worker::Date::now().as_millis());
        record.last_command = Some(command);
        self.state.storage().put(STATE_KEY, &record).await?;
        Ok(record)
    }
}
