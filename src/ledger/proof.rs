//! Inclusion and consistency proofs in their JSON form (DESIGN §10), and their offline
//! verification: no ledger, only the proof (and optionally a signed checkpoint and its key).
//!
//! Proof files are hostile input: unknown fields, uppercase or short hex, and oversized
//! paths are rejected before any hashing.

use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint};
use super::entry::{hex_hash, parse_hex_hash};
use super::merkle::{self, Hash};
use super::note::VerifierKey;

/// Longest path a proof over a 2^64-entry tree can need (inclusion ≤ 64, consistency ≤ 128).
const MAX_PATH: usize = 128;

/// Proof that entry `leaf_index` is in the tree of `tree_size` entries with root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub root: Hash,
    pub path: Vec<Hash>,
}

/// Proof that the tree of `old_size` entries is a prefix of the tree of `new_size` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash,
    pub new_root: Hash,
    pub path: Vec<Hash>,
}

/// A parsed proof file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

/// Why a proof file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("malformed proof: `{field}` is not 64 lowercase hex digits")]
    Hash { field: String },
    #[error("malformed proof: the path has {0} hashes, more than any tree needs")]
    PathTooLong(usize),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionJson {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    root: String,
    path: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyJson {
    old_size: u64,
    new_size: u64,
    old_root: String,
    new_root: String,
    path: Vec<String>,
}

fn hash_field(field: &str, s: &str) -> Result<Hash, ProofError> {
    parse_hex_hash(s).ok_or_else(|| ProofError::Hash {
        field: field.to_owned(),
    })
}

fn path_field(path: &[String]) -> Result<Vec<Hash>, ProofError> {
    if path.len() > MAX_PATH {
        return Err(ProofError::PathTooLong(path.len()));
    }
    path.iter()
        .enumerate()
        .map(|(i, h)| hash_field(&format!("path[{i}]"), h))
        .collect()
}

impl InclusionProof {
    /// The JSON document of DESIGN §10.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(InclusionJson {
            leaf_index: self.leaf_index,
            tree_size: self.tree_size,
            leaf_hash: hex_hash(&self.leaf_hash),
            root: hex_hash(&self.root),
            path: self.path.iter().map(hex_hash).collect(),
        })
        .unwrap_or_default()
    }

    /// RFC 9162 §2.1.3.2.
    pub fn verify(&self) -> bool {
        merkle::verify_inclusion(
            &self.leaf_hash,
            self.leaf_index,
            self.tree_size,
            &self.path,
            &self.root,
        )
    }
}

impl ConsistencyProof {
    /// The JSON document of DESIGN §10.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(ConsistencyJson {
            old_size: self.old_size,
            new_size: self.new_size,
            old_root: hex_hash(&self.old_root),
            new_root: hex_hash(&self.new_root),
            path: self.path.iter().map(hex_hash).collect(),
        })
        .unwrap_or_default()
    }

    /// RFC 9162 §2.1.4.2.
    pub fn verify(&self) -> bool {
        merkle::verify_consistency(
            self.old_size,
            self.new_size,
            &self.old_root,
            &self.new_root,
            &self.path,
        )
    }
}

impl Proof {
    /// Parses a proof file (either shape, told apart by its fields).
    pub fn parse(text: &str) -> Result<Proof, ProofError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ProofError::Malformed(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ProofError::Malformed("expected a JSON object".into()))?;
        if obj.contains_key("leaf_index") {
            let j: InclusionJson = serde_json::from_value(value)
                .map_err(|e| ProofError::Malformed(format!("inclusion proof: {e}")))?;
            Ok(Proof::Inclusion(InclusionProof {
                leaf_index: j.leaf_index,
                tree_size: j.tree_size,
                leaf_hash: hash_field("leaf_hash", &j.leaf_hash)?,
                root: hash_field("root", &j.root)?,
                path: path_field(&j.path)?,
            }))
        } else if obj.contains_key("old_size") {
            let j: ConsistencyJson = serde_json::from_value(value)
                .map_err(|e| ProofError::Malformed(format!("consistency proof: {e}")))?;
            Ok(Proof::Consistency(ConsistencyProof {
                old_size: j.old_size,
                new_size: j.new_size,
                old_root: hash_field("old_root", &j.old_root)?,
                new_root: hash_field("new_root", &j.new_root)?,
                path: path_field(&j.path)?,
            }))
        } else {
            Err(ProofError::Malformed(
                "neither an inclusion proof (`leaf_index`) nor a consistency proof (`old_size`)"
                    .into(),
            ))
        }
    }

    /// Verifies the proof's hashes.
    pub fn verify(&self) -> bool {
        match self {
            Proof::Inclusion(p) => p.verify(),
            Proof::Consistency(p) => p.verify(),
        }
    }

    /// The tree size and root the proof ends in (what a checkpoint must commit to).
    pub fn tree(&self) -> (u64, Hash) {
        match self {
            Proof::Inclusion(p) => (p.tree_size, p.root),
            Proof::Consistency(p) => (p.new_size, p.new_root),
        }
    }

    /// The proof's JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Proof::Inclusion(p) => p.to_json(),
            Proof::Consistency(p) => p.to_json(),
        }
    }
}

/// Opens a signed checkpoint with `key` and checks that the proof ends in its tree.
pub fn check_against_checkpoint(
    proof: &Proof,
    note: &str,
    key: &VerifierKey,
) -> Result<Checkpoint, ProofError> {
    let cp = checkpoint::open_checkpoint(note, key)
        .map_err(|e| ProofError::Checkpoint(e.to_string()))?;
    let (size, root) = proof.tree();
    if cp.size() != size || cp.root() != &root {
        return Err(ProofError::Checkpoint(format!(
            "the proof is for a tree of size {size}, the checkpoint commits to size {} with another root",
            cp.size()
        )));
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> merkle::MemTree {
        merkle::MemTree::from_leaves((0..n).map(|i| merkle::leaf_hash(&i.to_be_bytes())))
    }

    fn inclusion(n: u64, i: u64) -> Proof {
        let t = tree(n);
        Proof::Inclusion(InclusionProof {
            leaf_index: i,
            tree_size: n,
            leaf_hash: merkle::leaf_hash(&i.to_be_bytes()),
            root: merkle::root(&t, n).unwrap(),
            path: merkle::inclusion_proof(&t, i, n).unwrap(),
        })
    }

    #[test]
    fn json_round_trip_and_verify() {
        let p = inclusion(13, 5);
        let text = serde_json::to_string(&p.to_json()).unwrap();
        let back = Proof::parse(&text).unwrap();
        assert_eq!(back, p);
        assert!(back.verify());
        let t = tree(20);
        let c = Proof::Consistency(ConsistencyProof {
            old_size: 7,
            new_size: 20,
            old_root: merkle::root(&t, 7).unwrap(),
            new_root: merkle::root(&t, 20).unwrap(),
            path: merkle::consistency_proof(&t, 7, 20).unwrap(),
        });
        let back = Proof::parse(&serde_json::to_string(&c.to_json()).unwrap()).unwrap();
        assert!(back.verify());
    }

    #[test]
    fn fail_parse_rejects_hostile_files() {
        let good = serde_json::to_string(&inclusion(13, 5).to_json()).unwrap();
        assert!(matches!(Proof::parse("[]"), Err(ProofError::Malformed(_))));
        assert!(matches!(Proof::parse("{"), Err(ProofError::Malformed(_))));
        assert!(matches!(Proof::parse("{}"), Err(ProofError::Malformed(_))));
        let upper = good.replace(
            &good[good.find("\"root\":\"").unwrap() + 8..][..64],
            &good[good.find("\"root\":\"").unwrap() + 8..][..64].to_uppercase(),
        );
        if upper != good {
            assert!(matches!(Proof::parse(&upper), Err(ProofError::Hash { .. })));
        }
        let extra = good.replacen('{', "{\"extra\":1,", 1);
        assert!(matches!(
            Proof::parse(&extra),
            Err(ProofError::Malformed(_))
        ));
        let neg = good.replace("\"leaf_index\":5", "\"leaf_index\":-5");
        assert!(matches!(Proof::parse(&neg), Err(ProofError::Malformed(_))));
        let long = serde_json::json!({
            "leaf_index": 0, "tree_size": 1, "leaf_hash": "00".repeat(32), "root": "00".repeat(32),
            "path": vec!["00".repeat(32); 200]
        });
        assert!(matches!(
            Proof::parse(&long.to_string()),
            Err(ProofError::PathTooLong(200))
        ));
    }

    #[test]
    fn fail_mutated_proof_does_not_verify() {
        let Proof::Inclusion(mut p) = inclusion(13, 5) else {
            unreachable!()
        };
        p.path[0][0] ^= 1;
        assert!(!p.verify());
    }
}
