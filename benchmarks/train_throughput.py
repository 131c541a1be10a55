"""KTO training throughput: stock TRL 1.16 `KTOTrainer` against the project's recipe, one run.

    .venv/bin/python -m benchmarks.train_throughput --mode tiny      # CPU, a few minutes on 2 cores
    .venv/bin/python -m benchmarks.train_throughput --mode qwen05b   # GPU (H200): Qwen2-0.5B shape
    .venv/bin/python -m benchmarks.train_throughput --mode qwen05b --dry-run   # CPU smoke of that path

Both sides train the same randomly initialised model on the same synthetic rows (random token
texts, arriving shuffled), one epoch each, in separate worker processes so that memory figures
do not mix:

* **stock**: `KTOTrainer(model=<path>, args=KTOConfig(...))` with TRL's defaults: full
  fine-tune, a separate reference model re-loaded from the path, no precompute, gradient
  checkpointing on, batch 8 × GA 1, lr 1e-6, bf16 on GPU (fp32 on CPU for both sides).
* **project_b8**: `kto_pipeline.train.train_kto` with the default recipe literally (LoRA r16
  all-linear, reference log-probs precomputed, length bucketing, no gradient checkpointing,
  micro-batch 8 × GA 4).
* **project**: the same recipe with a larger micro-batch (`--project-batch`, default 32 × GA 1:
  the same effective batch of 32), the lever the notes measured as the biggest.

Figures
-------
* **tokens/s (loop)**: trained sequence tokens / wall seconds of `trainer.train()`. Trained
  sequence tokens = non-pad tokens of the prompt+completion sequences the optimiser steps
  consumed (TRL's `num_tokens`; each row once per epoch). The KL pass's mismatched sequences
  and the reference passes are work done *for* those tokens, not counted again.
* **tokens/s (total)**: the same tokens / wall seconds from trainer set-up (model and reference
  loading, tokenisation, the project's one-off reference precompute) to the end of training.
* **peak memory**: GPU: `torch.cuda.max_memory_allocated` over the worker; CPU: peak RSS above
  the worker's RSS before the model is loaded (sampled every 20 ms).
* **loss**: at the first log (the initial weights: 0.5 × class weight) and at the last step.

Results are merged per mode into benchmarks/results/train_throughput.{json,md}, with the
command line and machine. Read the ratios: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PROJECT = Path(__file__).resolve().parent.parent
VARIANTS = ("stock", "project_b8", "project")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@dataclass
class Job:
    """What one worker needs: the model folder, the rows and the knobs of its variant."""

    mode: str
    variant: str
    model_path: str
    rows_path: str
    work_dir: str
    device: str  # "cuda" | "cpu"
    max_length: int
    project_batch: int
    seed: int = 0


# --------------------------------------------------------------------------------------------
# Model and data
# --------------------------------------------------------------------------------------------


def build_model(mode: str, folder: Path, dry_run: bool) -> Path:
    """A random model folder: the tiny Llama, or a Qwen2-0.5B-shaped Qwen2ForCausalLM."""
    from kto_pipeline.devtools.tiny_models import TinyModelSpec, build_tiny_causal_lm

    if mode == "tiny":
        # ~0.5M parameters: hidden 128, 2 layers, MLP 384, vocab 512 (tied).
        spec = TinyModelSpec(
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
        )
        return build_tiny_causal_lm(folder / "tiny", spec)
    # Qwen2-0.5B's shape from a config (no download); the tiny byte-level tokenizer supplies the
    # text side (ids < 512), while the LM head still spans the full 151,936-token vocabulary.
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from kto_pipeline.devtools.tiny_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(TinyModelSpec())
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=2 if dry_run else 24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    path = folder / "qwen05b"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_text(tokenizer, n_tokens: int, rng: random.Random, vocab: list[int]) -> str:
    """Text of about `n_tokens` tokens: random vocabulary pieces, cut to length after re-encoding."""
    text = "".join(tokenizer.decode([rng.choice(vocab)]) for _ in range(n_tokens))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def make_rows(
    tokenizer, n: int, lengths: str, prompt_range: tuple[int, int], completion_range: tuple[int, int], seed: int
):
    """Plain-text rows in shuffled order, 60% desirable (weights then balance them)."""
    import pandas as pd

    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(len(tokenizer)) if i not in special]
    rows = []
    for i in range(n):
        if lengths == "fixed":
            p, c = prompt_range[1], completion_range[1]
        else:
            p, c = rng.randint(*prompt_range), rng.randint(*completion_range)
        rows.append(
            {
                "row_id": str(i),
                "week": "bench",
                "prompt": random_text(tokenizer, p, rng, vocab),
                "prompt_messages": None,
                "completion": random_text(tokenizer, c, rng, vocab),
                "label": rng.random() < 0.6,
                "signal": "thumb",
                "source": "synthetic",
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


class PeakRSS:
    """Peak resident memory of this process above a baseline, sampled every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.baseline = self._proc.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        return (self.peak - self.baseline) / 2**30


def _loss_points(log_history: list[dict[str, Any]]) -> tuple[float | None, float | None, float | None]:
    logs = [e for e in log_history if "loss" in e and "train_runtime" not in e]
    if not logs:
        return None, None, None
    return float(logs[0]["loss"]), float(logs[-1]["loss"]), float(logs[-1].get("num_tokens", 0))


def run_stock(job: Job, rows) -> dict[str, Any]:
    """TRL's defaults: full FT, reference re-loaded from the path, grad ckpt, batch 8."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    tokenizer = AutoTokenizer.from_pretrained(job.model_path)
    records = [
        {"prompt": p, "completion": c, "label": bool(y)}
        for p, c, y in zip(rows["prompt"], rows["completion"], rows["label"], strict=True)
    ]
    cpu = job.device == "cpu"
    n_d = sum(r["label"] for r in records)
    args = KTOConfig(
        output_dir=str(Path(job.work_dir) / "stock"),
        num_train_epochs=1,
        max_length=job.max_length,
        desirable_weight=round((len(records) - n_d) / n_d * 7 / 6, 4),  # same weights as the project side
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        logging_first_step=True,
        disable_tqdm=True,
        use_cpu=cpu,
        seed=job.seed,
        **({"bf16": False} if cpu else {}),
    )
    t0 = time.perf_counter()
    trainer = KTOTrainer(
        model=job.model_path, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer
    )
    t1 = time.perf_counter()
    trainer.train()
    _sync(job.device)
    t2 = time.perf_counter()
    first, last, tokens = _loss_points(trainer.state.log_history)
    return {
        "setup_s": t1 - t0,
        "train_s": t2 - t1,
        "total_s": t2 - t0,
        "tokens": tokens,
        "steps": trainer.state.global_step,
        "loss_first": first,
        "loss_last": last,
        "config": {
            "full_finetune": True,
            "reference": "separate model (re-loaded from path)",
            "precompute_ref_log_probs": False,
            "gradient_checkpointing": args.gradient_checkpointing,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "learning_rate": args.learning_rate,
            "bf16": bool(args.bf16),
            "length_bucketing": False,
        },
    }


def run_project(job: Job, rows) -> dict[str, Any]:
    """The library's path: LoRA, precomputed reference, bucketing, no grad ckpt."""
    from kto_pipeline.train import KTORecipe, train_kto

    batch, accumulation = (
        (8, 4) if job.variant == "project_b8" else (job.project_batch, max(1, 32 // job.project_batch))
    )
    recipe = KTORecipe.from_dict(
        {
            "max_length": job.max_length,
            "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": accumulation,
            "logging_steps": 1,
            "save_steps": 10**9,
            "seed": job.seed,
        }
    )
    n_d = int(rows["label"].sum())
    result = train_kto(
        rows,
        base_model=job.model_path,
        output_dir=Path(job.work_dir) / f"{job.variant}-out",
        work_dir=Path(job.work_dir) / f"{job.variant}-work",
        recipe=recipe,
        desirable_weight=round((len(rows) - n_d) / n_d * 7 / 6, 4),
        device=job.device,
    )
    _sync(job.device)
    first, last, tokens = _loss_points(result.log_history)
    t = result.timings
    # set-up = data preparation + model loading + trainer init (which runs the reference precompute)
    return {
        "setup_s": t["prepare"] + t["setup"],
        "train_s": t["train"],
        "total_s": t["prepare"] + t["setup"] + t["train"],
        "tokens": tokens,
        "steps": result.global_step,
        "loss_first": first,
        "loss_last": last,
        "timings": {k: round(v, 3) for k, v in t.items()},
        "padding_fraction": result.data["padding_fraction"],
        "padding_fraction_unbucketed": result.data["padding_fraction_unbucketed"],
        "config": {
            k: v
            for k, v in recipe.to_dict().items()
            if k
            in (
                "full_finetune",
                "lora_r",
                "precompute_ref_log_probs",
                "gradient_checkpointing",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "learning_rate",
                "length_bucketing",
                "model_dtype",
            )
        }
        | {"bf16": _bf16(job.device)},
    }


def _bf16(device: str) -> bool:
    import torch

    return device != "cpu" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _sync(device: str) -> None:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def worker(job: Job) -> dict[str, Any]:
    import pandas as pd
    import torch

    rows = pd.read_parquet(job.rows_path)
    gpu = job.device != "cpu"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    rss = PeakRSS()
    out = run_stock(job, rows) if job.variant == "stock" else run_project(job, rows)
    rss_gib = rss.stop()
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if gpu else rss_gib
    out["peak_memory_kind"] = "cuda max_memory_allocated" if gpu else "peak RSS above start"
    out["tokens_per_s_loop"] = out["tokens"] / out["train_s"] if out["tokens"] else None
    out["tokens_per_s_total"] = out["tokens"] / out["total_s"] if out["tokens"] else None
    out["variant"] = job.variant
    return out


# --------------------------------------------------------------------------------------------
# Orchestration and reporting
# --------------------------------------------------------------------------------------------


MODES = {
    # rows, prompt token range, completion token range, max_length, lengths
    "tiny": dict(rows=768, prompt=(16, 160), completion=(8, 96), max_length=512, lengths="varied"),
    "qwen05b": dict(rows=1024, prompt=(256, 256), completion=(256, 256), max_length=1024, lengths="fixed"),
}


def machine_info() -> str:
    import psutil
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB{gpu}"
    )


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch": torch.__version__,
    }


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_variant(job: Job, tmp: Path) -> dict[str, Any]:
    job_file, out_file = tmp / f"{job.variant}.job.json", tmp / f"{job.variant}.result.json"
    job_file.write_text(json.dumps(asdict(job)))
    cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--worker", str(job_file), "--out", str(out_file)]
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{job.variant} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out_file.read_text())


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    stock = results.get("stock")
    ratios = {}
    for name, res in results.items():
        if name == "stock" or not stock:
            continue
        ratios[name] = {
            "tokens_per_s_loop": _ratio(res["tokens_per_s_loop"], stock["tokens_per_s_loop"]),
            "tokens_per_s_total": _ratio(res["tokens_per_s_total"], stock["tokens_per_s_total"]),
            "peak_memory": _ratio(res["peak_memory_gib"], stock["peak_memory_gib"]),
        }
    return ratios


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def write_results(mode: str, entry: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / "train_throughput.json"
    data = json.loads(json_path.read_text()) if json_path.is_file() else {}
    data[mode] = entry
    json_path.write_text(json.dumps(data, indent=1, default=str))
    (RESULTS / "train_throughput.md").write_text(render_markdown(data))


def _f(value: Any, fmt: str = ",.0f") -> str:
    return "–" if value is None else format(value, fmt)


def render_markdown(data: dict[str, Any]) -> str:
    lines = [
        "# KTO training throughput: stock TRL vs the project's recipe",
        "",
        "Written by `benchmarks/train_throughput.py` (see its docstring for the definitions). tokens/s = "
        "trained sequence tokens (non-pad prompt+completion tokens of the rows stepped on, TRL's `num_tokens`) "
        "per wall second; *loop* = `trainer.train()` only, *total* = from trainer set-up (incl. model/reference "
        "loading and the one-off reference precompute) to the end of training.",
        "",
    ]
    for mode, entry in data.items():
        lines += [
            f"## {mode}",
            "",
            f"- command: `{entry['command']}`",
            f"- machine: {entry['machine']}",
            f"- date: {entry['date']}, commit {entry.get('commit')}, versions {json.dumps(entry['versions'])}",
            f"- model: {entry['model']}",
            f"- data: {entry['data']}",
            "",
            "| variant | steps | tokens | tok/s loop | tok/s total | train s | set-up s | peak GiB | loss first → last | padding |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, r in entry["results"].items():
            pad = (
                f"{r['padding_fraction']:.1%} (unbucketed {r['padding_fraction_unbucketed']:.1%})"
                if "padding_fraction" in r
                else "–"
            )
            lines.append(
                f"| {name} | {r['steps']} | {_f(r['tokens'])} | {_f(r['tokens_per_s_loop'])} | {_f(r['tokens_per_s_total'])} | "
                f"{r['train_s']:.1f} | {r['setup_s']:.1f} | {_f(r['peak_memory_gib'], '.2f')} | "
                f"{_f(r['loss_first'], '.4f')} → {_f(r['loss_last'], '.4f')} | {pad} |"
            )
        lines += ["", "Ratios to stock (project / stock):", ""]
        for name, ratio in entry["ratios"].items():
            lines.append(
                f"- {name}: tok/s loop ×{_f(ratio['tokens_per_s_loop'], '.2f')}, tok/s total "
                f"×{_f(ratio['tokens_per_s_total'], '.2f')}, peak memory ×{_f(ratio['peak_memory'], '.2f')}"
            )
        lines += ["", "Configurations:", ""]
        for name, r in entry["results"].items():
            lines.append(f"- {name}: `{json.dumps(r['config'], sort_keys=True)}`")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="tiny")
    parser.add_argument("--rows", type=int, help="rows to train on (one epoch); default per mode")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS)
    )
    parser.add_argument("--project-batch", type=int, default=32, help="micro-batch of the 'project' variant")
    parser.add_argument("--lengths", choices=["fixed", "varied"], help="row lengths; default per mode")
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    parser.add_argument("--dry-run", action="store_true", help="a few rows, 2 layers, short texts; nothing written")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)

    if ns.worker:
        result = worker(Job(**json.loads(Path(ns.worker).read_text())))
        Path(ns.out).write_text(json.dumps(result, default=str))
        return 0

    import torch

    device = ns.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if ns.mode == "qwen05b" and device == "cpu" and not ns.dry_run:
        print("warning: qwen05b on CPU takes hours; use --dry-run for a smoke run", file=sys.stderr)
    cfg = dict(MODES[ns.mode])
    if ns.dry_run:
        cfg.update(rows=16, prompt=(24, 40), completion=(8, 24), max_length=128)
    if ns.rows:
        cfg["rows"] = ns.rows
    lengths = ns.lengths or cfg["lengths"]
    variants = [v.strip() for v in ns.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}")

    tmp = Path(tempfile.mkdtemp(prefix="kto-bench-"))
    try:
        from kto_pipeline.models.checkpoints import load_tokenizer

        model_path = build_model(ns.mode, tmp, ns.dry_run)
        tokenizer = load_tokenizer(model_path)
        rows = make_rows(tokenizer, cfg["rows"], lengths, cfg["prompt"], cfg["completion"], seed=0)
        rows.to_parquet(tmp / "rows.parquet")
        n_params = sum(p.numel() for p in _load_for_count(model_path).parameters())
        results = {}
        for variant in variants:
            job = Job(
                mode=ns.mode,
                variant=variant,
                model_path=str(model_path),
                rows_path=str(tmp / "rows.parquet"),
                work_dir=str(tmp / "work"),
                device=device,
                max_length=cfg["max_length"],
                project_batch=ns.project_batch,
            )
            print(f"[{ns.mode}] running {variant} ...", flush=True)
            results[variant] = run_variant(job, tmp)
            r = results[variant]
            print(
                f"  {variant}: {r['steps']} steps, {_f(r['tokens'])} tokens, {_f(r['tokens_per_s_loop'])} tok/s loop, "
                f"{_f(r['tokens_per_s_total'])} tok/s total, peak {_f(r['peak_memory_gib'], '.2f')} GiB, "
                f"loss {_f(r['loss_first'], '.4f')} → {_f(r['loss_last'], '.4f')}",
                flush=True,
            )
        entry = {
            "command": " ".join(
                [".venv/bin/python", "-m", "benchmarks.train_throughput", *(argv if argv is not None else sys.argv[1:])]
            ),
            "machine": machine_info(),
            "device": device,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _commit(),
            "versions": _versions(),
            "model": f"{ns.mode}: {n_params / 1e6:.2f}M parameters (random init)",
            "data": f"{cfg['rows']} rows, {lengths} lengths, prompt {cfg['prompt']} + completion {cfg['completion']} tokens, "
            f"max_length {cfg['max_length']}, 60% desirable (λD set to ratio 7/6)",
            "results": results,
            "ratios": summarise(results),
        }
        for name, ratio in entry["ratios"].items():
            print(
                f"  {name}/stock: tok/s loop ×{_f(ratio['tokens_per_s_loop'], '.2f')}, total "
                f"×{_f(ratio['tokens_per_s_total'], '.2f')}, peak memory ×{_f(ratio['peak_memory'], '.2f')}"
            )
        if not ns.dry_run:
            write_results(ns.mode, entry)
            print(f"written to {RESULTS / 'train_throughput.md'}")
    finally:
        if ns.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _load_for_count(path: Path):
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))


if __name__ == "__main__":
    sys.exit(main())
