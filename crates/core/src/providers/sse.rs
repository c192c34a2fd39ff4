//! A push-style Server-Sent Events parser: feed it byte chunks split anywhere (inside UTF-8
//! characters, between `\r` and `\n`) and it yields complete events.
//!
//! Owns the `text/event-stream` framing (WHATWG HTML, "Server-sent events", §9.2.6); must
//! never interpret event payloads (that is each provider's job).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when set.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, when set.
    pub id: Option<String>,
}

/// Incremental parser state; feed it with [`SseParser::push`], end with [`SseParser::finish`].
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// A parser at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            // A `\r\n` split across chunks is one line end, not two.
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.process_line(&line) {
                        events.push(event);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    /// Ends the stream; per the spec an event without its closing blank line is discarded,
    /// but a final line without a line end is still processed.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        let event = if line.is_empty() {
            None
        } else {
            self.process_line(&line)
        };
        self.reset_event();
        event
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.has_data = false;
        self.event = None;
    }

    fn process_line(&mut self, raw: &[u8]) -> Option<SseEvent> {
        let mut line = raw;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        if line.is_empty() {
            if !self.has_data {
                self.reset_event();
                return None;
            }
            let event = SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
                id: self.id.clone(),
            };
            self.reset_event();
            return Some(event);
        }
        // Whole lines are decoded, so a UTF-8 character split across chunks arrives intact.
        let text = String::from_utf8_lossy(line);
        if text.starts_with(':') {
            return None;
        }
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STREAM: &str =
        "\u{FEFF}: keep-alive\r\n\r\nevent: delta\r\ndata: héllo\r\ndata: wörld 🦀\r\n\r\n\
                          id: 7\ndata:{\"x\":1}\n\n\rdata: [DONE]\r\r";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: Some("delta".into()),
                data: "héllo\nwörld 🦀".into(),
                id: None,
            },
            SseEvent {
                event: None,
                data: "{\"x\":1}".into(),
                id: Some("7".into()),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
                id: Some("7".into()),
            },
        ]
    }

    #[test]
    fn parses_a_whole_stream() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(STREAM.as_bytes()), expected());
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_events() {
        let mut parser = SseParser::new();
        let events: Vec<SseEvent> = STREAM
            .as_bytes()
            .iter()
            .flat_map(|b| parser.push(&[*b]))
            .collect();
        assert_eq!(events, expected());
    }

    #[test]
    fn unterminated_event_is_discarded_at_end() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: partial").is_empty());
        assert_eq!(parser.finish(), None);
        assert!(
            parser.push(b"data: next\n\n").len() == 1,
            "parser is reusable after finish"
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..12)) {
            let bytes = STREAM.as_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                events.extend(parser.push(&bytes[start..cut]));
                start = cut;
            }
            prop_assert_eq!(events, expected());
        }
    }
}
