//! MQTT data representations (MQTT 5.0 §1.5): integers, variable byte
//! integers, UTF-8 strings, binary data and string pairs.
//!
//! Reading goes through [`Reader`], a cursor over a [`Bytes`] that never
//! panics: input that ends too early is [`DecodeError::Malformed`]. Binary
//! data is returned as zero-copy slices of the input. Writing appends to a
//! [`BytesMut`]; the `*_len` functions measure first, so that a packet that
//! cannot be encoded is refused before anything is written.

use bytes::{BufMut, Bytes, BytesMut};

use super::{DecodeError, EncodeError};

/// The largest value of a variable byte integer (4 bytes).
pub(crate) const MAX_VARINT: usize = 268_435_455;

/// The longest UTF-8 string or binary field: a 16-bit length.
pub(crate) const MAX_FIELD: usize = u16::MAX as usize;

const SHORT: DecodeError = DecodeError::Malformed("packet ends inside a field");

/// A cursor over the body of one packet.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless everything has been read: trailing bytes are malformed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("bytes after the last field"))
        }
    }

    fn advance(&mut self, n: usize) -> Result<(usize, usize), DecodeError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(SHORT)?;
        self.pos = end;
        Ok((start, end))
    }

    fn slice(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let (start, end) = self.advance(n)?;
        Ok(&self.buf[start..end])
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(SHORT)?;
        self.pos += 1;
        Ok(b)
    }

    /// A big-endian two byte integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// A big-endian four byte integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A variable byte integer of at most four bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    }

    /// The next `n` bytes, sharing the input's memory.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let (start, end) = self.advance(n)?;
        Ok(self.buf.slice(start..end))
    }

    /// Everything not yet read, sharing the input's memory.
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.pos;
        self.pos = self.buf.len();
        self.buf.slice(start..)
    }

    /// A reader over the next `n` bytes; this reader moves past them.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        self.bytes(n).map(Reader::new)
    }

    /// Binary data: a two byte length and that many bytes (zero-copy).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// A UTF-8 string, borrowed: well-formed UTF-8 without U+0000.
    pub(crate) fn str(&mut self) -> Result<&str, DecodeError> {
        let n = self.u16()?;
        let raw = self.slice(usize::from(n))?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))?;
        if raw.contains(&0) {
            return Err(DecodeError::Malformed("string contains U+0000"));
        }
        Ok(s)
    }

    /// A UTF-8 string: well-formed UTF-8 without U+0000.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// A UTF-8 string pair (name, value).
    pub(crate) fn string_pair(&mut self) -> Result<(String, String), DecodeError> {
        let name = self.string()?;
        let value = self.string()?;
        Ok((name, value))
    }
}

/// Decodes a variable byte integer at the start of `buf`.
///
/// `Ok(None)` when `buf` ends before the integer does; otherwise the value
/// and the number of bytes it took.
pub(crate) fn peek_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::Malformed(
        "variable byte integer longer than 4 bytes",
    ))
}

/// The encoded size of a variable byte integer (values above
/// [`MAX_VARINT`] must be refused by the caller before writing).
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends a variable byte integer; `value` must be at most [`MAX_VARINT`].
pub(crate) fn put_varint(out: &mut BytesMut, value: usize) {
    debug_assert!(value <= MAX_VARINT);
    let mut v = value;
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// The encoded size of a UTF-8 string (two byte length + bytes).
pub(crate) fn string_len(s: &str, what: &'static str) -> Result<usize, EncodeError> {
    binary_len(s.as_bytes(), what)
}

/// The encoded size of binary data (two byte length + bytes).
pub(crate) fn binary_len(b: &[u8], what: &'static str) -> Result<usize, EncodeError> {
    if b.len() > MAX_FIELD {
        Err(EncodeError::TooLong(what))
    } else {
        Ok(2 + b.len())
    }
}

/// Appends a UTF-8 string measured with [`string_len`].
pub(crate) fn put_string(out: &mut BytesMut, s: &str) {
    put_binary(out, s.as_bytes());
}

/// Appends binary data measured with [`binary_len`].
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= MAX_FIELD);
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(bytes))
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for (value, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX_VARINT, 4),
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), len, "{value}");
            assert_eq!(varint_len(value), len);
            assert_eq!(peek_varint(&out), Ok(Some((value as u32, len))));
            let mut r = Reader::new(out.freeze());
            assert_eq!(r.varint(), Ok(value as u32));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_spec_examples() {
        assert_eq!(peek_varint(&[0x80, 0x01]), Ok(Some((128, 2))));
        assert_eq!(
            peek_varint(&[0xFF, 0xFF, 0xFF, 0x7F]),
            Ok(Some((268_435_455, 4)))
        );
        assert_eq!(peek_varint(&[0xFF, 0xFF]), Ok(None));
        assert!(matches!(
            peek_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            reader(&[0x80, 0x80, 0x80, 0x80, 0x01]).varint(),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            reader(&[0x80]).varint(),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn integers_are_big_endian_and_short_input_is_malformed() {
        let mut r = reader(&[0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01]);
        assert_eq!(r.u16(), Ok(0x1234));
        assert_eq!(r.u32(), Ok(0xDEAD_BEEF));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u16(), Err(SHORT));
        assert_eq!(reader(&[]).u8(), Err(SHORT));
        assert_eq!(reader(&[1, 2, 3]).u32(), Err(SHORT));
    }

    #[test]
    fn strings() {
        assert_eq!(reader(b"\x00\x04MQTT").string().as_deref(), Ok("MQTT"));
        assert_eq!(reader(b"\x00\x00").string().as_deref(), Ok(""));
        assert_eq!(reader(b"\x00\x05MQTT").string(), Err(SHORT));
        assert_eq!(
            reader(b"\x00\x02\xC3\x28").string(),
            Err(DecodeError::Malformed("string is not valid UTF-8"))
        );
        assert_eq!(
            reader(b"\x00\x03a\x00b").string(),
            Err(DecodeError::Malformed("string contains U+0000"))
        );
        // Encoded surrogate halves are not UTF-8.
        assert!(reader(b"\x00\x03\xED\xA0\x80").string().is_err());
        let mut r = reader(b"\x00\x01k\x00\x01v");
        assert_eq!(r.string_pair(), Ok(("k".into(), "v".into())));
    }

    #[test]
    fn binary_is_zero_copy() {
        let input = Bytes::from_static(b"\x00\x03abcrest");
        let mut r = Reader::new(input.clone());
        let b = r.binary().unwrap();
        assert_eq!(&b[..], b"abc");
        assert_eq!(b.as_ptr(), input[2..].as_ptr());
        assert_eq!(&r.rest()[..], b"rest");
        assert!(r.is_empty());
        assert!(r.finish().is_ok());
    }

    #[test]
    fn sub_reader_and_trailing_bytes() {
        let mut r = reader(&[1, 2, 3]);
        let mut sub = r.sub(2).unwrap();
        assert_eq!(sub.u16(), Ok(0x0102));
        assert!(r.finish().is_err());
        assert!(r.sub(2).is_err());
    }

    #[test]
    fn write_strings_and_limits() {
        let mut out = BytesMut::new();
        assert_eq!(string_len("MQTT", "s"), Ok(6));
        put_string(&mut out, "MQTT");
        assert_eq!(&out[..], b"\x00\x04MQTT");
        let long = "x".repeat(MAX_FIELD + 1);
        assert_eq!(string_len(&long, "s"), Err(EncodeError::TooLong("s")));
        assert_eq!(string_len(&long[1..], "s"), Ok(MAX_FIELD + 2));
    }
}
