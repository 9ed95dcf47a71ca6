//! What the gateway hop costs: the same request sent at a fixed rate to a
//! node's own per-model endpoint and through a gateway (key check, project
//! scoping, lease, forwarding, metering), interleaved so that both see the
//! same machine. Not a test: `bench/overhead.sh` runs it.
//!
//! The request is a one-token completion of a three-token prompt on a tiny
//! generated model, so the model's own time is small and equal on both
//! paths; the difference of the latency percentiles is the hop's cost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use greenthread_node_runtime::fixtures::TinyModel;
use serde_json::{Value, json};

const TOKEN: &str = "bench-cluster-token-0123456789abcdef";
const ADMIN: &str = "bench-admin-credential-0123456789abcdef";
/// Requests per second on each path.
const RATE: u64 = 100;

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_for(client: &reqwest::Client, url: &str, ok: impl Fn(&Value) -> bool) {
    for _ in 0..600 {
        if let Ok(r) = client.get(url).send().await
            && let Ok(v) = r.json::<Value>().await
            && ok(&v)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not become ready");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("tiny.gguf");
    TinyModel::qwen2().write(&model).unwrap();
    std::fs::write(
        work.path().join("config.yaml"),
        format!("models:\n  - name: tiny\n    artifact: {}\n    idle_timeout: 1h\n", model.display()),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_greenthread");
    let (gw_port, node_port) = (free_port(), free_port());
    let gateway = format!("http://127.0.0.1:{gw_port}");
    let node = format!("http://127.0.0.1:{node_port}");
    let log = |name: &str| std::fs::File::create(work.path().join(format!("{name}.log"))).unwrap();
    let _processes = Processes(vec![
        Command::new(bin)
            .args(["serve", "--no-local-node", "--cluster-token", TOKEN, "--listen", &format!("127.0.0.1:{gw_port}")])
            .args(["--config", work.path().join("config.yaml").to_str().unwrap()])
            .args(["--data-dir", work.path().join("gateway").to_str().unwrap()])
            .env("GREENTHREAD_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("gateway"))
            .spawn()
            .unwrap(),
        Command::new(bin)
            .args(["node", "--control-plane", &gateway, "--cluster-token", TOKEN, "--id", "node-0"])
            .args(["--listen", &format!("127.0.0.1:{node_port}")])
            .args(["--data-dir", work.path().join("node").to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(log("node"))
            .spawn()
            .unwrap(),
    ]);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    wait_for(&client, &format!("{gateway}/status"), |s| s["nodes"].as_array().is_some_and(|n| !n.is_empty())).await;
    let created: Value = client
        .post(format!("{gateway}/graphql"))
        .bearer_auth(ADMIN)
        .json(&json!({"query": "mutation { createApiKey(input: {project: \"default\", name: \"bench\", scopes: [\"inference\"]}) { secret } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["data"]["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let body = json!({"prompt": [1, 2, 3], "max_tokens": 1, "temperature": 0});
    let direct = (format!("{node}/tiny/v1/completions"), TOKEN.to_owned());
    let through = (format!("{gateway}/tiny/v1/completions"), key);
    // Wake the model on the node, and warm both connection pools.
    for _ in 0..50 {
        for (url, auth) in [&through, &direct] {
            let r = client.post(url).bearer_auth(auth).json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.text().await.unwrap());
        }
    }
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / (2 * RATE)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..(2 * RATE * seconds) {
        tick.tick().await;
        let (url, auth) = if i % 2 == 0 { direct.clone() } else { through.clone() };
        let (client, body) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client.post(&url).bearer_auth(&auth).json(&body).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
            (i % 2 == 1, started.elapsed())
        }));
    }
    let (mut node_times, mut gateway_times) = (Vec::new(), Vec::new());
    for t in tasks {
        let (via_gateway, took) = t.await.unwrap();
        if via_gateway { gateway_times.push(took) } else { node_times.push(took) }
    }
    node_times.sort();
    gateway_times.sort();
    println!(
        "{} requests per path at {RATE}/s each, interleaved; one-token completions of a tiny model.\n",
        node_times.len()
    );
    println!("| path | p50 | p99 |");
    println!("|---|---|---|");
    for (name, times) in [("node directly", &node_times), ("through the gateway", &gateway_times)] {
        println!("| {name} | {:.3} ms | {:.3} ms |", ms(percentile(times, 0.5)), ms(percentile(times, 0.99)));
    }
    println!(
        "| **added by the gateway** | **{:.3} ms** | **{:.3} ms** |",
        ms(percentile(&gateway_times, 0.5)) - ms(percentile(&node_times, 0.5)),
        ms(percentile(&gateway_times, 0.99)) - ms(percentile(&node_times, 0.99)),
    );
}
