//! Whole-file tests: each rule rejects with the right path and problem.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::*;

const BASE: &str = r#"
[server]
data_dir = "/srv/reservoir"

[[portal]]
listen = "127.0.0.1:3260"

[[volume]]
name = "vol0"
backend = "malloc"
size = "1GiB"

[[volume]]
name = "vol1"
backend = "file"
path = "/srv/reservoir/vol1.img"
size = "8GiB"

[[target]]
iqn = "iqn.2026-11.io.reservoir:vol0"
luns = ["vol0", "vol1"]
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// The violations of a configuration that must parse but be invalid.
fn violations(text: &str) -> Vec<(String, Problem)> {
    match Config::from_toml_str(text) {
        Err(ConfigError::Invalid(v)) => v
            .into_iter()
            .map(|v| (v.path.as_str().to_owned(), v.problem))
            .collect(),
        other => panic!("expected violations, got {other:?}"),
    }
}

fn single(text: &str) -> (String, Problem) {
    let mut v = violations(text);
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

/// The path and message of a configuration rejected while deserializing.
fn field_error(text: &str) -> (String, String) {
    match Config::from_toml_str(text) {
        Err(error @ ConfigError::Field { .. }) => {
            let ConfigError::Field { path, .. } = &error else {
                unreachable!()
            };
            (path.as_str().to_owned(), error.to_string())
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn base_parses() {
    let config = Config::from_toml_str(BASE).unwrap();
    assert_eq!(config.server.data_dir, Path::new("/srv/reservoir"));
    assert_eq!(
        config.server.rpc_socket_path(),
        Path::new("/srv/reservoir/rpc.sock")
    );
    assert_eq!(config.server.reactors, None);
    assert_eq!(config.portals[0].listen, "127.0.0.1:3260".parse().unwrap());
    assert_eq!(config.volumes[0].backend, Backend::Malloc);
    assert_eq!(config.volumes[0].block_size, BlockSizeConfig::B512);
    assert_eq!(
        config.volumes[1].backend,
        Backend::File {
            path: "/srv/reservoir/vol1.img".into()
        }
    );
    assert_eq!(config.volumes[1].size, Some(ByteSize::gib(8)));
    let target = &config.targets[0];
    assert_eq!(target.luns.len(), 2);
    assert_eq!(target.allowed_initiators, None);
    assert_eq!(target.chap, None);
    assert!(!target.read_only);
}

#[test]
fn example_parses_with_every_commented_key() {
    let config = Config::from_toml_str(example_toml()).unwrap();
    assert_eq!(config.volumes.len(), 2);
    assert_eq!(config.targets[0].luns.len(), 2);
    // Uncommenting every optional key must still give a valid file.
    let uncommented: String = example_toml()
        .lines()
        .map(|line| {
            let key = line.strip_prefix("# ").unwrap_or(line);
            let is_key = key.contains(" = ") || key.starts_with("[[volume]]");
            if is_key && line.starts_with("# ") {
                key
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::from_toml_str(&uncommented).unwrap();
    assert_eq!(config.server.reactors, Some(vec![0, 1]));
    assert_eq!(config.server.io_workers, 32);
    assert_eq!(
        config.server.rpc_socket_path(),
        Path::new("/run/reservoir/rpc.sock")
    );
    assert_eq!(config.volumes[0].block_size, BlockSizeConfig::B4096);
    assert_eq!(config.volumes[2].size, None);
    assert!(matches!(config.volumes[2].backend, Backend::Device { .. }));
    let target = &config.targets[0];
    assert_eq!(target.allowed_initiators.as_ref().map(Vec::len), Some(1));
    assert_eq!(target.chap.as_ref().unwrap().user, "host1");
    assert_eq!(target.mutual_chap.as_ref().unwrap().user, "appliance");
}

#[test]
fn default_appliance() {
    let config = Config::default_appliance();
    assert_eq!(config.server.data_dir, PathBuf::from("./reservoir-data"));
    assert_eq!(
        config.server.rpc_socket_path(),
        PathBuf::from("./reservoir-data/rpc.sock")
    );
    assert_eq!(config.portals.len(), 1);
    assert_eq!(config.portals[0].listen.to_string(), "127.0.0.1:3260");
    assert_eq!(config.volumes.len(), 1);
    let vol0 = &config.volumes[0];
    assert_eq!(vol0.name.as_str(), "vol0");
    assert_eq!(vol0.backend, Backend::Malloc);
    assert_eq!(vol0.size, Some(ByteSize::gib(1)));
    assert_eq!(config.targets.len(), 1);
    assert_eq!(
        config.targets[0].iqn.as_str(),
        "iqn.2026-11.io.reservoir:vol0"
    );
    assert_eq!(config.targets[0].luns, vec![vol0.name.clone()]);
}

#[test]
fn serialized_config_reads_back_equal() {
    for config in [
        Config::default_appliance(),
        Config::from_toml_str(BASE).unwrap(),
        Config::from_toml_str(&with(
            r#"
[[volume]]
name = "dev"
backend = "device"
path = "/dev/sdb"
block_size = 4096

[[target]]
iqn = "iqn.2026-11.io.reservoir:shared"
luns = ["vol1", "dev"]
allowed_initiators = ["iqn.1994-05.com.example:host1"]
chap = { user = "host1", secret = "twelve-chars-min" }
mutual_chap = { user = "appliance", secret = "another-secret" }
read_only = true
"#,
        ))
        .unwrap(),
    ] {
        let text = config.to_toml_string();
        assert_eq!(Config::from_toml_str(&text).unwrap(), config, "{text}");
    }
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("missing.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, with("[[portal]]\nlisten = \"127.0.0.1:3260\"\n")).unwrap();
    let err = Config::load(&bad).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with(&bad.display().to_string()), "{message}");
    assert!(message.contains("portal[1].listen"), "{message}");
    assert_eq!(err.violations().len(), 1);

    let good = dir.path().join("good.toml");
    std::fs::write(&good, BASE).unwrap();
    assert_eq!(
        Config::load(&good).unwrap(),
        Config::from_toml_str(BASE).unwrap()
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let err = Config::from_toml_str("[server]\ndata_dir = \"/x\"\nreactors = [0,\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax(_)), "{err:?}");
    let ConfigError::Syntax(toml) = &err else {
        unreachable!()
    };
    assert_eq!((toml.line, toml.column), (Some(3), Some(15)));
    let message = err.to_string();
    assert!(
        message.starts_with("invalid TOML at line 3, column 15: "),
        "{message}"
    );
}

#[test]
fn value_errors_name_the_field_and_line() {
    let (path, message) = field_error(&BASE.replace("size = \"8GiB\"", "size = \"8XiB\""));
    assert_eq!(path, "volume[1].size");
    assert!(message.contains("unknown unit"), "{message}");
    assert!(message.contains("line 17, column 8"), "{message}");

    let (path, message) = field_error(&BASE.replace("iqn.2026-11", "iqn.2026-13"));
    assert_eq!(path, "target[0].iqn");
    assert!(message.contains("yyyy-mm"), "{message}");

    let (path, _) = field_error(&BASE.replace("\"vol1\"]", "\"vol 1\"]"));
    assert_eq!(path, "target[0].luns[1]");

    let (path, _) = field_error(&BASE.replace("127.0.0.1:3260", "localhost"));
    assert_eq!(path, "portal[0].listen");

    let (path, message) = field_error(&BASE.replace("\"malloc\"", "\"ram\""));
    assert_eq!(path, "volume[0].backend");
    assert!(message.contains("malloc"), "{message}");

    let text = BASE.replace("size = \"1GiB\"", "size = \"1GiB\"\nblock_size = 1024");
    let (path, message) = field_error(&text);
    assert_eq!(path, "volume[0].block_size");
    assert!(message.contains("512 or 4096"), "{message}");

    let (path, message) = field_error(&with(
        "chap = { user = \"host1\", secret = \"twelve-chars-min\", extra = 1 }\n",
    ));
    assert!(path.starts_with("target[0].chap"), "{path}");
    assert!(message.contains("extra"), "{message}");
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let (path, message) = field_error(&BASE.replace("size = \"8GiB\"", "sise = \"8GiB\""));
    assert!(path.starts_with("volume[1]"), "{path}");
    assert!(message.contains("sise"), "{message}");

    let (path, message) = field_error(&with("lun = 3\n"));
    assert!(path.starts_with("target[0]"), "{path}");
    assert!(message.contains("lun"), "{message}");

    let (path, message) = field_error(&BASE.replace("data_dir", "datadir"));
    assert!(path.starts_with("server"), "{path}");
    assert!(message.contains("datadir"), "{message}");

    let (path, _) = field_error(&with("[[portals]]\nlisten = \"0.0.0.0:3260\"\n"));
    assert_eq!(path, "portals");

    let (path, _) = field_error(&BASE.replace("listen", "address"));
    assert!(path.starts_with("portal[0]"), "{path}");
}

#[test]
fn missing_required_keys() {
    let (path, message) = field_error(&BASE.replace("name = \"vol0\"\n", ""));
    assert_eq!(path, "volume[0]");
    assert!(message.contains("name"), "{message}");

    let (path, _) = field_error(&BASE.replace("luns = [\"vol0\", \"vol1\"]\n", ""));
    assert_eq!(path, "target[0]");
}

#[test]
fn server_and_data_dir_are_required() {
    let no_server = BASE.replace("[server]\ndata_dir = \"/srv/reservoir\"\n", "");
    assert_eq!(
        single(&no_server),
        ("server.data_dir".into(), Problem::MissingDataDir)
    );
    let no_data_dir = BASE.replace("data_dir = \"/srv/reservoir\"\n", "");
    assert_eq!(
        single(&no_data_dir),
        ("server.data_dir".into(), Problem::MissingDataDir)
    );
    let empty = BASE.replace("\"/srv/reservoir\"\n", "\"\"\n");
    assert_eq!(
        single(&empty),
        ("server.data_dir".into(), Problem::EmptyPath)
    );
    let message = Config::from_toml_str(&no_server).unwrap_err().to_string();
    assert!(message.contains("data_dir = "), "{message}");
}

#[test]
fn relative_data_dir_is_kept() {
    let config =
        Config::from_toml_str(&BASE.replace("\"/srv/reservoir\"\n", "\"./state\"\n")).unwrap();
    assert_eq!(config.server.data_dir, Path::new("./state"));
}

#[test]
fn reactors() {
    let text = |list: &str| {
        BASE.replace(
            "data_dir = \"/srv/reservoir\"",
            &format!("data_dir = \"/srv/reservoir\"\nreactors = {list}"),
        )
    };
    let config = Config::from_toml_str(&text("[3, 1]")).unwrap();
    assert_eq!(config.server.reactors, Some(vec![3, 1]));
    assert_eq!(
        single(&text("[]")),
        ("server.reactors".into(), Problem::NoReactors)
    );
    assert_eq!(
        single(&text("[0, 1, 0]")),
        (
            "server.reactors[2]".into(),
            Problem::DuplicateReactor { core: 0, first: 0 }
        )
    );
    let (path, _) = field_error(&text("[-1]"));
    assert_eq!(path, "server.reactors[0]");
}

#[test]
fn io_workers() {
    let text = |n: &str| {
        BASE.replace(
            "data_dir = \"/srv/reservoir\"",
            &format!("data_dir = \"/srv/reservoir\"\nio_workers = {n}"),
        )
    };
    assert_eq!(
        Config::from_toml_str(BASE).unwrap().server.io_workers,
        DEFAULT_IO_WORKERS
    );
    assert_eq!(
        Config::from_toml_str(&text("4")).unwrap().server.io_workers,
        4
    );
    for bad in [0, MAX_IO_WORKERS + 1] {
        assert_eq!(
            single(&text(&bad.to_string())),
            ("server.io_workers".into(), Problem::IoWorkers { got: bad })
        );
    }
    let (path, _) = field_error(&text("-1"));
    assert_eq!(path, "server.io_workers");
}

#[test]
fn rpc_socket_override() {
    let text = BASE.replace(
        "data_dir = \"/srv/reservoir\"",
        "data_dir = \"/srv/reservoir\"\nrpc_socket = \"/run/r.sock\"",
    );
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.server.rpc_socket_path(), Path::new("/run/r.sock"));
}

#[test]
fn portals() {
    let none = BASE.replace("[[portal]]\nlisten = \"127.0.0.1:3260\"\n", "");
    assert_eq!(single(&none), ("portal".into(), Problem::NoPortals));
    let duplicate =
        with("[[portal]]\nlisten = \"[::1]:3260\"\n[[portal]]\nlisten = \"127.0.0.1:3260\"\n");
    assert_eq!(
        single(&duplicate),
        (
            "portal[2].listen".into(),
            Problem::DuplicatePortal { first: 0 }
        )
    );
    let ipv6 = with("[[portal]]\nlisten = \"[::]:3261\"\n");
    assert_eq!(Config::from_toml_str(&ipv6).unwrap().portals.len(), 2);
}

#[test]
fn duplicate_volume_names() {
    let text = with("[[volume]]\nname = \"vol0\"\nbackend = \"malloc\"\nsize = \"1M\"\n");
    assert_eq!(
        single(&text),
        (
            "volume[2].name".into(),
            Problem::DuplicateVolume { first: 0 }
        )
    );
}

#[test]
fn backend_paths() {
    let malloc_with_path = BASE.replace(
        "backend = \"malloc\"",
        "backend = \"malloc\"\npath = \"/tmp/x\"",
    );
    assert_eq!(
        single(&malloc_with_path),
        ("volume[0].path".into(), Problem::PathNotAllowed)
    );
    let file_without_path = BASE.replace("path = \"/srv/reservoir/vol1.img\"\n", "");
    assert_eq!(
        single(&file_without_path),
        (
            "volume[1].path".into(),
            Problem::PathRequired { backend: "file" }
        )
    );
    let device_without_path = with("[[volume]]\nname = \"d\"\nbackend = \"device\"\n");
    assert_eq!(
        single(&device_without_path),
        (
            "volume[2].path".into(),
            Problem::PathRequired { backend: "device" }
        )
    );
    let empty_path = BASE.replace("\"/srv/reservoir/vol1.img\"", "\"\"");
    assert_eq!(
        single(&empty_path),
        ("volume[1].path".into(), Problem::EmptyPath)
    );
    let same_path = with(
        "[[volume]]\nname = \"v2\"\nbackend = \"device\"\npath = \"/srv/reservoir/vol1.img\"\n",
    );
    assert_eq!(
        single(&same_path),
        ("volume[2].path".into(), Problem::DuplicatePath { first: 1 })
    );
}

#[test]
fn sizes() {
    let no_size = BASE.replace("size = \"1GiB\"\n", "");
    assert_eq!(
        single(&no_size),
        (
            "volume[0].size".into(),
            Problem::SizeRequired { backend: "malloc" }
        )
    );
    let no_file_size = BASE.replace("size = \"8GiB\"\n", "");
    assert_eq!(
        single(&no_file_size),
        (
            "volume[1].size".into(),
            Problem::SizeRequired { backend: "file" }
        )
    );
    let zero = BASE.replace("\"1GiB\"", "0");
    assert_eq!(single(&zero), ("volume[0].size".into(), Problem::ZeroSize));
    let odd = BASE.replace("\"1GiB\"", "1000");
    assert_eq!(
        single(&odd),
        (
            "volume[0].size".into(),
            Problem::SizeNotBlockMultiple {
                size: ByteSize::from_bytes(1000),
                block_size: BlockSizeConfig::B512
            }
        )
    );
    let not_4k = BASE.replace("\"1GiB\"", "\"1.5K\"\nblock_size = 4096");
    assert_eq!(
        single(&not_4k),
        (
            "volume[0].size".into(),
            Problem::SizeNotBlockMultiple {
                size: ByteSize::from_bytes(1536),
                block_size: BlockSizeConfig::B4096
            }
        )
    );
    let integer = BASE.replace("\"1GiB\"", "1048576");
    assert_eq!(
        Config::from_toml_str(&integer).unwrap().volumes[0].size,
        Some(ByteSize::mib(1))
    );
    let (path, _) = field_error(&BASE.replace("\"1GiB\"", "-4096"));
    assert_eq!(path, "volume[0].size");
    let (path, _) = field_error(&BASE.replace("\"1GiB\"", "1.5"));
    assert_eq!(path, "volume[0].size");
}

#[test]
fn duplicate_targets_and_iqn_case() {
    let text = with("[[target]]\niqn = \"IQN.2026-11.IO.Reservoir:VOL0\"\nluns = [\"vol1\"]\n");
    assert_eq!(
        single(&text),
        (
            "target[1].iqn".into(),
            Problem::DuplicateTarget { first: 0 }
        )
    );
}

#[test]
fn shared_volume_across_targets_is_allowed() {
    let text = with("[[target]]\niqn = \"iqn.2026-11.io.reservoir:other\"\nluns = [\"vol1\"]\n");
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.targets[1].luns[0], config.targets[0].luns[1]);
}

#[test]
fn luns() {
    let unknown = BASE.replace("[\"vol0\", \"vol1\"]", "[\"vol0\", \"vol1\", \"vol9\"]");
    assert_eq!(
        single(&unknown),
        (
            "target[0].luns[2]".into(),
            Problem::UnknownVolume {
                name: "vol9".parse().unwrap()
            }
        )
    );
    let twice = BASE.replace("[\"vol0\", \"vol1\"]", "[\"vol0\", \"vol1\", \"vol0\"]");
    assert_eq!(
        single(&twice),
        (
            "target[0].luns[2]".into(),
            Problem::DuplicateLun {
                name: "vol0".parse().unwrap(),
                first: 0
            }
        )
    );
    let empty = BASE.replace("[\"vol0\", \"vol1\"]", "[]");
    assert_eq!(single(&empty), ("target[0].luns".into(), Problem::NoLuns));
}

fn many_volumes(count: usize) -> String {
    let mut text =
        String::from("[server]\ndata_dir = \"/d\"\n[[portal]]\nlisten = \"0.0.0.0:3260\"\n");
    for i in 0..count {
        text.push_str(&format!(
            "[[volume]]\nname = \"v{i}\"\nbackend = \"malloc\"\nsize = \"1MiB\"\n"
        ));
    }
    let luns: Vec<String> = (0..count).map(|i| format!("\"v{i}\"")).collect();
    text.push_str(&format!(
        "[[target]]\niqn = \"iqn.2026-11.io.reservoir:many\"\nluns = [{}]\n",
        luns.join(", ")
    ));
    text
}

#[test]
fn at_most_256_luns() {
    assert_eq!(
        Config::from_toml_str(&many_volumes(256)).unwrap().targets[0]
            .luns
            .len(),
        256
    );
    assert_eq!(
        single(&many_volumes(257)),
        (
            "target[0].luns".into(),
            Problem::TooManyLuns {
                count: 257,
                max: 256
            }
        )
    );
}

#[test]
fn allowed_initiators() {
    let ok = with(
        "allowed_initiators = [\"iqn.1994-05.com.example:host1\", \"eui.0123456789ABCDEF\"]\n",
    );
    let config = Config::from_toml_str(&ok).unwrap();
    let allowed = config.targets[0].allowed_initiators.as_ref().unwrap();
    assert_eq!(allowed[1].as_str(), "eui.0123456789abcdef");
    assert_eq!(
        single(&with("allowed_initiators = []\n")),
        ("target[0].allowed_initiators".into(), Problem::NoInitiators)
    );
    let twice = with(
        "allowed_initiators = [\"iqn.1994-05.com.example:h\", \"IQN.1994-05.com.example:H\"]\n",
    );
    assert_eq!(
        single(&twice),
        (
            "target[0].allowed_initiators[1]".into(),
            Problem::DuplicateInitiator { first: 0 }
        )
    );
    let (path, _) = field_error(&with("allowed_initiators = [\"host1\"]\n"));
    assert_eq!(path, "target[0].allowed_initiators[0]");
}

#[test]
fn chap_rules() {
    let chap = |secret: &str| format!("chap = {{ user = \"host1\", secret = \"{secret}\" }}\n");
    assert!(Config::from_toml_str(&with(&chap("twelve-chars"))).is_ok());
    assert_eq!(
        single(&with(&chap("eleven-char"))),
        (
            "target[0].chap.secret".into(),
            Problem::ChapSecretLength { len: 11 }
        )
    );
    assert!(Config::from_toml_str(&with(&chap(&"s".repeat(255)))).is_ok());
    assert_eq!(
        single(&with(&chap(&"s".repeat(256)))),
        (
            "target[0].chap.secret".into(),
            Problem::ChapSecretLength { len: 256 }
        )
    );
    assert_eq!(
        single(&with("chap = { user = \"\", secret = \"twelve-chars\" }\n")),
        (
            "target[0].chap.user".into(),
            Problem::ChapUserLength { len: 0 }
        )
    );

    let mutual_only = with("mutual_chap = { user = \"appliance\", secret = \"another-secret\" }\n");
    assert_eq!(
        single(&mutual_only),
        (
            "target[0].mutual_chap".into(),
            Problem::MutualChapWithoutChap
        )
    );
    let same_secret = with(&format!(
        "{}mutual_chap = {{ user = \"appliance\", secret = \"twelve-chars\" }}\n",
        chap("twelve-chars")
    ));
    assert_eq!(
        single(&same_secret),
        (
            "target[0].mutual_chap.secret".into(),
            Problem::MutualChapSameSecret
        )
    );
    let short_mutual = with(&format!(
        "{}mutual_chap = {{ user = \"appliance\", secret = \"short\" }}\n",
        chap("twelve-chars")
    ));
    assert_eq!(
        single(&short_mutual),
        (
            "target[0].mutual_chap.secret".into(),
            Problem::ChapSecretLength { len: 5 }
        )
    );
}

#[test]
fn chap_secret_stays_out_of_debug_and_errors() {
    let secret = "do-not-print-me";
    let config = Config::from_toml_str(&with(&format!(
        "chap = {{ user = \"host1\", secret = \"{secret}\" }}\n"
    )))
    .unwrap();
    let debug = format!("{config:?}");
    // A rejected file must not leak it either, in Display or Debug.
    for bad in [
        format!("chap = {{ user = \"host1\", secret = \"{secret}\", extra = 1 }}\n"),
        format!("chap = {{ user = \"host1\", secret = \"{secret}\" \n"),
        format!("chap = {{ user = \"host1\", secret = \"{secret}\" }}\nbogus = 1\n"),
    ] {
        let err = Config::from_toml_str(&with(&bad)).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!format!("{err:?}").contains(secret), "{err:?}");
    }
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("host1"), "{debug}");

    let err = Config::from_toml_str(&with(&format!(
        "chap = {{ user = \"host1\", secret = \"{secret}\" }}\nmutual_chap = {{ user = \"a\", secret = \"{secret}\" }}\n"
    )))
    .unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");
}

#[test]
fn read_only() {
    let config = Config::from_toml_str(&with("read_only = true\n")).unwrap();
    assert!(config.targets[0].read_only);
}

#[test]
fn all_violations_are_reported_together() {
    let text = BASE
        .replace("size = \"1GiB\"\n", "")
        .replace("[\"vol0\", \"vol1\"]", "[\"vol0\", \"nope\"]")
        .replace("[server]\ndata_dir = \"/srv/reservoir\"\n", "");
    let paths: Vec<String> = violations(&text).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        ["server.data_dir", "volume[0].size", "target[0].luns[1]"]
    );
    let message = Config::from_toml_str(&text).unwrap_err().to_string();
    assert_eq!(message.lines().count(), 3, "{message}");
    assert!(
        message.contains("target[0].luns[1]: no volume named \"nope\""),
        "{message}"
    );
}

proptest! {
    #[test]
    fn from_toml_str_never_panics(text in "\\PC{0,200}") {
        let _ = Config::from_toml_str(&text);
    }

    #[test]
    fn from_toml_str_never_panics_on_near_valid_input(
        cut in 0usize..BASE.len(),
        insert in "[\\[\\]\"=., a-z0-9\n-]{0,12}",
    ) {
        let mut text = BASE.to_owned();
        if text.is_char_boundary(cut) {
            text.insert_str(cut, &insert);
        }
        let _ = Config::from_toml_str(&text);
    }
}

#[test]
fn snapshot_settings() {
    let tuned = BASE.replace(
        "size = \"1GiB\"\n",
        "size = \"1GiB\"\nsnapshot_chunk_size = \"256KiB\"\ndiff_area = \"/srv/diff\"\ndiff_area_size = \"2GiB\"\n",
    );
    let config = Config::from_toml_str(&tuned).unwrap();
    let snapshots = &config.volumes[0].snapshots;
    assert_eq!(snapshots.chunk_size, Some(ByteSize::kib(256)));
    assert_eq!(
        snapshots.diff_area.as_deref(),
        Some(std::path::Path::new("/srv/diff"))
    );
    assert_eq!(snapshots.diff_area_size, Some(ByteSize::gib(2)));
    assert_eq!(
        config.volumes[1].snapshots,
        crate::SnapshotConfig::default()
    );

    for bad in ["48KiB", "2KiB", "32MiB"] {
        let text = BASE.replace(
            "size = \"1GiB\"\n",
            &format!("size = \"1GiB\"\nsnapshot_chunk_size = \"{bad}\"\n"),
        );
        let (path, problem) = single(&text);
        assert_eq!(path, "volume[0].snapshot_chunk_size");
        assert!(
            matches!(problem, Problem::BadSnapshotChunk { .. }),
            "{problem:?}"
        );
    }
    let empty = BASE.replace(
        "size = \"1GiB\"\n",
        "size = \"1GiB\"\ndiff_area = \"\"\ndiff_area_size = 0\n",
    );
    assert_eq!(
        violations(&empty),
        vec![
            ("volume[0].diff_area".into(), Problem::EmptyPath),
            ("volume[0].diff_area_size".into(), Problem::ZeroSize)
        ]
    );
}
