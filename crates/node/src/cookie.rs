//! The shared secret that admits a peer. It never crosses the wire: the
//! handshake proves possession with HMACs over fresh challenges.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::config::CookieSource;
use crate::error::NodeError;

/// Environment variable holding the cookie.
pub const COOKIE_ENV: &str = "IRONFORGE_COOKIE";

/// Resolves the cookie: explicit value, explicit file, `IRONFORGE_COOKIE`,
/// or `~/.ironforge/cookie`, created with owner-only permissions on first use.
pub fn load_cookie(source: &CookieSource) -> Result<String, NodeError> {
    match source {
        CookieSource::Value(value) => non_empty(value.clone()),
        CookieSource::File(path) => read_or_create(path),
        CookieSource::Default => match std::env::var(COOKIE_ENV) {
            Ok(value) => non_empty(value),
            Err(_) => read_or_create(&default_cookie_path()?),
        },
    }
}

fn non_empty(cookie: String) -> Result<String, NodeError> {
    let cookie = cookie.trim().to_owned();
    if cookie.is_empty() {
        return Err(NodeError::Cookie("the cookie is empty".into()));
    }
    Ok(cookie)
}

fn default_cookie_path() -> Result<PathBuf, NodeError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| NodeError::Cookie(format!("HOME is not set; set {COOKIE_ENV}")))?;
    Ok(Path::new(&home).join(".ironforge").join("cookie"))
}

fn read_or_create(path: &Path) -> Result<String, NodeError> {
    let fail = |what: &str, err: std::io::Error| {
        NodeError::Cookie(format!("cannot {what} {}: {err}", path.display()))
    };
    match std::fs::read_to_string(path) {
        Ok(cookie) => return non_empty(cookie),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(fail("read", err)),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
    }
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let cookie = hex::encode(secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(cookie.as_bytes())
                .map_err(|e| fail("write", e))?;
            tracing::info!(path = %path.display(), "created a new cookie file");
            Ok(cookie)
        }
        // Another process created it first: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path)
                .map_err(|e| fail("read", e))
                .and_then(non_empty)
        }
        Err(err) => Err(fail("create", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("cookie");
        let first = load_cookie(&CookieSource::File(path.clone())).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(
            load_cookie(&CookieSource::File(path.clone())).unwrap(),
            first
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn empty_cookie_is_an_error() {
        assert!(load_cookie(&CookieSource::Value("  ".into())).is_err());
    }
}
