//! The one serialization of everything this crate writes: log entries,
//! votes, snapshots, and openraft payloads on the wire (`RaftEncoding`
//! `BINCODE1` in `cluster.proto`).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct CodecError {
    /// What was being encoded or decoded.
    pub what: &'static str,
    /// bincode's error.
    #[source]
    pub source: bincode::Error,
}

/// Encodes `value` with bincode 1 (fixed-width little-endian integers).
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serialize(value).map_err(|source| CodecError { what, source })
}

/// Decodes a value [`encode`] wrote. Input from the network is bounded by
/// the gRPC message limit, and bincode checks lengths against the input,
/// so garbage yields an error, never a panic or a huge allocation.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(bytes.len() as u64 * 4 + 1024)
        .deserialize(bytes)
        .map_err(|source| CodecError { what, source })
}

/// Decodes a value [`encode`] wrote at the start of `bytes`, and says how
/// many octets it took (what follows may be another value).
pub fn decode_prefix<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<(T, usize), CodecError> {
    use bincode::Options;
    let mut reader = bytes;
    let value = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(bytes.len() as u64 * 4 + 1024)
        .deserialize_from(&mut reader)
        .map_err(|source| CodecError { what, source })?;
    Ok((value, bytes.len() - reader.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A length prefix claiming 2^63 octets.
        let mut bytes = vec![0xff; 8];
        bytes.extend_from_slice(b"abc");
        let r: Result<Vec<u8>, _> = decode("test", &bytes);
        assert!(r.is_err());
        let r: Result<String, _> = decode("test", &[1, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert!(r.is_err());
    }

    #[test]
    fn round_trip() {
        let v = (1u64, "x".to_string(), vec![1u8, 2]);
        let bytes = encode("t", &v).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>("t", &bytes).unwrap(), v);
    }
}
