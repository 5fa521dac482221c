//! Entry points for fuzz targets: the two parsers that see untrusted bytes.

/// Frames and decodes one PDU from the front of `bytes` (digests on, so
/// both digest paths are reached). Never panics.
pub fn decode_pdu(bytes: &[u8]) {
    let limits = crate::pdu::FrameLimits {
        max_data: 1 << 24,
        digests: crate::pdu::Digests {
            header: bytes.first().is_some_and(|b| b & 0x80 != 0),
            data: bytes.first().is_some_and(|b| b & 0x80 != 0),
        },
    };
    let _ = crate::pdu::decode_frame(bytes, limits);
}

/// Parses a Login/Text key=value list. Never panics.
pub fn parse_login_keys(bytes: &[u8]) {
    let _ = crate::login::keys::parse(bytes);
}
