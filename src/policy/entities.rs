//! Cedar entities built from the projection (tables `org`, `user`, `member`): the cached
//! org hierarchy, and the few entities one request needs.
//!
//! A request's entity store holds the principal, the resource, the org each of them is
//! directly in (with its `kind` and its own ancestors, so `principal.org.kind` and
//! `principal.org in …` work) and, when the schema has action groups, the action entity.
//! Every entity's ancestors are given already transitively closed, so `in` needs no other
//! entity. Orgs further up are named as ancestors but not loaded: a policy that reads
//! their attributes (through an entity literal) gets an evaluation error, which denies.
//! Nothing here reads or carries a sensitive member field.
//!
//! Org parent links that form a cycle, or point at an org that does not exist, are cut
//! (the org is treated as a root): access through a broken hierarchy fails closed.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use rusqlite::{Connection, OptionalExtension};

use super::{Action, PolicyError};

/// Id of the one `Ledger` entity.
pub(crate) const LEDGER_ID: &str = "ledger";
/// Id of the one `System` entity.
pub(crate) const SYSTEM_ID: &str = "djaudit";
/// Id of the report of everything.
pub(crate) const REPORT_ALL_ID: &str = "all";

/// Longest parent chain followed when an org is not in the cache.
const MAX_DEPTH: usize = 64;

/// The entity type names, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    user: EntityTypeName,
    org: EntityTypeName,
    member: EntityTypeName,
    ledger: EntityTypeName,
    report: EntityTypeName,
    system: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    pub(crate) fn new() -> Self {
        // INVARIANT: these literals are valid Cedar identifiers, so parsing cannot fail.
        #[allow(clippy::expect_used)]
        let name = |s: &str| EntityTypeName::from_str(s).expect("literal entity type name");
        Types {
            user: name("User"),
            org: name("Org"),
            member: name("Member"),
            ledger: name("Ledger"),
            report: name("Report"),
            system: name("System"),
            action: name("Action"),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    pub(crate) fn user(&self, id: &str) -> EntityUid {
        Self::uid(&self.user, id)
    }

    pub(crate) fn org(&self, id: &str) -> EntityUid {
        Self::uid(&self.org, id)
    }

    pub(crate) fn member(&self, id: &str) -> EntityUid {
        Self::uid(&self.member, id)
    }

    pub(crate) fn ledger(&self) -> EntityUid {
        Self::uid(&self.ledger, LEDGER_ID)
    }

    pub(crate) fn report(&self, org: Option<&str>) -> EntityUid {
        Self::uid(&self.report, org.unwrap_or(REPORT_ALL_ID))
    }

    pub(crate) fn system(&self) -> EntityUid {
        Self::uid(&self.system, SYSTEM_ID)
    }

    pub(crate) fn action(&self, action: Action) -> EntityUid {
        Self::uid(&self.action, action.as_str())
    }
}

fn entity(
    uid: EntityUid,
    attrs: Vec<(&str, RestrictedExpression)>,
    ancestors: &[EntityUid],
) -> Result<Entity, PolicyError> {
    let attrs: HashMap<String, RestrictedExpression> =
        attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let parents: HashSet<EntityUid> = ancestors.iter().cloned().collect();
    Entity::new(uid, attrs, parents).map_err(|e| PolicyError::Request(e.to_string()))
}

/// `Org::"<id>"` with its `kind`, in every org of `ancestors`.
pub(crate) fn org_entity(
    t: &Types,
    id: &str,
    kind: &str,
    ancestors: &[EntityUid],
) -> Result<Entity, PolicyError> {
    entity(
        t.org(id),
        vec![("kind", RestrictedExpression::new_string(kind.to_string()))],
        ancestors,
    )
}

/// `User::"<id>"` with `role`, `disabled`, and `org`/`member` when present.
pub(crate) fn user_entity(
    t: &Types,
    id: &str,
    role: &str,
    disabled: bool,
    org: Option<&str>,
    member: Option<&str>,
    ancestors: &[EntityUid],
) -> Result<Entity, PolicyError> {
    let mut attrs = vec![
        ("role", RestrictedExpression::new_string(role.to_string())),
        ("disabled", RestrictedExpression::new_bool(disabled)),
    ];
    if let Some(org) = org {
        attrs.push(("org", RestrictedExpression::new_entity_uid(t.org(org))));
    }
    if let Some(member) = member {
        attrs.push((
            "member",
            RestrictedExpression::new_entity_uid(t.member(member)),
        ));
    }
    entity(t.user(id), attrs, ancestors)
}

/// `Member::"<id>"` with `org` when present.
pub(crate) fn member_entity(
    t: &Types,
    id: &str,
    org: Option<&str>,
    ancestors: &[EntityUid],
) -> Result<Entity, PolicyError> {
    let attrs = match org {
        Some(org) => vec![("org", RestrictedExpression::new_entity_uid(t.org(org)))],
        None => Vec::new(),
    };
    entity(t.member(id), attrs, ancestors)
}

/// `Report::"<org_id>"` (in that org and above) or `Report::"all"`.
pub(crate) fn report_entity(t: &Types, org: Option<&str>, ancestors: &[EntityUid]) -> Entity {
    Entity::new_no_attrs(t.report(org), ancestors.iter().cloned().collect())
}

/// `Ledger::"ledger"`.
pub(crate) fn ledger_entity(t: &Types) -> Entity {
    Entity::new_no_attrs(t.ledger(), HashSet::new())
}

/// `System::"djaudit"`.
pub(crate) fn system_entity(t: &Types) -> Entity {
    Entity::new_no_attrs(t.system(), HashSet::new())
}

/// An org and every org above it: uids (the org first, then its parent, …), and the
/// entity of the first one when it exists.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    pub(crate) uids: Vec<EntityUid>,
    pub(crate) entity: Option<Entity>,
}

/// A [`Chain`] borrowed from the cache, or one read from the projection.
#[derive(Debug)]
pub(crate) enum ChainRef<'a> {
    Cached(&'a OrgNode),
    Fetched(Box<Chain>),
}

impl Default for ChainRef<'_> {
    fn default() -> Self {
        ChainRef::Fetched(Box::default())
    }
}

impl ChainRef<'_> {
    /// The org, then its parent, … up to the root.
    pub(crate) fn uids(&self) -> &[EntityUid] {
        match self {
            ChainRef::Cached(node) => &node.uids,
            ChainRef::Fetched(chain) => &chain.uids,
        }
    }

    /// The entity of the org, when it exists.
    pub(crate) fn entity(&self) -> Option<&Entity> {
        match self {
            ChainRef::Cached(node) => Some(&node.entity),
            ChainRef::Fetched(chain) => chain.entity.as_ref(),
        }
    }

    /// Whether the chain comes from the cached hierarchy (and so changes only when it is
    /// reloaded).
    pub(crate) fn is_cached(&self) -> bool {
        matches!(self, ChainRef::Cached(_))
    }
}

#[derive(Debug)]
pub(crate) struct OrgNode {
    entity: Entity,
    /// This org's uid, then its parent's, … up to the root.
    uids: Vec<EntityUid>,
}

/// The org hierarchy, loaded once from the projection.
#[derive(Debug, Default)]
pub(crate) struct OrgTree {
    index: HashMap<String, usize>,
    nodes: Vec<OrgNode>,
}

impl OrgTree {
    /// Loads every org of the projection and closes the parent relation.
    pub(crate) fn load(conn: &Connection, t: &Types) -> Result<Self, PolicyError> {
        let mut stmt = conn.prepare("SELECT org_id, kind, parent_id FROM org")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(rows, t)
    }

    /// Builds the tree from (org_id, kind, parent_id) rows.
    fn build(rows: Vec<(String, String, Option<String>)>, t: &Types) -> Result<Self, PolicyError> {
        let index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, (id, _, _))| (id.clone(), i))
            .collect();
        // parent index, None for a root or a dangling link
        let mut parent: Vec<Option<usize>> = rows
            .iter()
            .map(|(_, _, p)| p.as_ref().and_then(|p| index.get(p).copied()))
            .collect();
        // Cut every cycle: each org on a cycle becomes a root.
        let n = rows.len();
        let mut state = vec![0u8; n]; // 0 unvisited, 1 on the current path, 2 done
        for start in 0..n {
            let mut path = Vec::new();
            let mut at = Some(start);
            while let Some(i) = at {
                match state.get(i).copied() {
                    Some(0) => {
                        if let Some(st) = state.get_mut(i) {
                            *st = 1;
                        }
                        path.push(i);
                        at = parent.get(i).copied().flatten();
                    }
                    Some(1) => {
                        // `i` is on the current path: everything from it on is a cycle.
                        let from = path.iter().position(|&p| p == i).unwrap_or(0);
                        for &c in path.get(from..).unwrap_or(&[]) {
                            if let Some(slot) = parent.get_mut(c) {
                                *slot = None;
                            }
                        }
                        break;
                    }
                    _ => break,
                }
            }
            for i in path {
                if let Some(st) = state.get_mut(i) {
                    *st = 2;
                }
            }
        }
        let chains: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let mut chain = vec![i];
                let mut at = parent.get(i).copied().flatten();
                while let Some(p) = at {
                    chain.push(p);
                    at = parent.get(p).copied().flatten();
                }
                chain
            })
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for ((id, kind, _), chain) in rows.iter().zip(chains) {
            let uids: Vec<EntityUid> = chain
                .iter()
                .filter_map(|&p| rows.get(p).map(|(pid, _, _)| t.org(pid)))
                .collect();
            nodes.push(OrgNode {
                entity: org_entity(t, id, kind, uids.get(1..).unwrap_or(&[]))?,
                uids,
            });
        }
        Ok(OrgTree { index, nodes })
    }

    /// Number of orgs cached.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The chain of a cached org.
    fn cached(&self, i: usize) -> Chain {
        match self.nodes.get(i) {
            Some(node) => Chain {
                uids: node.uids.clone(),
                entity: Some(node.entity.clone()),
            },
            None => Chain::default(),
        }
    }

    /// The org and everything above it. An org missing from the cache (added since it
    /// was loaded) is looked up in the projection; one missing there too is a lone uid
    /// with no entity. `None` only for an org absent from both when `must_exist`.
    pub(crate) fn chain(
        &self,
        conn: &Connection,
        t: &Types,
        id: &str,
        must_exist: bool,
    ) -> Result<Option<ChainRef<'_>>, PolicyError> {
        if let Some(node) = self.index.get(id).and_then(|&i| self.nodes.get(i)) {
            return Ok(Some(ChainRef::Cached(node)));
        }
        // Slow path: walk up in the projection until a cached org, a root, a missing
        // org or a cycle.
        let mut fetched: Vec<(String, String)> = Vec::new(); // (id, kind)
        let mut tail = Chain::default();
        let mut at = Some(id.to_string());
        let mut stmt = conn.prepare_cached("SELECT kind, parent_id FROM org WHERE org_id = ?1")?;
        while let Some(cur) = at.take() {
            if let Some(&i) = self.index.get(&cur) {
                tail = self.cached(i);
                break;
            }
            if fetched.iter().any(|(f, _)| *f == cur) || fetched.len() >= MAX_DEPTH {
                // A cycle (or absurd depth) above an uncached org: fail closed, the org
                // stands alone.
                fetched.truncate(1);
                tail = Chain::default();
                break;
            }
            let row = stmt
                .query_row([&cur], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()?;
            match row {
                Some((kind, parent)) => {
                    fetched.push((cur, kind));
                    at = parent;
                }
                None if fetched.is_empty() => {
                    if must_exist {
                        return Ok(None);
                    }
                    return Ok(Some(ChainRef::Fetched(Box::new(Chain {
                        uids: vec![t.org(&cur)],
                        entity: None,
                    }))));
                }
                // A dangling parent link: cut it.
                None => break,
            }
        }
        let mut uids: Vec<EntityUid> = fetched.iter().map(|(f, _)| t.org(f)).collect();
        uids.extend(tail.uids.iter().cloned());
        let entity = match fetched.first() {
            Some((f, kind)) => Some(org_entity(t, f, kind, uids.get(1..).unwrap_or(&[]))?),
            None => tail.entity,
        };
        Ok(Some(ChainRef::Fetched(Box::new(Chain { uids, entity }))))
    }
}

/// A row of the `user` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserRow {
    pub(crate) role: String,
    pub(crate) org_id: Option<String>,
    pub(crate) member_id: Option<String>,
    pub(crate) disabled: bool,
}

/// The user with this id, if any.
pub(crate) fn load_user(conn: &Connection, id: &str) -> Result<Option<UserRow>, PolicyError> {
    let mut stmt = conn
        .prepare_cached("SELECT role, org_id, member_id, disabled FROM user WHERE user_id = ?1")?;
    Ok(stmt
        .query_row([id], |r| {
            Ok(UserRow {
                role: r.get(0)?,
                org_id: r.get(1)?,
                member_id: r.get(2)?,
                disabled: r.get::<_, i64>(3)? != 0,
            })
        })
        .optional()?)
}

/// `Some(org_id)` of a member (`Some(None)`: in no org), `None` when there is no such
/// member.
pub(crate) type MemberOrg = Option<Option<String>>;

/// The user with this id, if any, and `Some(org_id)` of the member with id `member` or
/// `None` when there is no such member: one statement, so one read transaction (half the
/// locking of two point reads) and both rows of the same moment.
pub(crate) fn load_user_and_member_org(
    conn: &Connection,
    id: &str,
    member: &str,
) -> Result<Option<(UserRow, MemberOrg)>, PolicyError> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.role, u.org_id, u.member_id, u.disabled, m.member_id IS NOT NULL, m.org_id
         FROM user u LEFT JOIN member m ON m.member_id = ?2
         WHERE u.user_id = ?1",
    )?;
    Ok(stmt
        .query_row([id, member], |r| {
            let user = UserRow {
                role: r.get(0)?,
                org_id: r.get(1)?,
                member_id: r.get(2)?,
                disabled: r.get::<_, i64>(3)? != 0,
            };
            let member_org = if r.get::<_, i64>(4)? != 0 {
                Some(r.get::<_, Option<String>>(5)?)
            } else {
                None
            };
            Ok((user, member_org))
        })
        .optional()?)
}

/// `Some(org_id)` of the member with this id, `None` when there is no such member.
pub(crate) fn load_member_org(
    conn: &Connection,
    id: &str,
) -> Result<Option<Option<String>>, PolicyError> {
    let mut stmt = conn.prepare_cached("SELECT org_id FROM member WHERE member_id = ?1")?;
    Ok(stmt
        .query_row([id], |r| r.get::<_, Option<String>>(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(list: &[(&str, Option<&str>)]) -> Vec<(String, String, Option<String>)> {
        list.iter()
            .map(|(id, p)| (id.to_string(), "branch".to_string(), p.map(str::to_string)))
            .collect()
    }

    fn chain_ids(tree: &OrgTree, id: &str) -> Vec<String> {
        let i = tree.index.get(id).copied().expect("cached org");
        tree.cached(i)
            .uids
            .iter()
            .map(|u| u.id().unescaped().to_string())
            .collect()
    }

    #[test]
    fn chains_run_to_the_root() {
        let t = Types::new();
        let tree = OrgTree::build(
            rows(&[("B1", Some("G1")), ("G1", Some("C1")), ("C1", None)]),
            &t,
        )
        .expect("builds");
        assert_eq!(chain_ids(&tree, "B1"), ["B1", "G1", "C1"]);
        assert_eq!(chain_ids(&tree, "C1"), ["C1"]);
        assert_eq!(tree.len(), 3);
    }

    #[test]
    fn fail_cycles_and_dangling_parents_are_cut() {
        let t = Types::new();
        let tree = OrgTree::build(
            rows(&[
                ("A", Some("B")),
                ("B", Some("A")),
                ("X", Some("A")),
                ("D", Some("nowhere")),
            ]),
            &t,
        )
        .expect("builds");
        assert_eq!(chain_ids(&tree, "A"), ["A"]);
        assert_eq!(chain_ids(&tree, "B"), ["B"]);
        assert_eq!(chain_ids(&tree, "X"), ["X", "A"]);
        assert_eq!(chain_ids(&tree, "D"), ["D"]);
    }
}
