//! Write and verify deterministic block patterns over iSCSI, for crash tests
//! and operations:
//!
//! ```text
//! reservoir-iscsi-io write URL --lba N --blocks N --pattern SEED [--fua]
//! reservoir-iscsi-io read  URL --lba N --blocks N --verify-pattern SEED
//! reservoir-iscsi-io sync  URL
//! ```
//!
//! Exit status: 0 success, 1 pattern mismatch, 2 any other failure.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use reservoir_initiator::{ConnectOptions, Initiator, Isid, Pattern};

#[derive(Parser)]
#[command(about = "Write and verify block patterns on an iSCSI LU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write pattern SEED to BLOCKS blocks starting at LBA.
    Write {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        lba: u64,
        #[arg(long)]
        blocks: u32,
        #[arg(long = "pattern", value_name = "SEED")]
        seed: u64,
        /// Set FUA on every WRITE (16).
        #[arg(long)]
        fua: bool,
    },
    /// Read BLOCKS blocks at LBA and check them against pattern SEED.
    Read {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        lba: u64,
        #[arg(long)]
        blocks: u32,
        #[arg(long = "verify-pattern", value_name = "SEED")]
        seed: u64,
    },
    /// SYNCHRONIZE CACHE (16) over the whole LU.
    Sync {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// iscsi://[user%secret@]host[:port]/target-iqn/lun
    url: String,
    #[arg(long, default_value = "iqn.2026-11.io.reservoir:iscsi-io")]
    initiator_name: String,
    /// Fixed ISID, 12 hex digits (random per login if omitted).
    #[arg(long)]
    isid: Option<Isid>,
    /// Per-command timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Blocks per SCSI command.
    #[arg(long, default_value_t = 256)]
    chunk: u32,
}

impl Common {
    fn connect(&self) -> Result<Initiator> {
        let mut options = ConnectOptions::new(&self.initiator_name);
        options.isid = self.isid;
        options.timeout = Duration::from_secs(self.timeout);
        Initiator::connect(&self.url, options)
            .with_context(|| format!("connecting to {}", self.url))
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reservoir-iscsi-io: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Write {
            common,
            lba,
            blocks,
            seed,
            fua,
        } => {
            let mut lu = common.connect()?;
            let block_size = lu.read_capacity()?.block_size;
            let pattern = Pattern::new(seed);
            for (at, n) in chunks(lba, blocks, common.chunk)? {
                let mut buf = vec![0u8; n as usize * block_size as usize];
                pattern.fill(at, block_size as usize, &mut buf);
                lu.write(at, &buf, block_size, fua)
                    .with_context(|| format!("writing {n} blocks at LBA {at}"))?;
            }
            println!(
                "wrote {blocks} blocks at LBA {lba} with pattern {seed}{}",
                if fua { " (FUA)" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Read {
            common,
            lba,
            blocks,
            seed,
        } => {
            let mut lu = common.connect()?;
            let block_size = lu.read_capacity()?.block_size;
            let pattern = Pattern::new(seed);
            for (at, n) in chunks(lba, blocks, common.chunk)? {
                let data = lu
                    .read(at, n, block_size)
                    .with_context(|| format!("reading {n} blocks at LBA {at}"))?;
                if let Some(bad) = pattern.first_mismatch(at, block_size as usize, &data) {
                    let off = (bad - at) as usize * block_size as usize;
                    let block = &data[off..off + block_size as usize];
                    println!(
                        "MISMATCH at LBA {bad}: block header seed={} lba={} (expected seed={seed} lba={bad}); first bytes {}",
                        u64::from_le_bytes(block[..8].try_into()?),
                        u64::from_le_bytes(block[8..16].try_into()?),
                        block[..32].iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            println!("verified {blocks} blocks at LBA {lba} against pattern {seed}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { common } => {
            common.connect()?.synchronize_cache()?;
            println!("synchronized");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Splits [lba, lba+blocks) into commands of at most `chunk` blocks.
fn chunks(lba: u64, blocks: u32, chunk: u32) -> Result<Vec<(u64, u32)>> {
    anyhow::ensure!(
        blocks > 0 && chunk > 0,
        "--blocks and --chunk must be positive"
    );
    lba.checked_add(u64::from(blocks))
        .context("LBA range overflows")?;
    Ok((0..blocks)
        .step_by(chunk as usize)
        .map(|off| (lba + u64::from(off), chunk.min(blocks - off)))
        .collect())
}
