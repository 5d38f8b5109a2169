//! Parsing the PROXY v2 header in front of a datagram.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::header::{FAMILY_INET6_DGRAM, FAMILY_INET_DGRAM};
use super::{EnvelopeError, ProxyHeader, FIXED_LEN, SIGNATURE, V4_ADDRESSES_LEN, V6_ADDRESSES_LEN};

const COMMAND_LOCAL: u8 = 0x0;
const COMMAND_PROXY: u8 = 0x1;

/// Parses the PROXY v2 header at the start of `datagram` and returns the
/// addresses it carries with the offset of the payload (the QUIC datagram)
/// in `datagram`.
///
/// - PROXY over AF_INET or AF_INET6 with DGRAM: `Some(header)`. TLVs after
///   the addresses are checked to fill the header exactly and skipped.
/// - LOCAL (health checks and the like): `None`; family and addresses, if
///   any, are ignored as the spec says.
///
/// Never panics and never reads past the header length it validated.
/// Errors: [`EnvelopeError::Truncated`], [`EnvelopeError::BadSignature`],
/// [`EnvelopeError::UnsupportedVersion`],
/// [`EnvelopeError::UnsupportedCommand`],
/// [`EnvelopeError::UnsupportedFamily`] (PROXY with anything but the two
/// DGRAM families), [`EnvelopeError::AddressesTooShort`] and
/// [`EnvelopeError::MalformedTlv`].
///
/// ```
/// use quicmq_proto::envelope::{parse, LOCAL_HEADER};
///
/// let mut wire = b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c".to_vec();
/// wire.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7, 0xc3, 0x50, 0x38, 0xe7]);
/// wire.extend_from_slice(b"\xc0payload");
///
/// let (header, offset) = parse(&wire)?;
/// let header = header.unwrap();
/// assert_eq!(header.source, "192.0.2.1:50000".parse().unwrap());
/// assert_eq!(header.destination, "198.51.100.7:14567".parse().unwrap());
/// assert_eq!(&wire[offset..], b"\xc0payload");
///
/// assert_eq!(parse(&LOCAL_HEADER)?, (None, 16));
/// # Ok::<(), quicmq_proto::envelope::EnvelopeError>(())
/// ```
pub fn parse(datagram: &[u8]) -> Result<(Option<ProxyHeader>, usize), EnvelopeError> {
    let Some(fixed) = datagram.get(..FIXED_LEN) else {
        // A short datagram that is not even a prefix of the signature is
        // not PROXY v2 at all; a prefix of it is a truncated header.
        let n = datagram.len().min(SIGNATURE.len());
        if datagram[..n] != SIGNATURE[..n] {
            return Err(EnvelopeError::BadSignature);
        }
        return Err(EnvelopeError::Truncated {
            needed: FIXED_LEN,
            actual: datagram.len(),
        });
    };
    if fixed[..12] != SIGNATURE {
        return Err(EnvelopeError::BadSignature);
    }
    let version = fixed[12] >> 4;
    if version != 2 {
        return Err(EnvelopeError::UnsupportedVersion(version));
    }
    let command = fixed[12] & 0x0f;
    let family = fixed[13];
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let end = FIXED_LEN + len;
    let Some(block) = datagram.get(FIXED_LEN..end) else {
        return Err(EnvelopeError::Truncated {
            needed: end,
            actual: datagram.len(),
        });
    };
    match command {
        COMMAND_LOCAL => Ok((None, end)),
        COMMAND_PROXY => {
            let (header, addresses_len) = addresses(family, block)?;
            check_tlvs(&block[addresses_len..], FIXED_LEN + addresses_len)?;
            Ok((Some(header), end))
        }
        other => Err(EnvelopeError::UnsupportedCommand(other)),
    }
}

/// The addresses at the start of `block` (everything after the fixed 16
/// octets, as long as the length field says) and their length.
fn addresses(family: u8, block: &[u8]) -> Result<(ProxyHeader, usize), EnvelopeError> {
    let needed = match family {
        FAMILY_INET_DGRAM => V4_ADDRESSES_LEN,
        FAMILY_INET6_DGRAM => V6_ADDRESSES_LEN,
        other => return Err(EnvelopeError::UnsupportedFamily(other)),
    };
    let Some(a) = block.get(..needed) else {
        return Err(EnvelopeError::AddressesTooShort {
            len: block.len(),
            needed,
        });
    };
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    let header = if family == FAMILY_INET_DGRAM {
        let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
        ProxyHeader {
            source: SocketAddr::V4(SocketAddrV4::new(ip(0), port(8))),
            destination: SocketAddr::V4(SocketAddrV4::new(ip(4), port(10))),
        }
    } else {
        let ip = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[at..at + 16]);
            Ipv6Addr::from(octets)
        };
        ProxyHeader {
            source: SocketAddr::V6(SocketAddrV6::new(ip(0), port(32), 0, 0)),
            destination: SocketAddr::V6(SocketAddrV6::new(ip(16), port(34), 0, 0)),
        }
    };
    Ok((header, needed))
}

/// Checks that `tlvs` is a sequence of whole TLVs (type: 1 octet, length:
/// 2 octets big-endian, value). `offset` is where `tlvs` starts in the
/// datagram, for the error.
fn check_tlvs(mut tlvs: &[u8], mut offset: usize) -> Result<(), EnvelopeError> {
    while !tlvs.is_empty() {
        let Some(&[_, hi, lo]) = tlvs.get(..3) else {
            return Err(EnvelopeError::MalformedTlv(offset));
        };
        let total = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        let Some(rest) = tlvs.get(total..) else {
            return Err(EnvelopeError::MalformedTlv(offset));
        };
        tlvs = rest;
        offset += total;
    }
    Ok(())
}
