//! The physical floor of this machine's loopback TCP, measured in the same
//! run as the targets: a ping-pong round trip of one iSCSI header's size
//! (what a QD1 4 KiB read cannot beat), and one stream's throughput (what
//! a 128 KiB sequential read cannot beat).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::stats::{median, percentile};

/// A basic header segment is 48 bytes (RFC 7143 §11.2).
const MESSAGE: usize = 48;
const STREAM_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    pub round_trips: usize,
    pub rtt_p50_us: f64,
    pub rtt_p99_us: f64,
    pub rtt_min_us: f64,
    /// One TCP stream over 127.0.0.1, bytes per second.
    pub stream_bytes_per_second: f64,
}

/// Ping-pong for about `duration`, then stream for about `duration`.
pub fn measure(duration: Duration) -> Result<Floor> {
    let samples = ping_pong(duration).context("loopback ping-pong")?;
    let stream = one_stream(duration).context("loopback stream")?;
    Ok(Floor {
        round_trips: samples.len(),
        rtt_p50_us: median(&samples).unwrap_or(f64::NAN),
        rtt_p99_us: percentile(&samples, 99.0).unwrap_or(f64::NAN),
        rtt_min_us: samples.iter().copied().fold(f64::INFINITY, f64::min),
        stream_bytes_per_second: stream,
    })
}

/// Round-trip times in microseconds; the echo side runs on its own thread
/// like a target would.
fn ping_pong(duration: Duration) -> Result<Vec<f64>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        let (mut socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE];
        loop {
            match socket.read_exact(&mut buf) {
                Ok(()) => socket.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut socket = TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    let mut buf = [0x5au8; MESSAGE];
    let mut samples = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let start = Instant::now();
        socket.write_all(&buf)?;
        socket.read_exact(&mut buf)?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    drop(socket);
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(samples)
}

/// Bytes per second one TCP stream carries from one thread to another.
fn one_stream(duration: Duration) -> Result<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let sink = thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut socket, _) = listener.accept()?;
        let mut buf = vec![0u8; STREAM_CHUNK];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            match socket.read(&mut buf)? {
                0 => return Ok((total, start.elapsed())),
                n => total += n as u64,
            }
        }
    });
    let mut socket = TcpStream::connect(addr)?;
    let chunk = vec![0xa5u8; STREAM_CHUNK];
    let end = Instant::now() + duration;
    while Instant::now() < end {
        socket.write_all(&chunk)?;
    }
    drop(socket);
    let (bytes, elapsed) = sink
        .join()
        .map_err(|_| anyhow::anyhow!("sink thread panicked"))??;
    Ok(bytes as f64 / elapsed.as_secs_f64())
}
