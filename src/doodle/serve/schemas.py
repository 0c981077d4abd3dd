"""Request and response bodies of the HTTP API (pydantic: validation and the OpenAPI docs).

Types are strict (a coordinate is a JSON number, not "12" or true; top_k an integer) and numbers
finite (NaN and Infinity, which Python's JSON parser accepts, are refused). Limits that depend on
the settings (strokes, points, top_k, body bytes) are checked by the app and the inference layer.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Stroke = Annotated[list[list[Number]], Field(min_length=2, max_length=3,
                                             description="[[x...], [y...]] or [[x...], [y...], [t...]] (t in ms)")]

EXAMPLE_STROKES = [[[10, 60, 110], [20, 80, 20], [0, 40, 80]], [[30, 90], [60, 60], [300, 340]]]


class PredictRequest(BaseModel):
    """One drawing: canvas strokes of any scale (y down, as on a screen), t optional."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"strokes": EXAMPLE_STROKES,
                                                                               "top_k": 3}]})

    strokes: list[Stroke] = Field(description="the strokes in drawing order, each [[x...], [y...], ([t...])]")
    top_k: Annotated[int, Field(strict=True, ge=1)] = Field(3, description="how many guesses to return")


class Prediction(BaseModel):
    """One guess."""

    word: str = Field(description="the class name")
    probability: float = Field(description="softmax probability, 0..1")


class PredictResponse(BaseModel):
    """The guesses, best first."""

    predictions: list[Prediction]


class ClassesResponse(BaseModel):
    """The classes the model knows, in label order."""

    classes: list[str]


class Health(BaseModel):
    """Liveness, readiness and what is being served."""

    status: str = Field(description="ok once ready, warming before")
    ready: bool = Field(description="warmed up: the first guess is as fast as later ones")
    classes: int
    model: dict
    limits: dict


class ErrorResponse(BaseModel):
    """Every 4xx answer: one readable sentence, plus the individual problems for validation errors."""

    detail: str
    errors: list[str] = Field(default_factory=list)
