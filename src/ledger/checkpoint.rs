//! C2SP transparency-log checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! A checkpoint is the note text `origin\nsize\nbase64(root)\n[extension lines]`, signed
//! as a C2SP signed note. Whoever holds a checkpoint and the verifier key can later detect
//! a truncated or rewritten ledger.
//!
//! This module only formats, parses, signs and opens checkpoints. It does not compute
//! Merkle roots, store checkpoints or decide whether a checkpoint's origin is the expected
//! one: callers compare [`Checkpoint::origin`] with the log they meant.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::note::{open_note, shown, NoteError, Signer, VerifierKey};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note around the checkpoint was refused.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The origin line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// An origin or extension line holds a control character (such as a newline).
    #[error("checkpoint {0} contains a control character")]
    ControlCharacter(&'static str),
    /// An extension line is empty.
    #[error("checkpoint extension line {0} is empty")]
    EmptyExtension(usize),
    /// The body does not end with a newline.
    #[error("checkpoint body does not end with a newline")]
    MissingFinalNewline,
    /// The body stops before a required line.
    #[error("checkpoint has no {0} line")]
    MissingLine(&'static str),
    /// The tree size line is not a canonical decimal `u64`.
    #[error("checkpoint tree size `{value}` is not valid: {reason}")]
    BadSize {
        /// The line, escaped and shortened.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The root hash line is not standard base64.
    #[error("checkpoint root hash `{0}` is not valid base64")]
    BadRootEncoding(String),
    /// The root hash does not decode to 32 bytes.
    #[error("checkpoint root hash is {0} bytes, not 32")]
    BadRootLength(usize),
}

/// A tree head: log origin, tree size, RFC 6962 root hash and optional extension lines.
///
/// Every value can be written as a valid checkpoint body: the origin and every extension
/// line are non-empty and hold no control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: [u8; 32],
    extensions: Vec<String>,
}

fn check_line(line: &str, what: &'static str) -> Result<(), CheckpointError> {
    if line.chars().any(char::is_control) {
        Err(CheckpointError::ControlCharacter(what))
    } else {
        Ok(())
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let bad = |reason| CheckpointError::BadSize {
        value: shown(line),
        reason,
    };
    if line.is_empty() {
        return Err(bad("it is empty"));
    }
    if !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("it must be ASCII decimal digits only"));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(bad("it has a leading zero"));
    }
    line.parse::<u64>()
        .map_err(|_| bad("it is larger than 18446744073709551615"))
}

impl Checkpoint {
    /// A checkpoint without extension lines. The origin must be non-empty and hold no
    /// control character.
    pub fn new(origin: &str, size: u64, root: [u8; 32]) -> Result<Self, CheckpointError> {
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(origin, "origin")?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// This checkpoint with `extensions` as its extension lines (each non-empty, without
    /// control characters). C2SP advises against extension lines; djaudit writes none.
    pub fn with_extensions(mut self, extensions: Vec<String>) -> Result<Self, CheckpointError> {
        for (index, line) in extensions.iter().enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension(index + 1));
            }
            check_line(line, "extension line")?;
        }
        self.extensions = extensions;
        Ok(self)
    }

    /// The log origin (first line).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size: the number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 Merkle tree root hash.
    pub fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// The extension lines, usually none.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, decimal size, base64 root and extension lines, each ending
    /// with a newline.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body. Rejects a missing final newline, empty lines, control
    /// characters (including `\r`), an empty origin, a size with a sign, leading zeros or
    /// any non-digit, a size above `u64::MAX`, and a root that is not standard padded
    /// base64 of exactly 32 bytes.
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let Some(content) = body.strip_suffix('\n') else {
            return Err(CheckpointError::MissingFinalNewline);
        };
        let mut lines = content.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(origin, "origin")?;
        let size = parse_size(
            lines
                .next()
                .ok_or(CheckpointError::MissingLine("tree size"))?,
        )?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError::MissingLine("root hash"))?;
        let root = STANDARD
            .decode(root_line)
            .map_err(|_| CheckpointError::BadRootEncoding(shown(root_line)))?;
        let root: [u8; 32] = root
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::BadRootLength(root.len()))?;
        let extensions = lines.map(str::to_owned).collect();
        Self::new(origin, size, root)?.with_extensions(extensions)
    }

    /// Signs the checkpoint and returns the signed note.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        Ok(signer.sign_note(&self.to_body())?)
    }
}

/// Opens a signed checkpoint: verifies the note with `key`, then parses its text.
///
/// The caller still checks that the origin is the log it expects.
pub fn open_checkpoint(note: &str, key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
    let text = open_note(note, key)?;
    Checkpoint::parse_body(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::Ed25519KeyPair;

    // Source: C2SP tlog-checkpoint, the example at the top (https://c2sp.org/tlog-checkpoint).
    const SPEC_BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    // A signed tree head of the Go checksum database (sum.golang.org) at size 65209736,
    // with the verifier key built into the go command (cmd/go/internal/modfetch/key.go).
    // It is a real checkpoint signed by another implementation.
    const GO_SUMDB_VKEY: &str =
        "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    const GO_SUMDB_NOTE: &str = "go.sum database tree\n65209736\n\
        5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n\
        — sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n";

    fn fresh_signer(name: &str) -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::from_pkcs8(name, pkcs8.as_ref()).unwrap()
    }

    fn root(byte: u8) -> [u8; 32] {
        let mut root = [0u8; 32];
        for (i, b) in root.iter_mut().enumerate() {
            *b = byte.wrapping_add(i as u8);
        }
        root
    }

    #[test]
    fn spec_example_body_parses_and_prints_back() {
        let checkpoint = Checkpoint::parse_body(SPEC_BODY).unwrap();
        assert_eq!(checkpoint.origin(), "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size(), 20_852_163);
        assert_eq!(
            hex::encode(checkpoint.root()),
            "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
        );
        assert!(checkpoint.extensions().is_empty());
        assert_eq!(checkpoint.to_body(), SPEC_BODY);
    }

    #[test]
    fn go_sumdb_checkpoint_opens_with_its_key() {
        let key = VerifierKey::parse(GO_SUMDB_VKEY).unwrap();
        let checkpoint = open_checkpoint(GO_SUMDB_NOTE, &key).unwrap();
        assert_eq!(checkpoint.origin(), "go.sum database tree");
        assert_eq!(checkpoint.size(), 65_209_736);
        assert_eq!(
            STANDARD.encode(checkpoint.root()),
            "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo="
        );
    }

    #[test]
    fn fail_go_sumdb_checkpoint_with_size_or_root_changed() {
        let key = VerifierKey::parse(GO_SUMDB_VKEY).unwrap();
        for changed in [
            GO_SUMDB_NOTE.replace("65209736", "65209737"),
            GO_SUMDB_NOTE.replace("5+uG", "6+uG"),
            GO_SUMDB_NOTE.replace("go.sum", "go.sun"),
        ] {
            assert!(matches!(
                open_checkpoint(&changed, &key),
                Err(CheckpointError::Note(NoteError::BadSignature { .. }))
            ));
        }
    }

    #[test]
    fn sign_and_open_round_trip() {
        let signer = fresh_signer("djaudit.example/ledger");
        for checkpoint in [
            Checkpoint::new("djaudit.example/ledger", 0, root(0)).unwrap(),
            Checkpoint::new("djaudit.example/ledger", 1, root(9)).unwrap(),
            Checkpoint::new("djaudit.example/ledger", u64::MAX, root(200)).unwrap(),
            Checkpoint::new("djaudit.example/ledger", 42, root(1))
                .unwrap()
                .with_extensions(vec!["ext one".into(), "ext 2".into()])
                .unwrap(),
        ] {
            let note = checkpoint.sign(&signer).unwrap();
            assert!(note.starts_with(&checkpoint.to_body()));
            let opened = open_checkpoint(&note, &signer.verifier_key()).unwrap();
            assert_eq!(opened, checkpoint);
        }
    }

    #[test]
    fn body_layout_is_exact() {
        let checkpoint = Checkpoint::new("o", 0, [0; 32])
            .unwrap()
            .with_extensions(vec!["x".into()])
            .unwrap();
        assert_eq!(
            checkpoint.to_body(),
            "o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nx\n"
        );
    }

    #[test]
    fn fail_open_with_another_key_or_tampered_body() {
        let signer = fresh_signer("djaudit.example/ledger");
        let other = fresh_signer("djaudit.example/ledger");
        let note = Checkpoint::new("djaudit.example/ledger", 10, root(3))
            .unwrap()
            .sign(&signer)
            .unwrap();
        assert!(matches!(
            open_checkpoint(&note, &other.verifier_key()),
            Err(CheckpointError::Note(NoteError::NotSigned { .. }))
        ));
        let rolled_back = note.replacen("\n10\n", "\n9\n", 1);
        assert!(matches!(
            open_checkpoint(&rolled_back, &signer.verifier_key()),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
    }

    #[test]
    fn fail_signed_note_whose_text_is_not_a_checkpoint() {
        let signer = fresh_signer("djaudit.example/ledger");
        let note = signer.sign_note("djaudit.example/ledger\n10\n").unwrap();
        assert_eq!(
            open_checkpoint(&note, &signer.verifier_key()),
            Err(CheckpointError::MissingLine("root hash"))
        );
    }

    fn size_error(size_line: &str) -> CheckpointError {
        let body = format!("o\n{size_line}\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
        Checkpoint::parse_body(&body).unwrap_err()
    }

    #[test]
    fn fail_bad_sizes() {
        for line in [
            "",
            "01",
            "00",
            "+5",
            "-1",
            " 5",
            "5 ",
            "1e3",
            "0x10",
            "1_000",
            "٣",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(size_error(line), CheckpointError::BadSize { .. }),
                "{line:?}"
            );
        }
        assert_eq!(
            Checkpoint::parse_body(
                "o\n18446744073709551615\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
            )
            .unwrap()
            .size(),
            u64::MAX
        );
    }

    #[test]
    fn fail_bad_roots() {
        let with_root = |root: &str| Checkpoint::parse_body(&format!("o\n1\n{root}\n"));
        for bad in [
            "",
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-",
            " AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            match with_root(bad) {
                Err(CheckpointError::BadRootEncoding(_) | CheckpointError::BadRootLength(0)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert_eq!(
            with_root(&STANDARD.encode([0u8; 31])),
            Err(CheckpointError::BadRootLength(31))
        );
        assert_eq!(
            with_root(&STANDARD.encode([0u8; 33])),
            Err(CheckpointError::BadRootLength(33))
        );
    }

    #[test]
    fn fail_malformed_bodies() {
        let root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let cases: [(String, CheckpointError); 8] = [
            (String::new(), CheckpointError::MissingFinalNewline),
            (
                format!("o\n1\n{root}"),
                CheckpointError::MissingFinalNewline,
            ),
            ("\n".into(), CheckpointError::EmptyOrigin),
            (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
            ("o\n".into(), CheckpointError::MissingLine("tree size")),
            ("o\n1\n".into(), CheckpointError::MissingLine("root hash")),
            (
                format!("o\n1\n{root}\n\n"),
                CheckpointError::EmptyExtension(1),
            ),
            (
                format!("o\r\n1\n{root}\n"),
                CheckpointError::ControlCharacter("origin"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(Checkpoint::parse_body(&body), Err(expected), "{body:?}");
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}\next\n\nmore\n")),
            Err(CheckpointError::EmptyExtension(2))
        );
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}\next\r\n")),
            Err(CheckpointError::ControlCharacter("extension line"))
        );
    }

    #[test]
    fn fail_new_with_bad_origin_or_extensions() {
        assert_eq!(
            Checkpoint::new("", 1, [0; 32]),
            Err(CheckpointError::EmptyOrigin)
        );
        assert_eq!(
            Checkpoint::new("a\nb", 1, [0; 32]),
            Err(CheckpointError::ControlCharacter("origin"))
        );
        let base = Checkpoint::new("o", 1, [0; 32]).unwrap();
        assert_eq!(
            base.clone()
                .with_extensions(vec!["ok".into(), String::new()]),
            Err(CheckpointError::EmptyExtension(2))
        );
        assert_eq!(
            base.with_extensions(vec!["a\nb".into()]),
            Err(CheckpointError::ControlCharacter("extension line"))
        );
    }

    #[test]
    fn error_messages_are_one_line_and_bounded() {
        let message = size_error(&"1".repeat(500)).to_string();
        assert!(message.contains("larger than"), "{message}");
        assert!(message.len() < 200, "{message}");
        let message = Checkpoint::parse_body(&format!("o\n1\n{}\n", "\u{7f}".repeat(300)))
            .unwrap_err()
            .to_string();
        assert!(!message.contains('\u{7f}'), "{message}");
        assert!(message.len() < 600, "{message}");
    }
}
