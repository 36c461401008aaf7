//! Party records: the record model, masking for display and the import parsing layer.
//!
//! - [`model`]: validated record types (orgs, members, dues, meetings, transfers, users),
//!   their ids and ledger subjects, and the flat canonical form (`Fields`) that ledger
//!   entries carry and projection rows (`schema.sql`) are written from, with `diff`/`apply`.
//! - [`mask`]: masking of sensitive fields (ID number, phone, income) for display.
//! - [`parse`]: streaming reader of CSV / JSON Lines import files (UTF-8 or GB18030,
//!   English or Chinese headers, value aliases) into validated records.
//! - [`projection`]: the projection tables (`schema.sql`), record entry kinds, and the
//!   writes that append an entry and change its row in one transaction; CSV export.
//! - [`import`]: a file into the ledger, one transaction, one entry per real change.
//! - [`reconcile`]: a snapshot file compared with the projection, changing nothing.
//! - [`history`]: a record's current state and its entries, masked.
//! - [`replay`]: the projection rebuilt from the ledger and compared (`verify --replay`).
//!
//! `schema.sql` is the projection contract. This module knows nothing of HTTP or the CLI;
//! the projection is derived only from ledger entries (DESIGN §1), never written here
//! directly from a file.

pub mod history;
pub mod import;
pub mod mask;
pub mod model;
pub mod parse;
pub mod projection;
pub mod reconcile;
pub mod replay;

pub use model::{Change, Changes, FieldValue, Fields, Record, RecordKind};
pub use projection::RecordError;
