//! `reservoir backup …` and `reservoir backup-server`.
//!
//! `run`, and `restore` into a volume, go through the daemon (it owns the
//! volumes); `list`, `verify`, `prune` and restores into a file talk to the
//! backup server (`--from`) or open a repository directory (`--repo`)
//! themselves, so they work without a daemon.

use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use reservoir_backup::{
    BackupId, BackupServer, Client, Progress, Repository, RestoreOptions, RestoreTarget,
    ServerOptions, VerifyReport, VolumeChain,
};
use reservoir_target_config::ByteSize;
use serde_json::{json, Value};

use super::{bytes, print_json, text, Output};
use crate::backup::{load_or_create_token, read_token, read_token_text};
use crate::rpc::Client as RpcClient;
use crate::table;

#[derive(Debug, Args)]
pub struct BackupServerArgs {
    /// Address to listen on, such as 0.0.0.0:7650.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The repository directory (created if missing).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// The secret appliances must present; created with a random token
    /// (mode 0600) if missing. Give appliances a copy of it.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// Payload bytes between checkpoints: an interrupted backup resumes at
    /// the last one, so it repeats at most this much.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    checkpoint: ByteSize,
}

/// Where backups are read: a backup server or a repository on this machine.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from", "repo"])))]
pub struct Source {
    /// The backup server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "token_file")]
    from: Option<String>,
    /// A repository directory on this machine (no server needed).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// The backup server's token file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back a volume up: full the first time, then only the chunks changed
    /// since the last backup; an interrupted run resumes where it stopped.
    Run {
        volume: String,
        /// The backup server, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// The backup server's token file.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
    /// Rebuild the image at one backup into a volume (through the daemon)
    /// or a file (a path with a `/`, such as ./vol0.img).
    Restore {
        #[command(flatten)]
        source: Source,
        /// The backup id (`reservoir backup list` shows them).
        #[arg(long)]
        backup: u64,
        /// A volume name, or a file path containing `/`.
        #[arg(long, value_name = "VOLUME|FILE")]
        to: String,
        /// Restore into a volume even while initiators are logged in to it.
        #[arg(long)]
        force: bool,
    },
    /// The backups of each volume, oldest first.
    List {
        #[command(flatten)]
        source: Source,
    },
    /// Re-read every chunk and check every checksum; exits non-zero and
    /// names each damaged backup.
    Verify {
        #[command(flatten)]
        source: Source,
        /// Only this backup.
        #[arg(long)]
        backup: Option<u64>,
    },
    /// Keep the newest N backups of each volume; kept incrementals whose
    /// parents go are rewritten as full backups first.
    Prune {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        keep: usize,
    },
}

/// An opened [`Source`].
enum Store {
    Server(Client),
    Local(Repository),
}

impl Source {
    fn open(&self) -> Result<Store> {
        match (&self.from, &self.repo, &self.token_file) {
            (Some(addr), _, Some(token)) => Ok(Store::Server(Client::new(
                addr.as_str(),
                read_token(token)?,
            )?)),
            (None, Some(dir), _) => {
                // Opening creates a repository; a mistyped path must not.
                if !dir.join("repository.json").is_file() {
                    bail!("{} is not a backup repository", dir.display());
                }
                Ok(Store::Local(Repository::open(dir)?))
            }
            _ => bail!("give --from HOST:PORT with --token-file FILE, or --repo DIR"),
        }
    }
}

pub fn backup_server(args: BackupServerArgs) -> Result<()> {
    if args.checkpoint.bytes() == 0 {
        bail!("--checkpoint must not be zero");
    }
    let (token, created) = load_or_create_token(&args.token_file)?;
    if created {
        eprintln!(
            "reservoir: created token file {}; give each appliance a copy (--token-file)",
            args.token_file.display()
        );
    }
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "reservoir: backup server on {}, repository {}",
        listener.local_addr()?,
        args.repo.display()
    );
    BackupServer::serve(
        listener,
        &args.repo,
        token,
        ServerOptions {
            checkpoint_bytes: args.checkpoint.bytes(),
        },
    )?;
    Ok(())
}

pub fn backup(
    command: BackupCommand,
    output: Output,
    daemon: impl FnOnce() -> Result<RpcClient>,
) -> Result<()> {
    match command {
        BackupCommand::Run {
            volume,
            to,
            token_file,
        } => {
            let params =
                json!({"volume": volume, "to": to, "token": read_token_text(&token_file)?});
            let mut meter = Meter::new();
            let result =
                daemon()?.call_with_progress("backup_run", params, &mut |p| meter.show_json(p));
            meter.end();
            let result = result?;
            if output.json {
                return print_json(&result);
            }
            print_run(&volume, &result);
            Ok(())
        }
        BackupCommand::Restore {
            source,
            backup,
            to,
            force,
        } => restore(source, backup, &to, force, output, daemon),
        BackupCommand::List { source } => {
            let chains = match source.open()? {
                Store::Server(client) => client.list()?,
                Store::Local(repo) => repo.list()?,
            };
            if output.json {
                return print_json(&serde_json::to_value(&chains)?);
            }
            print_chains(&chains);
            Ok(())
        }
        BackupCommand::Verify { source, backup } => {
            let backup = backup.map(BackupId);
            let report = match source.open()? {
                Store::Server(client) => client.verify(backup)?,
                Store::Local(repo) => repo.verify(backup)?,
            };
            if output.json {
                print_json(&serde_json::to_value(&report)?)?;
            } else {
                print_verdicts(&report);
            }
            damage(&report)
        }
        BackupCommand::Prune { source, keep } => {
            if keep == 0 {
                bail!("--keep must be at least 1; removing every backup is not a prune");
            }
            let report = match source.open()? {
                Store::Server(client) => client.prune(keep)?,
                Store::Local(repo) => repo.prune(keep)?,
            };
            if output.json {
                return print_json(&serde_json::to_value(&report)?);
            }
            let ids = |list: &[BackupId]| {
                if list.is_empty() {
                    "-".to_owned()
                } else {
                    list.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }
            };
            println!("kept:    {}", ids(&report.kept));
            println!("removed: {}", ids(&report.removed));
            println!("rebased as full backups: {}", ids(&report.rebased));
            if !report.removed_partials.is_empty() {
                println!(
                    "abandoned partial backups removed: {}",
                    ids(&report.removed_partials)
                );
            }
            Ok(())
        }
    }
}

fn restore(
    source: Source,
    backup: u64,
    to: &str,
    force: bool,
    output: Output,
    daemon: impl FnOnce() -> Result<RpcClient>,
) -> Result<()> {
    let mut meter = Meter::new();
    if !to.contains('/') {
        let (Some(from), Some(token_file)) = (&source.from, &source.token_file) else {
            bail!("a restore into volume {to} needs --from HOST:PORT and --token-file: the daemon fetches from the backup server (to restore into a file, give a path with a '/', such as ./{to}.img)");
        };
        let params = json!({
            "volume": to,
            "from": from,
            "backup": backup,
            "token": read_token_text(token_file)?,
            "force": force,
        });
        let result =
            daemon()?.call_with_progress("backup_restore", params, &mut |p| meter.show_json(p));
        meter.end();
        let result = result?;
        if output.json {
            return print_json(&result);
        }
        println!(
            "restored backup {} into volume {to}: {} ({} of data) in {:.1}s",
            text(&result["backup"]),
            bytes(&result["volume_bytes"]),
            bytes(&result["data_bytes"]),
            result["elapsed_secs"].as_f64().unwrap_or_default()
        );
        return Ok(());
    }
    if force {
        bail!("--force applies to restores into a volume, not into a file");
    }
    let target = RestoreTarget::File(PathBuf::from(to));
    let id = BackupId(backup);
    let options = RestoreOptions::default();
    let mut show = |p: &Progress| meter.show(p);
    let summary = match source.open()? {
        Store::Server(client) => {
            reservoir_backup::restore(&client, id, &target, options, &mut show)
        }
        Store::Local(repo) => repo.restore(id, &target, options, &mut show),
    };
    meter.end();
    let summary = summary.with_context(|| format!("restore of backup {backup} into {to}"))?;
    if output.json {
        return print_json(&json!({
            "file": to,
            "backup": summary.backup,
            "volume_bytes": summary.volume_bytes,
            "data_bytes": summary.data_bytes,
            "elapsed_secs": summary.elapsed.as_secs_f64(),
            "parallel": summary.parallel,
        }));
    }
    println!(
        "restored backup {backup} into {}: {} ({} of data) in {:.1}s",
        Path::new(to).display(),
        bytes(&json!(summary.volume_bytes)),
        bytes(&json!(summary.data_bytes)),
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}

fn print_run(volume: &str, result: &Value) {
    let b = &result["backup"];
    let kind = match &b["parent"] {
        Value::Null => "full".to_owned(),
        parent => format!("incremental on backup {parent}"),
    };
    println!(
        "backup {} of volume {volume}: {kind}, snapshot {}, {} changed chunks, {} sent in {:.1}s",
        text(&b["id"]),
        text(&b["snapshot"]),
        text(&b["changed_chunks"]),
        bytes(&b["bytes_sent"]),
        b["duration_ms"].as_f64().unwrap_or_default() / 1000.0
    );
    if result["fell_back_to_full"].as_bool() == Some(true) {
        println!("the previous backup is no longer on the server, so this one is full");
    }
    if let Some(old) = result["retired_snapshot"].as_str() {
        println!("retired snapshot {old}");
    }
    if let Some(note) = result["kept_snapshot"].as_str() {
        println!("note: {note}");
    }
}

fn print_chains(chains: &[VolumeChain]) {
    if chains.is_empty() {
        println!("no backups");
    }
    for (i, chain) in chains.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!(
            "volume {} ({}-byte blocks)",
            chain.volume.name, chain.volume.block_size
        );
        let rows: Vec<Vec<String>> = chain
            .backups
            .iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    utc(b.created_unix_ms),
                    b.parent.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    ByteSize::from_bytes(b.bytes_sent).to_string(),
                    b.changed_chunks.to_string(),
                    format!("{:.1}s", b.duration_ms as f64 / 1000.0),
                    b.snapshot.clone(),
                ]
            })
            .collect();
        table::print(
            &[
                "ID",
                "CREATED (UTC)",
                "PARENT",
                "SENT",
                "CHANGED CHUNKS",
                "DURATION",
                "SNAPSHOT",
            ],
            &rows,
        );
    }
}

fn print_verdicts(report: &VerifyReport) {
    let rows: Vec<Vec<String>> = report
        .backups
        .iter()
        .map(|v| {
            vec![
                v.id.to_string(),
                v.volume.clone().unwrap_or_else(|| "?".into()),
                v.chunks_checked.to_string(),
                ByteSize::from_bytes(v.bytes_checked).to_string(),
                if v.ok() {
                    "ok".to_owned()
                } else {
                    format!("DAMAGED: {}", v.problems.join("; "))
                },
            ]
        })
        .collect();
    table::print(&["ID", "VOLUME", "CHUNKS", "CHECKED", "STATE"], &rows);
}

/// The verify verdict as the exit status.
fn damage(report: &VerifyReport) -> Result<()> {
    let damaged: Vec<String> = report
        .backups
        .iter()
        .filter(|v| !v.ok())
        .map(|v| format!("backup {} ({})", v.id, v.problems.join("; ")))
        .collect();
    if !damaged.is_empty() {
        bail!("verify found damage: {}", damaged.join(", "));
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (proleptic Gregorian), after H. Hinnant's
    // `civil_from_days`.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Shows progress on stderr: a bar redrawn in place on a terminal, a
/// plain line every few seconds otherwise (logs, pipes).
struct Meter {
    terminal: bool,
    last_line: Option<Instant>,
    drawn: bool,
}

impl Meter {
    const LINE_EVERY: Duration = Duration::from_secs(5);
    const BAR_WIDTH: usize = 30;

    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            drawn: false,
        }
    }

    fn show(&mut self, p: &Progress) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{}", p.bar(Self::BAR_WIDTH));
            let _ = err.flush();
            self.drawn = !p.finished;
            if p.finished {
                let _ = writeln!(err);
            }
        } else if p.finished
            || self
                .last_line
                .is_none_or(|t| t.elapsed() >= Self::LINE_EVERY)
        {
            self.last_line = Some(Instant::now());
            let _ = writeln!(err, "{p}");
        }
    }

    /// The `params` of a `progress` notification (docs/rpc.md).
    fn show_json(&mut self, v: &Value) {
        let secs = |v: &Value| v.as_f64().map(Duration::from_secs_f64);
        let p = Progress {
            done_bytes: v["done_bytes"].as_u64().unwrap_or_default(),
            total_bytes: v["total_bytes"].as_u64().unwrap_or_default(),
            wire_bytes: v["wire_bytes"].as_u64().unwrap_or_default(),
            elapsed: secs(&v["elapsed_secs"]).unwrap_or_default(),
            rate: v["rate"].as_f64().unwrap_or_default(),
            eta: secs(&v["eta_secs"]),
            finished: v["finished"].as_bool() == Some(true),
        };
        self.show(&p);
    }

    /// Ends an unfinished bar's line (the operation failed midway).
    fn end(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_600_800_123), "2026-11-25 10:00:00");
    }
}
