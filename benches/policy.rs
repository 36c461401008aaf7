//! Policy benchmarks (DESIGN §11): access decisions per second on one core with the default
//! policies on a 10k-member organisation (target ≥ 100k/s), the cost of recording them
//! (decide + append, many per transaction and one durable transaction each), and the access
//! audit over the recorded decisions. `cargo bench --bench policy`; `DJAUDIT_BENCH_N` sets
//! the number of decisions (default 200,000).

#[path = "common.rs"]
mod common;

use common::*;
use djaudit::audit::{audit_access, AccessConfig, AuditOptions};
use djaudit::ledger::{Actor, Ledger};
use djaudit::policy::record::{self, AccessRequest};
use djaudit::policy::{Action, Authorizer, Policies, Resource};
use djaudit::records::projection;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MEMBERS: usize = 10_000;
const GENERAL_BRANCHES: usize = 10;
const BRANCHES_PER_GENERAL: usize = 20;

/// A committee C > 10 general branches G<g> > 20 branches B<g>-<b>; 10,000 members spread
/// over the 200 branches; one department user, one provider per branch, 100 member users.
fn organisation(ledger: &Ledger) -> Vec<String> {
    let c = ledger.conn();
    projection::ensure_schema(c).expect("schema");
    let tx = c.unchecked_transaction().expect("tx");
    tx.execute(
        "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES ('C', 'C', 'committee', NULL, 0)",
        [],
    )
    .expect("org");
    let mut branches = Vec::new();
    for g in 0..GENERAL_BRANCHES {
        tx.execute(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES (?1, ?1, 'general_branch', 'C', 0)",
            [format!("G{g}")],
        )
        .expect("org");
        for b in 0..BRANCHES_PER_GENERAL {
            let id = format!("B{g}-{b}");
            tx.execute(
                "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES (?1, ?1, 'branch', ?2, 0)",
                [id.clone(), format!("G{g}")],
            )
            .expect("org");
            tx.execute(
                "INSERT INTO user (user_id, role, org_id, disabled, last_seq) VALUES (?1, 'provider', ?2, 0, 0)",
                [format!("p-{id}"), id.clone()],
            )
            .expect("user");
            branches.push(id);
        }
    }
    for m in 0..MEMBERS {
        let branch = &branches[m % branches.len()];
        tx.execute(
            "INSERT INTO member (member_id, org_id, last_seq) VALUES (?1, ?2, 0)",
            [format!("M{m:05}"), branch.clone()],
        )
        .expect("member");
        if m < 100 {
            tx.execute(
                "INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq) VALUES (?1, 'member', ?2, ?3, 0, 0)",
                [format!("u-M{m:05}"), branch.clone(), format!("M{m:05}")],
            )
            .expect("user");
        }
    }
    tx.execute(
        "INSERT INTO user (user_id, role, org_id, disabled, last_seq) VALUES ('dept', 'org_dept', 'C', 0, 0)",
        [],
    )
    .expect("user");
    tx.commit().expect("commit");
    branches
}

/// `n` requests: half the department reading any member, 45% a provider reading a random
/// member (mostly of another branch: denied), 5% a member reading their own record.
fn requests(n: u64, branches: &[String]) -> Vec<AccessRequest> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..n)
        .map(|i| {
            let m = rng.gen_range(0..MEMBERS);
            let (user, member) = match i % 20 {
                0..=9 => ("dept".to_string(), m),
                10..=18 => (
                    format!("p-{}", branches[rng.gen_range(0..branches.len())]),
                    m,
                ),
                _ => {
                    let own = rng.gen_range(0..100);
                    (format!("u-M{own:05}"), own)
                }
            };
            let mut a = Actor::cli(&user);
            a.via = "api".into();
            AccessRequest::new(
                a,
                Action::Read,
                Resource::Member(format!("M{member:05}")),
                "GET /v1/records/member",
            )
        })
        .collect()
}

fn main() {
    let n = env_n(200_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ledger = Ledger::init(
        &dir.path().join("l"),
        "bench.example/ledger",
        Actor::system("system"),
    )
    .expect("init");
    let branches = organisation(&ledger);
    let authorizer = Authorizer::new(Policies::embedded().expect("policies"), ledger.conn())
        .expect("authorizer");
    let reqs = requests(n, &branches);
    println!(
        "policy benchmarks: {MEMBERS} members, {} branches, {n} decisions",
        branches.len()
    );

    // Decisions only, one core.
    let (allowed, t) = timed(|| {
        let conn = ledger.conn();
        reqs.iter()
            .filter(|r| {
                authorizer
                    .decide(conn, &r.actor.user, r.action, &r.resource)
                    .expect("decision")
                    .allowed
            })
            .count()
    });
    let rate_decide = rate(n, t);
    println!(
        "decide:                       {rate_decide:>12.0} decisions/s ({allowed} allowed; target >= 100000/s: {})",
        if rate_decide >= 100_000.0 { "met" } else { "NOT met" }
    );

    // Decide and append, 10,000 decisions per transaction (group commit).
    let chunk = 10_000usize;
    let (_, t) = timed(|| {
        for part in reqs.chunks(chunk) {
            let mut tx = ledger.write().expect("write");
            for r in part {
                record::decide_and_record_in(&mut tx, &authorizer, r).expect("record");
            }
            tx.commit().expect("commit");
        }
    });
    let rate_batch = rate(n, t);
    println!(
        "decide + append ({chunk}/tx):    {rate_batch:>12.0} decisions/s ({:.0}% of decide alone)",
        100.0 * rate_batch / rate_decide
    );

    // Decide and append, one durable transaction each (fsync-bound).
    let single = (n / 100).clamp(100, 2_000);
    let (_, t) = timed(|| {
        for r in reqs.iter().take(single as usize) {
            record::decide_and_record(&mut ledger, &authorizer, r).expect("record");
        }
    });
    println!(
        "decide + append (1/tx):       {:>12.0} decisions/s ({single} decisions)",
        rate(single, t)
    );

    // The access audit over everything recorded.
    let cfg = AccessConfig::embedded().expect("cfg");
    reset_peak_rss();
    let before = rss_kib();
    let (report, t) = timed(|| audit_access(&ledger, &cfg, &AuditOptions::all()).expect("audit"));
    println!(
        "audit access:                 {:>12.0} decisions/s ({} decisions, {} findings, peak RSS +{} KiB)",
        rate(report.decisions, t),
        report.decisions,
        report.findings.len(),
        peak_rss_kib().saturating_sub(before)
    );
}
