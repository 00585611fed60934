//! Model forward pass of the embedded default model at batch 1.

use std::hint::black_box;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dlm_tui::model::embedded;
use dlm_tui::model::loader::Precision;

fn forward(c: &mut Criterion) {
    let mut loaded = embedded::load(Precision::F32, &Device::Cpu).expect("embedded model");
    let mask = loaded.model.info().mask_id;
    let mut group = c.benchmark_group("forward");
    group.sample_size(20);
    for len in [128usize, 256] {
        let canvas: Vec<u32> = (0..len as u32)
            .map(|i| if i < 16 { 100 + i } else { mask })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(len), &canvas, |b, canvas| {
            b.iter(|| black_box(loaded.model.forward(canvas).expect("forward")))
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
