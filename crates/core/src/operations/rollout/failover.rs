//! Whether a chat the plan sent to the old endpoint is answered here instead:
//! only when the old endpoint failed before the first byte of its answer
//! could reach the client, so nobody gets a 502 this service could have
//! answered, and no answer a client has started reading is ever replaced.
//! Pure: the Worker fetches, times and streams, reports what it saw, and does
//! what [`after_head`] and [`after_first_chunk`] say; it never decides a
//! failover itself.

/// Response header naming who answered a chat the plan sent to the old
/// endpoint ([`ServedBy`]); absent on chats the plan serves here.
pub const SERVED_BY_HEADER: &str = "x-served-by";
/// Route label of the requests proxied to the old API, kept apart from
/// `POST /api/chat` so the old stack's latency and errors do not count as ours.
pub const PROXIED_ROUTE_LABEL: &str = "POST /api/chat (legacy)";
/// Route label of the chats answered here because the old endpoint failed:
/// their latency includes the wait for it, so they are kept apart too.
pub const FAILOVER_ROUTE_LABEL: &str = "POST /api/chat (failover)";

/// Default of `LEGACY_FIRST_BYTE_TIMEOUT_MS`: the 2 s p95 target for a whole
/// chat. An old endpoint that has not started its answer within the whole
/// budget has missed the target for that client already, so waiting longer
/// only adds to their wait; a shorter limit would cut off the old stack's
/// slow but healthy answers (a JSON answer's headers come only once it is
/// written whole) and move those clients here off-plan.
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 2_000;
/// Accepted `LEGACY_FIRST_BYTE_TIMEOUT_MS`: under 100 ms not even a nearby
/// healthy endpoint starts answering (to serve everyone here, set the
/// percent to 100 instead); past a minute the client has given up.
pub const FIRST_BYTE_TIMEOUT_MS_RANGE: (u64, u64) = (100, 60_000);

/// Who answered a chat the plan sent to the old endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    /// The old endpoint: its answer passed through.
    Legacy,
    /// This service, because the old endpoint failed before its first byte.
    Failover,
}

impl ServedBy {
    /// The [`SERVED_BY_HEADER`] value.
    #[must_use]
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Failover => "failover",
        }
    }

    /// Reads a [`SERVED_BY_HEADER`] value back (`None`: served here by plan).
    #[must_use]
    pub fn from_header(value: &str) -> Option<Self> {
        [Self::Legacy, Self::Failover]
            .into_iter()
            .find(|s| s.header_value() == value)
    }

    /// The request's route label in the metrics.
    #[must_use]
    pub fn route_label(self) -> &'static str {
        match self {
            Self::Legacy => PROXIED_ROUTE_LABEL,
            Self::Failover => FAILOVER_ROUTE_LABEL,
        }
    }
}

/// The old endpoint gave no response to pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoResponse {
    /// `fetch` failed: connection refused or reset, closed before
    /// answering, DNS, TLS.
    Unreachable,
    /// The limit passed before the response headers.
    NoHeaders,
}

/// How the wait for the body's first chunk ended, after the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstChunk {
    /// The first chunk arrived, or the body ended (an empty answer is an answer).
    Arrived,
    /// The body failed before its first chunk.
    Failed,
    /// The limit passed before the first chunk.
    TimedOut,
}

/// What the Worker does next with the old endpoint's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait for the body's first chunk, within what is left of the limit.
    AwaitFirstChunk,
    /// Send the old endpoint's answer on as it comes. From here on nothing
    /// replaces it: a failure mid-stream ends that stream.
    PassThrough,
    /// Drop the old endpoint's attempt and answer here.
    FailOver(FailoverReason),
}

/// Why a chat was answered here instead of by the old endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverReason {
    /// No response at all.
    Unreachable,
    /// No headers, or no first body chunk, within the limit.
    Timeout,
    /// A 5xx status: the old stack's own failure.
    Status(u16),
    /// Headers, then a body that failed before its first chunk.
    BrokenBody,
}

impl FailoverReason {
    /// How the report and the logs name it (`status 503`).
    #[must_use]
    pub fn label(self) -> String {
        match self {
            Self::Unreachable => "unreachable".to_owned(),
            Self::Timeout => "timeout".to_owned(),
            Self::Status(status) => format!("status {status}"),
            Self::BrokenBody => "broken".to_owned(),
        }
    }
}

/// Without a response there is nothing to pass on: always answered here.
#[must_use]
pub fn after_no_response(seen: NoResponse) -> FailoverReason {
    match seen {
        NoResponse::Unreachable => FailoverReason::Unreachable,
        NoResponse::NoHeaders => FailoverReason::Timeout,
    }
}

/// After the response headers. A 5xx fails over at once (its body is never
/// read). Any other status is the old API's answer to this request — a 4xx
/// included, as it says something about the request (its body, its key, the
/// old stack's own limits) that an answer here would hide — once its first
/// chunk has come.
#[must_use]
pub fn after_head(status: u16) -> Step {
    if status >= 500 {
        Step::FailOver(FailoverReason::Status(status))
    } else {
        Step::AwaitFirstChunk
    }
}

/// After the wait for the body's first chunk: the answer has started, or
/// the old endpoint failed before any of it could reach the client.
#[must_use]
pub fn after_first_chunk(seen: FirstChunk) -> Step {
    match seen {
        FirstChunk::Arrived => Step::PassThrough,
        FirstChunk::Failed => Step::FailOver(FailoverReason::BrokenBody),
        FirstChunk::TimedOut => Step::FailOver(FailoverReason::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_before_the_first_byte_fail_over() {
        let label = |step: Step| match step {
            Step::FailOver(reason) => reason.label(),
            other => panic!("{other:?}, expected a failover"),
        };
        assert_eq!(
            after_no_response(NoResponse::Unreachable).label(),
            "unreachable"
        );
        assert_eq!(after_no_response(NoResponse::NoHeaders).label(), "timeout");
        for status in [500, 502, 503, 504, 599] {
            assert_eq!(label(after_head(status)), format!("status {status}"));
        }
        assert_eq!(label(after_first_chunk(FirstChunk::TimedOut)), "timeout");
        assert_eq!(label(after_first_chunk(FirstChunk::Failed)), "broken");
    }

    #[test]
    fn an_answer_that_has_started_passes_through() {
        for status in [200, 204, 301, 400, 401, 404, 429, 499] {
            assert_eq!(
                after_head(status),
                Step::AwaitFirstChunk,
                "{status}: the old API's answer to this request, once its body starts"
            );
        }
        assert_eq!(after_first_chunk(FirstChunk::Arrived), Step::PassThrough);
    }

    #[test]
    fn the_header_and_the_metric_label_say_who_answered() {
        for served in [ServedBy::Legacy, ServedBy::Failover] {
            assert_eq!(ServedBy::from_header(served.header_value()), Some(served));
            assert!(
                served.route_label().starts_with("POST /api/chat ("),
                "{served:?}"
            );
        }
        assert_eq!(ServedBy::from_header("here"), None);
        assert_eq!(
            ServedBy::Failover.route_label(),
            "POST /api/chat (failover)"
        );
        let (min, max) = FIRST_BYTE_TIMEOUT_MS_RANGE;
        assert!((min..=max).contains(&DEFAULT_FIRST_BYTE_TIMEOUT_MS));
    }
}
