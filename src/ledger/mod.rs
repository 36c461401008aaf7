//! The append-only ledger: entries, canonical bytes, hash chain, Merkle tree, checkpoints,
//! storage and verification. It knows nothing of members or organisations.

pub mod canonical;
pub mod merkle;
