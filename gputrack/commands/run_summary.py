"""The summary of a `gputrack run`: its fields (also the `--json` output), and its printing
as a short report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any, TextIO

from gputrack.commands.run_loop import RunResult
from gputrack.commands.run_setup import RunParts
from gputrack.latency import REL_ERROR
from gputrack.outputs.files import is_stdout

TABLE_MIN_WIDTH = 40  # columns: the latency table's stage names and numbers, whole


def make_summary(
    args: argparse.Namespace,
    parts: RunParts,
    run: RunResult,
    image: str | None,
    stopped_by: str | None,
) -> dict[str, Any]:
    """The summary's fields, in the order `--json` prints them. `image`: the --image file
    written (None: not asked for, or not written); `stopped_by`: "Ctrl-C", "SIGTERM" or None."""
    source, detector = parts.source, parts.detector
    deadline = 1000.0 / source.fps
    stage_ms = run.stage_ms
    total = stage_ms["total"]
    roi = args.roi if args.roi is not None else source.window  # a windowed recording's too
    summary: dict[str, Any] = {
        "source": source.name,
        "backend": parts.backend.name,
        "detector": detector.name,
        "frames": total.count,
        "dropped_frames": source.dropped,
        # why the source ended before its end (frames from there on undecodable), or null
        "source_end_reason": source.end_reason,
        "source_notes": list(source.notes),  # e.g. a frame rate assumed for a video
        "fps": source.fps,
        "deadline_ms": round(deadline, 3),
        "deadline_misses": int(run.misses),
        "stage_ms_p50": {k: round(v.percentile(50), 3) for k, v in stage_ms.items() if v.count},
        "stage_ms_p99": {k: round(v.percentile(99), 3) for k, v in stage_ms.items() if v.count},
        # whether p50/p99 are of every frame's latency, or (a long run) of a histogram's,
        # within stage_ms_rel_error of those
        "stage_ms_exact": total.exact,
        "stage_ms_rel_error": 0.0 if total.exact else REL_ERROR,
        "tracks_confirmed": int(parts.tracker.next_id - 1),
        "log": args.log,
        "mot": args.mot,
        "image": image,
        "video": args.video,
        "raw": args.raw,  # a folder of DNG frames
        "nv12": args.nv12,
        "roi": None if roi is None else [roi.x, roi.y, roi.w, roi.h],
    }
    network = getattr(detector, "network", None)
    if network is not None and network.plan is not None:  # the network on gputrack's kernels
        summary["network_graph"] = network.graph_error or "one graph per frame"
    scorer = run.scorer
    if scorer is not None:
        from gputrack.track.mot_eval import finite_or_none

        m = scorer.metrics()
        summary.update(
            mota=finite_or_none(m["mota"]),
            idf1=finite_or_none(m["idf1"]),
            id_switches=int(m["num_switches"]),
            scored_frames=scorer.frames,
        )
    raw = run.outputs.raw
    summary["raw_frames"] = raw.frames if raw is not None else 0
    summary["frame_size"] = list(run.result.size)  # what the ISP made: the window with --roi
    summary["classes"] = list(parts.names)  # the logs' class numbers, in words
    # what the ISP's colour came from: a DNG source's own, the options, or the defaults
    wb = parts.colour["wb"]
    summary["white_balance"] = wb if isinstance(wb, str) else list(wb)
    summary["colour_matrix"] = ("camera" if "ccm" in parts.colour else
                                "given" if args.ccm is not None else "default")  # fmt: skip
    summary["interrupted"] = stopped_by is not None
    summary["stopped_by"] = stopped_by
    summary["notes"] = _recording_notes(args) if raw is not None else []
    summary["notes"] += getattr(detector, "notes", [])  # the model's import (batch taken as 1)
    return summary


def report_summary(summary: dict[str, Any], as_json: bool, on_stdout: bool) -> None:
    """Print the summary, as JSON or as the short report. With the track log, the MOT result
    or the NV12 frames on stdout (--mot /dev/stdout | reader) it goes beside them, on
    stderr, so the stream holds that output only."""
    report = sys.stderr if on_stdout else sys.stdout
    if as_json:
        json.dump(summary, report, indent=2)
        report.write("\n")
    else:
        print_summary(summary, report)


def _recording_notes(args: argparse.Namespace) -> list[str]:
    """What a --raw recording does not state of the ISP this run had: given again on
    playback, it develops into the same images (a DNG has no field raw developers apply)."""
    unstated = [f"--tone {args.tone}" if args.tone is not None else None,
                "--lens-shading " + ",".join(f"{k:g}" for k in args.lens_shading)
                if args.lens_shading is not None and any(args.lens_shading) else None]
    return [f"--raw {args.raw}: the DNG frames do not state {o}; give it again to play them "
            "back as this run developed them" for o in unstated if o]  # fmt: skip


def print_summary(s: dict[str, Any], stream: TextIO) -> None:
    """The summary as a short report for a person: heading, latency table, then a line for
    each thing worth telling."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from gputrack.track.mot_eval import percent

    # no guessed colours in names and paths; lines left whole (a file or a pipe gets no
    # breaks at 80 columns in mid-phrase: the terminal wraps what it shows)
    console = Console(file=stream, highlight=False, soft_wrap=True)
    # The heading on a line of its own: as a table title it wraps to the narrow table's width.
    console.print(
        f"gputrack run: {s['frames']} frame{'' if s['frames'] == 1 else 's'} of "
        f"{escape(s['source'])} on "
        f"{s['backend']} (deadline {s['deadline_ms']:.2f} ms)"
    )
    table = Table()
    for col in ("stage", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for k in s["stage_ms_p50"]:
        table.add_row(k, f"{s['stage_ms_p50'][k]:.2f}", f"{s['stage_ms_p99'][k]:.2f}")
    # never narrower than its numbers (COLUMNS=20 had cut them to "0.…"): a line longer
    # than a narrow terminal wraps there, a number cut short is lost
    if console.width < TABLE_MIN_WIDTH:
        console = Console(file=stream, highlight=False, soft_wrap=True, width=TABLE_MIN_WIDTH)
    console.print(table)
    if not s["stage_ms_exact"]:
        from gputrack import latency

        console.print(f"latency: past {latency.EXACT_FRAMES} frames p50 and p99 come from a "
                      f"histogram, within {100 * s['stage_ms_rel_error']:g} % of the exact "
                      "figures")  # fmt: skip
    console.print(
        f"detector: {escape(s['detector'])}; {s['tracks_confirmed']} tracks confirmed; "
        f"{s['deadline_misses']} frames over the deadline; "
        f"{s['dropped_frames']} dropped by the source"
    )
    for note in (*s["source_notes"], *filter(None, [s["source_end_reason"]])):
        console.print(f"source: {escape(note)}")
    for note in s["notes"]:
        console.print(f"note: {escape(note)}")
    if "network_graph" in s:
        console.print(f"network: {escape(s['network_graph'])}")
    if "mota" in s:
        console.print(
            f"tracking vs ground truth: MOTA {percent(s['mota'])}, IDF1 "
            f"{percent(s['idf1'])}, {s['id_switches']} identity switches"
        )
    wrote = [p for p in (s["log"], s["mot"], s["image"], s["video"], s["nv12"]) if p]
    if s["raw"]:
        wrote.append(f"{s['raw']} ({s['raw_frames']} DNG frames)")
    if s["nv12"]:  # headerless frames: what reads them must be told their size and rate
        w, h = s["frame_size"]
        read_from = "- (piped)" if is_stdout(s["nv12"]) else shlex.quote(s["nv12"])
        # one line, quoted for the shell: a command to paste, not wrapped text
        console.print(escape(f"--nv12 is {w}x{h} at {s['fps']:g} fps; plays with: ffplay -f "
                             f"rawvideo -pixel_format nv12 -video_size {w}x{h} -framerate "
                             f"{s['fps']:g} {read_from}"), soft_wrap=True)  # fmt: skip
    if wrote:
        console.print("wrote " + ", ".join(escape(p) for p in wrote))
    if s.get("interrupted"):
        console.print(f"stopped by {s['stopped_by']}; everything above is complete")
