//! Cuts a body into units that each fit the budget: whole top-level blocks
//! where they fit, else pieces at the next finer level (children, lines,
//! sentences, words, characters). Units tile the body: no byte is skipped.

use std::ops::Range;

use super::blocks::{Contexts, Kind, Outline};
use super::TokenCount;

/// A run of the body that fits the budget on its own.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    /// First byte.
    pub start: usize,
    /// End without trailing whitespace (`== start` for a blank unit).
    pub end: usize,
    /// Counts of `start..end`.
    pub count: TokenCount,
    /// Index of the heading path in force.
    pub path: usize,
    /// Whether the unit opens a top-level heading's section.
    pub heading: bool,
}

/// Units and the heading paths they refer to (`paths[0]` is the empty path).
#[derive(Debug)]
pub(super) struct Units {
    pub units: Vec<Unit>,
    pub paths: Vec<Vec<String>>,
}

/// The level at which an oversized range is cut next.
#[derive(Debug, Clone, Copy)]
enum Level {
    /// Between the children of this node (or its lines, for a leaf).
    Node(usize),
    Lines,
    Sentences,
    Words,
    Chars,
}

/// Cuts `body` into units no larger than `max_tokens` (context lines included).
pub(super) fn units(
    body: &str,
    outline: &Outline,
    contexts: &Contexts,
    max_tokens: usize,
) -> Units {
    let mut splitter = Splitter {
        body,
        outline,
        contexts,
        max_tokens,
        units: Vec::new(),
        path: 0,
        heading_pending: false,
    };
    let mut paths: Vec<Vec<String>> = vec![Vec::new()];
    let mut open: Vec<(u8, String)> = Vec::new();
    let tops = &outline.top;
    if tops.is_empty() {
        splitter.split(0..body.len(), Level::Lines);
    }
    for (i, &id) in tops.iter().enumerate() {
        let start = if i == 0 {
            0
        } else {
            outline.nodes[id].range.start
        };
        let end = tops
            .get(i + 1)
            .map_or(body.len(), |&next| outline.nodes[next].range.start);
        if start >= end {
            continue;
        }
        if let Kind::Heading(level, text) = &outline.nodes[id].kind {
            open.retain(|(l, _)| l < level);
            if !text.is_empty() {
                open.push((*level, text.clone()));
            }
            paths.push(open.iter().map(|(_, t)| t.clone()).collect());
            splitter.path = paths.len() - 1;
            splitter.heading_pending = true;
        }
        splitter.split(start..end, Level::Node(id));
        splitter.heading_pending = false;
    }
    Units {
        units: splitter.units,
        paths,
    }
}

/// The cutting state: what to cut, the budget, and the units so far.
struct Splitter<'a> {
    body: &'a str,
    outline: &'a Outline,
    contexts: &'a Contexts,
    max_tokens: usize,
    units: Vec<Unit>,
    path: usize,
    heading_pending: bool,
}

impl Splitter<'_> {
    /// Emits `range` as one unit if it fits, else cuts it at `level`.
    fn split(&mut self, range: Range<usize>, level: Level) {
        let end = range.start + self.body[range.clone()].trim_end().len();
        let count = TokenCount::of(&self.body[range.start..end]);
        let overhead = self.contexts.overhead(range.start..end);
        if (count + overhead).tokens() <= self.max_tokens {
            self.push(range.start, end, count);
            return;
        }
        match level {
            Level::Node(id) => self.split_node(range, id),
            Level::Lines => {
                let cuts = self.line_starts(range.clone());
                self.split_at(range, &cuts, Level::Sentences);
            }
            Level::Sentences => {
                let cuts = sentence_starts(self.body, range.clone());
                self.split_at(range, &cuts, Level::Words);
            }
            Level::Words => {
                let cuts = word_starts(self.body, range.clone());
                self.split_at(range, &cuts, Level::Chars);
            }
            Level::Chars => self.split_chars(range),
        }
    }

    /// Cuts between the children of a container or table, by lines otherwise.
    fn split_node(&mut self, range: Range<usize>, id: usize) {
        let node = &self.outline.nodes[id];
        if !matches!(node.kind, Kind::Container | Kind::Table) || node.children.is_empty() {
            let cuts = self.line_starts(range.clone());
            self.split_at(range, &cuts, Level::Sentences);
            return;
        }
        // Group children between usable cuts; a group of one child is cut
        // by that child's structure, a larger group (a glued cut) by lines.
        let mut groups: Vec<(usize, Option<usize>)> = Vec::new();
        for (i, &child) in node.children.iter().enumerate() {
            let cut = self.marker_line_start(self.outline.nodes[child].range.start);
            let usable = i > 0
                && cut > groups.last().map_or(range.start, |g| g.0)
                && cut < range.end
                && !self.contexts.is_glued(cut);
            match groups.last_mut() {
                Some(group) if !usable => group.1 = None,
                _ => groups.push((if i == 0 { range.start } else { cut }, Some(child))),
            }
        }
        for (i, &(start, child)) in groups.iter().enumerate() {
            let end = groups.get(i + 1).map_or(range.end, |g| g.0);
            let level = child.map_or(Level::Lines, Level::Node);
            self.split(start..end, level);
        }
    }

    /// Cuts `range` at `cuts` (ascending, inside it) and splits each piece at `next`.
    fn split_at(&mut self, range: Range<usize>, cuts: &[usize], next: Level) {
        let mut start = range.start;
        for &cut in cuts.iter().chain(std::iter::once(&range.end)) {
            if cut > start {
                self.split(start..cut, next);
                start = cut;
            }
        }
    }

    /// Greedy cut at character boundaries: each piece as long as fits, and
    /// at least one character (which always fits: see `Contexts::new`).
    fn split_chars(&mut self, range: Range<usize>) {
        let mut start = range.start;
        while start < range.end {
            let mut count = self.contexts.overhead_bound(start);
            let mut end = start;
            for ch in self.body[start..range.end].chars() {
                let next = count + TokenCount::of_char(ch);
                if next.tokens() > self.max_tokens && end > start {
                    break;
                }
                count = next;
                end += ch.len_utf8();
            }
            let trimmed = start + self.body[start..end].trim_end().len();
            self.push(start, trimmed, TokenCount::of(&self.body[start..trimmed]));
            start = end;
        }
    }

    /// Records a unit; blank units are kept out (they hold nothing to cover).
    fn push(&mut self, start: usize, end: usize, count: TokenCount) {
        if end == start {
            return;
        }
        self.units.push(Unit {
            start,
            end,
            count,
            path: self.path,
            heading: std::mem::take(&mut self.heading_pending),
        });
    }

    /// Starts of the lines inside `range`, except glued ones.
    fn line_starts(&self, range: Range<usize>) -> Vec<usize> {
        self.body[range.clone()]
            .match_indices('\n')
            .map(|(i, _)| range.start + i + 1)
            .filter(|&cut| cut < range.end && !self.contexts.is_glued(cut))
            .collect()
    }

    /// `pos`, or the start of its line when only indentation and quote
    /// markers precede it there (so a piece keeps its `> ` prefix).
    fn marker_line_start(&self, pos: usize) -> usize {
        let line = super::blocks::line_start(self.body, pos);
        if self.body[line..pos]
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'>'))
        {
            line
        } else {
            pos
        }
    }
}

/// Sentence starts inside `range`: the first non-space after `.`, `!`, `?`
/// or `…` (and closing quotes or brackets) followed by whitespace, or after
/// a CJK, Arabic or Devanagari full stop, which needs no space.
pub(super) fn sentence_starts(body: &str, range: Range<usize>) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Plain,
        /// After a terminator that needs a following space.
        Stop,
        /// After such a terminator and a space: the next non-space starts a sentence.
        Space,
        /// After a terminator that needs no space.
        WideStop,
    }
    let is_closer = |c: char| {
        matches!(
            c,
            ')' | ']' | '"' | '\'' | '”' | '’' | '»' | '」' | '』' | '）'
        )
    };
    let text = &body[range.clone()];
    let mut cuts = Vec::new();
    let mut state = State::Plain;
    for (i, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        let starts_sentence = match state {
            State::Space => !space,
            State::WideStop => !space && !is_closer(ch),
            State::Plain | State::Stop => false,
        };
        if starts_sentence {
            cuts.push(range.start + i);
            state = State::Plain;
        }
        state = match (state, ch) {
            (_, '.' | '!' | '?' | '…') => State::Stop,
            (_, '。' | '！' | '？' | '؟' | '।' | '॥') => State::WideStop,
            (State::Stop, c) if is_closer(c) => State::Stop,
            (State::Stop | State::Space, c) if c.is_whitespace() => State::Space,
            (State::WideStop, c) if is_closer(c) || c.is_whitespace() => State::WideStop,
            _ => State::Plain,
        };
    }
    cuts
}

/// Word starts inside `range`: every non-space that follows a space.
pub(super) fn word_starts(body: &str, range: Range<usize>) -> Vec<usize> {
    let text = &body[range.clone()];
    let mut cuts = Vec::new();
    let mut prev_space = false;
    for (i, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        if prev_space && !space && i > 0 {
            cuts.push(range.start + i);
        }
        prev_space = space;
    }
    cuts
}
