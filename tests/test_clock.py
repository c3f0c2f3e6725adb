import pytest

from tenfold.clock import FakeClock


async def test_fake_clock_moves_only_when_told():
    c = FakeClock(start=5.0)
    assert c.now() == 5.0
    c.advance(1.5)
    await c.sleep(2.0)
    assert c.now() == 8.5
    with pytest.raises(ValueError):
        c.advance(-1)
