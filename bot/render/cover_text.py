"""The words of a cover in the chat: its plan, its progress, its summary, and the coverage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.cover import CoverJob, CoverPlan

# A summary names this many reasons per source; the rest are counted.
MAX_REASONS = 3


def duration_words(seconds: float) -> str:
    """'40 s', '3 min', '1 h 20 min': how long a person should expect to wait."""
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def plan_text(label: str, plan: CoverPlan, job: CoverJob, note: str = "") -> str:
    """What the bot is about to do: '≈ N pictures in M cells from panoramax, mapillary; this
    takes about T', what it left out, and the place in line."""
    sources = ", ".join(plan.sources)
    pictures = (f"≈ {plan.pictures_estimate:,} pictures in " if plan.pictures_estimate is not None
                else "")
    cells = f"{plan.cells} cell{'s' * (plan.cells != 1)}"
    took = (f"; this takes about {duration_words(plan.seconds_estimate)}"
            if plan.seconds_estimate is not None else "")
    lines = [f"🛰 Covering {label} ({plan.area_km2:.1f} km²): {pictures}{cells} from {sources}"
             f"{took}."]
    lines += [note] if note else []
    lines += [f"Note: {n}." for n in plan.notes]
    lines.append(_line_up(job))
    return "\n".join(lines)


def progress_text(label: str, job: CoverJob) -> str:
    """The one progress message, as the job stands now."""
    if job.finished:
        return summary_text(label, job)
    if job.state == "queued":
        return f"⏳ Cover of {label}. {_line_up(job)}"
    parts = [_source_progress(name, p) for name, p in sorted(job.progress.items())
             if isinstance(p, Mapping)]
    head = "⏹ Cancelling the cover of" if job.progress.get("cancelling") else "🛰 Covering"
    return f"{head} {label}…\n" + "\n".join(parts)


def summary_text(label: str, job: CoverJob) -> str:
    """The end: what was added, skipped and failed, and why, per source."""
    added = sum(int(s.get("added", 0)) for s in job.summary)
    if job.state == "failed":
        head = f"❌ The cover of {label} failed: {job.error or 'the engine did not say why'}."
    elif job.state == "cancelled":
        head = (f"⏹ The cover of {label} was cancelled; what it fetched stays:"
                f" {added:,} reference{'s' * (added != 1)} added.")
    else:
        head = f"✅ Covered {label}: {added:,} reference{'s' * (added != 1)} added."
    return "\n".join([head, *(_source_summary(s) for s in job.summary)])


def coverage_caption(areas: Sequence[tuple[str, int]], cells: int) -> str:
    """'The index covers: Lund, Sweden (58 references); ...', the largest first."""
    if not areas:
        return "The index holds no reference photos yet: an admin can /cover an area."
    total = sum(n for _, n in areas)
    named = "; ".join(f"{name} ({n:,} reference{'s' * (n != 1)})" for name, n in areas)
    return (f"The index covers {total:,} reference photos in {cells} cell{'s' * (cells != 1)}"
            f" of about 1 km: {named}.")


def _line_up(job: CoverJob) -> str:
    if job.state == "running":
        return "It has started."
    if job.state == "queued" and job.position and job.position > 1:
        return f"Queued: {job.position - 1} other cover{'s' * (job.position > 2)} go first."
    return "Queued: it runs next."


def _source_progress(name: str, progress: Mapping[str, Any]) -> str:
    done, total = int(progress.get("cells_done", 0)), int(progress.get("cells_total", 0))
    cells = f"{done}/{total} cells" if total else "listing cells"
    return (f"{name}: {cells}, {int(progress.get('new', 0)):,} pictures fetched,"
            f" {int(progress.get('added', 0)):,} references indexed")


def _source_summary(summary: Mapping[str, Any]) -> str:
    name = summary.get("source", "?")
    if summary.get("error"):
        return f"{name}: {summary['error']}"
    line = (f"{name}: {int(summary.get('found', 0)):,} found, {int(summary.get('new', 0)):,}"
            f" new, {int(summary.get('duplicates', 0)):,} already indexed,"
            f" {int(summary.get('added', 0)):,} references added")
    for what in ("skipped", "failed"):
        reasons = summary.get(what) or {}
        if reasons:
            count = sum(int(n) for n in reasons.values())
            shown = sorted(reasons.items(), key=lambda kv: -int(kv[1]))[:MAX_REASONS]
            why = ", ".join(f"{reason}: {n}" for reason, n in shown)
            more = " …" if len(reasons) > MAX_REASONS else ""
            line += f"; {count} {what} ({why}{more})"
    unfinished = int(summary.get("cells_unfinished", 0) or 0)
    if unfinished:
        line += (f"; {unfinished} cell{'s' * (unfinished != 1)} unfinished (the same /cover"
                 " again finishes them)")
    return line
