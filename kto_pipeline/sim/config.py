"""What a simulation runs: the scenario, the weeks, the toy task's curation settings, the arms,
the teacher, the recipe overrides and the ablation."""

from __future__ import annotations

from dataclasses import dataclass, field

from kto_pipeline.sim.ablations import get_ablation
from kto_pipeline.sim.users import OracleUser


@dataclass(frozen=True)
class SimulationConfig:
    scenario: str = "carry_bug"
    weeks: int = 4
    prompts_per_week: int = 1500
    eval_fraction: float = 0.05  # held-out share of each week's rows (the eval report's data)
    # The gate's tolerance on reward accuracy: with ~60-80 held-out rows a week its standard
    # error is ~0.06, so production's 0.01 would block better models on noise alone.
    gate_tolerance: float = 0.05
    # Curation settings for this toy task (production defaults stay in the assets). SemDeDup and
    # DEITA's diversity pass judge "same meaning" with a general-purpose sentence embedder
    # (all-MiniLM-L6-v2), which puts distinct sums of short digit strings at cosine 0.90-0.95
    # ("89+25=114" / "91+23=114", "72+99=161" / "99+72=161"): at the defaults (eps 0.05,
    # threshold 0.9) they removed ~20% of each week's rows, every one a different question. Here
    # a duplicate is a repeated question with the same answer, which exact dedup and the
    # contradiction rule already catch; so the embedding stages still run but only merge
    # identical vectors (eps 0; keep every row at cosine <= 1).
    semdedup_eps: float = 0.0
    diversity_threshold: float = 1.0
    # Weeks of rows each training sees (kto_checkpoint's window_weeks, production default 1; the
    # SFT arm trains on the same weeks of its own thumbs-up rows, for the same steps). Every week
    # serves fresh prompts whose right answer never changes, so last week's rows are not stale:
    # two weeks double the distinct facts per update. With one week (~1,600 rows) KTO stalled
    # after week 3 (carry_bug, seed 0: 0.434, 0.515, 0.564, 0.552; seed 1: 0.456, 0.494,
    # 0.566, 0.563); with two: 0.434, 0.561, 0.587, 0.593. Six epochs on one week instead
    # tripped the collapse guard in week 4.
    window_weeks: int = 2
    arms: tuple[str, ...] = ("kto", "sft")
    # The synthetic top-up's teacher (sim/teacher.py, served beside the judge): right this share
    # of the time when asked for a better answer; None turns the top-up off (no teacher).
    teacher_accuracy: float | None = 0.9
    eval_samples: int = 2000
    seed: int = 0
    user: OracleUser = field(default_factory=OracleUser)
    recipe: dict = field(default_factory=dict)  # overrides of the tiny-model KTO recipe
    end_week: str | None = None  # the last simulated week; default: the last closed week
    ablate: str | None = None  # one step changed (kto_pipeline/sim/ablations.py); None: the full loop

    # Answers in the eval report: an answer is at most 3 digits plus EOS, and the character-level
    # tokenizer has no decoder (transformers would join its tokens with spaces).
    answer_max_new_tokens: int = 4

    def __post_init__(self) -> None:
        unknown = set(self.arms) - {"kto", "sft"}
        if unknown or "kto" not in self.arms:
            raise ValueError(f"arms must include kto and may add sft, got {self.arms}")
        if self.weeks < 1:
            raise ValueError("weeks must be >= 1")
        if self.teacher_accuracy is not None and not 0 <= self.teacher_accuracy <= 1:
            raise ValueError("teacher_accuracy must be in [0, 1] (or None: no teacher)")
        if self.ablate is not None and not get_ablation(self.ablate).teacher and self.teacher_accuracy is not None:
            raise ValueError(f"the {self.ablate} ablation runs without a teacher: set teacher_accuracy None")
        if not 1 <= self.window_weeks <= 4:
            raise ValueError("window_weeks must be in 1..4 (the pipeline's MAX_WINDOW_WEEKS)")
