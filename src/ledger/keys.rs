//! The ledger's signing key file: an Ed25519 private key as raw PKCS#8 v2 DER bytes,
//! created with mode 0600.
//!
//! This module creates the file and loads it into a [`Signer`]. It refuses a key file that
//! group or others may read, and it never puts key bytes into an error or a log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use super::note::{NoteError, Signer};

/// Mode of a newly created key file.
const KEY_FILE_MODE: u32 = 0o600;

/// Largest key file read; an Ed25519 PKCS#8 v2 document is under 100 bytes.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key file could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `create_key_file` found a file already at the path; it is left untouched.
    #[error("key file `{}` already exists; refusing to overwrite it", .path.display())]
    AlreadyExists {
        /// The key file path.
        path: PathBuf,
    },
    /// There is no key file at the path.
    #[error("key file `{}` does not exist", .path.display())]
    NotFound {
        /// The key file path.
        path: PathBuf,
    },
    /// The path is a directory or another non-regular file.
    #[error("key file `{}` is not a regular file", .path.display())]
    NotAFile {
        /// The key file path.
        path: PathBuf,
    },
    /// The key file may be read or written by group or others.
    #[error("key file `{}` is readable by group or others (mode {mode:04o}); run chmod 600 on it", .path.display())]
    TooOpen {
        /// The key file path.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// The key file does not hold a PKCS#8 v2 Ed25519 private key.
    #[error("key file `{}` is not a valid PKCS#8 Ed25519 private key", .path.display())]
    Invalid {
        /// The key file path.
        path: PathBuf,
    },
    /// The key name is not a valid signed-note key name.
    #[error(transparent)]
    Name(NoteError),
    /// The system random number generator failed.
    #[error("cannot generate a signing key: the system random number generator failed")]
    Random,
    /// An I/O operation on the key file or its directory failed.
    #[error("cannot {action} `{}`", .path.display())]
    Io {
        /// What was being done ("create key file", "read key file", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The text the old key signs to hand the ledger over to a new one (FORMAT.md §4.4): it
/// names the log, the place of the `key.rotate` entry in the chain and the new key, so that
/// the signature cannot be replayed elsewhere.
pub fn rotation_message(origin: &str, seq: u64, prev_hex: &str, new_vkey: &str) -> String {
    format!("djaudit key rotation\n{origin}\n{seq}\n{prev_hex}\n{new_vkey}\n")
}

/// Generates a new Ed25519 key and writes it as raw PKCS#8 DER to `path`, created with mode
/// 0600 and never overwriting an existing file; syncs the file and its directory so the
/// key survives a crash once this returns.
pub fn create_key_file(path: &Path) -> Result<(), KeyError> {
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => KeyError::AlreadyExists {
                path: path.to_owned(),
            },
            _ => io_error("create key file", path)(source),
        })?;
    if let Err(source) = file
        .write_all(pkcs8.as_ref())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        // Best effort: a half-written key file would only be refused later.
        let _ = fs::remove_file(path);
        return Err(io_error("write key file", path)(source));
    }
    drop(file);
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))?;
    Ok(())
}

/// Loads the key file at `path` as a signer named `name`. Refuses a missing file, a file
/// that is not a regular file, a file with any group or other permission bit set, and a
/// file that is not a PKCS#8 v2 Ed25519 key.
pub fn load_signer(path: &Path, name: &str) -> Result<Signer, KeyError> {
    let mut file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => KeyError::NotFound {
            path: path.to_owned(),
        },
        _ => io_error("open key file", path)(source),
    })?;
    // Checked on the opened file, so the mode is that of the bytes we read.
    let metadata = file
        .metadata()
        .map_err(io_error("inspect key file", path))?;
    if !metadata.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut pkcs8 = Vec::new();
    (&mut file)
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut pkcs8)
        .map_err(io_error("read key file", path))?;
    if pkcs8.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
        });
    }
    let signer = Signer::from_pkcs8(name, &pkcs8);
    pkcs8.fill(0);
    signer.map_err(|e| match e {
        NoteError::InvalidPrivateKey => KeyError::Invalid {
            path: path.to_owned(),
        },
        other => KeyError::Name(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::note::open_note;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn write_private(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).unwrap();
        set_mode(path, 0o600);
    }

    #[test]
    fn created_key_has_mode_0600_and_signs_notes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        create_key_file(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let bytes = fs::read(&path).unwrap();
        // Raw DER: a SEQUENCE, and ring accepts it as a checked PKCS#8 v2 key.
        assert_eq!(bytes[0], 0x30);
        assert!(Ed25519KeyPair::from_pkcs8(&bytes).is_ok());

        let signer = load_signer(&path, "djaudit.example/ledger").unwrap();
        assert_eq!(signer.name(), "djaudit.example/ledger");
        let note = signer.sign_note("hello\n").unwrap();
        assert_eq!(open_note(&note, &signer.verifier_key()).unwrap(), "hello\n");

        // Loading again gives the same key.
        let again = load_signer(&path, "djaudit.example/ledger").unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
    }

    #[test]
    fn two_created_keys_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
        create_key_file(&a).unwrap();
        create_key_file(&b).unwrap();
        let a = load_signer(&a, "n").unwrap().verifier_key();
        let b = load_signer(&b, "n").unwrap().verifier_key();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn fail_create_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        create_key_file(&path).unwrap();
        let before = fs::read(&path).unwrap();
        let err = create_key_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains("already exists"));
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn fail_create_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("signing.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            create_key_file(&link),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert!(!target.exists());
    }

    #[test]
    fn fail_create_in_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/signing.key");
        let err = create_key_file(&path).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Io {
                    action: "create key file",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn fail_load_readable_by_group_or_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        create_key_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o601, 0o610, 0o660, 0o666] {
            set_mode(&path, mode);
            let err = load_signer(&path, "n").unwrap_err();
            match &err {
                KeyError::TooOpen { mode: got, .. } => assert_eq!(*got, mode),
                other => panic!("mode {mode:o}: {other:?}"),
            }
            let message = err.to_string();
            assert!(message.contains(&format!("(mode {mode:04o})")), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
        }
        // Owner-only modes stricter than 0600 are fine.
        set_mode(&path, 0o400);
        assert!(load_signer(&path, "n").is_ok());
    }

    #[test]
    fn fail_load_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let err = load_signer(&path, "n").unwrap_err();
        assert!(matches!(err, KeyError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("does not exist"));
        assert!(err.to_string().contains("signing.key"));
    }

    #[test]
    fn fail_load_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_signer(dir.path(), "n").unwrap_err();
        assert!(matches!(err, KeyError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn fail_load_garbage_empty_truncated_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let good = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let good = good.as_ref();
        let mut flipped = good.to_vec();
        // Corrupt the public key copy so the pair no longer matches.
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut oversized = good.to_vec();
        oversized.resize(MAX_KEY_FILE_BYTES as usize + 1, 0);
        let mut trailing = good.to_vec();
        trailing.push(0);
        for bytes in [
            b"".to_vec(),
            b"-----BEGIN PRIVATE KEY-----\n".to_vec(),
            good[..good.len() - 1].to_vec(),
            flipped,
            oversized,
            trailing,
        ] {
            write_private(&path, &bytes);
            let err = load_signer(&path, "n").unwrap_err();
            assert!(matches!(err, KeyError::Invalid { .. }), "{err:?}");
            let message = format!("{err} {err:?}");
            assert!(message.contains("not a valid PKCS#8 Ed25519"));
            // No key bytes in the message, in any common spelling.
            assert!(!message.contains(&hex::encode(&good[16..24])));
            assert!(!message.contains(&format!("{:?}", &good[16..20])));
        }
    }

    #[test]
    fn fail_load_a_pkcs8_key_of_another_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let rng = SystemRandom::new();
        let ecdsa = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        write_private(&path, ecdsa.as_ref());
        assert!(matches!(
            load_signer(&path, "n"),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn fail_load_with_an_invalid_key_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        create_key_file(&path).unwrap();
        for name in ["", "has space", "a+b"] {
            let err = load_signer(&path, name).unwrap_err();
            assert!(
                matches!(err, KeyError::Name(NoteError::InvalidKeyName(_))),
                "{name:?}: {err:?}"
            );
        }
    }
}
