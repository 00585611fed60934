//! Quantized weights: the GGML block formats candle's `quantized` module multiplies with SIMD on
//! the CPU (and on CUDA and Metal), as llama.cpp stores them in GGUF files.

use candle_core::quantized::GgmlDType;
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
}
