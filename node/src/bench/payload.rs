//! The benchmark payload: a 16-byte header (send time, publisher,
//! sequence number) followed by filler bytes.
//!
//! ```text
//! 0        8           12         16                  size
//! | sent ns | publisher | sequence | 'x' filler ...   |
//! ```
//!
//! All integers are big-endian; `sent ns` is the send time in nanoseconds
//! since the Unix epoch, so a subscriber on the same machine (same clock)
//! computes the end-to-end latency as its receive time minus that.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::error::BenchError;

/// Bytes of the header; the smallest payload the benchmark sends.
pub const HEADER_LEN: usize = 16;

/// The byte the payload is padded with after the header.
const FILLER: u8 = b'x';

/// Nanoseconds since the Unix epoch of `time` (0 before the epoch,
/// saturating far in the future).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use quicmq_node::bench::unix_nanos;
/// assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_micros(3)), 3_000);
/// assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
/// ```
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The header at the start of every benchmark payload.
///
/// ```
/// use quicmq_node::bench::PayloadHeader;
/// let header = PayloadHeader { sent_unix_ns: 1_000, publisher: 2, sequence: 7 };
/// let payload = header.encode(64).unwrap();
/// assert_eq!(payload.len(), 64);
/// assert_eq!(PayloadHeader::decode(&payload), Some(header));
/// assert_eq!(header.latency(4_000).as_nanos(), 3_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    /// Send time, nanoseconds since the Unix epoch.
    pub sent_unix_ns: u64,
    /// Index of the publisher that sent the message.
    pub publisher: u32,
    /// Sequence number of the message at its publisher, from 0.
    pub sequence: u32,
}

impl PayloadHeader {
    /// A payload of exactly `size` bytes starting with this header.
    pub fn encode(&self, size: usize) -> Result<Bytes, BenchError> {
        if size < HEADER_LEN {
            return Err(BenchError::PayloadTooSmall { size });
        }
        let mut buf = BytesMut::with_capacity(size);
        buf.put_u64(self.sent_unix_ns);
        buf.put_u32(self.publisher);
        buf.put_u32(self.sequence);
        buf.resize(size, FILLER);
        Ok(buf.freeze())
    }

    /// The header of `payload`; `None` when it is shorter than
    /// [`HEADER_LEN`] (not a benchmark message).
    pub fn decode(payload: &[u8]) -> Option<PayloadHeader> {
        let header = payload.get(..HEADER_LEN)?;
        let (sent, rest) = header.split_at(8);
        let (publisher, sequence) = rest.split_at(4);
        Some(PayloadHeader {
            sent_unix_ns: u64::from_be_bytes(sent.try_into().ok()?),
            publisher: u32::from_be_bytes(publisher.try_into().ok()?),
            sequence: u32::from_be_bytes(sequence.try_into().ok()?),
        })
    }

    /// Time from sending to `received_unix_ns`; zero if the clock went
    /// backwards.
    pub fn latency(&self, received_unix_ns: u64) -> Duration {
        Duration::from_nanos(received_unix_ns.saturating_sub(self.sent_unix_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_big_endian_and_padded() {
        let header = PayloadHeader {
            sent_unix_ns: 0x0102_0304_0506_0708,
            publisher: 0x0a0b_0c0d,
            sequence: 5,
        };
        let payload = header.encode(20).unwrap();
        assert_eq!(
            &payload[..],
            &[1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 5, b'x', b'x', b'x', b'x']
        );
    }

    #[test]
    fn minimum_size_is_the_header() {
        let header = PayloadHeader {
            sent_unix_ns: 1,
            publisher: 0,
            sequence: 0,
        };
        assert_eq!(header.encode(HEADER_LEN).unwrap().len(), HEADER_LEN);
        assert!(matches!(
            header.encode(15),
            Err(BenchError::PayloadTooSmall { size: 15 })
        ));
    }

    #[test]
    fn short_or_foreign_payloads_have_no_header() {
        assert_eq!(PayloadHeader::decode(b""), None);
        assert_eq!(PayloadHeader::decode(b"hello"), None);
        assert_eq!(PayloadHeader::decode(&[0; 15]), None);
        assert!(PayloadHeader::decode(&[0; 16]).is_some());
    }

    #[test]
    fn latency_saturates_when_the_clock_goes_back() {
        let header = PayloadHeader {
            sent_unix_ns: 10_000,
            publisher: 0,
            sequence: 0,
        };
        assert_eq!(header.latency(9_000), Duration::ZERO);
        assert_eq!(header.latency(12_500), Duration::from_nanos(2_500));
    }
}
