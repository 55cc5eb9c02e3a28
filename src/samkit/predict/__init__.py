"""Image predictors, one module per family (`sam`, `sam2`, `sam3`), and the inputs, transforms and postprocessing they share."""
