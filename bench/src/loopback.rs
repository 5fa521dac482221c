//! The physical floor of this machine's loopback TCP, measured in the same
//! run as the targets, the way sockperf measures it: the client and an echo
//! server are two processes (this binary re-executed with the hidden
//! `--loopback-server PORT`), so every round trip wakes a process on each
//! side through the kernel, as a fio QD1 run against a target does. An
//! in-process ping-pong between two threads is several times faster and
//! not comparable.
//!
//! Two round trips: one iSCSI header each way (48 bytes, RFC 7143 §11.2),
//! and a 48-byte request answered by 48 + 4096 bytes (a Data-In header and
//! one 4 KiB block: what a QD1 4 KiB read moves at the least). Plus one
//! stream's throughput, client to server (what a 128 KiB sequential
//! transfer cannot beat).
//!
//! Both round trips are measured twice: with neither process pinned (the
//! scheduler's choice, as fio and the targets run; it tends to wake the
//! server on the client's CPU), and pinned to two different CPUs (the
//! cross-CPU wake-up sockperf is usually run with, several times slower in
//! a VM where waking another CPU costs an interrupt through the host).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::process::{free_loopback_port, Guarded, Stop};
use crate::stats::{median, percentile};

/// A basic header segment is 48 bytes (RFC 7143 §11.2).
pub const HEADER: usize = 48;
/// The data of one 4 KiB read.
pub const BLOCK: usize = 4096;
const STREAM_CHUNK: usize = 1 << 20;
/// Round trips discarded before timing: the first ones pay for cold
/// caches, page faults and the scheduler learning the two processes.
const WARM_UP: usize = 2000;
const SERVER_START: Duration = Duration::from_secs(10);

/// How the floor is measured, named in the report and the JSON.
pub const METHOD: &str = "two processes, sockperf-style ping-pong: reservoir-bench re-executed \
    as an echo server on 127.0.0.1, blocking sockets, TCP_NODELAY on both ends, one request in \
    flight, 2000 warm-up round trips discarded; once with neither process pinned (as fio and the \
    targets run), once with client and server pinned to two different CPUs; the stream is one \
    connection between the unpinned processes, the median of 5 in a row";

/// Round-trip times of one request/reply shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoundTrip {
    pub request_bytes: usize,
    pub reply_bytes: usize,
    pub round_trips: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
}

impl RoundTrip {
    /// Summarises samples in microseconds.
    pub fn from_samples(request_bytes: usize, reply_bytes: usize, samples: &[f64]) -> Self {
        RoundTrip {
            request_bytes,
            reply_bytes,
            round_trips: samples.len(),
            p50_us: median(samples).unwrap_or(f64::NAN),
            p99_us: percentile(samples, 99.0).unwrap_or(f64::NAN),
            min_us: samples.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Floor {
    pub method: &'static str,
    /// 48 bytes each way, neither process pinned: the floor of any
    /// one-PDU exchange.
    pub header_round_trip: RoundTrip,
    /// 48 bytes out, 48 + 4096 back, neither process pinned: the floor of
    /// a 4 KiB read at QD1.
    pub read_4k_round_trip: RoundTrip,
    /// The same two round trips with client and server on different CPUs;
    /// `None` on a one-CPU machine.
    pub cross_cpu: Option<CrossCpu>,
    /// One TCP stream over 127.0.0.1, bytes per second: the median of
    /// `stream_samples`.
    pub stream_bytes_per_second: f64,
    /// Each stream measured, bytes per second.
    pub stream_samples: [f64; STREAMS],
}

/// Round trips with the client pinned to one CPU and the server to another.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CrossCpu {
    pub client_cpu: usize,
    pub server_cpu: usize,
    pub header_round_trip: RoundTrip,
    pub read_4k_round_trip: RoundTrip,
}

#[cfg(test)]
impl Floor {
    /// A floor for report and chart tests: 20 µs header, 25 µs 4 KiB round trips.
    pub fn fixture() -> Floor {
        let trip = |reply_bytes, p50_us| RoundTrip {
            request_bytes: HEADER,
            reply_bytes,
            round_trips: 1000,
            p50_us,
            p99_us: 2.0 * p50_us,
            min_us: p50_us / 2.0,
        };
        Floor {
            method: METHOD,
            header_round_trip: trip(HEADER, 20.0),
            read_4k_round_trip: trip(HEADER + BLOCK, 25.0),
            cross_cpu: Some(CrossCpu {
                client_cpu: 0,
                server_cpu: 1,
                header_round_trip: trip(HEADER, 50.0),
                read_4k_round_trip: trip(HEADER + BLOCK, 60.0),
            }),
            stream_bytes_per_second: 2.9e9,
            stream_samples: [2.7e9, 2.8e9, 2.9e9, 3.0e9, 3.1e9],
        }
    }
}

/// Streams measured, one after another; the floor is their median, since
/// one stream's rate swings with where the scheduler puts the two
/// processes (single streams measured 2.6 to 5.0 GB/s on one machine in
/// one day).
pub const STREAMS: usize = 5;

/// Starts the echo server, ping-pongs each shape for about `duration` in
/// each placement, then streams [`STREAMS`] times for about `duration`.
/// The servers' logs go to `run_dir`.
pub fn measure(duration: Duration, run_dir: &Path) -> Result<Floor> {
    let (addr, mut server) = start_server(run_dir, None)?;
    let header = ping_pong(addr, HEADER, duration).context("48-byte ping-pong")?;
    let read_4k = ping_pong(addr, HEADER + BLOCK, duration).context("4 KiB ping-pong")?;
    let mut stream_samples = [0.0; STREAMS];
    for sample in &mut stream_samples {
        *sample = one_stream(addr, duration).context("loopback stream")?;
    }
    server.check_alive()?;
    drop(server);
    let cross_cpu = match available_cpus()[..] {
        [client_cpu, server_cpu, ..] => Some(
            cross_cpu(run_dir, client_cpu, server_cpu, duration).context("cross-CPU ping-pong")?,
        ),
        _ => None,
    };
    Ok(Floor {
        method: METHOD,
        header_round_trip: RoundTrip::from_samples(HEADER, HEADER, &header),
        read_4k_round_trip: RoundTrip::from_samples(HEADER, HEADER + BLOCK, &read_4k),
        cross_cpu,
        stream_bytes_per_second: median(&stream_samples).unwrap_or_default(),
        stream_samples,
    })
}

/// Re-executes this binary as the echo server, pinned to `cpu` if given.
fn start_server(run_dir: &Path, cpu: Option<usize>) -> Result<(SocketAddr, Guarded)> {
    let port = free_loopback_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let exe = std::env::current_exe().context("locating reservoir-bench to re-execute")?;
    let mut command = Command::new(exe);
    command.arg("--loopback-server").arg(port.to_string());
    if let Some(cpu) = cpu {
        command.arg("--loopback-cpu").arg(cpu.to_string());
    }
    let log = match cpu {
        None => run_dir.join("loopback-server.log"),
        Some(cpu) => run_dir.join(format!("loopback-server-cpu{cpu}.log")),
    };
    let mut server = Guarded::spawn("loopback echo server", command, &log, Stop::Terminate)?;
    server.wait_listening(addr, SERVER_START)?;
    Ok((addr, server))
}

/// Both round trips from a client thread pinned to `client_cpu` to a
/// server process pinned to `server_cpu`.
fn cross_cpu(
    run_dir: &Path,
    client_cpu: usize,
    server_cpu: usize,
    duration: Duration,
) -> Result<CrossCpu> {
    let (addr, mut server) = start_server(run_dir, Some(server_cpu))?;
    let client = thread::spawn(move || -> Result<(Vec<f64>, Vec<f64>)> {
        pin_current_thread(client_cpu)?;
        Ok((
            ping_pong(addr, HEADER, duration)?,
            ping_pong(addr, HEADER + BLOCK, duration)?,
        ))
    });
    let (header, read_4k) = client
        .join()
        .map_err(|_| anyhow::anyhow!("ping-pong thread panicked"))??;
    server.check_alive()?;
    Ok(CrossCpu {
        client_cpu,
        server_cpu,
        header_round_trip: RoundTrip::from_samples(HEADER, HEADER, &header),
        read_4k_round_trip: RoundTrip::from_samples(HEADER, HEADER + BLOCK, &read_4k),
    })
}

/// The CPUs this process may run on, in order.
fn available_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data and all-zero is the empty set;
    // sched_getaffinity fills the set we own, CPU_ISSET reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins the calling thread (the whole process, for the single-threaded
/// server) to `cpu`.
fn pin_current_thread(cpu: usize) -> Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        anyhow::bail!("CPU {cpu} is beyond CPU_SETSIZE");
    }
    // SAFETY: as in available_cpus; CPU_SET writes inside the set because
    // cpu < CPU_SETSIZE, and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("pinning to CPU {cpu}"));
    }
    Ok(())
}

/// A connection's first 8 bytes: the request size and the reply size,
/// little-endian u32s. A request size of 0 asks for the stream sink.
fn hello(request: usize, reply: usize) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&(request as u32).to_le_bytes());
    bytes[4..].copy_from_slice(&(reply as u32).to_le_bytes());
    bytes
}

fn parse_hello(bytes: [u8; 8]) -> (usize, usize) {
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (word(0) as usize, word(4) as usize)
}

/// Round-trip times in microseconds of 48-byte requests answered by
/// `reply` bytes, after the warm-up.
fn ping_pong(addr: SocketAddr, reply: usize, duration: Duration) -> Result<Vec<f64>> {
    let mut socket = TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.write_all(&hello(HEADER, reply))?;
    let request = [0x5au8; HEADER];
    let mut answer = vec![0u8; reply];
    for _ in 0..WARM_UP {
        socket.write_all(&request)?;
        socket.read_exact(&mut answer)?;
    }
    let mut samples = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let start = Instant::now();
        socket.write_all(&request)?;
        socket.read_exact(&mut answer)?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

/// Bytes per second one connection carries to the server process, timed
/// until the server acknowledges the last byte.
fn one_stream(addr: SocketAddr, duration: Duration) -> Result<f64> {
    let mut socket = TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.write_all(&hello(0, 0))?;
    let chunk = vec![0xa5u8; STREAM_CHUNK];
    let start = Instant::now();
    let end = start + duration;
    while Instant::now() < end {
        socket.write_all(&chunk)?;
    }
    socket.shutdown(Shutdown::Write)?;
    let mut received = [0u8; 8];
    socket.read_exact(&mut received)?;
    let elapsed = start.elapsed();
    Ok(u64::from_le_bytes(received) as f64 / elapsed.as_secs_f64())
}

/// The hidden `--loopback-server PORT [--loopback-cpu N]` mode: serves
/// connections one at a time, single-threaded like a target's connection,
/// until killed. A connection that closes before its hello (the readiness
/// probe) is skipped.
pub fn serve(port: u16, cpu: Option<usize>) -> Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process; the
    // server must not outlive a bench that was killed outright.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    if let Some(cpu) = cpu {
        pin_current_thread(cpu)?;
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    loop {
        let (mut socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        let mut bytes = [0u8; 8];
        if socket.read_exact(&mut bytes).is_err() {
            continue;
        }
        let result = match parse_hello(bytes) {
            (0, _) => sink(&mut socket),
            (request, reply) => echo(&mut socket, request, reply),
        };
        if let Err(error) = result {
            eprintln!("loopback server: {error}");
        }
    }
}

fn echo(socket: &mut TcpStream, request: usize, reply: usize) -> std::io::Result<()> {
    let mut incoming = vec![0u8; request];
    let outgoing = vec![0xc3u8; reply];
    loop {
        match socket.read_exact(&mut incoming) {
            Ok(()) => socket.write_all(&outgoing)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn sink(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        match socket.read(&mut buf)? {
            0 => return socket.write_all(&total.to_le_bytes()),
            n => total += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        assert_eq!(parse_hello(hello(48, 4144)), (48, 4144));
        assert_eq!(parse_hello(hello(0, 0)), (0, 0));
    }

    #[test]
    fn round_trip_summary() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let r = RoundTrip::from_samples(HEADER, HEADER + BLOCK, &samples);
        assert_eq!(r.reply_bytes, 4144);
        assert_eq!(r.round_trips, 100);
        assert_eq!(r.p50_us, 50.5);
        assert_eq!(r.p99_us, 99.0);
        assert_eq!(r.min_us, 1.0);
    }
}
