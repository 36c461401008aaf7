//! Enforcing the access policy on the record commands (DESIGN §6): imports, record
//! show|history|export, reconcile and user account changes, each decided for one user
//! (an [`Enforcer`]) and recorded as `access.decision` entries.
//!
//! - Every record a request reads or changes is decided on its own resource
//!   ([`record_target`], [`change_targets`]); decisions are cached per (action, resource)
//!   within one request. An account that is disabled is refused before anything is read.
//! - A change that is refused changes nothing: the import's transaction is rolled back and
//!   one deny entry, naming the refused resource, is appended in a transaction of its own.
//!   An allowed change commits together with one allow entry summarising the request.
//! - A read records one decision per request, never one per field or per record: an
//!   export records how many records it covered (`count`) and which sensitive fields it
//!   showed unmasked (`fields`). Sensitive fields are masked unless the policy grants
//!   `read_sensitive` on the member they belong to; records the reader may not read are
//!   left out of an export and refuse a reconciliation.
//!
//! This module decides and records; it never prints, and a decision names sensitive fields,
//! never their values.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::path::Path;

use rusqlite::Connection;

use super::entities::{load_user, UserRow};
use super::record::RecordError as AccessError;
use super::record::{decide, record_decision, AccessRequest, DenyReason, Outcome};
use super::{Action, Authorizer, Decision, PolicyError, Resource};
use crate::ledger::store::Appended;
use crate::ledger::{Actor, Ledger, LedgerError, WriteTx};
use crate::records::history::{self, History, Masking, RecordView};
use crate::records::import::{self, Guarded, ImportGuard, ImportSummary, RowChange};
use crate::records::mask::mask_fields;
use crate::records::model::{diff, is_sensitive, FieldValue, Fields, Record, RecordKind, Role};
use crate::records::parse::ImportOptions;
use crate::records::projection::{self, RecordError as RecordsError};
use crate::records::reconcile::{self, ReconcileGuard, Reconciliation};

/// Longest request text recorded, in characters (the rest is cut).
const MAX_REQUEST_CHARS: usize = 200;

/// Errors of an enforced request (a refusal is not an error: see [`Enforced::Denied`]).
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The record work failed (bad file, unknown record, storage).
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Deciding or recording the decision failed (unknown user, storage).
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl From<PolicyError> for EnforceError {
    fn from(e: PolicyError) -> Self {
        EnforceError::Access(AccessError::Policy(e))
    }
}

impl From<LedgerError> for EnforceError {
    fn from(e: LedgerError) -> Self {
        EnforceError::Records(RecordsError::Ledger(e))
    }
}

impl EnforceError {
    /// Whether the error is the user's input (exit 2) rather than storage or internal (3).
    pub fn is_input(&self) -> bool {
        match self {
            EnforceError::Records(e) => e.is_input(),
            EnforceError::Access(e) => e.is_input(),
        }
    }
}

/// A refused request, recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Who asked.
    pub user: String,
    /// What they asked to do.
    pub action: Action,
    /// The resource refused (the first one, when a request needs many).
    pub resource: Resource,
    /// Why, when the policies did not decide it.
    pub reason: Option<DenyReason>,
    /// The policies that denied it (forbids); empty when nothing permits it.
    pub policies: Vec<String>,
    /// The seq of the `access.decision` entry recording the refusal.
    pub seq: u64,
}

impl fmt::Display for Denial {
    /// `` `p1` may not update `member/M2` `` (a record placed by the change: `` in
    /// `org/B2` ``, `` under `org/C1` ``) with why: a reason or the deciding forbids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` may not {} `{}`",
            self.user, self.action, self.resource
        )?;
        match &self.resource {
            Resource::NewMember { org_id, .. } => write!(f, " in `org/{org_id}`")?,
            Resource::NewOrg {
                parent_id: Some(parent),
                ..
            } => write!(f, " under `org/{parent}`")?,
            _ => {}
        }
        match self.reason {
            Some(DenyReason::Disabled) => f.write_str(" (the account is disabled)"),
            Some(DenyReason::UnknownResource) => f.write_str(" (no such record)"),
            Some(DenyReason::UnknownUser) => f.write_str(" (unknown user)"),
            None if self.policies.is_empty() => f.write_str(" (no policy permits it)"),
            None => write!(f, " (forbidden by {})", self.policies.join(", ")),
        }
    }
}

/// The answer to an enforced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforced<T> {
    /// Allowed and done.
    Allowed {
        /// What the request produced.
        value: T,
        /// The seq of the allow entry; `None` when nothing was recorded (an import or
        /// user change that changed nothing appends nothing).
        seq: Option<u64>,
    },
    /// Refused and recorded; nothing else changed.
    Denied(Denial),
}

/// What an enforced export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records written.
    pub exported: u64,
    /// Records left out because the reader may not export them.
    pub withheld: u64,
    /// Records written with their sensitive values unmasked.
    pub unmasked: u64,
}

/// A change to a user account (`djaudit user add|update|disable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// A new account; `role` is required.
    Add(UserFields),
    /// New values for the given fields of an existing account.
    Update(UserFields),
    /// The account disabled.
    Disable(String),
}

/// The fields a user change sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
    /// The account id.
    pub user_id: String,
    /// The display name.
    pub name: Option<String>,
    /// The role.
    pub role: Option<Role>,
    /// The org the account belongs to.
    pub org_id: Option<String>,
    /// For role `member`: the member record that is theirs.
    pub member_id: Option<String>,
}

impl UserChange {
    /// The account id.
    pub fn user_id(&self) -> &str {
        match self {
            UserChange::Add(f) | UserChange::Update(f) => &f.user_id,
            UserChange::Disable(id) => id,
        }
    }

    /// `add`, `update` or `disable`.
    pub fn verb(&self) -> &'static str {
        match self {
            UserChange::Add(_) => "add",
            UserChange::Update(_) => "update",
            UserChange::Disable(_) => "disable",
        }
    }
}

/// Writes a user change (`user.create` or `user.update`, with its projection row) in `w`'s
/// transaction, without any decision: the caller has authorised it. `Ok(None)` when an
/// update changes nothing.
pub fn write_user_change(
    w: &mut WriteTx<'_>,
    change: &UserChange,
    actor: &Actor,
) -> Result<Option<Appended>, RecordsError> {
    let kind = RecordKind::User;
    let id = change.user_id();
    let subject = projection::subject(kind, id);
    let invalid = |why| RecordsError::Invalid {
        subject: subject.clone(),
        why,
    };
    let current = projection::get(w.conn(), kind, id)?;
    let mut fields = match (change, current.as_ref()) {
        (UserChange::Add(_), Some(_)) => return Err(RecordsError::Exists(subject)),
        (UserChange::Add(_), None) => {
            let mut f = Fields::new();
            f.insert("user_id", FieldValue::Text(id.to_owned()));
            f.insert("disabled", FieldValue::Bool(false));
            f
        }
        (_, None) => return Err(RecordsError::NotFound(subject)),
        (_, Some(row)) => row.fields.clone(),
    };
    match change {
        UserChange::Add(u) | UserChange::Update(u) => {
            let text = |v: &Option<String>| v.as_ref().map(|s| FieldValue::Text(s.clone()));
            for (name, value) in [
                ("name", text(&u.name)),
                (
                    "role",
                    u.role.map(|r| FieldValue::Text(r.as_str().to_owned())),
                ),
                ("org_id", text(&u.org_id)),
                ("member_id", text(&u.member_id)),
            ] {
                if let Some(v) = value {
                    fields.insert(name, v);
                }
            }
        }
        UserChange::Disable(_) => {
            fields.insert("disabled", FieldValue::Bool(true));
        }
    }
    let record = Record::from_fields(kind, &fields).map_err(invalid)?;
    match current {
        None => projection::create(w, &record, actor).map(Some),
        Some(row) => {
            let changes = diff(&row.fields, &record.to_fields());
            projection::update(w, kind, id, &changes, actor)
        }
    }
}

/// What a decision is about: a resource the policies decide, or a member record placed
/// outside every org, which no policy can reach (refused without asking them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Ask the policies about this resource.
    Decide(Resource),
    /// A member record without an org after the change: denied, no policy permits it.
    Nowhere(Resource),
}

impl Target {
    fn resource(&self) -> &Resource {
        match self {
            Target::Decide(r) | Target::Nowhere(r) => r,
        }
    }
}

/// The (action, resource) that reading an existing record needs: `read` (or `export`) on
/// its resource — a dues or transfer record is its member's, a meeting its org's — and
/// `manage_users` on the system for a user account.
pub fn record_target(
    kind: RecordKind,
    subject: &str,
    read_action: Action,
) -> Result<(Action, Resource), PolicyError> {
    if kind == RecordKind::User {
        return Ok((Action::ManageUsers, Resource::System));
    }
    Ok((read_action, subject.parse()?))
}

/// The action a request about many records of `kind` is recorded with: `manage_users` for
/// user accounts, else `action`.
fn bulk_action(kind: RecordKind, action: Action) -> Action {
    if kind == RecordKind::User {
        Action::ManageUsers
    } else {
        action
    }
}

fn text_field<'f>(fields: &'f Fields, name: &str) -> Option<&'f str> {
    fields.get(name).and_then(FieldValue::as_text)
}

/// The decisions a row of an import needs: `create` or `update` on the record's resource;
/// a new member is placed in its org ([`Resource::NewMember`]), a new org under its parent
/// ([`Resource::NewOrg`]); moving a member to another org, or an org under another parent,
/// needs `update` where it goes as well as where it is. User accounts need `manage_users`.
pub fn change_targets(
    kind: RecordKind,
    row: &RowChange<'_>,
) -> Result<Vec<(Action, Target)>, PolicyError> {
    let id = row.record.id();
    let action = if row.is_new() {
        Action::Create
    } else {
        Action::Update
    };
    let decide = |r: Resource| Target::Decide(r);
    Ok(match (kind, row.current) {
        (RecordKind::User, _) => vec![(Action::ManageUsers, decide(Resource::System))],
        (RecordKind::Member, None) => {
            let fields = row.record.to_fields();
            let target = match text_field(&fields, "org_id") {
                Some(org) => decide(Resource::NewMember {
                    member_id: id,
                    org_id: org.to_owned(),
                }),
                None => Target::Nowhere(Resource::Member(id)),
            };
            vec![(Action::Create, target)]
        }
        (RecordKind::Member, Some(_)) => {
            let mut v = vec![(Action::Update, decide(Resource::Member(id.clone())))];
            if let Some(c) = row.changes.get("org_id") {
                let target = match c.new.as_ref().and_then(FieldValue::as_text) {
                    Some(org) => decide(Resource::NewMember {
                        member_id: id,
                        org_id: org.to_owned(),
                    }),
                    None => Target::Nowhere(Resource::Member(id)),
                };
                v.push((Action::Update, target));
            }
            v
        }
        (RecordKind::Org, None) => {
            let fields = row.record.to_fields();
            vec![(
                Action::Create,
                decide(Resource::NewOrg {
                    org_id: id,
                    kind: text_field(&fields, "kind").unwrap_or_default().to_owned(),
                    parent_id: text_field(&fields, "parent_id").map(str::to_owned),
                }),
            )]
        }
        (RecordKind::Org, Some(current)) => {
            let mut v = vec![(Action::Update, decide(Resource::Org(id.clone())))];
            if row.changes.contains_key("parent_id") || row.changes.contains_key("kind") {
                let after = |name: &str| match row.changes.get(name) {
                    Some(c) => c
                        .new
                        .as_ref()
                        .and_then(FieldValue::as_text)
                        .map(str::to_owned),
                    None => text_field(current, name).map(str::to_owned),
                };
                v.push((
                    Action::Update,
                    decide(Resource::NewOrg {
                        org_id: id,
                        kind: after("kind").unwrap_or_default(),
                        parent_id: after("parent_id"),
                    }),
                ));
            }
            v
        }
        (RecordKind::Dues | RecordKind::Meeting | RecordKind::Transfer, _) => {
            let subject = projection::subject(kind, &id);
            vec![(action, decide(subject.parse()?))]
        }
    })
}

/// A request text as recorded: control characters replaced, at most
/// [`MAX_REQUEST_CHARS`] characters.
fn request_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_REQUEST_CHARS)
        .collect()
}

fn allow(policies: &BTreeSet<String>) -> Outcome {
    Outcome {
        decision: Decision {
            allowed: true,
            policy_ids: policies.iter().cloned().collect(),
            errors: Vec::new(),
        },
        reason: None,
    }
}

/// Enforces the policy for one user.
#[derive(Debug)]
pub struct Enforcer<'a> {
    authorizer: &'a Authorizer,
    actor: Actor,
    user: UserRow,
}

impl<'a> Enforcer<'a> {
    /// An enforcer for `actor.user`; an unknown user is an error (nothing is recorded
    /// about nobody).
    pub fn new(
        authorizer: &'a Authorizer,
        conn: &Connection,
        actor: Actor,
    ) -> Result<Self, EnforceError> {
        let user = load_user(conn, &actor.user)?
            .ok_or_else(|| PolicyError::UnknownUser(actor.user.clone()))?;
        Ok(Enforcer {
            authorizer,
            actor,
            user,
        })
    }

    /// Who the requests are made by (and the changes attributed to).
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The resource a request about many records of `kind` is recorded on: the system for
    /// user accounts, else the user's org, else the ledger.
    pub fn scope(&self, kind: RecordKind) -> Resource {
        match (&self.user.org_id, kind) {
            (_, RecordKind::User) => Resource::System,
            (Some(org), _) => Resource::Org(org.clone()),
            (None, _) => Resource::Ledger,
        }
    }

    fn request(&self, action: Action, resource: Resource, text: &str) -> AccessRequest {
        AccessRequest::new(self.actor.clone(), action, resource, &request_text(text))
    }

    /// Decides one (action, target) against `conn`. A record not in the projection is a
    /// deny ([`DenyReason::UnknownResource`]): no policy can place it.
    pub fn decide(
        &self,
        conn: &Connection,
        action: Action,
        target: &Target,
    ) -> Result<Outcome, EnforceError> {
        let resource = match target {
            Target::Decide(r) => r,
            Target::Nowhere(_) => {
                return Ok(Outcome {
                    decision: Decision {
                        allowed: false,
                        policy_ids: Vec::new(),
                        errors: Vec::new(),
                    },
                    reason: None,
                })
            }
        };
        let req = AccessRequest::new(self.actor.clone(), action, resource.clone(), "decide");
        match decide(self.authorizer, conn, &req) {
            Ok(o) => Ok(o),
            Err(PolicyError::UnknownResource(_)) => {
                Ok(Outcome::refused(DenyReason::UnknownResource))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the user may see the sensitive fields of `resource` (a member) unmasked.
    fn masking(&self, conn: &Connection, resource: &Resource) -> Result<Masking, EnforceError> {
        if !matches!(resource, Resource::Member(_)) {
            // Only member records (and the dues of a member) have sensitive fields.
            return Ok(Masking::Masked);
        }
        let o = self.decide(
            conn,
            Action::ReadSensitive,
            &Target::Decide(resource.clone()),
        )?;
        Ok(if o.allowed() {
            Masking::Unmasked
        } else {
            Masking::Masked
        })
    }

    /// Records `req` refused with `outcome` in a transaction of its own.
    fn deny(
        &self,
        ledger: &mut Ledger,
        req: &AccessRequest,
        outcome: &Outcome,
    ) -> Result<Denial, EnforceError> {
        let mut tx = ledger.write()?;
        let appended = record_decision(&mut tx, req, outcome)?;
        tx.commit()?;
        Ok(Denial {
            user: self.actor.user.clone(),
            action: req.action,
            resource: req.resource.clone(),
            reason: outcome.reason,
            policies: outcome.decision.policy_ids.clone(),
            seq: appended.seq,
        })
    }

    /// A disabled account is refused before anything is read: the refusal recorded on
    /// `resource`.
    fn refuse_disabled(
        &self,
        ledger: &mut Ledger,
        action: Action,
        resource: Resource,
        text: &str,
    ) -> Result<Option<Denial>, EnforceError> {
        if !self.user.disabled {
            return Ok(None);
        }
        let req = self.request(action, resource, text);
        self.deny(ledger, &req, &Outcome::refused(DenyReason::Disabled))
            .map(Some)
    }

    /// Records an allowed read in a transaction of its own; returns the seq.
    fn record_allowed(
        &self,
        ledger: &mut Ledger,
        req: &AccessRequest,
        outcome: &Outcome,
    ) -> Result<u64, EnforceError> {
        let mut tx = ledger.write()?;
        let appended = record_decision(&mut tx, req, outcome)?;
        tx.commit()?;
        Ok(appended.seq)
    }

    /// Decides a read of one existing record (`record show|history`): exit early on deny
    /// (recorded), else the masking to read it with.
    fn read_one(
        &self,
        ledger: &mut Ledger,
        kind: RecordKind,
        subject: &str,
        text: &str,
    ) -> Result<Result<(AccessRequest, Outcome, Masking), Denial>, EnforceError> {
        let (action, resource) = record_target(kind, subject, Action::Read)?;
        if let Some(d) = self.refuse_disabled(ledger, action, resource.clone(), text)? {
            return Ok(Err(d));
        }
        let target = Target::Decide(resource.clone());
        let outcome = self.decide(ledger.conn(), action, &target)?;
        let req = self.request(action, resource.clone(), text);
        if !outcome.allowed() {
            return Ok(Err(self.deny(ledger, &req, &outcome)?));
        }
        let masking = self.masking(ledger.conn(), &resource)?;
        Ok(Ok((req, outcome, masking)))
    }

    /// `record show <kind>/<id>`: the record (masked unless the user may read its
    /// sensitive fields), one decision recorded. An unknown record is an error, nothing
    /// recorded.
    pub fn show(
        &self,
        ledger: &mut Ledger,
        name: &str,
    ) -> Result<Enforced<RecordView>, EnforceError> {
        let (kind, id) = projection::parse_subject(name)?;
        let subject = projection::subject(kind, &id);
        if projection::get(ledger.conn(), kind, &id)?.is_none() {
            return Err(RecordsError::NotFound(subject).into());
        }
        let text = format!("record show {subject}");
        let (mut req, outcome, masking) = match self.read_one(ledger, kind, &subject, &text)? {
            Ok(r) => r,
            Err(d) => return Ok(Enforced::Denied(d)),
        };
        let view = history::show_with(ledger, &subject, masking)?;
        if masking == Masking::Unmasked {
            req.fields = view
                .sensitive_fields()
                .iter()
                .map(|f| f.to_string())
                .collect();
        }
        let seq = self.record_allowed(ledger, &req, &outcome)?;
        Ok(Enforced::Allowed {
            value: view,
            seq: Some(seq),
        })
    }

    /// `record history <kind>/<id>`: as [`Enforcer::show`], with every entry about the
    /// record. A removed member can no longer be placed in any org: reading its history is
    /// refused ([`DenyReason::UnknownResource`]).
    pub fn history(
        &self,
        ledger: &mut Ledger,
        name: &str,
    ) -> Result<Enforced<History>, EnforceError> {
        let (kind, id) = projection::parse_subject(name)?;
        let subject = projection::subject(kind, &id);
        if projection::get(ledger.conn(), kind, &id)?.is_none() {
            // Known only by its entries, or not at all (then an error, nothing recorded).
            history::history(ledger, &subject)?;
        }
        let text = format!("record history {subject}");
        let (mut req, outcome, masking) = match self.read_one(ledger, kind, &subject, &text)? {
            Ok(r) => r,
            Err(d) => return Ok(Enforced::Denied(d)),
        };
        let h = history::history_with(ledger, &subject, masking)?;
        if masking == Masking::Unmasked {
            req.fields = h.sensitive_fields().iter().map(|f| f.to_string()).collect();
        }
        let seq = self.record_allowed(ledger, &req, &outcome)?;
        Ok(Enforced::Allowed {
            value: h,
            seq: Some(seq),
        })
    }

    /// `import <kind> FILE`: every row authorised in the import's transaction (see
    /// [`change_targets`]). Refused: nothing imported, one deny entry naming the refused
    /// resource with `count` the rows the file would have changed. Allowed: one allow
    /// entry on [`Enforcer::scope`] with that count, committed with the changes.
    pub fn import(
        &self,
        ledger: &mut Ledger,
        kind: RecordKind,
        path: &Path,
        options: ImportOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Enforced<ImportSummary>, EnforceError> {
        let file = import::file_name(&path.display().to_string());
        let text = format!("import {} {file}", kind.plural());
        let bulk = bulk_action(kind, Action::Create);
        if let Some(d) = self.refuse_disabled(ledger, bulk, self.scope(kind), &text)? {
            return Ok(Enforced::Denied(d));
        }
        let mut guard = ImportCheck {
            enforcer: self,
            kind,
            text: text.clone(),
            cache: HashMap::new(),
            policies: BTreeSet::new(),
            denied: None,
            recorded: None,
        };
        let actor = self.actor.clone();
        match import::import_guarded(ledger, kind, path, options, &actor, &mut guard, progress)? {
            Guarded::Imported(summary) => Ok(Enforced::Allowed {
                value: summary,
                seq: guard.recorded,
            }),
            Guarded::Refused(summary) => {
                let (action, target, outcome) = guard.denied.take().ok_or_else(|| {
                    PolicyError::Request("an import was refused without a decision".into())
                })?;
                let mut req = self.request(action, target.resource().clone(), &text);
                req.count = Some(summary.created + summary.updated);
                Ok(Enforced::Denied(self.deny(ledger, &req, &outcome)?))
            }
        }
    }

    /// `reconcile <kind> FILE`: `read` on every projection record compared. Refused: one
    /// deny entry naming the first refused record, nothing reported. Allowed: one allow
    /// entry on [`Enforcer::scope`] with `count` the records compared, committed with the
    /// `scan.reconcile` entry.
    pub fn reconcile(
        &self,
        ledger: &mut Ledger,
        kind: RecordKind,
        path: &Path,
        options: ImportOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Enforced<Reconciliation>, EnforceError> {
        let file = import::file_name(&path.display().to_string());
        let text = format!("reconcile {} {file}", kind.plural());
        let bulk = bulk_action(kind, Action::Read);
        if let Some(d) = self.refuse_disabled(ledger, bulk, self.scope(kind), &text)? {
            return Ok(Enforced::Denied(d));
        }
        let mut guard = ReadCheck {
            enforcer: self,
            kind,
            text: text.clone(),
            cache: HashMap::new(),
            policies: BTreeSet::new(),
            denied: None,
            recorded: None,
        };
        let actor = self.actor.clone();
        match reconcile::reconcile_guarded(
            ledger, kind, path, options, &actor, &mut guard, progress,
        )? {
            Some(r) => Ok(Enforced::Allowed {
                value: r,
                seq: guard.recorded,
            }),
            None => {
                let (action, resource, outcome) = guard.denied.take().ok_or_else(|| {
                    PolicyError::Request("a reconciliation was refused without a decision".into())
                })?;
                let req = self.request(action, resource, &text);
                Ok(Enforced::Denied(self.deny(ledger, &req, &outcome)?))
            }
        }
    }

    /// `record export <kind>`: the CSV of every record the user may `export` (others are
    /// left out), sensitive values masked unless the user may read them. One decision
    /// entry: allow on [`Enforcer::scope`] with `count` and the `fields` shown unmasked;
    /// deny, naming the first refused record, when records exist and none may be exported
    /// (then nothing is written). `path` names `out` in errors.
    pub fn export(
        &self,
        ledger: &mut Ledger,
        kind: RecordKind,
        out: &mut dyn Write,
        path: &Path,
    ) -> Result<Enforced<ExportSummary>, EnforceError> {
        let text = format!("record export {}", kind.plural());
        let bulk = bulk_action(kind, Action::Export);
        let scope = self.scope(kind);
        if let Some(d) = self.refuse_disabled(ledger, bulk, scope.clone(), &text)? {
            return Ok(Enforced::Denied(d));
        }
        let io = |source| RecordsError::Write {
            path: path.to_owned(),
            source,
        };
        let mut decisions: HashMap<Resource, Outcome> = HashMap::new();
        let mut masks: HashMap<Resource, Masking> = HashMap::new();
        let mut policies = BTreeSet::new();
        let mut shown: BTreeSet<&'static str> = BTreeSet::new();
        let mut first_denied: Option<(Action, Resource, Outcome)> = None;
        let mut summary = ExportSummary {
            exported: 0,
            withheld: 0,
            unmasked: 0,
        };
        let mut header = false;
        let mut line = String::new();
        let conn = ledger.conn();
        projection::try_for_each(conn, kind, |row| -> Result<(), EnforceError> {
            let id = row
                .fields
                .get(kind.id_field())
                .and_then(FieldValue::as_text)
                .unwrap_or_default();
            let subject = projection::subject(kind, id);
            let (action, resource) = record_target(kind, &subject, Action::Export)?;
            let outcome = match decisions.get(&resource) {
                Some(o) => o.clone(),
                None => {
                    let o = self.decide(conn, action, &Target::Decide(resource.clone()))?;
                    decisions.insert(resource.clone(), o.clone());
                    o
                }
            };
            if !outcome.allowed() {
                summary.withheld += 1;
                if first_denied.is_none() {
                    first_denied = Some((action, resource, outcome));
                }
                return Ok(());
            }
            policies.extend(outcome.decision.policy_ids.iter().cloned());
            let masking = match masks.get(&resource) {
                Some(m) => *m,
                None => {
                    let m = self.masking(conn, &resource)?;
                    masks.insert(resource.clone(), m);
                    m
                }
            };
            let fields = match masking {
                Masking::Unmasked => {
                    let mut any = false;
                    for f in row.fields.keys().copied().filter(|f| is_sensitive(f)) {
                        shown.insert(f);
                        any = true;
                    }
                    if any {
                        summary.unmasked += 1;
                    }
                    row.fields
                }
                Masking::Masked => mask_fields(&row.fields),
            };
            line.clear();
            if !header {
                line.push_str(&projection::csv_header(kind));
                line.push('\n');
                header = true;
            }
            projection::push_csv_line(&mut line, kind, &fields);
            line.push('\n');
            summary.exported += 1;
            out.write_all(line.as_bytes()).map_err(io)?;
            Ok(())
        })?;
        if summary.exported == 0 {
            if let Some((action, resource, outcome)) = first_denied {
                let req = self.request(action, resource, &text);
                return Ok(Enforced::Denied(self.deny(ledger, &req, &outcome)?));
            }
        }
        if !header {
            let mut h = projection::csv_header(kind);
            h.push('\n');
            out.write_all(h.as_bytes()).map_err(io)?;
        }
        out.flush().map_err(io)?;
        let mut req = self.request(bulk, scope, &text);
        req.count = Some(summary.exported);
        req.fields = shown.iter().map(|f| f.to_string()).collect();
        let seq = self.record_allowed(ledger, &req, &allow(&policies))?;
        Ok(Enforced::Allowed {
            value: summary,
            seq: Some(seq),
        })
    }

    /// `user add|update|disable`: `manage_users` on the system, the decision recorded and
    /// committed with the change (or alone, refused).
    pub fn change_user(
        &self,
        ledger: &mut Ledger,
        change: &UserChange,
    ) -> Result<Enforced<Option<Appended>>, EnforceError> {
        let text = format!("user {} {}", change.verb(), change.user_id());
        let (action, resource) = (Action::ManageUsers, Resource::System);
        if let Some(d) = self.refuse_disabled(ledger, action, resource.clone(), &text)? {
            return Ok(Enforced::Denied(d));
        }
        let outcome = self.decide(ledger.conn(), action, &Target::Decide(resource.clone()))?;
        let req = self.request(action, resource, &text);
        if !outcome.allowed() {
            return Ok(Enforced::Denied(self.deny(ledger, &req, &outcome)?));
        }
        let mut tx = ledger.write()?;
        let decision = record_decision(&mut tx, &req, &outcome)?;
        let appended = write_user_change(&mut tx, change, &self.actor)?;
        if appended.is_none() {
            // Nothing changed: nothing recorded (dropping `tx` rolls the decision back).
            return Ok(Enforced::Allowed {
                value: None,
                seq: None,
            });
        }
        tx.commit()?;
        Ok(Enforced::Allowed {
            value: appended,
            seq: Some(decision.seq),
        })
    }
}

/// The import guard: decides every row, remembers the first refusal.
struct ImportCheck<'e, 'a> {
    enforcer: &'e Enforcer<'a>,
    kind: RecordKind,
    text: String,
    cache: HashMap<(Action, Target), Outcome>,
    policies: BTreeSet<String>,
    denied: Option<(Action, Target, Outcome)>,
    recorded: Option<u64>,
}

impl ImportGuard for ImportCheck<'_, '_> {
    type Error = EnforceError;

    fn check(&mut self, conn: &Connection, row: &RowChange<'_>) -> Result<bool, EnforceError> {
        for (action, target) in change_targets(self.kind, row)? {
            let key = (action, target);
            let outcome = match self.cache.get(&key) {
                Some(o) => o.clone(),
                None => {
                    let o = self.enforcer.decide(conn, key.0, &key.1)?;
                    self.cache.insert(key.clone(), o.clone());
                    o
                }
            };
            if !outcome.allowed() {
                self.denied = Some((key.0, key.1, outcome));
                return Ok(false);
            }
            self.policies
                .extend(outcome.decision.policy_ids.iter().cloned());
        }
        Ok(true)
    }

    fn allowed(
        &mut self,
        w: &mut WriteTx<'_>,
        summary: &ImportSummary,
    ) -> Result<(), EnforceError> {
        let action = match (self.kind, summary.updated) {
            (RecordKind::User, _) => Action::ManageUsers,
            (_, 0) => Action::Create,
            _ => Action::Update,
        };
        let mut req = self
            .enforcer
            .request(action, self.enforcer.scope(self.kind), &self.text);
        req.count = Some(summary.created + summary.updated);
        let appended = record_decision(w, &req, &allow(&self.policies))?;
        self.recorded = Some(appended.seq);
        Ok(())
    }
}

/// The reconcile guard: `read` on every compared record, the first refusal remembered.
struct ReadCheck<'e, 'a> {
    enforcer: &'e Enforcer<'a>,
    kind: RecordKind,
    text: String,
    cache: HashMap<(Action, Resource), Outcome>,
    policies: BTreeSet<String>,
    denied: Option<(Action, Resource, Outcome)>,
    recorded: Option<u64>,
}

impl ReconcileGuard for ReadCheck<'_, '_> {
    type Error = EnforceError;

    fn check(&mut self, conn: &Connection, subject: &str) -> Result<bool, EnforceError> {
        let (kind, _) = projection::parse_subject(subject)?;
        let key = record_target(kind, subject, Action::Read)?;
        let outcome = match self.cache.get(&key) {
            Some(o) => o.clone(),
            None => {
                let o = self
                    .enforcer
                    .decide(conn, key.0, &Target::Decide(key.1.clone()))?;
                self.cache.insert(key.clone(), o.clone());
                o
            }
        };
        if !outcome.allowed() {
            self.denied = Some((key.0, key.1, outcome));
            return Ok(false);
        }
        self.policies
            .extend(outcome.decision.policy_ids.iter().cloned());
        Ok(true)
    }

    fn allowed(&mut self, w: &mut WriteTx<'_>, compared: u64) -> Result<(), EnforceError> {
        let action = bulk_action(self.kind, Action::Read);
        let mut req = self
            .enforcer
            .request(action, self.enforcer.scope(self.kind), &self.text);
        req.count = Some(compared);
        let appended = record_decision(w, &req, &allow(&self.policies))?;
        self.recorded = Some(appended.seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::Entry;
    use crate::policy::Policies;
    use serde_json::json;

    /// C1 > B1, B2; members M1 (B1) and M2 (B2) with sensitive values; users of several
    /// roles, one disabled. Rows written directly: these tests are about decisions.
    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tmp");
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .expect("init");
        projection::ensure_schema(l.conn()).expect("schema");
        l.conn()
            .execute_batch(
                "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES
                   ('C1','C1','committee',NULL,0), ('B1','B1','branch','C1',0),
                   ('B2','B2','branch','C1',0);
                 INSERT INTO member (member_id, name, id_number, phone, org_id, last_seq) VALUES
                   ('M1','甲','23010219900101123X','13900000001','B1',0),
                   ('M2','乙','230102199102031246','13900000002','B2',0);
                 INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq) VALUES
                   ('dept','org_dept','C1',NULL,0,0), ('p1','provider','B1',NULL,0,0),
                   ('m1','member','B1','M1',0,0), ('sys','sysadmin',NULL,NULL,0,0),
                   ('aud','auditor',NULL,NULL,0,0), ('off','provider','B1',NULL,1,0);",
            )
            .expect("rows");
        (dir, l)
    }

    fn authorizer(l: &Ledger) -> Authorizer {
        Authorizer::new(Policies::embedded().expect("policies"), l.conn()).expect("authorizer")
    }

    fn enforcer<'a>(a: &'a Authorizer, l: &Ledger, user: &str) -> Enforcer<'a> {
        Enforcer::new(a, l.conn(), Actor::cli(user)).expect("user")
    }

    fn entry(l: &Ledger, seq: u64) -> Entry {
        Entry::parse(l.entry(seq).expect("entry").body.as_bytes()).expect("parse")
    }

    fn last(l: &Ledger) -> Entry {
        entry(l, l.size().expect("size") - 1)
    }

    fn member_row(l: &Ledger, id: &str) -> Fields {
        projection::get(l.conn(), RecordKind::Member, id)
            .expect("get")
            .expect("row")
            .fields
    }

    fn import_file(
        e: &Enforcer<'_>,
        l: &mut Ledger,
        dir: &Path,
        text: &str,
    ) -> Enforced<ImportSummary> {
        let p = dir.join("m.csv");
        std::fs::write(&p, text).expect("write");
        e.import(
            l,
            RecordKind::Member,
            &p,
            ImportOptions::default(),
            &mut |_| {},
        )
        .expect("import")
    }

    #[test]
    fn fail_provider_import_into_another_branch_adds_only_the_refusal() {
        let (d, mut l) = ledger();
        let a = authorizer(&l);
        let e = enforcer(&a, &l, "p1");
        let before = l.size().expect("size");
        // M1 is theirs, M2 is not: the whole file is refused.
        let r = import_file(
            &e,
            &mut l,
            d.path(),
            "member_id,phone\nM1,13900000011\nM2,13900000022\nM3,\n",
        );
        let Enforced::Denied(denial) = r else {
            panic!("{r:?}")
        };
        assert_eq!(denial.resource, Resource::Member("M2".into()));
        assert_eq!(denial.action, Action::Update);
        assert_eq!(
            denial.to_string(),
            "`p1` may not update `member/M2` (no policy permits it)"
        );
        assert_eq!(l.size().expect("size"), before + 1);
        let e = last(&l);
        assert_eq!(e.seq, denial.seq);
        assert_eq!(e.kind, "access.decision");
        assert_eq!(e.subject, "member/M2");
        assert_eq!(e.actor.user, "p1");
        // count: M1 and M2 would change; M3 is new and counted too (it was never decided).
        assert_eq!(
            e.data,
            json!({"action": "update", "decision": "deny", "policies": [],
                   "request": "import members m.csv", "count": 3})
        );
        assert_eq!(
            member_row(&l, "M1")["phone"],
            FieldValue::Text("13900000001".into())
        );
    }

    #[test]
    fn allowed_import_commits_one_summary_decision_with_the_changes() {
        let (d, mut l) = ledger();
        let a = authorizer(&l);
        let e = enforcer(&a, &l, "p1");
        let r = import_file(
            &e,
            &mut l,
            d.path(),
            "member_id,phone,org_id\nM1,13900000011,B1\nM5,,B1\nM6,,B1\n",
        );
        let Enforced::Allowed { value: s, seq } = r else {
            panic!("{r:?}")
        };
        assert_eq!((s.created, s.updated), (2, 1));
        let (first, last_seq) = s.appended.expect("appended");
        // M1 update, M5, M6, the decision, import.batch.
        assert_eq!((first, last_seq), (1, 5));
        assert_eq!(seq, Some(4));
        let d = entry(&l, 4);
        assert_eq!(d.subject, "org/B1");
        assert_eq!(
            d.data,
            json!({"action": "update", "decision": "allow",
                   "policies": ["provider.own_branch_members"],
                   "request": "import members m.csv", "count": 3})
        );
        assert_eq!(entry(&l, 5).kind, "import.batch");
    }

    #[test]
    fn fail_moving_a_member_needs_the_destination_too() {
        let (d, mut l) = ledger();
        let a = authorizer(&l);
        let r = import_file(
            &enforcer(&a, &l, "p1"),
            &mut l,
            d.path(),
            "member_id,org_id\nM1,B2\n",
        );
        let Enforced::Denied(denial) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            denial.resource,
            Resource::NewMember {
                member_id: "M1".into(),
                org_id: "B2".into()
            }
        );
        assert_eq!(
            denial.to_string(),
            "`p1` may not update `member/M1` in `org/B2` (no policy permits it)"
        );
        // The organisation department of both branches may.
        let r = import_file(
            &enforcer(&a, &l, "dept"),
            &mut l,
            d.path(),
            "member_id,org_id\nM1,B2\n",
        );
        assert!(matches!(r, Enforced::Allowed { .. }), "{r:?}");
        assert_eq!(
            member_row(&l, "M1")["org_id"],
            FieldValue::Text("B2".into())
        );
        // A new member outside every org: nobody may create it.
        let r = import_file(
            &enforcer(&a, &l, "dept"),
            &mut l,
            d.path(),
            "member_id,name\nM9,x\n",
        );
        let Enforced::Denied(denial) = r else {
            panic!("{r:?}")
        };
        assert_eq!(denial.resource, Resource::Member("M9".into()));
        assert!(denial.policies.is_empty() && denial.reason.is_none());
    }

    #[test]
    fn show_masks_unless_read_sensitive_and_names_the_fields_shown() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let show = |l: &mut Ledger, user: &str, name: &str| {
            enforcer(&a, l, user).show(l, name).expect("show")
        };
        // A provider reads its own branch's member, masked.
        let Enforced::Allowed { value, seq } = show(&mut l, "p1", "member/M1") else {
            panic!("p1")
        };
        assert_eq!(
            value.fields["id_number"],
            FieldValue::Text("2301**********123X".into())
        );
        let d = entry(&l, seq.expect("seq"));
        assert_eq!(
            d.data,
            json!({"action": "read", "decision": "allow",
                   "policies": ["provider.own_branch_members"],
                   "request": "record show member/M1"})
        );
        // The organisation department and the member themselves see it unmasked.
        for user in ["dept", "m1"] {
            let Enforced::Allowed { value, seq } = show(&mut l, user, "member/M1") else {
                panic!("{user}")
            };
            assert_eq!(
                value.fields["id_number"],
                FieldValue::Text("23010219900101123X".into())
            );
            assert_eq!(
                entry(&l, seq.expect("seq")).data["fields"],
                json!(["id_number", "phone"])
            );
        }
        // Nobody else's record for the member, nothing of a member for the sysadmin.
        let before = l.size().expect("size");
        for (user, name, policies) in [
            ("m1", "member/M2", json!(["member.only_own_record"])),
            (
                "sys",
                "member/M1",
                json!(["separation.admins_no_member_data"]),
            ),
        ] {
            let r = show(&mut l, user, name);
            let Enforced::Denied(denial) = r else {
                panic!("{user}: {r:?}")
            };
            let e = entry(&l, denial.seq);
            assert_eq!(e.data["decision"], "deny");
            assert_eq!(e.data["policies"], policies);
        }
        assert_eq!(l.size().expect("size"), before + 2);
    }

    #[test]
    fn fail_unknown_user_and_record_record_nothing_and_disabled_is_a_recorded_deny() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let err = Enforcer::new(&a, l.conn(), Actor::cli("nobody")).err();
        assert!(err.as_ref().is_some_and(EnforceError::is_input));
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("unknown user `nobody`")
        );
        let e = enforcer(&a, &l, "dept");
        let err = e.show(&mut l, "member/M404").err();
        assert!(err.as_ref().is_some_and(EnforceError::is_input));
        assert_eq!(l.size().expect("size"), 1);

        let off = enforcer(&a, &l, "off");
        let Enforced::Denied(d) = off.show(&mut l, "member/M1").expect("show") else {
            panic!("disabled")
        };
        assert_eq!(d.reason, Some(DenyReason::Disabled));
        assert_eq!(last(&l).data["reason"], "disabled");
        // Even an export of nothing is refused.
        let mut out = Vec::new();
        let r = off
            .export(&mut l, RecordKind::Meeting, &mut out, Path::new("-"))
            .expect("export");
        assert!(matches!(r, Enforced::Denied(_)), "{r:?}");
        assert!(out.is_empty());
    }

    /// The embedded policies plus a permit that lets providers export their own branch's
    /// members (without `read_sensitive`).
    fn provider_export_policies() -> Policies {
        Policies::embedded_plus("export.cedar", "@id(\"provider.export_own_branch\")\npermit (principal is User, action == Action::\"export\", resource is Member)\nwhen { principal.role == \"provider\" && principal has org && resource has org && resource.org == principal.org };\n")
    }

    #[test]
    fn export_leaves_out_what_the_reader_may_not_export_and_masks_the_rest() {
        let (_d, mut l) = ledger();
        let a = Authorizer::new(provider_export_policies(), l.conn()).expect("authorizer");
        let mut out = Vec::new();
        let r = enforcer(&a, &l, "p1")
            .export(&mut l, RecordKind::Member, &mut out, Path::new("-"))
            .expect("export");
        let Enforced::Allowed { value, seq } = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            value,
            ExportSummary {
                exported: 1,
                withheld: 1,
                unmasked: 0
            }
        );
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[1].starts_with("M1,甲,,,,2301**********123X,139****0001,"),
            "{text}"
        );
        let d = entry(&l, seq.expect("seq"));
        assert_eq!(d.subject, "org/B1");
        assert_eq!(
            d.data,
            json!({"action": "export", "decision": "allow",
                   "policies": ["provider.export_own_branch"],
                   "request": "record export members", "count": 1})
        );

        // The organisation department exports both, unmasked, and says so.
        let mut out = Vec::new();
        let r = enforcer(&a, &l, "dept")
            .export(&mut l, RecordKind::Member, &mut out, Path::new("-"))
            .expect("export");
        let Enforced::Allowed { value, seq } = r else {
            panic!("{r:?}")
        };
        assert_eq!((value.exported, value.withheld, value.unmasked), (2, 0, 2));
        assert!(String::from_utf8_lossy(&out).contains("230102199102031246"));
        assert_eq!(
            entry(&l, seq.expect("seq")).data["fields"],
            json!(["id_number", "phone"])
        );

        // The system administrator may export no member: refused, nothing written.
        let mut out = Vec::new();
        let r = enforcer(&a, &l, "sys")
            .export(&mut l, RecordKind::Member, &mut out, Path::new("-"))
            .expect("export");
        let Enforced::Denied(d) = r else {
            panic!("{r:?}")
        };
        assert_eq!(d.resource, Resource::Member("M1".into()));
        assert!(out.is_empty());
    }

    #[test]
    fn user_changes_are_decided_as_manage_users_and_committed_with_their_decision() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let add = UserChange::Add(UserFields {
            user_id: "p2".into(),
            name: Some("二".into()),
            role: Some(Role::Provider),
            org_id: Some("B2".into()),
            member_id: None,
        });
        let r = enforcer(&a, &l, "dept")
            .change_user(&mut l, &add)
            .expect("change");
        let Enforced::Denied(d) = r else {
            panic!("{r:?}")
        };
        assert_eq!(d.policies, ["separation.only_sysadmin_manages_users"]);
        let sys = enforcer(&a, &l, "sys");
        let Enforced::Allowed { value, seq } = sys.change_user(&mut l, &add).expect("add") else {
            panic!("sys")
        };
        let created = value.expect("appended");
        assert_eq!(seq, Some(created.seq - 1));
        assert_eq!(entry(&l, created.seq).kind, "user.create");
        assert_eq!(entry(&l, created.seq - 1).data["request"], "user add p2");
        let size = l.size().expect("size");
        let again = sys.change_user(&mut l, &add).err();
        assert_eq!(
            again.map(|e| e.to_string()).as_deref(),
            Some("record `user/p2` already exists")
        );
        assert_eq!(l.size().expect("size"), size);
        let Enforced::Allowed { value, .. } = sys
            .change_user(&mut l, &UserChange::Disable("p2".into()))
            .expect("disable")
        else {
            panic!("disable")
        };
        let e = entry(&l, value.expect("appended").seq);
        assert_eq!(e.kind, "user.update");
        assert_eq!(e.data, json!({"changes": {"disabled": [false, true]}}));
        // Disabling again changes nothing and records nothing.
        let size = l.size().expect("size");
        let r = sys
            .change_user(&mut l, &UserChange::Disable("p2".into()))
            .expect("disable");
        assert!(
            matches!(
                r,
                Enforced::Allowed {
                    value: None,
                    seq: None
                }
            ),
            "{r:?}"
        );
        assert_eq!(l.size().expect("size"), size);
    }

    #[test]
    fn change_targets_of_orgs_and_owned_records() {
        let rec = |kind: RecordKind, j: serde_json::Value| {
            Record::from_fields(
                kind,
                &crate::records::model::fields_from_json(kind, &j).expect("fields"),
            )
            .expect("record")
        };
        let org = rec(
            RecordKind::Org,
            json!({"org_id": "B3", "name": "三", "kind": "branch", "parent_id": "C2"}),
        );
        let none = crate::records::model::Changes::new();
        let row = RowChange {
            record: &org,
            current: None,
            changes: &none,
        };
        assert_eq!(
            change_targets(RecordKind::Org, &row).expect("targets"),
            [(
                Action::Create,
                Target::Decide(Resource::NewOrg {
                    org_id: "B3".into(),
                    kind: "branch".into(),
                    parent_id: Some("C2".into())
                })
            )]
        );
        // Moved from C1 to C2: where it is and where it goes.
        let mut current = org.to_fields();
        current.insert("parent_id", FieldValue::Text("C1".into()));
        let changes = diff(&current, &org.to_fields());
        let row = RowChange {
            record: &org,
            current: Some(&current),
            changes: &changes,
        };
        let targets = change_targets(RecordKind::Org, &row).expect("targets");
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[0],
            (Action::Update, Target::Decide(Resource::Org("B3".into())))
        );
        let dues = rec(
            RecordKind::Dues,
            json!({"dues_id": "M1/2026-03", "member_id": "M1", "month": "2026-03", "amount": 4500}),
        );
        let row = RowChange {
            record: &dues,
            current: None,
            changes: &none,
        };
        assert_eq!(
            change_targets(RecordKind::Dues, &row).expect("targets"),
            [(
                Action::Create,
                Target::Decide(Resource::Member("M1".into()))
            )]
        );
    }
}
