//! docs/CLI.md describes every command the binary has, with its current help text.

mod util;

use util::{stdout, TestDir};

#[test]
fn cli_doc_has_every_command_and_its_help() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CLI.md")).unwrap();
    let t = TestDir::new();
    let top = stdout(&t.run(&["--help"]));
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 20, "{top}");
    for c in commands {
        assert!(
            doc.contains(&format!("## `djaudit {c}`")),
            "docs/CLI.md lacks `{c}`"
        );
        let help = stdout(&t.run(&[c, "--help"]));
        assert!(
            doc.contains(help.trim_end()),
            "docs/CLI.md has an outdated help text for `{c}`; regenerate it (see its first lines)"
        );
    }
}
