//! A bdev on a regular file or a block device, through io_uring.
//!
//! Both are opened with `O_DIRECT` so the appliance's data does not sit
//! twice in memory and FUA means what it says. A file system that refuses
//! `O_DIRECT` (tmpfs), or whose direct-I/O alignment is coarser than the
//! volume's block size, gets buffered I/O instead; the reason is logged and
//! kept ([`FileBdev::buffered_reason`]). With `O_DIRECT`, a caller's buffer
//! goes to the kernel as it is when its address and length are multiples of
//! 4096 (an [`AlignedBuf`](crate::AlignedBuf) holding whole pages, as the
//! transport's pooled buffers do); any other goes through a per-thread
//! bounce buffer.
//!
//! Unmap punches a hole (`fallocate(PUNCH_HOLE | KEEP_SIZE)`) on both. On a
//! block device the kernel turns that into WRITE ZEROES that may deallocate
//! (`blkdev_fallocate`), and it guarantees the blocks read back as zeroes;
//! `BLKDISCARD` does not (the kernel dropped `discard_zeroes_data` in 4.12),
//! and [`Bdev::unmap`] promises zeroes. So a device is thin provisioned when
//! its queue reports `write_zeroes_max_bytes > 0` in sysfs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::aligned::{is_aligned, with_bounce};
use crate::check;
use crate::uring;
use crate::{
    Bdev, BdevError, BlockCount, BlockSize, Durability, ErrorKind, Geometry, Lba, Provisioning,
};

/// `BLKGETSIZE64`: device size in bytes (linux/fs.h).
const BLKGETSIZE64: libc::Ioctl = libc::_IOR::<u64>(0x12, 114);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Device { zeroes_on_unmap: bool },
}

/// A bdev on a regular file or a block device.
#[derive(Debug)]
pub struct FileBdev {
    name: String,
    path: PathBuf,
    file: File,
    kind: Kind,
    block_size: BlockSize,
    block_count: AtomicU64,
    buffered_reason: Option<String>,
    resize: Mutex<()>,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setup_err(op: &'static str) -> impl FnOnce(io::Error) -> BdevError {
    move |e| BdevError::io(op, ErrorKind::Setup, e)
}

/// Opens `path` read-write with `O_DIRECT`, or buffered when the file
/// system refuses it (EINVAL at open). Returns the reason for buffering.
fn open_direct(path: &Path, extra_flags: libc::c_int) -> io::Result<(File, Option<String>)> {
    let open = |flags| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags | extra_flags)
            .open(path)
    };
    match open(libc::O_DIRECT) {
        Ok(file) => Ok((file, None)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let file = open(0)?;
            Ok((
                file,
                Some(format!("the file system refuses O_DIRECT ({e})")),
            ))
        }
        Err(e) => Err(e),
    }
}

fn statx(file: &File) -> io::Result<libc::statx> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open, the path is an empty C string used with
    // AT_EMPTY_PATH, and stx is a valid out-pointer.
    cvt(unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS | libc::STATX_DIOALIGN,
            &mut stx,
        )
    })?;
    Ok(stx)
}

/// Why O_DIRECT cannot serve `block_size`-sized requests on `file`, if it
/// cannot. Linux 6.1+ reports the alignment (STATX_DIOALIGN); older kernels
/// leave the field unset and we keep O_DIRECT.
fn direct_misfit(stx: &libc::statx, block_size: BlockSize) -> Option<String> {
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    match stx.stx_dio_offset_align {
        0 => Some("the file system reports no O_DIRECT support for this file".to_owned()),
        align if align > block_size.bytes() => Some(format!(
            "O_DIRECT needs {align}-byte alignment, the volume's blocks are {} bytes",
            block_size.bytes()
        )),
        _ => None,
    }
}

impl FileBdev {
    /// Opens (or with `create`, creates at `size` bytes, sparse) a regular
    /// file. An existing file keeps its size even when `size` differs;
    /// call [`Bdev::resize`] to change it.
    pub fn open_file(
        name: impl Into<String>,
        path: impl AsRef<Path>,
        block_size: BlockSize,
        size: Option<u64>,
        create: bool,
    ) -> Result<Self, BdevError> {
        let path = path.as_ref();
        let bs = u64::from(block_size.bytes());
        if let Some(size) = size {
            if size == 0 || size % bs != 0 {
                return Err(BdevError::setup(
                    "open file bdev",
                    format!("size {size} must be a non-zero multiple of the {bs}-byte block size"),
                ));
            }
        }
        if create && !path.exists() {
            let size = size.ok_or_else(|| {
                BdevError::setup(
                    "create file bdev",
                    format!(
                        "{} does not exist; give a size to create it",
                        path.display()
                    ),
                )
            })?;
            create_sparse(path, size)?;
        }
        let (file, mut buffered_reason) = open_direct(path, libc::O_CLOEXEC)
            .map_err(|e| with_path(e, path))
            .map_err(setup_err("open file bdev"))?;
        let stx = statx(&file).map_err(setup_err("stat file bdev"))?;
        if u32::from(stx.stx_mode) & libc::S_IFMT != libc::S_IFREG {
            return Err(BdevError::setup(
                "open file bdev",
                format!(
                    "{} is not a regular file; use a device bdev for block devices",
                    path.display()
                ),
            ));
        }
        lock_exclusive(&file, path)?;
        let file = match (buffered_reason.is_none(), direct_misfit(&stx, block_size)) {
            (true, Some(reason)) => {
                buffered_reason = Some(reason);
                drop(file);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .map_err(setup_err("open file bdev"))?;
                // SAFETY: as above.
                cvt(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) })
                    .map_err(setup_err("lock file bdev"))?;
                file
            }
            _ => file,
        };
        let bytes = stx.stx_size;
        if bytes % bs != 0 {
            tracing::warn!(path = %path.display(), bytes, "file size is not whole blocks; the tail is not exposed");
        }
        if let Some(size) = size.filter(|&s| s != bytes) {
            tracing::info!(path = %path.display(), existing = bytes, requested = size, "keeping the existing file's size");
        }
        Self::finish(
            name.into(),
            path,
            file,
            Kind::File,
            block_size,
            bytes / bs,
            buffered_reason,
        )
    }

    /// Opens a block device exclusively (`O_EXCL`: fails while it is mounted
    /// or held by another opener). Its size comes from `BLKGETSIZE64`.
    pub fn open_device(
        name: impl Into<String>,
        path: impl AsRef<Path>,
        block_size: BlockSize,
    ) -> Result<Self, BdevError> {
        let path = path.as_ref();
        let (file, mut buffered_reason) = open_direct(path, libc::O_CLOEXEC | libc::O_EXCL)
            .map_err(|e| with_path(e, path))
            .map_err(setup_err("open device bdev"))?;
        if !file
            .metadata()
            .map_err(setup_err("stat device bdev"))?
            .file_type()
            .is_block_device()
        {
            return Err(BdevError::setup(
                "open device bdev",
                format!(
                    "{} is not a block device; use a file bdev for regular files",
                    path.display()
                ),
            ));
        }
        let stx = statx(&file).map_err(setup_err("stat device bdev"))?;
        let mut sector: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer.
        cvt(unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut sector) })
            .map_err(setup_err("BLKSSZGET"))?;
        if buffered_reason.is_none() {
            // The logical sector size bounds O_DIRECT alignment on kernels
            // that do not report STATX_DIOALIGN for block devices.
            buffered_reason = direct_misfit(&stx, block_size).or_else(|| {
                (sector as u32 > block_size.bytes()).then(|| {
                    format!(
                        "the device's {sector}-byte sectors are larger than the volume's {}-byte blocks",
                        block_size.bytes()
                    )
                })
            });
            if let Some(reason) = &buffered_reason {
                // O_DIRECT can be cleared on an open file (fcntl(2)).
                // SAFETY: fcntl on an open fd with integer arguments.
                let flags = cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) })
                    .map_err(setup_err("open device bdev"))?;
                // SAFETY: as above.
                cvt(unsafe {
                    libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_DIRECT)
                })
                .map_err(setup_err("open device bdev"))?;
                tracing::debug!(%reason, "cleared O_DIRECT");
            }
        }
        let mut bytes: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
        cvt(unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut bytes) })
            .map_err(setup_err("BLKGETSIZE64"))?;
        let zeroes_on_unmap =
            sysfs_queue_value(&stx, "write_zeroes_max_bytes").is_some_and(|v| v > 0);
        let kind = Kind::Device { zeroes_on_unmap };
        let blocks = bytes / u64::from(block_size.bytes());
        Self::finish(
            name.into(),
            path,
            file,
            kind,
            block_size,
            blocks,
            buffered_reason,
        )
    }

    fn finish(
        name: String,
        path: &Path,
        file: File,
        kind: Kind,
        block_size: BlockSize,
        blocks: u64,
        buffered_reason: Option<String>,
    ) -> Result<Self, BdevError> {
        if let Some(reason) = &buffered_reason {
            tracing::warn!(bdev = %name, path = %path.display(), %reason, "using buffered I/O");
        }
        if let Some(reason) = uring::probe() {
            tracing::info!(bdev = %name, %reason, "using pread/pwrite instead of io_uring");
        }
        Ok(FileBdev {
            name,
            path: path.to_owned(),
            file,
            kind,
            block_size,
            block_count: AtomicU64::new(blocks),
            buffered_reason,
            resize: Mutex::new(()),
        })
    }

    /// Whether I/O bypasses the page cache (`O_DIRECT`).
    pub fn direct_io(&self) -> bool {
        self.buffered_reason.is_none()
    }

    /// Why I/O is buffered, when it is.
    pub fn buffered_reason(&self) -> Option<&str> {
        self.buffered_reason.as_deref()
    }

    /// Whether I/O goes through io_uring (false: pread/pwrite, see the log).
    pub fn io_uring(&self) -> bool {
        uring::probe().is_none()
    }

    /// The file or device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn capacity(&self) -> BlockCount {
        BlockCount(self.block_count.load(Ordering::Acquire))
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (offset, len) = (offset as libc::off_t, len as libc::off_t);
        loop {
            // SAFETY: fallocate on an open fd with integer arguments.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset, len) };
            match cvt(rc) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map(drop),
            }
        }
    }

    /// For a file system that cannot punch holes: the blocks still read
    /// back as zeroes, they just stay allocated.
    fn write_zero_buffers(&self, offset: u64, len: u64) -> io::Result<()> {
        const STEP: u64 = 1 << 20;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(STEP) as usize;
            with_bounce(n, |buf| {
                buf.fill(0);
                uring::write_all_at(&self.file, buf, offset + done, false)
            })?;
            done += n as u64;
        }
        Ok(())
    }

    fn lseek(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        // SAFETY: lseek on an open fd with integer arguments.
        let pos = unsafe { libc::lseek(self.file.as_raw_fd(), offset as libc::off_t, whence) };
        if pos >= 0 {
            return Ok(Some(pos as u64));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // No data (SEEK_DATA) or hole (SEEK_HOLE) at or after offset.
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        }
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Creates `path` at `size` bytes without allocating (ftruncate), durably:
/// the file and its directory entry are synced.
fn create_sparse(path: &Path, size: u64) -> Result<(), BdevError> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let file = match created {
        Ok(file) => file,
        // Created meanwhile by someone else: open it as it is.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(setup_err("create file bdev")(with_path(e, path))),
    };
    file.set_len(size).map_err(setup_err("size file bdev"))?;
    file.sync_all().map_err(setup_err("sync file bdev"))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(setup_err("sync file bdev directory"))
}

/// A number from the device's request-queue attributes in sysfs. A
/// partition has no `queue/` of its own; its parent disk's applies.
fn sysfs_queue_value(stx: &libc::statx, attr: &str) -> Option<u64> {
    let dev = format!(
        "/sys/dev/block/{}:{}",
        stx.stx_rdev_major, stx.stx_rdev_minor
    );
    [
        format!("{dev}/queue/{attr}"),
        format!("{dev}/../queue/{attr}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|s| s.trim().parse().ok())
}

impl Bdev for FileBdev {
    fn name(&self) -> &str {
        &self.name
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: self.block_size,
            block_count: self.capacity(),
            thin_provisioned: match self.kind {
                Kind::File => true,
                Kind::Device { zeroes_on_unmap } => zeroes_on_unmap,
            },
            volatile_cache: true,
        }
    }

    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        let range = check::buffer(self.block_size, self.capacity(), lba, buf.len())?;
        if range.len == 0 {
            return Ok(());
        }
        let result = if self.direct_io() && !is_aligned(buf) {
            with_bounce(buf.len(), |bounce| {
                uring::read_exact_at(&self.file, bounce, range.offset)?;
                buf.copy_from_slice(bounce);
                Ok(())
            })
        } else {
            uring::read_exact_at(&self.file, buf, range.offset)
        };
        result.map_err(|e| BdevError::io("read", ErrorKind::ReadFailed, e))
    }

    fn write(&self, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), BdevError> {
        let range = check::buffer(self.block_size, self.capacity(), lba, buf.len())?;
        if range.len == 0 {
            return Ok(());
        }
        let fua = durability == Durability::Fua;
        let result = if self.direct_io() && !is_aligned(buf) {
            with_bounce(buf.len(), |bounce| {
                bounce.copy_from_slice(buf);
                uring::write_all_at(&self.file, bounce, range.offset, fua)
            })
        } else {
            uring::write_all_at(&self.file, buf, range.offset, fua)
        };
        result.map_err(|e| BdevError::io("write", ErrorKind::WriteFailed, e))
    }

    fn flush(&self) -> Result<(), BdevError> {
        uring::fdatasync(&self.file).map_err(|e| BdevError::io("flush", ErrorKind::WriteFailed, e))
    }

    fn unmap(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        let range = check::blocks(self.block_size, self.capacity(), lba, count)?;
        if range.len == 0 {
            return Ok(());
        }
        let failed = |e| BdevError::io("unmap", ErrorKind::WriteFailed, e);
        match (self.kind, self.punch_hole(range.offset, range.len)) {
            (_, Ok(())) => Ok(()),
            (Kind::File, Err(e)) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                tracing::debug!(bdev = %self.name, "file system cannot punch holes; writing zeroes");
                self.write_zero_buffers(range.offset, range.len)
                    .map_err(failed)
            }
            (Kind::Device { .. }, Err(e)) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Err(BdevError::Unsupported {
                    what: "unmap (the device cannot write zeroes)",
                })
            }
            (_, Err(e)) => Err(failed(e)),
        }
    }

    /// `FALLOC_FL_ZERO_RANGE` keeps the blocks allocated and is a metadata
    /// operation on file systems that support it; otherwise zero buffers.
    fn write_zeroes(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        let range = check::blocks(self.block_size, self.capacity(), lba, count)?;
        if range.len == 0 {
            return Ok(());
        }
        let failed = |e| BdevError::io("write zeroes", ErrorKind::WriteFailed, e);
        match self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            range.offset,
            range.len,
        ) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => self
                .write_zero_buffers(range.offset, range.len)
                .map_err(failed),
            Err(e) => Err(failed(e)),
        }
    }

    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError> {
        let capacity = self.capacity();
        let range = check::blocks(self.block_size, capacity, lba, BlockCount(1))?;
        let bs = u64::from(self.block_size.bytes());
        let end = capacity.0 * bs;
        let rest = BlockCount(capacity.0 - lba.0);
        if matches!(self.kind, Kind::Device { .. }) {
            return Ok((Provisioning::Mapped, rest));
        }
        let failed = |e| BdevError::io("provisioning", ErrorKind::ReadFailed, e);
        let data = match self.lseek(range.offset, libc::SEEK_DATA) {
            Ok(data) => data,
            // No SEEK_DATA support: the file system reports everything as data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Ok((Provisioning::Mapped, rest))
            }
            Err(e) => return Err(failed(e)),
        };
        match data {
            None => Ok((Provisioning::Deallocated, rest)),
            Some(data) if data >= range.end() => {
                let hole_end = (data / bs * bs).min(end);
                Ok((
                    Provisioning::Deallocated,
                    BlockCount((hole_end - range.offset) / bs),
                ))
            }
            Some(data) => {
                // The block holds data (perhaps only part of it).
                let hole = self
                    .lseek(data, libc::SEEK_HOLE)
                    .map_err(failed)?
                    .unwrap_or(end);
                let mapped_end = hole.next_multiple_of(bs).min(end);
                Ok((
                    Provisioning::Mapped,
                    BlockCount((mapped_end - range.offset) / bs),
                ))
            }
        }
    }

    fn resize(&self, blocks: BlockCount) -> Result<(), BdevError> {
        if matches!(self.kind, Kind::Device { .. }) {
            return Err(BdevError::Unsupported {
                what: "resizing a block device",
            });
        }
        let _one_at_a_time = self.resize.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = blocks
            .0
            .checked_mul(u64::from(self.block_size.bytes()))
            .ok_or_else(|| {
                BdevError::setup("resize file bdev", format!("{} blocks overflow", blocks.0))
            })?;
        // Publish a smaller capacity before truncating and a larger one
        // after extending, so no range-checked request reaches past EOF.
        let old = self.capacity();
        if blocks < old {
            self.block_count.store(blocks.0, Ordering::Release);
        }
        if let Err(e) = self.file.set_len(bytes) {
            self.block_count.store(old.0, Ordering::Release);
            return Err(setup_err("resize file bdev")(e));
        }
        self.block_count.store(blocks.0, Ordering::Release);
        Ok(())
    }

    /// Every call waits for the device (one submission per call).
    fn prefers_offload(&self) -> bool {
        true
    }
}

/// How long opening a file bdev waits for the previous holder's lock: a
/// process killed with SIGKILL releases it only when the kernel has torn
/// down its io_uring instances, which happens a moment after the process is
/// gone — so an appliance restarted at once must not take that for a
/// second user of the file.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Takes the exclusive lock that keeps two bdevs (or two appliances) off one
/// file.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), BdevError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on an open fd has no memory-safety preconditions.
        match cvt(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(BdevError::setup(
                    "lock file bdev",
                    format!("{} is in use by another process ({e})", path.display()),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::conformance;

    const MIB: u64 = 1 << 20;

    /// A tempdir on a disk file system (O_DIRECT works) and one on tmpfs
    /// (it does not), when the machine has /dev/shm.
    fn dirs() -> Vec<tempfile::TempDir> {
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            dirs.push(shm);
        }
        dirs
    }

    fn create(dir: &Path, block_size: BlockSize, bytes: u64) -> FileBdev {
        FileBdev::open_file("f0", dir.join("vol"), block_size, Some(bytes), true).unwrap()
    }

    #[test]
    fn conformance_on_every_file_system() {
        for dir in dirs() {
            for block_size in [BlockSize::B512, BlockSize::B4096] {
                for suite in [
                    conformance::round_trip,
                    conformance::rejects_bad_requests,
                    conformance::unmap_zeroes,
                    conformance::fua_and_flush,
                    conformance::resize_keeps_data,
                ] {
                    let b = create(dir.path(), block_size, 2 * MIB);
                    let g = b.geometry();
                    assert!(g.thin_provisioned && g.volatile_cache);
                    suite(&b);
                    drop(b);
                    std::fs::remove_file(dir.path().join("vol")).unwrap();
                }
            }
        }
    }

    #[test]
    fn aligned_buffers_go_to_o_direct_without_a_bounce() {
        use crate::aligned::bounced;
        use crate::AlignedBuf;
        let dir = tempfile::tempdir().unwrap();
        for block_size in [BlockSize::B512, BlockSize::B4096] {
            let b = create(dir.path(), block_size, MIB);
            if !b.direct_io() {
                eprintln!("no O_DIRECT on {:?}; skipped", dir.path());
                return;
            }
            let pattern: Vec<u8> = (0..3 * 4096 + 1).map(|i| (i % 251) as u8).collect();
            let data = AlignedBuf::from(&pattern[..2 * 4096]);
            let mut back = AlignedBuf::zeroed(2 * 4096);
            let before = bounced();
            b.write(Lba(8), &data, Durability::Cached).unwrap();
            b.write(Lba(64), &data, Durability::Fua).unwrap();
            b.read(Lba(8), &mut back).unwrap();
            assert_eq!(bounced() - before, 0, "aligned 4K I/O copied");
            assert!(back[..] == data[..], "read back what was written");

            // Misaligned address, then (512-byte blocks) a length that is
            // not whole pages: bounced, with the same result.
            let before = bounced();
            let odd = &pattern[1..1 + 4096];
            b.write(Lba(0), odd, Durability::Cached).unwrap();
            let mut back = vec![0u8; 4096 + 1];
            b.read(Lba(0), &mut back[1..]).unwrap();
            assert!(&back[1..] == odd, "read back what was written");
            assert_eq!(bounced() - before, 2);
            if block_size == BlockSize::B512 {
                let before = bounced();
                b.write(Lba(3), &data[..512], Durability::Cached).unwrap();
                assert_eq!(bounced() - before, 1);
            }
            drop(b);
            std::fs::remove_file(dir.path().join("vol")).unwrap();
        }
    }

    #[test]
    fn tmpfs_works_with_or_without_direct_io() {
        // tmpfs refuses O_DIRECT before Linux 6.6 and accepts it after.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm; skipped");
            return;
        };
        let b = create(dir.path(), BlockSize::B512, MIB);
        match b.buffered_reason() {
            Some(reason) => assert!(!b.direct_io() && reason.contains("O_DIRECT"), "{reason}"),
            None => assert!(b.direct_io()),
        }
        conformance::round_trip(&b);
    }

    #[test]
    fn direct_io_needs_alignment_no_coarser_than_the_block() {
        // SAFETY: statx is plain old data.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        assert_eq!(
            direct_misfit(&stx, BlockSize::B512),
            None,
            "old kernel: keep O_DIRECT"
        );
        stx.stx_mask = libc::STATX_DIOALIGN;
        stx.stx_dio_offset_align = 512;
        assert_eq!(direct_misfit(&stx, BlockSize::B512), None);
        stx.stx_dio_offset_align = 4096;
        assert!(direct_misfit(&stx, BlockSize::B512)
            .unwrap()
            .contains("4096"));
        assert_eq!(direct_misfit(&stx, BlockSize::B4096), None);
        stx.stx_dio_offset_align = 0;
        assert!(direct_misfit(&stx, BlockSize::B4096).is_some());
    }

    #[test]
    fn disk_file_systems_use_direct_io_and_io_uring() {
        let dir = tempfile::tempdir().unwrap();
        let b = create(dir.path(), BlockSize::B512, MIB);
        // Informational where /tmp is itself tmpfs or io_uring is disabled.
        eprintln!(
            "direct_io={} io_uring={} reason={:?}",
            b.direct_io(),
            b.io_uring(),
            b.buffered_reason()
        );
        if b.direct_io() {
            assert!(b.buffered_reason().is_none());
        }
    }

    #[test]
    fn new_files_are_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let b = create(dir.path(), BlockSize::B4096, 64 * MIB);
        assert_eq!(b.geometry().block_count, BlockCount(16 * 1024));
        assert_eq!(
            b.provisioning(Lba(0)).unwrap(),
            (Provisioning::Deallocated, BlockCount(16 * 1024))
        );
        b.write(Lba(100), &vec![1u8; 4096], Durability::Cached)
            .unwrap();
        assert_eq!(b.provisioning(Lba(100)).unwrap().0, Provisioning::Mapped);
        conformance::check_provisioning_reads_zero(&b);
    }

    #[test]
    fn reopened_file_keeps_data_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        {
            let b = FileBdev::open_file("f0", &path, BlockSize::B512, Some(MIB), true).unwrap();
            b.write(Lba(77), &data, Durability::Fua).unwrap();
        }
        // A different requested size does not truncate an existing file.
        let b = FileBdev::open_file("f0", &path, BlockSize::B512, Some(4 * MIB), true).unwrap();
        assert_eq!(b.geometry().block_count, BlockCount(MIB / 512));
        let mut back = vec![0u8; 8192];
        b.read(Lba(77), &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn open_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        let setup = |r: Result<FileBdev, BdevError>| r.unwrap_err().kind();
        let missing = FileBdev::open_file("f", &path, BlockSize::B512, Some(MIB), false);
        assert_eq!(setup(missing), ErrorKind::Setup);
        let no_size = FileBdev::open_file("f", &path, BlockSize::B512, None, true);
        assert_eq!(setup(no_size), ErrorKind::Setup);
        let odd = FileBdev::open_file("f", &path, BlockSize::B4096, Some(4096 + 512), true);
        assert_eq!(setup(odd), ErrorKind::Setup);
        assert!(!path.exists());
        let not_a_device = FileBdev::open_device("f", dir.path(), BlockSize::B512);
        assert_eq!(setup(not_a_device), ErrorKind::Setup);
        let held = create(dir.path(), BlockSize::B512, MIB);
        let second = FileBdev::open_file("f", &path, BlockSize::B512, None, false);
        assert!(second.unwrap_err().to_string().contains("lock"));
        drop(held);
        let regular_as_device = FileBdev::open_device("f", &path, BlockSize::B512);
        assert_eq!(setup(regular_as_device), ErrorKind::Setup);
    }

    #[test]
    fn concurrent_writers_overlapping() {
        for dir in dirs() {
            let b: Arc<dyn Bdev> = Arc::new(create(dir.path(), BlockSize::B512, MIB));
            conformance::concurrent_writers(b, true);
        }
    }

    #[test]
    fn concurrent_writers_disjoint() {
        for dir in dirs() {
            let b: Arc<dyn Bdev> = Arc::new(create(dir.path(), BlockSize::B4096, MIB));
            conformance::concurrent_writers(b, false);
        }
    }

    /// A loop device over a sparse file, detached on drop.
    struct Loop(String);

    impl Loop {
        fn attach(backing: &Path, sector_size: u32) -> Option<Loop> {
            let out = Command::new("losetup")
                .args(["-f", "--show", "--sector-size", &sector_size.to_string()])
                .arg(backing)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
        }
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }

    #[test]
    fn block_device_through_a_loop_device() {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("disk");
        File::create(&backing).unwrap().set_len(8 * MIB).unwrap();
        let Some(dev) = Loop::attach(&backing, 512) else {
            eprintln!("cannot attach a loop device (needs root and losetup); skipped");
            return;
        };
        let b = FileBdev::open_device("d0", &dev.0, BlockSize::B512).unwrap();
        assert_eq!(b.geometry().block_count, BlockCount(8 * MIB / 512));
        assert!(b.geometry().volatile_cache);
        // Exclusive: a second opener is refused.
        assert!(FileBdev::open_device("d1", &dev.0, BlockSize::B512).is_err());
        conformance::round_trip(&b);
        conformance::rejects_bad_requests(&b);
        conformance::fua_and_flush(&b);
        assert_eq!(
            b.resize(BlockCount(1)).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(
            b.provisioning(Lba(0)).unwrap(),
            (Provisioning::Mapped, BlockCount(8 * MIB / 512))
        );
        if b.geometry().thin_provisioned {
            b.write(Lba(0), &vec![9u8; 64 * 512], Durability::Cached)
                .unwrap();
            b.unmap(Lba(8), BlockCount(16)).unwrap();
            let mut back = vec![1u8; 64 * 512];
            b.read(Lba(0), &mut back).unwrap();
            assert!(back[..8 * 512].iter().all(|&x| x == 9));
            assert!(back[8 * 512..24 * 512].iter().all(|&x| x == 0));
            assert!(back[24 * 512..].iter().all(|&x| x == 9));
        }
    }

    #[test]
    fn small_blocks_on_a_4k_device_use_buffered_io() {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("disk");
        File::create(&backing).unwrap().set_len(4 * MIB).unwrap();
        let Some(dev) = Loop::attach(&backing, 4096) else {
            eprintln!("cannot attach a loop device (needs root and losetup); skipped");
            return;
        };
        let b = FileBdev::open_device("d0", &dev.0, BlockSize::B512).unwrap();
        assert!(!b.direct_io());
        conformance::round_trip(&b);
        let b4k = {
            drop(b);
            FileBdev::open_device("d0", &dev.0, BlockSize::B4096).unwrap()
        };
        assert!(b4k.direct_io(), "{:?}", b4k.buffered_reason());
        conformance::round_trip(&b4k);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_a_byte_model(ops in conformance::ops(48), tmpfs in any::<bool>()) {
            let dir = if tmpfs {
                tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())
            } else {
                tempfile::tempdir()
            }.unwrap();
            let b = create(dir.path(), BlockSize::B512, 48 * 512);
            conformance::against_model(&b, &ops)?;
        }
    }
}
