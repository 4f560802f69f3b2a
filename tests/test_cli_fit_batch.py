"""cli/fit_batch.py: how a batch's frames are fitted when some of them could not be prepared."""

from __future__ import annotations

from autolabel.pipeline import FrameInput, PipelineConfig
from cli import fit_batch
from cli.fit_batch import LoadedFrame, _label_isolated


def loaded(frame_id: str, prepared: str | None = None, failure: str | None = None
           ) -> LoadedFrame:
    return LoadedFrame(FrameInput(frame_id, (375, 1242), None, []), "lidar", None, [],
                       prepared, failure)


def test_a_frame_whose_hypotheses_failed_is_reported_and_the_others_fitted_together(
        monkeypatch):
    fitted = []

    def fit_frames(prepared, prior, config):
        fitted.append(list(prepared))
        return [f"labels of {item}" for item in prepared]

    monkeypatch.setattr(fit_batch, "fit_frames", fit_frames)
    items = [loaded("a", "A"), loaded("b", failure="ValueError: no plane"), loaded("c", "C")]
    outcomes = [(item.frame_id, outcome)
                for item, outcome in _label_isolated(items, "render", None, PipelineConfig())]
    assert outcomes == [("a", "labels of A"), ("b", "ValueError: no plane"),
                        ("c", "labels of C")]
    assert fitted == [["A", "C"]]


def test_when_the_batch_fit_fails_each_frame_is_fitted_alone_and_reported(monkeypatch):
    fitted = []

    def fit_frames(prepared, prior, config):
        fitted.append(list(prepared))
        if "B" in prepared:
            raise ValueError("bad frame")
        return [f"labels of {item}" for item in prepared]

    monkeypatch.setattr(fit_batch, "fit_frames", fit_frames)
    items = [loaded("a", "A"), loaded("b", "B"), loaded("c", "C")]
    outcomes = [(item.frame_id, outcome)
                for item, outcome in _label_isolated(items, "render", None, PipelineConfig())]
    assert outcomes == [("a", "labels of A"), ("b", "ValueError: bad frame"),
                        ("c", "labels of C")]
    assert fitted == [["A", "B", "C"], ["A"], ["B"], ["C"]]


def test_frames_prepared_without_failure_are_fitted_together(monkeypatch):
    fitted = []
    monkeypatch.setattr(fit_batch, "fit_frames", lambda prepared, prior, config: fitted.append(
        list(prepared)) or [None] * len(prepared))
    list(_label_isolated([loaded("a", "A"), loaded("b", "B")], "render", None,
                         PipelineConfig()))
    assert fitted == [["A", "B"]]
