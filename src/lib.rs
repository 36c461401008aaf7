//! djaudit: a tamper-evident audit ledger, access policy and data-integrity checks for the
//! party-building (党建) information systems of enterprises.
//!
//! Data flows one way: input → authorise → append (+ project) → scan → report.
//!
//! - [`ledger`]: the append-only, hash-chained ledger (RFC 8785 entries, RFC 6962 Merkle
//!   tree, C2SP signed checkpoints) on SQLite. It knows nothing of party records.
//! - [`checks`]: consistency checks on the party-records projection (rule catalogue,
//!   settings from `policies/checks.toml`, findings). It only reads.

pub mod checks;
pub mod ledger;
