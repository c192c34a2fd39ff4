//! Packs units into chunks: greedily within the budget, a new chunk per
//! top-level section, and overlap taken from the previous chunk's end.

use std::ops::Range;

use super::blocks::Contexts;
use super::split::{sentence_starts, word_starts, Unit, Units};
use super::{build_chunk, Chunk, ChunkConfig, TokenCount};

/// The body being chunked and where it sits in its source.
#[derive(Debug)]
pub(super) struct Source<'a> {
    /// The markdown after any front matter.
    pub body: &'a str,
    /// Byte offset of `body` in the source.
    pub offset: usize,
    /// 1-based source line on which `body` starts.
    pub first_line: usize,
}

/// The chunk being filled.
#[derive(Debug)]
struct Open {
    /// First byte (overlap included).
    start: usize,
    /// End of the last unit, without trailing whitespace.
    end: usize,
    /// Counts of `start..end`.
    count: TokenCount,
    /// Common prefix of the heading paths of the chunk's own units.
    path: Vec<String>,
    /// Whether every unit so far opened a section (a run of headings is not
    /// worth a chunk of its own).
    only_headings: bool,
}

/// Packs `units` into chunks (see the module docs of [`super`]).
pub(super) fn pack(
    source: &Source<'_>,
    units: &Units,
    contexts: &Contexts,
    config: &ChunkConfig,
) -> Vec<Chunk> {
    let packer = Packer {
        body: source.body,
        contexts,
        config,
    };
    let lines = LineIndex::new(source.body, source.first_line);
    let list = &units.units;
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut previous: Option<Range<usize>> = None;
    let mut open: Option<Open> = None;
    let mut section_start = 0;
    let finish = |open: Open, chunks: &mut Vec<Chunk>| {
        let range = open.start..open.end;
        let index = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let span = (lines.line_of(range.start), lines.line_of(range.end - 1));
        chunks.push(build_chunk(
            source,
            contexts,
            index,
            range.clone(),
            open.path,
            span,
        ));
        range
    };
    for (i, unit) in list.iter().enumerate() {
        if unit.heading {
            // Overlap never reaches back across a heading, merged or not.
            section_start = unit.start;
        }
        if let Some(current) = open.as_mut() {
            if packer.extends(current, unit, list.get(i + 1)) {
                let path = &units.paths[unit.path];
                let common = current
                    .path
                    .iter()
                    .zip(path)
                    .take_while(|(a, b)| a == b)
                    .count();
                if current.only_headings && common == current.path.len() {
                    // `## Projects` then `### Search`: the chunk is about Search.
                    current.path.clone_from(path);
                } else {
                    current.path.truncate(common);
                }
                current.count = current.count + packer.count(current.end..unit.start) + unit.count;
                current.end = unit.end;
                current.only_headings &= unit.heading;
                continue;
            }
        }
        if let Some(done) = open.take() {
            previous = Some(finish(done, &mut chunks));
        }
        let start = match &previous {
            Some(prev) if !unit.heading && config.overlap_tokens() > 0 => {
                packer.overlap_start(prev.clone(), unit, section_start)
            }
            _ => None,
        }
        .unwrap_or_else(|| packer.skip_blank_lines(unit.start, unit.end));
        open = Some(Open {
            start,
            end: unit.end,
            count: packer.count(start..unit.end),
            path: units.paths[unit.path].clone(),
            only_headings: unit.heading,
        });
    }
    if let Some(done) = open.take() {
        finish(done, &mut chunks);
    }
    chunks
}

/// The packing rules.
struct Packer<'a> {
    body: &'a str,
    contexts: &'a Contexts,
    config: &'a ChunkConfig,
}

impl Packer<'_> {
    /// Counts of a body range.
    fn count(&self, range: Range<usize>) -> TokenCount {
        TokenCount::of(&self.body[range])
    }

    /// Tokens of `body[range]` as a chunk (context lines included), given its counts.
    fn cost(&self, range: Range<usize>, count: TokenCount) -> usize {
        (count + self.contexts.overhead(range)).tokens()
    }

    /// Whether `unit` joins the open chunk: it fits, it doesn't open a
    /// section of a chunk that has content and is big enough already, and a
    /// heading joining it brings the unit after it along.
    fn extends(&self, open: &Open, unit: &Unit, next: Option<&Unit>) -> bool {
        if unit.heading
            && !open.only_headings
            && self.cost(open.start..open.end, open.count) >= self.config.min_tokens()
        {
            return false;
        }
        let count = open.count + self.count(open.end..unit.start) + unit.count;
        if self.cost(open.start..unit.end, count) > self.config.max_tokens() {
            return false;
        }
        match next {
            Some(next) if unit.heading && !next.heading => {
                let count = count + self.count(unit.end..next.start) + next.count;
                self.cost(open.start..next.end, count) <= self.config.max_tokens()
            }
            _ => true,
        }
    }

    /// Where the chunk starting with `unit` begins when it repeats the end
    /// of the previous chunk `prev`: the earliest line or sentence start
    /// (else word start, outside code and tables) after `floor` within the overlap budget that keeps
    /// the chunk within the budget. `None` when there is none.
    fn overlap_start(&self, prev: Range<usize>, unit: &Unit, floor: usize) -> Option<usize> {
        // Strictly after the previous start, so chunk starts keep increasing.
        let first_char = self.body[prev.start..]
            .chars()
            .next()
            .map_or(1, char::len_utf8);
        let low = floor.max(prev.start + first_char);
        if low >= prev.end {
            return None;
        }
        let mut window = prev.end;
        let mut overlap = TokenCount::default();
        for (i, ch) in self.body[low..prev.end].char_indices().rev() {
            let count = overlap + TokenCount::of_char(ch);
            if count.tokens() > self.config.overlap_tokens() {
                break;
            }
            overlap = count;
            window = low + i;
        }
        if window >= prev.end {
            return None;
        }
        // Look a little before the window so a sentence end just before it counts.
        let mut look_back = window.saturating_sub(16).max(low);
        while !self.body.is_char_boundary(look_back) {
            look_back += 1;
        }
        let lines = self.body[window..prev.end]
            .match_indices('\n')
            .map(|(i, _)| window + i + 1)
            .filter(|&p| p < prev.end && !self.is_blank_line(p));
        let mut preferred: Vec<usize> = sentence_starts(self.body, look_back..prev.end)
            .into_iter()
            .filter(|&p| p >= window)
            .chain(lines)
            .chain((window > 0 && self.body[..window].ends_with('\n')).then_some(window))
            .collect();
        preferred.sort_unstable();
        preferred.dedup();
        // A word start inside code or a table row would break what renders.
        let words: Vec<usize> = word_starts(self.body, look_back..prev.end)
            .into_iter()
            .filter(|&p| p >= window && !self.contexts.is_inside(p))
            .collect();
        let tail = self.count(prev.end..unit.start) + unit.count;
        let fits = |p: usize| {
            !self.contexts.is_glued(p)
                && self.cost(p..unit.end, self.count(p..prev.end) + tail)
                    <= self.config.max_tokens()
        };
        preferred
            .into_iter()
            .find(|&p| fits(p))
            .or_else(|| words.into_iter().find(|&p| fits(p)))
    }

    /// Whether the line starting at `pos` holds only whitespace.
    fn is_blank_line(&self, pos: usize) -> bool {
        let rest = &self.body[pos..];
        rest[..rest.find('\n').unwrap_or(rest.len())]
            .trim()
            .is_empty()
    }

    /// `start`, moved past whole blank lines (never past `end`).
    fn skip_blank_lines(&self, mut start: usize, end: usize) -> usize {
        while let Some(newline) = self.body[start..end].find('\n') {
            if !self.body[start..start + newline].trim().is_empty() {
                break;
            }
            start += newline + 1;
        }
        start
    }
}

/// Maps body offsets to 1-based source lines (a line ends at `\n`; a `\r`
/// before it belongs to the line ending).
#[derive(Debug)]
struct LineIndex {
    starts: Vec<usize>,
    first_line: usize,
}

impl LineIndex {
    fn new(body: &str, first_line: usize) -> Self {
        let starts = std::iter::once(0)
            .chain(body.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { starts, first_line }
    }

    /// Source line of body offset `pos`.
    fn line_of(&self, pos: usize) -> usize {
        self.first_line + self.starts.partition_point(|&s| s <= pos) - 1
    }
}
