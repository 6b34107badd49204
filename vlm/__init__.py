"""Every neural model: SigLIP encoders, VLM backends, prompts, grounding."""
