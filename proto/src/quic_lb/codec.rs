//! [`LbCodec`]: a prepared configuration that mints and reads connection IDs.

use std::fmt;

use super::cipher::{Aes128, FourPass};
use super::{
    config_id_of, Algorithm, LbConfig, Nonce, QuicLbError, RoutableCid, ServerId, MAX_CID_LEN,
};

/// A QUIC-LB configuration prepared for use: the AES key schedule is
/// expanded once, in [`LbCodec::new`], and reused by every call.
///
/// [`encode`](Self::encode) is what a node's connection ID generator calls
/// with its server ID and a fresh random nonce;
/// [`decode_server_id`](Self::decode_server_id) is what a router calls on
/// the DCID of every datagram. Neither allocates: inputs are borrowed,
/// results are `Copy` values of at most 21 octets, and intermediate state
/// lives in 16- and 20-octet stack arrays.
///
/// Cost per call, by algorithm: plaintext is a few copies; single-pass is
/// one AES block; four-pass encoding is four AES blocks, decoding a server
/// ID three (four when the server ID is longer than the nonce), each a
/// call into aws-lc's `AES_ecb_encrypt`. Measured once on the 2-core
/// development VM, release build, with the ignored `decode_cost` test
/// (`cargo test -p quicmq-proto --release --test quic_lb -- --ignored
/// --nocapture`), per call:
///
/// | configuration               | `decode_server_id` | `encode` |
/// |-----------------------------|--------------------|----------|
/// | plaintext, 2 + 6            | 24 ns              | 22 ns    |
/// | single-pass, 8 + 8          | 27 ns              | 41 ns    |
/// | four-pass, 2 + 6 (3 passes) | 122 ns             | 149 ns   |
/// | four-pass, 10 + 5 (4 passes)| 160 ns             | 158 ns   |
///
/// `LbCodec` is `Send + Sync`: share one behind an `Arc` between threads.
///
/// ```
/// use quicmq_proto::quic_lb::{LbCodec, LbConfig, ServerId};
///
/// let config = LbConfig::new(0, 2, 6, Some([0x11; 16]))?;
/// let codec = LbCodec::new(config)?;
///
/// // A node mints a CID with its server ID and a random nonce...
/// let cid = codec.encode(&[0x00, 0x2a], &[1, 2, 3, 4, 5, 6])?;
/// assert_eq!(cid.len(), 9);
///
/// // ...and a router reads the server ID back from a datagram's DCID.
/// assert_eq!(codec.decode_server_id(&cid)?, ServerId::new(&[0x00, 0x2a])?);
/// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
/// ```
pub struct LbCodec {
    config: LbConfig,
    aes: Option<Aes128>,
}

impl LbCodec {
    /// Prepares `config`: expands its AES key, if it has one.
    ///
    /// Errors are [`QuicLbError::Crypto`], which aws-lc-rs never returns
    /// for a 16-octet AES-128 key.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig};
    ///
    /// let codec = LbCodec::new(LbConfig::new(4, 3, 4, None)?)?;
    /// assert_eq!(codec.config().config_id(), 4);
    /// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
    /// ```
    pub fn new(config: LbConfig) -> Result<Self, QuicLbError> {
        let aes = config.key().map(Aes128::new).transpose()?;
        Ok(Self { config, aes })
    }

    /// The configuration this codec was built from.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig};
    ///
    /// let config = LbConfig::new(4, 3, 4, None)?;
    /// assert_eq!(LbCodec::new(config)?.config(), &config);
    /// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
    /// ```
    pub fn config(&self) -> &LbConfig {
        &self.config
    }

    /// The connection ID that carries `server_id` and `nonce`: the first
    /// octet (config ID and self-encoded length), then server ID and nonce,
    /// encrypted if the configuration has a key.
    ///
    /// The caller chooses the nonce. With a key, a nonce never used before
    /// with this server ID is enough (a counter works); without a key, it
    /// must look random (draft §5.3).
    ///
    /// Errors are [`QuicLbError::ServerIdLength`] and
    /// [`QuicLbError::NonceLength`] when the inputs do not have the
    /// configured lengths.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig, QuicLbError};
    ///
    /// let codec = LbCodec::new(LbConfig::new(1, 5, 5, None)?)?;
    /// let cid = codec.encode(&[0x35, 0x0d, 0x28, 0xb4, 0x20], &[0x03, 0x48, 0x7d, 0x97, 0x0b])?;
    /// assert_eq!(cid.to_string(), "2a350d28b42003487d970b");
    /// assert_eq!(
    ///     codec.encode(&[1, 2], &[0; 5]),
    ///     Err(QuicLbError::ServerIdLength { expected: 5, actual: 2 }),
    /// );
    /// # Ok::<(), QuicLbError>(())
    /// ```
    pub fn encode(&self, server_id: &[u8], nonce: &[u8]) -> Result<RoutableCid, QuicLbError> {
        let sid_len = self.config.server_id_len();
        let nonce_len = self.config.nonce_len();
        if server_id.len() != sid_len {
            return Err(QuicLbError::ServerIdLength {
                expected: sid_len,
                actual: server_id.len(),
            });
        }
        if nonce.len() != nonce_len {
            return Err(QuicLbError::NonceLength {
                expected: nonce_len,
                actual: nonce.len(),
            });
        }
        let len = self.config.cid_len();
        let mut cid = [0u8; MAX_CID_LEN];
        cid[0] = self.config.first_octet();
        cid[1..1 + sid_len].copy_from_slice(server_id);
        cid[1 + sid_len..len].copy_from_slice(nonce);
        let body = &mut cid[1..len];
        match (self.config.algorithm(), &self.aes) {
            (Algorithm::Plaintext, _) | (_, None) => {}
            (Algorithm::SinglePass, Some(aes)) => {
                let block: &mut [u8; 16] = body.try_into().map_err(|_| QuicLbError::Crypto)?;
                aes.encrypt_block(block)?;
            }
            (Algorithm::FourPass, Some(aes)) => FourPass::new(aes, body.len()).encrypt(body)?,
        }
        Ok(RoutableCid::copy_from(&cid[..len]))
    }

    /// The server ID in `cid`, decrypting only as much as needed (three
    /// AES passes instead of four when the server ID is no longer than the
    /// nonce). This is the router's per-datagram call.
    ///
    /// `cid` must be exactly [`LbConfig::cid_len`] octets, its config
    /// rotation bits must be this codec's config ID and its low 5 bits must
    /// encode its length. Errors, all meaning "unroutable":
    /// [`QuicLbError::CidLength`], [`QuicLbError::Unroutable`] (codepoint
    /// `0b111`), [`QuicLbError::UnknownConfig`] and
    /// [`QuicLbError::EncodedLength`]. A CID that passes these checks always
    /// yields a server ID; whether a live node owns it is the caller's
    /// question.
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig, QuicLbError};
    ///
    /// let codec = LbCodec::new(LbConfig::new(0, 3, 4, None)?)?;
    /// let sid = codec.decode_server_id(&[0x07, 0xc4, 0x60, 0x5e, 0x45, 0x04, 0xcc, 0x4f])?;
    /// assert_eq!(sid.as_bytes(), &[0xc4, 0x60, 0x5e]);
    /// assert_eq!(codec.decode_server_id(&[0xe7; 8]), Err(QuicLbError::Unroutable));
    /// # Ok::<(), QuicLbError>(())
    /// ```
    pub fn decode_server_id(&self, cid: &[u8]) -> Result<ServerId, QuicLbError> {
        let sid_len = self.config.server_id_len();
        let body = self.decrypt(cid, sid_len)?;
        Ok(ServerId::copy_from(&body[..sid_len]))
    }

    /// Server ID and nonce of `cid`: the full inverse of
    /// [`encode`](Self::encode) (always four passes for a four-pass
    /// configuration). Same checks and errors as
    /// [`decode_server_id`](Self::decode_server_id).
    ///
    /// ```
    /// use quicmq_proto::quic_lb::{LbCodec, LbConfig};
    ///
    /// let codec = LbCodec::new(LbConfig::new(2, 10, 5, Some([3; 16]))?)?;
    /// let cid = codec.encode(&[9; 10], &[1, 2, 3, 4, 5])?;
    /// let (sid, nonce) = codec.decode(&cid)?;
    /// assert_eq!((sid.as_bytes(), nonce.as_bytes()), (&[9; 10][..], &[1, 2, 3, 4, 5][..]));
    /// # Ok::<(), quicmq_proto::quic_lb::QuicLbError>(())
    /// ```
    pub fn decode(&self, cid: &[u8]) -> Result<(ServerId, Nonce), QuicLbError> {
        let sid_len = self.config.server_id_len();
        let body = self.decrypt(cid, self.config.plaintext_len())?;
        Ok((
            ServerId::copy_from(&body[..sid_len]),
            Nonce::copy_from(&body[sid_len..self.config.plaintext_len()]),
        ))
    }

    /// Checks `cid` against the configuration and decrypts the octets after
    /// the first; at least `need` leading octets of the result are right.
    fn decrypt(&self, cid: &[u8], need: usize) -> Result<[u8; MAX_CID_LEN], QuicLbError> {
        let expected = self.config.cid_len();
        let Some(&first) = cid.first() else {
            return Err(QuicLbError::CidLength {
                expected,
                actual: 0,
            });
        };
        let Some(found) = config_id_of(first) else {
            return Err(QuicLbError::Unroutable);
        };
        if found != self.config.config_id() {
            return Err(QuicLbError::UnknownConfig {
                found,
                expected: self.config.config_id(),
            });
        }
        if cid.len() != expected {
            return Err(QuicLbError::CidLength {
                expected,
                actual: cid.len(),
            });
        }
        let encoded = usize::from(first & 0x1f) + 1;
        if encoded != expected {
            return Err(QuicLbError::EncodedLength { expected, encoded });
        }
        let mut out = [0u8; MAX_CID_LEN];
        let body = &mut out[..expected - 1];
        body.copy_from_slice(&cid[1..]);
        match (self.config.algorithm(), &self.aes) {
            (Algorithm::Plaintext, _) | (_, None) => {}
            (Algorithm::SinglePass, Some(aes)) => {
                let block: &mut [u8; 16] = body.try_into().map_err(|_| QuicLbError::Crypto)?;
                aes.decrypt_block(block)?;
            }
            (Algorithm::FourPass, Some(aes)) => {
                FourPass::new(aes, body.len()).decrypt(body, need)?;
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for LbCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LbCodec")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
