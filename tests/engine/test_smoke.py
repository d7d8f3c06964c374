"""Smoke test of the shared fixtures."""


async def test_engine_fixture_loads_tiny_model(engine):
    """The engine fixture loads the tiny model through from_pretrained."""
    assert engine.model_state == "ready"
