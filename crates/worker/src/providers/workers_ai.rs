//! The `AI` binding (Workers AI) as core's [`AiBinding`]: JSON in, JSON or a byte stream
//! out, each call and each streamed chunk within the provider time limit. What the errors
//! mean (which are retried) is core's `workers_ai::binding_error`; this only reports what
//! the binding threw.

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use js_sys::{Object, Promise, Reflect};
use portfolio_core::providers::workers_ai::{AiBinding, AiBindingError};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::pin;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{ByteStream, Delay, Env};

#[wasm_bindgen]
extern "C" {
    /// `env.AI`: the real binding, or in tests a service binding to a stand-in with the
    /// same `run` method (JS RPC).
    #[wasm_bindgen(extends = Object)]
    #[derive(Debug, Clone)]
    type AiRaw;

    #[wasm_bindgen(method, catch, js_name = run)]
    fn run(this: &AiRaw, model: &str, inputs: &JsValue) -> Result<Promise, JsValue>;
}

/// The Workers AI binding with a time limit per call (and per streamed chunk).
#[derive(Debug)]
pub struct WorkersAiBinding {
    raw: AiRaw,
    timeout_ms: u64,
}

impl WorkersAiBinding {
    /// Reads the binding from the raw environment object (not `Env::ai`, which checks the
    /// constructor name and so refuses a stand-in).
    ///
    /// # Errors
    /// The binding's name when it is absent.
    pub fn from_env(env: &Env, binding: &str, timeout_ms: u64) -> Result<Self, String> {
        let raw = Reflect::get(env.as_ref(), &JsValue::from_str(binding))
            .map_err(|e| format!("reading binding {binding}: {}", thrown_parts(&e).1))?;
        if raw.is_undefined() || raw.is_null() {
            return Err(format!("binding {binding} is missing"));
        }
        Ok(Self {
            raw: raw.unchecked_into(),
            timeout_ms,
        })
    }

    async fn within<T>(&self, work: impl Future<Output = T>) -> Result<T, AiBindingError> {
        let timer = Delay::from(std::time::Duration::from_millis(self.timeout_ms));
        match select(pin!(work), pin!(timer)).await {
            Either::Left((value, _)) => Ok(value),
            Either::Right(((), _)) => Err(AiBindingError::Timeout(format!(
                "Workers AI: nothing within {} ms",
                self.timeout_ms
            ))),
        }
    }

    /// Starts `model` on `input` and waits for its output value.
    async fn call(&self, model: &str, input: &Value) -> Result<JsValue, AiBindingError> {
        let inputs = input
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| AiBindingError::Thrown {
                name: "TypeError".into(),
                message: format!("cannot pass the input to the binding: {e}"),
            })?;
        let promise = self.raw.run(model, &inputs).map_err(|e| thrown(&e))?;
        self.within(JsFuture::from(promise))
            .await?
            .map_err(|e| thrown(&e))
    }
}

/// An exception's `name` and `message` (`InferenceUpstreamError`, `"3040: ..."`).
fn thrown_parts(value: &JsValue) -> (String, String) {
    let field = |key: &str| {
        Reflect::get(value, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
    };
    match (field("name"), field("message")) {
        (Some(name), Some(message)) => (name, message),
        _ => (
            "Error".to_owned(),
            value.as_string().unwrap_or_else(|| format!("{value:?}")),
        ),
    }
}

fn thrown(value: &JsValue) -> AiBindingError {
    let (name, message) = thrown_parts(value);
    AiBindingError::Thrown { name, message }
}

impl AiBinding for WorkersAiBinding {
    async fn run(&self, model: &str, input: Value) -> Result<Value, AiBindingError> {
        let output = self.call(model, &input).await?;
        if output.is_instance_of::<worker::web_sys::ReadableStream>() {
            return Err(AiBindingError::Thrown {
                name: "TypeError".into(),
                message: format!("{model} answered with a byte stream where JSON was expected"),
            });
        }
        serde_wasm_bindgen::from_value(output).map_err(|e| AiBindingError::Thrown {
            name: "TypeError".into(),
            message: format!("{model} answered with something that is not JSON: {e}"),
        })
    }

    async fn run_stream(
        &self,
        model: &str,
        input: Value,
        on_chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), AiBindingError> {
        let output = self.call(model, &input).await?;
        let Ok(stream) = output.dyn_into::<worker::web_sys::ReadableStream>() else {
            return Err(AiBindingError::Thrown {
                name: "TypeError".into(),
                message: format!("{model} did not stream (no ReadableStream)"),
            });
        };
        let mut body = ByteStream::from(stream);
        loop {
            let Some(next) = self.within(body.next()).await? else {
                return Ok(());
            };
            let chunk = next.map_err(|e| AiBindingError::Thrown {
                name: "Error".into(),
                message: format!("reading the stream: {e}"),
            })?;
            if on_chunk(&chunk).is_break() {
                return Ok(());
            }
        }
    }
}
