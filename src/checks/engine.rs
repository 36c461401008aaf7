//! The check engine: reads the projection tables in index order, builds each subject's
//! facts and runs the enabled rules of its family on them.
//!
//! Memory holds the organisations (with per-organisation counters and data starts), the
//! duplicate ID groups, a compact index of member id → (full date, category) for the
//! introducer checks, and the rows of the member being judged — never member rows or dues
//! in bulk. Members stream in primary-key order. Dues stream in one primary-key scan
//! (`dues_id` is `<member_id>/<month>…`, so rows come grouped by member) merged with the
//! members; if member ids do not sort like that key, each member's dues are read through
//! `dues_member_month` instead. Transfers stream in `transfer_member` order, merged the same
//! way. It only reads.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::thread;

use chrono::NaiveDate;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row, Statement};

use super::facts::{
    full_on, Category, DuesFacts, DuesRow, Employment, Gender, Introducer, IntroducerRec,
    MeetingFacts, MeetingKind, MemberFacts, MemberRec, OrgFacts, OrgKind, OrgRec, SecretaryRec,
    Status, StatusFacts, TransferRow,
};
use super::period::{parse_date, Month, OrgSpan, Period, PeriodKind};
use super::{
    development, dues, meetings, member, org, status, CheckConfig, CheckError, Ctx, DuesRule,
    Finding, MeetingRule, MemberRule, OrgRule, Rule, RuleDef, Severity, StatusRule,
};

/// Most other member ids listed in a duplicate-ID finding.
const MAX_DUPLICATES_LISTED: usize = 20;

/// An enabled rule with its configured severity.
struct Enabled<R: ?Sized + 'static> {
    rule: &'static R,
    id: &'static str,
    severity: Severity,
}

fn enabled<R: ?Sized>(
    rules: &'static [&'static R],
    def: impl Fn(&R) -> &'static RuleDef,
    cfg: &CheckConfig,
) -> Vec<Enabled<R>> {
    rules
        .iter()
        .filter_map(|r| {
            let d = def(r);
            let rc = cfg.rule(d.id).filter(|rc| rc.enabled)?;
            Some(Enabled {
                rule: *r,
                id: d.id,
                severity: rc.severity,
            })
        })
        .collect()
}

fn emit<S, R: ?Sized + Rule<S>>(
    out: &mut Vec<Finding>,
    rules: &[Enabled<R>],
    subject: &S,
    subject_id: &dyn Fn() -> String,
    ctx: &Ctx<'_>,
) {
    for e in rules {
        if let Some(v) = e.rule.check(subject, ctx) {
            out.push(Finding {
                rule: e.id.to_string(),
                severity: e.severity,
                subject: subject_id(),
                message: v.message,
                values: v.values,
            });
        }
    }
}

fn text(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        }
        ValueRef::Integer(i) => Some(i.to_string()),
        _ => None,
    })
}

/// An id column exactly as stored (not trimmed): ids are compared with SQLite's order.
fn id_text(row: &Row<'_>, idx: usize) -> rusqlite::Result<String> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        _ => String::new(),
    })
}

fn with_text<T>(
    row: &Row<'_>,
    idx: usize,
    f: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<Option<T>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(|s| f(s.trim())),
        _ => None,
    })
}

fn date(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<NaiveDate>> {
    with_text(row, idx, parse_date)
}

fn int(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    })
}

/// All organisations, with their tree.
struct Orgs {
    recs: Vec<OrgRec>,
    index: HashMap<String, usize>,
    parent: Vec<Option<usize>>,
}

impl Orgs {
    fn load(conn: &Connection) -> Result<Orgs, CheckError> {
        let mut stmt = conn.prepare(
            "SELECT org_id, kind, parent_id, established_date, has_committee, secretary_id, dissolved_date \
             FROM org ORDER BY org_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut recs = Vec::new();
        while let Some(r) = rows.next()? {
            recs.push(OrgRec {
                id: text(r, 0)?.unwrap_or_default(),
                kind: with_text(r, 1, OrgKind::parse)?,
                parent_id: text(r, 2)?,
                established: date(r, 3)?,
                has_committee: int(r, 4)?.map(|i| i != 0),
                secretary_id: text(r, 5)?,
                dissolved: date(r, 6)?,
            });
        }
        let index: HashMap<String, usize> = recs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.clone(), i))
            .collect();
        let parent = recs
            .iter()
            .map(|o| o.parent_id.as_ref().and_then(|p| index.get(p).copied()))
            .collect();
        Ok(Orgs {
            recs,
            index,
            parent,
        })
    }

    /// Which organisations lie on a cycle of parent links.
    fn in_cycle(&self) -> Vec<bool> {
        let n = self.recs.len();
        let mut walk_of = vec![0usize; n];
        let mut on_cycle = vec![false; n];
        for start in 0..n {
            if walk_of.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            let walk = start + 1;
            let mut path = Vec::new();
            let mut node = Some(start);
            while let Some(i) = node {
                match walk_of.get(i).copied() {
                    Some(0) => {
                        if let Some(w) = walk_of.get_mut(i) {
                            *w = walk;
                        }
                        path.push(i);
                        node = self.parent.get(i).copied().flatten();
                    }
                    Some(w) if w == walk => {
                        // Back at a node of this walk: the path from it on is a cycle.
                        if let Some(pos) = path.iter().position(|p| *p == i) {
                            for p in path.iter().skip(pos) {
                                if let Some(c) = on_cycle.get_mut(*p) {
                                    *c = true;
                                }
                            }
                        }
                        break;
                    }
                    _ => break,
                }
            }
        }
        on_cycle
    }

    /// `root` and all its descendants.
    fn subtree(&self, root: &str) -> Result<Vec<bool>, CheckError> {
        let start = *self
            .index
            .get(root)
            .ok_or_else(|| CheckError::UnknownOrg(root.to_string()))?;
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); self.recs.len()];
        for (child, parent) in self.parent.iter().enumerate() {
            if let Some(list) = parent.and_then(|p| children.get_mut(p)) {
                list.push(child);
            }
        }
        let mut inside = vec![false; self.recs.len()];
        let mut queue = VecDeque::from([start]);
        while let Some(i) = queue.pop_front() {
            match inside.get_mut(i) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            queue.extend(children.get(i).into_iter().flatten().copied());
        }
        Ok(inside)
    }
}

/// First month of any meeting of each org, over all data.
fn meeting_starts(
    conn: &Connection,
    orgs: &Orgs,
    starts: &mut [Option<Month>],
) -> Result<(), CheckError> {
    let mut stmt = conn.prepare(MEETING_START_SQL)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let first = with_text(r, 1, |s| s.get(..7).and_then(Month::parse))?;
        note_start(orgs, starts, text(r, 0)?.as_deref(), first);
    }
    Ok(())
}

const MEETING_START_SQL: &str = "SELECT org_id, MIN(date) FROM meeting GROUP BY org_id";

fn note_start(orgs: &Orgs, starts: &mut [Option<Month>], org: Option<&str>, first: Option<Month>) {
    if let (Some(i), Some(m)) = (org.and_then(|o| orgs.index.get(o).copied()), first) {
        if let Some(s) = starts.get_mut(i) {
            *s = Some(s.map_or(m, |cur| cur.min(m)));
        }
    }
}

/// Compare member ids in the order their dues rows have in the `dues` primary key
/// (`<member_id>/…`): by `member_id || '/'`.
fn dues_key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let (a_head, a_rest) = a.split_at(n);
    let (b_head, b_rest) = b.split_at(n);
    a_head
        .cmp(b_head)
        .then_with(|| match (a_rest.first(), b_rest.first()) {
            (None, None) => Ordering::Equal,
            // The shorter key ends in '/'; if the longer one has '/' there, it is longer.
            (None, Some(c)) => b'/'.cmp(c).then(Ordering::Less),
            (Some(c), _) => c.cmp(&b'/').then(Ordering::Greater),
        })
}

/// Full date and category of every member, by member id: the introducer lookups
/// (a few bytes per member, never their rows).
#[derive(Debug, Default)]
struct MemberIndex {
    by_id: HashMap<Box<[u8]>, IntroducerRec>,
}

impl MemberIndex {
    fn with_capacity(n: usize) -> MemberIndex {
        MemberIndex {
            by_id: HashMap::with_capacity(n),
        }
    }

    fn push(&mut self, id: &[u8], rec: IntroducerRec) {
        self.by_id.insert(id.into(), rec);
    }

    fn get(&self, id: &str) -> Option<IntroducerRec> {
        self.by_id.get(id.as_bytes()).copied()
    }
}

/// What one scan of the member table yields before the main pass.
struct Prepass {
    index: Option<MemberIndex>,
    /// Whether the `dues` primary key orders members as `member_id` does, so that dues can be
    /// streamed in one scan and merged with the member stream.
    dues_scan_ok: bool,
}

/// One scan of all members in primary-key order: the introducer index, the first dues month
/// of each member folded into its org's data start (one seek into `dues_member_month` per
/// member), and whether member ids sort the same with a trailing `/`.
fn prepass(
    conn: &Connection,
    orgs: &Orgs,
    starts: &mut [Option<Month>],
    with_index: bool,
    with_dues_start: bool,
) -> Result<Prepass, CheckError> {
    let first_dues = if with_dues_start {
        "(SELECT MIN(d.month) FROM dues d WHERE d.member_id = m.member_id)"
    } else {
        "NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT m.member_id, m.org_id, m.full_date, m.category, {first_dues} FROM member m ORDER BY m.member_id"
    ))?;
    let mut index = if with_index {
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM member", [], |r| r.get(0))?;
        Some(MemberIndex::with_capacity(usize::try_from(n).unwrap_or(0)))
    } else {
        None
    };
    let mut rows = stmt.query([])?;
    let mut prev: Vec<u8> = Vec::new();
    let mut dues_scan_ok = true;
    let mut first = true;
    while let Some(r) = rows.next()? {
        let ValueRef::Text(id) = r.get_ref(0)? else {
            dues_scan_ok = false;
            continue;
        };
        if id.contains(&b'/') || (!first && dues_key_cmp(&prev, id) != Ordering::Less) {
            dues_scan_ok = false;
        }
        first = false;
        prev.clear();
        prev.extend_from_slice(id);
        if let Some(ix) = index.as_mut() {
            ix.push(
                id,
                IntroducerRec {
                    full_date: date(r, 2)?,
                    category: with_text(r, 3, Category::parse)?,
                },
            );
        }
        if with_dues_start {
            let first_month = with_text(r, 4, Month::parse)?;
            note_start(orgs, starts, text(r, 1)?.as_deref(), first_month);
        }
    }
    Ok(Prepass {
        index,
        dues_scan_ok,
    })
}

/// For each member sharing an ID number with others: (how many others, the first few).
fn duplicate_ids(conn: &Connection) -> Result<HashMap<String, (usize, Vec<String>)>, CheckError> {
    let mut stmt = conn.prepare(DUPLICATE_SQL)?;
    let mut rows = stmt.query([])?;
    let mut out = HashMap::new();
    let mut group: Vec<String> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let flush = |group: &mut Vec<String>, out: &mut HashMap<String, (usize, Vec<String>)>| {
        for m in group.iter() {
            let others: Vec<String> = group
                .iter()
                .filter(|o| *o != m)
                .take(MAX_DUPLICATES_LISTED)
                .cloned()
                .collect();
            out.insert(m.clone(), (group.len().saturating_sub(1), others));
        }
        group.clear();
    };
    while let Some(r) = rows.next()? {
        let key = match r.get_ref(0)? {
            ValueRef::Text(t) => t.to_vec(),
            _ => continue,
        };
        if current.as_ref() != Some(&key) {
            flush(&mut group, &mut out);
            current = Some(key);
        }
        group.push(id_text(r, 1)?);
    }
    flush(&mut group, &mut out);
    Ok(out)
}

const DUPLICATE_SQL: &str = "SELECT id_number, member_id FROM member WHERE id_number IN \
       (SELECT id_number FROM member WHERE id_number IS NOT NULL AND trim(id_number) <> '' \
        GROUP BY id_number HAVING COUNT(*) > 1) \
     ORDER BY id_number, member_id";

const MEMBER_SQL: &str = "SELECT member_id, name, gender, birth_date, id_number, phone, org_id, \
    category, status, status_date, application_date, activist_date, candidate_date, \
    admission_date, full_date, probation_extension_months, introducers, employment, monthly_income \
    FROM member ORDER BY member_id";

fn member_rec(r: &Row<'_>) -> rusqlite::Result<MemberRec> {
    Ok(MemberRec {
        id: id_text(r, 0)?,
        name: text(r, 1)?,
        gender: with_text(r, 2, Gender::parse)?,
        birth_date: date(r, 3)?,
        id_number: text(r, 4)?,
        phone: text(r, 5)?,
        org_id: text(r, 6)?,
        category: with_text(r, 7, Category::parse)?,
        status: with_text(r, 8, Status::parse)?,
        status_date: date(r, 9)?,
        application_date: date(r, 10)?,
        activist_date: date(r, 11)?,
        candidate_date: date(r, 12)?,
        admission_date: date(r, 13)?,
        full_date: date(r, 14)?,
        probation_extension_months: int(r, 15)?,
        introducers: text(r, 16)?,
        employment: with_text(r, 17, Employment::parse)?,
        monthly_income: int(r, 18)?,
    })
}

const TRANSFER_SQL: &str =
    "SELECT member_id, from_org, to_org, date FROM transfer ORDER BY member_id, date, transfer_id";

/// Streams transfers in (member_id, date, transfer_id) order and hands out each member's.
struct TransferStream<'s> {
    rows: rusqlite::Rows<'s>,
    pending: Option<(Vec<u8>, TransferRow)>,
    done: bool,
}

impl<'s> TransferStream<'s> {
    fn new(stmt: &'s mut Statement<'_>) -> Result<TransferStream<'s>, CheckError> {
        Ok(TransferStream {
            rows: stmt.query([])?,
            pending: None,
            done: false,
        })
    }

    fn fetch(&mut self) -> Result<(), CheckError> {
        if self.pending.is_some() || self.done {
            return Ok(());
        }
        match self.rows.next()? {
            Some(r) => {
                let id = match r.get_ref(0)? {
                    ValueRef::Text(t) => t.to_vec(),
                    _ => Vec::new(),
                };
                self.pending = Some((
                    id,
                    TransferRow {
                        from_org: text(r, 1)?,
                        to_org: text(r, 2)?,
                        date: date(r, 3)?,
                    },
                ));
            }
            None => self.done = true,
        }
        Ok(())
    }

    /// Put the transfers of `member` into `out`; members must be asked in primary-key order.
    fn take(&mut self, member: &str, out: &mut Vec<TransferRow>) -> Result<(), CheckError> {
        out.clear();
        loop {
            self.fetch()?;
            let Some((id, _)) = &self.pending else {
                return Ok(());
            };
            let ord = id.as_slice().cmp(member.as_bytes());
            if ord == Ordering::Greater {
                return Ok(());
            }
            if let Some((_, t)) = self.pending.take() {
                if ord == Ordering::Equal {
                    out.push(t);
                }
            }
        }
    }
}

/// Why a pass stopped.
enum Halt {
    Check(CheckError),
    /// The dues primary key does not order rows by member: rerun reading dues per member.
    DuesOutOfOrder,
}

impl From<CheckError> for Halt {
    fn from(e: CheckError) -> Halt {
        Halt::Check(e)
    }
}

impl From<rusqlite::Error> for Halt {
    fn from(e: rusqlite::Error) -> Halt {
        Halt::Check(CheckError::Db(e))
    }
}

const DUES_SCAN_SQL: &str =
    "SELECT member_id, month, base_income, amount, paid_date FROM dues ORDER BY dues_id";
const DUES_OF_MEMBER_SQL: &str =
    "SELECT member_id, month, base_income, amount, paid_date FROM dues WHERE member_id = ?1 ORDER BY month";

fn dues_row(r: &Row<'_>) -> rusqlite::Result<DuesRow> {
    Ok(DuesRow {
        month: with_text(r, 1, Month::parse)?,
        base_income: int(r, 2)?,
        amount: int(r, 3)?,
        paid_date: date(r, 4)?,
    })
}

/// Streams all dues rows in primary-key order (one sequential scan) and hands out each
/// member's rows; members must be asked in primary-key order.
struct DuesScan<'s> {
    rows: rusqlite::Rows<'s>,
    id: Vec<u8>,
    prev: Vec<u8>,
    row: Option<DuesRow>,
    started: bool,
    done: bool,
}

impl<'s> DuesScan<'s> {
    fn new(stmt: &'s mut Statement<'_>) -> Result<DuesScan<'s>, CheckError> {
        Ok(DuesScan {
            rows: stmt.query([])?,
            id: Vec::new(),
            prev: Vec::new(),
            row: None,
            started: false,
            done: false,
        })
    }

    fn fetch(&mut self) -> Result<(), Halt> {
        if self.row.is_some() || self.done {
            return Ok(());
        }
        let Some(r) = self.rows.next()? else {
            self.done = true;
            return Ok(());
        };
        std::mem::swap(&mut self.id, &mut self.prev);
        self.id.clear();
        if let ValueRef::Text(t) = r.get_ref(0)? {
            self.id.extend_from_slice(t);
        }
        if self.started && dues_key_cmp(&self.prev, &self.id) == Ordering::Greater {
            return Err(Halt::DuesOutOfOrder);
        }
        self.started = true;
        self.row = Some(dues_row(r)?);
        Ok(())
    }

    fn take(&mut self, member: &str, out: &mut Vec<DuesRow>) -> Result<(), Halt> {
        loop {
            self.fetch()?;
            if self.row.is_none() {
                return Ok(());
            }
            match dues_key_cmp(&self.id, member.as_bytes()) {
                Ordering::Greater => return Ok(()),
                Ordering::Equal => out.extend(self.row.take()),
                Ordering::Less => self.row = None,
            }
        }
    }
}

/// Where a member's dues rows come from.
enum DuesSource<'s> {
    /// Nothing needs dues.
    None,
    Scan(DuesScan<'s>),
    /// One `dues_member_month` index query per member (member ids that do not sort like
    /// the `dues` primary key).
    PerMember(Statement<'s>),
}

impl DuesSource<'_> {
    fn take(&mut self, member: &str, out: &mut Vec<DuesRow>) -> Result<(), Halt> {
        out.clear();
        match self {
            DuesSource::None => {}
            DuesSource::Scan(scan) => scan.take(member, out)?,
            DuesSource::PerMember(stmt) => {
                let mut rows = stmt.query(params![member])?;
                while let Some(r) = rows.next()? {
                    out.push(dues_row(r)?);
                }
            }
        }
        out.sort_by_key(|d| d.month);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct OrgCounts {
    active: u32,
    active_full: u32,
}

/// The enabled rules of every family.
struct RuleSet {
    member: Vec<Enabled<MemberRule>>,
    development: Vec<Enabled<MemberRule>>,
    dues: Vec<Enabled<DuesRule>>,
    status: Vec<Enabled<StatusRule>>,
    org: Vec<Enabled<OrgRule>>,
    meetings: Vec<Enabled<MeetingRule>>,
}

/// What the main pass needs besides the database.
struct Setup<'a> {
    rules: &'a RuleSet,
    orgs: &'a Orgs,
    scope: Option<&'a [bool]>,
    spans: &'a [Option<OrgSpan>],
    index: Option<&'a MemberIndex>,
    duplicates: &'a HashMap<String, (usize, Vec<String>)>,
    need_dues: bool,
}

impl Setup<'_> {
    fn in_scope(&self, i: usize) -> bool {
        self.scope
            .is_none_or(|s| s.get(i).copied().unwrap_or(false))
    }
}

/// Run every enabled rule; findings unsorted.
pub(crate) fn run(
    conn: &Connection,
    cfg: &CheckConfig,
    ctx: &Ctx<'_>,
    org_filter: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Finding>, CheckError> {
    let rules = RuleSet {
        member: enabled(member::RULES, |r| r.def(), cfg),
        development: enabled(development::RULES, |r| r.def(), cfg),
        dues: enabled(dues::RULES, |r| r.def(), cfg),
        status: enabled(status::RULES, |r| r.def(), cfg),
        org: enabled(org::RULES, |r| r.def(), cfg),
        meetings: enabled(meetings::RULES, |r| r.def(), cfg),
    };
    let is_on = |id: &str| cfg.rule(id).is_some_and(|r| r.enabled);

    let orgs = Orgs::load(conn)?;
    let scope: Option<Vec<bool>> = org_filter.map(|o| orgs.subtree(o)).transpose()?;
    let need_starts = !rules.dues.is_empty() || !rules.meetings.is_empty();
    let need_index = [
        "development.introducers_count",
        "development.introducer_not_full",
        "development.introducer_unknown",
    ]
    .into_iter()
    .any(is_on);
    let need_dues = !rules.dues.is_empty() || is_on("status.activity_after_exit");

    let mut starts: Vec<Option<Month>> = vec![None; orgs.recs.len()];
    if need_starts {
        meeting_starts(conn, &orgs, &mut starts)?;
    }
    let pre = if need_index || need_starts || need_dues {
        prepass(conn, &orgs, &mut starts, need_index, need_starts)?
    } else {
        Prepass {
            index: None,
            dues_scan_ok: false,
        }
    };
    let spans: Vec<Option<OrgSpan>> = orgs
        .recs
        .iter()
        .zip(&starts)
        .map(|(o, s)| OrgSpan::new(*s, o.established, o.dissolved))
        .collect();
    let duplicates = if is_on("member.id_duplicate") {
        duplicate_ids(conn)?
    } else {
        HashMap::new()
    };
    let setup = Setup {
        rules: &rules,
        orgs: &orgs,
        scope: scope.as_deref(),
        spans: &spans,
        index: pre.index.as_ref(),
        duplicates: &duplicates,
        need_dues,
    };
    match main_pass(conn, ctx, &setup, pre.dues_scan_ok, progress) {
        Ok(findings) => Ok(findings),
        Err(Halt::Check(e)) => Err(e),
        Err(Halt::DuesOutOfOrder) => match main_pass(conn, ctx, &setup, false, progress) {
            Ok(findings) => Ok(findings),
            Err(Halt::Check(e)) => Err(e),
            Err(Halt::DuesOutOfOrder) => {
                Err(CheckError::Internal("dues rows out of order twice".into()))
            }
        },
    }
}

/// A member with its dues and transfers: read on the calling thread, judged on another.
struct Bundle {
    m: MemberRec,
    org_index: Option<usize>,
    dues: Vec<DuesRow>,
    transfers: Vec<TransferRow>,
}

/// Members per message between the reading and the judging thread.
const BATCH: usize = 512;
/// Batches in flight: bounds the memory of the pipeline.
const BATCHES_IN_FLIGHT: usize = 4;

/// Members (member, development, dues and status rules), then organisations and branch
/// meetings. SQLite is read on the calling thread (the connection never leaves it); the
/// member rules run on a second thread, fed through a bounded channel.
fn main_pass(
    conn: &Connection,
    ctx: &Ctx<'_>,
    setup: &Setup<'_>,
    dues_scan: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Finding>, Halt> {
    let (tx, rx) = mpsc::sync_channel::<Vec<Bundle>>(BATCHES_IN_FLIGHT);
    let (mut findings, counts) = thread::scope(|scope| {
        let judge = scope.spawn(move || judge_members(&rx, ctx, setup));
        let read = read_members(conn, setup, dues_scan, &tx, progress);
        drop(tx);
        let judged = judge.join();
        read?;
        judged.map_err(|_| {
            Halt::Check(CheckError::Internal(
                "the member checks stopped unexpectedly".into(),
            ))
        })
    })?;
    if !setup.rules.org.is_empty() {
        org_pass(conn, ctx, setup, &counts, &mut findings)?;
    }
    if !setup.rules.meetings.is_empty() {
        meetings_pass(conn, ctx, setup, &mut findings)?;
    }
    Ok(findings)
}

/// Stream members in scope with their dues and transfers into `tx`.
fn read_members(
    conn: &Connection,
    setup: &Setup<'_>,
    dues_scan: bool,
    tx: &mpsc::SyncSender<Vec<Bundle>>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Halt> {
    let mut scan_stmt = if setup.need_dues && dues_scan {
        Some(conn.prepare(DUES_SCAN_SQL)?)
    } else {
        None
    };
    let per_member_stmt = if setup.need_dues && !dues_scan {
        Some(conn.prepare(DUES_OF_MEMBER_SQL)?)
    } else {
        None
    };
    let mut dues = match (scan_stmt.as_mut(), per_member_stmt) {
        (Some(stmt), _) => DuesSource::Scan(DuesScan::new(stmt)?),
        (None, Some(stmt)) => DuesSource::PerMember(stmt),
        (None, None) => DuesSource::None,
    };
    let mut transfer_stmt = if setup.rules.status.is_empty() {
        None
    } else {
        Some(conn.prepare(TRANSFER_SQL)?)
    };
    let mut transfers = transfer_stmt
        .as_mut()
        .map(TransferStream::new)
        .transpose()?;

    let mut member_stmt = conn.prepare(MEMBER_SQL)?;
    let mut rows = member_stmt.query([])?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut sent = 0u64;
    while let Some(r) = rows.next()? {
        let m = member_rec(r)?;
        let org_index = m
            .org_id
            .as_ref()
            .and_then(|o| setup.orgs.index.get(o).copied());
        let inside = match (setup.scope, org_index) {
            (None, _) => true,
            (Some(_), Some(i)) => setup.in_scope(i),
            (Some(_), None) => false,
        };
        if !inside {
            continue;
        }
        let mut bundle = Bundle {
            m,
            org_index,
            dues: Vec::new(),
            transfers: Vec::new(),
        };
        dues.take(&bundle.m.id, &mut bundle.dues)?;
        if let Some(t) = transfers.as_mut() {
            t.take(&bundle.m.id, &mut bundle.transfers)?;
        }
        batch.push(bundle);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(full).is_err() {
                // The judging thread is gone; its join reports why.
                return Ok(());
            }
            sent += BATCH as u64;
            progress(sent);
        }
    }
    sent += batch.len() as u64;
    if !batch.is_empty() {
        // A closed channel is reported by the judging thread's join.
        let _ = tx.send(batch);
    }
    progress(sent);
    Ok(())
}

/// Run the member, development, dues and status rules on every bundle; count active and
/// active full members per organisation.
fn judge_members(
    rx: &mpsc::Receiver<Vec<Bundle>>,
    ctx: &Ctx<'_>,
    setup: &Setup<'_>,
) -> (Vec<Finding>, Vec<OrgCounts>) {
    let (rules, orgs) = (setup.rules, setup.orgs);
    let mut findings = Vec::new();
    let mut counts = vec![OrgCounts::default(); orgs.recs.len()];
    let mut introducers: Vec<Introducer> = Vec::new();
    for bundle in rx.iter().flatten() {
        let Bundle {
            m,
            org_index,
            dues,
            transfers,
        } = &bundle;
        let org = org_index.and_then(|i| orgs.recs.get(i));
        if let Some(c) = org_index.and_then(|i| counts.get_mut(i)) {
            if m.is_active() {
                c.active += 1;
                if m.full_on(ctx.as_of) {
                    c.active_full += 1;
                }
            }
        }
        introducers.clear();
        if let Some(index) = setup.index {
            for id in m.introducer_ids() {
                if introducers.iter().all(|i| i.id != id) {
                    introducers.push(Introducer {
                        id: id.to_string(),
                        record: index.get(id),
                    });
                }
            }
        }
        let subject = || format!("member/{}", m.id);
        let (dup_total, dup_list) = setup
            .duplicates
            .get(&m.id)
            .map_or((0, &[][..]), |(n, list)| (*n, list.as_slice()));
        let facts = MemberFacts {
            m,
            org,
            duplicates: dup_list,
            duplicate_total: dup_total,
            introducers: &introducers,
        };
        emit(&mut findings, &rules.member, &facts, &subject, ctx);
        emit(&mut findings, &rules.development, &facts, &subject, ctx);
        if !rules.dues.is_empty() {
            let facts = DuesFacts {
                m,
                span: org_index.and_then(|i| setup.spans.get(i).copied().flatten()),
                rows: dues,
            };
            emit(&mut findings, &rules.dues, &facts, &subject, ctx);
        }
        if !rules.status.is_empty() {
            let facts = StatusFacts { m, transfers, dues };
            emit(&mut findings, &rules.status, &facts, &subject, ctx);
        }
    }
    (findings, counts)
}

fn org_pass(
    conn: &Connection,
    ctx: &Ctx<'_>,
    setup: &Setup<'_>,
    counts: &[OrgCounts],
    findings: &mut Vec<Finding>,
) -> Result<(), CheckError> {
    let orgs = setup.orgs;
    let cycles = orgs.in_cycle();
    let mut stmt = conn.prepare(SECRETARY_SQL)?;
    for (i, o) in orgs.recs.iter().enumerate() {
        if !setup.in_scope(i) {
            continue;
        }
        let secretary = match &o.secretary_id {
            Some(id) => {
                let mut q = stmt.query(params![id])?;
                match q.next()? {
                    Some(r) => Some(SecretaryRec {
                        org_id: text(r, 0)?,
                        active: with_text(r, 1, Status::parse)? == Some(Status::Active),
                        full: full_on(date(r, 3)?, with_text(r, 2, Category::parse)?, ctx.as_of),
                    }),
                    None => None,
                }
            }
            None => None,
        };
        let c = counts.get(i).copied().unwrap_or_default();
        let facts = OrgFacts {
            org: o,
            parent_exists: o
                .parent_id
                .as_ref()
                .is_none_or(|p| orgs.index.contains_key(p)),
            in_cycle: cycles.get(i).copied().unwrap_or(false),
            active: c.active,
            active_full: c.active_full,
            secretary: secretary.as_ref(),
        };
        emit(
            findings,
            &setup.rules.org,
            &facts,
            &|| format!("org/{}", o.id),
            ctx,
        );
    }
    Ok(())
}

const SECRETARY_SQL: &str =
    "SELECT org_id, status, category, full_date FROM member WHERE member_id = ?1";
const MEETINGS_OF_ORG_SQL: &str =
    "SELECT date, kind FROM meeting WHERE org_id = ?1 AND date >= ?2 AND date <= ?3";

/// Branch meetings from the start of the year holding the window start to the as-of date.
fn meetings_pass(
    conn: &Connection,
    ctx: &Ctx<'_>,
    setup: &Setup<'_>,
    findings: &mut Vec<Finding>,
) -> Result<(), CheckError> {
    let from = Period::containing(PeriodKind::Year, ctx.window.first_month())
        .first
        .first_day();
    let (from, to) = (
        from.format("%Y-%m-%d").to_string(),
        ctx.as_of.format("%Y-%m-%d").to_string(),
    );
    let mut stmt = conn.prepare(MEETINGS_OF_ORG_SQL)?;
    let mut held: Vec<(MeetingKind, Month)> = Vec::new();
    for (i, o) in setup.orgs.recs.iter().enumerate() {
        let span = setup.spans.get(i).copied().flatten();
        if !setup.in_scope(i)
            || o.kind != Some(OrgKind::Branch)
            || o.dissolved_by(ctx.as_of)
            || span.is_none()
        {
            continue;
        }
        held.clear();
        let mut q = stmt.query(params![o.id, from, to])?;
        while let Some(r) = q.next()? {
            if let (Some(d), Some(k)) = (date(r, 0)?, with_text(r, 1, MeetingKind::parse)?) {
                held.push((k, Month::of(d)));
            }
        }
        let facts = MeetingFacts {
            org: o,
            span,
            held: &held,
        };
        emit(
            findings,
            &setup.rules.meetings,
            &facts,
            &|| format!("org/{}", o.id),
            ctx,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../records/schema.sql"))
            .unwrap();
        conn
    }

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        let values: Vec<rusqlite::types::Value> =
            (0..n).map(|_| rusqlite::types::Value::Null).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(values)).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(r.get::<_, String>(3).unwrap());
        }
        out.join(" | ")
    }

    /// The streaming queries use the indexes of schema.sql and never sort.
    #[test]
    fn query_plans_use_the_schema_indexes() {
        let conn = db();
        let no_sort = |p: &str| assert!(!p.contains("TEMP B-TREE"), "{p}");
        let p = plan(&conn, MEMBER_SQL);
        assert_eq!(p, "SCAN member");
        let p = plan(
            &conn,
            "SELECT m.member_id, m.org_id, m.full_date, m.category, \
               (SELECT MIN(d.month) FROM dues d WHERE d.member_id = m.member_id) FROM member m ORDER BY m.member_id",
        );
        assert!(p.starts_with("SCAN m"), "{p}");
        assert!(
            p.contains("SEARCH d USING COVERING INDEX dues_member_month (member_id=?)"),
            "{p}"
        );
        no_sort(&p);
        let p = plan(&conn, DUES_SCAN_SQL);
        assert_eq!(p, "SCAN dues");
        let p = plan(&conn, DUES_OF_MEMBER_SQL);
        assert!(
            p.contains("USING INDEX dues_member_month (member_id=?)"),
            "{p}"
        );
        no_sort(&p);
        let p = plan(&conn, TRANSFER_SQL);
        assert!(p.contains("USING INDEX transfer_member"), "{p}");
        no_sort(&p);
        let p = plan(&conn, MEETING_START_SQL);
        assert!(p.contains("COVERING INDEX meeting_org_date"), "{p}");
        no_sort(&p);
        let p = plan(&conn, MEETINGS_OF_ORG_SQL);
        assert!(
            p.contains("USING INDEX meeting_org_date (org_id=? AND date>? AND date<?)"),
            "{p}"
        );
        let p = plan(&conn, DUPLICATE_SQL);
        assert!(p.contains("COVERING INDEX member_id_number"), "{p}");
        no_sort(&p);
        let p = plan(&conn, SECRETARY_SQL);
        assert!(p.contains("USING PRIMARY KEY (member_id=?)"), "{p}");
    }

    #[test]
    fn dues_key_order_is_the_primary_key_order() {
        // 'M1-2' sorts before 'M1' with a trailing '/', because '-' < '/'.
        assert_eq!(dues_key_cmp(b"M1", b"M10"), Ordering::Less);
        assert_eq!(dues_key_cmp(b"M10", b"M1"), Ordering::Greater);
        assert_eq!(dues_key_cmp(b"M1", b"M1-2"), Ordering::Greater);
        assert_eq!(dues_key_cmp(b"M1-2", b"M1"), Ordering::Less);
        assert_eq!(dues_key_cmp(b"M1", b"M2"), Ordering::Less);
        for (a, b) in [
            ("M1", "M1-2"),
            ("M1", "M10"),
            ("A", "B"),
            ("M1/", "M1"),
            ("M1", "M1/"),
            ("M1//", "M1/"),
            ("", "x"),
        ] {
            let (ka, kb) = (format!("{a}/"), format!("{b}/"));
            assert_eq!(
                dues_key_cmp(a.as_bytes(), b.as_bytes()),
                ka.cmp(&kb),
                "{a} {b}"
            );
            assert_eq!(
                dues_key_cmp(b.as_bytes(), a.as_bytes()),
                kb.cmp(&ka),
                "{b} {a}"
            );
        }
        assert_eq!(b"M1".as_slice().cmp(b"M1-2".as_slice()), Ordering::Less);
        assert_eq!(dues_key_cmp(b"M1", b"M1"), Ordering::Equal);
    }

    #[test]
    fn member_index_finds_every_id() {
        let mut ix = MemberIndex::default();
        let ids = ["A", "M1", "M10", "M2", "\u{5f20}"];
        for (n, id) in ids.iter().enumerate() {
            ix.push(
                id.as_bytes(),
                IntroducerRec {
                    full_date: None,
                    category: if n % 2 == 0 {
                        Some(Category::Full)
                    } else {
                        None
                    },
                },
            );
        }
        for (n, id) in ids.iter().enumerate() {
            let rec = ix.get(id).unwrap();
            assert_eq!(rec.category.is_some(), n % 2 == 0, "{id}");
        }
        for absent in ["", "M", "M3", "Z", "M1 "] {
            assert_eq!(ix.get(absent), None, "{absent}");
        }
        assert_eq!(MemberIndex::default().get("A"), None);
    }

    #[test]
    fn cycles_and_subtrees() {
        let conn = db();
        conn.execute_batch(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES
               ('C1', 'c', 'committee', NULL, 1), ('G1', 'g', 'general_branch', 'C1', 1),
               ('B1', 'b', 'branch', 'G1', 1), ('B2', 'b', 'branch', 'C1', 1),
               ('X1', 'x', 'branch', 'X2', 1), ('X2', 'x', 'branch', 'X3', 1), ('X3', 'x', 'branch', 'X1', 1),
               ('T1', 't', 'branch', 'X1', 1), ('S1', 's', 'branch', 'S1', 1);",
        )
        .unwrap();
        let orgs = Orgs::load(&conn).unwrap();
        let cyc = orgs.in_cycle();
        let on: Vec<&str> = orgs
            .recs
            .iter()
            .zip(&cyc)
            .filter(|(_, c)| **c)
            .map(|(o, _)| o.id.as_str())
            .collect();
        assert_eq!(
            on,
            vec!["S1", "X1", "X2", "X3"],
            "T1 leads into a cycle but is not on it"
        );
        let sub = orgs.subtree("G1").unwrap();
        let inside: Vec<&str> = orgs
            .recs
            .iter()
            .zip(&sub)
            .filter(|(_, s)| **s)
            .map(|(o, _)| o.id.as_str())
            .collect();
        assert_eq!(inside, vec!["B1", "G1"]);
        assert_eq!(
            orgs.subtree("C1").unwrap().iter().filter(|s| **s).count(),
            4
        );
        assert_eq!(
            orgs.subtree("X2").unwrap().iter().filter(|s| **s).count(),
            4,
            "a cycle terminates"
        );
        assert!(matches!(
            orgs.subtree("NOPE"),
            Err(CheckError::UnknownOrg(_))
        ));
    }
}
