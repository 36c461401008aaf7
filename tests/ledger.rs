//! The ledger through the real binary: init, append, log, export, verify, checkpoint, proofs,
//! tampering of the database file, concurrent writers and a killed bulk append.

mod util;

use std::process::{Command as StdCommand, Stdio};

use djaudit::ledger::canonical::to_canonical_vec;
use djaudit::ledger::entry::{hex_hash, Entry};
use djaudit::ledger::merkle;
use util::{stderr, stdout, TestDir};

/// A ledger with genesis + `n` appended entries, one CLI call (and checkpoint) each.
fn ledger_with(n: usize) -> TestDir {
    let t = TestDir::new();
    t.init();
    for i in 0..n {
        t.cmd(&[
            "append",
            "--kind",
            "note.test",
            "--subject",
            &format!("case/{i}"),
            "--data",
            &format!(r#"{{"i":{i},"text":"第{i}条"}}"#),
        ])
        .assert()
        .success();
    }
    t
}

fn verify_fails_at(t: &TestDir, args: &[&str], seq: u64) -> String {
    let mut all = vec!["verify", "--no-record"];
    all.extend_from_slice(args);
    let o = t.run(&all);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "verify should fail: {out}{}",
        stderr(&o)
    );
    assert!(
        out.contains(&format!("FAILED at seq {seq}:")),
        "expected seq {seq}: {out}"
    );
    out
}

fn drop_triggers(c: &rusqlite::Connection) {
    for t in [
        "entry_no_update",
        "entry_no_delete",
        "checkpoint_no_update",
        "checkpoint_no_delete",
        "merkle_no_update",
        "merkle_no_delete",
    ] {
        c.execute_batch(&format!("DROP TRIGGER IF EXISTS {t}"))
            .unwrap();
    }
}

#[test]
fn untouched_ledger_verifies_and_records_the_scan() {
    let t = ledger_with(5);
    let o = t.run(&["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("ok: ledger `test.example/ledger` verified: 6 entries"));
    let log = stdout(&t.run(&["log", "--kind", "scan.verify"]));
    assert!(log.contains("scan.verify"), "{log}");
    // JSON output is one document.
    let o = t.run(&["verify", "--json", "--no-record"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["size"], 7);
}

#[test]
fn fail_one_changed_byte_is_found_at_its_seq() {
    let t = ledger_with(8);
    let c = t.db();
    drop_triggers(&c);
    c.execute(
        "UPDATE entry SET body = replace(body, '第4条', '第5条') WHERE seq = 5",
        [],
    )
    .unwrap();
    verify_fails_at(&t, &[], 5);
    // Also when the attacker fixes up the stored leaf hash: the next entry's prev no longer links.
    let body: String = c
        .query_row("SELECT body FROM entry WHERE seq = 5", [], |r| r.get(0))
        .unwrap();
    c.execute(
        "UPDATE entry SET leaf_hash = ?1 WHERE seq = 5",
        [merkle::leaf_hash(body.as_bytes()).to_vec()],
    )
    .unwrap();
    let out = verify_fails_at(&t, &[], 5);
    assert!(
        out.contains("(prev)") || out.contains("(checkpoint_root)"),
        "{out}"
    );
}

/// Bytes that hash right but are not canonical, or not text at all, are named as such.
#[test]
fn fail_non_canonical_and_non_utf8_entries_are_found() {
    let t = ledger_with(6);
    let c = t.db();
    drop_triggers(&c);
    let set = |seq: u64, body: &[u8]| {
        c.execute(
            "UPDATE entry SET body = CAST(?1 AS TEXT), leaf_hash = ?2 WHERE seq = ?3",
            rusqlite::params![body, merkle::leaf_hash(body).to_vec(), seq],
        )
        .unwrap();
    };
    let body: String = c
        .query_row("SELECT body FROM entry WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    set(3, body.replace("\"kind\":", "\"kind\" :").as_bytes());
    let out = verify_fails_at(&t, &[], 3);
    assert!(out.contains("(canonical)"), "{out}");
    let mut bytes = body.into_bytes();
    bytes.insert(1, 0xff);
    set(2, &bytes);
    let out = verify_fails_at(&t, &[], 2);
    assert!(out.contains("(parse)"), "{out}");
}

#[test]
fn fail_deleted_entry_is_found() {
    let t = ledger_with(8);
    let c = t.db();
    drop_triggers(&c);
    c.execute("DELETE FROM entry WHERE seq = 3", []).unwrap();
    let out = verify_fails_at(&t, &[], 3);
    assert!(out.contains("missing"), "{out}");
}

#[test]
fn fail_swapped_entries_are_found() {
    let t = ledger_with(8);
    let c = t.db();
    drop_triggers(&c);
    c.execute_batch(
        "CREATE TEMP TABLE s AS SELECT seq, body, leaf_hash FROM entry WHERE seq IN (4, 5);
         UPDATE entry SET body = (SELECT body FROM s WHERE s.seq = 9 - entry.seq),
                          leaf_hash = (SELECT leaf_hash FROM s WHERE s.seq = 9 - entry.seq)
         WHERE seq IN (4, 5);",
    )
    .unwrap();
    let out = verify_fails_at(&t, &[], 4);
    assert!(out.contains("reordered") || out.contains("prev"), "{out}");
}

/// Rewrites entry `at` and recomputes every later hash, prev and Merkle node, as someone
/// with write access to the file but without the signing key would.
fn rebuild_chain_after_edit(c: &rusqlite::Connection, at: u64) {
    drop_triggers(c);
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT seq, body FROM entry ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev: Option<[u8; 32]> = None;
    for (seq, body) in rows {
        let mut e = Entry::parse(body.as_bytes()).unwrap();
        if seq as u64 == at {
            e.data["text"] = serde_json::json!("edited");
        }
        if let Some(p) = prev {
            e.prev = hex_hash(&p);
        }
        let v = serde_json::to_value(&e).unwrap();
        let bytes = to_canonical_vec(&v).unwrap();
        let leaf = merkle::leaf_hash(&bytes);
        c.execute(
            "UPDATE entry SET body = ?1, leaf_hash = ?2 WHERE seq = ?3",
            rusqlite::params![String::from_utf8(bytes).unwrap(), leaf.to_vec(), seq],
        )
        .unwrap();
        prev = Some(leaf);
    }
}

#[test]
fn fail_rebuilt_chain_is_caught_by_the_stored_checkpoints() {
    let t = ledger_with(8);
    let c = t.db();
    rebuild_chain_after_edit(&c, 5);
    // Every link is consistent again …
    let out = verify_fails_at(&t, &[], 5);
    // … but the signed checkpoint at size 6 no longer matches.
    assert!(out.contains("checkpoint_root"), "{out}");
}

#[test]
fn fail_truncated_tail_is_caught_with_an_earlier_checkpoint() {
    let t = ledger_with(8);
    let cp = t.path().join("cp.txt");
    t.cmd(&["checkpoint", "--out", cp.to_str().unwrap()])
        .assert()
        .success();
    let c = t.db();
    drop_triggers(&c);
    // The attacker removes the last three entries and the checkpoints that covered them.
    c.execute_batch("DELETE FROM entry WHERE seq >= 6; DELETE FROM checkpoint WHERE size > 6;")
        .unwrap();
    // Locally nothing is left to contradict the shorter ledger …
    let o = t.run(&["verify", "--no-record"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // … but the checkpoint held elsewhere does.
    let out = verify_fails_at(&t, &["--checkpoint", cp.to_str().unwrap()], 6);
    assert!(out.contains("truncated"), "{out}");
}

#[test]
fn fail_truncation_with_checkpoints_left_is_found() {
    let t = ledger_with(5);
    let c = t.db();
    drop_triggers(&c);
    c.execute("DELETE FROM entry WHERE seq >= 4", []).unwrap();
    let out = verify_fails_at(&t, &[], 4);
    assert!(out.contains("truncated"), "{out}");
}

#[test]
fn fail_rolled_back_then_regrown_ledger_is_caught() {
    let t = ledger_with(4);
    let cp = t.path().join("cp.txt");
    t.cmd(&["checkpoint", "--out", cp.to_str().unwrap()])
        .assert()
        .success();
    let c = t.db();
    rebuild_chain_after_edit(&c, 2);
    c.execute("DELETE FROM checkpoint", []).unwrap();
    let out = verify_fails_at(&t, &["--checkpoint", cp.to_str().unwrap()], 0);
    assert!(out.contains("checkpoint_root"), "{out}");
}

#[test]
fn fail_checkpoint_signed_by_another_key_is_refused() {
    let a = ledger_with(1);
    let b = ledger_with(1);
    let cp = b.path().join("cp.txt");
    b.cmd(&["checkpoint", "--out", cp.to_str().unwrap()])
        .assert()
        .success();
    let o = a.run(&[
        "verify",
        "--no-record",
        "--checkpoint",
        cp.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("does not verify"), "{}", stdout(&o));
}

#[test]
fn export_is_the_hashed_bytes_and_proofs_verify_offline() {
    let t = ledger_with(20);
    let o = t.run(&["export"]);
    assert!(o.status.success());
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21);
    let leaves: Vec<_> = lines
        .iter()
        .map(|l| merkle::leaf_hash(l.as_bytes()))
        .collect();
    // Chain links as FORMAT.md says.
    for (i, l) in lines.iter().enumerate().skip(1) {
        let e = Entry::parse(l.as_bytes()).unwrap();
        assert_eq!(e.prev, hex_hash(&leaves[i - 1]));
    }
    // The checkpoint commits to the root of the exported lines.
    let cp = stdout(&t.run(&["checkpoint"]));
    let size = t
        .run(&["export"])
        .stdout
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
    assert!(cp.contains(&format!("\n{size}\n")), "{cp}");

    let proof = t.run(&["prove", "inclusion", "--seq", "7", "--size", "21"]);
    assert!(proof.status.success());
    let pf = t.write("incl.json", &stdout(&proof));
    let v: serde_json::Value = serde_json::from_slice(&proof.stdout).unwrap();
    assert_eq!(v["leaf_hash"], hex_hash(&leaves[7]));
    assert_eq!(
        v["root"],
        hex_hash(&merkle::root(&merkle::MemTree::from_leaves(leaves.clone()), 21).unwrap())
    );
    let entry_file = t.write("entry7.jsonl", &format!("{}\n", lines[7]));
    let o = TestDir::new().run(&[
        "proof",
        "verify",
        pf.to_str().unwrap(),
        "--entry",
        entry_file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let wrong_entry = t.write("entry8.jsonl", lines[8]);
    let o = TestDir::new().run(&[
        "proof",
        "verify",
        pf.to_str().unwrap(),
        "--entry",
        wrong_entry.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));

    // A flipped hash makes it invalid (exit 1); garbage is an input error (exit 2).
    let mut bad = v.clone();
    let h = bad["path"][0].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", if h.starts_with('0') { "1" } else { "0" }, &h[1..]);
    bad["path"][0] = serde_json::json!(flipped);
    let bf = t.write("bad.json", &bad.to_string());
    assert_eq!(
        t.run(&["proof", "verify", bf.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    let gf = t.write("garbage.json", "{\"leaf_index\": \"x\"}");
    let o = t.run(&["proof", "verify", gf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("malformed proof"), "{}", stderr(&o));

    // Consistency proof, also checked against a signed checkpoint and the vkey.
    let cpf = t.write("cp.txt", &cp);
    let vkey = stdout(&t.run(&["key", "show"])).trim().to_owned();
    let c = t.run(&[
        "prove",
        "consistency",
        "--old",
        "9",
        "--new",
        &size.to_string(),
    ]);
    assert!(c.status.success(), "{}", stderr(&c));
    let cf = t.write("cons.json", &stdout(&c));
    let o = t.run(&[
        "proof",
        "verify",
        cf.to_str().unwrap(),
        "--checkpoint",
        cpf.to_str().unwrap(),
        "--vkey",
        &vkey,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let other = ledger_with(0);
    let other_key = stdout(&other.run(&["key", "show"])).trim().to_owned();
    let o = t.run(&[
        "proof",
        "verify",
        cf.to_str().unwrap(),
        "--checkpoint",
        cpf.to_str().unwrap(),
        "--vkey",
        &other_key,
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn fail_clear_errors_for_bad_input() {
    let t = TestDir::new();
    let o = t.run(&["log"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no ledger at"), "{}", stderr(&o));
    t.init();
    let o = t.run(&["init", "--origin", "again"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"));
    let o = t.run(&[
        "append",
        "--kind",
        "note.x",
        "--subject",
        "s",
        "--data",
        "{bad",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid JSON in --data"),
        "{}",
        stderr(&o)
    );
    let o = t.run(&[
        "append",
        "--kind",
        "member.update",
        "--subject",
        "s",
        "--data",
        "{}",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = t.run(&["prove", "inclusion", "--seq", "99"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("entry 99 does not exist"),
        "{}",
        stderr(&o)
    );
    let o = t.run(&["verify", "--vkey", "not-a-key"]);
    assert_eq!(o.status.code(), Some(2));
    // Nothing was appended by the failed commands.
    let n = t
        .run(&["export"])
        .stdout
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    assert_eq!(n, 1);
}

#[test]
fn fail_wrong_trusted_key_is_refused() {
    let a = ledger_with(1);
    let b = ledger_with(0);
    let other_key = stdout(&b.run(&["key", "show"])).trim().to_owned();
    let o = a.run(&["verify", "--no-record", "--vkey", &other_key]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("(key)"), "{}", stdout(&o));
}

#[test]
fn fail_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = ledger_with(0);
    let key = t.data().join("signing.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = t.run(&["checkpoint"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
}

#[test]
fn log_filters_and_json() {
    let t = ledger_with(3);
    let o = t.run(&["log", "--subject", "case/1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["seq"], 2);
    let o = t.run(&["log", "--since", "2999-01-01"]);
    assert!(stdout(&o).is_empty());
    let o = t.run(&["log", "--since", "not a date"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn concurrent_processes_never_fork_the_chain() {
    let t = TestDir::new();
    t.init();
    let bin = assert_cmd::cargo::cargo_bin("djaudit");
    let children: Vec<_> = (0..4)
        .map(|p| {
            let lines: String = (0..500)
                .map(|i| format!("{{\"kind\":\"note.test\",\"subject\":\"p{p}/{i}\",\"data\":{{\"i\":{i}}}}}\n"))
                .collect();
            let file = t.write(&format!("batch{p}.jsonl"), &lines);
            StdCommand::new(&bin)
                .arg("--data")
                .arg(t.data())
                .args(["append", "--chunk", "1", "--batch"])
                .arg(file)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let exported = stdout(&t.run(&["export"]));
    let seqs: Vec<u64> = exported
        .lines()
        .map(|l| Entry::parse(l.as_bytes()).unwrap().seq)
        .collect();
    assert_eq!(seqs.len(), 2001);
    assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64));
    let o = t.run(&["verify", "--no-record"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn killed_bulk_append_keeps_every_acknowledged_entry() {
    use std::io::{BufRead, BufReader};
    let t = TestDir::new();
    t.init();
    let lines: String = (0..200_000)
        .map(|i| {
            format!("{{\"kind\":\"note.test\",\"subject\":\"n/{i}\",\"data\":{{\"i\":{i}}}}}\n")
        })
        .collect();
    let file = t.write("big.jsonl", &lines);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("djaudit"))
        .arg("--data")
        .arg(t.data())
        .args(["append", "--chunk", "500", "--batch"])
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = 0u64;
    let mut line = String::new();
    // Wait for a few acknowledged chunks, then kill -9 in the middle of the next ones.
    while acknowledged < 3000 {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(range) = line.trim().strip_prefix("committed entries ") {
            acknowledged = range.split("..").nth(1).unwrap().parse::<u64>().unwrap();
        }
    }
    child.kill().unwrap();
    // Lines already written to the pipe before the kill are acknowledged too.
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(range) = line.trim().strip_prefix("committed entries ") {
            acknowledged = range.split("..").nth(1).unwrap().parse::<u64>().unwrap();
        }
    }
    child.wait().unwrap();
    assert!(acknowledged >= 3000, "the bulk append never got going");
    let size = t
        .run(&["export"])
        .stdout
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
    assert!(
        size > acknowledged,
        "acknowledged seq {acknowledged} but ledger has {size}"
    );
    assert!(size < 200_001, "the kill came too late to test anything");
    let o = t.run(&["verify", "--no-record"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn key_rotation_through_the_cli_keeps_old_and_new_checkpoints_verifiable() {
    let t = ledger_with(3);
    let genesis = stdout(&t.run(&["key", "show"])).trim().to_owned();
    let before = t.path().join("before.txt");
    t.cmd(&["checkpoint", "--out", before.to_str().unwrap()])
        .assert()
        .success();
    // Nobody may write the rotation entry by hand.
    let o = t.run(&[
        "append",
        "--kind",
        "key.rotate",
        "--subject",
        "ledger",
        "--data",
        "{}",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let o = t.run(&["key", "rotate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let new = stdout(&o).trim().to_owned();
    assert_ne!(new, genesis);
    assert_eq!(stdout(&t.run(&["key", "show"])).trim(), new);
    assert_eq!(
        stdout(&t.run(&["key", "show", "--genesis"])).trim(),
        genesis
    );

    t.cmd(&[
        "append",
        "--kind",
        "note.test",
        "--subject",
        "case/9",
        "--data",
        "{}",
    ])
    .assert()
    .success();
    let after = t.path().join("after.txt");
    t.cmd(&["checkpoint", "--out", after.to_str().unwrap()])
        .assert()
        .success();
    let note = std::fs::read_to_string(&after).unwrap();
    // Signed by the new key, not by the genesis key.
    let key = |k: &str| djaudit::ledger::note::VerifierKey::parse(k).unwrap();
    assert!(djaudit::ledger::checkpoint::open_checkpoint(&note, &key(&new)).is_ok());
    assert!(djaudit::ledger::checkpoint::open_checkpoint(&note, &key(&genesis)).is_err());
    // Verify trusts the genesis key and follows the rotation, with either checkpoint.
    for cp in [&before, &after] {
        let o = t.run(&[
            "verify",
            "--no-record",
            "--checkpoint",
            cp.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    }
    let o = t.run(&["verify", "--no-record", "--vkey", &genesis]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // The new key is not the root of trust: verify trusts the genesis key.
    let o = t.run(&["verify", "--no-record", "--vkey", &new]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

#[test]
fn fail_changed_key_rotation_is_found_at_its_seq() {
    let t = ledger_with(2);
    t.cmd(&["key", "rotate"]).assert().success();
    let c = t.db();
    let (seq, body): (i64, String) = c
        .query_row(
            "SELECT seq, body FROM entry WHERE kind = 'key.rotate'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // Someone with write access to the database swaps in a key of their own and rebuilds
    // the chain; the old key's signature no longer matches.
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let other = {
        let o = TestDir::new();
        o.init();
        stdout(&o.run(&["key", "show"])).trim().to_owned()
    };
    // Same origin (TestDir::init), another key.
    assert_eq!(
        other.split('+').next(),
        v["data"]["vkey"].as_str().unwrap().split('+').next()
    );
    v["data"]["vkey"] = serde_json::Value::String(other);
    drop_triggers(&c);
    c.execute(
        "UPDATE entry SET body = ?1 WHERE seq = ?2",
        rusqlite::params![
            String::from_utf8(to_canonical_vec(&v).unwrap()).unwrap(),
            seq
        ],
    )
    .unwrap();
    rebuild_chain_after_edit(&c, u64::MAX);
    let out = verify_fails_at(&t, &[], seq as u64);
    assert!(
        out.contains("not signed by the key in effect (key)"),
        "{out}"
    );
}
