//! What the gateway hop costs: the same request sent at a fixed rate to a
//! node's own per-model endpoint, through `serve` (key check, project
//! scoping, lease, forwarding, metering) and through a separate `gateway`
//! (the same, with the lease taken from the scheduler over HTTP),
//! interleaved so that all see the same machine. Not a test:
//! `bench/overhead.sh` runs it.
//!
//! The request is a one-token completion of a three-token prompt on a tiny
//! generated model, so the model's own time is small and equal on both
//! paths; the difference of the latency percentiles is the hop's cost.
//!
//! A fourth path is the floor: a bare forwarder built on the same HTTP
//! stack (axum's server, reqwest's pooled client, a multi-threaded tokio
//! runtime) that does nothing but pass the request to the node and its
//! answer back. What it adds is what one more process and one more loopback
//! exchange cost on the machine at hand; what `serve` adds beyond it is
//! GreenThread's own work.

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
        if let Ok(r) = client.get(url).bearer_auth(ADMIN).send().await
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

/// One path a request can take, and its latencies.
struct Path {
    name: &'static str,
    url: String,
    auth: String,
    times: Vec<Duration>,
}

/// The bare forwarder: every POST to this process goes to `node` under the
/// cluster token, and the node's answer comes back as it is.
async fn bare_forwarder(port: u16, node: String) {
    let client = reqwest::Client::new();
    let forward = move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let (client, url) = (client.clone(), format!("{node}{}", uri.path()));
        async move {
            let answer = client
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (answer.status(), answer.bytes().await.unwrap())
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    axum::serve(listener, axum::Router::new().fallback(axum::routing::post(forward))).await.unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if args.get(1).map(String::as_str) == Some("--bare-forwarder") {
        runtime.block_on(bare_forwarder(args[2].parse().unwrap(), args[3].clone()));
    } else {
        runtime.block_on(measure());
    }
}

async fn measure() {
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
    let (serve_port, gateway_port, node_port, bare_port) = (free_port(), free_port(), free_port(), free_port());
    let serve = format!("http://127.0.0.1:{serve_port}");
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let node = format!("http://127.0.0.1:{node_port}");
    let data = work.path().join("scheduler");
    let log = |name: &str| std::fs::File::create(work.path().join(format!("{name}.log"))).unwrap();
    let spawn = |args: &[&str], name: &str| {
        Command::new(bin)
            .args(args)
            .env("GREENTHREAD_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(log(name))
            .spawn()
            .unwrap()
    };
    let mut processes = Processes(vec![spawn(
        &[
            "serve",
            "--no-local-node",
            "--cluster-token",
            TOKEN,
            "--listen",
            &format!("127.0.0.1:{serve_port}"),
            "--config",
            work.path().join("config.yaml").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "scheduler",
    )]);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    wait_for(&client, &format!("{serve}/health"), |_| true).await;
    processes.0.push(spawn(
        &[
            "node",
            "--control-plane",
            &serve,
            "--cluster-token",
            TOKEN,
            "--id",
            "node-0",
            "--listen",
            &format!("127.0.0.1:{node_port}"),
            "--data-dir",
            work.path().join("node").to_str().unwrap(),
            "--artifact-dir",
            work.path().to_str().unwrap(),
        ],
        "node",
    ));
    processes.0.push(spawn(
        &[
            "gateway",
            "--scheduler",
            &serve,
            "--cluster-token",
            TOKEN,
            "--listen",
            &format!("127.0.0.1:{gateway_port}"),
            "--database-url",
            &format!("sqlite://{}?mode=rwc", data.join("greenthread.db").display()),
        ],
        "gateway",
    ));
    let bare = format!("http://127.0.0.1:{bare_port}");
    processes.0.push(
        Command::new(std::env::current_exe().unwrap())
            .args(["--bare-forwarder", &bare_port.to_string(), &node])
            .stdout(Stdio::null())
            .stderr(log("bare"))
            .spawn()
            .unwrap(),
    );
    wait_for(&client, &format!("{serve}/status"), |s| s["nodes"].as_array().is_some_and(|n| !n.is_empty())).await;
    wait_for(&client, &format!("{gateway}/health"), |_| true).await;
    while tokio::net::TcpStream::connect(("127.0.0.1", bare_port)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let created: Value = client
        .post(format!("{serve}/graphql"))
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
    let path = |name, base: &str, auth: &str| Path {
        name,
        url: format!("{base}/tiny/v1/completions"),
        auth: auth.to_owned(),
        times: Vec::new(),
    };
    let mut paths = [
        path("node directly", &node, TOKEN),
        path("through a bare forwarder (the floor: same HTTP stack, no work)", &bare, TOKEN),
        path("through `serve` (gateway and scheduler in one process)", &serve, &key),
        path("through `gateway` (lease from the scheduler, then the node)", &gateway, &key),
    ];
    // Wake the model on the node (the node knows it once the scheduler
    // has placed it there), and warm the connection pools.
    for _ in 0..50 {
        for p in paths.iter().rev() {
            let r = client.post(&p.url).bearer_auth(&p.auth).json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{}: {}", p.url, r.text().await.unwrap());
        }
    }
    let n = paths.len() as u64;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / (n * RATE)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..(n * RATE * seconds) {
        tick.tick().await;
        let which = (i % n) as usize;
        let (url, auth) = (paths[which].url.clone(), paths[which].auth.clone());
        let (client, body) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client.post(&url).bearer_auth(&auth).json(&body).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
            (which, started.elapsed())
        }));
    }
    for t in tasks {
        let (which, took) = t.await.unwrap();
        paths[which].times.push(took);
    }
    for p in &mut paths {
        p.times.sort();
    }
    println!(
        "{} requests per path at {RATE}/s each, interleaved; one-token completions of a tiny model.\n",
        paths[0].times.len()
    );
    // p10 is shown too: on a shared VM it moves least from run to run, so
    // it is the steadiest view of a path's own cost.
    println!("| path | p10 | p50 | p99 | added p10 | added p50 | added p99 |");
    println!("|---|---|---|---|---|---|---|");
    let at = |p: &Path| [0.1, 0.5, 0.99].map(|q| ms(percentile(&p.times, q)));
    let base = at(&paths[0]);
    for p in &paths {
        let [p10, p50, p99] = at(p);
        println!(
            "| {} | {p10:.3} ms | {p50:.3} ms | {p99:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            p.name,
            p10 - base[0],
            p50 - base[1],
            p99 - base[2]
        );
    }
    // What `serve` and the gateway add beyond the floor is their own work.
    let floor = at(&paths[1]);
    for p in &paths[2..] {
        let [p10, p50, p99] = at(p);
        println!(
            "\nBeyond the bare forwarder, {}: {:.3} / {:.3} / {:.3} ms at p10 / p50 / p99.",
            p.name,
            p10 - floor[0],
            p50 - floor[1],
            p99 - floor[2]
        );
    }
}
