//! The append-only ledger: entries, canonical bytes, hash chain, Merkle tree, checkpoints,
//! storage and verification. It knows nothing of members or organisations.

pub mod canonical;
pub mod checkpoint;
pub mod entry;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod store;
pub mod verify;

pub use entry::{Actor, Entry, NewEntry};
pub use store::{Ledger, LedgerError, WriteTx};
