"""What happens at each denoising step beyond the pipeline's own loop: the opt-in step cache."""
