//! The markdown the service reads: its dialect (CommonMark plus the GitHub
//! extensions documents use) and the visible text of a heading. Parsing
//! uses it for a document's title fallback; ingest's chunker reads the same
//! dialect, so a heading is the same heading to both.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The markdown dialect: CommonMark plus the GitHub extensions documents use.
pub(crate) fn parser_options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
}

/// Text of the first top-level heading with any text, for the title fallback.
pub(crate) fn first_heading_text(body: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut heading: Option<HeadingText> = None;
    for event in Parser::new_ext(body, parser_options()) {
        match event {
            Event::Start(tag) => {
                if depth == 0 && matches!(tag, Tag::Heading { .. }) {
                    heading = Some(HeadingText::default());
                }
                depth += 1;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if depth == 0 && matches!(end, TagEnd::Heading(_)) {
                    if let Some(text) = heading.take().map(HeadingText::finish) {
                        if !text.is_empty() {
                            return Some(text);
                        }
                    }
                }
            }
            inline => {
                if let Some(text) = &mut heading {
                    text.push(&inline);
                }
            }
        }
    }
    None
}

/// Collects a heading's visible text: markup dropped, whitespace collapsed.
#[derive(Debug, Default)]
pub(crate) struct HeadingText(String);

impl HeadingText {
    pub(crate) fn push(&mut self, event: &Event<'_>) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) => self.0.push_str(t),
            Event::SoftBreak | Event::HardBreak => self.0.push(' '),
            _ => {}
        }
    }

    pub(crate) fn finish(self) -> String {
        self.0.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}
