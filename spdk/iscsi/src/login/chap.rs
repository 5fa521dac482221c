//! CHAP (RFC 1994) as iSCSI uses it (RFC 7143 §12.1.3): CHAP_A=5 (MD5),
//! response = MD5(identifier || secret || challenge).

use md5::{Digest, Md5};
use rand::RngCore;

/// The only algorithm offered: 5 = MD5 (§12.1.3 requires it).
pub const ALGORITHM_MD5: &str = "5";

/// Challenge length in bytes. RFC 7143 §12.1.3 asks for challenges that
/// are not guessable and not reused; 32 random bytes exceed its 16-byte floor.
const CHALLENGE_LEN: usize = 32;

/// A challenge we sent and must see answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub id: u8,
    pub bytes: Vec<u8>,
}

impl Challenge {
    pub fn random() -> Challenge {
        let mut rng = rand::thread_rng();
        let mut bytes = vec![0u8; CHALLENGE_LEN];
        rng.fill_bytes(&mut bytes);
        Challenge {
            id: (rng.next_u32() & 0xff) as u8,
            bytes,
        }
    }
}

pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Compares without an early exit so timing does not leak the prefix.
pub fn verify(expected: &[u8], got: &[u8]) -> bool {
    expected.len() == got.len()
        && expected
            .iter()
            .zip(got)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Encodes a binary value as hex (§6.1 binary-value, "0x" form).
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decodes a binary value in hex ("0x"/"0X") or base64 ("0b"/"0B") form.
pub fn decode_binary(value: &str) -> Option<Vec<u8>> {
    let (prefix, rest) = value.split_at_checked(2)?;
    match prefix {
        "0x" | "0X" => decode_hex(rest),
        "0b" | "0B" => decode_base64(rest),
        _ => None,
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .map(|c| (c as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    if digits.is_empty() {
        return None;
    }
    // An odd count has an implied leading zero nibble.
    let mut out = Vec::with_capacity(digits.len().div_ceil(2));
    let (head, tail) = digits.split_at(digits.len() % 2);
    if let [d] = head {
        out.push(*d);
    }
    out.extend(tail.chunks_exact(2).map(|p| (p[0] << 4) | p[1]));
    Some(out)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_forms() {
        assert_eq!(decode_binary("0x0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_binary("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("0bAQI="), Some(vec![1, 2]));
        assert_eq!(decode_binary("0x"), None);
        assert_eq!(decode_binary("12"), None);
        assert_eq!(decode_binary("0xzz"), None);
        assert_eq!(encode_hex(&[0, 0xab]), "0x00ab");
    }

    #[test]
    fn md5_response_matches_rfc1994_construction() {
        // MD5 of 0x01 || "secret" || 0x0203, computed independently.
        let r = response(1, b"secret", &[2, 3]);
        let mut h = Md5::new();
        h.update(b"\x01secret\x02\x03");
        assert_eq!(r.to_vec(), h.finalize().to_vec());
        assert!(verify(&r, &r));
        assert!(!verify(&r, &r[..15]));
    }

    #[test]
    fn challenges_differ() {
        assert_ne!(Challenge::random().bytes, Challenge::random().bytes);
        assert_eq!(Challenge::random().bytes.len(), CHALLENGE_LEN);
    }
}
