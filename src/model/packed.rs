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
const PANEL: usize = 16;
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
        let n_panels = out_dim.div_ceil(PANEL);
        let mut panels = vec![0f32; n_panels * in_dim * PANEL];
        for (o, row) in w.chunks_exact(in_dim).enumerate() {
            let panel = &mut panels[(o / PANEL) * in_dim * PANEL..][..in_dim * PANEL];
            for (k, &v) in row.iter().enumerate() {
                panel[k * PANEL + o % PANEL] = v;
            }
        }
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

    fn multiply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        let mut out = vec![0f32; rows * n];
        let dst = SendPtr(out.as_mut_ptr());
        let n_panels = n.div_ceil(PANEL);
        // Enough panels per task to amortise rayon's hand-over, but at least one task per thread.
        let per_task = n_panels
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        (0..n_panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let dst = &dst;
                for p in task * per_task..((task + 1) * per_task).min(n_panels) {
                    let panel = &self.panels[p * k * PANEL..][..k * PANEL];
                    let col0 = p * PANEL;
                    let cols = PANEL.min(n - col0);
                    for r0 in (0..rows).step_by(TILE_ROWS) {
                        let tile = tile(panel, &x[r0 * k..], k, (rows - r0).min(TILE_ROWS));
                        for (i, values) in tile.iter().enumerate().take(rows - r0) {
                            for (c, &v) in values[..cols].iter().enumerate() {
                                let b = self.bias.as_ref().map_or(0.0, |b| b[col0 + c]);
                                // SAFETY: each task writes only the columns of its own panels,
                                // inside the (rows, n) buffer that outlives the parallel loop.
                                unsafe { *dst.0.add((r0 + i) * n + col0 + c) = v + b };
                            }
                        }
                    }
                }
            });
        out
    }
}

struct SendPtr(*mut f32);
// SAFETY: the pointer is only written through at disjoint positions (see `multiply`).
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// One tile: `rows` (at most 6) input rows of x (row stride k) times a panel (k rows of 16).
fn tile(panel: &[f32], x: &[f32], k: usize, rows: usize) -> [[f32; PANEL]; TILE_ROWS] {
    #[cfg(target_arch = "x86_64")]
    if PackedWeight::supported() {
        // SAFETY: AVX2 and FMA were detected; the slices cover what the kernel reads.
        return unsafe {
            match rows {
                6 => avx::tile::<6>(panel, x, k),
                5 => avx::tile::<5>(panel, x, k),
                4 => avx::tile::<4>(panel, x, k),
                3 => avx::tile::<3>(panel, x, k),
                2 => avx::tile::<2>(panel, x, k),
                _ => avx::tile::<1>(panel, x, k),
            }
        };
    }
    let mut acc = [[0f32; PANEL]; TILE_ROWS];
    for (i, row) in acc.iter_mut().enumerate().take(rows) {
        for kk in 0..k {
            let xv = x[i * k + kk];
            for (a, &w) in row.iter_mut().zip(&panel[kk * PANEL..][..PANEL]) {
                *a = xv.mul_add(w, *a);
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{PANEL, TILE_ROWS};
    use std::arch::x86_64::*;

    /// R rows x 16 columns, accumulated over k in registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const R: usize>(
        panel: &[f32],
        x: &[f32],
        k: usize,
    ) -> [[f32; PANEL]; TILE_ROWS] {
        assert!(panel.len() >= k * PANEL && x.len() >= (R - 1) * k + k);
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let w = panel.as_ptr();
        let xp = x.as_ptr();
        for kk in 0..k {
            let w0 = _mm256_loadu_ps(w.add(kk * PANEL));
            let w1 = _mm256_loadu_ps(w.add(kk * PANEL + 8));
            for i in 0..R {
                let xv = _mm256_broadcast_ss(&*xp.add(i * k + kk));
                lo[i] = _mm256_fmadd_ps(xv, w0, lo[i]);
                hi[i] = _mm256_fmadd_ps(xv, w1, hi[i]);
            }
        }
        let mut out = [[0f32; PANEL]; TILE_ROWS];
        for i in 0..R {
            _mm256_storeu_ps(out[i].as_mut_ptr(), lo[i]);
            _mm256_storeu_ps(out[i].as_mut_ptr().add(8), hi[i]);
        }
        out
    }
}

impl CustomOp1 for PackedWeight {
    fn name(&self) -> &'static str {
        "dlm-packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("dlm-packed-linear: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("dlm-packed-linear: the input must be contiguous");
        };
        let dims = layout.dims();
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!(
                "dlm-packed-linear: input {:?} does not end in {}",
                dims,
                self.in_dim
            );
        }
        let rows = (end - start) / self.in_dim.max(1);
        let out = self.multiply(&src[start..end], rows);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("checked above") = self.out_dim;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
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
        for (rows, in_dim, out_dim) in [
            (1, 1, 1),
            (5, 7, 3),
            (6, 64, 16),
            (32, 256, 768),
            (37, 45, 50),
        ] {
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &Device::Cpu).unwrap();
            let b = Tensor::randn(0f32, 1.0, out_dim, &Device::Cpu).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, rows, in_dim), &Device::Cpu).unwrap();
            for bias in [None, Some(&b)] {
                let packed = PackedWeight::new(&w, bias).unwrap();
                let got = packed.forward(&x).unwrap();
                let mut want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
                if let Some(b) = bias {
                    want = want.broadcast_add(b).unwrap();
                }
                assert_eq!(got.dims(), &[2, rows, out_dim]);
                let diff = max_diff(&got, &want);
                assert!(
                    diff < 1e-4 * (in_dim as f32).sqrt(),
                    "{rows}x{in_dim}x{out_dim}: {diff}"
                );
            }
        }
    }

    #[test]
    fn the_portable_tile_equals_the_simd_one() {
        let (k, rows) = (19, 6);
        let panel: Vec<f32> = (0..k * PANEL).map(|i| (i % 13) as f32 - 6.0).collect();
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.5).collect();
        let simd = tile(&panel, &x, k, rows);
        let mut portable = [[0f32; PANEL]; TILE_ROWS];
        for (i, row) in portable.iter_mut().enumerate() {
            for kk in 0..k {
                for (c, a) in row.iter_mut().enumerate() {
                    *a += x[i * k + kk] * panel[kk * PANEL + c];
                }
            }
        }
        // Small integers and halves: every product and sum is exact in f32.
        assert_eq!(simd, portable);
    }
}
