//! `HttpTransport` over the Workers runtime's `fetch`, and a `Sleeper` over
//! its timers: the only platform code the providers need.

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use portfolio_core::providers::{
    HttpMethod, HttpRequest, HttpResponse, HttpTransport, ResponseSink, Sleeper, TransportError,
};
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::pin;
use wasm_bindgen::JsValue;
use worker::{AbortController, AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Sends provider requests with the global `fetch`, each within a time limit.
#[derive(Debug, Clone, Copy)]
pub struct FetchTransport {
    timeout_ms: u64,
}

impl FetchTransport {
    /// A transport giving up on a request (or, streaming, on a gap between chunks) after
    /// `timeout_ms`.
    pub fn new(timeout_ms: u64) -> Self {
        Self { timeout_ms }
    }

    /// Runs `work` within the time limit: `None` when the limit passed first (the caller then
    /// aborts the request, so the runtime drops its connection).
    async fn within<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let timer = Delay::from(std::time::Duration::from_millis(self.timeout_ms));
        match select(pin!(work), pin!(timer)).await {
            Either::Left((result, _)) => Some(result),
            Either::Right(((), _)) => None,
        }
    }

    /// The retryable error for a request that ran out of time.
    fn timed_out(&self, controller: AbortController, url: &str) -> TransportError {
        controller.abort();
        TransportError::Timeout(format!("{url}: nothing within {} ms", self.timeout_ms))
    }
}

fn build(req: &HttpRequest) -> Result<Request, TransportError> {
    let headers = Headers::new();
    for (name, value) in &req.headers {
        headers
            .set(name, value)
            .map_err(|e| TransportError::InvalidRequest(format!("header {name}: {e}")))?;
    }
    let method = match req.method {
        HttpMethod::Get => Method::Get,
        HttpMethod::Post => Method::Post,
    };
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if !req.body.is_empty() {
        let body = js_sys::Uint8Array::from(req.body.as_slice());
        init.with_body(Some(JsValue::from(body)));
    }
    Request::new_with_init(&req.url, &init)
        .map_err(|e| TransportError::InvalidRequest(format!("{}: {e}", req.url)))
}

/// A response's whole body, read by the runtime in one `arrayBuffer()` call. `Response::bytes`
/// reads the body stream chunk by chunk through wasm, a promise and a copy per chunk: on a
/// busy isolate each of those waits its turn, and a provider call of a gated batch holds its
/// gate lease meanwhile.
///
/// # Errors
/// When the body cannot be read (the connection failed mid-body, or it was read already).
pub(crate) async fn response_bytes(response: &worker::Response) -> Result<Vec<u8>, String> {
    let raw: worker::web_sys::Response = response.into();
    let promise = raw.array_buffer().map_err(|e| format!("{e:?}"))?;
    let buffer = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Sends the request and returns the response with its status and headers.
async fn start(
    req: &HttpRequest,
    signal: &AbortSignal,
) -> Result<(worker::Response, u16, Vec<(String, String)>), TransportError> {
    let response = Fetch::Request(build(req)?)
        .send_with_signal(signal)
        .await
        .map_err(|e| TransportError::Connection(e.to_string()))?;
    let headers = response.headers().entries().collect();
    let status = response.status_code();
    Ok((response, status, headers))
}

impl HttpTransport for FetchTransport {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let controller = AbortController::default();
        let signal = controller.signal();
        let whole = self.within(async {
            let (response, status, headers) = start(&req, &signal).await?;
            let body = response_bytes(&response)
                .await
                .map_err(|e| TransportError::Connection(format!("reading body: {e}")))?;
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        });
        match whole.await {
            Some(result) => result,
            None => Err(self.timed_out(controller, &req.url)),
        }
    }

    async fn send_streaming(
        &self,
        req: HttpRequest,
        sink: &mut dyn ResponseSink,
    ) -> Result<(), TransportError> {
        let controller = AbortController::default();
        let signal = controller.signal();
        let Some(head) = self.within(start(&req, &signal)).await else {
            return Err(self.timed_out(controller, &req.url));
        };
        let (mut response, status, headers) = head?;
        sink.on_head(status, &headers);
        let mut stream = response
            .stream()
            .map_err(|e| TransportError::Connection(format!("opening body: {e}")))?;
        // A stalled stream must end the answer, not hang it: each gap has the same limit.
        loop {
            let Some(next) = self.within(stream.next()).await else {
                return Err(self.timed_out(controller, &req.url));
            };
            let Some(chunk) = next else { break };
            let chunk =
                chunk.map_err(|e| TransportError::Connection(format!("reading body: {e}")))?;
            if let ControlFlow::Break(()) = sink.on_chunk(&chunk) {
                break;
            }
        }
        Ok(())
    }
}

/// Waits with the runtime's timers (`setTimeout`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerSleeper;

impl Sleeper for TimerSleeper {
    async fn sleep(&self, ms: u64) {
        Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}
