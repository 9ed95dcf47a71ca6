//! `gpu-check`: measures GreenThread's CUDA weight path on this machine and
//! prints a table — pinned host-to-device bandwidth (the bound), wake time
//! and GB/s from RAM (pinned) and from disk for a multi-GB random-weight
//! file generated on the spot, sleep time, and device memory in use after
//! sleep (cuMemGetInfo). Run by `scripts/gpu-check.sh`.
//!
//! `gpu-check [--size 4GiB] [--dir DIR]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use greenthread_core::ByteSize;
use greenthread_node_runtime::cuda::{COPY_CHUNK, GpuDevice, STREAMS};
use greenthread_node_runtime::node::evict_from_page_cache;

fn gib(bytes: f64) -> f64 {
    bytes / (1u64 << 30) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let size = ByteSize::parse(&arg("--size").unwrap_or_else(|| "4GiB".into())).unwrap().bytes() as usize;
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| std::env::temp_dir().display().to_string()));

    let gpu = match GpuDevice::open(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gpu-check: {e}");
            std::process::exit(2);
        }
    };
    let (free0, total) = gpu.memory().unwrap();
    eprintln!(
        "GPU 0: {:.1} GiB free of {:.1} GiB; {STREAMS} copy streams, {} MiB chunks",
        gib(free0 as f64),
        gib(total as f64),
        COPY_CHUNK >> 20
    );

    // The bound: pinned → device copies into an existing allocation, best of three.
    let pinned_probe = gpu.pinned(size).unwrap();
    let mut probe_target = gpu.allocate(size).unwrap();
    let mut bound = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        gpu.copy_to_device(&pinned_probe, &mut probe_target).unwrap();
        bound = bound.max(size as f64 / t.elapsed().as_secs_f64());
    }
    drop(probe_target);
    drop(pinned_probe);

    // A random-weight file of `size` bytes (the content does not matter to a copy).
    let path = dir.join("gt-gpu-check-weights.bin");
    {
        let t = Instant::now();
        let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&path).unwrap());
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = vec![0u8; 8 << 20];
        let mut written = 0;
        while written < size {
            for word in block.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            let n = block.len().min(size - written);
            f.write_all(&block[..n]).unwrap();
            written += n;
        }
        f.into_inner().unwrap().sync_all().unwrap();
        eprintln!("wrote {:.1} GiB of random weights in {:.1} s", gib(size as f64), t.elapsed().as_secs_f64());
    }

    // The disk bound: a cold read of the same file into pinned memory.
    evict_from_page_cache(&path).unwrap();
    let t = Instant::now();
    let ram_tier = gpu.pin_file(&path).unwrap();
    let disk_bound = size as f64 / t.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let weights = gpu.wake_from_ram(&ram_tier).unwrap();
        let wake = t.elapsed().as_secs_f64();
        let (free_awake, _) = gpu.memory().unwrap();
        let t = Instant::now();
        gpu.sleep(weights).unwrap();
        let sleep = t.elapsed().as_secs_f64();
        let (free_asleep, _) = gpu.memory().unwrap();
        rows.push(("ram", wake, sleep, free0.saturating_sub(free_awake), free0.saturating_sub(free_asleep)));
    }
    for _ in 0..3 {
        evict_from_page_cache(&path).unwrap();
        let t = Instant::now();
        let weights = gpu.wake_from_disk(&path).unwrap();
        let wake = t.elapsed().as_secs_f64();
        let (free_awake, _) = gpu.memory().unwrap();
        let t = Instant::now();
        gpu.sleep(weights).unwrap();
        let sleep = t.elapsed().as_secs_f64();
        let (free_asleep, _) = gpu.memory().unwrap();
        rows.push(("disk", wake, sleep, free0.saturating_sub(free_awake), free0.saturating_sub(free_asleep)));
    }
    let _ = std::fs::remove_file(&path);

    println!();
    println!(
        "pinned H2D bound: {:.1} GB/s; cold disk read bound: {:.2} GB/s; model: {:.2} GiB",
        bound / 1e9,
        disk_bound / 1e9,
        gib(size as f64)
    );
    println!("| wake from | wake s | GB/s | ratio to bound | sleep ms | device MiB awake | device MiB after sleep |");
    println!("|---|---|---|---|---|---|---|");
    for (from, wake, sleep, awake, asleep) in rows {
        let bw = size as f64 / wake;
        let ratio = if from == "ram" { bound / bw } else { disk_bound / bw };
        println!(
            "| {from} | {wake:.3} | {:.1} | {ratio:.2}× | {:.1} | {} | {} |",
            bw / 1e9,
            sleep * 1e3,
            awake >> 20,
            asleep >> 20
        );
    }
}
