//! iSCSI PDUs (RFC 7143 §11): typed headers, framing, digests.

mod bhs;
mod codec;
mod digest;

pub use bhs::{
    DataOut, HeaderError, Itt, LoginRequest, LogoutReason, LogoutRequest, NopOut, Pdu, Residual,
    ScsiCommand, Stage, TargetPdu, TaskManagementRequest, TextRequest, TmfFunction, Ttt, BHS_LEN,
    RESERVED_TAG,
};
pub use codec::{
    decode_frame, encode, encode_header, encode_padding, encode_trailer, missing_bytes, Frame,
    FrameError, FrameLimits,
};
pub use digest::Digests;
