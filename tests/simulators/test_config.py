from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from simulators.config import ChillerConfig, PlantConfig

HOSPITAL = Path(__file__).parents[2] / "configs" / "sim" / "hospital.yaml"


def test_hospital_yaml_is_a_valid_plant() -> None:
    config = PlantConfig.model_validate(yaml.safe_load(HOSPITAL.read_text())["plant"])
    assert [c.capacity_rt for c in config.chillers] == [1000, 1000, 500]
    assert len(config.towers) == 3


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        PlantConfig(chillers=[ChillerConfig(id="c"), ChillerConfig(id="c")])


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError):
        PlantConfig.model_validate({"chillers": [{"id": "c", "capacity": 10}]})
