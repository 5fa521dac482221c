//! The CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::protocol::Response;

#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket).with_context(|| {
            format!(
                "cannot reach the daemon at {} — is `reservoir serve` running? \
                 (point at it with --config FILE or --socket PATH)",
                socket.display()
            )
        })?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_id: 1,
        })
    }

    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.call_with_progress(method, params, &mut |_| {})
    }

    /// [`Client::call`] for a long method: `progress` gets the params of
    /// each `progress` notification the daemon sends before its response.
    pub fn call_with_progress(
        &mut self,
        method: &str,
        params: Value,
        progress: &mut dyn FnMut(&Value),
    ) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .context("the daemon closed the control socket")?;
        loop {
            let mut reply = String::new();
            if self.reader.read_line(&mut reply)? == 0 {
                bail!("the daemon closed the control socket without answering");
            }
            let value: Value =
                serde_json::from_str(&reply).context("the daemon sent an unreadable reply")?;
            // A notification has a method and no id (JSON-RPC 2.0 §4.1).
            if value.get("id").is_none() {
                if value["method"] == "progress" {
                    progress(&value["params"]);
                }
                continue;
            }
            let response: Response =
                serde_json::from_value(value).context("the daemon sent an unreadable reply")?;
            return match (response.result, response.error) {
                (_, Some(error)) => Err(anyhow!(error.message)),
                (Some(result), None) => Ok(result),
                (None, None) => bail!("the daemon's reply has neither result nor error"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_notifications_come_before_the_response() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut client = Client {
            reader: BufReader::new(ours.try_clone().unwrap()),
            writer: ours,
            next_id: 1,
        };
        let daemon = std::thread::spawn(move || {
            let mut request = String::new();
            BufReader::new(theirs.try_clone().unwrap())
                .read_line(&mut request)
                .unwrap();
            let mut out = theirs;
            for done in [1, 2] {
                writeln!(
                    out,
                    r#"{{"jsonrpc":"2.0","method":"progress","params":{{"done_bytes":{done}}}}}"#
                )
                .unwrap();
            }
            writeln!(out, r#"{{"jsonrpc":"2.0","result":"ok","id":1}}"#).unwrap();
            request
        });
        let mut seen = Vec::new();
        let result = client
            .call_with_progress("backup_run", json!({}), &mut |p| {
                seen.push(p["done_bytes"].as_u64().unwrap())
            })
            .unwrap();
        assert_eq!(result, "ok");
        assert_eq!(seen, [1, 2]);
        let request: Value = serde_json::from_str(&daemon.join().unwrap()).unwrap();
        assert_eq!(request["method"], "backup_run");
    }
}
