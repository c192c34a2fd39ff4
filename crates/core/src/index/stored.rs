//! The stored format of the D1-exact index: vectors as little-endian f32
//! BLOBs (and their hex form, as D1 returns BLOBs to SQL functions).

use super::*;

/// Encodes a vector as little-endian f32 bytes (the `vector_index.embedding` BLOB).
#[must_use]
pub fn encode_f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes a `vector_index.embedding` BLOB of `dimensions` little-endian f32 values.
///
/// # Errors
/// `CorruptStoredVector` when the length is not `dimensions × 4`.
pub fn decode_f32_le(
    id: &str,
    bytes: &[u8],
    dimensions: usize,
) -> Result<Vec<f32>, VectorIndexError> {
    if bytes.len() != dimensions * 4 {
        return Err(VectorIndexError::CorruptStoredVector {
            id: id.to_owned(),
            bytes: bytes.len(),
            expected_bytes: dimensions * 4,
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Decodes the same BLOB read as SQLite `hex(embedding)` (uppercase or lowercase hex).
/// The D1 index reads vectors this way: a hex string crosses from D1 into the Worker far
/// faster than a BLOB, which D1 hands over as an array of numbers (one JS number per byte).
///
/// # Errors
/// `CorruptStoredVector` when the text is not `dimensions × 8` hex digits.
pub fn decode_f32_le_hex(
    id: &str,
    hex: &str,
    dimensions: usize,
) -> Result<Vec<f32>, VectorIndexError> {
    let corrupt = || VectorIndexError::CorruptStoredVector {
        id: id.to_owned(),
        bytes: hex.len() / 2,
        expected_bytes: dimensions * 4,
    };
    if hex.len() != dimensions * 8 {
        return Err(corrupt());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut values = Vec::with_capacity(dimensions);
    for word in hex.as_bytes().chunks_exact(8) {
        let mut bytes = [0u8; 4];
        for (byte, pair) in bytes.iter_mut().zip(word.chunks_exact(2)) {
            *byte = (nibble(pair[0]).ok_or_else(corrupt)? << 4)
                | nibble(pair[1]).ok_or_else(corrupt)?;
        }
        values.push(f32::from_le_bytes(bytes));
    }
    Ok(values)
}
