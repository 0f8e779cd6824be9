//! `--help` of every command, pinned.

use super::harness::{mq, ok};

#[test]
fn help_of_every_command_is_pinned() {
    let commands: &[&[&str]] = &[
        &[],
        &["publish"],
        &["consume"],
        &["topics"],
        &["topics", "list"],
        &["topics", "create"],
        &["topics", "delete"],
        &["topics", "describe"],
        &["groups"],
        &["groups", "list"],
        &["groups", "describe"],
        &["groups", "create"],
        &["groups", "seek"],
        &["topics", "purge"],
        &["topics", "alter"],
        &["peek"],
        &["groups", "delete"],
        &["stats"],
        &["bench"],
    ];
    for command in commands {
        let name = if command.is_empty() {
            "mq".to_owned()
        } else {
            format!("mq_{}", command.join("_"))
        };
        let help = ok(&mq(&[*command, &["--help"]].concat()));
        insta::assert_snapshot!(name, help);
    }
}
