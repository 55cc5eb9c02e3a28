"""Fine-tuning and evaluation of SAM 1 and SAM 2 image models (the `[train]` extra).

Modules: `datasets` (folder / COCO datasets, split, resize), `prompts` (training prompt
simulation), `losses` (focal + dice + IoU, multimask rule), `lora` (LoRA, adapters, freezing,
merging), `config` (`TrainConfig`), `loop` (`Trainer`), `families` (the SAM 1 / SAM 2 seam: input
frame, encoder outputs, prompt format, object scores), `evaluate` (click protocol, mIoU, plot), `synthetic`
(generated shapes data), `cli` (`samkit finetune` / `samkit eval`). Nothing is imported here.
"""
