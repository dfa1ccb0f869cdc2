//! The bytes a JSON string cannot hold as they are, found eight at a time.
//!
//! Both directions of the header codec search strings for them: the writer to escape them,
//! the scanner to find where a string ends (a quote), where an escape starts (a backslash),
//! or a control character JSON forbids. Header strings are short and many, so the search is
//! inline word-at-a-time arithmetic rather than a call into a vectorized search.

/// Where the first byte that must be escaped is, eight bytes at a time: a search through a
/// header's bytes finds the quote that closes a string within a word or two.
pub(super) fn find_escaped(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut scanned = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let flags = escape_flags(word);
        if flags != 0 {
            return Some(scanned + (flags.trailing_zeros() / 8) as usize);
        }
        scanned += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&byte| must_escape(byte))
        .map(|offset| scanned + offset)
}

/// Whether a JSON string must escape `byte`: a control character, a quote or a backslash.
fn must_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The high bit of each byte of `word` (bytes in little-endian order) that must be escaped.
///
/// The classic word-at-a-time tests ("has a zero byte", "has a byte below n") may also flag a
/// byte just above a flagged one, through the borrow, but never one below it: the lowest
/// flag is always the first byte to escape.
fn escape_flags(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quotes = zero_bytes(word ^ (ONES * u64::from(b'"')));
    let backslashes = zero_bytes(word ^ (ONES * u64::from(b'\\')));
    (below_space | quotes | backslashes) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The word-at-a-time search finds the first byte to escape as a byte-by-byte one does,
        /// wherever it sits in or across eight-byte words, beside any other bytes, escaped or
        /// not.
        #[test]
        fn the_escape_search_finds_the_first_byte_to_escape(
            plain in proptest::collection::vec(0x20u8..=0xff, 0..40),
            escaped in proptest::collection::vec(
                (
                    proptest::sample::select(vec![0x00u8, 0x01, 0x1f, b'"', b'\\']),
                    proptest::prelude::any::<proptest::sample::Index>(),
                ),
                0..4,
            ),
        ) {
            let mut bytes = plain;
            for (byte, at) in escaped {
                let at = at.index(bytes.len() + 1);
                bytes.insert(at, byte);
            }
            let expected = bytes.iter().position(|&byte| must_escape(byte));
            proptest::prop_assert_eq!(find_escaped(&bytes), expected);
        }
    }
}
