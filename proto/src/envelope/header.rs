//! The addresses a PROXY v2 header carries, and writing it.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;

use super::{
    EnvelopeError, FIXED_LEN, MAX_HEADER_LEN, SIGNATURE, V4_ADDRESSES_LEN, V4_HEADER_LEN,
    V6_ADDRESSES_LEN, V6_HEADER_LEN,
};

/// Version 2, command PROXY.
pub(crate) const VERSION_COMMAND_PROXY: u8 = 0x21;
/// AF_INET, SOCK_DGRAM.
pub(crate) const FAMILY_INET_DGRAM: u8 = 0x12;
/// AF_INET6, SOCK_DGRAM.
pub(crate) const FAMILY_INET6_DGRAM: u8 = 0x22;

/// The two endpoints of a datagram that a PROXY v2 header carries.
///
/// Router → node: `source` is the client, `destination` the public address
/// the client sent to. Node → router: `source` is the public address to
/// send from, `destination` the client. Both must be of the same family;
/// an IPv6 socket that sees IPv4 clients as `::ffff:a.b.c.d` should make
/// them canonical (`IpAddr::to_canonical`) or map the other side too.
/// IPv6 flow info and scope ID are not carried.
///
/// ```
/// use quicmq_proto::envelope::ProxyHeader;
///
/// let header = ProxyHeader {
///     source: "192.0.2.1:50000".parse().unwrap(),
///     destination: "198.51.100.7:14567".parse().unwrap(),
/// };
/// assert_eq!(header.encoded_len(), Ok(28));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// Where the datagram comes from.
    pub source: SocketAddr,
    /// Where it is addressed to.
    pub destination: SocketAddr,
}

impl ProxyHeader {
    /// Length of the header [`write_header`] writes for these addresses:
    /// 28 octets for IPv4, 52 for IPv6.
    ///
    /// Errors are [`EnvelopeError::MixedFamilies`].
    ///
    /// ```
    /// use quicmq_proto::envelope::{EnvelopeError, ProxyHeader};
    ///
    /// let v6 = ProxyHeader {
    ///     source: "[2001:db8::1]:50000".parse().unwrap(),
    ///     destination: "[2001:db8::2]:14567".parse().unwrap(),
    /// };
    /// assert_eq!(v6.encoded_len(), Ok(52));
    /// let mixed = ProxyHeader { source: "192.0.2.1:1".parse().unwrap(), ..v6 };
    /// assert_eq!(mixed.encoded_len(), Err(EnvelopeError::MixedFamilies));
    /// ```
    pub fn encoded_len(&self) -> Result<usize, EnvelopeError> {
        match (self.source, self.destination) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => Ok(V4_HEADER_LEN),
            (SocketAddr::V6(_), SocketAddr::V6(_)) => Ok(V6_HEADER_LEN),
            _ => Err(EnvelopeError::MixedFamilies),
        }
    }

    /// The header in a stack buffer, ready to be sent in front of the
    /// datagram with a vectored write (`sendmsg` with two iovecs), without
    /// copying the datagram.
    ///
    /// Errors are [`EnvelopeError::MixedFamilies`].
    ///
    /// ```
    /// use std::io::IoSlice;
    /// use quicmq_proto::envelope::{parse, ProxyHeader};
    ///
    /// let header = ProxyHeader {
    ///     source: "192.0.2.1:50000".parse().unwrap(),
    ///     destination: "198.51.100.7:14567".parse().unwrap(),
    /// };
    /// let encoded = header.encode()?;
    /// let datagram = b"\xc0quic";
    /// let iov = [IoSlice::new(&encoded), IoSlice::new(datagram)];
    /// # let wire = [&iov[0][..], &iov[1][..]].concat();
    /// # assert_eq!(parse(&wire)?, (Some(header), 28));
    /// # Ok::<(), quicmq_proto::envelope::EnvelopeError>(())
    /// ```
    pub fn encode(&self) -> Result<EncodedHeader, EnvelopeError> {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let len = write_header(self, &mut bytes)?;
        Ok(EncodedHeader {
            bytes,
            len: len as u8,
        })
    }
}

/// A PROXY v2 header written by [`ProxyHeader::encode`]: at most 52
/// octets on the stack. It dereferences to `[u8]`.
///
/// ```
/// use quicmq_proto::envelope::{ProxyHeader, SIGNATURE};
///
/// let header = ProxyHeader {
///     source: "192.0.2.1:50000".parse().unwrap(),
///     destination: "198.51.100.7:14567".parse().unwrap(),
/// };
/// let encoded = header.encode().unwrap();
/// assert_eq!(encoded.len(), 28);
/// assert_eq!(&encoded[..12], &SIGNATURE);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl Deref for EncodedHeader {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for EncodedHeader {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for EncodedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedHeader").field(&&self[..]).finish()
    }
}

/// Writes the PROXY v2 header (command PROXY, DGRAM, no TLVs) for `header`
/// at the start of `out` and returns its length: 28 octets for IPv4, 52 for
/// IPv6. The datagram goes right after it.
///
/// Errors are [`EnvelopeError::MixedFamilies`] and
/// [`EnvelopeError::BufferTooSmall`].
///
/// ```
/// use quicmq_proto::envelope::{parse, write_header, ProxyHeader, MAX_HEADER_LEN};
///
/// let header = ProxyHeader {
///     source: "[2001:db8::1]:50000".parse().unwrap(),
///     destination: "[2001:db8::2]:14567".parse().unwrap(),
/// };
/// let datagram = b"\x40short header packet";
/// let mut out = vec![0u8; MAX_HEADER_LEN + datagram.len()];
/// let n = write_header(&header, &mut out)?;
/// out[n..n + datagram.len()].copy_from_slice(datagram);
/// out.truncate(n + datagram.len());
///
/// assert_eq!(parse(&out)?, (Some(header), 52));
/// # Ok::<(), quicmq_proto::envelope::EnvelopeError>(())
/// ```
pub fn write_header(header: &ProxyHeader, out: &mut [u8]) -> Result<usize, EnvelopeError> {
    let needed = header.encoded_len()?;
    let Some(out) = out.get_mut(..needed) else {
        return Err(EnvelopeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    };
    out[..12].copy_from_slice(&SIGNATURE);
    out[12] = VERSION_COMMAND_PROXY;
    let (fixed, addresses) = out.split_at_mut(FIXED_LEN);
    match (header.source, header.destination) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            family_and_len(fixed, FAMILY_INET_DGRAM, V4_ADDRESSES_LEN);
            addresses[0..4].copy_from_slice(&src.ip().octets());
            addresses[4..8].copy_from_slice(&dst.ip().octets());
            addresses[8..10].copy_from_slice(&src.port().to_be_bytes());
            addresses[10..12].copy_from_slice(&dst.port().to_be_bytes());
        }
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
            family_and_len(fixed, FAMILY_INET6_DGRAM, V6_ADDRESSES_LEN);
            addresses[0..16].copy_from_slice(&src.ip().octets());
            addresses[16..32].copy_from_slice(&dst.ip().octets());
            addresses[32..34].copy_from_slice(&src.port().to_be_bytes());
            addresses[34..36].copy_from_slice(&dst.port().to_be_bytes());
        }
        _ => return Err(EnvelopeError::MixedFamilies),
    }
    Ok(needed)
}

/// Family/transport octet (14th) and the 2-octet length (15th, 16th) of
/// the 16-octet fixed part.
fn family_and_len(fixed: &mut [u8], family: u8, len: usize) {
    fixed[13] = family;
    // Address blocks are 12 or 36 octets.
    fixed[14..16].copy_from_slice(&(len as u16).to_be_bytes());
}

/// Writes the header for `header` so that it ends exactly at
/// `payload_offset` in `buf`, and returns where it starts: the zero-copy
/// way to wrap a datagram received into a buffer with headroom.
///
/// Receive the datagram at `buf[MAX_HEADER_LEN..]`, call this with
/// `payload_offset = MAX_HEADER_LEN`, then send `buf[start..MAX_HEADER_LEN
/// + n]`.
///
/// Errors are [`EnvelopeError::MixedFamilies`] and
/// [`EnvelopeError::BufferTooSmall`] (headroom, or `payload_offset` past
/// the end of `buf`).
///
/// ```
/// use quicmq_proto::envelope::{parse, prepend_header, ProxyHeader, MAX_HEADER_LEN};
///
/// let header = ProxyHeader {
///     source: "192.0.2.1:50000".parse().unwrap(),
///     destination: "198.51.100.7:14567".parse().unwrap(),
/// };
/// let mut buf = [0u8; MAX_HEADER_LEN + 1500];
/// // A socket read the datagram into the space after the headroom.
/// let n = 4;
/// buf[MAX_HEADER_LEN..MAX_HEADER_LEN + n].copy_from_slice(b"\xc0abc");
///
/// let start = prepend_header(&header, &mut buf, MAX_HEADER_LEN)?;
/// let wire = &buf[start..MAX_HEADER_LEN + n];
/// let (parsed, offset) = parse(wire)?;
/// assert_eq!(parsed, Some(header));
/// assert_eq!(&wire[offset..], b"\xc0abc");
/// # Ok::<(), quicmq_proto::envelope::EnvelopeError>(())
/// ```
pub fn prepend_header(
    header: &ProxyHeader,
    buf: &mut [u8],
    payload_offset: usize,
) -> Result<usize, EnvelopeError> {
    let needed = header.encoded_len()?;
    let available = payload_offset.min(buf.len());
    if payload_offset > buf.len() || needed > payload_offset {
        return Err(EnvelopeError::BufferTooSmall { needed, available });
    }
    let start = payload_offset - needed;
    write_header(header, &mut buf[start..payload_offset])?;
    Ok(start)
}
