//! iSCSI PDUs (RFC 7143 §11): typed headers, framing, digests.

mod bhs;
mod codec;
mod digest;

pub use bhs::{
    lun_from_wire, lun_to_wire, DataOut, HeaderError, Itt, LoginRequest, LogoutReason,
    LogoutRequest, NopOut, Pdu, Residual, ScsiCommand, Stage, TargetPdu, TaskManagementRequest,
    TextRequest, TmfFunction, Ttt, BHS_LEN, RESERVED_TAG,
};
pub use codec::{decode_frame, encode, Frame, FrameError, FrameLimits, Reader};
pub use digest::Digests;
