//! A multi-model workload on a cluster of real processes: a scheduler and
//! three nodes on loopback, 24 models with Zipf popularity, bursty
//! arrivals. It runs the same trace against three ways of handling a switch
//! between models and prints time to first token, requests served, wakes and
//! preemptions. Not a test: `bench/workload.sh` runs it.
//!
//! - GreenThread: each node's device holds two models; sleeping models wait
//!   in the RAM tier; least recently used first, with the default rules and
//!   with no minimum residency.
//! - Reload from disk per switch (Ollama-style): one model per node device,
//!   every switch unloads it and loads the next from the disk cache.
//! - Cold start per switch: one model per device, every switch fetches the
//!   artifact again, verifies it, opens it and loads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use greenthread_node_runtime::fixtures::TinyModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MODELS: usize = 24;
const NODES: usize = 3;
const TOKEN: &str = "bench-cluster-token-0123456789abcdef";
/// Zipf exponent: a few hot models and a long tail, as in multi-tenant serving traces.
const ZIPF_S: f64 = 1.1;

struct Scenario {
    name: &'static str,
    models_per_device: u64,
    warm_tier: &'static str,
    ram_cache: &'static str,
    min_residency: &'static str,
    preempt_after: &'static str,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "GreenThread (defaults: 10 s residency, 5 s)",
        models_per_device: 2,
        warm_tier: "ram",
        ram_cache: "4GiB",
        min_residency: "10s",
        preempt_after: "5s",
    },
    Scenario {
        name: "GreenThread (no minimum residency)",
        models_per_device: 2,
        warm_tier: "ram",
        ram_cache: "4GiB",
        min_residency: "0s",
        preempt_after: "0s",
    },
    Scenario {
        name: "reload from disk per switch",
        models_per_device: 1,
        warm_tier: "disk",
        ram_cache: "0",
        min_residency: "0s",
        preempt_after: "0s",
    },
    Scenario {
        name: "cold start per switch",
        models_per_device: 1,
        warm_tier: "object",
        ram_cache: "0",
        min_residency: "0s",
        preempt_after: "0s",
    },
];

/// One request of the trace: when it is sent and to which model.
#[derive(Clone, Copy)]
struct Arrival {
    at: Duration,
    model: usize,
}

/// A seeded trace: quiet stretches at 1.5 requests/s broken by bursts of
/// 12 requests/s, each request's model drawn by Zipf popularity.
fn trace(seconds: f64, seed: u64) -> Vec<Arrival> {
    let mut rng = StdRng::seed_from_u64(seed);
    let weights: Vec<f64> = (1..=MODELS).map(|k| 1.0 / (k as f64).powf(ZIPF_S)).collect();
    let total: f64 = weights.iter().sum();
    let mut t = 0.0;
    let mut out = Vec::new();
    while t < seconds {
        let in_burst = (t as u64 / 5) % 3 == 2;
        let rate = if in_burst { 12.0 } else { 1.5 };
        t += -(1.0 - rng.random::<f64>()).ln() / rate;
        let mut x = rng.random::<f64>() * total;
        let model = weights.iter().position(|w| {
            x -= w;
            x <= 0.0
        });
        out.push(Arrival { at: Duration::from_secs_f64(t), model: model.unwrap_or(MODELS - 1) });
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Cluster {
    children: Vec<Child>,
    base: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(scenario: &Scenario, models_dir: &Path, work: &Path, footprint: u64) -> Cluster {
    let bin = env!("CARGO_BIN_EXE_greenthread");
    let config = work.join("config.yaml");
    let mut yaml = String::from("models:\n");
    for i in 0..MODELS {
        yaml += &format!(
            "  - name: m{i:02}\n    artifact: {}\n    warm_tier: {}\n    idle_timeout: 10m\n",
            models_dir.join(format!("m{i:02}.gguf")).display(),
            scenario.warm_tier
        );
    }
    std::fs::write(&config, yaml).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = |name: &str| std::fs::File::create(work.join(format!("{name}.log"))).unwrap();
    let mut children = vec![
        Command::new(bin)
            .args([
                "serve",
                "--open",
                "--no-local-node",
                "--cluster-token",
                TOKEN,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--config", config.to_str().unwrap(), "--data-dir", work.join("control").to_str().unwrap()])
            .args([
                "--min-residency",
                scenario.min_residency,
                "--preempt-after",
                scenario.preempt_after,
                "--wake-timeout",
                "120s",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("control"))
            .spawn()
            .unwrap(),
    ];
    // Room for the scenario's models, and a little over for KV caches.
    let device = footprint * scenario.models_per_device + footprint / 2;
    for n in 0..NODES {
        children.push(
            Command::new(bin)
                .args(["node", "--control-plane", &base, "--cluster-token", TOKEN, "--id", &format!("node-{n}")])
                .args([
                    "--listen",
                    &format!("127.0.0.1:{}", free_port()),
                    "--data-dir",
                    work.join(format!("node-{n}")).to_str().unwrap(),
                    "--artifact-dir",
                    models_dir.to_str().unwrap(),
                ])
                .args([
                    "--device-memory",
                    &device.to_string(),
                    "--ram-cache",
                    scenario.ram_cache,
                    "--max-sequences",
                    "4",
                ])
                .env("RUST_LOG", "warn")
                // Three nodes share this machine's cores: one compute thread each,
                // so their spinning thread pools do not steal each other's time.
                .env("RAYON_NUM_THREADS", "1")
                .stdout(Stdio::null())
                .stderr(log(&format!("node-{n}")))
                .spawn()
                .unwrap(),
        );
    }
    Cluster { children, base }
}

struct Outcome {
    ttft: Option<Duration>,
}

async fn request(client: &reqwest::Client, base: &str, model: usize) -> Outcome {
    let started = Instant::now();
    let body = serde_json::json!({
        "model": format!("m{model:02}"),
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 4, "temperature": 0, "stream": true,
    });
    let Ok(resp) = client.post(format!("{base}/v1/chat/completions")).json(&body).send().await else {
        return Outcome { ttft: None };
    };
    if !resp.status().is_success() {
        return Outcome { ttft: None };
    }
    let mut stream = resp.bytes_stream();
    let mut ttft = None;
    while let Some(Ok(chunk)) = stream.next().await {
        if ttft.is_none()
            && chunk.windows(9).any(|w| w == b"\"content\"")
            && !chunk.windows(12).any(|w| w == b"\"content\":\"\"")
        {
            ttft = Some(started.elapsed());
        }
    }
    // A request whose answer was empty still got its first (empty) token when the stream ended.
    Outcome { ttft: ttft.or(Some(started.elapsed())) }
}

async fn metric_sum(client: &reqwest::Client, base: &str, prefix: &str) -> f64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(45.0);
    let work = tempfile::tempdir().unwrap();
    let models_dir: PathBuf = work.path().join("models");
    std::fs::create_dir_all(&models_dir).unwrap();
    for i in 0..MODELS {
        let mut m = TinyModel { seed: 100 + i as u64, ..TinyModel::qwen2().with_shape(512, 8, 2, 64, 1536) };
        m.layers = 6;
        m.write(&models_dir.join(format!("m{i:02}.gguf"))).unwrap();
    }
    let footprint = std::fs::metadata(models_dir.join("m00.gguf")).unwrap().len();
    let arrivals = trace(seconds, 7);
    eprintln!(
        "{MODELS} models of {:.1} MiB, {} requests over {seconds} s",
        footprint as f64 / 1048576.0,
        arrivals.len()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| system | requests | served | TTFT p50 | TTFT p99 | wakes | preemptions |");
    println!("|---|---|---|---|---|---|---|");
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let dir = work.path().join(format!("scenario-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = start(scenario, &models_dir, &dir, footprint);
        let row = rt.block_on(async {
            let client = reqwest::Client::new();
            for _ in 0..600 {
                let ready = client.get(format!("{}/status", cluster.base)).send().await.ok();
                if let Some(r) = ready
                    && let Ok(s) = r.json::<serde_json::Value>().await
                    && s["nodes"].as_array().is_some_and(|n| n.len() == NODES)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Every model is fetched to a node once before the clock starts, as it
            // would be on a cluster that has been running.
            for m in 0..MODELS {
                request(&client, &cluster.base, m).await;
            }
            let wakes0 = metric_sum(&client, &cluster.base, "greenthread_model_wakes_total").await;
            let preempted = |c: reqwest::Client, base: String| async move {
                let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
                text.lines()
                    .filter(|l| l.starts_with("greenthread_model_sleeps_total") && l.contains("cause=\"preempted\""))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            };
            let pre_before = preempted(client.clone(), cluster.base.clone()).await;
            let started = Instant::now();
            let tasks: Vec<_> = arrivals
                .iter()
                .map(|a| {
                    let (client, base, a) = (client.clone(), cluster.base.clone(), *a);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(started + a.at)).await;
                        request(&client, &base, a.model).await
                    })
                })
                .collect();
            let mut ttfts = Vec::new();
            for t in tasks {
                if let Some(d) = t.await.unwrap().ttft {
                    ttfts.push(d);
                }
            }
            ttfts.sort();
            let wakes = metric_sum(&client, &cluster.base, "greenthread_model_wakes_total").await - wakes0;
            let preemptions = preempted(client.clone(), cluster.base.clone()).await - pre_before;
            (ttfts, wakes, preemptions)
        });
        let (ttfts, wakes, preemptions) = row;
        if ttfts.is_empty() {
            println!("| {} | {} | 0 | – | – | {wakes} | {preemptions} |", scenario.name, arrivals.len());
            continue;
        }
        println!(
            "| {} | {} | {} | {:.0} ms | {:.0} ms | {wakes} | {preemptions} |",
            scenario.name,
            arrivals.len(),
            ttfts.len(),
            percentile(&ttfts, 0.5).as_secs_f64() * 1e3,
            percentile(&ttfts, 0.99).as_secs_f64() * 1e3,
        );
        drop(cluster);
    }
}
