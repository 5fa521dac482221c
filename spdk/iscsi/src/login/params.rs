//! Session and connection parameters agreed at login (RFC 7143 §13), with
//! the values RFC 7143 defines when a key is never negotiated.

/// Our MaxRecvDataSegmentLength: the largest data segment we accept once
/// declared. 256 KiB lets a 256 KiB write arrive as one PDU.
pub const OUR_MAX_RECV_DATA_SEGMENT: u32 = 256 * 1024;
/// Every MaxRecvDataSegmentLength is 8192 until declared (§13.12), which
/// also bounds Login PDUs.
pub const DEFAULT_MAX_RECV_DATA_SEGMENT: u32 = 8192;
/// Offers; the agreed value is the minimum of both sides'.
pub const OUR_MAX_BURST: u32 = 1024 * 1024;
pub const OUR_FIRST_BURST: u32 = 256 * 1024;
pub const OUR_MAX_OUTSTANDING_R2T: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: bounds our Data-In, Text
    /// and NOP-In data segments.
    pub initiator_max_recv: u32,
    /// Ours: bounds what we accept.
    pub target_max_recv: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub error_recovery_level: u32,
    pub max_connections: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            header_digest: false,
            data_digest: false,
            initiator_max_recv: DEFAULT_MAX_RECV_DATA_SEGMENT,
            target_max_recv: DEFAULT_MAX_RECV_DATA_SEGMENT,
            max_burst: 262_144,
            first_burst: 65_536,
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            max_connections: 1,
        }
    }
}

impl Params {
    /// The agreed keys, for listing a session.
    pub fn keys(&self) -> Vec<(String, String)> {
        let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
        let dg = |b: bool| if b { "CRC32C" } else { "None" }.to_string();
        vec![
            ("HeaderDigest".into(), dg(self.header_digest)),
            ("DataDigest".into(), dg(self.data_digest)),
            (
                "MaxRecvDataSegmentLength".into(),
                self.initiator_max_recv.to_string(),
            ),
            (
                "TargetMaxRecvDataSegmentLength".into(),
                self.target_max_recv.to_string(),
            ),
            ("MaxBurstLength".into(), self.max_burst.to_string()),
            ("FirstBurstLength".into(), self.first_burst.to_string()),
            ("ImmediateData".into(), yn(self.immediate_data)),
            ("InitialR2T".into(), yn(self.initial_r2t)),
            (
                "MaxOutstandingR2T".into(),
                self.max_outstanding_r2t.to_string(),
            ),
            ("DataPDUInOrder".into(), yn(self.data_pdu_in_order)),
            (
                "DataSequenceInOrder".into(),
                yn(self.data_sequence_in_order),
            ),
            (
                "DefaultTime2Wait".into(),
                self.default_time2wait.to_string(),
            ),
            (
                "DefaultTime2Retain".into(),
                self.default_time2retain.to_string(),
            ),
            (
                "ErrorRecoveryLevel".into(),
                self.error_recovery_level.to_string(),
            ),
            ("MaxConnections".into(), self.max_connections.to_string()),
        ]
    }
}

/// What became of one offered key (§6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    /// Answer with this value.
    Value(String),
    /// Declarative key: no answer.
    Silent,
    /// The value is malformed or out of range (§6.2: answer "Reject").
    Reject,
    /// Not a key this target knows (§6.2: answer "NotUnderstood").
    NotUnderstood,
    /// Not for this context, e.g. a login-only key in a Text request.
    Irrelevant,
}

fn numeric(value: &str, min: u32, max: u32) -> Option<u32> {
    // §6.1: decimal, or hex with 0x prefix.
    let n = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            value.parse().ok()?
        }
        None => return None,
    };
    u32::try_from(n).ok().filter(|n| (min..=max).contains(n))
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> KeyAnswer {
    KeyAnswer::Value(if b { "Yes" } else { "No" }.into())
}

/// The largest 24-bit length (§13.12-§13.14 ranges end at 2^24 - 1).
const MAX_24: u32 = (1 << 24) - 1;

impl Params {
    /// Negotiates one operational key offered by the initiator (§13).
    /// `login` is false for Text requests in full feature phase, where only
    /// MaxRecvDataSegmentLength may change (§13.12 "ALL").
    pub fn offer(&mut self, key: &str, value: &str, login: bool) -> KeyAnswer {
        let known_login_only = matches!(
            key,
            "HeaderDigest"
                | "DataDigest"
                | "MaxBurstLength"
                | "FirstBurstLength"
                | "MaxOutstandingR2T"
                | "DefaultTime2Wait"
                | "DefaultTime2Retain"
                | "ErrorRecoveryLevel"
                | "MaxConnections"
                | "ImmediateData"
                | "InitialR2T"
                | "DataPDUInOrder"
                | "DataSequenceInOrder"
                | "TaskReporting"
        );
        if !login && known_login_only {
            return KeyAnswer::Irrelevant;
        }
        let num = |min, max| numeric(value, min, max);
        let answer = match key {
            "HeaderDigest" | "DataDigest" => {
                // A list in the initiator's order of preference (§13.1).
                let pick = value.split(',').find(|v| *v == "CRC32C" || *v == "None");
                match pick {
                    Some(v) => {
                        let on = v == "CRC32C";
                        if key == "HeaderDigest" {
                            self.header_digest = on;
                        } else {
                            self.data_digest = on;
                        }
                        KeyAnswer::Value(v.into())
                    }
                    None => KeyAnswer::Reject,
                }
            }
            "MaxRecvDataSegmentLength" => match num(512, MAX_24) {
                Some(n) => {
                    self.initiator_max_recv = n;
                    KeyAnswer::Silent
                }
                None => KeyAnswer::Reject,
            },
            "MaxBurstLength" => min_of(num(512, MAX_24), OUR_MAX_BURST, &mut self.max_burst),
            "FirstBurstLength" => min_of(num(512, MAX_24), OUR_FIRST_BURST, &mut self.first_burst),
            "MaxOutstandingR2T" => min_of(
                num(1, 65535),
                OUR_MAX_OUTSTANDING_R2T,
                &mut self.max_outstanding_r2t,
            ),
            // Without connection recovery there is nothing to retain.
            "DefaultTime2Retain" => min_of(num(0, 3600), 0, &mut self.default_time2retain),
            "ErrorRecoveryLevel" => min_of(num(0, 2), 0, &mut self.error_recovery_level),
            "MaxConnections" => min_of(num(1, 65535), 1, &mut self.max_connections),
            "DefaultTime2Wait" => match num(0, 3600) {
                Some(n) => {
                    self.default_time2wait = n.max(2);
                    KeyAnswer::Value(self.default_time2wait.to_string())
                }
                None => KeyAnswer::Reject,
            },
            // AND with our Yes.
            "ImmediateData" => bool_result(boolean(value), &mut self.immediate_data, |t| t),
            // OR with our No: the initiator decides.
            "InitialR2T" => bool_result(boolean(value), &mut self.initial_r2t, |t| t),
            // OR with our Yes: always Yes, we only handle in-order data.
            "DataPDUInOrder" => bool_result(boolean(value), &mut self.data_pdu_in_order, |_| true),
            "DataSequenceInOrder" => {
                bool_result(boolean(value), &mut self.data_sequence_in_order, |_| true)
            }
            // RFC 7143 §13.23: we report tasks as RFC 3720 did.
            "TaskReporting" => KeyAnswer::Value("RFC3720".into()),
            // Keys only a target sends.
            "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => KeyAnswer::Reject,
            _ => KeyAnswer::NotUnderstood,
        };
        self.first_burst = self.first_burst.min(self.max_burst);
        answer
    }
}

fn min_of(theirs: Option<u32>, ours: u32, slot: &mut u32) -> KeyAnswer {
    match theirs {
        Some(t) => {
            *slot = t.min(ours);
            KeyAnswer::Value(slot.to_string())
        }
        None => KeyAnswer::Reject,
    }
}

fn bool_result(theirs: Option<bool>, slot: &mut bool, f: impl Fn(bool) -> bool) -> KeyAnswer {
    match theirs {
        Some(t) => {
            *slot = f(t);
            yes_no(*slot)
        }
        None => KeyAnswer::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_per_section_13() {
        let mut p = Params::default();
        assert_eq!(
            p.offer("HeaderDigest", "CRC32C,None", true),
            KeyAnswer::Value("CRC32C".into())
        );
        assert!(p.header_digest);
        assert_eq!(
            p.offer("DataDigest", "None", true),
            KeyAnswer::Value("None".into())
        );
        assert_eq!(p.offer("DataDigest", "MD5", true), KeyAnswer::Reject);
        assert_eq!(
            p.offer("MaxBurstLength", "16776192", true),
            KeyAnswer::Value("1048576".into())
        );
        assert_eq!(
            p.offer("FirstBurstLength", "0x1000", true),
            KeyAnswer::Value("4096".into())
        );
        assert_eq!(p.offer("FirstBurstLength", "100", true), KeyAnswer::Reject);
        assert_eq!(p.offer("MaxBurstLength", "abc", true), KeyAnswer::Reject);
        assert_eq!(
            p.offer("InitialR2T", "No", true),
            KeyAnswer::Value("No".into())
        );
        assert!(!p.initial_r2t);
        assert_eq!(
            p.offer("ImmediateData", "No", true),
            KeyAnswer::Value("No".into())
        );
        assert_eq!(
            p.offer("DataPDUInOrder", "No", true),
            KeyAnswer::Value("Yes".into())
        );
        assert_eq!(
            p.offer("ErrorRecoveryLevel", "2", true),
            KeyAnswer::Value("0".into())
        );
        assert_eq!(
            p.offer("MaxConnections", "8", true),
            KeyAnswer::Value("1".into())
        );
        assert_eq!(
            p.offer("DefaultTime2Wait", "0", true),
            KeyAnswer::Value("2".into())
        );
        assert_eq!(
            p.offer("MaxRecvDataSegmentLength", "65536", true),
            KeyAnswer::Silent
        );
        assert_eq!(p.initiator_max_recv, 65536);
        assert_eq!(
            p.offer("X-com.example", "1", true),
            KeyAnswer::NotUnderstood
        );
        assert_eq!(
            p.offer("MaxBurstLength", "4096", false),
            KeyAnswer::Irrelevant
        );
        assert_eq!(
            p.offer("MaxRecvDataSegmentLength", "4096", false),
            KeyAnswer::Silent
        );
    }

    #[test]
    fn first_burst_never_exceeds_max_burst() {
        let mut p = Params::default();
        p.offer("FirstBurstLength", "262144", true);
        p.offer("MaxBurstLength", "8192", true);
        assert_eq!(p.first_burst, 8192);
    }
}
