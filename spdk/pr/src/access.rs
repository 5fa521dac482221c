//! The reservation gate: which commands a persistent reservation lets
//! through (SPC-4 5.13.1 table "SPC commands that are allowed in the
//! presence of various reservations", SBC-4 4.17 table "SBC commands that
//! are allowed in the presence of various reservations", SPC-4 5.13.3).

use crate::ids::ReservationType;

/// How a command behaves under a persistent reservation. The SCSI layer
/// maps every command onto one class; each arm lists the table rows that
/// share its column pattern. Columns of both tables: WE / EA (any
/// non-holder), then WE-RO|WE-AR and EA-RO|EA-AR, each split into
/// registered / not registered non-holders. `A` = allowed, `C` = conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Pattern `A A | A A | A A`: allowed whatever the reservation.
    ///
    /// SPC-4: INQUIRY, REPORT LUNS, REQUEST SENSE, TEST UNIT READY, LOG
    /// SENSE, PERSISTENT RESERVE IN, PERSISTENT RESERVE OUT (its service
    /// actions check keys themselves, SPC-4 5.13.1 footnote), READ MEDIA
    /// SERIAL NUMBER, REPORT TARGET PORT GROUPS, REPORT ALIASES, REPORT
    /// IDENTIFYING INFORMATION, REPORT PRIORITY, REPORT TIMESTAMP, ACCESS
    /// CONTROL IN/OUT.
    /// SBC-4: READ CAPACITY (10/16), PREVENT ALLOW MEDIUM REMOVAL with
    /// PREVENT = 00b, START STOP UNIT with START = 1 and POWER CONDITION = 0h.
    Unrestricted,
    /// Pattern `A C | A A | A C`: a read; Write Exclusive types let every
    /// nexus read, Exclusive Access types only holders (and registrants
    /// for RO/AR).
    ///
    /// SBC-4: READ (6/10/12/16/32), VERIFY, PRE-FETCH, GET LBA STATUS,
    /// READ DEFECT DATA, READ LONG, REPORT REFERRALS.
    /// SPC-4: MODE SENSE, READ BUFFER, READ ATTRIBUTE, RECEIVE DIAGNOSTIC
    /// RESULTS, RECEIVE COPY RESULTS, REPORT SUPPORTED OPERATION CODES,
    /// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS, SECURITY PROTOCOL IN,
    /// MANAGEMENT PROTOCOL IN.
    Read,
    /// Pattern `C C | A C | A C`: a write or a change of device state;
    /// only holders and (for RO/AR types) registrants.
    ///
    /// SBC-4: WRITE (all), WRITE AND VERIFY, WRITE SAME, WRITE LONG,
    /// COMPARE AND WRITE, ORWRITE, UNMAP, SYNCHRONIZE CACHE, FORMAT UNIT,
    /// SANITIZE, REASSIGN BLOCKS, PREVENT ALLOW MEDIUM REMOVAL with
    /// PREVENT ≠ 00b, START STOP UNIT with START = 0 or POWER CONDITION ≠ 0h.
    /// SPC-4: MODE SELECT, LOG SELECT, WRITE BUFFER, WRITE ATTRIBUTE, SEND
    /// DIAGNOSTIC, EXTENDED COPY, SECURITY PROTOCOL OUT, MANAGEMENT
    /// PROTOCOL OUT, CHANGE ALIASES, SET IDENTIFYING INFORMATION, SET
    /// PRIORITY, SET TARGET PORT GROUPS, SET TIMESTAMP.
    Write,
    /// RESERVE(6/10) and RELEASE(6/10). SPC-4 5.13.3 with CRH = 0: while any
    /// I_T nexus is registered they conflict for every nexus, reservation
    /// or not. The SCSI layer still arbitrates SPC-2 reservations among
    /// themselves.
    LegacyReserveRelease,
}

/// The gate's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run the command.
    Allowed,
    /// End it with RESERVATION CONFLICT.
    Conflict,
}

/// Where the requesting nexus stands relative to the reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Holder,
    Registrant,
    NotRegistered,
}

/// The decision itself, given the held reservation's type (if any), the
/// nexus' role and whether anybody is registered.
pub(crate) fn decide(
    held: Option<ReservationType>,
    role: Role,
    any_registration: bool,
    access: Access,
) -> Verdict {
    use Verdict::{Allowed, Conflict};
    match (access, held) {
        // SPC-4 5.13.3: RESERVE/RELEASE conflict while registrations exist.
        (Access::LegacyReserveRelease, _) => {
            if any_registration {
                Conflict
            } else {
                Allowed
            }
        }
        (_, None) | (Access::Unrestricted, _) => Allowed,
        (_, Some(_)) if role == Role::Holder => Allowed,
        // RO/AR columns: registered non-holders have the holder's access.
        (_, Some(t)) if t.registrants_have_access() && role == Role::Registrant => Allowed,
        // Write Exclusive family: reads pass for everybody.
        (Access::Read, Some(t)) if t.is_write_exclusive() => Allowed,
        _ => Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationType::*;
    use Verdict::{Allowed as A, Conflict as C};

    /// Rows transcribed from the SPC-4/SBC-4 tables for non-holders:
    /// (access, WE, EA, WE-RO/AR registered, WE-RO/AR unregistered,
    /// EA-RO/AR registered, EA-RO/AR unregistered).
    const TABLE: [(Access, [Verdict; 6]); 3] = [
        (Access::Unrestricted, [A, A, A, A, A, A]),
        (Access::Read, [A, C, A, A, A, C]),
        (Access::Write, [C, C, A, C, A, C]),
    ];

    #[test]
    fn non_holder_table() {
        for (access, row) in TABLE {
            for role in [Role::Registrant, Role::NotRegistered] {
                // WE and EA columns do not distinguish registration.
                assert_eq!(decide(Some(WriteExclusive), role, true, access), row[0]);
                assert_eq!(decide(Some(ExclusiveAccess), role, true, access), row[1]);
            }
            for t in [WriteExclusiveRegistrantsOnly, WriteExclusiveAllRegistrants] {
                assert_eq!(
                    decide(Some(t), Role::Registrant, true, access),
                    row[2],
                    "{t} {access:?}"
                );
                assert_eq!(decide(Some(t), Role::NotRegistered, true, access), row[3]);
            }
            for t in [
                ExclusiveAccessRegistrantsOnly,
                ExclusiveAccessAllRegistrants,
            ] {
                assert_eq!(
                    decide(Some(t), Role::Registrant, true, access),
                    row[4],
                    "{t} {access:?}"
                );
                assert_eq!(decide(Some(t), Role::NotRegistered, true, access), row[5]);
            }
        }
    }

    #[test]
    fn holders_and_unreserved_units_pass_everything_but_legacy() {
        for access in [Access::Unrestricted, Access::Read, Access::Write] {
            for t in ReservationType::ALL {
                assert_eq!(decide(Some(t), Role::Holder, true, access), A);
            }
            for role in [Role::Registrant, Role::NotRegistered] {
                assert_eq!(decide(None, role, true, access), A);
            }
        }
    }

    #[test]
    fn legacy_reserve_release_conflicts_while_registered() {
        for held in [
            None,
            Some(WriteExclusive),
            Some(ExclusiveAccessAllRegistrants),
        ] {
            for role in [Role::Holder, Role::Registrant, Role::NotRegistered] {
                assert_eq!(decide(held, role, true, Access::LegacyReserveRelease), C);
            }
        }
        assert_eq!(
            decide(
                None,
                Role::NotRegistered,
                false,
                Access::LegacyReserveRelease
            ),
            A
        );
    }
}
