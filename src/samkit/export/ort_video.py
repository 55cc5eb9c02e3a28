"""`OnnxSam2VideoPredictor`: `Sam2VideoPredictor` with its model parts on onnxruntime.

    from samkit.export.ort_video import OnnxSam2VideoPredictor
    p = OnnxSam2VideoPredictor("out_dir")          # from samkit.export.sam2_video
    state = p.init_state("frames/")
    p.add_new_points_or_box(state, 0, 1, points=[[430, 200]], labels=[1])
    for frame_idx, obj_ids, logits in p.propagate_in_video(state): ...

The predictor is samkit's torch `Sam2VideoPredictor` itself (every public call, its checks,
the session, the tracker, the memory bank and its bounds: `samkit.video.session`) on a model
adapter, `OrtSam2VideoModel`, whose methods run the exported graphs instead of the torch
modules and return torch tensors: `forward_image` (image encoder), `forward_sam_heads` (prompt
encoder + mask decoder + object pointer), `condition_on_memory` (memory attention),
`encode_new_memory` (memory encoder) and `use_mask_as_output` (mask prompts). The step logic
around them, `Sam2Video.track_step` / `use_multimask` and `select_memories`, runs unchanged on
the adapter, so which memories and pointers a frame reads cannot differ from the torch
predictor. What stays in torch on the host: the tracker's bookkeeping, resizing and hole
filling, and the parameter-free glue of the torch methods (adding `no_mem_embed`, the +-10 mask
logits of a mask prompt and its no-object pointer); memories are stored in bfloat16 on the host
as the torch predictor stores them. Like the torch tracker, the adapter keeps each memory's
key projections while frames read it (`memory_keys.onnx` once per memory, then
`memory_attention_keys.onnx`: `samkit.export.video_keys`) where the export has those graphs
(SAM 2 / 2.1 exports of this samkit); older exports still run, projecting every memory's keys
every frame in `memory_attention.onnx`. `OnnxEdgeTamVideoPredictor` is `EdgeTamVideoPredictor`
(the batched predictor's rules) on an EdgeTAM export. Needs the `onnx` extra (onnxruntime) and
torch.

Numbers: the same as the torch predictor within the tolerances of the `sam2_video` fixtures
(tests/export/test_ort_video.py measures them). Refused with a ValueError: files that are not a
complete export (missing part, another manifest format, a manifest that does not match its
graphs) and settings the graphs do not serve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.build.registry import get_family
from samkit.export.ort_sam import _require_ort
from samkit.export.sam2_video import (
    DECODER_OUTPUTS,
    MEMORY_ENCODER_OUTPUTS,
    read_manifest,
)
from samkit.export.video_keys import KEYS_FILES, MemoryKeyStore
from samkit.modeling.sam2_video import Sam2Video, SamHeads
from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput, ObjectMemory
from samkit.video.edgetam import EdgeTamVideoPredictor
from samkit.video.edgetam_tracker import BatchedTracker
from samkit.video.predictor import Sam2VideoPredictor
from samkit.video.tracker import Sam2Tracker


def _np(x: Tensor) -> np.ndarray:
    """A contiguous numpy copy or view of a tensor: floats as float32, integers as they are."""
    if x.is_floating_point():
        x = x.float()
    return np.ascontiguousarray(x.detach().cpu().numpy())


class OrtSam2VideoModel:
    """The torch `Sam2Video` methods the tracker calls, backed by onnxruntime sessions.

    Args:
        folder: the export folder; manifest: its `video.json` (see `read_manifest`).
        providers: onnxruntime execution providers (default: CPU).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).

    Attributes:
        memory_keys: the memories' kept keys (`samkit.export.video_keys.MemoryKeyStore`,
            L x nh x h*w x hs float32 per memory and object), None without the key graphs.
        reuse_memory_keys: use them (default: where the export has the key graphs).

    Raises:
        ValueError: graphs that do not match the manifest, a key graph missing.
    """

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(
        self,
        folder: Path,
        manifest: dict[str, Any],
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        ort = _require_ort()
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self.manifest = manifest
        self.family = manifest["family"]
        self.sessions = {
            part: ort.InferenceSession(str(folder / name), opts, providers=providers)
            for part, name in manifest["files"].items()
        }
        for k, v in manifest["settings"].items():
            setattr(self, k, v)
        self.high_res_names = list(manifest["high_res_features"])
        enc_out = [o.name for o in self.sessions["image_encoder"].get_outputs()]
        if enc_out != ["image_embed", "image_pos", *self.high_res_names]:
            raise ValueError(
                f"{folder}: image encoder outputs {enc_out} do not match the manifest's "
                f"high-res features {self.high_res_names}"
            )
        shape = self.sessions["image_encoder"].get_inputs()[0].shape
        if shape[-1] != self.image_size:
            raise ValueError(
                f"{folder}: the image encoder takes {shape[-1]} px, the manifest says "
                f"{self.image_size}"
            )
        c = self.hidden_dim
        self.no_mem_embed = torch.tensor(manifest["no_mem_embed"], dtype=torch.float32)
        self.no_mem_embed = self.no_mem_embed.reshape(1, 1, c)
        ptr = manifest.get("no_obj_ptr")
        self.no_obj_ptr = None if ptr is None else torch.tensor(ptr).reshape(1, c)
        self.mask_input_size = tuple(manifest["mask_input_size"])
        # the memories' keys kept between frames (samkit.export.video_keys); an export without
        # the key graphs (older samkit, EfficientTAM, EdgeTAM) projects them every frame
        self.memory_keys: MemoryKeyStore | None = None
        key_files = manifest.get("memory_key_files") or {}
        if key_files:
            if set(key_files) != set(KEYS_FILES):
                raise ValueError(
                    f"{folder}: memory_key_files {sorted(key_files)}, expected {sorted(KEYS_FILES)}"
                )
            for part, name in key_files.items():
                if not (folder / name).is_file():
                    raise ValueError(f"{folder}: part {part!r} ({name}) is missing from the folder")
                self.sessions[part] = ort.InferenceSession(
                    str(folder / name), opts, providers=providers
                )
            self.memory_keys = MemoryKeyStore(self._memory_key_parts)
        # False: every frame runs memory_attention.onnx on the whole bank (as before the key graphs)
        self.reuse_memory_keys = self.memory_keys is not None

    def _memory_key_parts(self, memory: Tensor, pos: Tensor) -> Tensor:
        feeds = {"memory": memory, "memory_pos": pos}
        return self._run("memory_keys", ["memory_keys"], feeds)[0]

    def eval(self) -> OrtSam2VideoModel:
        return self

    def _run(self, part: str, outputs: list[str], feeds: dict[str, Tensor]) -> list[Tensor]:
        session = self.sessions[part]
        # inputs a model does not use are not in its graph (EfficientTAM: `obj_ptr_pos`)
        names = {i.name for i in session.get_inputs()}
        res = session.run(outputs, {k: _np(v) for k, v in feeds.items() if k in names})
        return [torch.from_numpy(r) for r in res]

    # ------------------------------------------------------------------ the model's methods
    def forward_image(self, img_batch: Tensor) -> dict[str, list[Tensor]]:
        """1x3xSxS normalised frame -> {"backbone_fpn": [*high-res, image_embed],
        "vision_pos_enc": [image_pos]} (the tracker reads the last level's position only)."""
        names = ["image_embed", "image_pos", *self.high_res_names]
        embed, pos, *high = self._run("image_encoder", names, {"image": img_batch})
        return {"backbone_fpn": [*high, embed], "vision_pos_enc": [pos]}

    def forward_sam_heads(
        self,
        backbone_features: Tensor,
        point_inputs: Clicks | None = None,
        mask_inputs: Tensor | None = None,
        high_res_features: list[Tensor] | None = None,
        multimask_output: bool = False,
    ) -> SamHeads:
        """As `Sam2Video.forward_sam_heads` (the mask decoder graph)."""
        b = backbone_features.shape[0]
        if point_inputs is not None:
            coords, labels = point_inputs.coords, point_inputs.labels.to(torch.int32)
        else:
            coords = torch.zeros(b, 1, 2)
            labels = -torch.ones(b, 1, dtype=torch.int32)
        has_mask = torch.tensor([0.0])
        mask = torch.zeros(b, 1, *self.mask_input_size)
        if mask_inputs is not None:
            has_mask = torch.tensor([1.0])
            mask = mask_inputs.float()
            if tuple(mask.shape[-2:]) != self.mask_input_size:
                mask = F.interpolate(
                    mask,
                    size=self.mask_input_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            mask = mask.expand(b, -1, -1, -1)
        feeds = {
            "image_embed": backbone_features,
            **dict(zip(self.high_res_names, high_res_features or [])),
            "point_coords": coords.float(),
            "point_labels": labels,
            "mask_input": mask,
            "has_mask_input": has_mask,
            "multimask_output": torch.tensor([1.0 if multimask_output else 0.0]),
        }
        low, high, ptr, score = self._run("mask_decoder", DECODER_OUTPUTS, feeds)
        return SamHeads(low, high, ptr, score)

    def use_mask_as_output(
        self, backbone_features: Tensor, high_res_features: list[Tensor] | None, mask_inputs: Tensor
    ) -> SamHeads:
        """As `Sam2Video.use_mask_as_output` (the mask as +-10 logits; the pointer from the
        mask-downsample and mask decoder graphs)."""
        m = mask_inputs.float()
        high_res = m * 20.0 - 10.0
        low_res = F.interpolate(
            high_res,
            size=(high_res.shape[-2] // 4, high_res.shape[-1] // 4),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        if self.use_obj_ptrs_in_encoder:
            (small,) = self._run("mask_downsample", ["mask_low_res"], {"mask": m})
            obj_ptr = self.forward_sam_heads(
                backbone_features, mask_inputs=small, high_res_features=high_res_features
            ).obj_ptr
        else:
            obj_ptr = torch.zeros(m.shape[0], self.hidden_dim)
        present = torch.any(m.flatten(1) > 0.0, dim=1)[..., None].float()
        obj_scores = 20.0 * present - 10.0
        if self.pred_obj_scores:
            if self.fixed_no_obj_ptr:
                obj_ptr = present * obj_ptr
            obj_ptr = obj_ptr + (1 - present) * self.no_obj_ptr
        return SamHeads(low_res, high_res, obj_ptr, obj_scores)

    def condition_on_memory(
        self,
        feat: Tensor,
        pos: Tensor,
        memories: list[tuple[int, Tensor, Tensor]],
        pointers: list[tuple[int, Tensor]],
        max_ptrs: int,
    ) -> Tensor:
        """As `Sam2Video.condition_on_memory`: `memory_attention_keys.onnx` on the memories' kept
        keys for one object when the export has the key graphs and `reuse_memory_keys`, else
        the memory attention graph (one memory frame runs `memory_attention_1.onnx` where the
        export has it)."""
        b, c = feat.shape[:2]
        if not memories:
            raise ValueError("memory attention needs at least one memory frame")
        feeds = {
            "feat": feat,
            "feat_pos": pos,
            "memory": torch.stack([mm.float() for _, mm, _ in memories], dim=1),
            "memory_tpos_index": torch.tensor([self.num_maskmem - t - 1 for t, _, _ in memories]),
        }
        if pointers:
            offsets = torch.tensor([p for p, _ in pointers])
            feeds["obj_ptrs"] = torch.stack([p.float() for _, p in pointers], dim=1)
            feeds["obj_ptr_pos"] = (offsets / (max_ptrs - 1)).float()
        else:
            feeds["obj_ptrs"] = torch.zeros(b, 0, c)
            feeds["obj_ptr_pos"] = torch.zeros(0)
        # kept keys serve single objects (a batch of objects is a new tensor every frame)
        if self.reuse_memory_keys and self.memory_keys is not None and b == 1:
            part = "memory_attention_keys"
            feeds["memory_keys"] = self.memory_keys.keys(memories)
        else:
            part = "memory_attention"
            if len(memories) == 1 and "memory_attention_1" in self.sessions:
                part = "memory_attention_1"
            feeds["memory_pos"] = torch.stack([mp.float() for _, _, mp in memories], dim=1)
        (out,) = self._run(part, ["conditioned"], feeds)
        return out

    def encode_new_memory(
        self,
        pix_feat: Tensor,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: bool,
    ) -> tuple[Tensor, Tensor]:
        """As `Sam2Video.encode_new_memory` (the memory encoder graph)."""
        feeds = {
            "pix_feat": pix_feat,
            "high_res_masks": high_res_masks,
            "object_score_logits": object_score_logits,
            "is_mask_from_pts": torch.tensor([1.0 if is_mask_from_pts else 0.0]),
        }
        feats, pos = self._run("memory_encoder", MEMORY_ENCODER_OUTPUTS, feeds)
        return feats, pos

    # the torch model's own step logic, run on this adapter (it reads the settings above and
    # calls the methods above)
    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        model: Any = self
        return Sam2Video.use_multimask(model, is_init_cond_frame, num_points)

    def track_step(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        feats: FrameFeatures,
        point_inputs: Clicks | None,
        mask_inputs: Tensor | None,
        memory: ObjectMemory,
        num_frames: int,
        track_in_reverse: bool = False,
        run_mem_encoder: bool = True,
        prev_sam_mask_logits: Tensor | None = None,
    ) -> FrameOutput:
        """`Sam2Video.track_step` on this adapter (arguments and returns there)."""
        if self.memory_keys is not None:
            self.memory_keys.new_frame(frame_idx)
        return Sam2Video.track_step(
            self,  # type: ignore[arg-type]
            frame_idx,
            is_init_cond_frame,
            feats,
            point_inputs,
            mask_inputs,
            memory,
            num_frames,
            track_in_reverse=track_in_reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_sam_mask_logits,
        )


class OnnxSam2VideoPredictor(Sam2VideoPredictor):
    """`Sam2VideoPredictor` (every method, same arguments, returns and errors) on the graphs of
    `samkit.export.sam2_video.export_sam2_video_onnx`.

    Args:
        path: the export folder (or its `video.json`).
        fill_hole_area, non_overlap_masks, clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond: as for `Sam2VideoPredictor`.
        providers: onnxruntime execution providers (default: CPU).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).

    Raises:
        FileNotFoundError: no manifest at `path`.
        ValueError: an incomplete or mismatched export, an export of a family this class
            does not track (the registry's `onnx_video_predictor` names the one that does), a
            negative `fill_hole_area`, a bad `threads`.
    """

    tracker_class: type[Sam2Tracker] = Sam2Tracker  # the torch predictor's tracking rules

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        clear_non_cond_mem_around_input: bool = False,
        add_all_frames_to_correct_as_cond: bool = True,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, int):
            raise ValueError(f"fill_hole_area must be an int >= 0, got {fill_hole_area!r}")
        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        folder, manifest = read_manifest(path)
        fam = get_family(manifest.get("family"))
        cls = fam.load("onnx_video_predictor")
        if not isinstance(self, cls) or self.tracker_class is not cls.tracker_class:
            raise ValueError(
                f"{folder}: {fam.display} export; open it with {cls.__name__}, which tracks "
                f"with the {fam.display} predictor's rules"
            )
        model = OrtSam2VideoModel(folder, manifest, providers, threads)
        self.manifest = manifest
        self.tracker = self.tracker_class(
            model,  # type: ignore[arg-type]
            fill_hole_area,
            non_overlap_masks,
            clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond,
        )

    @property
    def family(self) -> str:
        """The family of the exported model ("sam2", "efficienttam")."""
        return self.manifest["family"]


class OnnxEdgeTamVideoPredictor(OnnxSam2VideoPredictor, EdgeTamVideoPredictor):
    """`EdgeTamVideoPredictor` (the batched predictor's rules EdgeTAM ships, see
    `samkit.video.edgetam_tracker`) on the graphs of an EdgeTAM export; arguments as
    `OnnxSam2VideoPredictor`."""

    tracker_class = BatchedTracker
