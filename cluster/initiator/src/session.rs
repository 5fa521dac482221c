//! One libiscsi context, driven by our own poll loop.
//!
//! libiscsi's `*_sync` helpers keep their completion state on the stack and
//! can return early (a `poll` `EINTR`, a service error) with the task still
//! queued; `iscsi_destroy_context` would later call back into that dead frame.
//! So this module submits the `*_task` / `*_async` forms and waits itself,
//! with a completion slot allocated for the life of the context:
//!
//! ```text
//!   submit ──▶ wait ──┬─ callback fired ─────────▶ Task (freed on drop)
//!                     └─ poll/service error,   ──▶ task parked in `orphans`,
//!                        deadline passed           session marked failed;
//!                                                  freed after destroy_context
//! ```
//!
//! Automatic reconnect is disabled: libiscsi's reconnect builds a context with
//! a fresh random ISID (lib/connect.c copies neither ISID nor alias), which
//! would silently move us to a new I_T nexus and strand our persistent
//! reservation registrations. A dropped connection instead cancels the
//! command and marks the session failed; `Initiator::reconnect` logs in again
//! with the configured ISID.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use libiscsi_sys as sys;

use crate::error::Error;
use crate::isid::IsidSetter;
use crate::scsi::{ScsiStatus, Sense};
use crate::url::TargetUrl;
use crate::ConnectOptions;

/// How long a best-effort logout may take when a session is dropped.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on one `poll`; between polls `iscsi_service(ctx, 0)` runs
/// libiscsi's periodic work, as iscsi.h asks ("once every second or so").
const POLL_SLICE: Duration = Duration::from_secs(1);

/// Where libiscsi callbacks report. Allocated with the session and freed only
/// after `iscsi_destroy_context`, so any late callback lands in live memory.
struct Completion {
    done: bool,
    status: c_int,
    /// Task management response code (RFC 7143 §11.6.1), when one arrived.
    tmf_response: Option<u32>,
}

/// Callback for SCSI tasks, login and logout.
unsafe extern "C" fn on_complete(
    _ctx: *mut sys::iscsi_context,
    status: c_int,
    _command_data: *mut c_void,
    private_data: *mut c_void,
) {
    // SAFETY: every submission passes the session's `Completion` pointer as
    // `private_data`; it stays allocated until after the context is destroyed,
    // and no Rust reference to it is live while libiscsi runs callbacks.
    let completion = unsafe { &mut *private_data.cast::<Completion>() };
    completion.done = true;
    completion.status = status;
}

/// Callback for task management: `command_data` points at the response code
/// for the duration of the call (iscsi.h, iscsi_task_mgmt_async).
unsafe extern "C" fn on_tmf_complete(
    ctx: *mut sys::iscsi_context,
    status: c_int,
    command_data: *mut c_void,
    private_data: *mut c_void,
) {
    if status == sys::SCSI_STATUS_GOOD as c_int && !command_data.is_null() {
        // SAFETY: as above for `private_data`; `command_data` is a valid
        // `uint32_t *` when status is GOOD and is read before returning.
        unsafe {
            (*private_data.cast::<Completion>()).tmf_response = Some(*command_data.cast::<u32>());
        }
    }
    // SAFETY: forwarding the same arguments to the common callback.
    unsafe { on_complete(ctx, status, command_data, private_data) }
}

/// A completed `scsi_task`, freed on drop.
pub(crate) struct Task {
    task: NonNull<sys::scsi_task>,
    /// Data-out buffer libiscsi reads from until the task completes.
    _data_out: Option<Vec<u8>>,
}

impl Task {
    /// The data-in buffer libiscsi filled for this task.
    pub(crate) fn data_in(&self) -> &[u8] {
        // SAFETY: the task is owned by us and alive; `datain` is either empty
        // (size 0, data possibly NULL) or `size` bytes libiscsi allocated and
        // frees only in scsi_free_scsi_task (our Drop).
        unsafe {
            let datain = &(*self.task.as_ptr()).datain;
            match usize::try_from(datain.size) {
                Ok(len) if len > 0 && !datain.data.is_null() => {
                    std::slice::from_raw_parts(datain.data, len)
                }
                _ => &[],
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a libiscsi *_task call, its callback
        // has fired (or the context that could call it is destroyed), and it
        // is freed exactly once here.
        unsafe { sys::scsi_free_scsi_task(self.task.as_ptr()) }
    }
}

enum WaitError {
    Service(String),
    Timeout,
}

/// One logged-in (or failed) libiscsi context.
pub(crate) struct Session {
    ctx: NonNull<sys::iscsi_context>,
    completion: NonNull<Completion>,
    lun: c_int,
    timeout: Duration,
    /// Why the session can no longer be used, once it cannot.
    failed: Option<String>,
    /// Tasks still queued inside libiscsi after a failed wait.
    orphans: Vec<Task>,
}

// SAFETY: a libiscsi context has no thread affinity (no thread-locals, no
// background threads unless iscsi_mt_service_thread_start is called, which
// this crate never does). The raw pointers keep `Session` !Sync, so it is
// only ever used from one thread at a time.
unsafe impl Send for Session {}

impl Session {
    pub(crate) fn open(url: &TargetUrl, options: &ConnectOptions) -> Result<Session, Error> {
        let connect_err = |message: String| Error::Connect {
            target: url.to_string(),
            message,
        };
        let cstring = |what: &str, s: &str| {
            CString::new(s)
                .map_err(|_| Error::InvalidArgument(format!("{what} contains a NUL byte")))
        };
        let initiator = cstring("initiator name", &options.initiator_name)?;
        let target = cstring("target name", &url.target)?;
        let portal = cstring("portal", &url.portal)?;
        let alias = options
            .alias
            .as_deref()
            .map(|a| cstring("alias", a))
            .transpose()?;
        let chap = match &url.chap {
            Some(c) => Some((
                cstring("CHAP user", &c.user)?,
                cstring("CHAP secret", &c.secret)?,
            )),
            None => None,
        };

        // SAFETY: `initiator` is a valid C string; NULL is checked below.
        let ctx = NonNull::new(unsafe { sys::iscsi_create_context(initiator.as_ptr()) })
            .ok_or_else(|| connect_err("libiscsi could not allocate a context".into()))?;
        let completion = NonNull::from(Box::leak(Box::new(Completion {
            done: false,
            status: 0,
            tmf_response: None,
        })));
        // From here on Drop destroys the context and frees the completion.
        let mut session = Session {
            ctx,
            completion,
            lun: c_int::from(url.lun),
            timeout: options.timeout,
            failed: None,
            orphans: Vec::new(),
        };
        let c = ctx.as_ptr();

        let digest = if options.header_digest {
            sys::ISCSI_HEADER_DIGEST_CRC32C
        } else {
            sys::ISCSI_HEADER_DIGEST_NONE
        };
        // SAFETY: `c` is a live context not yet logged in; every string is a
        // valid C string that libiscsi copies before returning.
        let setup = unsafe {
            let mut rc = sys::iscsi_set_targetname(c, target.as_ptr());
            rc |= sys::iscsi_set_session_type(c, sys::ISCSI_SESSION_NORMAL);
            rc |= sys::iscsi_set_header_digest(c, digest);
            if let Some(alias) = &alias {
                rc |= sys::iscsi_set_alias(c, alias.as_ptr());
            }
            if let Some((user, secret)) = &chap {
                rc |= sys::iscsi_set_initiator_username_pwd(c, user.as_ptr(), secret.as_ptr());
            }
            if let Some(isid) = options.isid {
                rc |= match isid.setter() {
                    IsidSetter::Oui { oui, qualifier } => {
                        sys::iscsi_set_isid_oui(c, oui, qualifier)
                    }
                    IsidSetter::EnterpriseNumber { en, qualifier } => {
                        sys::iscsi_set_isid_en(c, en, qualifier)
                    }
                    IsidSetter::Random { random, qualifier } => {
                        sys::iscsi_set_isid_random(c, random, qualifier)
                    }
                };
            }
            sys::iscsi_set_noautoreconnect(c, 1);
            rc
        };
        if setup < 0 {
            return Err(connect_err(session.last_error()));
        }

        session.reset_completion();
        // SAFETY: live context; `portal` is copied by libiscsi; the callback
        // and completion pointer satisfy `on_complete`'s contract.
        let rc = unsafe {
            sys::iscsi_full_connect_async(
                c,
                portal.as_ptr(),
                session.lun,
                Some(on_complete),
                completion.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(connect_err(session.last_error()));
        }
        match session.wait() {
            Ok(status) if status == sys::SCSI_STATUS_GOOD as c_int => Ok(session),
            Ok(_) | Err(WaitError::Service(_)) => {
                let message = session.last_error();
                session.failed = Some(message.clone());
                Err(connect_err(message))
            }
            Err(WaitError::Timeout) => {
                session.failed = Some("login timed out".into());
                Err(connect_err(format!(
                    "no login response within {:?}",
                    session.timeout
                )))
            }
        }
    }

    pub(crate) fn lun(&self) -> c_int {
        self.lun
    }

    /// Submits one SCSI command and waits for it. `submit` gets the context,
    /// callback, private data and the data-out pointer (NULL if none) and
    /// returns the task libiscsi created. Non-GOOD status becomes an error.
    pub(crate) fn execute(
        &mut self,
        command: &'static str,
        mut data_out: Option<Vec<u8>>,
        submit: impl FnOnce(
            *mut sys::iscsi_context,
            sys::iscsi_command_cb,
            *mut c_void,
            *mut u8,
        ) -> *mut sys::scsi_task,
    ) -> Result<Task, Error> {
        self.check_usable()?;
        self.reset_completion();
        let out_ptr = data_out
            .as_mut()
            .map_or(std::ptr::null_mut(), |d| d.as_mut_ptr());
        let raw = submit(
            self.ctx.as_ptr(),
            Some(on_complete),
            self.completion.as_ptr().cast(),
            out_ptr,
        );
        let Some(task) = NonNull::new(raw) else {
            return Err(Error::Transport {
                command,
                message: format!("could not queue the command: {}", self.last_error()),
            });
        };
        let task = Task {
            task,
            _data_out: data_out,
        };
        match self.wait() {
            Ok(status) => self.scsi_result(command, status, task),
            Err(e) => {
                // The task is still queued in libiscsi; it may only be freed
                // once the context can no longer call back.
                self.orphans.push(task);
                Err(self.fail(command, e))
            }
        }
    }

    /// Sends any CDB through [`Session::execute`]: libiscsi wraps the bytes
    /// in a task (`scsi_create_task` copies them) and sends `data_out` when
    /// the target asks for it, or collects up to `data_in_len` bytes. A
    /// command moves data one way or not at all (SAM-5 §5.1).
    pub(crate) fn execute_cdb(
        &mut self,
        command: &'static str,
        cdb: &[u8],
        data_out: Option<Vec<u8>>,
        data_in_len: u32,
    ) -> Result<Task, Error> {
        const MAX_CDB: usize = sys::SCSI_CDB_MAX_SIZE as usize;
        if cdb.is_empty() || cdb.len() > MAX_CDB {
            return Err(Error::InvalidArgument(format!(
                "a CDB is 1 to {MAX_CDB} bytes, not {}",
                cdb.len()
            )));
        }
        let mut cdb_buf = [0u8; MAX_CDB];
        cdb_buf[..cdb.len()].copy_from_slice(cdb);
        let cdb_len = cdb.len() as c_int;
        let (direction, expected) = match (&data_out, data_in_len) {
            (Some(_), 1..) => {
                return Err(Error::InvalidArgument(format!(
                    "{command}: a command has data-out or data-in, not both"
                )))
            }
            (Some(data), 0) => (sys::SCSI_XFER_WRITE, data.len()),
            (None, 0) => (sys::SCSI_XFER_NONE, 0),
            (None, len) => (sys::SCSI_XFER_READ, len as usize),
        };
        let expected = c_int::try_from(expected).map_err(|_| {
            Error::InvalidArgument(format!("{command}: transfer of {expected} bytes too large"))
        })?;
        let out_len = data_out.as_ref().map_or(0, Vec::len);
        let lun = self.lun;
        self.execute(command, data_out, |ctx, cb, pd, out| {
            // SAFETY: live context; `cdb_buf` outlives the call and is only
            // read. `out` is NULL or `out_len` bytes owned by the Task until
            // its callback fires; libiscsi copies the `iscsi_data` descriptor
            // (into an iovec on the task) before returning. On a failed
            // submission the task never reached the queue, so it is ours to free.
            unsafe {
                let task = sys::scsi_create_task(
                    cdb_len,
                    cdb_buf.as_mut_ptr(),
                    direction as c_int,
                    expected,
                );
                if task.is_null() {
                    return task;
                }
                let mut data = sys::iscsi_data {
                    size: out_len,
                    data: out,
                };
                let data = if out.is_null() {
                    std::ptr::null_mut()
                } else {
                    &mut data as *mut sys::iscsi_data
                };
                if sys::iscsi_scsi_command_async(ctx, lun, task, cb, data, pd) != 0 {
                    sys::scsi_free_scsi_task(task);
                    return std::ptr::null_mut();
                }
                task
            }
        })
    }

    /// Sends a task management function and waits for its response.
    pub(crate) fn task_management(
        &mut self,
        function: &'static str,
        submit: impl FnOnce(*mut sys::iscsi_context, sys::iscsi_command_cb, *mut c_void) -> c_int,
    ) -> Result<(), Error> {
        self.check_usable()?;
        self.reset_completion();
        if submit(
            self.ctx.as_ptr(),
            Some(on_tmf_complete),
            self.completion.as_ptr().cast(),
        ) != 0
        {
            return Err(Error::Transport {
                command: function,
                message: format!("could not queue the request: {}", self.last_error()),
            });
        }
        let status = self.wait().map_err(|e| self.fail(function, e))?;
        // SAFETY: the callback has fired; no libiscsi call is running.
        let response = unsafe { (*self.completion.as_ptr()).tmf_response };
        match (status, response) {
            (s, Some(0)) if s == sys::SCSI_STATUS_GOOD as c_int => Ok(()),
            (s, Some(response)) if s == sys::SCSI_STATUS_GOOD as c_int => {
                Err(Error::TaskManagement { function, response })
            }
            _ => {
                let message = self.last_error();
                self.failed = Some(message.clone());
                Err(Error::Transport {
                    command: function,
                    message,
                })
            }
        }
    }

    fn scsi_result(
        &mut self,
        command: &'static str,
        status: c_int,
        task: Task,
    ) -> Result<Task, Error> {
        match u8::try_from(status) {
            Ok(0) => Ok(task),
            Ok(status) => {
                let status = ScsiStatus(status);
                let sense = if status == ScsiStatus::CHECK_CONDITION {
                    Sense::from_response_data(task.data_in())
                } else {
                    None
                };
                Err(Error::Scsi {
                    command,
                    status,
                    sense,
                })
            }
            // libiscsi's out-of-band codes: the command never completed on the
            // wire (cancelled because the connection dropped, or an error).
            Err(_) => {
                let message = if status == sys::SCSI_STATUS_CANCELLED as c_int {
                    format!("command cancelled, connection lost ({})", self.last_error())
                } else {
                    self.last_error()
                };
                if status == sys::SCSI_STATUS_TIMEOUT as c_int {
                    self.failed = Some("command timed out".into());
                    return Err(Error::Timeout {
                        command,
                        timeout: self.timeout,
                    });
                }
                self.failed = Some(message.clone());
                Err(Error::Transport { command, message })
            }
        }
    }

    fn check_usable(&self) -> Result<(), Error> {
        match &self.failed {
            Some(reason) => Err(Error::NotConnected {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, command: &'static str, e: WaitError) -> Error {
        match e {
            WaitError::Service(message) => {
                self.failed = Some(message.clone());
                Error::Transport { command, message }
            }
            WaitError::Timeout => {
                self.failed = Some(format!("{command} timed out"));
                Error::Timeout {
                    command,
                    timeout: self.timeout,
                }
            }
        }
    }

    fn reset_completion(&mut self) {
        // SAFETY: no libiscsi call is running, so nothing else touches it.
        unsafe {
            *self.completion.as_ptr() = Completion {
                done: false,
                status: 0,
                tmf_response: None,
            }
        }
    }

    fn done(&self) -> Option<c_int> {
        // SAFETY: read between libiscsi calls; the callback only runs inside
        // iscsi_service, which is not running now.
        let c = unsafe { &*self.completion.as_ptr() };
        c.done.then_some(c.status)
    }

    /// Runs the event loop until the pending callback fires or the timeout
    /// passes; returns the callback's status.
    fn wait(&mut self) -> Result<c_int, WaitError> {
        self.wait_for(self.timeout)
    }

    fn wait_for(&mut self, timeout: Duration) -> Result<c_int, WaitError> {
        let deadline = Instant::now() + timeout;
        let ctx = self.ctx.as_ptr();
        loop {
            if let Some(status) = self.done() {
                return Ok(status);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(WaitError::Timeout);
            }
            let slice = remaining.min(POLL_SLICE);
            // SAFETY: live context; these only read its state.
            let (fd, events) = unsafe { (sys::iscsi_get_fd(ctx), sys::iscsi_which_events(ctx)) };
            let mut pfd = libc::pollfd {
                fd,
                // which_events returns POLLIN/POLLOUT bits, which fit a short.
                events: events as libc::c_short,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a negative fd is ignored by poll.
            let rc = unsafe { libc::poll(&mut pfd, 1, slice.as_millis().max(1) as c_int) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(WaitError::Service(format!("poll: {err}")));
            }
            // revents 0 after a quiet slice lets libiscsi run its timers.
            let revents = if rc == 0 { 0 } else { c_int::from(pfd.revents) };
            // SAFETY: live context; callbacks it runs honour their contracts.
            if unsafe { sys::iscsi_service(ctx, revents) } < 0 {
                if let Some(status) = self.done() {
                    return Ok(status);
                }
                return Err(WaitError::Service(self.last_error()));
            }
        }
    }

    fn last_error(&self) -> String {
        // SAFETY: live context; libiscsi returns a pointer to its own
        // NUL-terminated error buffer (or NULL), copied out immediately.
        unsafe {
            let msg = sys::iscsi_get_error(self.ctx.as_ptr());
            if msg.is_null() {
                "unknown libiscsi error".into()
            } else {
                match CStr::from_ptr(msg).to_string_lossy().into_owned() {
                    s if s.is_empty() => "unknown libiscsi error".into(),
                    s => s,
                }
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let ctx = self.ctx.as_ptr();
        // SAFETY: live context.
        if self.failed.is_none() && unsafe { sys::iscsi_is_logged_in(ctx) } != 0 {
            self.reset_completion();
            // Best effort: a clean logout ends the I_T nexus promptly on the
            // target (RFC 7143 §6.3.6); if it fails the target times us out.
            // SAFETY: live, logged-in context; callback contract as above.
            let rc = unsafe {
                sys::iscsi_logout_async(ctx, Some(on_complete), self.completion.as_ptr().cast())
            };
            if rc == 0 {
                let _ = self.wait_for(LOGOUT_TIMEOUT);
            }
        }
        // SAFETY: destroyed exactly once; any callbacks it runs for queued
        // PDUs write into `completion`, which is still allocated.
        unsafe { sys::iscsi_destroy_context(ctx) };
        // Nothing can call back now: free the orphaned tasks, then the slot.
        self.orphans.clear();
        // SAFETY: allocated by Box in `open`, freed exactly once, after the
        // last possible callback.
        drop(unsafe { Box::from_raw(self.completion.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our URL parser must agree with libiscsi's own on what it accepts.
    #[test]
    fn url_parser_agrees_with_libiscsi() {
        let name = c"iqn.2026-11.io.reservoir:url-test";
        // SAFETY: valid C string; context destroyed below.
        let ctx = unsafe { sys::iscsi_create_context(name.as_ptr()) };
        assert!(!ctx.is_null());
        for url in [
            "iscsi://127.0.0.1:3261/iqn.2026-11.io.reservoir.peer:tgt/1",
            "iscsi://host/iqn.2001-04.com.example:storage/0",
            "iscsi://[::1]:3262/iqn.x:y/7",
            "iscsi://alice%s3cret@10.0.0.1:3260/iqn.x:y/2",
        ] {
            let ours = TargetUrl::parse(url).unwrap();
            let c_url = CString::new(url).unwrap();
            // SAFETY: live context and valid C string; the result is checked
            // for NULL, read, and freed with iscsi_destroy_url.
            unsafe {
                let theirs = sys::iscsi_parse_full_url(ctx, c_url.as_ptr());
                assert!(!theirs.is_null(), "libiscsi rejected {url}");
                let field = |f: &[std::ffi::c_char]| {
                    CStr::from_ptr(f.as_ptr()).to_str().unwrap().to_owned()
                };
                // libiscsi leaves the default port implicit; ours spells it out.
                let portal = field(&(*theirs).portal);
                let portal = if portal.ends_with(']') || !portal.contains(':') {
                    format!("{portal}:3260")
                } else {
                    portal
                };
                assert_eq!(portal, ours.portal, "{url}");
                assert_eq!(field(&(*theirs).target), ours.target, "{url}");
                assert_eq!((*theirs).lun, c_int::from(ours.lun), "{url}");
                let user = field(&(*theirs).user);
                assert_eq!(
                    user,
                    ours.chap
                        .as_ref()
                        .map(|c| c.user.clone())
                        .unwrap_or_default(),
                    "{url}"
                );
                let secret = field(&(*theirs).passwd);
                assert_eq!(
                    secret,
                    ours.chap
                        .as_ref()
                        .map(|c| c.secret.clone())
                        .unwrap_or_default(),
                    "{url}"
                );
                sys::iscsi_destroy_url(theirs);
            }
        }
        // SAFETY: created above, destroyed once.
        unsafe { sys::iscsi_destroy_context(ctx) };
    }
}
