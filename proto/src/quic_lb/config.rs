//! A QUIC-LB configuration: config ID, field lengths and optional key.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{QuicLbError, MAX_PLAINTEXT_LEN, MAX_SERVER_ID_LEN, MIN_NONCE_LEN};

/// The config rotation codepoint of connection IDs that no configuration
/// can decode (draft-ietf-quic-load-balancers-21 §3.2): a server with no
/// configuration issues them, a load balancer treats them as unroutable.
pub const UNROUTABLE_CONFIG_ID: u8 = 0b111;

/// Length of an AES-128 key in octets.
pub const KEY_LEN: usize = 16;

/// The config ID that the first octet of a connection ID names, or `None`
/// for the reserved codepoint `0b111` (unroutable).
///
/// The config ID is the three most significant bits of the first octet.
///
/// ```
/// use quicmq_proto::quic_lb::config_id_of;
///
/// assert_eq!(config_id_of(0x07), Some(0));
/// assert_eq!(config_id_of(0x4f), Some(2));
/// assert_eq!(config_id_of(0xe7), None);
/// ```
pub fn config_id_of(first_octet: u8) -> Option<u8> {
    match first_octet >> 5 {
        UNROUTABLE_CONFIG_ID => None,
        id => Some(id),
    }
}

/// How a configuration turns server ID and nonce into a connection ID.
///
/// ```
/// use quicmq_proto::quic_lb::{Algorithm, LbConfig};
///
/// let plain = LbConfig::new(0, 2, 6, None).unwrap();
/// assert_eq!(plain.algorithm(), Algorithm::Plaintext);
/// let single = LbConfig::new(0, 4, 12, Some([7; 16])).unwrap();
/// assert_eq!(single.algorithm(), Algorithm::SinglePass);
/// let four = LbConfig::new(0, 2, 6, Some([7; 16])).unwrap();
/// assert_eq!(four.algorithm(), Algorithm::FourPass);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// No key: server ID and nonce are in clear.
    Plaintext,
    /// A key, and server ID + nonce are exactly 16 octets: one AES-128-ECB
    /// block.
    SinglePass,
    /// A key, and any other length: the draft's four-round Feistel network
    /// with AES-128-ECB as round function.
    FourPass,
}

/// A validated QUIC-LB configuration (draft-ietf-quic-load-balancers-21
/// §5.2–5.3): config ID 0..=6, a server ID of 1..=15 octets, a nonce of at
/// least 4 octets, both together at most 19 octets (so that the connection
/// ID, with its first octet, fits QUIC v1's 20), and an optional AES-128
/// key.
///
/// Connection IDs of a configuration are always `1 + server_id_len +
/// nonce_len` octets long and self-encode that length in the low 5 bits of
/// the first octet.
///
/// It serializes (serde) as its four fields and is validated again on
/// deserialization. Its `Debug` output does not show the key.
///
/// ```
/// use quicmq_proto::quic_lb::{LbConfig, QuicLbError};
///
/// let config = LbConfig::new(1, 2, 6, Some([0x42; 16]))?;
/// assert_eq!(config.cid_len(), 9);
/// assert!(LbConfig::new(7, 2, 6, None).is_err()); // 0b111 is reserved
/// assert!(LbConfig::new(0, 2, 3, None).is_err()); // nonce too short
/// assert!(LbConfig::new(0, 10, 10, None).is_err()); // CID longer than 20
/// # Ok::<(), QuicLbError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawLbConfig", into = "RawLbConfig")]
pub struct LbConfig {
    config_id: u8,
    server_id_len: u8,
    nonce_len: u8,
    key: Option<[u8; KEY_LEN]>,
}

impl LbConfig {
    /// Validates a configuration.
    ///
    /// Errors are [`QuicLbError::BadConfig`].
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbConfig, QuicLbError};
    ///
    /// assert!(LbConfig::new(6, 15, 4, None).is_ok());
    /// assert_eq!(
    ///     LbConfig::new(0, 0, 8, None),
    ///     Err(QuicLbError::BadConfig("server ID length must be 1 to 15 octets")),
    /// );
    /// ```
    pub fn new(
        config_id: u8,
        server_id_len: usize,
        nonce_len: usize,
        key: Option<[u8; KEY_LEN]>,
    ) -> Result<Self, QuicLbError> {
        if config_id >= UNROUTABLE_CONFIG_ID {
            return Err(QuicLbError::BadConfig(
                "config ID must be 0 to 6 (0b111 is reserved for unroutable CIDs)",
            ));
        }
        if !(1..=MAX_SERVER_ID_LEN).contains(&server_id_len) {
            return Err(QuicLbError::BadConfig(
                "server ID length must be 1 to 15 octets",
            ));
        }
        if nonce_len < MIN_NONCE_LEN {
            return Err(QuicLbError::BadConfig("nonce must be at least 4 octets"));
        }
        if server_id_len + nonce_len > MAX_PLAINTEXT_LEN {
            return Err(QuicLbError::BadConfig(
                "server ID and nonce must sum to 19 octets or less",
            ));
        }
        // The checks above bound both lengths by 19, so they fit a u8.
        Ok(Self {
            config_id,
            server_id_len: server_id_len as u8,
            nonce_len: nonce_len as u8,
            key,
        })
    }

    /// The config rotation codepoint (0..=6) in the top 3 bits of the first
    /// octet.
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::LbConfig;
    /// assert_eq!(LbConfig::new(3, 2, 6, None).unwrap().config_id(), 3);
    /// ```
    pub fn config_id(&self) -> u8 {
        self.config_id
    }

    /// Length of the server ID in octets (1..=15).
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::LbConfig;
    /// assert_eq!(LbConfig::new(3, 2, 6, None).unwrap().server_id_len(), 2);
    /// ```
    pub fn server_id_len(&self) -> usize {
        usize::from(self.server_id_len)
    }

    /// Length of the nonce in octets (4..=18).
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::LbConfig;
    /// assert_eq!(LbConfig::new(3, 2, 6, None).unwrap().nonce_len(), 6);
    /// ```
    pub fn nonce_len(&self) -> usize {
        usize::from(self.nonce_len)
    }

    /// The AES-128 key, if connection IDs are encrypted.
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::LbConfig;
    /// assert_eq!(LbConfig::new(3, 2, 6, None).unwrap().key(), None);
    /// ```
    pub fn key(&self) -> Option<&[u8; KEY_LEN]> {
        self.key.as_ref()
    }

    /// Length of every connection ID of this configuration:
    /// `1 + server_id_len + nonce_len` (6..=20).
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::LbConfig;
    /// assert_eq!(LbConfig::new(3, 2, 6, None).unwrap().cid_len(), 9);
    /// ```
    pub fn cid_len(&self) -> usize {
        1 + self.plaintext_len()
    }

    /// Server ID length plus nonce length: the part of the CID after the
    /// first octet.
    pub(crate) fn plaintext_len(&self) -> usize {
        self.server_id_len() + self.nonce_len()
    }

    /// The first octet of every connection ID of this configuration: config
    /// ID in the top 3 bits, `cid_len() - 1` in the low 5.
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::LbConfig;
    /// assert_eq!(LbConfig::new(1, 5, 5, None).unwrap().first_octet(), 0x2a);
    /// ```
    pub fn first_octet(&self) -> u8 {
        // cid_len() is at most 20, so cid_len() - 1 fits the 5 low bits.
        (self.config_id << 5) | (self.cid_len() - 1) as u8
    }

    /// Which algorithm the configuration uses.
    ///
    /// ```
    /// # use quicmq_proto::quic_lb::{Algorithm, LbConfig};
    /// assert_eq!(LbConfig::new(0, 8, 8, Some([1; 16])).unwrap().algorithm(), Algorithm::SinglePass);
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        match (self.key, self.plaintext_len()) {
            (None, _) => Algorithm::Plaintext,
            (Some(_), 16) => Algorithm::SinglePass,
            (Some(_), _) => Algorithm::FourPass,
        }
    }
}

impl fmt::Debug for LbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LbConfig")
            .field("config_id", &self.config_id)
            .field("server_id_len", &self.server_id_len)
            .field("nonce_len", &self.nonce_len)
            .field("key", &self.key.map(|_| "<redacted>"))
            .finish()
    }
}

/// The serialized form of [`LbConfig`], validated by `LbConfig::new` when
/// read back.
#[derive(Serialize, Deserialize)]
struct RawLbConfig {
    config_id: u8,
    server_id_len: u8,
    nonce_len: u8,
    key: Option<[u8; KEY_LEN]>,
}

impl TryFrom<RawLbConfig> for LbConfig {
    type Error = QuicLbError;

    fn try_from(raw: RawLbConfig) -> Result<Self, Self::Error> {
        LbConfig::new(
            raw.config_id,
            raw.server_id_len.into(),
            raw.nonce_len.into(),
            raw.key,
        )
    }
}

impl From<LbConfig> for RawLbConfig {
    fn from(config: LbConfig) -> Self {
        RawLbConfig {
            config_id: config.config_id,
            server_id_len: config.server_id_len,
            nonce_len: config.nonce_len,
            key: config.key,
        }
    }
}
