//! AES-128-ECB on single blocks (aws-lc-rs) and the draft's four-pass
//! Feistel network built on it (draft-ietf-quic-load-balancers-21 §5.4.2).
//!
//! Everything works on stack arrays; nothing allocates per call.

use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
};

use super::{QuicLbError, MAX_PLAINTEXT_LEN};

/// One AES block.
pub(crate) type Block = [u8; 16];

/// Longest half of a four-pass plaintext: ceil(19 / 2).
const MAX_HALF_LEN: usize = MAX_PLAINTEXT_LEN.div_ceil(2);

/// An expanded AES-128 key for single-block encryption and decryption.
///
/// aws-lc-rs expands the key schedule once, in `EncryptingKey::ecb` and
/// `DecryptingKey::ecb`; each block operation is then one call of
/// `AES_ecb_encrypt` on the caller's 16 octets, in place.
pub(crate) struct Aes128 {
    encrypt: EncryptingKey,
    decrypt: DecryptingKey,
}

impl Aes128 {
    pub(crate) fn new(key: &[u8; 16]) -> Result<Self, QuicLbError> {
        let unbound = || UnboundCipherKey::new(&AES_128, key).map_err(|_| QuicLbError::Crypto);
        Ok(Self {
            encrypt: EncryptingKey::ecb(unbound()?).map_err(|_| QuicLbError::Crypto)?,
            decrypt: DecryptingKey::ecb(unbound()?).map_err(|_| QuicLbError::Crypto)?,
        })
    }

    /// Encrypts one block in place.
    #[inline]
    pub(crate) fn encrypt_block(&self, block: &mut Block) -> Result<(), QuicLbError> {
        self.encrypt
            .less_safe_encrypt(block, EncryptionContext::None)
            .map(|_| ())
            .map_err(|_| QuicLbError::Crypto)
    }

    /// Decrypts one block in place.
    #[inline]
    pub(crate) fn decrypt_block(&self, block: &mut Block) -> Result<(), QuicLbError> {
        self.decrypt
            .decrypt(block, DecryptionContext::None)
            .map(|_| ())
            .map_err(|_| QuicLbError::Crypto)
    }
}

/// `expand(length, pass, input)` of the draft: `input` in the most
/// significant octets, zeros, then `length` and `pass` in the last two.
pub(crate) fn expand(length: usize, pass: u8, input: &[u8]) -> Block {
    let mut block = [0u8; 16];
    block[..input.len()].copy_from_slice(input);
    // length <= 19 (checked by LbConfig), so it fits an octet.
    block[14] = length as u8;
    block[15] = pass;
    block
}

/// One half of the Feistel state: `half_len` octets used.
type Half = [u8; MAX_HALF_LEN];

/// The four-pass network for one plaintext length (5..=19, not 16).
pub(crate) struct FourPass<'k> {
    aes: &'k Aes128,
    /// `plaintext_len`: server ID length + nonce length.
    len: usize,
    /// `half_len`: `len` / 2, rounded up.
    half: usize,
}

impl<'k> FourPass<'k> {
    pub(crate) fn new(aes: &'k Aes128, len: usize) -> Self {
        Self {
            aes,
            len,
            half: len.div_ceil(2),
        }
    }

    fn odd(&self) -> bool {
        self.len % 2 == 1
    }

    /// `target ^= truncate(AES(expand(len, pass, input)), half_len)`.
    #[inline]
    fn round(&self, pass: u8, input: &Half, target: &mut Half) -> Result<(), QuicLbError> {
        let mut block = expand(self.len, pass, &input[..self.half]);
        self.aes.encrypt_block(&mut block)?;
        target[..self.half]
            .iter_mut()
            .zip(&block)
            .for_each(|(t, m)| *t ^= m);
        Ok(())
    }

    /// For an odd length, the last octet of a left half keeps only its
    /// high nibble.
    fn clear_left(&self, left: &mut Half) {
        if self.odd() {
            left[self.half - 1] &= 0xf0;
        }
    }

    /// For an odd length, the first octet of a right half keeps only its
    /// low nibble.
    fn clear_right(&self, right: &mut Half) {
        if self.odd() {
            right[0] &= 0x0f;
        }
    }

    /// Splits `len` octets into left and right halves; for an odd length
    /// the middle octet is shared, high nibble left, low nibble right.
    fn split(&self, data: &[u8]) -> (Half, Half) {
        let mut left = [0u8; MAX_HALF_LEN];
        let mut right = [0u8; MAX_HALF_LEN];
        left[..self.half].copy_from_slice(&data[..self.half]);
        right[..self.half].copy_from_slice(&data[self.len - self.half..self.len]);
        self.clear_left(&mut left);
        self.clear_right(&mut right);
        (left, right)
    }

    /// Joins two halves into `out[..len]`: the inverse of [`Self::split`].
    fn join(&self, left: &Half, right: &Half, out: &mut [u8]) {
        let h = self.half;
        out[..h].copy_from_slice(&left[..h]);
        if self.odd() {
            out[h - 1] |= right[0];
            out[h..self.len].copy_from_slice(&right[1..h]);
        } else {
            out[h..self.len].copy_from_slice(&right[..h]);
        }
    }

    /// Encrypts `data[..len]` in place (steps 1–12 of the draft).
    pub(crate) fn encrypt(&self, data: &mut [u8]) -> Result<(), QuicLbError> {
        let (mut left, mut right) = self.split(data);
        self.round(1, &left, &mut right)?;
        self.clear_right(&mut right);
        self.round(2, &right, &mut left)?;
        self.clear_left(&mut left);
        self.round(3, &left, &mut right)?;
        self.clear_right(&mut right);
        self.round(4, &right, &mut left)?;
        self.clear_left(&mut left);
        self.join(&left, &right, data);
        Ok(())
    }

    /// Decrypts `data[..len]` in place. With `need_prefix` octets wanted
    /// (the server ID length), the fourth pass is skipped when they all lie
    /// in the left half; then only `data[..need_prefix]` is meaningful.
    pub(crate) fn decrypt(&self, data: &mut [u8], need_prefix: usize) -> Result<(), QuicLbError> {
        let (mut left, mut right) = self.split(data);
        self.round(4, &right, &mut left)?;
        self.clear_left(&mut left);
        self.round(3, &left, &mut right)?;
        self.clear_right(&mut right);
        self.round(2, &right, &mut left)?;
        self.clear_left(&mut left);
        // left_0 holds len / 2 whole octets (the odd middle one is split).
        if need_prefix > self.len / 2 {
            self.round(1, &left, &mut right)?;
            self.clear_right(&mut right);
        }
        self.join(&left, &right, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn block(s: &str) -> Block {
        unhex(s).try_into().unwrap()
    }

    #[test]
    fn expand_matches_the_draft_example() {
        // expand(0x06, 0x02, 0xaaba3c) = 0xaaba3c00000000000000000000000602
        assert_eq!(
            expand(6, 2, &[0xaa, 0xba, 0x3c]),
            block("aaba3c00000000000000000000000602")
        );
    }

    #[test]
    fn split_matches_the_draft_example() {
        // 0x7040b81b55ccf3 splits into 0x7040b810 and 0x0b55ccf3.
        let aes = Aes128::new(&[0; 16]).unwrap();
        let fp = FourPass::new(&aes, 7);
        let (l, r) = fp.split(&unhex("7040b81b55ccf3"));
        assert_eq!(&l[..4], &unhex("7040b810")[..]);
        assert_eq!(&r[..4], &unhex("0b55ccf3")[..]);
        let mut joined = [0u8; 7];
        fp.join(&l, &r, &mut joined);
        assert_eq!(&joined[..], &unhex("7040b81b55ccf3")[..]);
    }

    /// Every AES input and output of the draft's §5.4.2 "Encryption
    /// Example", pass by pass.
    #[test]
    fn aes_rounds_match_the_draft_encryption_example() {
        let aes = Aes128::new(&block("fdf726a9893ec05c0632d3956680baf0")).unwrap();
        let steps = [
            (
                "31441a90000000000000000000000701",
                "a255dd8cdacf01948d3a848c3c7fee23",
            ),
            (
                "0e3c1ff9000000000000000000000702",
                "e5e452cb9e1bedb0b2bf830506bf4c4e",
            ),
            (
                "d4a04850000000000000000000000703",
                "b7821ab3024fed0913b6a04d18e3216f",
            ),
            // The draft's step 10 text XORs with "0xb3e4357c", a typo for
            // the first four octets of this output (its result 0x67947d2c
            // is only right with 0xb334357c).
            (
                "09be054a000000000000000000000704",
                "b334357cfdf81e3fafe180154eaf7378",
            ),
        ];
        for (input, output) in steps {
            let mut b = block(input);
            aes.encrypt_block(&mut b).unwrap();
            assert_eq!(b, block(output), "AES({input})");
            aes.decrypt_block(&mut b).unwrap();
            assert_eq!(b, block(input));
        }
        let mut data = unhex("31441a9c69c275");
        FourPass::new(&aes, 7).encrypt(&mut data).unwrap();
        assert_eq!(data, unhex("67947d29be054a"));
        FourPass::new(&aes, 7).decrypt(&mut data, 7).unwrap();
        assert_eq!(data, unhex("31441a9c69c275"));
    }

    #[test]
    fn keys_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Aes128>();
    }
}
