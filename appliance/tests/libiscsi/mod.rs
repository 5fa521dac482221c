//! A minimal synchronous initiator over Debian's libiscsi (libiscsi-dev), for
//! tests that must move arbitrary data through a real iSCSI client: none of
//! libiscsi's command-line tools writes caller-chosen data.
//!
//! Only the calls these tests need are declared; the C API is documented in
//! `/usr/include/iscsi/iscsi.h` and `scsi-lowlevel.h` (libiscsi 1.19).

use std::ffi::{c_char, c_int, c_uchar, CStr, CString};
use std::ptr::{self, NonNull};

#[repr(C)]
struct IscsiContext {
    _opaque: [u8; 0],
}

/// `struct scsi_task`; only its first field, `int status`, is read directly.
#[repr(C)]
struct ScsiTask {
    status: c_int,
}

/// `struct scsi_sense` (16 bytes on x86-64 in libiscsi 1.19): the key and the
/// ASC/ASCQ pair, then bit fields this module does not read.
#[repr(C)]
#[derive(Default)]
struct ScsiSense {
    _error_type: c_uchar,
    key: c_int,
    ascq: c_int,
    _sense_specific: [u8; 4],
}

/// `struct iscsi_data`: a Data-Out buffer.
#[repr(C)]
struct IscsiData {
    size: usize,
    data: *mut c_uchar,
}

const ISCSI_SESSION_NORMAL: c_int = 2;
const ISCSI_HEADER_DIGEST_NONE_CRC32C: c_int = 1;
const SCSI_STATUS_GOOD: c_int = 0;
const SCSI_STATUS_CHECK_CONDITION: c_int = 2;
const SCSI_SENSE_UNIT_ATTENTION: c_int = 6;

#[link(name = "iscsi")]
extern "C" {
    fn iscsi_create_context(initiator_name: *const c_char) -> *mut IscsiContext;
    fn iscsi_destroy_context(iscsi: *mut IscsiContext) -> c_int;
    fn iscsi_get_error(iscsi: *mut IscsiContext) -> *const c_char;
    fn iscsi_set_targetname(iscsi: *mut IscsiContext, targetname: *const c_char) -> c_int;
    fn iscsi_set_session_type(iscsi: *mut IscsiContext, session_type: c_int) -> c_int;
    fn iscsi_set_header_digest(iscsi: *mut IscsiContext, digest: c_int) -> c_int;
    fn iscsi_full_connect_sync(
        iscsi: *mut IscsiContext,
        portal: *const c_char,
        lun: c_int,
    ) -> c_int;
    fn iscsi_scsi_command_sync(
        iscsi: *mut IscsiContext,
        lun: c_int,
        task: *mut ScsiTask,
        data: *mut IscsiData,
    ) -> *mut ScsiTask;
    fn scsi_cdb_testunitready() -> *mut ScsiTask;
    fn scsi_cdb_readcapacity16() -> *mut ScsiTask;
    fn scsi_cdb_read16(
        lba: u64,
        xferlen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut ScsiTask;
    fn scsi_cdb_write16(
        lba: u64,
        xferlen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut ScsiTask;
    fn scsi_cdb_synchronizecache16(
        lba: u64,
        num_blocks: u32,
        syncnv: c_int,
        immed: c_int,
    ) -> *mut ScsiTask;
    fn scsi_task_add_data_in_buffer(task: *mut ScsiTask, len: c_int, buf: *mut c_uchar) -> c_int;
    fn scsi_task_get_status(task: *mut ScsiTask, sense: *mut ScsiSense) -> c_int;
    fn scsi_free_scsi_task(task: *mut ScsiTask);
}

/// A CDB built by libiscsi, freed on drop.
struct Task(NonNull<ScsiTask>);

impl Task {
    fn new(raw: *mut ScsiTask, what: &str) -> Task {
        Task(NonNull::new(raw).unwrap_or_else(|| panic!("libiscsi could not build {what}")))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: the task came from a libiscsi scsi_cdb_* constructor and is
        // freed exactly once, here.
        unsafe { scsi_free_scsi_task(self.0.as_ptr()) }
    }
}

/// A logged-in iSCSI session to one LUN. Every method panics with libiscsi's
/// error text on failure: these are test helpers.
#[derive(Debug)]
pub struct Session {
    ctx: NonNull<IscsiContext>,
    lun: c_int,
    block_size: u32,
    blocks: u64,
}

impl Session {
    /// Logs in to `iqn` at `portal` (`host:port`) and reads the LUN's geometry.
    pub fn login(initiator: &str, portal: &str, iqn: &str, lun: u32) -> Session {
        let initiator = CString::new(initiator).expect("initiator name");
        let portal = CString::new(portal).expect("portal");
        let iqn = CString::new(iqn).expect("target name");
        let lun = c_int::try_from(lun).expect("LUN fits c_int");
        // SAFETY: a NUL-terminated string that libiscsi copies.
        let raw = unsafe { iscsi_create_context(initiator.as_ptr()) };
        let ctx = NonNull::new(raw).expect("iscsi_create_context failed");
        let mut session = Session {
            ctx,
            lun,
            block_size: 0,
            blocks: 0,
        };
        // SAFETY: `ctx` is a live context; the strings outlive the calls,
        // which copy them.
        let rc = unsafe {
            iscsi_set_targetname(ctx.as_ptr(), iqn.as_ptr())
                | iscsi_set_session_type(ctx.as_ptr(), ISCSI_SESSION_NORMAL)
                | iscsi_set_header_digest(ctx.as_ptr(), ISCSI_HEADER_DIGEST_NONE_CRC32C)
        };
        assert_eq!(rc, 0, "configure session: {}", session.error());
        // SAFETY: as above.
        let rc = unsafe { iscsi_full_connect_sync(ctx.as_ptr(), portal.as_ptr(), lun) };
        assert_eq!(rc, 0, "login to {iqn:?} at {portal:?}: {}", session.error());
        session.clear_unit_attentions();
        session.read_capacity();
        session
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// WRITE(16) of whole blocks at `lba`; `fua` asks for a durable write.
    pub fn write(&mut self, lba: u64, data: &[u8], fua: bool) {
        let len = self.transfer_len(data.len());
        // SAFETY: plain-value arguments; the returned task is owned by `Task`.
        let raw =
            unsafe { scsi_cdb_write16(lba, len, self.block_size as c_int, 0, 0, fua.into(), 0, 0) };
        let task = Task::new(raw, "WRITE(16)");
        // libiscsi's Data-Out pointer is not const; hand it a private copy.
        let mut out = data.to_vec();
        self.execute(&task, Some(&mut out), &format!("WRITE(16) lba {lba}"));
    }

    /// READ(16) of `blocks` blocks at `lba`.
    pub fn read(&mut self, lba: u64, blocks: u32) -> Vec<u8> {
        let mut buf = vec![0u8; blocks as usize * self.block_size as usize];
        let len = self.transfer_len(buf.len());
        // SAFETY: plain-value arguments; the returned task is owned by `Task`.
        let raw = unsafe { scsi_cdb_read16(lba, len, self.block_size as c_int, 0, 0, 0, 0, 0) };
        let task = Task::new(raw, "READ(16)");
        self.add_data_in(&task, &mut buf);
        self.execute(&task, None, &format!("READ(16) lba {lba}"));
        buf
    }

    /// SYNCHRONIZE CACHE(16) of the whole LUN (SBC-4 5.23).
    pub fn synchronize_cache(&mut self) {
        // SAFETY: plain-value arguments; the returned task is owned by `Task`.
        let task = Task::new(
            unsafe { scsi_cdb_synchronizecache16(0, 0, 0, 0) },
            "SYNC CACHE(16)",
        );
        self.execute(&task, None, "SYNCHRONIZE CACHE(16)");
    }

    fn read_capacity(&mut self) {
        // SAFETY: no arguments; the returned task is owned by `Task`.
        let task = Task::new(unsafe { scsi_cdb_readcapacity16() }, "READ CAPACITY(16)");
        let mut buf = [0u8; 32];
        self.add_data_in(&task, &mut buf);
        self.execute(&task, None, "READ CAPACITY(16)");
        // SBC-4 5.20.2: returned LBA (8 bytes), then block length (4 bytes), big-endian.
        let last_lba = u64::from_be_bytes(buf[0..8].try_into().expect("8 bytes"));
        self.block_size = u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
        self.blocks = last_lba + 1;
        assert!(
            self.block_size > 0,
            "READ CAPACITY(16) returned block length 0"
        );
    }

    fn transfer_len(&self, bytes: usize) -> u32 {
        assert_eq!(bytes % self.block_size as usize, 0, "not whole blocks");
        u32::try_from(bytes).expect("transfer fits u32")
    }

    /// Data-In lands directly in `buf`, which must outlive the command.
    fn add_data_in(&self, task: &Task, buf: &mut [u8]) {
        let len = c_int::try_from(buf.len()).expect("buffer fits c_int");
        // SAFETY: `buf` stays borrowed until `execute` returns, and libiscsi
        // writes at most `len` bytes into it.
        let rc = unsafe { scsi_task_add_data_in_buffer(task.0.as_ptr(), len, buf.as_mut_ptr()) };
        assert_eq!(rc, 0, "scsi_task_add_data_in_buffer failed");
    }

    /// Absorbs the unit attentions a new I_T nexus may be owed (e.g. POWER ON
    /// OCCURRED after a target restart, SPC-4 6.1), so that later commands
    /// report only their own errors.
    fn clear_unit_attentions(&mut self) {
        for _ in 0..4 {
            // SAFETY: no arguments; the returned task is owned by `Task`.
            let task = Task::new(unsafe { scsi_cdb_testunitready() }, "TEST UNIT READY");
            match self.send(&task, None, "TEST UNIT READY") {
                (SCSI_STATUS_GOOD, _) => return,
                (SCSI_STATUS_CHECK_CONDITION, sense) if sense.key == SCSI_SENSE_UNIT_ATTENTION => {}
                (status, sense) => panic!("TEST UNIT READY: {}", describe(status, &sense)),
            }
        }
        panic!("TEST UNIT READY: still a unit attention after 4 attempts");
    }

    /// Sends the task and requires GOOD status.
    fn execute(&mut self, task: &Task, data_out: Option<&mut [u8]>, what: &str) {
        let (status, sense) = self.send(task, data_out, what);
        assert_eq!(
            status,
            SCSI_STATUS_GOOD,
            "{what}: {}",
            describe(status, &sense)
        );
    }

    /// Sends the task and waits for its status and sense.
    fn send(&mut self, task: &Task, data_out: Option<&mut [u8]>, what: &str) -> (c_int, ScsiSense) {
        let mut out = data_out.map(|d| IscsiData {
            size: d.len(),
            data: d.as_mut_ptr(),
        });
        let out_ptr = out
            .as_mut()
            .map_or(ptr::null_mut(), |d| d as *mut IscsiData);
        // SAFETY: `ctx` and `task` are live; the Data-Out and Data-In buffers
        // are borrowed for the duration of this synchronous call.
        let done = unsafe {
            iscsi_scsi_command_sync(self.ctx.as_ptr(), self.lun, task.0.as_ptr(), out_ptr)
        };
        assert!(
            !done.is_null(),
            "{what}: transport failure: {}",
            self.error()
        );
        let mut sense = ScsiSense::default();
        // SAFETY: `task` is live; `sense` has the layout of `struct scsi_sense`.
        let status = unsafe { scsi_task_get_status(task.0.as_ptr(), &mut sense) };
        (status, sense)
    }

    fn error(&self) -> String {
        // SAFETY: `ctx` is live; libiscsi returns a NUL-terminated string it owns.
        let text = unsafe { iscsi_get_error(self.ctx.as_ptr()) };
        if text.is_null() {
            return String::from("(no error text)");
        }
        // SAFETY: non-null and NUL-terminated, valid until the next libiscsi call.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

fn describe(status: c_int, sense: &ScsiSense) -> String {
    format!(
        "status {status:#04x}, sense key {:#x}, ASC/ASCQ {:#06x}",
        sense.key, sense.ascq
    )
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from iscsi_create_context and is destroyed once;
        // this also closes the socket (no logout: the target may be gone).
        unsafe { iscsi_destroy_context(self.ctx.as_ptr()) };
    }
}
