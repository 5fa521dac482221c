//! The registry of live sessions: listing for operators, TSIH allocation,
//! and session reinstatement (RFC 7143 §6.3.5).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// Initiator session identifier (RFC 7143 §11.12.5), shown as 12 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Isid(pub [u8; 6]);

impl fmt::Display for Isid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What an operator sees of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub initiator: String,
    pub isid: Isid,
    pub tsih: u16,
    /// `None` for a discovery session.
    pub target: Option<String>,
    pub portal: SocketAddr,
    pub peer: SocketAddr,
    /// Negotiated keys, as agreed at login.
    pub params: Vec<(String, String)>,
    pub connected_at: SystemTime,
}

#[derive(Debug)]
struct Entry {
    info: SessionInfo,
    /// Set to ask the owning connection to close (it was reinstated, or
    /// its target is no longer served).
    close: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Table {
    last_tsih: u16,
    entries: BTreeMap<u16, Entry>,
}

/// Live sessions across all portals.
#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<Table>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock()
            .entries
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Whether a session with this TSIH is live.
    pub fn contains(&self, tsih: u16) -> bool {
        self.lock().entries.contains_key(&tsih)
    }

    /// Registers a session, allocating its TSIH (nonzero, unused). A live
    /// session with the same initiator name, ISID and target is reinstated:
    /// it is removed and told to close (§6.3.5). `None` when all 65535
    /// TSIHs are in use.
    pub(crate) fn register(self: &Arc<Self>, mut info: SessionInfo) -> Option<SessionHandle> {
        let mut t = self.lock();
        let same = |e: &Entry| {
            e.info.initiator.eq_ignore_ascii_case(&info.initiator)
                && e.info.isid == info.isid
                && e.info.target == info.target
        };
        let old: Vec<u16> = t
            .entries
            .iter()
            .filter(|(_, e)| same(e))
            .map(|(k, _)| *k)
            .collect();
        for tsih in old {
            if let Some(e) = t.entries.remove(&tsih) {
                tracing::info!(tsih, initiator = %e.info.initiator, "session reinstated");
                e.close.store(true, Ordering::Release);
            }
        }
        let tsih = (1..=u16::MAX)
            .map(|i| t.last_tsih.wrapping_add(i))
            .find(|c| *c != 0 && !t.entries.contains_key(c))?;
        t.last_tsih = tsih;
        info.tsih = tsih;
        let close = Arc::new(AtomicBool::new(false));
        t.entries.insert(
            tsih,
            Entry {
                info,
                close: close.clone(),
            },
        );
        Some(SessionHandle {
            sessions: self.clone(),
            tsih,
            close,
        })
    }

    /// Ends every session with target `iqn` (a target no longer served):
    /// each is removed and its connection told to close, at its next timer
    /// tick. Returns how many there were.
    pub fn close_target(&self, iqn: &str) -> usize {
        let mut t = self.lock();
        let before = t.entries.len();
        t.entries.retain(|_, e| {
            let ours = e
                .info
                .target
                .as_deref()
                .is_some_and(|target| target.eq_ignore_ascii_case(iqn));
            if ours {
                e.close.store(true, Ordering::Release);
            }
            !ours
        });
        before - t.entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's registration; dropping it unregisters the session.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    sessions: Arc<Sessions>,
    tsih: u16,
    close: Arc<AtomicBool>,
}

impl SessionHandle {
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// True once the session must end: a newer login reinstated it, or
    /// its target is no longer served.
    pub fn told_to_close(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let mut t = self.sessions.lock();
        // Only our own entry: after reinstatement the TSIH may be reused.
        if t.entries
            .get(&self.tsih)
            .is_some_and(|e| Arc::ptr_eq(&e.close, &self.close))
        {
            t.entries.remove(&self.tsih);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(isid: u8) -> SessionInfo {
        SessionInfo {
            initiator: "iqn.i".into(),
            isid: Isid([0, 0, 0, 0, 0, isid]),
            tsih: 0,
            target: Some("iqn.t".into()),
            portal: "127.0.0.1:3260".parse().unwrap(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            params: vec![],
            connected_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn reinstatement_closes_old_and_drop_unregisters() {
        let s = Arc::new(Sessions::new());
        let a = s.register(info(1)).unwrap();
        let b = s.register(info(2)).unwrap();
        assert_ne!(a.tsih(), b.tsih());
        let a2 = s.register(info(1)).unwrap();
        assert!(a.told_to_close());
        assert!(!b.told_to_close());
        assert_eq!(s.list().len(), 2);
        drop(a);
        assert_eq!(s.list().len(), 2);
        drop(a2);
        drop(b);
        assert!(s.list().is_empty());
        assert_eq!(Isid([0, 1, 2, 3, 4, 0xab]).to_string(), "0001020304ab");
    }

    #[test]
    fn closing_a_target_ends_its_sessions_only() {
        let s = Arc::new(Sessions::new());
        let a = s.register(info(1)).unwrap();
        let other = s
            .register(SessionInfo {
                target: Some("iqn.other".into()),
                ..info(2)
            })
            .unwrap();
        let discovery = s
            .register(SessionInfo {
                target: None,
                ..info(3)
            })
            .unwrap();
        assert_eq!(s.close_target("IQN.T"), 1);
        assert!(a.told_to_close());
        assert!(!other.told_to_close() && !discovery.told_to_close());
        assert_eq!(s.list().len(), 2);
        assert_eq!(s.close_target("iqn.t"), 0);
    }
}
