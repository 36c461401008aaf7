//! Policy test cases (`djaudit policy test`): requests with the decision the policy set
//! must give, run through the same [`Authorizer`] code as real requests.
//!
//! # Test files
//!
//! `tests/*.toml` beside the policy files. Each file may declare entities and cases:
//!
//! ```toml
//! org    = [{ id = "C1", kind = "committee" }, { id = "B1", kind = "branch", parent = "C1" }]
//! user   = [{ id = "dept", role = "org_dept", org = "C1" },
//!           { id = "off", role = "provider", org = "B1", disabled = true }]
//! member = [{ id = "M1", org = "B1" }]
//!
//! [[case]]
//! name = "the department reads a member of a branch below it"
//! user = "dept"
//! action = "read"
//! resource = "member/M1"          # any spelling `Resource::from_str` accepts
//! expect = "allow"                # or "deny"
//! policies = ["org_dept.read_subtree"]  # optional: the exact determining policy ids
//! change_actor = "prov"           # optional: context.change_actor
//! new_in = "B1"                   # optional: a record being created in this org
//! new_kind = "branch"             # optional, with new_in on an org: its kind
//! ```
//!
//! The entities of `fixture.toml` are shared by every file. Each file is loaded into its
//! own in-memory projection (the real `schema.sql`). A case asks the policies directly:
//! a disabled user is not refused before the policies are asked, so that the policies'
//! own forbid for disabled accounts is what the case tests.
//!
//! This module must not touch a real projection or ledger.

use std::path::Path;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::entities::load_user;
use super::load::DEFAULT_TEST_FILES;
use super::{Action, Authorizer, Decision, Policies, PolicyError, RequestContext, Resource};

/// The projection schema the cases are loaded into.
const PROJECTION_SCHEMA: &str = include_str!("../records/schema.sql");

/// The file whose entities every test file shares.
const FIXTURE_FILE: &str = "fixture.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    org: Vec<OrgSpec>,
    #[serde(default)]
    user: Vec<UserSpec>,
    #[serde(default)]
    member: Vec<MemberSpec>,
    #[serde(default)]
    case: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgSpec {
    id: String,
    kind: String,
    parent: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    id: String,
    role: String,
    org: Option<String>,
    member: Option<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSpec {
    id: String,
    org: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    user: String,
    action: String,
    resource: String,
    expect: Expect,
    policies: Option<Vec<String>>,
    change_actor: Option<String>,
    new_in: Option<String>,
    new_kind: Option<String>,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Allowed or not.
    pub allowed: bool,
    /// The exact determining policy ids, when the case names them.
    pub policy_ids: Option<Vec<String>>,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    /// The test file.
    pub file: String,
    /// The case name.
    pub name: String,
    /// The request, as written in the case.
    pub user: String,
    /// The action, as written in the case.
    pub action: String,
    /// The resource, as written in the case.
    pub resource: String,
    /// What the case expects.
    pub expected: Expectation,
    /// What the policy set decided (absent when the request could not be asked).
    pub decision: Option<Decision>,
    /// Whether the decision matched the expectation.
    pub passed: bool,
    /// Why the case failed, one line.
    pub failure: Option<String>,
}

/// The results of a policy test run.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// SHA-256 of the policy set tested.
    pub policy_sha256: String,
    /// Every case, in file order then case order.
    pub cases: Vec<CaseOutcome>,
}

impl TestReport {
    /// Number of cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    /// Number of cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Whether every case passed (and there was at least one).
    pub fn all_passed(&self) -> bool {
        !self.cases.is_empty() && self.failed() == 0
    }

    /// The failed cases.
    pub fn failures(&self) -> impl Iterator<Item = &CaseOutcome> {
        self.cases.iter().filter(|c| !c.passed)
    }
}

/// Loads the policy set in `dir` and runs the cases of `dir/tests/*.toml`.
pub fn run_policy_tests(dir: &Path) -> Result<TestReport, PolicyError> {
    let policies = Policies::from_dir(dir)?;
    let tests_dir = dir.join("tests");
    let io = |source| PolicyError::Io {
        path: tests_dir.clone(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&tests_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
            path: path.clone(),
            source,
        })?;
        files.push((name, text));
    }
    run_tests(&policies, &files)
}

/// Runs the embedded default cases against the embedded default policy set.
pub fn run_default_policy_tests() -> Result<TestReport, PolicyError> {
    let policies = Policies::embedded()?;
    let files: Vec<(String, String)> = DEFAULT_TEST_FILES
        .iter()
        .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
        .collect();
    run_tests(&policies, &files)
}

/// Runs test files (name, TOML text) against `policies`. A malformed file is an error;
/// a case whose decision differs from its expectation is a failed case in the report.
pub fn run_tests(
    policies: &Policies,
    files: &[(String, String)],
) -> Result<TestReport, PolicyError> {
    let mut files: Vec<&(String, String)> = files.iter().collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    if files.is_empty() {
        return Err(PolicyError::TestFile {
            file: "tests".into(),
            message: "no test file (`*.toml`)".into(),
        });
    }
    let parse = |name: &str, text: &str| {
        toml::from_str::<TestFile>(text).map_err(|e| PolicyError::TestFile {
            file: name.to_string(),
            message: e.message().to_string(),
        })
    };
    let fixture = match files.iter().find(|(n, _)| n == FIXTURE_FILE) {
        Some((n, t)) => parse(n, t)?,
        None => TestFile::default(),
    };
    let mut cases = Vec::new();
    for (name, text) in files {
        let file = parse(name, text)?;
        let conn = projection(name, &fixture, (name != FIXTURE_FILE).then_some(&file))?;
        let authorizer = Authorizer::new(policies.clone(), &conn)?;
        for case in &file.case {
            cases.push(run_case(&authorizer, &conn, name, case));
        }
    }
    Ok(TestReport {
        policy_sha256: policies.sha256_hex(),
        cases,
    })
}

/// An in-memory projection holding the fixture's entities and the file's.
fn projection(
    name: &str,
    fixture: &TestFile,
    file: Option<&TestFile>,
) -> Result<Connection, PolicyError> {
    let fail = |what: String, e: rusqlite::Error| PolicyError::TestFile {
        file: name.to_string(),
        message: format!("cannot load {what}: {e}"),
    };
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(PROJECTION_SCHEMA)?;
    for f in std::iter::once(fixture).chain(file) {
        for o in &f.org {
            conn.execute(
                "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES (?1, ?2, ?3, ?4, 0)",
                params![o.id, o.name.as_deref().unwrap_or(&o.id), o.kind, o.parent],
            )
            .map_err(|e| fail(format!("org `{}`", o.id), e))?;
        }
        for m in &f.member {
            conn.execute(
                "INSERT INTO member (member_id, org_id, last_seq) VALUES (?1, ?2, 0)",
                params![m.id, m.org],
            )
            .map_err(|e| fail(format!("member `{}`", m.id), e))?;
        }
        for u in &f.user {
            conn.execute(
                "INSERT INTO user (user_id, name, role, org_id, member_id, disabled, last_seq) \
                 VALUES (?1, ?1, ?2, ?3, ?4, ?5, 0)",
                params![u.id, u.role, u.org, u.member, u.disabled],
            )
            .map_err(|e| fail(format!("user `{}`", u.id), e))?;
        }
    }
    Ok(conn)
}

fn run_case(
    authorizer: &Authorizer,
    conn: &Connection,
    file: &str,
    case: &CaseSpec,
) -> CaseOutcome {
    let expected = Expectation {
        allowed: case.expect == Expect::Allow,
        policy_ids: case.policies.clone().map(|mut ids| {
            ids.sort();
            ids
        }),
    };
    let mut outcome = CaseOutcome {
        file: file.to_string(),
        name: case.name.clone(),
        user: case.user.clone(),
        action: case.action.clone(),
        resource: case.resource.clone(),
        expected: expected.clone(),
        decision: None,
        passed: false,
        failure: None,
    };
    let decision = ask(authorizer, conn, case);
    match decision {
        Err(e) => outcome.failure = Some(e.to_string()),
        Ok(d) => {
            let mut why = Vec::new();
            if d.allowed != expected.allowed {
                why.push(format!(
                    "expected {}, got {}",
                    allow_word(expected.allowed),
                    allow_word(d.allowed)
                ));
            }
            if let Some(want) = &expected.policy_ids {
                if *want != d.policy_ids {
                    why.push(format!(
                        "expected policies [{}], got [{}]",
                        want.join(", "),
                        d.policy_ids.join(", ")
                    ));
                }
            }
            if !d.errors.is_empty() {
                why.push(format!("policy errors: {}", d.errors.join("; ")));
            }
            outcome.passed = why.is_empty();
            if !why.is_empty() {
                outcome.failure = Some(why.join("; "));
            }
            outcome.decision = Some(d);
        }
    }
    outcome
}

fn allow_word(allowed: bool) -> &'static str {
    if allowed {
        "allow"
    } else {
        "deny"
    }
}

fn ask(
    authorizer: &Authorizer,
    conn: &Connection,
    case: &CaseSpec,
) -> Result<Decision, PolicyError> {
    let action: Action = case.action.parse()?;
    let mut resource: Resource = case.resource.parse()?;
    if let Some(org) = &case.new_in {
        resource = match resource {
            Resource::Member(member_id) => Resource::NewMember {
                member_id,
                org_id: org.clone(),
            },
            Resource::Org(org_id) => Resource::NewOrg {
                org_id,
                kind: case.new_kind.clone().unwrap_or_else(|| "branch".into()),
                parent_id: Some(org.clone()),
            },
            other => return Err(PolicyError::BadResource(format!("{other} (with new_in)"))),
        };
    }
    let user =
        load_user(conn, &case.user)?.ok_or_else(|| PolicyError::UnknownUser(case.user.clone()))?;
    let ctx = RequestContext {
        change_actor: case.change_actor.clone(),
        now: None,
    };
    authorizer.evaluate(conn, &case.user, &user, action, &resource, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyFile, DEFAULT_POLICY_FILES};

    fn default_tests() -> Vec<(String, String)> {
        DEFAULT_TEST_FILES
            .iter()
            .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
            .collect()
    }

    /// The default policy set with `edit` applied to the text of file `name`.
    fn edited(name: &str, edit: impl Fn(&str) -> String) -> Policies {
        let files = DEFAULT_POLICY_FILES
            .iter()
            .map(|(n, t)| PolicyFile {
                name: (*n).to_string(),
                text: if *n == name {
                    edit(t)
                } else {
                    (*t).to_string()
                },
            })
            .collect();
        Policies::from_files(files).expect("edited set still valid")
    }

    fn outcome<'a>(report: &'a TestReport, name: &str) -> &'a CaseOutcome {
        report
            .cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name:?}"))
    }

    #[test]
    fn shipped_cases_pass() {
        let report = run_default_policy_tests().expect("runs");
        let failures: Vec<String> = report
            .failures()
            .map(|c| {
                format!(
                    "{} / {}: {}",
                    c.file,
                    c.name,
                    c.failure.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(report.all_passed());
        assert!(report.cases.len() >= 80, "{} cases", report.cases.len());
        // Every role's row has allowed and denied cases.
        for file in [
            "org_dept.toml",
            "provider.toml",
            "member.toml",
            "admins.toml",
        ] {
            let of_file = || report.cases.iter().filter(move |c| c.file == file);
            assert!(
                of_file().any(|c| c.expected.allowed),
                "{file}: no allow case"
            );
            assert!(
                of_file().any(|c| !c.expected.allowed),
                "{file}: no deny case"
            );
        }
        // Every policy decides at least one case: none is untested.
        let used: std::collections::HashSet<&str> = report
            .cases
            .iter()
            .filter_map(|c| c.expected.policy_ids.as_ref())
            .flatten()
            .map(String::as_str)
            .collect();
        let policies = Policies::embedded().expect("loads");
        for id in policies.policy_ids() {
            assert!(used.contains(id.as_str()), "policy {id} decides no case");
        }
    }

    #[test]
    fn shipped_directory_cases_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let report = run_policy_tests(&dir).expect("runs");
        assert!(report.all_passed());
        assert_eq!(
            report.policy_sha256,
            Policies::embedded().expect("loads").sha256_hex()
        );
    }

    #[test]
    fn fail_case_fails_when_the_admin_forbid_is_removed() {
        let name = "sysadmin cannot read member data";
        let without = edited("separation.cedar", |t| {
            t.replace(
                "when { [\"sysadmin\", \"security_admin\", \"auditor\"].contains(principal.role) };\n\n// 三员分立: the three administrators never change",
                "when { false };\n\n// 三员分立: the three administrators never change",
            )
        });
        let report = run_tests(&without, &default_tests()).expect("runs");
        let case = outcome(&report, name);
        assert!(!case.passed);
        assert_eq!(
            case.failure.as_deref(),
            Some("expected policies [separation.admins_no_member_data], got []")
        );
        // And with a careless broad permit for the sysadmin added, the forbid is all that
        // stands between the sysadmin and member data.
        let broad = |t: &str| {
            format!("{t}\n@id(\"careless\")\npermit (principal is User, action, resource)\nwhen {{ principal.role == \"sysadmin\" }};\n")
        };
        let with_forbid = edited("admin.cedar", broad);
        let report = run_tests(&with_forbid, &default_tests()).expect("runs");
        assert!(outcome(&report, name).passed);
        let files = DEFAULT_POLICY_FILES
            .iter()
            .map(|(n, t)| PolicyFile {
                name: (*n).to_string(),
                text: match *n {
                    "admin.cedar" => broad(t),
                    "separation.cedar" => t.replace(
                        "forbid (principal is User, action, resource is Member)",
                        "forbid (principal is User, action, resource is Member)\nwhen { false }",
                    ),
                    _ => (*t).to_string(),
                },
            })
            .collect();
        let neither = Policies::from_files(files).expect("valid");
        let report = run_tests(&neither, &default_tests()).expect("runs");
        let case = outcome(&report, name);
        assert!(!case.passed);
        assert_eq!(case.decision.as_ref().map(|d| d.allowed), Some(true));
    }

    #[test]
    fn fail_case_fails_when_subtree_becomes_own_org() {
        let narrowed = edited("records.cedar", |t| {
            t.replacen("resource in principal.org", "resource == principal.org", 1)
        });
        let report = run_tests(&narrowed, &default_tests()).expect("runs");
        let case = outcome(
            &report,
            "committee department reads a member two levels down (branch in general branch)",
        );
        assert!(!case.passed);
        assert_eq!(
            case.failure
                .as_deref()
                .map(|f| f.starts_with("expected allow, got deny")),
            Some(true)
        );
    }

    #[test]
    fn fail_malformed_test_file_is_named() {
        let policies = Policies::embedded().expect("loads");
        let files = vec![(
            "bad.toml".to_string(),
            "[[case]]\nname = \"x\"\nuser = \"u\"\naction = \"read\"\nresource = \"ledger\"\nexpect = \"maybe\"\n"
                .to_string(),
        )];
        let err = run_tests(&policies, &files).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("`bad.toml`: ")),
            "{err:?}"
        );
    }

    #[test]
    fn fail_case_with_unknown_user_or_action_fails() {
        let policies = Policies::embedded().expect("loads");
        let mut files = default_tests();
        files.push((
            "extra.toml".to_string(),
            "[[case]]\nname = \"ghost\"\nuser = \"ghost\"\naction = \"read\"\nresource = \"ledger\"\nexpect = \"deny\"\n\n[[case]]\nname = \"verb\"\nuser = \"aud\"\naction = \"delete\"\nresource = \"ledger\"\nexpect = \"deny\"\n".to_string(),
        ));
        let report = run_tests(&policies, &files).expect("runs");
        assert_eq!(report.failed(), 2);
        assert_eq!(
            outcome(&report, "ghost").failure.as_deref(),
            Some("unknown user `ghost`")
        );
        assert_eq!(
            outcome(&report, "verb").failure.as_deref(),
            Some("unknown action `delete`")
        );
    }

    #[test]
    fn fail_duplicate_fixture_entity_is_named() {
        let policies = Policies::embedded().expect("loads");
        let mut files = default_tests();
        files.push((
            "dup.toml".to_string(),
            "member = [{ id = \"M1\", org = \"B2\" }]\n".to_string(),
        ));
        let err = run_tests(&policies, &files).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("`dup.toml`: cannot load member `M1`")),
            "{err:?}"
        );
    }
}
