//! Bad input: garbage, truncated, reordered and corrupted streams give a
//! clear error, never a panic, and nothing is stored. The streams are
//! built by hand from FORMAT.md, which this also checks.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use proptest::prelude::*;
use reservoir_backup::{
    decode_stream, BackupErrorKind, ChangeSource, ChunkBytes, Repository, StreamHeader,
    VolumeIdentity, STREAM_VERSION,
};

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(body);
    f
}

fn header() -> StreamHeader {
    StreamHeader {
        stream_version: STREAM_VERSION,
        volume: VolumeIdentity::new("g", 512).unwrap(),
        snapshot: "s".into(),
        parent: None,
        chunk_size: ChunkBytes::new(4096).unwrap(),
        volume_size: 4 * 4096,
        source: ChangeSource::Full,
        planned_bytes: 4 * 4096,
    }
}

fn request(header: &StreamHeader) -> Vec<u8> {
    let body = serde_json::json!({ "op": "backup", "header": header });
    frame(0x02, &serde_json::to_vec(&body).unwrap())
}

fn data(offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    b.extend_from_slice(payload);
    frame(0x10, &b)
}

fn zero(offset: u64, len: u64) -> Vec<u8> {
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    frame(0x11, &b)
}

/// The digest of FORMAT.md: CRC32C over kind, offset, len, CRC per record.
fn end(records: &[(u8, u64, u64, u32)]) -> Vec<u8> {
    let mut digest = 0u32;
    let (mut data, mut zero) = (0u64, 0u64);
    for &(kind, offset, len, crc) in records {
        let mut e = vec![kind];
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(&crc.to_le_bytes());
        digest = crc32c::crc32c_append(digest, &e);
        if kind == 1 {
            data += len
        } else {
            zero += len
        }
    }
    let mut b = (records.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(&data.to_le_bytes());
    b.extend_from_slice(&zero.to_le_bytes());
    b.extend_from_slice(&digest.to_le_bytes());
    frame(0x12, &b)
}

/// Header, DATA at 0, ZERO over chunks 1-2, DATA at 3, END: as frames.
fn valid_frames() -> Vec<Vec<u8>> {
    let a = vec![7u8; 4096];
    let b = vec![9u8; 4096];
    vec![
        request(&header()),
        data(0, &a),
        zero(4096, 8192),
        data(12288, &b),
        end(&[
            (1, 0, 4096, crc32c::crc32c(&a)),
            (2, 4096, 8192, 0),
            (1, 12288, 4096, crc32c::crc32c(&b)),
        ]),
    ]
}

#[test]
fn the_documented_stream_decodes() {
    let (h, totals) = decode_stream(&valid_frames().concat()).unwrap();
    assert_eq!(h, header());
    assert_eq!(totals.records, 3);
}

#[test]
fn named_errors() {
    let f = valid_frames();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            [&f[0][..], &frame(0x5a, &[])[..]].concat(),
            "unknown record type 0x5a",
        ),
        (
            [
                f[0].clone(),
                f[2].clone(),
                f[1].clone(),
                f[3].clone(),
                f[4].clone(),
            ]
            .concat(),
            "out of order",
        ),
        (f[..4].concat(), "without END"),
        ([&f.concat()[..], &f[1][..]].concat(), "after END"),
        (
            [f[0].clone(), f[1].clone(), f[2].clone(), f[4].clone()].concat(),
            "END says",
        ),
        ([&f[0][..], &zero(4096, 100)[..]].concat(), "chunk boundary"),
        (
            [&f[0][..], &data(0, &[1u8; 8192])[..]].concat(),
            "more than one",
        ),
        (
            [
                &f[0][..],
                &{
                    let mut d = data(0, &[5u8; 4096]);
                    *d.last_mut().unwrap() ^= 1;
                    d
                }[..],
            ]
            .concat(),
            "CRC32C",
        ),
        (
            [&f[0][..], &[0x10, 0xff, 0xff, 0xff, 0x7f][..]].concat(),
            "allowed",
        ),
    ];
    for (bytes, want) in cases {
        let err = decode_stream(&bytes).unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?}, got {err}");
    }
    let mut future = header();
    future.stream_version = 9;
    let err = decode_stream(&[request(&future), f[4].clone()].concat()).unwrap_err();
    assert_eq!(err.kind(), BackupErrorKind::Unsupported, "{err}");
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_stream(&bytes);
    }

    #[test]
    fn damaged_streams_are_refused(at in 0usize..20_000, bit in 0u8..8, cut in 0usize..20_000) {
        let good = valid_frames().concat();
        let mut flipped = good.clone();
        let at = at % good.len();
        flipped[at] ^= 1 << bit;
        // A flip may land in the header's JSON and still parse (the planned
        // byte count, say); it must never panic, and a flip in a record
        // must be caught.
        let r = decode_stream(&flipped);
        if at >= valid_frames()[0].len() {
            prop_assert!(r.is_err());
        }
        let cut = cut % good.len();
        prop_assert!(decode_stream(&good[..cut]).is_err());
    }
}

fn hello(token: &[u8]) -> Vec<u8> {
    let mut b = b"RSVRBKUP".to_vec();
    b.extend_from_slice(&STREAM_VERSION.to_le_bytes());
    b.extend_from_slice(&(token.len() as u16).to_le_bytes());
    b.extend_from_slice(token);
    frame(0x01, &b)
}

/// Sends `bytes` after HELLO, then reads everything the server answers.
fn converse(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&hello(b"test-token-0123456789")).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_live_server_refuses_bad_streams_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let f = valid_frames();
    let reordered = [f[0].clone(), f[3].clone(), f[1].clone(), f[4].clone()].concat();
    assert!(converse(s.local_addr(), &reordered).contains("out of order"));
    let truncated = f[..3].concat();
    assert!(converse(s.local_addr(), &truncated).contains("without END"));
    let unknown = [&f[0][..], &frame(0x77, &[1, 2, 3])[..]].concat();
    assert!(converse(s.local_addr(), &unknown).contains("0x77"));
    assert!(converse(s.local_addr(), &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2])
        .contains("unknown record type 0xde"));
    assert!(Repository::open(tmp.path())
        .unwrap()
        .list()
        .unwrap()
        .is_empty());
    // The well-formed stream is accepted by the same server.
    assert!(converse(s.local_addr(), &f.concat()).contains("committed"));
    assert_eq!(client(&s).list().unwrap().len(), 1);
}
