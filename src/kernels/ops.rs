//! Element-wise inference kernels whose candle versions call libm's scalar `expf` per element:
//! softmax over the last dimension (attention), SiLU and the SwiGLU product (the MLP gate), plus
//! the rotary split of the fused query/key/value projection. `exp_fast` is Cephes'
//! single-precision exponential written branch-free so that loops over slices vectorise; it is
//! within 2 ulp of `f32::exp` over the range that matters (tested below). Where the CPU has AVX2
//! and FMA the loops are compiled a second time for them ([`simd`]): 8 lanes instead of SSE2's 4,
//! with the same operations in the same order, so both give the same bits. Training keeps
//! candle's differentiable ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// e^x for f32, branch-free (vectorisable). Inputs below -87.3 give about 1e-38, not 0.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // t lies in [2^23, 2^24), where the float's ulp is 1: its bits past ROUND's are the integer n
    // (an integer subtraction, which vectorises where a float-to-int cast would not).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((ni + 127) as u32) << 23)
}

/// `simd!(fn name(args) body)` defines `name`, which runs `body` compiled for AVX2 and FMA where
/// the CPU has them (checked once, then a cached flag) and as plain code elsewhere. The body's
/// callees must be `#[inline(always)]` so they are compiled into both versions.
macro_rules! simd {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn plain($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    plain($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            plain($($arg),*)
        }
    };
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

simd! {
    /// Softmax of each `width`-long row of `rows`, in place.
    pub(crate) fn softmax_rows(rows: &mut [f32], width: usize) {
        for row in rows.chunks_exact_mut(width) {
            let max = lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
            for v in row.iter_mut() {
                *v = exp_fast(*v - max);
            }
            let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// A buffer of `len` values that `fill` writes, never zeroed first: a zeroed buffer is one more
/// pass over memory that is about to be overwritten (the SwiGLU and rotary outputs' memsets were
/// 1.6% of the embedded model's forward pass in `perf`).
///
/// # Safety
/// `fill` must write every one of the `len` elements it is given.
pub(crate) unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    fill(&mut buffer.spare_capacity_mut()[..len]);
    // SAFETY: the caller vouches that `fill` initialised all `len` values.
    unsafe { buffer.set_len(len) };
    buffer
}

#[inline(always)]
fn silu_one(v: f32) -> f32 {
    v / (1.0 + exp_fast(-v))
}

simd! {
    fn silu_slice(src: &[f32], dst: &mut [f32]) {
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = silu_one(v);
        }
    }
}

simd! {
    /// SwiGLU of rows [gate | up] of `2 * width` values into rows of `width`.
    fn swiglu_rows(src: &[f32], dst: &mut [MaybeUninit<f32>], width: usize) {
        for (s, d) in src.chunks_exact(2 * width).zip(dst.chunks_exact_mut(width)) {
            let (gate, up) = s.split_at(width);
            for ((o, &g), &u) in d.iter_mut().zip(gate).zip(up) {
                o.write(silu_one(g) * u);
            }
        }
    }
}

/// silu(gate) * up for the fused MLP input projection's output rows [gate | up] (..., 2 * F):
/// one pass, and no copies of the two halves.
struct SwiGlu;

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "dlm-swiglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = f32_slice(self.name(), storage, layout, "the input")?;
        let mut dims = layout.dims().to_vec();
        let Some(last) = dims.last_mut().filter(|w| **w % 2 == 0) else {
            candle_core::bail!("dlm-swiglu: the last dimension must hold gate and up halves");
        };
        *last /= 2;
        let width = (*last).max(1);
        let rows_per_task = (4096 / width).max(1);
        // SAFETY: the chunks of src (rows of 2 * width) and dst (rows of width) pair up row for
        // row, and swiglu_rows writes every value of each row.
        let dst = unsafe {
            filled(src.len() / 2, |dst| {
                src.par_chunks(rows_per_task * 2 * width)
                    .zip(dst.par_chunks_mut(rows_per_task * width))
                    .for_each(|(s, d)| swiglu_rows(s, d, width))
            })
        };
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

/// What [`rotate_plane`] reads and writes: one head's T rows of `head_dim` values.
struct Plane<'a> {
    /// The fused projection's rows, `row_stride` apart; this head starts at column `col0`.
    src: &'a [f32],
    row_stride: usize,
    col0: usize,
    /// (T, head_dim / 2) rotation tables; `None` copies the head unrotated (values).
    rotation: Option<(&'a [f32], &'a [f32])>,
    scale: f32,
}

simd! {
    /// One head of the fused projection into a contiguous (T, head_dim) plane, rotated as
    /// LLaDA's `rotate_half` form does (and as candle's `rope_thd`: x1 cos - x2 sin,
    /// x1 sin + x2 cos), then scaled.
    fn rotate_plane(plane: &Plane, dst: &mut [MaybeUninit<f32>], head_dim: usize) {
        let half = head_dim / 2;
        for (t, out) in dst.chunks_exact_mut(head_dim).enumerate() {
            let x = &plane.src[t * plane.row_stride + plane.col0..][..head_dim];
            let Some((cos, sin)) = plane.rotation else {
                for (o, &v) in out.iter_mut().zip(x) {
                    o.write(v);
                }
                continue;
            };
            let (cos, sin) = (&cos[t * half..][..half], &sin[t * half..][..half]);
            let (x1, x2) = x.split_at(half);
            let (o1, o2) = out.split_at_mut(half);
            for i in 0..half {
                o1[i].write((x1[i] * cos[i] - x2[i] * sin[i]) * plane.scale);
                o2[i].write((x1[i] * sin[i] + x2[i] * cos[i]) * plane.scale);
            }
        }
    }
}

/// The fused query/key/value projection's output (B, T, (H + 2 KV) * D) split into head-major
/// planes (B, H + 2 KV, T, D), queries and keys rotated and queries scaled: what attention reads,
/// in one pass, where the composed path narrows, rotates, transposes and copies each part.
pub struct RotaryHeads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies the rotated queries (attention's 1/sqrt(D), so the scores need no scaling).
    pub q_scale: f32,
}

impl RotaryHeads {
    /// Applies the split to `qkv` with rotation tables `cos`, `sin` (T, D / 2) for its positions.
    /// Contiguous f32 on the CPU only ([`fast_path`]).
    pub fn apply(&self, qkv: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        qkv.apply_op3_no_bwd(cos, sin, self)
    }
}

/// The values of a CPU op's input `what`, which must be contiguous f32 (`op` names the op in the
/// error).
pub(crate) fn f32_slice<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        (CpuStorage::F32(_), None) => candle_core::bail!("{op}: {what} must be contiguous"),
        _ => candle_core::bail!("{op}: {what} must be f32"),
    }
}

impl CustomOp3 for RotaryHeads {
    fn name(&self) -> &'static str {
        "dlm-rotary-heads"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let src = f32_slice(op, s1, l1, "the projection")?;
        let (cos, sin) = (f32_slice(op, s2, l2, "cos")?, f32_slice(op, s3, l3, "sin")?);
        let (b, t, width) = l1.shape().dims3()?;
        let d = self.head_dim;
        let planes = self.n_heads + 2 * self.n_kv_heads;
        if width != planes * d
            || !d.is_multiple_of(2)
            || cos.len() != t * d / 2
            || sin.len() != cos.len()
        {
            candle_core::bail!(
                "dlm-rotary-heads: (B, T, {width}) with tables of {} does not match {planes} heads of {d} over {t} positions",
                cos.len()
            );
        }
        // SAFETY: every plane's chunk of t * d values is written whole by rotate_plane (d is
        // even, so the two halves cover every column).
        let dst = unsafe {
            filled(b * planes * t * d, |dst| {
                dst.par_chunks_mut((t * d).max(1))
                    .enumerate()
                    .for_each(|(p, out)| {
                        let (batch, head) = (p / planes, p % planes);
                        let plane = Plane {
                            src: &src[batch * t * width..][..t * width],
                            row_stride: width,
                            col0: head * d,
                            rotation: (head < self.n_heads + self.n_kv_heads).then_some((cos, sin)),
                            scale: if head < self.n_heads {
                                self.q_scale
                            } else {
                                1.0
                            },
                        };
                        rotate_plane(&plane, out, d);
                    })
            })
        };
        Ok((CpuStorage::F32(dst), Shape::from((b, planes, t, d))))
    }
}

/// Softmax over the last dimension of a contiguous f32 tensor.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "dlm-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = f32_slice(self.name(), storage, layout, "the input")?;
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        // Copied, then normalised in place: the copy is the one pass over the output a zeroed
        // buffer would have cost.
        let mut dst = src.to_vec();
        // Several rows per task: a row of 256 scores is too little work to hand to a thread.
        let rows_per_task = (4096 / width).max(1) * width;
        dst.par_chunks_mut(rows_per_task)
            .for_each(|d| softmax_rows(d, width));
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
        let src = f32_slice(self.name(), storage, layout, "the input")?;
        let mut dst = vec![0f32; src.len()];
        src.par_chunks(4096)
            .zip(dst.par_chunks_mut(4096))
            .for_each(|(s, d)| silu_slice(s, d));
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// Whether `x` takes these kernels: contiguous f32 on the CPU.
pub fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.is_contiguous()
}

/// silu(x[..., :F]) * x[..., F:] of x (..., 2F): the SwiGLU of a fused gate/up projection.
pub fn swiglu(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.apply_op1_no_bwd(&SwiGlu)
    } else {
        let width = x.dim(candle_core::D::Minus1)? / 2;
        let gate = x.narrow(candle_core::D::Minus1, 0, width)?;
        let up = x.narrow(candle_core::D::Minus1, width, width)?;
        candle_nn::ops::silu(&gate)? * up
    }
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
        let (gate, up) = (x.narrow(2, 0, 38).unwrap(), x.narrow(2, 38, 38).unwrap());
        let want = (candle_nn::ops::silu(&gate).unwrap() * up).unwrap();
        let got = swiglu(&x.narrow(2, 0, 76).unwrap().contiguous().unwrap()).unwrap();
        assert_eq!(got.dims(), &[3, 5, 38]);
        assert!(close(got, want) < 1e-5);
        // Non-contiguous input falls back to candle.
        let t = x.narrow(2, 0, 76).unwrap();
        let want = (candle_nn::ops::silu(&gate).unwrap() * x.narrow(2, 38, 38).unwrap()).unwrap();
        assert!(close(swiglu(&t).unwrap(), want) < 1e-5);
        let t = x.transpose(1, 2).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&t.contiguous().unwrap()).unwrap();
        assert!(close(softmax_last_dim(&t.contiguous().unwrap()).unwrap(), want) < 1e-6);
    }

    #[test]
    fn the_dispatched_loops_give_the_bits_of_plain_scalar_code() {
        // This test module is compiled without AVX2, so these references are the plain build;
        // where the CPU has AVX2 and FMA the kernels run their second build, which must not
        // change a bit (no contraction into FMAs, same reduction order).
        let x: Vec<f32> = (0..777)
            .map(|i| ((i * 37) % 101) as f32 * 0.13 - 6.5)
            .collect();
        let mut got = vec![0f32; x.len()];
        silu_slice(&x, &mut got);
        let want: Vec<f32> = x.iter().map(|&v| v / (1.0 + exp_fast(-v))).collect();
        assert_eq!(got, want);
        let width = 111;
        got.copy_from_slice(&x);
        softmax_rows(&mut got, width);
        for (row, out) in x.chunks_exact(width).zip(got.chunks_exact(width)) {
            let max = lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
            let e: Vec<f32> = row.iter().map(|&v| exp_fast(v - max)).collect();
            let inv = 1.0 / lanes(&e, 0.0, |a, b| a + b);
            let want: Vec<f32> = e.iter().map(|v| v * inv).collect();
            assert_eq!(out, &want[..]);
        }
    }

    #[test]
    fn rotary_heads_match_candles_rope_and_transposes() {
        let (b, t, h, kv, d) = (2, 7, 4, 2, 8);
        let dev = &Device::Cpu;
        let qkv = Tensor::randn(0f32, 1.0, (b, t, (h + 2 * kv) * d), dev).unwrap();
        let cos = Tensor::randn(0f32, 1.0, (t, d / 2), dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (t, d / 2), dev).unwrap();
        let op = RotaryHeads {
            n_heads: h,
            n_kv_heads: kv,
            head_dim: d,
            q_scale: 0.5,
        };
        let got = op.apply(&qkv, &cos, &sin).unwrap();
        let part = |start: usize, heads: usize| {
            qkv.narrow(2, start * d, heads * d)
                .unwrap()
                .reshape((b, t, heads, d))
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let rope = |x: Tensor| candle_nn::rotary_emb::rope_thd(&x, &cos, &sin).unwrap();
        let q = (rope(part(0, h)) * 0.5).unwrap();
        let k = rope(part(h, kv));
        let v = part(h + kv, kv);
        let planes = [q, k, v].map(|x| x.transpose(1, 2).unwrap());
        let want = Tensor::cat(&planes, 1).unwrap();
        assert_eq!(got.dims(), &[b, h + 2 * kv, t, d]);
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
