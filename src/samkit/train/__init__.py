"""Fine-tuning and evaluation of SAM 1 models (the `[train]` extra).

Modules: `datasets` (folder / COCO datasets, split, resize), `prompts` (training prompt
simulation), `losses` (focal + dice + IoU, multimask rule), `lora` (LoRA, adapters, freezing,
merging), `loop` (`Trainer`, `TrainConfig`), `evaluate` (click protocol, mIoU, plot), `synthetic`
(generated shapes data), `cli` (`samkit finetune` / `samkit eval`). Nothing is imported here.
"""
