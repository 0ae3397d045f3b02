"""Plots beside the JSON (matplotlib, no display): per-run enqueue -> created latency over the
burst for both agents and the floor, the trickle's latencies over time, and CPU and RSS over the
steady-state run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.report import Scenario

COLORS = {"ours": "tab:blue", "official": "tab:red", "official-nodocker": "tab:orange", "floor": "tab:gray"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt: Any, fig: Any, path: Path, labels: Iterable[tuple[Any, str, str, str | None]]) -> Path:
    """Title, axis labels (no y label when None), grid and legend on each (axes, title, x label,
    y label); then the figure is laid out, saved to `path` and closed."""
    for ax, title, xlabel, ylabel in labels:
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if ylabel is not None:
            ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def burst(sc: Scenario, path: Path) -> Path | None:
    cases = [c for c in sc.series if not c.startswith("floor")]
    if not cases:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), squeeze=False)
    labels = []
    for ax, case in zip(axes[0], cases, strict=True):
        for kind, runs in sc.series[case].items():
            for i, run in enumerate(runs):
                points = sorted(run["enqueue_to_created"], key=lambda p: p[0] + p[1])
                ax.plot(range(1, len(points) + 1), [p[1] for p in points], color=COLORS.get(kind, "tab:green"),
                        alpha=1.0 if i == 0 else 0.4, label=kind if i == 0 else None)
        for i, run in enumerate(sc.series.get(f"floor @{case}", [])):
            ax.plot(range(1, len(run["enqueue_to_created"]) + 1), [p[1] for p in run["enqueue_to_created"]],
                    color=COLORS["floor"], linestyle="--", alpha=1.0 if i == 0 else 0.4,
                    label="floor (one client, tight loop)" if i == 0 else None)
        labels.append((ax, f"{sc.title}, W&B latency {case}", "runs, in order of their workload's creation",
                       "enqueue -> workload created (s)"))
    return _finish(plt, fig, path, labels)


def trickle(sc: Scenario, path: Path) -> Path | None:
    cases = sc.series.get("trickle", {})
    if not cases:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, runs in cases.items():
        for i, run in enumerate(runs):
            points = sorted(run["enqueue_to_created"])
            t0 = points[0][0] if points else 0.0
            ax.plot([p[0] - t0 for p in points], [p[1] for p in points], ".-", color=COLORS.get(kind, "tab:green"),
                    alpha=1.0 if i == 0 else 0.4, label=kind if i == 0 else None)
    return _finish(plt, fig, path, [(ax, sc.title, "enqueued at (s)", "enqueue -> Job created (s)")])


def steady(sc: Scenario, path: Path) -> Path | None:
    if not sc.series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(sc.series), figsize=(6 * len(sc.series), 6), squeeze=False)
    labels = []
    for col, (case, kinds) in enumerate(sc.series.items()):
        for kind, runs in kinds.items():
            series = runs[0]["cpu_rss"]
            if not series:
                continue
            t0 = series[0][0]
            axes[0][col].plot([s[0] - t0 for s in series], [s[1] for s in series], color=COLORS.get(kind), label=kind)
            axes[1][col].plot([s[0] - t0 for s in series], [s[2] for s in series], color=COLORS.get(kind), label=kind)
        labels += [(axes[0][col], f"{case}: CPU seconds (cumulative)", "s since the agent started", None),
                   (axes[1][col], f"{case}: RSS (MB)", "s since the agent started", None)]
    return _finish(plt, fig, path, labels)


def draw(scenarios: list[Scenario], directory: Path, stem: str) -> list[Path]:
    out = []
    for sc in scenarios:
        maker = {"burst": burst, "many_queues": burst, "trickle": trickle, "steady": steady}.get(sc.name)
        if maker is None:
            continue
        try:
            made = maker(sc, directory / f"{stem}-{sc.name}.png")
        except ImportError:  # matplotlib is in the bench extra only
            return out
        if made is not None:
            out.append(made)
    return out
