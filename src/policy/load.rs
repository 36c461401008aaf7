//! Loading a policy set: parse the schema and the policy files, give every policy its
//! `@id`, validate strictly, hash. A set that loads is valid; code that holds a
//! [`Policies`] never re-checks it.
//!
//! # Files
//!
//! A policy set is the file `schema.cedarschema` plus every `*.cedar` file of one
//! directory (not its subdirectories; other files such as `checks.toml` are not part of
//! it). Every policy carries `@id("…")`, unique across the set; templates are refused.
//!
//! # Hash
//!
//! [`Policies::sha256`] is SHA-256 over the concatenation, for each file of the set in
//! ascending byte order of file name, of
//!
//! ```text
//! <file name, UTF-8> 0x0A <content length in bytes, decimal ASCII> 0x0A <content bytes>
//! ```
//!
//! The length prefix makes the encoding unambiguous (no content can imitate a file
//! boundary). The content is hashed exactly as read, without any normalisation.
//!
//! This module must not decide requests or touch the projection.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Entities, Entity, EntityUid, PolicyId, PolicySet, ResourceConstraint, Schema,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use super::entities::{self, Types};
use super::{Action, PolicyError, ResourceType};

/// [`Policies::source`] of the set embedded in the binary.
pub const SOURCE_EMBEDDED: &str = "embedded";

/// [`Policies::source`] of a set built from files in memory.
pub const SOURCE_FILES: &str = "files";

/// The name of the schema file in a policy set.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// The default policy set embedded in the binary: (file name, content), sorted by name.
pub const DEFAULT_POLICY_FILES: &[(&str, &str)] = &[
    ("admin.cedar", include_str!("../../policies/admin.cedar")),
    (
        "records.cedar",
        include_str!("../../policies/records.cedar"),
    ),
    (
        "schema.cedarschema",
        include_str!("../../policies/schema.cedarschema"),
    ),
    (
        "separation.cedar",
        include_str!("../../policies/separation.cedar"),
    ),
];

/// The test cases of the default policy set (`policies/tests/`), sorted by name.
pub const DEFAULT_TEST_FILES: &[(&str, &str)] = &[
    (
        "accounts.toml",
        include_str!("../../policies/tests/accounts.toml"),
    ),
    (
        "admins.toml",
        include_str!("../../policies/tests/admins.toml"),
    ),
    (
        "fixture.toml",
        include_str!("../../policies/tests/fixture.toml"),
    ),
    (
        "member.toml",
        include_str!("../../policies/tests/member.toml"),
    ),
    (
        "org_dept.toml",
        include_str!("../../policies/tests/org_dept.toml"),
    ),
    (
        "provider.toml",
        include_str!("../../policies/tests/provider.toml"),
    ),
];

/// One file of a policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The file name (no directory).
    pub name: String,
    /// The file content.
    pub text: String,
}

/// One problem found in a policy set: the file, the position in it when known, the
/// policy it concerns when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyDiagnostic {
    /// The file name.
    pub file: String,
    /// 1-based (line, column), the column counted in characters.
    pub position: Option<(usize, usize)>,
    /// The `@id` of the policy concerned.
    pub policy_id: Option<String>,
    /// What is wrong, one line.
    pub message: String,
}

impl std::fmt::Display for PolicyDiagnostic {
    /// `file:line:column: message`, or `file: message` without a position.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A loaded, validated policy set.
#[derive(Debug, Clone)]
pub struct Policies {
    files: Vec<PolicyFile>,
    schema: Schema,
    set: PolicySet,
    /// policy id → file name
    origin: HashMap<String, String>,
    sha256: [u8; 32],
    warnings: Vec<PolicyDiagnostic>,
    /// The schema's action entity for each [`Action`], by [`Action::index`].
    action_entities: Vec<Entity>,
    /// Bit set of [`ResourceType::bit`] per action, by [`Action::index`].
    applies: Vec<u8>,
    /// For each (action, resource type), the policies whose scope can match it (see
    /// [`partition`]), by [`slot`].
    partitions: Vec<PolicySet>,
    /// Whether the schema declares action groups (then requests need the action entity).
    has_action_groups: bool,
    /// What request data some policy may read (see [`Reads`]).
    reads: Reads,
    /// Where the set was read from: `embedded`, the directory, or `files`.
    source: String,
    pub(crate) types: Types,
}

/// The embedded policy files, as files.
pub(crate) fn default_files() -> Vec<PolicyFile> {
    DEFAULT_POLICY_FILES
        .iter()
        .map(|(name, text)| PolicyFile {
            name: (*name).to_string(),
            text: (*text).to_string(),
        })
        .collect()
}

impl Policies {
    /// The default policy set embedded in the binary.
    pub fn embedded() -> Result<Self, PolicyError> {
        let mut p = Self::from_files(default_files())?;
        p.source = SOURCE_EMBEDDED.to_string();
        Ok(p)
    }

    /// The embedded policy set with one more policy file (tests of policies that read
    /// more than the defaults do).
    #[cfg(test)]
    pub(crate) fn embedded_plus(name: &str, text: &str) -> Policies {
        let mut files = default_files();
        files.push(PolicyFile {
            name: name.into(),
            text: text.into(),
        });
        Self::from_files(files).expect("valid policy set")
    }

    /// The policy set in `dir`: `schema.cedarschema` and every `*.cedar` file.
    pub fn from_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io = |path: &Path, source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !(name == SCHEMA_FILE || name.ends_with(".cedar")) {
                continue;
            }
            if !std::fs::metadata(&path)
                .map_err(|e| io(&path, e))?
                .is_file()
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            files.push(PolicyFile { name, text });
        }
        if !files.iter().any(|f| f.name == SCHEMA_FILE) {
            return Err(PolicyError::NoSchema(dir.to_path_buf()));
        }
        if !files.iter().any(|f| f.name.ends_with(".cedar")) {
            return Err(PolicyError::NoPolicies(dir.display().to_string()));
        }
        let mut p = Self::from_files(files)?;
        p.source = dir.display().to_string();
        Ok(p)
    }

    /// A policy set from its files (exactly one named `schema.cedarschema`, the others
    /// `*.cedar`).
    pub fn from_files(mut files: Vec<PolicyFile>) -> Result<Self, PolicyError> {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut diags = Vec::new();
        for pair in files.windows(2) {
            if let [a, b] = pair {
                if a.name == b.name {
                    diags.push(file_diag(&b.name, "file given twice".into()));
                }
            }
        }
        for f in &files {
            if f.name != SCHEMA_FILE && !f.name.ends_with(".cedar") {
                diags.push(file_diag(
                    &f.name,
                    "not a policy file (expected `schema.cedarschema` or `*.cedar`)".into(),
                ));
            }
        }
        if !diags.is_empty() {
            return Err(PolicyError::Invalid(diags));
        }
        let sha256 = hash_files(&files);
        let Some(schema_file) = files.iter().find(|f| f.name == SCHEMA_FILE) else {
            return Err(PolicyError::NoSchema(SCHEMA_FILE.into()));
        };
        if !files.iter().any(|f| f.name.ends_with(".cedar")) {
            return Err(PolicyError::NoPolicies("the policy set".into()));
        }

        let mut warnings = Vec::new();
        let schema = match Schema::from_cedarschema_str(&schema_file.text) {
            Ok((schema, schema_warnings)) => {
                for w in schema_warnings {
                    warnings.push(diagnostic(SCHEMA_FILE, &schema_file.text, None, &w));
                }
                schema
            }
            Err(e) => {
                return Err(PolicyError::Invalid(diagnostics(
                    SCHEMA_FILE,
                    &schema_file.text,
                    None,
                    &e,
                )))
            }
        };

        let (set, origin) = parse_policy_files(&files)?;

        let validator = Validator::new(schema.clone());
        let result = validator.validate(&set, ValidationMode::Strict);
        let text_of = |id: &str| -> (&str, &str) {
            let file = origin.get(id).map(String::as_str).unwrap_or("");
            let text = files
                .iter()
                .find(|f| f.name == file)
                .map(|f| f.text.as_str())
                .unwrap_or("");
            (file, text)
        };
        let mut errors = Vec::new();
        for e in result.validation_errors() {
            let id = e.policy_id().to_string();
            let (file, text) = text_of(&id);
            errors.push(diagnostic(file, text, Some(id.clone()), e));
        }
        for w in result.validation_warnings() {
            let id = w.policy_id().to_string();
            let (file, text) = text_of(&id);
            warnings.push(diagnostic(file, text, Some(id.clone()), w));
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
            return Err(PolicyError::Invalid(errors));
        }

        let types = Types::new();
        let (action_entities, applies) = action_table(&schema, &types)?;
        check_entities_conform(&schema, &types)?;
        let has_action_groups = schema.action_groups().next().is_some();
        let partitions = partition(&set, &schema, &types)?;
        let reads = Reads::of(&set);

        Ok(Policies {
            files,
            schema,
            set,
            origin,
            sha256,
            warnings,
            action_entities,
            applies,
            partitions,
            has_action_groups,
            reads,
            source: SOURCE_FILES.to_string(),
            types,
        })
    }

    /// SHA-256 of the set (see the module docs for the exact bytes).
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// [`Policies::sha256`] as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Where the set was read from: [`SOURCE_EMBEDDED`], the directory given to
    /// [`Policies::from_dir`], or [`SOURCE_FILES`] for [`Policies::from_files`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The files of the set, sorted by name.
    pub fn files(&self) -> &[PolicyFile] {
        &self.files
    }

    /// The `@id`s of every policy, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.origin.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The file a policy comes from.
    pub fn file_of(&self, policy_id: &str) -> Option<&str> {
        self.origin.get(policy_id).map(String::as_str)
    }

    /// Validator and schema warnings: not fatal, worth showing (`policy validate`).
    pub fn warnings(&self) -> &[PolicyDiagnostic] {
        &self.warnings
    }

    /// The whole Cedar policy set.
    pub fn cedar_set(&self) -> &PolicySet {
        &self.set
    }

    /// The policies that can apply to `action` on a resource of type `ty`: deciding with
    /// them gives the same answer as with the whole set, faster.
    pub(crate) fn cedar_set_for(&self, action: Action, ty: ResourceType) -> &PolicySet {
        self.partitions.get(slot(action, ty)).unwrap_or(&self.set)
    }

    /// Whether requests must carry the action entity (the schema has action groups).
    pub(crate) fn needs_action_entity(&self) -> bool {
        self.has_action_groups
    }

    /// Whether some policy may read `context.now` (else requests need not carry it).
    pub(crate) fn reads_now(&self) -> bool {
        self.reads.now
    }

    /// Whether some policy may read an entity other than the principal, the resource and
    /// the action (else requests need not carry the orgs above them).
    pub(crate) fn reads_other_entities(&self) -> bool {
        self.reads.other_entities
    }

    /// The Cedar schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub(crate) fn action_entity(&self, action: Action) -> Option<&Entity> {
        self.action_entities.get(action.index())
    }

    pub(crate) fn applies(&self, action: Action, ty: ResourceType) -> bool {
        self.applies
            .get(action.index())
            .is_some_and(|bits| bits & ty.bit() != 0)
    }
}

/// SHA-256 of the files as the module docs define (files already sorted by name).
fn hash_files(files: &[PolicyFile]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.name.as_bytes());
        h.update(b"\n");
        h.update(f.text.len().to_string().as_bytes());
        h.update(b"\n");
        h.update(f.text.as_bytes());
    }
    h.finalize().into()
}

/// Parses every `*.cedar` file, renames each policy to its `@id` and merges them.
fn parse_policy_files(
    files: &[PolicyFile],
) -> Result<(PolicySet, HashMap<String, String>), PolicyError> {
    let mut diags = Vec::new();
    let mut set = PolicySet::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    for f in files.iter().filter(|f| f.name.ends_with(".cedar")) {
        let parsed = match PolicySet::from_str(&f.text) {
            Ok(p) => p,
            Err(errs) => {
                for e in errs.iter() {
                    diags.extend(diagnostics(&f.name, &f.text, None, e));
                }
                continue;
            }
        };
        for t in parsed.templates() {
            let pos = t.to_cedar();
            diags.push(PolicyDiagnostic {
                file: f.name.clone(),
                position: position_of_text(&f.text, &pos),
                policy_id: t.annotation("id").map(str::to_string),
                message: "templates are not supported".into(),
            });
        }
        // In file order, so that diagnostics and the "first" duplicate are stable.
        let mut policies: Vec<_> = parsed
            .policies()
            .map(|p| {
                let pos = p
                    .to_cedar()
                    .and_then(|text| position_of_text(&f.text, &text));
                (pos, p)
            })
            .collect();
        policies.sort_by_key(|(pos, _)| *pos);
        for (pos, p) in policies {
            let Some(id) = p.annotation("id").filter(|id| !id.trim().is_empty()) else {
                diags.push(PolicyDiagnostic {
                    file: f.name.clone(),
                    position: pos,
                    policy_id: None,
                    message: "policy has no `@id(\"…\")` annotation".into(),
                });
                continue;
            };
            if let Some(first) = origin.get(id) {
                diags.push(PolicyDiagnostic {
                    file: f.name.clone(),
                    position: pos,
                    policy_id: Some(id.to_string()),
                    message: format!("policy id `{id}` is already used in `{first}`"),
                });
                continue;
            }
            origin.insert(id.to_string(), f.name.clone());
            if let Err(e) = set.add(p.new_id(PolicyId::new(id))) {
                diags.push(PolicyDiagnostic {
                    file: f.name.clone(),
                    position: pos,
                    policy_id: Some(id.to_string()),
                    message: one_line(&e.to_string()),
                });
            }
        }
    }
    if diags.is_empty() {
        Ok((set, origin))
    } else {
        Err(PolicyError::Invalid(diags))
    }
}

/// What request data the policies of a set may read, found once at load so that a
/// request carries only that. Both answers err on the side of `true`: a policy the scan
/// does not understand counts as reading everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    /// Some condition may read `context.now`: it names it, or uses `context` other than
    /// to read or test one attribute by name (`context == {…}` sees every attribute).
    now: bool,
    /// Some condition may read the data (attributes, tags, ancestors) of an entity that
    /// is not the principal, the resource or the action: a `.`, `has`, `in`, `is … in`,
    /// `getTag` or `hasTag` whose left operand is anything but a variable (e.g.
    /// `principal.org.kind`, `resource.org in …`, `Org::"C1".kind`), or `has` with a
    /// path (`principal has org.kind`). Without such a condition the entity of an org
    /// named only as an ancestor or an attribute value is never looked at, so leaving it
    /// out of the request changes nothing: the principal and the resource carry their
    /// ancestors already closed.
    other_entities: bool,
}

/// The operators that read an entity's data through their `left` operand (in the JSON
/// form of a policy).
const DEREF_OPS: [&str; 6] = [".", "has", "in", "is", "getTag", "hasTag"];

impl Reads {
    const ALL: Reads = Reads {
        now: true,
        other_entities: true,
    };

    fn of(set: &PolicySet) -> Reads {
        let mut reads = Reads {
            now: false,
            other_entities: false,
        };
        for p in set.policies() {
            // Only the conditions: the scope compares the variables with literals.
            match p.to_json() {
                Ok(json) => match json.get("conditions") {
                    Some(c) => reads.scan(c),
                    None => return Reads::ALL,
                },
                Err(_) => return Reads::ALL,
            }
        }
        reads
    }

    fn scan(&mut self, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Array(items) => items.iter().for_each(|x| self.scan(x)),
            Value::Object(fields) => {
                for (key, x) in fields {
                    if key == "Var" && x.as_str() == Some("context") {
                        // `context` reached other than through one named attribute.
                        self.now = true;
                    } else if DEREF_OPS.contains(&key.as_str()) {
                        match x.as_object() {
                            Some(node) => self.deref(key, node),
                            None => *self = Reads::ALL,
                        }
                    } else {
                        self.scan(x);
                    }
                }
            }
            _ => {}
        }
    }

    /// One `.`/`has`/`in`/`is`/`getTag`/`hasTag` node.
    fn deref(&mut self, op: &str, node: &serde_json::Map<String, serde_json::Value>) {
        let var = node
            .get("left")
            .and_then(|l| l.as_object())
            .filter(|l| l.len() == 1)
            .and_then(|l| l.get("Var"))
            .and_then(|v| v.as_str());
        // `has a` names one attribute; `has a.b` (a list) also reads the entity `a`.
        let attr = node.get("attr");
        let one_attr = match op {
            "." | "has" => attr.and_then(|a| a.as_str()),
            _ => None,
        };
        let reads_data = match op {
            "is" => node.contains_key("in"),
            _ => true,
        };
        match (var, one_attr) {
            // One attribute of the context record.
            (Some("context"), Some(a)) => {
                if a == "now" {
                    self.now = true;
                }
            }
            (Some("context"), None) => {
                self.now = true;
                if reads_data {
                    self.other_entities = true;
                }
            }
            // `principal has org.kind` reads the entity of `principal.org`.
            (Some(_), None) if op == "has" => self.other_entities = true,
            (Some(_), _) => {}
            (None, _) => {
                if reads_data {
                    self.other_entities = true;
                }
            }
        }
        for (key, x) in node {
            if key != "left" || var.is_none() {
                self.scan(x);
            }
        }
    }
}

/// Index of an (action, resource type) partition.
fn slot(action: Action, ty: ResourceType) -> usize {
    action.index() * ResourceType::ALL.len() + ty as usize
}

/// Splits the set by the scope of each policy: a policy goes into the partition of
/// (action, resource type) unless its scope can never match such a request (its action
/// constraint excludes the action, or its resource constraint names another type). A
/// policy left out would be "not satisfied" for those requests anyway, so decisions,
/// determining policies and errors are the same as with the whole set.
fn partition(
    set: &PolicySet,
    schema: &Schema,
    types: &Types,
) -> Result<Vec<PolicySet>, PolicyError> {
    let actions = schema
        .action_entities()
        .map_err(|e| PolicyError::Request(one_line(&e.to_string())))?;
    let mut out = Vec::with_capacity(Action::ALL.len() * ResourceType::ALL.len());
    for action in Action::ALL {
        let uid = types.action(action);
        for ty in ResourceType::ALL {
            let mut part = PolicySet::new();
            for p in set.policies() {
                let action_ok = match p.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => a == uid,
                    ActionConstraint::In(list) => list
                        .iter()
                        .any(|a| *a == uid || actions.is_ancestor_of(a, &uid)),
                };
                let resource_ok = match p.resource_constraint() {
                    ResourceConstraint::Any | ResourceConstraint::In(_) => true,
                    ResourceConstraint::Eq(r) => r.type_name().to_string() == ty.as_str(),
                    ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => {
                        t.to_string() == ty.as_str()
                    }
                };
                if action_ok && resource_ok {
                    part.add(p.clone())
                        .map_err(|e| PolicyError::Request(one_line(&e.to_string())))?;
                }
            }
            out.push(part);
        }
    }
    Ok(out)
}

/// The schema's action entity and applicable resource types for each [`Action`]; an
/// action the code knows that the schema does not declare is an error.
fn action_table(schema: &Schema, types: &Types) -> Result<(Vec<Entity>, Vec<u8>), PolicyError> {
    let declared = schema
        .action_entities()
        .map_err(|e| PolicyError::Request(one_line(&e.to_string())))?;
    let mut entities = Vec::with_capacity(Action::ALL.len());
    let mut applies = Vec::with_capacity(Action::ALL.len());
    let mut diags = Vec::new();
    for action in Action::ALL {
        let uid = types.action(action);
        let Some(entity) = declared.get(&uid) else {
            diags.push(file_diag(
                SCHEMA_FILE,
                format!("action `{action}` is not declared"),
            ));
            continue;
        };
        entities.push(entity.clone());
        let mut bits = 0u8;
        if let Some(resources) = schema.resources_for_action(&uid) {
            let names: HashSet<String> = resources.map(|t| t.to_string()).collect();
            for ty in ResourceType::ALL {
                if names.contains(ty.as_str()) {
                    bits |= ty.bit();
                }
            }
        }
        applies.push(bits);
    }
    if diags.is_empty() {
        Ok((entities, applies))
    } else {
        Err(PolicyError::Invalid(diags))
    }
}

/// Builds one entity of every kind the authorizer builds, with and without the optional
/// attributes, and checks the schema accepts them: a schema from a directory that does
/// not fit the code fails here, at load, not at the first request.
fn check_entities_conform(schema: &Schema, types: &Types) -> Result<(), PolicyError> {
    let t = types;
    let org = |id: &str, parents: &[EntityUid]| entities::org_entity(t, id, "branch", parents);
    let fail = |e: PolicyError| PolicyError::Invalid(vec![file_diag(SCHEMA_FILE, e.to_string())]);
    let c = t.org("C");
    let b = t.org("B");
    let samples = vec![
        org("C", &[]).map_err(fail)?,
        org("B", std::slice::from_ref(&c)).map_err(fail)?,
        entities::user_entity(
            t,
            "u1",
            "org_dept",
            false,
            Some("B"),
            Some("M"),
            &[b.clone(), c.clone()],
        )
        .map_err(fail)?,
        entities::user_entity(t, "u2", "sysadmin", false, None, None, &[]).map_err(fail)?,
        entities::member_entity(t, "M", Some("B"), &[b.clone(), c.clone()]).map_err(fail)?,
        entities::member_entity(t, "N", None, &[]).map_err(fail)?,
        entities::report_entity(t, Some("B"), &[b, c]),
        entities::report_entity(t, None, &[]),
        entities::ledger_entity(t),
        entities::system_entity(t),
    ];
    Entities::from_entities(samples, Some(schema)).map_err(|e| {
        PolicyError::Invalid(vec![file_diag(
            SCHEMA_FILE,
            format!(
                "the schema does not accept the entities built from the projection: {}",
                one_line(&e.to_string())
            ),
        )])
    })?;
    Ok(())
}

fn file_diag(file: &str, message: String) -> PolicyDiagnostic {
    PolicyDiagnostic {
        file: file.to_string(),
        position: None,
        policy_id: None,
        message,
    }
}

/// One diagnostic per error (and per related error) of a Cedar error.
fn diagnostics(
    file: &str,
    text: &str,
    policy_id: Option<String>,
    err: &dyn Diagnostic,
) -> Vec<PolicyDiagnostic> {
    let related: Vec<&dyn Diagnostic> = err.related().map(|r| r.collect()).unwrap_or_default();
    if related.is_empty() {
        vec![diagnostic(file, text, policy_id, err)]
    } else {
        related
            .into_iter()
            .map(|r| diagnostic(file, text, policy_id.clone(), r))
            .collect()
    }
}

/// A Cedar error as a diagnostic: its message and help on one line, at its first label.
fn diagnostic(
    file: &str,
    text: &str,
    policy_id: Option<String>,
    err: &dyn Diagnostic,
) -> PolicyDiagnostic {
    let offset = err
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let mut message = one_line(&err.to_string());
    if let Some(help) = err.help() {
        message.push_str(" (help: ");
        message.push_str(&one_line(&help.to_string()));
        message.push(')');
    }
    PolicyDiagnostic {
        file: file.to_string(),
        position: offset.and_then(|o| line_col(text, o)),
        policy_id,
        message,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The 1-based (line, column in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..)?.chars().count() + 1;
    Some((line, col))
}

/// Where a policy's source text starts in its file.
fn position_of_text(file_text: &str, policy_text: &str) -> Option<(usize, usize)> {
    let start = file_text.find(policy_text.trim())?;
    line_col(file_text, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(files: &mut [PolicyFile], name: &str, text: &str) {
        for f in files.iter_mut() {
            if f.name == name {
                f.text = text.to_string();
            }
        }
    }

    fn invalid(files: Vec<PolicyFile>) -> Vec<PolicyDiagnostic> {
        match Policies::from_files(files) {
            Err(PolicyError::Invalid(d)) => d,
            Err(e) => panic!("expected invalid, got {e}"),
            Ok(_) => panic!("expected invalid, got a policy set"),
        }
    }

    #[test]
    fn embedded_set_loads_with_every_policy_named() {
        let p = Policies::embedded().expect("embedded policies load");
        let ids = p.policy_ids();
        assert!(ids.contains(&"org_dept.read_subtree".to_string()));
        assert!(ids.contains(&"separation.admins_no_member_data".to_string()));
        assert_eq!(p.file_of("account.disabled"), Some("separation.cedar"));
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
        for a in Action::ALL {
            assert!(p.action_entity(a).is_some(), "{a}");
        }
        assert!(p.applies(Action::ReadSensitive, ResourceType::Member));
        assert!(!p.applies(Action::ReadSensitive, ResourceType::Report));
        assert!(!p.applies(Action::ManageKeys, ResourceType::Member));
    }

    /// The default set with one more policy file `extra.cedar` holding `text`.
    fn with_extra(text: &str) -> Policies {
        let mut files = default_files();
        files.push(PolicyFile {
            name: "extra.cedar".into(),
            text: text.into(),
        });
        Policies::from_files(files).expect("valid")
    }

    #[test]
    fn default_policies_read_neither_now_nor_other_entities() {
        let p = Policies::embedded().expect("embedded policies load");
        assert!(!p.reads_now());
        assert!(!p.reads_other_entities());
    }

    #[test]
    fn reads_of_now_and_other_entities_are_found() {
        let cases = [
            // (condition, reads now, reads other entities)
            (
                "context has now && context.now > datetime(\"2030-01-01\")",
                true,
                false,
            ),
            (
                "context has change_actor && context.change_actor == principal",
                false,
                false,
            ),
            (
                "context has change_actor && context.change_actor.role == \"x\"",
                false,
                true,
            ),
            (
                "principal has org && principal.org.kind == \"branch\"",
                false,
                true,
            ),
            ("principal has org.kind", false, true),
            (
                "resource has org && resource.org in Org::\"C1\"",
                false,
                true,
            ),
            ("Org::\"C1\".kind == \"committee\"", false, true),
            (
                "principal has org && principal.org is Org in Org::\"C1\"",
                false,
                true,
            ),
            ("principal has org && principal.org is Org", false, false),
            (
                "resource in Org::\"C1\" && principal.role == \"x\"",
                false,
                false,
            ),
        ];
        for (when, now, other) in cases {
            let p = with_extra(&format!(
                "@id(\"extra\")\nforbid (principal is User, action, resource is Member)\nwhen {{ {when} }};\n"
            ));
            assert_eq!(
                (p.reads_now(), p.reads_other_entities()),
                (now, other),
                "{when}"
            );
        }
    }

    #[test]
    fn embedded_files_are_the_policies_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let from_dir = Policies::from_dir(&dir).expect("policies/ loads");
        let embedded = Policies::embedded().expect("embedded loads");
        assert_eq!(from_dir.files(), embedded.files());
        assert_eq!(from_dir.sha256(), embedded.sha256());

        let mut tests: Vec<String> = std::fs::read_dir(dir.join("tests"))
            .expect("policies/tests")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        tests.sort();
        let embedded_tests: Vec<String> = DEFAULT_TEST_FILES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(tests, embedded_tests);
    }

    #[test]
    fn hash_is_the_documented_encoding() {
        // Independent computation of the documented bytes for a two-file set.
        let files = vec![
            PolicyFile {
                name: "b.cedar".into(),
                text: "x".into(),
            },
            PolicyFile {
                name: "a.cedar".into(),
                text: "hello\n".into(),
            },
        ];
        let mut sorted = files.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let want = Sha256::digest(b"a.cedar\n6\nhello\nb.cedar\n1\nx");
        assert_eq!(hash_files(&sorted), <[u8; 32]>::from(want));
        // Moving a byte across the file boundary changes the hash.
        let moved = vec![
            PolicyFile {
                name: "a.cedar".into(),
                text: "hello\nb".into(),
            },
            PolicyFile {
                name: "b.cedar".into(),
                text: String::new(),
            },
        ];
        assert_ne!(hash_files(&sorted), hash_files(&moved));
    }

    #[test]
    fn hash_changes_with_any_policy_text() {
        let base = Policies::embedded().expect("loads");
        let mut files = default_files();
        for f in files.iter_mut() {
            if f.name == "admin.cedar" {
                f.text.push_str("\n// note\n");
            }
        }
        let changed = Policies::from_files(files).expect("still valid");
        assert_ne!(base.sha256(), changed.sha256());
        assert_eq!(base.sha256_hex().len(), 64);
    }

    #[test]
    fn fail_parse_error_names_file_and_position() {
        let mut files = default_files();
        replace(
            &mut files,
            "admin.cedar",
            "@id(\"a\")\npermit (principal, action, resource)\nwhen { principal.role == };\n",
        );
        let diags = invalid(files);
        let first = diags.first().expect("a diagnostic");
        assert_eq!(first.file, "admin.cedar");
        assert_eq!(first.position.map(|p| p.0), Some(3), "{first}");
        assert!(first.to_string().starts_with("admin.cedar:3:"), "{first}");
    }

    #[test]
    fn fail_validation_error_names_file_policy_and_position() {
        let mut files = default_files();
        replace(
            &mut files,
            "admin.cedar",
            "// first line\n@id(\"typo\")\npermit (principal is User, action == Action::\"read\", resource)\nwhen { principal.rolle == \"auditor\" };\n",
        );
        let diags = invalid(files);
        let first = diags.first().expect("a diagnostic");
        assert_eq!(first.file, "admin.cedar");
        assert_eq!(first.policy_id.as_deref(), Some("typo"));
        assert_eq!(first.position.map(|p| p.0), Some(4), "{first}");
        assert!(first.message.contains("rolle"), "{first}");
    }

    #[test]
    fn fail_unknown_action_in_policy() {
        let mut files = default_files();
        replace(
            &mut files,
            "admin.cedar",
            "@id(\"x\")\npermit (principal, action == Action::\"delete\", resource);\n",
        );
        let diags = invalid(files);
        assert!(diags.iter().all(|d| d.file == "admin.cedar"), "{diags:?}");
        assert!(
            diags.iter().any(|d| d.message.contains("delete")),
            "{diags:?}"
        );
    }

    #[test]
    fn fail_missing_and_duplicate_ids() {
        let mut files = default_files();
        replace(
            &mut files,
            "admin.cedar",
            "permit (principal, action == Action::\"read\", resource is Ledger);\n\n@id(\"account.disabled\")\npermit (principal, action == Action::\"read\", resource is Ledger);\n",
        );
        let diags = invalid(files);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert_eq!(
            diags[0].to_string(),
            "admin.cedar:1:1: policy has no `@id(\"…\")` annotation"
        );
        // admin.cedar comes first by name, so the id is taken there and the policy in
        // separation.cedar is the duplicate.
        assert_eq!(
            diags[1].to_string(),
            "separation.cedar:5:1: policy id `account.disabled` is already used in `admin.cedar`"
        );
    }

    #[test]
    fn fail_templates_refused() {
        let mut files = default_files();
        replace(
            &mut files,
            "admin.cedar",
            "@id(\"t\")\npermit (principal == ?principal, action, resource);\n",
        );
        let diags = invalid(files);
        assert!(
            diags
                .iter()
                .any(|d| d.message == "templates are not supported"),
            "{diags:?}"
        );
    }

    #[test]
    fn fail_schema_error_names_schema_file() {
        let mut files = default_files();
        replace(&mut files, SCHEMA_FILE, "entity User = { role: Strin };\n");
        let diags = invalid(files);
        assert!(diags.iter().all(|d| d.file == SCHEMA_FILE), "{diags:?}");
        assert!(
            diags.iter().any(|d| d.message.contains("Strin")),
            "{diags:?}"
        );
    }

    #[test]
    fn fail_schema_that_does_not_fit_the_entities() {
        // Valid Cedar and the policies validate, but `Member` requires an attribute the
        // code never sets: caught at load, not at the first request.
        let mut files = default_files();
        let schema = DEFAULT_POLICY_FILES
            .iter()
            .find(|(n, _)| *n == SCHEMA_FILE)
            .map(|(_, t)| {
                t.replace(
                    "entity Member in [Org] = {\n",
                    "entity Member in [Org] = {\n  \"branch_name\": String,\n",
                )
            })
            .expect("schema present");
        assert!(schema.contains("branch_name"));
        replace(&mut files, SCHEMA_FILE, &schema);
        let diags = invalid(files);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].file, SCHEMA_FILE);
        assert!(diags[0].message.contains("does not accept"), "{}", diags[0]);
    }

    #[test]
    fn fail_directory_without_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.cedar"), "").expect("write");
        let err = Policies::from_dir(dir.path()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("no schema file")));
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\n党建x";
        assert_eq!(line_col(text, 0), Some((1, 1)));
        assert_eq!(line_col(text, 3), Some((2, 1)));
        assert_eq!(line_col(text, 9), Some((2, 3)));
        assert_eq!(line_col(text, 4), None, "not a char boundary");
    }
}
