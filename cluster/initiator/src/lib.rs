//! A small, safe iSCSI initiator over libiscsi.
//!
//! One [`Initiator`] is one iSCSI session to one LU, used from one thread at a
//! time (it is `Send`, not `Sync`). Every call blocks until the target answers
//! or [`ConnectOptions::timeout`] passes.
//!
//! ```no_run
//! use reservoir_initiator::{ConnectOptions, Initiator, Isid};
//!
//! let mut options = ConnectOptions::new("iqn.2026-11.io.reservoir:node-a");
//! options.isid = Some("80a1b2c30001".parse()?);
//! let mut lu = Initiator::connect("iscsi://127.0.0.1:3261/iqn.2026-11.io.reservoir.peer:tgt/1", options)?;
//! let capacity = lu.read_capacity()?;
//! lu.write(0, &vec![0xa5; capacity.block_size as usize], capacity.block_size, true)?;
//! # Ok::<(), reservoir_initiator::Error>(())
//! ```
//!
//! # The I_T nexus and persistent reservations
//!
//! A target keys PR registrations on the I_T nexus: initiator name + ISID +
//! target port (SPC-4 §5.14). Set [`ConnectOptions::isid`] so the nexus stays
//! the same across [`Initiator::reconnect`] and process restarts; without it
//! libiscsi picks a random ISID for every login. libiscsi's own automatic
//! reconnect is disabled because it would pick a new random ISID: a dropped
//! connection instead fails the command with [`Error::Transport`] and later
//! calls return [`Error::NotConnected`] until `reconnect()` succeeds.

mod error;
mod isid;
mod pattern;
mod scsi;
mod session;
mod transport_id;
mod url;

use std::time::Duration;

use libiscsi_sys as sys;

pub use crate::error::Error;
pub use crate::isid::Isid;
pub use crate::pattern::Pattern;
pub use crate::scsi::{
    Capacity, FullStatus, FullStatusEntry, PrOutAction, PrOutFlags, RegisteredKeys, ReservationKey,
    ReservationStatus, ReservationType, ScsiStatus, Sense, SenseKey,
};
pub use crate::transport_id::TransportId;
pub use crate::url::{Chap, TargetUrl};

use crate::scsi::{
    decode_read_full_status, decode_read_keys, decode_read_reservation, register_and_move_command,
    PrIn,
};
use crate::session::Session;

/// Session parameters that do not come from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// iSCSI name (RFC 7143 §4.2.7) this initiator logs in as.
    pub initiator_name: String,
    /// InitiatorAlias sent at login, if any.
    pub alias: Option<String>,
    /// Fixed ISID so the I_T nexus is stable across logins; `None` lets
    /// libiscsi pick a random one per login.
    pub isid: Option<Isid>,
    /// Require CRC32C header digests (RFC 7143 §13.1); otherwise none.
    pub header_digest: bool,
    /// Longest wait for login or any single command.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// Defaults: no alias, random ISID, no header digest, 30 s timeout.
    pub fn new(initiator_name: impl Into<String>) -> Self {
        ConnectOptions {
            initiator_name: initiator_name.into(),
            alias: None,
            isid: None,
            header_digest: false,
            timeout: Duration::from_secs(30),
        }
    }
}

/// An iSCSI session to one logical unit.
#[derive(Debug)]
pub struct Initiator {
    url: TargetUrl,
    options: ConnectOptions,
    /// `None` after a failed `reconnect()`.
    session: Option<Session>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("lun", &self.lun())
            .finish_non_exhaustive()
    }
}

/// PERSISTENT RESERVE IN allocation length to try first; READ KEYS asks
/// again with the exact size if the target has more (SPC-4 §6.16.2).
const PR_IN_INITIAL_ALLOCATION: u16 = 4096;

impl Initiator {
    /// Connects to `url` (`iscsi://[user%secret@]host[:port]/iqn/lun`), logs
    /// in and checks that the LUN exists.
    pub fn connect(url: &str, options: ConnectOptions) -> Result<Initiator, Error> {
        let url = TargetUrl::parse(url)?;
        if options.timeout.is_zero() {
            return Err(Error::InvalidArgument("timeout must be non-zero".into()));
        }
        let session = Session::open(&url, &options)?;
        Ok(Initiator {
            url,
            options,
            session: Some(session),
        })
    }

    /// The target this initiator talks to (credentials omitted on display).
    pub fn url(&self) -> &TargetUrl {
        &self.url
    }

    /// Logs out (if the session still works) and logs in again with the same
    /// options, so the same ISID and hence the same I_T nexus.
    pub fn reconnect(&mut self) -> Result<(), Error> {
        self.session = None;
        self.session = Some(Session::open(&self.url, &self.options)?);
        Ok(())
    }

    /// READ (16) of `blocks` blocks at `lba` (SBC-4 §5.18).
    pub fn read(&mut self, lba: u64, blocks: u32, block_size: u32) -> Result<Vec<u8>, Error> {
        let len = transfer_len(blocks, block_size)?;
        let session = self.session()?;
        let lun = session.lun();
        let task = session.execute("READ (16)", None, |ctx, cb, pd, _| {
            // SAFETY: live context; callback/private data per Session::execute.
            unsafe {
                sys::iscsi_read16_task(ctx, lun, lba, len, block_size as i32, 0, 0, 0, 0, 0, cb, pd)
            }
        })?;
        let data = task.data_in();
        if data.len() != len as usize {
            return Err(Error::Malformed {
                what: "READ (16)",
                reason: "target returned a different number of bytes than requested",
            });
        }
        Ok(data.to_vec())
    }

    /// WRITE (16) of `data` at `lba` (SBC-4 §5.42); `fua` asks the target to
    /// make it durable before completing.
    pub fn write(
        &mut self,
        lba: u64,
        data: &[u8],
        block_size: u32,
        fua: bool,
    ) -> Result<(), Error> {
        if block_size == 0 || data.is_empty() || !data.len().is_multiple_of(block_size as usize) {
            return Err(Error::InvalidArgument(format!(
                "write of {} bytes is not a non-zero multiple of the {block_size}-byte block size",
                data.len()
            )));
        }
        let len = u32::try_from(data.len())
            .map_err(|_| Error::InvalidArgument("write larger than 4 GiB".into()))?;
        let session = self.session()?;
        let lun = session.lun();
        // libiscsi reads the buffer until the task completes, so it gets its
        // own copy that outlives an abandoned task.
        session.execute("WRITE (16)", Some(data.to_vec()), |ctx, cb, pd, out| {
            // SAFETY: live context; `out` points at `len` bytes owned by the
            // Task until its callback has fired or the context is destroyed.
            unsafe {
                sys::iscsi_write16_task(
                    ctx,
                    lun,
                    lba,
                    out,
                    len,
                    block_size as i32,
                    0,
                    0,
                    i32::from(fua),
                    0,
                    0,
                    cb,
                    pd,
                )
            }
        })?;
        Ok(())
    }

    /// SYNCHRONIZE CACHE (16) over the whole LU (SBC-4 §5.25).
    pub fn synchronize_cache(&mut self) -> Result<(), Error> {
        let session = self.session()?;
        let lun = session.lun();
        session.execute("SYNCHRONIZE CACHE (16)", None, |ctx, cb, pd, _| {
            // SAFETY: live context; LBA 0 + 0 blocks means "to the end".
            unsafe { sys::iscsi_synchronizecache16_task(ctx, lun, 0, 0, 0, 0, cb, pd) }
        })?;
        Ok(())
    }

    /// READ CAPACITY (16) (SBC-4 §5.20).
    pub fn read_capacity(&mut self) -> Result<Capacity, Error> {
        let session = self.session()?;
        let lun = session.lun();
        let task = session.execute("READ CAPACITY (16)", None, |ctx, cb, pd, _| {
            // SAFETY: live context.
            unsafe { sys::iscsi_readcapacity16_task(ctx, lun, cb, pd) }
        })?;
        Capacity::decode(task.data_in())
    }

    /// TEST UNIT READY (SPC-4 §6.47).
    pub fn test_unit_ready(&mut self) -> Result<(), Error> {
        let session = self.session()?;
        let lun = session.lun();
        session.execute("TEST UNIT READY", None, |ctx, cb, pd, _| {
            // SAFETY: live context.
            unsafe { sys::iscsi_testunitready_task(ctx, lun, cb, pd) }
        })?;
        Ok(())
    }

    /// PERSISTENT RESERVE IN / READ KEYS (SPC-4 §6.16.2).
    pub fn pr_read_keys(&mut self) -> Result<RegisteredKeys, Error> {
        let mut allocation = PR_IN_INITIAL_ALLOCATION;
        loop {
            let data = self.pr_in(
                "PERSISTENT RESERVE IN / READ KEYS",
                sys::SCSI_PERSISTENT_RESERVE_READ_KEYS,
                allocation,
            )?;
            match decode_read_keys(&data)? {
                PrIn::Complete(keys) => return Ok(keys),
                PrIn::NeedsBytes(n) if usize::from(allocation) < n && allocation < u16::MAX => {
                    allocation = u16::try_from(n).unwrap_or(u16::MAX);
                }
                PrIn::NeedsBytes(_) => {
                    return Err(Error::Malformed {
                        what: "PERSISTENT RESERVE IN / READ KEYS",
                        reason: "key list does not fit the largest allocation length",
                    })
                }
            }
        }
    }

    /// PERSISTENT RESERVE IN / READ FULL STATUS (SPC-4 §6.16.5): every
    /// registration with its I_T nexus and whether it holds the reservation.
    pub fn pr_read_full_status(&mut self) -> Result<FullStatus, Error> {
        let mut allocation = PR_IN_INITIAL_ALLOCATION;
        loop {
            let data = self.pr_in(
                "PERSISTENT RESERVE IN / READ FULL STATUS",
                sys::SCSI_PERSISTENT_RESERVE_READ_FULL_STATUS,
                allocation,
            )?;
            match decode_read_full_status(&data)? {
                PrIn::Complete(status) => return Ok(status),
                PrIn::NeedsBytes(n) if usize::from(allocation) < n && allocation < u16::MAX => {
                    allocation = u16::try_from(n).unwrap_or(u16::MAX);
                }
                PrIn::NeedsBytes(_) => {
                    return Err(Error::Malformed {
                        what: "PERSISTENT RESERVE IN / READ FULL STATUS",
                        reason: "status does not fit the largest allocation length",
                    })
                }
            }
        }
    }

    /// PERSISTENT RESERVE IN / READ RESERVATION (SPC-4 §6.16.3).
    pub fn pr_read_reservation(&mut self) -> Result<ReservationStatus, Error> {
        let data = self.pr_in(
            "PERSISTENT RESERVE IN / READ RESERVATION",
            sys::SCSI_PERSISTENT_RESERVE_READ_RESERVATION,
            PR_IN_INITIAL_ALLOCATION,
        )?;
        decode_read_reservation(&data)
    }

    /// PERSISTENT RESERVE OUT with the basic parameter list (SPC-4 §6.17).
    /// `key` is this nexus's current key (zero if unregistered); `sa_key` is
    /// the new key for REGISTER or the key to preempt for PREEMPT. `kind`
    /// matters for RESERVE, RELEASE and PREEMPT; targets ignore it otherwise.
    pub fn pr_out(
        &mut self,
        action: PrOutAction,
        key: ReservationKey,
        sa_key: ReservationKey,
        kind: ReservationType,
        flags: PrOutFlags,
    ) -> Result<(), Error> {
        let session = self.session()?;
        let lun = session.lun();
        let mut params = sys::scsi_persistent_reserve_out_basic {
            reservation_key: key.0,
            service_action_reservation_key: sa_key.0,
            spec_i_pt: 0,
            all_tg_pt: u8::from(flags.all_tg_pt),
            aptpl: u8::from(flags.aptpl),
        };
        session.execute("PERSISTENT RESERVE OUT", None, |ctx, cb, pd, _| {
            // SAFETY: live context; libiscsi marshals `params` into the task's
            // own memory before returning, so the borrow ends here.
            unsafe {
                sys::iscsi_persistent_reserve_out_task(
                    ctx,
                    lun,
                    i32::from(action.code()),
                    sys::SCSI_PERSISTENT_RESERVE_SCOPE_LU as i32,
                    i32::from(kind.code()),
                    (&mut params as *mut sys::scsi_persistent_reserve_out_basic).cast(),
                    cb,
                    pd,
                )
            }
        })?;
        Ok(())
    }

    /// PERSISTENT RESERVE OUT / REGISTER AND MOVE (SPC-4 §5.13.8, §6.17.4):
    /// the holder (this nexus, registered with `key`) hands its reservation
    /// to the initiator port `destination` reached through target port
    /// `relative_target_port`, registering it with `sa_key`. With `unreg`
    /// this nexus is unregistered afterwards; `aptpl` sets persistence as
    /// for REGISTER. The reservation keeps its type.
    pub fn register_and_move(
        &mut self,
        key: ReservationKey,
        sa_key: ReservationKey,
        relative_target_port: u16,
        destination: &TransportId,
        unreg: bool,
        aptpl: bool,
    ) -> Result<(), Error> {
        let (cdb, list) =
            register_and_move_command(key, sa_key, relative_target_port, destination, unreg, aptpl);
        self.session()?.execute_cdb(
            "PERSISTENT RESERVE OUT / REGISTER AND MOVE",
            &cdb,
            Some(list),
            0,
        )?;
        Ok(())
    }

    /// ABORT TASK SET for this LU (RFC 7143 §11.5.1).
    pub fn abort_task_set(&mut self) -> Result<(), Error> {
        let session = self.session()?;
        let lun = session.lun() as u32;
        session.task_management("ABORT TASK SET", |ctx, cb, pd| {
            // SAFETY: live context; callback/private data per Session.
            unsafe { sys::iscsi_task_mgmt_abort_task_set_async(ctx, lun, cb, pd) }
        })
    }

    /// LOGICAL UNIT RESET (RFC 7143 §11.5.1).
    pub fn lun_reset(&mut self) -> Result<(), Error> {
        let session = self.session()?;
        let lun = session.lun() as u32;
        session.task_management("LOGICAL UNIT RESET", |ctx, cb, pd| {
            // SAFETY: live context; callback/private data per Session.
            unsafe { sys::iscsi_task_mgmt_lun_reset_async(ctx, lun, cb, pd) }
        })
    }

    fn pr_in(
        &mut self,
        command: &'static str,
        action: u32,
        allocation: u16,
    ) -> Result<Vec<u8>, Error> {
        let session = self.session()?;
        let lun = session.lun();
        let task = session.execute(command, None, |ctx, cb, pd, _| {
            // SAFETY: live context.
            unsafe {
                sys::iscsi_persistent_reserve_in_task(ctx, lun, action as i32, allocation, cb, pd)
            }
        })?;
        Ok(task.data_in().to_vec())
    }

    fn session(&mut self) -> Result<&mut Session, Error> {
        self.session.as_mut().ok_or_else(|| Error::NotConnected {
            reason: "the last reconnect failed".into(),
        })
    }
}

/// Bytes in `blocks` blocks, checked to fit one READ (16).
fn transfer_len(blocks: u32, block_size: u32) -> Result<u32, Error> {
    if blocks == 0 || block_size == 0 {
        return Err(Error::InvalidArgument(
            "block count and block size must be non-zero".into(),
        ));
    }
    blocks.checked_mul(block_size).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{blocks} blocks of {block_size} bytes exceed 4 GiB"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_length_is_checked() {
        assert_eq!(transfer_len(8, 512).unwrap(), 4096);
        assert!(transfer_len(0, 512).is_err());
        assert!(transfer_len(8, 0).is_err());
        assert!(transfer_len(u32::MAX, 512).is_err());
    }

    #[test]
    fn connect_rejects_bad_input_before_touching_the_network() {
        let opts = ConnectOptions::new("iqn.2026-11.io.reservoir:test");
        assert!(matches!(
            Initiator::connect("iscsi://h/iqn.x:y/zz", opts.clone()),
            Err(Error::InvalidUrl { .. })
        ));
        let mut zero = opts;
        zero.timeout = Duration::ZERO;
        assert!(matches!(
            Initiator::connect("iscsi://h/iqn.x:y/0", zero),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        // Bind then drop a listener to get a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = ConnectOptions::new("iqn.2026-11.io.reservoir:test");
        opts.timeout = Duration::from_secs(5);
        let err =
            Initiator::connect(&format!("iscsi://127.0.0.1:{port}/iqn.x:y/0"), opts).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
    }

    /// The configured ISID is what goes on the wire, on every login (a
    /// reconnect logs in through the same path). A fake target reads the
    /// first Login Request and hangs up.
    #[test]
    fn fixed_isid_is_sent_in_every_login_request() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "iscsi://{}/iqn.2026-11.io.reservoir:fake/0",
            listener.local_addr().unwrap()
        );
        let mut opts = ConnectOptions::new("iqn.2026-11.io.reservoir:isid-test");
        opts.isid = Some("80a1b2c30042".parse().unwrap());
        opts.timeout = Duration::from_secs(5);
        for _ in 0..2 {
            let client = {
                let (url, opts) = (url.clone(), opts.clone());
                std::thread::spawn(move || Initiator::connect(&url, opts))
            };
            let (mut conn, _) = listener.accept().unwrap();
            let mut bhs = [0u8; 48];
            conn.read_exact(&mut bhs).unwrap();
            drop(conn);
            // Login Request, immediate bit set (RFC 7143 §11.12); ISID at bytes 8..14.
            assert_eq!(bhs[0], 0x43);
            assert_eq!(bhs[8..14], [0x80, 0xa1, 0xb2, 0xc3, 0x00, 0x42]);
            let err = client.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::Connect { .. }), "{err}");
        }
    }

    #[test]
    fn initiator_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Initiator>();
    }
}
