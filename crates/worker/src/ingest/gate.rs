//! `IngestGate`: the provider gate as one Durable Object shared by every
//! document's processor (`portfolio_core::ingest::gate` decides; this object
//! keeps the state, in memory and in its storage, and holds the open acquire
//! requests). [`GateClient`] is the processors' side of it.
//!
//! Every decision is made without awaiting anything between reading and
//! changing the state, so concurrent requests to the object cannot interleave
//! inside one; a held request awaits only its answer or its timer, then decides
//! again. The state is saved after each change, so an evicted object comes back
//! with its leases and queue; the requests it held die with it (their callers
//! ask again), so a new instance forgets the holds it loads.

use crate::bindings;
use crate::config;
use crate::error::json_response;
use crate::providers::fetch_transport::response_bytes;
use crate::store::WorkerClock;
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use portfolio_core::api::ErrorBody;
use portfolio_core::ingest::gate::{
    Admission, GateRelease, GateRequest, GateSettings, GateState, HandOff, ProviderGate,
    MIN_RETRY_MS,
};
use portfolio_core::shared::storage::{Clock, StoreError};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::pin;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, Delay, DurableObject, Env, Method, Request, RequestInit, Response, State,
};

/// The gate's single instance name.
const GATE_NAME: &str = "provider";
/// Origin of requests to the object (never resolved: the stub routes them).
const GATE_ORIGIN: &str = "https://ingest-gate.internal";
/// Storage key of the state.
const STATE_KEY: &str = "gate";

/// An acquire request held open by this instance: answered through `answer`.
struct HeldRequest {
    /// Tells this request from a later one of the same holder that replaced it.
    ticket: u64,
    answer: oneshot::Sender<Admission>,
}

// `State` has no `Debug`; the object is never printed.
#[allow(missing_debug_implementations)]
#[durable_object]
pub struct IngestGate {
    state: State,
    env: Env,
    gate: RefCell<Option<GateState>>,
    held: RefCell<HashMap<String, HeldRequest>>,
    tickets: Cell<u64>,
    /// The vars, parsed once per instance (its `env` never changes).
    config: std::cell::OnceCell<config::ServiceConfig>,
}

impl DurableObject for IngestGate {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            gate: RefCell::new(None),
            held: RefCell::new(HashMap::new()),
            tickets: Cell::new(0),
            config: std::cell::OnceCell::new(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let route = (req.method(), req.path());
        let request = match &route {
            (Method::Post, path) if path == "/acquire" || path == "/release" => {
                match req.json::<GateRequest>().await {
                    Ok(body) if !body.holder.is_empty() => Some(body),
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
        let settings = config::load_once(&self.config, &self.env)?
            .provider_gate
            .unwrap_or_default();
        self.load().await?;
        let answer = match (route.1.as_str(), request) {
            ("/acquire", Some(GateRequest { holder, wait_ms })) => {
                let admission = match wait_ms.filter(|&ms| ms > 0) {
                    Some(wait_ms) => self.acquire_held(&holder, wait_ms, &settings).await?,
                    None => {
                        let admission = self
                            .decide(&settings, |gate, now| gate.acquire(&holder, now, &settings));
                        self.save().await?;
                        admission
                    }
                };
                serde_json::to_value(admission)?
            }
            ("/release", Some(GateRequest { holder, .. })) => {
                let released = self.decide(&settings, |gate, now| gate.release(&holder, now));
                self.save().await?;
                serde_json::to_value(GateRelease { released })?
            }
            _ => {
                let stats = self.decide(&settings, |gate, now| gate.stats(now));
                self.save().await?;
                serde_json::to_value(stats)?
            }
        };
        json_response(&answer, 200)
    }
}

impl IngestGate {
    /// Runs one decision on the state, then hands every slot it freed to the held requests
    /// and answers them, all without awaiting anything.
    fn decide<T>(&self, settings: &GateSettings, f: impl FnOnce(&mut GateState, u64) -> T) -> T {
        let now = WorkerClock.now_ms();
        let (result, handed) = {
            let mut guard = self.gate.borrow_mut();
            let gate = guard.get_or_insert_with(GateState::default);
            let result = f(gate, now);
            (result, gate.hand_off(now, settings))
        };
        self.answer_held(handed);
        result
    }

    /// Answers the held requests that were handed a lease. One whose request is gone keeps
    /// the lease until it asks again (an acquire is idempotent) or the lease expires.
    fn answer_held(&self, handed: Vec<HandOff>) {
        let mut held = self.held.borrow_mut();
        for HandOff { holder, until_ms } in handed {
            let sent = held.remove(&holder).is_some_and(|request| {
                request.answer.send(Admission::Granted { until_ms }).is_ok()
            });
            if !sent {
                worker::console_warn!(
                    "{}",
                    serde_json::json!({ "event": "gate_hand_off_unanswered", "holder": holder })
                );
            }
        }
    }

    /// An acquire the caller lets the gate hold for up to `wait_ms`: answered when a release
    /// (or an expiry) hands it a lease, or when the hold ends.
    async fn acquire_held(
        &self,
        holder: &str,
        wait_ms: u64,
        settings: &GateSettings,
    ) -> worker::Result<Admission> {
        let now = WorkerClock.now_ms();
        let admission = self.decide(settings, |gate, now| {
            gate.hold(holder, now, settings, now.saturating_add(wait_ms))
        });
        let Admission::Wait { retry_after_ms, .. } = admission else {
            self.save().await?;
            return Ok(admission);
        };
        let ticket = self.tickets.get() + 1;
        self.tickets.set(ticket);
        let (answer, handed) = oneshot::channel();
        // A request of the same holder still open (its caller gave up on it and asked again)
        // is replaced: dropping its sender answers it below without touching the state.
        self.held
            .borrow_mut()
            .insert(holder.to_owned(), HeldRequest { ticket, answer });
        if let Err(e) = self.save().await {
            self.drop_held(holder, ticket);
            return Err(e);
        }
        let timer = Delay::from(std::time::Duration::from_millis(
            retry_after_ms.saturating_sub(WorkerClock.now_ms().saturating_sub(now)),
        ));
        // The answer is polled first: a hand-off that came with the timer wins.
        match select(handed, pin!(timer)).await {
            Either::Left((Ok(granted), _)) => Ok(granted),
            Either::Left((Err(oneshot::Canceled), _)) => Ok(Admission::Wait {
                retry_after_ms: MIN_RETRY_MS,
                ahead: 0,
            }),
            Either::Right(_) => {
                if !self.drop_held(holder, ticket) {
                    return Ok(Admission::Wait {
                        retry_after_ms: MIN_RETRY_MS,
                        ahead: 0,
                    });
                }
                let admission =
                    self.decide(settings, |gate, now| gate.end_hold(holder, now, settings));
                self.save().await?;
                Ok(admission)
            }
        }
    }

    /// Forgets `holder`'s open request if it is still the one with `ticket`; returns whether it was.
    fn drop_held(&self, holder: &str, ticket: u64) -> bool {
        let mut held = self.held.borrow_mut();
        let ours = held.get(holder).is_some_and(|r| r.ticket == ticket);
        if ours {
            held.remove(holder);
        }
        ours
    }

    /// Reads the stored state once per instance. The requests an earlier instance held died
    /// with it, so their holds are forgotten (their waiters keep their places).
    async fn load(&self) -> worker::Result<()> {
        if self.gate.borrow().is_some() {
            return Ok(());
        }
        let stored: Option<String> = self.state.storage().get(STATE_KEY).await?;
        let mut state: GateState = stored
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        state.forget_holds(WorkerClock.now_ms());
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

    async fn call(
        &self,
        route: &str,
        holder: &str,
        wait_ms: Option<u64>,
    ) -> Result<serde_json::Value, StoreError> {
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
            wait_ms,
        })
        .map_err(|e| StoreError::permanent("provider gate", e))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let request =
            Request::new_with_init(&format!("{GATE_ORIGIN}{route}"), &init).map_err(failed)?;
        let response = stub.fetch_with_request(request).await.map_err(failed)?;
        if response.status_code() != 200 {
            return Err(StoreError::transient(
                "provider gate",
                format!("gate answered {}", response.status_code()),
            ));
        }
        let body = response_bytes(&response)
            .await
            .map_err(|e| StoreError::transient("provider gate", e))?;
        serde_json::from_slice(&body).map_err(|e| StoreError::transient("provider gate", e))
    }
}

impl ProviderGate for GateClient<'_> {
    async fn acquire(&self, holder: &str, wait_ms: u64) -> Result<Admission, StoreError> {
        let answer = self.call("/acquire", holder, Some(wait_ms)).await?;
        serde_json::from_value(answer).map_err(|e| StoreError::transient("provider gate", e))
    }

    async fn release(&self, holder: &str) -> Result<(), StoreError> {
        self.call("/release", holder, None).await.map(|_| ())
    }
}
