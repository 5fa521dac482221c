//! One logical unit over a bdev: identity, LU-wide mode parameters, the
//! unit attention event log, the SPC-2 reservation and the range lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use reservoir_bdev::{Bdev, Durability, Geometry};

use crate::nexus::NexusId;
use crate::persistent::{Persistent, ReservationLoadError, ReservationSnapshot, ReservationStore};
use crate::range_lock::RangeLock;
use crate::sense::SenseReason;
use crate::ua::{Audience, EventLog};

/// How the appliance names a volume to initiators (SPC-4: Device Identification and Unit Serial Number VPD pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunIdentity {
    /// UNIT SERIAL NUMBER (VPD page 80h), printable ASCII.
    pub serial: String,
    /// NAA IEEE Registered Extended designator (NAA 6), stable per volume.
    pub naa: [u8; 16],
}

#[derive(Debug, Clone)]
pub struct LunOptions {
    /// Writes fail with DATA PROTECT, WRITE PROTECTED.
    pub read_only: bool,
    pub identity: LunIdentity,
    /// Where the persistent reservation table survives restarts (APTPL,
    /// SPC-4 5.13.5); `None` refuses APTPL = 1 and reports PTPL_C = 0.
    pub reservations: Option<Arc<dyn ReservationStore>>,
}

/// One logical unit, shared by every session that reaches it.
#[derive(Debug)]
pub struct Lun {
    bdev: Arc<dyn Bdev>,
    options: LunOptions,
    /// Fixed for the life of a volume (only the block count can change), so
    /// the I/O path does not ask the bdev for it on every command.
    block_size: u32,
    /// The bdev's [`Bdev::prefers_offload`], asked once.
    offload: bool,
    /// The bdev's [`Bdev::lends_memory`], asked once.
    lends: bool,
    /// Caching mode page WCE (SBC-4, Caching mode page); a LU-wide parameter.
    write_cache: AtomicBool,
    pub(crate) events: EventLog,
    /// SPC-2 RESERVE(6/10) holder; 0 when unreserved (nexus ids start at 1).
    reserved_by: AtomicU64,
    /// SPC-4 persistent reservations.
    pub(crate) persistent: Persistent,
    pub(crate) range_lock: RangeLock,
}

impl Lun {
    /// A LUN whose options carry no reservation store.
    ///
    /// # Panics
    /// When `options.reservations` is set and its record cannot be
    /// restored; use [`Lun::open`] to handle that.
    pub fn new(bdev: Arc<dyn Bdev>, options: LunOptions) -> Lun {
        Lun::open(bdev, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A LUN with its persistent reservations restored from
    /// `options.reservations` (SPC-4 5.13.5: with APTPL clear in the
    /// record, it starts without any).
    pub fn open(bdev: Arc<dyn Bdev>, options: LunOptions) -> Result<Lun, ReservationLoadError> {
        let geometry = bdev.geometry();
        let offload = bdev.prefers_offload();
        let lends = bdev.lends_memory();
        let persistent = Persistent::open(options.reservations.clone())?;
        Ok(Lun {
            bdev,
            options,
            block_size: geometry.block_size.bytes(),
            offload,
            lends,
            write_cache: AtomicBool::new(geometry.volatile_cache),
            events: EventLog::default(),
            reserved_by: AtomicU64::new(0),
            persistent,
            range_lock: RangeLock::default(),
        })
    }

    /// The persistent reservation table as it is now.
    pub fn reservations(&self) -> ReservationSnapshot {
        self.persistent.snapshot()
    }

    /// Administrator recovery: drops every registration and the
    /// reservation and clears APTPL (saved first when it was set); former
    /// registrants get RESERVATIONS PREEMPTED as after CLEAR (SPC-4 5.13.11.6).
    pub fn clear_reservations(&self) -> std::io::Result<()> {
        self.persistent.clear_all(&self.events)
    }

    pub fn bdev(&self) -> &Arc<dyn Bdev> {
        &self.bdev
    }

    pub fn options(&self) -> &LunOptions {
        &self.options
    }

    /// Call after the bdev was resized: every nexus gets CAPACITY DATA HAS
    /// CHANGED (SBC-4).
    pub fn capacity_changed(&self) {
        self.events
            .publish(SenseReason::CapacityDataChanged, Audience::All);
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.bdev.geometry()
    }

    pub(crate) fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Whether block data transfers should leave the transport's thread.
    pub fn prefers_offload(&self) -> bool {
        self.offload
    }

    /// Whether reads can be sent straight from the bdev's memory.
    pub(crate) fn lends_memory(&self) -> bool {
        self.lends
    }

    pub(crate) fn read_only(&self) -> bool {
        self.options.read_only
    }

    pub(crate) fn write_cache_enabled(&self) -> bool {
        self.write_cache.load(Ordering::Relaxed)
    }

    /// WCE is changeable only when the bdev has a volatile cache to enable.
    pub(crate) fn write_cache_changeable(&self) -> bool {
        self.geometry().volatile_cache
    }

    /// Sets WCE; returns whether it changed.
    pub(crate) fn set_write_cache(&self, enabled: bool) -> bool {
        self.write_cache.swap(enabled, Ordering::Relaxed) != enabled
    }

    /// Durability of a write: FUA as asked, and always with the write cache
    /// disabled (SBC-4, Caching mode page: WCE=0 completes writes on the medium).
    pub(crate) fn durability(&self, fua: bool) -> Durability {
        if fua || !self.write_cache_enabled() {
            Durability::Fua
        } else {
            Durability::Cached
        }
    }

    pub(crate) fn reservation_holder(&self) -> Option<NexusId> {
        match self.reserved_by.load(Ordering::Acquire) {
            0 => None,
            id => Some(NexusId(id)),
        }
    }

    /// SPC-2 RESERVE: succeeds when unreserved or already held by `by`.
    pub(crate) fn reserve(&self, by: NexusId) -> bool {
        match self
            .reserved_by
            .compare_exchange(0, by.0, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(holder) => holder == by.0,
        }
    }

    /// SPC-2 RELEASE by `by`: only the holder's release has an effect.
    pub(crate) fn release(&self, by: NexusId) {
        let _ = self
            .reserved_by
            .compare_exchange(by.0, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// LOGICAL UNIT RESET (SAM-5 7.7): every nexus's tasks on the LU are
    /// aborted (other nexuses' end with TASK ABORTED, TAS = 1; transfers
    /// already running end first), SPC-2 reservation released, mode
    /// parameters back to their defaults, and BUS DEVICE RESET FUNCTION
    /// OCCURRED to every nexus — the issuer's included, since a multipath
    /// host learns of the reset on each of its paths that way.
    pub(crate) fn reset(&self) {
        self.persistent.abort_tasks(|_| true);
        self.reserved_by.store(0, Ordering::Release);
        self.write_cache
            .store(self.geometry().volatile_cache, Ordering::Relaxed);
        self.events
            .publish(SenseReason::BusDeviceReset, Audience::All);
    }
}
