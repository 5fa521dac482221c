//! The control socket: accepts clients and answers their requests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use serde_json::Value;

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
    let Ok(writer) = stream.try_clone() else { return };
    let mut writer = std::io::BufWriter::new(writer);
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_REQUEST_BYTES).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = line.last() != Some(&b'\n') && line.len() as u64 >= MAX_REQUEST_BYTES;
        let reply = if too_long {
            Some(error_reply(Value::Null, protocol::INVALID_REQUEST, "request too large"))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            handle_line(&line, api)
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
/// owed (notifications only).
pub(super) fn handle_line(line: &[u8], api: &Api) -> Option<String> {
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
                .filter_map(|request| handle_request(request, api))
                .map(|r| serde_json::to_value(r).expect("responses serialize"))
                .collect();
            (!replies.is_empty()).then(|| Value::Array(replies).to_string())
        }
        request => handle_request(request, api)
            .map(|r| serde_json::to_string(&r).expect("responses serialize")),
    }
}

fn handle_request(request: Value, api: &Api) -> Option<Response> {
    let raw: RawRequest = match serde_json::from_value(request) {
        Ok(raw) => raw,
        Err(_) => {
            return Some(Response::new(
                Value::Null,
                Err(RpcError::new(protocol::INVALID_REQUEST, "a request must be a JSON object")),
            ))
        }
    };
    let id = raw.id.clone();
    let outcome = validate(&raw).and_then(|method| {
        api.call(method, raw.params.unwrap_or(Value::Null))
    });
    // A request without an id is a notification: it gets no reply.
    id.map(|id| Response::new(id, outcome))
}

fn validate(raw: &RawRequest) -> Result<&str, RpcError> {
    if raw.jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(protocol::INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""));
    }
    if let Some(id) = &raw.id {
        if !(id.is_string() || id.is_number() || id.is_null()) {
            return Err(RpcError::new(protocol::INVALID_REQUEST, "\"id\" must be a string or number"));
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
