//! Building blocks the architectures share: linear layers created for training or loaded from a
//! file ([`linear`]), and prepared once for inference on the CPU ([`Dense`]).

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use crate::kernels::packed::PackedWeight;
use crate::kernels::quant::Quantization;

/// A linear layer initialised N(0, std) when created for training (hints are ignored when the
/// weights come from a file).
pub(crate) fn linear(
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    std: f64,
    vb: VarBuilder,
) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    let bias = if bias {
        Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// Initial standard deviation of weights (OLMo/LLaDA's normal init), and of the projections that
/// write into the residual stream, scaled down by depth (GPT-2).
pub(crate) const INIT_STD: f64 = 0.02;

/// A linear layer: as stored, (out, in) (training's variables), or prepared once at load for
/// inference on the CPU.
///
/// candle hands `x @ W^T` to the `gemm` crate, which computes the row-major product transposed
/// and so treats W as its left operand: stored as (out, in), that operand is not column-major and
/// gemm packs all of W into a scratch buffer on every call. A cached pass multiplies only 32 rows,
/// so the packing cost about as much as the arithmetic (a quarter of a dual-cached pass's time in
/// `perf`). With AVX2 and FMA the weight is packed once for our own kernel ([`PackedWeight`]);
/// elsewhere it is transposed, which gemm reads in place for short inputs. BENCHMARKS.md has the
/// timings.
#[derive(Debug, Clone)]
pub(crate) enum Dense {
    Stored(Linear),
    Packed(PackedWeight),
    Transposed {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    /// Quantized blocks multiplied by candle's quantized kernels (`--quantize`).
    Quantized {
        matmul: QMatMul,
        bias: Option<Tensor>,
        dtype: GgmlDType,
        bytes: usize,
    },
    /// Layers side by side, their outputs concatenated: fused projections whose weights came in
    /// different formats (a GGUF file may keep q/k in q4_K and v in q6_K).
    Stack(Vec<Dense>),
}

/// What quantizing one layer did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantized {
    /// The format used (`None`: its rows fit no block, it stayed in float).
    pub dtype: Option<GgmlDType>,
    /// Bytes of the weight before and after.
    pub before: usize,
    pub after: usize,
}

impl Dense {
    /// `linear` prepared for inference ([`Self::prepare`]).
    pub(crate) fn prepared(linear: Linear) -> Result<Self> {
        let mut dense = Dense::Stored(linear);
        dense.prepare()?;
        Ok(dense)
    }

    /// A layer of quantized blocks (e.g. read from a GGUF file) with an optional float bias.
    pub(crate) fn from_qtensor(qtensor: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let dtype = qtensor.dtype();
        let bytes = qtensor.storage_size_in_bytes();
        Ok(Dense::Quantized {
            matmul: QMatMul::from_qtensor(qtensor)?,
            bias: bias.map(|b| b.to_dtype(DType::F32)).transpose()?,
            dtype,
            bytes,
        })
    }

    /// Bytes the weight takes (quantized layers: their blocks).
    pub(crate) fn weight_bytes(&self) -> Result<usize> {
        Ok(match self {
            Dense::Quantized { bytes, .. } => *bytes,
            Dense::Stack(parts) => parts
                .iter()
                .map(Dense::weight_bytes)
                .sum::<Result<usize>>()?,
            other => match other.stored()? {
                Some((w, _)) => w.elem_count() * w.dtype().size_in_bytes(),
                None => 0,
            },
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Stack(parts) => {
                let outs = parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&outs, candle_core::D::Minus1)?)
            }
            Dense::Stored(linear) => Ok(linear.forward(x)?),
            Dense::Packed(packed) => Ok(packed.forward(x)?),
            Dense::Quantized { matmul, bias, .. } => {
                if let Some(y) = quantized_on_panels(matmul, bias.as_ref(), x)? {
                    return Ok(y);
                }
                let y = matmul.forward(&x.contiguous()?)?;
                Ok(match bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                })
            }
            Dense::Transposed { weight_t, bias } => {
                let (rows, width) = weight_t.dims2()?;
                let dims = x.dims();
                let batch: usize = dims[..dims.len() - 1].iter().product();
                let mut out_dims = dims.to_vec();
                *out_dims.last_mut().expect("x has a last dimension") = width;
                let y = x.reshape((batch, rows))?.matmul(weight_t)?;
                let y = match bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                };
                Ok(y.reshape(out_dims)?)
            }
        }
    }

    /// Packs (or transposes) a stored weight for inference (a no-op once done). Only f32 weights
    /// on the CPU: elsewhere the layout does not reach `gemm` (CUDA's cuBLAS takes either layout
    /// as it is, and half-precision CPU weights are left as they were measured).
    pub(crate) fn prepare(&mut self) -> Result<()> {
        if let Dense::Stored(linear) = self {
            let weight = linear.weight();
            if weight.device().is_cpu() && weight.dtype() == DType::F32 {
                *self = if PackedWeight::supported() {
                    Dense::Packed(PackedWeight::new(weight, linear.bias())?)
                } else {
                    Dense::Transposed {
                        weight_t: transpose_f32(weight)?,
                        bias: linear.bias().cloned(),
                    }
                };
            }
        }
        Ok(())
    }
}

impl Dense {
    /// The weight, (out, in), and the bias, whatever form the layer is in now (`None` once
    /// quantized).
    fn stored(&self) -> Result<Option<(Tensor, Option<Tensor>)>> {
        Ok(match self {
            Dense::Stored(linear) => Some((linear.weight().clone(), linear.bias().cloned())),
            Dense::Packed(packed) => Some(packed.unpack()?),
            Dense::Transposed { weight_t, bias } => Some((transpose_f32(weight_t)?, bias.clone())),
            Dense::Quantized { .. } | Dense::Stack(_) => None,
        })
    }

    /// Quantizes the weight to `to` (or its fallback for rows that do not fit its blocks; the
    /// bias stays in f32). A layer whose rows fit no block stays as it was.
    pub(crate) fn quantize(&mut self, to: Quantization) -> Result<Quantized> {
        let Some((weight, bias)) = self.stored()? else {
            let bytes = self.weight_bytes()?;
            let dtype = match self {
                Dense::Quantized { dtype, .. } => Some(*dtype),
                _ => None,
            };
            return Ok(Quantized {
                dtype,
                before: bytes,
                after: bytes,
            });
        };
        let (out_dim, in_dim) = weight.dims2()?;
        let before = out_dim * in_dim * weight.dtype().size_in_bytes();
        let Some(dtype) = to.for_row(in_dim) else {
            return Ok(Quantized {
                dtype: None,
                before,
                after: before,
            });
        };
        let qtensor = QTensor::quantize(&weight.to_dtype(DType::F32)?, dtype)?;
        let bytes = qtensor.storage_size_in_bytes();
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        *self = Dense::Quantized {
            matmul: QMatMul::from_qtensor(qtensor)?,
            bias,
            dtype,
            bytes,
        };
        Ok(Quantized {
            dtype: Some(dtype),
            before,
            after: bytes,
        })
    }
}

/// `x @ W^T + bias` through [`crate::kernels::quant::product`] (quantized blocks dequantized into
/// the packed f32 kernel's panels), where it runs: an f32 input of several rows on a CPU with
/// AVX2 and FMA. `None`: candle's quantized matmul takes it.
fn quantized_on_panels(
    matmul: &QMatMul,
    bias: Option<&Tensor>,
    x: &Tensor,
) -> Result<Option<Tensor>> {
    use crate::kernels::q4k;
    use crate::kernels::quant::{min_rows_for_panels, panels_supported, product};
    let QMatMul::QTensor(q) = matmul else {
        return Ok(None);
    };
    let dims = x.dims().to_vec();
    let Some((&k, outer)) = dims.split_last() else {
        return Ok(None);
    };
    let rows: usize = outer.iter().product();
    let integer = q4k::takes(q) && q4k::supported();
    let min_rows = if integer {
        q4k::MIN_ROWS
    } else {
        min_rows_for_panels(q.dtype())
    };
    if !panels_supported()
        || !x.device().is_cpu()
        || x.dtype() != DType::F32
        || rows < min_rows
        || !q.device().is_cpu()
    {
        return Ok(None);
    }
    let (n, _) = q.shape().dims2()?;
    let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
    let x = x.contiguous()?;
    let out = {
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Ok(None);
        };
        let src = crate::kernels::ops::f32_slice("dlm-quantized-linear", cpu, layout, "the input")?;
        if integer {
            q4k::product(q, bias.as_deref(), src, rows)?
        } else {
            product(q, bias.as_deref(), src, rows)?
        }
    };
    let mut out_dims = outer.to_vec();
    out_dims.push(n);
    let _ = k;
    Ok(Some(Tensor::from_vec(out, out_dims, x.device())?))
}

/// The transpose of a 2-D f32 CPU matrix, contiguous. candle's strided copy moves one element at a
/// time (6 ns each: a third of a second for the 58M-parameter bench model); copying 32 x 32 tiles
/// keeps reads and writes in cache.
pub(crate) fn transpose_f32(w: &Tensor) -> Result<Tensor> {
    const TILE: usize = 32;
    let (rows, cols) = w.dims2()?;
    let src = w.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    Ok(Tensor::from_vec(dst, (cols, rows), w.device())?)
}

/// The largest tied head [`super::llada::Llada::fuse_projections`] copies into a transposed matrix (the
/// embedded model's is 2 MiB; Qwen3-0.6B's, 600 MiB in f32, stays shared).
pub(crate) const TIED_HEAD_COPY_MAX: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn tiled_transpose_equals_candles_strided_copy() {
        // Shapes on, under and across the tile size.
        for (rows, cols) in [(1, 1), (7, 45), (32, 32), (33, 64), (100, 37)] {
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let want = w
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let got = transpose_f32(&w).unwrap();
            assert_eq!(got.dims2().unwrap(), (cols, rows));
            assert_eq!(got.to_vec2::<f32>().unwrap(), want, "{rows} x {cols}");
        }
    }

    #[test]
    fn transposed_dense_layers_compute_what_stored_ones_do() {
        let w = Tensor::randn(0f32, 1.0, (24, 40), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, 24, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 40), &Device::Cpu).unwrap();
        for bias in [None, Some(&b)] {
            let stored = Dense::Stored(Linear::new(w.clone(), bias.cloned()));
            let mut prepared = stored.clone();
            prepared.prepare().unwrap();
            assert!(!matches!(prepared, Dense::Stored(_)));
            // Both inference forms, whichever this CPU prepares.
            let transposed = Dense::Transposed {
                weight_t: transpose_f32(&w).unwrap(),
                bias: bias.cloned(),
            };
            let want = stored.forward(&x).unwrap();
            for layer in [prepared, transposed] {
                let got = layer.forward(&x).unwrap();
                assert_eq!(got.dims(), &[2, 5, 24]);
                let diff = (&want - got).unwrap().abs().unwrap().max_all().unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
            }
        }
    }
}
