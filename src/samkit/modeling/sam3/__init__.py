"""SAM 3 (Segment Anything with Concepts) model components: nn.Modules only, no I/O."""
