//! Positioned reads, writes and syncs through a per-thread io_uring.
//!
//! Each call submits one operation and waits for its completion, so the
//! caller's buffer is owned by the kernel only while this module blocks on
//! it. Reactor integration (many operations in flight, completions polled
//! by the reactor loop) replaces the wait later; the retry rules below stay.
//!
//! If the kernel cannot run io_uring (too old, disabled by sysctl or a
//! seccomp filter), the process falls back to pread/pwrite/fdatasync. That is
//! decided once per process by [`probe`] and logged with its reason.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::OnceLock;

use io_uring::{opcode, types, IoUring, Probe};

/// Ring size: one operation is in flight per thread for now.
const ENTRIES: u32 = 8;

/// Largest transfer per submission; longer requests loop like short ones.
const MAX_IO: usize = 1 << 30;

/// Why io_uring is not used, or `None` when it is. Probed once per process:
/// a ring is created and asked whether it supports every opcode used here
/// (READ/WRITE need Linux 5.6).
pub(crate) fn probe() -> Option<&'static str> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            let reason = probe_ring().err();
            if let Some(reason) = &reason {
                tracing::warn!(%reason, "io_uring unavailable; file bdevs use pread/pwrite");
            }
            reason
        })
        .as_deref()
}

fn probe_ring() -> Result<(), String> {
    let ring = IoUring::new(2).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring opcode probe failed: {e}"))?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks the {name} opcode"));
        }
    }
    Ok(())
}

enum ThreadRing {
    Uninit,
    Ring(Box<IoUring>),
    /// Ring creation failed on this thread (e.g. RLIMIT_MEMLOCK on kernels
    /// before 5.12); this thread uses the synchronous calls.
    Unavailable,
}

thread_local! {
    static RING: RefCell<ThreadRing> = const { RefCell::new(ThreadRing::Uninit) };
}

/// One positioned operation; buffers are raw because the kernel, not Rust,
/// accesses them between submission and completion.
#[derive(Clone, Copy)]
enum Op {
    Read {
        ptr: *mut u8,
        len: usize,
    },
    Write {
        ptr: *const u8,
        len: usize,
        dsync: bool,
    },
    Fdatasync,
}

/// Runs `op` on this thread's ring, or returns `None` when this thread uses
/// the synchronous fallback.
///
/// # Safety
/// The buffer of `op` must be valid (writable for reads) for its length
/// until this function returns; it waits for the completion before returning.
unsafe fn on_ring(file: &File, offset: u64, op: Op) -> Option<io::Result<usize>> {
    RING.with(|cell| {
        let mut state = cell.borrow_mut();
        if matches!(*state, ThreadRing::Uninit) {
            *state = match probe() {
                Some(_) => ThreadRing::Unavailable,
                None => match IoUring::new(ENTRIES) {
                    Ok(ring) => ThreadRing::Ring(Box::new(ring)),
                    Err(error) => {
                        tracing::warn!(%error, "io_uring setup failed on this thread; using pread/pwrite");
                        ThreadRing::Unavailable
                    }
                },
            };
        }
        let ThreadRing::Ring(ring) = &mut *state else {
            return None;
        };
        let fd = types::Fd(file.as_raw_fd());
        let entry = match op {
            Op::Read { ptr, len } => opcode::Read::new(fd, ptr, len as u32).offset(offset).build(),
            Op::Write { ptr, len, dsync } => opcode::Write::new(fd, ptr, len as u32)
                .offset(offset)
                .rw_flags(if dsync { libc::RWF_DSYNC } else { 0 })
                .build(),
            Op::Fdatasync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        };
        // SAFETY: forwarded from this function's contract; submit_one does
        // not return before the completion arrives.
        let result = unsafe { submit_one(ring, &entry) };
        if result.is_err() {
            // The submission may still sit in the queue; a fresh ring next
            // time guarantees it is never submitted with a dead buffer.
            *state = ThreadRing::Uninit;
        }
        Some(result.and_then(completion))
    })
}

/// Submits `entry` and waits for its completion; returns the raw result.
///
/// # Safety
/// Every buffer `entry` points to must stay valid until this returns.
unsafe fn submit_one(ring: &mut IoUring, entry: &io_uring::squeue::Entry) -> io::Result<i32> {
    // SAFETY: the caller keeps the buffers alive until we return, and we
    // return only after the completion (or without having submitted).
    unsafe { ring.submission().push(entry) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    let mut submitted = false;
    loop {
        match ring.submit_and_wait(1) {
            Ok(n) => submitted |= n > 0,
            Err(e) if retryable(&e) => {}
            Err(e) if !submitted => return Err(e),
            Err(e) => {
                // io_uring_enter only fails this way on a broken kernel
                // contract. The kernel may still write into the buffer, so
                // neither returning nor unwinding (which frees it) is sound.
                eprintln!("io_uring wait failed with an operation in flight: {e}; aborting");
                std::process::abort();
            }
        }
        if let Some(cqe) = ring.completion().next() {
            return Ok(cqe.result());
        }
    }
}

fn completion(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// Fills `buf` from `offset`, resubmitting after short reads and EINTR/EAGAIN.
pub(crate) fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let len = buf.len().min(MAX_IO);
        let op = Op::Read {
            ptr: buf.as_mut_ptr(),
            len,
        };
        // SAFETY: buf is a live &mut [u8] of at least len bytes for the call.
        let result = unsafe { on_ring(file, offset, op) }
            .unwrap_or_else(|| file.read_at(&mut buf[..len], offset));
        match result {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if retryable(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset`, resubmitting after short writes and
/// EINTR/EAGAIN. With `dsync` the data is on stable storage on return:
/// RWF_DSYNC on the write, or fdatasync afterwards where the file refuses it.
pub(crate) fn write_all_at(
    file: &File,
    mut buf: &[u8],
    mut offset: u64,
    dsync: bool,
) -> io::Result<()> {
    let mut per_write_dsync = dsync;
    while !buf.is_empty() {
        let len = buf.len().min(MAX_IO);
        let op = Op::Write {
            ptr: buf.as_ptr(),
            len,
            dsync: per_write_dsync,
        };
        // SAFETY: buf is a live &[u8] of at least len bytes for the call.
        let result = match unsafe { on_ring(file, offset, op) } {
            Some(result) => result,
            None => {
                per_write_dsync = false;
                file.write_at(&buf[..len], offset)
            }
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if retryable(&e) => {}
            Err(e) if per_write_dsync && e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                per_write_dsync = false;
            }
            Err(e) => return Err(e),
        }
    }
    if dsync && !per_write_dsync {
        fdatasync(file)?;
    }
    Ok(())
}

/// Makes completed writes to `file` durable.
pub(crate) fn fdatasync(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: Fdatasync carries no buffer.
        let result = unsafe { on_ring(file, 0, Op::Fdatasync) }
            .unwrap_or_else(|| file.sync_data().map(|()| 0));
        match result {
            Err(e) if retryable(&e) => {}
            other => return other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_ring() {
        let file = tempfile::tempfile().unwrap();
        write_all_at(&file, b"hello, ring", 4096, true).unwrap();
        fdatasync(&file).unwrap();
        let mut buf = [0u8; 11];
        read_exact_at(&file, &mut buf, 4096).unwrap();
        assert_eq!(&buf, b"hello, ring");
        let mut past_end = [0u8; 4];
        let e = read_exact_at(&file, &mut past_end, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn short_reads_are_resumed_until_end_of_file() {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[5u8; 4100]).unwrap();
        // The first read returns 4 of 8 bytes; the resubmission hits EOF.
        let mut buf = [0u8; 8];
        let e = read_exact_at(&file, &mut buf, 4096).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(buf[..4], [5; 4]);
    }

    #[test]
    fn synchronous_fallback_round_trip() {
        // A thread whose ring could not be set up uses pread/pwrite.
        std::thread::spawn(|| {
            RING.with(|r| *r.borrow_mut() = ThreadRing::Unavailable);
            let file = tempfile::tempfile().unwrap();
            write_all_at(&file, &[3u8; 1024], 512, true).unwrap();
            fdatasync(&file).unwrap();
            let mut buf = [0u8; 1024];
            read_exact_at(&file, &mut buf, 512).unwrap();
            assert_eq!(buf, [3u8; 1024]);
            RING.with(|r| assert!(matches!(*r.borrow(), ThreadRing::Unavailable)));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn probe_is_stable() {
        assert_eq!(probe(), probe());
    }
}
