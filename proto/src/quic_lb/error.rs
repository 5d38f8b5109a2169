//! Errors of QUIC-LB configuration, encoding and decoding.

/// Why a QUIC-LB configuration, an input to [`LbCodec::encode`] or a
/// connection ID could not be used.
///
/// For a router, every decoding error means "unroutable DCID": fall back
/// to the rendezvous hash (or, for [`QuicLbError::Unroutable`], to what the
/// design says about codepoint `0b111`).
///
/// [`LbCodec::encode`]: super::LbCodec::encode
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicLbError {
    /// The configuration breaks a limit of the draft (config ID, lengths).
    #[error("invalid QUIC-LB configuration: {0}")]
    BadConfig(&'static str),
    /// The first octet carries the reserved config rotation codepoint
    /// `0b111`: the CID was issued by a server with no configuration.
    #[error("unroutable connection ID (config rotation bits 0b111)")]
    Unroutable,
    /// The first octet names a configuration other than this codec's.
    #[error("connection ID uses config ID {found}, this codec decodes config ID {expected}")]
    UnknownConfig {
        /// Config rotation bits of the connection ID.
        found: u8,
        /// Config ID of the codec.
        expected: u8,
    },
    /// The connection ID is not as long as the configuration says.
    #[error("connection ID is {actual} octets long, the configuration needs {expected}")]
    CidLength {
        /// `1 + server ID length + nonce length`.
        expected: usize,
        /// Length of the connection ID given.
        actual: usize,
    },
    /// The length self-description in the low 5 bits of the first octet
    /// disagrees with the configuration.
    #[error(
        "first octet encodes a length of {encoded} octets, the configuration needs {expected}"
    )]
    EncodedLength {
        /// `1 + server ID length + nonce length`.
        expected: usize,
        /// Low 5 bits of the first octet, plus one.
        encoded: usize,
    },
    /// A server ID to encode is not as long as the configuration says, or
    /// is not 1 to 15 octets long.
    #[error("server ID is {actual} octets long, expected {expected}")]
    ServerIdLength {
        /// Server ID length of the configuration (or 15, the maximum).
        expected: usize,
        /// Length of the server ID given.
        actual: usize,
    },
    /// A nonce to encode is not as long as the configuration says.
    #[error("nonce is {actual} octets long, the configuration needs {expected}")]
    NonceLength {
        /// Nonce length of the configuration.
        expected: usize,
        /// Length of the nonce given.
        actual: usize,
    },
    /// The AES implementation refused a block operation. It does not for
    /// 16-octet blocks and a 16-octet key; the variant exists so that the
    /// codec never has to panic.
    #[error("AES-128-ECB operation failed")]
    Crypto,
}
