//! Finding and loading model folders: `config.json`, safetensors shards (with or without an index)
//! and `tokenizer.json`. Architectures live in their own files; this module only picks one.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::dream::DreamConfig;
use super::gguf;
use super::llada::{Llada, LladaConfig};
use super::modernbert::{self, ModernBert, ModernBertConfig};
use super::qwen3::Qwen3Config;
use super::Denoiser;
use crate::files::{is_plain_file_name, read_json, read_json_if_present, special_token};
use crate::text::TextCodec;

/// Families `dlm-tui` can run, as detected from `config.json`.
pub const SUPPORTED_FAMILIES: &[&str] = &[
    "llada (LLaDAModelLM)",
    "dream (DreamModel)",
    "a2d-qwen3 (A2DQwen3LMHeadModel)",
    "a2d-qwen2 (A2DQwen2LMHeadModel)",
    "sdar (SDARForCausalLM, block diffusion)",
    "fast-dllm-v2 (Fast_dLLM_QwenForCausalLM, block diffusion)",
    "modernbert (ModernBertForMaskedLM)",
];

/// End-of-turn tokens of the chat templates of supported families (LLaDA-Instruct, ChatML).
pub const END_OF_TURN: [&str; 2] = ["<|eot_id|>", "<|im_end|>"];

/// Numeric precision for the weights and activations.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 when the model fits comfortably in memory, bf16 otherwise.
    Auto,
    F32,
    Bf16,
    F16,
}

/// A model and the tokenizer that goes with it.
pub struct LoadedModel {
    pub model: Box<dyn Denoiser>,
    pub codec: TextCodec,
}

/// The metadata files of a model folder (weights are found once the config is known to be good).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    pub fn locate(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("model folder {} does not exist", dir.display());
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            bail!(
                "{} has no config.json: a model folder needs config.json, tokenizer.json and *.safetensors (or one .gguf file)",
                dir.display()
            );
        }
        let tokenizer = dir.join("tokenizer.json");
        let qwen2_files = dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file();
        if !tokenizer.is_file() && !qwen2_files {
            bail!(
                "{} has no tokenizer.json (nor vocab.json + merges.txt)",
                dir.display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
        })
    }
}

/// The id of the mask token `tokenizer_config.json` names (`mask_token`), if any.
fn tokenizer_mask(dir: &Path, codec: &TextCodec) -> Result<Option<u32>> {
    let path = dir.join("tokenizer_config.json");
    let Some(json) = read_json_if_present(&path)? else {
        return Ok(None);
    };
    let Some(name) = special_token(&json["mask_token"]) else {
        return Ok(None);
    };
    codec.token_id(name).map(Some).ok_or_else(|| {
        anyhow!(
            "{} names mask_token {name:?} but the tokenizer has no such token",
            path.display()
        )
    })
}

/// The shard names `model.safetensors.index.json` lists (sorted, once each), or `None` when the
/// folder has no index.
pub fn index_shards(dir: &Path) -> Result<Option<Vec<String>>> {
    let index = dir.join("model.safetensors.index.json");
    let Some(json) = read_json_if_present(&index)? else {
        return Ok(None);
    };
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| anyhow!("{} has no weight_map", index.display()))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    if let Some(bad) = shards.iter().find(|s| !is_plain_file_name(s)) {
        bail!(
            "{} names the shard {bad:?}: shards must be plain file names inside the model folder",
            index.display()
        );
    }
    Ok(Some(shards))
}

/// Shards named by `model.safetensors.index.json`, else `model.safetensors`, else every `*.safetensors`.
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if let Some(shards) = index_shards(dir)? {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = shards.iter().map(|name| dir.join(name)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            bail!(
                "{} names {} but that file is missing",
                index.display(),
                missing.display()
            );
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} has no *.safetensors weights", dir.display());
    }
    Ok(files)
}

/// Which architecture a `config.json` describes.
pub fn detect_family(config: &serde_json::Value) -> Result<&'static str> {
    let model_type = config.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = config
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if model_type == Some("llada") || architectures.contains(&"LLaDAModelLM") {
        return Ok("llada");
    }
    if model_type.is_some_and(|t| t.eq_ignore_ascii_case("dream"))
        || architectures.contains(&"DreamModel")
    {
        return Ok("dream");
    }
    if model_type == Some("a2d-qwen3") || architectures.contains(&"A2DQwen3LMHeadModel") {
        return Ok("a2d-qwen3");
    }
    if model_type == Some("Fast_dLLM_Qwen") || architectures.contains(&"Fast_dLLM_QwenForCausalLM")
    {
        return Ok("fast-dllm-v2");
    }
    if model_type == Some("a2d-qwen2") || architectures.contains(&"A2DQwen2LMHeadModel") {
        return Ok("a2d-qwen2");
    }
    if model_type == Some("sdar") || architectures.contains(&"SDARForCausalLM") {
        return Ok("sdar");
    }
    if model_type == Some("modernbert") || architectures.contains(&"ModernBertForMaskedLM") {
        return Ok("modernbert");
    }
    if matches!(model_type, Some("qwen3" | "qwen2" | "llama")) {
        bail!(
            "config.json describes an autoregressive {} model; dlm-tui runs diffusion models \
             (supported: {}; dLLM's A2D conversions of Qwen3 have model_type a2d-qwen3)",
            model_type.unwrap_or_default(),
            SUPPORTED_FAMILIES.join(", ")
        );
    }
    bail!(
        "config.json describes an unsupported model (model_type {:?}, architectures {:?}); supported: {}",
        model_type.unwrap_or("none"),
        architectures,
        SUPPORTED_FAMILIES.join(", ")
    )
}

/// The folder's safetensors, memory-mapped in `dtype`.
fn mmap_weights(dir: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let weights = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; modifying them while dlm-tui runs is
    // undefined behaviour, as for every mmap-based loader.
    unsafe { VarBuilder::from_mmaped_safetensors(&weights, dtype, device) }
        .with_context(|| format!("reading safetensors in {}", dir.display()))
}

/// The folder's files and its parsed `config.json`.
pub(crate) fn read_config(dir: &Path) -> Result<(ModelFiles, serde_json::Value)> {
    let files = ModelFiles::locate(dir)?;
    let json = read_json(&files.config)?;
    Ok((files, json))
}

fn resolve_precision(precision: Precision, parameters: usize) -> DType {
    match precision {
        Precision::F32 => DType::F32,
        Precision::Bf16 => DType::BF16,
        Precision::F16 => DType::F16,
        // Exact f32 for everything up to ~1B parameters; 8B models only fit in memory as bf16.
        Precision::Auto if parameters * 4 <= 4 << 30 => DType::F32,
        Precision::Auto => DType::BF16,
    }
}

/// Loads a model folder from disk (weights are memory-mapped).
pub fn load_dir(dir: &Path, precision: Precision, device: &Device) -> Result<LoadedModel> {
    load_dir_as(dir, None, precision, device)
}

/// As [`load_dir`], showing the model as `name` (a hub id) rather than by its folder's name.
pub fn load_dir_as(
    dir: &Path,
    name: Option<&str>,
    precision: Precision,
    device: &Device,
) -> Result<LoadedModel> {
    if let Some(gguf) = gguf_path(dir)? {
        let (mut model, codec) = load_gguf(&gguf, name, precision, device)?;
        model.fuse_projections()?;
        return Ok(LoadedModel {
            model: Box::new(model),
            codec,
        });
    }
    let (files, json) = read_config(dir)?;
    if detect_family(&json)? == "modernbert" {
        return load_modernbert(dir, &files, json, name, precision, device);
    }
    let (mut model, codec) = load_llada(dir, &files, json, name, precision, device)?;
    model.fuse_projections()?;
    // dLLM publishes its BD3LM conversions under names that say so (their config does not):
    // whichever front end loads one (the command line, the playground's picker), it decodes by
    // blocks as dLLM's BD3LM sampler does.
    let named_bd3lm = [
        dir.display().to_string(),
        name.unwrap_or_default().to_string(),
    ]
    .iter()
    .any(|n| n.to_ascii_lowercase().contains("bd3lm"));
    if named_bd3lm
        && matches!(
            model.info().family,
            crate::model::Family::Local("a2d-qwen3" | "a2d-qwen2")
        )
    {
        model.decode_by_blocks(super::qwen::BD3LM_BLOCK)?;
    }
    Ok(LoadedModel {
        model: Box::new(model),
        codec,
    })
}

fn folder_name(dir: &Path, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_string(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
    }
}

/// Only the tokenizer of a model folder (`tokenizer.json`, or `vocab.json` + `merges.txt`):
/// what a replay needs to show a trace's tokens without loading the weights.
pub fn load_tokenizer(dir: &Path) -> Result<TextCodec> {
    let tokenizer = dir.join("tokenizer.json");
    if tokenizer.is_file() {
        return TextCodec::from_file(&tokenizer);
    }
    if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
        return TextCodec::from_vocab_and_merges(dir);
    }
    bail!(
        "{} has no tokenizer.json (nor vocab.json + merges.txt)",
        dir.display()
    )
}

fn load_codec(dir: &Path, files: &ModelFiles) -> Result<TextCodec> {
    if files.tokenizer.is_file() {
        TextCodec::from_file(&files.tokenizer)
    } else {
        TextCodec::from_vocab_and_merges(dir)
    }
}

/// Output rows a checkpoint may have beyond its tokenizer's entries. Published models pad their
/// vocabulary to a round size by a few hundred rows (Dream-v0: 152064 rows for 151665 tokens);
/// the ids of those rows are shown as `[id N]` if ever generated ([`TextCodec::decode`]).
const PADDING_ROWS_MAX: usize = 1024;

/// Refuses a tokenizer that knows far fewer tokens than the model predicts: the two do not
/// belong together, and most of what the model wrote would have no text.
fn check_vocabulary(rows: usize, codec: &TextCodec, dir: &Path, files: &ModelFiles) -> Result<()> {
    let known = codec.vocab_size();
    if rows > known + PADDING_ROWS_MAX {
        let tokenizer = if files.tokenizer.is_file() {
            files.tokenizer.display().to_string()
        } else {
            format!("{}/vocab.json", dir.display())
        };
        bail!(
            "{} predicts {rows} token ids but its tokenizer ({tokenizer}) has only {known}: \
             they do not belong together (a model pads its vocabulary by at most \
             {PADDING_ROWS_MAX} ids)",
            files.config.display()
        );
    }
    Ok(())
}

fn end_of_turn_ids(codec: &TextCodec) -> Vec<u32> {
    END_OF_TURN
        .iter()
        .filter_map(|t| codec.token_id(t))
        .collect()
}

fn load_modernbert(
    dir: &Path,
    files: &ModelFiles,
    json: serde_json::Value,
    name: Option<&str>,
    precision: Precision,
    device: &Device,
) -> Result<LoadedModel> {
    let codec = load_codec(dir, files)?;
    let cfg: ModernBertConfig = serde_json::from_value(json).with_context(|| {
        format!(
            "{} does not match ModernBERT's config keys",
            files.config.display()
        )
    })?;
    check_vocabulary(cfg.vocab_size, &codec, dir, files)?;
    let mask = modernbert::mask_id(&cfg, tokenizer_mask(dir, &codec)?)
        .with_context(|| format!("in {}", dir.display()))?;
    let vb = mmap_weights(
        dir,
        resolve_precision(precision, cfg.parameter_count()),
        device,
    )?;
    let model = ModernBert::new(
        cfg,
        vb,
        folder_name(dir, name),
        mask,
        end_of_turn_ids(&codec),
    )
    .with_context(|| format!("loading modernbert weights from {}", dir.display()))
    .with_context(|| format!("in {}", files.config.display()))?;
    Ok(LoadedModel {
        model: Box::new(model),
        codec,
    })
}

/// Loads a LLaDA-format folder as the concrete model type (training and evaluation need it).
pub fn load_llada_dir(
    dir: &Path,
    precision: Precision,
    device: &Device,
) -> Result<(Llada, TextCodec)> {
    if let Some(gguf) = gguf_path(dir)? {
        return load_gguf(&gguf, None, precision, device);
    }
    let (files, json) = read_config(dir)?;
    load_llada(dir, &files, json, None, precision, device)
}

/// The GGUF file to load for `path`: the path itself when it is a `.gguf` file, else the one
/// `.gguf` of a folder without `config.json` (GGUF repositories ship nothing else).
pub fn gguf_path(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        if path.extension().is_some_and(|x| x == "gguf") {
            return Ok(Some(path.to_path_buf()));
        }
        bail!(
            "{} is a file: give a model folder, or a .gguf file",
            path.display()
        );
    }
    if path.is_dir() && !path.join("config.json").is_file() {
        return gguf::gguf_in(path);
    }
    if !path.exists() && path.extension().is_some_and(|x| x == "gguf") {
        bail!("GGUF file {} does not exist", path.display());
    }
    Ok(None)
}

/// The chat template of a model: `tokenizer_config.json` (or `chat_template.jinja`) of a folder,
/// or the `tokenizer.chat_template` of a GGUF file (one beside it in a folder wins).
pub fn chat_template(path: &Path) -> Result<Option<crate::chat::ChatTemplate>> {
    match gguf_path(path)? {
        Some(file) => {
            let dir = file.parent().unwrap_or(Path::new("."));
            if let Some(template) = crate::chat::ChatTemplate::from_model_dir(dir)? {
                return Ok(Some(template));
            }
            gguf::GgufFile::open(&file)?.chat_template()
        }
        None => crate::chat::ChatTemplate::from_model_dir(path),
    }
}

/// Loads a GGUF file of a LLaDA or Dream model (llama.cpp's converter's names and metadata): the
/// tokenizer from its metadata unless a `tokenizer.json` lies beside it; quantized linear layers
/// stay quantized.
fn load_gguf(
    path: &Path,
    name: Option<&str>,
    precision: Precision,
    device: &Device,
) -> Result<(Llada, TextCodec)> {
    let file = gguf::GgufFile::open(path)?;
    let cfg = file.config()?;
    let beside = path.with_file_name("tokenizer.json");
    let codec = if beside.is_file() {
        TextCodec::from_file(&beside)?
    } else {
        file.tokenizer()?
    };
    let rows = cfg.embedding_rows();
    // The file's token list counts its unused padding entries ("[PADn]"), which get no text.
    if rows > codec.vocab_size().max(file.token_count()?) + PADDING_ROWS_MAX {
        bail!(
            "{} predicts {rows} token ids but its tokenizer has only {}: they do not belong \
             together",
            path.display(),
            codec.vocab_size()
        );
    }
    let name = match name {
        Some(name) => name.to_string(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    };
    let family = file.architecture().to_string();
    let quantization = file.quantization();
    // Quantized layers multiply f32 activations (dequantized into the packed f32 kernel's
    // panels); only the embedding and the norms are float weights then, so f32 costs little.
    let dtype = match (precision, quantization) {
        (Precision::Auto, Some(_)) => DType::F32,
        _ => resolve_precision(precision, cfg.parameter_count()),
    };
    let weights = std::sync::Arc::new(gguf::GgufWeights::new(file, &cfg)?);
    let vb = weights.var_builder(dtype, device);
    let mut model = Llada::with_quantized(cfg, vb, name, &*weights)
        .with_context(|| format!("loading {family} weights from {}", path.display()))?;
    model.set_eot_ids(end_of_turn_ids(&codec));
    model.set_quantization(quantization);
    Ok((model, codec))
}

/// The shared transformer's configuration from a folder's LLaDA, Dream or A2D Qwen3
/// `config.json`, its family and its tokenizer.
pub(crate) fn transformer_config(
    dir: &Path,
    files: &ModelFiles,
    json: serde_json::Value,
) -> Result<(LladaConfig, &'static str, TextCodec)> {
    let codec = load_codec(dir, files)?;
    let family = detect_family(&json)?;
    if family == "modernbert" {
        bail!(
            "{} is a ModernBERT model, which is not a LLaDA-format transformer (training and \
             evaluation need one)",
            dir.display()
        );
    }
    let mut cfg: LladaConfig = match family {
        "dream" => serde_json::from_value::<DreamConfig>(json)
            .with_context(|| {
                format!(
                    "{} does not match Dream's config keys",
                    files.config.display()
                )
            })?
            .to_transformer()
            .with_context(|| format!("in {}", files.config.display()))?,
        "sdar" => serde_json::from_value::<Qwen3Config>(json)
            .with_context(|| {
                format!(
                    "{} does not match SDAR's (Qwen3's) config keys",
                    files.config.display()
                )
            })
            .and_then(|config| {
                super::qwen3::sdar_transformer(&config, tokenizer_mask(dir, &codec)?)
            })
            .with_context(|| format!("in {}", files.config.display()))?,
        "fast-dllm-v2" => serde_json::from_value::<super::qwen::QwenConfig>(json)
            .with_context(|| {
                format!(
                    "{} does not match Qwen2's config keys",
                    files.config.display()
                )
            })
            .and_then(|config| {
                // Its tokenizer lists the mask among its additional special tokens only.
                let mask = tokenizer_mask(dir, &codec)?.or(codec.token_id("|<MASK>|"));
                super::qwen::fast_dllm_v2_transformer(&config, mask)
            })
            .with_context(|| format!("in {}", files.config.display()))?,
        "a2d-qwen2" => serde_json::from_value::<super::qwen::QwenConfig>(json)
            .with_context(|| {
                format!(
                    "{} does not match Qwen2's config keys",
                    files.config.display()
                )
            })
            .and_then(|config| {
                super::qwen::a2d_qwen2_transformer(&config, tokenizer_mask(dir, &codec)?)
            })
            .with_context(|| format!("in {}", files.config.display()))?,
        "a2d-qwen3" => serde_json::from_value::<Qwen3Config>(json)
            .with_context(|| {
                format!(
                    "{} does not match Qwen3's config keys",
                    files.config.display()
                )
            })?
            .to_transformer(tokenizer_mask(dir, &codec)?)
            .with_context(|| format!("in {}", files.config.display()))?,
        _ => serde_json::from_value(json).with_context(|| {
            format!(
                "{} does not match LLaDA's config keys",
                files.config.display()
            )
        })?,
    };
    cfg.validate()
        .with_context(|| format!("in {}", files.config.display()))?;
    // The rotary table is built for the whole context: a config claiming 1e8 positions would
    // ask for gigabytes. Longer canvases are refused with this limit named.
    cfg.max_sequence_length = cfg.max_sequence_length.min(super::llada::MAX_CONTEXT);
    check_vocabulary(cfg.embedding_rows(), &codec, dir, files)?;
    Ok((cfg, family, codec))
}

/// Builds the shared transformer from a parsed LLaDA, Dream or A2D Qwen3 config.
fn load_llada(
    dir: &Path,
    files: &ModelFiles,
    json: serde_json::Value,
    name: Option<&str>,
    precision: Precision,
    device: &Device,
) -> Result<(Llada, TextCodec)> {
    let name = folder_name(dir, name);
    let (cfg, family, codec) = transformer_config(dir, files, json)?;
    let vb = mmap_weights(
        dir,
        resolve_precision(precision, cfg.parameter_count()),
        device,
    )?;
    let mut model = Llada::new(cfg, vb, name)
        .with_context(|| format!("loading {family} weights from {}", dir.display()))?;
    model.set_eot_ids(end_of_turn_ids(&codec));
    Ok((model, codec))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index may only name files inside its own folder: an absolute path or `../` would load
    /// another folder's weights (or open any file as weights).
    #[test]
    fn shards_must_be_plain_names_in_the_folder() {
        let dir = std::env::temp_dir().join(format!("dlm-tui-shards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let index = dir.join("model.safetensors.index.json");
        for bad in [
            "/etc/passwd",
            "../other/model.safetensors",
            "sub/model.safetensors",
            "..",
            "",
            "a\\u0000b",
            "C:model.safetensors",
        ] {
            std::fs::write(&index, format!(r#"{{"weight_map": {{"w": "{bad}"}}}}"#)).unwrap();
            let e = index_shards(&dir).unwrap_err();
            assert!(
                format!("{e:#}").contains("plain file names"),
                "{bad}: {e:#}"
            );
            assert!(weight_files(&dir).is_err(), "{bad}");
        }
        std::fs::write(
            &index,
            r#"{"weight_map": {"w": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            index_shards(&dir).unwrap().unwrap(),
            ["model-00001-of-00002.safetensors"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
