"""Time every visual evidence tool per picture on the WikiMEL pictures, and check face counts and order.

    python3 benchmarks/bench_evidence.py [--data ../shared/data] [--out runs/bench_evidence.json]

Writes JSON (numbers, versions, commit and CPU, machine load) and a Markdown table beside it, and prints the table.
Timings are wall-clock on whatever else the machine is doing: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vplink.agent.evidence import ALL_TOOLS, EvidenceTools, collect_evidence  # noqa: E402
from vplink.agent.visual_prompt import VisualPrompt  # noqa: E402
from vplink.core.jsonl import atomic_write, read_jsonl, write_json  # noqa: E402
from vplink.core.provenance import provenance  # noqa: E402
from vplink.retrieval.images import load_image  # noqa: E402


def _versions(tools: EvidenceTools) -> dict[str, str]:
    import cv2
    import PIL
    import torch
    from importlib.metadata import version

    return {"python": platform.python_version(), "opencv": cv2.__version__, "torch": torch.__version__,
            "pillow": PIL.__version__, "rapidocr-onnxruntime": version("rapidocr-onnxruntime"),
            "onnxruntime": version("onnxruntime"), "face_detector": tools.face_detector.name,
            "classifier": tools.classifier.name, "ocr": tools.text_reader.name}


def _stats(values: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    ordered = sorted(values)
    stats = {"mean_ms": 1000 * statistics.fmean(ordered), "median_ms": 1000 * statistics.median(ordered),
             "p90_ms": 1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
             "total_s": sum(ordered), "n": len(ordered)}
    if cpu is not None:
        stats["cpu_mean_ms"] = 1000 * statistics.fmean(cpu)
    return stats


def time_tools(images: dict[str, object], tools: EvidenceTools,
               repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per picture for each tool run alone on the whole picture (best of ``repeats``).

    The timer wraps the whole ``collect_evidence`` call, so geometry (pure arithmetic) measures the
    call's own overhead: the baseline every other tool is compared with.
    """
    wall: dict[str, list[float]] = {tool: [] for tool in ALL_TOOLS}
    cpu: dict[str, list[float]] = {tool: [] for tool in ALL_TOOLS}
    for image in images.values():
        for tool in ALL_TOOLS:
            runs = []
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                assert collect_evidence(VisualPrompt.of(image, None), tools=(tool,), toolbox=tools).run(tool).ok, tool
                runs.append((time.perf_counter() - w0, time.process_time() - c0))
            best = min(runs)
            wall[tool].append(best[0])
            cpu[tool].append(best[1])
    return wall, cpu


def face_report(data: Path, images: dict[str, object], tools: EvidenceTools) -> dict[str, object]:
    """Face counts on WikiMEL pictures against the caption's mentions, and order on the boxed group photos."""
    rows = read_jsonl(data / "wikimel" / "with_images.jsonl")
    mentions: dict[str, int] = {}
    for row in rows:
        mentions[row["image"]] = mentions.get(row["image"], 0) + 1
    per_image = []
    for name, image in images.items():
        found = collect_evidence(VisualPrompt.of(image, None), tools=("faces",), toolbox=tools).faces
        per_image.append({"image": name, "mentions": mentions[name], "faces": found.count,
                          "scores_left_to_right": [face.score for face in found.faces]})
    groups = [row for row in per_image if row["mentions"] > 1]
    singles = [row for row in per_image if row["mentions"] == 1]
    ordering = []
    for row in read_jsonl(data / "people" / "photos.jsonl"):
        if row["box"] is None:
            continue
        image = load_image(data / "people" / row["image"])
        found = collect_evidence(VisualPrompt.of(image, row["box"]), tools=("faces",), toolbox=tools).faces
        ordering.append({"id": row["id"], "position": found.position, "confidence": found.confidence,
                         "expected": "1st" if row["id"].endswith("-left") else "2nd"})
    return {
        "per_image": per_image,
        "group_pictures": len(groups),
        "group_count_equals_mentions": sum(row["faces"] == row["mentions"] for row in groups),
        "group_faces_found": sum(row["faces"] for row in groups),
        "group_mentions": sum(row["mentions"] for row in groups),
        "single_pictures": len(singles),
        "single_exactly_one_face": sum(row["faces"] == 1 for row in singles),
        "single_no_face": sum(row["faces"] == 0 for row in singles),
        "single_more_faces": sum(row["faces"] > 1 for row in singles),
        "ordering": ordering,
        "ordering_correct": sum((row["position"] or "").startswith(row["expected"]) for row in ordering),
    }


def table(result: dict[str, object]) -> str:
    """The human-readable Markdown summary."""
    lines = ["| tool | wall ms/picture (mean) | median | p90 | CPU ms (mean) | x geometry (wall) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for tool, row in result["tools"].items():
        lines.append(f"| {tool} | {row['mean_ms']:.2f} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | "
                     f"{row['cpu_mean_ms']:.2f} | {row['ratio_to_geometry']:,.0f} |")
    faces = result["faces"]
    lines += ["", f"Pictures: {result['pictures']} (WikiMEL with images); load average at start "
                  f"{result['machine']['load_average_start']}, at end {result['machine']['load_average_end']}; "
              f"model threads: {result['machine']['threads']}.",
              f"Group pictures (>1 mention): faces found = mentions on {faces['group_count_equals_mentions']} of "
              f"{faces['group_pictures']}; {faces['group_faces_found']} faces for {faces['group_mentions']} mentions.",
              f"Single-mention pictures: exactly one face on {faces['single_exactly_one_face']} of "
              f"{faces['single_pictures']} (none: {faces['single_no_face']}, more: {faces['single_more_faces']}).",
              f"Marked-person order on the boxed group photos: {faces['ordering_correct']} of "
              f"{len(faces['ordering'])} right."]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write its JSON and table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_evidence.json")
    parser.add_argument("--repeats", type=int, default=1, help="runs per tool and picture; the best counts")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch and ONNX Runtime (0: the libraries' defaults)")
    args = parser.parse_args()

    rows = read_jsonl(args.data / "wikimel" / "with_images.jsonl")
    names = list(dict.fromkeys(row["image"] for row in rows))
    start_load = os.getloadavg()[0]
    started = time.perf_counter()
    load_times = []
    images = {}
    for name in names:
        t0 = time.perf_counter()
        images[name] = load_image(args.data / "wikimel" / name)
        load_times.append(time.perf_counter() - t0)
    tools = EvidenceTools(threads=args.threads or None)
    warm = next(iter(images.values()))
    model_load = {}
    for tool in ALL_TOOLS:  # first runs load the models: timed apart, kept out of the per-picture numbers
        model_load[tool] = collect_evidence(VisualPrompt.of(warm, None), tools=(tool,), toolbox=tools).run(tool).seconds
    wall, cpu = time_tools(images, tools, args.repeats)
    result = {
        "benchmark": "bench_evidence", "pictures": len(images), "repeats": args.repeats,
        "tools": {tool: _stats(wall[tool], cpu[tool]) for tool in ALL_TOOLS},
        "image_load": _stats(load_times),
        "first_run_with_model_load_s": model_load,
        "faces": face_report(args.data, images, tools),
        "versions": _versions(tools), "provenance": provenance(),
        "machine": {"cpus": os.cpu_count(), "load_average_start": round(start_load, 2),
                    "load_average_end": round(os.getloadavg()[0], 2),
                    "threads": args.threads or "library defaults", "torch_threads_default": _torch_threads()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    base = result["tools"]["geometry"]["mean_ms"]
    for row in result["tools"].values():
        row["ratio_to_geometry"] = row["mean_ms"] / base
    write_json(args.out, result)
    text = table(result)
    with atomic_write(args.out.with_suffix(".md")) as handle:
        handle.write(text + "\n")
    print(text)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
