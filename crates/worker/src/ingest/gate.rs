//! `IngestGate`: the provider gate as one Durable Object shared by every
//! document's processor (`portfolio_core::ingest::gate` decides; this object
//! keeps the state, in memory and in its storage). [`GateClient`] is the
//! processors' side of it.
//!
//! Every call is answered without awaiting anything between reading and
//! changing the state, so concurrent requests to the object cannot interleave
//! inside a decision; the state is saved after each change, so an evicted
//! object comes back with its leases and queue.

use crate::bindings;
use crate::config;
use crate::error::json_response;
use crate::store::WorkerClock;
use portfolio_core::api::ErrorBody;
use portfolio_core::ingest::gate::{Admission, GateRelease, GateRequest, GateState, ProviderGate};
use portfolio_core::shared::storage::{Clock, StoreError};
use std::cell::RefCell;
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

/// The gate's single instance name.
const GATE_NAME: &str = "provider";
/// Origin of requests to the object (never resolved: the stub routes them).
const GATE_ORIGIN: &str = "https://ingest-gate.internal";
/// Storage key of the state.
const STATE_KEY: &str = "gate";

// `State` has no `Debug`; the object is never printed.
#[allow(missing_debug_implementations)]
#[durable_object]
pub struct IngestGate {
    state: State,
    env: Env,
    gate: RefCell<Option<GateState>>,
}

impl DurableObject for IngestGate {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            gate: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let route = (req.method(), req.path());
        let holder = match &route {
            (Method::Post, path) if path == "/acquire" || path == "/release" => {
                match req.json::<GateRequest>().await {
                    Ok(body) if !body.holder.is_empty() => Some(body.holder),
                    Ok(_) => {
                        return json_response(
                            &ErrorBody::new("bad_request", "holder is empty"),
                            400,
                        )
                    }
                    Err(e) => {
                        return json_response(&ErrorBody::new("bad_request", e.to_string()), 400)
                    }
                }
            }
            (Method::Get, path) if path == "/stats" => None,
            _ => return json_response(&ErrorBody::new("not_found", "unknown gate route"), 404),
        };
        let settings = config::load(&self.env)
            .map_err(|e| worker::Error::RustError(e.to_string()))?
            .provider_gate
            .unwrap_or_default();
        self.load().await?;
        let now = WorkerClock.now_ms();
        let answer = {
            let mut guard = self.gate.borrow_mut();
            let gate = guard.get_or_insert_with(GateState::default);
            match (route.1.as_str(), holder) {
                ("/acquire", Some(holder)) => {
                    serde_json::to_value(gate.acquire(&holder, now, &settings))?
                }
                ("/release", Some(holder)) => serde_json::to_value(GateRelease {
                    released: gate.release(&holder, now),
                })?,
                _ => serde_json::to_value(gate.stats(now))?,
            }
        };
        self.save().await?;
        json_response(&answer, 200)
    }
}

impl IngestGate {
    /// Reads the stored state once per instance.
    async fn load(&self) -> worker::Result<()> {
        if self.gate.borrow().is_some() {
            return Ok(());
        }
        let stored: Option<String> = self.state.storage().get(STATE_KEY).await?;
        let state = stored
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        // Another request may have loaded it meanwhile: keep the first.
        self.gate.borrow_mut().get_or_insert(state);
        Ok(())
    }

    async fn save(&self) -> worker::Result<()> {
        let json = match self.gate.borrow().as_ref() {
            Some(state) => serde_json::to_string(state)?,
            None => return Ok(()),
        };
        self.state.storage().put(STATE_KEY, json).await
    }
}

/// The processors' side of the gate: requests to the one `IngestGate` object.
pub struct GateClient<'a> {
    env: &'a Env,
}

impl std::fmt::Debug for GateClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GateClient")
    }
}

impl<'a> GateClient<'a> {
    /// The client of the gate bound as `INGEST_GATE` in `env`.
    #[must_use]
    pub fn new(env: &'a Env) -> Self {
        Self { env }
    }

    async fn call(&self, route: &str, holder: &str) -> Result<serde_json::Value, StoreError> {
        let failed = |e: worker::Error| StoreError::transient("provider gate", e);
        let namespace = self
            .env
            .durable_object(bindings::INGEST_GATE)
            .map_err(failed)?;
        let stub = namespace
            .id_from_name(GATE_NAME)
            .and_then(|id| id.get_stub())
            .map_err(failed)?;
        let body = serde_json::to_string(&GateRequest {
            holder: holder.to_owned(),
        })
        .map_err(|e| StoreError::permanent("provider gate", e))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let request =
            Request::new_with_init(&format!("{GATE_ORIGIN}{route}"), &init).map_err(failed)?;
        let mut response = stub.fetch_with_request(request).await.map_err(failed)?;
        if response.status_code() != 200 {
            return Err(StoreError::transient(
                "provider gate",
                format!("gate answered {}", response.status_code()),
            ));
        }
        response.json().await.map_err(failed)
    }
}

impl ProviderGate for GateClient<'_> {
    async fn acquire(&self, holder: &str) -> Result<Admission, StoreError> {
        let answer = self.call("/acquire", holder).await?;
        serde_json::from_value(answer).map_err(|e| StoreError::transient("provider gate", e))
    }

    async fn release(&self, holder: &str) -> Result<(), StoreError> {
        self.call("/release", holder).await.map(|_| ())
    }
}
