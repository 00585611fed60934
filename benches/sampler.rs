//! One sampler step on synthetic logits, so sampler overhead is visible apart from the model.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dlm_tui::sampler::{Logits, ModelTraits, Sampler, SamplerParams};

fn logits(len: usize, vocab: usize) -> Logits {
    // Deterministic pseudo-random logits.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data = (0..len * vocab)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f32 / 100.0
        })
        .collect();
    Logits::new(data, vocab)
}

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("sampler_step");
    group.sample_size(20);
    // The embedded model's vocabulary and LLaDA-8B's.
    for (vocab, temperature) in [(2048usize, 0.0), (2048, 1.0), (126_464, 0.0)] {
        let len = 256;
        let mask = vocab as u32 - 1;
        let rows = logits(len, vocab);
        let mut canvas: Vec<u32> = (0..16).collect();
        canvas.extend(std::iter::repeat_n(mask, len - 16));
        let params = SamplerParams {
            steps: 240,
            block_length: 32,
            temperature,
            ..SamplerParams::default()
        };
        let traits = ModelTraits {
            mask_id: mask,
            shift_logits: false,
            blocks: None,
            eos_ids: Vec::new(),
            eot_ids: Vec::new(),
        };
        let id = format!("vocab{vocab}_t{temperature}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter_batched(
                || Sampler::new(canvas.clone(), params.clone(), traits.clone()).expect("sampler"),
                |mut sampler| black_box(sampler.step(|_| Ok(vec![rows.clone()])).expect("step")),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
