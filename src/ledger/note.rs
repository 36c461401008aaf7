//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 signatures.
//!
//! A signed note is a text ending in a newline, a blank line, and one or more signature
//! lines `— <key name> base64(key id ‖ signature)`. The ledger signs its checkpoints as
//! notes so that anyone holding the verifier key can check them without djaudit.
//!
//! This module only formats, signs and verifies notes and verifier keys. It does not read
//! key files (see `ledger::keys`), does not know what the text means (see
//! `ledger::checkpoint`), and never puts private key bytes into an error or a `Debug` output.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use sha2::{Digest as _, Sha256};

/// Signature type identifier byte of Ed25519 in C2SP signed-note.
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// Largest note, in bytes, that [`open_note`] reads and [`Signer::sign_note`] produces.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// Largest number of signature lines [`open_note`] accepts (the spec asks for at least 16).
pub const MAX_SIGNATURE_LINES: usize = 100;

/// Start of every signature line: U+2014 EM DASH and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Length of an Ed25519 signature in bytes.
const ED25519_SIGNATURE_LEN: usize = 64;

/// Why a verifier key, a private key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or holds a space, a control character or `+`.
    #[error("key name `{0}` is not valid: it must be non-empty and contain no spaces, control characters or `+`")]
    InvalidKeyName(String),
    /// A verifier key is not of the form `<name>+<key id>+<key>`.
    #[error("verifier key is malformed: {0}")]
    MalformedVerifierKey(&'static str),
    /// A verifier key names a signature type other than Ed25519.
    #[error("verifier key has signature type {0:#04x}; only Ed25519 (0x01) is supported")]
    UnsupportedKeyType(u8),
    /// The key id written in a verifier key is not the id of its key.
    #[error("verifier key id `{stated}` does not match its key, whose id is `{actual}`")]
    KeyIdMismatch {
        /// The id written in the key, as given.
        stated: String,
        /// The id computed from the name and the public key.
        actual: String,
    },
    /// Private key bytes are not a PKCS#8 v2 Ed25519 key.
    #[error("private key is not a valid PKCS#8 Ed25519 key")]
    InvalidPrivateKey,
    /// The text to sign is empty.
    #[error("note text is empty")]
    EmptyText,
    /// The text to sign does not end with a newline.
    #[error("note text does not end with a newline")]
    MissingFinalNewline,
    /// The note is larger than [`MAX_NOTE_BYTES`].
    #[error("note is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the note (or of the note that would be produced).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The note bytes are not UTF-8.
    #[error("note is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
    /// The note holds an ASCII control character other than newline.
    #[error(
        "note contains control character U+{code:04X} at byte {offset}; only newline is allowed"
    )]
    ControlCharacter {
        /// The code point.
        code: u32,
        /// Its byte offset in the note.
        offset: usize,
    },
    /// No blank line separates the text from the signatures.
    #[error("note has no blank line between its text and its signatures")]
    MissingSignatureBlock,
    /// More than [`MAX_SIGNATURE_LINES`] signature lines.
    #[error("note has more than {0} signature lines")]
    TooManySignatures(usize),
    /// A signature line does not follow the format.
    #[error("note signature line {line} is malformed: {reason}")]
    MalformedSignatureLine {
        /// 1-based number of the line within the signature block.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signature by the expected key is present but does not verify.
    #[error("note signature by `{name}` (key id {key_id}) does not verify")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id, lowercase hex.
        key_id: String,
    },
    /// The note carries no signature by the expected key.
    #[error("note is not signed by `{name}` (key id {key_id})")]
    NotSigned {
        /// Key name.
        name: String,
        /// Key id, lowercase hex.
        key_id: String,
    },
}

/// The C2SP key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4].
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_SIGNATURE_TYPE]);
    hasher.update(public);
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    // INVARIANT: a SHA-256 digest is 32 bytes, so its first 4 bytes exist.
    id.copy_from_slice(&digest[..4]);
    id
}

/// Whether `name` may be a key name: non-empty, no Unicode space, no `+`, and (so that
/// every note we sign can be opened) no control character.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// `s` made safe for a one-line error message: escaped and cut to 64 characters.
pub(crate) fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() <= MAX_CHARS {
        escaped
    } else {
        let mut cut: String = escaped.chars().take(MAX_CHARS).collect();
        cut.push('…');
        cut
    }
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName(shown(name)))
    }
}

/// A public Ed25519 key with its name, in the C2SP vkey text form
/// `<name>+<8 lowercase hex key id>+base64(0x01 ‖ public key)`.
///
/// Every value has a valid name and a key id that matches its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    public: [u8; 32],
}

impl VerifierKey {
    /// The verifier key for `public` under `name`; computes the key id.
    pub fn new(name: &str, public: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &public),
            public,
        })
    }

    /// Parses the vkey text form. Rejects a bad name, a key id that is not 8 lowercase hex
    /// digits or does not match the key, a signature type other than Ed25519, and a key
    /// that is not 32 bytes. Surrounding whitespace is not trimmed.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedVerifierKey(
                "expected `<name>+<key id>+<base64 key>`",
            ));
        };
        check_key_name(name)?;
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(NoteError::MalformedVerifierKey(
                "key id is not 8 lowercase hexadecimal digits",
            ));
        }
        let mut stated = [0u8; 4];
        hex::decode_to_slice(id_hex, &mut stated).map_err(|_| {
            NoteError::MalformedVerifierKey("key id is not 8 lowercase hexadecimal digits")
        })?;
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| NoteError::MalformedVerifierKey("key is not valid base64"))?;
        let Some((&signature_type, public)) = key.split_first() else {
            return Err(NoteError::MalformedVerifierKey("key is empty"));
        };
        if signature_type != ED25519_SIGNATURE_TYPE {
            return Err(NoteError::UnsupportedKeyType(signature_type));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::MalformedVerifierKey("Ed25519 public key is not 32 bytes"))?;
        let actual = key_id(name, &public);
        if actual != stated {
            return Err(NoteError::KeyIdMismatch {
                stated: id_hex.to_owned(),
                actual: hex::encode(actual),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: stated,
            public,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// Whether `signature` is this key's Ed25519 signature of `message` (a signature made
    /// by [`Signer::sign_bytes`]).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == ED25519_SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(message, signature)
                .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ED25519_SIGNATURE_TYPE);
        key.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            STANDARD.encode(key)
        )
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An Ed25519 private key with its name, that signs notes.
pub struct Signer {
    key_pair: Ed25519KeyPair,
    verifier: VerifierKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key is deliberately left out.
        f.debug_struct("Signer")
            .field("verifier", &self.verifier.to_string())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a PKCS#8 v2 Ed25519 document (as made by
    /// `Ed25519KeyPair::generate_pkcs8`) and a key name.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| NoteError::InvalidPrivateKey)?;
        Self::from_key_pair(name, key_pair)
    }

    /// A signer from a key pair and a key name.
    pub fn from_key_pair(name: &str, key_pair: Ed25519KeyPair) -> Result<Self, NoteError> {
        let public: [u8; 32] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::InvalidPrivateKey)?;
        let verifier = VerifierKey::new(name, public)?;
        Ok(Self { key_pair, verifier })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// The verifier key that checks this signer's notes.
    pub fn verifier_key(&self) -> VerifierKey {
        self.verifier.clone()
    }

    /// The Ed25519 signature of `message` (64 bytes), for documents that are not notes
    /// (signed reports). Such documents must never be a valid note text (a note text ends
    /// with a newline; a canonical JSON document ends with `}`), so that a signature made
    /// for one can never pass as the other.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.key_pair.sign(message).as_ref().to_vec()
    }

    /// Signs `text` and returns the whole note: the text, a blank line and one signature
    /// line. The text must be non-empty, end with a newline, hold no control character
    /// other than newline, and the note must fit in [`MAX_NOTE_BYTES`].
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() {
            return Err(NoteError::EmptyText);
        }
        if !text.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        check_no_control_characters(text)?;
        let signature = self.key_pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + ED25519_SIGNATURE_LEN);
        blob.extend_from_slice(&self.verifier.key_id);
        blob.extend_from_slice(signature.as_ref());
        let line = format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.verifier.name,
            STANDARD.encode(blob)
        );
        let size = text.len() + 1 + line.len();
        if size > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                size,
                limit: MAX_NOTE_BYTES,
            });
        }
        let mut note = String::with_capacity(size);
        note.push_str(text);
        note.push('\n');
        note.push_str(&line);
        Ok(note)
    }
}

fn check_no_control_characters(s: &str) -> Result<(), NoteError> {
    match s.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((offset, c)) => Err(NoteError::ControlCharacter {
            code: u32::from(c),
            offset,
        }),
        None => Ok(()),
    }
}

/// One parsed signature line.
struct SignatureLine<'a> {
    name: &'a str,
    key_id: [u8; 4],
    signature: Vec<u8>,
}

fn parse_signature_line(line: &str, number: usize) -> Result<SignatureLine<'_>, NoteError> {
    let malformed = |reason| NoteError::MalformedSignatureLine {
        line: number,
        reason,
    };
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| malformed("it does not start with an em dash (U+2014) and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| malformed("it has no space between key name and signature"))?;
    if !is_valid_key_name(name) {
        return Err(malformed("its key name is not valid"));
    }
    if b64.is_empty() {
        return Err(malformed("its signature is empty"));
    }
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| malformed("its signature is not valid base64"))?;
    let Some((id, signature)) = blob.split_first_chunk::<4>() else {
        return Err(malformed("its signature is shorter than a key id"));
    };
    if signature.is_empty() {
        return Err(malformed(
            "its signature has a key id but no signature bytes",
        ));
    }
    Ok(SignatureLine {
        name,
        key_id: *id,
        signature: signature.to_vec(),
    })
}

/// Opens a signed note given as bytes: checks that they are UTF-8, then as [`open_note`].
pub fn open_note_bytes(note: &[u8], key: &VerifierKey) -> Result<String, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            size: note.len(),
            limit: MAX_NOTE_BYTES,
        });
    }
    let note = std::str::from_utf8(note).map_err(|e| NoteError::NotUtf8(e.valid_up_to()))?;
    open_note(note, key)
}

/// Opens a signed note and returns its text (with its final newline) if `key` signed it.
///
/// Follows C2SP signed-note: the text ends at the last blank line; every signature line
/// must be well formed; lines from other keys (another name or another key id) are
/// ignored; a line with the key's name and id must verify, otherwise the whole note is
/// rejected; at least one must be present. Notes over [`MAX_NOTE_BYTES`], with more than
/// [`MAX_SIGNATURE_LINES`] signature lines or with control characters other than newline
/// (including `\r`) are rejected.
pub fn open_note(note: &str, key: &VerifierKey) -> Result<String, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            size: note.len(),
            limit: MAX_NOTE_BYTES,
        });
    }
    check_no_control_characters(note)?;
    let split = note.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
    // INVARIANT: `split` is the byte offset of an ASCII "\n\n" in `note`, so `split + 1`
    // and `split + 2` are char boundaries within `note`.
    let text = &note[..split + 1];
    let block = &note[split + 2..];
    if block.is_empty() {
        return Err(NoteError::MissingSignatureBlock);
    }
    let Some(block) = block.strip_suffix('\n') else {
        return Err(NoteError::MalformedSignatureLine {
            line: block.split('\n').count(),
            reason: "it does not end with a newline",
        });
    };
    if block.split('\n').count() > MAX_SIGNATURE_LINES {
        return Err(NoteError::TooManySignatures(MAX_SIGNATURE_LINES));
    }
    let mut verified = false;
    for (index, line) in block.split('\n').enumerate() {
        let parsed = parse_signature_line(line, index + 1)?;
        if parsed.name != key.name || parsed.key_id != key.key_id {
            // A signature by some other key: ignored, as the spec requires.
            continue;
        }
        if !key.verifies(text.as_bytes(), &parsed.signature) {
            return Err(NoteError::BadSignature {
                name: key.name.clone(),
                key_id: hex::encode(key.key_id),
            });
        }
        verified = true;
    }
    if verified {
        Ok(text.to_owned())
    } else {
        Err(NoteError::NotSigned {
            name: key.name.clone(),
            key_id: hex::encode(key.key_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    // Source: C2SP signed-note, section "Example" (https://c2sp.org/signed-note).
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_TEXT: &str = "This is an example message.\n";
    const SPEC_SIG_LINE: &str = "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    // Source: golang.org/x/mod/sumdb/note, note_test.go `TestSign` (the PeterNeumann key).
    // Ed25519 is deterministic, so signing this text with this key must give this note.
    const GO_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG_LINE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn spec_note() -> String {
        format!("{SPEC_TEXT}\n{SPEC_SIG_LINE}")
    }

    fn spec_key() -> VerifierKey {
        VerifierKey::parse(SPEC_VKEY).unwrap()
    }

    fn fresh_signer(name: &str) -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::from_pkcs8(name, pkcs8.as_ref()).unwrap()
    }

    fn go_signer() -> Signer {
        let skey = STANDARD.decode(GO_SKEY_B64).unwrap();
        assert_eq!(skey[0], ED25519_SIGNATURE_TYPE);
        let pair = Ed25519KeyPair::from_seed_unchecked(&skey[1..]).unwrap();
        Signer::from_key_pair("PeterNeumann", pair).unwrap()
    }

    #[test]
    fn spec_vkey_parses_into_its_parts_and_prints_back() {
        let key = spec_key();
        assert_eq!(key.name(), "example.com/foo");
        assert_eq!(key.key_id(), [0x53, 0x0d, 0x90, 0x3a]);
        assert_eq!(key_id(key.name(), key.public_key()), key.key_id());
        assert_eq!(key.to_string(), SPEC_VKEY);
        assert_eq!(SPEC_VKEY.parse::<VerifierKey>().unwrap(), key);
    }

    #[test]
    fn spec_example_note_opens() {
        assert_eq!(open_note(&spec_note(), &spec_key()).unwrap(), SPEC_TEXT);
        assert_eq!(
            open_note_bytes(spec_note().as_bytes(), &spec_key()).unwrap(),
            SPEC_TEXT
        );
    }

    #[test]
    fn fail_spec_example_with_any_one_byte_of_text_changed() {
        let note = spec_note();
        for i in 0..SPEC_TEXT.len() - 1 {
            let mut bytes = note.clone().into_bytes();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(
                    open_note(&changed, &spec_key()),
                    Err(NoteError::BadSignature { .. })
                ),
                "byte {i} changed still verifies"
            );
        }
    }

    #[test]
    fn fail_spec_example_with_another_key_id() {
        // Same name, another key: its id differs, so the spec's line is someone else's.
        let other = VerifierKey::new("example.com/foo", [7; 32]).unwrap();
        assert_ne!(other.key_id(), spec_key().key_id());
        assert_eq!(
            open_note(&spec_note(), &other),
            Err(NoteError::NotSigned {
                name: "example.com/foo".into(),
                key_id: hex::encode(other.key_id()),
            })
        );
    }

    #[test]
    fn fail_spec_example_with_another_name() {
        let spec = spec_key();
        let renamed = VerifierKey::new("example.com/bar", *spec.public_key()).unwrap();
        assert!(matches!(
            open_note(&spec_note(), &renamed),
            Err(NoteError::NotSigned { .. })
        ));
    }

    #[test]
    fn fail_spec_example_line_with_key_id_forged_onto_another_name() {
        // The spec's signature bytes under another name are ignored, not verified.
        let note = spec_note().replace("— example.com/foo ", "— example.com/bar ");
        assert!(matches!(
            open_note(&note, &spec_key()),
            Err(NoteError::NotSigned { .. })
        ));
    }

    #[test]
    fn go_signing_vector_is_reproduced_byte_for_byte() {
        let signer = go_signer();
        assert_eq!(signer.verifier_key().to_string(), GO_VKEY);
        let note = signer.sign_note(GO_TEXT).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n{GO_SIG_LINE}"));
        let key = VerifierKey::parse(GO_VKEY).unwrap();
        assert_eq!(open_note(&note, &key).unwrap(), GO_TEXT);
    }

    #[test]
    fn vkey_whose_base64_contains_plus_parses() {
        // Source: the sum.golang.org key built into the go command
        // (cmd/go/internal/modfetch/key.go); its key part contains `+`.
        let vkey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
        let key = VerifierKey::parse(vkey).unwrap();
        assert_eq!(key.name(), "sum.golang.org");
        assert_eq!(key.key_id(), [0x03, 0x3d, 0xe0, 0xae]);
        assert_eq!(key.to_string(), vkey);
    }

    #[test]
    fn fresh_key_signs_and_opens() {
        let signer = fresh_signer("djaudit.example/ledger");
        let key = signer.verifier_key();
        assert_eq!(key.name(), "djaudit.example/ledger");
        assert_eq!(key_id(key.name(), key.public_key()), key.key_id());
        assert_eq!(VerifierKey::parse(&key.to_string()).unwrap(), key);
        let text = "line one\nline two\n";
        let note = signer.sign_note(text).unwrap();
        assert!(note.starts_with("line one\nline two\n\n— djaudit.example/ledger "));
        assert!(note.ends_with('\n'));
        assert_eq!(note.matches('\n').count(), 4);
        assert_eq!(open_note(&note, &key).unwrap(), text);
    }

    #[test]
    fn text_with_blank_lines_is_split_at_the_last_one() {
        let signer = fresh_signer("a.example/k");
        for text in ["a\n\nb\n", "a\n\n", "\n", "\n\n\n", "中文 ✓\n"] {
            let note = signer.sign_note(text).unwrap();
            assert_eq!(
                open_note(&note, &signer.verifier_key()).unwrap(),
                text,
                "{text:?}"
            );
        }
    }

    #[test]
    fn other_keys_signatures_are_ignored() {
        let signer = fresh_signer("a.example/k");
        let other = fresh_signer("b.example/k");
        let text = "checked text\n";
        let mine = signer.sign_note(text).unwrap();
        let theirs = other.sign_note(text).unwrap();
        let their_line = theirs.rsplit_once("\n\n").unwrap().1;
        let my_line = mine.rsplit_once("\n\n").unwrap().1;
        // Unknown lines before and after, including garbage bytes under a foreign name.
        let note = format!("{text}\n{their_line}— x.example AAAAAAB0ZXN0\n{my_line}{their_line}");
        assert_eq!(open_note(&note, &signer.verifier_key()).unwrap(), text);
        assert_eq!(open_note(&note, &other.verifier_key()).unwrap(), text);
        // Only other keys' signatures: not signed.
        let only_theirs = format!("{text}\n{their_line}");
        assert!(matches!(
            open_note(&only_theirs, &signer.verifier_key()),
            Err(NoteError::NotSigned { .. })
        ));
    }

    #[test]
    fn fail_known_key_signature_with_a_flipped_bit() {
        let signer = fresh_signer("a.example/k");
        let note = signer.sign_note("text\n").unwrap();
        let (text, line) = note.rsplit_once("\n\n").unwrap();
        let b64 = line.trim_end().rsplit_once(' ').unwrap().1;
        let mut blob = STANDARD.decode(b64).unwrap();
        blob[10] ^= 1;
        let forged = format!("{text}\n\n— a.example/k {}\n", STANDARD.encode(&blob));
        assert_eq!(
            open_note(&forged, &signer.verifier_key()),
            Err(NoteError::BadSignature {
                name: "a.example/k".into(),
                key_id: hex::encode(signer.verifier_key().key_id()),
            })
        );
        // A bad signature by the known key rejects the note even beside a good one.
        let both = format!("{note}— a.example/k {}\n", STANDARD.encode(&blob));
        assert!(matches!(
            open_note(&both, &signer.verifier_key()),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn fail_known_key_signature_of_wrong_length() {
        let key = spec_key();
        let mut blob = key.key_id().to_vec();
        blob.extend_from_slice(&[0u8; 63]);
        let note = format!("{SPEC_TEXT}\n— example.com/foo {}\n", STANDARD.encode(blob));
        assert!(matches!(
            open_note(&note, &key),
            Err(NoteError::BadSignature { .. })
        ));
    }

    fn malformed_reason(note: &str) -> &'static str {
        match open_note(note, &spec_key()) {
            Err(NoteError::MalformedSignatureLine { reason, .. }) => reason,
            other => panic!("expected a malformed line, got {other:?}"),
        }
    }

    #[test]
    fn fail_malformed_signature_lines() {
        let good = SPEC_SIG_LINE;
        let cases = [
            // hyphen instead of em dash
            good.replacen('—', "-", 1),
            // no space after the dash
            good.replacen("— ", "—", 1),
            // no signature after the name
            "— example.com/foo\n".to_owned(),
            // empty signature
            "— example.com/foo \n".to_owned(),
            // not base64
            "— example.com/foo !!!!\n".to_owned(),
            // base64 of 4 bytes: a key id without a signature
            "— example.com/foo AAAAAA==\n".to_owned(),
            // base64 of 3 bytes
            "— example.com/foo AAAA\n".to_owned(),
            // name with a plus
            "— a+b AAAAAAB0ZXN0\n".to_owned(),
            // two spaces
            "— example.com/foo  AAAAAAB0ZXN0\n".to_owned(),
            // trailing space
            "— example.com/foo AAAAAAB0ZXN0 \n".to_owned(),
            // non-canonical base64 (non-zero trailing bits)
            "— example.com/foo AAAAAAB0ZXN=\n".to_owned(),
        ];
        for line in cases {
            let note = format!("{SPEC_TEXT}\n{good}{line}");
            let reason = malformed_reason(&note);
            assert!(!reason.is_empty(), "{line:?}");
        }
    }

    #[test]
    fn fail_malformed_line_rejects_even_after_a_good_signature() {
        let note = format!("{}garbage\n", spec_note());
        assert_eq!(
            open_note(&note, &spec_key()),
            Err(NoteError::MalformedSignatureLine {
                line: 2,
                reason: "it does not start with an em dash (U+2014) and a space",
            })
        );
    }

    #[test]
    fn fail_signature_block_without_final_newline() {
        let note = spec_note();
        let cut = note.strip_suffix('\n').unwrap();
        assert!(matches!(
            open_note(cut, &spec_key()),
            Err(NoteError::MalformedSignatureLine { line: 1, .. })
        ));
    }

    #[test]
    fn fail_no_blank_line_or_empty_signature_block() {
        let key = spec_key();
        for note in [
            "",
            "\n",
            SPEC_TEXT,
            &format!("{SPEC_TEXT}{SPEC_SIG_LINE}"),
            &format!("{SPEC_TEXT}\n"),
            &format!("{}\n", spec_note()),
        ] {
            assert!(
                matches!(open_note(note, &key), Err(NoteError::MissingSignatureBlock)),
                "{note:?}"
            );
        }
    }

    #[test]
    fn fail_control_characters_and_carriage_returns() {
        let key = spec_key();
        let crlf = spec_note().replace('\n', "\r\n");
        assert_eq!(
            open_note(&crlf, &key),
            Err(NoteError::ControlCharacter {
                code: 0x0d,
                offset: SPEC_TEXT.len() - 1
            })
        );
        let tab = spec_note().replacen(' ', "\t", 1);
        assert!(matches!(
            open_note(&tab, &key),
            Err(NoteError::ControlCharacter { code: 9, .. })
        ));
        let nul = format!("\0{}", spec_note());
        assert!(matches!(
            open_note(&nul, &key),
            Err(NoteError::ControlCharacter { code: 0, offset: 0 })
        ));
    }

    #[test]
    fn fail_non_utf8_bytes() {
        let mut bytes = spec_note().into_bytes();
        bytes[3] = 0xff;
        assert_eq!(
            open_note_bytes(&bytes, &spec_key()),
            Err(NoteError::NotUtf8(3))
        );
    }

    #[test]
    fn fail_too_large() {
        let text = "a".repeat(MAX_NOTE_BYTES);
        let note = format!("{text}\n\n{SPEC_SIG_LINE}");
        assert!(matches!(
            open_note(&note, &spec_key()),
            Err(NoteError::TooLarge { .. })
        ));
        assert!(matches!(
            open_note_bytes(note.as_bytes(), &spec_key()),
            Err(NoteError::TooLarge { .. })
        ));
        let signer = fresh_signer("a.example/k");
        assert!(matches!(
            signer.sign_note(&format!("{text}\n")),
            Err(NoteError::TooLarge { .. })
        ));
    }

    #[test]
    fn signature_line_limit_is_exactly_one_hundred() {
        let unknown = "— other.example AAAAAAB0ZXN0\n".repeat(MAX_SIGNATURE_LINES - 1);
        let at_limit = format!("{}{unknown}", spec_note());
        assert_eq!(open_note(&at_limit, &spec_key()).unwrap(), SPEC_TEXT);
        let over = format!("{at_limit}— other.example AAAAAAB0ZXN0\n");
        assert_eq!(
            open_note(&over, &spec_key()),
            Err(NoteError::TooManySignatures(MAX_SIGNATURE_LINES))
        );
    }

    #[test]
    fn fail_sign_bad_text() {
        let signer = fresh_signer("a.example/k");
        assert_eq!(signer.sign_note(""), Err(NoteError::EmptyText));
        assert_eq!(
            signer.sign_note("no newline"),
            Err(NoteError::MissingFinalNewline)
        );
        assert_eq!(
            signer.sign_note("windows\r\n"),
            Err(NoteError::ControlCharacter {
                code: 0x0d,
                offset: 7
            })
        );
    }

    #[test]
    fn fail_vkey_bad_names() {
        for vkey in [
            "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example\u{3000}com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example\ncom+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        ] {
            assert!(
                matches!(VerifierKey::parse(vkey), Err(NoteError::InvalidKeyName(_))),
                "{vkey:?}"
            );
        }
        // The escaped name keeps the message on one line.
        let err = VerifierKey::parse("a\nb+00000000+AA==").unwrap_err();
        assert!(!err.to_string().contains('\n'));
        assert!(VerifierKey::new("a+b", [0; 32]).is_err());
        assert!(VerifierKey::new("", [0; 32]).is_err());
    }

    #[test]
    fn fail_vkey_bad_key_ids() {
        for vkey in [
            "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a0+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903g+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        ] {
            assert!(
                matches!(
                    VerifierKey::parse(vkey),
                    Err(NoteError::MalformedVerifierKey(_))
                ),
                "{vkey:?}"
            );
        }
        assert_eq!(
            VerifierKey::parse(
                "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
            ),
            Err(NoteError::KeyIdMismatch {
                stated: "530d903b".into(),
                actual: "530d903a".into(),
            })
        );
        // The right id under another name does not match either.
        assert!(matches!(
            VerifierKey::parse(
                "example.com/fop+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
            ),
            Err(NoteError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn fail_vkey_bad_keys() {
        let spec = spec_key();
        let encode = |bytes: &[u8]| STANDARD.encode(bytes);
        let id = hex::encode(spec.key_id());
        let mut ecdsa = vec![0x02];
        ecdsa.extend_from_slice(spec.public_key());
        assert_eq!(
            VerifierKey::parse(&format!("example.com/foo+{id}+{}", encode(&ecdsa))),
            Err(NoteError::UnsupportedKeyType(0x02))
        );
        let short = &[&[1u8][..], &spec.public_key()[..31]].concat();
        let long = &[&[1u8][..], &spec.public_key()[..], &[0]].concat();
        for key in [
            "".to_owned(),
            "!!!!".to_owned(),
            encode(short),
            encode(long),
            "AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=".to_owned(),
        ] {
            assert!(
                matches!(
                    VerifierKey::parse(&format!("example.com/foo+{id}+{key}")),
                    Err(NoteError::MalformedVerifierKey(_))
                ),
                "{key:?}"
            );
        }
        for vkey in ["", "example.com/foo", "example.com/foo+530d903a"] {
            assert!(matches!(
                VerifierKey::parse(vkey),
                Err(NoteError::MalformedVerifierKey(_) | NoteError::InvalidKeyName(_))
            ));
        }
    }

    #[test]
    fn fail_signer_from_bad_pkcs8_or_name() {
        assert!(matches!(
            Signer::from_pkcs8("a.example/k", b"not a key"),
            Err(NoteError::InvalidPrivateKey)
        ));
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        assert!(matches!(
            Signer::from_pkcs8("bad name", pkcs8.as_ref()),
            Err(NoteError::InvalidKeyName(_))
        ));
        let truncated = &pkcs8.as_ref()[..pkcs8.as_ref().len() - 1];
        assert!(matches!(
            Signer::from_pkcs8("a.example/k", truncated),
            Err(NoteError::InvalidPrivateKey)
        ));
    }

    #[test]
    fn signer_debug_shows_no_private_key() {
        let skey = STANDARD.decode(GO_SKEY_B64).unwrap();
        let seed_hex = hex::encode(&skey[1..]);
        let shown = format!("{:?}", go_signer());
        assert!(shown.contains(GO_VKEY), "{shown}");
        assert!(!shown.contains(&seed_hex[..16]));
        assert!(!shown.contains(&GO_SKEY_B64[1..12]));
    }

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("a\nb"), "a\\nb");
        let long = shown(&"x".repeat(100));
        assert_eq!(long.chars().count(), 65);
        assert!(long.ends_with('…'));
    }
}
