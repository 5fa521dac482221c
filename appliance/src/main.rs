//! `reservoir`: the storage appliance daemon (`serve`) and its command-line
//! client, which talks to the daemon over its JSON-RPC control socket.

mod backup;
mod cli;
mod daemon;
mod reservations;
mod rpc;
mod store;
mod table;
mod targets;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reservoir_target_config::Config;

#[derive(Debug, Parser)]
#[command(name = "reservoir", version, about = "Reservoir storage appliance")]
struct Args {
    /// The TOML config file (`reservoir serve` runs a default appliance without one).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The daemon's control socket (default: the one the config, or the default appliance, uses).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance: serve volumes over iSCSI until SIGINT or SIGTERM.
    Serve,
    /// Volumes: block devices the appliance owns.
    #[command(subcommand)]
    Volume(cli::VolumeCommand),
    /// iSCSI targets and their LUNs.
    #[command(subcommand)]
    Target(cli::TargetCommand),
    /// Logged-in iSCSI sessions.
    #[command(subcommand)]
    Session(cli::SessionCommand),
    /// Persistent reservations of a volume's LUNs.
    #[command(subcommand)]
    Reservation(cli::ReservationCommand),
    /// Copy-on-write snapshots of a volume.
    #[command(subcommand)]
    Snapshot(cli::SnapshotCommand),
    /// The cluster node agent of a host that shares the appliance's LUNs.
    #[command(subcommand)]
    Node(cli::NodeCommand),
    /// Incremental backups to a backup server: run, restore, list, verify, prune.
    #[command(subcommand)]
    Backup(cli::BackupCommand),
    /// Run a backup server: store appliances' backups in a repository directory.
    BackupServer(cli::BackupServerArgs),
    /// Print a commented example config file.
    ExampleConfig,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = run(args);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reservoir: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = || -> anyhow::Result<Config> {
        Ok(match &args.config {
            Some(path) => Config::load(path)?,
            None => Config::default_appliance(),
        })
    };
    match args.command {
        Command::Serve => {
            init_logging();
            daemon::serve(&config()?)
        }
        Command::ExampleConfig => {
            print!("{}", reservoir_target_config::example_toml());
            Ok(())
        }
        // The agent runs on a cluster host and talks to its own control
        // socket, not to the appliance's daemon.
        Command::Node(command) => {
            if matches!(command, cli::NodeCommand::Run { .. }) {
                init_logging();
            }
            cli::node(command, cli::Output { json: args.json })
        }
        Command::BackupServer(a) => cli::backup_server(a),
        command => {
            let socket = match &args.socket {
                Some(socket) => socket.clone(),
                None => config()?.server.rpc_socket_path(),
            };
            let output = cli::Output { json: args.json };
            // list, verify, prune and restores into a file need no daemon.
            if let Command::Backup(c) = command {
                return cli::backup(c, output, || rpc::Client::connect(&socket));
            }
            let mut client = rpc::Client::connect(&socket)?;
            match command {
                Command::Volume(c) => cli::volume(&mut client, c, output),
                Command::Target(c) => cli::target(&mut client, c, output),
                Command::Session(c) => cli::session(&mut client, c, output),
                Command::Reservation(c) => cli::reservation(&mut client, c, output),
                Command::Snapshot(c) => cli::snapshot(&mut client, c, output),
                Command::Serve
                | Command::ExampleConfig
                | Command::Node(_)
                | Command::Backup(_)
                | Command::BackupServer(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// Logs to stderr; `RESERVOIR_LOG` takes tracing's filter syntax (default `info`).
fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RESERVOIR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
}
