//! Quantized weights: the GGML block formats candle's `quantized` module multiplies with SIMD on
//! the CPU (and on CUDA and Metal), as llama.cpp stores them in GGUF files.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Result};
use serde::{Deserialize, Serialize};

/// A weight format to quantize linear layers to (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// 8.5 bits per weight: blocks of 32 with one f16 scale.
    #[value(name = "q8_0")]
    Q8_0,
    /// 5.5 bits per weight: blocks of 32.
    #[value(name = "q5_0")]
    Q5_0,
    /// 4.5 bits per weight: blocks of 32.
    #[value(name = "q4_0")]
    Q4_0,
    /// 6.56 bits per weight: super-blocks of 256 (k-quant).
    #[value(name = "q6_k")]
    Q6K,
    /// 5.5 bits per weight: super-blocks of 256 (k-quant).
    #[value(name = "q5_k")]
    Q5K,
    /// 4.5 bits per weight: super-blocks of 256 (k-quant).
    #[value(name = "q4_k")]
    Q4K,
}

impl Quantization {
    pub fn name(self) -> &'static str {
        match self {
            Quantization::Q8_0 => "q8_0",
            Quantization::Q5_0 => "q5_0",
            Quantization::Q4_0 => "q4_0",
            Quantization::Q6K => "q6_k",
            Quantization::Q5K => "q5_k",
            Quantization::Q4K => "q4_k",
        }
    }

    pub fn ggml(self) -> GgmlDType {
        match self {
            Quantization::Q8_0 => GgmlDType::Q8_0,
            Quantization::Q5_0 => GgmlDType::Q5_0,
            Quantization::Q4_0 => GgmlDType::Q4_0,
            Quantization::Q6K => GgmlDType::Q6K,
            Quantization::Q5K => GgmlDType::Q5K,
            Quantization::Q4K => GgmlDType::Q4K,
        }
    }

    /// The format of ours a GGML block format is, if it is one.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        [
            Quantization::Q8_0,
            Quantization::Q5_0,
            Quantization::Q4_0,
            Quantization::Q6K,
            Quantization::Q5K,
            Quantization::Q4K,
        ]
        .into_iter()
        .find(|q| q.ggml() == dtype)
    }

    /// The format a row of `in_dim` weights gets: this one when its blocks fit the row, else
    /// llama.cpp's fallback for the k-quants (q4_k to q5_0, q5_k to q5_1's cousin q5_0, q6_k to
    /// q8_0), else none (the layer stays in float).
    pub fn for_row(self, in_dim: usize) -> Option<GgmlDType> {
        let fits = |d: GgmlDType| in_dim.is_multiple_of(d.block_size());
        let own = self.ggml();
        if fits(own) {
            return Some(own);
        }
        let fallback = match self {
            Quantization::Q4K | Quantization::Q5K => GgmlDType::Q5_0,
            Quantization::Q6K => GgmlDType::Q8_0,
            _ => return None,
        };
        fits(fallback).then_some(fallback)
    }
}

/// The name llama.cpp gives a GGML format (for messages).
pub fn ggml_name(dtype: GgmlDType) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// Bytes one row of a 2-D quantized tensor takes (its blocks).
fn row_bytes(q: &QTensor) -> Result<usize> {
    let (rows, cols) = q.shape().dims2()?;
    let dtype = q.dtype();
    if !cols.is_multiple_of(dtype.block_size()) {
        candle_core::bail!(
            "{cols} columns do not fill blocks of {}",
            dtype.block_size()
        );
    }
    let bytes = cols / dtype.block_size() * dtype.type_size();
    debug_assert_eq!(bytes * rows, q.storage_size_in_bytes());
    Ok(bytes)
}

/// Builds a 2-D quantized tensor of `rows` rows from raw blocks, on `device`.
fn from_blocks(
    bytes: Vec<u8>,
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Result<QTensor> {
    let storage = QStorage::from_data(Cow::Owned(bytes), device, dtype)?;
    QTensor::new(storage, (rows, cols))
}

/// The rows of a 2-D quantized tensor reordered: row r of the result is row `order[r]` of `q`.
/// Quantized blocks never cross rows, so this moves bytes and changes no value.
pub fn permute_rows(q: &QTensor, order: &[usize]) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let mut seen = vec![false; rows];
    for &r in order {
        if r >= rows || std::mem::replace(&mut seen[r], true) {
            candle_core::bail!("a row order for {rows} rows must name each of them once");
        }
    }
    if order.len() != rows {
        candle_core::bail!("a row order for {rows} rows must name each of them once");
    }
    let size = row_bytes(q)?;
    let data = q.data()?;
    let mut out = Vec::with_capacity(data.len());
    for &r in order {
        out.extend_from_slice(&data[r * size..(r + 1) * size]);
    }
    from_blocks(out, q.dtype(), rows, cols, &q.device())
}

/// Quantized tensors of one format and width stacked along their rows (as `Tensor::cat(_, 0)`),
/// or `None` when their formats or widths differ.
pub fn concat_rows(parts: &[QTensor]) -> Result<Option<QTensor>> {
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let (_, cols) = first.shape().dims2()?;
    let mut rows = 0;
    let mut out = Vec::new();
    for q in parts {
        let (r, c) = q.shape().dims2()?;
        if c != cols || q.dtype() != first.dtype() {
            return Ok(None);
        }
        row_bytes(q)?;
        out.extend_from_slice(&q.data()?);
        rows += r;
    }
    from_blocks(out, first.dtype(), rows, cols, &first.device()).map(Some)
}

/// Columns (weight rows) one task dequantizes and multiplies: 4 panels of 16.
const TASK_COLUMNS: usize = 4 * super::packed::PANEL;

/// The fewest input rows for which [`product`] beats candle's quantized kernel, by format.
/// Measured on the 1-block LLaDA-8B slice (`dlm-tui bench --forward-only --length L`, both paths
/// built in turn): at q8_0 the panels won at every length (1 row: 118 against 127 ms; 8 rows:
/// 159 against 939 ms: candle's q8_0 product converts the scales again for every output); at
/// q4_k candle's kernel won up to 8 rows (152 against 172 ms) and lost from 12 (196 against
/// 203 ms; 16 rows: 239 against 258 ms). Formats not measured take q4_k's threshold.
pub fn min_rows_for_panels(dtype: GgmlDType) -> usize {
    match dtype {
        GgmlDType::Q8_0 => 1,
        _ => 12,
    }
}

/// Whether [`product`] runs here: the packed f32 kernel's CPUs (AVX2 and FMA).
pub fn panels_supported() -> bool {
    super::packed::PackedWeight::supported()
}

/// `x @ W^T (+ bias)` for a quantized weight W (out_dim, in_dim) on the CPU and `rows` input
/// rows of `in_dim` f32 each: W is dequantized 64 rows at a time, by candle's own GGML decoders,
/// into the panels of the packed f32 kernel ([`super::packed`]), which multiplies them with every
/// input row while they sit in cache. The weight stays quantized in memory; each forward pass
/// reads it once. candle's quantized matmul (one 32-wide dot product per output, each
/// converting the blocks' f16 scales again) ran 7x slower than f32 on the embedded model.
pub fn product(q: &QTensor, bias: Option<&[f32]>, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    use super::packed::{product, row_tiles, Input, Panels, SendPtr, PANEL};
    use rayon::prelude::*;
    let (n, k) = q.shape().dims2()?;
    if k == 0 {
        candle_core::bail!("quantized product: a weight of depth 0");
    }
    if x.len() < rows * k || bias.is_some_and(|b| b.len() != n) {
        candle_core::bail!("quantized product: input or bias does not match ({n}, {k})");
    }
    let dtype = q.dtype();
    let data = q.data()?;
    let row_size = row_bytes(q)?;
    let decode = decoder(dtype)?;
    let mut out: Vec<f32> = Vec::with_capacity(rows * n);
    let dst = SendPtr(out.as_mut_ptr());
    let tiles = row_tiles(rows);
    let input = Input {
        x,
        stride: k,
        tiles: &tiles,
    };
    let block = dtype.block_size();
    let block_bytes = dtype.type_size();
    #[cfg(target_arch = "x86_64")]
    let f16c = std::arch::is_x86_feature_detected!("f16c");
    thread_local! {
        /// Each worker's panels, reused from task to task: a fresh 64 x 4096 buffer per task
        /// was a fresh mmap (zeroed pages) per task, 2 GB of page clearing per pass over
        /// LLaDA-8B's head.
        static PANELS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let tasks = n.div_ceil(TASK_COLUMNS);
    (0..tasks)
        .into_par_iter()
        .try_for_each(|task| -> Result<()> {
            let dst = &dst;
            let c0 = task * TASK_COLUMNS;
            let cols = TASK_COLUMNS.min(n - c0);
            PANELS.with(|scratch| -> Result<()> {
                let mut scratch = scratch.borrow_mut();
                let len = cols.div_ceil(PANEL) * PANEL * k;
                if scratch.len() < len {
                    scratch.resize(len, 0.0);
                }
                let panels = &mut scratch[..len];
                // Block by block, the 16 columns of a panel: the tile written (one block deep, 16
                // wide) stays in L1, where decoding whole rows and scattering them 16 floats
                // apart went through the whole panel once per column.
                let mut values = [0f32; 256];
                let mut columns = [0f32; 8 * 256];
                for p in 0..cols.div_ceil(PANEL) {
                    let panel = &mut panels[p * k * PANEL..][..k * PANEL];
                    let width = PANEL.min(cols - p * PANEL);
                    for b in 0..k / block {
                        let tile = &mut panel[b * block * PANEL..][..block * PANEL];
                        #[cfg(target_arch = "x86_64")]
                        if dtype == GgmlDType::Q8_0 && width == PANEL {
                            let at = |c: usize| (c0 + p * PANEL + c) * row_size + b * block_bytes;
                            let blocks: [&[u8]; PANEL] =
                                std::array::from_fn(|c| &data[at(c)..][..block_bytes]);
                            // SAFETY: `panels_supported` (AVX2, FMA; F16C comes with them on
                            // every such CPU and is checked) held for the caller to get here,
                            // each block is one whole q8_0 block and the tile 32 x 16 floats.
                            if std::arch::is_x86_feature_detected!("f16c") {
                                unsafe { avx::q8_0_tile(&blocks, tile) };
                                continue;
                            }
                        }
                        #[cfg(target_arch = "x86_64")]
                        if width == PANEL {
                            // Any other format: candle decodes each column's block into a row
                            // of its own, and 8 x 8 transposes lay them into the tile.
                            for half in 0..2 {
                                for c in 0..8 {
                                    let col = c0 + p * PANEL + half * 8 + c;
                                    let bytes =
                                        &data[col * row_size + b * block_bytes..][..block_bytes];
                                    let column = &mut columns[c * block..][..block];
                                    if dtype == GgmlDType::Q4K && f16c {
                                        // SAFETY: AVX2 and F16C are there (checked), a whole
                                        // 144-byte block and 256 floats.
                                        unsafe { avx::q4k_block(bytes, column) };
                                    } else {
                                        decode(bytes, column)?;
                                    }
                                }
                                // SAFETY: as above (AVX2); 8 rows of `block` floats, `block` a
                                // multiple of 8, and a tile of block x 16 floats.
                                unsafe { avx::transpose_into_tile(&columns, block, half, tile) };
                            }
                            continue;
                        }
                        for c in 0..PANEL {
                            if c >= width {
                                // Past the last column: zeros, never read back into the output.
                                for i in 0..block {
                                    tile[i * PANEL + c] = 0.0;
                                }
                                continue;
                            }
                            let row = (c0 + p * PANEL + c) * row_size;
                            let bytes = &data[row + b * block_bytes..][..block_bytes];
                            decode(bytes, &mut values[..block])?;
                            for (i, &v) in values[..block].iter().enumerate() {
                                tile[i * PANEL + c] = v;
                            }
                        }
                    }
                }
                let panels = Panels {
                    data: panels,
                    k,
                    n: cols,
                    bias: bias.map(|b| &b[c0..c0 + cols]),
                };
                // SAFETY: this task writes only columns c0..c0 + cols of the (rows, n) buffer,
                // which outlives the parallel loop; the other tasks write other columns.
                unsafe { product(&panels, 0..cols.div_ceil(PANEL), &input, dst.0.add(c0), n) };
                Ok(())
            })
        })?;
    // SAFETY: the tasks covered every column, and with k > 0 the first depth slice of each panel
    // wrote its columns of every row: all rows * n values.
    unsafe { out.set_len(rows * n) };
    Ok(out)
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx::transpose8;

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// One q8_0 block (an f16 scale, 32 int8) of each of a panel's 16 columns, decoded into the
    /// panel's 32 x 16 tile (row i holds value i of every column): 8 columns at a time, each
    /// group of 8 values converted in registers and the 8 x 8 square transposed before it is
    /// stored, so that every store is 8 contiguous floats.
    ///
    /// # Safety
    /// AVX2 and F16C must be available; every block must be 34 bytes, the tile 512 floats.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn q8_0_tile(blocks: &[&[u8]; 16], tile: &mut [f32]) {
        assert!(tile.len() >= 32 * 16 && blocks.iter().all(|b| b.len() >= 34));
        for half in 0..2 {
            let mut scale = [_mm256_setzero_ps(); 8];
            for (c, s) in scale.iter_mut().enumerate() {
                let block = blocks[half * 8 + c];
                let bits = u16::from_le_bytes([block[0], block[1]]);
                *s = _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))));
            }
            for g in 0..4 {
                let mut v = [_mm256_setzero_ps(); 8];
                for (c, v) in v.iter_mut().enumerate() {
                    // SAFETY: bytes 2 + 8g .. 10 + 8g of a 34-byte block.
                    let q = unsafe {
                        _mm_loadl_epi64(blocks[half * 8 + c].as_ptr().add(2 + 8 * g).cast())
                    };
                    *v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), scale[c]);
                }
                let t = transpose8(v);
                for (j, row) in t.iter().enumerate() {
                    // SAFETY: row 8g + j of the tile, floats 8 * half .. 8 * half + 8.
                    unsafe {
                        _mm256_storeu_ps(tile.as_mut_ptr().add((8 * g + j) * 16 + 8 * half), *row)
                    };
                }
            }
        }
    }

    /// Eight decoded columns (`columns`: 8 rows of `block` floats) laid into columns
    /// 8 * half .. 8 * half + 8 of a block x 16 tile.
    ///
    /// # Safety
    /// AVX2 must be available; `block` a multiple of 8, `columns` 8 * block floats, the tile
    /// block * 16.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_into_tile(
        columns: &[f32],
        block: usize,
        half: usize,
        tile: &mut [f32],
    ) {
        assert!(block.is_multiple_of(8) && columns.len() >= 8 * block && tile.len() >= block * 16);
        for g in 0..block / 8 {
            // SAFETY: row c's floats 8g .. 8g + 8, inside the checked slice.
            let v: [__m256; 8] = std::array::from_fn(|c| unsafe {
                _mm256_loadu_ps(columns.as_ptr().add(c * block + 8 * g))
            });
            for (j, row) in transpose8(v).iter().enumerate() {
                // SAFETY: tile row 8g + j, floats 8 * half .. 8 * half + 8.
                unsafe {
                    _mm256_storeu_ps(tile.as_mut_ptr().add((8 * g + j) * 16 + 8 * half), *row)
                };
            }
        }
    }

    /// One q4_K super-block (f16 d and dmin, 12 bytes of 6-bit scales and mins for its eight
    /// sub-blocks of 32, 128 bytes of nibbles) decoded into 256 floats: value l of sub-block j
    /// is d * scale_j * q - dmin * min_j, as ggml's `dequantize_row_q4_K`. Plain loops that
    /// compile to AVX2 here (candle's generic build decodes with SSE2).
    ///
    /// # Safety
    /// AVX2 and F16C must be available.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn q4k_block(bytes: &[u8], out: &mut [f32]) {
        let f16 = |lo: u8, hi: u8| {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                u16::from_le_bytes([lo, hi]) as i32,
            )))
        };
        let (d, dmin) = (f16(bytes[0], bytes[1]), f16(bytes[2], bytes[3]));
        let scales: &[u8; 12] = bytes[4..16].try_into().expect("144-byte block");
        let qs: &[u8; 128] = bytes[16..144].try_into().expect("144-byte block");
        let out: &mut [f32; 256] = (&mut out[..256]).try_into().expect("256 floats");
        let scale_min = |j: usize| -> (f32, f32) {
            let (sc, m) = if j < 4 {
                (scales[j] & 63, scales[j + 4] & 63)
            } else {
                (
                    (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
                    (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
                )
            };
            (d * sc as f32, dmin * m as f32)
        };
        for pair in 0..4 {
            let q = &qs[32 * pair..32 * pair + 32];
            let (d1, m1) = scale_min(2 * pair);
            let (d2, m2) = scale_min(2 * pair + 1);
            let (low, high) = out[64 * pair..64 * pair + 64].split_at_mut(32);
            for ((lo, hi), &q) in low.iter_mut().zip(high.iter_mut()).zip(q) {
                *lo = d1 * (q & 0xF) as f32 - m1;
                *hi = d2 * (q >> 4) as f32 - m2;
            }
        }
    }

    /// The 8 x 8 transpose of eight rows of 8 floats (or of any 32-bit lanes, cast).
    #[target_feature(enable = "avx2")]
    pub(crate) fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }
}

/// The function that decodes one row of `dtype` blocks into f32 (candle's `to_float`).
/// Decodes one row of blocks (as stored) into f32.
type RowDecoder = fn(&[u8], &mut [f32]) -> Result<()>;

fn decoder(dtype: GgmlDType) -> Result<RowDecoder> {
    use candle_core::quantized::k_quants::*;
    Ok(match dtype {
        GgmlDType::Q4_0 => decode::<BlockQ4_0>,
        GgmlDType::Q4_1 => decode::<BlockQ4_1>,
        GgmlDType::Q5_0 => decode::<BlockQ5_0>,
        GgmlDType::Q5_1 => decode::<BlockQ5_1>,
        GgmlDType::Q8_0 => decode::<BlockQ8_0>,
        GgmlDType::Q2K => decode::<BlockQ2K>,
        GgmlDType::Q3K => decode::<BlockQ3K>,
        GgmlDType::Q4K => decode::<BlockQ4K>,
        GgmlDType::Q5K => decode::<BlockQ5K>,
        GgmlDType::Q6K => decode::<BlockQ6K>,
        other => candle_core::bail!("no panel decoder for {other:?}"),
    })
}

/// Decodes one row of `T` blocks (its bytes as stored) into `out`.
fn decode<T: candle_core::quantized::k_quants::GgmlType>(
    bytes: &[u8],
    out: &mut [f32],
) -> Result<()> {
    let size = std::mem::size_of::<T>();
    let blocks = bytes.len() / size;
    if blocks * size != bytes.len() || blocks * T::BLCK_SIZE != out.len() {
        candle_core::bail!("a row of {} bytes is not {} values", bytes.len(), out.len());
    }
    if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0 {
        // SAFETY: the bytes are `blocks` whole blocks of a plain-data type (integers and f16),
        // suitably aligned, and live as long as this borrow.
        let blocks: &[T] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), blocks) };
        T::to_float(blocks, out);
    } else {
        let mut aligned = vec![T::zeros(); blocks];
        // SAFETY: as above; the copy has the alignment of T.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), aligned.as_mut_ptr().cast(), bytes.len())
        };
        T::to_float(&aligned, out);
    }
    Ok(())
}

/// `x @ w^T + bias` in candle's own f32 arithmetic: what the products here are tested against.
#[cfg(test)]
pub(super) fn reference_product(
    x: &candle_core::Tensor,
    w: &candle_core::Tensor,
    bias: &[f32],
) -> Vec<f32> {
    let bias = candle_core::Tensor::new(bias, x.device()).unwrap();
    let out = x.matmul(&w.t().unwrap()).unwrap();
    let out = out.broadcast_add(&bias).unwrap();
    out.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_do_not_fit_a_super_block_fall_back() {
        assert_eq!(Quantization::Q4K.for_row(4096), Some(GgmlDType::Q4K));
        // The embedded model's MLP rows (704 = 22 x 32) fit blocks of 32, not of 256.
        assert_eq!(Quantization::Q4K.for_row(704), Some(GgmlDType::Q5_0));
        assert_eq!(Quantization::Q6K.for_row(704), Some(GgmlDType::Q8_0));
        assert_eq!(Quantization::Q8_0.for_row(704), Some(GgmlDType::Q8_0));
        assert_eq!(Quantization::Q8_0.for_row(100), None);
        assert_eq!(ggml_name(GgmlDType::Q4K), "q4k");
    }

    #[test]
    fn row_moves_and_stacks_keep_every_value() {
        use candle_core::Tensor;
        let device = Device::Cpu;
        let w = Tensor::arange(0f32, 4.0 * 64.0, &device)
            .unwrap()
            .reshape((4, 64))
            .unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let dq = q.dequantize(&device).unwrap();
        let moved = permute_rows(&q, &[2, 0, 3, 1])
            .unwrap()
            .dequantize(&device)
            .unwrap();
        for (r, from) in [2usize, 0, 3, 1].into_iter().enumerate() {
            assert_eq!(
                moved.get(r).unwrap().to_vec1::<f32>().unwrap(),
                dq.get(from).unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert!(permute_rows(&q, &[0, 0, 1, 2]).is_err());
        let again = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let both = concat_rows(&[q, again]).unwrap().unwrap();
        assert_eq!(both.shape().dims(), [8, 64]);
        let back = both.dequantize(&device).unwrap();
        assert_eq!(
            back.narrow(0, 4, 4).unwrap().to_vec2::<f32>().unwrap(),
            dq.to_vec2::<f32>().unwrap()
        );
        let other = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(concat_rows(&[q, other]).unwrap().is_none());
    }

    /// The panel product is the product with the dequantized weight (same values, f32
    /// arithmetic), for every block format, widths that leave partial panels and tasks, and a
    /// bias.
    #[test]
    fn panel_products_multiply_the_dequantized_weight() {
        use candle_core::Tensor;
        if !panels_supported() {
            return;
        }
        let device = Device::Cpu;
        let (n, k, rows) = (70, 512, 13);
        let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
        let x = Tensor::randn(0f32, 1.0, (rows, k), &device).unwrap();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let dq = q.dequantize(&device).unwrap();
            let want = reference_product(&x, &dq, &bias);
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = product(&q, Some(&bias), &xs, rows).unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                    "{dtype:?} [{i}]: {a} vs {b}"
                );
            }
        }
    }
}
