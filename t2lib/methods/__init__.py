"""What learns and what adapts: the trainer loop (REINFORCE or next-token) over a `Trainable` (SVF or
LoRA), CEM over mixing weights, the dispatch prompt, the pass-1 strategies and the two-pass model."""
