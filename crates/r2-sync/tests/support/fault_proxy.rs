//! A TCP proxy in front of the real S3 server that injects faults: for
//! requests matching a rule it answers an HTTP error, drops the connection,
//! or hangs, a set number of times; everything else is forwarded untouched.
//! Expects one request per connection (the CLI's `--no-connection-reuse`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status and an S3-style error body.
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Never answer (until the proxy is dropped).
    Hang,
}

#[derive(Debug, Clone)]
pub struct FaultRule {
    pub method: &'static str,
    /// Substring of the request target (path + query) that must match.
    pub target_contains: String,
    /// Requests that must match before the fault starts (let through).
    pub skip: usize,
    /// How many matching requests get the fault.
    pub times: usize,
    pub action: FaultAction,
}

#[derive(Debug, Default)]
struct RuleState {
    seen: usize,
    injected: usize,
}

pub struct FaultProxy {
    pub port: u16,
    rules: Arc<Mutex<Vec<(FaultRule, RuleState)>>>,
    pub injected: Arc<AtomicUsize>,
    pub hanging: Arc<AtomicUsize>,
    /// Every request line seen, e.g. `PUT /bucket/key`.
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: u16, rules: Vec<FaultRule>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            rules: Arc::new(Mutex::new(
                rules
                    .into_iter()
                    .map(|r| (r, RuleState::default()))
                    .collect(),
            )),
            injected: Arc::new(AtomicUsize::new(0)),
            hanging: Arc::new(AtomicUsize::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (rules, injected, hanging, log, stop) = (
            proxy.rules.clone(),
            proxy.injected.clone(),
            proxy.hanging.clone(),
            proxy.log.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (rules, injected, hanging, log, stop) = (
                    rules.clone(),
                    injected.clone(),
                    hanging.clone(),
                    log.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    handle(client, upstream, &rules, &injected, &hanging, &log, &stop)
                });
            }
        });
        proxy
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    Some(buf)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn handle(
    mut client: TcpStream,
    upstream: u16,
    rules: &Mutex<Vec<(FaultRule, RuleState)>>,
    injected: &AtomicUsize,
    hanging: &AtomicUsize,
    log: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let head_text = String::from_utf8_lossy(&head).into_owned();
    let mut first = head_text.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    log.lock().unwrap().push(format!("{method} {target}"));

    let action = {
        let mut rules = rules.lock().unwrap();
        let mut chosen = None;
        for (rule, state) in rules.iter_mut() {
            if rule.method != method
                || !target.contains(&rule.target_contains)
                || state.injected >= rule.times
            {
                continue;
            }
            state.seen += 1;
            if state.seen > rule.skip {
                state.injected += 1;
                chosen = Some(rule.action);
                break;
            }
        }
        chosen
    };
    match action {
        Some(FaultAction::Status(status)) => {
            injected.fetch_add(1, Ordering::SeqCst);
            // Drain the body so the client sees the answer, not a reset.
            let mut body = vec![0u8; content_length(&head_text)];
            let _ = client.read_exact(&mut body);
            let xml = format!("<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>injected {status}</Message></Error>");
            let _ = write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(FaultAction::Drop) => {
            injected.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(FaultAction::Hang) => {
            injected.fetch_add(1, Ordering::SeqCst);
            hanging.fetch_add(1, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        None => {
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            if server.write_all(&head).is_err() {
                return;
            }
            let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_r, &mut server_w);
                let _ = server_w.shutdown(Shutdown::Write);
            });
            let _ = std::io::copy(&mut server, &mut client);
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.join();
        }
    }
}
