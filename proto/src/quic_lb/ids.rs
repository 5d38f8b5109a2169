//! Small fixed-capacity byte strings: connection IDs, server IDs, nonces.
//! All are `Copy` and live on the stack.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::{QuicLbError, MAX_CID_LEN, MAX_NONCE_LEN, MAX_SERVER_ID_LEN};

/// Writes `bytes` as lowercase hex.
fn hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// Defines a byte string of at most `$cap` octets; unused octets are
/// always zero, so the derived `Eq`, `Ord` and `Hash` compare the content.
macro_rules! small_bytes {
    ($(#[$meta:meta])* $name:ident, $cap:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            bytes: [u8; $cap],
            len: u8,
        }

        impl $name {
            /// Copies `bytes`, which the caller has checked to fit.
            pub(crate) fn copy_from(bytes: &[u8]) -> Self {
                let mut out = Self { bytes: [0; $cap], len: bytes.len() as u8 };
                out.bytes[..bytes.len()].copy_from_slice(bytes);
                out
            }

            /// The octets.
            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes[..usize::from(self.len)]
            }
        }

        impl Deref for $name {
            type Target = [u8];

            fn deref(&self) -> &[u8] {
                self.as_bytes()
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                self.as_bytes()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "("))?;
                hex(f, self.as_bytes())?;
                write!(f, ")")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                hex(f, self.as_bytes())
            }
        }
    };
}

small_bytes!(
    /// A QUIC-LB connection ID: first octet, then server ID and nonce (in
    /// clear or encrypted), at most 20 octets. It dereferences to `[u8]`
    /// and displays as hex.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig};
    ///
    /// let codec = LbCodec::new(LbConfig::new(0, 3, 4, None)?)?;
    /// let cid = codec.encode(&[0xc4, 0x60, 0x5e], &[0x45, 0x04, 0xcc, 0x4f])?;
    /// assert_eq!(cid.len(), 8);
    /// assert_eq!(cid.to_string(), "07c4605e4504cc4f");
    /// assert_eq!(cid.as_bytes()[0], 0x07);
    /// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
    /// ```
    RoutableCid,
    MAX_CID_LEN
);

small_bytes!(
    /// A server ID of 1 to 15 octets. It dereferences to `[u8]`, displays
    /// as hex and serializes (serde) as its octets.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::ServerId;
    ///
    /// let sid = ServerId::new(&[0x00, 0x2a])?;
    /// assert_eq!(&sid[..], &[0x00, 0x2a]);
    /// assert_eq!(sid.to_string(), "002a");
    /// assert!(ServerId::new(&[]).is_err());
    /// assert!(ServerId::new(&[0; 16]).is_err());
    /// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
    /// ```
    ServerId,
    MAX_SERVER_ID_LEN
);

small_bytes!(
    /// The nonce of a connection ID, recovered by [`LbCodec::decode`]
    /// (4 to 18 octets). It dereferences to `[u8]` and displays as hex.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig};
    ///
    /// let codec = LbCodec::new(LbConfig::new(0, 3, 4, Some([9; 16]))?)?;
    /// let cid = codec.encode(&[1, 2, 3], &[4, 5, 6, 7])?;
    /// let (_, nonce) = codec.decode(&cid)?;
    /// assert_eq!(&nonce[..], &[4, 5, 6, 7]);
    /// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
    /// ```
    ///
    /// [`LbCodec::decode`]: super::LbCodec::decode
    Nonce,
    MAX_NONCE_LEN
);

impl ServerId {
    /// A server ID of 1 to 15 octets.
    ///
    /// Errors are [`QuicLbError::ServerIdLength`] (with `expected` 15, the
    /// maximum).
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{QuicLbError, ServerId};
    ///
    /// assert_eq!(ServerId::new(&[7])?.as_bytes(), &[7]);
    /// assert_eq!(
    ///     ServerId::new(&[]),
    ///     Err(QuicLbError::ServerIdLength { expected: 15, actual: 0 }),
    /// );
    /// # Ok::<(), QuicLbError>(())
    /// ```
    pub fn new(bytes: &[u8]) -> Result<Self, QuicLbError> {
        if bytes.is_empty() || bytes.len() > MAX_SERVER_ID_LEN {
            return Err(QuicLbError::ServerIdLength {
                expected: MAX_SERVER_ID_LEN,
                actual: bytes.len(),
            });
        }
        Ok(Self::copy_from(bytes))
    }

    /// The server ID of `len` octets (1..=8) that holds `value` big-endian,
    /// for server IDs allocated as integers. `None` if `len` is out of range
    /// or `value` does not fit.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::ServerId;
    ///
    /// assert_eq!(ServerId::from_u64(0x0102, 3).unwrap().as_bytes(), &[0, 1, 2]);
    /// assert_eq!(ServerId::from_u64(256, 1), None);
    /// assert_eq!(ServerId::from_u64(1, 9), None);
    /// ```
    pub fn from_u64(value: u64, len: usize) -> Option<Self> {
        if !(1..=8).contains(&len) || (len < 8 && value >> (8 * len) != 0) {
            return None;
        }
        Some(Self::copy_from(&value.to_be_bytes()[8 - len..]))
    }
}

impl TryFrom<&[u8]> for ServerId {
    type Error = QuicLbError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        ServerId::new(bytes)
    }
}

impl Serialize for ServerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for ServerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ServerId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server ID of 1 to 15 octets")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ServerId, E> {
                ServerId::new(v).map_err(E::custom)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ServerId, A::Error> {
                let mut buf = [0u8; MAX_SERVER_ID_LEN];
                let mut len = 0;
                while let Some(b) = seq.next_element::<u8>()? {
                    if len == MAX_SERVER_ID_LEN {
                        return Err(serde::de::Error::custom("server ID longer than 15 octets"));
                    }
                    buf[len] = b;
                    len += 1;
                }
                ServerId::new(&buf[..len]).map_err(serde::de::Error::custom)
            }
        }

        deserializer.deserialize_bytes(Visitor)
    }
}
