//! Bidirectional attention on the CPU (f32) through the packed tile kernel of [`super::packed`].
//!
//! candle's batched matmul hands each head's two products to `gemm` one after the other, each
//! split across the threads and each repacking its operands; for a dual-cached pass (32 queries
//! over 256 keys) that overhead was a quarter of the pass, at about 20 GFLOP/s. Here each KV
//! head's keys are packed once (as 16-key panels of depth D) and its values (as 16-dimension
//! panels of depth S); then each task takes one head and a chunk of its queries, computes the
//! chunk's score rows with the tile kernel, applies the softmax and multiplies by the values,
//! writing straight into the (B, T, H * D) layout the output projection reads. Scores exist only
//! for one chunk at a time.

use std::ops::Range;
use std::sync::Mutex;

use candle_core::{Layout, Result, Storage, Tensor, TensorId};
use rayon::prelude::*;

use super::ops::f32_slice;
use super::ops::softmax_rows;
use super::packed::{
    pack_columns, pack_columns_into, product, row_tiles, Input, Panels, SendPtr, PANEL,
};

/// Queries per task, at most: bounds the score buffer (rows x S) and keeps tasks numerous enough
/// to share among the threads when there are few heads.
const QUERY_CHUNK: usize = 64;

/// Keys and values (B, KV, S, D), whole: `past`, with positions `offset..offset + T` replaced by
/// `fresh` (B, KV, T, D) where given. A cached pass reads its window's fresh keys and the stale
/// rest of the canvas without splicing them into a new tensor first. With `packed`, the packed
/// keys and values are kept there between passes over the same `past` and window, and each pass
/// repacks only the window.
pub struct KeysValues<'a> {
    pub past: (&'a Tensor, &'a Tensor),
    pub fresh: Option<(&'a Tensor, &'a Tensor, usize)>,
    pub packed: Option<&'a Mutex<PackedPast>>,
}

/// One layer's keys and values as the kernel reads them, kept across cached passes: packing the
/// whole canvas's keys and values again on every pass was 7% of a dual-cached generation in
/// `perf`, and only the window changes between passes.
#[derive(Default)]
pub struct PackedPast {
    /// The past keys and values these were packed from, and the window (rows, offset) they hold.
    source: Option<(TensorId, TensorId, usize, usize)>,
    /// Per (batch, KV head): key panels and value panels.
    planes: Vec<(Vec<f32>, Vec<f32>)>,
}

impl std::fmt::Debug for PackedPast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedPast")
            .field("source", &self.source)
            .field("planes", &self.planes.len())
            .finish()
    }
}

/// The values of a contiguous f32 CPU tensor's storage.
fn values<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        candle_core::bail!("dlm-attention: CPU tensors only");
    };
    f32_slice("dlm-attention", cpu, layout, "every input")
}

/// One KV head's rows (S of D values), the window's from `fresh`.
struct Rows<'a> {
    past: &'a [f32],
    fresh: &'a [f32],
    offset: usize,
    d: usize,
}

impl<'a> Rows<'a> {
    /// KV head `plane`'s rows: S of the whole `past`, and the `window` (rows, offset) of `fresh`.
    fn of_plane(
        past: &'a [f32],
        fresh: &'a [f32],
        plane: usize,
        s: usize,
        window: (usize, usize),
        d: usize,
    ) -> Self {
        let (rows, offset) = window;
        Rows {
            past: &past[plane * s * d..][..s * d],
            fresh: fresh
                .get(plane * rows * d..(plane + 1) * rows * d)
                .unwrap_or(&[]),
            offset,
            d,
        }
    }

    fn row(&self, j: usize) -> &[f32] {
        let fresh_len = self.fresh.len() / self.d;
        if (self.offset..self.offset + fresh_len).contains(&j) {
            &self.fresh[(j - self.offset) * self.d..][..self.d]
        } else {
            &self.past[j * self.d..][..self.d]
        }
    }
}

/// Values as panels of 16 dimensions (the output columns of p v), each S deep.
fn pack_values(values: &Rows, s: usize) -> Vec<f32> {
    let mut panels = vec![0f32; values.d.div_ceil(PANEL) * s * PANEL];
    pack_values_into(&mut panels, values, s, 0..s);
    panels
}

/// Writes the rows of positions `keys` of [`pack_values`]'s panels.
fn pack_values_into(panels: &mut [f32], values: &Rows, s: usize, keys: Range<usize>) {
    let d = values.d;
    if s == 0 {
        return;
    }
    for (p, panel) in panels.chunks_exact_mut(s * PANEL).enumerate() {
        let cols = PANEL.min(d - p * PANEL);
        for j in keys.clone() {
            panel[j * PANEL..][..cols].copy_from_slice(&values.row(j)[p * PANEL..][..cols]);
        }
    }
}

/// Packs one (batch, KV head) plane's keys (16-key panels, D deep) and values.
fn pack_plane(keys: &Rows, values: &Rows, s: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    (pack_columns(s, d, |j| keys.row(j)), pack_values(values, s))
}

/// softmax(q k^T * q_scale) v for q (B, H, T, D) over `kv` (B, KV, S, D), KV head h / (H / KV)
/// serving query head h; returns (B, T, H * D). f32 on the CPU.
pub fn attention(q: &Tensor, kv: &KeysValues, q_scale: f32) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (kb, n_kv, s, kd) = kv.past.0.dims4()?;
    let window = match kv.fresh {
        Some((k, _, offset)) => (k.dim(2)?, offset),
        None => (0, 0),
    };
    let (rows, offset) = window;
    let fresh_fits = |x: &Tensor| x.dims4().ok() == Some((b, n_kv, rows, d)) && offset + rows <= s;
    let shapes_fit = (kb, kd) == (b, d)
        && kv.past.1.dims4()? == (b, n_kv, s, d)
        && n_kv > 0
        && h % n_kv == 0
        && kv
            .fresh
            .is_none_or(|(k, v, _)| fresh_fits(k) && fresh_fits(v));
    if !shapes_fit {
        candle_core::bail!(
            "dlm-attention: q {:?} and keys/values {:?} (fresh window of {rows} at {offset}) do not fit together",
            q.dims(),
            kv.past.0.dims(),
        );
    }
    let empty = Tensor::zeros(0, candle_core::DType::F32, q.device())?;
    let (fresh_k, fresh_v) = kv.fresh.map_or((&empty, &empty), |(k, v, _)| (k, v));
    let inputs = [q, kv.past.0, kv.past.1, fresh_k, fresh_v]
        .map(Tensor::contiguous)
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = inputs.iter().map(Tensor::storage_and_layout).collect();
    let slices = guards
        .iter()
        .map(|(storage, layout)| values(storage, layout))
        .collect::<Result<Vec<_>>>()?;
    let [q, pk, pv, fk, fv] = slices[..] else {
        unreachable!("five inputs")
    };
    // Each KV head's keys and values packed once, for all its query heads and chunks; or kept
    // from the last pass over the same past and window, with the window repacked.
    let plane_rows = |plane| {
        let keys = Rows::of_plane(pk, fk, plane, s, (rows, offset), d);
        let values = Rows::of_plane(pv, fv, plane, s, (rows, offset), d);
        (keys, values)
    };
    let pack_all = || -> Vec<(Vec<f32>, Vec<f32>)> {
        (0..b * n_kv)
            .into_par_iter()
            .map(|plane| {
                let (keys, values) = plane_rows(plane);
                pack_plane(&keys, &values, s, d)
            })
            .collect()
    };
    let mut kept = match (kv.packed, kv.fresh) {
        (Some(cell), Some(_)) => {
            // A pass that panicked half-way leaves nothing to trust: pack afresh.
            let mut kept = cell.lock().unwrap_or_else(|poisoned| {
                let mut kept = poisoned.into_inner();
                kept.source = None;
                kept
            });
            let source = Some((kv.past.0.id(), kv.past.1.id(), rows, offset));
            if kept.source == source {
                let window = offset..offset + rows;
                kept.planes.par_iter_mut().enumerate().for_each(
                    |(plane, (key_panels, value_panels))| {
                        let (keys, values) = plane_rows(plane);
                        pack_columns_into(key_panels, d, window.clone(), |j| keys.row(j));
                        pack_values_into(value_panels, &values, s, window.clone());
                    },
                );
            } else {
                // Should this panic, the poisoned lock clears `source` for the next pass.
                kept.planes = pack_all();
                kept.source = source;
            }
            Some(kept)
        }
        _ => None,
    };
    let owned;
    let packed: &[(Vec<f32>, Vec<f32>)] = match kept.as_mut() {
        Some(kept) => &kept.planes,
        None => {
            owned = pack_all();
            &owned
        }
    };
    let mut out = Vec::with_capacity(b * t * h * d);
    let job = Job {
        q,
        b,
        h,
        t,
        s,
        d,
        n_rep: h / n_kv,
        q_scale,
    };
    if s > 0 && d > 0 {
        job.run(packed, &SendPtr(out.as_mut_ptr()));
        // SAFETY: the tasks cover every (batch, head, query) row, and each task's value product
        // (depth s > 0) writes all D columns of its rows: all b * t * h * d values.
        unsafe { out.set_len(b * t * h * d) };
    } else {
        // No keys or empty heads: nothing to attend to, and the products would write nothing.
        out.resize(b * t * h * d, 0.0);
    }
    Tensor::from_vec(out, (b, t, h * d), kv.past.0.device())
}

/// The shapes of one attention call, and its queries.
struct Job<'a> {
    q: &'a [f32],
    b: usize,
    h: usize,
    t: usize,
    s: usize,
    d: usize,
    n_rep: usize,
    q_scale: f32,
}

impl Job<'_> {
    /// Every (batch, head, query chunk) as a task, writing its rows of that head into `dst`
    /// (B, T, H * D). Only for s > 0 and d > 0: the products write every value then.
    fn run(&self, packed: &[(Vec<f32>, Vec<f32>)], dst: &SendPtr) {
        let Job { b, h, t, s, d, .. } = *self;
        // Split the queries further only while there are fewer heads than twice the threads.
        let per_head = (2 * rayon::current_num_threads())
            .div_ceil(b * h)
            .max(t.div_ceil(QUERY_CHUNK))
            .clamp(1, t.max(1));
        let chunk = t.div_ceil(per_head).max(1);
        let tasks: Vec<(usize, usize, usize)> = (0..b)
            .flat_map(|bi| (0..h).map(move |hi| (bi, hi)))
            .flat_map(|(bi, hi)| (0..t).step_by(chunk).map(move |r0| (bi, hi, r0)))
            .collect();
        tasks.into_par_iter().for_each(|(bi, hi, r0)| {
            let rows = chunk.min(t - r0);
            let (key_panels, value_panels) = &packed[bi * (h / self.n_rep) + hi / self.n_rep];
            let tiles = row_tiles(rows);
            // Not zeroed: the product writes every score (`run` is only called with d > 0).
            let mut scores = Vec::with_capacity(rows * s);
            let queries = Input {
                x: &self.q[((bi * h + hi) * t + r0) * d..][..rows * d],
                stride: d,
                tiles: &tiles,
            };
            let keys = Panels {
                data: key_panels,
                k: d,
                n: s,
                bias: None,
            };
            // SAFETY: `scores` has room for the chunk's rows of s values, and with a depth of
            // d > 0 the product's first depth slice writes all of them.
            unsafe {
                product(
                    &keys,
                    0..s.div_ceil(PANEL),
                    &queries,
                    scores.as_mut_ptr(),
                    s,
                );
                scores.set_len(rows * s);
            }
            if self.q_scale != 1.0 {
                scores.iter_mut().for_each(|x| *x *= self.q_scale);
            }
            // The scores become the weights in place.
            softmax_rows(&mut scores, s);
            let weighted = Input {
                x: &scores,
                stride: s,
                tiles: &tiles,
            };
            let values = Panels {
                data: value_panels,
                k: s,
                n: d,
                bias: None,
            };
            // SAFETY: the task writes rows r0..r0 + rows of head hi's D columns in batch bi of
            // the (B, T, H * D) output, which no other task touches and which outlives the loop.
            unsafe {
                let out = dst.0.add(((bi * t + r0) * h + hi) * d);
                product(&values, 0..d.div_ceil(PANEL), &weighted, out, h * d);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The composed reference: scores, softmax, values, each KV head repeated for its queries.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (b, h, t, d) = q.dims4().unwrap();
        let (_, kv, s, _) = k.dims4().unwrap();
        let rep = |x: &Tensor| {
            x.unsqueeze(2)
                .unwrap()
                .expand((b, kv, h / kv, s, d))
                .unwrap()
                .reshape((b, h, s, d))
                .unwrap()
        };
        let scores = (q.matmul(&rep(k).t().unwrap()).unwrap() * scale).unwrap();
        let weights = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let out = weights.matmul(&rep(v)).unwrap();
        out.transpose(1, 2).unwrap().reshape((b, t, h * d)).unwrap()
    }

    #[test]
    fn tiled_attention_equals_the_composed_ops() {
        // Queries on and off the tile and chunk sizes, keys on and off a panel and past one depth
        // slice (256), head widths of one panel and of several, grouped KV heads, batch 2.
        for (b, h, kv, t, s, d) in [
            (1, 4, 4, 32, 256, 64),
            (1, 2, 1, 7, 40, 16),
            (2, 4, 2, 70, 300, 32),
            (1, 3, 3, 1, 5, 8),
            (1, 8, 8, 256, 256, 64),
        ] {
            let dev = &Device::Cpu;
            let q = Tensor::randn(0f32, 1.0, (b, h, t, d), dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, kv, s, d), dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, kv, s, d), dev).unwrap();
            for scale in [1.0, 0.125] {
                let whole = KeysValues {
                    past: (&k, &v),
                    fresh: None,
                    packed: None,
                };
                let got = attention(&q, &whole, scale as f32).unwrap();
                let want = composed(&q, &k, &v, scale);
                assert_eq!(got.dims(), &[b, t, h * d]);
                let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
                let diff = diff.to_scalar::<f32>().unwrap();
                assert!(
                    diff < 1e-5,
                    "{b} {h} {kv} {t} {s} {d} scale {scale}: {diff}"
                );
            }
        }
    }

    #[test]
    fn a_fresh_window_replaces_those_positions_of_the_past() {
        let dev = &Device::Cpu;
        let (b, h, kv, s, d, offset, rows) = (2, 4, 2, 50, 16, 20, 12);
        let q = Tensor::randn(0f32, 1.0, (b, h, rows, d), dev).unwrap();
        let past = [0, 1].map(|_| Tensor::randn(0f32, 1.0, (b, kv, s, d), dev).unwrap());
        let fresh = [0, 1].map(|_| Tensor::randn(0f32, 1.0, (b, kv, rows, d), dev).unwrap());
        let window = KeysValues {
            past: (&past[0], &past[1]),
            fresh: Some((&fresh[0], &fresh[1], offset)),
            packed: None,
        };
        let got = attention(&q, &window, 0.25).unwrap();
        let want = spliced_attention(&q, &past, &fresh, offset);
        let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        // Without the window the stale keys give another result.
        let stale = composed(&q, &past[0], &past[1], 0.25);
        let stale_diff = (stale - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(stale_diff.to_scalar::<f32>().unwrap() > 1e-3);
    }

    /// Attention over `past` with positions `offset..` replaced by `fresh`, through the composed
    /// ops.
    fn spliced_attention(
        q: &Tensor,
        past: &[Tensor; 2],
        fresh: &[Tensor; 2],
        offset: usize,
    ) -> Tensor {
        let (s, rows) = (past[0].dim(2).unwrap(), fresh[0].dim(2).unwrap());
        let spliced = [0, 1].map(|i| {
            let before = past[i].narrow(2, 0, offset).unwrap();
            let after = past[i].narrow(2, offset + rows, s - offset - rows).unwrap();
            Tensor::cat(&[&before, &fresh[i], &after], 2).unwrap()
        });
        composed(q, &spliced[0], &spliced[1], 0.25)
    }

    #[test]
    fn kept_packing_repacks_the_window_and_starts_over_for_a_new_past_or_window() {
        let dev = &Device::Cpu;
        let (b, h, kv, s, d) = (2, 4, 2, 70, 24);
        let random =
            |dims: (usize, usize, usize, usize)| Tensor::randn(0f32, 1.0, dims, dev).unwrap();
        let past = [0, 1].map(|_| random((b, kv, s, d)));
        let other_past = [0, 1].map(|_| random((b, kv, s, d)));
        let kept = Mutex::new(PackedPast::default());
        // Passes over one past and window with new fresh values each time (as a block's cached
        // passes), then a moved window, then a new past (a new block's record), then back.
        for (past, offset, rows) in [
            (&past, 20, 12),
            (&past, 20, 12),
            (&past, 20, 12),
            (&past, 33, 12),
            (&past, 33, 5),
            (&other_past, 33, 5),
            (&past, 20, 12),
        ] {
            let q = random((b, h, rows, d));
            let fresh = [0, 1].map(|_| random((b, kv, rows, d)));
            let window = KeysValues {
                past: (&past[0], &past[1]),
                fresh: Some((&fresh[0], &fresh[1], offset)),
                packed: Some(&kept),
            };
            let got = attention(&q, &window, 0.25).unwrap();
            let want = spliced_attention(&q, past, &fresh, offset);
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
            let diff = diff.to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "window {rows} at {offset}: {diff}");
        }
    }
}
