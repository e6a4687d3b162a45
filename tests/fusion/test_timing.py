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


def test_from_summary_names_a_missing_line():
    with pytest.raises(ValueError, match="Timings"):
        StageTimes.from_summary("Fused 2 images -> out.png\n")


def test_stage_adds_up_every_pass_and_keeps_time_when_the_block_raises():
    times = StageTimes()
    for _ in range(3):
        with times.stage("score"):
            pass
    with pytest.raises(RuntimeError), times.stage("blend"):
        raise RuntimeError("boom")
    assert set(times) == {"score", "blend"} and times["score"] >= 0 and times["blend"] >= 0
