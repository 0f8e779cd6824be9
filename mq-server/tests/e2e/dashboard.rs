//! The dashboard in a real browser: headless Chromium loads the page from the real server
//! while a producer publishes, and the page must show the topics, the groups with their
//! numbers, live rates, the selected group's consumers and diagnosis, and the settings.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mq_client::{AckMode, NewMessage, Subscription};

use super::harness::Server;
use super::{group, topic};

/// The Chromium binary: `MQ_CHROMIUM`, or the first of the usual names on the PATH.
fn chromium() -> String {
    if let Ok(path) = std::env::var("MQ_CHROMIUM") {
        return path;
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("headless Chromium is needed for the dashboard test: install Debian's `chromium` (cargo xtask ci does) or set MQ_CHROMIUM")
        .to_owned()
}

/// Runs headless Chromium on `url` for `budget_ms` of virtual time with `what` (what to
/// produce: `--dump-dom`, `--screenshot=…`); returns its standard output.
fn chromium_on(url: &str, budget_ms: u32, what: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--window-size=1280,1200",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
            what,
            url,
        ])
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The page's DOM after Chromium ran its script for `budget_ms` of virtual time.
fn rendered(url: &str, budget_ms: u32) -> String {
    chromium_on(url, budget_ms, "--dump-dom")
}

/// The text of the first element whose opening tag contains `marker`.
fn cell_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    &rest[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_topics_groups_rates_and_a_diagnosis_in_a_real_browser() {
    let server = Server::start(&["--http", "127.0.0.1:0"]);
    let http = server.http.clone().unwrap();
    let client = server.client().await;
    let t = topic("orders");
    client
        .publish(
            &t,
            (0..5).map(|i| NewMessage::new(format!("m{i}"))).collect(),
        )
        .await
        .unwrap();
    let mut sub = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("billing"))
                .ack(AckMode::Manual)
                .prefetch(2),
        )
        .await
        .unwrap();
    let _held = sub.recv().await.unwrap();
    // Traffic while the page watches, so its rates are not zero.
    let running = Arc::new(AtomicBool::new(true));
    let producer = {
        let (client, running, t) = (client.clone(), Arc::clone(&running), topic("clicks"));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let batch = (0..100).map(|_| NewMessage::new("c")).collect();
                client.publish(&t, batch).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let url = format!("http://{http}/?group=orders/billing");
    let dom = tokio::task::spawn_blocking(move || {
        let dom = rendered(&url, 4000);
        // `MQ_DASHBOARD_SCREENSHOT=docs/dashboard.png` keeps a picture of the page too.
        if let Ok(path) = std::env::var("MQ_DASHBOARD_SCREENSHOT") {
            chromium_on(&url, 8000, &format!("--screenshot={path}"));
        }
        dom
    })
    .await
    .unwrap();
    running.store(false, Ordering::Relaxed);
    producer.await.unwrap();

    assert_eq!(cell_after(&dom, "id=\"status\""), "live", "{dom}");
    assert!(dom.contains("<td>orders</td>"), "{dom}");
    assert!(dom.contains("<td>clicks</td>"), "{dom}");
    // The group: never-delivered 3, waiting 3, in flight 2, one consumer.
    assert!(
        dom.contains(
            "<td>orders</td><td>billing</td><td class=\"rate-out\">0</td><td>3</td><td>3</td><td>2</td><td>1</td>"
        ),
        "{dom}"
    );
    let clicks_rate = cell_after(&dom[dom.find("<td>clicks</td>").unwrap()..], "rate-in");
    assert!(
        clicks_rate.parse::<f64>().is_ok_and(|r| r > 0.0),
        "clicks rate {clicks_rate}"
    );
    assert!(
        cell_after(&dom, "id=\"diagnosis\"")
            .starts_with("every consumer is at its prefetch window with 3 messages waiting"),
        "{dom}"
    );
    assert!(dom.contains("<td>127.0.0.1:"), "the consumer's peer: {dom}");
    assert!(
        dom.contains("<dt>heartbeat interval ms</dt><dd>10000</dd>"),
        "{dom}"
    );
    assert!(
        cell_after(&dom, "id=\"uptime\"").starts_with("up "),
        "{dom}"
    );
}
