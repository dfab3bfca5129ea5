//! Nix's base-32 encoding ("nix32").
//!
//! Nix encodes hashes with a 32-letter alphabet that omits `e o u t` (to avoid
//! accidental words) and, unlike RFC 4648, reads the bytes *backwards*: the first
//! character of the encoding holds the most significant bits of the last byte.
//!
//! Invariant: `decode(encode(b)) == b` for every byte string, and `decode`
//! rejects characters outside the alphabet as well as encodings whose padding
//! bits (the bits beyond the byte length) are not zero, so that every byte string
//! has exactly one spelling.

use thiserror::Error;

/// The alphabet, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Nix32Error {
    #[error("invalid character {0:?} in nix32 string")]
    InvalidChar(char),
    #[error("nix32 string of length {0} does not encode a whole number of bytes")]
    InvalidLength(usize),
    #[error("nix32 string has non-zero padding bits")]
    NonZeroPadding,
}

/// Length of the encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    if n == 0 { 0 } else { (n * 8 - 1) / 5 + 1 }
}

/// Number of bytes an encoding of `len` characters decodes to, if `len` is a
/// valid encoding length.
pub fn decoded_len(len: usize) -> Option<usize> {
    let n = len * 5 / 8;
    (encoded_len(n) == len).then_some(n)
}

pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = Vec::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let lo = bytes[i] >> j;
        let hi = if i + 1 < bytes.len() { (bytes[i + 1] as u16) << (8 - j) } else { 0 };
        let c = ((lo as u16) | hi) & 0x1f;
        out.push(ALPHABET[c as usize]);
    }
    // The alphabet is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// [`encode`] of a 20-byte store path digest into 32 characters, without
/// allocating (this is on the path of every store path printed).
///
/// The digest is a 160-bit little-endian number whose character k (from
/// the end) holds bits 5k..5k+5: each 5-byte group is 40 bits, 8 whole
/// characters, so four `u64` groups are encoded independently.
pub fn encode_20(bytes: &[u8; 20]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (group, chars) in bytes.chunks_exact(5).zip(out.rchunks_exact_mut(8)) {
        let mut w = [0u8; 8];
        w[..5].copy_from_slice(group);
        let w = u64::from_le_bytes(w);
        for (i, c) in chars.iter_mut().rev().enumerate() {
            *c = ALPHABET[((w >> (5 * i)) & 0x1f) as usize];
        }
    }
    out
}

/// [`decode`] of a 32-character store path hash into its 20-byte digest,
/// without allocating (the groups of [`encode_20`] read back).
pub fn decode_20(s: &[u8]) -> Result<[u8; 20], Nix32Error> {
    let s: &[u8; 32] = s.try_into().map_err(|_| Nix32Error::InvalidLength(s.len()))?;
    // 32 characters are exactly 160 bits: there are no padding bits.
    let mut out = [0u8; 20];
    for (group, chars) in out.chunks_exact_mut(5).zip(s.rchunks_exact(8)) {
        let mut w = 0u64;
        for (i, &c) in chars.iter().rev().enumerate() {
            let d = digit(c).ok_or(Nix32Error::InvalidChar(c as char))?;
            w |= u64::from(d) << (5 * i);
        }
        group.copy_from_slice(&w.to_le_bytes()[..5]);
    }
    Ok(out)
}

/// Digit value by character; `0xff` for characters outside the alphabet.
const DIGITS: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn digit(c: u8) -> Option<u8> {
    let d = DIGITS[c as usize];
    (d != 0xff).then_some(d)
}

pub fn decode(s: &str) -> Result<Vec<u8>, Nix32Error> {
    let s = s.as_bytes();
    let n = decoded_len(s.len()).ok_or(Nix32Error::InvalidLength(s.len()))?;
    let mut out = vec![0u8; n];
    for (k, &c) in s.iter().rev().enumerate() {
        let d = digit(c).ok_or(Nix32Error::InvalidChar(c as char))?;
        let b = k * 5;
        let (i, j) = (b / 8, b % 8);
        out[i] |= d << j;
        let carry = (d as u16) >> (8 - j);
        if i + 1 < n {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(Nix32Error::NonZeroPadding);
        }
    }
    Ok(out)
}

/// Whether `s` consists only of nix32 characters.
pub fn is_nix32(s: &str) -> bool {
    s.bytes().all(|c| digit(c).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // sha256("") in nix32, as printed by `nix-hash --type sha256 --to-base32`.
        let hex_empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let bytes = hex::decode(hex_empty).unwrap();
        assert_eq!(encode(&bytes), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
        assert_eq!(decode("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap(), bytes);
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
    }

    #[test]
    fn roundtrip_all_lengths() {
        for n in 0..70 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes, "length {n}");
        }
    }

    #[test]
    fn fixed_20_byte_forms_agree_with_the_general_ones() {
        for seed in 0..200u32 {
            let bytes: [u8; 20] = std::array::from_fn(|i| (seed.wrapping_mul(2654435761) >> (i % 24)) as u8 ^ (i as u8).wrapping_mul(29));
            let enc = encode_20(&bytes);
            assert_eq!(std::str::from_utf8(&enc).unwrap(), encode(&bytes));
            assert_eq!(decode_20(&enc).unwrap(), bytes);
        }
        assert_eq!(decode_20(b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz").unwrap(), [0xff; 20]);
        assert_eq!(decode_20(b"e0000000000000000000000000000000"), Err(Nix32Error::InvalidChar('e')));
        assert_eq!(decode_20(b"000"), Err(Nix32Error::InvalidLength(3)));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("0e"), Err(Nix32Error::InvalidChar('e')));
        assert_eq!(decode("000"), Err(Nix32Error::InvalidLength(3)));
        // "zz" would need bits beyond one byte.
        assert_eq!(decode("zz"), Err(Nix32Error::NonZeroPadding));
    }
}
