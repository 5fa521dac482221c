//! Framing: header first, then (only once its length is known to be within
//! the negotiated limit) the data segment; encoding of target PDUs.
//!
//! ```text
//! | BHS 48 | AHS 4*n | HeaderDigest 4? | data | pad to 4 | DataDigest 4? |
//! ```

use super::bhs::{Pdu, RawBhs, TargetPdu, BHS_LEN};
use super::digest::{self, Digests};
use super::HeaderError;

/// A cursor over a byte slice whose reads return `None` instead of panicking
/// when the input is short.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn consumed(&self) -> usize {
        self.pos
    }
}

/// Why a byte stream cannot be framed; each is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    Oversized {
        len: usize,
        max: usize,
        header: [u8; BHS_LEN],
    },
    #[error("header digest mismatch")]
    HeaderDigest,
}

/// One framed initiator PDU. Its data segment is borrowed from the receive
/// buffer: whoever keeps it copies it once, into the buffer it ends up in.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// The header bytes as received, returned in a Reject (§11.17.1).
    pub header: [u8; BHS_LEN],
    pub pdu: Result<Pdu, HeaderError>,
    pub data: &'a [u8],
    /// False when DataDigest is on and the data segment failed it.
    pub data_digest_ok: bool,
}

/// Limits that apply to incoming PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Our MaxRecvDataSegmentLength (8192 until declared otherwise, §13.12).
    pub max_data: usize,
    pub digests: Digests,
}

pub(crate) fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Tries to frame one PDU from the front of `buf`. `Ok(None)` means more
/// bytes are needed; the returned size is how many bytes the frame used.
/// Bytes of the whole PDU whose header is `raw`: header, AHS, digests and
/// padded data segment (§11.2).
fn frame_len(raw: &RawBhs, digests: Digests) -> usize {
    let data_len = raw.data_len();
    let digest_len = |on: bool| if on { 4 } else { 0 };
    BHS_LEN
        + usize::from(raw.total_ahs_len) * 4
        + digest_len(digests.header)
        + pad4(data_len)
        + digest_len(digests.data && data_len > 0)
}

/// How many more bytes complete the PDU that `partial` begins (at least
/// the rest of its header when that is incomplete); 0 for no bytes.
pub fn missing_bytes(partial: &[u8], digests: Digests) -> usize {
    match partial.first_chunk::<BHS_LEN>() {
        _ if partial.is_empty() => 0,
        None => BHS_LEN - partial.len(),
        Some(header) => {
            frame_len(&RawBhs::from_bytes(header), digests).saturating_sub(partial.len())
        }
    }
}

pub fn decode_frame(
    buf: &[u8],
    limits: FrameLimits,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let mut r = Reader::new(buf);
    let Some(header) = r.array::<BHS_LEN>() else {
        return Ok(None);
    };
    let raw = RawBhs::from_bytes(&header);
    let data_len = raw.data_len();
    // Checked before waiting for (or buffering) any of the payload.
    if data_len > limits.max_data {
        return Err(FrameError::Oversized {
            len: data_len,
            max: limits.max_data,
            header,
        });
    }
    let ahs_len = usize::from(raw.total_ahs_len) * 4;
    if buf.len() < frame_len(&raw, limits.digests) {
        return Ok(None);
    }
    let Some(ahs) = r.take(ahs_len) else {
        return Ok(None);
    };
    if limits.digests.header {
        let Some(wire) = r.array::<4>() else {
            return Ok(None);
        };
        let crc = digest::crc32c_append(digest::crc32c(&header), ahs);
        if crc != digest::from_wire(wire) {
            return Err(FrameError::HeaderDigest);
        }
    }
    let Some(padded) = r.take(pad4(data_len)) else {
        return Ok(None);
    };
    let mut data_digest_ok = true;
    if limits.digests.data && data_len > 0 {
        let Some(wire) = r.array::<4>() else {
            return Ok(None);
        };
        data_digest_ok = digest::crc32c(padded) == digest::from_wire(wire);
    }
    let frame = Frame {
        header,
        pdu: Pdu::decode(&raw, ahs),
        data: &padded[..data_len],
        data_digest_ok,
    };
    Ok(Some((frame, r.consumed())))
}

/// Appends `pdu` with its data segment to `out`.
pub fn encode(pdu: &TargetPdu, data: &[u8], digests: Digests, out: &mut Vec<u8>) {
    encode_header(pdu, data.len(), digests, out);
    out.extend_from_slice(data);
    encode_trailer(data, digests, out);
}

/// Appends the header of `pdu` (and its digest) for a data segment of
/// `data_len` bytes that is sent separately.
pub fn encode_header(pdu: &TargetPdu, data_len: usize, digests: Digests, out: &mut Vec<u8>) {
    let header = pdu.header(data_len).to_bytes();
    out.extend_from_slice(&header);
    if digests.header {
        out.extend_from_slice(&digest::to_wire(digest::crc32c(&header)));
    }
}

/// Appends the padding of a data segment of `len` bytes (§11.1) and
/// returns it.
pub fn encode_padding(len: usize, out: &mut Vec<u8>) -> &'static [u8] {
    let padding = &[0u8; 3][..pad4(len) - len];
    out.extend_from_slice(padding);
    padding
}

/// Appends what follows a data segment on the wire: its padding and, when
/// negotiated, the digest over data and padding. Nothing for no data.
pub fn encode_trailer(data: &[u8], digests: Digests, out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let padding = encode_padding(data.len(), out);
    if digests.data {
        let crc = digest::crc32c_append(digest::crc32c(data), padding);
        out.extend_from_slice(&digest::to_wire(crc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::bhs::Itt;
    use crate::CmdSn;
    use proptest::prelude::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_data: 8192,
        digests: Digests {
            header: true,
            data: true,
        },
    };

    fn nop_out(data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; BHS_LEN];
        h[0] = 0x40;
        h[1] = 0x80;
        h[7] = data.len() as u8;
        h[16..20].copy_from_slice(&7u32.to_be_bytes());
        h[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut v = h.to_vec();
        v.extend_from_slice(&digest::to_wire(digest::crc32c(&h)));
        let start = v.len();
        v.extend_from_slice(data);
        v.resize(start + pad4(data.len()), 0);
        let crc = digest::crc32c(&v[start..]);
        v.extend_from_slice(&digest::to_wire(crc));
        v
    }

    #[test]
    fn frames_with_digests_and_padding() {
        let bytes = nop_out(b"hello");
        assert_eq!(bytes.len(), 48 + 4 + 8 + 4);
        for short in 0..bytes.len() {
            assert!(decode_frame(&bytes[..short], LIMITS).unwrap().is_none());
        }
        let (frame, used) = decode_frame(&bytes, LIMITS).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame.data, b"hello");
        assert!(frame.data_digest_ok);
        match frame.pdu.unwrap() {
            Pdu::NopOut(n) => {
                assert!(n.immediate);
                assert_eq!(n.itt, Itt(7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_bytes_complete_a_partial_pdu() {
        let bytes = nop_out(b"hello");
        for have in 0..=bytes.len() {
            let missing = missing_bytes(&bytes[..have], LIMITS.digests);
            if have == 0 {
                assert_eq!(missing, 0, "nothing begun");
            } else if have < BHS_LEN {
                assert_eq!(missing, BHS_LEN - have, "the rest of the header");
            } else {
                assert_eq!(missing, bytes.len() - have, "{have} bytes in");
            }
        }
    }

    #[test]
    fn digest_errors() {
        let mut bytes = nop_out(b"hello");
        bytes[53] ^= 1;
        let (frame, _) = decode_frame(&bytes, LIMITS).unwrap().unwrap();
        assert!(!frame.data_digest_ok);
        bytes[3] ^= 1;
        assert_eq!(
            decode_frame(&bytes, LIMITS).unwrap_err(),
            FrameError::HeaderDigest
        );
    }

    #[test]
    fn oversized_rejected_from_header_alone() {
        let mut h = [0u8; BHS_LEN];
        h[5] = 0x01; // 64 KiB
        assert!(matches!(
            decode_frame(&h, LIMITS),
            Err(FrameError::Oversized { len: 65536, .. })
        ));
    }

    #[test]
    fn encode_reject_carries_header() {
        let mut out = Vec::new();
        let pdu = TargetPdu::Reject {
            reason: 4,
            stat_sn: 9,
            exp_cmd_sn: CmdSn(1),
            max_cmd_sn: CmdSn(2),
            data_sn: 0,
        };
        encode(&pdu, &[1u8; 48], Digests::default(), &mut out);
        assert_eq!(out.len(), 96);
        assert_eq!(out[0], 0x3f);
        assert_eq!(out[2], 4);
        assert_eq!(&out[24..28], &9u32.to_be_bytes());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let limits = FrameLimits { max_data: 512, digests: Digests::default() };
            let _ = decode_frame(&bytes, limits);
            let _ = decode_frame(&bytes, LIMITS);
        }
    }
}
