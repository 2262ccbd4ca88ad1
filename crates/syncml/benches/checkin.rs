//! Throughput of the SyncML codec on a real check-in (fleet 09) and the server's reply (fleet 10):
//! parse, write, and parse+write, in bytes/s and in messages/s. Run with
//! `cargo bench -p syncml --bench checkin`; results are recorded in docs/benchmarks.md.

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn fixture(rel: &str) -> Vec<u8> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest
        .ancestors()
        .map(|d| d.join("shared/fixtures/real"))
        .find(|d| d.is_dir())
        .expect("shared/fixtures/real not found");
    let bytes = std::fs::read(dir.join(rel)).expect("fixture readable");
    // The captures carry the logger's leading whitespace; a real body starts at `<`.
    let start = bytes.iter().position(|&b| b == b'<').unwrap_or(0);
    bytes[start..].to_vec()
}

fn codec(c: &mut Criterion) {
    for (label, rel) in [
        ("checkin-09", "fleet-win10-21h1/09-syncml-device-1.xml"),
        ("reply-10", "fleet-win10-21h1/10-syncml-server-1.xml"),
    ] {
        let bytes = fixture(rel);
        let msg = syncml::parse(&bytes).expect("fixture parses");
        let written_len = syncml::write(&msg).len();

        let mut g = c.benchmark_group(format!("syncml-{label}-bytes"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("parse", |b| {
            b.iter(|| syncml::parse(black_box(&bytes)).unwrap())
        });
        g.bench_function("parse+write", |b| {
            b.iter(|| syncml::write(&syncml::parse(black_box(&bytes)).unwrap()))
        });
        g.throughput(Throughput::Bytes(written_len as u64));
        g.bench_function("write", |b| b.iter(|| syncml::write(black_box(&msg))));
        g.finish();

        let mut g = c.benchmark_group(format!("syncml-{label}-messages"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("parse+write", |b| {
            b.iter(|| syncml::write(&syncml::parse(black_box(&bytes)).unwrap()))
        });
        g.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
