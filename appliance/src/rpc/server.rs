//! The control socket: accepts clients and answers their requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::backups::Notify;
use super::methods::Api;
use super::protocol::{self, RawRequest, Response, RpcError};

/// Longest request line accepted; a client sending more is cut off rather
/// than allowed to grow the daemon's memory.
const MAX_REQUEST_BYTES: u64 = 1 << 20;

#[derive(Debug)]
pub struct RpcServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RpcServer {
    /// Listens on `path` (replacing a stale socket left by a killed daemon;
    /// the data-directory lock guarantees no live daemon owns it).
    pub fn start(path: &Path, api: Arc<Api>) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove stale {}", path.display()))
            }
            _ => {}
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on control socket {}", path.display()))?;
        // The socket controls the appliance: owner and group only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let api = api.clone();
                    let _ = std::thread::Builder::new()
                        .name("rpc-client".into())
                        .spawn(move || serve_client(stream, &api));
                }
            })?;
        Ok(Self {
            path: path.to_owned(),
            stopping,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, api: &Api) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = std::io::BufWriter::new(writer);
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_REQUEST_BYTES)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = line.last() != Some(&b'\n') && line.len() as u64 >= MAX_REQUEST_BYTES;
        let reply = if too_long {
            Some(error_reply(
                Value::Null,
                protocol::INVALID_REQUEST,
                "request too large",
            ))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            // Progress of a long method goes out as notifications, each on
            // its own line, before the response; a client that went away
            // does not stop the operation.
            let mut notify = |method: &str, params: Value| {
                let note = json!({"jsonrpc": "2.0", "method": method, "params": params});
                let _ = writer
                    .write_all(note.to_string().as_bytes())
                    .and_then(|()| writer.write_all(b"\n"))
                    .and_then(|()| writer.flush());
            };
            handle_line(&line, api, &mut notify)
        };
        if let Some(reply) = reply {
            if writer
                .write_all(reply.as_bytes())
                .and_then(|()| writer.write_all(b"\n"))
                .and_then(|()| writer.flush())
                .is_err()
            {
                return;
            }
        }
        if too_long {
            return;
        }
    }
}

/// Answers one line: a request, a batch, or garbage. `None` when nothing is
/// owed (notifications only). A single request may send notifications
/// through `notify` first; requests in a batch send none.
pub(super) fn handle_line(line: &[u8], api: &Api, notify: Notify<'_>) -> Option<String> {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            return Some(error_reply(
                Value::Null,
                protocol::PARSE_ERROR,
                &format!("not JSON: {e}"),
            ))
        }
    };
    match value {
        Value::Array(batch) if batch.is_empty() => Some(error_reply(
            Value::Null,
            protocol::INVALID_REQUEST,
            "empty batch",
        )),
        Value::Array(batch) => {
            let replies: Vec<Value> = batch
                .into_iter()
                .filter_map(|request| handle_request(request, api, &mut |_, _| {}))
                .map(|r| serde_json::to_value(r).expect("responses serialize"))
                .collect();
            (!replies.is_empty()).then(|| Value::Array(replies).to_string())
        }
        request => handle_request(request, api, notify)
            .map(|r| serde_json::to_string(&r).expect("responses serialize")),
    }
}

fn handle_request(request: Value, api: &Api, notify: Notify<'_>) -> Option<Response> {
    let raw: RawRequest = match serde_json::from_value(request) {
        Ok(raw) => raw,
        Err(_) => {
            return Some(Response::new(
                Value::Null,
                Err(RpcError::new(
                    protocol::INVALID_REQUEST,
                    "a request must be a JSON object",
                )),
            ))
        }
    };
    let outcome = validate(&raw)
        .and_then(|method| api.call(method, raw.params.clone().unwrap_or(Value::Null), notify));
    let id = raw.id;
    // A request without an id is a notification: it gets no reply.
    id.map(|id| Response::new(id, outcome))
}

fn validate(raw: &RawRequest) -> Result<&str, RpcError> {
    if raw.jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(
            protocol::INVALID_REQUEST,
            "\"jsonrpc\" must be \"2.0\"",
        ));
    }
    if let Some(id) = &raw.id {
        if !(id.is_string() || id.is_number() || id.is_null()) {
            return Err(RpcError::new(
                protocol::INVALID_REQUEST,
                "\"id\" must be a string or number",
            ));
        }
    }
    raw.method
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(protocol::INVALID_REQUEST, "\"method\" must be a string"))
}

fn error_reply(id: Value, code: i64, message: &str) -> String {
    serde_json::to_string(&Response::new(id, Err(RpcError::new(code, message))))
        .expect("responses serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::Volumes;
    use reservoir_iscsi::Sessions;

    fn api(dir: &Path) -> Api {
        let volumes = Arc::new(Volumes::open(dir, &[]).unwrap());
        Api::new(
            volumes,
            Arc::new(Sessions::new()),
            Arc::new(crate::targets::TargetRegistry::new(dir)),
        )
    }

    fn reply(api: &Api, line: &str) -> Value {
        serde_json::from_str(&handle_line(line.as_bytes(), api, &mut |_, _| {}).expect("a reply"))
            .unwrap()
    }

    #[test]
    fn garbage_gets_the_prescribed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path());
        let cases = [
            ("{not json", protocol::PARSE_ERROR),
            ("[]", protocol::INVALID_REQUEST),
            ("42", protocol::INVALID_REQUEST),
            (
                r#"{"method":"volume_list","id":1}"#,
                protocol::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","method":7,"id":1}"#,
                protocol::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"nope","id":1}"#,
                protocol::METHOD_NOT_FOUND,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"volume_delete","params":[1],"id":1}"#,
                protocol::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"volume_resize","params":{"name":"x"},"id":1}"#,
                protocol::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"volume_create","params":{"name":"../x","backend":"malloc","size":"1MiB"},"id":1}"#,
                protocol::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"volume_create","params":{"name":"x","backend":"malloc","size":"1MiB","block_size":1000},"id":1}"#,
                protocol::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"volume_delete","params":{"name":"missing"},"id":1}"#,
                protocol::OPERATION_FAILED,
            ),
        ];
        for (line, code) in cases {
            let value = reply(&api, line);
            assert_eq!(value["error"]["code"], code, "{line} -> {value}");
            assert_eq!(value["jsonrpc"], "2.0");
        }
    }

    #[test]
    fn notifications_get_no_reply_and_batches_answer_each() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path());
        assert!(handle_line(
            br#"{"jsonrpc":"2.0","method":"volume_list"}"#,
            &api,
            &mut |_, _| {}
        )
        .is_none());
        let value = reply(
            &api,
            r#"[{"jsonrpc":"2.0","method":"volume_list","id":"a"},{"jsonrpc":"2.0","method":"x","id":2},{"jsonrpc":"2.0","method":"volume_list"}]"#,
        );
        let replies = value.as_array().unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0]["id"], "a");
        assert!(replies[0]["result"].is_array());
        assert_eq!(replies[1]["error"]["code"], protocol::METHOD_NOT_FOUND);
    }

    #[test]
    fn volumes_are_created_resized_deleted_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path());
        let created = reply(
            &api,
            r#"{"jsonrpc":"2.0","method":"volume_create","params":{"name":"v1","backend":"malloc","size":"4MiB"},"id":1}"#,
        );
        assert_eq!(created["result"]["size_bytes"], 4 << 20, "{created}");
        let resized = reply(
            &api,
            r#"{"jsonrpc":"2.0","method":"volume_resize","params":{"name":"v1","size":"8MiB"},"id":2}"#,
        );
        assert_eq!(resized["result"]["size_bytes"], 8 << 20, "{resized}");
        let serial = resized["result"]["serial"].clone();

        let reopened = self::api(dir.path());
        let listed = reply(
            &reopened,
            r#"{"jsonrpc":"2.0","method":"volume_list","id":3}"#,
        );
        assert_eq!(listed["result"][0]["size_bytes"], 8 << 20, "{listed}");
        assert_eq!(listed["result"][0]["serial"], serial, "identity is stable");

        let deleted = reply(
            &reopened,
            r#"{"jsonrpc":"2.0","method":"volume_delete","params":{"name":"v1"},"id":4}"#,
        );
        assert_eq!(deleted["result"], true, "{deleted}");
        let listed = reply(
            &self::api(dir.path()),
            r#"{"jsonrpc":"2.0","method":"volume_list","id":5}"#,
        );
        assert_eq!(listed["result"], serde_json::json!([]));
    }
}
