//! Access policy: who may do what to which party record, decided by Cedar policies
//! (DESIGN §6).
//!
//! The policy set is `policies/schema.cedarschema` plus `policies/*.cedar`, embedded in the
//! binary as the default ([`Policies::embedded`]) and overridable from a directory
//! ([`Policies::from_dir`]). Loading validates every policy against the schema in strict
//! mode and computes the SHA-256 of the set ([`Policies::sha256_hex`], bytes defined in
//! [`load`]'s docs) that a `policy.load` ledger entry records.
//!
//! [`Authorizer`] answers one request at a time from the projection (tables `user`, `org`,
//! `member`): the principal is a `User` in its org and every org above it, a member record
//! is a `Member` in its branch and every org above it, so "within my organisation" is
//! Cedar's `in`. The org hierarchy is cached; users and members are read per request, so a
//! disabled account is refused at once.
//!
//! The authorizer decides; [`record`] writes the `access.decision` and `policy.load`
//! entries, always in a transaction the caller controls or one of its own, never anything
//! but those entries; [`enforce`] applies both to the record commands (import, show,
//! history, export, reconcile, user accounts). Apart from [`enforce`], which hands records
//! to their readers masked or not as decided, nothing here sees a sensitive member field
//! (ID number, phone, income): the entities carry only ids, roles and orgs, and a decision
//! names the sensitive fields shown, never their values.

mod authorize;
pub mod enforce;
mod entities;
pub mod load;
pub mod record;
mod testing;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

pub use authorize::{Authorizer, RequestContext};
pub use load::{
    Policies, PolicyDiagnostic, PolicyFile, DEFAULT_POLICY_FILES, DEFAULT_TEST_FILES,
    SOURCE_EMBEDDED, SOURCE_FILES,
};
pub use record::{
    decide_and_record, decide_and_record_in, ensure_policy_recorded, record_decision, AccessEvent,
    AccessRequest, DecisionData, DenyReason, Outcome, RecordError, Verdict,
};
pub use testing::{
    run_default_policy_tests, run_policy_tests, run_tests, CaseOutcome, Expectation, TestReport,
};

/// An action a user asks to perform (the Cedar `Action` entities of the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read a record with sensitive fields masked.
    Read,
    /// Read the sensitive fields of a member record unmasked.
    ReadSensitive,
    /// Export records (bulk read).
    Export,
    /// Create a record.
    Create,
    /// Change a record.
    Update,
    /// Remove a record.
    Remove,
    /// Approve a change someone else made.
    Approve,
    /// Verify the ledger or a report.
    Verify,
    /// Query the access log and run access anomaly scans.
    Audit,
    /// Add, change and disable user accounts.
    ManageUsers,
    /// Load or change the access policy.
    ManagePolicy,
    /// Create and rotate signing keys.
    ManageKeys,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 12] = [
        Action::Read,
        Action::ReadSensitive,
        Action::Export,
        Action::Create,
        Action::Update,
        Action::Remove,
        Action::Approve,
        Action::Verify,
        Action::Audit,
        Action::ManageUsers,
        Action::ManagePolicy,
        Action::ManageKeys,
    ];

    /// The action's name: its Cedar entity id (`Action::"<name>"`) and its CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::ReadSensitive => "read_sensitive",
            Action::Export => "export",
            Action::Create => "create",
            Action::Update => "update",
            Action::Remove => "remove",
            Action::Approve => "approve",
            Action::Verify => "verify",
            Action::Audit => "audit",
            Action::ManageUsers => "manage_users",
            Action::ManagePolicy => "manage_policy",
            Action::ManageKeys => "manage_keys",
        }
    }

    /// Position in [`Action::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownAction(s.to_string()))
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The Cedar entity type of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `Member`
    Member,
    /// `Org`
    Org,
    /// `Ledger`
    Ledger,
    /// `Report`
    Report,
    /// `System`
    System,
}

impl ResourceType {
    /// Every resource type.
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Member,
        ResourceType::Org,
        ResourceType::Ledger,
        ResourceType::Report,
        ResourceType::System,
    ];

    /// The Cedar entity type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Member => "Member",
            ResourceType::Org => "Org",
            ResourceType::Ledger => "Ledger",
            ResourceType::Report => "Report",
            ResourceType::System => "System",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What a request is about.
///
/// Record subjects map onto resources ([`Resource::from_str`]): `member/<id>`, and the
/// `dues/<member_id>/…` and `transfer/<member_id>/…` records that belong to a member, are
/// that [`Resource::Member`]; `org/<id>` and the `meeting/<org_id>/…` records are that
/// [`Resource::Org`]; `user/<id>` (account management) is [`Resource::System`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// An existing member record; its org is read from the projection.
    Member(String),
    /// A member record placed in `org_id` by the change being decided (a record being
    /// created, or moved there); the projection is not consulted for it. A move needs two
    /// decisions: [`Resource::Member`] where it is, and this where it goes.
    NewMember {
        /// The member id.
        member_id: String,
        /// The org the record is in after the change.
        org_id: String,
    },
    /// An existing org; it and every org above it are read from the cached hierarchy.
    Org(String),
    /// An org placed under `parent_id` by the change being decided (created, or moved;
    /// a move needs a decision on [`Resource::Org`] too).
    NewOrg {
        /// The org id.
        org_id: String,
        /// `committee`, `general_branch` or `branch`.
        kind: String,
        /// The org above it, if any.
        parent_id: Option<String>,
    },
    /// The audit ledger.
    Ledger,
    /// A compliance report of an org subtree, or of everything (`None`).
    Report(Option<String>),
    /// The running service: accounts, policy, keys.
    System,
}

impl Resource {
    /// The Cedar entity type of the resource.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Member(_) | Resource::NewMember { .. } => ResourceType::Member,
            Resource::Org(_) | Resource::NewOrg { .. } => ResourceType::Org,
            Resource::Ledger => ResourceType::Ledger,
            Resource::Report(_) => ResourceType::Report,
            Resource::System => ResourceType::System,
        }
    }
}

impl fmt::Display for Resource {
    /// The subject spelling: `member/M1`, `org/B1`, `ledger`, `report/C1`, `report`, `system`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Member(id) | Resource::NewMember { member_id: id, .. } => {
                write!(f, "member/{id}")
            }
            Resource::Org(id) | Resource::NewOrg { org_id: id, .. } => write!(f, "org/{id}"),
            Resource::Ledger => f.write_str("ledger"),
            Resource::Report(Some(id)) => write!(f, "report/{id}"),
            Resource::Report(None) => f.write_str("report"),
            Resource::System => f.write_str("system"),
        }
    }
}

impl FromStr for Resource {
    type Err = PolicyError;

    /// Parses `member/<id>`, `org/<id>`, `dues/<member_id>/<month>…`,
    /// `transfer/<member_id>/<date>…`, `meeting/<org_id>/<date>/<kind>…`, `user/<id>`,
    /// `ledger`, `report`, `report/<org_id>` and `system`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PolicyError::BadResource(s.to_string());
        let (kind, rest) = match s.split_once('/') {
            Some((kind, rest)) => (kind, Some(rest)),
            None => (s, None),
        };
        // The first path segment after the kind: the id itself, or the owner of a
        // dues/transfer/meeting id.
        let head = || {
            rest.and_then(|r| r.split('/').next())
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .ok_or_else(bad)
        };
        let whole = || {
            rest.filter(|r| !r.is_empty() && !r.contains('/'))
                .map(str::to_string)
                .ok_or_else(bad)
        };
        match kind {
            "member" => Ok(Resource::Member(whole()?)),
            "org" => Ok(Resource::Org(whole()?)),
            "dues" | "transfer" => Ok(Resource::Member(head()?)),
            "meeting" => Ok(Resource::Org(head()?)),
            "user" => {
                whole()?;
                Ok(Resource::System)
            }
            "report" if rest.is_none() => Ok(Resource::Report(None)),
            "report" => Ok(Resource::Report(Some(whole()?))),
            "ledger" if rest.is_none() => Ok(Resource::Ledger),
            "system" if rest.is_none() => Ok(Resource::System),
            _ => Err(bad()),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `true` only when Cedar allowed the request and no policy failed to evaluate.
    pub allowed: bool,
    /// The `@id`s of the policies that decided, sorted: the permits that allowed it, or the
    /// forbids that denied it; empty when nothing permitted it (default deny).
    pub policy_ids: Vec<String>,
    /// Policies that failed to evaluate (each names its policy); any such error denies the
    /// request, because a forbid that fails must not let it through.
    pub errors: Vec<String>,
}

/// Errors of loading policies and deciding requests.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file or directory could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The policy directory has no `schema.cedarschema`.
    #[error("no schema file `schema.cedarschema` in `{}`", .0.display())]
    NoSchema(PathBuf),
    /// The policy set has no `*.cedar` file.
    #[error("no policy file (`*.cedar`) in `{0}`")]
    NoPolicies(String),
    /// The schema or a policy file is invalid; every problem found, each with its file
    /// and position.
    #[error("{}", summarise(.0))]
    Invalid(Vec<PolicyDiagnostic>),
    /// No user with this id in the projection.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// The user's account is disabled.
    #[error("user `{0}` is disabled")]
    DisabledUser(String),
    /// Not one of the actions of [`Action::ALL`].
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    /// A resource spelling [`Resource::from_str`] does not accept.
    #[error(
        "invalid resource `{0}` (expected member/<id>, org/<id>, dues/…, transfer/…, meeting/…, user/<id>, ledger, report, report/<org_id> or system)"
    )]
    BadResource(String),
    /// The resource names a record that is not in the projection.
    #[error("no such record `{0}`")]
    UnknownResource(String),
    /// The schema does not let this action apply to this kind of resource.
    #[error("action `{action}` does not apply to `{resource}`")]
    NotApplicable {
        /// The action.
        action: Action,
        /// The resource.
        resource: String,
    },
    /// Reading the projection failed.
    #[error("cannot read the projection: {0}")]
    Projection(#[from] rusqlite::Error),
    /// Cedar refused a request or entity djaudit built (a schema that does not fit the
    /// code, or an internal error).
    #[error("cannot build the request: {0}")]
    Request(String),
    /// A policy test file is malformed.
    #[error("`{file}`: {message}")]
    TestFile {
        /// The test file name.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// The first diagnostic and how many more there are, on one line.
fn summarise(diags: &[PolicyDiagnostic]) -> String {
    match diags {
        [] => "invalid policy set".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().ok(), Some(a));
            assert_eq!(Action::ALL[a.index()], a);
        }
    }

    #[test]
    fn fail_unknown_action() {
        let err = "delete".parse::<Action>().err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("unknown action `delete`"));
    }

    #[test]
    fn resources_parse_from_subjects() {
        let cases = [
            ("member/M1", Resource::Member("M1".into())),
            ("org/B1", Resource::Org("B1".into())),
            ("dues/M1/2026-01", Resource::Member("M1".into())),
            ("dues/M1/2026-01#2", Resource::Member("M1".into())),
            ("transfer/M1/2026-01-05", Resource::Member("M1".into())),
            (
                "meeting/B1/2026-01-05/theme_day",
                Resource::Org("B1".into()),
            ),
            ("user/u1", Resource::System),
            ("ledger", Resource::Ledger),
            ("report", Resource::Report(None)),
            ("report/C1", Resource::Report(Some("C1".into()))),
            ("system", Resource::System),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Resource>().ok(), Some(want), "{text}");
        }
        assert_eq!(Resource::Member("M1".into()).to_string(), "member/M1");
        assert_eq!(Resource::Report(None).to_string(), "report");
    }

    #[test]
    fn fail_bad_resources() {
        for text in [
            "",
            "member",
            "member/",
            "member/a/b",
            "org/",
            "ledger/x",
            "dues/",
            "cat/1",
            "system/1",
        ] {
            assert!(
                matches!(text.parse::<Resource>(), Err(PolicyError::BadResource(_))),
                "{text:?} parsed"
            );
        }
    }

    #[test]
    fn invalid_summary_counts_the_rest() {
        let d = |line| PolicyDiagnostic {
            file: "a.cedar".into(),
            position: Some((line, 1)),
            policy_id: None,
            message: "bad".into(),
        };
        let err = PolicyError::Invalid(vec![d(1), d(2), d(3)]);
        assert_eq!(err.to_string(), "a.cedar:1:1: bad (and 2 more)");
    }
}
