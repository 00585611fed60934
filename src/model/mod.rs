//! Everything candle: architectures (one per file) behind the [`Denoiser`] trait, and loading.

pub mod dream;
pub mod embedded;
pub mod gguf;
pub mod gguf_write;
pub mod layers;
pub mod llada;
pub mod loader;
pub mod modernbert;
pub mod qwen;
pub mod qwen3;

use std::ops::Range;

use candle_core::Tensor;

use crate::kernels::quant::{ggml_name, Quantization};
use crate::sampler::blocks::{BlockDecoding, BlockRequest};
use crate::sampler::{CacheMode, ForwardRequest, Logits, ModelTraits};

/// What `--quantize` did to a model's linear layers.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantSummary {
    pub to: Quantization,
    /// Layers per format used (a k-quant falls back where a row does not fit its blocks).
    pub formats: std::collections::BTreeMap<String, usize>,
    /// Layers whose rows fit no block: they stay in float.
    pub kept_float: usize,
    /// Bytes of the linear layers' weights before and after.
    pub before: usize,
    pub after: usize,
}

impl QuantSummary {
    pub fn new(to: Quantization) -> Self {
        Self {
            to,
            formats: Default::default(),
            kept_float: 0,
            before: 0,
            after: 0,
        }
    }

    /// Counts one layer.
    pub fn add(&mut self, layer: layers::Quantized) {
        match layer.dtype {
            Some(dtype) => *self.formats.entry(ggml_name(dtype)).or_default() += 1,
            None => self.kept_float += 1,
        }
        self.before += layer.before;
        self.after += layer.after;
    }
}

/// "3 q8_0, 1 q5_0": how many layers (or tensors) each format has.
pub(crate) fn counts(formats: &std::collections::BTreeMap<String, usize>) -> String {
    formats
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for QuantSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} layers ({})",
            self.to.name(),
            self.formats.values().sum::<usize>(),
            counts(&self.formats)
        )?;
        if self.kept_float > 0 {
            write!(f, ", {} kept in float (rows fit no block)", self.kept_float)?;
        }
        write!(
            f,
            "; linear weights {} -> {}",
            crate::files::human_bytes(self.before as u64),
            crate::files::human_bytes(self.after as u64)
        )
    }
}

/// A model's architecture family, or what stands in for a model in the playground.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Weights this process runs, or a `dlm-tui serve` runs with this sampler (`llada`,
    /// `dream`, `sdar`, ...).
    Local(&'static str),
    /// A text-streaming server (Mercury, an OpenAI-compatible one): frames, not sampler steps.
    Remote,
    /// A saved trace replayed without a model.
    Replay,
}

impl Family {
    /// The families this version runs, by name.
    pub const KNOWN: [&'static str; 7] = [
        "llada",
        "dream",
        "a2d-qwen3",
        "a2d-qwen2",
        "sdar",
        "fast-dllm-v2",
        "modernbert",
    ];

    /// A known family by name (a served model's facts).
    pub fn named(name: &str) -> Option<Self> {
        Self::KNOWN
            .into_iter()
            .find(|&f| f == name)
            .map(Family::Local)
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Local(name) => name,
            Family::Remote => "remote",
            Family::Replay => "replay",
        }
    }
}

/// Compares by name (`info.family == "dream"` in tests and tools).
impl PartialEq<&str> for Family {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the sampler and the UI need to know about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Human-readable name (folder name or hub id).
    pub name: String,
    /// Architecture family, e.g. `llada`.
    pub family: Family,
    /// Token id of `[MASK]`.
    pub mask_id: u32,
    /// Width of a logits row (the embedding size, which may exceed the tokenizer's vocabulary).
    pub logits_width: usize,
    /// Longest canvas the model accepts.
    pub max_context: usize,
    /// Dream-style models predict position i from the output at i - 1.
    pub shift_logits: bool,
    /// End-of-text ids (shown dimmed, optionally suppressed).
    pub eos_ids: Vec<u32>,
    /// End-of-turn ids of the chat template (`<|eot_id|>`, `<|im_end|>`), when the tokenizer has them.
    pub eot_ids: Vec<u32>,
    /// Number of parameters, for the status bar.
    pub parameters: usize,
    /// Bytes the weights take in memory (parameters times the size of their dtype, or less once
    /// quantized).
    pub weight_bytes: usize,
    /// The format the linear layers were quantized to, if they were (`--quantize`).
    pub quantization: Option<Quantization>,
    /// Block-diffusion models (SDAR; A2D conversions run as BD3LM): how they decode block by
    /// block against a cache of finished blocks ([`crate::sampler::blocks`]). `None` for models
    /// that denoise the whole canvas at once.
    pub blocks: Option<BlockDecoding>,
}

impl ModelInfo {
    /// The facts of a model whose weights this process does not hold (a remote server's, a
    /// replayed trace's, a test's): no parameters, no shift, no block decoding, no end ids
    /// until the caller sets them.
    pub fn stand_in(
        name: String,
        family: Family,
        mask_id: u32,
        logits_width: usize,
        max_context: usize,
    ) -> Self {
        Self {
            name,
            family,
            mask_id,
            logits_width,
            max_context,
            shift_logits: false,
            eos_ids: Vec::new(),
            eot_ids: Vec::new(),
            parameters: 0,
            weight_bytes: 0,
            quantization: None,
            blocks: None,
        }
    }

    /// What the sampler needs to know about this model.
    pub fn traits(&self) -> ModelTraits {
        ModelTraits {
            mask_id: self.mask_id,
            shift_logits: self.shift_logits,
            blocks: self.blocks,
            eos_ids: self.eos_ids.clone(),
            eot_ids: self.eot_ids.clone(),
        }
    }
}

/// Where the model runs. CUDA and Metal need the `cuda` / `metal` cargo features (the default
/// build is CPU only).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// The first CUDA GPU (CUDA_VISIBLE_DEVICES chooses which).
    Cuda,
    /// The Apple GPU.
    Metal,
}

impl DeviceKind {
    /// Opens the device, explaining how to get a build that has it when this one does not.
    pub fn open(self) -> anyhow::Result<candle_core::Device> {
        use candle_core::{utils, Device};
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda if !utils::cuda_is_available() => anyhow::bail!(
                "this dlm-tui was built without CUDA: rebuild with `cargo build --release \
                 --features cuda` (needs the CUDA toolkit), or use --device cpu"
            ),
            DeviceKind::Metal if !utils::metal_is_available() => anyhow::bail!(
                "this dlm-tui was built without Metal: rebuild on macOS with `cargo build \
                 --release --features metal`, or use --device cpu"
            ),
            DeviceKind::Cuda => Ok(Device::new_cuda(0)?),
            DeviceKind::Metal => Ok(Device::new_metal(0)?),
        }
    }
}

/// How inference computes bidirectional attention. All agree to float noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AttentionKernel {
    /// Tiled on CPUs with AVX2 and FMA (f32); elsewhere the fused kernel once the score matrix
    /// would pass 128 MiB, matmul below.
    #[default]
    Auto,
    /// Our tiled kernel: per head, chunks of queries through the packed AVX2 tile kernel (f32 on
    /// the CPU only; matmul elsewhere).
    Tiled,
    /// candle's fused CPU kernel (online softmax, no score matrix; f32 on the CPU only).
    Fused,
    /// Materialised scores: matmul, softmax, matmul.
    Matmul,
}

impl AttentionKernel {
    /// Score matrices up to this size (batch x heads x queries x keys x 4 bytes) use matmul.
    pub const AUTO_FUSED_ABOVE: usize = 128 << 20;

    /// The kernel that runs for `self` on this device and dtype, given the score matrix's size.
    pub fn resolve(self, cpu_f32: bool, scores_bytes: usize) -> AttentionKernel {
        use AttentionKernel::*;
        match self {
            _ if !cpu_f32 => Matmul,
            Auto if crate::kernels::packed::PackedWeight::supported() => Tiled,
            Auto if scores_bytes > Self::AUTO_FUSED_ABOVE => Fused,
            Auto => Matmul,
            other => other,
        }
    }
}

/// A masked-token predictor: all positions in, one logits row per position out.
///
/// `forward_batch` exists so classifier-free guidance can run its conditional and unconditional
/// canvases in one pass; every sequence in a batch has the same length.
pub trait Denoiser: Send {
    fn forward_batch(&mut self, batch: &[Vec<u32>]) -> anyhow::Result<Vec<Logits>>;
    fn info(&self) -> &ModelInfo;

    /// One sampler step's forward pass. With a cache mode other than `none`, a model that supports
    /// caching records keys and values on the first pass of a block (into `cache`, which belongs to
    /// one run) and recomputes only part of the canvas on the block's later passes. Models without
    /// cache support run the whole canvas every time, which is always correct.
    fn denoise(
        &mut self,
        request: &ForwardRequest,
        cache: &mut KvCache,
    ) -> anyhow::Result<Vec<Logits>> {
        let _ = cache;
        self.forward_batch(&request.canvases)
    }

    /// Chooses how inference computes attention (models with one kernel ignore it).
    fn set_attention(&mut self, kernel: AttentionKernel) {
        let _ = kernel;
    }

    /// Quantizes the linear layers to `to` (the embedding and the norms stay in float), and
    /// counts the memory their weights take now in [`ModelInfo::weight_bytes`].
    fn quantize(&mut self, to: Quantization) -> anyhow::Result<QuantSummary> {
        anyhow::bail!(
            "--quantize {}: quantized weights are not supported for the {} family yet (LLaDA, \
             Dream and Qwen3 A2D models are)",
            to.name(),
            self.info().family
        )
    }

    /// One block-diffusion pass ([`crate::sampler::blocks`]): the request's rows against the
    /// cached blocks, the rows' keys and values written to `cache` for a prefill or a write.
    /// Returns the rows' logits per sequence (for a prefill, every prompt row's, block-causally).
    fn block_forward(
        &mut self,
        request: &BlockRequest,
        cache: &mut BlockCache,
    ) -> anyhow::Result<Vec<Logits>> {
        let _ = (request, cache);
        anyhow::bail!(
            "the {} family decodes the whole canvas at once, not block by block",
            self.info().family
        )
    }

    /// Decodes block by block from now on, as dLLM's BD3LM sampler does, in blocks of `size`
    /// (`--block-diffusion`): for A2D conversions whose config says nothing of blocks.
    fn decode_by_blocks(&mut self, size: usize) -> anyhow::Result<()> {
        let _ = size;
        Err(no_block_diffusion(self.info()))
    }

    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Logits> {
        let mut out = self.forward_batch(&[tokens.to_vec()])?;
        out.pop()
            .ok_or_else(|| anyhow::anyhow!("the model returned no logits"))
    }
}

/// Why `--block-diffusion` does not apply to a model of `info`'s family.
pub(crate) fn no_block_diffusion(info: &ModelInfo) -> anyhow::Error {
    anyhow::anyhow!(
        "--block-diffusion runs dLLM's A2D conversions (a2d-qwen3, a2d-qwen2) block by block; {} \
         models decode {}",
        info.family,
        if info.blocks.is_some() {
            "block by block already"
        } else {
            "the whole canvas"
        }
    )
}

/// The exact key/value cache of a block-diffusion run: every finished block's keys and values,
/// and the frame the current block's passes attend over.
#[derive(Default)]
pub struct BlockCache {
    /// Per layer: keys and values of the cached positions, (batch, kv_heads, len, head_dim).
    pub(crate) layers: Vec<(Tensor, Tensor)>,
    /// How many positions are cached.
    pub(crate) len: usize,
    /// The current block's frame: per layer the cached keys and values with room for `rows`
    /// positions after them (which each pass replaces with its own), built once per block so
    /// the tiled attention kernel keeps its packing across the block's passes.
    pub(crate) frame: Option<(usize, Vec<(Tensor, Tensor)>)>,
    pub(crate) packed: Vec<std::sync::Mutex<crate::kernels::attention::PackedPast>>,
}

impl BlockCache {
    /// How many positions are cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Fixes the thread counts before any thread exists (it changes the environment, which is only
/// sound while the process has one thread: call it first thing in `main`).
///
/// - candle runs element-wise ops on its own spinning thread pool and matmuls on rayon's.
///   Inference runs each forward pass inside rayon's pool ([`in_pool`]), where a second spinning
///   pool only competes with the matmul threads for the cores: with one candle thread the
///   embedded model's forward pass at 128 tokens took 26.7 ms instead of 30.6 ms (median of 30,
///   2 cores; see BENCHMARKS.md). Training does not run inside the pool and keeps candle's
///   default (`training`). An explicit CANDLE_NUM_THREADS wins.
/// - candle asks for the thread count on every matmul, and unless RAYON_NUM_THREADS is set that
///   means counting the physical cores in /proc/cpuinfo each time: 10% of a dual-cached pass's
///   time in `perf`. It is counted once here (candle's own count, so matmuls split their work as
///   before) and written to RAYON_NUM_THREADS, which also sizes rayon's pool to match. An
///   explicit RAYON_NUM_THREADS wins.
pub fn tune_threads(training: bool) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if !training && std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Runs `f` on a worker of rayon's global pool, the pool candle's matmuls parallelise over. Called
/// from any other thread (the engine's, a benchmark's), every matmul would hand its work to the
/// pool and sleep until it is done; from inside, the calling worker does its share, and one
/// hand-over serves the whole forward pass.
/// `DLM_TUI_POOL=0` turns this off (for benchmarks).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let pooled = *POOLED.get_or_init(|| std::env::var("DLM_TUI_POOL").map_or(true, |v| v != "0"));
    if !pooled || rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Checks that every sequence of a batch has one length, at most `max_context`, and returns it.
pub(crate) fn batch_len(batch: &[Vec<u32>], max_context: usize) -> anyhow::Result<usize> {
    let len = batch.first().map_or(0, Vec::len);
    if batch.iter().any(|seq| seq.len() != len) {
        anyhow::bail!("all sequences in a batch must have the same length");
    }
    if len > max_context {
        anyhow::bail!("the canvas has {len} tokens but the model accepts at most {max_context}");
    }
    Ok(len)
}

/// Splits (B, T, width) logits into one `Logits` per sequence, starting at `offset`. The first
/// sequence keeps the buffer read from the tensor (at a 126k vocabulary that is 129 MB for 256
/// positions, so batch 1 copies nothing more).
pub(crate) fn split_logits(logits: &Tensor, offset: usize) -> anyhow::Result<Vec<Logits>> {
    let (b, t, width) = logits.dims3()?;
    let data = logits.flatten_all()?.to_vec1::<f32>()?;
    Ok(split_rows(data, b, t, width, offset))
}

/// [`split_logits`] for logits already in a buffer, `b` sequences of `t` rows of `width`.
pub(crate) fn split_rows(
    mut data: Vec<f32>,
    b: usize,
    t: usize,
    width: usize,
    offset: usize,
) -> Vec<Logits> {
    let mut out: Vec<Logits> = (1..b)
        .rev()
        .map(|i| Logits::at(data.split_off(i * t * width), width, offset))
        .collect();
    out.push(Logits::at(data, width, offset));
    out.reverse();
    out
}

/// Keys and values recorded by a full forward pass, for Fast-dLLM-style block caching. One per
/// run (a comparison lane has its own), never shared between canvases.
#[derive(Debug, Default)]
pub struct KvCache {
    /// Per layer: keys (after rotary embedding) and values, shape (batch, kv_heads, canvas, head_dim).
    pub(crate) layers: Vec<(Tensor, Tensor)>,
    /// Per layer: the same keys and values packed for the tiled attention kernel (filled by the
    /// first cached pass, then only the window is repacked).
    pub(crate) packed: Vec<std::sync::Mutex<crate::kernels::attention::PackedPast>>,
    /// What the record is valid for: the block, the canvas length and the batch size.
    key: Option<(Range<usize>, usize, usize)>,
    /// Forward FLOPs spent, and those uncached full passes would have spent.
    spent: f64,
    full: f64,
}

impl KvCache {
    /// The part of the canvas the next pass must recompute, or `None` when the record does not
    /// belong to this request's block (then the pass must run in full and record).
    pub fn window(&self, request: &ForwardRequest) -> Option<Range<usize>> {
        let len = request.canvases.first().map_or(0, Vec::len);
        let key = (request.block.clone(), len, request.canvases.len());
        if request.cache == CacheMode::None || self.key.as_ref() != Some(&key) {
            return None;
        }
        let start = request.rows.start.min(request.block.start);
        Some(match request.cache {
            CacheMode::Prefix => start..len,
            _ => start..request.rows.end.max(request.block.end).min(len),
        })
    }

    /// Stores a full pass's keys and values for the request's block.
    pub fn record(&mut self, request: &ForwardRequest, layers: Vec<(Tensor, Tensor)>) {
        let len = request.canvases.first().map_or(0, Vec::len);
        self.packed = layers.iter().map(|_| Default::default()).collect();
        self.layers = layers;
        self.key = Some((request.block.clone(), len, request.canvases.len()));
    }

    /// Counts a pass that cost `spent` FLOPs where a full pass costs `full`.
    pub fn count(&mut self, spent: f64, full: f64) {
        self.spent += spent;
        self.full += full;
    }

    /// Fraction of forward FLOPs this run's caching saved so far (0 without caching).
    pub fn saved(&self) -> f64 {
        if self.full == 0.0 {
            0.0
        } else {
            1.0 - self.spent / self.full
        }
    }
}
