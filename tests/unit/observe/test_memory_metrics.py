"""A run's memory events as Prometheus series and as the stream's ``memory`` kind."""

from __future__ import annotations

from ray_orch.core.events import Event
from ray_orch.core.stream import to_stream
from ray_orch.observe.metrics import MetricsRegistry

EVENT = Event(kind="memory", workflow="w", task="t", agent_role="Chef",
              data={"recalled": [{"id": "a", "score": 0.8, "kind": "memory"},
                                 {"id": "b", "score": 0.5, "kind": "knowledge",
                                  "source": "/d/faq.md", "chunk": 2}],
                    "remembered": "c", "user_id": "u", "search_s": 0.004, "searches": 2})


def test_memory_events_count_searches_adds_recalls_and_latency():
    registry = MetricsRegistry()
    registry.apply([EVENT])
    text = registry.exposition().decode()
    assert 'rayorch_memory_searches_total{agent_role="Chef",workflow="w"} 2.0' in text
    assert 'rayorch_memory_adds_total{agent_role="Chef",workflow="w"} 1.0' in text
    assert 'rayorch_memory_recalled_total{kind="knowledge",workflow="w"} 1.0' in text
    assert 'rayorch_memory_search_duration_seconds_count{agent_role="Chef"} 1.0' in text
    assert 'rayorch_memory_search_duration_seconds_bucket{agent_role="Chef",le="0.005"} 1.0' \
        in text


def test_the_stream_shows_what_was_recalled():
    (event,) = to_stream(EVENT)
    assert event.kind == "memory" and event.task == "t"
    assert event.data["recalled"][1]["source"] == "/d/faq.md"
    assert event.data["remembered"] == "c" and event.data["user_id"] == "u"
