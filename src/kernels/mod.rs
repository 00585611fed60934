//! The CPU compute kernels under the architectures: element-wise ops that vectorise ([`ops`]),
//! the packed matrix product for fixed weights ([`packed`]) and tiled bidirectional attention
//! over it ([`attention`]), and quantized weight formats ([`quant`], and q4_K in integer arithmetic: [`q4k`]). They know tensors and slices, never a model.

pub mod attention;
pub mod ops;
pub mod packed;
pub mod q4k;
pub mod quant;
