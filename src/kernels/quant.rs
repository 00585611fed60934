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

/// Fewer input rows than this go to candle's quantized kernel: dequantizing a weight costs about
/// as much as multiplying it by a few rows, so it only pays once there are several.
pub const MIN_ROWS_FOR_PANELS: usize = 8;

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
    use super::packed::{pack_columns_into, product, row_tiles, Input, Panels, SendPtr, PANEL};
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
    let tasks = n.div_ceil(TASK_COLUMNS);
    (0..tasks)
        .into_par_iter()
        .try_for_each(|task| -> Result<()> {
            let dst = &dst;
            let c0 = task * TASK_COLUMNS;
            let cols = TASK_COLUMNS.min(n - c0);
            let mut panels = vec![0f32; cols.div_ceil(PANEL) * PANEL * k];
            let mut row = vec![0f32; k];
            for c in 0..cols {
                decode(&data[(c0 + c) * row_size..][..row_size], &mut row)?;
                pack_columns_into(&mut panels, k, c..c + 1, |_| &row);
            }
            let panels = Panels {
                data: &panels,
                k,
                n: cols,
                bias: bias.map(|b| &b[c0..c0 + cols]),
            };
            // SAFETY: this task writes only columns c0..c0 + cols of the (rows, n) buffer, which
            // outlives the parallel loop; the other tasks write other columns.
            unsafe { product(&panels, 0..cols.div_ceil(PANEL), &input, dst.0.add(c0), n) };
            Ok(())
        })?;
    // SAFETY: the tasks covered every column, and with k > 0 the first depth slice of each panel
    // wrote its columns of every row: all rows * n values.
    unsafe { out.set_len(rows * n) };
    Ok(out)
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
            let want = x
                .matmul(&dq.t().unwrap())
                .unwrap()
                .broadcast_add(&Tensor::new(bias.as_slice(), &device).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
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
