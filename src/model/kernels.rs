//! Element-wise inference kernels whose candle versions call libm's scalar `expf` per element:
//! softmax over the last dimension (attention) and SiLU (the MLP gate). `exp_fast` is Cephes'
//! single-precision exponential written branch-free so that loops over slices vectorise; it is
//! within 2 ulp of `f32::exp` over the range that matters (tested below). Training keeps candle's
//! differentiable ops.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// e^x for f32, branch-free (vectorisable). Inputs below -87.3 give about 1e-38, not 0.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Reduces `values` with eight independent accumulators (so the loop vectorises; a single
/// floating-point accumulator would have to stay in order).
#[inline(always)]
fn lanes(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], chunk[i]);
        }
    }
    let mut out = init;
    for &v in acc.iter().chain(rest) {
        out = f(out, v);
    }
    out
}

/// Softmax over the last dimension of a contiguous f32 tensor.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "dlm-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("dlm-softmax-last-dim: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("dlm-softmax-last-dim: the input must be contiguous");
        };
        let src = &src[start..end];
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut dst = vec![0f32; src.len()];
        src.par_chunks(width)
            .zip(dst.par_chunks_mut(width))
            .for_each(|(s, d)| {
                let max = lanes(s, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
                for (o, &v) in d.iter_mut().zip(s) {
                    *o = exp_fast(v - max);
                }
                let inv = 1.0 / lanes(d, 0.0, |a, b| a + b);
                for o in d.iter_mut() {
                    *o *= inv;
                }
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// x * sigmoid(x) of a contiguous f32 tensor.
struct Silu;

impl CustomOp1 for Silu {
    fn name(&self) -> &'static str {
        "dlm-silu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("dlm-silu: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("dlm-silu: the input must be contiguous");
        };
        let src = &src[start..end];
        let mut dst = vec![0f32; src.len()];
        src.par_chunks(4096)
            .zip(dst.par_chunks_mut(4096))
            .for_each(|(s, d)| {
                for (o, &v) in d.iter_mut().zip(s) {
                    *o = v / (1.0 + exp_fast(-v));
                }
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.is_contiguous()
}

/// Softmax over the last dimension (the fast kernel for contiguous f32 on the CPU).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.apply_op1_no_bwd(&Softmax)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// SiLU (the fast kernel for contiguous f32 on the CPU).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.apply_op1_no_bwd(&Silu)
    } else {
        candle_nn::ops::silu(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exp_fast_is_within_2_ulp_of_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (want, got) = (x.exp(), exp_fast(x));
            worst = worst.max(((got - want) / want).abs() / f32::EPSILON);
            x += 0.0137;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_fast(0.0), 1.0);
        assert!(exp_fast(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn kernels_match_candle() {
        let x = Tensor::randn(0f32, 3.0, (3, 5, 77), &Device::Cpu).unwrap();
        let close = |a: Tensor, b: Tensor| {
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            d.to_scalar::<f32>().unwrap()
        };
        let want = candle_nn::ops::softmax_last_dim(&x).unwrap();
        assert!(close(softmax_last_dim(&x).unwrap(), want) < 1e-6);
        let want = candle_nn::ops::silu(&x).unwrap();
        assert!(close(silu(&x).unwrap(), want) < 1e-5);
        // Non-contiguous input falls back to candle.
        let t = x.transpose(1, 2).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&t.contiguous().unwrap()).unwrap();
        assert!(close(softmax_last_dim(&t.contiguous().unwrap()).unwrap(), want) < 1e-6);
    }
}
