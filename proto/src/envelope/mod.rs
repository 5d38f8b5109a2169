//! The router ↔ node datagram envelope: a PROXY protocol v2 header
//! (HAProxy's PROXY protocol spec, §2.2) in front of each QUIC datagram.
//!
//! ```text
//! Header {
//!   Signature (96) = 0x0D0A0D0A000D0A515549540A,   "\r\n\r\n\0\r\nQUIT\n"
//!   Version (4) = 2,
//!   Command (4),                  1 PROXY (written), 0 LOCAL (accepted)
//!   Family (4), Transport (4),    0x12 AF_INET + DGRAM, 0x22 AF_INET6 + DGRAM
//!   Length (16),                  octets that follow: addresses + TLVs
//!   Source Address (32 or 128), Destination Address (32 or 128),
//!   Source Port (16), Destination Port (16),
//!   TLVs (..),                    skipped on parse, never written
//! }
//! Payload (..)                    the QUIC datagram
//! ```
//!
//! The router writes source = client, destination = public address; the
//! node writes source = public address, destination = client. The header
//! is 28 octets for IPv4 and 52 for IPv6.
//!
//! Three ways to use it without copying the datagram:
//!
//! - vectored send: [`ProxyHeader::encode`] gives the header in a stack
//!   buffer; send it and the datagram as two iovecs of one `sendmsg`;
//! - headroom: receive the datagram at `buf[MAX_HEADER_LEN..]`, then
//!   [`prepend_header`] writes the header just before it;
//! - receive: [`parse`] returns the payload offset; the payload is
//!   `&datagram[offset..]`.
//!
//! ```
//! use quicmq_proto::envelope::{parse, ProxyHeader};
//!
//! let header = ProxyHeader {
//!     source: "[2001:db8::1]:50000".parse().unwrap(),
//!     destination: "[2001:db8::2]:14567".parse().unwrap(),
//! };
//! let quic = b"\xc0\x00\x00\x00\x01";
//! let wire = [&header.encode()?[..], &quic[..]].concat();
//!
//! let (parsed, offset) = parse(&wire)?;
//! assert_eq!(parsed, Some(header));
//! assert_eq!(&wire[offset..], quic);
//! # Ok::<(), quicmq_proto::envelope::EnvelopeError>(())
//! ```

mod error;
mod header;
mod parse;

pub use error::EnvelopeError;
pub use header::{prepend_header, write_header, EncodedHeader, ProxyHeader};
pub use parse::parse;

/// The 12-octet signature that starts every PROXY v2 header.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A whole PROXY v2 header with command LOCAL, family UNSPEC and no
/// addresses: what a health check sends. [`parse`] returns `None` for it.
///
/// ```
/// use quicmq_proto::envelope::{parse, LOCAL_HEADER};
/// assert_eq!(parse(&LOCAL_HEADER), Ok((None, 16)));
/// ```
pub const LOCAL_HEADER: [u8; FIXED_LEN] = *b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

/// Length of the header written for IPv4 addresses.
pub const V4_HEADER_LEN: usize = FIXED_LEN + V4_ADDRESSES_LEN;

/// Length of the header written for IPv6 addresses.
pub const V6_HEADER_LEN: usize = FIXED_LEN + V6_ADDRESSES_LEN;

/// The longest header this module writes (IPv6): the headroom to reserve
/// in front of a datagram. Parsed headers may be longer (TLVs).
pub const MAX_HEADER_LEN: usize = V6_HEADER_LEN;

/// Signature, version/command, family/transport and length.
const FIXED_LEN: usize = 16;
/// Two IPv4 addresses and two ports.
const V4_ADDRESSES_LEN: usize = 12;
/// Two IPv6 addresses and two ports.
const V6_ADDRESSES_LEN: usize = 36;
