//! The backup server's token file: created on first start, given to the
//! appliances that back up to it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use reservoir_backup::Token;

/// Random bytes in a new token (written as hex, so the file is 64 characters).
const NEW_TOKEN_BYTES: usize = 32;

/// Reads the token in `path`, creating the file with a new random token
/// (mode 0600) if it does not exist. The flag says it was created.
pub fn load_or_create(path: &Path) -> Result<(Token, bool)> {
    let mut random = [0u8; NEW_TOKEN_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom for a new token")?;
    let mut text: String = random.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    let created = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write token file {}", path.display()))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create token file {}", path.display()))
        }
    };
    Ok((read(path)?, created))
}

/// Reads a token file as the text the control socket carries.
pub fn read_text(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read token file {} (the backup server writes it on its first start; \
             copy it to this machine)",
            path.display()
        )
    })?;
    let text = text.trim().to_owned();
    Token::new(text.as_bytes()).with_context(|| format!("token file {}", path.display()))?;
    Ok(text)
}

/// Reads a token file for a direct connection to a backup server.
pub fn read(path: &Path) -> Result<Token> {
    Ok(Token::new(read_text(path)?.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_text(&path).unwrap().len(), 2 * NEW_TOKEN_BYTES);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        std::fs::write(&path, "short\n").unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(error.contains("token"), "{error}");
    }
}
