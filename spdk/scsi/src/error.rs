/// Why a task management function could not be performed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TmfError {
    /// RFC 7143 (Task Management Function Response) maps this to "LUN does not exist".
    #[error("logical unit {lun} does not exist on this device")]
    NoSuchLun { lun: u64 },
}
