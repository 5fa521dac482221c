//! The `backup_*` RPC methods: the daemon's side of `backup run` and of
//! `backup restore --to VOLUME`. Both report progress as `progress`
//! notifications on the caller's connection before their response.

use reservoir_backup::{BackupId, Progress, Token};
use serde::Deserialize;
use serde_json::{json, Value};

use super::methods::parse;
use super::protocol::{self, RpcError};
use crate::backup::Backups;

/// Sends one JSON-RPC notification (`method`, `params`) to the caller.
pub type Notify<'a> = &'a mut (dyn FnMut(&str, Value) + Send);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    volume: String,
    /// `HOST:PORT` of the backup server.
    to: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreParams {
    volume: String,
    from: String,
    backup: u64,
    token: String,
    #[serde(default)]
    force: bool,
}

/// Answers a `backup_*` method.
pub(super) fn call(
    backups: &Backups,
    method: &str,
    params: Value,
    notify: Notify<'_>,
) -> Result<Value, RpcError> {
    let mut report = |p: &Progress| notify("progress", progress_params(p));
    match method {
        "backup_run" => parse(params).and_then(|p: RunParams| {
            let outcome = backups
                .run(&p.volume, &p.to, token(&p.token)?, &mut report)
                .map_err(|e| RpcError::failed(&e))?;
            Ok(json!({
                "backup": outcome.info,
                "fell_back_to_full": outcome.fell_back_to_full,
                "retired_snapshot": outcome.retired_snapshot,
                "kept_snapshot": outcome.kept_snapshot,
                "wire_bytes_this_run": outcome.wire_bytes_this_run,
            }))
        }),
        "backup_restore" => parse(params).and_then(|p: RestoreParams| {
            let summary = backups
                .restore(
                    &p.volume,
                    &p.from,
                    BackupId(p.backup),
                    token(&p.token)?,
                    p.force,
                    &mut report,
                )
                .map_err(|e| RpcError::failed(&e))?;
            Ok(json!({
                "volume": p.volume,
                "backup": summary.backup,
                "volume_bytes": summary.volume_bytes,
                "data_bytes": summary.data_bytes,
                "elapsed_secs": summary.elapsed.as_secs_f64(),
                "parallel": summary.parallel,
            }))
        }),
        other => Err(RpcError::new(
            protocol::METHOD_NOT_FOUND,
            format!("no method {other:?}; see docs/rpc.md for the list"),
        )),
    }
}

fn token(text: &str) -> Result<Token, RpcError> {
    Token::new(text.as_bytes()).map_err(|e| RpcError::invalid_params(e.to_string()))
}

/// The `params` of a `progress` notification (docs/rpc.md).
pub fn progress_params(p: &Progress) -> Value {
    json!({
        "done_bytes": p.done_bytes,
        "total_bytes": p.total_bytes,
        "wire_bytes": p.wire_bytes,
        "elapsed_secs": p.elapsed.as_secs_f64(),
        "rate": p.rate,
        "eta_secs": p.eta.map(|d| d.as_secs_f64()),
        "finished": p.finished,
    })
}
