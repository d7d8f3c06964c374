"""One module per panel tab; each has ``build(ctx, demo)`` that adds its components and events."""
