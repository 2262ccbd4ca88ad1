//! Measures the resident memory of idle emulated PCs: `cargo run --release -p device --example
//! idle_memory -- 1000` (the same measurement as `redeploy emulate --measure-memory 1000`).

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    match device::fleet::measure_idle_memory(n, 1, time::OffsetDateTime::now_utc()).await {
        Some(r) => println!(
            "{} idle emulated PCs: RSS {} KiB -> {} KiB, {} bytes per PC",
            r.devices,
            r.rss_before_kib,
            r.rss_after_kib,
            r.bytes_per_device()
        ),
        None => eprintln!("VmRSS is not available on this system"),
    }
}
