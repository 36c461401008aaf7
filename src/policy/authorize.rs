//! The decision point: one request (user, action, resource) in, one [`Decision`] out.
//!
//! The org hierarchy is cached at construction ([`Authorizer::reload_orgs`] after org
//! changes); the user and the member record are read from the projection on every
//! request, so a disabled account or a moved member takes effect at once. It must not
//! write anything: recording the decision is the caller's job.
//!
//! The entities built from those rows are kept and reused while the row read on a later
//! request is the same (and the org hierarchy has not been reloaded): a changed role,
//! org or `disabled` flag is a different row, so the entity is built afresh.

use std::collections::HashMap;
use std::sync::Mutex;

use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, Request, RestrictedExpression,
};
use rusqlite::Connection;

use super::entities::{
    self, load_member_org, load_user, load_user_and_member_org, ChainRef, OrgTree, UserRow,
};
use super::{Action, Decision, Policies, PolicyError, Resource};

/// Most entities kept per cache; a full cache is emptied and fills again.
const MAX_CACHED: usize = 1 << 16;

/// Facts about a request besides principal, action and resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The user who made the change being approved (`approve` requests): nobody may
    /// approve their own change.
    pub change_actor: Option<String>,
    /// When the request is made.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Decides requests with one policy set against the projection.
///
/// `Authorizer` owns no database connection: every call takes the caller's, so one
/// authorizer (`Send + Sync`) can serve many threads, each with its own connection.
#[derive(Debug)]
pub struct Authorizer {
    policies: Policies,
    orgs: OrgTree,
    engine: cedar_policy::Authorizer,
    /// `User` entities by user id, with the row each was built from.
    principals: EntityCache<UserRow>,
    /// `Member` entities by member id, with the org each was built in.
    members: EntityCache<Option<String>>,
}

/// What was read of the member a request is about, together with the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberRow {
    /// Not read (the resource is not an existing member, or the caller read only the
    /// user): read when needed.
    Unread,
    /// No such member.
    Missing,
    /// The member is in this org, or in none.
    In(Option<String>),
}

impl Authorizer {
    /// An authorizer for `policies`, with the org hierarchy of the projection cached.
    pub fn new(policies: Policies, conn: &Connection) -> Result<Self, PolicyError> {
        let orgs = OrgTree::load(conn, &policies.types)?;
        Ok(Authorizer {
            policies,
            orgs,
            engine: cedar_policy::Authorizer::new(),
            principals: EntityCache::default(),
            members: EntityCache::default(),
        })
    }

    /// The policy set in use.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Replaces the policy set (after a `policy.load`).
    pub fn set_policies(&mut self, policies: Policies) {
        self.policies = policies;
        self.forget_entities();
    }

    /// Reloads the cached org hierarchy; call it after any change to the `org` table. (An
    /// org added since the last load is found without it, through a slower path; a changed
    /// parent is not.)
    pub fn reload_orgs(&mut self, conn: &Connection) -> Result<(), PolicyError> {
        self.orgs = OrgTree::load(conn, &self.policies.types)?;
        self.forget_entities();
        Ok(())
    }

    /// Drops every kept entity: they carry the org chains of the old hierarchy.
    fn forget_entities(&mut self) {
        self.principals = EntityCache::default();
        self.members = EntityCache::default();
    }

    /// Number of orgs in the cached hierarchy.
    pub fn cached_orgs(&self) -> usize {
        self.orgs.len()
    }

    /// May `user_id` perform `action` on `resource`? An unknown or disabled user is
    /// refused with an error before any policy is asked.
    pub fn decide(
        &self,
        conn: &Connection,
        user_id: &str,
        action: Action,
        resource: &Resource,
    ) -> Result<Decision, PolicyError> {
        self.decide_with(conn, user_id, action, resource, &RequestContext::default())
    }

    /// [`Authorizer::decide`] with a request context (e.g. the author of the change
    /// being approved).
    pub fn decide_with(
        &self,
        conn: &Connection,
        user_id: &str,
        action: Action,
        resource: &Resource,
        ctx: &RequestContext,
    ) -> Result<Decision, PolicyError> {
        let (user, member) = self.read_rows(conn, user_id, resource)?;
        if user.disabled {
            return Err(PolicyError::DisabledUser(user_id.to_string()));
        }
        self.evaluate_read(conn, user_id, &user, member, action, resource, ctx)
    }

    /// Reads the user's row and, when the resource is an existing member, the member's,
    /// in one statement. An unknown user is an error.
    pub(crate) fn read_rows(
        &self,
        conn: &Connection,
        user_id: &str,
        resource: &Resource,
    ) -> Result<(UserRow, MemberRow), PolicyError> {
        let rows = match resource {
            Resource::Member(id) => load_user_and_member_org(conn, user_id, id)?.map(|(u, m)| {
                let m = match m {
                    Some(org) => MemberRow::In(org),
                    None => MemberRow::Missing,
                };
                (u, m)
            }),
            _ => load_user(conn, user_id)?.map(|u| (u, MemberRow::Unread)),
        };
        rows.ok_or_else(|| PolicyError::UnknownUser(user_id.to_string()))
    }

    /// May `user_id` see the sensitive fields (ID number, phone, income) of member
    /// `member_id` unmasked? The masking decision for every reader of member data.
    pub fn can_read_sensitive(
        &self,
        conn: &Connection,
        user_id: &str,
        member_id: &str,
    ) -> Result<bool, PolicyError> {
        let d = self.decide(
            conn,
            user_id,
            Action::ReadSensitive,
            &Resource::Member(member_id.to_string()),
        )?;
        Ok(d.allowed)
    }

    /// Asks the policies, without refusing a disabled user first (the policy test runner
    /// uses this so that the policies' own forbid for disabled accounts is exercised).
    pub(crate) fn evaluate(
        &self,
        conn: &Connection,
        user_id: &str,
        user: &UserRow,
        action: Action,
        resource: &Resource,
        ctx: &RequestContext,
    ) -> Result<Decision, PolicyError> {
        self.evaluate_read(
            conn,
            user_id,
            user,
            MemberRow::Unread,
            action,
            resource,
            ctx,
        )
    }

    /// [`Authorizer::evaluate`] with the member row already read ([`Authorizer::read_rows`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn evaluate_read(
        &self,
        conn: &Connection,
        user_id: &str,
        user: &UserRow,
        member: MemberRow,
        action: Action,
        resource: &Resource,
        ctx: &RequestContext,
    ) -> Result<Decision, PolicyError> {
        let (request, store) = self.build(conn, user_id, user, member, action, resource, ctx)?;
        let entities = Entities::from_entities(store, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let set = self
            .policies
            .cedar_set_for(action, resource.resource_type());
        let response = self.engine.is_authorized(&request, set, &entities);
        let diagnostics = response.diagnostics();
        let mut policy_ids: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
        policy_ids.sort();
        let mut errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        errors.sort();
        Ok(Decision {
            allowed: response.decision() == CedarDecision::Allow && errors.is_empty(),
            policy_ids,
            errors,
        })
    }

    /// The Cedar request and the entities it needs.
    ///
    /// When no policy reads the data of an entity other than the principal, the resource
    /// and the action ([`Policies::reads_other_entities`]), the orgs above them are left
    /// out: they are named, already closed, in the principal's and the resource's
    /// ancestors, which is all `in` looks at.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        conn: &Connection,
        user_id: &str,
        user: &UserRow,
        member: MemberRow,
        action: Action,
        resource: &Resource,
        ctx: &RequestContext,
    ) -> Result<(Request, Vec<Entity>), PolicyError> {
        let p = &self.policies;
        let t = &p.types;
        if !p.applies(action, resource.resource_type()) {
            return Err(PolicyError::NotApplicable {
                action,
                resource: resource.to_string(),
            });
        }
        let orgs_read = p.reads_other_entities();
        let mut store = Store::default();

        // Principal: the user, in its org and every org above it.
        let user_chain = match &user.org_id {
            Some(org) => self.orgs.chain(conn, t, org, false)?.unwrap_or_default(),
            None => ChainRef::default(),
        };
        // Kept only when built from the cached hierarchy, which changes only on reload.
        let keep = user.org_id.is_none() || user_chain.is_cached();
        let principal = match keep.then(|| self.principals.get(user_id, user)).flatten() {
            Some(e) => e,
            None => {
                let e = entities::user_entity(
                    t,
                    user_id,
                    &user.role,
                    user.disabled,
                    user.org_id.as_deref(),
                    user.member_id.as_deref(),
                    user_chain.uids(),
                )?;
                if keep {
                    self.principals.put(user_id, user.clone(), e.clone());
                }
                e
            }
        };
        let principal_uid = principal.uid();
        store.push(principal);

        // Resource, and the orgs above it.
        let unknown = || PolicyError::UnknownResource(resource.to_string());
        let resource_uid = match resource {
            Resource::Member(id) => {
                let org = match member {
                    MemberRow::In(org) => org,
                    MemberRow::Missing => return Err(unknown()),
                    MemberRow::Unread => load_member_org(conn, id)?.ok_or_else(unknown)?,
                };
                self.member(conn, &mut store, id, org, orgs_read)?
            }
            Resource::NewMember { member_id, org_id } => {
                self.member(conn, &mut store, member_id, Some(org_id.clone()), orgs_read)?
            }
            Resource::Org(id) => {
                let chain = self.orgs.chain(conn, t, id, true)?.ok_or_else(unknown)?;
                // The resource itself: always there.
                store.extend(chain.entity());
                t.org(id)
            }
            Resource::NewOrg {
                org_id,
                kind,
                parent_id,
            } => {
                let above = match parent_id {
                    Some(parent) => self.orgs.chain(conn, t, parent, false)?.unwrap_or_default(),
                    None => ChainRef::default(),
                };
                let uid = t.org(org_id);
                if above.uids().contains(&uid) {
                    return Err(PolicyError::Request(format!(
                        "org `{org_id}` cannot be placed below itself"
                    )));
                }
                // The new entity first, so that it wins over a cached org of the same id.
                store.push(entities::org_entity(t, org_id, kind, above.uids())?);
                if orgs_read {
                    store.extend(above.entity());
                }
                uid
            }
            Resource::Ledger => {
                let e = entities::ledger_entity(t);
                let uid = e.uid();
                store.push(e);
                uid
            }
            Resource::System => {
                let e = entities::system_entity(t);
                let uid = e.uid();
                store.push(e);
                uid
            }
            Resource::Report(org) => {
                let above = match org {
                    Some(org) => self.orgs.chain(conn, t, org, false)?.unwrap_or_default(),
                    None => ChainRef::default(),
                };
                let e = entities::report_entity(t, org.as_deref(), above.uids());
                let uid = e.uid();
                store.push(e);
                if orgs_read {
                    store.extend(above.entity());
                }
                uid
            }
        };
        if orgs_read {
            store.extend(user_chain.entity());
        }
        if p.needs_action_entity() {
            if let Some(a) = p.action_entity(action) {
                store.push(a.clone());
            }
        }

        let context = context(t, ctx, p.reads_now())?;
        let request = Request::new(principal_uid, t.action(action), resource_uid, context, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        Ok((request, store.list))
    }

    /// Pushes a member entity (in `org` and above) and, when `orgs_read`, its org;
    /// returns its uid.
    fn member(
        &self,
        conn: &Connection,
        store: &mut Store,
        id: &str,
        org: Option<String>,
        orgs_read: bool,
    ) -> Result<cedar_policy::EntityUid, PolicyError> {
        let t = &self.policies.types;
        let chain = match &org {
            Some(org) => self.orgs.chain(conn, t, org, false)?.unwrap_or_default(),
            None => ChainRef::default(),
        };
        let keep = org.is_none() || chain.is_cached();
        let e = match keep.then(|| self.members.get(id, &org)).flatten() {
            Some(e) => e,
            None => {
                let e = entities::member_entity(t, id, org.as_deref(), chain.uids())?;
                if keep {
                    self.members.put(id, org, e.clone());
                }
                e
            }
        };
        let uid = e.uid();
        store.push(e);
        if orgs_read {
            store.extend(chain.entity());
        }
        Ok(uid)
    }
}

/// Entities built from projection rows, by id, each with the row (or part of it) it was
/// built from: an entity is reused only for the same row. Thread-safe; a poisoned lock
/// only stops the reuse.
struct EntityCache<K> {
    map: Mutex<HashMap<String, (K, Entity)>>,
}

impl<K> Default for EntityCache<K> {
    fn default() -> Self {
        EntityCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K> std::fmt::Debug for EntityCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "EntityCache({len})")
    }
}

impl<K: PartialEq> EntityCache<K> {
    /// The entity of `id` if it was built from `row`.
    fn get(&self, id: &str, row: &K) -> Option<Entity> {
        let map = self.map.lock().ok()?;
        map.get(id)
            .filter(|(built_from, _)| built_from == row)
            .map(|(_, e)| e.clone())
    }

    fn put(&self, id: &str, row: K, entity: Entity) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_CACHED && !map.contains_key(id) {
                map.clear();
            }
            map.insert(id.to_string(), (row, entity));
        }
    }
}

/// The entities of one request, each uid once (the first pushed wins).
#[derive(Default)]
struct Store {
    list: Vec<Entity>,
    uids: Vec<cedar_policy::EntityUid>,
}

impl Store {
    fn push(&mut self, e: Entity) {
        let uid = e.uid();
        if !self.uids.contains(&uid) {
            self.uids.push(uid);
            self.list.push(e);
        }
    }

    fn extend(&mut self, entity: Option<&Entity>) {
        if let Some(e) = entity {
            self.push(e.clone());
        }
    }
}

/// The Cedar context of `ctx`; `now` only when `with_now` (some policy may read it).
fn context(
    t: &entities::Types,
    ctx: &RequestContext,
    with_now: bool,
) -> Result<Context, PolicyError> {
    let mut pairs = Vec::new();
    if let Some(actor) = &ctx.change_actor {
        pairs.push((
            "change_actor".to_string(),
            RestrictedExpression::new_entity_uid(t.user(actor)),
        ));
    }
    if let Some(now) = ctx.now.as_ref().filter(|_| with_now) {
        pairs.push((
            "now".to_string(),
            RestrictedExpression::new_datetime(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
        ));
    }
    if pairs.is_empty() {
        return Ok(Context::empty());
    }
    Context::from_pairs(pairs).map_err(|e| PolicyError::Request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policies;
    use std::time::Instant;

    /// The fixture tree of `policies/tests/fixture.toml`, in a projection:
    /// C1 > G1 > {B1, B2}, C1 > B3; C2 > B9.
    fn projection() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(include_str!("../records/schema.sql"))
            .expect("schema");
        conn.execute_batch(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES
               ('C1','C1','committee',NULL,0), ('G1','G1','general_branch','C1',0),
               ('B1','B1','branch','G1',0), ('B2','B2','branch','G1',0),
               ('B3','B3','branch','C1',0), ('C2','C2','committee',NULL,0),
               ('B9','B9','branch','C2',0);
             INSERT INTO member (member_id, org_id, last_seq) VALUES
               ('M1','B1',0), ('M2','B1',0), ('M3','B2',0), ('M4','B3',0), ('M9','B9',0),
               ('M0',NULL,0), ('MZ','ZZ',0);
             INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq) VALUES
               ('dept-c1','org_dept','C1',NULL,0,0), ('prov-b1','provider','B1',NULL,0,0),
               ('prov-b2','provider','B2',NULL,0,0), ('mem-1','member','B1','M1',0,0),
               ('sys','sysadmin',NULL,NULL,0,0), ('aud','auditor',NULL,NULL,0,0),
               ('off','org_dept','C1',NULL,1,0), ('sys-zz','sysadmin','ZZ',NULL,0,0);",
        )
        .expect("rows");
        conn
    }

    fn authorizer(conn: &Connection) -> Authorizer {
        Authorizer::new(Policies::embedded().expect("policies"), conn).expect("authorizer")
    }

    fn member(id: &str) -> Resource {
        Resource::Member(id.to_string())
    }

    fn allowed(
        a: &Authorizer,
        conn: &Connection,
        user: &str,
        action: Action,
        r: &Resource,
    ) -> bool {
        a.decide(conn, user, action, r).expect("decision").allowed
    }

    #[test]
    fn committee_department_reads_a_member_below_a_general_branch() {
        let conn = projection();
        let a = authorizer(&conn);
        let d = a
            .decide(&conn, "dept-c1", Action::Read, &member("M1"))
            .expect("decision");
        assert!(d.allowed);
        assert_eq!(d.policy_ids, ["org_dept.read_subtree"]);
        assert!(d.errors.is_empty());
        assert!(a
            .can_read_sensitive(&conn, "dept-c1", "M3")
            .expect("decision"));
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M9")));
    }

    #[test]
    fn fail_provider_of_branch_a_cannot_touch_branch_b() {
        let conn = projection();
        let a = authorizer(&conn);
        assert!(allowed(&a, &conn, "prov-b1", Action::Read, &member("M1")));
        assert!(allowed(&a, &conn, "prov-b1", Action::Update, &member("M2")));
        for action in [
            Action::Read,
            Action::Update,
            Action::ReadSensitive,
            Action::Approve,
        ] {
            let d = a
                .decide(&conn, "prov-b1", action, &member("M3"))
                .expect("decision");
            assert!(!d.allowed, "{action}");
            assert!(d.policy_ids.is_empty(), "{action}: {:?}", d.policy_ids);
        }
        assert!(!a
            .can_read_sensitive(&conn, "prov-b1", "M1")
            .expect("decision"));
    }

    #[test]
    fn fail_unknown_user_refused() {
        let conn = projection();
        let a = authorizer(&conn);
        let err = a.decide(&conn, "nobody", Action::Read, &member("M1")).err();
        assert!(matches!(&err, Some(PolicyError::UnknownUser(u)) if u == "nobody"));
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("unknown user `nobody`")
        );
    }

    #[test]
    fn fail_disabled_user_refused() {
        let conn = projection();
        let a = authorizer(&conn);
        let err = a.decide(&conn, "off", Action::Read, &member("M1")).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("user `off` is disabled")
        );
        // Re-enabling takes effect at once: users are read per request.
        conn.execute("UPDATE user SET disabled = 0 WHERE user_id = 'off'", [])
            .expect("update");
        assert!(allowed(&a, &conn, "off", Action::Read, &member("M1")));
    }

    #[test]
    fn self_approval_is_refused_for_anyone() {
        let conn = projection();
        let a = authorizer(&conn);
        let ctx = |actor: &str| RequestContext {
            change_actor: Some(actor.to_string()),
            now: chrono::DateTime::from_timestamp(1_780_000_000, 0),
        };
        let other = a
            .decide_with(
                &conn,
                "dept-c1",
                Action::Approve,
                &member("M1"),
                &ctx("prov-b1"),
            )
            .expect("decision");
        assert!(other.allowed);
        let own = a
            .decide_with(
                &conn,
                "dept-c1",
                Action::Approve,
                &member("M1"),
                &ctx("dept-c1"),
            )
            .expect("decision");
        assert!(!own.allowed);
        assert_eq!(own.policy_ids, ["separation.no_self_approval"]);
    }

    #[test]
    fn fail_unknown_records_and_inapplicable_actions() {
        let conn = projection();
        let a = authorizer(&conn);
        let err = a
            .decide(&conn, "dept-c1", Action::Read, &member("M404"))
            .err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("no such record `member/M404`")
        );
        let err = a
            .decide(
                &conn,
                "dept-c1",
                Action::Read,
                &Resource::Org("X404".into()),
            )
            .err();
        assert!(matches!(err, Some(PolicyError::UnknownResource(_))));
        let err = a
            .decide(&conn, "sys", Action::ManageKeys, &member("M1"))
            .err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("action `manage_keys` does not apply to `member/M1`")
        );
    }

    #[test]
    fn fail_moving_an_org_below_itself() {
        let conn = projection();
        let a = authorizer(&conn);
        let r = Resource::NewOrg {
            org_id: "G1".into(),
            kind: "general_branch".into(),
            parent_id: Some("B1".into()),
        };
        let err = a.decide(&conn, "dept-c1", Action::Update, &r).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("cannot build the request: org `G1` cannot be placed below itself")
        );
        // Moving it under the other committee is a question the policy answers.
        let r = Resource::NewOrg {
            org_id: "G1".into(),
            kind: "general_branch".into(),
            parent_id: Some("C2".into()),
        };
        let d = a
            .decide(&conn, "dept-c1", Action::Update, &r)
            .expect("decision");
        assert!(!d.allowed);
    }

    #[test]
    fn members_without_a_known_org_are_reachable_only_by_themselves() {
        let conn = projection();
        let a = authorizer(&conn);
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M0")));
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("MZ")));
    }

    #[test]
    fn org_added_after_load_is_found_and_reload_sees_moves() {
        let conn = projection();
        let mut a = authorizer(&conn);
        assert_eq!(a.cached_orgs(), 7);
        conn.execute_batch(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES ('B5','B5','branch','G1',1);
             INSERT INTO member (member_id, org_id, last_seq) VALUES ('M5','B5',1);",
        )
        .expect("insert");
        // Not cached yet: found through the projection.
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M5")));
        // M4 (in B3) is read once, so its entity is kept, with B3's place in it.
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M4")));
        // Move B3 under C2: stale until reloaded, right after.
        conn.execute("UPDATE org SET parent_id = 'C2' WHERE org_id = 'B3'", [])
            .expect("move");
        a.reload_orgs(&conn).expect("reload");
        assert_eq!(a.cached_orgs(), 8);
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M4")));
    }

    #[test]
    fn fail_kept_principal_never_outlives_its_row() {
        // Every change to the user row is seen by the next decision of the same
        // authorizer, whose entity for that user was built (and kept) by the one before.
        let conn = projection();
        let a = authorizer(&conn);
        let set = |sql: &str| conn.execute(sql, []).expect("update");
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        set("UPDATE user SET disabled = 1 WHERE user_id = 'dept-c1'");
        let err = a
            .decide(&conn, "dept-c1", Action::Read, &member("M1"))
            .err();
        assert!(matches!(err, Some(PolicyError::DisabledUser(_))), "{err:?}");
        // The policies see the flag too (the path the policy tests take).
        let row = load_user(&conn, "dept-c1").expect("query").expect("user");
        let d = a
            .evaluate(
                &conn,
                "dept-c1",
                &row,
                Action::Read,
                &member("M1"),
                &RequestContext::default(),
            )
            .expect("decision");
        assert!(!d.allowed);
        assert_eq!(d.policy_ids, ["account.disabled"]);
        set("UPDATE user SET disabled = 0 WHERE user_id = 'dept-c1'");
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        // A role change.
        set("UPDATE user SET role = 'provider' WHERE user_id = 'dept-c1'");
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        // A move (provider of B1 now).
        set("UPDATE user SET org_id = 'B1' WHERE user_id = 'dept-c1'");
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M3")));
        // Back to the department, of the other committee.
        set("UPDATE user SET role = 'org_dept', org_id = 'C2' WHERE user_id = 'dept-c1'");
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M9")));
        // A member account's own record.
        set("UPDATE user SET member_id = 'M2' WHERE user_id = 'mem-1'");
        assert!(!allowed(&a, &conn, "mem-1", Action::Read, &member("M1")));
        assert!(allowed(&a, &conn, "mem-1", Action::Read, &member("M2")));
        // A deleted account.
        set("DELETE FROM user WHERE user_id = 'prov-b1'");
        let err = a
            .decide(&conn, "prov-b1", Action::Read, &member("M1"))
            .err();
        assert!(matches!(err, Some(PolicyError::UnknownUser(_))), "{err:?}");
    }

    #[test]
    fn fail_kept_member_never_outlives_its_row() {
        let conn = projection();
        let a = authorizer(&conn);
        assert!(allowed(&a, &conn, "prov-b1", Action::Read, &member("M1")));
        assert!(!allowed(&a, &conn, "prov-b2", Action::Read, &member("M1")));
        conn.execute("UPDATE member SET org_id = 'B2' WHERE member_id = 'M1'", [])
            .expect("move");
        assert!(!allowed(&a, &conn, "prov-b1", Action::Read, &member("M1")));
        assert!(allowed(&a, &conn, "prov-b2", Action::Read, &member("M1")));
        conn.execute("UPDATE member SET org_id = 'B9' WHERE member_id = 'M1'", [])
            .expect("move");
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        conn.execute("DELETE FROM member WHERE member_id = 'M1'", [])
            .expect("delete");
        let err = a
            .decide(&conn, "dept-c1", Action::Read, &member("M1"))
            .err();
        assert!(
            matches!(err, Some(PolicyError::UnknownResource(_))),
            "{err:?}"
        );
        // The same member placed elsewhere by the change being decided.
        let moved = Resource::NewMember {
            member_id: "M2".into(),
            org_id: "B2".into(),
        };
        assert!(allowed(&a, &conn, "prov-b1", Action::Read, &member("M2")));
        assert!(!allowed(&a, &conn, "prov-b1", Action::Update, &moved));
        assert!(allowed(&a, &conn, "prov-b2", Action::Update, &moved));
    }

    #[test]
    fn fail_uncached_org_moves_are_seen_without_reload() {
        // Entities in an org added since the hierarchy was loaded are built from the
        // projection every time, never kept.
        let conn = projection();
        let a = authorizer(&conn);
        conn.execute_batch(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES ('B5','B5','branch','G1',1);
             INSERT INTO member (member_id, org_id, last_seq) VALUES ('M5','B5',1);
             INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq)
               VALUES ('dept-b5','org_dept','B5',NULL,0,1);",
        )
        .expect("insert");
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M5")));
        assert!(allowed(&a, &conn, "dept-b5", Action::Read, &member("M5")));
        conn.execute("UPDATE org SET parent_id = 'C2' WHERE org_id = 'B5'", [])
            .expect("move");
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M5")));
        conn.execute("UPDATE member SET org_id = 'B1' WHERE member_id = 'M5'", [])
            .expect("move");
        assert!(!allowed(&a, &conn, "dept-b5", Action::Read, &member("M5")));
    }

    #[test]
    fn decisions_are_the_same_with_and_without_the_orgs_above() {
        // A policy that reads an org's attribute (never satisfied, never failing) makes
        // every request carry the org entities; the answers must not change.
        let policies = Policies::embedded_plus("extra.cedar", "@id(\"extra.reads_orgs\")\nforbid (principal is User, action, resource)\nwhen { false && principal has org && principal.org.kind == \"none\" };\n");
        let conn = projection();
        let lean = authorizer(&conn);
        let full = Authorizer::new(policies, &conn).expect("authorizer");
        assert!(!lean.policies().reads_other_entities());
        assert!(full.policies().reads_other_entities());
        let resources = [
            member("M1"),
            member("M3"),
            member("M4"),
            member("M9"),
            member("M0"),
            member("MZ"),
            Resource::NewMember {
                member_id: "M1".into(),
                org_id: "B3".into(),
            },
            Resource::Org("B1".into()),
            Resource::Org("G1".into()),
            Resource::Org("C1".into()),
            Resource::NewOrg {
                org_id: "G1".into(),
                kind: "general_branch".into(),
                parent_id: Some("C2".into()),
            },
            Resource::NewOrg {
                org_id: "B7".into(),
                kind: "branch".into(),
                parent_id: Some("G1".into()),
            },
            Resource::Ledger,
            Resource::Report(Some("G1".into())),
            Resource::Report(Some("B1".into())),
            Resource::Report(None),
            Resource::System,
        ];
        let users = [
            "dept-c1", "prov-b1", "prov-b2", "mem-1", "sys", "aud", "off", "sys-zz",
        ];
        let mut compared = 0;
        for user in users {
            let row = load_user(&conn, user).expect("query").expect("user");
            for r in &resources {
                for action in Action::ALL {
                    for actor in [None, Some("prov-b1".to_string())] {
                        let ctx = RequestContext {
                            change_actor: actor,
                            now: chrono::DateTime::from_timestamp(1_780_000_000, 0),
                        };
                        let want =
                            format!("{:?}", full.evaluate(&conn, user, &row, action, r, &ctx));
                        let got =
                            format!("{:?}", lean.evaluate(&conn, user, &row, action, r, &ctx));
                        assert_eq!(got, want, "{user} {action} {r}");
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(
            compared,
            users.len() * resources.len() * Action::ALL.len() * 2
        );
    }

    #[test]
    fn now_is_given_to_policies_that_read_it() {
        let policies = Policies::embedded_plus("extra.cedar", "@id(\"extra.not_after_2030\")\nforbid (principal is User, action, resource)\nwhen { context has now && context.now >= datetime(\"2030-01-01\") };\n");
        let conn = projection();
        let a = Authorizer::new(policies, &conn).expect("authorizer");
        assert!(a.policies().reads_now());
        let at = |secs| RequestContext {
            change_actor: None,
            now: chrono::DateTime::from_timestamp(secs, 0),
        };
        let before = a
            .decide_with(
                &conn,
                "dept-c1",
                Action::Read,
                &member("M1"),
                &at(1_800_000_000),
            )
            .expect("decision");
        assert!(before.allowed);
        let after = a
            .decide_with(
                &conn,
                "dept-c1",
                Action::Read,
                &member("M1"),
                &at(1_900_000_000),
            )
            .expect("decision");
        assert!(!after.allowed);
        assert_eq!(after.policy_ids, ["extra.not_after_2030"]);
    }

    #[test]
    fn fail_org_cycle_grants_nothing_through_it() {
        let conn = projection();
        conn.execute_batch("UPDATE org SET parent_id = 'B1' WHERE org_id = 'C1';")
            .expect("cycle C1 > G1 > B1 > C1");
        let a = authorizer(&conn);
        // C1, G1 and B1 are on the cycle and become roots: nothing is below C1 through
        // the cycle any more, but B3 (a plain child of C1) still is.
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M1")));
        assert!(!allowed(&a, &conn, "dept-c1", Action::Read, &member("M3")));
        assert!(allowed(&a, &conn, "dept-c1", Action::Read, &member("M4")));
    }

    #[test]
    fn fail_a_policy_error_denies() {
        // A forbid that errors at run time (the user's org is not in the projection, so
        // `principal.org.kind` has no entity to read) must not let the request through.
        let policies = Policies::embedded_plus("extra.cedar", "@id(\"extra.no_branch_admins\")\nforbid (principal is User, action, resource)\nwhen { principal has org && principal.org.kind == \"branch\" };\n");
        let conn = projection();
        let a = Authorizer::new(policies, &conn).expect("authorizer");
        assert!(allowed(
            &a,
            &conn,
            "sys",
            Action::ManageUsers,
            &Resource::System
        ));
        let d = a
            .decide(&conn, "sys-zz", Action::ManageUsers, &Resource::System)
            .expect("decision");
        assert!(!d.allowed);
        assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
        assert!(
            d.errors[0].contains("extra.no_branch_admins"),
            "{:?}",
            d.errors
        );
    }

    #[test]
    fn request_entities_conform_to_the_schema() {
        let conn = projection();
        let a = authorizer(&conn);
        let schema = a.policies().schema();
        let resources = [
            member("M1"),
            member("M0"),
            Resource::NewMember {
                member_id: "M7".into(),
                org_id: "B2".into(),
            },
            Resource::Org("B1".into()),
            Resource::NewOrg {
                org_id: "B8".into(),
                kind: "branch".into(),
                parent_id: Some("G1".into()),
            },
            Resource::Ledger,
            Resource::Report(Some("G1".into())),
            Resource::Report(None),
            Resource::System,
        ];
        for user in ["dept-c1", "mem-1", "sys"] {
            let row = load_user(&conn, user).expect("query").expect("user");
            for r in &resources {
                let action = match r.resource_type() {
                    crate::policy::ResourceType::System => Action::ManageUsers,
                    _ => Action::Read,
                };
                let ctx = RequestContext {
                    change_actor: Some("prov-b1".into()),
                    now: chrono::DateTime::from_timestamp(0, 0),
                };
                let (request, store) = a
                    .build(&conn, user, &row, MemberRow::Unread, action, r, &ctx)
                    .expect("build");
                Entities::from_entities(store, Some(schema))
                    .unwrap_or_else(|e| panic!("{user} {r}: {e}"));
                let (p, act, res) = (
                    request.principal().cloned(),
                    request.action().cloned(),
                    request.resource().cloned(),
                );
                let (Some(p), Some(act), Some(res)) = (p, act, res) else {
                    panic!("request parts")
                };
                let ctx = request.context().cloned().expect("context");
                Request::new(p, act, res, ctx, Some(schema))
                    .unwrap_or_else(|e| panic!("{user} {r}: {e}"));
            }
        }
    }

    /// Throughput on a 10k-member organisation (DESIGN §11: ≥ 100k decisions/s on one
    /// core, measured in an optimised build). Run with `--ignored` to see the rate.
    #[test]
    #[ignore = "timing; meaningful only in an optimised build"]
    fn decisions_per_second_on_10k_members() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(include_str!("../records/schema.sql"))
            .expect("schema");
        let tx = conn.unchecked_transaction().expect("tx");
        tx.execute(
            "INSERT INTO org VALUES ('C','C','committee',NULL,NULL,NULL,NULL,NULL,0)",
            [],
        )
        .expect("org");
        for g in 0..10 {
            tx.execute("INSERT INTO org (org_id,name,kind,parent_id,last_seq) VALUES (?1,?1,'general_branch','C',0)", [format!("G{g}")]).expect("org");
            for b in 0..20 {
                tx.execute("INSERT INTO org (org_id,name,kind,parent_id,last_seq) VALUES (?1,?1,'branch',?2,0)", [format!("B{g}-{b}"), format!("G{g}")]).expect("org");
            }
        }
        for m in 0..10_000 {
            tx.execute(
                "INSERT INTO member (member_id,org_id,last_seq) VALUES (?1,?2,0)",
                [format!("M{m}"), format!("B{}-{}", m % 10, (m / 10) % 20)],
            )
            .expect("member");
        }
        tx.execute_batch("INSERT INTO user (user_id,role,org_id,disabled,last_seq) VALUES ('dept','org_dept','C',0,0),('prov','provider','B0-0',0,0)").expect("users");
        tx.commit().expect("commit");
        let a = authorizer(&conn);
        let ids: Vec<Resource> = (0..10_000).map(|m| member(&format!("M{m}"))).collect();
        let n = 20_000;
        let start = Instant::now();
        let mut allowed_count = 0;
        for i in 0..n {
            let user = if i % 2 == 0 { "dept" } else { "prov" };
            let r = &ids[i % ids.len()];
            if a.decide(&conn, user, Action::Read, r)
                .expect("decision")
                .allowed
            {
                allowed_count += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = n as f64 / secs;
        eprintln!("{n} decisions in {secs:.3} s: {rate:.0}/s ({allowed_count} allowed)");
        // dept: all 10k; prov: members of B0-0 only (every 200th id, even i never hits them).
        assert_eq!(allowed_count, n / 2);
    }
}
