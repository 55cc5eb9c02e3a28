"""SAM 3's video tracker: samkit's SAM 2 video model (`Sam2Video`) with SAM 3's changes.

The official `Sam3TrackerBase` / `Sam3TrackerPredictor` (sam3 0.1.4) is SAM 2's tracker with:
no image encoder of its own (it reads the detector backbone's SAM 2 neck levels), 1008 px
inputs on a stride-14 grid (72x72 tokens, 288x288 low-res masks, 1152x1152 mask inputs), a
memory encoder whose mask downsampler first resizes masks to 1152x1152 (bilinear, antialiased;
`SimpleMaskDownSampler(interpol_size=[1152, 1152])`), and **memory selection**
(`use_memory_selection`, after SAM2Long): a tracked frame attends only to the past
non-conditioning frames whose `eff_iou_score` = mean over the state's objects of
`(2 * sigmoid(object_score) - 1 if object_score > 0 else 0) * best IoU prediction` exceeds
`mf_threshold` (0.01), scanning back from the previous frame (at most
`min(num_frames, max_obj_ptrs_in_encoder) - 1` of them), plus always the previous frame; the same
list gives the object pointers (`frame_filter`, `_prepare_memory_conditioned_features`).

State-dict names: `Sam3Tracker` keeps samkit's SAM 2 names (`memory_attention.*`,
`memory_encoder.*`); the checkpoint's `tracker.transformer.encoder.*` and
`tracker.maskmem_backbone.*` map onto them one to one (`official_to_samkit_key`), every other
`tracker.*` name is the same. The memory attention layers, memory encoder and SAM heads are
samkit's SAM 2 modules, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.memory_attention import MemoryAttention
from samkit.modeling.memory_encoder import MaskDownSampler, MemoryEncoder
from samkit.modeling.memory_selection import select_closest_cond_frames
from samkit.modeling.prompt_encoder import PromptEncoder
from samkit.modeling.sam2_video import Sam2Video
from samkit.modeling.video_memory import Clicks, FrameFeatures, FrameOutput, ObjectMemory

# official tracker key prefix -> samkit's SAM 2 prefix
_KEY_MAP = (("transformer.encoder.", "memory_attention."), ("maskmem_backbone.", "memory_encoder."))


def official_to_samkit_key(key: str) -> str:
    """A `tracker.`-stripped official key as a `Sam3Tracker` state-dict key."""
    for a, b in _KEY_MAP:
        if key.startswith(a):
            return b + key[len(a) :]
    return key


def samkit_to_official_key(key: str) -> str:
    """The inverse of `official_to_samkit_key`."""
    for a, b in _KEY_MAP:
        if key.startswith(b):
            return a + key[len(b) :]
    return key


class ResizingMaskDownSampler(MaskDownSampler):
    """SAM 2's mask downsampler that first resizes Bx1xHxW masks to `interpol_size`
    (bilinear, antialiased), as the official `SimpleMaskDownSampler(interpol_size=...)`."""

    def __init__(self, *args: object, interpol_size: tuple[int, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.interpol_size = tuple(interpol_size)

    def forward(self, x: Tensor) -> Tensor:
        dtype = next(self.encoder.parameters()).dtype
        if tuple(x.shape[-2:]) != self.interpol_size:
            x = F.interpolate(
                x.float(),
                size=self.interpol_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return self.encoder(x.to(dtype))  # resized in float32, run in the weights' dtype


@dataclass(eq=False)
class TrackerFrameOutput(FrameOutput):
    """`FrameOutput` plus the memory-selection scores of the official SAM 3 tracker.

    Attributes:
        iou_score: Bx1 best predicted IoU (1 for a mask prompt).
        eff_iou_score: the state's memory score (a 0-d tensor; see the module doc).
    """

    iou_score: Tensor | None = None
    eff_iou_score: Tensor | None = None


class Sam3Tracker(Sam2Video):
    """SAM 3's tracker (official `Sam3TrackerPredictor` in evaluation).

    Args:
        sam_prompt_encoder, sam_mask_decoder, memory_attention, memory_encoder: samkit's SAM 2
            modules with SAM 3's sizes.
        image_size: 1008; backbone_stride: 14.
        use_memory_selection, mf_threshold: SAM 3's memory selection (module doc).
        **kwargs: the remaining `Sam2Video` settings (the SAM 3 builder passes the official
            ones).
    """

    def __init__(
        self,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        memory_attention: MemoryAttention,
        memory_encoder: MemoryEncoder,
        *,
        image_size: int = 1008,
        backbone_stride: int = 14,
        use_memory_selection: bool = True,
        mf_threshold: float = 0.01,
        **kwargs: object,
    ) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]  # the detector backbone gives the features
            sam_prompt_encoder,
            sam_mask_decoder,
            memory_attention,
            memory_encoder,
            image_size=image_size,
            **kwargs,  # type: ignore[arg-type]
        )
        del self.image_encoder
        self.backbone_stride = backbone_stride
        self.low_res_mask_size = image_size // backbone_stride * 4
        self.input_mask_size = self.low_res_mask_size * 4
        self.use_memory_selection = use_memory_selection
        self.mf_threshold = mf_threshold

    @property
    def variant(self) -> str:
        return "sam3_tracker"

    # ------------------------------------------------------------------ memory selection
    def frame_filter(
        self, memory: ObjectMemory, frame_idx: int, num_frames: int, reverse: bool
    ) -> list[int]:
        """Past non-conditioning frames worth attending to, oldest first (official
        `frame_filter` with stride 1); empty on the first frame of the direction."""
        if (frame_idx == 0 and not reverse) or (frame_idx == num_frames - 1 and reverse):
            return []
        max_num = min(num_frames, self.max_obj_ptrs_in_encoder)
        step = 1 if reverse else -1
        must = frame_idx + 1 if reverse else frame_idx - 1
        end = num_frames if reverse else 0
        valid: list[int] = []
        for i in range(frame_idx + (1 if reverse else -1), end, step):
            out = memory.non_cond_frame_outputs.get(i)
            score = getattr(out, "eff_iou_score", None)
            if score is None:
                continue
            if float(score) > self.mf_threshold:
                valid.insert(0, i)
            if len(valid) >= max_num - 1:
                break
        if must not in valid:
            valid.append(must)
        return valid

    def select_memories(
        self, frame_idx: int, memory: ObjectMemory, num_frames: int, reverse: bool
    ) -> tuple[list[tuple[int, Tensor, Tensor]], list[tuple[int, Tensor]], int]:
        """Memories and pointers of a non-initial frame, as
        `samkit.modeling.memory_selection.select_memories` returns them, chosen the SAM 3 way
        (memory selection on; otherwise the SAM 2 rule)."""
        if not self.use_memory_selection:
            from samkit.modeling.memory_selection import select_memories

            return select_memories(self, frame_idx, memory, num_frames, reverse)
        cond, non_cond = memory.cond_frame_outputs, memory.non_cond_frame_outputs
        if not cond:
            raise ValueError(f"frame {frame_idx}: no conditioning frame to track from")
        selected, unselected = select_closest_cond_frames(
            frame_idx, cond, self.max_cond_frames_in_attn
        )
        valid = self.frame_filter(memory, frame_idx, num_frames, reverse)
        sign = -1 if reverse else 1
        prevs: list[tuple[int, FrameOutput | None]] = [(0, o) for o in selected.values()]
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos
            if t_rel > len(valid):
                continue
            t = valid[-t_rel]
            out = non_cond.get(t)
            prevs.append((t_pos, out if out is not None else unselected.get(t)))
        memories = [
            (t_pos, o.maskmem_features, o.maskmem_pos_enc)
            for t_pos, o in prevs
            if o is not None and o.maskmem_features is not None
        ]
        max_ptrs = min(num_frames, self.max_obj_ptrs_in_encoder)
        ptr_cond = {
            t: o for t, o in selected.items() if (t >= frame_idx if reverse else t <= frame_idx)
        }
        pointers = [((frame_idx - t) * sign, o.obj_ptr) for t, o in ptr_cond.items()]
        for t_diff in range(1, max_ptrs):
            if t_diff >= len(valid):
                break
            t = valid[-t_diff]
            o = non_cond.get(t, unselected.get(t))
            if o is not None:
                pointers.append((t_diff, o.obj_ptr))
        return memories, pointers, max_ptrs

    # ------------------------------------------------------------------ one frame
    def track_step(  # type: ignore[override]
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
        use_prev_mem_frame: bool = True,
    ) -> TrackerFrameOutput:
        """One frame of a batch of B objects (official SAM 3 `track_step` in evaluation).

        Arguments as `Sam2Video.track_step`; a mask prompt (Bx1xSxS, S = `input_mask_size`) is
        always used as the output. `use_prev_mem_frame` False conditions on no memory even on a
        tracked frame (the official click path, `Sam3TrackerPredictor.add_new_points_or_box`
        with `use_prev_mem_frame=False`: features + `no_mem_embed`). Returns a
        `TrackerFrameOutput` (memory features in float32; the official session stores them in
        bfloat16).
        """
        pix, high_res = feats.image_embed, feats.high_res_feats
        if mask_inputs is not None:
            out = self.use_mask_as_output(pix, high_res, mask_inputs)
            ious = torch.ones(pix.shape[0], 1, device=pix.device)
        else:
            if is_init_cond_frame or not use_prev_mem_frame:
                cond = pix + self.no_mem_embed.reshape(1, -1, 1, 1)
            else:
                memories, pointers, max_ptrs = self.select_memories(
                    frame_idx, memory, num_frames, track_in_reverse
                )
                cond = self.condition_on_memory(pix, feats.image_pos, memories, pointers, max_ptrs)
            if prev_sam_mask_logits is not None:
                mask_inputs = prev_sam_mask_logits
            n_pts = 0 if point_inputs is None else len(point_inputs)
            captured: list[Tensor] = []
            hook = self.sam_mask_decoder.register_forward_hook(
                lambda _m, _i, o: captured.append(o[1])
            )
            try:
                out = self.forward_sam_heads(
                    cond,
                    point_inputs,
                    mask_inputs,
                    high_res,
                    self.use_multimask(is_init_cond_frame, n_pts),
                )
            finally:
                hook.remove()
            ious = captured[-1].float()
        iou_score = ious.max(-1).values
        scores = out.object_score_logits
        norm = torch.where(scores > 0, scores.sigmoid() * 2 - 1, torch.zeros_like(scores))
        result = TrackerFrameOutput(
            pred_masks=out.low_res_masks,
            obj_ptr=out.obj_ptr,
            object_score_logits=scores,
            pred_masks_high_res=out.high_res_masks,
            iou_score=iou_score,
            eff_iou_score=(norm * iou_score).mean(),
        )
        if run_mem_encoder and self.num_maskmem > 0:
            result.maskmem_features, result.maskmem_pos_enc = self.encode_new_memory(
                pix, out.high_res_masks, scores, point_inputs is not None
            )
        return result
