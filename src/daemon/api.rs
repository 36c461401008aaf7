//! The HTTP/JSON API, version 1 (docs/API.md): routes, extractors, handlers and errors.
//!
//! Every `/v1` route but `/v1/health` needs a bearer token. Every read or change of a party
//! record, and every read of the ledger's log, is decided by the access policy for the end
//! user and the decision is appended (`access.decision`) before the answer is given; a
//! refused change leaves only its decision. Writes go to the single writer
//! ([`super::writer`]); other reads use the read pool on the blocking threads.
//!
//! Errors are JSON `{"error": code, "detail": text}`. Details never carry a record value, a
//! token or a request body: parse errors name the field and position, not the value.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, AuthFailure};
use super::writer::{JobCtx, JobError, WriteError};
use super::AppState;
use crate::ledger::entry::{hex_hash, is_reserved_kind, now_ts, valid_name, valid_ts};
use crate::ledger::store::LogFilter;
use crate::ledger::{Actor, LedgerError, NewEntry, WriteTx};
use crate::policy::record::{self, AccessRequest, DenyReason, Outcome};
use crate::policy::{Action, PolicyError, Resource};
use crate::records::mask::mask_json_in_place;
use crate::records::model::{diff, fields_from_json, fields_to_json, is_sensitive};
use crate::records::projection::{self, RecordError};
use crate::records::{Record, RecordKind};

/// Most entries one `GET /v1/log` returns.
pub const MAX_LOG_LIMIT: usize = 1000;
/// Entries `GET /v1/log` returns without `limit`.
pub const DEFAULT_LOG_LIMIT: usize = 100;

/// The header through which a service account names the end user it acts for.
pub const ON_BEHALF_OF: &str = "x-on-behalf-of";

// ---------------------------------------------------------------------------------------
// Errors

/// An error answer: status, stable code, one line of detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }
    pub fn malformed(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", detail)
    }
    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry against the next instance",
        )
    }
    pub fn timeout(secs: f64) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {secs}s; a change may or may not have been written, check the log"),
        )
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.code == "internal" {
            tracing::error!(detail = %self.detail, "internal error");
        }
        (
            self.status,
            Json(json!({"error": self.code, "detail": self.detail})),
        )
            .into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::Input(m) => ApiError::malformed(m),
            JobError::NotFound(m) => ApiError::not_found(m),
            JobError::Conflict(m) => ApiError::conflict(m),
            JobError::Storage(m) => ApiError::internal(m),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Job(j) => j.into(),
            WriteError::Storage(m) => ApiError::internal(format!("storage: {m}")),
            WriteError::Closed => ApiError::shutting_down(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::UnknownSeq { .. } => ApiError::not_found(e.to_string()),
            e if e.is_input() => ApiError::malformed(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON parse error without any value from the body in it.
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let what = if msg.starts_with("unknown field") || msg.starts_with("missing field") {
        msg.split(" at line").next().unwrap_or("").to_owned()
    } else {
        match e.classify() {
            serde_json::error::Category::Syntax => "malformed JSON".to_owned(),
            serde_json::error::Category::Eof => "truncated JSON".to_owned(),
            _ => "the body does not have the expected fields and types".to_owned(),
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

// ---------------------------------------------------------------------------------------
// Extractors

/// A JSON request body; errors become [`ApiError`]s (413 past the body limit).
pub struct JsonBody<T>(pub T);

#[axum::async_trait]
impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.body_text())
                } else {
                    ApiError::malformed(e.body_text())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::malformed(json_error(&e)))
    }
}

/// Query parameters; errors become [`ApiError`]s.
pub struct Params<T>(pub T);

#[axum::async_trait]
impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Params(t))
            .map_err(|e: QueryRejection| ApiError::malformed(e.body_text()))
    }
}

/// Path parameters; errors become [`ApiError`]s.
pub struct PathParams<T>(pub T);

#[axum::async_trait]
impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|e: PathRejection| ApiError::malformed(e.body_text()))
    }
}

/// Where the guard learns the caller's name for its log line.
#[derive(Clone, Default)]
struct UserSlot(Arc<Mutex<Option<String>>>);

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user the policy judges: the token's user, or the end user a service acts for.
    pub user: String,
    /// The service account acting for `user`, if any.
    pub service: Option<String>,
    pub token_id: i64,
}

impl Caller {
    /// The actor of entries this caller causes.
    pub fn actor(&self) -> Actor {
        Actor {
            user: self.user.clone(),
            via: "api".to_owned(),
            os_user: None,
            service: self.service.clone(),
        }
    }
}

/// Reads the bearer token and `X-On-Behalf-Of`, and checks the token.
async fn authenticate(headers: &HeaderMap, state: &AppState) -> ApiResult<Caller> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized(AuthFailure::Missing.to_string()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    let hash = auth::hash_token(token);
    let info = match state.tokens.get(&hash) {
        Some(info) => info,
        None => {
            let now = now_ts();
            // One indexed point read: done on this worker rather than the blocking pool.
            let (info, now) = state
                .reads
                .read_short(move |l| Ok((auth::authenticate_hash(l.conn(), &hash, &now)?, now)))
                .await?;
            let info = info.map_err(|f| ApiError::unauthorized(f.to_string()))?;
            state.tokens.put(hash, &info, &now);
            info
        }
    };
    match headers.get(ON_BEHALF_OF) {
        None => Ok(Caller {
            user: info.user,
            service: None,
            token_id: info.id,
        }),
        Some(v) => {
            let end_user = v
                .to_str()
                .ok()
                .filter(|u| valid_name(u))
                .ok_or_else(|| ApiError::malformed("invalid `X-On-Behalf-Of` user name"))?;
            if !info.service {
                return Err(ApiError::forbidden(format!(
                    "token {} is not a service token and cannot act on behalf of another user",
                    info.id
                )));
            }
            Ok(Caller {
                user: end_user.to_owned(),
                service: Some(info.user),
                token_id: info.id,
            })
        }
    }
}

#[axum::async_trait]
impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Caller> {
        let caller = authenticate(&parts.headers, state).await?;
        if let Some(slot) = parts.extensions.get::<UserSlot>() {
            if let Ok(mut s) = slot.0.lock() {
                *s = Some(match &caller.service {
                    Some(svc) => format!("{}(via {svc})", caller.user),
                    None => caller.user.clone(),
                });
            }
        }
        Ok(caller)
    }
}

// ---------------------------------------------------------------------------------------
// Router and guard

/// The API router with its guard (concurrency cap, body limit by `Content-Length`, request
/// timeout, 503 while shutting down, request log and metrics).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = usize::try_from(state.config.body_limit).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/entries", post(post_entry))
        .route("/v1/records/:kind", post(post_records))
        .route("/v1/records/:kind/*id", get(get_record))
        .route("/v1/access/check", post(access_check))
        .route("/v1/log", get(get_log))
        .route("/v1/checkpoint", get(get_checkpoint))
        .route("/v1/proof/inclusion", get(proof_inclusion))
        .route("/v1/proof/consistency", get(proof_consistency))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Counts a request in flight while it lives.
struct InFlight<'a>(&'a AppState);

impl<'a> InFlight<'a> {
    fn new(s: &'a AppState) -> InFlight<'a> {
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn guard(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let slot = UserSlot::default();
    req.extensions_mut().insert(slot.clone());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let response = if s.is_draining() {
        ApiError::shutting_down().into_response()
    } else if declared.is_some_and(|n| n > s.config.body_limit) {
        // Refused from the header alone: the body is never read.
        ApiError::too_large(s.config.body_limit).into_response()
    } else {
        let _in_flight = InFlight::new(&s);
        let timeout = s.config.request_timeout;
        let work = async {
            match s.limit.acquire().await {
                Ok(_permit) => next.run(req).await,
                Err(_) => ApiError::shutting_down().into_response(),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => ApiError::timeout(timeout.as_secs_f64()).into_response(),
        }
    };
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    s.metrics.request(status, elapsed.as_secs_f64());
    let user = slot
        .0
        .lock()
        .ok()
        .and_then(|u| u.clone())
        .unwrap_or_default();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    // Every success that writes or reads a record is on the ledger already: its line is for
    // debugging. Refusals are what an operator watches for; failures are errors.
    match status {
        500.. => {
            tracing::error!(method = %method, path = %path, status, latency_ms, user = %user, "request")
        }
        400.. => {
            tracing::info!(method = %method, path = %path, status, latency_ms, user = %user, "request")
        }
        _ => {
            tracing::debug!(method = %method, path = %path, status, latency_ms, user = %user, "request")
        }
    }
    response
}

// ---------------------------------------------------------------------------------------
// Decisions

/// A recorded access decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Why the request was refused without the policies deciding: `disabled` or
    /// `unknown_user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The seq of the `access.decision` entry.
    pub seq: u64,
}

/// Decides a request against the projection inside `w`. A user the projection does not
/// know is refused with reason `unknown_user` (the token that asked is real, so the attempt
/// is recorded). Nothing can be decided about a resource that does not exist (`NotFound`)
/// or an action that does not apply to it (`Input`).
pub fn decide(w: &WriteTx<'_>, ctx: &JobCtx<'_>, req: &AccessRequest) -> Result<Outcome, JobError> {
    match record::decide(ctx.authorizer, w.conn(), req) {
        Ok(o) => Ok(o),
        Err(PolicyError::UnknownUser(_)) => Ok(Outcome::refused(DenyReason::UnknownUser)),
        Err(e @ PolicyError::UnknownResource(_)) => Err(JobError::NotFound(e.to_string())),
        Err(e @ (PolicyError::NotApplicable { .. } | PolicyError::BadResource(_))) => {
            Err(JobError::Input(e.to_string()))
        }
        Err(e) => Err(JobError::Storage(e.to_string())),
    }
}

/// Appends the `access.decision` entry of `outcome` in `w`'s transaction.
pub fn record_decision(
    w: &mut WriteTx<'_>,
    req: &AccessRequest,
    outcome: &Outcome,
) -> Result<Verdict, JobError> {
    let a = record::record_decision(w, req, outcome).map_err(|e| match e {
        record::RecordError::Ledger(l) => JobError::from(l),
        e if e.is_input() => JobError::Input(e.to_string()),
        e => JobError::Storage(e.to_string()),
    })?;
    Ok(Verdict {
        allowed: outcome.allowed(),
        policy_ids: outcome.decision.policy_ids.clone(),
        errors: outcome.decision.errors.clone(),
        reason: outcome.reason.map(DenyReason::as_str),
        seq: a.seq,
    })
}

/// Decides `action` on `resource` for the caller and records the decision.
pub fn decide_and_record(
    w: &mut WriteTx<'_>,
    ctx: &JobCtx<'_>,
    actor: &Actor,
    action: Action,
    resource: &Resource,
    request: &str,
) -> Result<Verdict, JobError> {
    let req = AccessRequest::new(actor.clone(), action, resource.clone(), request);
    let outcome = decide(w, ctx, &req)?;
    record_decision(w, &req, &outcome)
}

fn denied(user: &str, action: Action, resource: &Resource, v: &Verdict) -> ApiError {
    let why = match v.reason {
        Some("unknown_user") => ": unknown user",
        Some("disabled") => ": the account is disabled",
        _ => "",
    };
    ApiError::forbidden(format!(
        "user `{user}` may not {action} `{resource}`{why} (decision recorded as entry {})",
        v.seq
    ))
}

// ---------------------------------------------------------------------------------------
// Handlers

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRequest {
    kind: String,
    subject: String,
    data: Value,
}

async fn post_entry(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(req): JsonBody<EntryRequest>,
) -> ApiResult<Response> {
    if is_reserved_kind(&req.kind) {
        return Err(ApiError::malformed(format!(
            "kind `{}` is written by djaudit itself; use the endpoint for it",
            req.kind
        )));
    }
    let entry = NewEntry::new(&req.kind, &req.subject, caller.actor(), req.data)
        .map_err(|e| ApiError::malformed(e.to_string()))?;
    let a = s
        .writer
        .submit(move |w, _| Ok(w.append_ref(&entry)?))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Appended {
            seq: a.seq,
            leaf_hash: hex_hash(&a.leaf_hash),
            ts: a.ts,
        }),
    )
        .into_response())
}

/// The answer to an append.
#[derive(serde::Serialize)]
struct Appended {
    seq: u64,
    leaf_hash: String,
    ts: String,
}

/// Most record changes in one request.
pub const MAX_BATCH_CHANGES: usize = 1000;

/// What a change asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    /// Create the record, or update it to exactly this content.
    Upsert,
    /// Create; 409 if it exists.
    Create,
    /// Update to exactly this content; 404 if it does not exist.
    Update,
    /// Remove; 404 if it does not exist.
    Remove,
}

/// One change as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    #[serde(default = "default_op")]
    op: Op,
    /// The whole record in flat canonical form (create, update, upsert).
    record: Option<Value>,
    /// The record's id (remove).
    id: Option<String>,
    /// The `last_seq` the sender last saw; 409 if the record changed since.
    expect_seq: Option<u64>,
}

fn default_op() -> Op {
    Op::Upsert
}

/// A single change or `{"batch": [change, …]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RecordsRequest {
    Batch { batch: Vec<ChangeRequest> },
    One(ChangeRequest),
}

/// A change after parsing: the record (validated) or the id to remove.
#[derive(Clone)]
struct Change {
    op: Op,
    id: String,
    record: Option<Record>,
    expect_seq: Option<u64>,
}

fn record_error(e: RecordError) -> JobError {
    match e {
        RecordError::Exists(_) => JobError::Conflict(e.to_string()),
        RecordError::NotFound(_) => JobError::NotFound(e.to_string()),
        e if e.is_input() => JobError::Input(e.to_string()),
        e => JobError::Storage(e.to_string()),
    }
}

fn parse_change(kind: RecordKind, i: usize, c: ChangeRequest) -> ApiResult<Change> {
    let at = |m: String| ApiError::malformed(format!("change {i}: {m}"));
    match c.op {
        Op::Remove => {
            if c.record.is_some() {
                return Err(at("`remove` takes `id`, not `record`".into()));
            }
            let id = c.id.ok_or_else(|| at("`remove` needs `id`".into()))?;
            if id.is_empty() || id.len() > 256 {
                return Err(at("invalid `id`".into()));
            }
            Ok(Change {
                op: c.op,
                id,
                record: None,
                expect_seq: c.expect_seq,
            })
        }
        _ => {
            if c.id.is_some() {
                return Err(at("`id` goes with `remove`; send the whole `record`".into()));
            }
            let json = c.record.ok_or_else(|| at("missing `record`".into()))?;
            let fields = fields_from_json(kind, &json).map_err(|e| at(e.to_string()))?;
            let record = Record::from_fields(kind, &fields).map_err(|e| at(e.to_string()))?;
            Ok(Change {
                op: c.op,
                id: record.id(),
                record: Some(record),
                expect_seq: c.expect_seq,
            })
        }
    }
}

/// The decisions a change needs: the action on the record where it is (or will be), and
/// for a move, the action on where it goes.
fn requests_for(
    kind: RecordKind,
    id: &str,
    before: Option<&crate::records::Fields>,
    after: Option<&Record>,
) -> Result<Vec<(Action, Resource)>, JobError> {
    let text = |f: Option<&crate::records::Fields>, name: &str| {
        f.and_then(|f| f.get(name))
            .and_then(|v| v.as_text())
            .map(str::to_owned)
    };
    let after_fields = after.map(Record::to_fields);
    let action = match (before, after) {
        (None, Some(_)) => Action::Create,
        (Some(_), Some(_)) => Action::Update,
        (Some(_), None) => Action::Remove,
        (None, None) => return Ok(Vec::new()),
    };
    let subject = projection::subject(kind, id);
    let existing = || -> Result<Resource, JobError> {
        subject
            .parse::<Resource>()
            .map_err(|e| JobError::Input(e.to_string()))
    };
    Ok(match kind {
        RecordKind::User => vec![(Action::ManageUsers, Resource::System)],
        RecordKind::Member => {
            let new_org = text(after_fields.as_ref(), "org_id").unwrap_or_default();
            let placed = Resource::NewMember {
                member_id: id.to_owned(),
                org_id: new_org.clone(),
            };
            match action {
                Action::Create => vec![(action, placed)],
                Action::Update if text(before, "org_id").unwrap_or_default() != new_org => {
                    vec![(action, existing()?), (action, placed)]
                }
                _ => vec![(action, existing()?)],
            }
        }
        RecordKind::Org => {
            let placed = || Resource::NewOrg {
                org_id: id.to_owned(),
                kind: text(after_fields.as_ref(), "kind").unwrap_or_default(),
                parent_id: text(after_fields.as_ref(), "parent_id"),
            };
            match action {
                Action::Create => vec![(action, placed())],
                Action::Update
                    if text(before, "parent_id") != text(after_fields.as_ref(), "parent_id") =>
                {
                    vec![(action, existing()?), (action, placed())]
                }
                _ => vec![(action, existing()?)],
            }
        }
        // Dues and transfers belong to their member, meetings to their org.
        RecordKind::Dues | RecordKind::Transfer | RecordKind::Meeting => {
            vec![(action, existing()?)]
        }
    })
}

/// The outcome of one change.
#[derive(Debug, Clone, serde::Serialize)]
struct ChangeResult {
    subject: String,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

enum ChangeOutcome {
    Denied(Action, Resource, Verdict),
    Done(Vec<ChangeResult>, Vec<u64>),
}

/// Runs the changes of one request in the writer's transaction: every check first, then
/// every decision (recorded), then — only if all are allowed — every change.
fn apply_changes(
    w: &mut WriteTx<'_>,
    ctx: &mut JobCtx<'_>,
    kind: RecordKind,
    changes: &[Change],
    actor: &Actor,
    request: &str,
) -> Result<ChangeOutcome, JobError> {
    // 1. Checks against the current projection; nothing is written yet.
    let mut plans = Vec::with_capacity(changes.len());
    for c in changes {
        let subject = projection::subject(kind, &c.id);
        let current = projection::get(w.conn(), kind, &c.id).map_err(record_error)?;
        match (&current, c.op) {
            (Some(_), Op::Create) => {
                return Err(JobError::Conflict(format!(
                    "record `{subject}` already exists"
                )))
            }
            (None, Op::Update | Op::Remove) => {
                return Err(JobError::NotFound(format!("no record `{subject}`")))
            }
            _ => {}
        }
        if let Some(want) = c.expect_seq {
            let have = current.as_ref().map(|r| r.last_seq);
            if have != Some(want) {
                return Err(JobError::Conflict(format!(
                    "record `{subject}` was last written by entry {}, not {want}",
                    have.map_or_else(|| "none".to_owned(), |s| s.to_string())
                )));
            }
        }
        let changed = match (&current, &c.record) {
            (Some(cur), Some(rec)) => !diff(&cur.fields, &rec.to_fields()).is_empty(),
            _ => true,
        };
        let requests = if changed {
            requests_for(
                kind,
                &c.id,
                current.as_ref().map(|r| &r.fields),
                c.record.as_ref(),
            )?
        } else {
            Vec::new()
        };
        plans.push((subject, current, changed, requests));
    }
    // 2. Decisions, each recorded; a refusal stops before any change.
    let mut decisions = Vec::new();
    for (_, _, _, requests) in &plans {
        for (action, resource) in requests {
            let v = decide_and_record(w, ctx, actor, *action, resource, request)?;
            decisions.push(v.seq);
            if !v.allowed {
                return Ok(ChangeOutcome::Denied(*action, resource.clone(), v));
            }
        }
    }
    // 3. The changes, each with its projection row.
    let mut results = Vec::with_capacity(plans.len());
    for ((subject, current, changed, _), c) in plans.into_iter().zip(changes) {
        let (result, seq) = match (current, &c.record) {
            (_, _) if !changed => ("unchanged", None),
            (None, Some(rec)) => (
                "created",
                Some(projection::create(w, rec, actor).map_err(record_error)?.seq),
            ),
            (Some(cur), Some(rec)) => {
                let changes = diff(&cur.fields, &rec.to_fields());
                let a =
                    projection::update(w, kind, &c.id, &changes, actor).map_err(record_error)?;
                ("updated", a.map(|a| a.seq))
            }
            (Some(_), None) => (
                "removed",
                Some(
                    projection::remove(w, kind, &c.id, actor)
                        .map_err(record_error)?
                        .seq,
                ),
            ),
            (None, None) => return Err(JobError::NotFound(format!("no record `{subject}`"))),
        };
        if seq.is_some() && kind == RecordKind::Org {
            ctx.orgs_changed = true;
        }
        results.push(ChangeResult {
            subject,
            result,
            seq,
        });
    }
    Ok(ChangeOutcome::Done(results, decisions))
}

async fn post_records(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    PathParams(kind): PathParams<String>,
    JsonBody(req): JsonBody<RecordsRequest>,
) -> ApiResult<Response> {
    let kind: RecordKind = kind.parse().map_err(ApiError::not_found)?;
    let requests = match req {
        RecordsRequest::One(c) => vec![c],
        RecordsRequest::Batch { batch } => batch,
    };
    if requests.is_empty() || requests.len() > MAX_BATCH_CHANGES {
        return Err(ApiError::malformed(format!(
            "a batch has 1 to {MAX_BATCH_CHANGES} changes"
        )));
    }
    let mut changes = Vec::with_capacity(requests.len());
    let mut seen = std::collections::HashSet::new();
    for (i, c) in requests.into_iter().enumerate() {
        let c = parse_change(kind, i, c)?;
        if !seen.insert(c.id.clone()) {
            return Err(ApiError::malformed(format!(
                "change {i}: record `{}` appears twice in the batch",
                projection::subject(kind, &c.id)
            )));
        }
        changes.push(c);
    }
    let actor = caller.actor();
    let request = format!("POST /v1/records/{kind}");
    let outcome = s
        .writer
        .submit(move |w, ctx| apply_changes(w, ctx, kind, &changes, &actor, &request))
        .await?;
    match outcome {
        ChangeOutcome::Denied(action, resource, v) => {
            Err(denied(&caller.user, action, &resource, &v))
        }
        ChangeOutcome::Done(results, decisions) => {
            let status = if results.iter().any(|r| r.result == "created") {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(json!({"results": results, "decisions": decisions})),
            )
                .into_response())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessCheckBody {
    action: String,
    resource: String,
}

async fn access_check(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(req): JsonBody<AccessCheckBody>,
) -> ApiResult<Json<Verdict>> {
    let action: Action = req
        .action
        .parse()
        .map_err(|e: PolicyError| ApiError::malformed(e.to_string()))?;
    let resource: Resource = req
        .resource
        .parse()
        .map_err(|e: PolicyError| ApiError::malformed(e.to_string()))?;
    let actor = caller.actor();
    let v = s
        .writer
        .submit(move |w, ctx| {
            decide_and_record(w, ctx, &actor, action, &resource, "POST /v1/access/check")
        })
        .await?;
    Ok(Json(v))
}

/// A record as a reader gets it.
#[derive(Debug, serde::Serialize)]
struct RecordView {
    kind: &'static str,
    id: String,
    masked: bool,
    record: Value,
    last_seq: u64,
    decision_seq: u64,
}

enum ReadOutcome {
    Denied(Verdict),
    Record(RecordView),
}

async fn get_record(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    PathParams((kind, id)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    let kind: RecordKind = kind.parse().map_err(ApiError::not_found)?;
    let subject = format!("{}/{id}", kind.name());
    let (action, resource) = match kind {
        RecordKind::User => (Action::ManageUsers, Resource::System),
        _ => (
            Action::Read,
            subject
                .parse::<Resource>()
                .map_err(|e| ApiError::malformed(e.to_string()))?,
        ),
    };
    let has_sensitive = kind.fields().iter().any(|f| f.sensitive());
    let actor = caller.actor();
    let request = format!("GET /v1/records/{subject}");
    let outcome = s
        .writer
        .submit(move |w, ctx| {
            let Some(row) = projection::get(w.conn(), kind, &id).map_err(record_error)? else {
                return Err(JobError::NotFound(format!("no record `{kind}/{id}`")));
            };
            let (mut record, last_seq) = (fields_to_json(&row.fields), row.last_seq);
            let mut req = AccessRequest::new(actor.clone(), action, resource.clone(), &request);
            let read = decide(w, ctx, &req)?;
            if !read.allowed() {
                return Ok(ReadOutcome::Denied(record_decision(w, &req, &read)?));
            }
            let mut masked = false;
            if has_sensitive {
                let sv =
                    decide_and_record(w, ctx, &actor, Action::ReadSensitive, &resource, &request)?;
                if sv.allowed {
                    // The read's decision names the sensitive fields it shows.
                    req.fields = row
                        .fields
                        .keys()
                        .filter(|f| is_sensitive(f))
                        .map(|f| (*f).to_owned())
                        .collect();
                } else {
                    mask_json_in_place(&mut record);
                    masked = true;
                }
            }
            let v = record_decision(w, &req, &read)?;
            Ok(ReadOutcome::Record(RecordView {
                kind: kind.name(),
                id: id.clone(),
                masked,
                record,
                last_seq,
                decision_seq: v.seq,
            }))
        })
        .await?;
    match outcome {
        ReadOutcome::Denied(v) => Err(denied(
            &caller.user,
            action,
            &subject_resource(kind, &subject),
            &v,
        )),
        ReadOutcome::Record(view) => Ok(Json(view).into_response()),
    }
}

fn subject_resource(kind: RecordKind, subject: &str) -> Resource {
    match kind {
        RecordKind::User => Resource::System,
        _ => subject.parse().unwrap_or(Resource::System),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    since: Option<String>,
    until: Option<String>,
    kind: Option<String>,
    subject: Option<String>,
    actor: Option<String>,
    /// First seq to return (paging: the `next` of the previous page).
    from: Option<u64>,
    limit: Option<usize>,
}

/// Normalises a `since`/`until` value (a date, an RFC 3339 time or an entry timestamp).
fn time_bound(value: &str, end_of_day: bool) -> ApiResult<String> {
    if chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
        return Ok(if end_of_day {
            format!("{value}T23:59:59.999Z")
        } else {
            format!("{value}T00:00:00.000Z")
        });
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string());
    }
    if valid_ts(value) {
        return Ok(value.to_owned());
    }
    Err(ApiError::malformed(format!(
        "invalid time `{value}`: expected a date `2026-11-01` or a time `2026-11-01T08:00:00Z`"
    )))
}

async fn get_log(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    Params(q): Params<LogQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT);
    if limit == 0 || limit > MAX_LOG_LIMIT {
        return Err(ApiError::malformed(format!(
            "invalid `limit`: expected 1 to {MAX_LOG_LIMIT}"
        )));
    }
    let filter = LogFilter {
        since: q
            .since
            .as_deref()
            .map(|v| time_bound(v, false))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|v| time_bound(v, true))
            .transpose()?,
        kind: q.kind,
        subject: q.subject,
        actor: q.actor,
        from_seq: q.from,
        to_seq: None,
    };
    let actor = caller.actor();
    let v = s
        .writer
        .submit(move |w, ctx| {
            decide_and_record(
                w,
                ctx,
                &actor,
                Action::Read,
                &Resource::Ledger,
                "GET /v1/log",
            )
        })
        .await?;
    if !v.allowed {
        return Err(denied(&caller.user, Action::Read, &Resource::Ledger, &v));
    }
    let (entries, next) = s
        .reads
        .read(move |l| {
            let mut out = Vec::new();
            let mut next = None;
            // Stops the scan after one entry past the page, which gives `next`.
            let r = l.query(&filter, |e| {
                if out.len() == limit {
                    next = Some(e.seq);
                    return Err(LedgerError::Damaged("page full".into()));
                }
                let mut v = serde_json::to_value(&e).unwrap_or_default();
                if let Some(d) = v.get_mut("data") {
                    mask_json_in_place(d);
                }
                out.push(v);
                Ok(())
            });
            match r {
                Err(_) if next.is_some() => Ok((out, next)),
                Err(e) => Err(e),
                Ok(()) => Ok((out, None)),
            }
        })
        .await?;
    Ok(Json(json!({"entries": entries, "next": next})).into_response())
}

async fn get_checkpoint(State(s): State<Arc<AppState>>, _caller: Caller) -> ApiResult<Response> {
    let cp = s.reads.read(|l| l.latest_checkpoint()).await?;
    match cp {
        Some(cp) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            cp.note,
        )
            .into_response()),
        None => Err(ApiError::not_found("no checkpoint has been signed yet")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    seq: u64,
    size: Option<u64>,
}

async fn proof_inclusion(
    State(s): State<Arc<AppState>>,
    _caller: Caller,
    Params(q): Params<InclusionQuery>,
) -> ApiResult<Json<Value>> {
    let p = s
        .reads
        .read(move |l| l.inclusion_proof(q.seq, q.size))
        .await?;
    Ok(Json(p.to_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

async fn proof_consistency(
    State(s): State<Arc<AppState>>,
    _caller: Caller,
    Params(q): Params<ConsistencyQuery>,
) -> ApiResult<Json<Value>> {
    let p = s
        .reads
        .read(move |l| l.consistency_proof(q.old, q.new))
        .await?;
    Ok(Json(p.to_json()))
}

async fn health(State(s): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let (size, cp) = s
        .reads
        .read(|l| Ok((l.size()?, l.latest_checkpoint()?.map(|c| c.size))))
        .await?;
    let scans = s.metrics.scans();
    let status = if s.metrics.any_scan_failing() {
        "failing"
    } else {
        "ok"
    };
    Ok(Json(json!({
        "status": status,
        "origin": s.origin,
        "size": size,
        "checkpoint_size": cp,
        "writer_queue": s.writer.queued(),
        "in_flight": s.in_flight.load(Ordering::SeqCst),
        "appends": s.metrics.appends(),
        "scans": scans,
    })))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_echo_values() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            n: u64,
        }
        let e = serde_json::from_str::<T>(r#"{"n": "13900000001"}"#).unwrap_err();
        let m = json_error(&e);
        assert!(!m.contains("13900000001"), "{m}");
        assert!(m.contains("line 1"), "{m}");
        let e = serde_json::from_str::<T>(r#"{"m": 1}"#).unwrap_err();
        assert!(json_error(&e).starts_with("unknown field `m`"));
        let e = serde_json::from_str::<T>(r#"{"n": "#).unwrap_err();
        assert!(json_error(&e).starts_with("truncated JSON"));
    }

    #[test]
    fn time_bounds() {
        assert_eq!(
            time_bound("2026-11-01", false).unwrap(),
            "2026-11-01T00:00:00.000Z"
        );
        assert_eq!(
            time_bound("2026-11-01", true).unwrap(),
            "2026-11-01T23:59:59.999Z"
        );
        assert_eq!(
            time_bound("2026-11-01T08:00:00+08:00", false).unwrap(),
            "2026-11-01T00:00:00.000Z"
        );
        assert_eq!(
            time_bound("yesterday", false).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
