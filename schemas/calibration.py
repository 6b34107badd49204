"""Calibration profiles: the fitted map from a field's evidence to the probability that its value is right, for one
model and one schema (``grounding.calibration`` fits and applies them; the catalog keeps every version)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["platt", "isotonic"]


class CalibrationProfile(BaseModel):
    """A logistic model over named evidence features (Platt scaling over several signals), optionally followed by an
    isotonic map of its score (``isotonic_x`` → ``isotonic_y``, fitted on cross-validated scores).
    Applied only to extractions by ``model`` with the schema ``schema_hash``; the newest ``version`` wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    model: str = Field(min_length=1, description="the model whose extractions it calibrates (Extraction.model)")
    schema_hash: str = Field(min_length=1, description="the schema it calibrates (Extraction.schema_hash)")
    version: int = Field(1, ge=1)
    created_at: datetime
    method: Method
    features: list[str]
    coef: list[float]
    intercept: float
    isotonic_x: list[float] = []
    isotonic_y: list[float] = []
    rows: int = Field(ge=1, description="labelled fields it was fitted on")
    right: int = Field(ge=0, description="of which right")
    source: str = Field(description="what the labels came from: a gold file, reviewers' corrections")
    ece_raw: float = Field(description="expected calibration error of the raw confidence on the fitting rows")
    ece_cv: float = Field(description="expected calibration error of the profile, cross-validated (5 folds)")

    @property
    def ref(self) -> str:
        return f"{self.id[:12]} v{self.version}"
