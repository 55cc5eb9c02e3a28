"""Fine-tuning HQ-SAM as the official code does (`segment_anything_hq`, `train/train.py`).

HQ-SAM is trained from a frozen SAM: only the parts the HQ output adds are learnt, the HQ token
and its MLP and the global-local fusion layers of the mask decoder (`HQ_PARTS`); the image
encoder, the prompt encoder and SAM's own decoder (its tokens, transformer, upscaling, IoU head)
keep their weights. The loss is on the HQ mask alone (the official training calls the decoder
with `hq_token_only=True`); the IoU head is frozen and gets no loss (its prediction is returned
detached, so `sam_loss`'s IoU term is a constant). Evaluation (`samkit eval`) scores the same HQ
mask, as the official evaluation scores `masks_hq`.

The registry's `trainer` slot of HQ-SAM names `SamHQOps`; `samkit.train.lora.configure_trainable`
applies `trainable_prefixes` (and refuses LoRA / adapters and other `--freeze` choices for it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from samkit.train.datasets import PreparedSample
from samkit.train.families import FamilyOps, Features

# the mask decoder's HQ parts, trained by the official recipe (everything else stays frozen)
HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")


class SamHQOps(FamilyOps):
    """HQ-SAM models (`samkit.build_sam_hq`): SAM 1's frame and prompts, the encoder's early
    feature kept for the HQ fusion, the HQ mask as the output (one mask per prompt).

    Attributes:
        trainable_prefixes: the parameters the official recipe trains (`HQ_PARTS`).
        trainable_rule: what `configure_trainable` says when asked for anything else.
    """

    trainable_prefixes = tuple(f"mask_decoder.{part}." for part in HQ_PARTS)
    trainable_rule = (
        "HQ-SAM fine-tunes as the official code does: only the HQ token, its MLP and the "
        "fusion layers of the mask decoder (" + ", ".join(HQ_PARTS) + ") learn, the rest of the "
        "model stays frozen"
    )
    hq_token_only = True  # the official training loss and evaluation use the HQ mask

    def encode(self, preps: list[PreparedSample]) -> Features:
        """BxCxhxw embeddings and, as `high_res`, the Bxhxwx`vit_dim` early encoder feature."""
        m = self.model
        images = torch.stack([m.preprocess(x.image.to(m.device)) for x in preps])
        embedding, interm = m.encode_image(images.to(m.dtype))
        return Features(embedding, [interm])

    def decode(
        self,
        feats: Features,
        index: Tensor | None,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        mask_input: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """As `FamilyOps.decode`, returning Bx1 masks: the HQ mask (logits), and the IoU of the
        SAM mask `multimask` picks, detached (the frozen IoU head learns nothing)."""
        m = self.model
        decoder = m.mask_decoder
        sparse, dense = m.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        pe = m.prompt_encoder.get_dense_pe()
        if feats.high_res is None:
            raise ValueError("HQ-SAM decoding needs the encoder's early feature (SamHQOps.encode)")
        # the fusion layers learn: computed here, with gradients, not in the (frozen) encode
        hq = decoder.hq_features(feats.embed, feats.high_res[0])
        embed = feats.embed
        if index is not None:
            embed, hq = embed[index], hq[index]
        low, iou = decoder(
            embed,
            pe,
            sparse,
            dense,
            multimask,
            repeat_image=index is None,
            high_res_features=[hq],
            hq_token_only=self.hq_token_only,
        )
        return low, iou.detach(), None
