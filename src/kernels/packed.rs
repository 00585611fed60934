//! `x @ W^T` for a fixed f32 weight W, packed once at load into the layout an AVX2/FMA kernel
//! streams.
//!
//! candle hands linear layers to the `gemm` crate, which repacks W into a scratch buffer on
//! every call (or, given W transposed, reads it in place with a stride of a whole row per step).
//! A dual-cached denoising pass multiplies only one block of rows (32), so that per-call cost is
//! the pass's cost: `perf` put a quarter of a cached pass in gemm's packing, and the unpacked
//! strided reads ran at about a quarter of the cores' peak. Here W is cut once into panels of 16
//! output columns, each stored as `in_dim` rows of 16 contiguous floats; the kernel keeps a
//! 6-row x 16-column tile of outputs in 12 registers and reads each panel front to back, once per
//! tile of 6 input rows (the panel stays in L1/L2 between tiles). Rayon splits the panels across
//! the threads. BENCHMARKS.md has the timings against candle's matmul.
//!
//! Machines without AVX2 and FMA (and other architectures) keep candle's matmul: see
//! [`PackedWeight::supported`].

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Output columns per panel: two AVX registers of f32.
pub(crate) const PANEL: usize = 16;
/// Most depth in one pass over the panels: deeper products are cut into equal slices of at most
/// this depth, each adding onto the partial sums the previous one stored. One slice per panel
/// where it fits means each output is stored once; for the 58M benchmark model's products at 256
/// rows, interleaved timings gave 6-10% less time with a 512- or 704-deep slice than with 256
/// (the panel slice then lives in L2, not L1), and a 1024 cap was as fast as any deeper one at
/// depth 4096.
const MAX_DEPTH: usize = 1024;
/// Panels per group: the group's outputs (256 rows: 64 KiB) stay in L2 across the depth slices.
const GROUP: usize = 4;
/// Products over at most this many row tiles (48 rows) fetch each panel slice ahead. Two runs of
/// 20 alternating dual-cached generations gave median time ratios of 0.91 and 0.97 with it;
/// full 256-row passes gained nothing (1.03 and 1.04, within the noise).
const PREFETCH_TILES: usize = 8;
/// Input rows per register tile (12 accumulators + 2 weight registers + 1 broadcast fit in the
/// 16 AVX registers).
const TILE_ROWS: usize = 6;

/// A weight matrix (out_dim, in_dim) packed for [`PackedWeight::forward`].
#[derive(Debug, Clone)]
pub struct PackedWeight {
    in_dim: usize,
    out_dim: usize,
    /// Panel p holds columns p*16..p*16+16 (zero-padded past out_dim) as in_dim rows of 16.
    panels: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl PackedWeight {
    /// Whether this CPU runs the packed kernel.
    pub fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Packs a stored (out_dim, in_dim) f32 weight and its optional bias (out_dim).
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let panels = pack_columns(out_dim, in_dim, |o| &w[o * in_dim..][..in_dim]);
        let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != out_dim) {
            candle_core::bail!("bias length does not match the weight's {out_dim} outputs");
        }
        Ok(Self {
            in_dim,
            out_dim,
            panels,
            bias,
        })
    }

    /// `x @ W^T + bias` for x (..., in_dim), f32 on the CPU; returns (..., out_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The weight as stored, (out_dim, in_dim), and the bias: what [`Self::new`] packed.
    pub fn unpack(&self) -> Result<(Tensor, Option<Tensor>)> {
        let (n, k) = (self.out_dim, self.in_dim);
        let mut w = vec![0f32; n * k];
        for c in 0..n {
            let panel = &self.panels[(c / PANEL) * k * PANEL..][..k * PANEL];
            for (dst, &v) in w[c * k..][..k]
                .iter_mut()
                .zip(panel[c % PANEL..].iter().step_by(PANEL))
            {
                *dst = v;
            }
        }
        let device = candle_core::Device::Cpu;
        let weight = Tensor::from_vec(w, (n, k), &device)?;
        let bias = self
            .bias
            .as_ref()
            .map(|b| Tensor::from_slice(b, n, &device))
            .transpose()?;
        Ok((weight, bias))
    }

    /// [`Self::forward`]'s values, row after row, in the buffer the kernel wrote them to.
    pub fn forward_rows(&self, x: &Tensor) -> Result<Vec<f32>> {
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        match &*storage {
            candle_core::Storage::Cpu(cpu) => self.product_of(cpu, layout).map(|(out, _)| out),
            _ => candle_core::bail!("dlm-packed-linear: the input is not on the CPU"),
        }
    }

    /// The product for a contiguous f32 input on the CPU, and its shape.
    fn product_of(&self, storage: &CpuStorage, layout: &Layout) -> Result<(Vec<f32>, Shape)> {
        let name = "dlm-packed-linear";
        let src = super::ops::f32_slice(name, storage, layout, "the input")?;
        let dims = layout.dims();
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!("{name}: input {dims:?} does not end in {}", self.in_dim);
        }
        let rows = dims[..dims.len() - 1].iter().product();
        let out = self.multiply(src, rows);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("checked above") = self.out_dim;
        Ok((out, Shape::from(out_dims)))
    }

    fn multiply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let panels = Panels {
            data: &self.panels,
            k: self.in_dim,
            n: self.out_dim,
            bias: self.bias.as_deref(),
        };
        let n = self.out_dim;
        if self.in_dim == 0 {
            // Nothing to multiply: every row is the bias.
            let bias = self.bias.clone().unwrap_or_else(|| vec![0f32; n]);
            return bias.repeat(rows);
        }
        // Not zeroed first: that would be one more pass over the output, 32 MB for a 32000-wide
        // head at 256 rows (`perf` put 2.7% of such a forward pass in memset).
        let mut out = Vec::with_capacity(rows * n);
        let dst = SendPtr(out.as_mut_ptr());
        let n_panels = n.div_ceil(PANEL);
        // Enough panels per task to amortise rayon's hand-over, but at least one task per thread.
        let per_task = n_panels
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        let per_task = per_task.div_ceil(GROUP) * GROUP;
        let tiles = row_tiles(rows);
        let input = Input {
            x,
            stride: self.in_dim,
            tiles: &tiles,
        };
        (0..n_panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let dst = &dst;
                let range = task * per_task..((task + 1) * per_task).min(n_panels);
                // SAFETY: each task writes only the columns of its own panels, inside the
                // (rows, n) buffer that outlives the parallel loop.
                unsafe { product(&panels, range, &input, dst.0, n) };
            });
        // SAFETY: the tasks covered every panel, and with in_dim > 0 each panel's first depth
        // slice wrote its columns of every row (the tiles cover all rows): all rows * n values.
        unsafe { out.set_len(rows * n) };
        out
    }
}

/// Packs `n` output columns of depth `k` into panels of 16 (the last zero-padded), column c's k
/// values being `column(c)`: a stored (out, in) weight's rows, or attention's keys.
pub(crate) fn pack_columns<'a>(
    n: usize,
    k: usize,
    column: impl Fn(usize) -> &'a [f32],
) -> Vec<f32> {
    let mut panels = vec![0f32; n.div_ceil(PANEL) * k * PANEL];
    pack_columns_into(&mut panels, k, 0..n, column);
    panels
}

/// Writes the `columns` of [`pack_columns`]'s panels (the others are left as they are).
pub(crate) fn pack_columns_into<'a>(
    panels: &mut [f32],
    k: usize,
    columns: std::ops::Range<usize>,
    column: impl Fn(usize) -> &'a [f32],
) {
    if k == 0 {
        return;
    }
    for c in columns {
        let panel = &mut panels[(c / PANEL) * k * PANEL..][..k * PANEL];
        for (dst, &v) in panel[c % PANEL..]
            .iter_mut()
            .step_by(PANEL)
            .zip(&column(c)[..k])
        {
            *dst = v;
        }
    }
}

/// Packed panels: `n` output columns of depth `k`, with an optional bias (n).
pub(crate) struct Panels<'a> {
    pub data: &'a [f32],
    pub k: usize,
    pub n: usize,
    pub bias: Option<&'a [f32]>,
}

/// Input rows `stride` apart (each at least k long), cut into the [`row_tiles`] `tiles`.
pub(crate) struct Input<'a> {
    pub x: &'a [f32],
    pub stride: usize,
    pub tiles: &'a [(usize, usize)],
}

/// Row tiles (first row, height) of nearly equal height: a 2-row remainder tile has too few
/// independent accumulators to hide the FMA latency, so 32 rows run as 6, 6, 5, 5, 5, 5.
pub(crate) fn row_tiles(rows: usize) -> Vec<(usize, usize)> {
    let n_tiles = rows.div_ceil(TILE_ROWS);
    (0..n_tiles)
        .scan(0, |r0, t| {
            let height = rows / n_tiles + usize::from(t < rows % n_tiles);
            let tile = (*r0, height);
            *r0 += height;
            Some(tile)
        })
        .collect()
}

/// `out[r * out_stride + c] = input row r . column c (+ bias)` for the columns of the panels in
/// `range`, on this thread.
///
/// # Safety
/// `out` must be valid for writes of every input row's `out_stride`-apart row, at the columns of
/// `range`; no other thread may touch those while this runs. It need not be initialised: the
/// first depth slice writes every value, later slices read what it wrote.
pub(crate) unsafe fn product(
    panels: &Panels,
    range: std::ops::Range<usize>,
    input: &Input,
    out: *mut f32,
    out_stride: usize,
) {
    let (k, n) = (panels.k, panels.n);
    assert!(range.end <= n.div_ceil(PANEL) && panels.data.len() >= range.end * k * PANEL);
    let rows = input.tiles.last().map_or(0, |&(r0, h)| r0 + h);
    if rows == 0 {
        // No rows, no outputs (and nothing to slice the input at for a second depth slice).
        return;
    }
    assert!(input.x.len() >= (rows - 1) * input.stride + k);
    // Panel slices (panel, first depth) in the order they are multiplied: per group of panels,
    // per depth slice, per panel.
    let depth = slice_depth(k);
    let slices: Vec<(usize, usize)> = range
        .clone()
        .step_by(GROUP)
        .flat_map(|g| {
            let group = g..(g + GROUP).min(range.end);
            (0..k)
                .step_by(depth)
                .flat_map(move |d0| group.clone().map(move |p| (p, d0)))
        })
        .collect();
    let slice_of = |(p, d0): (usize, usize)| -> &[f32] {
        &panels.data[(p * k + d0) * PANEL..][..depth.min(k - d0) * PANEL]
    };
    for (i, &(p, d0)) in slices.iter().enumerate() {
        let panel = slice_of((p, d0));
        let col0 = p * PANEL;
        let cols = PANEL.min(n - col0);
        // The first slice of the depth starts from the bias, later ones from the partial sums
        // already in `out`.
        let mut bias = [0f32; PANEL];
        if let (Some(b), 0) = (panels.bias, d0) {
            bias[..cols].copy_from_slice(&b[col0..col0 + cols]);
        }
        let next = slices.get(i + 1).map_or(&[][..], |&next| slice_of(next));
        let step = Step {
            x_stride: input.stride,
            depth: panel.len() / PANEL,
            accumulate: d0 > 0,
            n: out_stride,
            cols,
            // The first tile reads this slice from memory; the others find it in L1. With few
            // rows (a cached pass's 32 are 6 tiles) that first read would be a large part of the
            // slice's time, so the first tile also fetches the next slice into L2 while it
            // works. With many tiles it is not worth it (measured: no gain).
            prefetch: if input.tiles.len() <= PREFETCH_TILES {
                next
            } else {
                &[]
            },
        };
        // SAFETY: every tile touches its rows of `cols` values from col0, which the caller
        // vouches for; the input was checked above.
        unsafe {
            tiles(
                panel,
                &input.x[d0..],
                input.tiles,
                &bias,
                out.add(col0),
                &step,
            )
        };
    }
}

/// The depth of each slice of a `k`-deep product: equal slices of at most [`MAX_DEPTH`] (1408
/// runs as 2 x 704, not 1024 + 384), at least 1.
fn slice_depth(k: usize) -> usize {
    k.div_ceil(k.div_ceil(MAX_DEPTH).max(1)).max(1)
}

pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: the pointer is only written through at disjoint positions (see `multiply`).
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// The shape of one tile's work: input rows `x_stride` apart, of which `depth` values are read;
/// `cols` of the 16 columns are written to output rows `n` apart, added to what is there when
/// `accumulate`, else to the bias. `prefetch`: panel values to fetch into L2 meanwhile, one
/// cache line per depth step.
struct Step<'a> {
    x_stride: usize,
    depth: usize,
    accumulate: bool,
    n: usize,
    cols: usize,
    prefetch: &'a [f32],
}

/// Every row tile of `x` (rows `step.x_stride` apart, tiles as [`row_tiles`] cuts them) times one
/// panel slice (`step.depth` rows of 16), written to `out` (row r at `r * step.n`) as `step` says;
/// only the first tile fetches `step.prefetch`.
///
/// # Safety
/// `out` must be valid for every tile's rows of `step.cols` reads and writes, `step.n` apart.
unsafe fn tiles(
    panel: &[f32],
    x: &[f32],
    tiles: &[(usize, usize)],
    bias: &[f32; PANEL],
    out: *mut f32,
    step: &Step,
) {
    assert!(panel.len() >= step.depth * PANEL);
    // Every tile, whatever their order: the kernel reads its rows through raw pointers.
    assert!(tiles.iter().all(|&(r0, rows)| {
        (1..=TILE_ROWS).contains(&rows) && x.len() >= (r0 + rows - 1) * step.x_stride + step.depth
    }));
    #[cfg(target_arch = "x86_64")]
    if PackedWeight::supported() {
        // SAFETY: AVX2 and FMA were detected, the slices were checked above and the caller
        // vouches for `out`.
        unsafe { avx::tiles(panel, x, tiles, bias, out, step) };
        return;
    }
    for (t, &(r0, rows)) in tiles.iter().enumerate() {
        let step = Step {
            prefetch: if t == 0 { step.prefetch } else { &[] },
            ..*step
        };
        // SAFETY: passed on from the caller.
        unsafe {
            tile_portable(
                panel,
                &x[r0 * step.x_stride..],
                rows,
                bias,
                out.add(r0 * step.n),
                &step,
            )
        }
    }
}

/// One tile without SIMD, for CPUs without AVX2 and FMA: `rows` (at most 6) input rows of x times
/// a panel slice, written to `out` as `step` says.
///
/// # Safety
/// `out` must be valid for `rows` rows of `step.cols` reads and writes, `step.n` apart.
unsafe fn tile_portable(
    panel: &[f32],
    x: &[f32],
    rows: usize,
    bias: &[f32; PANEL],
    out: *mut f32,
    step: &Step,
) {
    for i in 0..rows {
        let mut acc = [0f32; PANEL];
        for kk in 0..step.depth {
            let xv = x[i * step.x_stride + kk];
            for (a, &w) in acc.iter_mut().zip(&panel[kk * PANEL..][..PANEL]) {
                *a = xv.mul_add(w, *a);
            }
        }
        for c in 0..step.cols {
            // SAFETY: the caller vouches for `out`.
            unsafe {
                let o = out.add(i * step.n + c);
                *o = acc[c] + if step.accumulate { *o } else { bias[c] };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{Step, PANEL};
    use std::arch::x86_64::*;

    /// [`super::tiles`] once AVX2 and FMA are known to be there: the loop over the tiles runs
    /// in AVX code, so that each tile costs a direct call.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tiles(
        panel: &[f32],
        x: &[f32],
        tiles: &[(usize, usize)],
        bias: &[f32; PANEL],
        out: *mut f32,
        step: &Step,
    ) {
        let rest = Step {
            prefetch: &[],
            ..*step
        };
        for (t, &(r0, rows)) in tiles.iter().enumerate() {
            let step = if t == 0 { step } else { &rest };
            let x = &x[r0 * step.x_stride..];
            let out = out.add(r0 * step.n);
            match rows {
                6 => tile::<6>(panel, x, bias, out, step),
                5 => tile::<5>(panel, x, bias, out, step),
                4 => tile::<4>(panel, x, bias, out, step),
                3 => tile::<3>(panel, x, bias, out, step),
                2 => tile::<2>(panel, x, bias, out, step),
                _ => tile::<1>(panel, x, bias, out, step),
            }
        }
    }

    /// R rows x 16 columns, accumulated over k in registers, then stored with the bias added
    /// (straight into `out` when all 16 columns are wanted, through a buffer otherwise).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        panel: &[f32],
        x: &[f32],
        bias: &[f32; PANEL],
        out: *mut f32,
        step: &Step,
    ) {
        let Step {
            x_stride,
            depth,
            accumulate,
            n,
            cols,
            prefetch,
        } = *step;
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let w = panel.as_ptr();
        // One pointer per input row: the loop then addresses each row's value by the depth index
        // alone.
        let rows: [*const f32; R] = std::array::from_fn(|i| x.as_ptr().add(i * x_stride));
        macro_rules! depth_step {
            ($kk:expr) => {
                let kk = $kk;
                let w0 = _mm256_loadu_ps(w.add(kk * PANEL));
                let w1 = _mm256_loadu_ps(w.add(kk * PANEL + 8));
                for i in 0..R {
                    let xv = _mm256_broadcast_ss(&*rows[i].add(kk));
                    lo[i] = _mm256_fmadd_ps(xv, w0, lo[i]);
                    hi[i] = _mm256_fmadd_ps(xv, w1, hi[i]);
                }
            };
        }
        // A panel row of 16 floats is one 64-byte cache line. Separate loops, so that tiles
        // without anything to fetch run the loop without the prefetch.
        let prefetch_lines = (prefetch.len() / PANEL).min(depth);
        for kk in 0..prefetch_lines {
            _mm_prefetch::<_MM_HINT_T1>(prefetch.as_ptr().add(kk * PANEL).cast());
            depth_step!(kk);
        }
        // Four depth steps per iteration: the loop's own instructions (counter, branch, row
        // addresses) were a fifth of the unrolled one's, and an L1-resident 6-row tile went from
        // about 65 to 78 GFLOP/s on one core (FMA peak: 94).
        let mut kk = prefetch_lines;
        while kk + 4 <= depth {
            depth_step!(kk);
            depth_step!(kk + 1);
            depth_step!(kk + 2);
            depth_step!(kk + 3);
            kk += 4;
        }
        for kk in kk..depth {
            depth_step!(kk);
        }
        let b0 = _mm256_loadu_ps(bias.as_ptr());
        let b1 = _mm256_loadu_ps(bias.as_ptr().add(8));
        for i in 0..R {
            let row = out.add(i * n);
            // Full panels go straight to `out`; a partial one through a buffer.
            let mut buffer = [0f32; PANEL];
            let target = if cols == PANEL {
                row
            } else {
                if accumulate {
                    std::ptr::copy_nonoverlapping(row, buffer.as_mut_ptr(), cols);
                }
                buffer.as_mut_ptr()
            };
            let (base0, base1) = if accumulate {
                (_mm256_loadu_ps(target), _mm256_loadu_ps(target.add(8)))
            } else {
                (b0, b1)
            };
            _mm256_storeu_ps(target, _mm256_add_ps(lo[i], base0));
            _mm256_storeu_ps(target.add(8), _mm256_add_ps(hi[i], base1));
            if cols != PANEL {
                std::ptr::copy_nonoverlapping(buffer.as_ptr(), row, cols);
            }
        }
    }
}

impl CustomOp1 for PackedWeight {
    fn name(&self) -> &'static str {
        "dlm-packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (out, shape) = self.product_of(storage, layout)?;
        Ok((CpuStorage::F32(out), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn packed_products_equal_candles_matmul() {
        // Rows and columns on, under and across the tile and panel sizes; with and without bias.
        // Depths past one slice (1024) too: two and three equal slices, odd and even.
        for (rows, in_dim, out_dim) in [
            (1, 1, 1),
            (5, 7, 3),
            (6, 64, 16),
            (32, 256, 768),
            (37, 45, 50),
            (9, 1408, 40),
            (4, 2049, 17),
            (3, 0, 5),
            // No rows: nothing to write, at one depth slice and at three.
            (0, 64, 20),
            (0, 2049, 20),
        ] {
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &Device::Cpu).unwrap();
            let b = Tensor::randn(0f32, 1.0, out_dim, &Device::Cpu).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, rows, in_dim), &Device::Cpu).unwrap();
            for bias in [None, Some(&b)] {
                let packed = PackedWeight::new(&w, bias).unwrap();
                let got = packed.forward(&x).unwrap();
                // candle's matmul refuses a depth of 0; the product is then all zeros.
                let mut want = if in_dim == 0 {
                    Tensor::zeros((2, rows, out_dim), candle_core::DType::F32, &Device::Cpu)
                        .unwrap()
                } else {
                    x.broadcast_matmul(&w.t().unwrap()).unwrap()
                };
                if let Some(b) = bias {
                    want = want.broadcast_add(b).unwrap();
                }
                assert_eq!(got.dims(), &[2, rows, out_dim]);
                if rows == 0 {
                    continue;
                }
                let diff = max_diff(&got, &want);
                assert!(
                    diff <= 1e-4 * (in_dim as f32).sqrt(),
                    "{rows}x{in_dim}x{out_dim}: {diff}"
                );
            }
        }
    }

    #[test]
    fn deep_products_are_cut_into_equal_slices() {
        for (k, depth) in [
            (0, 1),
            (1, 1),
            (512, 512),
            (1024, 1024),
            (1025, 513),
            (1408, 704),
        ] {
            assert_eq!(slice_depth(k), depth, "depth {k}");
        }
        // 4096 as four slices of 1024; 3000 as three of 1000.
        assert_eq!(slice_depth(4096), 1024);
        assert_eq!(slice_depth(3000), 1000);
    }

    #[test]
    fn both_tile_kernels_compute_the_exact_product() {
        // 11 rows: a tile of 6 and one of 5.
        let (k, rows) = (19, 11);
        let tiles_of = row_tiles(rows);
        assert_eq!(tiles_of, [(0, 6), (6, 5)]);
        let panel: Vec<f32> = (0..k * PANEL).map(|i| (i % 13) as f32 - 6.0).collect();
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.5).collect();
        let bias: [f32; PANEL] = std::array::from_fn(|c| c as f32 - 3.0);
        let mut want = vec![bias; rows];
        for (i, row) in want.iter_mut().enumerate() {
            for kk in 0..k {
                for (c, a) in row.iter_mut().enumerate() {
                    *a += x[i * k + kk] * panel[kk * PANEL + c];
                }
            }
        }
        // Small integers and halves: every product and sum is exact in f32. Full panels and a
        // partial one (the 16th column must stay untouched).
        // Accumulating onto what is in `out` instead of the bias gives the same sums.
        for (cols, accumulate) in [(PANEL, false), (PANEL - 1, false), (PANEL, true), (5, true)] {
            let step = Step {
                x_stride: k,
                depth: k,
                accumulate,
                n: PANEL,
                cols,
                // Fetching ahead changes nothing but the cache. 6 fetching steps leave 12 for the
                // 4-step loop and 1 after it; without fetching, 16 and 3.
                prefetch: if accumulate { &panel[..6 * PANEL] } else { &[] },
            };
            let start = if accumulate {
                vec![bias; rows]
            } else {
                vec![[-1f32; PANEL]; rows]
            };
            let zero = [0f32; PANEL];
            let base = if accumulate { &zero } else { &bias };
            let mut simd = start.clone();
            let mut portable = start.clone();
            // SAFETY: the buffers hold 11 rows of 16.
            unsafe {
                tiles(&panel, &x, &tiles_of, base, simd.as_mut_ptr().cast(), &step);
                for &(r0, height) in &tiles_of {
                    let out = portable[r0..].as_mut_ptr().cast();
                    tile_portable(&panel, &x[r0 * k..], height, base, out, &step);
                }
            }
            for result in [simd, portable] {
                for ((got, want), before) in result.iter().zip(&want).zip(&start) {
                    assert_eq!(got[..cols], want[..cols]);
                    assert_eq!(got[cols..], before[cols..]);
                }
            }
        }
    }
}
