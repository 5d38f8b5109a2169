//! Hex text of server IDs and keys, as configuration files, flags and key
//! files write them (`0001`, 32 or 64 hex digits).

use std::fmt::Write;

/// Text that is not the hex expected; says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not {expected}")]
pub struct HexError {
    text: String,
    expected: String,
}

/// Decode a non-empty, even number of hex digits (surrounding white space
/// ignored).
///
/// ```
/// assert_eq!(quicmq_proto::hex::decode(" 00ff ").unwrap(), vec![0, 255]);
/// assert!(quicmq_proto::hex::decode("0g").is_err());
/// ```
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text.trim();
    let bad = || HexError {
        text: digits.to_string(),
        expected: "an even number of hex digits".into(),
    };
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Decode exactly `N` octets (`2 * N` hex digits).
///
/// ```
/// let key: [u8; 2] = quicmq_proto::hex::decode_array("abcd").unwrap();
/// assert_eq!(key, [0xab, 0xcd]);
/// assert_eq!(
///     quicmq_proto::hex::decode_array::<2>("ab").unwrap_err().to_string(),
///     "`ab` is not 4 hex digits"
/// );
/// ```
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let wrong = || HexError {
        text: text.trim().to_string(),
        expected: format!("{} hex digits", 2 * N),
    };
    decode(text)
        .map_err(|_| wrong())?
        .try_into()
        .map_err(|_| wrong())
}

/// Lower-case hex of `bytes`.
///
/// ```
/// assert_eq!(quicmq_proto::hex::encode(&[0, 1, 0xfe]), "0001fe");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn odd_empty_and_non_hex_are_refused() {
        for text in ["", "0", "abc", "zz", "0x01", "é1"] {
            assert!(decode(text).is_err(), "{text:?}");
        }
        assert_eq!(decode("ABcd").unwrap(), vec![0xab, 0xcd]);
        assert!(decode_array::<1>("0001").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..40)) {
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = decode(&text);
            let _ = decode_array::<16>(&text);
        }
    }
}
