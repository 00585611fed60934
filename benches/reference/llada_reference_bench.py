#!/usr/bin/env python3
"""PyTorch reference timing for one LLaDA forward pass, to quote "our forward vs the PyTorch reference".

The model is LLaDA's own reference code (`configuration_llada.py` / `modeling_llada.py` from the
GSAI-ML/LLaDA-8B hub repo, or the copy vendored in NVlabs/Fast-dLLM under llada/model/), so the numbers are
what the upstream implementation costs on CPU with the same weights, canvas lengths and thread count.

Subcommands:

  make-model  build a random-weight LLaDA model of realistic CPU shape (d_model 512, 8 layers, 8 heads,
              SwiGLU 1408, untied 32000-token head; about 58.5M parameters) with the reference code and write
              config.json + model.safetensors (f32) + tokenizer.json in the layout dlm-tui loads. Deterministic
              for a seed. Reloads what it wrote and checks the logits match the in-memory model exactly.
  time        load a LLaDA folder with the reference modeling class (f32, eval, inference mode) and time one
              batch-1 forward pass (full logits over the canvas) per canvas length.

Example:

    python3 benches/reference/llada_reference_bench.py make-model --ref-dir /work/ref \
        --out ~/.cache/dlm-tui/bench-model
    python3 benches/reference/llada_reference_bench.py time --ref-dir /work/ref \
        --model-dir ~/.cache/dlm-tui/bench-model --lengths 128,256 --runs 10 --threads 2 --json

Needs: torch (CPU is enough), transformers==4.46.3 (the reference code targets 4.4x), safetensors, tokenizers.
"""
import argparse
import atexit
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_TOKENIZER = os.path.join(REPO, "tests", "fixtures", "llada-tiny-gqa", "tokenizer.json")
MASK_TOKEN = "<|mdm_mask|>"
EOS_TOKEN = "<|endoftext|>"

# Realistic CPU shape: ~58.5M parameters, half of them in the embedding and the untied output head.
BENCH_SHAPE = dict(
    d_model=512,
    n_heads=8,
    n_kv_heads=8,
    n_layers=8,
    mlp_ratio=4,
    mlp_hidden_size=1408,
    rope_theta=500000.0,
    vocab_size=32000,
    embedding_size=32000,
    weight_tying=False,
    max_sequence_length=1024,
    include_bias=False,
    include_qkv_bias=False,
    rms_norm_eps=1e-5,
    init_fn="normal",
    init_std=0.02,
)


def import_torch(threads):
    """Pin the thread pools before torch starts them, then import torch and set its intra-op thread count."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return torch


def load_reference(ref_dir):
    """Import the reference configuration/modeling modules as a package (they use relative imports).

    Accepts `configuration_llada.py` / `modeling_llada.py`, or the `fd_`-prefixed names used for the Fast-dLLM
    copy when the plain ones are missing."""
    pkg_dir = tempfile.mkdtemp(prefix="llada_ref_")
    atexit.register(shutil.rmtree, pkg_dir, ignore_errors=True)
    pkg = os.path.join(pkg_dir, "llada_ref")
    os.makedirs(pkg)
    for name in ("configuration_llada.py", "modeling_llada.py"):
        src = os.path.join(ref_dir, name)
        if not os.path.exists(src):
            src = os.path.join(ref_dir, "fd_" + name)
        if not os.path.exists(src):
            sys.exit(f"error: neither {name} nor fd_{name} in {ref_dir}")
        shutil.copy(src, os.path.join(pkg, name))
    open(os.path.join(pkg, "__init__.py"), "w").close()
    sys.path.insert(0, pkg_dir)
    import llada_ref.configuration_llada as configuration
    import llada_ref.modeling_llada as modeling

    return configuration, modeling


def set_sdpa(modeling, compiled):
    """Fast-dLLM's copy wraps the attention call in `@torch.compile()`; upstream LLaDA calls
    F.scaled_dot_product_attention directly. Unless `compiled`, swap in the plain eager call (same maths, no
    inductor compile, no C++ toolchain needed). Returns a label for the report."""
    fn = getattr(modeling, "scaled_dot_product_attention", None)
    if fn is None:
        return "eager"  # upstream code: no module-level wrapper
    if compiled:
        return "torch.compile" if hasattr(fn, "_torchdynamo_orig_callable") else "eager"
    import torch.nn.functional as F

    def eager_sdpa(q, k, v, mask=None, attn_mask=None, dropout_p=0.0, is_causal=False):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)

    modeling.scaled_dot_product_attention = eager_sdpa
    return "eager"


def special_ids(tokenizer_path):
    """(mask id, eos id, tokenizer vocab size) as the tokenizer file defines them."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    mask_id, eos_id = tok.token_to_id(MASK_TOKEN), tok.token_to_id(EOS_TOKEN)
    if mask_id is None or eos_id is None:
        sys.exit(f"error: {tokenizer_path} has no {MASK_TOKEN} or {EOS_TOKEN} token")
    return mask_id, eos_id, tok.get_vocab_size()


def bench_config(tokenizer_path):
    mask_id, eos_id, tok_vocab = special_ids(tokenizer_path)
    cfg = dict(
        architectures=["LLaDAModelLM"],
        model_type="llada",
        auto_map={
            "AutoConfig": "configuration_llada.LLaDAConfig",
            "AutoModel": "modeling_llada.LLaDAModelLM",
            "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        },
        activation_type="silu",
        block_type="llama",
        block_group_size=1,
        alibi=False,
        alibi_bias_max=8.0,
        rope=True,
        rope_full_precision=True,
        flash_attention=False,
        attention_dropout=0.0,
        residual_dropout=0.0,
        embedding_dropout=0.0,
        multi_query_attention=None,
        attention_layer_norm=False,
        attention_layer_norm_with_affine=True,
        input_emb_norm=False,
        layer_norm_type="rms",
        layer_norm_with_affine=True,
        bias_for_layer_norm=False,
        scale_logits=False,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        mask_token_id=mask_id,
        init_device="cpu",
        use_cache=False,
        torch_dtype="float32",
    )
    cfg.update(BENCH_SHAPE)
    for name, i in (("mask_token_id", mask_id), ("eos_token_id", eos_id)):
        if not i < cfg["vocab_size"]:
            sys.exit(f"error: {name} {i} is not below vocab_size {cfg['vocab_size']}")
    if tok_vocab > cfg["vocab_size"]:
        sys.exit(f"error: tokenizer vocab {tok_vocab} exceeds vocab_size {cfg['vocab_size']}")
    return cfg


def read_state(torch, model_dir):
    """Tensors from model.safetensors, or from the shards named in model.safetensors.index.json, as f32."""
    from safetensors.torch import load_file

    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        files = [single]
    else:
        index = os.path.join(model_dir, "model.safetensors.index.json")
        if not os.path.exists(index):
            sys.exit(f"error: no model.safetensors or model.safetensors.index.json in {model_dir}")
        with open(index) as f:
            files = [os.path.join(model_dir, n) for n in sorted(set(json.load(f)["weight_map"].values()))]
    state = {}
    for path in files:
        for k, v in load_file(path).items():
            state[k] = v.to(torch.float32)
    return state


def load_model(torch, configuration, modeling, model_dir):
    """Construct the reference LLaDAModelLM from config.json and load the safetensors weights (strict)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    config = configuration.LLaDAConfig(**cfg)
    model = modeling.LLaDAModelLM(config, init_params=False)
    state = read_state(torch, model_dir)
    if config.weight_tying:
        # Tied checkpoints may or may not carry the (aliased) output head; the reference module has none.
        state.pop("model.transformer.ff_out.weight", None)
    model.load_state_dict(state, strict=True)
    return model.to(torch.float32).eval(), config


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def canvas(torch, length, tok_vocab, mask_id, seed):
    """Batch-1 canvas of random token ids below the tokenizer vocab, about half of them masked."""
    g = torch.Generator().manual_seed(seed + length)
    ids = torch.randint(0, tok_vocab, (1, length), generator=g)
    masked = torch.rand((1, length), generator=g) < 0.5
    return torch.where(masked, torch.full_like(ids, mask_id), ids)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cmd_make_model(args):
    torch = import_torch(args.threads)
    from safetensors.torch import save_file

    configuration, modeling = load_reference(args.ref_dir)
    set_sdpa(modeling, compiled=False)
    cfg = bench_config(args.tokenizer)
    torch.manual_seed(args.seed)
    config = configuration.LLaDAConfig(**cfg)
    # init_params=True: the reference's own init (normal, std 0.02; residual outputs / sqrt(2 n_layers)).
    model = modeling.LLaDAModelLM(config, init_params=True).to(torch.float32).eval()
    n_params = count_params(model)

    out = os.path.expanduser(args.out)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    shutil.copy(args.tokenizer, os.path.join(out, "tokenizer.json"))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    weights = os.path.join(out, "model.safetensors")
    save_file(state, weights, metadata={"format": "pt"})
    print(f"wrote {out}: config.json, tokenizer.json, model.safetensors ({os.path.getsize(weights) / 1e6:.1f} MB)")
    print(f"parameters: {n_params} ({n_params / 1e6:.2f}M)")
    print(f"mask_token_id {cfg['mask_token_id']}, eos_token_id {cfg['eos_token_id']}, vocab_size {cfg['vocab_size']}")
    print(f"model.safetensors sha256 {sha256(weights)}")

    # Check the saved folder round-trips through the same loader `time` uses: identical logits.
    reloaded, _ = load_model(torch, configuration, modeling, out)
    _, _, tok_vocab = special_ids(args.tokenizer)
    x = canvas(torch, 64, tok_vocab, cfg["mask_token_id"], args.seed)
    with torch.inference_mode():
        a = model(x).logits
        b = reloaded(x).logits
    diff = (a - b).abs().max().item()
    print(f"reload check: logits {tuple(a.shape)}, std {a.std().item():.4f}, max abs diff {diff}")
    if diff != 0.0:
        sys.exit("error: reloaded model's logits differ from the in-memory model")


def cmd_time(args):
    torch = import_torch(args.threads)
    configuration, modeling = load_reference(args.ref_dir)
    sdpa = set_sdpa(modeling, compiled=args.compiled_sdpa)
    model_dir = os.path.expanduser(args.model_dir)
    model, config = load_model(torch, configuration, modeling, model_dir)
    n_params = count_params(model)
    tok_path = os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(tok_path):
        _, _, tok_vocab = special_ids(tok_path)
        tok_vocab = min(tok_vocab, config.vocab_size)
    else:
        tok_vocab = config.vocab_size
    mask_id = config.mask_token_id
    lengths = [int(s) for s in args.lengths.split(",") if s.strip()]

    results = []
    with torch.inference_mode():
        for length in lengths:
            if length > config.max_sequence_length:
                sys.exit(f"error: length {length} exceeds max_sequence_length {config.max_sequence_length}")
            x = canvas(torch, length, tok_vocab, mask_id, args.seed)
            for _ in range(args.warmup):
                model(x)
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                logits = model(x).logits
                times.append((time.perf_counter() - t0) * 1e3)
            assert logits.shape == (1, length, config.embedding_size or config.vocab_size)
            results.append(
                dict(
                    length=length,
                    forward_ms_median=statistics.median(times),
                    forward_ms_min=min(times),
                    forward_ms_max=max(times),
                    runs=args.runs,
                )
            )
            if not args.json:
                r = results[-1]
                print(
                    f"L={length:5d}  median {r['forward_ms_median']:9.2f} ms  min {r['forward_ms_min']:9.2f} ms  "
                    f"max {r['forward_ms_max']:9.2f} ms  ({args.runs} runs, {args.warmup} warm-up)",
                    flush=True,
                )

    report = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        parameters=n_params,
        dtype="float32",
        batch=1,
        sdpa=sdpa,
        warmup=args.warmup,
        model_dir=model_dir,
        results=results,
    )
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"torch {report['torch']}, threads {report['threads']}, parameters {n_params} ({n_params / 1e6:.2f}M), "
            f"attention {sdpa}"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    mk = sub.add_parser("make-model", help="write a random-weight LLaDA bench model")
    mk.add_argument("--ref-dir", required=True, help="folder with (fd_)configuration_llada.py, (fd_)modeling_llada.py")
    mk.add_argument("--out", required=True, help="output folder (outside the repo; ~230 MB)")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="tokenizer.json to copy (default: %(default)s)")
    mk.add_argument("--threads", type=int, default=2)
    mk.set_defaults(func=cmd_make_model)

    tm = sub.add_parser("time", help="time one forward pass per canvas length")
    tm.add_argument("--ref-dir", required=True, help="folder with (fd_)configuration_llada.py, (fd_)modeling_llada.py")
    tm.add_argument("--model-dir", required=True, help="LLaDA folder: config.json + model.safetensors (or shards)")
    tm.add_argument("--lengths", default="128,256", help="comma-separated canvas lengths (default: %(default)s)")
    tm.add_argument("--runs", type=int, default=10)
    tm.add_argument("--warmup", type=int, default=3)
    tm.add_argument("--threads", type=int, default=2)
    tm.add_argument("--seed", type=int, default=0, help="seed for the random canvas")
    tm.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    tm.add_argument(
        "--compiled-sdpa",
        action="store_true",
        help="keep Fast-dLLM's @torch.compile around the attention call (default: plain eager call, as upstream)",
    )
    tm.set_defaults(func=cmd_time)

    args = ap.parse_args()
    if getattr(args, "runs", 1) < 1:
        sys.exit("error: --runs must be at least 1")
    args.func(args)


if __name__ == "__main__":
    main()
