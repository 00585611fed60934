//! The CPU compute kernels under the architectures: element-wise ops that vectorise ([`ops`]),
//! the packed matrix product for fixed weights ([`packed`]) and tiled bidirectional attention
//! over it ([`attention`]), and quantized weight formats ([`quant`]). They know tensors and slices, never a model.

pub mod attention;
pub mod ops;
pub mod packed;
pub mod quant;
