"""The live app: FastAPI + ONNX Runtime serving a trained model, with a drawing page and a game mode.

`doodle serve RUN_OR_EXPORT` runs it; `create_app(settings)` builds it (`doodle.serve.app`).
"""

from doodle.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
