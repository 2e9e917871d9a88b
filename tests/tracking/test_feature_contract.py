"""A pipeline trained under another feature contract is refused before it serves: its inputs
would be computed by different indicator code than the one it was validated on."""

from __future__ import annotations

import dataclasses

import pytest

from trademl.errors import ModelFormatError
from trademl.features.cache import FEATURE_CONTRACT
from trademl.pipeline import check_feature_contract
from trademl.tracking.pipeline import load_pipeline

from .conftest import MODEL, Backend


def test_pipelines_record_and_check_their_feature_contract(backend: Backend) -> None:
    pipeline, _ = load_pipeline(MODEL, "champion", backend.settings)
    assert pipeline.metadata["feature_contract"] == FEATURE_CONTRACT
    check_feature_contract(pipeline, "current")
    older = dataclasses.replace(pipeline, metadata={**pipeline.metadata, "feature_contract": "1"})
    with pytest.raises(
        ModelFormatError, match=r"old one was trained under feature contract 1.*retrain"
    ):
        check_feature_contract(older, "old one")
    unmarked = dataclasses.replace(
        pipeline, metadata={k: v for k, v in pipeline.metadata.items() if k != "feature_contract"}
    )
    with pytest.raises(ModelFormatError, match="contract 1"):
        check_feature_contract(unmarked, "unmarked")
