//! HeaderDigest / DataDigest (RFC 7143 §11.1, §13.1): CRC32C over the
//! header (BHS + AHS) or over the data segment including its padding.
//! The digest is sent least significant byte first (RFC 7143 §12.1 refers to
//! the iSCSI CRC as in RFC 3385, whose bytes go on the wire little-endian).

/// Which digests are in effect on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

pub(crate) fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

pub(crate) fn to_wire(crc: u32) -> [u8; 4] {
    crc.to_le_bytes()
}

pub(crate) fn from_wire(bytes: [u8; 4]) -> u32 {
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3720_b4_zeroes_vector() {
        // RFC 3720 appendix B.4: 32 bytes of zeroes.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(to_wire(0x8a91_36aa), [0xaa, 0x36, 0x91, 0x8a]);
    }
}
