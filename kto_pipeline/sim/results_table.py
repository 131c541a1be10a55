"""The main job's printed table: true held-out accuracy, thumbs, eval metrics and promotion per
week and arm, from the results `run_simulation` returns."""

from __future__ import annotations

from typing import Any

import pandas as pd


def results_table(results: dict[str, Any]) -> str:
    frame = pd.DataFrame(results["rows"])
    base = results["base"]["accuracy"]
    head = f"base model held-out accuracy {base:.3f} ({results['base']['n_samples']} samples at T=1)\n"
    cols = [
        "week",
        "arm",
        "traffic_accuracy",
        "thumbs_up_rate",
        "steps",
        "candidate_accuracy",
        "reward_accuracy",
        "margin",
        "judge_win_rate",
        "promoted",
        "champion_accuracy",
        "synthetic_rows",
        "pii_leaked",
    ]
    frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, "win_rate_low", "win_rate_high", *cols])))
    # The judge's win rate of the candidate against the champion (ties half) and its 95% interval.
    frame["judge_win_rate"] = [
        "n/a" if pd.isna(w) else f"{w:.3f} [{lo:.2f}, {hi:.2f}]"
        for w, lo, hi in zip(frame["win_rate"], frame["win_rate_low"], frame["win_rate_high"])
    ]
    return head + frame[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
