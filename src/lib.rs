//! djaudit: a tamper-evident audit ledger, access policy and data-integrity checks for the
//! party-building (党建) information systems of enterprises.
//!
//! Data flows one way: input → authorise → append (+ project) → scan → report.
//!
//! - [`ledger`]: the append-only, hash-chained ledger (RFC 8785 entries, RFC 6962 Merkle
//!   tree, C2SP signed checkpoints) on SQLite. It knows nothing of party records.
//! - [`records`]: party record types, their flat canonical form and diffs, masking of
//!   sensitive fields, and the parsing of CSV / JSON Lines import files.
//! - [`policy`]: Cedar access policy: who may read or change which record, decided
//!   from the projection; policy tests; the masking decision; recording decisions.
//! - [`audit`]: access anomaly detection over the recorded decisions (bulk reads,
//!   off-hours access, denial bursts, sensitive exports, self-approval, administrators
//!   reading member data, dormant accounts).
//! - [`daemon`]: `djaudit serve`: the HTTP/JSON API, bearer tokens, the single writer with
//!   group commit, scheduled scans and metrics.
//! - [`report`]: signed compliance reports (HTML, Markdown, JSON) computed at a checkpoint,
//!   and their verification.
//! - [`demo`]: the main job on a synthetic organisation, in one call.
//! - [`synth`]: a deterministic generator of realistic party records with injected defects
//!   and the findings they must produce.
//! - [`checks`]: consistency checks on the party-records projection (rule catalogue,
//!   settings from `policies/checks.toml`, findings). It only reads.

pub mod audit;
pub mod checks;
pub mod daemon;
pub mod demo;
pub mod ledger;
pub mod policy;
pub mod records;
pub mod report;
pub mod synth;
