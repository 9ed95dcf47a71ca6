//! `gpu-check`: measures GreenThread's CUDA weight path on this machine and
//! prints a table — pinned host-to-device bandwidth (the bound), wake time
//! and GB/s from RAM (pinned) and from disk for a multi-GB random-weight
//! file generated on the spot, sleep time, and device memory in use after
//! sleep (cuMemGetInfo). Run by `scripts/gpu-check.sh`.
//!
//! `gpu-check [--size 4GiB] [--dir DIR]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use greenthread_core::ByteSize;
use greenthread_node_runtime::cuda::{COPY_CHUNK, DeviceWeights, GpuDevice, STREAMS};
use greenthread_node_runtime::node::evict_from_page_cache;

fn gib(bytes: f64) -> f64 {
    bytes / (1u64 << 30) as f64
}

/// One wake and sleep, timed, with the device memory in use awake and after.
struct Row {
    from: &'static str,
    wake_s: f64,
    sleep_s: f64,
    awake_bytes: usize,
    asleep_bytes: usize,
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
    let bound = copy_bound(&gpu, size);
    let path = dir.join("gt-gpu-check-weights.bin");
    write_random_weights(&path, size);

    // The disk bound: a cold read of the same file into pinned memory.
    evict_from_page_cache(&path).unwrap();
    let t = Instant::now();
    let ram_tier = gpu.pin_file(&path).unwrap();
    let disk_bound = size as f64 / t.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push(wake_and_sleep(&gpu, "ram", free0, || gpu.wake_from_ram(&ram_tier).unwrap()));
    }
    for _ in 0..3 {
        evict_from_page_cache(&path).unwrap();
        rows.push(wake_and_sleep(&gpu, "disk", free0, || gpu.wake_from_disk(&path).unwrap()));
    }
    let _ = std::fs::remove_file(&path);
    print_table(&rows, size, bound, disk_bound);
}

/// Pinned → device copies into an existing allocation, best of three: the bound of a wake from RAM.
fn copy_bound(gpu: &GpuDevice, size: usize) -> f64 {
    let pinned_probe = gpu.pinned(size).unwrap();
    let mut probe_target = gpu.allocate(size).unwrap();
    let mut bound = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        gpu.copy_to_device(&pinned_probe, &mut probe_target).unwrap();
        bound = bound.max(size as f64 / t.elapsed().as_secs_f64());
    }
    bound
}

/// A random-weight file of `size` bytes (the content does not matter to a copy).
fn write_random_weights(path: &Path, size: usize) {
    let t = Instant::now();
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path).unwrap());
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

/// Times `wake` and the sleep after it; memory in use is counted from `free0`, the free memory before anything.
fn wake_and_sleep(gpu: &GpuDevice, from: &'static str, free0: usize, wake: impl FnOnce() -> DeviceWeights) -> Row {
    let t = Instant::now();
    let weights = wake();
    let wake_s = t.elapsed().as_secs_f64();
    let (free_awake, _) = gpu.memory().unwrap();
    let t = Instant::now();
    gpu.sleep(weights).unwrap();
    let sleep_s = t.elapsed().as_secs_f64();
    let (free_asleep, _) = gpu.memory().unwrap();
    Row {
        from,
        wake_s,
        sleep_s,
        awake_bytes: free0.saturating_sub(free_awake),
        asleep_bytes: free0.saturating_sub(free_asleep),
    }
}

fn print_table(rows: &[Row], size: usize, bound: f64, disk_bound: f64) {
    println!();
    println!(
        "pinned H2D bound: {:.1} GB/s; cold disk read bound: {:.2} GB/s; model: {:.2} GiB",
        bound / 1e9,
        disk_bound / 1e9,
        gib(size as f64)
    );
    println!("| wake from | wake s | GB/s | ratio to bound | sleep ms | device MiB awake | device MiB after sleep |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        let bw = size as f64 / row.wake_s;
        let ratio = if row.from == "ram" { bound / bw } else { disk_bound / bw };
        println!(
            "| {} | {:.3} | {:.1} | {ratio:.2}× | {:.1} | {} | {} |",
            row.from,
            row.wake_s,
            bw / 1e9,
            row.sleep_s * 1e3,
            row.awake_bytes >> 20,
            row.asleep_bytes >> 20
        );
    }
}
