"""Ensembles of saved predictions: weighted means (`blend`), weights fitted on a labelled holdout
(`blend.fit_weights`), rank-weighted voting of submission CSVs (`vote`), LightGBM stacking (`stack`)."""

from doodle.post.ensemble.blend import FIT_METHODS, MEANS, blend, fit_weights, holdout_halves
from doodle.post.ensemble.stack import Stacker
from doodle.post.ensemble.vote import vote

__all__ = ["FIT_METHODS", "MEANS", "Stacker", "blend", "fit_weights", "holdout_halves", "vote"]
