//! Ledger benchmarks (DESIGN §11): bulk append against a raw SQLite insert of the same rows,
//! verify against raw SHA-256 of the same bytes and against a bare SQLite scan of the same
//! rows, inclusion proofs at N entries, peak memory
//! of verify. `cargo bench --bench ledger`; `DJAUDIT_BENCH_N` sets N (default 1,000,000).

#[path = "common.rs"]
mod common;

use common::*;
use djaudit::ledger::verify::{verify, VerifyOptions};
use djaudit::ledger::{merkle, Actor, Ledger, NewEntry};
use rusqlite::params;
use serde_json::json;
use sha2::{Digest, Sha256};

/// `PRAGMA cache_size` of bulk writes: 256 MiB, as `import` sets it.
const BULK_CACHE: i64 = -256 * 1024;

fn entries(n: u64) -> Vec<NewEntry> {
    (0..n)
        .map(|i| {
            NewEntry::new(
                "member.update",
                &format!("member/M{:07}", i % 100_000),
                Actor { user: "u-import".into(), via: "import".into(), os_user: None, service: None },
                json!({"changes": {"education": ["本科", "硕士研究生"], "phone": ["13900000001", format!("139{:08}", i % 100_000_000)]}}),
            )
            .expect("valid entry")
        })
        .collect()
}

/// Child mode: verify the ledger at `dir` in a fresh process and print
/// `<seconds> <entries> <peak RSS KiB> <RSS KiB before>` so that peak memory is verify's own.
fn verify_child(dir: &str) {
    let ledger = Ledger::open(std::path::Path::new(dir)).expect("open");
    let before = rss_kib();
    reset_peak_rss();
    let (report, t) = timed(|| verify(&ledger, VerifyOptions::default()).expect("verify"));
    assert!(
        report.ok,
        "benchmark ledger must verify: {:?}",
        report.failure
    );
    let peak = peak_rss_kib();
    // Baseline: SQLite alone reading the rows verify reads, touching every byte once and
    // checking nothing — what any verifier over this storage pays before its first check.
    let (scanned, t_scan) = timed(|| {
        let mut stmt = ledger
            .conn()
            .prepare("SELECT seq, body, leaf_hash FROM entry ORDER BY seq")
            .expect("scan");
        let mut rows = stmt.query([]).expect("scan");
        let (mut n, mut acc) = (0u64, 0u8);
        while let Some(row) = rows.next().expect("row") {
            let seq: i64 = row.get(0).expect("seq");
            let body = row.get_ref(1).expect("body").as_bytes().expect("text");
            let leaf = row.get_ref(2).expect("leaf").as_bytes().expect("blob");
            acc ^= body.iter().fold(seq as u8, |a, b| a ^ b) ^ leaf[0];
            n += 1;
        }
        std::hint::black_box(acc);
        n
    });
    println!(
        "{} {} {} {} {} {}",
        t.as_secs_f64(),
        report.size,
        peak,
        before,
        t_scan.as_secs_f64(),
        scanned
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--verify-child") {
        verify_child(&args[i + 1]);
        return;
    }
    let n = env_n(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    println!("ledger benchmarks, N = {n} entries");

    // Bulk append through the ledger (canonical JSON, hashing, chain, Merkle nodes, SQLite).
    let input = entries(n);
    let mut ledger = Ledger::init(
        &dir.path().join("l"),
        "bench.example/ledger",
        Actor::system("system"),
    )
    .expect("init");
    // The page cache an import gives its connection; the raw baseline gets the same.
    ledger
        .conn()
        .pragma_update(None, "cache_size", BULK_CACHE)
        .expect("cache size");
    let (_, t_append) = timed(|| {
        for chunk in input.chunks(100_000) {
            let mut w = ledger.write().expect("write");
            for e in chunk {
                w.append_ref(e).expect("append");
            }
            w.commit().expect("commit");
        }
    });
    let append_rate = rate(n, t_append);

    // Baseline: raw SQLite insert of the same rows (same table shape, pragmas, index, chunks).
    let mut rows: Vec<(i64, String, Vec<u8>)> = Vec::with_capacity(n as usize);
    ledger
        .for_each_entry(1, None, |s| {
            rows.push((s.seq as i64, s.body, s.leaf_hash.to_vec()));
            Ok(())
        })
        .expect("read back");
    let mut raw = rusqlite::Connection::open(dir.path().join("raw.db")).expect("raw db");
    raw.pragma_update(None, "journal_mode", "WAL").expect("wal");
    raw.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    raw.pragma_update(None, "cache_size", BULK_CACHE)
        .expect("cache size");
    raw.execute_batch(
        "CREATE TABLE entry (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, leaf_hash BLOB NOT NULL,
         kind TEXT NOT NULL, subject TEXT NOT NULL, actor TEXT NOT NULL);
         CREATE INDEX entry_subject ON entry(subject, seq);",
    )
    .expect("schema");
    let (_, t_raw) = timed(|| {
        for chunk in rows.chunks(100_000) {
            let tx = raw.transaction().expect("tx");
            {
                let mut st = tx
                    .prepare(
                        "INSERT INTO entry VALUES (?1, ?2, ?3, 'member.update', ?4, 'u-import')",
                    )
                    .expect("prepare");
                for (seq, body, leaf) in chunk {
                    let subject = format!("member/M{:07}", seq % 100_000);
                    st.execute(params![seq, body, leaf, subject])
                        .expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
    });
    let raw_rate = rate(n, t_raw);

    // Verify the whole ledger (streaming) against SHA-256 of the same bytes.
    let _ = ledger.checkpoint();
    drop(input);
    let total_bytes: u64 = rows.iter().map(|r| r.1.len() as u64).sum();
    let (_, t_sha) = timed(|| {
        let mut acc = 0u8;
        for (_, body, _) in &rows {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(body.as_bytes());
            acc ^= h.finalize()[0];
        }
        std::hint::black_box(acc);
    });
    drop(rows);
    let child = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .arg("--verify-child")
        .arg(dir.path().join("l"))
        .output()
        .expect("run verify child");
    assert!(child.status.success(), "verify child failed");
    let out = String::from_utf8_lossy(&child.stdout);
    let f: Vec<f64> = out
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let (t_verify, verified, peak, rss_before, t_scan, scanned) = (
        std::time::Duration::from_secs_f64(f[0]),
        f[1] as u64,
        f[2] as u64,
        f[3] as u64,
        std::time::Duration::from_secs_f64(f[4]),
        f[5] as u64,
    );
    let size = ledger.size().expect("size");

    // Inclusion proofs at the full size.
    let probes = 2000u64;
    let mut path_len = 0usize;
    let (_, t_proof) = timed(|| {
        for k in 0..probes {
            let idx = (k * 7_919_993) % size;
            let p = ledger.inclusion_proof(idx, None).expect("proof");
            path_len = path_len.max(p.path.len());
            std::hint::black_box(&p);
        }
    });
    let p = ledger.inclusion_proof(size / 3, None).expect("proof");
    assert!(merkle::verify_inclusion(
        &p.leaf_hash,
        p.leaf_index,
        p.tree_size,
        &p.path,
        &p.root
    ));

    println!();
    println!("| path | measured | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| bulk append | {:.0} entries/s ({:.2} s) | raw SQLite insert {:.0} rows/s ({:.2} s) | {:.0}% |",
        append_rate,
        t_append.as_secs_f64(),
        raw_rate,
        t_raw.as_secs_f64(),
        100.0 * append_rate / raw_rate
    );
    println!(
        "| verify | {:.0} entries/s ({:.2} s, {} entries) | SHA-256 of the same {:.0} MiB: {:.0} entries/s ({:.2} s) | {:.0}% |",
        rate(verified, t_verify),
        t_verify.as_secs_f64(),
        verified,
        total_bytes as f64 / 1048576.0,
        rate(n, t_sha),
        t_sha.as_secs_f64(),
        100.0 * rate(verified, t_verify) / rate(n, t_sha)
    );
    println!(
        "| SQLite scan of the rows verify reads (no checks) | {:.0} rows/s ({:.2} s, {} rows) | SHA-256 as above | {:.0}% |",
        rate(scanned, t_scan),
        t_scan.as_secs_f64(),
        scanned,
        100.0 * rate(scanned, t_scan) / rate(n, t_sha)
    );
    println!(
        "| inclusion proof at {} entries | {:.3} ms each (mean of {probes}), {} hashes at most | — | — |",
        size,
        t_proof.as_secs_f64() * 1000.0 / probes as f64,
        path_len
    );
    println!(
        "| verify peak memory | {} MiB peak RSS of a process that only verifies (RSS after opening: {} MiB) | — | — |",
        peak / 1024,
        rss_before / 1024
    );
}
