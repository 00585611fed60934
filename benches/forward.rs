//! Model forward pass of the embedded default model at batch 1, with each attention kernel, and a
//! cached pass that recomputes only one 32-token block (dual cache).

use std::hint::black_box;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dlm_tui::model::embedded;
use dlm_tui::model::loader::Precision;
use dlm_tui::model::{AttentionKernel, Denoiser, KvCache};
use dlm_tui::sampler::{CacheMode, ForwardRequest};

fn forward(c: &mut Criterion) {
    // As the binary does: one thread count for candle's matmuls, counted once.
    dlm_tui::model::tune_threads(false);
    let (mut model, _) =
        embedded::load_llada(Precision::F32, &Device::Cpu).expect("embedded model");
    let mask = model.info().mask_id;
    let mut group = c.benchmark_group("forward");
    group.sample_size(20);
    for len in [128usize, 256] {
        let canvas: Vec<u32> = (0..len as u32)
            .map(|i| if i < 16 { 100 + i } else { mask })
            .collect();
        for (name, kernel) in [
            ("fused", AttentionKernel::Fused),
            ("matmul", AttentionKernel::Matmul),
        ] {
            model.set_attention(kernel);
            group.bench_with_input(BenchmarkId::new(name, len), &canvas, |b, canvas| {
                b.iter(|| black_box(model.forward(canvas).expect("forward")))
            });
        }
        model.set_attention(AttentionKernel::Fused);
        let request = ForwardRequest {
            canvases: vec![canvas.clone()],
            block: 16..48,
            rows: 16..48,
            cache: CacheMode::Dual,
        };
        let mut cache = KvCache::default();
        model.denoise(&request, &mut cache).expect("recording pass");
        group.bench_with_input(
            BenchmarkId::new("dual-cached-block32", len),
            &request,
            |b, r| b.iter(|| black_box(model.denoise(r, &mut cache).expect("cached pass"))),
        );
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
