//! Errors of the PROXY protocol v2 envelope.

/// Why a PROXY v2 header could not be parsed or written.
///
/// ```
/// use quicmq_proto::envelope::{parse, EnvelopeError};
///
/// assert_eq!(parse(b"not a proxy header"), Err(EnvelopeError::BadSignature));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The datagram ends before the header it announces.
    #[error("datagram of {actual} octets ends inside a PROXY v2 header of {needed} octets")]
    Truncated {
        /// Octets the header needs (16, or 16 plus its length field).
        needed: usize,
        /// Octets in the datagram.
        actual: usize,
    },
    /// The first 12 octets are not the PROXY v2 signature.
    #[error("no PROXY protocol v2 signature")]
    BadSignature,
    /// The version nibble is not 2.
    #[error("unsupported PROXY protocol version {0}")]
    UnsupportedVersion(u8),
    /// The command nibble is neither LOCAL (0) nor PROXY (1).
    #[error("unsupported PROXY protocol command {0:#x}")]
    UnsupportedCommand(u8),
    /// A PROXY header whose family/transport octet is not AF_INET + DGRAM
    /// (0x12) or AF_INET6 + DGRAM (0x22).
    #[error("unsupported address family and transport {0:#04x} (expected 0x12 or 0x22)")]
    UnsupportedFamily(u8),
    /// The length field leaves no room for the addresses of the family.
    #[error("header length {len} is shorter than the {needed}-octet address block")]
    AddressesTooShort {
        /// The length field.
        len: usize,
        /// Length of the address block of the family (12 or 36).
        needed: usize,
    },
    /// The TLVs after the addresses do not exactly fill the header: one
    /// starting at this offset (from the start of the datagram) runs past
    /// its end.
    #[error("TLV at offset {0} runs past the end of the PROXY v2 header")]
    MalformedTlv(usize),
    /// Source and destination to write are not of the same address family.
    #[error("source and destination addresses are of different families")]
    MixedFamilies,
    /// The output buffer (or the headroom before the payload) is too small.
    #[error("{available} octets of room for a PROXY v2 header of {needed} octets")]
    BufferTooSmall {
        /// Octets the header needs.
        needed: usize,
        /// Octets of room given.
        available: usize,
    },
}
