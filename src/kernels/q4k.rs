//! `x @ W^T` for q4_K weights in integer arithmetic, the way llama.cpp runs them: the input rows
//! are quantized to 8 bits per 256 values (one f32 scale each, as ggml's q8_K), the weight's
//! 4-bit values are multiplied with them by AVX2's `maddubs` (32 unsigned x signed byte products
//! summed in pairs per instruction), and the sub-block scales, the super-block scales and the
//! minimums are applied once per sub-block or super-block.
//!
//! Layout: eight weight rows are decoded into a *panel* in which one 32-byte vector holds four
//! consecutive values of each of the eight rows, so that one broadcast group of four input bytes
//! against it gives the eight rows' partial sums in eight lanes (no horizontal sums), and the
//! eight results of an input row are eight contiguous floats of the output.
//!
//! On this machine's CPU (2 cores, AVX2) the f32 panels of [`super::quant::product`] ran at the
//! FMA units' limit; `maddubs` does 32 multiply-adds where an FMA does 8.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Result;

/// Weight rows in a panel: the eight i32 lanes of an AVX2 register.
const PANEL_ROWS: usize = 8;
/// Input rows one call of the micro-kernel multiplies with a panel.
const X_TILE: usize = 4;
/// Weight rows one task decodes and multiplies with every input row.
const TASK_ROWS: usize = 8 * PANEL_ROWS;
/// A q4_K super-block: f16 d and dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles.
const Q4K_BYTES: usize = 144;
/// One super-block of a panel: the values ([j][g][row][4] bytes, j the sub-block of 32, g the
/// group of 4), then the scales (per sub-block, each row's twice, as i16), the minimums (per
/// pair of sub-blocks, each row's pair, as i16), and each row's d and dmin (f32).
const VALUES: usize = 8 * 8 * 32;
const SCALES: usize = VALUES;
const MINS: usize = SCALES + 8 * 32;
const D: usize = MINS + 4 * 32;
const DMIN: usize = D + 32;
const BLOCK: usize = DMIN + 32;

/// The fewest input rows for which [`product`] beats candle's quantized kernel. Measured on the
/// 1-block LLaDA-8B slice at q4_k (`dlm-tui bench --forward-only --length L`, both paths built in
/// turn, 2 threads, AMD EPYC family 23): candle / this kernel at 4 rows 212-236 / 298-303 ms,
/// 6 rows 311-332 / 354-362, 7 rows 361-365 / 355-368, 8 rows 416-421 / 368-373.
pub const MIN_ROWS: usize = 8;

/// Whether [`product`] runs here: AVX2, FMA and F16C.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`product`] takes this weight: q4_K whose rows are whole super-blocks.
pub fn takes(q: &QTensor) -> bool {
    q.dtype() == GgmlDType::Q4K
        && q.shape()
            .dims2()
            .is_ok_and(|(_, k)| k > 0 && k.is_multiple_of(256))
}

/// Input rows quantized to 8 bits: `q` holds `rows` (padded to [`X_TILE`]) rows of `k` values,
/// `d` each 256 values' scale, `sums` each 32 values' sum (i16, as the minimums' products want).
struct Quantized {
    q: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<i16>,
    k: usize,
}

impl Quantized {
    fn new(x: &[f32], rows: usize, k: usize) -> Self {
        let padded = rows.div_ceil(X_TILE) * X_TILE;
        let blocks = k / 256;
        let mut q = vec![0i8; padded * k];
        let mut d = vec![0f32; padded * blocks];
        let mut sums = vec![0i16; padded * k / 32];
        for r in 0..rows {
            for b in 0..blocks {
                let src = &x[r * k + b * 256..][..256];
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                if amax == 0.0 {
                    continue;
                }
                let scale = 127.0 / amax;
                d[r * blocks + b] = amax / 127.0;
                let dst = &mut q[r * k + b * 256..][..256];
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = (v * scale).round().clamp(-127.0, 127.0) as i8;
                }
                for (j, sum) in sums[(r * blocks + b) * 8..][..8].iter_mut().enumerate() {
                    *sum = dst[32 * j..32 * j + 32].iter().map(|&v| v as i16).sum();
                }
            }
        }
        Self { q, d, sums, k }
    }
}

/// `x @ W^T (+ bias)` for a q4_K weight W (n, k), k a multiple of 256, and `rows` f32 input
/// rows of k values, on a CPU where [`supported`] holds. The input is quantized to 8 bits per
/// 256 values, as llama.cpp and candle do for this format: the result differs from the product
/// with the dequantized weight by that rounding.
pub fn product(q: &QTensor, bias: Option<&[f32]>, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    let (n, k) = q.shape().dims2()?;
    if !takes(q) || !supported() {
        candle_core::bail!("q4_K integer product: not a q4_K weight of whole super-blocks here");
    }
    if x.len() < rows * k || bias.is_some_and(|b| b.len() != n) {
        candle_core::bail!("q4_K integer product: input or bias does not match ({n}, {k})");
    }
    let data = q.data()?;
    let blocks = k / 256;
    let row_bytes = blocks * Q4K_BYTES;
    if data.len() != n * row_bytes {
        candle_core::bail!("q4_K integer product: {} bytes for ({n}, {k})", data.len());
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, blocks, bias);
        unreachable!("supported() is false off x86_64")
    }
    #[cfg(target_arch = "x86_64")]
    Ok(multiply(&data, (n, k), bias, x, rows))
}

#[cfg(target_arch = "x86_64")]
fn multiply(
    data: &[u8],
    (n, k): (usize, usize),
    bias: Option<&[f32]>,
    x: &[f32],
    rows: usize,
) -> Vec<f32> {
    use rayon::prelude::*;
    let blocks = k / 256;
    let row_bytes = blocks * Q4K_BYTES;
    let xq = Quantized::new(x, rows, k);
    let mut out: Vec<f32> = Vec::with_capacity(rows * n);
    let dst = super::packed::SendPtr(out.as_mut_ptr());
    thread_local! {
        /// Each worker's decoded panels, reused from task to task.
        static PANELS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    (0..n.div_ceil(TASK_ROWS)).into_par_iter().for_each(|task| {
        let dst = &dst;
        let r0 = task * TASK_ROWS;
        let width = TASK_ROWS.min(n - r0);
        let panels = width.div_ceil(PANEL_ROWS);
        PANELS.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let len = panels * blocks * BLOCK;
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            for p in 0..panels {
                let first = r0 + p * PANEL_ROWS;
                let count = PANEL_ROWS.min(n - first);
                let src = &data[first * row_bytes..][..count * row_bytes];
                let panel = &mut scratch[p * blocks * BLOCK..][..blocks * BLOCK];
                // SAFETY: `supported` held (checked above); whole super-blocks of `count` rows
                // and a panel of `blocks` records.
                unsafe { avx::decode_panel(src, count, blocks, panel) };
            }
            for c0 in (0..rows).step_by(X_TILE) {
                for p in 0..panels {
                    let first = r0 + p * PANEL_ROWS;
                    let count = PANEL_ROWS.min(n - first);
                    let panel = &scratch[p * blocks * BLOCK..][..blocks * BLOCK];
                    // SAFETY: as above; the quantized input has X_TILE rows from c0.
                    let sums = unsafe { avx::tile(panel, &xq, c0, blocks) };
                    for (c, row) in sums.iter().enumerate() {
                        if c0 + c >= rows {
                            break;
                        }
                        for (i, &v) in row[..count].iter().enumerate() {
                            let v = v + bias.map_or(0.0, |b| b[first + i]);
                            // SAFETY: row c0 + c < rows, column first + i < n: inside the
                            // (rows, n) buffer; no other task writes columns r0..r0 + width.
                            unsafe { dst.0.add((c0 + c) * n + first + i).write(v) };
                        }
                    }
                }
            }
        })
    });
    // SAFETY: the tasks covered every column of every row.
    unsafe { out.set_len(rows * n) };
    out
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::super::quant::transpose8;
    use super::*;
    use std::arch::x86_64::*;

    /// Scale and minimum of sub-block j (6 bits each) from a q4_K block's 12 packed bytes, as
    /// ggml's `get_scale_min_k4`.
    fn scale_min(scales: &[u8], j: usize) -> (u8, u8) {
        if j < 4 {
            (scales[j] & 63, scales[j + 4] & 63)
        } else {
            (
                (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
                (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
            )
        }
    }

    /// Decodes `count` (up to 8) rows of q4_K super-blocks into a panel of `blocks` records;
    /// missing rows are zero (scales 0), so their lanes compute 0.
    ///
    /// # Safety
    /// AVX2 and F16C must be available; `src` is `count` rows of `blocks` 144-byte super-blocks,
    /// `panel` `blocks` records.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn decode_panel(src: &[u8], count: usize, blocks: usize, panel: &mut [u8]) {
        assert!(count <= PANEL_ROWS && src.len() >= count * blocks * Q4K_BYTES);
        assert!(panel.len() >= blocks * BLOCK);
        let f16 = |lo: u8, hi: u8| {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                u16::from_le_bytes([lo, hi]) as i32,
            )))
        };
        let low = _mm256_set1_epi8(0x0F);
        for b in 0..blocks {
            let rec = &mut panel[b * BLOCK..][..BLOCK];
            let mut d = [0f32; 8];
            let mut dmin = [0f32; 8];
            let mut sc = [[0i16; 16]; 8];
            let mut mins = [[0i16; 16]; 4];
            // Per pair of sub-blocks, each row's 32 bytes of nibbles (low: sub-block 2 * pair,
            // high: 2 * pair + 1), as eight i32 lanes of four values.
            let mut nibbles = [[_mm256_setzero_si256(); 8]; 4];
            for r in 0..count {
                let block = &src[(r * blocks + b) * Q4K_BYTES..][..Q4K_BYTES];
                d[r] = f16(block[0], block[1]);
                dmin[r] = f16(block[2], block[3]);
                let scales = &block[4..16];
                for j in 0..8 {
                    let (s, m) = scale_min(scales, j);
                    sc[j][2 * r] = s as i16;
                    sc[j][2 * r + 1] = s as i16;
                    mins[j / 2][2 * r + j % 2] = m as i16;
                }
                for (pair, lanes) in nibbles.iter_mut().enumerate() {
                    // SAFETY: bytes 16 + 32 * pair .. + 32 of the 144-byte block.
                    lanes[r] =
                        unsafe { _mm256_loadu_si256(block.as_ptr().add(16 + 32 * pair).cast()) };
                }
            }
            for (pair, lanes) in nibbles.iter().enumerate() {
                for half in 0..2 {
                    let values: [__m256; 8] = std::array::from_fn(|r| {
                        let v = if half == 0 {
                            _mm256_and_si256(lanes[r], low)
                        } else {
                            _mm256_and_si256(_mm256_srli_epi16::<4>(lanes[r]), low)
                        };
                        _mm256_castsi256_ps(v)
                    });
                    // Row r's group g (lane g) to vector g's lane r.
                    let groups = transpose8(values);
                    let j = 2 * pair + half;
                    for (g, v) in groups.iter().enumerate() {
                        // SAFETY: bytes j * 256 + g * 32 .. + 32 of the record.
                        unsafe {
                            _mm256_storeu_si256(
                                rec.as_mut_ptr().add(j * 256 + g * 32).cast(),
                                _mm256_castps_si256(*v),
                            )
                        };
                    }
                }
            }
            let put = |rec: &mut [u8], at: usize, bytes: &[u8]| {
                rec[at..at + bytes.len()].copy_from_slice(bytes);
            };
            for (j, s) in sc.iter().enumerate() {
                let bytes: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
                put(rec, SCALES + 32 * j, &bytes);
            }
            for (p, m) in mins.iter().enumerate() {
                let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
                put(rec, MINS + 32 * p, &bytes);
            }
            let bytes: Vec<u8> = d.iter().flat_map(|v| v.to_le_bytes()).collect();
            put(rec, D, &bytes);
            let bytes: Vec<u8> = dmin.iter().flat_map(|v| v.to_le_bytes()).collect();
            put(rec, DMIN, &bytes);
        }
    }

    /// The products of a panel's eight rows with input rows c0 .. c0 + 4: `[c][row]`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `panel` holds `blocks` records and the input has four
    /// rows from c0 of `blocks` super-blocks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        panel: &[u8],
        x: &Quantized,
        c0: usize,
        blocks: usize,
    ) -> [[f32; 8]; X_TILE] {
        let k = x.k;
        assert!(panel.len() >= blocks * BLOCK && blocks * 256 == k);
        assert!(x.q.len() >= (c0 + X_TILE) * k && x.d.len() >= (c0 + X_TILE) * blocks);
        let xs: [*const i8; X_TILE] = std::array::from_fn(|c| x.q[(c0 + c) * k..].as_ptr());
        let sums: [*const i16; X_TILE] =
            std::array::from_fn(|c| x.sums[(c0 + c) * blocks * 8..].as_ptr());
        let mut acc = [_mm256_setzero_ps(); X_TILE];
        for b in 0..blocks {
            // SAFETY (every load below): inside record b of the panel, the input's rows c0 ..
            // c0 + 4 at values b * 256 .. + 256, and their sums b * 8 .. + 8 (checked above).
            let rec = unsafe { panel.as_ptr().add(b * BLOCK) };
            let mut whole = [_mm256_setzero_si256(); X_TILE];
            for j in 0..8 {
                let mut part = [_mm256_setzero_si256(); X_TILE];
                for g in 0..8 {
                    let w = unsafe { _mm256_loadu_si256(rec.add(j * 256 + g * 32).cast()) };
                    for c in 0..X_TILE {
                        let four = unsafe {
                            xs[c]
                                .add(b * 256 + j * 32 + g * 4)
                                .cast::<i32>()
                                .read_unaligned()
                        };
                        // At most 8 x 2 x 15 x 127 = 30480: no i16 saturates.
                        part[c] = _mm256_add_epi16(
                            part[c],
                            _mm256_maddubs_epi16(w, _mm256_set1_epi32(four)),
                        );
                    }
                }
                let scale = unsafe { _mm256_loadu_si256(rec.add(SCALES + 32 * j).cast()) };
                for c in 0..X_TILE {
                    whole[c] = _mm256_add_epi32(whole[c], _mm256_madd_epi16(part[c], scale));
                }
            }
            let d = unsafe { _mm256_loadu_ps(rec.add(D).cast()) };
            let dmin = unsafe { _mm256_loadu_ps(rec.add(DMIN).cast()) };
            for c in 0..X_TILE {
                let mut m = _mm256_setzero_si256();
                for p in 0..4 {
                    let mins = unsafe { _mm256_loadu_si256(rec.add(MINS + 32 * p).cast()) };
                    let pair = unsafe { sums[c].add(b * 8 + 2 * p).cast::<i32>().read_unaligned() };
                    m = _mm256_add_epi32(m, _mm256_madd_epi16(mins, _mm256_set1_epi32(pair)));
                }
                let dx = _mm256_set1_ps(x.d[(c0 + c) * blocks + b]);
                acc[c] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(whole[c]), _mm256_mul_ps(d, dx), acc[c]);
                acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dmin, dx), acc[c]);
            }
        }
        let mut out = [[0f32; 8]; X_TILE];
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: eight floats.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The integer product is the product of the dequantized weight with the input rounded to
    /// 8 bits per 256 values: against the f32 product with the dequantized weight, within that
    /// rounding, for widths that leave partial panels and tasks, rows that leave a partial tile,
    /// a bias, and a zero input row.
    #[test]
    fn integer_products_match_the_dequantized_weight() {
        if !supported() {
            return;
        }
        let device = Device::Cpu;
        for (n, k, rows) in [(70, 512, 13), (8, 256, 4), (131, 768, 1)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
            let mut xs = Tensor::randn(0f32, 1.0, (rows, k), &device)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            xs[..k].iter_mut().for_each(|v| *v = 0.0);
            let x = Tensor::from_vec(xs.clone(), (rows, k), &device).unwrap();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
            assert!(takes(&q));
            let dq = q.dequantize(&device).unwrap();
            let reference = |x: &Tensor| super::super::quant::reference_product(x, &dq, &bias);
            let want = reference(&x);
            let got = product(&q, Some(&bias), &xs, rows).unwrap();
            assert_eq!(got.len(), want.len());
            // Against the exact product, within the input's rounding: at most half a step
            // (amax / 254) per value, about 0.0075 sqrt(k) as a standard deviation here.
            let spread = (k as f32).sqrt();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 0.05 * spread,
                    "({n}, {k}) [{i}]: {a} vs {b}"
                );
            }
            // Against the product with that rounding done in f32: the same up to float sums.
            let quantized = Quantized::new(&xs, rows, k);
            let rounded: Vec<f32> = (0..rows * k)
                .map(|i| quantized.q[i] as f32 * quantized.d[i / 256])
                .collect();
            let rounded = Tensor::from_vec(rounded, (rows, k), &device).unwrap();
            let exact = reference(&rounded);
            for (i, (a, b)) in got.iter().zip(&exact).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                    "({n}, {k}) [{i}]: {a} vs {b}"
                );
            }
            // Row 0 was zero: exactly the bias.
            assert_eq!(&got[..n], bias.as_slice());
        }
        let q8 = QTensor::quantize(
            &Tensor::zeros((8, 256), candle_core::DType::F32, &device).unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        assert!(!takes(&q8));
        assert!(product(&q8, None, &[0.0; 256], 1).is_err());
    }
}
