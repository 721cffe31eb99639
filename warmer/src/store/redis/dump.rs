//! What identifies a Redis `DUMP` payload when its bytes cannot: a hash or a set kept as a hash
//! table dumps its members in the server's hash order, which differs between the server that
//! dumped it and the one it was restored into. The read-back check and `warmer undo` compare
//! such values by their type and member count, and every other payload by its bytes.

use std::borrow::Cow;

/// For a `DUMP` payload of a hash or set kept as a hash table (RDB types 4 and 2), whose bytes
/// depend on the server's hash order: its type and member count. `None` for other payloads.
///
/// Hand-read rather than through an RDB crate: only the first byte and the RDB length that
/// follows it are needed (Redis's `rdbLoadLen`: 6-bit, 14-bit, 32-bit or 64-bit).
pub(crate) fn hash_ordered(payload: &[u8]) -> Option<(u8, u64)> {
    let (&kind, rest) = payload.split_first()?;
    if kind != 2 && kind != 4 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let length = match first >> 6 {
        0 => u64::from(first & 0x3f),
        1 => (u64::from(first & 0x3f) << 8) | u64::from(*rest.first()?),
        _ if first == 0x80 => u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
        _ if first == 0x81 => u64::from_be_bytes(rest.get(..8)?.try_into().ok()?),
        _ => return None,
    };
    Some((kind, length))
}

/// The bytes a value of `encoding` is compared and hashed by: a hash-ordered `DUMP` payload's
/// type and member count ([`hash_ordered`], behind a marker byte no RDB type uses), any other
/// value's own bytes.
pub(crate) fn comparable(payload: &[u8]) -> Cow<'_, [u8]> {
    match hash_ordered(payload) {
        Some((kind, length)) => {
            let mut bytes = vec![0xff, kind];
            bytes.extend_from_slice(&length.to_be_bytes());
            Cow::Owned(bytes)
        }
        None => Cow::Borrowed(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RDB type and the length that follows it, in each of the length encodings.
    #[test]
    fn hash_ordered_dumps_compare_by_type_and_count() {
        assert_eq!(hash_ordered(&[4, 0x42, 0x10, 1]), Some((4, 0x210)));
        assert_eq!(hash_ordered(&[2, 5, 1, 2]), Some((2, 5)));
        assert_eq!(hash_ordered(&[16, 5]), None);
    }

    /// Two dumps of one hash in different orders compare equal; a string's bytes stay its own.
    #[test]
    fn hash_tables_compare_by_type_and_count() {
        assert_eq!(comparable(&[4, 3, 9, 8, 7]), comparable(&[4, 3, 7, 8, 9]));
        assert_ne!(comparable(&[4, 3, 9]), comparable(&[4, 4, 9]));
        assert_eq!(comparable(&[0, 3, 9]).as_ref(), &[0, 3, 9]);
    }
}
