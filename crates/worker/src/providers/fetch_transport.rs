//! `HttpTransport` over the Workers runtime's `fetch`, and a `Sleeper` over
//! its timers: the only platform code the providers need.

use portfolio_core::providers::{
    HttpMethod, HttpRequest, HttpResponse, HttpTransport, ResponseSink, Sleeper, TransportError,
};
use std::ops::ControlFlow;
use wasm_bindgen::JsValue;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit};

/// Sends provider requests with the global `fetch`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchTransport;

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

/// Sends the request and returns the response with its status and headers.
async fn start(
    req: &HttpRequest,
) -> Result<(worker::Response, u16, Vec<(String, String)>), TransportError> {
    let response = Fetch::Request(build(req)?)
        .send()
        .await
        .map_err(|e| TransportError::Connection(e.to_string()))?;
    let headers = response.headers().entries().collect();
    let status = response.status_code();
    Ok((response, status, headers))
}

impl HttpTransport for FetchTransport {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (mut response, status, headers) = start(&req).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| TransportError::Connection(format!("reading body: {e}")))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    async fn send_streaming(
        &self,
        req: HttpRequest,
        sink: &mut dyn ResponseSink,
    ) -> Result<(), TransportError> {
        use futures_util::StreamExt;
        let (mut response, status, headers) = start(&req).await?;
        sink.on_head(status, &headers);
        let mut stream = response
            .stream()
            .map_err(|e| TransportError::Connection(format!("opening body: {e}")))?;
        while let Some(chunk) = stream.next().await {
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
