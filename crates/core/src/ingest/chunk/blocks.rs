//! The block outline of a markdown body (pulldown-cmark events folded into a
//! tree of block ranges) and the context lines a piece of a split block must
//! repeat: a code block's opening fence, a table's header rows.

use std::ops::Range;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use super::TokenCount;
use crate::document::markdown::{parser_options, HeadingText};

/// Deepest block nesting the outline keeps as separate nodes: a block opened
/// deeper (a 33rd nested quote, a list nested 16 levels inside a quote) is
/// part of its level-32 ancestor, which is then cut by lines like a leaf, so
/// `>>>>…> text` with 50,000 markers is still chunked, as text.
///
/// Why a bound: the splitter recurses twice per level and measures the whole
/// block at every level, so an unbounded depth overflowed the Worker's stack
/// (V8's limit, under 1 MiB, shared by the wasm and JS frames: issue 26) and
/// made cutting quadratic. pulldown-cmark itself builds its tree without
/// recursion and parses such input fine. 32 is deeper than any document the
/// service serves is structured, and keeps the recursion to a few KiB.
pub(super) const MAX_OUTLINE_DEPTH: usize = 32;

/// What a block is, as far as cutting goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A top-level heading: its level (1–6) and flattened text.
    Heading(u8, String),
    /// A block holding blocks (list, item, quote, footnote): cut between children.
    Container,
    /// A table: cut between rows.
    Table,
    /// Anything else (paragraph, code, HTML, rule, nested heading): cut by lines.
    Leaf,
    /// A fenced code block (a leaf whose pieces re-open the fence).
    FencedCode,
}

/// One block: its byte range in the body and, for containers, its children.
#[derive(Debug)]
pub(super) struct Node {
    pub range: Range<usize>,
    pub kind: Kind,
    pub children: Vec<usize>,
}

/// The body's blocks: an arena and the top-level ids in order.
#[derive(Debug, Default)]
pub(super) struct Outline {
    pub nodes: Vec<Node>,
    pub top: Vec<usize>,
}

/// Folds the parser's events into the block tree. Inline events are skipped,
/// except the text of top-level headings.
pub(super) fn outline(body: &str) -> Outline {
    let mut outline = Outline::default();
    // One entry per open tag: the node it created, if any.
    let mut stack: Vec<Option<usize>> = Vec::new();
    let mut heading: Option<(usize, HeadingText)> = None;
    for (event, range) in Parser::new_ext(body, parser_options()).into_offset_iter() {
        match event {
            Event::Start(tag) => {
                let created = if accepts_blocks(&outline, &stack) {
                    block_kind(&tag, stack.is_empty()).map(|kind| {
                        if let Kind::Heading(..) = kind {
                            heading = Some((outline.nodes.len(), HeadingText::default()));
                        }
                        add_node(&mut outline, &stack, range, kind)
                    })
                } else {
                    None
                };
                stack.push(created);
            }
            Event::End(TagEnd::Heading(_)) => {
                if let (Some(Some(id)), Some((heading_id, text))) = (stack.pop(), heading.take()) {
                    if id == heading_id {
                        if let Kind::Heading(_, slot) = &mut outline.nodes[id].kind {
                            *slot = text.finish();
                        }
                    }
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Rule => {
                if accepts_blocks(&outline, &stack) {
                    add_node(&mut outline, &stack, range, Kind::Leaf);
                }
            }
            inline => {
                if let Some((_, text)) = &mut heading {
                    text.push(&inline);
                }
            }
        }
    }
    outline
}

/// Whether a block opened now becomes a node: at the top level or directly
/// inside a container or table, never inside a leaf, and never deeper than
/// [`MAX_OUTLINE_DEPTH`] (every open tag on `stack` is then a node, so its
/// length is the new block's depth).
fn accepts_blocks(outline: &Outline, stack: &[Option<usize>]) -> bool {
    if stack.len() >= MAX_OUTLINE_DEPTH {
        return false;
    }
    match stack.last() {
        None => true,
        Some(None) => false,
        Some(Some(id)) => matches!(outline.nodes[*id].kind, Kind::Container | Kind::Table),
    }
}

/// The kind of node a tag makes, `None` for inline tags.
fn block_kind(tag: &Tag<'_>, top_level: bool) -> Option<Kind> {
    let kind = match tag {
        Tag::Heading { level, .. } if top_level => Kind::Heading(*level as u8, String::new()),
        Tag::List(_)
        | Tag::Item
        | Tag::BlockQuote(_)
        | Tag::FootnoteDefinition(_)
        | Tag::DefinitionList
        | Tag::DefinitionListDefinition => Kind::Container,
        Tag::Table(_) => Kind::Table,
        Tag::CodeBlock(pulldown_cmark::CodeBlockKind::Fenced(_)) => Kind::FencedCode,
        Tag::Paragraph
        | Tag::Heading { .. }
        | Tag::CodeBlock(_)
        | Tag::HtmlBlock
        | Tag::DefinitionListTitle
        | Tag::TableHead
        | Tag::TableRow
        | Tag::MetadataBlock(_) => Kind::Leaf,
        _ => return None,
    };
    Some(kind)
}

/// Adds a node under the innermost open node (or at the top) and returns its id.
fn add_node(
    outline: &mut Outline,
    stack: &[Option<usize>],
    range: Range<usize>,
    kind: Kind,
) -> usize {
    let id = outline.nodes.len();
    outline.nodes.push(Node {
        range,
        kind,
        children: Vec::new(),
    });
    match stack.last() {
        Some(Some(parent)) => outline.nodes[*parent].children.push(id),
        _ => outline.top.push(id),
    }
    id
}

/// Lines a piece of a split block repeats so it still renders as that block.
#[derive(Debug)]
struct Context {
    /// Where a chunk may start or end inside the block (after the opening
    /// fence or header rows; before the closing fence).
    content: Range<usize>,
    /// Body range repeated before a piece that starts inside `content`.
    prefix: Range<usize>,
    /// Written after a piece that ends inside `content` (a closing fence).
    suffix: String,
    /// Counts of prefix plus suffix.
    cost: TokenCount,
}

/// Every fenced code block and table whose context lines fit half the budget
/// (larger ones are split without them: the budget wins), in body order.
#[derive(Debug)]
pub(super) struct Contexts(Vec<Context>);

impl Contexts {
    /// Finds the contexts of `outline` that fit in half of `max_tokens`.
    pub(super) fn new(body: &str, outline: &Outline, max_tokens: usize) -> Self {
        let mut contexts: Vec<Context> = outline
            .nodes
            .iter()
            .filter_map(|node| match node.kind {
                Kind::FencedCode => fence_context(body, node.range.clone()),
                Kind::Table => {
                    let first_row = outline.nodes.get(*node.children.get(1)?)?;
                    table_context(body, node.range.clone(), first_row.range.start)
                }
                _ => None,
            })
            .filter(|c| c.cost.tokens() <= max_tokens / 2)
            .collect();
        contexts.sort_by_key(|c| c.content.start);
        Self(contexts)
    }

    /// The context whose content holds position `pos` (as a chunk start).
    fn around(&self, pos: usize) -> Option<&Context> {
        let after = self.0.partition_point(|c| c.content.start <= pos);
        let context = self.0.get(after.checked_sub(1)?)?;
        (pos < context.content.end).then_some(context)
    }

    /// The context with a suffix whose content holds `end` (as a chunk end).
    fn closing(&self, end: usize) -> Option<&Context> {
        let after = self.0.partition_point(|c| c.content.start < end);
        let context = self.0.get(after.checked_sub(1)?)?;
        (end < context.content.end && !context.suffix.is_empty()).then_some(context)
    }

    /// The lines written before and after `body[range]` when it is a chunk.
    pub(super) fn wrap<'s>(&'s self, body: &'s str, range: Range<usize>) -> (&'s str, &'s str) {
        let prefix = self
            .around(range.start)
            .map_or("", |c| &body[c.prefix.clone()]);
        let suffix = self.closing(range.end).map_or("", |c| c.suffix.as_str());
        (prefix, suffix)
    }

    /// Counts of what [`Self::wrap`] adds to `range`.
    pub(super) fn overhead(&self, range: Range<usize>) -> TokenCount {
        let prefix = self.around(range.start).map(prefix_cost);
        let suffix = self.closing(range.end).map(|c| c.cost - prefix_cost(c));
        prefix.unwrap_or_default() + suffix.unwrap_or_default()
    }

    /// An upper bound of [`Self::overhead`] for any piece starting at `pos`
    /// and ending before the next line.
    pub(super) fn overhead_bound(&self, pos: usize) -> TokenCount {
        self.around(pos).map(|c| c.cost).unwrap_or_default()
    }

    /// Whether `pos` is inside a split-able code block's or table's content.
    pub(super) fn is_inside(&self, pos: usize) -> bool {
        self.around(pos).is_some()
    }

    /// Whether `pos` must not start a piece: the line after an opening fence
    /// or header rows, or a closing fence (each stays with its neighbour).
    pub(super) fn is_glued(&self, pos: usize) -> bool {
        let after = self.0.partition_point(|c| c.content.start < pos);
        let at_start = self.0.get(after).is_some_and(|c| c.content.start == pos);
        let at_closer = after
            .checked_sub(1)
            .and_then(|i| self.0.get(i))
            .is_some_and(|c| !c.suffix.is_empty() && c.content.end == pos);
        at_start || at_closer
    }
}

/// Counts of a context's prefix alone.
fn prefix_cost(context: &Context) -> TokenCount {
    context.cost - TokenCount::of(&context.suffix)
}

/// The opening-fence context of a fenced code block at `range`.
fn fence_context(body: &str, range: Range<usize>) -> Option<Context> {
    let opener_start = line_start(body, range.start);
    let opener_end = opener_start + body[opener_start..].find('\n')? + 1;
    let opener = &body[opener_start..opener_end];
    let fence_at = opener.find(['`', '~'])?;
    let fence_char = opener[fence_at..].chars().next()?;
    let fence_len = opener[fence_at..]
        .bytes()
        .take_while(|&b| char::from(b) == fence_char)
        .count();
    let fence = &opener[fence_at..fence_at + fence_len];
    let end = range.start + body[range.clone()].trim_end().len();
    if end <= opener_end {
        return None;
    }
    let last_line = line_start(body, end);
    let last = body[last_line..end].trim_start_matches([' ', '\t', '>']);
    let closed = last_line >= opener_end
        && last.len() >= fence_len
        && last.bytes().all(|b| char::from(b) == fence_char);
    let content_end = if closed { last_line } else { end };
    if content_end <= opener_end {
        return None;
    }
    let newline = if opener.ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let indent: String = opener[..fence_at]
        .chars()
        .map(|c| {
            if matches!(c, ' ' | '\t' | '>') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let suffix = format!("{newline}{indent}{fence}");
    Some(Context {
        cost: TokenCount::of(opener) + TokenCount::of(&suffix),
        content: opener_end..content_end,
        prefix: opener_start..opener_end,
        suffix,
    })
}

/// The header-rows context of a table at `range` whose first body row starts at `first_row`.
fn table_context(body: &str, range: Range<usize>, first_row: usize) -> Option<Context> {
    let header_start = line_start(body, range.start);
    let content_start = line_start(body, first_row);
    let end = range.start + body[range].trim_end().len();
    if content_start <= header_start || end <= content_start {
        return None;
    }
    Some(Context {
        cost: TokenCount::of(&body[header_start..content_start]),
        content: content_start..end,
        prefix: header_start..content_start,
        suffix: String::new(),
    })
}

/// Start of the line holding `pos`.
pub(super) fn line_start(body: &str, pos: usize) -> usize {
    body[..pos].rfind('\n').map_or(0, |i| i + 1)
}
