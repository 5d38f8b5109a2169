//! The QUIC invariant header (RFC 8999), as much of it as routing needs.
//!
//! Long header: form bit set, 4-octet version, DCID length + DCID, SCID
//! length + SCID; for QUIC v1/v2 Initial packets also the token. Short
//! header: form bit clear, then the DCID, whose length the receiver knows
//! (the cluster's fixed CID length). Never panics on any input.

/// QUIC version 1 (RFC 9000).
pub const QUIC_V1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const QUIC_V2: u32 = 0x6b33_43cf;
/// Longest connection ID QUIC v1 allows.
pub const MAX_CID_LEN: usize = 20;

/// The routing-relevant part of a QUIC packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicHeader<'a> {
    /// A long header packet.
    Long {
        /// QUIC version.
        version: u32,
        /// Destination connection ID (chosen by the client on Initial and
        /// 0-RTT, by the server afterwards).
        dcid: &'a [u8],
        /// The token of an Initial packet (QUIC v1/v2); `None` for other
        /// packet types and versions.
        initial_token: Option<&'a [u8]>,
        /// Whether this is an Initial packet (v1/v2).
        initial: bool,
    },
    /// A short header (1-RTT) packet.
    Short {
        /// Destination connection ID.
        dcid: &'a [u8],
    },
}

impl<'a> QuicHeader<'a> {
    /// The destination connection ID.
    pub fn dcid(&self) -> &'a [u8] {
        match self {
            QuicHeader::Long { dcid, .. } | QuicHeader::Short { dcid } => dcid,
        }
    }
}

/// Why a datagram is not a routable QUIC packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Empty datagram.
    #[error("empty datagram")]
    Empty,
    /// The datagram ends inside the header.
    #[error("truncated QUIC header")]
    Truncated,
    /// A connection ID longer than 20 octets.
    #[error("connection ID of {0} octets (more than 20)")]
    CidTooLong(usize),
    /// Version negotiation (version 0) is sent by servers, never routed.
    #[error("version negotiation packet")]
    VersionNegotiation,
}

impl HeaderError {
    /// Label for the drop metric.
    pub fn label(self) -> &'static str {
        match self {
            HeaderError::Empty | HeaderError::Truncated => "unparseable",
            HeaderError::CidTooLong(_) => "cid_too_long",
            HeaderError::VersionNegotiation => "version_negotiation",
        }
    }
}

/// Parse the header of the first QUIC packet in `datagram`. `short_cid_len`
/// is the DCID length of short-header packets in this cluster.
///
/// ```
/// use quicmq_router::header::{parse, QuicHeader};
/// let short = [0x40, 1, 2, 3, 4, 5, 6, 7, 8, 0xaa];
/// assert_eq!(parse(&short, 8).unwrap(), QuicHeader::Short { dcid: &short[1..9] });
/// ```
pub fn parse(datagram: &[u8], short_cid_len: usize) -> Result<QuicHeader<'_>, HeaderError> {
    let first = *datagram.first().ok_or(HeaderError::Empty)?;
    if first & 0x80 == 0 {
        let dcid = datagram
            .get(1..1 + short_cid_len)
            .ok_or(HeaderError::Truncated)?;
        return Ok(QuicHeader::Short { dcid });
    }
    let version_bytes: [u8; 4] = datagram
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or(HeaderError::Truncated)?;
    let version = u32::from_be_bytes(version_bytes);
    if version == 0 {
        return Err(HeaderError::VersionNegotiation);
    }
    let mut at = 5;
    let dcid = read_cid(datagram, &mut at)?;
    let _scid = read_cid(datagram, &mut at)?;
    let packet_type = (first >> 4) & 0b11;
    let initial = match version {
        QUIC_V1 => packet_type == 0b00,
        QUIC_V2 => packet_type == 0b01,
        _ => false,
    };
    let initial_token = if initial {
        let len = read_varint(datagram, &mut at)?;
        let len = usize::try_from(len).map_err(|_| HeaderError::Truncated)?;
        let end = at.checked_add(len).ok_or(HeaderError::Truncated)?;
        Some(datagram.get(at..end).ok_or(HeaderError::Truncated)?)
    } else {
        None
    };
    Ok(QuicHeader::Long {
        version,
        dcid,
        initial_token,
        initial,
    })
}

fn read_cid<'a>(datagram: &'a [u8], at: &mut usize) -> Result<&'a [u8], HeaderError> {
    let len = usize::from(*datagram.get(*at).ok_or(HeaderError::Truncated)?);
    if len > MAX_CID_LEN {
        return Err(HeaderError::CidTooLong(len));
    }
    let cid = datagram
        .get(*at + 1..*at + 1 + len)
        .ok_or(HeaderError::Truncated)?;
    *at += 1 + len;
    Ok(cid)
}

fn read_varint(datagram: &[u8], at: &mut usize) -> Result<u64, HeaderError> {
    let first = *datagram.get(*at).ok_or(HeaderError::Truncated)?;
    let len = 1usize << (first >> 6);
    let bytes = datagram.get(*at..*at + len).ok_or(HeaderError::Truncated)?;
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    *at += len;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn long(first: u8, version: u32, dcid: &[u8], scid: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut p = vec![first];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(dcid.len() as u8);
        p.extend_from_slice(dcid);
        p.push(scid.len() as u8);
        p.extend_from_slice(scid);
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn v1_initial_with_token() {
        // token length 3 as a 1-octet varint, then the token.
        let p = long(
            0xc3,
            QUIC_V1,
            &[1; 8],
            &[2; 5],
            &[0x03, 9, 9, 9, 0x44, 0x00],
        );
        let h = parse(&p, 8).unwrap();
        assert_eq!(
            h,
            QuicHeader::Long {
                version: QUIC_V1,
                dcid: &[1; 8],
                initial_token: Some(&[9, 9, 9]),
                initial: true
            }
        );
        // A 2-octet varint token length.
        let mut rest = vec![0x40, 0x02, 7, 7];
        rest.extend_from_slice(&[0; 10]);
        let p = long(0xc0, QUIC_V1, &[1; 4], &[], &rest);
        match parse(&p, 8).unwrap() {
            QuicHeader::Long { initial_token, .. } => {
                assert_eq!(initial_token, Some(&[7u8, 7][..]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v1_handshake_and_0rtt_have_no_token() {
        for first in [0xd0u8, 0xe0] {
            let p = long(first, QUIC_V1, &[3; 11], &[4; 8], &[0; 20]);
            match parse(&p, 8).unwrap() {
                QuicHeader::Long {
                    initial,
                    initial_token,
                    dcid,
                    ..
                } => {
                    assert!(!initial);
                    assert_eq!(initial_token, None);
                    assert_eq!(dcid, &[3; 11]);
                }
                other => panic!("{other:?}"),
            }
        }
        // v2 Initial is type 0b01.
        let p = long(0xd0, QUIC_V2, &[3; 8], &[], &[0x00, 1]);
        assert!(matches!(
            parse(&p, 8).unwrap(),
            QuicHeader::Long { initial: true, .. }
        ));
    }

    #[test]
    fn bad_headers() {
        assert_eq!(parse(&[], 8), Err(HeaderError::Empty));
        assert_eq!(parse(&[0x40, 1, 2], 8), Err(HeaderError::Truncated));
        assert_eq!(parse(&[0xc0, 0, 0], 8), Err(HeaderError::Truncated));
        assert_eq!(
            parse(&long(0xc0, 0, &[1], &[], &[]), 8),
            Err(HeaderError::VersionNegotiation)
        );
        assert_eq!(
            parse(&long(0xc0, QUIC_V1, &[1; 21], &[], &[0]), 8),
            Err(HeaderError::CidTooLong(21))
        );
        let mut truncated = long(0xc0, QUIC_V1, &[1; 8], &[2; 8], &[0x05, 1]);
        assert_eq!(
            parse(&truncated, 8),
            Err(HeaderError::Truncated),
            "token runs past the end"
        );
        truncated.truncate(10);
        assert_eq!(parse(&truncated, 8), Err(HeaderError::Truncated));
        // Unknown versions are routed by DCID alone.
        let p = long(0xc0, 0xff00_0000, &[5; 20], &[], &[]);
        assert!(matches!(
            parse(&p, 8).unwrap(),
            QuicHeader::Long {
                initial: false,
                initial_token: None,
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), len in 0usize..25) {
            let _ = parse(&bytes, len);
        }
    }
}
