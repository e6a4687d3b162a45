import pytest

from mfkeras.fusion.timing import STAGES, StageTimes


def test_summary_lists_stages_in_pipeline_order_then_others_and_the_total():
    times = StageTimes(encode=0.5, extra=0.25, decode=0.125, score=1.0)
    assert times.summary() == "Timings (s): decode 0.125, score 1.000, encode 0.500, extra 0.250; total 1.875"


def test_from_summary_reads_back_the_last_summary_line_to_the_printed_precision():
    first = StageTimes(decode=9.0)
    times = StageTimes({name: 0.001 * (index + 1) + 0.0004 for index, name in enumerate(STAGES)})
    text = f"Fused 2 images -> out.png\n{first.summary()}\nnoise\n{times.summary()}\n"
    parsed = StageTimes.from_summary(text)
    assert list(parsed) == list(STAGES)
    assert parsed == {name: round(seconds, 3) for name, seconds in times.items()}


def test_from_summary_reads_an_empty_summary_as_no_stages():
    assert StageTimes.from_summary(StageTimes().summary()) == {}


@pytest.mark.parametrize("text, match", [
    ("Fused 2 images -> out.png\n", "No line starting 'Timings"),
    ("Timings (s): decode fast; total 1.000\n", "Malformed stage 'decode fast'"),
])
def test_from_summary_names_a_missing_or_malformed_line(text, match):
    with pytest.raises(ValueError, match=match):
        StageTimes.from_summary(text)


def test_stage_adds_up_every_pass_and_keeps_time_when_the_block_raises(monkeypatch):
    import types

    from mfkeras.fusion import timing

    clock = iter([0.0, 0.25, 1.0, 1.5, 2.0, 2.125, 10.0, 10.5])
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    times = StageTimes()
    for _ in range(3):
        with times.stage("score"):
            pass
    with pytest.raises(RuntimeError), times.stage("blend"):
        raise RuntimeError("boom")
    assert times == {"score": 0.25 + 0.5 + 0.125, "blend": 0.5}
