//! Party records: the record model, masking for display and the import parsing layer.
//!
//! - [`model`]: validated record types (orgs, members, dues, meetings, transfers, users),
//!   their ids and ledger subjects, and the flat canonical form (`Fields`) that ledger
//!   entries carry and projection rows (`schema.sql`) are written from, with `diff`/`apply`.
//! - [`mask`]: masking of sensitive fields (ID number, phone, income) for display.
//! - [`parse`]: streaming reader of CSV / JSON Lines import files (UTF-8 or GB18030,
//!   English or Chinese headers, value aliases) into validated records.
//!
//! `schema.sql` is the projection contract. This module knows nothing of HTTP or the CLI;
//! the projection is derived only from ledger entries (DESIGN §1), never written here
//! directly from a file.

pub mod mask;
pub mod model;
pub mod parse;

pub use model::{Change, Changes, FieldValue, Fields, Record, RecordKind};
