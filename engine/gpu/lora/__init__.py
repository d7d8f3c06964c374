"""LoRA adapters on a loaded model: switching them per batch, and the slot that lets a compiled UNet run them."""
