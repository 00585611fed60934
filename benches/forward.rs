//! Model forward pass of the embedded default model at batch 1, with each attention kernel, and a
//! cached pass that recomputes only one 32-token block (dual cache); and one linear layer through
//! the packed-weight kernel against candle's matmul, at the shapes those passes multiply.

use std::hint::black_box;

use candle_core::Device;
use criterion::{criterion_group, BenchmarkId, Criterion};
use dlm_tui::model::embedded;
use dlm_tui::model::loader::Precision;
use dlm_tui::model::{AttentionKernel, Denoiser, KvCache};
use dlm_tui::sampler::{CacheMode, ForwardRequest};

fn forward(c: &mut Criterion) {
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
            ("tiled", AttentionKernel::Tiled),
            ("fused", AttentionKernel::Fused),
            ("matmul", AttentionKernel::Matmul),
        ] {
            model.set_attention(kernel);
            group.bench_with_input(BenchmarkId::new(name, len), &canvas, |b, canvas| {
                b.iter(|| black_box(model.forward(canvas).expect("forward")))
            });
        }
        model.set_attention(AttentionKernel::Auto);
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

/// `x @ W^T` for the embedded model's MLP down-projection (704 -> 256) and output head
/// (256 -> 2048), at 32 rows (a cached block) and 256 (a full canvas).
fn linear(c: &mut Criterion) {
    use candle_core::Tensor;
    use dlm_tui::kernels::packed::PackedWeight;
    let mut group = c.benchmark_group("linear");
    group.sample_size(30);
    for (in_dim, out_dim) in [(704usize, 256usize), (256, 2048)] {
        let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &Device::Cpu).expect("weight");
        let packed = PackedWeight::new(&w, None).expect("packed");
        for rows in [32usize, 256] {
            let x = Tensor::randn(0f32, 1.0, (rows, in_dim), &Device::Cpu).expect("input");
            let id = format!("{rows}x{in_dim}x{out_dim}");
            // Both inside rayon's pool, as forward passes run (model::in_pool).
            group.bench_function(BenchmarkId::new("candle-matmul", &id), |b| {
                b.iter(|| dlm_tui::model::in_pool(|| black_box(x.matmul(&w.t().unwrap()).unwrap())))
            });
            group.bench_function(BenchmarkId::new("packed", &id), |b| {
                b.iter(|| dlm_tui::model::in_pool(|| black_box(packed.forward(&x).unwrap())))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward, linear);

fn main() {
    // As the binary does, before any thread exists: one thread count for candle's matmuls,
    // counted once (model::tune_threads).
    dlm_tui::model::tune_threads(false);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
