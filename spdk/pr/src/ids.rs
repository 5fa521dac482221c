//! Identities and small value types of the reservation model (SPC-4 5.13).

use std::fmt;

/// ISID of an iSCSI initiator port (RFC 7143 10.12.5), 6 bytes.
pub type Isid = [u8; 6];

/// An iSCSI initiator port: the initiator name plus, when known, its ISID
/// (SPC-4 7.6.4.6: the initiator port name is `<name>,i,0x<ISID>`).
///
/// `isid: None` names every initiator port of that iSCSI name: a
/// registration made from a name-only TransportID (FORMAT CODE 00b) covers
/// each I_T nexus of that name, whatever its ISID.
#[derive(Clone, Debug)]
pub struct InitiatorPort {
    /// iSCSI name; compared case-insensitively (RFC 3722 stringprep folds case).
    pub name: String,
    /// Session ISID, or `None` for "any ISID of this name".
    pub isid: Option<Isid>,
}

impl InitiatorPort {
    /// An initiator port identified by name and ISID.
    pub fn new(name: impl Into<String>, isid: Isid) -> Self {
        Self {
            name: name.into(),
            isid: Some(isid),
        }
    }

    /// Every initiator port of `name` (FORMAT CODE 00b TransportID).
    pub fn any_isid(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            isid: None,
        }
    }

    /// True when some I_T nexus could be named by both ports: same name, and
    /// equal ISIDs or at least one side covering every ISID.
    pub(crate) fn overlaps(&self, other: &InitiatorPort) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && match (self.isid, other.isid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// True when `self` (a registration's port) covers the concrete port `other`.
    pub(crate) fn covers(&self, other: &InitiatorPort) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && match (self.isid, other.isid) {
                (None, _) => true,
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
            }
    }
}

impl PartialEq for InitiatorPort {
    fn eq(&self, other: &Self) -> bool {
        self.name.eq_ignore_ascii_case(&other.name) && self.isid == other.isid
    }
}

impl Eq for InitiatorPort {}

impl fmt::Display for InitiatorPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.isid {
            Some(isid) => {
                write!(f, "{},i,0x", self.name)?;
                isid.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            None => f.write_str(&self.name),
        }
    }
}

/// Relative target port identifier (SPC-4 7.8.3.7); 0 is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetPortId(pub u16);

/// An I_T nexus: initiator port and target port (SPC-4 3.1.50).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nexus {
    /// The initiator port.
    pub initiator: InitiatorPort,
    /// The target port the initiator port reached us through.
    pub target_port: TargetPortId,
}

impl Nexus {
    /// Builds a nexus.
    pub fn new(initiator: InitiatorPort, target_port: TargetPortId) -> Self {
        Self {
            initiator,
            target_port,
        }
    }

    pub(crate) fn overlaps(&self, other: &Nexus) -> bool {
        self.target_port == other.target_port && self.initiator.overlaps(&other.initiator)
    }

    pub(crate) fn covers(&self, other: &Nexus) -> bool {
        self.target_port == other.target_port && self.initiator.covers(&other.initiator)
    }
}

impl fmt::Display for Nexus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via port {}", self.initiator, self.target_port.0)
    }
}

/// A reservation key (SPC-4 5.13.7). Zero is never a registered key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReservationKey(pub u64);

impl ReservationKey {
    /// The zero key: "unregistered" / "unregister" depending on the field.
    pub const ZERO: Self = Self(0);

    /// True for the zero key.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ReservationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

/// PRgeneration: 32-bit wrapping counter (SPC-4 6.15.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Generation(pub u32);

impl Generation {
    pub(crate) fn bump(&mut self) {
        self.0 = self.0.wrapping_add(1);
    }
}

/// Persistent reservation type (SPC-4 6.16.2, table "Persistent reservation
/// type codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationType {
    /// 1h Write Exclusive.
    WriteExclusive,
    /// 3h Exclusive Access.
    ExclusiveAccess,
    /// 5h Write Exclusive – Registrants Only.
    WriteExclusiveRegistrantsOnly,
    /// 6h Exclusive Access – Registrants Only.
    ExclusiveAccessRegistrantsOnly,
    /// 7h Write Exclusive – All Registrants.
    WriteExclusiveAllRegistrants,
    /// 8h Exclusive Access – All Registrants.
    ExclusiveAccessAllRegistrants,
}

impl ReservationType {
    /// All six, in type-code order.
    pub const ALL: [ReservationType; 6] = [
        Self::WriteExclusive,
        Self::ExclusiveAccess,
        Self::WriteExclusiveRegistrantsOnly,
        Self::ExclusiveAccessRegistrantsOnly,
        Self::WriteExclusiveAllRegistrants,
        Self::ExclusiveAccessAllRegistrants,
    ];

    /// Decodes a TYPE field; every other value is reserved/obsolete.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x1 => Self::WriteExclusive,
            0x3 => Self::ExclusiveAccess,
            0x5 => Self::WriteExclusiveRegistrantsOnly,
            0x6 => Self::ExclusiveAccessRegistrantsOnly,
            0x7 => Self::WriteExclusiveAllRegistrants,
            0x8 => Self::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The TYPE field value.
    pub fn code(self) -> u8 {
        match self {
            Self::WriteExclusive => 0x1,
            Self::ExclusiveAccess => 0x3,
            Self::WriteExclusiveRegistrantsOnly => 0x5,
            Self::ExclusiveAccessRegistrantsOnly => 0x6,
            Self::WriteExclusiveAllRegistrants => 0x7,
            Self::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// Only writes are excluded for non-holders (the Write Exclusive family).
    pub fn is_write_exclusive(self) -> bool {
        matches!(
            self,
            Self::WriteExclusive
                | Self::WriteExclusiveRegistrantsOnly
                | Self::WriteExclusiveAllRegistrants
        )
    }

    /// Every registered I_T nexus is a reservation holder (SPC-4 5.13.10).
    pub fn is_all_registrants(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants get the holder's access (registrants-only and
    /// all-registrants types, SPC-4 5.13.10 table "Persistent reservation
    /// type codes").
    pub fn registrants_have_access(self) -> bool {
        !matches!(self, Self::WriteExclusive | Self::ExclusiveAccess)
    }

    /// Short name as used by sg_persist and `reservoir reservation show`.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::WriteExclusive => "WE",
            Self::ExclusiveAccess => "EA",
            Self::WriteExclusiveRegistrantsOnly => "WE-RO",
            Self::ExclusiveAccessRegistrantsOnly => "EA-RO",
            Self::WriteExclusiveAllRegistrants => "WE-AR",
            Self::ExclusiveAccessAllRegistrants => "EA-AR",
        }
    }
}

impl fmt::Display for ReservationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_round_trip_and_reject_the_rest() {
        for t in ReservationType::ALL {
            assert_eq!(ReservationType::from_code(t.code()), Some(t));
        }
        for c in [0u8, 2, 4, 9, 0xf, 0xff] {
            assert_eq!(ReservationType::from_code(c), None);
        }
    }

    #[test]
    fn names_compare_case_insensitively() {
        let a = InitiatorPort::new("iqn.2026-01.Org:Host", [1; 6]);
        let b = InitiatorPort::new("IQN.2026-01.org:host", [1; 6]);
        assert_eq!(a, b);
        assert!(InitiatorPort::any_isid("iqn.x").covers(&InitiatorPort::new("IQN.X", [2; 6])));
        assert!(!InitiatorPort::new("iqn.x", [1; 6]).covers(&InitiatorPort::any_isid("iqn.x")));
        assert!(InitiatorPort::new("iqn.x", [1; 6]).overlaps(&InitiatorPort::any_isid("iqn.x")));
        assert_eq!(a.to_string(), "iqn.2026-01.Org:Host,i,0x010101010101");
    }
}
