//! Recording access decisions in the ledger (DESIGN §6): every decision on a read, export
//! or change of a party record becomes an `access.decision` entry, and the policy set in
//! use is recorded by a `policy.load` entry whenever it differs from the last one recorded.
//!
//! - [`decide`] asks the policies for one [`AccessRequest`]: an unknown user is an error
//!   (nothing to record about nobody), a disabled account is a deny with reason
//!   [`DenyReason::Disabled`].
//! - [`record_decision`] appends the entry inside the caller's [`WriteTx`], so a decision
//!   and what it allowed commit together; [`decide_and_record_in`] decides and appends in
//!   the caller's transaction, [`decide_and_record`] in its own.
//! - [`ensure_policy_recorded`] appends `policy.load` when the set's SHA-256 differs from
//!   the last recorded one.
//! - [`parse_access_log`] and [`import_access_log`]: a platform access log (JSON Lines of
//!   [`AccessEvent`]) decided line by line and recorded with each event's time, in one
//!   transaction, all or nothing.
//!
//! Entry shapes are specified in `docs/FORMAT.md` §6. This module never records a
//! sensitive value: a decision names the sensitive *fields* shown, never their contents.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Action, Authorizer, Decision, Policies, PolicyError, RequestContext, Resource};
use crate::ledger::entry::{valid_name, EntryError};
use crate::ledger::store::{Appended, LedgerError, LogFilter};
use crate::ledger::{Actor, Ledger, NewEntry, WriteTx};
use crate::records::model::SENSITIVE_FIELDS;

/// Kind of the entry recording one access decision.
pub const DECISION_KIND: &str = "access.decision";
/// Kind of the entry recording the policy set in use.
pub const POLICY_LOAD_KIND: &str = "policy.load";
/// Kind of the entry closing an imported platform access log.
pub const IMPORT_KIND: &str = "access.import";
/// Subject of `policy.load` entries (so the last one is found through the subject index).
pub const POLICY_SUBJECT: &str = "policy";

/// How far in the future an event time may be (clocks of the platform and of djaudit
/// differ a little); a later time is refused.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Longest accepted `request` text, in bytes.
const MAX_REQUEST_LEN: usize = 512;

/// `allow` or `deny`, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The request was allowed.
    Allow,
    /// The request was refused.
    Deny,
}

/// Why a request was denied before the policies could decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// The user's account is disabled.
    Disabled,
    /// The user is not in the projection (imported access logs only).
    UnknownUser,
    /// The record is not in the projection (imported access logs only).
    UnknownResource,
}

impl DenyReason {
    /// The recorded spelling: `disabled`, `unknown_user`, `unknown_resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Disabled => "disabled",
            DenyReason::UnknownUser => "unknown_user",
            DenyReason::UnknownResource => "unknown_resource",
        }
    }
}

/// The `data` of an `access.decision` entry (docs/FORMAT.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionData {
    /// The action asked ([`Action::as_str`]).
    pub action: String,
    /// The answer.
    pub decision: Verdict,
    /// The `@id`s of the policies that decided, sorted; empty for a default deny.
    pub policies: Vec<String>,
    /// What asked, e.g. `record show`, `access check`, `GET /v1/records/member/M1`.
    pub request: String,
    /// When the access happened, if that is not the entry's `ts` (RFC 3339 UTC, ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The sensitive fields shown unmasked, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Number of records covered when one request reads many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Why the request was denied without the policies deciding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenyReason>,
    /// The user whose change was being approved (`approve` requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_actor: Option<String>,
    /// Policies that failed to evaluate (such a failure denies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One request to decide and record.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    /// Who asked: `actor.user` is the principal the policy judges; `actor.service` the
    /// service account that acted for them, if any.
    pub actor: Actor,
    /// The action.
    pub action: Action,
    /// The record or object.
    pub resource: Resource,
    /// What asked (`record show`, `GET /v1/records/…`).
    pub request: String,
    /// When the access happened, when it is not now (an imported access log).
    pub at: Option<DateTime<Utc>>,
    /// Sensitive fields shown unmasked (names from [`SENSITIVE_FIELDS`]).
    pub fields: Vec<String>,
    /// Records covered when one request reads many.
    pub count: Option<u64>,
    /// The author of the change being approved (`approve` requests).
    pub change_actor: Option<String>,
}

impl AccessRequest {
    /// A request by `actor` now, without fields, count or change author.
    pub fn new(actor: Actor, action: Action, resource: Resource, request: &str) -> AccessRequest {
        AccessRequest {
            actor,
            action,
            resource,
            request: request.to_string(),
            at: None,
            fields: Vec::new(),
            count: None,
            change_actor: None,
        }
    }
}

/// A decision and, for a deny the policies did not make, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The policy decision; `allowed` is false whenever `reason` is set.
    pub decision: Decision,
    /// Why the request was denied before the policies decided.
    pub reason: Option<DenyReason>,
}

impl Outcome {
    /// Whether the request was allowed.
    pub fn allowed(&self) -> bool {
        self.decision.allowed && self.reason.is_none()
    }

    /// A deny for `reason`, decided by no policy.
    pub fn refused(reason: DenyReason) -> Outcome {
        Outcome {
            decision: Decision {
                allowed: false,
                policy_ids: Vec::new(),
                errors: Vec::new(),
            },
            reason: Some(reason),
        }
    }
}

/// Errors of deciding, recording and importing.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The policies could not decide the request.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The ledger refused or failed the write.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A field name that is not a sensitive member field.
    #[error("`{0}` is not a sensitive field (expected {fields})", fields = SENSITIVE_FIELDS.join(", "))]
    UnknownField(String),
    /// An event time later than now.
    #[error("time `{0}` is in the future")]
    FutureTime(String),
    /// A `request` text that is empty, too long or has control characters.
    #[error("invalid request text: expected 1 to {MAX_REQUEST_LEN} printable characters")]
    BadRequestText,
    /// A line of an access log is malformed; nothing was recorded.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An access log without any event.
    #[error("the access log has no event")]
    EmptyLog,
}

impl RecordError {
    /// Whether the error is the user's input (exit 2) rather than storage or internal (3).
    pub fn is_input(&self) -> bool {
        match self {
            // A policy directory that cannot be read is one the user named.
            RecordError::Policy(p) => {
                !matches!(p, PolicyError::Projection(_) | PolicyError::Request(_))
            }
            RecordError::Ledger(l) => l.is_input(),
            RecordError::UnknownField(_)
            | RecordError::FutureTime(_)
            | RecordError::BadRequestText
            | RecordError::Line { .. }
            | RecordError::EmptyLog => true,
        }
    }
}

/// An event time in entry form: RFC 3339, UTC, milliseconds, `Z`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time with any offset into UTC.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Decides `req` against the projection `conn`. An unknown user is an error; a disabled
/// account is denied with [`DenyReason::Disabled`] (and the ids of the policies that
/// forbid it, when the policy set has such a forbid).
pub fn decide(
    authorizer: &Authorizer,
    conn: &Connection,
    req: &AccessRequest,
) -> Result<Outcome, PolicyError> {
    let user_id = &req.actor.user;
    let (user, member) = authorizer.read_rows(conn, user_id, &req.resource)?;
    let ctx = RequestContext {
        change_actor: req.change_actor.clone(),
        now: Some(req.at.unwrap_or_else(Utc::now)),
    };
    let decision = authorizer.evaluate_read(
        conn,
        user_id,
        &user,
        member,
        req.action,
        &req.resource,
        &ctx,
    )?;
    if user.disabled {
        // The account is refused whatever the policies say; keep the forbids that agree.
        let policy_ids = if decision.allowed {
            Vec::new()
        } else {
            decision.policy_ids
        };
        return Ok(Outcome {
            decision: Decision {
                allowed: false,
                policy_ids,
                errors: decision.errors,
            },
            reason: Some(DenyReason::Disabled),
        });
    }
    Ok(Outcome {
        decision,
        reason: None,
    })
}

/// The entry recording `outcome` for `req` (checks the request text, fields and time).
pub fn decision_entry(req: &AccessRequest, outcome: &Outcome) -> Result<NewEntry, RecordError> {
    check_request_text(&req.request)?;
    let fields = sensitive_fields(&req.fields)?;
    let at = match &req.at {
        Some(t) => {
            if *t > Utc::now() + MAX_CLOCK_SKEW {
                return Err(RecordError::FutureTime(format_time(t)));
            }
            Some(format_time(t))
        }
        None => None,
    };
    let data = DecisionData {
        action: req.action.as_str().to_string(),
        decision: if outcome.allowed() {
            Verdict::Allow
        } else {
            Verdict::Deny
        },
        policies: outcome.decision.policy_ids.clone(),
        request: req.request.clone(),
        at,
        fields,
        count: req.count,
        reason: outcome.reason,
        change_actor: req.change_actor.clone(),
        errors: outcome.decision.errors.clone(),
    };
    let value =
        serde_json::to_value(&data).map_err(|_| LedgerError::Entry(EntryError::DataNotObject))?;
    Ok(NewEntry::new(
        DECISION_KIND,
        &req.resource.to_string(),
        req.actor.clone(),
        value,
    )
    .map_err(LedgerError::from)?)
}

/// Appends the `access.decision` entry of `outcome` inside the caller's transaction.
pub fn record_decision(
    tx: &mut WriteTx<'_>,
    req: &AccessRequest,
    outcome: &Outcome,
) -> Result<Appended, RecordError> {
    let e = decision_entry(req, outcome)?;
    Ok(tx.append(e)?)
}

/// Decides `req` against the projection inside `tx` and appends the decision there.
pub fn decide_and_record_in(
    tx: &mut WriteTx<'_>,
    authorizer: &Authorizer,
    req: &AccessRequest,
) -> Result<(Outcome, Appended), RecordError> {
    let outcome = decide(authorizer, tx.conn(), req)?;
    let appended = record_decision(tx, req, &outcome)?;
    Ok((outcome, appended))
}

/// Decides `req` and records the decision in a transaction of its own (committed, durable
/// on return).
pub fn decide_and_record(
    ledger: &mut Ledger,
    authorizer: &Authorizer,
    req: &AccessRequest,
) -> Result<(Outcome, Appended), RecordError> {
    let mut tx = ledger.write()?;
    let out = decide_and_record_in(&mut tx, authorizer, req)?;
    tx.commit()?;
    Ok(out)
}

/// The SHA-256 (hex) of the last recorded `policy.load`, if any.
pub fn last_recorded_policy(ledger: &Ledger) -> Result<Option<String>, LedgerError> {
    let filter = LogFilter {
        kind: Some(POLICY_LOAD_KIND.to_string()),
        subject: Some(POLICY_SUBJECT.to_string()),
        ..Default::default()
    };
    let mut last = None;
    ledger.query(&filter, |e| {
        last = e
            .data
            .get("sha256")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(())
    })?;
    Ok(last)
}

/// Appends a `policy.load` entry for `policies` unless the last recorded one has the same
/// SHA-256; returns the entry appended, if any. (Two processes starting at once may both
/// record the same set; the second entry is redundant, never wrong.)
pub fn ensure_policy_recorded(
    ledger: &mut Ledger,
    policies: &Policies,
    actor: Actor,
) -> Result<Option<Appended>, RecordError> {
    let sha = policies.sha256_hex();
    if last_recorded_policy(ledger)?.as_deref() == Some(sha.as_str()) {
        return Ok(None);
    }
    let files: Vec<&str> = policies.files().iter().map(|f| f.name.as_str()).collect();
    let e = NewEntry::new(
        POLICY_LOAD_KIND,
        POLICY_SUBJECT,
        actor,
        json!({"sha256": sha, "files": files, "source": policies.source()}),
    )
    .map_err(LedgerError::from)?;
    Ok(Some(ledger.append(e)?))
}

/// One access of a platform access log (a line of `access import`, JSON Lines):
///
/// ```json
/// {"at":"2026-11-02T09:15:00.000+08:00","user":"u-li","action":"read","resource":"member/M1","request":"GET /members/M1"}
/// ```
///
/// Optional members: `service` (the service account that acted for `user`), `fields`
/// (sensitive fields shown), `count` (records covered). Unknown members are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEvent {
    /// When it happened (any RFC 3339 offset on input; UTC with ms on output).
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub at: DateTime<Utc>,
    /// The end user.
    pub user: String,
    /// The service account that acted for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The action.
    #[serde(serialize_with = "ser_display", deserialize_with = "de_parse")]
    pub action: Action,
    /// The record or object.
    #[serde(serialize_with = "ser_display", deserialize_with = "de_parse")]
    pub resource: Resource,
    /// What the platform served.
    #[serde(default = "default_request")]
    pub request: String,
    /// Sensitive fields shown unmasked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Records covered when one request read many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

fn default_request() -> String {
    "access import".to_string()
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid time `{text}`: expected RFC 3339 such as `2026-11-02T09:15:00+08:00`"
        ))
    })
}

fn ser_display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn de_parse<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: std::str::FromStr<Err = PolicyError>,
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl AccessEvent {
    /// The request this event asks, attributed to its user (via `import`).
    pub fn to_request(&self) -> AccessRequest {
        AccessRequest {
            actor: Actor {
                user: self.user.clone(),
                via: "import".to_string(),
                os_user: None,
                service: self.service.clone(),
            },
            action: self.action,
            resource: self.resource.clone(),
            request: self.request.clone(),
            at: Some(self.at),
            fields: self.fields.clone(),
            count: self.count,
            change_actor: None,
        }
    }

    /// Checks what serde does not: names, request text, fields and time.
    fn check(&self) -> Result<(), String> {
        for name in std::iter::once(&self.user).chain(self.service.as_ref()) {
            if !valid_name(name) {
                return Err(format!(
                    "invalid user `{name}`: expected 1 to 256 printable characters without spaces"
                ));
            }
        }
        check_request_text(&self.request).map_err(|e| e.to_string())?;
        sensitive_fields(&self.fields).map_err(|e| e.to_string())?;
        if self.at > Utc::now() + MAX_CLOCK_SKEW {
            return Err(RecordError::FutureTime(format_time(&self.at)).to_string());
        }
        Ok(())
    }

    /// The event as one JSON Lines line (no line feed).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses a whole access log (JSON Lines; blank lines skipped). The first malformed line
/// is an error naming it; nothing of the log is used then.
pub fn parse_access_log(text: &str) -> Result<Vec<AccessEvent>, RecordError> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| RecordError::Line {
            line: line_no,
            message,
        };
        let e: AccessEvent = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        e.check().map_err(bad)?;
        events.push(e);
    }
    if events.is_empty() {
        return Err(RecordError::EmptyLog);
    }
    Ok(events)
}

/// What an access log import recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// SHA-256 (hex) of the log's bytes.
    pub sha256: String,
    /// Events recorded.
    pub events: u64,
    /// Of them allowed by the policies.
    pub allowed: u64,
    /// Of them denied.
    pub denied: u64,
    /// Of the denied, the events whose user or record djaudit does not know.
    pub unknown: u64,
    /// Seq of the first and last `access.decision` entry.
    pub first_seq: u64,
    /// Seq of the `access.import` entry that closes the import.
    pub last_seq: u64,
}

/// Decides and records a platform access log in one transaction: one `access.decision`
/// per event, in order of event time (ties in file order), then one `access.import` entry
/// by `importer`. All or nothing: a malformed line, or an event whose action does not
/// apply to its resource, records nothing. An event of a user or record the projection
/// does not know is recorded as a deny ([`DenyReason::UnknownUser`],
/// [`DenyReason::UnknownResource`]): an access nobody can account for is what an audit
/// must keep.
pub fn import_access_log(
    ledger: &mut Ledger,
    authorizer: &Authorizer,
    text: &str,
    importer: Actor,
) -> Result<ImportSummary, RecordError> {
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let events = parse_access_log(text)?;
    let mut order: Vec<(usize, &AccessEvent)> = events.iter().enumerate().collect();
    order.sort_by_key(|(i, e)| (e.at, *i));
    let line_of = line_numbers(text);

    let mut tx = ledger.write()?;
    let first_seq = tx.next_seq();
    let (mut allowed, mut denied, mut unknown) = (0u64, 0u64, 0u64);
    for (i, event) in &order {
        let req = event.to_request();
        let outcome = match decide(authorizer, tx.conn(), &req) {
            Ok(o) => o,
            Err(PolicyError::UnknownUser(_)) => Outcome::refused(DenyReason::UnknownUser),
            Err(PolicyError::UnknownResource(_)) => Outcome::refused(DenyReason::UnknownResource),
            Err(
                e @ (PolicyError::Projection(_) | PolicyError::Request(_) | PolicyError::Io { .. }),
            ) => return Err(e.into()),
            // The event itself is wrong (e.g. an action that does not apply to the resource).
            Err(e) => {
                return Err(RecordError::Line {
                    line: line_of.get(*i).copied().unwrap_or(0),
                    message: e.to_string(),
                })
            }
        };
        if outcome.allowed() {
            allowed += 1;
        } else {
            denied += 1;
            if matches!(
                outcome.reason,
                Some(DenyReason::UnknownUser | DenyReason::UnknownResource)
            ) {
                unknown += 1;
            }
        }
        record_decision(&mut tx, &req, &outcome)?;
    }
    let (from, to) = match (order.first(), order.last()) {
        (Some((_, a)), Some((_, b))) => (format_time(&a.at), format_time(&b.at)),
        _ => return Err(RecordError::EmptyLog),
    };
    let closing = NewEntry::new(
        IMPORT_KIND,
        "ledger",
        importer,
        json!({
            "sha256": sha256,
            "events": events.len(),
            "allowed": allowed,
            "denied": denied,
            "from": from,
            "to": to,
            "first_seq": first_seq,
        }),
    )
    .map_err(LedgerError::from)?;
    let last = tx.append(closing)?;
    tx.commit()?;
    Ok(ImportSummary {
        sha256,
        events: events.len() as u64,
        allowed,
        denied,
        unknown,
        first_seq,
        last_seq: last.seq,
    })
}

/// The 1-based line number of each non-blank line, in order (event index → line).
fn line_numbers(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.strip_prefix('\u{feff}').unwrap_or(l).trim().is_empty())
        .map(|(i, _)| i + 1)
        .collect()
}

fn check_request_text(s: &str) -> Result<(), RecordError> {
    if s.is_empty() || s.len() > MAX_REQUEST_LEN || s.chars().any(char::is_control) {
        return Err(RecordError::BadRequestText);
    }
    Ok(())
}

/// The fields, checked, deduplicated and sorted.
fn sensitive_fields(fields: &[String]) -> Result<Vec<String>, RecordError> {
    let mut out = BTreeSet::new();
    for f in fields {
        if !SENSITIVE_FIELDS.contains(&f.as_str()) {
            return Err(RecordError::UnknownField(f.clone()));
        }
        out.insert(f.clone());
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::Entry;

    /// A ledger whose projection has C1 > B1, B2 with members M1 (B1), M2 (B2) and users
    /// of several roles.
    pub(crate) fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tmp");
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .expect("init");
        l.conn()
            .execute_batch(include_str!("../records/schema.sql"))
            .expect("schema");
        l.conn()
            .execute_batch(
                "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES
                   ('C1','C1','committee',NULL,0), ('B1','B1','branch','C1',0),
                   ('B2','B2','branch','C1',0);
                 INSERT INTO member (member_id, org_id, last_seq) VALUES ('M1','B1',0), ('M2','B2',0);
                 INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq) VALUES
                   ('dept','org_dept','C1',NULL,0,0), ('p1','provider','B1',NULL,0,0),
                   ('sys','sysadmin',NULL,NULL,0,0), ('aud','auditor',NULL,NULL,0,0),
                   ('off','provider','B1',NULL,1,0);",
            )
            .expect("rows");
        (dir, l)
    }

    fn authorizer(l: &Ledger) -> Authorizer {
        Authorizer::new(Policies::embedded().expect("policies"), l.conn()).expect("authorizer")
    }

    fn last(l: &Ledger) -> Entry {
        let seq = l.size().expect("size") - 1;
        Entry::parse(l.entry(seq).expect("entry").body.as_bytes()).expect("parse")
    }

    fn req(user: &str, action: Action, resource: &str) -> AccessRequest {
        AccessRequest::new(
            Actor::cli(user),
            action,
            resource.parse().expect("resource"),
            "access check",
        )
    }

    #[test]
    fn allowed_read_is_recorded_with_its_policy() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let mut r = req("dept", Action::Read, "member/M2");
        r.fields = vec!["phone".into(), "id_number".into(), "phone".into()];
        let (o, app) = decide_and_record(&mut l, &a, &r).expect("record");
        assert!(o.allowed());
        let e = last(&l);
        assert_eq!(e.seq, app.seq);
        assert_eq!(e.kind, DECISION_KIND);
        assert_eq!(e.subject, "member/M2");
        assert_eq!(e.actor.user, "dept");
        assert_eq!(
            e.data,
            json!({"action": "read", "decision": "allow", "policies": ["org_dept.read_subtree"],
                   "request": "access check", "fields": ["id_number", "phone"]})
        );
    }

    #[test]
    fn fail_provider_of_another_branch_is_denied_and_recorded() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let mut r = req("p1", Action::Read, "member/M2");
        r.actor.service = Some("platform".into());
        r.at = parse_time("2026-11-02T09:00:00+08:00");
        let (o, _) = decide_and_record(&mut l, &a, &r).expect("record");
        assert!(!o.allowed());
        let e = last(&l);
        assert_eq!(e.actor.service.as_deref(), Some("platform"));
        assert_eq!(e.data["decision"], "deny");
        assert_eq!(e.data["policies"], json!([]));
        assert_eq!(e.data["at"], "2026-11-02T01:00:00.000Z");
    }

    #[test]
    fn fail_disabled_user_is_a_recorded_deny() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let (o, _) =
            decide_and_record(&mut l, &a, &req("off", Action::Read, "member/M1")).expect("record");
        assert!(!o.allowed());
        assert_eq!(o.reason, Some(DenyReason::Disabled));
        let e = last(&l);
        assert_eq!(e.data["reason"], "disabled");
        assert_eq!(e.data["policies"], json!(["account.disabled"]));
    }

    #[test]
    fn fail_unknown_user_records_nothing() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let before = l.size().expect("size");
        let err = decide_and_record(&mut l, &a, &req("nobody", Action::Read, "member/M1"))
            .expect_err("unknown user");
        assert!(err.is_input());
        assert_eq!(err.to_string(), "unknown user `nobody`");
        assert_eq!(l.size().expect("size"), before);
    }

    #[test]
    fn fail_bad_fields_time_and_request_text() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let mut r = req("dept", Action::Read, "member/M1");
        r.fields = vec!["name".into()];
        let err = decide_and_record(&mut l, &a, &r)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("`name` is not a sensitive field")));
        let mut r = req("dept", Action::Read, "member/M1");
        r.at = Some(Utc::now() + chrono::Duration::hours(1));
        assert!(matches!(
            decide_and_record(&mut l, &a, &r),
            Err(RecordError::FutureTime(_))
        ));
        let mut r = req("dept", Action::Read, "member/M1");
        r.request = "a\nb".into();
        assert!(matches!(
            decide_and_record(&mut l, &a, &r),
            Err(RecordError::BadRequestText)
        ));
        assert_eq!(l.size().expect("size"), 1);
    }

    #[test]
    fn decision_and_caller_writes_commit_together() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        {
            let mut tx = l.write().expect("tx");
            let (o, app) =
                decide_and_record_in(&mut tx, &a, &req("p1", Action::Update, "member/M1"))
                    .expect("record");
            assert!(o.allowed());
            assert_eq!(app.seq, 1);
            // Dropped without commit: rolled back.
        }
        assert_eq!(l.size().expect("size"), 1);
    }

    #[test]
    fn policy_load_is_recorded_once_per_set() {
        let (_d, mut l) = ledger();
        let p = Policies::embedded().expect("policies");
        let first = ensure_policy_recorded(&mut l, &p, Actor::cli("sec")).expect("record");
        assert!(first.is_some());
        let e = last(&l);
        assert_eq!(e.kind, POLICY_LOAD_KIND);
        assert_eq!(e.subject, POLICY_SUBJECT);
        assert_eq!(e.data["sha256"], p.sha256_hex());
        assert_eq!(e.data["source"], "embedded");
        assert_eq!(
            e.data["files"],
            json!([
                "admin.cedar",
                "records.cedar",
                "schema.cedarschema",
                "separation.cedar"
            ])
        );
        assert!(ensure_policy_recorded(&mut l, &p, Actor::cli("sec"))
            .expect("again")
            .is_none());
        // A different set is recorded; going back to the first is recorded again.
        let mut files: Vec<crate::policy::PolicyFile> = p.files().to_vec();
        if let Some(f) = files.iter_mut().find(|f| f.name == "admin.cedar") {
            f.text.push_str("\n// changed\n");
        }
        let q = Policies::from_files(files).expect("valid");
        assert!(ensure_policy_recorded(&mut l, &q, Actor::cli("sec"))
            .expect("q")
            .is_some());
        assert_eq!(last(&l).data["source"], "files");
        assert!(ensure_policy_recorded(&mut l, &p, Actor::cli("sec"))
            .expect("p")
            .is_some());
        assert_eq!(
            last_recorded_policy(&l).expect("last").as_deref(),
            Some(p.sha256_hex().as_str())
        );
    }

    #[test]
    fn policy_load_lookup_uses_the_subject_index() {
        let (_d, l) = ledger();
        let plan: String = l
            .conn()
            .query_row(
                "EXPLAIN QUERY PLAN SELECT seq, body, leaf_hash FROM entry WHERE seq >= ?1 AND seq < ?2 AND kind = ?3 AND subject = ?4 ORDER BY seq",
                rusqlite::params![0, i64::MAX, POLICY_LOAD_KIND, POLICY_SUBJECT],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("entry_subject"), "{plan}");
    }

    const LOG: &str = concat!(
        r#"{"at":"2026-11-02T09:05:00+08:00","user":"p1","action":"read","resource":"member/M2","request":"GET /m/M2"}"#,
        "\n\n",
        r#"{"at":"2026-11-02T09:00:00+08:00","user":"dept","service":"platform","action":"export","resource":"org/B1","count":1}"#,
        "\n",
        r#"{"at":"2026-11-02T09:01:00Z","user":"ghost","action":"read","resource":"member/M1"}"#,
        "\n",
        r#"{"at":"2026-11-02T09:02:00Z","user":"dept","action":"read","resource":"member/M404"}"#,
        "\n",
    );

    #[test]
    fn import_records_each_event_at_its_time_in_time_order() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let s = import_access_log(&mut l, &a, LOG, Actor::cli("officer")).expect("import");
        assert_eq!((s.events, s.allowed, s.denied, s.unknown), (4, 1, 3, 2));
        assert_eq!((s.first_seq, s.last_seq), (1, 5));
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry::parse(l.entry(i).expect("e").body.as_bytes()).expect("parse"))
            .collect();
        let ats: Vec<&str> = entries[..4]
            .iter()
            .map(|e| e.data["at"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            ats,
            [
                "2026-11-02T01:00:00.000Z",
                "2026-11-02T01:05:00.000Z",
                "2026-11-02T09:01:00.000Z",
                "2026-11-02T09:02:00.000Z"
            ]
        );
        assert_eq!(entries[0].actor.service.as_deref(), Some("platform"));
        assert_eq!(entries[0].actor.via, "import");
        assert_eq!(entries[0].data["count"], 1);
        assert_eq!(entries[0].data["request"], "access import");
        assert_eq!(entries[1].data["decision"], "deny");
        assert_eq!(entries[2].data["reason"], "unknown_user");
        assert_eq!(entries[3].data["reason"], "unknown_resource");
        assert_eq!(entries[4].kind, IMPORT_KIND);
        assert_eq!(entries[4].actor.user, "officer");
        assert_eq!(entries[4].data["sha256"], s.sha256);
        assert_eq!(entries[4].data["events"], 4);
    }

    #[test]
    fn fail_import_is_all_or_nothing() {
        let (_d, mut l) = ledger();
        let a = authorizer(&l);
        let cases = [
            (format!("{LOG}{{\"at\":\"yesterday\",\"user\":\"p1\",\"action\":\"read\",\"resource\":\"member/M1\"}}\n"), "line 6: invalid time `yesterday`"),
            (format!("{LOG}{{\"at\":\"2026-11-02T09:00:00Z\",\"user\":\"p1\",\"action\":\"peek\",\"resource\":\"member/M1\"}}\n"), "line 6: unknown action `peek`"),
            (format!("{LOG}{{\"at\":\"2026-11-02T09:00:00Z\",\"user\":\"p1\",\"action\":\"read\",\"resource\":\"member/M1\",\"x\":1}}\n"), "line 6: unknown field `x`"),
            (format!("{LOG}{{\"at\":\"2026-11-02T09:00:00Z\",\"user\":\"p 1\",\"action\":\"read\",\"resource\":\"member/M1\"}}\n"), "line 6: invalid user `p 1`"),
            // Decided only inside the transaction: the action does not apply to the resource.
            (format!("{LOG}{{\"at\":\"2026-11-02T09:00:00Z\",\"user\":\"p1\",\"action\":\"verify\",\"resource\":\"member/M1\"}}\n"), "line 6: action `verify` does not apply to `member/M1`"),
            ("\n\n".to_string(), "the access log has no event"),
        ];
        for (text, want) in cases {
            let err = import_access_log(&mut l, &a, &text, Actor::cli("officer"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with(want), "{err}");
            assert_eq!(l.size().expect("size"), 1, "{want}");
        }
    }

    #[test]
    fn events_round_trip_as_lines() {
        let events = parse_access_log(LOG).expect("parse");
        assert_eq!(events.len(), 4);
        let text: String = events.iter().map(|e| e.to_line() + "\n").collect();
        assert_eq!(parse_access_log(&text).expect("again"), events);
        assert!(text.starts_with(r#"{"at":"2026-11-02T01:05:00.000Z","user":"p1","action":"read","resource":"member/M2","request":"GET /m/M2"}"#));
    }
}
