//! Keyset paging, written once: read one row more than the page, keep the
//! page, and hand out the last row's cursor only when that extra row existed.
//!
//! Never reads anything itself; the caller's store reads `fetch_size` rows.

/// How many rows to read for a page of `limit`: one more, to learn whether
/// another page follows without counting.
#[must_use]
pub fn fetch_size(limit: u32) -> u32 {
    limit.saturating_add(1)
}

/// A page cut from rows read with [`fetch_size`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// At most `limit` rows, in the order read.
    pub rows: Vec<T>,
    /// The cursor of the next page (`cursor_of` the last row), `None` on the last page.
    pub cursor: Option<String>,
}

/// Cuts `rows` (read with [`fetch_size`]`(limit)`) to `limit`; the cursor is
/// `cursor_of` the last row kept when a row was left over.
#[must_use]
pub fn cut_page<T>(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let cursor = if more {
        rows.last().map(cursor_of)
    } else {
        None
    };
    Page { rows, cursor }
}

/// A `cursor` that is not one this service handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`cursor` must be the `cursor` of a previous page")]
pub struct BadCursor;

impl BadCursor {
    /// Stable error code for the `{ "error": { "code" } }` body.
    pub const CODE: &'static str = "bad_cursor";
}

/// An id cursor of a newest-first listing: absent or empty is 0, the start.
pub fn id_cursor(cursor: Option<&str>) -> Result<u64, BadCursor> {
    match cursor {
        None | Some("") => Ok(0),
        Some(text) => text.parse::<u64>().map_err(|_| BadCursor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_only_when_a_row_was_left_over() {
        assert_eq!(fetch_size(2), 3);
        assert_eq!(fetch_size(u32::MAX), u32::MAX);
        let full = cut_page(vec![1, 2, 3], 2, ToString::to_string);
        assert_eq!(full.rows, vec![1, 2]);
        assert_eq!(full.cursor.as_deref(), Some("2"));
        let last = cut_page(vec![1, 2], 2, ToString::to_string);
        assert_eq!(last.rows, vec![1, 2]);
        assert_eq!(last.cursor, None);
        let empty = cut_page(Vec::<u8>::new(), 2, ToString::to_string);
        assert!(empty.rows.is_empty() && empty.cursor.is_none());
    }

    #[test]
    fn id_cursors_are_whole_numbers_or_the_start() {
        assert_eq!(id_cursor(None), Ok(0));
        assert_eq!(id_cursor(Some("")), Ok(0));
        assert_eq!(id_cursor(Some("17")), Ok(17));
        assert_eq!(id_cursor(Some("x")), Err(BadCursor));
        assert_eq!(id_cursor(Some("-1")), Err(BadCursor));
    }
}
