//! Persistent reservations in the appliance: where each LUN's table is
//! saved (APTPL, SPC-4 5.13.5) and what `reservation_show` and
//! `reservation_clear` see.
//!
//! A LUN's record lives at `<data_dir>/reservations/<volume>.pr`, written
//! crash-atomically (temporary file, fsync, rename, fsync of the
//! directory) by [`crate::store::write_bytes`]; the record carries its own
//! version and CRC32C (reservoir-pr's format). A volume exported by
//! several targets has one table per export, each in
//! `<volume>@<target>-<lun>.pr`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reservoir_scsi::{Lun, ReservationStore};
use serde_json::{json, Value};

/// A LUN's reservation record in a file under the data directory.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The store of one export of `volume`; `shared` when the volume is
    /// exported by more than one target LUN.
    pub fn new(data_dir: &Path, volume: &str, export: (&str, u64), shared: bool) -> Self {
        let dir = data_dir.join("reservations");
        let name = if shared {
            let target: String = export
                .0
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{volume}@{target}-{}.pr", export.1)
        } else {
            format!("{volume}.pr")
        };
        FileStore {
            path: dir.join(name),
        }
    }
}

impl ReservationStore for FileStore {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, record: &[u8]) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        crate::store::write_bytes(&self.path, record).map_err(io::Error::other)
    }
}

/// One export of a volume: target, LUN number and the LUN object.
#[derive(Debug)]
struct Export {
    target: String,
    lun: u64,
    unit: Arc<Lun>,
}

/// Every exported LUN's reservation table, by volume.
#[derive(Debug, Default)]
pub struct Reservations {
    by_volume: BTreeMap<String, Vec<Export>>,
}

/// Why a reservation method failed.
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error("volume {0:?} is not exported by any target, so it has no reservation table")]
    NotExported(String),
    #[error("cannot save the cleared reservation state of {volume}: {source}")]
    Save {
        volume: String,
        #[source]
        source: io::Error,
    },
}

impl Reservations {
    /// Records that `target` exports `volume` as LUN `lun`.
    pub fn add(&mut self, volume: &str, target: &str, lun: u64, unit: Arc<Lun>) {
        self.by_volume
            .entry(volume.to_owned())
            .or_default()
            .push(Export {
                target: target.to_owned(),
                lun,
                unit,
            });
    }

    fn exports(&self, volume: &str) -> Result<&[Export], ReservationError> {
        self.by_volume
            .get(volume)
            .map(Vec::as_slice)
            .ok_or_else(|| ReservationError::NotExported(volume.to_owned()))
    }

    /// `reservation_show`: one object per export with its registrations.
    pub fn show(&self, volume: &str) -> Result<Value, ReservationError> {
        let exports = self.exports(volume)?;
        Ok(Value::Array(exports.iter().map(describe).collect()))
    }

    /// `reservation_clear`: administrator recovery on every export.
    pub fn clear(&self, volume: &str) -> Result<Value, ReservationError> {
        let exports = self.exports(volume)?;
        for e in exports {
            e.unit
                .clear_reservations()
                .map_err(|source| ReservationError::Save {
                    volume: volume.to_owned(),
                    source,
                })?;
        }
        Ok(Value::Array(exports.iter().map(describe).collect()))
    }
}

fn describe(export: &Export) -> Value {
    let table = export.unit.reservations();
    let reservation = table.reservation();
    let registrations: Vec<Value> = table
        .registrations()
        .iter()
        .map(|r| {
            let holder = reservation.as_ref().is_some_and(|v| match &v.holder {
                Some(h) => *h == r.nexus,
                None => true,
            });
            json!({
                "initiator": r.nexus.initiator.name,
                "isid": r.nexus.initiator.isid.map(|i| i.iter().map(|b| format!("{b:02x}")).collect::<String>()),
                "target_port": r.nexus.target_port.0,
                "key": format!("{:#018x}", r.key.0),
                "all_tg_pt": r.all_tg_pt,
                "holder": holder,
            })
        })
        .collect();
    json!({
        "target": export.target,
        "lun": export.lun,
        "generation": table.generation().0,
        "aptpl": table.aptpl(),
        "reservation": reservation.map(|v| json!({
            "type": v.rtype.short_name(),
            "key": format!("{:#018x}", v.key.0),
        })),
        "registrations": registrations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path(), "vol0", ("iqn.x:t", 0), false);
        assert!(store.load().unwrap().is_none());
        store.save(b"record one").unwrap();
        store.save(b"record two").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b"record two"[..]));
        assert!(dir.path().join("reservations/vol0.pr").is_file());
        let shared = FileStore::new(dir.path(), "vol0", ("iqn.x:t", 3), true);
        shared.save(b"r").unwrap();
        assert!(dir.path().join("reservations/vol0@iqn.x_t-3.pr").is_file());
    }
}
