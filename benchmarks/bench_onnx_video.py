"""The onnxruntime video predictor next to the torch one: seconds per tracked frame, 1 and 3 objects.

A randomly initialised sam2.1_hiera_t (float32, built from the variant config; the timing does
not depend on the weights) is exported with `samkit.export.sam2_video.export_sam2_video_onnx`;
`Sam2VideoPredictor` (torch), `OnnxSam2VideoPredictor` (onnxruntime, CPU provider, the memories'
keys kept between frames: `samkit.export.video_keys`) and the same ORT predictor with
`reuse_memory_keys = False` (every frame projects the whole bank in `memory_attention.onnx`, as
before the key graphs) then track the same synthetic 960x540 frames with the same clicks on
frame 0. Seconds per frame are timed once the memory bank is full (frame >= num_maskmem: the
conditioning frame and num_maskmem - 1 past frames), the three alternating A B C A B C in one
process with the same thread count, so their ratios hold on a loaded machine; the memory
attention's share (`condition_on_memory`) is timed on the same frames. The largest logit
difference to the torch run is printed as a check.

    python -m benchmarks.bench_onnx_video                       # 1 and 3 objects, 2 threads
    python -m benchmarks.bench_onnx_video --frames 8 --repeats 2 --objects 1 3 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_video import synthetic_frames
from benchmarks.common import write_json


def track(
    pred, frames: list[np.ndarray], n_obj: int
) -> tuple[float, float, float, list[torch.Tensor]]:
    """Mean wall seconds per frame, of its memory attention and process CPU seconds per frame
    (one thread: less sensitive to a loaded machine than wall time) once the memory bank is
    full, and every frame's logits."""
    state = pred.init_state(frames)
    for k in range(n_obj):
        pred.add_new_points_or_box(state, 0, k + 1, points=[[380 + 150 * k, 270]], labels=[1])
    model = pred.model
    warm = model.num_maskmem
    attention = [0.0]
    run = model.condition_on_memory

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = run(*args, **kwargs)
        attention[0] += time.perf_counter() - t0
        return out

    model.condition_on_memory = timed  # the tracking step calls the instance attribute
    times, att, cpu, logits = [], [], [], []
    try:
        t_prev, c_prev = time.perf_counter(), time.process_time()
        for f, _, masks in pred.propagate_in_video(state):
            now, c_now = time.perf_counter(), time.process_time()
            if f >= warm:
                times.append(now - t_prev)
                cpu.append(c_now - c_prev)
                att.append(attention[0])
            attention[0] = 0.0
            logits.append(masks.clone())
            t_prev, c_prev = time.perf_counter(), time.process_time()
    finally:
        del model.condition_on_memory
    if not times:
        raise SystemExit(f"--frames must be > {warm} (num_maskmem) for a frame with a full bank")
    return float(np.mean(times)), float(np.mean(att)), float(np.mean(cpu)), logits


def attention_graphs(
    model: torch.nn.Module, folder: str, threads: int, rounds: int
) -> dict[str, float]:
    """Seconds per call of the memory-attention graphs alone on a full bank (num_maskmem frames,
    16 pointers, 1 object), A B C in turn: the whole-bank graph, the kept-key graph, the
    kept-key graph without late values (exported here to measure them), and one run of
    `memory_keys.onnx` (paid once per stored memory)."""
    import onnxruntime as ort

    from samkit.export.sam import _export
    from samkit.export.video_keys import VideoKeyedMemoryAttention, example_key_inputs
    from samkit.export.video_parts import example_inputs, traceable_copy

    traced = traceable_copy(model)
    att = example_inputs(traced)["attention"]
    keyed = example_key_inputs(traced, att)["attention"]
    axes = {
        "feat": {0: "objects"},
        "feat_pos": {0: "objects"},
        "memory": {0: "objects", 1: "memory_frames"},
        "memory_keys": {1: "objects", 3: "memory_tokens"},
        "memory_tpos_index": {0: "memory_frames"},
        "obj_ptrs": {0: "objects", 1: "pointers"},
        "obj_ptr_pos": {0: "pointers"},
        "conditioned": {0: "objects"},
    }
    no_late = Path(folder) / "memory_attention_keys_no_late_values.onnx"
    with torch.no_grad():
        module = VideoKeyedMemoryAttention(traced, late_values=False)
        _export(module, tuple(keyed.values()), no_late, list(keyed), ["conditioned"], axes, 17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    files = {
        "whole_bank": "memory_attention.onnx",
        "kept_keys": "memory_attention_keys.onnx",
        "kept_keys_no_late_values": no_late.name,
        "memory_keys_once": "memory_keys.onnx",
    }
    sess = {k: ort.InferenceSession(str(Path(folder) / f), opts) for k, f in files.items()}
    g = torch.Generator().manual_seed(0)
    c, cm = model.hidden_dim, model.mem_dim
    h, w = model.sam_prompt_encoder.image_embedding_size
    nf = model.num_maskmem

    def r(*shape: int) -> np.ndarray:
        return torch.randn(*shape, generator=g).numpy()

    mem, mem_pos = r(1, nf, cm, h, w), r(1, nf, cm, h, w)
    base = {
        "feat": r(1, c, h, w),
        "feat_pos": r(1, c, h, w),
        "memory": mem,
        "memory_tpos_index": np.arange(nf, dtype=np.int64),
        "obj_ptrs": r(1, 16, c),
        "obj_ptr_pos": (np.arange(16) / 15).astype(np.float32),
    }
    one = {"memory": mem[:, 0], "memory_pos": mem_pos[:, 0]}
    parts = [
        sess["memory_keys_once"].run(None, {"memory": mem[:, i], "memory_pos": mem_pos[:, i]})[0]
        for i in range(nf)
    ]
    feeds = {
        "whole_bank": {**base, "memory_pos": mem_pos},
        "kept_keys": {**base, "memory_keys": np.concatenate(parts, axis=3)},
        "memory_keys_once": one,
    }
    feeds["kept_keys_no_late_values"] = feeds["kept_keys"]
    times: dict[str, list[float]] = {k: [] for k in files}
    outs = {}
    cpu: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(rounds):
        for k in files:
            t0, c0 = time.perf_counter(), time.process_time()
            outs[k] = sess[k].run(None, feeds[k])[0]
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    res = {f"{k}_s": min(v) for k, v in times.items()}
    res.update({f"{k}_cpu_s": min(v) for k, v in cpu.items()})
    res["kept_vs_whole_max_diff"] = float(np.abs(outs["kept_keys"] - outs["whole_bank"]).max())
    print(
        "memory attention graphs alone, full bank, 1 object, s/call: "
        + ", ".join(f"{k} {v:.3f}" for k, v in res.items() if k.endswith("_s")),
        file=sys.stderr,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="sam2.1_hiera_t")
    ap.add_argument("--objects", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--frames", type=int, default=11, help="frames tracked per run")
    ap.add_argument("--repeats", type=int, default=2, help="A B rounds per object count")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    ap.add_argument("--no-graphs", action="store_true", help="skip the attention graphs alone")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from samkit import build_sam2_video_predictor
    from samkit.export.ort_video import OnnxSam2VideoPredictor
    from samkit.export.sam2_video import export_sam2_video_onnx

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tp = build_sam2_video_predictor(args.variant, fill_hole_area=0)
    frames = synthetic_frames(args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_sam2_video_onnx(tp.model, tmp)
        export_s = time.perf_counter() - t0
        op = OnnxSam2VideoPredictor(tmp, fill_hole_area=0, threads=args.threads)
        if not op.model.reuse_memory_keys:
            raise SystemExit("the export has no memory-key graphs")
        graphs = {} if args.no_graphs else attention_graphs(tp.model, tmp, args.threads, 2)
        for n_obj in args.objects:
            t: dict[str, list[tuple[float, float, float]]] = {
                "torch": [],
                "ort": [],
                "ort_full": [],
            }
            diff = 0.0
            for _ in range(args.repeats):
                for name in t:
                    op.model.reuse_memory_keys = name == "ort"
                    pred = tp if name == "torch" else op
                    frame_s, att_s, cpu_s, logits = track(pred, frames, n_obj)
                    t[name].append((frame_s, att_s, cpu_s))
                    if name == "torch":
                        ref = logits
                    else:
                        diff = max(
                            diff, max(float((x - y).abs().max()) for x, y in zip(ref, logits))
                        )
            op.model.reuse_memory_keys = True
            best = {k: min(v) for k, v in t.items()}  # the repeat with the fastest frame
            row = {
                "variant": args.variant,
                "objects": n_obj,
                "threads": args.threads,
                "timed_frames": max(0, args.frames - op.model.num_maskmem),
                **{f"{k}_s_per_frame": v[0] for k, v in best.items()},
                **{f"{k}_attention_s_per_frame": v[1] for k, v in best.items()},
                **{f"{k}_cpu_s_per_frame": min(x[2] for x in t[k]) for k in t},
                "ort_over_torch": best["ort"][0] / best["torch"][0],
                "ort_full_over_torch": best["ort_full"][0] / best["torch"][0],
                "ort_over_ort_full": best["ort"][0] / best["ort_full"][0],
                "ort_attention_over_ort_full": best["ort"][1] / best["ort_full"][1],
                "cpu_ort_over_torch": min(x[2] for x in t["ort"]) / min(x[2] for x in t["torch"]),
                "cpu_ort_full_over_torch": min(x[2] for x in t["ort_full"])
                / min(x[2] for x in t["torch"]),
                "max_logit_diff": diff,
            }
            rows.append(row)
            print(
                f"{args.variant} {n_obj} obj, s/frame (memory attention): "
                + ", ".join(f"{k} {v[0]:.3f} ({v[1]:.3f})" for k, v in best.items())
                + f"; ORT/torch {row['ort_over_torch']:.2f}, ORT without kept keys/torch "
                f"{row['ort_full_over_torch']:.2f}, kept/not kept {row['ort_over_ort_full']:.3f} "
                f"(attention {row['ort_attention_over_ort_full']:.3f}); CPU s/frame "
                + ", ".join(f"{k} {row[k + '_cpu_s_per_frame']:.3f}" for k in t)
                + f"; max logit diff {diff:.1e}",
                file=sys.stderr,
            )
    write_json("onnx_video", {"rows": rows, "graphs": graphs, "export_s": export_s}, args.out)


if __name__ == "__main__":
    main()
