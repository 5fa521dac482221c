//! Frames on the wire (FORMAT.md has the same layout for humans).
//!
//! ```text
//!   frame := tag:u8  body_len:u32le  body[body_len]
//! ```
//!
//! The tag is checked before the length and the length against the tag's
//! bound before anything is allocated, so a hostile peer can make the
//! receiver allocate at most one chunk plus a few bytes per frame. Control
//! frames carry JSON (self-describing, versioned by `stream_version`);
//! bulk frames are fixed binary layouts, little endian.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::stream::StreamHeader;
use crate::types::{BackupId, ChunkBytes};
use crate::{BackupError, BackupErrorKind};

/// Identifies a Reservoir backup connection (first bytes of HELLO).
pub(crate) const MAGIC: [u8; 8] = *b"RSVRBKUP";
/// Stream and protocol version this build speaks.
pub const VERSION: u16 = 1;

const TAG_HELLO: u8 = 0x01;
const TAG_REQUEST: u8 = 0x02;
const TAG_REPLY: u8 = 0x03;
const TAG_DATA: u8 = 0x10;
const TAG_ZERO: u8 = 0x11;
const TAG_END: u8 = 0x12;
const TAG_ACK: u8 = 0x13;

/// Bound of a JSON control frame: a listing of many thousand backups fits.
const MAX_JSON: u32 = 16 << 20;
const DATA_FIXED: u32 = 12;
const HELLO_FIXED: u32 = 12;

/// What a client asks for after HELLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Start (or resume) a backup; DATA/ZERO records and END follow.
    Backup {
        header: StreamHeader,
    },
    /// The manifest summary of one backup (restore plans from it).
    Describe {
        backup: BackupId,
    },
    /// The image of `backup` in `[offset, offset + len)` as records + END.
    Fetch {
        backup: BackupId,
        offset: u64,
        len: u64,
    },
    List,
    Verify {
        backup: Option<BackupId>,
    },
    Prune {
        keep: usize,
    },
}

/// Where a (resumed) backup continues: everything before `next_offset`
/// is durable on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct ResumePoint {
    pub next_offset: u64,
    pub totals: crate::stream::Totals,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(crate) enum Reply {
    Welcome,
    Accept {
        backup: BackupId,
        resume: ResumePoint,
    },
    /// The same volume and snapshot is already stored (a retry after the
    /// commit reply was lost).
    AlreadyComplete {
        info: crate::repo::BackupInfo,
    },
    Committed {
        info: crate::repo::BackupInfo,
    },
    Described {
        info: crate::repo::BackupInfo,
    },
    Listing {
        volumes: Vec<crate::repo::VolumeChain>,
    },
    Verified {
        report: crate::maintain::VerifyReport,
    },
    Pruned {
        report: crate::maintain::PruneReport,
    },
    Error {
        kind: BackupErrorKind,
        message: String,
    },
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Hello {
        version: u16,
        token: Vec<u8>,
    },
    Request(Request),
    Reply(Reply),
    /// One chunk (the volume's last may be short), with the CRC32C of
    /// `payload`.
    Data {
        offset: u64,
        crc: u32,
        payload: Vec<u8>,
    },
    /// `len` bytes of zeroes from `offset`.
    Zero {
        offset: u64,
        len: u64,
    },
    End(crate::stream::Totals),
    /// The server made every record before `next_offset` durable.
    Ack {
        next_offset: u64,
        records: u64,
    },
}

fn body_bound(tag: u8) -> Result<(u32, u32), BackupError> {
    Ok(match tag {
        TAG_HELLO => (
            HELLO_FIXED,
            HELLO_FIXED + crate::types::Token::MAX_LEN as u32,
        ),
        TAG_REQUEST | TAG_REPLY => (2, MAX_JSON),
        TAG_DATA => (DATA_FIXED + 1, DATA_FIXED + ChunkBytes::MAX),
        TAG_ZERO => (16, 16),
        TAG_END => (28, 28),
        TAG_ACK => (16, 16),
        tag => return Err(BackupError::UnknownRecord { tag }),
    })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Decodes one body whose length was already checked against
/// [`body_bound`] (so the fixed-offset reads below are in range).
fn decode_body(tag: u8, body: Vec<u8>) -> Result<Frame, BackupError> {
    let json = |what: &str, e: serde_json::Error| {
        BackupError::protocol(format!(
            "{what} frame is not valid JSON of this version: {e}"
        ))
    };
    Ok(match tag {
        TAG_HELLO => {
            if body[..8] != MAGIC {
                return Err(BackupError::protocol(
                    "the peer is not a Reservoir backup endpoint (bad magic)",
                ));
            }
            let version = u16::from_le_bytes([body[8], body[9]]);
            let len = usize::from(u16::from_le_bytes([body[10], body[11]]));
            if body.len() != HELLO_FIXED as usize + len {
                return Err(BackupError::protocol(format!(
                    "HELLO token length {len} does not match its frame"
                )));
            }
            Frame::Hello {
                version,
                token: body[HELLO_FIXED as usize..].to_vec(),
            }
        }
        TAG_REQUEST => {
            Frame::Request(serde_json::from_slice(&body).map_err(|e| json("REQUEST", e))?)
        }
        TAG_REPLY => Frame::Reply(serde_json::from_slice(&body).map_err(|e| json("REPLY", e))?),
        TAG_DATA => {
            let offset = u64_at(&body, 0);
            let crc = u32_at(&body, 8);
            let mut payload = body;
            payload.drain(..DATA_FIXED as usize);
            Frame::Data {
                offset,
                crc,
                payload,
            }
        }
        TAG_ZERO => Frame::Zero {
            offset: u64_at(&body, 0),
            len: u64_at(&body, 8),
        },
        TAG_END => Frame::End(crate::stream::Totals {
            records: u64_at(&body, 0),
            data_bytes: u64_at(&body, 8),
            zero_bytes: u64_at(&body, 16),
            digest: u32_at(&body, 24),
        }),
        TAG_ACK => Frame::Ack {
            next_offset: u64_at(&body, 0),
            records: u64_at(&body, 8),
        },
        tag => return Err(BackupError::UnknownRecord { tag }),
    })
}

/// Reads one frame. `Ok(None)` on a clean end of stream before a frame.
pub(crate) fn read_frame(r: &mut impl Read) -> io::Result<Option<Result<Frame, BackupError>>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let tag = head[0];
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let (min, max) = match body_bound(tag) {
        Ok(b) => b,
        Err(e) => return Ok(Some(Err(e))),
    };
    if !(min..=max).contains(&len) {
        return Ok(Some(Err(BackupError::protocol(format!(
            "frame 0x{tag:02x} has a {len}-byte body; allowed {min} to {max}"
        )))));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(Some(decode_body(tag, body)))
}

/// Decodes every frame in `bytes`: the fuzz entry point. Never panics; an
/// incomplete last frame is an error.
pub(crate) fn decode_frames(mut bytes: &[u8]) -> Result<Vec<Frame>, BackupError> {
    let mut frames = Vec::new();
    loop {
        match read_frame(&mut bytes) {
            Ok(None) => return Ok(frames),
            Ok(Some(frame)) => frames.push(frame?),
            Err(e) => {
                return Err(BackupError::protocol(format!(
                    "stream ends inside a frame ({e})"
                )))
            }
        }
    }
}

fn head(w: &mut impl Write, tag: u8, len: usize) -> io::Result<()> {
    let len = u32::try_from(len).map_err(|_| io::Error::other("frame too large"))?;
    let mut h = [0u8; 5];
    h[0] = tag;
    h[1..].copy_from_slice(&len.to_le_bytes());
    w.write_all(&h)
}

/// Encodes `frame` (tests and the fuzz corpus; the hot paths below avoid
/// building a `Frame`).
pub(crate) fn encode_frame(w: &mut impl Write, frame: &Frame) -> io::Result<()> {
    match frame {
        Frame::Hello { version, token } => {
            head(w, TAG_HELLO, HELLO_FIXED as usize + token.len())?;
            w.write_all(&MAGIC)?;
            w.write_all(&version.to_le_bytes())?;
            let len = u16::try_from(token.len()).map_err(|_| io::Error::other("token too long"))?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(token)
        }
        Frame::Request(r) => write_json(w, TAG_REQUEST, r),
        Frame::Reply(r) => write_json(w, TAG_REPLY, r),
        Frame::Data {
            offset,
            crc,
            payload,
        } => write_data(w, *offset, *crc, payload),
        Frame::Zero { offset, len } => write_zero(w, *offset, *len),
        Frame::End(t) => write_end(w, t),
        Frame::Ack {
            next_offset,
            records,
        } => {
            head(w, TAG_ACK, 16)?;
            w.write_all(&next_offset.to_le_bytes())?;
            w.write_all(&records.to_le_bytes())
        }
    }
}

fn write_json(w: &mut impl Write, tag: u8, value: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    head(w, tag, body.len())?;
    w.write_all(&body)
}

pub(crate) fn write_request(w: &mut impl Write, r: &Request) -> io::Result<()> {
    write_json(w, TAG_REQUEST, r)
}

pub(crate) fn write_reply(w: &mut impl Write, r: &Reply) -> io::Result<()> {
    write_json(w, TAG_REPLY, r)
}

pub(crate) fn write_data(
    w: &mut impl Write,
    offset: u64,
    crc: u32,
    payload: &[u8],
) -> io::Result<()> {
    head(w, TAG_DATA, DATA_FIXED as usize + payload.len())?;
    let mut fixed = [0u8; DATA_FIXED as usize];
    fixed[..8].copy_from_slice(&offset.to_le_bytes());
    fixed[8..].copy_from_slice(&crc.to_le_bytes());
    w.write_all(&fixed)?;
    w.write_all(payload)
}

pub(crate) fn write_zero(w: &mut impl Write, offset: u64, len: u64) -> io::Result<()> {
    head(w, TAG_ZERO, 16)?;
    w.write_all(&offset.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())
}

pub(crate) fn write_end(w: &mut impl Write, t: &crate::stream::Totals) -> io::Result<()> {
    head(w, TAG_END, 28)?;
    w.write_all(&t.records.to_le_bytes())?;
    w.write_all(&t.data_bytes.to_le_bytes())?;
    w.write_all(&t.zero_bytes.to_le_bytes())?;
    w.write_all(&t.digest.to_le_bytes())
}

pub(crate) fn write_ack(w: &mut impl Write, next_offset: u64, records: u64) -> io::Result<()> {
    encode_frame(
        w,
        &Frame::Ack {
            next_offset,
            records,
        },
    )
}

pub(crate) fn write_hello(w: &mut impl Write, token: &[u8]) -> io::Result<()> {
    encode_frame(
        w,
        &Frame::Hello {
            version: VERSION,
            token: token.to_vec(),
        },
    )
}

/// Wire bytes of a DATA frame with `payload_len` bytes (for accounting).
pub(crate) fn data_frame_len(payload_len: usize) -> u64 {
    5 + u64::from(DATA_FIXED) + payload_len as u64
}

/// Wire bytes of a ZERO frame.
pub(crate) const ZERO_FRAME_LEN: u64 = 21;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let frames = vec![
            Frame::Hello {
                version: VERSION,
                token: b"0123456789abcdef".to_vec(),
            },
            Frame::Data {
                offset: 65536,
                crc: 7,
                payload: vec![1; 4096],
            },
            Frame::Zero {
                offset: 0,
                len: 1 << 20,
            },
            Frame::Ack {
                next_offset: 5,
                records: 2,
            },
            Frame::Request(Request::List),
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            encode_frame(&mut bytes, f).unwrap();
        }
        assert_eq!(decode_frames(&bytes).unwrap(), frames);
        // Unknown tag is named, never skipped.
        let err = decode_frames(&[0x42, 0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("0x42"), "{err}");
        // An oversized DATA frame is refused before allocation.
        let err = decode_frames(&[TAG_DATA, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(err.to_string().contains("allowed"), "{err}");
        // Truncated.
        assert!(decode_frames(&bytes[..bytes.len() - 1]).is_err());
    }
}
