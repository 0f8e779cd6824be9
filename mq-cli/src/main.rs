//! The `mq` command-line tool.

fn main() {
    eprintln!("error: the mq command is not built yet: embed mq-core meanwhile");
    std::process::exit(1);
}
