"""The protocol reader's channel names are the notifiers' registry: a channel added to one and
not the other would make protocols refuse a real channel, or accept one that sends nothing."""

from notifiers import CHANNELS
from rules.validation import CHANNEL_NAMES


def test_the_protocols_know_exactly_the_registered_channels() -> None:
    assert sorted(CHANNEL_NAMES) == sorted(CHANNELS)
