//! The `mq-server` binary.

fn main() {
    eprintln!("error: mq-server has no network listener yet: embed mq-core meanwhile");
    std::process::exit(1);
}
