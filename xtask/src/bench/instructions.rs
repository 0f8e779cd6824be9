//! `cargo xtask bench --instructions`: the server's instructions per published and per
//! delivered message, counted by valgrind's callgrind — however busy the machine is, the
//! same binary and inputs count within a few percent (how work batches between the
//! server's tasks varies), so later changes compare closely.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::server::BenchServer;

/// Published messages of the publish run; delivered are four times the fan-out run's.
const PUBLISHED: u64 = 200_000;
const FANNED: u64 = 100_000;

/// Counts both runs and returns them as a Markdown table.
pub(crate) fn run(release: &Path) -> anyhow::Result<String> {
    let publish = count(
        release,
        &["publish", "-n", &PUBLISHED.to_string(), "--size", "100"],
    )?;
    let fanout = count(
        release,
        &[
            "fanout",
            "-n",
            &FANNED.to_string(),
            "--size",
            "100",
            "--consumers",
            "4",
        ],
    )?;
    let core_publish = publish.function("mq_core::broker::Broker::publish_stamped")?;
    let core_deliver = fanout.function("mq_core::consumer::Consumer::poll_recv")?;
    let delivered = FANNED * 4;
    let rows = [
        (
            "mq-core, per published message (`Broker::publish_stamped`)",
            core_publish as f64 / PUBLISHED as f64,
        ),
        (
            "mq-core, per delivered message (`Consumer::poll_recv`, fan-out to 4 groups)",
            core_deliver as f64 / delivered as f64,
        ),
        (
            "whole server, per published message (publish run)",
            publish.total as f64 / PUBLISHED as f64,
        ),
        (
            "whole server, per delivered message (fan-out run, its publishes included)",
            fanout.total as f64 / delivered as f64,
        ),
    ];
    let mut out = format!(
        "Counted by `cargo xtask bench --instructions`: a release `mq-server --storage memory` \
         under `valgrind --tool=callgrind`, driven by `mq bench publish -n {PUBLISHED} --size 100` \
         and `mq bench fanout -n {FANNED} --size 100 --consumers 4` (one server each).\n\n\
         | path | instructions |\n| --- | ---: |\n"
    );
    for (what, n) in rows {
        out.push_str(&format!("| {what} | {n:.0} |\n"));
    }
    Ok(out)
}

/// What callgrind counted over one run.
struct Counted {
    total: u64,
    annotated: String,
}

impl Counted {
    /// The inclusive count of the function `name`.
    fn function(&self, name: &str) -> anyhow::Result<u64> {
        self.annotated
            .lines()
            .filter(|l| l.contains(name))
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|n| n.replace(',', "").parse::<u64>().ok())
            .max()
            .with_context(|| format!("callgrind counted nothing in {name}"))
    }
}

/// Runs the server under callgrind while `mq bench <args>` drives it.
fn count(release: &Path, args: &[&str]) -> anyhow::Result<Counted> {
    let out = std::env::temp_dir().join(format!("mq-callgrind-{}.out", std::process::id()));
    let out_file = format!("--callgrind-out-file={}", out.display());
    let wrapper = ["valgrind", "--tool=callgrind", "--quiet", &out_file];
    let server = BenchServer::start_under(release, &wrapper, &["--storage", "memory"])
        .context("is valgrind installed?")?;
    // Stopped before reading: callgrind writes its counts when the server exits.
    let ran = server.bench(args);
    drop(server);
    ran?;
    let annotated = Command::new("callgrind_annotate")
        .args(["--inclusive=yes"])
        .arg(&out)
        .output()
        .context("cannot run callgrind_annotate")?;
    let _ = std::fs::remove_file(&out);
    let annotated = String::from_utf8_lossy(&annotated.stdout).into_owned();
    let total = annotated
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .context("callgrind counted nothing")?;
    Ok(Counted { total, annotated })
}
