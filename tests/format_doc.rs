//! The worked example of docs/FORMAT.md §7 is real: its lines, hashes, root, key and signed
//! checkpoint agree with each other under the rules the document states.

use djaudit::ledger::canonical::to_canonical_vec;
use djaudit::ledger::checkpoint::open_checkpoint;
use djaudit::ledger::entry::{hex_hash, Entry, ZERO_PREV};
use djaudit::ledger::merkle::{leaf_hash, node_hash};
use djaudit::ledger::note::VerifierKey;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md")).unwrap()
}

/// The code blocks of §7, in order.
fn example_blocks(doc: &str) -> Vec<String> {
    let section = doc.split("## 7. Worked example").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|b| {
            b.trim_start_matches(|c| c != '\n')
                .trim_start_matches('\n')
                .to_owned()
        })
        .collect()
}

fn backticked_after(doc: &str, label: &str) -> String {
    let at = doc.find(label).unwrap() + label.len();
    let rest = &doc[at..];
    let start = rest.find('`').unwrap() + 1;
    let end = start + rest[start..].find('`').unwrap();
    rest[start..end].to_owned()
}

#[test]
fn worked_example_verifies() {
    let doc = doc();
    let blocks = example_blocks(&doc);
    // Blocks: commands, export, checkpoint.
    let export = &blocks[1];
    let note = &blocks[2];
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 2);
    let leaves: Vec<_> = lines.iter().map(|l| leaf_hash(l.as_bytes())).collect();
    for (i, l) in lines.iter().enumerate() {
        let e = Entry::parse(l.as_bytes()).unwrap();
        assert_eq!(e.seq, i as u64);
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(
            to_canonical_vec(&v).unwrap(),
            l.as_bytes(),
            "line {i} is canonical"
        );
        let prev = if i == 0 {
            ZERO_PREV.to_owned()
        } else {
            hex_hash(&leaves[i - 1])
        };
        assert_eq!(e.prev, prev);
        assert!(doc.contains(&format!("entry {i}: `{}`", hex_hash(&leaves[i]))));
    }
    let root = node_hash(&leaves[0], &leaves[1]);
    assert!(doc.contains(&format!("`{}`, in base64", hex_hash(&root))));
    let vkey = VerifierKey::parse(&backticked_after(&doc, "Verifier key:")).unwrap();
    let genesis = Entry::parse(lines[0].as_bytes()).unwrap();
    assert_eq!(genesis.data["vkey"], vkey.to_string());
    assert!(doc.contains(&hex::encode(vkey.public_key())));
    let cp = open_checkpoint(note, &vkey).unwrap();
    assert_eq!(cp.size(), 2);
    assert_eq!(cp.root(), &root);
    assert_eq!(cp.origin(), "example.org/party-ledger");
    // A one-character change of the note fails.
    let bad = note.replacen("\n2\n", "\n3\n", 1);
    assert!(open_checkpoint(&bad, &vkey).is_err());
}
