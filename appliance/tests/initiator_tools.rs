//! libiscsi's command-line initiators (`iscsi-inq`, `iscsi-ls`,
//! `iscsi-readcapacity16`) against the real daemon: discovery, login with and
//! without CHAP, INQUIRY and READ CAPACITY(16) as a host sees them.

mod support;

use std::process::Command;

use support::{stdout, succeeded, Config, Daemon, INITIATOR_1};

const IQN: &str = "iqn.2026-11.io.reservoir:tools";
const IQN_2: &str = "iqn.2026-11.io.reservoir:tools-2";
const CHAP_USER: &str = "host1";
const CHAP_SECRET: &str = "twelve-chars-min";
const VOLUME_MIB: u64 = 64;

fn tool(name: &str) -> Command {
    let mut command = Command::new(support::require_tool(name));
    // `-i NAME`: iscsi-ls ignores the `--initiator-name=NAME` form.
    command.args(["-i", INITIATOR_1]);
    command
}

/// The value of `KEY:value` in a tool's output.
fn field<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no `{key}:` line in:\n{output}"))
        .trim()
}

#[test]
fn iscsi_inq_reports_reservoir_disk() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", VOLUME_MIB, IQN));
    let out = succeeded(
        "iscsi-inq",
        support::run(tool("iscsi-inq").arg(daemon.url(IQN, 0))),
    );
    assert_eq!(field(&out, "Vendor"), "RESERVOR", "{out}");
    assert_eq!(
        field(&out, "Peripheral Device Type"),
        "DIRECT_ACCESS",
        "{out}"
    );
    assert_eq!(field(&out, "Peripheral Qualifier"), "CONNECTED", "{out}");
}

#[test]
fn iscsi_inq_lists_mandatory_vpd_pages() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", VOLUME_MIB, IQN));
    // EVPD page 0x00: SUPPORTED VPD PAGES (SPC-4 7.8.16).
    let out = succeeded(
        "iscsi-inq -e 1 -c 0",
        support::run(
            tool("iscsi-inq")
                .args(["-e", "1", "-c", "0"])
                .arg(daemon.url(IQN, 0)),
        ),
    );
    for page in [
        "SUPPORTED_VPD_PAGES",
        "UNIT_SERIAL_NUMBER",
        "DEVICE_IDENTIFICATION",
    ] {
        assert!(out.contains(page), "VPD page {page} missing:\n{out}");
    }
}

#[test]
fn iscsi_readcapacity16_reports_volume_size() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", VOLUME_MIB, IQN));
    let out = succeeded(
        "iscsi-readcapacity16",
        support::run(tool("iscsi-readcapacity16").arg(daemon.url(IQN, 0))),
    );
    let bytes = VOLUME_MIB << 20;
    assert_eq!(field(&out, "Total size"), bytes.to_string(), "{out}");
    let last_lba: u64 = field(&out, "RETURNED LOGICAL BLOCK ADDRESS")
        .parse()
        .expect("LBA");
    let block: u64 = field(&out, "LOGICAL BLOCK LENGTH IN BYTES")
        .parse()
        .expect("block length");
    assert!(block == 512 || block == 4096, "odd block length {block}");
    assert_eq!((last_lba + 1) * block, bytes, "{out}");
}

#[test]
fn iscsi_ls_discovers_targets_and_luns() {
    let config = Config::single_malloc("vol0", VOLUME_MIB, IQN)
        .volume("vol1", support::Backend::Malloc, VOLUME_MIB)
        .target(IQN_2, &["vol1"]);
    let daemon = Daemon::start(&config);
    let portal = format!("Portal:127.0.0.1:{}", daemon.port());

    let out = succeeded(
        "iscsi-ls",
        support::run(tool("iscsi-ls").arg(daemon.portal_url())),
    );
    for iqn in [IQN, IQN_2] {
        let line = out
            .lines()
            .find(|line| line.starts_with(&format!("Target:{iqn} ")))
            .unwrap_or_else(|| panic!("target {iqn} not discovered:\n{out}"));
        assert!(line.contains(&portal), "{line}");
    }

    let out = succeeded(
        "iscsi-ls -s",
        support::run(tool("iscsi-ls").arg("--show-luns").arg(daemon.portal_url())),
    );
    let luns: Vec<&str> = out.lines().filter(|l| l.starts_with("Lun:")).collect();
    assert_eq!(luns.len(), 2, "one LUN per target expected:\n{out}");
    for lun in luns {
        assert!(lun.starts_with("Lun:0 "), "{lun}");
        assert!(lun.contains("Type:DIRECT_ACCESS (Size:"), "{lun}");
    }
}

#[test]
fn chap_protected_target_admits_only_the_right_secret() {
    let config = Config::single_malloc("vol0", VOLUME_MIB, IQN).chap(CHAP_USER, CHAP_SECRET);
    let daemon = Daemon::start(&config);

    // Right secret: login, INQUIRY and LUN listing work.
    let out = succeeded(
        "iscsi-inq with CHAP",
        support::run(tool("iscsi-inq").arg(daemon.chap_url(CHAP_USER, CHAP_SECRET, IQN, 0))),
    );
    assert_eq!(field(&out, "Vendor"), "RESERVOR", "{out}");
    let portal = format!(
        "iscsi://{CHAP_USER}%{CHAP_SECRET}@127.0.0.1:{}",
        daemon.port()
    );
    let out = succeeded(
        "iscsi-ls -s with CHAP",
        support::run(tool("iscsi-ls").arg("--show-luns").arg(&portal)),
    );
    assert!(out.contains(&format!("Target:{IQN} ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("Lun:0 ")), "{out}");

    // Wrong secret, and no credentials at all: the login is refused.
    let wrong = daemon.chap_url(CHAP_USER, "wrong-secret-123", IQN, 0);
    let anonymous = daemon.url(IQN, 0);
    for url in [wrong, anonymous] {
        let output = support::run(tool("iscsi-inq").arg(&url));
        assert!(
            !output.status.success(),
            "iscsi-inq {url} logged in:\n{}",
            stdout(&output)
        );
        assert!(!stdout(&output).contains("Vendor:"), "{}", stdout(&output));
    }
    let wrong_portal = format!(
        "iscsi://{CHAP_USER}%wrong-secret-123@127.0.0.1:{}",
        daemon.port()
    );
    let output = support::run(tool("iscsi-ls").arg("--show-luns").arg(&wrong_portal));
    assert!(
        !output.status.success(),
        "iscsi-ls -s logged in:\n{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("Lun:"), "{}", stdout(&output));
}

#[test]
fn mutual_chap_authenticates_the_target_too() {
    const TARGET_USER: &str = "appliance";
    const TARGET_SECRET: &str = "another-secret";
    let config = Config::single_malloc("vol0", VOLUME_MIB, IQN)
        .chap(CHAP_USER, CHAP_SECRET)
        .mutual_chap(TARGET_USER, TARGET_SECRET);
    let daemon = Daemon::start(&config);
    let url = |target_secret: &str| {
        format!(
            "{}?target_user={TARGET_USER}&target_password={target_secret}",
            daemon.chap_url(CHAP_USER, CHAP_SECRET, IQN, 0)
        )
    };
    let out = succeeded(
        "iscsi-inq with mutual CHAP",
        support::run(tool("iscsi-inq").arg(url(TARGET_SECRET))),
    );
    assert_eq!(field(&out, "Vendor"), "RESERVOR", "{out}");
    // The initiator expects another target secret: it must not trust us.
    let output = support::run(tool("iscsi-inq").arg(url("not-the-target-secret")));
    assert!(
        !output.status.success(),
        "accepted a target that proved the wrong secret"
    );
}

#[test]
fn allowed_initiators_limit_login_and_discovery() {
    let other = support::INITIATOR_2;
    let config = Config::single_malloc("vol0", VOLUME_MIB, IQN)
        .allowed_initiators(&[INITIATOR_1])
        .volume("vol1", support::Backend::Malloc, VOLUME_MIB)
        .target(IQN_2, &["vol1"]);
    let daemon = Daemon::start(&config);
    let as_initiator = |name: &str, tool_name: &str| {
        let mut command = Command::new(support::require_tool(tool_name));
        command.args(["-i", name]);
        command
    };

    // Login: the listed initiator gets in, another is refused.
    succeeded(
        "iscsi-inq as the allowed initiator",
        support::run(as_initiator(INITIATOR_1, "iscsi-inq").arg(daemon.url(IQN, 0))),
    );
    let refused = support::run(as_initiator(other, "iscsi-inq").arg(daemon.url(IQN, 0)));
    assert!(!refused.status.success(), "{}", stdout(&refused));

    // Discovery: each initiator sees only the targets it may use.
    let listed = |name: &str| {
        succeeded(
            "iscsi-ls",
            support::run(as_initiator(name, "iscsi-ls").arg(daemon.portal_url())),
        )
    };
    let mine = listed(INITIATOR_1);
    assert!(
        mine.contains(&format!("Target:{IQN} ")) && mine.contains(IQN_2),
        "{mine}"
    );
    let theirs = listed(other);
    assert!(!theirs.contains(&format!("Target:{IQN} ")), "{theirs}");
    assert!(theirs.contains(IQN_2), "{theirs}");
}
