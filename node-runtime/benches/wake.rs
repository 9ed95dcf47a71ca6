//! Sleep and wake of a real model on a CPU node, next to the physical bounds
//! measured in the same run: memory copy bandwidth for a wake from RAM, and
//! sequential read bandwidth of the same file, out of the page cache, for a
//! wake from disk. Not a test: `bench/wake.sh` runs it.
//!
//! `cargo bench -p greenthread-node-runtime --bench wake -- MODEL.gguf [--repeats N]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use greenthread_core::{ArtifactUri, ModelName, ModelSpec, NodeControl, WarmTier};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::node::{LocalArtifacts, LocalNode, NodeConfig, TierBudgets, evict_from_page_cache};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Best bandwidth (bytes/s) of copying `src` into freshly allocated memory
/// with `threads` threads: the same work a wake from RAM does, page faults included.
fn memcpy_bandwidth(src: &[u8], threads: usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let chunk = src.len().div_ceil(threads);
        let copies: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = src.chunks(chunk).map(|c| s.spawn(move || c.to_vec())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(copies.iter().map(Vec::len).sum::<usize>(), src.len());
        best = best.max(src.len() as f64 / secs);
    }
    best
}

/// Read bandwidth (bytes/s) of `path` out of the page cache: the best of one
/// sequential reader and `threads` readers of contiguous parts, each run
/// after dropping the file's cached pages.
fn cold_read_bandwidth(path: &Path, threads: usize) -> f64 {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let mut best = 0f64;
    for readers in [1, threads] {
        evict_from_page_cache(path).expect("drop the file from the page cache");
        let part = len.div_ceil(readers);
        let started = Instant::now();
        let total: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..readers)
                .map(|i| {
                    s.spawn(move || {
                        let file = std::fs::File::open(path).unwrap();
                        let (start, end) = (i * part, ((i + 1) * part).min(len));
                        let mut out = vec![0u8; end - start];
                        file.read_exact_at(&mut out, start as u64).unwrap();
                        out.len()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        best = best.max(total as f64 / started.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let model_path = PathBuf::from(args.first().expect("usage: wake MODEL.gguf [--repeats N]"));
    let repeats: usize =
        args.iter().position(|a| a == "--repeats").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(3);
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir_in(model_path.parent().unwrap()).unwrap();
    let name = ModelName::parse("bench").unwrap();

    rt.block_on(async {
        let mut report = Vec::new();
        for warm in [WarmTier::Ram, WarmTier::Disk] {
            let mut spec = ModelSpec::new(name.clone(), ArtifactUri::File(model_path.clone()));
            spec.scaling.warm_tier = warm;
            let config = NodeConfig {
                cache_dir: dir.path().join(format!("cache-{warm:?}")),
                budgets: TierBudgets { ram: 16 << 30, disk: 64 << 30 },
                engine: BuiltinEngine::cpu(),
                local_artifacts: LocalArtifacts::Anywhere,
            };
            let node = LocalNode::new(config, std::slice::from_ref(&spec)).unwrap();
            node.stage_named(&name).await.unwrap();
            // What a wake copies: the weights (the footprint also counts the KV cache, allocated as it fills).
            let weights = node.instance(&name).unwrap().info().weight_bytes;
            // Cache files are named by the model and a digest of its artifact's URI.
            let cached = std::fs::read_dir(dir.path().join(format!("cache-{warm:?}")))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "gguf"))
                .expect("the staged model's file in the cache");
            let (mut wakes, mut sleeps, mut bounds) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeats {
                let bound = match warm {
                    WarmTier::Ram => {
                        let bytes = std::fs::read(&cached).unwrap();
                        let bw = memcpy_bandwidth(&bytes[..weights], threads);
                        weights as f64 / bw
                    }
                    _ => std::fs::metadata(&cached).unwrap().len() as f64 / cold_read_bandwidth(&cached, threads),
                };
                if warm == WarmTier::Disk {
                    evict_from_page_cache(&cached).unwrap();
                }
                let woke = node.wake(&name).await.unwrap();
                let started = Instant::now();
                node.sleep(&name, warm).await.unwrap();
                sleeps.push(started.elapsed().as_secs_f64());
                wakes.push(woke.duration.as_secs_f64());
                bounds.push(bound);
            }
            let (wake, bound, sleep) = (median(wakes), median(bounds), median(sleeps));
            report.push((warm, weights as u64, wake, bound, sleep));
        }
        let file = model_path.file_name().unwrap().to_string_lossy();
        for (warm, bytes, wake, bound, sleep) in report {
            let what = match warm {
                WarmTier::Ram => "wake from RAM (bound: memcpy into fresh memory)",
                _ => "wake from disk (bound: cold read, best of 1 and N readers)",
            };
            println!(
                "| {file} | {what} | {:.0} MiB | {:.0} ms | {:.0} ms | {:.2}× | {:.1} ms |",
                bytes as f64 / (1 << 20) as f64,
                wake * 1e3,
                bound * 1e3,
                wake / bound,
                sleep * 1e3
            );
        }
    });
}
